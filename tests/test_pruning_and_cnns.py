"""SC-SDC for convolutions, the final-mask record, and the pruning + CNN chapter's grid and
statistics, on networks small enough to check by hand."""
import math

import pandas as pd
import pytest
import torch

from gflib import presets, scsdc, train
from gflib.chapters import pruning_and_cnns as chapter
from gflib.config import RunConfig
from gflib.models import CNN, MLP, maskable_weights
from gflib.results import Results

DIGITS = (1, 8, 8)
TINY = dict(dataset="digits", epochs=1, train_subset=200, test_subset=100, batch_size=50)


def cnn_pair(sparse_width, dense_width, seed=0, **options):
    return scsdc.matched_member(
        lambda: CNN(DIGITS, 10, width_multiplier=sparse_width / 100, **options),
        lambda: CNN(DIGITS, 10, width_multiplier=dense_width / 100, **options), seed)


def test_cnn_pair_keeps_the_dense_weight_count_of_every_tensor_by_hand():
    """Width 50 vs 25 on 8x8 digits: channels 16-32-32-64-64 vs 8-16-16-32-32; the pools take
    8x8 to 1x1 by the third block, so the last Linear reads 64 (32) features."""
    model, masks = cnn_pair(50, 25)
    expected = {  # name: (sparse numel, dense numel)
        "features.0.conv.weight": (16 * 1 * 9, 8 * 1 * 9),
        "features.1.conv.weight": (32 * 16 * 9, 16 * 8 * 9),
        "features.2.conv.weight": (32 * 32 * 9, 16 * 16 * 9),
        "features.3.conv.weight": (64 * 32 * 9, 32 * 16 * 9),
        "features.4.conv.weight": (64 * 64 * 9, 32 * 32 * 9),
        "out.weight": (10 * 64, 10 * 32),
    }
    weights = maskable_weights(model)
    assert list(weights) == list(expected)
    for name, (total, active) in expected.items():
        assert weights[name].numel() == total
        assert int(masks[name].sum()) == active
        assert int((weights[name] != 0).sum()) == active  # masks applied
    dens = scsdc.matched_densities(
        lambda: CNN(DIGITS, 10, width_multiplier=0.5), lambda: CNN(DIGITS, 10, width_multiplier=0.25))
    assert dens == {n: a / t for n, (t, a) in expected.items()}
    assert [dens[n] for n in expected] == [0.5, 0.25, 0.25, 0.25, 0.25, 0.5]


def test_cnn_sparse_kernels_are_drawn_at_the_dense_layers_scale():
    model, masks = cnn_pair(50, 25, seed=3)
    w = maskable_weights(model)["features.1.conv.weight"][masks["features.1.conv.weight"]]
    dense_bound, own_bound = 1 / math.sqrt(8 * 9), 1 / math.sqrt(16 * 9)
    assert w.abs().max() <= dense_bound
    assert w.abs().max() > own_bound  # not the wide layer's own, smaller, scale
    bias = model.features[1].conv.bias
    assert bias.abs().max() <= dense_bound and bias.abs().max() > own_bound


def test_cnn_pair_with_skip_connections_masks_the_projections_too():
    model, masks = cnn_pair(50, 25, skip=True, batchnorm=True)
    names = list(maskable_weights(model))
    assert "features.1.shortcut.weight" in names  # 1x1 projection 16 -> 32 channels
    assert int(masks["features.1.shortcut.weight"].sum()) == 16 * 8
    assert model.features[1].conv.bias is None  # BatchNorm follows


def test_matched_member_refuses_models_of_different_shape():
    with pytest.raises(ValueError, match="same weight tensors"):
        scsdc.matched_member(lambda: MLP(64, 10, 2, 20), lambda: MLP(64, 10, 3, 10), 0)
    with pytest.raises(ValueError, match="same weight tensors"):
        scsdc.matched_member(lambda: MLP(64, 10, 2, 10), lambda: MLP(64, 10, 2, 20), 0)


def test_scsdc_is_for_models_with_a_width():
    RunConfig(model="cnn", width=20, match_width=10)
    with pytest.raises(ValueError, match="match_width .*mlp, cnn, not 'wrn50'"):
        RunConfig(model="wrn50", width=20, match_width=10)


