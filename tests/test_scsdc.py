"""SC-SDC pairs: widths, densities, matched active counts, the shared init distribution."""
import math

import pytest
import torch
from scipy import stats as ss
from torch import nn

from gflib import data as gdata
from gflib import found_masks, scsdc, train
from gflib import masks as gmasks
from gflib.models import maskable_weights


def test_paper_widths():
    assert scsdc.paper_widths() == [308, 923, 1538, 2153, 2768]
    assert scsdc.paper_widths(50) == [5, 15, 25, 35, 45]


def test_layer_densities():
    # 64 -> 100 -> 100 -> 10 sparse against 64 -> 50 -> 50 -> 10 dense:
    # first 64*50 / 64*100 = .5, hidden 50^2 / 100^2 = .25, last 50*10 / 100*10 = .5
    assert scsdc.layer_densities(64, 10, 2, 100, 50) == [0.5, 0.25, 0.5]
    assert scsdc.layer_densities(3, 2, 1, 7, 7) == [1.0, 1.0]
    assert scsdc.active_counts(64, 10, 2, 50) == [3200, 2500, 500]


def _pair(**options):
    return scsdc.pair(20, 5, 3, 40, 10, seed=0, **options)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_pair_matches_active_counts_layer_by_layer(batchnorm):
    sparse, masks, dense = _pair(batchnorm=batchnorm)
    sw, dw = maskable_weights(sparse), maskable_weights(dense)
    assert list(sw) == list(dw) == list(masks)
    assert len(sw) == 4  # same depth: 3 hidden layers + output
    for name, w in sw.items():
        n_dense = dw[name].numel()
        assert int(masks[name].sum()) == n_dense
        assert int((w != 0).sum()) == n_dense
        assert not masks[name].all()  # every sparse layer is masked
        assert torch.all(w[~masks[name]] == 0)
    table = scsdc.layer_table(sparse, masks, dense)
    assert (table["sparse_active"] == table["dense_weights"]).all()


def test_sparse_weights_and_biases_use_the_dense_layers_bound():
    sparse, masks, dense = _pair()
    sizes = scsdc.layer_sizes(20, 5, 3, 10)
    for (name, w), (fan_in, _) in zip(maskable_weights(sparse).items(), sizes):
        bound = 1 / math.sqrt(fan_in)
        active = w[masks[name]]
        assert active.abs().max() <= bound
        assert active.abs().max() > 0.9 * bound  # drawn up to the bound, not a narrower law
        bias = sparse.get_submodule(name.rsplit(".", 1)[0]).bias
        assert bias.abs().max() <= bound
    # the hidden and output layers of S have fan-in 40: their own default bound 1/sqrt(40) is
    # below the dense bound 1/sqrt(10), and the draws exceed it
    out = sparse.out.weight[masks["out.weight"]]
    assert out.abs().max() > 1 / math.sqrt(40)


def test_sparse_active_weights_follow_the_dense_distribution():
    # hidden-to-hidden layer 400x400 of S against 100x100 of D: 10,000 active weights each
    sparse, masks, dense = scsdc.pair(16, 5, 2, 400, 100, seed=3)
    name = "hidden.1.layer.weight"
    s = sparse.get_parameter(name)[masks[name]].detach().numpy()
    d = dense.get_parameter(name).detach().numpy().ravel()
    assert s.size == d.size == 10_000
    dense_std = (1 / math.sqrt(100)) / math.sqrt(3)  # U(-b, b) has std b/sqrt(3): .0577
    own_std = (1 / math.sqrt(400)) / math.sqrt(3)  # S's default: .0289, half the dense one
    assert s.std() == pytest.approx(dense_std, rel=0.03)
    assert d.std() == pytest.approx(dense_std, rel=0.03)
    assert abs(s.std() - own_std) > 0.4 * own_std
    assert ss.ks_2samp(s, d).pvalue > 1e-3


def test_sparse_wider_than_dense_is_required():
    with pytest.raises(ValueError, match="dense_width 50 .*sparse_width 40"):
        scsdc.pair(20, 5, 2, 40, 50, seed=0)
    with pytest.raises(ValueError, match="dense_width 50 .*sparse_width 40"):
        scsdc.layer_densities(20, 5, 2, 40, 50)
    with pytest.raises(ValueError, match="init"):
        scsdc.sparse_member(20, 5, 2, 40, 10, seed=0, init="kaiming")


