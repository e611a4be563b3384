"""Gradient-flow measures pinned on a network small enough to differentiate by hand, and the
promise that measuring changes nothing."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gflib import data as gdata
from gflib import flow, optimizers, train
from gflib.masks import apply_masks, random_masks
from gflib.models import MLP, maskable_weights

# The hand network: 2 inputs -> 2 hidden units -> 2 classes, one example x = (1, 2), y = 0.
#   W1 = [[.5, (.7 masked)], [1, .5]], b1 = [.1, -.5]
#   W2 = [[1, -1], [.5, (0 masked)]], b2 = [0, .2]
#   z1 = W1 x + b1 = [.5 + .1, 1 + 1 - .5] = [.6, 1.5] (both > 0), h = z1
#   z2 = W2 h + b2 = [.6 - 1.5, .3 + .2] = [-.9, .5]
#   softmax: p1 = 1 / (1 + e^(-1.4)) =: q, p0 = 1 - q
#   dC/dz2 = p - onehot(0) = q * [-1, 1]
#   dC/dW2 = dz2 h^T = q * [[-.6, -1.5], [.6, 1.5]];   dC/db2 = q * [-1, 1]
#   dC/dh  = W2^T dz2 = q * [-1 + .5, 1 + 0] = q * [-.5, 1] = dC/dz1 (ReLU open)
#   dC/dW1 = dz1 x^T = q * [[-.5, -1], [1, 2]];         dC/db1 = q * [-.5, 1]
# Masks m1 = [[1, 0], [1, 1]], m2 = [[1, 1], [1, 0]]: the masked entries' gradients are
# -q (W1) and 1.5 q (W2), non-zero.
#   gf_l1  = q (.5+1+1+2 + .6+1.5+.6+1.5) = 8.7 q
#   gf_l2  = q sqrt(.25+1+1+4 + .36+2.25+.36+2.25) = q sqrt(11.47)
#   EGF: |g1*m1|_1 = 3.5 q, |g2*m2|_1 = 2.7 q; |g1*m1|_2 = q sqrt(5.25), |g2*m2|_2 = q sqrt(2.97)
#   egf_l1 = (3.5 + 2.7) / 2 q = 3.1 q;  egf_l2 = q (sqrt(5.25) + sqrt(2.97)) / 2
Q = 1 / (1 + math.exp(-1.4))  # 0.80218388855858...


def hand_model(activation="relu", b1=(0.1, -0.5)):
    model = MLP(2, 2, depth=1, width=2, activation=activation).double()
    with torch.no_grad():
        model.hidden[0].layer.weight.copy_(torch.tensor([[0.5, 0.7], [1.0, 0.5]]))
        model.hidden[0].layer.bias.copy_(torch.tensor(b1))
        model.out.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 0.0]]))
        model.out.bias.copy_(torch.tensor([0.0, 0.2]))
    masks = {"hidden.0.layer.weight": torch.tensor([[True, False], [True, True]]),
             "out.weight": torch.tensor([[True, True], [True, False]])}
    apply_masks(model, masks)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([0])
    return model, masks, x, y


def test_hand_gradients_include_masked_positions():
    model, masks, x, y = hand_model()
    assert model.hidden[0].layer.weight[0, 1] == 0  # the masked weight is zero
    g = flow.gradients(model, x, y)
    assert list(g) == ["hidden.0.layer.weight", "out.weight"]
    torch.testing.assert_close(g["hidden.0.layer.weight"],
                               Q * torch.tensor([[-0.5, -1.0], [1.0, 2.0]], dtype=torch.float64))
    torch.testing.assert_close(g["out.weight"],
                               Q * torch.tensor([[-0.6, -1.5], [0.6, 1.5]], dtype=torch.float64))
    assert g["hidden.0.layer.weight"][0, 1] == pytest.approx(-Q)  # masked, yet non-zero


def test_hand_measures():
    model, masks, x, y = hand_model()
    m = flow.measure(model, x, y)  # masks taken from apply_masks
    assert m == flow.measure(model, x, y, masks=masks)
    assert set(m) == set(flow.MEASURES)
    assert m["gfall_l1"] > m["gf_l1"] and m["gfall_l2"] > m["gf_l2"]  # biases count there
    assert m["gf_l1"] == pytest.approx(8.7 * Q, abs=1e-6)
    assert m["gf_l2"] == pytest.approx(math.sqrt(11.47) * Q, abs=1e-6)
    assert m["egf_l1"] == pytest.approx(3.1 * Q, abs=1e-6)
    assert m["egf_l2"] == pytest.approx((math.sqrt(5.25) + math.sqrt(2.97)) / 2 * Q, abs=1e-6)
    # literal values: q = .8021838885585818
    assert m["gf_l1"] == pytest.approx(6.978999830, abs=1e-6)
    assert m["egf_l1"] == pytest.approx(2.486770055, abs=1e-6)


def test_hand_measures_per_weight():
    # 3 active weights in each tensor: divide each layer's norm by 3 before averaging
    model, masks, x, y = hand_model()
    m = flow.measure(model, x, y, per_weight=True)
    assert m["egf_l1"] == pytest.approx((3.5 / 3 + 2.7 / 3) / 2 * Q, abs=1e-6)
    assert m["egf_l2"] == pytest.approx((math.sqrt(5.25) + math.sqrt(2.97)) / 3 / 2 * Q, abs=1e-6)
    assert m["gf_l1"] == pytest.approx(8.7 * Q, abs=1e-6)  # the baseline is not normalised


def test_hand_measures_scope_all_with_biases():
    # biases: dC/db1 = q [-.5, 1] (l1 1.5 q), dC/db2 = q [-1, 1] (l1 2 q); L = 4 tensors
    model, masks, x, y = hand_model()
    g = flow.gradients(model, x, y, scope="all")
    assert list(g) == ["hidden.0.layer.weight", "hidden.0.layer.bias", "out.weight", "out.bias"]
    m = flow.measure(model, x, y, scope="all")
    assert m["gf_l1"] == pytest.approx((8.7 + 1.5 + 2) * Q, abs=1e-6)
    weights_only = flow.measure(model, x, y)  # gfall covers every gradient whatever the scope
    assert weights_only["gf_l1"] == pytest.approx(8.7 * Q, abs=1e-6)
    for m_ in (m, weights_only):
        assert m_["gfall_l1"] == pytest.approx((8.7 + 1.5 + 2) * Q, abs=1e-6)
        assert m_["gfall_l2"] == pytest.approx(math.sqrt(11.47 + 1.25 + 2) * Q, abs=1e-6)
    assert m["gf_l2"] == pytest.approx(math.sqrt(11.47 + 1.25 + 2) * Q, abs=1e-6)
    assert m["egf_l1"] == pytest.approx((3.5 + 1.5 + 2.7 + 2) / 4 * Q, abs=1e-6)
    assert m["egf_l2"] == pytest.approx(
        (math.sqrt(5.25) + math.sqrt(1.25) + math.sqrt(2.97) + math.sqrt(2)) / 4 * Q, abs=1e-6)


def test_hand_measures_scope_all_with_prelu():
    # PReLU (a = .25) and b1 = (.1, -3): z1 = [.6, -1], h = [.6, -.25]
    #   z2 = [.6 + .25, .3 + .2] = [.85, .5];  q' = p1 = 1 / (1 + e^(.35)); dz2 = q' [-1, 1]
    #   dC/dh = q' [-.5, 1]; dC/da = sum_j dC/dh_j z1_j [z1_j < 0] = q' * 1 * (-1) = -q'
    #   dC/dz1 = q' [-.5, .25 * 1]; dC/dW1 = q' [[-.5, -1], [.25, .5]]
    #   dC/dW2 = q' [[-.6, .25], [.6, -.25]]
    qp = 1 / (1 + math.exp(0.35))
    model, masks, x, y = hand_model("prelu", b1=(0.1, -3.0))
    g = flow.gradients(model, x, y, scope="all")
    assert "hidden.0.act.weight" in g
    assert g["hidden.0.act.weight"].item() == pytest.approx(-qp, abs=1e-9)
    torch.testing.assert_close(g["hidden.0.layer.weight"],
                               qp * torch.tensor([[-0.5, -1.0], [0.25, 0.5]], dtype=torch.float64))
    torch.testing.assert_close(g["out.weight"],
                               qp * torch.tensor([[-0.6, 0.25], [0.6, -0.25]], dtype=torch.float64))
    m_all = flow.measure(model, x, y, scope="all")
    m_w = flow.measure(model, x, y)
    # biases: db1 = q' [-.5, .25] (l1 .75), db2 = q' [-1, 1] (l1 2); PReLU a: l1 1
    assert m_w["gf_l1"] == pytest.approx((2.25 + 1.7) * qp, abs=1e-6)
    assert m_all["gf_l1"] == pytest.approx((2.25 + 1.7 + 0.75 + 2 + 1) * qp, abs=1e-6)
    # EGF over 5 tensors: W1*m1 l1 = (.5 + .25 + .5) q', W2*m2 l1 = (.6 + .25 + .6) q'
    assert m_all["egf_l1"] == pytest.approx((1.25 + 0.75 + 1 + 1.45 + 2) / 5 * qp, abs=1e-6)


def test_batch_of_two_averages_the_loss():
    # the second example x' = (0, 0) leaves W1's gradient untouched (x' = 0) and h' = relu(b1)
    # = (.1, 0): the batch gradient of W1 is half the single-example one
    model, masks, x, y = hand_model()
    x2 = torch.cat([x, torch.zeros(1, 2, dtype=torch.float64)])
    y2 = torch.tensor([0, 1])
    g = flow.gradients(model, x2, y2)
    torch.testing.assert_close(g["hidden.0.layer.weight"],
                               Q / 2 * torch.tensor([[-0.5, -1.0], [1.0, 2.0]]).double())
    # example 2: z2' = [.1, .05 + .2] = [.1, .25], p' = softmax, dz2' = p' - onehot(1)
    e = np.exp([0.1, 0.25])
    p = e / e.sum()
    dz2 = p - np.array([0.0, 1.0])
    dw2 = Q * np.array([[-0.6, -1.5], [0.6, 1.5]]) + np.outer(dz2, [0.1, 0.0])
    np.testing.assert_allclose(g["out.weight"].numpy(), dw2 / 2, atol=1e-12)


def test_dense_egf_is_gf_over_L():
    torch.manual_seed(0)
    model = MLP(6, 4, depth=3, width=9, activation="swish")
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    m = flow.measure(model, x, y)
    L = len(maskable_weights(model))
    assert L == 4
    assert m["egf_l1"] == pytest.approx(m["gf_l1"] / L, rel=1e-12)
    g = flow.gradients(model, x, y)
    flat = torch.cat([v.flatten().double() for v in g.values()])
    assert m["gf_l2"] == pytest.approx(flat.norm().item(), rel=1e-12)
    assert m["egf_l2"] == pytest.approx(np.mean([v.double().norm().item() for v in g.values()]),
                                        rel=1e-12)


def test_masked_gradients_enter_gf_not_egf():
    torch.manual_seed(1)
    model = MLP(6, 4, depth=2, width=12)
    masks = random_masks(model, 0.3, seed=2)
    apply_masks(model, masks)
    x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
    g = flow.gradients(model, x, y)
    masked = torch.cat([g[n][~masks[n]].double() for n in g])
    active = torch.cat([g[n][masks[n]].double() for n in g])
    assert masked.abs().sum() > 0
    m = flow.measure(model, x, y)
    assert m["gf_l1"] == pytest.approx((masked.abs().sum() + active.abs().sum()).item(), rel=1e-9)
    egf = np.mean([g[n][masks[n]].double().abs().sum().item() for n in g])
    assert m["egf_l1"] == pytest.approx(egf, rel=1e-9)
    per = flow.measure(model, x, y, per_weight=True)
    expect = np.mean([g[n][masks[n]].double().abs().sum().item() / int(masks[n].sum()) for n in g])
    assert per["egf_l1"] == pytest.approx(expect, rel=1e-9)
    # the default measure uses the applied masks; masks={} measures the same model as dense
    assert flow.measure(model, x, y, masks={})["egf_l1"] == pytest.approx(m["gf_l1"] / 3, rel=1e-9)


def test_unknown_scope():
    model, masks, x, y = hand_model()
    with pytest.raises(ValueError, match="'biases'.*weights, all"):
        flow.measure(model, x, y, scope="biases")


def test_dropout_drops_nothing_while_measuring():
    """CHOICE: the measure is of the whole network, the same at every call, and draws nothing."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(8, 3))
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    plain = copy.deepcopy(net)
    plain[2] = torch.nn.Identity()
    assert flow.measure(net, x, y) == flow.measure(plain, x, y)


