"""Verdicts: one status rule (:func:`gflib.verdict.judge`) from the data alone, and verdicts for
people (an admonition coloured by status, escaped, without repeated text)."""
import json
import math

import numpy as np
import pytest
from scipy import stats as ss

from gflib import verdict
from gflib.verdict import LEVEL, STATUSES, Verdict

NAN = math.nan


def make(**fields):
    """A significant test with its interval above 0 and no paper value or condition:
    reproduced, unless ``fields`` change that."""
    base = dict(claim=3, test="gain at lr 0.1", scale="fmnist", form="paper", effect=1.1,
                effect_unit="points", interval=(0.6, 1.8), p=0.001, n=10,
                unit="optimizer x seed")
    return Verdict(**{**base, **fields})


COVERS_0 = dict(effect=0.1, interval=(-0.3, 0.5), p=0.3)
"""A test whose interval covers 0 and whose p is far from significant."""
BELOW_0 = dict(effect=-0.8, interval=(-1.5, -0.2), p=0.99)
"""A test whose data point the other way."""
CHECK = dict(form="check", effect=1.0, effect_unit="of pairs", interval=(NAN, NAN), p=NAN,
             n=5, unit="pair", paper_condition="every SC-SDC pair has equal active weights")
"""A check without statistics: no p, no interval."""

CASES = {
    "reproduced, no paper value": (
        {}, "reproduced", "significant, with the interval above 0"),
    "reproduced, paper value inside": (
        dict(paper_effect=1.0), "reproduced",
        "significant, with the interval above 0 and the paper's value +1.0 inside it"),
    "reproduced, condition holds": (
        dict(paper_condition="the gain grows with sparsity", condition_holds=True), "reproduced",
        "significant, with the interval above 0, and the gain grows with sparsity"),
    "partly, condition fails": (
        dict(paper_condition="the gain grows with sparsity", condition_holds=False,
             weaker="sparse nets gain from BatchNorm"), "partly",
        "sparse nets gain from BatchNorm, but not that the gain grows with sparsity"),
    "partly, condition fails, no weaker form named": (
        dict(paper_condition="the gain grows with sparsity", condition_holds=False), "partly",
        "the direct test holds, but not that the gain grows with sparsity"),
    "partly, paper value above the interval": (
        dict(paper_effect=2.5, weaker="sparse nets gain"), "partly",
        "sparse nets gain, but the paper's value +2.5 lies outside our interval"),
    "partly, paper value below the interval, no weaker form named": (
        dict(paper_effect=0.2), "partly",
        "the direction holds, but the paper's value +0.2 lies outside our interval"),
    "not reproduced, interval below 0": (
        BELOW_0, "not reproduced", "the data point the other way (the interval lies below 0)"),
    "not reproduced, interval below 0 even with a small p": (
        {**BELOW_0, "p": 0.001}, "not reproduced", "the data point the other way"),
    "not reproduced, paper value outside": (
        {**COVERS_0, "paper_effect": 2.5}, "not reproduced",
        "the paper's value +2.5 lies outside our interval"),
    "not reproduced, condition fails": (
        {**COVERS_0, "paper_condition": "the gain grows with sparsity",
         "condition_holds": False}, "not reproduced",
        "it does not hold that the gain grows with sparsity"),
    "not distinguishable, no paper value": (
        COVERS_0, "not distinguishable", "the interval covers 0"),
    "not distinguishable, paper value inside": (
        {**COVERS_0, "paper_effect": 0.2}, "not distinguishable",
        "the interval covers 0 and the paper's value"),
    "not distinguishable, significant p but the interval covers 0": (
        {**COVERS_0, "p": 0.01}, "not distinguishable", "the interval covers 0"),
    "not testable here, with the units it needs": (
        dict(n=2, unit="seed", p=0.25, min_p=0.25, needs=5), "not testable here",
        "the smallest p this design can reach is 0.25 (n = 2 seed); it would need 5 seed"),
    "not testable here, needs not worked out": (
        dict(n=2, unit="seed", p=0.25, min_p=0.25), "not testable here",
        "the smallest p this design can reach is 0.25 (n = 2 seed)"),
    "not run, no units": (
        dict(n=0), "not run", "no data at this scale"),
    "not run, no effect": (
        dict(effect=NAN), "not run", "no data at this scale"),
    "not run, effect None": (
        dict(effect=None), "not run", "no data at this scale"),
    "check, condition holds": (
        {**CHECK, "condition_holds": True}, "reproduced",
        "every SC-SDC pair has equal active weights"),
    "check, condition fails": (
        {**CHECK, "condition_holds": False}, "not reproduced",
        "it does not hold that every SC-SDC pair has equal active weights"),
    "check, condition not checked": (
        CHECK, "not run", "no test at this scale"),
}


