"""gflib.cost: the cost model's terms are solved exactly from timings that follow the model,
and extrapolated by hand-checkable arithmetic."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from gflib import cost
from gflib.flow import schedule
from gflib.train import RunConfig

TERMS = {"setup_s": 0.7, "flow_s": 0.05, "step_s": 0.002, "eval_s": 0.03}


def model_timer(config: RunConfig) -> float:
    """What the cost model says a run takes, with :data:`TERMS`."""
    batches = math.ceil(config.train_subset / config.batch_size)
    return (TERMS["setup_s"] + len(schedule(config.epochs, config.flow_points)) * TERMS["flow_s"]
            + config.epochs * (batches * TERMS["step_s"] + TERMS["eval_s"]))


def test_shape_ignores_seed_optimizer_lr_epochs_and_partner():
    a = RunConfig(width=100, match_width=30, optimizer="sgd", lr=0.1, seed=0, epochs=5)
    b = RunConfig(width=100, match_width=70, optimizer="adam", lr=1e-3, seed=3, epochs=9)
    assert cost.shape(a) == cost.shape(b)
    assert cost.shape(a) != cost.shape(dataclasses.replace(a, batchnorm=True))
    assert cost.shape(a) != cost.shape(dataclasses.replace(a, match_width=None))
    assert cost.shape(a) != cost.shape(dataclasses.replace(a, width=99, match_width=None))


def test_time_shape_solves_the_terms_and_times_adam():
    seen = []

    def timer(config):
        seen.append(config)
        return model_timer(config)

    terms = cost.time_shape(RunConfig(optimizer="sgd", lr=0.1), a=2, b=8, timer=timer)
    assert terms == pytest.approx(TERMS, rel=1e-9)
    assert {c.optimizer for c in seen} == {"adam"}
    assert {c.train_subset for c in seen} == {256, 1024}


def test_time_shape_shrinks_b_to_the_training_split():
    seen = []
    cost.time_shape(RunConfig(), a=10, b=40, timer=lambda c: seen.append(c) or model_timer(c))
    assert {c.train_subset for c in seen} == {2 * 128, 11 * 128}  # digits: 1437 examples


def test_time_shape_rejects_bad_batches_and_repeats():
    with pytest.raises(ValueError, match="a=4, b=4"):
        cost.time_shape(RunConfig(), a=4, b=4, timer=model_timer)
    with pytest.raises(ValueError, match="repeats"):
        cost.time_shape(RunConfig(), repeats=0, timer=model_timer)


def test_time_shape_takes_the_median_of_repeated_timings():
    noise = iter([0.0] + [5.0, 0.0, 0.0] * 4)  # warm-up, then one wild timing of every three

    terms = cost.time_shape(RunConfig(), a=2, b=8, timer=lambda c: model_timer(c) + next(noise),
                            repeats=3)
    assert terms == pytest.approx(TERMS, rel=1e-9)


def test_run_seconds_by_hand():
    config = RunConfig(epochs=10, flow_points=11, batch_size=128)
    terms = {"setup_s": 1.0, "flow_s": 0.5, "step_s": 0.01, "eval_s": 0.2}
    # 11 flow points; 1000 examples = 8 steps: 1 + 11 * 0.5 + 10 * (8 * 0.01 + 0.2)
    assert cost.run_seconds(config, terms, 1000) == pytest.approx(9.3)


def test_estimate_times_each_shape_once_and_sums_its_runs():
    configs = [RunConfig(width=32, seed=s, epochs=e) for s, e in [(0, 3), (1, 6)]]
    configs.append(RunConfig(width=32, batchnorm=True, epochs=3))
    calls = []
    shapes = cost.estimate(configs, a=2, b=8, timer=lambda c: calls.append(c) or model_timer(c))
    assert len(shapes) == 2 and list(shapes["runs"]) == [2, 1]
    assert len(calls) == 2 * (1 + 4 * 3)
    n = 1437
    expected = sum(cost.run_seconds(c, TERMS, n) for c in configs[:2])
    assert shapes["estimate_s"].iloc[0] == pytest.approx(expected, rel=1e-9)
    assert (shapes["n_train"] == n).all()


def test_command_line_writes_an_estimate(tmp_path, one_torch_thread):
    out = tmp_path / "cost.json"
    figures = cost.main(["sc_sdc_and_egf", "--preset", "smoke", "--batches", "1", "3",
                         "--json", str(out)])
    stored = json.loads(out.read_text())
    chapter = stored["chapters"]["sc_sdc_and_egf"]
    assert chapter["runs"] == 32 and len(chapter["shapes"]) == 6
    assert stored["total_h"] == pytest.approx(figures["total_h"]) and stored["total_h"] > 0


def test_train_flops_counts_an_mlp_by_hand():
    """Depth 1, width 3 on digits (64 inputs, 10 classes), batch 2: forward 2 FLOP per weight and
    example, backward 2 for each weight gradient and 2 for the input gradient of every layer but
    the first (the images need none); 1,437 images are 719 steps of 2."""
    from gflib.config import RunConfig

    c = RunConfig(depth=1, width=3, batch_size=2, epochs=3)
    weights, later = 64 * 3 + 3 * 10, 3 * 10
    per_step = 2 * 2 * weights + 2 * 2 * weights + 2 * 2 * later
    assert cost.train_flops(c) == per_step * 3 * 719
    assert cost.train_flops(c, n_train=4) == per_step * 3 * 2


def test_train_flops_of_a_convolution_by_hand():
    """The CNN's first block on 8x8 digits at width multiplier 0.1 (3 channels): 3 x 9 weights
    applied at 64 positions; the whole net's count only grows with the width."""
    from gflib.config import RunConfig

    small = cost.train_flops(RunConfig(model="cnn", width=10, batch_size=1, epochs=1), 1)
    big = cost.train_flops(RunConfig(model="cnn", width=20, batch_size=1, epochs=1), 1)
    assert small >= 2 * 3 * 9 * 64 * 2 and big > 2 * small


