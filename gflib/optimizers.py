"""The optimizers a run can use: one :class:`OptimizerSpec` per name in :data:`OPTIMIZERS`, the
builder and every fact the chapters read about it.

Adding one is one :func:`register` call (or one entry of :data:`OPTIMIZERS`); the tests that
iterate the registry (masked weights stay zero, stacked equals one by one) and the chapters pick
it up. It must be element-wise, as torch.optim's are, so that K stacked runs train as K
optimizers would.

CHOICEs (the paper is silent): momentum 0.9 for ``momentum``; Adam and AdamW use torch's fused
CPU/GPU kernels where the device has them (the same update as the default, up to float
rounding); each one's ``default_lr`` is its usual default, used where a chapter trains an
optimizer at one learning rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def _fused(device) -> dict:
    """``{"fused": True}`` where torch has fused Adam kernels for ``device``, else ``{}``."""
    return {"fused": True} if torch.device(device).type in ("cpu", "cuda") else {}


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer.

    ``build(params, lr, weight_decay, device) -> torch.optim.Optimizer``; ``label``: its name in
    the book; ``ewma``: it keeps an exponentially weighted average of squared gradients (claim 4's
    family); ``decoupled_decay``: it takes ``weight_decay`` (decoupled, as AdamW) where the others
    take ``l2`` in the loss; ``default_lr``; ``second_moment``: the name of its per-weight
    second-moment state (``exp_avg_sq``, ``square_avg``, ``sum``), None when it keeps none."""

    build: Callable
    label: str
    ewma: bool
    decoupled_decay: bool
    default_lr: float
    second_moment: str | None = None


OPTIMIZERS = {
    "adagrad": OptimizerSpec(lambda params, lr, wd, device: torch.optim.Adagrad(params, lr=lr),
                             "Adagrad", ewma=False, decoupled_decay=False, default_lr=0.01,
                             second_moment="sum"),
    "adam": OptimizerSpec(lambda params, lr, wd, device: torch.optim.Adam(params, lr=lr,
                                                                          **_fused(device)),
                          "Adam", ewma=True, decoupled_decay=False, default_lr=0.001,
                          second_moment="exp_avg_sq"),
    "rmsprop": OptimizerSpec(lambda params, lr, wd, device: torch.optim.RMSprop(params, lr=lr),
                             "RMSProp", ewma=True, decoupled_decay=False, default_lr=0.001,
                             second_moment="square_avg"),
    "sgd": OptimizerSpec(lambda params, lr, wd, device: torch.optim.SGD(params, lr=lr),
                         "SGD", ewma=False, decoupled_decay=False, default_lr=0.1),
    "momentum": OptimizerSpec(lambda params, lr, wd, device: torch.optim.SGD(params, lr=lr,
                                                                             momentum=0.9),
                              "momentum", ewma=False, decoupled_decay=False, default_lr=0.01),
    "adamw": OptimizerSpec(lambda params, lr, wd, device: torch.optim.AdamW(
        params, lr=lr, weight_decay=wd, **_fused(device)),
        "AdamW", ewma=True, decoupled_decay=True, default_lr=0.001, second_moment="exp_avg_sq"),
}
"""Name -> :class:`OptimizerSpec`: the study's five and AdamW."""


def register(name: str, spec: OptimizerSpec) -> OptimizerSpec:
    """Add (or replace) optimizer ``name`` in :data:`OPTIMIZERS`; returns ``spec``."""
    if not isinstance(spec, OptimizerSpec):
        raise ValueError(f"optimizer {name!r} needs an OptimizerSpec, got {type(spec).__name__}")
    OPTIMIZERS[name] = spec
    return spec


def check(name) -> OptimizerSpec:
    """The spec of optimizer ``name``, or ValueError naming the allowed ones."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def unregister(name: str) -> OptimizerSpec:
    """Remove optimizer ``name`` from :data:`OPTIMIZERS` and return its spec (what a test
    that registered one does afterwards); ValueError naming the allowed ones when it is absent."""
    check(name)
    return OPTIMIZERS.pop(name)


def make(name: str, params, lr: float, weight_decay: float = 0.0,
         device="cpu") -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params``."""
    return check(name).build(params, lr, weight_decay, device)


def family(name: str) -> str:
    """``"EWMA"`` for an optimizer that keeps an EWMA of squared gradients, else ``"other"``."""
    return "EWMA" if check(name).ewma else "other"


def labels(names) -> str:
    """The optimizers ``names`` as the book writes them, comma-separated."""
    return ", ".join(check(n).label for n in names)
