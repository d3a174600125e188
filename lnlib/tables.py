"""Result tables as pandas DataFrames: mean ± std over seeds, best value in bold, arrows in the headers.

The input is always a tidy frame of raw numbers (one row per run and quantity, e.g.
:func:`lnlib.tidy.ood_records`), which is also what gets saved as CSV: tables are views of it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from lnlib import benchmark, evaluate, pixel_stats
from lnlib.files import atomic_write_text
from lnlib.scores import SCORES
from lnlib.tidy import FAR, SYNTHETIC, in_benchmark_order

LABELS = {"fpr95": "FPR95 ↓", "auroc": "AUROC ↑", "aupr_in": "AUPR-In ↑", "aupr_out": "AUPR-Out ↑",
          "accuracy": "Accuracy ↑", "ece": "ECE ↓", "nll": "NLL ↓", "mmc": "MMC", "temperature": "T",
          "ce": "CE", "logitnorm": "LogitNorm", "ceda": "CEDA", "acet": "ACET",
          "logitnorm+ceda": "LogitNorm + CEDA", "logitnorm+acet": "LogitNorm + ACET", "held_out": "held-out classes"}
LABELS.update({name: score.label for name, score in SCORES.items()})
LABELS.update({"val_fpr95": "FPR95 ↓, validation (symbols)", "val_accuracy": "Accuracy ↑, validation",
               "fpr95_far": "FPR95 ↓, far sets (test)", "fpr95_synthetic": "FPR95 ↓, synthetic sets (test)",
               "id_norm": "median ‖f‖₂, ID test", "ece_scaled": "ECE ↓, after temperature scaling",
               "norm_ratio_far": "norm ratio, far sets", "norm_ratio_synthetic": "norm ratio, synthetic sets",
               "median_alpha": "median α* (99.9%)", "log10_median_alpha": "log10 of the median α* (99.9%)",
               "clipped_overconfident": "> 95% after clipping", "reached": "reached 99.9%",
               "median_alpha_grid": "median α (99.9%), read off the 2^k grid",
               "clipped_overconfident_grid": "> 95% after clipping at the grid's α"})
ARROWS = {k: LABELS[k] for k in ("fpr95", "auroc", "aupr_in", "aupr_out")}  # the OOD metrics, in order
LOWER_IS_BETTER = {"fpr95", "ece", "nll", "val_fpr95", "fpr95_far", "fpr95_synthetic"}
HIGHER_IS_BETTER = {"auroc", "aupr_in", "aupr_out", "accuracy", "val_accuracy"}


def names(values) -> str:
    """Display names, comma-separated, for prose: ``"MSP, Energy"``; ``"none"`` for no values."""
    return ", ".join(LABELS.get(v, v) for v in values) or "none"


def ood_frame(ood: dict) -> pd.DataFrame:
    """One row per OOD set plus an ``average`` row; columns FPR95/AUROC/AUPR-In/AUPR-Out in percent.

    ``ood``: the ``"ood"`` entry of a run's metrics.json (:func:`lnlib.evaluate.ood_table`).
    """
    rows = {**ood["sets"], "average": ood["average"]}
    frame = pd.DataFrame.from_dict(rows, orient="index")[list(ARROWS)] * 100
    frame.index.name = "OOD set"
    return frame.rename(columns=ARROWS)


def style_percent(frame: pd.DataFrame, caption: str | None = None):
    """Display helper: one decimal, the average row set apart, an optional caption."""
    styler = frame.style.format("{:.1f}")
    if "average" in frame.index:
        styler = styler.set_properties(subset=pd.IndexSlice[["average"], :], **{"font-weight": "bold"})
    return styler.set_caption(caption) if caption else styler


# what identifies one number apart from its set
RUN_KEYS = ("loss", "method", "tau", "weight_decay", "seed", "run", "score", "metric")


def with_average(records: pd.DataFrame, over: str = "ood_set", name: str = "average") -> pd.DataFrame:
    """``records`` plus rows ``over == name`` holding each run's mean over the ``over`` values.

    The average is taken per run, score and metric (the ``RUN_KEYS`` present) *before* seeds are
    aggregated, so a table's average row is mean ± std over seeds of the per-seed averages. Columns that
    describe one set (such as ``n_ood``) are left empty in the average rows.
    """
    keys = [c for c in RUN_KEYS if c in records.columns]
    average = records.groupby(keys, dropna=False, sort=False)["value"].mean().reset_index()
    average[over] = name
    return pd.concat([records, average], ignore_index=True)[records.columns]


def mean_std(records: pd.DataFrame, index, columns, value: str = "value") -> pd.DataFrame:
    """Mean, std (ddof = 1; NaN for one seed) and count over everything not in ``index`` + ``columns``.

    Returns a frame indexed by ``index`` with columns ``(stat, *columns)``, stat in mean/std/n. Rows and
    columns follow the order in which each level's values first appear in ``records``.
    """
    index, columns = list(np.atleast_1d(index)), list(np.atleast_1d(columns))
    stats = records.pivot_table(index=index, columns=columns, values=value, aggfunc=["mean", "std", "count"],
                                dropna=False)
    rows = _appearance_order(records, index)
    stats = stats.reindex(pd.MultiIndex.from_tuples(rows, names=index) if len(index) > 1
                          else pd.Index([r[0] for r in rows], name=index[0]))
    cols = [(stat, *c) for stat in ("mean", "std", "count") for c in _appearance_order(records, columns)]
    stats = stats.reindex(columns=pd.MultiIndex.from_tuples(cols, names=[None, *columns]))
    return stats.rename(columns={"count": "n"}, level=0)


def _appearance_order(records: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """The value combinations of ``columns`` present in ``records``, each level in order of first appearance."""
    present = set(records[columns].itertuples(index=False, name=None))
    return [c for c in itertools.product(*(pd.unique(records[c]) for c in columns)) if c in present]


def paired_table(comparison: pd.DataFrame, by: str, labels=("CE", "LogitNorm"), baseline: pd.Series | None = None,
                 scale=100.0, decimals=1) -> pd.DataFrame:
    """:func:`lnlib.stats.compare` output as a display table, one row per ``by``: both means (``b`` under
    ``labels[0]``, ``a`` under ``labels[1]``; by default CE and LogitNorm), the paired difference with its interval,
    the raw and the Holm-corrected p, and the verdict in words. ``baseline``: an optional first column (e.g. the
    pixel baseline), indexed like ``by``. Percent points when ``scale`` is 100; ``decimals`` digits after the point.
    Either may be a function of the row's ``by`` value, for a table whose rows have different units (a norm beside
    an FPR95)."""
    c = comparison.set_index(by)
    per_row = {k: ((scale(k) if callable(scale) else scale), (decimals(k) if callable(decimals) else decimals))
               for k in c.index}
    f = [per_row[k][0] for k in c.index]

    def number(x, k, sign=""):
        factor, digits = per_row[k]
        return f"{factor * x:{sign}.{digits}f}"

    table = pd.DataFrame(index=c.index)
    if baseline is not None:
        table["pixel baseline"] = (baseline.reindex(c.index) * f).round(1)
    table[labels[0]] = [number(x, k) for x, k in zip(c["mean_b"], c.index, strict=True)]
    table[labels[1]] = [number(x, k) for x, k in zip(c["mean_a"], c.index, strict=True)]
    level, m = (c["level"].iloc[0], c["m"].iloc[0]) if len(c) else (0.95, 0)  # no rows (nothing paired): headers
    table[f"{labels[1]} − {labels[0]} [{100 * level:.0f}% interval]"] = [
        f"{number(d, k, '+')} [{number(lo, k, '+')}, {number(hi, k, '+')}]"
        for d, lo, hi, k in zip(c["difference"], c["ci_low"], c["ci_high"], c.index, strict=True)]
    table["p"] = c["p"].map(lambda p: f"{p:.2g}")
    table[f"p, Holm over {m}"] = c["p_holm"].map(lambda p: f"{p:.2g}")
    words = {"lower": f"{labels[1]} lower", "higher": f"{labels[1]} higher", "none": "no detectable difference"}
    table["verdict"] = [words[d] if d != "none" or np.isfinite(x) else "no verdict possible"
                        for d, x in zip(c["direction"], c["detectable"], strict=True)]
    return table


def by_weight_decay(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` with ``method`` naming the loss and its weight decay, e.g. ``CE, weight decay 0.0005`` or
    ``LogitNorm, no weight decay``: the arms of the chapters that train one recipe with and without it."""
    arm = [f"{LABELS.get(m, m)}, " + (f"weight decay {wd:g}" if wd else "no weight decay")
           for m, wd in zip(records["method"], records["weight_decay"], strict=True)]
    return records.assign(method=arm)


