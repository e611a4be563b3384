"""Presets, chapter grids, pairing and the analysis tables; publish and execute helpers."""
import json

import numpy as np
import pandas as pd
import pytest

from gflib import experiments, presets, publish, sweep
from gflib.execute import parse_value
from gflib.train import RunConfig


def test_preset_from_environment_and_overrides(monkeypatch):
    monkeypatch.setenv("GFLIB_PRESET", "smoke")
    assert presets.get().name == "smoke"
    monkeypatch.delenv("GFLIB_PRESET")
    assert presets.get().name == "book"
    p = presets.get("book", sparse_width=50, seeds=None)
    assert p.sparse_width == 50 and p.seeds == presets.PRESETS["book"].seeds
    assert p.dense_widths == [5, 15, 25, 35, 45]
    assert presets.get("paper").dense_widths == [308, 923, 1538, 2153, 2768]
    with pytest.raises(ValueError, match="'huge'"):
        presets.get("huge")
    with pytest.raises(ValueError, match="colour"):
        presets.get("book", colour=1)


def test_book_preset_gives_at_least_ten_pairs_per_cell():
    for name in ("book", "fmnist", "paper"):
        p = presets.get(name)
        assert len(p.dense_widths) * len(p.seeds) >= 10
        assert set(p.optimizers) == {"adagrad", "adam", "rmsprop", "sgd", "momentum"}
        assert len(p.bn_variants) == 8


def test_variant_flags_round_trip():
    for v in ("NR", "DA", "L2", "SC", "BN", "DA_BN", "L2_BN", "SC_BN", "DA_SC_BN", "DA_L2_SC_BN", "WD_BN"):
        flags = experiments.variant_flags(v, 1e-4)
        assert experiments.variant_name(flags) == v
    assert experiments.variant_flags("DA_BN", 0.5) == {
        "augment": True, "l2": 0.0, "skip": False, "batchnorm": True, "weight_decay": 0.0}
    with pytest.raises(ValueError, match="XX"):
        experiments.variant_flags("XX_BN", 1e-4)


def test_pair_configs_match_widths_and_seeds():
    cfgs = experiments.pair_configs(RunConfig(depth=2), 40, [10, 30], seeds=(0, 1))
    assert len(cfgs) == 8
    sparse = [c for c in cfgs if c.match_width is not None]
    dense = [c for c in cfgs if c.match_width is None]
    assert {(c.width, c.match_width, c.seed) for c in sparse} == {
        (40, 10, 0), (40, 10, 1), (40, 30, 0), (40, 30, 1)}
    assert {(c.width, c.seed) for c in dense} == {(10, 0), (10, 1), (30, 0), (30, 1)}


def test_grids_have_the_documented_size():
    p = presets.get("book")
    assert len(experiments.egf_configs(p)) == 3 * 5 * 2 * 5 * 2 * 2
    bn = experiments.batchnorm_configs(p)
    assert len(bn) == 5 * 8 * 5 * 2 * 2
    assert {c.depth for c in bn} == {4}
    assert {(c.optimizer, c.lr) for c in bn} == set(presets.BN_LRS.items()) - {("adamw", 0.001)}


def fake_table():
    """A results table with known metrics: sparse = dense + 0.1 accuracy for adam, - 0.1 for sgd."""
    rows = []
    for opt in ("adam", "sgd"):
        for d in (5, 10, 15):
            for seed in range(4):
                base = dict(RunConfig(optimizer=opt, seed=seed).to_dict())
                acc = 0.5 + 0.01 * d + 0.001 * seed
                for kind in ("sparse", "dense"):
                    row = dict(base, width=20 if kind == "sparse" else d,
                               match_width=d if kind == "sparse" else None)
                    delta = (0.1 if opt == "adam" else -0.1) if kind == "sparse" else 0.0
                    row.update(test_acc=acc + delta, test_loss=1 - acc - delta, train_loss=0.0,
                               train_acc=1.0, diverged=False, wall_s=1.0,
                               **{f"mean_{m}": (acc + delta) * k for k, m in
                                  enumerate(("gf_l1", "gf_l2", "egf_l1", "egf_l2"), 1)})
                    row["egf_l2@0"], row["egf_l2@10"] = 1.0, 2.0
                    rows.append(row)
    return pd.DataFrame(rows)


def test_pairs_match_sparse_with_its_dense_partner():
    paired = experiments.pairs(fake_table())
    assert len(paired) == 2 * 3 * 4
    assert (paired["sparse_width"] == 20).all()
    diff = paired["test_acc_sparse"] - paired["test_acc_dense"]
    assert np.allclose(diff[paired["optimizer"] == "adam"], 0.1)
    assert np.allclose(diff[paired["optimizer"] == "sgd"], -0.1)
    assert (paired["variant"] == "NR").all()


def test_sparse_vs_dense_table_sides():
    table = experiments.sparse_vs_dense_table(experiments.pairs(fake_table()), "optimizer", "depth")
    assert table.loc["adam", 2] < 0.01 and table.loc["sgd", 2] > 0.99
    assert table.attrs["n"].loc["adam", 2] == 12


