"""The listing of a small plain NetCDF file read whole (:meth:`atlas.cli.netcdf_open.OnceStore.read_whole`).

A file read whole is listed by ``OnceStore`` itself, not by xarray's
``NetCDF4DataStore.load``.  The listing must be xarray's to the last detail: the same
variables in the same order, dimensions, dtypes, attributes (same order, same Python
and numpy types: a scalar ``np.int16`` is not a one-value array, a character
``_FillValue`` is ``np.bytes_``), every encoding entry, the global attributes, and
the values xarray's lazy wrapper reads.  Checked on every file of tests/data, on the
files made to hit each decoding rule (tests/test_sources*.py) and on files
Hypothesis makes with varied dtypes, shapes, formats, fill values and attributes;
the datasets decoded from it, and the stores written from them, must be those of the
general path.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
netCDF4 = pytest.importorskip("netCDF4")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_sources import (  # noqa: E402
    DATA_FILES,
    SURE,
    UNSURE,
    UNUSUAL,
    _plain_but_varied,
    _same,
    assert_same_dataset,
    assert_stored_alike,
    stored_both_ways,
)  # fmt: skip
from test_sources_cases import CASES, LAZY  # noqa: E402
from xarray.backends.netCDF4_ import NetCDF4DataStore  # noqa: E402

import atlas  # noqa: E402
from atlas.cli import sources  # noqa: E402
from atlas.cli.netcdf_open import OnceStore  # noqa: E402


def _xarray_listing(path: Path) -> tuple[dict, dict, dict]:
    """``(variables, attributes, values)`` as xarray's own store lists and reads the file."""
    store = NetCDF4DataStore(netCDF4.Dataset(str(path), mode="r"))
    try:
        variables, attributes = store.load()
        values = {name: var.values for name, var in variables.items()}
        return dict(variables), dict(attributes), values
    finally:
        store.close()


def assert_listed_as_xarray_lists(path: Path) -> bool:
    """The listing of ``path`` read whole equals xarray's; False (nothing compared) when it is not read whole."""
    store = OnceStore(str(path))
    try:
        if not store.read_whole(1 << 30):
            return False
        variables, attributes = store.load()
        got_values = {name: var.values for name, var in variables.items()}
    finally:
        store.close()
    want, want_attributes, want_values = _xarray_listing(path)
    where = path.name
    assert list(variables) == list(want), where
    assert type(attributes) is type(xr.backends.netCDF4_.FrozenDict({})), where
    assert _same(dict(attributes), want_attributes), (where, dict(attributes), want_attributes)
    for name, var in variables.items():
        ref = want[name]
        assert type(var) is type(ref) and var.dims == ref.dims and var.dtype == ref.dtype, (where, name)
        assert _same(dict(var.attrs), dict(ref.attrs)), (where, name, var.attrs, ref.attrs)
        assert list(var.encoding) == list(ref.encoding), (where, name, var.encoding, ref.encoding)
        assert _same(dict(var.encoding), dict(ref.encoding)), (where, name, var.encoding, ref.encoding)
        got, exp = got_values[name], want_values[name]
        assert got.dtype == exp.dtype and got.shape == exp.shape, (where, name)
        assert np.array_equal(got, exp, equal_nan=exp.dtype.kind == "f"), (where, name)
    return True


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """tests/data, the cases of tests/test_sources_cases.py and the varied files of tests/test_sources.py."""
    root = tmp_path_factory.mktemp("listing")
    for path in DATA_FILES:
        shutil.copy(path, root / path.name)
    for make in CASES:
        make(root / f"{make.__name__}.nc")
    _plain_but_varied(root / "plain.nc")
    for name, make in {**UNUSUAL, **UNSURE, **SURE}.items():
        make(root / name)
    return root


@pytest.mark.filterwarnings("ignore:variable '.*' has multiple fill values")
def test_every_file_read_whole_is_listed_as_xarray_lists_it(made):
    read = {p.name for p in sorted(made.glob("*.nc")) if assert_listed_as_xarray_lists(p)}
    for name in read:
        assert_read_whole_only_when_it_fits(made / name)
    # classic formats and a 0-D variable included; strings, enums, odd calendars, empty arrays left out
    unread = {f"{n}.nc" for n in LAZY} | set(UNUSUAL)
    assert read == {p.name for p in made.glob("*.nc")} - unread


