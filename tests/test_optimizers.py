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
    assert len(chapter.grid(presets.get("smoke"))) == 2 * 5 * 1 * 2 * 2 == 40
    mech = chapter.mechanism_configs(p)
    assert [(c.optimizer, c.lr) for c in mech] == list(chapter.MECHANISM.items())
    assert all(c.trace == "updates" and c.match_width == max(p.dense_widths) and c.seed == 0
               for c in mech)
    assert [chapter.variant_name(c.to_dict()) for c in mech] == ["L2_BN", "WD_BN", "L2_BN"]


FLOW = {"NR": 1, "L2": 2, "DA": 3, "BN": 0.1, "L2_BN": 5, "DA_BN": 0.2, "DA_L2_SC_BN": 6,
        "WD_BN": 0.3, "DA_WD_SC_BN": 0.4}
SCALE = {"adagrad": 1, "adam": 1, "rmsprop": 1.5, "sgd": 2, "momentum": 2.5, "adamw": 1}


def fake_results():
    """Every run of the book grid with made-up outcomes: average EGF = FLOW[variant] x
    SCALE[optimizer], except Adam's L2_BN and DA_L2_SC_BN (1000, 2000); EWMA accuracy
    0.85 - 0.25 log10(EGF) (falls with flow: Adam's L2 cells at 10 % and 2.5 %, collapsed),
    the others' 0.5 + 0.1 log10(EGF) (rises); one dense Adam NR run at lr 0.1 diverged."""
    rows, diverged = [], False
    for c in chapter.grid(presets.get("book")):
        v = chapter.variant_name(c.to_dict())
        egf = FLOW[v] * SCALE[c.optimizer]
        if c.optimizer == "adam" and v in ("L2_BN", "DA_L2_SC_BN"):
            egf = 1000.0 if v == "L2_BN" else 2000.0
        ewma = c.optimizer in ("adam", "rmsprop", "adamw")
        acc = 0.85 - 0.25 * np.log10(egf) if ewma else 0.5 + 0.1 * np.log10(egf)
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


def test_analyse_by_hand():
    a = chapter.analyse(fake_results(), presets.get("book"))
    assert a["n_runs"] == 592 and a["n_diverged"] == 1
    assert a["diverged"].loc[(0.1, "dense", "adam", "NR")].to_dict() == {"diverged": 1, "runs": 4}
    assert len(a["diverged"]) == 1 and a["diverged"]["diverged"].sum() == 1
    cells = a["cells"].set_index(["lr", "kind", "optimizer", "variant"])
    # the diverged run counts at chance (0.1) among its cell's 4 runs; its flow is left out
    nr = cells.loc[(0.1, "dense", "adam", "NR")]
    assert nr["acc"] == pytest.approx((3 * 0.85 + 0.1) / 4) and nr["egf"] == pytest.approx(1.0)
    assert nr["runs"] == 4 and nr["diverged"] == 1
    assert cells.loc[(0.001, "sparse", "adam", "L2_BN"), "collapsed"] == 1.0
    s = a["sensitivity"].loc[(0.001, "sparse")]
    assert (s["tau_ewma"], s["tau_other"], s["effect"]) == pytest.approx((-1, 1, 2))
    assert (s["n_ewma"], s["n_other"]) == (16, 21) and s["pvalue"] < 0.01
    t = a["tests"]
    deficit = np.mean([0.5 + 0.1 * np.log10(5), 0.5 + 0.1 * np.log10(12.5)]) - 0.10
    assert t.loc[("collapse", 0.1), "n"] == 8
    assert t.loc[("adamw", 0.001), "effect"] == pytest.approx(
        np.mean([0.25 * np.log10(1000 / 0.3), 0.25 * np.log10(2000 / 0.4)]))
    assert t.loc[("flow", 0.001), "pvalue"] < 0.01
    d = a["deficit"][0.001].set_index("variant")["deficit"]
    assert d.loc["L2_BN"].to_numpy() == pytest.approx(deficit)
    table_ = a["coupled_table"]
    assert table_.loc[(0.001, "sparse", "L2_BN | WD_BN"), "n"] == 4
    assert table_.loc[(0.001, "sparse", "L2_BN | WD_BN"), "EGF AdamW / Adam"] == pytest.approx(
        3e-4)
    assert table_.loc[(0.001, "sparse", "L2_BN | WD_BN"), "gain (points)"] == pytest.approx(
        round(100 * 0.25 * np.log10(1000 / 0.3), 1))
    assert list(table_.columns)[0] == "gain (points)"
    assert set(table_["diverged"]) == {"0 / 0"}
    assert list(a["tables"][(0.1, "sparse")]["acc"].index) == list(chapter.OPTIMIZERS)
    assert np.isnan(a["tables"][(0.1, "sparse")]["acc"].loc["adamw", "NR"])
    assert a["reactions"].loc[(0.001, "adam"), "L2_BN - BN"] == pytest.approx(
        100 * (0.10 - (0.85 + 0.25)))
    facts = chapter.collapse_facts(a["cells"], 0.001)
    assert facts["acc"] == pytest.approx(np.mean([0.10, 0.85 - 0.25 * np.log10(2000)]))
    assert facts["others"] == pytest.approx(np.mean(
        [0.5 + 0.1 * np.log10(FLOW[v] * SCALE[o]) for o in ("adagrad", "momentum")
         for v in ("L2_BN", "DA_L2_SC_BN")]))
    assert (facts["egf"], facts["egf_rest"]) == pytest.approx((1000, 3))
    assert facts["collapsed"] and facts["highest"]
    verdicts = a["verdicts"]
    assert len(verdicts) == 6 and {v.claim for v in verdicts} == {4}
    assert [v.status for v in verdicts] == ["reproduced"] * 6
    assert verdicts[0].sentence.startswith("sensitivity at lr 0.001:")
    assert verdicts[1].n == 8 and verdicts[1].effect > 0 and verdicts[1].scale == "book"


