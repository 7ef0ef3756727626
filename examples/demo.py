"""The main job: pack a fleet of small profile datasets into one store and read a
cross-dataset slice back.

Run with ``make demo`` (or ``python examples/demo.py [N] [STORE_DIR]``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import atlas


def main(n_datasets: int = 500, where: str | None = None) -> None:
    tmp = None
    if where is None:
        tmp = tempfile.TemporaryDirectory(prefix="atlas-demo-")
        where = tmp.name
    path = Path(where) / "profiles.atlas"
    depth, time_steps = 50, 168

    t0 = time.perf_counter()
    with atlas.Atlas.create(path) as store:
        for i in range(n_datasets):
            rng = np.random.default_rng(i)
            ds = store.create_dataset(f"profile_{i:05d}")
            ds.set_attribute("platform", f"buoy-{i % 37}")
            ds.set_attribute("latitude", float(rng.uniform(-60, 60)))
            for var in ("TEMP", "PSAL"):
                ds.define_array(var, "float32", ["DEPTH", "TIME"], [depth, time_steps], fill_value=float("nan"))
                data = (rng.standard_normal((depth, time_steps)).cumsum(axis=1) + 10).astype("float32")
                ds.write_array(var, [0, 0], data)
    t_write = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    t0 = time.perf_counter()
    store = atlas.Atlas.open(path, mode="r")
    t_open = time.perf_counter() - t0
    names = store.list_datasets()

    t0 = time.perf_counter()
    block = store.read_array_across_stacked("TEMP", names, start=[0, 0], shape=[10, 24])
    t_first = time.perf_counter() - t0
    # The first bulk read of a process loads numba and the read kernel (and, on a
    # machine's first run, compiles it): the repeat is what every later read costs.
    t0 = time.perf_counter()
    store.read_array_across_stacked("TEMP", names, start=[0, 0], shape=[10, 24])
    t_read = time.perf_counter() - t0

    stats = store.open_dataset(names[0]).array_stats("TEMP")
    print(f"store          {path}")
    print(f"datasets       {len(names)} ({', '.join(store.list_arrays())} each {depth}x{time_steps} float32)")
    print(f"write + flush  {t_write:8.3f} s   ({size / 1e6:.1f} MB on disk, codec {store.codec})")
    print(f"open           {t_open * 1e3:8.2f} ms")
    print(f"bulk read      {t_read * 1e3:8.2f} ms   TEMP[0:10, 0:24] of every dataset -> {block.shape} {block.dtype}")
    print(f"  first call   {t_first * 1e3:8.2f} ms   (loads numba's compiled read kernel; compiles it on a first run)")
    first = np.round(block[0, 0, :4], 3)
    print(f"first values   {first}; stats of {names[0]}: min={stats['min']:.3f} max={stats['max']:.3f}")
    store.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500, sys.argv[2] if len(sys.argv) > 2 else None)
