"""Following long runs: the per-group progress log, the sweep's on_group callback, the text
bar for papermill kernels, and where publish and execute put their logs."""
from __future__ import annotations

import os
import sys

import pytest
import torch

from gflib import execute, progress, publish, sweep
from gflib.config import RunConfig
from gflib.progress import ProgressLog

TINY = dict(depth=1, width=4, epochs=1, flow_points=2, train_subset=100, test_subset=50)


@pytest.fixture(autouse=True)
def _no_bars_one_thread(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.delenv(progress.LOG_ENV, raising=False)
    monkeypatch.delenv(progress.BAR_ENV, raising=False)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def lines(path) -> list:
    return path.read_text().splitlines()


def test_duration():
    assert [progress.duration(s) for s in (0, 59.6, 3600 + 62, float("nan"), None)] == [
        "0:00:00", "0:01:00", "1:01:02", "?", "?"]


def test_progress_log_writes_done_total_elapsed_rate_and_eta(tmp_path):
    clock = Clock()
    log = ProgressLog(tmp_path / "sub" / "x.log", "ch @ smoke", clock=clock, now=lambda: "T")
    clock.t += 60
    log(12, 20, 2)  # 10 were stored before; 2 trained in a minute: 8 left take 4 minutes
    clock.t += 60
    log(20, 20, 10)
    log.note("done")
    assert lines(log.path) == [
        "T ch @ smoke: 12/20 runs (60.0 %), elapsed 0:01:00, 2 runs/min, ETA 0:04:00",
        "T ch @ smoke: 20/20 runs (100.0 %), elapsed 0:02:00, 5 runs/min, ETA 0:00:00",
        "T ch @ smoke: done"]


def test_progress_log_without_trained_runs_has_no_eta(tmp_path):
    log = ProgressLog(tmp_path / "x.log", clock=Clock(), now=lambda: "T")
    log(3, 5, 0)
    assert lines(log.path) == ["T 3/5 runs (60.0 %), elapsed 0:00:00, rate ?, ETA ?"]


def test_sweep_calls_on_group_after_each_stored_group(tmp_path):
    configs = [RunConfig(**TINY, seed=s) for s in range(3)]
    sweep.run(configs[:1], tmp_path, progress=False)  # one run already stored
    calls = []
    sweep.run(configs, tmp_path, progress=False, on_group=lambda *a: calls.append(a))
    assert calls == [(2, 3, 1), (3, 3, 2)]  # (done, total, trained by this sweep)
    log = ProgressLog(tmp_path / "again.log", "x")
    sweep.run(configs, tmp_path, progress=False, on_group=log)
    assert not log.path.exists()  # nothing trained, nothing logged


def test_sweep_logs_to_the_file_named_in_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "nb.log"
    monkeypatch.setenv(progress.LOG_ENV, str(path))
    sweep.run([RunConfig(**TINY, seed=s) for s in range(2)], tmp_path / "store", progress=False,
              desc="chapter @ smoke")
    got = lines(path)
    assert len(got) == 3 and got[0].endswith("chapter @ smoke: sweep starts")
    assert " chapter @ smoke: 1/2 runs (50.0 %), elapsed " in got[1]
    assert " chapter @ smoke: 2/2 runs (100.0 %), elapsed " in got[2] and "ETA 0:00:00" in got[2]


def test_bar_is_text_on_stderr_when_asked():
    """In a fresh process: tqdm reads ``TQDM_*`` variables when it is imported, so a bar made
    under CI's ``TQDM_DISABLE=1`` stays disabled whatever the test sets afterwards."""
    import os
    import subprocess
    import sys

    code = ("from tqdm.std import tqdm\n"
            "from gflib import progress\n"
            "bar = progress.bar(10, 2, 'x')\n"
            "bar.update(3)\n"
            "bar.close()\n"
            "assert type(bar) is tqdm and (bar.total, bar.n) == (10, 5)\n")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    env[progress.BAR_ENV] = "text"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "x:  50%" in out.stderr and "5/10" in out.stderr and out.stdout == ""


def test_environment_sets_and_restores(monkeypatch):
    monkeypatch.setenv("GFLIB_TEST_A", "old")
    monkeypatch.delenv("GFLIB_TEST_B", raising=False)
    with progress.environment(GFLIB_TEST_A="new", GFLIB_TEST_B="b"):
        assert (os.environ["GFLIB_TEST_A"], os.environ["GFLIB_TEST_B"]) == ("new", "b")
    assert os.environ["GFLIB_TEST_A"] == "old" and "GFLIB_TEST_B" not in os.environ


def test_publish_logs_beside_the_run_folder(tmp_path):
    publish.publish("sc_sdc_and_egf", "smoke", {"seeds": (0,)}, results_root=tmp_path / "r",
                    out_root=tmp_path / "data", progress=False, stack=16)
    path = tmp_path / "r" / "sc_sdc_and_egf" / "smoke.log"
    assert path == publish.progress_log("sc_sdc_and_egf", "smoke", tmp_path / "r").path
    got = lines(path)
    assert "sc_sdc_and_egf @ smoke: start: 16 runs at preset smoke" in got[0]
    groups = [line for line in got[1:-1] if " runs (" in line]
    assert groups and groups[-1].split(": ", 1)[1].startswith("16/16 runs (100.0 %)")
    assert "done: 16 runs" in got[-1]
    assert not list((tmp_path / "data").rglob("*.log"))  # not in the book's data


def test_execute_forwards_the_kernels_bar_and_logs_beside_the_notebook(tmp_path, monkeypatch):
    import papermill

    seen = {}

    def fake_execute_notebook(nb, output, **kwargs):
        seen.update(kwargs, env={k: os.environ.get(k) for k in (progress.LOG_ENV,
                                                                 progress.BAR_ENV)})

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute_notebook)
    out = execute.execute("sc_sdc_and_egf", tmp_path, {"preset": "smoke"}, progress=True)
    log = tmp_path / "sc_sdc_and_egf.log"
    assert out == tmp_path / "sc_sdc_and_egf.ipynb"
    assert seen["progress_bar"] is True and seen["stderr_file"] is sys.stderr
    assert seen["env"] == {progress.LOG_ENV: str(log), progress.BAR_ENV: "text"}
    assert os.environ.get(progress.LOG_ENV) is None  # restored
    got = lines(log)
    assert "execute sc_sdc_and_egf.md" in got[0] and "done in" in got[-1]
