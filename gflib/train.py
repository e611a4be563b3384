"""The one training loop: :func:`train` trains a group of runs of one kind (K >= 1) and returns
what each recorded; :func:`run` is a group of one.

A group is one :class:`gflib.ensemble.Ensemble`: K MLPs that differ only in seed and masks train
stacked (:class:`gflib.stacked.StackedMLP`); any other model trains alone (K = 1). Every run keeps
what makes it itself: its initial weights and masks (:func:`build_model`, under its seed), its
data order and augmentation draws (its own ``torch.Generator(seed + 2)``), its flow measured on
its own slice of the probe gradients, its divergence (a run that fails is recorded and left out of
the loss; the others train on).

The loop trains and evaluates; everything else is a hook it calls (:mod:`gflib.hooks`), in this
order: the learning-rate schedule (``lr_schedule``, :data:`gflib.hooks.LR_SCHEDULES`), the mask
updates (``prune``, :data:`gflib.pruning.PRUNING`), the flow measurements
(:class:`FlowSchedule`) and the observer (``trace``, :data:`gflib.trace.OBSERVERS`, or one passed
in), which only watches and whose ``result(r)`` is kept as run r's ``trace``. The config chooses
each, so the results store keys it.

CHOICEs (the paper is silent): see :mod:`gflib.config`; flow is measured on a fixed probe batch of
the first 1000 training examples of a seed-0 permutation (un-augmented), at
:func:`gflib.flow.schedule`; divergence: a non-finite training objective (the run stops there), or
a last-epoch training loss above :data:`EXPLODE_FACTOR` times the run's first-batch loss.

The step loop reads nothing back from the device, so a GPU never waits for the host: the data
sit on the device, each epoch's batch order and augmentation draws are made once and copied
there in one go (:func:`gflib.data.epoch_order`, :func:`gflib.data.augment_draws`), and each
step's losses and correct counts go into device buffers (:class:`_StepRecord`) that the host
reads once per epoch. A run whose objective turns non-finite is found there: it is marked
diverged at that epoch, its history entry has its training metrics up to the failing step and
the test metrics of its last weights evaluated before (the previous epoch's end, or before
training), and it is left out from then on. Until the epoch ends it trains on with the others:
each run's slice of a stacked model gets only its own gradient, so its NaNs reach no other run.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data as gdata
from . import models, optimizers
from .atomic import replacing
from .config import RunConfig, RunResult, config_key
from .ensemble import Ensemble, Single, evaluate, per_run_loss
from .flow import MEASURES, measure_runs, schedule
from .hooks import LR_SCHEDULES, Hook
from .masks import counts_for, dead_units, random_masks, sparsity_aware_init_, zero_masked
from .pruning import PRUNING, MagnitudePruning
from .scsdc import matched_member
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
def _dataset_cpu(name, spec, data_dir, train_subset, test_subset) -> gdata.Dataset:
    ds = gdata.load(name, data_dir=data_dir)
    return ds.subset(train_subset, test_subset, seed=0)


def dataset_for(config: RunConfig) -> gdata.Dataset:
    """The (cached, CPU) dataset a config trains on: its subsets are fixed (seed 0). The cache
    holds the registered spec, so a dataset registered anew under the same name is loaded anew."""
    return _dataset_cpu(config.dataset, gdata.check(config.dataset), config.data_dir,
                        config.train_subset, config.test_subset)


def build_model(config: RunConfig, ds: gdata.Dataset):
    """``(model, masks)`` for ``config`` on ``ds``, drawn under ``config.seed`` (masks ``{}``
    when dense or pruned later); masked weights are zeroed, the masks are not attached (the
    ensemble attaches them)."""
    def build(c):
        return lambda: models.build(c, ds.shape, ds.n_classes)

    if config.match_width is not None and config.prune == "none":
        return matched_member(build(config), build(config.dense_partner()), config.seed,
                              config.init, attach=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build(config)()
    masks = {}
    if config.density < 1.0 and config.prune == "none":
        masks = random_masks(model, config.density, config.seed + 1)
        zero_masked(model, masks)
        if config.init == "sparsity_aware":
            sparsity_aware_init_(model, masks)
    return model, masks


ARCHITECTURE = ("model", "depth", "width", "activation", "batchnorm", "skip")
"""The config fields a network's layers follow (with the data's shape and classes): what
:func:`check_buildable` runs a model once for."""
_TAKES_INPUTS: set = set()


def check_buildable(config: RunConfig) -> None:
    """Raise ValueError now if ``config``'s data cannot be loaded, its model cannot be built on
    it or cannot take its inputs (Wide ResNet-50's three channels on 1-channel digits), or its
    density leaves a layer no weight: the model is built on the meta device, where nothing is
    computed, and run on a batch of two once per :data:`ARCHITECTURE` and dataset."""
    ds = dataset_for(config)
    arch = (config.dataset, ds.shape, ds.n_classes, *(getattr(config, f) for f in ARCHITECTURE))
    if arch in _TAKES_INPUTS and config.density == 1.0:
        return
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = models.build(config, ds.shape, ds.n_classes)
        if arch not in _TAKES_INPUTS:
            try:
                model(torch.empty(2, *ds.shape))
            except RuntimeError as exc:
                raise ValueError(f"model {config.model!r} cannot take the inputs of dataset "
                                 f"{config.dataset!r}, shape {tuple(ds.shape)} (C, H, W): {exc}"
                                 ) from None
            _TAKES_INPUTS.add(arch)
    if config.density < 1.0:
        counts_for(model, config.density)


def check_device(device: str) -> None:
    """Raise ValueError unless this process can train on ``device`` (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ``"mps"``): the device type is available here and, for CUDA, the index is
    below the number of GPUs torch sees."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: torch sees no CUDA GPU on this machine "
                             f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
                             "use device='cpu', or run where a GPU is")
        if (dev.index or 0) >= count:
            raise ValueError(f"device {device!r}: torch sees {count} CUDA GPU(s) here "
                             f"(cuda:0..cuda:{count - 1})")
        return
    if dev.type == "mps" and torch.backends.mps.is_available():
        return
    raise ValueError(f"device {device!r} cannot train here; available: cpu"
                     + (", cuda" if torch.cuda.is_available() else "")
                     + (", mps" if torch.backends.mps.is_available() else ""))


