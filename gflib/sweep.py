"""Run a grid of configs through a results store and return its :class:`gflib.results.Results`.

Work is sent to an executor as groups (:func:`train_group`: one stacked group of runs, or one
run); a worker trains its group and returns the results; this process alone writes the store, as
each group finishes, so a stopped sweep resumes with nothing lost and a worker never needs the
store's folder. Long groups checkpoint their state per epoch (``<store>/.checkpoints``) where the
worker can reach the store's folder, so a killed group resumes where it stopped.

Beyond one machine: any ``concurrent.futures.Executor`` will do; :func:`executor_for` builds one
from a Dask scheduler's address (``dask.distributed``), whose scheduler re-runs the tasks of a
worker that died; a Dask cluster left with no worker stops the sweep after :data:`NO_WORKERS_S`
(:class:`NoWorkers`), with what came back stored. A group that raises is split in halves and
retried (:data:`SPLIT_ON`), down to single runs; the runs that still fail are recorded in
``<store>/.failures`` and the sweep goes on, then raises :class:`SweepError` with a
:class:`Summary`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import sys
import time
import traceback
from concurrent.futures import (FIRST_COMPLETED, BrokenExecutor, Executor, Future,
                                ProcessPoolExecutor, ThreadPoolExecutor, wait)
from pathlib import Path

import torch

from . import data, models, negflow, train, updates
from .atomic import write_json
from .config import RunConfig, RunResult, config_key
from .flow import MEASURES, schedule
from .progress import bar as progress_bar, from_env as progress_from_env
from .results import Results
from .stacked import CPU_MAX_WIDTH, groups, stack_key
from .store import FULL, ResultStore, megabytes, payload

SPLIT_ON = (RuntimeError, MemoryError)
"""Errors after which a group of several runs is split in halves and retried: torch's
out-of-memory and CUDA errors are RuntimeErrors, a host out of memory raises MemoryError, and
Dask's ``KilledWorker`` (a task that took down its worker more than ``allowed-failures`` times) is
added when Dask is installed. Any other error (a ValueError, a TypeError: a bug that a smaller
group would meet again; a broken process pool, which takes no more work) is recorded for each run
of its group without a retry."""

NO_WORKERS_S = 120.0
"""Seconds a sweep waits for a Dask cluster that has no worker (all died, or were never
started) before it stops with :class:`NoWorkers`; a worker that joins meanwhile resets the
clock."""
POLL_S = 5.0
"""Seconds between looks at a Dask cluster's workers while no group comes back."""

FAILURES = ".failures"
"""The store's subfolder of failed runs: ``<key>.json`` each (config, error, group size); a run
that later succeeds has its file removed."""


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


@dataclasses.dataclass
class Failure:
    """A run that failed: its config, the group size it last ran in, and the error."""

    config: RunConfig
    group_size: int
    error: str
    traceback: str = ""


@dataclasses.dataclass
class Summary:
    """What a sweep did: ``runs`` (distinct configs), ``stored`` (found in the store),
    ``trained`` (stored by this sweep), ``splits`` (groups split after an error), ``failures``
    (runs that failed even alone, or with an error that splitting cannot help) and ``results``
    (the tables of every run that has a result, in the order of the configs)."""

    runs: int
    stored: int
    trained: int = 0
    splits: int = 0
    failures: list = dataclasses.field(default_factory=list)
    results: Results | None = None
    not_run: int = 0

    def line(self) -> str:
        """The summary in one sentence."""
        return (f"{self.runs} runs: {self.stored} already stored, {self.trained} trained, "
                f"{len(self.failures)} failed, {self.splits} groups split after an error")


class SweepError(RuntimeError):
    """Some runs failed after every retry; ``summary`` says which and why. Every other run is
    stored."""

    def __init__(self, summary: Summary, store: Path):
        self.summary = summary
        first = summary.failures[0]
        super().__init__(f"{len(summary.failures)} of {summary.runs} runs failed (recorded in "
                         f"{store / FAILURES}); first: {first.error}; {summary.line()}")


class StoreFull(RuntimeError):
    """The results store's disk filled up mid-sweep (``OSError`` ENOSPC or EDQUOT, the
    ``__cause__``). ``unstored``: the results trained but not written
    (:class:`gflib.config.RunResult`; ``ResultStore(...).put`` each once there is room);
    ``summary``: the sweep so far. Every other result is stored, so the same sweep, once there is
    room, trains only what is missing."""

    def __init__(self, message: str, unstored: list, summary: Summary):
        super().__init__(message)
        self.unstored, self.summary = unstored, summary


