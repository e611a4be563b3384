"""The mask-update hook: magnitude pruning during training (gflib.pruning through gflib.train)."""
from __future__ import annotations

import pytest
import torch

from gflib import pruning, train
from gflib.config import RunConfig
from gflib.hooks import LR_SCHEDULES, Hook
from gflib.scsdc import layer_densities

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(dataset="digits", depth=2, width=24, epochs=5, flow_points=3, train_subset=400,
            test_subset=200)


class Densities(Hook):
    """An observer recording, after each epoch's last step, every run's weight densities and
    whether every masked weight and its optimizer state are exactly zero."""

    def __init__(self):
        self.seen = {}

    def after_step(self, loop, before, epoch):
        ens, opt = loop.ens, loop.opt
        row = []
        for r in range(ens.k):
            dens, zero = {}, True
            for n in ens.weight_names:
                w = ens.tensor(n)[r]
                dens[n] = float((w != 0).float().mean())
                keep = ens.masks[r].get(n)
                if keep is not None:
                    zero &= bool((w[~keep] == 0).all())
                    param = ens.get_parameter(ens.param_name(n))
                    for state in opt.state[param].values():
                        if torch.is_tensor(state) and state.shape == param.shape:
                            zero &= bool((ens.as_runs(n, state)[r][~keep] == 0).all())
            row.append((dens, zero))
        self.seen[epoch] = row


def test_cubic_schedule_by_hand():
    cfg = RunConfig(**TINY, density=0.2, prune="gradual", prune_start=1, prune_end=3)
    assert [pruning.progress(cfg, e) for e in range(1, 6)] == [None, 0.0, 0.5, 1.0, None]
    assert pruning.density_at(0.2, 0.0) == 1.0 and pruning.density_at(0.2, 1.0) == 0.2
    assert pruning.density_at(0.2, 0.5) == pytest.approx(1 - 0.8 * (1 - 0.125))
    one = RunConfig(**TINY, density=0.2, prune="oneshot", prune_start=2)
    assert [pruning.progress(one, e) for e in range(1, 6)] == [None, None, 1.0, None, None]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_gradual_pruning_follows_the_schedule_and_keeps_pruned_weights_zero(scope):
    cfg = RunConfig(**TINY, density=0.2, prune="gradual", prune_start=1, prune_end=3,
                    prune_scope=scope, optimizer="adam", lr=1e-2)
    watch = Densities()
    result, = train.train([cfg], observer=watch)
    assert not result.diverged
    total = {e: sum(d.values()) / 3 for e, ((d, _),) in watch.seen.items()}
    assert total[1] == pytest.approx(1.0, abs=0.01)  # dense for the first epoch
    if scope == "layer":
        for e, want in ((3, pruning.density_at(0.2, 0.5)), (4, 0.2), (5, 0.2)):
            (dens, zero), = watch.seen[e]
            assert all(d == pytest.approx(want, abs=0.01) for d in dens.values()), (e, dens)
            assert zero
    else:
        sizes = {"hidden.0.layer.weight": 24 * 64, "hidden.1.layer.weight": 24 * 24,
                 "out.weight": 10 * 24}
        for e in (4, 5):
            (dens, zero), = watch.seen[e]
            overall = sum(dens[n] * sizes[n] for n in sizes) / sum(sizes.values())
            assert overall == pytest.approx(0.2, abs=0.005) and zero
            assert len({round(d, 2) for d in dens.values()}) > 1  # layers pruned unequally


def test_oneshot_pruning_to_scsdc_densities_stacked_like_one_by_one(monkeypatch):
    """Prune after 2 dense epochs to the SC-SDC densities of dense width 12; a stack of two
    seeds gives what each gives alone."""
    cfgs = [RunConfig(**TINY, match_width=12, prune="oneshot", prune_start=2, seed=s,
                      optimizer="momentum", lr=0.05) for s in (0, 1)]
    watch = Densities()
    stacked = train.train(cfgs, observer=watch)
    want = layer_densities(64, 10, 2, 24, 12)
    for dens, zero in watch.seen[3]:
        assert list(dens.values()) == pytest.approx(want, abs=0.01) and zero
    for dens, _ in watch.seen[2]:
        assert min(dens.values()) > 0.99
    for c, s in zip(cfgs, stacked):
        alone = train.run(c)
        for a, b in zip(alone.history, s.history):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
            assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-5)
        assert alone.flow_mean == pytest.approx(s.flow_mean, rel=1e-4)


def test_pruning_that_would_end_at_the_last_epoch_is_refused():
    """Before: masks change only before an epoch, so one-shot pruning at prune_start == epochs
    never happened (the run ended dense, stored as sparse) and gradual pruning with prune_end ==
    epochs stopped short (0.5625 for 0.5). The last schedule allowed reaches its target."""
    with pytest.raises(ValueError, match=r"prune='oneshot' must end before the last epoch "
                                         r"\(prune_start < epochs, epochs=5\).*prune_start=5$"):
        RunConfig(**TINY, density=0.5, prune="oneshot", prune_start=5)
    with pytest.raises(ValueError, match=r"\(prune_start <= prune_end < epochs, epochs=5\).*"
                                         r"prune_start=1, prune_end=5$"):
        RunConfig(**TINY, density=0.5, prune="gradual", prune_start=1, prune_end=5)
    sizes = {"hidden.0.layer.weight": 24 * 64, "hidden.1.layer.weight": 24 * 24,
             "out.weight": 10 * 24}
    target = sum(round(0.5 * n) for n in sizes.values()) / sum(sizes.values())
    for last in (RunConfig(**TINY, density=0.5, prune="oneshot", prune_start=4),
                 RunConfig(**TINY, density=0.5, prune="gradual", prune_start=1, prune_end=4)):
        result = train.run(last)
        assert result.sparsity["target"] == target
        assert result.sparsity["active"] == target and not result.off_target


def test_a_pruned_run_that_misses_its_target_is_flagged_and_left_out_of_every_statistic(
        monkeypatch, tmp_path):
    """A schedule that never changes the masks (as pruning at the last epoch did) leaves the
    run dense: its result says so, and no statistic takes it for a sparse net."""
    from gflib import analysis
    from gflib.results import Results

    cfgs = [RunConfig(**TINY, density=0.2, prune="oneshot", prune_start=2, seed=s, lr=0.01)
            for s in (0, 1)]
    on_target = train.run(cfgs[0])
    monkeypatch.setattr(pruning, "progress", lambda config, epoch: None)
    missed = train.run(cfgs[1])
    monkeypatch.undo()
    assert not on_target.off_target and on_target.sparsity["active"] < 0.21
    assert missed.off_target and not missed.diverged
    assert missed.sparsity["active"] == 1.0
    assert missed.sparsity["target"] == on_target.sparsity["target"]
    results = Results.from_results([on_target, missed])
    runs = results.runs
    assert list(runs["off_target"]) == [False, True]
    assert list(analysis.usable(runs)) == [True, False]
    assert list(analysis.flow_usable(runs)) == [True, False]
    assert list(analysis.exclusions(runs)) == ["", "off target"]
    counts = analysis.Counts.of(runs)
    assert counts == analysis.Counts(runs=2, diverged=0, at_chance=0, off_target=1)
    assert "1 pruned off their target density (left out of every statistic)" in counts.text()
    csv, _ = results.save(tmp_path / "s.csv")
    assert list(Results.load(csv).runs["off_target"]) == [False, True]
    runs.drop(columns="off_target").to_csv(csv, index=False)
    assert list(Results.load(csv).runs["off_target"]) == [False, False]