def test_a_plain_file_is_listed_without_xarray_per_variable_listing(made, monkeypatch):
    """Read whole, a file is listed by the store itself: xarray's per-variable listing (a
    dozen netCDF4 calls and a lazy wrapper per variable) is not used, and is used for a file
    that is not read whole."""

    def refuse(self, name, var):
        raise RuntimeError(f"xarray's listing of {name}")

    monkeypatch.setattr(NetCDF4DataStore, "open_store_variable", refuse)
    for path in [made / "GL_PR_BO_JLKU.nc", made / "plain.nc", made / "compressed.nc"]:
        store = OnceStore(str(path))
        try:
            assert store.read_whole(1 << 30), path.name
            assert store.load()[0]
        finally:
            store.close()
    store = OnceStore(str(made / "vlen.nc"))
    try:
        assert not store.read_whole(1 << 30)
        with pytest.raises(RuntimeError, match="xarray's listing"):
            store.load()
    finally:
        store.close()


def test_a_file_over_the_limit_is_not_listed_here(made):
    store = OnceStore(str(made / "GL_PR_BO_JLKU.nc"))
    try:
        assert not store.read_whole(64)
        assert store._listed is None  # xarray lists it when the dataset is decoded
        assert all(type(v._data.array).__name__ == "NetCDF4ArrayWrapper" for v in store.load()[0].values())
    finally:
        store.close()


# -- files Hypothesis makes ---------------------------------------------------------------------------

_NC3_DTYPES = ["i1", "i2", "i4", "f4", "f8", "S1"]
_NC4_DTYPES = [*_NC3_DTYPES, "u1", "u2", "u4", "i8", "u8"]
_UNITS = ["m", "degree_C", "days since 2000-01-01", "hours since 1950-01-01T00:00:00Z", "seconds", "1"]


@st.composite
def netcdf_files(draw):
    """A recipe for a small NetCDF file: format, dimensions, variables with varied attributes."""
    fmt = draw(st.sampled_from(["NETCDF4", "NETCDF4_CLASSIC", "NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET"]))
    dims = {"d0": draw(st.integers(1, 4)), "d1": draw(st.integers(1, 3))}
    unlimited = draw(st.booleans())
    nvars = draw(st.integers(1, 5))
    dtypes = _NC4_DTYPES if fmt == "NETCDF4" else _NC3_DTYPES
    variables = []
    for i in range(nvars):
        dtype = draw(st.sampled_from(dtypes))
        vdims = tuple(draw(st.sampled_from([(), ("d0",), ("d1",), ("d0", "d1"), ("rec",)])))
        if vdims == ("rec",) and not unlimited:
            vdims = ("d0",)
        attrs = draw(st.lists(st.sampled_from(
            ["fill", "missing", "scale", "offset", "units", "calendar", "long_name", "valid_range", "flag_values",
             "unsigned", "lsd", "one_value_array", "int_attr", "float_attr", "empty_text"]
        ), unique=True, max_size=6))  # fmt: skip
        variables.append({
            "name": f"v{i}", "dtype": dtype, "dims": vdims, "attrs": attrs,
            "zlib": fmt.startswith("NETCDF4") and draw(st.booleans()),
            "big": fmt == "NETCDF4" and dtype != "S1" and draw(st.booleans()),
            "seed": draw(st.integers(0, 2**16)),
        })  # fmt: skip
    globals_ = draw(st.lists(st.sampled_from(["title", "int", "floats", "text_fill"]), unique=True))
    return fmt, dims, unlimited, variables, globals_


def _attr_value(kind: str, dtype: np.dtype, rng) -> object:
    if kind in ("fill", "missing"):
        if dtype.kind == "S":
            return b" " if kind == "fill" else "x"
        return np.array(rng.integers(-5, 5) if dtype.kind in "iu" else -9.5, dtype=dtype)[()]
    return {
        "scale": 0.5, "offset": np.float32(3.0), "units": _UNITS[int(rng.integers(len(_UNITS)))],
        "calendar": ["standard", "gregorian", "noleap", "PROLEPTIC_GREGORIAN"][int(rng.integers(4))],
        "long_name": "a variable \u00e9", "valid_range": np.array([0, 9], "i2"),
        "flag_values": np.arange(3, dtype="i1"), "unsigned": "true", "lsd": np.int32(2),
        "one_value_array": np.array([7], "i4"), "int_attr": np.int64(-3), "float_attr": np.array([1.5, 2.5]),
        "empty_text": "",
    }[kind]  # fmt: skip