def test_sparsity_aware_init_hand_case():
    layer = torch.nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        layer.weight.masked_fill_(~mask, 0.0)
    # weights drawn for a dense fan-in of 9: unit 0 has 1 active input -> x sqrt(9/1) = 3,
    # unit 1 has 4 -> x sqrt(9/4) = 1.5
    gmasks.sparsity_aware_init_(layer, {"weight": mask}, {"weight": 9})
    assert torch.equal(layer.weight, torch.tensor([[3.0, 0, 0, 0], [1.5, 1.5, 1.5, 1.5]]))


def test_sparsity_aware_pair_rescales_each_unit():
    plain, masks, _ = _pair()
    aware, masks2, _ = _pair(init="sparsity_aware")
    for name, fan_in in zip(masks, [f for f, _ in scsdc.layer_sizes(20, 5, 3, 10)]):
        assert torch.equal(masks[name], masks2[name])
        w, w2 = plain.get_parameter(name), aware.get_parameter(name)
        active = masks[name].sum(dim=1).clamp(min=1).double()
        scale = torch.sqrt(fan_in / active).to(w.dtype)[:, None]
        torch.testing.assert_close(w2, w * scale, rtol=1e-6, atol=0)


def _fake_dataset():
    x = torch.zeros(4, 1, 4, 5)
    y = torch.zeros(4, dtype=torch.long)
    return gdata.Dataset("digits", x, y, x, y, 3, (0.0,), (1.0,))


@pytest.mark.parametrize("batchnorm", [False, True])
def test_runconfig_builds_either_member(batchnorm):
    ds = _fake_dataset()
    cfg = train.RunConfig(depth=2, width=30, match_width=12, batchnorm=batchnorm, seed=4)
    assert cfg.validate().sparse
    model, masks = train.build_model(cfg, ds)
    ref, ref_masks, ref_dense = scsdc.pair(20, 3, 2, 30, 12, seed=4, batchnorm=batchnorm)
    assert list(masks) == list(ref_masks)
    assert all(torch.equal(masks[n], ref_masks[n]) for n in masks)
    for (n, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), n
    assert [int(m.sum()) for m in masks.values()] == scsdc.active_counts(20, 3, 2, 12)

    dense_cfg = train.RunConfig(depth=2, width=cfg.match_width, batchnorm=batchnorm, seed=4)
    dense, dense_masks = train.build_model(dense_cfg, ds)
    assert dense_masks == {} and not dense_cfg.sparse
    for (n, a), (_, b) in zip(dense.state_dict().items(), ref_dense.state_dict().items()):
        assert torch.equal(a, b), n


def test_runconfig_rejects_bad_pairs():
    with pytest.raises(ValueError, match="dense_width 40 .*sparse_width 30"):
        train.RunConfig(width=30, match_width=40).validate()
    with pytest.raises(ValueError, match="density or match_width"):
        train.RunConfig(width=30, match_width=10, density=0.5).validate()


class Tiny(nn.Module):
    """A user's own architecture on 1 x 4 x 4 inputs: conv 3x3 (1 -> width channels, padding 1),
    BatchNorm, ReLU, conv 1x1 (width -> width, no bias), 2x2 average pool, Linear (width * 4 ->
    5). ``constant``: every weight 1 / width and every bias -1 / width (an init of its own)."""

    def __init__(self, width, constant=False):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.mix = nn.Conv2d(width, width, 1, bias=False)
        self.head = nn.Linear(width * 4, 5)
        if constant:
            for layer in (self.conv, self.mix, self.head):
                nn.init.constant_(layer.weight, 1 / width)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, -1 / width)

    def forward(self, x):
        h = self.mix(torch.relu(self.norm(self.conv(x))))
        return self.head(torch.nn.functional.avg_pool2d(h, 2).flatten(1))


