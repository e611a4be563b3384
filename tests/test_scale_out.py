"""Sweeps beyond one process: groups balanced by estimated seconds (and the cost tool's estimates
of stacked groups), a Dask cluster giving the same numbers as this process, publish's
``--scheduler``, and the faults a long sweep meets: a worker killed mid-group, the driver killed
mid-sweep (here with Dask; in process: ``tests/test_store_sweep.py``), a group that raises, two
sweeps on one store, a store that cannot be written.

The Dask tests share one ``LocalCluster`` of two worker processes (about 10 s to start on 2
cores); the slowest tests (two sweeps at once, the killed driver) take about 15 s each."""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
import torch

from gflib import sweep
from gflib.config import RunConfig
from gflib.store import ResultStore, config_key

TINY = dict(depth=1, width=4, epochs=1, flow_points=2, train_subset=100, test_subset=50)
LEARNS = dict(width=16, epochs=2, train_subset=300, test_subset=100, lr=0.01)
"""Fields on top of TINY for runs that end above chance (26 % to 59 % on digits' 10 classes,
seeds 0-4), so that the chapter's analysis, which publish runs on its summary, has a flow to
use; TINY's runs all end at chance."""
NUMBERS = ["seed", "test_acc", "test_loss", "train_loss", "train_acc", "mean_gf_l2", "mean_egf_l2"]


