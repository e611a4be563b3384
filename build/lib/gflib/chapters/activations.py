"""The activations chapter: Swish and PReLU for sparse networks (claim 5).

The grid: optimizers x activations x SC-SDC dense widths x seeds, at one depth and one training
variant, each optimizer at its default learning rate (CHOICEs below). Every run records, after
training, how much of its gradient flows where the activation slopes downwards (trace
``"activations"``, :mod:`gflib.negflow`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as ss

from .. import activations, optimizers, plots, stats
from ..analysis import (ChapterAnalysis, CellTests, Counts, agreement, cell_tests, cell_verdict,
                        disagreements, flow_usable, label, not_run, pair_grid, pairs, pq_table,
                        variant_flags, with_interval)
from ..correlations import correlations
from ..negflow import QUANTITIES
from ..reference import (ACTIVATIONS, STUDY_OPTIMIZERS, UNSTATED, activation_pvalues,
                         batchnorm_pvalues)
from ..results import TRACE_PREFIX
from ..verdict import LEVEL, Verdict, adjust, format_p, show_verdicts

NAME = "activations"
TITLE = "Activations for sparse networks"
CLAIMS = (5,)
SETTINGS = {"optimizers": STUDY_OPTIMIZERS, "activations": ACTIVATIONS, "depth": 2,
            "variant": "L2_BN", "l2": 1e-4}
"""The study's five optimizers and six activations (in its table's order). CHOICEs: depth 2 (the
paper's grid had 1, 2 and 4 hidden layers and its activation table does not say which: 2 is the
shallowest with a masked hidden-to-hidden layer); variant ``L2_BN`` (:func:`variant_fit`: of the
paper's BatchNorm-table columns, the one nearest its activation table's ReLU column); L2 = 1e-4
times the sum of squared weights, as in the BatchNorm chapter; each optimizer at its default
learning rate (:attr:`gflib.optimizers.OptimizerSpec.default_lr`)."""
TRIMMED = {"optimizers": ("adam", "sgd"), "activations": ("relu", "swish", "prelu"), "depth": 2,
           "variant": "L2_BN", "l2": 1e-4}
"""The reduced grid of a ``trim`` preset (smoke)."""
EGF = "egf_l2"
"""The EGF measure averaged, and correlated with accuracy, per activation."""
CELL_UNIT = "optimizer x activation cells"
PAPER_CELL = ("sparse > dense with SGD and {act}, p = {p} in the paper's table (dataset not "
              "stated; probably CIFAR-100)")
PAPER_NEGATIVE = ("Swish's non-monotonic shape lets negative gradients flow, which the paper "
                  "reads as a reason it suits sparse nets (no number given)")
TESTS = ("Swish with SGD favours sparse nets", "PReLU with SGD favours sparse nets",
         "negative flow goes with sparse nets' advantage")
"""The sub-tests, in the order of :attr:`Analysis.verdicts`."""


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    s = settings(preset)
    flags = variant_flags(s["variant"], s["l2"])
    return pair_grid(preset, [dict(depth=s["depth"], optimizer=o,
                                   lr=optimizers.check(o).default_lr, activation=a,
                                   trace="activations", **flags)
                              for o in s["optimizers"] for a in s["activations"]],
                     device, data_dir)


def variant_fit() -> pd.Series:
    """Which variant the paper's activation table appears to use: for each column of its
    BatchNorm table (ReLU MLPs), the sum over the five optimizers of ``|p - p_ReLU|`` against
    the activation table's ReLU column; smallest first."""
    relu = activation_pvalues()["relu"]
    bn = batchnorm_pvalues()
    return bn.sub(relu, axis=0).abs().sum().sort_values().rename("sum of |p difference|")


