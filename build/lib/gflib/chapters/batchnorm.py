"""Chapter 2: BatchNorm matters more for sparse networks (claim 3).

The grid: optimizers x variants (none, DA, L2, SC and each with BatchNorm) x SC-SDC dense widths x
seeds, at one depth, each optimizer at its default learning rate (CHOICEs below).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import optimizers, plots
from ..analysis import (ChapterAnalysis, CellTests, Counts, UnitTest, agreement,
                        bn_gain_verdict, bn_gains, cell_tests, disagreements, effect_by,
                        flow_across_widths, flow_stability, not_run, pair_grid, pairs, pq_table,
                        significance_shares, steadier_with_bn, unit_test, unit_verdict,
                        variant_flags, signed)
from ..reference import BN_VARIANTS, STUDY_OPTIMIZERS, UNSTATED, batchnorm_pvalues
from ..verdict import adjust, format_p, show_verdicts

NAME = "batchnorm"
TITLE = "BatchNorm matters more for sparse networks"
CLAIMS = (3,)
SETTINGS = {"optimizers": STUDY_OPTIMIZERS, "variants": BN_VARIANTS, "depth": 4, "l2": 1e-4}
"""CHOICEs: depth 4 (the talk's BatchNorm figures show 4-hidden-layer MLPs; the table's depth is
not stated), L2 = 1e-4 times the sum of squared weights; each optimizer at its default learning
rate (:attr:`gflib.optimizers.OptimizerSpec.default_lr`: the paper's grid had two and does not
say which its table used)."""
TRIMMED = {"optimizers": ("adam", "sgd"), "variants": ("NR", "BN"), "depth": 2, "l2": 1e-4}
"""The reduced grid of a ``trim`` preset (smoke)."""
UNIT = ("optimizer", "seed")
UNIT_NAME = "optimizer x seed units"
"""The independent unit of the BN-gain and steadiness tests: comparisons that share an optimizer
and a seed share initial weights and masks; widths and variants are fixed factors."""
PAPER = (f"sparse beats dense in 65 % of the BN cells (p < 0.05) and 20 % of the others, in the "
         f"{UNSTATED}'s table")
PAPER_FLAT = ("BN variants show low, flat average gradient flow across dense widths; the "
              "others unstable flow (the talk's slide 31)")
TESTS = ("extra BatchNorm gain of sparse nets", "flow flat across widths",
         "flow steady over training")
"""The sub-tests, in the order of :attr:`Analysis.verdicts`."""


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    s = settings(preset)
    return pair_grid(preset, [dict(depth=s["depth"], optimizer=o,
                                   lr=optimizers.check(o).default_lr,
                                   **variant_flags(v, s["l2"]))
                              for o in s["optimizers"] for v in s["variants"]], device, data_dir)


@dataclass
class Analysis(ChapterAnalysis):
    """Everything the BatchNorm chapter shows from one :class:`gflib.results.Results`.

    ``paired``; ``cells`` (sparse > dense per optimizer x variant, p and q,
    :class:`gflib.analysis.CellTests`), ``paper`` (the paper's table, same layout),
    ``agreement`` (cell by cell, on p), ``shares`` (share of significant cells without and with
    BN: ours by p and by q, the paper's by p); ``gains`` (per matched comparison), ``gain`` (the
    unit test of the excess gain), ``gain_by_width``, ``gain_by_optimizer``; ``spread`` and
    ``steady_widths`` (flow's spread across dense widths and the test that BN steadies sparse
    nets more there), ``stability``, ``steady_epochs`` (the same over training epochs);
    ``diverged`` (diverged runs per cell)."""

    paired: pd.DataFrame
    cells: CellTests
    paper: pd.DataFrame
    agreement: pd.DataFrame
    shares: pd.DataFrame
    gains: pd.DataFrame
    gain: UnitTest
    gain_by_width: pd.DataFrame
    gain_by_optimizer: pd.DataFrame
    spread: pd.DataFrame
    steady_widths: UnitTest
    stability: pd.DataFrame
    steady_epochs: UnitTest
    diverged: pd.DataFrame


def stability_table(stab: pd.DataFrame) -> pd.DataFrame:
    """Median unsteadiness over epochs (:func:`gflib.analysis.flow_stability`'s ``log_std``) by
    kind and BatchNorm."""
    if not len(stab):
        return pd.DataFrame()
    return stab.pivot_table(index="kind", columns="batchnorm", values="log_std",
                            aggfunc="median").rename(columns={False: "without BN",
                                                              True: "with BN"})


def verdicts(a: Analysis) -> list:
    """The claim's verdicts (:data:`TESTS`): the extra BN gain with the paper's pattern of cells
    (the headline), then BN's steadier flow across widths (the talk's plot) and over epochs."""
    gain = bn_gain_verdict(a.gain, a.shares["ours (q)"], 3, a.scale, TESTS[0], UNIT_NAME,
                           paper=PAPER)
    steady = []
    for test, t, view in ((TESTS[1], a.steady_widths, "across dense widths"),
                          (TESTS[2], a.steady_epochs, "over the training epochs")):
        steady.append(unit_verdict(
            t, 3, test, a.scale, "paper" if t is a.steady_widths else "direct", UNIT_NAME,
            "log10 units of flow steadiness BN adds, sparse - dense",
            sentence=(f"BatchNorm steadies the average flow of sparse nets {view} by "
                      f"{signed(t.effect, 3)} log10 units more than that of dense nets")
            if t.n else f"no flow to compare {view}",
            paper=PAPER_FLAT))
    return adjust([gain, *steady])


def analyse(results, preset) -> Analysis:
    """The chapter's :class:`Analysis` of ``results`` (live or stored) at ``preset``."""
    s = settings(preset)
    layout = dict(index=list(s["optimizers"]), columns=list(s["variants"]))
    runs = results.runs
    counts = Counts.of(runs)
    paired = pairs(runs)
    cells = cell_tests(paired, "optimizer", "variant").reindex(**layout) if len(paired) \
        else CellTests(*(pd.DataFrame(index=layout["index"], columns=layout["columns"],
                                      dtype=float) for _ in range(4)))
    paper = batchnorm_pvalues().reindex(**layout)
    gains = bn_gains(paired)
    stab = flow_stability(results)
    if len(stab):
        stab["dense_width"] = stab["match_width"].fillna(stab["width"]).astype(int)
    over_epochs = steadier_with_bn(stab, "log_std", [*UNIT, "dense_width"]) if len(stab) \
        else pd.DataFrame()
    spread = flow_across_widths(runs, UNIT)
    across = steadier_with_bn(spread, "spread", UNIT) if len(spread) else pd.DataFrame()
    a = Analysis(
        preset.name, counts, [], paired, cells, paper, agreement(cells.p, paper),
        pd.DataFrame({"ours (p)": significance_shares(cells.p),
                      "ours (q)": significance_shares(cells.q),
                      "paper (p)": significance_shares(paper)}),
        gains, unit_test(gains, "excess", UNIT),
        effect_by(gains, "excess", UNIT, "dense_width") if len(gains) else pd.DataFrame(),
        effect_by(gains, "excess", ["seed"], "optimizer") if len(gains) else pd.DataFrame(),
        spread, unit_test(across, "steadier", UNIT), stability_table(stab),
        unit_test(over_epochs, "steadier", UNIT),
        paired.pivot_table(index="optimizer", columns="variant", values="diverged",
                           aggfunc="sum").reindex(**layout) if len(paired) else pd.DataFrame())
    a.verdicts = verdicts(a)
    if counts.all_diverged:
        a.verdicts = [not_run(3, t, a.scale, "paper", UNIT_NAME,
                              "not run: every run diverged") for t in TESTS]
    return a


def paper_numbers(verdicts) -> dict:
    """The paper's number for each of :data:`TESTS`, as the answer table shows it."""
    return {TESTS[0]: "65 % of BN cells against 20 % (dataset not stated)",
            TESTS[1]: "flat across widths (the talk's plot)",
            TESTS[2]: "not in the paper (our second view)"}


def answer_words(a: Analysis) -> str:
    """The answer in a sentence: the BN-gain verdict with its reason, and the flow-across-widths
    status."""
    gain, flat = a.verdicts[0], a.verdicts[1]
    return (f"At `{a.scale}` ({a.counts.text()}): {gain.sentence}; {gain.status}, because "
            f"{gain.reason}. Flow across widths: {flat.status}.")


def pvalues_caption(a: Analysis, label: str) -> str:
    """What :func:`report`'s heat maps find: the shares of cells where sparse beats dense,
    ours by q and by p, the paper's by p, with BatchNorm and without (Markdown)."""
    pct = {(when, who): "n/a" if pd.isna(x) else f"{100 * x:.0f} %"
           for (when, who), x in a.shares.stack(future_stack=True).items()}
    return (f"`{label}`: sparse nets beat their dense partners (q < 0.05, outlined) in "
            f"{pct['with BN', 'ours (q)']} of our cells with BatchNorm and "
            f"{pct['without BN', 'ours (q)']} without (by raw p: {pct['with BN', 'ours (p)']} "
            f"and {pct['without BN', 'ours (p)']}); in the paper's table (below; its dataset "
            f"not stated) {pct['with BN', 'paper (p)']} and {pct['without BN', 'paper (p)']}.")


def gain_caption(a: Analysis, label: str) -> str:
    """What :func:`report`'s BN-gain figure finds: the extra gain over all widths, its
    interval, p and n (Markdown)."""
    g = a.gain
    return (f"`{label}`: over all widths, BatchNorm raises sparse nets' test accuracy by "
            f"{signed(100 * g.effect, 1)} points more than dense nets' (95 % CI "
            f"{signed(100 * g.ci_low, 1)} to {signed(100 * g.ci_high, 1)}, {format_p(g.pvalue)},"
            f" n = {g.n} optimizer x seed units); each point is that difference at one dense "
            "width, above the dashed line BatchNorm helps the sparse net more.")


def report(a: Analysis, label: str) -> None:
    """Show one stored summary: its q-value heat map above the paper's, the shares of
    significant cells, the BN gain by width and its verdicts. Figures go through
    :func:`gflib.plots.show` as ``pvalues`` and ``gain``."""
    from IPython.display import Markdown, display

    plots.show(plots.pvalue_heatmaps({f"ours ({label}): q": a.cells.q,
                                      f"{UNSTATED}: p": a.paper}),
               "pvalues", pvalues_caption(a, label))
    display(Markdown(f"Sparse > dense, p (q), {a.cells.n_text()} width x seed pairs per cell:"),
            pq_table(a.cells),
            Markdown("Share of cells where sparse beats dense, ours by p and by q, the paper's "
                     "by p (another dataset):"), a.shares.round(2),
            Markdown(f"Where the tables disagree (on p): {disagreements(a.agreement)}."))
    if len(a.gain_by_width):
        plots.show(plots.effect_by_width(a.gain_by_width, scale=100,
                                         ylabel="extra BN gain, sparse - dense (points)"),
                   "gain", gain_caption(a, label))
    show_verdicts(a.verdicts)
