"""Run folders: one finished (or resumable) training run on disk, and ``load_or_train``.

A run lives in ``data/runs/<slug>-<hash8>/`` where ``hash8`` is :meth:`TrainConfig.content_hash`::

    config.json     asdict(cfg)                      written first
    env.json        versions, device, git commit     written at every (re)start
    history.csv     one row per finished epoch       rewritten every epoch
    checkpoint.pt   model + optimizer + epoch         every epoch; removed when the run is complete
    model.pt        final weights (state_dict)
    metrics.json    final metrics                    written LAST: its presence means "complete"
    logits/<set>.npz  cached logits, labels and penultimate features per evaluated set (lnlib.evaluate)
    scores/<score>-<params>/<set>.npy  cached scores that need the model itself (ODIN)
    rays/<set>-<hash>.npz  cached far-away scans along rays α·u, keyed by directions and grid (lnlib.hein.scan)

Analyses over many runs (tables, figures of the book's chapters) go to ``<runs>/../analysis/<notebook>/``.

Every file is written atomically (temporary file in the same folder, then ``os.replace``), so a run killed
at any instant leaves either the old or the new version of each file, never half a file.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import platform
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from lnlib.config import TrainConfig


# ------------------------------------------------------------------------------------- atomic writes
def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write_bytes(text.encode(), path)


def atomic_write_json(obj, path: Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


# ---------------------------------------------------------------------------------------- environment
def git_commit() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` if the work tree has changes), or None."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    """What produced a run: versions, device, threads, git commit, time (saved as env.json)."""
    import numpy
    import torchvision

    env = {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


# ------------------------------------------------------------------------------------------- run folder
def runs_dir() -> Path:
    """Where run folders live: ``$LNLIB_RUNS``, else ``<data dir>/runs``."""
    if os.environ.get("LNLIB_RUNS"):
        return Path(os.environ["LNLIB_RUNS"])
    from lnlib.data import data_dir

    return data_dir() / "runs"


def analysis_dir(name: str) -> Path:
    """Where a notebook saves what it derives from many runs (CSV tables, figures): ``<runs>/../analysis/<name>``."""
    return runs_dir().parent / "analysis" / name


class Run:
    """A run folder. Cheap to construct; reads files only when asked."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_config(cls, cfg: TrainConfig, root: Path | None = None) -> Run:
        return cls(Path(root or runs_dir()) / f"{cfg.slug()}-{cfg.content_hash()}")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, complete={self.is_complete()})"

    # files
    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(json.loads((self.path / "config.json").read_text()))

    @property
    def env(self) -> dict:
        return json.loads((self.path / "env.json").read_text())

    @property
    def metrics(self) -> dict:
        return json.loads((self.path / "metrics.json").read_text())

    @property
    def history(self):
        """Per-epoch history as a pandas DataFrame (one row per finished epoch)."""
        import pandas as pd

        return pd.read_csv(self.path / "history.csv")

    def is_complete(self) -> bool:
        """Complete means metrics.json exists (written last) and the model weights are there."""
        return (self.path / "metrics.json").exists() and (self.path / "model.pt").exists()

    def write_history(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(buffer.getvalue(), self.path / "history.csv")

    def load_model(self, device="cpu") -> torch.nn.Module:
        """The trained model in eval mode, rebuilt from config.json and model.pt as it was trained
        (same memory format, hence the same kernels and the same logits bit for bit on the same device)."""
        from lnlib.models import build_model

        model = build_model(self.config)
        model.load_state_dict(torch.load(self.path / "model.pt", map_location=device, weights_only=True))
        return model.to(device).eval()

    @contextmanager
    def lock(self):
        """Exclusive lock on the run folder, so two processes never train the same run at once."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def load_or_train(cfg: TrainConfig, root: Path | None = None, progress: bool | None = None) -> Run:
    """Return the finished run for ``cfg``; resume it if it was interrupted; train it otherwise.

    Book builds and labs call this, so nothing that exists is ever trained twice.
    """
    cfg.validate()
    run = Run.for_config(cfg, root)
    if run.is_complete():
        return run
    from lnlib.distributed import launched
    from lnlib.train import fit

    if launched().world > 1:  # torchrun's processes train together; a lock held by one would stall the rest
        return fit(cfg, run=run, progress=progress)
    with run.lock():
        if not run.is_complete():  # another process may have finished it while we waited
            fit(cfg, run=run, progress=progress)
    return run


def load_or_train_all(cfgs, root: Path | None = None, progress: bool | None = None) -> list[Run]:
    """:func:`load_or_train` for each config, in order; every config is validated before any training."""
    cfgs = list(cfgs)
    for cfg in cfgs:
        cfg.validate()
    return [load_or_train(cfg, root, progress) for cfg in cfgs]
