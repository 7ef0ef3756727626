"""The listing of a file read whole on files the other listing tests do not make.

:meth:`atlas.cli.netcdf_open.OnceStore.read_whole` lists a small plain file itself
instead of through xarray's ``NetCDF4DataStore``.  These files exercise what that
listing rebuilds by hand: a dimension used twice by one variable, text attributes
stored as NC_STRING and lists of strings, NaN and -0.0 fill values, storage
settings (quantization, ``least_significant_digit``, checksums, contiguous and
chunked layouts), an unlimited dimension longer than some of its variables, the
unsigned and 64-bit types of the CDF-5 format, and the one variable name xarray
renames (``__values__``).  Each must be listed as xarray lists it and loaded by
``load_source`` as the general path loads it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
netCDF4 = pytest.importorskip("netCDF4")

from test_netcdf_listing import _general, assert_listed_as_xarray_lists  # noqa: E402
from test_sources import assert_same_dataset  # noqa: E402

from atlas.cli import sources  # noqa: E402
from atlas.cli.netcdf_open import OnceStore  # noqa: E402


def _same_dimension_twice(nc) -> None:
    nc.createDimension("d", 3)
    nc.createVariable("m", "f8", ("d", "d"))[...] = np.arange(9.0).reshape(3, 3)
    nc.createVariable("x", "i4", ("d",))[...] = [1, 2, 3]


def _text_attributes(nc) -> None:
    nc.createDimension("d", 2)
    var = nc.createVariable("a", "f4", ("d",))
    var[...] = [1, 2]
    var.setncattr_string("units", "m")
    var.setncattr("names", ["a", "bc"])
    var.setncattr("unsigned64", np.array([1, 2], "u8"))
    var.setncattr("nan", np.nan)
    var.setncattr("negative_zero", -0.0)
    nc.setncattr_string("title", "t")
    nc.setncattr("several", ["x", "y"])


def _odd_fill_values(nc) -> None:
    nc.createDimension("d", 3)
    nc.createVariable("a", "f8", ("d",), fill_value=np.nan)[...] = [np.nan, -0.0, 1]
    var = nc.createVariable("b", "f4", ("d",))
    var.missing_value = np.float32(-0.0)
    var[...] = [0.0, -0.0, 2]


def _storage_settings(nc) -> None:
    nc.createDimension("d", 5)
    nc.createVariable("lsd", "f4", ("d",), least_significant_digit=1, zlib=True)[...] = np.linspace(0, 1, 5)
    nc.createVariable("quantized", "f8", ("d",), significant_digits=3, zlib=True)[...] = np.linspace(0, 1, 5)
    nc.createVariable("checked", "f8", ("d",), fletcher32=True, shuffle=True, zlib=True, complevel=9)[...] = 1.5
    nc.createVariable("contiguous", "f8", ("d",), contiguous=True)[...] = 2.5
    nc.createVariable("chunked", "f8", ("d",), chunksizes=(2,))[...] = 3.5


def _ragged_records(nc) -> None:
    nc.createDimension("t", None)
    nc.createVariable("long", "f8", ("t",))[0:5] = np.arange(5.0)
    nc.createVariable("short", "i4", ("t",), fill_value=-9)[0:2] = [7, 8]


def _cdf5_types(nc) -> None:
    nc.createDimension("d", 3)
    for t in ("u1", "u2", "u4", "i8", "u8"):
        var = nc.createVariable(f"v{t}", t, ("d",))
        var.set_auto_maskandscale(False)
        var[...] = np.arange(3, dtype=t)
        var.setncattr(f"array_{t}", np.array([1, 2], t))
        var.setncattr(f"scalar_{t}", np.array(5, t)[()])
    var = nc.createVariable("packed", "u2", ("d",), fill_value=np.uint16(65535))
    var.set_auto_maskandscale(False)
    var[...] = [1, 65535, 3]
    var.scale_factor = 0.01
    var.add_offset = -1.0


MAKERS = {
    "same_dimension_twice": ("NETCDF4", _same_dimension_twice),
    "text_attributes": ("NETCDF4", _text_attributes),
    "odd_fill_values": ("NETCDF4", _odd_fill_values),
    "storage_settings": ("NETCDF4", _storage_settings),
    "ragged_records": ("NETCDF4", _ragged_records),
    "cdf5_types": ("NETCDF3_64BIT_DATA", _cdf5_types),
}


def _make(path: Path, fmt: str, fill) -> Path:
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        fill(nc)
    return path


@pytest.mark.filterwarnings("ignore:Duplicate dimension names")
@pytest.mark.parametrize("name", list(MAKERS))
def test_unusual_plain_files_are_listed_and_loaded_as_xarray_does(tmp_path, name):
    fmt, fill = MAKERS[name]
    path = _make(tmp_path / f"{name}.nc", fmt, fill)
    assert assert_listed_as_xarray_lists(path), name
    want = _general(path)
    assert not isinstance(want, Exception), want
    got = sources.load_source(sources.Source(path, "f"), 1 << 30)
    # the same warnings, not necessarily as many times: xarray repeats some for every Variable it builds
    assert set(got.warnings) == set(want.warnings), name
    assert_same_dataset(want.ds, got.ds, name, indexes=False)


def test_a_variable_named_as_xarrays_placeholder_is_loaded_as_the_general_path_loads_it(tmp_path):
    """xarray renames a variable called ``__values__`` to None when it lists a file.  Such a
    file is left to xarray's listing (not read whole) and loads as the general path loads it
    (the writer then refuses the name None with a clear message, as it does on that path)."""
    with netCDF4.Dataset(tmp_path / "values.nc", "w") as nc:
        nc.createDimension("d", 2)
        nc.createVariable("__values__", "f8", ("d",))[...] = [1, 2]
        nc.createVariable("o", "f8", ("d",))[...] = [3, 4]
    path = tmp_path / "values.nc"
    store = OnceStore(str(path))
    try:
        assert not store.read_whole(1 << 30)
    finally:
        store.close()
    want = _general(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sources.load_source(sources.Source(path, "f"), 1 << 30)
    assert list(got.ds.variables) == [None, "o"]
    assert_same_dataset(want.ds, got.ds, "values", indexes=False)


def _two_variables(path: Path) -> Path:
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("d", 3)
        nc.createVariable("a", "f8", ("d",))[...] = [1, 2, 3]
        var = nc.createVariable("b", "i2", ("d",), fill_value=np.int16(-1))
        var.set_auto_maskandscale(False)
        var[...] = [4, -1, 6]
        var.scale_factor = 0.5
    return path


def test_a_read_unlike_the_listing_halfway_leaves_the_file_to_xarrays_listing(tmp_path, monkeypatch):
    """A variable read as another dtype than listed (injected: netCDF4 never gives one) after
    another was read: nothing is kept from the listing made here, xarray lists the file and
    the dataset is the general path's."""
    from atlas.cli import netcdf_open

    path = _two_variables(tmp_path / "two.nc")
    want = _general(path)
    read_all = netcdf_open._read_all

    def unlike(ncvar, shape):
        values = read_all(ncvar, shape)
        return values.astype("i4") if ncvar.name == "b" else values

    monkeypatch.setattr(netcdf_open, "_read_all", unlike)
    store = OnceStore(str(path))
    try:
        assert not store.read_whole(1 << 30)
        assert store._listed is None
        listed = store.load()[0]
        assert all(type(v._data.array).__name__ == "NetCDF4ArrayWrapper" for v in listed.values())
    finally:
        store.close()
    got = sources.load_source(sources.Source(path, "f"), 1 << 30)
    assert got.warnings == want.warnings
    assert_same_dataset(want.ds, got.ds, "two", indexes=False)


def test_a_read_failing_halfway_fails_the_file_and_closes_it(tmp_path, monkeypatch):
    from atlas.cli import netcdf_open

    path = _two_variables(tmp_path / "two.nc")
    read_all = netcdf_open._read_all
    opened = []

    def failing(ncvar, shape):
        if ncvar.name == "b":
            raise OSError("injected: HDF5 read error")
        return read_all(ncvar, shape)

    class Recorded(OnceStore):
        def __init__(self, filename):
            super().__init__(filename)
            opened.append(self)

    monkeypatch.setattr(netcdf_open, "_read_all", failing)
    monkeypatch.setattr(netcdf_open, "OnceStore", Recorded)
    with pytest.raises(OSError, match="injected"):
        sources.load_source(sources.Source(path, "f"), 1 << 30)
    assert len(opened) == 1 and not opened[0].ds.isopen()
