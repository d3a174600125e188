"""What the papers claim, as far as it could be checked: numbers with their setting, source and status.

Every entry names, in ``source``, where a reader can check it: a paper's abstract (arXiv:2205.09310, Wei et al.;
arXiv:1812.05720, Hein et al.), a file of an official repository (github.com/hongxin001/logitnorm_ood,
github.com/max-andr/relu_networks_overconfident) or a GitHub thread. The PDF of the LogitNorm paper could not be
read when this was written, so **none of the paper's Table 1 numbers is here**: only what its abstract, the
official repository or a GitHub thread states. ``status`` says which, and the book prints it beside every claim.
Whoever reads the paper itself (arXiv:2205.09310; PMLR volume 162, wei22d) can add its tables here, marked verified.
:func:`sources` lists every one of these numbers; the book's Sources page is that table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from lnlib import benchmark, evaluate, hein, ranking, tidy
from lnlib.data import NEAR_OOD
from lnlib.hein import TEST_IMAGES, UNIFORM_NOISE
from lnlib.stats import compare, verdict_words
from lnlib.tables import LABELS
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


# Bitterwolf, Meinke & Hein (NeurIPS 2020, "Certifiably adversarially robust detection of out-of-distribution data",
# GOOD), Table 1, MNIST block, read off the image the authors put in their repository (github.com/j-cb/GOOD,
# readme_imgs/good_table1.png) and the text output of its eval2tex.ipynb: MNIST in-distribution; AUROC (%) of the max
# confidence against each OOD set, clean ("AUC") and after an l_inf attack of ε = 0.3 on every OOD point ("AAUC");
# CEDA and ACET there were trained on 80 Million Tiny Images as outliers, not on noise.
GOOD_MNIST = {
    # (training, OOD set): (AUC, AAUC)
    ("plain", "FMNIST"): (98.0, 34.2), ("ceda", "FMNIST"): (99.9, 82.1), ("acet", "FMNIST"): (100.0, 98.4),
    ("plain", "uniform noise"): (99.1, 36.5), ("ceda", "uniform noise"): (100.0, 100.0),
    ("acet", "uniform noise"): (100.0, 100.0),
}


def good_table() -> pd.DataFrame:
    """GOOD's MNIST AUROCs before and after attack (verified, see :data:`GOOD_MNIST`): rows (training, OOD set)."""
    index = pd.MultiIndex.from_tuples([(LABELS.get(t, t), s) for t, s in GOOD_MNIST], names=["training", "OOD set"])
    return pd.DataFrame(list(GOOD_MNIST.values()), index=index, columns=["AUROC", "AUROC after attack"])


def hein_table2() -> pd.DataFrame:
    """Hein et al.'s Table 2 (verified, see :data:`HEIN_TABLE2`): rows (training, set), two columns."""
    index = pd.MultiIndex.from_tuples(HEIN_TABLE2, names=["training", "dataset"])
    return pd.DataFrame(list(HEIN_TABLE2.values()), index=index,
                        columns=["median_alpha", "clipped_overconfident"])


def table2_comparison(table2: pd.DataFrame, methods) -> pd.DataFrame:
    """Our Table 2 beside the paper's, one row per method (plain = cross-entropy): the median α* (median over seeds
    of each seed's median, with the seeds' range) and the share > 95% confident after clipping (mean ± std over
    seeds), and the paper's four values (MNIST, SVHN, CIFAR-10, CIFAR-100) where it has the method. ``table2``:
    :func:`lnlib.tidy.table2_records` on uniform noise."""
    paper = hein_table2()
    rows = {}
    for method in methods:
        per_seed = table2.query("method == @method and set == @UNIFORM_NOISE").pivot_table(
            index="seed", columns="metric", values="value")
        alpha, clipped = per_seed["median_alpha"], per_seed["clipped_overconfident"]
        spread = clipped.std(ddof=1) if len(clipped) > 1 else 0.0
        training = {"ce": "plain", "acet": "acet"}.get(method)
        theirs = paper.xs(training, level="training") if training else None
        rows[LABELS.get(method, method)] = {
            "median α*: ours": f"{np.median(alpha):.3g} ({alpha.min():.3g} to {alpha.max():.3g})",
            "median α*: paper": ", ".join(f"{v:.3g}" if v < 1e4 else f"{v:.1e}" for v in theirs["median_alpha"])
            if training else "not in it",
            "> 95% after clipping: ours": f"{clipped.mean():.1%} ± {spread:.1%}",
            "> 95% after clipping: paper": ", ".join(f"{v:.1%}" for v in theirs["clipped_overconfident"])
            if training else "not in it"}
    return pd.DataFrame(rows).T.rename_axis("method")


