"""Chapter 1: SC-SDC pairs and Effective Gradient Flow (claims 1 and 2).

The grid: depths x optimizers x learning rates x SC-SDC dense widths x seeds, ReLU MLPs without
regularisation, the sparse and the dense member of every pair.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .. import data, plots
from ..analysis import (ChapterAnalysis, Counts, blank_missing, cell_tests,
                        margin_table, not_run, pair_grid, pairs, pq_table, signed)
from ..correlations import (beside_paper, correlation_summary, correlations, egf_margins,
                            margin_of, margin_verdict)
from ..reference import STUDY_OPTIMIZERS, egf_correlations, paper_margin
from ..scsdc import active_counts, layer_densities, regime
from ..verdict import Verdict, adjust, show_verdicts

NAME = "sc_sdc_and_egf"
TITLE = "SC-SDC and Effective Gradient Flow"
CLAIMS = (1, 2)
SETTINGS = {"depths": (1, 2, 4), "optimizers": STUDY_OPTIMIZERS, "lrs": (0.001, 0.1)}
"""The study's depths, optimizers and learning rates."""
TRIMMED = {"depths": (1, 2), "optimizers": ("adam", "sgd"), "lrs": (0.1,)}
"""The reduced grid of a ``trim`` preset (smoke)."""
PAIRS_UNIT = "SC-SDC pairs"
MARGIN_UNIT = "runs, resampled within depth"


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    s = settings(preset)
    return pair_grid(preset, [dict(depth=d, optimizer=o, lr=lr) for d in s["depths"]
                              for o in s["optimizers"] for lr in s["lrs"]], device, data_dir)


def best_measures(summary: pd.DataFrame) -> dict:
    """Per ``"kind/target"`` column of :func:`gflib.correlations.correlation_summary`: the
    measures ranked by mean |tau| (best first)."""
    return {f"{k}/{t}": list(summary[(k, t)].dropna().sort_values(ascending=False).index)
            for k, t in summary.columns}


def construction_verdict(runs: pd.DataFrame, scale: str) -> Verdict:
    """Claim 1 at ``scale``: is each SC-SDC pair of the grid a same-capacity comparison?

    From the configs alone: every sparse MLP run must have its dense partner
    (:func:`gflib.analysis.pairs`), and layer by layer the sparse member's active weights
    (:func:`gflib.scsdc.layer_densities` times its layer sizes) must equal the dense partner's
    weight counts (:func:`gflib.scsdc.active_counts`); ``tests/test_scsdc.py`` checks that the
    built masks hold exactly those counts. A check, not a statistical test. Effect: the mean
    number of active inputs a sparse hidden unit of the narrowest pair gets from the hidden layer
    before (:func:`gflib.scsdc.regime`, the deepest net of the grid), beside the paper's ~31."""
    mlp = runs[(runs["model"] == "mlp") & runs["dataset"].isin(list(data.DATASETS))]
    paired = pairs(mlp) if len(mlp) else mlp.iloc[:0]
    test = "equal active weights per layer"
    if paired.empty:
        return not_run(1, test, scale, "check", PAIRS_UNIT,
                       "no SC-SDC pair of MLPs on a known dataset in these runs")
    n_sparse = int(((mlp["kind"] == "sparse") & mlp["match_width"].notna()).sum())
    mismatched = 0
    for row in paired.itertuples():
        spec = data.check(row.dataset)
        s, d, depth = int(row.sparse_width), int(row.dense_width), int(row.depth)
        sparse_active = [round(r * n) for r, n in zip(
            layer_densities(spec.in_features, spec.classes, depth, s, d),
            active_counts(spec.in_features, spec.classes, depth, s))]
        mismatched += sparse_active != active_counts(spec.in_features, spec.classes, depth, d)
    unpaired = n_sparse - len(paired)
    narrow = paired.loc[paired["dense_width"].idxmin()]
    spec = data.check(narrow["dataset"])
    s, d = int(narrow["sparse_width"]), int(narrow["dense_width"])
    depth = int(paired["depth"].max())
    fan_in = (float(regime(spec.in_features, spec.classes, depth, s, [d])["mean_fan_in"].iloc[0])
              if depth >= 2 else (d / s) ** 2 * s)
    return Verdict(
        claim=1, test=test, scale=scale, form="check", effect=fan_in,
        effect_unit=f"mean active inputs per sparse hidden unit, narrowest pair ({d} of {s})",
        n=len(paired), unit=PAIRS_UNIT,
        paper_condition="every sparse member has its dense partner's weight count in every "
                        "layer",
        condition_holds=mismatched == 0 and unpaired == 0,
        sentence=(f"{len(paired) - mismatched} of {len(paired)} sparse members match their "
                  f"dense partners' active weight counts layer by layer"
                  + (f" and {unpaired} sparse runs have no partner" if unpaired else "")
                  + f"; in the narrowest pair a sparse hidden unit keeps {fan_in:.1f} active "
                  "inputs on average (the paper's: about 31). Fairness is argued from the "
                  "construction, not measured: equal active weights need not mean equal "
                  "trainability"),
        paper="SC-SDC is argued fair because each pair has equal active weights per layer")


