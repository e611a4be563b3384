"""Chapter 1: SC-SDC pairs and Effective Gradient Flow (claims 1 and 2).

The grid: depths x optimizers x learning rates x SC-SDC dense widths x seeds, ReLU MLPs without
regularisation, the sparse and the dense member of every pair.
"""
from __future__ import annotations

import pandas as pd

from ..analysis import (beside_paper, correlation_summary, correlations, pair_grid, pairs,
                        sparse_vs_dense_table, tau_margin)
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


def analyse(results, preset) -> dict:
    """Everything the chapter shows from one :class:`gflib.results.Results` (live or stored).

    Keys: ``corr`` (per-depth Kendall taus with CIs), ``pooled`` (the same over all depths),
    ``summary`` (mean |tau| per measure x (kind, target)), ``beside`` (ours next to the
    paper's), ``margins`` (:func:`margins`), ``verdict`` (:func:`egf_verdict`, the best measure
    per column), ``verdicts`` (:func:`verdict`), ``paired``, ``pvalues`` and ``mann_whitney``
    (``{lr: table}``: H1 sparse > dense test accuracy, optimizer x depth, per learning rate),
    ``n_runs``, ``n_diverged``.
    """
    runs = results.runs
    corr = correlations(runs)
    summary = correlation_summary(corr)
    paired = pairs(runs)
    m = margins(runs)
    return {
        "corr": corr, "pooled": correlations(runs, group_by=()), "summary": summary,
        "beside": beside_paper(summary, egf_correlations(preset.dataset)),
        "margins": m, "verdict": egf_verdict(summary), "verdicts": [verdict(m, preset.name)],
        "paired": paired,
        "pvalues": {lr: sparse_vs_dense_table(g, "optimizer", "depth")
                    for lr, g in paired.groupby("lr")},
        "mann_whitney": {lr: sparse_vs_dense_table(g, "optimizer", "depth", matched=False)
                         for lr, g in paired.groupby("lr")},
        "n_runs": len(runs), "n_diverged": int(runs["diverged"].sum()),
    }


def report(analysis: dict, label: str) -> None:
    """Show one stored summary's table beside the paper's and its verdict."""
    from IPython.display import display

    display(analysis["beside"].round(3))
    display(analysis["margins"].round(3))
    show_verdicts(analysis["verdicts"])
