"""SC-SDC: same-capacity sparse vs dense pairs of MLPs (and of any two models with the same weight
tensors, e.g. CNNs: :func:`matched_member`).

A sparse MLP S of hidden width ``s`` and a dense MLP D of width ``d <= s`` with the same depth have,
layer by layer, the same number of active weights: every layer of S is masked to exactly the
weight count of D's layer. S's active weights are drawn from D's layer distribution (torch's default
``U(-1/sqrt(fan_in_D), 1/sqrt(fan_in_D))``), not from S's own wider default.

CHOICE on biases: S keeps all its biases (they are not counted in the matching) and draws them
from the same D-layer bound; with BatchNorm the hidden layers have no bias.
"""
from __future__ import annotations

import pandas as pd
import torch

from .masks import (apply_masks, dead_units, masks_with_counts, sparsity_aware_init_,
                    zero_masked)
from .models import MLP, maskable_weights

PAPER_SPARSE_WIDTH = 3076
PAPER_DENSITY_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)
INITS = ("dense", "sparsity_aware")


def paper_widths(sparse_width: int = PAPER_SPARSE_WIDTH, ratios=PAPER_DENSITY_RATIOS) -> list:
    """Dense widths ``round(r * sparse_width)``: 308, 923, 1538, 2153, 2768 for 3076."""
    return [int(round(r * sparse_width)) for r in ratios]


def layer_sizes(in_features: int, out_features: int, depth: int, width: int) -> list:
    """``[(fan_in, fan_out)]`` of the MLP's Linear layers, input to output."""
    dims = [in_features] + [width] * depth + [out_features]
    return list(zip(dims[:-1], dims[1:]))


def active_counts(in_features, out_features, depth, dense_width) -> list:
    """Weights per layer of the dense MLP: the active counts the sparse one must match."""
    return [i * o for i, o in layer_sizes(in_features, out_features, depth, dense_width)]


def layer_densities(in_features, out_features, depth, sparse_width, dense_width) -> list:
    """Per-layer density of the sparse MLP: dense count / sparse count (first and last layers
    ``d/s``, hidden-to-hidden ``(d/s)^2``)."""
    check_widths(sparse_width, dense_width)
    dense = active_counts(in_features, out_features, depth, dense_width)
    sparse = active_counts(in_features, out_features, depth, sparse_width)
    return [a / b for a, b in zip(dense, sparse)]


