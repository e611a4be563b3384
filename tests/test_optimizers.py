"""The optimizers chapter (claim 4): the "updates" trace, the grid, the analysis and verdicts."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from gflib import optimizers, presets, train
from gflib.chapters import optimizers as chapter
from gflib.config import RunConfig, config_key
from gflib.ensemble import Single, per_run_loss
from gflib.masks import random_masks
from gflib.models import MLP
from gflib.results import RUN_COLUMNS, Results, typed_runs
from gflib.updates import UpdateTrace, summary
from gflib.verdict import p_cell

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(dataset="digits", depth=2, width=16, epochs=3, flow_points=2, train_subset=300,
            test_subset=100)


def one_step(optimizer: str, lr: float):
    """One hand-made step of a masked 6-5-5-3 MLP (K = 1) watched by an UpdateTrace: returns
    the trace's record, the weights before, the ensemble and the gradients ``{name: [1, ...]}``.
    In float64, so that ``w - lr g`` loses nothing to rounding."""
    torch.manual_seed(0)
    model = MLP(6, 3, depth=2, width=5).double()
    ens = Single(model, random_masks(model, 0.5, seed=1))
    opt = optimizers.make(optimizer, ens.parameters(), lr)
    trace = UpdateTrace([RunConfig(optimizer=optimizer)])
    x, y = torch.randn(1, 8, 6, dtype=torch.float64), torch.randint(0, 3, (1, 8))
    per_run_loss(ens(x), y).sum().backward()
    grads = {n: ens.as_runs(n, ens.get_parameter(ens.param_name(n)).grad).clone()
             for n in ens.weight_names}
    loop = SimpleNamespace(ens=ens, opt=opt)
    before = trace.before_step(loop)
    opt.step()
    trace.after_step(loop, before, epoch=1)
    return trace.result(0), before, ens, grads


def test_sgd_step_is_lr_times_gradient_on_active_weights_and_zero_elsewhere():
    rec, before, ens, grads = one_step("sgd", 0.1)
    assert rec["epochs"] == [1] and rec["layers"] == ens.weight_names and "v" not in rec
    for name in ens.weight_names:
        keep, g = ens.keep(name)[0], grads[name][0]
        dw = (ens.tensor(name)[0] - before[name][0]).abs()
        assert (dw[~keep] == 0).all() and (g[~keep] == 0).all()
        assert torch.allclose(dw[keep], 0.1 * g[keep].abs(), rtol=1e-12, atol=0)
        assert rec["g"][name] == [pytest.approx(g[keep].abs().mean().item(), rel=1e-12)]
        assert rec["dw"][name] == [pytest.approx(0.1 * g[keep].abs().mean().item(), rel=1e-12)]


@pytest.mark.parametrize("optimizer, factor", [("adam", 0.001), ("adamw", 0.001),
                                               ("rmsprop", 0.01), ("adagrad", 1.0)])
def test_second_moment_after_one_step(optimizer, factor):
    """After one step the second moment is (1 - beta2) g^2 for Adam/AdamW (beta2 = 0.999),
    (1 - alpha) g^2 for RMSprop (alpha = 0.99) and g^2 for Adagrad, on active weights."""
    rec, _, ens, grads = one_step(optimizer, 0.001)
    for name in ens.weight_names:
        keep, g = ens.keep(name)[0], grads[name][0]
        assert rec["v"][name] == [pytest.approx(factor * g[keep].pow(2).mean().item(),
                                                rel=1e-5)]
    if optimizer == "adam":  # the first step is lr * g / (|g| + eps): about lr where g != 0
        g = grads[ens.weight_names[0]][0][ens.keep(ens.weight_names[0])[0]].abs()
        assert rec["dw"][ens.weight_names[0]] == [pytest.approx(
            0.001 * (g / (g + 1e-8)).mean().item(), rel=1e-4)]


def _numbers(r):
    return r.history, r.flow, r.final, r.flow_mean, r.diverged


@pytest.mark.parametrize("extra", [dict(optimizer="adam", l2=1e-3, batchnorm=True),
                                   dict(optimizer="sgd", lr=0.1, augment=True)])
def test_recording_changes_nothing(one_torch_thread, extra):
    """The same group with trace="updates" and "none" gives identical numbers (one run and a
    stacked group of two); the trace has one value per epoch and layer."""
    cfgs = [RunConfig(**{**TINY, "width": 20}, **extra, match_width=m, seed=s)
            for m, s in ((8, 0), (12, 1))]
    for group in ([cfgs[0]], cfgs):
        plain = train.train(group)
        traced = train.train([c.replace(trace="updates") for c in group])
        for a, b in zip(plain, traced):
            assert _numbers(a) == _numbers(b)
            assert a.trace == {}
            assert b.trace["epochs"] == [1, 2, 3] and len(b.trace["layers"]) == 3
            assert all(len(v) == 3 for q in ("dw", "g") for v in b.trace[q].values())
            assert ("v" in b.trace) == (extra["optimizer"] == "adam")


def test_stacked_trace_is_each_runs_own(one_torch_thread):
    cfgs = [RunConfig(**TINY, optimizer="sgd", lr=0.1, density=0.5, seed=s, trace="updates")
            for s in (0, 1)]
    stacked = train.train(cfgs)
    for c, r in zip(cfgs, stacked):
        alone = train.run(c)
        for q in ("dw", "g"):
            for name, values in alone.trace[q].items():
                assert r.trace[q][name] == pytest.approx(values, rel=1e-4)


def test_checkpointed_group_resumes_with_its_record(tmp_path, one_torch_thread):
    cfgs = [RunConfig(**TINY, optimizer="adam", density=0.5, seed=s, trace="updates")
            for s in (0, 1)]
    whole = train.train(cfgs)
    ckpt = tmp_path / "group.pt"

    class Kill(UpdateTrace):
        def after_step(self, loop, before, epoch):
            if epoch == 3:
                raise KeyboardInterrupt
            super().after_step(loop, before, epoch)
    with pytest.raises(KeyboardInterrupt):
        train.train(cfgs, checkpoint=ckpt, checkpoint_every_s=0, observer=Kill(cfgs))
    resumed = train.train(cfgs, checkpoint=ckpt, checkpoint_every_s=0)
    for a, b in zip(whole, resumed):
        assert _numbers(a) == _numbers(b) and a.trace == b.trace


def test_adamw_without_decay_is_adam(one_torch_thread):
    """Why AdamW runs only its WD variants: with weight_decay 0 it is Adam, step for step."""
    adam = train.run(RunConfig(**TINY, optimizer="adam", batchnorm=True))
    adamw = train.run(RunConfig(**TINY, optimizer="adamw", batchnorm=True))
    assert _numbers(adam) == _numbers(adamw)


def test_trace_table_and_summary(one_torch_thread):
    runs = [train.run(RunConfig(**TINY, optimizer=o, lr=lr, density=0.5, trace="updates"))
            for o, lr in (("sgd", 0.1), ("adam", 0.001))]
    long = chapter.update_table(runs + [train.run(RunConfig(**TINY))])
    assert set(long["optimizer"]) == {"sgd", "adam"} and set(long["layer"]) == {1, 2, 3}
    assert len(long) == 3 * 3 * (2 + 3)  # epochs x layers x (sgd: dw, g; adam: dw, g, v)
    s = summary(long)
    assert s.loc["sgd", "dw / (lr |g|)"].to_numpy() == pytest.approx(1.0, rel=1e-3)
    assert s.loc["sgd", "sqrt(v)"].isna().all() and s.loc["adam", "sqrt(v)"].notna().all()


def test_grid_has_the_documented_size_and_contents():
    p = presets.get("book")
    cfgs = chapter.grid(p)
    assert len(cfgs) == 2 * (5 * 7 + 2) * 2 * 2 * 2 == 592 <= 800
    assert {c.lr for c in cfgs} == {0.001, 0.1} and {c.depth for c in cfgs} == {4}
    assert {c.match_width for c in cfgs if c.kind == "sparse"} == set(p.dense_widths[-2:])
    assert {c.width for c in cfgs if c.kind == "dense"} == set(p.dense_widths[-2:])
    names = {(c.optimizer, chapter.variant_name(c.to_dict())) for c in cfgs}
    assert {v for o, v in names if o == "adamw"} == {"WD_BN", "DA_WD_SC_BN"}
    assert {v for o, v in names if o == "adam"} == set(chapter.VARIANTS)
    assert len(names) == 37
    assert {c.weight_decay for c in cfgs if c.optimizer == "adamw"} == {2e-4}
    assert all(c.weight_decay == 0 for c in cfgs if c.optimizer != "adamw")
    assert all(c.l2 == 0 for c in cfgs if c.optimizer == "adamw")
    assert {c.l2 for c in cfgs if "L2" in chapter.variant_name(c.to_dict())} == {1e-4}
    # which optimizer runs the decay variants is the spec's fact, not a name in the chapter
    assert [o for o in chapter.OPTIMIZERS if optimizers.check(o).decoupled_decay] == ["adamw"]
    assert len(chapter.grid(presets.get("smoke"))) == 2 * 5 * 1 * 2 * 2 == 40
    mech = chapter.mechanism_configs(p)
    # each traced optimizer at its spec's default rate: Adam and AdamW 0.001, SGD 0.1
    assert [(c.optimizer, c.lr) for c in mech] == [("adam", 0.001), ("adamw", 0.001),
                                                   ("sgd", 0.1)]
    assert [c.lr for c in mech] == [optimizers.check(o).default_lr for o in chapter.MECHANISM]
    assert all(c.trace == "updates" and c.match_width == max(p.dense_widths) and c.seed == 0
               and c.kind == "sparse" for c in mech)
    assert [chapter.variant_name(c.to_dict()) for c in mech] == ["L2_BN", "WD_BN", "L2_BN"]
    assert [c.weight_decay for c in mech] == [0.0, 2e-4, 0.0]


FLOW = {"NR": 1, "L2": 2, "DA": 3, "BN": 0.1, "L2_BN": 5, "DA_BN": 0.2, "DA_L2_SC_BN": 6,
        "WD_BN": 0.3, "DA_WD_SC_BN": 0.4}
SCALE = {"adagrad": 1, "adam": 1, "rmsprop": 1.5, "sgd": 2, "momentum": 2.5, "adamw": 1}
COLLAPSED_EGF = {"L2_BN": 1000.0, "DA_L2_SC_BN": 2000.0}
EWMA = ("adam", "rmsprop", "adamw")


def ewma_acc(egf):
    """EWMA accuracy falls with flow: 0.9 at EGF 0.1, 10 % (chance) at 1000, 4 % at 2000."""
    return 0.7 - 0.2 * np.log10(egf)


def other_acc(egf):
    """The others' accuracy rises with flow: 0.4 at EGF 0.1, 0.62 at 15."""
    return 0.5 + 0.1 * np.log10(egf)


