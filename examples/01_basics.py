"""Basics: create a store, define and write arrays, read them back, commit with `with`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

import atlas

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "basics.atlas"
    with atlas.Atlas.create(path) as store:
        ds = store.create_dataset("station_A")
        ds.define_array("time", "timestamp_ns", ["time"], [4])
        ds.define_array("temp", "float32", ["time"], [4], fill_value=float("nan"))
        ds.write_array(
            "time", [0], np.arange("2024-01-01", "2024-01-05", dtype="datetime64[D]").astype("datetime64[ns]")
        )
        ds.write_array("temp", [0], np.array([4.5, 5.0], dtype="float32"))  # cells 2..3 stay unwritten
        ds.set_attribute("site", "Lighthouse A")
    # leaving the block committed everything; reopen read-only
    store = atlas.Atlas.open(path, mode="r")
    ds = store.open_dataset("station_A")
    print(store)
    print("arrays:", ds.list_arrays())
    print("time:", ds.read_array("time"))
    print("temp:", ds.read_array("temp"))
    print("temp[1:3]:", ds.read_array("temp", start=[1], shape=[2]))
    print("meta:", ds.array_meta("temp"))
    print("attributes:", ds.attributes())
    try:
        ds.read_array("temp", start=[3], shape=[5])
    except atlas.errors.SelectionError as exc:  # no silent clamping
        print("out of bounds:", exc)
