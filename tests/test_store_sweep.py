"""gflib.store and gflib.sweep: stable keys, atomic writes, unreadable files treated as absent,
resuming without retraining, process pools, and a sweep killed with SIGKILL then resumed."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

from gflib import store as gstore
from gflib import sweep
from gflib.flow import MEASURES
from gflib.results import CURVE_COLUMNS, RUN_COLUMNS
from gflib import config as gconfig
from gflib.config import RunConfig, RunResult
from gflib.config import config_key
from gflib.store import ResultStore

TINY = dict(depth=1, width=4, epochs=1, flow_points=2, train_subset=100, test_subset=50)


@pytest.fixture(autouse=True)
def _no_bars_one_thread(monkeypatch):
    """No progress bars; one torch thread (tiny models run fastest on one, and several threads
    crawl on a loaded machine: measured 0.25 s against 20 s for one run on 2 busy cores)."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def calls(monkeypatch):
    """Count the runs that actually train (sweep's in-process calls of its worker)."""
    seen = []
    real = sweep.train_group

    def counting(configs, *args, **kwargs):
        seen.extend(configs)
        return real(configs, *args, **kwargs)

    monkeypatch.setattr(sweep, "train_group", counting)
    return seen


def _result(seed=0, diverged=False):
    """A hand-made result (no training) for store tests."""
    cfg = RunConfig(seed=seed, epochs=2)
    nan = float("nan")
    flow = {0: {k: 1.0 + seed for k in MEASURES}, 2: {k: 0.5 for k in MEASURES}}
    hist = [{"epoch": 1, "train_loss": 2.0, "train_acc": 0.1, "test_loss": 2.1, "test_acc": 0.125}]
    if diverged:
        hist[0]["train_loss"], flow = float("inf"), {0: flow[0]}
    return RunResult(
        config=cfg.to_dict(), history=hist, flow=flow,
        flow_mean={k: nan if diverged else 0.75 for k in MEASURES},
        final={k: v for k, v in hist[-1].items() if k != "epoch"}, diverged=diverged,
        diverged_epoch=1 if diverged else None, wall_s=0.25, device="cpu")


def _result_files(root):
    return sorted(p.name for p in root.glob("*.json") if not p.name.startswith("."))


# -------------------------------------------------------------------------------------- keys


def test_config_key_stable_and_ignores_where_it_ran():
    c = RunConfig(width=32, lr=0.1, seed=3)
    k = config_key(c)
    assert len(k) == 20 and int(k, 16) >= 0
    assert config_key(c) == k == config_key(c.to_dict())
    assert config_key(json.loads(json.dumps(c.to_dict()))) == k  # survives a JSON round trip
    assert config_key(dataclasses.replace(c, device="cuda", data_dir="/data")) == k
    for change in (dict(width=33), dict(lr=0.01), dict(seed=4), dict(batchnorm=True),
                   dict(dataset="cifar10")):
        assert config_key(dataclasses.replace(c, **change)) != k


def test_config_key_does_not_depend_on_number_types():
    """Before: lr=1 and lr=1.0 were one run with two keys."""
    assert config_key(RunConfig(lr=1)) == config_key(RunConfig(lr=1.0))
    assert config_key({"lr": 1, "seed": 2}) == config_key(RunConfig(lr=1.0, seed=2))


def test_a_new_field_with_a_default_keeps_every_stored_key(tmp_path, monkeypatch):
    """Keys hash the fields that differ from their defaults: a RunConfig grown by one field
    (default) finds every result stored before, and the new field's other values are new runs."""
    st = ResultStore(tmp_path)
    old = _result(3)
    st.put(old)

    @dataclasses.dataclass(frozen=True)
    class Grown(RunConfig):
        dropout: float = 0.0

    monkeypatch.setattr(gconfig, "RunConfig", Grown)
    again = Grown(**old.config)
    assert config_key(again) == config_key(old.config)
    assert st.get(again).history == old.history
    assert st.get(Grown(**old.config, dropout=0.5)) is None


def test_results_version_retires_old_keys(monkeypatch):
    k = config_key(RunConfig())
    monkeypatch.setattr(gconfig, "RESULTS_VERSION", gconfig.RESULTS_VERSION + 1)
    assert config_key(RunConfig()) != k


# ------------------------------------------------------------------------------------- store


