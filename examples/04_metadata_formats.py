"""Manifest formats: JSON or msgpack, uncompressed or zstd/lz4; detected on open."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

import atlas

with tempfile.TemporaryDirectory() as tmp:
    for meta_format in ("json", "msgpack"):
        for meta_compression in ("none", "zstd", "lz4"):
            path = Path(tmp) / f"{meta_format}-{meta_compression}.atlas"
            with atlas.Atlas.create(path, meta_format=meta_format, meta_compression=meta_compression) as store:
                for i in range(200):
                    ds = store.create_dataset(f"profile_{i:03d}")
                    ds.set_attribute("title", f"profile {i} ✓")
                    ds.set_attribute("valid_range", np.array([-5.0, 40.0], dtype="float32"))
                    ds.define_array("depth", "float32", ["depth"], [10])
                    ds.write_array("depth", [0], np.arange(10, dtype="float32"))
            manifest = next(p for p in path.iterdir() if p.name.startswith("atlas."))
            store = atlas.Atlas.open(path)  # format and compression come from the file name
            assert store.open_dataset("profile_007").get_attribute("title") == "profile 7 ✓"
            print(f"{manifest.name:22s} {manifest.stat().st_size:8d} bytes for {len(store)} datasets")
