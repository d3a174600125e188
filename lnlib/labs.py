"""Course labs: friendly checks of the students' functions, and the student versions of the lab notebooks.

Each ``check_*`` runs the student's function on hidden cases against lnlib's own implementation and prints,
for the first case that fails, what went in, what was expected, what came back and a hint, never a bare
traceback. A function that still raises ``NotImplementedError`` (the stub of the student version) is reported as
"not implemented yet". Every check returns ``True`` when all its cases pass.

``python -m lnlib.labs`` (``make labs``) writes the student versions ``nbs/labs/student/<lab>.ipynb``: each
code cell of a solution notebook tagged ``solution`` keeps its functions' signatures and docstrings, and their
bodies become ``raise NotImplementedError`` (:func:`student_source`). Narrative and checks stay as they are.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lnlib import faraway, losses, metrics
from lnlib.files import atomic_write_text

LABS_DIR = Path(__file__).resolve().parents[1] / "nbs" / "labs"
SOLUTION_TAG = "solution"
STUDENT_NOTE = ("**Student version.** Fill in the cells marked `TODO`; the check right after each one tells you "
                "how you are doing. The rest of the lab runs either way.")


@dataclass
class Case:
    """One hidden test: what it is about (in words), the arguments, and the reference answer."""

    about: str
    args: tuple
    expected: object
    hint: str = ""


def _show(value) -> str:
    """A short, one-line rendering of an argument or a result."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        flat = np.array2string(value.ravel()[:4], precision=4, suppress_small=True, separator=", ")
        if value.size > 8:
            return f"array of shape {value.shape}, starting {flat[:-1]}, ...]"
        return np.array2string(value, precision=4, suppress_small=True, separator=", ").replace("\n", "")
    if isinstance(value, torch.nn.Module):
        return f"a {type(value).__name__} model"
    return repr(value)


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _run_cases(name: str, fn: Callable, cases: list[Case], rtol: float, atol: float) -> bool:
    """Call ``fn`` on every case; print one line per outcome; stop at the first failure."""
    for i, case in enumerate(cases, 1):
        shown = ", ".join(_show(a) for a in case.args)
        try:
            got = fn(*case.args)
        except NotImplementedError:
            print(f"… {name}: not implemented yet. Write it in the cell above, run that cell, then run this one.")
            return False
        except Exception as err:  # the student's bug: report it, do not dump a traceback
            print(f"✗ {name}, case {i} ({case.about}): your function raised {type(err).__name__}: {err}\n"
                  f"  input: {shown}" + (f"\n  hint: {case.hint}" if case.hint else ""))
            return False
        expected = _as_array(case.expected)
        try:
            got_array = _as_array(got)
        except (TypeError, ValueError):
            got_array = None
        if got_array is None or got_array.shape != expected.shape:
            what = "something that is not a number" if got_array is None else f"shape {got_array.shape}"
            print(f"✗ {name}, case {i} ({case.about}): expected shape {expected.shape}, but got {what}: "
                  f"{_show(got)}\n  input: {shown}")
            return False
        if not np.allclose(got_array, expected, rtol=rtol, atol=atol, equal_nan=True):
            print(f"✗ {name}, case {i} ({case.about}):\n  input:    {shown}\n  expected: {_show(expected)}\n"
                  f"  got:      {_show(got_array)}" + (f"\n  hint: {case.hint}" if case.hint else ""))
            return False
    print(f"✓ {name}: all {len(cases)} cases pass.")
    return True


