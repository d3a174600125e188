"""The book's build tooling: vendored MathJax, the notebook cache of book/execute.py, glued numbers."""

import hashlib
import inspect
import io
import json
import re
import tarfile

import nbformat
import numpy as np
import pytest
import yaml
from conftest import REPO, book_module, glue_references

from lnlib.download import Archive, ChecksumError
from lnlib.glue import plain

mathjax, execute = book_module("mathjax"), book_module("execute")


# ----------------------------------------------------------------------------------------------- MathJax
def npm_tarball(path, files):
    """An npm package as the registry serves it: a gzipped tar whose members sit under package/."""
    with tarfile.open(path, "w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    files = {"es5/tex-mml-chtml.js": b"window.MathJax = {};", "es5/output/chtml/fonts/woff-v2/MathJax_Main.woff": b"f",
             "es5/input/tex/extensions/boldsymbol.js": b"b", "es5/tex-svg.js": b"not needed",
             "es5/sre/mathmaps/en.json": b"{}", "package.json": b"{}"}
    tgz = npm_tarball(raw / mathjax.PACKAGE.filename, files)
    digest = hashlib.sha512(tgz.read_bytes()).hexdigest()
    monkeypatch.setattr(mathjax, "PACKAGE", Archive(tgz.name, ("http://127.0.0.1:9/none",), digest, "test",
                                                    "sha512"))
    return raw


def test_mathjax_vendoring_copies_only_what_the_book_loads(tmp_path, fake_package):
    target = tmp_path / "_static" / "mathjax"
    script = mathjax.vendor(target, fake_package)
    assert script == target / "tex-mml-chtml.js" and script.read_bytes() == b"window.MathJax = {};"
    copied = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert copied == ["VERSION", "input/tex/extensions/boldsymbol.js", "output/chtml/fonts/woff-v2/MathJax_Main.woff",
                      "tex-mml-chtml.js"]
    (fake_package / mathjax.PACKAGE.filename).unlink()  # a second call neither needs nor opens the package
    assert mathjax.vendor(target, fake_package) == script


def test_mathjax_with_a_wrong_checksum_is_refused_and_nothing_is_installed(tmp_path, fake_package, monkeypatch):
    monkeypatch.setattr(mathjax, "PACKAGE", Archive(mathjax.PACKAGE.filename, mathjax.PACKAGE.urls, "0" * 128,
                                                    "test", "sha512"))
    target = tmp_path / "_static" / "mathjax"
    with pytest.raises(ChecksumError, match="SHA512"):
        mathjax.vendor(target, fake_package)
    assert not target.exists()


def test_the_recorded_mathjax_digest_is_the_registry_integrity_string():
    # npm's dist.integrity for mathjax@3.2.2, copied from https://registry.npmjs.org/mathjax/3.2.2
    integrity = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
    import base64

    assert base64.b64decode(integrity.removeprefix("sha512-")).hex() == mathjax.PACKAGE.digest
    assert mathjax.PACKAGE.algorithm == "sha512" and mathjax.VERSION in mathjax.PACKAGE.urls[0]


def test_config_points_sphinx_at_the_vendored_script():
    sphinx = yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]["config"]
    assert sphinx["mathjax_path"] == f"mathjax/{mathjax.SCRIPT}"
    assert sphinx["html_static_path"] == ["book/static"]
    target = inspect.signature(mathjax.vendor).parameters["target"].default
    assert target == REPO / "book" / "static" / "mathjax"  # not under a top-level _static/ (see book/mathjax.py)
    assert all((REPO / "book" / "static" / css).exists() for css in sphinx["html_css_files"])


# --------------------------------------------------------------------------------- the notebook cache
@pytest.fixture
def generated(tmp_path, monkeypatch):
    monkeypatch.setattr(execute, "GENERATED", tmp_path)
    return tmp_path


def write_output(folder, name, recorded):
    nb = nbformat.v4.new_notebook()
    if recorded is not None:
        nb.metadata["lnlib_book"] = {"fingerprint": recorded}
    nbformat.write(nb, folder / f"{name}.ipynb")


def test_a_notebook_is_up_to_date_only_for_the_same_source_and_parameters(generated):
    assert not execute.up_to_date("train", {})  # never executed
    write_output(generated, "train", None)  # a run killed before its end: no fingerprint
    assert not execute.up_to_date("train", {})
    write_output(generated, "train", execute.fingerprint("train", {"quick": True}))
    assert execute.up_to_date("train", {"quick": True})
    assert not execute.up_to_date("train", {})  # the other profile
    assert execute.fingerprint("train", {}) != execute.fingerprint("ood_results", {})