def check_widths(sparse_width, dense_width):
    for label, v in (("sparse_width", sparse_width), ("dense_width", dense_width)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {v!r}")
    if dense_width > sparse_width:
        raise ValueError(f"dense_width {dense_width} is larger than sparse_width {sparse_width}: "
                         "the sparse member of a pair must be at least as wide")


def sparse_member(in_features, out_features, depth, sparse_width, dense_width, seed,
                  init: str = "dense", attach: bool = True, **mlp_options):
    """The sparse MLP of a pair and its masks: ``(model, masks)``, masks applied
    (:func:`gflib.masks.apply_masks`; ``attach=False``: masked weights zeroed, no hook).

    ``init="dense"`` draws active weights (and biases) from the dense layer's distribution;
    ``"sparsity_aware"`` then rescales each unit by its masked fan-in (Evci et al. 2020).
    Seeds: the model's draws use ``seed``, the masks ``seed + 1``.
    """
    check_widths(sparse_width, dense_width)
    return matched_member(
        lambda: MLP(in_features, out_features, depth, sparse_width, **mlp_options),
        lambda: MLP(in_features, out_features, depth, dense_width, **mlp_options), seed, init,
        attach)


def matched_member(build_sparse, build_dense, seed: int, init: str = "dense",
                   attach: bool = True):
    """The sparse member of an SC-SDC pair of any two models with the same maskable weight
    tensors (:func:`gflib.models.maskable_weights`, same names, the sparse ones at least as
    large): ``(model, masks)`` with masks applied. Every tensor of ``build_sparse()`` keeps
    exactly as many active weights as the same tensor of ``build_dense()`` has, drawn (with its
    bias) from ``U(-1/sqrt(F), 1/sqrt(F))``, ``F`` the dense tensor's fan-in (``numel / out``:
    inputs x kernel size for a convolution), torch's default for the dense layer. The dense
    model is built on the meta device (no memory, no random draws). Seeds and ``attach`` as
    :func:`sparse_member`. For a CNN this widens the channels of the sparse member and masks
    its kernels: with channel ratio ``r``, a hidden convolution keeps ``r^2`` of its weights,
    the first and the last layer ``r``."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INITS)}")
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        dense = maskable_weights(build_dense())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sparse()
        weights = maskable_weights(model)
        if list(weights) != list(dense) or any(
                dense[n].ndim != w.ndim or dense[n].numel() > w.numel() for n, w in weights.items()):
            raise ValueError("the sparse and dense members must have the same weight tensors, "
                             "the sparse ones at least as large")
        with torch.no_grad():
            for name, w in weights.items():
                bound = 1.0 / dense[name][0].numel() ** 0.5
                w.uniform_(-bound, bound)
                bias = _bias_of(model, name)
                if bias is not None:
                    bias.uniform_(-bound, bound)
    masks = masks_with_counts(model, {n: t.numel() for n, t in dense.items()}, seed + 1)
    if attach:
        apply_masks(model, masks)
    else:
        zero_masked(model, masks)
    if init == "sparsity_aware":
        sparsity_aware_init_(model, masks, {n: t[0].numel() for n, t in dense.items()})
    return model, masks


def matched_densities(build_sparse, build_dense) -> dict:
    """``{weight name: dense count / sparse count}``: the per-tensor densities of an SC-SDC
    sparse member (:func:`matched_member`), from shapes alone (both built on the meta device).
    For MLPs this is :func:`layer_densities`."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        sparse, dense = maskable_weights(build_sparse()), maskable_weights(build_dense())
    return {n: dense[n].numel() / w.numel() for n, w in sparse.items()}


def dense_member(in_features, out_features, depth, dense_width, seed, **mlp_options):
    """The dense MLP of a pair, torch's default init under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(in_features, out_features, depth, dense_width, **mlp_options)


def pair(in_features, out_features, depth, sparse_width, dense_width, seed, init="dense",
         **mlp_options):
    """``(sparse_model, sparse_masks, dense_model)``: an SC-SDC pair (see the module doc)."""
    sparse, masks = sparse_member(in_features, out_features, depth, sparse_width, dense_width,
                                  seed, init=init, **mlp_options)
    dense = dense_member(in_features, out_features, depth, dense_width, seed, **mlp_options)
    return sparse, masks, dense


def _bias_of(model, weight_name):
    module = model.get_submodule(weight_name.rsplit(".", 1)[0])
    return module.bias


def layer_table(sparse_model, sparse_masks, dense_model):
    """One row per Linear layer of a pair: ``layer, sparse_weights, sparse_active,
    dense_weights`` (counts; ``sparse_active`` counts non-zero mask entries)."""
    sw, dw = maskable_weights(sparse_model), maskable_weights(dense_model)
    return pd.DataFrame([
        {"layer": name, "sparse_weights": w.numel(),
         "sparse_active": int(sparse_masks[name].sum()) if name in sparse_masks else w.numel(),
         "dense_weights": dw[name].numel()}
        for name, w in sw.items()])


def regime(in_features: int, out_features: int, depth: int, sparse_width: int, dense_widths,
           seed: int = 0):
    """Is the sparse member of each pair still connected? One row per dense width: ``ratio``
    (dense / sparse width), ``expected_fan_in`` (``ratio^2 * sparse_width``: the mean number of
    active inputs a sparse hidden unit gets from the previous hidden layer), ``mean_fan_in``
    (measured on the masks of seed ``seed``), ``no_input`` (share of those hidden units with no
    active input from the previous hidden layer) and ``dead`` (share of all hidden units cut off,
    :func:`gflib.masks.dead_units`). Needs ``depth >= 2``."""
    if depth < 2:
        raise ValueError(f"regime needs depth >= 2 (a hidden-to-hidden layer), got {depth!r}")
    rows = []
    for d in dense_widths:
        _, masks = sparse_member(in_features, out_features, depth, sparse_width, d, seed)
        hidden = [m for name, m in masks.items() if name.startswith("hidden.")][1:]
        fan_in = torch.cat([m.sum(dim=1) for m in hidden]).float()
        rows.append({"dense_width": d, "ratio": d / sparse_width,
                     "expected_fan_in": (d / sparse_width) ** 2 * sparse_width,
                     "mean_fan_in": fan_in.mean().item(),
                     "no_input": (fan_in == 0).float().mean().item(),
                     "dead": sum(dead_units(masks).values()) / (depth * sparse_width)})
    return pd.DataFrame(rows).set_index("dense_width")
