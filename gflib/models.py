"""The study's networks: MLPs, the talk's CNN, Wide ResNet-50, and the registry of models a run
can use (:data:`MODELS`, one :class:`ModelSpec` each). Activations come from
:data:`gflib.activations.ACTIVATIONS`.

CHOICEs (the paper is silent): BatchNorm sits between a layer and its activation, and the layer
before a BatchNorm has no bias: that bias's true gradient is 0, and Adam or RMSProp would turn
the float noise in it into steps of size lr, so two exact implementations (stacked and one by one)
would drift apart there. A skip connection adds a hidden layer's input to its output where both
have the same width (every hidden layer but the first in an MLP).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .activations import build as activation, check as check_activation


class Block(nn.Module):
    """One hidden layer: Linear (or Conv), optional BatchNorm, activation, optional skip."""

    def __init__(self, layer: nn.Module, features: int, act: str, batchnorm: bool, skip: bool,
                 norm=nn.BatchNorm1d):
        super().__init__()
        self.layer = layer
        self.norm = norm(features) if batchnorm else nn.Identity()
        self.act = activation(act, features)
        self.skip = skip

    def forward(self, x):
        out = self.act(self.norm(self.layer(x)))
        return out + x if self.skip else out


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units between ``in_features`` and ``out_features``.

    Input ``[B, ...]`` (flattened), output logits ``[B, out_features]``.
    """

    def __init__(self, in_features: int, out_features: int, depth: int, width: int,
                 activation: str = "relu", batchnorm: bool = False, skip: bool = False):
        super().__init__()
        check_mlp(in_features, out_features, depth, width, activation)
        blocks = []
        fan_in = in_features
        for i in range(depth):
            blocks.append(Block(nn.Linear(fan_in, width, bias=not batchnorm), width, activation,
                                batchnorm, skip and i > 0))
            fan_in = width
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(*blocks)
        self.out = nn.Linear(fan_in, out_features)

    def forward(self, x):
        return self.out(self.hidden(self.flatten(x)))


def check_mlp(in_features, out_features, depth, width, activation_name):
    for label, value in (("in_features", in_features), ("out_features", out_features),
                         ("depth", depth), ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
    check_activation(activation_name)


class CNN(nn.Module):
    """The talk's CNN: Conv32-Conv64-Conv64-Conv128-Conv128 (3x3, padding 1), each followed by
    BatchNorm (optional), the activation and a 2x2 max-pool, then one Linear.

    CHOICE: a block pools only while its input is at least 2 pixels wide, so 8x8 digits work;
    with ``skip`` each block adds a 1x1-conv projection of its input (identity when the channels
    match) before pooling. Input ``[B, C, H, W]``, output ``[B, out_features]``.
    """

    CHANNELS = (32, 64, 64, 128, 128)

    def __init__(self, in_shape: tuple, out_features: int, activation: str = "relu",
                 batchnorm: bool = False, skip: bool = False, width_multiplier: float = 1.0):
        super().__init__()
        c, h, w = in_shape
        layers = []
        for ch in self.CHANNELS:
            ch = max(1, int(round(ch * width_multiplier)))
            layers.append(ConvBlock(c, ch, activation, batchnorm, skip, pool=min(h, w) >= 2))
            if min(h, w) >= 2:
                h, w = h // 2, w // 2
            c = ch
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c * h * w, out_features)

    def forward(self, x):
        return self.out(self.features(x).flatten(1))


class ConvBlock(nn.Module):
    def __init__(self, c_in, c_out, act, batchnorm, skip, pool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm)
        self.norm = nn.BatchNorm2d(c_out) if batchnorm else nn.Identity()
        self.act = activation(act, c_out)
        self.shortcut = None
        if skip:
            self.shortcut = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x):
        out = self.act(self.norm(self.conv(x)))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.pool(out)


def wide_resnet50(out_features: int) -> nn.Module:
    """torchvision's Wide ResNet-50-2, untrained, with ``out_features`` classes."""
    from torchvision.models import wide_resnet50_2

    return wide_resnet50_2(weights=None, num_classes=out_features)


def maskable_weights(model: nn.Module) -> dict:
    """``{name: parameter}`` of the weight tensors of every Linear and Conv layer, in order.

    These are the tensors masks cover and the gradient-flow measures sum over (L = their count).
    """
    out = {}
    for mname, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out[f"{mname}.weight" if mname else "weight"] = module.weight
    return out


@dataclass(frozen=True)
class ModelSpec:
    """One model: ``build(config, shape, classes) -> nn.Module`` (drawn under the caller's RNG;
    ``shape`` one input's ``(C, H, W)``, ``classes`` the outputs), the book's ``label``; ``width``:
    it has a width (``config.width``), so SC-SDC pairs (``match_width``) and magnitude pruning to
    their densities apply; ``stacks``: K runs of it train as one stacked model
    (:class:`gflib.stacked.StackedMLP`), else one at a time; ``ignores(config)``:
    ``{field: why}`` of the config fields its network does not read for that config
    (:class:`gflib.config.RunConfig` refuses them at any value but their default, which would
    store the same network under a new key)."""

    build: Callable
    label: str
    width: bool
    stacks: bool = False
    ignores: Callable = lambda config: {}


def _mlp(config, shape, classes):
    return MLP(math.prod(shape), classes, config.depth, config.width,
               activation=config.activation, batchnorm=config.batchnorm, skip=config.skip)


def _cnn(config, shape, classes):
    return CNN(shape, classes, activation=config.activation, batchnorm=config.batchnorm,
               skip=config.skip, width_multiplier=config.width / 100)


def _wrn50(config, shape, classes):
    return wide_resnet50(classes)


_WRN_WHOLE = "Wide ResNet-50-2 is torchvision's network, whole"
MODELS = {
    "mlp": ModelSpec(_mlp, "MLP", width=True, stacks=True, ignores=lambda config: {
        "skip": "an MLP's skips join hidden layers 2..depth: depth 1 has none"}
        if config.depth == 1 else {}),
    "cnn": ModelSpec(_cnn, "CNN", width=True, ignores=lambda config: {
        "depth": f"the CNN has its {len(CNN.CHANNELS)} convolution blocks at any depth"}),
    "wrn50": ModelSpec(_wrn50, "Wide ResNet-50-2", width=False,
                       ignores=lambda config: dict.fromkeys(
                           ("depth", "width", "activation", "batchnorm", "skip"), _WRN_WHOLE)),
}
"""Name -> :class:`ModelSpec`: ``width`` is the MLP's hidden width and the CNN's channel
multiplier x 100; Wide ResNet-50 has none."""


def register(name: str, spec: ModelSpec) -> ModelSpec:
    """Add (or replace) model ``name`` in :data:`MODELS`; returns ``spec``."""
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"model {name!r} needs a ModelSpec, got {type(spec).__name__}")
    MODELS[name] = spec
    return spec


def check(name) -> ModelSpec:
    """The spec of model ``name``, or ValueError naming the allowed ones."""
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    return MODELS[name]


def unregister(name: str) -> ModelSpec:
    """Remove model ``name`` from :data:`MODELS` and return its spec (what a test
    that registered one does afterwards); ValueError naming the allowed ones when it is absent."""
    check(name)
    return MODELS.pop(name)


def build(config, shape: tuple, classes: int) -> nn.Module:
    """``config.model``'s network for inputs of ``shape`` and ``classes`` outputs."""
    return check(config.model).build(config, tuple(shape), classes)
