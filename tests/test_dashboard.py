"""The results page's table: claims x scales, computed from the chapters' verdicts."""
import math
import types

import pytest

from gflib import chapters, dashboard, presets, summaries
from gflib.reference import CLAIMS, PAPER_NUMBERS
from gflib.verdict import Claim, Verdict

NAN = float("nan")
SIGNIFICANT = dict(effect=2.5, interval=(1.0, 4.0), p=0.001)
COVERS_0 = dict(effect=0.1, interval=(-0.3, 0.5), p=0.3)
BELOW_0 = dict(effect=-0.5, interval=(-0.9, -0.1), p=0.99)
PAPER_OUTSIDE = dict(effect=0.5, interval=(0.1, 0.9), p=0.001, paper_effect=2.0)
"""Data that the rule (:func:`gflib.verdict.judge`) reads as reproduced, not distinguishable,
not reproduced and partly."""


def v(claim, scale, test="headline", data=SIGNIFICANT, unit="points", **fields):
    return Verdict(**{"claim": claim, "test": test, "scale": scale, "form": "paper",
                      "effect_unit": unit, "n": 10, "unit": "optimizer x seed", **data,
                      **fields})


def row(k):
    """The table's row of the study's claim ``k``: its number, text and the paper's number."""
    return f"{k}. {CLAIMS[k - 1]} [paper: {PAPER_NUMBERS[k]}]"


def test_claims_are_the_studys_six():
    assert len(CLAIMS) == 6 and CLAIMS[0] == "SC-SDC is a fair comparison"
    assert "CNNs and magnitude pruning" in CLAIMS[5]
    assert set(PAPER_NUMBERS) == set(range(1, 7))


def test_the_verdicts_helpers_give_the_statuses_they_are_named_for():
    assert v(3, "book").status == "reproduced"
    assert v(3, "book", data=COVERS_0).status == "not distinguishable"
    assert v(3, "book", data=BELOW_0).status == "not reproduced"
    assert v(3, "book", data=PAPER_OUTSIDE).status == "partly"


def test_table_rows_columns_badges_and_sub_tests():
    verdicts = [v(3, "book", "gain <at> lr 0.1"), v(3, "book", "steady state", PAPER_OUTSIDE),
                v(3, "book", "late epochs", BELOW_0),
                v(2, "book", "accuracy", dict(effect=-0.02, interval=(-0.05, 0.01), p=0.7)),
                v(3, "fmnist", data=PAPER_OUTSIDE), v(2, "paper", data=BELOW_0)]
    df = dashboard.table(verdicts)
    assert list(df.columns) == ["book", "fmnist", "paper"]  # first appearance: live first
    assert list(df.index) == [row(k) for k in range(1, 7)]
    assert df.index.name == "claim"
    bn = df.loc[row(3), "book"]
    assert "#2e7d32" in bn and ">reproduced<" in bn  # green headline
    assert bn.index("gain &lt;at&gt; lr 0.1") < bn.index(">reproduced<")  # its test, escaped
    assert "<at>" not in bn
    assert verdicts[0].effect_text() in bn and f"95 % CI {verdicts[0].interval_text()}" in bn
    assert "p = 0.0010, n = 10 optimizer x seed" in bn
    # every other sub-test by name and status, after the headline, in their order
    assert bn.index(">reproduced<") < bn.index("steady state: partly") \
        < bn.index("late epochs: not reproduced")
    assert bn.count("#2e7d32") == 1 and "#b26a00" not in bn  # only the headline is a badge
    assert 'href="batchnorm.html#verdict"' in bn
    egf = df.loc[row(2), "book"]
    assert "accuracy" in egf and ">not distinguishable<" in egf and "#616161" in egf
    assert bn.count("font-size:0.75em") == 2 and egf.count("font-size:0.75em") == 0
    assert 'href="sc_sdc_and_egf.html#verdict"' in egf
    assert "#b26a00" in df.loc[row(3), "fmnist"]  # amber
    assert "#c62828" in df.loc[row(2), "paper"]  # red
    # a stored scale links to the stored summary's section of the chapter
    assert 'href="batchnorm.html#stored-fmnist"' in df.loc[row(3), "fmnist"]
    # claims with no verdict at a scale: not run yet, still linked to their chapter
    assert "not run yet" in df.loc[row(3), "paper"]
    for scale in df.columns:
        assert "not run yet" in df.loc[row(6), scale]
        assert 'href="pruning_and_cnns.html#' in df.loc[row(6), scale]
        assert "not run yet" in df.loc[row(1), scale]


def test_a_stored_scale_of_the_live_presets_name_links_to_its_stored_section():
    df = dashboard.table([v(3, "smoke"), v(3, "smoke (stored)")])
    assert 'href="batchnorm.html#verdict"' in df.loc[row(3), "smoke"]
    assert 'href="batchnorm.html#stored-smoke"' in df.loc[row(3), "smoke (stored)"]


