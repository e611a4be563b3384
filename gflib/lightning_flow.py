"""A Lightning callback that records gradient flow: :class:`FlowCallback`, a
:class:`gflib.monitor.FlowMonitor` driven by the Trainer.

Only for Lightning users: this module needs ``lightning`` (or ``pytorch_lightning``) installed,
and nothing else in gflib imports it. ::

    flow = FlowCallback(probe=(x_probe, y_probe))
    trainer = lightning.pytorch.Trainer(callbacks=[flow], ...)
    trainer.fit(module, loader)
    flow.table(), flow.plot()

Steps are the Trainer's ``global_step`` (optimizer steps done): 0 before training, then the end
of every ``every_n_epochs``-th epoch and (with ``every_n_steps``) every n-th step.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

try:
    from lightning.pytorch import Callback
except ImportError:
    try:
        from pytorch_lightning import Callback
    except ImportError as error:
        raise ImportError("gflib.lightning_flow needs Lightning: pip install lightning") \
            from error

from .monitor import FlowMonitor, check_probe


def _every(value, name):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
    return value


class FlowCallback(Callback):
    """Records the flow of the LightningModule (or of ``model(pl_module)``, e.g.
    ``lambda m: m.net`` when the module's forward is not the classifier's logits) on ``probe``
    ``(x [B, ...], y [B])`` before training, after every ``every_n_epochs``-th epoch and every
    ``every_n_steps``-th optimizer step (None: never). ``masks`` and ``per_weight`` as
    :class:`gflib.monitor.FlowMonitor`. Its records are saved with the Trainer's checkpoints."""

    def __init__(self, probe, every_n_epochs: int | None = 1, every_n_steps: int | None = None,
                 masks: Mapping | None = None, per_weight: bool = False,
                 model: Callable | None = None):
        self.probe = check_probe(probe)
        self.every_n_epochs = _every(every_n_epochs, "every_n_epochs")
        self.every_n_steps = _every(every_n_steps, "every_n_steps")
        self.masks, self.per_weight, self.model = masks, per_weight, model
        self.monitor = None
        self._state = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.monitor is None:
            target = pl_module if self.model is None else self.model(pl_module)
            self.monitor = FlowMonitor(target, self.probe, self.masks, self.per_weight)
            if self._state is not None:
                self.monitor.load_state_dict(self._state)

    def _record(self, trainer) -> None:
        if trainer.global_step not in self.monitor.steps:
            self.monitor.record(trainer.global_step)

    def on_train_start(self, trainer, pl_module) -> None:
        self._record(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._record(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._record(trainer)

    def table(self):
        """The monitor's table (:meth:`gflib.monitor.FlowMonitor.table`)."""
        if self.monitor is None:
            raise ValueError("nothing recorded yet: pass the callback to a Trainer and fit")
        return self.monitor.table()

    def plot(self, p: int = 2):
        """The monitor's figure (:meth:`gflib.monitor.FlowMonitor.plot`)."""
        if self.monitor is None:
            raise ValueError("nothing recorded yet: pass the callback to a Trainer and fit")
        return self.monitor.plot(p)

    def state_dict(self) -> dict:
        return {} if self.monitor is None else self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self.monitor is None:
            self._state = dict(state_dict) if state_dict else None
        elif state_dict:
            self.monitor.load_state_dict(state_dict)
