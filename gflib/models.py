"""The study's networks: MLPs, the talk's CNN, Wide ResNet-50. Activations come from the registry
:data:`gflib.config.ACTIVATIONS`.

CHOICEs (the paper is silent): BatchNorm sits between a layer and its activation, and the layer
before a BatchNorm has no bias: that bias's true gradient is 0, and Adam or RMSProp would turn
the float noise in it into steps of size lr, so two exact implementations (stacked and one by one)
would drift apart there. A skip connection adds a hidden layer's input to its output where both
have the same width (every hidden layer but the first in an MLP).
"""
from __future__ import annotations

import torch
from torch import nn



def activation(name: str, features: int) -> nn.Module:
    """A fresh activation module from :data:`gflib.config.ACTIVATIONS`; ``features`` sizes
    per-unit parameters (SReLU)."""
    from .config import ACTIVATIONS

    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name](features)


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
    from .config import ACTIVATIONS

    if activation_name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation_name!r}; allowed: "
                         f"{', '.join(ACTIVATIONS)}")


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