def test_a_sparse_cnn_run_records_its_masks_unchanged_by_training():
    config = RunConfig(model="cnn", width=16, match_width=8, optimizer="sgd", lr=0.1, **TINY)
    result = train.run(config)
    model, _ = train.build_model(config, train.dataset_for(config))
    expected = scsdc.matched_densities(lambda: CNN(DIGITS, 10, width_multiplier=0.16),
                                       lambda: CNN(DIGITS, 10, width_multiplier=0.08))
    assert result.sparsity["layers"] == pytest.approx(expected)
    total = sum(w.numel() for w in maskable_weights(model).values())
    assert result.sparsity["active"] == pytest.approx(
        sum(d * w.numel() for d, w in zip(expected.values(), maskable_weights(model).values()))
        / total)
    assert result.sparsity["dead_units"] is None  # not a chain of Linear layers
    dense = train.run(config.replace(width=8, match_width=None))
    assert dense.sparsity["active"] == 1.0


def test_an_mlp_run_records_dead_units_of_its_masks():
    config = RunConfig(depth=2, width=40, match_width=4, **TINY)
    result = train.run(config)
    from gflib.masks import dead_units
    _, masks = train.build_model(config, train.dataset_for(config))
    assert result.sparsity["dead_units"] == sum(dead_units(masks).values())
    assert result.sparsity["layers"] == pytest.approx(
        {n: m.float().mean().item() for n, m in masks.items()})
    assert list(result.sparsity["layers"].values()) == pytest.approx([0.1, 0.01, 0.1])


def test_oneshot_pruning_of_a_cnn_reaches_the_scsdc_densities():
    config = RunConfig(model="cnn", width=16, match_width=8, prune="oneshot", prune_start=1,
                       **dict(TINY, epochs=2))
    result = train.run(config)
    expected = scsdc.matched_densities(lambda: CNN(DIGITS, 10, width_multiplier=0.16),
                                       lambda: CNN(DIGITS, 10, width_multiplier=0.08))
    model = CNN(DIGITS, 10, width_multiplier=0.16)
    sizes = {n: w.numel() for n, w in maskable_weights(model).items()}
    for name, d in expected.items():
        assert result.sparsity["layers"][name] == pytest.approx(round(d * sizes[name])
                                                                / sizes[name])


def test_pruning_schedules_by_hand():
    s = chapter.SETTINGS
    assert chapter.schedule(20, s)["oneshot_layer"] == dict(prune="oneshot", prune_scope="layer",
                                                            prune_start=6)
    assert chapter.schedule(20, s)["gradual_global"] == dict(
        prune="gradual", prune_scope="global", prune_start=2, prune_end=10)
    assert chapter.schedule(10, s)["gradual_layer"] == dict(
        prune="gradual", prune_scope="layer", prune_start=1, prune_end=5)
    two = chapter.schedule(2, s)
    assert two["oneshot_global"]["prune_start"] == 1
    assert (two["gradual_layer"]["prune_start"], two["gradual_layer"]["prune_end"]) == (0, 1)
    assert two["dense"] is None and two["random"] == {}
    # Before: at one epoch every pruned net ended dense (prune_start = prune_end = epochs).
    with pytest.raises(ValueError, match=r"pruning grid needs epochs >= 2.*got epochs=1"):
        chapter.schedule(1, s)
    with pytest.raises(ValueError, match=r"epochs >= 2"):
        chapter.grid(presets.get("smoke", epochs=1))
    assert chapter.schedule(1, dict(s, methods=("dense", "random"))) == {"dense": None,
                                                                        "random": {}}


def test_grid_sizes_and_members():
    book = presets.get("book")
    configs = chapter.grid(book)
    mlp = [c for c in configs if c.model == "mlp"]
    cnn = [c for c in configs if c.model == "cnn"]
    assert len(mlp) == 2 * 5 * 2 * 6  # optimizers x dense widths x seeds x methods
    assert len(cnn) == 6 * 3 * 2 * 2  # cells x dense widths x seeds x (sparse, dense)
    assert {c.width for c in cnn if c.kind == "sparse"} == {24}
    assert {c.width for c in cnn if c.kind == "dense"} == set(chapter.cnn_dense_widths(
        book, chapter.SETTINGS)) == {13, 17, 20}  # round(24 x .55, .7, .85)
    pruned = [c for c in mlp if c.prune != "none"]
    assert {c.width for c in pruned} == {100} and len(pruned) == 2 * 5 * 2 * 4
    assert len(set(configs)) == len(configs)
    assert chapter.wide_resnet50_configs(book) == []
    paper = chapter.wide_resnet50_configs(presets.get("paper"))
    assert len(paper) == 3 * 3 and {c.model for c in paper} == {"wrn50"}
    assert {c.dataset for c in paper} == {"cifar10"}


