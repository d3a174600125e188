"""The paper's regime on a CPU: a fixed training subset (TrainConfig.train_subset) and OOD detection along
training (TrainConfig.ood_every, the run's ood_history.csv)."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_cfg

from lnlib import TrainConfig, preset
from lnlib.data import OOD_SETS, load_id, split_train_val
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
    # epochs 2 (every 2) and 3 (the last), each against every offline OOD set
    n_sets = len(OOD_SETS)
    assert sorted(along["epoch"].unique()) == [2, 3] and along.groupby("epoch").size().tolist() == [n_sets, n_sets]
    assert ((0 <= along[["fpr95", "auroc"]]) & (along[["fpr95", "auroc"]] <= 1)).all().all()
    last = along.query("epoch == 3").set_index("ood_set")
    for name, m in run.metrics["ood"]["sets"].items():  # the last epoch's record is the final evaluation
        assert last.loc[name, "fpr95"] == pytest.approx(m["fpr95"], abs=1e-6)
    by_epoch = run.history.set_index("epoch")
    assert (along["train_eval_acc"] == by_epoch.loc[along["epoch"], "train_eval_acc"].values).all()
    assert run.metrics["epochs"] == 3 and steps_per_epoch == 4
    # measuring along the way leaves training as it was: the OOD-results chapter reads the last epoch's change
    # from such a run as the change of the run without it
    plain = load_or_train(tiny_cfg(train_subset=512, batch_size=128, epochs=3))
    clocks = [c for c in run.history.columns if c.endswith("_s")]
    pd.testing.assert_frame_equal(run.history.drop(columns=clocks), plain.history.drop(columns=clocks))


@pytest.mark.usefixtures("fashion_mnist_available")
def test_a_killed_run_resumes_its_ood_record_exactly(tmp_path):
    cfg = tiny_cfg(train_subset=512, epochs=3, ood_every=1, loss="ce")

    def killed_after_first_epoch(line):
        if line.startswith("epoch   1/"):
            raise KeyboardInterrupt  # after the epoch's checkpoint was written: as a kill there

    broken = Run.for_config(cfg, tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, broken, log=killed_after_first_epoch)
    assert (broken.path / "checkpoint.pt").exists() and broken.ood_history["epoch"].tolist() == [1] * len(OOD_SETS)
    fit(cfg, broken, log=None)
    unbroken = load_or_train(cfg, root=tmp_path / "unbroken")
    pd.testing.assert_frame_equal(broken.ood_history, unbroken.ood_history)


def test_runs_that_do_not_ask_write_no_ood_record(runs_root, fashion_mnist_available):
    run = load_or_train(tiny_cfg(train_subset=256, epochs=1, warmup=0))
    assert not (run.path / "ood_history.csv").exists()


def test_the_chapter_parameters_are_the_preset():
    import papermill as pm
    from conftest import REPO

    from lnlib.config import PRESETS, SECONDARY_SEEDS, WEIGHT_DECAYS

    defaults = {k: eval(v["default"]) for k, v in pm.inspect_notebook(REPO / "nbs" / "paper_regime.ipynb").items()}
    for key, value in PRESETS["paper_regime"].items():
        if key == "weight_decay":  # the chapter trains it and none
            assert defaults["weight_decays"] == list(WEIGHT_DECAYS) and WEIGHT_DECAYS[0] == value
        else:
            assert defaults[key] == (list(value) if isinstance(value, tuple) else value), key
    assert defaults["seeds"] == SECONDARY_SEEDS >= 9 and defaults["loss"] == "ce"
    status = {k: eval(v["default"]) for k, v in pm.inspect_notebook(REPO / "nbs" / "reproduction_status.ipynb").items()}
    assert status["mechanism_seeds"] == SECONDARY_SEEDS  # the status page reads the same runs
    cfg = preset("paper_regime")
    assert cfg.slug() == "fashion_mnist-small_cnn-logitnorm0.04-n4000-s0" and cfg.train_images == 4000
    # measured every 4 epochs, OOD every 8: both at the last epoch, and every OOD row on a measured epoch
    assert cfg.ood_every % cfg.history_every == 0 and cfg.epochs % cfg.ood_every == 0


def _records(values: dict) -> pd.DataFrame:
    """ood_records-like rows: {(loss, seed, ood_set): value} for one metric."""
    return pd.DataFrame([{"loss": loss, "method": loss, "tau": float("nan"), "seed": seed, "run": f"{loss}{seed}",
                          "score": "msp", "ood_set": s, "n_id": 10, "n_ood": 5, "metric": "fpr95", "value": v}
                         for (loss, seed, s), v in values.items()])


def test_growth_stages_keep_the_runs_that_fitted():
    from lnlib import tidy

    growth = pd.DataFrame({"loss": ["ce"] * 3, "seed": [0, 1, 2], "run": ["a", "b", "c"],
                           "fit_epoch": [20.0, float("nan"), 24], "at_fit": [12.0, float("nan"), 12.2],
                           "at_end": [12.5, 13.0, 12.1]})
    stages = tidy.growth_stages(growth).set_index(["run", "stage"])["value"]
    assert stages.to_dict() == {("a", "fit"): 12.0, ("c", "fit"): 12.2, ("a", "end"): 12.5, ("c", "end"): 12.1}
    rows = pd.DataFrame({"run": ["a", "a", "b"], "stage": ["fitted", "end", "end"], "value": [1, 2, 3]})
    assert list(tidy.fitted_runs_only(rows)["run"]) == ["a", "a"]


def test_the_status_rows_of_the_regime():
    from lnlib import paper

    growth = pd.DataFrame({"loss": ["ce"] * 10, "seed": range(10), "fit_epoch": [22.0] * 10,
                           "at_fit": 12 + np.arange(10) / 10, "at_end": 12 + np.arange(10) / 10})
    claim, _, ours, _, verdict = paper._growth_row(growth, "s", family=1)
    assert "keeps increasing" in claim and "12.45 at the fitted epoch (22 on average)" in ours
    assert verdict.startswith("no detectable difference"), verdict
    grown = growth.assign(at_end=growth["at_fit"] + 1 + np.arange(10) / 100)
    assert paper._growth_row(grown, "s", family=1)[-1].startswith("grows, at this scale: +1.04")
    assert paper._growth_row(grown.head(3), "s", family=1)[-1].startswith("no verdict possible: 3 paired seeds")
    unfit = growth.assign(at_fit=[float("nan")] + [12.1] * 9)
    assert paper._growth_row(unfit, "s", family=1)[-1].startswith("not measured")


@pytest.mark.parametrize("name", ["ood_results", "scoring_functions", "norm_ranking", "weight_decay",
                                  "reproduction_status", "tau_ablation", "calibration", "hein_claims",
                                  "relu_far_away"])
def test_the_chapters_that_state_verdicts_share_the_seed_study(name):
    """They must agree to share their runs (a chapter with fewer seeds reads the first ones); and a page of a dozen
    Holm-corrected verdicts needs >= 9 seeds."""
    import papermill as pm
    from conftest import REPO

    from lnlib.config import PRESETS, SECONDARY_SEEDS, SEED_STUDY_SEEDS

    defaults = {k: eval(v["default"]) for k, v in pm.inspect_notebook(REPO / "nbs" / f"{name}.ipynb").items()}
    for key, value in PRESETS["seed_study"].items():
        assert defaults[key] == value, key
    if "open_set" in defaults:  # and the open-set study's classes
        assert tuple(defaults["open_set"]) == PRESETS["open_set"]["held_out"]
    if name in ("ood_results", "reproduction_status"):  # the headline verdicts
        assert defaults["seeds"] == SEED_STUDY_SEEDS >= 9
        assert defaults["open_seeds"] == SECONDARY_SEEDS >= 9
    if name in ("relu_far_away", "hein_claims", "reproduction_status"):  # the far-away chapters' runs and scans
        far = {k: eval(v["default"]) for k, v in pm.inspect_notebook(REPO / "nbs" / "hein_claims.ipynb").items()}
        assert all(defaults[k] == far[k] for k in ("pgd_steps", "n_rays", "n_noise", "attack_steps"))
        assert defaults.get("hein_seeds", far["seeds"]) == far["seeds"] == SECONDARY_SEEDS
    # the headline pages' seeds are checked above; the τ grid takes fewer seeds per τ; the far-away chapter, seed 0
    if name not in ("ood_results", "reproduction_status", "tau_ablation", "relu_far_away"):
        assert defaults["seeds"] == SECONDARY_SEEDS >= 9


def test_history_every_is_checked_and_off_keeps_old_hashes():
    assert TrainConfig(history_every=0).content_hash() == TrainConfig().content_hash() == "83627ed6"
    assert TrainConfig(history_every=2).content_hash() != TrainConfig().content_hash()
    with pytest.raises(ValueError, match=r"history_every=-1 is not valid"):
        TrainConfig(history_every=-1).validate()
    with pytest.raises(ValueError, match=r"history_every=1.5 is not valid; history_every must be an integer >= 0"):
        TrainConfig(history_every=1.5).validate()


@pytest.mark.usefixtures("fashion_mnist_available")
def test_a_sparse_history_measures_every_nth_epoch_and_the_last(runs_root):
    from lnlib import tidy

    run = load_or_train(tiny_cfg(train_subset=256, batch_size=64, epochs=3, history_every=3, ood_every=2,
                                 loss="ce", warmup=0))
    assert run.history["epoch"].tolist() == [2, 3]  # the OOD evaluation's epoch, and every 3rd (the last)
    assert sorted(run.ood_history["epoch"].unique()) == [2, 3]
    growth = tidy.growth_after_fit([run]).iloc[0]
    if np.isfinite(growth["fit_epoch"]):  # steps after fitting: the epochs left times the steps of one
        assert growth["steps_after_fit"] == (3 - growth["fit_epoch"]) * (256 // 64)
    assert growth["at_end"] == run.history["train_norm_mean"].iloc[-1]


def test_the_weight_decay_comparison_pairs_two_values_by_seed():
    cfgs = preset("paper_regime", loss="ce").weight_decay_comparison([5e-4, 0.0], 3)
    assert [(c.weight_decay, c.seed) for c in cfgs] == [(5e-4, 0), (5e-4, 1), (5e-4, 2), (0.0, 0), (0.0, 1), (0.0, 2)]
    for bad in ([5e-4], [0.0, 0.0], [5e-4, 0.0, 1e-4], 0.0):
        with pytest.raises(ValueError, match="must be two different numbers"):
            TrainConfig().weight_decay_comparison(bad, 3)
    with pytest.raises(ValueError, match="seeds=0 is not valid"):
        TrainConfig().weight_decay_comparison([5e-4, 0.0], 0)
    with pytest.raises(ValueError, match="weight_decay=-0.1"):
        TrainConfig().weight_decay_comparison([5e-4, -0.1], 2)


def test_the_status_rows_of_the_mechanism():
    from lnlib import paper

    seeds = np.arange(10)
    scale = pd.DataFrame([{"loss": loss, "weight_decay": wd, "seed": s, "metric": "id_norm",
                           "value": (2.0 if wd else 9.0) + s / 50 + (5 if loss == "ce" else 0)}
                          for loss in ("ce", "logitnorm") for wd in (5e-4, 0.0) for s in seeds])
    claim, paper_says, ours, _, verdict = paper._weight_decay_row(scale, "s", family=1)
    assert "Weight decay" in claim and "not a claim of the paper" in paper_says
    assert "2.09 with weight decay 0.0005 → 9.09 without (cross-entropy: 7.09 → 14.09)" in ours  # LogitNorm's verdict
    assert verdict.startswith("holds in direction, at this scale: larger without weight decay: +7.00"), verdict
    flat = scale.assign(value=2.0 + scale["seed"] / 50)
    assert paper._weight_decay_row(flat, "s", family=1)[-1].startswith("no detectable difference")
    norms = pd.DataFrame([{"loss": loss, "seed": s, "run": f"{loss}{s}", "ood_set": name, "metric": "rank_corr",
                           "value": (0.8 if loss == "logitnorm" else 0.3) + s / 50}
                          for loss in ("ce", "logitnorm") for s in seeds for name in ("digits", "letters", "textures")])
    claim, _, ours, _, verdict = paper._ranking_row(norms, "s", family=1)
    assert "0.39 (CE) → 0.89 (LogitNorm)" in ours and verdict.startswith("holds, at this scale: ρ higher"), verdict


@pytest.mark.usefixtures("fashion_mnist_available")
def test_measuring_fewer_epochs_changes_no_weight(runs_root):
    """The seed study measures its last epoch only (history_every): that must leave its runs exactly the runs that
    were measured every epoch, so that the book's verdicts do not depend on it."""
    every = load_or_train(tiny_cfg(train_subset=512, epochs=3, loss="ce"))
    last = load_or_train(tiny_cfg(train_subset=512, epochs=3, loss="ce", history_every=3))
    assert every.path != last.path and last.history["epoch"].tolist() == [3]
    a, b = (torch.load(r.path / "model.pt", weights_only=True) for r in (every, last))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert every.metrics["ood"] == last.metrics["ood"] and every.metrics["test_acc"] == last.metrics["test_acc"]
    pd.testing.assert_frame_equal(every.history.iloc[[-1]].drop(columns="epoch_time_s").reset_index(drop=True),
                                  last.history.drop(columns="epoch_time_s"))


