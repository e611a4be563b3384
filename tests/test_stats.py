"""gflib.stats against small cases worked by hand, and its edge cases."""
import math

import numpy as np
import pandas as pd
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


def test_unit_test_averages_each_unit_before_the_signed_rank_test():
    """Ten comparisons in five optimizer x seed units (two each) and a unit whose only value is
    NaN: the test sees the 5 unit means 0.1, 0.3, 0.2, 0.5, -0.4, not the 10 comparisons.
    Ranks of |mean|: 0.1 -> 1, 0.2 -> 2, 0.3 -> 3, 0.4 -> 4, 0.5 -> 5; the negative one has rank
    4, T+ = 15 - 4 = 11. Exact null: each of the 2**5 sign patterns alike; T+ >= 11 <=> the
    negative ranks sum to <= 4: {}, {1}, {2}, {3}, {4}, {1, 2}, {1, 3}: p = 7/32."""
    from gflib import analysis
    t = pd.DataFrame({
        "optimizer": ["adam"] * 6 + ["sgd"] * 4 + ["sgd"],
        "seed": [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2],
        "excess": [0.3, -0.1, 0.2, 0.4, 0.6, -0.2, 1.0, 0.0, -0.3, -0.5, np.nan]})
    res = analysis.unit_test(t, "excess", ["optimizer", "seed"])
    assert res.n == 5  # units, not the 10 comparisons; the all-NaN unit drops out
    assert list(res.means.index) == [("adam", 0), ("adam", 1), ("adam", 2), ("sgd", 0),
                                     ("sgd", 1)]
    assert list(res.means) == pytest.approx([0.1, 0.3, 0.2, 0.5, -0.4])
    assert res.effect == pytest.approx((0.1 + 0.3 + 0.2 + 0.5 - 0.4) / 5)
    assert res.pvalue == pytest.approx(7 / 32, abs=1e-12)
    # the smallest p of an exact one-sided signed-rank test on 5 units: all 5 positive, 1/2**5;
    # the fewest units that can reach p < 0.05: 5 (1/2**4 = 0.0625 cannot)
    assert res.min_p == pytest.approx(1 / 2 ** 5) and res.needs == 5
    assert res.ci_low <= res.effect <= res.ci_high and res.interval == (res.ci_low, res.ci_high)
    assert res.scaled(100)["effect"] == pytest.approx(14.0)
    # the same 10 comparisons as 10 units would be another test (n 10, another p)
    flat = analysis.unit_test(t.assign(row=range(len(t))), "excess", ["row"])
    assert flat.n == 10 and flat.min_p == pytest.approx(1 / 2 ** 10)
    assert flat.pvalue != pytest.approx(res.pvalue)
    # all of one sign: the exact minimum 1/2**n is reached
    pos = analysis.unit_test(t.assign(excess=t["excess"].abs() + 0.01 * np.arange(len(t))),
                             "excess", ["optimizer", "seed"])
    assert pos.n == 5 and pos.pvalue == pytest.approx(pos.min_p) == pytest.approx(1 / 32)
    # no finite value: no units, NaN effect and p
    none = analysis.unit_test(t.assign(excess=np.nan), "excess", ["optimizer", "seed"])
    assert none.n == 0 and np.isnan(none.effect) and np.isnan(none.pvalue)
    assert np.isnan(none.min_p)


def test_q_values_hand_case():
    # sorted .01 .03 .04 .2 (m = 4): p*m/rank = .04 .06 .0533 .2; running min from the top:
    # .04 .0533 .0533 .2
    from gflib.verdict import q_values
    p = pd.DataFrame([[0.01, 0.04], [0.03, 0.2]], index=["adam", "sgd"], columns=["NR", "BN"])
    q = q_values(p)
    assert list(q.index) == ["adam", "sgd"] and list(q.columns) == ["NR", "BN"]
    np.testing.assert_allclose(q.to_numpy(), [[0.04, 0.16 / 3], [0.16 / 3, 0.2]])
    # a missing p is no test: m = 3, sorted .01 .03 .04 -> .03 .045 .04 -> min from the top
    # .03 .04 .04
    table = q_values(pd.DataFrame([[0.01, np.nan], [0.04, 0.03]]))
    assert table.shape == (2, 2) and np.isnan(table.iloc[0, 1])
    np.testing.assert_allclose(table.to_numpy()[[0, 1, 1], [0, 0, 1]], [0.03, 0.04, 0.04])
    assert q_values(pd.DataFrame([[np.nan]])).isna().all().all()


def test_adjust_gives_each_claim_and_scale_its_own_family():
    """BH q within each (claim, scale): claim 3 at book has p .01, .04, .03 (m = 3: q .03, .04,
    .04); claim 3 at fmnist and claim 2 at book are families of one (q = p); a verdict without p
    gets no q."""
    from gflib.verdict import Verdict, adjust

    def v(claim, scale, p):
        return Verdict(claim, "t", scale, "paper", 1.0, "points", (0.5, 1.5), p=p, n=10)
    out = adjust([v(3, "book", 0.01), v(3, "book", 0.04), v(3, "fmnist", 0.04),
                  v(2, "book", 0.2), v(3, "book", 0.03), v(3, "book", float("nan"))])
    np.testing.assert_allclose([x.q for x in out[:5]], [0.03, 0.04, 0.04, 0.2, 0.04])
    assert math.isnan(out[5].q)
    assert [x.p for x in out[:5]] == [0.01, 0.04, 0.04, 0.2, 0.03]  # p is left as it was
