"""Runs that go wrong say so at once, in lnlib's words (issue 19): divergence, files lnlib did not write,
and shared folders."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_cfg

from lnlib import files
from lnlib.runs import Run
from lnlib.train import TrainingDiverged, fit, load_or_train


@pytest.mark.usefixtures("fashion_mnist_available")
def test_a_diverging_run_stops_in_its_first_epoch_and_leaves_nothing_to_resume(runs_root):
    cfg = tiny_cfg(lr=1e9, epochs=3)
    lines = []
    with pytest.raises(TrainingDiverged) as err:
        load_or_train(cfg)
    message = str(err.value)
    for words in ("diverged in epoch 1", "lr=1e+09", "--lr 1e+08", "--warmup 2", "--tau 0.08", "from scratch"):
        assert words in message, message
    run = Run.for_config(cfg)
    assert not (run.path / "checkpoint.pt").exists() and not (run.path / "history.csv").exists()
    with pytest.raises(TrainingDiverged, match="diverged in epoch 1"):  # a second launch: the same, not a resume
        fit(cfg, run, log=lines.append)
    assert not any("resuming" in line for line in lines)


@pytest.mark.usefixtures("fashion_mnist_available")
def test_the_cli_reports_divergence_in_one_line(runs_root):
    out = subprocess.run([sys.executable, "-m", "lnlib", "train", "--quick", "true", "--lr", "1e9", "--loss", "ce"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: training diverged in epoch 1"), out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "--tau" not in out.stderr  # no tau advice for cross-entropy


class _Sneaky:
    """An object whose unpickling would run code (it would create a file)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_checkpoint_carrying_a_pickled_object_is_refused(tmp_path):
    planted = tmp_path / "planted"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "epoch": 1, "payload": _Sneaky(str(planted))}, path)
    with pytest.raises(files.UnsafeFileError) as err:
        files.load_tensors(path, what="the checkpoint of run x")
    assert "pickled objects" in str(err.value) and "never executes pickled code" in str(err.value)
    assert f"rm {path}" in str(err.value)
    assert not planted.exists()  # the code in it did not run


@pytest.mark.usefixtures("fashion_mnist_available")
def test_resuming_refuses_a_planted_checkpoint(tmp_path):
    cfg = tiny_cfg(epochs=1, warmup=0, train_subset=256)
    run = Run.for_config(cfg, tmp_path)
    run.path.mkdir(parents=True)
    torch.save({"model": _Sneaky(str(tmp_path / "planted"))}, run.path / "checkpoint.pt")
    with pytest.raises(files.UnsafeFileError, match="checkpoint of run"):
        fit(cfg, run, log=None)
    assert not (tmp_path / "planted").exists()


def test_a_truncated_file_is_reported_as_damaged(tmp_path):
    path = tmp_path / "model.pt"
    files.atomic_torch_save({"w": torch.ones(1000)}, path)
    os.truncate(path, 100)
    with pytest.raises(files.UnsafeFileError, match=r"model.pt \(the weights\) is damaged"):
        files.load_tensors(path, what="the weights")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_mode_of_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        files.atomic_write_text("x", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask


SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter lives under /root, out of another user's reach


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON), reason="needs root and a system python")
def test_another_user_reads_a_shared_run_folder_and_takes_its_lock():
    shared = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path is private to root
    try:
        os.chmod(shared, 0o777)
        old = os.umask(0o022)
        try:
            run = Run(shared / "run")
            with run.lock():
                files.atomic_write_json({"a": 1}, run.path / "config.json")
        finally:
            os.umask(old)
        # as user nobody, what Run.lock does: read the config, flock the lock file opened read-only
        code = ("import fcntl, os, sys; print(open(sys.argv[1] + '/config.json').read()[0]); "
                "fd = os.open(sys.argv[1] + '/.lock', os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('locked')")
        out = subprocess.run([SYSTEM_PYTHON, "-c", code, str(run.path)], capture_output=True, text=True, user=65534)
        assert out.returncode == 0 and out.stdout.split() == ["{", "locked"], out.stderr[-1500:]
    finally:
        shutil.rmtree(shared)


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory, fashion_mnist_available):
    return load_or_train(tiny_cfg(epochs=1, warmup=0, train_subset=512), root=tmp_path_factory.mktemp("runs"))


def test_a_damaged_weights_file_names_the_run_the_file_and_the_command(complete_run, tmp_path):
    import shutil as sh

    run = Run(sh.copytree(complete_run.path, tmp_path / complete_run.path.name))
    assert run.intact("model.pt") and run.load_model("cpu") is not None
    os.truncate(run.path / "model.pt", 1000)
    from lnlib.runs import RunDamaged

    with pytest.raises(RunDamaged) as err:
        load_or_train(run.config, root=tmp_path)
    message = str(err.value)
    assert f"run {run.path.name} is damaged: model.pt" in message
    assert f"rm -r {run.path} && python -m lnlib train --epochs 1 --warmup 0 --train_subset 512 --quick True" in message
    with pytest.raises(RunDamaged):
        run.load_model("cpu")
    (run.path / "digests.json").unlink()  # a run from before digests: the damage is still named, with the fix
    with pytest.raises(RunDamaged, match="is damaged: model.pt cannot be read: it is truncated"):
        run.load_model("cpu")


