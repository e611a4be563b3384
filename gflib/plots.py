"""The figures the chapters share. Each function returns a matplotlib Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

SPARSE_STYLE = dict(marker="o", linestyle="-", color="tab:red", label="sparse")
DENSE_STYLE = dict(marker="s", linestyle="--", color="tab:blue", label="dense")


def active_weights_bars(sparse_counts, dense_counts, sparse_totals, labels=None):
    """Bars per layer: the sparse net's active weights, the dense net's weights (equal under
    SC-SDC) and, hatched, the sparse net's full weight count. Counts are per layer, input first."""
    n = len(dense_counts)
    labels = labels or [f"layer {i + 1}" for i in range(n)]
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.bar(x - 0.27, sparse_totals, 0.27, color="white", edgecolor="tab:red", hatch="//",
           label="sparse: all weights")
    ax.bar(x, sparse_counts, 0.27, color="tab:red", label="sparse: active weights")
    ax.bar(x + 0.27, dense_counts, 0.27, color="tab:blue", label="dense: weights")
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_ylabel("weights (log)")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def metric_vs_width(paired: pd.DataFrame, panels: str, metrics=("test_acc", "mean_egf_l2"),
                    log_metrics=("mean_egf_l2", "mean_egf_l1", "mean_gf_l1", "mean_gf_l2")):
    """One column per value of ``panels`` (e.g. optimizer), one row per metric: the median over
    seeds (and any other config) of the sparse and the dense member against the dense width.
    Flow measures are drawn on a log axis."""
    keys = sorted(paired[panels].unique(), key=str)
    fig, axes = plt.subplots(len(metrics), len(keys), figsize=(2.6 * len(keys), 2.3 * len(metrics)),
                             squeeze=False, sharex=True)
    for j, key in enumerate(keys):
        g = paired[paired[panels] == key]
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            for kind, style in (("sparse", SPARSE_STYLE), ("dense", DENSE_STYLE)):
                med = g.groupby("dense_width")[f"{metric}_{kind}"].median()
                ax.plot(med.index, med.values, **style)
            if metric in log_metrics:
                ax.set_yscale("log")
            if i == 0:
                ax.set_title(str(key), fontsize=9)
            if j == 0:
                ax.set_ylabel(metric.replace("mean_", "avg ").replace("_", " "), fontsize=9)
            if i == len(metrics) - 1:
                ax.set_xlabel("dense width")
    axes[0, 0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def pvalue_heatmap(table: pd.DataFrame, title: str = "", alpha: float = 0.05, ax=None):
    """A heat map of p-values with their values written in; bold where p < ``alpha``."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(0.9 * table.shape[1] + 1.5, 0.45 * table.shape[0] + 1.2))
    values = table.to_numpy(dtype=float)
    ax.imshow(values, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=45, ha="right")
    ax.set_yticks(range(table.shape[0]), [str(r) for r in table.index])
    for (i, j), v in np.ndenumerate(values):
        text = "n/a" if np.isnan(v) else f"{v:.3f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                fontweight="bold" if v < alpha else "normal")
    ax.set_title(title, fontsize=10)
    if own:
        fig.tight_layout()
        return fig
    return ax.figure


def flow_over_training(curves: pd.DataFrame, by: str, label_of=str):
    """EGF against epoch, one line per run, coloured by ``by``; ``curves`` has columns
    ``epoch``, ``value``, ``key`` (the run) and ``by`` (:meth:`gflib.results.Results.curve_table`).
    Log y."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    colours = dict(zip(sorted(curves[by].unique(), key=str), plt.cm.tab10.colors))
    for (run, key), g in curves.groupby(["key", by]):
        ax.plot(g["epoch"], g["value"], color=colours[key], alpha=0.35, linewidth=1)
    for key, colour in colours.items():
        ax.plot([], [], color=colour, label=label_of(key))
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("EGF (L2)")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def effect_by_width(table: pd.DataFrame, scale: float = 1.0, ylabel: str = "effect"):
    """An effect and its interval against the dense width: ``table`` indexed by dense width with
    columns ``effect``, ``ci_low``, ``ci_high`` (:func:`gflib.analysis.effect_by`), each
    multiplied by ``scale``; a dashed line at 0."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    x = np.asarray(table.index, dtype=float)
    y = scale * table["effect"].to_numpy(dtype=float)
    low = y - scale * table["ci_low"].to_numpy(dtype=float)
    high = scale * table["ci_high"].to_numpy(dtype=float) - y
    ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=4, color="tab:red")
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("dense width")
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


ACTIVATION_COLOURS = {"relu": "tab:blue", "prelu": "tab:orange", "elu": "tab:green",
                      "swish": "tab:red", "srelu": "tab:purple", "sigmoid": "tab:brown"}