@pytest.fixture(autouse=True)
def _no_bars_one_thread(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dask_executor():
    pytest.importorskip("distributed")
    with sweep.executor_for("local:2") as executor:
        yield executor


def _tiny(seeds, **fields):
    return [RunConfig(**{**TINY, **fields}, seed=s) for s in seeds]


def _check_store(root, configs):
    """Every config stored exactly once, each file parsing under its own key, nothing else."""
    files = sorted(p.name for p in Path(root).glob("*.json"))
    assert files == sorted(f"{config_key(c)}.json" for c in set(configs))
    assert len(ResultStore(root).results()) == len(set(configs))
    assert not list(Path(root).glob(".tmp-*"))


# ------------------------------------------------------------------------------ balancing


def test_balanced_groups_hold_about_the_target_seconds():
    configs = _tiny(range(6), epochs=2) + _tiny(range(6), epochs=6) + _tiny([0], width=300)

    def seconds(group):
        return sum(c.epochs for c in group) * 1.0

    out = sweep.balanced_groups(configs, seconds, target_s=8.0, max_size=3)
    assert [[c.epochs for c in g] for g in out] == [[2, 2, 2], [2, 2, 2], [6], [6], [6], [6],
                                                    [6], [6], [1]]
    assert out[-1] == configs[-1:]  # too wide to stack on a CPU: alone
    assert sorted(map(id, sum(out, []))) == sorted(map(id, configs))
    merged = sweep.balanced_groups(configs[:6], seconds, target_s=100.0, max_size=4)
    assert [len(g) for g in merged] == [4, 2]
    split = sweep.balanced_groups(configs[:6], seconds, target_s=1.0, max_size=4)
    assert [len(g) for g in split] == [1] * 6  # a group always takes its first run


@pytest.mark.parametrize("kwargs, message", [
    (dict(target_s=0.0, max_size=2), "target_s must be a number of seconds > 0, got 0.0"),
    (dict(target_s=1.0, max_size=0), "max_size must be an integer >= 1, got 0"),
])
def test_balanced_groups_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep.balanced_groups(_tiny([0]), len, **kwargs)


def test_sweep_balances_groups_by_estimated_seconds(tmp_path, monkeypatch):
    seen = []
    real = sweep.train_group
    monkeypatch.setattr(sweep, "train_group", lambda g, *a: seen.append(len(g)) or real(g, *a))
    sweep.run(_tiny(range(5)), tmp_path, progress=False, stack=4, seconds=len, target_s=2)
    assert seen == [2, 2, 1]
    with pytest.raises(ValueError, match="give both seconds and target_s"):
        sweep.run(_tiny(range(5)), tmp_path, progress=False, seconds=len)


# ---------------------------------------------------------------------------- executors


@pytest.mark.parametrize("bad", ["localhost:8786", "local:0", "local:x", "8786"])
def test_executor_for_rejects_what_is_not_an_address(bad):
    with pytest.raises(ValueError, match="give a Dask scheduler address"):
        with sweep.executor_for(bad):
            pass


def test_executor_for_none_is_this_process():
    with sweep.executor_for(None) as executor:
        assert executor is None


def test_dask_cluster_gives_the_numbers_of_this_process(tmp_path, dask_executor):
    configs = _tiny(range(4)) + _tiny(range(2), width=8)
    here = sweep.run(configs, tmp_path / "here", progress=False, stack=2)
    there = sweep.run(configs, tmp_path / "dask", executor=dask_executor, progress=False, stack=2)
    assert there.runs[NUMBERS].equals(here.runs[NUMBERS])
    assert there.curves.equals(here.curves)
    _check_store(tmp_path / "dask", configs)


def test_worker_killed_mid_group_is_redone_elsewhere(tmp_path, dask_executor, monkeypatch):
    """The first attempt at the group of seeds 0-1 kills its own worker process (SIGKILL); Dask
    re-runs it on a live worker: every run stored once, with this process's numbers."""
    configs = _tiny(range(4))
    flags = tmp_path / "flags"
    flags.mkdir()
    real = sweep.train_group

    def dies_once(group, *args):
        (flags / f"attempt-{group[0].seed}-{os.getpid()}").touch()
        if group[0].seed == 0 and not (flags / "killed").exists():
            (flags / "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(group, *args)

    monkeypatch.setattr(sweep, "train_group", dies_once)
    summary, error = sweep.run_summary(configs, tmp_path / "s", executor=dask_executor,
                                       progress=False, stack=2)
    assert error is None and summary.failures == [] and summary.trained == 4
    attempts = [p.name.rsplit("-", 1)[0] for p in flags.glob("attempt-*")]
    assert attempts.count("attempt-0") == 2
    assert attempts.count("attempt-2") in (1, 2)  # 2: it had finished on the killed worker
    killed_pid = {p.name.rsplit("-", 1)[1] for p in flags.glob("attempt-0-*")}
    assert len(killed_pid) == 2  # the second attempt ran in another process
    monkeypatch.setattr(sweep, "train_group", real)
    here = sweep.run(configs, tmp_path / "here", progress=False, stack=2)
    assert summary.results.runs[NUMBERS].equals(here.runs[NUMBERS])
    _check_store(tmp_path / "s", configs)


def test_a_dask_sweep_whose_cluster_has_no_worker_left_stops_and_resumes(tmp_path, monkeypatch,
                                                                          capsys):
    """Before: a sweep on a cluster whose workers were all killed waited forever, without a
    word. The one worker (two threads) dies once seed 0 is stored, and its nanny does not
    restart it: the sweep says so, stops after NO_WORKERS_S naming the cluster and what is
    stored, and the same sweep then trains only seed 1."""
    distributed = pytest.importorskip("distributed")
    configs = _tiny(range(2))
    first = tmp_path / f"{config_key(configs[0])}.json"
    real = sweep.train_group

    def dies_after_seed_0_is_stored(group, *args):
        if group[0].seed == 1:
            deadline = time.monotonic() + 60
            while not first.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{first} not stored in 60 s")
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(group, *args)

    monkeypatch.setattr(sweep, "train_group", dies_after_seed_0_is_stored)
    monkeypatch.setattr(sweep, "NO_WORKERS_S", 2.0)
    monkeypatch.setattr(sweep, "POLL_S", 0.2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        async def no_restarts():
            for nanny in cluster.workers.values():
                nanny.close_gracefully(reason="the test kills its worker")

        cluster.sync(no_restarts)
        address = client.scheduler.address
        stopped = []

        def drive():  # in a daemon thread, so that a sweep that hangs fails the test
            try:
                sweep.run(configs, tmp_path, executor=client.get_executor(pure=False),
                          progress=False)
            except Exception as error:
                stopped.append(error)

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        driver.join(timeout=120)
        assert not driver.is_alive(), "still waiting 120 s after the cluster lost its worker"
    assert len(stopped) == 1 and isinstance(stopped[0], sweep.NoWorkers), stopped
    assert str(stopped[0]) == (
        f"the Dask cluster at {address} has had no worker for 2 s (sweep.NO_WORKERS_S) with 1 "
        f"runs waiting; 1 of 2 runs are stored in {tmp_path}: start workers and run the same "
        "sweep again to train only the rest")
    said = capsys.readouterr().err
    assert (f"gflib.sweep: no Dask worker on {address} (1 of 2 runs are stored in {tmp_path}): "
            "waiting up to 2 s for one to join") in said
    _check_store(tmp_path, configs[:1])
    monkeypatch.setattr(sweep, "train_group", real)
    summary, error = sweep.run_summary(configs, tmp_path, progress=False)
    assert error is None and (summary.stored, summary.trained) == (1, 1)
    _check_store(tmp_path, configs)


# ------------------------------------------------------------------------ failing groups


def test_out_of_memory_group_is_split_down_to_what_fits(tmp_path, monkeypatch):
    """A stack of 4 fails while it holds more than one run: 4 -> 2 + 2 -> four single runs,
    all stored, nothing recorded as failed."""
    seen = []
    real = sweep.train_group

    def fits_one(group, *args):
        seen.append(len(group))
        if len(group) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(group, *args)

    monkeypatch.setattr(sweep, "train_group", fits_one)
    configs = _tiny(range(4))
    summary, error = sweep.run_summary(configs, tmp_path, progress=False, stack=4)
    assert seen == [4, 2, 1, 1, 2, 1, 1]
    assert error is None and summary.splits == 3 and summary.failures == []
    assert summary.trained == 4 and summary.results.runs["seed"].tolist() == [0, 1, 2, 3]
    assert sweep.failures(tmp_path) == []
    _check_store(tmp_path, configs)


def test_a_run_that_fails_alone_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = sweep.train_group

    def seed_2_fails(group, *args):
        if any(c.seed == 2 for c in group):
            raise RuntimeError("out of memory")
        return real(group, *args)

    monkeypatch.setattr(sweep, "train_group", seed_2_fails)
    configs = _tiny(range(4))
    with pytest.raises(sweep.SweepError) as err:
        sweep.run(configs, tmp_path, progress=False, stack=4)
    summary = err.value.summary
    assert "1 of 4 runs failed" in str(err.value)
    assert "first: RuntimeError: out of memory" in str(err.value)
    assert isinstance(err.value.__cause__, RuntimeError)
    assert summary.splits == 2 and summary.trained == 3 and len(summary.failures) == 1
    assert summary.failures[0].config == configs[2] and summary.failures[0].group_size == 1
    recorded = sweep.failures(tmp_path)
    assert [r["config"]["seed"] for r in recorded] == [2]
    assert recorded[0]["error"] == "RuntimeError: out of memory"
    assert "seed_2_fails" in recorded[0]["traceback"]
    _check_store(tmp_path, configs[:2] + configs[3:])

    monkeypatch.setattr(sweep, "train_group", real)
    assert len(sweep.run(configs, tmp_path, progress=False, stack=4).runs) == 4
    assert sweep.failures(tmp_path) == []  # the run stored at last: its failure is gone


@pytest.mark.parametrize("error", [KeyError("a bug"), BrokenProcessPool("a worker died")])
def test_an_error_splitting_cannot_help_fails_the_group_at_once(tmp_path, monkeypatch, error):
    seen = []

    def bug(group, *args):
        seen.append(len(group))
        raise error

    monkeypatch.setattr(sweep, "train_group", bug)
    with pytest.raises(sweep.SweepError, match="4 of 4 runs failed") as err:
        sweep.run(_tiny(range(4)), tmp_path, progress=False, stack=4)
    assert seen == [4] and err.value.summary.splits == 0
    assert [f.group_size for f in err.value.summary.failures] == [4] * 4


def test_an_interrupt_stops_the_sweep_at_once(tmp_path, monkeypatch):
    seen = []
    real = sweep.train_group

    def interrupted(group, *args):
        seen.append(group[0].seed)
        if group[0].seed == 1:
            raise KeyboardInterrupt
        return real(group, *args)

    monkeypatch.setattr(sweep, "train_group", interrupted)
    configs = _tiny(range(3))
    with pytest.raises(KeyboardInterrupt):
        sweep.run(configs, tmp_path, progress=False)
    assert seen == [0, 1] and sweep.failures(tmp_path) == []
    _check_store(tmp_path, configs[:1])


KILL_SCRIPT = """
import os, sys
os.environ["TQDM_DISABLE"] = "1"
from gflib import sweep
from gflib.config import RunConfig
configs = [RunConfig(depth=1, width=16, epochs=40, flow_points=2, train_subset=500, seed=s)
           for s in range(8)]
if __name__ == "__main__":
    with sweep.executor_for("local:1") as executor:
        sweep.run(configs, sys.argv[1], executor=executor, progress=False, stack=2)
"""


def test_driver_killed_mid_dask_sweep_resumes_with_nothing_lost(tmp_path):
    """The driver of a Dask sweep is killed (SIGKILL) once a group is stored: its local worker
    exits with it, and the same sweep again trains only the missing runs: 0 lost, 0 duplicated,
    0 corrupt. (The in-process driver: ``test_store_sweep.py``.) About 15 s."""
    psutil = pytest.importorskip("psutil")
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(root)])
    children = []
    try:
        deadline = time.monotonic() + 120
        while not list(root.glob("[0-9a-f]*.json")):
            assert proc.poll() is None, "the driver ended before its first result"
            assert time.monotonic() < deadline, "no result within 120 s"
            children = psutil.Process(proc.pid).children(recursive=True) or children
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], "the Dask worker outlived its driver"
    finally:
        for p in [proc] + children:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                p.kill()
    done = {p.stem for p in root.glob("[0-9a-f]*.json")}
    assert 1 <= len(done) < 8  # the kill may fall between the two runs of a group
    for tmp in root.glob(".tmp-*"):  # killed mid-write: left behind, then found stale
        os.utime(tmp, (time.time() - 3600,) * 2)
    namespace = {}
    exec(KILL_SCRIPT, namespace)
    configs = namespace["configs"]
    summary, error = sweep.run_summary(configs, root, progress=False, stack=2)
    assert error is None and summary.stored == len(done) and summary.trained == 8 - len(done)
    _check_store(root, configs)


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(tmp_path):
    configs = _tiny([0])
    sweep.run(configs, tmp_path, progress=False)
    (tmp_path / ".failures").mkdir()
    stale = [tmp_path / ".tmp-dead.json", tmp_path / ".probe-dead", tmp_path / ".failures" /
             ".tmp-dead.json"]
    fresh = tmp_path / ".tmp-writing.json"
    for path in stale + [fresh]:
        path.write_text("{")
    for path in stale:
        os.utime(path, (time.time() - 700,) * 2)
    assert ResultStore(tmp_path).remove_stale_temporaries() == 3
    assert not any(p.exists() for p in stale) and fresh.exists()
    assert len(ResultStore(tmp_path).results()) == 1


