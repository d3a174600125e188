"""What the papers claim, as far as it could be checked: numbers with their setting, source and status.

Every entry names, in ``source``, where a reader can check it: a paper's abstract (arXiv:2205.09310, Wei et al.;
arXiv:1812.05720, Hein et al.), a file of an official repository (github.com/hongxin001/logitnorm_ood,
github.com/max-andr/relu_networks_overconfident) or a GitHub thread. The PDF of the LogitNorm paper could not be
read when this was written, so **none of the paper's Table 1 numbers is here**: only what its abstract, the
official repository or a GitHub thread states. ``status`` says which, and the book prints it beside every claim.
Whoever reads the paper itself (arXiv:2205.09310; PMLR volume 162, wei22d) can add its tables here, marked verified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from lnlib import benchmark
from lnlib.data import NEAR_OOD
from lnlib.hein import TEST_IMAGES, UNIFORM_NOISE
from lnlib.stats import compare, verdict_words
from lnlib.tidy import FAR, SYNTHETIC, growth_stages, with_benchmark_averages

VERIFIED = "verified"
SECOND_HAND = "second-hand"  # a paper number quoted by someone else, not checked against the paper
NOT_THE_PAPER = "not the paper"  # a third party's measurement, for scale only


@dataclass(frozen=True)
class Claim:
    topic: str  # "ood", "accuracy", "calibration", ...
    quantity: str
    value: str
    setting: str  # data, network and scale the number belongs to
    source: str
    status: str  # VERIFIED, SECOND_HAND or NOT_THE_PAPER


CLAIMS: tuple[Claim, ...] = (
    Claim("ood", "average FPR95 reduction, LogitNorm vs cross-entropy", "up to 42.30 points",
          "'common benchmarks'; which dataset and score give it is not stated in the abstract",
          "arXiv:2205.09310 abstract", VERIFIED),
    Claim("ood", "average FPR95, cross-entropy + Energy score", "26.82%",
          "CIFAR-10, WRN-40-2, 200 epochs, six OOD sets (2,000 images each vs 10,000 ID)",
          "the paper as quoted by a user in hongxin001/logitnorm_ood issue #6", SECOND_HAND),
    Claim("ood", "same, reproduced by that user", "35.42%", "as above, user's own training",
          "hongxin001/logitnorm_ood issue #6", NOT_THE_PAPER),
    Claim("ood", "LogitNorm FPR95 / AUROC: SVHN, Textures, Places365",
          "5.30 / 98.86, 30.94 / 94.30, 31.17 / 94.76", "CIFAR-10, ResNet-18, OpenOOD v1 benchmark",
          "OpenOOD v1 via deeplearning-wisc/cider issue #10", NOT_THE_PAPER),
    Claim("accuracy", "LogitNorm 'maintains classification accuracy'", "qualitative",
          "CIFAR-10/100", "arXiv:2205.09310 abstract (paraphrase)", VERIFIED),
    Claim("accuracy", "test accuracy of the released LogitNorm checkpoint", "94.50%",
          "CIFAR-10, WRN-40-2, 200 epochs, τ probably 0.01 (README command)",
          "official repo, snapshots/standard training log", VERIFIED),
    Claim("calibration", "ECE (15 bins, T = 1) of the released LogitNorm checkpoint", "1.43%",
          "CIFAR-10, WRN-40-2", "dwd-z/logitnorm_tool test.ipynb output (third party)", NOT_THE_PAPER),
    Claim("far_away", "confidence along rays αx of a ReLU network tends to 1 (Theorem 3.1)",
          "for almost every x, unless two logits share a slope in the final region", "any ReLU network with "
          "a linear last layer", "Hein et al. 2019, theorem image in max-andr/relu_networks_overconfident",
          VERIFIED),
)

# Hein et al. (CVPR 2019), Table 2, read off the image of it and its caption that the authors put in their repository
# (github.com/max-andr/relu_networks_overconfident, images/table_alpha_scaling.png, commit ce2d3a1): 10,000 uniform
# random images per model, scaled by α.
# MNIST: LeNet with Adam; SVHN, CIFAR-10/100: a ResNet-20-sized pre-activation ResNet; 100 epochs; ACET with
# 40 PGD steps in an l_inf ball of 0.3.
HEIN_TABLE2 = {
    # (training, in-distribution set): (median smallest α with 99.9% confidence, share > 95% after clipping)
    ("plain", "MNIST"): (1.5, 0.987), ("plain", "SVHN"): (28.1, 0.999), ("plain", "CIFAR-10"): (8.1, 0.999),
    ("plain", "CIFAR-100"): (9.9, 0.998), ("acet", "MNIST"): (3.0e15, 0.0), ("acet", "SVHN"): (49.8, 0.502),
    ("acet", "CIFAR-10"): (45.3, 0.034), ("acet", "CIFAR-100"): (9.9, 0.0),
}


def hein_table2() -> pd.DataFrame:
    """Hein et al.'s Table 2 (verified, see :data:`HEIN_TABLE2`): rows (training, set), two columns."""
    index = pd.MultiIndex.from_tuples(HEIN_TABLE2, names=["training", "dataset"])
    return pd.DataFrame(list(HEIN_TABLE2.values()), index=index,
                        columns=["median_alpha", "clipped_overconfident"])


