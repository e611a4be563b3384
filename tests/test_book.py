"""The book as a whole: chapters collected by nbval, run through papermill, built by jupyter-book."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gflib import bench

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ["sc_sdc_and_egf", "batchnorm"]


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc["chapters"]]


def test_every_chapter_is_a_notebook_in_the_toc_with_a_parameters_cell():
    import jupytext

    files = toc_files()
    for name in CHAPTERS:
        assert f"book/{name}" in files
        nb = jupytext.read(ROOT / "book" / f"{name}.md")
        assert nb.metadata["kernelspec"]["name"] == "python3"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "preset = os.environ.get(\"GFLIB_PRESET\"" in tagged[0].source


def test_nbval_collects_every_chapter():
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "book"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in CHAPTERS:
        cells = [line for line in out.stdout.splitlines() if f"book/{name}.md::Cell" in line]
        assert len(cells) >= 5, (name, out.stdout)
    assert not any("intro.md::" in line for line in out.stdout.splitlines())


@pytest.mark.slow
def test_papermill_command_runs_a_chapter_with_parameters(tmp_path):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "gflib.execute", "book/sc_sdc_and_egf.md", str(out_dir),
           "-p", "preset", "smoke", "-p", "seeds", "[0, 1]", "-p", "device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    nb = json.loads((out_dir / "sc_sdc_and_egf.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    source = "".join(injected[0]["source"])
    assert 'preset = "smoke"' in source and "seeds = [0, 1]" in source
    assert f'results_dir = "{out_dir / "results"}"' in source
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code)
    assert any(o.get("output_type") == "display_data" for c in code for o in c["outputs"])
    assert len(list((out_dir / "results" ).glob("*.json"))) > 0


@pytest.mark.slow
def test_book_builds_with_the_smoke_preset(tmp_path):
    src = bench.copy_book(tmp_path / "src", ROOT)
    env = dict(os.environ, GFLIB_PRESET="smoke")
    proc = subprocess.run(["jupyter-book", "build", str(src), "-W", "-n", "--keep-going"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    html = src / "_build" / "html"
    for page in toc_files():
        assert (html / f"{page}.html").is_file(), page
    chapter = (html / "book" / "sc_sdc_and_egf.html").read_text()
    assert "<img" in chapter and "Verdict" in chapter