def bn_model():
    torch.manual_seed(3)
    model = MLP(5, 3, depth=2, width=8, batchnorm=True, activation="prelu")
    masks = random_masks(model, 0.5, seed=4)
    apply_masks(model, masks)
    with torch.no_grad():  # running statistics far from the batch's, so eval != train mode
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.fill_(3.0)
                mod.running_var.fill_(9.0)
                mod.num_batches_tracked.fill_(7)
    return model, masks


def test_measuring_changes_nothing():
    model, masks = bn_model()
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    model.eval()
    model.hidden[1].train()  # a mixed mode must come back as it was
    modes = {n: m.training for n, m in model.named_modules()}
    state = copy.deepcopy(model.state_dict())
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    flow.measure(model, x, y)
    flow.measure(model, x, y, scope="all", per_weight=True)
    assert torch.equal(torch.get_rng_state(), rng)
    assert {n: m.training for n, m in model.named_modules()} == modes
    for n, v in model.state_dict().items():
        assert torch.equal(v, state[n]), n  # running stats and num_batches_tracked included
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n]), n
    fresh, _ = bn_model()
    flow.measure(fresh, x, y)
    assert all(p.grad is None for p in fresh.parameters())


def test_batchnorm_measured_with_batch_statistics():
    model, masks = bn_model()
    model.eval()
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    g = flow.gradients(model, x, y)

    # reference: plain autograd in train mode on a copy, mask hooks removed (flow measures the
    # raw gradient, masked entries included)
    ref = copy.deepcopy(model)
    for h in ref._gflib_mask_hooks:
        h.remove()
    ref.train()
    F.cross_entropy(ref(x), y).backward()
    for n, w in maskable_weights(ref).items():
        torch.testing.assert_close(g[n], w.grad, rtol=1e-5, atol=1e-7)
    ref_eval = copy.deepcopy(model)
    for h in ref_eval._gflib_mask_hooks:
        h.remove()
    ref_eval.eval()
    F.cross_entropy(ref_eval(x), y).backward()
    first = "hidden.0.layer.weight"
    assert not torch.allclose(g[first], maskable_weights(ref_eval)[first].grad, atol=1e-4)


