"""What the chapters share: variants, SC-SDC pairs of configs and of results, which runs a
statistic may use, tests at the independent unit, sparse-vs-dense p-value tables with their
Benjamini-Hochberg q-values, BatchNorm gains, flow steadiness, the verdicts that more than one
chapter gives, the base of every chapter's analysis, and the table formats a page shows.

Tables are :class:`gflib.results.Results` run tables (columns: :data:`gflib.results.RUN_COLUMNS`).

Which runs a statistic uses (CHOICE, counted on every page): a run that **diverged** (a
non-finite or exploded loss, :mod:`gflib.train`) is left out of every statistic (its pair drops
out of paired tests), and so is a pruned run **off target** (its final masks missed its target
density, :attr:`gflib.config.RunResult.off_target`: it is not the sparse net it was meant to be;
:func:`usable`); a run **at chance** (its test accuracy not above chance, one-sided binomial
test at :data:`AT_CHANCE_P`: it learned nothing) keeps its accuracy in accuracy comparisons (that
is its outcome) but is left out of every flow statistic (:func:`flow_usable`): the flow of a net
that did not train, or whose weights blew up, is not the flow the study relates to
generalisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as ss

from . import activations, data, optimizers, stats
from .config import RunConfig
from .flow import MEASURES
from .results import CONFIG_COLUMNS
from .verdict import LEVEL, Verdict, format_p, p_cell, q_values

VARIANT_PARTS = ("DA", "L2", "SC", "BN", "WD")
METRICS = ("test_loss", "test_acc", "train_loss", "train_acc") + tuple(f"mean_{m}" for m in MEASURES)
"""The per-run numbers statistics are computed on."""
MEMBER_FIELDS = ("width", "match_width", "density", "init")
"""Config fields in which the two members of an SC-SDC pair differ; every other config field is
a pairing key."""
AT_CHANCE_P = 0.001
"""CHOICE: a run is at chance when a one-sided binomial test of its test accuracy against chance
(1 / classes) gives p >= this."""


def matched_decay(l2: float) -> float:
    """Decoupled weight decay that matches an L2 term ``l2 * sum ||W||^2`` in the loss: the decay
    SGD would apply for it, ``w <- w - lr * 2 l2 w``, so ``weight_decay = 2 * l2`` (torch's AdamW
    decays ``w <- w - lr * weight_decay * w``). CHOICE: the WD variants' "matched strength"."""
    return 2.0 * l2


def variant_flags(variant: str, l2: float) -> dict:
    """RunConfig fields of a variant name such as ``"DA_L2_SC_BN"`` (``NR`` = none).

    DA: augmentation; L2: ``l2`` added to the loss; SC: skip connections; BN: BatchNorm; WD:
    decoupled weight decay at :func:`matched_decay` of ``l2``.
    """
    parts = [] if variant == "NR" else variant.split("_")
    bad = [p for p in parts if p not in VARIANT_PARTS]
    if bad or not variant:
        raise ValueError(f"unknown variant {variant!r}; allowed: NR or parts of "
                         f"{', '.join(VARIANT_PARTS)} joined by '_'")
    return {"augment": "DA" in parts, "l2": l2 if "L2" in parts else 0.0, "skip": "SC" in parts,
            "batchnorm": "BN" in parts,
            "weight_decay": matched_decay(l2) if "WD" in parts else 0.0}


def variant_name(row) -> str:
    """The variant name of a table row (inverse of :func:`variant_flags`)."""
    parts = [p for p, on in (("DA", row["augment"]), ("L2", row["l2"] > 0),
                             ("WD", row["weight_decay"] > 0), ("SC", row["skip"]),
                             ("BN", row["batchnorm"])) if on]
    return "_".join(parts) or "NR"


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


def label(name: str) -> str:
    """How the book writes an optimizer, activation or dataset (its spec's label; else the
    name)."""
    for registry in (optimizers.OPTIMIZERS, activations.ACTIVATIONS, data.DATASETS):
        if name in registry:
            return registry[name].label
    return str(name)


# ------------------------------------------------------------------- which runs a test may use


