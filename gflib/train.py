"""The one training loop: :func:`train` trains a group of runs of one kind (K >= 1) and returns
what each recorded; :func:`run` is a group of one.

A group is one :class:`gflib.ensemble.Ensemble`: K MLPs that differ only in seed and masks train
stacked (:class:`gflib.stacked.StackedMLP`); any other model trains alone (K = 1). Every run keeps
what makes it itself: its initial weights and masks (:func:`build_model`, under its seed), its
data order and augmentation draws (its own ``torch.Generator(seed + 2)``), its flow measured on
its own slice of the probe gradients, its divergence (a run that fails is recorded and left out of
the loss; the others train on).

The loop's hooks, both chosen by the config so that the results store keys them:
- learning-rate schedule (``lr_schedule``): the factor of the base rate at each epoch
  (:func:`lr_factor`), applied before the epoch's first step;
- mask updates (``prune``): :func:`gflib.pruning.masks_at` gives, before an epoch, each run's new
  masks (magnitude pruning, one-shot or gradual) or None; the loop applies them and zeroes the
  optimizer state of the newly masked weights, so masked weights stay exactly zero.
A third, the observer, only watches (it must not change the run): chosen by the config's
``trace`` (:mod:`gflib.trace`) or passed in; it sees every optimizer step, and what its
``result(r)`` returns is kept as run r's ``trace``.

CHOICEs (the paper is silent): see :mod:`gflib.config`; flow is measured on a fixed probe batch of
the first 1000 training examples of a seed-0 permutation (un-augmented), at
:func:`gflib.flow.schedule`; divergence: a non-finite training objective (the run stops there), or
a last-epoch training loss above :data:`EXPLODE_FACTOR` times the run's first-batch loss.
"""
from __future__ import annotations

import functools
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from . import data as gdata
from .config import OPTIMIZERS, RunConfig, RunResult
from .ensemble import Single, evaluate, per_run_loss
from .flow import MEASURES, measure_runs, schedule
from .masks import (counts_for, dead_units, random_masks, sparsity_aware_init_,
                    zero_masked_state)
from .pruning import dense_partner
from .scsdc import matched_member, sparse_member
from .stacked import StackedMLP, check_group
from .trace import observer_for

PROBE_SIZE = 1000
EXPLODE_FACTOR = 10.0
"""A run whose last-epoch training loss exceeds this many times its first batch's has diverged
(e.g. loss 1e24 at chance accuracy), even though every loss was finite."""


def _one_thread_after_fork():
    torch.set_num_threads(1)


# A forked child (a ProcessPoolExecutor's workers on Linux before Python 3.14) inherits the
# parent's OpenMP thread pool without its threads and hangs in its first parallel torch op once
# the parent has run one: give forked children one thread each, as torch's DataLoader workers do.
os.register_at_fork(after_in_child=_one_thread_after_fork)


@functools.lru_cache(maxsize=4)
def _dataset_cpu(name, data_dir, train_subset, test_subset) -> gdata.Dataset:
    ds = gdata.load(name, data_dir=data_dir)
    return ds.subset(train_subset, test_subset, seed=0)


def dataset_for(config: RunConfig) -> gdata.Dataset:
    """The (cached, CPU) dataset a config trains on: its subsets are fixed (seed 0)."""
    return _dataset_cpu(config.dataset, config.data_dir, config.train_subset, config.test_subset)


def build_model(config: RunConfig, ds: gdata.Dataset):
    """``(model, masks)`` for ``config`` on ``ds``, drawn under ``config.seed`` (masks ``{}``
    when dense or pruned later); masks are not attached (the ensemble attaches them)."""
    from .config import MODELS

    if config.match_width is not None and config.prune == "none" and config.model != "mlp":
        model, masks = matched_member(lambda: MODELS[config.model](config, ds),
                                      lambda: MODELS[config.model](dense_partner(config), ds),
                                      config.seed, config.init)
        for handle in getattr(model, "_gflib_mask_hooks", []):
            handle.remove()
        return model, masks
    if config.match_width is not None and config.prune == "none":
        model, masks = sparse_member(ds.in_features, ds.n_classes, config.depth, config.width,
                                     config.match_width, config.seed, init=config.init,
                                     activation=config.activation, batchnorm=config.batchnorm,
                                     skip=config.skip)
        for handle in getattr(model, "_gflib_mask_hooks", []):
            handle.remove()
        return model, masks
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = MODELS[config.model](config, ds)
    masks = {}
    if config.density < 1.0 and config.prune == "none":
        masks = random_masks(model, config.density, config.seed + 1)
        with torch.no_grad():
            for name, w in model.named_parameters():
                if name in masks:
                    w.masked_fill_(~masks[name], 0.0)
        if config.init == "sparsity_aware":
            sparsity_aware_init_(model, masks)
    return model, masks


