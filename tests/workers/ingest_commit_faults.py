"""Picklable wrappers that make an ``atlas.ingest`` commit task fail on its worker (test_ingest_distributed.py)."""

from __future__ import annotations

import os


def die_once_then(marker: str, fn, arg):
    """Kill the worker process the first time (``marker`` does not exist yet); then ``fn(arg)``."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    return fn(arg)


def run_twice(fn, arg):
    """``fn(arg)`` twice, the second result returned: a worker that wrote its file and died, then the rerun."""
    fn(arg)
    return fn(arg)