# ------------------------------------------------------------------------ one store, two


SWEEP_SCRIPT = """
import json, os, sys
os.environ["TQDM_DISABLE"] = "1"
import torch
torch.set_num_threads(1)
from gflib import sweep
from gflib.config import RunConfig
seeds = json.loads(sys.argv[2])
tiny = json.loads(sys.argv[3])
res = sweep.run([RunConfig(**tiny, seed=s) for s in seeds], sys.argv[1], progress=False)
print(json.dumps(res.runs[["seed", "test_acc", "test_loss"]].values.tolist()))
"""


def test_two_sweeps_on_one_store_at_once(tmp_path):
    """Two processes sweep grids sharing six runs, both starting with those six: every run is
    stored once, every file parses under its key, and both see the same numbers."""
    grids = [list(range(6, 12)) + list(range(6)), list(range(6, 12)) + list(range(12, 18))]
    tiny = {**TINY, "epochs": 3}
    procs = [subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(tmp_path), json.dumps(g),
                               json.dumps(tiny)], stdout=subprocess.PIPE, text=True)
             for g in grids]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    rows = [{int(s): (a, l) for s, a, l in json.loads(o)} for o in outs]
    assert sorted(rows[0]) == list(range(12)) and sorted(rows[1]) == list(range(6, 18))
    assert all(rows[0][s] == rows[1][s] for s in range(6, 12))
    _check_store(tmp_path, [RunConfig(**tiny, seed=s) for s in range(18)])


