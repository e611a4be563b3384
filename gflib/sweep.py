"""Run a grid of configs through a results store and return its :class:`gflib.results.Results`.

Work is sent to an executor as groups (:func:`train_group`: one stacked group of runs, or one
run); a worker trains its group and returns the results; this process alone writes the store, as
each group finishes, so a stopped sweep resumes with nothing lost and a worker never needs the
store's folder. Long groups checkpoint their state per epoch (``<store>/.checkpoints``) where the
worker can reach the store's folder, so a killed group resumes where it stopped.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from pathlib import Path

from . import train
from .config import RunConfig
from .results import Results
from .stacked import groups
from .store import ResultStore, config_key


class InlineExecutor(Executor):
    """Runs each submitted call at once in this process (the default executor). A sweep submits
    to it one group at a time, so each group is stored before the next one trains."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


def group_key(configs) -> str:
    """A name for a group of runs: a hash of its runs' store keys."""
    blob = ",".join(config_key(c) for c in configs)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def train_group(configs, checkpoint_dir: str | None = None) -> list:
    """The unit of work: train ``configs`` as one group (:func:`gflib.train.train`) and return
    their results; writes nothing but the group's checkpoint in ``checkpoint_dir``."""
    ckpt = Path(checkpoint_dir) / f"{group_key(configs)}.pt" if checkpoint_dir else None
    return train.train(configs, checkpoint=ckpt)


def run(configs, store_dir, executor: Executor | None = None, progress: bool = True,
        desc: str = "runs", stack: int | None = None, checkpoint: bool = True) -> Results:
    """Run every config not yet in ``store_dir`` and return the results of all of them.

    Before anything trains: every config is checked (:func:`gflib.train.check_buildable`), an
    empty grid is refused and the store is proven writable. ``executor``: any
    ``concurrent.futures.Executor`` (a ProcessPoolExecutor, a Dask client's executor); the default
    runs in this process. ``stack``: at most this many runs train together as one stacked model
    (:mod:`gflib.stacked`; same results up to float summation order), grouped by
    :func:`gflib.stacked.stack_key`; None or 1 runs them one by one. ``checkpoint``: let long
    groups checkpoint into the store's folder. Rows are in the order of ``configs``. A group
    that raises does not stop the others: every group that finishes is stored, then the first
    error is raised.
    """
    configs = list(configs)
    if not configs:
        raise ValueError("no configs to run: the grid is empty (check the chapter's settings "
                         "and overrides)")
    for c in configs:
        if not isinstance(c, RunConfig):
            raise ValueError(f"expected RunConfig, got {type(c).__name__}")
    if stack is not None and (isinstance(stack, bool) or not isinstance(stack, int) or stack < 1):
        raise ValueError(f"stack must be None or an integer >= 1, got {stack!r}")
    for c in dict.fromkeys(c.replace(seed=0) for c in configs):
        train.check_buildable(c)
    store = ResultStore(store_dir)
    store.check_writable()
    results, todo = {}, []
    for c in dict.fromkeys(configs):
        stored = store.get(c)
        if stored is None:
            todo.append(c)
        else:
            results[c] = stored
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(results) + len(todo), initial=len(results), desc=desc)
    batches = groups(todo, stack) if stack and stack > 1 else [[c] for c in todo]
    executor = executor or InlineExecutor()
    ckpt_dir = str(store.root / ".checkpoints") if checkpoint else None
    window = 1 if isinstance(executor, InlineExecutor) else max(1, len(batches))
    queue, pending, errors = iter(batches), {}, []
    while True:
        while len(pending) < window and (group := next(queue, None)) is not None:
            pending[executor.submit(train_group, group, ckpt_dir)] = group
        if not pending:
            break
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            group = pending.pop(fut)
            if fut.exception() is not None:
                errors.append(fut.exception())
                continue
            for c, r in zip(group, fut.result()):
                store.put(r)
                results[c] = r
            if bar is not None:
                bar.update(len(group))
    if bar is not None:
        bar.close()
    if errors:
        raise errors[0]
    return Results.from_results([results[c] for c in configs])
