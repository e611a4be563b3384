"""Chapter 2: BatchNorm matters more for sparse networks (claim 3).

The grid: optimizers x variants (none, DA, L2, SC and each with BatchNorm) x SC-SDC dense widths x
seeds, at one depth, each optimizer at one learning rate (CHOICEs below).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import optimizers
from ..analysis import (agreement, disagreements, effect_by, flow_stability, pair_grid, pairs,
                        sparse_vs_dense_table, unit_test, variant_flags)
from ..reference import BN_VARIANTS, STUDY_OPTIMIZERS, batchnorm_pvalues
from ..verdict import Verdict, format_p, show_verdicts

NAME = "batchnorm"
TITLE = "BatchNorm matters more for sparse networks"
CLAIMS = (3,)
LRS = {o: optimizers.check(o).default_lr for o in STUDY_OPTIMIZERS}
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


def stability(results) -> tuple:
    """``(table, steadier)``: how unsteady flow is over the scheduled epochs (the standard
    deviation of log10 EGF_2, :func:`gflib.analysis.flow_stability`), median by kind and
    BatchNorm; and per matched comparison the difference of differences ``steadier`` =
    (sparse without BN - sparse with BN) - (dense without - dense with), in log10 units (> 0:
    BatchNorm steadies the sparse net's flow more than the dense net's)."""
    stab = flow_stability(results)
    table = stab.pivot_table(index="kind", columns="batchnorm", values="log_std",
                             aggfunc="median").rename(columns={False: "without BN",
                                                               True: "with BN"})
    runs = results.runs.merge(stab[["key", "log_std"]], on="key", how="left")
    flat = bn_gains(pairs(runs), metric="log_std")
    if len(flat):
        flat["steadier"] = -flat["excess"]
    return table, flat


def gain_verdict(g: dict, shares, scale: str, claim: int = 3, nets: str = "nets",
                 unit: str | None = None,
                 paper: str = "sparse beats dense in 65 % of the BN cells (p < 0.05) and 20 % "
                              "of the others") -> Verdict:
    """The BN-gain verdict from a unit test ``g`` of the excess gain
    (:func:`gflib.analysis.unit_test`) and the ``shares`` of significant sparse > dense cells
    without and with BN (:func:`significance_shares`): reproduced when the excess is > 0 at
    p < 0.05 *and* sparse beats dense in most BN cells and in fewer cells without (the paper's
    form); partly when only the direct test holds; not distinguishable when the interval covers
    0; not run without units. ``nets`` names the networks in the words ("nets", "CNNs");
    ``unit``: the test's independent unit (default :data:`UNIT_NAME`)."""
    unit = unit or UNIT_NAME
    direct = g["pvalue"] < 0.05 and g["effect"] > 0
    paper_form = shares["with BN"] > 0.5 and shares["without BN"] < shares["with BN"]
    status = ("not run" if g["n"] == 0 else "reproduced" if direct and paper_form
              else "partly" if direct
              else "not distinguishable" if math.isnan(g["ci_low"])
              or g["ci_low"] <= 0 <= g["ci_high"] else "not reproduced")
    return Verdict(
        claim=claim, scale=scale, status=status, effect=100 * g["effect"],
        effect_unit=f"accuracy points of extra BN gain for sparse {nets}",
        interval=(100 * g["ci_low"], 100 * g["ci_high"]), p=g["pvalue"], n=g["n"], unit=unit,
        sentence=(f"BatchNorm raises sparse {nets}' test accuracy by {100 * g['effect']:+.1f} "
                  f"points more than dense {nets}' ({format_p(g['pvalue'])}, n = {g['n']} "
                  f"{unit} units); sparse beats dense (p < 0.05) in "
                  f"{shares['with BN']:.0%} of the cells with BatchNorm and "
                  f"{shares['without BN']:.0%} without"),
        paper=paper)


