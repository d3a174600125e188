"""The labs as an nbgrader course: student versions, the hand-out, and grading a folder of submissions.

The solution notebooks ``nbs/labs/<lab>.ipynb`` are nbgrader *source* notebooks: each exercise's code sits
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; graded test cells (``nbgrader.grade``, with points)
follow it, their hidden part between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``. Each lab is one
nbgrader assignment of one notebook, named after it. nbgrader's own commands do the work:

* ``nbgrader generate_assignment <lab>`` writes the student version: solutions become
  ``raise NotImplementedError()``, hidden tests are removed, graded cells are locked;
* ``nbgrader autograde <lab>`` re-executes each submission with the graded cells restored from the source
  (hidden tests included) and records one score per graded cell: several cells per exercise give partial credit;
* ``nbgrader generate_feedback <lab>`` writes each student's HTML feedback.

Why nbgrader and not otter-grader: it grades a folder of submissions locally, without Docker (which otter's
``otter grade`` runs each submission in, and which this project's machines do not have), and it keeps its
scores in a gradebook that a course's JupyterHub can share.

``python -m lnlib.course students|handout|grade SUBMISSIONS`` (``make labs``, ``make handout``, ``make grade``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lnlib.files import REPO_ROOT, atomic_write_text, data_dir
from lnlib.labs import LABS_DIR

HANDOUT_DIR = REPO_ROOT / "_build" / "handout"
# Texts that must never reach a student: nbgrader's markers around solutions and hidden tests.
SECRET_MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")
CONFIG = """\
# Written by lnlib.course: the labs as an nbgrader course.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = "sqlite:///{root}/gradebook.db"
c.CourseDirectory.course_id = "lnlib-labs"
c.CourseDirectory.assignment_id = ""
c.Execute.timeout = 1800  # Lab 2 may train its two runs (about 2 minutes on two cores) when they are not cached
"""


def course_dir() -> Path:
    """The instructor's nbgrader course folder (gradebook, submissions, grades): ``<data dir>/course``, beside the
    runs, so that ``make clean`` never deletes grades."""
    return data_dir() / "course"


class CourseError(RuntimeError):
    """An nbgrader command failed; the message holds the end of its output."""


def labs(labs_dir: Path = LABS_DIR) -> list[str]:
    """The labs (assignment names), in order: the stems of ``labs_dir/*.ipynb``."""
    return [p.stem for p in sorted(labs_dir.glob("*.ipynb"))]


def nbgrader(root: Path, *args: str) -> str:
    """Run ``nbgrader <args>`` in the course folder ``root``; return its output, raise :class:`CourseError`."""
    # nbgrader runs `alembic` (and Jupyter kernels) from PATH: put this environment's bin/ first.
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, capture_output=True, text=True,
                          env=env)
    output = done.stdout + done.stderr
    if done.returncode != 0 or "[ERROR]" in output:
        raise CourseError(f"`nbgrader {' '.join(args)}` failed in {root}:\n{output[-3000:]}")
    return output


def _copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless it holds the same bytes already; return whether it copied."""
    if dst.exists() and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(src.read_text(), dst)
    return True


def setup(root: Path | None = None, labs_dir: Path = LABS_DIR) -> Path:
    """Make ``root`` an nbgrader course folder: its config and ``source/<lab>/<lab>.ipynb`` from ``labs_dir``
    (a changed source drops that lab's release, which :func:`release` then generates again)."""
    root = Path(root or course_dir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = CONFIG.format(root=str(root))
    if not (root / "nbgrader_config.py").exists() or (root / "nbgrader_config.py").read_text() != config:
        atomic_write_text(config, root / "nbgrader_config.py")
    for lab in labs(labs_dir):
        if _copy_if_changed(labs_dir / f"{lab}.ipynb", root / "source" / lab / f"{lab}.ipynb"):
            (root / "release" / lab / f"{lab}.ipynb").unlink(missing_ok=True)
    return root


def release(root: Path | None = None, labs_dir: Path = LABS_DIR) -> list[Path]:
    """The student version of every lab, by ``nbgrader generate_assignment``: ``root/release/<lab>/<lab>.ipynb``
    (generated again only for a lab whose source changed)."""
    root = setup(root, labs_dir)
    paths = [root / "release" / lab / f"{lab}.ipynb" for lab in labs(labs_dir)]
    for lab, path in zip(labs(labs_dir), paths, strict=True):
        if not path.exists():
            nbgrader(root, "generate_assignment", lab, "--force")
    return paths


def write_students(out_dir: Path = LABS_DIR / "student", root: Path | None = None) -> list[Path]:
    """Copy the student versions into ``out_dir`` (the book shows them); unchanged files are not rewritten."""
    written = []
    for path in release(root):
        _copy_if_changed(path, Path(out_dir) / path.name)
        written.append(Path(out_dir) / path.name)
    return written


HANDOUT_README = """\
# lnlib labs: the student hand-out

Four labs on why neural networks are overconfident and how Logit Normalization fixes part of it
(from lnlib's book; your instructor has its address). CPU only; 20-40 minutes each.

## Set up once, then open the labs

```sh
make lab      # a virtual environment with lnlib and JupyterLab, the Fashion-MNIST data, then JupyterLab
```

JupyterLab opens on `labs/`. Open a lab, run its cells from the top (Shift+Enter), and fill in the cells that
say `YOUR CODE HERE`. The cell right after each exercise checks your function and tells you what is wrong. The
cells marked as graded run the same kind of tests; your instructor's grader adds tests you do not see.
Run Lab 2 before Labs 3 and 4: it trains the two small networks they reuse (about 2 minutes).

Hand in the notebooks `labs/<lab>.ipynb` as they are (keep their names).
"""

# JupyterLab's flags for the labs: the kernel websocket in the plain JSON protocol. With the default binary one, a
# message that arrives while jupyter_server's handler is between connections is parsed as the wrong protocol and
# dropped ("struct.error: unpack requires a buffer" in the server log): a student's "Run All" then runs nothing, or a
# restarted kernel stays "Starting". Seen twice under load, in the browser test (tests/test_lab_browser.py).
LAB_FLAGS = ("--ZMQChannelsWebsocketConnection.kernel_ws_protocol=",)

HANDOUT_MAKEFILE = """\
# The labs' environment: `make lab` sets it up (once) and opens JupyterLab on labs/.
VENV ?= .venv
PY   := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: lab data

$(VENV)/.installed: requirements.txt pyproject.toml
\tpython3 -m venv $(VENV)
\t$(PY) -m pip install -q -r requirements.txt
\t$(PY) -m pip install -q --no-deps -e .
\ttouch $@

data: $(VENV)/.installed
\t@[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ -f data/cache/fashion_mnist.pt ] || \\
\t  $(SUDO) apt-get install -y -q dataset-fashion-mnist || true
\t$(PY) -m lnlib data fetch fashion_mnist

lab: data
\t$(VENV)/bin/jupyter lab --notebook-dir=labs --ZMQChannelsWebsocketConnection.kernel_ws_protocol=
"""


def _ignore(directory: str, names: list[str]) -> list[str]:
    """What the hand-out leaves out of the package: caches, and this module (the instructor's tool)."""
    return [n for n in names if n in ("__pycache__", "course.py") or n.endswith(".pyc")]


def handout(out_dir: Path = HANDOUT_DIR, root: Path | None = None) -> Path:
    """Write what students receive into ``out_dir``: ``labs/<lab>.ipynb`` (nbgrader's student versions), the
    lnlib package and what installs it, a Makefile (``make lab``) and a README. No solution, no hidden test:
    :func:`check_handout` verifies it before this returns."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "labs").mkdir(parents=True)
    for path in release(root):
        shutil.copyfile(path, out_dir / "labs" / path.name)
    for package in ("lnlib", "benchmarks"):  # pyproject.toml installs both
        shutil.copytree(REPO_ROOT / package, out_dir / package, ignore=_ignore)
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copyfile(REPO_ROOT / name, out_dir / name)
    (out_dir / "data").mkdir()
    shutil.copyfile(REPO_ROOT / "data" / "README.md", out_dir / "data" / "README.md")
    atomic_write_text(HANDOUT_README, out_dir / "README.md")
    atomic_write_text(HANDOUT_MAKEFILE, out_dir / "Makefile")
    check_handout(out_dir)
    return out_dir


def solution_texts(labs_dir: Path = LABS_DIR) -> list[str]:
    """The lines between the solution and hidden-test markers of the source notebooks, but comments and lines
    too short to be telling (``with torch.no_grad():`` is in lnlib too)."""
    import nbformat

    texts = []
    for lab in labs(labs_dir):
        for cell in nbformat.read(labs_dir / f"{lab}.ipynb", as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if line.strip().startswith("### BEGIN"):
                    inside = True
                elif line.strip().startswith("### END"):
                    inside = False
                elif inside and len(line.strip()) >= 25 and not line.strip().startswith("#"):
                    texts.append(line.strip())
    return texts


def check_handout(out_dir: Path, labs_dir: Path = LABS_DIR) -> None:
    """Raise ``RuntimeError`` naming the file if any file of the hand-out holds a marker, a solution line or a
    hidden test line of the source notebooks."""
    secrets = solution_texts(labs_dir)
    for path in sorted(Path(out_dir).rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        found = [s for s in (*SECRET_MARKERS, *secrets) if s in text]
        if found:
            raise RuntimeError(f"the hand-out file {path} contains {found[0]!r}: it must not reach students")


def grade(submissions: Path, root: Path | None = None):
    """Grade ``submissions/<student>/<lab>.ipynb`` with ``nbgrader autograde``; write each student's HTML feedback
    (``root/feedback/``) and ``root/grades.csv``, one row per student, lab and exercise (score, max_score).

    An exercise is the part of a graded cell's id before ``-`` (``fpr95-ties`` belongs to ``fpr95``)."""
    import pandas as pd
    from nbgrader.api import Gradebook

    from lnlib.tables import save_csv

    root, submissions = setup(root), Path(submissions)
    names = labs()
    found = sorted(submissions.glob("*/*.ipynb"))
    unknown = sorted({p.stem for p in found} - set(names))
    if not found or unknown:
        raise ValueError(f"submissions={str(submissions)!r}: expected <student>/<lab>.ipynb with a lab among "
                         f"{names}; " + (f"found {unknown}" if unknown else "found no notebook"))
    release(root)
    for path in found:
        dest = root / "submitted" / path.parent.name / path.stem / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    graded = sorted({p.stem for p in found})
    for lab in graded:
        nbgrader(root, "autograde", lab, "--force")
        nbgrader(root, "generate_feedback", lab, "--force")
    rows = []
    with Gradebook(f"sqlite:///{root}/gradebook.db") as gb:
        for lab in graded:
            for sub in gb.assignment_submissions(lab):
                for grade in sub.notebooks[0].grades:
                    rows.append({"student": sub.student_id, "lab": lab, "exercise": grade.name.split("-")[0],
                                 "score": grade.score, "max_score": grade.max_score})
    table = (pd.DataFrame(rows).groupby(["student", "lab", "exercise"], as_index=False)[["score", "max_score"]]
             .sum())
    save_csv(table, root / "grades.csv")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lnlib.course", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("students", help="the student versions into nbs/labs/student/ (what the book shows)")
    sub.add_parser("handout", help=f"what students receive, into {HANDOUT_DIR.relative_to(REPO_ROOT)}/")
    g = sub.add_parser("grade", help="grade SUBMISSIONS/<student>/<lab>.ipynb into grades.csv and feedback")
    g.add_argument("submissions", type=Path)
    args = parser.parse_args(argv)
    if args.command == "students":
        for p in write_students():
            print(f"student version: {p.relative_to(REPO_ROOT)}")
    elif args.command == "handout":
        print(f"hand-out written to {handout()} (no solution, no hidden test: checked)")
    else:
        table = grade(args.submissions)
        print(table.to_string(index=False))
        print(f"\n{course_dir() / 'grades.csv'}; feedback per student in {course_dir() / 'feedback'}/")


if __name__ == "__main__":
    main()
