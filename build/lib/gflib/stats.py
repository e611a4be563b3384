"""The study's statistics, all through scipy.stats.

- :func:`sparse_vs_dense`: one-sided test of H1 "sparse > dense" (Wilcoxon signed-rank on matched
  pairs; Mann-Whitney U when unpaired).
- :func:`kendall` / :func:`kendall_ci`: Kendall's tau with its p-value and a bootstrap interval.
- :func:`bootstrap_ci`: a percentile bootstrap interval of any statistic.
- :func:`label_contrast`: how one group of units differs from the others, with a permutation test
  of the group labels.
- the smallest p a design can reach (:func:`min_p_signed_rank`, :func:`min_p_labels`) and the
  units it needs to reach a level (:func:`units_needed`).

Multiple comparisons: Benjamini-Hochberg q-values (``scipy.stats.false_discovery_control``) in
:func:`gflib.verdict.q_values` and :func:`gflib.verdict.adjust`.

CHOICEs:

- zero differences in signed-rank tests are split between the positive and negative ranks
  (``zero_method="zsplit"``), so ties count against neither side;
- when every difference is zero the signed-rank test is undefined (scipy raises for a single
  zero); we report ``statistic = nan`` and ``pvalue = 1.0``: no evidence for H1;
- non-finite entries (NaN from a diverged run, inf) are dropped: pairwise for paired samples,
  value by value for unpaired ones; with no usable pair or value, statistic and pvalue are NaN;
- bootstrap intervals use the percentile method (scipy's default BCa needs a jackknife and fails
  on degenerate bootstrap distributions).
"""
from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
from scipy import stats as ss

NAN = float("nan")


def _finite_pairs(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal shapes, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def _finite(a):
    a = np.asarray(a, dtype=float).ravel()
    return a[np.isfinite(a)]


def _check_level(level):
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def _rng(seed):
    """scipy >= 1.15 takes ``rng``; older versions ``random_state``."""
    key = "rng" if "rng" in inspect.signature(ss.bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}


def signed_rank_greater(d) -> dict:
    """One-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon, ``zero_method="zsplit"``) of
    H1: the differences ``d`` (any shape, flattened) are located above 0.

    Returns ``statistic`` (sum of ranks of the positive differences, zeros split), ``pvalue``,
    ``n`` (finite differences used, zeros included) and ``median_diff``; see the module's CHOICEs
    for the no-data and all-zero cases.
    """
    d = _finite(d)
    if d.size == 0:
        return {"statistic": NAN, "pvalue": NAN, "n": 0, "median_diff": NAN}
    if not np.any(d):
        return {"statistic": NAN, "pvalue": 1.0, "n": int(d.size), "median_diff": 0.0}
    res = ss.wilcoxon(d, alternative="greater", zero_method="zsplit")
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "n": int(d.size),
            "median_diff": float(np.median(d))}


def sparse_vs_dense(sparse, dense, paired: bool = True) -> dict:
    """One-sided test of H0: sparse <= dense against H1: sparse > dense.

    ``paired=True``: ``sparse[i]`` and ``dense[i]`` (equal shapes) are a matched pair (same width
    pair, seed, config); Wilcoxon signed-rank on ``sparse - dense``, pairs with a non-finite
    member dropped; ``n`` = pairs used and ``median_diff`` = median of the differences.
    ``paired=False``: two independent samples of any sizes; Mann-Whitney U
    (scipy.stats.mannwhitneyu, ``alternative="greater"``, U of the sparse sample), non-finite
    values dropped; ``n`` = ``n_sparse + n_dense`` values used and ``median_diff`` =
    ``median(sparse) - median(dense)``.

    Returns ``statistic``, ``pvalue``, ``n``, ``median_diff``, and ``n_sparse``, ``n_dense``
    (values used from each side; both equal ``n`` when paired). Values in the metric's units.
    """
    if paired:
        s, d = _finite_pairs(sparse, dense)
        return {**signed_rank_greater(s - d), "n_sparse": int(s.size), "n_dense": int(d.size)}
    s, d = _finite(sparse), _finite(dense)
    out = {"n": int(s.size + d.size), "n_sparse": int(s.size), "n_dense": int(d.size)}
    if s.size == 0 or d.size == 0:
        return {"statistic": NAN, "pvalue": NAN, **out, "median_diff": NAN}
    res = ss.mannwhitneyu(s, d, alternative="greater")
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), **out,
            "median_diff": float(np.median(s) - np.median(d))}


def kendall(x, y) -> dict:
    """Kendall's tau-b (scipy.stats.kendalltau) of two equal-shaped samples, pairs with a
    non-finite member dropped.

    Returns ``tau`` (signed, in [-1, 1]), ``abs_tau``, ``pvalue`` (two-sided; exact for small
    samples without ties) and ``n`` (pairs used). Fewer than 2 pairs, or a constant sample,
    gives NaN tau and pvalue.
    """
    x, y = _finite_pairs(x, y)
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return {"tau": NAN, "abs_tau": NAN, "pvalue": NAN, "n": int(x.size)}
    res = ss.kendalltau(x, y)
    tau = float(res.statistic)
    return {"tau": tau, "abs_tau": abs(tau), "pvalue": float(res.pvalue), "n": int(x.size)}


