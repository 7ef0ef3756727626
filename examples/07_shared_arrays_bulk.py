"""Shared arrays and bulk reads: one file family per array name, one call for N datasets."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import atlas

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "fleet.atlas"
    with atlas.Atlas.create(path) as store:
        for i in range(1000):
            rng = np.random.default_rng(i)
            ds = store.create_dataset(f"sensor_{i:04d}")
            for var, dtype in (("temp", "float32"), ("pressure", "float64"), ("humidity", "float32")):
                ds.define_array(var, dtype, ["time"], [24])
                ds.write_array(var, [0], rng.standard_normal(24).cumsum().astype(dtype))
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*.af"))
    print(f"1000 datasets x 3 arrays live in {len(files)} segment files: {files}")

    store = atlas.Atlas.open(path, mode="r")
    names = store.list_datasets()
    t0 = time.perf_counter()
    first_six_hours = {v: store.read_array_across_stacked(v, names, [0], [6]) for v in store.list_arrays()}
    took = time.perf_counter() - t0
    print(f"bulk read of 3 variables x {len(names)} datasets in {took * 1e3:.1f} ms:")
    for var, block in first_six_hours.items():
        print(f"  {var:9s} {block.shape} {block.dtype} mean={block.mean():.3f}")
    ragged = store.read_array_across("temp", names[:3], [20], [4])
    print("read_array_across returns a list:", [a.shape for a in ragged])