# ---------------------------------------------------------------------- unwritable stores


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_read_only_store_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "train_group", lambda *a: pytest.fail("trained"))
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=f"results store {tmp_path} cannot be written"):
            sweep.run(_tiny([0]), tmp_path, progress=False)
    finally:
        tmp_path.chmod(0o755)


def test_full_store_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "train_group", lambda *a: pytest.fail("trained"))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ValueError, match="cannot be written: .*No space left on device"):
        sweep.run(_tiny([0]), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


class _Disk:
    """``shutil.disk_usage`` with ``free`` bytes left."""

    def __init__(self, free):
        self.free = free

    def __call__(self, path):
        return shutil._ntuple_diskusage(10 ** 12, 10 ** 12 - self.free, self.free)


def test_a_store_without_room_for_the_results_fails_before_training(tmp_path, monkeypatch):
    """The free-space check uses an upper bound of what the results take: one byte less than
    sweep.expected_bytes is refused before anything trains, the bound itself is enough, and
    the files written are smaller than the bound but not by half."""
    configs = _tiny(range(3), epochs=3)
    need = sweep.expected_bytes(configs)
    real = sweep.train_group
    monkeypatch.setattr(sweep, "train_group", lambda *a: pytest.fail("trained"))
    monkeypatch.setattr(shutil, "disk_usage", _Disk(need - 1))
    with pytest.raises(ValueError, match=(
            f"results store {tmp_path} has {need / 1e6:.1f} MB free, but the results of the 3 "
            f"runs to train need about {need / 1e6:.1f} MB: free space there or give another "
            "results_dir")):
        sweep.run(configs, tmp_path, progress=False)
    monkeypatch.setattr(sweep, "train_group", real)
    monkeypatch.setattr(shutil, "disk_usage", _Disk(need))
    sweep.run(configs, tmp_path, progress=False)
    written = sum(p.stat().st_size for p in tmp_path.glob("[0-9a-f]*.json"))
    assert need / 2 < written <= need


def test_a_store_that_fills_up_mid_sweep_keeps_what_trained(tmp_path, monkeypatch):
    """Before: a full disk raised a bare OSError from the store after training, the result was
    thrown away, and a rerun passed the writability check and crashed again. Here the disk is
    full (fsync: ENOSPC) once the first run is stored."""
    configs = _tiny(range(3))
    full = []
    real_fsync = os.fsync

    def fsync(fd):
        name = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if full and name.parent == tmp_path and name.name.startswith(".tmp-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    left = sweep.expected_bytes(configs[1:])
    with pytest.raises(sweep.StoreFull) as err:
        sweep.run(configs, tmp_path, progress=False,
                  on_group=lambda done, total, trained: full.append(done))
    assert str(err.value) == (
        f"results store {tmp_path} is full (No space left on device) with 1 of 3 runs stored: "
        f"the 2 others need about {left / 1e6:.1f} MB; free space there (or give another "
        "results_dir) and run the same sweep again to train only those. The 1 results trained "
        "but not written are on this error's `unstored`")
    assert isinstance(err.value.__cause__, OSError)
    _check_store(tmp_path, configs[:1])
    [kept] = err.value.unstored
    again = sweep.train_group(configs[1:2])[0]
    assert (kept.config, kept.history, kept.flow) == (again.config, again.history, again.flow)
    monkeypatch.setattr(shutil, "disk_usage", _Disk(0))
    monkeypatch.setattr(sweep, "train_group", lambda *a: pytest.fail("trained"))
    with pytest.raises(ValueError, match="has 0.0 MB free, but the results of the 2 runs"):
        sweep.run(configs, tmp_path, progress=False)
    monkeypatch.undo()
    ResultStore(tmp_path).put(kept)
    summary, error = sweep.run_summary(configs, tmp_path, progress=False)
    assert error is None and (summary.stored, summary.trained) == (2, 1)
    _check_store(tmp_path, configs)


# ------------------------------------------------------------------------------ publish


def test_publish_sends_the_sweep_to_the_scheduler(tmp_path, monkeypatch):
    from gflib import publish
    seen = {}

    class Counting(sweep.InlineExecutor):
        def submit(self, fn, /, *args, **kwargs):
            seen["groups"] = seen.get("groups", 0) + 1
            return super().submit(fn, *args, **kwargs)

    @contextlib.contextmanager
    def fake_executor_for(scheduler):
        seen["scheduler"] = scheduler
        yield Counting()

    monkeypatch.setattr(publish, "configs_for", lambda *a, **k: _tiny(range(3), **LEARNS))
    monkeypatch.setattr(sweep, "executor_for", fake_executor_for)
    publish.main(["sc_sdc_and_egf", "--preset", "smoke", "--results", str(tmp_path / "r"),
                  "--out", str(tmp_path / "out"), "--stack", "2", "--scheduler",
                  "tcp://10.0.0.1:8786"])
    assert seen == {"scheduler": "tcp://10.0.0.1:8786", "groups": 2}
    meta = json.loads((tmp_path / "out" / "sc_sdc_and_egf" / "smoke.json").read_text())
    assert meta["scheduler"] == "tcp://10.0.0.1:8786" and meta["n_runs"] == 3
    _check_verdicts(tmp_path / "out", "sc_sdc_and_egf", "smoke")


def _check_verdicts(root, chapter, name):
    """The summary's verdicts file: written for these very tables, the chapter's verdicts on
    them (every sub-test of the chapter, in its order)."""
    from gflib import chapters, presets, summaries
    payload = json.loads(summaries.verdicts_path(chapter, name, root).read_text())
    assert payload["chapter"] == chapter
    assert payload["summary"] == chapters.summary_key(chapter, name, root)
    results, meta = summaries.load(chapter, name, root)
    fresh = chapters.get(chapter).analyse(results, presets.get(meta["preset"])).verdicts
    assert fresh and json.dumps(payload["verdicts"]) == json.dumps(
        json.loads(json.dumps([v.to_dict() for v in fresh])))
    return payload


@pytest.mark.parametrize("kwargs, message", [
    (dict(scheduler="local:2", workers=2), "give workers \\(2\\) or a scheduler \\('local:2'\\)"),
    (dict(scheduler="host:8786"), "scheduler 'host:8786': give a Dask scheduler address"),
])
def test_publish_rejects_a_bad_scheduler_before_training(tmp_path, monkeypatch, kwargs, message):
    from gflib import publish
    monkeypatch.setattr(publish, "configs_for", lambda *a, **k: _tiny(range(2)))
    monkeypatch.setattr(sweep, "train_group", lambda *a: pytest.fail("trained"))
    with pytest.raises(ValueError, match=message):
        publish.publish("sc_sdc_and_egf", "smoke", results_root=tmp_path, out_root=tmp_path,
                        progress=False, **kwargs)


def test_publish_to_a_file_fails_before_training(tmp_path, monkeypatch):
    """Before: ``--out`` naming a file trained the whole sweep, then failed to make the summary's
    folder (NotADirectoryError) with nothing written."""
    from gflib import publish
    monkeypatch.setattr(publish, "configs_for", lambda *a, **k: _tiny(range(2)))
    monkeypatch.setattr(sweep, "train_group", lambda *a: pytest.fail("trained"))
    out = tmp_path / "summary.csv"
    out.write_text("a file")
    with pytest.raises(ValueError, match=f"summary folder {out}/sc_sdc_and_egf cannot be "
                                         "written: .*--out must be a writable folder"):
        publish.main(["sc_sdc_and_egf", "--preset", "smoke", "--results", str(tmp_path / "r"),
                      "--out", str(out)])


def test_publish_of_a_sweep_at_chance_still_writes_its_verdicts(tmp_path, monkeypatch):
    from gflib import analysis, publish
    configs = _tiny(range(3))
    monkeypatch.setattr(publish, "configs_for", lambda *a, **k: configs)
    publish.publish("sc_sdc_and_egf", "smoke", results_root=tmp_path / "r",
                    out_root=tmp_path / "out", progress=False)
    runs = json.loads((tmp_path / "out" / "sc_sdc_and_egf" / "smoke.json").read_text())
    assert runs["n_runs"] == 3
    payload = _check_verdicts(tmp_path / "out", "sc_sdc_and_egf", "smoke")
    egf = [v for v in payload["verdicts"] if v["claim"] == 2]
    assert len(egf) == 2 and {v["status"] for v in egf} == {"not run"}
    assert all("no run's flow is usable" in v["sentence"] for v in egf)
    from gflib import summaries
    results, _ = summaries.load("sc_sdc_and_egf", "smoke", tmp_path / "out")
    assert analysis.at_chance(results.runs).all()  # the case this test is about


def test_publish_verdicts_rewrites_stored_verdicts_and_trains_nothing(tmp_path, monkeypatch,
                                                                      capsys):
    """``python -m gflib.publish --verdicts --out DIR``: every stored summary under DIR (here a
    copy of the book's smallest, pruning_and_cnns at fmnist, with a stale verdicts file) is
    analysed again and its verdicts file rewritten; no sweep runs, nothing else is written."""
    import shutil

    from gflib import publish
    book = Path(__file__).resolve().parent.parent / "book" / "data" / "pruning_and_cnns"
    folder = tmp_path / "out" / "pruning_and_cnns"
    folder.mkdir(parents=True)
    for name in ("fmnist.csv", "fmnist-curves.csv", "fmnist.json"):
        shutil.copy(book / name, folder / name)
    stale = folder / "fmnist-verdicts.json"
    stale.write_text(json.dumps({"chapter": "pruning_and_cnns", "summary": "stale",
                                 "verdicts": []}))
    monkeypatch.setattr(sweep, "run", lambda *a, **k: pytest.fail("swept"))
    monkeypatch.setattr(sweep, "train_group", lambda *a: pytest.fail("trained"))
    monkeypatch.chdir(tmp_path)  # a results store would appear here
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p != stale}
    publish.main(["--verdicts", "--out", str(tmp_path / "out")])
    assert capsys.readouterr().out.split() == [str(stale)]
    payload = _check_verdicts(tmp_path / "out", "pruning_and_cnns", "fmnist")
    assert [v["test"] for v in payload["verdicts"]][0] == "EGF tracks magnitude-pruned MLPs"
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p != stale} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(SystemExit):
        publish.main(["--out", str(tmp_path / "out")])  # neither a chapter nor --verdicts
    assert "give a chapter, --verdicts or --compare" in capsys.readouterr().err