@pytest.mark.parametrize("fields, status, reason", CASES.values(), ids=CASES.keys())
def test_the_status_rule(fields, status, reason):
    v = make(**fields)
    assert v.status == status
    assert reason in v.reason
    assert verdict.judge(v) == (v.status, v.reason)


def test_the_cases_cover_every_status():
    assert {status for _, status, _ in CASES.values()} == set(STATUSES)


def test_reasons_are_exact_where_the_rule_says_nothing_more():
    assert make().reason == "significant, with the interval above 0"
    assert make(**COVERS_0).reason == "the interval covers 0"
    assert make(n=2, unit="seed", p=0.25, min_p=0.25).reason == \
        "the smallest p this design can reach is 0.25 (n = 2 seed)"


def test_not_testable_here_comes_before_the_data_and_stops_at_the_level():
    # a design that cannot reach the level is not testable, however the data look
    assert make(min_p=0.06, p=0.06, needs=6, unit="seed").status == "not testable here"
    assert make(**BELOW_0, min_p=0.25).status == "not testable here"
    # one that just reaches it is judged on its data
    assert make(min_p=LEVEL, p=LEVEL).status != "not testable here"
    assert make(min_p=0.03, p=0.03).status == "reproduced"


def test_significance_is_p_below_the_level():
    assert make(p=0.0499).status == "reproduced"
    assert make(p=LEVEL).status == "not distinguishable"  # the interval is clear of 0, p is not
    assert make(p=0.2).status == "not distinguishable"


def test_not_significant_with_the_interval_clear_of_0_does_not_claim_it_covers_0():
    v = make(p=0.2)
    assert v.status == "not distinguishable"
    assert "covers 0" not in v.reason
    assert "not significant (p = 0.20" in v.reason and "the interval lies above 0" in v.reason


def test_q_is_used_instead_of_p_when_present():
    assert make(p=0.03).status == "reproduced"
    adjusted = make(p=0.03, q=0.06)
    assert adjusted.status == "not distinguishable"
    assert "q = 0.060" in adjusted.reason
    assert make(p=0.03, q=0.04).status == "reproduced"
    # q can also make a test significant that its p alone would not (BH never does, but the
    # rule reads q whenever there is one)
    assert make(p=0.06, q=0.04).status == "reproduced"
    # a q at or above the level with the paper's value outside: not reproduced, not partly
    assert make(p=0.03, q=0.06, paper_effect=2.5).status == "not reproduced"
    assert make(p=0.03, paper_effect=2.5).status == "partly"


def test_a_condition_failing_without_statistics_of_its_own_read_with_the_data():
    # the paper's condition fails and the interval covers 0: not reproduced, not partly
    v = make(**COVERS_0, paper_condition="Adam's and RMSProp's collapse", condition_holds=False)
    assert v.status == "not reproduced"
    assert v.reason == "it does not hold that Adam's and RMSProp's collapse"


def test_numpy_numbers_are_numbers():
    v = make(effect=np.float32(1.1), p=np.float64(0.001), min_p=np.float32(0.001), n=np.int64(10))
    assert v.status == "reproduced"
    assert make(effect=np.float32(1.1), min_p=np.float32(0.25)).status == "not testable here"


