"""The committed summaries keep meaning what they meant: every row's store key is still the key
of its config, and three runs of each, re-trained at smoke scale (256 training and 256 test
images, everything else as stored), give exactly the numbers the code that made the summaries
gave (``tests/data/summary_runs.json``, written by that code with ``python
tests/test_summaries.py PATH``; one torch thread, as runs differ between thread counts,
BatchNorm ones most: README, "Same config, same numbers")."""
from __future__ import annotations

import json
import math
import re
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from gflib import train
from gflib.config import RunConfig, config_key
from gflib.results import CONFIG_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "book" / "data"
GOLDEN = Path(__file__).parent / "data" / "summary_runs.json"
SMOKE = dict(train_subset=256, test_subset=256)
PICKS = {
    "sc_sdc_and_egf": [dict(kind="sparse", optimizer="adam", depth=4, lr=0.1),
                       dict(kind="dense", optimizer="sgd", depth=1),
                       dict(kind="sparse", optimizer="momentum", depth=2, lr=0.001)],
    "batchnorm": [dict(kind="sparse", optimizer="adam", augment=True, batchnorm=True),
                  dict(kind="sparse", optimizer="sgd", skip=True, batchnorm=False),
                  dict(kind="dense", optimizer="rmsprop", batchnorm=False)],
    "optimizers": [dict(kind="sparse", optimizer="adamw", augment=False),
                   dict(kind="sparse", optimizer="adam", augment=True, lr=0.1),
                   dict(kind="dense", optimizer="rmsprop", batchnorm=False)],
    "activations": [dict(kind="sparse", activation="srelu"),
                    dict(kind="sparse", activation="prelu"),
                    dict(kind="dense", activation="swish")],
    "pruning_and_cnns": [dict(prune="gradual", prune_scope="global"),
                         dict(prune="oneshot", prune_scope="layer", optimizer="adam"),
                         dict(model="cnn", kind="sparse", skip=True, batchnorm=True)],
}
"""Three rows of each summary, by their fields (the first row that matches): sparse and dense,
every optimizer family, augmentation, BatchNorm, skips, learned activations, both pruning
schedules and a CNN."""


def table(chapter: str) -> pd.DataFrame:
    return pd.read_csv(DATA / chapter / "fmnist.csv", keep_default_na=False, na_values=[""])


def config_of(row) -> RunConfig:
    fields = {}
    for c in CONFIG_COLUMNS:
        if c not in row:  # a field added after the summary was made: its default
            continue
        v = row[c]
        if isinstance(v, float) and math.isnan(v):
            v = None
        elif c in ("match_width", "train_subset", "test_subset") and v is not None:
            v = int(v)
        fields[c] = v.item() if hasattr(v, "item") else v
    return RunConfig(**fields)


def picked(chapter: str) -> list:
    df = table(chapter)
    out = []
    for pick in PICKS[chapter]:
        match = df
        for k, v in pick.items():
            match = match[match[k] == v]
        out.append(match.iloc[0])
    return out


def numbers(result) -> dict:
    return {"final": result.final, "flow_mean": result.flow_mean, "diverged": result.diverged,
            "trace": {k: v for k, v in result.trace.items() if isinstance(v, float)}}


@pytest.mark.parametrize("chapter", list(PICKS))
def test_every_stored_key_is_its_configs_key(chapter):
    df = table(chapter)
    assert [config_key(config_of(row)) for _, row in df.iterrows()] == list(df["key"])


@pytest.mark.parametrize("chapter", list(PICKS))
def test_three_runs_retrain_to_the_numbers_they_had(chapter, one_torch_thread):
    try:
        train.dataset_for(RunConfig(dataset="fashion_mnist", **SMOKE))
    except ValueError as error:
        pytest.skip(f"Fashion-MNIST is not on this machine: {error}")
    golden = json.loads(GOLDEN.read_text())[chapter]
    for row, want in zip(picked(chapter), golden):
        assert row["key"] == want["key"]
        small = config_of(row).replace(**SMOKE)
        assert config_key(small) == want["smoke_key"]
        got = numbers(train.run(small))
        assert got == {k: want[k] for k in got}, (chapter, row["key"])


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = {}
    for name in PICKS:
        for row in picked(name):
            small = config_of(row).replace(**SMOKE)
            out.setdefault(name, []).append({"key": row["key"], "smoke_key": config_key(small),
                                             **numbers(train.run(small))})
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


def test_committed_verdicts_are_what_the_analysis_gives_now():
    """Each stored summary's ``<name>-verdicts.json`` (read by the chapters' answer tables, the
    intro and the results page) equals a fresh analysis of its tables by today's code: after a
    change to an analysis, ``python -m gflib.publish --verdicts`` rewrites them."""
    from gflib import chapters, presets, summaries

    checked = 0
    for chapter in chapters.names():
        for name in summaries.names(chapter, DATA):
            path = summaries.verdicts_path(chapter, name, DATA)
            assert path.is_file(), f"{path} missing: run python -m gflib.publish --verdicts"
            stored = json.loads(path.read_text())
            assert stored["summary"] == chapters.summary_key(chapter, name, DATA), path
            results, meta = summaries.load(chapter, name, DATA)
            fresh = chapters.get(chapter).analyse(results, presets.get(meta["preset"])).verdicts
            assert json.dumps([v.to_dict() for v in fresh]) == json.dumps(stored["verdicts"]), (
                f"{path} is stale: run python -m gflib.publish --verdicts")
            checked += 1
    assert checked >= 5


