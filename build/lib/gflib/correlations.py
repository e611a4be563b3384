"""How well flow measures rank runs by generalisation (claim 2's statistics): Kendall
correlations of each run's average flow with its test loss and accuracy, the paper's table beside
ours, and the EGF margin (the best EGF measure's mean |tau| minus the best gradient norm's) with a
stratified bootstrap interval; the margin's verdict, which the chapters of claims 2 and 6 share.

Runs that diverged or learned nothing (at chance, :func:`gflib.analysis.flow_usable`) are left
out: their flow is not the flow of a trained net.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from . import stats
from .analysis import flow_usable
from .flow import MEASURES
from .verdict import Verdict

CHUNK = 64
"""Bootstrap resamples whose taus are computed at once (memory: CHUNK x n^2 x measures)."""

def correlations(df: pd.DataFrame, group_by=("depth",), targets=("test_loss", "test_acc"),
                 measures=MEASURES, ci_level: float = 0.95, n_resamples: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """Kendall tau of each mean flow measure with each target, per kind (sparse/dense) and group.

    Runs whose flow is not usable are left out (:func:`gflib.analysis.flow_usable`). One row per
    (kind, group..., measure, target) with ``tau``, ``abs_tau``, ``pvalue`` (two-sided,
    scipy.stats.kendalltau), ``n`` and ``ci_low``, ``ci_high``: a paired percentile bootstrap of
    tau (runs resampled within the group, every measure on the same resamples; resamples in
    which a side is constant have no tau and are left out)."""
    rows = []
    df = df[flow_usable(df)] if len(df) else df
    measures = list(measures)
    rng = np.random.default_rng(seed)
    alpha = 100 * (1 - ci_level) / 2
    for keys, g in (df.groupby(["kind", *group_by]) if len(df) else []):
        keys = keys if isinstance(keys, tuple) else (keys,)
        x = g[[f"mean_{m}" for m in measures]].to_numpy(float)
        idx = rng.integers(0, len(g), (n_resamples, len(g)))
        for t in targets:
            y = g[t].to_numpy(float)
            draws = np.vstack([stats.kendall_tau_b(x[idx[i:i + CHUNK]], y[idx[i:i + CHUNK]])
                               for i in range(0, n_resamples, CHUNK)])
            for i, m in enumerate(measures):
                res = stats.kendall(x[:, i], y)
                lo = hi = np.nan
                if res["n"] >= 3 and np.isfinite(res["tau"]):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        lo, hi = np.nanpercentile(draws[:, i], [alpha, 100 - alpha])
                rows.append(dict(zip(["kind", *group_by], keys), measure=m, target=t,
                                 **res, ci_low=float(lo), ci_high=float(hi)))
    return pd.DataFrame(rows)


def correlation_summary(corr: pd.DataFrame) -> pd.DataFrame:
    """|tau| averaged over the groups: rows = measure, columns = (kind, target), the layout of the
    paper's table."""
    table = corr.groupby(["measure", "kind", "target"])["abs_tau"].mean().unstack(["kind", "target"])
    order = [(k, t) for k in ("sparse", "dense") for t in ("test_loss", "test_acc")]
    return table.reindex(columns=[c for c in order if c in table.columns]).reindex(list(MEASURES))



def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our |tau| table and the paper's, interleaved: columns (kind, target, source)."""
    parts = {"ours": ours, "paper": paper.reindex(index=ours.index, columns=ours.columns)}
    out = pd.concat(parts, axis=1, names=["source"])
    out = out.reorder_levels([1, 2, 0], axis=1)
    return out.reindex(columns=[(k, t, s) for k, t in ours.columns for s in ("ours", "paper")])




def resampled_mean_abs(runs: pd.DataFrame, target: str, measures=MEASURES, by: str = "depth",
                       n_resamples: int = 1000, seed: int = 0) -> tuple:
    """``(draws, n)``: the mean over ``by`` groups of |Kendall tau| of each measure's run
    average with ``target`` (the paper's form), on the ``runs`` (one kind) whose flow is usable
    (:func:`gflib.analysis.flow_usable`): ``draws[0]`` on the data, ``draws[1:]`` on
    ``n_resamples`` stratified bootstrap resamples (runs resampled within each group, which
    scipy's ``bootstrap`` does not do; taus by :func:`gflib.stats.kendall_tau_b`), shape
    ``[n_resamples + 1, len(measures)]``, NaN where a measure was not recorded; ``n`` the runs
    used. Groups of fewer than two runs are left out; with none, every draw is NaN. The resamples
    do not depend on ``measures``, so two calls with other measures resample alike."""
    ok = runs[flow_usable(runs)] if len(runs) else runs
    measures = list(measures)
    groups = [(g[[f"mean_{m}" for m in measures]].to_numpy(float), g[target].to_numpy(float))
              for _, g in ok.groupby(by)] if len(ok) else []
    groups = [(x, y) for x, y in groups if len(y) >= 2]
    rng = np.random.default_rng(seed)
    mean_abs = np.zeros((n_resamples + 1, len(measures)))
    for x, y in groups:
        idx = np.vstack([np.arange(len(y)), rng.integers(0, len(y), (n_resamples, len(y)))])
        for start in range(0, len(idx), CHUNK):
            rows = idx[start:start + CHUNK]
            mean_abs[start:start + CHUNK] += np.abs(stats.kendall_tau_b(x[rows], y[rows]))
    if not groups:
        mean_abs[:] = np.nan
    return mean_abs / max(len(groups), 1), int(len(ok))