def _row(method, optimizer, width, seed, acc, diverged=False):
    return {"method": method, "optimizer": optimizer, "dense_width": width, "seed": seed,
            "test_acc": acc, "diverged": diverged}


def test_matched_comparisons_of_pruning_methods_by_hand():
    """Two optimizers x two seeds x two widths; one one-shot run diverged (sgd, width 20, seed
    1). The matched differences are averaged within each optimizer x seed unit first
    (:data:`UNIT_PRUNE`: widths are fixed factors), then the four unit means are tested."""
    oneshot = {("sgd", 10, 0): 0.60, ("sgd", 20, 0): 0.60, ("sgd", 10, 1): 0.61,
               ("sgd", 20, 1): 0.61, ("adam", 10, 0): 0.52, ("adam", 20, 0): 0.46,
               ("adam", 10, 1): 0.58, ("adam", 20, 1): 0.55}
    rows = []
    for (optimizer, w, seed), acc in oneshot.items():
        rows += [_row("random", optimizer, w, seed, 0.5), _row("dense", optimizer, w, seed, 0.7),
                 _row("oneshot_layer", optimizer, w, seed, acc,
                      diverged=(optimizer, w, seed) == ("sgd", 20, 1))]
    table = pd.DataFrame(rows).assign(key=range(len(rows)))
    m = chapter.against(table, "oneshot_layer", "random")
    assert len(m) == 8 and m["diff"].isna().sum() == 1
    assert sorted(m["diff"].dropna().round(6)) == [-0.04, 0.02, 0.05, 0.08, 0.1, 0.1, 0.11]
    assert chapter.UNIT_PRUNE == ("optimizer", "seed")
    c = chapter.comparisons(table, ["oneshot_layer"]).set_index("against")
    # unit means against the random mask: sgd 0 +0.10, sgd 1 +0.11 (its width 20 diverged),
    # adam 0 (0.02 - 0.04) / 2 = -0.01, adam 1 (0.08 + 0.05) / 2 = +0.065
    assert c.loc["random", "n"] == 4  # units, not the 7 finite differences
    assert c.loc["random", "effect"] == pytest.approx(100 * (0.10 + 0.11 - 0.01 + 0.065) / 4)
    # against the dense net: -0.10, -0.09, (-0.18 - 0.24) / 2, (-0.12 - 0.15) / 2
    assert c.loc["dense", "effect"] == pytest.approx(100 * (-0.10 - 0.09 - 0.21 - 0.135) / 4)
    # ranks of |unit mean|: 0.01 -> 1, 0.065 -> 2, 0.10 -> 3, 0.11 -> 4; W+ = 2 + 3 + 4 = 9 and
    # of the 2^4 equally likely sign patterns, W+ >= 9 in two (all positive; all but rank 1)
    assert c.loc["random", "p"] == pytest.approx(2 / 16)
    assert c.loc["dense", "p"] == pytest.approx(1.0)  # every unit behind: W+ = 0
    assert (c["min_p"] == 0.5 ** 4).all()
    assert c.loc["random", "ci_low"] < c.loc["random", "effect"] < c.loc["random", "ci_high"]
    view = chapter.comparison_view(chapter.comparisons(table, ["oneshot_layer"]))
    assert list(view.columns) == ["effect, points (95 % CI)", "p (ahead)", "n", "smallest p"]
    row = view.loc[("oneshot_layer", "random")]
    low, high = c.loc["random", "ci_low"], c.loc["random", "ci_high"]
    assert row["effect, points (95 % CI)"] == f"+6.6 ({low:+.1f} to {high:+.1f})"
    assert row["n"] == 4
    assert row["p (ahead)"] == "0.12" and row["smallest p"] == "0.062"  # two digits, as a page
    assert view.loc[("oneshot_layer", "dense"), "effect, points (95 % CI)"].startswith("-13.4 (")