def build_ensemble(configs: list, ds: gdata.Dataset, device) -> Ensemble:
    """The group's ensemble on ``device``: :class:`gflib.ensemble.Single` for one config,
    :class:`gflib.stacked.StackedMLP` for several."""
    built = [build_model(c, ds) for c in configs]
    if len(built) == 1:
        model, masks = built[0]
        return Single(model.to(device), masks)
    return StackedMLP([m.to(device) for m, _ in built], [mk for _, mk in built])


def probe_batch(ds: gdata.Dataset, size: int = PROBE_SIZE):
    """The fixed probe batch ``(x, y)``: the first ``size`` training examples of a seed-0
    permutation (the whole training set if smaller)."""
    idx = torch.randperm(len(ds.y_train), generator=torch.Generator().manual_seed(0))[:size]
    idx = idx.to(ds.y_train.device)
    return ds.x_train[idx], ds.y_train[idx]


class Records:
    """What the loop records for each run of a group (plain Python, so a checkpoint pickles):
    per run its ``histories`` (one dict per epoch), ``flows`` (``{epoch: {measure: value}}``),
    ``diverged`` (the epoch, or None), ``reasons`` and ``first_loss`` (its first batch's loss);
    ``epoch``: the last epoch done."""

    def __init__(self, k):
        self.histories = [[] for _ in range(k)]
        self.flows = [{} for _ in range(k)]
        self.diverged = [None] * k
        self.reasons = [None] * k
        self.first_loss = [None] * k
        self.epoch = 0


@dataclass
class Loop:
    """What the hooks see (:mod:`gflib.hooks`): the group's ``configs``, its ensemble ``ens``,
    optimizer ``opt``, dataset ``ds`` (on the device), probe batch ``probe`` ``(x, y)`` and
    ``records`` (:class:`Records`)."""

    configs: list
    ens: Ensemble
    opt: torch.optim.Optimizer
    ds: gdata.Dataset
    probe: tuple
    records: Records


class FlowSchedule(Hook):
    """Measures every run's flow (:func:`gflib.flow.measure_runs`) on the probe batch before
    training and after each scheduled epoch (:func:`gflib.flow.schedule`), for the runs that
    have not diverged."""

    def __init__(self, config: RunConfig):
        self.points = set(schedule(config.epochs, config.flow_points))

    def _measure(self, loop: Loop, epoch: int) -> None:
        if epoch in self.points:
            values = measure_runs(loop.ens, *loop.probe)
            for r, value in enumerate(values):
                if loop.records.diverged[r] is None:
                    loop.records.flows[r][epoch] = value

    def start(self, loop: Loop) -> None:
        self._measure(loop, 0)

    def after_epoch(self, loop: Loop, epoch: int) -> None:
        self._measure(loop, epoch)


