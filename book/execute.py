"""Execute the book's notebooks with papermill: nbs/<name>.ipynb -> book/generated/<name>.ipynb.

Which notebooks: every ``book/generated/<name>`` entry of ``_toc.yml``. Which parameters: the profile's
block in ``book/params.yaml``. The injected-parameters cell is tagged ``remove-cell`` so that readers see
results, not papermill's plumbing. A notebook that raises stops the build (non-zero exit).

Cached: each output notebook records a fingerprint of what produced it (the source notebook, its parameters
and the Python code it imports: ``lnlib/`` and ``benchmarks/``). A notebook whose fingerprint is unchanged is
not executed again, so a second ``make book`` with nothing changed only re-runs Sphinx. (Training runs have
their own cache in data/runs/.)

    python book/execute.py --profile full|quick [--force] [name ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "book" / "generated"


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


def execute(name: str, parameters: dict) -> float:
    """Run one notebook; returns its wall time in seconds."""
    source, target = ROOT / "nbs" / f"{name}.ipynb", GENERATED / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stamp = fingerprint(name, parameters)  # of the inputs as they were when the run started
    pm.execute_notebook(source, target, parameters=parameters, kernel_name="python3", cwd=str(ROOT / "nbs"),
                        progress_bar=False)
    nb = nbformat.read(target, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nb.metadata["lnlib_book"] = {"fingerprint": stamp}  # written last: a killed run is executed again
    nbformat.write(nb, target)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles = yaml.safe_load((ROOT / "book" / "params.yaml").read_text())
    parser.add_argument("--profile", choices=sorted(profiles), default="full")
    parser.add_argument("--force", action="store_true", help="execute even the notebooks that are up to date")
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all in _toc.yml)")
    args = parser.parse_args(argv)
    names = args.names or toc_notebooks()
    if any(name.startswith("labs/student/") for name in names):
        from lnlib.course import write_students

        write_students()  # the book shows the labs as students get them: nbgrader's release (idempotent)
    unknown = sorted(set(names) - set(toc_notebooks()))
    if unknown:
        parser.error(f"notebook(s) {unknown} are not in _toc.yml; choose from {toc_notebooks()}")
    for name in names:
        parameters = profiles[args.profile].get(name, {})
        if not args.force and up_to_date(name, parameters):
            print(f"[book] {name}: up to date (same notebook, parameters and code), not executed", flush=True)
            continue
        print(f"[book] {name}: papermill with {parameters or 'notebook defaults'} ...", flush=True)
        print(f"[book] {name}: done in {execute(name, parameters):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
