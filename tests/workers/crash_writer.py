"""The writer that tests/test_crash.py kills with SIGKILL.

It loops over *generations*: generation ``G`` applies a few changes that depend only
on ``(seed, G)`` and on the store content at ``G - 1`` (create/delete datasets,
define/delete arrays, partial writes of every dtype, attributes), then commits them
with ``flush()`` or, every few generations, with ``compact()`` (which flushes and then
rewrites every family).  The content of generation ``G`` is therefore a
deterministic function of ``(seed, G)``, whoever computed it and however often the
writer was killed on the way.

Before each commit it appends ``about to commit generation G with content hash H``
to the oracle log (fsynced), where ``H`` is the hash of its own view (pending
changes included); after the commit it appends ``committed G``.  On start it opens
the store, reads ``G`` from the ``meta`` dataset and logs ``start G H``.

Usage: ``python crash_writer.py STORE ORACLE SEED MAX_PENDING_BYTES [MAX_GENERATION]``
(``MAX_PENDING_BYTES`` 0 means the library default).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from rel_common import append_line, store_hash

import atlas

#: name: (dtype, dims, shape, chunk_shape, fill_value)
ARRAYS = {
    "temp": ("float32", ["y", "x"], [24, 18], [10, 8], None),
    "count": ("int64", ["n"], [40], [9], None),
    "label": ("string", ["n"], [11], [4], None),
    "flag": ("bool", ["n"], [13], [5], None),
    "when": ("timestamp_nanoseconds", ["n"], [9], [4], None),
    "level": ("float64", ["n"], [30], [7], -999.0),
    "scalar": ("uint16", [], [], None, 7),
}
DATASET_POOL = [f"ds{k}" for k in range(8)]
#: Every this many generations the commit is a ``compact()`` instead of a ``flush()``.
COMPACT_EVERY = 6


def random_data(rng: np.random.Generator, dtype: str, shape: list[int]) -> np.ndarray:
    shape = tuple(shape)
    if dtype == "float32":
        out = rng.normal(size=shape).astype("float32")
        if out.size and rng.random() < 0.3:
            out.reshape(-1)[0] = np.nan
        return out
    if dtype == "float64":
        return rng.integers(-1000, 1000, size=shape).astype("float64") / 8
    if dtype == "int64":
        return rng.integers(-(2**62), 2**62, size=shape, dtype="int64")
    if dtype == "uint16":
        return rng.integers(0, 2**16, size=shape, dtype="uint16")
    if dtype == "bool":
        return rng.random(size=shape) < 0.5
    if dtype == "timestamp_nanoseconds":
        return rng.integers(0, 2**60, size=shape, dtype="int64").view("datetime64[ns]")
    if dtype == "string":
        words = ["", "a", "température", "温度", "x" * 40, "tab\tnew\nline", "🌊"]
        out = np.empty(shape, dtype=object)
        flat = out.reshape(-1)
        for i in range(flat.shape[0]):
            flat[i] = words[int(rng.integers(len(words)))] + str(int(rng.integers(1000)))
        return out
    raise AssertionError(dtype)


def random_box(rng: np.random.Generator, shape: list[int]) -> tuple[list[int], list[int]]:
    start, box = [], []
    for s in shape:
        a = int(rng.integers(0, s))
        b = int(rng.integers(a + 1, s + 1))
        start.append(a)
        box.append(b - a)
    return start, box


def define(ds: atlas.DatasetView, name: str) -> None:
    dtype, dims, shape, chunks, fill = ARRAYS[name]
    ds.define_array(name, dtype, dims, shape, chunk_shape=chunks, fill_value=fill)


def write_some(rng: np.random.Generator, ds: atlas.DatasetView, name: str) -> None:
    dtype, _dims, shape, _chunks, _fill = ARRAYS[name]
    start, box = random_box(rng, shape)
    ds.write_array(name, start, random_data(rng, dtype, box))


def random_attribute(rng: np.random.Generator, g: int):
    kind = int(rng.integers(7))
    return [
        g,
        float(rng.normal()),
        float("nan"),
        f"gen {g} → ✓",
        [int(v) for v in rng.integers(-5, 5, size=3)],
        np.float32(rng.normal()),
        2**64 - 1 - g,
    ][kind]


def apply_generation(store: atlas.Atlas, seed: int, g: int) -> None:
    """Stage the changes of generation ``g`` (deterministic in ``(seed, g)`` and the content)."""
    rng = np.random.default_rng([seed, g])
    meta = store.open_dataset("meta") if "meta" in store else store.create_dataset("meta")
    meta.set_attribute("G", g)
    for _ in range(int(rng.integers(1, 4))):
        existing = [n for n in store.list_datasets() if n != "meta"]
        op = rng.random()
        if op < 0.18 and len(existing) < len(DATASET_POOL):
            name = str(rng.choice([n for n in DATASET_POOL if n not in existing]))
            ds = store.create_dataset(name)
            for array in sorted(rng.choice(sorted(ARRAYS), size=int(rng.integers(2, 5)), replace=False)):
                define(ds, str(array))
                if rng.random() < 0.7:
                    write_some(rng, ds, str(array))
            ds.set_attribute("born", g)
        elif op < 0.26 and len(existing) > 2:
            store.delete_dataset(str(rng.choice(existing)))
        elif not existing:
            continue
        else:
            ds = store.open_dataset(str(rng.choice(existing)))
            arrays = ds.list_arrays()
            sub = rng.random()
            if sub < 0.65 and arrays:
                for _ in range(int(rng.integers(1, 4))):
                    write_some(rng, ds, str(rng.choice(arrays)))
            elif sub < 0.75:
                missing = [a for a in sorted(ARRAYS) if a not in arrays]
                if missing:
                    name = str(rng.choice(missing))
                    define(ds, name)
                    write_some(rng, ds, name)
            elif sub < 0.80 and len(arrays) > 1:
                ds.delete_array(str(rng.choice(arrays)))
            elif sub < 0.95:
                ds.set_attribute(f"a{int(rng.integers(4))}", random_attribute(rng, g))
            else:
                keys = sorted(ds.attributes())
                if keys:
                    ds.delete_attribute(str(rng.choice(keys)))


def commit(store: atlas.Atlas, seed: int, g: int) -> None:
    if g % COMPACT_EVERY == 0:
        rng = np.random.default_rng([seed, g, 1])
        # grace 0 sweeps the debris of earlier kills (one writer: nothing else is in flight)
        store.compact(grace_period=0.0 if rng.random() < 0.5 else 3600.0)
    else:
        store.flush()


def current_generation(store: atlas.Atlas) -> int:
    if "meta" not in store:
        return 0
    return int(store.open_dataset("meta").get_attribute("G", 0))


def run(store_path: str, oracle: str, seed: int, max_pending: int, max_generation: int) -> int:
    kwargs = {"max_pending_bytes": max_pending} if max_pending > 0 else {}
    store = atlas.Atlas.open(store_path, **kwargs)
    g = current_generation(store)
    append_line(oracle, f"start {g} {store_hash(store)}")
    while g < max_generation:
        g += 1
        apply_generation(store, seed, g)
        h = store_hash(store)
        append_line(oracle, f"about to commit generation {g} with content hash {h}")
        commit(store, seed, g)
        append_line(oracle, f"committed {g}")
        after = store_hash(store)
        if after != h:  # the committed view must be exactly the pending view
            append_line(oracle, f"view changed by commit {g}: {h} -> {after}")
            return 3
    store.close()
    return 0


def main(argv: list[str]) -> int:
    store_path, oracle, seed, max_pending = argv[0], argv[1], int(argv[2]), int(argv[3])
    max_generation = int(argv[4]) if len(argv) > 4 else 10**9
    # A line cut by a SIGKILL is completed so that the next one starts on its own line.
    if os.path.exists(oracle) and os.path.getsize(oracle):
        with open(oracle, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                append_line(oracle, "")
    return run(store_path, oracle, seed, max_pending, max_generation)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
