"""Stacked training (gflib.stacked) gives what one-by-one training (gflib.train.run) gives.

Tolerance: rtol 1e-4, atol 1e-5 on every per-epoch metric, flow value and final weight after 3
epochs on digits (36 steps). Bitwise identity is not possible: a batched product (bmm) may add in
another order than a single one (addmm), so the two differ by float rounding; measured, the
metrics differ by < 1e-6 and flow by < 2e-6 relative, so the tolerance has 10-100x headroom yet
would catch any real difference (a wrong batch, mask, augmentation draw or optimizer step shows
up at 1e-2). Test accuracies must match exactly (atol 1e-5 < one test example, 1/360).

BatchNorm with Adam-like optimizers: digits has 4 pixels that are constant over the training set
(standardised to one value), so, as for a bias before BatchNorm (see gflib.models), the first
layer's weights on them have a true gradient of 0 and Adam/RMSProp turn its float noise into steps
of size lr. Both implementations are exact yet drift apart there and, through the running means,
in eval-mode outputs (~1e-3 in test loss). Those runs are compared in train mode (train metrics,
flow, all other weights) tightly and in eval mode loosely; with SGD/momentum BatchNorm runs match
tightly.
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from gflib import data, stacked, sweep, train
from gflib.activations import ACTIVATIONS, ActivationSpec
from gflib.config import RunConfig
from gflib.data import DATASETS
from gflib.optimizers import OPTIMIZERS as REGISTERED
from gflib.store import ResultStore

RTOL, ATOL = 1e-4, 1e-5
SEEDS = (0, 1, 2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Both sides on one thread: the results do not depend on it, and on a busy 2-core machine
    torch's second OpenMP thread makes these tiny products up to 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def configs(per_run=None, **kw):
    base = dict(epochs=3, width=32)
    base.update(kw)
    per_run = per_run or [{} for _ in SEEDS]
    return [RunConfig(seed=s, **{**base, **extra}) for s, extra in zip(SEEDS, per_run)]


def one_by_one(cfgs, monkeypatch):
    """train.run on each config, and the trained model each one built (captured)."""
    models = []
    build = train.build_model

    def capture(config, ds):
        model, masks = build(config, ds)
        models.append(model)
        return model, masks

    with monkeypatch.context() as m:
        m.setattr(train, "build_model", capture)
        results = [train.run(c) for c in cfgs]
    return results, models


def close(a, b, rtol=RTOL, atol=ATOL):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def assert_same(ref, got, eval_tol=None, flow_rtol=RTOL, train_acc_atol=ATOL):
    assert got.config == ref.config
    assert got.diverged == ref.diverged and got.diverged_epoch == ref.diverged_epoch
    assert len(got.history) == len(ref.history)
    for hr, hg in zip(ref.history, got.history):
        assert hr["epoch"] == hg["epoch"]
        assert close(hr["train_loss"], hg["train_loss"]), (hr, hg)
        assert close(hr["train_acc"], hg["train_acc"], atol=train_acc_atol), (hr, hg)
        for key in ("test_loss", "test_acc"):
            tol = eval_tol or (RTOL, ATOL)
            assert close(hr[key], hg[key], *tol), (key, hr, hg)
    assert sorted(got.flow) == sorted(ref.flow)
    for e in ref.flow:
        for m, v in ref.flow[e].items():
            assert close(v, got.flow[e][m], rtol=flow_rtol), (e, m, v, got.flow[e][m])
    for m, v in ref.flow_mean.items():
        assert close(v, got.flow_mean[m], rtol=flow_rtol)
    assert set(got.final) == set(ref.final)
    assert got.device == ref.device and got.wall_s > 0


def stacked_run(cfgs, monkeypatch, **kw):
    """train.train on the group, and the ensemble it trained (captured)."""
    built = []
    build = train.build_ensemble

    def capture(configs, ds, device):
        ens = build(configs, ds, device)
        built.append(ens)
        return ens

    with monkeypatch.context() as m:
        m.setattr(train, "build_ensemble", capture)
        results = train.train(cfgs, **kw)
    return results, built[0]


def state_of(ens, r):
    return {n: ens.tensor(n)[r].detach() for n in ens.run_model(r).state_dict()}


def check(cfgs, monkeypatch, eval_tol=None, flow_rtol=RTOL, skip_weights=(), train_acc_atol=ATOL,
          weight_atol=ATOL):
    ref, models = one_by_one(cfgs, monkeypatch)
    got, model = stacked_run(cfgs, monkeypatch)
    assert isinstance(model, stacked.StackedMLP)
    assert len(got) == len(cfgs)
    for r, (a, b) in enumerate(zip(ref, got)):
        assert_same(a, b, eval_tol, flow_rtol, train_acc_atol)
        mine = state_of(model, r)
        theirs = models[r].state_dict()
        assert set(mine) == set(theirs)
        for name, t in theirs.items():
            ours = mine[name]
            if name in skip_weights:
                continue
            torch.testing.assert_close(ours.to(t.dtype), t, rtol=RTOL, atol=weight_atol, msg=name)
    return ref, got, model


def check_optimizer(name, monkeypatch):
    """Registered optimizer ``name`` at its default rate (with decoupled decay where it takes
    one): stacked runs train as one by one. (tests/test_extending.py calls it, and the two
    below, for entries registered at run time.)"""
    spec = REGISTERED[name]
    check(configs(optimizer=name, lr=spec.default_lr,
                  weight_decay=0.01 if spec.decoupled_decay else 0.0), monkeypatch)


def check_activation(name, monkeypatch):
    """Registered activation ``name``: stacked runs train as one by one."""
    check(configs(activation=name), monkeypatch)


def check_dataset(name, monkeypatch):
    """Registered dataset ``name`` (300 training and 100 test images of it; with its DA recipe
    where it has one): stacked runs train as one by one."""
    augment = data.check(name).augmentation is not None
    check(configs(dataset=name, train_subset=300, test_subset=100, augment=augment), monkeypatch)


@pytest.mark.parametrize("optimizer", list(REGISTERED))
def test_every_optimizer(optimizer, monkeypatch):
    check_optimizer(optimizer, monkeypatch)


def test_batchnorm_skip_sgd(monkeypatch):
    check(configs(batchnorm=True, skip=True, depth=3, optimizer="momentum", lr=0.01), monkeypatch)


def test_batchnorm_adam_train_mode(monkeypatch):
    """See the module doc: eval-mode metrics and the constant-pixel weights drift by float noise;
    in train mode the noise in BatchNorm's batch mean can flip one near-tied training example
    (seen with torch's fused Adam), so training accuracy is held to one example of 1437; the
    drifting weights also enter ||g||_1 (measured: 1.0e-3 relative after 3 epochs with fused
    Adam, 4e-4 with the foreach one), held to 3e-3, and BatchNorm's affine parameters, whose
    gradients are near 0 for some units, drift the same way (measured: 2.7e-4), held to one Adam
    step (lr = 1e-3)."""
    cfgs = configs(batchnorm=True, optimizer="adam", lr=0.001)
    check(cfgs, monkeypatch, eval_tol=(0.0, 1e-2), flow_rtol=3e-3, train_acc_atol=1.01 / 1437,
          weight_atol=1e-3,
          skip_weights=("hidden.0.layer.weight", "hidden.0.norm.running_mean"))


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "relu"])
def test_activations(activation, monkeypatch):
    """Every registered activation but ReLU, which every other test here trains."""
    check_activation(activation, monkeypatch)


@pytest.mark.parametrize("dataset", [d for d in DATASETS if d != "digits"])
def test_every_dataset_on_this_machine(dataset, monkeypatch):
    """Every registered dataset but digits (which every other test here trains) whose files are
    on this machine (the others are skipped, saying why)."""
    try:
        data.load(dataset)
    except ValueError as missing:
        pytest.skip(f"{dataset} is not on this machine: {missing}")
    check_dataset(dataset, monkeypatch)


def test_sparse_mixed_densities(monkeypatch):
    per_run = [dict(density=0.1, init="sparsity_aware"), dict(density=0.3), dict(density=1.0)]
    ref, got, model = check(configs(per_run, optimizer="rmsprop", lr=0.001), monkeypatch)
    for r, m in enumerate(model.masks):
        for name, mask in m.items():
            assert (state_of(model, r)[name][~mask] == 0).all()
    assert model.masks[2] == {}


def test_scsdc_sparse_members(monkeypatch):
    per_run = [dict(match_width=8), dict(match_width=16), dict(match_width=8)]
    check(configs(per_run, optimizer="adam"), monkeypatch)


def test_augment_and_l2(monkeypatch):
    check(configs(augment=True, l2=1e-3, optimizer="momentum", lr=0.01), monkeypatch)


def test_divergence_isolated(monkeypatch):
    """Seeds 3 and 4 blow up in epoch 2 (one by test loss, one mid-epoch by a non-finite
    objective) and stop; seed 2 trains on to a finite loss of about 1e8, so it ends diverged as
    "exploded" (see gflib.train). Each is recorded as train.run records it, and seed 2's run in
    the stack is the same as seed 2 stacked beside a run that does not fail."""
    cfgs = [RunConfig(epochs=3, width=32, seed=s, optimizer="momentum", lr=2.0, activation="elu")
            for s in (2, 3, 4)]
    ref, _ = one_by_one(cfgs, monkeypatch)
    got = train.train(cfgs)
    assert [r.diverged_epoch for r in ref] == [3, 2, 2]
    assert [r.diverged_reason for r in ref] == ["exploded", "non-finite", "non-finite"]
    for a, b in zip(ref, got):
        assert b.diverged == a.diverged and b.diverged_epoch == a.diverged_epoch
        assert b.diverged_reason == a.diverged_reason
        assert len(b.history) == len(a.history)
        for hr, hg in zip(a.history, b.history):  # values of 1e30: rounding grows with them
            for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
                assert close(hr[key], hg[key], rtol=1e-2), (key, hr, hg)
        assert sorted(b.flow) == sorted(a.flow)
        if b.diverged:
            assert all(math.isnan(v) for v in b.flow_mean.values())
    alone = stacked_run([cfgs[0], cfgs[0].replace(seed=9)], monkeypatch)[0][0]
    assert alone.history == got[0].history
    assert alone.flow == got[0].flow


def test_flow_measurement_changes_nothing(monkeypatch):
    cfgs = configs(batchnorm=True, optimizer="sgd", lr=0.1, epochs=2)
    _, with_flow = stacked_run(cfgs, monkeypatch)
    _, without = stacked_run(cfgs, monkeypatch, measure_flow=False)
    for name, t in with_flow.state_dict().items():
        assert torch.equal(t, without.state_dict()[name]), name


def test_stack_key_and_groups():
    a = RunConfig(seed=0, width=32)
    assert stacked.stack_key(a) == stacked.stack_key(dataclasses.replace(a, seed=5, density=0.5))
    assert stacked.stack_key(a) == stacked.stack_key(
        dataclasses.replace(a, match_width=8, init="sparsity_aware"))
    assert stacked.stack_key(a) != stacked.stack_key(dataclasses.replace(a, lr=0.1))
    assert stacked.stack_key(a) != stacked.stack_key(dataclasses.replace(a, width=64))
    assert stacked.stack_key(dataclasses.replace(a, model="cnn")) is None
    wide = dataclasses.replace(a, width=stacked.CPU_MAX_WIDTH + 1)
    assert stacked.stack_key(wide) is None
    assert stacked.stack_key(wide, cpu_max_width=None) is not None
    cfgs = [dataclasses.replace(a, seed=s) for s in range(5)]
    cfgs += [wide, dataclasses.replace(a, lr=0.1)]
    gs = stacked.groups(cfgs, 2)
    assert [len(g) for g in gs] == [2, 2, 1, 1, 1]
    assert sorted(c.seed for g in gs[:3] for c in g) == [0, 1, 2, 3, 4]


def test_check_group_rejects():
    with pytest.raises(ValueError, match="lr"):
        train.train([RunConfig(seed=0), RunConfig(seed=1, lr=0.1)])
    with pytest.raises(ValueError, match="mlp"):
        train.train([RunConfig(model="cnn"), RunConfig(model="cnn", seed=1)])
    with pytest.raises(ValueError, match="stack"):
        sweep.run([RunConfig(epochs=1)], "/nonexistent-never-created", stack=0, progress=False)


def test_sweep_stacks_and_stores(tmp_path):
    cfgs = [RunConfig(epochs=2, width=16, seed=s, train_subset=300, density=d)
            for s, d in ((0, 1.0), (1, 1.0), (0, 0.5))]
    cfgs.append(RunConfig(epochs=2, width=16, seed=0, train_subset=300, optimizer="sgd", lr=0.1))
    df = sweep.run(cfgs, tmp_path / "s", stack=8, progress=False).runs
    assert len(df) == 4 and len(ResultStore(tmp_path / "s").keys()) == 4
    ref = sweep.run(cfgs, tmp_path / "one", progress=False).runs
    cols = ["test_loss", "train_loss", "mean_egf_l2", "mean_gf_l1"]
    pd.testing.assert_frame_equal(df[cols], ref[cols], rtol=RTOL, atol=ATOL)
    again = sweep.run(cfgs, tmp_path / "s", stack=8, progress=False).runs
    pd.testing.assert_frame_equal(again, df)


class Shifted(torch.nn.Module):
    """A toy activation with a learnable per-unit shift: relu(x - s), s = 0.1 at init."""

    def __init__(self, features):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.full((features,), 0.1))

    def forward(self, x):
        return torch.relu(x - self.shift)


def test_an_activation_added_to_the_registry_trains_alone_and_stacked(monkeypatch):
    """Adding an activation is one registry entry: it trains one by one and stacked (through
    RunVmap) to the same numbers, and its parameter learns per run."""
    monkeypatch.setitem(ACTIVATIONS, "shifted", ActivationSpec(Shifted, "shifted", "if learned"))
    ref, got, model = check(configs(activation="shifted"), monkeypatch)
    shifts = model.tensor("hidden.0.act.shift")
    assert shifts.shape == (3, 32) and not torch.allclose(shifts, torch.full_like(shifts, 0.1))