_ATTR_NAMES = {
    "fill": "_FillValue", "missing": "missing_value", "scale": "scale_factor", "offset": "add_offset",
    "unsigned": "_Unsigned", "lsd": "least_significant_digit",
}  # fmt: skip


def _write(path: Path, recipe, values_seed: int | None = None, sizes: dict[str, int] | None = None,
           records: int = 3) -> None:
    """``recipe``'s file; with ``values_seed``, the same attributes over other values (some -9.5, a fill
    value some recipes use), and ``sizes``/``records`` for the lengths of the dimensions."""
    fmt, dims, unlimited, variables, globals_ = recipe
    dims = dims if sizes is None else sizes
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        for name, size in dims.items():
            nc.createDimension(name, size)
        if unlimited:
            nc.createDimension("rec", None)
        for spec in variables:
            rng = np.random.default_rng(spec["seed"])
            values_rng = rng if values_seed is None else np.random.default_rng([spec["seed"], values_seed])
            dtype = np.dtype(spec["dtype"])
            attrs = {_ATTR_NAMES.get(k, k): _attr_value(k, dtype, rng) for k in spec["attrs"]}
            if fmt.startswith("NETCDF3") and attrs.get("_FillValue") is not None and dtype.kind == "S":
                attrs.pop("_FillValue")
            fill = attrs.pop("_FillValue", None)
            kwargs = {"zlib": True} if spec["zlib"] else {}
            if spec["big"]:
                kwargs["endian"] = "big"
            stored = dtype.newbyteorder(">") if spec["big"] else dtype
            var = nc.createVariable(spec["name"], stored, spec["dims"], fill_value=fill, **kwargs)
            var.set_auto_maskandscale(False)
            var.set_auto_chartostring(False)
            shape = tuple(records if d == "rec" else dims[d] for d in spec["dims"])
            if dtype.kind == "S":
                values = values_rng.choice(np.array(list(b"ab "), dtype="S1"), size=shape)
            elif dtype.kind in "iu":
                values = values_rng.integers(0 if values_seed is None else -6, 100, size=shape).astype(dtype)
            else:
                values = values_rng.normal(size=shape).astype(dtype)
                if values_seed is not None:
                    values[values_rng.random(shape) < 0.2] = -9.5
            var[...] = values
            for key, value in attrs.items():  # after the values: netCDF4 would apply them while writing
                var.setncattr(key, value)
        for kind in globals_:
            value = {"title": "made", "int": np.int16(4), "floats": np.array([1.0, 2.0], "f4"), "text_fill": " "}
            nc.setncattr(kind, value[kind])


@pytest.mark.filterwarnings("ignore:variable '.*' has multiple fill values")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=netcdf_files())
def test_made_files_are_listed_and_loaded_as_xarray_does(tmp_path_factory, recipe):
    path = tmp_path_factory.mktemp("made") / "made.nc"
    _write(path, recipe)
    event(f"read whole: {assert_listed_as_xarray_lists(path)}")
    want = _general(path)
    if isinstance(want, Exception):  # xarray refuses it: so does the one open
        with pytest.raises(type(want)):
            sources.load_source(sources.Source(path, "f"), 1 << 30)
        return
    got = sources.load_source(sources.Source(path, "f"), 1 << 30)
    assert got.warnings == want.warnings
    assert_same_dataset(want.ds, got.ds, str(recipe), indexes=False)
    assert_read_whole_only_when_it_fits(path)


