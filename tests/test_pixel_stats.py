"""The pixel baseline: known answers for each statistic and score form, and the benchmark's separable sets."""

import numpy as np
import pandas as pd
import pytest
import torch

from lnlib import benchmark, pixel_stats, tidy
from lnlib.config import TrainConfig, preset
from lnlib.data import NEAR_OOD, NOISE_OOD_SETS, OOD_SETS


def _images(*pixels):
    """uint8 (N, 1, 2, 2) images from rows of four pixel values."""
    return torch.tensor(pixels, dtype=torch.uint8).view(-1, 1, 2, 2)


def test_statistics_on_hand_computed_images():
    x = _images([0, 0, 255, 255], [0, 51, 102, 255])
    # near-black is below 0.1 (25.5 of 255): 2 of 4, then 1 of 4 (51/255 = 0.2 is not)
    np.testing.assert_allclose(pixel_stats.dark_share(x), [0.5, 0.25])
    np.testing.assert_allclose(pixel_stats.mean_intensity(x), [0.5, (0 + 51 + 102 + 255) / (4 * 255)])
    # image 0 = [[0, 0], [1, 1]]: horizontal diffs 0, 0; vertical 1, 1 -> (0 + 1) / 2
    # image 1 = [[0, .2], [.4, 1]]: horizontal .2, .6 -> .4; vertical .4, .8 -> .6 -> .5
    np.testing.assert_allclose(pixel_stats.roughness(x), [0.5, 0.5])


def test_typicality_is_the_mid_rank_distance_from_the_median():
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    # F(2) = (1 + 2) / 8 = 3/8 (one below, one tie counted half); F(0) = 0; F(10) = 1; F(2.5) = 1/2
    np.testing.assert_allclose(pixel_stats.typicality(reference, [2.0, 0.0, 10.0, 2.5]),
                               [-1 / 8, -0.5, -0.5, 0.0])


def test_forms_orient_the_statistic():
    reference = _images(*[[v] * 4 for v in range(100, 200, 10)])
    x = _images([0] * 4, [150] * 4, [255] * 4)
    high = pixel_stats.scores("mean_intensity", "high", reference, x)
    low = pixel_stats.scores("mean_intensity", "low", reference, x)
    typical = pixel_stats.scores("mean_intensity", "typical", reference, x)
    assert high[0] < high[1] < high[2] and np.allclose(low, -high)
    assert typical[1] > typical[0] and typical[1] > typical[2]  # both tails score low


def test_bad_names_and_inputs_are_refused():
    x = _images([0] * 4)
    with pytest.raises(ValueError, match="'sharpness' is not valid; choose one of"):
        pixel_stats.scores("sharpness", "high", x, x)
    with pytest.raises(ValueError, match="form='both' is not valid"):
        pixel_stats.scores("roughness", "both", x, x)
    with pytest.raises(ValueError, match="uint8 images"):
        pixel_stats.dark_share(x.float())


def test_best_picks_the_lowest_fpr95_per_set_and_keeps_its_other_metrics():
    rows = [("a", "typical", "s1", "fpr95", 0.3), ("a", "typical", "s1", "auroc", 0.8),
            ("b", "high", "s1", "fpr95", 0.1), ("b", "high", "s1", "auroc", 0.7),
            ("a", "typical", "s2", "fpr95", 0.5), ("a", "typical", "s2", "auroc", 0.6),
            ("b", "high", "s2", "fpr95", 0.9), ("b", "high", "s2", "auroc", 0.9)]
    records = pd.DataFrame(rows, columns=["statistic", "form", "ood_set", "metric", "value"])
    best = pixel_stats.best(records).set_index(["ood_set", "metric"])["value"]
    assert best[("s1", "fpr95")] == 0.1 and best[("s1", "auroc")] == 0.7  # b's auroc, not the best auroc
    assert best[("s2", "fpr95")] == 0.5 and set(pixel_stats.best(records)["score"]) == {"b (high)", "a (typical)"}


def test_every_offline_set_has_its_description_and_kind():
    assert set(benchmark.SETS) == {NEAR_OOD, *OOD_SETS} and benchmark.sets_of("near") == (NEAR_OOD,)
    assert set(benchmark.sets_of("synthetic")) == set(NOISE_OOD_SETS)
    assert list(benchmark.describe().index) == [NEAR_OOD, *OOD_SETS]
    assert benchmark.describe().notna().all().all()
    with pytest.raises(ValueError, match="kind='downloaded' is not valid; choose one of"):
        benchmark.sets_of("downloaded")


def test_uniform_noise_is_separated_by_its_dark_share(fashion_mnist_available):
    """A known separation on the real sets: uniform noise has almost no near-black pixel (a share of 0.1 per
    pixel), Fashion-MNIST images mostly do, so the dark share separates them completely."""
    records = tidy.pixel_records(TrainConfig(quick=True))
    best = pixel_stats.best(records).query("metric == 'fpr95'").set_index("ood_set")
    assert best.loc["uniform_noise", "value"] == 0.0 and best.loc["uniform_noise", "statistic"] == "dark_share"
    # names: only those sets, with the same numbers
    alone = tidy.pixel_records(TrainConfig(quick=True), names=["uniform_noise"])
    assert set(alone["ood_set"]) == {"uniform_noise"}
    pd.testing.assert_frame_equal(alone, records.query("ood_set == 'uniform_noise'").reset_index(drop=True))


def test_the_benchmark_kinds_match_the_pixel_baseline(fashion_mnist_available):
    """benchmark.SETS fixes which sets are 'separable'; this measures it on the full evaluation sets: a real-image
    set is 'separable' exactly when the pixel baseline reaches FPR95 <= SEPARABLE_AT; with all ten classes as ID
    and with the open-set study's eight (then the held-out classes are the near set, which must not be separable)."""
    for cfg in (TrainConfig(), preset("open_set")):
        best = pixel_stats.best(tidy.pixel_records(cfg)).query("metric == 'fpr95'").set_index("ood_set")["value"]
        near = benchmark.sets_of("near") if cfg.held_out else ()
        for name in [*near, *benchmark.sets_of("far"), *benchmark.sets_of("separable")]:
            separable = best[name] <= benchmark.SEPARABLE_AT
            assert separable == (benchmark.SETS[name].kind == "separable"), (cfg.held_out, name, best[name])



def test_baseline_is_one_row_per_set_with_the_metrics_of_its_best_score():
    rows = [("a", "typical", "s2", "fpr95", 0.5), ("a", "typical", "s2", "auroc", 0.6),
            ("b", "high", "s2", "fpr95", 0.9), ("b", "high", "s2", "auroc", 0.9),
            ("a", "typical", "s1", "fpr95", 0.3), ("a", "typical", "s1", "auroc", 0.8),
            ("b", "high", "s1", "fpr95", 0.1), ("b", "high", "s1", "auroc", 0.7)]
    table = pixel_stats.baseline(pd.DataFrame(rows, columns=["statistic", "form", "ood_set", "metric", "value"]))
    assert list(table.index) == ["s1", "s2"] and sorted(table.columns) == ["auroc", "fpr95"]
    assert table.loc["s1"].to_dict() == {"auroc": 0.7, "fpr95": 0.1}  # b's AUROC: the score with the best FPR95
    assert table.loc["s2"].to_dict() == {"auroc": 0.6, "fpr95": 0.5}
