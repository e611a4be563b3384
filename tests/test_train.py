"""gflib.train: config validation, what one run records, determinism on CPU, divergence recorded
rather than raised, masked weights kept zero through a real run."""
from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from gflib import optimizers, train
from gflib.flow import MEASURES, schedule
from gflib.models import maskable_weights
from gflib.hooks import LR_SCHEDULES, Hook
from gflib.train import RunConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(dataset="digits", depth=1, width=16, epochs=4, flow_points=3, train_subset=400,
            test_subset=200)


@pytest.mark.parametrize("field,bad", [
    ("dataset", "mnist"), ("optimizer", "lbfgs"), ("activation", "tanh"), ("model", "vit"),
    ("density", 0.0), ("density", 1.5), ("density", -0.25),
    ("width", 0), ("depth", 0), ("depth", -1), ("epochs", 0), ("batch_size", 0),
    ("lr", 0.0), ("lr", -0.1), ("lr", float("nan")), ("l2", -1e-4), ("flow_points", 0),
    ("train_subset", 0),
])
def test_validate_names_the_bad_value(field, bad):
    with pytest.raises(ValueError) as err:
        RunConfig(**{field: bad})
    assert repr(bad) in str(err.value) and field.split("_")[0] in str(err.value)


@pytest.mark.parametrize("field,bad", [
    ("batchnorm", "no"), ("batchnorm", 1), ("augment", 1), ("skip", "yes"), ("augment", None),
    ("seed", 1.5), ("seed", "a"), ("seed", None), ("seed", -1), ("epochs", 2.0),
    ("match_width", 4.5), ("optimizer", None), ("lr", "0.1"), ("device", None),
])
def test_yes_no_and_integer_fields_name_the_field(field, bad):
    """Before: batchnorm="no" trained WITH BatchNorm, augment=1 augmented, and seed 1.5 / "a" /
    None failed inside torch or int() without naming the field."""
    with pytest.raises(ValueError) as err:
        RunConfig(**{field: bad})
    assert field in str(err.value) and repr(bad) in str(err.value)


def test_numbers_are_normalised():
    """numpy integers are integers and lr=1 is lr=1.0: one run, one config (and one store key)."""
    a = RunConfig(seed=np.int64(3), width=np.int32(16), lr=1, density=np.float32(0.5))
    assert a == RunConfig(seed=3, width=16, lr=1.0, density=0.5)
    assert type(a.seed) is int and type(a.lr) is float and type(a.density) is float


def test_validate_combinations():
    assert RunConfig().validate() == RunConfig()
    with pytest.raises(ValueError, match="'adam'"):
        RunConfig(optimizer="adam", weight_decay=0.1)
    RunConfig(optimizer="adamw", weight_decay=0.1)
    with pytest.raises(ValueError, match="either density or match_width"):
        RunConfig(density=0.5, match_width=8)
    with pytest.raises(ValueError, match="sparsity_aware"):
        RunConfig(init="sparsity_aware")
    with pytest.raises(ValueError, match="'sideways'"):
        RunConfig(init="sideways")
    with pytest.raises(ValueError, match="needs a target"):
        RunConfig(prune="oneshot")
    with pytest.raises(ValueError, match="prune_start <= prune_end < epochs"):
        RunConfig(prune="gradual", density=0.5, prune_start=2, prune_end=20, epochs=10)


def test_density_leaving_a_layer_empty_is_refused_before_training():
    """Before: density 1e-9 was silently raised to one weight per tensor."""
    with pytest.raises(ValueError, match="leaves hidden.0.layer.weight"):
        train.check_buildable(RunConfig(**TINY, density=1e-9))
    with pytest.raises(ValueError, match="leaves"):
        train.run(RunConfig(**TINY, density=1e-9))


def test_make_optimizer_unknown_name():
    with pytest.raises(ValueError, match=r"'lbfgs'.*adagrad, adam, rmsprop, sgd, momentum, adamw"):
        optimizers.make("lbfgs", [torch.zeros(1, requires_grad=True)], 0.1)


