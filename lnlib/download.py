"""Downloads that can be trusted: checksums recorded in code, resumable transfers, an offline path.

Every archive lnlib downloads is an :class:`Archive` with its URL(s), file name and digest (MD5 for the
datasets, as their publishers and torchvision record them; SHA-512 for npm packages such as MathJax), and the
place where that digest was read. :func:`ensure` gets it into ``data/raw/``:

1. a file already there (a finished download, or one placed by hand on a machine without internet) is
   verified and used;
2. else each URL is tried in turn; the bytes go to ``<file>.part``, which a later call resumes with an HTTP
   ``Range`` request; the finished file is verified, then renamed into place;
3. a wrong checksum raises :class:`ChecksumError` naming the file, both digests and what to do; no working
   URL raises :class:`~lnlib.files.DataMissingError` naming every URL and where to put the file by hand.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lnlib.files import DataMissingError, file_digest

CHUNK = 1 << 20  # bytes per read of a download
TIMEOUT_S = 20  # per connection attempt: an offline machine fails in seconds, not minutes


@dataclass(frozen=True)
class Archive:
    """One file to download: its name in ``data/raw/``, mirrors tried in order, and its digest (hex)."""

    filename: str
    urls: tuple[str, ...]
    digest: str
    source: str  # where the digest was read (a library file, a dataset page, a registry's metadata)
    algorithm: str = "md5"  # a hashlib name


class ChecksumError(ValueError):
    """A file's digest is not the recorded one: a truncated or corrupted download, or another file."""


def verify(path: Path, archive: Archive) -> Path:
    """Return ``path`` if its digest is the archive's, else raise :class:`ChecksumError`."""
    digest = file_digest(path, archive.algorithm)
    if digest != archive.digest:
        name = archive.algorithm.upper()
        raise ChecksumError(
            f"{path} has {name} {digest}, but {archive.filename} should have {archive.digest} (as recorded from "
            f"{archive.source}). The file is truncated, corrupted or a different one: delete it and fetch again, "
            f"or place the right file there by hand.")
    return path


def _transfer(url: str, part: Path, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size with an HTTP Range request)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        if have and response.status != 206:  # the server ignored Range: start again
            have = 0
        total = response.length + have if response.length is not None else None
        with open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
                disable=not progress) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                f.write(chunk)
                bar.update(len(chunk))


def ensure(archive: Archive, raw_dir: Path, progress: bool | None = None) -> Path:
    """Path of ``archive`` in ``raw_dir``, verified; downloaded (or resumed) first if it is not there."""
    path = raw_dir / archive.filename
    if path.exists():
        return verify(path, archive)
    raw_dir.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    progress = sys.stderr.isatty() if progress is None else progress
    # killed after the last byte, before the rename
    if part.exists() and file_digest(part, archive.algorithm) == archive.digest:
        part.replace(path)
        return path
    errors = []
    for url in archive.urls:
        try:
            _transfer(url, part, progress)
            break
        except (urllib.error.URLError, OSError) as err:  # offline, refused, 404, timeout; .part is kept
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
    else:
        raise DataMissingError(
            f"could not download {archive.filename}: " + "; ".join(errors) + f". Without internet, download it "
            f"on another machine from {archive.urls[0]} and place it at {path}: it is then checked "
            f"({archive.algorithm.upper()} {archive.digest}) and used.")
    try:
        verify(part, archive)
    except ChecksumError:
        part.unlink()  # a bad download is not worth resuming
        raise
    part.replace(path)
    return path