# ----------------------------------------------------------------------------------------------- lab 1
def check_logit_norm_loss(fn: Callable) -> bool:
    """``fn(logits (N, K) tensor, labels (N,) int64 tensor, tau float) -> scalar tensor``, the mean LogitNorm loss
    ``CE(f / (τ·‖f‖₂), y)``, against :func:`lnlib.losses.logit_norm_loss`."""
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(5, 10, generator=g), torch.randint(0, 10, (5,), generator=g)
    cases = [
        Case("5 samples, 10 classes, tau = 1", (f, y, 1.0), losses.logit_norm_loss(f, y, 1.0),
             "normalise each row by its own L2 norm (dim=1), divide by tau, then the usual cross-entropy"),
        Case("the same logits with tau = 0.04", (f, y, 0.04), losses.logit_norm_loss(f, y, 0.04),
             "tau divides the normalised logits: f / (tau * ||f||)"),
        Case("the same logits times 100 (the loss must not change)", (100 * f, y, 0.04),
             losses.logit_norm_loss(f, y, 0.04), "one norm per sample, over the classes: dim=1, keepdim=True"),
        Case("one sample, 3 classes", (torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([2]), 0.5),
             losses.logit_norm_loss(torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([2]), 0.5),
             "the loss is a mean over the samples, a single number"),
    ]
    return _run_cases("logit_norm_loss", fn, cases, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------- lab 2
def check_mean_logit_norm(fn: Callable) -> bool:
    """``fn(logits (N, K)) -> float``: the mean over samples of ‖f(x)‖₂ (the norm over the classes)."""
    g = torch.Generator().manual_seed(1)
    f = torch.randn(6, 10, generator=g) * 3
    cases = [
        Case("a 3-4-5 triangle and its double", (torch.tensor([[3.0, 4.0], [6.0, 8.0]]),), 7.5,
             "the L2 norm of each row (sqrt of the sum of squares over the classes), then the mean of the rows"),
        Case("6 samples, 10 classes", (f,), torch.linalg.vector_norm(f, dim=1).mean(),
             "norm over dim=1 (classes), mean over dim=0 (samples)"),
    ]
    return _run_cases("mean_logit_norm", fn, cases, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------- lab 3
def _score_cases(reference: Callable) -> list[Case]:
    rng = np.random.default_rng(2)
    id_s, ood_s = rng.normal(2, 1, 400), rng.normal(0, 1, 300)
    ties_id, ties_ood = np.array([1.0, 1.0, 2.0, 3.0, 3.0]), np.array([1.0, 2.0, 2.0, 0.0])
    return [
        Case("ID scores all above OOD scores", (np.array([5.0, 6, 7, 8]), np.array([1.0, 2, 3])),
             reference(np.array([5.0, 6, 7, 8]), np.array([1.0, 2, 3])), "higher score = more in-distribution"),
        Case("ID scores all below OOD scores", (np.array([1.0, 2, 3]), np.array([5.0, 6, 7, 8])),
             reference(np.array([1.0, 2, 3]), np.array([5.0, 6, 7, 8])), "ID is the positive class"),
        Case("400 ID ~ N(2, 1), 300 OOD ~ N(0, 1)", (id_s, ood_s), reference(id_s, ood_s)),
        Case("tied scores", (ties_id, ties_ood), reference(ties_id, ties_ood),
             "ties: an OOD score equal to the threshold is accepted as ID; for AUROC a tie counts one half"),
    ]


def check_fpr95(fn: Callable) -> bool:
    """``fn(id_scores (N,), ood_scores (M,)) -> float``: the share of OOD samples accepted (score ≥ threshold)
    at the threshold that keeps 95% of the ID samples, against :func:`lnlib.metrics.fpr_at_tpr`."""
    cases = _score_cases(lambda i, o: metrics.fpr_at_tpr(i, o, 0.95))
    for case in cases:
        case.hint = case.hint or ("threshold = the largest t with at least 95% of ID scores >= t; "
                                  "FPR = mean(ood_scores >= t)")
    return _run_cases("fpr95", fn, cases, rtol=0, atol=1e-9)


def check_auroc(fn: Callable) -> bool:
    """``fn(id_scores, ood_scores) -> float``: the probability that a random ID score beats a random OOD score
    (ties count 1/2), against :func:`lnlib.metrics.auroc`."""
    cases = _score_cases(metrics.auroc)
    for case in cases:
        case.hint = case.hint or "compare every ID score with every OOD score: mean of (id > ood) + 0.5 (id == ood)"
    return _run_cases("auroc", fn, cases, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------- lab 4
def check_alpha_confidence(fn: Callable) -> bool:
    """``fn(model, x (N, D), alphas (A,)) -> (N, A)``: max softmax of ``model(α·x)`` for every input and α,
    against :func:`lnlib.faraway.alpha_curve`."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(4))
    alphas = np.array([0.5, 1.0, 10.0, 100.0])
    expected = np.exp(faraway.alpha_curve(model, x, alphas))
    cases = [Case("4 points of a 2-16-3 ReLU net, alphas 0.5 to 100", (model, x, alphas), expected,
                  "for each alpha: logits = model(alpha * x); softmax over the classes; max over the classes. "
                  "Stack the A columns into an (N, A) array"),
             Case("one point, alpha = 1", (model, x[:1], np.array([1.0])), expected[:1, 1:2],
                  "the result has one row per input and one column per alpha")]
    return _run_cases("alpha_confidence", fn, cases, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------ student versions
def student_source(source: str) -> str:
    """The student version of a solution cell: each top-level function keeps its signature and docstring, and
    its body becomes ``raise NotImplementedError``; other top-level code becomes a TODO comment."""
    tree, lines = ast.parse(source), source.splitlines()
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out += ["", ""] if out else []
            first_body = node.body[0]  # the docstring, if there is one
            keep_until = first_body.end_lineno if ast.get_docstring(node) is not None else first_body.lineno - 1
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            out += lines[start - 1:keep_until]
            indent = " " * first_body.col_offset
            out += [f"{indent}# TODO: your code here", f'{indent}raise NotImplementedError("{node.name}")']
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(ast.get_source_segment(source, node))
        else:
            out.append("# TODO: " + " ".join(ast.get_source_segment(source, node).split())[:60] + " ...")
    return "\n".join(out).rstrip() + "\n"


def student_notebook(solution: Path):
    """The student version of a solution notebook (an ``nbformat`` notebook, outputs cleared)."""
    import nbformat

    nb = nbformat.read(solution, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if SOLUTION_TAG in cell.metadata.get("tags", []):
                cell.source = student_source(cell.source).rstrip("\n")
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(STUDENT_NOTE, id="student-note"))
    return nb


def write_students(labs_dir: Path = LABS_DIR, out_dir: Path | None = None) -> list[Path]:
    """Write the student version of every ``labs_dir/*.ipynb`` into ``out_dir`` (default ``labs_dir/student``).
    The same solutions always give the same bytes, so rerunning changes nothing."""
    import nbformat

    out_dir = out_dir or labs_dir / "student"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for solution in sorted(labs_dir.glob("*.ipynb")):
        path = out_dir / solution.name
        text = nbformat.writes(student_notebook(solution)) + "\n"
        if not path.exists() or path.read_text() != text:
            atomic_write_text(text, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_students():
        print(f"student version: {p}")
