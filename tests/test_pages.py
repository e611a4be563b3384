import shutil
from pathlib import Path

import pytest

from gflib import pages

needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no chromium")

PNG_400x100 = (  # a 400 x 100 px white PNG
    "iVBORw0KGgoAAAANSUhEUgAAAZAAAABkAQAAAACAsFvaAAAALElEQVR4nO3LoQEAAAgDIPX/n/WGBRt0eis1"
    "8VAURVEURVEURVEURVEU5b0ctMYBxw9UHGYAAAAASUVORK5CYII=")


def test_problems_keeps_what_a_reader_would_notice():
    items = [
        {"kind": "table", "width": 900, "room": 688, "section": "", "text": "wide"},
        {"kind": "code", "width": 700, "room": 684, "section": "", "text": "long line"},
        {"kind": "figure", "width": 600, "natural": 700, "right": 900, "section": "", "text": "ok"},
        {"kind": "figure", "width": 500, "natural": 700, "right": 800, "section": "", "text": "small"},
        {"kind": "figure", "width": 700, "natural": 700, "right": 1300, "section": "", "text": "off"},
    ]
    bad = pages.problems(items, min_scale=0.75)
    assert [b["text"] for b in bad] == ["wide", "long line", "small", "off"]
    assert bad[2]["scale"] == round(500 / 700, 2)


@needs_chromium
def test_measure_finds_a_wide_table_a_long_line_and_a_shrunk_figure(tmp_path):
    cells = "".join(f"<td>column number {i}</td>" for i in range(30))
    (tmp_path / "page.html").write_text(f"""<html><body>
<div class="bd-article" style="width: 600px">
<section><h2>Wide things</h2>
<div style="overflow-x: auto"><table><tr>{cells}</tr></table></div>
<pre style="overflow-x: auto">{"x" * 300}</pre>
<img alt="shrunk" style="width: 200px" src="data:image/png;base64,{PNG_400x100}">
</section>
<section><h2>Narrow things</h2>
<div><table><tr><td>1</td><td>2</td></tr></table></div>
<pre>short</pre>
<img alt="at its size" src="data:image/png;base64,{PNG_400x100}">
</section></div></body></html>""")
    items = pages.measure(tmp_path / "page.html")
    kinds = sorted((i["kind"], i["section"]) for i in items)
    assert kinds == [("code", "Wide things"), ("figure", "Narrow things"),
                     ("figure", "Wide things"), ("table", "Wide things")]
    bad = pages.problems(items)
    assert [(b["kind"], b["text"][:6]) for b in bad] == [
        ("table", "column"), ("code", "xxxxxx"), ("figure", "shrunk")]
    assert bad[2]["scale"] == 0.5 and bad[2]["natural"] == 400
    assert not list(tmp_path.glob("tmp*.html")), "the probe copy is removed"


def test_pages_of_skips_the_theme_and_search_pages(tmp_path):
    for name in ("index.html", "search.html", "genindex.html", "_static/x.html",
                 "book/intro.html", "book/results.html"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("<html></html>")
    assert [p.relative_to(tmp_path).as_posix() for p in pages.pages_of(tmp_path)] == [
        "book/intro.html", "book/results.html"]


def test_noise_finds_what_a_reader_should_never_see():
    page = """<html><head><script>var x = NaN; /work/secret</script></head><body><article>
<p>results in /work/main/results/batchnorm/book</p>
<table><tr><td>NaN</td><td>-0.0</td><td>-0.01</td><td>0.0</td></tr></table>
<p>p = 1 beside p = 0.0078, and p = 1.0 is fine, as is p = 0.12</p>
<div class="cell_input"><pre><span>assert</span> len(configs) &lt;= 800</pre></div>
<p>the assertion holds; /usr/share/datasets/fashion-mnist is an install path</p>
<p>the average EGF$_2$ of Adam; $OUT and $HOME are shell variables</p>
</article><footer>NaN outside the article</footer></body></html>"""
    found = [(n["what"], n["text"]) for n in pages.noise(page)]
    assert found == [("path", "results in /work/main/results/batchnorm/book"),
                     ("NaN", "NaN"), ("-0.0", "-0.0"),
                     ("p = 1", "p = 1 beside p = 0.0078, and p = 1.0 is fine, as is p = 0.12"),
                     ("assert", "assert len(configs) <= 800"),
                     ("raw LaTeX", "the average EGF$_2$ of Adam; $OUT and $HOME are shell "
                                   "variables")]
    assert pages.noise("<article><p>p = 0.50, -0.5, 0.05</p></article>") == []


def test_check_without_layout_reports_noise_only(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "a.html").write_text("<article><p>n/a</p></article>")
    (tmp_path / "book" / "b.html").write_text("<article><p>tau NaN</p></article>")
    report = pages.check(tmp_path, layout=False)
    assert list(report) == ["book/b.html"] and report["book/b.html"][0]["what"] == "NaN"
