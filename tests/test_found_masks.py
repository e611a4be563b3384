"""Masks found where users keep them (torch.nn.utils.prune, parametrize / torch.ao.pruning, gflib,
a dict), each pinned on test_flow's hand network against g * m worked out by hand, and the
promise that measuring changes nothing, the prune hooks and parametrizations included."""
import math

import pytest
import torch
import torch.ao.pruning as ao_pruning
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize, prune

from gflib import flow, found_masks
from gflib.masks import apply_masks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# test_flow's hand network as a user's nn.Sequential: 2 inputs -> 2 ReLU units -> 2 classes,
# x = (1, 2), y = 0, W1 = [[.5, (A, masked)], [1, .5]], b1 = [.1, -.5],
# W2 = [[1, -1], [.5, (0, masked)]], b2 = [0, .2]. A = .1 is the smallest |w| of W1 and the 0 the
# smallest of W2, so L1 pruning of one weight per layer (or two globally) finds the masks
#   m1 = [[1, 0], [1, 1]], m2 = [[1, 1], [1, 0]].
# With the masked weights at 0 (test_flow): q = 1 / (1 + e^-1.4),
#   dC/dW1 = q [[-.5, -1], [1, 2]], dC/dW2 = q [[-.6, -1.5], [.6, 1.5]]
#   per layer: |g1|_1 = 4.5 q, |g1 m1|_1 = 3.5 q, |g1|_2 = 2.5 q, |g1 m1|_2 = sqrt(5.25) q;
#              |g2|_1 = 4.2 q, |g2 m2|_1 = 2.7 q, |g2|_2 = sqrt(5.22) q, |g2 m2|_2 = sqrt(2.97) q
#   gf_l1 = 8.7 q, gf_l2 = sqrt(11.47) q, egf_l1 = 3.1 q, egf_l2 = (sqrt(5.25) + sqrt(2.97)) / 2 q
#   biases: dC/db1 = q [-.5, 1], dC/db2 = q [-1, 1]: gfall_l1 = (8.7 + 1.5 + 2) q
Q = 1 / (1 + math.exp(-1.4))
A = 0.1
M1 = torch.tensor([[True, False], [True, True]])
M2 = torch.tensor([[True, True], [True, False]])
G1 = Q * torch.tensor([[-0.5, -1.0], [1.0, 2.0]], dtype=torch.float64)
G2 = Q * torch.tensor([[-0.6, -1.5], [0.6, 1.5]], dtype=torch.float64)
X = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
Y = torch.tensor([0])


def hand_net(a=A):
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.5, a], [1.0, 0.5]], dtype=torch.float64))
        net[0].bias.copy_(torch.tensor([0.1, -0.5], dtype=torch.float64))
        net[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 0.0]], dtype=torch.float64))
        net[2].bias.copy_(torch.tensor([0.0, 0.2], dtype=torch.float64))
    return net


def _custom_from_mask(net):
    prune.custom_from_mask(net[0], "weight", M1)
    prune.custom_from_mask(net[2], "weight", M2)


def _l1_unstructured(net):
    prune.l1_unstructured(net[0], "weight", amount=1)
    prune.l1_unstructured(net[2], "weight", amount=1)


def _global_unstructured(net):
    prune.global_unstructured([(net[0], "weight"), (net[2], "weight")],
                              pruning_method=prune.L1Unstructured, amount=2)


def _pruned_twice(net):  # a PruningContainer: the identity first, then the masks
    prune.identity(net[0], "weight")
    prune.identity(net[2], "weight")
    _custom_from_mask(net)


def _fake_sparsity(net):
    parametrize.register_parametrization(net[0], "weight", ao_pruning.FakeSparsity(M1.double()))
    parametrize.register_parametrization(net[2], "weight", ao_pruning.FakeSparsity(M2.double()))


def _weight_norm_sparsifier(net):
    sparsifier = ao_pruning.WeightNormSparsifier(sparsity_level=0.25, sparse_block_shape=(1, 1),
                                                 zeros_per_block=1)
    sparsifier.prepare(net, [{"tensor_fqn": "0.weight"}, {"tensor_fqn": "2.weight"}])
    sparsifier.step()


