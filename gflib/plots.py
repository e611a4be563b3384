"""The figures the chapters share. Each function returns a matplotlib Figure."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
import textwrap

import matplotlib.pyplot as plt
from matplotlib import patheffects
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
import numpy as np
import pandas as pd

from .analysis import label as name_of
from .flow import MODEL

BOOK_RC = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9,
           "ytick.labelsize": 9, "legend.fontsize": 9, "figure.dpi": 100, "savefig.dpi": 150,
           "svg.fonttype": "path"}
"""What :func:`book_style` sets: text of at least 9 pt, 150 dpi for any raster output, and SVG
text as paths (the page needs no fonts)."""

MIN_POINTS = 9
"""The smallest font size (pt) of ticks, labels, titles and legends in these figures; text
written inside heat-map cells may go down to :data:`MIN_CELL_POINTS`."""
MIN_CELL_POINTS = 8
MAX_WIDTH = 9.0
"""The widest figure (inches): wider ones are shrunk on a book page, and their text with them."""


def book_style(formats=("svg",)) -> tuple:
    """Make the figures of a notebook legible and crisp: :data:`BOOK_RC`, and, inside IPython
    (a book chapter executed by myst-nb, papermill, Jupyter), inline figures as ``formats``
    (default SVG: vector, sharp at any zoom; myst-nb's HTML output prefers image/svg+xml to
    image/png). Equivalent to ``%config InlineBackend.figure_formats = ['svg']``, kept across
    later backend set-ups. Call it once in a chapter's first code cell. Returns the formats set
    (empty outside IPython)."""
    import matplotlib

    matplotlib.rcParams.update(BOOK_RC)
    try:
        from IPython import get_ipython
    except ImportError:
        return ()
    shell = get_ipython()
    if shell is None:
        return ()
    shell.run_line_magic("config", f"InlineBackend.figure_formats = {list(formats)!r}")
    return tuple(formats)


_GLUE_PREFIX: ContextVar = ContextVar("glue_prefix", default=None)


@contextmanager
def glued(prefix: str):
    """Inside, :func:`show` glues figures for myst-nb instead of displaying them: figure
    ``key`` as ``{prefix}_{key}`` and its caption (Markdown) as ``{prefix}_{key}_caption``, so
    that the page numbers and captions it with a ``{glue:figure}`` directive whose caption is
    ``{glue:md}`{prefix}_{key}_caption```."""
    token = _GLUE_PREFIX.set(prefix)
    try:
        yield
    finally:
        _GLUE_PREFIX.reset(token)


def show(fig, key: str, caption: str) -> None:
    """Show a report's figure with its ``caption`` (Markdown: what the figure finds) in a
    notebook, then close it: displayed with the caption in italics below it, or glued under
    ``key`` inside :func:`glued`."""
    from IPython.display import Markdown, display

    prefix = _GLUE_PREFIX.get()
    if prefix is None:
        display(fig, Markdown(f"*{caption}*"))
    else:
        from myst_nb import glue

        glue(f"{prefix}_{key}", fig, display=False)
        glue(f"{prefix}_{key}_caption", Markdown(caption), display=False)
    plt.close(fig)


LOG_SUBS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
"""Where a log axis spanning less than a decade gets its ticks (times a power of 10)."""


def _short_log_ticks(axis) -> None:
    """On a log ``axis`` spanning less than a decade, plain labels at :data:`LOG_SUBS` (0.15,
    0.2, 0.3) instead of matplotlib's labelled minor ticks (1.5 x 10^-1, 1.6 x 10^-1, ...), which
    run into each other on a small panel."""
    low, high = sorted(axis.get_view_interval())
    if axis.get_scale() != "log" or low <= 0 or np.log10(high / low) >= 1:
        return
    axis.set_major_locator(LogLocator(subs=LOG_SUBS))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _legible(fig):
    """Raise every text of ``fig`` below :data:`MIN_POINTS` to it (text inside axes, such as
    heat-map cell values, to :data:`MIN_CELL_POINTS`); label short log axes plainly
    (:func:`_short_log_ticks`); returns ``fig``."""
    for ax in fig.axes:
        _short_log_ticks(ax.xaxis)
        _short_log_ticks(ax.yaxis)
        inside = set(map(id, ax.texts))
        for text in ax.findobj(plt.Text):
            low = MIN_CELL_POINTS if id(text) in inside else MIN_POINTS
            if text.get_text() and text.get_fontsize() < low:
                text.set_fontsize(low)
    for text in fig.texts:
        if text.get_fontsize() < MIN_POINTS:
            text.set_fontsize(MIN_POINTS)
    return fig


LABELS = {"test_acc": "test accuracy", "test_loss": "test loss (nats)",
          "train_acc": "training accuracy", "train_loss": "training loss (nats)",
          "mean_egf_l1": "average EGF$_1$", "mean_egf_l2": "average EGF$_2$",
          "mean_gf_l1": "average $\\|g\\|_1$", "mean_gf_l2": "average $\\|g\\|_2$",
          "mean_gfall_l1": "average $\\|g\\|_1$, all parameters",
          "mean_gfall_l2": "average $\\|g\\|_2$, all parameters"}
"""Axis labels in words for the run table's columns (:func:`label`)."""


