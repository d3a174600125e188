"""The labs as an nbgrader course: the real tool writes the student versions and grades submissions with
partial credit; the hand-out holds no solution and no hidden test."""

import re

import nbformat
import pytest
from conftest import REPO

from lnlib import course

LAB1 = "lab1_logitnorm_loss"
RIGHT = ("    norms = torch.linalg.vector_norm(logits, dim=1, keepdim=True)\n"
         "    return F.cross_entropy(logits / (tau * norms), labels)")
SUBMISSIONS = {  # student -> the body of their logit_norm_loss
    "solution": RIGHT,
    "blank": None,  # the student version as handed out
    "sum": RIGHT.replace("labels)", "labels, reduction='sum')"),
    "copied": "    return losses.logit_norm_loss(logits, labels, tau)",
}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    return root, course.release(root)


def fill(notebook, body):
    """A submission: the student version with the exercise's stub replaced by ``body``."""
    nb = nbformat.read(notebook, as_version=4)
    if body is not None:
        (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
        cell.source = re.sub(r"    # YOUR CODE HERE\n    raise NotImplementedError\(\)", lambda m: body, cell.source)
        assert body in cell.source
    return nb


def test_the_student_versions_have_stubs_locked_tests_and_no_hidden_test(released):
    root, paths = released
    assert [p.stem for p in paths] == course.labs() and len(paths) == 4
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        assert "raise NotImplementedError()" in text
        assert not any(m in text for m in course.SECRET_MARKERS)
        graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert graded and all(c.metadata["nbgrader"]["locked"] and c.metadata["editable"] is False for c in graded)
        assert all(re.match(r"# Graded \(\d+ points?\)", c.source) for c in graded)
    assert not any(s in nbformat.read(paths[2], 4).cells[5].source for s in course.solution_texts())


@pytest.mark.slow
def test_nbgrader_grades_right_blank_one_mistake_and_copied_submissions(released, tmp_path):
    root, paths = released
    for student, body in SUBMISSIONS.items():
        (tmp_path / student).mkdir()
        nbformat.write(fill(paths[0], body), tmp_path / student / f"{LAB1}.ipynb")
    table = course.grade(tmp_path, root)
    total = table.groupby("student").score.sum().to_dict()
    assert table.max_score.sum() == 4 * 3 and set(table.exercise) == {"logit_norm_loss"}
    assert total == {"solution": 3, "blank": 0, "sum": 1, "copied": 0}  # sum = mean for the one-sample test
    assert (root / "grades.csv").exists()
    feedback = (root / "feedback" / "sum" / LAB1 / f"{LAB1}.html").read_text()
    assert "the sum over the" in feedback  # the diagnosis reaches the student's feedback


def test_grade_names_a_bad_submissions_folder(tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "lab9.ipynb").write_text("{}")
    with pytest.raises(ValueError, match=r"lab1_logitnorm_loss.*found \[.lab9.\]"):
        course.grade(tmp_path, tmp_path / "course")


def test_the_handout_holds_the_student_labs_and_the_package_but_no_answer(released, tmp_path):
    root, _ = released
    out = course.handout(tmp_path / "handout", root)
    assert sorted(p.name for p in (out / "labs").iterdir()) == [f"{lab}.ipynb" for lab in course.labs()]
    assert (out / "lnlib" / "labs.py").exists() and not (out / "lnlib" / "course.py").exists()
    assert {"Makefile", "README.md", "pyproject.toml", "requirements.txt"} <= {p.name for p in out.iterdir()}
    assert not (out / "nbs").exists() and not (out / "tests").exists()
    (out / "labs" / "leak.py").write_text(course.solution_texts()[0])
    with pytest.raises(RuntimeError, match="leak.py"):
        course.check_handout(out)


def test_every_lab_has_graded_cells_with_hidden_tests_after_each_exercise():
    for lab in course.labs():
        cells = nbformat.read(REPO / "nbs" / "labs" / f"{lab}.ipynb", as_version=4).cells
        exercises = [c.metadata["nbgrader"]["grade_id"] for c in cells
                     if c.metadata.get("nbgrader", {}).get("solution")]
        graded = [c for c in cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert exercises, lab
        for exercise in exercises:
            mine = [c for c in graded if c.metadata["nbgrader"]["grade_id"].split("-")[0] == exercise]
            assert len(mine) >= 2, (lab, exercise)  # partial credit
            assert any("### BEGIN HIDDEN TESTS" in c.source for c in mine), (lab, exercise)


def test_both_labs_makefiles_start_jupyterlab_with_the_labs_flags():
    makefile = (REPO / "Makefile").read_text()
    assert course.LAB_FLAGS and all(f in course.HANDOUT_MAKEFILE and f in makefile for f in course.LAB_FLAGS)
