"""The chapters as modules, and what a chapter's notebook calls.

A chapter is a module with ``NAME`` (its notebook is ``book/<NAME>.md``), ``TITLE``, ``CLAIMS``
(the study's claim numbers it tests, :data:`gflib.reference.CLAIMS`, and any question of its own
as a :class:`gflib.verdict.Claim`, which the results page shows as a row of its own),
``settings(preset) -> dict``, ``grid(preset, device, data_dir) -> list[RunConfig]``,
``analyse(results, preset)`` (tables, figure data and its verdicts) and
``report(analysis, label)`` (shows one stored summary); optionally ``paper_numbers(verdicts)``
(``{test: the paper's number as text}`` for the answer table) and ``answer_words(analysis)``
(the answer in a sentence, :func:`answer_words` by default). Every module of this package is one
(found by :func:`names`); a chapter kept elsewhere joins with :func:`register` in this process,
or, in every process (notebook kernels, the results page, ``python -m gflib.execute``,
``publish``, ``cost``), by its importable module name in ``$GFLIB_CHAPTERS``
(:data:`CHAPTERS_ENV`). publish, cost, execute, the results page, the tests and the notebooks
read this registry.

A notebook starts with its ``parameters`` cell (the names of :data:`PARAMETERS`) and then one
call, ``plan = chapters.setup("<NAME>", globals())``; ``plan.analyse(plan.run())`` analyses the
live results and writes their verdicts beside the results store (:func:`verdicts_file`), where
the results page reads them; a stored summary's verdicts are written beside it
(:func:`write_stored_verdicts`).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import pkgutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import plots, presets, summaries, sweep
from ..atomic import write_json
from ..config import config_key
from ..reference import CLAIMS
from ..verdict import Claim, Verdict

CHAPTERS_ENV = "GFLIB_CHAPTERS"
"""Chapter modules kept outside this package, by importable name, comma-separated
(``mylab.lottery,other``): :func:`names` imports and registers each."""
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


def unregister(name: str):
    """Remove chapter ``name`` from the registry (a chapter a test registered) and return its
    module; ValueError naming the registered ones when it is not there."""
    if name not in _REGISTRY:
        raise ValueError(f"no chapter {name!r} is registered; registered: "
                         f"{', '.join(_REGISTRY)}")
    return _REGISTRY.pop(name)


def _order(module) -> tuple:
    study = [c for c in module.CLAIMS if not isinstance(c, Claim)]
    return (min(study) if study else len(_REGISTRY) + 100, module.NAME)


def names() -> list:
    """Every chapter's name, in book order (by the first study claim each tests, then by name;
    chapters of questions of their own last): this package's modules, those named in
    ``$GFLIB_CHAPTERS`` (ValueError naming one that cannot be imported) and those registered."""
    global _FOUND
    if not _FOUND:
        for info in pkgutil.iter_modules(__path__):
            register(importlib.import_module(f"{__name__}.{info.name}"))
        for name in filter(None, (n.strip() for n in os.environ.get(CHAPTERS_ENV, "").split(","))):
            try:
                module = importlib.import_module(name)
            except ImportError as error:
                raise ValueError(f"${CHAPTERS_ENV} names chapter module {name!r}, which cannot "
                                 f"be imported: {error}") from error
            register(module)
        _FOUND = True
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

    @property
    def verdicts_file(self) -> Path:
        """Where :meth:`analyse` writes the live verdicts: beside the results store."""
        return self.store.parent / f"{self.store.name}-verdicts.json"

    def analyse(self, results):
        """The chapter's analysis of ``results`` (``chapter.analyse``), its verdicts written to
        :attr:`verdicts_file` for the results page (:func:`write_verdicts`)."""
        analysis = self.chapter.analyse(results, self.preset)
        write_verdicts(self.verdicts_file, analysis.verdicts, chapter=self.chapter.NAME,
                       grid=grid_key(self.configs), code=code_key())
        return analysis

    def live_verdicts(self) -> list | None:
        """The verdicts :meth:`analyse` wrote for this very grid and code, or None (absent,
        another grid, another version of gflib)."""
        return read_verdicts(self.verdicts_file, grid=grid_key(self.configs), code=code_key())

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

    def summary(self) -> str:
        """The scale in one sentence, for a page: the preset, its data and widths, the runs."""
        p = self.preset
        return (f"preset `{p.name}` ({p.summary}): {len(self.configs)} runs")

    def stored(self) -> list:
        """:func:`stored` of this chapter in :attr:`data`."""
        return stored(self.chapter, self.data)

    def show_stored(self, captioned=()) -> list:
        """:func:`show_stored` of this chapter in :attr:`data`."""
        return show_stored(self.chapter, self.data, captioned)

    def answer(self, analysis) -> str:
        """The table the chapter opens with (:func:`answer`): ``analysis`` 's verdicts beside
        the paper's numbers (the module's ``paper_numbers(verdicts)``, where it has one) and the
        stored summaries' verdicts."""
        numbers = getattr(self.chapter, "paper_numbers", None)
        return answer(analysis.verdicts, self.stored_verdicts(),
                      numbers(analysis.verdicts) if numbers else None)

    def answer_words(self, analysis) -> str:
        """The sentence under the answer table: the module's ``answer_words(analysis)``, else
        :func:`answer_words`."""
        return getattr(self.chapter, "answer_words", answer_words)(analysis)

    def stored_verdicts(self) -> dict:
        """``{summary name: verdicts}`` of every summary stored for this chapter in
        :attr:`data` (:func:`stored_verdicts`), the stored columns of :func:`answer`."""
        return {name: stored_verdicts(self.chapter, name, self.data)
                for name in summaries.names(self.chapter.NAME, self.data)}


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