def test_wide_resnet50_is_skipped_with_its_reason_below_the_paper_preset():
    v = chapter.wrn_verdict(pd.DataFrame(columns=["diverged"]), "book")
    assert v.status == "not run" and "GPU" in v.sentence and v.claim == 6
    cost = chapter.wide_resnet50_cost(presets.get("book"))
    assert cost["runs"] == 9 and cost["gpu_hours"] > 0


def _analysis(**fields) -> chapter.Analysis:
    """An :class:`Analysis` with nothing in it but ``fields``."""
    from dataclasses import fields as dataclass_fields

    from gflib.analysis import Counts, unit_test
    empty = {f.name: pd.DataFrame() for f in dataclass_fields(chapter.Analysis)}
    empty.update(scale="smoke", counts=Counts(0, 0, 0), verdicts=[], after_epoch=None,
                 cnn_cells=None,
                 cnn_bn={"gain": unit_test(pd.DataFrame({"seed": [], "excess": []}), "excess",
                                           chapter.UNIT_CNN),
                         "shares": pd.Series({"without BN": math.nan, "with BN": math.nan})})
    return chapter.Analysis(**{**empty, **fields})


@pytest.mark.parametrize("accs, phrase", [
    ((0.10, 0.10, 0.11, 0.10), "No CNN trains beyond chance"),
    ((0.10, 0.11, 0.95, 0.96), "rests on the skip cells"),
    ((0.31, 0.62, 0.81, 0.82), "falls far behind its dense partner"),
])
def test_reading_of_the_plain_cnn_follows_the_numbers(accs, phrase):
    s_nr, d_nr, s_bn, d_bn = accs
    cnn_paired = pd.DataFrame({"cell": ["NR", "BN", "swish_BN"],
                               "test_acc_sparse": [s_nr, s_bn, 0.99],
                               "test_acc_dense": [d_nr, d_bn, 0.99]})
    a = _analysis(cnn_paired=cnn_paired, cnn=pd.DataFrame({"dataset": ["fashion_mnist"]}))
    plain = chapter.plain_cnn(a)
    assert phrase in plain
    others = {"No CNN trains beyond chance", "rests on the skip cells",
              "falls far behind its dense partner"} - {phrase}
    assert not any(o in plain for o in others)
    assert (f"{100 * s_nr:.0f} % (sparse) and {100 * d_nr:.0f} % (dense) test accuracy, with "
            f"BatchNorm {100 * s_bn:.0f} % and {100 * d_bn:.0f} %") in plain  # not swish_BN's 99
    assert plain in chapter.reading(a)  # the reading says it too
    assert chapter.reading(a) == plain  # and nothing else: no comparisons, margins or BN gain
    without_nr = _analysis(cnn_paired=cnn_paired[cnn_paired["cell"] != "NR"],
                           cnn=pd.DataFrame({"dataset": ["fashion_mnist"]}))
    assert chapter.plain_cnn(without_nr) == "" and chapter.reading(without_nr) == ""


def test_reading_adds_the_cnn_batchnorm_gain_once_there_are_units():
    from gflib.analysis import unit_test
    gains = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "excess": [0.02, 0.04, 0.01, 0.05,
                                                                 0.03, 0.03]})
    gain = unit_test(gains, "excess", chapter.UNIT_CNN)  # seed means 0.03 each: n = 3 units
    a = _analysis(cnn_bn={"gain": gain, "shares": pd.Series({"without BN": 0.0,
                                                             "with BN": 0.5})})
    text = chapter.reading(a)
    assert gain.n == 3 and gain.effect == pytest.approx(0.03)
    assert text.startswith("On CNNs BatchNorm adds 3.0 points more to sparse nets than to "
                           "dense ones (p = 0.12, n = 3 seeds, where the smallest p is 0.12)")
    assert text.endswith("here it does (by q) in 50% of them.")


