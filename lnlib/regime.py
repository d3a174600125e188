"""The paper-regime study: cross-entropy trained well past the epoch at which it fits its training set, with the
paper's weight decay and without, and what changes from that epoch to the last (the paper_regime chapter).

The paper's argument is about the post-fit phase: once the training set is fitted, cross-entropy can still lower
its loss by growing the logit norm, and MSP-based OOD detection should get worse as it does. The records come from
:mod:`lnlib.tidy` (:func:`~lnlib.tidy.growth_after_fit`, :func:`~lnlib.tidy.along_training_records`), with
``method`` naming each arm (:func:`lnlib.tables.by_weight_decay`); the comparisons are :mod:`lnlib.stats`' verdict
rule, paired by seed.
"""

from __future__ import annotations

import pandas as pd

from lnlib import stats, tables, tidy

# plots.over_epochs panels: title -> (query, y label, scale)
HISTORY_PANELS = {
    "Accuracy on the training images (eval mode)": ("metric == 'train_eval_acc'", "accuracy (%)", 100),
    "Test accuracy": ("metric == 'test_acc'", "accuracy (%)", 100),
    "Logit norm, training images": ("metric == 'train_norm_mean'", "mean ‖f(x)‖₂", 1),
    "Logit norm, ID test images": ("metric == 'test_norm_mean'", "mean ‖f(x)‖₂", 1),
}
OOD_PANELS = {f"{name}, {kind}": (f"metric == '{metric}' and ood_set == '{kind}'", f"{name} (%)", 100)
              for metric, name in (("fpr95", "FPR95 ↓"), ("auroc", "AUROC ↑")) for kind in (tidy.FAR, tidy.SYNTHETIC)}
# plots.strips_by_metric panels of the changes per seed (:func:`fit_and_end`'s ood_set): (x label, scale, log)
CHANGE_PANELS = {"training images": ("change of the mean ‖f‖\n(training images)", 1, False),
                 tidy.FAR: ("change of MSP FPR95\n(far sets, points)", 100, False),
                 tidy.SYNTHETIC: ("change of MSP FPR95\n(synthetic sets, points)", 100, False)}
QUANTITIES = 3  # compared per weight decay: the norm, FPR95 on the far and on the synthetic average


def fit_table(growth: pd.DataFrame, seeds: int):
    """The fitting epoch, the SGD steps after it and the mean logit norm on the training images then (``at_fit``)
    and at the last epoch (``at_end``): :func:`lnlib.tidy.growth_after_fit` rows (one per run, ``method`` per arm)
    as mean ± std over seeds, one row per quantity and one column per arm, with its caption (a Styler)."""
    columns = ["fit_epoch", "steps_after_fit", "at_fit", "at_end"]
    return tables.style_mean_std(tables.mean_std(growth.melt(id_vars=["method", "seed"], value_vars=columns,
                                                             var_name="metric"), "metric", "method"),
                                 scale=1, decimals=2,
                                 caption=f"The epoch at which each run fitted its training set (clean accuracy ≥ "
                                 f"{tidy.FIT_LEVEL:.1%}), the SGD steps it took after that, and its mean logit norm "
                                 f"on the training images then (at_fit) and at the last epoch (at_end); mean ± std "
                                 f"over {seeds} seeds")


def fit_and_end(growth: pd.DataFrame, along: pd.DataFrame) -> pd.DataFrame:
    """Per run that fitted its training set, the three quantities of the study at two stages (``stage``: ``fitted``
    and ``end``), as records to pair by seed: the mean logit norm on the training images (``metric='norm'``,
    ``ood_set='training images'``, from ``growth``) and MSP's FPR95 on the far and synthetic averages (``metric=
    'fpr95'``, from ``along``: the first measurement at or after the fitting epoch, and the last). Runs that never
    fitted have nothing to compare and are left out."""
    stages = tidy.fitted_runs_only(tidy.at_fit_and_end(along.query("ood_set in (@tidy.FAR, @tidy.SYNTHETIC) and "
                                                                   "metric == 'fpr95'"), growth))
    norms = tidy.growth_stages(growth).assign(ood_set="training images", metric="norm",
                                              stage=lambda f: f["stage"].map({"fit": "fitted", "end": "end"}))
    return pd.concat([norms, tidy.in_benchmark_order(stages)], ignore_index=True)


