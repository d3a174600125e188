"""What MSP ranks by (lnlib.ranking): known answers for the rank correlation and the four measures."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from lnlib import ranking, scores


def test_rank_corr_known_values():
    assert ranking.rank_corr([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert ranking.rank_corr([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # by hand: one swapped pair, rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert ranking.rank_corr([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 200), rng.normal(size=200)  # with ties: average ranks, as scipy
    assert ranking.rank_corr(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert np.isnan(ranking.rank_corr([1, 1, 1], [1, 2, 3]))


def test_rank_corr_names_bad_shapes():
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(2,\)"):
        ranking.rank_corr([1, 2, 3], [1, 2])


def _scaled(direction, norms):
    """Logits (N, K): one unit direction, scaled to each norm."""
    u = np.asarray(direction, dtype=np.float64)
    return np.outer(norms, u / np.linalg.norm(u))


def test_one_direction_msp_ranks_by_the_norm_exactly():
    """At a fixed direction with a unique largest entry, max softmax rises with the scale: rho = 1, and OOD images
    with smaller norms are told apart perfectly by both MSP and the norm."""
    id_logits = _scaled([3.0, 1.0, 0.0], np.linspace(4.0, 6.0, 50))
    ood_logits = _scaled([3.0, 1.0, 0.0], np.linspace(1.0, 2.0, 30))
    m = ranking.norm_measures(id_logits, ood_logits)
    assert m["rank_corr"] == pytest.approx(1.0)
    assert m["norm_ratio"] == pytest.approx(1.5 / 5.0)  # the medians
    assert m["fpr95_msp"] == 0.0 and m["fpr95_norm"] == 0.0


def test_same_norms_other_directions_msp_separates_and_the_norm_cannot():
    """ID and OOD images over the same range of norms: the norm is no better than chance at TPR 95% (FPR95 near
    0.95), while MSP separates a peaked direction from a flat one."""
    norms = np.linspace(4.9, 5.1, 40)
    m = ranking.norm_measures(_scaled([3.0, 0.0, 0.0], norms), _scaled([1.0, 0.9, 0.8], norms + 1e-4))
    assert m["fpr95_msp"] == 0.0
    assert m["norm_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert m["fpr95_norm"] >= 0.9


def test_norm_measures_agree_with_the_scores_module():
    rng = np.random.default_rng(1)
    id_logits, ood_logits = rng.normal(size=(300, 10)) * 4, rng.normal(size=(200, 10))
    m = ranking.norm_measures(id_logits, ood_logits)
    both = np.concatenate([id_logits, ood_logits])
    assert m["rank_corr"] == pytest.approx(spearmanr(scores.msp(both), scores.logit_norm(both)).statistic)
    assert m["norm_ratio"] == pytest.approx(np.median(np.linalg.norm(ood_logits, axis=1))
                                            / np.median(np.linalg.norm(id_logits, axis=1)))
    with pytest.raises(ValueError, match="positive"):
        ranking.norm_measures(id_logits, ood_logits, positive="in")


@pytest.mark.usefixtures("fashion_mnist_available")
def test_scale_records_gather_what_the_raw_scale_decides(runs_root):
    from conftest import tiny_cfg

    from lnlib import benchmark, tidy
    from lnlib.evaluate import ID_TEST, outputs
    from lnlib.train import load_or_train

    run = load_or_train(tiny_cfg(train_subset=256, epochs=1, warmup=0, weight_decay=0.0))
    records = ranking.scale_records([run]).set_index("metric")
    assert list(records.index) == list(ranking.SCALE_METRICS) and (records["weight_decay"] == 0.0).all()
    value = records["value"]
    norms = scores.logit_norm(outputs(run, [ID_TEST])[ID_TEST].logits)
    assert value["id_norm"] == pytest.approx(np.median(norms))
    assert value["accuracy"] == run.metrics["test_acc"]
    calibration = tidy.calibration_records([run]).set_index(["metric", "stage"])["value"]
    assert value["ece"] == calibration[("ece", "before")] and value["ece_scaled"] == calibration[("ece", "after")]
    fpr = tidy.ood_records([run]).query("metric == 'fpr95'").set_index("ood_set")["value"]
    far = [name for name in fpr.index if benchmark.kind_of(name) == "far"]
    assert value["fpr95_far"] == pytest.approx(fpr[far].mean())
