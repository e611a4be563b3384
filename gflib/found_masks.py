"""Masks where users keep them, and the tensors a model's forward actually uses.

A weight can be masked in three ways, each found by :func:`masks_of` and reported under the name
the model's own code reads the tensor by (``"fc1.weight"``, never ``"fc1.weight_orig"``):

- ``torch.nn.utils.prune`` (any method, global and repeated pruning included): the trainable
  tensor is ``fc1.weight_orig``, the mask the buffer ``fc1.weight_mask``, and a forward pre-hook
  sets ``fc1.weight = weight_orig * weight_mask`` (so ``weight.grad`` is None and
  ``weight_orig.grad`` is the masked gradient);
- ``torch.nn.utils.parametrize``, which ``torch.ao.pruning``'s sparsifiers (``FakeSparsity``)
  use: the trainable tensor is ``fc1.parametrizations.weight.original``, and the mask is the
  ``mask`` tensor of a parametrization of the weight's shape (several are multiplied);
- gflib's :func:`gflib.masks.apply_masks`.

A dict of masks kept by the user's own code (RigL-style) is passed to the measures as it is.
:func:`effective_gradients` differentiates with respect to the effective tensor (the masked
weight the forward uses), so masked entries get their true gradient, which the baseline norms
count and EGF leaves out. After ``torch.ao.pruning``'s ``squash_mask()`` the mask is gone (only
zeros are left): pass it as a dict, e.g. ``{n: w != 0}``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parametrize, prune

from .masks import applied_masks, check_mask

KINDS = ("parameter", "prune", "parametrize")
"""How a model keeps a tensor: a plain parameter, pruned by ``torch.nn.utils.prune``, or
computed by ``torch.nn.utils.parametrize``."""


def _split(name: str) -> tuple:
    module, _, attr = name.rpartition(".")
    return module, attr


def _pruning(module: nn.Module, attr: str):
    """The ``torch.nn.utils.prune`` method (a forward pre-hook) that computes ``module.attr``, or
    None; found as ``prune.remove`` finds it."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == attr:
            return hook
    return None


def kind_of(model: nn.Module, name: str) -> str:
    """How ``model`` keeps tensor ``name`` (one of :data:`KINDS`); ValueError when ``name`` is
    none of them (e.g. a tensor computed by a forward pre-hook gflib does not know, such as the
    deprecated ``torch.nn.utils.weight_norm``: use ``torch.nn.utils.parametrizations``)."""
    module_name, attr = _split(name)
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        module = None
    if module is not None:
        if parametrize.is_parametrized(module, attr):
            return "parametrize"
        if _pruning(module, attr) is not None:
            return "prune"
        if attr in dict(module.named_parameters(recurse=False)):
            return "parameter"
    raise ValueError(f"{name!r} is not a parameter of the model, nor a tensor pruned by "
                     "torch.nn.utils.prune or computed by torch.nn.utils.parametrize (one that "
                     "another forward pre-hook computes, as the deprecated "
                     "torch.nn.utils.weight_norm does, cannot be measured: use "
                     "torch.nn.utils.parametrizations.weight_norm)")


def trainable(model: nn.Module) -> list:
    """The names of ``model``'s trainable tensors as its code reads them, in
    ``named_parameters`` order: ``fc1.weight`` for a pruned ``fc1.weight_orig`` and for a
    parametrized ``fc1.parametrizations.weight.original``; a tensor counts when any of its
    parameters requires a gradient."""
    names = []
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parts = pname.split(".")
        if len(parts) >= 3 and parts[-3] == "parametrizations" and \
                parts[-1].startswith("original"):
            module_name, attr = ".".join(parts[:-3]), parts[-2]
            if parametrize.is_parametrized(model.get_submodule(module_name), attr):
                pname = f"{module_name}.{attr}" if module_name else attr
        elif pname.endswith("_orig"):
            module_name, attr = _split(pname.removesuffix("_orig"))
            if _pruning(model.get_submodule(module_name), attr) is not None:
                pname = pname.removesuffix("_orig")
        if pname not in names:
            names.append(pname)
    return names