def favoured(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer, the activations whose sparse nets beat dense ones: ours by q (``ours``:
    Benjamini-Hochberg over our table) and the paper's by its p (``paper``), as comma-separated
    names."""
    def names(row):
        return ", ".join(label(a) for a, p in row.items() if p < LEVEL) or "none"
    return pd.DataFrame({"ours (q)": ours.apply(names, axis=1),
                         "paper (p)": paper.apply(names, axis=1)}).rename_axis("optimizer")


def by_activation(runs: pd.DataFrame, column: str, order) -> pd.DataFrame:
    """Median of ``column`` over the runs of each activation (rows, in ``order``) and kind
    (columns ``sparse``, ``dense``); NaN where there is none."""
    if column not in runs or runs.empty:
        return pd.DataFrame(np.nan, index=pd.Index(list(order), name="activation"),
                            columns=["sparse", "dense"])
    table = runs.groupby(["activation", "kind"])[column].median().unstack("kind")
    return table.reindex(index=list(order), columns=["sparse", "dense"])


def negative_flow_table(runs: pd.DataFrame, order) -> pd.DataFrame:
    """:func:`by_activation` of the trace's ``neg_share`` and ``neg_grad_share`` (fractions in
    [0, 1], all hidden layers together): columns (quantity, kind)."""
    return pd.concat({q: by_activation(runs, f"{TRACE_PREFIX}{q}", order)
                      for q in QUANTITIES}, axis=1)


def negative_flow_layers(runs: pd.DataFrame, order) -> pd.DataFrame:
    """The median ``neg_grad_share`` of each hidden layer (columns ``(kind, layer)``, layer as
    its module path, e.g. ``hidden.0``) per activation."""
    suffix = ".neg_grad_share"
    cols = [c for c in runs if c.startswith(TRACE_PREFIX) and c.endswith(suffix)]
    if not cols:
        return pd.DataFrame(index=pd.Index(list(order), name="activation"))
    parts = {(kind, c[len(TRACE_PREFIX):-len(suffix)]): by_activation(runs, c, order)[kind]
             for kind in ("sparse", "dense") for c in cols}
    return pd.DataFrame(parts).rename_axis(columns=["kind", "layer"])


NEGFLOW_NAMES = {"neg_share": "% of pre-activations with f' < 0",
                 "neg_grad_share": "% of |dC/dz| through them"}
"""How the chapter's tables name the two quantities of :func:`negative_flow_table`."""