# ------------------------------------------------------------------- cost of stacked groups

ONE = {"setup_s": 0.7, "flow_s": 0.05, "step_s": 0.002, "eval_s": 0.03}
MORE = {"setup_s": 0.1, "flow_s": 0.01, "step_s": 0.0005, "eval_s": 0.02}  # per extra run


def stacked_model(config, stack=1):
    """What the cost model says a stack of ``stack`` runs takes: each term linear in ``stack``."""
    from gflib.flow import schedule
    t = {k: ONE[k] + (stack - 1) * MORE[k] for k in ONE}
    batches = math.ceil(config.train_subset / config.batch_size)
    return (t["setup_s"] + len(schedule(config.epochs, config.flow_points)) * t["flow_s"]
            + config.epochs * (batches * t["step_s"] + t["eval_s"]))


def test_time_shape_solves_the_terms_of_a_stacked_group():
    from gflib import cost
    seen = []
    terms = cost.time_shape(RunConfig(), a=2, b=8, stack=4,
                            timer=lambda c, k: seen.append(k) or stacked_model(c, k))
    assert terms == pytest.approx({k: ONE[k] + 3 * MORE[k] for k in ONE}, rel=1e-9)
    assert set(seen) == {4}
    with pytest.raises(ValueError, match="stack must be an integer >= 1, got 0"):
        cost.time_shape(RunConfig(), stack=0, timer=stacked_model)


