"""Hein et al.'s experiments on trained runs: rays through pixel space, noise and adversarial noise.

The far-away chapter compares training methods (:data:`lnlib.config.METHODS`) on the same images. Here the
model takes [0, 1] pixels (:func:`lnlib.faraway.pixel_model`), so ``α·u`` scales an image as in the paper.

- :func:`ray_inputs`: the directions ``u``: ID test images and uniform noise, as in Table 2.
- :func:`scan`: :func:`lnlib.faraway.ray_limit` of one run on one set of directions, cached in the run folder
  (``rays/<set>-<hash of the directions and the grid>.npz``) because it is the expensive step (float64,
  one pass per α).

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
from lnlib.files import atomic_numpy_save
from lnlib.runs import Run

TEST_IMAGES, UNIFORM_NOISE = "test images", "uniform noise"
PATTERN_MODELS = ("small_cnn", "mlp")  # every ReLU an nn.ReLU module, so activation patterns can be read


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


def scan(run: Run, name: str, u: torch.Tensor, alphas=faraway.ALPHAS, device="auto") -> faraway.RayLimit:
    """:func:`lnlib.faraway.ray_limit` of the run's pixel model along ``α·u``, cached per set name, directions
    and grid (their bytes are hashed, so other directions under the same name are never served stale)."""
    alphas = np.asarray(alphas, dtype=float)
    key = hashlib.sha256(u.cpu().numpy().tobytes() + alphas.tobytes()).hexdigest()[:8]
    path = run.path / "rays" / f"{name.replace(' ', '_')}-{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            return faraway.RayLimit(**{f.name: cached[f.name] for f in dataclasses.fields(faraway.RayLimit)})
    device = resolve_device(device)
    limit = faraway.ray_limit(run_pixel_model(run, device), u.to(device), alphas)
    path.parent.mkdir(exist_ok=True)
    atomic_numpy_save(path, np.savez, **dataclasses.asdict(limit))
    return limit
