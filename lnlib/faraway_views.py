"""What the two far-away chapters show, from record frames: Hein et al.'s Table 2 and the bridge to LogitNorm
(``relu_far_away``), the paired verdicts and the per-seed clipping table (``hein_claims``), and the confidence
along the rays. The numbers come from :mod:`lnlib.tidy` (cached per run by :mod:`lnlib.hein`); this module only
selects, orders, labels and draws them.

Paper: Hein, Andriushchenko & Bitterwolf, "Why ReLU networks yield high-confidence predictions far away from the
training data and how to mitigate the problem", CVPR 2019 (Table 2, Theorem 3.1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lnlib import data, faraway, hein, losses, paper, plots, scores, stats, tables, tidy

# Table 2 and the linear-region statistics, in the order of the chapter's list (tidy.ray_records' metric names)
TABLE2 = {"median_alpha": "median α (99.9%)", "reached": "reached 99.9%", "clipped_overconfident": "clipped > 95%",
          "unique_top_slope": "unique top slope", "pattern_changes": "regions crossed",
          "median_alpha_final": "final region from α"}
SHARES = ("reached", "clipped_overconfident", "unique_top_slope")  # the rows shown as percentages
# the bridge to LogitNorm: raw and normalised confidence near the data, far away, and the limit from the slope
BRIDGE = {"msp_start": "raw MSP at α = 1", "msp_far": "raw MSP at α = 2^60",
          "normalized_start": "normalised at α = 1", "normalized_far": "normalised at α = 2^60",
          "normalized_limit": "normalised limit from V_t x"}
FLOOR = 1e-16  # float64 cannot tell a confidence closer to 1 than this from 1; the log axis stops there
# the quantities hein_claims decides, in its order: record metric -> how a table names it
VERDICTS = {"log10_median_alpha": "log10 of the median α*", "clipped_overconfident": "> 95% after clipping (%)",
            "noise auroc": "AUROC vs noise (%)", "adv. noise auroc": "AUROC vs attacked noise (%)"}
# hein_claims' per-seed clipping table (tidy.clipping_records' metrics)
CLIPPING = {"median_alpha": "median α*", "white_pixels": "white pixels at α* (median)",
            "clipped_overconfident": "> 95% after clipping", "as_white": "of those: the white image's class",
            "white_image_msp": "max softmax of a white image"}
GRID_VS_EXACT = ("median_alpha", "median_alpha_grid", "clipped_overconfident", "clipped_overconfident_grid")


def detection_records(runs, ood: pd.DataFrame, n_noise: int, eps: float, steps: int) -> pd.DataFrame:
    """ID accuracy, the offline OOD records ``ood`` (:func:`lnlib.tidy.ood_records`) averaged per run over the
    real-image and over the synthetic-noise sets (:func:`lnlib.tables.with_average`), and Hein's noise with and
    without the attack (:func:`lnlib.tidy.noise_records`): one row per (run, set, metric), ``set`` naming the group."""
    accuracy = tidy.accuracy_records(runs).assign(set="ID test")
    noise_like = ood.ood_set.isin(data.NOISE_OOD_SETS)
    offline = [tables.with_average(part).query("ood_set == 'average'").assign(set=name) for name, part in (
        ("real-image OOD sets (average)", ood[~noise_like]),
        ("synthetic-noise OOD sets (average)", ood[noise_like]))]
    noise = tidy.noise_records(runs, n_noise, eps=eps, steps=steps)
    return pd.concat([accuracy, *offline, noise], ignore_index=True)


def style_detection(records: pd.DataFrame, cfg, n_noise: int, steps: int):
    """:func:`detection_records` of one seed per method for display: rows (set, metric), methods as columns."""
    summary = tables.mean_std(records, ["set", "metric"], "method").rename(columns=tables.LABELS, level=1)
    return tables.style_mean_std(summary, caption=f"{cfg.dataset}, {cfg.model}, 1 seed per method; MSP; FPR95 with ID "
                                 f"as positive; noise: {n_noise} images from the ID test set, adv. noise: {steps}-step "
                                 f"PGD in ε = {cfg.pgd_eps:g} against each model")


def by_method(rays: pd.DataFrame, metrics: dict, methods: list[str]) -> pd.DataFrame:
    """Median-over-rays statistics of :func:`lnlib.tidy.ray_records`: rows (set, metric) for the ``metrics``
    (keys, in the records' order), one column per method in ``methods``' order, headed by its label."""
    return (rays[rays["metric"].isin(list(metrics))].pivot_table(index=["set", "metric"], columns="method",
                                                                 values="value", sort=False)[methods]
            .rename(columns=tables.LABELS))


def style_table2(table2: pd.DataFrame, caption: str):
    """:func:`by_method` of :data:`TABLE2` for display: shares in percent, the rest to 3 significant digits."""
    shares = pd.IndexSlice[[i for i in table2.index if i[1] in SHARES], :]
    return (table2.style.format(lambda v: f"{v:.3g}").format("{:.1%}", subset=shares)
            .format_index(TABLE2.get, level=1).set_caption(caption))


def per_set_fpr95(ood: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """MSP FPR95 per offline OOD set (rows, in the records' order) and method (columns, labelled), from
    :func:`lnlib.tidy.ood_records` of one seed per method."""
    return (ood.query("metric == 'fpr95'").pivot_table(index="ood_set", columns="method", values="value",
                                                       sort=False)[methods].rename(columns=tables.LABELS))


def curve_panels(limits: dict, methods: list[str], sets, score=None) -> dict:
    """The panels of :func:`lnlib.plots.alpha_curves`: ``{set: {method label: (α grid, values (N, A))}}`` from
    ``limits[(method, set)]`` (:func:`lnlib.hein.scan`). Without ``score``: 1 − max softmax along each ray, floored
    at :data:`FLOOR` for a log axis; with ``score`` (a log-confidence function of the logits): that confidence."""
    def values(limit):
        if score is None:
            return np.maximum(-np.expm1(limit.curve()), FLOOR)
        return np.exp(limit.curve(score))
    return {name: {tables.LABELS[m]: (faraway.ALPHAS, values(limits[m, name])) for m in methods} for name in sets}


def confidence_curves(limits: dict, methods: list[str], sets, num_classes: int):
    """Theorem 3.1 measured: 1 − max softmax along the rays α·u of each set, per method (median, 10–90% band), on a
    log axis, with the 99.9% level and the uniform prediction 1/K marked."""
    return plots.alpha_curves(curve_panels(limits, methods, sets), "1 − max softmax (log scale)", yscale="log",
                              reference={"99.9% confidence": 1e-3, "uniform (1/K)": 1 - 1 / num_classes},
                              title="Confidence along the rays α·u")


def largest_normalized(tau: float, num_classes: int) -> float:
    """p* = exp(−(the smallest LogitNorm loss)): the largest normalised confidence ``max softmax(f/(τ‖f‖))`` any
    logit vector can have at temperature τ with K classes (:func:`lnlib.losses.logit_norm_min_loss`)."""
    return float(np.exp(-losses.logit_norm_min_loss(tau, num_classes)))


def normalized_curves(limits: dict, methods: list[str], sets, tau: float, num_classes: int):
    """The normalised confidence ``max softmax(f/(τ‖f‖))`` along the rays, per method, with its largest possible
    value p* (:func:`largest_normalized`) and 1/K marked: the bridge from Hein et al. to LogitNorm."""
    p_star = largest_normalized(tau, num_classes)
    panels = curve_panels(limits, methods, sets, lambda f: scores.log_normalized_confidence(f, tau))
    reference = {f"largest possible, p* = {p_star:.3f}": p_star, "uniform (1/K)": 1 / num_classes}
    return plots.alpha_curves(panels, f"max softmax(f / (τ‖f‖)), τ = {tau:g}", reference=reference,
                              title="Normalised confidence along the rays α·u")


def bridge_medians(rays: pd.DataFrame) -> dict[str, pd.Series]:
    """For each metric of :data:`BRIDGE`, the medians of :func:`lnlib.tidy.ray_records` indexed by (method, set)."""
    return {m: rays[rays["metric"] == m].set_index(["method", "set"])["value"] for m in BRIDGE}


def style_bridge(bridge: pd.DataFrame, n_rays: int, tau: float):
    """:func:`by_method` of :data:`BRIDGE` for display: four decimals, the rows named in words."""
    return bridge.style.format("{:.4f}").format_index(BRIDGE.get, level=1).set_caption(
        f"Medians over {n_rays} rays per set; normalised confidence at τ = {tau:g} for every model")


def bridge_check(rays: pd.DataFrame, tau: float, num_classes: int) -> str:
    """Two lines: how far the normalised confidence measured at the largest α is from the limit predicted by the
    final region's slope (largest over methods and sets; float64 rounding if the theory holds), and p*."""
    median = bridge_medians(rays)
    error = (median["normalized_far"] - median["normalized_limit"]).abs().max()
    return (f"largest |measured at α = 2^60 − limit from the slope| over methods and sets: {error:.2e}\n"
            f"largest possible normalised confidence at τ = {tau:g}, K = {num_classes}: p* = 1 − "
            f"{1 - largest_normalized(tau, num_classes):.1e}")


def style_paper_table2():
    """Hein et al.'s Table 2 (:func:`lnlib.paper.hein_table2`) for display beside ours."""
    return paper.hein_table2().style.format({"median_alpha": "{:.3g}", "clipped_overconfident": "{:.1%}"}).set_caption(
        "Hein et al. 2019, Table 2 (verified from the image in the official repository): 10,000 uniform images; "
        "'plain' = cross-entropy; ACET with 40 steps, ε = 0.3")


def claim_records(runs, u: torch.Tensor, n_noise: int, eps: float, steps: int) -> pd.DataFrame:
    """Everything hein_claims decides, one row per (run, set, metric): Table 2 on the uniform-noise directions ``u``
    (:func:`lnlib.tidy.table2_records`) and MSP against Hein's noise, clean and attacked
    (:func:`lnlib.tidy.noise_records`)."""
    return pd.concat([tidy.table2_records(runs, {hein.UNIFORM_NOISE: u}),
                      tidy.noise_records(runs, n_noise, eps, steps)], ignore_index=True)


def style_grid_vs_exact(records: pd.DataFrame, n_rays: int, seeds: int):
    """:func:`grid_vs_exact` for display: α* to two decimals, the clipped share in percent; mean ± std over seeds."""
    return tables.style_mean_std(
        grid_vs_exact(records).rename(columns=tables.LABELS, level=1), decimals=2,
        scale=lambda metric: 1 if metric.startswith("median") else 100,
        caption=f"Uniform noise, {n_rays} images per run, {seeds} seeds: the median α at which confidence reaches "
        "99.9% and the share > 95% after clipping (%), α found by bisection and read off the 2^k grid; mean ± std "
        "over seeds")


def style_attack(records: pd.DataFrame, n_noise: int, steps: int, eps: float, seeds: int):
    """MSP AUROC against Hein's noise before and after the attack, mean ± std over seeds, one row per set."""
    attacked = records.query("metric == 'auroc'").assign(metric=lambda r: r["set"] + " AUROC")
    return tables.style_mean_std(tables.mean_std(attacked, "metric", "method").rename(columns=tables.LABELS, level=1),
                                 caption=f"MSP AUROC (%), ID test vs {n_noise} noise images, before and after a "
                                 f"{steps}-step PGD attack in ε = {eps:g}; mean ± std over {seeds} seeds")


def verdict_records(records: pd.DataFrame) -> pd.DataFrame:
    """The rows of hein_claims' records that it decides, in :data:`VERDICTS`' order; an AUROC's metric is named
    by its set (``noise auroc``, ``adv. noise auroc``), so that one metric column tells the four apart."""
    tested = records.assign(metric=np.where(records["metric"] == "auroc", records["set"] + " auroc",
                                            records["metric"]))
    return pd.concat([tested[tested["metric"] == q] for q in VERDICTS])


def _in_log(metric: str) -> bool:
    return metric == "log10_median_alpha"  # α* is compared on a log scale, the rest in percent points


def verdict_table(found: pd.DataFrame, against: str) -> pd.DataFrame:
    """:func:`lnlib.stats.compare_each` of :func:`verdict_records` as a display table, one row per (method,
    quantity): log10 α* to two decimals, the rest in percent points (:func:`lnlib.tables.paired_table`)."""
    labels = [f"{tables.LABELS[m]}: {VERDICTS[q]}" for m, q in zip(found["method"], found["metric"], strict=True)]
    in_log = {r: _in_log(q) for r, q in zip(labels, found["metric"], strict=True)}
    return tables.paired_table(found.assign(row=labels), "row", labels=(tables.LABELS[against], "method"),
                               scale=lambda r: 1 if in_log[r] else 100, decimals=lambda r: 2 if in_log[r] else 1)


def verdict_panels() -> dict:
    """:func:`lnlib.plots.strips_by_metric` panels for :data:`VERDICTS`: (x label, scale, no log axis)."""
    return {q: (x, 1 if _in_log(q) else 100, False) for q, x in VERDICTS.items()}


def verdict_glue(found: pd.DataFrame) -> dict:
    """Each verdict in words for the prose, keyed ``verdict_<method>_<metric>`` (``. `` and spaces as ``_``)."""
    return {f"verdict_{row['method']}_{row['metric'].replace('. ', '_').replace(' ', '_')}": stats.verdict_words(
        row, unit="in log10 α" if _in_log(row["metric"]) else "points", scale=1 if _in_log(row["metric"]) else 100,
        digits=2 if _in_log(row["metric"]) else 1) for _, row in found.iterrows()}


def grid_vs_exact(records: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds (:func:`lnlib.tables.mean_std`) of the median α* and the clipped share on uniform
    noise, found by bisection and read off the 2^k grid; rows the metrics, columns (mean/std, method)."""
    rows = records[(records["set"] == hein.UNIFORM_NOISE) & records["metric"].isin(GRID_VS_EXACT)]
    return tables.mean_std(rows, "metric", "method")


def clipping_table(per_seed: pd.DataFrame, caption: str):
    """hein_claims' per-seed table (a pivot of :func:`lnlib.tidy.clipping_records`, one row per seed), ordered
    by median α*, for display: α* to 3 significant digits, the rest in percent."""
    return (per_seed.sort_values("median_alpha")[list(CLIPPING)].rename(columns=CLIPPING).style
            .format("{:.1%}", na_rep="–").format("{:.3g}", subset=["median α*"]).set_caption(caption))