def claims_frame(topic: str | None = None) -> pd.DataFrame:
    """The claims (of one ``topic``, or all) as a table for the book."""
    topics = sorted({c.topic for c in CLAIMS})
    if topic is not None and topic not in topics:
        raise ValueError(f"topic={topic!r} is not valid; choose one of {topics}")
    rows = [asdict(c) for c in CLAIMS if topic is None or c.topic == topic]
    return pd.DataFrame(rows).drop(columns="topic").set_index("quantity")


# ------------------------------------------------------------------------------- reproduction status
def _kind_average(ood: pd.DataFrame, label: str, metric: str = "fpr95") -> pd.DataFrame:
    """Each run's ``metric`` on one set or averaged over the sets of one benchmark average (:func:`lnlib.tidy.
    with_benchmark_averages`: ``tidy.FAR`` or ``tidy.SYNTHETIC``), one row per run with ``loss, seed, value``."""
    return with_benchmark_averages(ood).query("metric == @metric and ood_set == @label")


def _fpr_row(ood: pd.DataFrame, label: str, which: str, scale: str, family: int) -> tuple:
    """The LogitNorm abstract's FPR95 claim against our paired LogitNorm − CE difference on one average (or on
    the near-OOD set)."""
    runs = _kind_average(ood, label)
    row = compare(runs, [], family=family).iloc[0]
    if label == NEAR_OOD:
        over = "the held-out classes' test images"
    else:
        over = "the per-seed average over " + ", ".join(sorted(s for s in ood["ood_set"].unique()
                                                                if _in_average(s, label)))
    ours = f"{100 * row['mean_b']:.1f}% (CE) → {100 * row['mean_a']:.1f}% (LogitNorm), mean over seeds of {over}"
    words = verdict_words(row, lower="reproduced in direction, at this scale", higher="the opposite, at this scale")
    return (f"LogitNorm lowers the MSP FPR95 of cross-entropy: {which}", "up to 42.30 points (abstract; verified)",
            ours, scale, words)


def _in_average(name: str, label: str) -> bool:
    return benchmark.kind_of(name) == {FAR: "far", SYNTHETIC: "synthetic"}[label]


def _accuracy_row(accuracy: pd.DataFrame, scale: str, family: int) -> tuple:
    """The abstract's "accuracy kept" against the paired LogitNorm − CE difference in test accuracy."""
    row = compare(accuracy, [], family=family).iloc[0]
    words = verdict_words(row, lower="not kept: LogitNorm lower", higher="kept: LogitNorm higher")
    if row["direction"] == "none" and np.isfinite(row["detectable"]):
        words = "kept (no detectable loss): " + words
    return ("LogitNorm keeps the classification accuracy", "qualitative (abstract; verified)",
            f"{100 * row['mean_b']:.2f}% (CE) vs {100 * row['mean_a']:.2f}% (LogitNorm)", scale, words)


