"""A claim's verdict as data first, then words: what every chapter's analysis returns for each
claim it tests, and what a results page can tabulate.

Status rules: ``"reproduced"`` only when the paper's own form of the claim holds here;
``"partly"`` when a weaker or direct form holds but not the paper's; ``"not reproduced"`` when
the data do not support it at this scale (an honest result); ``"not distinguishable"`` when the
interval of the effect covers 0; ``"not run"`` when there are no data.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

STATUSES = ("reproduced", "partly", "not reproduced", "not distinguishable", "not run")


@dataclass(frozen=True)
class Claim:
    """A question a chapter answers that is not one of the study's six claims (those are
    numbers, :data:`gflib.reference.CLAIMS`): ``id`` names it in verdicts (``Verdict.claim``),
    ``text`` is the results page's row."""

    id: str
    text: str


@dataclass(frozen=True)
class Verdict:
    """One claim at one scale.

    ``effect``: the number that decides it, in ``effect_unit`` (e.g. accuracy points, a
    difference of Kendall taus); ``interval``: its confidence interval ``(low, high)`` (NaN when
    none); ``p``: the test's p-value (NaN when none); ``n``: how many independent units the test
    used, each a ``unit`` (e.g. "optimizer x seed"); ``sentence``: one plain sentence; ``paper``:
    what the paper reported, in words.
    """

    claim: int
    scale: str
    status: str
    effect: float
    effect_unit: str
    interval: tuple
    p: float
    n: int
    unit: str
    sentence: str
    paper: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; allowed: {', '.join(STATUSES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def _digits(self) -> int:
        values = [abs(v) for v in (self.effect, *self.interval) if not math.isnan(v)]
        size = max(values) if values else 0
        return 3 if size < 1 else 1 if size < 100 else 0

    def effect_text(self) -> str:
        """The effect with its unit (3 decimals below 1, 1 below 100, else none); "no effect
        measured" when there is none (NaN)."""
        if math.isnan(self.effect):
            return "no effect measured"
        return f"{self.effect:+.{self._digits()}f} {self.effect_unit}".strip()

    def interval_text(self) -> str:
        """The interval as ``low to high`` in the effect's format ("" when there is none)."""
        lo, hi = self.interval
        if math.isnan(lo) or math.isnan(hi):
            return ""
        d = self._digits()
        return f"{lo:+.{d}f} to {hi:+.{d}f}"

    def numbers(self) -> str:
        """The data in one line: effect, interval, p and n."""
        parts = [self.effect_text()]
        if self.interval_text():
            parts.append(f"95 % CI {self.interval_text()}")
        if not math.isnan(self.p):
            parts.append(format_p(self.p))
        parts.append(f"n = {self.n} ({self.unit})")
        return ", ".join(parts)


def format_p(p: float) -> str:
    """A p-value for people: ``p < 1e-4`` below that, else two significant digits."""
    if math.isnan(p):
        return "p n/a"
    if p < 1e-4:
        return "p < 1e-4"
    return f"p = {p:.2g}" if p < 0.01 else f"p = {p:.3f}".rstrip("0").rstrip(".")


def p_cell(p: float) -> str:
    """:func:`format_p` for a table's p column, without its ``p =``: ``0.013``, ``< 1e-4`` or
    ``n/a``."""
    return format_p(p).removeprefix("p = ").removeprefix("p ")


def markdown(v: Verdict) -> str:
    """The verdict as one Markdown paragraph: status and scale, the data, the sentence, the
    paper's reading."""
    text = (f"**Claim {v.claim}, `{v.scale}`: {v.status}.** {v.numbers()}. "
            f"{v.sentence[:1].upper() + v.sentence[1:]}.")
    return text + (f" *The paper:* {v.paper}." if v.paper else "")


ADMONITION_CLASS = {"reproduced": "tip", "partly": "important", "not reproduced": "danger",
                    "not distinguishable": "note", "not run": "note"}
"""The admonition class of each status, as the book's theme (sphinx-book-theme on
pydata-sphinx-theme) colours it: tip green, important yellow, danger red, note blue."""


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def plain(v: Verdict) -> str:
    """The verdict for people, as plain text: a title line (claim, scale, status), the sentence,
    the data, the paper's reading."""
    lines = [f"Claim {v.claim} at {v.scale}: {v.status}", _sentence(v.sentence),
             _sentence(v.numbers()), _sentence(f"The paper: {v.paper}") if v.paper else ""]
    return "\n".join(line for line in lines if line)


def admonition(v: Verdict) -> str:
    """The verdict as an HTML admonition the book's theme styles and colours by status
    (:data:`ADMONITION_CLASS`): title "Claim N at SCALE: STATUS", then the plain sentence, the
    data line, and the paper's reading. Every text is HTML-escaped (sentences hold ``<`` and
    ``||g||``)."""
    from html import escape

    status_class = "verdict-" + v.status.replace(" ", "-")
    parts = [f'<div class="admonition {ADMONITION_CLASS[v.status]} verdict {status_class}">',
             f'<p class="admonition-title">{escape(f"Claim {v.claim} at {v.scale}: {v.status}")}'
             "</p>"]
    if v.sentence.strip():
        parts.append(f"<p>{escape(_sentence(v.sentence))}</p>")
    parts.append(f'<p class="verdict-data">{escape(_sentence(v.numbers()))}</p>')
    if v.paper:
        parts.append(f"<p><em>The paper:</em> {escape(_sentence(v.paper))}</p>")
    return "\n".join(parts + ["</div>"])


class Shown:
    """A verdict as a notebook shows it: one output whose HTML is :func:`admonition` (the book's
    HTML, Jupyter), with :func:`markdown` and :func:`plain` for front ends that take those (a
    PDF build, a console)."""

    def __init__(self, verdict: Verdict):
        self.verdict = verdict

    def _repr_html_(self) -> str:
        return admonition(self.verdict)

    def _repr_markdown_(self) -> str:
        return markdown(self.verdict)

    def __repr__(self) -> str:
        return plain(self.verdict)


def show_verdicts(verdicts) -> None:
    """Display each verdict in a notebook, as an admonition coloured by its status
    (:class:`Shown`)."""
    from IPython.display import display

    for v in verdicts:
        display(Shown(v))


def table(verdicts) -> "pd.DataFrame":
    """One row per verdict: claim, scale, status, effect, interval, p, n and unit."""
    import pandas as pd

    return pd.DataFrame([{"claim": v.claim, "scale": v.scale, "status": v.status,
                          "effect": v.effect_text(),
                          "95 % CI": v.interval_text(),
                          "p": format_p(v.p), "n": v.n, "independent unit": v.unit}
                         for v in verdicts])