def test_schedule():
    assert flow.schedule(500) == list(range(0, 501, 50))
    assert flow.schedule(10) == list(range(11))
    assert flow.schedule(5) == [0, 1, 2, 3, 4, 5]  # 0, .5, 1, ..., 5 rounded, deduplicated
    assert flow.schedule(1) == [0, 1]
    assert flow.schedule(1000) == list(range(0, 1001, 100))
    assert flow.schedule(20, points=3) == [0, 10, 20]


def _loop(model, masks, opt, x, y, measure_between, steps=4):
    torch.manual_seed(11)  # batch order from the global RNG: a draw inside measure would show
    for _ in range(steps):
        idx = torch.randperm(len(y))[:32]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        if measure_between:
            model.eval()  # as after an evaluation pass
            flow.measure(model, x[:64], y[:64], masks=masks)
            flow.measure(model, x[:64], y[:64], masks=masks, scope="all")
            model.train()
    return model.state_dict()


def test_training_identical_with_and_without_measurement():
    torch.manual_seed(0)
    x = torch.randn(128, 1, 4, 4)
    y = torch.randint(0, 3, (128,))
    ds = gdata.Dataset("digits", x, y, x, y, 3, (0.0,), (1.0,))
    cfg = train.RunConfig(depth=2, width=24, match_width=10, batchnorm=True,
                          activation="prelu", optimizer="adam", seed=5)
    states = []
    for measure_between in (False, True):
        model, masks = train.build_model(cfg, ds)
        opt = optimizers.make(cfg.optimizer, model.parameters(), 0.05)
        model.train()
        states.append(_loop(model, masks, opt, x.flatten(1), y, measure_between))
    assert states[0].keys() == states[1].keys()
    for n in states[0]:
        assert torch.equal(states[0][n], states[1][n]), n
    assert int(states[0]["hidden.0.norm.num_batches_tracked"]) == 4


