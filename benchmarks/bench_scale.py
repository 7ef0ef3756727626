"""Scale benchmark: stores of many small datasets, and how each operation grows with N.

For every N (default 1 000, 10 000 and 100 000) the script builds a store of N
sensors-like datasets (one ``float32`` array ``temp`` of shape ``(24,)`` plus two
attributes each), committing every ``--flush-every`` datasets, then times

* ``write``: creating the datasets, defining and writing the arrays (no flush),
* ``flush``: every commit of the build together,
* ``open``: ``Atlas.open`` of the finished store (reads and decodes the manifest),
* ``list``: ``list_datasets()``,
* ``bulk read``: ``read_array_across_stacked("temp", all names)``, checked against
  the values written.

and prints a table of seconds and microseconds per dataset, then the ratio of the
per-dataset cost at each N to the cost at the smallest N.  A ratio near 1 means the
operation is linear in N; the check fails (exit status 1) when a ratio exceeds
``--max-ratio``.  Operations that are inherently ``N log N`` (sorting names) stay
well within the default.

The build's flushes write one catalogue part of the batch's datasets each (plus the
merges of parts, a logarithmic number of rewrites per dataset), so they are linear
too; the table reports them separately and ``--check-flush`` includes them in the
check.

``--catalogue`` runs instead the workload of many attributes per dataset
(``scale_catalogue.py``: open in a fresh process, open + list, RSS added, commits of
one change, first ``catalog`` and ``find`` on a fresh handle, bulk read); default
sizes 2 000 and 10 000, ``--flush-every`` 10 000; ``--batched`` builds with
``Atlas.add_datasets``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scale.py                       # 1k, 10k, 100k
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000,10000 --repeats 3
    .venv/bin/python benchmarks/bench_scale.py --catalogue --sizes 10000,100000
    .venv/bin/python benchmarks/bench_scale.py --catalogue --batched --sizes 1000000   # by hand
    .venv/bin/python benchmarks/bench_scale.py --catalogue --store PATH   # queries of a store built once

Every store lives in a temporary directory under ``--tmp`` that is deleted at the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atlas

#: Cells of the one array of every dataset.
CELLS = 24
ARRAY = "temp"
#: Timed operations that must be linear in N.
LINEAR_OPS = ("write", "open", "list", "bulk read")


def dataset_name(i: int) -> str:
    """The name of dataset ``i`` (zero padded, so sorting keeps the build order)."""
    return f"station_{i:07d}"


def dataset_values(i: int) -> np.ndarray:
    """The values written to dataset ``i`` (cheap to regenerate for checking)."""
    return (np.arange(CELLS, dtype=np.float32) + np.float32(i % 100_000)) * np.float32(0.5)


def build_store(path: Path, n: int, flush_every: int) -> dict[str, float]:
    """Create a store of ``n`` datasets at ``path``; return the write and flush seconds."""
    write_s = flush_s = 0.0
    store = atlas.Atlas.create(path)
    try:
        base = np.arange(CELLS, dtype=np.float32)
        for lo in range(0, n, flush_every):
            hi = min(n, lo + flush_every)
            t0 = time.perf_counter()
            for i in range(lo, hi):
                ds = store.create_dataset(dataset_name(i))
                ds.define_array(ARRAY, "float32", ["time"], [CELLS])
                ds.write_array(ARRAY, [0], (base + np.float32(i % 100_000)) * np.float32(0.5))
                ds.set_attribute("station_id", i, dtype="int32")
                ds.set_attribute("site", f"site-{i % 97}")
            t1 = time.perf_counter()
            store.flush()
            t2 = time.perf_counter()
            write_s += t1 - t0
            flush_s += t2 - t1
    finally:
        store.close()
    return {"write": write_s, "flush": flush_s}


def expected_block(n: int) -> np.ndarray:
    """What a bulk read of all ``n`` datasets must return."""
    offsets = (np.arange(n) % 100_000).astype(np.float32)[:, None]
    return (np.arange(CELLS, dtype=np.float32)[None, :] + offsets) * np.float32(0.5)


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def measure(path: Path, n: int, repeats: int) -> dict[str, float]:
    """Time open, list and bulk read of the store at ``path`` (best of ``repeats``)."""

    def open_close() -> None:
        atlas.Atlas.open(path, "r").close()

    out: dict[str, float] = {}
    out["open"], _ = _best(open_close, repeats)
    store = atlas.Atlas.open(path, "r")
    try:
        out["list"], names = _best(store.list_datasets, repeats)
        if len(names) != n or names[0] != dataset_name(0) or names[-1] != dataset_name(n - 1):
            raise SystemExit(f"list_datasets returned {len(names)} names, expected {n}")

        def bulk() -> np.ndarray:
            return store.read_array_across_stacked(ARRAY, names)

        out["bulk read"], block = _best(bulk, repeats)
        if block.shape != (n, CELLS) or not np.array_equal(block, expected_block(n)):
            raise SystemExit(f"bulk read of {n} datasets returned wrong values")
        # Bulk read on a fresh handle: includes building the chunk index once.
        cold = atlas.Atlas.open(path, "r")
        try:
            t0 = time.perf_counter()
            cold.read_array_across_stacked(ARRAY, names)
            out["bulk read (cold)"] = time.perf_counter() - t0
        finally:
            cold.close()
    finally:
        store.close()
    return out


def _dir_bytes(path: Path) -> tuple[int, int]:
    manifest = sum(p.stat().st_size for p in path.glob("atlas.*"))
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return manifest, total


def _warm_up(tmp: Path) -> None:
    """Compile the numba kernels once so the smallest N does not pay for it."""
    build_store(tmp / "warm", 50, 50)
    measure(tmp / "warm", 50, 1)
    shutil.rmtree(tmp / "warm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated dataset counts (default 1000,10000,100000)")
    parser.add_argument("--flush-every", type=int, default=None, help="datasets per commit while building")
    parser.add_argument("--catalogue", action="store_true", help="the many-attributes workload (scale_catalogue.py)")
    parser.add_argument("--batched", action="store_true", help="with --catalogue: build with Atlas.add_datasets")
    parser.add_argument("--original", default=None, help="with --catalogue: python of the original, to build with too")
    parser.add_argument("--store", default=None, help="with --catalogue: measure this existing store only (no build)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of open/list/read (best kept)")
    parser.add_argument("--max-ratio", type=float, default=2.0, help="largest accepted per-dataset cost ratio")
    parser.add_argument("--check-flush", action="store_true", help="include the build's flushes in the check")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="parent of the temporary directory")
    args = parser.parse_args(argv)
    if args.catalogue:
        import scale_catalogue

        if args.store is not None:
            return scale_catalogue.existing(Path(args.store), args.repeats)
        sizes = sorted(int(s) for s in (args.sizes or "2000,10000").split(","))
        tmp = Path(tempfile.mkdtemp(prefix="atlas-catalogue-", dir=args.tmp))
        try:
            return scale_catalogue.main(sizes, args.flush_every or 10_000, tmp, args.batched, args.original)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    args.flush_every = args.flush_every or 5000
    sizes = sorted(int(s) for s in (args.sizes or "1000,10000,100000").split(","))

    print(f"atlas {atlas.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(f"datasets of one float32 ({CELLS},) array + 2 attributes; flush every {args.flush_every}")
    tmp = Path(tempfile.mkdtemp(prefix="atlas-scale-", dir=args.tmp))
    rows: dict[int, dict[str, float]] = {}
    try:
        _warm_up(tmp)
        for n in sizes:
            path = tmp / f"s{n}"
            row = build_store(path, n, args.flush_every)
            row.update(measure(path, n, args.repeats))
            row["manifest MiB"], row["store MiB"] = (b / 2**20 for b in _dir_bytes(path))
            rows[n] = row
            shutil.rmtree(path)
            print(f"  N={n}: done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ops = ["write", "flush", "open", "list", "bulk read", "bulk read (cold)"]
    print()
    print("| N | " + " | ".join(f"{op} s" for op in ops) + " | manifest MiB | store MiB |")
    print("|---:|" + "---:|" * (len(ops) + 2))
    for n, row in rows.items():
        cells = " | ".join(f"{row[op]:.4f}" for op in ops)
        print(f"| {n} | {cells} | {row['manifest MiB']:.1f} | {row['store MiB']:.1f} |")
    print()
    print("microseconds per dataset")
    print("| N | " + " | ".join(ops) + " |")
    print("|---:|" + "---:|" * len(ops))
    for n, row in rows.items():
        print(f"| {n} | " + " | ".join(f"{1e6 * row[op] / n:.2f}" for op in ops) + " |")

    checked = [*LINEAR_OPS, "bulk read (cold)"] + (["flush"] if args.check_flush else [])
    n0 = sizes[0]
    print()
    print(f"per-dataset cost relative to N={n0} (1.0 = linear; check: <= {args.max_ratio} for {', '.join(checked)})")
    print("| N | " + " | ".join(ops) + " |")
    print("|---:|" + "---:|" * len(ops))
    failures = []
    for n, row in rows.items():
        ratios = {op: (row[op] / n) / (rows[n0][op] / n0) for op in ops}
        print(f"| {n} | " + " | ".join(f"{ratios[op]:.2f}" for op in ops) + " |")
        failures += [f"{op} at N={n}: {ratios[op]:.2f}" for op in checked if ratios[op] > args.max_ratio]
    print()
    if failures:
        print("NOT LINEAR: " + "; ".join(failures))
        return 1
    print("linear: every checked per-dataset cost is within the bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
