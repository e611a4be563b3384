"""Every chapter on a lent GPU in one command, into one archive; and the command that unpacks it.

    python -m gflib.lease run --preset gpu --device cuda --stack 64 [--workers N]
                              [--data-dir DIR] [--results DIR] [--name NAME] [--tf32]
                              [--chapters C ...] [--bench-args "..." | --no-bench]
                              [--stop-after-s S] --archive OUT/gpu.tar.gz
    python -m gflib.lease unpack OUT/gpu.tar.gz [OUT/gpu-store.tar.gz]
                                 [--data book/data] [--results results]

``run`` first runs ``python -m gflib.bench --device D --json`` (options from ``--bench-args``,
e.g. ``"--steps gpu --steps-only"``: a minute on a GPU), then publishes each chapter
(:func:`gflib.publish.publish`) at the preset into a temporary summary folder, and writes one
archive (rewritten after each chapter, so a command killed at
its time limit leaves what was done): ``summaries/<chapter>/<name>.csv``, ``-curves.csv``,
``.json``, ``-verdicts.json``; ``logs/<chapter>.log``; ``bench.json``; ``lease.json``, the
manifest (gflib version and commit, torch and CUDA versions, device, date, command line, preset
and overrides, wall time, and per chapter its runs, seconds and status: ``done``, ``stopped`` or
``failed`` with the error). ``--stop-after-s S``: nothing starts after S seconds (a chapter's
sweep stops after the groups then training; :class:`gflib.sweep.Stopped`); the raw results of a
chapter stopped or failed go into ``<archive>-store.tar.gz`` beside it (without checkpoints), so
a later lease that is given them back trains only what is missing. Groups already handed to a
worker process when the time comes still train: leave ``S`` below the lease's limit by the
longest group, and the packing. It needs torch, numpy, scipy, pandas, matplotlib
and tqdm: none of the notebook tools.

``unpack`` puts the summaries in ``<data>/<chapter>/<name>.*`` (where the chapters and the
results page find them), the manifest and the benchmark in ``<data>/<name>-lease.json`` and
``<data>/<name>-bench.json``, and a store archive's runs under ``<results>/<chapter>/<name>/``.
It refuses members outside that layout.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shlex
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

import torch

from . import __version__, bench, chapters, presets, publish, summaries, sweep, train
from .atomic import check_writable, replacing

LIMIT_BYTES = 16 * 2 ** 20
"""The most a file brought back from a lease may weigh (the device tool's limit)."""
SUFFIXES = (".csv", "-curves.csv", ".json", "-verdicts.json")
"""A summary's files: ``<name><suffix>``."""


def store_archive(archive: Path) -> Path:
    """The raw-results archive beside ``archive``: ``X.tar.gz`` -> ``X-store.tar.gz``."""
    return archive.with_name(archive.name[:-len(".tar.gz")] + "-store.tar.gz")


def _check_archive(archive) -> Path:
    archive = Path(archive)
    if not archive.name.endswith(".tar.gz") or archive.name.endswith("-store.tar.gz"):
        raise ValueError(f"archive {str(archive)!r} must be a .tar.gz file name (not one ending "
                         "in -store.tar.gz, the name of its raw-results companion)")
    check_writable(archive.parent, "archive folder", "--archive must be in a writable folder")
    return archive


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _no_checkpoints(info: tarfile.TarInfo):
    """Leave a store's ``.checkpoints`` out: a stacked group's state at the ``gpu`` preset is
    hundreds of MB (weights and Adam's moments), and a resumed group starts afresh."""
    return None if ".checkpoints" in Path(info.name).parts else info


def _write_tar(path: Path, files: dict) -> int:
    """Write ``{member name: local path or bytes}`` as gzipped tar ``path`` (atomically);
    returns its size in bytes, with a warning on stderr past :data:`LIMIT_BYTES`."""
    with replacing(path) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for name, source in files.items():
                if isinstance(source, bytes):
                    _add_bytes(tar, name, source)
                else:
                    tar.add(source, arcname=name, filter=_no_checkpoints)
    size = path.stat().st_size
    if size > LIMIT_BYTES:
        print(f"gflib.lease: {path} is {size / 2 ** 20:.1f} MiB, over the "
              f"{LIMIT_BYTES / 2 ** 20:.0f} MiB a lease brings back", file=sys.stderr)
    return size


def run(preset: str, device: str, archive, stack: int | None = None, workers: int = 1,
        data_dir=None, results_root=None, name: str | None = None, tf32: bool = False,
        chapter_names=None, bench_args=None, stop_after_s: float | None = None,
        argv=None) -> dict:
    """Publish every chapter in ``chapter_names`` (default all, :func:`gflib.chapters.names`)
    at ``preset`` on ``device``, run the benchmark (``bench_args``: its options besides
    ``--device`` and ``--json``; None: no benchmark) and write the archive (module doc);
    returns the manifest. Bad input raises ValueError before anything trains."""
    archive = _check_archive(archive)
    chapter_names = list(chapter_names or chapters.names())
    unknown = [c for c in chapter_names if c not in chapters.names()]
    if unknown:
        raise ValueError(f"unknown chapters {unknown}; allowed: {', '.join(chapters.names())}")
    if stop_after_s is not None and not stop_after_s > 0:
        raise ValueError(f"stop_after_s must be a number of seconds > 0, got {stop_after_s!r}")
    overrides = {"tf32": True} if tf32 else {}
    p = presets.get(preset, **overrides)
    name = name or p.name + ("-tf32" if tf32 and not presets.get(preset).tf32 else "")
    grids = {c: publish.configs_for(c, p, device=device, data_dir=data_dir)
             for c in chapter_names}
    for config in (c for grid in grids.values() for c in grid):  # all before any trains
        train.check_buildable(config)
    train.check_device(device)
    start = time.monotonic()
    stop_at = None if stop_after_s is None else start + stop_after_s
    store_archive(archive).unlink(missing_ok=True)  # an earlier lease's, to this folder
    manifest = {"gflib": __version__, "gflib_commit": summaries.git_commit(),
                "torch": torch.__version__,
                "cuda": torch.version.cuda if str(device).startswith("cuda") else None,
                "device": device, "device_name": summaries.device_name(device),
                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "command": shlex.join(argv) if argv is not None else None,
                "preset": p.name, "overrides": overrides, "name": name, "stack": stack,
                "workers": workers, "stop_after_s": stop_after_s, "chapters": {}}
    with tempfile.TemporaryDirectory(prefix="gflib-lease-") as tmp:
        out = Path(tmp) / "data"
        files: dict = {}
        if bench_args is not None:
            began = time.monotonic()
            figures = Path(tmp) / "bench.json"
            try:
                bench.main(["--device", device, "--json", str(figures), *bench_args])
                files["bench.json"] = figures
                manifest["bench"] = {"status": "done", "args": list(bench_args)}
            except (Exception, SystemExit) as error:  # argparse exits on a bad option
                manifest["bench"] = {"status": "failed", "args": list(bench_args),
                                     "error": f"{type(error).__name__}: {error}"}
            manifest["bench"]["wall_s"] = round(time.monotonic() - began, 1)
        for chapter in chapter_names:
            began = time.monotonic()
            row = manifest["chapters"][chapter] = {"runs": len(grids[chapter])}
            if stop_at is not None and began >= stop_at:
                row.update(status="stopped", wall_s=0.0, error="not started: time limit")
            else:
                try:
                    publish.publish(chapter, preset, overrides, device, data_dir, results_root,
                                    out, stack=stack, workers=workers, name=name,
                                    progress=False, stop_at=stop_at)
                    row["status"] = "done"
                except sweep.Stopped as stopped:
                    row.update(status="stopped", error=str(stopped))
                except Exception as error:  # the next chapter goes on; the manifest says why
                    row.update(status="failed", error=f"{type(error).__name__}: {error}",
                               traceback=traceback.format_exc())
                row["wall_s"] = round(time.monotonic() - began, 1)
            log = publish.progress_log(chapter, name, results_root).path
            if log.is_file():
                files[f"logs/{chapter}.log"] = log
            if row["status"] == "done":
                folder = summaries.folder(chapters.get(chapter).NAME, out)
                for suffix in SUFFIXES:
                    files[f"summaries/{chapter}/{name}{suffix}"] = folder / f"{name}{suffix}"
            manifest["wall_s"] = round(time.monotonic() - start, 1)
            _write_tar(archive, {**files, "lease.json": _json(manifest)})
        manifest["wall_s"] = round(time.monotonic() - start, 1)
        _write_tar(archive, {**files, "lease.json": _json(manifest)})
        left = [c for c, row in manifest["chapters"].items() if row["status"] != "done"]
        stores = {f"store/{c}/{name}": chapters.results_dir(c, name, results_root)
                  for c in left}
        stores = {k: v for k, v in stores.items() if v.is_dir()}
        if stores:
            _write_tar(store_archive(archive), stores)
    return manifest


def _json(value) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def _members(tar: tarfile.TarFile, allowed) -> list:
    """The tar's members, after checking each with ``allowed(name parts, member)``; ValueError
    naming the first that is not in the layout (or is a link, absolute or has ``..``)."""
    out = []
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if (member.name.startswith("/") or ".." in parts or member.issym() or member.islnk()
                or not (member.isdir() or member.isfile()) or not allowed(parts, member)):
            raise ValueError(f"{tar.name}: member {member.name!r} is not part of a lease archive "
                             "(summaries/<chapter>/<name>.*, logs/, bench.json, lease.json, "
                             "store/<chapter>/<name>/...)")
        out.append(member)
    return out


def unpack(archive, data=publish.DATA, results_root=None) -> list:
    """Unpack a lease archive (``run``'s, or its ``-store.tar.gz``) as the module doc says;
    returns the paths written."""
    archive, data = Path(archive), Path(data)
    if not archive.is_file():
        raise ValueError(f"archive {str(archive)!r} is not a file")
    known = set(chapters.names())
    written = []
    with tarfile.open(archive, "r:gz") as tar:
        if archive.name.endswith("-store.tar.gz"):
            members = _members(tar, lambda parts, m: parts[0] == "store" and (
                len(parts) < 2 or parts[1] in known) and (m.isdir() or len(parts) >= 4))
            for member in members:
                parts = Path(member.name).parts
                if member.isfile():
                    store = chapters.results_dir(parts[1], parts[2], results_root)
                    written.append(_extract(tar, member, store.joinpath(*parts[3:])))
            return written

        def allowed(parts, member):
            if member.isdir():
                return parts[0] in ("summaries", "logs") and len(parts) <= 2 + (
                    parts[0] == "summaries")
            if len(parts) == 1:
                return parts[0] in ("lease.json", "bench.json")
            if parts[0] == "logs":
                return len(parts) == 2 and parts[1][:-len(".log")] in known
            return (parts[0] == "summaries" and len(parts) == 3 and parts[1] in known
                    and any(parts[2].endswith(s) for s in SUFFIXES))
        members = _members(tar, allowed)
        manifest = json.loads(tar.extractfile("lease.json").read())
        name = manifest["name"]
        for member in members:
            parts = Path(member.name).parts
            if not member.isfile() or parts[0] == "logs":
                continue
            if parts[0] == "summaries":
                if not any(parts[2] == f"{name}{s}" for s in SUFFIXES):
                    raise ValueError(f"{archive}: {member.name!r} is not summary {name!r}")
                target = summaries.folder(chapters.get(parts[1]).NAME, data) / parts[2]
            else:
                target = data / f"{name}-{parts[0][:-len('.json')]}.json"
            written.append(_extract(tar, member, target))
    return written


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with replacing(target) as tmp:
        Path(tmp).write_bytes(tar.extractfile(member).read())
    return target


def main(argv=None, prog: str = "python -m gflib.lease"):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    go = sub.add_parser("run", help="every chapter and the benchmark into one archive")
    go.add_argument("--preset", default="gpu", help="the scale (default gpu): one of "
                    + ", ".join(presets.PRESETS))
    go.add_argument("--device", default="cuda", help="torch device (default cuda)")
    go.add_argument("--archive", required=True, help="the .tar.gz to write, e.g. $OUT/gpu.tar.gz")
    go.add_argument("--stack", type=int, default=None, help="runs per stacked group at most")
    go.add_argument("--workers", type=int, default=1, help="training processes (default 1)")
    go.add_argument("--data-dir", default=None, help="folder of the datasets")
    go.add_argument("--results", default=None, help="results store root (default results/)")
    go.add_argument("--name", default=None, help="summary name (default the preset's)")
    go.add_argument("--tf32", action="store_true", help="TF32 matmuls and convolutions")
    go.add_argument("--chapters", nargs="+", default=None, metavar="CHAPTER",
                    help="only these chapters: " + ", ".join(chapters.names()))
    go.add_argument("--bench-args", default="", metavar="ARGS",
                    help="options of python -m gflib.bench besides --device and --json, in one "
                         "string (default none), e.g. \"--steps gpu\"")
    go.add_argument("--no-bench", action="store_true", help="skip the benchmark")
    go.add_argument("--stop-after-s", type=float, default=None, metavar="S",
                    help="start nothing after S seconds (what is done is archived)")
    back = sub.add_parser("unpack", help="a lease's archives into the book's data")
    back.add_argument("archives", nargs="+", help="gpu.tar.gz, and gpu-store.tar.gz if any")
    back.add_argument("--data", default=str(publish.DATA), help="summary root (book/data)")
    back.add_argument("--results", default=None, help="results store root (default results/)")
    args = parser.parse_args(argv)
    if args.action == "unpack":
        for archive in args.archives:
            for path in unpack(archive, args.data, args.results):
                print(path)
        return 0
    manifest = run(args.preset, args.device, args.archive, args.stack, args.workers,
                   args.data_dir, args.results, args.name, args.tf32, args.chapters,
                   None if args.no_bench else shlex.split(args.bench_args),
                   args.stop_after_s, argv=[*prog.split(), *argv])
    for chapter, row in manifest["chapters"].items():
        print(f"{chapter:<18}{row['status']:<9}{row['wall_s']:>8.1f} s  {row.get('error', '')}")
    if "bench" in manifest:
        print(f"{'bench':<18}{manifest['bench']['status']:<9}{manifest['bench']['wall_s']:>8.1f} s")
    print(f"{args.archive}: {manifest['wall_s']:.1f} s in all")
    return 0 if all(r["status"] == "done" for r in manifest["chapters"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
