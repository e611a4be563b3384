"""The results page: every claim of the study x every scale present, one status badge a cell,
computed from the chapters' verdicts (:mod:`gflib.chapters`), never typed by hand.

:func:`collect` runs (or reads from the results store) each registered chapter at the live scale
and analyses each of its stored summaries; :func:`table` lays the verdicts out (rows: the six
claims of :data:`gflib.reference.CLAIMS`; columns: the scales, in the order they first appear);
:func:`html` renders it to fit a page. A chapter that lands adds its claims' cells by itself.
"""
from __future__ import annotations

import dataclasses
import html as _html
import math

import pandas as pd

from . import chapters, presets
from .reference import CLAIMS
from .verdict import Verdict

NOT_RUN_YET = "not run yet"
COLOURS = {"reproduced": "#2e7d32", "partly": "#b26a00", "not reproduced": "#c62828",
           "not distinguishable": "#757575", "not run": "#757575", NOT_RUN_YET: "#9e9e9e"}
"""Badge colour per status: green, amber, red, grey."""
ANCHOR = "verdict"
"""The section of a chapter page that shows its verdicts (its ``## Verdict`` heading)."""


def collect(preset: str | None = None, store_root=None, stack: int | None = 16,
            device: str = "cpu", data_dir=None, progress: bool = False) -> list:
    """Every registered chapter's verdicts: at ``preset`` live (trained, or read from the results
    store under ``store_root``: ``<store_root>/<chapter>/<preset>``, default
    :func:`gflib.chapters.results_dir`'s), then from each stored summary
    (:func:`gflib.chapters.stored`, analysed at its own preset). A stored summary's verdicts
    carry its name as their ``scale`` (``"<name> (stored)"`` when that is the live preset's)."""
    out = []
    for name in chapters.names():
        module = chapters.get(name)
        store = chapters.results_dir(name, presets.get(preset).name, store_root) \
            if store_root is not None else None
        plan = chapters.plan(module, preset, device=device, store=store, data_dir=data_dir)
        live = module.analyse(plan.run(stack=stack, progress=progress), plan.preset)
        out += live["verdicts"]
        for label, results, meta in chapters.stored(module):
            if label == plan.preset.name:
                label = f"{label} (stored)"
            analysis = module.analyse(results, presets.get(meta["preset"]))
            out += [dataclasses.replace(v, scale=label) for v in analysis["verdicts"]]
    return out


def chapter_of(claim: int):
    """The registered chapter module that tests ``claim`` (None when none does yet)."""
    return next((chapters.get(n) for n in chapters.names() if claim in chapters.get(n).CLAIMS),
                None)


def claim_label(claim: int) -> str:
    return f"{claim}. {CLAIMS[claim - 1]}"


def badge(status: str) -> str:
    """A coloured span naming ``status``."""
    return (f'<span style="background:{COLOURS.get(status, "#757575")};color:#fff;'
            f'padding:1px 6px;border-radius:3px;font-size:0.85em;white-space:nowrap">'
            f"{_html.escape(status)}</span>")


def cell(verdicts: list, href: str | None = None) -> str:
    """One table cell from one claim's verdicts at one scale: the first as the headline (badge,
    effect and interval, the sentence as a tooltip), then a count of the others' statuses;
    ``"not run yet"`` without verdicts. ``href``: where the badge links."""
    if not verdicts:
        head = badge(NOT_RUN_YET)
        return f'<a href="{href}" style="text-decoration:none">{head}</a>' if href else head
    first = verdicts[0]
    head = badge(first.status)
    if href:
        head = (f'<a href="{href}" style="text-decoration:none" '
                f'title="{_html.escape(first.sentence, quote=True)}">{head}</a>')
    parts = [head]
    if not math.isnan(first.effect):
        parts.append(f'<br><span style="font-size:0.85em">{_html.escape(first.effect_text())}'
                     "</span>")
        if first.interval_text():
            parts.append(f'<br><span style="font-size:0.8em;color:#555">95 % CI '
                         f"{_html.escape(first.interval_text())}</span>")
    if len(verdicts) > 1:
        others = ", ".join(v.status for v in verdicts[1:])
        parts.append(f'<br><span style="font-size:0.75em;color:#555">+{len(verdicts) - 1} more: '
                     f"{_html.escape(others)}</span>")
    return "".join(parts)


def scales(verdicts) -> list:
    """The scales of ``verdicts`` in the order they first appear (live first, as
    :func:`collect` returns them)."""
    return list(dict.fromkeys(v.scale for v in verdicts))


def table(verdicts) -> "pd.DataFrame":
    """Rows: the study's six claims (:data:`gflib.reference.CLAIMS`); columns: the scales of
    ``verdicts`` (:func:`scales`); each cell an HTML :func:`cell` linking to the verdict section
    of the claim's chapter page (``<NAME>.html#verdict``)."""
    verdicts = list(verdicts)
    for v in verdicts:
        if not isinstance(v, Verdict):
            raise TypeError(f"table needs gflib.verdict.Verdict items, got {type(v).__name__}")
        if not 1 <= v.claim <= len(CLAIMS):
            raise ValueError(f"claim {v.claim!r} is not one of the study's 1..{len(CLAIMS)}")
    cols = scales(verdicts)
    rows = {}
    for claim in range(1, len(CLAIMS) + 1):
        module = chapter_of(claim)
        href = f"{module.NAME}.html#{ANCHOR}" if module is not None else None
        rows[claim_label(claim)] = {
            s: cell([v for v in verdicts if v.claim == claim and v.scale == s], href)
            for s in cols}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    if not cols:  # no verdicts at all: one column saying so
        df["no results yet"] = cell([])
    df.index.name = "claim"
    return df


def html(df) -> str:
    """``df`` (:func:`table`) as an HTML table that fits a 1280-px page: full width, fixed
    layout, wrapped text, the claim column a third of the width."""
    body = df.rename_axis(None).rename_axis("claim", axis=1).to_html(
        escape=False, border=0, classes="gflib-dashboard")
    style = ("<style>table.gflib-dashboard{width:100%;table-layout:fixed;border-collapse:collapse;"
             "font-size:0.9em}table.gflib-dashboard th,table.gflib-dashboard td{padding:4px 6px;"
             "vertical-align:top;text-align:left;overflow-wrap:anywhere;word-break:normal;"
             "white-space:normal;border-bottom:1px solid #ddd}"
             "table.gflib-dashboard thead th:first-child{width:30%}"
             "table.gflib-dashboard tbody th{font-weight:normal}</style>")
    return f'<div style="max-width:100%;overflow-x:hidden">{style}{body}</div>'


def show(verdicts) -> "pd.DataFrame":
    """Display :func:`table` of ``verdicts`` (as :func:`html`) in a notebook; returns it."""
    from IPython.display import HTML, display

    df = table(verdicts)
    display(HTML(html(df)))
    return df
