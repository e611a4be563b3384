"""A claim's verdict, data first: one :class:`Verdict` per test of a claim at one scale, its
status worked out from its data alone by one rule (:func:`judge`), for every chapter and the
results page.

A test declares what it checks (``form``: the paper's own form of the claim, or a direct or
weaker form), the direction the claim predicts (H1: ``effect > 0``; a chapter orients its effect
so), the paper's own value where it gave one (``paper_effect``, in the effect's units) and any
further condition of the paper's form (``paper_condition``, ``condition_holds``); and its data:
the effect with a 95 % interval, a one-sided p-value at a declared independent ``unit``, ``n``
units and the smallest p the design can reach (``min_p``). The rule, in order:

1. **not run**: no data (``n`` 0 or no effect);
2. **not testable here**: the design cannot reach the level (``min_p`` above it): says how many
   units it would need;
3. **reproduced**: significant (``p``, or its Benjamini-Hochberg ``q`` where the test belongs to a
   family), the interval clear of 0 on the claimed side, the paper's condition holding and the
   paper's value inside the interval (or not given);
4. **partly**: significant with the interval clear of 0, but the paper's condition fails or its
   value lies outside the interval: a weaker form holds, named (``weaker``);
5. **not reproduced**: the interval lies below 0 (the data point the other way), or the paper's
   value lies outside the interval, or the paper's condition fails;
6. **not distinguishable**: the interval covers 0 and the paper's value.

A check without statistics (no p, no interval: e.g. that every SC-SDC pair has equal active
weights) is reproduced when its condition holds, not reproduced when it does not.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd
from scipy import stats as ss

LEVEL = 0.05
"""The significance level of every verdict."""
STATUSES = ("reproduced", "partly", "not reproduced", "not distinguishable",
            "not testable here", "not run")
FORMS = ("paper", "direct", "weaker", "check")
"""What a test checks: the paper's own form of the claim (a claim's headline), a direct test of
it, a weaker form, or a check of a construction."""
NAN = float("nan")


@dataclass(frozen=True)
class Claim:
    """A question a chapter answers that is not one of the study's six claims (those are
    numbers, :data:`gflib.reference.CLAIMS`): ``id`` names it in verdicts (``Verdict.claim``),
    ``text`` is the results page's row."""

    id: str
    text: str


def _finite(x) -> bool:
    """A finite real number (NumPy's included: ``np.float32`` is not a ``float``)."""
    return isinstance(x, numbers.Real) and math.isfinite(x)


