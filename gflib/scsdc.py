"""SC-SDC: same-capacity sparse vs dense pairs of MLPs (and of any two models with the same weight
tensors, e.g. CNNs: :func:`matched_member`; of any architecture from its builder
``width -> nn.Module``: :func:`matched_pairs`, with the regime check :func:`pairs_table`).

A sparse MLP S of hidden width ``s`` and a dense MLP D of width ``d <= s`` with the same depth have,
layer by layer, the same number of active weights: every layer of S is masked to exactly the
weight count of D's layer. S's active weights are drawn from D's layer distribution (torch's default
``U(-1/sqrt(fan_in_D), 1/sqrt(fan_in_D))``), not from S's own wider default.

CHOICE on biases: S keeps all its biases (they are not counted in the matching) and draws them
from the same D-layer bound; with BatchNorm the hidden layers have no bias.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune

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
    module = model.get_submodule(weight_name.rpartition(".")[0])
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


MASKS_AS = ("gflib", "prune", "none")
"""How :func:`matched_pairs` leaves a sparse member's masks: attached by
:func:`gflib.masks.apply_masks`, by ``torch.nn.utils.prune.custom_from_mask``, or only zeroed."""


@dataclass
class MatchedPair:
    """One SC-SDC pair of a user's architecture (:func:`matched_pairs`): the ``sparse`` member
    (built at the sparse width, ``masks`` ``{weight name: bool mask}``) and the ``dense`` one,
    built at ``dense_width``, both under ``seed``."""

    dense_width: float
    seed: int
    sparse: nn.Module
    masks: dict
    dense: nn.Module

    def table(self) -> pd.DataFrame:
        """One row per weight tensor (``layer``): ``sparse_weights``, ``active`` (its mask's
        count), ``dense_weights`` (equal to ``active``), ``density`` (active / sparse weights);
        ``sparse_units`` and ``dense_units`` (output units or channels); ``sparse_inputs`` (active
        inputs per sparse unit, their mean: active / sparse units; inputs x kernel size for a
        convolution) beside ``dense_inputs`` (the dense unit's fan-in); ``no_input`` (share of
        sparse units with no active input: they carry only their bias) and ``unused_inputs``
        (share of the sparse layer's inputs, or input channels, with no active weight), from
        these masks."""
        dense = maskable_weights(self.dense)
        rows = []
        for name, w in maskable_weights(self.sparse).items():
            mask = self.masks.get(name, torch.ones(w.shape, dtype=torch.bool, device=w.device))
            active = int(mask.sum())
            d = dense[name]
            rows.append({
                "dense_width": self.dense_width, "seed": self.seed, "layer": name,
                "sparse_weights": w.numel(), "active": active, "dense_weights": d.numel(),
                "density": active / w.numel(), "sparse_units": w.shape[0],
                "dense_units": d.shape[0], "sparse_inputs": active / w.shape[0],
                "dense_inputs": d[0].numel(),
                "no_input": (~mask.reshape(mask.shape[0], -1).any(1)).float().mean().item(),
                "unused_inputs": (~mask.transpose(0, 1).reshape(mask.shape[1], -1).any(1))
                .float().mean().item()})
        return pd.DataFrame(rows)


def pairs_table(pairs: list) -> pd.DataFrame:
    """The regime check of :func:`matched_pairs`' pairs: their :meth:`MatchedPair.table` rows,
    one per pair and weight tensor. Read ``sparse_inputs`` against ``dense_inputs`` and
    ``no_input``: a sparse net whose units get a handful of inputs, or none, is disconnected
    rather than sparse (the paper's MLPs: about 31 inputs per hidden unit at ratio 0.1)."""
    return pd.concat([p.table() for p in pairs], ignore_index=True)


def _check_width(label, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"{label} must be a number > 0, got {value!r}")


def _built(build, width):
    model = build(width)
    if not isinstance(model, nn.Module):
        raise ValueError(f"build({width!r}) must return a torch.nn.Module, got "
                         f"{type(model).__name__}")
    return model


def _shapes(build, width) -> tuple:
    """``({weight name: shape}, {other parameter name: shape})`` of ``build(width)``, built on
    the meta device (no memory, no draws) or, where the builder cannot build there, for real
    without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.device("meta"):
                model = _built(build, width)
        except Exception:  # an init the meta device cannot run (e.g. a QR decomposition)
            model = _built(build, width)
    weights = {n: tuple(w.shape) for n, w in maskable_weights(model).items()}
    ids = {id(w) for w in maskable_weights(model).values()}
    others = {n: tuple(p.shape) for n, p in model.named_parameters() if id(p) not in ids}
    return weights, others


def check_matchable(build: Callable, sparse_width, dense_width) -> dict:
    """``{weight name: dense count}``, the active count of each of ``build(sparse_width)``'s
    Linear/Conv weights in an SC-SDC pair with ``build(dense_width)``, after checking that the
    counts can match: ValueError when the two have different weight tensors (names or number of
    dimensions), when a dense tensor has more weights than the sparse one, or when another
    parameter of two or more dimensions (a weight gflib cannot mask, e.g. ``nn.Embedding``'s)
    differs in size, so that the sparse member would have more active weights there."""
    _check_width("sparse_width", sparse_width)
    _check_width("dense_width", dense_width)
    sparse, sparse_other = _shapes(build, sparse_width)
    dense, dense_other = _shapes(build, dense_width)
    if not sparse:
        raise ValueError(f"build({sparse_width!r}) has no Linear or Conv weight for SC-SDC to "
                         "mask")
    if list(sparse) != list(dense):
        raise ValueError(
            f"build gives other weight tensors at width {sparse_width!r} than at "
            f"{dense_width!r}: only at {sparse_width!r}: {[n for n in sparse if n not in dense]}"
            f"; only at {dense_width!r}: {[n for n in dense if n not in sparse]} (the members "
            "of a pair need the same layers)")
    counts = {}
    for name, shape in sparse.items():
        s, d = math.prod(shape), math.prod(dense[name])
        if len(shape) != len(dense[name]):
            raise ValueError(f"{name} is {dense[name]} at dense width {dense_width!r} and "
                             f"{shape} at sparse width {sparse_width!r}: the members of a pair "
                             "need the same layers")
        if d > s:
            raise ValueError(
                f"{name} has {d} weights {dense[name]} at dense width {dense_width!r} and {s} "
                f"{shape} at sparse width {sparse_width!r}: the sparse member cannot keep as "
                "many active weights as the dense one has (it must be at least as large in "
                "every Linear/Conv weight)")
        counts[name] = d
    grown = [n for n, shape in sparse_other.items()
             if len(shape) >= 2 and math.prod(shape) != math.prod(dense_other.get(n, ()))]
    if grown:
        raise ValueError(f"parameters {grown} are not Linear/Conv weights, which gflib masks, "
                         "and their size changes with the width: the sparse member would have "
                         "more active weights there")
    return counts


def _dense_draws(build, dense_width, bias_sizes: dict, seed: int) -> tuple:
    """What fresh dense models ``build(dense_width)``, built under ``seed`` without touching the
    caller's RNG, draw: ``({weight name: the first one's weights, flat}, {weight name: at least
    bias_sizes[name] bias values}, {weight name: the dense fan-in})``, from as many models as
    the widest bias needs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        first = _built(build, dense_width)
        dense = maskable_weights(first)
        weights = {n: w.detach().flatten().clone() for n, w in dense.items()}
        fan_in = {n: w[0].numel() for n, w in dense.items()}
        biases = {n: [_bias_of(first, n).detach().flatten().clone()] for n in bias_sizes
                  if _bias_of(first, n) is not None}
        models = max((math.ceil(bias_sizes[n] / len(b[0])) for n, b in biases.items()),
                     default=1)
        for _ in range(models - 1):
            donor = _built(build, dense_width)
            for n, values in biases.items():
                values.append(_bias_of(donor, n).detach().flatten().clone())
    return weights, {n: torch.cat(v) for n, v in biases.items()}, fan_in


def matched_pairs(build: Callable, sparse_width, dense_widths, seeds=(0,), init: str = "dense",
                  masks_as: str = "gflib") -> list:
    """SC-SDC pairs of any architecture: for each dense width and seed a :class:`MatchedPair` of
    ``build(sparse_width)``, masked, and ``build(dense_width)``. ``build(width) -> nn.Module``
    must give the same Linear/Conv weight tensors at every width, each at least as large at
    the sparse width (:func:`check_matchable` says why not, before anything is built).

    The sparse member keeps in every Linear/Conv weight exactly as many active weights as the
    dense member's tensor has (uniform random positions, :func:`gflib.masks.masks_with_counts`),
    drawn from the dense layer's initial distribution, whatever ``build`` initialises with:
    they are the weights of a fresh dense model (``numel`` of them, exactly the active count)
    set at the active positions; the biases of those layers likewise, from as many fresh dense
    models as the widest bias needs (CHOICE, as :func:`matched_member`: biases are not counted
    in the matching). Its other parameters (BatchNorm, activations) keep their own
    initialisation. ``init="sparsity_aware"`` then rescales each unit by its masked fan-in
    (:func:`gflib.masks.sparsity_aware_init_`). Seeds: the dense member and the sparse model
    under ``seed``, the masks ``seed + 1``, the fresh dense models ``seed + 2``; the caller's
    RNG is left as it was. ``masks_as``: :data:`MASKS_AS`. Pairs are listed by dense width,
    then seed."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INITS)}")
    if masks_as not in MASKS_AS:
        raise ValueError(f"unknown masks_as {masks_as!r}; allowed: {', '.join(MASKS_AS)}")
    dense_widths = list(dense_widths)
    seeds = list(seeds)
    if not dense_widths or not seeds:
        raise ValueError(f"dense_widths and seeds must not be empty, got {dense_widths!r} and "
                         f"{seeds!r}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seeds must be integers, got {seed!r}")
    counts = {d: check_matchable(build, sparse_width, d) for d in dense_widths}
    pairs = []
    for d in dense_widths:
        for seed in seeds:
            seed = int(seed)
            sparse, masks = _sparse_of(build, sparse_width, d, counts[d], seed, init, masks_as)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                dense = _built(build, d)
            pairs.append(MatchedPair(d, seed, sparse, masks, dense))
    return pairs


def _sparse_of(build, sparse_width, dense_width, counts, seed, init, masks_as):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _built(build, sparse_width)
    weights = maskable_weights(model)
    masks = masks_with_counts(model, counts, seed + 1)
    bias_sizes = {n: _bias_of(model, n).numel() for n in weights
                  if _bias_of(model, n) is not None}
    values, biases, fan_in = _dense_draws(build, dense_width, bias_sizes, seed + 2)
    with torch.no_grad():
        for name, w in weights.items():
            w.zero_()
            w[masks[name]] = values[name].to(w.device, w.dtype)
            if name in biases:
                bias = _bias_of(model, name)
                bias.copy_(biases[name][:bias.numel()].view_as(bias))
    if init == "sparsity_aware":
        sparsity_aware_init_(model, masks, fan_in)
    if masks_as == "gflib":
        apply_masks(model, masks)
    elif masks_as == "prune":
        for name, mask in masks.items():
            module_name, _, attr = name.rpartition(".")
            prune.custom_from_mask(model.get_submodule(module_name), attr, mask)
    return model, masks