def test_adjust_is_benjamini_hochberg_within_each_claim_and_scale():
    family = [make(test=f"t{i}", p=p) for i, p in enumerate([0.01, 0.04, 0.03])]
    other_scale = make(test="t0", scale="book", p=0.04)
    other_claim = make(claim=4, test="t0", p=0.04)
    no_p = make(test="a check", **CHECK, condition_holds=True)
    before = family + [other_scale, other_claim, no_p]
    after = verdict.adjust(before)
    # by hand: sorted p 0.01, 0.03, 0.04 (m = 3) give 3 * 0.01 / 1 = 0.03, 3 * 0.03 / 2 = 0.045
    # and 3 * 0.04 / 3 = 0.04; monotone from the top: 0.03, min(0.045, 0.04) = 0.04, 0.04
    assert [v.q for v in after[:3]] == pytest.approx([0.03, 0.04, 0.04])
    # a family of one keeps its p as its q; the two families apart from the first
    assert after[3].q == pytest.approx(0.04) and after[4].q == pytest.approx(0.04)
    assert math.isnan(after[5].q)  # no p, no test in any family
    # nothing else changes, and the input is left as it was
    assert [v.p for v in after] == [v.p for v in before]
    assert [(v.claim, v.test, v.scale) for v in after] == [(v.claim, v.test, v.scale)
                                                          for v in before]
    assert all(math.isnan(v.q) for v in before)


def test_adjust_can_turn_reproduced_into_not_distinguishable():
    family = [make(test="a", p=0.03), make(test="b", p=0.5), make(test="c", p=0.6)]
    assert family[0].status == "reproduced"
    first = verdict.adjust(family)[0]
    assert first.q == pytest.approx(0.09)  # 3 * 0.03 / 1, below 3 * 0.5 / 2 and 0.6
    assert first.status == "not distinguishable"
    assert first.p_text() == "p = 0.030 (q = 0.090)"


def test_q_values_of_a_table_keep_its_layout_and_skip_missing_values():
    import pandas as pd
    table = pd.DataFrame({"a": [0.01, NAN], "b": [0.04, 0.03]}, index=["x", "y"])
    q = verdict.q_values(table)
    assert list(q.index) == ["x", "y"] and list(q.columns) == ["a", "b"]
    assert math.isnan(q.loc["y", "a"])
    assert [q.loc["x", "a"], q.loc["x", "b"], q.loc["y", "b"]] == pytest.approx(
        list(ss.false_discovery_control([0.01, 0.04, 0.03])))
    assert q.loc["x", "a"] == pytest.approx(0.03)


def test_to_dict_from_dict_round_trip_through_json():
    v = make(q=0.02, paper_effect=1.0, paper_condition="the gain grows", condition_holds=False,
             weaker="sparse nets gain", sentence="a sentence", paper="the paper's reading",
             min_p=1e-3, needs=0)
    d = v.to_dict()
    assert d["status"] == "partly" and d["reason"] == v.reason and d["interval"] == [0.6, 1.8]
    back = Verdict.from_dict(json.loads(json.dumps(d, allow_nan=True)))
    assert repr(back) == repr(v)  # NaN fields compare equal in text, not as numbers
    assert back.interval == (0.6, 1.8) and isinstance(back.interval, tuple)
    assert (back.status, back.reason) == (v.status, v.reason)
    # a stored status is read again, never trusted: the rule works it out afresh
    assert Verdict.from_dict({**d, "status": "reproduced"}).status == "partly"
    plain = make(**CHECK)
    again = Verdict.from_dict(json.loads(json.dumps(plain.to_dict(), allow_nan=True)))
    assert repr(again) == repr(plain) and math.isnan(again.p)


def test_an_unknown_form_is_refused():
    with pytest.raises(ValueError, match="unknown form 'headline'"):
        make(form="headline")


def test_values_are_signed_in_the_effects_format():
    assert make().value_text(1.1) == "+1.1"
    small = make(effect=0.012, interval=(0.004, 0.02))
    assert small.effect_text() == "+0.012 points"
    assert small.interval_text() == "+0.004 to +0.020"
    assert small.value_text(-0.0001) == "+0.000"  # never -0.000
    big = make(effect=250.0, interval=(120.0, 380.0))
    assert big.effect_text() == "+250 points" and big.value_text(-3.4) == "-3"
    assert make().value_text(NAN) == "n/a"


