"""Many MLP runs trained at once as one model with a leading run axis.

Runs that differ only in ``seed``, ``density``, ``match_width`` and ``init`` (which change only the
initial weights and the masks) share their architecture and optimizer settings, so K of them can
train as one "stacked" MLP: every weight carries a leading run axis (products with ``torch.bmm``
/ ``torch.baddbmm``), every bias and per-unit parameter ``[K, features]``, BatchNorm normalises each
(run, feature) column with its own batch statistics, affine parameters and running statistics,
and PReLU/SReLU keep per-run parameters. The loss is the sum over runs of each run's own mean
cross-entropy (+ its L2 term), so each run's slice of the gradient is exactly its own gradient;
torch.optim's optimizers are element-wise, so one optimizer over the stacked parameters updates
every run as its own optimizer would.

Each run keeps everything that makes it itself: its initial weights and masks come from
:func:`gflib.train.build_model` (so they are the one-by-one run's), its data order and
augmentation draws from its own ``torch.Generator().manual_seed(seed + 2)`` (so its batches are the
one-by-one run's), its mask zeroes its slice of the stacked gradient through a gradient hook (as
:func:`gflib.masks.apply_masks` does), and its flow is measured on its own slice of the probe
gradients (without touching ``.grad``, BatchNorm running statistics or any RNG).

Equivalence: the same numbers as :func:`gflib.train.run` up to float summation order (a batched
product may add in another order than a single one); ``tests/test_stacked.py`` states the
tolerance. Divergence: a run whose objective becomes non-finite is recorded exactly as
:func:`gflib.train.run` records it (its epoch's metrics so far, the test metrics of its weights
before the failing step, no flow from that epoch on); from then on it is left out of the loss and
its gradient slice is set to zero, so it cannot disturb the others (every operation is per run,
so its NaNs never reach another run's slice either). Its slice is still computed (cheaply) but
its weights after divergence mean nothing and are not reported.

BatchNorm with Adam-like optimizers: as DESIGN.md says of a bias before BatchNorm, an input that
is constant over the training set (digits has 4 such pixels) gives the first layer's weights on it
a true gradient of 0, and Adam turns the float noise in it into steps of size lr: stacked and
one-by-one runs then agree in train mode but differ slightly in eval-mode metrics (~1e-3 in test
loss, one test image in accuracy), as any two exact implementations would.

CHOICE (measured with ``python -m gflib.bench``, see :data:`CPU_MAX_WIDTH`): on a CPU, stacking
pays only while the per-run products are small; :func:`stack_key` sends wider runs one by one.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data as gdata
from .flow import MEASURES, norms, schedule
from .models import MLP, SReLU, maskable_weights
from .train import RunConfig, RunResult, build_model, dataset_for, evaluate, make_optimizer, \
    probe_batch

PER_RUN_FIELDS = ("seed", "density", "match_width", "init")
"""Config fields that may differ between runs of one stack: they only change init and masks."""

CPU_MAX_WIDTH = 256
"""Widest hidden layer :func:`stack_key` stacks on a CPU. CHOICE from ``gflib.bench``'s
``stacked_speedup_by_width`` (16 digits runs of 2 epochs, stacked vs one by one): on 2 quiet
cores (a Xeon, 2 threads) stacking wins 5.5x at width 32, 4.7x at 64, 3.4x at 128, 2.1x at 256,
1.17x at 512 and loses at 1024 (0.68x); on one thread of a busy 2-core machine 4.0x, 2.8x, 1.9x,
1.3x, 0.94x, 0.86x. At large widths the products already keep the cores busy, and every stacked
weight-sized temporary (> 32 MB, glibc's largest heap block) is a fresh mmap whose pages fault in
each step. On a GPU every width stacks (DESIGN.md: 13-15 TFLOP/s stacked against 0.1-10 one by
one; ``gflib.bench --device cuda`` on an H100: 3.9x at width 1024, 14x for 128 runs at 308)."""


def stack_key(config: RunConfig, cpu_max_width: int | None = CPU_MAX_WIDTH):
    """A hashable key such that configs with equal keys can train in one stack, or None when
    ``config`` should run alone (not an MLP; or on a CPU with ``width > cpu_max_width``; pass
    ``cpu_max_width=None`` to stack every width)."""
    if config.model != "mlp":
        return None
    if (cpu_max_width is not None and torch.device(config.device).type == "cpu"
            and config.width > cpu_max_width):
        return None
    d = config.to_dict()
    for f in PER_RUN_FIELDS:
        d.pop(f)
    return tuple(sorted((k, v) for k, v in d.items()))


def _mangle(name: str) -> str:
    return "p_" + name.replace(".", "__")


class StackedMLP(nn.Module):
    """K MLPs of one architecture (:class:`gflib.models.MLP`) as one module with a run axis.

    Every state-dict entry ``name`` of the K models is stacked on a new leading axis (biases and
    BatchNorm/SReLU vectors ``[K, features]``, PReLU ``[K, 1]``); Linear weights are stored
    transposed, ``[K, in, out]``, so that their gradients come out of ``bmm`` in the parameter's
    own layout (a transposed one costs a strided copy per step, as much as the product itself at
    width 1024 on a CPU). :meth:`tensor` and :meth:`state_of` show the usual ``[K, out, in]``.
    Input ``[K, B, ...]`` (flattened to ``[K, B, in_features]``), output logits
    ``[K, B, out_features]``; each run sees only its own slice. ``masks``: per run a
    ``{weight name: bool mask}`` (``{}`` when dense); masked weights are zeroed and their gradient
    slices multiplied by the mask in a hook, so they stay exactly zero under every torch.optim
    optimizer.
    """

    def __init__(self, models: list, masks: list | None = None, activation: str = "relu"):
        super().__init__()
        if not models:
            raise ValueError("StackedMLP needs at least one model")
        ref = models[0]
        if not isinstance(ref, MLP):
            raise ValueError(f"StackedMLP stacks gflib.models.MLP, not {type(ref).__name__}")
        self.k = len(models)
        self.activation = activation
        self.in_features = ref.hidden[0].layer.in_features
        self.out_features = ref.out.out_features
        self.depth = len(ref.hidden)
        self.width = ref.hidden[0].layer.out_features
        self.batchnorm = isinstance(ref.hidden[0].norm, nn.BatchNorm1d)
        self.skips = [bool(b.skip) for b in ref.hidden]
        if self.batchnorm:
            self.bn_momentum = ref.hidden[0].norm.momentum
            self.bn_eps = ref.hidden[0].norm.eps
        self.elu_alpha = getattr(ref.hidden[0].act, "alpha", 1.0)
        param_names = {n for n, _ in ref.named_parameters()}
        self.weight_names = list(maskable_weights(ref))
        states = [m.state_dict() for m in models]
        self._names = {}
        for name in states[0]:
            stacked = torch.stack([s[name].detach() for s in states])
            if name in self.weight_names:
                stacked = stacked.transpose(1, 2)
            stacked = stacked.contiguous()
            key = _mangle(name)
            self._names[key] = name
            if name in param_names:
                self.register_parameter(key, nn.Parameter(stacked))
            else:
                self.register_buffer(key, stacked)
        self._hooks = []
        self.masks = [dict(m or {}) for m in (masks or [{}] * self.k)]
        if len(self.masks) != self.k:
            raise ValueError(f"{len(self.masks)} masks for {self.k} models")
        for name in self.weight_names:
            w = getattr(self, _mangle(name))
            if not any(name in m for m in self.masks):
                continue
            keep = torch.stack([m[name].to(w.device, torch.bool).t() if name in m
                                else torch.ones(w.shape[1:], dtype=torch.bool, device=w.device)
                                for m in self.masks])
            with torch.no_grad():
                w.masked_fill_(~keep, 0.0)
            keep = keep.to(w.dtype)
            self._hooks.append(w.register_hook(lambda g, keep=keep: g * keep))

    def tensor(self, name: str) -> torch.Tensor:
        """The stacked tensor of state-dict entry ``name`` (e.g. ``"out.weight"``): ``[K, ...]``
        in the single model's layout (a Linear weight as a ``[K, out, in]`` view)."""
        t = getattr(self, _mangle(name))
        return t.transpose(1, 2) if name in self.weight_names else t

    def tensors(self) -> dict:
        """``{state-dict name: stacked tensor}`` for every parameter and buffer as stored (Linear
        weights ``[K, in, out]``): what :meth:`forward` takes."""
        out = {self._names[k]: v for k, v in self._parameters.items()}
        out.update({self._names[k]: v for k, v in self._buffers.items()})
        return out

    def forward(self, x: torch.Tensor, tensors: dict | None = None,
                update_stats: bool = True) -> torch.Tensor:
        """Logits ``[K, B, out_features]`` of input ``[K, B, ...]``.

        ``tensors`` overrides the module's own (a functional call, for measuring gradients);
        ``update_stats=False`` makes a train-mode BatchNorm use batch statistics without updating
        its running statistics.
        """
        t = self.tensors() if tensors is None else tensors
        h = x.flatten(2)
        for i in range(self.depth):
            pre = f"hidden.{i}."
            z = _linear(h, t[pre + "layer.weight"], t.get(pre + "layer.bias"))
            if self.batchnorm:
                z = self._batchnorm(z, t, pre + "norm.", update_stats)
            z = self._act(z, t, pre + "act.")
            h = z + h if self.skips[i] else z
        return _linear(h, t["out.weight"], t["out.bias"])

    def _batchnorm(self, z, t, pre, update_stats):
        k, b, f = z.shape
        flat = z.transpose(0, 1).reshape(b, k * f)
        batch_only = self.training and not update_stats
        rm = None if batch_only else t[pre + "running_mean"].view(-1)
        rv = None if batch_only else t[pre + "running_var"].view(-1)
        out = F.batch_norm(flat, rm, rv, t[pre + "weight"].reshape(-1), t[pre + "bias"].reshape(-1),
                           self.training, self.bn_momentum, self.bn_eps)
        if self.training and update_stats:
            with torch.no_grad():
                t[pre + "num_batches_tracked"].add_(1)
        return out.view(b, k, f).transpose(0, 1)

    def _act(self, z, t, pre):
        a = self.activation
        if a == "relu":
            return F.relu(z)
        if a == "prelu":
            w = t[pre + "weight"].view(self.k, 1, -1)
            return torch.where(z > 0, z, w * z)
        if a == "elu":
            return F.elu(z, self.elu_alpha)
        if a == "swish":
            return F.silu(z)
        if a == "sigmoid":
            return torch.sigmoid(z)
        if a == "srelu":
            tl, al = t[pre + "t_left"].unsqueeze(1), t[pre + "a_left"].unsqueeze(1)
            tr, ar = t[pre + "t_right"].unsqueeze(1), t[pre + "a_right"].unsqueeze(1)
            return torch.where(z >= tr, tr + ar * (z - tr),
                               torch.where(z <= tl, tl + al * (z - tl), z))
        raise ValueError(f"StackedMLP has no activation {a!r}")

    def l2(self) -> torch.Tensor:
        """Per-run ``sum ||W||^2`` over the Linear weight tensors: ``[K]``."""
        return sum(getattr(self, _mangle(n)).pow(2).sum(dim=(1, 2)) for n in self.weight_names)

    def state_of(self, k: int) -> dict:
        """Run ``k``'s state dict (views into the stacked tensors, detached)."""
        return {name: self.tensor(name)[k].detach() for name in self.tensors()}

    def unstack(self, k: int) -> MLP:
        """Run ``k`` as a plain :class:`gflib.models.MLP` (a copy of its weights and BatchNorm
        statistics; masks not applied). Leaves the global RNG untouched."""
        with torch.random.fork_rng(devices=[]):
            model = MLP(self.in_features, self.out_features, self.depth, self.width,
                        activation=self.activation, batchnorm=self.batchnorm,
                        skip=any(self.skips))
        model.load_state_dict({n: v.clone() for n, v in self.state_of(k).items()})
        device = next(iter(self.parameters())).device
        model.train(self.training)
        return model.to(device)

    def weight_gradients(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """``{weight name: dC_k/dW_k stacked [K, out, in]}``: each run's gradient of its mean
        cross-entropy on the same batch ``x [B, ...]``, ``y [B]`` with respect to its (effective)
        weights, BatchNorm on batch statistics (as :func:`gflib.flow.gradients` does). Leaves
        ``.grad``, running statistics, train/eval mode and RNG states untouched."""
        t = {n: v.detach() for n, v in self.tensors().items()}
        leaves = {n: t[n].clone().requires_grad_(True) for n in self.weight_names}
        t.update(leaves)
        was = self.training
        try:
            self.train()
            with torch.enable_grad():
                xs = x.unsqueeze(0).expand(self.k, *x.shape)
                logits = self.forward(xs, t, update_stats=False)
                loss = _per_run_ce(logits, y.unsqueeze(0).expand(self.k, -1)).sum()
                grads = torch.autograd.grad(loss, list(leaves.values()))
        finally:
            self.train(was)
        return {n: g.transpose(1, 2) for n, g in zip(leaves, grads)}

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> tuple:
        """Per-run ``(mean cross-entropy [K], accuracy [K])`` in eval mode on one shared set
        ``x [N, ...]``, ``y [N]`` (float64 tensors on the CPU)."""
        was = self.training
        self.eval()
        loss = torch.zeros(self.k, dtype=torch.float64, device=y.device)
        correct = torch.zeros(self.k, dtype=torch.long, device=y.device)
        try:
            for i in range(0, len(y), batch_size):
                xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                logits = self.forward(xb.unsqueeze(0).expand(self.k, *xb.shape))
                yk = yb.unsqueeze(0).expand(self.k, -1)
                ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yk.reshape(-1),
                                     reduction="none").view(self.k, -1)
                loss += ce.sum(1).double()
                correct += (logits.argmax(2) == yk).sum(1)
        finally:
            self.train(was)
        return (loss / len(y)).cpu(), (correct.double() / len(y)).cpu()


def _linear(h, w_t, b):
    return torch.bmm(h, w_t) if b is None else torch.baddbmm(b.unsqueeze(1), h, w_t)


def _per_run_ce(logits, y):
    k, b, c = logits.shape
    return F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b),
                           reduction="none").view(k, b).mean(1)


