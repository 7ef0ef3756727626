"""The writer that tests/test_append_crash.py kills with SIGKILL during append commits.

Array ``x`` (float64, ``(n, 24)``, chunks of 16 rows) of dataset ``d`` grows by
``ROWS`` rows per commit; row ``i`` holds ``i`` in every cell, so the content of any
length is known.  Before each commit it logs ``about to commit N`` (the new length,
fsynced) and after it ``committed N``.

Usage: ``python append_writer.py STORE LOG``
"""

from __future__ import annotations

import os
import sys

import numpy as np

import atlas

ROWS = 5
WIDTH = 24


def log(path: str, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def main() -> None:
    store_path, log_path = sys.argv[1], sys.argv[2]
    store = atlas.Atlas.open(store_path)
    ds = store["d"]
    n = ds.array_meta("x")["shape"][0]
    log(log_path, f"start {n}")
    while True:
        rows = np.repeat(np.arange(n, n + ROWS, dtype="float64")[:, None], WIDTH, axis=1)
        ds.append_array("x", rows)
        n += ROWS
        log(log_path, f"about to commit {n}")
        store.flush()
        log(log_path, f"committed {n}")


if __name__ == "__main__":
    main()