HEIN_TABLE2_SOURCE = "Hein et al. 2019, Table 2: images/table_alpha_scaling.png in max-andr/relu_networks_overconfident"
GOOD_SOURCE = "Bitterwolf et al. 2020 (GOOD), Table 1: readme_imgs/good_table1.png in j-cb/GOOD"


def sources() -> pd.DataFrame:
    """Every paper number the book quotes, one row each, with the setting it belongs to, where a reader can check it
    (``source``) and whether it was checked against the paper (``status``): :data:`CLAIMS`, Hein et al.'s Table 2
    (:data:`HEIN_TABLE2`) and GOOD's MNIST AUROCs (:data:`GOOD_MNIST`). The book's Sources page is this table."""
    rows = [asdict(c) for c in CLAIMS]
    rows += [{"topic": "far_away", "quantity": f"Table 2, {training}: median α with 99.9% confidence; share > 95% "
              "after clipping", "value": f"{alpha:.3g}; {clipped:.1%}", "setting": f"{dataset}, 10,000 uniform images",
              "source": HEIN_TABLE2_SOURCE, "status": VERIFIED}
             for (training, dataset), (alpha, clipped) in HEIN_TABLE2.items()]
    rows += [{"topic": "far_away", "quantity": f"{LABELS.get(training, training)} on MNIST: AUROC; AUROC after an "
              "attack within ε = 0.3", "value": f"{auc:.1f}; {attacked:.1f}", "setting": f"MNIST vs {ood_set}",
              "source": GOOD_SOURCE, "status": VERIFIED} for (training, ood_set), (auc, attacked) in GOOD_MNIST.items()]
    return pd.DataFrame(rows)


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


def _plain_table2_rows(table2: pd.DataFrame, where: str) -> list[tuple]:
    """Table 2's two statistics for plain (cross-entropy) training on uniform noise, over the seeds of ``table2``
    (:func:`lnlib.tidy.table2_records`): the median α* against the paper's range, and the share still > 95%
    confident after clipping. Measurements beside the paper's, no paired verdict (nothing to pair with)."""
    plain = table2.query("loss == 'ce' and method == 'ce' and set == @UNIFORM_NOISE").groupby("metric")["value"]
    alpha, clipped = plain.get_group("median_alpha"), plain.get_group("clipped_overconfident")
    low, high = HEIN_TABLE2[("plain", "MNIST")][0], HEIN_TABLE2[("plain", "SVHN")][0]
    median = float(np.median(alpha))
    placed = "within" if low <= median <= high else "below" if median < low else "above"
    lo_clip, hi_clip = HEIN_TABLE2[("plain", "MNIST")][1], HEIN_TABLE2[("plain", "SVHN")][1]
    n = f"{len(alpha)} seed(s)"
    return [
        ("Table 2, plain: the median α at which uniform noise α·u is 99.9% confident",
         f"{low:g} (MNIST) to {high:g} (SVHN) (verified)",
         f"{median:.3g}, median over {n} of each seed's median (seeds: {alpha.min():.3g} to {alpha.max():.3g})",
         where, f"{placed} the paper's range"),
        ("Table 2, plain: > 95% confident on that noise clipped back into the image box",
         f"{lo_clip:.1%} to {hi_clip:.1%} (verified)",
         f"{clipped.mean():.1%}, mean over {n} (seeds: {clipped.min():.1%} to {clipped.max():.1%})", where,
         "reproduced" if clipped.mean() > 0.9
         else "not reproduced at this scale (why: the chapter 'Hein et al., claim by claim', section 5)"),
    ]


