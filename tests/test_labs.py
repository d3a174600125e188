"""Course labs: the checks name the mistake a student made; graded assertions fail for wrong and copied answers;
later cells never raise; solution and student notebooks run end to end on the labs' runs."""

import nbformat
import numpy as np
import papermill as pm
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

from lnlib import course, labs, metrics

LABS = sorted((REPO / "nbs" / "labs").glob("*.ipynb"))


def normalised(f, tau):
    return f / (tau * torch.linalg.vector_norm(f, dim=1, keepdim=True))


def right_loss(logits, labels, tau):
    return F.cross_entropy(normalised(logits, tau), labels)


def right_fpr95(i, o):
    t = np.sort(i)[::-1][int(np.ceil(0.95 * len(i))) - 1]
    return float(np.mean(o >= t))


def right_alpha(model, x, alphas):
    with torch.no_grad():
        return torch.stack([torch.softmax(model(float(a) * x), 1).max(1).values for a in alphas], 1).numpy()


def test_a_correct_function_passes(capsys):
    assert labs.check_logit_norm_loss(right_loss)
    assert "✓ logit_norm_loss: all 4 cases pass." in capsys.readouterr().out


@pytest.mark.parametrize("check, wrong, hint", [
    # the five mistakes the labs must recognise, each with its own hint
    (labs.check_mean_logit_norm, lambda f: None, "returned None: is the `return` statement missing?"),
    (labs.check_fpr95, lambda i, o: 100 * right_fpr95(i, o), "looks like a percentage"),
    (labs.check_logit_norm_loss, lambda f, y, t: -right_loss(f, y, t), "the sign is flipped"),
    (labs.check_logit_norm_loss, lambda f, y, t: F.cross_entropy(normalised(f, t), y, reduction="sum"),
     "that is the sum over the 5 samples"),
    (labs.check_alpha_confidence, lambda m, x, a: right_alpha(m, x, a).T, "the result is transposed"),
    (labs.check_logit_norm_loss, lambda f, y, t: F.cross_entropy(normalised(f, t), y, reduction="none"),
     "one value per sample (shape (5,))"),
    # and the exercises' own slips
    (labs.check_logit_norm_loss, lambda f, y, t: F.cross_entropy(f / t, y), "the logits are not normalised"),
    (labs.check_logit_norm_loss, lambda f, y, t: F.cross_entropy(f / (t * torch.linalg.vector_norm(f)), y),
     "one norm for the whole batch"),
    (labs.check_mean_logit_norm, lambda f: (f ** 2).sum(1).mean(), "the squared norm"),
    (labs.check_fpr95, lambda i, o: float(np.mean(o > np.sort(i)[::-1][int(np.ceil(0.95 * len(i))) - 1])),
     "an OOD score equal to the threshold is accepted"),
    (labs.check_fpr95, lambda i, o: 1 - right_fpr95(i, o), "the share of OOD *rejected*"),
    (labs.check_auroc, lambda i, o: float(np.mean(i[:, None] > o[None])), "ties must count one half"),
    (labs.check_auroc, lambda i, o: 1 - metrics.auroc(i, o) + 0 * len(i), "lnlib's own `lnlib.metrics.auroc`"),
    (labs.check_alpha_confidence, lambda m, x, a: np.log(right_alpha(m, x, a)), "the log of the confidence"),
])
def test_each_mistake_gets_its_own_hint(capsys, check, wrong, hint):
    assert not check(wrong)
    out = capsys.readouterr().out
    assert hint in out and "Traceback" not in out, out


def test_the_report_covers_every_case_and_counts_them(capsys):
    assert not labs.check_fpr95(lambda i, o: float(np.mean(o > np.sort(i)[::-1][int(np.ceil(0.95 * len(i))) - 1])))
    out = capsys.readouterr().out
    assert "✗ fpr95, case 4 (tied scores)" in out and "fpr95: 3 of 4 cases pass." in out


@pytest.fixture
def grader(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # what nbgrader autograde sets


def test_calling_lnlibs_implementation_is_caught_even_through_an_alias(capsys, grader):
    from lnlib.metrics import fpr_at_tpr as mine

    assert not labs.check_fpr95(lambda i, o: mine(i, o))
    assert "calls lnlib's own `lnlib.metrics.fpr_at_tpr`" in capsys.readouterr().out
    case = labs.score_case("fpr95", "tied", [1.0, 1.0, 2.0], [1.0])
    with pytest.raises(AssertionError, match="lnlib's own"):
        labs.expect(lambda i, o: mine(i, o), case, name="fpr95")
    labs.expect(right_fpr95, case, name="fpr95")  # the right answer passes: no exception


def test_expect_raises_the_diagnosis_and_lets_a_stub_fail_the_cell(grader):
    case = labs.loss_case("batch", torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), 0.5)
    with pytest.raises(AssertionError, match="the sum over the 4 samples"):
        labs.expect(lambda f, y, t: F.cross_entropy(normalised(f, t), y, reduction="sum"), case, "logit_norm_loss")

    def stub(*args):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        labs.expect(stub, case, name="logit_norm_loss")
    with pytest.raises(ValueError, match="name='fpr' is not a lab exercise; valid: .*'fpr95'"):
        labs.expect(stub, case, name="fpr")