def test_put_get_round_trip_and_nothing_else_written(tmp_path):
    st = ResultStore(tmp_path / "s")
    for r in (_result(0), _result(1, diverged=True)):
        path = st.put(r)
        assert path == st.path(RunConfig(**r.config))
        assert path.name == f"{config_key(r.config)}.json"
        back = st.get(RunConfig(**r.config))
        assert back.history[0]["test_acc"] == r.history[0]["test_acc"]
        assert back.flow.keys() == r.flow.keys() and all(isinstance(e, int) for e in back.flow)
        assert back.diverged is r.diverged and back.diverged_epoch == r.diverged_epoch
    assert math.isnan(back.flow_mean["egf_l2"]) and back.history[0]["train_loss"] == float("inf")
    assert sorted(os.listdir(st.root)) == sorted(f"{config_key(_result(s).config)}.json"
                                                  for s in (0, 1))
    assert len(st.keys()) == 2 and len(st.results()) == 2
    assert st.get(RunConfig(seed=9)) is None


def test_failed_write_leaves_old_result_and_no_temp_file(tmp_path, monkeypatch):
    st = ResultStore(tmp_path)
    r = _result(0)
    st.put(r)
    before = st.path(RunConfig(**r.config)).read_bytes()

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    changed = dataclasses.replace(r, wall_s=99.0)
    with pytest.raises(OSError, match="disk full"):
        st.put(changed)
    assert os.listdir(tmp_path) == [f"{config_key(r.config)}.json"]
    assert st.path(RunConfig(**r.config)).read_bytes() == before


