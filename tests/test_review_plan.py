"""Review of the planned-write shortcuts: each case the shortcut once got wrong."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

import atlas  # noqa: E402
from atlas.xarray import add_xr_dataset  # noqa: E402


def test_many_whole_variables_keep_to_the_spill_budget(tmp_path):
    # 40 variables of 1 MiB, each written in one block, with a 1 MiB budget: the staged
    # bytes are spilled as they grow, never all held in memory before the first spill.
    ds = xr.Dataset({f"v{i}": ("x", np.arange(1 << 17, dtype="f8") + i) for i in range(40)})
    with atlas.Atlas.create(str(tmp_path / "s"), max_pending_bytes=1 << 20) as store:
        add_xr_dataset(store, ds[["v0", "v1", "v2"]], "warm")  # imports and first spill done
        store.flush()
        tracemalloc.start()
        try:
            add_xr_dataset(store, ds, "big")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        store.flush()
        back = store.to_xarray("big").load()
    assert peak < 12 << 20, f"writing held {peak / 2**20:.1f} MiB with a 1 MiB budget (the dataset has 40 MiB)"
    xr.testing.assert_identical(back, ds)
