"""A folder of run results, one JSON file per run, named by its config's key
(:func:`gflib.config.config_key`).

Writes are atomic (:mod:`gflib.atomic`), so a run stopped mid-write leaves no file that reads as
a result; a file that does not parse (nested too deep included), or whose stored config does not
hash to its name, is treated as absent (and redone by a sweep); a folder under a result's name
is refused before a sweep trains (:meth:`ResultStore.check_can_store`).
"""
from __future__ import annotations

import contextlib
import errno
import json
import shutil
import time
from pathlib import Path

from .atomic import TEMPORARY, check_writable, write_json
from .config import RunResult, config_key

FORMAT = 2
"""The layout of a stored file (``{"format", "key", "result"}``)."""

STALE_S = 600.0
"""Age (seconds) past which a temporary file in the store is taken as a dead writer's."""
FULL = (errno.ENOSPC, errno.EDQUOT)
"""The ``OSError.errno`` of a write refused for want of space (disk full, quota reached)."""


def payload(result: RunResult) -> dict:
    """What the store writes for ``result`` (``{"format", "key", "result"}``)."""
    return {"format": FORMAT, "key": config_key(result.config), "result": result.to_dict()}


def megabytes(n: float) -> str:
    """``n`` bytes in words: ``"3.2 MB"``."""
    return f"{n / 1e6:.1f} MB"


class ResultStore:
    """``<root>/<key>.json`` per run."""

    def __init__(self, root):
        self.root = Path(root)

    def check_writable(self) -> None:
        """Create the folder if needed and prove a file can be written there, or raise
        ValueError naming the folder (:func:`gflib.atomic.check_writable`): called before a
        sweep trains anything."""
        check_writable(self.root, "results store", "give a writable results_dir")

    def check_space(self, needed: int, what: str) -> None:
        """Raise ValueError naming the folder, its free space and ``needed`` (bytes, for
        ``what``) when the folder's disk has less free (:func:`shutil.disk_usage`)."""
        free = shutil.disk_usage(self.root).free
        if free < needed:
            raise ValueError(f"results store {self.root} has {megabytes(free)} free, but {what} "
                             f"need about {megabytes(needed)}: free space there or give another "
                             "results_dir")

    def remove_stale_temporaries(self, older_than_s: float = STALE_S) -> int:
        """Remove the temporary files (``.tmp-*``, ``.probe-*``, here and in ``.failures``) last
        written more than ``older_than_s`` seconds ago: a write takes milliseconds, so they were
        left by a writer killed mid-write. Returns how many were removed."""
        cutoff, removed = time.time() - older_than_s, 0
        for folder in (self.root, self.root / ".failures"):
            for path in [*folder.glob(f"{TEMPORARY}*"), *folder.glob(".probe-*")]:
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        return removed

    def check_can_store(self, configs) -> None:
        """Raise ValueError naming the first of ``configs`` whose place in the store
        (:meth:`path`) holds something a result cannot replace (a folder): called before a
        sweep trains, so that nothing trains only to be thrown away."""
        for config in configs:
            path = self.path(config)
            if path.exists() and not path.is_file():
                what = "a folder" if path.is_dir() else "not a file"
                raise ValueError(f"results store: {path}, where run {path.stem}'s result goes, "
                                 f"is {what}; move it away (nothing was trained)")

    def path(self, config) -> Path:
        return self.root / f"{config_key(config)}.json"

    def get(self, config) -> RunResult | None:
        """The stored result of ``config``, or None when absent, partial or corrupt."""
        return self._read(self.path(config))

    def put(self, result: RunResult) -> Path:
        """Write ``result`` atomically under its config's key."""
        target = self.root / f"{config_key(result.config)}.json"
        return write_json(target, payload(result), sync=True, allow_nan=True)

    def keys(self) -> list:
        """Keys of the readable results in the store."""
        return [p.stem for p in sorted(self.root.glob("*.json"))
                if not p.name.startswith(".") and self._read(p) is not None]

    def results(self) -> list:
        """Every readable result in the store."""
        out = (self._read(p) for p in sorted(self.root.glob("*.json")) if not p.name.startswith("."))
        return [r for r in out if r is not None]

    @staticmethod
    def _read(path: Path) -> RunResult | None:
        try:
            payload = json.loads(path.read_text())
            if payload.get("format") != FORMAT or payload.get("key") != path.stem:
                return None
            result = RunResult.from_dict(payload["result"])
            key = config_key(result.config)
        except (OSError, ValueError, KeyError, TypeError, AttributeError,
                RecursionError):  # another shape, or nested past what json reads
            return None
        return result if key == path.stem else None
