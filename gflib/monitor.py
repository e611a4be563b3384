"""Gradient flow of a model in the user's own training loop: :class:`FlowMonitor`.

::

    mon = FlowMonitor(model, probe=(x_probe, y_probe))
    for step, (x, y) in enumerate(loader):
        ...  # the user's step
        if step % 100 == 0:
            mon.record(step)
    mon.table()  # step, layer, measure, value
    mon.plot()   # EGF per layer beside the baseline norms

Each record measures the model as it is then (:func:`gflib.flow.measure_table`) on the fixed probe
batch: cross-entropy of the logits ``[B, C]`` against labels ``[B]``, no regulariser, BatchNorm on
the probe's statistics, with the masks the model keeps (``torch.nn.utils.prune``,
``parametrize`` / ``torch.ao.pruning``, gflib's; :func:`gflib.found_masks.masks_of`, found
again at each record, so masks that change during training are followed) or a dict the user's
code keeps (read at each record, so one updated in place is followed too). Recording changes
nothing: weights, ``.grad``, BatchNorm statistics, modes, RNG states and the optimizer are as
they were, so training with and without it gives the same weights, bit for bit.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import pandas as pd
import torch
from torch import nn

from .flow import MODEL, measure_table
from .plots import flow_by_layer

COLUMNS = ("step", "layer", "measure", "value")


def check_probe(probe) -> tuple:
    """``probe`` as ``(x, y)`` after checking it: ``x`` a tensor ``[B, ...]``, ``y`` integer
    class labels ``[B]``, ``B >= 1``."""
    if not (isinstance(probe, (tuple, list)) and len(probe) == 2
            and all(isinstance(t, torch.Tensor) for t in probe)):
        raise ValueError(f"probe must be a pair (x, y) of tensors, got {probe!r:.80}")
    x, y = probe
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"probe labels y must be integer class indices [B], got dtype "
                         f"{y.dtype} and shape {tuple(y.shape)}")
    if x.ndim < 1 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"probe x [B, ...] and y [B] must hold the same B >= 1 examples, got "
                         f"x {tuple(x.shape)} and y {tuple(y.shape)}")
    return x, y


class FlowMonitor:
    """Records the gradient flow of ``model`` (any ``nn.Module`` mapping ``x`` to logits
    ``[B, C]``) on the fixed ``probe`` batch ``(x [B, ...], y [B])`` whenever :meth:`record` is
    called (see the module doc). ``masks``: a dict ``{tensor name: bool mask}`` kept by the
    user's code; None: the masks the model keeps. ``per_weight``: divide each layer's EGF by its
    active count (:func:`gflib.flow.measure`). The probe is moved to the model's device when
    recorded."""

    def __init__(self, model: nn.Module, probe, masks: Mapping | None = None,
                 per_weight: bool = False):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if masks is not None and not isinstance(masks, Mapping):
            raise ValueError(f"masks must be a dict {{tensor name: mask}} or None, got "
                             f"{type(masks).__name__}")
        self.model = model
        self.probe = check_probe(probe)
        self.masks = masks
        self.per_weight = bool(per_weight)
        self._rows = []
        self._steps = []
        self._on_device = {}

    @property
    def steps(self) -> list:
        """The steps recorded so far, in the order recorded."""
        return list(self._steps)

    def _probe_for(self, device) -> tuple:
        if device not in self._on_device:
            self._on_device = {device: tuple(t.to(device) for t in self.probe)}
        return self._on_device[device]

    def record(self, step) -> dict:
        """Measure the model now and keep it under ``step`` (any finite number not recorded yet:
        an optimizer step, an epoch); returns the whole model's :data:`gflib.flow.MEASURES`
        (``{measure: value}``, e.g. to log elsewhere)."""
        if isinstance(step, bool) or not isinstance(step, numbers.Real) or \
                not math.isfinite(step):
            raise ValueError(f"step must be a finite number, got {step!r}")
        if step in self._steps:
            raise ValueError(f"step {step!r} is already recorded")
        tensor = next(iter(self.model.parameters()), None)
        if tensor is None:
            raise ValueError("the model has no parameters to measure")
        x, y = self._probe_for(tensor.device)
        table = measure_table(self.model, x, y, masks=self.masks, per_weight=self.per_weight)
        self._steps.append(step)
        self._rows += [(step, r.layer, r.measure, r.value) for r in table.itertuples()]
        return {r.measure: r.value for r in table.itertuples() if r.layer == MODEL}

    def table(self) -> pd.DataFrame:
        """Everything recorded, one row per step, layer and measure: columns ``step, layer,
        measure, value``; ``layer`` is a tensor's name (measures ``gf_l1, gf_l2, egf_l1,
        egf_l2`` of that tensor) or :data:`gflib.flow.MODEL` (the whole model's
        :data:`gflib.flow.MEASURES`). See :func:`gflib.flow.measure_table`."""
        return pd.DataFrame(self._rows, columns=list(COLUMNS))

    def plot(self, p: int = 2):
        """A matplotlib Figure of EGF_p per layer over the recorded steps beside the baseline
        norms ``||g_l||_p`` and ``||g||_p`` (:func:`gflib.plots.flow_by_layer`)."""
        if not self._rows:
            raise ValueError("nothing recorded yet: call record(step) first")
        return flow_by_layer(self.table(), p=p)

    def state_dict(self) -> dict:
        """What was recorded (plain Python: for a checkpoint)."""
        return {"steps": list(self._steps), "rows": list(self._rows)}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from :meth:`state_dict`'s records (replacing any made here)."""
        self._steps, self._rows = list(state["steps"]), [tuple(r) for r in state["rows"]]
