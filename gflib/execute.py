"""Run one chapter with parameters through papermill and keep what it wrote.

    python -m gflib.execute book/sc_sdc_and_egf.md OUT_DIR -p preset paper -p dataset cifar10 \\
        -p device cuda

papermill reads .ipynb only: the MyST chapter is converted in memory with jupytext, executed with
the parameters injected after its ``parameters`` cell, and saved as ``OUT_DIR/<chapter>.ipynb``.
Unless ``results_dir`` is given, the chapter's raw results go to ``OUT_DIR/results``.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path


def parse_value(text: str):
    """A ``-p`` value: a Python literal when it parses as one (``3``, ``None``, ``[0, 1]``), else
    the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def execute(chapter, out_dir, parameters: dict | None = None, kernel_name: str = "python3",
            progress: bool = False) -> Path:
    """Execute the MyST notebook ``chapter`` into ``out_dir`` with ``parameters``; return the
    executed notebook's path."""
    import jupytext
    import papermill

    chapter, out_dir = Path(chapter).resolve(), Path(out_dir).resolve()
    if not chapter.is_file():
        raise ValueError(f"no chapter file {chapter}")
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = dict(parameters or {})
    parameters.setdefault("results_dir", str(out_dir / "results"))
    output = out_dir / f"{chapter.stem}.ipynb"
    papermill.execute_notebook(
        jupytext.read(chapter), str(output), parameters=parameters, kernel_name=kernel_name,
        cwd=str(chapter.parent), progress_bar=progress)
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gflib.execute", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", help="a book/*.md chapter")
    parser.add_argument("out_dir", help="folder for the executed notebook and the results")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="a parameter (repeatable)")
    parser.add_argument("-k", "--kernel", default="python3")
    args = parser.parse_args(argv)
    params = {name: parse_value(value) for name, value in args.parameter}
    print(execute(args.chapter, args.out_dir, params, args.kernel, progress=True))


if __name__ == "__main__":
    main()
