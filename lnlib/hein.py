"""Hein et al.'s experiments on trained runs: rays through pixel space, noise and adversarial noise.

The far-away chapter compares training methods (:data:`lnlib.config.METHODS`) on the same images. Here the
model takes [0, 1] pixels (:func:`lnlib.faraway.pixel_model`), so ``α·u`` scales an image as in the paper.

- :func:`ray_inputs`: the directions ``u``: ID test images and uniform noise, as in Table 2.
- :func:`scan`: :func:`lnlib.faraway.ray_limit` of one run on one set of directions, cached in the run folder
  (``rays/<set>-<hash of the directions and the grid>.npz``) because it is the expensive step (float64,
  one pass per α).
- :func:`table2_rays`: the Table-2 statistics per ray (exact α*, the clipped image's confidence), and
  :func:`noise_logits`: the logits of Hein's noise and of the attacked noise; both cached in the run folder too,
  so that the chapters and the status page that read the same runs compute them once.
- :func:`sizes`: the counts of a chapter, capped in quick mode (the same caps on every page that shares a cache).

Their record frames (the Table-2 statistics, the "bridge" to LogitNorm, the "Noise" and "Adv. Noise" rows) are
:func:`lnlib.tidy.ray_records` and :func:`lnlib.tidy.noise_records`. Models run on the device of
:func:`lnlib.devices.resolve_device` (``device="auto"``); the scans are float64 there.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch

from lnlib import faraway
from lnlib.config import check_counts
from lnlib.data import ID_SETS, load_id
from lnlib.devices import resolve_device
from lnlib.evaluate import predict
from lnlib.files import atomic_numpy_save
from lnlib.runs import Run

TEST_IMAGES, UNIFORM_NOISE = "test images", "uniform noise"
PATTERN_MODELS = ("small_cnn", "mlp")  # every ReLU an nn.ReLU module, so activation patterns can be read


# what quick mode caps (toy_resolution: the grid of the 2-D toy's maps, lnlib.toy2d.RESOLUTION in full)
QUICK_SIZES = {"n_rays": 100, "n_noise": 200, "attack_steps": 10, "toy_iterations": 200, "toy_resolution": 100}


def sizes(quick: bool, **counts) -> dict[str, int]:
    """``counts`` (``n_rays=500, n_noise=1000``, ...) as they are measured: capped at :data:`QUICK_SIZES` when
    ``quick``. Every chapter that reads the same cached scans asks here, so their sizes agree."""
    return {k: min(v, QUICK_SIZES[k]) if quick and k in QUICK_SIZES else v for k, v in counts.items()}


def check_parameters(model: str, **counts) -> None:
    """Raise ``ValueError`` before any work: the model must expose its ReLUs (:data:`PATTERN_MODELS`) and every
    count (rays, noise images, attack steps, ...) must be a positive integer."""
    if model not in PATTERN_MODELS:
        raise ValueError(f"model={model!r}: the far-away analysis reads activation patterns from nn.ReLU "
                         f"modules; choose one of {list(PATTERN_MODELS)}")
    check_counts(**counts)


def run_pixel_model(run: Run, device="auto") -> torch.nn.Module:
    """The run's trained model taking [0, 1] pixels, in eval mode on ``device``."""
    spec = ID_SETS[run.config.dataset]
    device = resolve_device(device)
    return faraway.pixel_model(run.load_model(device), spec.mean, spec.std).to(device)


def test_pixels(dataset: str, n: int) -> torch.Tensor:
    """The first ``n`` ID test images as float32 pixels in [0, 1]: (n, C, H, W)."""
    return load_id(dataset)["test"].images[:n].float() / 255


def ray_inputs(dataset: str, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Directions for the rays: the first ``n`` ID test images and ``n`` uniform noise images U[0, 1]^d
    (the inputs of the paper's Table 2), both (n, C, H, W) pixels."""
    images = test_pixels(dataset, n)
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed))
    return {TEST_IMAGES: images, UNIFORM_NOISE: noise}


def _cached(path, compute) -> dict[str, np.ndarray]:
    """The arrays saved at ``path`` (an ``.npz`` in a run folder), or ``compute()``'s, saved there atomically."""
    if path.exists():
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    values = compute()
    path.parent.mkdir(exist_ok=True)
    atomic_numpy_save(path, np.savez, **values)
    return values


