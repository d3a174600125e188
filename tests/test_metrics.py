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


def test_random_scores_are_at_chance():
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.random(20000), rng.random(20000)  # same distribution: no separation
    m = metrics.ood_metrics(id_s, ood_s)
    assert m["auroc"] == pytest.approx(0.5, abs=0.01)
    assert m["fpr95"] == pytest.approx(0.95, abs=0.01)  # accepting 95% of ID accepts 95% of OOD
    assert m["aupr_in"] == pytest.approx(0.5, abs=0.01) and m["aupr_out"] == pytest.approx(0.5, abs=0.01)


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


# ------------------------------------------------------------------------------------ calibration
def _logits_with_confidence(conf, k=2):
    """Two-class logits whose max softmax probability is ``conf``, class 0 predicted."""
    conf = np.asarray(conf, dtype=np.float64)
    z = np.zeros((len(conf), k))
    z[:, 0] = np.log(conf / (1 - conf))
    return z


def _ece_reference(conf, correct, n_bins=15):
    """Guo et al.'s loop (the LogitNorm code's _ECELoss), written out in plain Python."""
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += abs(correct[in_bin].mean() - conf[in_bin].mean()) * in_bin.mean()
    return total


def test_ece_known_answers():
    labels = np.r_[np.zeros(75, int), np.ones(25, int)]  # class 0 predicted everywhere: 75% correct
    assert metrics.ece(_logits_with_confidence(np.full(100, 0.75)), labels) == pytest.approx(0, abs=1e-12)
    assert metrics.ece(_logits_with_confidence(np.full(100, 0.95)), labels) == pytest.approx(0.20)
    assert metrics.ece(_logits_with_confidence(np.full(100, 0.6)), np.zeros(100, int)) == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(3))
def test_ece_and_reliability_agree_with_the_reference_loop(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (2000, 10))
    labels = rng.integers(0, 10, 2000)
    conf = np.exp(logits).max(1) / np.exp(logits).sum(1)
    correct = logits.argmax(1) == labels
    assert metrics.ece(logits, labels) == pytest.approx(_ece_reference(conf, correct), abs=1e-12)
    r = metrics.reliability(logits, labels)
    assert r["count"].sum() == 2000 and len(r["edges"]) == 16
    filled = r["count"] > 0
    assert np.all(np.isnan(r["accuracy"][~filled]))
    mean_conf, lower, upper = r["confidence"][filled], r["edges"][:-1][filled], r["edges"][1:][filled]
    assert np.all((mean_conf > lower) & (mean_conf <= upper))
    with pytest.raises(ValueError, match="n_bins=0"):
        metrics.reliability(logits, labels, n_bins=0)


def test_mmc_and_nll():
    assert metrics.mmc(np.zeros((5, 4))) == pytest.approx(0.25)
    assert metrics.mmc(_logits_with_confidence([0.9, 0.7])) == pytest.approx(0.8)
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    z, y = rng.normal(0, 2, (300, 5)), rng.integers(0, 5, 300)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert metrics.nll(z, y) == pytest.approx(log_loss(y, p, labels=range(5)), abs=1e-9)


def test_official_protocol_scores_a_fifth_of_the_id_count_and_averages_ten_draws():
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(1, 1, 1000), rng.normal(0, 1, 5000)
    full, n_full = metrics.ood_metrics_protocol(id_s, ood_s, protocol="all")
    assert n_full == 5000 and full == metrics.ood_metrics(id_s, ood_s)
    official, n = metrics.ood_metrics_protocol(id_s, ood_s, protocol="official", seed=1)
    assert n == 200  # len(ID) // 5
    draws = []  # the same draws by hand
    g = np.random.default_rng(1)
    for _ in range(metrics.OFFICIAL_DRAWS):
        draws.append(metrics.ood_metrics(id_s, ood_s[g.choice(5000, 200, replace=False)])["auroc"])
    assert official["auroc"] == pytest.approx(np.mean(draws))
    assert official["auroc"] != full["auroc"] and abs(official["auroc"] - full["auroc"]) < 0.03  # same population
    # fewer OOD images than a fifth of ID: all of them, every draw
    few, n_few = metrics.ood_metrics_protocol(id_s, ood_s[:50], protocol="official")
    assert n_few == 50 and few["auroc"] == pytest.approx(metrics.ood_metrics(id_s, ood_s[:50])["auroc"])
    with pytest.raises(ValueError, match="protocol='paper'.*'all', 'official'"):
        metrics.ood_metrics_protocol(id_s, ood_s, protocol="paper")