def test_p_values_for_people_in_sentences_and_in_table_cells():
    # the docstring's examples: two significant digits, trailing zeros kept
    assert verdict.format_p(0.0123) == "p = 0.012" and verdict.p_cell(0.0123) == "0.012"
    assert verdict.format_p(0.00456) == "p = 0.0046" and verdict.p_cell(0.00456) == "0.0046"
    assert verdict.format_p(0.5) == "p = 0.50" and verdict.p_cell(0.5) == "0.50"
    assert verdict.format_p(1.0) == "p = 1.0" and verdict.p_cell(1.0) == "1.0"
    # three digits where two would carry it across the level, and more where three would
    assert verdict.format_p(0.0499) == "p = 0.0499"
    assert verdict.format_p(0.04996) == "p = 0.04996"
    assert verdict.format_p(0.050) == "p = 0.050"
    assert verdict.format_p(0.0504) == "p = 0.050"  # reads 0.050: not below the level either
    assert verdict.format_p(0.0449) == "p = 0.045"
    # tiny and missing
    assert verdict.format_p(3e-6) == "p < 1e-4" and verdict.p_cell(3e-6) == "< 1e-4"
    assert verdict.format_p(1e-4) == "p = 0.00010"
    assert verdict.format_p(NAN) == "p n/a" and verdict.p_cell(NAN) == "n/a"
    assert verdict.format_p(None) == "p n/a"


@pytest.mark.parametrize("p", [0.0499, 0.04996, 0.049999, 0.05, 0.0501, 0.012, 0.3])
def test_a_shown_p_is_on_the_same_side_of_the_level_as_the_p(p):
    shown = float(verdict.p_cell(p))
    assert (shown < LEVEL) == (p < LEVEL)


def test_p_text_and_numbers():
    assert make(p=0.0123).p_text() == "p = 0.012"
    assert make(p=0.0123, q=0.03).p_text() == "p = 0.012 (q = 0.030)"
    assert make(p=1e-6, q=2e-6).p_text() == "p < 1e-4 (q < 1e-4)"
    assert make(p=NAN).p_text() == ""
    assert make(p=0.0123).numbers() == \
        "+1.1 points, 95 % CI +0.6 to +1.8, p = 0.012, n = 10 optimizer x seed"
    assert make(**CHECK).numbers() == "+1.0 of pairs, n = 5 pair"


# verdicts for people


def shown(status="partly", sentence="the gain is larger when ||g|| < 1",
          paper="65 % of BN cells"):
    """A verdict of ``status`` (the rule's, from :data:`CASES`) with a sentence and the paper's
    reading."""
    fields = {"partly": dict(paper_effect=2.5, weaker="sparse nets gain"),
              "reproduced": {}, "not reproduced": BELOW_0, "not distinguishable": COVERS_0,
              "not testable here": dict(n=2, unit="seed", p=0.25, min_p=0.25, needs=5),
              "not run": dict(n=0)}[status]
    v = make(**{"scale": "fmnist-h100", "p": 7.7e-24, "sentence": sentence, "paper": paper,
                **fields})
    assert v.status == status
    return v


def test_admonition_has_title_sentence_data_why_and_paper_in_that_order_escaped():
    html = verdict.admonition(shown())
    assert html.startswith('<div class="admonition important verdict verdict-partly">')
    assert ('<p class="admonition-title">Claim 3, gain at lr 0.1 (fmnist-h100): partly</p>'
            in html)
    sentence = html.index("<p>The gain is larger when ||g|| &lt; 1.</p>")
    data = html.index('<p class="verdict-data">+1.1 points, 95 % CI +0.6 to +1.8, p &lt; 1e-4, '
                      'n = 10 optimizer x seed.</p>')
    why = html.index('<p class="verdict-why">Partly: sparse nets gain, but the paper&#x27;s '
                     'value +2.5 lies outside our interval.</p>')
    paper = html.index("<p><em>The paper:</em> 65 % of BN cells.</p>")
    assert sentence < data < why < paper
    assert "< 1" not in html and "`" not in html and "**" not in html
    assert html.count("gain is larger") == 1 and html.count("points") == 1
    assert html.endswith("</div>")


def test_admonition_escapes_every_text():
    v = make(test="gain <at> lr", sentence="a <b>", paper="x & y", paper_effect=2.5,
             weaker="<i>weaker</i>")
    html = verdict.admonition(v)
    assert "gain &lt;at&gt; lr" in html and "A &lt;b&gt;." in html and "x &amp; y" in html
    assert "&lt;i&gt;weaker&lt;/i&gt;" in html
    assert "<at>" not in html and "<b>" not in html and "<i>" not in html