@dataclass(frozen=True)
class Verdict:
    """One test of one claim at one scale (see the module doc); :attr:`status` and
    :attr:`reason` follow from the data by :func:`judge`.

    ``claim``: the study's claim number, or a :class:`Claim` id; ``test``: the sub-test's name
    ("collapse at lr 0.001"); ``effect`` in ``effect_unit``, oriented so that the claim predicts
    ``effect > 0``; ``interval``: its 95 % interval; ``p``: one-sided, H1 ``effect > 0``; ``q``: its
    Benjamini-Hochberg value within the claim's tests at this scale (:func:`adjust`); ``n``:
    independent units, each a ``unit``; ``min_p``: the smallest p the design can reach;
    ``needs``: the units it would need to reach :data:`LEVEL` (0: not worked out);
    ``sentence``: one plain sentence; ``paper``: the paper's reading in words."""

    claim: int | str
    test: str
    scale: str
    form: str
    effect: float
    effect_unit: str
    interval: tuple = (NAN, NAN)
    p: float = NAN
    n: int = 0
    unit: str = ""
    min_p: float = NAN
    needs: int = 0
    q: float = NAN
    paper_effect: float = NAN
    paper_condition: str = ""
    condition_holds: bool | None = None
    weaker: str = ""
    sentence: str = ""
    paper: str = ""

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"unknown form {self.form!r}; allowed: {', '.join(FORMS)}")
        object.__setattr__(self, "interval", tuple(float(v) for v in self.interval))
        object.__setattr__(self, "n", int(self.n))

    @property
    def status(self) -> str:
        return judge(self)[0]

    @property
    def reason(self) -> str:
        """Why the rule gave :attr:`status`, in words."""
        return judge(self)[1]

    @property
    def claim_label(self) -> str:
        return f"Claim {self.claim}" if isinstance(self.claim, int) else str(self.claim)

    @property
    def title(self) -> str:
        """``Claim 4, collapse at lr 0.001 (book): not reproduced``."""
        return f"{self.claim_label}, {self.test} ({self.scale}): {self.status}"

    def _digits(self) -> int:
        values = [abs(v) for v in (self.effect, *self.interval, self.paper_effect) if _finite(v)]
        size = max(values) if values else 0
        return 3 if size < 1 else 1 if size < 100 else 0

    def value_text(self, value: float) -> str:
        """``value`` in the effect's format (signed, 3 decimals below 1, 1 below 100; a value
        that rounds to 0 is ``+0.000``, never ``-0.000``)."""
        if not _finite(value):
            return "n/a"
        d = self._digits()
        return f"{round(value, d) + 0.0:+.{d}f}"

    def effect_text(self) -> str:
        """The effect with its unit; "no effect measured" when there is none."""
        if not _finite(self.effect):
            return "no effect measured"
        return f"{self.value_text(self.effect)} {self.effect_unit}".strip()

    def interval_text(self) -> str:
        """The interval as ``low to high`` in the effect's format ("" when there is none)."""
        lo, hi = self.interval
        if not (_finite(lo) and _finite(hi)):
            return ""
        return f"{self.value_text(lo)} to {self.value_text(hi)}"

    def p_text(self) -> str:
        """``p = 0.012 (q = 0.03)``, the q only when it was adjusted; "" without a p."""
        if not _finite(self.p):
            return ""
        q = f" (q {format_p(self.q).removeprefix('p ')})" if _finite(self.q) else ""
        return format_p(self.p) + q

    def n_text(self) -> str:
        return f"n = {self.n} {self.unit}".strip()

    def numbers(self) -> str:
        """The data in one line: effect, interval, p (q), n at its unit."""
        parts = [self.effect_text()]
        if self.interval_text():
            parts.append(f"95 % CI {self.interval_text()}")
        if self.p_text():
            parts.append(self.p_text())
        parts.append(self.n_text())
        return ", ".join(parts)

    def to_dict(self) -> dict:
        """The verdict as JSON-able data, with its status and reason."""
        out = dataclasses.asdict(self)
        out["interval"] = list(self.interval)
        return {**out, "status": self.status, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        """The inverse of :meth:`to_dict` (status and reason are worked out again)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


def _interval(v: Verdict) -> tuple:
    lo, hi = v.interval
    return (lo, hi) if _finite(lo) and _finite(hi) else (None, None)


def judge(v: Verdict, level: float = LEVEL) -> tuple:
    """``(status, reason)`` of ``v`` by the rule of the module doc."""
    if v.n == 0 or not _finite(v.effect):
        return "not run", "no data at this scale"
    lo, hi = _interval(v)
    has_p = _finite(v.p)
    if not has_p and lo is None:
        if v.condition_holds is None:
            return "not run", "no test at this scale"
        return (("reproduced", v.paper_condition) if v.condition_holds
                else ("not reproduced", f"it does not hold that {v.paper_condition}"))
    if _finite(v.min_p) and v.min_p > level:
        more = f"; it would need {v.needs} {v.unit}" if v.needs else ""
        return ("not testable here", f"the smallest p this design can reach is "
                f"{v.min_p:.2g} (n = {v.n} {v.unit}){more}")
    p = v.q if _finite(v.q) else v.p
    significant = (p < level) if has_p else True
    above = lo > 0 if lo is not None else v.effect > 0
    paper = v.paper_effect if _finite(v.paper_effect) else None
    outside = paper is not None and lo is not None and not lo <= paper <= hi
    paper_text = f"the paper's value {v.value_text(paper)} lies outside our interval" \
        if outside else ""
    if significant and above and v.effect > 0:
        if v.condition_holds is False:
            return "partly", (f"{v.weaker or 'the direct test holds'}, but not that "
                              f"{v.paper_condition}")
        if outside:
            return "partly", f"{v.weaker or 'the direction holds'}, but {paper_text}"
        return "reproduced", ("significant, with the interval above 0"
                              + (f" and the paper's value {v.value_text(paper)} inside it"
                                 if paper is not None else "")
                              + (f", and {v.paper_condition}" if v.condition_holds else ""))
    if hi is not None and hi < 0:
        return "not reproduced", "the data point the other way (the interval lies below 0)"
    if outside:
        return "not reproduced", paper_text
    if v.condition_holds is False:
        return "not reproduced", f"it does not hold that {v.paper_condition}"
    if has_p and not significant and not (lo is not None and lo <= 0 <= hi):
        name = "q" if _finite(v.q) else "p"
        return "not distinguishable", (f"not significant ({name} = {p_cell(p)}, not below "
                                       f"{level:g})" + (", though the interval lies above 0"
                                                        if lo is not None and lo > 0 else ""))
    return "not distinguishable", ("the interval covers 0" + (" and the paper's value"
                                                              if paper is not None else ""))


def adjust(verdicts: list) -> list:
    """``verdicts`` with ``q``: Benjamini-Hochberg (scipy.stats.false_discovery_control) over
    the p-values of each claim's tests at each scale, the family a reader takes in at once."""
    out = list(verdicts)
    families = {}
    for i, v in enumerate(out):
        if _finite(v.p):
            families.setdefault((v.claim, v.scale), []).append(i)
    for members in families.values():
        q = ss.false_discovery_control([out[i].p for i in members], method="bh")
        for i, value in zip(members, q):
            out[i] = dataclasses.replace(out[i], q=float(value))
    return out


def q_values(table: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg q-values of a table of p-values (the table is the family), in its
    layout; missing p-values stay missing and are not counted as tests."""
    p = table.to_numpy(dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = ss.false_discovery_control(p[ok], method="bh")
    return pd.DataFrame(out, index=table.index, columns=table.columns)


def format_p(p: float) -> str:
    """A p-value for people: ``p < 1e-4`` below that, else two significant digits, trailing
    zeros kept so that every p of a page reads alike (``p = 0.012``, ``p = 0.0046``,
    ``p = 0.50``, ``p = 1.0``); three, or more, where two would carry it across :data:`LEVEL`
    (``p = 0.0499``, not ``0.050``; ``p = 0.04996``, not ``0.0500``)."""
    if not _finite(p):
        return "p n/a"
    if p < 1e-4:
        return "p < 1e-4"
    digits = 2
    text = f"{p:#.2g}"
    while (float(text) < LEVEL) != (p < LEVEL) and digits < 12:
        digits += 1
        text = f"{p:#.{digits}g}"
    return f"p = {text}"


def p_cell(p: float) -> str:
    """:func:`format_p` for a table's p column, without its ``p =``: ``0.013``, ``< 1e-4`` or
    ``n/a``."""
    return format_p(p).removeprefix("p = ").removeprefix("p ")


ADMONITION_CLASS = {"reproduced": "tip", "partly": "important", "not reproduced": "danger",
                    "not distinguishable": "note", "not testable here": "note",
                    "not run": "note"}
"""The admonition class of each status, as the book's theme (sphinx-book-theme on
pydata-sphinx-theme) colours it: tip green, important yellow, danger red, note blue."""


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _lines(v: Verdict) -> list:
    """The verdict's lines after its title: sentence, data, why, the paper."""
    lines = [_sentence(v.sentence), _sentence(v.numbers()),
             _sentence(f"{v.status.capitalize()}: {v.reason}")]
    if v.paper:
        lines.append(_sentence(f"The paper: {v.paper}"))
    return [line for line in lines if line]


def markdown(v: Verdict) -> str:
    """The verdict as one Markdown paragraph: title in bold, then its lines."""
    return f"**{v.title}.** " + " ".join(_lines(v))


def plain(v: Verdict) -> str:
    """The verdict as plain text: the title line, then its lines."""
    return "\n".join([v.title] + _lines(v))


def admonition(v: Verdict) -> str:
    """The verdict as an HTML admonition the book's theme colours by status
    (:data:`ADMONITION_CLASS`): its title (claim, sub-test, scale, status), the sentence, the
    data, why the rule gave that status, the paper's reading. Every text is HTML-escaped."""
    status_class = "verdict-" + v.status.replace(" ", "-")
    lines = _lines(v)
    parts = [f'<div class="admonition {ADMONITION_CLASS[v.status]} verdict {status_class}">',
             f'<p class="admonition-title">{escape(v.title)}</p>']
    for line in lines:
        kind = ("verdict-data" if line == _sentence(v.numbers()) else
                "verdict-why" if line.startswith(v.status.capitalize()) else "")
        if line.startswith("The paper: "):
            parts.append(f"<p><em>The paper:</em> {escape(line.removeprefix('The paper: '))}</p>")
        else:
            parts.append(f'<p class="{kind}">{escape(line)}</p>' if kind
                         else f"<p>{escape(line)}</p>")
    return "\n".join(parts + ["</div>"])


class Shown:
    """A verdict as a notebook shows it: one output whose HTML is :func:`admonition`, with
    :func:`markdown` and :func:`plain` for front ends that take those."""

    def __init__(self, verdict: Verdict):
        self.verdict = verdict

    def _repr_html_(self) -> str:
        return admonition(self.verdict)

    def _repr_markdown_(self) -> str:
        return markdown(self.verdict)

    def __repr__(self) -> str:
        return plain(self.verdict)


def show_verdicts(verdicts) -> None:
    """Display each verdict in a notebook, as an admonition coloured by its status."""
    from IPython.display import display

    for v in verdicts:
        display(Shown(v))


def table(verdicts) -> pd.DataFrame:
    """One row per verdict, for a page: the sub-test, scale, status, effect with its interval,
    p (q), n and unit."""
    return pd.DataFrame([{"test": f"{v.claim_label}, {v.test}", "scale": v.scale,
                          "status": v.status,
                          "effect (95 % CI)": v.effect_text() + (f" ({v.interval_text()})"
                                                                 if v.interval_text() else ""),
                          "p (q)": v.p_text() or "none", "n": v.n_text()}
                         for v in verdicts]).set_index("test") if verdicts else pd.DataFrame()
