import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from conftest import REPO, tiny_cfg

from lnlib import TrainConfig, load_or_train
from lnlib.evaluate import predict
from lnlib.monitor import measure, ood_along_training
from lnlib.runs import Run
from lnlib.train import augment, build, lr_at

TIME_COLUMNS = ["epoch_time_s"]


def test_augment_is_a_shifted_crop_or_its_mirror():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 8, 8)
    mean, std = torch.tensor([5.0, 6.0]).view(1, 2, 1, 1), torch.ones(1, 2, 1, 1)  # black = (0 - mean) / std
    out = augment(x, pad=2, generator=g, mean=mean, std=std)
    assert out.shape == x.shape
    for i in range(64):
        padded = torch.stack([torch.nn.functional.pad(x[i, c], (2, 2, 2, 2), value=v)
                              for c, v in enumerate((-5.0, -6.0))])
        crops = [padded[:, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(out, augment(x, 2, g2, mean, std))


def test_logits_do_not_depend_on_the_evaluation_batch():
    # why eval_batch_size is not hashed and why ood_along_training may reuse measure's logits: in eval mode an
    # image's logits are the same in a batch of 256 or 1000 (bit for bit on CPU: the same kernels per image)
    torch.manual_seed(0)
    model = build(TrainConfig(), torch.device("cpu")).model
    x = torch.randn(1200, 1, 28, 28)
    assert torch.equal(predict(model, x, 256), predict(model, x, 1000))


def test_ood_along_training_reusing_logits_gives_the_same_rows():
    torch.manual_seed(0)
    model = build(TrainConfig(), torch.device("cpu")).model
    test_x, test_y = torch.randn(300, 1, 28, 28), torch.randint(0, 10, (300,))
    tracked = {"id_test": test_x, "textures": torch.randn(200, 1, 28, 28) * 2, "digits": torch.rand(100, 1, 28, 28)}
    monitor = {"train": (test_x[:100], test_y[:100]), "test": (test_x, test_y), "ood": (tracked["textures"], None)}
    stats, logits = measure(model, monitor, 128)
    row = {"epoch": 1, **stats}
    again = ood_along_training(model, tracked, 128, row, {"id_test": logits["test"], "textures": logits["ood"]})
    assert again == ood_along_training(model, tracked, 128, row)
    assert [r["ood_set"] for r in again] == ["textures", "digits"]


def test_lr_schedule():
    cfg = TrainConfig(epochs=10, warmup=2, lr=0.1)
    assert lr_at(0, cfg, 100) == pytest.approx(0.1 / 200)
    assert lr_at(199, cfg, 100) == pytest.approx(0.1)
    assert lr_at(200, cfg, 100) == pytest.approx(0.1)  # cosine starts at the peak
    assert lr_at(999, cfg, 100) < 1e-5
    step = TrainConfig(epochs=200, warmup=0, lr=0.1, schedule="multistep", milestones=(80, 140))
    assert [lr_at(e * 10, step, 10) for e in (79, 80, 139, 140)] == pytest.approx([0.1, 0.01, 0.01, 0.001])


def _history_without_times(run):
    return run.history.drop(columns=TIME_COLUMNS)


@pytest.mark.slow
def test_short_run_leaves_a_complete_folder(runs_root, fashion_mnist_available):
    run = load_or_train(tiny_cfg())
    files = {p.name for p in run.path.iterdir()}
    assert {"config.json", "env.json", "history.csv", "model.pt", "metrics.json", "logits"} <= files
    assert "checkpoint.pt" not in files
    m = run.metrics
    assert m["test_acc"] > 0.5  # 2 epochs on 10,000 images: well above chance (10%)
    assert set(m["ood"]["sets"]) == {"digits", "letters", "scripts", "textures", "natural_crops", "gaussian_noise",
                                      "uniform_noise", "permuted", "blurred_noise"}  # not 'symbols': validation only
    assert "ID as the positive class" in m["ood"]["convention"]
    h = run.history
    assert list(h["epoch"]) == [1, 2] and (h["test_norm_p10"] <= h["test_norm_p90"]).all()
    assert json.loads((run.path / "env.json").read_text())["torch"] == torch.__version__
    # cached logits: a deleted set is recomputed from model.pt, identical to what training cached
    from lnlib.evaluate import outputs

    before = outputs(run)
    (run.path / "logits" / "textures.npz").unlink()
    after = outputs(run, ["id_test", "textures"])
    assert set(before) == {"id_test", "id_val", *m["ood"]["sets"]}
    for name in ("id_test", "textures"):
        assert (after[name].logits == before[name].logits).all()
    # a second call returns the cached run without training
    mtime = (run.path / "metrics.json").stat().st_mtime_ns
    assert load_or_train(tiny_cfg()).path == run.path
    assert (run.path / "metrics.json").stat().st_mtime_ns == mtime


@pytest.mark.slow
@pytest.mark.parametrize("change, tolerance", [({"compile": True}, 0.002), ({"precision": "bf16"}, 0.02)],
                         ids=["compile", "bf16"])
def test_the_gpu_paths_train_on_a_cpu_as_the_plain_loop_does(runs_root, fashion_mnist_available, change, tolerance):
    """torch.compile and bf16 autocast are what a GPU run uses by default or on request; no GPU has run lnlib, so two
    short epochs of each on the CPU catch most of what would break them there. They must train as the plain fp32
    loop does from the same seed: the same losses up to ``tolerance`` (relative; compile reorders float sums, bf16
    rounds to 8 bits of mantissa) and nearly the same test accuracy."""
    plain = load_or_train(tiny_cfg(train_subset=2048))
    run = load_or_train(tiny_cfg(train_subset=2048, **change))
    assert run.path != plain.path and run.config.to_dict() == {**plain.config.to_dict(), **change}
    assert run.history["train_loss"].to_numpy() == pytest.approx(plain.history["train_loss"].to_numpy(), rel=tolerance)
    assert abs(run.metrics["test_acc"] - plain.metrics["test_acc"]) < 0.03
    assert set(run.metrics["ood"]["sets"]) == set(plain.metrics["ood"]["sets"])


@pytest.mark.slow
def test_same_seed_same_numbers(tmp_path, fashion_mnist_available):
    cfg = tiny_cfg(loss="ce")
    a = load_or_train(cfg, root=tmp_path / "a")
    b = load_or_train(cfg, root=tmp_path / "b")
    pd.testing.assert_frame_equal(_history_without_times(a), _history_without_times(b))
    ma, mb = a.metrics, b.metrics
    assert ma["test_acc"] == mb["test_acc"] and ma["ood"] == mb["ood"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_history(tmp_path, fashion_mnist_available):
    """SIGKILL a real training process after its first checkpoint, re-run, compare with an unbroken run."""
    flags = ["--quick", "true", "--epochs", "3", "--loss", "ce"]
    env = {**os.environ, "LNLIB_RUNS": str(tmp_path / "killed")}
    cmd = [sys.executable, "-m", "lnlib", "train", *flags]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    checkpoints = []
    while time.time() < deadline and not checkpoints and proc.poll() is None:
        time.sleep(0.2)
        checkpoints = list((tmp_path / "killed").glob("*/checkpoint.pt"))
    assert checkpoints, "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = Run(checkpoints[0].parent)
    assert not run.is_complete()
    epochs_before = len(run.history)
    assert 1 <= epochs_before < 3

    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    assert run.is_complete()
    unbroken = load_or_train(tiny_cfg(loss="ce", epochs=3), root=tmp_path / "unbroken")
    pd.testing.assert_frame_equal(_history_without_times(run), _history_without_times(unbroken))
    assert run.metrics["ood"] == unbroken.metrics["ood"]


def test_cli_rejects_bad_values_before_any_work(runs_root):
    for flags, words in ((["--tau", "-1"], ["tau", "-1", "positive"]),
                         (["--loss", "foo"], ["loss", "'foo'", "'ce'", "'logitnorm'"]),
                         (["--dataset", "foo"], ["dataset", "'foo'", "fashion_mnist"])):
        t = time.time()
        out = subprocess.run([sys.executable, "-m", "lnlib", "train", *flags], cwd=REPO, capture_output=True,
                             text=True)
        assert out.returncode == 2
        assert all(w in out.stderr for w in words), out.stderr
        assert time.time() - t < 30
    assert not runs_root.exists()  # nothing was started


def test_cli_config_prints_hash_and_folder(runs_root):
    out = subprocess.run([sys.executable, "-m", "lnlib", "config", "--loss", "ce"], cwd=REPO, capture_output=True,
                         text=True, check=True)
    cfg = TrainConfig(loss="ce")
    assert cfg.content_hash() in out.stdout and str(runs_root) in out.stdout


def test_outlier_batch_stays_in_the_ball_and_the_box():
    from lnlib.data import ID_SETS
    from lnlib.losses import confidence_logits
    from lnlib.models import build_model
    from lnlib.train import outlier_batch

    cfg = TrainConfig(outlier="acet", pgd_eps=0.1, pgd_steps=3, loss="logitnorm")
    spec = ID_SETS[cfg.dataset]
    mean, std = torch.tensor(spec.mean).view(1, -1, 1, 1), torch.tensor(spec.std).view(1, -1, 1, 1)
    x = (torch.rand(16, *spec.shape, generator=torch.Generator().manual_seed(0)) - mean) / std
    model = build_model(cfg).train()
    head = confidence_logits(cfg)
    parts = dict(mean=mean, std=std, head=head)
    acet = outlier_batch(cfg, model, x, **parts, generator=torch.Generator().manual_seed(1))
    ceda = outlier_batch(cfg.replace(outlier="ceda"), model, x, **parts, generator=torch.Generator().manual_seed(1))
    assert model.training  # the attack puts batch norm in eval mode and back
    pixels, noise = acet * std + mean, ceda * std + mean
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert (pixels - noise).abs().max() <= 0.1 + 1e-5  # the same noise draw, moved within pgd_eps
    assert (pixels - noise).abs().max() > 0.05


@pytest.mark.slow
def test_logitnorm_plus_acet_trains_and_lowers_confidence_on_noise(runs_root, fashion_mnist_available):
    from lnlib.evaluate import outputs
    from lnlib.scores import msp

    plain = load_or_train(tiny_cfg(loss="logitnorm"))
    acet = load_or_train(tiny_cfg(loss="logitnorm", outlier="acet", pgd_steps=1))
    assert acet.path.name.endswith(acet.config.content_hash()) and "-acet-" in acet.path.name
    assert acet.metrics["test_acc"] > 0.5
    noise = {name: msp(outputs(run, ["blurred_noise"])["blurred_noise"].logits).mean()
             for name, run in (("plain", plain), ("acet", acet))}
    assert noise["acet"] < noise["plain"] - 0.1, noise  # trained towards 1/K on this kind of noise


def _without_clocks(run):
    metrics = {k: v for k, v in run.metrics.items() if k not in ("train_time_s", "evaluation_time_s")}
    return metrics, run.history.drop(columns="epoch_time_s"), torch.load(run.path / "model.pt", weights_only=True)


def test_load_or_train_all_validates_every_config_before_training_any(runs_root):
    from lnlib import train

    with pytest.raises(ValueError, match="lr=-1"):
        train.load_or_train_all([tiny_cfg(), tiny_cfg(lr=-1)])
    assert not runs_root.exists()  # the first, valid config was not trained either
