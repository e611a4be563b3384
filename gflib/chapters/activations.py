"""The activations chapter: Swish and PReLU for sparse networks (claim 5).

The grid: optimizers x activations x SC-SDC dense widths x seeds, at one depth and one training
variant, each optimizer at one learning rate (CHOICEs below). Every run records, after training,
how much of its gradient flows where the activation slopes downwards (trace ``"activations"``,
:mod:`gflib.negflow`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import stats
from ..analysis import (agreement, correlations, disagreements, pair_grid, pairs,
                        sparse_vs_dense_table, unit_test, variant_flags, with_interval)
from ..negflow import QUANTITIES
from ..reference import ACTIVATIONS, STUDY_OPTIMIZERS, activation_pvalues, batchnorm_pvalues
from ..results import TRACE_PREFIX
from ..verdict import Verdict, format_p, show_verdicts
from .batchnorm import LRS

NAME = "activations"
TITLE = "Activations for sparse networks"
CLAIMS = (5,)
SETTINGS = {"optimizers": STUDY_OPTIMIZERS, "activations": ACTIVATIONS, "depth": 2,
            "variant": "L2_BN", "l2": 1e-4}
"""The study's five optimizers and six activations (in its table's order). CHOICEs: depth 2 (the
paper's grid had 1, 2 and 4 hidden layers and its activation table does not say which: 2 is the
shallowest with a masked hidden-to-hidden layer); variant ``L2_BN`` (:func:`variant_fit`: of the
paper's BatchNorm-table columns, the one nearest its activation table's ReLU column); L2 = 1e-4
times the sum of squared weights, as in the BatchNorm chapter; one learning rate per optimizer
(:data:`gflib.chapters.batchnorm.LRS`)."""
TRIMMED = {"optimizers": ("adam", "sgd"), "activations": ("relu", "swish", "prelu"), "depth": 2,
           "variant": "L2_BN", "l2": 1e-4}
"""The reduced grid of a ``trim`` preset (smoke)."""
MONOTONE = ("relu", "elu", "sigmoid")
"""Activations whose slope is never negative, whatever they learn (their negative flow is 0)."""
EGF = "egf_l2"
"""The EGF measure averaged, and correlated with accuracy, per activation."""
ALPHA = 0.05
LABELS = {"relu": "ReLU", "swish": "Swish", "prelu": "PReLU", "srelu": "SReLU",
          "sigmoid": "Sigmoid", "elu": "ELU", "adagrad": "Adagrad", "adam": "Adam",
          "rmsprop": "RMSProp", "sgd": "SGD", "momentum": "momentum"}
"""How the sentences name activations and optimizers."""
UNIT = ("optimizer", "seed")
UNIT_NAME = "optimizer x seed"
"""The independent unit of the negative-flow test: the runs of one optimizer and seed share their
data order and seed; the dense widths are fixed factors, averaged within a unit."""
PAIR_UNIT = "width x seed pair; pairs of one seed share its data order"
"""What n counts in a sparse-vs-dense cell: the paper's form, a Wilcoxon test over matched
pairs."""


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def _lr(optimizer: str) -> float:
    if optimizer not in LRS:
        raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(LRS)}")
    return LRS[optimizer]


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    s = settings(preset)
    flags = variant_flags(s["variant"], s["l2"])
    return pair_grid(preset, [dict(depth=s["depth"], optimizer=o, lr=_lr(o), activation=a,
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


def favoured(pvalues: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer, the activations whose sparse nets beat dense ones (p < :data:`ALPHA`),
    here (``ours``) and in the paper (``paper``), as comma-separated names."""
    def names(row):
        hits = [LABELS.get(a, a) for a, p in row.items() if p < ALPHA]
        return ", ".join(hits) or "none"
    return pd.DataFrame({"ours": pvalues.apply(names, axis=1),
                         "paper": paper.apply(names, axis=1)}).rename_axis("optimizer")


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
    return (100 * table).round(digits).rename(columns=NEGFLOW_NAMES, level=0)


def tau_table(tau: pd.DataFrame, order) -> pd.DataFrame:
    """:func:`analyse`'s ``tau`` (one measure and target) for a person: one row per activation
    (in ``order``), per kind the Kendall tau with its 95 % interval as text
    (:func:`gflib.analysis.with_interval`) and the runs ``n`` it rests on."""
    t = tau.assign(text=with_interval(tau), n=tau["n"].astype("Int64"))
    parts = {}
    for kind in ("sparse", "dense"):
        k = t[t["kind"] == kind].set_index("activation").reindex(list(order))
        parts[(kind, "tau (95 % CI)")] = k["text"].fillna("")
        parts[(kind, "n")] = k["n"]
    return pd.DataFrame(parts).rename_axis(index="activation")