def at_chance(runs: pd.DataFrame) -> pd.Series:
    """Per run (bool): its final test accuracy is not above chance (one-sided binomial test
    against 1 / classes on its test images, p >= :data:`AT_CHANCE_P`; a ``test_subset`` larger
    than the test split is the whole split)."""
    if not len(runs):
        return pd.Series([], dtype=bool)
    out = []
    for acc, name, subset in zip(runs["test_acc"], runs["dataset"], runs["test_subset"]):
        spec = data.check(name)
        n = min(int(subset), spec.n_test) if pd.notna(subset) else spec.n_test
        if not np.isfinite(acc):
            out.append(True)
            continue
        k = int(round(acc * n))
        out.append(ss.binomtest(k, n, 1 / spec.classes, alternative="greater").pvalue
                   >= AT_CHANCE_P)
    return pd.Series(out, index=runs.index, dtype=bool)


def off_target(runs: pd.DataFrame) -> pd.Series:
    """Per run (bool): a pruned run whose final masks missed its target density (False where
    the table has no ``off_target`` column or no value in it)."""
    if "off_target" not in runs:
        return pd.Series(False, index=runs.index, dtype=bool)
    return runs["off_target"].eq(True)


def usable(runs: pd.DataFrame) -> pd.Series:
    """Per run (bool): it may enter a statistic: it neither diverged nor ended off its target
    density (see the module doc)."""
    return ~runs["diverged"].astype(bool) & ~off_target(runs)


def flow_usable(runs: pd.DataFrame) -> pd.Series:
    """Per run (bool): its flow may enter a statistic: it is :func:`usable` and did not end at
    chance (see the module doc)."""
    return usable(runs) & ~at_chance(runs)


def exclusions(runs: pd.DataFrame) -> pd.Series:
    """Per run, why a flow statistic leaves it out: ``"diverged (<reason>)"``, ``"off
    target"``, ``"at chance"`` or ``""`` (used)."""
    chance, missed = at_chance(runs), off_target(runs)
    return pd.Series([f"diverged ({r or 'non-finite'})" if d else "off target" if o
                      else "at chance" if c else ""
                      for d, r, o, c in zip(runs["diverged"], runs["diverged_reason"], missed,
                                            chance)],
                     index=runs.index, dtype=str)


@dataclass
class Counts:
    """The runs an analysis rests on: ``runs``, ``diverged`` (left out of every statistic),
    ``at_chance`` (not diverged, left out of the flow statistics) and ``off_target`` (pruned
    runs that missed their target density, not diverged: left out of every statistic)."""

    runs: int
    diverged: int
    at_chance: int
    off_target: int = 0

    @classmethod
    def of(cls, runs: pd.DataFrame) -> "Counts":
        why = exclusions(runs)
        return cls(len(runs), int(why.str.startswith("diverged").sum()),
                   int((why == "at chance").sum()), int((why == "off target").sum()))

    @property
    def all_diverged(self) -> bool:
        return self.runs > 0 and self.diverged == self.runs

    def text(self) -> str:
        """"600 runs: 1 diverged (left out), 42 at chance (left out of the flow statistics)"."""
        missed = (f", {self.off_target} pruned off their target density (left out of every "
                  "statistic)" if self.off_target else "")
        return (f"{self.runs} runs: {self.diverged} diverged (left out of every statistic)"
                f"{missed}, {self.at_chance} at chance (left out of the flow statistics)")


@dataclass
class ChapterAnalysis:
    """What every chapter's ``analyse`` returns, with its own fields added: ``scale`` (the
    preset's name), ``counts`` (:class:`Counts`) and ``verdicts`` (one
    :class:`gflib.verdict.Verdict` per test, the paper's form of each claim first)."""

    scale: str
    counts: Counts
    verdicts: list

    def headline(self, claim) -> Verdict | None:
        """The first verdict on ``claim`` (the test of the paper's form)."""
        return next((v for v in self.verdicts if v.claim == claim), None)


def not_run(claim, test: str, scale: str, form: str, unit: str, why: str) -> Verdict:
    """A verdict without data: ``why`` says what is missing (e.g. every run diverged)."""
    return Verdict(claim=claim, test=test, scale=scale, form=form, effect=math.nan,
                   effect_unit="", n=0, unit=unit, sentence=why)


# --------------------------------------------------------------------------------- SC-SDC pairs


def pair_keys() -> list:
    """The columns a sparse run and its dense partner share: every config column but
    :data:`MEMBER_FIELDS`, and ``dense_width``."""
    return [c for c in CONFIG_COLUMNS if c not in MEMBER_FIELDS] + ["dense_width"]


def pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """Match each SC-SDC sparse run with its dense partner (equal :func:`pair_keys`; dense
    width = the sparse run's ``match_width``). One row per pair: the keys, ``sparse_width``, and
    every other column with suffix ``_sparse`` / ``_dense``; plus ``variant`` and ``diverged``
    (either member diverged). The metrics of a member that is not :func:`usable` (diverged, or
    pruned off its target) are NaN, so every paired statistic leaves that pair out; the pair
    itself stays, counted."""
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
        bad = merged[f"diverged_{side}"].astype(bool)
        if f"off_target_{side}" in merged:
            bad |= merged[f"off_target_{side}"].eq(True)
        for metric in METRICS:
            merged.loc[bad, f"{metric}_{side}"] = np.nan
    return merged




# ------------------------------------------------------------------- tests at the unit


@dataclass
class UnitTest:
    """A one-sided test of H1 "value > 0" at the independent unit (:func:`unit_test`):
    ``effect`` (mean of the unit means, in the value's units), its percentile bootstrap interval
    ``ci_low``/``ci_high``, the Wilcoxon signed-rank ``pvalue``, ``n`` units, ``min_p`` (the
    smallest p with n units), ``needs`` (units the test needs to reach :data:`LEVEL`) and the
    unit ``means``."""

    effect: float
    ci_low: float
    ci_high: float
    pvalue: float
    n: int
    min_p: float
    needs: int
    means: pd.Series

    @property
    def interval(self) -> tuple:
        return (self.ci_low, self.ci_high)

    def scaled(self, factor: float) -> dict:
        """Effect and interval times ``factor`` (e.g. 100 for accuracy points)."""
        return {"effect": factor * self.effect, "interval": (factor * self.ci_low,
                                                             factor * self.ci_high)}


def unit_test(table: pd.DataFrame, value: str, units, level: float = 0.95,
              seed: int = 0) -> UnitTest:
    """One-sided test of H1 "``value`` > 0" at the independent unit.

    The rows of ``table`` that share the ``units`` columns (e.g. optimizer x seed: runs that
    share a seed share their initial weights and masks, and widths are fixed factors) are
    averaged into one observation; the unit means are tested with a one-sided Wilcoxon
    signed-rank test and their mean gets a percentile bootstrap interval. Non-finite values are
    dropped first."""
    ok = table[np.isfinite(table[value].astype(float))] if len(table) else table
    means = ok.groupby(list(units))[value].mean() if len(ok) else pd.Series(dtype=float)
    res = stats.signed_rank_greater(means.to_numpy())
    low, high = stats.bootstrap_ci(means.to_numpy(), level=level, seed=seed)
    n = int(len(means))
    return UnitTest(float(means.mean()) if n else math.nan, low, high, res["pvalue"], n,
                    stats.min_p_signed_rank(n),
                    stats.units_needed(stats.min_p_signed_rank, LEVEL), means)


