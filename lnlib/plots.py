"""Figure helpers: arrays or DataFrames in, a matplotlib ``Figure`` out.

One seaborn theme and one colour-blind-safe palette (seaborn's ``colorblind``) for the whole book, set
when this module is imported. Every axis says what it shows and in which unit.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "inline"):
    matplotlib.use("Agg")  # headless by default; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = sns.color_palette("colorblind")
SPLIT_COLORS = {"train": PALETTE[0], "test": PALETTE[1], "ood": PALETTE[2]}
sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)


def training_history(history, ood_name: str = "OOD", title: str | None = None) -> plt.Figure:
    """Three panels over epochs: training loss; accuracy (train, test); logit norm ‖f‖₂ with its 10–90th
    percentile band on ID train, ID test and the OOD monitor set.

    ``history``: the DataFrame of ``Run.history`` (columns ``epoch``, ``train_loss``, ``train_acc``,
    ``test_acc``, ``{train,test,ood}_norm_{mean,p10,p90}``).
    """
    fig, (ax_loss, ax_acc, ax_norm) = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    epoch = history["epoch"]
    ax_loss.plot(epoch, history["train_loss"], marker="o", color=PALETTE[0])
    ax_loss.set(xlabel="epoch", ylabel="training loss (nats)", title="Training loss")
    ax_acc.plot(epoch, 100 * history["train_acc"], marker="o", label="train (augmented)",
                color=SPLIT_COLORS["train"])
    ax_acc.plot(epoch, 100 * history["test_acc"], marker="o", label="test", color=SPLIT_COLORS["test"])
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax_acc.legend()
    for split, label in (("train", "ID train"), ("test", "ID test"), ("ood", ood_name)):
        color = SPLIT_COLORS[split]
        ax_norm.plot(epoch, history[f"{split}_norm_mean"], marker="o", color=color, label=label)
        ax_norm.fill_between(epoch, history[f"{split}_norm_p10"], history[f"{split}_norm_p90"],
                             color=color, alpha=0.2, linewidth=0)
    ax_norm.set(xlabel="epoch", ylabel="logit norm ‖f(x)‖₂ (mean, 10–90%)", title="Logit norm")
    ax_norm.legend()
    for ax in (ax_loss, ax_acc, ax_norm):
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return fig


def reliability_diagrams(panels: dict, title: str | None = None) -> plt.Figure:
    """Reliability diagrams (Guo et al., 2017), one column per entry of ``panels`` (panel title -> the dict of
    :func:`lnlib.metrics.reliability`): accuracy per confidence bin against the diagonal of perfect
    calibration, the gap to it hatched; below, the share of samples in each bin (log scale).
    """
    fig, axes = plt.subplots(2, len(panels), figsize=(3.4 * len(panels), 4.6), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, layout="constrained")
    for (name, r), ax, ax_n in zip(panels.items(), axes[0], axes[1], strict=True):
        left, width = r["edges"][:-1], r["edges"][1] - r["edges"][0]
        filled = r["count"] > 0
        ax.bar(left[filled], 100 * r["accuracy"][filled], width, align="edge", color=PALETTE[0],
               edgecolor="white", label="accuracy")
        gap_bottom = 100 * r["accuracy"][filled]
        ax.bar(left[filled], 100 * r["confidence"][filled] - gap_bottom, width, bottom=gap_bottom, align="edge",
               fill=False, hatch="//", edgecolor=PALETTE[3], linewidth=0.8, label="gap to confidence")
        ax.plot([0, 1], [0, 100], color="0.3", linestyle="--", linewidth=1, label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 100), title=name, ylabel="accuracy (%)" if ax is axes[0, 0] else None)
        ax_n.bar(left, r["count"] / r["count"].sum(), width, align="edge", color=PALETTE[7], edgecolor="white")
        ax_n.set(yscale="log", ylim=(1e-4, 1.5), xlabel="max softmax probability",
                 ylabel="share" if ax is axes[0, 0] else None)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=3)
    if title:
        fig.suptitle(title)
    return fig


def grouped_bars(stats, metrics=("fpr95", "auroc"), labels=None, title: str | None = None) -> plt.Figure:
    """One panel per metric: a group of bars per row of ``stats`` (e.g. a score), one bar per method (e.g.
    loss), height = mean in percent, error bar = std over seeds.

    ``stats``: :func:`lnlib.tables.mean_std` output with columns ``(stat, metric, method)``. ``labels``:
    display names for metrics, rows and methods.
    """
    labels = labels or {}
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False,
                             layout="constrained")
    rows = list(stats.index)
    for metric, ax in zip(metrics, axes[0], strict=True):
        methods = list(stats["mean"][metric].columns)
        width = 0.8 / len(methods)
        for j, method in enumerate(methods):
            x = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(rows))]
            std = stats["std"][metric][method].fillna(0)
            ax.bar(x, 100 * stats["mean"][metric][method], width, yerr=100 * std, capsize=2,
                   color=PALETTE[j], label=labels.get(method, method))
        ax.set_xticks(range(len(rows)), [labels.get(r, r) for r in rows], rotation=30, ha="right")
        ax.set(ylabel=f"{labels.get(metric, metric)} (%)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right upper")
    if title:
        fig.suptitle(title)
    return fig


def save(fig: plt.Figure, path_without_suffix: Path) -> None:
    """Save ``fig`` as PNG (150 dpi) and SVG next to each other (``<path>.png``, ``<path>.svg``).

    Returns nothing, so that a notebook cell ending with it shows the figure, not a list of paths."""
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
