"""Chapter 1: SC-SDC pairs and Effective Gradient Flow (claims 1 and 2).

The grid: depths x optimizers x learning rates x SC-SDC dense widths x seeds, ReLU MLPs without
regularisation, the sparse and the dense member of every pair.
"""
from __future__ import annotations

import pandas as pd

from ..analysis import (beside_paper, blank_missing, correlation_summary, correlations,
                        margin_table, pair_grid, pairs, sparse_vs_dense_table, tau_margin)
from ..reference import STUDY_OPTIMIZERS, egf_correlations
from ..verdict import Verdict, show_verdicts

NAME = "sc_sdc_and_egf"
TITLE = "SC-SDC and Effective Gradient Flow"
CLAIMS = (1, 2)
SETTINGS = {"depths": (1, 2, 4), "optimizers": STUDY_OPTIMIZERS, "lrs": (0.001, 0.1)}
"""The study's depths, optimizers and learning rates."""
TRIMMED = {"depths": (1, 2), "optimizers": ("adam", "sgd"), "lrs": (0.1,)}
"""The reduced grid of a ``trim`` preset (smoke)."""


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    s = settings(preset)
    return pair_grid(preset, [dict(depth=d, optimizer=o, lr=lr) for d in s["depths"]
                              for o in s["optimizers"] for lr in s["lrs"]], device, data_dir)


def egf_verdict(summary: pd.DataFrame) -> dict:
    """Which measure has the largest mean |tau| for each (kind, target), and whether an EGF
    measure beats both baseline norms there.

    Returns ``{"sparse/test_acc": {"best": measure, "best_tau": float, "egf_best": bool,
    "egf_margin": best EGF |tau| - best baseline |tau|}, ...}``.
    """
    out = {}
    for kind, target in summary.columns:
        col = summary[(kind, target)].dropna()
        if col.empty:
            continue
        egf = col[[m for m in col.index if m.startswith("egf")]]
        base = col[[m for m in col.index if m in BASELINES["weights"]]]
        out[f"{kind}/{target}"] = {
            "best": col.idxmax(), "best_tau": float(col.max()),
            "egf_best": bool(egf.max() > base.max()),
            "egf_margin": float(egf.max() - base.max()),
        }
    return out


BASELINES = {"weights": ("gf_l1", "gf_l2"), "all gradients": ("gfall_l1", "gfall_l2")}
"""The gradient norm EGF is compared with: over the weight tensors (the default, as EGF covers
them) or over every trainable parameter's gradient (the study's "all gradients")."""


def margins(runs: pd.DataFrame) -> pd.DataFrame:
    """For each kind, target and baseline scope: the EGF margin with its interval
    (:func:`gflib.analysis.tau_margin`); one row each."""
    rows = []
    for kind in ("sparse", "dense"):
        for target in ("test_loss", "test_acc"):
            for scope, base in BASELINES.items():
                res = tau_margin(runs[runs["kind"] == kind], target, base=base)
                rows.append({"kind": kind, "target": target, "baseline": scope, **res})
    return pd.DataFrame(rows)


def verdict(m: pd.DataFrame, scale: str) -> Verdict:
    """Claim 2 at ``scale`` from :func:`margins` (sparse nets, the weights baseline):
    reproduced when the best EGF beats the best gradient norm, interval above 0, for both test
    loss and accuracy (the paper's form on Fashion-MNIST); partly for one of them; not
    distinguishable when the intervals cover 0; not reproduced when they lie below it."""
    rows = m[(m["kind"] == "sparse") & (m["baseline"] == "weights")].set_index("target")
    above = [t for t in rows.index if rows.loc[t, "ci_low"] > 0]
    below = [t for t in rows.index if rows.loc[t, "ci_high"] < 0]
    status = ("reproduced" if len(above) == len(rows) else "partly" if above
              else "not reproduced" if len(below) == len(rows) else "not distinguishable")
    acc, loss = rows.loc["test_acc"], rows.loc["test_loss"]
    return Verdict(
        claim=2, scale=scale, status=status, effect=acc["margin"],
        effect_unit="|tau| with test accuracy, best EGF - best gradient norm",
        interval=(acc["ci_low"], acc["ci_high"]), p=float("nan"), n=int(acc["n"]),
        unit="sparse runs, resampled within depth",
        sentence=(f"for sparse nets the best EGF measure ({acc['best_egf']}) tracks test accuracy "
                  f"{'better' if acc['margin'] > 0 else 'worse'} than the best gradient norm "
                  f"({acc['best_base']}) by {acc['margin']:+.3f} in mean |tau| "
                  f"(95 % CI {acc['ci_low']:+.3f} to {acc['ci_high']:+.3f}); for test loss the "
                  f"margin is {loss['margin']:+.3f} ({loss['ci_low']:+.3f} to "
                  f"{loss['ci_high']:+.3f})"),
        paper="on Fashion-MNIST EGF_1 tracks sparse nets best: |tau| .419 (loss) and .373 "
              "(accuracy) against .355 and .316 for the gradient L1 norm")


