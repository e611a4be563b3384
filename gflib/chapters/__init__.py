"""The chapters as modules, and what a chapter's notebook calls.

A chapter is a module with ``NAME`` (its notebook is ``book/<NAME>.md``), ``TITLE``, ``CLAIMS``
(the study's claim numbers it tests, :data:`gflib.reference.CLAIMS`, and any question of its own
as a :class:`gflib.verdict.Claim`, which the results page shows as a row of its own),
``settings(preset) -> dict``, ``grid(preset, device, data_dir) -> list[RunConfig]``,
``analyse(results, preset)`` (tables, figure data and its verdicts) and
``report(analysis, label)`` (shows one stored summary). Every module of this package is one
(found by :func:`names`); a chapter kept elsewhere joins with :func:`register`. publish, cost,
execute, the results page, the tests and the notebooks read this registry.

A notebook starts with its ``parameters`` cell (the names of :data:`PARAMETERS`) and then one
call, ``plan = chapters.setup("<NAME>", globals())``.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .. import plots, presets, summaries, sweep
from ..reference import CLAIMS
from ..verdict import Claim

RESULTS_ENV = "GFLIB_RESULTS"
"""The results root when none is given (else ``results/`` in the working folder)."""
DATA = Path("data")
"""Where a notebook finds the book's stored summaries: ``book/data``, relative to the notebook's
folder, where the book executes it."""
CONTRACT = ("NAME", "TITLE", "CLAIMS", "settings", "grid", "analyse", "report")
"""What a chapter module must define."""
PARAMETERS = ("preset", "dataset", "device", "results_dir", "data_dir", "sparse_width",
              "epochs", "train_subset", "seeds")
"""The parameters every chapter's ``parameters`` cell defines and :func:`setup` reads (a
chapter may add its own, such as ``stack``)."""

_REGISTRY: dict = {}
_FOUND = False


def register(module):
    """Add a chapter module (see the module doc) to the registry; returns it. Raises ValueError
    naming what the module lacks, or a study claim number that is not one of the study's."""
    missing = [a for a in CONTRACT if not hasattr(module, a)]
    if missing:
        raise ValueError(f"chapter module {getattr(module, '__name__', module)!r} lacks "
                         f"{', '.join(missing)}; a chapter defines {', '.join(CONTRACT)}")
    if not module.CLAIMS:
        raise ValueError(f"chapter {module.NAME!r} declares no claims")
    for claim in module.CLAIMS:
        if isinstance(claim, Claim):
            continue
        if isinstance(claim, bool) or not isinstance(claim, int) or not 1 <= claim <= len(CLAIMS):
            raise ValueError(f"chapter {module.NAME!r}: claim {claim!r} is not one of the "
                             f"study's 1..{len(CLAIMS)}; declare a question of its own as a "
                             "gflib.verdict.Claim")
    _REGISTRY[module.NAME] = module
    return module


def unregister(name: str) -> None:
    """Remove chapter ``name`` from the registry (a chapter a test registered)."""
    _REGISTRY.pop(name, None)


def _order(module) -> tuple:
    study = [c for c in module.CLAIMS if not isinstance(c, Claim)]
    return (min(study) if study else len(_REGISTRY) + 100, module.NAME)


def names() -> list:
    """Every chapter's name, in book order (by the first study claim each tests, then by name;
    chapters of questions of their own last)."""
    global _FOUND
    if not _FOUND:
        _FOUND = True
        for info in pkgutil.iter_modules(__path__):
            register(importlib.import_module(f"{__name__}.{info.name}"))
    return [m.NAME for m in sorted(_REGISTRY.values(), key=_order)]


def get(name):
    """The chapter module called ``name`` (a module is returned as it is)."""
    if hasattr(name, "NAME"):
        return name
    known = names()
    if name not in _REGISTRY:
        raise ValueError(f"unknown chapter {name!r}; allowed: {', '.join(known)}")
    return _REGISTRY[name]


def claims() -> list:
    """Every claim the registered chapters test: the study's six (numbers), then the chapters'
    own questions (:class:`gflib.verdict.Claim`), in book order."""
    own = [c for n in names() for c in get(n).CLAIMS if isinstance(c, Claim)]
    return list(range(1, len(CLAIMS) + 1)) + own


def results_dir(chapter, scale: str, root: str | os.PathLike | None = None) -> Path:
    """Where a chapter's raw results go: ``<root>/<chapter>/<scale>``; ``root`` defaults to
    ``$GFLIB_RESULTS`` or ``results`` in the working folder."""
    if root is None:
        root = os.environ.get(RESULTS_ENV) or "results"
    return Path(root) / get(chapter).NAME / scale


