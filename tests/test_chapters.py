"""Presets, the chapter registry and grids, pairing and the analysis tables; publish and
execute helpers."""
import numpy as np
import pandas as pd
import pytest

from gflib import analysis, chapters, presets, publish
from gflib.chapters import batchnorm, sc_sdc_and_egf
from gflib.config import RunConfig
from gflib.execute import parse_value
from gflib.results import RUN_COLUMNS, Results, typed_runs
from gflib.store import config_key


def test_preset_from_environment_and_overrides(monkeypatch):
    monkeypatch.setenv("GFLIB_PRESET", "smoke")
    assert presets.get().name == "smoke"
    monkeypatch.delenv("GFLIB_PRESET")
    assert presets.get().name == "book"
    p = presets.get("book", sparse_width=50, seeds=None)
    assert p.sparse_width == 50 and p.seeds == presets.PRESETS["book"].seeds
    assert p.dense_widths == [5, 15, 25, 35, 45]
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
    assert chapters.names() == ["sc_sdc_and_egf", "batchnorm"]
    assert chapters.get("batchnorm") is batchnorm
    with pytest.raises(ValueError, match="'nope'.*sc_sdc_and_egf, batchnorm"):
        chapters.get("nope")
    for name in chapters.names():
        module = chapters.get(name)
        assert module.NAME == name and module.TITLE and module.CLAIMS
        for attr in ("grid", "analyse", "report", "settings"):
            assert callable(getattr(module, attr))


def test_unknown_optimizer_in_a_chapter_grid_is_a_clear_error(monkeypatch):
    """Before: an unknown optimizer in a chapter grid was a bare KeyError."""
    monkeypatch.setitem(sc_sdc_and_egf.SETTINGS, "optimizers", ("adam", "adamax"))
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'; allowed: sgd"):
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
    assert np.allclose(corr.loc[corr["target"] == "test_acc", "tau"], 1.0)
    assert np.allclose(corr.loc[corr["target"] == "test_loss", "tau"], -1.0)
    summary = analysis.correlation_summary(corr)
    assert list(summary.index) == ["gf_l1", "gf_l2", "egf_l1", "egf_l2"]
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


def test_verdict_table_puts_scales_side_by_side():
    verdict = sc_sdc_and_egf.egf_verdict(analysis.correlation_summary(
        analysis.correlations(fake_results().runs)))
    table = sc_sdc_and_egf.verdict_table({"book (live)": verdict, "fmnist": verdict})
    assert list(table.index) == ["book (live)", "fmnist"]
    assert list(table.columns) == ["test_loss: best", "test_loss: egf_margin",
                                   "test_acc: best", "test_acc: egf_margin"]
    assert table.loc["fmnist", "test_acc: egf_margin"] == pytest.approx(0.0)


def test_bn_gains_difference_of_differences():
    gains = batchnorm.bn_gains(analysis.pairs(bn_results().runs))
    assert len(gains) == 24
    assert np.allclose(gains["sparse_gain"], 0.2) and np.allclose(gains["dense_gain"], 0.05)
    assert np.allclose(gains["excess"], 0.15)
    tests = batchnorm.bn_gain_tests(gains)
    assert tests.loc["all", "n"] == 24 and tests.loc["all", "pvalue"] < 1e-3


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
    assert a["holds"] and "+15.0 accuracy points" in a["claim"] and "n = 24" in a["claim"]
    steadier = a["steadier"]
    assert steadier["median_without"] == pytest.approx(np.std([0.0, np.log10(2.0)], ddof=1))
    assert steadier["median_with"] == 0.0 and steadier["pvalue"] < 1e-3
    assert "0.213 against 0.000" in steadier["sentence"]
    assert a["n_runs"] == 96 and a["n_diverged"] == 0
    sentence = batchnorm.verdict_sentence(a, "fmnist")
    assert sentence.startswith("at `fmnist` the claim holds: the sparse net's BatchNorm gain")
    assert "in 50% of the cells without BatchNorm and 100% with it" in sentence


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


def test_summaries_of_the_first_format_stay_readable():
    """The committed book/data summaries written before the curves table existed (one CSV with
    ``egf_l2@<epoch>`` columns) are read into the same two tables."""
    for name in chapters.names():
        for label, results, meta in chapters.stored(name):
            runs = results.runs
            assert len(runs) == meta["n_runs"]
            assert set(runs["kind"]) == {"sparse", "dense"}
            assert len(analysis.pairs(runs)) == meta["n_runs"] // 2
            assert set(results.curves["key"]) <= set(runs["key"])
            assert results.curves["epoch"].max() == runs["epochs"].max()


def test_publish_writes_summary_and_provenance(tmp_path):
    csv = publish.publish("sc_sdc_and_egf", "smoke", {"seeds": (0,)},
                          results_root=tmp_path / "results", out_root=tmp_path / "data",
                          progress=False)
    results, meta = publish.load("sc_sdc_and_egf", "smoke", root=tmp_path / "data")
    table = results.runs
    assert len(table) == meta["n_runs"] == 16 and csv.with_name("smoke-curves.csv").is_file()
    assert meta["preset"] == "smoke" and meta["torch"] and meta["device_name"]
    assert set(meta) >= {"gflib_commit", "date", "wall_s", "overrides"}
    assert csv.stat().st_size < 1_000_000
    assert len(analysis.pairs(table)) == 8
    assert publish.load("batchnorm", "smoke", root=tmp_path / "data") is None
    line = publish.provenance_line(meta)
    assert "16 runs" in line and "smoke" in line


def test_publish_in_worker_processes_matches_one_process(tmp_path):
    grid = {"seeds": (0,)}
    common = dict(results_root=tmp_path / "results", out_root=tmp_path / "data", progress=False)
    publish.publish("sc_sdc_and_egf", "smoke", grid, **common)
    publish.publish("sc_sdc_and_egf", "smoke", grid, workers=2, name="smoke-w2", **common)
    assert publish.names("sc_sdc_and_egf", root=tmp_path / "data") == ["smoke", "smoke-w2"]
    one = publish.load("sc_sdc_and_egf", "smoke", root=tmp_path / "data")[0].runs
    two, meta = publish.load("sc_sdc_and_egf", "smoke-w2", root=tmp_path / "data")
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
    assert publish.git_commit() == "abc123"
    monkeypatch.delenv("GFLIB_COMMIT")
    commit = publish.git_commit()
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