def test_run_records_history_final_and_flow():
    cfg = RunConfig(**TINY, lr=1e-2)
    r = train.run(cfg)
    assert [h["epoch"] for h in r.history] == [1, 2, 3, 4]
    for h in r.history:
        assert set(h) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc"}
        assert 0 <= h["train_acc"] <= 1 and 0 <= h["test_acc"] <= 1
        assert h["test_acc"] * 200 == pytest.approx(round(h["test_acc"] * 200))  # k/200 examples
    last = r.history[-1]
    assert r.final == {k: last[k] for k in ("test_loss", "test_acc", "train_loss", "train_acc")}
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.final["test_acc"] > 0.6  # 10 classes: it learned something
    assert sorted(r.flow) == schedule(4, 3) == [0, 2, 4]
    for f in r.flow.values():
        assert set(f) == set(MEASURES) and all(v > 0 and math.isfinite(v) for v in f.values())
        assert f["egf_l1"] == pytest.approx(f["gf_l1"] / 2)  # dense: EGF_1 = ||g||_1 / L, L = 2
    for k in MEASURES:
        assert r.flow_mean[k] == pytest.approx(np.mean([f[k] for f in r.flow.values()]))
    assert r.diverged is False and r.diverged_epoch is None
    assert r.config == cfg.to_dict() and r.device == "cpu"
    assert train.run(cfg, measure_flow=False).flow == {}


def _numbers(r):
    return r.history, r.flow, r.final, r.flow_mean


@pytest.mark.parametrize("extra", [
    dict(),
    dict(density=0.5, batchnorm=True, augment=True, l2=1e-3, optimizer="rmsprop",
         activation="srelu", depth=2, skip=True),
    dict(model="cnn", depth=2, width=25, epochs=1, flow_points=2, train_subset=64, test_subset=32),
])
def test_same_config_gives_identical_numbers(extra):
    cfg = RunConfig(**{**TINY, **extra})
    a, b = train.run(cfg), train.run(cfg)
    assert _numbers(a) == _numbers(b)  # exact, floats included
    c = train.run(dataclasses.replace(cfg, seed=1))
    assert c.history != a.history and c.flow != a.flow


def test_divergence_is_recorded_not_raised():
    r = train.run(RunConfig(**TINY, optimizer="sgd", lr=1e6))
    assert r.diverged is True and r.diverged_reason == "non-finite"
    assert 1 <= r.diverged_epoch < 4 and len(r.history) == r.diverged_epoch
    assert all(math.isnan(v) for v in r.flow_mean.values())
    assert max(r.flow) < r.diverged_epoch  # no flow measured from the diverged epoch on
    assert r.final["test_loss"] == r.history[-1]["test_loss"]  # kept as measured


def test_a_run_that_fails_mid_epoch_keeps_its_last_evaluated_test_metrics():
    """The loop marks a failed run on the device and reads the mark at the epoch's end: the
    failing epoch's entry has the training metrics up to the failing step (finite, over the
    steps before it) and the test metrics of the epoch before (its last evaluated weights)."""
    cfgs = [RunConfig(epochs=3, width=32, seed=s, optimizer="momentum", lr=2.0, activation="elu")
            for s in (4, 2)]
    failed, other = train.train(cfgs)
    assert failed.diverged_reason == "non-finite" and failed.diverged_epoch == 2
    before, last = failed.history
    assert math.isfinite(last["train_loss"]) and 0 <= last["train_acc"] <= 1
    assert (last["test_loss"], last["test_acc"]) == (before["test_loss"], before["test_acc"])
    assert other.diverged_reason == "exploded" and len(other.history) == 3  # trained on


