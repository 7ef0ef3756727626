"""Appending time steps one at a time: the cost of a call must not grow with the array.

A ``(1000, 24)`` float32 array (one dataset of a local store, chunks of
``--chunk`` rows) grows by one row per :meth:`atlas.DatasetView.append_array`
call, ``--steps`` times (default 1000).  Two rows of figures:

* ``append``: appends only, one flush at the end;
* ``append+flush``: a commit after every append (what a station that writes as it
  measures does);
* ``append+flush, compact every 100``: the same with a ``compact()`` every 100 commits.

For each it prints the median time of an ``append_array`` call and of the flush
after it over the first and the last 100 calls.  An O(appended) append has about
the same figure at both ends, however long the array has grown.  Each commit adds
a segment to the family; the manifest lists every segment until a compaction
merges them, so a flush's own cost (mostly fsyncs) grows slowly with their number.  Run from the repository root::

    .venv/bin/python benchmarks/bench_append.py            # about 10 s
    .venv/bin/python benchmarks/bench_append.py --steps 5000 --chunk 256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atlas

WIDTH = 24
WINDOW = 100


def run(steps: int, chunk: int, flush_each: bool, compact_every: int = 0) -> tuple[list[float], list[float]]:
    """Per-call times of ``append_array`` and of the flush after it (zeros when not flushing)."""
    with tempfile.TemporaryDirectory() as tmp, atlas.Atlas.create(Path(tmp) / "s.atlas") as store:
        ds = store.create_dataset("station")
        ds.define_array("x", "float32", ["time", "depth"], [1000, WIDTH], chunk_shape=[chunk, WIDTH])
        ds.write_array("x", [0, 0], np.zeros((1000, WIDTH), "float32"))
        store.flush()
        row = np.ones((1, WIDTH), "float32")
        appends, flushes = [], []
        for k in range(steps):
            t0 = time.perf_counter()
            ds.append_array("x", row)
            t1 = time.perf_counter()
            if flush_each:
                store.flush()
                if compact_every and (k + 1) % compact_every == 0:
                    store.compact(grace_period=0)
            appends.append(t1 - t0)
            flushes.append(time.perf_counter() - t1)
        store.flush()
        assert ds.array_meta("x")["shape"] == [1000 + steps, WIDTH]
        return appends, flushes


def _us(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e6:.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=128, help="rows per chunk")
    args = parser.parse_args()
    print(
        f"| row | steps | chunk rows | append: first {WINDOW} | append: last {WINDOW} | "
        f"flush: first {WINDOW} | flush: last {WINDOW} |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = (("append", False, 0), ("append+flush", True, 0), ("append+flush, compact every 100", True, 100))
    for label, flush_each, compact_every in rows:
        appends, flushes = run(args.steps, args.chunk, flush_each, compact_every)
        if compact_every:  # the call that compacts is not a flush's cost
            flushes = [t for k, t in enumerate(flushes) if (k + 1) % compact_every]
        print(
            f"| {label} | {args.steps} | {args.chunk} | {_us(appends[:WINDOW])} | {_us(appends[-WINDOW:])} | "
            + (f"{_us(flushes[:WINDOW])} | {_us(flushes[-WINDOW:])} |" if flush_each else "- | - |")
        )


if __name__ == "__main__":
    main()
