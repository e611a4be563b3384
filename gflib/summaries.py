"""Stored summaries: a chapter's sweep at one scale, kept as small files a book can show.

Under a data folder ``root`` (the book's ``book/data``, passed in by whoever reads or writes),
summary ``name`` of chapter ``chapter`` is

- ``<root>/<chapter>/<name>.csv`` and ``<name>-curves.csv``: the run and curve tables
  (:class:`gflib.results.Results`);
- ``<name>.json``: its provenance (preset and overrides, device, torch, gflib commit, date, wall
  time, runs; :func:`provenance`);
- ``<name>-verdicts.json``: the chapter's verdicts on it, when they have been written.

Every file is written atomically (:mod:`gflib.atomic`).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from .atomic import write_json
from .results import Results

VERDICTS = "-verdicts.json"
"""The suffix of a summary's verdicts file."""


def folder(chapter: str, root) -> Path:
    return Path(root) / chapter


def names(chapter: str, root) -> list:
    """The names of ``chapter``'s stored summaries under ``root`` (those with both the table and
    the provenance), sorted."""
    return sorted(p.stem for p in folder(chapter, root).glob("*.csv")
                  if not p.stem.endswith("-curves") and p.with_suffix(".json").is_file())


def load(chapter: str, name: str, root):
    """``(Results, provenance)`` of the stored summary ``name``, or ``None`` when there is
    none."""
    csv = folder(chapter, root) / f"{name}.csv"
    meta = csv.with_suffix(".json")
    if not (csv.is_file() and meta.is_file()):
        return None
    return Results.load(csv), json.loads(meta.read_text())


def write(results: Results, provenance: dict, chapter: str, name: str, root) -> Path:
    """Write summary ``name`` of ``chapter`` under ``root``: its tables and its ``provenance``;
    returns the run table's path."""
    csv = folder(chapter, root) / f"{name}.csv"
    results.save(csv)
    write_json(csv.with_suffix(".json"), provenance, indent=2)
    return csv


def verdicts_path(chapter: str, name: str, root) -> Path:
    return folder(chapter, root) / f"{name}{VERDICTS}"


def device_name(device: str) -> str:
    """A readable name of ``device``: the GPU's name, or the CPU's model."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def git_commit() -> str | None:
    """The commit of the gflib that runs: ``$GFLIB_COMMIT`` when set (a copied tree, such as a
    GPU machine's, may carry another ``.git`` or none), else the ``HEAD`` of the checkout gflib
    is imported from, with ``-dirty`` appended when ``gflib/`` differs from it; None when gflib
    is not in a git checkout (an installed package)."""
    if os.environ.get("GFLIB_COMMIT"):
        return os.environ["GFLIB_COMMIT"]
    here = Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD").stdout.strip()
        if not head:
            return None
        return head + ("-dirty" if git("diff", "--quiet", "HEAD", "--", ".").returncode else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(chapter: str, name: str, preset, overrides: dict, device: str, runs,
               wall_s: float, **extra) -> dict:
    """The provenance of a summary: ``chapter``, ``name``, ``preset`` (its name), ``overrides``,
    the device and its name, torch (and its CUDA version, on a GPU), the gflib commit, the date (UTC), ``wall_s`` and, from the
    run table ``runs``, ``runs_wall_s`` (the runs' own seconds summed), ``n_runs``,
    ``n_diverged``; the preset's scale in words (``note``); then ``extra`` (e.g. stacking)."""
    return {"chapter": chapter, "name": name, "preset": preset.name, "overrides": overrides,
            **extra, "gflib_commit": git_commit(), "torch": torch.__version__,
            "cuda": torch.version.cuda if str(device).startswith("cuda") else None,
            "device": str(device), "device_name": device_name(device),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(wall_s, 1), "runs_wall_s": round(float(runs["wall_s"].sum()), 1),
            "n_runs": len(runs), "n_diverged": int(runs["diverged"].sum()),
            "note": preset.summary}


def provenance_line(meta: dict) -> str:
    """One sentence saying where a stored summary came from."""
    commit = (meta.get("gflib_commit") or "unknown")[:10]
    return (f"{meta['n_runs']} runs at preset `{meta['preset']}`"
            + (f" with {meta['overrides']}" if meta.get("overrides") else "")
            + f" on {meta['device_name']}, torch {meta['torch']}"
            + (f" (CUDA {meta['cuda']})" if meta.get("cuda") else "") + f", gflib {commit}, "
            f"{meta['date'][:10]}, {meta['wall_s'] / 60:.1f} min; {meta['n_diverged']} diverged"
            + (f". Scale: {meta['note']}." if meta.get("note") else "."))
