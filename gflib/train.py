"""One training run from one :class:`RunConfig`.

CHOICEs (the paper is silent): batch size 128, constant learning rate, cross-entropy; L2 adds
``l2 * sum ||W||^2`` over the Linear/Conv weight tensors to the loss; ``weight_decay`` is AdamW's
decoupled decay; momentum 0.9 for ``momentum``; flow measured on a fixed probe batch of the first
1000 training examples of a seed-0 permutation (un-augmented), at :func:`gflib.flow.schedule`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import data as gdata
from .flow import MEASURES, measure, schedule
from .masks import apply_masks, check_density, random_masks, sparsity_aware_init_
from .models import ACTIVATIONS, CNN, MLP, MODEL_KINDS, maskable_weights, wide_resnet50
from .scsdc import INITS, check_widths, sparse_member

OPTIMIZERS = ("sgd", "momentum", "adagrad", "adam", "rmsprop", "adamw")
PROBE_SIZE = 1000


def _one_thread_after_fork():
    torch.set_num_threads(1)


# A forked child (a ProcessPoolExecutor's workers on Linux before Python 3.14) inherits the
# parent's OpenMP thread pool without its threads and hangs in its first parallel torch op once
# the parent has run one: give forked children one thread each, as torch's DataLoader workers do.
os.register_at_fork(after_in_child=_one_thread_after_fork)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run; equal configs give equal results on CPU.

    ``width`` is the hidden width (MLP) or channel multiplier x 100 (CNN, ignored by wrn50).
    Sparsity: ``density`` masks every Linear/Conv weight tensor uniformly at random; or
    ``match_width`` makes this the sparse member of an SC-SDC pair with a dense MLP of that width
    (see :mod:`gflib.scsdc`), whose dense member is the config with ``width=match_width``.
    ``train_subset``/``test_subset`` take a fixed random subset of the data (None = all).
    """

    dataset: str = "digits"
    model: str = "mlp"
    depth: int = 2
    width: int = 64
    activation: str = "relu"
    batchnorm: bool = False
    skip: bool = False
    density: float = 1.0
    match_width: int | None = None
    init: str = "dense"
    optimizer: str = "adam"
    lr: float = 1e-3
    l2: float = 0.0
    weight_decay: float = 0.0
    augment: bool = False
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    flow_points: int = 11
    data_dir: str | None = field(default=None, compare=False)
    device: str = field(default="cpu", compare=False)

    def validate(self) -> "RunConfig":
        """Raise ValueError naming the bad value and what is allowed; return self."""
        def allowed(label, value, options):
            if value not in options:
                raise ValueError(f"unknown {label} {value!r}; allowed: {', '.join(options)}")

        allowed("dataset", self.dataset, gdata.DATASETS)
        allowed("model", self.model, MODEL_KINDS)
        allowed("activation", self.activation, ACTIVATIONS)
        allowed("optimizer", self.optimizer, OPTIMIZERS)
        allowed("init", self.init, INITS)
        for label in ("depth", "width", "epochs", "batch_size", "flow_points"):
            v = getattr(self, label)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{label} must be an integer >= 1, got {v!r}")
        check_density(self.density)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        for label in ("l2", "weight_decay"):
            v = getattr(self, label)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {v!r}")
        if self.weight_decay > 0 and self.optimizer != "adamw":
            raise ValueError(f"weight_decay (decoupled) is AdamW's; optimizer {self.optimizer!r} "
                             "takes l2 (added to the loss) instead")
        if self.match_width is not None:
            if self.model != "mlp":
                raise ValueError(f"match_width (SC-SDC) is for model 'mlp', not {self.model!r}")
            if self.density != 1.0:
                raise ValueError("give either density or match_width, not both")
            check_widths(self.width, self.match_width)
        if self.init != "dense" and self.match_width is None and self.density == 1.0:
            raise ValueError("init='sparsity_aware' needs a sparse model (density < 1 or match_width)")
        for label in ("train_subset", "test_subset"):
            v = getattr(self, label)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{label} must be None or an integer >= 1, got {v!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def sparse(self) -> bool:
        return self.match_width is not None or self.density < 1.0


@dataclass
class RunResult:
    """What one run recorded.

    history: one dict per epoch 1..E with ``train_loss, train_acc, test_loss, test_acc``
    (accuracies in [0, 1]); flow: ``{epoch: {measure: value}}`` at the scheduled epochs;
    flow_mean: each measure averaged over the scheduled epochs (the paper's "average gradient
    flow"); diverged: a non-finite loss stopped the run (its last metrics are kept as measured).
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

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["flow"] = {str(k): v for k, v in self.flow.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        d = dict(d)
        d["flow"] = {int(k): v for k, v in d["flow"].items()}
        return cls(**d)


@functools.lru_cache(maxsize=4)
def _dataset_cpu(name, data_dir, train_subset, test_subset) -> gdata.Dataset:
    ds = gdata.load(name, data_dir=data_dir)
    return ds.subset(train_subset, test_subset, seed=0)


def dataset_for(config: RunConfig) -> gdata.Dataset:
    """The (cached, CPU) dataset a config trains on: its subsets are fixed (seed 0)."""
    return _dataset_cpu(config.dataset, config.data_dir, config.train_subset, config.test_subset)


def build_model(config: RunConfig, ds: gdata.Dataset):
    """``(model, masks)`` for ``config`` on ``ds`` (masks ``{}`` when dense), seeded by config.seed."""
    options = dict(activation=config.activation, batchnorm=config.batchnorm, skip=config.skip)
    if config.match_width is not None:
        return sparse_member(ds.in_features, ds.n_classes, config.depth, config.width,
                             config.match_width, config.seed, init=config.init, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.model == "mlp":
            model = MLP(ds.in_features, ds.n_classes, config.depth, config.width, **options)
        elif config.model == "cnn":
            model = CNN(ds.shape, ds.n_classes, width_multiplier=config.width / 100, **options)
        else:
            model = wide_resnet50(ds.n_classes)
    masks = {}
    if config.density < 1.0:
        masks = random_masks(model, config.density, config.seed + 1)
        apply_masks(model, masks)
        if config.init == "sparsity_aware":
            sparsity_aware_init_(model, masks)
    return model, masks


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0):
    """The torch.optim optimizer called ``name`` (one of :data:`OPTIMIZERS`)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    return {
        "sgd": lambda: torch.optim.SGD(params, lr=lr),
        "momentum": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9),
        "adagrad": lambda: torch.optim.Adagrad(params, lr=lr),
        "adam": lambda: torch.optim.Adam(params, lr=lr),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr),
        "adamw": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
    }[name]()


