"""Course labs: friendly checks of the students' functions, the graded assertions, and the labs' runs.

Three ways a lab notebook uses this module:

* ``check_*(fn)`` — for a student working alone. Runs ``fn`` on every visible case of the exercise and prints,
  for each case that fails, what went in, what was expected, what came back and a hint *for the mistake made*
  (a missing ``return``, a percentage, a flipped sign, a sum instead of a mean, a transposed or per-sample
  shape, and each exercise's own typical slips). Never raises; returns ``True`` when every case passes.
* ``expect(fn, case)`` — inside nbgrader's graded test cells (visible and hidden tests). Under the grader the
  same diagnosis is raised as an ``AssertionError``, so that the cell, and its points, fail; for a student it is
  printed, so that the lab runs on.
* ``yours(fn, *args, like=...)`` — for later cells that use the student's function on real data: returns its
  value, or ``None`` (with one line saying why) whatever the function does, so no later cell shows a traceback.

A function that calls lnlib's own implementation of the exercise (``metrics.fpr_at_tpr`` for ``fpr95``, ...)
fails the check and the graded cells: :func:`_reference_used` watches the call with :func:`sys.setprofile`, so
an alias (``from lnlib.metrics import fpr_at_tpr as f``) is caught too.

The labs' training runs are :func:`lab_config`'s, the same in class and in a dry run before class.
Grading (nbgrader) and the hand-out are :mod:`lnlib.course`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lnlib import faraway, losses, metrics, scores
from lnlib.config import PRESETS, TrainConfig
from lnlib.monitor import logit_stats

LABS_DIR = Path(__file__).resolve().parents[1] / "nbs" / "labs"

# Labs 2-4 train (or load) these two runs: 10,000 Fashion-MNIST images for 8 epochs, the book's recipe
# otherwise. About 45 s each on two CPU cores. At this size the cross-entropy norm grows over the epochs while
# LogitNorm's falls (weight decay shrinks what its loss does not see), which is Lab 2's lesson; with 3 epochs
# (quick mode) it did not show. They are the recipe of the book's seed study (config.PRESETS['seed_study']) at seed
# 0, with every epoch measured: Lab 2 draws the norm epoch by epoch, the seed study's runs measure the last only.
LAB_TRAIN_SUBSET, LAB_EPOCHS = PRESETS["seed_study"]["train_subset"], PRESETS["seed_study"]["epochs"]


def lab_config(loss: str = "logitnorm", epochs: int = LAB_EPOCHS) -> TrainConfig:
    """The labs' run for ``loss`` ('ce' or 'logitnorm'), seed 0."""
    return TrainConfig(loss=loss, train_subset=LAB_TRAIN_SUBSET, epochs=epochs)


# What each exercise asks the student to write, and lnlib's functions that already do it.
REFERENCES: dict[str, tuple[Callable, ...]] = {
    "logit_norm_loss": (losses.logit_norm_loss, losses.normalized_logits, losses.LogitNormLoss.forward),
    "mean_logit_norm": (logit_stats,),
    "fpr95": (metrics.fpr_at_tpr, metrics.ood_metrics),
    "auroc": (metrics.auroc, metrics.ood_metrics),
    "alpha_confidence": (faraway.alpha_curve, scores.msp, scores.log_msp),
}


@dataclass
class Case:
    """One test: what it is about (in words), the arguments, the right answer, the number of samples ``n`` (for
    the sum-instead-of-mean diagnosis), what typical mistakes return on it, and a hint when nothing matches."""

    about: str
    args: tuple
    expected: object
    n: int = 0
    mistakes: list[tuple[object, str]] = field(default_factory=list)  # (what the mistake returns, its hint)
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