def test_second_build_executes_nothing_that_is_up_to_date(generated, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(execute, "timings_path", lambda profile: tmp_path / f"timings-{profile}.json")
    profiles = yaml.safe_load((REPO / "book" / "params.yaml").read_text())
    write_output(generated, "train", execute.fingerprint("train", profiles["quick"]["train"]))
    executed = []
    monkeypatch.setattr(execute, "execute", lambda name, parameters, progress: executed.append(name) or 0.0)
    assert execute.main(["--profile", "quick", "train", "ood_results"]) == 0
    assert executed == ["ood_results"] and "1 of 2 notebooks up to date" in capsys.readouterr().out
    assert execute.main(["--profile", "quick", "--force", "train"]) == 0
    assert executed == ["ood_results", "train"]


# --------------------------------------------------------------------------------------------- glue
def test_glued_values_are_plain_python_so_that_format_specs_work():
    from myst_nb.core.variables import format_plain_text

    assert format_plain_text(repr(plain(np.float64(59.4123))), ".1f") == "59.4"
    assert format_plain_text(repr(plain(np.int64(12))), "d") == "12"
    assert format_plain_text(repr(plain("textures, digits")), "") == "textures, digits"
    with pytest.raises(ValueError):  # what happens without plain(): NumPy 2 reprs are not numbers
        format_plain_text(repr(np.float64(59.4)), ".1f")
    with pytest.raises(TypeError, match="bool"):
        plain(np.bool_(True))
    with pytest.raises(TypeError, match="list"):
        plain([1, 2])


def test_pages_paste_from_chapters_that_exist():
    intro = (REPO / "book" / "intro.md").read_text()
    docs = {doc for doc, _ in glue_references([intro])}
    assert docs == {"generated/reproduction_status"}
    for nb_path in (REPO / "nbs").glob("*.ipynb"):
        cells = [c.source for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "markdown"]
        for doc, _ in glue_references(cells):
            assert doc is None or (REPO / "nbs" / f"{doc}.ipynb").exists(), (nb_path.name, doc)


def test_a_notebook_that_raises_fails_the_build_and_is_not_marked_done(tmp_path, monkeypatch):
    import papermill as pm

    (tmp_path / "nbs").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("raise ValueError('a chapter that fails')")]
    nbformat.write(nb, tmp_path / "nbs" / "boom.ipynb")
    monkeypatch.setattr(execute, "ROOT", tmp_path)
    monkeypatch.setattr(execute, "GENERATED", tmp_path / "generated")
    with pytest.raises(pm.PapermillExecutionError, match="a chapter that fails"):
        execute.execute("boom", {})
    assert not execute.up_to_date("boom", {})  # the next build runs it again


# ----------------------------------------------------------------------------------------------- progress
def test_progress_shows_the_chapter_the_run_its_epoch_and_the_time_left(runs_root):
    import time

    from lnlib import TrainConfig
    from lnlib.runs import Run

    since = time.time() - 1
    cfg = TrainConfig(quick=True, epochs=3)
    run = Run.for_config(cfg)
    run.start(cfg, {"cpu_threads": 1})
    run.write_history([{"epoch": 1, "train_loss": 1.0, "epoch_time_s": 4.0}])
    progress = execute.Progress(["train", "ood_results"], previous={"train": 100.0, "ood_results": 50.0})
    line = progress.line("train", since)
    assert line.startswith("[book] 1/2 train 0:00:0")
    assert f"training {run.path.name} epoch 1/3 (4.0 s/epoch, run done in ~0:00:08)" in line
    assert line.endswith(" left") and "0:02:2" in line  # about 99 s of this chapter + 50 s of the next
    first_build = execute.Progress(["train", "ood_results"], previous={})
    assert "no estimate yet" in first_build.line("train", since)
    first_build.done["train"] = 60.0
    assert re.search(r"roughly 0:0[01]:\d\d left$", first_build.line("ood_results", since))  # ~60 s: the mean
    # a first build with the reference build's times: an estimate from the start, scaled to this machine
    seeded = execute.Progress(["train", "ood_results"], previous={}, reference={"train": 100.0, "ood_results": 50.0})
    assert re.search(r"roughly 0:02:2\d left$", seeded.line("train", since))  # ~99 s + 50 s
    seeded.done["train"] = 200.0  # twice as long as in the reference build: the rest is expected to be too
    assert re.search(r"roughly 0:01:[34]\d left$", seeded.line("ood_results", since))  # ~100 s
    (run.path / "metrics.json").write_text("{}")  # complete: no longer training
    assert "training" not in progress.line("train", since)


def test_the_reference_build_times_every_chapter_of_both_profiles(tmp_path, monkeypatch):
    reference = json.loads(execute.REFERENCE.read_text())
    for profile in ("full", "quick"):  # a chapter added: record a fresh clone's build with --reference
        assert set(reference[profile]["chapters"]) == set(execute.toc_notebooks()), profile
    monkeypatch.setattr(execute, "REFERENCE", tmp_path / "reference.json")
    execute.write_reference("quick", {"chapters": [{"name": "train", "status": "executed", "seconds": 12.5},
                                                   {"name": "calibration", "status": "up to date", "seconds": 0}]})
    written = json.loads((tmp_path / "reference.json").read_text())["quick"]
    assert written["chapters"] == {"train": 12.5} and "fresh clone" in written["measured"]


def test_a_build_with_nothing_to_do_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(execute, "up_to_date", lambda name, parameters: True)
    monkeypatch.setattr(execute, "timings_path", lambda profile: tmp_path / f"timings-{profile}.json")
    assert execute.main(["--profile", "quick", "train", "ood_results"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == ("[book] 2 of 2 notebooks up to date (same notebook, parameters and code): "
                        "nothing to execute") and len(lines) == 2  # and the total with the timing file's path
    record = json.loads((tmp_path / "timings-quick.json").read_text())
    assert [c["status"] for c in record["chapters"]] == ["up to date"] * 2


def test_the_book_and_the_package_cite_only_what_a_reader_can_open():
    """The project's working notes (shared/reference/, DESIGN.md) are not in the repository nor in the rendered
    book: a source cited from a chapter, a docstring or the README must be one a reader has (paper, repository file,
    thread)."""
    private = re.compile(r"shared/reference|reference notes|DESIGN\.md|(logitnorm|hein)\.md\b", re.I)
    files = [*REPO.glob("lnlib/*.py"), *REPO.glob("nbs/*.ipynb"), *REPO.glob("nbs/labs/*.ipynb"),
             *REPO.glob("nbs/labs/student/*.ipynb"), *REPO.glob("book/*.md"), REPO / "README.md", REPO / "_toc.yml"]
    cited = [f"{p.relative_to(REPO)}: {m.group(0)!r}" for p in files for m in private.finditer(p.read_text())]
    assert len(files) > 40 and not cited, cited