def fake_results(preset="book", collapsing=("adam", "rmsprop"), ewma_falls=True, **overrides):
    """Every run of the grid at ``preset`` (with ``overrides``, e.g. more seeds) with made-up
    outcomes, every accuracy in [0, 1]: average EGF = FLOW[variant] x SCALE[optimizer], except
    the L2_BN and DA_L2_SC_BN cells of the ``collapsing`` optimizers (EGF 1000 and 2000: at
    chance on digits' 10 classes, collapsed); accuracy :func:`ewma_acc` for the EWMA optimizers
    (``ewma_falls``; else :func:`other_acc` like the others), :func:`other_acc` for the others;
    one dense Adam NR run at lr 0.1 diverged (test accuracy 0.7 recorded, counted at chance)."""
    rows, diverged = [], False
    for c in chapter.grid(presets.get(preset, **overrides)):
        v = chapter.variant_name(c.to_dict())
        egf = FLOW[v] * SCALE[c.optimizer]
        if c.optimizer in collapsing and v in COLLAPSED_EGF:
            egf = COLLAPSED_EGF[v]
        acc = ewma_acc(egf) if c.optimizer in EWMA and ewma_falls else other_acc(egf)
        assert 0 <= acc <= 1
        row = {"key": config_key(c), **c.to_dict(), "kind": c.kind, "test_acc": acc,
               "test_loss": 1 - acc, "train_loss": 0.0, "train_acc": 1.0, "diverged": False,
               "diverged_reason": "", "wall_s": 1.0,
               **{f"mean_{m}": egf for m in ("gf_l1", "gf_l2", "egf_l1", "egf_l2",
                                             "gfall_l1", "gfall_l2")}}
        if not diverged and c.kind == "dense" and c.optimizer == "adam" and v == "NR" \
                and c.lr == 0.1:
            row.update(diverged=True, diverged_reason="non-finite", test_acc=0.7)
            diverged = True
        rows.append(row)
    return Results(typed_runs(pd.DataFrame(rows).reindex(columns=list(RUN_COLUMNS))),
                   pd.DataFrame(columns=["key", "measure", "epoch", "value"]))


