"""gflib.stats against small cases worked by hand, and its edge cases."""
import math

import numpy as np
import pytest

from gflib import stats


def test_wilcoxon_exact_all_positive_n5():
    # d = sparse - dense = .1 .2 .3 .4 .5: all 5 signed ranks positive, T+ = 1+2+3+4+5 = 15.
    # Under H0 each of the 2^5 sign patterns is equally likely; only one reaches T+ >= 15.
    sparse = np.array([0.6, 0.7, 0.8, 0.9, 1.0])
    dense = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    res = stats.sparse_vs_dense(sparse, dense)
    assert res["statistic"] == 15
    assert res["pvalue"] == pytest.approx(1 / 32, abs=1e-12)
    assert res["n"] == 5 and res["n_sparse"] == res["n_dense"] == 5
    assert res["median_diff"] == pytest.approx(0.3)


def test_wilcoxon_exact_one_negative():
    # d = -.1 .2 .3 .4 .5: the negative difference has rank 1, T+ = 14;
    # sign patterns with T+ >= 14: {2,3,4,5} (14) and {1,...,5} (15): p = 2/32.
    res = stats.sparse_vs_dense([0.4, 0.7, 0.8, 0.9, 1.0], [0.5] * 5)
    assert res["statistic"] == 14
    assert res["pvalue"] == pytest.approx(2 / 32, abs=1e-12)
    # the other direction: T+ = 1, P(T+ >= 1) = 31/32
    res = stats.sparse_vs_dense([0.5] * 5, [0.4, 0.7, 0.8, 0.9, 1.0])
    assert res["pvalue"] == pytest.approx(31 / 32, abs=1e-12)


def test_wilcoxon_drops_pairs_with_nan():
    sparse = [0.6, np.nan, 0.7, 0.8, 0.9, 1.0, 0.3]
    dense = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, np.inf]
    res = stats.sparse_vs_dense(sparse, dense)
    assert res["n"] == 5 and res["pvalue"] == pytest.approx(1 / 32)


def test_wilcoxon_edge_cases():
    none = stats.sparse_vs_dense([np.nan], [0.1])
    assert none["n"] == 0 and math.isnan(none["pvalue"]) and math.isnan(none["statistic"])
    empty = stats.sparse_vs_dense([], [])
    assert empty["n"] == 0 and math.isnan(empty["pvalue"])
    for n in (1, 2, 7):  # all differences zero: CHOICE p = 1 (scipy raises for n = 1)
        zero = stats.sparse_vs_dense([0.3] * n, [0.3] * n)
        assert zero["pvalue"] == 1.0 and zero["n"] == n and zero["median_diff"] == 0.0
    one = stats.sparse_vs_dense([0.9], [0.1])  # one positive pair: exact p = 1/2
    assert one["pvalue"] == pytest.approx(0.5) and one["n"] == 1
    # zsplit: a zero difference is kept and counted in n
    res = stats.sparse_vs_dense([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 1, 1])
    assert res["n"] == 6 and 0 < res["pvalue"] < 0.05
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        stats.sparse_vs_dense([1, 2, 3], [1, 2])


def test_mann_whitney_exact_tiny():
    # sparse 3 4 5 vs dense 1 2: every sparse value beats every dense one, U = 3*2 = 6;
    # of the C(5,2) = 10 equally likely rank arrangements only this one has U = 6: p = 1/10.
    res = stats.sparse_vs_dense([3, 4, 5], [1, 2], paired=False)
    assert res["statistic"] == 6 and res["pvalue"] == pytest.approx(0.1, abs=1e-12)
    assert res["n"] == 5 and (res["n_sparse"], res["n_dense"]) == (3, 2)
    assert res["median_diff"] == pytest.approx(4 - 1.5)
    # sparse 2 4 5 vs dense 1 3: wins 1 + 2 + 2 = U = 5; arrangements with U >= 5: 2 of 10.
    res = stats.sparse_vs_dense([2, 4, 5, np.nan], [1, 3], paired=False)
    assert res["statistic"] == 5 and res["pvalue"] == pytest.approx(0.2, abs=1e-12)
    assert (res["n_sparse"], res["n_dense"]) == (3, 2)


def test_mann_whitney_edge_cases():
    res = stats.sparse_vs_dense([np.nan, np.nan], [1, 2], paired=False)
    assert math.isnan(res["pvalue"]) and res["n"] == 2 and res["n_sparse"] == 0
    res = stats.sparse_vs_dense([1.0, 1.0], [1.0, 1.0, 1.0], paired=False)
    assert res["pvalue"] == pytest.approx(1.0)


