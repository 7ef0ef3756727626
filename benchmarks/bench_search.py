"""Benchmark of search by metadata (``Atlas.catalog`` / ``Atlas.find`` machinery).

Each dataset: one float32 ``temp`` (24,) with stats plus 30 attributes (15 float64,
15 short strings), the rows of ``bench_catalog.py``.  For each N, the sources:

* ``dict``: the mapping name -> DatasetMeta a v1 store (or a handle's pending
  datasets) searches;
* ``catalog``: a format v2 :class:`~atlas.catalog.Catalog` over one part file,
  opened anew for each run: the first query after ``Atlas.open`` (its names,
  columns and everything else are read by the run);
* ``listed``: the same catalogue after ``list_datasets`` (names resolved once),
  columns built anew for each run;
* ``repeat``: the same table for every run, as ``Atlas.find`` keeps it per
  committed catalogue (columns built by the first run, up to 8 kept);
* ``2 parts``: as ``catalog`` with a newer part on top (a later commit that
  replaced 1 000 datasets, deleted every tenth of them and added 100);
* ``pending``: as ``catalog`` under a handle's uncommitted changes (one dataset
  replaced, one deleted, one added), as ``Atlas.find`` sees them;
* ``batched``: the same datasets in the two parts a batched build leaves (the
  first 86 % merged in one part, the last 14 % in a newer one, no name in both),
  opened anew for each run; and ``batched+p``: those under the pending changes.

``find`` is what ``Atlas.find`` runs (``atlas.search.find_names``: a catalogue of
several parts, or with pending changes, is searched one part at a time where that
gives the same answer; a checkout from before it selects rows of the merged table).

Timed for each: ``list`` (a fresh catalogue's ``names()``, what ``list_datasets``
costs after ``Atlas.open``; fresh sources only), ``catalog(columns=4
attributes)`` (the pandas DataFrame) and ``find`` with 3 predicates including a
stats range (the matching names as a list).  The part write is not timed.
Figures are the median of ``--repeat`` runs (default 5) of the process CPU time
(``time.process_time``) and the best wall time.  Issue 15 targets at
N = 1 000 000: catalog 0.3 s, find 50 ms, open + list 0.5 s.

The part of each N is written once into ``--dir`` (default a temporary
directory) and reused by later runs, so two checkouts can be timed on the same
file: ``ATLAS_BENCH_ROOT=/path/to/other/checkout python benchmarks/bench_search.py
--dir /tmp/parts 1000000`` runs this script against the other checkout's library.

Usage: ``python benchmarks/bench_search.py [--dir DIR] [--only SOURCE,...] [--repeat K] [N ...]``
(default 10000 100000; sources: dict, catalog, listed, repeat, 2 parts, pending,
batched, batched+p; default all but dict).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import mmap
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("ATLAS_BENCH_ROOT", BENCH.parent)).resolve()
sys.path.insert(0, str(ROOT))

# The library first: bench_catalog puts this checkout first on the path when imported.
from atlas.catalog import Catalog, PartRef, write_part  # noqa: E402
from atlas.search import select  # noqa: E402

try:
    from atlas.search import find_names
except ImportError:  # a checkout from before the search by part
    find_names = None  # type: ignore[assignment]
from atlas.search.frame import catalog_frame  # noqa: E402
from atlas.search.table import DictTable  # noqa: E402

try:
    from atlas.search.catalog_table import CatalogTable
    from atlas.search.overlay import OverlayTable
except ImportError:  # a checkout from before the table module was split
    from atlas.search.table import CatalogTable, OverlayTable  # type: ignore[attr-defined,no-redef]

sys.path.insert(0, str(BENCH))
from bench_catalog import make_rows  # noqa: E402

COLUMNS = ["f1", "f7", "s2", "s9"]
WHERE = "s3 == 'plat10' and f5 > 100 and temp.max between 200 and 800"


def timed(fn, repeat: int) -> tuple[float, float]:
    """``(median CPU seconds, best wall seconds)`` of ``repeat`` calls of ``fn``."""
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), min(wall)


def newer_rows(n: int) -> list:
    """A later commit's part over ``n`` rows: 1 000 datasets replaced (every 10th deleted), 100 added."""
    rows = [(name, None if i % 10 == 0 else meta) for i, (name, meta) in enumerate(make_rows(min(n, 1000)))]
    added = [(f"profile_{n + i:07d}", meta) for i, (_, meta) in enumerate(make_rows(100))]
    return rows + added


def part_file(n: int, directory: Path, newer: bool = False) -> tuple[Path, PartRef]:
    """The part of ``n`` rows in ``directory`` (or the newer part over it), written on first use."""
    stem = f"search-{n}" + ("-newer" if newer else "")
    path, meta = directory / f"{stem}.cat", directory / f"{stem}.json"
    if not (path.exists() and meta.exists()):
        rows = newer_rows(n) if newer else make_rows(n)
        _, buffers, ref = write_part(rows, "zstd", 2 if newer else 1, secrets.token_bytes(16))
        with open(path, "wb") as fh:
            for buf in buffers:
                fh.write(bytes(buf))
        meta.write_text(json.dumps(dataclasses.asdict(ref)))
    return path, PartRef(**json.loads(meta.read_text()))