def seed_spread(records: pd.DataFrame, by, scale: float = 100.0) -> pd.DataFrame:
    """How far one seed moves a number: per group of ``by`` (e.g. OOD set and loss), the lowest and highest
    value over seeds, their range and the std (ddof = 1), in percent when ``scale`` is 100."""
    spread = records.groupby(list(np.atleast_1d(by)), sort=False)["value"].agg(["min", "max", "std"]) * scale
    return spread.assign(range=spread["max"] - spread["min"])[["min", "max", "range", "std"]].round(1)


def sensitivity(records: pd.DataFrame, changes: dict, by=("ood_set", "loss"), scale: float = 100.0) -> pd.DataFrame:
    """How much a number moves, side by side: per group of ``by``, the range of ``records`` over seeds, and for
    each ``{label: change records}`` (e.g. :func:`lnlib.tidy.last_epoch_change`, :func:`lnlib.tidy.
    rerun_change`) the largest absolute change; in percent points when ``scale`` is 100."""
    by = list(by)
    n = records["seed"].nunique()
    frame = {f"range over {n} seeds": seed_spread(records, by, scale)["range"]}
    for label, change in changes.items():
        frame[label] = (scale * change["value"].abs()).groupby([change[c] for c in by], sort=False).max().round(1)
    return pd.DataFrame(frame).reindex(seed_spread(records, by, scale).index)