def test_display_tables_show_the_analysis_numbers():
    a = chapter.analyse(fake_results(), presets.get("book"))
    sens = chapter.sensitivity_table(a["sensitivity"])
    assert list(sens.columns) == [("lr 0.001", "dense"), ("lr 0.001", "sparse"),
                                  ("lr 0.1", "dense"), ("lr 0.1", "sparse")]
    col = sens[("lr 0.001", "sparse")]
    assert list(col.index)[0] == "tau others - tau EWMA"
    assert (col["tau others - tau EWMA"], col["tau EWMA"], col["tau others"]) == (
        "+2.00", "-1.00", "+1.00")
    assert col["cells (EWMA + others)"] == "16 + 21"
    s = a["sensitivity"].loc[(0.001, "sparse")]
    assert col["95 % CI"] == f"{s['ci_low']:+.2f} to {s['ci_high']:+.2f}"
    t = chapter.tests_table(a["tests"])
    raw = a["tests"].loc[("adamw", 0.001)]
    row = t.loc[("0.001", "AdamW's gain (points)")]
    assert row["effect (95 % CI)"] == (f"{100 * raw['effect']:+.1f} ({100 * raw['ci_low']:+.1f}"
                                       f" to {100 * raw['ci_high']:+.1f})")
    assert row["n"] == 8
    assert row["per seed"] == ", ".join(f"{100 * raw[c]:+.1f}" for c in ("seed 0", "seed 1"))
    flow = a["tests"].loc[("flow", 0.1)]
    shown = t.loc[("0.1", "AdamW's EGF lower by (%)")]
    assert shown["effect (95 % CI)"].startswith(f"{100 * (1 - 10 ** -flow['effect']):+.1f} (")
    assert shown["p"] == p_cell(flow["pvalue"])
    assert len(t) == len(a["tests"])


def test_status_rules():
    s = chapter._status
    assert s(0.3, 0.1, 0.5, 0.01, True) == "reproduced"
    assert s(0.3, 0.1, 0.5, 0.01, False) == "partly"
    assert s(0.3, 0.1, 0.5, 0.2, True) == "not distinguishable"
    assert s(-0.3, -0.5, 0.1, 0.9, True) == "not distinguishable"
    assert s(-0.3, -0.5, -0.1, 0.99, True) == "not reproduced"
    assert s(float("nan"), float("nan"), float("nan"), float("nan"), True) == "not run"


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
