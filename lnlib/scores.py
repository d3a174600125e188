"""Post-hoc OOD scores. Convention, everywhere: **higher score = more in-distribution**.

Scores of logits map ``(N, K)`` (numpy or torch) to ``(N,)`` float64 numpy. GradNorm also needs the
penultimate features ``(N, D)``; ODIN needs the model itself (it perturbs the input). :data:`SCORES` lists
them all with their parameters; :func:`lnlib.evaluate.set_scores` computes any of them for a run, from the
cached logits and features, or (ODIN) once from the model, cached too.

Where a score is a probability that saturates (MSP, the normalised confidence), the function used for
ranking is its logarithm computed without rounding to 1.0 (:func:`log_msp`): a monotone transform, so
FPR95, AUROC and AUPR are unchanged, but confidences like 1 − 1e-30 stay apart instead of tying.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import log_softmax, logsumexp, softmax

from lnlib.losses import LOGIT_NORM_EPS


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


def max_logit(logits) -> np.ndarray:
    """``max_k f_k`` (MaxLogit; Hendrycks et al., "Scaling OOD detection to real-world settings", ICML 2022)."""
    return _as_float64(logits).max(axis=1)


def energy(logits, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy ``T·logsumexp(f/T)`` (Liu et al., "Energy-based OOD detection", NeurIPS 2020).

    The energy is ``E(x) = −T·logsumexp(f/T)``; its negative is the score. As ``T → 0`` it tends to
    MaxLogit; the Energy paper uses T = 1.
    """
    _positive("temperature", temperature)
    return temperature * logsumexp(_as_float64(logits) / temperature, axis=1)


def neg_entropy(logits) -> np.ndarray:
    """``−H(softmax(f)) = Σ_k p_k log p_k``, in [−log K, 0]: a flat prediction scores lowest."""
    log_p = log_softmax(_as_float64(logits), axis=1)
    return np.sum(np.exp(log_p) * log_p, axis=1)


def log_normalized_confidence(logits, tau: float) -> np.ndarray:
    """``log max_k softmax(f/(τ‖f‖))_k``: the confidence LogitNorm's training loss sees (Wei et al., 2022).

    Depends only on the direction of ``f``, not on its norm. Bounded above by the confidence of the best
    unit vector (margin ``√(K/(K−1))/τ``), so ``τ`` sets how close to 1 it can get. Log form for ranking.
    """
    _positive("tau", tau)
    z = _as_float64(logits)
    return log_msp(z / (tau * (np.linalg.norm(z, axis=1, keepdims=True) + LOGIT_NORM_EPS)))


def normalized_confidence(logits, tau: float) -> np.ndarray:
    """``max_k softmax(f/(τ‖f‖))_k`` in [1/K, 1): see :func:`log_normalized_confidence`."""
    return np.exp(log_normalized_confidence(logits, tau))


def gradnorm(logits, features, temperature: float = 1.0) -> np.ndarray:
    """GradNorm (Huang, Geng & Li, NeurIPS 2021), **per sample**, in closed form.

    The score is the L1 norm of the gradient of ``KL(u ‖ softmax(f/T))`` (u uniform over the K classes) with
    respect to the last layer's weight ``W`` (K, D), where ``f = W h + b`` and ``h`` are the penultimate
    features (N, D). That gradient is the outer product ``(1/T)·(softmax(f/T) − u) hᵀ``, so

        S(x) = (1/T)·‖softmax(f/T) − u‖₁ · ‖h‖₁.

    One score per input: the official LogitNorm code back-propagated the *batch-mean* loss and kept one
    number per batch (its issue #3). The GradNorm paper uses T = 1.
    """
    _positive("temperature", temperature)
    z = _as_float64(logits)
    h = _as_float64(features)
    if len(h) != len(z):
        raise ValueError(f"features has {len(h)} rows but logits has {len(z)}")
    p = softmax(z / temperature, axis=1)
    return np.abs(p - 1.0 / z.shape[1]).sum(axis=1) * np.abs(h).sum(axis=1) / temperature