def check_stack(configs) -> list:
    """Validate ``configs`` and check that they can share one stack; returns them as a list."""
    configs = [c.validate() for c in configs]
    if not configs:
        raise ValueError("no configs to stack")
    keys = {stack_key(c, cpu_max_width=None) for c in configs}
    if None in keys:
        bad = [c.model for c in configs if stack_key(c, cpu_max_width=None) is None]
        raise ValueError(f"only model 'mlp' stacks; got {sorted(set(bad))}")
    if len(keys) > 1:
        fields = [f for f in configs[0].to_dict() if f not in PER_RUN_FIELDS
                  and len({getattr(c, f) for c in configs}) > 1]
        raise ValueError(f"configs differ in {fields}; only {', '.join(PER_RUN_FIELDS)} may "
                         "differ within a stack")
    return configs


def train_stacked(configs, progress: bool = False, measure_flow: bool = True) -> tuple:
    """Train ``configs`` (see :func:`check_stack`) together; returns ``(results, model)``:
    one :class:`gflib.train.RunResult` per config, in order, and the trained :class:`StackedMLP`
    (run k's slice holds config k's final weights; a diverged run's slice means nothing).

    Each result is what :func:`gflib.train.run` records for its config (up to float summation
    order), except ``wall_s``: the group's wall time divided by the number of runs.
    """
    configs = check_stack(configs)
    start = time.perf_counter()
    cfg = configs[0]
    k = len(configs)
    device = torch.device(cfg.device)
    ds = dataset_for(cfg).to(device)
    built = [build_model(c, ds) for c in configs]
    model = StackedMLP([m.to(device) for m, _ in built], [mk for _, mk in built], cfg.activation)
    del built
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    gens = [torch.Generator().manual_seed(c.seed + 2) for c in configs]
    probe = probe_batch(ds)
    points = set(schedule(cfg.epochs, cfg.flow_points)) if measure_flow else set()
    flows = [{} for _ in configs]
    histories = [[] for _ in configs]
    diverged = [None] * k
    dead = torch.zeros(k, dtype=torch.bool, device=device)
    any_dead = False
    n = len(ds.y_train)

    def record_flow(epoch):
        if epoch not in points:
            return
        grads = model.weight_gradients(*probe)
        for r in range(k):
            if diverged[r] is None:
                flows[r][epoch] = norms({nm: g[r] for nm, g in grads.items()}, model.masks[r])

    record_flow(0)
    epochs = range(1, cfg.epochs + 1)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc=f"epochs x{k}", leave=False)
    model.train()
    for epoch in epochs:
        total = torch.zeros(k, dtype=torch.float64, device=device)
        correct = torch.zeros(k, dtype=torch.long, device=device)
        seen = 0
        died_now = {}
        per_run = [gdata.batches(n, cfg.batch_size, g, device) for g in gens]
        for step in range(len(per_run[0])):
            idx = torch.cat([b[step] for b in per_run])
            b = len(idx) // k
            x = ds.x_train.index_select(0, idx).view(k, b, *ds.shape)
            y = ds.y_train.index_select(0, idx).view(k, b)
            if cfg.augment:
                x = torch.stack([gdata.augment(x[r], cfg.dataset, gens[r]) for r in range(k)])
            logits = model(x)
            losses = _per_run_ce(logits, y)
            objective = losses + cfg.l2 * model.l2() if cfg.l2 else losses
            finite = torch.isfinite(objective)
            if not bool((finite | dead).all()):
                for r in torch.nonzero(~finite & ~dead).flatten().tolist():
                    diverged[r] = epoch
                    died_now[r] = _diverged_entry(model, r, ds, epoch, total[r].item(),
                                                  correct[r].item(), seen)
                    dead[r] = True
                    any_dead = True
                if all(d is not None for d in diverged):
                    break
            opt.zero_grad(set_to_none=True)
            if any_dead:
                torch.where(dead, torch.zeros_like(objective), objective).sum().backward()
                for p in model.parameters():
                    if p.grad is not None:
                        p.grad[dead] = 0.0
            else:
                objective.sum().backward()
            opt.step()
            with torch.no_grad():
                total += losses.detach().double() * y.shape[1]
                correct += (logits.argmax(2) == y).sum(1)
            seen += y.shape[1]
        alive = [r for r in range(k) if diverged[r] is None]
        if alive:
            test_loss, test_acc = model.evaluate(ds.x_test, ds.y_test)
            tot, cor = total.cpu().tolist(), correct.cpu().tolist()
        for r in range(k):
            if r in died_now:
                histories[r].append(died_now[r])
            elif diverged[r] is None:
                tl = test_loss[r].item()
                histories[r].append({
                    "epoch": epoch,
                    "train_loss": tot[r] / seen if seen else float("nan"),
                    "train_acc": cor[r] / seen if seen else float("nan"),
                    "test_loss": tl, "test_acc": test_acc[r].item(),
                })
                if not math.isfinite(tl):
                    diverged[r] = epoch
                    dead[r] = True
                    any_dead = True
        if all(d is not None for d in diverged):
            break
        record_flow(epoch)
    wall = time.perf_counter() - start
    results = []
    for r, c in enumerate(configs):
        flow = flows[r]
        if diverged[r] is not None or not flow:
            flow_mean = {m: float("nan") for m in MEASURES}
        else:
            flow_mean = {m: float(np.mean([f[m] for f in flow.values()])) for m in MEASURES}
        last = histories[r][-1]
        results.append(RunResult(
            config=c.to_dict(), history=histories[r], flow=flow, flow_mean=flow_mean,
            final={key: last[key] for key in ("test_loss", "test_acc", "train_loss", "train_acc")},
            diverged=diverged[r] is not None, diverged_epoch=diverged[r],
            wall_s=wall / k, device=str(device)))
    return results, model