# ----------------------------------------------------------------- lnlib.regime: the chapter's tables and numbers
WD, FREE = "CE, weight decay 0.0005", "CE, no weight decay"


def _regime_frames(free_fits: bool = True):
    """Ten seeds per arm. With weight decay every run fits at epoch 4 and its norm goes 10 → 10.5 (+ seed/100); without,
    every run fits at epoch 5 (the first OOD measurement at or after it: epoch 6) and its norm goes 12 → 14, except
    seed 9, which never fits (and every run of the arm when ``free_fits`` is False). FPR95 (far) is 0.3 at the
    fitting measurement and 0.5 at the end (epoch 8) under weight decay, flat at 0.4 without; synthetic: 0.6 flat."""
    from lnlib import tidy

    growth, along = [], []
    for arm, fitted_at, (norm_fit, norm_end) in ((WD, 4.0, (10.0, 10.5)), (FREE, 5.0, (12.0, 14.0))):
        for s in range(10):
            fits = arm == WD or (free_fits and s < 9)
            growth.append({"method": arm, "seed": s, "run": f"{arm}-{s}",
                           "fit_epoch": fitted_at if fits else float("nan"),
                           "steps_after_fit": (8 - fitted_at) * 125 if fits else float("nan"),
                           "at_fit": norm_fit + s / 100 if fits else float("nan"), "at_end": norm_end + s / 100})
            for epoch in (2, 4, 6, 8):
                far = (0.3 if epoch < 8 else 0.5) if arm == WD else 0.4
                for ood_set, value in ((tidy.SYNTHETIC, 0.6), ("digits", 0.9), (tidy.FAR, far + s / 1000)):
                    for metric in ("fpr95", "auroc"):
                        along.append({"method": arm, "seed": s, "run": f"{arm}-{s}", "epoch": epoch,
                                      "ood_set": ood_set, "metric": metric, "value": value})
    return pd.DataFrame(growth), pd.DataFrame(along)