class Stopped(RuntimeError):
    """The sweep reached its ``stop_at`` time: no group started after it, the groups running then
    finished and were stored. ``summary``: the sweep so far (``not_run``: the runs left); the
    same sweep again trains only those."""

    def __init__(self, message: str, summary: Summary):
        super().__init__(message)
        self.summary = summary


class NoWorkers(RuntimeError):
    """The Dask cluster had no worker for :data:`NO_WORKERS_S` seconds while groups were waiting
    for one. Every group that came back is stored: the same sweep resumes from them."""


def _split_on() -> tuple:
    try:
        from distributed import KilledWorker
    except ImportError:
        return SPLIT_ON
    return SPLIT_ON + (KilledWorker,)


def group_key(configs) -> str:
    """A name for a group of runs: a hash of its runs' store keys."""
    blob = ",".join(config_key(c) for c in configs)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


LONGEST = -1.2345678901234567e-308
"""A float whose JSON takes as many characters as any float64 can (24)."""


@functools.lru_cache(maxsize=256)
def _weight_names(config: RunConfig) -> tuple:
    spec = data.check(config.dataset)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return tuple(models.maskable_weights(models.build(config, spec.shape, spec.classes)))


def stand_in(config: RunConfig) -> RunResult:
    """A result of ``config`` with as many entries as a real one (one history entry per epoch,
    its flow schedule, one sparsity entry per maskable tensor, its trace) and every number at
    its longest (:data:`LONGEST`): what :func:`expected_bytes` measures."""
    x, names = LONGEST, _weight_names(config.replace(seed=0))
    epochs = list(range(1, config.epochs + 1))
    metrics = dict.fromkeys(("test_loss", "test_acc", "train_loss", "train_acc"), x)
    trace = {}
    if config.trace == "updates":
        trace = {"layers": list(names), "epochs": epochs,
                 **{q: {n: [x] * len(epochs) for n in names} for q in updates.QUANTITIES}}
    elif config.trace == "activations":
        trace = {f"{n}.{q}": x for n in ("", *names) for q in negflow.QUANTITIES}
    return RunResult(
        config=config.to_dict(), history=[{"epoch": e, **metrics} for e in epochs],
        flow={e: dict.fromkeys(MEASURES, x) for e in schedule(config.epochs, config.flow_points)},
        flow_mean=dict.fromkeys(MEASURES, x), final=metrics, diverged=True,
        diverged_epoch=config.epochs, wall_s=x, device=config.device,
        diverged_reason="non-finite", trace=trace,
        sparsity={"active": x, "layers": dict.fromkeys(names, x), "dead_units": 10 ** 12,
                  "target": x}, off_target=True)


@functools.lru_cache(maxsize=4096)
def _bytes_at_seed_0(config: RunConfig) -> int:
    r = stand_in(config)
    out = payload(dataclasses.replace(r, history=[], flow={}, trace={}))
    out["result"].update(history=r.history, flow={str(e): v for e, v in r.flow.items()},
                         trace=r.trace)  # what to_dict gives, without its deep copy of them
    return len(json.dumps(out, allow_nan=True).encode())


def expected_bytes(configs) -> int:
    """About how many bytes the store takes for the results of ``configs`` (each the size of
    its :func:`stand_in`, an upper bound but for a longer trace), for the free-space check
    before a sweep trains."""
    return sum(_bytes_at_seed_0(c.replace(seed=0)) + len(str(c.seed)) - 1 for c in configs)


def _writable_folder(folder: str) -> bool:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def train_group(configs, checkpoint_dir: str | None = None) -> list:
    """The unit of work: train ``configs`` as one group (:func:`gflib.train.train`) and return
    their results; writes nothing but the group's checkpoint in ``checkpoint_dir``, when this
    process can write there (a worker on another machine may not), else trains without one."""
    ckpt = None
    if checkpoint_dir and _writable_folder(checkpoint_dir):
        ckpt = Path(checkpoint_dir) / f"{group_key(configs)}.pt"
    return train.train(configs, checkpoint=ckpt)


