"""The verdict rule: paired differences by seed, the exact sign-flip test, the bootstrap interval, Holm.

Known answers: hand-enumerated sign flips, SciPy's permutation test, a hand-computed Holm example.
"""

import itertools
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lnlib import stats


# ------------------------------------------------------------------------------------------ sign-flip test
def test_sign_flip_hand_cases():
    """Three equal signs: only +++ and −−− reach |mean| = 1, so p = 2/8. Five: 2/32.

    d = [1, 2, 3, −1]: the signed sums are 7 − 2F, F the sum of |d| over the flipped entries
    (|d| = 1, 2, 3, 1; observed sum 5, so |7 − 2F| ≥ 5 ⇔ F ≤ 1 or F ≥ 6). F = 0: {} ; F = 1: {1}, {1'};
    F = 6: {2, 3, 1'}, {1, 2, 3}; F = 7: everything. 6 of the 16 sign vectors: p = 0.375.
    """
    assert stats.sign_flip_test([1, 1, 1]) == 0.25
    assert stats.sign_flip_test([1, 1, 1, 1, 1]) == 0.0625
    assert stats.sign_flip_test([1, 2, 3, -1]) == 0.375
    assert stats.sign_flip_test([-1, -2, -3, 1]) == 0.375  # two-sided
    assert stats.sign_flip_test(np.ones(10)) == 2 / 1024


def test_sign_flip_counts_float_ties():
    """0.1 + 0.2 − 0.3 is not 0 in floating point; flipping the first three of [0.1, 0.2, −0.3, 1] gives the
    observed |sum| 1 again. The signed sums of the first three are 0 (twice), ±0.2, ±0.4, ±0.6; with ±1 that is
    |sum| ≥ 1 for 4 + 2 + 2 + 1 + 1 = 10 of 16 vectors."""
    assert stats.sign_flip_test([0.1, 0.2, -0.3, 1.0]) == 10 / 16
    assert stats.sign_flip_test([0.3, -0.1, -0.2]) == 1.0  # the mean is zero: every vector is as extreme


@pytest.mark.parametrize("d", [[0.7, -0.6, -0.8, 0.7, -0.9], [0.1, 0.2, -0.3, 1.0], [0.3, 0.6, 0.9, 0.1, -0.2]])
def test_sign_flip_equals_exact_rational_enumeration(d):
    """The same count in exact arithmetic (``Fraction``): [0.7, −0.6, −0.8, 0.7, −0.9] is 20/32 = 0.625, but a
    float comparison without the tie tolerance counts 18/32, because 0.7 − 0.6 − 0.8 + 0.7 − 0.9 and its tied
    sign vectors round differently."""
    exact = [Fraction(str(x)) for x in d]
    observed = abs(sum(exact))
    count = sum(abs(sum(e * x for e, x in zip(signs, exact, strict=True))) >= observed
                for signs in itertools.product([1, -1], repeat=len(d)))
    assert stats.sign_flip_test(d) == count / 2 ** len(d)


@pytest.mark.parametrize("d", [[0.5, -0.2, 0.3], [1, 2, 3, -1], [0.02, 0.05, -0.01, 0.04, 0.03],
                               [3.1, -0.4, 2.2, 0.9, -1.7, 0.8], [0, 0, 1, 2], [-0.3, -0.1, -0.25, -0.2, 0.05, -0.4,
                                                                                -0.15]])
def test_sign_flip_matches_scipy(d):
    d = np.asarray(d, dtype=float)
    null = scipy_stats.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                                        n_resamples=np.inf)
    # SciPy's 'samples' permutations of one sample are sign flips: its null distribution is all 2ⁿ signed means
    by_hand = sorted(np.mean(np.array(s) * d) for s in itertools.product([1, -1], repeat=d.size))
    np.testing.assert_allclose(np.sort(null.null_distribution), by_hand)
    assert stats.sign_flip_test(d) == pytest.approx(null.pvalue, abs=1e-12)


