"""Activations that torch does not ship. The registry of all of them is
:data:`gflib.config.ACTIVATIONS`."""
from __future__ import annotations

import torch
from torch import nn


class SReLU(nn.Module):
    """S-shaped ReLU (Jin et al. 2016) with learnable per-unit thresholds and slopes.

    ``f(x) = t_r + a_r (x - t_r)`` for ``x >= t_r``, ``x`` between, ``t_l + a_l (x - t_l)`` for
    ``x <= t_l``. Parameters have shape ``[features]``; inputs ``[B, features, ...]``.
    CHOICE of init: ``t_l = 0, a_l = 0.2, t_r = 1, a_r = 1`` (a leaky ReLU capped smoothly above 1).
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
