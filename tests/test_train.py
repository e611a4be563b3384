"""gflib.train: config validation, what one run records, determinism on CPU, divergence recorded
rather than raised, masked weights kept zero through a real run."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from gflib import train
from gflib.flow import MEASURES, schedule
from gflib.models import maskable_weights
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
    cfg = RunConfig(**{field: bad})
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert repr(bad) in str(err.value) and field.split("_")[0] in str(err.value)
    with pytest.raises(ValueError):
        train.run(cfg)


def test_validate_combinations():
    assert RunConfig().validate() == RunConfig()
    with pytest.raises(ValueError, match="'adam'"):
        RunConfig(optimizer="adam", weight_decay=0.1).validate()
    RunConfig(optimizer="adamw", weight_decay=0.1).validate()
    with pytest.raises(ValueError, match="either density or match_width"):
        RunConfig(density=0.5, match_width=8).validate()
    with pytest.raises(ValueError, match="sparsity_aware"):
        RunConfig(init="sparsity_aware").validate()
    with pytest.raises(ValueError, match="'sideways'"):
        RunConfig(init="sideways").validate()


def test_make_optimizer_unknown_name():
    with pytest.raises(ValueError, match=r"'lbfgs'.*sgd, momentum, adagrad, adam, rmsprop, adamw"):
        train.make_optimizer("lbfgs", [torch.zeros(1, requires_grad=True)], 0.1)


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
    dict(model="cnn", width=25, epochs=1, flow_points=2, train_subset=64, test_subset=32),
])
def test_same_config_gives_identical_numbers(extra):
    cfg = RunConfig(**{**TINY, **extra})
    a, b = train.run(cfg), train.run(cfg)
    assert _numbers(a) == _numbers(b)  # exact, floats included
    c = train.run(dataclasses.replace(cfg, seed=1))
    assert c.history != a.history and c.flow != a.flow


def test_divergence_is_recorded_not_raised():
    r = train.run(RunConfig(**TINY, optimizer="sgd", lr=1e6))
    assert r.diverged is True
    assert 1 <= r.diverged_epoch < 4 and len(r.history) == r.diverged_epoch
    assert all(math.isnan(v) for v in r.flow_mean.values())
    assert max(r.flow) < r.diverged_epoch  # no flow measured from the diverged epoch on
    assert r.final["test_loss"] == r.history[-1]["test_loss"]  # kept as measured


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
