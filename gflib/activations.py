"""The activations a run can use: one :class:`ActivationSpec` per name in :data:`ACTIVATIONS`
(the builder and the facts the chapters read), :class:`SReLU` (torch does not ship it), and each
activation's shape: :func:`curves` (value and slope on a grid) and :func:`slope_summary`.

Adding one is one :func:`register` call (or one entry of :data:`ACTIVATIONS`); every test and
chapter that iterates the registry picks it up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import nn

NEGATIVE_SLOPES = ("never", "by shape", "if learned")
"""Where an activation's slope can be negative: ``"never"`` (monotone whatever it learns),
``"by shape"`` (its fixed shape slopes down somewhere, as Swish's does below -1.28),
``"if learned"`` (only where a learned parameter has turned a slope negative)."""


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


@dataclass(frozen=True)
class ActivationSpec:
    """One activation: ``build(features) -> nn.Module`` (element-wise on ``[B, F, ...]``;
    ``features`` sizes per-unit parameters), the ``label`` the book writes, and where its slope can
    be negative (``negative_slope``, one of :data:`NEGATIVE_SLOPES`)."""

    build: Callable[[int], nn.Module]
    label: str
    negative_slope: str

    def __post_init__(self):
        if self.negative_slope not in NEGATIVE_SLOPES:
            raise ValueError(f"negative_slope {self.negative_slope!r}; allowed: "
                             f"{', '.join(NEGATIVE_SLOPES)}")

    @property
    def monotone(self) -> bool:
        """At its initial parameters, the slope is never negative (``"by shape"`` is not)."""
        return self.negative_slope != "by shape"

    @property
    def has_parameters(self) -> bool:
        """It learns parameters of its own (stacked runs then go through ``torch.func.vmap``)."""
        return any(True for _ in self.build(1).parameters())


ACTIVATIONS = {
    "relu": ActivationSpec(lambda features: nn.ReLU(), "ReLU", "never"),
    "prelu": ActivationSpec(lambda features: nn.PReLU(num_parameters=1, init=0.25), "PReLU",
                            "if learned"),
    "elu": ActivationSpec(lambda features: nn.ELU(alpha=1.0), "ELU", "never"),
    "swish": ActivationSpec(lambda features: nn.SiLU(), "Swish", "by shape"),
    "srelu": ActivationSpec(lambda features: SReLU(features), "SReLU", "if learned"),
    "sigmoid": ActivationSpec(lambda features: nn.Sigmoid(), "Sigmoid", "never"),
}
"""Name -> :class:`ActivationSpec`: the study's six. CHOICEs: PReLU one slope per layer from
0.25, ELU alpha 1, Swish ``x sigmoid(x)``, SReLU as :class:`SReLU`."""


def register(name: str, spec: ActivationSpec) -> ActivationSpec:
    """Add (or replace) activation ``name`` in :data:`ACTIVATIONS`; returns ``spec``."""
    if not isinstance(spec, ActivationSpec):
        raise ValueError(f"activation {name!r} needs an ActivationSpec, got {type(spec).__name__}")
    ACTIVATIONS[name] = spec
    return spec


def check(name) -> ActivationSpec:
    """The spec of activation ``name``, or ValueError naming the allowed ones."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def unregister(name: str) -> ActivationSpec:
    """Remove activation ``name`` from :data:`ACTIVATIONS` and return its spec (what a test
    that registered one does afterwards); ValueError naming the allowed ones when it is absent."""
    check(name)
    return ACTIVATIONS.pop(name)


def build(name: str, features: int) -> nn.Module:
    """A fresh module of activation ``name`` for ``features`` units."""
    return check(name).build(features)


def never_negative() -> list:
    """The registered activations whose slope is never negative, whatever they learn."""
    return [n for n, s in ACTIVATIONS.items() if s.negative_slope == "never"]


def by_shape() -> list:
    """The registered activations whose fixed shape slopes down somewhere (not monotone)."""
    return [n for n, s in ACTIVATIONS.items() if not s.monotone]


def curves(names=None, low: float = -5.0, high: float = 5.0, points: int = 201) -> pd.DataFrame:
    """Each activation's value ``f(x)`` and slope ``f'(x)`` (by autograd) at its initial
    parameters, on ``points`` evenly spaced ``x`` in ``[low, high]``.

    ``names``: keys of :data:`ACTIVATIONS` (default: all), each built for one unit.
    Returns one row per (activation, x), columns ``activation``, ``x``, ``value``, ``slope``
    (float64), activations in the order of ``names``.
    """
    names = list(ACTIVATIONS if names is None else names)
    for name in names:
        check(name)
    grid = torch.linspace(low, high, points, dtype=torch.float64)
    frames = []
    for name in names:
        act = build(name, 1).double()
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
