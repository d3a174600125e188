"""A 2-D toy you can look at: two moons in [0, 1]², a small ReLU MLP, and its confidence far away.

Hein et al. (CVPR 2019) show the toy in their official repository (``toy2d.ipynb``): an MLP 2 → 100 → 100 → 2
trained full-batch with Adam (lr 0.01) on 2000 two-moons points rescaled into [0, 1]², CEDA/ACET with 4000
uniform noise points in [0, 1]² per step and λ = 1. :func:`train_toy` follows that recipe for the four
methods of the book; :func:`confidence_map` and :func:`region_map` evaluate a model on a grid over any box,
so a figure can zoom out from the data to 10× and 100× its size (:data:`BOXES`, :func:`confidence_maps`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import make_moons

from lnlib import scores, tables
from lnlib.faraway import activation_pattern, confidence_pgd, float64_model
from lnlib.files import atomic_torch_save, load_tensors
from lnlib.losses import cross_entropy, logit_norm_loss, max_log_confidence
from lnlib.models import MLP

TOY_METHODS = ("ce", "logitnorm", "ceda", "acet")  # loss + outlier objective, as in the image chapters
# the data box, then boxes 10× and 100× wider around its centre: where Theorem 3.1 takes over
BOXES = {"data box [0, 1]²": (0, 1), "10× wider": (-4.5, 5.5), "100× wider": (-49.5, 50.5)}
RESOLUTION = 300  # grid points per side of a map (lnlib.hein.QUICK_SIZES caps it for quick builds)


def two_moons(n: int = 2000, noise: float = 0.02, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` two-moons points min-max rescaled into [0, 1]²: ``x`` (n, 2) float32, ``y`` (n,) int64."""
    x, y = make_moons(n, noise=noise, random_state=seed)
    x = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def _toy_mlp(x: torch.Tensor, y: torch.Tensor) -> MLP:
    return MLP(x.shape[1], int(y.max()) + 1, hidden=(100, 100))


def train_toy(x: torch.Tensor, y: torch.Tensor, method: str, tau: float = 0.04, iterations: int = 1000,
              lr: float = 0.01, noise_size: int = 4000, eps: float = 0.05, steps: int = 5, seed: int = 0) -> MLP:
    """Train an MLP 2 → 100 → 100 → K full batch with Adam; returned in eval mode.

    ``method``: ``'ce'``, ``'logitnorm'`` (at ``tau``), or cross-entropy plus λ = 1 times the mean max log
    softmax on ``noise_size`` fresh U[0, 1]² points per step, taken as they are (``'ceda'``) or after
    ``steps`` sign-gradient steps towards the most confident point within ``eps`` in ℓ∞ (``'acet'``; the
    official toy used ε = 0.025 and 4 steps, but its projection undid every step).
    """
    if method not in TOY_METHODS:
        raise ValueError(f"method={method!r} is not valid; choose one of {list(TOY_METHODS)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = _toy_mlp(x, y).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(iterations):  # confidence_pgd puts the model back in train mode after its attack
        if method == "logitnorm":
            loss = logit_norm_loss(model(x), y, tau)
        else:
            loss = cross_entropy(model(x), y)
        if method in ("ceda", "acet"):
            noise = torch.rand(noise_size, x.shape[1], generator=generator)
            if method == "acet":
                noise = confidence_pgd(model, noise, eps, steps, generator=generator)
            loss = loss + max_log_confidence(model(noise))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def load_or_train_toy(folder, x: torch.Tensor, y: torch.Tensor, method: str, **params) -> MLP:
    """:func:`train_toy`, cached in ``folder`` as ``toy-<method>-<hash>.pt``; the hash covers the data and
    every parameter, so a change retrains."""
    key = json.dumps({"method": method, **params}, sort_keys=True).encode() + x.numpy().tobytes() + y.numpy().tobytes()
    path = Path(folder) / f"toy-{method}-{hashlib.sha256(key).hexdigest()[:8]}.pt"
    if path.exists():
        model = _toy_mlp(x, y)
        model.load_state_dict(load_tensors(path, what="a toy model's weights"))
        return model.eval()
    model = train_toy(x, y, method, **params)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(model.state_dict(), path)
    return model


def grid(box: tuple[float, float], resolution: int = 200) -> tuple[np.ndarray, torch.Tensor]:
    """``resolution``² points on the square ``box = (low, high)``: the axis values (R,) and the points (R², 2),
    row-major with y slowest, so ``values.reshape(R, R)`` is an image with y along the rows."""
    axis = np.linspace(*box, resolution)
    xx, yy = np.meshgrid(axis, axis)
    return axis, torch.tensor(np.stack([xx.ravel(), yy.ravel()], axis=1), dtype=torch.float64)


@torch.no_grad()
def confidence_map(model: torch.nn.Module, box: tuple[float, float], resolution: int = 200,
                   tau: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Max softmax on a grid over ``box`` in float64: (axis (R,), confidence (R, R)).

    With ``tau`` the normalised confidence ``max softmax(f/(τ‖f‖))`` instead (:mod:`lnlib.scores`).
    """
    axis, points = grid(box, resolution)
    logits = float64_model(model)(points)
    values = scores.msp(logits) if tau is None else scores.normalized_confidence(logits, tau)
    return axis, values.reshape(resolution, resolution)


def region_map(model: torch.nn.Module, box: tuple[float, float],
               resolution: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Which linear region of the network each grid point is in: (axis (R,), region id (R, R) int).

    Ids number the distinct ReLU activation patterns (:func:`lnlib.faraway.activation_pattern`) in order of
    first appearance; two points share an id iff the network is the same affine map at both.
    """
    axis, points = grid(box, resolution)
    patterns = activation_pattern(float64_model(model), points).numpy()
    _, first, ids = np.unique(patterns, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # renumber by first appearance, so ids are stable and readable
    return axis, order[ids.ravel()].reshape(resolution, resolution)



def load_or_train_all(folder, x: torch.Tensor, y: torch.Tensor, **params) -> dict[str, MLP]:
    """:func:`load_or_train_toy` for every method of :data:`TOY_METHODS`, in that order."""
    return {m: load_or_train_toy(folder, x, y, m, **params) for m in TOY_METHODS}


def confidence_maps(toy: dict, resolution: int = RESOLUTION, tau: float = 0.04) -> dict:
    """``{row label: {box name: (axis (R,), confidence (R, R))}}`` for :func:`lnlib.plots.confidence_maps`: each
    model's max softmax over every box of :data:`BOXES` (rows labelled as in :data:`lnlib.tables.LABELS`), then a
    last row with the LogitNorm model's normalised confidence ``max softmax(f/(τ‖f‖))``."""
    maps = {tables.LABELS[m]: {b: confidence_map(net, box, resolution) for b, box in BOXES.items()}
            for m, net in toy.items()}
    maps[f"LogitNorm: normalised\nconfidence, τ = {tau:g}"] = {
        b: confidence_map(toy["logitnorm"], box, resolution, tau=tau) for b, box in BOXES.items()}
    return maps


def median_confidence(maps: dict) -> pd.DataFrame:
    """The median of each map of :func:`confidence_maps` as a percentage string: one row per model, one column
    per box."""
    medians = {name: {b: f"{100 * np.median(values):.1f}%" for b, (_, values) in row.items()}
               for name, row in maps.items()}
    return pd.DataFrame(medians).T.rename(index=lambda name: name.replace("\n", " ")).rename_axis(
        "median confidence over the box")
