import json
import subprocess
import sys

import pytest

from lnlib import PRESETS, TrainConfig, preset


def test_defaults_are_the_offline_cpu_default():
    cfg = TrainConfig().validate()
    assert (cfg.dataset, cfg.model, cfg.loss, cfg.tau) == ("fashion_mnist", "small_cnn", "logitnorm", 0.04)


def test_paper_preset_is_the_logitnorm_cifar10_recipe():
    cfg = preset("cifar10_wrn_logitnorm")
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.dropout) == (
        "wrn40_2", 200, 128, 0.1, 0.9, 5e-4, 0.3)
    assert cfg.schedule == "multistep" and cfg.milestones == (80, 140) and cfg.gamma == 0.1
    assert not cfg.nesterov
    assert preset("cifar10_wrn_ce").loss == "ce"
    for name in PRESETS:
        preset(name)  # every preset validates


@pytest.mark.parametrize("key, value, expected_in_message", [
    ("tau", -1, ["tau", "-1", "positive"]),
    ("tau", 0, ["tau", "positive"]),
    ("loss", "foo", ["loss", "'foo'", "'ce'", "'logitnorm'"]),
    ("dataset", "foo", ["dataset", "'foo'", "fashion_mnist"]),
    ("model", "vit", ["model", "'vit'", "small_cnn"]),
    ("epochs", 0, ["epochs", ">= 1"]),
    ("epochs", 2.5, ["epochs", "integer"]),
    ("quick", "yes", ["quick", "True or False"]),
    ("dropout", 1.0, ["dropout", "[0, 1)"]),
    ("monitor_ood", "cifar10", ["monitor_ood", "textures"]),
    ("milestones", (5, 3), ["milestones", "increasing"]),
    ("tau", float("nan"), ["tau"]),
    ("outlier", "oe", ["outlier", "'oe'", "'ceda'", "'acet'"]),
    ("pgd_eps", 2, ["pgd_eps", "[0, 1]"]),
    ("pgd_steps", 0, ["pgd_steps", ">= 1"]),
    ("outlier_weight", -1, ["outlier_weight", ">= 0"]),
])
def test_bad_values_name_key_value_and_choices(key, value, expected_in_message):
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict({key: value})
    for text in expected_in_message:
        assert text in str(err.value), (text, str(err.value))


def test_unknown_key_is_rejected_with_the_valid_keys():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['taw'\].*tau"):
        TrainConfig.from_dict({"taw": 0.04})


def test_multistep_needs_milestones():
    with pytest.raises(ValueError, match="milestones"):
        TrainConfig.from_dict({"schedule": "multistep"})


def test_from_namespace_takes_literals_and_rejects_unknown_literals():
    import math

    ns = {"tau": 0.1, "loss": "ce", "math": math, "_private": 1, "In": [], "cfg": TrainConfig(), "f": print,
          "LOSSES": ("ce", "logitnorm"),  # an imported constant
          "milestones": []}
    cfg = TrainConfig.from_namespace(ns)
    assert cfg.tau == 0.1 and cfg.loss == "ce"
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['taw'\]"):
        TrainConfig.from_namespace({**ns, "taw": 0.04})
    assert TrainConfig.from_namespace({**ns, "run_dir": "x"}, allowed_extra=("run_dir",)).tau == 0.1


def test_hash_is_stable_across_processes_and_sensitive_to_fields():
    cfg = TrainConfig()
    code = "from lnlib import TrainConfig; print(TrainConfig().content_hash())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == cfg.content_hash()
    assert len(cfg.content_hash()) == 8
    assert cfg.replace(seed=1).content_hash() != cfg.content_hash()
    assert cfg.replace(tau=0.5).content_hash() != cfg.content_hash()
    # tau does nothing under cross-entropy, so CE runs are shared whatever tau says
    ce = cfg.replace(loss="ce")
    assert ce.replace(tau=0.5).content_hash() == ce.content_hash()


def test_eval_batch_size_keeps_the_names_of_existing_runs():
    # known answers: the folders of the book's default LogitNorm and CE runs since the first builds, when the
    # evaluation batch was 1000; how the outputs are batched does not change what is trained
    assert TrainConfig().content_hash() == "83627ed6"
    assert TrainConfig(loss="ce").content_hash() == "36ce1962"
    assert TrainConfig(eval_batch_size=1000).content_hash() == TrainConfig(eval_batch_size=7).content_hash()


