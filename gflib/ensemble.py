"""K runs of one architecture as one module with a leading run axis: what the training loop
(:func:`gflib.train.train`) trains, evaluates and measures.

An :class:`Ensemble` takes inputs ``[K, B, ...]`` and returns logits ``[K, B, C]``; run ``k``
sees only its own slice. Its ``net`` has the single model's module tree, so a tensor's name is the
single model's name (``"hidden.0.layer.weight"``) whatever K is. Two kinds:

- :class:`Single`: any ``nn.Module`` as K = 1 (the CNN, Wide ResNet-50, or one MLP);
- :class:`gflib.stacked.StackedMLP`: K MLPs of one architecture, every tensor with a run axis.

Masks are per run, ``{weight name: bool tensor of the single model's weight shape}``; masked
weights are zeroed and their gradients multiplied by the mask in a hook, so they stay exactly zero
under every torch.optim optimizer (whose state there stays zero too).

The generic operations (:func:`per_run_loss`, :func:`evaluate`, :func:`weight_gradients`) work on
any ensemble; :mod:`gflib.flow` measures through :func:`weight_gradients`.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .found_masks import effective_gradients, kind_of
from .masks import check_mask, mask_parameter
from .models import maskable_weights


class Ensemble(nn.Module):
    """Base of the run-axis models. Subclasses set ``net``, ``k`` and ``weight_names`` and
    implement :meth:`as_runs`, :meth:`from_runs` and :meth:`run_model`."""

    k: int
    weight_names: list

    def param_name(self, name: str) -> str:
        """The ensemble's own name of the single model's tensor ``name``."""
        return f"net.{name}"

    def tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` of every run, ``[K, *single model's shape]`` (a view)."""
        full = self.param_name(name)
        try:  # asked once per weight at every L2 step: no list of every parameter name
            t = self.get_parameter(full)
        except AttributeError:
            t = self.get_buffer(full)
        return self.as_runs(name, t)

    def param_names(self) -> list:
        """The single model's names of the trainable tensors."""
        return [n for n, _ in self.net.named_parameters()]

    def as_runs(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``t``, shaped as the ensemble stores tensor ``name``, as ``[K, *single shape]``."""
        raise NotImplementedError

    def run_model(self, r: int) -> nn.Module:
        """Run ``r`` as a plain single model (a copy for K > 1; masks not attached)."""
        raise NotImplementedError

    def l2(self) -> torch.Tensor:
        """Per-run ``sum ||W||^2`` over the masked-weight tensors: ``[K]``."""
        return sum(self.tensor(n).pow(2).flatten(1).sum(1) for n in self.weight_names)

    def set_masks(self, masks: list) -> None:
        """Apply per-run masks (a list of K dicts; ``{}`` = dense), replacing earlier ones."""
        if len(masks) != self.k:
            raise ValueError(f"{len(masks)} masks for {self.k} runs")
        for m in masks:
            unknown = set(m) - set(self.weight_names)
            if unknown:
                raise ValueError(f"mask names {sorted(unknown)} are not maskable weights; "
                                 f"allowed: {', '.join(self.weight_names)}")
        for handle in getattr(self, "_mask_hooks", []):
            handle.remove()
        self._mask_hooks = []
        self.masks = [{n: check_mask(n, v, self.tensor(n)[0]) for n, v in m.items()}
                      for m in masks]
        for name in self.weight_names:
            if any(name in m for m in self.masks):
                self._mask_hooks.append(mask_parameter(
                    self.get_parameter(self.param_name(name)), self.from_runs(name, self.keep(name))))

    def keep(self, name: str) -> torch.Tensor:
        """Every run's mask of weight ``name``, ``[K, *single shape]`` bool (all True if dense)."""
        w = self.tensor(name)
        return torch.stack([m.get(name, torch.ones_like(w[0], dtype=torch.bool))
                            for m in self.masks])

    def from_runs(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`as_runs`: ``[K, *single shape]`` to the stored layout."""
        raise NotImplementedError


class Single(Ensemble):
    """One ``nn.Module`` (input ``[B, ...]``) as an ensemble of K = 1."""

    def __init__(self, model: nn.Module, masks: Mapping | None = None):
        super().__init__()
        self.net = model
        self.k = 1
        self.weight_names = list(maskable_weights(model))
        for name in self.weight_names:
            kind_of(model, name)
        self.masks = [{}]
        if masks:
            self.set_masks([dict(masks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[0]).unsqueeze(0)

    def as_runs(self, name, t):
        return t.unsqueeze(0)

    def from_runs(self, name, t):
        return t[0]

    def run_model(self, r: int) -> nn.Module:
        return self.net


def per_run_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each run: logits ``[K, B, C]``, labels ``[K, B]`` -> ``[K]``."""
    k, b, c = logits.shape
    return F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b),
                           reduction="none").view(k, b).mean(1)


def expand(x: torch.Tensor, k: int) -> torch.Tensor:
    """One shared batch ``[B, ...]`` as every run's input ``[K, B, ...]`` (a view)."""
    return x.unsqueeze(0).expand(k, *x.shape)


@torch.no_grad()
def evaluate(ens: Ensemble, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> tuple:
    """Per-run ``(mean cross-entropy [K], accuracy [K])`` in eval mode on one shared set
    ``x [N, ...]``, ``y [N]`` (float64 tensors on the CPU)."""
    was = ens.training
    ens.eval()
    loss = torch.zeros(ens.k, dtype=torch.float64, device=y.device)
    correct = torch.zeros(ens.k, dtype=torch.long, device=y.device)
    try:
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            logits = ens(expand(xb, ens.k))
            yk = expand(yb, ens.k)
            loss += per_run_loss(logits, yk).double() * len(yb)
            correct += (logits.argmax(2) == yk).sum(1)
    finally:
        ens.train(was)
    return (loss / len(y)).cpu(), (correct.double() / len(y)).cpu()


DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.FeatureAlphaDropout)
"""Modules that :func:`weight_gradients` runs in eval mode (no unit dropped)."""


def weight_gradients(ens: Ensemble, x: torch.Tensor, y: torch.Tensor,
                     names: list | None = None) -> dict:
    """``{name: dC_k/dtheta_k as [K, *single shape]}``: each run's gradient of its mean
    cross-entropy on the shared batch ``x [B, ...]``, ``y [B]`` with respect to its tensors
    ``names`` (default: the masked-weight tensors; effective weights, so masked entries get their
    true gradient, for a pruned or parametrized tensor too:
    :func:`gflib.found_masks.effective_gradients`). Train-mode forward (BatchNorm on batch
    statistics; :data:`DROPOUT` modules in eval mode, so the measure is of the whole network and
    needs no random draw) through a functional copy: ``.grad``, running statistics, train/eval
    modes and RNG states are left untouched."""
    names = list(ens.weight_names if names is None else names)
    modes = {m: m.training for m in ens.modules()}
    devices = [x.device.index or 0] if x.is_cuda else []
    try:
        ens.train()
        for m in ens.modules():
            if isinstance(m, DROPOUT):
                m.eval()
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            grads = effective_gradients(
                ens, [ens.param_name(n) for n in names], (expand(x, ens.k),),
                lambda logits: per_run_loss(logits, expand(y, ens.k)).sum())
    finally:
        for m, mode in modes.items():
            m.training = mode
    return {n: ens.as_runs(n, grads[ens.param_name(n)]) for n in names}
