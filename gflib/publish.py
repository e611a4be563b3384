"""Run a chapter's sweep at a preset and write a small summary the book can show.

    python -m gflib.publish batchnorm --preset fmnist [--device cuda] [--results DIR]

writes ``book/data/<chapter>/<preset>.csv`` (one row per run: config, final metrics, mean flow
measures, the EGF curve, diverged) and ``<preset>.json`` (provenance: preset and overrides, gflib
git commit, torch version, device name, date, wall time, number of runs). The raw per-run results
stay in the results store (``results/`` by default, git-ignored); a stopped command resumes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from . import experiments, presets, sweep

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "book" / "data"
GRIDS = {"sc_sdc_and_egf": experiments.egf_configs, "batchnorm": experiments.batchnorm_configs}


def configs_for(chapter: str, preset, device="cpu", data_dir=None) -> list:
    """The run configs of ``chapter`` (one of :data:`GRIDS`) at ``preset``."""
    if chapter not in GRIDS:
        raise ValueError(f"unknown chapter {chapter!r}; allowed: {', '.join(GRIDS)}")
    return GRIDS[chapter](preset, device=device, data_dir=data_dir)


def device_name(device: str) -> str:
    """A readable name of ``device``: the GPU's name, or the CPU's model."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _write_atomic(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def publish(chapter: str, preset: str, overrides: dict | None = None, device: str = "cpu",
            data_dir=None, results_root=None, out_root: Path = DATA, **sweep_options) -> Path:
    """Run (or resume) ``chapter``'s sweep at ``preset`` and write its summary; returns the CSV."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    p = presets.get(preset, **overrides)
    configs = configs_for(chapter, p, device=device, data_dir=data_dir)
    store = experiments.results_dir(chapter, p.name, results_root)
    start = time.perf_counter()
    table = sweep.run(configs, store, desc=f"{chapter} @ {p.name}", **sweep_options)
    wall = time.perf_counter() - start
    table = table.drop(columns=["device", "data_dir"], errors="ignore")
    csv = Path(out_root) / chapter / f"{p.name}.csv"
    _write_atomic(csv, table.to_csv(index=False))
    provenance = {
        "chapter": chapter, "preset": p.name, "overrides": overrides,
        "gflib_commit": git_commit(), "torch": torch.__version__, "device": str(device),
        "device_name": device_name(device),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(wall, 1), "runs_wall_s": round(float(table["wall_s"].sum()), 1),
        "n_runs": len(table), "n_diverged": int(table["diverged"].sum()),
        "note": p.note,
    }
    _write_atomic(csv.with_suffix(".json"), json.dumps(provenance, indent=2) + "\n")
    return csv


def load(chapter: str, preset: str, root: Path = DATA):
    """``(table, provenance)`` of a stored summary, or ``None`` when there is none."""
    csv = Path(root) / chapter / f"{preset}.csv"
    meta = csv.with_suffix(".json")
    if not (csv.is_file() and meta.is_file()):
        return None
    return pd.read_csv(csv), json.loads(meta.read_text())


def provenance_line(meta: dict) -> str:
    """One sentence saying where a stored summary came from."""
    commit = (meta.get("gflib_commit") or "unknown")[:10]
    return (f"{meta['n_runs']} runs at preset `{meta['preset']}`"
            + (f" with {meta['overrides']}" if meta.get("overrides") else "")
            + f" on {meta['device_name']}, torch {meta['torch']}, gflib {commit}, "
            f"{meta['date'][:10]}, {meta['wall_s'] / 60:.1f} min; {meta['n_diverged']} diverged.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gflib.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", choices=sorted(GRIDS))
    parser.add_argument("--preset", default="fmnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--results", default=None, help="results store root (default results/)")
    parser.add_argument("--out", default=str(DATA), help="summary root (default book/data)")
    parser.add_argument("--sparse-width", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--stack", type=int, default=None,
                        help="train up to this many compatible runs at once (gflib.stacked)")
    args = parser.parse_args(argv)
    overrides = {"sparse_width": args.sparse_width, "epochs": args.epochs,
                 "seeds": tuple(args.seeds) if args.seeds else None,
                 "train_subset": args.train_subset}
    csv = publish(args.chapter, args.preset, overrides, args.device, args.data_dir, args.results,
                  Path(args.out), stack=args.stack)
    print(csv)


if __name__ == "__main__":
    main()