def _status(p: float, effect: float, low: float, high: float, n: int) -> str:
    if n == 0 or math.isnan(effect):
        return "not run"
    if p < ALPHA and effect > 0:
        return "reproduced"
    if effect > 0 or math.isnan(low) or low <= 0 <= high:
        return "not distinguishable"
    return "not reproduced"


def cell_verdict(paired: pd.DataFrame, optimizer: str, activation: str, scale: str) -> Verdict:
    """Claim 5's form "``activation`` with ``optimizer`` favours sparse nets": in that cell of
    the table, the median test-accuracy difference sparse - dense over the matched pairs (in
    points) with a bootstrap interval of the median, and the one-sided Wilcoxon p (H1 sparse >
    dense); reproduced when p < :data:`ALPHA` with sparse ahead, as in the paper."""
    g = paired[(paired["optimizer"] == optimizer) & (paired["activation"] == activation)]
    res = stats.sparse_vs_dense(g["test_acc_sparse"].to_numpy(), g["test_acc_dense"].to_numpy())
    d = (g["test_acc_sparse"] - g["test_acc_dense"]).to_numpy(dtype=float)
    low, high = stats.bootstrap_ci(d, np.median)
    effect = 100 * res["median_diff"]
    status = _status(res["pvalue"], effect, low, high, res["n"])
    who = f"with {LABELS[optimizer]}, sparse {LABELS[activation]} nets"
    paper_p = activation_pvalues().loc[optimizer, activation]
    sentence = {
        "reproduced": f"{who} beat their dense partners here, as in the paper",
        "not distinguishable": f"{who} are not told apart from their dense partners here "
                               f"(median {effect:+.1f} points)",
        "not reproduced": f"{who} fall behind their dense partners here (median "
                          f"{effect:+.1f} points)",
        "not run": f"{who} were not run at this scale",
    }[status]
    return Verdict(claim=5, scale=scale, status=status, effect=effect,
                   effect_unit="accuracy points, sparse - dense (median)",
                   interval=(100 * low, 100 * high), p=res["pvalue"], n=res["n"],
                   unit=PAIR_UNIT, sentence=sentence,
                   paper=f"sparse > dense with {LABELS[optimizer]} and {LABELS[activation]}, "
                         f"{format_p(paper_p)} (Fashion-MNIST)")


def negative_flow_verdict(runs: pd.DataFrame, scale: str) -> Verdict:
    """Claim 5's "Swish's non-monotonic shape lets negative gradients flow": in trained sparse
    Swish nets, the share of the gradient's L1 norm that passes where Swish's slope is negative
    (:mod:`gflib.negflow`), tested > 0 at the unit :data:`UNIT`; the dense nets' share is named
    beside it."""
    column = f"{TRACE_PREFIX}neg_grad_share"
    swish = runs[(runs["activation"] == "swish") & ~runs["diverged"]]
    if column not in runs or swish.empty:
        return Verdict(claim=5, scale=scale, status="not run", effect=math.nan,
                       effect_unit="% of |dC/dz|", interval=(math.nan, math.nan), p=math.nan,
                       n=0, unit=UNIT_NAME, sentence="no Swish run recorded its negative flow")
    sparse = unit_test(swish[swish["kind"] == "sparse"], column, UNIT)
    dense = swish.loc[swish["kind"] == "dense", column].median()
    effect = 100 * sparse["effect"]
    low, high = 100 * sparse["ci_low"], 100 * sparse["ci_high"]
    status = _status(sparse["pvalue"], effect, low, high, sparse["n"])
    return Verdict(
        claim=5, scale=scale, status=status, effect=effect,
        effect_unit="% of the gradient's L1 norm where Swish slopes down (sparse nets)",
        interval=(low, high), p=sparse["pvalue"], n=sparse["n"], unit=UNIT_NAME,
        sentence=(f"in trained sparse Swish nets {effect:.3g} % of the gradient flows back "
                  f"through pre-activations where Swish slopes down, so its sign flips there "
                  f"(dense nets: median {100 * dense:.3g} %); ReLU, ELU and Sigmoid never do "
                  f"this"),
        paper="Swish's non-monotonic shape lets negative gradients flow (no number given)")


SUBCLAIMS = ("Swish with SGD favours sparse nets", "PReLU with SGD favours sparse nets",
             "Swish lets negative gradients flow")