def _key(u: torch.Tensor, *arrays) -> str:
    """8 hex digits of the directions' bytes and the settings': other directions under a name are never served stale."""
    return hashlib.sha256(u.cpu().numpy().tobytes() + b"".join(np.asarray(a).tobytes() for a in arrays)).hexdigest()[:8]


def scan(run: Run, name: str, u: torch.Tensor, alphas=faraway.ALPHAS, device="auto") -> faraway.RayLimit:
    """:func:`lnlib.faraway.ray_limit` of the run's pixel model along ``α·u``, cached per set name, directions
    and grid (their bytes are hashed, so other directions under the same name are never served stale)."""
    alphas = np.asarray(alphas, dtype=float)
    path = run.file(Run.RAYS, f"{name.replace(' ', '_')}-{_key(u, alphas)}.npz")
    limit = _cached(path, lambda: dataclasses.asdict(
        faraway.ray_limit(run_pixel_model(run, device), u.to(resolve_device(device)), alphas)))
    return faraway.RayLimit(**{f.name: limit[f.name] for f in dataclasses.fields(faraway.RayLimit)})


def table2_rays(run: Run, name: str, u: torch.Tensor, alphas=faraway.ALPHAS, level: float = faraway.LEVEL,
                device="auto") -> dict[str, np.ndarray]:
    """:func:`lnlib.faraway.table2_rays` of the run's pixel model (exact α* at ``level``, the clipped image's
    confidence and class, per ray), cached in ``rays/table2-<set>-<hash>.npz``."""
    alphas = np.asarray(alphas, dtype=float)
    key = _key(u, alphas, faraway.SEARCH_ALPHAS, level)
    path = run.file(Run.RAYS, f"table2-{name.replace(' ', '_')}-{key}.npz")
    return _cached(path, lambda: faraway.table2_rays(run_pixel_model(run, device), u.to(resolve_device(device)),
                                                     alphas, level))


CHECK_ALPHAS = 2.0 ** np.arange(0, 8.001, 1 / 64)  # a brute-force scan 2^(1/64) apart, up to α = 256


def check_alpha_star(run: Run, u: torch.Tensor, device="auto") -> np.ndarray:
    """Per ray of ``u`` (N, C, H, W), whether the cached α* (:func:`table2_rays`) lies in the step of
    :data:`CHECK_ALPHAS` where a brute-force scan first reaches 99.9% (:func:`lnlib.faraway.agrees_with_grid`):
    (N,) bool. The check that the bisection did not step over an early crossing."""
    star = table2_rays(run, UNIFORM_NOISE, u, device=device)["alpha_star"]
    return faraway.agrees_with_grid(run_pixel_model(run, device), u, star, CHECK_ALPHAS)


def noise_logits(run: Run, n: int, eps: float, steps: int, seed: int = 0, device="auto") -> dict[str, np.ndarray]:
    """Logits (n, K) of Hein's noise made from the first ``n`` ID test images (:func:`lnlib.faraway.hein_noise`,
    ``"noise"``) and of the most confident point within ``eps`` of each (:func:`lnlib.faraway.confidence_pgd`,
    ``steps`` steps of ``eps/steps`` against this run's model, ``"adversarial"``); cached in
    ``noise/n<n>-eps<eps>-steps<steps>-seed<seed>.npz``. The draws come from CPU generators seeded with ``seed``,
    so the noise is the same images on every device."""
    def compute():
        dev = resolve_device(device)
        model = run_pixel_model(run, dev)
        noise = faraway.hein_noise(test_pixels(run.config.dataset, n).to(dev), torch.Generator().manual_seed(seed))
        attacked = faraway.confidence_pgd(model, noise, eps, steps, generator=torch.Generator().manual_seed(seed))
        return {"noise": predict(model, noise, run.config.eval_batch_size).cpu().numpy(),
                "adversarial": predict(model, attacked, run.config.eval_batch_size).cpu().numpy()}

    return _cached(run.file(Run.NOISE, f"n{n}-eps{eps:g}-steps{steps}-seed{seed}.npz"), compute)
