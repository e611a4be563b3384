"""Analyses the chapters share: variants, SC-SDC pairs of configs and of results, Kendall
correlations, sparse-vs-dense p-value tables, flow stability.

Tables are :class:`gflib.results.Results` run tables (columns: :data:`gflib.results.RUN_COLUMNS`).
Diverged runs are left out of every statistic here and counted by the chapters.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from . import stats
from .config import RunConfig
from .flow import MEASURES
from .results import CONFIG_COLUMNS

VARIANT_PARTS = ("DA", "L2", "SC", "BN", "WD")
METRICS = ("test_loss", "test_acc", "train_loss", "train_acc") + tuple(f"mean_{m}" for m in MEASURES)
"""The per-run numbers statistics are computed on."""
MEMBER_FIELDS = ("width", "match_width", "density", "init")
"""Config fields in which the two members of an SC-SDC pair differ; every other config field is
a pairing key."""


def variant_flags(variant: str, l2: float) -> dict:
    """RunConfig fields of a variant name such as ``"DA_L2_SC_BN"`` (``NR`` = none).

    DA: augmentation; L2: ``l2`` added to the loss; SC: skip connections; BN: BatchNorm;
    WD: AdamW's decoupled weight decay (``WD_DECAY``).
    """
    parts = [] if variant == "NR" else variant.split("_")
    bad = [p for p in parts if p not in VARIANT_PARTS]
    if bad or not variant:
        raise ValueError(f"unknown variant {variant!r}; allowed: NR or parts of "
                         f"{', '.join(VARIANT_PARTS)} joined by '_'")
    return {"augment": "DA" in parts, "l2": l2 if "L2" in parts else 0.0, "skip": "SC" in parts,
            "batchnorm": "BN" in parts, "weight_decay": WD_DECAY if "WD" in parts else 0.0}


WD_DECAY = 0.01
"""CHOICE: AdamW's decoupled weight decay for the WD variants (torch's default)."""


def pair_configs(base: RunConfig, sparse_width: int, dense_widths, seeds) -> list:
    """For every dense width and seed, the SC-SDC sparse member then the dense member of ``base``."""
    out = []
    for d in dense_widths:
        for s in seeds:
            out.append(base.replace(width=sparse_width, match_width=d, seed=s))
            out.append(base.replace(width=d, match_width=None, seed=s))
    return out


def pair_grid(preset, bases, device: str = "cpu", data_dir=None) -> list:
    """The SC-SDC pairs (every dense width and seed of ``preset``) of each dict of config
    fields in ``bases``, at ``preset``'s scale."""
    out = []
    for fields in bases:
        base = preset.config(device=device, data_dir=data_dir, **fields)
        out += pair_configs(base, preset.sparse_width, preset.dense_widths, preset.seeds)
    return out


def variant_name(row) -> str:
    """The variant name of a table row (inverse of :func:`variant_flags`)."""
    parts = [p for p, on in (("DA", row["augment"]), ("L2", row["l2"] > 0), ("WD", row["weight_decay"] > 0),
                             ("SC", row["skip"]), ("BN", row["batchnorm"])) if on]
    return "_".join(parts) or "NR"