def test_sign_flip_edges():
    assert np.isnan(stats.sign_flip_test([]))
    assert np.isnan(stats.sign_flip_test([1.0, np.nan, 2.0]))
    assert stats.sign_flip_test(np.zeros(6)) == 1.0
    assert stats.sign_flip_test([2.5]) == 1.0  # one seed: both signs are as extreme
    assert [stats.sign_flip_floor(n) for n in (3, 5, 10)] == [0.25, 0.0625, 2 / 1024]


def test_sign_flip_monte_carlo_beyond_twenty():
    """d = [1, 1, 0, …, 0] (n = 22): the zeros do not matter, p is P(both ones share a sign) = 1/2 exactly."""
    d = [1.0, 1.0] + [0.0] * 20
    p = stats.sign_flip_test(d)
    assert p == stats.sign_flip_test(d)  # seeded
    assert p != stats.sign_flip_test(d, seed=1)
    assert abs(p - 0.5) < 4 * np.sqrt(0.25 / stats.MONTE_CARLO_DRAWS)
    assert stats.sign_flip_test([1.0, 1.0, 1.0] + [0.0] * 20) == pytest.approx(0.25, abs=0.01)
    assert stats.sign_flip_test(np.ones(30)) == 1 / (1 + stats.MONTE_CARLO_DRAWS)  # the Monte Carlo floor


# ---------------------------------------------------------------------------------------------------- Holm
def test_holm_hand_example():
    """Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → 0.06 (monotone)."""
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.6, 0.01]), [1.0, 1.0, 0.03])  # capped at 1
    np.testing.assert_allclose(stats.holm([0.02, 0.02]), [0.04, 0.04])