def bootstrap_ci(values, stat=np.mean, level: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple:
    """``(low, high)``: a percentile bootstrap interval (scipy.stats.bootstrap) of
    ``stat(values)`` at confidence ``level``, in the values' units.

    ``values``: a 1-D sample (flattened); non-finite values dropped. ``stat`` takes a 1-D array
    (an ``axis`` keyword makes it vectorised, as numpy's reductions are). Fewer than 2 values
    gives ``(nan, nan)``; a constant sample gives ``(stat, stat)``. ``seed`` fixes the resamples.
    """
    _check_level(level)
    v = _finite(values)
    if v.size < 2:
        return NAN, NAN
    if np.all(v == v[0]):
        s = float(stat(v))
        return s, s
    res = ss.bootstrap((v,), stat, confidence_level=level, n_resamples=n_resamples,
                       method="percentile", **_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def kendall_ci(x, y, level: float = 0.95, n_resamples: int = 1000, seed: int = 0) -> tuple:
    """``(low, high)``: a paired percentile bootstrap interval (scipy.stats.bootstrap,
    ``paired=True``) of Kendall's tau-b of ``x`` and ``y`` (non-finite pairs dropped).

    A resample whose ``x`` or ``y`` is constant has no tau; such resamples are left out of the
    percentiles (so a perfectly ordered sample gives ``(1, 1)`` instead of NaN). Fewer than 3
    pairs, or a constant sample, gives ``(nan, nan)``.
    """
    _check_level(level)
    x, y = _finite_pairs(x, y)
    if x.size < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return NAN, NAN

    def tau(a, b):
        return ss.kendalltau(a, b).statistic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ss.DegenerateDataWarning)
        res = ss.bootstrap((x, y), tau, paired=True, vectorized=False, confidence_level=level,
                           n_resamples=n_resamples, method="percentile", **_rng(seed))
    low, high = res.confidence_interval.low, res.confidence_interval.high
    dist = res.bootstrap_distribution
    if np.isnan(dist).any():
        alpha = (1 - level) / 2
        low, high = np.nanpercentile(dist, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def label_contrast(values, labelled, level: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0) -> dict:
    """How the units with a label differ from the others: ``effect`` = mean of ``values`` where
    ``labelled`` (bool, one per unit) minus the mean of the rest, in the values' units; ``pvalue``:
    one-sided permutation test of the labels (scipy.stats.permutation_test, H1 effect > 0; exact,
    every relabelling, when there are at most ``n_resamples`` of them); ``ci_low``/``ci_high``: a
    percentile bootstrap of the difference resampling within each group; ``n``: units used
    (non-finite values dropped), ``n_labelled``, and ``min_p`` (:func:`min_p_labels`). Fewer than
    two units in either group gives NaN."""
    values = np.asarray(values, dtype=float)
    labelled = np.asarray(labelled, dtype=bool)
    ok = np.isfinite(values)
    values, labelled = values[ok], labelled[ok]
    a, b = values[labelled], values[~labelled]
    out = {"effect": NAN, "ci_low": NAN, "ci_high": NAN, "pvalue": NAN, "n": int(values.size),
           "n_labelled": int(a.size), "min_p": min_p_labels(values.size, a.size)}
    if a.size < 2 or b.size < 2:
        return out

    def diff(x, y, axis=-1):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    out["effect"] = float(diff(a, b))
    perm = ss.permutation_test((a, b), diff, permutation_type="independent", vectorized=True,
                               n_resamples=n_resamples, alternative="greater", **_rng(seed))
    out["pvalue"] = float(perm.pvalue)
    if np.ptp(values) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ss.DegenerateDataWarning)
            boot = ss.bootstrap((a, b), diff, vectorized=True, confidence_level=level,
                                n_resamples=n_resamples, method="percentile", **_rng(seed))
        out["ci_low"] = float(boot.confidence_interval.low)
        out["ci_high"] = float(boot.confidence_interval.high)
    else:
        out["ci_low"] = out["ci_high"] = out["effect"]
    return out


def min_p_signed_rank(n: int) -> float:
    """The smallest one-sided p of an exact Wilcoxon signed-rank test on ``n`` differences (all
    of one sign): ``0.5 ** n``; NaN for none."""
    return 0.5 ** n if n > 0 else NAN


def min_p_labels(n: int, k: int) -> float:
    """The smallest one-sided p of a permutation test of ``k`` labels among ``n`` units:
    ``1 / C(n, k)`` (the observed labelling is the most extreme of all); NaN when there is no
    relabelling."""
    return 1 / math.comb(n, k) if 0 < k < n else NAN


def units_needed(min_p, level: float = 0.05, start: int = 1, stop: int = 1000) -> int:
    """The fewest units ``n`` (from ``start``) for which ``min_p(n) < level``; 0 when none below
    ``stop`` does. ``min_p``: a function of ``n``, e.g. :func:`min_p_signed_rank`."""
    for n in range(start, stop):
        if min_p(n) < level:
            return n
    return 0


def kendall_tau_b(x, y) -> np.ndarray:
    """Kendall's tau-b of many samples at once, for bootstraps (scipy's ``kendalltau`` takes one
    pair of 1-D samples a call): ``x`` ``[..., n, M]`` (M variables), ``y`` ``[..., n]``;
    returns ``[..., M]``, the value :func:`scipy.stats.kendalltau` gives for each
    ``(x[..., :, m], y)`` (NaN where either is constant or holds a NaN). Memory ``O(n^2 M)``
    per sample."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    missing = np.isnan(x).any(axis=-2) | np.isnan(y).any(axis=-1)[..., None]
    x, y = np.nan_to_num(x), np.nan_to_num(y)
    i, j = np.triu_indices(x.shape[-2], k=1)
    sx = np.sign(x[..., i, :] - x[..., j, :]).astype(np.int8)
    sy = np.sign(y[..., i] - y[..., j]).astype(np.int8)[..., None]
    concord = (sx * sy).sum(-2, dtype=np.int64)
    tied_x = np.abs(sx).sum(-2, dtype=np.int64)
    tied_y = np.abs(sy).sum(-2, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = concord / np.sqrt(tied_x * tied_y)
    return np.where(missing, np.nan, tau)
