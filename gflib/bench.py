"""Where the time goes: the overheads of masks and flow measurement, and what stacking buys.

``python -m gflib.bench`` prints a table of ratios measured side by side in one process;
``--json PATH`` also writes them; ``--quick`` is a short run (seconds; for tests, proves nothing);
``--threads N`` sets torch's intra-op threads (default: torch's own choice); ``--device cuda``
measures on a GPU (the goals below are the 2-core CPU's).

Figures (each a ratio, so it carries over between machines better than a time):

- ``masked_step_ratio``: one training step of a masked MLP 784-1024-1024-10 (density 0.1, masks
  kept by :func:`gflib.masks.apply_masks`) / the same step of the plain dense MLP; batch 128,
  gflib's Adam (torch's fused kernel). Goal <= 1.10.
- ``flow_fraction``: time spent in the gradient-flow measurements / the whole run, at the 11-point
  schedule, at the ``fmnist`` preset: the first group the sweep trains of chapter 1's grid there
  (its sparse members, stacked as ``--stack 16`` stacks them). Goal <= 0.03. Without
  Fashion-MNIST on the machine it is measured on digits (``flow_fraction_scale`` says which).
  ``flow_fraction_book``: the same for a book-scale run (:data:`FLOW_RUN`: digits, the SC-SDC
  sparse member of width 100 matched to dense width 50, depth 2, Adam, 20 epochs).
- ``stacked_speedup_k16``: 16 runs one by one (:func:`gflib.train.run`) / the same 16 stacked
  (:func:`gflib.stacked.run_stacked`); digits MLP 64-32-32-10, batch 128, Adam, whole 5-epoch
  runs with flow. Goal >= 5 on 2 cores. ``stacked_speedup_by_width``: the same (2 epochs) at
  hidden widths 32 ... 1024 (goal: never below 1; :data:`gflib.stacked.CPU_MAX_WIDTH` keeps a
  CPU sweep from stacking where it does not pay).
- with ``--book``: ``book_execute_s``, the wall time of ``jupyter-book build`` of a copy of the
  book at the ``book`` preset with an empty results store and execution cache (goal <= 900 s on 2
  cores), and ``book_rebuild_fraction``, a second build of the same copy (everything cached) /
  the first (goal <= 0.10).
- ``peak_fraction``: useful training FLOP/s of the dense 784-1024-1024-10 MLP (``6 * params *
  batch`` per Adam step) / this machine's fp32 matmul FLOP/s (a 2048 x 2048 product). Goal >= 0.5.

Timing: warm-up, then the two sides alternate round by round and each side's median is taken, so
load from other processes hits both sides alike.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import chapters, cost, optimizers, presets, stacked, train
from .config import RunConfig
from .flops import step_flops
from .flow import schedule
from .masks import apply_masks, random_masks
from .models import MLP

GOALS = {
    "masked_step_ratio": ("<=", 1.10),
    "flow_fraction": ("<=", 0.03),
    "stacked_speedup_k16": (">=", 5.0),
    "stacked_speedup_by_width": ("min >=", 1.0),
    "peak_fraction": (">=", 0.5),
}
BOOK_GOALS = {"book_execute_s": ("<=", 900.0), "book_rebuild_fraction": ("<=", 0.10)}
FIGURES = tuple(GOALS)
REPO = Path(".")
"""The repository whose book ``--book`` builds: the working folder."""
BOOK_FILES = ("_config.yml", "_toc.yml", "book")
WIDTHS = (32, 64, 128, 256, 512, 1024)
FLOW_RUN = RunConfig(dataset="digits", depth=2, width=100, match_width=50, optimizer="adam",
                           lr=1e-3, epochs=20, seed=0)
"""The book-scale run of ``flow_fraction`` (the book preset's sparse member at ratio 0.5)."""


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _alternate(fns: dict, rounds: int, warmup: int = 2, device="cpu") -> dict:
    """Median seconds per call of each function, calls alternating round by round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _step_fn(model, batch: int = 128, foreach: bool = False):
    """One training step of ``model`` with gflib's Adam (:data:`gflib.optimizers.OPTIMIZERS`), or
    torch's default (foreach) Adam when ``foreach``."""
    device = model.out.weight.device
    x = torch.randn(batch, model.hidden[0].layer.in_features, device=device)
    y = torch.randint(0, model.out.out_features, (batch,), device=device)
    if foreach:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = optimizers.make("adam", model.parameters(), 1e-3, device=str(device))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def _pair(device):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dense = MLP(784, 10, depth=2, width=1024).to(device)
        masked = MLP(784, 10, depth=2, width=1024).to(device)
    apply_masks(masked, random_masks(masked, 0.1, seed=1))
    return dense, masked


def step_figures(rounds: int, device="cpu") -> dict:
    """``masked_step_ratio`` (gflib's Adam: torch's fused kernel) and ``peak_fraction`` with
    their raw times; also the masked/dense ratio with torch's default foreach Adam on both sides
    (``foreach_masked_step_ratio``, what gflib used before: its ``sqrt`` of the all-zero second
    moments at masked positions is slow on some CPUs)."""
    dense, masked = _pair(device)
    foreach_dense, foreach_masked = _pair(device)
    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    fns = {"dense": _step_fn(dense), "masked": _step_fn(masked),
           "foreach_dense": _step_fn(foreach_dense, foreach=True),
           "foreach_masked": _step_fn(foreach_masked, foreach=True),
           "matmul": lambda: torch.mm(a, b)}
    t = _alternate(fns, rounds, device=device)
    params = sum(p.numel() for p in dense.parameters())
    train_flops = 6 * params * 128 / t["dense"]
    peak = 2 * 2048 ** 3 / t["matmul"]
    return {
        "masked_step_ratio": t["masked"] / t["dense"],
        "peak_fraction": train_flops / peak,
        "dense_step_ms": 1e3 * t["dense"], "masked_step_ms": 1e3 * t["masked"],
        "train_gflops": train_flops / 1e9, "matmul_gflops": peak / 1e9,
        "foreach_masked_step_ratio": t["foreach_masked"] / t["foreach_dense"],
    }


@contextlib.contextmanager
def _timed_measure(total: list):
    inner = train.measure_runs

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - t
    train.measure_runs = timed
    try:
        yield
    finally:
        train.measure_runs = inner


def flow_figures(configs: list, repeats: int) -> dict:
    """``flow_fraction``: time inside :func:`gflib.flow.measure_runs` / wall time of
    ``train.train(configs)`` (one group; median over ``repeats`` runs)."""
    fractions, walls = [], []
    for _ in range(repeats):
        spent = [0.0]
        with _timed_measure(spent):
            t = time.perf_counter()
            train.train(configs)
            wall = time.perf_counter() - t
        fractions.append(spent[0] / wall)
        walls.append(wall)
    config = configs[0]
    n_train = len(train.dataset_for(config).y_train)
    probed = len(schedule(config.epochs, config.flow_points)) * min(train.PROBE_SIZE, n_train)
    return {"flow_fraction": statistics.median(fractions), "flow_run_s": statistics.median(walls),
            "flow_examples_per_train_example": probed / (config.epochs * n_train)}


def fmnist_group(device="cpu", quick: bool = False) -> tuple:
    """``(configs, scale)``: the first stacked group (16 runs) of chapter 1's grid at the
    ``fmnist`` preset, or at ``book`` when Fashion-MNIST is not on this machine."""
    scale = "fmnist"
    try:
        train.dataset_for(presets.get("fmnist").config())
    except ValueError:
        scale = "book"
    preset = presets.get(scale)
    if quick:
        preset = preset.replace(epochs=1, train_subset=256)
    configs = [c for c in chapters.get("sc_sdc_and_egf").grid(preset, device=str(device))
               if c.kind == "sparse"]
    return stacked.groups(configs, 16)[0], scale


def stacked_speedup(width: int, k: int, epochs: int, rounds: int, device="cpu",
                    **fields) -> dict:
    """16 (``k``) runs one by one / stacked; digits MLP of ``width``, whole runs with flow."""
    configs = [RunConfig(dataset="digits", depth=2, width=width, optimizer="adam",
                               epochs=epochs, seed=s, device=str(device), **fields)
               for s in range(k)]
    t = _alternate({"sequential": lambda: [train.run(c) for c in configs],
                    "stacked": lambda: train.train(configs)}, rounds, warmup=1,
                   device=device)
    return {"speedup": t["sequential"] / t["stacked"], "sequential_s": t["sequential"],
            "stacked_s": t["stacked"]}


STACKS = (1, 4, 16, 64)
"""Group sizes :func:`preset_step_figures` times (the ``gpu`` preset's largest group is 15)."""


def preset_step_figures(preset: str = "gpu", device="cpu", stacks=STACKS, batches=(10, 40),
                        repeats: int = 3) -> dict:
    """What one training step of the preset's costliest MLP kind costs here, stacked ``k`` runs
    at a time for each ``k`` in ``stacks``: the sparse member of its widest, deepest BatchNorm
    net (width ``sparse_width``, depth 4, Adam; the BatchNorm chapter's), on the preset's data
    (digits at the same widths when its dataset is not on this machine: ``scale`` says which).

    A step's seconds are solved from whole short trainings of ``batches`` steps
    (:func:`gflib.cost.time_shape`: setup, evaluation and flow taken out), in fp32 and, on a
    GPU, TF32. Per ``k``: ``group_step_ms``, ``run_step_ms`` (``/ k``), ``tflop_s`` (the group's
    :func:`gflib.flops.step_flops` per second) and ``peak_fraction`` (of ``matmul_tflop_s``:
    this device's fp32 rate on one large square product, TF32 off); ``tf32_speedup``: fp32 /
    TF32 step time (GPU only)."""
    p = presets.get(preset)
    config = p.config(device=str(device), depth=4, width=p.sparse_width, batchnorm=True,
                      match_width=max(p.dense_widths), optimizer="adam", lr=1e-3)
    scale = p.dataset
    try:
        train.dataset_for(config)
    except ValueError:
        scale = "digits"
        config = config.replace(dataset="digits", train_subset=None, test_subset=None)
    n = 8192 if torch.device(device).type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    with train.float32_mode(False):
        matmul = _alternate({"mm": lambda: torch.mm(a, b)}, 5, device=device)["mm"]
    peak = 2 * n ** 3 / matmul
    modes = (False, True) if torch.device(device).type == "cuda" else (False,)
    out = {"scale": scale, "config": config.to_dict(), "matmul_tflop_s": peak / 1e12,
           "by_stack": {}}
    for k in stacks:
        row = {}
        for tf32 in modes:
            step = cost.time_shape(config.replace(tf32=tf32), *batches, repeats=repeats,
                                   stack=k)["step_s"]
            rate = k * step_flops(config) / step if step > 0 else float("nan")
            suffix = "_tf32" if tf32 else ""
            row.update({f"group_step_ms{suffix}": 1e3 * step,
                        f"run_step_ms{suffix}": 1e3 * step / k,
                        f"tflop_s{suffix}": rate / 1e12,
                        f"peak_fraction{suffix}": rate / peak})
        if len(modes) == 2:
            row["tf32_speedup"] = row["group_step_ms"] / row["group_step_ms_tf32"]
        out["by_stack"][str(k)] = row
    return out


def copy_book(dst: Path, root: Path = REPO) -> Path:
    """Copy the book's sources (:data:`BOOK_FILES`, no build outputs) from ``root`` into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        if (root / name).is_dir():
            shutil.copytree(root / name, dst / name,
                            ignore=shutil.ignore_patterns("*.ipynb", "_build", ".ipynb_checkpoints"))
        else:
            shutil.copy(root / name, dst / name)
    return dst


def book_figures(root: Path = REPO, preset: str = "book") -> dict:
    """``book_execute_s`` and ``book_rebuild_fraction`` (see the module doc): builds a copy of
    ``root``'s book twice in a temporary folder with ``GFLIB_PRESET=preset`` and a fresh results
    store; raises ``subprocess.CalledProcessError`` if a build fails."""
    with tempfile.TemporaryDirectory(prefix="gflib-book-") as tmp:
        src = copy_book(Path(tmp) / "src", root)
        env = {**os.environ, "GFLIB_PRESET": preset, "GFLIB_RESULTS": str(Path(tmp) / "results"),
               "TQDM_DISABLE": "1"}
        walls = []
        for _ in range(2):
            t = time.perf_counter()
            subprocess.run(["jupyter-book", "build", str(src)], cwd=src, env=env, check=True,
                           capture_output=True, text=True)
            walls.append(time.perf_counter() - t)
    return {"book_execute_s": walls[0], "book_rebuild_fraction": walls[1] / walls[0],
            "book_rebuild_s": walls[1], "book_preset": preset}


def run(quick: bool = False, threads: int | None = None, device: str = "cpu",
        book: bool = False, steps_preset: str | None = None, steps_only: bool = False) -> dict:
    """Every figure as a dict (see the module doc); ``quick`` shrinks every measurement;
    ``device``: where everything runs (``"cuda"`` for a GPU); ``book``: also time the book's
    build (:func:`book_figures`, at the ``smoke`` preset when ``quick``); ``steps_preset``:
    also :func:`preset_step_figures` of that preset (``preset_steps``; the ``smoke`` preset's
    shapes, 1 and 4 runs, when ``quick``); ``steps_only``: that alone (a minute on a GPU)."""
    if threads is not None:
        torch.set_num_threads(threads)
    if steps_only and not steps_preset:
        raise ValueError("steps_only needs steps_preset (--steps PRESET)")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    out = {}
    details = {}
    if steps_preset:
        out["preset_steps"] = (
            preset_step_figures("smoke", device, (1, 4), (2, 6), 1) if quick
            else preset_step_figures(steps_preset, device))
        out["preset_steps"]["preset"] = "smoke" if quick else steps_preset
    if steps_only:
        out["meta"] = _meta(quick, device, load_before, start)
        return out
    steps = step_figures(rounds=3 if quick else 15, device=device)
    out["masked_step_ratio"] = steps.pop("masked_step_ratio")
    out["peak_fraction"] = steps.pop("peak_fraction")
    details.update(steps)
    flow_cfg = dataclasses.replace(FLOW_RUN, device=device)
    if quick:
        flow_cfg = dataclasses.replace(flow_cfg, epochs=2, train_subset=256)
    flow = flow_figures([flow_cfg], repeats=1 if quick else 3)
    details["flow_fraction_book"] = flow.pop("flow_fraction")
    details.update({f"{k}_book": v for k, v in flow.items()})
    group, scale = fmnist_group(device, quick)
    flow = flow_figures(group, repeats=1 if quick else 2)
    out["flow_fraction"] = flow.pop("flow_fraction")
    details["flow_fraction_scale"] = f"{scale}, a stacked group of {len(group)}"
    details.update(flow)
    small = dict(train_subset=256) if quick else {}
    k16 = stacked_speedup(32, 16, epochs=1 if quick else 5, rounds=1 if quick else 3,
                          device=device, **small)
    out["stacked_speedup_k16"] = k16["speedup"]
    details["k16_sequential_s"], details["k16_stacked_s"] = k16["sequential_s"], k16["stacked_s"]
    by_width = {}
    for w in (WIDTHS[:2] if quick else WIDTHS):
        r = stacked_speedup(w, 4 if quick else 16, epochs=1 if quick else 2, rounds=1,
                            device=device, **small)
        by_width[str(w)] = r["speedup"]
    out["stacked_speedup_by_width"] = by_width
    if book:
        figures = book_figures(preset="smoke" if quick else "book")
        for name in BOOK_GOALS:
            out[name] = figures.pop(name)
        details.update(figures)
    out["meta"] = _meta(quick, device, load_before, start, flow_run=dataclasses.asdict(flow_cfg),
                        stacked_k=4 if quick else 16, **details)
    return out


def _meta(quick, device, load_before, start, **details) -> dict:
    return {"mode": "quick" if quick else "full", "torch": torch.__version__,
            "cuda": torch.version.cuda if torch.device(device).type == "cuda" else None,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "device": _describe(device), "load_avg_before": load_before,
            "load_avg_after": os.getloadavg()[0], "bench_s": time.perf_counter() - start,
            **details}


def _describe(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return str(device)


def met(name: str, value) -> bool:
    op, goal = {**GOALS, **BOOK_GOALS}[name]
    if op == "min >=":
        return min(value.values()) >= goal
    return value <= goal if op == "<=" else value >= goal


def format_table(figures: dict) -> str:
    """The figures, their goals and whether each is met, as plain-text lines."""
    m = figures["meta"]
    lines = [f"{'figure':<28}{'value':>10}  {'goal':<12}met"]
    goals = {**GOALS, **BOOK_GOALS}
    for name in [n for n in goals if n in figures]:
        value = figures[name]
        op, goal = goals[name]
        shown = min(value.values()) if isinstance(value, dict) else value
        lines.append(f"{name:<28}{shown:>10.3f}  {op + ' ' + str(goal):<12}"
                     f"{'yes' if met(name, value) else 'NO'}")
        if isinstance(value, dict):
            for w, v in value.items():
                alone = m["device"] == "cpu" and int(w) > stacked.CPU_MAX_WIDTH
                lines.append(f"  width {w:<20}{v:>10.3f}"
                             + ("  (a CPU sweep runs these one by one)" if alone else ""))
    if "preset_steps" in figures:
        ps = figures["preset_steps"]
        lines.append(f"steps of the {ps['preset']} preset's costliest MLP kind on {ps['scale']} "
                     f"(fp32 matmul rate {ps['matmul_tflop_s']:.1f} TFLOP/s):")
        for k, row in ps["by_stack"].items():
            tf32 = (f"; TF32 {row['run_step_ms_tf32']:.3f} ms, x{row['tf32_speedup']:.2f}"
                    if "tf32_speedup" in row else "")
            lines.append(f"  stack {k:<4}{row['run_step_ms']:>8.3f} ms a run-step "
                         f"{row['tflop_s']:>7.2f} TFLOP/s {row['peak_fraction']:>6.1%} of peak"
                         + tf32)
    lines.append(f"({m['mode']} mode on {m['device']}, torch {m['torch']}, {m['threads']} threads "
                 f"on {m['cpus']} "
                 f"CPUs, load average {m['load_avg_before']:.1f} -> {m['load_avg_after']:.1f}, "
                 f"{m['bench_s']:.0f} s)")
    if m["load_avg_before"] > 0.5 * m["cpus"] and m["device"] == "cpu":
        hint = "try --threads 1 or a quiet machine" if m["threads"] > 1 else "try a quiet machine"
        lines.append("(other processes were busy on this machine: the ratios are unreliable; "
                     f"{hint})")
    return "\n".join(lines)


def main(argv=None, prog: str = "python -m gflib.bench") -> dict:
    parser = argparse.ArgumentParser(prog=prog,
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="a short run (seconds)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="where to run: cpu (default) or cuda")
    parser.add_argument("--steps", metavar="PRESET", default=None,
                        help="also time a training step of PRESET's costliest MLP kind at "
                             f"stacks {', '.join(map(str, STACKS))} (ms per run-step, TFLOP/s, "
                             "fraction of this device's fp32 matmul rate; fp32 against TF32 on "
                             "a GPU), e.g. --steps gpu")
    parser.add_argument("--steps-only", action="store_true",
                        help="with --steps: measure that alone")
    parser.add_argument("--book", action="store_true",
                        help="also time building the book (minutes: executes every chapter)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.steps_only and not args.steps:
        parser.error("--steps-only needs --steps PRESET")
    figures = run(quick=args.quick, threads=args.threads, device=args.device, book=args.book,
                  steps_preset=args.steps, steps_only=args.steps_only)
    print(format_table(figures))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2, allow_nan=True)
    return figures


if __name__ == "__main__":
    main()
