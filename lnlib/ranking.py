"""What MSP ranks by: the raw logit norm ‖f‖₂ beside the confidence, per run and OOD set.

LogitNorm (Wei et al., ICML 2022, Eq. 4) trains ``softmax(f / (τ‖f‖))``: its loss sees the direction of ``f``
only, so nothing in the loss sets the raw scale ``‖f‖``; weight decay pulls it down. At test time MSP reads
``softmax(f)`` at that raw scale. With ``‖f‖`` of a few units the softmax is far from saturated, and at a fixed
direction its maximum rises with ``‖f‖`` (``∂/∂s max softmax(s·u) ≥ 0`` for a unit ``u`` whose largest entry is
unique). MSP can then order inputs mostly by their norm, and detect an OOD set exactly as well as that set's norms
sit below the ID images'. A cross-entropy network's larger norms saturate the softmax: there the margin between the
two largest logits, a matter of direction, counts as much as the scale.

:func:`norm_records` measures, per run and OOD set, over the ID test images and that set's images together:

* ``rank_corr`` — Spearman's ρ between log-MSP and ``‖f‖₂``: 1 when MSP orders the images exactly by their norm;
* ``norm_ratio`` — the OOD set's median ``‖f‖₂`` over the ID test images' median: below 1 when the OOD images get
  smaller logits;
* ``fpr95_msp`` and ``fpr95_norm`` — FPR95 of MSP, and of ``‖f‖₂`` used as the score itself (higher = more ID).

:func:`scale_records` gathers, per run, what the raw scale ``‖f‖`` decides: the ID test images' median norm, the
calibration before and after temperature scaling, and MSP's FPR95 and norm ratio on the benchmark's averages; the
weight-decay chapter compares them with and without weight decay.

Far from the data the norm is the wrong thing to rank by: along a ray ``αx`` a ReLU network's logits grow linearly
in ``α`` (Hein et al., CVPR 2019, Sec. 3), so a norm detector calls far-away inputs more in-distribution than
the training images (the far-away chapter).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from lnlib import metrics, scores
from lnlib.evaluate import ID_TEST, ood_sets, outputs
from lnlib.tidy import (
    FAR,
    SYNTHETIC,
    accuracy_records,
    calibration_records,
    ood_records,
    run_columns,
    with_benchmark_averages,
)

NORM_METRICS = ("rank_corr", "norm_ratio", "fpr95_msp", "fpr95_norm")


def rank_corr(confidence, norm) -> float:
    """Spearman's ρ between two score vectors of shape ``(N,)`` (ties get their average rank); NaN when either is
    constant."""
    confidence, norm = np.asarray(confidence, dtype=np.float64), np.asarray(norm, dtype=np.float64)
    if confidence.shape != norm.shape or confidence.ndim != 1:
        raise ValueError(f"rank_corr needs two vectors of one length, got shapes {confidence.shape} and {norm.shape}")
    if np.ptp(confidence) == 0 or np.ptp(norm) == 0:
        return float("nan")
    return float(spearmanr(confidence, norm).statistic)


def norm_measures(id_logits, ood_logits, positive: str = "id") -> dict[str, float]:
    """The four measures of the module docstring for one ID and one OOD logit array, ``(N, K)`` and ``(M, K)``."""
    metrics.check_positive(positive)
    msp = {"id": scores.log_msp(id_logits), "ood": scores.log_msp(ood_logits)}
    norm = {"id": scores.logit_norm(id_logits), "ood": scores.logit_norm(ood_logits)}
    return {"rank_corr": rank_corr(np.concatenate([msp["id"], msp["ood"]]),
                                   np.concatenate([norm["id"], norm["ood"]])),
            "norm_ratio": float(np.median(norm["ood"]) / np.median(norm["id"])),
            "fpr95_msp": metrics.ood_metrics(msp["id"], msp["ood"], positive)["fpr95"],
            "fpr95_norm": metrics.ood_metrics(norm["id"], norm["ood"], positive)["fpr95"]}


def norm_records(runs, positive: str = "id", device="auto") -> pd.DataFrame:
    """One row per (run, OOD set, measure) from the runs' cached logits: columns :func:`~lnlib.tidy.run_columns`,
    ``ood_set, metric, value`` with ``metric`` one of :data:`NORM_METRICS` (FPR95 a fraction, under ``positive``'s
    convention)."""
    metrics.check_positive(positive)
    rows = []
    for run in runs:
        names = ood_sets(run.config)
        out = outputs(run, [ID_TEST, *names], device)
        for name in names:
            measures = norm_measures(out[ID_TEST].logits, out[name].logits, positive)
            rows += [{**run_columns(run), "ood_set": name, "metric": k, "value": v} for k, v in measures.items()]
    return pd.DataFrame(rows)


def ratio_fpr_corr(records: pd.DataFrame) -> pd.Series:
    """Per loss, across its runs and OOD sets: Spearman's ρ between the norm ratio and MSP's FPR95 (near 1: the
    smaller a set's norms against the ID images', the better MSP detects it). ``records``: :func:`norm_records`."""
    wide = records.pivot_table(index=["loss", "seed", "ood_set"], columns="metric", values="value").reset_index()
    return wide.groupby("loss", sort=False).apply(lambda g: rank_corr(g["norm_ratio"], g["fpr95_msp"]),
                                                 include_groups=False)


SCALE_METRICS = ("accuracy", "id_norm", "ece", "ece_scaled", "temperature", "fpr95_far", "fpr95_synthetic",
                 "norm_ratio_far", "norm_ratio_synthetic")


def scale_records(runs, positive: str = "id", device="auto") -> pd.DataFrame:
    """One row per (run, measure) of :data:`SCALE_METRICS`: test ``accuracy``; ``id_norm``, the median ``‖f‖₂`` of
    the ID test images; ``ece`` of ``softmax(f)`` and ``ece_scaled`` of ``softmax(f/T)`` with ``temperature`` T
    fitted on the validation split (:func:`lnlib.tidy.calibration_records`); MSP's ``fpr95`` (``positive``'s
    convention) and the ``norm_ratio`` of :func:`norm_records`, each averaged over the far and over the synthetic
    sets per run. Columns ``loss, method, tau, weight_decay, seed, run, metric, value``; fractions stay fractions."""
    runs = list(runs)
    norms = pd.DataFrame([{**run_columns(run), "metric": "id_norm", "value": float(np.median(
        scores.logit_norm(outputs(run, [ID_TEST], device)[ID_TEST].logits)))} for run in runs])
    rows = [accuracy_records(runs), norms]
    calibration = calibration_records(runs, device).query("metric in ('ece', 'temperature')")
    rows.append(calibration.assign(metric=np.where((calibration["metric"] == "ece") & (calibration["stage"] == "after"),
                                                   "ece_scaled", calibration["metric"])).drop(columns="stage"))
    fpr = ood_records(runs, ["msp"], positive=positive, device=device).query("metric == 'fpr95'")
    ratio = norm_records(runs, positive, device).query("metric == 'norm_ratio'")
    for frame, name in ((fpr, "fpr95"), (ratio, "norm_ratio")):
        averaged = with_benchmark_averages(frame)
        averaged = averaged[averaged["ood_set"].isin([FAR, SYNTHETIC])]
        rows.append(averaged.assign(metric=[f"{name}_{'far' if s == FAR else 'synthetic'}"
                                            for s in averaged["ood_set"]]))
    keep = [*run_columns(runs[0]), "metric", "value"] if runs else ["metric", "value"]
    return pd.concat([r[keep] for r in rows], ignore_index=True)
