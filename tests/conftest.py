"""Shared fixtures. Runs go to a temporary folder (LNLIB_RUNS), never into the user's data/runs."""

import os
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
