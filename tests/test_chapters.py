"""Presets, the chapter registry and grids, pairing and the analysis tables; publish and
execute helpers."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gflib import analysis, chapters, presets, publish, summaries
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
    assert {(c.optimizer, c.lr) for c in bn} == set(batchnorm.LRS.items())
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
    corr = analysis.correlations(runs)
    assert corr.loc[corr["kind"] == "sparse", "n"].max() == 25


def test_sparse_vs_dense_table_sides():
    table = analysis.sparse_vs_dense_table(analysis.pairs(fake_results().runs), "optimizer",
                                           "depth")
    assert table.loc["adam", 2] < 0.01 and table.loc["sgd", 2] > 0.99
    assert table.attrs["n"].loc["adam", 2] == 12


def test_correlations_and_verdict():
    corr = analysis.correlations(fake_results().runs)
    # every measure is a positive multiple of accuracy within a kind: tau(acc) = 1, tau(loss) = -1
    recorded = corr[~corr["measure"].str.startswith("gfall")]  # fake_results has no gfall
    assert np.allclose(recorded.loc[recorded["target"] == "test_acc", "tau"], 1.0)
    assert np.allclose(recorded.loc[recorded["target"] == "test_loss", "tau"], -1.0)
    assert corr.loc[corr["measure"].str.startswith("gfall"), "tau"].isna().all()
    summary = analysis.correlation_summary(corr)
    assert list(summary.index) == list(MEASURES)
    verdict = sc_sdc_and_egf.egf_verdict(summary)
    assert verdict["sparse/test_acc"]["egf_margin"] == pytest.approx(0.0)
    assert verdict["sparse/test_acc"]["egf_best"] is False


def bn_results():
    """:func:`fake_results` (NR) and its BN twin: BN adds 0.2 accuracy to sparse nets, 0.05 to
    dense, and flattens the sparse nets' flow curve."""
    plain = fake_results()
    bn = fake_results(batchnorm=True, sparse_gain=0.2, dense_gain=0.05, sparse_end=1.0)
    return Results(pd.concat([plain.runs, bn.runs], ignore_index=True),
                   pd.concat([plain.curves, bn.curves], ignore_index=True))


def test_egf_margin_and_claim_2_verdict():
    """In fake_results every measure is a multiple of accuracy, so EGF and the gradient norm rank
    runs identically: margin 0 with a degenerate interval, "not distinguishable"."""
    m = sc_sdc_and_egf.margins(fake_results().runs)
    weights = m[m["baseline"] == "weights"]
    assert np.allclose(weights["margin"], 0.0) and np.allclose(weights["ci_low"], 0.0)
    assert m[m["baseline"] == "all gradients"]["margin"].isna().all()  # not recorded here
    v = sc_sdc_and_egf.verdict(m, "book")
    assert v.claim == 2 and v.status == "not distinguishable" and v.n == 24


def test_claim_1_construction_verdict():
    """Every sparse member of fake_results (width 20, depth 2, digits) has its dense partner with
    equal layer counts: reproduced, with the narrowest pair's mean hidden fan-in (5/20)^2 * 20;
    a sparse run without its partner makes it not reproduced; no pairs, not run."""
    runs = fake_results().runs
    v = sc_sdc_and_egf.construction_verdict(runs, "book")
    assert (v.claim, v.status, v.n) == (1, "reproduced", 24)
    assert v.effect == pytest.approx(1.25) and "not measured" in v.sentence and "31" in v.paper
    dense = runs.index[runs["kind"] == "dense"]
    assert sc_sdc_and_egf.construction_verdict(runs.drop(dense[:1]), "book").status == \
        "not reproduced"
    assert sc_sdc_and_egf.construction_verdict(runs.drop(dense), "book").status == "not run"
    claims = [v.claim for v in sc_sdc_and_egf.analyse(fake_results(), presets.get("book"))["verdicts"]]
    assert claims == [1, 2]


def test_tau_margin_by_hand():
    """Within each depth EGF_1 orders the runs as accuracy does (|tau| = 1), the best baseline is
    reversed on two of four runs (|tau| = 1/3 with n = 4: 4 concordant... see below)."""
    runs = pd.DataFrame({
        "depth": [1] * 4 + [2] * 4, "diverged": False,
        "test_acc": [1, 2, 3, 4] * 2,
        "mean_egf_l1": [1, 2, 3, 4] * 2, "mean_egf_l2": [4, 3, 2, 1] * 2,
        "mean_gf_l1": [2, 1, 3, 4] * 2, "mean_gf_l2": [1, 1, 1, 1] * 2})
    res = analysis.tau_margin(runs, "test_acc", n_resamples=200)
    # gf_l1 vs acc: pairs (12 discordant, others concordant): 5 C, 1 D -> tau = 4/6
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
    assert res["n"] == 4 and list(res["means"]) == pytest.approx([0.2, 0.2, 0.5, 0.0])
    assert res["effect"] == pytest.approx(0.225)
    assert res["pvalue"] == pytest.approx(0.125)  # exact signed-rank, a zero split
    by = analysis.effect_by(t.assign(w=[1, 2] * 4), "excess", ["optimizer", "seed"], "w")
    assert list(by.index) == [1, 2] and list(by["n"]) == [4, 4]


