"""``python -m atlas``: the ``atlas`` command line (see :mod:`atlas.cli`)."""

from __future__ import annotations

import sys

from atlas.cli import main

if __name__ == "__main__":
    sys.exit(main())