def test_kendall_hand_counted():
    # x 1 2 3 4, y 1 3 2 4: of the 6 pairs only (2,3) is discordant: tau = (5-1)/6 = 2/3.
    # Exact null: permutations of 4 by inversions 0..6 number 1,3,5,6,5,3,1 (of 24);
    # |tau| >= 2/3 <=> at most 1 or at least 5 inversions: (1+3)+(3+1) = 8 of 24: p = 1/3.
    res = stats.kendall([1, 2, 3, 4], [1, 3, 2, 4])
    assert res["tau"] == pytest.approx(2 / 3) and res["abs_tau"] == pytest.approx(2 / 3)
    assert res["pvalue"] == pytest.approx(1 / 3) and res["n"] == 4
    res = stats.kendall([1, 2, 3, np.nan, 4], [4, 3, 2, 0, 1])  # all 6 discordant, NaN pair dropped
    assert res["tau"] == pytest.approx(-1) and res["abs_tau"] == pytest.approx(1)
    assert res["pvalue"] == pytest.approx(2 / 24) and res["n"] == 4


def test_kendall_edge_cases():
    assert math.isnan(stats.kendall([1], [2])["tau"])
    res = stats.kendall([1, 1, 1], [1, 2, 3])
    assert math.isnan(res["tau"]) and math.isnan(res["pvalue"]) and res["n"] == 3
    with pytest.raises(ValueError):
        stats.kendall([1, 2], [1, 2, 3])


def test_bootstrap_ci():
    rng = np.random.default_rng(1)
    v = rng.normal(2.0, 1.0, size=200)
    low, high = stats.bootstrap_ci(v)
    assert low < v.mean() < high and high - low < 0.5
    assert (low, high) == stats.bootstrap_ci(v, seed=0)  # seeded
    assert stats.bootstrap_ci(v, seed=1) != (low, high)
    lo50, hi50 = stats.bootstrap_ci(v, level=0.5)
    assert low < lo50 < hi50 < high
    mlo, mhi = stats.bootstrap_ci(v, np.median)
    assert mlo < np.median(v) < mhi
    assert stats.bootstrap_ci([3.0, 3.0, np.nan, 3.0]) == (3.0, 3.0)
    assert all(math.isnan(b) for b in stats.bootstrap_ci([1.0, np.nan]))
    with pytest.raises(ValueError, match="level"):
        stats.bootstrap_ci(v, level=95)


def test_kendall_ci():
    assert stats.kendall_ci([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx((1.0, 1.0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = x + rng.normal(size=60)
    tau = stats.kendall(x, y)["tau"]
    low, high = stats.kendall_ci(x, y, seed=3)
    assert -1 <= low < tau < high <= 1
    assert (low, high) == stats.kendall_ci(x, y, seed=3)
    assert all(math.isnan(b) for b in stats.kendall_ci([1, 2], [1, 2]))


def test_bn_gain_test_hand_case():
    # gains: sparse +.3 each; dense .1 .0 -.1 -.2 .2 -> d = .2 .3 .4 .5 .1, all > 0: p = 1/32
    sparse_plain = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    sparse_bn = sparse_plain + 0.3
    dense_plain = np.array([0.6, 0.6, 0.6, 0.6, 0.6, np.nan])
    dense_bn = np.array([0.7, 0.6, 0.5, 0.4, 0.8, 0.9])
    res = stats.bn_gain_test(sparse_bn, sparse_plain, dense_bn, dense_plain)
    assert res["n"] == 5
    assert res["pvalue"] == pytest.approx(1 / 32) and res["statistic"] == 15
    assert res["median_diff"] == pytest.approx(0.3)
    assert 0.1 - 1e-12 <= res["ci_low"] <= 0.3 <= res["ci_high"] <= 0.5 + 1e-12
    # no BN advantage for sparse: all d = 0 -> p = 1
    flat = stats.bn_gain_test([0.8] * 4, [0.5] * 4, [0.7] * 4, [0.4] * 4)
    assert flat["pvalue"] == 1.0
    with pytest.raises(ValueError, match="equal-shaped"):
        stats.bn_gain_test([1, 2], [1, 2], [1, 2], [1])


def test_benjamini_hochberg_hand_case():
    # sorted .01 .03 .04 .2 (m = 4): p*m/rank = .04 .06 .0533 .2; running min from the top:
    # .04 .0533 .0533 .2
    adj = stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.2])
    np.testing.assert_allclose(adj, [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    table = stats.benjamini_hochberg([[0.01, np.nan], [0.04, 0.03]])
    assert table.shape == (2, 2) and np.isnan(table[0, 1])
    np.testing.assert_allclose(table[[0, 1, 1], [0, 0, 1]], [0.03, 0.04, 0.04])
    assert np.isnan(stats.benjamini_hochberg([np.nan])).all()
