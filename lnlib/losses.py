"""Training losses: softmax cross-entropy and LogitNorm.

LogitNorm (Wei et al., "Mitigating Neural Network Overconfidence with Logit Normalization", ICML 2022,
arXiv:2205.09310) is cross-entropy on the logit vector scaled to unit L2 norm and divided by a temperature:

    L_LN(f, y) = CE( f / (τ·(‖f‖₂ + ε)), y ) = −log softmax(f / (τ·(‖f‖₂ + ε)))_y

Cross-entropy can lower its loss on a correctly classified input just by growing ‖f‖ (the argmax does not
change), so the norm keeps growing and softmax confidence saturates. After normalisation every logit lies in
[−1/τ, 1/τ], so the loss is bounded below (see :func:`logit_norm_lower_bound`) and growing the norm no
longer helps. The normalisation is used only during training; at test time the raw logits are used.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LOSSES = ("ce", "logitnorm")  # TrainConfig.loss: softmax cross-entropy, LogitNorm
LOGIT_NORM_EPS = 1e-7  # added to the norm (not the squared norm), as in the official LogitNorm code


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy. ``logits`` (N, K), ``labels`` (N,) int64 -> scalar, in float32."""
    return F.cross_entropy(logits.float(), labels)


def normalized_logits(logits: torch.Tensor, tau: float, eps: float = LOGIT_NORM_EPS) -> torch.Tensor:
    """``f / (τ·(‖f‖₂ + ε))`` per sample (norm over the class dimension). (N, K) -> (N, K), float32.

    Computed in float32 even under bf16 autocast: the norm and the division by a small τ amplify rounding.
    """
    logits = logits.float()
    return logits / (tau * (torch.linalg.vector_norm(logits, dim=-1, keepdim=True) + eps))


def logit_norm_loss(logits: torch.Tensor, labels: torch.Tensor, tau: float,
                    eps: float = LOGIT_NORM_EPS) -> torch.Tensor:
    """Mean LogitNorm loss ``CE(f / (τ·(‖f‖₂ + ε)), y)``. ``logits`` (N, K), ``labels`` (N,) -> scalar.

    Invariant to scaling the logits by any c > 0 (up to ε); bounded below by the paper's
    ``log(1 + (K−1)·exp(−2/τ))`` and, exactly, by :func:`logit_norm_min_loss`. Wei et al. (2022);
    official code ``common/loss_function.py``.
    """
    return F.cross_entropy(normalized_logits(logits, tau, eps), labels)


def logit_norm_lower_bound(tau: float, num_classes: int) -> float:
    """The LogitNorm paper's lower bound on the loss: ``log(1 + (K−1)·exp(−2/τ))``.

    Every normalised logit lies in [−1/τ, 1/τ], so the true class's is at most 1/τ and each other one at
    least −1/τ. The bound is never attained (no unit vector has one coordinate +1 and the others −1); the
    exact minimum is :func:`logit_norm_min_loss`. With K = 10: τ = 1 gives 0.797, τ = 0.1 gives 1.9e-8,
    τ = 0.04 gives 1.7e-21 — a large τ keeps every prediction soft, a small τ lets the loss approach 0.
    """
    return math.log1p((num_classes - 1) * math.exp(-2.0 / tau))


def logit_norm_min_loss(tau: float, num_classes: int) -> float:
    """The exact minimum of the LogitNorm loss over all logit vectors: ``log(1 + (K−1)·exp(−m/τ))``.

    On the unit sphere the largest margin between the true class and every other class is
    ``m = sqrt(K/(K−1))``, reached by ``f̂_y = sqrt((K−1)/K)`` and ``f̂_k = −1/sqrt(K(K−1))`` otherwise
    (for K = 2, m = √2). ``exp(−min loss)`` is the largest softmax confidence LogitNorm can train towards.
    """
    margin = math.sqrt(num_classes / (num_classes - 1))
    return math.log1p((num_classes - 1) * math.exp(-margin / tau))


def tau_theory(taus, num_classes: int):
    """What τ allows, for each τ in ``taus``: the paper's loss lower bound, the exact minimum loss and the
    largest softmax confidence of a normalised logit vector ``exp(−min loss) = 1/(1 + (K−1)e^{−m/τ})``.

    Returns a pandas DataFrame indexed by τ with columns ``loss lower bound (paper)``, ``exact minimum loss``
    (nats) and ``max confidence`` (fraction).
    """
    import pandas as pd

    rows = {tau: {"loss lower bound (paper)": logit_norm_lower_bound(tau, num_classes),
                  "exact minimum loss": logit_norm_min_loss(tau, num_classes),
                  "max confidence": math.exp(-logit_norm_min_loss(tau, num_classes))} for tau in taus}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "tau"
    return frame


class LogitNormLoss(nn.Module):
    """``nn.Module`` wrapper of :func:`logit_norm_loss` with a fixed temperature ``tau``."""

    def __init__(self, tau: float = 0.04, eps: float = LOGIT_NORM_EPS):
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau={tau!r} is not valid; tau must be a positive number")
        self.tau, self.eps = tau, eps

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logit_norm_loss(logits, labels, self.tau, self.eps)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


def max_log_confidence(logits: torch.Tensor) -> torch.Tensor:
    """Hein et al.'s out-distribution loss, averaged: ``mean_j max_k log softmax(f(z_j))_k``. (N, K) -> scalar.

    Added with weight λ on noise images by CEDA and ACET (Hein, Andriushchenko & Bitterwolf, CVPR 2019,
    Sec. 4; official code ``--loss=max_conf``). Its minimum, ``−log K``, is the uniform prediction.
    """
    return torch.log_softmax(logits.float(), dim=1).amax(dim=1).mean()


def confidence_logits(cfg):
    """The logits whose softmax a config's loss trains, as a map from the raw logits: the identity for
    cross-entropy, ``f / (τ‖f‖)`` for LogitNorm.

    The outlier penalty and the ACET attack act on these, so "LogitNorm + ACET" lowers the confidence that
    LogitNorm trains. Both views reach the penalty's minimum at the same place: all logits equal.
    """
    if cfg.loss == "logitnorm":
        return lambda logits: normalized_logits(logits, cfg.tau)
    return lambda logits: logits.float()


def make_loss(cfg):
    """The loss a :class:`~lnlib.config.TrainConfig` asks for: ``(logits, labels) -> scalar``."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss={cfg.loss!r} is not valid; choose one of {list(LOSSES)}")
    return LogitNormLoss(cfg.tau) if cfg.loss == "logitnorm" else cross_entropy