def test_regime_counts_hidden_fan_in():
    from gflib.scsdc import regime
    r = regime(64, 10, 2, 100, [10, 50])
    assert list(r["expected_fan_in"]) == pytest.approx([1.0, 25.0])
    assert list(r["mean_fan_in"]) == pytest.approx([1.0, 25.0])  # exact counts per layer
    assert r.loc[10, "no_input"] > 0.3 and r.loc[50, "no_input"] == 0


def test_verdict_data_and_p_for_people():
    from gflib.verdict import Verdict, format_p, markdown
    assert [format_p(p) for p in (7.77e-24, 0.00023, 0.0123, 0.05, 0.999)] == [
        "p < 1e-4", "p = 0.00023", "p = 0.012", "p = 0.05", "p = 0.999"]
    v = Verdict(claim=3, scale="book", status="partly", effect=1.1, effect_unit="points",
                interval=(0.6, 1.8), p=7.7e-24, n=10, unit="optimizer x seed",
                sentence="the gain is larger", paper="65 % of BN cells")
    assert v.numbers() == "+1.1 points, 95 % CI +0.6 to +1.8, p < 1e-4, n = 10 (optimizer x seed)"
    small = Verdict(2, "book", "not distinguishable", -0.035, "|tau|", (-0.1003, 0.0127),
                    float("nan"), 299, "runs", "")
    assert small.numbers() == "-0.035 |tau|, 95 % CI -0.100 to +0.013, n = 299 (runs)"
    assert markdown(v).startswith("**Claim 3, `book`: partly.**") and "The gain" in markdown(v)
    with pytest.raises(ValueError, match="'maybe'"):
        Verdict(3, "book", "maybe", 0.0, "", (0, 0), 0.5, 1, "", "")


def test_bn_gains_difference_of_differences():
    gains = batchnorm.bn_gains(analysis.pairs(bn_results().runs))
    assert len(gains) == 24
    assert np.allclose(gains["sparse_gain"], 0.2) and np.allclose(gains["dense_gain"], 0.05)
    assert np.allclose(gains["excess"], 0.15)


def test_bn_analysis_by_hand(monkeypatch):
    monkeypatch.setitem(batchnorm.SETTINGS, "optimizers", ("adam", "sgd"))
    monkeypatch.setitem(batchnorm.SETTINGS, "variants", ("NR", "BN"))
    a = batchnorm.analyse(bn_results(), presets.get("book"))
    p = a["pvalues"]
    assert list(p.index) == ["adam", "sgd"] and list(p.columns) == ["NR", "BN"]
    # sparse - dense: adam NR +0.1, adam BN +0.25, sgd NR -0.1, sgd BN +0.05, 12 pairs each
    assert (a["n"] == 12).all().all()
    assert p.loc["adam", "NR"] < 0.05 and p.loc["sgd", "BN"] < 0.05 and p.loc["sgd", "NR"] > 0.95
    assert a["shares"].loc["without BN", "ours"] == 0.5
    assert a["shares"].loc["with BN", "ours"] == 1.0
    assert list(a["paper"].index) == ["adam", "sgd"] and a["paper"].notna().all().all()
    # every comparison's excess is 0.15; 2 optimizers x 4 seeds = 8 units
    g = a["gain"]
    assert g["effect"] == pytest.approx(0.15) and g["n"] == 8
    assert g["pvalue"] == pytest.approx(1 / 2 ** 8)  # exact: all 8 unit means positive
    assert list(a["gain_by_width"].index) == [5, 10, 15]
    # BN flattens the sparse curves: log10-std of (1, 2) is 0.213, of (1, 1) is 0; dense: none
    st = a["steadier"]
    assert st["effect"] == pytest.approx(np.std([0.0, np.log10(2.0)], ddof=1))
    assert st["n"] == 8 and st["pvalue"] < 0.01
    assert a["stability"].loc["sparse", "with BN"] == 0.0
    gain, steady = a["verdicts"]
    assert gain.status == "reproduced" and gain.effect == pytest.approx(15.0) and gain.n == 8
    assert steady.status == "reproduced"
    assert a["n_runs"] == 96 and a["n_diverged"] == 0 and (a["diverged"] == 0).all().all()


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
