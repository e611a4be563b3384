"""``python -m gflib``: the ``gflib`` command (:mod:`gflib.cli`)."""
import sys

from .cli import main

sys.exit(main())
