"""gflib.models: MLP layout, each activation on hand-picked points, BatchNorm without bias, skip
connections, the CNN on 8x8 and 32x32 inputs, Wide ResNet-50."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gflib import models
from gflib.activations import SReLU
from gflib.activations import ACTIVATIONS
from gflib.models import CNN, MLP, maskable_weights


def _linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_mlp_layout_and_output_shape(depth):
    net = MLP(64, 10, depth=depth, width=16)
    lin = _linears(net)
    assert len(lin) == depth + 1
    want = [(16, 64)] + [(16, 16)] * (depth - 1) + [(10, 16)]
    assert [tuple(m.weight.shape) for m in lin] == want
    assert all(m.bias is not None for m in lin)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in net.modules())
    assert net(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    assert list(maskable_weights(net)) == (
        [f"hidden.{i}.layer.weight" for i in range(depth)] + ["out.weight"])


def test_batchnorm_layers_follow_bias_free_linears():
    net = MLP(12, 3, depth=3, width=7, batchnorm=True)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == 3 and all(bn.num_features == 7 for bn in bns)
    for block in net.hidden:
        assert isinstance(block.norm, nn.BatchNorm1d) and block.layer.bias is None
    assert net.out.bias is not None  # the output layer has no BatchNorm after it
    assert net(torch.randn(4, 12)).shape == (4, 3)


def test_skip_adds_identity_around_equal_width_layers():
    torch.manual_seed(0)
    x = torch.randn(6, 5)
    for skip in (False, True):
        torch.manual_seed(1)
        net = MLP(5, 2, depth=2, width=3, skip=skip)
        assert net.hidden[0].skip is False  # 5 -> 3: shapes differ, no skip
        assert net.hidden[1].skip is skip
        with torch.no_grad():
            net.hidden[1].layer.weight.zero_()
            net.hidden[1].layer.bias.fill_(-1.0)  # relu(-1) = 0: the block's own output is 0
            h0 = net.hidden[0](x)
            h1 = net.hidden[1](h0)
        assert torch.equal(h1, h0 if skip else torch.zeros_like(h0))
        assert h0.abs().sum() > 0


def _act(name, x, features=1):
    return models.activation(name, features)(x)


def test_activations_at_hand_picked_points():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 3.0])
    assert _act("relu", x).tolist() == [0.0, 0.0, 0.0, 0.5, 3.0]
    assert _act("prelu", x).tolist() == [-0.5, -0.25, 0.0, 0.5, 3.0]  # a = 0.25
    assert torch.allclose(_act("elu", x), torch.tensor(
        [math.exp(-2) - 1, math.exp(-1) - 1, 0.0, 0.5, 3.0]))
    sig = [1 / (1 + math.exp(-v)) for v in x.tolist()]
    assert torch.allclose(_act("sigmoid", x), torch.tensor(sig))
    assert torch.allclose(_act("swish", x), torch.tensor([v * s for v, s in zip(x.tolist(), sig)]))
    assert _act("swish", torch.tensor([-1.0])).item() < 0  # non-monotonic: negative values pass
    # SReLU with its init t_l = 0, a_l = 0.2, t_r = 1, a_r = 1
    assert torch.allclose(_act("srelu", x), torch.tensor([-0.4, -0.2, 0.0, 0.5, 3.0]))


def test_prelu_slope_is_learnable_and_starts_at_quarter():
    act = models.activation("prelu", 8)
    assert [p.item() for p in act.parameters()] == [0.25]


def test_srelu_piecewise_formula_per_unit():
    f = SReLU(2)
    with torch.no_grad():
        f.t_left.copy_(torch.tensor([-1.0, 0.0]))
        f.a_left.copy_(torch.tensor([0.1, 0.5]))
        f.t_right.copy_(torch.tensor([2.0, 1.0]))
        f.a_right.copy_(torch.tensor([0.5, 2.0]))
    x = torch.tensor([[-3.0, -3.0], [-1.0, 0.0], [0.5, 0.5], [2.0, 1.0], [4.0, 4.0]])
    want = torch.tensor([
        [-1 + 0.1 * (-3 + 1), 0 + 0.5 * (-3 - 0)],  # left branch: t_l + a_l (x - t_l)
        [-1.0, 0.0],                                  # at t_l
        [0.5, 0.5],                                   # identity between
        [2.0, 1.0],                                   # at t_r
        [2 + 0.5 * (4 - 2), 1 + 2.0 * (4 - 1)],       # right branch: t_r + a_r (x - t_r)
    ])
    assert torch.allclose(f(x), want)
    # on conv maps [B, C, H, W] the parameters are per channel
    y = f(x.T.reshape(1, 2, 5, 1))
    assert torch.allclose(y[0, :, :, 0], want.T)
    assert sum(p.numel() for p in f.parameters()) == 8


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_each_activation_in_an_mlp_and_a_cnn(name):
    check_activation_in_models(name)


def check_activation_in_models(name):
    """Registered activation ``name`` in an MLP (on ``[B, F]``) and in the CNN (on ``[B, C, H,
    W]``): the spec's module in every block, a fresh one per block, outputs of the right shape.
    (tests/test_extending.py calls it for an activation registered at run time.)"""
    net = MLP(4, 3, depth=2, width=5, activation=name)
    assert net(torch.randn(2, 4)).shape == (2, 3)
    kind = type(ACTIVATIONS[name].build(5))
    assert all(isinstance(b.act, kind) for b in net.hidden)
    assert net.hidden[0].act is not net.hidden[1].act  # a fresh module (own parameters) per layer
    cnn = CNN((1, 8, 8), 10, activation=name, width_multiplier=0.125)
    assert all(isinstance(b.act, kind) for b in cnn.features)
    assert cnn(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_the_studys_activations_are_the_modules_the_paper_names():
    kinds = {"relu": nn.ReLU, "prelu": nn.PReLU, "elu": nn.ELU, "swish": nn.SiLU,
             "srelu": SReLU, "sigmoid": nn.Sigmoid}
    for name, kind in kinds.items():
        assert isinstance(ACTIVATIONS[name].build(5), kind), name


def test_bad_mlp_arguments_name_the_value():
    with pytest.raises(ValueError, match="'tanh'"):
        MLP(4, 3, depth=1, width=5, activation="tanh")
    with pytest.raises(ValueError, match="'tanh'"):
        models.activation("tanh", 3)
    with pytest.raises(ValueError, match=r"width.*got 0"):
        MLP(4, 3, depth=1, width=0)
    with pytest.raises(ValueError, match=r"depth.*got 0"):
        MLP(4, 3, depth=0, width=5)
    with pytest.raises(ValueError, match=r"depth.*got -2"):
        MLP(4, 3, depth=-2, width=5)


def test_cnn_on_digits_size():
    net = CNN((1, 8, 8), 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.bias is not None for c in convs)
    pools = [b.pool for b in net.features]
    assert [isinstance(p, nn.MaxPool2d) for p in pools] == [True, True, True, False, False]
    assert net.out.in_features == 128  # 8 -> 4 -> 2 -> 1
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_cnn_on_cifar_size_with_bn_skip_and_width():
    net = CNN((3, 32, 32), 100, batchnorm=True, skip=True, width_multiplier=0.25)
    convs = [b.conv for b in net.features]
    assert [c.out_channels for c in convs] == [8, 16, 16, 32, 32]
    assert all(c.bias is None for c in convs)
    assert all(isinstance(b.norm, nn.BatchNorm2d) for b in net.features)
    assert [type(b.shortcut) for b in net.features] == [nn.Conv2d, nn.Conv2d, nn.Identity,
                                                        nn.Conv2d, nn.Identity]
    assert all(isinstance(b.pool, nn.MaxPool2d) for b in net.features)  # 32 -> 1
    assert net.out.in_features == 32
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    # 5 convs, 3 projection shortcuts, 1 Linear
    assert len(maskable_weights(net)) == 9


def test_cnn_skip_adds_its_input():
    block = models.ConvBlock(4, 4, "relu", batchnorm=False, skip=True, pool=False)
    with torch.no_grad():
        block.conv.weight.zero_()
        block.conv.bias.zero_()
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(block(x), x)


def test_wide_resnet50_builds_and_runs():
    torch.manual_seed(0)
    net = models.wide_resnet50(100).eval()
    assert net.fc.out_features == 100
    n = sum(p.numel() for p in net.parameters())
    assert 66_000_000 < n < 67_500_000  # WRN-50-2: 68.9M with 1000 classes, 66.8M with 100
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 100)
