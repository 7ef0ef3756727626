"""Streaming a dask-backed dataset larger than the write budget, then reading it lazily.

Run with ``.venv/bin/python examples/03_dask_streaming.py [MiB]`` (default 256 MiB of
data); everything happens in a temporary directory.

* The dataset is generated lazily by dask and never exists in memory as a whole.
* ``add_xr_dataset`` computes it a few blocks at a time and writes each block at its
  offset; ``max_pending_bytes`` spills staged chunks to uncommitted segment files, so
  the writer's memory stays bounded by the budget, not by the data size.
* The dask chunking becomes the on-disk chunking; irregular chunks are regularised.
* ``to_xarray`` gives back dask arrays, one task per on-disk chunk, whose graph holds
  a recipe (store path + snapshot), not an open handle: it runs under the threaded
  scheduler and under the ``processes`` scheduler alike.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

import atlas
from atlas.xarray import add_xr_dataset, to_xarray


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main(mib: int = 256) -> None:
    n_time, n_depth = mib * 2**20 // (4 * 512), 512
    temp = da.random.default_rng(0).standard_normal((n_time, n_depth), chunks=(2048, n_depth)).astype("float32")
    ds = xr.Dataset(
        {
            "TEMP": (("TIME", "DEPTH"), 15 + temp, {"units": "degC"}),
            # irregular dask chunks: stored with a regular on-disk chunk (the largest block)
            "QC": ("TIME", da.zeros(n_time, dtype="int8", chunks=(3000, 5000, n_time - 8000))),
        },
        coords={"TIME": np.arange(n_time, dtype="int64"), "DEPTH": np.arange(n_depth, dtype="float32")},
    )
    print(
        f"source: {ds.nbytes / 2**20:.0f} MiB, TEMP chunks {ds.TEMP.data.chunksize}, QC chunks {ds.QC.data.chunks[0]}"
    )

    with tempfile.TemporaryDirectory(prefix="atlas-stream-") as tmp:
        path = Path(tmp) / "stream.atlas"
        budget = 16 << 20
        before, t0 = rss_mib(), time.perf_counter()
        with atlas.Atlas.create(path, codec="lz4", max_pending_bytes=budget) as store:
            add_xr_dataset(store, ds, "run_001")
        took = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"wrote {ds.nbytes / 2**20:.0f} MiB in {took:.1f} s with a {budget >> 20} MiB budget; "
            f"RSS {before:.0f} MiB before, peak {peak:.0f} MiB (imports included)"
        )

        store = atlas.Atlas.open(path, mode="r")
        view = store.open_dataset("run_001")
        print(
            "on-disk chunks: TEMP", view.array_meta("TEMP")["chunk_shape"], "QC", view.array_meta("QC")["chunk_shape"]
        )

        back = to_xarray(store, "run_001")
        print("lazy TEMP:", back.TEMP.data)
        t0 = time.perf_counter()
        profile_mean = back.TEMP.mean("TIME").compute()
        print(f"mean over TIME (threads): {float(profile_mean.mean()):.4f} in {time.perf_counter() - t0:.1f} s")
        with dask.config.set(scheduler="processes", num_workers=2):
            t0 = time.perf_counter()
            first = back.TEMP.isel(TIME=slice(0, 8192)).max().compute()
        print(f"max of the first 8192 rows (2 processes): {float(first):.3f} in {time.perf_counter() - t0:.1f} s")
        xr.testing.assert_identical(ds.isel(TIME=slice(0, 100)).compute(), back.isel(TIME=slice(0, 100)).compute())
        print("first 100 rows identical to the source")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
