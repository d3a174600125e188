"""Post-hoc OOD scores computed from logits. Convention: **higher score = more in-distribution**.

Every function maps logits ``(N, K)`` (numpy or torch) to scores ``(N,)`` as float64 numpy.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax


def _as_float64(logits) -> np.ndarray:
    if hasattr(logits, "detach"):
        logits = logits.detach().cpu().numpy()
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
    return logits


def msp(logits) -> np.ndarray:
    """Maximum softmax probability ``max_k softmax(f)_k`` (Hendrycks & Gimpel, ICLR 2017). In [1/K, 1].

    Note: in float64 any MSP above 1 − 1e-16 rounds to exactly 1.0. Rank with :func:`log_msp`.
    """
    return softmax(_as_float64(logits), axis=1).max(axis=1)


def log_msp(logits) -> np.ndarray:
    """``log max_k softmax(f)_k = −log(1 + Σ_{k≠k*} exp(f_k − f_k*))``, in float64. In [−log K, 0].

    A monotone transform of MSP, so FPR95, AUROC and AUPR are those of MSP, but computed with ``log1p`` it
    keeps confidences like 1 − 1e-30 apart instead of rounding them all to 1.0 (as both ``softmax`` and a
    plain ``log_softmax`` do), which would create artificial ties for the saturated cross-entropy models
    this book studies. Metrics of "MSP" are computed from this.
    """
    z = _as_float64(logits)
    top = z.argmax(axis=1)
    rest = np.exp(z - z[np.arange(len(z)), top][:, None])
    rest[np.arange(len(z)), top] = 0.0  # the max term contributes the 1 of log1p
    return -np.log1p(rest.sum(axis=1))


def logit_norm(logits) -> np.ndarray:
    """L2 norm of the logit vector ``‖f‖₂`` (a diagnostic, not an OOD score)."""
    return np.linalg.norm(_as_float64(logits), axis=1)