def _gflib(net):
    apply_masks(net, {"0.weight": M1, "2.weight": M2})


WAYS = {"custom_from_mask": _custom_from_mask, "l1_unstructured": _l1_unstructured,
        "global_unstructured": _global_unstructured, "pruned_twice": _pruned_twice,
        "fake_sparsity": _fake_sparsity, "weight_norm_sparsifier": _weight_norm_sparsifier,
        "gflib": _gflib}


def masked(way):
    net = hand_net()
    WAYS[way](net)
    return net


@pytest.mark.parametrize("way", WAYS)
def test_masks_are_found_under_the_users_names(way):
    found = found_masks.masks_of(masked(way))
    assert list(found) == ["0.weight", "2.weight"]
    assert torch.equal(found["0.weight"], M1) and torch.equal(found["2.weight"], M2)
    assert all(m.dtype == torch.bool for m in found.values())


def _check_hand_values(net, masks=None):
    g = flow.gradients(net, X, Y)
    assert list(g) == ["0.weight", "2.weight"]
    torch.testing.assert_close(g["0.weight"], G1, rtol=1e-12, atol=0)
    torch.testing.assert_close(g["2.weight"], G2, rtol=1e-12, atol=0)
    m = flow.measure(net, X, Y, masks=masks)
    assert m["gf_l1"] == pytest.approx(8.7 * Q, rel=1e-12)
    assert m["gf_l2"] == pytest.approx(math.sqrt(11.47) * Q, rel=1e-12)
    assert m["egf_l1"] == pytest.approx(3.1 * Q, rel=1e-12)
    assert m["egf_l2"] == pytest.approx((math.sqrt(5.25) + math.sqrt(2.97)) / 2 * Q, rel=1e-12)
    assert m["gfall_l1"] == pytest.approx(12.2 * Q, rel=1e-12)
    layers = flow.layer_norms(g, found_masks.masks_of(net) if masks is None else masks)
    assert layers["layer"].tolist() == ["0.weight", "2.weight"]
    assert layers["active"].tolist() == [3, 3]
    for column, want in {"l1_all": [4.5, 4.2], "l1_active": [3.5, 2.7],
                         "l2_all": [2.5, math.sqrt(5.22)],
                         "l2_active": [math.sqrt(5.25), math.sqrt(2.97)]}.items():
        assert layers[column].tolist() == pytest.approx([w * Q for w in want], rel=1e-12), column
    assert set(flow.gradients(net, X, Y, scope="all")) == {"0.weight", "0.bias", "2.weight",
                                                            "2.bias"}


@pytest.mark.parametrize("way", WAYS)
def test_each_way_gives_the_hand_measures(way):
    _check_hand_values(masked(way))


def test_a_dict_of_masks_kept_by_the_users_code():
    """RigL-style: plain parameters, the masked weights zero, the masks in the user's dict."""
    net = hand_net(a=0.0)
    assert found_masks.masks_of(net) == {}
    _check_hand_values(net, {"0.weight": M1, "2.weight": M2.double()})  # bool or 0/1


def test_pruned_gradient_is_the_effective_weights():
    """What autograd leaves on a pruned model: weight.grad is None, weight_orig.grad is g * m.
    gflib reports g itself, the masked entries' -q (W1) and 1.5 q (W2) included."""
    net = masked("l1_unstructured")
    F.cross_entropy(net(X), Y).backward()
    with pytest.warns(UserWarning, match="not a leaf"):
        assert net[0].weight.grad is None
    torch.testing.assert_close(net[0].weight_orig.grad, G1 * M1, rtol=1e-12, atol=0)
    g = flow.gradients(net, X, Y)
    assert g["0.weight"][0, 1].item() == pytest.approx(-Q, rel=1e-12)
    assert g["2.weight"][1, 1].item() == pytest.approx(1.5 * Q, rel=1e-12)