# Sparse width 8 against dense widths 4 and 2, by hand (weights = out x in x kernel):
#   conv [8, 1, 3, 3] = 72 weights; dense [4, 1, 3, 3] = 36 (density .5), [2, 1, 3, 3] = 18 (.25)
#   mix  [8, 8, 1, 1] = 64;         dense [4, 4] = 16 (.25),             [2, 2] = 4 (1/16)
#   head [5, 32] = 160;             dense [5, 16] = 80 (.5),             [5, 8] = 40 (.25)
# inputs per sparse unit = active / sparse units: conv 36/8 = 4.5 and 18/8 = 2.25 (dense: 9);
# mix 16/8 = 2 (dense 4) and 4/8 = .5 (dense 2): at width 2 at least half of mix's 8 units get
# no input at all; head 80/5 = 16 and 40/5 = 8 (dense: 16 and 8).
HAND = {4: {"conv.weight": (72, 36, 0.5, 4.5, 9), "mix.weight": (64, 16, 0.25, 2.0, 4),
            "head.weight": (160, 80, 0.5, 16.0, 16)},
        2: {"conv.weight": (72, 18, 0.25, 2.25, 9), "mix.weight": (64, 4, 1 / 16, 0.5, 2),
            "head.weight": (160, 40, 0.25, 8.0, 8)}}


def test_matched_pairs_of_a_users_model_keep_the_dense_counts_by_hand():
    rng = torch.get_rng_state()
    pairs = scsdc.matched_pairs(Tiny, 8, [4, 2], seeds=[0, 1])
    assert torch.equal(torch.get_rng_state(), rng)
    assert [(p.dense_width, p.seed) for p in pairs] == [(4, 0), (4, 1), (2, 0), (2, 1)]
    table = scsdc.pairs_table(pairs)
    assert len(table) == 4 * 3
    for p in pairs:
        assert isinstance(p.sparse, Tiny) and p.sparse.mix.weight.shape == (8, 8, 1, 1)
        assert p.dense.mix.weight.shape == (p.dense_width,) * 2 + (1, 1)
        for name, (weights, active, density, inputs, dense_inputs) in HAND[p.dense_width].items():
            w = p.sparse.get_parameter(name)
            assert int(p.masks[name].sum()) == active == p.dense.get_parameter(name).numel()
            assert int((w != 0).sum()) == active and (w[~p.masks[name]] == 0).all()
            row = table[(table["dense_width"] == p.dense_width) & (table["seed"] == p.seed)
                        & (table["layer"] == name)].iloc[0]
            assert (row["sparse_weights"], row["active"], row["dense_weights"]) == \
                (weights, active, active)
            assert row["density"] == density and row["sparse_inputs"] == inputs
            assert row["dense_inputs"] == dense_inputs
            units_hit = len({int(i) for i in p.masks[name].nonzero()[:, 0]})
            assert row["no_input"] == (w.shape[0] - units_hit) / w.shape[0]
    mix_at_2 = table[(table["dense_width"] == 2) & (table["layer"] == "mix.weight")]
    assert (mix_at_2["no_input"] >= 0.5).all()
    assert not torch.equal(pairs[0].masks["mix.weight"], pairs[1].masks["mix.weight"])
    again = scsdc.matched_pairs(Tiny, 8, [4], seeds=[0])[0]
    for (n, a), (_, b) in zip(pairs[0].sparse.state_dict().items(),
                              again.sparse.state_dict().items()):
        assert torch.equal(a, b), n


def test_active_weights_and_biases_follow_the_builders_own_dense_init():
    """Every weight of build(4) is 1/4 and every bias -1/4 (the sparse model's own would be
    1/8, -1/8): so is each active weight and each of the sparse conv's 8 biases (a fresh dense
    conv has 4: they come from two fresh dense models)."""
    pair = scsdc.matched_pairs(lambda w: Tiny(w, constant=True), 8, [4])[0]
    for name in ("conv.weight", "mix.weight", "head.weight"):
        w = pair.sparse.get_parameter(name)
        assert torch.equal(w[pair.masks[name]], torch.full((pair.dense.get_parameter(name)
                                                            .numel(),), 0.25))
    assert torch.equal(pair.sparse.conv.bias, torch.full((8,), -0.25))
    assert torch.equal(pair.sparse.head.bias, torch.full((5,), -0.25))
    assert torch.equal(pair.sparse.norm.weight, torch.ones(8))  # its own init


