import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from lnlib import metrics, scores


def test_perfect_separation():
    m = metrics.ood_metrics([3, 4, 5, 6], [0, 1, 2])
    assert m == {"fpr95": 0.0, "auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0}


def test_reversed_scores():
    m = metrics.ood_metrics([0, 1, 2], [3, 4, 5, 6])
    assert m["fpr95"] == 1.0 and m["auroc"] == 0.0


def test_all_tied_scores():
    m = metrics.ood_metrics(np.ones(50), np.ones(30))
    assert m["fpr95"] == 1.0 and m["auroc"] == 0.5
    assert m["aupr_in"] == pytest.approx(50 / 80) and m["aupr_out"] == pytest.approx(30 / 80)


def test_fpr95_by_hand():
    # 20 ID scores 1..20; keeping >= 95% of ID means threshold 2 (19 of 20 kept).
    id_scores = np.arange(1, 21)
    ood = np.array([0.5, 1.5, 2.0, 2.5, 30])  # accepted at t=2: 2.0, 2.5, 30 -> 3/5
    assert metrics.fpr_at_tpr(id_scores, ood) == pytest.approx(3 / 5)
    # OOD-positive convention: catch >= 95% of 20 OOD (score <= t) and count the ID rejected.
    assert metrics.fpr_at_tpr(np.arange(1, 21), -np.arange(1, 21), positive="ood") == 0.0


def test_convention_flag_flips_the_roles():
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(1, 1, 500), rng.normal(0, 1, 300)
    id_pos = metrics.fpr_at_tpr(id_s, ood_s, positive="id")
    ood_pos = metrics.fpr_at_tpr(id_s, ood_s, positive="ood")
    assert id_pos != pytest.approx(ood_pos)
    # OOD-positive on (id, ood) is ID-positive on the negated, swapped problem
    assert ood_pos == metrics.fpr_at_tpr(-ood_s, -id_s, positive="id")
    with pytest.raises(ValueError, match="positive='x'.*'id', 'ood'"):
        metrics.fpr_at_tpr(id_s, ood_s, positive="x")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many ties
def test_agrees_with_scikit_learn(seed, decimals):
    rng = np.random.default_rng(seed)
    id_s, ood_s = rng.normal(1, 1, 700), rng.normal(0, 1.5, 400)
    if decimals is not None:
        id_s, ood_s = id_s.round(decimals), ood_s.round(decimals)
    y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    s = np.r_[id_s, ood_s]
    assert metrics.auroc(id_s, ood_s) == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert metrics.aupr_in(id_s, ood_s) == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert metrics.aupr_out(id_s, ood_s) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-6)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert metrics.fpr_at_tpr(id_s, ood_s) == pytest.approx(fpr[tpr >= 0.95].min(), abs=1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="ood_scores is empty"):
        metrics.auroc([1, 2], [])
    with pytest.raises(ValueError, match="id_scores contains NaN"):
        metrics.auroc([np.nan], [1])


def test_log_msp_ranks_like_msp_without_float_ties():
    logits = np.array([[40.0, 0.0], [45.0, 0.0], [2.0, 0.0]])
    assert scores.msp(logits)[0] == scores.msp(logits)[1] == 1.0  # float64 saturates
    lm = scores.log_msp(logits)
    assert lm[1] > lm[0] > lm[2]  # the log keeps them apart
    assert np.allclose(np.exp(lm), scores.msp(logits))


def test_accuracy():
    assert metrics.accuracy(np.array([[1, 0], [0, 1], [1, 0]]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