def _growth_row(growth: pd.DataFrame, scale: str, family: int) -> tuple:
    """The abstract's norm-growth claim against the cross-entropy runs' mean ‖f‖ on their training images,
    from the epoch at which each fitted its training set to the last (:func:`lnlib.tidy.growth_after_fit`),
    paired by run: the change at_end − at_fit."""
    ce = growth.query("loss == 'ce'")
    claim = "Under cross-entropy the logit norm keeps increasing (after the training set is fitted)"
    paper = "qualitative (abstract; verified)"
    if ce["at_fit"].isna().any():
        return (claim, paper, f"{ce['at_fit'].isna().sum()} of {len(ce)} runs did not fit their training set",
                scale, "not measured: the training set was not fitted in the epochs run")
    row = compare(growth_stages(ce), [], compare="stage", a="end", b="fit", family=family).iloc[0]
    words = verdict_words(row, lower="shrinks, at this scale", higher="grows, at this scale", unit="", scale=1,
                          digits=2)
    return (claim, paper, f"mean ‖f‖ on the training images {row['mean_b']:.2f} at the fitted epoch "
            f"({ce['fit_epoch'].mean():.0f} on average) → {row['mean_a']:.2f} at the last", scale, words)


def _weight_decay_row(scale: pd.DataFrame, where: str, family: int) -> tuple:
    """The reading that weight decay keeps LogitNorm's raw norms small, against the weight-decay chapter's runs
    (:func:`lnlib.ranking.scale_records`): LogitNorm's median ID test norm without minus with weight decay, paired
    by seed; cross-entropy's norms beside it for scale."""
    norms = scale.query("metric == 'id_norm'")
    with_wd, without = norms["weight_decay"].max(), norms["weight_decay"].min()
    row = compare(norms.query("loss == 'logitnorm'"), [], compare="weight_decay", a=without, b=with_wd,
                  family=family).iloc[0]
    ce = norms.query("loss == 'ce'").groupby("weight_decay")["value"].mean()
    words = verdict_words(row, lower="the opposite, at this scale: smaller without weight decay",
                          higher="holds in direction, at this scale: larger without weight decay", unit="", scale=1,
                          digits=2)
    return ("Weight decay keeps LogitNorm's logit norms small (its loss does not see the norm)",
            f"not a claim of the paper (its recipe has weight decay {with_wd:g})",
            f"LogitNorm's median ‖f‖ on ID test images {row['mean_b']:.2f} with weight decay {with_wd:g} → "
            f"{row['mean_a']:.2f} without (cross-entropy: {ce[with_wd]:.2f} → {ce[without]:.2f})", where, words)


def _ranking_row(norms: pd.DataFrame, where: str, family: int) -> tuple:
    """The reading that LogitNorm's MSP is close to a norm detector, against the norm-ranking chapter's measure
    (:func:`lnlib.ranking.norm_records`): Spearman's ρ between log-MSP and ‖f‖ on the far average, LogitNorm − CE."""
    rho = with_benchmark_averages(norms.query("metric == 'rank_corr'")).query("ood_set == @FAR")
    row = compare(rho, [], family=family).iloc[0]
    words = verdict_words(row, lower="the opposite, at this scale: ρ lower under LogitNorm",
                          higher="holds, at this scale: ρ higher under LogitNorm", unit="", scale=1, digits=2)
    return ("LogitNorm's MSP follows the logit norm more closely than cross-entropy's", "not a claim of the paper",
            f"Spearman ρ between log-MSP and ‖f‖, far average: {row['mean_b']:.2f} (CE) → {row['mean_a']:.2f} "
            "(LogitNorm)", where, words)


TESTED_ROWS = 3  # verdicts of the status page from the paired rule without the regime (FPR95 far, synthetic; accuracy)
NEAR_ROWS = 1  # and with the open-set study (FPR95 on the classes it holds out)
MECHANISM_ROWS = 3  # and with the mechanism chapters (norm growth after fitting; weight decay; what MSP ranks by)


