"""Writer of generations with a checkable invariant (test_concurrency.py, readers test).

Every commit ``G`` changes every dataset ``g0..g{N-1}`` and the ``counter`` dataset so
that, in a complete generation:

* ``counter``: array ``c == [G]`` and attribute ``gen == G``;
* each ``gI``: attribute ``gen == G``; attribute ``sum`` equals the sum of its array
  ``x`` (float64 integers, exact); ``array_stats("x")`` min/max equal those of the
  cells;
* ``counter``: array ``tag`` (strings) holds ``"gG"`` in every cell.

``x`` gets a *partial* random write per generation, so its chunks come from segments
of many generations; now and then a dataset is deleted and re-created under the same
name (a new slot).  Readers (``snapshot_reader.py``) check the invariant on every
snapshot they can get.  With ``COMPACT_EVERY > 0`` every that many generations are
followed by a ``compact()``.

Usage: ``python gen_writer.py STORE GENERATIONS SEED COMPACT_EVERY DONE_FLAG
[--storage-options=JSON]`` (``STORE`` a directory, or a URL with its obstore options,
see ``rel_common.options_arg``).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from rel_common import pop_options

import atlas

N_DATASETS = 3
X_LEN, X_CHUNK = 64, 16


def fill(store: atlas.Atlas, name: str, rng: np.random.Generator) -> np.ndarray:
    ds = store.create_dataset(name)
    ds.define_array("x", "float64", ["n"], [X_LEN], chunk_shape=[X_CHUNK])
    x = rng.integers(-1000, 1000, size=X_LEN).astype("float64")
    ds.write_array("x", [0], x)
    return x


def generation(store: atlas.Atlas, model: dict[str, np.ndarray], g: int, rng: np.random.Generator) -> None:
    for i in range(N_DATASETS):
        name = f"g{i}"
        if name not in model or rng.random() < 0.04:
            if name in model:
                store.delete_dataset(name)
            model[name] = fill(store, name, rng)
        else:
            a = int(rng.integers(0, X_LEN))
            b = int(rng.integers(a + 1, min(X_LEN, a + 24) + 1))
            data = rng.integers(-1000, 1000, size=b - a).astype("float64")
            store.open_dataset(name).write_array("x", [a], data)
            model[name][a:b] = data
        ds = store.open_dataset(name)
        ds.set_attribute("sum", float(model[name].sum()))
        ds.set_attribute("gen", g)
    counter = store.open_dataset("counter") if "counter" in store else store.create_dataset("counter")
    if not counter.has_array("c"):
        counter.define_array("c", "int64", ["one"], [1])
        counter.define_array("tag", "string", ["n"], [3], chunk_shape=[2])
    counter.write_array("c", [0], np.array([g], dtype="int64"))
    counter.write_array("tag", [0], np.array([f"g{g}"] * 3, dtype=object))
    counter.set_attribute("gen", g)


def main(argv: list[str]) -> int:
    argv, options = pop_options(argv)
    path, generations, seed, compact_every, done = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    rng = np.random.default_rng(seed)
    model: dict[str, np.ndarray] = {}
    started = time.monotonic()
    compactions = 0
    with atlas.Atlas.open(path, storage_options=options) as store:
        for g in range(1, generations + 1):
            generation(store, model, g, rng)
            store.flush()
            # Commits take a few milliseconds: pause as long again so that readers
            # polling every 10-40 ms see many generations, not just the last ones.
            time.sleep(0.005)
            if compact_every and g % compact_every == 0:
                store.compact(grace_period=3600.0)
                compactions += 1
    with open(done, "w") as fh:
        fh.write(f"{generations} {compactions} {time.monotonic() - started:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
