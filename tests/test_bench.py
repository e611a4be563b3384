"""gflib.bench runs end to end and writes every figure (no timing is asserted: timings belong to
the machine, not to the code)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from gflib import bench


def test_quick_bench_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "gflib.bench", "--quick", "--threads", "1",
                           "--json", str(out), "--steps", "gpu"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    steps = figures["preset_steps"]
    assert steps["preset"] == "smoke" and set(steps["by_stack"]) == {"1", "4"}  # quick: smoke
    for k, row in steps["by_stack"].items():
        assert all(math.isfinite(v) and v > 0 for v in row.values()), row
        assert math.isclose(row["run_step_ms"], row["group_step_ms"] / int(k))
    assert "steps of the smoke preset's costliest MLP kind" in proc.stdout
    for name in bench.FIGURES:
        value = figures[name]
        values = value.values() if isinstance(value, dict) else [value]
        assert values and all(isinstance(v, float) and math.isfinite(v) and v > 0
                               for v in values), (name, value)
        assert name in proc.stdout
    assert set(figures["stacked_speedup_by_width"]) <= {str(w) for w in bench.WIDTHS}
    assert "book_execute_s" not in figures
    assert figures["meta"]["mode"] == "quick" and figures["meta"]["threads"] == 1


def test_goal_check_and_table():
    figures = {"masked_step_ratio": 1.05, "flow_fraction": 0.05, "stacked_speedup_k16": 6.0,
               "stacked_speedup_by_width": {"32": 3.0, "1024": 0.9}, "peak_fraction": 0.6,
               "meta": {"mode": "quick", "device": "cpu", "torch": "x", "threads": 1, "cpus": 2,
                        "load_avg_before": 0.0, "load_avg_after": 0.0, "bench_s": 1.0}}
    assert bench.met("masked_step_ratio", 1.05) and not bench.met("flow_fraction", 0.05)
    assert not bench.met("stacked_speedup_by_width", figures["stacked_speedup_by_width"])
    table = bench.format_table(figures)
    assert table.count("NO") == 2 and "width 1024" in table


def test_book_figures_build_a_copy_twice(tmp_path, monkeypatch):
    calls = []

    def fake_run(args, cwd, env, **kwargs):
        calls.append((args, Path(cwd), env))
        assert (Path(cwd) / "_toc.yml").is_file() and (Path(cwd) / "book" / "intro.md").is_file()
        assert not list(Path(cwd).rglob("_build"))
        return subprocess.CompletedProcess(args, 0)
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    figures = bench.book_figures(preset="smoke")
    assert len(calls) == 2 and calls[0][1] == calls[1][1]
    assert calls[0][0][:2] == ["jupyter-book", "build"]
    assert calls[0][2]["GFLIB_PRESET"] == "smoke"
    assert calls[0][2]["GFLIB_RESULTS"] != os.environ.get("GFLIB_RESULTS")
    assert figures["book_rebuild_fraction"] == figures["book_rebuild_s"] / figures["book_execute_s"]
    assert bench.met("book_execute_s", 899.0) and not bench.met("book_rebuild_fraction", 0.2)
