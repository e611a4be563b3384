"""Presets, the chapter registry and grids, pairing and the analysis tables; publish and
execute helpers."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gflib import analysis, chapters, correlations, presets, publish, summaries
from gflib.chapters import batchnorm, sc_sdc_and_egf
from gflib.config import RunConfig
from gflib.flow import MEASURES
from gflib.execute import parse_value
from gflib.results import RUN_COLUMNS, Results, typed_runs
from gflib.config import config_key


def test_preset_from_environment_and_overrides(monkeypatch):
    monkeypatch.setenv("GFLIB_PRESET", "smoke")
    assert presets.get().name == "smoke"
    monkeypatch.delenv("GFLIB_PRESET")
    assert presets.get().name == "book"
    p = presets.get("book", sparse_width=50, seeds=None)
    assert p.sparse_width == 50 and p.seeds == presets.PRESETS["book"].seeds
    assert p.dense_widths == [12, 20, 28, 35, 42]  # round(.25, .4, .55, .7, .85 x 50)
    assert p.summary == ("digits, all training / all test images, sparse width 50, dense widths "
                         "12, 20, 28, 35, 42, 20 epochs, seeds 0, 1")
    assert presets.get("paper").dense_widths == [308, 923, 1538, 2153, 2768]
    assert presets.get("book", seeds=[np.int64(4), 5]).seeds == (4, 5)
    with pytest.raises(ValueError, match="'huge'"):
        presets.get("huge")
    with pytest.raises(ValueError, match="colour"):
        presets.get("book", colour=1)


@pytest.mark.parametrize("override, message", [
    (dict(seeds=[]), "seeds must be a non-empty"), (dict(seeds=[0, 0]), "distinct"),
    (dict(seeds=[1.5]), "1.5"), (dict(seeds="01"), "'01'"), (dict(epochs=0), "epochs"),
    (dict(sparse_width=2.5), "sparse_width"), (dict(dataset="svhn"), "'svhn'"),
    (dict(dense_ratios=()), "dense_ratios"), (dict(train_subset=0), "train_subset"),
])
def test_preset_overrides_are_checked(override, message):
    """Before: empty seeds silently became the preset's seeds in a chapter."""
    with pytest.raises(ValueError, match=message):
        presets.get("book", **override)


WIDE_AS_DENSE = "not all below it: a sparse member as wide as its dense partner keeps every weight"


@pytest.mark.parametrize("override, message", [
    (dict(sparse_width=1), WIDE_AS_DENSE), (dict(sparse_width=2), WIDE_AS_DENSE),
    (dict(dense_ratios=(0.5, 1.0)), r"dense_ratios must be .* in \(0, 1\), got \(0.5, 1.0\)"),
])
def test_a_preset_whose_sparse_members_would_be_dense_is_refused(override, message):
    """Before: ``sparse_width=1`` made every dense width 1 (a ratio of 1 any width), and the
    chapters' "sparse" members (``match_width == width``) kept every weight: dense nets
    analysed as sparse."""
    with pytest.raises(ValueError, match=message):
        presets.get("smoke", **override)
    assert presets.get("smoke", sparse_width=3).dense_widths == [1, 2]


def test_chapter_registry():
    assert chapters.names()[:2] == ["sc_sdc_and_egf", "batchnorm"]
    assert chapters.get("batchnorm") is batchnorm
    with pytest.raises(ValueError, match="'nope'.*sc_sdc_and_egf, batchnorm"):
        chapters.get("nope")
    for name in chapters.names():
        module = chapters.get(name)
        assert module.NAME == name and module.TITLE and module.CLAIMS
        for attr in ("grid", "analyse", "report", "settings"):
            assert callable(getattr(module, attr))


def test_plan_description_fits_the_book_column():
    plan = chapters.plan(batchnorm, "book", store="/a/results/folder/" + "deep/" * 20)
    text = plan.describe()
    assert text.startswith("preset book: ") and "800 runs, sparse width 100" in text
    assert "deep/" not in text  # a machine's path says nothing to a reader of the book
    assert max(len(line) for line in text.splitlines()) <= 78


def test_unknown_optimizer_in_a_chapter_grid_is_a_clear_error(monkeypatch):
    """Before: an unknown optimizer in a chapter grid was a bare KeyError."""
    monkeypatch.setitem(sc_sdc_and_egf.SETTINGS, "optimizers", ("adam", "adamax"))
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'; allowed: adagrad, adam"):
        sc_sdc_and_egf.grid(presets.get("book"))


def test_every_scale_gives_at_least_ten_pairs_per_cell():
    for name in ("book", "fmnist", "paper"):
        p = presets.get(name)
        assert len(p.dense_widths) * len(p.seeds) >= 10
    assert set(batchnorm.SETTINGS["optimizers"]) == {"adagrad", "adam", "rmsprop", "sgd",
                                                     "momentum"}
    assert len(batchnorm.SETTINGS["variants"]) == 8


