"""The K > 1 kernel for MLPs: K runs of one architecture as one module with a run axis.

Runs that differ only in :data:`PER_RUN_FIELDS` (which change only the initial weights and the
masks) share their architecture and optimizer settings, so K of them train as one
:class:`StackedMLP` through the one training loop (:func:`gflib.train.train`). Its module tree is
the MLP's own (:class:`gflib.models.MLP`: its ``forward``, blocks and skips run unchanged), with
each leaf that holds tensors replaced by its run-axis version: Linear by :class:`RunLinear`
(batched products), BatchNorm1d by :class:`RunBatchNorm1d` (each (run, feature) column with its
own batch statistics, affine parameters and running statistics), any other module with
parameters (PReLU, SReLU, an activation added to the registry) by :class:`RunVmap`
(``torch.func.vmap`` over the single module), ``Flatten`` by a flatten that keeps the run axis.

The loss is the sum over runs of each run's mean cross-entropy, so each run's slice of the
gradient is its own gradient, and torch.optim's element-wise optimizers update each run as its
own optimizer would: the same numbers as one by one, up to float summation order (a batched
product may add in another order); ``tests/test_stacked.py`` states the tolerance.

BatchNorm with Adam-like optimizers: an input that is constant over the training set (digits has
4 such pixels) gives the first layer's weights on it a true gradient of 0, as for a bias before
BatchNorm (see :mod:`gflib.models`), and Adam turns the float noise in it into steps of size lr:
stacked and one-by-one runs then agree in train mode but differ slightly in eval-mode metrics
(~1e-3 in test loss), as any two exact implementations would.

CHOICE (measured with ``python -m gflib.bench``, see :data:`CPU_MAX_WIDTH`): on a CPU, stacking
pays only while the per-run products are small; :func:`stack_key` sends wider runs one by one.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from . import models
from .config import RunConfig
from .ensemble import Ensemble
from .models import MLP, maskable_weights

PER_RUN_FIELDS = ("seed", "density", "match_width", "init")
"""Config fields that may differ between runs of one stack: they only change init and masks."""

CPU_MAX_WIDTH = 256
"""Widest hidden layer :func:`stack_key` stacks on a CPU. CHOICE from ``gflib.bench``'s
``stacked_speedup_by_width`` (16 digits runs of 2 epochs, stacked vs one by one): on 2 quiet
cores stacking wins 5.0x at width 32, 3.7x at 64, 2.4x at 128, 1.5x at 256, 1.2x at 512 and
loses at 1024 (0.91x). At large widths the products already keep the cores busy. On a GPU every
width stacks (``gflib.bench --device cuda`` on an H100: 3.9x at width 1024, 14x for 128 runs at
width 308)."""


def stack_key(config: RunConfig, cpu_max_width: int | None = CPU_MAX_WIDTH):
    """A hashable key such that configs with equal keys can train in one stack, or None when
    ``config`` should run alone (not an MLP; or on a CPU with ``width > cpu_max_width``; pass
    ``cpu_max_width=None`` to stack every width)."""
    if not models.check(config.model).stacks:
        return None
    if (cpu_max_width is not None and torch.device(config.device).type == "cpu"
            and config.width > cpu_max_width):
        return None
    d = config.to_dict()
    for f in PER_RUN_FIELDS:
        d.pop(f)
    return tuple(sorted((k, v) for k, v in d.items()))


def check_group(configs) -> list:
    """``configs`` as a list after checking they can train as one group: one config of any
    model, or MLP configs that differ only in :data:`PER_RUN_FIELDS`."""
    configs = list(configs)
    if not configs:
        raise ValueError("no configs to train")
    for c in configs:
        if not isinstance(c, RunConfig):
            raise ValueError(f"expected RunConfig, got {type(c).__name__}")
    if len(configs) == 1:
        return configs
    keys = [stack_key(c, cpu_max_width=None) for c in configs]
    if None in keys:
        bad = sorted({c.model for c, k in zip(configs, keys) if k is None})
        stacking = [n for n, m in models.MODELS.items() if m.stacks]
        raise ValueError(f"only models {', '.join(stacking)} stack; got {bad}")
    if len(set(keys)) > 1:
        fields = [f for f in configs[0].to_dict() if f not in PER_RUN_FIELDS
                  and len({getattr(c, f) for c in configs}) > 1]
        raise ValueError(f"configs differ in {fields}; only {', '.join(PER_RUN_FIELDS)} may "
                         "differ within a stack")
    return configs


def groups(configs, max_size: int, cpu_max_width: int | None = CPU_MAX_WIDTH) -> list:
    """``configs`` split into lists that can each train as one stack: equal :func:`stack_key`,
    at most ``max_size`` each, in first-seen order; a config whose key is None is alone."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_size must be an integer >= 1, got {max_size!r}")
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


def _stack(tensors) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors]).contiguous()


