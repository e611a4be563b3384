"""SC-SDC pairs: widths, densities, matched active counts, the shared init distribution."""
import math

import pytest
import torch
from scipy import stats as ss

from gflib import data as gdata
from gflib import masks as gmasks
from gflib import scsdc, train
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
