"""Every snippet of the README runs: the Python ones executed (at quick scale), the CLI training commands checked
by `python -m lnlib config` with the same flags (every flag parsed and validated, nothing trained)."""

import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO

README = (REPO / "README.md").read_text()
PYTHON = re.findall(r"```python\n(.*?)```", README, re.S)
TRAIN_LINES = [line.split("#")[0].split("lnlib train", 1)[1].split() for block in re.findall(r"```sh\n(.*?)```",
               README, re.S) for line in block.splitlines() if "-m lnlib train" in line]


def test_the_readme_has_snippets():
    assert len(PYTHON) >= 2 and len(TRAIN_LINES) >= 8


@pytest.mark.parametrize("flags", TRAIN_LINES, ids=" ".join)
def test_every_cli_training_command_parses_and_validates(runs_root, flags):
    out = subprocess.run([sys.executable, "-m", "lnlib", "config", *flags], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, (shlex.join(flags), out.stderr)


@pytest.mark.slow
@pytest.mark.usefixtures("fashion_mnist_available")
@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_every_python_snippet_runs(runs_root, monkeypatch, index):
    """At quick scale: every TrainConfig the snippet makes is a 1-epoch run on 512 images."""
    import dataclasses

    import lnlib

    quick = lambda **kw: dataclasses.replace(lnlib.config.TrainConfig(**kw), quick=True, epochs=1, warmup=0,
                                             train_subset=512)
    monkeypatch.setattr(lnlib, "TrainConfig", quick)
    namespace = {}
    exec(PYTHON[index], namespace)
    if "stats" in namespace:  # mean ± std over the seeds of one score, not pooled over scores
        assert set(namespace["stats"]["n"].to_numpy().ravel()) == {3}
        assert {"msp", "energy", "odin"} <= set(namespace["stats"].index.get_level_values("score"))
