"""Hein et al.'s measurements on a trained run: cached per run, the same numbers the second time."""

import numpy as np
import pytest
import torch
from conftest import tiny_cfg

from lnlib import TrainConfig, faraway, hein, tidy
from lnlib.config import METHODS


def test_quick_mode_caps_the_counts_in_one_place():
    assert hein.sizes(False, n_rays=500, n_noise=1000) == {"n_rays": 500, "n_noise": 1000}
    assert hein.sizes(True, n_rays=500, n_noise=50, attack_steps=40) == {"n_rays": 100, "n_noise": 50,
                                                                         "attack_steps": 10}
    assert hein.sizes(True, toy_resolution=300) == {"toy_resolution": 100}  # the toy's maps, capped here too


def test_method_comparison_over_seeds_pairs_every_method_by_seed():
    cfgs = TrainConfig().method_comparison(["ce", "acet"], seeds=3)
    assert [(c.method, c.seed) for c in cfgs] == [(m, s) for m in ("ce", "acet") for s in range(3)]
    assert [c.outlier for c in cfgs] == [None] * 3 + [METHODS["acet"]["outlier"]] * 3
    with pytest.raises(ValueError, match="seeds=0 is not valid"):
        TrainConfig().method_comparison(["ce"], seeds=0)


@pytest.mark.usefixtures("fashion_mnist_available")
def test_table2_and_noise_of_a_run_are_cached_and_read_back_unchanged(runs_root):
    run = __import__("lnlib").load_or_train(tiny_cfg(train_subset=512, epochs=1, warmup=0, loss="ce"))
    u = hein.ray_inputs(run.config.dataset, 12)[hein.UNIFORM_NOISE]
    first = hein.table2_rays(run, hein.UNIFORM_NOISE, u)
    (cached,) = (run.path / "rays").glob("table2-uniform_noise-*.npz")
    again = hein.table2_rays(run, hein.UNIFORM_NOISE, u)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    direct = faraway.table2_rays(hein.run_pixel_model(run), u)  # what the cache holds is what the model gives
    assert np.allclose(direct["alpha_star"], first["alpha_star"]) and np.array_equal(direct["clipped_class"],
                                                                                      first["clipped_class"])
    hein.table2_rays(run, hein.UNIFORM_NOISE, torch.rand(12, 1, 28, 28))  # other directions: another file
    assert len(list((run.path / "rays").glob("table2-*.npz"))) == 2 and cached.exists()
    assert hein.check_alpha_star(run, u).all()  # every cached α* in the step where a brute-force scan gets there
    records = tidy.table2_records([run], {hein.UNIFORM_NOISE: u}).set_index("metric")["value"]
    assert records["median_alpha"] == pytest.approx(np.median(first["alpha_star"]))
    assert records["log10_median_alpha"] == pytest.approx(np.log10(records["median_alpha"]))
    assert records["median_alpha"] <= records["median_alpha_grid"]  # the grid can only overstate α*
    logits = hein.noise_logits(run, 16, eps=0.3, steps=2)
    assert logits["noise"].shape == logits["adversarial"].shape == (16, 10)
    assert (run.path / "noise" / "n16-eps0.3-steps2-seed0.npz").exists()
    assert np.array_equal(hein.noise_logits(run, 16, eps=0.3, steps=2)["adversarial"], logits["adversarial"])
    noise = tidy.noise_records([run], 16, eps=0.3, steps=2).set_index(["set", "metric"])
    assert noise.loc[("adv. noise", "mmc"), "value"] >= noise.loc[("noise", "mmc"), "value"]  # the attack raises it
    assert (noise["n_id"] == 1000).all()