def test_pair_view_puts_the_density_first_and_keeps_the_counts():
    """The narrowest smoke pair (sparse width 16 against 12: channels 5-10-10-20-20 against
    4-8-8-15-15), as the chapter shows it."""
    smoke = presets.get("smoke")
    table = chapter.cnn_pair_table(smoke)
    view = chapter.pair_view(table)
    assert view.columns[0] == ("density", "")
    assert list(view.index) == ["conv 1", "conv 2", "conv 3", "conv 4", "conv 5", "linear"]
    assert list(view[("active weights", "")]) == list(table["dense_weights"])
    assert list(view[("active weights", "")]) == [36, 288, 576, 1080, 2025, 150]
    assert list(view[("channels (out x in)", "sparse")]) == [
        "5 x 1", "10 x 5", "10 x 10", "20 x 10", "20 x 20", "10 x 20"]
    assert list(view[("channels (out x in)", "dense")]) == [
        "4 x 1", "8 x 4", "8 x 8", "15 x 8", "15 x 15", "10 x 15"]
    assert list(view[("inputs per unit", "dense")]) == [9, 36, 72, 72, 135, 15]
    # a sparse unit's active inputs: the dense weight count over the sparse output channels
    assert list(view[("inputs per unit", "sparse")]) == [7.2, 28.8, 57.6, 54.0, 101.2, 15.0]
    assert view.loc["conv 3", ("density", "")] == round(576 / 900, 3)


def test_schedule_marks_of_the_book_schedules_by_hand():
    marks = chapter.schedule_marks(chapter.density_schedules(presets.get("book")))
    # 20 epochs: one-shot after 30 % (epoch 6), gradual from 10 % to 50 % (epochs 2 to 10);
    # the density shown is the one an epoch starts with
    assert marks == {"final": (25 / 100) ** 2, "oneshot": 7, "gradual_start": 4,
                     "gradual_end": 11}


def test_cnn_wins_counts_cells_below_alpha():
    """Wins count by q (Benjamini-Hochberg over the three cells with a p): p 0.016, 0.04, 0.5
    give q 0.048 (min(3 x 0.016, 3 / 2 x 0.04)), 0.06 and 0.5: one win, though two p are below
    0.05."""
    from gflib.analysis import CellTests
    from gflib.verdict import q_values
    pv = pd.DataFrame({"BN": [0.04], "NR": [0.5], "SC": [math.nan], "swish_BN": [0.016]},
                      index=pd.Index(["sgd"], name="optimizer"))
    cells = CellTests(pv, q_values(pv), pv.notna() * 6, pv * 0)
    assert cells.q.loc["sgd", "BN"] == pytest.approx(0.06)
    wins = chapter.cnn_wins(cells)
    assert wins == {"wins": 1, "cells": 3, "best": "swish_BN", "p": 0.016,
                    "q": pytest.approx(0.048)}
    assert cells.significant("p", chapter.ALPHA) == 2  # by p it would be two
    none = chapter.cnn_wins(CellTests(*(pd.DataFrame({"BN": [math.nan]}, index=["sgd"]),) * 4))
    assert none["wins"] == none["cells"] == 0 and none["best"] == "none"
    assert math.isnan(none["p"]) and math.isnan(none["q"])
    assert chapter.cnn_wins(None) == {"wins": 0, "cells": 0, "best": "none", "p": pytest.approx(
        math.nan, nan_ok=True), "q": pytest.approx(math.nan, nan_ok=True)}


def test_margin_table_shows_the_margin_with_its_interval():
    rows = [dict(sparse_nets=nets, kind=kind, baseline=base, target=target,
                 margin=0.1234 * (i + 1), ci_low=-0.05, ci_high=0.3456, n=80,
                 best_egf="egf_l2", best_base="gf_l2")
            for i, (nets, kind, base, target) in enumerate(
                (n, k, b, t) for n in ("pruned", "pruned + random") for k in ("sparse", "dense")
                for b in ("weights", "all") for t in ("test_loss", "test_acc"))]
    table = chapter.margin_table(pd.DataFrame(rows))
    assert list(table.index) == [("pruned", "test loss"), ("pruned", "test acc"),
                                 ("both", "test loss"), ("both", "test acc")]
    assert list(table.columns) == ["margin (95 % CI)", "n", "best EGF", "best norm"]
    assert list(table["margin (95 % CI)"]) == [f"{v:+.3f} (-0.050 to +0.346)"
                                               for v in (0.123, 0.247, 1.111, 1.234)]
    cnn = pd.DataFrame(rows[:8]).drop(columns="sparse_nets")  # as the CNNs' margins come
    both = chapter.margin_table(cnn, kinds=("sparse", "dense"))
    assert list(both.index) == [("sparse", "test loss"), ("sparse", "test acc"),
                                ("dense", "test loss"), ("dense", "test acc")]
    assert both.index.names == ["kind", "target"]
    def numbers(m):
        return {k: m[k] for k in ("margin", "ci_low", "ci_high", "n")}
    m = chapter.pruned_margin_of(pd.DataFrame(rows), "pruned + random")
    assert numbers(m) == {"margin": pytest.approx(0.1234 * 10), "ci_low": -0.05,
                          "ci_high": 0.3456, "n": 80}
    assert numbers(chapter.pruned_margin_of(pd.DataFrame(rows), "pruned", kind="dense")) == {
        "margin": pytest.approx(0.1234 * 6), "ci_low": -0.05, "ci_high": 0.3456, "n": 80}
    missing = chapter.pruned_margin_of(pd.DataFrame(rows), "random mask")
    assert missing["n"] == 0 and math.isnan(missing["margin"]) and math.isnan(missing["ci_low"])


