"""Run one chapter with parameters through papermill and keep what it wrote.

    python -m gflib.execute sc_sdc_and_egf OUT_DIR -p preset paper -p dataset cifar10 \\
        -p device cuda

``chapter`` is a chapter's name (its notebook ``<book>/<name>.md``, ``--book`` default
``book``: run from the repository's root; ``python -m gflib.execute --help`` lists them with their
parameters) or the path of a notebook. papermill reads .ipynb only: the MyST chapter
is converted in memory with jupytext, executed with the parameters injected after its
``parameters`` cell, and saved as ``OUT_DIR/<chapter>.ipynb``. Unless ``results_dir`` is given,
the chapter's raw results go to ``OUT_DIR/results``. A parameter the chapter does not have is an
error (papermill itself only warns).

Progress: papermill's bar of the notebook's cells, and the bar of the chapter's sweep (runs
done/total, rate, ETA; tqdm's text bar, forwarded from the kernel's stderr to this console; it is
also kept in the notebook's output); and ``OUT_DIR/<chapter>.log``, one line per stored group of
runs (timestamp, runs done/total, elapsed, rate, ETA), which ``tail -f`` can follow.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from . import chapters, presets
from .progress import BAR_ENV, LOG_ENV, ProgressLog, environment

BOOK = Path("book")
"""The book's folder of notebooks, from the repository's root."""


def parse_value(text: str):
    """A ``-p`` value: a Python literal when it parses as one (``3``, ``None``, ``[0, 1]``), else
    the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def chapter_path(chapter, book=BOOK) -> Path:
    """The notebook of ``chapter``: a chapter name (its ``<book>/<NAME>.md``) or a path to a
    ``.md`` file; ValueError when there is no such file."""
    path = Path(chapter)
    if path.suffix != ".md":
        path = Path(book) / f"{chapters.get(str(chapter)).NAME}.md"
    if not path.is_file():
        raise ValueError(f"no notebook {path} for chapter {chapter!r}: give the path of its .md "
                         "file, or --book the folder holding it")
    return path.resolve()


def parameters_of(chapter, book=BOOK) -> dict:
    """``{name: source line}`` of the chapter's ``parameters`` cell, in order."""
    import jupytext

    nb = jupytext.read(chapter_path(chapter, book))
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError(f"{chapter} has no cell tagged 'parameters'")
    out = {}
    lines = cells[0].source.splitlines()
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = lines[node.lineno - 1].strip()
    return out


def execute(chapter, out_dir, parameters: dict | None = None, kernel_name: str = "python3",
            progress: bool = False, book=BOOK) -> Path:
    """Execute ``chapter`` (a name or a ``book/*.md`` path) into ``out_dir`` with
    ``parameters``; return the executed notebook's path. Unknown parameters raise ValueError
    before anything runs. The kernel's sweeps log their progress to ``out_dir/<chapter>.log``
    and draw text bars on stderr, which ``progress`` forwards to this process's stderr, beside
    papermill's bar of the cells."""
    import jupytext
    import papermill

    path = chapter_path(chapter, book)
    parameters = dict(parameters or {})
    known = parameters_of(path)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"{path.stem} has no parameter {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(known)}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters.setdefault("results_dir", str(out_dir / "results"))
    output = out_dir / f"{path.stem}.ipynb"
    log = ProgressLog(out_dir / f"{path.stem}.log", desc=path.stem)
    log.note(f"execute {path.name} into {output} with {parameters}")
    try:
        with environment(**{LOG_ENV: str(log.path), BAR_ENV: "text"}):
            papermill.execute_notebook(
                jupytext.read(path), str(output), parameters=parameters, kernel_name=kernel_name,
                cwd=str(path.parent), progress_bar=progress,
                stderr_file=sys.stderr if progress else None)
    except BaseException as error:
        log.note(f"stopped after {log.elapsed():.0f} s: {type(error).__name__}: {error}")
        raise
    log.note(f"done in {log.elapsed():.0f} s: {output}")
    return output


def _epilog(book=BOOK) -> str:
    lines = ["chapters and their parameters (-p NAME VALUE; defaults as in the notebook):"]
    for name in chapters.names():
        lines.append(f"  {name}")
        try:
            lines += [f"      {line}" for line in parameters_of(name, book).values()]
        except ValueError as error:
            lines.append(f"      ({error})")
    lines.append("presets:")
    lines += [f"  {p.name:<8}{p.note}" for p in presets.PRESETS.values()]
    return "\n".join(lines)


def main(argv=None, prog: str = "python -m gflib.execute"):
    book = argparse.ArgumentParser(add_help=False)
    book.add_argument("--book", default=str(BOOK))
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     epilog=_epilog(book.parse_known_args(argv)[0].book),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", help="a chapter's name or its book/*.md file")
    parser.add_argument("out_dir", help="folder for the executed notebook and the results")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="a chapter parameter (repeatable); VALUE is read as a Python "
                             "literal when it is one")
    parser.add_argument("-k", "--kernel", default="python3",
                        help="Jupyter kernel to run the chapter in (default python3)")
    parser.add_argument("--book", default=str(BOOK),
                        help="the folder of the chapters' notebooks (default: book)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars on the console (the log file is still written)")
    args = parser.parse_args(argv)
    params = {name: parse_value(value) for name, value in args.parameter}
    print(execute(args.chapter, args.out_dir, params, args.kernel, progress=not args.quiet,
                  book=args.book))


if __name__ == "__main__":
    main()
