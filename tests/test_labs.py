"""Course labs: the checks give specific, friendly feedback; the student versions are generated faithfully;
solution and student notebooks run end to end."""

import nbformat
import numpy as np
import papermill as pm
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

from lnlib import labs

LABS = sorted((REPO / "nbs" / "labs").glob("*.ipynb"))


def right_loss(logits, labels, tau):
    return F.cross_entropy(logits / (tau * torch.linalg.vector_norm(logits, dim=1, keepdim=True)), labels)


def test_a_correct_function_passes(capsys):
    assert labs.check_logit_norm_loss(right_loss)
    assert "✓ logit_norm_loss: all 4 cases pass." in capsys.readouterr().out


def test_a_wrong_function_is_told_which_case_what_was_expected_and_a_hint(capsys):
    assert not labs.check_logit_norm_loss(lambda f, y, tau: F.cross_entropy(f / tau, y))  # forgot the norm
    out = capsys.readouterr().out
    assert "✗ logit_norm_loss, case 1 (5 samples, 10 classes, tau = 1)" in out
    assert "expected: 2.3364" in out and "got:" in out and "hint: normalise each row" in out


def test_one_norm_for_the_whole_batch_fails_on_the_scaling_case(capsys):
    wrong = lambda f, y, tau: F.cross_entropy(f / (tau * torch.linalg.vector_norm(f)), y)  # noqa: E731
    assert not labs.check_logit_norm_loss(wrong)
    assert "case 1" in capsys.readouterr().out  # a batch-wide norm changes the loss already at tau = 1


def test_a_stub_is_not_implemented_yet_and_an_error_is_reported_without_a_traceback(capsys):
    def stub(*args):
        raise NotImplementedError("fpr95")

    assert not labs.check_fpr95(stub)
    assert "fpr95: not implemented yet" in capsys.readouterr().out
    assert not labs.check_fpr95(lambda i, o: 1 / 0)
    out = capsys.readouterr().out
    assert "your function raised ZeroDivisionError: division by zero" in out and "Traceback" not in out


def test_a_result_of_the_wrong_shape_says_so(capsys):
    assert not labs.check_alpha_confidence(lambda model, x, alphas: np.zeros(len(alphas)))
    assert "expected shape (4, 4), but got shape (4,)" in capsys.readouterr().out


@pytest.mark.parametrize("check, right", [
    (labs.check_auroc, lambda i, o: float(np.mean(i[:, None] > o[None]) + 0.5 * np.mean(i[:, None] == o[None]))),
    (labs.check_mean_logit_norm, lambda f: torch.linalg.vector_norm(f, dim=1).mean().item()),
])
def test_the_other_checks_accept_a_right_answer(check, right):
    assert check(right)


def test_student_source_keeps_signatures_and_docstrings_only():
    source = ('import torch\n\n\ndef fpr95(id_scores, ood_scores):\n    """Share of OOD accepted."""\n'
              '    t = sorted(id_scores)[0]\n    return t\n\n\nx = fpr95([1], [0])\n')
    student = labs.student_source(source)
    assert 'def fpr95(id_scores, ood_scores):\n    """Share of OOD accepted."""\n    # TODO' in student
    assert 'raise NotImplementedError("fpr95")' in student and "sorted(id_scores)" not in student
    assert "import torch" in student and "# TODO: x = fpr95([1], [0]) ..." in student


def test_student_versions_are_generated_idempotently_and_hide_every_solution(tmp_path):
    first = [p.read_bytes() for p in labs.write_students(out_dir=tmp_path)]
    again = [p.read_bytes() for p in labs.write_students(out_dir=tmp_path)]
    assert first == again and len(first) == len(LABS) == 4
    for solution in LABS:
        sol, stu = nbformat.read(solution, 4), nbformat.read(tmp_path / solution.name, 4)
        hidden = [c for c in sol.cells if labs.SOLUTION_TAG in c.metadata.get("tags", [])]
        assert hidden, solution.name
        for cell in hidden:
            body = cell.source.split('"""')[-1].strip()  # the solution's code after the docstring
            assert body and body not in "\n".join(c.source for c in stu.cells), solution.name


def _outputs(path) -> str:
    nb = nbformat.read(path, 4)
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_solutions_run_and_pass_their_checks(tmp_path, shared_runs, fashion_mnist_available, lab):
    pm.execute_notebook(lab, tmp_path / "out.ipynb", parameters={"quick": True}, kernel_name="python3",
                        cwd=str(REPO / "nbs"), progress_bar=False)
    text = _outputs(tmp_path / "out.ipynb")
    assert text.count("✓") >= 1 and "✗" not in text and "not implemented" not in text


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_student_versions_run_and_report_not_implemented_yet(tmp_path, shared_runs, fashion_mnist_available, lab):
    (student,) = [p for p in labs.write_students(out_dir=tmp_path / "student") if p.name == lab.name]
    pm.execute_notebook(student, tmp_path / "out.ipynb", parameters={"quick": True}, kernel_name="python3",
                        cwd=str(REPO / "nbs"), progress_bar=False)
    text = _outputs(tmp_path / "out.ipynb")
    checks = sum(labs.SOLUTION_TAG in c.metadata.get("tags", []) for c in nbformat.read(lab, 4).cells)
    assert text.count("not implemented yet") == checks and "✓" not in text and "✗" not in text
