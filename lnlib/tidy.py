"""Tidy record frames: one row per (run, ..., metric), the raw numbers behind every table and figure of the book.

Every frame starts with the columns of :func:`run_columns` (``loss, method, tau, weight_decay, seed, run``) and
ends with ``metric, value``; tables (:mod:`lnlib.tables`) are views of them, and the chapters save them as CSV.

- :func:`ood_records`, :func:`accuracy_records`, :func:`calibration_records`: from a run's cached outputs
  (:mod:`lnlib.evaluate`);
- :func:`ray_records`, :func:`table2_records`, :func:`clipping_records`, :func:`noise_records`: Hein et al.'s
  far-away statistics (:mod:`lnlib.hein`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lnlib import benchmark, calibration, faraway, hein, metrics, pixel_stats, scores
from lnlib.config import TrainConfig
from lnlib.data import NEAR_OOD, VALIDATION_OOD_SETS, run_splits
from lnlib.evaluate import ID_TEST, ID_VAL, evaluation_sets, ood_metrics_per_set, ood_sets, outputs, set_scores
from lnlib.runs import Run


def run_columns(run: Run) -> dict:
    """The columns that identify a run in every record frame: loss, method, tau (NaN for CE), weight_decay, seed,
    run."""
    cfg = run.config
    return {"loss": cfg.loss, "method": cfg.method, "tau": cfg.tau if cfg.loss == "logitnorm" else np.nan,
            "weight_decay": cfg.weight_decay, "seed": cfg.seed, "run": run.path.name}


def ood_records(runs, score_list=("msp",), params=None, positive: str = "id", device="auto",
                protocol: str = "all") -> pd.DataFrame:
    """One row per (run, score, OOD set, metric): the raw numbers behind every OOD table.

    ``params``: ``{score: {param: value}}`` overriding :data:`lnlib.scores.SCORES` defaults. Columns:
    :func:`run_columns`, ``score, ood_set, n_id, n_ood, metric, value`` with ``value`` a fraction in
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


def validation_records(runs, positive: str = "id", device="auto") -> pd.DataFrame:
    """What a hyperparameter may be chosen on: per run, MSP FPR95/AUROC of the ID *validation* images (never
    trained on) against each validation OOD set (:data:`lnlib.data.VALIDATION_OOD_SETS`), and the validation
    accuracy. No test image is read. Columns :func:`run_columns`, ``ood_set, metric, value`` with metrics
    ``val_fpr95``, ``val_auroc`` and ``val_accuracy`` (``ood_set`` empty), fractions."""
    metrics.check_positive(positive)
    rows = []
    for run in runs:
        by_set = set_scores(run, "msp", [ID_VAL, *VALIDATION_OOD_SETS], device)
        for name in VALIDATION_OOD_SETS:
            m = metrics.ood_metrics(by_set[ID_VAL], by_set[name], positive)
            rows += [{**run_columns(run), "ood_set": name, "metric": f"val_{k}", "value": m[k]}
                     for k in ("fpr95", "auroc")]
        val = outputs(run, [ID_VAL], device)[ID_VAL]
        rows.append({**run_columns(run), "ood_set": None, "metric": "val_accuracy",
                     "value": metrics.accuracy(val.logits, val.labels)})
    return pd.DataFrame(rows)


PIXEL_REFERENCE = 10_000  # ID training images that the ``typical`` pixel scores compare with


def pixel_records(cfg: TrainConfig, positive: str = "id", names=None) -> pd.DataFrame:
    """The pixel baseline's raw numbers: one row per (pixel statistic, form, OOD set, metric), no network.

    Scores the very images a run of ``cfg`` is evaluated on (:func:`lnlib.evaluate.evaluation_sets`: the ID test
    set against the OOD sets ``names``, default every one of the run's) with each statistic and form of
    :mod:`lnlib.pixel_stats`, the ``typical`` form against a fixed subset of the training images. Columns:
    ``statistic, form, ood_set, n_id, n_ood, metric, value``; :func:`lnlib.pixel_stats.best` picks the baseline.
    """
    metrics.check_positive(positive)
    sets = evaluation_sets(cfg, [ID_TEST, *(ood_sets(cfg) if names is None else names)])
    train = run_splits(cfg.dataset, cfg.val_size, cfg.held_out)["train"]
    reference = train.subset(PIXEL_REFERENCE).images
    rows = []
    for statistic in pixel_stats.STATISTICS:
        for form in pixel_stats.FORMS:
            by_set = {n: pixel_stats.scores(statistic, form, reference, s.images) for n, s in sets.items()}
            for ood_set, (m, n_ood) in ood_metrics_per_set(by_set, positive).items():
                rows += [{"statistic": statistic, "form": form, "ood_set": ood_set, "n_id": len(by_set[ID_TEST]),
                          "n_ood": n_ood, "metric": k, "value": v} for k, v in m.items()]
    return pd.DataFrame(rows)