def reproduction_status(accuracy: pd.DataFrame, ood: pd.DataFrame, rays: pd.DataFrame, scale: str,
                        ray_scale: str, mechanism: dict | None = None, near: dict | None = None) -> pd.DataFrame:
    """Each claim of both papers: the paper's number with its status, ours, at ``scale`` (runs) or ``ray_scale``
    (rays), and a verdict computed from ours (never typed). Inputs are record frames of :mod:`lnlib.tidy`:
    ``accuracy`` and ``ood`` (MSP) for cross-entropy and LogitNorm runs over seeds, ``rays`` for a cross-entropy
    run (the two sets of directions of :func:`lnlib.hein.ray_inputs`). ``mechanism``: three rows on why LogitNorm
    helps, ``{"growth": tidy.growth_after_fit(runs)`` of the paper-regime chapter's cross-entropy runs with weight
    decay, ``"scale": ranking.scale_records(runs)`` of the weight-decay chapter's, ``"ranking":
    ranking.norm_records(runs)`` of the norm-ranking chapter's, ``"where": {key: scale}}`` (each row's setting).
    ``near``: the open-set study's runs (classes held out of training), ``{"ood": tidy.ood_records(runs, ["msp"]),
    "scale": str}``, which add a first row: FPR95 on the near-OOD set ``held_out``.

    Every comparison is the verdict rule of :mod:`lnlib.stats`: paired by seed, a bootstrap interval, an exact
    sign-flip test, Holm-corrected over all the comparisons of the page; a direction only where it holds.
    """
    family = TESTED_ROWS + (NEAR_ROWS if near is not None else 0) + (MECHANISM_ROWS if mechanism is not None else 0)
    ce_rays = rays.query("loss == 'ce'").groupby(["set", "metric"])["value"].mean()
    top = ce_rays.xs("unique_top_slope", level="metric")
    clipped = ce_rays[(UNIFORM_NOISE, "clipped_overconfident")]
    not_run = "not run here (needs internet once and a GPU)"
    rows = [
        *([_fpr_row(near["ood"], NEAR_OOD, "near OOD (classes held out of training)", near["scale"], family)]
          if near is not None else []),
        _fpr_row(ood, FAR, "far OOD sets (real shapes: digits, letters, scripts)", scale, family),
        _fpr_row(ood, SYNTHETIC, "synthetic-noise OOD sets", scale, family),
        _accuracy_row(accuracy, scale, family),
        ("Table 1, CIFAR-10: FPR95/AUROC/AUPR on six OOD sets", "not verified (the paper's PDF was not read)",
         not_run, "CIFAR-10, WRN-40-2, 200 epochs: --preset cifar10_paper", "not run"),
        ("Table 1, CIFAR-100: the same", "not verified (the paper's PDF was not read)",
         not_run, "CIFAR-100, WRN-40-2, 200 epochs: --preset cifar100_paper", "not run"),
        ("Theorem 3.1: along almost every ray αx a ReLU net's confidence → 1", "a theorem (verified)",
         f"{top[TEST_IMAGES]:.1%} of test-image rays, {top[UNIFORM_NOISE]:.1%} of uniform-noise rays end in a region "
         "with one top slope (cross-entropy)", ray_scale,
         "holds" if min(top) >= 0.99 else f"holds for {min(top):.1%} of rays"),
        ("Table 2: plain nets stay > 95% confident on clipped far-away noise",
         f"{HEIN_TABLE2[('plain', 'MNIST')][1]:.1%} to {HEIN_TABLE2[('plain', 'SVHN')][1]:.1%} (verified)",
         f"{clipped:.1%} (cross-entropy, uniform noise)", ray_scale + "; the paper: MNIST, SVHN, CIFAR",
         "reproduced" if clipped > 0.9 else "not reproduced at this scale (other data and network)"),
    ]
    if mechanism is not None:
        first = TESTED_ROWS + (near is not None)  # after the rows of the seed study
        where = mechanism["where"]
        rows[first:first] = [_growth_row(mechanism["growth"], where["growth"], family),
                             _weight_decay_row(mechanism["scale"], where["scale"], family),
                             _ranking_row(mechanism["ranking"], where["ranking"], family)]
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "scale", "verdict"]).set_index("claim")