def _two_stackable(**extra):
    """Two digits MLPs that stack (seeds 0, 1) on a GPU: 2 epochs of 2 batches each (256
    images), the test split's 360 images, 2 flow points."""
    return [RunConfig(dataset="digits", depth=1, width=8, epochs=2, train_subset=256,
                      flow_points=2, seed=s, device="cuda", **extra) for s in (0, 1)]


def test_predict_is_the_launch_floor_when_steps_are_tiny():
    runs = _two_stackable()
    figures = {"one_by_one_step_s": (1e-3, 2e-3), "stacked_flop_s": (1e30, 1e30)}
    stacked = cost.predict(runs, figures, stack=2)
    assert stacked["groups"] == 1 and stacked["group_steps"] == 4  # 2 epochs x 2 batches
    assert stacked["low_s"] == pytest.approx(4e-3) and stacked["high_s"] == pytest.approx(8e-3)
    alone = cost.predict(runs, figures)
    assert alone["groups"] == 2 and alone["low_s"] == pytest.approx(8e-3)
    assert cost.predict(runs, figures, workers=2)["low_s"] == pytest.approx(4e-3)


def test_predict_is_the_arithmetic_at_the_stacked_rate_when_steps_are_large():
    from gflib.flops import step_flops
    runs = _two_stackable()
    step = 2 * step_flops(runs[0])  # the group's two runs
    # 4 steps, evaluation: 2 epochs x 360 / 128 batches at a third of a step, 2 flow points of
    # the probe batch (all 256 training images: fewer than its 1000)
    total = step * (4 + 2 * 360 / 128 / 3 + 2 * 256 / 128)
    figures = {"one_by_one_step_s": (0.0, 0.0), "stacked_flop_s": (1e9, 4e9)}
    got = cost.predict(runs, figures, stack=2, workers=3)
    assert got["tflop"] == pytest.approx(total / 1e12)
    assert got["low_s"] == pytest.approx(total / 4e9) and got["high_s"] == pytest.approx(total / 1e9)


def test_predict_command_times_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(cost, "time_shape", lambda *a, **k: pytest.fail("timed a shape"))
    out = cost.main(["sc_sdc_and_egf", "--preset", "smoke", "--stack", "8", "--predict", "h100",
                     "--json", str(tmp_path / "p.json")])
    row = out["chapters"]["sc_sdc_and_egf"]
    assert 0 < row["low_s"] <= row["high_s"] and out["low_s"] == row["low_s"]
    assert json.loads((tmp_path / "p.json").read_text())["figures"] == "h100"
