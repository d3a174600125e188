"""Figure helpers: real figures from small arrays, every axis labelled, summaries of training histories."""

import numpy as np
import pandas as pd
import pytest

from lnlib import losses, metrics, plots, tables


def _history(norm_growth):
    epochs = np.arange(1, 7)
    acc = np.array([0.70, 0.85, 0.90, 0.905, 0.91, 0.91])
    norm = 5 + norm_growth * epochs
    cols = {"epoch": epochs, "train_loss": 1 / epochs, "train_acc": acc, "test_acc": acc, "train_eval_acc": acc,
            "test_msp_mean": acc, "ood_msp_mean": acc - 0.1}
    for split in ("train", "test", "ood"):
        cols.update({f"{split}_norm_mean": norm, f"{split}_norm_p10": norm - 1, f"{split}_norm_p90": norm + 1})
    return pd.DataFrame(cols)


def _labelled(fig):
    for ax in fig.axes:
        if ax.get_visible() and ax.has_data():
            assert ax.get_xlabel() or ax.get_title() or ax.get_ylabel(), ax


def test_norm_growth_figure_and_summary():
    histories = {"Cross-entropy": _history(1.0), "LogitNorm": _history(-0.5)}
    fig = plots.norm_growth(histories, "textures", title="t")
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "Cross-entropy"
    _labelled(fig)
    summary = tables.norm_growth_summary(histories)
    # accuracy within 1 point of the final 91% first at epoch 3 (90%); the norm grows 8 -> 11 under CE
    assert summary.loc["Cross-entropy", "saturation epoch"] == 3
    assert summary.loc["Cross-entropy", "‖f‖ change after saturation (%)"] == pytest.approx(100 * (11 / 8 - 1))
    assert summary.loc["LogitNorm", "‖f‖ change after saturation (%)"] < 0


def test_histogram_grid_shares_bins_across_panels():
    rng = np.random.default_rng(0)
    grid = {row: {col: {"ID test": rng.random(300), row: rng.random(200) * 0.5} for col in ("CE", "LN")}
            for row in ("digits", "textures")}
    fig = plots.histogram_grid(grid, xlabel="max softmax probability", value_range=(0, 1), bins=20)
    axes = np.array(fig.axes).reshape(2, 2)
    edges = {tuple(np.unique(np.round(p.get_xy()[:, 0], 9))) for ax in axes.ravel() for p in ax.patches}
    assert edges == {tuple(np.round(np.linspace(0, 1, 21), 9))}  # every series of every panel: the same 20 bins
    assert axes[1, 0].get_xlabel() == "max softmax probability" and "digits" in axes[0, 0].get_ylabel()
    log = plots.histogram_grid(grid, xlabel="norm", log_x=True, value_range=(0.01, 1))
    assert log.axes[0].get_xscale() == "log"


def test_tau_theory_and_figure():
    taus = np.geomspace(0.005, 1.0, 20)
    theory = losses.tau_theory(taus, 10)
    conf = theory["max confidence"].to_numpy()
    assert (np.diff(conf) <= 0).all() and conf[0] > 0.9999 and conf[-1] < 0.25  # a larger tau caps it lower
    assert (theory["loss lower bound (paper)"] <= theory["exact minimum loss"]).all()
    assert theory.loc[1.0, "max confidence"] == pytest.approx(np.exp(-losses.logit_norm_min_loss(1.0, 10)))
    stats = pd.DataFrame({("mean", "fpr95"): [0.5, 0.4], ("std", "fpr95"): [0.1, np.nan],
                          ("mean", "auroc"): [0.8, 0.9], ("std", "auroc"): [0.0, 0.0]}, index=[0.04, 0.3])
    reference = pd.DataFrame({k: [v] for k, v in {("mean", "fpr95"): 0.6, ("std", "fpr95"): np.nan,
                                                  ("mean", "auroc"): 0.7, ("std", "auroc"): 0.01}.items()})
    fig = plots.tau_ablation(stats, reference, ("fpr95", "auroc"), theory=theory, labels=tables.LABELS)
    assert fig.axes[0].get_xscale() == "log" and "FPR95" in fig.axes[0].get_ylabel()
    _labelled(fig)


def test_reliability_and_bars():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(0, 3, (500, 10)), rng.integers(0, 10, 500)
    fig = plots.reliability_diagrams({"a": metrics.reliability(logits, labels), "b": metrics.reliability(
        logits, labels, temperature=2.0)})
    _labelled(fig)
    records = pd.DataFrame([{"loss": loss, "seed": s, "score": score, "metric": m, "value": rng.random()}
                            for loss in ("ce", "logitnorm") for s in range(2) for score in ("msp", "odin")
                            for m in ("fpr95", "auroc")])
    fig = plots.grouped_bars(tables.mean_std(records, "score", ["metric", "loss"]), labels=tables.LABELS)
    assert fig.axes[0].get_ylabel() == "FPR95 ↓ (%)"


