"""Chapter: EWMA optimizers, high gradient flow, L2 and data augmentation (claim 4).

The grid: the study's five optimizers and AdamW x the study's two learning rates x variants x
SC-SDC pairs (two of the preset's dense widths) x seeds, at one depth. The five run the variants
:data:`VARIANTS`; AdamW runs only its decoupled-decay variants (:data:`DECOUPLED`): with weight
decay 0 it is Adam, step for step, so its other cells would repeat Adam's. A few more runs, the
mechanism (:func:`mechanism_configs`), record the optimizer's steps (``trace="updates"``,
:mod:`gflib.updates`) through the same loop and results store.

CHOICEs: see :data:`SETTINGS`, :func:`matched_decay`, :func:`outcomes` (a diverged run counts at
chance accuracy; collapse) and :data:`MECHANISM`.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import stats as ss

from .. import stats
from ..analysis import pair_grid, unit_test, variant_flags, variant_name, with_interval
from .. import data, optimizers as registry
from ..config import RunConfig, config_key
from ..reference import STUDY_OPTIMIZERS
from ..store import ResultStore
from ..updates import QUANTITIES
from ..verdict import Verdict, format_p, p_cell

NAME = "optimizers"
TITLE = "EWMA optimizers, high gradient flow, L2 and data augmentation"
CLAIMS = (4,)
OPTIMIZERS = STUDY_OPTIMIZERS + ("adamw",)
VARIANTS = ("NR", "L2", "DA", "BN", "L2_BN", "DA_BN", "DA_L2_SC_BN")
"""The variants of the five study optimizers (the talk's claim-4 figure)."""
DECOUPLED = {"WD_BN": "L2_BN", "DA_WD_SC_BN": "DA_L2_SC_BN"}
"""AdamW's variants (decoupled weight decay) -> the L2 variant of Adam each is set against."""
COMPARED = ("adagrad", "momentum")
"""The optimizers the paper sets Adam's collapse against (they "reach 22-37 %")."""
SETTINGS = {"optimizers": OPTIMIZERS, "lrs": (0.001, 0.1), "variants": VARIANTS,
            "decoupled": tuple(DECOUPLED), "depth": 4, "l2": 1e-4, "widths": 2}
"""CHOICEs: depth 4 and L2 = 1e-4 (as the BatchNorm chapter); ``widths``: the preset's widest
SC-SDC dense widths only, two of its five (where a sparse hidden unit has most inputs: 49 and 72
on average at the ``book`` preset's ratios 0.7 and 0.85 of sparse width 100): 37 optimizer x
variant cells x 2 learning rates in SC-SDC pairs would be 1,480 runs at the ``book`` preset with
all five widths and two seeds, 592 with two."""
TRIMMED = {"optimizers": ("adam", "momentum", "adamw"), "lrs": (0.001, 0.1),
           "variants": ("BN", "L2_BN"), "decoupled": ("WD_BN",), "depth": 2, "l2": 1e-4,
           "widths": 1}
"""The reduced grid of a ``trim`` preset (smoke): 40 runs."""
COLLAPSE_MARGIN = 0.05
"""CHOICE: a run has collapsed when its test accuracy is within 5 points of chance (1 / classes):
below 6 % on CIFAR-100 (the paper's Adam runs: 1-5 %), below 15 % on a 10-class task."""
MECHANISM = {"adam": 0.001, "adamw": 0.001, "sgd": 0.1}
"""CHOICE: the traced runs, optimizer -> learning rate (each one's usual default): one sparse run
each, variant L2_BN (AdamW: WD_BN), the widest pair's sparse member, the first seed."""
FAMILIES = {"EWMA": "Adam, RMSProp, AdamW", "other": "Adagrad, SGD, momentum"}


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def matched_decay(l2: float) -> float:
    """AdamW's decoupled decay that matches an L2 term ``l2 * sum ||W||^2`` in the loss: the
    decay SGD would apply for it, ``w <- w - lr * 2 l2 w``, so ``weight_decay = 2 * l2``
    (torch's AdamW decays ``w <- w - lr * weight_decay * w``). CHOICE: "matched strength"."""
    return 2.0 * l2


def flags(variant: str, l2: float) -> dict:
    """:func:`gflib.analysis.variant_flags` with the WD parts at :func:`matched_decay`."""
    f = variant_flags(variant, l2)
    if f["weight_decay"] > 0:
        f["weight_decay"] = matched_decay(l2)
    return f


def scale(preset):
    """``preset`` with the chapter's dense widths: its ``widths`` widest (:data:`SETTINGS`)."""
    return preset.replace(dense_ratios=sorted(preset.dense_ratios)[-settings(preset)["widths"]:])


def variants_of(optimizer: str, s: dict) -> tuple:
    """The variants ``optimizer`` runs: the decoupled ones for AdamW, the others otherwise."""
    return s["decoupled"] if registry.check(optimizer).decoupled_decay else s["variants"]


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    s = settings(preset)
    bases = [dict(depth=s["depth"], optimizer=o, lr=lr, **flags(v, s["l2"]))
             for lr in s["lrs"] for o in s["optimizers"] for v in variants_of(o, s)]
    return pair_grid(scale(preset), bases, device, data_dir)


def mechanism_configs(preset, device: str = "cpu", data_dir=None) -> list:
    """The traced runs of :data:`MECHANISM` at ``preset``'s scale."""
    s, p = settings(preset), scale(preset)
    out = []
    for optimizer, lr in MECHANISM.items():
        variant = "WD_BN" if registry.check(optimizer).decoupled_decay else "L2_BN"
        base = p.config(device=device, data_dir=data_dir, depth=s["depth"], optimizer=optimizer,
                        lr=lr, **flags(variant, s["l2"]))
        out.append(base.replace(width=p.sparse_width, match_width=max(p.dense_widths),
                                seed=p.seeds[0], trace="updates"))
    return out


def mechanism(plan):
    """The chapter's :class:`gflib.chapters.Plan` of traced runs: ``plan``'s preset, device,
    data folder and results store, :func:`mechanism_configs` as its configs."""
    first = plan.configs[0]
    return dataclasses.replace(plan, configs=mechanism_configs(plan.preset, first.device,
                                                               first.data_dir))


def traces(plan) -> pd.DataFrame:
    """The traced runs of ``plan`` (:func:`mechanism`, after ``plan.run()``) read back from its
    results store: :func:`update_table`."""
    store = ResultStore(plan.store)
    results = [store.get(c) for c in plan.configs]
    if any(r is None for r in results):
        raise ValueError(f"the traced runs are not in {plan.store}: call plan.run() first")
    return update_table(results)


def update_table(results) -> pd.DataFrame:
    """The ``"updates"`` traces (:class:`gflib.updates.UpdateTrace`) of
    :class:`gflib.config.RunResult` s as one long table: one row per (run, layer, epoch,
    quantity) with the run's ``optimizer``, ``lr``, ``kind``, ``seed``, ``key`` (store key),
    ``layer`` (its index, input first), ``name``, ``epoch``, ``quantity``
    (:data:`gflib.updates.QUANTITIES`) and ``value``. Runs without a trace are skipped."""
    rows = []
    for res in results:
        trace = res.trace or {}
        if "dw" not in trace:
            continue
        c = RunConfig(**res.config)
        run = {"key": config_key(c), "optimizer": c.optimizer, "lr": c.lr, "kind": c.kind,
               "seed": c.seed}
        for q in QUANTITIES:
            for i, name in enumerate(trace["layers"]):
                for epoch, value in zip(trace["epochs"], trace.get(q, {}).get(name, [])):
                    rows.append({**run, "layer": i + 1, "name": name, "epoch": epoch,
                                 "quantity": q, "value": value})
    columns = ["key", "optimizer", "lr", "kind", "seed", "layer", "name", "epoch", "quantity",
               "value"]
    return pd.DataFrame(rows, columns=columns)


def outcomes(runs: pd.DataFrame) -> pd.DataFrame:
    """The run table with the columns this chapter computes on: ``variant``, ``family``
    ("EWMA" or "other"), ``dense_width`` (the pair's), ``chance`` (1 / classes), ``acc`` (test
    accuracy; CHOICE: a diverged run, whose weights are unusable, counts at chance),
    ``collapsed`` (``acc`` within :data:`COLLAPSE_MARGIN` of chance) and ``log_egf``
    (log10 of the run's average EGF_2; NaN when diverged)."""
    out = runs.copy()
    out["variant"] = [variant_name(r) for _, r in out.iterrows()]
    out["family"] = [registry.family(o) for o in out["optimizer"]]
    sparse = out["kind"] == "sparse"
    out["dense_width"] = np.where(sparse, out["match_width"].astype(float).fillna(0),
                                  out["width"]).astype(int)
    out["chance"] = [1.0 / data.check(d).classes for d in out["dataset"]]
    diverged = out["diverged"].astype(bool)
    out["acc"] = out["test_acc"].astype(float).where(~diverged, out["chance"])
    out["collapsed"] = out["acc"] < out["chance"] + COLLAPSE_MARGIN
    with np.errstate(divide="ignore", invalid="ignore"):
        out["log_egf"] = np.log10(out["mean_egf_l2"].astype(float).where(~diverged))
    return out


def cells(out: pd.DataFrame) -> pd.DataFrame:
    """One row per (lr, kind, optimizer, variant) cell of :func:`outcomes`: ``family``, ``runs``,
    ``diverged`` (count), ``collapsed`` (share of runs), ``acc`` (mean) and ``egf`` (the
    geometric mean of the runs' average EGF_2, diverged runs left out; NaN if all diverged)."""
    g = out.groupby(["lr", "kind", "optimizer", "variant"])
    table = pd.DataFrame({
        "family": g["family"].first(), "runs": g.size(), "diverged": g["diverged"].sum(),
        "collapsed": g["collapsed"].mean(), "acc": g["acc"].mean(),
        "egf": 10 ** g["log_egf"].mean()})
    return table.reset_index()


def diverged_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The cells of :func:`cells` with diverged runs, one row each: index (lr, kind, optimizer,
    variant), columns ``diverged`` and ``runs`` (integer counts); empty when no run diverged."""
    bad = table[table["diverged"] > 0].set_index(["lr", "kind", "optimizer", "variant"])
    return bad[["diverged", "runs"]].astype(int)


def layout(s: dict) -> dict:
    """The optimizer x variant layout of the chapter's tables (rows, columns)."""
    return {"index": list(s["optimizers"]), "columns": list(s["variants"]) + list(s["decoupled"])}


def cell_table(table: pd.DataFrame, lr: float, kind: str, value: str, s: dict) -> pd.DataFrame:
    """``value`` of :func:`cells` as an optimizer x variant table at one ``lr`` and ``kind``."""
    sub = table[(table["lr"] == lr) & (table["kind"] == kind)]
    return sub.pivot(index="optimizer", columns="variant", values=value).reindex(**layout(s))


def tau_contrast(x, y, family, level: float = 0.95, n_resamples: int = 1000,
                 seed: int = 0) -> dict:
    """Kendall tau of ``x`` with ``y`` within the "EWMA" cells and within the "other" cells
    (``family``: one label per cell), and the contrast ``effect`` = tau(other) - tau(EWMA)
    (> 0: EWMA accuracy falls more with flow). Non-finite cells are dropped. Interval: a
    two-sample percentile bootstrap (scipy.stats.bootstrap, cells resampled within each family;
    resamples with a constant side left out); ``pvalue``: one-sided permutation test of the
    family labels (scipy.stats.permutation_test), H1 effect > 0. Fewer than 3 cells in a family
    gives NaN effect. Returns ``tau_ewma``, ``tau_other``, their intervals (``ewma_low``,
    ``ewma_high``, ``other_low``, ``other_high``: :func:`gflib.stats.kendall_ci`), ``effect``,
    ``ci_low``, ``ci_high``, ``pvalue``, ``n_ewma``, ``n_other``."""
    x, y, family = (np.asarray(a) for a in (x, y, family))
    ok = np.isfinite(x.astype(float)) & np.isfinite(y.astype(float))
    x, y, family = x[ok].astype(float), y[ok].astype(float), family[ok]
    ie, io = np.flatnonzero(family == "EWMA"), np.flatnonzero(family == "other")
    out = {"tau_ewma": stats.kendall(x[ie], y[ie])["tau"],
           "tau_other": stats.kendall(x[io], y[io])["tau"]}
    out["ewma_low"], out["ewma_high"] = stats.kendall_ci(x[ie], y[ie], level=level, seed=seed)
    out["other_low"], out["other_high"] = stats.kendall_ci(x[io], y[io], level=level, seed=seed)
    out.update(n_ewma=int(len(ie)), n_other=int(len(io)))
    nan = float("nan")
    out.update(effect=nan, ci_low=nan, ci_high=nan, pvalue=nan)
    if len(ie) < 3 or len(io) < 3:
        return out

    def contrast(a, b):
        return ss.kendalltau(x[b], y[b]).statistic - ss.kendalltau(x[a], y[a]).statistic

    out["effect"] = float(contrast(ie, io))
    if not np.isfinite(out["effect"]):
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = ss.bootstrap((ie, io), contrast, vectorized=False, n_resamples=n_resamples,
                            confidence_level=level, method="percentile", **stats._rng(seed))
        perm = ss.permutation_test((ie, io), contrast, permutation_type="independent",
                                   vectorized=False, n_resamples=n_resamples,
                                   alternative="greater", **stats._rng(seed))
    alpha = (1 - level) / 2
    dist = boot.bootstrap_distribution
    out["ci_low"], out["ci_high"] = (float(v) for v in
                                     np.nanpercentile(dist, [100 * alpha, 100 * (1 - alpha)]))
    out["pvalue"] = float(perm.pvalue)
    return out


def sensitivity(table: pd.DataFrame, kinds=("sparse", "dense")) -> pd.DataFrame:
    """:func:`tau_contrast` of the cells' average EGF with their accuracy, per (lr, kind): one
    row each (the learning rates apart: they can point opposite ways)."""
    rows = []
    for (lr, kind), g in table.groupby(["lr", "kind"]):
        if kind in kinds:
            with np.errstate(divide="ignore", invalid="ignore"):
                flow = np.log10(g["egf"].to_numpy(float))
            rows.append({"lr": lr, "kind": kind, **tau_contrast(flow, g["acc"], g["family"])})
    return pd.DataFrame(rows).set_index(["lr", "kind"]) if rows else pd.DataFrame()


def _signed(x: float, digits: int = 2) -> str:
    return f"{round(x, digits) + 0.0:+.{digits}f}" if np.isfinite(x) else "n/a"


def _interval(low: float, high: float, digits: int = 2) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    return f"{_signed(low, digits)} to {_signed(high, digits)}"


def sensitivity_table(sens: pd.DataFrame) -> pd.DataFrame:
    """:func:`sensitivity` as the chapter shows it, one column per (lr, kind): the contrast
    tau(others) - tau(EWMA) with its 95 % interval and one-sided p first, then each family's
    Kendall tau with its interval, and the cells each family has. Taus to 2 decimals, as
    text."""
    rows = {}
    for (lr, kind), r in sens.iterrows():
        rows[(f"lr {lr:g}", kind)] = {
            "tau others - tau EWMA": _signed(r["effect"]),
            "95 % CI": _interval(r["ci_low"], r["ci_high"]),
            "p (H1: > 0)": p_cell(r["pvalue"]),
            "tau EWMA": _signed(r["tau_ewma"]),
            "EWMA 95 % CI": _interval(r["ewma_low"], r["ewma_high"]),
            "tau others": _signed(r["tau_other"]),
            "others 95 % CI": _interval(r["other_low"], r["other_high"]),
            "cells (EWMA + others)": f"{r['n_ewma']:.0f} + {r['n_other']:.0f}"}
    return pd.DataFrame(rows)


UNIT = ("variant", "dense_width", "seed")
UNIT_NAME = "matched comparisons (variant x dense width x seed)"
"""What n counts in the collapse and AdamW tests: the compared runs share initial weights, mask
and data order, so the pairing removes those; comparisons at one seed share the sparse net's
initial weights across widths and variants, so they are not independent replicates and p is
optimistic (the per-seed means are shown beside)."""


def collapse_deficit(out: pd.DataFrame, lr: float, kind: str = "sparse") -> pd.DataFrame:
    """Adam's accuracy deficit on the L2 variants of :data:`DECOUPLED` (L2_BN, DA_L2_SC_BN):
    one row per matched comparison (:data:`UNIT`) with ``deficit`` = mean accuracy of
    :data:`COMPARED` - Adam's (> 0: Adam worse), in [−1, 1]."""
    keys = list(UNIT)
    sub = out[(out["lr"] == lr) & (out["kind"] == kind)
              & out["variant"].isin(list(DECOUPLED.values()))]
    adam = sub[sub["optimizer"] == "adam"].set_index(keys)["acc"]
    others = sub[sub["optimizer"].isin(COMPARED)].groupby(keys)["acc"].mean()
    return (others - adam).dropna().rename("deficit").reset_index()


def coupled_vs_decoupled(out: pd.DataFrame) -> pd.DataFrame:
    """Adam + L2 against AdamW + decoupled decay of matched strength, per matched comparison:
    one row per (lr, kind, AdamW variant, dense width, seed) with ``acc_adam``, ``acc_adamw``,
    ``log_egf_adam``, ``log_egf_adamw``, ``diverged_*``, ``collapsed_*``, ``gain`` (AdamW
    - Adam accuracy) and ``flow_drop`` (log10 EGF of Adam - of AdamW: > 0, AdamW's flow lower).
    ``variant`` is AdamW's."""
    keys = ["lr", "kind", "dense_width", "seed"]
    cols = ["acc", "log_egf", "diverged", "collapsed"]
    parts = []
    for wd, l2 in DECOUPLED.items():
        a = out[(out["optimizer"] == "adam") & (out["variant"] == l2)][keys + cols]
        w = out[(out["optimizer"] == "adamw") & (out["variant"] == wd)][keys + cols]
        m = a.merge(w, on=keys, suffixes=("_adam", "_adamw"), validate="one_to_one")
        parts.append(m.assign(variant=wd))
    m = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(m):
        m["gain"] = m["acc_adamw"] - m["acc_adam"]
        m["flow_drop"] = m["log_egf_adam"] - m["log_egf_adamw"]
    return m


def coupled_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """:func:`coupled_vs_decoupled` summarised per (lr, kind, pair of variants): the gain
    (AdamW - Adam, points) first, mean accuracy of each side (%), the flow ratio AdamW / Adam of
    their geometric-mean EGF (3 significant digits), the diverged runs of each side (``Adam /
    AdamW``, as text) and the matched comparisons ``n``."""
    if not len(pairs):
        return pd.DataFrame()
    p = pairs.assign(pair=[f"{DECOUPLED[v]} | {v}" for v in pairs["variant"]])
    g = p.groupby(["lr", "kind", "pair"])
    ratio = significant((10 ** -g["flow_drop"].mean()).to_frame())["flow_drop"]
    diverged = [f"{a} / {w}" for a, w in zip(g["diverged_adam"].sum(),
                                               g["diverged_adamw"].sum())]
    return pd.DataFrame({
        "gain (points)": (100 * g["gain"].mean()).round(1) + 0.0,
        "Adam + L2 acc %": (100 * g["acc_adam"].mean()).round(1),
        "AdamW + WD acc %": (100 * g["acc_adamw"].mean()).round(1),
        "EGF AdamW / Adam": ratio,
        "diverged": pd.Series(diverged, index=ratio.index),
        "n": g.size()})


def reactions(table: pd.DataFrame, kind: str = "sparse") -> pd.DataFrame:
    """How each optimizer's mean accuracy changes (points) when L2 or DA is added to a variant:
    rows (lr, optimizer), columns ``L2 - NR``, ``L2_BN - BN``, ``DA - NR``, ``DA_BN - BN``
    (NaN where the grid lacks a variant)."""
    sub = table[table["kind"] == kind]
    acc = sub.pivot_table(index=["lr", "optimizer"], columns="variant", values="acc")
    out = pd.DataFrame(index=acc.index)
    for with_, base in (("L2", "NR"), ("L2_BN", "BN"), ("DA", "NR"), ("DA_BN", "BN")):
        if with_ in acc and base in acc:
            out[f"{with_} - {base}"] = 100 * (acc[with_] - acc[base])
    return out.dropna(how="all")


def per_seed(table: pd.DataFrame, value: str) -> pd.Series:
    """Mean of ``value`` per seed (the independent draws), to set beside a test over matched
    comparisons."""
    return table.groupby("seed")[value].mean()


TESTS = {"collapse": ("deficit", "accuracy Adam trails Adagrad and momentum (L2 variants)"),
         "adamw": ("gain", "accuracy AdamW + WD gains over Adam + L2"),
         "flow": ("flow_drop", "log10 EGF of Adam + L2 minus AdamW + WD")}
"""The matched-comparison tests of :func:`tests`: name -> (column tested, what it means)."""


def tests(deficit: dict, coupled: pd.DataFrame, lrs) -> pd.DataFrame:
    """:func:`gflib.analysis.unit_test` (H1: > 0) of each of :data:`TESTS` on sparse nets, per
    learning rate, at the unit :data:`UNIT`: one row per (test, lr) with ``meaning``,
    ``effect``, ``ci_low``, ``ci_high``, ``pvalue``, ``n`` and the mean per seed
    (``seed <s>``: the independent draws, for reading beside p)."""
    rows = []
    for lr in lrs:
        c = coupled[(coupled["lr"] == lr) & (coupled["kind"] == "sparse")] if len(coupled) \
            else coupled
        for name, table in (("collapse", deficit[lr]), ("adamw", c), ("flow", c)):
            value, meaning = TESTS[name]
            row = {"test": name, "lr": lr, "meaning": meaning, "effect": np.nan,
                   "ci_low": np.nan, "ci_high": np.nan, "pvalue": np.nan, "n": 0}
            if len(table) and value in table:
                res = unit_test(table, value, UNIT)
                res.pop("means")
                row.update(res)
                row.update({f"seed {k}": v for k, v in per_seed(table, value).items()})
            rows.append(row)
    return pd.DataFrame(rows).set_index(["test", "lr"])


TEST_LABELS = {"collapse": ("Adam's deficit (points)", lambda e: 100 * e, 1),
               "adamw": ("AdamW's gain (points)", lambda e: 100 * e, 1),
               "flow": ("AdamW's EGF lower by (%)", lambda e: 100 * (1 - 10.0 ** -e), 1)}
"""How :func:`tests_table` shows each test: label, the effect's transform and decimals. The flow
test's effect (mean log10 EGF of Adam + L2 minus AdamW + WD) is shown as the percent by which
AdamW's geometric-mean EGF is lower, ``100 (1 - 10^-effect)`` (monotone: p is the same)."""


def tests_table(t: pd.DataFrame) -> pd.DataFrame:
    """:func:`tests` as the chapter shows it, as text: index (lr, test) with the labels of
    :data:`TEST_LABELS`, columns the mean effect with its 95 % interval
    (:func:`gflib.analysis.with_interval`), one-sided p, ``n`` and the mean per seed (the
    independent draws), each through the test's transform (accuracy tests in points, the flow
    test in percent lower EGF)."""
    seeds = [c for c in t.columns if c.startswith("seed ")]
    rows, index = [], []
    for (name, lr), r in t.iterrows():
        label, f, d = TEST_LABELS[name]
        shown = {k: round(f(r[k]), d) + 0.0 for k in ("effect", "ci_low", "ci_high")}
        index.append((f"{lr:g}", label))
        rows.append({"effect (95 % CI)": with_interval(pd.DataFrame([shown]), "effect",
                                                       digits=d).iloc[0],
                     "p": p_cell(r["pvalue"]), "n": int(r["n"]),
                     "per seed": ", ".join(_signed(f(r[c]), d) for c in seeds
                                           if np.isfinite(r[c]))})
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["lr", "test"]))