def test_variant_flags_round_trip():
    for v in ("NR", "DA", "L2", "SC", "BN", "DA_BN", "L2_BN", "SC_BN", "DA_SC_BN", "DA_L2_SC_BN",
              "WD_BN"):
        flags = analysis.variant_flags(v, 1e-4)
        assert analysis.variant_name(flags) == v
    assert analysis.variant_flags("DA_BN", 0.5) == {
        "augment": True, "l2": 0.0, "skip": False, "batchnorm": True, "weight_decay": 0.0}
    with pytest.raises(ValueError, match="XX"):
        analysis.variant_flags("XX_BN", 1e-4)


def test_pair_configs_match_widths_and_seeds():
    cfgs = analysis.pair_configs(RunConfig(depth=2), 40, [10, 30], seeds=(0, 1))
    assert len(cfgs) == 8
    sparse = [c for c in cfgs if c.kind == "sparse"]
    dense = [c for c in cfgs if c.kind == "dense"]
    assert {(c.width, c.match_width, c.seed) for c in sparse} == {
        (40, 10, 0), (40, 10, 1), (40, 30, 0), (40, 30, 1)}
    assert {(c.width, c.seed) for c in dense} == {(10, 0), (10, 1), (30, 0), (30, 1)}


def test_grids_have_the_documented_size():
    p = presets.get("book")
    assert len(sc_sdc_and_egf.grid(p)) == 3 * 5 * 2 * 5 * 2 * 2
    bn = batchnorm.grid(p)
    assert len(bn) == 5 * 8 * 5 * 2 * 2
    assert {c.depth for c in bn} == {4}
    # each optimizer at its default learning rate (the optimizer specs' default_lr)
    assert {(c.optimizer, c.lr) for c in bn} == {
        ("adagrad", 0.01), ("adam", 0.001), ("rmsprop", 0.001), ("sgd", 0.1),
        ("momentum", 0.01)}
    smoke = presets.get("smoke")
    assert len(batchnorm.grid(smoke)) == 2 * 2 * 2 * 2 * 2


def fake_results(batchnorm=False, sparse_gain=0.0, dense_gain=0.0, sparse_end=2.0):
    """Results with known metrics: sparse = dense + 0.1 accuracy for adam, - 0.1 for sgd (plus
    ``sparse_gain`` / ``dense_gain``); every run's EGF_2 curve goes from 1 at epoch 0 to 2 (a
    sparse run's: ``sparse_end``) at epoch 10."""
    rows, curves = [], []
    for opt in ("adam", "sgd"):
        for d in (5, 10, 15):
            for seed in range(4):
                acc = 0.5 + 0.01 * d + 0.001 * seed
                for kind in ("sparse", "dense"):
                    config = RunConfig(optimizer=opt, seed=seed, batchnorm=batchnorm,
                                       width=20 if kind == "sparse" else d,
                                       match_width=d if kind == "sparse" else None)
                    delta = ((0.1 if opt == "adam" else -0.1) + sparse_gain if kind == "sparse"
                             else dense_gain)
                    rows.append(fake_row(config, acc + delta))
                    end = sparse_end if kind == "sparse" else 2.0
                    curves += [{"key": rows[-1]["key"], "measure": "egf_l2", "epoch": e,
                                "value": v} for e, v in ((0, 1.0), (10, end))]
    return Results(typed_runs(pd.DataFrame(rows, columns=list(RUN_COLUMNS))),
                   pd.DataFrame(curves))


def fake_row(config, acc):
    row = {"key": config_key(config), **config.to_dict(), "kind": config.kind}
    row.update(test_acc=acc, test_loss=1 - acc, train_loss=0.0, train_acc=1.0, diverged=False,
               diverged_reason="", wall_s=1.0,
               **{f"mean_{m}": acc * k for k, m in
                  enumerate(("gf_l1", "gf_l2", "egf_l1", "egf_l2"), 1)})
    return row


def test_pairs_match_sparse_with_its_dense_partner():
    paired = analysis.pairs(fake_results().runs)
    assert len(paired) == 2 * 3 * 4
    assert (paired["sparse_width"] == 20).all()
    diff = paired["test_acc_sparse"] - paired["test_acc_dense"]
    assert np.allclose(diff[paired["optimizer"] == "adam"], 0.1)
    assert np.allclose(diff[paired["optimizer"] == "sgd"], -0.1)
    assert (paired["variant"] == "NR").all()


def test_pairing_keys_are_the_config_fields_not_the_metrics():
    """Before: pairing merged on every column but a list of exclusions, so any new metric column
    silently became a join key. Now the keys are the config fields less the member fields."""
    keys = analysis.pair_keys()
    assert "optimizer" in keys and "seed" in keys and "dense_width" in keys
    assert not {"width", "match_width", "density", "init", "test_acc", "key"} & set(keys)
    runs = fake_results().runs.assign(extra_metric=np.arange(48.0))
    assert len(analysis.pairs(runs)) == 24