@pytest.mark.parametrize("content", [
    "half",  # a truncated write
    "", "null", "[]", '"text"', "{}", b"\xff\xfe\x00garbage",
    "format2", "result-not-a-dict", "wrong-key",
])
def test_unreadable_files_are_absent(tmp_path, content):
    st = ResultStore(tmp_path)
    good = _result(0)
    path = st.path(RunConfig(**good.config))
    st.put(good)
    text = path.read_text()
    payload = json.loads(text)
    if content == "half":
        content = text[:len(text) // 2]
    elif content == "format2":
        content = json.dumps({**payload, "format": gstore.FORMAT + 1})
    elif content == "result-not-a-dict":
        content = json.dumps({**payload, "result": [1, 2]})
    elif content == "wrong-key":  # another run's file under this run's name
        other = _result(1)
        content = json.dumps({**payload, "result": other.to_dict()})
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert st.get(RunConfig(**good.config)) is None
    assert st.keys() == [] and st.results() == []


def test_sweep_redoes_corrupt_and_wrong_key_files(tmp_path, calls):
    configs = [RunConfig(**TINY, seed=s) for s in range(3)]
    sweep.run(configs, tmp_path, progress=False)
    assert len(calls) == 3
    st = ResultStore(tmp_path)
    p0, p1 = st.path(configs[0]), st.path(configs[1])
    p0.write_text(p0.read_text()[:100])  # half-written
    p1.write_text(st.path(configs[2]).read_text())  # run 2's file under run 1's name
    calls.clear()
    tab = sweep.run(configs, tmp_path, progress=False).runs
    assert calls == configs[:2]
    assert len(tab) == 3 and len(st.keys()) == 3
    assert tab["seed"].tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------------- sweep


def test_rerun_skips_stored_runs(tmp_path, calls):
    configs = [RunConfig(**TINY, seed=s) for s in range(3)]
    first = sweep.run(configs, tmp_path, progress=True)
    assert calls == configs
    calls.clear()
    again = sweep.run(configs, tmp_path, progress=False)
    assert calls == []
    assert again.runs.equals(first.runs)  # every stored number comes back
    assert again.curves.equals(first.curves)
    more = configs + [RunConfig(**TINY, seed=3)]
    res = sweep.run(more, tmp_path / ".." / tmp_path.name, progress=False)
    tab = res.runs
    assert calls == [more[3]]
    assert len(tab) == 4 and tab["seed"].tolist() == [0, 1, 2, 3]
    assert list(tab.columns) == list(RUN_COLUMNS) + ["layer_density_0", "layer_density_1"]
    assert (tab["kind"] == "dense").all() and not tab["diverged"].any()
    assert list(res.curves.columns) == list(CURVE_COLUMNS)
    assert len(res.curves) == 4 * 2 * len(MEASURES)  # runs x scheduled epochs x measures
    assert set(res.curves["key"]) == set(tab["key"])


def test_device_and_data_dir_do_not_cause_reruns(tmp_path, calls):
    c = RunConfig(**TINY)
    sweep.run([c], tmp_path, progress=False)
    sweep.run([dataclasses.replace(c, data_dir=str(tmp_path))], tmp_path, progress=False)
    assert calls == [c]


def test_one_bad_config_stops_the_sweep_before_any_training(tmp_path, calls):
    bad = [dict(optimizer="lbfgs"), dict(density=1.5), dict(width=0), dict(depth=0),
           dict(lr=-1.0), dict(epochs=0), dict(dataset="svhn"), dict(activation="tanh")]
    values = ["'lbfgs'", "1.5", "got 0", "got 0", "-1.0", "got 0", "'svhn'", "'tanh'"]
    for b, v in zip(bad, values):
        with pytest.raises(ValueError) as err:
            sweep.run([RunConfig(**TINY), RunConfig(**b), RunConfig(**TINY, seed=1)], tmp_path,
                      progress=False)
        assert v in str(err.value)
    assert calls == [] and os.listdir(tmp_path) == []


def test_empty_grid_and_unwritable_store_fail_before_training(tmp_path, calls):
    """Before: an empty grid failed late with KeyError 'wall_s', and a store folder that could
    not be written was found only after every run had trained (and every result was lost)."""
    with pytest.raises(ValueError, match="grid is empty"):
        sweep.run([], tmp_path, progress=False)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot be written"):
        sweep.run([RunConfig(**TINY)], blocked / "store", progress=False)
    with pytest.raises(ValueError, match="leaves"):
        sweep.run([RunConfig(**TINY), RunConfig(**TINY, density=1e-9)], tmp_path / "s",
                  progress=False)
    assert calls == []


def test_each_group_is_stored_as_it_finishes(tmp_path, monkeypatch):
    """The driver writes every finished group at once: a later group that fails loses only
    itself."""
    configs = [RunConfig(**TINY, seed=s) for s in range(3)]
    real = sweep.train_group
    stored_before = []

    def third_fails(group, *args):
        stored_before.append(len(ResultStore(tmp_path).keys()))
        if group[0].seed == 2:
            raise RuntimeError("out of memory")
        return real(group, *args)

    monkeypatch.setattr(sweep, "train_group", third_fails)
    with pytest.raises(RuntimeError, match="out of memory"):
        sweep.run(configs, tmp_path, progress=False)
    assert sorted(ResultStore(tmp_path).keys()) == sorted(config_key(c) for c in configs[:2])
    assert stored_before == [0, 1, 2]  # in process, a group is stored before the next trains


def test_sweep_with_process_pool(tmp_path):
    configs = [RunConfig(**TINY, seed=s) for s in range(4)]
    inline = sweep.run(configs, tmp_path / "inline", progress=False)
    # Start torch's OpenMP threads in this (the forking) thread: forked workers used to inherit
    # them dead and hang in their first parallel op.
    torch.set_num_threads(2)
    torch.ones(1 << 20).mul_(2).index_select(0, torch.arange(1 << 19))

    def timeout(signum, frame):
        raise TimeoutError("sweep through a ProcessPoolExecutor did not finish in 120 s")

    old = signal.signal(signal.SIGALRM, timeout)
    pool = ProcessPoolExecutor(2)
    signal.alarm(120)
    try:
        tab = sweep.run(configs, tmp_path / "pool", executor=pool, progress=False)
    except TimeoutError:
        for p in list(pool._processes.values()):  # free the stuck workers, then fail
            p.kill()
        raise
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        pool.shutdown(cancel_futures=True)
    assert len(ResultStore(tmp_path / "pool").keys()) == 4
    cols = ["seed", "test_acc", "test_loss", "mean_egf_l2"]
    assert tab.runs[cols].equals(inline.runs[cols])  # the same numbers from other processes
    assert tab.curves.equals(inline.curves)


KILL_CONFIGS = [dict(depth=1, width=16, epochs=40, flow_points=2, train_subset=500, seed=s)
                for s in range(8)]


def test_sweep_killed_midway_resumes_to_exactly_all_runs(tmp_path, calls):
    root = tmp_path / "store"
    script = (
        "import os\n"
        "os.environ['TQDM_DISABLE'] = '1'\n"
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from gflib import sweep\n"
        "from gflib.train import RunConfig\n"
        f"sweep.run([RunConfig(**kw) for kw in {KILL_CONFIGS!r}], {str(root)!r}, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 240
        while not (root.is_dir() and _result_files(root)):
            assert proc.poll() is None, "the sweep process ended before its first result"
            assert time.monotonic() < deadline, "no result file within 240 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _result_files(root)
    assert 1 <= len(done) <= 2  # each run is stored as it finishes, not all at the end
    # what a kill inside ResultStore.put would leave: a temp file, complete or not
    stray = next(root.glob(f"{done[0]}"))
    (root / ".tmp-killed.json").write_text(stray.read_text())
    (root / ".tmp-half.json").write_text(stray.read_text()[:50])

    configs = [RunConfig(**kw) for kw in KILL_CONFIGS]
    tab = sweep.run(configs, root, progress=False).runs
    assert len(calls) == 8 - len(done)  # only the missing runs trained
    assert {config_key(c) for c in calls}.isdisjoint(p[:-5] for p in done)
    st = ResultStore(root)
    assert sorted(st.keys()) == sorted(config_key(c) for c in configs)
    assert len(_result_files(root)) == 8 and len(st.results()) == 8
    assert len(tab) == 8 and tab["seed"].tolist() == list(range(8))
    assert not tab["diverged"].any()


# ------------------------------------------------------- faults found by a probe (issue 29)


@pytest.mark.parametrize("executor", [None, "threads"])
def test_a_device_this_machine_lacks_is_refused_before_training(tmp_path, calls, monkeypatch,
                                                                executor):
    """Before: ``device="cuda"`` on a machine without CUDA failed inside torch once per group, so
    every group was tried, then a SweepError; ``cuda:5`` with one GPU the same."""
    from concurrent.futures import ThreadPoolExecutor

    from gflib import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    configs = [RunConfig(**TINY, seed=s, device="cuda") for s in range(3)]
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(2)) if executor else None
        with pytest.raises(ValueError, match="'cuda': torch sees no CUDA GPU"):
            sweep.run(configs, tmp_path, executor=pool, progress=False)
    with pytest.raises(ValueError, match="no CUDA GPU"):  # a worker elsewhere checks its own
        train.run(configs[0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"'cuda:5': torch sees 1 CUDA GPU\(s\) here"):
        sweep.run([RunConfig(**TINY, device="cuda:5")], tmp_path, progress=False)
    with pytest.raises(ValueError, match="'cdua' is not a torch device"):
        RunConfig(device="cdua")
    assert calls == [] and os.listdir(tmp_path) == []


def test_a_folder_under_a_results_name_is_refused_before_training(tmp_path, calls):
    """Before: the run trained, then ``os.replace`` onto the folder raised IsADirectoryError and
    the sweep crashed with the result lost."""
    configs = [RunConfig(**TINY, seed=s) for s in range(2)]
    st = ResultStore(tmp_path)
    sweep.run(configs[:1], tmp_path, progress=False)
    st.path(configs[1]).mkdir()
    calls.clear()
    with pytest.raises(ValueError, match=f"{st.path(configs[1])}.*is a folder; move it away"):
        sweep.run(configs, tmp_path, progress=False)
    assert calls == []
    assert [r.config for r in st.results()] == [configs[0].to_dict()]
    assert sweep.run(configs[:1], tmp_path, progress=False).runs["seed"].tolist() == [0]


def test_json_nested_past_what_python_reads_is_a_corrupt_result(tmp_path, calls):
    """Before: RecursionError from ``json.loads`` crashed ``get``, ``keys``, ``results``,
    ``sweep.failures`` and with them the sweep; now the file is corrupt: absent, and retrained
    over."""
    c = RunConfig(**TINY)
    st = ResultStore(tmp_path)
    deep = "[" * 200_000 + "]" * 200_000
    st.path(c).write_text(deep)
    (tmp_path / sweep.FAILURES).mkdir()
    (tmp_path / sweep.FAILURES / f"{config_key(c)}.json").write_text(deep)
    assert st.get(c) is None and st.keys() == [] and st.results() == []
    assert sweep.failures(tmp_path) == []
    assert sweep.run([c], tmp_path, progress=False).runs["seed"].tolist() == [0]
    assert calls == [c] and st.get(c) is not None


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: from now on every write under ``folder`` fails as on read-only
    media (EROFS), for root too (whom permission bits do not stop)."""
    import errno

    def block(folder):
        folder = os.path.realpath(folder)
        os.chmod(folder, 0o555)

        def under(path):
            return os.path.realpath(os.fsdecode(path)).startswith(folder)

        def guard(name, writes=lambda *a, **k: True):
            real = getattr(os, name)

            def fake(path, *args, **kwargs):
                if under(path) and writes(*args, **kwargs):
                    raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))
                return real(path, *args, **kwargs)
            monkeypatch.setattr(os, name, fake)

        guard("open", lambda flags, *a, **k: flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        for name in ("mkdir", "unlink", "rmdir", "replace", "rename", "chmod", "utime"):
            guard(name)
        blocked.append(folder)

    blocked = []
    yield block
    monkeypatch.undo()
    for folder in blocked:
        os.chmod(folder, 0o755)


def test_a_complete_store_on_read_only_media_is_read(tmp_path, calls, read_only):
    """Before: ``sweep.run`` proved the store writable first, so a finished store on read-only
    media (a DVD, a read-only mount of someone else's results) raised 'cannot be written'; now a
    complete store is only read, and one with runs missing is still refused before training."""
    configs = [RunConfig(**TINY, seed=s) for s in range(2)]
    first = sweep.run(configs, tmp_path / "s", progress=False).runs
    calls.clear()
    read_only(tmp_path / "s")
    again = sweep.run(configs, tmp_path / "s", progress=False).runs
    assert again.equals(first) and calls == []
    with pytest.raises(ValueError, match="cannot be written"):
        sweep.run(configs + [RunConfig(**TINY, seed=2)], tmp_path / "s", progress=False)
    assert calls == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_results_csvs_and_checkpoints_follow_the_umask(tmp_path, umask):
    """Files a sweep, a summary and a checkpoint write are as readable as ``open`` would make
    them (``0o666 & ~umask``: 0644 under umask 022). Before commit 9e3d08c results were
    written through ``mkstemp`` as 0600, unreadable to the other users of a shared machine."""
    import stat

    from gflib import summaries, train
    from gflib.hooks import Hook

    old = os.umask(umask)
    try:
        c = RunConfig(**{**TINY, "epochs": 2})
        results = sweep.run([c], tmp_path / "store", progress=False)
        csv = summaries.write(results, {"chapter": "x"}, "x", "tiny", tmp_path / "data")
        seen = []

        class Keep(Hook):
            def after_epoch(self, loop, epoch):
                ckpt = tmp_path / "g.pt"
                if ckpt.exists():
                    seen.append(stat.S_IMODE(ckpt.stat().st_mode))

        train.train([c], checkpoint=tmp_path / "g.pt", checkpoint_every_s=0, observer=Keep())
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    files = [ResultStore(tmp_path / "store").path(c), csv, csv.with_suffix(".json"),
             csv.with_name("tiny-curves.csv")]
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: want for f in files}
    assert seen == [want]


def test_a_stop_time_stops_between_groups_and_the_same_sweep_resumes(tmp_path, calls,
                                                                     monkeypatch):
    """``stop_at``: the group in progress finishes and is stored, no later group starts,
    :class:`sweep.Stopped` says how many runs are stored; the same sweep then trains only the
    rest. (Adapted from a helper's branch.)"""
    configs = [RunConfig(**TINY, seed=s) for s in range(4)]
    clock = [0.0]
    monkeypatch.setattr(sweep, "time", type("Clock", (), {"monotonic": lambda: clock[0]}))

    def after_group(done, total, trained):
        clock[0] = 10.0  # the stop time passes while the first group trains

    with pytest.raises(sweep.Stopped, match="1 of 4 runs stored") as stop:
        sweep.run(configs, tmp_path, progress=False, on_group=after_group, stop_at=5.0)
    assert stop.value.summary.not_run == 3
    assert calls == configs[:1] and ResultStore(tmp_path).keys() == [config_key(configs[0])]
    with pytest.raises(sweep.Stopped, match="1 of 4"):  # a stop time already past: nothing trains
        sweep.run(configs, tmp_path, progress=False, stop_at=5.0)
    assert calls == configs[:1]
    calls.clear()
    done = sweep.run(configs, tmp_path, progress=False, stop_at=50.0)
    assert calls == configs[1:] and len(done.runs) == 4
    assert len(sweep.run(configs, tmp_path, progress=False, stop_at=5.0).runs) == 4  # complete
    with pytest.raises(ValueError, match="stop_at"):
        sweep.run(configs, tmp_path, progress=False, stop_at="soon")


def test_a_stop_time_cancels_pooled_groups_that_have_not_started(tmp_path, calls, monkeypatch):
    """With an executor that takes every group at once, those not yet started are cancelled at
    the stop time; every run is either stored or counted as not run."""
    from concurrent.futures import ThreadPoolExecutor
    configs = [RunConfig(**TINY, seed=s) for s in range(4)]
    clock = [0.0]
    monkeypatch.setattr(sweep, "time", type("Clock", (), {"monotonic": lambda: clock[0]}))

    def after_group(done, total, trained):
        clock[0] = 10.0

    with ThreadPoolExecutor(1) as pool, pytest.raises(sweep.Stopped) as stop:
        sweep.run(configs, tmp_path, executor=pool, progress=False, on_group=after_group,
                  stop_at=5.0)
    summary = stop.value.summary
    assert summary.not_run >= 1 and summary.trained + summary.not_run == 4
    assert len(ResultStore(tmp_path).keys()) == summary.trained == len(calls)
