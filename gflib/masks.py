"""Fixed sparsity masks: making them, applying them, and checking what they leave.

A mask is ``{parameter name: bool tensor of the weight's shape}`` (True = active) over the
weight tensors of Linear/Conv layers (:func:`gflib.models.maskable_weights`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .models import maskable_weights

SCOPES = ("layer", "global")


def check_density(density, name="density"):
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {density!r}")


def _densities(model: nn.Module, density) -> dict:
    weights = maskable_weights(model)
    if isinstance(density, Mapping):
        unknown = set(density) - set(weights)
        if unknown:
            raise ValueError(f"density names {sorted(unknown)} are not maskable weights; allowed: "
                             f"{', '.join(weights)}")
        out = {n: density.get(n, 1.0) for n in weights}
    else:
        out = {n: density for n in weights}
    for n, d in out.items():
        check_density(d, f"density of {n}")
    return out


def counts_for(model: nn.Module, density) -> dict:
    """``{name: round(density * numel)}``: the active count per maskable tensor (at least 1)."""
    weights = maskable_weights(model)
    return {n: max(1, round(d * weights[n].numel())) for n, d in _densities(model, density).items()}


def random_masks(model: nn.Module, density, seed: int) -> dict:
    """Uniform random masks with exactly ``round(density * numel)`` active entries per tensor.

    ``density`` is a float in (0, 1] for every tensor or ``{name: float}`` (missing names stay
    dense). Positions are drawn without replacement from a generator seeded with ``seed``.
    """
    return masks_with_counts(model, counts_for(model, density), seed)


def masks_with_counts(model: nn.Module, counts: Mapping, seed: int) -> dict:
    """Uniform random masks with exactly ``counts[name]`` active entries in each named tensor."""
    weights = maskable_weights(model)
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for name, w in weights.items():
        k = counts.get(name, w.numel())
        if not 1 <= k <= w.numel():
            raise ValueError(f"active count for {name} must be in [1, {w.numel()}], got {k}")
        flat = torch.zeros(w.numel(), dtype=torch.bool)
        flat[torch.randperm(w.numel(), generator=g)[:k]] = True
        masks[name] = flat.view_as(w).to(w.device)
    return masks


def magnitude_masks(model: nn.Module, density, scope: str = "layer") -> dict:
    """Keep the largest-|w| weights: per tensor (``scope="layer"``, ``round(density*numel)`` each)
    or over all maskable tensors together (``scope="global"``, ``density`` a float). Ties break by
    position (``torch.topk``)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
    weights = maskable_weights(model)
    if scope == "layer":
        counts = counts_for(model, density)
        return {n: _top(w.detach().abs().flatten(), counts[n]).view_as(w) for n, w in weights.items()}
    check_density(density)
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    keep = _top(flat, max(1, round(density * flat.numel())))
    masks, start = {}, 0
    for n, w in weights.items():
        masks[n] = keep[start:start + w.numel()].view_as(w)
        start += w.numel()
    return masks


def _top(values: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.zeros_like(values, dtype=torch.bool)
    keep[torch.topk(values, k).indices] = True
    return keep


def apply_masks(model: nn.Module, masks: Mapping) -> nn.Module:
    """Zero the masked weights and keep them zero under any torch.optim optimizer.

    Each masked parameter gets a gradient hook that multiplies its gradient by the mask, so the
    optimizer only ever sees zero gradients at masked positions: their optimizer state (momentum,
    Adam's moments, Adagrad's sums) stays zero and every update there, weight decay included,
    is exactly zero. Calling again replaces earlier masks. Returns ``model``.
    """
    weights = maskable_weights(model)
    unknown = set(masks) - set(weights)
    if unknown:
        raise ValueError(f"mask names {sorted(unknown)} are not maskable weights of this model")
    for handle in getattr(model, "_gflib_mask_hooks", []):
        handle.remove()
    hooks = []
    for name, mask in masks.items():
        w = weights[name]
        if mask.shape != w.shape:
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight {tuple(w.shape)}")
        m = mask.to(device=w.device, dtype=torch.bool)
        with torch.no_grad():
            w.masked_fill_(~m, 0.0)
        keep = m.to(w.dtype)  # g * keep costs a quarter of g.masked_fill(~m, 0) on a CPU
        hooks.append(w.register_hook(lambda g, keep=keep: g * keep))
    model._gflib_mask_hooks = hooks
    model._gflib_masks = {n: m.to(weights[n].device).bool() for n, m in masks.items()}
    return model


def masks_of(model: nn.Module) -> dict:
    """The masks last applied to ``model`` with :func:`apply_masks` (``{}`` if none)."""
    return dict(getattr(model, "_gflib_masks", {}))


def density(masks: Mapping) -> dict:
    """Achieved density per tensor: active fraction in [0, 1]."""
    return {n: m.float().mean().item() for n, m in masks.items()}


def dead_units(masks: Mapping) -> dict:
    """Hidden units cut off by a chain of 2-D masks (Linear weights ``[out, in]``, in order).

    For every tensor but the last, the number of its output units that have no active incoming
    weight or no active outgoing weight in the next tensor. Such a unit can carry no signal.
    """
    names = list(masks)
    out = {}
    for name, nxt in zip(names[:-1], names[1:]):
        m, m_next = masks[name], masks[nxt]
        if m.ndim != 2 or m_next.ndim != 2 or m.shape[0] != m_next.shape[1]:
            raise ValueError(f"dead_units needs a chain of Linear masks; {name} -> {nxt} is not one")
        no_in = ~m.any(dim=1)
        no_out = ~m_next.any(dim=0)
        out[name] = int((no_in | no_out).sum())
    return out


def sparsity_aware_init_(model: nn.Module, masks: Mapping, base_fan_in: Mapping | None = None):
    """Evci et al. (2020): rescale each unit's active weights by its actual (masked) fan-in.

    A unit's weights ``w`` drawn with a scale for fan-in ``F`` (the layer's fan-in, or
    ``base_fan_in[name]`` when they were drawn for another layer's fan-in) are multiplied by
    ``sqrt(F / f_unit)``, ``f_unit`` its active inputs, so their variance is that of a dense unit
    with ``f_unit`` inputs. Units with no active input are left at zero. In place; returns model.
    """
    weights = maskable_weights(model)
    with torch.no_grad():
        for name, m in masks.items():
            w = weights[name]
            fan = (base_fan_in or {}).get(name, w[0].numel())
            active = m.reshape(m.shape[0], -1).sum(dim=1).clamp(min=1).float()
            scale = (fan / active).sqrt().view((-1,) + (1,) * (w.ndim - 1))
            w.mul_(scale.to(w.dtype))
    return model


def fan_in_bound(fan_in: int) -> float:
    """The bound ``1/sqrt(fan_in)`` of torch's default Linear/Conv init ``U(-b, b)``."""
    return 1.0 / math.sqrt(fan_in)