def grid_key(configs) -> str:
    """A name for a grid: a hash of its configs' store keys, in order."""
    return hashlib.sha256(",".join(config_key(c) for c in configs).encode()).hexdigest()[:20]


def code_key() -> str:
    """A name for this version of gflib: a hash of its source files."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def write_verdicts(path, verdicts, **identity) -> Path:
    """Write ``verdicts`` (:class:`gflib.verdict.Verdict` s) to ``path`` as JSON, with
    ``identity`` (what they were computed from: a grid, a summary, a version of gflib)."""
    return write_json(path, {**identity, "verdicts": [v.to_dict() for v in verdicts]},
                      indent=1, allow_nan=True)


def read_verdicts(path, **identity) -> list | None:
    """The verdicts of a :func:`write_verdicts` file whose identity matches ``identity``, or
    None (absent, unreadable, or computed from something else)."""
    try:
        payload = json.loads(Path(path).read_text())
        if any(payload.get(k) != v for k, v in identity.items()):
            return None
        return [Verdict.from_dict(d) for d in payload["verdicts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def summary_key(chapter, name: str, root) -> str:
    """A name for a stored summary's contents: a hash of its two tables."""
    folder = summaries.folder(get(chapter).NAME, root)
    digest = hashlib.sha256()
    for path in (folder / f"{name}.csv", folder / f"{name}-curves.csv"):
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:20]


def stored_verdicts(chapter, name: str, root=DATA, write: bool = False) -> list:
    """The verdicts on stored summary ``name`` of ``chapter``: read from its verdicts file when
    it was computed from these very tables, else analysed again (and written there when
    ``write``)."""
    module = get(chapter)
    path = summaries.verdicts_path(module.NAME, name, root)
    key = summary_key(module, name, root)
    found = None if write else read_verdicts(path, summary=key)
    if found is not None:
        return found
    results, meta = summaries.load(module.NAME, name, root)
    verdicts = module.analyse(results, presets.get(meta["preset"])).verdicts
    if write:
        write_verdicts(path, verdicts, chapter=module.NAME, summary=key)
    return verdicts


def compare_verdicts(a: str, b: str, root=DATA) -> pd.DataFrame:
    """Every test of every chapter stored under both names ``a`` and ``b`` (e.g. ``gpu`` and
    ``gpu-tf32``: one grid computed two ways), side by side: one row per (chapter, claim, test)
    with each side's status and effect, and ``same`` (the statuses agree). What must hold before
    a faster way of computing (TF32) may become a default."""
    rows = []
    for chapter in names():
        name = get(chapter).NAME
        stored_names = summaries.names(name, root)
        if a not in stored_names or b not in stored_names:
            continue
        left = {(v.claim, v.test): v for v in stored_verdicts(chapter, a, root)}
        right = {(v.claim, v.test): v for v in stored_verdicts(chapter, b, root)}
        for key in list(left) + [k for k in right if k not in left]:
            va, vb = left.get(key), right.get(key)
            rows.append({"chapter": chapter, "claim": key[0], "test": key[1],
                         f"status {a}": va.status if va else "absent",
                         f"status {b}": vb.status if vb else "absent",
                         f"effect {a}": va.effect if va else float("nan"),
                         f"effect {b}": vb.effect if vb else float("nan"),
                         "same": bool(va and vb and va.status == vb.status)})
    return pd.DataFrame(rows, columns=["chapter", "claim", "test", f"status {a}",
                                       f"status {b}", f"effect {a}", f"effect {b}", "same"])