@pytest.fixture(scope="module")
def paper_form():
    """The analysis of :func:`fake_results` at the ``book`` preset: the paper's form holds."""
    return chapter.analyse(fake_results(), presets.get("book"))


def test_an_impossible_accuracy_is_refused_not_hidden():
    """Why the fixture keeps accuracies in [0, 1]: a run's test accuracy above 1 (396 of 360
    digits test images) is no outcome, and counting the runs at chance says so."""
    bad = fake_results()
    bad.runs.loc[bad.runs.index[0], "test_acc"] = 1.1
    with pytest.raises(ValueError):
        chapter.analyse(bad, presets.get("book"))


def _harm(optimizer):
    """By hand: the mean over REACTIONS of accuracy(base) - accuracy(variant), one unit."""
    acc = ewma_acc if optimizer in EWMA else other_acc
    egf = {v: COLLAPSED_EGF[v] if optimizer in ("adam", "rmsprop") and v in COLLAPSED_EGF
           else FLOW[v] * SCALE[optimizer] for v in FLOW}
    return np.mean([acc(egf[base]) - acc(egf[v]) for v, base in chapter.REACTIONS.items()])


def test_analyse_by_hand(paper_form):
    a = paper_form
    assert isinstance(a, chapter.Analysis) and a.scale == "book" and a.lrs == [0.001, 0.1]
    # 592 runs; Adam's and RMSProp's two L2 cells end at chance: 4 cells x 2 lrs x 2 kinds x
    # 2 widths x 2 seeds = 64 runs (10 % and 4 % of 360 digits images)
    assert (a.counts.runs, a.counts.diverged, a.counts.at_chance) == (592, 1, 64)
    assert a.diverged.loc[(0.1, "dense", "adam", "NR")].to_dict() == {"diverged": 1, "runs": 4}
    assert len(a.diverged) == 1 and a.diverged["diverged"].sum() == 1
    assert (a.l2, a.weight_decay) == (1e-4, 2e-4)
    cells = a.cells.set_index(["lr", "kind", "optimizer", "variant"])
    assert len(cells) == 2 * 2 * 37
    # the diverged run counts at chance (0.1) among its cell's 4 runs; its flow is left out
    nr = cells.loc[(0.1, "dense", "adam", "NR")]
    assert nr["acc"] == pytest.approx((3 * ewma_acc(1) + 0.1) / 4) and nr["egf"] == 1.0
    assert nr["runs"] == 4 and nr["diverged"] == 1 and nr["family"] == "EWMA"
    assert cells.loc[(0.001, "sparse", "adam", "L2_BN"), "collapsed"] == 1.0
    assert cells.loc[(0.001, "sparse", "rmsprop", "DA_L2_SC_BN"), "collapsed"] == 1.0
    assert cells.loc[(0.001, "sparse", "adamw", "WD_BN"), "collapsed"] == 0.0
    # the geometric mean of equal EGFs is that EGF
    assert cells.loc[(0.1, "sparse", "momentum", "DA"), "egf"] == pytest.approx(3 * 2.5)

    # the collapse, at the optimizer x seed unit: AdamW has no L2 / DA pair, so 10 units
    h = a.harm[0.001]
    assert sorted(set(h["optimizer"])) == ["adagrad", "adam", "momentum", "rmsprop", "sgd"]
    assert len(h) == 10 and (h.groupby("optimizer").size() == 2).all()
    by = h.groupby("optimizer")["harm"].first()
    for optimizer in by.index:
        assert by[optimizer] == pytest.approx(_harm(optimizer))
    assert by["adam"] == pytest.approx(0.2 / 5 * np.log10(2 * 3 * 1e4 * 2 * 2e4))
    assert by["sgd"] == pytest.approx(-0.1 / 5 * np.log10(2 * 3 * 50 * 2 * 60))
    c = a.collapse[0.001]
    assert c["effect"] == pytest.approx(np.mean([_harm("adam"), _harm("rmsprop")])
                                        - np.mean([_harm(o) for o in
                                                   ("adagrad", "sgd", "momentum")]))
    # 4 EWMA units of 10, all above every other: the most extreme of C(10, 4) labellings
    assert (c["n"], c["n_labelled"]) == (10, 4)
    assert c["pvalue"] == pytest.approx(1 / 210) and c["min_p"] == pytest.approx(1 / 210)
    assert c["ci_low"] > 0

    # the sensitivity: within each unit accuracy falls with flow (EWMA) or rises (the others)
    t = a.taus[0.001]
    assert len(t) == 12 and t.set_index("optimizer")["n"].to_dict() == {
        "adagrad": 14, "adam": 14, "rmsprop": 14, "sgd": 14, "momentum": 14, "adamw": 4}
    assert (t.loc[t["family"] == "EWMA", "tau"] == -1).all()
    assert (t.loc[t["family"] == "other", "tau"] == 1).all()
    s = a.sensitivity[0.001]
    assert (s["effect"], s["ci_low"], s["ci_high"]) == pytest.approx((2, 2, 2))
    assert (s["n"], s["n_labelled"]) == (12, 6) and s["pvalue"] == pytest.approx(1 / 924)

    # AdamW against Adam, at the seed: its decay variants against Adam's collapsed L2 cells
    gain = np.mean([ewma_acc(0.3) - ewma_acc(1000), ewma_acc(0.4) - ewma_acc(2000)])
    e, drop = a.escape[0.001], a.flow_drop[0.001]
    assert e.n == 2 and e.effect == pytest.approx(gain) and e.min_p == 0.25
    assert list(e.means.index) == [0, 1] and e.needs == 5
    assert drop.effect == pytest.approx(np.mean([np.log10(1000 / 0.3), np.log10(2000 / 0.4)]))
    coupled = a.coupled
    assert len(coupled) == 2 * 2 * 2 * 2 * 2  # AdamW variants x lrs x kinds x widths x seeds
    assert not coupled["collapsed_adamw"].any() and coupled["collapsed_adam"].all()

    table_ = chapter.coupled_table(a.coupled)
    row = table_.loc[(0.001, "sparse", "L2_BN | WD_BN")]
    assert row["n"] == 4 and row["EGF AdamW / Adam"] == pytest.approx(3e-4)
    assert row["gain (points)"] == round(100 * (ewma_acc(0.3) - ewma_acc(1000)), 1)
    assert row["Adam + L2 acc %"] == 10.0
    assert list(table_.columns)[0] == "gain (points)"
    assert set(table_["diverged"]) == {"0 / 0"}
    assert list(a.tables[(0.1, "sparse")]["acc"].index) == list(chapter.OPTIMIZERS)
    assert list(a.tables[(0.1, "sparse")]["acc"].columns) == [*chapter.VARIANTS,
                                                             *chapter.DECOUPLED]
    assert np.isnan(a.tables[(0.1, "sparse")]["acc"].loc["adamw", "NR"])
    assert a.tables[(0.1, "dense")]["diverged"].loc["adam", "NR"] == 1
    assert a.reactions.loc[(0.001, "adam"), "L2_BN - BN"] == pytest.approx(
        100 * (ewma_acc(1000) - ewma_acc(0.1)))

    f = a.facts[0.001]
    assert f == chapter.collapse_facts(a.cells, 0.001)
    assert f["acc"] == pytest.approx(np.mean([ewma_acc(1000), ewma_acc(2000)]))
    assert f["others"] == pytest.approx(np.mean(
        [other_acc(FLOW[v] * SCALE[o]) for o in ("adagrad", "sgd", "momentum")
         for v in ("L2_BN", "DA_L2_SC_BN")]))
    assert (f["egf"], f["egf_rest"]) == pytest.approx((1000, 3))  # Adam's DA: 3
    assert f["collapsed"] and f["highest"] and f["diverged"] == 0

    verdicts = a.verdicts
    assert [v.test for v in verdicts] == [f"{t} at lr {lr}" for lr in ("0.001", "0.1")
                                          for t in chapter.TESTS]
    assert [v.form for v in verdicts] == ["paper", "paper", "direct"] * 2
    assert {v.claim for v in verdicts} == {4} and {v.scale for v in verdicts} == {"book"}
    assert a.headline(4) is verdicts[0]
    assert [v.unit for v in verdicts[:3]] == ["optimizer x seed units", "seeds",
                                              "optimizer x seed units"]
    collapse, escape, sensitivity = verdicts[:3]
    assert collapse.effect == pytest.approx(100 * c["effect"]) and collapse.n == 10
    assert collapse.interval == pytest.approx((100 * c["ci_low"], 100 * c["ci_high"]))
    assert collapse.condition_holds is True
    assert collapse.needs == 7  # 1 / C(7, 4) = 1/35 is the first below 0.05 at 4 in 10
    assert escape.effect == pytest.approx(100 * gain) and escape.condition_holds is True
    assert sensitivity.effect == pytest.approx(2) and sensitivity.n == 12
    # Benjamini-Hochberg over the claim's six tests at this scale: p = 1/924 (x2), 1/210 (x2),
    # 0.25 (x2) -> q = 1/924 x 6/2, 1/210 x 6/4, 0.25 x 6/6
    assert [v.q for v in verdicts[:3]] == pytest.approx([6 / 4 / 210, 0.25, 6 / 2 / 924])
    assert collapse.sentence.startswith(
        f"with L2_BN and DA_L2_SC_BN, Adam's and RMSProp's sparse nets reach {f['acc']:.0%} "
        f"test accuracy against {f['others']:.0%} for Adagrad, SGD and momentum (0 of their "
        "runs diverged); they did collapse to chance and are their highest-flow variants")
    # AdamW's flow is 1 / sqrt(1000 / 0.3 x 2000 / 0.4) of Adam's (geometric mean over its
    # two variants): written in significant digits, not rounded to 0.00
    ratio = 1 / np.sqrt(1000 / 0.3 * 2000 / 0.4)
    assert f"with {ratio:.2g} times Adam's average EGF" in escape.sentence
    assert "0.00024 times" in escape.sentence
    assert "mean Kendall tau -1.00 for the EWMA optimizers" in sensitivity.sentence


