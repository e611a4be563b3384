"""Magnitude pruning during training: the training loop's mask-update hooks (:mod:`gflib.hooks`).

A run with ``prune="oneshot"`` trains dense for ``prune_start`` epochs, then keeps its largest
weights; ``prune="gradual"`` raises sparsity from 0 after ``prune_start`` epochs to the target
after ``prune_end`` epochs on the cubic schedule of Zhu & Gupta (2017),
``s_t = s_f (1 - (1 - p)^3)`` with ``p`` the fraction of the pruning window done, here per layer:
``d_l(t) = 1 - (1 - d_l) (1 - (1 - p)^3)``. CHOICE: masks are updated at epoch boundaries (the
paper gives no schedule). The target per layer is the SC-SDC density (``match_width``: the dense
partner's weight count) or ``density``; ``prune_scope="layer"`` ranks each tensor alone,
``"global"`` ranks all tensors together at the same overall density. After an update the pruned
weights' optimizer state is zeroed, so they stay exactly zero.
"""
from __future__ import annotations

import torch

from . import data, models
from .hooks import Hook
from .masks import magnitude_masks, zero_masked_state
from .models import maskable_weights
from .scsdc import matched_densities


def target_densities(config) -> dict:
    """``{weight name: density}`` of ``config``'s sparse model (a :class:`gflib.config.RunConfig`)
    from shapes alone (built on the meta device): the SC-SDC densities
    (:func:`gflib.scsdc.matched_densities`) with ``match_width``, else ``density`` for every
    tensor."""
    spec = data.check(config.dataset)

    def build(c):
        return lambda: models.build(c, spec.shape, spec.classes)

    if config.match_width is None:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            return {n: config.density for n in maskable_weights(build(config)())}
    return matched_densities(build(config), build(config.dense_partner()))


def window(config) -> tuple:
    """``(start, end)``: the epochs after which pruning starts and ends (one-shot: both
    ``prune_start``)."""
    end = config.prune_end if config.prune == "gradual" else config.prune_start
    return config.prune_start, end


def progress(config, epoch: int) -> float | None:
    """Fraction of the pruning window done before ``epoch`` (1-based), or None when the masks do
    not change before this epoch."""
    done = epoch - 1
    start, end = window(config)
    if not start <= done <= end:
        return None
    if end == start:
        return 1.0
    return (done - start) / (end - start)


def density_at(final: float, p: float) -> float:
    """Zhu & Gupta's cubic schedule: density after a fraction ``p`` of the window, from 1 to
    ``final`` (exactly ``final`` at ``p = 1``)."""
    return final if p >= 1 else 1 - (1 - final) * (1 - (1 - p) ** 3)


class MagnitudePruning(Hook):
    """Before each epoch of the pruning window, each run's new masks from its own weights
    (:func:`gflib.masks.magnitude_masks`) at the scheduled densities, applied to the ensemble,
    and the optimizer state of newly masked weights zeroed. The runs' target densities are worked
    out once, for the whole group."""

    def __init__(self, configs):
        self.configs = list(configs)
        self.targets = [target_densities(c) for c in self.configs]

    def masks(self, ens, p: float) -> list:
        """Each run's masks at a fraction ``p`` of the pruning window."""
        out = []
        for r, (c, final) in enumerate(zip(self.configs, self.targets)):
            weights = {n: ens.tensor(n)[r] for n in ens.weight_names}
            if c.prune_scope == "layer":
                out.append(magnitude_masks(weights, {n: density_at(d, p)
                                                     for n, d in final.items()}))
            else:
                overall = _overall(final, {n: w.numel() for n, w in weights.items()})
                out.append(magnitude_masks(weights, density_at(overall, p), scope="global"))
        return out

    def target_count(self, r: int, sizes: dict) -> int:
        """How many weights run ``r``'s masks keep once pruning has ended (``sizes``: ``{weight
        name: numel}``), counted as :func:`gflib.masks.magnitude_masks` rounds them."""
        final = self.targets[r]
        if self.configs[r].prune_scope == "layer":
            return sum(max(1, round(final[n] * size)) for n, size in sizes.items())
        return max(1, round(_overall(final, sizes) * sum(sizes.values())))

    def before_epoch(self, loop, epoch: int) -> None:
        p = progress(self.configs[0], epoch)
        if p is None:
            return
        ens = loop.ens
        ens.set_masks(self.masks(ens, p))
        for name in ens.weight_names:
            param = ens.get_parameter(ens.param_name(name))
            zero_masked_state(loop.opt, param, ens.from_runs(name, ens.keep(name)))


def _overall(final: dict, sizes: dict) -> float:
    """The overall density of per-tensor densities ``final`` over tensors of ``sizes``."""
    return sum(final[n] * size for n, size in sizes.items()) / sum(sizes.values())


PRUNING = {"none": None, "oneshot": MagnitudePruning, "gradual": MagnitudePruning}
"""``RunConfig.prune`` name -> its hook class (None: masks never change). One-shot and gradual
differ only in their window (:func:`window`)."""
