"""ReLU networks far away from the data (Hein, Andriushchenko & Bitterwolf, CVPR 2019).

A network built from affine layers (linear, convolution, batch norm in eval mode, average pooling) and
piecewise-linear ones (ReLU, max pooling) computes a piecewise affine function: finitely many regions
``Q_t``, and ``f(z) = V_t z + a_t`` on each. Their Lemma 3.1: along a ray ``αx`` every such network ends up
in one region for all ``α ≥ α₀``; there ``f(αx) = α·V_t x + a_t``. Theorem 3.1: if the top entry of
``V_t x`` is unique (true for almost every ``x``), the max softmax of ``f(αx)`` tends to 1 as ``α → ∞``.

This module measures that on a model: :func:`alpha_curve` (confidence along the ray, in float64),
:func:`activation_pattern` (which region a point is in), :func:`ray_limit` (the final region's slope
``V_t x`` and offset ``a_t``, and the limiting class and confidence they predict), :func:`alpha_star`,
:func:`table2_rays` and :func:`table2_summary` (the paper's Table 2 statistics, α* found by bisection)
and :func:`clipped_along` (what clipping a scaled image back into the box does). ``x`` is always
what the model takes as input, and ``α`` scales it; :func:`pixel_model` puts the normalisation inside the
model so that ``α`` scales [0, 1] pixels, as in the paper.

The mitigation trains for low confidence on noise (CEDA) or on the most confident point of a small ball
around noise (ACET): :func:`hein_noise` is the paper's noise distribution and :func:`confidence_pgd` the
attack, both in [0, 1] pixel space.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lnlib import scores

ALPHAS = 2.0 ** np.arange(0, 61)  # 1 .. 1.2e18: the ACET MNIST model of the paper needs α ≈ 3e15
SEARCH_ALPHAS = 2.0 ** np.arange(0, 60.001, 1 / 8)  # α*'s bracketing grid: 8 points per doubling (alpha_star)
LEVEL, CLIPPED_LEVEL = 0.999, 0.95  # Hein et al.'s Table 2: 99.9% confidence along the ray, > 95% once clipped
CLIPPED_ALPHAS = 2.0 ** np.arange(0, 8.01, 0.25)  # 1 .. 256: beyond, clipped uniform noise is all but white


def float64_model(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` in eval mode (batch norm affine, dropout off); the original is untouched.

    Far along a ray the logits grow like α, so float32 saturates the softmax and loses the offsets.
    """
    return copy.deepcopy(model).to(torch.float64).eval()