def _method_rows(hein: dict, family: int) -> list[tuple]:
    """ACET and CEDA against plain training, paired by seed: Table 2's two statistics on uniform noise (log10 of
    the median α*; the clipped share) and the AUROC against attacked noise (GOOD's measure)."""
    table2 = hein["table2"].query("set == @UNIFORM_NOISE and metric in ('log10_median_alpha', 'clipped_overconfident')")
    attacked = hein["noise"].query("set == 'adv. noise' and metric == 'auroc'")
    rows = []
    for method, name in (("acet", "ACET"), ("ceda", "CEDA")):
        pick = lambda records: records[records["method"].isin(["ce", method])]  # noqa: E731
        found = {m: compare(pick(table2).query("metric == @m"), [], compare="method", a=method, b="ce",
                            family=family).iloc[0] for m in ("log10_median_alpha", "clipped_overconfident")}
        auroc = compare(pick(attacked), [], compare="method", a=method, b="ce", family=family).iloc[0]
        paper = {"acet": ("9.9 (CIFAR-100, as plain) to 3.0·10¹⁵ (MNIST), against plain's 1.5 to 28.1 (verified)",
                          "0.0% to 50.2%, against plain's 98.7% to 99.9% (verified)",
                          "98.4 (plain 34.2), MNIST vs FMNIST, GOOD (verified)"),
                 "ceda": ("no CEDA column in Table 2", "no CEDA column in Table 2",
                          "82.1 (plain 34.2), MNIST vs FMNIST, GOOD (verified)")}[method]
        alpha = found["log10_median_alpha"]
        rows += [
            (f"Table 2, {name}: needs a larger α than plain training", paper[0],
             f"median α* 10^{alpha['mean_b']:.2f} (plain) → 10^{alpha['mean_a']:.2f} ({name}), mean over seeds of "
             "log10", hein["where"],
             verdict_words(alpha, lower=f"the opposite: {name} is 99.9% confident at a smaller α",
                           higher=f"holds: {name} needs a larger α", unit="in log10 α", scale=1, digits=2)),
            (f"Table 2, {name}: fewer clipped noise images > 95% confident than plain", paper[1],
             f"{found['clipped_overconfident']['mean_b']:.1%} (plain) → {found['clipped_overconfident']['mean_a']:.1%}"
             f" ({name})", hein["where"],
             verdict_words(found["clipped_overconfident"], lower="holds: fewer", higher="the opposite: more")),
            (f"{name} raises the AUROC against attacked noise (ε = 0.3) over plain training", paper[2],
             f"{100 * auroc['mean_b']:.1f} (plain) → {100 * auroc['mean_a']:.1f} ({name}), ID test vs the most "
             "confident point near each noise image", hein["where"],
             verdict_words(auroc, lower="the opposite: lower", higher="holds: higher")),
        ]
    return rows


TESTED_ROWS = 3  # verdicts of the status page from the paired rule without the regime (FPR95 far, synthetic; accuracy)
NEAR_ROWS = 1  # and with the open-set study (FPR95 on the classes it holds out)
MECHANISM_ROWS = 3  # and with the mechanism chapters (norm growth after fitting; weight decay; what MSP ranks by)
HEIN_ROWS = 6  # and with the far-away claims chapter (ACET and CEDA vs plain: α*, clipped share, attacked AUROC)


