"""Named scales at which every chapter runs.

- ``smoke``: seconds per chapter, for the tests (nbval) and CI;
- ``book``: the CPU default the HTML book shows (digits; the whole book in minutes on 2 cores);
- ``fmnist``: the paper's own Fashion-MNIST at a scale a 2-core CPU finishes (a training subset);
- ``gpu``: Fashion-MNIST where the sparse nets are connected at the paper's own width ratios
  (sparse width 512, 20,000 training images, 20 epochs, 3 seeds), for one GPU in minutes;
- ``paper``: the paper's settings (Fashion-MNIST, sparse width 3076, 500 epochs), for a GPU.

A chapter's parameters cell reads the default from the environment variable ``GFLIB_PRESET``
(``book`` when unset), so tests pick ``smoke`` without editing a notebook.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass

from . import data
from .config import RunConfig
from .scsdc import PAPER_DENSITY_RATIOS

ENV = "GFLIB_PRESET"
DEFAULT = "book"


@dataclass(frozen=True)
class Preset:
    """One scale: data, widths, seeds, epochs. Widths: the sparse hidden width and the dense
    widths ``round(r * sparse_width)`` (at least 1) for ``r`` in ``dense_ratios`` (the paper:
    3076 and .1, ..., .9), every one below the sparse width. ``trim``: chapters run a reduced
    grid (their own ``TRIMMED`` settings), for the smoke tests. ``tf32``: every run's
    :attr:`gflib.config.RunConfig.tf32` (CUDA matmuls and convolutions in TF32; off: fp32).
    Chapter-specific settings live with each chapter (:mod:`gflib.chapters`)."""

    name: str
    dataset: str
    sparse_width: int
    dense_ratios: tuple
    seeds: tuple
    epochs: int
    batch_size: int = 128
    train_subset: int | None = None
    test_subset: int | None = None
    trim: bool = False
    tf32: bool = False
    note: str = ""

    def __post_init__(self):
        data.check(self.dataset)
        for label in ("sparse_width", "epochs", "batch_size"):
            _positive_int(label, getattr(self, label))
        for label in ("train_subset", "test_subset"):
            if getattr(self, label) is not None:
                _positive_int(label, getattr(self, label))
        for label in ("trim", "tf32"):
            if not isinstance(getattr(self, label), bool):
                raise ValueError(f"{label} must be True or False, got {getattr(self, label)!r}")
        seeds = self.seeds
        if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
            raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
        seeds = tuple(int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool)
                      else s for s in seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                            for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers >= 0, got "
                             f"{self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        ratios = tuple(self.dense_ratios) if hasattr(self.dense_ratios, "__iter__") else ()
        if not ratios or any(not isinstance(r, (int, float)) or not 0 < r < 1 for r in ratios):
            raise ValueError(f"dense_ratios must be a non-empty list of numbers in (0, 1), got "
                             f"{self.dense_ratios!r}")
        object.__setattr__(self, "dense_ratios", ratios)
        if max(self.dense_widths) >= self.sparse_width:
            raise ValueError(f"sparse_width {self.sparse_width} with dense_ratios {ratios} gives "
                             f"dense widths {self.dense_widths}, not all below it: a sparse member "
                             "as wide as its dense partner keeps every weight (it is dense); "
                             "give a wider sparse_width or smaller ratios")

    def config(self, **fields):
        """A :class:`gflib.config.RunConfig` at this scale (dataset, epochs, batch size, subsets)
        with ``fields`` (e.g. ``depth``, ``optimizer``, ``device``)."""
        return RunConfig(dataset=self.dataset, epochs=self.epochs, batch_size=self.batch_size,
                         train_subset=self.train_subset, test_subset=self.test_subset,
                         tf32=self.tf32, **fields)

    @property
    def summary(self) -> str:
        """The scale in words, from the fields themselves (so an override shows)."""
        train = f"{self.train_subset:,}" if self.train_subset else "all"
        test = f"{self.test_subset:,}" if self.test_subset else "all"
        return (f"{self.dataset}, {train} training / {test} test images, sparse width "
                f"{self.sparse_width}, dense widths {', '.join(map(str, self.dense_widths))}, "
                f"{self.epochs} epochs, seeds {', '.join(map(str, self.seeds))}"
                + (", TF32 on a GPU" if self.tf32 else ""))

    def pick(self, full: dict, trimmed: dict) -> dict:
        """A chapter's settings at this scale: ``trimmed`` when :attr:`trim`, else ``full``."""
        return trimmed if self.trim else full

    @property
    def dense_widths(self) -> list:
        return [max(1, int(round(r * self.sparse_width))) for r in self.dense_ratios]

    def replace(self, **overrides) -> "Preset":
        """A copy with the fields in ``overrides`` changed (``None`` values are ignored; any
        other value is checked: an empty ``seeds`` is an error, not the preset's seeds)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown preset fields {sorted(unknown)}; allowed: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _positive_int(label, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{label} must be an integer >= 1, got {value!r}")


CPU_RATIOS = (0.25, 0.4, 0.55, 0.7, 0.85)
"""CHOICE for the CPU scales (sparse width 100): dense/sparse width ratios from 0.25, not the
paper's 0.1. A sparse hidden unit gets on average ``ratio^2 * width`` inputs from the layer
before: 6.25 at 0.25 x 100 (the paper: 0.1^2 x 3076 = 31), where 0.1 x 100 would leave 1, and a
third of the units with none (a mostly disconnected net that says nothing about sparse
training). Widening the sparse net instead (500 units at ratio 0.1) would cost about 5 times the
CPU time of the whole book."""

GPU_WIDTH = 512
"""CHOICE for the ``gpu`` preset: the narrowest sparse width at which the paper's ratios leave
every SC-SDC sparse hidden unit connected, ``0.1^2 x 512 = 5.1`` inputs on average from the
layer before (``gflib.scsdc.regime``), at a fifth of the paper's arithmetic per step."""

