"""Execute the book's notebooks with papermill: nbs/<name>.ipynb -> book/generated/<name>.ipynb.

Which notebooks: every ``book/generated/<name>`` entry of ``_toc.yml``. Which parameters: the profile's
block in ``book/params.yaml``. The injected-parameters cell is tagged ``remove-cell`` so that readers see
results, not papermill's plumbing. A notebook that raises stops the build (non-zero exit).

Cached: each output notebook records a fingerprint of what produced it (the source notebook, its parameters
and the Python code it imports: ``lnlib/`` and ``benchmarks/``). A notebook whose fingerprint is unchanged is
not executed again, so a second ``make book`` with nothing changed only re-runs Sphinx. (Training runs have
their own cache in data/runs/.)

Shows where it is: while a notebook executes, a line every few seconds when something changed, with the
chapter, the run training (from its run folder: epoch, seconds per epoch, time left) and an estimate of the
time left for the build (from the previous build's timing file; on a first build from the reference build in
``book/reference_timings.json``, scaled by how this machine compares with it so far). Writes
where the time went to ``_build/timings-<profile>.json``: per chapter, per run trained in it (training, the
per-epoch measurements, the final evaluation, images/s, threads) and the rest (evaluation of cached runs and
analysis), and Sphinx when ``--sphinx`` builds the book too.

    python book/execute.py --profile full|quick [--force] [--sphinx] [--reference] [name ...]

``--reference`` records a build's seconds per chapter as the reference for first builds: run it on a fresh clone
(every chapter executed) when chapters are added or much changed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "book" / "generated"
POLL_S = 5.0  # how often the progress line is refreshed while a notebook executes
REFERENCE = ROOT / "book" / "reference_timings.json"  # a fresh clone's build: seconds per chapter, per profile


def timings_path(profile: str) -> Path:
    return ROOT / "_build" / f"timings-{profile}.json"


def toc_notebooks() -> list[str]:
    """Names of the notebooks the table of contents takes from book/generated/, in order."""
    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "file" and str(value).startswith("book/generated/"):
                    yield str(value).removeprefix("book/generated/")
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(walk(yaml.safe_load((ROOT / "_toc.yml").read_text())))


def fingerprint(name: str, parameters: dict) -> str:
    """SHA-256 of everything an output notebook depends on: its source, its parameters, the code it imports."""
    h = hashlib.sha256((ROOT / "nbs" / f"{name}.ipynb").read_bytes())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    for path in sorted([*(ROOT / "lnlib").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]):
        h.update(path.relative_to(ROOT).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def up_to_date(name: str, parameters: dict) -> bool:
    target = GENERATED / f"{name}.ipynb"
    if not target.exists():
        return False
    recorded = nbformat.read(target, as_version=4).metadata.get("lnlib_book", {}).get("fingerprint")
    return recorded == fingerprint(name, parameters)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def training_now(since: float) -> list[dict]:
    """The runs training since ``since`` (their folder changed, no metrics.json yet): name, epochs done, epochs,
    mean seconds per epoch."""
    from lnlib.files import runs_dir
    from lnlib.runs import Run

    active = []
    for folder in sorted(runs_dir().glob(f"*/{Run.ENV}")):
        run = Run(folder.parent)
        history = run.file(Run.HISTORY)
        changed = max(p.stat().st_mtime for p in (run.file(Run.ENV), history) if p.exists())
        if changed < since or run.file(Run.METRICS).exists():
            continue
        rows = list(csv.DictReader(history.open())) if history.exists() else []
        per_epoch = sum(float(r["epoch_time_s"]) for r in rows) / len(rows) if rows else None
        active.append({"run": run.path.name, "epoch": len(rows), "epochs": run.config.epochs_to_run,
                       "s_per_epoch": per_epoch})
    return active


def runs_trained(since: float, until: float) -> list[dict]:
    """Where the time of every run completed between ``since`` and ``until`` went (from its run folder)."""
    from lnlib.files import runs_dir
    from lnlib.runs import Run

    rows = []
    for path in sorted(runs_dir().glob(f"*/{Run.METRICS}")):
        if not since <= path.stat().st_mtime <= until:
            continue
        run, m = Run(path.parent), json.loads(path.read_text())
        measured = [float(r["epoch_time_s"]) for r in csv.DictReader(run.file(Run.HISTORY).open())]
        # a measured epoch's time is its training plus its measurements; with history_every only some epochs are
        # measured, each taken to have trained for the mean epoch's time
        measuring_s = sum(measured) - len(measured) * m["train_time_s"] / m["epochs"]
        rows.append({"run": run.path.name, "epochs": m["epochs"], "threads": run.env.get("cpu_threads"),
                     "wall_s": round(path.stat().st_mtime - run.file(Run.ENV).stat().st_mtime, 1),
                     "train_s": round(m["train_time_s"], 1),
                     "per_epoch_measurements_s": round(measuring_s, 1),
                     "final_evaluation_s": m.get("evaluation_time_s"),
                     "train_images_per_s": round(run.config.train_images * m["epochs"] / m["train_time_s"], 1)})
    return rows


class Progress:
    """Prints, while a notebook executes, where the build is (see the module docstring)."""

    def __init__(self, names: list[str], previous: dict[str, float], reference: dict[str, float] | None = None):
        self.names, self.previous, self.start, self.done = names, previous, time.time(), {}
        self.reference = reference or {}

    def left(self, name: str, elapsed_here: float) -> str:
        """The estimate of the build's time left: each chapter as long as in the previous build that executed it;
        else as in the reference build, times the ratio of this build's chapters done so far to theirs there;
        else as long as the mean of the chapters executed so far. Rough unless all come from the previous build."""
        rest = self.names[self.names.index(name):]
        mean = sum(self.done.values()) / len(self.done) if self.done else None
        compared = [n for n in self.done if self.reference.get(n)]
        scale = (sum(self.done[n] for n in compared) / sum(self.reference[n] for n in compared)) if compared else 1.0
        guesses = [self.previous.get(n, self.reference[n] * scale if n in self.reference else mean) for n in rest]
        if None in guesses:
            return "no estimate yet (first build: it comes after the first chapter)"
        rough = "" if all(n in self.previous for n in rest) else "roughly "
        return f"{rough}{_clock(max(guesses[0] - elapsed_here, 0) + sum(guesses[1:]))} left"

    def line(self, name: str, chapter_start: float) -> str:
        now = time.time()
        parts = [f"[book] {self.names.index(name) + 1}/{len(self.names)} {name} {_clock(now - chapter_start)}"]
        for t in training_now(chapter_start):
            eta = (f", run done in ~{_clock((t['epochs'] - t['epoch']) * t['s_per_epoch'])}"
                   if t["s_per_epoch"] else "")
            speed = f" ({t['s_per_epoch']:.1f} s/epoch{eta})" if t["s_per_epoch"] else ""
            parts.append(f"training {t['run']} epoch {t['epoch']}/{t['epochs']}{speed}")
        parts.append(f"build {_clock(now - self.start)}, {self.left(name, now - chapter_start)}")
        return " · ".join(parts)

    def watch(self, name: str, chapter_start: float, stop: threading.Event) -> None:
        last, printed = None, 0.0
        while not stop.wait(POLL_S):
            line = self.line(name, chapter_start)
            key = line.split(" · ")[1:-1]  # the runs and their epochs: print when they change, or every minute
            if key != last or time.time() - printed >= 60:
                print(line, flush=True)
                last, printed = key, time.time()


def execute(name: str, parameters: dict, progress: Progress | None = None) -> float:
    """Run one notebook; returns its wall time in seconds."""
    source, target = ROOT / "nbs" / f"{name}.ipynb", GENERATED / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stamp = fingerprint(name, parameters)  # of the inputs as they were when the run started
    stop = threading.Event()
    if progress is not None:
        threading.Thread(target=progress.watch, args=(name, time.time(), stop), daemon=True).start()
    try:
        pm.execute_notebook(source, target, parameters=parameters, kernel_name="python3", cwd=str(ROOT / "nbs"),
                            progress_bar=False)
    finally:
        stop.set()
    nb = nbformat.read(target, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nb.metadata["lnlib_book"] = {"fingerprint": stamp}  # written last: a killed run is executed again
    nbformat.write(nb, target)
    return time.perf_counter() - start


def write_timings(path: Path, record: dict) -> None:
    from lnlib.files import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, path)


def write_reference(profile: str, record: dict) -> None:
    """Record the seconds of ``record``'s executed chapters in ``profile``'s reference build (``--reference``)."""
    from lnlib.files import atomic_write_json

    reference = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
    chapters = reference.get(profile, {}).get("chapters", {})  # a chapter not executed keeps its time
    chapters.update({c["name"]: c["seconds"] for c in record["chapters"] if c["status"] == "executed"})
    reference[profile] = {"measured": f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, fresh clone",
                          "chapters": chapters}
    atomic_write_json(reference, REFERENCE)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles = yaml.safe_load((ROOT / "book" / "params.yaml").read_text())
    parser.add_argument("--profile", choices=sorted(profiles), default="full")
    parser.add_argument("--force", action="store_true", help="execute even the notebooks that are up to date")
    parser.add_argument("--sphinx", action="store_true", help="then build the book with jupyter-book (timed)")
    parser.add_argument("--reference", action="store_true",
                        help="record this build's chapter times as the reference for first builds' estimates")
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all in _toc.yml)")
    args = parser.parse_args(argv)
    names = args.names or toc_notebooks()
    unknown = sorted(set(names) - set(toc_notebooks()))
    if unknown:
        parser.error(f"notebook(s) {unknown} are not in _toc.yml; choose from {toc_notebooks()}")
    build_start = time.time()
    if any(name.startswith("labs/student/") for name in names):
        from lnlib.course import write_students

        write_students()  # the book shows the labs as students get them: nbgrader's release (idempotent)
    path = timings_path(args.profile)
    previous = json.loads(path.read_text()) if path.exists() else {}
    last = {c["name"]: c["last_executed_s"] for c in previous.get("chapters", []) if c.get("last_executed_s")}
    reference = json.loads(REFERENCE.read_text()).get(args.profile, {}) if REFERENCE.exists() else {}
    progress = Progress(names, last, reference.get("chapters"))
    chapters, fresh = [], []
    for name in names:
        parameters = profiles[args.profile].get(name, {})
        if not args.force and up_to_date(name, parameters):
            fresh.append(name)
            chapters.append({"name": name, "status": "up to date", "seconds": 0.0,
                             "last_executed_s": last.get(name)})  # for the next build's estimate
            continue
        print(f"[book] {name}: papermill with {parameters or 'notebook defaults'} ...", flush=True)
        start = time.time()
        seconds = execute(name, parameters, progress)
        progress.done[name] = seconds
        runs = runs_trained(start, time.time())
        chapters.append({"name": name, "status": "executed", "seconds": round(seconds, 1),
                         "last_executed_s": round(seconds, 1), "runs_trained": runs,
                         "training_s": round(sum(r["wall_s"] for r in runs), 1),
                         "rest_s": round(seconds - sum(r["wall_s"] for r in runs), 1)})
        print(f"[book] {name}: done in {_clock(seconds)}" + (f", {len(runs)} run(s) trained" if runs else ""),
              flush=True)
    if fresh:
        print(f"[book] {len(fresh)} of {len(names)} notebooks up to date (same notebook, parameters and code): "
              + ("nothing to execute" if len(fresh) == len(names) else "not executed"), flush=True)
    record = {"profile": args.profile, "chapters": chapters}
    if args.sphinx:
        start = time.time()
        # --all: Sphinx rewrites every page (5 s here); incrementally it skips unchanged pages even when the table
        # of contents changed around them, and their "next" links went stale. -W: a warning fails the build.
        built = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--all",
                                "-W", "-n", "--keep-going"])
        record["sphinx_s"] = round(time.time() - start, 1)
        if built.returncode != 0:
            print(f"[book] jupyter-book build failed (exit code {built.returncode}): see its output above", flush=True)
            return built.returncode
    record["total_s"] = round(time.time() - build_start, 1)
    write_timings(path, record)
    if args.reference:
        write_reference(args.profile, record)
    print(f"[book] {_clock(record['total_s'])} in all; where it went: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
