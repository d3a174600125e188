"""The one device policy: which device training, evaluation, scoring and the far-away scans run on.

``'auto'`` (every default in lnlib) means the GPU when torch sees one, else the CPU, so a run trained on a
GPU is also re-scored (ODIN, rays, PGD) there. ``'cuda'`` on a machine without one fails at once, naming
the choices, instead of falling back silently.
"""

from __future__ import annotations

import contextlib

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


@contextlib.contextmanager
def threads(n: int):
    """Run the block with torch on ``n`` CPU threads (``torch.set_num_threads``), then restore the count before.

    The thread count is not part of a run's config, yet on a CPU it changes how sums are split and so how they
    round: the same config trained on another count can end elsewhere. Runs trained inside this block belong in
    their own folder root (see the OOD-results chapter), since their config, and so their folder name, is the same.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads={n!r} is not valid; threads must be an integer >= 1")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def other_thread_count(than: int | None = None) -> int:
    """A CPU thread count other than ``than`` (default: torch's current count): 1, or 2 where ``than`` is 1."""
    than = torch.get_num_threads() if than is None else than
    return 2 if than == 1 else 1