def hooks_for(configs: list, measure_flow: bool = True, observer: Hook | None = None) -> list:
    """The group's hooks, in the order the loop calls them: its learning-rate schedule, its
    pruning (if any), its flow schedule (``measure_flow``) and ``observer`` (if any)."""
    cfg = configs[0]
    pruning = PRUNING[cfg.prune]
    hooks = [LR_SCHEDULES[cfg.lr_schedule](cfg)]
    if pruning is not None:
        hooks.append(pruning(configs))
    if measure_flow:
        hooks.append(FlowSchedule(cfg))
    return hooks + ([observer] if observer is not None else [])


def train(configs, progress: bool = False, measure_flow: bool = True,
          checkpoint: str | os.PathLike | None = None, checkpoint_every_s: float = 60.0,
          observer: Hook | None = None) -> list:
    """Train a group of runs (see :func:`gflib.stacked.check_group`) and return one
    :class:`gflib.config.RunResult` per config, in order; never raises on divergence.

    ``measure_flow=False`` skips the flow schedule (timing comparisons). ``checkpoint``: a file
    where the group's whole state is saved (atomically) at the end of an epoch when at least
    ``checkpoint_every_s`` seconds have passed since the last save; a group started again with
    the same file resumes from it, losing at most the epochs since, and the file is removed when
    the group finishes. ``observer``: a hook (:mod:`gflib.hooks`) that watches and whose
    ``result(r)`` becomes run r's ``trace`` (default: the configs' ``trace``). ``wall_s`` of each
    result is the group's wall time divided by the number of runs.
    """
    configs = check_group(configs)
    check_device(configs[0].device)
    with float32_mode(configs[0].tf32):
        return _train(configs, progress, measure_flow, checkpoint, checkpoint_every_s, observer)


@contextlib.contextmanager
def float32_mode(tf32: bool):
    """CUDA float32 matmuls and cuDNN convolutions in TF32 when ``tf32``, else in full fp32, while
    the block runs (the previous settings come back after). torch's own defaults differ between
    the two (matmuls fp32, convolutions TF32): here one switch sets both. No effect on a CPU."""
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = bool(tf32)
        yield
    finally:
        for f, value in zip(flags, before):
            f.allow_tf32 = value


def _train(configs, progress, measure_flow, checkpoint, checkpoint_every_s, observer) -> list:
    start = time.perf_counter()
    cfg, k = configs[0], len(configs)
    device = torch.device(cfg.device)
    ds = dataset_for(cfg).to(device)
    ens = build_ensemble(configs, ds, device)
    opt = optimizers.make(cfg.optimizer, ens.parameters(), cfg.lr, cfg.weight_decay, cfg.device)
    gens = [torch.Generator().manual_seed(c.seed + 2) for c in configs]
    probe = probe_batch(ds)
    observer = observer if observer is not None else observer_for(configs, probe)
    hooks = hooks_for(configs, measure_flow, observer)
    loop = Loop(configs, ens, opt, ds, probe, Records(k))
    dead = torch.zeros(k, dtype=torch.bool, device=device)
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.is_file():
        loop.records = _restore(ckpt, loop, gens, dead, hooks)
    g = loop.records
    last_save, saving = time.perf_counter(), ckpt is not None
    if g.epoch == 0:
        for hook in hooks:
            hook.start(loop)
    epochs = range(g.epoch + 1, cfg.epochs + 1)
    if progress:
        epochs = tqdm(epochs, desc=f"epochs x{k}", leave=False)
    n = len(ds.y_train)
    sizes = [min(cfg.batch_size, n - i) for i in range(0, n, cfg.batch_size)]
    weights = torch.tensor(sizes, dtype=torch.float64, device=device)[:, None]
    last_test = evaluate(ens, ds.x_test, ds.y_test)
    ens.train()
    for epoch in epochs:
        for hook in hooks:
            hook.before_epoch(loop, epoch)
        order = gdata.epoch_order(n, gens, device)
        draws = [gdata.augment_draws(cfg.dataset, sizes, gen, device) for gen in gens] \
            if cfg.augment else None
        steps = _StepRecord(len(sizes), k, device, separate_objective=bool(cfg.l2))
        at = 0
        for step, b in enumerate(sizes):
            idx = order[:, at:at + b].reshape(-1)
            x = ds.x_train.index_select(0, idx).view(k, b, *ds.shape)
            y = ds.y_train.index_select(0, idx).view(k, b)
            if draws is not None:
                x = torch.stack([gdata.augment(x[r], cfg.dataset, draws=tuple(
                    None if t is None else t[at:at + b] for t in draws[r])) for r in range(k)])
            at += b
            logits = ens(x)
            losses = per_run_loss(logits, y)
            objective = losses + cfg.l2 * ens.l2() if cfg.l2 else losses
            opt.zero_grad(set_to_none=True)
            objective.sum().backward()
            tokens = [hook.before_step(loop) for hook in hooks]
            opt.step()
            for hook, token in zip(hooks, tokens):
                hook.after_step(loop, token, epoch)
            steps.add(step, losses, objective, logits, y)
        if g.first_loss[0] is None:
            g.first_loss = steps.losses[0].cpu().tolist()
        total, correct, seen, died = steps.totals(weights, dead)
        dead |= died
        last_test = _record_epoch(g, ens, ds, epoch, total, correct, seen, died, dead,
                                  last_test)
        if all(d is not None for d in g.diverged):
            break
        for hook in hooks:
            hook.after_epoch(loop, epoch)
        g.epoch = epoch
        if saving and time.perf_counter() - last_save >= checkpoint_every_s:
            saving = _save(ckpt, loop, gens, dead, hooks)
            last_save = time.perf_counter()
    _mark_exploded(g)
    wall = time.perf_counter() - start
    pruner = next((h for h in hooks if isinstance(h, MagnitudePruning)), None)
    sizes = {n: ens.tensor(n)[0].numel() for n in ens.weight_names}
    results = [_result(c, g, r, wall / k, str(device),
                       (observer.result(r) or {}) if observer is not None else {},
                       final_sparsity(ens, r, pruner.target_count(r, sizes) if pruner else None))
               for r, c in enumerate(configs)]
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return results


