"""The results page: every claim of the study x every scale present, one status badge a cell,
from the chapters' own verdicts (:mod:`gflib.chapters`), never typed by hand.

:func:`collect` reads each registered chapter's verdicts: the live ones its notebook wrote
beside its results store (:meth:`gflib.chapters.Plan.live_verdicts`; computed, and trained if
need be, only when they are missing or stale), and those of each stored summary
(:func:`gflib.chapters.stored_verdicts`). :func:`table` lays them out: rows, the claims
(:func:`gflib.chapters.claims`, the paper's number beside each); columns, the scales in the
order they first appear; in a cell the headline (the test of the paper's own form of the claim)
with its effect, interval, p (q) and n at its unit, then every other sub-test by name with its
status. :func:`scales_table` says what each scale can and cannot show.
"""
from __future__ import annotations

import dataclasses
import html as _html

import pandas as pd

from . import chapters, presets, stats, summaries
from .reference import CLAIMS, PAPER_NUMBERS
from .verdict import LEVEL, Claim, Verdict

NOT_RUN_YET = "not run yet"
COLOURS = {"reproduced": "#2e7d32", "partly": "#b26a00", "not reproduced": "#c62828",
           "not distinguishable": "#616161", "not testable here": "#5d4037",
           "not run": "#757575", NOT_RUN_YET: "#9e9e9e"}
"""Badge colour per status: green, amber, red, grey, brown."""
ANCHOR = "verdict"
"""The section of a chapter page that shows its live verdicts (its ``## Verdict`` heading)."""


def collect(preset: str | None = None, store_root=None, data=chapters.DATA,
            stack: int | None = 16, device: str = "cpu", data_dir=None,
            progress: bool = False, names=None) -> list:
    """Every registered chapter's verdicts (``names``: only these chapters, in book order): at
    ``preset`` live (read from the file its notebook wrote; else analysed from the results store
    under ``store_root``, trained if need be), then from each stored summary under ``data``. A
    stored summary's verdicts carry its name as their ``scale`` (``"<name> (stored)"`` when that
    is the live preset's)."""
    wanted = chapters.names() if names is None else \
        [chapters.get(getattr(n, "NAME", n)).NAME for n in names]
    out = []
    for name in [n for n in chapters.names() if n in wanted]:
        module = chapters.get(name)
        store = chapters.results_dir(name, presets.get(preset).name, store_root) \
            if store_root is not None else None
        plan = chapters.plan(module, preset, device=device, store=store, data_dir=data_dir,
                             data=data)
        live = plan.live_verdicts()
        if live is None:
            live = plan.analyse(plan.run(stack=stack, progress=progress)).verdicts
        out += live
        for label in summaries.names(module.NAME, data):
            shown = f"{label} (stored)" if label == plan.preset.name else label
            out += [dataclasses.replace(v, scale=shown)
                    for v in chapters.stored_verdicts(module, label, data)]
    return out


def chapter_of(claim):
    """The registered chapter module that tests ``claim`` (None when none does yet)."""
    return next((chapters.get(n) for n in chapters.names() if claim in chapters.get(n).CLAIMS
                 or any(isinstance(c, Claim) and c.id == claim
                        for c in chapters.get(n).CLAIMS)), None)


def claim_of(claim):
    """The claim as the table's rows hold it: the study's number, or a :class:`Claim`'s id."""
    return claim.id if isinstance(claim, Claim) else claim


def claim_label(claim) -> str:
    """The row label: ``"4. EWMA optimizers ..."`` for the study's, the text for a chapter's own
    question."""
    if isinstance(claim, Claim):
        return claim.text
    return f"{claim}. {CLAIMS[claim - 1]}"


def badge(status: str) -> str:
    """A coloured span naming ``status``."""
    return (f'<span style="background:{COLOURS.get(status, "#757575")};color:#fff;'
            f'padding:1px 6px;border-radius:3px;font-size:0.85em;white-space:nowrap">'
            f"{_html.escape(status)}</span>")


