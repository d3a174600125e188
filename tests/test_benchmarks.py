"""The throughput benchmark measures what it says: both loops see the same data, FLOPs are counted right."""

import json

import pytest
import torch

from benchmarks import train_throughput as bench
from lnlib import TrainConfig
from lnlib.data import ID_SETS, to_device


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_reference_pipeline_gives_lnlib_inputs(dataset):
    """Without augmentation, torchvision's per-sample pipeline and lnlib's normalisation agree pixel for pixel."""
    cfg = TrainConfig(dataset=dataset, augment=False)
    images, labels = bench.case_data(cfg, 6)
    ds = bench.torchvision_dataset(images, labels, bench.reference_transform(cfg))
    expected = to_device(images, ID_SETS[dataset], "cpu")
    for i in range(len(images)):
        x, y = ds[i]
        torch.testing.assert_close(x, expected[i], atol=1e-5, rtol=0)
        assert y == labels[i]


def test_reference_augmentation_crops_within_the_padding():
    """RandomCrop(padding) + flip: every augmented image is a shifted (maybe mirrored) copy, zero-padded."""
    cfg = TrainConfig(dataset="cifar10")
    images, labels = bench.case_data(cfg, 1)
    x, _ = bench.torchvision_dataset(images, labels, bench.reference_transform(cfg))[0]
    base = to_device(images, ID_SETS["cifar10"], "cpu")[0]
    fill = to_device(torch.zeros_like(images), ID_SETS["cifar10"], "cpu")[0]
    padded = torch.nn.functional.pad(base - fill, (4, 4, 4, 4)) + fill[:, :1, :1]
    crops = [c for dy in range(9) for dx in range(9) for c in
             (padded[:, dy:dy + 32, dx:dx + 32], padded[:, dy:dy + 32, dx:dx + 32].flip(2))]
    assert min((x - c).abs().max().item() for c in crops) < 1e-5


def test_flops_per_image_is_forward_plus_backward():
    cfg = TrainConfig()
    from torch.utils.flop_counter import FlopCounterMode

    from lnlib.models import build_model

    with FlopCounterMode(display=False) as counter:
        build_model(cfg)(torch.randn(4, 1, 28, 28))
    forward = counter.get_total_flops() / 4
    assert 7.0e6 < forward < 8.0e6  # small_cnn's 7.5 MFLOP per image (models.py)
    # backward = input and weight gradients (~2x forward), except the first layer's input gradient
    assert 2.5 * forward < bench.flops_per_image(cfg, torch.device("cpu")) <= 3 * forward


def test_bad_variant_is_refused_before_any_work():
    with pytest.raises(ValueError, match="'thread'.*channels_last"):
        bench.parse_variant("thread=1")
    assert bench.parse_variant("channels_last=False threads=1 precision=bf16") == {
        "channels_last": False, "threads": 1, "precision": "bf16"}


def test_plan_checks_the_cases_and_variants_and_shrinks_for_quick_mode():
    cases, variants, steps = bench.plan(["small_cnn_cpu", "wrn40_2_cpu"], [{"channels_last": False}], 0)
    assert cases == ["small_cnn_cpu", "wrn40_2_cpu"] and variants == ["channels_last=False"] and steps == 0
    assert bench.plan(["wrn40_2_cpu", "small_cnn_cpu"], [{"threads": 1}], 0, quick=True) == (
        ["wrn40_2_cpu"], [], bench.QUICK_STEPS)
    assert bench.plan(["small_cnn_cpu"], [], 7, quick=True)[2] == 7  # steps asked for are kept
    with pytest.raises(ValueError, match=r"cases=\['tiny'\].*small_cnn_cpu"):
        bench.plan(["small_cnn_cpu", "tiny"], [], 0)
    with pytest.raises(ValueError, match="'thread'"):
        bench.plan(["small_cnn_cpu"], [{"thread": 1}], 0)
    if not torch.cuda.is_available():  # a GPU case is dropped, not timed on the CPU
        assert bench.plan(["wrn40_2_cuda", "small_cnn_cpu"], [], 0)[0] == ["small_cnn_cpu"]


@pytest.mark.usefixtures("fashion_mnist_available")
def test_benchmark_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--cases", "small_cnn_cpu", "--steps", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (result,) = report["results"]
    for loop in ("reference", "lnlib"):
        assert result[loop]["images_per_s"] > 0 and result[loop]["steps"] == 3
    assert result["lnlib"]["speedup"] == pytest.approx(
        result["lnlib"]["images_per_s"] / result["reference"]["images_per_s"])
    assert report["machine"]["torch"] == torch.__version__
    assert "small_cnn_cpu" in capsys.readouterr().out