def test_kind_comes_from_the_config():
    """Before: "sparse" was match_width.notna(): a run made sparse by density < 1 was dense."""
    res = Results.from_results([])
    assert list(res.runs.columns) == list(RUN_COLUMNS)
    assert RunConfig(density=0.5).kind == "sparse" and RunConfig(match_width=8).kind == "sparse"
    assert RunConfig().kind == "dense"
    runs = fake_results().runs
    runs = pd.concat([runs, pd.DataFrame([fake_row(RunConfig(density=0.5), 0.9)])],
                     ignore_index=True)
    corr = correlations.correlations(runs)
    assert corr.loc[corr["kind"] == "sparse", "n"].max() == 25


def test_sparse_vs_dense_table_sides():
    """One cell per optimizer x depth, 12 pairs each: adam's 12 differences are all +0.1, so the
    exact one-sided signed-rank p is 1 / 2**12; sgd's are all -0.1, p = 1. Benjamini-Hochberg
    over the two cells: q = p * 2 / rank, running minimum from the top: 2 / 2**12 and 1."""
    cells = analysis.cell_tests(analysis.pairs(fake_results().runs), "optimizer", "depth")
    assert list(cells.p.index) == ["adam", "sgd"] and list(cells.p.columns) == [2]
    assert cells.p.loc["adam", 2] == pytest.approx(1 / 2 ** 12)
    assert cells.p.loc["sgd", 2] == pytest.approx(1.0)
    assert cells.q.loc["adam", 2] == pytest.approx(2 / 2 ** 12)
    assert cells.q.loc["sgd", 2] == pytest.approx(1.0)
    assert (cells.n == 12).all().all() and cells.n_text() == "12"
    assert cells.median.loc["adam", 2] == pytest.approx(0.1)
    assert cells.median.loc["sgd", 2] == pytest.approx(-0.1)
    assert cells.cells() == 2 and cells.significant("p") == 1 and cells.significant("q") == 1
    # unpaired (Mann-Whitney U): n counts the values of both samples, 12 + 12
    unpaired = analysis.cell_tests(analysis.pairs(fake_results().runs), "optimizer", "depth",
                                   matched=False)
    assert unpaired.p.loc["adam", 2] < 0.01 and unpaired.p.loc["sgd", 2] > 0.99
    assert (unpaired.n == 24).all().all()


def test_correlations_and_verdict():
    corr = correlations.correlations(fake_results().runs)
    # every measure is a positive multiple of accuracy within a kind: tau(acc) = 1, tau(loss) = -1
    recorded = corr[~corr["measure"].str.startswith("gfall")]  # fake_results has no gfall
    assert np.allclose(recorded.loc[recorded["target"] == "test_acc", "tau"], 1.0)
    assert np.allclose(recorded.loc[recorded["target"] == "test_loss", "tau"], -1.0)
    assert corr.loc[corr["measure"].str.startswith("gfall"), "tau"].isna().all()
    assert (corr.loc[corr["measure"] == "egf_l2", "n"] == 24).all()  # per kind and depth
    summary = correlations.correlation_summary(corr)
    assert list(summary.index) == list(MEASURES)
    assert list(summary.columns) == [(k, t) for k in ("sparse", "dense")
                                     for t in ("test_loss", "test_acc")]
    # mean |tau| 1 for every recorded measure: EGF ties with the gradient norm (no margin)
    recorded_rows = ["gf_l1", "gf_l2", "egf_l1", "egf_l2"]
    assert np.allclose(summary.loc[recorded_rows], 1.0)
    assert summary.loc[["gfall_l1", "gfall_l2"]].isna().all().all()
    best = sc_sdc_and_egf.best_measures(summary)
    assert set(best) == {"sparse/test_loss", "sparse/test_acc", "dense/test_loss",
                         "dense/test_acc"}
    assert all(sorted(ranked) == sorted(recorded_rows) for ranked in best.values())


def bn_results():
    """:func:`fake_results` (NR) and its BN twin: BN adds 0.2 accuracy to sparse nets, 0.05 to
    dense, and flattens the sparse nets' flow curve."""
    plain = fake_results()
    bn = fake_results(batchnorm=True, sparse_gain=0.2, dense_gain=0.05, sparse_end=1.0)
    return Results(pd.concat([plain.runs, bn.runs], ignore_index=True),
                   pd.concat([plain.curves, bn.curves], ignore_index=True))