def odin(model: torch.nn.Module, x: torch.Tensor, temperature: float = 1000.0, epsilon: float = 0.0014,
         std=(1.0,), batch_size: int = 500) -> np.ndarray:
    """ODIN (Liang, Li & Srikant, ICLR 2018): max softmax at temperature T after a small input perturbation.

        x̃ = x − ε·sign(∇ₓ CE(f(x)/T, ŷ)),   ŷ = argmax f(x),   S(x) = max_k softmax(f(x̃)/T)_k

    ``x`` are *normalised* inputs (N, C, H, W); ``ε`` is in [0, 1]-pixel units, so the step in normalised
    space is ``ε/std`` per channel, as in the official ODIN and LogitNorm code. The model runs in eval mode,
    so each input's gradient is its own. ODIN paper defaults for CIFAR: T = 1000, ε = 0.0014.
    """
    _positive("temperature", temperature)
    if epsilon < 0:
        raise ValueError(f"epsilon={epsilon!r} must be >= 0")
    was_training = model.training
    model.eval()
    step = epsilon / torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    out = []
    for chunk in x.split(batch_size):
        chunk = chunk.detach().clone().requires_grad_(True)
        logits = model(chunk).float()
        loss = F.cross_entropy(logits / temperature, logits.argmax(1), reduction="sum")
        (grad,) = torch.autograd.grad(loss, chunk)
        with torch.no_grad():
            perturbed = model(chunk - step * grad.sign()).float()
            out.append(F.softmax(perturbed.double() / temperature, dim=1).amax(1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}={value!r} must be > 0")


# ------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Score:
    """A registered score: what it needs (``logits``, ``features`` or ``model``) and its default parameters."""

    label: str  # for tables and figures
    needs: str
    params: dict = field(default_factory=dict)


SCORES: dict[str, Score] = {
    "msp": Score("MSP", "logits"),
    "max_logit": Score("MaxLogit", "logits"),
    "energy": Score("Energy", "logits", {"temperature": 1.0}),
    "entropy": Score("Entropy", "logits"),
    "normalized_confidence": Score("Normalised conf.", "logits", {"tau": 0.04}),
    "gradnorm": Score("GradNorm", "features", {"temperature": 1.0}),
    "odin": Score("ODIN", "model", {"temperature": 1000.0, "epsilon": 0.0014}),
}

_FROM_LOGITS = {"msp": log_msp, "max_logit": max_logit, "energy": energy, "entropy": neg_entropy,
                "normalized_confidence": log_normalized_confidence}


def score_params(name: str, **params) -> dict:
    """The score's parameters: its defaults updated with ``params``. Unknown names or keys raise ValueError."""
    if name not in SCORES:
        raise ValueError(f"score={name!r} is not known; choose one of {sorted(SCORES)}")
    unknown = set(params) - set(SCORES[name].params)
    if unknown:
        raise ValueError(f"score {name!r} takes no parameter {sorted(unknown)}; "
                         f"its parameters are {sorted(SCORES[name].params) or 'none'}")
    for key, value in params.items():
        positive = key != "epsilon"  # temperatures and τ > 0; ODIN's perturbation size may be 0
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0
                or (positive and value == 0)):
            rule = "a positive number" if positive else "a number >= 0"
            raise ValueError(f"score {name!r}: {key}={value!r} is not valid; it must be {rule}")
    return {**SCORES[name].params, **params}


def from_outputs(name: str, logits, features=None, **params) -> np.ndarray:
    """Score ``name`` from logits (and features for GradNorm); ranking form (log for MSP-like scores)."""
    params = score_params(name, **params)
    if SCORES[name].needs == "model":
        raise ValueError(f"score {name!r} needs the model and its inputs; use lnlib.evaluate.set_scores")
    if name == "gradnorm":
        if features is None:
            raise ValueError("score 'gradnorm' needs the penultimate features")
        return gradnorm(logits, features, **params)
    return _FROM_LOGITS[name](logits, **params)


def logit_norm(logits) -> np.ndarray:
    """L2 norm of the logit vector ``‖f‖₂`` (a diagnostic, not an OOD score)."""
    return np.linalg.norm(_as_float64(logits), axis=1)