#: The share of the datasets in the older of the two parts of ``batched``.
BATCHED_SHARE = 0.86


def batched_files(n: int, directory: Path) -> list[tuple[Path, PartRef]]:
    """The two parts a batched build of ``n`` datasets leaves, written on first use."""
    cut = int(n * BATCHED_SHARE)
    out, every = [], None
    for k, stem in enumerate((f"search-{n}-batched-old", f"search-{n}-batched-new")):
        path, meta = directory / f"{stem}.cat", directory / f"{stem}.json"
        if not (path.exists() and meta.exists()):
            every = make_rows(n) if every is None else every
            rows = every[:cut] if k == 0 else every[cut:]
            _, buffers, ref = write_part(rows, "zstd", k + 1, secrets.token_bytes(16))
            with open(path, "wb") as fh:
                for buf in buffers:
                    fh.write(bytes(buf))
            meta.write_text(json.dumps(dataclasses.asdict(ref)))
        out.append((path, PartRef(**json.loads(meta.read_text()))))
    return out


def run(n: int, directory: Path, only: set[str] | None, repeat: int) -> None:
    refs, files = [], {}
    for newer in (False, True):
        path, part = part_file(n, directory, newer)
        fh = open(path, "rb")  # noqa: SIM115 - kept open for the mmap's lifetime
        files[part.path] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        refs.append(part)
    ref = refs[0]
    batched = []
    if only is None or only & {"batched", "batched+p"}:
        for path, part in batched_files(n, directory):
            fh = open(path, "rb")  # noqa: SIM115 - kept open for the mmap's lifetime
            files[part.path] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            batched.append(part)

    def read_range(path: str, offset: int, length: int) -> bytes:
        return files[path][offset : offset + length]

    changed = make_rows(2)
    pending = {changed[0][0]: changed[1][1], f"profile_{n // 2:07d}": None, "zz-new": changed[0][1]}
    opened = Catalog([ref], read_range)
    opened.names()  # a handle's catalogue after open + list_datasets
    shared = CatalogTable(opened)
    sources = {
        "catalog": lambda: CatalogTable(Catalog([ref], read_range)),
        "listed": lambda: CatalogTable(opened),
        "repeat": lambda: shared,
        "2 parts": lambda: CatalogTable(Catalog(refs, read_range)),
        "pending": lambda: OverlayTable(CatalogTable(Catalog([ref], read_range)), pending),
        "batched": lambda: CatalogTable(Catalog(batched, read_range)),
        "batched+p": lambda: OverlayTable(CatalogTable(Catalog(batched, read_range)), pending),
    }
    if only is not None and "dict" in only:
        datasets = dict(make_rows(n))
        sources = {"dict": lambda: DictTable(datasets), **sources}
    for label, make in sources.items():
        if only is not None and label not in only:
            continue
        found = len(select(make(), WHERE))
        listing = ""
        if label in ("catalog", "2 parts", "batched"):
            parts = {"catalog": [ref], "2 parts": refs, "batched": batched}[label]
            cpu, wall = timed(lambda: Catalog(parts, read_range).names(), repeat)  # noqa: B023
            listing = f"list {cpu * 1e3:7.1f} ms cpu ({wall * 1e3:7.1f} wall)  "
        cat_cpu, cat_wall = timed(lambda: catalog_frame(make(), COLUMNS, None), repeat)  # noqa: B023

        def find() -> list[str]:  # what Atlas.find does
            table = make()  # noqa: B023
            if find_names is not None:
                return find_names(table, WHERE)
            rows = select(table, WHERE)
            names_at = getattr(table, "names_at", None)  # only the result's names (absent before)
            return names_at(rows) if names_at is not None else [table.names[i] for i in rows]

        if len(find()) != found:
            raise SystemExit(f"{label}: find returned {len(find())} names, the merged table {found}")
        find_cpu, find_wall = timed(find, repeat)
        print(
            f"N={n:>8} {label:8} {listing}catalog(4 columns) {cat_cpu * 1e3:7.1f} ms cpu ({cat_wall * 1e3:7.1f} wall)  "
            f"find(3 predicates) {find_cpu * 1e3:7.1f} ms cpu ({find_wall * 1e3:7.1f} wall)  ({found} found)",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--dir", type=Path, default=None, help="where the part files are written and reused")
    parser.add_argument("--only", default=None, help="comma-separated sources (default: all but dict)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chosen = None if args.only is None else set(args.only.split(","))
    print(f"library: {Path(sys.modules['atlas'].__file__).parent}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            run(size, args.dir or Path(tmp), chosen, args.repeat)