"""The sub-claims tested, in the order of ``analyse(...)["verdicts"]``."""


def analyse(results, preset) -> dict:
    """Everything the chapter shows from one :class:`gflib.results.Results` (live or stored).

    Keys: ``paired``; ``pvalues`` (H1 sparse > dense in test accuracy, one-sided Wilcoxon over
    matched pairs, optimizers x activations), ``n`` (pairs per cell), ``paper`` (the paper's
    table, same layout), ``favoured`` and ``agreement`` (:func:`favoured`, :func:`agreement`),
    ``agree`` (cells whose significance agrees with the paper's), ``cells`` (cells with both
    values) and ``significant`` ({"ours", "paper"}: cells below :data:`ALPHA` in each table,
    counted over the cells with both values); ``egf`` (median average EGF_2 per activation and
    kind); ``tau`` (Kendall tau of average EGF_2 with test accuracy per activation and kind,
    with bootstrap intervals: :func:`gflib.analysis.correlations`); ``negflow`` and
    ``negflow_layers``
    (:func:`negative_flow_table`, :func:`negative_flow_layers`); ``verdicts`` (one
    :class:`gflib.verdict.Verdict` per :data:`SUBCLAIMS`); ``n_runs``, ``n_diverged`` and
    ``diverged`` (diverged pairs per cell; left out of every statistic).
    """
    s = settings(preset)
    order = list(s["activations"])
    layout = dict(index=list(s["optimizers"]), columns=order)
    runs = results.runs
    ok = runs[~runs["diverged"]]
    paired = pairs(runs)
    table = sparse_vs_dense_table(paired, "optimizer", "activation")
    pvalues = table.reindex(**layout)
    paper = activation_pvalues().reindex(**layout)
    agree = agreement(pvalues, paper)
    values = agree.to_numpy().ravel()
    scale = preset.name
    sig = {who: int(np.isin(values, ("both", f"{who} only")).sum()) for who in ("ours", "paper")}
    return {
        "paired": paired, "pvalues": pvalues, "n": table.attrs["n"].reindex(**layout),
        "paper": paper, "favoured": favoured(pvalues, paper), "agreement": agree,
        "agree": int(np.isin(values, ("both", "neither")).sum()),
        "cells": int((values != "n/a").sum()),
        "significant": sig,
        "egf": by_activation(ok, f"mean_{EGF}", order),
        "tau": correlations(runs, group_by=("activation",), targets=("test_acc",),
                            measures=(EGF,)),
        "negflow": negative_flow_table(ok, order),
        "negflow_layers": negative_flow_layers(ok, order),
        "verdicts": [cell_verdict(paired, "sgd", "swish", scale),
                     cell_verdict(paired, "sgd", "prelu", scale),
                     negative_flow_verdict(runs, scale)],
        "n_runs": len(runs), "n_diverged": int(runs["diverged"].sum()),
        "diverged": paired.pivot_table(index="optimizer", columns="activation",
                                       values="diverged", aggfunc="sum").reindex(**layout),
    }


def verdict_sentence(analysis: dict, scale: str) -> str:
    """Which activations favour sparse nets at ``scale``, with SGD and Adam, against the
    paper's, and how many cells agree with the paper's in significance."""
    fav = analysis["favoured"]
    parts = [f"with {LABELS[o]} for {fav.loc[o, 'ours']} (paper: {fav.loc[o, 'paper']})"
             for o in ("sgd", "adam") if o in fav.index]
    return (f"at `{scale}`, sparse nets beat their dense partners (p < {ALPHA}) "
            + " and ".join(parts) + f"; {analysis['agree']} of {analysis['cells']} "
            "optimizer x activation cells agree with the paper's on significance")


def report(analysis: dict, label: str) -> None:
    """Show one stored summary: its p-value table beside the paper's, the activations that
    favour sparse nets, the negative-flow table and the verdicts."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from .. import plots

    plots.pvalue_heatmaps({f"{label} (stored)": analysis["pvalues"],
                           "paper (Fashion-MNIST)": analysis["paper"]})
    plt.show()
    display(Markdown("Activations whose sparse nets beat their dense partners (p < 0.05):"),
            analysis["favoured"],
            Markdown("Negative gradient flow per activation:"),
            negflow_view(analysis["negflow"]))
    display(Markdown(f"**In short:** {verdict_sentence(analysis, label)}; "
                     f"{disagreements(analysis['agreement'], LABELS)}."))
    show_verdicts(analysis["verdicts"])
