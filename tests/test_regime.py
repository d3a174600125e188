"""The paper's regime on a CPU: a fixed training subset (TrainConfig.train_subset) and OOD detection along
training (TrainConfig.ood_every, the run's ood_history.csv)."""

import pandas as pd
import pytest
import torch
from conftest import tiny_cfg

from lnlib import TrainConfig, preset
from lnlib.data import load_id, split_train_val
from lnlib.runs import Run
from lnlib.train import fit, load_or_train


@pytest.mark.parametrize("value, words", [
    (-1, ["train_subset=-1", "0 (all) or an integer in [batch_size=128, 55000]"]),
    (64, ["train_subset=64", "[batch_size=128, 55000]"]),
    (55_001, ["train_subset=55001", "less val_size=5000"]),
    (2.5, ["train_subset=2.5"]),
])
def test_a_bad_subset_names_the_value_and_the_range(value, words):
    with pytest.raises(ValueError) as err:
        TrainConfig(train_subset=value).validate()
    assert all(w in str(err.value) for w in words), str(err.value)


def test_ood_every_must_be_a_count():
    with pytest.raises(ValueError, match=r"ood_every=-2 is not valid; ood_every must be an integer >= 0"):
        TrainConfig(ood_every=-2).validate()


def test_the_subset_is_part_of_the_identity_and_off_keeps_old_hashes():
    base = TrainConfig()
    assert TrainConfig(train_subset=0).content_hash() == base.content_hash() == "83627ed6"  # the book's run
    assert TrainConfig(ood_every=0).content_hash() == base.content_hash()
    hashes = {TrainConfig(train_subset=n).content_hash() for n in (1000, 2000)} | {base.content_hash()}
    assert len(hashes) == 3 and TrainConfig(ood_every=2).content_hash() not in hashes


def test_the_same_images_for_every_seed_and_loss():
    train = split_train_val(load_id("fashion_mnist")["train"], 5000)[0]
    picked = {}
    for cfg in TrainConfig(train_subset=3000).grid(loss=["ce", "logitnorm"], seed=[0, 1]):
        assert cfg.train_images == 3000
        picked[cfg.loss, cfg.seed] = train.subset(cfg.train_images).images
    first = next(iter(picked.values()))
    assert all(torch.equal(first, images) for images in picked.values())
    assert TrainConfig(train_subset=3000, quick=True).train_images == 3000
    assert TrainConfig(train_subset=20_000, quick=True).train_images == 10_000  # quick caps it
    assert TrainConfig().train_images == 55_000


@pytest.mark.usefixtures("fashion_mnist_available")
def test_a_subset_run_trains_on_that_many_images_and_records_ood_along_training(runs_root):
    run = load_or_train(tiny_cfg(train_subset=512, batch_size=128, epochs=3, ood_every=2))
    steps_per_epoch = 512 // 128
    assert run.history["epoch"].tolist() == [1, 2, 3]
    along = run.ood_history
    # epochs 2 (every 2) and 3 (the last), each against the seven offline OOD sets
    assert sorted(along["epoch"].unique()) == [2, 3] and along.groupby("epoch").size().tolist() == [7, 7]
    assert ((0 <= along[["fpr95", "auroc"]]) & (along[["fpr95", "auroc"]] <= 1)).all().all()
    last = along.query("epoch == 3").set_index("ood_set")
    for name, m in run.metrics["ood"]["sets"].items():  # the last epoch's record is the final evaluation
        assert last.loc[name, "fpr95"] == pytest.approx(m["fpr95"], abs=1e-6)
    by_epoch = run.history.set_index("epoch")
    assert (along["train_eval_acc"] == by_epoch.loc[along["epoch"], "train_eval_acc"].values).all()
    assert run.metrics["epochs"] == 3 and steps_per_epoch == 4


@pytest.mark.usefixtures("fashion_mnist_available")
def test_a_killed_run_resumes_its_ood_record_exactly(tmp_path):
    cfg = tiny_cfg(train_subset=512, epochs=3, ood_every=1, loss="ce")

    def killed_after_first_epoch(line):
        if line.startswith("epoch   1/"):
            raise KeyboardInterrupt  # after the epoch's checkpoint was written: as a kill there

    broken = Run.for_config(cfg, tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, broken, log=killed_after_first_epoch)
    assert (broken.path / "checkpoint.pt").exists() and broken.ood_history["epoch"].tolist() == [1] * 7
    fit(cfg, broken, log=None)
    unbroken = load_or_train(cfg, root=tmp_path / "unbroken")
    pd.testing.assert_frame_equal(broken.ood_history, unbroken.ood_history)