def l2_penalty(model) -> torch.Tensor:
    """``sum ||W||^2`` over the Linear/Conv weight tensors (a scalar tensor)."""
    return sum(w.pow(2).sum() for w in maskable_weights(model).values())


def probe_batch(ds: gdata.Dataset, size: int = PROBE_SIZE):
    """The fixed probe batch ``(x, y)``: the first ``size`` training examples of a seed-0
    permutation (the whole training set if smaller)."""
    idx = torch.randperm(len(ds.y_train), generator=torch.Generator().manual_seed(0))[:size]
    idx = idx.to(ds.y_train.device)
    return ds.x_train[idx], ds.y_train[idx]


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 2048) -> tuple:
    """``(mean cross-entropy, accuracy)`` of ``model`` in eval mode on ``(x, y)``."""
    was = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        logits = model(x[i:i + batch_size])
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was)
    return loss / len(y), correct / len(y)


def run(config: RunConfig, progress: bool = False, measure_flow: bool = True) -> RunResult:
    """Train one model as ``config`` says and return what it recorded (never raises on
    divergence). ``measure_flow=False`` skips the flow schedule (for timing comparisons)."""
    config.validate()
    start = time.perf_counter()
    device = torch.device(config.device)
    ds = dataset_for(config).to(device)
    model, masks = build_model(config, ds)
    model.to(device)
    if masks:
        apply_masks(model, masks)
    opt = make_optimizer(config.optimizer, model.parameters(), config.lr, config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed + 2)
    probe = probe_batch(ds)
    points = set(schedule(config.epochs, config.flow_points)) if measure_flow else set()
    flow = {}
    history = []
    diverged_epoch = None

    def record_flow(epoch):
        if epoch in points:
            flow[epoch] = measure(model, *probe, masks=masks)

    record_flow(0)
    epochs = range(1, config.epochs + 1)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="epochs", leave=False)
    model.train()
    for epoch in epochs:
        total, correct, seen = 0.0, 0, 0
        for idx in gdata.batches(len(ds.y_train), config.batch_size, gen, device):
            x, y = ds.x_train[idx], ds.y_train[idx]
            if config.augment:
                x = gdata.augment(x, config.dataset, gen)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            objective = loss + config.l2 * l2_penalty(model) if config.l2 else loss
            if not torch.isfinite(objective):
                diverged_epoch = epoch
                break
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            total += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        test_loss, test_acc = evaluate(model, ds.x_test, ds.y_test)
        history.append({
            "epoch": epoch,
            "train_loss": total / seen if seen else float("nan"),
            "train_acc": correct / seen if seen else float("nan"),
            "test_loss": test_loss,
            "test_acc": test_acc,
        })
        if diverged_epoch is None and not math.isfinite(test_loss):
            diverged_epoch = epoch
        if diverged_epoch is not None:
            break
        record_flow(epoch)
    flow_mean = {k: float(np.mean([f[k] for f in flow.values()])) if flow else float("nan")
                 for k in MEASURES}
    if diverged_epoch is not None:
        flow_mean = {k: float("nan") for k in MEASURES}
    last = history[-1]
    return RunResult(
        config=config.to_dict(), history=history, flow=flow, flow_mean=flow_mean,
        final={"test_loss": last["test_loss"], "test_acc": last["test_acc"],
               "train_loss": last["train_loss"], "train_acc": last["train_acc"]},
        diverged=diverged_epoch is not None, diverged_epoch=diverged_epoch,
        wall_s=time.perf_counter() - start, device=str(device),
    )