def balanced_groups(configs, seconds, target_s: float, max_size: int,
                    cpu_max_width: int | None = CPU_MAX_WIDTH) -> list:
    """``configs`` in groups that can each train as one stack (:func:`gflib.stacked.stack_key`)
    and each hold about ``target_s`` estimated seconds: runs of one stack key join a group, in
    first-seen order, while it has fewer than ``max_size`` runs and ``seconds(group)`` (estimated
    seconds of a list of configs trained as one group, e.g. from :func:`gflib.cost.estimator`)
    stays at most ``target_s``; a group always takes its first run, however long."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_size must be an integer >= 1, got {max_size!r}")
    if not isinstance(target_s, (int, float)) or not target_s > 0:
        raise ValueError(f"target_s must be a number of seconds > 0, got {target_s!r}")
    open_groups, out = {}, []
    for c in configs:
        key = stack_key(c, cpu_max_width)
        group = open_groups.get(key) if key is not None else None
        if group is not None and len(group) < max_size and seconds(group + [c]) <= target_s:
            group.append(c)
            continue
        group = [c]
        out.append(group)
        if key is not None:
            open_groups[key] = group
    return out


LOCAL_EXECUTORS = (InlineExecutor, ThreadPoolExecutor, ProcessPoolExecutor)
"""Executors that train on this machine: a sweep checks here, before anything trains, that the
configs' devices exist (:func:`gflib.train.check_device`); on another executor's workers (Dask)
each group checks its own."""


def _check(configs, stack, seconds, target_s, executor=None) -> list:
    configs = list(configs)
    if not configs:
        raise ValueError("no configs to run: the grid is empty (check the chapter's settings "
                         "and overrides)")
    for c in configs:
        if not isinstance(c, RunConfig):
            raise ValueError(f"expected RunConfig, got {type(c).__name__}")
    if stack is not None and (isinstance(stack, bool) or not isinstance(stack, int) or stack < 1):
        raise ValueError(f"stack must be None or an integer >= 1, got {stack!r}")
    if (seconds is None) != (target_s is None):
        raise ValueError(f"give both seconds and target_s to balance groups, or neither; got "
                         f"seconds={seconds!r}, target_s={target_s!r}")
    for c in dict.fromkeys(c.replace(seed=0) for c in configs):
        train.check_buildable(c)
    if executor is None or isinstance(executor, LOCAL_EXECUTORS):
        for device in dict.fromkeys(c.device for c in configs):
            train.check_device(device)
    return configs


def _record_failure(store: ResultStore, failure: Failure) -> None:
    payload = {"config": failure.config.to_dict(), "group_size": failure.group_size,
               "error": failure.error, "traceback": failure.traceback}
    write_json(store.root / FAILURES / f"{config_key(failure.config)}.json", payload, indent=1)


def failures(store_dir) -> list:
    """The failures recorded in ``store_dir`` (dicts: ``config``, ``group_size``, ``error``,
    ``traceback``), for runs that have no result yet."""
    out = []
    for path in sorted((Path(store_dir) / FAILURES).glob("*.json")):
        with contextlib.suppress(OSError, ValueError, RecursionError):
            out.append(json.loads(path.read_text()))
    return out


def run(configs, store_dir, executor: Executor | None = None, progress: bool = True,
        desc: str = "runs", stack: int | None = None, checkpoint: bool = True,
        seconds=None, target_s: float | None = None, on_group=None,
        stop_at: float | None = None) -> Results:
    """Run every config not yet in ``store_dir`` and return the results of all of them.

    Before anything trains: every config is checked (:func:`gflib.train.check_buildable`; its
    device, where the executor trains here: :data:`LOCAL_EXECUTORS`), an empty grid is refused
    and, when anything is missing, the store is proven writable, the runs' places in it free
    (:meth:`gflib.store.ResultStore.check_can_store`) and its disk with room for the results to
    train (:func:`expected_bytes`; else ValueError); a complete store is only read (it may be
    on read-only media). ``executor``: any ``concurrent.futures.Executor`` (a
    ProcessPoolExecutor, :func:`executor_for`'s Dask executor); the default runs in this
    process. ``stack``: at most this many runs train together
    as one stacked model (:mod:`gflib.stacked`; same results up to float summation order),
    grouped by :func:`gflib.stacked.stack_key`; None or 1 runs them one by one. ``seconds`` and
    ``target_s``: size the groups by estimated seconds instead (:func:`balanced_groups`).
    ``checkpoint``: let long groups checkpoint into the store's folder. Rows are in the order of
    ``configs``. A group that raises does not stop the others (see the module doc): when runs
    still fail at the end, every other run is stored and :class:`SweepError` is raised, chained
    to the first error; a Dask cluster with no worker for :data:`NO_WORKERS_S` raises
    :class:`NoWorkers`, every group that came back stored; a store whose disk fills up raises
    :class:`StoreFull`, which keeps what trained but could not be written.
    ``on_group(done, total, trained)``: called after each stored group with the runs that have a
    result, all runs, and the runs this sweep trained (e.g. a
    :class:`gflib.progress.ProgressLog`, whose ``note`` also gets the sweep's messages); default:
    :func:`gflib.progress.from_env`'s log when ``$GFLIB_PROGRESS_LOG`` is set, else none.
    ``stop_at``: a ``time.monotonic()`` time after which no group starts (groups waiting in a
    process pool or on a cluster are cancelled; those training finish and are stored); runs
    left then raise :class:`Stopped`.
    """
    summary, first_error = run_summary(configs, store_dir, executor, progress, desc, stack,
                                       checkpoint, seconds, target_s, on_group, stop_at)
    if summary.not_run:
        raise Stopped(f"stopped at its time limit: {summary.runs - summary.not_run} of "
                      f"{summary.runs} runs stored in {store_dir}, {summary.not_run} left; the "
                      "same sweep again trains only those", summary)
    if summary.failures:
        raise SweepError(summary, Path(store_dir)) from first_error
    return summary.results


def run_summary(configs, store_dir, executor: Executor | None = None, progress: bool = True,
                desc: str = "runs", stack: int | None = None, checkpoint: bool = True,
                seconds=None, target_s: float | None = None, on_group=None,
                stop_at: float | None = None) -> tuple:
    """:func:`run` without raising for failed runs or a stop: ``(Summary, first error or
    None)``."""
    configs = _check(configs, stack, seconds, target_s, executor)
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, (int, float))):
        raise ValueError(f"stop_at must be None or a time.monotonic() time in seconds, got "
                         f"{stop_at!r}")
    store = ResultStore(store_dir)
    results = {c: r for c in dict.fromkeys(configs) if (r := store.get(c)) is not None}
    todo = [c for c in dict.fromkeys(configs) if c not in results]
    if todo:
        store.check_writable()
        store.check_can_store(todo)
        store.remove_stale_temporaries()
        store.check_space(expected_bytes(todo), f"the results of the {len(todo)} runs to train")
    summary = Summary(runs=len(results) + len(todo), stored=len(results))
    bar = progress_bar(summary.runs, len(results), desc) if progress else None
    on_group = on_group if on_group is not None else progress_from_env(desc)
    if seconds is not None:
        batches = balanced_groups(todo, seconds, target_s, stack or 1)
    else:
        batches = groups(todo, stack) if stack and stack > 1 else [[c] for c in todo]
    executor = executor or InlineExecutor()
    ckpt_dir = str(store.root / ".checkpoints") if checkpoint else None
    window = 1 if isinstance(executor, InlineExecutor) else float("inf")
    first_error, queue, pending = None, list(reversed(batches)), {}
    while queue or pending:
        if stop_at is not None and time.monotonic() >= stop_at and (queue or pending):
            queue.clear()
            for fut in [f for f in pending if f.cancel()]:
                pending.pop(fut)
            if not pending:
                break
        while len(pending) < window and queue:
            group = queue.pop()
            pending[executor.submit(train_group, group, ckpt_dir)] = group
        done = _wait(pending, executor, on_group,
                     lambda: f"{len(results)} of {summary.runs} runs are stored in {store.root}")
        for fut in done:
            group, error = pending.pop(fut), fut.exception()
            if error is None:
                with _stop_when_full(store, configs, results, summary, pending, fut.result()):
                    _store_group(store, group, fut.result(), results, summary)
                if bar is not None:
                    bar.update(len(group))
                if on_group is not None:
                    on_group(len(results), summary.runs, summary.trained)
            elif not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: stop now
                raise error
            elif _splits(group, error):
                summary.splits += 1
                queue += [group[len(group) // 2:], group[:len(group) // 2]]
            else:
                first_error = first_error or error
                with _stop_when_full(store, configs, results, summary, pending, []):
                    _record_failures(store, group, error, summary)
    if bar is not None:
        bar.close()
    failed = {f.config for f in summary.failures}
    summary.not_run = sum(1 for c in dict.fromkeys(configs) if c not in results and c not in failed)
    if summary.not_run:
        _say(f"stopped at its time limit with {summary.not_run} runs left", on_group)
    summary.results = Results.from_results([results[c] for c in configs if c in results])
    return summary, first_error


def _cluster(executor) -> tuple | None:
    """``(scheduler address, workers)`` of a Dask executor's cluster (0 workers when the
    scheduler cannot be reached); None for any other executor."""
    client = getattr(executor, "_client", None)
    if client is None or not hasattr(client, "nthreads"):
        return None
    address = getattr(client.scheduler, "address", None) or "the Dask scheduler"
    try:
        return address, len(client.nthreads())
    except OSError:  # the scheduler is gone too (a comm error or a timeout)
        return address, 0


def _wait(pending: dict, executor, on_group, stored) -> set:
    """The futures of ``pending`` that are done, once one is. While none is and ``executor``'s
    Dask cluster has no worker: a message (stderr, and ``on_group.note`` when it has one), and
    after :data:`NO_WORKERS_S` the pending groups cancelled and :class:`NoWorkers` raised
    (``stored()``: what is stored, in words)."""
    alone_since = None
    while True:
        done, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
        if done:
            return done
        cluster = _cluster(executor)
        if cluster is None or cluster[1] > 0:
            alone_since = None
            continue
        address = cluster[0]
        if alone_since is None:
            alone_since = time.monotonic()
            _say(f"no Dask worker on {address} ({stored()}): waiting up to "
                 f"{NO_WORKERS_S:g} s for one to join", on_group)
        elif time.monotonic() - alone_since >= NO_WORKERS_S:
            runs = sum(len(group) for group in pending.values())
            for fut in pending:
                fut.cancel()
            message = (f"the Dask cluster at {address} has had no worker for {NO_WORKERS_S:g} s "
                       f"(sweep.NO_WORKERS_S) with {runs} runs waiting; {stored()}: start "
                       "workers and run the same sweep again to train only the rest")
            _say(f"stopped: {message}", on_group)
            raise NoWorkers(message)


def _say(text: str, on_group) -> None:
    print(f"gflib.sweep: {text}", file=sys.stderr, flush=True)
    if callable(getattr(on_group, "note", None)):
        on_group.note(text)


@contextlib.contextmanager
def _stop_when_full(store: ResultStore, configs, results: dict, summary: Summary, pending: dict,
                    trained: list):
    """Turn a write that found the store's disk full into :class:`StoreFull` (``trained``: the
    group's results, those not in ``results`` kept on the error), the pending groups
    cancelled."""
    try:
        yield
    except OSError as error:
        if error.errno not in FULL:
            raise
        for fut in pending:
            fut.cancel()
        unstored = [r for r in trained if RunConfig(**r.config) not in results]
        left = [c for c in dict.fromkeys(configs) if c not in results]
        raise StoreFull(
            f"results store {store.root} is full ({error.strerror}) with {len(results)} of "
            f"{summary.runs} runs stored: the {len(left)} others need about "
            f"{megabytes(expected_bytes(left))}; free space there (or give another "
            "results_dir) and run the same sweep again to train only those. The "
            f"{len(unstored)} results trained but not written are on this error's `unstored`",
            unstored, summary) from error


def _store_group(store: ResultStore, group, group_results, results: dict, summary: Summary):
    for c, r in zip(group, group_results):
        store.put(r)
        (store.root / FAILURES / f"{config_key(c)}.json").unlink(missing_ok=True)
        results[c] = r
    summary.trained += len(group)


def _splits(group, error: Exception) -> bool:
    """Whether ``group`` is split in halves and retried after ``error`` (:data:`SPLIT_ON`)."""
    return (len(group) > 1 and isinstance(error, _split_on())
            and not isinstance(error, BrokenExecutor))


def _record_failures(store: ResultStore, group, error: Exception, summary: Summary):
    text = "".join(traceback.format_exception(error))
    for c in group:
        failure = Failure(c, len(group), f"{type(error).__name__}: {error}", text)
        _record_failure(store, failure)
        summary.failures.append(failure)


_LOCAL = re.compile(r"local:(\d+)")


@contextlib.contextmanager
def executor_for(scheduler: str | None, threads_per_worker: int = 1):
    """A context manager giving the executor for ``scheduler``, for :func:`run`'s ``executor``:

    - ``None``: yields None (this process trains);
    - ``"tcp://host:8786"`` (any ``protocol://`` address of a running ``dask scheduler``): a
      ``dask.distributed.Client`` connected to it;
    - ``"local:N"``: a ``dask.distributed.LocalCluster`` of N worker processes on this machine,
      ``threads_per_worker`` torch threads each.

    Prints the Dask dashboard's address. The executor submits each group once per call
    (``pure=False``); Dask re-runs a task whose worker died on another worker."""
    if scheduler is None:
        yield None
        return
    local = _LOCAL.fullmatch(str(scheduler))
    if not (local and int(local.group(1)) >= 1) and "://" not in str(scheduler):
        raise ValueError(f"scheduler {scheduler!r}: give a Dask scheduler address such as "
                         "'tcp://host:8786', or 'local:N' (N >= 1 worker processes here), or None")
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if local:
            threads = str(threads_per_worker)
            cluster = stack.enter_context(LocalCluster(
                n_workers=int(local.group(1)), threads_per_worker=1, processes=True,
                env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
        print(f"Dask scheduler {client.scheduler.address}, dashboard {client.dashboard_link}")
        yield client.get_executor(pure=False)
