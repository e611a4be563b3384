"""What a run is: :class:`RunConfig` (validated), its store key (:func:`config_key`) and
:class:`RunResult`.

The names a config may take come from the registries of the modules that implement them, each a
record of facts per name: :data:`gflib.optimizers.OPTIMIZERS`, :data:`gflib.activations.ACTIVATIONS`,
:data:`gflib.data.DATASETS`, :data:`gflib.models.MODELS`, the learning-rate schedules
(:data:`gflib.hooks.LR_SCHEDULES`), pruning (:data:`gflib.pruning.PRUNING`) and traces
(:data:`gflib.trace.OBSERVERS`). Adding one is one entry there (see README, "Extending gflib").

CHOICEs (the paper is silent): batch size 128, constant learning rate (``lr_schedule``),
cross-entropy; L2 adds ``l2 * sum ||W||^2`` over the Linear/Conv weight tensors to the loss;
``weight_decay`` is the decoupled decay of the optimizers that take it (AdamW).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from . import activations, data, models, optimizers
from .hooks import LR_SCHEDULES
from .masks import SCOPES as PRUNE_SCOPES
from .pruning import PRUNING
from .scsdc import INITS, check_widths
from .trace import OBSERVERS

RESULTS_VERSION = 3
"""Bump when a change alters what a stored number means; results of other versions are redone."""

MAX_SEED = 2**64 - 3
"""The largest seed: a run draws under ``seed``, ``seed + 1`` (masks) and ``seed + 2`` (data
order), each a torch seed below ``2**64``."""

_INT_FIELDS = ("depth", "width", "epochs", "batch_size", "seed", "flow_points", "match_width",
               "train_subset", "test_subset", "prune_start", "prune_end")
_FLOAT_FIELDS = ("density", "lr", "l2", "weight_decay")
_BOOL_FIELDS = ("batchnorm", "skip", "augment", "tf32")
_NAME_FIELDS = {"dataset": data.DATASETS, "model": models.MODELS,
                "activation": activations.ACTIVATIONS, "optimizer": optimizers.OPTIMIZERS,
                "init": INITS, "lr_schedule": LR_SCHEDULES, "prune": PRUNING,
                "prune_scope": PRUNE_SCOPES, "trace": OBSERVERS}

COST = "cost"
"""The metadata key of the fields that change what a step costs (:func:`gflib.cost.shape`):
``"value"`` (each value its own cost) or ``"set"`` (whether it differs from its default: a
sparse member's step costs the same at any density, L2 the same at any strength)."""


def _field(default, cost: str | None = None, compare: bool = True):
    return field(default=default, compare=compare, metadata={COST: cost} if cost else {})


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run; equal configs give equal results on one CPU at one torch
    thread count (``torch.get_num_threads()``): between thread counts float sums split
    differently, and BatchNorm runs drift apart as they train (measured on digits, 1 against 2
    threads: up to 1.4e-3 in loss after 20 epochs; README, "Same config, same numbers").

    Numbers are normalised on construction (``lr=1`` is ``lr=1.0``, a numpy integer is an int, a
    numpy float of less than double precision is the shortest decimal it prints as:
    ``np.float32(0.1)`` is ``0.1``, not ``0.10000000149``) and every field is checked: a bad
    value raises ValueError naming the field, the value and what is allowed, before anything
    trains. A field the model does not read for this config (``skip`` of a depth-1 MLP, ``depth``
    of the CNN: :attr:`gflib.models.ModelSpec.ignores`) must keep its default.

    ``width``: the MLP's hidden width (the CNN's channel multiplier x 100). Sparsity: ``density``
    masks every Linear/Conv weight tensor uniformly at random to ``round(density * numel)``
    weights (at least one weight per tensor must result, else ValueError); or ``match_width``
    makes this the sparse member of an SC-SDC pair with the dense model of that width (an MLP or
    the CNN, :mod:`gflib.scsdc`). ``prune``: ``"oneshot"`` trains dense until ``prune_start`` and then
    keeps the largest weights (at ``density`` or the SC-SDC densities of ``match_width``);
    ``"gradual"`` ramps sparsity from 0 at ``prune_start`` to the target at ``prune_end`` on Zhu &
    Gupta's cubic schedule (epoch granularity); ``prune_scope`` ranks per layer or globally.
    Pruning ends before the last epoch (``prune_start``, and ``prune_end`` of gradual, below
    ``epochs``), so the run trains at least one epoch at its target masks.
    ``train_subset``/``test_subset``: a fixed random subset of the data (None = all); with
    ``batchnorm`` no training batch may hold one example. ``seed``: 0 to :data:`MAX_SEED`.
    ``trace``: what else to record (:data:`gflib.trace.OBSERVERS`), kept in :attr:`RunResult.trace`.
    ``tf32``: on a CUDA GPU, matmuls and convolutions in TF32 (10-bit mantissa) instead of fp32
    (:func:`gflib.train.float32_mode`); CHOICE: off, so GPU numbers are fp32 like the CPU's
    until TF32 is shown to leave every verdict as it is. A CPU computes fp32 either way.
    """

    dataset: str = _field("digits", "value")
    model: str = _field("mlp", "value")
    depth: int = _field(2, "value")
    width: int = _field(64, "value")
    activation: str = _field("relu", "value")
    batchnorm: bool = _field(False, "value")
    skip: bool = _field(False, "value")
    density: float = _field(1.0, "set")
    match_width: int | None = _field(None, "set")
    init: str = "dense"
    optimizer: str = "adam"
    lr: float = 1e-3
    l2: float = _field(0.0, "set")
    weight_decay: float = _field(0.0, "set")
    augment: bool = _field(False, "value")
    epochs: int = 10
    batch_size: int = _field(128, "value")
    seed: int = 0
    train_subset: int | None = _field(None, "value")
    test_subset: int | None = _field(None, "value")
    flow_points: int = 11
    lr_schedule: str = "constant"
    prune: str = _field("none", "value")
    prune_scope: str = "layer"
    prune_start: int = 0
    prune_end: int = 0
    trace: str = _field("none", "value")
    tf32: bool = _field(False, "value")
    data_dir: str | None = _field(None, "value", compare=False)
    device: str = _field("cpu", "value", compare=False)

    def __post_init__(self):
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                object.__setattr__(self, name, int(value))
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                object.__setattr__(self, name, _as_float(value))
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        self.validate()

    def validate(self) -> "RunConfig":
        """Raise ValueError naming the bad value and what is allowed; return self."""
        for label, options in _NAME_FIELDS.items():
            value = getattr(self, label)
            if not isinstance(value, str) or value not in options:
                raise ValueError(f"unknown {label} {value!r}; allowed: {', '.join(options)}")
        for label in _BOOL_FIELDS:
            value = getattr(self, label)
            if not isinstance(value, bool):
                raise ValueError(f"{label} must be True or False, got {value!r}")
        for label in ("depth", "width", "epochs", "batch_size", "flow_points"):
            _check_int(label, getattr(self, label), low=1)
        _check_int("seed", self.seed, low=0, high=MAX_SEED)
        for label in ("prune_start", "prune_end"):
            _check_int(label, getattr(self, label), low=0)
        for label in ("match_width", "train_subset", "test_subset"):
            if getattr(self, label) is not None:
                _check_int(label, getattr(self, label), low=1, none_ok=True)
        if not isinstance(self.density, float) or not 0 < self.density <= 1:
            raise ValueError(f"density must be a number in (0, 1], got {self.density!r}")
        if not isinstance(self.lr, float) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        for label in ("l2", "weight_decay"):
            v = getattr(self, label)
            if not isinstance(v, float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{label} must be a finite number >= 0, got {v!r}")
        if self.weight_decay > 0 and not optimizers.check(self.optimizer).decoupled_decay:
            decoupled = [n for n, o in optimizers.OPTIMIZERS.items() if o.decoupled_decay]
            raise ValueError(f"weight_decay (decoupled) is for {', '.join(decoupled)}; "
                             f"optimizer {self.optimizer!r} takes l2 (added to the loss) instead")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a torch device string such as 'cpu' or 'cuda', "
                             f"got {self.device!r}")
        try:
            torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"device {self.device!r} is not a torch device (such as 'cpu', "
                             f"'cuda' or 'cuda:1'): {exc}") from None
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir must be None or a path, got {self.data_dir!r}")
        if self.match_width is not None:
            if not models.check(self.model).width:
                with_width = [n for n, m in models.MODELS.items() if m.width]
                raise ValueError(f"match_width (SC-SDC) is for models {', '.join(with_width)}, "
                                 f"not {self.model!r}")
            if self.density != 1.0:
                raise ValueError("give either density or match_width, not both")
            check_widths(self.width, self.match_width)
            if self.match_width == self.width:
                raise ValueError(f"match_width {self.match_width} equals width {self.width}: "
                                 "that SC-SDC member keeps every weight (a dense net stored as "
                                 "sparse); give match_width < width, or no match_width for the "
                                 "dense run")
        if self.init != "dense" and not self.sparse:
            raise ValueError("init='sparsity_aware' needs a sparse model (density < 1 or "
                             "match_width)")
        if self.prune != "none":
            if not self.sparse:
                raise ValueError(f"prune={self.prune!r} needs a target: density < 1 or "
                                 "match_width")
            if self.init != "dense":
                raise ValueError("a pruned run starts dense: init must be 'dense'")
            gradual = self.prune == "gradual"
            end = self.prune_end if gradual else self.prune_start
            if not self.prune_start <= end < self.epochs:
                rule = ("prune_start <= prune_end < epochs" if gradual
                        else "prune_start < epochs")
                raise ValueError(
                    f"prune={self.prune!r} must end before the last epoch ({rule}, epochs="
                    f"{self.epochs}): masks change between epochs, so pruning after the last "
                    f"one never happens and the run ends denser than its target; got "
                    f"prune_start={self.prune_start}"
                    + (f", prune_end={self.prune_end}" if gradual else ""))
        elif (self.prune_start, self.prune_end) != (0, 0):
            raise ValueError("prune_start/prune_end need prune='oneshot' or 'gradual'")
        for label, why in models.check(self.model).ignores(self).items():
            if getattr(self, label) != _DEFAULTS[label]:
                raise ValueError(f"{label}={getattr(self, label)!r} changes nothing for model "
                                 f"{self.model!r} ({why}): leave {label} at its default "
                                 f"{_DEFAULTS[label]!r}, or the same network is stored under a "
                                 "new key")
        if self.batchnorm:
            _check_batchnorm_batches(self)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "RunConfig":
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    @property
    def sparse(self) -> bool:
        """True for a sparse member (masked: ``match_width`` set or ``density < 1``)."""
        return self.match_width is not None or self.density < 1.0

    @property
    def kind(self) -> str:
        """``"sparse"`` or ``"dense"`` (:attr:`sparse`); pruned runs are sparse."""
        return "sparse" if self.sparse else "dense"

    def dense_partner(self) -> "RunConfig":
        """The dense member of this run's SC-SDC pair: width ``match_width``, unmasked,
        unpruned."""
        return self.replace(width=self.match_width, match_width=None, init="dense",
                            prune="none", prune_scope="layer", prune_start=0, prune_end=0)


def _check_int(label, value, low, none_ok=False, high=None):
    if none_ok and value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, int) or value < low
            or (high is not None and value > high)):
        bound = "" if high is None else f" and <= {high}"
        raise ValueError(f"{label} must be an integer >= {low}{bound}, got {value!r}")


def _as_float(value: numbers.Real) -> float:
    """``value`` as a Python float: a numpy float of less than double precision by the shortest
    decimal that prints it in its own precision (what was typed: ``np.float32(0.1)`` -> 0.1),
    any other real number exactly as ``float`` converts it."""
    if isinstance(value, np.floating) and np.finfo(value.dtype).bits < 64:
        return float(np.format_float_positional(value, unique=True, trim="-"))
    return float(value)


def _check_batchnorm_batches(config: RunConfig) -> None:
    """BatchNorm normalises over a training batch: refuse a config whose batches (the last one
    of an epoch included) could hold a single example."""
    spec = data.check(config.dataset)
    n = spec.n_train if config.train_subset is None else min(config.train_subset, spec.n_train)
    if config.batch_size == 1 or n % config.batch_size == 1:
        subset = "" if config.train_subset is None else f", train_subset={config.train_subset}"
        raise ValueError(f"batchnorm needs at least 2 examples in every training batch; "
                         f"batch_size={config.batch_size} over {n} training examples "
                         f"({config.dataset}{subset}) leaves a batch of 1: choose a batch_size "
                         ">= 2 that does not leave one example over")


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def non_default_fields(config: RunConfig) -> dict:
    """The fields of ``config`` that differ from :class:`RunConfig`'s defaults, less those that
    do not change what a run means (``device``, ``data_dir``): what a store key hashes, so a field
    added later with a default leaves every existing key unchanged."""
    out = {}
    for f in dataclasses.fields(RunConfig):
        if not f.compare:
            continue
        value = getattr(config, f.name)
        if value != f.default:
            out[f.name] = value
    return out


def config_key(config: RunConfig | dict) -> str:
    """A 20-hex-digit hash of :data:`RESULTS_VERSION` and the config's
    :func:`non_default_fields` (numbers normalised: ``lr=1`` is ``lr=1.0``): a field added later
    with a default leaves every stored key valid, and bumping the version retires results whose
    numbers meant something else."""
    if not isinstance(config, RunConfig):
        config = RunConfig(**config)
    blob = json.dumps({"results_version": RESULTS_VERSION, **non_default_fields(config)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class RunResult:
    """What one run recorded.

    history: one dict per epoch 1..E with ``train_loss, train_acc, test_loss, test_acc``
    (accuracies in [0, 1]); flow: ``{epoch: {measure: value}}`` at the scheduled epochs;
    flow_mean: each measure averaged over the scheduled epochs (the paper's "average gradient
    flow"); diverged: the run failed numerically (``diverged_reason``: ``"non-finite"`` loss, the
    run stopped there; or ``"exploded"``, its last-epoch training loss above
    :data:`gflib.train.EXPLODE_FACTOR` times its first batch's); its metrics are kept as measured,
    its flow_mean is NaN and the statistics leave it out (and count it). sparsity: what the
    final masks leave (:func:`gflib.train.final_sparsity`; empty in results stored before it
    was recorded). off_target: a pruned run whose final masks do not keep its target's number
    of weights (``sparsity["target"]``): not the sparse net it was meant to be, so the
    statistics leave it out (and count it).
    """

    config: dict
    history: list
    flow: dict
    flow_mean: dict
    final: dict
    diverged: bool
    diverged_epoch: int | None
    wall_s: float
    device: str
    diverged_reason: str | None = None
    trace: dict = field(default_factory=dict)
    sparsity: dict = field(default_factory=dict)
    off_target: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["flow"] = {str(k): v for k, v in self.flow.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        d = dict(d)
        d["flow"] = {int(k): v for k, v in d["flow"].items()}
        return cls(**d)

    @property
    def run_config(self) -> RunConfig:
        return RunConfig(**self.config)