def check_buildable(config: RunConfig) -> None:
    """Raise ValueError now if ``config``'s model cannot be built on its data (e.g. a density
    that leaves a layer no weight), by building it on the meta device: nothing is computed."""
    ds = dataset_for(config)
    if config.density < 1.0:
        from .config import MODELS
        with torch.device("meta"):
            model = MODELS[config.model](config, ds)
        counts_for(model, config.density)


def build_ensemble(configs: list, ds: gdata.Dataset, device):
    """The group's ensemble on ``device``: :class:`gflib.ensemble.Single` for one config,
    :class:`gflib.stacked.StackedMLP` for several."""
    built = [build_model(c, ds) for c in configs]
    if len(built) == 1:
        model, masks = built[0]
        return Single(model.to(device), masks)
    return StackedMLP([m.to(device) for m, _ in built], [mk for _, mk in built])


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0,
                   device="cpu") -> torch.optim.Optimizer:
    """The optimizer ``name`` (:data:`gflib.config.OPTIMIZERS`) over ``params``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr, weight_decay, device)


def lr_factor(config: RunConfig, epoch: int) -> float:
    """The learning-rate factor for ``epoch`` (1-based): 1 for ``"constant"``; for
    ``"cosine"``, ``(1 + cos(pi (epoch - 1) / epochs)) / 2``."""
    if config.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / config.epochs))
    return 1.0


def probe_batch(ds: gdata.Dataset, size: int = PROBE_SIZE):
    """The fixed probe batch ``(x, y)``: the first ``size`` training examples of a seed-0
    permutation (the whole training set if smaller)."""
    idx = torch.randperm(len(ds.y_train), generator=torch.Generator().manual_seed(0))[:size]
    idx = idx.to(ds.y_train.device)
    return ds.x_train[idx], ds.y_train[idx]


class _Group:
    """What the loop records for each run of a group (plain Python, so a checkpoint pickles)."""

    def __init__(self, k):
        self.histories = [[] for _ in range(k)]
        self.flows = [{} for _ in range(k)]
        self.diverged = [None] * k
        self.reasons = [None] * k
        self.first_loss = [None] * k
        self.epoch = 0


def train(configs, progress: bool = False, measure_flow: bool = True,
          checkpoint: str | os.PathLike | None = None, checkpoint_every_s: float = 60.0,
          observer=None) -> list:
    """Train a group of runs (see :func:`gflib.stacked.check_group`) and return one
    :class:`gflib.config.RunResult` per config, in order; never raises on divergence.

    ``measure_flow=False`` skips the flow schedule (timing comparisons). ``checkpoint``: a file
    where the group's whole state is saved (atomically) at the end of an epoch when at least
    ``checkpoint_every_s`` seconds have passed since the last save; a group started again with
    the same file resumes from it, losing at most the epochs since, and the file is removed when
    the group finishes (an observer without ``state_dict``/``load_state_dict`` turns
    checkpoints off). ``observer``: see the module doc (default: the configs' ``trace``). ``wall_s`` of each result is the
    group's wall time divided by the number of runs.
    """
    configs = check_group(configs)
    start = time.perf_counter()
    cfg, k = configs[0], len(configs)
    device = torch.device(cfg.device)
    ds = dataset_for(cfg).to(device)
    ens = build_ensemble(configs, ds, device)
    opt = make_optimizer(cfg.optimizer, ens.parameters(), cfg.lr, cfg.weight_decay, cfg.device)
    gens = [torch.Generator().manual_seed(c.seed + 2) for c in configs]
    probe = probe_batch(ds)
    if observer is None:
        observer = observer_for(configs, probe)
    points = set(schedule(cfg.epochs, cfg.flow_points)) if measure_flow else set()
    g = _Group(k)
    dead = torch.zeros(k, dtype=torch.bool, device=device)
    ckpt = Path(checkpoint) if checkpoint else None
    if observer is not None and not hasattr(observer, "state_dict"):
        ckpt = None
    if ckpt is not None and ckpt.is_file():
        g = _restore(ckpt, configs, ens, opt, gens, dead, observer)
    last_save = time.perf_counter()

    def record_flow(epoch):
        if epoch in points:
            values = measure_runs(ens, *probe)
            for r in range(k):
                if g.diverged[r] is None:
                    g.flows[r][epoch] = values[r]

    if g.epoch == 0:
        record_flow(0)
    epochs = range(g.epoch + 1, cfg.epochs + 1)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc=f"epochs x{k}", leave=False)
    n = len(ds.y_train)
    ens.train()
    for epoch in epochs:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, epoch)
        if cfg.prune != "none":
            from .pruning import masks_at
            new = masks_at(configs, ens, epoch, ds)
            if new is not None:
                ens.set_masks(new)
                for name in ens.weight_names:
                    param = ens.get_parameter(ens.param_name(name))
                    zero_masked_state(opt, param, ens.from_runs(name, ens.keep(name)))
        total = torch.zeros(k, dtype=torch.float64, device=device)
        correct = torch.zeros(k, dtype=torch.long, device=device)
        seen = 0
        died_now = {}
        per_run = [gdata.batches(n, cfg.batch_size, gen, device) for gen in gens]
        for step in range(len(per_run[0])):
            idx = torch.cat([b[step] for b in per_run])
            b = len(idx) // k
            x = ds.x_train.index_select(0, idx).view(k, b, *ds.shape)
            y = ds.y_train.index_select(0, idx).view(k, b)
            if cfg.augment:
                x = torch.stack([gdata.augment(x[r], cfg.dataset, gens[r]) for r in range(k)])
            logits = ens(x)
            losses = per_run_loss(logits, y)
            objective = losses + cfg.l2 * ens.l2() if cfg.l2 else losses
            finite = torch.isfinite(objective)
            if not bool((finite | dead).all()):
                test_loss, test_acc = evaluate(ens, ds.x_test, ds.y_test)
                for r in torch.nonzero(~finite & ~dead).flatten().tolist():
                    g.diverged[r], g.reasons[r] = epoch, "non-finite"
                    died_now[r] = (total[r].item(), correct[r].item(), seen,
                                   test_loss[r].item(), test_acc[r].item())
                    dead[r] = True
                if bool(dead.all()):
                    break
            if g.first_loss[0] is None:
                g.first_loss = losses.detach().cpu().tolist()
            opt.zero_grad(set_to_none=True)
            if bool(dead.any()):
                torch.where(dead, torch.zeros_like(objective), objective).sum().backward()
                for p in ens.parameters():
                    if p.grad is not None:
                        p.grad[dead] = 0.0
            else:
                objective.sum().backward()
            before = observer.before_step(ens) if observer is not None else None
            opt.step()
            if observer is not None:
                observer.after_step(ens, opt, before, epoch)
            with torch.no_grad():
                total += losses.detach().double() * b
                correct += (logits.argmax(2) == y).sum(1)
            seen += b
        _record_epoch(g, ens, ds, epoch, total, correct, seen, died_now, dead)
        if all(d is not None for d in g.diverged):
            break
        record_flow(epoch)
        g.epoch = epoch
        if ckpt is not None and time.perf_counter() - last_save >= checkpoint_every_s:
            _save(ckpt, configs, g, ens, opt, gens, dead, observer)
            last_save = time.perf_counter()
    _mark_exploded(g)
    wall = time.perf_counter() - start
    results = [_result(c, g, r, wall / k, str(device),
                       observer.result(r) if observer is not None else {}, final_sparsity(ens, r))
               for r, c in enumerate(configs)]
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return results


def _record_epoch(g, ens, ds, epoch, total, correct, seen, died_now, dead):
    """Append each run's history entry for ``epoch``. A run that failed this epoch gets its
    training metrics up to the failing step and the test metrics of its weights before it
    (``died_now[r] = (loss sum, correct, seen, test loss, test accuracy)``)."""
    alive = [r for r in range(len(g.histories)) if g.diverged[r] is None]
    if alive:
        test_loss, test_acc = evaluate(ens, ds.x_test, ds.y_test)
    tot, cor = total.cpu().tolist(), correct.cpu().tolist()
    for r in range(len(g.histories)):
        if r in died_now:
            t, c, s, tl, ta = died_now[r]
        elif g.diverged[r] is None:
            t, c, s, tl, ta = tot[r], cor[r], seen, test_loss[r].item(), test_acc[r].item()
        else:
            continue
        entry = {"epoch": epoch, "train_loss": t / s if s else float("nan"),
                 "train_acc": c / s if s else float("nan"), "test_loss": tl, "test_acc": ta}
        g.histories[r].append(entry)
        if g.diverged[r] is None and not math.isfinite(entry["test_loss"]):
            g.diverged[r], g.reasons[r] = epoch, "non-finite"
            dead[r] = True


def _mark_exploded(g):
    for r, history in enumerate(g.histories):
        first = g.first_loss[r] if r < len(g.first_loss) else None
        if g.diverged[r] is None and history and first is not None:
            last = history[-1]["train_loss"]
            if math.isfinite(last) and last > EXPLODE_FACTOR * first:
                g.diverged[r], g.reasons[r] = history[-1]["epoch"], "exploded"


def final_sparsity(ens, r: int) -> dict:
    """What run ``r``'s masks leave at the end: ``active`` (active share of all maskable
    weights), ``layers`` (``{weight name: active share}``, in order) and ``dead_units`` (hidden
    units cut off, :func:`gflib.masks.dead_units`; None unless the weights form a chain of
    Linear layers)."""
    keep = {n: ens.keep(n)[r] for n in ens.weight_names}
    total = sum(m.numel() for m in keep.values())
    dead = None
    if all(m.ndim == 2 for m in keep.values()) and all(
            a.shape[0] == b.shape[1] for a, b in zip(list(keep.values()), list(keep.values())[1:])):
        dead = sum(dead_units(keep).values())
    return {"active": sum(int(m.sum()) for m in keep.values()) / total,
            "layers": {n: int(m.sum()) / m.numel() for n, m in keep.items()},
            "dead_units": dead}


def _result(config, g, r, wall_s, device, trace, sparsity) -> RunResult:
    flow = g.flows[r]
    if g.diverged[r] is not None or not flow:
        flow_mean = {m: float("nan") for m in MEASURES}
    else:
        flow_mean = {m: float(np.mean([f[m] for f in flow.values()])) for m in MEASURES}
    last = g.histories[r][-1]
    return RunResult(
        config=config.to_dict(), history=g.histories[r], flow=flow, flow_mean=flow_mean,
        final={key: last[key] for key in ("test_loss", "test_acc", "train_loss", "train_acc")},
        diverged=g.diverged[r] is not None, diverged_epoch=g.diverged[r], wall_s=wall_s,
        device=device, diverged_reason=g.reasons[r], trace=trace, sparsity=sparsity)


def _save(path: Path, configs, g, ens, opt, gens, dead, observer):
    from .store import config_key
    state = {"keys": [config_key(c) for c in configs], "group": vars(g),
             "observer": observer.state_dict() if observer is not None else None,
             "model": ens.state_dict(), "masks": [{n: m.cpu() for n, m in mk.items()}
                                                  for mk in ens.masks],
             "optimizer": opt.state_dict(), "generators": [gen.get_state() for gen in gens],
             "dead": dead.cpu()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _restore(path: Path, configs, ens, opt, gens, dead, observer) -> _Group:
    from .store import config_key
    try:
        state = torch.load(path, map_location=dead.device, weights_only=False)
    except Exception:  # a checkpoint that does not load is no checkpoint: start afresh
        return _Group(len(configs))
    if state.get("keys") != [config_key(c) for c in configs]:
        return _Group(len(configs))
    ens.set_masks(state["masks"])
    ens.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    for gen, s in zip(gens, state["generators"]):
        gen.set_state(s)
    dead.copy_(state["dead"])
    if observer is not None:
        observer.load_state_dict(state["observer"])
    g = _Group(len(configs))
    vars(g).update(state["group"])
    return g


def run(config: RunConfig, progress: bool = False, measure_flow: bool = True) -> RunResult:
    """Train one run: ``train([config])[0]``."""
    return train([config], progress=progress, measure_flow=measure_flow)[0]