def test_the_stages_after_fitting_pair_the_runs_that_fitted():
    from lnlib import regime, tidy

    growth, along = _regime_frames()
    both = regime.fit_and_end(growth, along)
    assert set(both.groupby(["method", "metric", "ood_set"]).groups) == {
        (arm, "norm", "training images") for arm in (WD, FREE)} | {
        (arm, "fpr95", kind) for arm in (WD, FREE) for kind in (tidy.FAR, tidy.SYNTHETIC)}
    assert not both["run"].eq(f"{FREE}-9").any()  # it never fitted: nothing to compare
    norm = both.query("metric == 'norm'").set_index(["run", "stage"])["value"]
    assert norm[(f"{WD}-3", "fitted")] == 10.03 and norm[(f"{WD}-3", "end")] == 10.53
    fpr = both.query("metric == 'fpr95'").set_index(["run", "ood_set", "stage"])
    assert fpr.loc[(f"{WD}-0", tidy.FAR, "fitted"), "epoch"] == 4 and fpr.loc[(f"{FREE}-0", tidy.FAR, "fitted"),
                                                                              "epoch"] == 6
    assert fpr.loc[(f"{WD}-0", tidy.FAR, "end"), "value"] == 0.5
    kinds = both.query("metric == 'fpr95'")["ood_set"].tolist()
    assert kinds == sorted(kinds, key=[tidy.FAR, tidy.SYNTHETIC].index)  # the benchmark's order
    per_seed = regime.per_seed_changes(both)
    assert {"method", "metric", "seed", "value"} <= set(per_seed.columns)
    changes = per_seed.set_index(["method", "metric", "seed"])["value"]
    assert changes[(WD, "training images", 7)] == pytest.approx(0.5) and changes[(FREE, tidy.FAR, 0)] == 0.0
    assert changes[(WD, tidy.FAR, 2)] == pytest.approx(0.2) and len(changes.loc[FREE]) == 3 * 9