def lr_labels(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``lr`` index level written as people write rates (0.1, not 0.100)."""
    return table.rename(index="{:g}".format, level="lr")


def significant(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``table``'s numbers rounded to ``digits`` significant digits (NaN stays NaN)."""
    return table.apply(lambda col: col.map(
        lambda x: float(f"{x:.{digits}g}") if np.isfinite(x) else x))


def _status(effect, low, high, p, paper_form) -> str:
    """The verdict rules for an effect whose sign > 0 supports the claim."""
    if not np.isfinite(effect):
        return "not run"
    if np.isfinite(p) and p < 0.05 and effect > 0:
        return "reproduced" if paper_form else "partly"
    if effect > 0 or not (np.isfinite(low) and np.isfinite(high)) or low <= 0 <= high:
        return "not distinguishable"
    return "not reproduced"


TOPICS = {"sensitivity": "sensitivity", "collapse": "collapse", "adamw": "AdamW"}
"""The sub-claims, in the words each verdict sentence starts with."""
PAPER = {
    "sensitivity": "EWMA optimizers are sensitive to high gradient flow: Adam's highest-flow "
                   "variants collapse, Adagrad's and momentum's do not (talk, CIFAR-100 MLPs)",
    "collapse": "with Adam, L2_BN and DA_L2_SC_BN collapse to 1-5 % test accuracy on CIFAR-100 "
                "and show the highest average gradient flow; Adagrad and SGD + momentum reach "
                "22-37 % with them",
    "adamw": "AdamW's WD_BN and DA_WD_SC_BN reach 15-28 % on CIFAR-100, with lower gradient "
             "flow than Adam's L2 variants",
}


def paper_reading() -> pd.DataFrame:
    """The paper's approximate numbers for this claim (read off the talk's plots, CIFAR-100
    MLPs): one row per group of cells, indexed by optimizer."""
    return pd.DataFrame([
        ("Adam", "L2_BN, DA_L2_SC_BN", "1-5 %", "highest"),
        ("Adagrad, SGD + momentum", "L2_BN, DA_L2_SC_BN", "22-37 %", ""),
        ("AdamW", "WD_BN, DA_WD_SC_BN", "15-28 %", "lower than Adam's"),
    ], columns=["optimizer", "variants", "test accuracy", "average gradient flow"]
    ).set_index("optimizer")


def collapse_facts(table: pd.DataFrame, lr: float, kind: str = "sparse") -> dict:
    """Adam's cells at ``lr`` (:func:`cells`): whether its L2 variants (L2_BN, DA_L2_SC_BN)
    collapsed (most runs) and are its highest-flow variants (``highest``); their mean accuracy
    ``acc`` and diverged runs; ``others``: the mean accuracy of :data:`COMPARED` on the same
    variants; ``egf`` and ``egf_rest``: the lowest average EGF_2 of Adam's L2 variants and the
    highest of its other variants (NaN where none)."""
    at = table[(table["lr"] == lr) & (table["kind"] == kind)]
    others = at[at["optimizer"].isin(COMPARED)
                & at["variant"].isin(list(DECOUPLED.values()))]["acc"].mean()
    adam = at[at["optimizer"] == "adam"].set_index("variant")
    coupled = [v for v in DECOUPLED.values() if v in adam.index]
    rest = adam.drop(index=coupled)
    nan = float("nan")
    if not coupled:
        return {"collapsed": False, "highest": False, "acc": nan, "diverged": 0,
                "others": float(others), "egf": nan, "egf_rest": nan}
    egf = adam.loc[coupled, "egf"]
    highest = bool(len(rest) and egf.notna().all() and egf.min() > rest["egf"].max())
    return {"collapsed": bool((adam.loc[coupled, "collapsed"] >= 0.5).all()), "highest": highest,
            "acc": float(adam.loc[coupled, "acc"].mean()),
            "diverged": int(adam.loc[coupled, "diverged"].sum()), "others": float(others),
            "egf": float(egf.min()), "egf_rest": float(rest["egf"].max()) if len(rest) else nan}


def _verdict(topic: str, lr: float, scale_name: str, effect: float, interval: tuple, p: float,
             n: int, unit: str, effect_unit: str, sentence, paper_form: bool) -> Verdict:
    """One sub-claim's :class:`gflib.verdict.Verdict` (status by :func:`_status`); ``sentence``
    is called only when there is an effect (else: "not run", too few data at this scale)."""
    ok = np.isfinite(effect)
    effect = round(float(effect), 10) if ok else effect
    return Verdict(
        claim=4, scale=scale_name,
        status=_status(effect, interval[0], interval[1], p, paper_form), effect=effect,
        effect_unit=effect_unit, interval=interval, p=p, n=int(n), unit=unit,
        sentence=(f"{TOPICS[topic]} at lr {lr:g}: " + (sentence() if ok else
                                                "too few cells or runs at this scale to test")),
        paper=PAPER[topic])


def _points_verdict(topic, lr, scale_name, res, effect_unit, sentence, paper_form) -> Verdict:
    """:func:`_verdict` of a test row ``res`` of accuracy differences, in points."""
    return _verdict(topic, lr, scale_name, 100 * res["effect"],
                    (100 * res["ci_low"], 100 * res["ci_high"]), res["pvalue"], res["n"],
                    UNIT_NAME, effect_unit, sentence, paper_form)


def verdicts(a: dict, scale_name: str) -> list:
    """The claim's :class:`gflib.verdict.Verdict` s from :func:`analyse`'s ``a``: for each
    learning rate (apart: they can point opposite ways), the sensitivity contrast
    (:func:`tau_contrast`), Adam's collapse (:func:`collapse_deficit`) and AdamW against Adam
    (:func:`coupled_vs_decoupled`), each on sparse nets."""
    out = []
    table = a["cells"]
    for lr in a["lrs"]:
        sens = a["sensitivity"]
        s = sens.loc[(lr, "sparse")] if (lr, "sparse") in sens.index else None
        if s is not None:
            out.append(_verdict(
                "sensitivity", lr, scale_name, s["effect"], (s["ci_low"], s["ci_high"]),
                s["pvalue"], s["n_ewma"] + s["n_other"],
                "optimizer x variant cells (each averaged over widths and seeds)",
                "Kendall tau, others minus EWMA",
                lambda: (f"across sparse cells, average EGF and test accuracy have Kendall tau "
                         f"{s['tau_ewma']:+.2f} for the EWMA optimizers ({FAMILIES['EWMA']}) "
                         f"and {s['tau_other']:+.2f} for {FAMILIES['other']}"),
                bool(s["ewma_high"] < 0)))
        res = a["tests"].loc[("collapse", lr)]
        facts = collapse_facts(table, lr)
        out.append(_points_verdict(
            "collapse", lr, scale_name, res, "accuracy points Adam trails Adagrad and momentum",
            lambda: (f"with L2_BN and DA_L2_SC_BN, Adam's sparse nets reach {facts['acc']:.0%} "
                     f"test accuracy against {facts['others']:.0%} for Adagrad and momentum "
                     f"({facts['diverged']} of Adam's runs diverged); they "
                     f"{'did' if facts['collapsed'] else 'did not'} collapse to chance and "
                     f"{'are' if facts['highest'] else 'are not'} Adam's highest-flow variants"),
            facts["collapsed"] and facts["highest"]))
        c = a["coupled"]
        c = c[(c["lr"] == lr) & (c["kind"] == "sparse")] if len(c) else c
        res, flow = a["tests"].loc[("adamw", lr)], a["tests"].loc[("flow", lr)]
        lower = bool(flow["pvalue"] < 0.05 and flow["effect"] > 0)
        adamw_ok = bool(len(c) and c["collapsed_adamw"].mean() < 0.5)
        out.append(_points_verdict(
            "adamw", lr, scale_name, res, "accuracy points AdamW gains over Adam",
            lambda: (f"with decoupled decay {a['weight_decay']:g}, AdamW reaches "
                     f"{c['acc_adamw'].mean():.0%} on sparse nets against "
                     f"{c['acc_adam'].mean():.0%} for Adam with L2 {a['l2']:g}, with "
                     f"{10 ** -flow['effect']:.2g} times Adam's average EGF "
                     f"({format_p(flow['pvalue'])} for lower flow)"),
            facts["collapsed"] and adamw_ok and lower))
    return out


def analyse(results, preset) -> dict:
    """Everything the chapter shows from one :class:`gflib.results.Results` (live or stored).

    Keys: ``outcomes`` (:func:`outcomes`), ``cells`` (:func:`cells`), ``tables`` ({(lr, kind):
    {"acc", "egf", "diverged", "runs", "collapsed"}: optimizer x variant tables}),
    ``sensitivity`` (:func:`sensitivity`), ``reactions`` (:func:`reactions`), ``deficit``
    ({lr: :func:`collapse_deficit`}), ``coupled`` (:func:`coupled_vs_decoupled`) and
    ``coupled_table``, ``tests`` (:func:`tests`), ``diverged`` (:func:`diverged_cells`),
    ``paper`` (:func:`paper_reading`), ``lrs``,
    ``l2``, ``weight_decay``, ``verdicts``, ``n_runs``, ``n_diverged``.
    """
    s = settings(preset)
    out = outcomes(results.runs)
    table = cells(out)
    lrs = sorted(out["lr"].unique())
    tables = {(lr, kind): {v: cell_table(table, lr, kind, v, s)
                           for v in ("acc", "egf", "diverged", "runs", "collapsed")}
              for lr in lrs for kind in ("sparse", "dense")}
    coupled = coupled_vs_decoupled(out)
    deficit = {lr: collapse_deficit(out, lr) for lr in lrs}
    a = {
        "outcomes": out, "cells": table, "tables": tables, "sensitivity": sensitivity(table),
        "reactions": reactions(table), "deficit": deficit, "coupled": coupled,
        "coupled_table": coupled_table(coupled), "tests": tests(deficit, coupled, lrs),
        "diverged": diverged_cells(table),
        "paper": paper_reading(), "lrs": lrs, "l2": s["l2"],
        "weight_decay": matched_decay(s["l2"]),
        "n_runs": len(out), "n_diverged": int(out["diverged"].sum()),
    }
    a["verdicts"] = verdicts(a, preset.name)
    return a


def report(analysis: dict, label: str) -> None:
    """Show one stored summary: accuracy and flow per optimizer x variant for sparse nets at each
    learning rate, flow against accuracy, Adam + L2 against AdamW + WD, and the verdicts."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .. import plots
    from ..verdict import show_verdicts

    for lr in analysis["lrs"]:
        t = analysis["tables"][(lr, "sparse")]
        plots.optimizer_cells(t["acc"], t["egf"], t["diverged"], t["runs"],
                              f"{label} (stored), sparse nets, lr {lr:g}")
        plt.show()
    plots.flow_vs_accuracy(analysis["cells"], kind="sparse")
    plt.show()
    display(lr_labels(analysis["coupled_table"]))
    show_verdicts(analysis["verdicts"])