def test_egf_margin_and_claim_2_verdict():
    """In fake_results every measure is a multiple of accuracy, so EGF and the gradient norm rank
    runs identically in the data and in every resample: margin 0 with the interval (0, 0), "not
    distinguishable"; one verdict per target, test accuracy first, no p (the interval decides),
    no paper margin on digits (the paper did not use it)."""
    m, depth_mean = correlations.egf_margins(fake_results().runs)
    assert len(m) == 2 * 2 * 2  # kind x target x baseline scope
    weights = m[m["baseline"] == "weights"]
    assert np.allclose(weights["margin"], 0.0)
    assert np.allclose(weights["ci_low"], 0.0) and np.allclose(weights["ci_high"], 0.0)
    assert (weights["n"] == 24).all()
    assert m[m["baseline"] == "all gradients"]["margin"].isna().all()  # not recorded here
    # the paper's form of its table: mean |tau| over depths per measure, 1 where recorded
    recorded = depth_mean[~depth_mean["measure"].str.startswith("gfall")]
    assert np.allclose(recorded["abs_tau"], 1.0) and (recorded["n"] == 24).all()
    assert depth_mean.loc[depth_mean["measure"].str.startswith("gfall"), "abs_tau"].isna().all()
    acc, loss = sc_sdc_and_egf.egf_verdicts(m, "digits", "book")
    assert acc.test == "EGF against the gradient norm, test accuracy"
    assert loss.test == "EGF against the gradient norm, test loss"
    for v in (acc, loss):
        assert (v.claim, v.form, v.n) == (2, "paper", 24)
        assert v.effect == pytest.approx(0.0) and v.interval == pytest.approx((0.0, 0.0))
        assert np.isnan(v.p) and np.isnan(v.paper_effect)
        assert v.status == "not distinguishable"


def test_claim_1_construction_verdict():
    """Every sparse member of fake_results (width 20, depth 2, digits) has its dense partner with
    equal layer counts: reproduced, with the narrowest pair's mean hidden fan-in (5/20)^2 * 20;
    a sparse run without its partner makes it not reproduced; no pairs, not run."""
    runs = fake_results().runs
    v = sc_sdc_and_egf.construction_verdict(runs, "book")
    assert (v.claim, v.status, v.n) == (1, "reproduced", 24)
    assert v.effect == pytest.approx(1.25) and "not measured" in v.sentence
    assert "about 31" in v.sentence and "equal active weights" in v.paper  # the paper's ~31
    assert v.form == "check" and v.condition_holds is True and np.isnan(v.p)
    dense = runs.index[runs["kind"] == "dense"]
    assert sc_sdc_and_egf.construction_verdict(runs.drop(dense[:1]), "book").status == \
        "not reproduced"
    assert sc_sdc_and_egf.construction_verdict(runs.drop(dense), "book").status == "not run"
    a = sc_sdc_and_egf.analyse(fake_results(), presets.get("book"))
    # claim 1's check, then claim 2 in the paper's form for test accuracy and test loss
    assert [(v.claim, v.form) for v in a.verdicts] == [(1, "check"), (2, "paper"), (2, "paper")]
    assert a.headline(2).test == "EGF against the gradient norm, test accuracy"
    assert a.counts == analysis.Counts(runs=48, diverged=0, at_chance=0)
    assert set(a.cells) == {0.001}  # one learning rate in fake_results
    assert a.cells[0.001].p.loc["adam", 2] == pytest.approx(1 / 2 ** 12)


def test_tau_margin_by_hand():
    """Within each depth EGF_1 orders the runs as accuracy does and EGF_2 reverses them
    (|tau| = 1 both); the gradient L1 norm swaps the first two of four runs: of the 6 pairs only
    (1, 2) is discordant, tau = (5 - 1) / 6 = 4/6; the L2 norm is constant (no tau). Margin =
    1 - 4/6. Accuracies well above chance on digits, so every run's flow is usable."""
    runs = pd.DataFrame({
        "depth": [1] * 4 + [2] * 4, "diverged": False, "dataset": "digits",
        "test_subset": np.nan, "test_acc": [0.6, 0.7, 0.8, 0.9] * 2,
        "mean_egf_l1": [1, 2, 3, 4] * 2, "mean_egf_l2": [4, 3, 2, 1] * 2,
        "mean_gf_l1": [2, 1, 3, 4] * 2, "mean_gf_l2": [1, 1, 1, 1] * 2})
    res = correlations.tau_margin(runs, "test_acc", n_resamples=200)
    assert res["margin"] == pytest.approx(1 - 4 / 6)
    assert res["best_egf"] in ("egf_l1", "egf_l2") and res["best_base"] == "gf_l1"
    assert res["ci_low"] <= res["margin"] <= res["ci_high"] and res["n"] == 8