def _small(text: str, size: float = 0.8, colour: str = "#444") -> str:
    return f'<br><span style="font-size:{size}em;color:{colour}">{_html.escape(text)}</span>'


def cell(verdicts: list, href: str | None = None) -> str:
    """One table cell from one claim's verdicts at one scale: the first (the paper's form) as
    the headline (its test, badge, effect with interval, p (q), n at its unit), then each other
    sub-test by name and status; ``"not run yet"`` without verdicts. ``href``: where the
    headline links."""
    if not verdicts:
        head = badge(NOT_RUN_YET)
        return f'<a href="{href}" style="text-decoration:none">{head}</a>' if href else head
    first = verdicts[0]
    head = badge(first.status)
    if href:
        head = f'<a href="{href}" style="text-decoration:none">{head}</a>'
    parts = [f'<span style="font-size:0.8em">{_html.escape(first.test)}</span><br>', head]
    if first.n:
        parts.append(_small(first.effect_text(), 0.85, "#000"))
        if first.interval_text():
            parts.append(_small(f"95 % CI {first.interval_text()}"))
        parts.append(_small(", ".join(t for t in (first.p_text(), first.n_text()) if t)))
    else:
        parts.append(_small(first.sentence or first.reason))
    for v in verdicts[1:]:
        parts.append(_small(f"{v.test}: {v.status}", 0.75, "#555"))
    return "".join(parts)


def scales(verdicts) -> list:
    """The scales of ``verdicts`` in the order they first appear (live first, as
    :func:`collect` returns them)."""
    return list(dict.fromkeys(v.scale for v in verdicts))


def href(claim, scale: str, live: str | None) -> str | None:
    """Where a cell links: the verdict section of the claim's chapter for the live scale, the
    stored summary's section for a stored scale."""
    module = chapter_of(claim_of(claim))
    if module is None:
        return None
    if scale == live:
        return f"{module.NAME}.html#{ANCHOR}"
    return f"{module.NAME}.html#{chapters.anchor(scale.removesuffix(' (stored)'))}"


def table(verdicts) -> pd.DataFrame:
    """Rows: every claim (:func:`gflib.chapters.claims`, with the paper's number); columns: the
    scales of ``verdicts`` (:func:`scales`); each cell an HTML :func:`cell` linking to where
    the chapter shows it."""
    verdicts = list(verdicts)
    for v in verdicts:
        if not isinstance(v, Verdict):
            raise TypeError(f"table needs gflib.verdict.Verdict items, got {type(v).__name__}")
    claims = chapters.claims()
    known = {claim_of(c) for c in claims}
    unknown = sorted({str(v.claim) for v in verdicts if v.claim not in known})
    if unknown:
        raise ValueError(f"claims {', '.join(unknown)} are neither the study's 1..{len(CLAIMS)}"
                         " nor a registered chapter's own")
    cols = scales(verdicts)
    live = cols[0] if cols else None
    rows = {}
    for claim in claims:
        key = claim_of(claim)
        paper = PAPER_NUMBERS.get(key, "")
        row = f"{claim_label(claim)}" + (f" [paper: {paper}]" if paper else "")
        rows[row] = {s: cell([v for v in verdicts if v.claim == key and v.scale == s],
                             href(claim, s, live)) for s in cols}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    if not cols:
        df["no results yet"] = cell([])
    df.index.name = "claim"
    return df


def html(df) -> str:
    """``df`` (:func:`table`) as an HTML table that fits a 1280-px page: full width, fixed
    layout, wrapped text, the claim column a quarter of the width, the paper's number in it
    in smaller grey type."""
    df = df.rename(index=lambda r: r.replace(" [paper: ", "<br><small style=\"color:#555\">"
                                             "paper: ").replace("]", "</small>")
                   if "[paper: " in r else r)
    body = df.rename_axis(None).rename_axis("claim", axis=1).to_html(
        escape=False, border=0, classes="gflib-dashboard")
    style = ("<style>table.gflib-dashboard{width:100%;table-layout:fixed;border-collapse:collapse;"
             "font-size:0.9em}table.gflib-dashboard th,table.gflib-dashboard td{padding:4px 6px;"
             "vertical-align:top;text-align:left;overflow-wrap:anywhere;word-break:normal;"
             "white-space:normal;border-bottom:1px solid #ddd}"
             "table.gflib-dashboard thead th:first-child{width:26%}"
             "table.gflib-dashboard tbody th{font-weight:normal}</style>")
    return f'<div style="max-width:100%;overflow-x:hidden">{style}{body}</div>'