PRESETS = {
    "smoke": Preset(
        "smoke", "digits", sparse_width=16, dense_ratios=(0.25, 0.75), seeds=(0, 1), epochs=2,
        train_subset=400, test_subset=200, trim=True,
        note="a few seconds per chapter: checks that everything runs, proves nothing"),
    "book": Preset(
        "book", "digits", sparse_width=100, dense_ratios=CPU_RATIOS, seeds=(0, 1), epochs=20,
        note="scikit-learn's 8x8 digits (1437 train / 360 test), sparse width 100, dense widths "
             "25-85, 20 epochs"),
    "fmnist": Preset(
        "fmnist", "fashion_mnist", sparse_width=100, dense_ratios=CPU_RATIOS, seeds=(0, 1),
        epochs=10, train_subset=6000,
        note="Fashion-MNIST, a fixed 6,000-image training subset, the full 10,000 test images, "
             "sparse width 100, dense widths 25-85, 10 epochs"),
    "gpu": Preset(
        "gpu", "fashion_mnist", sparse_width=GPU_WIDTH, dense_ratios=PAPER_DENSITY_RATIOS,
        seeds=(0, 1, 2), epochs=20, train_subset=20_000,
        note="Fashion-MNIST for one GPU: a fixed 20,000-image training subset, the full 10,000 "
             "test images, sparse width 512, dense widths 51-461 (the paper's ratios), 20 "
             "epochs, 3 seeds"),
    "paper": Preset(
        "paper", "fashion_mnist", sparse_width=3076, dense_ratios=PAPER_DENSITY_RATIOS,
        seeds=(0, 1, 2), epochs=500,
        note="the paper's Fashion-MNIST settings: sparse width 3076, dense 308-2768, 500 epochs "
             "(seeds: CHOICE)"),
}


def get(name: str | None = None, **overrides) -> Preset:
    """The preset ``name`` (default: ``$GFLIB_PRESET`` or ``book``) with ``overrides`` applied."""
    name = name or os.environ.get(ENV, DEFAULT)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)
