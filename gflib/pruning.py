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

from .config import RunConfig
from .masks import magnitude_masks
from .scsdc import layer_densities


def target_densities(config: RunConfig, ens, r: int) -> dict:
    """``{weight name: final density}`` of run ``r`` of ensemble ``ens`` (config ``config``)."""
    names = ens.weight_names
    if config.match_width is None:
        return {n: config.density for n in names}
    shapes = [ens.tensor(n).shape[1:] for n in names]
    in_features, out_features = shapes[0][1], shapes[-1][0]
    dens = layer_densities(in_features, out_features, len(names) - 1, config.width,
                           config.match_width)
    return dict(zip(names, dens))


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


def masks_at(configs: list, ens, epoch: int) -> list | None:
    """Each run's new masks before ``epoch`` (1-based), or None when they do not change."""
    p = progress(configs[0], epoch)
    if p is None:
        return None
    out = []
    for r, c in enumerate(configs):
        weights = {n: ens.tensor(n)[r] for n in ens.weight_names}
        final = target_densities(c, ens, r)
        if c.prune_scope == "layer":
            out.append(magnitude_masks(weights, {n: density_at(d, p) for n, d in final.items()}))
        else:
            total = sum(w.numel() for w in weights.values())
            overall = sum(final[n] * w.numel() for n, w in weights.items()) / total
            out.append(magnitude_masks(weights, density_at(overall, p), scope="global"))
    return out
