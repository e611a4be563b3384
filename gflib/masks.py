"""Fixed sparsity masks: making them, applying them, and checking what they leave.

A mask is ``{parameter name: bool tensor of the weight's shape}`` (True = active) over the
weight tensors of Linear/Conv layers (:func:`gflib.models.maskable_weights`).
"""
from __future__ import annotations

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
    """``{name: round(density * numel)}``: the active count per maskable tensor; a density that
    leaves a tensor no weight raises ValueError (it is not silently raised to one)."""
    weights = maskable_weights(model)
    counts = {}
    for n, d in _densities(model, density).items():
        counts[n] = round(d * weights[n].numel())
        if counts[n] < 1:
            raise ValueError(f"density {d!r} leaves {n} ({weights[n].numel()} weights) with no "
                             f"active weight; the smallest density it allows is "
                             f"{0.5 / weights[n].numel():.3g}")
    return counts


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


def magnitude_masks(weights: Mapping, density, scope: str = "layer") -> dict:
    """Keep the largest-|w| entries of ``weights`` (``{name: tensor}``, e.g.
    :func:`gflib.models.maskable_weights` or one run's slice of an ensemble): per tensor
    (``scope="layer"``, ``round(d * numel)`` each, ``density`` a float or ``{name: float}``) or over
    all tensors together (``scope="global"``, ``density`` a float). Ties break by position
    (``torch.topk``). Returns bool masks of the tensors' shapes."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
    if isinstance(weights, nn.Module):
        weights = maskable_weights(weights)
    if scope == "layer":
        dens = dict(density) if isinstance(density, Mapping) else {n: density for n in weights}
        unknown = set(dens) - set(weights)
        if unknown:
            raise ValueError(f"density names {sorted(unknown)} are not among {', '.join(weights)}")
        out = {}
        for n, w in weights.items():
            d = dens.get(n, 1.0)
            check_density(d, f"density of {n}")
            out[n] = _top(w.detach().abs().flatten(), max(1, round(d * w.numel()))).view_as(w)
        return out
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


def check_mask(name: str, mask, weight: torch.Tensor) -> torch.Tensor:
    """``mask`` as a bool tensor after checking it against ``weight``'s shape; a non-bool mask
    must hold only 0 and 1 (a float 0.3 is refused, not read as "active")."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask for {name} must be a tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight "
                         f"{tuple(weight.shape)}")
    if mask.dtype != torch.bool:
        odd = (mask != 0) & (mask != 1)
        if bool(odd.any()):
            raise ValueError(f"mask for {name} must be bool or 0/1, found {mask[odd][0].item()!r}")
        mask = mask != 0
    return mask.to(weight.device)


def mask_parameter(param: nn.Parameter, keep: torch.Tensor):
    """Zero ``param`` where ``keep`` (bool, ``param``'s shape) is False and keep it zero: a
    gradient hook multiplies its gradient by ``keep``, so the optimizer only ever sees zero
    gradients there, its state (momentum, Adam's moments, Adagrad's sums) stays zero and every
    update there, weight decay included, is exactly zero. Returns the hook's handle."""
    with torch.no_grad():
        param.masked_fill_(~keep, 0.0)
    factor = keep.to(param.dtype)  # g * factor costs a quarter of g.masked_fill(~keep, 0) on a CPU
    return param.register_hook(lambda g: g * factor)


def apply_masks(model: nn.Module, masks: Mapping) -> nn.Module:
    """Zero the masked weights of ``model`` and keep them zero (:func:`mask_parameter`).
    Calling again replaces earlier masks. Returns ``model``."""
    weights = maskable_weights(model)
    unknown = set(masks) - set(weights)
    if unknown:
        raise ValueError(f"mask names {sorted(unknown)} are not maskable weights of this model")
    checked = {n: check_mask(n, m, weights[n]) for n, m in masks.items()}
    for handle in getattr(model, "_gflib_mask_hooks", []):
        handle.remove()
    model._gflib_mask_hooks = [mask_parameter(weights[n], m) for n, m in checked.items()]
    model._gflib_masks = checked
    return model


def zero_masked_state(optimizer: torch.optim.Optimizer, param: nn.Parameter,
                      keep: torch.Tensor) -> None:
    """Zero ``optimizer``'s per-weight state of ``param`` (moments, sums, momentum buffers) where
    ``keep`` is False: after a mask grows sparser, the pruned weights' old state would otherwise
    move them away from zero."""
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.masked_fill_(~keep, 0.0)


def applied_masks(model: nn.Module) -> dict:
    """The masks last applied to ``model`` with :func:`apply_masks` (``{}`` if none); every mask
    a model keeps, ``torch.nn.utils.prune``'s included: :func:`gflib.found_masks.masks_of`."""
    return dict(getattr(model, "_gflib_masks", {}))


def zero_masked(model: nn.Module, masks: Mapping) -> nn.Module:
    """Zero the masked weights of ``model`` in place, without keeping them zero (no hook: the
    training loop's ensemble attaches its own). Returns ``model``."""
    weights = maskable_weights(model)
    with torch.no_grad():
        for name, keep in masks.items():
            weights[name].masked_fill_(~keep, 0.0)
    return model


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
