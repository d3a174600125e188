"""Hein et al.'s experiments on trained runs: rays through pixel space, noise and adversarial noise.

The far-away chapter compares training methods (:data:`lnlib.config.METHODS`) on the same images. Here the
model takes [0, 1] pixels (:func:`lnlib.faraway.pixel_model`), so ``α·u`` scales an image as in the paper.

- :func:`ray_inputs`: the directions ``u``: ID test images and uniform noise, as in Table 2.
- :func:`scan`: :func:`lnlib.faraway.ray_limit` of one run on one set of directions, cached in the run folder
  (``rays/<set>-<hash of the directions and the grid>.npz``) because it is the expensive step (float64,
  one pass per α).
- :func:`ray_records`: per run and set, the Table-2 statistics and the limits of the raw and the
  normalised confidence: the "bridge" between the two papers.
- :func:`noise_records`: MMC, AUROC and FPR95 of the ID test set against Hein's noise and against the most
  confident point near it (PGD), the paper's "Noise" and "Adv. Noise" rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
import pandas as pd
import torch

from lnlib import faraway, metrics, scores
from lnlib.data import ID_SETS, load_id
from lnlib.evaluate import ID_TEST, logits, predict, run_columns
from lnlib.runs import Run, atomic_write_bytes

TEST_IMAGES, UNIFORM_NOISE = "test images", "uniform noise"
PATTERN_MODELS = ("small_cnn", "mlp")  # every ReLU an nn.ReLU module, so activation patterns can be read


def check_parameters(model: str, **counts) -> None:
    """Raise ``ValueError`` before any work: the model must expose its ReLUs (:data:`PATTERN_MODELS`) and every
    count (rays, noise images, attack steps, ...) must be a positive integer."""
    if model not in PATTERN_MODELS:
        raise ValueError(f"model={model!r}: the far-away analysis reads activation patterns from nn.ReLU "
                         f"modules; choose one of {list(PATTERN_MODELS)}")
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")


def run_pixel_model(run: Run) -> torch.nn.Module:
    """The run's trained model taking [0, 1] pixels, in eval mode on the CPU."""
    spec = ID_SETS[run.config.dataset]
    return faraway.pixel_model(run.load_model(), spec.mean, spec.std)


def test_pixels(dataset: str, n: int) -> torch.Tensor:
    """The first ``n`` ID test images as float32 pixels in [0, 1]: (n, C, H, W)."""
    return load_id(dataset)["test"].images[:n].float() / 255


def ray_inputs(dataset: str, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Directions for the rays: the first ``n`` ID test images and ``n`` uniform noise images U[0, 1]^d
    (the inputs of the paper's Table 2), both (n, C, H, W) pixels."""
    images = test_pixels(dataset, n)
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed))
    return {TEST_IMAGES: images, UNIFORM_NOISE: noise}


def scan(run: Run, name: str, u: torch.Tensor, alphas=faraway.ALPHAS) -> faraway.RayLimit:
    """:func:`lnlib.faraway.ray_limit` of the run's pixel model along ``α·u``, cached per set name, directions
    and grid (their bytes are hashed, so other directions under the same name are never served stale)."""
    alphas = np.asarray(alphas, dtype=float)
    key = hashlib.sha256(u.numpy().tobytes() + alphas.tobytes()).hexdigest()[:8]
    path = run.path / "rays" / f"{name.replace(' ', '_')}-{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            return faraway.RayLimit(**{f.name: cached[f.name] for f in dataclasses.fields(faraway.RayLimit)})
    limit = faraway.ray_limit(run_pixel_model(run), u, alphas)
    path.parent.mkdir(exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **dataclasses.asdict(limit))
    atomic_write_bytes(buffer.getvalue(), path)
    return limit


def ray_records(runs, inputs: dict[str, torch.Tensor], tau: float, alphas=faraway.ALPHAS,
                level: float = 0.999, clipped_level: float = 0.95) -> pd.DataFrame:
    """One row per (run, set of directions, metric); columns as :func:`lnlib.evaluate.ood_records` plus
    ``set``. Metrics, each over the ``N`` rays of the set:

    - ``median_alpha``, ``reached``, ``clipped_overconfident``: :func:`lnlib.faraway.alpha_scaling_table`;
    - ``unique_top_slope``: share of rays whose final region has one top slope, so MSP → 1 (Theorem 3.1);
    - ``pattern_changes``: median number of linear regions crossed along the grid; ``median_alpha_final``;
    - ``msp_start``, ``msp_far``: median raw MSP at α = 1 and at the largest α;
    - ``normalized_start``, ``normalized_far``, ``normalized_limit``: median ``max softmax(f/(τ‖f‖))`` at α = 1,
      at the largest α, and its limit ``max softmax(Vx/(τ‖Vx‖))`` from the final region's slope.
    """
    alphas = np.asarray(alphas, dtype=float)
    rows = []
    for run in runs:
        model = run_pixel_model(run)
        for name, u in inputs.items():
            limit = scan(run, name, u, alphas)
            log_msp = limit.curve()
            table = faraway.alpha_scaling_table(model, u, alphas, level, clipped_level, log_confidence=log_msp)
            msp = np.exp(log_msp)
            normalized = np.exp(limit.curve(lambda f: scores.log_normalized_confidence(f, tau)))
            values = {**table, "unique_top_slope": float((limit.limit_log_confidence == 0).mean()),
                      "pattern_changes": float(np.median(limit.pattern_changes)),
                      "median_alpha_final": float(np.median(limit.alpha_final)),
                      "msp_start": float(np.median(msp[:, 0])), "msp_far": float(np.median(msp[:, -1])),
                      "normalized_start": float(np.median(normalized[:, 0])),
                      "normalized_far": float(np.median(normalized[:, -1])),
                      "normalized_limit": float(np.median(scores.normalized_confidence(limit.slope, tau)))}
            rows += [{**run_columns(run), "set": name, "n": len(u), "metric": k, "value": v}
                     for k, v in values.items()]
    return pd.DataFrame(rows)


def noise_records(runs, n: int, eps: float = 0.3, steps: int = 40, seed: int = 0) -> pd.DataFrame:
    """ID test vs Hein's noise and vs adversarial noise, by MSP: one row per (run, set, metric).

    The noise is :func:`lnlib.faraway.hein_noise` made from the first ``n`` ID test images; "adversarial
    noise" is :func:`lnlib.faraway.confidence_pgd` from there (``eps`` in pixels, ``steps`` steps of
    ``eps/steps``), against each model separately. Metrics: ``mmc`` (on the OOD set) and, against all ID test
    images, ``auroc`` and ``fpr95`` (ID positive), fractions.
    """
    rows = []
    for run in runs:
        cfg = run.config
        model = run_pixel_model(run)
        noise = faraway.hein_noise(test_pixels(cfg.dataset, n), torch.Generator().manual_seed(seed))
        adversarial = faraway.confidence_pgd(model, noise, eps, steps, generator=torch.Generator().manual_seed(seed))
        id_logits = logits(run, [ID_TEST])[ID_TEST].logits
        for name, images in (("noise", noise), ("adv. noise", adversarial)):
            ood_logits = predict(model, images, cfg.eval_batch_size)
            m = metrics.ood_metrics(scores.log_msp(id_logits), scores.log_msp(ood_logits))
            values = {"mmc": metrics.mmc(ood_logits), "auroc": m["auroc"], "fpr95": m["fpr95"]}
            rows += [{**run_columns(run), "set": name, "n": n, "metric": k, "value": v} for k, v in values.items()]
    return pd.DataFrame(rows)
