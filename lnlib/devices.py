"""The one device policy: which device training, evaluation, scoring and the far-away scans run on.

``'auto'`` (every default in lnlib) means the GPU when torch sees one, else the CPU, so a run trained on a
GPU is also re-scored (ODIN, rays, PGD) there. ``'cuda'`` on a machine without one fails at once, naming
the choices, instead of falling back silently.
"""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``'auto'`` -> ``cuda`` if available else ``cpu``; ``'cpu'``/``'cuda'``/a ``torch.device`` as given."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES and not str(name).startswith("cuda:"):
        raise ValueError(f"device={name!r} is not valid; choose one of {list(DEVICES)}")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} was asked for, but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    return torch.device(name)
