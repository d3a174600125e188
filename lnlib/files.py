"""Where lnlib keeps its files, and how it writes them: the bottom layer, imported by every module that writes.

* ``data_dir()`` — raw downloads and caches: ``$LNLIB_DATA``, else ``<repo>/data``;
* ``runs_dir()`` — run folders: ``$LNLIB_RUNS``, else ``<data dir>/runs``;
* ``analysis_dir(name)`` — what a notebook derives from many runs: ``<runs>/../analysis/<name>``.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a process
killed at any instant leaves either the old or the new version of a file, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


class DataMissingError(FileNotFoundError):
    """A dataset is not on this machine. The message names the set, where we looked, and the fix."""


# -------------------------------------------------------------------------------------------- folders
def data_dir() -> Path:
    """Root of raw downloads and caches: ``$LNLIB_DATA`` or ``<repo>/data``."""
    return Path(os.environ.get("LNLIB_DATA", REPO_ROOT / "data"))


def runs_dir() -> Path:
    """Where run folders live: ``$LNLIB_RUNS``, else ``<data dir>/runs``."""
    if os.environ.get("LNLIB_RUNS"):
        return Path(os.environ["LNLIB_RUNS"])
    return data_dir() / "runs"


def analysis_dir(name: str) -> Path:
    """Where a notebook saves what it derives from many runs (CSV tables, figures): ``<runs>/../analysis/<name>``."""
    return runs_dir().parent / "analysis" / name


# -------------------------------------------------------------------------------------- atomic writes
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


def atomic_numpy_save(path: Path, save, *args, **kwargs) -> None:
    """``save(file, *args, **kwargs)`` (``np.save`` or ``np.savez``) into ``path``, atomically."""
    buffer = io.BytesIO()
    save(buffer, *args, **kwargs)
    atomic_write_bytes(buffer.getvalue(), path)
