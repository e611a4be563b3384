"""Gradient-flow measures: the baseline norms ``||g||_p`` and Effective Gradient Flow ``EGF_p``.

On a batch ``(x, y)`` with cross-entropy (no regulariser), with ``g_l = dC/dW_l`` the gradient with
respect to the effective (masked) weight of tensor ``l`` and ``m_l`` its mask:

- ``gf_p  = || concat_l g_l ||_p``: every entry counts, masked ones too (the baseline's fault);
- ``egf_p = (1/L) sum_l || g_l * m_l ||_p`` over the L measured tensors (the talk's formula);
  ``per_weight=True`` divides each layer's norm by its active count first (the announcement's
  "normalized by the number of active weights").

The masks are found where the model keeps them (:func:`gflib.found_masks.masks_of`:
``torch.nn.utils.prune``, ``torch.nn.utils.parametrize`` / ``torch.ao.pruning``, gflib's own) or
passed as a dict; tensors are named as the model's code reads them (``"fc1.weight"``, not
``"fc1.weight_orig"``), and ``g_l`` is the gradient of the weight the forward uses.

Measuring changes nothing: it differentiates a functional copy of the model (``torch.func``), so
``.grad``, BatchNorm running statistics, train/eval mode, RNG states and prune hooks or
parametrizations are untouched.
CHOICE: BatchNorm normalises with the batch's statistics (train-mode forward) while measuring;
dropout drops nothing (:data:`gflib.ensemble.DROPOUT`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn
from .ensemble import Single, weight_gradients
from .found_masks import masks_of, trainable
from .masks import check_mask

MEASURES = ("gf_l1", "gf_l2", "egf_l1", "egf_l2", "gfall_l1", "gfall_l2")
"""What a run records: the gradient norms ``gf_l1``, ``gf_l2``, the EGFs ``egf_l1``, ``egf_l2``,
and ``gfall_p``, the baseline over every trainable parameter's gradient (weights, biases, BatchNorm and activation parameters: the study's "all
gradients"), where ``gf_p`` covers the weight tensors only."""
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
    return trainable(ens.net)


def run_norms(grads: Mapping, keeps: Mapping | None = None, per_weight: bool = False,
              every: Mapping | None = None) -> list:
    """The measures of K runs at once: ``grads`` ``{name: [K, ...] gradient}`` of the measured
    tensors, ``keeps`` ``{name: [K, ...] bool mask}`` (missing = dense), ``every`` the
    gradients of all trainable tensors (adds ``gfall_l1``, ``gfall_l2``). Returns K dicts of
    floats."""
    keeps = keeps or {}
    l1_all, sq_all, egf1, egf2 = 0.0, 0.0, [], []
    for name, g in grads.items():
        g = g.detach().double().flatten(1)
        l1_all = l1_all + g.abs().sum(1)
        sq_all = sq_all + g.pow(2).sum(1)
        keep = keeps.get(name)
        if keep is None:
            active = torch.full((g.shape[0],), g.shape[1], dtype=g.dtype, device=g.device)
        else:
            keep = keep.to(g.device).flatten(1)
            g = g * keep.to(g.dtype)
            active = keep.sum(1).to(g.dtype)
        scale = 1 / active.clamp(min=1) if per_weight else 1.0
        egf1.append(g.abs().sum(1) * scale)
        egf2.append(g.pow(2).sum(1).sqrt() * scale)
    values = {"gf_l1": l1_all, "gf_l2": sq_all.sqrt(), "egf_l1": torch.stack(egf1).mean(0),
              "egf_l2": torch.stack(egf2).mean(0)}
    if every is not None:
        flat = [g.detach().double().flatten(1) for g in every.values()]
        values["gfall_l1"] = sum(g.abs().sum(1) for g in flat)
        values["gfall_l2"] = sum(g.pow(2).sum(1) for g in flat).sqrt()
    table = {k: v.cpu().tolist() for k, v in values.items()}
    return [{k: v[r] for k, v in table.items()} for r in range(len(table["gf_l1"]))]


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: Mapping | None = None,
            scope: str = "weights", per_weight: bool = False) -> dict:
    """The :data:`MEASURES` of ``model`` on the batch ``(x, y)`` (see module doc); ``scope``
    says what the four norms cover (``"all"``: every trainable parameter).

    ``masks``: ``{tensor name: bool or 0/1 tensor of its shape}`` (missing = dense); default:
    the ones the model keeps (:func:`gflib.found_masks.masks_of`).
    """
    return _measure_single(model, x, y, masks, scope, per_weight)[0]