def label(column: str) -> str:
    """An axis label in words for a run-table column (:data:`LABELS`; else the name with spaces)."""
    return LABELS.get(column, column.replace("_", " "))


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
    ax.legend(fontsize=9, frameon=False)
    fig.tight_layout()
    return _legible(fig)


def metric_vs_width(paired: pd.DataFrame, panels: str, metrics=("test_acc", "mean_egf_l2"),
                    log_metrics=("mean_egf_l2", "mean_egf_l1", "mean_gf_l1", "mean_gf_l2")):
    """One column per value of ``panels`` (e.g. optimizer), one row per metric: the median over
    seeds (and any other config) of the sparse and the dense member against the dense width.
    Flow measures are drawn on a log axis."""
    keys = sorted(paired[panels].unique(), key=str)
    fig, axes = plt.subplots(len(metrics), len(keys), squeeze=False, sharex=True,
                             figsize=(min(MAX_WIDTH, 2.6 * len(keys)), 2.3 * len(metrics)))
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
                ax.set_ylabel(label(metric), fontsize=9)
            if i == len(metrics) - 1:
                ax.set_xlabel("dense width")
    axes[0, 0].legend(fontsize=9, frameon=False)
    fig.tight_layout()
    return _legible(fig)


def difference_vs_width(paired: pd.DataFrame, lines: str = "optimizer", panels: str = "lr",
                        metric: str = "test_acc", scale: float = 100.0,
                        ylabel: str = "sparse - dense test accuracy (points)", panel_label=None):
    """The SC-SDC comparison in one picture: per panel (each value of ``panels``, e.g. the
    learning rate), one line per value of ``lines`` (e.g. optimizer, named as the book writes
    them): the median over seeds of the sparse member's ``metric`` minus its dense partner's
    (times ``scale``) against the dense width; a dashed line at 0 (above it sparse wins).
    ``panel_label``: a panel's title from its value (default ``"<panels> <value>"``)."""
    keys = sorted(paired[panels].unique(), key=str) if len(paired) else []
    fig, axes = plt.subplots(1, max(1, len(keys)), squeeze=False, sharey=True,
                             figsize=(min(MAX_WIDTH, 3.6 * max(1, len(keys)) + 1.6), 3.2))
    groups = sorted(paired[lines].unique(), key=str) if len(paired) else []
    colours = dict(zip(groups, plt.cm.tab10.colors))
    for ax, key in zip(axes[0], keys):
        g = paired[paired[panels] == key].assign(
            diff=lambda d: scale * (d[f"{metric}_sparse"] - d[f"{metric}_dense"]))
        for value, h in g.groupby(lines):
            med = h.groupby("dense_width")["diff"].median()
            ax.plot(med.index, med.values, marker="o", color=colours[value],
                    label=name_of(str(value)))
        ax.axhline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_title(panel_label(key) if panel_label else f"{panels} {key:g}"
                     if isinstance(key, float) else f"{panels} {key}", fontsize=9)
        ax.set_xlabel("dense width")
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize=9, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return _legible(fig)


P_CMAP = "RdYlGn_r"
"""The p-value colour scale: 0 green, 1 red."""

SIGNIFICANT_GID = "significant"
"""The ``gid`` of the outline drawn around each cell with p < alpha (tests and readers find the
outlines by it)."""


def _p_label(alpha: float, what: str = "p-value") -> str:
    return f"{what}  (outlined, *: p < {alpha:g})"


