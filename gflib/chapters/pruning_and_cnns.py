"""Chapter 6: from MLPs to CNNs, from random masks to magnitude pruning (claim 6).

Two grids in one sweep:

- **Pruning** (MLPs, :data:`METHODS`): at each SC-SDC dense width, the dense net; the sparse net
  with a random fixed mask (SC-SDC); and the same wide net trained dense, then magnitude-pruned
  to the SC-SDC densities, one-shot or gradually, per layer or globally (:mod:`gflib.pruning`),
  then trained on. Every optimizer of :data:`SETTINGS` at its usual learning rate.
- **CNNs** (:class:`gflib.models.CNN`, the talk's Conv32-64-64-128-128): SC-SDC pairs of CNNs
  (the sparse CNN's channels widened, its kernels masked: :func:`gflib.scsdc.matched_member`),
  with and without BatchNorm and skip connections, and with Swish and PReLU, under SGD.

Wide ResNet-50 (:func:`wide_resnet50_configs`) joins the grid at the ``paper`` preset only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import data, presets, train
from ..analysis import (PAIR_UNIT, ChapterAnalysis, CellTests, Counts, UnitTest,
                        bn_gain_verdict, bn_gains, cell_tests, cell_verdict, effect_by, label,
                        not_run, pair_configs, pairs, pq_table, significance_shares, unit_test,
                        usable, variant_flags, with_interval, signed)
from ..analysis import margin_table as analysis_margin_table
from ..config import RunConfig
from ..correlations import egf_margins, margin_of, margin_verdict
from ..flops import train_flops
from ..flow import MEASURES
from ..models import maskable_weights
from ..pruning import density_at, progress
from ..results import LAYER_PREFIX
from ..scsdc import layer_table
from ..verdict import Verdict, adjust, format_p, p_cell, show_verdicts

NAME = "pruning_and_cnns"
TITLE = "From MLPs to CNNs, from random masks to magnitude pruning"
CLAIMS = (6,)
METHODS = {
    "dense": None,
    "random": {},
    "oneshot_layer": dict(prune="oneshot", prune_scope="layer"),
    "oneshot_global": dict(prune="oneshot", prune_scope="global"),
    "gradual_layer": dict(prune="gradual", prune_scope="layer"),
    "gradual_global": dict(prune="gradual", prune_scope="global"),
}
"""How each net of a pruning cell gets its sparsity: ``dense`` (the SC-SDC dense partner, no
mask), ``random`` (the SC-SDC sparse member: a random mask fixed before training) and magnitude
pruning of the same wide net, trained dense first (``None``: the dense partner)."""
PRUNED = tuple(m for m in METHODS if m.startswith(("oneshot", "gradual")))
SETTINGS = {"depth": 2, "optimizers": {"adam": 0.001, "sgd": 0.1}, "methods": tuple(METHODS),
            "oneshot_at": 0.3, "gradual": (0.1, 0.5), "cnn_width": 24, "cnn_ratios": 3,
            "cnn_optimizer": ("sgd", 0.1), "cnn_variants": ("NR", "BN", "SC", "SC_BN"),
            "cnn_activations": ("swish", "prelu"), "activation_variant": "BN"}
"""CHOICEs (the paper gives no pruning or CNN settings): pruning on depth-2 MLPs with Adam (lr
0.001) and SGD (0.1); one-shot pruning after 30 % of the epochs; gradual pruning on Zhu &
Gupta's cubic schedule from 10 % to 50 % of the epochs (masks change at epoch boundaries).
CNNs: sparse width 24 (channels 8-15-15-31-31, a quarter of the talk's: on 2 CPU cores a
Fashion-MNIST CNN at width 32 took 20-50 s a run, over the 30-min budget for the grid) against
the preset's three widest dense ratios; SGD at 0.1; variants none, BN, skip (SC), SC_BN with ReLU; Swish and PReLU
with BN (the activations chapter's finding is about SGD)."""
PAPER_CNN_WIDTH = 100
"""At the ``paper`` preset the CNN is the talk's, channels 32-64-64-128-128."""
TRIMMED = {"depth": 2, "optimizers": {"sgd": 0.1},
           "methods": ("dense", "random", "oneshot_layer", "gradual_global"),
           "oneshot_at": 0.3, "gradual": (0.1, 0.5), "cnn_width": 16, "cnn_ratios": 1,
           "cnn_optimizer": ("sgd", 0.1), "cnn_variants": ("NR", "BN"),
           "cnn_activations": ("swish",), "activation_variant": "BN"}
"""The reduced grid of a ``trim`` preset (smoke)."""
WRN = {"dataset": "cifar10", "optimizer": "momentum", "lr": 0.1, "density": 0.1, "epochs": 100,
       "methods": ("dense", "random", "oneshot_global")}
"""CHOICEs for Wide ResNet-50-2 (``paper`` preset only; the paper gives none): CIFAR-10, SGD +
momentum at 0.1, 100 epochs, 10 % density (random fixed mask, or global one-shot magnitude
pruning after 30 % of the epochs) against the dense net."""
WRN_REASON = ("Wide ResNet-50-2 runs at the paper preset only: it needs CIFAR-10 (data_dir) "
              "and a GPU")
UNIT_CNN = ("seed",)
UNIT_CNN_NAME = "seeds"
"""The unit of the CNN BatchNorm test: one optimizer (SGD), so the seed (the comparisons of one
seed share its initial weights, masks and data order; widths and variants are fixed factors)."""
MATCH = ("optimizer", "dense_width", "seed")
"""What a pruning comparison matches: the same optimizer, dense width and seed."""
UNIT_PRUNE = ("optimizer", "seed")
UNIT_PRUNE_NAME = "optimizer x seed units"
"""The unit of the pruning comparisons: widths are fixed factors, averaged within it."""
ALPHA = 0.05
TESTS = ("EGF tracks magnitude-pruned MLPs", "EGF tracks sparse CNNs",
         "BatchNorm matters more for sparse CNNs", "Swish with SGD favours sparse CNNs",
         "PReLU with SGD favours sparse CNNs", "Wide ResNet-50")
"""The sub-tests, in the order of :attr:`Analysis.verdicts` (activations: those run)."""


def settings(preset) -> dict:
    return preset.pick(SETTINGS, TRIMMED)


def schedule(epochs: int, s: dict) -> dict:
    """``{method: RunConfig pruning fields}`` at ``epochs`` (see :data:`SETTINGS`): one-shot
    after at least one dense epoch, gradual over at least one epoch, both ending before the last
    epoch (masks change between epochs, so a net pruned later would never train at its masks).
    ValueError when ``s`` has a pruning method and ``epochs`` < 2, which leaves no such
    schedule."""
    if epochs < 2 and any(m in PRUNED for m in s["methods"]):
        raise ValueError(f"the pruning grid needs epochs >= 2 (magnitude pruning trains dense for "
                         f"at least one epoch, then at least one at its masks), got epochs="
                         f"{epochs}")
    last = epochs - 1
    at = min(max(1, round(s["oneshot_at"] * epochs)), last)
    start, end = (round(f * epochs) for f in s["gradual"])
    start = min(start, last)
    end = min(max(end, start + 1), last)
    out = {}
    for method in s["methods"]:
        fields = METHODS[method]
        if fields and fields["prune"] == "oneshot":
            fields = dict(fields, prune_start=at)
        elif fields and fields["prune"] == "gradual":
            fields = dict(fields, prune_start=start, prune_end=end)
        out[method] = fields
    return out


def cnn_width(preset, s: dict) -> int:
    return PAPER_CNN_WIDTH if preset.name == "paper" else s["cnn_width"]


def cnn_dense_widths(preset, s: dict) -> list:
    """The CNN's dense widths: the preset's ``cnn_ratios`` widest ratios of :func:`cnn_width`."""
    width = cnn_width(preset, s)
    ratios = sorted(preset.dense_ratios)[-s["cnn_ratios"]:]
    return sorted({max(1, round(r * width)) for r in ratios})


def pruning_configs(preset, device="cpu", data_dir=None) -> list:
    """The pruning grid (module doc): per optimizer, dense width and seed, one run per method."""
    s = settings(preset)
    plan = schedule(preset.epochs, s)
    out = []
    for optimizer, lr in s["optimizers"].items():
        base = preset.config(device=device, data_dir=data_dir, depth=s["depth"],
                             optimizer=optimizer, lr=lr)
        for d in preset.dense_widths:
            for seed in preset.seeds:
                for method, fields in plan.items():
                    if fields is None:
                        out.append(base.replace(width=d, seed=seed))
                    else:
                        out.append(base.replace(width=preset.sparse_width, match_width=d,
                                                seed=seed, **fields))
    return out


def cnn_configs(preset, device="cpu", data_dir=None) -> list:
    """The CNN grid (module doc): SC-SDC pairs of CNNs per variant and activation cell."""
    s = settings(preset)
    optimizer, lr = s["cnn_optimizer"]
    cells = [("relu", v) for v in s["cnn_variants"]]
    cells += [(a, s["activation_variant"]) for a in s["cnn_activations"]]
    out = []
    for activation, variant in cells:
        base = preset.config(device=device, data_dir=data_dir, model="cnn", optimizer=optimizer,
                             lr=lr, activation=activation, **variant_flags(variant, 0.0))
        out += pair_configs(base, cnn_width(preset, s), cnn_dense_widths(preset, s),
                            preset.seeds)
    return out


def wide_resnet50_configs(preset, device="cpu", data_dir=None) -> list:
    """Wide ResNet-50-2 runs of :data:`WRN` at the ``paper`` preset (its seeds); [] elsewhere."""
    if preset.name != "paper":
        return []
    epochs = WRN["epochs"]
    at = max(1, round(SETTINGS["oneshot_at"] * epochs))
    out = []
    for seed in preset.seeds:
        base = RunConfig(dataset=WRN["dataset"], model="wrn50", optimizer=WRN["optimizer"],
                         lr=WRN["lr"], epochs=epochs, batch_size=preset.batch_size, seed=seed,
                         device=device, data_dir=data_dir, tf32=preset.tf32)
        out += [base, base.replace(density=WRN["density"]),
                base.replace(density=WRN["density"], prune="oneshot", prune_scope="global",
                             prune_start=at)]
    return out


def grid(preset, device: str = "cpu", data_dir=None) -> list:
    """Every run of the chapter at ``preset`` (see the module doc)."""
    return (pruning_configs(preset, device, data_dir) + cnn_configs(preset, device, data_dir)
            + wide_resnet50_configs(preset, device, data_dir))


def wide_resnet50_cost(preset, tflops: float = 13.0) -> dict:
    """What the Wide ResNet-50 cell would cost: ``runs``, ``tflop`` (training FLOPs of all its
    runs, counted by :func:`gflib.flops.train_flops`) and ``gpu_hours`` at ``tflops`` TFLOP/s
    sustained (default: the stacked MLP throughput measured on one H100)."""
    configs = wide_resnet50_configs(presets.get("paper"))
    total = sum(train_flops(c, n_train=data.check(c.dataset).n_train) for c in configs)
    return {"runs": len(configs), "tflop": total / 1e12,
            "gpu_hours": total / (tflops * 1e12) / 3600, "tflops": tflops}


def wide_resnet50_note(preset) -> str:
    """Why the Wide ResNet-50 cell does not run at ``preset`` and what it would cost (Markdown);
    empty at the ``paper`` preset."""
    if preset.name == "paper":
        return ""
    cost = wide_resnet50_cost(preset)
    return (f"{WRN_REASON}. Its {cost['runs']} runs ({', '.join(WRN['methods'])} x 3 seeds, "
            f"{WRN['epochs']} epochs of CIFAR-10) would train {cost['tflop']:,.0f} TFLOP: about "
            f"{cost['gpu_hours']:.1f} GPU-hours at {cost['tflops']:.0f} TFLOP/s (training "
            f"arithmetic only, counted by `gflib.flops.train_flops`).")


def method_of(row) -> str:
    """The :data:`METHODS` name of a run-table row."""
    if row["kind"] == "dense":
        return "dense"
    if row["prune"] == "none":
        return "random"
    return f"{row['prune']}_{row['prune_scope']}"


def parts(runs: pd.DataFrame) -> dict:
    """``{"pruning": MLP runs + method, dense_width; "cnn": CNN runs; "wrn": WRN-50 runs}``."""
    mlp = runs[runs["model"] == "mlp"].copy()
    if len(mlp):
        mlp["method"] = mlp.apply(method_of, axis=1)
        mlp["dense_width"] = np.where(mlp["kind"] == "sparse",
                                      mlp["match_width"].astype(float).fillna(0),
                                      mlp["width"]).astype(int)
    return {"pruning": mlp, "cnn": runs[runs["model"] == "cnn"],
            "wrn": runs[runs["model"] == "wrn50"]}


def method_table(pruning: pd.DataFrame, order) -> pd.DataFrame:
    """Per method: median test accuracy (%), median average EGF_2, median final density and
    dead hidden units, runs and diverged runs (runs that diverged or were pruned off their target
    density left out of the medians, :func:`gflib.analysis.usable`)."""
    ok = pruning[usable(pruning)]
    table = ok.groupby("method").agg(test_acc=("test_acc", "median"),
                                     egf_l2=("mean_egf_l2", "median"),
                                     final_density=("final_density", "median"),
                                     dead_units=("dead_units", "median"))
    table["test_acc"] *= 100
    counts = pruning.groupby("method").agg(runs=("key", "size"), diverged=("diverged", "sum"))
    out = table.join(counts, how="outer").reindex([m for m in order if m in counts.index])
    return out.astype({"runs": int, "diverged": int})


def layer_densities(pruning: pd.DataFrame, order) -> pd.DataFrame:
    """Median achieved density of each weight tensor (input to output) per method, at the
    narrowest dense width (where pruning cuts deepest)."""
    narrow = pruning[pruning["dense_width"] == pruning["dense_width"].min()]
    cols = sorted((c for c in narrow if c.startswith(LAYER_PREFIX)),
                  key=lambda c: int(c[len(LAYER_PREFIX):]))
    table = narrow.groupby("method")[cols].median().dropna(axis=1, how="all")
    cols = list(table.columns)
    table.columns = [f"layer {int(c[len(LAYER_PREFIX):]) + 1}" for c in cols]
    return table.reindex([m for m in order if m in table.index])


def against(pruning: pd.DataFrame, method: str, reference: str,
            metric: str = "test_acc") -> pd.DataFrame:
    """Matched comparisons of ``method`` with ``reference`` (:data:`MATCH`): one row each with
    ``diff`` = ``metric`` of ``method`` - of ``reference`` (NaN where either is not
    :func:`gflib.analysis.usable`)."""
    keys = list(MATCH)
    pruning = pruning.assign(usable=usable(pruning))
    cols = keys + [metric, "diverged", "usable"]
    a = pruning.loc[pruning["method"] == method, cols]
    b = pruning.loc[pruning["method"] == reference, cols]
    m = a.merge(b, on=keys, suffixes=("", "_ref"), validate="one_to_one")
    bad = ~(m["usable"] & m["usable_ref"])
    m["diff"] = (m[metric] - m[f"{metric}_ref"]).where(~bad)
    return m


def comparisons(pruning: pd.DataFrame, methods) -> pd.DataFrame:
    """Each pruning method against the random mask and against the dense net, in test accuracy
    points, at the unit :data:`UNIT_PRUNE`: effect (mean of the unit means of the matched
    differences), 95 % bootstrap interval, one-sided Wilcoxon p (H1: the method is ahead), n
    units and the smallest p the design can reach."""
    rows = []
    for method in methods:
        for reference in ("random", "dense"):
            t = unit_test(against(pruning, method, reference), "diff", UNIT_PRUNE)
            rows.append({"method": method, "against": reference,
                         "effect": 100 * t.effect, "ci_low": 100 * t.ci_low,
                         "ci_high": 100 * t.ci_high, "p": t.pvalue, "n": t.n,
                         "min_p": t.min_p})
    return pd.DataFrame(rows)


def pruned_margins(pruning: pd.DataFrame) -> pd.DataFrame:
    """Chapter 1's EGF margin (:func:`gflib.correlations.egf_margins`) for three sets of sparse
    nets: magnitude-pruned, random masks, and both; with the dense nets."""
    rows = []
    dense = pruning[pruning["method"] == "dense"]
    for label, methods in (("pruned", PRUNED), ("random mask", ("random",)),
                           ("pruned + random", PRUNED + ("random",))):
        sparse = pruning[pruning["method"].isin(methods)]
        if sparse.empty:
            continue
        m = egf_margins(pd.concat([sparse, dense]))[0]
        rows.append(m.assign(sparse_nets=label))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def after_pruning(pruning: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``pruning`` with every ``mean_<measure>`` re-averaged over the scheduled epochs after the
    last pruning epoch of the grid (the latest ``prune_end`` or one-shot ``prune_start``), the
    same window for every run: the flow of the pruned nets once their masks are final. Runs with
    no scheduled epoch in the window keep NaN."""
    pruned = pruning[pruning["prune"] != "none"]
    if pruned.empty:
        return pruning.iloc[:0]
    cut = int(np.where(pruned["prune"] == "gradual", pruned["prune_end"],
                       pruned["prune_start"]).max())
    late = curves[curves["key"].isin(pruning["key"]) & (curves["epoch"] > cut)]
    means = late.pivot_table(index="key", columns="measure", values="value", aggfunc="mean")
    out = pruning.copy()
    for m in MEASURES:
        out[f"mean_{m}"] = out["key"].map(means[m]) if m in means else np.nan
    out.attrs["after_epoch"] = cut
    return out


def cnn_bn(cnn_paired: pd.DataFrame) -> dict:
    """BatchNorm's extra gain for sparse CNNs (:func:`gflib.analysis.bn_gains`, ReLU cells):
    ``gains`` (per matched comparison), ``gain`` (:class:`gflib.analysis.UnitTest` at
    :data:`UNIT_CNN`), ``by_width``, ``cells`` (sparse > dense per variant) and ``shares`` of
    significant cells (by q) without and with BN."""
    relu = cnn_paired[cnn_paired["activation"] == "relu"] if len(cnn_paired) else cnn_paired
    gains = bn_gains(relu) if len(relu) else pd.DataFrame()
    cells = cell_tests(relu, "optimizer", "variant") if len(relu) else None
    return {"gains": gains, "gain": unit_test(gains, "excess", UNIT_CNN),
            "by_width": effect_by(gains, "excess", ["seed"], "dense_width") if len(gains)
            else pd.DataFrame(),
            "cells": cells,
            "shares": significance_shares(cells.q) if cells is not None
            else pd.Series({"without BN": np.nan, "with BN": np.nan})}


def wrn_verdict(wrn: pd.DataFrame, scale: str) -> Verdict:
    """Wide ResNet-50: "not run" where the grid has none; else magnitude pruning against the
    random mask at equal density, accuracy points over seeds (no test with three seeds)."""
    if wrn.empty:
        return not_run(6, TESTS[5], scale, "direct", "seeds", f"not run here. {WRN_REASON}")
    ok = wrn[usable(wrn)]
    pruned = ok[ok["prune"] != "none"].groupby("seed")["test_acc"].mean()
    random = ok[(ok["prune"] == "none") & (ok["kind"] == "sparse")].groupby("seed")["test_acc"]
    t = unit_test((pruned - random.mean()).dropna().rename("d").reset_index(), "d", ["seed"])
    return Verdict(claim=6, test=TESTS[5], scale=scale, form="direct", effect=100 * t.effect,
                   effect_unit="accuracy points, magnitude-pruned - random mask (WRN-50)",
                   interval=(100 * t.ci_low, 100 * t.ci_high), p=t.pvalue, n=t.n,
                   unit="seeds", min_p=t.min_p, needs=t.needs,
                   sentence=f"Wide ResNet-50: magnitude pruning is "
                            f"{signed(100 * t.effect, 1)} points "
                            f"from the random mask at {WRN['density']:.0%} density",
                   paper="the results extend to Wide ResNet-50 (no numbers given)")


def verdicts(a, s: dict) -> list:
    """The claim's verdicts (:data:`TESTS`): the EGF margin of magnitude-pruned MLPs (the
    headline) and of sparse CNNs, BatchNorm's extra gain for sparse CNNs, the activations with
    SGD on CNNs, Wide ResNet-50."""
    no_number = "the findings extend to {what} (no numbers given)"
    pruned = a.margins[a.margins["sparse_nets"] == "pruned"] if len(a.margins) else a.margins
    out = [margin_verdict(pruned, "test_acc", 6, a.scale, TESTS[0], "paper",
                          "magnitude-pruned MLPs", unit="runs, resampled",
                          paper=no_number.format(what="magnitude pruning")),
           margin_verdict(a.cnn_margins, "test_acc", 6, a.scale, TESTS[1], "paper",
                          "sparse CNNs", unit="runs, resampled",
                          paper=no_number.format(what="CNNs")),
           bn_gain_verdict(a.cnn_bn["gain"], a.cnn_bn["shares"], 6, a.scale, TESTS[2],
                           UNIT_CNN_NAME, nets="CNNs",
                           paper="the BatchNorm finding extends to CNNs (no numbers given)")]
    optimizer = s["cnn_optimizer"][0]
    for activation in s["cnn_activations"]:
        test = f"{label(activation)} with SGD favours sparse CNNs"
        if not len(a.cnn_paired):  # a grid (or part of one) without CNN pairs
            out.append(not_run(6, test, a.scale, "paper", PAIR_UNIT,
                               "not run: the grid has no CNN pairs"))
            continue
        out.append(cell_verdict(a.cnn_paired, optimizer, activation, "optimizer", "activation",
                                6, a.scale, test, nets="CNNs",
                                paper="the MLP finding extends to CNNs (no numbers given)"))
    out.append(wrn_verdict(a.wrn, a.scale))
    return adjust(out)


@dataclass
class Analysis(ChapterAnalysis):
    """Everything the chapter shows from one :class:`gflib.results.Results`.

    ``pruning`` (MLP runs with ``method``), ``methods`` (:func:`method_table`), ``by_width``
    (median test accuracy % per dense width x method), ``layers`` (:func:`layer_densities`),
    ``comparisons`` (:func:`comparisons`), ``margins`` (:func:`pruned_margins`),
    ``late_margins`` (the same on the flow after the last pruning epoch ``after_epoch``:
    :func:`after_pruning`); ``cnn`` (CNN runs), ``cnn_paired``, ``cnn_bn`` (:func:`cnn_bn`),
    ``cnn_cells`` (sparse > dense per variant and activation cell), ``cnn_margins``; ``wrn``."""

    pruning: pd.DataFrame
    methods: pd.DataFrame
    by_width: pd.DataFrame
    layers: pd.DataFrame
    comparisons: pd.DataFrame
    margins: pd.DataFrame
    late_margins: pd.DataFrame
    after_epoch: int | None
    cnn: pd.DataFrame
    cnn_paired: pd.DataFrame
    cnn_bn: dict
    cnn_cells: CellTests | None
    cnn_margins: pd.DataFrame
    wrn: pd.DataFrame


def analyse(results, preset) -> Analysis:
    """The chapter's :class:`Analysis` of ``results`` (live or stored) at ``preset``."""
    s = settings(preset)
    runs = results.runs
    counts = Counts.of(runs)
    p = parts(runs)
    pruning, cnn = p["pruning"], p["cnn"]
    order = [m for m in METHODS if m in set(pruning.get("method", []))]
    ok = pruning[usable(pruning)] if len(pruning) else pruning
    by_width = (100 * ok.pivot_table(index="dense_width", columns="method", values="test_acc",
                                     aggfunc="median")).reindex(columns=order) if len(ok) \
        else pd.DataFrame()
    margins = pruned_margins(pruning) if len(pruning) else pd.DataFrame()
    late = after_pruning(pruning, results.curves) if len(pruning) else pruning
    cnn_paired = pairs(cnn) if len(cnn) else pd.DataFrame()
    if len(cnn_paired):
        cnn_paired["cell"] = cnn_paired["variant"].where(cnn_paired["activation"] == "relu",
                                                         cnn_paired["activation"] + "_"
                                                         + cnn_paired["variant"])
    a = Analysis(
        preset.name, counts, [], pruning,
        method_table(pruning, order) if len(pruning) else pd.DataFrame(), by_width,
        layer_densities(pruning, order) if len(pruning) else pd.DataFrame(),
        comparisons(pruning, [m for m in order if m in PRUNED]) if len(pruning)
        else pd.DataFrame(), margins,
        pruned_margins(late) if len(late) else pd.DataFrame(),
        late.attrs.get("after_epoch") if len(late) else None, cnn, cnn_paired,
        cnn_bn(cnn_paired),
        cell_tests(cnn_paired, "optimizer", "cell") if len(cnn_paired) else None,
        egf_margins(cnn)[0] if len(cnn) else pd.DataFrame(), p["wrn"])
    a.verdicts = verdicts(a, s)
    if counts.all_diverged:
        a.verdicts = [not_run(6, t, a.scale, "paper", "runs", "not run: every run diverged")
                      for t in TESTS]
    return a


def paper_numbers(verdicts) -> dict:
    """The paper's number for each of :data:`TESTS`: it gave none for these extensions."""
    return {test: "the claim extends (no numbers given)" for test in TESTS}


def report(a: Analysis, label_: str) -> None:
    """Show one stored summary: the pruning table, the comparisons, the EGF margins, the CNN
    tests and the verdicts."""
    from IPython.display import Markdown, display

    tables = [("Per method: median test accuracy, average EGF, density, dead units, runs:",
               method_view(a.methods)),
              (f"Each pruning method against the random mask and the dense net, over "
               f"{UNIT_PRUNE_NAME}:", comparison_view(a.comparisons)),
              ("EGF margin over the gradient norm (|tau| with the target):",
               margin_table(a.margins))]
    if a.cnn_cells is not None:
        tables.append((f"CNNs, sparse > dense, p (q), {a.cnn_cells.n_text()} width x seed pairs "
                       "per cell:", pq_table(a.cnn_cells)))
    for caption, table in tables:
        display(Markdown(caption), table)
    show_verdicts(a.verdicts)
    display(Markdown(f"**What the `{label_}` numbers say:** {reading(a)}"))


def pruned_margin_of(margins: pd.DataFrame, sparse_nets: str, target: str = "test_acc",
                     kind: str = "sparse") -> dict:
    """One margin of :func:`pruned_margins` for ``sparse_nets``, as
    :func:`gflib.correlations.margin_of` gives it (``margin``, ``ci_low``, ``ci_high``, ``n``;
    NaN and n 0 where the table lacks it)."""
    nets = margins[margins["sparse_nets"] == sparse_nets] if len(margins) else margins
    return margin_of(nets, target, kind)


def margin_table(margins: pd.DataFrame, kinds=("sparse",)) -> pd.DataFrame:
    """The EGF margins against the weights baseline for the nets of ``kinds``, as
    :func:`gflib.analysis.margin_table` shows them (the margin with its 95 % interval first, then
    n runs, best EGF and best norm), one row per set of sparse nets (where ``margins`` has
    ``sparse_nets``; ``pruned + random`` shown as ``both``), kind (where ``kinds`` has several)
    and target."""
    if margins.empty:
        return margins
    m = margins[margins["kind"].isin(kinds) & (margins["baseline"] == "weights")]
    keys = (["sparse_nets"] if "sparse_nets" in m else []) + (
        ["kind"] if len(kinds) > 1 else []) + ["target"]
    m = m[keys + ["margin", "ci_low", "ci_high", "n", "best_egf", "best_base"]]
    m = m.replace({"target": {"test_loss": "test loss", "test_acc": "test acc"}})
    if "sparse_nets" in m:  # "pruned + random" would widen the table past the column
        m = m.replace({"sparse_nets": {"pruned + random": "both"}})
    return analysis_margin_table(m.rename(columns={"sparse_nets": "sparse nets"}))


def method_view(methods: pd.DataFrame) -> pd.DataFrame:
    """:func:`method_table` for reading: accuracy to 0.1 %, EGF and density to 3 digits, counts as
    integers, human column names."""
    out = pd.DataFrame({
        "test acc (%)": methods["test_acc"].round(1),
        "EGF₂": methods["egf_l2"].round(3),
        "density": methods["final_density"].round(3),
        "dead units": methods["dead_units"].round(1),
        "runs": methods["runs"], "diverged": methods["diverged"]}, index=methods.index)
    return out


def comparison_view(comparisons: pd.DataFrame) -> pd.DataFrame:
    """:func:`comparisons` for reading: one row per (method, against), the effect in accuracy
    points to 0.1 with its 95 % interval (:func:`gflib.analysis.with_interval`), the p-value as
    text, n units as an integer and the smallest p those units can give."""
    c = comparisons
    if c.empty:
        return c
    out = pd.DataFrame({"effect, points (95 % CI)": with_interval(c, "effect", digits=1),
                        "p (ahead)": [p_cell(p) for p in c["p"]],
                        "n": c["n"].astype(int),
                        "smallest p": [p_cell(p) for p in c["min_p"]]})
    return out.set_axis(pd.MultiIndex.from_frame(c[["method", "against"]]), axis=0)


def width_gain_view(by_width: pd.DataFrame) -> pd.DataFrame:
    """BatchNorm's extra gain for sparse CNNs per dense width (:func:`cnn_bn` ``by_width``) in
    accuracy points to 0.1 with its 95 % interval (:func:`gflib.analysis.with_interval`), the
    one-sided p and n units."""
    if by_width.empty:
        return by_width
    b = 100 * by_width[["effect", "ci_low", "ci_high"]]
    return pd.DataFrame({"extra BN gain, points (95 % CI)": with_interval(b, "effect", digits=1),
                         "p": [p_cell(p) for p in by_width["pvalue"]],
                         "n": by_width["n"].astype(int)},
                        index=by_width.index.rename("dense width"))


def cnn_pair_table(preset, data_dir=None) -> pd.DataFrame:
    """The narrowest CNN pair of the grid at ``preset``, tensor by tensor: shapes, the sparse
    net's weights and active weights, the dense net's weights, the density, and the mean number
    of active inputs of a sparse output unit (a channel's kernel entries over all its input
    channels) beside a dense unit's fan-in."""
    s = settings(preset)
    config = preset.config(model="cnn", width=cnn_width(preset, s),
                           match_width=min(cnn_dense_widths(preset, s)), data_dir=data_dir)
    ds = train.dataset_for(config)
    sparse, masks = train.build_model(config, ds)
    dense, _ = train.build_model(config.dense_partner(), ds)
    table = layer_table(sparse, masks, dense)
    sw, dw = maskable_weights(sparse), maskable_weights(dense)
    table["sparse_shape"] = [" x ".join(map(str, sw[n].shape)) for n in table["layer"]]
    table["dense_shape"] = [" x ".join(map(str, dw[n].shape)) for n in table["layer"]]
    table["density"] = table["sparse_active"] / table["sparse_weights"]
    table["sparse_inputs"] = [masks[n].flatten(1).sum(1).float().mean().item()
                              for n in table["layer"]]
    table["dense_inputs"] = [dw[n][0].numel() for n in table["layer"]]
    table["layer"] = [_short(n) for n in table["layer"]]
    return table.set_index("layer")[["sparse_shape", "dense_shape", "sparse_active",
                                     "dense_weights", "density", "sparse_inputs",
                                     "dense_inputs"]]


def pair_view(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`cnn_pair_table` for reading, narrow enough for the page: the density first, then
    the active inputs of a sparse output unit beside a dense unit's fan-in, the active weights
    (the sparse net's, equal to the dense net's), and each net's channels (out x in; every
    convolution's kernel is 3 x 3)."""
    def channels(shape: str) -> str:
        return " x ".join(shape.split(" x ")[:2])

    return pd.DataFrame({
        ("density", ""): table["density"].round(3),
        ("inputs per unit", "sparse"): table["sparse_inputs"].round(1),
        ("inputs per unit", "dense"): table["dense_inputs"].astype(int),
        ("active weights", ""): table["sparse_active"].astype(int),
        ("channels (out x in)", "sparse"): table["sparse_shape"].map(channels),
        ("channels (out x in)", "dense"): table["dense_shape"].map(channels),
    }, index=table.index).rename_axis(None)


def _short(weight_name: str) -> str:
    """``features.1.conv.weight`` -> ``conv 2``; ``features.1.shortcut.weight`` -> ``skip 2``;
    ``out.weight`` -> ``linear``."""
    parts = weight_name.split(".")
    if parts[0] == "features":
        return f"{'skip' if parts[2] == 'shortcut' else 'conv'} {int(parts[1]) + 1}"
    return "linear" if parts[0] == "out" else weight_name


def density_schedules(preset) -> pd.DataFrame:
    """Density of a tensor whose final density is the narrowest pair's hidden-layer density,
    before each epoch (1-based) of each pruning schedule at ``preset``; index epoch."""
    s = settings(preset)
    final = (min(preset.dense_widths) / preset.sparse_width) ** 2
    out = {}
    for method, fields in schedule(preset.epochs, s).items():
        if not fields:
            continue
        config = RunConfig(epochs=preset.epochs, width=preset.sparse_width,
                           match_width=min(preset.dense_widths), **fields)
        density, curve = 1.0, []
        for epoch in range(1, preset.epochs + 1):
            p = progress(config, epoch)
            if p is not None:
                density = density_at(final, p)
            curve.append(density)
        out[method.split("_")[0]] = curve
    return pd.DataFrame(out, index=pd.RangeIndex(1, preset.epochs + 1, name="epoch"))


def schedule_marks(schedules: pd.DataFrame) -> dict:
    """What :func:`density_schedules` shows, in numbers: ``final`` (the lowest density reached),
    ``oneshot`` (the first epoch one-shot pruning starts below density 1), ``gradual_start`` and
    ``gradual_end`` (the first epoch gradual pruning starts below 1, and at its final density);
    an epoch is ``"n/a"`` where the schedule never gets there."""
    def first(mask) -> int | str:
        epochs = schedules.index[mask]
        return int(epochs.min()) if len(epochs) else "n/a"

    out = {"final": float(schedules.iloc[-1].min())}
    if "oneshot" in schedules:
        out["oneshot"] = first(schedules["oneshot"] < 1)
    if "gradual" in schedules:
        g = schedules["gradual"]
        out["gradual_start"] = first(g < 1)
        out["gradual_end"] = first(np.isclose(g, g.min()))
    return out


def cnn_wins(cells: CellTests | None) -> dict:
    """The CNN cells' sparse > dense tests (:attr:`Analysis.cnn_cells`, optimizer x cell) in
    numbers: ``wins`` (cells with q below :data:`ALPHA`), ``cells`` (cells with a p-value),
    ``best`` (the cell of the lowest p; ``"none"`` without one), that ``p`` and its ``q``."""
    flat = cells.p.stack().dropna() if cells is not None and len(cells.p) \
        else pd.Series(dtype=float)
    if flat.empty:
        return {"wins": 0, "cells": 0, "best": "none", "p": math.nan, "q": math.nan}
    best = flat.idxmin()
    return {"wins": cells.significant("q", ALPHA), "cells": int(len(flat)),
            "best": str(best[-1]), "p": float(flat.min()), "q": float(cells.q.loc[best])}


def plain_cnn(a: Analysis) -> str:
    """How far the plain and the BatchNorm CNN train (median test accuracy, sparse and dense)
    and, where the plain CNN stays near chance, why: a sentence or two for the CNN figure's
    caption and for :func:`reading`; ``""`` without NR and BN cells."""
    cnn = a.cnn_paired
    nr = cnn[cnn["cell"] == "NR"] if len(cnn) else cnn
    bn = cnn[cnn["cell"] == "BN"] if len(cnn) else cnn
    if len(nr) and len(bn):
        chance = 100 / data.check(str(a.cnn["dataset"].iloc[0])).classes
        s_nr, d_nr = (100 * nr[f"test_acc_{k}"].median() for k in ("sparse", "dense"))
        s_bn, d_bn = (100 * bn[f"test_acc_{k}"].median() for k in ("sparse", "dense"))
        plain = (f"The plain CNN (no BatchNorm, no skips) reaches a median of {s_nr:.0f} % "
                 f"(sparse) and {d_nr:.0f} % (dense) test accuracy, with BatchNorm {s_bn:.0f} % "
                 f"and {d_bn:.0f} %.")
        if max(s_nr, d_nr, s_bn, d_bn) < chance + 5:
            plain += " No CNN trains beyond chance at this scale."
        elif max(s_nr, d_nr) < chance + 5:
            plain += (" Without BatchNorm neither trains: with torch's default initialisation the "
                      "signal shrinks through five convolutions and their pools, and SGD makes "
                      "little progress in this many steps; so the plain cells carry no "
                      "sparse-dense contrast and the CNN's BatchNorm test rests on the skip "
                      "cells.")
        elif s_nr < d_nr - 5:
            plain += (" The sparse plain CNN falls far behind its dense partner and BatchNorm "
                      "closes the gap: the MLP chapter's picture, in which BatchNorm matters "
                      "more for sparse nets.")
        return plain
    return ""


def _span(p: pd.Series) -> str:
    """``"from 0.031 to 0.25"`` (or ``"0.062"`` where all are equal) for a page's p-values."""
    low, high = p_cell(p.min()), p_cell(p.max())
    return low if low == high else f"from {low} to {high}"


def reading(a: Analysis) -> str:
    """What the numbers of :func:`analyse`'s ``a`` say, in plain sentences (Markdown), with
    where they agree with the paper's claim and where not."""
    out = []
    comp = a.comparisons
    if len(comp):
        vs_random = comp[comp["against"] == "random"]
        vs_dense = comp[comp["against"] == "dense"]
        out.append(
            f"Across the pruning methods, magnitude-pruned nets end "
            f"{signed(vs_random['effect'].min(), 1)} to "
            f"{signed(vs_random['effect'].max(), 1)} accuracy "
            f"points from the random mask of the same density (one-sided p for \"ahead\" "
            f"{_span(vs_random['p'])}, over "
            f"{int(vs_random['n'].max())} {UNIT_PRUNE_NAME}, where the smallest p is "
            f"{p_cell(vs_random['min_p'].min())}) and "
            f"{signed(vs_dense['effect'].min(), 1)} to "
            f"{signed(vs_dense['effect'].max(), 1)} points from the "
            f"dense net of the same capacity.")
    margins = a.margins
    if len(margins):
        m = margins[(margins["sparse_nets"] == "pruned") & (margins["kind"] == "sparse")
                    & (margins["baseline"] == "weights")].set_index("target")
        late = a.late_margins
        lm = late[(late["sparse_nets"] == "pruned") & (late["kind"] == "sparse")
                  & (late["baseline"] == "weights")].set_index("target") if len(late) else m
        if "test_acc" in m.index:
            acc, late_acc = m.loc["test_acc"], lm.loc["test_acc"] if "test_acc" in lm.index \
                else m.loc["test_acc"]
            how = ("better than" if acc["ci_low"] > 0 else "worse than"
                   if acc["ci_high"] < 0 else "neither clearly better nor worse than")
            out.append(
                f"For the pruned nets the best EGF measure tracks test accuracy {how} the best "
                f"gradient norm (margin "
                f"{signed(acc['margin'], 3)}, 95 % CI {signed(acc['ci_low'], 3)} to "
                f"{signed(acc['ci_high'], 3)}; "
                f"on the flow after the last pruning epoch {signed(late_acc['margin'], 3)}). "
                + ("This agrees with the paper's claim that EGF's advantage carries over to "
                   "pruning." if acc["ci_low"] > 0 else
                   "This does not support the paper's claim that EGF's advantage carries over "
                   "to pruning at this scale. EGF leaves out the gradients of masked weights, "
                   "which the plain norm keeps; after magnitude pruning those are the weights "
                   "the net just lost, so the plain norm may carry information about the "
                   "damage that EGF by design ignores." if acc["ci_high"] < 0 else
                   "The interval covers 0: EGF and the gradient norm are not told apart here."))
    plain = plain_cnn(a)
    if plain:
        out.append(plain)
    g = a.cnn_bn["gain"]
    if g.n:
        out.append(
            f"On CNNs BatchNorm adds {abs(100 * g.effect):.1f} points "
            f"{'more' if g.effect >= 0 else 'less'} to sparse nets than to dense ones "
            f"({format_p(g.pvalue)}, n = {g.n} {UNIT_CNN_NAME}, where the smallest p is "
            f"{p_cell(g.min_p)}); the MLP chapter's form of the claim also asks that sparse "
            "beat dense in most BatchNorm cells, and here it does (by q) in "
            f"{a.cnn_bn['shares']['with BN']:.0%} of them.")
    return " ".join(out)