def test_estimate_sums_stacked_groups_and_feeds_balanced_groups():
    from gflib import cost
    configs = [RunConfig(width=32, epochs=3, seed=s) for s in range(6)]
    configs.append(RunConfig(width=32, epochs=3, batchnorm=True))
    shapes = cost.estimate(configs, a=2, b=8, timer=stacked_model, stack=4)
    assert shapes["runs"].tolist() == [6, 1] and shapes["stack"].tolist() == [4, 1]
    assert shapes["groups"].tolist() == [2, 1]  # seeds 0-3 and 4-5; the BatchNorm run alone

    def by_hand(k):  # one group of k runs: digits' 1437 examples = 12 steps, flow at epochs 0-3
        t = {key: ONE[key] + (k - 1) * MORE[key] for key in ONE}
        return t["setup_s"] + 4 * t["flow_s"] + 3 * (12 * t["step_s"] + t["eval_s"])

    assert shapes["estimate_s"].tolist() == pytest.approx([by_hand(4) + by_hand(2), by_hand(1)])
    seconds = cost.estimator(json.loads(shapes.to_json(orient="records")))
    assert seconds(configs[:3]) == pytest.approx(by_hand(3))
    assert seconds(configs[6:]) == pytest.approx(by_hand(1))
    assert [len(g) for g in sweep.balanced_groups(configs, seconds, by_hand(2) + 1e-9, 4)] \
        == [2, 2, 2, 1]
    with pytest.raises(ValueError, match="no cost estimate for the shape"):
        seconds([RunConfig(width=33)])