@torch.no_grad()
def _logits(model64: nn.Module, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    """float64 logits of ``z`` (on the model's device), returned on the CPU for NumPy."""
    return torch.cat([model64(chunk).cpu() for chunk in z.split(batch_size)])


def alpha_curve(model: nn.Module, x: torch.Tensor, alphas=ALPHAS, batch_size: int = 500,
                score=scores.log_msp) -> np.ndarray:
    """``score(f(αx))`` for every input and every α: ``(N, A)`` float64; by default ``log max_k softmax``.

    ``x`` ``(N, ...)``; ``alphas`` ``(A,)``; ``score`` maps logits ``(N, K)`` to ``(N,)``, e.g.
    ``lambda f: scores.log_normalized_confidence(f, tau)``. The log form (:func:`lnlib.scores.log_msp`)
    keeps confidences like 1 − 1e-40 apart; ``exp`` of it is the confidence.
    """
    model64, x = float64_model(model), x.to(torch.float64)
    return np.stack([score(_logits(model64, float(a) * x, batch_size)) for a in alphas], axis=1)


def alpha_threshold(log_confidence: np.ndarray, alphas=ALPHAS, level: float = LEVEL) -> np.ndarray:
    """Smallest α of the grid with confidence ≥ ``level`` per input (``inf`` if none): ``(N,)``.

    ``log_confidence`` is :func:`alpha_curve`'s output. The paper's Table 2 reports the median of this
    over random inputs for ``level = 0.999``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1)")
    reached = log_confidence >= np.log(level)
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), np.asarray(alphas, dtype=float)[first], np.inf)


@torch.no_grad()
def _reaches(model64: nn.Module, x: torch.Tensor, rows: np.ndarray, alphas, level: float,
             batch_size: int) -> np.ndarray:
    """Whether ``max softmax(f(α_i·x_i)) ≥ level`` for the inputs ``rows`` of ``x`` (float64), each at its own α (or
    all at one): ``(len(rows),)`` bool."""
    scale = torch.as_tensor(alphas, dtype=torch.float64, device=x.device).reshape(-1, *[1] * (x.ndim - 1))
    chosen = x[torch.from_numpy(rows).to(x.device)]
    return scores.log_msp(_logits(model64, scale * chosen, batch_size)) >= np.log(level)


@torch.no_grad()
def first_on_grid(model: nn.Module, x: torch.Tensor, alphas=ALPHAS, level: float = LEVEL,
                  batch_size: int = 500) -> np.ndarray:
    """:func:`alpha_threshold` without the whole curve: ``(N,)``, the first α of the grid with ``max softmax(f(αx)) ≥
    level`` (``inf`` if none). Each ray stops being evaluated once it gets there, so a model that is confident
    at small α costs a few forward passes, not one per grid point."""
    model64, x = float64_model(model), x.to(torch.float64)
    first, active = np.full(len(x), np.inf), np.ones(len(x), dtype=bool)
    for a in np.asarray(alphas, dtype=float):
        rows = np.flatnonzero(active)
        if not rows.size:
            break
        reached = _reaches(model64, x, rows, a, level, batch_size)
        first[rows[reached]], active[rows[reached]] = a, False
    return first


def alpha_star(model: nn.Module, x: torch.Tensor, level: float = LEVEL, alphas=SEARCH_ALPHAS, rtol: float = 1e-4,
               batch_size: int = 500, first: np.ndarray | None = None) -> np.ndarray:
    """The smallest α ≥ ``alphas[0]`` with ``max softmax(f(αx)) ≥ level``, per input, to relative tolerance ``rtol``:
    ``(N,)`` float64, ``inf`` where no α of the grid gets there.

    The grid brackets the crossing: the first grid α that reaches ``level`` (:func:`first_on_grid`, or ``first``
    if already computed) and the one before it, which does not. Bisection on ``log α`` then halves the bracket
    until ``hi / lo − 1 ≤ rtol`` (about 10 forward passes from a bracket of ratio 2^(1/8) to 10⁻⁴), keeping ``hi``
    on the side that reaches the level; ``hi`` is returned, so the value reaches the level and the crossing lies
    less than a factor ``1 + rtol`` below it. Along a ray the confidence need not rise monotonically: it can pass
    99.9% briefly and fall back before it rises for good. A grid that steps over such an excursion reports the
    later crossing; on a cross-entropy Fashion-MNIST network, 6 of 500 uniform-noise rays did so on the 2^k grid
    (α* ≈ 60–90 instead of 3–5), 1 on a grid of 2^(k/4) and none on the default 2^(k/8), judged against a
    brute-force scan 64 points per doubling (:func:`agrees_with_grid`; ``tests/test_faraway.py`` does the same
    on small networks).

    Hein et al.'s Table 2 reports the median of this over uniform noise for ``level = 0.999``, scanning α ≥ 1.
    """
    if not rtol > 0:
        raise ValueError(f"rtol={rtol!r} must be > 0 (a relative tolerance on α, e.g. 1e-4)")
    alphas = np.asarray(alphas, dtype=float)
    first = first_on_grid(model, x, alphas, level, batch_size) if first is None else np.asarray(first, dtype=float)
    hi, found = first.copy(), np.isfinite(first)
    index = np.searchsorted(alphas, np.where(found, first, alphas[0]))
    lo = np.where(index > 0, alphas[np.maximum(index - 1, 0)], first)  # at the grid's first α already: nothing to do
    model64, x = float64_model(model), x.to(torch.float64)
    active = found & (index > 0)
    while active.any():
        rows = np.flatnonzero(active)
        mid = np.sqrt(lo[rows] * hi[rows])
        reached = _reaches(model64, x, rows, mid, level, batch_size)
        hi[rows[reached]], lo[rows[~reached]] = mid[reached], mid[~reached]
        active[rows] = hi[rows] / lo[rows] - 1 > rtol
    return hi


def activation_pattern(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The linear region ``z`` lies in, as one integer row per input: ``(N, P)`` int64.

    The on/off state of every ``nn.ReLU`` unit and the arg-max of every ``nn.MaxPool2d`` window, read with
    forward hooks. Two inputs with equal rows are in the same affine piece. ReLUs applied as functions
    (``F.relu``) are invisible to hooks, so this works for ``mlp`` and ``small_cnn``, not for the residual
    networks.
    """
    return _pattern_and_logits(model, z)[0]


@torch.no_grad()
def _pattern_and_logits(model: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    parts = []

    def on_relu(module, inputs, output):
        parts.append((output > 0).flatten(1).long())  # output > 0 iff input > 0, also when inplace

    def on_pool(module, inputs, output):
        _, idx = F.max_pool2d(inputs[0], module.kernel_size, module.stride, module.padding, module.dilation,
                              module.ceil_mode, return_indices=True)
        parts.append(idx.flatten(1))

    hooks = [m.register_forward_hook(on_relu) for m in model.modules() if isinstance(m, nn.ReLU)]
    hooks += [m.register_forward_hook(on_pool) for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    if not hooks:
        raise ValueError("the model has no nn.ReLU or nn.MaxPool2d module to read an activation pattern from")
    try:
        was_training = model.training
        model.eval()
        logits = model(z)
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(parts, dim=1), logits


@dataclass
class RayLimit:
    """Where rays ``αx`` end up, per input (``N`` rows, ``K`` classes)."""

    alpha_final: np.ndarray  # (N,) first grid α from which the activation pattern no longer changes
    pattern_changes: np.ndarray  # (N,) how often the pattern changed between consecutive grid points
    slope: np.ndarray  # (N, K) V_t x in the final region: d f(αx) / dα
    offset: np.ndarray  # (N, K) a_t = f(αx) − α V_t x, constant in the final region
    limit_class: np.ndarray  # (N,) argmax of the slope; on a tie, the tied class with the largest offset
    slope_gap: np.ndarray  # (N,) top slope minus the runner-up: > 0 means confidence -> 1
    limit_log_confidence: np.ndarray  # (N,) log max softmax as α -> ∞ (0 when the top slope is unique)
    alphas: np.ndarray  # (A,) the grid
    logits: np.ndarray  # (N, A, K) f(αx) at every α of the grid, float64

    def curve(self, score=scores.log_msp) -> np.ndarray:
        """``score`` of the logits along each ray: ``(N, A)``; as :func:`alpha_curve`, without new forward passes."""
        n, a, k = self.logits.shape
        return np.asarray(score(self.logits.reshape(n * a, k))).reshape(n, a)


def ray_limit(model: nn.Module, x: torch.Tensor, alphas=ALPHAS, batch_size: int = 500) -> RayLimit:
    """The final linear region of each ray ``αx`` and the limit it implies (Hein et al., Lemma/Theorem 3.1).

    The pattern is read at every α of the grid; from ``alpha_final`` on it is constant, so the logits are
    affine in α there, and two of its points, ``α_f = alpha_final`` and ``2α_f``, give the slope
    ``(f(2α_f x) − f(α_f x))/α_f`` (= the Jacobian-vector product ``J_f·x``) and the offset
    ``2f(α_f x) − f(2α_f x)``, in float64. ``alphas`` must be increasing and reach far enough for the last
    pattern change to happen inside the grid. If the slope's top entry is
    unique the limiting confidence is 1 (log 0); on a tie between m classes it is
    ``softmax`` of the tied offsets, computed from them.
    """
    model64, x = float64_model(model), x.to(torch.float64)
    alphas = np.asarray(alphas, dtype=float)
    changed = np.zeros((len(x), len(alphas) - 1), dtype=bool)  # did the pattern change from alphas[j] to [j+1]?
    along = []  # logits along the rays, one (n, A, K) block per chunk
    for start in range(0, len(x), batch_size):  # patterns are large (one entry per unit): a chunk at a time
        chunk, block, previous = x[start:start + batch_size], [], None
        for j, a in enumerate(alphas):
            current, logits = _pattern_and_logits(model64, a * chunk)
            block.append(logits.cpu().numpy())
            if previous is not None:
                changed[start:start + len(chunk), j - 1] = (current != previous).any(dim=1).cpu().numpy()
            previous = current
        along.append(np.stack(block, axis=1))
    last_change = np.where(changed.any(axis=1), changed.shape[1] - np.argmax(changed[:, ::-1], axis=1), 0)
    alpha_final = alphas[last_change]
    # In the final region f(αx) = α·slope + offset exactly, so two points of it give both: α_f and 2α_f,
    # each ray at its own alpha_final (at the largest α the offset would drown in rounding, f ~ 1e18·slope).
    at = torch.from_numpy(alpha_final).to(x.device).view(-1, *[1] * (x.ndim - 1))
    f1, f2 = _logits(model64, at * x, batch_size).numpy(), _logits(model64, 2 * at * x, batch_size).numpy()
    slope = (f2 - f1) / alpha_final[:, None]
    offset = 2 * f1 - f2
    ordered = np.sort(slope, axis=1)
    gap = ordered[:, -1] - ordered[:, -2]
    tied = np.isclose(slope, ordered[:, -1:], rtol=1e-9, atol=0)
    tied_offsets = np.where(tied, offset, -np.inf)  # on a tie the offsets decide among the tied classes
    limit = np.where(gap > 1e-9 * np.abs(ordered[:, -1]), 0.0, scores.log_msp(tied_offsets))
    # the limiting class: the top slope's, and among classes tied on it the largest offset's (all classes tie
    # when every ReLU switches off along the ray: the slope is zero and f(αx) → the offset)
    limit_class = tied_offsets.argmax(axis=1)
    return RayLimit(alpha_final=alpha_final, pattern_changes=changed.sum(axis=1), slope=slope,
                    offset=offset, limit_class=limit_class, slope_gap=gap, limit_log_confidence=limit,
                    alphas=alphas, logits=np.concatenate(along))


class Normalize(nn.Module):
    """``(u − mean) / std`` per channel: an affine first layer, so ``Normalize → model`` is still piecewise affine."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, u):
        return (u - self.mean) / self.std


def pixel_model(model: nn.Module, mean, std) -> nn.Module:
    """``model`` taking [0, 1] pixels ``u`` instead of normalised images, so that ``α·u`` scales the image,
    as in Hein et al.'s Table 2 (their models take [0, 1] inputs without normalisation)."""
    return nn.Sequential(Normalize(mean, std), model).eval()


@torch.no_grad()
def clipped_logits(model: nn.Module, u: torch.Tensor, alphas: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """float64 logits of ``clip(α_i·u_i, 0, 1)``, each input at its own α: ``(N, K)``. ``u`` (N, C, H, W) pixels,
    ``alphas`` (N,): the scaled image projected back onto the image box, as in the second row of Table 2."""
    at = torch.from_numpy(np.asarray(alphas, dtype=float)).to(u.device).view(-1, *[1] * (u.ndim - 1))
    return _logits(float64_model(model), (at * u.double()).clamp(0, 1), batch_size).numpy()


def table2_rays(model: nn.Module, u: torch.Tensor, alphas=ALPHAS, level: float = LEVEL,
                batch_size: int = 500, search=SEARCH_ALPHAS) -> dict[str, np.ndarray]:
    """Hein et al.'s Table 2 per ray, for one model taking pixels (:func:`pixel_model`); ``u`` (N, C, H, W) in [0, 1].

    - ``alpha_star`` (N,): :func:`alpha_star` at ``level`` on the grid ``search`` (``inf`` if it never gets there);
    - ``clipped_msp``, ``clipped_class`` (N,): max softmax and predicted class of ``clip(α*·u, 0, 1)``, the ray's
      point at α* (the grid's last α for rays that never get there) projected back onto the image box. The
      paper's caption says "projecting back the α-rescaled uniform noise images"; which α it used is our reading;
    - ``alpha_grid``, ``clipped_msp_grid`` (N,): the same with α read off the grid ``alphas`` alone
      (:func:`first_on_grid`), to show what a coarse grid does to both statistics.
    """
    last = np.asarray(search, dtype=float)[-1]
    grid = first_on_grid(model, u, alphas, level, batch_size)
    star = alpha_star(model, u, level, search, batch_size=batch_size)
    clipped, clipped_grid = (clipped_logits(model, u, np.where(np.isfinite(a), a, last), batch_size)
                             for a in (star, grid))  # rays that never get there: at the grid's last α
    return {"alpha_star": star, "clipped_msp": scores.msp(clipped), "clipped_class": clipped.argmax(axis=1),
            "alpha_grid": grid, "clipped_msp_grid": scores.msp(clipped_grid)}


def table2_summary(rays: dict[str, np.ndarray], clipped_level: float = CLIPPED_LEVEL) -> dict[str, float]:
    """The two statistics of Table 2 (and one more) from :func:`table2_rays`: ``median_alpha`` (the median α*, ``inf``
    when half the rays never get there), ``reached`` (the share that get there) and ``clipped_overconfident``
    (the share with max softmax > ``clipped_level`` after clipping); ``median_alpha_grid`` and
    ``clipped_overconfident_grid``: the two with α read off the grid."""
    star = rays["alpha_star"]
    return {"median_alpha": float(np.median(star)), "reached": float(np.isfinite(star).mean()),
            "clipped_overconfident": float((rays["clipped_msp"] > clipped_level).mean()),
            "median_alpha_grid": float(np.median(rays["alpha_grid"])),
            "clipped_overconfident_grid": float((rays["clipped_msp_grid"] > clipped_level).mean())}


def agrees_with_grid(model: nn.Module, x: torch.Tensor, star: np.ndarray, fine, level: float = LEVEL) -> np.ndarray:
    """Per ray, whether ``star`` (:func:`alpha_star`) lies in the step of the (fine) grid ``fine`` where a brute-force
    scan first reaches ``level``: ``fine[k−1] < star ≤ fine[k]`` (``star ≤ fine[0]`` when ``k = 0``); ``(N,)`` bool.
    Rays whose α* is beyond the grid count as agreeing only if the scan never gets there either."""
    fine = np.asarray(fine, dtype=float)
    first = first_on_grid(model, x, fine, level)
    k = np.searchsorted(fine, np.where(np.isfinite(first), first, fine[-1]))
    below = np.where(k > 0, fine[np.maximum(k - 1, 0)], 0.0)
    inside = (star <= first * (1 + 1e-12)) & (star > below)
    return np.where(np.isfinite(first), inside, star > fine[-1])


@torch.no_grad()
def clipped_along(model: nn.Module, u: torch.Tensor, alphas, batch_size: int = 500) -> dict[str, np.ndarray]:
    """What the images ``clip(α·u, 0, 1)`` look like to ``model`` as α grows: ``msp``, ``predicted`` (class) and
    ``brightness`` (mean pixel), each ``(N, A)`` for ``u`` (N, C, H, W) pixels and ``alphas`` (A,); and
    ``saturated`` ``(N, A)``, the share of pixels clipped at 1. Clipping makes a bright image out of any
    noise: the second row of Table 2 measures the model on such images."""
    model64, u = float64_model(model), u.to(torch.float64)
    out = {"msp": [], "predicted": [], "brightness": [], "saturated": []}
    for a in np.asarray(alphas, dtype=float):
        clipped = (a * u).clamp(0, 1)
        logits = _logits(model64, clipped, batch_size).numpy()
        out["msp"].append(scores.msp(logits))
        out["predicted"].append(logits.argmax(axis=1))
        out["brightness"].append(clipped.flatten(1).mean(1).cpu().numpy())
        out["saturated"].append((a * u >= 1).flatten(1).double().mean(1).cpu().numpy())
    return {k: np.stack(v, axis=1) for k, v in out.items()}


# ------------------------------------------------------------------------------------- noise and PGD
BLUR_RADIUS = 7  # the 15 x 15 Gaussian kernel of the official code
SIGMA_RANGE = (1.0, 2.5)  # blur width in pixels, drawn per image (the official code drew one per batch)


def hein_noise(clean: torch.Tensor, generator: torch.Generator, frac_permuted: float = 0.5) -> torch.Tensor:
    """Hein et al.'s noise, shaped like ``clean`` ``(N, C, H, W)`` (pixels in [0, 1], on its device).

    A fraction ``frac_permuted`` are ``clean`` images with their pixel positions shuffled (the channels of a
    pixel stay together), the rest uniform noise U[0, 1]; then each image is low-pass filtered with a
    Gaussian of σ ~ U[1, 2.5] px (15 x 15 kernel, reflected borders) and min-max rescaled to [0, 1].
    Deterministic for a ``generator`` state.
    """
    if not 0 <= frac_permuted <= 1:
        raise ValueError(f"frac_permuted={frac_permuted!r} must be in [0, 1]")
    n, c, h, w = clean.shape
    device, dtype = clean.device, clean.dtype
    n_perm = round(frac_permuted * n)
    draw = dict(generator=generator, device=generator.device)  # a CUDA generator draws on the GPU
    perms = torch.argsort(torch.rand(n_perm, h * w, **draw), dim=1).to(device)
    permuted = torch.gather(clean[:n_perm].flatten(2), 2, perms[:, None, :].expand(-1, c, -1)).view(n_perm, c, h, w)
    uniform = torch.rand(n - n_perm, c, h, w, **draw).to(device, dtype)
    noise = torch.cat([permuted, uniform])
    sigma = torch.empty(n, device=generator.device).uniform_(*SIGMA_RANGE, generator=generator).to(device, dtype)
    offsets = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (N*C, 15), one per channel
    z = F.pad(noise.reshape(1, n * c, h, w), [BLUR_RADIUS] * 4, mode="reflect")
    z = F.conv2d(z, kernel[:, None, :, None], groups=n * c)  # separable blur: rows, then columns
    z = F.conv2d(z, kernel[:, None, None, :], groups=n * c).view(n, c, h, w)
    low, high = z.amin(dim=(1, 2, 3), keepdim=True), z.amax(dim=(1, 2, 3), keepdim=True)
    return (z - low) / (high - low).clamp_min(1e-12)


def confidence_pgd(model: nn.Module, start: torch.Tensor, eps: float, steps: int, to_input=None,
                   step_size: float | None = None, generator: torch.Generator | None = None,
                   head=None) -> torch.Tensor:
    """The most confident point near ``start``: ℓ∞ PGD maximising ``log max_k softmax(head(f(u)))_k``.

    ``u`` stays in the ball ``‖u − start‖∞ ≤ eps`` intersected with the pixel box [0, 1]^d; ``to_input`` maps
    pixels to what the model takes (e.g. normalisation); ``head`` maps the logits to those whose confidence
    counts (default: the logits; :func:`lnlib.losses.confidence_logits`). As in the official ACET code: a random start
    ``start + s·U[−eps, eps]^d`` with one ``s ~ U[0, 1]`` per example, sign-gradient steps of
    ``step_size`` (default ``eps / steps``), projection onto the box then the ball, batch norm in eval mode,
    and the best iterate per example is returned.
    """
    if not eps >= 0 or not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"eps={eps!r} must be >= 0 and steps={steps!r} an integer >= 0")
    to_input = to_input or (lambda u: u)
    head = head or (lambda logits: logits)
    step_size = eps / max(steps, 1) if step_size is None else step_size
    was_training = model.training
    model.eval()

    def confidence(u):
        return torch.log_softmax(head(model(to_input(u))).float(), dim=1).amax(dim=1)

    def project(u):
        return torch.minimum(torch.maximum(u.clamp(0, 1), start - eps), start + eps)

    shape = (len(start), *[1] * (start.ndim - 1))
    draw = dict(generator=generator, device=generator.device if generator else start.device)
    scale = torch.rand(shape, **draw).to(start)
    u = project(start + scale * eps * (2 * torch.rand(start.shape, **draw).to(start) - 1))
    best, best_conf = u.detach().clone(), None

    def keep_better(u, conf):  # the best iterate so far, per example
        nonlocal best_conf
        if best_conf is None:
            best_conf = conf.clone()
            return
        better = conf > best_conf
        best[better], best_conf[better] = u[better], conf[better]

    # Each iterate's confidence comes from the forward pass that its gradient step needs anyway: steps forward
    # passes with gradient and one without (the last iterate), not 2·steps + 1. The same numbers either way.
    for _ in range(steps):
        u = u.detach().requires_grad_(True)
        conf = confidence(u)
        (grad,) = torch.autograd.grad(conf.sum(), u)
        with torch.no_grad():
            keep_better(u, conf.detach())
            u = project(u + step_size * grad.sign())
    with torch.no_grad():
        keep_better(u, confidence(u))
    model.train(was_training)
    return best.detach()
