"""The chapters as modules: each ``gflib/chapters/<name>.py`` has ``NAME`` (its notebook is
``book/<NAME>.md``), ``TITLE``, ``CLAIMS`` (the study's claim numbers it tests),
``grid(preset, device, data_dir) -> list[RunConfig]``, ``analyse(results, preset) -> dict``
(tables, figure data and ``"verdict"``) and ``report(analysis, label)`` (shows one stored
summary). This registry is what publish, cost, execute, the tests and the notebooks read.

Adding a chapter: write the module, add it to :data:`_MODULES`, write ``book/<NAME>.md`` and list
it in ``_toc.yml``.
"""
from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .. import presets
from . import activations, batchnorm, optimizers, pruning_and_cnns, sc_sdc_and_egf

_MODULES = (sc_sdc_and_egf, batchnorm, optimizers, activations, pruning_and_cnns)
_BY_NAME = {m.NAME: m for m in _MODULES}
RESULTS_ENV = "GFLIB_RESULTS"
REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO / "book" / "data"


def names() -> list:
    """Every chapter's name, in book order."""
    return list(_BY_NAME)


def get(name: str):
    """The chapter module called ``name``."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown chapter {name!r}; allowed: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def results_dir(chapter: str, scale: str, root: str | os.PathLike | None = None) -> Path:
    """Where a chapter's raw results go: ``<root>/<chapter>/<scale>``; ``root`` defaults to
    ``$GFLIB_RESULTS`` or ``results/`` at the repository root (git-ignored)."""
    if root is None:
        root = os.environ.get(RESULTS_ENV) or REPO / "results"
    return Path(root) / get(chapter).NAME / scale


@dataclass
class Plan:
    """A chapter's grid at one scale, ready to run: ``chapter`` (module), ``preset``,
    ``configs`` and ``store`` (the results folder)."""

    chapter: object
    preset: presets.Preset
    configs: list
    store: Path

    def run(self, stack: int | None = None, executor=None, progress: bool = True):
        """Run (or read from the store) every config: :func:`gflib.sweep.run`. ``executor``:
        where the groups train (default this process), e.g. a Dask cluster's from
        ``with gflib.sweep.executor_for("tcp://host:8786") as executor: plan.run(executor=...)``."""
        from .. import sweep
        return sweep.run(self.configs, self.store, executor=executor, progress=progress,
                         desc=f"{self.chapter.NAME} @ {self.preset.name}", stack=stack)

    def describe(self, width: int = 78) -> str:
        """The preset, the grid's size and the results folder, in lines of at most ``width``
        characters (printed output wider than the book's column scrolls sideways)."""
        lines = [f"preset {self.preset.name}: {self.preset.note}",
                 f"{len(self.configs)} runs, sparse width {self.preset.sparse_width}, dense "
                 f"widths {self.preset.dense_widths}, seeds {list(self.preset.seeds)}",
                 f"results in {self.store}"]
        return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)


def plan(chapter, preset: str | None = None, device: str = "cpu", store: str | None = None,
         data_dir: str | None = None, **overrides) -> Plan:
    """The chapter's :class:`Plan` at ``preset`` with preset ``overrides`` (``None`` = the
    preset's value; e.g. ``dataset``, ``sparse_width``, ``epochs``, ``seeds``); ``store``: the
    results folder (default :func:`results_dir`)."""
    module = chapter if hasattr(chapter, "NAME") else get(chapter)
    p = presets.get(preset, **overrides)
    configs = module.grid(p, device=device, data_dir=data_dir)
    return Plan(module, p, configs, Path(store) if store else results_dir(module.NAME, p.name))


def stored(chapter) -> list:
    """``[(name, Results, provenance)]`` of every summary stored for ``chapter`` in book/data."""
    from ..publish import load, names as summary_names
    module = chapter if hasattr(chapter, "NAME") else get(chapter)
    return [(n, *load(module.NAME, n)) for n in summary_names(module.NAME)]


def show_stored(chapter, preset: presets.Preset) -> list:
    """Analyse and show every stored summary of ``chapter`` (its ``report``); returns
    ``[(name, analysis)]``. Says so when there is none."""
    from IPython.display import Markdown, display

    from ..publish import provenance_line
    module = chapter if hasattr(chapter, "NAME") else get(chapter)
    out = []
    for name, results, meta in stored(module):
        analysis = module.analyse(results, presets.get(meta["preset"]))
        display(Markdown(f"### `{name}`\n\n**Provenance:** " + provenance_line(meta)))
        module.report(analysis, name)
        out.append((name, analysis))
    if not out:
        display(Markdown(f"No stored summary yet. Make one with `python -m gflib.publish "
                         f"{module.NAME} --preset fmnist`."))
    return out