def benchmark_pixel_records(cfg: TrainConfig, open_cfg: TrainConfig, positive: str = "id") -> pd.DataFrame:
    """:func:`pixel_records` of every offline OOD set: ``cfg``'s sets, then the near set (:data:`lnlib.data.NEAR_OOD`,
    the classes ``open_cfg`` holds out) against ``open_cfg``'s own ID test images, the classes it trains on (the
    images its runs are evaluated on). Columns as :func:`pixel_records`."""
    near = pixel_records(open_cfg, positive=positive, names=[NEAR_OOD])
    return pd.concat([pixel_records(cfg, positive=positive), near], ignore_index=True)


def accuracy_records(runs) -> pd.DataFrame:
    """One row per run: :func:`run_columns`, ``metric='accuracy', value`` (ID test accuracy, a fraction)."""
    return pd.DataFrame([{**run_columns(run), "metric": "accuracy", "value": run.metrics["test_acc"]}
                         for run in runs])


def calibration_records(runs, device="auto") -> pd.DataFrame:
    """Temperature scaling per run: T fitted on the validation split, the test set measured before and after.

    Columns :func:`run_columns`, ``metric, stage, value``: metric in ece, nll, mmc, accuracy (fractions;
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
                device="auto") -> pd.DataFrame:
    """One row per (run, set of directions, metric); columns as :func:`ood_records` plus
    ``set``. Metrics, each over the ``N`` rays of the set:

    - ``median_alpha``, ``reached``, ``clipped_overconfident``: Hein et al.'s Table 2 (:func:`table2_records`);
    - ``unique_top_slope``: share of rays whose final region has one top slope, so MSP → 1 (Theorem 3.1);
    - ``pattern_changes``: median number of linear regions crossed along the grid; ``median_alpha_final``;
    - ``msp_start``, ``msp_far``: median raw MSP at α = 1 and at the largest α;
    - ``normalized_start``, ``normalized_far``, ``normalized_limit``: median ``max softmax(f/(τ‖f‖))`` at α = 1,
      at the largest α, and its limit ``max softmax(Vx/(τ‖Vx‖))`` from the final region's slope.
    """
    rows = [table2_records(runs, inputs, alphas, device)]
    for run in runs:
        for name, u in inputs.items():
            limit = hein.scan(run, name, u, alphas, device)
            msp = np.exp(limit.curve())
            normalized = np.exp(limit.curve(lambda f: scores.log_normalized_confidence(f, tau)))
            values = {"unique_top_slope": float((limit.limit_log_confidence == 0).mean()),
                      "pattern_changes": float(np.median(limit.pattern_changes)),
                      "median_alpha_final": float(np.median(limit.alpha_final)),
                      "msp_start": float(np.median(msp[:, 0])), "msp_far": float(np.median(msp[:, -1])),
                      "normalized_start": float(np.median(normalized[:, 0])),
                      "normalized_far": float(np.median(normalized[:, -1])),
                      "normalized_limit": float(np.median(scores.normalized_confidence(limit.slope, tau)))}
            rows.append(pd.DataFrame([{**run_columns(run), "set": name, "n": len(u), "metric": k, "value": v}
                                      for k, v in values.items()]))
    return pd.concat(rows, ignore_index=True)


def table2_records(runs, inputs: dict[str, torch.Tensor], alphas=faraway.ALPHAS, device="auto") -> pd.DataFrame:
    """Hein et al.'s Table 2 per run and set of directions (:func:`lnlib.faraway.table2_summary` of the cached
    :func:`lnlib.hein.table2_rays`): metrics ``median_alpha`` (exact α* at 99.9%, median over rays), ``reached``,
    ``clipped_overconfident`` (share > 95% after clipping back into the box) and ``log10_median_alpha`` (what a
    paired comparison takes: α* spans orders of magnitude). One row per (run, set, metric)."""
    rows = []
    for run in runs:
        for name, u in inputs.items():
            values = faraway.table2_summary(hein.table2_rays(run, name, u, alphas, device=device))
            values["log10_median_alpha"] = float(np.log10(values["median_alpha"]))
            rows += [{**run_columns(run), "set": name, "n": len(u), "metric": k, "value": v} for k, v in values.items()]
    return pd.DataFrame(rows)


def clipping_records(runs, u: torch.Tensor, device="auto") -> pd.DataFrame:
    """What the second row of Table 2 measures, one row per (run, metric) (uniform-noise directions ``u``, cached
    :func:`lnlib.hein.table2_rays`). Metrics: ``median_alpha`` (the median α*), ``white_pixels`` (the median share of
    pixels clipped to 1 in ``clip(α*·u, 0, 1)``), ``clipped_overconfident`` (the share of those images > 95%
    confident), ``white_image_class`` and ``white_image_msp`` (the class and max softmax of an all-white image) and
    ``as_white`` (the share of the overconfident clipped images given the white image's class; NaN if none)."""
    rows = []
    for run in runs:
        rays = hein.table2_rays(run, hein.UNIFORM_NOISE, u, device=device)
        star = torch.from_numpy(rays["alpha_star"]).view(-1, *[1] * (u.ndim - 1))
        white_pixels = ((star * u.double()) >= 1).flatten(1).double().mean(1).numpy()
        white = faraway.clipped_logits(hein.run_pixel_model(run, device), torch.ones_like(u[:1]), np.ones(1))
        over = rays["clipped_msp"] > faraway.CLIPPED_LEVEL
        values = {"median_alpha": float(np.median(rays["alpha_star"])), "white_pixels": float(np.median(white_pixels)),
                  "clipped_overconfident": float(over.mean()), "white_image_class": int(white.argmax()),
                  "white_image_msp": float(scores.msp(white)[0]),
                  "as_white": float((rays["clipped_class"][over] == white.argmax()).mean()) if over.any()
                  else float("nan")}
        rows += [{**run_columns(run), "n": len(u), "metric": k, "value": v} for k, v in values.items()]
    return pd.DataFrame(rows)


def noise_records(runs, n: int, eps: float = 0.3, steps: int = 40, seed: int = 0, device="auto") -> pd.DataFrame:
    """ID test vs Hein's noise and vs adversarial noise, by MSP: one row per (run, set, metric).

    The noise is :func:`lnlib.faraway.hein_noise` made from the first ``n`` ID test images; "adversarial
    noise" is :func:`lnlib.faraway.confidence_pgd` from there (``eps`` in pixels, ``steps`` steps of
    ``eps/steps``), against each model separately (:func:`lnlib.hein.noise_logits`, cached). Metrics: ``mmc``
    (on the OOD set) and, against all ``n_id`` ID test images, ``auroc`` and ``fpr95`` (ID positive), fractions.
    """
    rows = []
    for run in runs:
        logits = hein.noise_logits(run, n, eps, steps, seed, device)
        id_logits = outputs(run, [ID_TEST], device)[ID_TEST].logits
        for name, key in (("noise", "noise"), ("adv. noise", "adversarial")):
            m = metrics.ood_metrics(scores.log_msp(id_logits), scores.log_msp(logits[key]))
            values = {"mmc": metrics.mmc(logits[key]), "auroc": m["auroc"], "fpr95": m["fpr95"]}
            rows += [{**run_columns(run), "set": name, "n": n, "n_id": len(id_logits), "metric": k, "value": v}
                     for k, v in values.items()]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ along training
FIT_LEVEL = 0.995  # clean training accuracy (eval mode) from which a run has fitted its training set
FAR, SYNTHETIC = "far average", "synthetic average"  # the benchmark's averages (lnlib.benchmark's kinds)


def fit_epoch(history: pd.DataFrame, level: float = FIT_LEVEL) -> float:
    """The first epoch of a run's ``history`` whose clean training accuracy (``train_eval_acc``, eval mode) is
    ≥ ``level``; NaN if none."""
    fitted = history.loc[history["train_eval_acc"] >= level, "epoch"]
    return float(fitted.iloc[0]) if len(fitted) else float("nan")


def growth_after_fit(runs, metric: str = "train_norm_mean", level: float = FIT_LEVEL) -> pd.DataFrame:
    """Per run: the epoch at which it fitted its training set (:func:`fit_epoch`), the SGD steps it took after
    that epoch (``steps_after_fit``), ``metric`` of its history there (``at_fit``, NaN if it never fitted) and at
    the last epoch (``at_end``). Columns :func:`run_columns`, ``fit_epoch,
    steps_after_fit, at_fit, at_end``."""
    rows = []
    for run in runs:
        history, cfg = run.history, run.config
        fitted, values = fit_epoch(history, level), history.set_index("epoch")[metric]
        rows.append({**run_columns(run), "fit_epoch": fitted,
                     "steps_after_fit": (cfg.epochs_to_run - fitted) * (cfg.train_images // cfg.batch_size),
                     "at_fit": float(values[int(fitted)]) if np.isfinite(fitted) else float("nan"),
                     "at_end": float(values.iloc[-1])})
    return pd.DataFrame(rows)


def growth_stages(growth: pd.DataFrame) -> pd.DataFrame:
    """:func:`growth_after_fit` rows as records for a paired comparison of the two stages: per run that fitted
    its training set, one row with ``stage='fit'`` (``value = at_fit``) and one with ``stage='end'``."""
    fitted = growth[growth["at_fit"].notna()]
    return pd.concat([fitted.assign(stage="fit", value=fitted["at_fit"]),
                      fitted.assign(stage="end", value=fitted["at_end"])], ignore_index=True)


def fitted_runs_only(stages: pd.DataFrame) -> pd.DataFrame:
    """:func:`at_fit_and_end` rows of the runs that fitted their training set (those with a ``fitted`` stage)."""
    return stages[stages["run"].isin(stages.loc[stages["stage"] == "fitted", "run"])]


def history_records(runs, metrics=("train_eval_acc", "train_norm_mean", "test_norm_mean", "ood_norm_mean",
                                   "test_acc")) -> pd.DataFrame:
    """One row per (run, epoch, metric) of the runs' histories: :func:`run_columns`, ``epoch, metric,
    value`` (accuracies as fractions, norms ‖f‖₂ as they are)."""
    rows = []
    for run in runs:
        history = run.history
        for metric in metrics:
            rows += [{**run_columns(run), "epoch": int(e), "metric": metric, "value": float(v)}
                     for e, v in zip(history["epoch"], history[metric], strict=True)]
    return pd.DataFrame(rows)


def with_benchmark_averages(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` plus, per run and quantity, the mean over the ``far`` sets (:data:`FAR`) and over the
    ``synthetic`` sets (:data:`SYNTHETIC`) of :mod:`lnlib.benchmark`; the ``separable`` sets enter no average."""
    labels = records["ood_set"].map(benchmark.kind_of).map({"far": FAR, "synthetic": SYNTHETIC})
    averaged = labels.notna().to_numpy()
    averages = _averages(records[averaged], labels[averaged])
    return pd.concat([records, averages], ignore_index=True)[records.columns]


def benchmark_order() -> list[str]:
    """The order in which the book lists OOD sets: the near set, the far sets and their average, the separable
    sets, the synthetic sets and their average."""
    return [*benchmark.sets_of("near"), *benchmark.sets_of("far"), FAR, *benchmark.sets_of("separable"),
            *benchmark.sets_of("synthetic"), SYNTHETIC]


def in_benchmark_order(frame: pd.DataFrame, column: str = "ood_set") -> pd.DataFrame:
    """``frame``'s rows sorted (stably) by :func:`benchmark_order` of ``column``; other names last, as they come."""
    rank = {name: i for i, name in enumerate(benchmark_order())}
    return frame.sort_values(column, key=lambda c: c.map(rank).fillna(len(rank)), kind="stable")


def benchmark_fpr95(records: pd.DataFrame) -> pd.DataFrame:
    """The FPR95 rows of :func:`ood_records` with the far and synthetic averages (:func:`with_benchmark_averages`),
    in :func:`benchmark_order`: one row per run and set, what a per-set comparison of two losses pairs by seed."""
    return in_benchmark_order(with_benchmark_averages(records).query("metric == 'fpr95'"))


def open_set_records(runs, positive: str = "id", protocol: str = "all") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The open-set study's numbers (``runs`` trained without their ``held_out`` classes): ``(records, rows)``.

    ``rows`` are what its verdicts compare, each named in a column ``row``: MSP FPR95 on the near set (the held-out
    classes) and averaged over the far and over the synthetic sets (:func:`with_benchmark_averages`), then the test
    accuracy on the trained classes (``row='accuracy'``). ``records`` are the raw numbers to save: every set and
    metric of :func:`ood_records` (no ``row``), then the accuracy rows. The near set stands beside the averages
    because it asks whether a verdict holds for classes the network has never seen."""
    records = ood_records(runs, ["msp"], positive=positive, protocol=protocol)
    fpr = with_benchmark_averages(records).query("metric == 'fpr95' and ood_set in (@NEAR_OOD, @FAR, @SYNTHETIC)")
    rows = pd.concat([fpr.assign(row=fpr["ood_set"]), accuracy_records(runs).assign(row="accuracy")])
    return pd.concat([records, rows.query("row == 'accuracy'")]), rows


def _averages(records: pd.DataFrame, labels) -> pd.DataFrame:
    """One row per run, quantity and label (``labels``: one per row of ``records``): the mean of ``value``
    over that label's rows, with the label as ``ood_set``."""
    keys = [c for c in records.columns if c not in ("ood_set", "value", "n_id", "n_ood")]
    averages = records.groupby([*keys, np.asarray(labels)], dropna=False, sort=False)["value"].mean().reset_index()
    return averages.rename(columns={averages.columns[len(keys)]: "ood_set"})


def along_training_records(runs) -> pd.DataFrame:
    """OOD detection along training (runs trained with ``ood_every``): one row per (run, epoch, OOD set, metric),
    metrics ``fpr95`` (ID positive) and ``auroc`` by MSP, fractions, with the averages of
    :func:`with_benchmark_averages`. Columns :func:`run_columns`, ``epoch, ood_set, metric, value``."""
    rows = []
    for run in runs:
        along = run.ood_history
        rows += [{**run_columns(run), "epoch": int(r.epoch), "ood_set": r.ood_set, "metric": metric,
                  "value": float(getattr(r, metric))} for r in along.itertuples() for metric in ("fpr95", "auroc")]
    return with_benchmark_averages(pd.DataFrame(rows))


def last_epoch_change(along: pd.DataFrame) -> pd.DataFrame:
    """How much the last epoch moved each number: from :func:`along_training_records` of runs evaluated every
    epoch, per run, OOD set (and average) and metric, the value at the last epoch minus the value one epoch
    earlier. Columns :func:`run_columns`, ``ood_set, metric, value``."""
    last = along.groupby("run")["epoch"].transform("max")
    keys = ["loss", "method", "tau", "weight_decay", "seed", "run", "ood_set", "metric"]
    end = along[along["epoch"] == last].set_index(keys)["value"]
    before = along[along["epoch"] == last - 1].set_index(keys)["value"]
    return (end - before).dropna().reset_index()


def rerun_change(records: pd.DataFrame, rerun: pd.DataFrame) -> pd.DataFrame:
    """``rerun − records`` per loss, seed, OOD set and metric, for the rows of ``rerun`` (the same runs trained
    again with one thing changed, e.g. on another number of CPU threads); the other columns are ``rerun``'s."""
    keys = ["loss", "seed", "ood_set", "metric"]
    base = records.set_index(keys)["value"]
    change = rerun.set_index(keys)["value"] - base.reindex(rerun.set_index(keys).index)
    return rerun.assign(value=change.to_numpy())


def at_fit_and_end(along: pd.DataFrame, growth: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`along_training_records` at two stages of each run, in a column ``stage``: ``fitted``,
    the first recorded epoch at or after the run fitted its training set (:func:`growth_after_fit`'s
    ``fit_epoch``; runs that never fitted have no such rows), and ``end``, the last epoch."""
    fitted = growth.set_index("run")["fit_epoch"]
    parts = []
    for run, part in along.groupby("run", sort=False):
        epochs = np.sort(part["epoch"].unique())
        later = epochs[epochs >= fitted[run]]
        if len(later):
            parts.append(part[part["epoch"] == later[0]].assign(stage="fitted"))
        parts.append(part[part["epoch"] == epochs[-1]].assign(stage="end"))
    return pd.concat(parts, ignore_index=True)