def verdicts(a: dict, scale: str) -> list:
    """The claim's :class:`gflib.verdict.Verdict` s at ``scale`` from :func:`analyse`'s
    ``a``: the direct BN-gain test (with the paper's form: sparse beats dense in most BN cells
    and not without), then the stability contrast."""
    g, st, shares = a["gain"], a["steadier"], a["shares"]["ours"]
    gain = gain_verdict(g, shares, scale)
    steady_ok = st["pvalue"] < 0.05 and st["effect"] > 0
    steady = Verdict(
        claim=3, scale=scale,
        status=("reproduced" if steady_ok else "not distinguishable"
                if st["ci_low"] <= 0 <= st["ci_high"] else "not reproduced"),
        effect=st["effect"], effect_unit="log10 units of flow steadiness gained, sparse - dense",
        interval=(st["ci_low"], st["ci_high"]), p=st["pvalue"], n=st["n"], unit=UNIT_NAME,
        sentence=(f"BatchNorm steadies the flow of sparse nets by {st['effect']:+.3f} log10 "
                  f"units more than that of dense nets ({format_p(st['pvalue'])})"),
        paper="BN variants show low, flat gradient flow; the others unstable flow")
    return [gain, steady]


UNIT = ("optimizer", "seed")
UNIT_NAME = "optimizer x seed"
"""The independent unit of the BN-gain and stability tests: comparisons that share an optimizer
and a seed share initial weights and masks, and widths and variants are fixed factors."""


def analyse(results, preset) -> dict:
    """Everything the BatchNorm chapter shows from one :class:`gflib.results.Results`.

    Keys: ``paired``; ``pvalues`` (H1 sparse > dense in test accuracy, optimizer x variant),
    ``n`` (pairs per cell), ``paper`` (the paper's table, same layout), ``agreement``
    (:func:`gflib.analysis.agreement`, cell by cell), ``shares``
    (:func:`significance_shares`, ours and the paper's); ``gains`` (per comparison, see
    :func:`bn_gains`), ``gain`` (:func:`gflib.analysis.unit_test` of the excess gain at the
    unit :data:`UNIT`), ``gain_by_width`` and ``gain_by_optimizer`` (the same within each dense
    width / optimizer); ``stability`` and ``flat`` (:func:`stability`), ``steadier`` (its unit
    test); ``verdicts``; ``n_runs``, ``n_diverged`` and ``diverged`` (diverged runs per cell).
    """
    s = settings(preset)
    layout = dict(index=list(s["optimizers"]), columns=list(s["variants"]))
    df = results.runs
    paired = pairs(df)
    table = sparse_vs_dense_table(paired, "optimizer", "variant")
    pvalues = table.reindex(**layout)
    paper = batchnorm_pvalues().reindex(**layout)
    gains = bn_gains(paired)
    stab, flat = stability(results)
    out = {
        "paired": paired, "pvalues": pvalues, "n": table.attrs["n"].reindex(**layout),
        "paper": paper, "agreement": agreement(pvalues, paper),
        "shares": pd.DataFrame({"ours": significance_shares(pvalues),
                                "paper": significance_shares(paper)}),
        "gains": gains, "gain": unit_test(gains, "excess", UNIT),
        "gain_by_width": effect_by(gains, "excess", UNIT, "dense_width"),
        "gain_by_optimizer": effect_by(gains, "excess", ["seed"], "optimizer"),
        "stability": stab, "flat": flat, "steadier": unit_test(flat, "steadier", UNIT),
        "n_runs": len(df), "n_diverged": int(df["diverged"].sum()),
        "diverged": paired.pivot_table(index="optimizer", columns="variant", values="diverged",
                                       aggfunc="sum").reindex(**layout),
    }
    out["verdicts"] = verdicts(out, preset.name)
    return out


def report(analysis: dict, label: str) -> None:
    """Show one stored summary: its p-value heat map above the paper's, the shares of
    significant cells, the BN gain by width, the stability table and its verdicts."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from .. import plots

    plots.pvalue_heatmaps({f"{label} (stored)": analysis["pvalues"],
                           "paper (Fashion-MNIST)": analysis["paper"]})
    plt.show()
    display(Markdown("Share of cells where sparse beats dense (p < 0.05):"),
            analysis["shares"].round(2),
            Markdown("Unsteadiness of flow (median std of log10 EGF2 over epochs):"),
            analysis["stability"].round(3))
    display(Markdown("Where the tables disagree: "
                     + disagreements(analysis["agreement"]) + "."))
    plots.effect_by_width(analysis["gain_by_width"], scale=100,
                          ylabel="extra BN gain, sparse - dense (points)")
    plt.show()
    show_verdicts(analysis["verdicts"])
