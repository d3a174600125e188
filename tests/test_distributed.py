"""Data-parallel training (lnlib.distributed) on CPU with the gloo backend and two processes."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from ddp_step import CFG, batch

from lnlib.train import build, train_epoch


def torchrun(*args, env=None, timeout=600):
    """``torchrun --standalone --nproc_per_node=2 ARGS`` with one CPU thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_ddp_step_equals_one_step_on_the_concatenated_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    done = torchrun("tests/ddp_step.py", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = torch.load(out)

    single = build(CFG, torch.device("cpu"))  # the same seed, so the same initial weights
    initial = {name: value.clone() for name, value in single.model.state_dict().items()}
    x, y = batch()
    loss, _ = train_epoch(single, x, y, 0)

    # The loss over both ranks' halves is the loss of the whole batch (batch norm over both halves).
    torch.testing.assert_close(ddp["loss"], loss, rtol=1e-5, atol=1e-6)
    state = single.model.state_dict()
    assert ddp["model"].keys() == state.keys()
    for name, value in state.items():  # weights after the SGD step and batch-norm running statistics
        torch.testing.assert_close(ddp["model"][name], value, rtol=1e-4, atol=1e-5, msg=name)
        # The step moves every weight by 0.03-2, so 1e-5 tells batch norm over the whole batch from batch
        # norm per rank (which ends ~0.1 away here).
        assert not name.endswith("weight") or (value - initial[name]).abs().max() > 1e-2, name


@pytest.mark.usefixtures("fashion_mnist_available")
def test_torchrun_trains_a_complete_run_with_two_processes(runs_root):
    done = torchrun("-m", "lnlib", "train", "--quick", "true", "--epochs", "1", "--warmup", "0", "--device", "cpu",
                    env={"LNLIB_RUNS": str(runs_root)})
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs_root.iterdir()
    assert json.loads((run / "env.json").read_text())["processes"] == 2
    assert (run / "metrics.json").exists() and not (run / "checkpoint.pt").exists()
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 2  # header + one epoch, written once (by rank 0)
    assert done.stdout.count("test accuracy") == 1  # the summary is printed by rank 0 only
    assert json.loads((run / "metrics.json").read_text())["test_acc"] > 0.2  # learned: chance is 0.1


def test_a_batch_that_does_not_split_over_the_processes_fails_before_any_work(runs_root):
    done = torchrun("-m", "lnlib", "train", "--quick", "true", "--batch_size", "127", "--device", "cpu",
                    env={"LNLIB_RUNS": str(runs_root)})
    assert done.returncode != 0
    assert "batch_size=127 does not split over 2 processes; use a multiple of 2" in done.stderr
    assert not runs_root.exists()