def pvalue_heatmap(table: pd.DataFrame, title: str = "", alpha: float = 0.05, ax=None,
                   colorbar: bool | None = None):
    """A heat map of p-values (0 green to 1 red) with their values written in; a cell with
    p < ``alpha`` gets a thick black outline and an asterisk after its value (both survive
    resizing and greyscale printing). ``colorbar``: draw the 0..1 colour bar (default: when
    this function makes the figure). Cells are drawn as vector quads (no resampled image)."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(min(8.0, 0.8 * table.shape[1] + 3.2),
                                        0.42 * table.shape[0] + 1.6), layout="constrained")
    values = table.to_numpy(dtype=float)
    mesh = ax.pcolormesh(np.ma.masked_invalid(values), cmap=P_CMAP, vmin=0, vmax=1,
                         edgecolors="white", linewidth=0.5)
    ax.set_xlim(0, values.shape[1])
    ax.set_ylim(values.shape[0], 0)
    columns = [str(c) for c in table.columns]
    slanted = max(map(len, columns), default=0) > 3
    ax.set_xticks(np.arange(table.shape[1]) + 0.5, columns, rotation=40 if slanted else 0,
                  ha="right" if slanted else "center", rotation_mode="anchor")
    ax.set_yticks(np.arange(table.shape[0]) + 0.5, [str(r) for r in table.index])
    ax.tick_params(labelsize=9, length=0)
    if table.columns.name:
        ax.set_xlabel(str(table.columns.name), fontsize=9)
    for (i, j), v in np.ndenumerate(values):
        significant = bool(v < alpha)  # NaN compares False
        text = "n/a" if np.isnan(v) else f"{v:.3f}" + ("*" if significant else "")
        ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=9,
                fontweight="bold" if significant else "normal",
                color="white" if (v < 0.12 or v > 0.88) else "black")
        if significant:
            ax.add_patch(plt.Rectangle(  # black with a white rim: seen on dark and light cells
                (j + 0.07, i + 0.1), 0.86, 0.8, fill=False, edgecolor="black", linewidth=2.2,
                gid=SIGNIFICANT_GID,
                path_effects=[patheffects.Stroke(linewidth=4.4, foreground="white"),
                              patheffects.Normal()]))
    ax.set_title(title, fontsize=10)
    if colorbar or (colorbar is None and own):
        ax.figure.colorbar(mesh, ax=ax, label=_p_label(alpha), shrink=0.9)
    return _legible(ax.figure)


def flow_spread(spread: pd.DataFrame, value: str = "spread"):
    """Box plots of ``value`` (e.g. the spread of log10 average flow across dense widths,
    :func:`gflib.analysis.flow_across_widths`) for sparse and dense nets, without and with
    BatchNorm (``spread``'s boolean column ``bn``), each unit's value drawn as a point."""
    groups = [(kind, bn) for kind in ("sparse", "dense") for bn in (False, True)]
    data = [spread[(spread["kind"] == k) & (spread["bn"] == b)][value].to_numpy(float)
            for k, b in groups]
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.boxplot(data, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, (values, (kind, _)) in enumerate(zip(data, groups), start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=10, alpha=0.6,
                   color="tab:red" if kind == "sparse" else "tab:blue")
    ax.set_xticks(range(1, 5), [f"{k}\n{'with' if b else 'without'} BN" for k, b in groups])
    ax.set_ylabel("spread of log$_{10}$ avg EGF$_2$\nacross widths")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    return _legible(fig)


def flow_over_training(curves: pd.DataFrame, by: str, label_of=str, quantiles=(0.25, 0.75)):
    """EGF against epoch, one line per value of ``by``: the median over that group's runs at
    each scheduled epoch, with the band between the ``quantiles`` (default 25-75 %) shaded;
    ``curves`` has columns ``epoch``, ``value``, ``key`` (the run) and ``by``
    (:meth:`gflib.results.Results.curve_table`). Non-positive and missing values (a diverged
    run's) are left out. Log y. The legend gives each group's number of runs."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    curves = curves[np.isfinite(curves["value"]) & (curves["value"] > 0)]
    groups = sorted(curves[by].unique(), key=str)
    colours = dict(zip(groups, plt.cm.tab10.colors))
    low_q, high_q = quantiles
    for key in groups:
        g = curves[curves[by] == key].groupby("epoch")["value"]
        med, low, high = g.median(), g.quantile(low_q), g.quantile(high_q)
        n = curves.loc[curves[by] == key, "key"].nunique()
        ax.fill_between(med.index, low.values, high.values, color=colours[key], alpha=0.25,
                        linewidth=0)
        ax.plot(med.index, med.values, color=colours[key], marker=".", linewidth=1.8,
                label=f"{label_of(key)} (median of {n} runs)")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("EGF (L2)")
    ax.legend(fontsize=9, frameon=False,
              title=f"band: {100 * low_q:.0f}-{100 * high_q:.0f} % of runs", title_fontsize=9)
    fig.tight_layout()
    return _legible(fig)


TARGET_LABELS = {"test_loss": "test loss", "test_acc": "test accuracy"}
OURS_STYLE = dict(marker="o", color="tab:blue", linestyle="none", markersize=6)
PAPER_STYLE = dict(marker="D", markerfacecolor="white", markeredgecolor="tab:orange",
                   markeredgewidth=1.8, linestyle="none", markersize=7)


def tau_forest(depth_mean: pd.DataFrame, paper: pd.DataFrame | None = None,
               kinds=("sparse", "dense"), targets=("test_loss", "test_acc"), title: str = "",
               paper_label: str = "paper (no interval given)"):
    """The paper's table as a figure: mean |Kendall tau| over depths of each flow measure with
    each target, one row of panels per kind of net, one panel per target, one line per measure
    (gf_*, egf_*, then gfall_* when present): ours (``depth_mean``:
    :func:`gflib.correlations.egf_margins`' second table, columns ``kind``, ``target``,
    ``measure``, ``abs_tau``, ``ci_low``, ``ci_high``) as a dot with its 95 % bootstrap
    interval, the paper's (``paper``: :func:`gflib.reference.egf_correlations`, rows measure,
    columns (kind, target)) as an open diamond, without interval (it gave none)."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    c = depth_mean[depth_mean["kind"].isin(kinds)]
    order = [m for m in ("gf_l1", "gf_l2", "egf_l1", "egf_l2", "gfall_l1", "gfall_l2")
             if m in set(c["measure"])]
    order += [m for m in dict.fromkeys(c["measure"]) if m not in order]
    fig, axes = plt.subplots(len(kinds), len(targets), squeeze=False, sharey=True, sharex=True,
                             figsize=(min(MAX_WIDTH, 3.4 * len(targets) + 1.0),
                                      len(kinds) * (0.42 * len(order) + 0.9) + 0.6))
    y = np.arange(len(order))
    for row, kind in zip(axes, kinds):
        for ax, target in zip(row, targets):
            t = c[(c["kind"] == kind) & (c["target"] == target)].set_index("measure").reindex(order)
            point = t["abs_tau"].to_numpy(float)
            err = np.clip([point - t["ci_low"].to_numpy(float),
                           t["ci_high"].to_numpy(float) - point], 0, None)
            ax.errorbar(point, y, xerr=err, capsize=3, label="ours, 95 % interval", **OURS_STYLE)
            if paper is not None and (kind, target) in paper.columns:
                ref = paper[(kind, target)].reindex(order).to_numpy(dtype=float)
                ax.plot(ref, y, label=paper_label, **PAPER_STYLE)
            ax.set_xlim(0, 1)
            ax.set_yticks(y, order)
            ax.set_ylim(len(order) - 0.5, -0.5)
            ax.grid(axis="x", alpha=0.3)
            ax.set_title(f"{kind} nets: {TARGET_LABELS.get(target, target)}", fontsize=10)
    for ax, target in zip(axes[-1], targets):
        ax.set_xlabel(f"mean |tau| over depths, {TARGET_LABELS.get(target, target)}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=9, frameon=False, loc="lower center", ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / fig.get_size_inches()[1], 1, 1))
    return _legible(fig)


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
    return _legible(fig)


ACTIVATION_COLOURS = {"relu": "tab:blue", "prelu": "tab:orange", "elu": "tab:green",
                      "swish": "tab:red", "srelu": "tab:purple", "sigmoid": "tab:brown"}


def activation_curves(curves: pd.DataFrame):
    """Two panels: each activation's value and its slope against ``x``, from
    :func:`gflib.activations.curves` (columns ``activation``, ``x``, ``value``, ``slope``);
    where a slope is negative the slope panel is shaded below 0."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 3.3), sharex=True)
    for name, g in curves.groupby("activation", sort=False):
        colour = ACTIVATION_COLOURS.get(name)
        left.plot(g["x"], g["value"], color=colour, label=name, linewidth=1.5)
        right.plot(g["x"], g["slope"], color=colour, linewidth=1.5)
        negative = g["slope"] < 0
        if negative.any():
            right.fill_between(g["x"], g["slope"].where(negative, 0.0), 0.0, color=colour,
                               alpha=0.25)
    for ax, label in ((left, "f(x)"), (right, "f'(x)")):
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("pre-activation x")
        ax.set_ylabel(label)
    left.set_ylim(-2, 5)
    left.legend(fontsize=9, frameon=False)
    fig.tight_layout()
    return _legible(fig)


def pvalue_heatmaps(tables: dict, alpha: float = 0.05, label: str = "p (H1: sparse > dense)"):
    """:func:`pvalue_heatmap` of each ``{title: table}``, one above the other in the given order
    (ours first, then the paper's), on one colour scale (0 green to 1 red) with one colour bar
    whose label says what the outline means; at most 8 inches wide, so it shows near 1:1."""
    rows = [t.shape[0] for t in tables.values()]
    cols = max(t.shape[1] for t in tables.values())
    fig, axes = plt.subplots(len(tables), 1, squeeze=False, layout="constrained",
                             height_ratios=[r + 0.8 for r in rows],
                             figsize=(min(8.0, 0.8 * cols + 3.2),
                                      sum(0.42 * r + 1.3 for r in rows)))
    for ax, (title, table) in zip(axes[:, 0], tables.items()):
        pvalue_heatmap(table, title, alpha=alpha, ax=ax, colorbar=False)
    names = [str(t.columns.name) for t in tables.values() if t.columns.name]
    for ax in axes[:-1, 0]:
        ax.set_xlabel("")
    if names:
        axes[-1, 0].set_xlabel(names[0], fontsize=9)
    scale = plt.cm.ScalarMappable(cmap=P_CMAP, norm=plt.Normalize(0, 1))
    fig.colorbar(scale, ax=list(axes[:, 0]), label=_p_label(alpha, label), shrink=0.8)
    return _legible(fig)


def by_activation(table: pd.DataFrame, ylabel: str, low=None, high=None, ax=None):
    """Bars per activation (``table``'s rows, named as the book writes them), sparse (red) beside
    dense (blue) (its columns ``sparse``, ``dense``), from 0; ``low``/``high``: tables of the
    same layout giving an interval, drawn as error bars."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6, 3))
    x = np.arange(len(table))
    for i, (kind, colour) in enumerate((("sparse", "tab:red"), ("dense", "tab:blue"))):
        if kind not in table:
            continue
        y = table[kind].to_numpy(dtype=float)
        err = None
        if low is not None and high is not None:
            err = np.clip([y - low[kind].to_numpy(dtype=float),
                           high[kind].to_numpy(dtype=float) - y], 0, None)
        ax.bar(x + (i - 0.5) * 0.38, y, 0.38, color=colour, label=kind, yerr=err, capsize=3)
    ax.set_xticks(x, [name_of(str(i)) for i in table.index])
    ax.set_ylabel(ylabel, fontsize=9)
    ax.axhline(0, color="grey", linewidth=0.8)
    low_edge = min(0.0, np.nanmin(ax.get_ylim()))
    ax.set_ylim(bottom=low_edge)
    ax.legend(fontsize=9, frameon=False)
    if own:
        fig.tight_layout()
    return _legible(ax.figure)


def tau_by_activation(corr: pd.DataFrame, measure: str = "egf_l2", target: str = "test_acc",
                      order=None):
    """Kendall tau of ``measure`` with ``target`` per activation (in ``order``; default as
    found), sparse beside dense, with bootstrap intervals, from
    :func:`gflib.analysis.correlations` grouped by activation."""
    c = corr[(corr["measure"] == measure) & (corr["target"] == target)]
    order = list(dict.fromkeys(c["activation"]) if order is None else order)
    tables = [c.pivot(index="activation", columns="kind", values=v).reindex(order)
              for v in ("tau", "ci_low", "ci_high")]
    fig = by_activation(tables[0], f"Kendall tau, {label('mean_' + measure)} with "
                                   f"{TARGET_LABELS.get(target, target)}", low=tables[1],
                        high=tables[2])
    fig.axes[0].set_ylim(-1.05, 1.05)
    return _legible(fig)


def negative_flow(table: pd.DataFrame):
    """Two panels from :func:`gflib.chapters.activations.negative_flow_table` (columns
    (quantity, kind), fractions): the share of pre-activations where the slope is negative and
    the share of the gradient's L1 norm through them, in %, sparse beside dense."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3))
    by_activation(100 * table["neg_share"], "% of pre-activations with f' < 0", ax=axes[0])
    by_activation(100 * table["neg_grad_share"], "% of |dC/dz| through them", ax=axes[1])
    for ax in axes:
        ax.tick_params(axis="x", labelsize=9)
    fig.tight_layout()
    return _legible(fig)


def negflow_margin(cells: pd.DataFrame):
    """One point per optimizer x activation cell
    (:func:`gflib.chapters.activations.negative_flow_cells`): the share of its sparse nets'
    |dC/dz| through negative slopes (%) against its median sparse - dense accuracy (points), one
    colour per activation (named as the book writes them)."""
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for activation, g in cells.groupby("activation", sort=False):
        ax.scatter(100 * g["neg_grad_share"], 100 * g["margin"], s=30,
                   color=ACTIVATION_COLOURS.get(activation), label=name_of(activation))
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("% of sparse nets' |dC/dz| through negative slopes")
    ax.set_ylabel("sparse - dense accuracy (points)")
    ax.legend(fontsize=9, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return _legible(fig)


def width_panels(paired: pd.DataFrame, panels: str, metric: str = "test_acc", columns: int = 3,
                 log: bool = False):
    """One small panel per value of ``panels`` (e.g. activation, in first-seen order), wrapped
    ``columns`` to a row: the median over seeds of ``metric`` of the sparse (red) and the dense
    (blue) member against the dense width."""
    keys = list(dict.fromkeys(paired[panels]))
    rows = max(1, -(-len(keys) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(min(MAX_WIDTH, 2.4 * columns), 2.1 * rows),
                             squeeze=False, sharex=True, sharey=True)
    for ax, key in zip(axes.ravel(), keys):
        g = paired[paired[panels] == key]
        for kind, style in (("sparse", SPARSE_STYLE), ("dense", DENSE_STYLE)):
            med = g.groupby("dense_width")[f"{metric}_{kind}"].median()
            ax.plot(med.index, med.values, **style)
        ax.set_title(str(key), fontsize=9)
        if log:
            ax.set_yscale("log")
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(label(metric), fontsize=9)
    for j in range(columns):  # the lowest visible panel of each column carries the x axis
        shown = [ax for ax in axes[:, j] if ax.get_visible()]
        if shown:
            shown[-1].xaxis.set_tick_params(labelbottom=True)
            shown[-1].set_xlabel("dense width")
    for ax in axes.ravel():
        ax.tick_params(labelsize=9)
    axes[0, 0].legend(fontsize=9, frameon=False)
    fig.tight_layout()
    return _legible(fig)


def optimizer_cells(acc: pd.DataFrame, egf: pd.DataFrame, diverged: pd.DataFrame,
                    runs: pd.DataFrame, title: str = ""):
    """Two heat maps, one above the other, over an optimizer x variant layout (tables as
    :func:`gflib.chapters.optimizers.cell_table` gives them, same index and columns): the mean
    test accuracy (%) and the average EGF_2 (log colour scale, value written), blank where the
    grid has no run; a cell with diverged runs adds ``† k/n`` (they count at chance accuracy
    and have no flow)."""
    rows, cols = acc.shape
    fig, axes = plt.subplots(2, 1, figsize=(7.0, 2 * (0.4 * rows + 0.9) + 0.8), sharex=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_egf = np.log10(egf.to_numpy(float))
    panels = ((axes[0], 100 * acc.to_numpy(float), "test accuracy (%)", "viridis", "%",
               lambda v, i, j: f"{v:.0f}"),
              (axes[1], log_egf, "average EGF$_2$ (colour: log$_{10}$)", "magma", "log$_{10}$",
               lambda v, i, j: f"{egf.iat[i, j]:.2g}"))
    n = runs.to_numpy(float)
    d = diverged.to_numpy(float)
    for ax, values, label, cmap, unit, text_of in panels:
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0, 1)
        image = ax.imshow(values, cmap=cmap, aspect="auto", vmin=low,
                          vmax=high if high > low else low + 1)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02).set_label(unit, fontsize=9)
        for (i, j), v in np.ndenumerate(values):
            if not np.isfinite(n[i, j]):
                continue
            text = text_of(v, i, j) if np.isfinite(v) else ""
            if d[i, j] > 0:
                text += f"\n†{d[i, j]:.0f}/{n[i, j]:.0f}"
            dark = np.isfinite(v) and (v - low) < 0.6 * (high - low)
            ax.text(j, i, text.strip(), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
        ax.set_yticks(range(rows), [str(r) for r in acc.index])
        ax.set_title(label, fontsize=9)
    axes[1].set_xticks(range(cols), [str(c) for c in acc.columns], rotation=40, ha="right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _legible(fig)


EWMA_MARKERS = {"EWMA": dict(marker="o"), "other": dict(marker="s", facecolors="none")}


def flow_vs_accuracy(cells: pd.DataFrame, kind: str = "sparse",
                     labelled=("L2_BN", "DA_L2_SC_BN", "WD_BN", "DA_WD_SC_BN"),
                     labelled_optimizers=("adam", "adamw")):
    """Average EGF_2 (log10, x) against mean test accuracy (%), one point per optimizer x variant
    cell of ``kind`` (:func:`gflib.chapters.optimizers.cells`: columns ``lr``, ``kind``,
    ``optimizer``, ``variant``, ``family``, ``egf``, ``acc``), one panel per learning rate;
    filled circles for the EWMA optimizers, open squares for the others; the variants in
    ``labelled`` of the optimizers in ``labelled_optimizers`` get a black ring (named in the
    legend; text beside each point overlapped where cells crowd). Cells whose runs all diverged
    have no flow and are not drawn."""
    sub = cells[cells["kind"] == kind]
    lrs = sorted(sub["lr"].unique())
    optimizers = list(dict.fromkeys(sub["optimizer"]))
    colours = dict(zip(optimizers, plt.cm.tab10.colors))
    fig, axes = plt.subplots(1, len(lrs), figsize=(min(MAX_WIDTH, 3.3 * len(lrs) + 1.4), 3.4),
                             squeeze=False, sharey=True)
    for ax, lr in zip(axes[0], lrs):
        at = sub[sub["lr"] == lr]
        for optimizer, g in at.groupby("optimizer", sort=False):
            style = dict(EWMA_MARKERS[g["family"].iloc[0]])
            style.setdefault("facecolors", colours[optimizer])
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log10(g["egf"].to_numpy(float))
            ax.scatter(x, 100 * g["acc"], edgecolors=colours[optimizer], s=28, label=optimizer,
                       **style)
        ringed = at[at["variant"].isin(labelled) & at["optimizer"].isin(labelled_optimizers)]
        if len(ringed):
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log10(ringed["egf"].to_numpy(float))
            ax.scatter(x, 100 * ringed["acc"], s=110, facecolors="none", edgecolors="black",
                       linewidths=1.2, label=f"{' / '.join(labelled_optimizers)}: "
                                             f"{', '.join(labelled)}")
        missing = int(at["egf"].isna().sum())
        ax.set_title(f"lr {lr:g}" + (f" ({missing} cells all diverged)" if missing else ""),
                     fontsize=9)
        ax.set_xlabel("log$_{10}$ average EGF$_2$")
    axes[0, 0].set_ylabel("test accuracy (%)")
    shown = {}
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            shown.setdefault(name, handle)
    axes[0, -1].legend(shown.values(), [textwrap.fill(n, 22) for n in shown], fontsize=9,
                       frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return _legible(fig)


def update_sizes(updates: pd.DataFrame):
    """The mechanism, per traced run (rows: optimizer and learning rate) and epoch, one line per
    layer (input dark, output light): the step on active weights in units of the learning rate
    (``|dw| / lr``), the gradient ``|g|`` and the square root of the second-moment state
    (``sqrt(v)``; none for SGD), from :func:`gflib.updates.table`'s long table. Log y, each
    column on one scale."""
    runs = list(dict.fromkeys(zip(updates["optimizer"], updates["lr"])))
    columns = (("dw", "step |dw| / lr"), ("g", "gradient |g|"), ("v", "sqrt(v), v raw EWMA"))
    layers = sorted(updates["layer"].unique())
    colours = dict(zip(layers, plt.cm.viridis(np.linspace(0, 0.85, max(len(layers), 1)))))
    fig, axes = plt.subplots(max(len(runs), 1), 3, figsize=(8.5, 2.1 * max(len(runs), 1) + 0.5),
                             squeeze=False, sharex=True, sharey="col")
    for i, (optimizer, lr) in enumerate(runs):
        for j, (q, label) in enumerate(columns):
            ax = axes[i, j]
            g = updates[(updates["optimizer"] == optimizer) & (updates["lr"] == lr)
                        & (updates["quantity"] == q)]
            if g.empty:
                ax.text(0.5, 0.5, "no second moment", ha="center", va="center", fontsize=9,
                        transform=ax.transAxes)
            for layer, gl in g.groupby("layer"):
                y = gl["value"].to_numpy(float)
                y = y / lr if q == "dw" else np.sqrt(y) if q == "v" else y
                ax.plot(gl["epoch"], y, color=colours[layer], label=f"layer {layer}")
            ax.set_yscale("log")
            if i == 0:
                ax.set_title(label, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{optimizer}, lr {lr:g}", fontsize=9)
            if i == len(runs) - 1:
                ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=9, frameon=False)
    fig.tight_layout()
    return _legible(fig)


def lines_by_column(table: pd.DataFrame, xlabel: str, ylabel: str, log: bool = False,
                    step: bool = False):
    """One line per column of ``table`` against its index (e.g. median accuracy per method
    against the dense width; ``step``: drawn as steps, for schedules that change at epoch
    boundaries)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for column in table.columns:
        if step:
            ax.step(table.index, table[column], where="post", marker=".", label=str(column))
        else:
            ax.plot(table.index, table[column], marker="o", label=str(column))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, ncol=2)
    fig.tight_layout()
    return _legible(fig)


def flow_accuracy_scatter(runs: pd.DataFrame, colour: str, panels: str,
                          measure: str = "mean_egf_l2"):
    """Each non-diverged run's ``measure`` (log x) against its test accuracy (%), one panel per
    value of ``panels`` (e.g. optimizer), one colour per value of ``colour`` (e.g. method):
    what a Kendall tau between the two sums up."""
    runs = runs[~runs["diverged"]]
    keys = sorted(runs[panels].unique(), key=str)
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(min(MAX_WIDTH, 4.4 * len(keys)), 3.6),
                             sharey=True, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for value, g in runs[runs[panels] == key].groupby(colour):
            ax.scatter(g[measure], 100 * g["test_acc"], s=16, label=str(value))
        ax.set_xscale("log")
        ax.set_title(str(key))
        ax.set_xlabel(label(measure))
    axes[0, 0].set_ylabel("test accuracy (%)")
    axes[0, -1].legend(frameon=False)
    fig.tight_layout()
    return _legible(fig)


MAX_LAYER_LEGEND = 12
"""Beyond this many layers :func:`flow_by_layer` names only the first and the last."""


def flow_by_layer(table: pd.DataFrame, p: int = 2):
    """EGF_p of each layer over training beside the baseline: left ``||g_l * m_l||_p`` per
    layer and, in black, the model's EGF_p (their mean); right ``||g_l||_p`` per layer and, in
    black, the baseline ``||g||_p`` of all weight gradients together. ``table``: a
    :class:`gflib.monitor.FlowMonitor` table (columns ``step, layer, measure, value``; the whole
    model's rows under layer :data:`gflib.flow.MODEL`). A layer keeps its colour in both panels
    (first to last: dark to light beyond ten layers). Both panels share their log y axis (linear
    when a value is 0)."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    layers = [n for n in dict.fromkeys(table["layer"]) if n != MODEL]
    colours = (plt.cm.tab10.colors if len(layers) <= 10 else
               plt.cm.viridis(np.linspace(0, 0.9, len(layers))))
    fig, axes = plt.subplots(1, 2, figsize=(MAX_WIDTH, 3.6), sharex=True, sharey=True)
    panels = ((f"egf_l{p}", f"EGF$_{p}$ per layer: $\\|g_l \\odot m_l\\|_{p}$",
               f"model: EGF$_{p}$ (mean over layers)"),
              (f"gf_l{p}", f"baseline per layer: $\\|g_l\\|_{p}$",
               f"model: $\\|g\\|_{p}$ (all weights)"))
    shown = set(layers if len(layers) <= MAX_LAYER_LEGEND else layers[:1] + layers[-1:])
    for i, (ax, (measure, title, whole)) in enumerate(zip(axes, panels)):
        rows = table[table["measure"] == measure]
        for layer, colour in zip(layers, colours):
            line = rows[rows["layer"] == layer].sort_values("step")
            ax.plot(line["step"], line["value"], color=colour, linewidth=1.2,
                    label=layer if i == 0 and layer in shown else None)
        line = rows[rows["layer"] == MODEL].sort_values("step")
        ax.plot(line["step"], line["value"], color="black", linewidth=2.2, label=whole)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(frameon=False, fontsize=9)
    drawn = table[table["measure"].isin([f"egf_l{p}", f"gf_l{p}"])]["value"]
    if len(drawn) and (drawn > 0).all():
        axes[0].set_yscale("log")
    axes[0].set_ylabel("gradient norm")
    fig.tight_layout()
    return _legible(fig)
