"""Chapter: EWMA optimizers, high gradient flow, L2 and data augmentation (claim 4).

The grid: the study's five optimizers and AdamW x the study's two learning rates x variants x
SC-SDC pairs (two of the preset's dense widths) x seeds, at one depth. The five run the variants
:data:`VARIANTS`; AdamW runs only its decoupled-decay variants (:data:`DECOUPLED`): with weight
decay 0 it is Adam, step for step, so its other cells would repeat Adam's. A few more runs, the
mechanism (:func:`mechanism_configs`), record the optimizer's steps (``trace="updates"``,
:mod:`gflib.updates`) through the same loop and results store.

The claim is carried by the optimizer (its family: it keeps an EWMA of squared gradients or not,
:attr:`gflib.optimizers.OptimizerSpec.ewma`), so its tests are made at the unit **optimizer x
seed** (the runs of one optimizer and seed share initial weights, masks and data order; widths and
variants are fixed factors) with a permutation test of the family labels; AdamW against Adam is
one pair of optimizers, so its test is at the unit **seed**.

CHOICEs: see :data:`SETTINGS`, :func:`outcomes` (a diverged run counts at chance accuracy;
collapse) and :data:`MECHANISM`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import data, optimizers as registry, plots, stats
from ..analysis import (ChapterAnalysis, Counts, label, matched_decay, not_run, pair_grid,
                        unit_test, unit_verdict, variant_flags, variant_name, signed)
from ..config import RunConfig, config_key
from ..reference import STUDY_OPTIMIZERS
from ..store import ResultStore
from ..updates import QUANTITIES
from ..verdict import LEVEL, Verdict, adjust, p_cell, show_verdicts

NAME = "optimizers"
TITLE = "EWMA optimizers, high gradient flow, L2 and data augmentation"
CLAIMS = (4,)
OPTIMIZERS = STUDY_OPTIMIZERS + ("adamw",)
VARIANTS = ("NR", "L2", "DA", "BN", "L2_BN", "DA_BN", "DA_L2_SC_BN")
"""The variants of the five study optimizers (the talk's claim-4 figure)."""
DECOUPLED = {"WD_BN": "L2_BN", "DA_WD_SC_BN": "DA_L2_SC_BN"}
"""AdamW's variants (decoupled weight decay) -> the L2 variant of Adam each is set against."""
REACTIONS = {"L2": "NR", "DA": "NR", "L2_BN": "BN", "DA_BN": "BN", "DA_L2_SC_BN": "BN"}
"""Each variant with L2 or augmentation -> the variant it is compared with (the same without
them; DA_L2_SC_BN against BN, the grid having no SC_BN)."""
COLLAPSING = ("adam", "rmsprop")
"""The EWMA optimizers the paper says collapse (AdamW is the one said to escape)."""
SETTINGS = {"optimizers": OPTIMIZERS, "lrs": (0.001, 0.1), "variants": VARIANTS,
            "decoupled": tuple(DECOUPLED), "depth": 4, "l2": 1e-4, "widths": 2}
"""CHOICEs: depth 4 and L2 = 1e-4 (as the BatchNorm chapter), AdamW's decay at matched strength
(:func:`gflib.analysis.matched_decay`); ``widths``: the preset's widest SC-SDC dense widths
only, two of its five (where a sparse hidden unit has most inputs: 49 and 72 on average at the
``book`` preset's ratios 0.7 and 0.85 of sparse width 100): 37 optimizer x variant cells x 2
learning rates in SC-SDC pairs would be 1,480 runs at the ``book`` preset with all five widths
and two seeds, 592 with two."""
TRIMMED = {"optimizers": ("adam", "momentum", "adamw"), "lrs": (0.001, 0.1),
           "variants": ("BN", "L2_BN"), "decoupled": ("WD_BN",), "depth": 2, "l2": 1e-4,
           "widths": 1}
"""The reduced grid of a ``trim`` preset (smoke): 40 runs."""
COLLAPSE_MARGIN = 0.05
"""CHOICE: a run has collapsed when its test accuracy is within 5 points of chance (1 / classes):
below 6 % on CIFAR-100 (the paper's Adam runs: 1-5 %), below 15 % on a 10-class task."""
MECHANISM = ("adam", "adamw", "sgd")
"""CHOICE: the traced runs, each optimizer at its default learning rate: one sparse run each,
variant L2_BN (AdamW: WD_BN), the widest pair's sparse member, the first seed."""
UNIT = ("optimizer", "seed")
UNIT_NAME = "optimizer x seed units"
SEED_NAME = "seeds"
PAPER = {
    "collapse": "with Adam, L2_BN and DA_L2_SC_BN collapse to 1-5 % test accuracy on CIFAR-100 "
                "and show the highest average gradient flow; Adagrad and SGD + momentum reach "
                "22-37 % with them (read off the talk's plots)",
    "adamw": "AdamW's WD_BN and DA_WD_SC_BN reach 15-28 % on CIFAR-100, with lower gradient "
             "flow than Adam's L2 variants",
    "sensitivity": "EWMA optimizers are sensitive to high gradient flow, which may explain their "
                   "bad reaction to L2 and augmentation",
}
TESTS = ("collapse", "AdamW's escape", "sensitivity to high flow")


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def scale(preset):
    """``preset`` with the chapter's dense widths: its ``widths`` widest (:data:`SETTINGS`)."""
    return preset.replace(dense_ratios=sorted(preset.dense_ratios)[-settings(preset)["widths"]:])


def variants_of(optimizer: str, s: dict) -> tuple:
    """The variants ``optimizer`` runs: the decoupled ones for AdamW, the others otherwise."""
    return s["decoupled"] if registry.check(optimizer).decoupled_decay else s["variants"]


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    s = settings(preset)
    bases = [dict(depth=s["depth"], optimizer=o, lr=lr, **variant_flags(v, s["l2"]))
             for lr in s["lrs"] for o in s["optimizers"] for v in variants_of(o, s)]
    return pair_grid(scale(preset), bases, device, data_dir)


def mechanism_configs(preset, device: str = "cpu", data_dir=None) -> list:
    """The traced runs of :data:`MECHANISM` at ``preset``'s scale."""
    s, p = settings(preset), scale(preset)
    out = []
    for optimizer in MECHANISM:
        spec = registry.check(optimizer)
        variant = "WD_BN" if spec.decoupled_decay else "L2_BN"
        base = p.config(device=device, data_dir=data_dir, depth=s["depth"], optimizer=optimizer,
                        lr=spec.default_lr, **variant_flags(variant, s["l2"]))
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
    ("EWMA" or "other", :func:`gflib.optimizers.family`), ``dense_width`` (the pair's),
    ``chance`` (1 / classes), ``acc`` (test accuracy; CHOICE: a diverged run, whose weights are
    unusable, counts at chance), ``collapsed`` (``acc`` within :data:`COLLAPSE_MARGIN` of chance)
    and ``log_egf`` (log10 of the run's average EGF_2; NaN when diverged: a collapsed run's flow
    is kept, since the claim is about it)."""
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


def families(names) -> dict:
    """The optimizers ``names`` by family, each in the order given: ``{"EWMA": [...], "other":
    [...]}`` (:func:`gflib.optimizers.family`, read from each one's spec)."""
    out = {"EWMA": [], "other": []}
    for name in dict.fromkeys(names):
        out[registry.family(name)].append(name)
    return out


def in_words(names) -> str:
    """The optimizers ``names`` as the book writes them, ``"Adagrad, SGD and momentum"``
    (``"none"`` for none)."""
    words = [label(n) for n in names]
    if len(words) < 2:
        return "".join(words) or "none"
    return f"{', '.join(words[:-1])} and {words[-1]}"


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


def harm(out: pd.DataFrame, lr: float, kind: str = "sparse") -> pd.DataFrame:
    """How much accuracy each optimizer x seed unit loses to L2 and augmentation at ``lr``: per
    unit, ``harm`` = the mean over :data:`REACTIONS` and widths of accuracy(base) -
    accuracy(variant) (fraction; > 0: the variant hurts), with its ``family``. A unit without
    such a pair (AdamW, which runs only its decay variants) has no row."""
    sub = out[(out["lr"] == lr) & (out["kind"] == kind)]
    acc = sub.pivot_table(index=[*UNIT, "dense_width"], columns="variant", values="acc")
    diffs = [acc[base] - acc[variant] for variant, base in REACTIONS.items()
             if variant in acc and base in acc]
    if not diffs:
        return pd.DataFrame(columns=[*UNIT, "harm", "family"])
    per = pd.concat(diffs, axis=1).mean(axis=1).groupby(level=list(UNIT)).mean().dropna()
    table = per.rename("harm").reset_index()
    table["family"] = [registry.family(o) for o in table["optimizer"]]
    return table


def unit_taus(out: pd.DataFrame, lr: float, kind: str = "sparse") -> pd.DataFrame:
    """Per optimizer x seed unit at ``lr``: Kendall tau between its runs' log10 average EGF_2 and
    their accuracy over its cells (variants x widths), with the unit's ``family``."""
    sub = out[(out["lr"] == lr) & (out["kind"] == kind)]
    rows = []
    for (optimizer, seed), g in sub.groupby(list(UNIT)):
        res = stats.kendall(g["log_egf"].to_numpy(float), g["acc"].to_numpy(float))
        rows.append({"optimizer": optimizer, "seed": seed, "tau": res["tau"], "n": res["n"],
                     "family": registry.family(optimizer)})
    return pd.DataFrame(rows, columns=["optimizer", "seed", "tau", "n", "family"])


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


def collapse_facts(table: pd.DataFrame, lr: float, kind: str = "sparse") -> dict:
    """What the paper's form of the collapse asks, at ``lr`` (:func:`cells`): for each of
    :data:`COLLAPSING`, whether its L2 variants (L2_BN, DA_L2_SC_BN) collapsed (most runs) and
    are its highest-flow variants; ``collapsed`` and ``highest`` (all of them), ``acc`` (their
    mean accuracy), ``diverged`` (their diverged runs), ``others`` (the mean accuracy of the
    optimizers of the other family, :func:`families`, on the same variants), ``egf`` and
    ``egf_rest`` (Adam's: the lowest average EGF_2 of its L2 variants and the highest of its
    others)."""
    at = table[(table["lr"] == lr) & (table["kind"] == kind)]
    l2 = list(DECOUPLED.values())
    others = at[(at["family"] == "other") & at["variant"].isin(l2)]["acc"].mean()
    collapsed, highest, egf, rest = [], [], {}, {}
    for optimizer in COLLAPSING:
        own = at[at["optimizer"] == optimizer].set_index("variant")
        mine = [v for v in l2 if v in own.index]
        if not mine:
            continue
        e = own.loc[mine, "egf"]
        others_egf = own.drop(index=mine)["egf"]
        collapsed.append(bool((own.loc[mine, "collapsed"] >= 0.5).all()))
        highest.append(bool(len(others_egf) and e.notna().all()
                            and e.min() > others_egf.max()))
        egf[optimizer], rest[optimizer] = float(e.min()), float(others_egf.max())
    mine = at[at["optimizer"].isin(COLLAPSING) & at["variant"].isin(l2)]
    return {"collapsed": bool(collapsed) and all(collapsed),
            "highest": bool(highest) and all(highest),
            "acc": float(mine["acc"].mean()), "diverged": int(mine["diverged"].sum()),
            "others": float(others), "egf": egf.get("adam", np.nan),
            "egf_rest": rest.get("adam", np.nan)}


@dataclass
class Analysis(ChapterAnalysis):
    """Everything the chapter shows from one :class:`gflib.results.Results`.

    ``outcomes`` (:func:`outcomes`), ``cells`` (:func:`cells`), ``tables`` ({(lr, kind):
    {"acc", "egf", "diverged", "runs", "collapsed"}: optimizer x variant tables}), ``harm``
    ({lr: :func:`harm`}), ``collapse`` ({lr: :func:`gflib.stats.label_contrast` of the harm,
    EWMA against the others}), ``facts`` ({lr: :func:`collapse_facts`}), ``coupled``
    (:func:`coupled_vs_decoupled`), ``escape`` and ``flow_drop`` ({lr: :class:`UnitTest` at the
    seed of AdamW's gain and of its lower flow}), ``taus`` ({lr: :func:`unit_taus`}),
    ``sensitivity`` ({lr: the label contrast of the units' taus, others minus EWMA}),
    ``reactions``, ``diverged`` (:func:`diverged_cells`), ``lrs``, ``l2``, ``weight_decay``,
    ``families`` (:func:`families` of the optimizers that ran)."""

    outcomes: pd.DataFrame
    cells: pd.DataFrame
    tables: dict
    harm: dict
    collapse: dict
    facts: dict
    coupled: pd.DataFrame
    escape: dict
    flow_drop: dict
    taus: dict
    sensitivity: dict
    reactions: pd.DataFrame
    diverged: pd.DataFrame
    lrs: list
    l2: float
    weight_decay: float
    families: dict


def reactions(table: pd.DataFrame, kind: str = "sparse") -> pd.DataFrame:
    """How each optimizer's mean accuracy changes (points) when L2 or DA is added to a variant:
    rows (lr, optimizer), one column per :data:`REACTIONS` pair (NaN where the grid lacks one)."""
    sub = table[table["kind"] == kind]
    acc = sub.pivot_table(index=["lr", "optimizer"], columns="variant", values="acc")
    out = pd.DataFrame(index=acc.index)
    for with_, base in REACTIONS.items():
        if with_ in acc and base in acc:
            out[f"{with_} - {base}"] = 100 * (acc[with_] - acc[base])
    return out.dropna(how="all")


def _contrast_verdict(res: dict, test: str, scale: str, form: str, effect_unit: str,
                      factor: float, **words) -> Verdict:
    n_labels = res["n_labelled"]
    needs = stats.units_needed(lambda n: stats.min_p_labels(n, max(1, round(
        n * n_labels / max(res["n"], 1)))), LEVEL, start=2)
    return Verdict(claim=4, test=test, scale=scale, form=form, effect=factor * res["effect"],
                   effect_unit=effect_unit, interval=(factor * res["ci_low"],
                                                      factor * res["ci_high"]),
                   p=res["pvalue"], n=res["n"], unit=UNIT_NAME, min_p=res["min_p"],
                   needs=needs, **words)


def verdicts(a: Analysis) -> list:
    """The claim's verdicts for each learning rate (apart: they can point opposite ways), the
    paper's form first: the collapse of Adam and RMSProp with L2 and augmentation, against their
    own variants without them and against the other optimizers, with its flow (:func:`harm`,
    at optimizer x seed); AdamW's escape (at seed); then the sensitivity of EWMA accuracy to
    high flow (:func:`unit_taus`, at optimizer x seed)."""
    out = []
    for lr in a.lrs:
        f = a.facts[lr]
        h = a.collapse[lr]
        out.append(_contrast_verdict(
            h, f"{TESTS[0]} at lr {lr:g}", a.scale, "paper",
            "accuracy points that L2 and augmentation cost EWMA optimizers, minus the others",
            100, paper_condition="Adam's and RMSProp's L2_BN and DA_L2_SC_BN runs collapse to "
                                 "chance and are their highest-flow variants",
            condition_holds=f["collapsed"] and f["highest"],
            weaker="EWMA optimizers lose more accuracy to L2 and augmentation than the others",
            sentence=(f"with L2_BN and DA_L2_SC_BN, Adam's and RMSProp's sparse nets reach "
                      f"{f['acc']:.0%} test accuracy against {f['others']:.0%} for "
                      f"{in_words(a.families['other'])} ({f['diverged']} of their runs "
                      f"diverged); they "
                      f"{'did' if f['collapsed'] else 'did not'} collapse to chance and "
                      f"{'are' if f['highest'] else 'are not'} their highest-flow variants"),
            paper=PAPER["collapse"]))
        t, drop = a.escape[lr], a.flow_drop[lr]
        c = a.coupled[(a.coupled["lr"] == lr) & (a.coupled["kind"] == "sparse")] \
            if len(a.coupled) else a.coupled
        escaped = bool(len(c) and c["collapsed_adamw"].mean() < 0.5)
        # the condition is about the pair compared: Adam's own L2 cells (most runs collapsed,
        # as collapse_facts counts a cell), not RMSProp's
        adam_collapsed = bool(len(c) and c.groupby("variant")["collapsed_adam"].mean()
                              .ge(0.5).all())
        lower = bool(drop.n and drop.effect > 0)
        out.append(unit_verdict(
            t, 4, f"{TESTS[1]} at lr {lr:g}", a.scale, "paper", SEED_NAME,
            "accuracy points AdamW + decoupled decay gains over Adam + L2", 100,
            paper_condition="Adam collapsed while AdamW did not, with lower flow",
            condition_holds=adam_collapsed and escaped and lower,
            weaker="AdamW is more accurate than Adam with L2",
            sentence=(f"with decoupled decay {a.weight_decay:g}, AdamW's sparse nets reach "
                      f"{c['acc_adamw'].mean():.0%} against {c['acc_adam'].mean():.0%} for Adam "
                      f"with L2 {a.l2:g}, with {10 ** -drop.effect:.2g} times Adam's average "
                      "EGF") if len(c) else "no AdamW runs at this scale",
            paper=PAPER["adamw"]))
        s = a.sensitivity[lr]
        taus = a.taus[lr]
        ewma = taus[taus["family"] == "EWMA"]["tau"].mean()
        other = taus[taus["family"] == "other"]["tau"].mean()
        out.append(_contrast_verdict(
            s, f"{TESTS[2]} at lr {lr:g}", a.scale, "direct",
            "Kendall tau of flow with accuracy, others minus EWMA", 1,
            sentence=(f"within each optimizer x seed, average EGF and test accuracy have mean "
                      f"Kendall tau {signed(ewma, 2)} for the EWMA optimizers "
                      f"({registry.labels(a.families['EWMA'])}) and "
                      f"{signed(other, 2)} for "
                      f"the others"), paper=PAPER["sensitivity"]))
    return adjust(out)


def analyse(results, preset) -> Analysis:
    """The chapter's :class:`Analysis` of ``results`` (live or stored) at ``preset``."""
    s = settings(preset)
    runs = results.runs
    counts = Counts.of(runs)
    out = outcomes(runs)
    table = cells(out)
    lrs = sorted(out["lr"].unique())
    coupled = coupled_vs_decoupled(out)
    sparse = coupled[coupled["kind"] == "sparse"] if len(coupled) else coupled
    harms = {lr: harm(out, lr) for lr in lrs}
    taus = {lr: unit_taus(out, lr) for lr in lrs}
    a = Analysis(
        preset.name, counts, [], out, table,
        {(lr, kind): {v: cell_table(table, lr, kind, v, s)
                      for v in ("acc", "egf", "diverged", "runs", "collapsed")}
         for lr in lrs for kind in ("sparse", "dense")},
        harms, {lr: stats.label_contrast(h["harm"], h["family"] == "EWMA")
                for lr, h in harms.items()},
        {lr: collapse_facts(table, lr) for lr in lrs}, coupled,
        {lr: unit_test(sparse[sparse["lr"] == lr] if len(sparse) else sparse, "gain",
                       ["seed"]) for lr in lrs},
        {lr: unit_test(sparse[sparse["lr"] == lr] if len(sparse) else sparse, "flow_drop",
                       ["seed"]) for lr in lrs},
        taus, {lr: stats.label_contrast(-t["tau"], t["family"] == "EWMA") for lr, t in
               taus.items()},
        reactions(table), diverged_cells(table), lrs, s["l2"], matched_decay(s["l2"]),
        families(out["optimizer"]))
    a.verdicts = verdicts(a)
    if counts.all_diverged:
        a.verdicts = [not_run(4, f"{t} at lr {lr:g}", a.scale, "paper", UNIT_NAME,
                              "not run: every run diverged") for lr in lrs for t in TESTS]
    return a


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


def harm_table(a: Analysis) -> pd.DataFrame:
    """The collapse test's units for a page: per learning rate and optimizer, the accuracy
    points L2 and augmentation cost it (mean over seeds), with its family."""
    rows = []
    for lr, h in a.harm.items():
        for optimizer, g in h.groupby("optimizer", sort=False):
            rows.append({"lr": f"{lr:g}", "optimizer": label(optimizer),
                         "family": g["family"].iloc[0],
                         "cost of L2 / DA (points)": round(100 * g["harm"].mean(), 1) + 0.0,
                         "per seed": ", ".join(f"{signed(100 * v, 1)}" for v in g["harm"])})
    return pd.DataFrame(rows).set_index(["lr", "optimizer"]) if rows else pd.DataFrame()


def lr_labels(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``lr`` index level written as people write rates (0.1, not 0.100)."""
    return table.rename(index="{:g}".format, level="lr")


def significant(table: pd.DataFrame, digits: int = 3, missing: str | None = None
                ) -> pd.DataFrame:
    """``table``'s numbers rounded to ``digits`` significant digits; NaN stays NaN, or reads
    ``missing`` (for a reader: a quantity the row does not have, such as SGD's sqrt(v))."""
    rounded = table.apply(lambda col: col.map(
        lambda x: float(f"{x:.{digits}g}") if np.isfinite(x) else x))
    return rounded if missing is None else rounded.astype(object).where(rounded.notna(), missing)


def paper_reading() -> pd.DataFrame:
    """The paper's approximate numbers for this claim (read off the talk's plots, CIFAR-100
    MLPs): one row per group of cells, indexed by optimizer."""
    return pd.DataFrame([
        ("Adam", "L2_BN, DA_L2_SC_BN", "1-5 %", "highest"),
        ("Adagrad, SGD + momentum", "L2_BN, DA_L2_SC_BN", "22-37 %", ""),
        ("AdamW", "WD_BN, DA_WD_SC_BN", "15-28 %", "lower than Adam's"),
    ], columns=["optimizer", "variants", "test accuracy", "average gradient flow"]
    ).set_index("optimizer")


def tests_table(a: Analysis) -> pd.DataFrame:
    """The verdicts' tests for a page: per learning rate and test, the effect with its 95 %
    interval, p (q), n at its unit and the smallest p the design can reach."""
    rows, index = [], []
    for v in a.verdicts:
        lr = v.test.rsplit("lr ", 1)[-1]
        index.append((lr, v.test.rsplit(" at lr", 1)[0]))
        rows.append({"effect (95 % CI)": v.effect_text().split(" ", 1)[0]
                     + (f" ({v.interval_text()})" if v.interval_text() else ""),
                     "p (q)": v.p_text().removeprefix("p = ") or "n/a",
                     "n": v.n_text(), "smallest p": p_cell(v.min_p)})
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["lr", "test"]))


def paper_numbers(verdicts) -> dict:
    """The paper's number for each verdict's test, as the answer table shows it."""
    return {v.test: ("Adam 1-5 %, others 22-37 % (CIFAR-100)" if "collapse" in v.test
                     else "AdamW 15-28 %, lower flow" if "AdamW" in v.test
                     else "said, no test given") for v in verdicts}


def answer_words(a: Analysis) -> str:
    """The answer in a sentence per collapse test: its status and reason."""
    return f"At `{a.scale}` ({a.counts.text()}): " + " ".join(
        f"{v.test}: {v.status}, because {v.reason}." for v in a.verdicts
        if v.test.startswith("collapse"))


def cells_caption(a: Analysis, lr: float, label_: str) -> str:
    """What :func:`report`'s heat maps at ``lr`` find: the EWMA optimizers' accuracy against
    the others' on the L2 variants, and Adam's flow on its L2 cells against its other cells
    (Markdown; the facts of :func:`collapse_facts`)."""
    f = a.facts[lr]
    return (f"`{label_}`, sparse nets at lr {lr:g}: on L2_BN and DA_L2_SC_BN, "
            f"{in_words(COLLAPSING)} reach {100 * f['acc']:.1f} % test accuracy against "
            f"{100 * f['others']:.1f} % for {in_words(a.families['other'])}; the average EGF₂ "
            f"of Adam's two L2 cells is at least {f['egf']:.2g}, that of its other variants at "
            f"most {f['egf_rest']:.2g} (the paper: Adam's L2 cells collapse and have its highest "
            "flow).")


def flow_caption(a: Analysis, label_: str) -> str:
    """What :func:`report`'s flow-against-accuracy figure finds: per learning rate, the mean
    per-unit Kendall tau of flow with accuracy for the EWMA optimizers and the others
    (Markdown)."""
    parts = []
    for lr in a.lrs:
        tau = a.taus[lr].groupby("family")["tau"].mean() if len(a.taus[lr]) else pd.Series()
        parts.append(f"at lr {lr:g} {signed(tau.get('EWMA', np.nan))} for the EWMA optimizers "
                     f"against {signed(tau.get('other', np.nan))} for the others")
    return (f"`{label_}`: flow against accuracy, sparse nets, one point per optimizer x variant "
            "cell. Mean Kendall tau between a run's flow and its accuracy within each optimizer x "
            f"seed unit: {'; '.join(parts)} (the lower the EWMA tau against the others', the more "
            "EWMA accuracy falls as flow rises).")


def report(a: Analysis, label_: str) -> None:
    """Show one stored summary: accuracy and flow per optimizer x variant for sparse nets at each
    learning rate, flow against accuracy, the collapse's units, the tests and the verdicts.
    Figures go through :func:`gflib.plots.show` as ``cells_0``, ``cells_1``, ... (one per
    learning rate) and ``flow``."""
    from IPython.display import Markdown, display

    for i, lr in enumerate(a.lrs):
        t = a.tables[(lr, "sparse")]
        plots.show(plots.optimizer_cells(t["acc"], t["egf"], t["diverged"], t["runs"],
                                         f"{label_}, sparse nets, lr {lr:g}"),
                   f"cells_{i}", cells_caption(a, lr, label_))
    plots.show(plots.flow_vs_accuracy(a.cells, kind="sparse"), "flow", flow_caption(a, label_))
    display(Markdown("What L2 and augmentation cost each optimizer (sparse nets):"),
            harm_table(a), Markdown("The tests:"), tests_table(a))
    show_verdicts(a.verdicts)

