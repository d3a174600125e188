"""Figure helpers: arrays or DataFrames in, a matplotlib ``Figure`` out.

One seaborn theme and one colour-blind-safe palette (seaborn's ``colorblind``) for the whole book, set
when this module is imported. Every axis says what it shows and in which unit.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "inline"):
    matplotlib.use("Agg")  # headless by default; notebooks keep their inline backend
import matplotlib.lines  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.text  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from lnlib import evaluate  # noqa: E402
from lnlib.metrics import ece, reliability  # noqa: E402
from lnlib.tables import LABELS  # noqa: E402

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
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
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
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def reliability_panels(runs, records, seed: int = 0) -> dict:
    """The panels of :func:`reliability_diagrams` for the runs of one ``seed`` (one per loss, in ``runs``' order):
    each on the ID test set at T = 1 and at the temperature fitted on its validation split, read from ``records``
    (:func:`lnlib.tidy.calibration_records` of the same runs: the row ``metric='temperature', stage='after'``).
    Returns ``{"<loss>, T = <T>\\nECE <ECE>%": metrics.reliability(...)}``, two entries per run, before then after.
    One seed, because a reliability diagram is one network's; the spread over seeds is the calibration table's."""
    panels = {}
    for run in runs:
        if run.config.seed != seed:
            continue
        test = evaluate.outputs(run, [evaluate.ID_TEST])[evaluate.ID_TEST]
        fitted = records.query("run == @run.path.name and metric == 'temperature' and stage == 'after'").value.item()
        for t in (1.0, fitted):
            error = ece(test.logits, test.labels, temperature=t)
            name = f"{LABELS[run.config.loss]}, T = {t:.2f}\nECE {100 * error:.2f}%"
            panels[name] = reliability(test.logits, test.labels, temperature=t)
    return panels


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
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def per_seed_strips(records, rows: list[str], methods: list[str], baseline=None, labels=None, metric_label="",
                    title: str | None = None) -> plt.Figure:
    """One row per ``rows`` value (e.g. OOD set), one dot per seed and method (e.g. loss), jittered apart, with
    each method's mean as a bar; ``baseline`` (a Series indexed like ``rows``) as a black diamond.

    ``records``: columns ``row, method, seed, value`` (values in percent). Shows the spread over seeds that a
    mean ± std hides: a difference is only real where the two clouds sit apart seed by seed.
    """
    labels = labels or {}
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.6), layout="constrained")
    offsets = np.linspace(-0.2, 0.2, len(methods))
    for j, method in enumerate(methods):
        for i, row in enumerate(rows):
            values = records[(records["row"] == row) & (records["method"] == method)]["value"].to_numpy()
            jitter = np.linspace(-0.05, 0.05, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(values, i + offsets[j] + jitter[:len(values)], s=14, color=PALETTE[j], alpha=0.8,
                       label=labels.get(method, method) if i == 0 else None)
            if len(values):
                ax.plot([values.mean()] * 2, [i + offsets[j] - 0.12, i + offsets[j] + 0.12], color=PALETTE[j], lw=2)
    if baseline is not None:
        ax.scatter(baseline.reindex(rows).to_numpy(), range(len(rows)), marker="D", s=30, color="black",
                   label="pixel baseline", zorder=3)
    ax.set_yticks(range(len(rows)), [labels.get(r, r) for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel=metric_label)
    fig.legend(loc="outside lower center", ncols=len(methods) + (baseline is not None), frameon=False)
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def fpr95_per_seed(fpr, rows: list[str], baseline, seeds: int) -> plt.Figure:
    """:func:`per_seed_strips` of MSP FPR95 for cross-entropy and LogitNorm: one row per ``rows`` value (OOD sets
    and averages), one dot per seed and loss, the pixel baseline ``baseline`` (fractions, indexed by set) as a
    diamond. ``fpr``: columns ``ood_set, loss, seed, value`` (fractions; :func:`lnlib.tidy.benchmark_fpr95`);
    ``seeds`` per loss, for the title."""
    strips = fpr.assign(row=fpr["ood_set"], method=fpr["loss"], value=100 * fpr["value"])
    return per_seed_strips(strips, rows, ["ce", "logitnorm"], 100 * baseline, labels=LABELS,
                           metric_label="MSP FPR95 (%), lower is better",
                           title=f"FPR95 per seed ({seeds} seeds per loss)")


def strips_by_metric(records, panels: dict, methods: list[str], ncols: int = 3, zero_line: bool = False,
                     title: str | None = None) -> plt.Figure:
    """One panel per metric, one row per method (e.g. a loss with and without weight decay), one dot per seed and
    the mean as a bar: where each arm sits, seed by seed, on quantities of different units.

    ``records``: columns ``method, metric, seed, value``; ``panels``: metric -> ``(x label, scale, log)``, the
    values multiplied by ``scale`` (100 for percent), on a log axis where ``log``. ``zero_line``: a dotted line at
    0, for values that are changes."""
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, (0.45 * len(methods) + 1.8) * nrows),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, (metric, (xlabel, scale, log)) in zip(axes.flat, panels.items(), strict=False):
        for i, method in enumerate(methods):
            chosen = (records["metric"] == metric) & (records["method"] == method)
            values = scale * records.loc[chosen, "value"].to_numpy()
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(values, i + jitter, s=14, color=PALETTE[i], alpha=0.8)
            if len(values):
                ax.plot([values.mean()] * 2, [i - 0.25, i + 0.25], color=PALETTE[i], lw=2)
        if zero_line:
            ax.axvline(0, color="0.3", linestyle=":", linewidth=1.2)
        ax.set(xlabel=xlabel, xscale="log" if log else "linear")
        if log:  # plain numbers at every tick: a norm range of 5 to 15 has no power of ten to label
            for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
                axis(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_yticks(range(len(methods)), methods)
    axes[0, 0].invert_yaxis()  # shared y: the first method on top in every panel
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def norm_vs_msp(records, methods: list[str], kinds: dict, labels=None, title: str | None = None) -> plt.Figure:
    """Two panels, one dot per run and OOD set, one colour per method (loss), one marker per kind of set.

    Left: the OOD set's median logit norm over the ID test images' (log scale; below 1: the OOD images get smaller
    logits) against MSP's FPR95. Right: FPR95 of the logit norm used as the score against MSP's; on the diagonal
    MSP detects exactly as well as the norm alone. ``records``: :func:`lnlib.ranking.norm_records` (fractions);
    ``kinds``: OOD set -> kind (:func:`lnlib.benchmark.kind_of`).
    """
    labels = labels or {}
    wide = records.pivot_table(index=["loss", "seed", "ood_set"], columns="metric", values="value").reset_index()
    markers = dict(zip(dict.fromkeys(kinds.values()), "osD^v", strict=False))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    for j, method in enumerate(methods):
        for kind, marker in markers.items():
            part = wide[(wide["loss"] == method) & (wide["ood_set"].map(kinds) == kind)]
            style = dict(s=18, color=PALETTE[j], marker=marker, alpha=0.7)
            axes[0].scatter(part["norm_ratio"], 100 * part["fpr95_msp"], **style)
            axes[1].scatter(100 * part["fpr95_norm"], 100 * part["fpr95_msp"], **style)
    axes[0].set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}")  # 0.6, not 6×10⁻¹
    axes[0].xaxis.set_major_formatter(plain)
    axes[0].xaxis.set_minor_formatter(plain)
    axes[0].axvline(1.0, color="grey", lw=1, ls=":")
    axes[0].set(xlabel="median ‖f‖ of the OOD images / of the ID test images", ylabel="MSP FPR95 (%)")
    axes[1].plot([0, 100], [0, 100], color="grey", lw=1, ls=":")
    axes[1].set(xlabel="FPR95 of the logit norm ‖f‖ as the score (%)", ylabel="MSP FPR95 (%)")
    handles = [matplotlib.lines.Line2D([], [], ls="", marker="o", color=PALETTE[j], label=labels.get(m, m))
               for j, m in enumerate(methods)]
    handles += [matplotlib.lines.Line2D([], [], ls="", marker=mk, color="grey", label=f"{kind} sets")
                for kind, mk in markers.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def norm_growth(histories: dict, ood_name: str = "OOD", title: str | None = None) -> plt.Figure:
    """Logit norm and confidence over training, one column per run (e.g. cross-entropy, LogitNorm).

    Top row: mean ‖f(x)‖₂ with its 10–90th percentile band on ID train, ID test and the OOD monitor set.
    Bottom row: test accuracy and the mean max softmax probability on ID test and OOD images, in percent.
    ``histories``: column title -> ``Run.history`` DataFrame.
    """
    fig, axes = plt.subplots(2, len(histories), figsize=(5.2 * len(histories), 6.4), sharex=True, squeeze=False,
                             layout="constrained")
    for (name, h), ax_norm, ax_conf in zip(histories.items(), axes[0], axes[1], strict=True):
        # ID train and ID test often coincide: train drawn dashed and thicker underneath, so both stay visible
        for split, label, style in (("train", "ID train", dict(linestyle="--", linewidth=3, zorder=1)),
                                    ("test", "ID test", dict(zorder=2)), ("ood", ood_name, dict(zorder=2))):
            color = SPLIT_COLORS[split]
            ax_norm.plot(h["epoch"], h[f"{split}_norm_mean"], marker="o", markersize=3, color=color, label=label,
                         **style)
            ax_norm.fill_between(h["epoch"], h[f"{split}_norm_p10"], h[f"{split}_norm_p90"], color=color,
                                 alpha=0.2, linewidth=0)
        ax_norm.set(title=name, ylabel="‖f(x)‖₂ (mean, 10–90%)", ylim=(0, None))
        ax_conf.plot(h["epoch"], 100 * h["test_acc"], color="0.2", label="test accuracy")
        ax_conf.plot(h["epoch"], 100 * h["test_msp_mean"], color=SPLIT_COLORS["test"], linestyle="--",
                     label="mean MSP, ID test")
        ax_conf.plot(h["epoch"], 100 * h["ood_msp_mean"], color=SPLIT_COLORS["ood"], linestyle="--",
                     label=f"mean MSP, {ood_name}")
        ax_conf.set(xlabel="epoch", ylabel="percent", ylim=(0, 100))
        ax_conf.xaxis.get_major_locator().set_params(integer=True)
    handles, names = [], []
    for ax in axes[:, 0]:  # one legend for the figure, below it: inside, it would hide a curve somewhere
        h, n = ax.get_legend_handles_labels()
        handles, names = handles + h, names + n
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize="small")
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def histogram_grid(grid: dict, xlabel: str, bins=40, value_range=None, colors=None, title: str | None = None,
                   log_x: bool = False) -> plt.Figure:
    """Density histograms with shared bins: ``grid[row][column] = {series label: values}``.

    Every panel uses the same bins (``bins`` edges over ``value_range``, default the range of all values),
    so panels and series compare directly. ``colors``: series label -> colour (default: palette order).
    """
    rows, cols = list(grid), list(next(iter(grid.values())))
    every = np.concatenate([np.asarray(v, dtype=float) for r in grid.values() for c in r.values() for v in c.values()])
    lo, hi = value_range if value_range is not None else (every.min(), every.max())
    edges = np.geomspace(lo, hi, bins + 1) if log_x else np.linspace(lo, hi, bins + 1)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.6 * len(cols), 2.3 * len(rows) + 0.8),
                             sharex=True, squeeze=False, layout="constrained")
    colors = dict(colors or {})
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            for k, (label, values) in enumerate(grid[row][col].items()):
                color = colors.setdefault(label, PALETTE[k % len(PALETTE)])
                ax.hist(np.clip(values, lo, hi), bins=edges, density=True, histtype="stepfilled", alpha=0.35,
                        color=color, label=label)
                ax.hist(np.clip(values, lo, hi), bins=edges, density=True, histtype="step", color=color)
            if i == 0:
                ax.set_title(col)
            if j == 0:
                ax.set_ylabel(f"{row}\ndensity")
            if log_x:  # plain numbers at 1, 2, 5 x 10^k: the default minor labels collide
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
                ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.legend(fontsize="x-small")
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


LOSS_FLOOR = 1e-12  # losses below this are beyond float32 training anyway; the axis stops there


def tau_ablation(stats, reference, metrics=("fpr95", "auroc", "accuracy"), theory=None, num_classes=None,
                 labels=None, chosen=None, title: str | None = None) -> plt.Figure:
    """One panel per metric against τ (log scale): LogitNorm mean ± std over seeds, cross-entropy as a
    horizontal line with its ± std band; optionally a last panel with the theory curves; three panels a row.

    ``stats``: DataFrame indexed by τ with columns ``(stat, metric)``, stat in mean/std (fractions).
    ``reference``: DataFrame with one row (cross-entropy), the same columns; a metric it lacks gets no line.
    ``theory``: DataFrame indexed by a fine τ grid with columns ``loss lower bound (paper)``, ``exact minimum
    loss`` (nats) and ``max confidence`` (fraction), e.g. from :func:`lnlib.losses.tau_theory`. The loss axis
    stops at ``LOSS_FLOOR``. ``chosen``: a τ marked by a dotted vertical line on every panel.
    """
    labels = labels or {}
    n = len(metrics) + (theory is not None)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.6 * nrows + 0.4), squeeze=False,
                             layout="constrained")
    panels = axes.ravel()
    for ax in panels[n:]:
        ax.set_visible(False)
    taus = np.asarray(stats.index, dtype=float)
    for metric, ax in zip(metrics, panels, strict=False):
        mean, std = 100 * stats[("mean", metric)], 100 * stats[("std", metric)].fillna(0)
        ax.errorbar(taus, mean, yerr=std, marker="o", capsize=3, color=PALETTE[1], label="LogitNorm")
        if ("mean", metric) in reference.columns:
            ref_mean, ref_std = 100 * reference[("mean", metric)].iloc[0], 100 * np.nan_to_num(
                reference[("std", metric)].iloc[0])
            ax.axhline(ref_mean, color=PALETTE[0], linestyle="--", label="cross-entropy")
            ax.axhspan(ref_mean - ref_std, ref_mean + ref_std, color=PALETTE[0], alpha=0.15, linewidth=0)
        ax.set(xscale="log", xlabel="τ (log scale)", ylabel=f"{labels.get(metric, metric)} (%)")
    if theory is not None:
        ax = panels[n - 1]
        ax.plot(theory.index, theory["loss lower bound (paper)"], color=PALETTE[2], label="loss lower bound (paper)")
        ax.plot(theory.index, theory["exact minimum loss"], color=PALETTE[4], linestyle="--",
                label="exact minimum loss")
        ax.set(xscale="log", yscale="log", xlabel="τ (log scale)", ylim=(LOSS_FLOOR, 10),
               ylabel="LogitNorm loss (nats, log scale)",
               title=f"Theory, K = {num_classes}" if num_classes else "Theory")
        ax_conf = ax.twinx()
        ax_conf.plot(theory.index, 100 * theory["max confidence"], color=PALETTE[3], label="max confidence")
        ax_conf.set(ylabel="largest confidence of f/(τ‖f‖) (%)", ylim=(0, 105))
        ax_conf.grid(False)
        handles = ax.get_legend_handles_labels()[0] + ax_conf.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], fontsize="small", loc="lower left")
    for ax in panels[:n]:  # ticks at the measured τ values only: log-axis minor labels collide
        if chosen is not None:
            ax.axvline(chosen, color="black", linestyle=":", linewidth=1.2,
                       label="chosen on validation" if ax is panels[0] else None)
        ax.set_xticks(taus, [f"{t:g}" for t in taus], rotation=45)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    panels[0].legend(fontsize="small")
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def confidence_maps(maps: dict, data=None, data_box=(0.0, 1.0), vmin: float = 0.5,
                    title: str | None = None) -> plt.Figure:
    """Heatmaps of confidence on square boxes: ``maps[row][column] = (axis (R,), values (R, R))``.

    One colour scale (``vmin`` .. 1, e.g. 1/K .. 1) for every panel. ``data = (x (n, 2), y (n,))`` is drawn
    where the data box fills the panel; on the wider boxes the data box is outlined instead.
    """
    rows, cols = list(maps), list(next(iter(maps.values())))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.3 * len(cols) + 0.8, 3.0 * len(rows)),
                             squeeze=False, layout="constrained")
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            axis, values = maps[row][col]
            image = ax.imshow(values, origin="lower", extent=(axis[0], axis[-1], axis[0], axis[-1]),
                              vmin=vmin, vmax=1, cmap="viridis", interpolation="nearest")
            width = axis[-1] - axis[0]
            if data is not None and width < 3 * (data_box[1] - data_box[0]):
                x, y = (np.asarray(a) for a in data)
                for k in np.unique(y):
                    ax.scatter(*x[y == k].T, s=1, color=PALETTE[3 + k % 4], alpha=0.6, linewidths=0)
            else:
                lo, hi = data_box
                ax.add_patch(plt.Rectangle((lo, lo), hi - lo, hi - lo, fill=False, color="white", linewidth=1))
            ax.grid(False)
            ax.set_title(col if i == 0 else "", fontsize="medium")
            if j == 0:
                ax.set_ylabel(row)
    fig.colorbar(image, ax=axes, shrink=0.6, label="confidence")
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def region_maps(panels: dict, data=None, seed: int = 0, title: str | None = None) -> plt.Figure:
    """Linear regions: ``panels[title] = (axis (R,), region ids (R, R))``, one random colour per region."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False, layout="constrained")
    rng = np.random.default_rng(seed)
    for ax, (name, (axis, ids)) in zip(axes[0], panels.items(), strict=True):
        colors = rng.uniform(0.15, 0.95, size=(ids.max() + 1, 3))  # neighbours rarely look alike
        ax.imshow(colors[ids], origin="lower", extent=(axis[0], axis[-1], axis[0], axis[-1]),
                  interpolation="nearest")
        if data is not None and axis[-1] - axis[0] < 3:
            ax.scatter(*np.asarray(data[0]).T, s=1, color="black", alpha=0.5, linewidths=0)
        ax.grid(False)
        ax.set_title(f"{name}\n{len(np.unique(ids))} regions in view", fontsize="medium")
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def alpha_curves(panels: dict, ylabel: str, reference: dict | None = None, yscale: str = "linear",
                 title: str | None = None) -> plt.Figure:
    """Values along rays ``α·x``: ``panels[title][method] = (alphas (A,), values (N, A))``.

    Per method the median over the N rays (line) and its 10–90% quantile band, α on a log axis.
    ``reference``: ``{label: y}`` horizontal lines drawn on every panel.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, (name, curves) in zip(axes[0], panels.items(), strict=True):
        for k, (method, (alphas, values)) in enumerate(curves.items()):
            low, mid, high = np.quantile(values, [0.1, 0.5, 0.9], axis=0)
            ax.plot(alphas, mid, color=PALETTE[k], label=method)
            ax.fill_between(alphas, low, high, color=PALETTE[k], alpha=0.15, linewidth=0)
        for j, (label, y) in enumerate((reference or {}).items()):
            ax.axhline(y, color="grey", linestyle=(":", "--", "-.")[j % 3], label=label)
        ax.set(xscale="log", yscale=yscale, xlabel="α (log scale)", title=name)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))  # clear of the bands
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def clipped_noise(along: dict, alphas, u, classes, marks: dict | None = None, n_examples: int = 6,
                  title: str | None = None) -> plt.Figure:
    """What clipping scaled noise back into the image box does to a classifier (Hein et al.'s Table 2, second row).

    ``along``: :func:`lnlib.faraway.clipped_along` of ``u`` (N, C, H, W) pixels on ``alphas`` (A,); ``classes``:
    the class names. Top: the first image ``clip(α·u₀, 0, 1)`` at ``n_examples`` α of the grid, each with the
    class it gets and its max softmax. Below, over α (log axis): the median max softmax over the N images with
    its 10–90% band, and their mean brightness and share of saturated pixels; then the share of images given each
    class (classes that never reach 5% are left out). ``marks``: ``{label: α}`` drawn as vertical lines below.
    """
    alphas = np.asarray(alphas, dtype=float)
    fig = plt.figure(figsize=(12, 8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 2.5])
    picks = np.unique(np.linspace(0, len(alphas) - 1, n_examples).round().astype(int))
    for ax, j in zip(top.subplots(1, len(picks)), picks, strict=True):
        image = np.clip(alphas[j] * np.asarray(u[0], dtype=float), 0, 1).transpose(1, 2, 0).squeeze()
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"α = {alphas[j]:.3g}\n{classes[along['predicted'][0, j]]}, {100 * along['msp'][0, j]:.0f}%",
                     fontsize="small")
        ax.axis("off")
    ax_conf, ax_class = bottom.subplots(1, 2)
    low, mid, high = np.quantile(along["msp"], [0.1, 0.5, 0.9], axis=0)
    ax_conf.plot(alphas, 100 * mid, color=PALETTE[0], label="max softmax: median")
    ax_conf.fill_between(alphas, 100 * low, 100 * high, color=PALETTE[0], alpha=0.15, linewidth=0,
                         label="max softmax: 10–90%")
    ax_conf.plot(alphas, 100 * along["brightness"].mean(0), color=PALETTE[1], linestyle="--",
                 label="mean pixel value")
    ax_conf.plot(alphas, 100 * along["saturated"].mean(0), color=PALETTE[2], linestyle=":",
                 label="pixels clipped at 1")
    ax_conf.set(xscale="log", xlabel="α (log scale)", ylabel="%", ylim=(0, 102),
                title="The clipped images: confidence and brightness")
    shares = np.stack([(along["predicted"] == k).mean(0) for k in range(len(classes))])  # (K, A)
    shown = [k for k in range(len(classes)) if shares[k].max() >= 0.05]
    for i, k in enumerate(shown):
        ax_class.plot(alphas, 100 * shares[k], color=PALETTE[i % len(PALETTE)], label=classes[k])
    ax_class.set(xscale="log", xlabel="α (log scale)", ylabel="share of images (%)", ylim=(0, 102),
                 title="The class they are given")
    for ax in (ax_conf, ax_class):
        for j, (label, alpha) in enumerate((marks or {}).items()):
            ax.axvline(alpha, color="0.3", linestyle=("-.", ":")[j % 2], linewidth=1.2, label=label)
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below: the full width
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def over_epochs(records, panels: dict, labels: dict | None = None, marks: dict | None = None, ncols: int = 2,
                title: str | None = None) -> plt.Figure:
    """Curves over training, one per method: the mean over seeds with a band of ±1 std (seaborn's ``sd``).

    ``records``: a tidy frame with columns ``epoch, method, value`` (and whatever ``panels`` select on, e.g.
    :func:`lnlib.tidy.history_records`); ``panels``: panel title -> ``(query, y label, scale)``, the query
    selecting the panel's rows and ``scale`` multiplying the values (100 for percent); ``labels``: method ->
    legend name; ``marks``: method -> epoch, drawn as a dotted vertical line in the method's colour (where it
    fitted its training set, say).
    """
    labels = labels or {}
    methods = list(dict.fromkeys(records["method"]))
    colors = dict(zip(methods, PALETTE, strict=False))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 3.4 * nrows), sharex=True, squeeze=False,
                             layout="constrained")
    for ax, (name, (query, ylabel, scale)) in zip(axes.flat, panels.items(), strict=False):
        part = records.query(query).assign(value=lambda f: f["value"] * scale,
                                           method=lambda f: f["method"].map(lambda m: labels.get(m, m)))
        sns.lineplot(part, x="epoch", y="value", hue="method", errorbar="sd", ax=ax, legend=False,
                     palette={labels.get(m, m): colors[m] for m in methods})
        for method, epoch in (marks or {}).items():
            if np.isfinite(epoch):
                ax.axvline(epoch, color=colors[method], linestyle=":", linewidth=1.5)
        ax.set(title=name, xlabel="epoch", ylabel=ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    handles = [matplotlib.lines.Line2D([], [], color=colors[m], label=labels.get(m, m)) for m in methods]
    if marks:
        handles.append(matplotlib.lines.Line2D([], [], color="0.4", linestyle=":",
                                               label="training set fitted (mean over seeds)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    if title:
        fig.suptitle(title, wrap=True)  # wrapped at the figure's edges, never clipped
    return fig


def text_outside(fig: plt.Figure, tolerance: float = 2.0) -> list[str]:
    """The texts of ``fig`` that reach beyond its edges by more than ``tolerance`` pixels once drawn (titles, axis
    labels, legends, drawn tick labels): what a reader would see cut off. An empty list when everything fits."""
    fig.draw_without_rendering()  # lay out as saving does (constrained layout included)
    renderer = fig.canvas.get_renderer()

    def cut(artist) -> bool:
        box = artist.get_window_extent(renderer) if isinstance(artist, matplotlib.text.Text) else artist
        return (box.x0 < -tolerance or box.y0 < -tolerance or box.x1 > fig.bbox.width + tolerance
                or box.y1 > fig.bbox.height + tolerance)

    def shown(text) -> bool:
        return text.get_visible() and bool(text.get_text().strip())

    in_axes = {id(t) for ax in fig.axes for t in ax.findobj(matplotlib.text.Text)}  # judged with their axes below
    outside = [t.get_text() for t in fig.findobj(matplotlib.text.Text)
               if id(t) not in in_axes and shown(t) and cut(t)]  # suptitles, figure legends
    for ax in fig.axes:
        if not ax.get_visible() or not cut(ax.get_tightbbox(renderer)):  # the tight box: only what is drawn
            continue
        legend = ax.get_legend()
        named = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts, *(legend.get_texts() if legend else [])]
        outside += [t.get_text() for t in named if shown(t) and cut(t)] or [f"tick labels of {ax.get_title()!r}"]
    return outside


def save(fig: plt.Figure, path_without_suffix: Path) -> None:
    """Save ``fig`` as PNG (150 dpi) and SVG next to each other (``<path>.png``, ``<path>.svg``), after checking that
    no text runs off its edges (:func:`text_outside`): a cut-off title or legend raises ``ValueError`` naming it.

    Returns nothing, so that a notebook cell ending with it shows the figure, not a list of paths."""
    base = Path(path_without_suffix)
    cut = text_outside(fig)
    if cut:
        raise ValueError(f"the figure {base.name} would show these texts cut off at its edges: {cut}; make the figure "
                         "wider, wrap the text or move the legend inside")
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
