"""The book's verdict rule: paired comparisons over seeds, a bootstrap interval and a Holm-corrected exact test.

Two training losses ``a`` and ``b`` (``logitnorm`` and ``ce``) are trained with seeds 0 … n−1, and seed ``s`` of
each shares its initial weights and batch order. The comparison is therefore *paired*: for every quantity (an
OOD set and metric, say) the unit of evidence is the per-seed difference ``d_s = x_a(s) − x_b(s)``, and the
question is whether the mean ``d̄ = (1/n) Σ_s d_s`` is told apart from zero.

* :func:`sign_flip_test` — the exact paired permutation test (Fisher 1935; Good 2005, *Permutation, Parametric
  and Bootstrap Tests of Hypotheses*): under "no difference" each ``d_s`` is as likely to have had the other
  sign, so ``d̄`` is compared with its 2ⁿ sign-flipped versions. No normality is assumed, but with n seeds the
  smallest possible two-sided p-value is ``2/2ⁿ`` (:func:`sign_flip_floor`).
* :func:`bootstrap_ci` — the percentile bootstrap interval of ``d̄`` over seeds (Efron & Tibshirani 1993,
  *An Introduction to the Bootstrap*, ch. 13).
* :func:`holm` — Holm's (1979) step-down correction over every verdict a page makes.
* :func:`detectable_difference` — how large a mean difference the design could have flagged at all.
* :func:`compare` puts them together, one row per quantity, and :func:`verdict_words` says it in words: a
  direction only where the corrected test finds one.

This replaces the old rule (an unpaired difference beyond two standard errors, no correction), which ignored
the pairing and took no account of the dozen verdicts a page makes at once.

The input is a tidy record frame (one row per run and quantity, columns such as ``loss``, ``seed``,
``ood_set``, ``metric``, ``value``; :func:`lnlib.tidy.ood_records`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

EXACT_UP_TO = 20  # sign_flip_test enumerates all 2ⁿ sign vectors up to this n (2²⁰ ≈ 10⁶ sums)
MONTE_CARLO_DRAWS = 2**16  # beyond it: this many random sign vectors


def paired_differences(records: pd.DataFrame, by, pair: str = "seed", compare: str = "loss",
                       a: str = "logitnorm", b: str = "ce", value: str = "value") -> pd.DataFrame:
    """The per-seed differences ``a − b`` of ``value`` within each group of the ``by`` columns.

    ``records``: one row per run and quantity; rows whose ``compare`` column is neither ``a`` nor ``b`` are
    ignored. Returns one row per group and paired seed, groups in order of first appearance, seeds sorted,
    with columns ``[*by, pair, "a", "b", "difference"]`` (``a`` and ``b`` the two values, ``difference = a − b``).

    Raises ``ValueError`` naming every group and seed that is unpaired (present for one side only) or
    duplicated (more than one row for one side): dropping them silently would hide a failed or repeated run.
    """
    by = [by] if isinstance(by, str) else list(by)
    absent = [c for c in dict.fromkeys([*by, pair, compare, value]) if c not in records.columns]
    if absent:
        raise ValueError(f"records lack the column(s) {absent}")
    frames, problems = [], []
    for key, group in _groups(records[records[compare].isin([a, b])], by):
        name = ", ".join(f"{c}={k!r}" for c, k in key.items()) or "all records"
        side = {x: group.loc[group[compare] == x].set_index(pair)[value] for x in (a, b)}
        for x, values in side.items():
            repeated = sorted(values.index[values.index.duplicated()].unique().tolist())
            if repeated:
                problems.append(f"{name}: {pair} {repeated} more than once for {compare}={x!r}")
        for x, y in ((a, b), (b, a)):
            alone = sorted(set(side[x].index) - set(side[y].index))
            if alone:
                problems.append(f"{name}: {pair} {alone} for {compare}={x!r} but not for {compare}={y!r}")
        if problems:
            continue
        seeds = sorted(side[a].index)
        frame = pd.DataFrame({pair: seeds, "a": side[a].loc[seeds].to_numpy(), "b": side[b].loc[seeds].to_numpy()})
        frame["difference"] = frame["a"] - frame["b"]
        frames.append(frame.assign(**key)[[*by, *frame.columns]])
    if problems:
        raise ValueError("unpaired or duplicated runs:\n  " + "\n  ".join(problems))
    columns = [*by, pair, "a", "b", "difference"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _groups(frame: pd.DataFrame, by: list[str]):
    """``(dict by-column → value, rows)`` per group of ``by`` in order of first appearance; one group if no ``by``."""
    if not by:
        yield {}, frame
        return
    for key, group in frame.groupby(by, sort=False, dropna=False):
        yield dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)), group


def sign_flip_floor(n: int) -> float:
    """The smallest p-value :func:`sign_flip_test` can return with ``n`` differences.

    ``2/2ⁿ`` (the observed signs and their mirror image are always at least as extreme): 0.25 at n = 3,
    0.0625 at n = 5, 1/512 ≈ 0.002 at n = 10. Beyond ``EXACT_UP_TO`` it is the Monte Carlo floor
    ``1/(1 + MONTE_CARLO_DRAWS)``.
    """
    return 2.0 / 2.0**n if n <= EXACT_UP_TO else 1.0 / (1 + MONTE_CARLO_DRAWS)


def sign_flip_test(d, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation p-value of the mean of the differences ``d`` (shape ``(n,)``).

    Under the null hypothesis each ``d_s`` is symmetric about zero, so each of the 2ⁿ sign vectors
    ``ε ∈ {−1, +1}ⁿ`` is equally likely and ::

        p = #{ε : |Σ_s ε_s d_s| ≥ |Σ_s d_s|} / 2ⁿ

    (the sum is the mean times n). Ties are counted with a tolerance of 1e-12 × Σ|d_s| for rounding. For
    n ≤ ``EXACT_UP_TO`` every ε is enumerated (exact); beyond, ``MONTE_CARLO_DRAWS`` random ε (generator
    seeded with ``seed``) give ``p = (1 + count)/(1 + draws)``, which counts the observed signs among the draws
    and so remains a valid p-value (Phipson & Smyth 2010).

    The p-value cannot go below :func:`sign_flip_floor` ``= 2/2ⁿ``: three seeds can never give p < 0.25 and
    five never p < 0.0625, whatever the data. n = 0 or any NaN in ``d`` gives NaN; all-zero ``d`` gives 1.
    References: Fisher (1935), *The Design of Experiments*, §21; Good (2005), ch. 3.
    """
    d = np.asarray(d, dtype=float).ravel()
    n = d.size
    if n == 0 or np.isnan(d).any():
        return float("nan")
    threshold = abs(d.sum()) - 1e-12 * np.abs(d).sum()
    if n <= EXACT_UP_TO:
        sums = np.zeros(1)
        for x in d:  # every signed sum, doubling the list once per difference: 2ⁿ sums in the end
            sums = np.concatenate([sums + x, sums - x])
        return float(np.count_nonzero(np.abs(sums) >= threshold) / sums.size)
    rng, count, chunk = np.random.default_rng(seed), 0, 4096
    for start in range(0, MONTE_CARLO_DRAWS, chunk):
        signs = rng.choice([-1.0, 1.0], size=(min(chunk, MONTE_CARLO_DRAWS - start), n))
        count += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
    return (1 + count) / (1 + MONTE_CARLO_DRAWS)


