"""How much arithmetic a run's training is: FLOPs counted by torch on the meta device."""
from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import data, models


def step_flops(config) -> float:
    """Training arithmetic of one step of ``config`` (a :class:`gflib.config.RunConfig`; FLOP):
    one batch's forward and backward counted by ``torch.utils.flop_counter`` on the meta device
    (no memory, no data; every weight counted, a masked layer is computed dense)."""
    spec = data.check(config.dataset)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = models.build(config, spec.shape, spec.classes)
        x = torch.empty(config.batch_size, *spec.shape)
        with FlopCounterMode(display=False) as counter:
            model(x).sum().backward()
    return float(counter.get_total_flops())


def train_flops(config, n_train: int | None = None) -> float:
    """Training arithmetic of the whole run ``config`` (FLOP) for any model: :func:`step_flops`
    times ``epochs x ceil(n_train / batch_size)`` steps (``n_train``: the config's
    ``train_subset``, at most the dataset's training images, which it defaults to). Evaluation and
    flow measurement are not counted."""
    available = data.check(config.dataset).n_train
    n_train = n_train or min(config.train_subset or available, available)
    return step_flops(config) * config.epochs * math.ceil(n_train / config.batch_size)
