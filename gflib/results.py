"""The results of a sweep as two tables, and their declared columns.

``runs``: one row per run, the columns of :data:`RUN_COLUMNS` (config fields, then what the run
recorded), then ``trace_<name>`` for each number the run's trace recorded (:func:`trace_columns`;
NaN for runs without it) and ``layer_density_<i>`` per maskable tensor (:func:`sparsity_columns`). ``curves``: one row per run, measure and scheduled epoch,
:data:`CURVE_COLUMNS`. Both carry ``key`` (the run's store key), which joins them. A published
summary is the two tables as ``<name>.csv`` and ``<name>-curves.csv`` (:meth:`Results.save`,
:meth:`Results.load`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .atomic import write_text
from .config import RunConfig, config_key
from .flow import MEASURES

CONFIG_COLUMNS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.compare)
"""Every field of :class:`gflib.config.RunConfig` that defines a run (not ``device`` or
``data_dir``)."""

RUN_COLUMNS = {
    "key": "the run's store key (:func:`gflib.config.config_key`)",
    **{c: "config field (:class:`gflib.config.RunConfig`)" for c in CONFIG_COLUMNS},
    "kind": "'sparse' or 'dense', from the config (:attr:`gflib.config.RunConfig.kind`)",
    "test_loss": "final mean cross-entropy on the test split (nats)",
    "test_acc": "final accuracy on the test split, in [0, 1]",
    "train_loss": "mean training cross-entropy over the last epoch's batches (nats)",
    "train_acc": "training accuracy over the last epoch's batches, in [0, 1]",
    **{f"mean_{m}": f"{m} averaged over the flow schedule (NaN when diverged)" for m in MEASURES},
    "final_density": "active share of the maskable weights at the end (1 = dense; NaN when not "
                     "recorded)",
    "dead_units": "hidden units of an MLP cut off by its final masks (gflib.masks.dead_units)",
    "off_target": "a pruned run whose final masks missed its target density "
                  "(RunResult.off_target; left out of statistics, counted)",
    "diverged": "the run failed numerically (left out of statistics, counted)",
    "diverged_reason": "'non-finite' or 'exploded' (see gflib.train), else empty",
    "wall_s": "seconds of wall time (a stacked group's time divided by its runs)",
}
"""The run table's columns, in order, with their meaning and units."""

CURVE_COLUMNS = {
    "key": "the run's store key",
    "measure": "one of gflib.flow.MEASURES",
    "epoch": "scheduled epoch (0 = before training)",
    "value": "the measure on the probe batch at that epoch",
}
"""The curves table's columns."""

_INT_OR_NONE = ("match_width", "train_subset", "test_subset")
TRACE_PREFIX = "trace_"
LAYER_PREFIX = "layer_density_"
PREFIXES = (TRACE_PREFIX, LAYER_PREFIX)
"""The run table's recorded-per-run columns beyond :data:`RUN_COLUMNS`."""


def sparsity_columns(sparsity: dict) -> dict:
    """The run-table columns of :attr:`gflib.config.RunResult.sparsity`: ``final_density``,
    ``dead_units`` and ``layer_density_<i>``, the active share of the ``i``-th maskable weight
    tensor (input to output)."""
    if not sparsity:
        return {}
    dead = sparsity.get("dead_units")
    return {"final_density": sparsity["active"],
            "dead_units": float("nan") if dead is None else dead,
            **{f"{LAYER_PREFIX}{i}": d for i, d in enumerate(sparsity["layers"].values())}}