def test_correlations_and_verdict():
    corr = experiments.correlations(fake_table())
    # every measure is a positive multiple of accuracy within a kind: tau(acc) = 1, tau(loss) = -1
    assert np.allclose(corr.loc[corr["target"] == "test_acc", "tau"], 1.0)
    assert np.allclose(corr.loc[corr["target"] == "test_loss", "tau"], -1.0)
    summary = experiments.correlation_summary(corr)
    assert list(summary.index) == ["gf_l1", "gf_l2", "egf_l1", "egf_l2"]
    verdict = experiments.egf_verdict(summary)
    assert verdict["sparse/test_acc"]["egf_margin"] == pytest.approx(0.0)
    assert verdict["sparse/test_acc"]["egf_best"] is False


def bn_table():
    """:func:`fake_table` (NR) and its BN twin: BN adds 0.2 accuracy to sparse nets, 0.05 to dense,
    and flattens the sparse nets' flow curve."""
    t = fake_table()
    bn = t.copy()
    bn["batchnorm"] = True
    sparse = bn["match_width"].notna()
    bn.loc[sparse, "test_acc"] += 0.2
    bn.loc[~sparse, "test_acc"] += 0.05
    bn.loc[sparse, "egf_l2@10"] = 1.0
    return pd.concat([t, bn], ignore_index=True)


def test_verdict_table_puts_scales_side_by_side():
    verdict = experiments.egf_verdict(experiments.correlation_summary(
        experiments.correlations(fake_table())))
    table = experiments.verdict_table({"book (live)": verdict, "fmnist": verdict})
    assert list(table.index) == ["book (live)", "fmnist"]
    assert list(table.columns) == ["test_loss: best", "test_loss: egf_margin",
                                   "test_acc: best", "test_acc: egf_margin"]
    assert table.loc["fmnist", "test_acc: egf_margin"] == pytest.approx(0.0)


def test_bn_gains_difference_of_differences():
    gains = experiments.bn_gains(experiments.pairs(bn_table()))
    assert len(gains) == 24
    assert np.allclose(gains["sparse_gain"], 0.2) and np.allclose(gains["dense_gain"], 0.05)
    assert np.allclose(gains["excess"], 0.15)
    tests = experiments.bn_gain_tests(gains)
    assert tests.loc["all", "n"] == 24 and tests.loc["all", "pvalue"] < 1e-3


def test_bn_analysis_by_hand():
    a = experiments.bn_analysis(bn_table(), ["adam", "sgd"], ["NR", "BN"])
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
    sentence = experiments.bn_verdict_sentence(a, "fmnist")
    assert sentence.startswith("at `fmnist` the claim holds: the sparse net's BatchNorm gain")
    assert "in 50% of the cells without BatchNorm and 100% with it" in sentence


def test_significance_shares_skip_empty_cells():
    p = pd.DataFrame({"NR": [0.01, 0.5], "BN": [0.01, np.nan], "SC_BN": [0.2, 0.3]},
                     index=["adam", "sgd"])
    shares = experiments.significance_shares(p)
    assert shares["without BN"] == 0.5 and shares["with BN"] == pytest.approx(1 / 3)


def test_flow_stability_reads_the_curves():
    stab = experiments.flow_stability(fake_table())
    assert np.allclose(stab["log_std"], np.std([0.0, np.log10(2.0)], ddof=1))


def test_publish_writes_summary_and_provenance(tmp_path):
    csv = publish.publish("sc_sdc_and_egf", "smoke", {"depths": (1,), "optimizers": ("adam",),
                                                      "seeds": (0,)},
                          results_root=tmp_path / "results", out_root=tmp_path / "data",
                          progress=False)
    table, meta = publish.load("sc_sdc_and_egf", "smoke", root=tmp_path / "data")
    assert len(table) == meta["n_runs"] == 4
    assert meta["preset"] == "smoke" and meta["torch"] and meta["device_name"]
    assert set(meta) >= {"gflib_commit", "date", "wall_s", "overrides"}
    assert csv.stat().st_size < 1_000_000
    assert len(experiments.pairs(table)) == 2
    assert publish.load("batchnorm", "smoke", root=tmp_path / "data") is None
    line = publish.provenance_line(meta)
    assert "4 runs" in line and "smoke" in line


def test_publish_in_worker_processes_matches_one_process(tmp_path):
    grid = {"depths": (1,), "optimizers": ("adam",), "seeds": (0,)}
    common = dict(results_root=tmp_path / "results", out_root=tmp_path / "data", progress=False)
    publish.publish("sc_sdc_and_egf", "smoke", grid, **common)
    publish.publish("sc_sdc_and_egf", "smoke", grid, workers=2, name="smoke-w2", **common)
    assert publish.names("sc_sdc_and_egf", root=tmp_path / "data") == ["smoke", "smoke-w2"]
    one, _ = publish.load("sc_sdc_and_egf", "smoke", root=tmp_path / "data")
    two, meta = publish.load("sc_sdc_and_egf", "smoke-w2", root=tmp_path / "data")
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
        publish.configs_for("nope", presets.get("smoke"))


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("None") is None
    assert parse_value("[0, 1]") == [0, 1] and parse_value("cuda") == "cuda"
