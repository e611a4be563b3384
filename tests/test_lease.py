"""gflib.lease: one command runs every chapter into one archive (what a GPU lease brings back),
another unpacks it where the chapters read summaries; a run cut short at its time limit keeps
what it trained and the next one trains only the rest."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from gflib import chapters, lease, summaries, sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_TOOLS = ("papermill", "jupytext", "nbformat", "nbclient", "myst_nb", "IPython", "nbval",
                  "ipykernel")


def test_every_chapter_into_one_archive_and_back_into_the_books_data(tmp_path, monkeypatch):
    def fake_bench(argv):
        assert argv[:2] == ["--device", "cpu"] and argv[4:] == ["--quick"]
        Path(argv[argv.index("--json") + 1]).write_text('{"masked_step_ratio": 1.0}')
    monkeypatch.setattr(lease.bench, "main", fake_bench)
    archive = tmp_path / "out" / "gpu.tar.gz"
    manifest = lease.run("smoke", "cpu", archive, stack=8, name="gpu",
                         results_root=tmp_path / "res", bench_args=["--quick"],
                         argv=["gflib", "lease", "run"])
    assert {c: r["status"] for c, r in manifest["chapters"].items()} == \
        {c: "done" for c in chapters.names()}
    assert manifest["torch"] and manifest["device_name"] and manifest["preset"] == "smoke"
    assert manifest["bench"]["status"] == "done" and manifest["command"] == "gflib lease run"
    assert not lease.store_archive(archive).exists()  # nothing left to resume
    data = tmp_path / "data"
    written = lease.unpack(archive, data)
    for chapter in chapters.names():
        assert summaries.names(chapter, data) == ["gpu"]
        assert {p.name for p in (data / chapter).iterdir()} == \
            {f"gpu{s}" for s in lease.SUFFIXES}
        assert [n for n, *_ in chapters.stored(chapter, data)] == ["gpu"]
    assert json.loads((data / "gpu-bench.json").read_text()) == {"masked_step_ratio": 1.0}
    assert json.loads((data / "gpu-lease.json").read_text())["chapters"] == manifest["chapters"]
    assert len(written) == 4 * len(chapters.names()) + 2
    with tarfile.open(archive) as tar:
        assert sum(n.startswith("logs/") for n in tar.getnames()) == len(chapters.names())


def test_the_command_needs_none_of_the_notebook_tools(tmp_path):
    """The GPU machine's image has torch, numpy, scipy, pandas, matplotlib and tqdm only."""
    stubs = tmp_path / "stubs"
    for name in NOTEBOOK_TOOLS:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(f"raise ImportError('no {name} here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs), str(ROOT)]),
           "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "gflib.lease", "run", "--preset", "smoke",
                           "--device", "cpu", "--stack", "8", "--no-bench", "--name", "gpu",
                           "--results", str(tmp_path / "res"),
                           "--archive", str(tmp_path / "gpu.tar.gz")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with tarfile.open(tmp_path / "gpu.tar.gz") as tar:
        assert "summaries/batchnorm/gpu-verdicts.json" in tar.getnames()


def test_a_lease_cut_short_keeps_its_runs_and_the_next_trains_only_the_rest(tmp_path,
                                                                            monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    store_group = sweep._store_group

    def stored_then_late(*args, **kwargs):
        store_group(*args, **kwargs)
        clock[0] = 100.0  # the time limit passes while the first group trains
    monkeypatch.setattr(sweep, "_store_group", stored_then_late)
    archive = tmp_path / "out" / "gpu.tar.gz"
    first = lease.run("smoke", "cpu", archive, stack=2, name="gpu", results_root=tmp_path / "a",
                      chapter_names=["sc_sdc_and_egf", "batchnorm"], stop_after_s=50)
    rows = first["chapters"]
    assert rows["sc_sdc_and_egf"]["status"] == "stopped" and "left" in rows["sc_sdc_and_egf"]["error"]
    assert rows["batchnorm"] == {"runs": rows["batchnorm"]["runs"], "status": "stopped",
                                 "wall_s": 0.0, "error": "not started: time limit"}
    with tarfile.open(archive) as tar:
        assert not any(n.startswith("summaries/") for n in tar.getnames())
    kept = lease.store_archive(archive)
    assert kept.is_file()

    monkeypatch.setattr(sweep, "_store_group", store_group)
    written = lease.unpack(kept, results_root=tmp_path / "b")
    assert len([p for p in written if p.suffix == ".json"]) == 2  # one group of two runs
    trained = []
    train_group = sweep.train_group
    monkeypatch.setattr(sweep, "train_group",
                        lambda group, ckpt=None: trained.extend(group) or train_group(group, ckpt))
    again = lease.run("smoke", "cpu", archive, stack=2, name="gpu", results_root=tmp_path / "b",
                      chapter_names=["sc_sdc_and_egf"])
    assert again["chapters"]["sc_sdc_and_egf"]["status"] == "done"
    assert len(trained) == rows["sc_sdc_and_egf"]["runs"] - 2
    assert not kept.exists()  # nothing is left to resume: the first lease's store archive goes


def test_unpack_refuses_what_a_lease_archive_does_not_hold(tmp_path):
    for bad in ("../escape.json", "summaries/nochapter/gpu.csv", "/abs/bench.json", "other.txt"):
        archive = tmp_path / "bad.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            data = b'{"name": "gpu"}'
            for name in ("lease.json", bad):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        with pytest.raises(ValueError, match="not part of a lease archive"):
            lease.unpack(archive, tmp_path / "data")
        assert not (tmp_path / "data").exists() and not (tmp_path / "escape.json").exists()


@pytest.mark.parametrize("kwargs,words", [
    (dict(archive="out/gpu.zip"), "must be a .tar.gz"),
    (dict(archive="out/gpu-store.tar.gz"), "must be a .tar.gz"),
    (dict(chapter_names=["nochapter"]), "unknown chapters"),
    (dict(stop_after_s=0), "stop_after_s must be"),
    (dict(preset="nopreset"), "unknown preset"),
])
def test_bad_input_is_refused_before_anything_trains(tmp_path, monkeypatch, kwargs, words):
    monkeypatch.setattr(sweep, "train_group", lambda *a: pytest.fail("trained"))
    monkeypatch.chdir(tmp_path)
    args = {"preset": "smoke", "device": "cpu", "archive": "out/gpu.tar.gz", **kwargs}
    with pytest.raises(ValueError, match=words):
        lease.run(**args)


def test_a_store_archive_leaves_the_checkpoints_out(tmp_path):
    store = tmp_path / "res" / "batchnorm" / "gpu"
    (store / ".checkpoints").mkdir(parents=True)
    (store / ".checkpoints" / "group.pt").write_bytes(b"x" * 1000)
    (store / "abc.json").write_text("{}")
    lease._write_tar(tmp_path / "gpu-store.tar.gz", {"store/batchnorm/gpu": store})
    with tarfile.open(tmp_path / "gpu-store.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["store/batchnorm/gpu", "store/batchnorm/gpu/abc.json"]
    written = lease.unpack(tmp_path / "gpu-store.tar.gz", results_root=tmp_path / "back")
    assert written == [tmp_path / "back" / "batchnorm" / "gpu" / "abc.json"]