def test_a_plan_reads_the_stored_verdicts_of_its_chapter_only():
    """What each chapter's answer table puts in its stored columns: every summary of that
    chapter, by name, with its verdicts file's verdicts."""
    from gflib import chapters, summaries

    for chapter in chapters.names():
        by_name = chapters.plan(chapter, "smoke", data=DATA).stored_verdicts()
        assert list(by_name) == summaries.names(chapter, DATA) != []
        for name, verdicts in by_name.items():
            stored = json.loads(summaries.verdicts_path(chapter, name, DATA).read_text())
            assert [v.to_dict() for v in verdicts] == stored["verdicts"]
            assert {v.claim for v in verdicts} <= set(chapters.get(chapter).CLAIMS)


@pytest.mark.parametrize("name", ["batchnorm", "activations", "optimizers", "sc_sdc_and_egf"])
def test_the_stored_figures_a_page_captions_are_the_ones_its_summary_glues(monkeypatch, name):
    """Each ``{glue:figure} stored_fmnist_<key>`` of a chapter's page names a figure that
    :func:`gflib.chapters.show_stored` glues for the committed fmnist summary, with a caption
    that states numbers (no NaN) and names the summary; nothing else is glued."""
    import IPython.display
    import myst_nb

    glued = {}
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)
    monkeypatch.setattr(myst_nb, "glue", lambda key, obj, display=True: glued.update({key: obj}))
    from gflib import chapters

    chapters.show_stored(name, DATA, captioned=["fmnist"])
    page = (ROOT / "book" / f"{name}.md").read_text()
    keys = re.findall(r"```\{glue:figure\} (stored_fmnist_\w+)", page)
    assert keys and sorted(keys) == sorted(k for k in glued if not k.endswith("_caption"))
    for key in keys:
        caption = glued[f"{key}_caption"].data
        assert f"{{glue:md}}`{key}_caption`" in page
        assert caption.startswith("`fmnist`") and re.search(r"\d", caption)
        assert "nan" not in caption.lower()


def test_each_chapter_gives_the_papers_number_of_every_test_and_its_answer_in_words():
    """The answer table's "paper" column and the sentence under it come from the chapter
    module: a number for each test of the stored fmnist verdicts, and words that name the scale,
    its counts and the status of the paper's form of the claim."""
    from gflib import chapters, presets, summaries

    for name in chapters.names():
        module = chapters.get(name)
        verdicts = chapters.stored_verdicts(name, "fmnist", DATA)
        numbers = module.paper_numbers(verdicts)
        assert {v.test for v in verdicts} <= set(numbers), name
        results, meta = summaries.load(name, "fmnist", DATA)
        a = module.analyse(results, presets.get(meta["preset"]))
        words = chapters.Plan.answer_words(types.SimpleNamespace(chapter=module), a)
        assert words.startswith(f"At `{a.scale}` ({a.counts.text()})"), name
        assert a.verdicts[0].status in words, name


def test_a_chapter_without_its_own_answer_words_gets_the_first_verdicts():
    from gflib import chapters
    from gflib.analysis import Counts

    first = types.SimpleNamespace(sentence="sparse nets gain more", status="reproduced",
                                  reason="its interval excludes 0")
    second = types.SimpleNamespace(sentence="second", status="not run", reason="none")
    a = types.SimpleNamespace(scale="book", counts=Counts(runs=20, diverged=1, at_chance=0),
                              verdicts=[first, second])
    own = types.SimpleNamespace()
    assert chapters.Plan.answer_words(types.SimpleNamespace(chapter=own), a) == (
        "At `book` (20 runs: 1 diverged (left out of every statistic), 0 at chance (left out "
        "of the flow statistics)): sparse nets gain more; reproduced, because its interval "
        "excludes 0.")
    own.answer_words = lambda analysis: f"own words at {analysis.scale}"
    assert chapters.Plan.answer_words(types.SimpleNamespace(chapter=own), a) == \
        "own words at book"


def test_compare_verdicts_puts_two_stored_summaries_side_by_side(tmp_path, monkeypatch):
    """``publish --compare gpu gpu-tf32``: the same summary under two names agrees everywhere
    (exit 0); a status that moves is a row with ``same`` False (exit 1)."""
    import dataclasses
    import shutil

    from gflib import chapters, publish, summaries

    (tmp_path / "batchnorm").mkdir()
    for name in ("gpu", "gpu-tf32"):
        for src in (DATA / "batchnorm").glob("fmnist*"):
            shutil.copy(src, tmp_path / "batchnorm" / src.name.replace("fmnist", name, 1))
    verdicts = chapters.stored_verdicts("batchnorm", "fmnist", DATA)
    monkeypatch.setattr(chapters, "stored_verdicts", lambda chapter, name, root: verdicts)
    table = chapters.compare_verdicts("gpu", "gpu-tf32", tmp_path)
    assert list(table["chapter"].unique()) == ["batchnorm"] and len(table) == len(verdicts)
    assert table["same"].all()
    assert publish.main(["--compare", "gpu", "gpu-tf32", "--out", str(tmp_path)]) == 0

    moved = [dataclasses.replace(v, p=0.5, interval=(-1.0, 1.0)) if i == 0 else v
             for i, v in enumerate(verdicts)]
    assert moved[0].status != verdicts[0].status
    monkeypatch.setattr(chapters, "stored_verdicts",
                        lambda chapter, name, root: moved if name == "gpu-tf32" else verdicts)
    table = chapters.compare_verdicts("gpu", "gpu-tf32", tmp_path)
    assert table["same"].tolist() == [False] + [True] * (len(verdicts) - 1)
    assert publish.main(["--compare", "gpu", "gpu-tf32", "--out", str(tmp_path)]) == 1
    assert summaries.names("batchnorm", tmp_path) == ["gpu", "gpu-tf32"]
