"""Chapter 2: BatchNorm matters more for sparse networks (claim 3).

The grid: optimizers x variants (none, DA, L2, SC and each with BatchNorm) x SC-SDC dense widths x
seeds, at one depth, each optimizer at one learning rate (CHOICEs below).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from ..analysis import flow_stability, pair_grid, pairs, sparse_vs_dense_table, variant_flags
from ..reference import BN_VARIANTS, STUDY_OPTIMIZERS, batchnorm_pvalues

NAME = "batchnorm"
TITLE = "BatchNorm matters more for sparse networks"
CLAIMS = (3,)
LRS = {"adagrad": 0.01, "adam": 0.001, "rmsprop": 0.001, "sgd": 0.1, "momentum": 0.01}
"""CHOICE: one learning rate per optimizer (the paper's grid had two, and does not say which its
p-value table used): the usual default of each optimizer."""
SETTINGS = {"optimizers": STUDY_OPTIMIZERS, "variants": BN_VARIANTS, "depth": 4, "l2": 1e-4}
"""CHOICEs: depth 4 (the talk's BatchNorm figures show 4-hidden-layer MLPs; the table's depth is
not stated), L2 = 1e-4 times the sum of squared weights."""
TRIMMED = {"optimizers": ("adam", "sgd"), "variants": ("NR", "BN"), "depth": 2, "l2": 1e-4}
"""The reduced grid of a ``trim`` preset (smoke)."""


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    s = settings(preset)
    return pair_grid(preset, [dict(depth=s["depth"], optimizer=o, lr=LRS[o],
                                   **variant_flags(v, s["l2"]))
                              for o in s["optimizers"] for v in s["variants"]], device, data_dir)


BN_PAIRS = {"NR": "BN", "DA": "DA_BN", "L2": "L2_BN", "SC": "SC_BN"}
"""Each variant without BatchNorm and its BatchNorm counterpart."""


def bn_gains(paired: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """The BatchNorm gain of every matched pair: one row per (optimizer, base variant, dense
    width, seed) with ``sparse_gain`` = sparse ``metric`` with BN - without, ``dense_gain`` likewise
    and ``excess`` = sparse_gain - dense_gain (> 0: BN helps the sparse net more)."""
    keys = ["optimizer", "dense_width", "seed", "depth", "lr"]
    cols = keys + [f"{metric}_sparse", f"{metric}_dense"]
    rows = []
    for base, with_bn in BN_PAIRS.items():
        plain = paired.loc[paired["variant"] == base, cols]
        bn = paired.loc[paired["variant"] == with_bn, cols]
        m = plain.merge(bn, on=keys, suffixes=("_plain", "_bn"), validate="one_to_one")
        rows.append(pd.DataFrame({
            **{k: m[k] for k in keys}, "variant": base,
            "sparse_plain": m[f"{metric}_sparse_plain"], "sparse_bn": m[f"{metric}_sparse_bn"],
            "dense_plain": m[f"{metric}_dense_plain"], "dense_bn": m[f"{metric}_dense_bn"]}))
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if len(out):
        out["sparse_gain"] = out["sparse_bn"] - out["sparse_plain"]
        out["dense_gain"] = out["dense_bn"] - out["dense_plain"]
        out["excess"] = out["sparse_gain"] - out["dense_gain"]
    return out


def bn_gain_tests(gains: pd.DataFrame, by: str | None = "optimizer") -> pd.DataFrame:
    """:func:`gflib.stats.bn_gain_test` on all gains, and per value of ``by``: one row each."""
    groups = [("all", gains)] + (list(gains.groupby(by)) if by else [])
    rows = []
    for key, g in groups:
        res = stats.bn_gain_test(g["sparse_bn"].to_numpy(), g["sparse_plain"].to_numpy(),
                                 g["dense_bn"].to_numpy(), g["dense_plain"].to_numpy())
        rows.append({"group": key, **res})
    return pd.DataFrame(rows).set_index("group")


def stability_summary(stab: pd.DataFrame) -> pd.DataFrame:
    """Median over runs of ``log_std`` (over epochs), and the spread across seeds (std of each
    config's mean log flow over its seeds, median over configs), by kind and BatchNorm."""
    over_epochs = stab.groupby(["kind", "batchnorm"])["log_std"].median().rename(
        "median log10-std over epochs")
    cfg = ["kind", "batchnorm", "optimizer", "variant", "width", "match_width"]
    seeds = (stab.assign(match_width=stab["match_width"].fillna(0))
             .groupby(cfg)["log_mean"].std(ddof=1).groupby(["kind", "batchnorm"]).median()
             .rename("median log10-std across seeds"))
    return pd.concat([over_epochs, seeds], axis=1)


def significance_shares(pvalues: pd.DataFrame, level: float = 0.05) -> pd.Series:
    """Share of the optimizer x variant cells of ``pvalues`` below ``level``, for the variants
    without BatchNorm and for those with it (empty cells do not count)."""
    with_bn = [v for v in pvalues.columns if "BN" in v.split("_")]
    without = [v for v in pvalues.columns if v not in with_bn]

    def share(cols):
        values = pvalues[cols].to_numpy(dtype=float).ravel()
        values = values[~np.isnan(values)]
        return float((values < level).mean()) if len(values) else float("nan")
    return pd.Series({"without BN": share(without), "with BN": share(with_bn)})


def bn_claim(tests: pd.DataFrame) -> tuple:
    """``(holds, sentence)`` of the direct test: the ``"all"`` row of :func:`bn_gain_tests`."""
    o = tests.loc["all"]
    holds = bool(o["pvalue"] < 0.05 and o["median_diff"] > 0)
    sentence = (f"the sparse net's BatchNorm gain exceeds the dense net's by a median of "
                f"{100 * o['median_diff']:+.1f} accuracy points (95 % CI {100 * o['ci_low']:+.1f}"
                f" to {100 * o['ci_high']:+.1f}; one-sided Wilcoxon p = {o['pvalue']:.3g}, "
                f"n = {int(o['n'])} matched comparisons)")
    return holds, sentence


def stability_test(stab: pd.DataFrame) -> dict:
    """Is the flow of sparse runs less steady over epochs without BatchNorm than with it?
    One-sided Mann-Whitney on :func:`flow_stability`'s ``log_std``; returns the test's dict with
    the two medians (``median_without``, ``median_with``) and a ``sentence``."""
    sparse = stab[stab["kind"] == "sparse"]
    without = sparse.loc[~sparse["batchnorm"].astype(bool), "log_std"].dropna().to_numpy()
    with_bn = sparse.loc[sparse["batchnorm"].astype(bool), "log_std"].dropna().to_numpy()
    res = stats.sparse_vs_dense(without, with_bn, paired=False)
    res.update(median_without=float(np.median(without)) if len(without) else float("nan"),
               median_with=float(np.median(with_bn)) if len(with_bn) else float("nan"))
    res["sentence"] = (f"sparse runs without BatchNorm have a median log10-std of EGF over epochs "
                       f"of {res['median_without']:.3f} against {res['median_with']:.3f} with it "
                       f"(one-sided Mann-Whitney p = {res['pvalue']:.3g} for 'less stable "
                       f"without')")
    return res


def analyse(results, preset) -> dict:
    """Everything the BatchNorm chapter shows from one results table (live or stored).

    Keys: ``paired``; ``pvalues`` (H1 sparse > dense in test accuracy, ``optimizers`` x
    ``variants``) and ``n`` (pairs per cell), ``paper`` (the paper's table, same layout),
    ``shares`` (:func:`significance_shares`, ours and the paper's), ``gains``, ``gain_tests``,
    ``holds`` and ``claim`` (:func:`bn_claim`), ``stability`` (:func:`stability_summary`),
    ``steadier`` (:func:`stability_test`), ``n_runs``, ``n_diverged``.
    """
    s = settings(preset)
    optimizers, variants = s["optimizers"], s["variants"]
    df = results.runs
    paired = pairs(df)
    table = sparse_vs_dense_table(paired, "optimizer", "variant")
    layout = dict(index=list(optimizers), columns=list(variants))
    pvalues = table.reindex(**layout)
    paper = batchnorm_pvalues().reindex(**layout)
    gains = bn_gains(paired)
    tests = bn_gain_tests(gains)
    holds, claim = bn_claim(tests)
    stab = flow_stability(results)
    return {
        "paired": paired, "pvalues": pvalues, "n": table.attrs["n"].reindex(**layout),
        "paper": paper,
        "shares": pd.DataFrame({"ours": significance_shares(pvalues),
                                "paper": significance_shares(paper)}),
        "gains": gains, "gain_tests": tests, "holds": holds, "claim": claim,
        "stability": stability_summary(stab), "steadier": stability_test(stab),
        "n_runs": len(df), "n_diverged": int(df["diverged"].sum()),
    }


def verdict_sentence(analysis: dict, scale: str) -> str:
    """The BatchNorm chapter's verdict in words, from :func:`bn_analysis`."""
    shares = analysis["shares"]["ours"]
    return (f"at `{scale}` the claim {'holds' if analysis['holds'] else 'is not reproduced'}: "
            f"{analysis['claim']}; sparse beat dense (p < 0.05) in {shares['without BN']:.0%} of "
            f"the cells without BatchNorm and {shares['with BN']:.0%} with it; "
            f"{analysis['steadier']['sentence']}")


def report(analysis: dict, label: str) -> None:
    """Show one stored summary: its p-value heat map beside the paper's, the shares of
    significant cells, the BN-gain tests, the stability table and its verdict."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from .. import plots

    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    plots.pvalue_heatmap(analysis["pvalues"], f"{label} (stored): p for H1 sparse > dense",
                         ax=axes[0])
    plots.pvalue_heatmap(analysis["paper"], "paper (Fashion-MNIST)", ax=axes[1])
    fig.tight_layout()
    plt.show()
    display(analysis["shares"].round(2), analysis["gain_tests"].round(4),
            analysis["stability"].round(3))
    display(Markdown(f"**Verdict:** {verdict_sentence(analysis, label)}."))
