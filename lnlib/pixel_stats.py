"""The bar a network should beat: OOD detection by a pixel statistic, with no network at all.

An OOD set is only a test of a network's confidence if it cannot be told from the ID images by something
trivial. Each statistic here is a fixed function of an image's pixels ``x ∈ [0, 1]^(C×H×W)``:

* ``dark_share`` — the share of near-black pixels, ``mean(x < 0.1)`` (Fashion-MNIST's clothes lie on a black
  background; noise has almost none);
* ``mean_intensity`` — ``mean(x)``;
* ``roughness`` — the mean absolute difference between horizontally and vertically neighbouring pixels,
  ``½·(mean|x[:, i, j+1] − x[:, i, j]| + mean|x[:, i+1, j] − x[:, i, j]|)``.

A statistic ``t`` becomes a score (higher = more in-distribution, as every score in :mod:`lnlib.scores`) in
one of three :data:`FORMS`, none with a parameter to tune:

* ``typical`` — two-sided typicality against the ID *training* images, ``s(x) = −|F(t(x)) − ½|``, where ``F``
  is the empirical CDF of ``t`` over those images (ties counted half, the mid-rank): an input whose statistic
  lies in either tail of theirs scores low;
* ``high`` — ``s = t`` (OOD images have the smaller values), ``low`` — ``s = −t`` (the larger ones).

**The pixel baseline** of a set is the best of the 3 × 3 scores on that set (:func:`best`). Which one is best is
read off the test images themselves, so it is an oracle: a generous bar that a network should beat, never a
detector one could deploy. It is what tells a hard OOD set from one that counting dark pixels solves. Such
sanity baselines follow Serrà et al. (ICLR 2020), who show that OOD scores can track a simple image property.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

DARK = 0.1  # a pixel below this (on [0, 1]) counts as near-black


def _unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float64 in [0, 1]."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images shaped (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    return images.double() / 255


def dark_share(images: torch.Tensor) -> np.ndarray:
    """Share of pixels below :data:`DARK`, per image: (N, C, H, W) uint8 -> (N,)."""
    return (_unit(images) < DARK).double().mean(dim=(1, 2, 3)).numpy()


def mean_intensity(images: torch.Tensor) -> np.ndarray:
    """Mean pixel value on [0, 1], per image: (N, C, H, W) uint8 -> (N,)."""
    return _unit(images).mean(dim=(1, 2, 3)).numpy()


def roughness(images: torch.Tensor) -> np.ndarray:
    """Mean absolute neighbour difference (horizontal and vertical, averaged), per image: -> (N,)."""
    x = _unit(images)
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return ((horizontal + vertical) / 2).numpy()


STATISTICS: dict[str, Callable[[torch.Tensor], np.ndarray]] = {
    "dark_share": dark_share,
    "mean_intensity": mean_intensity,
    "roughness": roughness,
}


def check_statistic(name: str) -> None:
    if name not in STATISTICS:
        raise ValueError(f"pixel statistic {name!r} is not valid; choose one of {sorted(STATISTICS)}")


def typicality(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``−|F(v) − ½|`` for each of ``values``, ``F`` the mid-rank empirical CDF of ``reference`` (1-D arrays).

    0 at the reference's median, −½ beyond its extremes; higher = more typical of the reference.
    """
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    if ref.size == 0:
        raise ValueError("typicality needs at least one reference value")
    v = np.asarray(values, dtype=np.float64)
    below = np.searchsorted(ref, v, side="left")
    at_or_below = np.searchsorted(ref, v, side="right")
    cdf = (below + at_or_below) / (2 * ref.size)  # ties count half
    return -np.abs(cdf - 0.5)


FORMS = ("typical", "high", "low")


def scores(name: str, form: str, reference_images: torch.Tensor, images: torch.Tensor) -> np.ndarray:
    """Statistic ``name`` of ``images`` as a score of ``form`` (:data:`FORMS`); ``reference_images`` (the ID
    training images) are used by ``typical`` only. (N, C, H, W) uint8 -> (N,), higher = more in-distribution."""
    check_statistic(name)
    if form not in FORMS:
        raise ValueError(f"form={form!r} is not valid; choose one of {FORMS}")
    t = STATISTICS[name](images)
    return typicality(STATISTICS[name](reference_images), t) if form == "typical" else t if form == "high" else -t


def best(records: pd.DataFrame, metric: str = "fpr95") -> pd.DataFrame:
    """The pixel baseline: per OOD set, the row of the best score (lowest FPR95 or highest AUROC) among
    ``records`` (columns ``statistic, form, ood_set, metric, value``); every metric of that score kept, with
    its name in ``score``."""
    one = records.query("metric == @metric")
    pick = one.loc[one.groupby("ood_set", sort=False)["value"].idxmin() if metric == "fpr95"
                   else one.groupby("ood_set", sort=False)["value"].idxmax(), ["ood_set", "statistic", "form"]]
    out = records.merge(pick, on=["ood_set", "statistic", "form"])
    return out.assign(score=out["statistic"] + " (" + out["form"] + ")")


def baseline(records: pd.DataFrame) -> pd.DataFrame:
    """The pixel baseline as a table: one row per OOD set (sorted by name), one column per metric (``fpr95``,
    ``auroc``, ...), the values of :func:`best`'s score for ``records`` (fractions). It is the bar a network's
    score is held against, so the chapters' tables put it beside each set (``baseline["fpr95"]``)."""
    return best(records).pivot(index="ood_set", columns="metric", values="value")