def _percentiles(draws: np.ndarray, level: float) -> tuple:
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(draws, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def margin_from(draws: np.ndarray, n: int, measures, egf=("egf_l1", "egf_l2"),
                base=("gf_l1", "gf_l2"), level: float = 0.95) -> dict:
    """The EGF margin from :func:`resampled_mean_abs`' ``draws`` over ``measures``: ``margin``
    = the best of ``egf`` minus the best of ``base`` on the data, ``ci_low``/``ci_high`` its
    percentile interval over the resamples, ``n``, ``best_egf``, ``best_base`` (NaN and None
    when a side has no measured values, e.g. a summary that did not record them)."""
    measures = list(measures)
    e = draws[:, [measures.index(m) for m in egf]]
    b = draws[:, [measures.index(m) for m in base]]
    if np.isnan(e[0]).all() or np.isnan(b[0]).all():
        return {"margin": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "n": n, "best_egf": None, "best_base": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        diff = np.nanmax(e, axis=1) - np.nanmax(b, axis=1)
    low, high = _percentiles(diff[1:], level)
    return {"margin": float(diff[0]), "ci_low": float(low), "ci_high": float(high), "n": n,
            "best_egf": egf[int(np.nanargmax(e[0]))], "best_base": base[int(np.nanargmax(b[0]))]}


def tau_margin(runs: pd.DataFrame, target: str, egf=("egf_l1", "egf_l2"),
               base=("gf_l1", "gf_l2"), by: str = "depth", level: float = 0.95,
               n_resamples: int = 1000, seed: int = 0) -> dict:
    """How much better the best EGF measure tracks ``target`` than the best baseline, with an
    interval (:func:`margin_from` of :func:`resampled_mean_abs` over ``egf`` and ``base``)."""
    measures = list(egf) + list(base)
    draws, n = resampled_mean_abs(runs, target, measures, by, n_resamples, seed)
    return margin_from(draws, n, measures, egf, base, level)


BASELINES = {"weights": ("gf_l1", "gf_l2"), "all gradients": ("gfall_l1", "gfall_l2")}
"""The gradient norm EGF is compared with: over the weight tensors (the default, as EGF covers
them) or over every trainable parameter's gradient (the study's "all gradients")."""


def egf_margins(runs: pd.DataFrame, level: float = 0.95) -> tuple:
    """``(margins, depth_mean)`` from one bootstrap per kind and target
    (:func:`resampled_mean_abs` over every measure): ``margins``, the EGF margin with its
    interval for each kind, target and baseline scope (:data:`BASELINES`), columns ``kind``,
    ``target``, ``baseline`` and :func:`margin_from`'s; ``depth_mean``, each measure's mean
    |tau| over depths with its interval (the paper's form of its table), columns ``kind``,
    ``target``, ``measure``, ``abs_tau``, ``ci_low``, ``ci_high``, ``n``."""
    rows, means = [], []
    for kind in ("sparse", "dense"):
        for target in ("test_loss", "test_acc"):
            draws, n = resampled_mean_abs(runs[runs["kind"] == kind], target, MEASURES)
            low, high = _percentiles(draws[1:], level)
            for i, m in enumerate(MEASURES):
                means.append({"kind": kind, "target": target, "measure": m,
                              "abs_tau": draws[0, i], "ci_low": low[i], "ci_high": high[i],
                              "n": n})
            for scope, base in BASELINES.items():
                rows.append({"kind": kind, "target": target, "baseline": scope,
                             **margin_from(draws, n, MEASURES, base=base, level=level)})
    return pd.DataFrame(rows), pd.DataFrame(means)


def margin_of(margins: pd.DataFrame, target: str = "test_acc", kind: str = "sparse",
              baseline: str = "weights") -> dict:
    """One row of :func:`egf_margins` as a dict (NaN margin and n 0 where there is none)."""
    m = margins[(margins["kind"] == kind) & (margins["target"] == target)
                & (margins["baseline"] == baseline)] if len(margins) else margins
    if not len(m):
        return {"margin": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0,
                "best_egf": None, "best_base": None}
    return m.iloc[0].to_dict()


TARGET_WORDS = {"test_acc": "test accuracy", "test_loss": "test loss"}


def margin_verdict(margins: pd.DataFrame, target: str, claim, scale: str, test: str,
                   form: str, nets: str, paper_effect: float = np.nan, paper: str = "",
                   unit: str = "runs, resampled within depth") -> Verdict:
    """The verdict on "EGF ranks ``nets`` by ``target`` better than the gradient norm": the
    margin of :func:`egf_margins` (sparse nets, the weights baseline) with its bootstrap
    interval; there is no p-value (the interval decides), and ``paper_effect`` is the paper's
    margin where it gave one for these data."""
    m = margin_of(margins, target)
    words = TARGET_WORDS[target]
    if m["n"] and np.isfinite(m["margin"]):
        sentence = (f"for {nets} the best EGF measure ({m['best_egf']}) ranks runs by {words} "
                    f"{'better' if m['margin'] > 0 else 'worse'} than the best gradient norm "
                    f"({m['best_base']})")
    else:
        sentence = f"too few {nets} whose flow can be used at this scale"
    return Verdict(claim=claim, test=test, scale=scale, form=form, effect=float(m["margin"]),
                   effect_unit=f"mean |tau| with {words}, best EGF - best norm",
                   interval=(float(m["ci_low"]), float(m["ci_high"])), n=int(m["n"]),
                   unit=unit, paper_effect=paper_effect, sentence=sentence, paper=paper)
