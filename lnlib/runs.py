"""Run folders: one finished (or resumable) training run on disk (``lnlib.train.load_or_train`` makes them).

A run lives in ``data/runs/<slug>-<hash8>/`` where ``hash8`` is :meth:`TrainConfig.content_hash`::

    config.json     asdict(cfg)                      written first
    env.json        versions, device, git commit     written at every (re)start
    history.csv     one row per finished epoch       rewritten every epoch
    ood_history.csv OOD detection along training     with ``ood_every``: rows per evaluated epoch and OOD set
    checkpoint.pt   model + optimizer + epoch         every epoch; removed when the run is complete
    model.pt        final weights (state_dict)
    metrics.json    final metrics                    written LAST: its presence means "complete"
    digests.json    SHA-256 of model.pt and logits/  checked when they are read back (Run.check_weights)
    logits/<set>.npz  cached logits, labels and penultimate features per evaluated set (lnlib.evaluate)
    scores/<score>-<params>/<set>.npy  cached scores that need the model itself (ODIN)
    rays/<set>-<hash>.npz  cached far-away scans along rays α·u, keyed by directions and grid (lnlib.hein.scan)
    rays/table2-<set>-<hash>.npz  Table 2 per ray: exact α*, the clipped image's confidence (lnlib.hein.table2_rays)
    noise/n<n>-eps<ε>-steps<k>-seed<s>.npz  logits of Hein's noise and of the attacked noise (lnlib.hein.noise_logits)
    figures/, ood_msp.csv  what nbs/train.ipynb shows of the run: its figures, its OOD table

:class:`Run` owns this layout: every other module asks it for a file's path (``run.file(Run.MODEL)``), never types a
name. The folder's own name is ``<slug>-<hash8>`` (:meth:`Run.for_config`).

Analyses over many runs (tables, figures of the book's chapters) go to ``<runs>/../analysis/<notebook>/``
(:func:`lnlib.files.analysis_dir`). Every file is written atomically (:mod:`lnlib.files`), so a run killed at
any instant leaves either the old or the new version of each file, never half a file.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import platform
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from lnlib.config import TrainConfig
from lnlib.devices import resolve_device
from lnlib.files import (
    REPO_ROOT,
    UnsafeFileError,
    atomic_write_json,
    atomic_write_text,
    file_digest,
    load_tensors,
    runs_dir,
)
from lnlib.models import build_model


# ---------------------------------------------------------------------------------------- environment
def git_commit() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` if the work tree has changes), or None."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def threads_used(runs) -> int:
    """The one CPU thread count ``runs`` were trained with; ``ValueError`` naming each run's count where they
    differ (runs cached by different sessions), since a comparison between them would mix in the thread count."""
    counts = {run.path.name: run.threads for run in runs}
    if len(set(counts.values())) != 1:
        raise ValueError(f"these runs were trained with different CPU thread counts: {counts}; retrain the ones that "
                         "differ (delete their folders) so that a comparison between them is not also one between "
                         "thread counts")
    return next(iter(counts.values()))


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
class RunDamaged(UnsafeFileError):
    """A file of a complete run is not what lnlib wrote; the message names the run, the file and the fix."""

    def __init__(self, run: Run, name: str, why: str):
        super().__init__(f"run {run.path.name} is damaged: {name} {why}. Train it again with: "
                         f"{run.retrain_command()}")


class Run:
    """A run folder. Cheap to construct; reads files only when asked."""

    # the folder's layout (the module's docstring says what each holds)
    CONFIG, ENV, HISTORY, OOD_HISTORY = "config.json", "env.json", "history.csv", "ood_history.csv"
    CHECKPOINT, MODEL, METRICS, DIGESTS = "checkpoint.pt", "model.pt", "metrics.json", "digests.json"
    LOGITS, SCORES, RAYS, NOISE = "logits", "scores", "rays", "noise"  # caches of the analyses, one folder each
    FIGURES, OOD_TABLE = "figures", "ood_msp.csv"  # what nbs/train.ipynb adds
    TRAINING = (CHECKPOINT, HISTORY, OOD_HISTORY, MODEL, METRICS)  # what a diverged run's next launch must not find

    def __init__(self, path: Path):
        self.path = Path(path)

    def file(self, *parts: str) -> Path:
        """The path of a file or folder of this run: ``run.file(Run.MODEL)``, ``run.file(Run.RAYS, "x.npz")``."""
        return self.path.joinpath(*parts)

    @classmethod
    def for_config(cls, cfg: TrainConfig, root: Path | None = None) -> Run:
        return cls(Path(root or runs_dir()) / f"{cfg.slug()}-{cfg.content_hash()}")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, complete={self.is_complete()})"

    # files
    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(json.loads(self.file(self.CONFIG).read_text()))

    @property
    def env(self) -> dict:
        return json.loads(self.file(self.ENV).read_text())

    @property
    def threads(self) -> int:
        """The CPU threads torch used to train the run (``env.json``): not part of its config, yet on a CPU it can
        change the result (another split of each sum, another rounding)."""
        return int(self.env["cpu_threads"])

    @property
    def metrics(self) -> dict:
        return json.loads(self.file(self.METRICS).read_text())

    @property
    def history(self):
        """Per-epoch history as a pandas DataFrame (one row per finished epoch)."""
        import pandas as pd

        return pd.read_csv(self.file(self.HISTORY))

    @property
    def ood_history(self):
        """OOD detection along training (runs with ``ood_every``): one row per evaluated epoch and OOD set."""
        import pandas as pd

        return pd.read_csv(self.file(self.OOD_HISTORY))

    def is_complete(self) -> bool:
        """Complete means metrics.json exists (written last) and the model weights are there."""
        return self.file(self.METRICS).exists() and self.file(self.MODEL).exists()

    # the files a run is made of, with their SHA-256 in digests.json, checked when they are read back
    def record_digests(self, *names: str) -> None:
        """Record the SHA-256 of the run's files ``names`` (paths relative to the run folder) in digests.json."""
        digests = self._digests()
        digests.update({name: file_digest(self.path / name, "sha256") for name in names})
        atomic_write_json(digests, self.file(self.DIGESTS))

    def intact(self, name: str) -> bool:
        """Whether the run's file ``name`` still has the digest recorded when lnlib wrote it (True if none is)."""
        recorded = self._digests().get(name)
        return recorded is None or (self.path / name).exists() and file_digest(self.path / name, "sha256") == recorded

    def _digests(self) -> dict:
        path = self.file(self.DIGESTS)
        return json.loads(path.read_text()) if path.exists() else {}

    def check_weights(self) -> None:
        """Raise :class:`RunDamaged` if model.pt is not the file training wrote."""
        if not self.intact(self.MODEL):
            raise RunDamaged(self, self.MODEL, "does not have the SHA-256 recorded when it was written")

    def retrain_command(self) -> str:
        """The shell commands that delete this run and train it again."""
        flags = " ".join(f"--{k} {','.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in self.config.changes().items())
        return f"rm -r {self.path} && python -m lnlib train {flags}".rstrip()

    def write_history(self, rows: list[dict]) -> None:
        self.write_table(rows, self.HISTORY)

    def write_table(self, rows: list[dict], name: str) -> None:
        """``rows`` (dicts with the same keys) as the CSV file ``name`` of the run folder, atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(buffer.getvalue(), self.path / name)

    def load_model(self, device="auto") -> torch.nn.Module:
        """The trained model in eval mode on ``device`` (:func:`lnlib.devices.resolve_device`), rebuilt from
        config.json and model.pt as it was trained (same memory format, hence the same kernels and the same
        logits bit for bit on the same device)."""
        device = resolve_device(device)
        model = build_model(self.config)
        self.check_weights()
        try:
            state = load_tensors(self.file(self.MODEL), map_location=device, what="the trained weights")
        except UnsafeFileError:
            raise RunDamaged(self, self.MODEL, "cannot be read: it is truncated, corrupted or not lnlib's") from None
        model.load_state_dict(state)
        return model.to(device).eval()

    def start(self, cfg: TrainConfig, env: dict) -> None:
        """Prepare the folder for (re)training ``cfg``: config.json, env.json; not complete until metrics.json."""
        self.path.mkdir(parents=True, exist_ok=True)
        config_file = self.file(self.CONFIG)
        # Compared by hash: fields the run does not use (τ of a CE run, fields added later) may differ.
        if config_file.exists() and self.config.content_hash() != cfg.content_hash():
            raise ValueError(f"{self.path} holds a run of a different config; refusing to mix them")
        atomic_write_json(cfg.to_dict(), config_file)
        self.file(self.METRICS).unlink(missing_ok=True)  # a run being (re)trained is not complete
        atomic_write_json(env, self.file(self.ENV))

    @contextmanager
    def lock(self):
        """Exclusive lock on the run folder, so two processes never train the same run at once. The lock file is
        opened read-only (flock needs no more), so another user of a shared runs folder can take it too."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
