"""Recording more than metrics and flow: the training loop's observers.

An observer watches a group's training without changing it. :func:`gflib.train.train` calls
``before_step(ensemble)`` after the backward pass and before the optimizer's step (what it returns
is handed back), then ``after_step(ensemble, optimizer, before, epoch)``, and, once training ends,
``result(r)`` for each run ``r``: a JSON-able dict kept as that run's ``RunResult.trace``.
A run's ``trace`` field (:data:`gflib.config.TRACES`) picks its observer from :data:`OBSERVERS`
(``name -> factory(configs, probe)``, ``probe`` the fixed probe batch ``(x, y)``).
"""
from __future__ import annotations

import importlib

OBSERVERS = {
    "updates": "gflib.updates:UpdateTrace",
    "activations": "gflib.negflow:NegativeFlowTrace",
}
"""Trace name -> ``"module:factory"`` (imported when first used)."""


def observer_for(configs: list, probe: tuple):
    """The observer of a group's ``trace`` (``None`` for ``"none"``)."""
    name = configs[0].trace
    if name == "none":
        return None
    module, _, factory = OBSERVERS[name].partition(":")
    return getattr(importlib.import_module(module), factory)(configs, probe)