def construction_verdict(runs: pd.DataFrame, scale: str) -> Verdict:
    """Claim 1 at ``scale``: is each SC-SDC pair of the grid a same-capacity comparison?

    From the configs alone (no model is built but one, for the fan-in): every sparse MLP run must
    have its dense partner (:func:`gflib.analysis.pairs`), and layer by layer the sparse member's
    active weights (:func:`gflib.scsdc.layer_densities` times its layer sizes) must equal the
    dense partner's weight counts (:func:`gflib.scsdc.active_counts`); ``tests/test_scsdc.py``
    checks that the built masks hold exactly those counts. Reproduced when every pair matches;
    not reproduced when one does not (or a sparse run has no partner); not run without pairs.
    Effect: the mean number of active inputs a sparse hidden unit of the narrowest pair gets from
    the hidden layer before (:func:`gflib.scsdc.regime`, the deepest net of the grid; the
    expected ``ratio^2 * width`` when no net has two hidden layers). Fairness is argued from the
    construction, not measured: equal active weights do not make equal trainability."""
    import math

    from ..analysis import pairs
    from ..data import DATASETS
    from ..scsdc import active_counts, layer_densities, regime

    unit = "SC-SDC pairs (optimizer x lr x depth x width x seed)"
    mlp = runs[(runs["model"] == "mlp") & runs["dataset"].isin(list(DATASETS))]
    paired = pairs(mlp) if len(mlp) else mlp.iloc[:0]
    if paired.empty:
        return Verdict(claim=1, scale=scale, status="not run", effect=math.nan,
                       effect_unit="mean active inputs per sparse hidden unit", interval=(math.nan,
                       math.nan), p=math.nan, n=0, unit=unit,
                       sentence="no SC-SDC pair of MLPs on a known dataset in these runs")
    n_sparse = int(((mlp["kind"] == "sparse") & mlp["match_width"].notna()).sum())
    mismatched = 0
    for row in paired.itertuples():
        fan_in, fan_out = DATASETS[row.dataset].in_features, DATASETS[row.dataset].classes
        s, d, depth = int(row.sparse_width), int(row.dense_width), int(row.depth)
        sparse_sizes = active_counts(fan_in, fan_out, depth, s)
        sparse_active = [round(r * n) for r, n in
                         zip(layer_densities(fan_in, fan_out, depth, s, d), sparse_sizes)]
        mismatched += sparse_active != active_counts(fan_in, fan_out, depth, d)
    unpaired = n_sparse - len(paired)
    ok = mismatched == 0 and unpaired == 0
    narrow = paired.loc[paired["dense_width"].idxmin()]
    fan_in, fan_out = (DATASETS[narrow["dataset"]].in_features,
                       DATASETS[narrow["dataset"]].classes)
    s, d = int(narrow["sparse_width"]), int(narrow["dense_width"])
    depth = int(paired["depth"].max())
    mean_fan_in = (float(regime(fan_in, fan_out, depth, s, [d])["mean_fan_in"].iloc[0])
                   if depth >= 2 else (d / s) ** 2 * s)
    return Verdict(
        claim=1, scale=scale, status="reproduced" if ok else "not reproduced",
        effect=mean_fan_in,
        effect_unit=f"mean active inputs per sparse hidden unit, narrowest pair ({d} of {s})",
        interval=(math.nan, math.nan), p=math.nan, n=len(paired), unit=unit,
        sentence=(f"{len(paired) - mismatched} of {len(paired)} sparse members match their dense "
                  f"partners' active weight counts layer by layer"
                  + (f" and {unpaired} sparse runs have no partner" if unpaired else "")
                  + f"; in the narrowest pair a sparse hidden unit keeps {mean_fan_in:.1f} active "
                  f"inputs on average. This fairness is argued from the construction, not "
                  f"measured: equal active weights need not mean equal trainability"),
        paper="SC-SDC is argued fair because each pair has equal active weights per layer; "
              "its narrowest pair (308 of 3076 units) leaves a sparse hidden unit ~31 active "
              "inputs")


def analyse(results, preset) -> dict:
    """Everything the chapter shows from one :class:`gflib.results.Results` (live or stored).

    Keys: ``corr`` (per-depth Kendall taus with CIs), ``pooled`` (the same over all depths),
    ``summary`` (mean |tau| per measure x (kind, target)), ``paper`` (the paper's |tau| table
    for the preset's dataset), ``beside`` (ours next to the paper's), ``margins`` (:func:`margins`), ``verdict`` (:func:`egf_verdict`, the best measure
    per column), ``verdicts`` (:func:`construction_verdict` for claim 1, then :func:`verdict`
    for claim 2), ``paired``, ``pvalues`` and ``mann_whitney``
    (``{lr: table}``: H1 sparse > dense test accuracy, optimizer x depth, per learning rate),
    ``n_runs``, ``n_diverged``.
    """
    runs = results.runs
    corr = correlations(runs)
    summary = correlation_summary(corr)
    paired = pairs(runs)
    m = margins(runs)
    paper = egf_correlations(preset.dataset)
    return {
        "corr": corr, "pooled": correlations(runs, group_by=()), "summary": summary,
        "paper": paper, "beside": beside_paper(summary, paper),
        "margins": m, "verdict": egf_verdict(summary),
        "verdicts": [construction_verdict(runs, preset.name), verdict(m, preset.name)],
        "paired": paired,
        "pvalues": {lr: sparse_vs_dense_table(g, "optimizer", "depth")
                    for lr, g in paired.groupby("lr")},
        "mann_whitney": {lr: sparse_vs_dense_table(g, "optimizer", "depth", matched=False)
                         for lr, g in paired.groupby("lr")},
        "n_runs": len(runs), "n_diverged": int(runs["diverged"].sum()),
    }


def report(analysis: dict, label: str) -> None:
    """Show one stored summary's table beside the paper's, its |tau| forest plot for sparse
    and dense nets (:func:`gflib.plots.tau_forest`, pooled over depths) and its verdict."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .. import plots

    display(blank_missing(analysis["beside"]))
    if "paper" in analysis:
        fig = plots.tau_forest(analysis["pooled"], analysis["paper"],
                               title=f"{label}: pooled over depths")
        display(fig)
        plt.close(fig)
    display(margin_table(analysis["margins"]))
    show_verdicts(analysis["verdicts"])
