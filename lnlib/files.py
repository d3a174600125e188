"""Where lnlib keeps its files, and how it writes them: the bottom layer, imported by every module that writes.

* ``data_dir()`` — raw downloads and caches: ``$LNLIB_DATA``, else ``<repo>/data``;
* ``runs_dir()`` — run folders: ``$LNLIB_RUNS``, else ``<data dir>/runs``;
* ``analysis_dir(name, cfg, **parameters)`` — what a notebook derives from many runs, named by what produced it:
  ``<runs>/../analysis/<name>[-quick]-<hash8>``.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a process
killed at any instant leaves either the old or the new version of a file, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


class DataMissingError(FileNotFoundError):
    """A dataset is not on this machine. The message names the set, where we looked, and the fix."""


class UnsafeFileError(ValueError):
    """A file lnlib reads back holds something it did not write: pickled objects, or damaged bytes."""


def load_tensors(path: Path, map_location=None, what: str = "file"):
    """``torch.load`` of a file lnlib wrote (tensors, numbers, strings, lists, dicts) with ``weights_only=True``:
    no pickled code is ever executed. A file holding anything else, or damaged bytes, raises
    :class:`UnsafeFileError` naming it and what to do."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UnsafeFileError(
            f"{path} ({what}) holds pickled objects other than tensors, numbers, strings, lists and dicts, so it was "
            f"not written by lnlib (or was altered); lnlib never executes pickled code. Delete it "
            f"(rm {path}) to start that step again.") from None
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError) as err:
        raise UnsafeFileError(f"{path} ({what}) is damaged and cannot be read: {str(err).splitlines()[0]}. Delete "
                              f"it (rm {path}) to start that step again.") from None


# -------------------------------------------------------------------------------------------- folders
def data_dir() -> Path:
    """Root of raw downloads and caches: ``$LNLIB_DATA`` or ``<repo>/data``."""
    return Path(os.environ.get("LNLIB_DATA", REPO_ROOT / "data"))


def runs_dir() -> Path:
    """Where run folders live: ``$LNLIB_RUNS``, else ``<data dir>/runs``."""
    if os.environ.get("LNLIB_RUNS"):
        return Path(os.environ["LNLIB_RUNS"])
    return data_dir() / "runs"


def analysis_dir(name: str, cfg=None, **parameters) -> Path:
    """Where a notebook saves what it derives from many runs (CSV tables, figures), named by what produced it:
    ``<runs>/../analysis/<name>[-quick]-<hash8>``, the hash over the config's :meth:`content_hash` and the
    notebook's own ``parameters`` (``seeds``, ``positive``, ...). A one-off run with other parameters writes
    to another folder and never replaces the book's tables. Without either: ``<runs>/../analysis/<name>``."""
    root = runs_dir().parent / "analysis"
    if cfg is None and not parameters:
        return root / name
    key = {"config": cfg.content_hash() if cfg is not None else None, **parameters}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return root / f"{name}{'-quick' if getattr(cfg, 'quick', False) else ''}-{digest}"


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks of 1 MiB (the archives are up to a few GB)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -------------------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one.

    The file gets the mode any program's new file gets (``0o666`` less the umask), so that a shared runs folder
    on a class machine is readable by its other users (the temporary file would otherwise keep ``0o600``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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