ACCURACY_KEPT = 0.01  # a candidate may cost at most this much validation accuracy (1 point) against the best one


def choose_on_validation(stats: pd.DataFrame, metric: str = "val_fpr95", accuracy: str = "val_accuracy",
                         within: float = ACCURACY_KEPT):
    """The book's rule for choosing a hyperparameter (LogitNorm's τ) from :func:`mean_std` output indexed by the
    candidate values, on validation quantities only (:func:`lnlib.tidy.validation_records`): among the candidates
    whose mean validation accuracy is within ``within`` of the best candidate's, the one with the lowest mean of
    ``metric`` (by default MSP FPR95 of the ID validation images against the validation OOD set ``symbols``).
    The accuracy condition is LogitNorm's own promise ("accuracy kept"): without it a τ that trains badly can
    win by being unsure of everything. Test sets are never read."""
    for name in (metric, accuracy):
        if not name.startswith("val_"):
            raise ValueError(f"{name!r}: a hyperparameter is chosen on validation quantities ('val_...') only")
    mean = stats["mean"]
    kept = mean[accuracy] >= mean[accuracy].max() - within
    return mean.loc[kept, metric].idxmin()


def norm_growth_summary(histories: dict, within: float = 0.01) -> pd.DataFrame:
    """When did test accuracy saturate, and what did the logit norm do afterwards? One row per run.

    Saturation epoch: the first epoch whose test accuracy is within ``within`` (a fraction; 1 point) of the
    final one. Columns: that epoch, the final epoch, test accuracy at both (percent), mean test logit norm
    at both, its change in percent, and the final accuracy on training images (clean, eval mode).
    ``histories``: row label -> ``Run.history``.
    """
    rows = {}
    for name, h in histories.items():
        final = h.iloc[-1]
        saturated = h[h["test_acc"] >= final["test_acc"] - within].iloc[0]
        rows[name] = {"saturation epoch": int(saturated["epoch"]), "final epoch": int(final["epoch"]),
                      "test acc at saturation (%)": 100 * saturated["test_acc"],
                      "final test acc (%)": 100 * final["test_acc"],
                      "‖f‖ at saturation": saturated["test_norm_mean"], "final ‖f‖": final["test_norm_mean"],
                      "‖f‖ change after saturation (%)":
                          100 * (final["test_norm_mean"] / saturated["test_norm_mean"] - 1),
                      "final train acc (%)": 100 * final["train_eval_acc"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def style_mean_std(stats: pd.DataFrame, scale: float = 100.0, decimals: int = 1, caption: str | None = None):
    """Render :func:`mean_std` output as "mean ± std" strings, best mean in bold, arrows in the headers.

    What is compared: if the rows carry a ``metric`` index level, the columns of each row (e.g. losses);
    otherwise, within each group of a first column level named ``metric``, the columns of that group (e.g.
    CE vs LogitNorm for FPR95). Best is the lowest for ``LOWER_IS_BETTER`` metrics, the highest for
    ``HIGHER_IS_BETTER``, nothing for others; ties are all bold. ``scale`` 100 shows fractions as percent
    (a number or a function of the row's metric, e.g. to leave temperatures unscaled).
    """
    mean, std = stats["mean"], stats["std"]
    factor = _row_factors(mean, scale)
    mean_s, std_s = mean.mul(factor, axis=0), std.mul(factor, axis=0)
    text = mean_s.map(lambda m: f"{m:.{decimals}f}") + std_s.map(
        lambda v: "" if np.isnan(v) else f" ± {v:.{decimals}f}")
    bold = _bold_mask(mean)
    text = text.rename(columns=lambda c: LABELS.get(c, c), index=lambda c: LABELS.get(c, c))
    styler = text.style.apply(lambda _: np.where(bold.to_numpy(), "font-weight: bold", ""), axis=None)
    styler = styler.set_table_styles([{"selector": "td", "props": "white-space: nowrap;"}])  # "41.1 ± 19.5" whole
    return styler.set_caption(caption) if caption else styler


def _row_factors(mean: pd.DataFrame, scale) -> pd.Series:
    if not callable(scale):
        return pd.Series(float(scale), index=mean.index)
    metrics = mean.index.get_level_values("metric")
    return pd.Series([float(scale(m)) for m in metrics], index=mean.index)


def _bold_mask(mean: pd.DataFrame) -> pd.DataFrame:
    bold = pd.DataFrame(False, index=mean.index, columns=mean.columns)
    if "metric" in mean.index.names:
        for i, metric in enumerate(mean.index.get_level_values("metric")):
            bold.iloc[i] = _is_best(mean.iloc[i].to_numpy(), metric)
    elif isinstance(mean.columns, pd.MultiIndex) and mean.columns.names[0] == "metric":
        for metric in mean.columns.get_level_values(0).unique():
            cols = mean.columns.get_level_values(0) == metric
            for i in range(len(mean)):
                bold.iloc[i, cols] = _is_best(mean.iloc[i, cols].to_numpy(), metric)
    return bold


def _is_best(values: np.ndarray, metric: str) -> np.ndarray:
    if metric in LOWER_IS_BETTER:
        return np.isclose(values, np.nanmin(values), rtol=0, atol=1e-9)
    if metric in HIGHER_IS_BETTER:
        return np.isclose(values, np.nanmax(values), rtol=0, atol=1e-9)
    return np.zeros(len(values), dtype=bool)


# ------------------------------------------------------------------ the OOD-results chapter's tables
def run_summary(runs) -> pd.DataFrame:
    """One row per run: its folder name, test accuracy (%) and training time (s), rounded to one decimal: what a
    chapter shows after training, so that a missing or failed run is seen before any table is read."""
    return pd.DataFrame({"run": [r.path.name for r in runs],
                         "test accuracy (%)": [100 * r.metrics["test_acc"] for r in runs],
                         "training time (s)": [r.metrics["train_time_s"] for r in runs]}).round(1)


def ood_sets(pixel: pd.DataFrame) -> pd.DataFrame:
    """The benchmark with the bar a pixel statistic sets: one row per offline OOD set, indexed by ``ood_set`` in
    :func:`lnlib.tidy.benchmark_order`, with the columns of :func:`lnlib.benchmark.describe` (kind, what, source,
    licence, independent sources) and, from the pixel records ``pixel`` (:func:`lnlib.tidy.pixel_records`), the
    ``pixel baseline FPR95`` and ``its AUROC`` (percent, one decimal) and the ``best pixel score``
    (:func:`lnlib.pixel_stats.best`): a set that counting pixels already separates says little about a network."""
    best, baseline = pixel_stats.best(pixel), pixel_stats.baseline(pixel)
    return in_benchmark_order(benchmark.describe().reset_index()).set_index("ood_set").assign(**{
        "pixel baseline FPR95": (100 * baseline["fpr95"]).round(1), "its AUROC": (100 * baseline["auroc"]).round(1),
        "best pixel score": best.groupby("ood_set")["score"].first()})


OOD_SET_COLUMNS = ["kind", "what", "independent_sources", "pixel baseline FPR95", "its AUROC", "best pixel score"]


def style_ood_sets(sets: pd.DataFrame, pixel: pd.DataFrame, positive: str = "id"):
    """:func:`ood_sets` for display (:data:`OOD_SET_COLUMNS`, left-aligned, one decimal), its caption naming the
    FPR95 convention and how many images the pixel baseline of ``pixel`` scored."""
    best = pixel_stats.best(pixel)
    return sets[OOD_SET_COLUMNS].rename_axis(None).style.format(precision=1, na_rep="—").set_caption(
        f"The offline OOD sets. Pixel baseline: {evaluate.convention(positive)}; percent; {best.n_id.iloc[0]} ID test "
        f"images against {best.n_ood.min()} to {best.n_ood.max()} images per OOD set").set_properties(
        **{"text-align": "left"})


def style_set_sources(sets: pd.DataFrame):
    """Where each set of :func:`ood_sets` comes from, and its licence, for display."""
    return sets[["source", "licence"]].rename_axis(None).style.set_caption(
        "Where each set comes from, and its licence").set_properties(**{"text-align": "left"})


def _family(comparison: pd.DataFrame) -> int:
    """The number of verdicts the Holm correction of a :func:`lnlib.stats.compare` output ran over (its ``m``)."""
    return int(comparison["m"].iloc[0]) if len(comparison) else 0


def table1_analogue(compared: pd.DataFrame, baseline: pd.Series, cfg, seeds: int, out_dir: Path,
                    positive: str = "id", protocol: str = "all"):
    """The LogitNorm paper's Table 1 at this book's scale, for display: :func:`paired_table` of the per-set FPR95
    comparison ``compared`` (:func:`lnlib.stats.compare` by ``ood_set``, with the far and synthetic averages), each
    row's ``kind`` (:func:`lnlib.benchmark.kind_of`) first and the pixel baseline (``baseline``, fractions) beside
    it; the caption names the convention, the ``seeds`` per loss, the Holm family, the runs of ``cfg`` and the raw
    numbers' folder ``out_dir``."""
    kinds = {name: benchmark.kind_of(name) for name in compared["ood_set"]} | {FAR: "far", SYNTHETIC: "synthetic"}
    table = paired_table(compared, "ood_set", baseline=baseline)
    table.insert(0, "kind", table.index.map(kinds))
    return table.style.format(precision=1, na_rep="—").set_caption(
        f"MSP FPR95, {evaluate.convention(positive, protocol)}. Percent: means over {seeds} seeds per loss; the "
        "difference is the mean paired difference with its 95% bootstrap interval over seeds; p: exact sign-flip "
        f"test; Holm over the {_family(compared)} verdicts of this page. {cfg.model}, {cfg.train_images:,} "
        f"{cfg.id_set} training images, {cfg.epochs_to_run} epochs. Raw per-seed numbers: "
        f"analysis_dir('{Path(out_dir).name}') / 'records.csv'")


def open_set_table(compared: pd.DataFrame, baseline: pd.Series, cfg, seeds: int):
    """The open-set study's verdicts for display: :func:`paired_table` of ``compared`` (:func:`lnlib.stats.compare`
    by ``row`` of :func:`lnlib.tidy.open_set_records`), rows named by :data:`LABELS`, the pixel baseline
    (``baseline``) beside the FPR95 rows; the caption names the runs of ``cfg`` (trained on eight classes) and the
    ``seeds`` per loss."""
    table = paired_table(compared, "row", baseline=baseline).rename(index=LABELS)
    table.index.name = None
    return table.style.format(precision=1, na_rep="—").set_caption(
        f"The open-set study: {cfg.model}, {cfg.train_images:,} training images of {cfg.id_set}, "
        f"{cfg.epochs_to_run} epochs, {seeds} seeds per loss. MSP FPR95 (the convention above) and test "
        f"accuracy on the eight classes, percent; as the table above, Holm over the {_family(compared)} verdicts of "
        "this page")


def per_set_verdicts(compared: pd.DataFrame, baseline: pd.Series) -> dict:
    """What the OOD-results chapter's prose says of its per-set comparison ``compared`` (as in
    :func:`table1_analogue`) against the pixel baseline ``baseline`` (FPR95 per set, fractions), as numbers and
    names for glue: ``n_worse``/``worse_sets``, the sets on which the mean FPR95 of *both* losses is above the
    baseline (the networks see less than a pixel count); ``n_sets``, the sets compared (the two averages left out);
    and ``n_lower``/``lower_sets``, ``n_higher``/``higher_sets``, where the corrected test finds a direction."""
    per_set = compared[~compared["ood_set"].isin([FAR, SYNTHETIC])]
    lower, higher = (per_set.query("direction == @d")["ood_set"] for d in ("lower", "higher"))
    bar = per_set["ood_set"].map(baseline)  # the pixel baseline of each set
    worse = per_set[(per_set["mean_a"] > bar) & (per_set["mean_b"] > bar)]
    return {"n_worse": len(worse), "worse_sets": names(worse["ood_set"]), "n_sets": len(per_set),
            "n_lower": len(lower), "n_higher": len(higher), "lower_sets": names(lower), "higher_sets": names(higher)}


def save_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as CSV atomically (folders created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(frame.to_csv(index=not isinstance(frame.index, pd.RangeIndex)), path)
    return path