def assert_read_whole_only_when_it_fits(path: Path) -> None:
    """A file read whole under a limit decodes to at most that many bytes (``_load_or_plan``
    loads it without summing its size again): one byte less than its size, it is not read whole."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # about the file's attributes: compared by the tests above
            with xr.open_dataset(path) as ds:
                size = ds.nbytes
    except ValueError:  # xarray refuses it (then so does load_source): nothing is loaded
        return
    store = OnceStore(str(path))
    try:
        assert not store.read_whole(size - 1), path.name
    finally:
        store.close()


def _general(path: Path):
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(sources, "_open_once", lambda *args: None)
            return sources.load_source(sources.Source(path, "f"), 1 << 30)
    except Exception as exc:
        return exc


@pytest.mark.filterwarnings("ignore:variable '.*' has multiple fill values")
def test_made_files_are_stored_as_the_general_path_stores_them(tmp_path, monkeypatch):
    """Files made from fixed recipes (every attribute kind, each format), stored by ``atlas create``
    through the listing and through the general path: the same stores."""
    src = tmp_path / "src"
    src.mkdir()
    kinds = ["fill", "missing", "scale", "offset", "units", "long_name", "valid_range", "flag_values",
             "lsd", "one_value_array", "int_attr", "float_attr", "empty_text"]  # fmt: skip
    n = 0
    for fmt in ("NETCDF4", "NETCDF4_CLASSIC", "NETCDF3_CLASSIC"):
        dtypes = _NC4_DTYPES if fmt == "NETCDF4" else _NC3_DTYPES
        for i, dtype in enumerate(dtypes):
            variables = [
                {"name": "a", "dtype": dtype, "dims": ("d0", "d1"), "attrs": kinds[i % 4: i % 4 + 5],
                 "zlib": fmt != "NETCDF3_CLASSIC" and i % 2 == 0, "big": fmt == "NETCDF4" and i % 3 == 0 and
                 dtype != "S1", "seed": i},
                {"name": "b", "dtype": "f8", "dims": ("d0",), "attrs": kinds[5 + i % 8: 8 + i % 8], "zlib": False,
                 "big": False, "seed": i + 100},
                {"name": "d0", "dtype": "i4", "dims": ("d0",), "attrs": ["units"], "zlib": False, "big": False,
                 "seed": i + 200},
            ]  # fmt: skip
            path = src / f"{fmt.lower()}_{dtype}.nc"
            _write(path, (fmt, {"d0": 3, "d1": 2}, False, variables, ["title", "int", "floats"]))
            if isinstance(_general(path), Exception):
                path.unlink()
                continue
            assert assert_listed_as_xarray_lists(path), path.name
            n += 1
    assert n >= 15
    old, new = stored_both_ways(src, tmp_path, monkeypatch, "--skip-unsupported")
    with atlas.Atlas.open(old, mode="r") as a, atlas.Atlas.open(new, mode="r") as b:
        names = a.list_datasets()
        assert names == b.list_datasets() and len(names) == n
        for name in names:
            assert_stored_alike(a, b, name)
            assert_same_dataset(a.to_xarray(name).load(), b.to_xarray(name).load(), name)


def test_the_last_decode_is_handed_the_listing_itself(made):
    """Decoded once (its packed variables known from the listing), a file's decode takes the
    listing's own variables instead of copies; any later listing asks the file again."""
    store = OnceStore(str(made / "GL_PR_BO_JLKU.nc"))
    try:
        assert store.read_whole(1 << 30) and store.surely_packed() is not None
        listed = store._list()[0]
        copies = store.load()[0]
        assert all(copies[k] is not v for k, v in listed.items())  # without hand_over: copies
        store.hand_over()
        given, attributes = store.load()
        assert all(given[k] is v for k, v in listed.items())
        again, again_attributes = store.load()  # after the hand-over: xarray's listing, the same entries
        assert list(again) == list(given) and _same(dict(again_attributes), dict(attributes))
        for name, var in again.items():
            assert type(var._data.array).__name__ == "NetCDF4ArrayWrapper", name
            assert var.dims == given[name].dims and _same(dict(var.attrs), dict(given[name].attrs)), name
            assert _same(dict(var.encoding), dict(given[name].encoding)), name
            assert np.array_equal(var.values, given[name].values, equal_nan=var.dtype.kind == "f"), name
    finally:
        store.close()


def test_a_file_decoded_once_hands_its_listing_over(made):
    """``_open_once`` hands the listing over when the packed variables are known from it (one
    decode), and keeps it for the second decode (``_packed_from``) when they are not."""
    ds, store, _, packed = sources._open_once(made / "GL_PR_BO_JLKU.nc", None, 1 << 30)
    try:
        assert packed and store._listed is None
    finally:
        ds.close()
    ds, store, _, packed = sources._open_once(made / "unsure_bounds.nc", None, 1 << 30)
    try:
        assert not packed and store._listed is not None
    finally:
        ds.close()