def test_train_run_same_with_and_without_flow():
    cfg = train.RunConfig(dataset="digits", depth=1, width=16, match_width=8, batchnorm=True,
                          epochs=2, train_subset=150, test_subset=60, seed=1)
    with_flow = train.run(cfg, measure_flow=True)
    without = train.run(cfg, measure_flow=False)
    assert sorted(with_flow.flow) == flow.schedule(2) and without.flow == {}
    assert with_flow.history == without.history
    assert with_flow.final == without.final
    assert all(np.isfinite(v) for v in with_flow.flow_mean.values())


def test_a_schedule_of_more_points_than_epochs_is_every_epoch_and_cheap(one_torch_thread):
    """Before: ``flow_points=10**12`` asked numpy for a linspace of 10**12 floats (8 TB) when the
    run started: MemoryError. From ``points > epochs`` every epoch is a point, as before."""
    for epochs in range(1, 40):
        for points in range(1, 3 * epochs + 3):
            want = sorted({int(round(e)) for e in np.linspace(0, epochs, points)})
            assert flow.schedule(epochs, points) == want
    assert flow.schedule(10, 10**12) == list(range(11))
    r = train.run(train.RunConfig(width=4, epochs=2, flow_points=10**12, train_subset=64,
                                  test_subset=32))
    assert sorted(r.flow) == [0, 1, 2]