def test_active_weights_follow_a_random_dense_init():
    # N(0, 1/width) weights: 200 x 200 sparse against 50 x 50 dense, 2,500 active weights
    def build(width):
        layer = nn.Linear(width, width)
        nn.init.normal_(layer.weight, std=1 / width)
        return nn.Sequential(layer, nn.ReLU(), nn.Linear(width, 3))

    pair = scsdc.matched_pairs(build, 200, [50], seeds=[3])[0]
    s = pair.sparse[0].weight[pair.masks["0.weight"]].detach().numpy()
    d = pair.dense[0].weight.detach().numpy().ravel()
    assert s.size == d.size == 2500
    assert s.std() == pytest.approx(1 / 50, rel=0.05)  # the sparse layer's own: 1/200
    assert ss.ks_2samp(s, d).pvalue > 1e-3
    # torch's default elsewhere, at the dense fan-in: U(-1/sqrt(50), 1/sqrt(50)); the first
    # layer's 200 biases come from four fresh dense models, 50 each, none repeated
    last = pair.sparse[2].weight[pair.masks["2.weight"]]
    assert last.abs().max() <= 1 / math.sqrt(50) and last.abs().max() > 1 / math.sqrt(200)
    bias = pair.sparse[0].bias
    assert bias.abs().max() <= 1 / math.sqrt(50) and bias.abs().max() > 1 / math.sqrt(200)
    assert len(set(bias.tolist())) == 200


def test_masks_as_prune_and_sparsity_aware():
    plain = scsdc.matched_pairs(Tiny, 8, [4], masks_as="none")[0]
    pruned = scsdc.matched_pairs(Tiny, 8, [4], masks_as="prune")[0]
    assert "mix.weight_orig" in dict(pruned.sparse.named_parameters())
    found = found_masks.masks_of(pruned.sparse)
    assert list(found) == list(plain.masks)
    for name, mask in plain.masks.items():
        assert torch.equal(found[name], mask)
        module = name.rpartition(".")[0]
        assert torch.equal(getattr(pruned.sparse.get_submodule(module), "weight"),
                           plain.sparse.get_parameter(name))
    assert found_masks.masks_of(plain.sparse) == {}
    aware = scsdc.matched_pairs(Tiny, 8, [4], init="sparsity_aware", masks_as="none")[0]
    mask = plain.masks["mix.weight"]  # dense fan-in 4, each unit rescaled by sqrt(4 / its inputs)
    inputs = mask.reshape(8, -1).sum(1).clamp(min=1).double()
    torch.testing.assert_close(aware.sparse.mix.weight, plain.sparse.mix.weight
                               * torch.sqrt(4 / inputs).float()[:, None, None, None],
                               rtol=1e-6, atol=0)


class Deeper(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.first = nn.Linear(3, width)
        self.extra = nn.Linear(width, width) if width > 4 else None


class Bottleneck(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.up = nn.Linear(3, width)
        self.squeeze = nn.Linear(width, 100 // width)  # width 8: 12 x 8 = 96; width 4: 25 x 4


class Embedded(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.embed = nn.Embedding(10, width)
        self.out = nn.Linear(width, 2)


class Shapeshifter(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layer = nn.Linear(3, width) if width > 4 else nn.Conv1d(3, width, 1)


@pytest.mark.parametrize("build,match", [
    (Shapeshifter, r"layer.weight is \(4, 3, 1\) at dense width 4 and \(8, 3\) at sparse"),
    (Deeper, r"other weight tensors at width 8 than at 4: only at 8: \['extra.weight'\]"),
    (Bottleneck, r"squeeze.weight has 100 weights \(25, 4\) at dense width 4 and 96 \(12, 8\)"),
    (Embedded, r"parameters \['embed.weight'\] are not Linear/Conv weights"),
    (lambda w: nn.BatchNorm1d(w), "no Linear or Conv weight"),
    (lambda w: "a model", r"build\(8\) must return a torch.nn.Module, got str"),
])
def test_pairs_that_cannot_match_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        scsdc.matched_pairs(build, 8, [4])


@pytest.mark.parametrize("kwargs,match", [
    (dict(sparse_width=0), "sparse_width must be a number > 0, got 0"),
    (dict(dense_widths=[True]), "dense_width must be a number > 0, got True"),
    (dict(dense_widths=[]), "dense_widths and seeds must not be empty"),
    (dict(seeds=[0.5]), "seeds must be integers, got 0.5"),
    (dict(init="kaiming"), "unknown init 'kaiming'; allowed: dense, sparsity_aware"),
    (dict(masks_as="parametrize"), "unknown masks_as 'parametrize'; allowed: gflib, prune, none"),
])
def test_bad_arguments_are_refused(kwargs, match):
    args = {**dict(build=Tiny, sparse_width=8, dense_widths=[4]), **kwargs}
    with pytest.raises(ValueError, match=match):
        scsdc.matched_pairs(**args)
