"""A chapter kept outside gflib, written as README.md's "A chapter" says (tests/test_extending.py
copies it beside its notebook and registers it): a question of its own, tested on SC-SDC pairs.

CHOICEs: depth 1, Adam at its default rate, three dense widths (ratios 0.25, 0.5, 0.75 of the
preset's sparse width), so that a smoke preset's two seeds give six pairs, enough for a one-sided
signed-rank test to reach p < 0.05 (1 / 64).
"""
from __future__ import annotations

from gflib import optimizers
from gflib.analysis import ChapterAnalysis, Counts, PAIR_UNIT, pair_grid, pairs, unit_test, \
    unit_verdict
from gflib.verdict import Claim, show_verdicts

NAME = "outside_chapter"
TITLE = "Sparse against dense at depth 1"
QUESTION = Claim("depth_one", "Do sparse MLPs of one hidden layer beat their SC-SDC dense "
                              "partners?")
CLAIMS = (QUESTION,)
TESTS = ("sparse beats dense at depth 1",)
SETTINGS = {"depth": 1, "optimizer": "adam", "ratios": (0.25, 0.5, 0.75)}


def settings(preset) -> dict:
    return SETTINGS


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """The SC-SDC pairs of :data:`SETTINGS` at ``preset``'s scale, every seed."""
    s = settings(preset)
    return pair_grid(preset.replace(dense_ratios=s["ratios"]),
                     [dict(depth=s["depth"], optimizer=s["optimizer"],
                           lr=optimizers.check(s["optimizer"]).default_lr)], device, data_dir)


def analyse(results, preset) -> ChapterAnalysis:
    """The pairs' margins (sparse - dense test accuracy) and the one verdict on them."""
    runs = results.runs
    paired = pairs(runs)
    paired["margin"] = paired["test_acc_sparse"] - paired["test_acc_dense"]
    t = unit_test(paired, "margin", ["dense_width", "seed"])
    verdict = unit_verdict(t, QUESTION.id, TESTS[0], preset.name, "direct", PAIR_UNIT,
                           "accuracy points, sparse - dense", 100,
                           sentence=f"sparse nets are {100 * t.effect:+.1f} points more "
                                    "accurate than their dense partners")
    return ChapterAnalysis(preset.name, Counts.of(runs), [verdict])


def report(analysis, label: str) -> None:
    """Show one stored summary: its verdicts."""
    show_verdicts(analysis.verdicts)
