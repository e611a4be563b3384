"""The ``gflib`` command: ``gflib <command> [options]`` does what ``python -m gflib.<command>``
does, with the same options (``gflib <command> --help``)."""
from __future__ import annotations

import argparse
import sys
import textwrap

from . import __version__, bench, cost, execute, lease, pages, publish

COMMANDS = {"publish": publish, "execute": execute, "cost": cost, "bench": bench,
            "lease": lease, "pages": pages}
"""Command name -> the module whose ``main(argv, prog)`` runs it."""


def _summary(module) -> str:
    """The first sentence of ``module`` 's docstring, on one line."""
    words = []
    for line in module.__doc__.strip().splitlines():
        words.append(line.strip())
        if line.rstrip().endswith("."):
            break
    return " ".join(words)


def _parser() -> argparse.ArgumentParser:
    lines = [textwrap.fill(_summary(module), 78, initial_indent=f"  {name:<9}",
                           subsequent_indent=" " * 11) for name, module in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="gflib", description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="commands:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gflib {__version__}")
    parser.add_argument("command", choices=COMMANDS, help="what to run (see below)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``argv`` (default the process's arguments) and return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        _parser().parse_args(argv[:1])  # --help, --version, or an error naming the commands
        return 2
    result = COMMANDS[argv[0]].main(argv[1:], prog=f"gflib {argv[0]}")
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