def test_structured_pruning_hand_case():
    # ln_structured (L1, dim 0) removes W1's row of smaller L1 norm, row 0 (.6 against 1.5);
    # W2 stays dense. z1 = [.1, 1.5] = h, z2 = [.1 - 1.5, .05 + .2] = [-1.4, .25],
    # r = 1 / (1 + e^-1.65), dz2 = r [-1, 1], dC/dW2 = r [[-.1, -1.5], [.1, 1.5]],
    # dC/dh = W2^T dz2 = r [-.5, 1] (both units open): dC/dW1 = r [[-.5, -1], [1, 2]].
    #   gf_l1 = (4.5 + 3.2) r, gf_l2 = sqrt(6.25 + 4.52) r,
    #   EGF: |g1 m1|_1 = 3 r, |g2|_1 = 3.2 r; |g1 m1|_2 = sqrt(5) r, |g2|_2 = sqrt(4.52) r
    r = 1 / (1 + math.exp(-1.65))
    net = hand_net()
    prune.ln_structured(net[0], "weight", amount=1, n=1, dim=0)
    found = found_masks.masks_of(net)
    assert list(found) == ["0.weight"]
    assert found["0.weight"].tolist() == [[False, False], [True, True]]
    m = flow.measure(net, X, Y)
    assert m["gf_l1"] == pytest.approx(7.7 * r, rel=1e-12)
    assert m["gf_l2"] == pytest.approx(math.sqrt(10.77) * r, rel=1e-12)
    assert m["egf_l1"] == pytest.approx(3.1 * r, rel=1e-12)
    assert m["egf_l2"] == pytest.approx((math.sqrt(5) + math.sqrt(4.52)) / 2 * r, rel=1e-12)


def test_two_masking_parametrizations_multiply():
    net = hand_net()
    parametrize.register_parametrization(net[0], "weight", ao_pruning.FakeSparsity(
        torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)))
    parametrize.register_parametrization(net[0], "weight", ao_pruning.FakeSparsity(
        torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)))
    assert found_masks.masks_of(net)["0.weight"].tolist() == [[False, False], [True, True]]


def test_names_as_the_users_code_reads_them():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    prune.random_unstructured(net[0], "weight", amount=0.5)
    prune.l1_unstructured(net[0], "bias", amount=1)
    parametrize.register_parametrization(net[1], "weight",
                                         ao_pruning.FakeSparsity(torch.ones(2, 4)))
    net[2].bias.requires_grad_(False)
    assert found_masks.trainable(net) == ["0.weight", "0.bias", "1.bias", "1.weight",
                                          "2.weight"]
    assert [found_masks.kind_of(net, n) for n in ("0.weight", "0.bias", "1.weight", "2.bias")] \
        == ["prune", "prune", "parametrize", "parameter"]
    assert list(found_masks.masks_of(net)) == ["0.weight", "0.bias", "1.weight"]
    with pytest.raises(ValueError, match="'0.nope' is not a parameter of the model"):
        found_masks.kind_of(net, "0.nope")


def test_a_tensor_the_loss_does_not_reach_gets_zeros():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    net = Unused().double()
    prune.l1_unstructured(net.spare, "weight", amount=1)
    g = flow.gradients(net, X, Y)
    assert torch.equal(g["spare.weight"], torch.zeros(2, 2, dtype=torch.float64))