def bootstrap_ci(d, level: float = 0.95, draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d`` (shape ``(n,)``), resampling seeds with replacement.

    ``draws`` resamples ``d*`` of size n are drawn (generator seeded with ``seed``, so the interval is
    deterministic); the interval is the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of their means
    (Efron & Tibshirani 1993, §13.3), clipped to ``[min d, max d]`` where the mean always lies.

    It *undercovers* at a handful of seeds: its width is about ``2 z · s √((n−1)/n) / √n`` against the t
    interval's ``2 t_{n−1} · s / √n``. At n = 3 the 95% interval is the range of the three differences, which
    contains the centre of a symmetric distribution only 1 − 2/2³ = 75% of the time; at n = 10 it is about
    0.82 times the width of the t interval. Simulated with normal differences (1,000 samples each), the 95%
    interval covered the true mean 78%, 85% and 92% of the time at n = 3, 5 and 10. Read it as a description
    of the seeds, and leave the verdict to the exact test. n < 2 or a NaN in ``d`` gives ``(nan, nan)``.
    """
    d = np.asarray(d, dtype=float).ravel()
    if d.size < 2 or np.isnan(d).any():
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(draws, d.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(np.clip(low, d.min(), d.max())), float(np.clip(high, d.min(), d.max()))


def holm(pvalues, m: int | None = None) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (Holm 1979), same shape as ``pvalues``.

    With the k non-NaN p-values sorted, ``p₍₁₎ ≤ … ≤ p₍ₖ₎``, the adjusted value of the j-th is
    ``min(1, max_{i ≤ j} (m − i + 1) p₍ᵢ₎)``: step-down, monotone in p, capped at 1. Rejecting where the
    adjusted value is ≤ α controls the family-wise error rate at α. NaN stays NaN and is not counted.

    ``m`` defaults to k. A larger ``m`` states the size of the whole family (every verdict on a page) when only
    some of its p-values are at hand; the result is then never below the Holm value over the whole family
    (each p-value's rank in the family is at least its rank here), so it is conservative.
    """
    p = np.asarray(pvalues, dtype=float)
    finite = ~np.isnan(p)
    k = int(finite.sum())
    m = k if m is None else int(m)
    if m < k:
        raise ValueError(f"family size m={m} is smaller than the {k} p-values given")
    if ((p[finite] < 0) | (p[finite] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1]: {p[finite].tolist()}")
    order = np.argsort(p[finite], kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[finite][order] * (m - np.arange(k))))
    adjusted = np.empty(k)
    adjusted[order] = stepped
    out = np.full(p.shape, np.nan)
    out[finite] = adjusted
    return out


def detectable_difference(std: float, n: int, level: float) -> float:
    """The smallest |mean paired difference| that n seeds could flag at the per-test ``level`` (e.g. α/m).

    ``inf`` when no data could: the exact test's floor :func:`sign_flip_floor` ``= 2/2ⁿ`` exceeds ``level``
    (e.g. three seeds, whose floor 0.25 is above any usual level; ten seeds, floor ≈ 0.002, against 0.05/30).
    Otherwise the t approximation ``t_{1−level/2, n−1} · s / √n`` with ``s = std`` the standard deviation (ddof 1)
    of the differences: the mean at which the observed spread would just reach significance. It is an
    approximation for the sign-flip test, and a difference of this size is detected only about half the time;
    for 80% power add ``t_{0.8, n−1}`` to the quantile.
    """
    if n < 2 or sign_flip_floor(n) > level:
        return float("inf")
    return float(_scipy_stats.t.ppf(1 - level / 2, n - 1) * std / np.sqrt(n))


def compare(records: pd.DataFrame, by, pair: str = "seed", compare: str = "loss", a: str = "logitnorm",
            b: str = "ce", value: str = "value", alpha: float = 0.05, family: int | None = None,
            level: float = 0.95, draws: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """The paired comparison ``a − b`` per group of ``by``: one row per group, in order of first appearance.

    Columns, besides ``by``: ``n`` (paired seeds), ``mean_a``, ``mean_b``, ``difference`` (the mean of
    ``a − b``), ``ci_low``/``ci_high`` (:func:`bootstrap_ci` at ``level``, *not* corrected for multiplicity),
    ``level``, ``p`` (:func:`sign_flip_test`), ``p_holm`` (:func:`holm` over this call's rows, or over a family
    of ``family`` verdicts when the page makes more than this call), ``m`` (that family size), ``alpha``,
    ``detectable`` (:func:`detectable_difference` at ``alpha/m``, the level the family's strongest difference
    must reach) and ``direction``: ``"lower"`` or ``"higher"`` (a below or above b) only where
    ``p_holm ≤ alpha``, else ``"none"``.
    """
    by = [by] if isinstance(by, str) else list(by)
    pairs = paired_differences(records, by, pair=pair, compare=compare, a=a, b=b, value=value)
    rows = []
    for key, group in _groups(pairs, by):
        d = group["difference"].to_numpy(dtype=float)
        low, high = bootstrap_ci(d, level=level, draws=draws, seed=seed)
        rows.append({**key, "n": d.size,
                     "mean_a": group["a"].mean(), "mean_b": group["b"].mean(),
                     "difference": d.mean() if d.size else np.nan,
                     "ci_low": low, "ci_high": high, "level": level, "p": sign_flip_test(d, seed=seed),
                     "std": d.std(ddof=1) if d.size > 1 else np.nan})
    out = pd.DataFrame(rows, columns=[*by, "n", "mean_a", "mean_b", "difference", "ci_low", "ci_high", "level",
                                      "p", "std"])
    m = int(out["p"].notna().sum()) if family is None else int(family)
    out["p_holm"] = holm(out["p"].to_numpy(), m=m)
    out["m"], out["alpha"] = m, alpha
    out["detectable"] = [detectable_difference(s, n, alpha / max(m, 1))
                         for s, n in zip(out["std"], out["n"], strict=True)]
    out["direction"] = _directions(out)
    return out.drop(columns="std")


def _directions(out: pd.DataFrame) -> np.ndarray:
    """``"lower"`` or ``"higher"`` where the Holm-corrected p is at most ``alpha``, by the sign of the difference;
    ``"none"`` elsewhere."""
    found = out["p_holm"] <= out["alpha"]
    return np.where(found & (out["difference"] < 0), "lower", np.where(found & (out["difference"] > 0), "higher",
                                                                       "none"))


_compare = compare  # for compare_each, whose argument ``compare`` (a column name) hides the function


def compare_each(records: pd.DataFrame, by, against: str, compare: str = "method", family: int | None = None,
                 **options) -> pd.DataFrame:
    """:func:`compare` of every other value of the ``compare`` column against ``against`` (e.g. CEDA, ACET and
    LogitNorm each against plain cross-entropy), one block after another, each row naming its value in the
    ``compare`` column; Holm's correction runs over all their rows together (or over ``family``)."""
    by = [by] if isinstance(by, str) else list(by)
    others = [v for v in dict.fromkeys(records[compare]) if v != against]
    if against not in set(records[compare]) or not others:
        raise ValueError(f"against={against!r}: the records' {compare!r} column must hold it and at least one other "
                         f"value; it holds {sorted(map(str, set(records[compare])))}")
    groups = len(records.drop_duplicates(by)) if by else 1
    m = len(others) * groups if family is None else int(family)
    blocks = [_compare(records, by, compare=compare, a=other, b=against, family=m, **options).assign(**{compare: other})
              for other in others]
    out = pd.concat(blocks, ignore_index=True)
    out["p_holm"] = holm(out["p"].to_numpy(), m=m)  # one step-down over every block's rows
    out["direction"] = _directions(out)
    return out


def verdict_words(row, lower: str = "lower", higher: str = "higher", unit: str = "points",
                  scale: float = 100.0, digits: int = 1) -> str:
    """One row of :func:`compare` in words; numbers are multiplied by ``scale`` (fractions → percent points).

    A direction (``lower`` or ``higher``, e.g. "LogitNorm lowers FPR95") only where the corrected test finds
    one, with the interval and both p-values; otherwise "no detectable difference" with the size that could
    not have been detected, or "no verdict possible" where n seeds cannot reach the corrected level at all.
    """
    n, m, alpha = int(row["n"]), int(row["m"]), float(row["alpha"])
    f = lambda x: f"{scale * x:+.{digits}f}"
    unit = f" {unit}" if unit else ""  # no unit (a norm, say): nothing between the number and the comma
    measured = (f"{f(row['difference'])}{unit}, {100 * row['level']:.0f}% bootstrap interval {f(row['ci_low'])} "
                f"to {f(row['ci_high'])} over {n} paired seeds")
    if np.isnan(row["p"]):
        return f"not measured (a value is missing or there are no paired seeds; {n} seeds)"
    if row["direction"] in ("lower", "higher"):
        words = lower if row["direction"] == "lower" else higher
        return (f"{words}: {measured}; sign-flip p = {row['p']:.2g}, Holm-corrected over {m} comparisons "
                f"p = {row['p_holm']:.2g}")
    if not np.isfinite(row["detectable"]):
        return (f"no verdict possible: {n} paired seeds cannot reach the corrected level (the exact test's floor "
                f"2/2^{n} = {sign_flip_floor(n):.3g} > {alpha:g}/{m} = {alpha / max(m, 1):.3g}); measured {measured}")
    return (f"no detectable difference ({measured}; p = {row['p']:.2g}, Holm-corrected over {m} comparisons "
            f"p = {row['p_holm']:.2g}): a difference smaller than about ±{scale * row['detectable']:.{digits}f}"
            f"{unit} could not be detected with {n} seeds")