def test_kendall_tau_b_matches_scipy_with_ties():
    from scipy import stats as ss

    from gflib.stats import kendall_tau_b
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, (3, 30, 4)).astype(float)
    y = rng.integers(0, 4, (3, 30)).astype(float)
    want = [[ss.kendalltau(x[r, :, m], y[r]).statistic for m in range(4)] for r in range(3)]
    assert np.allclose(kendall_tau_b(x, y), want)
    assert np.isnan(kendall_tau_b(np.ones((5, 1)), np.arange(5.0))).all()


def test_unit_test_averages_to_the_unit_first():
    """Eight comparisons, two per optimizer x seed unit: the test sees 4 unit means, not 8."""
    t = pd.DataFrame({"optimizer": list("aaaabbbb"), "seed": [0, 0, 1, 1] * 2,
                      "excess": [0.1, 0.3, 0.2, 0.2, 0.5, 0.5, -0.1, 0.1]})
    res = analysis.unit_test(t, "excess", ["optimizer", "seed"])
    assert res.n == 4 and list(res.means) == pytest.approx([0.2, 0.2, 0.5, 0.0])
    assert list(res.means.index) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert res.effect == pytest.approx(0.225)
    # exact signed rank, zero split: the 0 (rank 1) adds 0.5 to T+ whatever the signs, the
    # others have ranks 2.5, 2.5, 4; T+ = 9.5 only when all three are positive: p = 1/8
    assert res.pvalue == pytest.approx(0.125)
    assert res.min_p == pytest.approx(1 / 2 ** 4) and res.needs == 5  # 1/2**5 < 0.05
    assert res.ci_low <= res.effect <= res.ci_high
    by = analysis.effect_by(t.assign(w=[1, 2] * 4), "excess", ["optimizer", "seed"], "w")
    assert list(by.index) == [1, 2] and list(by["n"]) == [4, 4]


def test_regime_counts_hidden_fan_in():
    from gflib.scsdc import regime
    r = regime(64, 10, 2, 100, [10, 50])
    assert list(r["expected_fan_in"]) == pytest.approx([1.0, 25.0])
    assert list(r["mean_fan_in"]) == pytest.approx([1.0, 25.0])  # exact counts per layer
    assert r.loc[10, "no_input"] > 0.3 and r.loc[50, "no_input"] == 0


def test_verdict_data_and_p_for_people():
    """Changed on purpose: a p keeps two significant digits with trailing zeros (0.05 reads
    "0.050", 0.999 "1.0"; three digits where two would carry it across 0.05), and a verdict's
    status is no longer given but follows from its data (gflib.verdict.judge)."""
    from gflib.verdict import Verdict, format_p, markdown
    assert [format_p(p) for p in (7.77e-24, 0.00023, 0.0123, 0.05, 0.999, 0.0499)] == [
        "p < 1e-4", "p = 0.00023", "p = 0.012", "p = 0.050", "p = 1.0", "p = 0.0499"]
    v = Verdict(claim=3, test="extra gain", scale="book", form="paper", effect=1.1,
                effect_unit="points", interval=(0.6, 1.8), p=7.7e-24, n=10,
                unit="optimizer x seed units", paper_effect=2.0,
                sentence="the gain is larger", paper="65 % of BN cells")
    assert v.numbers() == ("+1.1 points, 95 % CI +0.6 to +1.8, p < 1e-4, n = 10 optimizer x "
                           "seed units")
    # significant with the interval above 0, but the paper's 2.0 lies outside it: partly
    assert v.status == "partly" and "+2.0 lies outside" in v.reason
    assert markdown(v).startswith("**Claim 3, extra gain (book): partly.** The gain is larger.")
    assert "The paper: 65 % of BN cells." in markdown(v)
    with_q = Verdict(3, "t", "book", "paper", 1.1, "points", (0.6, 1.8), p=0.012, n=10, q=0.03)
    assert with_q.p_text() == "p = 0.012 (q = 0.030)"
    small = Verdict(2, "margin", "book", "paper", -0.035, "|tau|", (-0.1003, 0.0127), n=299,
                    unit="runs")
    assert small.numbers() == "-0.035 |tau|, 95 % CI -0.100 to +0.013, n = 299 runs"
    assert small.status == "not distinguishable"  # no p: the interval covers 0
    with pytest.raises(ValueError, match="'maybe'"):
        Verdict(3, "t", "book", "maybe", 0.0, "")


def test_bn_gains_difference_of_differences():
    gains = batchnorm.bn_gains(analysis.pairs(bn_results().runs))
    assert len(gains) == 24
    assert np.allclose(gains["sparse_gain"], 0.2) and np.allclose(gains["dense_gain"], 0.05)
    assert np.allclose(gains["excess"], 0.15)


def log_spread(base):
    """The spread across dense widths 5, 10, 15 (ddof 1) of log10 of fake_row's mean EGF_2,
    4 x (base + 0.01 x width), for one unit x variant x kind."""
    return np.std(np.log10(4 * (base + 0.01 * np.array([5, 10, 15]))), ddof=1)


