"""Write and bulk-read benchmarks through the public ATLAS API.

The same code times this project (in-process) and the original implementation
(in its own virtual environment, through ``upstream_runner.py``): both expose
``Atlas.create / create_dataset / define_array / write_array / flush / close``,
``Atlas.open`` and ``read_array_across_stacked``.  Needs only numpy.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
from timing import clock, dir_bytes, log, measure, rmtree, summarize
from workloads import Workload, dataset_name, expected_box

__all__ = ["bench_store", "bulk_read", "write_store"]

#: Datasets written by the untimed warm-up write (JIT compilation, imports, caches).
WARMUP_DATASETS = 3


def write_store(atlas: ModuleType, path: Path, wl: Workload, data: list[dict[str, np.ndarray]], n: int) -> float:
    """Create a store at ``path`` holding the first ``n`` datasets; returns the seconds taken."""
    ndim = len(wl.shape)
    origin = [0] * ndim
    shape, chunks, dims = list(wl.shape), list(wl.chunks), list(wl.dims)
    t0 = clock()
    store = atlas.Atlas.create(str(path), codec="zstd")
    for i in range(n):
        ds = store.create_dataset(dataset_name(i))
        arrays = data[i]
        for var in wl.variables:
            ds.define_array(var.name, var.dtype, dims, shape, chunk_shape=chunks)
            ds.write_array(var.name, origin, arrays[var.name])
    store.flush()
    store.close()
    return clock() - t0


def bulk_read(store: object, wl: Workload, names: list[str]) -> dict[str, np.ndarray]:
    """The box of every variable from every dataset: one ``read_array_across_stacked`` per variable."""
    start, box = list(wl.start), list(wl.box)
    return {v: store.read_array_across_stacked(v, names, start=start, shape=box) for v in wl.var_names}


def check(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    for v, arr in want.items():
        if got[v].shape != arr.shape or got[v].dtype != arr.dtype or not np.array_equal(got[v], arr):
            raise AssertionError(f"{what}: variable {v} differs from the written data")


def bench_store(
    atlas: ModuleType,
    wl: Workload,
    data: list[dict[str, np.ndarray]],
    n: int,
    tmp: Path,
    read_repeats: int,
    write_repeats: int,
    close_readers: bool,
    label: str,
    keep: bool = False,
) -> dict:
    """Write ``n`` datasets (``write_repeats`` times, each into a fresh store), then time
    ``Atlas.open``, open + first bulk read on a fresh handle, and the bulk read on a
    warm handle.  The data is checked against what was written.  With ``keep`` the
    last store stays on disk and its path is returned under ``"path"``."""
    want = expected_box(wl, data, n)
    names = [dataset_name(i) for i in range(n)]

    def one_write(r: int) -> float:
        path = tmp / f"{label}-{wl.name}-{n}-w{r}"
        rmtree(path)
        secs = write_store(atlas, path, wl, data, WARMUP_DATASETS if r < 0 else n)
        if r < write_repeats - 1:
            rmtree(path)
        return secs

    log(f"  [{label}] {wl.name}-{n}: write x{write_repeats}")
    write = measure(one_write, write_repeats, warmup=1)
    path = tmp / f"{label}-{wl.name}-{n}-w{write_repeats - 1}"
    nbytes = dir_bytes(path)

    def drop(store: object) -> None:
        if close_readers:
            store.close()

    log(f"  [{label}] {wl.name}-{n}: open+read / read x{read_repeats}")

    opens: list[float] = []
    first_reads: list[float] = []

    def one_cold(r: int) -> float:
        t0 = clock()
        store = atlas.Atlas.open(str(path))
        t1 = clock()
        got = bulk_read(store, wl, names)
        t2 = clock()
        if r >= 0:
            opens.append(t1 - t0)
            first_reads.append(t2 - t1)
        if r == 0:
            check(got, want, f"{label} {wl.name}-{n} open+read")
        drop(store)
        return t2 - t0

    cold = measure(one_cold, read_repeats)
    first = summarize(first_reads)

    store = atlas.Atlas.open(str(path))
    check(bulk_read(store, wl, names), want, f"{label} {wl.name}-{n} read")

    def one_read(r: int) -> float:
        t0 = clock()
        bulk_read(store, wl, names)
        return clock() - t0

    read = measure(one_read, read_repeats)
    drop(store)
    out = {"write": write, "bytes": nbytes, "open": summarize(opens), "open_read": cold, "first_read": first}
    out["read"] = read
    if keep:
        out["path"] = str(path)
    else:
        rmtree(path)
    return out
