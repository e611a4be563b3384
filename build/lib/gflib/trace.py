"""Recording more than metrics and flow: the training loop's observers.

An observer is a hook (:mod:`gflib.hooks`) that watches a group's training without changing it
and, once training ends, returns ``result(r)`` for each run ``r``: a JSON-able dict kept as that
run's ``RunResult.trace``. A run's ``trace`` field picks its observer from :data:`OBSERVERS`.
"""
from __future__ import annotations

from .negflow import NegativeFlowTrace
from .updates import UpdateTrace

OBSERVERS = {"none": None, "updates": UpdateTrace, "activations": NegativeFlowTrace}
"""Trace name -> ``factory(configs, probe)`` (``probe`` the fixed probe batch ``(x, y)``), None
for no trace. ``"updates"``, per layer and epoch, the size of the optimizer's steps on active
weights and its second-moment estimate (:mod:`gflib.updates`); ``"activations"``, at the end, how
much gradient flows where the activation's slope is negative (:mod:`gflib.negflow`). Recording
never changes the run."""


def observer_for(configs: list, probe: tuple):
    """The observer of a group's ``trace`` (``None`` for ``"none"``)."""
    factory = OBSERVERS[configs[0].trace]
    return None if factory is None else factory(configs, probe)