def test_outlier_fields_change_the_hash_only_where_they_are_used():
    base = TrainConfig(loss="ce")
    # without an outlier objective they do nothing: hashes of runs from before these fields existed still hold
    assert base.replace(pgd_steps=40, pgd_eps=0.1, outlier_weight=2.0).content_hash() == base.content_hash()
    ceda = base.replace(outlier="ceda")
    assert ceda.content_hash() != base.content_hash()
    assert ceda.replace(pgd_steps=40).content_hash() == ceda.content_hash()
    assert ceda.replace(outlier_weight=0.5).content_hash() != ceda.content_hash()
    acet = base.replace(outlier="acet")
    assert acet.replace(pgd_steps=40).content_hash() != acet.content_hash()
    assert preset("acet_paper").pgd_steps == 40 and acet.slug().endswith("-ce-acet-s0")


def test_round_trip_through_json():
    cfg = preset("cifar10_wrn_logitnorm")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.content_hash() == cfg.content_hash()


def test_held_out_classes_are_validated_named_and_hashed_only_when_on():
    assert TrainConfig(held_out=()).content_hash() == "83627ed6"  # off: the names of existing runs hold
    study = preset("open_set")
    assert study.held_out == (8, 9) and study.num_classes == 8 and TrainConfig().num_classes == 10
    assert study.slug() == "fashion_mnist-small_cnn-logitnorm0.04-n10000-without8+9-s0"
    assert study.content_hash() != study.replace(held_out=()).content_hash()
    assert TrainConfig.from_dict(json.loads(json.dumps(study.to_dict()))) == study  # lists back to a tuple
    for bad in ([9, 8], [10], [0, 0], list(range(9))):
        with pytest.raises(ValueError, match=rf"held_out=\({bad[0]}.*Bag, Ankle boot\), leaving at least 2"):
            TrainConfig.from_dict({"held_out": bad})


def test_quick_caps_epochs():
    assert TrainConfig(quick=True, epochs=50).epochs_to_run == 3
    assert TrainConfig(epochs=50).epochs_to_run == 50


def test_grid_is_the_validated_product_of_its_axes():
    base = TrainConfig()
    grid = base.grid(loss=["ce", "logitnorm"], seed=range(3))
    assert [(c.loss, c.seed) for c in grid] == [(loss, s) for loss in ("ce", "logitnorm") for s in range(3)]
    assert all(c.epochs == base.epochs for c in grid)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['seeds'\]"):
        base.grid(seeds=[0])
    with pytest.raises(ValueError, match="tau=-1"):
        base.grid(tau=[0.1, -1])


def test_papermill_command_carries_the_whole_preset():
    import shlex

    import yaml

    from lnlib.config import PRESETS, papermill_command

    words = shlex.split(papermill_command("ood_results", "cifar10_paper", seeds=3))
    assert words[:3] == ["papermill", "nbs/ood_results.ipynb", "out.ipynb"] and words[3] == "-y"
    params = yaml.safe_load(words[4])
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in PRESETS["cifar10_paper"].items()}
    defaults = TrainConfig().to_dict()
    assert params == {**{k: v for k, v in expected.items() if v != defaults[k]}, "seeds": 3}
    assert "loss" not in params and "tau" not in params  # at their defaults: a chapter that sets them itself works
    assert TrainConfig.from_dict({k: v for k, v in params.items() if k != "seeds"}) == preset("cifar10_paper")
    with pytest.raises(ValueError, match="preset='cifar10'"):
        papermill_command("ood_results", "cifar10")


def test_full_scale_commands_fetch_the_benchmark_then_run_the_chapter():
    from lnlib.config import full_scale_commands, papermill_command
    from lnlib.paper_sets import fetch_command

    fetch, run = full_scale_commands("norm_ranking", "cifar10_paper", train_subset=0).split("\n")
    assert fetch == fetch_command() and "cifar10" in fetch and "places365" in fetch
    assert run == papermill_command("norm_ranking", "cifar10_paper", train_subset=0)
    with pytest.raises(ValueError, match="preset='cifar10'"):
        full_scale_commands("norm_ranking", "cifar10")