def show(verdicts) -> pd.DataFrame:
    """Display :func:`table` of ``verdicts`` (as :func:`html`) in a notebook; returns it."""
    from IPython.display import HTML, display

    df = table(verdicts)
    display(HTML(html(df)))
    return df


def stored_verdicts(data=chapters.DATA) -> list:
    """Every registered chapter's verdicts on each summary stored under ``data`` (read from
    their verdicts files; analysed again only where a file is missing or stale): what a page
    can show without training anything."""
    return [v for name in chapters.names() for label in summaries.names(name, data)
            for v in chapters.stored_verdicts(name, label, data)]


def headlines(verdicts) -> str:
    """What reproduced, at which scale, in Markdown: one bullet per claim with verdicts, its
    headline status (the paper's own form of the claim, a chapter's first test) at each scale,
    e.g. ``- **3. BatchNorm matters more for sparse nets**: partly at fmnist``; scales of one
    status are joined."""
    lines = []
    for claim in chapters.claims():
        key = claim_of(claim)
        by_status = {}
        for scale in scales(verdicts):
            mine = [v for v in verdicts if v.claim == key and v.scale == scale]
            if mine:
                by_status.setdefault(mine[0].status, []).append(f"`{scale}`")
        if by_status:
            text = "; ".join(f"{status} at {', '.join(where)}"
                             for status, where in by_status.items())
            lines.append(f"- **{claim_label(claim)}**: {text}")
    return "\n".join(lines)


def stored_scales(data=chapters.DATA) -> dict:
    """``{summary name: the Preset it ran at}`` (its provenance's preset and overrides) over
    every chapter's stored summaries under ``data``."""
    out = {}
    for c in chapters.names():
        for name in summaries.names(c, data):
            meta = summaries.load(c, name, data)[1]
            overrides = {k: tuple(v) if isinstance(v, list) else v
                         for k, v in (meta.get("overrides") or {}).items()}
            out.setdefault(name, presets.get(meta["preset"], **overrides))
    return out


def scales_table(scales: dict, optimizers: int = 5) -> pd.DataFrame:
    """What each scale (``{name: Preset}``) can show: its data, widths, epochs and seeds, and
    the smallest one-sided p an exact signed-rank test reaches at the book's three kinds of
    unit: seeds (one optimizer, e.g. AdamW against Adam, the CNN tests), ``optimizers`` x seeds
    (the BatchNorm tests) and a sparse-vs-dense cell's width x seed pairs; "cannot reach 0.05"
    where it stays above :data:`gflib.verdict.LEVEL`."""
    def reach(min_p):
        return f"{min_p:.2g}" + (" (cannot reach 0.05)" if min_p > LEVEL else "")
    rows = {}
    for name, p in scales.items():
        seeds = len(p.seeds)
        rows[name] = {
            "data": f"{p.dataset}, {p.train_subset or 'all'} training images",
            "sparse width (dense)": f"{p.sparse_width} ({min(p.dense_widths)}-"
                                    f"{max(p.dense_widths)})",
            "epochs": p.epochs, "seeds": seeds,
            "smallest p at seeds": reach(stats.min_p_signed_rank(seeds)),
            f"at {optimizers} optimizers x seeds": reach(
                stats.min_p_signed_rank(optimizers * seeds)),
            "at a cell's pairs": reach(stats.min_p_signed_rank(len(p.dense_widths) * seeds))}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("scale")