def test_runs_that_do_not_ask_write_no_ood_record(runs_root, fashion_mnist_available):
    run = load_or_train(tiny_cfg(train_subset=256, epochs=1, warmup=0))
    assert not (run.path / "ood_history.csv").exists()


def test_the_chapter_parameters_are_the_preset():
    import papermill as pm
    from conftest import REPO

    from lnlib.config import PRESETS

    defaults = {k: v["default"] for k, v in pm.inspect_notebook(REPO / "nbs" / "paper_regime.ipynb").items()}
    for key, value in PRESETS["paper_regime"].items():
        assert eval(defaults[key]) == (list(value) if isinstance(value, tuple) else value), key
    cfg = preset("paper_regime")
    assert cfg.slug() == "fashion_mnist-small_cnn-logitnorm0.04-n4000-s0" and cfg.train_images == 4000


def _records(values: dict) -> pd.DataFrame:
    """ood_records-like rows: {(loss, seed, ood_set): value} for one metric."""
    return pd.DataFrame([{"loss": loss, "method": loss, "tau": float("nan"), "seed": seed, "run": f"{loss}{seed}",
                          "score": "msp", "ood_set": s, "n_id": 10, "n_ood": 5, "metric": "fpr95", "value": v}
                         for (loss, seed, s), v in values.items()])


def test_kind_averages_are_per_run_over_each_kind():
    from lnlib import tidy

    records = _records({("ce", 0, "digits"): 0.2, ("ce", 0, "textures"): 0.4, ("ce", 0, "uniform_noise"): 0.9,
                        ("ce", 1, "digits"): 0.6, ("ce", 1, "textures"): 0.6, ("ce", 1, "uniform_noise"): 0.1})
    out = tidy.with_kind_averages(records, ("uniform_noise",)).set_index(["run", "ood_set"])["value"]
    assert out["ce0", tidy.REAL] == pytest.approx(0.3) and out["ce1", tidy.REAL] == pytest.approx(0.6)
    assert out["ce0", tidy.NOISE] == pytest.approx(0.9) and out["ce1", tidy.NOISE] == pytest.approx(0.1)
    assert len(out) == 6 + 4


def test_stage_changes_pair_each_seed_and_skip_runs_that_never_fitted():
    from lnlib import tidy

    rows = [{"method": "ce", "ood_set": tidy.REAL, "metric": "fpr95", "run": run, "stage": stage, "value": v}
            for run, stage, v in (("a", "fitted", 0.5), ("a", "end", 0.7), ("b", "fitted", 0.4), ("b", "end", 0.5),
                                  ("c", "end", 0.9))]
    out = tidy.stage_changes(pd.DataFrame(rows)).loc[("ce", tidy.REAL, "fpr95")]
    assert out["change"] == pytest.approx(0.15) and out["n"] == 2  # run c never fitted
    assert out["fitted"] == pytest.approx(0.45) and out["end"] == pytest.approx(0.7)  # the end over all runs
    assert out["se"] == pytest.approx(pd.Series([0.2, 0.1]).sem())


@pytest.mark.parametrize("change, se, words", [(1.0, 0.2, "rose"), (-1.0, 0.2, "fell"),
                                               (0.3, 0.2, "did not change beyond two standard errors"),
                                               (float("nan"), float("nan"), "could not be measured")])
def test_a_change_counts_only_beyond_two_standard_errors(change, se, words):
    from lnlib.paper import change_words

    assert change_words(change, se).startswith(words)


def test_the_status_rows_of_the_regime():
    from lnlib import paper

    growth = pd.DataFrame({"loss": ["ce"] * 3 + ["logitnorm"] * 3, "fit_epoch": [20.0, 22, 24, 30, 32, 34],
                           "at_fit": [12.0, 12.1, 12.2, 8, 8, 8], "at_end": [12.0, 12.2, 12.1, 8, 8, 8]})
    claim, _, ours, _, verdict = paper._growth_row(growth, "s")
    assert "keeps increasing" in claim and "12.10 at the fitted epoch (22)" in ours
    assert verdict.startswith("no clear change")
    grown = growth.assign(at_end=growth["at_fit"] + [1.0, 1.1, 0.9, 0, 0, 0])
    assert paper._growth_row(grown, "s")[-1] == "grows, at this scale"
    unfit = growth.assign(at_fit=[float("nan")] + [12.1, 12.2, 8, 8, 8])
    assert paper._growth_row(unfit, "s")[-1].startswith("not measured")