def test_for_a_student_expect_prints_the_diagnosis_and_never_raises(capsys, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    case = labs.score_case("fpr95", "percent", [1.0, 2, 3], [5.0, 6, 7, 8])

    def stub(*args):
        raise NotImplementedError

    labs.expect(lambda i, o: 100.0, case, name="fpr95")
    labs.expect(stub, case, name="fpr95")
    out = capsys.readouterr().out
    assert "✗ fpr95 (percent)" in out and "percentage" in out and "fpr95 (percent): not implemented yet" in out


def test_a_stub_is_not_implemented_yet_and_an_error_is_reported_without_a_traceback(capsys):
    def stub(*args):
        raise NotImplementedError("fpr95")

    assert not labs.check_fpr95(stub)
    assert "fpr95: not implemented yet" in capsys.readouterr().out
    assert not labs.check_fpr95(lambda i, o: 1 / 0)
    out = capsys.readouterr().out
    assert "your function raised ZeroDivisionError: division by zero" in out and "Traceback" not in out


@pytest.mark.parametrize("returns, passed", [(None, None), ("text", None), (np.zeros(2), None),
                                             (float("nan"), None), (torch.tensor(3.0), 3.0)])
def test_yours_never_raises_and_passes_on_only_a_usable_value(capsys, returns, passed):
    assert labs.yours(lambda f: returns, torch.ones(2, 2), like=0.0) == passed
    assert labs.yours(lambda f: 1 / 0, torch.ones(2, 2), like=0.0) is None
    assert "ZeroDivisionError" in capsys.readouterr().out


@pytest.mark.parametrize("check, right", [
    (labs.check_auroc, lambda i, o: float(np.mean(i[:, None] > o[None]) + 0.5 * np.mean(i[:, None] == o[None]))),
    (labs.check_mean_logit_norm, lambda f: torch.linalg.vector_norm(f, dim=1).mean().item()),
    (labs.check_fpr95, right_fpr95),
    (labs.check_alpha_confidence, right_alpha),
])
def test_the_other_checks_accept_a_right_answer(check, right):
    assert check(right)


def test_the_labs_runs_are_the_same_in_class_and_in_a_dry_run():
    ce, ln = labs.lab_config("ce"), labs.lab_config("logitnorm")
    assert not ce.quick and ce.train_subset == ln.train_subset == labs.LAB_TRAIN_SUBSET
    assert ce.epochs == ln.epochs == labs.LAB_EPOCHS and {ce.loss, ln.loss} == {"ce", "logitnorm"}
    for lab in LABS:
        params = [c for c in nbformat.read(lab, 4).cells if "parameters" in c.metadata.get("tags", [])]
        assert "quick" not in "".join(c.source for c in params), lab.name  # no mode that trains other runs


def _outputs(path) -> str:
    nb = nbformat.read(path, 4)
    return "\n".join(o.get("text", "") + o.get("ename", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_solutions_run_and_pass_their_checks_and_graded_tests(tmp_path, shared_runs, fashion_mnist_available, lab):
    pm.execute_notebook(lab, tmp_path / "out.ipynb", kernel_name="python3", cwd=str(REPO / "nbs"),
                        progress_bar=False)
    text = _outputs(tmp_path / "out.ipynb")
    assert text.count("✓") >= 1 and "✗" not in text and "not implemented" not in text and "(your " not in text
    if lab.stem == "lab2_norm_growth":  # the lesson shows: CE's norm grows over the epochs, LogitNorm's does not
        from lnlib import load_or_train

        ce, ln = (load_or_train(labs.lab_config(loss)).history.test_norm_mean for loss in ("ce", "logitnorm"))
        assert ce.iloc[-1] > ce.iloc[0] and ln.iloc[-1] <= ln.iloc[0], (list(ce), list(ln))
        assert ln.iloc[-1] < ce.iloc[-1]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return course.release(tmp_path_factory.mktemp("course"))


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_student_versions_run_to_the_end_and_report_not_implemented_yet(tmp_path, shared_runs, released,
                                                                       fashion_mnist_available, lab):
    (student,) = [p for p in released if p.name == lab.name]
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(student, out, kernel_name="python3", cwd=str(REPO / "nbs"), progress_bar=False,
                        parameters={})
    text = _outputs(out)
    assert "Error" not in text and "Traceback" not in text, text  # "Run all" reaches the end
    assert "not implemented yet" in text and "✓" not in text and "✗" not in text
