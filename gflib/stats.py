"""The study's statistics, all through scipy.stats.

- :func:`sparse_vs_dense`: one-sided test of H1 "sparse > dense" (Wilcoxon signed-rank on matched
  pairs; Mann-Whitney U when unpaired).
- :func:`kendall` / :func:`kendall_ci`: Kendall's tau with its p-value and a bootstrap interval.
- :func:`bootstrap_ci`: a percentile bootstrap interval of any statistic.
- :func:`bn_gain_test`: "BatchNorm helps sparse more than dense", a one-sided test on the per-pair
  difference of BatchNorm gains.
- :func:`benjamini_hochberg`: false-discovery-rate adjusted p-values for a table of tests.

CHOICE: zero differences in signed-rank tests are split between the positive and negative ranks
(``zero_method="zsplit"``), so ties count against neither side and an all-zero sample gives p = 0.5
rather than an error; NaN entries (diverged runs without a metric) are dropped pairwise.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as ss


def _finite_pairs(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal shapes, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def signed_rank_greater(d) -> dict:
    """One-sided Wilcoxon signed-rank test of H1: median of ``d`` > 0.

    Returns ``statistic``, ``pvalue``, ``n`` (finite differences used) and ``median_diff``;
    with no usable difference, statistic and pvalue are NaN.
    """
    d = np.asarray(d, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"statistic": float("nan"), "pvalue": float("nan"), "n": 0,
                "median_diff": float("nan")}
    res = ss.wilcoxon(d, alternative="greater", zero_method="zsplit")
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "n": int(d.size),
            "median_diff": float(np.median(d))}


def sparse_vs_dense(sparse, dense, paired: bool = True) -> dict:
    """One-sided test of H1: sparse > dense.

    ``paired=True``: ``sparse[i]`` and ``dense[i]`` are a matched pair (same width, seed, config);
    Wilcoxon signed-rank on the differences. ``paired=False``: two independent samples;
    Mann-Whitney U (``alternative="greater"``), and ``n`` is the smaller sample's size.
    Returns ``statistic``, ``pvalue``, ``n`` and ``median_diff`` (median of the paired differences,
    or difference of medians when unpaired).
    """
    if paired:
        s, d = _finite_pairs(sparse, dense)
        return signed_rank_greater(s - d)
    s = np.asarray(sparse, dtype=float)
    d = np.asarray(dense, dtype=float)
    s, d = s[np.isfinite(s)], d[np.isfinite(d)]
    if s.size == 0 or d.size == 0:
        return {"statistic": float("nan"), "pvalue": float("nan"), "n": 0,
                "median_diff": float("nan")}
    res = ss.mannwhitneyu(s, d, alternative="greater")
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue),
            "n": int(min(s.size, d.size)), "median_diff": float(np.median(s) - np.median(d))}


def kendall(x, y) -> dict:
    """Kendall's tau-b of ``x`` and ``y`` (pairs with a NaN dropped): ``tau``, ``abs_tau``,
    ``pvalue`` (two-sided), ``n``. Fewer than 2 pairs, or a constant sample, gives NaN."""
    x, y = _finite_pairs(x, y)
    if x.size < 2:
        return {"tau": float("nan"), "abs_tau": float("nan"), "pvalue": float("nan"), "n": int(x.size)}
    res = ss.kendalltau(x, y)
    tau = float(res.statistic)
    return {"tau": tau, "abs_tau": abs(tau), "pvalue": float(res.pvalue), "n": int(x.size)}


def bootstrap_ci(values, stat=np.median, level: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple:
    """``(low, high)``: a bootstrap confidence interval of ``stat(values)`` at ``level``
    (scipy.stats.bootstrap, percentile method). NaNs are dropped; fewer than 2 values gives
    ``(nan, nan)``; a constant sample gives that constant twice."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2 or np.all(v == v[0]):
        return (float(v[0]), float(v[0])) if v.size >= 2 else (float("nan"), float("nan"))
    res = ss.bootstrap((v,), stat, confidence_level=level, n_resamples=n_resamples,
                       random_state=np.random.default_rng(seed), method="percentile")
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def kendall_ci(x, y, level: float = 0.95, n_resamples: int = 1000, seed: int = 0) -> tuple:
    """``(low, high)``: a paired bootstrap percentile interval of Kendall's tau of ``x``, ``y``."""
    x, y = _finite_pairs(x, y)
    if x.size < 3:
        return float("nan"), float("nan")

    def tau(a, b):
        return ss.kendalltau(a, b).statistic

    res = ss.bootstrap((x, y), tau, paired=True, vectorized=False, confidence_level=level,
                       n_resamples=n_resamples, random_state=np.random.default_rng(seed),
                       method="percentile")
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bn_gain_test(sparse_bn, sparse_plain, dense_bn, dense_plain, level: float = 0.95,
                 seed: int = 0) -> dict:
    """Does BatchNorm help sparse nets more than dense ones?

    All four arrays are matched element-wise (the same optimizer, variant, width pair and seed).
    Per pair, ``d = (sparse_bn - sparse_plain) - (dense_bn - dense_plain)``; one-sided Wilcoxon
    signed-rank test of H1: d > 0. Returns ``statistic``, ``pvalue``, ``n``, ``median_diff`` and
    ``ci_low``/``ci_high``, a bootstrap interval of the median difference at ``level``.
    """
    arrays = [np.asarray(a, dtype=float) for a in (sparse_bn, sparse_plain, dense_bn, dense_plain)]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"bn_gain_test needs four equal-shaped arrays, got {[a.shape for a in arrays]}")
    d = (arrays[0] - arrays[1]) - (arrays[2] - arrays[3])
    out = signed_rank_greater(d)
    out["ci_low"], out["ci_high"] = bootstrap_ci(d, np.median, level=level, seed=seed)
    return out


def benjamini_hochberg(pvalues):
    """Benjamini-Hochberg adjusted p-values (scipy.stats.false_discovery_control) of an array of
    any shape; NaNs stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = ss.false_discovery_control(p[ok], method="bh")
    return out
