"""Run a chapter's sweep at a preset and write a small summary the book can show.

    python -m gflib.publish batchnorm --preset fmnist [--device cuda] [--results DIR]
                            [--stack K] [--workers N | --scheduler ADDRESS]
                            [--cost COST_JSON [--group-seconds S]]

writes ``book/data/<chapter>/<preset>.csv`` (``--out``: another data folder) (one row per run: config, final metrics, mean flow
measures, the EGF curve, diverged) and ``<preset>.json`` (provenance: preset and overrides, gflib
git commit, torch version, device name, date, wall time, number of runs) and
``<preset>-verdicts.json`` (the chapter's verdicts on it). ``python -m gflib.publish --verdicts``
trains nothing and rewrites every stored summary's verdicts (after a change to the analysis). The raw per-run results
stay in the results store (``results/`` by default, git-ignored); a stopped command resumes.
Progress: a bar on the console (runs done/total, rate, ETA) and a log of one line per stored group
(timestamp, runs done/total, elapsed, rate, ETA) in ``<results store>/<chapter>/<name>.log``,
beside the run folder: ``tail -f`` it to follow a long sweep from elsewhere.
``--workers N`` trains in N processes (spawned, so each may use CUDA): on a GPU, small runs are
bound by Python's per-step overhead, and N processes keep the GPU busier. ``--scheduler
tcp://host:8786`` sends the groups to a Dask cluster's workers instead (one machine or many; see
the README's "Scaling out"), ``--scheduler local:N`` to N Dask worker processes here.
``--cost COST_JSON`` (written by ``python -m gflib.cost CHAPTER --stack K --json COST_JSON`` on
the workers' kind of device) sizes the groups by estimated seconds, about ``--group-seconds``
each (default 600), at most ``--stack`` runs each, so the workers' loads are balanced.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from . import chapters, cost, presets, summaries, sweep
from .atomic import check_writable
from .progress import ProgressLog, duration

DATA = Path("book") / "data"
"""The default data folder: the book's, from the repository's root."""


def configs_for(chapter: str, preset, device="cpu", data_dir=None) -> list:
    """The run configs of ``chapter`` (:func:`gflib.chapters.names`) at ``preset``."""
    return chapters.get(chapter).grid(preset, device=device, data_dir=data_dir)


def publish(chapter: str, preset: str, overrides: dict | None = None, device: str = "cpu",
            data_dir=None, results_root=None, out_root: Path = DATA, stack: int | None = None,
            workers: int = 1, name: str | None = None, progress: bool = True,
            scheduler: str | None = None, cost_json=None, group_s: float = 600.0,
            stop_at: float | None = None) -> Path:
    """Run (or resume) ``chapter``'s sweep at ``preset`` and write its summary; returns the CSV.
    ``stack``: see :func:`gflib.sweep.run`; ``workers``: processes training at once; ``name``:
    the summary's file name and the results store's folder (default: the preset's name, with
    ``-tf32`` when the override ``tf32=True`` turns TF32 on; give another when overrides or the
    device make it a different scale, e.g. ``fmnist-h100``);
    ``scheduler``: a Dask scheduler's address or ``local:N`` (:func:`gflib.sweep.executor_for`),
    in place of ``workers``; ``cost_json``: a ``python -m gflib.cost --json`` file covering
    ``chapter``, to size groups at about ``group_s`` estimated seconds each
    (:func:`gflib.sweep.balanced_groups`); ``stop_at``: a ``time.monotonic()`` time after which
    no group starts (:func:`gflib.sweep.run`): runs left then raise
    :class:`gflib.sweep.Stopped` and no summary is written."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if scheduler is not None and workers > 1:
        raise ValueError(f"give workers ({workers}) or a scheduler ({scheduler!r}), not both: "
                         "the Dask cluster's workers train the groups")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    p = presets.get(preset, **overrides)
    configs = configs_for(chapter, p, device=device, data_dir=data_dir)
    name = name or p.name + ("-tf32" if p.tf32 and not presets.get(preset).tf32 else "")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"summary name {name!r}: use letters, digits, '-' and '_' only")
    store = chapters.results_dir(chapter, name, results_root)
    check_writable(summaries.folder(chapters.get(chapter).NAME, out_root), "summary folder",
                   f"--out must be a writable folder (the data root, default {DATA})")
    seconds = estimator_from(cost_json, chapter) if cost_json else None
    log = progress_log(chapter, name, results_root)
    log.note(f"start: {len(configs)} runs at preset {p.name}"
             + (f" with {overrides}" if overrides else "")
             + f" on {device}, stack {stack}, workers {workers}, scheduler {scheduler}; "
             f"store {store}")
    if progress:
        print(f"progress log: {log.path}", file=sys.stderr)
    start = time.perf_counter()
    with contextlib.ExitStack() as resources:
        executor = resources.enter_context(sweep.executor_for(scheduler))
        if workers > 1:
            executor = resources.enter_context(ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=torch.set_num_threads, initargs=(max(1, os.cpu_count() // workers),)))
        try:
            results = sweep.run(configs, store, executor=executor, progress=progress,
                                desc=f"{chapter} @ {name}", stack=stack, seconds=seconds,
                                target_s=group_s if seconds else None, on_group=log,
                                stop_at=stop_at)
        except BaseException as error:
            log.note(f"stopped after {duration(log.elapsed())}: {type(error).__name__}: {error}")
            raise
    wall = time.perf_counter() - start
    table = results.runs
    provenance = summaries.provenance(
        chapter, name, p, overrides, device, table, wall, stack=stack, workers=workers,
        scheduler=scheduler, group_s=group_s if cost_json else None)
    csv = summaries.write(results, provenance, chapter, name, out_root)
    chapters.stored_verdicts(chapter, name, out_root, write=True)
    log.note(f"done: {len(table)} runs ({provenance['n_diverged']} diverged) in "
             f"{duration(wall)}; summary {csv}")
    return csv


def progress_log(chapter: str, name: str, results_root=None) -> ProgressLog:
    """The progress log of ``chapter``'s sweep ``name``: ``<results root>/<chapter>/<name>.log``,
    beside its run folder (:func:`gflib.chapters.results_dir`), outside the book's data."""
    store = chapters.results_dir(chapter, name, results_root)
    return ProgressLog(store.parent / f"{name}.log", desc=f"{chapter} @ {name}")


def estimator_from(cost_json, chapter: str):
    """:func:`gflib.cost.estimator` of ``chapter``'s shapes in a ``python -m gflib.cost --json``
    file; ValueError when the file has no figures for ``chapter``."""
    figures = json.loads(Path(cost_json).read_text())
    if chapter not in figures.get("chapters", {}):
        raise ValueError(f"{cost_json} has no cost figures for {chapter!r} (it has "
                         f"{sorted(figures.get('chapters', {}))}); run python -m gflib.cost "
                         f"{chapter} --json {cost_json}")
    return cost.estimator(figures["chapters"][chapter]["shapes"])


def main(argv=None, prog: str = "python -m gflib.publish"):
    epilog = "presets:\n" + "\n".join(f"  {p.name:<8}{p.note}" for p in presets.PRESETS.values())
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", nargs="?", choices=chapters.names(),
                        help="the chapter whose sweep runs: " + ", ".join(chapters.names()))
    parser.add_argument("--verdicts", action="store_true",
                        help="train nothing: analyse every stored summary under --out again and "
                             "rewrite its <name>-verdicts.json (after a change to the analysis)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                        help="train nothing: the verdicts of the summaries named A and B (e.g. "
                             "gpu gpu-tf32) side by side, chapter by chapter; exit status 1 "
                             "when any status differs")
    parser.add_argument("--preset", default="fmnist",
                        help="the scale (default fmnist): one of "
                             + ", ".join(presets.PRESETS) + " (listed below)")
    parser.add_argument("--device", default="cpu",
                        help="torch device to train on, e.g. cuda or cuda:1 (default cpu)")
    parser.add_argument("--data-dir", default=None,
                        help="folder of the datasets (default: where gflib.data looks)")
    parser.add_argument("--results", default=None,
                        help="results store root (default $GFLIB_RESULTS or results/); the "
                             "progress log is <root>/<chapter>/<name>.log")
    parser.add_argument("--out", default=str(DATA), help="summary root (default book/data)")
    parser.add_argument("--sparse-width", type=int, default=None,
                        help="override the preset's sparse width")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="override the preset's seeds, e.g. --seeds 0 1 2")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="override the preset's number of training examples")
    parser.add_argument("--tf32", action="store_true", default=None,
                        help="on a CUDA GPU, matmuls and convolutions in TF32 (default fp32); "
                             "the summary is then named <preset>-tf32 unless --name says")
    parser.add_argument("--stack", type=int, default=None,
                        help="train up to this many compatible runs at once (gflib.stacked)")
    parser.add_argument("--name", default=None,
                        help="summary name (default: the preset's), e.g. fmnist-h100")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes training at once (default 1: this process)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="a Dask scheduler (tcp://host:8786) whose workers train the groups, "
                             "or local:N for N Dask worker processes here")
    parser.add_argument("--cost", default=None, metavar="COST_JSON",
                        help="size groups by this python -m gflib.cost --json file's estimates")
    parser.add_argument("--group-seconds", type=float, default=600.0, metavar="S",
                        help="with --cost: estimated seconds per group (default 600)")
    args = parser.parse_args(argv)
    if args.verdicts:
        for path in chapters.write_stored_verdicts(Path(args.out)):
            print(path)
        return
    if args.compare:
        table = chapters.compare_verdicts(*args.compare, Path(args.out))
        if table.empty:
            parser.error(f"no chapter under {args.out} has summaries named both "
                         f"{args.compare[0]!r} and {args.compare[1]!r}")
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            print(table.to_string(index=False))
        differ = int((~table["same"]).sum())
        print(f"{len(table) - differ} of {len(table)} statuses the same")
        return 1 if differ else 0
    if args.chapter is None:
        parser.error("give a chapter, --verdicts or --compare")
    overrides = {"sparse_width": args.sparse_width, "epochs": args.epochs,
                 "seeds": tuple(args.seeds) if args.seeds else None,
                 "train_subset": args.train_subset, "tf32": args.tf32}
    csv = publish(args.chapter, args.preset, overrides, args.device, args.data_dir, args.results,
                  Path(args.out), stack=args.stack, workers=args.workers,
                  name=args.name, scheduler=args.scheduler, cost_json=args.cost,
                  group_s=args.group_seconds)
    print(csv)


if __name__ == "__main__":
    sys.exit(main())