def test_bn_analysis_by_hand(monkeypatch):
    monkeypatch.setitem(batchnorm.SETTINGS, "optimizers", ("adam", "sgd"))
    monkeypatch.setitem(batchnorm.SETTINGS, "variants", ("NR", "BN"))
    a = batchnorm.analyse(bn_results(), presets.get("book"))
    cells = a.cells
    assert list(cells.p.index) == ["adam", "sgd"] and list(cells.p.columns) == ["NR", "BN"]
    # sparse - dense: adam NR +0.1, adam BN +0.25, sgd NR -0.1, sgd BN +0.05, 12 pairs each:
    # exact one-sided signed-rank p = 1/2**12 where all 12 are positive, 1 where all negative
    assert (cells.n == 12).all().all() and cells.n_text() == "12"
    for opt, variant in (("adam", "NR"), ("adam", "BN"), ("sgd", "BN")):
        assert cells.p.loc[opt, variant] == pytest.approx(1 / 2 ** 12)
        # Benjamini-Hochberg over the 4 cells: the three tied p at ranks 1-3, the running
        # minimum from the top gives each p * 4 / 3
        assert cells.q.loc[opt, variant] == pytest.approx(4 / 3 / 2 ** 12)
    assert cells.p.loc["sgd", "NR"] == pytest.approx(1.0)
    assert cells.q.loc["sgd", "NR"] == pytest.approx(1.0)
    shown = analysis.pq_table(cells)
    assert shown.loc["sgd", "NR"] == "1.0 (1.0)" and shown.loc["adam", "NR"] == "0.00024 (0.00033)"
    for who in ("ours (p)", "ours (q)"):
        assert a.shares.loc["without BN", who] == 0.5 and a.shares.loc["with BN", who] == 1.0
    assert list(a.paper.index) == ["adam", "sgd"] and a.paper.notna().all().all()
    assert list(a.agreement.index) == ["adam", "sgd"]
    # every comparison's excess is 0.15 (24: 2 optimizers x 3 widths x 4 seeds), tested at
    # optimizer x seed: 8 unit means, all positive, exact p = 1/2**8, the smallest 8 units reach
    assert len(a.gains) == 24 and np.allclose(a.gains["excess"], 0.15)
    g = a.gain
    assert g.effect == pytest.approx(0.15) and g.n == 8
    assert list(g.means.index.names) == ["optimizer", "seed"]
    assert g.pvalue == pytest.approx(1 / 2 ** 8) and g.min_p == pytest.approx(1 / 2 ** 8)
    assert g.interval == pytest.approx((0.15, 0.15))  # constant unit means
    by_width = a.gain_by_width
    assert list(by_width.index) == [5, 10, 15] and (by_width["n"] == 8).all()
    assert np.allclose(by_width["effect"], 0.15)
    by_opt = a.gain_by_optimizer  # within an optimizer, the units are its seeds
    assert list(by_opt.index) == ["adam", "sgd"] and (by_opt["n"] == 4).all()
    assert np.allclose(by_opt["pvalue"], 1 / 2 ** 4)
    # over training: BN flattens the sparse curves (log10-std of (1, 2) is 0.213, of (1, 1)
    # is 0); dense curves are (1, 2) with and without BN: steadier = 0.213 at every unit
    st = a.steady_epochs
    assert st.effect == pytest.approx(np.std([0.0, np.log10(2.0)], ddof=1))
    assert st.n == 8 and st.pvalue == pytest.approx(1 / 2 ** 8)
    assert a.stability.loc["sparse", "with BN"] == 0.0
    assert a.stability.loc["dense", "with BN"] == pytest.approx(st.effect)
    # across widths: fake_row's mean EGF_2 is 4 x accuracy; per optimizer x seed unit,
    # steadier = (sparse spread without BN - with) - (dense without - with)
    want = []
    for shift in (0.1, -0.1):  # adam's sparse nets +0.1, sgd's -0.1; BN adds .2 sparse, .05 dense
        for seed in range(4):
            base = 0.5 + 0.001 * seed
            want.append((log_spread(base + shift) - log_spread(base + shift + 0.2))
                        - (log_spread(base) - log_spread(base + 0.05)))
    sw = a.steady_widths
    assert sw.n == 8 and list(sw.means) == pytest.approx(want)
    assert sw.effect == pytest.approx(np.mean(want)) and min(want) > 0
    assert sw.pvalue == pytest.approx(1 / 2 ** 8)
    # the verdicts (batchnorm.TESTS), q over claim 3's three tests: all p = 1/2**8, so q = p
    assert [v.test for v in a.verdicts] == list(batchnorm.TESTS)
    gain, widths, epochs = a.verdicts
    assert gain.status == "reproduced" and gain.effect == pytest.approx(15.0) and gain.n == 8
    assert gain.unit == "optimizer x seed units" and gain.condition_holds is True
    assert gain.interval == pytest.approx((15.0, 15.0)) and gain.q == pytest.approx(1 / 2 ** 8)
    assert widths.form == "paper" and epochs.form == "direct"
    assert widths.status == epochs.status == "reproduced"
    assert epochs.effect == pytest.approx(st.effect) and widths.effect == pytest.approx(sw.effect)
    assert a.counts == analysis.Counts(runs=96, diverged=0, at_chance=0)
    assert (a.diverged == 0).all().all()