def changes_table(changes: pd.DataFrame, seeds: int, family: int):
    """:func:`lnlib.stats.compare` of :func:`fit_and_end` (end against fitted, per arm and quantity) as a display
    table with its caption: one row per arm and quantity, the norm as it is (two decimals) and FPR95 in percent
    (one decimal), since the rows have different units."""
    rows = changes.assign(row=[f"{m}: {'mean ‖f‖, ' if q != 'fpr95' else 'FPR95, '}{s}" for m, q, s
                               in zip(changes["method"], changes["metric"], changes["ood_set"], strict=True)])
    is_norm = dict(zip(rows["row"], rows["metric"] != "fpr95", strict=True))
    return tables.paired_table(rows, "row", labels=("fitted", "end"), scale=lambda r: 1 if is_norm[r] else 100,
                               decimals=lambda r: 2 if is_norm[r] else 1).style.set_caption(
        f"After fitting, per weight decay: the norm (as it is) and FPR95 (percent, ID positive) at the fitting "
        f"epoch and at the end; {seeds} seeds, paired by seed; Holm over the {family} rows")


def per_seed_changes(both: pd.DataFrame) -> pd.DataFrame:
    """Each run's value at the end minus its value when it fitted, per arm and quantity of :func:`fit_and_end`:
    columns ``method, metric, seed, value`` with the quantity (``training images``, ``tidy.FAR``, ``tidy.SYNTHETIC``)
    as ``metric``, as :func:`lnlib.plots.strips_by_metric` takes them (with :data:`CHANGE_PANELS`)."""
    per_seed = stats.paired_differences(both, ["method", "ood_set"], compare="stage", a="end", b="fitted")
    return per_seed.rename(columns={"ood_set": "metric", "difference": "value"})


def numbers(cfg, seeds: int, family: int, growth: pd.DataFrame, changes: pd.DataFrame, arms: list[str]) -> dict:
    """What the chapter's prose quotes: the recipe (images, epochs, seeds, steps per epoch, the milestone and the
    learning rate after it) and, per arm (``arms``: with weight decay, then without; keys ``wd_*`` and ``free_*``),
    the mean fitting epoch, steps after it and number of runs that fitted, the norm at fit and at the end, FPR95 far
    and synthetic at fit and at the end, and each verdict in words ("not measured: no run fitted" where no run of the
    arm fitted). ``cfg``: the chapter's TrainConfig; ``changes``: :func:`lnlib.stats.compare` of :func:`fit_and_end`."""
    found = changes.set_index(["method", "ood_set"])
    numbers = {"n_images": cfg.train_images, "n_epochs": cfg.epochs_to_run, "n_seeds": seeds, "family": family,
               "steps_per_epoch": cfg.train_images // cfg.batch_size, "milestone": cfg.milestones[0],
               "tail_lr": cfg.lr * cfg.gamma ** len(cfg.milestones)}
    for key, arm in zip(("wd", "free"), arms, strict=True):
        part = growth.query("method == @arm")
        numbers |= {f"{key}_fit_epoch": part["fit_epoch"].mean(), f"{key}_steps": part["steps_after_fit"].mean(),
                    f"{key}_fitted": int(part["fit_epoch"].notna().sum()),
                    f"{key}_norm_fit": part["at_fit"].mean(), f"{key}_norm_end": part["at_end"].mean()}
        norm_row = (arm, "training images")
        numbers[f"{key}_norm_verdict"] = (stats.verdict_words(found.loc[norm_row], lower="it fell",
                                                              higher="it rose", unit="", scale=1, digits=2)
                                          if norm_row in found.index else "not measured: no run fitted")
        for kind, name in ((tidy.FAR, "far"), (tidy.SYNTHETIC, "synthetic")):
            row = (arm, kind)
            numbers |= {f"{key}_{name}_fit": 100 * found.loc[row, "mean_b"] if row in found.index else float("nan"),
                        f"{key}_{name}_end": 100 * found.loc[row, "mean_a"] if row in found.index else float("nan"),
                        f"{key}_{name}_verdict": stats.verdict_words(found.loc[row], lower="it fell",
                                                                     higher="it rose")
                        if row in found.index else "not measured: no run fitted"}
    return numbers
