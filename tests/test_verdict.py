"""Verdicts for people: an admonition coloured by status, escaped, without repeated text."""
import math

import pytest

from gflib import verdict
from gflib.verdict import Verdict


def make(status="partly", sentence="the gain is larger when ||g|| < 1", paper="65 % of BN cells"):
    return Verdict(claim=3, scale="fmnist-h100", status=status, effect=1.1, effect_unit="points",
                   interval=(0.6, 1.8), p=7.7e-24, n=10, unit="optimizer x seed",
                   sentence=sentence, paper=paper)


def test_admonition_has_title_sentence_data_and_paper_in_that_order_escaped():
    html = verdict.admonition(make())
    assert html.startswith('<div class="admonition important verdict verdict-partly">')
    assert '<p class="admonition-title">Claim 3 at fmnist-h100: partly</p>' in html
    sentence = html.index("The gain is larger when ||g|| &lt; 1.")
    data = html.index("+1.1 points, 95 % CI +0.6 to +1.8, p &lt; 1e-4, n = 10 (optimizer x seed).")
    paper = html.index("<em>The paper:</em> 65 % of BN cells.")
    assert sentence < data < paper
    assert "< 1" not in html and "`" not in html and "**" not in html
    assert html.count("gain is larger") == 1 and html.count("points") == 1
    assert html.endswith("</div>")


@pytest.mark.parametrize("status, css", [("reproduced", "tip"), ("partly", "important"),
                                         ("not reproduced", "danger"),
                                         ("not distinguishable", "note"), ("not run", "note")])
def test_admonition_class_follows_the_status(status, css):
    html = verdict.admonition(make(status=status))
    slug = status.replace(" ", "-")
    assert html.startswith(f'<div class="admonition {css} verdict verdict-{slug}"')
    assert f": {status}</p>" in html


def test_admonition_leaves_out_an_empty_sentence_and_paper():
    v = Verdict(2, "book", "not run", math.nan, "", (math.nan, math.nan), math.nan, 0, "runs", "")
    html = verdict.admonition(v)
    assert html.count("<p") == 2 and "The paper" not in html  # title and data only
    assert verdict.plain(v) == "Claim 2 at book: not run\nNo effect measured, n = 0 (runs)."


def test_show_verdicts_displays_one_output_per_verdict_with_fallbacks(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: shown.extend(objs))
    verdict.show_verdicts([make(), make("reproduced")])
    assert len(shown) == 2
    first = shown[0]
    assert first._repr_html_() == verdict.admonition(make())
    assert first._repr_markdown_() == verdict.markdown(make())  # the PDF / console fallback
    assert repr(first).splitlines() == [
        "Claim 3 at fmnist-h100: partly", "The gain is larger when ||g|| < 1.",
        "+1.1 points, 95 % CI +0.6 to +1.8, p < 1e-4, n = 10 (optimizer x seed).",
        "The paper: 65 % of BN cells."]


def test_ipython_formats_a_shown_verdict_as_html_markdown_and_text():
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(verdict.Shown(make("not reproduced")))
    assert {"text/html", "text/markdown", "text/plain"} <= set(data)
    assert 'class="admonition danger' in data["text/html"]


def test_a_verdict_without_an_effect_says_so():
    from gflib.verdict import Verdict
    v = Verdict(claim=6, scale="book", status="not run", effect=float("nan"), effect_unit="points",
                interval=(float("nan"), float("nan")), p=float("nan"), n=0, unit="seed",
                sentence="not run here")
    assert "nan" not in v.numbers() and v.numbers().startswith("no effect measured")


def test_p_values_for_people_in_sentences_and_in_table_cells():
    assert verdict.format_p(0.0123) == "p = 0.012" and verdict.p_cell(0.0123) == "0.012"
    assert verdict.format_p(0.00456) == "p = 0.0046" and verdict.p_cell(0.00456) == "0.0046"
    assert verdict.format_p(3e-6) == "p < 1e-4" and verdict.p_cell(3e-6) == "< 1e-4"
    assert verdict.p_cell(0.5) == "0.5" and verdict.p_cell(math.nan) == "n/a"
