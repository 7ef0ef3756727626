"""Chunk codecs: zstd (default), lz4, none; bytes on disk and read speed."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import atlas

rng = np.random.default_rng(0)
field = rng.standard_normal((100, 100, 48)).cumsum(axis=2).astype("float32")  # smooth in time

with tempfile.TemporaryDirectory() as tmp:
    for codec in ("zstd", "lz4", "none"):
        path = Path(tmp) / f"{codec}.atlas"
        with atlas.Atlas.create(path, codec=codec) as store:
            for i in range(20):
                ds = store.create_dataset(f"run_{i:02d}")
                ds.define_array("sst", "float32", ["lon", "lat", "time"], field.shape, chunk_shape=[50, 50, 24])
                ds.write_array("sst", [0, 0, 0], field + i)
        size = sum(f.stat().st_size for f in path.rglob("*.af"))
        store = atlas.Atlas.open(path, mode="r")
        t0 = time.perf_counter()
        block = store.read_array_across_stacked("sst", store.list_datasets(), [0, 0, 0], [25, 25, 12])
        took = time.perf_counter() - t0
        print(f"{codec:5s} {size / 1e6:7.2f} MB on disk; bulk read {block.shape} in {took * 1e3:6.1f} ms")