PAPER_WORDS = ("on {data}, EGF_1 ranks sparse nets best: |tau| .419 with test loss and .373 "
               "with test accuracy, against .355 and .316 for the gradient L1 norm")


def egf_verdicts(margins: pd.DataFrame, dataset: str, scale: str) -> list:
    """Claim 2 in the paper's form, for test accuracy then test loss: the EGF margin of sparse
    nets (:func:`gflib.correlations.margin_verdict`) against the paper's margin on the same
    dataset (:func:`gflib.reference.paper_margin`; none on digits, which the paper did not
    use)."""
    out = []
    for target in ("test_acc", "test_loss"):
        paper = paper_margin(dataset, "sparse", target)
        where = data.check(dataset).label
        words = (f"its margin on {where}: {signed(paper, 3)}" if math.isfinite(paper) else
                 f"no {where} results (its Fashion-MNIST margin: "
                 f"{signed(paper_margin('fashion_mnist', 'sparse', target), 3)})")
        out.append(margin_verdict(
            margins, target, 2, scale, f"EGF against the gradient norm, "
            f"{'test accuracy' if target == 'test_acc' else 'test loss'}", "paper",
            "sparse nets", paper_effect=paper, unit=MARGIN_UNIT,
            paper=f"EGF ranks sparse nets better than the gradient norm; {words}"))
    return out


@dataclass
class Analysis(ChapterAnalysis):
    """Everything the chapter shows from one :class:`gflib.results.Results`.

    ``corr``: per-depth Kendall taus with intervals (signed: a sign that flips between depths
    shows here); ``summary``:
    mean |tau| per measure x (kind, target); ``depth_mean``: the same with bootstrap intervals
    (the paper's form); ``paper``: the paper's |tau| table for the data (Fashion-MNIST's on
    digits); ``beside``: ours beside it; ``margins``: the EGF margins
    (:func:`gflib.correlations.egf_margins`); ``best``: measures ranked per column
    (:func:`best_measures`); ``paired``; ``cells`` and ``mann_whitney``: sparse > dense tests
    per learning rate, optimizer x depth (:class:`gflib.analysis.CellTests`)."""

    corr: pd.DataFrame
    summary: pd.DataFrame
    depth_mean: pd.DataFrame
    paper: pd.DataFrame
    beside: pd.DataFrame
    margins: pd.DataFrame
    best: dict
    paired: pd.DataFrame
    cells: dict
    mann_whitney: dict


def analyse(results, preset) -> Analysis:
    """The chapter's :class:`Analysis` of ``results`` (live or stored) at ``preset``."""
    runs = results.runs
    counts = Counts.of(runs)
    dataset = str(runs["dataset"].iloc[0]) if len(runs) else preset.dataset
    paired = pairs(runs) if len(runs) else pd.DataFrame()
    if counts.all_diverged or not len(runs):
        why = "not run: every run diverged" if counts.runs else "no runs"
        verdicts = [not_run(1, "equal active weights per layer", preset.name, "check",
                            PAIRS_UNIT, why)] + [
            not_run(2, f"EGF against the gradient norm, {t}", preset.name, "paper",
                    MARGIN_UNIT, why) for t in ("test accuracy", "test loss")]
        empty = pd.DataFrame()
        return Analysis(preset.name, counts, verdicts, empty, empty, empty,
                        egf_correlations(dataset), empty, empty, {}, paired, {}, {})
    corr = correlations(runs)
    if corr.empty:
        why = "not run: no run's flow is usable (every run at chance or its flow not finite)"
        verdicts = adjust([construction_verdict(runs, preset.name)] + [
            not_run(2, f"EGF against the gradient norm, {t}", preset.name, "paper",
                    MARGIN_UNIT, why) for t in ("test accuracy", "test loss")])
        empty = pd.DataFrame()
        return Analysis(preset.name, counts, verdicts, corr, empty, empty,
                        egf_correlations(dataset), empty, empty, {}, paired, {}, {})
    summary = correlation_summary(corr)
    margins, depth_mean = egf_margins(runs)
    paper = egf_correlations(dataset)
    verdicts = adjust([construction_verdict(runs, preset.name),
                       *egf_verdicts(margins, dataset, preset.name)])
    return Analysis(
        preset.name, counts, verdicts, corr, summary,
        depth_mean, paper, beside_paper(summary, paper), margins, best_measures(summary),
        paired, {lr: cell_tests(g, "optimizer", "depth") for lr, g in paired.groupby("lr")},
        {lr: cell_tests(g, "optimizer", "depth", matched=False)
         for lr, g in paired.groupby("lr")})