class _StepRecord:
    """One epoch's per-step numbers of a group's K runs, kept on the device (the step loop
    reads nothing back): ``losses`` and ``objective`` ``[steps, K]`` (the objective only when it
    is not the loss, i.e. with L2) and ``correct`` ``[steps, K]`` (correct predictions)."""

    def __init__(self, steps: int, k: int, device, separate_objective: bool):
        self.losses = torch.empty(steps, k, device=device)
        self.objective = torch.empty(steps, k, device=device) if separate_objective else None
        self.correct = torch.empty(steps, k, dtype=torch.long, device=device)

    @torch.no_grad()
    def add(self, step: int, losses, objective, logits, y) -> None:
        self.losses[step] = losses
        if self.objective is not None:
            self.objective[step] = objective
        torch.sum(logits.argmax(2) == y, 1, out=self.correct[step])

    @torch.no_grad()
    def totals(self, sizes, dead) -> tuple:
        """``(loss sum, correct, examples, died)``, each ``[K]`` on the device, over each run's
        steps up to its first non-finite objective this epoch (that step excluded; a run dead
        before the epoch counts none): ``sizes`` ``[steps, 1]`` examples per step (float64),
        ``dead`` ``[K]`` the runs dead before; ``died``: the runs that failed this epoch."""
        finite = torch.isfinite(self.losses if self.objective is None else self.objective)
        counted = torch.cumprod(finite, 0).bool() & ~dead
        total = torch.where(counted, self.losses.double() * sizes, 0.0).cumsum(0)[-1]  # in order
        correct = torch.where(counted, self.correct, 0).sum(0)
        seen = (counted * sizes).sum(0).long()
        return total, correct, seen, ~finite.all(0) & ~dead


def _record_epoch(g, ens, ds, epoch, total, correct, seen, died, dead, last_test) -> tuple:
    """Append each run's history entry for ``epoch`` and return the test metrics just measured
    ``(loss [K], accuracy [K])`` (CPU). ``total``, ``correct``, ``seen`` [K] (on the device): each
    run's training loss sum, correct count and examples up to the end of the epoch or, for a
    run that failed in it (``died`` [K] bool: its objective turned non-finite), up to the failing
    step. Such a run is marked diverged here (the loop reads nothing from the device per step)
    and gets the test metrics of its last weights evaluated before it failed, ``last_test``: the
    previous epoch's, or before training for the first."""
    tot, cor, n = total.cpu().tolist(), correct.cpu().tolist(), seen.cpu().tolist()
    died = died.cpu().tolist()
    for r, d in enumerate(died):
        if d and g.diverged[r] is None:
            g.diverged[r], g.reasons[r] = epoch, "non-finite"
    alive = [r for r in range(len(g.histories)) if g.diverged[r] is None]
    test_loss, test_acc = evaluate(ens, ds.x_test, ds.y_test) if alive else last_test
    for r in range(len(g.histories)):
        if died[r]:
            tl, ta = last_test[0][r].item(), last_test[1][r].item()
        elif g.diverged[r] is None:
            tl, ta = test_loss[r].item(), test_acc[r].item()
        else:
            continue
        s = n[r]
        entry = {"epoch": epoch, "train_loss": tot[r] / s if s else float("nan"),
                 "train_acc": cor[r] / s if s else float("nan"), "test_loss": tl, "test_acc": ta}
        g.histories[r].append(entry)
        if g.diverged[r] is None and not math.isfinite(entry["test_loss"]):
            g.diverged[r], g.reasons[r] = epoch, "non-finite"
            dead[r] = True
    return test_loss, test_acc


