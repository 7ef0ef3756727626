"""xarray round trips: write CF datasets into a store, read them back identical.

Run with ``.venv/bin/python examples/02_xarray.py``; everything happens in a
temporary directory.  ``store.add_xr_dataset(ds, name)`` / ``store.to_xarray(name)`` /
``store.to_xarray_many(names)`` are the same calls as the ``atlas.xarray`` functions
used here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

import atlas
from atlas.xarray import add_xr_dataset, to_xarray, to_xarray_many  # also registers ds.atlas


def profile(i: int) -> xr.Dataset:
    """A small CF-style ocean profile: timestamps, QC flags, byte strings, attributes."""
    rng = np.random.default_rng(i)
    temp = (20 - np.linspace(0, 15, 30) + rng.normal(0, 0.2, 30)).astype("float32")
    temp[rng.integers(0, 30, 3)] = np.nan
    ds = xr.Dataset(
        {
            "TEMP": ("DEPTH", temp, {"units": "degree_Celsius", "standard_name": "sea_water_temperature"}),
            "TEMP_QC": (
                "DEPTH",
                np.where(np.isnan(temp), 9, 1).astype("int8"),
                {"flag_values": np.arange(10, dtype="int8")},
            ),
            "PLATFORM": ((), np.bytes_(f"BUOY{i:04d}")),
        },
        coords={
            "DEPTH": ("DEPTH", np.arange(30, dtype="float32") * 2.0, {"units": "m", "positive": "down"}),
            "TIME": ((), np.datetime64("2024-01-01T00:00") + np.timedelta64(6 * i, "h")),
            "LATITUDE": ((), np.float32(40 + i / 10)),
        },
        attrs={"title": f"profile {i}", "Conventions": "CF-1.11", "platform.code": f"B{i}"},
    )
    ds.TEMP.encoding["_FillValue"] = np.float32(99999.0)  # where xr.open_dataset would put it
    return ds


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="atlas-xarray-") as tmp:
        path = Path(tmp) / "profiles.atlas"
        sources = {f"profile_{i:03d}": profile(i) for i in range(20)}

        # 1. write: staged, committed when the with block ends
        with atlas.Atlas.create(path) as store:
            for name, ds in sources.items():
                add_xr_dataset(store, ds, name)
            sources["profile_000"].atlas.write(store, "via_accessor")  # the accessor does the same

        # 2. read back: identical, including dtypes, attrs and coordinates
        store = atlas.Atlas.open(path, mode="r")
        back = to_xarray(store, "profile_007")
        xr.testing.assert_identical(sources["profile_007"], back)
        print(back)
        print("TEMP encoding:", back.TEMP.encoding)
        print("PLATFORM dtype:", back.PLATFORM.dtype, back.PLATFORM.values)

        # 3. the plain view of the same dataset: arrays, and attributes as {var}.{attr}
        view = store.open_dataset("profile_007")
        print("arrays:", view.list_arrays())
        print("TEMP.units =", view.get_attribute("TEMP.units"), "| title =", view.get_attribute("title"))
        print("TEMP fill value:", view.array_meta("TEMP")["fill_value"], "| stats:", view.array_stats("TEMP"))

        # 4. many datasets of one schema, stacked along a new dimension in one bulk read
        names = [n for n in sources if n.startswith("profile_")]
        many = to_xarray_many(store, names, concat_dim="profile")
        print(many.TEMP.dims, many.TEMP.shape, "mean surface temperature:", float(many.TEMP.isel(DEPTH=0).mean()))

        # 5. the xarray backend
        opened = xr.open_dataset(path, engine="atlas", group="profile_003")
        xr.testing.assert_identical(sources["profile_003"], opened)
        print("engine='atlas' preferred chunks:", opened.TEMP.encoding["preferred_chunks"])

        # 6. a real NetCDF file, if the test data is around
        real = Path(__file__).resolve().parent.parent / "tests" / "data" / "GL_PR_BO_JLKU.nc"
        if real.exists():
            with xr.open_dataset(real) as nc, atlas.Atlas.open(path) as rw:
                add_xr_dataset(rw, nc, "GL_PR_BO_JLKU")
                rw.flush()
                xr.testing.assert_identical(nc, to_xarray(rw, "GL_PR_BO_JLKU"))
                print("GL_PR_BO_JLKU.nc round-trips identically:", len(nc.attrs), "global attributes")


if __name__ == "__main__":
    main()
