"""The chapters' grids of runs, and the tables they are read into.

Each chapter calls one ``*_configs(preset)`` to get its SC-SDC grid, runs it through
:func:`gflib.sweep.run`, and reads the result with :func:`pairs` and the analysis functions here.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .flow import MEASURES
from .presets import Preset
from .train import RunConfig

VARIANT_PARTS = ("DA", "L2", "SC", "BN", "WD")
RESULTS_ENV = "GFLIB_RESULTS"


def results_dir(chapter: str, preset: str, root: str | os.PathLike | None = None) -> Path:
    """Where a chapter's raw results go: ``<root>/<chapter>/<preset>``; ``root`` defaults to
    ``$GFLIB_RESULTS`` or ``results/`` at the repository root (git-ignored)."""
    if root is None:
        root = os.environ.get(RESULTS_ENV) or Path(__file__).resolve().parent.parent / "results"
    return Path(root) / chapter / preset


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
            out.append(base.__class__(**{**base.to_dict(), "width": sparse_width,
                                         "match_width": d, "seed": s}))
            out.append(base.__class__(**{**base.to_dict(), "width": d, "match_width": None,
                                         "seed": s}))
    return out


def _base(preset: Preset, device: str, data_dir, **fields) -> RunConfig:
    return RunConfig(dataset=preset.dataset, epochs=preset.epochs, batch_size=preset.batch_size,
                     train_subset=preset.train_subset, test_subset=preset.test_subset,
                     device=device, data_dir=data_dir, **fields)


def egf_configs(preset: Preset, device: str = "cpu", data_dir=None) -> list:
    """Chapter 1's grid: depths x optimizers x learning rates x SC-SDC widths x seeds, ReLU MLPs
    without regularisation, sparse and dense members of every pair."""
    out = []
    for depth in preset.depths:
        for opt in preset.optimizers:
            for lr in preset.lrs:
                base = _base(preset, device, data_dir, depth=depth, optimizer=opt, lr=lr)
                out += pair_configs(base, preset.sparse_width, preset.dense_widths, preset.seeds)
    return out


def batchnorm_configs(preset: Preset, device: str = "cpu", data_dir=None) -> list:
    """The BatchNorm chapter's grid: optimizers x variants x SC-SDC widths x seeds at
    ``preset.bn_depth`` hidden layers, each optimizer at its ``preset.bn_lrs`` learning rate."""
    out = []
    for opt in preset.optimizers:
        for variant in preset.bn_variants:
            base = _base(preset, device, data_dir, depth=preset.bn_depth, optimizer=opt,
                         lr=preset.bn_lrs[opt], **variant_flags(variant, preset.l2))
            out += pair_configs(base, preset.sparse_width, preset.dense_widths, preset.seeds)
    return out


def variant_name(row) -> str:
    """The variant name of a table row (inverse of :func:`variant_flags`)."""
    parts = [p for p, on in (("DA", row["augment"]), ("L2", row["l2"] > 0), ("WD", row["weight_decay"] > 0),
                             ("SC", row["skip"]), ("BN", row["batchnorm"])) if on]
    return "_".join(parts) or "NR"


def pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Match each sparse run with its dense partner (same config and seed, dense width =
    the sparse run's ``match_width``). One row per pair: the shared config columns, ``dense_width``,
    ``sparse_width``, and every metric with suffix ``_sparse`` / ``_dense``."""
    metrics = ["test_loss", "test_acc", "train_loss", "train_acc", "diverged", "wall_s"]
    metrics += [f"mean_{m}" for m in MEASURES]
    sparse = df[df["match_width"].notna()].copy()
    dense = df[df["match_width"].isna() & (df["density"] == 1.0)].copy()
    sparse["dense_width"] = sparse["match_width"].astype(int)
    sparse = sparse.rename(columns={"width": "sparse_width"})
    dense["dense_width"] = dense["width"]
    keys = [c for c in df.columns if "@" not in c
            and c not in metrics + ["width", "match_width", "init", "device", "data_dir"]]
    keys = keys + ["dense_width"]
    merged = sparse.merge(dense.drop(columns=["width", "match_width", "init"]), on=keys,
                          suffixes=("_sparse", "_dense"), validate="one_to_one")
    merged["variant"] = merged.apply(variant_name, axis=1) if len(merged) else []
    return merged