def reproduction_status(accuracy: pd.DataFrame, ood: pd.DataFrame, rays: pd.DataFrame, scale: str,
                        ray_scale: str, mechanism: dict | None = None, near: dict | None = None,
                        hein: dict | None = None) -> pd.DataFrame:
    """Each claim of both papers: the paper's number with its status, ours, at ``scale`` (runs) or ``ray_scale``
    (rays), and a verdict computed from ours (never typed). Inputs are record frames of :mod:`lnlib.tidy`:
    ``accuracy`` and ``ood`` (MSP) for cross-entropy and LogitNorm runs over seeds, ``rays`` for a cross-entropy
    run (the two sets of directions of :func:`lnlib.hein.ray_inputs`). ``mechanism``: three rows on why LogitNorm
    helps, ``{"growth": tidy.growth_after_fit(runs)`` of the paper-regime chapter's cross-entropy runs with weight
    decay, ``"scale": ranking.scale_records(runs)`` of the weight-decay chapter's, ``"ranking":
    ranking.norm_records(runs)`` of the norm-ranking chapter's, ``"where": {key: scale}}`` (each row's setting).
    ``near``: the open-set study's runs (classes held out of training), ``{"ood": tidy.ood_records(runs, ["msp"]),
    "scale": str}``, which add a first row: FPR95 on the near-OOD set ``held_out``. ``hein``: the far-away claims
    chapter's runs (plain, CEDA and ACET over seeds), ``{"table2": tidy.table2_records(runs, ...), "noise":
    tidy.noise_records(runs, ...), "where": str}``: Table 2's plain rows over seeds (else from ``rays``) and six
    paired rows, ACET and CEDA against plain.

    Every comparison is the verdict rule of :mod:`lnlib.stats`: paired by seed, a bootstrap interval, an exact
    sign-flip test, Holm-corrected over all the comparisons of the page; a direction only where it holds.
    """
    family = (TESTED_ROWS + (NEAR_ROWS if near is not None else 0) + (MECHANISM_ROWS if mechanism is not None else 0)
              + (HEIN_ROWS if hein is not None else 0))
    top = rays.query("loss == 'ce'").groupby(["set", "metric"])["value"].mean().xs("unique_top_slope", level="metric")
    paper_sets = "; the paper: MNIST, SVHN, CIFAR"
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
        *_plain_table2_rows(rays if hein is None else hein["table2"], (ray_scale if hein is None else hein["where"])
                            + paper_sets),
        *(_method_rows(hein, family) if hein is not None else []),
    ]
    if mechanism is not None:
        first = TESTED_ROWS + (near is not None)  # after the rows of the seed study
        where = mechanism["where"]
        rows[first:first] = [_growth_row(mechanism["growth"], where["growth"], family),
                             _weight_decay_row(mechanism["scale"], where["scale"], family),
                             _ranking_row(mechanism["ranking"], where["ranking"], family)]
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "scale", "verdict"]).set_index("claim")


def _seeds(runs) -> int:
    return len({run.config.seed for run in runs})


