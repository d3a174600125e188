"""OOD-detection and classification metrics, from score arrays. All return fractions in [0, 1].

Convention (stated once, used everywhere): scores are "higher = more in-distribution", and by default
**ID is the positive class**, as in the LogitNorm paper and Hein et al.:

* ``fpr_at_tpr(id, ood)`` — FPR95: the fraction of OOD samples *accepted* (score ≥ t) at the highest
  threshold t that still accepts at least 95% of ID samples. ``positive='ood'`` gives OpenOOD v1.5's
  convention instead: the fraction of ID samples *rejected* at the threshold that catches 95% of OOD.
* ``auroc`` — area under the ROC curve; the same under both conventions.
* ``aupr_in`` / ``aupr_out`` — average precision with ID / OOD as the positive class (the OOD score then
  being ``-score``); the LogitNorm code reports AUPR-In.

Ties are handled exactly: tied scores form one threshold, so a tie never splits arbitrarily.

Calibration and confidence: ``ece`` / ``reliability`` (Guo et al., ICML 2017: 15 equal-width bins on the
max softmax probability, as in the LogitNorm code), ``mmc`` (mean max confidence, Hein et al., CVPR 2019)
and ``accuracy``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax

from lnlib import scores

POSITIVES = ("id", "ood")


def _check(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    for name, s in (("id_scores", id_scores), ("ood_scores", ood_scores)):
        if s.size == 0:
            raise ValueError(f"{name} is empty")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name} contains NaN or inf")
    return id_scores, ood_scores


def _counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True- and false-positive counts when accepting ``score ≥ t``, one entry per distinct score t
    (descending). Returns ``(tps, fps)``, both ending at ``(len(pos), len(neg))``."""
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_pos = scores[order], is_pos[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(is_pos)[last_of_tie]
    return tps, (last_of_tie + 1) - tps


def check_positive(positive: str) -> None:
    """Raise ValueError unless ``positive`` names a convention in ``POSITIVES``."""
    if positive not in POSITIVES:
        raise ValueError(f"positive={positive!r} is not valid; choose one of {list(POSITIVES)}")


def _orient(id_scores, ood_scores, positive: str) -> tuple[np.ndarray, np.ndarray]:
    check_positive(positive)
    id_scores, ood_scores = _check(id_scores, ood_scores)
    return (id_scores, ood_scores) if positive == "id" else (-ood_scores, -id_scores)


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95, positive: str = "id") -> float:
    """False-positive rate at the first threshold whose true-positive rate is ≥ ``tpr`` (FPR95 by default).

    ``positive='id'`` (default, LogitNorm paper): fraction of OOD accepted while ≥ 95% of ID is accepted.
    ``positive='ood'`` (OpenOOD v1.5): fraction of ID rejected while ≥ 95% of OOD is rejected.
    Unlike the official LogitNorm code (nearest point to 95%, which may lie below it), the TPR here is
    never below ``tpr``.
    """
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr={tpr!r} must be in (0, 1]")
    pos, neg = _orient(id_scores, ood_scores, positive)
    tps, fps = _counts(pos, neg)
    first = np.searchsorted(tps / len(pos), tpr - 1e-12)  # TPR is non-decreasing along the thresholds
    return float(fps[first] / len(neg))


def auroc(id_scores, ood_scores) -> float:
    """Area under the ROC curve (ID positive; identical with OOD positive). 0.5 = chance, ties count ½."""
    pos, neg = _orient(id_scores, ood_scores, "id")
    tps, fps = _counts(pos, neg)
    tpr, fpr = np.r_[0, tps / len(pos)], np.r_[0, fps / len(neg)]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _average_precision(pos, neg) -> float:
    """``Σ_n (R_n − R_{n−1})·P_n`` over distinct thresholds (scikit-learn's ``average_precision_score``)."""
    tps, fps = _counts(pos, neg)
    precision, recall = tps / (tps + fps), tps / len(pos)
    return float(np.sum(np.diff(np.r_[0, recall]) * precision))


def aupr_in(id_scores, ood_scores) -> float:
    """Average precision with ID as the positive class. Chance level = #ID / (#ID + #OOD)."""
    return _average_precision(*_orient(id_scores, ood_scores, "id"))


def aupr_out(id_scores, ood_scores) -> float:
    """Average precision with OOD as the positive class (score ``-s``). Chance = #OOD / (#ID + #OOD)."""
    return _average_precision(*_orient(id_scores, ood_scores, "ood"))


