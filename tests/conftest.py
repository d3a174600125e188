"""Shared fixtures. Runs go to a temporary folder (LNLIB_RUNS), never into the user's data/runs."""

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("LNLIB_RUNS", str(root))
    return root


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    """One runs folder for a test module's notebooks, so the later ones load the runs the first one trained."""
    root = tmp_path_factory.mktemp("shared") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LNLIB_RUNS", str(root))
        yield root


def tiny_cfg(**changes):
    """A real but small training config: quick mode (10,000 Fashion-MNIST images), 2 epochs."""
    from lnlib import TrainConfig

    return TrainConfig(**{"quick": True, "epochs": 2, **changes})


@pytest.fixture(scope="session")
def fashion_mnist_available():
    from lnlib.data import DataMissingError, load_id

    try:
        load_id("fashion_mnist")
    except DataMissingError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(err))


GLUE_ROLE = re.compile(r"\{glue:(?:text|md)?\}`([^`]+)`")  # {glue:text}`[doc.ipynb::]key[:format]`


def glue_references(markdown_texts) -> set:
    """(document, key) of every glue role in the texts; document None means the same page, else the path
    relative to the pasting page without its .ipynb suffix."""
    refs = set()
    for text in markdown_texts:
        for role in GLUE_ROLE.findall(text):
            doc, _, rest = role.rpartition("::")
            refs.add((doc.removesuffix(".ipynb") or None, rest.split(":", 1)[0]))
    return refs


def glued_keys(nb) -> set:
    """Keys an executed notebook glued (myst_nb.glue stores the name in each output's metadata)."""
    return {o.get("metadata", {}).get("scrapbook", {}).get("name") for c in nb.cells
            for o in c.get("outputs", [])} - {None}


def book_module(name: str):
    """A script of book/ (execute, mathjax) imported as a module."""
    spec = importlib.util.spec_from_file_location(f"book_{name}", REPO / "book" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
