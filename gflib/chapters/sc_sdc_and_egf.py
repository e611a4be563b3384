"""Chapter 1: SC-SDC pairs and Effective Gradient Flow (claims 1 and 2).

The grid: depths x optimizers x learning rates x SC-SDC dense widths x seeds, ReLU MLPs without
regularisation, the sparse and the dense member of every pair.
"""
from __future__ import annotations

import pandas as pd

from ..analysis import (beside_paper, correlation_summary, correlations, pair_grid, pairs,
                        sparse_vs_dense_table)
from ..reference import STUDY_OPTIMIZERS, egf_correlations

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
        base = col[[m for m in col.index if m.startswith("gf")]]
        out[f"{kind}/{target}"] = {
            "best": col.idxmax(), "best_tau": float(col.max()),
            "egf_best": bool(egf.max() > base.max()),
            "egf_margin": float(egf.max() - base.max()),
        }
    return out


def analyse(results, preset) -> dict:
    """Everything the chapter shows from one :class:`gflib.results.Results` (live or stored).

    Keys: ``corr`` (per-depth Kendall taus with CIs), ``summary`` (mean |tau| per measure x
    (kind, target)), ``beside`` (ours next to the paper's), ``verdict`` (:func:`egf_verdict`),
    ``paired``, ``pvalues`` (H1 sparse > dense test accuracy, optimizer x depth), ``n_runs``,
    ``n_diverged``.
    """
    runs = results.runs
    corr = correlations(runs)
    summary = correlation_summary(corr)
    paired = pairs(runs)
    return {
        "corr": corr, "summary": summary,
        "beside": beside_paper(summary, egf_correlations(preset.dataset)),
        "verdict": egf_verdict(summary), "paired": paired,
        "pvalues": sparse_vs_dense_table(paired, "optimizer", "depth"),
        "n_runs": len(runs), "n_diverged": int(runs["diverged"].sum()),
    }


def verdict_sentence(verdict: dict, scale: str) -> str:
    """The chapter's verdict in words, from :func:`egf_verdict`, for the sparse rows."""
    parts = []
    for key, v in verdict.items():
        kind, target = key.split("/")
        if kind != "sparse":
            continue
        word = "beats" if v["egf_best"] else "does not beat"
        parts.append(f"for sparse nets and test {target.split('_')[1]}, the best measure is "
                     f"{v['best']} (mean |tau| = {v['best_tau']:.3f}); EGF {word} the gradient "
                     f"norm (margin {v['egf_margin']:+.3f})")
    return f"At the `{scale}` scale, " + "; ".join(parts) + "."


def verdict_table(verdicts: dict, kind: str = "sparse") -> pd.DataFrame:
    """The verdicts at several scales side by side: one row per scale (the keys of
    ``verdicts``, each an :func:`egf_verdict`), columns ``"<target>: best"`` and
    ``"<target>: egf_margin"`` for the nets of ``kind``."""
    return pd.DataFrame({
        scale: {f"{key.split('/')[1]}: {field}": v[field] for key, v in verdict.items()
                if key.startswith(f"{kind}/") for field in ("best", "egf_margin")}
        for scale, verdict in verdicts.items()}).T


def report(analysis: dict, label: str) -> None:
    """Show one stored summary's table beside the paper's and its verdict."""
    from IPython.display import Markdown, display

    display(analysis["beside"].round(3))
    display(Markdown("**Verdict:** " + verdict_sentence(analysis["verdict"], label)))