def measured_status(cfg, size: dict, runs, hein_runs, regime_runs, decay_runs, open_runs=None) -> pd.DataFrame:
    """:func:`reproduction_status` of the book's runs, with every scale in words: the seed study's runs (``runs``:
    CE and LogitNorm over seeds, recipe ``cfg``), the far-away chapters' (``hein_runs``: plain, CEDA and ACET over
    seeds; the rays of the first, ``size``: :func:`lnlib.hein.sizes`' ``n_rays, n_noise, attack_steps``), the
    paper-regime chapter's cross-entropy runs with weight decay (``regime_runs``), the weight-decay chapter's
    (``decay_runs``: both losses with and without it) and, where given, the open-set study's (``open_runs``), which
    add the near-OOD row. The seed counts in the scales are those of the runs given. Returns the status frame, one
    row per claim: what the reproduction-status page shows and saves."""
    scale = (f"{cfg.dataset}, {cfg.model}, {cfg.train_images:,} training images, {cfg.epochs_to_run} epochs, "
             f"{_seeds(runs)} seed(s) per loss")
    ray_scale = (f"{cfg.dataset}, {cfg.model}, {cfg.train_images:,} training images, {cfg.epochs_to_run} epochs, "
                 f"cross-entropy seed 0, {size['n_rays']} rays per set")
    hein_where = (f"the seed study's recipe: plain training, CEDA and ACET ({cfg.pgd_steps} PGD steps), "
                  f"{_seeds(hein_runs)} seed(s) each; {size['n_rays']} uniform images, {size['n_noise']} noise images "
                  f"attacked with {size['attack_steps']} steps")
    uniform = {UNIFORM_NOISE: hein.ray_inputs(cfg.dataset, size["n_rays"])[UNIFORM_NOISE]}
    regime, mechanism_seeds = regime_runs[0].config, _seeds(regime_runs)
    where = {"growth": f"{cfg.dataset}, {cfg.model}, {regime.train_images:,} training images, no augmentation, batch "
                       f"{regime.batch_size}, {regime.epochs_to_run} epochs, weight decay {regime.weight_decay:g}, "
                       f"{mechanism_seeds} seed(s)",
             "scale": f"the seed study's recipe with and without weight decay, {_seeds(decay_runs)} seed(s) per arm",
             "ranking": scale}  # the norm-ranking chapter's measure, on all the seed study's runs
    open_cfg = open_runs[0].config if open_runs else None
    open_scale = (f"{open_cfg.id_set}, {cfg.model}, {open_cfg.train_images:,} training images, {cfg.epochs_to_run} "
                  f"epochs, {_seeds(open_runs)} seed(s) per loss") if open_runs else None
    return reproduction_status(tidy.accuracy_records(runs), tidy.ood_records(runs, ["msp"]),
                               tidy.ray_records(hein_runs[:1], hein.ray_inputs(cfg.dataset, size["n_rays"]), cfg.tau),
                               scale, ray_scale,
                               mechanism={"growth": tidy.growth_after_fit(regime_runs),
                                          "scale": ranking.scale_records(decay_runs),
                                          "ranking": ranking.norm_records(runs), "where": where},
                               near={"ood": tidy.ood_records(open_runs, ["msp"]), "scale": open_scale}
                               if open_runs else None,
                               hein={"table2": tidy.table2_records(hein_runs, uniform),
                                     "noise": tidy.noise_records(hein_runs, size["n_noise"], cfg.pgd_eps,
                                                                 size["attack_steps"]), "where": hein_where})


def style_status(status: pd.DataFrame, n_rays: int):
    """The status frame for display: left-aligned text, and a caption with the metric convention, the rays per set
    and where the paper numbers come from."""
    return status.style.set_caption(f"MSP; {evaluate.convention()}; rays: {n_rays} per set, α up to 2^60. Paper "
                                    "numbers: lnlib.paper, with their sources").set_properties(**{"text-align": "left"})


def status_numbers(status: pd.DataFrame, near: bool) -> dict:
    """The status page's measured value, verdict and scale per claim, for the book's prose: keys
    ``ours_<claim>, verdict_<claim>, scale_<claim>``, the claims of :func:`measured_status`'s rows in their order
    (``fpr_near`` first where the open-set study is in, ``near``)."""
    keys = [*(["fpr_near"] if near else []), "fpr_far", "fpr_synthetic", "accuracy",
            "mechanism_growth", "mechanism_weight_decay", "mechanism_ranking",
            "table1_cifar10", "table1_cifar100", "theorem", "alpha", "clipped",
            *[f"{m}_{q}" for m in ("acet", "ceda") for q in ("alpha", "clipped", "attacked")]]
    return {f"{part}_{key}": row[part] for key, (_, row) in zip(keys, status.iterrows(), strict=True)
            for part in ("ours", "verdict", "scale")}