def effect_by(table: pd.DataFrame, value: str, units, by: str, level: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """:func:`unit_test` of ``value`` within each level of ``by`` (e.g. the dense width): one
    row per level with ``effect``, ``ci_low``, ``ci_high``, ``pvalue``, ``n`` and ``min_p``."""
    rows = []
    for level_value, g in table.groupby(by):
        t = unit_test(g, value, units, level=level, seed=seed)
        rows.append({by: level_value, "effect": t.effect, "ci_low": t.ci_low,
                     "ci_high": t.ci_high, "pvalue": t.pvalue, "n": t.n, "min_p": t.min_p})
    return pd.DataFrame(rows).set_index(by) if rows else pd.DataFrame()


def unit_verdict(t: UnitTest, claim, test: str, scale: str, form: str, unit: str,
                 effect_unit: str, factor: float = 1.0, **words) -> Verdict:
    """A :class:`gflib.verdict.Verdict` from a :class:`UnitTest` (effect and interval times
    ``factor``); ``words``: the verdict's other fields (sentence, paper, paper_condition,
    condition_holds, weaker, paper_effect)."""
    return Verdict(claim=claim, test=test, scale=scale, form=form, **t.scaled(factor),
                   effect_unit=effect_unit, p=t.pvalue, n=t.n, unit=unit, min_p=t.min_p,
                   needs=t.needs, **words)


# ------------------------------------------------------------------ sparse against dense


PAIR_UNIT = "width x seed pairs"
"""What n counts in a sparse-vs-dense cell (the paper's form: a Wilcoxon test over matched
pairs); pairs of one seed share its data order, so n overstates the independent replication."""


@dataclass
class CellTests:
    """One-sided sparse > dense tests per cell of a ``rows`` x ``cols`` layout (:func:`cell_tests`):
    ``p`` (Wilcoxon over matched pairs, or Mann-Whitney U), ``q`` (Benjamini-Hochberg over the
    table), ``n`` (pairs per cell), ``median`` (median sparse - dense difference)."""

    p: pd.DataFrame
    q: pd.DataFrame
    n: pd.DataFrame
    median: pd.DataFrame

    def reindex(self, **layout) -> "CellTests":
        """The tables in another layout (``index=``, ``columns=``); q is adjusted again over
        the cells kept."""
        p = self.p.reindex(**layout)
        return CellTests(p, q_values(p), self.n.reindex(**layout),
                         self.median.reindex(**layout))

    def cells(self) -> int:
        return int(self.p.notna().to_numpy().sum())

    def significant(self, by: str = "q", level: float = LEVEL) -> int:
        """Cells below ``level`` by ``"p"`` or ``"q"``."""
        return int((getattr(self, by) < level).to_numpy().sum())

    def n_text(self) -> str:
        """The pairs per cell, e.g. ``"10"`` or ``"8 to 10"``."""
        values = sorted({int(v) for v in self.n.to_numpy().ravel() if pd.notna(v)})
        if not values:
            return "0"
        return str(values[0]) if len(values) == 1 else f"{values[0]} to {values[-1]}"


def cell_tests(paired: pd.DataFrame, rows: str, cols: str, metric: str = "test_acc",
               matched: bool = True) -> CellTests:
    """:class:`CellTests` of ``metric`` in each (``rows`` x ``cols``) cell of ``paired``
    (:func:`pairs`): Wilcoxon signed-rank over the matched pairs (``matched=False``:
    Mann-Whitney U of the two samples, ignoring the matching)."""
    cells = {}
    for (r, c), g in paired.groupby([rows, cols]):
        res = stats.sparse_vs_dense(g[f"{metric}_sparse"].to_numpy(),
                                    g[f"{metric}_dense"].to_numpy(), paired=matched)
        cells[(r, c)] = (res["pvalue"], res["n"], res["median_diff"])

    def layout(i):
        s = pd.Series({k: v[i] for k, v in cells.items()}, dtype=float)
        return s.unstack().rename_axis(index=rows, columns=cols) if len(s) else pd.DataFrame()
    p = layout(0)
    return CellTests(p, q_values(p), layout(1), layout(2))


def cell_verdict(paired: pd.DataFrame, row: str, col: str, rows: str, cols: str, claim,
                 scale: str, test: str, form: str = "paper", nets: str = "nets",
                 paper: str = "") -> Verdict:
    """The verdict on "in cell (``row``, ``col``) sparse ``nets`` beat their dense partners":
    the median test-accuracy difference sparse - dense over the cell's matched pairs (points),
    a bootstrap interval of the median, the one-sided Wilcoxon p over the pairs
    (:data:`PAIR_UNIT`) and its smallest attainable value."""
    g = paired[(paired[rows] == row) & (paired[cols] == col)]
    res = stats.sparse_vs_dense(g["test_acc_sparse"].to_numpy(), g["test_acc_dense"].to_numpy())
    d = (g["test_acc_sparse"] - g["test_acc_dense"]).to_numpy(dtype=float)
    low, high = stats.bootstrap_ci(d, np.median)
    who = f"with {label(row)}, sparse {label(col)} {nets}"
    effect = 100 * res["median_diff"]
    sentence = (f"{who} {'beat' if effect > 0 else 'trail' if effect < 0 else 'tie with'} "
                f"their dense partners by a median {signed(effect, 1)} points" if res["n"]
                else f"{who} were not run at this scale")
    return Verdict(claim=claim, test=test, scale=scale, form=form, effect=effect,
                   effect_unit="accuracy points, sparse - dense (median)",
                   interval=(100 * low, 100 * high), p=res["pvalue"], n=res["n"],
                   unit=PAIR_UNIT, min_p=stats.min_p_signed_rank(res["n"]),
                   needs=stats.units_needed(stats.min_p_signed_rank, LEVEL), sentence=sentence,
                   paper=paper)


def agreement(pvalues: pd.DataFrame, paper: pd.DataFrame, alpha: float = LEVEL) -> pd.DataFrame:
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


def disagreements(agreement_table: pd.DataFrame) -> str:
    """The cells of an :func:`agreement` table where only the paper, or only we, found sparse >
    dense, named as "row x column" (as the book writes them, :func:`label`)."""
    def cells(word):
        hits = [f"{label(r)} x {label(c)}" for r in agreement_table.index
                for c in agreement_table.columns if agreement_table.loc[r, c] == word]
        return ", ".join(hits) or "none"
    return (f"significant in the paper only: {cells('paper only')}; here only: "
            f"{cells('ours only')}")




def significance_shares(table: pd.DataFrame, level: float = LEVEL) -> pd.Series:
    """Share of the cells of a p- (or q-) value ``table`` below ``level``, for the columns
    (variants) without BatchNorm and for those with it (empty cells do not count)."""
    with_bn = [v for v in table.columns if "BN" in str(v).split("_")]
    without = [v for v in table.columns if v not in with_bn]

    def share(cols):
        values = table[cols].to_numpy(dtype=float).ravel()
        values = values[~np.isnan(values)]
        return float((values < level).mean()) if len(values) else float("nan")
    return pd.Series({"without BN": share(without), "with BN": share(with_bn)})


# ------------------------------------------------------------------------- BatchNorm gains


BN_PAIRS = {"NR": "BN", "DA": "DA_BN", "L2": "L2_BN", "SC": "SC_BN"}
"""Each variant without BatchNorm and its BatchNorm counterpart."""


def bn_gains(paired: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """The BatchNorm gain of every matched pair: one row per (optimizer, base variant, dense
    width, seed) with ``sparse_gain`` = sparse ``metric`` with BN - without, ``dense_gain``
    likewise and ``excess`` = sparse_gain - dense_gain (> 0: BN helps the sparse net more)."""
    keys = ["optimizer", "activation", "dense_width", "seed", "depth", "lr"]
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


PAPER_SHARES = "sparse beats dense in most cells with BatchNorm and in fewer without"


def bn_gain_verdict(gain: UnitTest, shares: pd.Series, claim, scale: str, test: str,
                    unit: str, nets: str = "nets", paper: str = "") -> Verdict:
    """The verdict on "BatchNorm matters more for sparse ``nets``": the extra BatchNorm gain of
    sparse over dense (:func:`bn_gains`' ``excess``, points) tested at ``unit`` (``gain``), with
    the paper's pattern as its condition: :data:`PAPER_SHARES` (``shares``:
    :func:`significance_shares` of our q-values)."""
    holds = bool(shares["with BN"] > 0.5 and shares["without BN"] < shares["with BN"]) \
        if np.isfinite(shares["with BN"]) else None
    more = "more" if gain.effect >= 0 else "less"
    words = (f"BatchNorm raises sparse {nets}' test accuracy by {abs(100 * gain.effect):.1f} "
             f"points {more} than dense {nets}'; sparse beats dense (q < {LEVEL:g}) in "
             f"{shares['with BN']:.0%} of the cells with BatchNorm and "
             f"{shares['without BN']:.0%} without") if gain.n else f"no matched {nets} here"
    return unit_verdict(gain, claim, test, scale, "paper", unit,
                        f"accuracy points of extra BN gain for sparse {nets}", 100,
                        paper_condition=PAPER_SHARES, condition_holds=holds,
                        weaker="the extra gain is significant", sentence=words, paper=paper)


# ------------------------------------------------------------------------- flow steadiness


def flow_stability(results, measure: str = "egf_l2") -> pd.DataFrame:
    """How unsteady each run's flow is over its scheduled epochs (a second view of the talk's
    "flat" flow). One row per run whose flow is usable (:func:`flow_usable`): the run's columns,
    ``variant``, ``log_std`` (standard deviation over the scheduled epochs of ``log10`` of the
    measure; 0 = flat) and ``log_mean``."""
    curves = results.curves[results.curves["measure"] == measure].copy()
    curves["log"] = np.log10(curves["value"].astype(float).clip(lower=1e-30))
    per_run = curves.groupby("key")["log"].agg(log_std=lambda v: v.std(ddof=1), log_mean="mean")
    ok = results.runs[flow_usable(results.runs)]
    out = ok.merge(per_run, left_on="key", right_index=True, how="inner")
    out["variant"] = out.apply(variant_name, axis=1) if len(out) else []
    return out


def flow_across_widths(runs: pd.DataFrame, units, measure: str = "egf_l2") -> pd.DataFrame:
    """How much the average flow changes across dense widths, as the talk plots it (average flow
    against width): per ``units`` x variant x kind, the standard deviation over the dense widths
    of ``log10`` of the runs' average ``measure`` (flow-usable runs; each width's runs averaged
    first); columns ``units``, ``variant``, ``kind``, ``spread``."""
    ok = runs[flow_usable(runs)].copy()
    if not len(ok):
        return pd.DataFrame(columns=[*units, "variant", "kind", "spread"])
    ok["variant"] = ok.apply(variant_name, axis=1)
    ok["dense_width"] = np.where(ok["kind"] == "sparse", ok["match_width"].astype(float),
                                 ok["width"]).astype(int)
    ok["log"] = np.log10(ok[f"mean_{measure}"].astype(float).clip(lower=1e-30))
    keys = [*units, "variant", "kind"]
    per_width = ok.groupby(keys + ["dense_width"])["log"].mean().reset_index()
    spread = per_width.groupby(keys)["log"].std(ddof=1).rename("spread")
    return spread.dropna().reset_index()


def steadier_with_bn(spread: pd.DataFrame, value: str, keys) -> pd.DataFrame:
    """Per ``keys`` and variant pair of :data:`BN_PAIRS`: ``steadier`` = (sparse ``value``
    without BN - with BN) - (dense without - with), > 0 when BatchNorm steadies the sparse net's
    flow more than the dense net's (``spread``: one row per keys x variant x kind)."""
    wide = spread.pivot_table(index=list(keys), columns=["variant", "kind"], values=value)
    rows = []
    for base, with_bn in BN_PAIRS.items():
        cols = [(base, "sparse"), (with_bn, "sparse"), (base, "dense"), (with_bn, "dense")]
        if not all(c in wide.columns for c in cols):
            continue
        d = ((wide[cols[0]] - wide[cols[1]]) - (wide[cols[2]] - wide[cols[3]])).rename("steadier")
        rows.append(d.reset_index().assign(variant=base))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=[*keys, "steadier", "variant"])


# ------------------------------------------------------------------------- tables for a page


def signed(x: float, digits: int = 2) -> str:
    """``x`` with its sign and ``digits`` decimals; a value that rounds to 0 reads ``+0.00``,
    never ``-0.00``; "n/a" for NaN."""
    return "n/a" if pd.isna(x) else f"{round(x, digits) + 0.0:+.{digits}f}"


def with_interval(table: pd.DataFrame, value: str = "tau", low: str = "ci_low",
                  high: str = "ci_high", digits: int = 2) -> pd.Series:
    """Each row's ``value`` with its interval as one string for a table a person reads,
    e.g. ``"-0.42 (-0.55 to -0.30)"``: the estimate first, signs shown, ``digits`` decimals (a
    value that rounds to 0 is ``+0.00``); ``""`` where the estimate is NaN, the estimate alone
    where the interval is."""
    def text(row):
        v, lo, hi = row[value], row[low], row[high]
        if pd.isna(v):
            return ""
        if pd.isna(lo) or pd.isna(hi):
            return signed(v, digits)
        return f"{signed(v, digits)} ({signed(lo, digits)} to {signed(hi, digits)})"
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
                          "n": margins["n"].astype("Int64"),
                          "best EGF": margins["best_egf"].fillna(""),
                          "best norm": margins["best_base"].fillna("")})
    return table.set_index(pd.MultiIndex.from_frame(margins[keys])) if keys else table


def blank_missing(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``table``'s numbers as text with ``digits`` decimals (0.250, not 0.25), its missing values
    as empty cells: for a table a person reads, where NaN means "not given", e.g. a value the
    paper did not report."""
    return table.map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")


def pq_table(cells: CellTests) -> pd.DataFrame:
    """A :class:`CellTests` for a page: each cell ``p (q)`` as text in :func:`p_cell`'s form
    (two significant digits: ``0.00024 (0.00037)``, ``1.0 (1.0)``), q the Benjamini-Hochberg
    value over the table; blank where the grid has no pair."""
    def text(p, q):
        if pd.isna(p):
            return ""
        return f"{p_cell(p)} ({p_cell(q)})"
    return pd.DataFrame([[text(cells.p.iat[i, j], cells.q.iat[i, j])
                          for j in range(cells.p.shape[1])] for i in range(cells.p.shape[0])],
                        index=cells.p.index, columns=cells.p.columns)