@dataclass
class Plan:
    """A chapter's grid at one scale, ready to run: ``chapter`` (module), ``preset``,
    ``configs``, ``store`` (the results folder) and ``data`` (the folder of the book's stored
    summaries)."""

    chapter: object
    preset: presets.Preset
    configs: list
    store: Path
    data: Path = DATA

    @property
    def settings(self) -> dict:
        """The chapter's settings at this preset (``chapter.settings(preset)``)."""
        return self.chapter.settings(self.preset)

    def run(self, stack: int | None = None, executor=None, progress: bool = True):
        """Run (or read from the store) every config: :func:`gflib.sweep.run`. ``executor``:
        where the groups train (default this process), e.g. a Dask cluster's from
        ``with gflib.sweep.executor_for("tcp://host:8786") as executor: plan.run(executor=...)``."""
        return sweep.run(self.configs, self.store, executor=executor, progress=progress,
                         desc=f"{self.chapter.NAME} @ {self.preset.name}", stack=stack)

    def describe(self, width: int = 78) -> str:
        """The preset and the grid's size, in lines of at most ``width`` characters (printed
        output wider than the book's column scrolls sideways)."""
        lines = [f"preset {self.preset.name}: {self.preset.note}",
                 f"{len(self.configs)} runs, sparse width {self.preset.sparse_width}, dense "
                 f"widths {self.preset.dense_widths}, seeds {list(self.preset.seeds)}"]
        return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)

    def stored(self) -> list:
        """:func:`stored` of this chapter in :attr:`data`."""
        return stored(self.chapter, self.data)

    def show_stored(self) -> list:
        """:func:`show_stored` of this chapter in :attr:`data`."""
        return show_stored(self.chapter, self.data)


def plan(chapter, preset: str | None = None, device: str = "cpu", store: str | None = None,
         data_dir: str | None = None, data: str | os.PathLike = DATA, **overrides) -> Plan:
    """The chapter's :class:`Plan` at ``preset`` with preset ``overrides`` (``None`` = the
    preset's value; e.g. ``dataset``, ``sparse_width``, ``epochs``, ``seeds``); ``store``: the
    results folder (default :func:`results_dir`); ``data``: the stored summaries' folder."""
    module = get(chapter)
    p = presets.get(preset, **overrides)
    configs = module.grid(p, device=device, data_dir=data_dir)
    return Plan(module, p, configs, Path(store) if store else results_dir(module, p.name),
                Path(data))


def setup(chapter, namespace: dict, data: str | os.PathLike = DATA) -> Plan:
    """What a chapter's notebook does first: the book's figure style
    (:func:`gflib.plots.book_style`) and the chapter's :class:`Plan` from the notebook's
    parameters, read by name (:data:`PARAMETERS`) from ``namespace`` (the notebook's
    ``globals()``, where papermill injects them); prints :meth:`Plan.describe`."""
    missing = [p for p in PARAMETERS if p not in namespace]
    if missing:
        raise ValueError(f"the notebook's parameters cell lacks {', '.join(missing)}; a "
                         f"chapter's parameters are {', '.join(PARAMETERS)}")
    params = {p: namespace[p] for p in PARAMETERS}
    plots.book_style()
    result = plan(chapter, params.pop("preset"), device=params.pop("device"),
                  store=params.pop("results_dir"), data_dir=params.pop("data_dir"), data=data,
                  **params)
    print(result.describe())
    return result


def stored(chapter, root: str | os.PathLike = DATA) -> list:
    """``[(name, Results, provenance)]`` of every summary stored for ``chapter`` under
    ``root``."""
    name = get(chapter).NAME
    return [(n, *summaries.load(name, n, root)) for n in summaries.names(name, root)]


def show_stored(chapter, root: str | os.PathLike = DATA) -> list:
    """Analyse and show every stored summary of ``chapter`` under ``root`` (its ``report``);
    returns ``[(name, analysis)]``. Says so when there is none."""
    from IPython.display import Markdown, display

    module = get(chapter)
    out = []
    for name, results, meta in stored(module, root):
        analysis = module.analyse(results, presets.get(meta["preset"]))
        display(Markdown(f"### `{name}`\n\n**Provenance:** "
                         + summaries.provenance_line(meta)))
        module.report(analysis, name)
        out.append((name, analysis))
    if not out:
        display(Markdown(f"No stored summary yet. Make one with `python -m gflib.publish "
                         f"{module.NAME} --preset fmnist`."))
    return out
