"""Object stores through obstore: a MemoryStore handle, a LocalStore handle, a memory:// URL.

Run with ``.venv/bin/python examples/08_object_store.py`` (needs the ``cloud`` extra:
``pip install 'atlas-store[cloud]'``).  Nothing leaves this process: the memory
stores live in RAM and the LocalStore writes into a temporary directory.  The same
calls work on ``S3Store``, ``GCSStore`` and ``AzureStore`` handles and on ``s3://``,
``gs://`` and ``az://`` URLs (docs/cloud-storage.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from obstore.store import LocalStore, MemoryStore

import atlas
from atlas.backends.objectstore import forget_memory


def fill(store: atlas.Atlas, n: int) -> None:
    """Stage ``n`` station datasets sharing the arrays ``temp`` and ``qc``."""
    for i in range(n):
        ds = store.create_dataset(f"station_{i:03d}")
        ds.define_array("temp", "float32", ["time"], [48], chunk_shape=[12], fill_value=float("nan"))
        ds.define_array("qc", "uint8", ["time"], [48], chunk_shape=[12])
        ds.write_array("temp", [0], np.linspace(0, 1, 48, dtype="float32") + i)
        ds.write_array("qc", [0], np.ones(48, dtype="uint8"))
        ds.set_attribute("platform", f"buoy-{i}")


def bulk_read(store: atlas.Atlas) -> np.ndarray:
    """Hours 12..17 of every dataset: coalesced range requests on an object store."""
    return store.read_array_across_stacked("temp", store.list_datasets(), start=[12], shape=[6])


# 1. A MemoryStore handle: create, write, flush, add more, reopen read-only.
handle = MemoryStore()
store = atlas.Atlas.create(handle)
fill(store, 50)
store.flush()  # one PUT per new segment, one conditional PUT of the manifest
first_generation = store.generation
store.open_dataset("station_000").write_array("temp", [0], np.zeros(4, dtype="float32"))
store.close()  # flushes the pending write

reader = atlas.Atlas.open(handle, mode="r")
block = bulk_read(reader)
print(f"MemoryStore: {reader!r}")
print(f"  generations {first_generation} -> {reader.generation}; bulk read {block.shape}, row 1: {block[1]}")
print("  station_000 after the second commit:", reader.open_dataset("station_000").read_array("temp", [0], [5]))
assert block.shape == (50, 6) and reader.verify() == []

# 2. A LocalStore handle: the store is a plain directory, memory-mapped like a path.
with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp) / "obs.atlas"
    root.mkdir()
    with atlas.Atlas.create(LocalStore(str(root))) as store:
        fill(store, 20)
    # committed on leaving the block; the same directory opens as an ordinary path
    reader = atlas.Atlas.open(root, mode="r")
    block = bulk_read(reader)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    print(f"LocalStore: {len(reader)} datasets in {len(files)} files: {files}")
    print(f"  bulk read {block.shape}; station_019 stats: {reader.open_dataset('station_019').array_stats('temp')}")
    assert block.shape == (20, 6)

# 3. A memory:// URL: any handle in this process that names it reaches the same store.
url = "memory://example-08"
with atlas.Atlas.create(url) as store:
    fill(store, 10)
writer = atlas.Atlas.open(url)
writer.open_dataset("station_003").set_attribute("platform", "buoy-3 (repaired)")
writer.flush()
reader = atlas.Atlas.open(url, mode="r")
print(f"memory:// URL: {reader.location} generation {reader.generation}")
print("  station_003 platform:", reader.open_dataset("station_003").get_attribute("platform"))
print("  bulk read:", bulk_read(reader).shape)
try:
    reader.create_dataset("not_allowed")
except atlas.errors.ReadOnlyError as exc:  # also a PermissionError
    print("  read-only handle refuses changes:", exc)
forget_memory(url)  # release the named store's data
