"""Magnitude pruning during training: the mask-update hook of the training loop.

A run with ``prune="oneshot"`` trains dense for ``prune_start`` epochs, then keeps its largest
weights; ``prune="gradual"`` raises sparsity from 0 after ``prune_start`` epochs to the target
after ``prune_end`` epochs on the cubic schedule of Zhu & Gupta (2017),
``s_t = s_f (1 - (1 - p)^3)`` with ``p`` the fraction of the pruning window done, here per layer:
``d_l(t) = 1 - (1 - d_l) (1 - (1 - p)^3)``. CHOICE: masks are updated at epoch boundaries (the
paper gives no schedule). The target per layer is the SC-SDC density (``match_width``: the dense
partner's weight count) or ``density``; ``prune_scope="layer"`` ranks each tensor alone,
``"global"`` ranks all tensors together at the same overall density.
"""
from __future__ import annotations

import torch

from .config import MODELS, RunConfig
from .masks import magnitude_masks
from .models import maskable_weights
from .scsdc import matched_densities


def dense_partner(config: RunConfig) -> RunConfig:
    """The dense member of ``config``'s SC-SDC pair: width ``match_width``, unmasked, unpruned."""
    return config.replace(width=config.match_width, match_width=None, init="dense",
                          prune="none", prune_scope="layer", prune_start=0, prune_end=0)


def target_densities(config: RunConfig, ds) -> dict:
    """``{weight name: density}`` of ``config``'s sparse model on ``ds``: the SC-SDC densities
    (:func:`gflib.scsdc.matched_densities`) with ``match_width``, else ``density`` for every
    tensor. ``ds``: the dataset (:class:`gflib.data.Dataset`) the model is built for."""
    build = MODELS[config.model]
    if config.match_width is None:
        with torch.device("meta"):
            return {n: config.density for n in maskable_weights(build(config, ds))}
    return matched_densities(lambda: build(config, ds), lambda: build(dense_partner(config), ds))


def progress(config: RunConfig, epoch: int) -> float | None:
    """Fraction of the pruning window done before ``epoch`` (1-based), or None when the masks do
    not change before this epoch."""
    done = epoch - 1
    end = config.prune_start if config.prune == "oneshot" else config.prune_end
    if not config.prune_start <= done <= end:
        return None
    if end == config.prune_start:
        return 1.0
    return (done - config.prune_start) / (end - config.prune_start)


def density_at(final: float, p: float) -> float:
    """Zhu & Gupta's cubic schedule: density after a fraction ``p`` of the window, from 1 to
    ``final`` (exactly ``final`` at ``p = 1``)."""
    return final if p >= 1 else 1 - (1 - final) * (1 - (1 - p) ** 3)


def masks_at(configs: list, ens, epoch: int, ds) -> list | None:
    """Each run's new masks before ``epoch`` (1-based), or None when they do not change; ``ens``
    the group's ensemble, ``ds`` the dataset it trains on (for the models' shapes)."""
    p = progress(configs[0], epoch)
    if p is None:
        return None
    out = []
    for r, c in enumerate(configs):
        weights = {n: ens.tensor(n)[r] for n in ens.weight_names}
        final = target_densities(c, ds)
        if c.prune_scope == "layer":
            out.append(magnitude_masks(weights, {n: density_at(d, p) for n, d in final.items()}))
        else:
            total = sum(w.numel() for w in weights.values())
            overall = sum(final[n] * w.numel() for n, w in weights.items()) / total
            out.append(magnitude_masks(weights, density_at(overall, p), scope="global"))
    return out