def test_holm_nan_and_family_size():
    np.testing.assert_allclose(stats.holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04])  # m = 2, not 3
    np.testing.assert_allclose(stats.holm([0.01, 0.04], m=4), [0.04, 0.12])
    assert stats.holm([]).shape == (0,)
    with pytest.raises(ValueError, match="family size"):
        stats.holm([0.01, 0.02, 0.03], m=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([0.01, 1.2])


def test_holm_on_part_of_a_family_is_conservative():
    """Holm over some p-values with m = the family's size is never below Holm over the whole family."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        family = rng.uniform(0, 0.2, size=12) ** rng.uniform(1, 3)
        part = rng.choice(12, size=rng.integers(1, 12), replace=False)
        assert (stats.holm(family[part], m=12) >= stats.holm(family)[part] - 1e-15).all()


# ----------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_matches_a_direct_implementation():
    d = np.array([0.3, -0.1, 0.4, 0.2, 0.25, 0.05, 0.6])
    rng = np.random.default_rng(7)
    means = np.array([rng.choice(d, size=d.size, replace=True).mean() for _ in range(2000)])
    expected = np.quantile(means, [0.05, 0.95])  # a 90% interval
    low, high = stats.bootstrap_ci(d, level=0.9, draws=2000, seed=7)
    # same generator, same draws: rng.choice(d, n) draws the indices rng.integers(0, n, n) would
    assert (low, high) == pytest.approx(tuple(expected), abs=1e-12)
    ref = scipy_stats.bootstrap((d,), np.mean, method="percentile", confidence_level=0.9, n_resamples=20_000,
                                rng=np.random.default_rng(1)).confidence_interval
    assert (low, high) == pytest.approx((ref.low, ref.high), abs=0.02)


def test_bootstrap_properties():
    d = np.array([0.3, -0.1, 0.4, 0.2, 0.25])
    low, high = stats.bootstrap_ci(d)
    assert (low, high) == stats.bootstrap_ci(d)  # deterministic
    assert (low, high) != stats.bootstrap_ci(d, seed=1)
    assert low < d.mean() < high
    assert stats.bootstrap_ci([0.1] * 3) == (0.1, 0.1)  # (0.1 + 0.1 + 0.1)/3 alone would be 0.10000000000000002
    assert stats.bootstrap_ci([1.0, 2.0, 4.0]) == (1.0, 4.0)  # n = 3: the 95% interval is the range
    assert all(np.isnan(stats.bootstrap_ci([1.0])))
    assert all(np.isnan(stats.bootstrap_ci([1.0, np.nan, 2.0])))
    x = np.random.default_rng(0).normal(size=160)
    widths = [np.subtract(*stats.bootstrap_ci(x[:n])[::-1]) for n in (10, 40, 160)]
    assert widths[0] > widths[1] > widths[2] > 0


# ----------------------------------------------------------------------------------------- pairing by seed
def _records(effect=-0.1, seeds=10, sets=("textures", "digits"), noise=0.01):
    """FPR95 of ce and logitnorm per seed and set; logitnorm = ce + effect + small noise (same seed, same run)."""
    rng = np.random.default_rng(0)
    rows = []
    for ood_set in sets:
        for seed in range(seeds):
            ce = 0.5 + 0.1 * rng.normal()  # large between-seed spread, shared by the pair
            rows.append({"loss": "ce", "seed": seed, "ood_set": ood_set, "metric": "fpr95", "value": ce})
            rows.append({"loss": "logitnorm", "seed": seed, "ood_set": ood_set, "metric": "fpr95",
                         "value": ce + effect + noise * rng.normal()})
    return pd.DataFrame(rows)


def test_paired_differences_pair_by_seed_whatever_the_row_order():
    records = pd.DataFrame({"loss": ["ce", "logitnorm"] * 3 + ["acet"], "seed": [0, 0, 1, 1, 2, 2, 0],
                            "metric": "fpr95", "value": [0.5, 0.3, 0.7, 0.6, 0.4, 0.45, 0.0]})
    shuffled = records.sample(frac=1, random_state=3)
    pairs = stats.paired_differences(shuffled, "metric")
    assert list(pairs.columns) == ["metric", "seed", "a", "b", "difference"]
    assert pairs["seed"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(pairs["difference"], [-0.2, -0.1, 0.05])  # acet ignored
    np.testing.assert_allclose(stats.paired_differences(shuffled, [])["difference"], [-0.2, -0.1, 0.05])
    flipped = stats.paired_differences(shuffled, "metric", a="ce", b="logitnorm")
    np.testing.assert_allclose(flipped["difference"], [0.2, 0.1, -0.05])


def test_paired_differences_refuse_unpaired_and_duplicated_seeds():
    records = _records(seeds=3)
    missing = records.drop(records.index[(records.loss == "ce") & (records.seed == 2)
                                         & (records.ood_set == "digits")])
    with pytest.raises(ValueError, match=r"ood_set='digits'.*seed \[2\] for loss='logitnorm' but not for loss='ce'"):
        stats.paired_differences(missing, ["ood_set", "metric"])
    twice = pd.concat([records, records.iloc[[0]]])
    with pytest.raises(ValueError, match=r"ood_set='textures'.*seed \[0\] more than once for loss='ce'"):
        stats.paired_differences(twice, ["ood_set", "metric"])
    with pytest.raises(ValueError, match="lack the column"):
        stats.paired_differences(records, ["score"])


# ------------------------------------------------------------------------------------------------ compare
def test_compare_clear_effect_over_ten_seeds():
    table = stats.compare(_records(sets=("textures",)), ["ood_set", "metric"])
    row = table.iloc[0]
    assert row["n"] == 10 and row["m"] == 1
    assert row["p"] == 2 / 1024 and row["p_holm"] == 2 / 1024  # every difference negative: the floor
    assert row["difference"] == pytest.approx(row["mean_a"] - row["mean_b"])
    assert row["ci_low"] < row["difference"] < row["ci_high"] < 0
    assert row["direction"] == "lower"
    words = stats.verdict_words(row, lower="LogitNorm lowers FPR95", higher="LogitNorm raises FPR95")
    assert words.startswith("LogitNorm lowers FPR95: -10.")
    assert "over 10 paired seeds" in words and "Holm-corrected over 1 comparisons" in words
    higher = stats.compare(_records(effect=0.1, sets=("textures",)), "ood_set").iloc[0]
    assert higher["direction"] == "higher" and stats.verdict_words(higher).startswith("higher: +10.")


def test_compare_three_seeds_cannot_decide():
    row = stats.compare(_records(seeds=3, sets=("textures",)), ["ood_set", "metric"]).iloc[0]
    assert row["p"] == 0.25 and row["direction"] == "none" and row["detectable"] == np.inf
    words = stats.verdict_words(row)
    assert words.startswith("no verdict possible: 3 paired seeds cannot reach the corrected level")
    assert "2/2^3 = 0.25 > 0.05/1 = 0.05" in words


def test_compare_holm_over_the_family():
    records = _records()
    table = stats.compare(records, ["ood_set", "metric"], family=12)
    assert table["ood_set"].tolist() == ["textures", "digits"]
    assert (table["m"] == 12).all()
    np.testing.assert_allclose(table["p_holm"], 12 * 2 / 1024)  # 0.023: still a verdict
    assert (table["direction"] == "lower").all()
    table = stats.compare(records, ["ood_set", "metric"], family=30)
    # equal p: 30·p for the first, max(30·p, 29·p) for the second (step-down is monotone)
    np.testing.assert_allclose(table["p_holm"], [30 * 2 / 1024, 30 * 2 / 1024])
    assert (table["direction"] == "none").all()
    # ten seeds' floor 2/1024 ≈ 0.00195 is above 0.05/30 ≈ 0.00167: no data could decide
    assert (table["detectable"] == np.inf).all()
    assert "2/2^10 = 0.00195 > 0.05/30 = 0.00167" in stats.verdict_words(table.iloc[0])
    with pytest.raises(ValueError, match="family size"):
        stats.compare(records, ["ood_set", "metric"], family=1)


def test_compare_no_detectable_difference():
    records = _records(effect=0.0, noise=0.02, sets=("textures",))
    row = stats.compare(records, "ood_set").iloc[0]
    assert row["p"] > 0.05 and row["direction"] == "none"
    d = stats.paired_differences(records, "ood_set")["difference"]
    expected = scipy_stats.t.ppf(0.975, 9) * d.std(ddof=1) / np.sqrt(10)
    assert row["detectable"] == pytest.approx(expected)
    assert stats.detectable_difference(d.std(ddof=1), 10, 0.05) == pytest.approx(expected)
    words = stats.verdict_words(row)
    assert words.startswith("no detectable difference")
    assert words.endswith(f"a difference smaller than about ±{100 * expected:.1f} points could not be detected "
                          "with 10 seeds")


def test_compare_each_pairs_every_method_with_the_baseline_and_corrects_over_all_of_them():
    seeds = np.arange(10)
    records = pd.DataFrame([{"method": m, "seed": s, "metric": q, "value": base + s / 100}
                            for m, base in (("ce", 0.5), ("ceda", 0.5), ("acet", 0.9)) for s in seeds
                            for q in ("auroc", "clipped")])
    found = stats.compare_each(records, "metric", against="ce")
    assert list(zip(found["method"], found["metric"], strict=True)) == [("ceda", "auroc"), ("ceda", "clipped"),
                                                           ("acet", "auroc"), ("acet", "clipped")]
    assert (found["m"] == 4).all() and found["difference"].round(9).tolist() == [0.0, 0.0, 0.4, 0.4]
    assert found["direction"].tolist() == ["none", "none", "higher", "higher"]
    assert found.loc[2, "p_holm"] == pytest.approx(4 * 2 / 2**10)  # the smallest p, times the four comparisons
    assert (stats.compare_each(records, "metric", against="ce", family=12)["m"] == 12).all()
    with pytest.raises(ValueError, match="against='plain'"):
        stats.compare_each(records, "metric", against="plain")