def test_paper_grid_hours_by_hand():
    from gflib import cost
    assert cost.step_flop(RunConfig(depth=2, width=5, batch_size=4), inputs=3) \
        == 6 * 4 * (3 * 5 + 5 * 5 + 5 * 10)
    figures = {"one_by_one_step_s": (1.0, 2.0), "stacked_flop_s": (1e4, 2e4), "fp32_flop_s": 1e5}
    grids = {"g": {"runs": 2, "epochs": 3, "n_train": 1000, "inputs": 4}}
    table = cost.paper_grid_hours(gpus=(1, 4), figures=figures, grids=grids,
                                  architectures=[RunConfig(depth=1, width=5)])
    steps, flop = 2 * 3 * 8, 6 * 128 * (4 * 5 + 5 * 10)  # 1000 / 128 -> 8 steps an epoch
    assert table["steps"].tolist() == [steps, steps] and table["gpus"].tolist() == [1, 4]
    assert table["flop_per_step"].tolist() == [flop, flop]
    hours = steps / 3600
    assert table["one_by_one_h"][1] == pytest.approx((hours / 4, 2 * hours / 4))
    assert table["stacked_h"][0] == pytest.approx((hours * flop / 2e4, hours * flop / 1e4))
    assert table["fp32_limit_h"][1] == pytest.approx(hours * flop / 1e5 / 4)