def _parametrized_mask(module: nn.Module, attr: str):
    found = None
    for p in module.parametrizations[attr]:
        mask = getattr(p, "mask", None)
        if isinstance(mask, torch.Tensor):
            found = mask != 0 if found is None else found & (mask != 0)
    return found


def masks_of(model: nn.Module) -> dict:
    """``{tensor name: bool mask of its shape}`` (True = active) of every masked tensor of
    ``model``, found where ``torch.nn.utils.prune``, ``torch.nn.utils.parametrize`` /
    ``torch.ao.pruning`` and :func:`gflib.masks.apply_masks` keep them (see the module doc;
    gflib's masks applied to a submodule, which the model wraps, too); a tensor masked in two
    ways is active where both masks are. ``{}`` for a dense model."""
    found = {}
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                attr = hook._tensor_name
                found[prefix + attr] = check_mask(prefix + attr, getattr(module, attr + "_mask"),
                                                  getattr(module, attr + "_orig"))
        if parametrize.is_parametrized(module):
            for attr in module.parametrizations:
                mask = _parametrized_mask(module, attr)
                if mask is not None:
                    found[prefix + attr] = mask
        for name, mask in applied_masks(module).items():
            name = prefix + name
            found[name] = mask if name not in found else found[name] & mask
    order = {n: i for i, n in enumerate(trainable(model))}
    return dict(sorted(found.items(), key=lambda item: order.get(item[0], len(order))))


class _Reading(nn.Module):
    """``inner``'s forward, also returning the parametrized tensors ``read`` (``{name: (module
    name, attribute)}``) as the forward used them (cached for the call, so they are the very
    tensors the forward multiplied by)."""

    def __init__(self, inner: nn.Module, read: Mapping):
        super().__init__()
        self.inner = inner
        self.read = dict(read)

    def forward(self, *args):
        with parametrize.cached():
            seen = {n: getattr(self.inner.get_submodule(m), a) for n, (m, a) in self.read.items()}
            return self.inner(*args), seen


def effective_gradients(model: nn.Module, names: list, inputs: tuple,
                        loss: Callable) -> dict:
    """``{name: d loss(model(*inputs)) / d tensor}`` for the tensors ``names`` (dotted names
    under ``model`` as its code reads them; any of :data:`KINDS`), each with respect to the
    tensor the forward uses: the effective (masked) weight of a pruned or parametrized tensor,
    so a masked entry gets its true gradient. Shapes: each gradient has its tensor's shape; a
    tensor the loss does not reach gets zeros.

    Computed on a functional copy (``torch.func.functional_call``): parameters, buffers, ``.grad``
    and the prune hooks and parametrizations are left as they were (a pruned module's computed
    attribute too). The caller sets modes and RNG. Not inside a ``parametrize.cached()`` block,
    whose cache would keep the copy's tensors."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    leaves, read, computed = {}, {}, []
    for name in names:
        kind = kind_of(model, name)
        module_name, attr = _split(name)
        module = model.get_submodule(module_name)
        prefix = f"{module_name}." if module_name else ""
        if kind == "parameter":
            leaves[name] = params[name] = params[name].clone().requires_grad_(True)
        elif kind == "prune":
            leaf = _pruning(module, attr).apply_mask(module).detach().clone().requires_grad_(True)
            leaves[name] = params[f"{prefix}{attr}_orig"] = leaf
            buffers[f"{prefix}{attr}_mask"] = torch.ones_like(buffers[f"{prefix}{attr}_mask"])
            computed.append((module, attr, getattr(module, attr)))
        else:
            originals = f"{prefix}parametrizations.{attr}."
            for pname in params:
                if pname.startswith(originals) and pname[len(originals):].startswith("original"):
                    params[pname] = params[pname].clone().requires_grad_(True)
            read[name] = (module_name, attr)
    wrapper = _Reading(model, read)
    state = {f"inner.{n}": t for n, t in {**params, **buffers}.items()}
    try:
        output, seen = functional_call(wrapper, state, tuple(inputs))
        targets = {**leaves, **seen}
        grads = torch.autograd.grad(loss(output), [targets[n] for n in names], allow_unused=True)
    finally:
        for module, attr, value in computed:
            setattr(module, attr, value)
    return {n: torch.zeros_like(targets[n]) if g is None else g for n, g in zip(names, grads)}