def test_a_claim_without_a_chapter_is_not_run_yet_and_unlinked(monkeypatch):
    monkeypatch.setattr(dashboard, "chapter_of", lambda claim: None if claim == 6 else
                        chapters.get("batchnorm"))
    df = dashboard.table([v(3, "book", data=PAPER_OUTSIDE)])
    assert "not run yet" in df.loc[row(6), "book"]
    assert "href" not in df.loc[row(6), "book"]
    assert "href" in df.loc[row(3), "book"]


def test_cell_without_interval_or_effect():
    no_ci = v(1, "book", "inputs per unit", dict(effect=6.25, interval=(NAN, NAN), p=NAN),
              unit="inputs", form="check", condition_holds=True,
              paper_condition="every sparse unit has inputs")
    assert no_ci.status == "reproduced"  # a check without statistics, its condition holding
    text = dashboard.cell([no_ci], "sc_sdc_and_egf.html#verdict")
    assert "+6.2 inputs" in text and "CI" not in text and "p =" not in text
    assert "n = 10 optimizer x seed" in text
    assert text.count('href="sc_sdc_and_egf.html#verdict"') == 1
    none = v(5, "book", "swish", dict(effect=NAN, interval=(NAN, NAN), p=NAN), n=0)
    text = dashboard.cell([none])
    assert ">not run<" in text and "nan" not in text and "href" not in text
    assert "no data at this scale" in text  # the reason, there being no sentence
    said = v(5, "book", "swish", dict(effect=NAN, interval=(NAN, NAN), p=NAN), n=0,
             sentence="too <few> seeds")
    assert "too &lt;few&gt; seeds" in dashboard.cell([said])
    empty = dashboard.cell([])
    assert ">not run yet<" in empty and "#9e9e9e" in empty and "href" not in empty
    assert 'href="x.html"' in dashboard.cell([], "x.html")


def test_cell_shows_q_when_the_verdicts_were_adjusted():
    adjusted = v(3, "book", data=SIGNIFICANT, q=0.002)
    assert "p = 0.0010 (q = 0.0020), n = 10 optimizer x seed" in dashboard.cell([adjusted])


def test_every_status_has_a_colour():
    from gflib.verdict import STATUSES
    assert set(STATUSES) | {dashboard.NOT_RUN_YET} == set(dashboard.COLOURS)
    assert len(set(dashboard.COLOURS.values())) == len(dashboard.COLOURS)
    assert "&lt;" in dashboard.badge("<x>") and dashboard.COLOURS["partly"] in \
        dashboard.badge("partly")


def test_table_checks_its_input_and_renders_fitting_html():
    with pytest.raises(ValueError, match="claims 7 are neither"):
        dashboard.table([v(7, "book")])
    with pytest.raises(TypeError, match="Verdict items, got dict"):
        dashboard.table([{"claim": 1}])
    empty = dashboard.table([])
    assert len(empty) == 6 and list(empty.columns) == ["no results yet"]
    assert all("not run yet" in c for c in empty["no results yet"])
    html = dashboard.html(dashboard.table([v(2, "book", data=PAPER_OUTSIDE)]))
    assert "table-layout:fixed" in html and "width:100%" in html and "<th>claim</th>" in html
    assert "&lt;span" not in html  # badges are HTML, not escaped text
    # the paper's number in the claim column, smaller and grey, not in brackets
    assert (f'<th>2. {CLAIMS[1]}<br><small style="color:#555">paper: {PAPER_NUMBERS[2]}'
            "</small></th>") in html
    assert "[paper:" not in html


def test_show_displays_the_html_and_returns_the_table(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: shown.extend(objs))
    verdicts = [v(3, "book")]
    df = dashboard.show(verdicts)
    assert df.equals(dashboard.table(verdicts))
    assert len(shown) == 1 and shown[0].data == dashboard.html(df)


def test_every_registered_chapter_claim_has_a_link():
    for name in chapters.names():
        for claim in chapters.get(name).CLAIMS:
            assert dashboard.chapter_of(dashboard.claim_of(claim)).NAME == name


@pytest.fixture
def own_question():
    """A registered chapter that asks a question of its own besides claim 6."""
    question = Claim("lottery", "Do winning tickets survive sparse training?")
    module = types.SimpleNamespace(NAME="zz_lottery", TITLE="Lottery", CLAIMS=(6, question),
                                   settings=None, grid=None, analyse=None, report=None)
    chapters.names()  # find the package's chapters first
    chapters.register(module)
    yield question
    chapters.unregister(module.NAME)


def test_a_chapters_own_question_is_a_row_of_its_own(own_question):
    df = dashboard.table([v("lottery", "book", "tickets")])
    assert list(df.index) == [row(k) for k in range(1, 7)] + [own_question.text]
    cell = df.loc[own_question.text, "book"]
    assert ">reproduced<" in cell and 'href="zz_lottery.html#verdict"' in cell
    assert dashboard.headlines([v("lottery", "book", "tickets")]) == \
        f"- **{own_question.text}**: reproduced at `book`"
    with pytest.raises(ValueError, match="claims unknown"):
        dashboard.table([v("unknown", "book")])