def correlations(df: pd.DataFrame, group_by=("depth",), targets=("test_loss", "test_acc"),
                 measures=MEASURES, ci_level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Kendall tau of each mean flow measure with each target, per kind (sparse/dense) and group.

    Diverged runs are left out (their flow is undefined). One row per
    (kind, group..., measure, target) with ``tau``, ``abs_tau``, ``pvalue``, ``n``, ``ci_low``,
    ``ci_high`` (bootstrap CI of tau).
    """
    rows = []
    df = df[~df["diverged"]]
    for keys, g in df.groupby(["kind", *group_by]):
        for m in measures:
            for t in targets:
                res = stats.kendall(g[f"mean_{m}"].to_numpy(), g[t].to_numpy())
                lo, hi = stats.kendall_ci(g[f"mean_{m}"].to_numpy(), g[t].to_numpy(),
                                          level=ci_level, seed=seed)
                rows.append(dict(zip(["kind", *group_by], keys), measure=m, target=t,
                                 **res, ci_low=lo, ci_high=hi))
    return pd.DataFrame(rows)


def correlation_summary(corr: pd.DataFrame) -> pd.DataFrame:
    """|tau| averaged over the groups: rows = measure, columns = (kind, target), the layout of the
    paper's table."""
    table = corr.groupby(["measure", "kind", "target"])["abs_tau"].mean().unstack(["kind", "target"])
    order = [(k, t) for k in ("sparse", "dense") for t in ("test_loss", "test_acc")]
    return table.reindex(columns=[c for c in order if c in table.columns]).reindex(list(MEASURES))


def sparse_vs_dense_table(paired: pd.DataFrame, rows: str, cols: str,
                          metric: str = "test_acc", matched: bool = True) -> pd.DataFrame:
    """One-sided p-values (H1 sparse > dense) of ``metric`` in each (``rows`` x ``cols``) cell:
    Wilcoxon signed-rank over the matched pairs (``matched=False``: Mann-Whitney U of the two
    samples, ignoring the matching), index named ``rows`` and columns ``cols``; also returns the
    n per cell as ``table.attrs['n']``."""
    pvals, ns = {}, {}
    for (r, c), g in paired.groupby([rows, cols]):
        res = stats.sparse_vs_dense(g[f"{metric}_sparse"].to_numpy(),
                                    g[f"{metric}_dense"].to_numpy(), paired=matched)
        pvals[(r, c)] = res["pvalue"]
        ns[(r, c)] = res["n"]
    table = pd.Series(pvals).unstack().rename_axis(index=rows, columns=cols)
    table.attrs["n"] = pd.Series(ns).unstack().rename_axis(index=rows, columns=cols)
    return table


def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our |tau| table and the paper's, interleaved: columns (kind, target, source)."""
    parts = {"ours": ours, "paper": paper.reindex(index=ours.index, columns=ours.columns)}
    out = pd.concat(parts, axis=1, names=["source"])
    out = out.reorder_levels([1, 2, 0], axis=1)
    return out.reindex(columns=[(k, t, s) for k, t in ours.columns for s in ("ours", "paper")])


def pair_keys() -> list:
    """The columns a sparse run and its dense partner share: every config column but
    :data:`MEMBER_FIELDS`, and ``dense_width``."""
    return [c for c in CONFIG_COLUMNS if c not in MEMBER_FIELDS] + ["dense_width"]


def pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """Match each SC-SDC sparse run with its dense partner (equal :func:`pair_keys`; dense
    width = the sparse run's ``match_width``). One row per pair: the keys, ``sparse_width``, and
    every other column with suffix ``_sparse`` / ``_dense``; plus ``variant`` and ``diverged``
    (either member diverged). The metrics of a diverged member are NaN, so every paired statistic
    leaves that pair out; the pair itself stays, counted."""
    keys = pair_keys()
    sparse = runs[(runs["kind"] == "sparse") & runs["match_width"].notna()].copy()
    dense = runs[runs["kind"] == "dense"].copy()
    sparse["dense_width"] = sparse["match_width"].astype(int)
    sparse = sparse.rename(columns={"width": "sparse_width"})
    dense["dense_width"] = dense["width"].astype(int)
    dense = dense.drop(columns=[c for c in MEMBER_FIELDS if c in dense])
    sparse = sparse.drop(columns=[c for c in MEMBER_FIELDS if c in sparse])
    merged = sparse.merge(dense, on=keys, suffixes=("_sparse", "_dense"), validate="one_to_one")
    merged["variant"] = merged.apply(variant_name, axis=1) if len(merged) else []
    merged["diverged"] = merged["diverged_sparse"] | merged["diverged_dense"]
    for side in ("sparse", "dense"):
        for metric in METRICS:
            merged.loc[merged[f"diverged_{side}"], f"{metric}_{side}"] = np.nan
    return merged


def flow_stability(results, measure: str = "egf_l2") -> pd.DataFrame:
    """How unsteady each run's flow is over its scheduled epochs.

    One row per run that did not diverge: the run's columns, ``variant``, ``log_std`` (standard
    deviation over the scheduled epochs of ``log10`` of the measure; 0 = flat) and ``log_mean``.
    """
    curves = results.curves[results.curves["measure"] == measure].copy()
    curves["log"] = np.log10(curves["value"].astype(float).clip(lower=1e-30))
    per_run = curves.groupby("key")["log"].agg(log_std=lambda v: v.std(ddof=1), log_mean="mean")
    ok = results.runs[~results.runs["diverged"]]
    out = ok.merge(per_run, left_on="key", right_index=True, how="inner")
    out["variant"] = out.apply(variant_name, axis=1) if len(out) else []
    return out


def unit_test(table: pd.DataFrame, value: str, units, level: float = 0.95,
              seed: int = 0) -> dict:
    """One-sided test of H1 "``value`` > 0" at the independent unit.

    The rows of ``table`` that share the ``units`` columns (e.g. optimizer x seed: runs that
    share a seed share their initial weights and masks, and widths are fixed factors) are
    averaged into one observation; the unit means are tested with a one-sided Wilcoxon
    signed-rank test and their mean gets a percentile bootstrap interval. Returns ``effect``
    (mean over units, in ``value``'s units), ``ci_low``, ``ci_high``, ``pvalue``, ``n`` (units)
    and ``means`` (the unit means, a Series). Non-finite values are dropped first.
    """
    ok = table[np.isfinite(table[value].astype(float))]
    means = ok.groupby(list(units))[value].mean() if len(ok) else pd.Series(dtype=float)
    res = stats.signed_rank_greater(means.to_numpy())
    low, high = stats.bootstrap_ci(means.to_numpy(), level=level, seed=seed)
    effect = float(means.mean()) if len(means) else float("nan")
    return {"effect": effect, "ci_low": low, "ci_high": high, "pvalue": res["pvalue"],
            "n": int(len(means)), "means": means}


def effect_by(table: pd.DataFrame, value: str, units, by: str, level: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """:func:`unit_test` of ``value`` within each level of ``by`` (e.g. the dense width): one
    row per level with ``effect``, ``ci_low``, ``ci_high``, ``pvalue`` and ``n``."""
    rows = []
    for level_value, g in table.groupby(by):
        res = unit_test(g, value, units, level=level, seed=seed)
        res.pop("means")
        rows.append({by: level_value, **res})
    return pd.DataFrame(rows).set_index(by) if rows else pd.DataFrame()


CHUNK = 64
"""Bootstrap resamples whose taus are computed at once (memory: CHUNK x n^2 x measures)."""


def tau_margin(runs: pd.DataFrame, target: str, egf=("egf_l1", "egf_l2"),
               base=("gf_l1", "gf_l2"), by: str = "depth", level: float = 0.95,
               n_resamples: int = 1000, seed: int = 0) -> dict:
    """How much better the best EGF measure tracks ``target`` than the best baseline, with an
    interval: ``margin`` = max over ``egf`` of the mean over ``by`` groups of |tau| minus the
    same over ``base`` (the paper's form: |Kendall tau| within groups of equal depth, averaged),
    on the non-diverged ``runs`` (one kind). The interval is a percentile bootstrap that resamples
    runs within each group (a stratified bootstrap, which scipy's ``bootstrap`` does not do; taus
    by :func:`gflib.stats.kendall_tau_b`).
    Returns ``margin``, ``ci_low``, ``ci_high``, ``n`` (runs), ``best_egf``, ``best_base`` (NaN
    and None when a side has no measured values, e.g. a summary that did not record them)."""
    ok = runs[~runs["diverged"]]
    measures = list(egf) + list(base)
    groups = [(g[[f"mean_{m}" for m in measures]].to_numpy(float), g[target].to_numpy(float))
              for _, g in ok.groupby(by)]
    groups = [(x, y) for x, y in groups if len(y) >= 2]
    rng = np.random.default_rng(seed)
    mean_abs = np.zeros((n_resamples + 1, len(measures)))
    for x, y in groups:
        idx = np.vstack([np.arange(len(y)), rng.integers(0, len(y), (n_resamples, len(y)))])
        for start in range(0, len(idx), CHUNK):
            rows = idx[start:start + CHUNK]
            mean_abs[start:start + CHUNK] += np.abs(stats.kendall_tau_b(x[rows], y[rows]))
    mean_abs /= max(len(groups), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        e, b = mean_abs[:, :len(egf)], mean_abs[:, len(egf):]
        if not groups or np.isnan(e[0]).all() or np.isnan(b[0]).all():
            return {"margin": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                    "n": int(len(ok)), "best_egf": None, "best_base": None}
        draws = np.nanmax(e, axis=1) - np.nanmax(b, axis=1)
    margin, draws = draws[0], draws[1:]
    best_egf = measures[int(np.nanargmax(e[0]))]
    best_base = measures[len(egf) + int(np.nanargmax(b[0]))]
    alpha = (1 - level) / 2
    low, high = np.nanpercentile(draws, [100 * alpha, 100 * (1 - alpha)])
    return {"margin": float(margin), "ci_low": float(low), "ci_high": float(high),
            "n": int(len(ok)), "best_egf": best_egf, "best_base": best_base}


def agreement(pvalues: pd.DataFrame, paper: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Cell by cell of two p-value tables of one layout: ``"both"``, ``"ours only"``,
    ``"paper only"`` or ``"neither"`` found sparse > dense (p < ``alpha``); ``"n/a"`` where
    either has no value."""
    def word(ours, theirs):
        if np.isnan(ours) or np.isnan(theirs):
            return "n/a"
        return {(True, True): "both", (True, False): "ours only", (False, True): "paper only",
                (False, False): "neither"}[(ours < alpha, theirs < alpha)]
    return pd.DataFrame([[word(pvalues.loc[r, c], paper.loc[r, c]) for c in pvalues.columns]
                         for r in pvalues.index], index=pvalues.index, columns=pvalues.columns)


def disagreements(agreement_table: pd.DataFrame, labels: dict | None = None) -> str:
    """The cells of an :func:`agreement` table where only the paper, or only we, found sparse >
    dense, named as "row x column" (through ``labels`` where given)."""
    labels = labels or {}

    def cells(word):
        hits = [f"{labels.get(r, r)} x {labels.get(c, c)}" for r in agreement_table.index
                for c in agreement_table.columns if agreement_table.loc[r, c] == word]
        return ", ".join(hits) or "none"
    return (f"significant in the paper only: {cells('paper only')}; here only: "
            f"{cells('ours only')}")


def with_interval(table: pd.DataFrame, value: str = "tau", low: str = "ci_low",
                  high: str = "ci_high", digits: int = 2) -> pd.Series:
    """Each row's ``value`` with its interval as one string for a table a person reads,
    e.g. ``"-0.42 (-0.55 to -0.30)"``: the estimate first, signs shown, ``digits`` decimals;
    ``""`` where the estimate is NaN, the estimate alone where the interval is."""
    def text(row):
        v, lo, hi = row[value], row[low], row[high]
        if pd.isna(v):
            return ""
        if pd.isna(lo) or pd.isna(hi):
            return f"{v:+.{digits}f}"
        return f"{v:+.{digits}f} ({lo:+.{digits}f} to {hi:+.{digits}f})"
    return table.apply(text, axis=1).astype(str) if len(table) else pd.Series([], dtype=str)


def margin_table(margins: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """EGF margins (rows of :func:`tau_margin` with their keys, e.g. ``kind``, ``target``,
    ``baseline``) for a person: indexed by the keys, the margin with its 95 % interval first
    (:func:`with_interval`), then ``n`` and the two measures compared."""
    if margins.empty:
        return margins
    keys = [c for c in margins.columns if c not in
            ("margin", "ci_low", "ci_high", "n", "best_egf", "best_base")]
    table = pd.DataFrame({"margin (95 % CI)": with_interval(margins, "margin", digits=digits),
                          "n": margins["n"].astype("Int64"), "best EGF": margins["best_egf"],
                          "best norm": margins["best_base"]})
    return table.set_index(pd.MultiIndex.from_frame(margins[keys])) if keys else table


def blank_missing(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``table``'s numbers as text with ``digits`` decimals (0.250, not 0.25), its missing values
    as empty cells: for a table a person reads, where NaN means "not given", e.g. a value the
    paper did not report."""
    return table.map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
