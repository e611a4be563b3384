"""Collect the book's MyST chapters (book/*.md) as nbval notebooks.

nbval reads .ipynb only; this collector reads each chapter through jupytext in memory, so nothing
is written into book/. It lives in the root conftest.py because a tests/conftest.py does not apply
to files under book/. Chapters run at the ``smoke`` preset (``GFLIB_PRESET``) with their results in
a temporary folder (``GFLIB_RESULTS``) unless those variables are already set.
"""
import os
import tempfile
from pathlib import Path

import jupytext
import nbval.plugin

os.environ.setdefault("GFLIB_PRESET", "smoke")
os.environ.setdefault("GFLIB_RESULTS", tempfile.mkdtemp(prefix="gflib-results-"))

BOOK = Path(__file__).parent / "book"


def is_chapter(path: Path) -> bool:
    """A book/*.md file with a kernelspec in its front matter (a notebook, not a plain page)."""
    if path.suffix != ".md" or path.parent != BOOK:
        return False
    head = path.read_text().split("\n---", 1)[0]
    return head.startswith("---") and "kernelspec" in head


class ChapterFile(nbval.plugin.IPyNbFile):
    """nbval's notebook collector, reading a MyST chapter through jupytext; outputs not compared
    (a text notebook stores none): a cell fails only when it raises, so claims are assert cells."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.compare_outputs = False

    def collect(self):
        original = nbval.plugin.nbformat.read
        nbval.plugin.nbformat.read = lambda path, as_version=4: jupytext.read(path)
        try:
            yield from super().collect()
        finally:
            nbval.plugin.nbformat.read = original


def pytest_collect_file(file_path, parent):
    if is_chapter(Path(file_path)):
        return ChapterFile.from_parent(parent, path=file_path)