def test_headlines_one_bullet_per_claim_statuses_joined_by_scale():
    verdicts = [v(3, "book"), v(3, "book", "steady state", BELOW_0),  # not the headline
                v(4, "book", data=PAPER_OUTSIDE), v(3, "fmnist"), v(4, "fmnist", data=BELOW_0),
                v(4, "paper", data=PAPER_OUTSIDE)]
    assert dashboard.headlines(verdicts) == "\n".join([
        f"- **3. {CLAIMS[2]}**: reproduced at `book`, `fmnist`",
        f"- **4. {CLAIMS[3]}**: partly at `book`, `paper`; not reproduced at `fmnist`"])
    assert dashboard.headlines([]) == ""


def test_scales_table_says_what_each_scale_can_show():
    scales = {"smoke": presets.get("smoke", seeds=(0, 1, 2)), "book": presets.get("book")}
    df = dashboard.scales_table(scales)
    assert list(df.index) == ["smoke", "book"] and df.index.name == "scale"
    assert list(df.columns) == ["data", "sparse width (dense)", "epochs", "seeds",
                                "smallest p at seeds", "at 5 optimizers x seeds",
                                "at a cell's pairs"]
    smoke, book = df.loc["smoke"], df.loc["book"]
    assert smoke["data"] == "digits, 400 training images"
    assert book["data"] == "digits, all training images"
    assert smoke["sparse width (dense)"] == "16 (4-12)" and book["sparse width (dense)"] == \
        "100 (25-85)"
    assert (smoke["epochs"], smoke["seeds"], book["epochs"], book["seeds"]) == (2, 3, 20, 2)
    # exact signed-rank: 0.5 ** n; 3 seeds 0.125, 5 x 3 = 15 units 3.1e-05, 2 widths x 3 = 6 pairs
    assert smoke["smallest p at seeds"] == "0.12 (cannot reach 0.05)"
    assert smoke["at 5 optimizers x seeds"] == "3.1e-05"
    assert smoke["at a cell's pairs"] == "0.016"
    # 2 seeds 0.25; 10 units 0.00098; 5 widths x 2 = 10 pairs
    assert book["smallest p at seeds"] == "0.25 (cannot reach 0.05)"
    assert book["at 5 optimizers x seeds"] == "0.00098"
    assert book["at a cell's pairs"] == "0.00098"
    two = dashboard.scales_table({"book": presets.get("book")}, optimizers=2)
    assert two.loc["book", "at 2 optimizers x seeds"] == "0.062 (cannot reach 0.05)"


def test_stored_scales_and_verdicts_of_an_empty_data_folder(tmp_path):
    assert dashboard.stored_scales(tmp_path) == {}
    assert dashboard.stored_verdicts(tmp_path) == []


def test_collect_at_smoke(tmp_path, monkeypatch, one_torch_thread):
    """Every chapter at the smoke preset into a temporary store, trained by collect; then its
    results stored as a summary named like the live preset, which becomes its own column,
    "smoke (stored)", and a second collect reads the live verdicts instead of training."""
    monkeypatch.setattr(chapters, "code_key", lambda: "this test")  # others edit gflib meanwhile
    store_root, data = tmp_path / "results", tmp_path / "data"
    verdicts = dashboard.collect("smoke", store_root=store_root, data=data, stack=16)
    assert {v.claim for v in verdicts} == {1, 2, 3, 4, 5, 6}
    assert dashboard.scales(verdicts) == ["smoke"]  # nothing stored yet
    assert [v.claim for v in verdicts][:2] == [1, 2]
    assert next(v for v in verdicts if v.claim == 1).status == "reproduced"
    assert not math.isnan(verdicts[0].effect)
    stores = [chapters.results_dir(name, "smoke", store_root) for name in chapters.names()]
    assert all(any(s.iterdir()) for s in stores)
    assert all(chapters.plan(n, "smoke", store=s).verdicts_file.is_file()
               for n, s in zip(chapters.names(), stores))

    for name, store in zip(chapters.names(), stores):
        summaries.write(chapters.plan(name, "smoke", store=store).run(progress=False),
                        {"preset": "smoke"}, name, "smoke", data)

    def no_training(*args, **kwargs):
        raise AssertionError("collect trained though the live verdicts were written")

    monkeypatch.setattr(chapters.Plan, "run", no_training)
    again = dashboard.collect("smoke", store_root=store_root, data=data, stack=16)
    assert dashboard.scales(again) == ["smoke", "smoke (stored)"]
    live = [v for v in again if v.scale == "smoke"]
    stored = [v for v in again if v.scale == "smoke (stored)"]
    assert [(v.claim, v.test, v.status) for v in live] == \
        [(v.claim, v.test, v.status) for v in verdicts]
    assert [(v.claim, v.test, v.status) for v in stored] == \
        [(v.claim, v.test, v.status) for v in live]  # the same results, stored
    assert set(dashboard.stored_scales(data)) == {"smoke"}
    df = dashboard.table(again)
    assert list(df.columns) == ["smoke", "smoke (stored)"]
    assert all("not run yet" not in df.loc[row(k), s] for k in range(1, 7) for s in df.columns)