def test_publish_sizes_groups_from_a_cost_file(tmp_path, monkeypatch):
    from gflib import cost, publish
    configs = _tiny(range(5), **LEARNS)
    shapes = cost.estimate(configs, a=2, b=8, timer=stacked_model, stack=4)
    figures = tmp_path / "cost.json"
    figures.write_text(json.dumps({"chapters": {"sc_sdc_and_egf": {
        "shapes": json.loads(shapes.to_json(orient="records"))}}}))
    two = cost.estimator(shapes)(configs[:2])
    seen = []
    real = sweep.train_group
    monkeypatch.setattr(sweep, "train_group", lambda g, *a: seen.append(len(g)) or real(g, *a))
    monkeypatch.setattr(publish, "configs_for", lambda *a, **k: configs)
    publish.main(["sc_sdc_and_egf", "--preset", "smoke", "--results", str(tmp_path / "r"),
                  "--out", str(tmp_path / "out"), "--stack", "4", "--cost", str(figures),
                  "--group-seconds", str(two * 1.01)])
    assert seen == [2, 2, 1]
    _check_verdicts(tmp_path / "out", "sc_sdc_and_egf", "smoke")
    with pytest.raises(ValueError, match="has no cost figures for 'batchnorm'"):
        publish.publish("batchnorm", "smoke", results_root=tmp_path, out_root=tmp_path,
                        cost_json=figures, progress=False)


# ------------------------------------------------------------------- one GPU per worker


@pytest.mark.parametrize("name, visible, gpu", [
    ("node7-0", None, "0"), ("node7-3", None, "3"), ("node-7-2", "4,5,6,7", "6"), (1, "2, 3", "3"),
])
def test_each_dask_worker_gets_its_own_gpu(name, visible, gpu, monkeypatch):
    from types import SimpleNamespace

    from gflib import dask_worker
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    dask_worker.dask_setup(SimpleNamespace(name=name))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == gpu


@pytest.mark.parametrize("name, visible, message", [
    ("tcp://10.0.0.2:4000", None, "has no index: start workers with --nworkers G --name NAME"),
    ("node-2", "0,1", "lists 2 GPUs: give --nworkers at most 2"),
])
def test_a_worker_without_its_gpu_is_refused(name, visible, message):
    from gflib import dask_worker
    with pytest.raises(ValueError, match=message):
        dask_worker.gpu_for(name, visible)


def test_a_worker_that_cannot_write_checkpoints_trains_without(tmp_path, monkeypatch):
    """A worker on another machine may find the store's path unusable: the group still trains."""
    from gflib import train
    seen = []
    real = train.train
    monkeypatch.setattr(train, "train", lambda c, checkpoint=None: seen.append(checkpoint)
                        or real(c, checkpoint=checkpoint))
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    [result] = sweep.train_group(_tiny([0]), str(blocked / "store" / ".checkpoints"))
    assert result.config["seed"] == 0
    sweep.train_group(_tiny([1]), str(tmp_path / ".checkpoints"))
    assert seen == [None, tmp_path / ".checkpoints" / f"{sweep.group_key(_tiny([1]))}.pt"]