@pytest.mark.parametrize("part", ["mlp", "cnn", "none"])
def test_analyse_of_part_of_the_smoke_grid_says_not_run_instead_of_failing(tmp_path, part):
    """A grid with only the pruning MLPs, only the CNNs, or no run at all (a sweep cut short, a
    summary of one part): every sub-test still gets a verdict, "not run" where its nets are
    missing. (The MLPs alone once failed: the activation cells looked for CNN pairs.)"""
    from gflib import sweep
    smoke = presets.get("smoke")
    configs = {"mlp": chapter.pruning_configs, "cnn": chapter.cnn_configs,
               "none": lambda p: chapter.grid(p)[:1]}[part](smoke)
    assert len(configs) == {"mlp": 16, "cnn": 12, "none": 1}[part]
    results = sweep.run(configs, tmp_path, progress=False, stack=4)
    if part == "none":  # the run table's columns, no row
        results = Results(results.runs.iloc[:0], results.curves.iloc[:0])
    a = chapter.analyse(results, smoke)
    assert [v.test for v in a.verdicts] == [chapter.TESTS[i] for i in (0, 1, 2, 3, 5)]
    status = {v.test: v.status for v in a.verdicts}
    if part != "cnn":
        assert status["Swish with SGD favours sparse CNNs"] == "not run"
        assert status["EGF tracks sparse CNNs"] == "not run" and a.cnn_cells is None
        assert chapter.cnn_wins(a.cnn_cells)["cells"] == 0 and chapter.plain_cnn(a) == ""
    if part != "mlp":
        assert status["EGF tracks magnitude-pruned MLPs"] == "not run" and a.comparisons.empty
    if part == "mlp":
        assert set(a.comparisons["method"]) == {"oneshot_layer", "gradual_global"}
        assert (a.comparisons["n"] == 2).all()  # one optimizer (SGD) x two seeds
    assert status["Wide ResNet-50"] == "not run"
    chapter.reading(a)  # and the page's sentences follow


def test_pruned_runs_off_their_target_enter_no_statistic_of_the_chapter(tmp_path, monkeypatch):
    """The smoke pruning MLPs with pruning that never changes the masks: every magnitude-pruned
    run ends dense, is counted as off target and leaves the comparisons, the medians and the
    EGF margins of the pruned nets (with working pruning: n = 2 units, see above)."""
    from gflib import pruning, sweep

    smoke = presets.get("smoke")
    monkeypatch.setattr(pruning, "progress", lambda config, epoch: None)
    results = sweep.run(chapter.pruning_configs(smoke), tmp_path, progress=False, stack=4)
    runs = results.runs
    pruned = runs["prune"] != "none"
    assert pruned.sum() == 8 and runs.loc[pruned, "off_target"].all()
    assert not runs.loc[~pruned, "off_target"].any()
    assert (runs.loc[pruned, "final_density"] == 1.0).all()
    a = chapter.analyse(results, smoke)
    assert a.counts.off_target == 8 and a.counts.diverged == 0
    assert (a.comparisons["n"] == 0).all()
    assert a.methods.loc[["oneshot_layer", "gradual_global"], "test_acc"].isna().all()
    assert a.methods.loc[["dense", "random"], "test_acc"].notna().all()
    status = {v.test: v.status for v in a.verdicts}
    assert status["EGF tracks magnitude-pruned MLPs"] == "not run"