def test_display_tables_show_the_analysis_numbers(paper_form):
    a = paper_form
    t = chapter.tests_table(a)
    assert len(t) == len(a.verdicts) == 6
    assert list(t.columns) == ["effect (95 % CI)", "p (q)", "n", "smallest p"]
    assert list(t.index.names) == ["lr", "test"]
    assert list(t.index) == [(lr, test) for lr in ("0.001", "0.1") for test in chapter.TESTS]
    s = t.loc[("0.001", "sensitivity to high flow")]
    assert s["effect (95 % CI)"] == "+2.0 (+2.0 to +2.0)"
    assert s["p (q)"] == f"{p_cell(1 / 924)} (q = {p_cell(6 / 2 / 924)})" == "0.0011 (q = 0.0032)"
    assert s["n"] == "n = 12 optimizer x seed units" and s["smallest p"] == "0.0011"
    c, v = t.loc[("0.1", "collapse")], a.verdicts[3]
    assert c["effect (95 % CI)"] == (f"{v.effect:+.1f} ({v.interval[0]:+.1f} to "
                                     f"{v.interval[1]:+.1f})")
    assert c["smallest p"] == p_cell(1 / 210) == "0.0048"
    e = t.loc[("0.001", "AdamW's escape")]
    assert e["n"] == "n = 2 seeds" and e["p (q)"] == "0.25 (q = 0.25)"
    assert e["smallest p"] == "0.25"

    h = chapter.harm_table(a)
    assert list(h.index.names) == ["lr", "optimizer"]
    # AdamW is no unit of the collapse test (no L2 / DA pair): no row, no "nan"
    assert list(h.loc["0.001"].index) == ["Adagrad", "Adam", "momentum", "RMSProp", "SGD"]
    assert not h.to_string().count("nan")
    adam = h.loc[("0.001", "Adam")]
    assert adam["family"] == "EWMA"
    assert adam["cost of L2 / DA (points)"] == round(100 * _harm("adam"), 1)
    assert adam["per seed"] == ", ".join([f"{100 * _harm('adam'):+.1f}"] * 2)
    assert h.loc[("0.1", "SGD"), "per seed"] == ", ".join([f"{100 * _harm('sgd'):+.1f}"] * 2)

    shown = chapter.lr_labels(chapter.coupled_table(a.coupled))
    assert [i[0] for i in shown.index] == ["0.001"] * 4 + ["0.1"] * 4
    assert shown.loc[("0.1", "sparse", "DA_L2_SC_BN | DA_WD_SC_BN"), "EGF AdamW / Adam"] == \
        pytest.approx(0.4 / 2000)
    reading = chapter.paper_reading()
    assert reading.loc["Adam", "test accuracy"] == "1-5 %"


