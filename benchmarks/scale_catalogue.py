"""The catalogue workload of ``bench_scale.py --catalogue``: many datasets with many attributes.

Each dataset holds one ``float32`` array ``temp`` of shape ``(24,)`` and 30
attributes (15 float64, 15 short strings); the store is built in batches of
``--flush-every`` datasets per commit.  For each N the script reports

* ``build`` / ``build cpu``: creating and committing every dataset, wall and CPU
  seconds; with ``--batched`` also ``entries``, the CPU seconds this script spends
  making the same entries, timed apart (so the library's share of the build is
  ``build cpu - entries``);
* ``open``: ``Atlas.open`` in a fresh process (warm page cache; the modules it
  imports on first use, numpy included, are imported before timing), and
  ``open + list``: ``Atlas.open`` then ``list_datasets()`` there, with the RSS the
  two added;
* ``commit attr`` / ``commit new``: a flush of one changed attribute, and of one new
  dataset, wall and CPU time (medians of 5, the sizes interleaved round by round so
  that each sees the same machine load), and their ratio between the largest and
  the smallest N;
* ``bulk read``: ``read_array_across_stacked("temp", every name)`` on a fresh handle
  (after a read of 1024 datasets that loads the kernels), per dataset;
* ``catalog`` / ``find``: the first query on a freshly opened handle,
  ``catalog(columns=4 attributes)`` and ``find`` with three predicates (an equality
  on a string attribute, a range on a float attribute and a range on the
  ``temp.max`` stats column), best of 3 fresh handles.

``--store PATH`` measures an existing store instead (built once, e.g. the million
row by hand): open and open + list as above, then ``catalog`` and ``find`` as the
first call of a fresh process, medians of 3 processes, wall and CPU time.

``--batched`` builds through :meth:`atlas.Atlas.add_datasets` (one call per
``--flush-every`` datasets) instead of the five per-dataset calls.
``--original PYTHON`` also builds each store with another implementation of the
same API (the original ``atlas-python``, installed in the environment of
``PYTHON``), in a subprocess started in an empty directory, through the per-call
path (the only one it has), and prints the build times side by side.

Only the public API is used, so ``ATLAS_BENCH_ROOT=/path/to/other/checkout python
benchmarks/scale_catalogue.py --sizes 10000`` runs the same workload against another
version of the library (to compare with "before").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CELLS = 24
FLOATS = [f"value_{k:02d}" for k in range(15)]
STRINGS = [f"label_{k:02d}" for k in range(15)]

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import atlas
import numpy, atlas.store, atlas.txn.state  # module imports are per process, not per store: not timed

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

path = sys.argv[2]
before = rss()
t0 = time.perf_counter()
s = atlas.Atlas.open(path, "r")
t1 = time.perf_counter()
names = s.list_datasets()
t2 = time.perf_counter()
after = rss()
print(json.dumps({"open": t1 - t0, "open + list": t2 - t0, "rss MiB": (after - before) / 2**20, "n": len(names)}))
"""


def _name(i: int) -> str:
    return f"profile_{i:08d}"


def _add(store: Any, i: int) -> None:
    ds = store.create_dataset(_name(i))
    ds.define_array("temp", "float32", ["depth"], [CELLS])
    ds.write_array("temp", [0], np.arange(CELLS, dtype=np.float32) + np.float32(i % 1000))
    for k, key in enumerate(FLOATS):
        ds.set_attribute(key, i * 0.25 + k)
    for k, key in enumerate(STRINGS):
        ds.set_attribute(key, f"v{(i + k) % 50}")