@pytest.mark.parametrize("status, css", [("reproduced", "tip"), ("partly", "important"),
                                         ("not reproduced", "danger"),
                                         ("not distinguishable", "note"),
                                         ("not testable here", "note"), ("not run", "note")])
def test_admonition_class_follows_the_status(status, css):
    html = verdict.admonition(shown(status))
    slug = status.replace(" ", "-")
    assert html.startswith(f'<div class="admonition {css} verdict verdict-{slug}"')
    assert f": {status}</p>" in html
    assert f'<p class="verdict-why">{status.capitalize()}: ' in html


def test_every_status_has_an_admonition_class():
    assert set(verdict.ADMONITION_CLASS) == set(STATUSES)


def test_admonition_leaves_out_an_empty_sentence_and_paper():
    v = Verdict(2, "flow gap", "book", "paper", NAN, "", (NAN, NAN), NAN, 0, "runs")
    html = verdict.admonition(v)
    assert html.count("<p") == 3 and "The paper" not in html  # title, data and why only
    assert verdict.plain(v) == ("Claim 2, flow gap (book): not run\n"
                                "No effect measured, n = 0 runs.\n"
                                "Not run: no data at this scale.")


def test_markdown_is_one_paragraph_with_a_bold_title():
    md = verdict.markdown(shown("reproduced"))
    assert md.startswith("**Claim 3, gain at lr 0.1 (fmnist-h100): reproduced.** The gain is ")
    assert "\n" not in md and md.endswith("The paper: 65 % of BN cells.")


def test_a_chapters_own_question_is_labelled_by_its_id():
    v = make(claim="magnitude pruning", test="lottery")
    assert v.claim_label == "magnitude pruning"
    assert v.title == "magnitude pruning, lottery (fmnist): reproduced"


def test_show_verdicts_displays_one_output_per_verdict_with_fallbacks(monkeypatch):
    displayed = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: displayed.extend(objs))
    verdict.show_verdicts([shown(), shown("reproduced")])
    assert len(displayed) == 2
    first = displayed[0]
    assert first._repr_html_() == verdict.admonition(shown())
    assert first._repr_markdown_() == verdict.markdown(shown())  # the PDF / console fallback
    assert repr(first).splitlines() == [
        "Claim 3, gain at lr 0.1 (fmnist-h100): partly", "The gain is larger when ||g|| < 1.",
        "+1.1 points, 95 % CI +0.6 to +1.8, p < 1e-4, n = 10 optimizer x seed.",
        "Partly: sparse nets gain, but the paper's value +2.5 lies outside our interval.",
        "The paper: 65 % of BN cells."]
    assert displayed[1].verdict.status == "reproduced"


def test_ipython_formats_a_shown_verdict_as_html_markdown_and_text():
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(verdict.Shown(shown("not reproduced")))
    assert {"text/html", "text/markdown", "text/plain"} <= set(data)
    assert 'class="admonition danger' in data["text/html"]


def test_a_verdict_without_an_effect_says_so():
    v = make(effect=NAN, interval=(NAN, NAN), p=NAN, n=0, unit="seed", sentence="not run here")
    assert "nan" not in v.numbers() and v.numbers().startswith("no effect measured")
    assert v.numbers() == "no effect measured, n = 0 seed"


def test_table_has_one_row_per_verdict():
    rows = [make(), make(test="steady state", **COVERS_0, q=0.4), make(test="check", **CHECK,
                                                                          condition_holds=True)]
    df = verdict.table(rows)
    assert list(df.index) == ["Claim 3, gain at lr 0.1", "Claim 3, steady state", "Claim 3, check"]
    assert list(df["status"]) == ["reproduced", "not distinguishable", "reproduced"]
    assert df.loc["Claim 3, gain at lr 0.1", "effect (95 % CI)"] == "+1.1 points (+0.6 to +1.8)"
    assert df.loc["Claim 3, steady state", "p (q)"] == "p = 0.30 (q = 0.40)"
    assert df.loc["Claim 3, check", "p (q)"] == "none"
    assert df.loc["Claim 3, check", "effect (95 % CI)"] == "+1.0 of pairs"
    assert list(df["n"]) == ["n = 10 optimizer x seed"] * 2 + ["n = 5 pair"]
    assert verdict.table([]).empty