def statuses(a):
    """``{test: status}`` of an analysis's verdicts."""
    return {v.test: v.status for v in a.verdicts}


def both_lrs(collapse, escape, sensitivity):
    return {f"{t} at lr {lr}": s for lr in ("0.001", "0.1")
            for t, s in zip(chapter.TESTS, (collapse, escape, sensitivity))}


FIVE_SEEDS = dict(seeds=(0, 1, 2, 3, 4))
"""Enough seeds for AdamW's test at the seed (smallest p 1/32 < 0.05; two give 1/4)."""


def test_status_rules(paper_form):
    book, five = presets.get("book"), presets.get("book", **FIVE_SEEDS)
    # the paper's form holds: the collapse (with the highest flow) and the sensitivity are
    # reproduced; AdamW's escape cannot be tested on two seeds, ...
    assert statuses(paper_form) == both_lrs("reproduced", "not testable here", "reproduced")
    assert "it would need 5 seeds" in paper_form.verdicts[1].reason
    # ... and is reproduced on five
    a = chapter.analyse(fake_results(**FIVE_SEEDS), five)
    assert statuses(a) == both_lrs("reproduced", "reproduced", "reproduced")
    assert a.escape[0.001].n == 5 and a.escape[0.001].pvalue == pytest.approx(1 / 32)

    # Adam collapses but RMSProp does not: the paper's form of the collapse (both EWMA
    # optimizers collapse) fails while the EWMA harm stays significant -> partly; AdamW's
    # escape is judged against Adam, the optimizer it is paired with -> reproduced
    a = chapter.analyse(fake_results(collapsing=("adam",), **FIVE_SEEDS), five)
    assert not a.facts[0.001]["collapsed"]
    assert statuses(a) == both_lrs("partly", "reproduced", "reproduced")
    # no Adam run collapses (EWMA accuracy still falls with flow): AdamW still gains, but over
    # an Adam that did not collapse -> partly, both
    a = chapter.analyse(fake_results(collapsing=(), **FIVE_SEEDS), five)
    assert not a.coupled["collapsed_adam"].any() and a.escape[0.001].pvalue < 0.05
    assert statuses(a) == both_lrs("partly", "partly", "reproduced")
    # no Adam run collapses and EWMA optimizers react to flow like the others: not reproduced
    # (no extra harm, and AdamW trails Adam); the sensitivity contrast is 0 -> not
    # distinguishable
    a = chapter.analyse(fake_results(collapsing=(), ewma_falls=False, **FIVE_SEEDS), five)
    assert a.collapse[0.001]["effect"] == pytest.approx(0, abs=1e-12)
    assert a.escape[0.001].ci_high < 0
    assert statuses(a) == both_lrs("not reproduced", "not reproduced", "not distinguishable")
    assert "does not hold that Adam's and RMSProp's" in a.verdicts[0].reason

    # too few units (the smoke grid: Adam and momentum x 2 seeds for the collapse, two seeds
    # for AdamW; AdamW's one point per unit has no tau): not testable here, however large
    a = chapter.analyse(fake_results("smoke"), presets.get("smoke"))
    assert statuses(a) == both_lrs(*["not testable here"] * 3)
    assert [v.n for v in a.verdicts[:3]] == [4, 2, 4]
    assert [v.min_p for v in a.verdicts[:3]] == pytest.approx([1 / 6, 0.25, 1 / 6])
    assert a.verdicts[0].effect > 0 and a.verdicts[0].condition_holds

    # no data: every run diverged -> not run; no AdamW runs -> its escape is not run
    r = fake_results()
    r.runs["diverged"] = True
    a = chapter.analyse(r, book)
    assert a.counts.all_diverged and statuses(a) == both_lrs(*["not run"] * 3)
    assert {v.sentence for v in a.verdicts} == {"not run: every run diverged"}
    r = fake_results()
    r.runs = r.runs[r.runs["optimizer"] != "adamw"]
    a = chapter.analyse(r, book)
    assert statuses(a) == both_lrs("reproduced", "not run", "reproduced")
    assert a.verdicts[1].sentence == "no AdamW runs at this scale"