def test_the_changes_table_and_the_numbers_the_prose_quotes():
    from lnlib import regime, stats, tidy

    growth, along = _regime_frames()
    both = regime.fit_and_end(growth, along)
    changes = stats.compare(both, ["method", "metric", "ood_set"], compare="stage", a="end", b="fitted", family=6)
    styler = regime.changes_table(changes, 10, 6)
    table = styler.data
    assert styler.caption.endswith("10 seeds, paired by seed; Holm over the 6 rows")
    assert table.loc[f"{WD}: mean ‖f‖, training images", ["fitted", "end"]].tolist() == ["10.04", "10.54"]
    assert table.loc[f"{WD}: FPR95, {tidy.FAR}", ["fitted", "end"]].tolist() == ["30.4", "50.4"]
    assert table.loc[f"{WD}: FPR95, {tidy.FAR}", "verdict"] == "end higher"
    assert table.loc[f"{FREE}: FPR95, {tidy.SYNTHETIC}", "verdict"] == "no detectable difference"
    numbers = regime.numbers(preset("paper_regime", loss="ce"), 10, 6, growth, changes, [WD, FREE])
    assert numbers["steps_per_epoch"] == 125 and numbers["milestone"] == 20
    assert numbers["tail_lr"] == pytest.approx(0.00125) and numbers["family"] == 6
    assert numbers["wd_fitted"] == 10 and numbers["free_fitted"] == 9 and numbers["free_fit_epoch"] == 5.0
    assert numbers["wd_steps"] == 500 and numbers["wd_norm_fit"] == pytest.approx(10.045)
    assert numbers["wd_far_fit"] == pytest.approx(30.45) and numbers["wd_far_end"] == pytest.approx(50.45)
    assert numbers["wd_far_verdict"].startswith("it rose") and numbers["wd_norm_verdict"].startswith("it rose")
    assert numbers["free_far_verdict"].startswith("no detectable difference")
    unfit, along = _regime_frames(free_fits=False)
    both = regime.fit_and_end(unfit, along)
    changes = stats.compare(both, ["method", "metric", "ood_set"], compare="stage", a="end", b="fitted", family=6)
    numbers = regime.numbers(preset("paper_regime", loss="ce"), 10, 6, unfit, changes, [WD, FREE])
    assert numbers["free_fitted"] == 0 and np.isnan(numbers["free_far_fit"])
    assert numbers["free_norm_verdict"] == numbers["free_synthetic_verdict"] == "not measured: no run fitted"


def test_the_fit_table_shows_each_arm_over_its_seeds():
    from lnlib import regime

    growth, _ = _regime_frames()
    styler = regime.fit_table(growth, 10)
    table = styler.data
    assert list(table.columns) == [WD, FREE] and list(table.index) == ["fit_epoch", "steps_after_fit", "at_fit",
                                                                     "at_end"]
    assert table.loc["fit_epoch", WD] == "4.00 ± 0.00" and table.loc["steps_after_fit", FREE] == "375.00 ± 0.00"
    assert table.loc["at_end", FREE] == "14.04 ± 0.03"  # all ten seeds, the one that never fitted too
    assert "(clean accuracy ≥ 99.5%)" in styler.caption and styler.caption.endswith("over 10 seeds")