MODEL = "(model)"
"""The ``layer`` of :func:`measure_table`'s rows for the whole model (no tensor has this name)."""
LAYER_MEASURES = ("gf_l1", "gf_l2", "egf_l1", "egf_l2")


def measure_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  masks: Mapping | None = None, scope: str = "weights",
                  per_weight: bool = False) -> pd.DataFrame:
    """:func:`measure` and its parts per tensor, from one backward pass, as a long table with
    columns ``layer, measure, value``: for each measured tensor ``l`` (``layer`` its name) the
    :data:`LAYER_MEASURES` ``gf_p = ||g_l||_p`` and ``egf_p = ||g_l * m_l||_p`` (divided by
    its active count with ``per_weight``), whose mean over the tensors is the model's ``egf_p``;
    then the :data:`MEASURES` with ``layer`` :data:`MODEL`. Arguments as :func:`measure`."""
    values, grads, keeps = _measure_single(model, x, y, masks, scope, per_weight)
    rows = []
    for r in layer_norms(grads, keeps).itertuples():
        scale = 1 / max(r.active, 1) if per_weight else 1.0
        rows += [(r.layer, "gf_l1", r.l1_all), (r.layer, "gf_l2", r.l2_all),
                 (r.layer, "egf_l1", r.l1_active * scale), (r.layer, "egf_l2", r.l2_active * scale)]
    rows += [(MODEL, m, values[m]) for m in MEASURES]
    return pd.DataFrame(rows, columns=["layer", "measure", "value"])


def _measure_single(model, x, y, masks, scope, per_weight):
    """``(measures, {name: gradient} of the measured tensors, {name: bool mask})``."""
    ens = Single(model)
    if masks is None:
        masks = masks_of(model)
    allowed = _names(ens, "weights") + [n for n in _names(ens, "all")
                                        if n not in ens.weight_names]
    unknown = [n for n in masks if n not in allowed]
    if unknown:
        raise ValueError(f"masks for {unknown}, which are not tensors of the model; allowed: "
                         f"{', '.join(allowed)}")
    names, every = _names(ens, scope), _names(ens, "all")
    grads = {n: g[0] for n, g in weight_gradients(ens, x, y,
                                                  list(dict.fromkeys(names + every))).items()}
    keeps = {n: check_mask(n, m, grads[n]) for n, m in masks.items()}
    values = run_norms({n: grads[n].unsqueeze(0) for n in names},
                       {n: k.unsqueeze(0) for n, k in keeps.items()}, per_weight,
                       {n: grads[n].unsqueeze(0) for n in every})[0]
    return values, {n: grads[n] for n in names}, {n: k for n, k in keeps.items() if n in names}


def measure_runs(ens, x: torch.Tensor, y: torch.Tensor, scope: str = "weights",
                 per_weight: bool = False) -> list:
    """The :data:`MEASURES` of every run of an ensemble (:mod:`gflib.ensemble`) on one shared
    batch, each run with its own masks: a list of K dicts, from one backward pass for all runs."""
    keeps = {n: ens.keep(n) for n in ens.weight_names if any(n in m for m in ens.masks)}
    names, every = _names(ens, scope), _names(ens, "all")
    grads = weight_gradients(ens, x, y, list(dict.fromkeys(names + every)))
    return run_norms({n: grads[n] for n in names}, keeps, per_weight,
                     {n: grads[n] for n in every})


def schedule(epochs: int, points: int = 11) -> list:
    """The epochs at which flow is measured: ``round(linspace(0, epochs, points))``, deduplicated;
    0 is before training, ``epochs`` after the last. From ``points > epochs`` on, the points are
    at most one epoch apart, so every epoch is one (computed as such: any ``points`` is cheap)."""
    if points > epochs:
        return list(range(epochs + 1))
    return sorted({int(round(e)) for e in np.linspace(0, epochs, points)})


def layer_norms(grads: Mapping, masks: Mapping | None = None):
    """Per-tensor view of the measures: a DataFrame with one row per measured tensor and columns
    ``layer, weights, active, l1_all, l1_active, l2_all, l2_active`` (norms of ``g_l`` over all
    entries and over the active ones)."""
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