def negflow_view(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`negative_flow_table` for a person: in percent, ``digits`` decimals, the
    quantities named by :data:`NEGFLOW_NAMES`."""
    return (100 * table).round(digits).rename(columns=NEGFLOW_NAMES, level=0) + 0.0


def tau_table(tau: pd.DataFrame, order) -> pd.DataFrame:
    """The per-activation Kendall taus (one measure and target) for a person: one row per
    activation (in ``order``), per kind the tau with its 95 % interval as text and the runs
    ``n`` it rests on."""
    if not len(tau):
        return pd.DataFrame(index=pd.Index(list(order), name="activation"))
    t = tau.assign(text=with_interval(tau), n=tau["n"].astype("Int64"))
    parts = {}
    for kind in ("sparse", "dense"):
        k = t[t["kind"] == kind].set_index("activation").reindex(list(order))
        parts[(kind, "tau (95 % CI)")] = k["text"].fillna("")
        parts[(kind, "n")] = k["n"]
    return pd.DataFrame(parts).rename_axis(index="activation")


def negative_flow_cells(runs: pd.DataFrame, cells: CellTests) -> pd.DataFrame:
    """Per optimizer x activation cell: ``neg_grad_share`` (the median over its sparse runs of
    the share of |dC/dz| through negative slopes) and ``margin`` (the median sparse - dense
    test-accuracy difference of its pairs, :attr:`gflib.analysis.CellTests.median`). The share
    is a flow statistic: runs whose flow is not usable (:func:`gflib.analysis.flow_usable`) are
    left out of it, not of the margin."""
    column = f"{TRACE_PREFIX}neg_grad_share"
    sparse = runs[(runs["kind"] == "sparse") & flow_usable(runs)] if len(runs) else runs
    if column not in sparse or not len(sparse):
        return pd.DataFrame(columns=["optimizer", "activation", "neg_grad_share", "margin"])
    share = sparse.groupby(["optimizer", "activation"])[column].median()
    margin = cells.median.stack().rename("margin")
    out = pd.concat([share.rename("neg_grad_share"), margin], axis=1, join="inner")
    return out.rename_axis(["optimizer", "activation"]).reset_index()


def negative_flow_verdict(cells: pd.DataFrame, scale: str, level: float = 0.95) -> Verdict:
    """The paper's reading of negative flow, as a test that can fail: across optimizer x
    activation cells, Kendall tau between the share of |dC/dz| through negative slopes and the
    sparse - dense accuracy margin (> 0: the more negative flow, the more sparse nets gain);
    one-sided p (scipy.stats.kendalltau), a percentile bootstrap interval over cells; the
    smallest p of ``n`` cells is that of an exact test without ties, ``1 / n!``."""
    ok = cells.dropna(subset=["neg_grad_share", "margin"])
    n = len(ok)
    if n < 3 or ok["neg_grad_share"].nunique() < 2:
        return not_run(5, TESTS[2], scale, "paper", CELL_UNIT,
                       "too few cells with negative flow at this scale")
    x, y = ok["neg_grad_share"].to_numpy(float), ok["margin"].to_numpy(float)
    res = ss.kendalltau(x, y, alternative="greater")
    low, high = stats.kendall_ci(x, y, level=level)
    top = ok.groupby("activation")["neg_grad_share"].median().sort_values(ascending=False)
    return Verdict(
        claim=5, test=TESTS[2], scale=scale, form="paper", effect=float(res.statistic),
        effect_unit="Kendall tau, negative-flow share with the sparse - dense margin",
        interval=(low, high), p=float(res.pvalue), n=n, unit=CELL_UNIT,
        min_p=1 / math.factorial(n),
        needs=stats.units_needed(lambda k: 1 / math.factorial(k), LEVEL, start=3),
        sentence=(f"the most gradient flows through negative slopes with {label(top.index[0])} "
                  f"({100 * top.iloc[0]:.1f} % of |dC/dz| in sparse nets)"
                  + (f", then {label(top.index[1])} ({100 * top.iloc[1]:.1f} %)"
                     if len(top) > 1 else "")
                  + "; across cells, more negative flow "
                  + ("goes with a larger" if res.statistic > 0 else "does not go with a larger")
                  + " sparse-over-dense margin"),
        paper=PAPER_NEGATIVE)


@dataclass
class Analysis(ChapterAnalysis):
    """Everything the chapter shows from one :class:`gflib.results.Results`.

    ``paired``; ``cells`` (sparse > dense per optimizer x activation, p and q), ``paper`` (the
    paper's table, same layout), ``favoured`` and ``agreement`` (on p, as the paper's table has
    p); ``egf`` (median average EGF_2 per activation and kind); ``tau`` (Kendall tau of average
    EGF_2 with test accuracy per activation and kind); ``negflow``, ``negflow_layers`` and
    ``negflow_cells`` (:func:`negative_flow_table`, :func:`negative_flow_layers`,
    :func:`negative_flow_cells`); ``diverged`` (diverged pairs per cell)."""

    paired: pd.DataFrame
    cells: CellTests
    paper: pd.DataFrame
    favoured: pd.DataFrame
    agreement: pd.DataFrame
    egf: pd.DataFrame
    tau: pd.DataFrame
    negflow: pd.DataFrame
    negflow_layers: pd.DataFrame
    negflow_cells: pd.DataFrame
    diverged: pd.DataFrame

    def agree(self) -> int:
        """Cells whose significance (p < 0.05) agrees with the paper's table's."""
        return int(np.isin(self.agreement.to_numpy(), ("both", "neither")).sum())

    def compared(self) -> int:
        """Cells with a p-value in both tables."""
        return int((self.agreement.to_numpy() != "n/a").sum())


def cell_verdicts(paired: pd.DataFrame, scale: str) -> list:
    """The paper's two cells: Swish and PReLU with SGD (:func:`gflib.analysis.cell_verdict`)."""
    out = []
    for test, act in zip(TESTS[:2], ("swish", "prelu")):
        p = activation_pvalues().loc["sgd", act]
        out.append(cell_verdict(paired, "sgd", act, "optimizer", "activation", 5, scale, test,
                                paper=PAPER_CELL.format(act=label(act),
                                                        p=format_p(p).removeprefix("p = "))))
    return out


def analyse(results, preset) -> Analysis:
    """The chapter's :class:`Analysis` of ``results`` (live or stored) at ``preset``."""
    s = settings(preset)
    order = list(s["activations"])
    layout = dict(index=list(s["optimizers"]), columns=order)
    runs = results.runs
    counts = Counts.of(runs)
    ok = runs[flow_usable(runs)] if len(runs) else runs  # the flow statistics' runs
    paired = pairs(runs)
    cells = cell_tests(paired, "optimizer", "activation").reindex(**layout) if len(paired) \
        else CellTests(*(pd.DataFrame(index=layout["index"], columns=order, dtype=float)
                         for _ in range(4)))
    paper = activation_pvalues().reindex(**layout)
    negflow_cells = negative_flow_cells(runs, cells)
    a = Analysis(
        preset.name, counts, [], paired, cells, paper, favoured(cells.q, paper),
        agreement(cells.p, paper), by_activation(ok, f"mean_{EGF}", order),
        correlations(runs, group_by=("activation",), targets=("test_acc",), measures=(EGF,)),
        negative_flow_table(ok, order), negative_flow_layers(ok, order), negflow_cells,
        paired.pivot_table(index="optimizer", columns="activation", values="diverged",
                           aggfunc="sum").reindex(**layout) if len(paired) else pd.DataFrame())
    a.verdicts = adjust([*cell_verdicts(paired, preset.name),
                         negative_flow_verdict(negflow_cells, preset.name)])
    if counts.all_diverged:
        a.verdicts = [not_run(5, t, a.scale, "paper", CELL_UNIT, "not run: every run diverged")
                      for t in TESTS]
    return a


def never_negative_check(negflow: pd.DataFrame) -> bool:
    """The activations whose slope is never negative (:func:`gflib.activations.never_negative`)
    pass no gradient through a negative slope in these runs."""
    mono = negflow.reindex(activations.never_negative()).dropna(how="all")
    return bool((mono == 0).all().all())


def paper_numbers(verdicts) -> dict:
    """The paper's number for each of :data:`TESTS`, as the answer table shows it."""
    return {TESTS[0]: "p = 0.027 (dataset not stated)",
            TESTS[1]: "p = 0.005 (dataset not stated)",
            TESTS[2]: "said, no number given"}


def answer_words(a: Analysis) -> str:
    """The answer in a sentence per test: its finding and its status."""
    return f"At `{a.scale}` ({a.counts.text()}): " + " ".join(
        f"{v.sentence[:1].upper() + v.sentence[1:]}: {v.status}." for v in a.verdicts)


def pvalues_caption(a: Analysis, label_: str) -> str:
    """What :func:`report`'s heat maps find: the cells where sparse beats dense, ours by q and
    by p, the paper's by p, and where the two tables agree (Markdown)."""
    return (f"`{label_}`: sparse nets beat their dense partners (q < 0.05, outlined) in "
            f"{a.cells.significant('q')} of our {a.cells.cells()} optimizer x activation cells "
            f"({a.cells.significant('p')} by raw p) and in "
            f"{int((a.paper < LEVEL).to_numpy().sum())} of the paper's (p, another dataset); the "
            f"two tables agree on significance at p < {LEVEL:g} in {a.agree()} of "
            f"{a.compared()} cells. Each of our cells rests on {a.cells.n_text()} width x seed "
            "pairs.")


def report(a: Analysis, label_: str) -> None:
    """Show one stored summary: its p-value table beside the paper's, the activations that
    favour sparse nets, the negative-flow table and the verdicts. The heat maps go through
    :func:`gflib.plots.show` as ``pvalues``."""
    from IPython.display import Markdown, display

    plots.show(plots.pvalue_heatmaps({f"ours ({label_}): q": a.cells.q,
                                      f"{UNSTATED}: p": a.paper}),
               "pvalues", pvalues_caption(a, label_))
    display(Markdown(f"Sparse > dense, p (q), {a.cells.n_text()} width x seed pairs per cell:"),
            pq_table(a.cells),
            Markdown("Activations whose sparse nets beat their dense partners:"), a.favoured,
            Markdown("Negative gradient flow per activation (medians over runs):"),
            negflow_view(a.negflow),
            Markdown(f"{a.agree()} of {a.compared()} cells agree with the paper's table on "
                     f"significance (p < 0.05; another dataset). {disagreements(a.agreement)}."))
    show_verdicts(a.verdicts)


def least_slope(curves: pd.DataFrame) -> dict:
    """Where the activations that slope down by shape do so most: ``{name: (min slope, x)}``
    from :func:`gflib.activations.slope_summary`."""
    summary = activations.slope_summary(curves)
    return {n: (float(summary.loc[n, "min_slope"]), float(summary.loc[n, "x_at_min"]))
            for n in summary.index if not summary.loc[n, "monotone"]}