def ood_metrics(id_scores, ood_scores, positive: str = "id") -> dict[str, float]:
    """FPR95 (under ``positive``'s convention), AUROC, AUPR-In and AUPR-Out, as fractions."""
    return {
        "fpr95": fpr_at_tpr(id_scores, ood_scores, 0.95, positive),
        "auroc": auroc(id_scores, ood_scores),
        "aupr_in": aupr_in(id_scores, ood_scores),
        "aupr_out": aupr_out(id_scores, ood_scores),
    }


# How many OOD images are scored. 'all': every image once (this project's default). 'official': as the official
# LogitNorm test.py — len(ID test)//5 OOD images drawn at random (2,000 against CIFAR's 10,000 test images),
# the metrics averaged over 10 draws (--num_to_avg 10).
OOD_PROTOCOLS = ("all", "official")
OFFICIAL_DRAWS = 10


def check_protocol(protocol: str) -> None:
    if protocol not in OOD_PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is not valid; choose one of {OOD_PROTOCOLS}")


def ood_metrics_protocol(id_scores, ood_scores, positive: str = "id", protocol: str = "all",
                         seed: int = 0) -> tuple[dict[str, float], int]:
    """:func:`ood_metrics` under an evaluation protocol (:data:`OOD_PROTOCOLS`); returns the metrics and the
    number of OOD images each draw scored. 'official' draws ``len(id_scores) // 5`` OOD scores without
    replacement (all of them if there are fewer), :data:`OFFICIAL_DRAWS` times with ``seed``, and averages."""
    check_protocol(protocol)
    ood_scores = np.asarray(ood_scores)
    if protocol == "all":
        return ood_metrics(id_scores, ood_scores, positive), len(ood_scores)
    n = min(len(id_scores) // 5, len(ood_scores))
    rng = np.random.default_rng(seed)
    draws = [ood_metrics(id_scores, ood_scores[rng.choice(len(ood_scores), n, replace=False)], positive)
             for _ in range(OFFICIAL_DRAWS)]
    return {k: float(np.mean([d[k] for d in draws])) for k in draws[0]}, n


def accuracy(logits, labels) -> float:
    """Top-1 accuracy: fraction of ``argmax(logits) == labels``. ``logits`` (N, K), ``labels`` (N,)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    return float(np.mean(logits.argmax(axis=1) == labels))


# ------------------------------------------------------------------------------------ calibration
ECE_BINS = 15  # as in Guo et al. (2017) and the LogitNorm code's _ECELoss


def _confidence_and_correct(logits, labels, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (len(logits),):
        raise ValueError(f"logits must be (N, K) and labels (N,); got {logits.shape} and {labels.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be > 0")
    p = softmax(logits / temperature, axis=1)
    return p.max(axis=1), p.argmax(axis=1) == labels


def reliability(logits, labels, n_bins: int = ECE_BINS, temperature: float = 1.0) -> dict[str, np.ndarray]:
    """Reliability-diagram data of ``softmax(logits / temperature)``: equal-width confidence bins on [0, 1].

    A sample with max softmax probability ``c`` falls in bin ``m`` when ``m/M < c ≤ (m+1)/M``. Returns
    ``edges`` (M+1,), and per bin ``count``, ``accuracy`` and ``confidence`` (mean max probability) (M,);
    empty bins have NaN accuracy and confidence. ``logits`` (N, K), ``labels`` (N,).
    """
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} must be a positive integer")
    conf, correct = _confidence_and_correct(logits, labels, temperature)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], conf, side="left")  # number of inner edges strictly below c
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy_ = np.bincount(which, weights=correct, minlength=n_bins) / count
        confidence = np.bincount(which, weights=conf, minlength=n_bins) / count
    return {"edges": edges, "count": count, "accuracy": accuracy_, "confidence": confidence}


def ece(logits, labels, n_bins: int = ECE_BINS, temperature: float = 1.0) -> float:
    """Expected calibration error ``Σ_m (|B_m|/N)·|acc(B_m) − conf(B_m)|`` over :func:`reliability`'s bins,
    of ``softmax(logits / temperature)``."""
    r = reliability(logits, labels, n_bins, temperature)
    filled = r["count"] > 0
    gaps = np.abs(r["accuracy"][filled] - r["confidence"][filled])
    return float(np.sum(r["count"][filled] * gaps) / r["count"].sum())


def mmc(logits) -> float:
    """Mean max confidence ``mean_i max_k softmax(f(x_i))_k`` (Hein et al., 2019). In [1/K, 1]."""
    return float(scores.msp(logits).mean())


def nll(logits, labels) -> float:
    """Mean negative log-likelihood ``−mean_i log softmax(f_i)_{y_i}`` (the test cross-entropy), in nats."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    log_p = log_softmax(logits, axis=1)
    return float(-np.mean(log_p[np.arange(len(labels)), labels]))
