"""A folder of run results, one JSON file per run, keyed by a hash of the run's config.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a run stopped
mid-write leaves no file that reads as a result; a file that does not parse, or whose stored
config does not hash to its name, is treated as absent (and redone by a sweep).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .train import RunConfig, RunResult

FORMAT = 1
KEY_EXCLUDES = ("device", "data_dir")
"""Config fields that do not change what a run means (where it ran, where the files were)."""


def config_key(config: RunConfig | dict) -> str:
    """A 20-hex-digit hash of the config's fields (less :data:`KEY_EXCLUDES`)."""
    d = config.to_dict() if isinstance(config, RunConfig) else dict(config)
    for k in KEY_EXCLUDES:
        d.pop(k, None)
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class ResultStore:
    """``<root>/<key>.json`` per run."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, config) -> Path:
        return self.root / f"{config_key(config)}.json"

    def get(self, config) -> RunResult | None:
        """The stored result of ``config``, or None when absent, partial or corrupt."""
        return self._read(self.path(config))

    def put(self, result: RunResult) -> Path:
        """Write ``result`` atomically under its config's key."""
        target = self.root / f"{config_key(result.config)}.json"
        payload = {"format": FORMAT, "key": target.stem, "result": result.to_dict()}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, allow_nan=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

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
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # JSON of another shape
            return None
        return result if config_key(result.config) == path.stem else None