class _HostReads(TorchFunctionMode):
    """Counts the tensor calls that make the host wait for the device."""

    READS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "is_nonzero",
             "cpu", "numpy", "nonzero", "any", "all"}

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in self.READS:
            self.calls[func.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("extra", [
    dict(augment=True, l2=1e-3), dict(batchnorm=True, trace="updates", optimizer="adam", lr=1e-3),
    dict(trace="activations"),
    dict(prune="gradual", prune_start=1, prune_end=2, density=0.3, epochs=3),
])
def test_the_step_loop_reads_nothing_back_from_the_device(extra):
    """On a GPU a read (``.item()``, ``bool(t)``, ``.cpu()``) inside the step loop makes the host
    wait for every queued kernel: the reads of a training must not grow with its steps (the old
    loop's divergence check read the device at every step)."""
    def reads(steps):
        cfgs = [RunConfig(**{**dict(epochs=1, width=32, depth=2, seed=s, flow_points=2,
                                    train_subset=128 * steps), **extra}) for s in (0, 1, 2)]
        with _HostReads() as counter:
            train.train(cfgs)
        return counter.calls

    few, many = reads(3), reads(12)
    assert sum(few.values()) > 0  # the counter sees the per-epoch reads
    assert many == few


def test_run_keeps_masked_weights_zero(monkeypatch):
    built = []

    def spy(config, ds):
        model, masks = real(config, ds)
        built.append((model, masks))
        return model, masks

    real = train.build_model
    monkeypatch.setattr(train, "build_model", spy)
    cfg = RunConfig(**{**TINY, "depth": 2}, density=0.3, optimizer="adam", lr=1e-2, l2=1e-3,
                    augment=True)
    r = train.run(cfg)
    assert not r.diverged
    (model, masks), = built
    weights = maskable_weights(model)
    assert list(masks) == list(weights)
    for n, w in weights.items():
        assert int(masks[n].sum()) == round(0.3 * w.numel())
        assert (w[~masks[n]] == 0).all(), n
        assert (w[masks[n]] != 0).all(), n
    # sparse: EGF counts only the active entries, the baseline all of them
    for f in r.flow.values():
        assert f["egf_l1"] < f["gf_l1"] / 3


def test_a_finite_blow_up_counts_as_diverged():
    """Before, only non-finite losses counted: this run ends at a training loss in the hundreds
    (its first batch: about ln 10) at chance accuracy and stayed in the statistics."""
    r = train.run(RunConfig(**TINY, activation="elu", optimizer="sgd", lr=3.0))
    assert all(math.isfinite(h["train_loss"]) for h in r.history)
    assert r.history[-1]["train_loss"] > train.EXPLODE_FACTOR * 2.31
    assert r.diverged and r.diverged_reason == "exploded" and r.diverged_epoch == 4
    assert all(math.isnan(v) for v in r.flow_mean.values())
    calm = train.run(RunConfig(**TINY, activation="elu", optimizer="sgd", lr=0.1))
    assert not calm.diverged and calm.diverged_reason is None


def test_run_is_a_group_of_one():
    cfg = RunConfig(**TINY, density=0.5)
    assert _numbers(train.run(cfg)) == _numbers(train.train([cfg])[0])


def test_cosine_schedule_hook():
    """The learning-rate hook: the rate each epoch starts with is lr * (1 + cos(pi (e-1)/E)) / 2,
    and a constant schedule leaves the optimizer's rate alone."""
    cfg = RunConfig(**TINY, lr_schedule="cosine", optimizer="sgd", lr=0.1)
    cosine = LR_SCHEDULES["cosine"](cfg)
    assert [cosine.factor(e) for e in (1, 3, 5)] == pytest.approx([1.0, 0.5, 0.0])
    seen = []

    class Watch(Hook):
        def after_step(self, loop, before, epoch):
            seen.append((epoch, loop.opt.param_groups[0]["lr"]))
    train.train([cfg], observer=Watch())
    rates = dict(seen)
    assert rates == pytest.approx({1: 0.1, 2: 0.1 * (1 + math.cos(math.pi / 4)) / 2, 3: 0.05,
                                   4: 0.1 * (1 + math.cos(3 * math.pi / 4)) / 2})
    constant = train.run(RunConfig(**TINY))
    assert constant.history != train.run(RunConfig(**TINY, lr_schedule="cosine")).history


def test_checkpoint_resumes_a_killed_group_exactly(tmp_path):
    """A group killed after epoch 2 (here: an observer raising in epoch 3) resumes from its
    per-epoch checkpoint and ends with the numbers of an uninterrupted group."""
    cfgs = [RunConfig(**TINY, seed=s, density=0.5, batchnorm=True, augment=True) for s in (0, 1)]
    whole = train.train(cfgs)
    ckpt = tmp_path / "group.pt"

    class Kill(Hook):
        def after_step(self, loop, before, epoch):
            if epoch == 3:
                raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train.train(cfgs, checkpoint=ckpt, checkpoint_every_s=0, observer=Kill())
    assert ckpt.is_file()
    resumed = train.train(cfgs, checkpoint=ckpt, checkpoint_every_s=0)
    assert not ckpt.exists()
    for a, b in zip(whole, resumed):
        assert _numbers(a) == _numbers(b)


def test_two_trainings_sharing_a_checkpoint_both_finish(tmp_path, monkeypatch):
    """Two groups checkpointing into one file at once (two sweeps on one store, a group re-run
    by Dask beside the first try): here the second trains whole while the first is between
    writing its checkpoint and renaming it into place. Before (a fixed ``<name>.tmp``), the
    second's rename took the first's file away and the first crashed with FileNotFoundError;
    each write now has a temporary name of its own (:func:`gflib.atomic.replacing`)."""
    cfgs = [RunConfig(**TINY, seed=s) for s in (0, 1)]
    whole = train.train(cfgs)
    ckpt = tmp_path / "group.pt"
    real, inner = torch.save, []

    def save_then_let_another_train(obj, f, *args, **kwargs):
        real(obj, f, *args, **kwargs)
        if not inner:
            inner.append(None)
            inner[0] = train.train(cfgs, checkpoint=ckpt, checkpoint_every_s=0)

    monkeypatch.setattr(torch, "save", save_then_let_another_train)
    outer = train.train(cfgs, checkpoint=ckpt, checkpoint_every_s=0)
    assert inner and not ckpt.exists() and list(tmp_path.iterdir()) == []
    for a, b, c in zip(whole, inner[0], outer):
        assert _numbers(a) == _numbers(b) == _numbers(c)


@pytest.mark.parametrize("fields", [dict(batch_size=1), dict(train_subset=257),
                                    dict(train_subset=1), dict(batch_size=2, train_subset=9)])
def test_batchnorm_with_a_batch_of_one_is_refused_before_training(fields):
    """Before: accepted, then BatchNorm raised 'Expected more than 1 value per channel' inside
    the first epoch (train_subset 257 at batch size 128: the epoch's last batch is 1 example)."""
    with pytest.raises(ValueError, match="batchnorm needs at least 2 examples .* a batch of 1"):
        RunConfig(**{**TINY, **fields}, batchnorm=True)
    RunConfig(**{**TINY, **fields})  # without BatchNorm a batch of one trains
    RunConfig(**{**TINY, "train_subset": 258}, batchnorm=True)


def test_seeds_past_what_torch_takes_are_refused_and_the_largest_trains():
    """Before: seed 2**64 (or 2**64 - 1, whose data order is drawn under seed + 2) was accepted
    and failed in torch's manual_seed: 'Overflow when unpacking long long'."""
    from gflib.config import MAX_SEED

    assert MAX_SEED == 2**64 - 3
    for seed in (2**64, 2**64 - 1, MAX_SEED + 1):
        with pytest.raises(ValueError, match=f"seed must be an integer >= 0 and <= {MAX_SEED}"):
            RunConfig(seed=seed)
    r = train.run(RunConfig(**{**TINY, "epochs": 1}, seed=MAX_SEED, density=0.5))
    assert not r.diverged


def test_a_model_that_cannot_take_the_data_is_refused_before_training(tmp_path):
    """Before: Wide ResNet-50 (3 input channels) on 1-channel digits passed every check and
    failed in its first forward pass, in the sweep."""
    from gflib import sweep

    with pytest.raises(ValueError, match=r"'wrn50' cannot take the inputs of dataset 'digits', "
                                         r"shape \(1, 8, 8\) \(C, H, W\): .*channel"):
        train.check_buildable(RunConfig(model="wrn50", **{**TINY, "depth": 2, "width": 64}))
    with pytest.raises(ValueError, match="cannot take"):
        sweep.run([RunConfig(**TINY), RunConfig(model="wrn50", **{**TINY, "depth": 2, "width": 64})], tmp_path,
                  progress=False)
    assert list(tmp_path.iterdir()) == []
    train.check_buildable(RunConfig(model="cnn", batchnorm=True, skip=True, **{**TINY, "depth": 2}))


def test_lower_precision_numpy_floats_mean_what_they_print():
    """Before: ``lr=np.float32(0.1)`` became 0.10000000149011612, another value than the 0.1
    a researcher typed and another store key."""
    from gflib.config import config_key

    for lr in (np.float32(0.1), np.float16(0.1), np.float64(0.1), 0.1):
        a = RunConfig(lr=lr, density=np.float32(0.3))
        assert a == RunConfig(lr=0.1, density=0.3) and type(a.lr) is float
        assert config_key(a) == config_key(RunConfig(lr=0.1, density=0.3))
    assert RunConfig(lr=np.float32(1 / 3)).lr == 0.33333334  # what np.float32(1/3) prints
    assert RunConfig(lr=np.float64(1 / 3)).lr == 1 / 3  # double precision: exactly


@pytest.mark.parametrize("fields, field", [
    (dict(depth=1, skip=True), "skip"), (dict(model="cnn", depth=4), "depth"),
    (dict(model="wrn50", width=100), "width"), (dict(model="wrn50", batchnorm=True), "batchnorm"),
])
def test_fields_a_model_does_not_read_are_refused(fields, field):
    """Before: ``skip`` of a depth-1 MLP and ``depth`` of the CNN changed nothing but the store
    key: the same network trained and stored twice under two keys."""
    with pytest.raises(ValueError, match=f"{field}=.* changes nothing for model "
                                         f"'{fields.get('model', 'mlp')}'"):
        RunConfig(**fields)
    RunConfig(depth=2, skip=True)
    RunConfig(model="cnn", skip=True, batchnorm=True)


def test_an_scsdc_member_as_wide_as_its_partner_is_refused():
    """Before: ``match_width == width`` kept every weight and was stored as a sparse run."""
    with pytest.raises(ValueError, match="match_width 16 equals width 16"):
        RunConfig(width=16, match_width=16)
    with pytest.raises(ValueError, match="match_width 16 equals width 16"):
        RunConfig(width=16, match_width=16, prune="oneshot")
    assert RunConfig(width=16, match_width=15).kind == "sparse"

def test_a_checkpoint_the_disk_has_no_room_for_costs_the_group_nothing(tmp_path, monkeypatch):
    """Before: a full disk made the checkpoint write raise inside training, and the group's
    work was lost. Now the group trains on without checkpoints, to the same numbers."""
    import errno

    cfgs = [RunConfig(**TINY, seed=s) for s in (0, 1)]
    whole = train.train(cfgs)
    writes = []

    def full(obj, f, *args, **kwargs):
        writes.append(f.name)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    ckpt = tmp_path / "group.pt"
    with pytest.warns(UserWarning, match=f"checkpoint {ckpt} not written .*No space left on "
                                         "device.*trains on without checkpoints"):
        done = train.train(cfgs, checkpoint=ckpt, checkpoint_every_s=0)
    assert len(writes) == 1  # after the first epoch; no second try
    assert list(tmp_path.iterdir()) == []
    for a, b in zip(whole, done):
        assert _numbers(a) == _numbers(b)


def test_float32_mode_sets_both_cuda_switches_and_restores_them():
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [f.allow_tf32 for f in flags]
    with train.float32_mode(True):
        assert [f.allow_tf32 for f in flags] == [True, True]
    with train.float32_mode(False):
        assert [f.allow_tf32 for f in flags] == [False, False]  # cuDNN's default is TF32
    assert [f.allow_tf32 for f in flags] == before
    seen = []

    class Watch(Hook):
        def start(self, loop):
            seen.append([f.allow_tf32 for f in flags])

    train.train([RunConfig(**TINY, tf32=True)], observer=Watch())
    assert seen == [[True, True]] and [f.allow_tf32 for f in flags] == before


def test_tf32_is_part_of_what_a_run_is():
    """A TF32 run is stored apart from its fp32 twin: it may compute other numbers on a GPU."""
    from gflib.config import config_key
    base = RunConfig(**TINY)
    assert config_key(base.replace(tf32=True)) != config_key(base)
    assert config_key(base.replace(tf32=False)) == config_key(base)
    with pytest.raises(ValueError, match="tf32"):
        RunConfig(**TINY, tf32=1)
