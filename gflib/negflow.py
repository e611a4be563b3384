"""Negative gradient flow: how much of the gradient passes where the activation slopes down.

Backpropagation through a hidden unit with pre-activation ``z`` and activation ``f`` multiplies
the incoming gradient by the slope: ``dC/dz = f'(z) dC/da``. Where ``f'(z) < 0`` the gradient's
sign flips on its way back: the study's "negative gradient flow". Swish slopes down below
``z = -1.278``; PReLU and SReLU only where a learned slope has turned negative; ReLU, ELU and
Sigmoid never.

For a trained group of runs on the fixed probe batch ``(x [B, ...], y [B])``, with ``C`` each run's
mean cross-entropy there, per activation module ``<path>.act`` (``hidden.<i>.act`` in an MLP, in
forward order) and over all of them together:

- ``neg_share``: the share of pre-activations (examples x units) with ``f'(z) < 0`` (below
  :data:`NEGATIVE_BELOW`), in [0, 1];
- ``neg_grad_share``: the share of the gradient's L1 norm, ``sum |dC/dz|``, at those positions,
  in [0, 1] (NaN when the gradient is 0 everywhere).

Measuring changes nothing: an eval-mode forward (BatchNorm on its running statistics, which it
does not update) with hooks that capture each activation's input and output, and autograd with
respect to those captured tensors only; no parameter's ``.grad`` is touched, and modes are
restored. :class:`NegativeFlowTrace` is the training loop's observer (trace ``"activations"``,
:mod:`gflib.trace`) that does it once, after training.
"""
from __future__ import annotations

import math

import torch

from .ensemble import expand, per_run_loss
from .hooks import Hook

QUANTITIES = ("neg_share", "neg_grad_share")
NEGATIVE_BELOW = -1e-6
"""A slope counts as negative below this. float32 gives a slope that tends to 0 from below far
from the origin (GELU's below about -5) as a tiny negative number or as exactly 0 depending on
the kernel torch picks for the tensor's shape (seen: GELU at z = -6.18, -1.2e-8 for a stack of
runs, 0 for one run alone), so a stacked group would count other units than its runs alone; a
slope above -1e-6 passes no gradient worth counting."""


def activation_modules(ens) -> list:
    """``[(path, module)]`` of every module called ``act`` in ``ens.net`` (forward order);
    ``path`` is its parent's name, e.g. ``"hidden.0"``."""
    return [(name.rpartition(".")[0], m) for name, m in ens.net.named_modules()
            if name.rpartition(".")[2] == "act"]


def negative_flow(ens, x: torch.Tensor, y: torch.Tensor) -> list:
    """One dict per run of the ensemble ``ens`` (K runs) on the shared batch ``x [B, ...]``,
    ``y [B]``: ``neg_share`` and ``neg_grad_share`` over all activation layers, and
    ``"<path>.neg_share"``, ``"<path>.neg_grad_share"`` per layer (see the module doc)."""
    layers = activation_modules(ens)
    captured = {}

    def keep(path):
        def hook(module, inputs, output):
            captured[path] = (inputs[0], output)
        return hook

    handles = [m.register_forward_hook(keep(path)) for path, m in layers]
    modes = {m: m.training for m in ens.modules()}
    try:
        ens.eval()
        with torch.enable_grad():
            xk = expand(x, ens.k).detach().requires_grad_(True)
            loss = per_run_loss(ens(xk), expand(y, ens.k)).sum()
            zs = [captured[path][0] for path, _ in layers]
            dz = torch.autograd.grad(loss, zs, retain_graph=True) if zs else []
            slopes = [torch.autograd.grad(captured[path][1].sum(), z, retain_graph=True)[0]
                      for (path, _), z in zip(layers, zs)]
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    k = ens.k
    totals = torch.zeros(4, k, dtype=torch.float64)  # negative, all, |g| negative, |g| all
    out = [{} for _ in range(k)]
    for (path, _), g, s in zip(layers, dz, slopes):
        neg = (s.detach() < NEGATIVE_BELOW).reshape(k, -1)
        g = g.detach().abs().double().reshape(k, -1)
        size = torch.full((k,), float(neg.shape[1]), dtype=torch.float64, device=g.device)
        layer = torch.stack([neg.sum(1).double(), size, (g * neg).sum(1), g.sum(1)]).cpu()
        totals += layer
        for r in range(k):
            out[r].update(_shares(layer[:, r], prefix=f"{path}."))
    for r in range(k):
        out[r] = {**_shares(totals[:, r]), **out[r]}
    return out


def _shares(counts, prefix: str = "") -> dict:
    neg, n, g_neg, g_all = counts.tolist()
    return {f"{prefix}neg_share": neg / n if n else math.nan,
            f"{prefix}neg_grad_share": g_neg / g_all if g_all > 0 else math.nan}


class NegativeFlowTrace(Hook):
    """The ``"activations"`` trace: keeps the group's ensemble from :meth:`after_step` and, in
    :meth:`result` after training, returns run ``r``'s :func:`negative_flow` on the probe batch
    (computed once for the group). Holds nothing across epochs, so checkpoints stay on. A group
    that never stepped (every run failed at its first batch) gets NaN shares."""

    def __init__(self, configs: list, probe: tuple):
        self.k = len(configs)
        self.probe = probe
        self.ens = None
        self._values = None

    def after_step(self, loop, before, epoch):
        self.ens = loop.ens

    def result(self, r: int) -> dict:
        if self._values is None:
            if self.ens is None:
                self._values = [{q: math.nan for q in QUANTITIES} for _ in range(self.k)]
            else:
                self._values = negative_flow(self.ens, *self.probe)
        return self._values[r]