class RunLinear(nn.Module):
    """K Linear layers: weight stored transposed, ``[K, in, out]`` (its gradient then comes out
    of ``bmm`` in the stored layout; a transposed one costs a strided copy each step), bias
    ``[K, out]``. Input ``[K, B, in]``, output ``[K, B, out]``."""

    def __init__(self, layers: list):
        super().__init__()
        self.weight = nn.Parameter(_stack(l.weight for l in layers).transpose(1, 2).contiguous())
        self.bias = None if layers[0].bias is None else nn.Parameter(_stack(l.bias for l in layers))

    def forward(self, h):
        if self.bias is None:
            return torch.bmm(h, self.weight)
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight)


class RunBatchNorm1d(nn.Module):
    """K BatchNorm1d layers over ``[K, B, F]``: every (run, feature) column is normalised with its
    own batch statistics, affine parameters ``[K, F]`` and running statistics ``[K, F]``."""

    def __init__(self, norms: list):
        super().__init__()
        ref = norms[0]
        if ref.momentum is None or not ref.affine or not ref.track_running_stats:
            raise ValueError("RunBatchNorm1d stacks affine BatchNorm1d with running statistics "
                             "and a momentum")
        self.momentum, self.eps = ref.momentum, ref.eps
        self.weight = nn.Parameter(_stack(n.weight for n in norms))
        self.bias = nn.Parameter(_stack(n.bias for n in norms))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, _stack(getattr(n, name) for n in norms))

    def forward(self, z):
        k, b, f = z.shape
        flat = z.transpose(0, 1).reshape(b, k * f)
        out = F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1),
                           self.weight.reshape(-1), self.bias.reshape(-1), self.training,
                           self.momentum, self.eps)
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
        return out.view(b, k, f).transpose(0, 1)


class RunVmap(nn.Module):
    """K copies of any module with its own tensors (an activation such as PReLU or SReLU), each
    tensor stacked on a run axis and applied with ``torch.func.vmap``: input ``[K, B, ...]``."""

    def __init__(self, modules: list):
        super().__init__()
        self._template = [copy.deepcopy(modules[0])]
        self._names = []
        for name, _ in modules[0].named_parameters():
            self._check(name)
            self.register_parameter(name, nn.Parameter(_stack(m.get_parameter(name)
                                                              for m in modules)))
            self._names.append(name)
        for name, _ in modules[0].named_buffers():
            self._check(name)
            self.register_buffer(name, _stack(m.get_buffer(name) for m in modules))
            self._names.append(name)

    @staticmethod
    def _check(name):
        if "." in name:
            raise ValueError(f"RunVmap stacks modules with tensors of their own only, not {name}")

    def forward(self, x):
        tensors = {n: getattr(self, n) for n in self._names}
        template = self._template[0]
        return vmap(lambda t, xk: functional_call(template, t, (xk,)))(tensors, x)


def _run_axis_version(leaves: list) -> nn.Module | None:
    """The run-axis replacement of a leaf module (given its K copies), or None to keep it."""
    ref = leaves[0]
    if isinstance(ref, nn.Linear):
        return RunLinear(leaves)
    if isinstance(ref, nn.BatchNorm1d):
        return RunBatchNorm1d(leaves)
    if isinstance(ref, nn.Flatten):
        end = ref.end_dim if ref.end_dim < 0 else ref.end_dim + 1
        return nn.Flatten(ref.start_dim + 1, end)
    if any(True for _ in ref.parameters(recurse=False)) or any(True for _ in ref.buffers(False)):
        return RunVmap(leaves)
    return None


class StackedMLP(Ensemble):
    """K MLPs (:class:`gflib.models.MLP`) of one architecture as one ensemble; ``masks``: per run
    ``{weight name: bool mask}`` (``{}`` when dense). Input ``[K, B, ...]``, logits
    ``[K, B, out]``. Tensors are the single model's names with a run axis (Linear weights stored
    ``[K, in, out]``; :meth:`tensor` shows ``[K, out, in]``)."""

    def __init__(self, models: list, masks: list | None = None):
        super().__init__()
        if not models:
            raise ValueError("StackedMLP needs at least one model")
        if not all(isinstance(m, MLP) for m in models):
            raise ValueError(f"StackedMLP stacks gflib.models.MLP, not "
                             f"{sorted({type(m).__name__ for m in models})}")
        self.k = len(models)
        self._template = [copy.deepcopy(models[0])]
        self.weight_names = list(maskable_weights(models[0]))
        net = copy.deepcopy(models[0])
        for name, module in list(net.named_modules()):
            if name and not any(True for _ in module.children()):
                replacement = _run_axis_version([m.get_submodule(name) for m in models])
                if replacement is not None:
                    parent, _, attr = name.rpartition(".")
                    setattr(net.get_submodule(parent) if parent else net, attr, replacement)
        self.net = net
        self.masks = [{} for _ in models]
        self.set_masks([dict(m or {}) for m in (masks or [{}] * self.k)])

    def forward(self, x):
        return self.net(x)

    def as_runs(self, name, t):
        return t.transpose(1, 2) if name in self.weight_names else t

    def from_runs(self, name, t):
        return self.as_runs(name, t)

    def run_model(self, r: int) -> MLP:
        model = copy.deepcopy(self._template[0])
        model.load_state_dict({n: self.tensor(n)[r].detach().clone()
                               for n in model.state_dict()})
        return model.to(next(self.parameters()).device)