def test_a_damaged_logits_cache_is_recomputed(complete_run, tmp_path):
    import shutil as sh

    from lnlib.evaluate import outputs

    run = Run(sh.copytree(complete_run.path, tmp_path / complete_run.path.name))
    before = outputs(run, ["id_test", "digits"], "cpu")
    path = run.path / "logits" / "digits.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the array data
    path.write_bytes(bytes(data))
    assert not run.intact("logits/digits.npz")
    after = outputs(run, ["id_test", "digits"], "cpu")
    assert (after["digits"].logits == before["digits"].logits).all() and run.intact("logits/digits.npz")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lnlib", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_the_cli_help_says_what_each_flag_means_and_lists_its_choices():
    from lnlib import TrainConfig

    text = " ".join(_cli("train", "--help").stdout.split())  # argparse wraps lines
    for name in TrainConfig.field_names():
        assert f"--{name}" in text
    for words in ("--model NAME architecture; choices: small_cnn, wrn40_2, resnet18, mlp (default: small_cnn)",
                  "choices: none, ceda, acet", "choices: cosine, multistep, constant", "choices: auto, cpu, cuda",
                  "choices: auto, fp32, bf16", "choices: digits, textures,", "choices: fashion_mnist, cifar10",
                  "choices: ce, logitnorm", "acet_paper, cifar100_paper", "LogitNorm temperature",
                  "--milestones INT,INT,..."):
        assert words in text, words
    assert len(TrainConfig.field_help()) == len(TrainConfig.field_names())  # every field has its comment


@pytest.mark.parametrize("text", ["80,140", "[80, 140]", "80 140", "(80,140)"])
def test_milestones_are_read_in_every_usual_form(runs_root, text):
    out = _cli("config", "--epochs", "200", "--schedule", "multistep", "--milestones", text)
    assert out.returncode == 0 and '"milestones": [\n    80,\n    140\n  ]' in out.stdout, out.stderr


def test_a_full_scale_run_offline_names_every_missing_set_at_once(tmp_path):
    out = _cli("train", "--preset", "cifar10_paper", env={"LNLIB_DATA": str(tmp_path)})
    assert out.returncode == 2
    for name in ("cifar10", "textures_dtd", "svhn", "lsun_crop", "lsun_resize", "isun", "places365"):
        assert name in out.stderr
    assert 'make data SETS="cifar10 textures_dtd svhn lsun_crop lsun_resize isun places365"' in out.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_failed_launch_leaves_no_run_folder(runs_root):
    out = _cli("train", "--quick", "true", "--device", "cuda")
    assert out.returncode == 2 and "no CUDA GPU" in out.stderr
    assert not runs_root.exists() or not any(runs_root.iterdir())


@pytest.mark.slow
@pytest.mark.usefixtures("fashion_mnist_available")
def test_two_launches_of_one_config_train_it_once(runs_root):
    cmd = [sys.executable, "-m", "lnlib", "train", "--quick", "true", "--epochs", "1", "--warmup", "0",
           "--train_subset", "512"]
    env = {**os.environ, "LNLIB_RUNS": str(runs_root), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    trained = [o[0] for o in outs if "epoch   1/1" in o[0]]
    assert len(trained) == 1  # the second waited for the lock, then loaded the finished run
    accuracies = {line for o in outs for line in o[0].splitlines() if line.startswith("test accuracy")}
    assert len(accuracies) == 1
    (run,) = runs_root.iterdir()
    assert len(Run(run).history) == 1


@pytest.mark.usefixtures("fashion_mnist_available")
def test_a_full_disk_fails_loudly_marks_nothing_complete_and_loses_nothing(tmp_path, monkeypatch):
    import errno

    cfg = tiny_cfg(epochs=1, warmup=0, train_subset=512)
    run = Run.for_config(cfg, tmp_path)
    real_replace = os.replace

    def disk_full_at_the_end(src, dst):
        if str(dst).endswith("metrics.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", disk_full_at_the_end)
    with pytest.raises(OSError, match="No space left on device"):
        load_or_train(cfg, root=tmp_path)
    assert not run.is_complete() and (run.path / "checkpoint.pt").exists()
    assert not list(run.path.glob(".*.tmp"))  # the half-written file was removed
    monkeypatch.setattr(files.os, "replace", real_replace)
    lines = []
    fit(cfg, run, log=lines.append)  # with space again: the finished epoch is kept, only the end is redone
    assert run.is_complete() and lines == [f"resuming {run.path.name} after epoch 1"]  # no epoch trained again


def test_analysis_folders_are_named_by_what_produced_them(runs_root):
    from lnlib import TrainConfig

    book = files.analysis_dir("ood_results", TrainConfig(), seeds=3, positive="id", protocol="all")
    assert book == files.analysis_dir("ood_results", TrainConfig(), protocol="all", positive="id", seeds=3)
    assert book.name.startswith("ood_results-") and "quick" not in book.name
    others = {files.analysis_dir("ood_results", TrainConfig(), seeds=5, positive="ood", protocol="all"),
              files.analysis_dir("ood_results", TrainConfig(tau=0.1), seeds=3, positive="id", protocol="all"),
              files.analysis_dir("ood_results", TrainConfig(quick=True), seeds=3, positive="id", protocol="all")}
    assert book not in others and len(others) == 3
    assert any(p.name.startswith("ood_results-quick-") for p in others)
