"""The built book as a reader at 1280 px sees it: what is cut off, scrolls sideways or is shrunk.

``python -m gflib.pages _build/html`` opens every page of a built book in headless Chromium at
1280 x 900 CSS px and prints, per page, each element of the article that does not fit:

- ``table``: a table wider than the column (it scrolls sideways; ``scroll`` in px),
- ``code``: a code block or printed output whose lines are cut or scroll (``pre``),
- ``figure``: an image drawn at less than ``--min-scale`` of its own size (its text shrinks with
  it: matplotlib's 9-pt labels at scale 0.75 are 9 CSS px tall) or wider than the column.

and, from the page's text alone (:func:`noise`), what a reader should never see: this machine's
absolute paths, ``NaN``, ``-0.0``, a bare ``p = 1`` and ``assert`` lines in shown code.

It exits with 1 when anything was found. The layout checks need Debian's ``chromium``
(``apt-get install -y chromium``); :func:`check` raises ``FileNotFoundError`` without it, or
checks the text only with ``layout=False`` (``--text-only``).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html import unescape
from pathlib import Path

WIDTH = 1280
"""Window width in CSS px: a laptop screen at 100 % zoom."""

MIN_SCALE = 0.75
"""Smallest display scale of a figure: 9-pt text drawn at 0.75 is 9 CSS px."""

_MEASURE = """<script>window.addEventListener('load', () => {
  const found = [], article = document.querySelector('.bd-article') || document.body;
  const where = e => { const s = e.closest('section'); const h = s && s.querySelector('h1,h2,h3');
                       return h ? h.textContent.replace(/[#\\u00b6]/g, '').trim() : ''; };
  const column = article.getBoundingClientRect().width;
  article.querySelectorAll('table').forEach(t => {
    const box = t.parentElement;
    if (t.scrollWidth > box.clientWidth + 1)
      found.push({kind: 'table', section: where(t), width: t.scrollWidth, room: box.clientWidth,
                  text: t.innerText.slice(0, 80)});
  });
  article.querySelectorAll('pre').forEach(p => {
    if (p.scrollWidth > p.clientWidth + 1)
      found.push({kind: 'code', section: where(p), width: p.scrollWidth, room: p.clientWidth,
                  text: p.innerText.split('\\n').reduce((a, b) => b.length > a.length ? b : a, '')});
  });
  article.querySelectorAll('img').forEach(i => {
    const r = i.getBoundingClientRect();
    if (!i.naturalWidth) return;
    found.push({kind: 'figure', section: where(i), width: Math.round(r.width),
                natural: i.naturalWidth, room: Math.round(column), right: Math.round(r.right),
                text: i.getAttribute('alt') || i.getAttribute('src').slice(-40)});
  });
  const out = document.createElement('pre');
  out.id = 'gflib-pages'; out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});</script>"""


NOISE = {
    "path": re.compile(r"(?<![\w.:/~])/(?:work|home|root|tmp|Users|check)/[\w./-]+"),
    "NaN": re.compile(r"\b(?:NaN|nan)\b"),
    "-0.0": re.compile(r"(?<![\w.])-0\.0+(?![\d])"),
    "p = 1": re.compile(r"\bp = 1(?![.\d])"),
    "assert": re.compile(r"^[ \t]*assert\b.*$", re.M),
    "raw LaTeX": re.compile(r"\$(?=[^$\n]{0,40}?[\\_^{])[^$\s][^$\n]{0,40}?\$"),
}
"""What :func:`noise` looks for in a page's visible text, by name: an absolute path of the
machine that built it, a missing number shown as NaN, a negative zero, a p of 1 without the
decimals the page's other p-values have, a build check shown as code, math that MathJax never
saw (``EGF$_2$`` glued as plain Markdown text)."""


def visible_text(html: str) -> str:
    """The text a reader sees of a built page: its article (the whole body without one),
    without scripts, styles and tags, entities decoded."""
    article = re.search(r"<article\b.*?</article>", html, re.S)
    html = article.group(0) if article else html
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    html = re.sub(r"</?(?:p|div|td|th|tr|li|br|pre|table|h[1-6]|figcaption)\b[^>]*>", "\n",
                  html)
    return unescape(re.sub(r"<[^>]+>", "", html))


def noise(html: str) -> list[dict]:
    """Every match of :data:`NOISE` in ``html``'s :func:`visible_text`: dicts with ``kind``
    ``"noise"``, ``what`` (its name), ``section`` (empty) and ``text`` (the match in its line)."""
    text = visible_text(html)
    found = []
    for what, pattern in NOISE.items():
        for m in pattern.finditer(text):
            start, end = text.rfind("\n", 0, m.start()) + 1, text.find("\n", m.end())
            line = text[start:end if end >= 0 else None].strip()
            found.append({"kind": "noise", "what": what, "section": "", "text": line[:120]})
    return found


def measure(page: Path, width: int = WIDTH) -> list[dict]:
    """Every table, code block and image of ``page`` (a built HTML file) laid out at ``width``
    CSS px: dicts with ``kind``, ``section`` (the nearest heading), ``width`` and ``room`` (px),
    ``text`` (the start of a table, a code block's longest line, an image's alt text), and for
    images ``natural`` (its own width, px) and ``right`` (its right edge in the window, px)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise FileNotFoundError("chromium not found: apt-get install -y chromium")
    html = page.read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=page.parent, delete=False) as f:
        f.write(html.replace("</body>", _MEASURE + "</body>"))
        probe = Path(f.name)
    try:
        dom = subprocess.run(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom",
             probe.resolve().as_uri()],
            capture_output=True, text=True, timeout=120).stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="gflib-pages"[^>]*>(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError(f"{page}: the page did not finish loading in Chromium")
    text = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text)


def problems(items: list[dict], min_scale: float = MIN_SCALE) -> list[dict]:
    """The items of :func:`measure` a reader would notice: every table and code block it
    returned (each is wider than its box), and images drawn below ``min_scale`` of their own
    width or reaching past the window's right edge."""
    bad = []
    for item in items:
        if item["kind"] != "figure":
            bad.append(item)
        elif item["width"] < min_scale * item["natural"] or item["right"] > WIDTH:
            bad.append({**item, "scale": round(item["width"] / item["natural"], 2)})
    return bad


def pages_of(html_dir: Path) -> list[Path]:
    """The book's pages under ``html_dir`` (no search, index or theme files)."""
    skip = {"search.html", "genindex.html", "index.html"}
    return sorted(p for p in html_dir.rglob("*.html")
                  if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts)


def check(html_dir: Path, min_scale: float = MIN_SCALE, layout: bool = True,
          text: bool = True) -> dict[str, list[dict]]:
    """(``text``) :func:`noise` and (``layout``) :func:`problems` of every page of a built
    book, keyed by the page's path under ``html_dir``; pages with none are left out."""
    report = {}
    for page in pages_of(html_dir):
        bad = noise(page.read_text()) if text else []
        if layout:
            bad += problems(measure(page), min_scale)
        if bad:
            report[str(page.relative_to(html_dir))] = bad
    return report


def main(argv: list[str] | None = None, prog: str = "python -m gflib.pages") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("html_dir", type=Path, help="the built book, e.g. _build/html")
    parser.add_argument("--min-scale", type=float, default=MIN_SCALE,
                        help=f"smallest display scale of a figure (default {MIN_SCALE})")
    parser.add_argument("--text-only", action="store_true",
                        help="check the pages' text only (no Chromium, no layout)")
    args = parser.parse_args(argv)
    report = check(args.html_dir, args.min_scale, layout=not args.text_only)
    for page, bad in report.items():
        print(page)
        for b in bad:
            size = (b["what"] if b["kind"] == "noise" else
                    f"drawn {b['width']} of {b['natural']} px (scale {b['scale']})"
                    if b["kind"] == "figure" else f"{b['width']} px in {b['room']}")
            print(f"  {b['kind']:6} [{b['section'][:40]}] {size}: {b['text'][:70]!r}")
    if not report:
        print(f"{len(pages_of(args.html_dir))} pages: no noise, nothing cut off, scrolling or "
              "shrunk")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
