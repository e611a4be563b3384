"""Writing a file so that a reader never sees it half-written: through a temporary file in the
same folder and ``os.replace``. A writer killed mid-write leaves only a hidden ``.tmp-*`` file,
which readers of a folder skip (:data:`TEMPORARY`).

Files are made readable by everyone the umask allows (``0o666 & ~umask``, as ``open`` does):
``tempfile.mkstemp`` alone would leave them ``0o600``, unreadable to the other users of a shared
machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

TEMPORARY = ".tmp-"
"""The prefix of a file being written (skipped by every reader, removed when stale)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path: str | os.PathLike):
    """A temporary path beside ``path`` to write into; on a clean exit it replaces ``path``
    (with the umask's permissions), on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY, suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(folder: str | os.PathLike, what: str, remedy: str) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (written, flushed to
    the disk and removed), or raise ValueError naming ``what`` (e.g. "results store"), the folder,
    the reason and ``remedy``: what a command calls before it trains anything. Returns the
    folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write("{}")
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise ValueError(f"{what} {folder} cannot be written: {exc}; {remedy}") from exc
    return folder


def write_text(path: str | os.PathLike, text: str, sync: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (``sync``: flushed to the disk before the rename, for
    results that must survive a power cut). Returns ``path``."""
    with replacing(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
    return Path(path)


def write_json(path: str | os.PathLike, payload, sync: bool = False, **dump) -> Path:
    """:func:`write_text` of ``json.dumps(payload, **dump)``."""
    return write_text(path, json.dumps(payload, **dump), sync=sync)