def trace_columns(trace: dict) -> dict:
    """The run-table columns of a run's ``trace`` (:attr:`gflib.config.RunResult.trace`): each
    top-level number ``name`` as ``trace_<name>``; anything else (lists, nested dicts) stays in
    the store only."""
    return {f"{TRACE_PREFIX}{k}": float(v) for k, v in (trace or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class Results:
    """A sweep's ``runs`` and ``curves`` tables (see the module doc)."""

    runs: pd.DataFrame
    curves: pd.DataFrame

    @classmethod
    def from_results(cls, results) -> "Results":
        """The tables of a list of :class:`gflib.config.RunResult`."""
        rows, curves = [], []
        for r in results:
            config = RunConfig(**r.config)
            key = config_key(config)
            row = {"key": key, **{c: getattr(config, c) for c in CONFIG_COLUMNS},
                   "kind": config.kind, **r.final,
                   **{f"mean_{m}": r.flow_mean.get(m) for m in MEASURES},
                   "diverged": r.diverged, "diverged_reason": r.diverged_reason or "",
                   "off_target": r.off_target,
                   "wall_s": r.wall_s, **trace_columns(r.trace),
                   **sparsity_columns(r.sparsity)}
            rows.append(row)
            curves += [{"key": key, "measure": m, "epoch": e, "value": v[m]}
                       for e, v in sorted(r.flow.items()) for m in MEASURES]
        traced = _extra_columns({c for row in rows for c in row})
        return cls(typed_runs(pd.DataFrame(rows, columns=list(RUN_COLUMNS) + traced)),
                   pd.DataFrame(curves, columns=list(CURVE_COLUMNS)))

    def curve_table(self, measure: str = "egf_l2") -> pd.DataFrame:
        """One row per (run, scheduled epoch) of ``measure``: the run's columns plus ``epoch``
        and ``value``."""
        c = self.curves[self.curves["measure"] == measure][["key", "epoch", "value"]]
        return self.runs.merge(c, on="key", validate="one_to_many")

    def save(self, csv: Path) -> tuple:
        """Write ``csv`` (runs) and ``<stem>-curves.csv`` beside it; returns both paths."""
        curves = curves_path(csv)
        write_text(csv, self.runs.to_csv(index=False))
        write_text(curves, self.curves.to_csv(index=False))
        return csv, curves

    @classmethod
    def load(cls, csv: Path) -> "Results":
        """Read a saved pair of tables. A summary of the first format (one CSV whose flow curve
        is in ``egf_l2@<epoch>`` columns) is read too: its curve becomes the curves table."""
        runs = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        curves_file = curves_path(csv)
        if curves_file.is_file():
            missing = [c for c in RUN_COLUMNS if c not in runs]
            traced = _extra_columns(runs.columns)
            runs = runs.assign(**{c: float("nan") for c in missing})[list(RUN_COLUMNS) + traced]
            return cls(typed_runs(runs), pd.read_csv(curves_file))
        return _from_first_format(runs)


def _extra_columns(columns) -> list:
    """The columns of :data:`PREFIXES` among ``columns``: traces by name, layers by index."""
    traced = sorted(c for c in columns if c.startswith(TRACE_PREFIX))
    layers = sorted((c for c in columns if c.startswith(LAYER_PREFIX)),
                    key=lambda c: int(c[len(LAYER_PREFIX):]))
    return traced + layers


def curves_path(csv: Path) -> Path:
    return Path(csv).with_name(Path(csv).stem + "-curves.csv")


def typed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """A run table with its columns in their own types (as read back from a CSV): optional
    integers as pandas' nullable Int64, flags as bool, ``diverged_reason`` as text. A missing
    ``off_target`` (a summary written before it was recorded) reads False."""
    runs = runs.copy()
    if "off_target" in runs:
        runs["off_target"] = [False if pd.isna(v) else bool(v) for v in runs["off_target"]]
    for c in _INT_OR_NONE:
        if c in runs:
            runs[c] = pd.array([None if pd.isna(v) else int(v) for v in runs[c]], dtype="Int64")
    if "diverged_reason" in runs:
        runs["diverged_reason"] = [("" if pd.isna(v) else str(v)) for v in runs["diverged_reason"]]
    for c in ("diverged", "off_target", "batchnorm", "skip", "augment"):
        if c in runs:
            runs[c] = runs[c].astype(bool)
    return runs


def _from_first_format(old: pd.DataFrame) -> Results:
    old = typed_runs(old)
    curve_cols = [c for c in old.columns if "@" in c]
    rows = []
    for _, row in old.iterrows():
        fields = {c: row[c] for c in CONFIG_COLUMNS if c in old.columns}
        fields = {c: (None if v is pd.NA else v) for c, v in fields.items()}
        config = RunConfig(**fields)
        rows.append({"key": config_key(config), "kind": config.kind})
    runs = pd.concat([old.drop(columns=curve_cols), pd.DataFrame(rows, index=old.index)], axis=1)
    for c in ("diverged_reason",):
        runs[c] = ""
    for c in CONFIG_COLUMNS:
        if c not in runs:
            runs[c] = getattr(RunConfig, c)
    for c in RUN_COLUMNS:
        if c not in runs:
            runs[c] = float("nan")
    runs = runs[list(RUN_COLUMNS)]
    long = old[curve_cols].assign(key=runs["key"]).melt(id_vars=["key"], var_name="col",
                                                          value_name="value").dropna()
    long["measure"] = long["col"].str.split("@").str[0]
    long["epoch"] = long["col"].str.split("@").str[1].astype(int)
    curves = long[list(CURVE_COLUMNS)].sort_values(["key", "epoch"], ignore_index=True)
    return Results(typed_runs(runs), curves)
