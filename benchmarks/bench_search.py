"""Benchmark of search by metadata (``Atlas.catalog`` / ``Atlas.find`` machinery).

Each dataset: one float32 ``temp`` (24,) with stats plus 30 attributes (15 float64,
15 short strings), the rows of ``bench_catalog.py``.  For each N, two sources:

* ``dict``: the mapping name -> DatasetMeta a v1 store (or a handle's pending
  datasets) searches, as ``Atlas.find`` does today;
* ``catalog``: a format v2 :class:`~atlas.catalog.Catalog` over one part held in
  memory (the source once the catalogue is wired into the store), opened anew
  for each run (its names are resolved by every run);
* ``listed``: the same catalogue after ``list_datasets`` (names resolved once),
  columns built anew for each run;
* ``repeat``: the same table for every run, as ``Atlas.find`` keeps it per
  committed catalogue (columns built by the first run, up to 8 kept).

Timed, on a fresh table each time (columns are built on first use, so nothing is
cached between runs; best of 3): ``catalog(columns=4 attributes)`` (the pandas
DataFrame) and ``find`` with 3 predicates including a stats range.  The part
write is not timed.  Issue 15 targets at N = 1 000 000: catalog 0.3 s, find 50 ms.

Usage: ``python benchmarks/bench_search.py [--only dict,catalog,listed,repeat] [N ...]`` (default 10000 100000).
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_catalog import make_rows  # noqa: E402

from atlas.catalog import Catalog, write_part  # noqa: E402
from atlas.search import select  # noqa: E402
from atlas.search.frame import catalog_frame  # noqa: E402
from atlas.search.table import CatalogTable, DictTable  # noqa: E402

COLUMNS = ["f1", "f7", "s2", "s9"]
WHERE = "s3 == 'plat10' and f5 > 100 and temp.max between 200 and 800"


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(n: int, only: str | None = None) -> None:
    rows = make_rows(n)
    datasets = dict(rows)
    _, buffers, ref = write_part(rows, "zstd", 1, secrets.token_bytes(16))
    blob = b"".join(bytes(b) for b in buffers)

    def read_range(_path: str, offset: int, length: int) -> bytes:
        return blob[offset : offset + length]

    opened = Catalog([ref], read_range)
    opened.names()  # a handle's catalogue after open + list_datasets
    shared = CatalogTable(opened)
    sources = {
        "dict": lambda: DictTable(datasets),
        "catalog": lambda: CatalogTable(Catalog([ref], read_range)),
        "listed": lambda: CatalogTable(opened),
        "repeat": lambda: shared,
    }
    for label, make in sources.items():
        if only is not None and label not in only.split(","):
            continue
        found = len(select(make(), WHERE))
        t_cat = best(lambda: catalog_frame(make(), COLUMNS, None))  # noqa: B023
        t_find = best(lambda: select(make(), WHERE))  # noqa: B023
        t_open = best(make)
        print(
            f"N={n:>8} {label:8} table {t_open * 1e3:8.1f} ms  catalog(4 columns) {t_cat * 1e3:8.1f} ms  "
            f"find(3 predicates) {t_find * 1e3:8.1f} ms  ({found} found)",
            flush=True,
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    only = None
    if args[:1] == ["--only"]:
        only, args = args[1], args[2:]
    for arg in args or ["10000", "100000"]:
        run(int(arg), only)
