"""What a chapter's grid costs on this device, before running it: each kind of run is timed
briefly and the times are extrapolated to the whole grid.

    python -m gflib.cost sc_sdc_and_egf batchnorm --preset paper --device cuda [--stack K]
                         [--json PATH]
    python -m gflib.cost CHAPTER ... --preset gpu --stack K --predict h100 [--workers N]

The second form times nothing: it predicts a GPU's seconds from per-step figures measured there
earlier (:func:`predict`), for sizing a grid before a device is at hand.

One run, trained one by one as :func:`gflib.train.run` trains it, is modelled as
``setup + points * flow + epochs * (steps * step + evaluation)`` seconds, where ``steps =
ceil(n_train / batch_size)`` and ``points`` is the length of its flow schedule. The four terms
are measured for each :func:`shape` with four short runs of the real training code on the real
data and device (``a`` and ``b`` batches per epoch, one or two epochs, two or three flow points)
and solved for by differences (:func:`time_shape`).

Stacked groups (``--stack K``, as ``sweep.run(stack=K)`` trains them): the same four terms are
also measured for one group of K runs of each shape trained as one stacked model (K: the largest
group :func:`gflib.stacked.groups` forms of that shape's runs), and each term of a group of k
runs is interpolated linearly in k between the one-run and the K-run figures
(:func:`group_seconds`); the grid's estimate sums its groups. :func:`estimator` turns the table
into the ``seconds`` that :func:`gflib.sweep.balanced_groups` sizes groups by.

CHOICEs: one run (or group) per shape is timed, with Adam, the costliest per step of the
optimizers a grid uses (two moment buffers), so the estimate bounds the others from above;
optimizer and learning rate are not part of the shape.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import statistics
import time

import pandas as pd
import torch

from . import chapters, data, presets, summaries, train
from .config import COST, RunConfig
from .flops import step_flops, train_flops
from .flow import schedule
from .stacked import groups as stack_groups
from .train import PROBE_SIZE

TERMS = ("setup_s", "flow_s", "step_s", "eval_s")


def shape(config: RunConfig) -> tuple:
    """What sets the cost of one step of ``config``: the fields :class:`gflib.config.RunConfig`
    marks as changing cost (metadata :data:`gflib.config.COST`), each as its value or, for
    ``"set"`` fields (density, the SC-SDC partner's width, L2, weight decay), whether it differs
    from its default. Not the seed, the optimizer (CHOICE: timed with Adam, the costliest), its
    learning rate, the epochs or the flow schedule: the model counts those separately."""
    out = []
    for f in dataclasses.fields(RunConfig):
        kind = f.metadata.get(COST)
        if kind is not None:
            value = getattr(config, f.name)
            out.append((f.name, value if kind == "value" else value != f.default))
    return tuple(out)


def shape_id(config: RunConfig) -> str:
    """A 12-hex-digit name of :func:`shape` (it survives a JSON round trip of the table)."""
    return hashlib.sha256(repr(shape(config)).encode()).hexdigest()[:12]


def _timed_run(config: RunConfig, stack: int = 1) -> float:
    """Seconds to train ``config`` (``stack`` > 1: it and ``stack - 1`` copies with the next
    seeds, as one stacked group)."""
    group = [dataclasses.replace(config, seed=config.seed + i) for i in range(stack)]
    sync = torch.cuda.synchronize if torch.device(config.device).type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    train.train(group)
    sync()
    return time.perf_counter() - t


def time_shape(config: RunConfig, a: int = 10, b: int = 40, timer=_timed_run,
               repeats: int = 3, stack: int = 1) -> dict:
    """Seconds of each term of the cost model for runs shaped like ``config``, trained one by one
    or (``stack`` > 1) as one stacked group of ``stack`` runs: ``timer(config)``, or
    ``timer(config, stack)``, is the seconds of one such training.

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
    if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1:
        raise ValueError(f"stack must be an integer >= 1, got {stack!r}")
    base = dataclasses.replace(config, optimizer="adam", lr=1e-3, weight_decay=0.0)
    available = len(train.dataset_for(dataclasses.replace(base, train_subset=None)).y_train)
    if b * base.batch_size > available:
        b = available // base.batch_size
        a = min(a, b // 4)
        if a < 1:
            raise ValueError(f"{config.dataset} has {available} training examples: too few for "
                             f"4 batches of {base.batch_size}")

    def timed(batches, epochs, points):
        c = dataclasses.replace(base, train_subset=batches * base.batch_size, epochs=epochs,
                                flow_points=points)
        return timer(c) if stack == 1 else timer(c, stack)

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


def group_seconds(configs, row) -> float:
    """The cost model's seconds for ``configs`` trained as one group, from a row of
    :func:`estimate`: each term for k runs is linear in k through the one-run terms and, when the
    row has them, the ``stack``-run terms (``stack_<term>``)."""
    k, big = len(configs), int(row.get("stack", 1))
    if big > 1:
        terms = {t: max(0.0, row[t] + (k - 1) * (row[f"stack_{t}"] - row[t]) / (big - 1))
                 for t in TERMS}
    else:
        terms = {t: k * row[t] for t in TERMS}
    return run_seconds(configs[0], terms, int(row["n_train"]))


def estimate(configs, a: int = 10, b: int = 40, timer=_timed_run,
             repeats: int = 3, stack: int | None = None) -> pd.DataFrame:
    """One row per shape in ``configs``: ``shape_id``, ``runs``, the measured terms of one run
    (seconds), ``n_train``, ``stack`` (the largest stacked group of that shape, 1 without
    ``stack``), ``groups`` (how many groups :func:`gflib.sweep.run` would train), the terms of one
    group of ``stack`` runs (``stack_<term>``, with ``stack`` > 1) and ``estimate_s`` (the cost
    model summed over that shape's groups, :func:`group_seconds`)."""
    by_shape: dict = {}
    for c in configs:
        by_shape.setdefault(shape(c.validate()), []).append(c)
    rows = []
    for members in by_shape.values():
        first = members[0]
        grouped = stack_groups(members, stack) if stack and stack > 1 else [[c] for c in members]
        k = max(len(g) for g in grouped)
        row = {"shape_id": shape_id(first), "depth": first.depth, "width": first.width,
               "sparse": first.sparse, "batchnorm": first.batchnorm, "skip": first.skip,
               "augment": first.augment, "l2": first.l2 > 0, "runs": len(members),
               "n_train": len(train.dataset_for(first).y_train),
               **time_shape(first, a, b, timer, repeats), "stack": k, "groups": len(grouped)}
        if k > 1:
            stacked = time_shape(first, a, b, timer, repeats, stack=k)
            row.update({f"stack_{t}": stacked[t] for t in TERMS})
        row["estimate_s"] = sum(group_seconds(g, row) for g in grouped)
        rows.append(row)
    return pd.DataFrame(rows)


def estimator(shapes):
    """``seconds(group)``: :func:`group_seconds` of a list of configs from the row of its shape
    in ``shapes`` (:func:`estimate`'s table, or its records as ``main`` writes them to JSON), for
    :func:`gflib.sweep.run`'s ``seconds``. A shape not in the table raises ValueError."""
    rows = {r["shape_id"]: r for r in pd.DataFrame(shapes).to_dict("records")}

    def seconds(configs) -> float:
        key = shape_id(configs[0])
        if key not in rows:
            raise ValueError(f"no cost estimate for the shape of {configs[0]}; estimated shapes: "
                             f"{sorted(rows)}")
        return group_seconds(configs, rows[key])

    return seconds


H100 = {"one_by_one_step_s": (0.9e-3, 2.4e-3), "stacked_flop_s": (13e12, 15e12),
        "fp32_flop_s": 51.6e12, "sweep_group_step_s": 0.51e-3, "sweep_workers": 12}
"""Per-step figures of one NVIDIA H100 measured earlier by the team (``gflib.cost`` and
``gflib.bench`` at the paper preset's shapes, torch 2.11, a training loop that read the device
at every step): one run at a time 0.9 to 2.4 ms a step; stacked runs 13 to 15 TFLOP/s of
training arithmetic; the fp32 limit 51.6 TFLOP/s (dense matmul). ``sweep_group_step_s``: one
whole sweep's wall time per group-step, chapter 1's ``fmnist`` grid on 20,000 images (600 runs,
180 groups of 1,570 steps: 2.4 min) with ``--stack 64 --workers 12`` (``sweep_workers``)."""

PAPER_GRIDS = {
    "fashion_mnist": {"runs": 600, "epochs": 500, "n_train": 60_000, "inputs": 784},
    "cifar10": {"runs": 10_000, "epochs": 1000, "n_train": 50_000, "inputs": 3072},
}
"""The paper's grids: 600 Fashion-MNIST MLPs of 500 epochs; more than 10,000 CIFAR MLPs of 1000
epochs (10,000 taken, so a lower bound)."""


def step_flop(config: RunConfig, inputs: int, classes: int = 10) -> float:
    """Training arithmetic of one step of an MLP ``config`` (FLOP): ``6 * batch_size * weights``
    (forward 2, backward 4 per weight and example), every weight counted (a masked sparse layer is
    computed dense), ``inputs`` features in, ``classes`` out."""
    widths = [inputs] + [config.width] * config.depth + [classes]
    return 6.0 * config.batch_size * sum(a * b for a, b in zip(widths, widths[1:]))


def paper_grid_hours(gpus=(1, 8, 64), figures=H100, grids=PAPER_GRIDS,
                     architectures=None, batch_size: int = 128) -> pd.DataFrame:
    """Wall hours the paper's grids would take on each number of ``gpus``, from per-step
    ``figures`` alone (no evaluation, flow measurement or setup; work split evenly over the GPUs,
    as balanced groups at least as many as GPUs give). One row per (grid, gpus): ``steps`` (runs x
    epochs x ``ceil(n_train / batch_size)``), ``flop_per_step`` (the mean :func:`step_flop` over
    ``architectures``: default chapter 1's paper grid, depths 1, 2 and 4, widths 308 to 3076),
    then hours one run at a time (``one_by_one_h``: low, high), stacked (``stacked_h``: low,
    high) and at the fp32 limit (``fp32_limit_h``)."""
    if architectures is None:
        architectures = chapters.get("sc_sdc_and_egf").grid(presets.get("paper"))
    lo, hi = figures["one_by_one_step_s"]
    slow_rate, fast_rate = figures["stacked_flop_s"]
    rows = []
    for name, g in grids.items():
        steps = g["runs"] * g["epochs"] * math.ceil(g["n_train"] / batch_size)
        flop = statistics.mean(step_flop(c, g["inputs"]) for c in architectures)
        for n in gpus:
            hours = steps / n / 3600
            rows.append({"grid": name, "runs": g["runs"], "epochs": g["epochs"], "steps": steps,
                         "flop_per_step": flop, "gpus": n,
                         "one_by_one_h": (hours * lo, hours * hi),
                         "stacked_h": (hours * flop / fast_rate, hours * flop / slow_rate),
                         "fp32_limit_h": hours * flop / figures["fp32_flop_s"]})
    return pd.DataFrame(rows)


def predict(configs, figures=H100, stack: int | None = None, workers: int = 1) -> dict:
    """Seconds ``configs`` would take on a GPU described by per-step ``figures`` (default
    :data:`H100`), trained as ``gflib.sweep.run(stack=stack)`` groups them, without timing
    anything here: ``{"runs", "groups", "group_steps", "tflop", "low_s", "high_s"}``.

    Each group of k runs trains ``epochs x ceil(n_train / batch_size)`` steps, each at least
    the launch floor (``one_by_one_step_s``: a step's kernels, whatever their size) and at least
    its arithmetic (the k runs' :func:`gflib.flops.step_flops`) at the stacked rate
    (``stacked_flop_s``); evaluation (the test split once an epoch, forward only: a third of a
    step per batch) and flow points (the probe batch, forward and backward) add their arithmetic.
    ``workers`` processes share the GPU: the launch floors overlap, the arithmetic does not.
    ``low_s`` takes the low floor and the fast rate, ``high_s`` the high floor and the slow rate.
    ``sweep_s`` (when ``figures`` has ``sweep_group_step_s``): the group-steps at the whole
    sweep's measured wall time per group-step, at least the arithmetic at the fast rate; it holds
    for the sweep's number of workers (``sweep_workers``), and on the one sweep measured it was
    3 to 7 times ``low_s``..``high_s``: launch floors overlap far less across processes than
    the per-step figures assume."""
    cache: dict = {}

    def flop(c):
        key = (c.dataset, c.model, c.depth, c.width, c.activation, c.batchnorm, c.skip,
               c.batch_size)
        if key not in cache:
            cache[key] = step_flops(c)
        return cache[key]

    floors, rates = figures["one_by_one_step_s"], figures["stacked_flop_s"][::-1]
    per_group, total_flop, total_steps = [], 0.0, 0
    groups = stack_groups(configs, stack) if stack and stack > 1 else [[c] for c in configs]
    for group in groups:
        c = group[0]
        spec = data.check(c.dataset)
        n_train = min(c.train_subset or spec.n_train, spec.n_train)
        n_test = min(c.test_subset or spec.n_test, spec.n_test)
        steps = c.epochs * math.ceil(n_train / c.batch_size)
        step = sum(flop(r) for r in group)
        points = len(schedule(c.epochs, c.flow_points))
        extra = step * (c.epochs * n_test / c.batch_size / 3 + points * min(PROBE_SIZE, n_train) / c.batch_size)
        total_flop += steps * step + extra
        total_steps += steps
        per_group.append((steps, step, extra))
    ends = []
    for floor, rate in zip(floors, rates):
        serial = sum(max(steps * floor, steps * step / rate) + extra / rate
                     for steps, step, extra in per_group)
        ends.append(max(serial / workers, total_flop / rate))
    out = {"runs": len(configs), "groups": len(groups), "group_steps": total_steps,
           "tflop": total_flop / 1e12, "low_s": ends[0], "high_s": ends[1]}
    if "sweep_group_step_s" in figures:
        out["sweep_s"] = max(total_steps * figures["sweep_group_step_s"], total_flop / rates[0])
    return out


FIGURES = {"h100": H100}
"""Named per-step figures :func:`predict` (``--predict NAME``) can use."""


def main(argv=None, prog: str = "python -m gflib.cost") -> dict:
    parser = argparse.ArgumentParser(prog=prog,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="+", choices=chapters.names())
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batches", type=int, nargs=2, default=(10, 40), metavar=("A", "B"),
                        help="batches per epoch of the short timing runs (default 10 40)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings per term, their median is used (default 3)")
    parser.add_argument("--stack", type=int, default=None, metavar="K",
                        help="also time stacked groups of up to K runs, as sweep.run(stack=K) "
                             "trains them, and estimate the grid as such groups")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--predict", choices=FIGURES, default=None, metavar="FIGURES",
                        help="time nothing: predict from the named per-step figures of a GPU "
                             f"measured earlier ({', '.join(FIGURES)}; see predict())")
    parser.add_argument("--workers", type=int, default=1,
                        help="with --predict: processes sharing the GPU (default 1)")
    args = parser.parse_args(argv)
    p = presets.get(args.preset)
    if args.predict:
        return _print_prediction(args, p)
    out = {"preset": p.name, "device": args.device, "stack": args.stack,
           "device_name": summaries.device_name(args.device), "torch": torch.__version__,
           "chapters": {}}
    total = 0.0
    how = f"stacked groups of up to {args.stack}" if args.stack else "runs trained one by one"
    print(f"preset {p.name} on {out['device_name']}: {how}, Adam per step")
    for chapter in args.chapters:
        configs = chapters.get(chapter).grid(p, device=args.device, data_dir=args.data_dir)
        started = time.perf_counter()
        shapes = estimate(configs, *args.batches, repeats=args.repeats, stack=args.stack)
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