def correlations(df: pd.DataFrame, group_by=("depth",), targets=("test_loss", "test_acc"),
                 measures=MEASURES, ci_level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Kendall tau of each mean flow measure with each target, per kind (sparse/dense) and group.

    Diverged runs are left out (their flow is undefined). One row per
    (kind, group..., measure, target) with ``tau``, ``abs_tau``, ``pvalue``, ``n``, ``ci_low``,
    ``ci_high`` (bootstrap CI of tau).
    """
    rows = []
    df = df[~df["diverged"]].assign(kind=np.where(df["match_width"].notna(), "sparse", "dense"))
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
                          metric: str = "test_acc") -> pd.DataFrame:
    """One-sided p-values (H1 sparse > dense, Wilcoxon over matched pairs) of ``metric`` in each
    (``rows`` x ``cols``) cell; also returns the n per cell as ``table.attrs['n']``."""
    pvals, ns = {}, {}
    for (r, c), g in paired.groupby([rows, cols]):
        res = stats.sparse_vs_dense(g[f"{metric}_sparse"].to_numpy(), g[f"{metric}_dense"].to_numpy())
        pvals[(r, c)] = res["pvalue"]
        ns[(r, c)] = res["n"]
    table = pd.Series(pvals).unstack()
    table.attrs["n"] = pd.Series(ns).unstack()
    return table


def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our |tau| table and the paper's, interleaved: columns (kind, target, source)."""
    parts = {"ours": ours, "paper": paper.reindex(index=ours.index, columns=ours.columns)}
    out = pd.concat(parts, axis=1, names=["source"])
    out = out.reorder_levels([1, 2, 0], axis=1)
    return out.reindex(columns=[(k, t, s) for k, t in ours.columns for s in ("ours", "paper")])


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


def egf_analysis(df: pd.DataFrame, dataset: str, seed: int = 0) -> dict:
    """Everything chapter 1 shows from one results table (live or stored).

    Keys: ``corr`` (per-depth Kendall taus with CIs), ``summary`` (mean |tau| per measure x
    (kind, target)), ``beside`` (ours next to the paper's), ``verdict`` (:func:`egf_verdict`),
    ``paired`` (:func:`pairs`), ``pvalues`` (H1 sparse > dense test accuracy, optimizer x depth),
    ``n_runs``, ``n_diverged``.
    """
    from .reference import egf_correlations

    corr = correlations(df, seed=seed)
    summary = correlation_summary(corr)
    paired = pairs(df)
    return {
        "corr": corr, "summary": summary,
        "beside": beside_paper(summary, egf_correlations(dataset)),
        "verdict": egf_verdict(summary), "paired": paired,
        "pvalues": sparse_vs_dense_table(paired, "optimizer", "depth"),
        "n_runs": len(df), "n_diverged": int(df["diverged"].sum()),
    }


def verdict_sentence(verdict: dict, scale: str) -> str:
    """Chapter 1's verdict in words, from :func:`egf_verdict`, for the sparse rows."""
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
    """Chapter 1's verdicts at several scales side by side: one row per scale (the keys of
    ``verdicts``, each an :func:`egf_verdict`), columns ``"<target>: best"`` (the measure with
    the largest mean |tau|) and ``"<target>: egf_margin"`` for the nets of ``kind``."""
    return pd.DataFrame({
        scale: {f"{key.split('/')[1]}: {field}": v[field] for key, v in verdict.items()
                if key.startswith(f"{kind}/") for field in ("best", "egf_margin")}
        for scale, verdict in verdicts.items()}).T


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


def flow_stability(table: pd.DataFrame, measure: str = "egf_l2") -> pd.DataFrame:
    """How unsteady each run's flow is over its scheduled epochs.

    One row per run with the config columns, ``kind`` (sparse/dense) and ``log_std``: the standard
    deviation over the scheduled epochs of ``log10`` of the measure (0 = perfectly flat). Diverged
    runs are left out.
    """
    cols = [c for c in table.columns if c.startswith(f"{measure}@")]
    ok = table[~table["diverged"].astype(bool)]
    logs = np.log10(ok[cols].astype(float).clip(lower=1e-30))
    out = ok[[c for c in table.columns if "@" not in c]].copy()
    out["kind"] = np.where(out["match_width"].notna(), "sparse", "dense")
    out["variant"] = out.apply(variant_name, axis=1) if len(out) else []
    out["log_std"] = logs.std(axis=1, ddof=1)
    out["log_mean"] = logs.mean(axis=1)
    return out


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


def bn_analysis(df: pd.DataFrame, optimizers, variants) -> dict:
    """Everything the BatchNorm chapter shows from one results table (live or stored).

    Keys: ``paired``; ``pvalues`` (H1 sparse > dense in test accuracy, ``optimizers`` x
    ``variants``) and ``n`` (pairs per cell), ``paper`` (the paper's table, same layout),
    ``shares`` (:func:`significance_shares`, ours and the paper's), ``gains``, ``gain_tests``,
    ``holds`` and ``claim`` (:func:`bn_claim`), ``stability`` (:func:`stability_summary`),
    ``steadier`` (:func:`stability_test`), ``n_runs``, ``n_diverged``.
    """
    from .reference import batchnorm_pvalues

    paired = pairs(df)
    table = sparse_vs_dense_table(paired, "optimizer", "variant")
    layout = dict(index=list(optimizers), columns=list(variants))
    pvalues = table.reindex(**layout)
    paper = batchnorm_pvalues().reindex(**layout)
    gains = bn_gains(paired)
    tests = bn_gain_tests(gains)
    holds, claim = bn_claim(tests)
    stab = flow_stability(df)
    return {
        "paired": paired, "pvalues": pvalues, "n": table.attrs["n"].reindex(**layout),
        "paper": paper,
        "shares": pd.DataFrame({"ours": significance_shares(pvalues),
                                "paper": significance_shares(paper)}),
        "gains": gains, "gain_tests": tests, "holds": holds, "claim": claim,
        "stability": stability_summary(stab), "steadier": stability_test(stab),
        "n_runs": len(df), "n_diverged": int(df["diverged"].sum()),
    }


def bn_verdict_sentence(analysis: dict, scale: str) -> str:
    """The BatchNorm chapter's verdict in words, from :func:`bn_analysis`."""
    shares = analysis["shares"]["ours"]
    return (f"at `{scale}` the claim {'holds' if analysis['holds'] else 'is not reproduced'}: "
            f"{analysis['claim']}; sparse beat dense (p < 0.05) in {shares['without BN']:.0%} of "
            f"the cells without BatchNorm and {shares['with BN']:.0%} with it; "
            f"{analysis['steadier']['sentence']}")
