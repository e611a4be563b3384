"""Activations that torch does not ship (:class:`SReLU`), and every registered activation's
shape: :func:`curves` (value and slope on a grid) and :func:`slope_summary`. The registry of all
of them is :data:`gflib.config.ACTIVATIONS`."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn


class SReLU(nn.Module):
    """S-shaped ReLU (Jin et al. 2016) with learnable per-unit thresholds and slopes.

    ``f(x) = t_r + a_r (x - t_r)`` for ``x >= t_r``, ``x`` between, ``t_l + a_l (x - t_l)`` for
    ``x <= t_l``. Parameters have shape ``[features]``; inputs ``[B, features, ...]``.
    CHOICE of init: ``t_l = 0, a_l = 0.2, t_r = 1, a_r = 1``: at init a leaky ReLU (slope 0.2
    below 0, 1 above); the four parameters then learn where and how steeply it bends.
    """

    def __init__(self, features: int):
        super().__init__()
        self.t_left = nn.Parameter(torch.zeros(features))
        self.a_left = nn.Parameter(torch.full((features,), 0.2))
        self.t_right = nn.Parameter(torch.ones(features))
        self.a_right = nn.Parameter(torch.ones(features))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        tl, al = self.t_left.view(shape), self.a_left.view(shape)
        tr, ar = self.t_right.view(shape), self.a_right.view(shape)
        return torch.where(x >= tr, tr + ar * (x - tr), torch.where(x <= tl, tl + al * (x - tl), x))


def curves(names=None, low: float = -5.0, high: float = 5.0, points: int = 201) -> pd.DataFrame:
    """Each activation's value ``f(x)`` and slope ``f'(x)`` (by autograd) at its initial
    parameters, on ``points`` evenly spaced ``x`` in ``[low, high]``.

    ``names``: keys of :data:`gflib.config.ACTIVATIONS` (default: all), each built for one unit.
    Returns one row per (activation, x), columns ``activation``, ``x``, ``value``, ``slope``
    (float64), activations in the order of ``names``.
    """
    from .config import ACTIVATIONS

    names = list(ACTIVATIONS if names is None else names)
    unknown = [n for n in names if n not in ACTIVATIONS]
    if unknown:
        raise ValueError(f"unknown activation {unknown[0]!r}; allowed: {', '.join(ACTIVATIONS)}")
    grid = torch.linspace(low, high, points, dtype=torch.float64)
    frames = []
    for name in names:
        act = ACTIVATIONS[name](1).double()
        x = grid.clone().unsqueeze(1).requires_grad_(True)
        value = act(x)
        (slope,) = torch.autograd.grad(value.sum(), x)
        frames.append(pd.DataFrame({"activation": name, "x": grid.numpy(),
                                    "value": value.detach().squeeze(1).numpy(),
                                    "slope": slope.squeeze(1).numpy()}))
    return pd.concat(frames, ignore_index=True)


def slope_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per activation of a :func:`curves` table: ``min_slope`` and the ``x`` where it is
    reached (``x_at_min``), the share of the grid where the slope is negative
    (``negative_share``, in [0, 1]) and ``monotone`` (no negative slope on the grid)."""
    rows = {}
    for name, g in table.groupby("activation", sort=False):
        i = g["slope"].idxmin()
        negative = float((g["slope"] < 0).mean())
        rows[name] = {"min_slope": g.loc[i, "slope"], "x_at_min": g.loc[i, "x"],
                      "negative_share": negative, "monotone": negative == 0}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("activation")
    return table.astype({"monotone": bool})
