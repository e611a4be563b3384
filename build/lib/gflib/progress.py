"""Following a long sweep: its progress bar, and a log file of one line per stored group
(timestamp, runs done/total, elapsed, rate, ETA) that ``tail -f`` can follow.

``python -m gflib.publish`` writes ``<results store root>/<chapter>/<name>.log``;
``python -m gflib.execute`` runs the chapter's kernel with :data:`LOG_ENV` set to
``OUT_DIR/<chapter>.log`` and :data:`BAR_ENV` set to ``text``, so the sweep inside the notebook
logs there and draws tqdm's text bar on stderr (which execute forwards to the console) instead
of a notebook widget that papermill cannot show.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import sys
import time
from pathlib import Path

BAR_ENV = "GFLIB_PROGRESS"
"""``text``: a sweep's progress bar is tqdm's text bar on stderr, even inside a Jupyter kernel
(default: ``tqdm.auto``, a widget there, text on a console)."""
LOG_ENV = "GFLIB_PROGRESS_LOG"
"""A file every sweep appends its progress lines to (:func:`from_env`), when no log is given."""


def duration(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class ProgressLog:
    """A sweep's ``on_group`` callback (:func:`gflib.sweep.run`) that appends one line to
    ``path`` per stored group::

        2026-11-29T07:10:04+00:00 batchnorm @ fmnist: 40/592 runs (6.8 %), elapsed 0:12:31,
        2.24 runs/min, ETA 4:06:05

    (one line in the file). ``done``: runs with a result, those found in the store included;
    the rate and ETA count only the runs trained since this log was made. Each line is written
    and closed at once, so the file can be followed while the sweep runs."""

    def __init__(self, path, desc: str = "", clock=time.monotonic, now=_now):
        self.path = Path(path)
        self.desc = desc
        self.clock, self.now = clock, now
        self.start = clock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, text: str):
        prefix = f"{self.now()} {self.desc}: " if self.desc else f"{self.now()} "
        with open(self.path, "a") as f:
            f.write(prefix + text + "\n")

    def note(self, text: str):
        """Append a free line (a start or an end), timestamped."""
        self._write(text)

    def elapsed(self) -> float:
        return self.clock() - self.start

    def __call__(self, done: int, total: int, trained: int):
        elapsed = self.elapsed()
        rate = trained / elapsed if trained > 0 and elapsed > 0 else math.nan
        eta = (total - done) / rate if rate > 0 else math.nan
        share = 100 * done / total if total else 100.0
        speed = f"{60 * rate:.3g} runs/min" if math.isfinite(rate) else "rate ?"
        self._write(f"{done}/{total} runs ({share:.1f} %), elapsed {duration(elapsed)}, {speed}, "
                    f"ETA {duration(eta)}")


def from_env(desc: str = "") -> ProgressLog | None:
    """A :class:`ProgressLog` on ``$GFLIB_PROGRESS_LOG`` (:data:`LOG_ENV`) with a start line, or
    None when it is not set."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return None
    log = ProgressLog(path, desc)
    log.note("sweep starts")
    return log


def bar(total: int, initial: int = 0, desc: str = ""):
    """A sweep's progress bar: tqdm's text bar on stderr when ``$GFLIB_PROGRESS`` is ``text``
    (:data:`BAR_ENV`), else ``tqdm.auto``'s (a widget in a notebook, text on a console)."""
    if os.environ.get(BAR_ENV) == "text":
        from tqdm.std import tqdm
        return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, mininterval=1.0,
                    dynamic_ncols=True)
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc)


@contextlib.contextmanager
def environment(**values):
    """Set environment variables (``None`` removes one) for the duration of the block, then
    restore them; a kernel started inside inherits them."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
