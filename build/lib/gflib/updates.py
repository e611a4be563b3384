"""How big the optimizer's steps are: the ``"updates"`` trace (:mod:`gflib.trace`).

:class:`UpdateTrace` watches every optimizer step of a group of K runs and keeps, per run, per
masked-weight tensor (layer) and per epoch, three means over the layer's **active** (unmasked)
weights, each averaged over the epoch's steps:

- ``dw``: ``|w_after - w_before|``, the step the optimizer actually took (weight units);
- ``g``: ``|grad|``, the gradient the optimizer was handed (the training objective's: the L2
  term is in it, unlike Effective Gradient Flow, which leaves the regulariser out);
- ``v``: the optimizer's second-moment state after the step (gradient units squared), the
  entry its spec names (:attr:`gflib.optimizers.OptimizerSpec.second_moment`): ``exp_avg_sq``
  for Adam and AdamW (the raw EWMA, before bias correction), ``square_avg`` for RMSprop, ``sum``
  (a running sum, not an average) for Adagrad; absent for SGD and momentum, which keep none.

For SGD ``dw = lr * g``; for Adam ``dw ~ lr * |m_hat| / sqrt(v_hat)`` (the bias-corrected
moments, ``v_hat = v / (1 - beta2^t)`` after t steps), so a layer whose gradients are large has a
large ``v`` and takes steps no larger than ``lr``: the step per unit of gradient,
``dw / (lr * g)``, falls as flow rises. Watching changes nothing in the run (it reads weights,
gradients and state; it draws no random numbers). After a run has diverged its record goes on but
means nothing (its gradients are zeroed by the loop).
"""
from __future__ import annotations

import pandas as pd
import torch

from .hooks import Hook
from .optimizers import check as optimizer_spec

QUANTITIES = ("dw", "g", "v")
"""What a trace records per layer and epoch (see the module doc)."""


def active_mean(t: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-run mean of ``t`` over the active entries: ``t`` and ``keep`` (bool) are
    ``[K, *shape]``; returns ``[K]`` float64 (0 for a run with no active entry)."""
    keep = keep.flatten(1).to(torch.float64)
    return (t.detach().flatten(1).to(torch.float64) * keep).sum(1) / keep.sum(1).clamp(min=1)


class UpdateTrace(Hook):
    """The ``"updates"`` observer of :func:`gflib.train.train` (see the module doc).

    ``configs``: the group's run configs (K of them); ``probe`` is not used. :meth:`result`
    gives run r's record: ``{"layers": [name, ...], "epochs": [1, 2, ...], "dw": {layer:
    [per-epoch mean]}, "g": {...}, "v": {...}}`` (``"v"`` only when the optimizer keeps a
    second moment).
    """

    def __init__(self, configs, probe=None):
        self.k = len(configs)
        self.second_moment = optimizer_spec(configs[0].optimizer).second_moment
        self.epochs = []
        self.record = [{} for _ in range(self.k)]
        self._epoch = None
        self._sums = {}
        self._steps = 0

    def before_step(self, loop) -> dict:
        """A copy of every masked-weight tensor, ``{name: [K, *shape]}``."""
        ens = loop.ens
        return {name: ens.tensor(name).detach().clone() for name in ens.weight_names}

    @torch.no_grad()
    def after_step(self, loop, before: dict, epoch: int) -> None:
        """Add this step's per-run means to the epoch's sums."""
        ens, optimizer = loop.ens, loop.opt
        if epoch != self._epoch:
            self._flush()
            self._epoch = epoch
        for name in ens.weight_names:
            keep = ens.keep(name)
            param = ens.get_parameter(ens.param_name(name))
            values = {"dw": (ens.tensor(name) - before[name]).abs()}
            if param.grad is not None:
                values["g"] = ens.as_runs(name, param.grad).abs()
            v = optimizer.state.get(param, {}).get(self.second_moment)
            if v is not None:
                values["v"] = ens.as_runs(name, v)
            for q, t in values.items():
                key = (name, q)
                mean = active_mean(t, keep)
                self._sums[key] = mean if key not in self._sums else \
                    self._sums[key].to(mean.device) + mean
        self._steps += 1

    def _flush(self) -> None:
        """Close the epoch in progress: its sums divided by its steps go into the record."""
        if self._epoch is None or not self._steps:
            return
        self.epochs.append(self._epoch)
        for (name, q), total in self._sums.items():
            means = (total / self._steps).cpu().tolist()
            for r in range(self.k):
                self.record[r].setdefault(q, {}).setdefault(name, []).append(means[r])
        self._sums, self._steps, self._epoch = {}, 0, None

    def result(self, r: int) -> dict:
        """Run ``r``'s record (JSON-able; see the class doc)."""
        self._flush()
        rec = self.record[r]
        layers = list(rec.get("dw", {}))
        return {"layers": layers, "epochs": list(self.epochs),
                **{q: {n: list(v) for n, v in rec[q].items()} for q in QUANTITIES if q in rec}}

    def state_dict(self) -> dict:
        """Everything recorded so far, the epoch in progress included (for checkpoints)."""
        return {"epochs": list(self.epochs), "record": self.record, "epoch": self._epoch,
                "sums": {k: v.cpu() for k, v in self._sums.items()}, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state["epochs"])
        self.record = state["record"]
        self._epoch, self._sums, self._steps = state["epoch"], dict(state["sums"]), state["steps"]


def summary(updates: pd.DataFrame) -> pd.DataFrame:
    """Per run (optimizer, lr) and layer, averaged over epochs: ``dw / lr`` (the step in units
    of the learning rate), ``|g|``, ``sqrt(v)`` (NaN without a second moment) and
    ``dw / (lr |g|)``, the step per unit of gradient (ratio of the epoch means: 1 for SGD), from
    :func:`gflib.chapters.optimizers.update_table`'s long table."""
    wide = updates.pivot_table(index=["optimizer", "lr", "layer", "epoch"], columns="quantity",
                               values="value")
    lr = wide.index.get_level_values("lr").to_numpy()
    out = pd.DataFrame({
        "dw / lr": wide["dw"] / lr,
        "|g|": wide["g"],
        "sqrt(v)": wide["v"] ** 0.5 if "v" in wide else float("nan"),
        "dw / (lr |g|)": wide["dw"] / (lr * wide["g"]),
    }, index=wide.index)
    return out.groupby(["optimizer", "lr", "layer"]).mean()
