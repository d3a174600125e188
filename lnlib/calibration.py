"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

One scalar ``T > 0`` divides the logits, ``softmax(f/T)``; it is fitted by minimising the negative
log-likelihood on the **validation split** (never the test set: the official LogitNorm code fitted it on the
test loader, its issue #4). Accuracy and every OOD ranking of MSP are unchanged by it; only the confidence
values, hence ECE and NLL, move.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from lnlib import metrics

T_RANGE = (1e-3, 1e3)  # search interval for T; NLL is convex in 1/T, so the bounded minimum is global


def fit_temperature(logits, labels) -> float:
    """``argmin_T  −mean_i log softmax(f_i/T)_{y_i}`` over ``T_RANGE``. ``logits`` (N, K), ``labels`` (N,).

    Written in β = 1/T the NLL is ``mean_i [logsumexp(β f_i) − β f_{i,y_i}]``, a convex function of β, so a
    bounded scalar search on log β finds the global minimum.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if len(logits) == 0:
        raise ValueError("cannot fit a temperature on an empty set (is val_size 0?)")
    lo, hi = (math.log(1 / t) for t in reversed(T_RANGE))
    result = minimize_scalar(lambda log_beta: metrics.nll(logits * math.exp(log_beta), labels),
                             bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(-result.x))


def calibration_report(logits, labels, temperature: float = 1.0) -> dict[str, float]:
    """ECE (15 bins), NLL, MMC and accuracy of ``softmax(logits/T)``; all fractions except NLL (nats)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return {"ece": metrics.ece(scaled, labels), "nll": metrics.nll(scaled, labels), "mmc": metrics.mmc(scaled),
            "accuracy": metrics.accuracy(scaled, labels)}
