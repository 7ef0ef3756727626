"""Files made to trip the read-whole path of :mod:`atlas.cli.sources` (one case per decoding rule).

Each file is loaded by :func:`atlas.cli.sources.load_source` (a small plain file is read
whole, its packed variables decoded from the listing when it is unambiguous) and by the
general path (``xr.open_dataset`` plus the packed variables of ``mask_and_scale=False``);
both must load the same dataset, attributes, encodings and warnings.  A few are stored
by ``atlas create`` both ways and compared as stored.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
netCDF4 = pytest.importorskip("netCDF4")

from test_sources import (  # noqa: E402
    _load_both,
    assert_same_dataset,
    assert_stored_alike,
    stored_both_ways,
)

import atlas  # noqa: E402
from atlas.cli import sources  # noqa: E402


def _nc(path: Path, fmt: str = "NETCDF4"):
    nc = netCDF4.Dataset(path, "w", format=fmt)
    nc.createDimension("t", 4)
    return nc


def _int_var(nc, name: str, dtype: str = "i2", values=(1, -1, 3, 4), **attrs):
    fill = attrs.pop("_FillValue", None)
    v = nc.createVariable(name, dtype, ("t",), fill_value=fill)
    v.set_auto_maskandscale(False)
    v[:] = np.array(values, dtype=dtype)
    for k, a in attrs.items():  # after the values: netCDF4 would apply them while writing
        v.setncattr(k, a)
    return v


def fill_and_missing_equal(p):
    with _nc(p) as nc:
        _int_var(nc, "v", _FillValue=np.int16(-1), missing_value=np.int16(-1))


def fill_and_missing_differ(p):
    with _nc(p) as nc:
        _int_var(nc, "v", _FillValue=np.int16(-1), missing_value=np.int16(3))


def fill_and_missing_float(p):
    with _nc(p) as nc:
        _int_var(nc, "v", _FillValue=np.int16(-1), missing_value=-1.0)


def missing_list(p):
    with _nc(p) as nc:
        _int_var(nc, "v", missing_value=np.array([-1, 3], "i2"))


def missing_text(p):
    with _nc(p) as nc:
        _int_var(nc, "v", missing_value="NA")


def missing_huge(p):  # a fill value the integers cannot hold
    with _nc(p) as nc:
        _int_var(nc, "v", missing_value=1e20)


def valid_range(p):
    with _nc(p) as nc:
        _int_var(nc, "v", _FillValue=np.int16(-1), valid_min=np.int16(0), valid_max=np.int16(3))
        _int_var(nc, "w", valid_range=np.array([0, 3], "i2"), scale_factor=0.5)


def scale_only(p):
    with _nc(p) as nc:
        _int_var(nc, "v", scale_factor=0.1)
        _int_var(nc, "w", "i4", scale_factor=np.float32(2))


def offset_only(p):
    with _nc(p) as nc:
        _int_var(nc, "v", add_offset=10.0)
        _int_var(nc, "w", "u1", (1, 2, 3, 255), add_offset=np.int8(3))


def scale_int(p):  # an integer scale factor keeps integers (nothing is masked or made float)
    with _nc(p) as nc:
        _int_var(nc, "v", "i4", scale_factor=np.int32(2))
        _int_var(nc, "w", "i2", scale_factor=np.int16(3), add_offset=np.int16(1))


def scale_text(p):  # packing attributes that are not numbers
    with _nc(p) as nc:
        _int_var(nc, "v", scale_factor="0.1")


def scale_int_text_fill(p):
    with _nc(p) as nc:
        _int_var(nc, "v", _FillValue=np.int16(-1), add_offset="1")


def float_packing(p):
    with _nc(p) as nc:
        v = nc.createVariable("v", "f4", ("t",), fill_value=np.float32(-9))
        v.scale_factor = np.float64(0.5)
        v[:] = np.array([1, -9, 3, 4], "f4")
        _int_var(nc, "w", _FillValue=np.int16(-1), scale_factor=np.float64(0.25), add_offset=np.float32(1))


def unsigned_bytes_shorts(p):
    with _nc(p) as nc:
        _int_var(nc, "b", "i1", (-1, 0, 5, -128), _Unsigned="true", _FillValue=np.int8(-1))
        _int_var(nc, "s", "i2", (-1, 0, 5, 7), _Unsigned="true", scale_factor=0.5)
        _int_var(nc, "plain", "i1", (-1, 0, 5, 7), _Unsigned="true")
        _int_var(nc, "notu", "u1", (1, 0, 5, 7), _Unsigned="false", _FillValue=np.uint8(0))


def nan_fill_floats(p):
    with _nc(p) as nc:
        for name, dt in (("f", "f4"), ("d", "f8")):
            v = nc.createVariable(name, dt, ("t",), fill_value=np.nan)
            v[:] = np.array([1, np.nan, 3, 4], dt)
        v = nc.createVariable("m", "f8", ("t",))
        v.missing_value = np.nan
        v[:] = [np.nan, 1, 2, 3]


def masked_ints_unpacked(p):
    with _nc(p) as nc:
        for dt in ("i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8"):
            _int_var(nc, f"q_{dt}", dt, (1, 2, 3, 9), _FillValue=np.array(9, dt))
        _int_var(nc, "default_fill", "i4", (1, 2, 3, -2147483647))  # netCDF's default fill: not masked


def chars(p):
    with _nc(p) as nc:
        nc.createDimension("n", 3)
        for name, enc in (("plain", None), ("utf", "utf-8"), ("ascii", "ascii")):
            v = nc.createVariable(name, "S1", ("t", "n"))
            if enc:
                v._Encoding = enc
            v.set_auto_chartostring(False)
            v[:] = np.array([list(b"ab "), list(b"cde"), list(b"   "), list(b"x\0\0")], "S1")
        s = nc.createVariable("one", "S1", ("n",))
        s.set_auto_chartostring(False)
        s[:] = np.array(list(b"xyz"), "S1")
        z = nc.createVariable("char0", "S1", ())
        z.set_auto_chartostring(False)
        z[...] = np.array(b"q", "S1")


def dims_without_coords_and_coord_attrs(p):
    with _nc(p) as nc:
        nc.createDimension("x", 2)
        t = nc.createVariable("t", "i4", ("t",), fill_value=np.int32(-1))
        t.long_name, t.axis = "step", "T"
        t[:] = [0, 1, -1, 3]
        nc.createVariable("grid", "f4", ("t", "x"))[:] = np.ones((4, 2), "f4")
        nc.createVariable("lat", "f8", ("t",))[:] = [1, 2, 3, 4]
        v = nc.createVariable("v", "f4", ("t",))
        v.coordinates = "lat w missing_name"  # w: a packed variable as a coordinate
        v[:] = [1, 2, 3, 4]
        w = _int_var(nc, "w", _FillValue=np.int16(-1))
        w.coordinates = "lat"


def odd_times(p):
    with _nc(p) as nc:
        t = nc.createVariable("time", "f8", ("t",), fill_value=np.float64(-999))
        t.units = "days since 2000-01-01"
        t[:] = [-1e5, 0, -999, 3]
        h = nc.createVariable("huge", "f8", ("t",))
        h.units = "seconds since 1970-01-01"
        h[:] = [0, 1e300, 2, 3]  # out of range: left undecoded (with a warning)
        i = _int_var(nc, "itime", "i8", (0, -5, 10**15, -1), _FillValue=np.int64(-1))
        i.units = "hours since 1900-01-01"
        nc.createVariable("bad_units", "f8", ("t",)).units = "days since forever"
        nc["bad_units"][:] = [0, 1, 2, 3]


def time_as_data(p):
    with _nc(p) as nc:
        nc.createDimension("obs", 4)
        v = nc.createVariable("obs_time", "i4", ("obs",), fill_value=np.int32(-1))
        v.units, v.calendar = "minutes since 2020-01-01", "standard"
        v[:] = [0, 60, -1, 120]
        w = _int_var(nc, "lag", "i2", (1, 2, -1, 4), _FillValue=np.int16(-1))
        w.units = "hours"


def bounds_and_climatology(p):
    with _nc(p) as nc:
        nc.createDimension("nv", 2)
        t = nc.createVariable("time", "f8", ("t",))
        t.units, t.calendar = "days since 2000-01-01", "standard"
        t.bounds, t.climatology = "time_bnds", "clim_bnds"
        t[:] = [0, 1, 2, 3]
        for name in ("time_bnds", "clim_bnds"):
            b = nc.createVariable(name, "i4", ("t", "nv"), fill_value=np.int32(-1))
            b[:] = np.array([[0, 1], [1, 2], [-1, 3], [3, 4]], "i4")
        lat = nc.createVariable("lat", "f8", ("t",))
        lat.bounds = "lat_bnds"
        lat[:] = [0, 1, 2, 3]
        lb = nc.createVariable("lat_bnds", "i2", ("t", "nv"), fill_value=np.int16(-1))
        lb.scale_factor = 0.5
        lb[:] = np.array([[0, 1], [1, 2], [-1, 3], [3, 4]], "i2")


def climatology_only(p):
    with _nc(p) as nc:
        nc.createDimension("nv", 2)
        t = nc.createVariable("time", "f8", ("t",))
        t.units, t.climatology = "days since 2000-01-01", "clim_bnds"
        t[:] = [0, 1, 2, 3]
        b = nc.createVariable("clim_bnds", "i4", ("t", "nv"), fill_value=np.int32(-1))
        b[:] = np.array([[0, 1], [1, 2], [-1, 3], [3, 4]], "i4")


def dim_named_2d(p):
    with _nc(p) as nc:
        nc.createDimension("x", 3)
        v = nc.createVariable("x", "i2", ("t", "x"), fill_value=np.int16(-1))
        v[:] = np.arange(12, dtype="i2").reshape(4, 3) - 1
        _int_var(nc, "t", _FillValue=np.int16(-1))  # an integer index coordinate with a fill value


def unlimited(empty: bool):
    def make(p):
        with netCDF4.Dataset(p, "w") as nc:
            nc.createDimension("rec", None)
            nc.createDimension("x", 2)
            v = nc.createVariable("v", "i2", ("rec", "x"), fill_value=np.int16(-1))
            v.set_auto_maskandscale(False)
            v[:] = np.array([[1, -1], [3, 4], [5, 6]], "i2")
            nc.createVariable("rec", "f8", ("rec",))[:] = [0, 1, 2]
            if empty:  # an unlimited dimension of size 0: left lazy
                nc.createDimension("empty", None)
                nc.createVariable("e", "f4", ("empty",))

    make.__name__ = "unlimited_and_empty" if empty else "unlimited"
    return make


def classic(fmt):
    def make(p):
        with _nc(p, fmt) as nc:
            _int_var(nc, "v", _FillValue=np.int16(-1), scale_factor=0.5)
            _int_var(nc, "q", "i1", (1, -1, 3, 4), _FillValue=np.int8(-1))
            nc.createVariable("x", "f4", ("t",))[:] = [1, 2, 3, 4]
            nc.title = "classic"

    make.__name__ = fmt.lower()
    return make


def big_endian(p):
    with _nc(p) as nc:
        v = nc.createVariable("v", ">i2", ("t",), endian="big", fill_value=np.int16(-1))
        v.scale_factor = 0.5
        v[:] = np.array([1, -1, 3, 4], "i2")
        nc.createVariable("f", ">f8", ("t",), endian="big")[:] = [1.5, 2, 3, 4]
        nc.createVariable("i", "i4", ("t",), endian="little")[:] = [1, 2, 3, 4]


def compressed(p):
    with _nc(p) as nc:
        nc.createDimension("x", 50)
        v = nc.createVariable("v", "i2", ("t", "x"), zlib=True, complevel=4, shuffle=True,
                              chunksizes=(2, 10), fill_value=np.int16(-1))  # fmt: skip
        v.scale_factor = 0.01
        v[:] = np.arange(200, dtype="i2").reshape(4, 50)
        w = nc.createVariable("w", "f4", ("t", "x"), zlib=True, chunksizes=(4, 25), fletcher32=True)
        w[:] = np.ones((4, 50), "f4")


def scalars(text: bool):
    def make(p):
        with _nc(p) as nc:
            s = nc.createVariable("s", "i2", (), fill_value=np.int16(-1))
            s.set_auto_maskandscale(False)
            s[...] = 4
            s.scale_factor = 0.5
            nc.createVariable("z", "f8", ())[...] = 2.5
            nc.createVariable("x", "f4", ("t",))[:] = [1, 2, 3, 4]
            if text:  # a scalar string: left lazy
                nc.createVariable("str0", str, ())[...] = "hello"

    make.__name__ = "scalars_and_text" if text else "scalars"
    return make


def vlen_ints(p):  # left lazy (not read whole); compared apart: xarray cannot compare arrays of arrays
    with _nc(p) as nc:
        vt = nc.createVLType(np.int32, "vi")
        v = nc.createVariable("v", vt, ("t",))
        for i in range(4):
            v[i] = np.arange(i + 1, dtype="i4")
        nc.createVariable("x", "f4", ("t",))[:] = [1, 2, 3, 4]


CASES = [
    fill_and_missing_equal, fill_and_missing_differ, fill_and_missing_float, missing_list, missing_text,
    missing_huge, valid_range, scale_only, offset_only, scale_int, scale_text, scale_int_text_fill, float_packing,
    unsigned_bytes_shorts, nan_fill_floats, masked_ints_unpacked, chars, dims_without_coords_and_coord_attrs,
    odd_times, time_as_data, bounds_and_climatology, climatology_only, dim_named_2d, unlimited(False), unlimited(True),
    classic("NETCDF3_CLASSIC"), classic("NETCDF3_64BIT_OFFSET"), classic("NETCDF4_CLASSIC"), big_endian,
    compressed, scalars(False), scalars(True),
]  # fmt: skip


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cases")
    for make in CASES:
        make(root / f"{make.__name__}.nc")
    return root


#: The cases left to xarray's lazy wrapper (an empty array, a string); every other one is read whole.
LAZY = {"unlimited_and_empty", "scalars_and_text"}


def test_the_cases_are_read_whole_but_two(made):
    """Else the comparisons below would not test the read-whole path."""
    from atlas.cli.netcdf_open import OnceStore

    for make in CASES:
        store = OnceStore(str(made / f"{make.__name__}.nc"))
        try:
            assert store.read_whole(1 << 30) == (make.__name__ not in LAZY), make.__name__
        finally:
            store.close()


def _general(path: Path, chunk_size: int):
    """What ``xr.open_dataset`` gives, with the packed variables of ``mask_and_scale=False``; or its error."""
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(sources, "_open_once", lambda *args: None)
            return sources.load_source(sources.Source(path, "f"), chunk_size)
    except Exception as exc:
        return exc


@pytest.mark.parametrize("make", CASES, ids=[m.__name__ for m in CASES])
def test_each_case_loads_what_the_general_path_loads(made, monkeypatch, make):
    path = made / f"{make.__name__}.nc"
    want = _general(path, 1 << 30)
    if isinstance(want, Exception):
        with pytest.raises(type(want)):
            sources.load_source(sources.Source(path, "f"), 1 << 30)
        return
    old, new = _load_both(path, 1 << 30, monkeypatch)
    assert old.warnings == new.warnings
    assert_same_dataset(old.ds, new.ds, path.name, indexes=False)


def test_variable_length_integers_are_left_lazy(tmp_path, monkeypatch):
    from atlas.cli.netcdf_open import OnceStore

    path = tmp_path / "vlen.nc"
    vlen_ints(path)
    store = OnceStore(str(path))
    try:
        assert not store.read_whole(1 << 30)
    finally:
        store.close()
    old, new = _load_both(path, 1 << 30, monkeypatch)
    assert_same_dataset(old.ds.drop_vars("v"), new.ds.drop_vars("v"), path.name, indexes=False)
    assert old.ds.v.dtype == new.ds.v.dtype == object and old.ds.v.encoding == new.ds.v.encoding
    for a, b in zip(old.ds.v.values, new.ds.v.values):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def _file_size_limit(path: Path) -> int:
    with xr.open_dataset(path) as ds:
        return ds.nbytes


@pytest.mark.parametrize("delta", [0, -1], ids=["at", "below"])
def test_a_file_exactly_at_the_limit(made, monkeypatch, delta):
    """The chunk size exactly the decoded size: loaded whole by both; one byte less: streamed by both."""
    path = made / "masked_ints_unpacked.nc"
    size = _file_size_limit(path) + delta
    old, new = _load_both(path, size, monkeypatch)
    assert old.streamed == new.streamed == (delta < 0)
    if not old.streamed:
        assert_same_dataset(old.ds, new.ds, path.name, indexes=False)


# The case of two different fill values: xarray warns that it masks both (the
# behaviour both paths must share), once per path.
@pytest.mark.filterwarnings("ignore:variable 'v' has multiple fill values")
def test_the_cases_are_stored_as_the_general_path_stores_them(made, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for make in CASES:
        if not isinstance(_general(made / f"{make.__name__}.nc", 1 << 30), Exception):
            shutil.copy(made / f"{make.__name__}.nc", src)
    old, new = stored_both_ways(src, tmp_path, monkeypatch, "--skip-unsupported")
    with atlas.Atlas.open(old, mode="r") as a, atlas.Atlas.open(new, mode="r") as b:
        names = a.list_datasets()
        assert names == b.list_datasets()
        for name in names:
            assert_stored_alike(a, b, name)
            try:
                want = a.to_xarray(name).load()
            except Exception as exc:  # stored as the general path stores it, unreadable both ways
                with pytest.raises(type(exc)):
                    b.to_xarray(name).load()
                continue
            assert_same_dataset(want, b.to_xarray(name).load(), name)


def test_an_xarray_without_create_default_indexes_loads_the_same(made, monkeypatch):
    """xarray before 2025 has no ``create_default_indexes`` (pyproject allows 2024.1): the one
    open then builds the default indexes, as the general path does, instead of failing."""
    real = xr.open_dataset

    def open_dataset(*args, **kwargs):  # an older xarray's: the backend refuses the keyword
        if "create_default_indexes" in kwargs:
            raise TypeError("open_dataset() got an unexpected keyword argument 'create_default_indexes'")
        return real(*args, **kwargs)

    path = made / "dims_without_coords_and_coord_attrs.nc"
    monkeypatch.setattr(xr, "open_dataset", open_dataset)
    old, new = _load_both(path, 1 << 30, monkeypatch)
    assert_same_dataset(old.ds, new.ds, path.name)  # default indexes included


def test_an_xarray_without_per_variable_decoding_loads_the_same(made, monkeypatch):
    """xarray before 2024.07 takes ``mask_and_scale`` and ``decode_times`` for all variables
    only (a mapping counts as true): packed variables are then swapped in after decoding, never
    decoded and marked packed."""
    real = xr.open_dataset

    def open_dataset(*args, **kwargs):  # an older xarray's: any mapping is simply true
        for key, on in (("mask_and_scale", True), ("decode_times", True), ("decode_timedelta", None)):
            if isinstance(kwargs.get(key), dict):
                kwargs[key] = on
        return real(*args, **kwargs)

    assert sources._per_variable_decoding("2024.07.0") and sources._per_variable_decoding("2026.9.1.dev3+g1")
    assert not sources._per_variable_decoding("2024.6.1") and not sources._per_variable_decoding("0+unknown")
    monkeypatch.setattr(xr, "open_dataset", open_dataset)
    monkeypatch.setattr(xr, "__version__", "2024.6.0")
    for name in ("scale_only", "masked_ints_unpacked", "float_packing"):
        path = made / f"{name}.nc"
        old, new = _load_both(path, 1 << 30, monkeypatch)
        assert_same_dataset(old.ds, new.ds, path.name, indexes=False)


class _Misbehaving:
    """A netCDF4 variable whose direct read misbehaves (another netCDF4 version's private call)."""

    def __init__(self, ncvar, get):
        self.ncvar, self._get = ncvar, get

    def __getitem__(self, key):
        return self.ncvar[key]


def _boom(*args):
    raise TypeError("_get() takes 4 positional arguments")


@pytest.mark.parametrize(
    "get",
    [_boom, lambda *a: np.zeros(1), lambda *a: [1, 2, 3, 4], lambda *a: None],
    ids=["raises", "shape", "list", "none"],
)
def test_a_misbehaving_direct_read_falls_back_to_indexing(made, get):
    from atlas.cli.netcdf_open import OnceStore, _read_all

    store = OnceStore(str(made / "compressed.nc"))
    try:
        for name, var in store.load()[0].items():
            ncvar = store.ds.variables[name]
            got = _read_all(_Misbehaving(ncvar, get), var.shape)
            want = ncvar[...]
            assert type(got) is np.ndarray and got.dtype == want.dtype and np.array_equal(got, want)
    finally:
        store.close()


def test_a_direct_read_of_another_dtype_leaves_the_file_lazy(made, monkeypatch):
    """Values of another dtype than the listing's: nothing is read whole, the file loads as before."""
    from atlas.cli import netcdf_open

    real = netcdf_open._read_all
    monkeypatch.setattr(netcdf_open, "_read_all", lambda ncvar, shape: real(ncvar, shape).astype("f8"))
    path = made / "scale_only.nc"
    store = netcdf_open.OnceStore(str(path))
    try:
        assert not store.read_whole(1 << 30)
        assert not any(type(v._data.array).__name__ == "NumpyIndexingAdapter" for v in store.load()[0].values())
    finally:
        store.close()
    old, new = _load_both(path, 1 << 30, monkeypatch)
    assert_same_dataset(old.ds, new.ds, path.name, indexes=False)


def test_a_file_is_read_whole_under_the_netcdf_lock(made, monkeypatch):
    """netCDF-C and HDF5 are not thread-safe: the reads take the lock xarray's own reads take
    (a dask worker runs one ingest task per thread)."""
    from atlas.cli import netcdf_open

    real, held = netcdf_open._read_all, []

    def read_all(ncvar, shape):
        held.append(store.lock.locked())
        return real(ncvar, shape)

    monkeypatch.setattr(netcdf_open, "_read_all", read_all)
    store = netcdf_open.OnceStore(str(made / "compressed.nc"))
    try:
        store.lock = threading.Lock()  # the store's lock, which xarray's wrapper reads under
        assert store.read_whole(1 << 30)
        assert held == [True, True] and not store.lock.locked()
    finally:
        store.close()
