"""Stats: row_count, null_count (fill, NaN, never written), min/max of the valid cells."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

import atlas

with tempfile.TemporaryDirectory() as tmp:
    store = atlas.Atlas.create(Path(tmp) / "stats.atlas")
    ds = store.create_dataset("d")
    ds.define_array("temp", "float64", ["n"], [8], chunk_shape=[4], fill_value=-999.0)
    ds.write_array("temp", [0], np.array([1.5, np.nan, -999.0, 7.25, 3.0]))
    ds.define_array("count", "int32", ["n"], [6], chunk_shape=[3])  # no fill value
    ds.write_array("count", [0], np.array([0, 4], dtype="int32"))  # a written 0 is data
    ds.define_array("label", "string", ["n"], [3])
    ds.write_array("label", [0], np.array(["b", "a", "c"], dtype=object))
    print("before flush:", ds.array_stats("temp"))  # stats include pending writes
    store.flush()
    for name in ("temp", "count", "label"):
        print(f"{name:6s}", ds.array_stats(name))
    store.close()
