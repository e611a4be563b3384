"""The activations chapter: activation shapes and slopes, SReLU, the negative-flow measurement and
its observer, the chapter's grid and analysis."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as ss

from gflib import activations, models, negflow, optimizers, presets, train
from gflib.activations import SReLU
from gflib.analysis import disagreements, pq_table
from gflib.chapters import activations as chapter
from gflib.config import RunConfig, RunResult
from gflib.ensemble import Single
from gflib.flow import MEASURES
from gflib.results import RUN_COLUMNS, Results, typed_runs
from gflib.stacked import RunVmap, StackedMLP
from gflib.store import config_key


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# --- activations and their slopes -------------------------------------------------------------

def test_curves_at_hand_picked_points():
    c = activations.curves(low=-2, high=2, points=9).set_index(["activation", "x"])
    value, slope = c["value"], c["slope"]
    assert slope["relu", -1.0] == 0 and slope["relu", 2.0] == 1 and value["relu", -1.0] == 0
    assert value["prelu", -1.0] == pytest.approx(-0.25) and slope["prelu", -1.0] == 0.25
    assert value["elu", -1.0] == pytest.approx(math.exp(-1) - 1)
    assert slope["elu", -1.0] == pytest.approx(math.exp(-1))
    assert value["swish", 2.0] == pytest.approx(2 * sigmoid(2.0))
    assert slope["swish", 0.0] == pytest.approx(0.5)
    s = sigmoid(-2.0)  # Swish's slope: s (1 + x (1 - s)), negative at -2
    assert slope["swish", -2.0] == pytest.approx(s * (1 - 2 * (1 - s)))
    assert slope["swish", -2.0] < 0
    assert slope["sigmoid", 0.0] == pytest.approx(0.25)
    # SReLU at init (t_l = 0, a_l = 0.2, t_r = 1, a_r = 1): a leaky ReLU
    assert value["srelu", -1.0] == pytest.approx(-0.2)
    assert slope["srelu", -1.0] == pytest.approx(0.2)
    assert slope["srelu", 0.5] == 1 and value["srelu", 2.0] == pytest.approx(2.0)
    assert list(dict.fromkeys(c.index.get_level_values(0))) == list(activations.ACTIVATIONS)


def test_the_specs_say_which_activations_slope_down():
    check_slopes_match_specs()


def check_slopes_match_specs():
    """On [-5, 5], at their initial parameters, the registered activations that slope down
    somewhere are exactly those whose spec says so by shape (:func:`gflib.activations.by_shape`,
    what the chapter's page says). (tests/test_extending.py calls it with an activation
    registered at run time.)"""
    summary = activations.slope_summary(activations.curves())
    assert list(summary.index) == list(activations.ACTIVATIONS)
    assert list(summary.index[~summary["monotone"]]) == activations.by_shape()


def test_of_the_studys_six_only_swish_slopes_down():
    summary = activations.slope_summary(activations.curves(chapter.ACTIVATIONS))
    assert list(summary.index[~summary["monotone"]]) == ["swish"]
    # Swish's least slope: where 2 + x (1 - 2 sigmoid(x)) = 0, x = -2.3994, slope -0.0998
    assert summary.loc["swish", "x_at_min"] == pytest.approx(-2.4)
    assert summary.loc["swish", "min_slope"] == pytest.approx(-0.0998, abs=1e-4)
    # below x = -1.2785 on [-5, 5]: 75 of the 201 grid points
    assert summary.loc["swish", "negative_share"] == pytest.approx(75 / 201)
    with pytest.raises(ValueError, match="'tanh'"):
        activations.curves(["relu", "tanh"])


def test_srelu_four_parameters_and_init():
    f = SReLU(3)
    params = dict(f.named_parameters())
    assert list(params) == ["t_left", "a_left", "t_right", "a_right"]
    assert all(p.shape == (3,) and p.requires_grad for p in params.values())
    assert params["t_left"].tolist() == [0.0] * 3 and params["t_right"].tolist() == [1.0] * 3
    assert params["a_left"].tolist() == pytest.approx([0.2] * 3)
    assert params["a_right"].tolist() == [1.0] * 3
    x = torch.tensor([[-2.0, 0.5, 3.0]])
    assert torch.allclose(f(x), torch.tensor([[-0.4, 0.5, 3.0]]))


def test_srelu_gradients_by_hand():
    """Unit 0 gets x = -1 (left piece), unit 1 x = 0.5 (middle), unit 2 x = 3 (right piece):
    d/dt_l = 1 - a_l, d/da_l = x - t_l, d/dt_r = 1 - a_r, d/da_r = x - t_r, d/dx = the slope."""
    f = SReLU(3)
    with torch.no_grad():
        f.a_right.fill_(0.5)
    x = torch.tensor([[-1.0, 0.5, 3.0]], requires_grad=True)
    f(x).sum().backward()
    assert f.t_left.grad.tolist() == pytest.approx([0.8, 0, 0])
    assert f.a_left.grad.tolist() == pytest.approx([-1.0, 0, 0])
    assert f.t_right.grad.tolist() == pytest.approx([0, 0, 0.5])
    assert f.a_right.grad.tolist() == pytest.approx([0, 0, 2.0])
    assert x.grad[0].tolist() == pytest.approx([0.2, 1.0, 0.5])


def test_srelu_stacks_like_the_others():
    nets = [models.MLP(5, 3, depth=2, width=4, activation="srelu") for _ in range(2)]
    with torch.no_grad():
        nets[1].hidden[0].act.t_right.fill_(0.3)
    stacked = StackedMLP(nets)
    act = stacked.net.hidden[0].act
    assert isinstance(act, RunVmap) and act.t_right.shape == (2, 4)
    x = torch.randn(7, 5)
    out = stacked(torch.stack([x, x]))
    for r, net in enumerate(nets):
        assert torch.allclose(out[r], net(x), atol=1e-6)


# --- negative gradient flow on a network checked by hand --------------------------------------

def hand_net(activation):
    """1 input, one hidden layer of 2 units (weights 1 and -1, no bias), 2 outputs: on x = 2 and
    3 the pre-activations are (2, -2) and (3, -3)."""
    net = models.MLP(1, 2, depth=1, width=2, activation=activation)
    w_out = torch.tensor([[1.0, 0.5], [-1.0, 2.0]])
    with torch.no_grad():
        net.hidden[0].layer.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net.hidden[0].layer.bias.zero_()
        net.out.weight.copy_(w_out)
        net.out.bias.zero_()
    x, y = torch.tensor([[2.0], [3.0]]), torch.tensor([0, 1])
    return net, x, y, w_out.numpy().astype(float)


def test_negative_flow_of_swish_by_hand():
    net, x, y, w_out = hand_net("swish")
    got = negflow.negative_flow(Single(net), x, y)
    assert len(got) == 1
    z = np.array([[2.0, -2.0], [3.0, -3.0]])
    s = sigmoid(z)
    a = z * s
    logits = a @ w_out.T
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    dlogits = (p - np.eye(2)[[0, 1]]) / 2            # mean cross-entropy over 2 examples
    dz = (dlogits @ w_out) * s * (1 + z * (1 - s))  # dC/da times Swish's slope
    expected = np.abs(dz[:, 1]).sum() / np.abs(dz).sum()  # the second unit's z < -1.28
    r = got[0]
    assert r["neg_share"] == 0.5 and r["hidden.0.neg_share"] == 0.5
    assert r["neg_grad_share"] == pytest.approx(expected, rel=1e-5)
    assert r["hidden.0.neg_grad_share"] == pytest.approx(expected, rel=1e-5)
    assert 0 < expected < 1


def test_monotone_and_learned_negative_slopes():
    net, x, y, _ = hand_net("relu")
    assert negflow.negative_flow(Single(net), x, y)[0]["neg_share"] == 0
    net, x, y, _ = hand_net("prelu")
    assert negflow.negative_flow(Single(net), x, y)[0]["neg_share"] == 0  # a = 0.25
    with torch.no_grad():
        net.hidden[0].act.weight.fill_(-0.5)  # a learned negative slope
    r = negflow.negative_flow(Single(net), x, y)[0]
    assert r["neg_share"] == 0.5 and 0 < r["neg_grad_share"] < 1


def test_measuring_leaves_the_model_as_it_was():
    net = models.MLP(5, 3, depth=2, width=8, activation="swish", batchnorm=True)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    ens = Single(net)
    negflow.negative_flow(ens, x, y)
    assert all(p.grad is None for p in net.parameters())
    assert all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("activation", [n for n, s in activations.ACTIVATIONS.items()
                                        if s.negative_slope != "never"])
def test_stacked_runs_measure_as_single_ones(activation):
    check_negative_flow_stacked(activation)


def check_negative_flow_stacked(activation):
    """Two BatchNorm MLPs of registered ``activation`` (its parameters set to -0.3, e.g. PReLU's
    slope) measured stacked give what each gives alone, and some of their pre-activations meet
    a negative slope. (tests/test_extending.py calls it for an activation registered at run
    time.)"""
    torch.manual_seed(0)
    nets = [models.MLP(5, 3, depth=2, width=8, activation=activation, batchnorm=True)
            for _ in range(2)]
    with torch.no_grad():
        for net in nets:
            for name, p in net.named_parameters():
                if "act" in name:
                    p.fill_(-0.3)  # PReLU with a negative slope
    x, y = 3 * torch.randn(40, 5), torch.randint(0, 3, (40,))
    stacked = negflow.negative_flow(StackedMLP(nets), x, y)
    for net, got in zip(nets, stacked):
        alone = negflow.negative_flow(Single(net), x, y)[0]
        assert set(got) == set(alone) == {"neg_share", "neg_grad_share", "hidden.0.neg_share",
                                          "hidden.0.neg_grad_share", "hidden.1.neg_share",
                                          "hidden.1.neg_grad_share"}
        assert got == pytest.approx(alone, rel=1e-4)
        assert got["neg_share"] > 0


# --- the observer in the training loop --------------------------------------------------------

SMALL = dict(dataset="digits", depth=2, width=12, epochs=2, flow_points=2, train_subset=200,
             test_subset=100, activation="swish", optimizer="sgd", lr=0.1)


def test_trace_leaves_training_unchanged(one_torch_thread):
    cfg = RunConfig(**SMALL, batchnorm=True, match_width=6)
    plain = train.run(cfg)
    traced = train.run(cfg.replace(trace="activations"))
    for attr in ("history", "flow", "final", "flow_mean"):
        assert getattr(plain, attr) == getattr(traced, attr), attr
    assert plain.trace == {}
    assert set(traced.trace) >= {"neg_share", "neg_grad_share", "hidden.1.neg_grad_share"}
    assert 0 <= traced.trace["neg_share"] < 1


def test_trace_of_a_stacked_group_matches_one_by_one(one_torch_thread):
    cfgs = [RunConfig(**SMALL, seed=s, trace="activations") for s in (0, 1)]
    stacked = train.train(cfgs)
    for cfg, got in zip(cfgs, stacked):
        assert got.trace == pytest.approx(train.run(cfg).trace, rel=1e-3, abs=1e-6)
        assert 0 < got.trace["neg_share"] < 1 and 0 < got.trace["neg_grad_share"] < 1
    relu = train.run(RunConfig(**{**SMALL, "activation": "relu"}, trace="activations"))
    assert relu.trace["neg_share"] == 0 and relu.trace["neg_grad_share"] == 0


def test_observer_that_saw_no_step():
    trace = negflow.NegativeFlowTrace([RunConfig()] * 2, (torch.zeros(3, 4), torch.zeros(3)))
    assert trace.state_dict() == {}
    assert math.isnan(trace.result(1)["neg_share"])


def test_trace_numbers_become_run_columns(tmp_path):
    cfg = RunConfig(trace="activations")
    result = RunResult(config=cfg.to_dict(), history=[], flow={},
                       flow_mean={m: 1.0 for m in MEASURES},
                       final={"test_loss": 1.0, "test_acc": 0.5, "train_loss": 1.0,
                              "train_acc": 0.5},
                       diverged=False, diverged_epoch=None, wall_s=1.0, device="cpu",
                       trace={"neg_share": 0.25, "hidden.0.neg_share": 0.5, "layers": [1]})
    res = Results.from_results([result])
    assert res.runs["trace_neg_share"].tolist() == [0.25]
    assert res.runs["trace_hidden.0.neg_share"].tolist() == [0.5]
    assert "trace_layers" not in res.runs
    csv, _ = res.save(tmp_path / "x.csv")
    assert Results.load(csv).runs["trace_neg_share"].tolist() == [0.25]


# --- the chapter -------------------------------------------------------------------------------

def test_grid_size_and_fields():
    book = chapter.grid(presets.get("book"))
    assert len(book) == 5 * 6 * 5 * 2 * 2 <= 600
    assert {c.trace for c in book} == {"activations"}
    assert {c.depth for c in book} == {2}
    assert {(c.batchnorm, c.l2, c.augment, c.skip, c.weight_decay) for c in book} == {
        (True, 1e-4, False, False, 0.0)}
    # each optimizer at its spec's default learning rate
    rates = {(c.optimizer, c.lr) for c in book}
    assert rates == {(o, optimizers.check(o).default_lr) for o in chapter.STUDY_OPTIMIZERS}
    assert rates == {("adagrad", 0.01), ("adam", 0.001), ("rmsprop", 0.001), ("sgd", 0.1),
                     ("momentum", 0.01)}
    assert {c.activation for c in book} == set(chapter.ACTIVATIONS)
    assert set(chapter.ACTIVATIONS) <= set(activations.ACTIVATIONS)
    smoke = chapter.grid(presets.get("smoke"))
    assert len(smoke) == 2 * 3 * 2 * 2 * 2
    assert {c.activation for c in smoke} == {"relu", "swish", "prelu"}
    assert {(c.optimizer, c.lr) for c in smoke} == {("adam", 0.001), ("sgd", 0.1)}


def test_unknown_optimizer_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(chapter.SETTINGS, "optimizers", ("adam", "adamax"))
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'; allowed: adagrad"):
        chapter.grid(presets.get("book"))


def test_variant_fit_picks_l2_bn():
    fit = chapter.variant_fit()
    assert fit.index[0] == "L2_BN" == chapter.SETTINGS["variant"]
    assert fit["L2_BN"] == pytest.approx(0.322) and fit.index[-1] == "NR"


DELTAS = {("adam", "relu"): 0.05, ("adam", "swish"): 0.05, ("adam", "prelu"): 0.05,
          ("sgd", "relu"): 0.0, ("sgd", "swish"): 0.1, ("sgd", "prelu"): -0.1}
"""Sparse accuracy - dense accuracy of every pair of the fake results."""
WIDTHS, SEEDS = (5, 10, 15), tuple(range(4))


def base_acc(d, seed):
    return 0.5 + 0.01 * d + 0.001 * seed


def fake_results(widths=WIDTHS, seeds=SEEDS):
    """2 optimizers x 3 activations x 3 dense ``widths`` x 4 ``seeds`` of SC-SDC pairs with the
    :data:`DELTAS`; Swish nets record a negative flow of 20 % of the gradient (sparse) and 10 %
    (dense) through 10 % and 5 % of their pre-activations, the others 0."""
    rows = []
    for (opt, act), delta in DELTAS.items():
        for d in widths:
            for seed in seeds:
                acc = base_acc(d, seed)
                for kind in ("sparse", "dense"):
                    config = RunConfig(optimizer=opt, activation=act, seed=seed,
                                       trace="activations", width=20 if kind == "sparse" else d,
                                       match_width=d if kind == "sparse" else None)
                    a = acc + (delta if kind == "sparse" else 0.0)
                    share = (0.1 if kind == "sparse" else 0.05) if act == "swish" else 0.0
                    row = {"key": config_key(config), **config.to_dict(), "kind": kind,
                           "test_acc": a, "test_loss": 1 - a, "train_loss": 0.0,
                           "train_acc": 1.0, "diverged": False, "diverged_reason": "",
                           "wall_s": 1.0,
                           **{f"mean_{m}": a * k for k, m in enumerate(MEASURES, 1)},
                           "trace_neg_share": share, "trace_neg_grad_share": 2 * share,
                           "trace_hidden.0.neg_grad_share": 2 * share,
                           "trace_hidden.1.neg_grad_share": 2 * share}
                    rows.append(row)
    columns = list(RUN_COLUMNS) + [c for c in rows[0] if c.startswith("trace_")]
    return Results(typed_runs(pd.DataFrame(rows, columns=columns)),
                   pd.DataFrame(columns=["key", "measure", "epoch", "value"]))


@pytest.fixture(scope="module")
def fake_analysis():
    return chapter.analyse(fake_results(), presets.get("smoke"))


# the per-cell negative-flow shares and sparse - dense margins of the fake, by hand
HAND_SHARE = [0.2 if act == "swish" else 0.0 for _, act in DELTAS]
HAND_MARGIN = list(DELTAS.values())


def test_analyse_by_hand(fake_analysis):
    a = fake_analysis
    assert isinstance(a, chapter.Analysis) and a.scale == "smoke"
    assert (a.counts.runs, a.counts.diverged, a.counts.at_chance) == (144, 0, 0)
    cells = a.cells
    layout = (["adam", "sgd"], ["relu", "swish", "prelu"])
    for table in (cells.p, cells.q, cells.n, cells.median):
        assert (list(table.index), list(table.columns)) == layout
    assert (cells.n == 12).all().all() and cells.n_text() == "12" and cells.cells() == 6
    # 12 pairs all of one sign: the exact one-sided Wilcoxon p is 1 / 2^12 ...
    p, q = cells.p, cells.q
    for cell in [("adam", "relu"), ("adam", "swish"), ("adam", "prelu"), ("sgd", "swish")]:
        assert p.loc[cell] == pytest.approx(0.5 ** 12)
        # ... and Benjamini-Hochberg over the table's 6 cells: rank 4 of 6 -> p x 6 / 4
        assert q.loc[cell] == pytest.approx(0.5 ** 12 * 6 / 4)
    assert p.loc["sgd", "relu"] == 1.0 and p.loc["sgd", "prelu"] == 1.0  # all 0, all < 0
    assert q.loc["sgd", "relu"] == 1.0 and q.loc["sgd", "prelu"] == 1.0
    assert cells.median.loc["sgd"].tolist() == pytest.approx([0.0, 0.1, -0.1])
    assert (cells.significant("p"), cells.significant("q")) == (4, 4)
    assert a.paper.loc["sgd", "prelu"] == 0.005 and (a.paper < 0.05).to_numpy().sum() == 4
    # ours by q, the paper's by p
    assert list(a.favoured.columns) == ["ours (q)", "paper (p)"]
    assert a.favoured.loc["adam"].tolist() == ["ReLU, Swish, PReLU", "PReLU"]
    assert a.favoured.loc["sgd"].tolist() == ["Swish", "ReLU, Swish, PReLU"]
    assert a.agreement.loc["adam"].tolist() == ["ours only", "ours only", "both"]
    assert a.agreement.loc["sgd"].tolist() == ["paper only", "both", "paper only"]
    assert (a.agree(), a.compared()) == (2, 6)
    assert (a.diverged == 0).all().all() and a.diverged.shape == (2, 3)
    assert disagreements(a.agreement) == (
        "significant in the paper only: SGD x ReLU, SGD x PReLU; here only: Adam x ReLU, "
        "Adam x Swish")

    swish, prelu, flow = a.verdicts
    assert [v.test for v in a.verdicts] == list(chapter.TESTS)
    assert {v.claim for v in a.verdicts} == {5} and a.headline(5) is swish
    assert (swish.status, swish.n, swish.unit) == ("reproduced", 12, "width x seed pairs")
    assert swish.effect == pytest.approx(10.0) and swish.interval == pytest.approx((10, 10))
    assert swish.p == pytest.approx(0.5 ** 12) and swish.min_p == pytest.approx(0.5 ** 12)
    assert "with SGD, sparse Swish nets beat their dense partners by a median +10.0" in \
        swish.sentence
    assert "p = 0.027" in swish.paper and "p = 0.0050" in prelu.paper
    assert prelu.status == "not reproduced" and prelu.effect == pytest.approx(-10.0)
    assert prelu.interval == pytest.approx((-10.0, -10.0)) and prelu.p == 1.0
    assert "trail their dense partners" in prelu.sentence

    # negative flow against the margin across the 6 cells, by hand: the two Swish cells (share
    # 0.2) against the four others (0): 6 concordant pairs, none discordant; ties: 7 pairs in
    # the share, 3 in the margin (Adam's three 0.05) -> tau-b = 6 / sqrt((15 - 7)(15 - 3))
    nc = a.negflow_cells.set_index(["optimizer", "activation"])
    assert nc.loc[list(DELTAS), "neg_grad_share"].tolist() == pytest.approx(HAND_SHARE)
    assert nc.loc[list(DELTAS), "margin"].tolist() == pytest.approx(HAND_MARGIN)
    assert flow.n == 6 and flow.unit == "optimizer x activation cells"
    assert flow.effect == pytest.approx(6 / np.sqrt(8 * 12))
    assert flow.p == pytest.approx(ss.kendalltau(HAND_SHARE, HAND_MARGIN,
                                                 alternative="greater").pvalue)
    assert flow.min_p == pytest.approx(1 / 720) and flow.needs == 4
    # Benjamini-Hochberg over the claim's three tests: 2^-12 x 3, p_flow x 3 / 2, 1.0
    assert [v.q for v in a.verdicts] == pytest.approx([0.5 ** 12 * 3, 1.0, flow.p * 3 / 2])
    assert flow.q > 0.05 and flow.status == "not distinguishable"
    assert flow.sentence.startswith("the most gradient flows through negative slopes with "
                                    "Swish (20.0 % of |dC/dz| in sparse nets)")
    assert flow.sentence.endswith("more negative flow goes with a larger sparse-over-dense "
                                  "margin")

    negflow_table = a.negflow
    assert negflow_table.loc["swish", ("neg_grad_share", "sparse")] == pytest.approx(0.2)
    assert negflow_table.loc["swish", ("neg_share", "dense")] == pytest.approx(0.05)
    assert negflow_table.loc["relu"].eq(0).all() and negflow_table.loc["prelu"].eq(0).all()
    assert chapter.never_negative_check(negflow_table)
    assert a.negflow_layers.loc["swish", ("dense", "hidden.1")] == pytest.approx(0.1)
    # median over the 24 runs of each activation and kind of mean_egf_l2 = accuracy x 4
    k = MEASURES.index("egf_l2") + 1
    base = [base_acc(d, s) for d in WIDTHS for s in SEEDS]
    assert a.egf.loc["swish", "sparse"] == pytest.approx(
        k * np.median([b + 0.05 for b in base] + [b + 0.1 for b in base]))
    assert a.egf.loc["swish", "dense"] == pytest.approx(k * np.median(base + base))
    assert a.egf.loc["swish", "sparse"] > a.egf.loc["swish", "dense"]
    tau = a.tau
    assert set(tau["activation"]) == {"relu", "swish", "prelu"} and (tau["n"] == 24).all()
    assert (tau["tau"] > 0.99).all()  # every measure is a multiple of accuracy here


def test_tables_for_a_person(fake_analysis):
    a = fake_analysis
    view = chapter.negflow_view(a.negflow)
    assert list(view.columns.get_level_values(0).unique()) == list(
        chapter.NEGFLOW_NAMES.values())
    assert view.loc["swish", ("% of |dC/dz| through them", "sparse")] == 20.0
    assert view.loc["swish", ("% of pre-activations with f' < 0", "dense")] == 5.0
    tau = a.tau
    table = chapter.tau_table(tau, ["relu", "swish", "prelu"])
    assert list(table.index) == ["relu", "swish", "prelu"]
    assert list(table.columns) == [("sparse", "tau (95 % CI)"), ("sparse", "n"),
                                   ("dense", "tau (95 % CI)"), ("dense", "n")]
    row = tau[(tau["activation"] == "swish") & (tau["kind"] == "dense")].iloc[0]
    assert table.loc["swish", ("dense", "tau (95 % CI)")] == (
        f"{row['tau']:+.2f} ({row['ci_low']:+.2f} to {row['ci_high']:+.2f})")
    assert (table[("sparse", "n")] == 24).all()
    pq = pq_table(a.cells)
    # p = 1/2**12 = 0.000244, q = 1.5 p: two significant digits, never a p that reads 0.000
    assert pq.loc["adam", "swish"] == "0.00024 (0.00037)"
    assert pq.loc["sgd", "relu"] == "1.0 (1.0)"


def test_verdicts_without_data():
    empty = fake_results()
    empty.runs = empty.runs[empty.runs["activation"] != "swish"]
    a = chapter.analyse(empty, presets.get("smoke"))
    assert [v.status for v in a.verdicts] == ["not run", "not reproduced", "not run"]
    assert a.verdicts[0].n == 0 and "were not run at this scale" in a.verdicts[0].sentence
    assert a.verdicts[2].sentence == "too few cells with negative flow at this scale"
    assert a.cells.n["swish"].isna().all() and a.cells.cells() == 4


def test_flow_tables_leave_out_runs_at_chance():
    """A run at chance keeps its accuracy (the cell tests) but not its flow (the EGF and
    negative-flow tables, the negative-flow cells), as every page counts them."""
    r = fake_results()
    chance = (r.runs["activation"] == "swish") & (r.runs["kind"] == "sparse")
    r.runs.loc[chance, "test_acc"] = 0.1  # 36 of 360 digits images: at chance
    r.runs.loc[chance, "mean_egf_l2"] = 1e6
    a = chapter.analyse(r, presets.get("smoke"))
    assert (a.counts.at_chance, a.counts.diverged) == (24, 0)
    assert np.isnan(a.egf.loc["swish", "sparse"]) and a.egf.loc["swish", "dense"] > 0
    assert a.negflow.loc["swish", ("neg_grad_share", "sparse")] != \
        a.negflow.loc["swish", ("neg_grad_share", "sparse")]  # NaN: no usable run
    assert a.negflow.loc["swish", ("neg_grad_share", "dense")] == pytest.approx(0.1)
    assert "swish" not in set(a.negflow_cells["activation"]) and len(a.negflow_cells) == 4
    # the accuracy tests keep them: sparse Swish nets now trail their dense partners
    assert a.cells.n.loc["sgd", "swish"] == 12 and a.cells.median.loc["sgd", "swish"] < 0
    assert a.verdicts[0].status == "not reproduced"


def _cells(shares, margins):
    return pd.DataFrame({"optimizer": "sgd", "activation": [f"a{i}" for i in range(len(shares))],
                         "neg_grad_share": shares, "margin": margins})


def test_status_rules():
    smoke = presets.get("smoke")
    # the paper's cell holds (Swish with SGD, 12 pairs all ahead) -> reproduced; PReLU's pairs
    # all trail -> not reproduced (from the fake above)
    a = chapter.analyse(fake_results(), smoke)
    assert [v.status for v in a.verdicts[:2]] == ["reproduced", "not reproduced"]
    # too few pairs: one width x 4 seeds, all ahead, smallest p 1/16 -> not testable here
    a = chapter.analyse(fake_results(widths=(10,)), smoke)
    swish, prelu, _ = a.verdicts
    assert (swish.n, swish.min_p, swish.needs) == (4, 1 / 16, 5)
    assert swish.effect == pytest.approx(10.0) and swish.p == pytest.approx(1 / 16)
    assert [swish.status, prelu.status] == ["not testable here"] * 2
    assert "it would need 5 width x seed pairs" in swish.reason
    # every run diverged -> not run, all three
    r = fake_results()
    r.runs["diverged"] = True
    a = chapter.analyse(r, smoke)
    assert [v.status for v in a.verdicts] == ["not run"] * 3
    assert {v.sentence for v in a.verdicts} == {"not run: every run diverged"}

    # negative flow across cells: 8 cells ordered alike -> tau 1, exact p = 1 / 8!
    up = chapter.negative_flow_verdict(_cells(np.arange(8) / 10, np.arange(8) / 100), "x")
    assert up.n == 8 and (up.effect, *up.interval) == pytest.approx((1, 1, 1))
    assert up.p == pytest.approx(1 / math.factorial(8)) and up.status == "reproduced"
    assert up.sentence.startswith("the most gradient flows through negative slopes with a7 "
                                  "(70.0 % of |dC/dz| in sparse nets), then a6 (60.0 %)")
    # ordered the other way -> not reproduced
    down = chapter.negative_flow_verdict(_cells(np.arange(8) / 10, -np.arange(8) / 100), "x")
    assert down.effect == pytest.approx(-1) and down.status == "not reproduced"
    assert "does not go with a larger" in down.sentence
    # 3 cells: the smallest p is 1/3! = 1/6 -> not testable here, it would need 4 (1/24)
    few = chapter.negative_flow_verdict(_cells([0.0, 0.1, 0.2], [0.0, 0.1, 0.2]), "x")
    assert (few.n, few.min_p, few.needs, few.status) == (3, 1 / 6, 4, "not testable here")
    # 2 cells, or no cell with negative flow -> not run
    assert chapter.negative_flow_verdict(_cells([0.0, 0.1], [0.0, 0.1]), "x").status == \
        "not run"
    flat = chapter.negative_flow_verdict(_cells([0.0] * 5, np.arange(5) / 100), "x")
    assert (flat.status, flat.n) == ("not run", 0)


def test_report_shows_a_stored_summary(monkeypatch, fake_analysis):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: shown.extend(objs))
    monkeypatch.setattr(plt, "show", lambda: plt.close("all"))
    chapter.report(fake_analysis, "fake")
    assert any(isinstance(o, pd.DataFrame) for o in shown)
