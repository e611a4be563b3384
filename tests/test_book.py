"""The book as a whole: chapters collected by nbval, run through papermill, built by jupyter-book."""
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

import gflib
from gflib import bench, chapters, execute, pages
from gflib.config import config_key

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = chapters.names()
PAGES = ("intro", "results", "your_model")
"""Notebooks of the book that are not chapters: pages over all chapters, and the tutorial for
a model of your own."""


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc["chapters"]]


def remote_assets(html_dir: Path) -> list[tuple[str, str]]:
    """Every script or stylesheet a built page loads from the network, as ``(page, url)``.

    Scans each ``*.html`` under ``html_dir`` for ``<script src=...>`` and ``<link href=...>``
    (any ``rel`` but the navigational ``canonical``/``alternate``) whose URL is ``http(s)://`` or
    protocol-relative ``//``; inline scripts and ``<a>`` links are not loads and are ignored.
    """
    found = []

    class Scan(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            rel = (attrs.get("rel") or "").lower().split()
            if tag == "script":
                url = attrs.get("src")
            elif tag == "link" and not {"canonical", "alternate"} & set(rel):
                url = attrs.get("href")
            else:
                return
            url = (url or "").strip()
            if url.lower().startswith(("http://", "https://", "//")):
                found.append((str(page.relative_to(html_dir)), url))

    for page in sorted(html_dir.rglob("*.html")):
        Scan().feed(page.read_text(encoding="utf-8", errors="replace"))
    return found


def images_without_alt(html_dir: Path) -> list[tuple[str, str]]:
    """Every ``<img>`` of a built page whose alt text is missing or only its file name (what
    myst-nb writes for a figure without ``:alt:`` or a cell's ``mystnb.image.alt``), as
    ``(page, src)``."""
    found = []

    class Scan(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            alt = (attrs.get("alt") or "").strip()
            if tag == "img" and (not alt or alt == attrs.get("src") or "_images/" in alt):
                found.append((str(page.relative_to(html_dir)), attrs.get("src")))

    for page in sorted(html_dir.rglob("*.html")):
        Scan().feed(page.read_text(encoding="utf-8", errors="replace"))
    return found


def test_images_without_alt_finds_missing_and_file_name_alt_texts(tmp_path):
    (tmp_path / "a.html").write_text(
        '<img src="../_images/1.svg" alt="../_images/1.svg"><img src="2.png">'
        '<img src="3.svg" alt="Heat map of p-values"><img src="4.svg" alt="">')
    assert images_without_alt(tmp_path) == [("a.html", "../_images/1.svg"), ("a.html", "2.png"),
                                            ("a.html", "4.svg")]


def test_remote_assets_finds_network_scripts_and_stylesheets(tmp_path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
        '<script SRC=//cdnjs.cloudflare.com/require.min.js></script>'
        '<link rel="stylesheet" href="http://example.org/x.css">'
        '<script src="../_static/mathjax/tex-chtml.js"></script>'
        '<script>const u = "https://x";</script>'
        '<link rel="canonical" href="https://example.org/a.html"><a href="https://arxiv.org">p</a>')
    assert [url for _, url in remote_assets(tmp_path)] == [
        "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
        "//cdnjs.cloudflare.com/require.min.js", "http://example.org/x.css"]


def test_every_chapter_is_a_notebook_in_the_toc_with_a_parameters_cell():
    import jupytext

    files = toc_files()
    for name in CHAPTERS:
        assert f"book/{name}" in files
        nb = jupytext.read(ROOT / "book" / f"{name}.md")
        assert nb.metadata["kernelspec"]["name"] == "python3"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "preset = os.environ.get(\"GFLIB_PRESET\"" in tagged[0].source


def test_chapter_modules_and_notebooks_are_one_to_one():
    """Every registered chapter has its notebook in the toc; every notebook is a registered
    chapter (a chapter's name is spelled once, in its module) or one of the listed
    :data:`PAGES`, which are in the toc too and are not chapters."""
    import jupytext

    notebooks = sorted(p.stem for p in (ROOT / "book").glob("*.md")
                       if "kernelspec" in jupytext.read(p).metadata)
    assert not set(PAGES) & set(chapters.names())
    assert sorted(n for n in notebooks if n not in PAGES) == sorted(chapters.names())
    assert set(PAGES) <= set(notebooks)
    assert {f"book/{p}" for p in PAGES} <= set(toc_files())


def test_execute_refuses_unknown_parameters(tmp_path):
    """Before: a misspelt papermill parameter only warned and the chapter ran with its default."""
    with pytest.raises(ValueError, match=r"has no parameter 'sead'; allowed: preset, dataset"):
        execute.execute("sc_sdc_and_egf", tmp_path, {"preset": "smoke", "sead": [0]})
    assert not any(tmp_path.iterdir())
    assert execute.chapter_path("batchnorm") == ROOT / "book" / "batchnorm.md"
    assert "stack = 16" in execute.parameters_of("batchnorm")["stack"]


def test_nbval_collects_every_chapter():
    """nbval collects each code cell of each chapter: as many as the notebook has (a chapter by
    the README's recipe has two, its parameters and its setup)."""
    import jupytext

    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "book"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in CHAPTERS:
        cells = [line for line in out.stdout.splitlines() if f"book/{name}.md::Cell" in line]
        code = [c for c in jupytext.read(ROOT / "book" / f"{name}.md").cells
                if c.cell_type == "code"]
        assert len(cells) == len(code) >= 2, (name, out.stdout)
    # the intro's one cell reads the stored verdicts (what reproduced, at which scale)
    assert any("book/intro.md::Cell" in line for line in out.stdout.splitlines())


@pytest.mark.slow
def test_papermill_command_runs_a_chapter_with_parameters(tmp_path):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "gflib.execute", "sc_sdc_and_egf", str(out_dir),
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
    for page in chapters.names():
        # The answer is a table (a Markdown table glued inline would read as a run of pipes).
        text = (html / "book" / f"{page}.html").read_text()
        answer = text.split('id="the-answer"', 1)[1].split("</h2>", 1)[1].split("<h2", 1)[0]
        assert "<table" in answer and "| ---" not in answer and "|---" not in answer, page
    # The API page lists every public name, from its docstring; the tutorial links to it.
    api = (html / "book" / "api.html").read_text()
    assert all(f'id="gflib.{n}"' in api for n in gflib.__all__ if n != "__version__")
    assert 'href="api.html"' in (html / "book" / "your_model.html").read_text()
    # Offline: nothing is fetched from the network; MathJax is served from the book's _static.
    assert remote_assets(html) == []
    assert 'src="../_static/mathjax/tex-chtml.js"' in (html / "book" / "reproduce.html").read_text()
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    # Take-aways: each chapter's executed notebook downloads as .ipynb and launches on Binder from
    # the repository that _config.yml names; every reference links to its paper.
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for page in toc_files():
        text = (html / f"{page}.html").read_text()
        if "kernelspec:" in (ROOT / f"{page}.md").read_text():
            assert (html / "_sources" / f"{page}.ipynb").is_file(), page
            assert f"_sources/{page}.ipynb" in text, page
            assert "mybinder.org/v2/gh/" + repo.split("github.com/")[1] in text, page
        assert f'href="{repo}"' in text, page
    bib = (ROOT / "book" / "references.bib").read_text()
    assert bib.count("\n@") + 1 == bib.count("url ")
    references = (html / "book" / "references.html").read_text()
    printed = re.findall(r"arXiv:(\d{4}\.\d{5})", references)
    assert printed and all(f'href="https://arxiv.org/abs/{i}"' in references for i in printed)
    # A reader's page: every figure described, nothing cut off or scrolling sideways at 1280 px.
    assert images_without_alt(html) == []
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        # Layout only: the smoke preset's few runs leave numbers missing (NaN) where a test has
        # no data, which the text check (python -m gflib.pages) flags on the book-preset build.
        assert pages.check(html, text=False) == {}


def cell_timeouts() -> dict:
    """``{page: seconds}``: the cell timeout jupyter-book 1.x applies to each notebook of the
    book (``execute.timeout`` of ``_config.yml``, overridden by a notebook's ``mystnb:
    {execution_timeout}`` front matter, then by jupyter-cache's ``execution: {timeout}``
    metadata). nbclient waits without limit for None, 0 or a negative number."""
    import jupytext
    from jupyter_book.config import get_final_config

    sphinx, _ = get_final_config(user_yaml=ROOT / "_config.yml", sourcedir=ROOT,
                                 cli_config={"latex_individualpages": False})
    out = {}
    for path in sorted((ROOT / "book").glob("*.md")):
        meta = jupytext.read(path).metadata
        if "kernelspec" not in meta:
            continue
        timeout = meta.get("mystnb", {}).get("execution_timeout",
                                             sphinx.get("nb_execution_timeout"))
        out[path.stem] = meta.get("execution", {}).get("timeout", timeout)
    return out


def test_no_notebook_cell_can_time_out_in_a_build():
    """Before: a busy 2-core machine failed the build after 34 min, when the BatchNorm
    notebook's sweep cell (3.8 min idle) passed its 1800-s timeout. A sweep shows its own
    progress and resumes from its store, so the build sets no timeout."""
    timeouts = cell_timeouts()
    assert set(timeouts) == set(CHAPTERS) | set(PAGES)
    assert {page: t for page, t in timeouts.items() if t and t > 0} == {}


def _tree(pid: int) -> list:
    import psutil

    parent = psutil.Process(pid)
    return parent.children(recursive=True) + [parent]


def _snapshot(store: Path) -> dict:
    """``{file name: (inode, mtime ns)}`` of the results in ``store``: a result trained again
    is written to a new file (atomic replace), so its inode changes."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in store.glob("*.json")
            if not p.name.startswith(".")}


@pytest.mark.slow
def test_a_killed_chapter_execution_resumes_without_retraining_what_was_stored(tmp_path):
    """SIGKILL to the papermill command and its kernel once 3 runs are stored, then the same
    command again: every run is stored, the files of those stored before are untouched (a run
    trained again would replace its file), and the rerun's progress log starts from them. About
    70 s on 2 cores shared with other work."""
    import time

    import psutil

    out_dir, store = tmp_path / "run", tmp_path / "run" / "results"
    plan = chapters.plan("sc_sdc_and_egf", "smoke", epochs=8)
    keys = {f"{config_key(c)}.json" for c in plan.configs}
    cmd = [sys.executable, "-m", "gflib.execute", "sc_sdc_and_egf", str(out_dir), "-q",
           "-p", "preset", "smoke", "-p", "epochs", "8", "-p", "stack", "1"]
    errors = open(tmp_path / "stderr.txt", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
    deadline = time.monotonic() + 300
    try:
        while len(_snapshot(store) if store.is_dir() else {}) < 3:
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, "no 3 runs stored in 300 s"
            time.sleep(0.05)
        killed = _tree(proc.pid)
        for process in killed:
            process.kill()
        _, alive = psutil.wait_procs(killed, timeout=60)
        assert not alive
    finally:
        proc.kill()
        proc.wait()
        errors.close()
    stored = _snapshot(store)
    assert 3 <= len(stored) < len(keys) and set(stored) <= keys
    log = out_dir / "sc_sdc_and_egf.log"
    lines_before = len(log.read_text().splitlines())

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = _snapshot(store)
    assert set(after) == keys
    retrained = {name for name in after if stored.get(name) != after[name]}
    assert retrained == keys - set(stored)
    progress = [line for line in log.read_text().splitlines()[lines_before:] if " runs (" in line]
    assert progress[0].split(": ")[-1].startswith(f"{len(stored) + 1}/{len(keys)} runs")


CODE_WIDTH = 78
"""Characters of a code line that the built HTML shows at 1280 px (measured on the screenshots:
longer lines are cut off at the column's edge)."""


def test_notebook_code_lines_fit_the_page():
    """Code a reader sees: code cells and code blocks (```bash, ```python, ...), not directives
    such as ```{glue:figure}, whose text wraps, nor a cell's metadata block (--- ... ---), nor a
    cell tagged ``remove-input``, which the HTML never shows."""
    long = []
    for path in sorted((ROOT / "book").glob("*.md")):
        in_code = in_metadata = hidden = False
        previous = ""
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("```{code-cell") or (
                    not in_code and line.startswith("```") and line[3:4].isalpha()):
                in_code, hidden = True, False
            elif line.startswith("```"):
                in_code = False
            elif in_code and line == "---":
                in_metadata = previous.startswith("```{code-cell")
            elif in_code and ("remove-input" in line and (in_metadata or line.startswith(":tags:"))):
                hidden = True
            elif in_code and not in_metadata and not hidden and len(line) > CODE_WIDTH:
                long.append(f"{path.name}:{number} ({len(line)})")
            previous = line
    assert not long, long
