"""The caches and shortcuts of a planned write keep memory bounded: each case they once got wrong."""

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


def test_remembered_variables_hold_no_long_text():
    # Variables whose long text attributes differ from file to file are not remembered
    # whole: the caches of the plan must not keep megabytes of their text alive.
    from atlas.xarray import plan as plan_mod

    plan_mod.plan_dataset(xr.Dataset({"v": ("x", np.arange(3.0), {"comment": "warm"})}), None)  # lazy imports
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            comment = f"{i:08d}" + "x" * 100_000  # 100 kB, different in every file
            ds = xr.Dataset({"v": ("x", np.arange(3.0), {"comment": comment, "units": "m"})})
            plan_mod.plan_dataset(ds, None)
        del ds, comment
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 4 << 20, f"the plan's caches keep {kept / 2**20:.1f} MiB after 200 datasets of 100 kB text"


class _Caseless(str):
    """A name equal to every name that differs from it only in case."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.lower())


def test_a_remembered_list_of_names_is_not_taken_for_names_that_only_compare_equal():
    # The reverse of test_attributes_bulk's poisoning case: the plain names come first and
    # are remembered; a later list of str subclass names equal to them keeps its own text.
    from atlas.xarray import plan as plan_mod

    plain = xr.Dataset(attrs={"units": "m", "title": "t"})
    odd = xr.Dataset(attrs={_Caseless("Units"): "m", "title": "t"})
    plan_mod._TEXT_LISTS.clear()
    plan_mod.plan_dataset(plain, None)
    assert ("units", "title") in plan_mod._TEXT_LISTS
    attrs = plan_mod.plan_dataset(odd, None).attributes
    names = attrs[f"{plan_mod.PREFIX}/attrs"]["v"]
    assert names == ["Units", "title"] and all(type(n) is str for n in names)


def test_remembered_fill_values_hold_no_long_text():
    # Long text fill values (different in every file) are checked each time, not kept.
    from atlas.xarray import plan as plan_mod

    plan_mod.plan_dataset(xr.Dataset({"v": ("x", np.array(["a"]), {"_FillValue": np.str_("w")})}), None)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100):
            fill = np.str_(f"{i:08d}" + "x" * 50_000)
            ds = xr.Dataset({"v": ("x", np.array(["a", "b"]), {"_FillValue": fill})})
            assert plan_mod.plan_dataset(ds, None).variables[0].fill == str(fill)
        del ds, fill
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 4 << 20, f"the plan's caches keep {kept / 2**20:.1f} MiB after 100 datasets of 50 kB fill values"