def _reference_used(name: str, fn: Callable, args: tuple):
    """Call ``fn(*args)`` and return ``(result, the lnlib reference it called or None)``."""
    codes = {getattr(r, "__code__", None): r for r in REFERENCES.get(name, ())}
    used: list[Callable] = []

    def watch(frame, event, arg):
        if event == "call" and frame.f_code in codes and not used:
            used.append(codes[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        got = fn(*args)
    finally:
        sys.setprofile(previous)
    return got, (used[0] if used else None)


def _close(a: np.ndarray, b, rtol: float, atol: float) -> bool:
    b = _as_array(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False))


def _unusable(got, expected: np.ndarray, n: int) -> str | None:
    """Why ``got`` cannot be compared with ``expected`` (not a number, the wrong shape, not finite), or ``None``."""
    if got is None:
        return "your function returned None: is the `return` statement missing?"
    try:
        value = _as_array(got)
    except (TypeError, ValueError):
        return f"your function returned a {type(got).__name__}, not a number or an array"
    if value.shape != expected.shape:
        if value.ndim == 2 and value.shape == expected.shape[::-1]:
            return (f"the result is transposed: shape {value.shape}, expected {expected.shape} "
                    "(one row per input, one column per alpha)")
        if expected.shape == () and value.shape == (n,):
            return (f"one value per sample (shape {value.shape}): the exercise asks for a single number, "
                    "the mean over the samples")
        return f"expected shape {expected.shape}, but got shape {value.shape}"
    if not np.all(np.isfinite(value)):
        return "the result contains nan or inf: a division by zero, or the log of 0?"
    return None


def diagnose(got, case: Case, rtol: float, atol: float) -> str | None:
    """``None`` if ``got`` is right for ``case``; else one sentence naming the mistake (or the mismatch)."""
    expected = _as_array(case.expected)
    problem = _unusable(got, expected, case.n)
    if problem is not None:
        return problem
    value = _as_array(got)
    if _close(value, expected, rtol, atol):
        return None
    if value.ndim == 2 and value.shape[0] == value.shape[1] > 1 and _close(value, expected.T, rtol, atol):
        return "the result is transposed: one row per input, one column per alpha"
    for wrong, hint in case.mistakes:
        if _close(value, wrong, rtol, atol):
            return hint
    scale = np.abs(expected).max()
    if scale > 0 and _close(value, 100 * expected, rtol, atol):
        return "that looks like a percentage: return a fraction in [0, 1]"
    if scale > 0 and _close(value, -expected, rtol, atol):
        return "the sign is flipped"
    if case.n > 1 and scale > 0 and _close(value, case.n * expected, rtol, atol):
        return f"that is the sum over the {case.n} samples: the exercise asks for the mean"
    return case.hint or "the value is wrong"


def _verdict(name: str, fn: Callable, case: Case, rtol: float, atol: float) -> str | None:
    """``None`` if ``fn`` passes ``case``; else the report for the student (several lines)."""
    shown = ", ".join(_show(a) for a in case.args)
    try:
        got, reference = _reference_used(name, fn, case.args)
    except NotImplementedError:
        raise
    except Exception as err:  # the student's bug: report it, do not dump a traceback
        return f"your function raised {type(err).__name__}: {err}\n  input:    {shown}"
    if reference is not None:
        return (f"your function calls lnlib's own `{reference.__module__}.{reference.__qualname__}`: "
                "write it yourself, the checks and the grader do not accept it")
    problem = diagnose(got, case, rtol, atol)
    if problem is None:
        return None
    return (f"  input:    {shown}\n  expected: {_show(_as_array(case.expected))}\n  got:      {_show(got)}\n"
            f"  hint: {problem}")


def _run_cases(name: str, fn: Callable, cases: list[Case], rtol: float, atol: float) -> bool:
    """Call ``fn`` on every case and print a report: each failing case with its diagnosis (a repeated
    diagnosis in one line), then a summary."""
    failed, hints = 0, set()
    for i, case in enumerate(cases, 1):
        try:
            report = _verdict(name, fn, case, rtol, atol)
        except NotImplementedError:
            print(f"… {name}: not implemented yet. Write it in the cell above, run that cell, then run this one.")
            return False
        if report is None:
            continue
        failed += 1
        if "lnlib's own" in report:
            print(f"✗ {name}: {report}")
            return False
        hint = report.rpartition("hint: ")[2]
        if hint in hints:
            print(f"✗ {name}, case {i} ({case.about}): the same mistake")
        else:
            print(f"✗ {name}, case {i} ({case.about}):\n{report if report.startswith('  ') else '  ' + report}")
        hints.add(hint)
    if failed:
        print(f"{name}: {len(cases) - failed} of {len(cases)} cases pass.")
        return False
    print(f"✓ {name}: all {len(cases)} cases pass.")
    return True


TOLERANCES = {"logit_norm_loss": (1e-4, 1e-5), "mean_logit_norm": (1e-5, 1e-6), "fpr95": (0, 1e-9),
              "auroc": (0, 1e-9), "alpha_confidence": (1e-4, 1e-6)}


def grading() -> bool:
    """Whether nbgrader is running this notebook (``nbgrader autograde`` or its validator): it sets
    ``NBGRADER_EXECUTION``."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def expect(fn: Callable, case: Case, name: str | None = None) -> None:
    """A graded test: does ``fn`` pass ``case`` (from :func:`loss_case`, :func:`norm_case`, :func:`score_case`
    or :func:`alpha_case`)?

    Under nbgrader (:func:`grading`) a failure raises ``AssertionError`` with the diagnosis, and a stub's
    ``NotImplementedError`` propagates, so the cell and its points fail. For a student working in the notebook
    it prints the same diagnosis (or ✓): no traceback, and "Run all" goes on to the end.
    ``name`` is the exercise (default ``fn.__name__``): it sets the tolerance and the lnlib references the
    function may not call."""
    name = name or fn.__name__
    if name not in TOLERANCES:
        raise ValueError(f"name={name!r} is not a lab exercise; valid: {sorted(TOLERANCES)}")
    try:
        report = _verdict(name, fn, case, *TOLERANCES[name])
    except NotImplementedError:
        if grading():
            raise
        print(f"… {name} ({case.about}): not implemented yet")
        return
    if report is None:
        print(f"✓ {name} ({case.about})")
        return
    message = f"{name} ({case.about}):\n{report if report.startswith('  ') else '  ' + report}"
    if grading():
        raise AssertionError(message)
    print(f"✗ {message}")


def yours(fn: Callable, *args, like):
    """``fn(*args)`` if it returns something shaped like ``like`` and finite, else ``None``; never raises.

    For the cells after an exercise that run the student's function on real data. Prints one line when the
    function is not usable yet (the check above the cell has the details)."""
    try:
        got = fn(*args)
    except NotImplementedError:
        return None
    except Exception as err:
        print(f"(your {fn.__name__} raised {type(err).__name__}: {err}; the check above says more)")
        return None
    problem = _unusable(got, _as_array(like), n=0)
    if problem is not None:
        print(f"(your {fn.__name__} is not usable yet: {problem})")
        return None
    return float(got) if np.ndim(_as_array(got)) == 0 else _as_array(got)


# ----------------------------------------------------------------------------------------------- lab 1
def _loss_mistakes(f, y, tau) -> list[tuple[object, str]]:
    """What the typical slips return on (f, y, tau)."""
    ce = torch.nn.functional.cross_entropy
    row = torch.linalg.vector_norm(f, dim=1, keepdim=True)
    return [(ce(f / tau, y), "the logits are not normalised: divide each row by its own L2 norm first"),
            (ce(f / (tau * torch.linalg.vector_norm(f)), y),
             "one norm for the whole batch: take one norm per sample, over the classes (dim=1, keepdim=True)"),
            (ce(f / (tau * torch.linalg.vector_norm(f, dim=0, keepdim=True)), y),
             "the norm is over the samples (dim=0): take it over the classes of each sample (dim=1)"),
            (ce(f * tau / row, y), "tau multiplies the normalised logits: it should divide them, f / (tau * ||f||)"),
            (ce(f / row, y), "tau is missing: divide the normalised logits by tau"),
            (ce(f / (tau * row ** 2), y), "the norm is squared: use the L2 norm itself, not the sum of squares")]


def loss_case(about: str, f: torch.Tensor, y: torch.Tensor, tau: float) -> Case:
    """A case of ``logit_norm_loss(f (N, K), y (N,), tau)``, with the typical slips' answers."""
    return Case(about, (f, y, tau), losses.logit_norm_loss(f, y, tau), n=len(y), mistakes=_loss_mistakes(f, y, tau))


def check_logit_norm_loss(fn: Callable) -> bool:
    """``fn(logits (N, K) tensor, labels (N,) int64 tensor, tau float) -> scalar tensor``, the mean LogitNorm loss
    ``CE(f / (τ·‖f‖₂), y)``, against :func:`lnlib.losses.logit_norm_loss`."""
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(5, 10, generator=g), torch.randint(0, 10, (5,), generator=g)
    one_f, one_y = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([2])
    cases = [loss_case("5 samples, 10 classes, tau = 1", f, y, 1.0),
             loss_case("the same logits with tau = 0.04", f, y, 0.04),
             loss_case("the same logits times 100 (the loss must not change)", 100 * f, y, 0.04),
             loss_case("one sample, 3 classes", one_f, one_y, 0.5)]
    return _run_cases("logit_norm_loss", fn, cases, *TOLERANCES["logit_norm_loss"])


# ----------------------------------------------------------------------------------------------- lab 2
def norm_case(about: str, f) -> Case:
    """A case of ``mean_logit_norm(f (N, K))``, with the typical slips' answers."""
    f = torch.as_tensor(f)
    return Case(about, (f,), torch.linalg.vector_norm(f, dim=1).mean(), n=len(f), mistakes=[
        ((f ** 2).sum(dim=1).mean(), "that is the squared norm: take the square root of the sum of squares"),
        (torch.linalg.vector_norm(f), "one norm of the whole matrix: take one norm per row (dim=1), then the mean"),
        (f.abs().sum(dim=1).mean(), "that is the L1 norm (sum of absolute values): use the L2 norm"),
        (f.norm(dim=0).mean(), "the norm is over the samples (dim=0): take it over the classes (dim=1)")])


def check_mean_logit_norm(fn: Callable) -> bool:
    """``fn(logits (N, K)) -> float``: the mean over samples of ‖f(x)‖₂ (the norm over the classes)."""
    g = torch.Generator().manual_seed(1)
    cases = [norm_case("a 3-4-5 triangle and its double", torch.tensor([[3.0, 4.0], [6.0, 8.0]])),
             norm_case("6 samples, 10 classes", torch.randn(6, 10, generator=g) * 3)]
    return _run_cases("mean_logit_norm", fn, cases, *TOLERANCES["mean_logit_norm"])


# ----------------------------------------------------------------------------------------------- lab 3
def _strict_fpr(id_s, ood_s):
    """FPR95 with a strict ``>``: an OOD score equal to the threshold counts as rejected (a typical slip)."""
    kept = np.sort(id_s)[::-1][int(np.ceil(0.95 * len(id_s))) - 1]
    return float(np.mean(ood_s > kept))


def score_mistakes(metric: str, id_s, ood_s) -> list[tuple[object, str]]:
    """What the typical slips of ``fpr95`` / ``auroc`` return on these scores."""
    if metric == "fpr95":
        return [(metrics.fpr_at_tpr(id_s, ood_s, positive="ood"),
                 "OOD is treated as the positive class: here ID is positive, keep 95% of the ID scores"),
                (metrics.fpr_at_tpr(-id_s, -ood_s),
                 "the scores are reversed: higher score = more in-distribution, accept scores >= the threshold"),
                (_strict_fpr(id_s, ood_s), "ties: an OOD score equal to the threshold is accepted as ID (>=)"),
                (1 - metrics.fpr_at_tpr(id_s, ood_s), "that is the share of OOD *rejected*: return the share accepted")]
    return [(1 - metrics.auroc(id_s, ood_s), "the scores are reversed: higher score = more in-distribution"),
            (float(np.mean(id_s[:, None] > ood_s[None])), "ties must count one half: + 0.5 * mean(id == ood)"),
            (float(np.mean(id_s[:, None] >= ood_s[None])), "a tie counts one half, not one")]


def score_case(metric: str, about: str, id_scores, ood_scores) -> Case:
    """A case of ``fpr95`` or ``auroc`` (``metric``) on ``id_scores (N,)``, ``ood_scores (M,)``."""
    i, o = np.asarray(id_scores, dtype=np.float64), np.asarray(ood_scores, dtype=np.float64)
    reference = {"fpr95": metrics.fpr_at_tpr, "auroc": metrics.auroc}[metric]
    return Case(about, (i, o), reference(i, o), mistakes=score_mistakes(metric, i, o),
                hint="higher score = more in-distribution; ID is the positive class")


def _score_cases(metric: str) -> list[Case]:
    rng = np.random.default_rng(2)
    return [score_case(metric, "ID scores all above OOD scores", [5.0, 6, 7, 8], [1.0, 2, 3]),
            score_case(metric, "ID scores all below OOD scores", [1.0, 2, 3], [5.0, 6, 7, 8]),
            score_case(metric, "400 ID ~ N(2, 1), 300 OOD ~ N(0, 1)", rng.normal(2, 1, 400), rng.normal(0, 1, 300)),
            score_case(metric, "tied scores", [1.0, 1.0, 2.0, 3.0, 3.0], [1.0, 2.0, 2.0, 0.0])]


def check_fpr95(fn: Callable) -> bool:
    """``fn(id_scores (N,), ood_scores (M,)) -> float``: the share of OOD samples accepted (score ≥ threshold)
    at the threshold that keeps 95% of the ID samples, against :func:`lnlib.metrics.fpr_at_tpr`."""
    return _run_cases("fpr95", fn, _score_cases("fpr95"), *TOLERANCES["fpr95"])


def check_auroc(fn: Callable) -> bool:
    """``fn(id_scores, ood_scores) -> float``: the probability that a random ID score beats a random OOD score
    (ties count 1/2), against :func:`lnlib.metrics.auroc`."""
    return _run_cases("auroc", fn, _score_cases("auroc"), *TOLERANCES["auroc"])


# ----------------------------------------------------------------------------------------------- lab 4
def alpha_mistakes(model, x, alphas) -> list[tuple[object, str]]:
    """What the typical slips of ``alpha_confidence`` return."""
    log_conf = faraway.alpha_curve(model, x, alphas)
    with torch.no_grad():
        over_inputs = np.stack([torch.softmax(model(float(a) * x).double(), dim=0).max(dim=1).values.numpy()
                                for a in alphas], axis=1)
        logit = np.stack([model(float(a) * x).double().max(dim=1).values.numpy() for a in alphas], axis=1)
    return [(log_conf, "that is the log of the confidence (log_softmax): use softmax"),
            (over_inputs, "the softmax is over the inputs (dim=0): take it over the classes (dim=1)"),
            (logit, "that is the largest logit: apply softmax first, then take the max")]


def relu_net(sizes: tuple[int, ...] = (2, 16, 3), seed: int = 3) -> torch.nn.Module:
    """A small ReLU network ``Linear → ReLU → ... → Linear`` with these layer sizes, for Lab 4's tests."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).eval()


def alpha_case(about: str, model: torch.nn.Module, x: torch.Tensor, alphas) -> Case:
    """A case of ``alpha_confidence(model, x (N, D), alphas (A,))``: the expected (N, A) max softmax."""
    alphas = np.asarray(alphas, dtype=np.float64)
    return Case(about, (model, x, alphas), np.exp(faraway.alpha_curve(model, x, alphas)),
                mistakes=alpha_mistakes(model, x, alphas),
                hint="for each alpha: logits = model(alpha * x); softmax over the classes; max over the classes")


def check_alpha_confidence(fn: Callable) -> bool:
    """``fn(model, x (N, D), alphas (A,)) -> (N, A)``: max softmax of ``model(α·x)`` for every input and α,
    against :func:`lnlib.faraway.alpha_curve`."""
    model, x = relu_net(), torch.randn(4, 2, generator=torch.Generator().manual_seed(4))
    cases = [alpha_case("4 points of a 2-16-3 ReLU net, alphas 0.5 to 100", model, x, [0.5, 1.0, 10.0, 100.0]),
             alpha_case("one point, three alphas", model, x[:1], [0.5, 1.0, 10.0])]
    return _run_cases("alpha_confidence", fn, cases, *TOLERANCES["alpha_confidence"])