def test_bn_analysis_when_every_run_diverged(monkeypatch):
    """Every run diverged: every statistic is empty and each test is "not run"."""
    monkeypatch.setitem(batchnorm.SETTINGS, "optimizers", ("adam", "sgd"))
    monkeypatch.setitem(batchnorm.SETTINGS, "variants", ("NR", "BN"))
    res = bn_results()
    res.runs["diverged"] = True
    a = batchnorm.analyse(res, presets.get("book"))
    assert a.counts == analysis.Counts(runs=96, diverged=96, at_chance=0)
    assert a.gain.n == 0 and np.isnan(a.gain.effect)
    assert [(v.test, v.status) for v in a.verdicts] == [(t, "not run") for t in batchnorm.TESTS]
    assert (a.diverged == 12).all().all()


def test_significance_shares_skip_empty_cells():
    p = pd.DataFrame({"NR": [0.01, 0.5], "BN": [0.01, np.nan], "SC_BN": [0.2, 0.3]},
                     index=["adam", "sgd"])
    shares = batchnorm.significance_shares(p)
    assert shares["without BN"] == 0.5 and shares["with BN"] == pytest.approx(1 / 3)


def test_flow_stability_reads_the_curves():
    stab = analysis.flow_stability(fake_results())
    assert len(stab) == 48
    assert np.allclose(stab["log_std"], np.std([0.0, np.log10(2.0)], ddof=1))


def test_results_save_and_load_round_trip(tmp_path):
    res = fake_results()
    csv, curves = res.save(tmp_path / "x.csv")
    back = Results.load(csv)
    assert curves.name == "x-curves.csv"
    pd.testing.assert_frame_equal(back.curves, res.curves, check_dtype=False)
    cols = ["key", "optimizer", "match_width", "kind", "test_acc", "diverged"]
    assert back.runs[cols].astype(str).equals(res.runs[cols].astype(str))


def test_stored_summaries_are_readable_and_paired():
    """Every committed book/data summary reads back with its provenance's run count, its
    fixed-mask sparse runs paired and its curves belonging to its runs."""
    for name in chapters.names():
        for label, results, meta in chapters.stored(name):
            runs = results.runs
            assert len(runs) == meta["n_runs"]
            assert set(runs["kind"]) == {"sparse", "dense"}
            fixed_masks = (runs["kind"] == "sparse") & (runs["prune"] == "none")
            assert len(analysis.pairs(runs)) == fixed_masks.sum()  # pruned runs have no twin
            assert set(results.curves["key"]) <= set(runs["key"])
            assert results.curves["epoch"].max() == runs["epochs"].max()


def test_publish_writes_summary_and_provenance(tmp_path):
    csv = publish.publish("sc_sdc_and_egf", "smoke", {"seeds": (0,)},
                          results_root=tmp_path / "results", out_root=tmp_path / "data",
                          progress=False)
    results, meta = summaries.load("sc_sdc_and_egf", "smoke", root=tmp_path / "data")
    table = results.runs
    assert len(table) == meta["n_runs"] == 16 and csv.with_name("smoke-curves.csv").is_file()
    assert meta["preset"] == "smoke" and meta["torch"] and meta["device_name"]
    assert set(meta) >= {"gflib_commit", "date", "wall_s", "overrides"}
    assert csv.stat().st_size < 1_000_000
    assert len(analysis.pairs(table)) == 8
    assert summaries.load("batchnorm", "smoke", root=tmp_path / "data") is None
    line = summaries.provenance_line(meta)
    assert "16 runs" in line and "smoke" in line


def test_publish_in_worker_processes_matches_one_process(tmp_path):
    grid = {"seeds": (0,)}
    common = dict(results_root=tmp_path / "results", out_root=tmp_path / "data", progress=False)
    publish.publish("sc_sdc_and_egf", "smoke", grid, **common)
    publish.publish("sc_sdc_and_egf", "smoke", grid, workers=2, name="smoke-w2", **common)
    assert summaries.names("sc_sdc_and_egf", root=tmp_path / "data") == ["smoke", "smoke-w2"]
    one = summaries.load("sc_sdc_and_egf", "smoke", root=tmp_path / "data")[0].runs
    two, meta = summaries.load("sc_sdc_and_egf", "smoke-w2", root=tmp_path / "data")
    two = two.runs
    assert meta["workers"] == 2 and meta["name"] == "smoke-w2" and meta["preset"] == "smoke"
    assert (tmp_path / "results" / "sc_sdc_and_egf" / "smoke-w2").is_dir()
    assert np.allclose(one["test_loss"], two["test_loss"], rtol=1e-5)
    assert np.allclose(one["mean_egf_l2"], two["mean_egf_l2"], rtol=1e-5)