def _mark_exploded(g):
    for r, history in enumerate(g.histories):
        first = g.first_loss[r] if r < len(g.first_loss) else None
        if g.diverged[r] is None and history and first is not None:
            last = history[-1]["train_loss"]
            if math.isfinite(last) and last > EXPLODE_FACTOR * first:
                g.diverged[r], g.reasons[r] = history[-1]["epoch"], "exploded"


def final_sparsity(ens, r: int, target: int | None = None) -> dict:
    """What run ``r``'s masks leave at the end: ``active`` (active share of all maskable
    weights), ``layers`` (``{weight name: active share}``, in order), ``dead_units`` (hidden
    units cut off, :func:`gflib.masks.dead_units`; None unless the weights form a chain of
    Linear layers) and, for a pruned run (``target``: how many weights its final masks must
    keep), ``target`` (that count as a share of all maskable weights, comparable with
    ``active``)."""
    keep = {n: ens.keep(n)[r] for n in ens.weight_names}
    total = sum(m.numel() for m in keep.values())
    dead = None
    if all(m.ndim == 2 for m in keep.values()) and all(
            a.shape[0] == b.shape[1] for a, b in zip(list(keep.values()), list(keep.values())[1:])):
        dead = sum(dead_units(keep).values())
    out = {"active": sum(int(m.sum()) for m in keep.values()) / total,
           "layers": {n: int(m.sum()) / m.numel() for n, m in keep.items()},
           "dead_units": dead}
    if target is not None:
        out["target"] = target / total
    return out


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
        device=device, diverged_reason=g.reasons[r], trace=trace, sparsity=sparsity,
        off_target="target" in sparsity and sparsity["active"] != sparsity["target"])


CHECKPOINT_FORMAT = 2
"""The layout of a checkpoint file; another layout is no checkpoint (the group starts afresh)."""


def _save(path: Path, loop: Loop, gens, dead, hooks) -> bool:
    """Write the group's checkpoint; False (with a warning, the file as it was) when it cannot
    be written (a full disk): the group trains on without checkpoints."""
    ens = loop.ens
    state = {"format": CHECKPOINT_FORMAT, "keys": [config_key(c) for c in loop.configs],
             "records": vars(loop.records), "hooks": [h.state_dict() for h in hooks],
             "model": ens.state_dict(), "masks": [{n: m.cpu() for n, m in mk.items()}
                                                  for mk in ens.masks],
             "optimizer": loop.opt.state_dict(), "generators": [gen.get_state() for gen in gens],
             "dead": dead.cpu()}
    try:
        with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: OSError on ENOSPC
            torch.save(state, f)
    except OSError as error:
        warnings.warn(f"checkpoint {path} not written ({error}); the group trains on without "
                      "checkpoints", stacklevel=3)
        return False
    return True


def _restore(path: Path, loop: Loop, gens, dead, hooks) -> Records:
    fresh = Records(len(loop.configs))
    try:
        state = torch.load(path, map_location=dead.device, weights_only=False)
    except Exception:  # a checkpoint that does not load is no checkpoint: start afresh
        return fresh
    if (state.get("format") != CHECKPOINT_FORMAT
            or state.get("keys") != [config_key(c) for c in loop.configs]
            or len(state.get("hooks", [])) != len(hooks)):
        return fresh
    loop.ens.set_masks(state["masks"])
    loop.ens.load_state_dict(state["model"])
    loop.opt.load_state_dict(state["optimizer"])
    for gen, s in zip(gens, state["generators"]):
        gen.set_state(s)
    dead.copy_(state["dead"])
    for hook, hook_state in zip(hooks, state["hooks"]):
        hook.load_state_dict(hook_state)
    vars(fresh).update(state["records"])
    return fresh


def run(config: RunConfig, progress: bool = False, measure_flow: bool = True) -> RunResult:
    """Train one run: ``train([config])[0]``."""
    return train([config], progress=progress, measure_flow=measure_flow)[0]