def write_stored_verdicts(root=DATA) -> list:
    """Analyse every stored summary of every chapter under ``root`` and write its verdicts file
    (:func:`stored_verdicts`); returns the files written."""
    out = []
    for name in names():
        for summary in summaries.names(name, root):
            stored_verdicts(name, summary, root, write=True)
            out.append(summaries.verdicts_path(name, summary, root))
    return out


def stored(chapter, root: str | os.PathLike = DATA) -> list:
    """``[(name, Results, provenance)]`` of every summary stored for ``chapter`` under
    ``root``."""
    name = get(chapter).NAME
    return [(n, *summaries.load(name, n, root)) for n in summaries.names(name, root)]


def show_stored(chapter, root: str | os.PathLike = DATA, captioned=()) -> list:
    """Analyse and show every stored summary of ``chapter`` under ``root`` (its ``report``);
    returns ``[(name, analysis)]``. Says so when there is none. The figures of a summary named
    in ``captioned`` are glued (:func:`gflib.plots.glued`, as ``stored_<name>_<key>`` and
    ``stored_<name>_<key>_caption``) for the page's numbered ``{glue:figure}`` s; the others are
    shown in place, their captions below them."""
    from IPython.display import HTML, Markdown, display

    module = get(chapter)
    out = []
    for name, results, meta in stored(module, root):
        analysis = module.analyse(results, presets.get(meta["preset"]))
        display(HTML(f'<span id="{anchor(name)}"></span>'),
                Markdown(f"### `{name}`\n\n**Provenance:** " + summaries.provenance_line(meta)))
        if name in captioned:
            with plots.glued(f"stored_{name}"):
                module.report(analysis, name)
        else:
            module.report(analysis, name)
        out.append((name, analysis))
    if not out:
        display(Markdown(f"No stored summary yet. Make one with `python -m gflib.publish "
                         f"{module.NAME} --preset fmnist`."))
    return out


def _cell(v: Verdict) -> str:
    """A verdict in one Markdown table cell: status in bold, effect (interval), p (q), n (a
    check: its effect in words)."""
    if not v.n:
        return f"**{v.status}**: {v.sentence or v.reason}"
    if v.form == "check":
        return f"**{v.status}**: {v.effect_text()}; {v.n_text()}"
    numbers = v.effect_text().split(" ", 1)[0]
    if v.interval_text():
        numbers += f" ({v.interval_text()})"
    extra = ", ".join(t for t in (v.p_text(), v.n_text()) if t)
    return f"**{v.status}**: {numbers}; {extra}"


def answer(live: list, stored: dict, paper: dict | None = None) -> str:
    """The answer a chapter opens with, as a Markdown table: one row per sub-test (the live
    verdicts' order: the paper's form first), the paper's number (``paper``: ``{test: text}``,
    else the verdict's own reading), then the status and data at the live scale and at each
    stored summary's (``stored``: ``{name: verdicts}``); followed by the effect's unit of each
    test."""
    scales = [live[0].scale if live else "live", *stored]
    head = ["test", "paper", *[f"`{s}`" for s in scales]]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    units = []
    for v in live:
        by_scale = [v] + [next((w for w in stored[name] if w.test == v.test), None)
                          for name in stored]
        number = (paper or {}).get(v.test) or (v.value_text(v.paper_effect)
                                               if v.paper_effect == v.paper_effect else "")
        cells = [_cell(w) if w is not None else "not run" for w in by_scale]
        rows.append("| " + " | ".join([f"{v.claim_label}: {v.test}", number or "n/a", *cells])
                    + " |")
        units.append(f"{v.test}: {v.effect_unit}")
    return "\n".join(rows) + "\n\nEffects: " + "; ".join(units) + "."


def answer_words(a) -> str:
    """The answer in words for a chapter without its own ``answer_words``: the scale, its
    counts, and the first (the paper's form of the claim) verdict with its status and reason."""
    head = a.verdicts[0]
    return (f"At `{a.scale}` ({a.counts.text()}): {head.sentence}; {head.status}, because "
            f"{head.reason}.")


def anchor(summary: str) -> str:
    """The id of a stored summary's section on its chapter's page (the results page links
    there)."""
    return f"stored-{summary}"
