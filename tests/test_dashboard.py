"""The results page's table: claims x scales, computed from the chapters' verdicts."""
import math

import pytest

from gflib import chapters, dashboard
from gflib.reference import CLAIMS
from gflib.verdict import Verdict

NAN = float("nan")


def v(claim, scale, status, effect=0.5, interval=(0.1, 0.9), unit="points"):
    return Verdict(claim=claim, scale=scale, status=status, effect=effect, effect_unit=unit,
                   interval=interval, p=NAN, n=10, unit="optimizer x seed",
                   sentence=f"claim {claim} <at> {scale}")


def test_claims_are_the_studys_six():
    assert len(CLAIMS) == 6 and CLAIMS[0] == "SC-SDC is a fair comparison"
    assert "CNNs and magnitude pruning" in CLAIMS[5]


def test_table_rows_columns_badges_and_counts():
    verdicts = [v(3, "book", "reproduced", 2.5, (1.0, 4.0)), v(3, "book", "partly"),
                v(3, "book", "not reproduced"), v(2, "book", "not distinguishable", -0.02,
                                                  (-0.05, 0.01)),
                v(3, "fmnist", "partly"), v(2, "paper", "not reproduced")]
    df = dashboard.table(verdicts)
    assert list(df.columns) == ["book", "fmnist", "paper"]  # first appearance: live first
    assert list(df.index) == [f"{k}. {c}" for k, c in enumerate(CLAIMS, 1)]
    bn = df.loc[f"3. {CLAIMS[2]}", "book"]
    assert "#2e7d32" in bn and ">reproduced<" in bn  # green headline
    assert verdicts[0].effect_text() in bn and verdicts[0].interval_text() in bn
    assert "+2 more: partly, not reproduced" in bn
    assert 'href="batchnorm.html#verdict"' in bn
    assert "&lt;at&gt;" in bn  # the sentence, escaped, as the tooltip
    egf = df.loc[f"2. {CLAIMS[1]}", "book"]
    assert "not distinguishable" in egf and "more" not in egf
    assert 'href="sc_sdc_and_egf.html#verdict"' in egf
    assert "#b26a00" in df.loc[f"3. {CLAIMS[2]}", "fmnist"]  # amber
    assert "#c62828" in df.loc[f"2. {CLAIMS[1]}", "paper"]  # red
    # claims with no verdict at a scale: not run yet, still linked to their chapter
    assert "not run yet" in df.loc[f"3. {CLAIMS[2]}", "paper"]
    for scale in df.columns:
        assert "not run yet" in df.loc[f"6. {CLAIMS[5]}", scale]
        assert 'href="pruning_and_cnns.html#verdict"' in df.loc[f"6. {CLAIMS[5]}", scale]
        assert "not run yet" in df.loc[f"1. {CLAIMS[0]}", scale]


def test_a_claim_without_a_chapter_is_not_run_yet_and_unlinked(monkeypatch):
    monkeypatch.setattr(dashboard, "chapter_of", lambda claim: None if claim == 6 else
                        chapters.get("batchnorm"))
    df = dashboard.table([v(3, "book", "partly")])
    assert "not run yet" in df.loc[f"6. {CLAIMS[5]}", "book"]
    assert "href" not in df.loc[f"6. {CLAIMS[5]}", "book"]


def test_cell_without_interval_or_effect():
    no_ci = v(1, "book", "reproduced", 6.25, (NAN, NAN), unit="inputs")
    text = dashboard.cell([no_ci], "sc_sdc_and_egf.html#verdict")
    assert "+6.2 inputs" in text and "CI" not in text
    none = v(5, "book", "not run", NAN, (NAN, NAN))
    text = dashboard.cell([none])
    assert ">not run<" in text and "nan" not in text


def test_table_checks_its_input_and_renders_fitting_html():
    with pytest.raises(ValueError, match="claim 7"):
        dashboard.table([v(7, "book", "partly")])
    with pytest.raises(TypeError):
        dashboard.table([{"claim": 1}])
    empty = dashboard.table([])
    assert len(empty) == 6 and list(empty.columns) == ["no results yet"]
    html = dashboard.html(dashboard.table([v(2, "book", "partly")]))
    assert "table-layout:fixed" in html and "width:100%" in html and "<th>claim</th>" in html
    assert "&lt;span" not in html  # badges are HTML, not escaped text


def test_every_registered_chapter_claim_has_a_link():
    for name in chapters.names():
        for claim in chapters.get(name).CLAIMS:
            assert dashboard.chapter_of(claim).NAME == name


def test_collect_at_smoke(tmp_path, monkeypatch, one_torch_thread):
    """Every chapter at the smoke preset into a temporary store; a stored summary (here: the
    live results again, named like the live preset) becomes its own column, "smoke (stored)".
    A second collect reads the store instead of training."""
    live_stores = []

    def stored(module):
        store = chapters.results_dir(module.NAME, "smoke", tmp_path)
        live_stores.append(store)
        plan = chapters.plan(module, "smoke", store=store)
        return [("smoke", plan.run(progress=False), {"preset": "smoke"})]

    monkeypatch.setattr(chapters, "stored", stored)
    verdicts = dashboard.collect("smoke", store_root=tmp_path, stack=16)
    assert {v.claim for v in verdicts} == {1, 2, 3, 4, 5, 6}
    assert dashboard.scales(verdicts) == ["smoke", "smoke (stored)"]
    live = [v for v in verdicts if v.scale == "smoke"]
    assert [v.claim for v in live][:2] == [1, 2]
    assert next(v for v in live if v.claim == 1).status == "reproduced"
    assert all(any(s.iterdir()) for s in live_stores)
    df = dashboard.table(verdicts)
    assert list(df.columns) == ["smoke", "smoke (stored)"]
    assert all("not run yet" not in df.loc[f"{k}. {CLAIMS[k - 1]}", "smoke"] for k in range(1, 7))
    assert not math.isnan(live[0].effect)