def test_reliability_panels_show_one_seed_before_and_after_its_fitted_temperature(monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    from lnlib import evaluate

    rng = np.random.default_rng(0)
    test = {loss: SimpleNamespace(logits=rng.normal(0, scale, (400, 10)), labels=rng.integers(0, 10, 400))
            for loss, scale in (("ce", 6.0), ("logitnorm", 0.5))}
    monkeypatch.setattr(evaluate, "outputs", lambda run, sets: {s: test[run.config.loss] for s in sets})
    runs = [SimpleNamespace(config=SimpleNamespace(loss=loss, seed=seed), path=Path(f"runs/{loss}{seed}"))
            for loss in ("ce", "logitnorm") for seed in (0, 1)]
    records = pd.DataFrame([{"run": f"{loss}{seed}", "metric": metric, "stage": stage,
                             "value": {"ce": 3.0, "logitnorm": 0.25}[loss] + seed if metric == "temperature" else 0.5}
                            for loss in ("ce", "logitnorm") for seed in (0, 1) for metric in ("ece", "temperature")
                            for stage in ("before", "after") if (metric, stage) != ("temperature", "before")])
    panels = plots.reliability_panels(runs, records)
    names = list(panels)
    assert [n.split("\n")[0] for n in names] == ["CE, T = 1.00", "CE, T = 3.00", "LogitNorm, T = 1.00",
                                                  "LogitNorm, T = 0.25"]  # seed 0 only, its own fitted T
    ce = test["ce"]
    assert names[1] == f"CE, T = 3.00\nECE {100 * metrics.ece(ce.logits, ce.labels, temperature=3.0):.2f}%"
    after = metrics.reliability(ce.logits, ce.labels, temperature=3.0)
    assert all(np.array_equal(panels[names[1]][k], after[k], equal_nan=True) for k in after)
    assert list(plots.reliability_panels(runs, records, seed=1))[1].startswith("CE, T = 4.00\n")
    _labelled(plots.reliability_diagrams(panels))


def test_strips_by_metric_puts_each_arm_on_its_row_with_its_seeds():
    records = pd.DataFrame([{"method": m, "metric": k, "seed": s, "value": v + s}
                            for m, v in (("with", 1.0), ("without", 10.0)) for k in ("norm", "ece") for s in range(3)])
    fig = plots.strips_by_metric(records, {"norm": ("‖f‖", 1, True), "ece": ("ECE (%)", 100, False)},
                                 ["with", "without"], ncols=3, zero_line=True)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 and visible[0].get_xscale() == "log" and visible[1].get_xscale() == "linear"
    assert [t.get_text() for t in visible[0].get_yticklabels()] == ["with", "without"]
    dots = visible[1].collections  # one scatter per arm: its three seeds, scaled by 100
    assert sorted(dots[1].get_offsets()[:, 0].tolist()) == [1000.0, 1100.0, 1200.0]
    _labelled(fig)


def test_a_long_title_is_wrapped_inside_the_figure(tmp_path):
    histories = {"Cross-entropy": _history(1.0), "LogitNorm": _history(-0.5)}
    title = "The book's recipe: small_cnn on fashion_mnist, seed 0, 12 epochs, cosine learning rate, " * 3
    fig = plots.norm_growth(histories, "textures", title=title)
    plots.save(fig, tmp_path / "growth")
    renderer = fig.canvas.get_renderer()
    box = fig._suptitle.get_window_extent(renderer)
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height, (box, fig.bbox)


def test_a_text_cut_off_at_the_edge_is_found_and_such_a_figure_is_not_saved(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    fig.subplots_adjust(left=0.2, bottom=0.2)  # room for the tick labels
    ax.plot([0, 1], [0, 1], label="a legend entry far too long to stay inside a figure this narrow")
    assert plots.text_outside(fig) == []  # no legend yet: everything fits
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside the axes, past the figure's right edge
    cut = plots.text_outside(fig)
    assert cut == ["a legend entry far too long to stay inside a figure this narrow"]
    with pytest.raises(ValueError, match="would show these texts cut off"):
        plots.save(fig, tmp_path / "cut")
    assert not (tmp_path / "cut.png").exists()


def test_the_clipped_noise_figure_fits_its_legends_and_titles(tmp_path):
    rng = np.random.default_rng(0)
    alphas = 2.0 ** np.arange(0, 8.01, 0.5)
    n, a = 20, len(alphas)
    along = {"msp": rng.uniform(0.3, 1, (n, a)), "predicted": rng.integers(0, 3, (n, a)),
             "brightness": np.tile(np.linspace(0.5, 1, a), (n, 1)), "saturated": np.tile(np.linspace(0, 1, a), (n, 1))}
    fig = plots.clipped_noise(along, alphas, rng.uniform(0, 1, (n, 1, 8, 8)), ["T-shirt", "Trouser", "Bag"],
                              marks={"median α* (99.9% before clipping)": 3.2}, title="A title " * 20)
    assert plots.text_outside(fig) == []
    plots.save(fig, tmp_path / "clipped")
    _labelled(fig)


def test_fpr95_per_seed_shows_each_losss_seeds_in_percent_beside_the_pixel_baseline():
    fpr = pd.DataFrame([{"ood_set": s, "loss": loss, "seed": seed, "value": 0.1 * (seed + 1) + (0.5 if s == "x" else 0)}
                        for s in ("digits", "x") for loss in ("ce", "logitnorm") for seed in range(3)])
    fig = plots.fpr95_per_seed(fpr, ["digits", "x"], pd.Series({"digits": 0.25}), seeds=3)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "MSP FPR95 (%), lower is better"
    assert fig.get_suptitle() == "FPR95 per seed (3 seeds per loss)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["digits", "x"]
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], [10, 20, 30])  # CE on digits, percent
    np.testing.assert_allclose(ax.collections[-1].get_offsets()[0], [25, 0])  # the baseline's diamond, on digits
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["CE", "LogitNorm", "pixel baseline"]