def _print_prediction(args, p) -> dict:
    figures = FIGURES[args.predict]
    out = {"preset": p.name, "figures": args.predict, "stack": args.stack,
           "workers": args.workers, "chapters": {}}
    print(f"preset {p.name}, predicted from the {args.predict} figures (not timed here): "
          f"stack {args.stack}, {args.workers} worker(s)")
    sweep = "sweep_group_step_s" in figures
    if sweep:
        print(f"(last column: at the whole sweep's measured {1e3 * figures['sweep_group_step_s']}"
              f" ms per group-step with {figures['sweep_workers']} workers)")
    totals = {"low_s": 0.0, "high_s": 0.0, "sweep_s": 0.0}
    for chapter in args.chapters:
        configs = chapters.get(chapter).grid(p, device="cuda", data_dir=args.data_dir)
        row = predict(configs, figures, args.stack, args.workers)
        out["chapters"][chapter] = row
        for key in totals:
            totals[key] += row.get(key, 0.0)
        print(f"{chapter:<18}{row['runs']:>6} runs{row['groups']:>6} groups"
              f"{row['tflop']:>9,.0f} TFLOP{row['low_s'] / 60:>8.1f} to "
              f"{row['high_s'] / 60:.1f} min" + (f"{row['sweep_s'] / 60:>8.1f} min" if sweep else ""))
    out.update(totals if sweep else {k: totals[k] for k in ("low_s", "high_s")})
    print(f"{'total':<18}{'':>38}{totals['low_s'] / 60:>8.1f} to {totals['high_s'] / 60:.1f} min"
          + (f"{totals['sweep_s'] / 60:>8.1f} min" if sweep else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