@pytest.mark.parametrize("options, message", [({"workers": 0}, "workers"),
                                              ({"name": "../up"}, "'../up'")])
def test_publish_rejects_bad_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        publish.publish("sc_sdc_and_egf", "smoke", results_root=tmp_path, out_root=tmp_path,
                        **options)
    assert not any(tmp_path.iterdir())


def test_git_commit_names_the_code_that_runs(monkeypatch):
    monkeypatch.setenv("GFLIB_COMMIT", "abc123")
    assert summaries.git_commit() == "abc123"
    monkeypatch.delenv("GFLIB_COMMIT")
    commit = summaries.git_commit()
    if commit is None:
        pytest.skip("not a git checkout")
    head, _, dirty = commit.partition("-")
    assert len(head) == 40 and int(head, 16) >= 0 and dirty in ("", "dirty")


def test_publish_rejects_unknown_chapter():
    with pytest.raises(ValueError, match="'nope'"):
        publish.publish("nope", "smoke")


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("None") is None
    assert parse_value("[0, 1]") == [0, 1] and parse_value("cuda") == "cuda"


def test_a_summary_of_the_first_format_stays_readable():
    """A summary written before the curves table existed (one CSV with ``egf_l2@<epoch>``
    columns; here one cell of chapter 1's first H100 summary: adam, lr 0.001, depth 2, dense
    widths 10-90, two seeds) is read into the same two tables."""
    results = Results.load(Path(__file__).parent / "data" / "first-format.csv")
    runs = results.runs
    assert list(runs.columns)[:len(RUN_COLUMNS)] == list(RUN_COLUMNS)
    assert len(runs) == 20 and (runs["kind"] == "sparse").sum() == 10
    assert len(analysis.pairs(runs)) == 10
    assert set(results.curves["key"]) == set(runs["key"])
    assert sorted(results.curves["epoch"].unique()) == list(range(11))
    assert (results.curves.groupby("key").size() == 11).all()
    assert runs["diverged_reason"].eq("").all() and runs["final_density"].isna().all()


def test_signed_never_shows_a_negative_zero_or_nan():
    assert analysis.signed(-0.04, 1) == "+0.0" and analysis.signed(-0.06, 1) == "-0.1"
    assert analysis.signed(0.5) == "+0.50" and analysis.signed(float("nan")) == "n/a"


def test_with_interval_puts_the_estimate_first_with_its_interval():
    t = pd.DataFrame({"tau": [-0.4213, 0.1, np.nan, 0.5], "ci_low": [-0.551, np.nan, 0.0, 0.25],
                      "ci_high": [-0.3, 0.2, 1.0, 0.75]})
    assert analysis.with_interval(t).tolist() == [
        "-0.42 (-0.55 to -0.30)", "+0.10", "", "+0.50 (+0.25 to +0.75)"]
    assert analysis.with_interval(t.iloc[:1], digits=1).tolist() == ["-0.4 (-0.6 to -0.3)"]
    assert analysis.with_interval(t.iloc[:0]).empty


def test_margin_table_shows_the_margin_with_its_interval_first_and_n_as_an_integer():
    m = pd.DataFrame([{"kind": "sparse", "target": "test_acc", "baseline": "weights",
                       "margin": -0.0761, "ci_low": -0.1223, "ci_high": -0.021, "n": 300.0,
                       "best_egf": "egf_l2", "best_base": "gf_l1"}])
    t = analysis.margin_table(m)
    assert list(t.columns) == ["margin (95 % CI)", "n", "best EGF", "best norm"]
    assert t.index.names == ["kind", "target", "baseline"]
    row = t.loc[("sparse", "test_acc", "weights")]
    assert row["margin (95 % CI)"] == "-0.076 (-0.122 to -0.021)"
    assert str(row["n"]) == "300"
    assert analysis.margin_table(m.iloc[:0]).empty


def test_blank_missing_rounds_and_leaves_missing_values_empty():
    t = pd.DataFrame({"ours": [0.31749, 0.2], "paper": [0.355, np.nan]},
                     index=["gf_l1", "gfall_l1"])
    shown = analysis.blank_missing(t)
    assert shown.loc["gf_l1", "ours"] == "0.317" and shown.loc["gfall_l1", "paper"] == ""
    assert shown.loc["gfall_l1", "ours"] == "0.200"  # every number with the same decimals
    assert list(shown.index) == ["gf_l1", "gfall_l1"]