def _diverged_entry(model, r, ds, epoch, total, correct, seen):
    """Run ``r``'s history entry for the epoch in which its objective became non-finite: its
    training metrics so far and the test metrics of its weights before the failing step."""
    test_loss, test_acc = evaluate(model.unstack(r), ds.x_test, ds.y_test)
    return {"epoch": epoch,
            "train_loss": total / seen if seen else float("nan"),
            "train_acc": correct / seen if seen else float("nan"),
            "test_loss": test_loss, "test_acc": test_acc}


def run_stacked(configs, progress: bool = False, measure_flow: bool = True) -> list:
    """Train ``configs`` (equal :func:`stack_key` up to the width threshold; see
    :func:`check_stack`) as one stack; returns their :class:`gflib.train.RunResult` s in order,
    each as :func:`gflib.train.run` would record it (``wall_s``: a share of the group's time)."""
    return train_stacked(configs, progress=progress, measure_flow=measure_flow)[0]


def groups(configs, max_size: int, cpu_max_width: int | None = CPU_MAX_WIDTH) -> list:
    """``configs`` split into lists that can each train as one stack: equal :func:`stack_key`,
    at most ``max_size`` each, in first-seen order; a config whose key is None is alone."""
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size!r}")
    by_key, out = {}, []
    for c in configs:
        key = stack_key(c, cpu_max_width)
        if key is None or max_size == 1:
            out.append([c])
            continue
        if key not in by_key or len(by_key[key]) >= max_size:
            by_key[key] = []
            out.append(by_key[key])
        by_key[key].append(c)
    return out
