"""Gradient-flow measures: the baseline norms ``||g||_p`` and Effective Gradient Flow ``EGF_p``.

On a batch ``(x, y)`` with cross-entropy (no regulariser), with ``g_l = dC/dW_l`` the gradient with
respect to the effective (masked) weight of tensor ``l`` and ``m_l`` its mask:

- ``gf_p  = || concat_l g_l ||_p``: every entry counts, masked ones too (the baseline's fault);
- ``egf_p = (1/L) sum_l || g_l * m_l ||_p`` over the L measured tensors (the talk's formula);
  ``per_weight=True`` divides each layer's norm by its active count first (the announcement's
  "normalized by the number of active weights").

Measuring changes nothing: it differentiates a functional copy of the model (``torch.func``), so
``.grad``, BatchNorm running statistics, train/eval mode and RNG states are untouched.
CHOICE: BatchNorm normalises with the batch's statistics (train-mode forward) while measuring.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .masks import masks_of
from .models import maskable_weights

MEASURES = ("gf_l1", "gf_l2", "egf_l1", "egf_l2")
SCOPES = ("weights", "all")


def gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scope: str = "weights") -> dict:
    """``{name: dC/dW}`` for the measured tensors, cross-entropy averaged over the batch.

    ``scope="weights"``: weight tensors of Linear/Conv layers; ``"all"``: every trainable
    parameter. The model's state is left exactly as it was.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
    names = (list(maskable_weights(model)) if scope == "weights"
             else [n for n, p in model.named_parameters() if p.requires_grad])
    params = {n: p.detach() for n, p in model.named_parameters()}
    leaves = {n: params[n].clone().requires_grad_(True) for n in names}
    params.update(leaves)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    modes = {m: m.training for m in model.modules()}
    devices = [x.device.index or 0] if x.is_cuda else []
    try:
        model.train()
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            logits = functional_call(model, {**params, **buffers}, (x,))
            loss = F.cross_entropy(logits, y)
            grads = torch.autograd.grad(loss, [leaves[n] for n in names], allow_unused=True)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return {n: (torch.zeros_like(leaves[n]) if g is None else g) for n, g in zip(names, grads)}


def norms(grads: Mapping, masks: Mapping | None = None, per_weight: bool = False) -> dict:
    """The four measures from ``{name: gradient}`` and ``{name: bool mask}`` (missing = dense).

    Returns ``{"gf_l1", "gf_l2", "egf_l1", "egf_l2"}`` as floats.
    """
    masks = masks or {}
    flat = torch.cat([g.detach().flatten().double() for g in grads.values()])
    egf = {1: [], 2: []}
    for name, g in grads.items():
        g = g.detach().double()
        m = masks.get(name)
        active = g.numel() if m is None else int(m.sum())
        if m is not None:
            g = g * m.to(g.device, g.dtype)
        for p in (1, 2):
            value = torch.linalg.vector_norm(g, ord=p).item()
            egf[p].append(value / max(active, 1) if per_weight else value)
    return {
        "gf_l1": torch.linalg.vector_norm(flat, ord=1).item(),
        "gf_l2": torch.linalg.vector_norm(flat, ord=2).item(),
        "egf_l1": float(np.mean(egf[1])),
        "egf_l2": float(np.mean(egf[2])),
    }


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: Mapping | None = None,
            scope: str = "weights", per_weight: bool = False) -> dict:
    """``gf_l1, gf_l2, egf_l1, egf_l2`` of ``model`` on the batch ``(x, y)`` (see module doc).

    ``masks`` defaults to the ones applied with :func:`gflib.masks.apply_masks`.
    """
    if masks is None:
        masks = masks_of(model)
    return norms(gradients(model, x, y, scope), masks, per_weight)


def schedule(epochs: int, points: int = 11) -> list:
    """The epochs at which flow is measured: ``round(linspace(0, epochs, points))``, deduplicated;
    0 is before training, ``epochs`` after the last."""
    return sorted({int(round(e)) for e in np.linspace(0, epochs, points)})


def layer_norms(grads: Mapping, masks: Mapping | None = None):
    """Per-tensor view of the measures: a DataFrame with one row per measured tensor and columns
    ``layer, weights, active, l1_all, l1_active, l2_all, l2_active`` (norms of ``g_l`` over all
    entries and over the active ones)."""
    import pandas as pd

    masks = masks or {}
    rows = []
    for name, g in grads.items():
        g = g.detach().double()
        m = masks.get(name)
        ga = g if m is None else g * m.to(g.device, g.dtype)
        rows.append({"layer": name, "weights": g.numel(),
                     "active": g.numel() if m is None else int(m.sum()),
                     "l1_all": g.abs().sum().item(), "l1_active": ga.abs().sum().item(),
                     "l2_all": g.norm().item(), "l2_active": ga.norm().item()})
    return pd.DataFrame(rows)