def test_matched_decay_is_sgds_decay_for_the_l2_term():
    """SGD with l2 * sum ||W||^2 in the loss and AdamW-style decay 2 * l2 move a weight alike."""
    w = torch.tensor([0.5, -1.0], requires_grad=True)
    (1e-2 * w.pow(2).sum()).backward()
    lr = 0.1
    assert torch.allclose(w - lr * w.grad, w * (1 - lr * chapter.matched_decay(1e-2)))


@pytest.mark.slow
def test_papermill_at_the_paper_preset_runs_smoke_sized(tmp_path):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "gflib.execute", "optimizers", str(out_dir),
           "-p", "preset", "paper", "-p", "dataset", "digits", "-p", "sparse_width", "16",
           "-p", "epochs", "1", "-p", "seeds", "[0]", "-p", "train_subset", "256"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    nb = json.loads((out_dir / "optimizers.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code)
    assert len(list((out_dir / "results").glob("*.json"))) == 2 * 37 * 2 * 2 + 3


def test_lr_labels_write_rates_as_people_do():
    t = pd.DataFrame({"gain": [1.0, 2.0]},
                     index=pd.MultiIndex.from_tuples([(0.1, "adam"), (0.001, "adam")],
                                                     names=["lr", "optimizer"]))
    assert list(chapter.lr_labels(t).index) == [("0.1", "adam"), ("0.001", "adam")]
