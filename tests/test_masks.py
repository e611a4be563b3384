"""gflib.masks: exact counts, magnitude pruning on hand-set weights, masks that hold under all the
registered optimizers (weights, gradients and optimizer state exactly zero at masked positions),
dead units on hand-made masks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gflib import masks as gm
from gflib.models import MLP, maskable_weights
from gflib.optimizers import OPTIMIZERS, make as make_optimizer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mlp(seed=0, **kw):
    torch.manual_seed(seed)
    return MLP(64, 10, depth=2, width=16, **kw)  # weights 16x64, 16x16, 10x16


NAMES = ["hidden.0.layer.weight", "hidden.1.layer.weight", "out.weight"]


@pytest.mark.parametrize("density,want", [
    (0.3, [307, 77, 48]),  # round(307.2), round(76.8), round(48.0)
    (1.0, [1024, 256, 160]),
    ({"hidden.0.layer.weight": 0.5, "out.weight": 0.1}, [512, 256, 16]),  # missing = dense
])
def test_random_masks_exact_counts(density, want):
    m = gm.random_masks(_mlp(), density, seed=0)
    assert list(m) == NAMES
    assert [int(v.sum()) for v in m.values()] == want
    assert all(v.dtype == torch.bool and v.shape == w.shape
               for v, w in zip(m.values(), maskable_weights(_mlp()).values()))


def test_density_that_leaves_a_tensor_empty_is_refused():
    """0.001 of 256 weights rounds to 0: refused with the tensor and the smallest density, not
    silently raised to one weight."""
    with pytest.raises(ValueError, match=r"density 0\.001 leaves hidden\.1\.layer\.weight"):
        gm.random_masks(_mlp(), 0.001, seed=0)
    assert [int(v.sum()) for v in gm.random_masks(_mlp(), 0.004, seed=0).values()] == [4, 1, 1]


def test_random_masks_reproducible_by_seed():
    a, b = gm.random_masks(_mlp(), 0.5, seed=7), gm.random_masks(_mlp(1), 0.5, seed=7)
    c = gm.random_masks(_mlp(), 0.5, seed=8)
    assert all(torch.equal(a[n], b[n]) for n in NAMES)  # depends on the seed, not the weights
    assert not any(torch.equal(a[n], c[n]) for n in NAMES)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, True, "0.5"])
def test_density_outside_unit_interval_names_value(bad):
    with pytest.raises(ValueError, match=repr(bad).replace(".", r"\.")):
        gm.random_masks(_mlp(), bad, seed=0)
    with pytest.raises(ValueError, match=repr(bad).replace(".", r"\.")):
        gm.random_masks(_mlp(), {"out.weight": bad}, seed=0)


def test_density_for_unknown_tensor():
    with pytest.raises(ValueError, match="nope.weight"):
        gm.random_masks(_mlp(), {"nope.weight": 0.5}, seed=0)


def _tiny():
    net = MLP(3, 2, depth=1, width=2)
    with torch.no_grad():
        net.hidden[0].layer.weight.copy_(torch.tensor([[0.1, -0.9, 0.3], [0.5, -0.2, 0.05]]))
        net.out.weight.copy_(torch.tensor([[-0.4, 0.7], [0.01, -0.6]]))
    return net


def test_magnitude_masks_layerwise():
    m = gm.magnitude_masks(_tiny(), 0.5, scope="layer")  # keep 3 of 6 and 2 of 4
    assert m["hidden.0.layer.weight"].tolist() == [[False, True, True], [True, False, False]]
    assert m["out.weight"].tolist() == [[False, True], [False, True]]
    per = gm.magnitude_masks(_tiny(), {"out.weight": 0.25})
    assert per["hidden.0.layer.weight"].all()
    assert per["out.weight"].tolist() == [[False, True], [False, False]]


def test_magnitude_masks_global():
    # |w| over both tensors: .1 .9 .3 .5 .2 .05 | .4 .7 .01 .6 -> keep the 5 largest
    m = gm.magnitude_masks(_tiny(), 0.5, scope="global")
    assert m["hidden.0.layer.weight"].tolist() == [[False, True, False], [True, False, False]]
    assert m["out.weight"].tolist() == [[True, True], [False, True]]
    with pytest.raises(ValueError, match="'tensor'"):
        gm.magnitude_masks(_tiny(), 0.5, scope="tensor")


# ---------------------------------------------------------------------- masks under optimizers

def _train_masked(opt_name, steps=6, hooks=True):
    torch.manual_seed(0)
    net = MLP(8, 3, depth=2, width=6, activation="elu")  # smooth: no exact-zero gradients
    masks = gm.random_masks(net, 0.4, seed=1)
    if hooks:
        gm.apply_masks(net, masks)
    else:  # the control: zeroed once, not kept zero
        with torch.no_grad():
            for n, w in maskable_weights(net).items():
                w.masked_fill_(~masks[n], 0.0)
    opt = make_optimizer(opt_name, net.parameters(), lr=0.05,
                         weight_decay=0.1 if opt_name == "adamw" else 0.0)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y) + 1e-2 * sum(w.pow(2).sum() for w in net.parameters())
        loss.backward()
        opt.step()
    return net, masks, opt


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_masked_weights_grads_and_state_stay_exactly_zero(opt_name):
    check_masks_hold(opt_name)


def check_masks_hold(opt_name):
    """Six masked steps of ``opt_name`` (a key of the registry): masked weights, their gradients
    and the optimizer's per-weight state stay exactly zero; every active weight trains and has
    state; the spec's second moment is among the state. (tests/test_extending.py calls it for
    an optimizer registered at run time.)"""
    untrained = maskable_weights(_train_masked(opt_name, steps=0)[0])
    start = {n: w.detach().clone() for n, w in untrained.items()}
    net, masks, opt = _train_masked(opt_name)
    weights = maskable_weights(net)
    for n, w in weights.items():
        off = ~masks[n]
        assert off.any() and masks[n].any()
        assert (w[off] == 0).all(), n
        assert (w.grad[off] == 0).all(), n
        assert (w.grad[masks[n]] != 0).all(), n
        assert (w[masks[n]] != start[n][masks[n]]).all(), n  # active weights did train
        state = {k: v for k, v in opt.state[w].items()
                 if torch.is_tensor(v) and v.shape == w.shape}
        second = OPTIMIZERS[opt_name].second_moment
        assert second is None or second in state, (opt_name, sorted(state))
        for k, v in state.items():
            assert (v[off] == 0).all(), (n, k)
            assert (v[masks[n]] != 0).all(), (n, k)


@pytest.mark.parametrize("opt_name", ["momentum", "adam", "adamw"])
def test_control_without_apply_masks_regrows(opt_name):
    """The check above can fail: zeroing once is not enough for these optimizers."""
    check_regrows_without_masks(opt_name)


def check_regrows_without_masks(opt_name):
    """The control of :func:`check_masks_hold`: masked weights zeroed once, without
    :func:`gflib.masks.apply_masks`, grow back under ``opt_name``."""
    net, masks, _ = _train_masked(opt_name, hooks=False)
    w = maskable_weights(net)["hidden.1.layer.weight"]
    assert (w[~masks["hidden.1.layer.weight"]] != 0).any()


def test_apply_masks_again_replaces_the_earlier_masks():
    net = _mlp()
    first = gm.random_masks(net, 0.2, seed=0)
    gm.apply_masks(net, first)
    dense_out = {n: torch.ones_like(m) for n, m in first.items()}
    gm.apply_masks(net, {"out.weight": dense_out["out.weight"]})
    assert list(gm.applied_masks(net)) == ["out.weight"]
    net(torch.randn(4, 64)).pow(2).sum().backward()
    g = net.out.weight.grad
    assert (g[~first["out.weight"]] != 0).any()  # the first mask's hook is gone
    assert (net.hidden[1].layer.weight.grad[~first["hidden.1.layer.weight"]] != 0).any()


def test_apply_masks_rejects_wrong_names_and_shapes():
    net = _mlp()
    with pytest.raises(ValueError, match="bogus"):
        gm.apply_masks(net, {"bogus": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"out\.weight.*\(3, 3\)"):
        gm.apply_masks(net, {"out.weight": torch.ones(3, 3, dtype=torch.bool)})


# ------------------------------------------------------------------------ density, dead units


def test_dead_units_of_hand_made_chain():
    # layer 1: 3 units x 2 inputs; unit 1 has no input
    m1 = torch.tensor([[True, False], [False, False], [True, True]])
    # layer 2: 2 units x 3 inputs; nothing reads unit 2 (unit 1 is read but has no input)
    m2 = torch.tensor([[True, True, False], [False, True, False]])
    # layer 3: 4 outputs x 2 inputs; nothing reads unit 0 of layer 2
    m3 = torch.tensor([[False, True]] * 4)
    assert gm.dead_units({"l1": m1, "l2": m2, "l3": m3}) == {"l1": 2, "l2": 1}
    full = {"l1": torch.ones(3, 2, dtype=torch.bool), "l2": torch.ones(2, 3, dtype=torch.bool)}
    assert gm.dead_units(full) == {"l1": 0}
    with pytest.raises(ValueError, match="l1 -> l2"):
        gm.dead_units({"l1": m1, "l2": torch.ones(2, 4, dtype=torch.bool)})


def test_float_masks_must_be_zero_or_one():
    """A float mask of 0.3 is refused, not read as "active"; 0/1 floats are accepted."""
    net = _mlp()
    bad = {"out.weight": torch.full((10, 16), 0.3)}
    with pytest.raises(ValueError, match="out.weight must be bool or 0/1, found 0.3"):
        gm.apply_masks(net, bad)
    ok = torch.zeros(10, 16)
    ok[0, 0] = 1.0
    gm.apply_masks(net, {"out.weight": ok})
    assert int((net.out.weight != 0).sum()) == 1