def test_unknown_or_misshapen_masks_are_refused():
    net = hand_net()
    with pytest.raises(ValueError, match=r"\['fc1.weight'\].*allowed: 0.weight, 2.weight, "
                                         r"0.bias, 2.bias"):
        flow.measure(net, X, Y, masks={"fc1.weight": M1})
    with pytest.raises(ValueError, match=r"mask for 0.weight has shape \(2, 3\)"):
        flow.measure(net, X, Y, masks={"0.weight": torch.ones(2, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="must be bool or 0/1, found 0.5"):
        flow.measure(net, X, Y, masks={"0.weight": torch.full((2, 2), 0.5)})


def test_old_weight_norm_hook_is_refused_with_the_way_out():
    net = hand_net()
    with pytest.warns(FutureWarning):
        torch.nn.utils.weight_norm(net[0])
    with pytest.raises(ValueError, match="'0.weight' .*torch.nn.utils.parametrize"):
        flow.measure(net, X, Y)


def bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():  # running statistics far from the batch's
        net[1].running_mean.fill_(3.0)
        net[1].running_var.fill_(9.0)
    return net


def _global_conv(net):
    prune.global_unstructured([(net[0], "weight"), (net[5], "weight")],
                              pruning_method=prune.L1Unstructured, amount=0.6)


def _sparsifier_conv(net):  # WeightNormSparsifier takes 2-D weights only
    sparsifier = ao_pruning.WeightNormSparsifier(sparsity_level=0.5, sparse_block_shape=(1, 1),
                                                 zeros_per_block=1)
    sparsifier.prepare(net, [{"tensor_fqn": "5.weight"}])
    sparsifier.step()
    parametrize.register_parametrization(net[0], "weight", ao_pruning.FakeSparsity(
        (torch.rand(4, 1, 3, 3) < 0.5).float()))


def _gflib_conv(net):
    apply_masks(net, {"0.weight": torch.rand(4, 1, 3, 3) < 0.5,
                      "5.weight": torch.rand(3, 64) < 0.5})


@pytest.mark.parametrize("way", [_global_conv, _sparsifier_conv, _gflib_conv])
def test_measuring_changes_nothing(way):
    net = bn_net()
    way(net)
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    F.cross_entropy(net(x), y).backward()
    net.eval()
    net[1].train()
    modes = [m.training for m in net.modules()]
    tensors = {n: t.clone() for n, t in [*net.named_parameters(), *net.named_buffers()]}
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    hooks = [(m, dict(m._forward_pre_hooks)) for m in net.modules()]
    computed = net[0].__dict__.get("weight")  # prune's weight attribute (None otherwise)
    masks = found_masks.masks_of(net)
    assert set(masks) == {"0.weight", "5.weight"}
    rng = torch.get_rng_state()
    flow.measure(net, x, y)
    flow.measure(net, x, y, scope="all", per_weight=True)
    flow.gradients(net, x, y, scope="all")
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in net.modules()] == modes
    after = dict([*net.named_parameters(), *net.named_buffers()])
    assert after.keys() == tensors.keys()
    for n, t in tensors.items():
        assert torch.equal(after[n], t), n  # running statistics, weight_orig, masks included
    for n, p in net.named_parameters():
        assert torch.equal(p.grad, grads[n]), n
    assert all(dict(m._forward_pre_hooks) == h for m, h in hooks)
    assert net[0].__dict__.get("weight") is computed
    if way is _gflib_conv:  # the gradient hooks still act
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
        for name, mask in masks.items():
            assert (net.get_parameter(name).grad[~mask] == 0).all(), name
        return
    # the masks still act: with every stored weight set to 1, the forward's weights are the masks
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    net.train()
    net(x)
    for name, mask in masks.items():
        module = net.get_submodule(name.split(".")[0])
        assert torch.equal(module.weight, mask.to(module.weight.dtype)), name


def test_measure_inside_training_keeps_the_autograd_graph_of_the_step():
    """Between backward and the optimizer's step (where a monitor may be called) the pruned
    weights' .grad, and the graph of a forward not yet backpropagated, are untouched."""
    net = bn_net()
    _global_conv(net)
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    reference = bn_net()
    _global_conv(reference)
    torch.manual_seed(1)
    loss = F.cross_entropy(net(x), y)
    flow.measure(net, x, y)
    loss.backward()
    torch.manual_seed(1)
    F.cross_entropy(reference(x), y).backward()
    for (n, p), (_, q) in zip(net.named_parameters(), reference.named_parameters()):
        assert torch.equal(p.grad, q.grad), n


def test_gflib_masks_of_a_wrapped_model_are_found_under_the_wrappers_names():
    class Wrapper(nn.Module):  # e.g. a LightningModule holding the user's net
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    wrapped = Wrapper(masked("gflib"))
    found = found_masks.masks_of(wrapped)
    assert list(found) == ["net.0.weight", "net.2.weight"]
    assert torch.equal(found["net.0.weight"], M1)
    assert flow.measure(wrapped, X, Y)["egf_l1"] == pytest.approx(3.1 * Q, rel=1e-12)
