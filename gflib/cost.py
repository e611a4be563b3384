"""What a chapter's grid costs on this device, before running it: each kind of run is timed
briefly and the times are extrapolated to the whole grid.

    python -m gflib.cost sc_sdc_and_egf batchnorm --preset paper --device cuda [--json PATH]

One run, trained one by one as :func:`gflib.train.run` trains it, is modelled as
``setup + points * flow + epochs * (steps * step + evaluation)`` seconds, where ``steps =
ceil(n_train / batch_size)`` and ``points`` is the length of its flow schedule. The four terms
are measured for each :func:`shape` with four short runs of the real training code on the real
data and device (``a`` and ``b`` batches per epoch, one or two epochs, two or three flow points)
and solved for by differences (:func:`time_shape`).

CHOICEs: one run per shape is timed, with Adam, the costliest per step of the optimizers a grid
uses (two moment buffers), so the estimate bounds the others from above; optimizer and learning
rate are not part of the shape. Stacking is not counted: ``sweep.run(stack=K)`` trains up to K
runs of a shape at once, and ``python -m gflib.bench`` measures what that buys.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time

import pandas as pd
import torch

from . import chapters, presets, publish, train
from .config import RunConfig
from .flow import schedule

def shape(config: RunConfig) -> tuple:
    """What sets the cost of one step of ``config``: every field but the seed, the optimizer and
    its learning rate, the epochs, the flow schedule, the initialisation and the SC-SDC partner's
    width (a sparse member's step costs the same at any density)."""
    return (config.dataset, config.model, config.depth, config.width, config.activation,
            config.batchnorm, config.skip, config.sparse, config.augment, config.l2 > 0,
            config.weight_decay > 0, config.batch_size, config.train_subset, config.test_subset,
            config.data_dir, config.device)


def _timed_run(config: RunConfig) -> float:
    sync = torch.cuda.synchronize if torch.device(config.device).type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    train.run(config)
    sync()
    return time.perf_counter() - t


def time_shape(config: RunConfig, a: int = 10, b: int = 40, timer=_timed_run,
               repeats: int = 3) -> dict:
    """Seconds of each term of the cost model for runs shaped like ``config``.

    Times four runs of ``config`` (with Adam) on ``a * batch_size`` or ``b * batch_size`` training
    examples (``b`` shrunk to what the training split holds, ``a`` to at most ``b / 4``):
    ``T1`` (a batches, 1 epoch, 2 flow points), ``T2`` (b, 1, 2), ``T3`` (a, 2, 2),
    ``T4`` (a, 2, 3); then ``step = (T2 - T1) / (b - a)``, ``eval = T3 - T1 - a * step``,
    ``flow = T4 - T3``, ``setup = T1 - 2 * flow - a * step - eval``, each at least 0. Each ``T``
    is the median of ``repeats`` timings, after one warm-up run: single timings of short runs
    proved too noisy on a GPU (an H100 gave 0 to 35 ms per step for shapes whose neighbours took
    2 to 5 ms).
    """
    if not 0 < a < b:
        raise ValueError(f"need 0 < a < b batches, got a={a}, b={b}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    base = dataclasses.replace(config, optimizer="adam", lr=1e-3, weight_decay=0.0)
    available = len(train.dataset_for(dataclasses.replace(base, train_subset=None)).y_train)
    if b * base.batch_size > available:
        b = available // base.batch_size
        a = min(a, b // 4)
        if a < 1:
            raise ValueError(f"{config.dataset} has {available} training examples: too few for "
                             f"4 batches of {base.batch_size}")

    def timed(batches, epochs, points):
        return timer(dataclasses.replace(base, train_subset=batches * base.batch_size,
                                         epochs=epochs, flow_points=points))

    timed(a, 1, 2)
    plan = [(a, 1, 2), (b, 1, 2), (a, 2, 2), (a, 2, 3)]
    samples = [[] for _ in plan]
    for _ in range(repeats):
        for i, args in enumerate(plan):
            samples[i].append(timed(*args))
    t1, t2, t3, t4 = (statistics.median(ts) for ts in samples)
    step = max(0.0, (t2 - t1) / (b - a))
    evaluation = max(0.0, t3 - t1 - a * step)
    flow = max(0.0, t4 - t3)
    setup = max(0.0, t1 - 2 * flow - a * step - evaluation)
    return {"setup_s": setup, "flow_s": flow, "step_s": step, "eval_s": evaluation}


def run_seconds(config: RunConfig, terms: dict, n_train: int) -> float:
    """The cost model's seconds for ``config`` given its shape's ``terms`` and training size."""
    points = len(schedule(config.epochs, config.flow_points))
    steps = math.ceil(n_train / config.batch_size)
    return (terms["setup_s"] + points * terms["flow_s"]
            + config.epochs * (steps * terms["step_s"] + terms["eval_s"]))


def estimate(configs, a: int = 10, b: int = 40, timer=_timed_run,
             repeats: int = 3) -> pd.DataFrame:
    """One row per shape in ``configs``: ``runs``, the measured terms (seconds), ``n_train`` and
    ``estimate_s`` (the cost model summed over that shape's runs)."""
    groups: dict = {}
    for c in configs:
        groups.setdefault(shape(c.validate()), []).append(c)
    rows = []
    for members in groups.values():
        first = members[0]
        n_train = len(train.dataset_for(first).y_train)
        terms = time_shape(first, a, b, timer, repeats)
        rows.append({"depth": first.depth, "width": first.width, "sparse": first.sparse,
                     "batchnorm": first.batchnorm, "skip": first.skip, "augment": first.augment,
                     "l2": first.l2 > 0, "runs": len(members), "n_train": n_train, **terms,
                     "estimate_s": sum(run_seconds(c, terms, n_train) for c in members)})
    return pd.DataFrame(rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m gflib.cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="+", choices=chapters.names())
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batches", type=int, nargs=2, default=(10, 40), metavar=("A", "B"),
                        help="batches per epoch of the short timing runs (default 10 40)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings per term, their median is used (default 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    p = presets.get(args.preset)
    out = {"preset": p.name, "device": args.device,
           "device_name": publish.device_name(args.device), "torch": torch.__version__,
           "chapters": {}}
    total = 0.0
    print(f"preset {p.name} on {out['device_name']}: runs trained one by one, Adam per step")
    for chapter in args.chapters:
        configs = chapters.get(chapter).grid(p, device=args.device, data_dir=args.data_dir)
        started = time.perf_counter()
        shapes = estimate(configs, *args.batches, repeats=args.repeats)
        seconds = float(shapes["estimate_s"].sum())
        total += seconds
        out["chapters"][chapter] = {"runs": len(configs), "estimate_h": seconds / 3600,
                                    "timing_s": time.perf_counter() - started,
                                    "shapes": shapes.to_dict("records")}
        print(f"{chapter:<18}{len(configs):>7} runs{len(shapes):>5} shapes"
              f"{seconds / 3600:>10.1f} h")
    out["total_h"] = total / 3600
    print(f"{'total':<18}{'':>22}{total / 3600:>10.1f} h")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