def paper_numbers(verdicts) -> dict:
    """The paper's number for each verdict's test, as the answer table shows it: its
    Fashion-MNIST margin for claim 2's tests, SC-SDC's construction for claim 1's check."""
    numbers = {v.test: f"{v.paper_effect:+.3f} (Fashion-MNIST)" for v in verdicts
               if math.isfinite(v.paper_effect)}
    numbers.setdefault("equal active weights per layer", "equal by design; ~31 inputs")
    for v in verdicts:
        if v.claim == 2 and v.test not in numbers:
            target = "test_acc" if "accuracy" in v.test else "test_loss"
            numbers[v.test] = f"{paper_margin('fashion_mnist', 'sparse', target):+.3f} " \
                              "(Fashion-MNIST)"
    return numbers


def answer_words(a: Analysis) -> str:
    """The answer in words: whether SC-SDC's construction holds, each EGF-margin test with its
    interval, status and reason, and where EGF_1 (the paper's best measure) ranks."""
    check = a.verdicts[0]
    words = (f"At `{a.scale}` ({a.counts.text()}), SC-SDC's construction "
             f"{'holds' if check.status == 'reproduced' else 'fails'} for {check.n} pairs. "
             + " ".join(f"For {v.test.split(', ')[-1]}, the best EGF measure's mean |tau| minus "
                        f"the best gradient norm's is {v.effect_text().split(' ')[0]} (95 % CI "
                        f"{v.interval_text() or 'n/a'}): {v.status}, because {v.reason}."
                        for v in a.verdicts if v.claim == 2))
    return words + (f" {egf1_rank(a)}." if egf1_rank(a) else "")


def egf1_rank(a: Analysis) -> str:
    """Where EGF_1, the paper's best measure on Fashion-MNIST, ranks among the measures by how
    well it orders sparse nets by test accuracy (a clause; "" where it was not ranked)."""
    ranks = a.best.get("sparse/test_acc", [])
    if "egf_l1" not in ranks:
        return ""
    return (f"EGF₁, the paper's best measure, ranks {ranks.index('egf_l1') + 1} of "
            f"{len(ranks)} by test accuracy here")


def forest_caption(a: Analysis, label: str) -> str:
    """What :func:`report`'s forest plot finds: the measure that ranks sparse nets best by test
    accuracy and the best EGF measure's margin over the best gradient norm (Markdown)."""
    m = margin_of(a.margins, "test_acc")
    ranks = a.best.get("sparse/test_acc", [])
    best = f"`{ranks[0]}`" if ranks else "no measure"
    return (f"`{label}`: how well each flow measure ranks runs by test loss and accuracy, as mean "
            "|tau| over depths (dots with 95 % bootstrap intervals: ours; open diamonds: the "
            f"paper's Fashion-MNIST values). For sparse nets {best} ranks runs best by accuracy; "
            f"the best EGF measure minus the best gradient norm is {signed(m['margin'], 3)} (95 % "
            f"CI {signed(m['ci_low'], 3)} to {signed(m['ci_high'], 3)}; the paper's: "
            f"{signed(paper_margin('fashion_mnist'), 3)}).")


def report(a: Analysis, label: str) -> None:
    """Show one stored summary: its mean |tau| in the paper's form beside the paper's (figure
    and table), its EGF margins, its sparse > dense tests and its verdicts. The forest plot goes
    through :func:`gflib.plots.show` as ``forest``."""
    from IPython.display import Markdown, display

    if a.depth_mean.empty:
        show_verdicts(a.verdicts)
        return
    plots.show(plots.tau_forest(a.depth_mean, a.paper, title=f"{label}: mean |tau| over depths"),
               "forest", forest_caption(a, label))
    display(Markdown("Mean |tau| over depths, ours beside the paper's:"),
            blank_missing(a.beside),
            Markdown("EGF margins (best EGF minus best gradient norm, mean |tau|):"),
            margin_table(a.margins))
    for lr, cells in a.cells.items():
        display(Markdown(f"Sparse > dense at lr {lr:g}, p (q), {cells.n_text()} pairs per "
                         "cell (width x seed):"), pq_table(cells))
    show_verdicts(a.verdicts)


def regime_table(preset, dataset: str) -> pd.DataFrame:
    """:func:`gflib.scsdc.regime` of the preset's pairs at depth 2 on ``dataset``."""
    spec = data.check(dataset)
    return regime(spec.in_features, spec.classes, 2, preset.sparse_width, preset.dense_widths)

