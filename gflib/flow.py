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
from torch import nn
from .ensemble import Single, weight_gradients
from .masks import masks_of

MEASURES = ("gf_l1", "gf_l2", "egf_l1", "egf_l2")
SCOPES = ("weights", "all")


def gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scope: str = "weights") -> dict:
    """``{name: dC/dW}`` for the measured tensors, cross-entropy averaged over the batch.

    ``scope="weights"``: weight tensors of Linear/Conv layers; ``"all"``: every trainable
    parameter (biases, BatchNorm and activation parameters too). The model's state is left
    exactly as it was (:func:`gflib.ensemble.weight_gradients` on the model as one run).
    """
    ens = Single(model)
    grads = weight_gradients(ens, x, y, _names(ens, scope))
    return {n: g[0] for n, g in grads.items()}


def _names(ens, scope):
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
    if scope == "weights":
        return list(ens.weight_names)
    return [n for n, p in ens.net.named_parameters() if p.requires_grad]


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


def measure_runs(ens, x: torch.Tensor, y: torch.Tensor, scope: str = "weights",
                 per_weight: bool = False) -> list:
    """The four measures of every run of an ensemble (:mod:`gflib.ensemble`) on one shared batch,
    each run with its own masks: a list of K dicts, in one backward pass for all runs."""
    grads = weight_gradients(ens, x, y, _names(ens, scope))
    return [norms({n: g[r] for n, g in grads.items()}, ens.masks[r], per_weight)
            for r in range(ens.k)]


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
