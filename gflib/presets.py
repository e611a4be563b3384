"""Named scales at which every chapter runs.

- ``smoke``: seconds per chapter, for the tests (nbval) and CI;
- ``book``: the CPU default the HTML book shows (digits; the whole book in minutes on 2 cores);
- ``fmnist``: the paper's own Fashion-MNIST at a scale a 2-core CPU finishes (a training subset);
- ``paper``: the paper's settings (Fashion-MNIST, sparse width 3076, 500 epochs), for a GPU.

A chapter's parameters cell reads the default from the environment variable ``GFLIB_PRESET``
(``book`` when unset), so tests pick ``smoke`` without editing a notebook.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

ENV = "GFLIB_PRESET"
DEFAULT = "book"

PAPER_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)
OPTIMIZERS5 = ("adagrad", "adam", "rmsprop", "sgd", "momentum")
VARIANTS8 = ("NR", "DA", "L2", "SC", "BN", "DA_BN", "L2_BN", "SC_BN")
BN_LRS = {"adagrad": 0.01, "adam": 0.001, "rmsprop": 0.001, "sgd": 0.1, "momentum": 0.01,
          "adamw": 0.001}
"""CHOICE: one learning rate per optimizer for the BatchNorm chapter (the paper's grid had two, and
does not say which its p-value table used): the usual default of each optimizer."""


@dataclass(frozen=True)
class Preset:
    """One scale. Widths: the sparse hidden width and the dense widths
    ``round(r * sparse_width)`` for ``r`` in ``dense_ratios`` (the paper: 3076 and .1,...,.9)."""

    name: str
    dataset: str
    sparse_width: int
    dense_ratios: tuple
    seeds: tuple
    epochs: int
    depths: tuple = (1, 2, 4)
    optimizers: tuple = OPTIMIZERS5
    lrs: tuple = (0.001, 0.1)
    bn_depth: int = 4
    bn_variants: tuple = VARIANTS8
    bn_lrs: dict = field(default_factory=lambda: dict(BN_LRS))
    l2: float = 1e-4
    batch_size: int = 128
    train_subset: int | None = None
    test_subset: int | None = None
    note: str = ""

    @property
    def dense_widths(self) -> list:
        return [max(1, int(round(r * self.sparse_width))) for r in self.dense_ratios]

    def replace(self, **overrides) -> "Preset":
        """A copy with the fields in ``overrides`` changed (``None`` values are ignored)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown preset fields {sorted(unknown)}; allowed: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


PRESETS = {
    "smoke": Preset(
        "smoke", "digits", sparse_width=16, dense_ratios=(0.25, 0.75), seeds=(0, 1), epochs=2,
        depths=(1, 2), optimizers=("adam", "sgd"), lrs=(0.1,), bn_depth=2,
        train_subset=400, test_subset=200,
        note="a few seconds per chapter: checks that everything runs, proves nothing"),
    "book": Preset(
        "book", "digits", sparse_width=100, dense_ratios=PAPER_RATIOS, seeds=(0, 1), epochs=20,
        note="scikit-learn's 8x8 digits (1437 train / 360 test), sparse width 100, 20 epochs"),
    "fmnist": Preset(
        "fmnist", "fashion_mnist", sparse_width=100, dense_ratios=PAPER_RATIOS, seeds=(0, 1),
        epochs=10, train_subset=6000,
        note="Fashion-MNIST, a fixed 6,000-image training subset, the full 10,000 test images, "
             "sparse width 100, 10 epochs"),
    "paper": Preset(
        "paper", "fashion_mnist", sparse_width=3076, dense_ratios=PAPER_RATIOS, seeds=(0, 1, 2),
        epochs=500,
        note="the paper's Fashion-MNIST settings: sparse width 3076, dense 308-2768, 500 epochs "
             "(seeds: CHOICE)"),
}


def get(name: str | None = None, **overrides) -> Preset:
    """The preset ``name`` (default: ``$GFLIB_PRESET`` or ``book``) with ``overrides`` applied."""
    name = name or os.environ.get(ENV, DEFAULT)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)
