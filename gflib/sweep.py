"""Run a grid of configs through a results store and return one table row per run."""
from __future__ import annotations

from concurrent.futures import Executor, Future, as_completed

import pandas as pd

from .flow import MEASURES
from .store import ResultStore
from .train import RunConfig, RunResult, run as run_one


class InlineExecutor(Executor):
    """Runs each submitted call at once in this process (the default executor)."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


def _run_and_store(config: RunConfig, store_dir: str) -> RunResult:
    result = run_one(config)
    ResultStore(store_dir).put(result)
    return result


def _run_stack_and_store(configs, store_dir: str) -> list:
    from .stacked import run_stacked

    results = run_stacked(configs)
    store = ResultStore(store_dir)
    for r in results:
        store.put(r)
    return results


def run(configs, store_dir, executor: Executor | None = None, progress: bool = True,
        desc: str = "runs", stack: int | None = None) -> pd.DataFrame:
    """Run every config not yet in ``store_dir`` and return the table of all of them.

    Configs are validated before anything trains. ``executor``: any
    ``concurrent.futures.Executor`` (a ProcessPoolExecutor, a Dask client's executor); the default
    runs in this process. Each finished run is stored at once, so a stopped sweep resumes.
    ``stack``: at most this many runs train together as one stacked model
    (:mod:`gflib.stacked`; same results up to float summation order), grouped by
    :func:`gflib.stacked.stack_key`; None or 1 runs them one by one.
    Returns :func:`table` of the results, in the order of ``configs``.
    """
    configs = [c.validate() for c in configs]
    if stack is not None and (isinstance(stack, bool) or not isinstance(stack, int) or stack < 1):
        raise ValueError(f"stack must be None or an integer >= 1, got {stack!r}")
    store = ResultStore(store_dir)
    results = {}
    todo = []
    for c in configs:
        stored = store.get(c)
        if stored is None:
            todo.append(c)
        else:
            results[c] = stored
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(configs), initial=len(configs) - len(set(todo)), desc=desc)
    pending = {}
    executor = executor or InlineExecutor()
    todo = list(dict.fromkeys(todo))
    if stack is not None and stack > 1:
        from .stacked import groups
        batches = groups(todo, stack)
    else:
        batches = [[c] for c in todo]
    for group in batches:
        if len(group) == 1:
            pending[executor.submit(_run_and_store, group[0], str(store.root))] = group
        else:
            pending[executor.submit(_run_stack_and_store, group, str(store.root))] = group
    for fut in as_completed(pending):
        out = fut.result()
        for c, r in zip(pending[fut], out if isinstance(out, list) else [out]):
            results[c] = r
        if bar is not None:
            bar.update(len(pending[fut]))
    if bar is not None:
        bar.close()
    return table([results[c] for c in configs])


CURVE_MEASURE = "egf_l2"


def table(results) -> pd.DataFrame:
    """One row per result: config fields, final metrics, mean flow measures, divergence, and the
    EGF_2 curve as columns ``egf_l2@<epoch>`` (one per scheduled epoch; NaN after divergence)."""
    rows = []
    for r in results:
        row = dict(r.config)
        row.update(r.final)
        row.update({f"mean_{k}": r.flow_mean.get(k) for k in MEASURES})
        row.update(diverged=r.diverged, wall_s=r.wall_s)
        row.update({f"{CURVE_MEASURE}@{e}": f[CURVE_MEASURE] for e, f in sorted(r.flow.items())})
        rows.append(row)
    return pd.DataFrame(rows)


def curves(table: pd.DataFrame, measure: str = CURVE_MEASURE) -> pd.DataFrame:
    """The flow curves of a :func:`table` in long form: one row per (run, epoch) with columns
    ``run`` (the table's index), ``epoch``, ``value`` and the table's other columns."""
    cols = [c for c in table.columns if c.startswith(f"{measure}@")]
    long = table.reset_index(names="run").melt(
        id_vars=["run"] + [c for c in table.columns if "@" not in c], value_vars=cols,
        var_name="epoch", value_name="value")
    long["epoch"] = long["epoch"].str.split("@").str[1].astype(int)
    return long.dropna(subset=["value"]).sort_values(["run", "epoch"], ignore_index=True)
