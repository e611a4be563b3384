"""What the training loop (:func:`gflib.train.train`) calls besides training: hooks.

A hook sees the loop's state (``loop``: a :class:`gflib.train.Loop` with the group's ensemble
``ens``, optimizer ``opt``, ``configs``, dataset ``ds``, probe batch ``probe`` and what the group
has recorded, ``records``) at fixed points:

- ``start(loop)``: once, before the first epoch (after a checkpoint is restored: not again);
- ``before_epoch(loop, epoch)``: before epoch ``epoch`` (1-based) trains, e.g. set its learning
  rate, update the masks;
- ``before_step(loop) -> token`` and ``after_step(loop, token, epoch)``: around every optimizer
  step (the gradients are there; ``token`` is what ``before_step`` returned);
- ``after_epoch(loop, epoch)``: after the epoch's evaluation;
- ``result(r) -> dict``: once training has ended, what the hook kept for run ``r`` (an observer's
  record, stored as the run's ``trace``); ``None`` for hooks that only act.

A hook that holds state across epochs gives ``state_dict()`` / ``load_state_dict(state)`` so
checkpoints resume it. The learning-rate schedules are here (:data:`LR_SCHEDULES`); magnitude
pruning is :mod:`gflib.pruning`'s; the observers (traces) are :mod:`gflib.trace`'s. Each is
chosen by the config, so the results store keys it. A new schedule is one class.
"""
from __future__ import annotations

import math


class Hook:
    """The do-nothing hook: subclasses override what they need."""

    def start(self, loop) -> None:
        pass

    def before_epoch(self, loop, epoch: int) -> None:
        pass

    def before_step(self, loop):
        return None

    def after_step(self, loop, token, epoch: int) -> None:
        pass

    def after_epoch(self, loop, epoch: int) -> None:
        pass

    def result(self, r: int) -> dict | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LRSchedule(Hook):
    """Sets the learning rate of every parameter group to ``config.lr * factor(epoch)`` before
    each epoch; a schedule is its :meth:`factor`."""

    def __init__(self, config):
        self.lr, self.epochs = config.lr, config.epochs

    def factor(self, epoch: int) -> float:
        """The factor of the base rate in epoch ``epoch`` (1-based)."""
        raise NotImplementedError

    def before_epoch(self, loop, epoch: int) -> None:
        for group in loop.opt.param_groups:
            group["lr"] = self.lr * self.factor(epoch)


class Constant(LRSchedule):
    """The base rate throughout (CHOICE: the paper gives no schedule)."""

    def factor(self, epoch: int) -> float:
        return 1.0


class Cosine(LRSchedule):
    """Cosine annealing per epoch: ``(1 + cos(pi (epoch - 1) / epochs)) / 2``."""

    def factor(self, epoch: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / self.epochs))


LR_SCHEDULES = {"constant": Constant, "cosine": Cosine}
"""Name -> schedule class (``RunConfig.lr_schedule``)."""
