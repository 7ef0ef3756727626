"""Round trips of a bulk read on an object store with injected latency.

A store of ``--datasets`` datasets (default 1000) is written to an obstore
``MemoryStore`` in ``--flushes`` flushes (so every array name has that many
segments).  Reads go through :class:`LatencyBackend`, which adds ``--latency``
seconds (default 20 ms) to every backend call -- one call is one round trip: the
ranges of one ``get_ranges`` call are fetched in parallel -- and counts calls,
ranges (HTTP requests) and bytes.

It prints, for

* ``open``: listing the root and reading the manifest;
* ``bulk (cold)``: ``read_array_across_stacked`` of every dataset on a fresh handle
  (the segment indexes are read first: one round of concurrent requests);
* ``bulk (warm)``: the same read again (indexes cached);
* ``per dataset``: ``read_array`` dataset by dataset on a fresh handle, for the
  first ``--baseline`` datasets (default 100; the count for all of them is
  extrapolated), which is what a bulk read on object stores did before the
  coalesced path,

the number of round trips, requests and bytes and the wall time.  Nothing is
written to disk.  Run from the repository root::

    .venv/bin/python benchmarks/bench_latency.py            # about 15 s
    .venv/bin/python benchmarks/bench_latency.py --latency 0.05 --datasets 2000
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from typing import Any

import numpy as np

import atlas
from atlas.backends import resolve


class LatencyBackend:
    """Forward the backend verbs, sleeping ``latency`` seconds per call and counting."""

    def __init__(self, inner: Any, latency: float) -> None:
        self.inner = inner
        self.latency = latency
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.requests = 0
        self.bytes = 0
        self.inflight = 0
        self.max_inflight = 0
        for name in ("max_concurrency", "coalesce_bytes", "max_request_bytes"):
            setattr(self, name, getattr(inner, name))

    location = property(lambda self: self.inner.location)
    read_only = property(lambda self: self.inner.read_only)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.requests = self.bytes = self.max_inflight = 0

    def _round_trip(self, verb: str, ranges: int = 1, nbytes: int = 0) -> None:
        with self.lock:
            self.calls[verb] += 1
            self.requests += ranges
            self.bytes += nbytes
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        time.sleep(self.latency)
        with self.lock:
            self.inflight -= 1

    def get(self, path):
        self._round_trip("get")
        return self.inner.get(path)

    def get_versioned(self, path):
        self._round_trip("get_versioned")
        return self.inner.get_versioned(path)

    def get_ranges(self, path, starts, lengths):
        self._round_trip("get_ranges", len(starts), int(sum(lengths)))
        return self.inner.get_ranges(path, starts, lengths)

    def list(self, prefix=""):
        self._round_trip("list")
        return list(self.inner.list(prefix))

    def put(self, path, parts):
        return self.inner.put(path, parts)

    def commit(self, path, data, expected):
        return self.inner.commit(path, data, expected)

    def delete(self, path):
        return self.inner.delete(path)

    def close(self) -> None:
        self.inner.close()


def build(handle: Any, n: int, flushes: int, length: int, chunk: int) -> None:
    per_flush = -(-n // flushes)
    with atlas.Atlas.create(handle) as store:
        for i in range(n):
            ds = store.create_dataset(f"station_{i:05d}")
            ds.define_array("temp", "float32", ["time"], [length], chunk_shape=[chunk])
            ds.write_array("temp", [0], (np.sin(np.arange(length) / 7.0) * 10 + i % 17).astype("float32"))
            if (i + 1) % per_flush == 0:
                store.flush()


def row(label: str, wrapper: LatencyBackend, seconds: float, note: str = "") -> str:
    calls = sum(wrapper.calls.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(wrapper.calls.items()))
    return (
        f"| {label} | {calls} | {wrapper.requests} | {wrapper.bytes / 1e6:.2f} | {wrapper.max_inflight} "
        f"| {seconds * 1000:.0f} | {detail}{note} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", type=int, default=1000)
    p.add_argument("--flushes", type=int, default=4)
    p.add_argument("--latency", type=float, default=0.020, help="seconds added to every call (default 0.020)")
    p.add_argument("--length", type=int, default=96, help="cells per dataset (default 96)")
    p.add_argument("--chunk", type=int, default=24, help="cells per chunk (default 24)")
    p.add_argument("--box", type=int, nargs=2, default=(12, 36), metavar=("START", "SIZE"))
    p.add_argument("--baseline", type=int, default=100, help="datasets read one by one (default 100)")
    args = p.parse_args(argv)

    from obstore.store import MemoryStore

    handle = MemoryStore()
    t = time.perf_counter()
    build(handle, args.datasets, args.flushes, args.length, args.chunk)
    print(
        f"# {args.datasets} datasets, {args.flushes} flushes (segments per array), "
        f"{args.length} float32 cells in chunks of {args.chunk}, box {list(args.box)}; "
        f"{args.latency * 1000:.0f} ms per round trip; built in {time.perf_counter() - t:.1f} s",
        file=sys.stderr,
    )
    start, size = args.box
    chunks_per_ds = len(range(start // args.chunk, (start + size - 1) // args.chunk + 1))

    def fresh() -> tuple[atlas.Atlas, LatencyBackend]:
        wrapper = LatencyBackend(resolve(handle, read_only=True), args.latency)
        t0 = time.perf_counter()
        store = atlas.Atlas.open(wrapper, mode="r")
        return store, wrapper, time.perf_counter() - t0

    lines = [
        "| read | round trips | requests | MB | most in flight | ms | calls |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    store, wrapper, secs = fresh()
    lines.append(row("open (list + manifest)", wrapper, secs))
    names = store.list_datasets()

    wrapper.reset()
    t0 = time.perf_counter()
    bulk = store.read_array_across_stacked("temp", names, [start], [size])
    lines.append(row(f"bulk, {len(names)} datasets (cold)", wrapper, time.perf_counter() - t0))

    wrapper.reset()
    t0 = time.perf_counter()
    again = store.read_array_across_stacked("temp", names, [start], [size])
    lines.append(row(f"bulk, {len(names)} datasets (warm)", wrapper, time.perf_counter() - t0))
    assert np.array_equal(bulk, again)

    wrapper.coalesce_bytes = store._st.io.coalesce_bytes = 0
    wrapper.reset()
    t0 = time.perf_counter()
    exact = store.read_array_across_stacked("temp", names, [start], [size])
    lines.append(row(f"bulk, {len(names)} datasets (warm, coalesce_bytes=0)", wrapper, time.perf_counter() - t0))
    assert np.array_equal(bulk, exact)

    store, wrapper, _ = fresh()
    subset = names[: args.baseline]
    wrapper.reset()
    t0 = time.perf_counter()
    one_by_one = np.stack([store.open_dataset(n).read_array("temp", [start], [size]) for n in subset])
    secs = time.perf_counter() - t0
    assert np.array_equal(one_by_one, bulk[: len(subset)])
    scale = len(names) / len(subset)
    note = (
        f" -- all {len(names)}: ~{sum(wrapper.calls.values()) * scale:.0f} round trips, ~{secs * scale:.0f} s"
        if scale != 1
        else ""
    )
    lines.append(row(f"per dataset, first {len(subset)}", wrapper, secs, note))

    print("\n".join(lines))
    print(
        f"\nsegments per array: {args.flushes}; touched chunks: {len(names) * chunks_per_ds} "
        f"({chunks_per_ds} per dataset); a cold bulk read costs one round of index reads and one "
        "coalesced get_ranges call per segment, all segments in flight at once"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
