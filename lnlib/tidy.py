"""Tidy record frames: one row per (run, ..., metric), the raw numbers behind every table and figure of the book.

Every frame starts with the columns of :func:`run_columns` (``loss, method, tau, seed, run``) and ends with
``metric, value``; tables (:mod:`lnlib.tables`) are views of them, and the chapters save them as CSV.

- :func:`ood_records`, :func:`accuracy_records`, :func:`calibration_records`: from a run's cached outputs
  (:mod:`lnlib.evaluate`);
- :func:`ray_records`, :func:`noise_records`: Hein et al.'s far-away statistics (:mod:`lnlib.hein`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lnlib import calibration, faraway, hein, metrics, scores
from lnlib.devices import resolve_device
from lnlib.evaluate import ID_TEST, ID_VAL, ood_metrics_per_set, ood_sets, outputs, predict, set_scores
from lnlib.runs import Run


def run_columns(run: Run) -> dict:
    """The columns that identify a run in every record frame: loss, method, tau (NaN for CE), seed, run."""
    cfg = run.config
    return {"loss": cfg.loss, "method": cfg.method, "tau": cfg.tau if cfg.loss == "logitnorm" else np.nan,
            "seed": cfg.seed, "run": run.path.name}


def ood_records(runs, score_list=("msp",), params=None, positive: str = "id", device="auto",
                protocol: str = "all") -> pd.DataFrame:
    """One row per (run, score, OOD set, metric): the raw numbers behind every OOD table.

    ``params``: ``{score: {param: value}}`` overriding :data:`lnlib.scores.SCORES` defaults. Columns:
    ``loss, method, tau, seed, run, score, ood_set, n_id, n_ood, metric, value`` with ``value`` a fraction in
    [0, 1]; metrics ``fpr95`` (under ``positive``'s convention), ``auroc``, ``aupr_in``, ``aupr_out``.
    ``protocol``: ``'all'`` OOD images (default) or the ``'official'`` code's sampling
    (:func:`lnlib.metrics.ood_metrics_protocol`); ``n_ood`` is the number scored per draw.
    """
    params = params or {}
    stray = sorted(set(params) - set(score_list))
    if stray:
        raise ValueError(f"params given for {stray}, which are not in score_list={list(score_list)}")
    for name in score_list:  # every name and parameter is checked before any run is touched
        scores.score_params(name, **params.get(name, {}))
    metrics.check_positive(positive)
    metrics.check_protocol(protocol)
    rows = []
    for run in runs:
        for name in score_list:
            by_set = set_scores(run, name, [ID_TEST, *ood_sets(run.config)], device, **params.get(name, {}))
            for ood_set, (m, n_ood) in ood_metrics_per_set(by_set, positive, protocol).items():
                sizes = {"n_id": len(by_set[ID_TEST]), "n_ood": n_ood}
                rows += [{**run_columns(run), "score": name, "ood_set": ood_set, **sizes, "metric": k, "value": v}
                         for k, v in m.items()]
    return pd.DataFrame(rows)


def accuracy_records(runs) -> pd.DataFrame:
    """One row per run: ``loss, method, tau, seed, run, metric='accuracy', value`` (ID test accuracy, a fraction)."""
    return pd.DataFrame([{**run_columns(run), "metric": "accuracy", "value": run.metrics["test_acc"]}
                         for run in runs])


def calibration_records(runs, device="auto") -> pd.DataFrame:
    """Temperature scaling per run: T fitted on the validation split, the test set measured before and after.

    Columns ``loss, method, tau, seed, run, metric, stage, value``: metric in ece, nll, mmc, accuracy (fractions;
    NLL in nats) with stage ``before`` (T = 1) or ``after`` (the fitted T), and ``temperature`` (stage
    ``after``: the fitted T).
    """
    rows = []
    for run in runs:
        out = outputs(run, [ID_TEST, ID_VAL], device)
        fitted = calibration.fit_temperature(out[ID_VAL].logits, out[ID_VAL].labels)
        for stage, t in (("before", 1.0), ("after", fitted)):
            report = calibration.calibration_report(out[ID_TEST].logits, out[ID_TEST].labels, t)
            rows += [{**run_columns(run), "metric": k, "stage": stage, "value": v} for k, v in report.items()]
        rows.append({**run_columns(run), "metric": "temperature", "stage": "after", "value": fitted})
    return pd.DataFrame(rows)


def ray_records(runs, inputs: dict[str, torch.Tensor], tau: float, alphas=faraway.ALPHAS,
                level: float = 0.999, clipped_level: float = 0.95, device="auto") -> pd.DataFrame:
    """One row per (run, set of directions, metric); columns as :func:`ood_records` plus
    ``set``. Metrics, each over the ``N`` rays of the set:

    - ``median_alpha``, ``reached``, ``clipped_overconfident``: :func:`lnlib.faraway.alpha_scaling_table`;
    - ``unique_top_slope``: share of rays whose final region has one top slope, so MSP → 1 (Theorem 3.1);
    - ``pattern_changes``: median number of linear regions crossed along the grid; ``median_alpha_final``;
    - ``msp_start``, ``msp_far``: median raw MSP at α = 1 and at the largest α;
    - ``normalized_start``, ``normalized_far``, ``normalized_limit``: median ``max softmax(f/(τ‖f‖))`` at α = 1,
      at the largest α, and its limit ``max softmax(Vx/(τ‖Vx‖))`` from the final region's slope.
    """
    alphas, device = np.asarray(alphas, dtype=float), resolve_device(device)
    rows = []
    for run in runs:
        model = hein.run_pixel_model(run, device)
        for name, u in inputs.items():
            limit = hein.scan(run, name, u, alphas, device)
            log_msp = limit.curve()
            table = faraway.alpha_scaling_table(model, u.to(device), alphas, level, clipped_level,
                                                log_confidence=log_msp)
            msp = np.exp(log_msp)
            normalized = np.exp(limit.curve(lambda f: scores.log_normalized_confidence(f, tau)))
            values = {**table, "unique_top_slope": float((limit.limit_log_confidence == 0).mean()),
                      "pattern_changes": float(np.median(limit.pattern_changes)),
                      "median_alpha_final": float(np.median(limit.alpha_final)),
                      "msp_start": float(np.median(msp[:, 0])), "msp_far": float(np.median(msp[:, -1])),
                      "normalized_start": float(np.median(normalized[:, 0])),
                      "normalized_far": float(np.median(normalized[:, -1])),
                      "normalized_limit": float(np.median(scores.normalized_confidence(limit.slope, tau)))}
            rows += [{**run_columns(run), "set": name, "n": len(u), "metric": k, "value": v}
                     for k, v in values.items()]
    return pd.DataFrame(rows)


def noise_records(runs, n: int, eps: float = 0.3, steps: int = 40, seed: int = 0, device="auto") -> pd.DataFrame:
    """ID test vs Hein's noise and vs adversarial noise, by MSP: one row per (run, set, metric).

    The noise is :func:`lnlib.faraway.hein_noise` made from the first ``n`` ID test images; "adversarial
    noise" is :func:`lnlib.faraway.confidence_pgd` from there (``eps`` in pixels, ``steps`` steps of
    ``eps/steps``), against each model separately. Metrics: ``mmc`` (on the OOD set) and, against all ID test
    images, ``auroc`` and ``fpr95`` (ID positive), fractions.
    """
    device = resolve_device(device)
    rows = []
    for run in runs:
        cfg = run.config
        model = hein.run_pixel_model(run, device)
        # the draws come from CPU generators, so the noise is the same images on every device
        noise = faraway.hein_noise(hein.test_pixels(cfg.dataset, n).to(device), torch.Generator().manual_seed(seed))
        adversarial = faraway.confidence_pgd(model, noise, eps, steps, generator=torch.Generator().manual_seed(seed))
        id_logits = outputs(run, [ID_TEST], device)[ID_TEST].logits
        for name, images in (("noise", noise), ("adv. noise", adversarial)):
            ood_logits = predict(model, images, cfg.eval_batch_size).cpu()
            m = metrics.ood_metrics(scores.log_msp(id_logits), scores.log_msp(ood_logits))
            values = {"mmc": metrics.mmc(ood_logits), "auroc": m["auroc"], "fpr95": m["fpr95"]}
            rows += [{**run_columns(run), "set": name, "n": n, "metric": k, "value": v} for k, v in values.items()]
    return pd.DataFrame(rows)