def _entry(i: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Dataset ``i`` in the form :meth:`atlas.Atlas.add_datasets` takes (same content as ``_add``)."""
    attrs: dict[str, Any] = {key: i * 0.25 + k for k, key in enumerate(FLOATS)}
    attrs.update((key, f"v{(i + k) % 50}") for k, key in enumerate(STRINGS))
    temp = np.arange(CELLS, dtype=np.float32) + np.float32(i % 1000)
    return _name(i), {"temp": (["depth"], temp)}, attrs


def build(atlas: Any, path: Path, n: int, flush_every: int, batched: bool = False) -> float:
    return build_times(atlas, path, n, flush_every, batched)["build"]


def build_times(atlas: Any, path: Path, n: int, flush_every: int, batched: bool = False) -> dict[str, float]:
    """Build the store of ``n`` datasets: wall and CPU seconds (``build``, ``build cpu``).

    With ``batched``, also ``entries``: the CPU seconds that making the same entries
    costs on its own (timed apart, after the build), the share of the build that is
    this script's rather than the library's.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    with atlas.Atlas.create(path) as store:
        for lo in range(0, n, flush_every):
            if batched:
                store.add_datasets(_entry(i) for i in range(lo, min(n, lo + flush_every)))
            else:
                for i in range(lo, min(n, lo + flush_every)):
                    _add(store, i)
            store.flush()
    out = {"build": time.perf_counter() - t0, "build cpu": time.process_time() - c0}
    if batched:
        # One at a time and dropped: the batches the build kept were made while
        # add_datasets pauses the cyclic collector, so no collection is timed here either.
        c0 = time.process_time()
        for i in range(n):
            _entry(i)
        out["entries"] = time.process_time() - c0
    return out


#: The queries of the issue's targets: four attribute columns, three predicates.
CATALOG_COLUMNS = [FLOATS[0], FLOATS[5], STRINGS[3], STRINGS[7]]
FIND_WHERE = f"{STRINGS[3]} == 'v10' and {FLOATS[5]} > 100 and temp.max between 200 and 800"


def queries(atlas: Any, path: Path) -> dict[str, float]:
    """``catalog`` and ``find`` as the first call on a fresh handle (best of 3 handles)."""
    out = {"catalog": float("inf"), "find": float("inf")}
    found = None
    for _ in range(3):
        with atlas.Atlas.open(path, "r") as store:
            t0 = time.perf_counter()
            frame = store.catalog(columns=CATALOG_COLUMNS)
            out["catalog"] = min(out["catalog"], time.perf_counter() - t0)
        if list(frame.columns) != CATALOG_COLUMNS:
            raise SystemExit(f"catalog returned columns {list(frame.columns)}")
        with atlas.Atlas.open(path, "r") as store:
            t0 = time.perf_counter()
            names = store.find(FIND_WHERE)
            out["find"] = min(out["find"], time.perf_counter() - t0)
        if found is not None and names != found:
            raise SystemExit("find gave different answers on the same store")
        found = names
    return out


_ORIGINAL_BUILD = r"""
import json, sys, time
from pathlib import Path
sys.path.append(sys.argv[1])  # after the directory of the original's package
import atlas
import scale_catalogue
n, flush_every = int(sys.argv[3]), int(sys.argv[4])
took = scale_catalogue.build(atlas, Path(sys.argv[2]), n, flush_every)
print(json.dumps({"build": took, "from": atlas.__file__}))
"""


def original_build(python: str, path: Path, n: int, flush_every: int) -> float:
    """Seconds the other implementation takes to build the same store through the per-call path."""
    here = str(Path(__file__).resolve().parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [python, "-c", _ORIGINAL_BUILD, here, str(path), str(n), str(flush_every)],
        capture_output=True, text=True, cwd=path.parent,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)["build"]


_QUERY_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import atlas
import numpy, pandas, atlas.store, atlas.txn.state, atlas.search.frame  # per process, not per store: not timed
import scale_catalogue as sc

with atlas.Atlas.open(sys.argv[3], "r") as store:
    t0, c0 = time.perf_counter(), time.process_time()
    got = store.catalog(columns=sc.CATALOG_COLUMNS) if sys.argv[4] == "catalog" else store.find(sc.FIND_WHERE)
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "rows": len(got)}))
"""


def fresh_queries(root: str, path: Path, repeats: int = 3) -> dict[str, float]:
    """``catalog`` and ``find`` as the first call of a fresh process (warm page cache):
    medians of ``repeats`` processes each, wall and CPU seconds."""
    import statistics

    here = str(Path(__file__).resolve().parent)
    out: dict[str, float] = {}
    for what in ("catalog", "find"):
        runs = []
        for _ in range(repeats):
            done = subprocess.run(
                [sys.executable, "-c", _QUERY_CHILD, root, here, str(path), what], capture_output=True, text=True
            )
            if done.returncode:
                raise SystemExit(done.stderr)
            runs.append(json.loads(done.stdout))
        out[what] = statistics.median(r["wall"] for r in runs)
        out[f"{what} cpu"] = statistics.median(r["cpu"] for r in runs)
    return out


def existing(path: Path, repeats: int = 3) -> int:
    """Open, list, ``catalog`` and ``find`` of an existing store, each in fresh processes
    (what a store of a million datasets, built once, is measured with)."""
    root = os.environ.get("ATLAS_BENCH_ROOT", str(Path(__file__).resolve().parent.parent))
    row = fresh_open(root, path)
    row.update(fresh_queries(root, path, repeats))
    print(f"atlas from {root}; store {path}")
    print("| " + " | ".join(row) + " |")
    print("|" + "---:|" * len(row))
    print("| " + " | ".join(f"{v:.4g}" for v in row.values()) + " |")
    return 0


def fresh_open(root: str, path: Path) -> dict[str, float]:
    """Open and list in a fresh process (the best of three runs for the times)."""
    runs = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", _CHILD, root, str(path)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr)
        runs.append(json.loads(done.stdout))
    return {k: min(r[k] for r in runs) for k in ("open", "open + list", "rss MiB")}


def commits(atlas: Any, paths: dict[int, Path], rounds: int = 5) -> dict[int, dict[str, float]]:
    """Commits of one change on every store, interleaved round by round (medians).

    Interleaving the sizes puts the same machine load on each, so the ratio between
    sizes is fair on a shared machine; the first commit of each handle (which reads
    the names it looks up) is not counted.
    """
    import statistics

    samples: dict[int, dict[str, list[float]]] = {n: {} for n in paths}
    stores = {n: atlas.Atlas.open(p) for n, p in paths.items()}
    try:
        for r in range(rounds + 1):
            for n, store in stores.items():
                store.open_dataset(_name(r * 7)).set_attribute(FLOATS[0], -1.0 - r)
                t0, c0 = time.perf_counter(), time.process_time()
                store.flush()
                t1, c1 = time.perf_counter(), time.process_time()
                _add(store, n + r)
                t2, c2 = time.perf_counter(), time.process_time()
                store.flush()
                t3, c3 = time.perf_counter(), time.process_time()
                if r:
                    for key, value in (("commit attr", t1 - t0), ("commit attr cpu", c1 - c0),
                                       ("commit new", t3 - t2), ("commit new cpu", c3 - c2)):  # fmt: skip
                        samples[n].setdefault(key, []).append(value)
    finally:
        for store in stores.values():
            store.close()
    return {n: {k: statistics.median(v) for k, v in got.items()} for n, got in samples.items()}


def bulk(atlas: Any, path: Path) -> float:
    with atlas.Atlas.open(path, "r") as store:
        names = store.list_datasets()
        store.read_array_across_stacked("temp", names[:1024])  # loads (or compiles) the read kernels first
        t0 = time.perf_counter()
        block = store.read_array_across_stacked("temp", names)
        took = time.perf_counter() - t0
    if block.shape != (len(names), CELLS):
        raise SystemExit("bulk read returned the wrong shape")
    return took


def run(
    atlas: Any, root: str, sizes: list[int], flush_every: int, tmp: Path, batched: bool
) -> dict[int, dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    for n in sizes:
        path = tmp / f"c{n}"
        row = build_times(atlas, path, n, flush_every, batched)
        row.update(fresh_open(root, path))
        row.update(queries(atlas, path))
        row["bulk read us/ds"] = 1e6 * bulk(atlas, path) / n
        meta = [p for p in path.rglob("*") if p.name.startswith("atlas.") or p.suffix == ".cat"]
        row["metadata MiB"] = sum(p.stat().st_size for p in meta) / 2**20
        rows[n] = row
        print(f"  N={n}: done", file=sys.stderr, flush=True)
    for n, got in commits(atlas, {n: tmp / f"c{n}" for n in sizes}).items():
        rows[n].update(got)
    return rows


def report(rows: dict[int, dict[str, float]]) -> None:
    entries = ["entries"] if "entries" in next(iter(rows.values()), {}) else []
    cols = ["build", "build cpu", *entries, "open", "open + list", "rss MiB", "commit attr", "commit attr cpu",
            "commit new", "commit new cpu", "catalog", "find", "bulk read us/ds", "metadata MiB"]  # fmt: skip
    print("| N | " + " | ".join(cols) + " |")
    print("|---:|" + "---:|" * len(cols))
    for n, row in rows.items():
        print(f"| {n} | " + " | ".join(f"{row[c]:.4g}" for c in cols) + " |")
    sizes = list(rows)
    if len(sizes) > 1:
        lo, hi = rows[sizes[0]], rows[sizes[-1]]
        print()
        for unit in ("", " cpu"):
            attr, new = (hi[f"commit {k}{unit}"] / lo[f"commit {k}{unit}"] for k in ("attr", "new"))
            print(f"commit ratio{unit} N={sizes[-1]} / N={sizes[0]}: one attribute {attr:.2f}, one new {new:.2f}")


def main(sizes: list[int], flush_every: int, tmp: Path, batched: bool = False, original: str | None = None) -> int:
    root = os.environ.get("ATLAS_BENCH_ROOT", str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, root)
    import atlas

    if not Path(atlas.__file__).resolve().is_relative_to(Path(root).resolve()):
        raise SystemExit(f"atlas was imported from {atlas.__file__}, not {root}: run scale_catalogue.py directly")

    print(f"atlas from {root}; datasets of one float32 ({CELLS},) array + 15 float64 + 15 string attributes; "
          f"flush every {flush_every}; build {'add_datasets' if batched else 'per call'}")  # fmt: skip
    rows = run(atlas, root, sizes, flush_every, tmp, batched)
    report(rows)
    if original:
        print()
        print(f"| N | build s (this) | build s ({original}, per call) | us/dataset this / original |")
        print("|---:|---:|---:|---:|")
        for n in sizes:
            theirs = original_build(original, tmp / "original" / f"c{n}", n, flush_every)
            ours = rows[n]["build"]
            print(f"| {n} | {ours:.3f} | {theirs:.3f} | {1e6 * ours / n:.1f} / {1e6 * theirs / n:.1f} |")
    return 0


if __name__ == "__main__":
    import argparse
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated dataset counts")
    parser.add_argument("--flush-every", type=int, default=10_000, help="datasets per commit while building")
    parser.add_argument("--batched", action="store_true", help="build with Atlas.add_datasets")
    parser.add_argument("--tmp", type=Path, default=None, help="directory for the stores (default: system temp)")
    parser.add_argument("--original", default=None, help="python of another implementation to build with too")
    parser.add_argument("--store", type=Path, default=None, help="measure this existing store only (no build)")
    args = parser.parse_args()
    if args.store is not None:
        sys.exit(existing(args.store))
    work = Path(tempfile.mkdtemp(prefix="atlas-catalogue-", dir=args.tmp))
    try:
        sizes = sorted(int(s) for s in args.sizes.split(","))
        sys.exit(main(sizes, args.flush_every, work, args.batched, args.original))
    finally:
        shutil.rmtree(work, ignore_errors=True)
