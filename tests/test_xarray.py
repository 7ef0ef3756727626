"""xarray/dask integration: exact round trips, streaming writes, lazy reads, the backend."""

from __future__ import annotations

import datetime as dt
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import hypothesis.extra.numpy as npst  # noqa: E402
import xarray.testing.strategies as xrst  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import atlas  # noqa: E402
import atlas.xarray as ax  # noqa: E402
import atlas.xarray.conversions  # noqa: E402  (ax.conversions)
from atlas import errors  # noqa: E402
from atlas.dataset import DatasetView  # noqa: E402

DATA = Path(__file__).parent / "data" / "GL_PR_BO_JLKU.nc"


@pytest.fixture(autouse=True)
def atlas_methods(monkeypatch):
    """Until the lead wires them in: Atlas.add_xr_dataset / to_xarray / to_xarray_many."""
    for name in ("add_xr_dataset", "to_xarray", "to_xarray_many"):
        if not hasattr(atlas.Atlas, name):
            monkeypatch.setattr(atlas.Atlas, name, getattr(ax, name), raising=False)


def assert_exact(expected, got):
    """assert_identical plus exact dtypes of variables and exact types of attribute values."""
    xr.testing.assert_identical(expected, got)
    assert set(expected.coords) == set(got.coords)
    pairs = [(expected.attrs, got.attrs, "dataset")]
    for name, var in expected.variables.items():
        assert got[name].dtype == var.dtype, (name, got[name].dtype, var.dtype)
        pairs.append((var.attrs, got[name].attrs, name))
    for want, have, where in pairs:
        assert list(want) == list(have), where
        for key, value in want.items():
            other = have[key]
            assert type(other) is type(value), (where, key, type(value), type(other))
            if isinstance(value, np.ndarray):
                assert (other.dtype, other.shape) == (value.dtype, value.shape), (where, key)


def round_trip(store, ds, name="d", **kw):
    store.add_xr_dataset(ds, name, **kw)
    store.flush()
    return store.to_xarray(name)


# -- the real Copernicus file ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:String dimension naming mismatch", "ignore::xarray.SerializationWarning")
@pytest.mark.parametrize(
    "kwargs", [{}, {"decode_times": False, "mask_and_scale": False}, {"chunks": {}}], ids=["cf", "raw", "dask"]
)
def test_copernicus_profile_round_trip(store, tmp_path, kwargs):
    pytest.importorskip("netCDF4")
    with xr.open_dataset(DATA, **kwargs) as src:
        back = round_trip(store, src)
        assert_exact(src, back)
        assert len(src.attrs) == 50
        for name, var in src.variables.items():  # CF encoding kept, so to_netcdf re-encodes identically
            for key in ("_FillValue", "units", "calendar", "dtype"):
                if key in var.encoding:
                    assert str(back[name].encoding[key]) == str(var.encoding[key]), (name, key)
        back.to_netcdf(tmp_path / "from_atlas.nc")  # re-encodes exactly as the source would
        src.to_netcdf(tmp_path / "from_source.nc")
        with (
            xr.open_dataset(tmp_path / "from_atlas.nc", **kwargs) as a,
            xr.open_dataset(tmp_path / "from_source.nc", **kwargs) as b,
        ):
            assert_exact(b, a)
            for name in b.variables:
                assert a[name].encoding.get("dtype") == b[name].encoding.get("dtype"), name
    view = store.open_dataset("d")
    assert view.get_attribute("title").startswith("Global Ocean")  # the plain view: globals as they are
    if kwargs.get("decode_times") is not False:
        assert view.get_attribute("FLU2.units") == "mg m-3"  # ... and {var}.{attr}
        assert view.array_meta("TIME")["dtype"] == "timestamp_nanoseconds"
    assert view.array_meta("DC_REFERENCE")["dtype"] == "string"
    assert view.read_array("DC_REFERENCE").tolist() == ["57192430", "57198530", "57199173"]
    assert view.array_meta("TRAJECTORY")["shape"] == []
    fill = view.array_meta("FLU2")["fill_value"]
    assert fill == np.float32(9.96921e36) and fill.dtype == np.float32
    assert view.array_meta("TIME_QC")["fill_value"] == -127  # int8 fill on decoded float32 data


def test_encoding_fill_goes_back_to_encoding_and_attr_fill_to_attrs(store):
    ds = xr.Dataset({"a": ("x", np.array([1.0, np.nan])), "b": ("x", np.array([1, -9], dtype="int16"))})
    ds.a.encoding["_FillValue"] = np.float32(-999.0)
    ds.b.attrs["_FillValue"] = np.int16(-9)
    back = round_trip(store, ds)
    assert_exact(ds, back)
    view = store.open_dataset("d")
    assert view.array_meta("a")["fill_value"] == -999.0
    assert view.array_meta("b")["fill_value"] == -9
    assert type(back.a.encoding["_FillValue"]) is np.float32 and "_FillValue" not in back.a.attrs
    assert back.b.attrs["_FillValue"] == -9 and "_FillValue" not in back.b.encoding


# -- exact round trips of names, attrs and dtypes -----------------------------------------------------------


def test_dotted_names_and_colliding_attrs_round_trip(store):
    ds = xr.Dataset(
        {
            "a.b": ((), 1.5, {"c": "of a.b"}),
            "a": ((), 2, {"b.c": "of a", "": "empty name"}),
            "_hidden": ("x", [1, 2], {"k": 1}),  # not a valid array name: escaped
            "with/slash": ("x", [3, 4]),
        },
        attrs={"a.b.c": "global", "_atlas_xarray/vars": "a user attr in the reserved namespace", "": "e"},
    )
    assert_exact(ds, round_trip(store, ds))
    view = store.open_dataset("d")
    assert view.get_attribute("a.b.c") == "global"  # first come, first served in the plain view
    assert sorted(view.list_arrays()) == ["%_hidden", "%with%2Fslash", "a", "a.b"]


def test_every_dtype_and_attribute_kind_round_trips(store):
    ds = xr.Dataset(
        {
            "t_s": ("x", np.array(["2000-01-01", "NaT", "1500-01-01", "2500-06-01", "2020-01-01"], "M8[s]")),
            "t_ms": ("x", np.array(["2000-01-01", "NaT", "1900-01-01", "2200-06-01", "2020-01-01"], "M8[ms]")),
            "t_ns": ("x", np.array(["2000-01-01", "NaT", "1900-01-01", "2200-06-01", "2020-01-01"], "M8[ns]")),
            "td": ("x", np.array([1, -2, "NaT", 4, 5], "m8[s]")),
            "tdn": ("x", np.array([1, -2, "NaT", 4, 5], "m8[ns]")),
            "b": ("x", np.array([True, False, True, False, True])),
            "f2": ("x", np.arange(5, dtype="f2")),
            "be": ("x", np.arange(5, dtype=">i4")),
            "sb": ("x", np.array([b"a", b"\xb0C", b"", b"xyz", b"q"], dtype="S3")),  # not UTF-8: Latin-1
            "sb8": ("x", np.array([b"a", "é".encode(), b"", b"xyz", b"q"], dtype="S3")),
            "ob": ("x", np.array([b"a", b"b", b"", b"xyz", b"q"], dtype=object)),
            "u": ("x", np.array(["a", "é", "", "xyz", "q"], dtype="U3")),
            "os": ("x", np.array(["a", "温度", "", "x\x00z", "q"], dtype=object)),
            "u64": ("x", np.array([0, 2**64 - 1, 3, 4, 5], dtype="uint64")),
            "i8": (("x", "y"), np.arange(10, dtype="int8").reshape(5, 2)),
            "zero": (("x", "z"), np.zeros((5, 0), "float32")),
            "s0": ((), "scalar string"),
        },
        coords={"x": np.arange(5.0), "lbl": ("x", list("abcde")), "t0": np.datetime64("2001-01-01", "ns")},
        attrs={
            "none": None,
            "tuple": (1, 2),
            "bytes": b"\xb0",
            "utf8bytes": "é".encode(),
            "np64": np.int64(3),
            "f64": np.float64(1.5),
            "npb": np.bool_(True),
            "npstr": np.str_("s"),
            "npbytes": np.bytes_(b"ab"),
            "td": np.timedelta64(5, "s"),
            "dts": np.datetime64("2000-01-01", "s"),
            "dtns": np.datetime64("2000", "ns"),
            "f16": np.float16(1.5),
            "i8": np.int8(-3),
            "u64": np.uint64(2**64 - 1),
            "arr0": np.array(5),
            "arrS": np.array([b"a", b"\xff"]),
            "arrU": np.array(["x", "yy"]),
            "arrM": np.array(["2000-01-01", "3000"], "M8[D]"),
            "arrm": np.array([1, 2], "m8[ms]"),
            "pydt": dt.datetime(2020, 1, 2, 3, 4, 5, 6),
            "pyd": dt.date(2020, 1, 2),
            "list": [1, 2, 3],
            "lists": ["a", "b"],
            "listf": [np.float32(1.5)],
            "empty": [],
            "objarr": np.array([b"x", b"y"], dtype=object),
            "big": 2**63 + 5,
            "arr2d": np.arange(6, dtype="u2").reshape(2, 3),
            "nan": float("nan"),
            "inf": -np.inf,
            "unicode": "héllo 温度",
            "emptystr": "",
            "bool": False,
            "arrb": np.array([True, False]),
        },
    )
    back = round_trip(store, ds)
    assert_exact(ds, back)
    view = store.open_dataset("d")
    assert view.array_meta("t_s")["dtype"] == "int64"  # beyond the ns range: counts of seconds
    assert view.array_meta("t_ms")["dtype"] == "timestamp_nanoseconds"  # fits: stored as timestamps
    assert view.array_meta("td")["dtype"] == "int64"
    assert view.read_array("sb").tolist() == ["a", "°C", "", "xyz", "q"]
    assert view.read_array("sb8").tolist()[1] == "é"


def test_surrogate_escaped_text_is_sanitised_to_utf8(store):
    ds = xr.Dataset(
        {"s": ("x", np.array(["ok", "\udcb0C", "\ud800x"], dtype=object), {"units": "\udcb0C"})},
        attrs={"title": "caf\udce9", "k\udcff": 1},
    )
    back = round_trip(store, ds)
    assert back.s.values.tolist() == ["ok", "°C", "\ufffdx"]
    assert back.s.attrs == {"units": "°C"}
    assert back.attrs == {"title": "café", "kÿ": 1}
    reopened = atlas.Atlas.open(store.location)  # valid UTF-8 in the manifest
    assert reopened.open_dataset("d").get_attribute("title") == "café"


def test_surrogate_escaped_utf8_bytes_decode_as_utf8_first(store):
    # netCDF-C gives Python the UTF-8 bytes of "µmol" as surrogate escapes when the
    # attribute is not declared UTF-8; only bytes that are not UTF-8 fall back to Latin-1.
    ds = xr.Dataset(
        {"v": ("x", np.array(["\udcc2\udcb5mol", "\udcb5"], dtype=object), {"units": "\udcc2\udcb5mol"})},
        attrs={"mixed": "\udcc3\udca9t\udce9", "both": "é\udcb0"},
    )
    back = round_trip(store, ds)
    assert back.v.attrs["units"] == "µmol"
    assert back.v.values.tolist() == ["µmol", "µ"]
    assert back.attrs == {"mixed": "Ã©té", "both": "é°"}  # not valid UTF-8 as a whole: Latin-1


@pytest.mark.parametrize(
    ("dtype", "fill", "where"),
    [("int32", 1.5, "attrs"), ("int8", 300, "attrs"), ("int16", float("nan"), "encoding"), ("int32", "x", "attrs"),
     ("float32", 1e300, "encoding"), ("uint8", -1, "encoding")],
)  # fmt: skip
def test_fill_value_that_does_not_fit_the_dtype_raises(store, dtype, fill, where):
    ds = xr.Dataset({"ok": ("x", np.arange(2.0)), "bad_var": ("x", np.array([1, 2], dtype=dtype))})
    getattr(ds.bad_var, where)["_FillValue"] = fill
    with pytest.raises(errors.FillValueError, match=r"variable 'bad_var'.*_FillValue") as info:
        store.add_xr_dataset(ds, "d")
    assert isinstance(info.value, TypeError)
    assert repr(fill) in str(info.value) or str(fill) in str(info.value)
    assert not store.dataset_exists("d")
    assert not store.has_pending_changes


def test_fill_value_of_the_encoded_dtype_is_left_to_cf(store):
    # What xr.open_dataset gives for packed data and times: the fill belongs to the on-disk dtype.
    ds = xr.Dataset({"t": ("x", np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]")), "u": ("x", [1, 2])})
    ds.t.encoding.update({"_FillValue": -1.5, "dtype": np.dtype("float64"), "units": "days since 2000-01-01"})
    ds.u.encoding.update({"_FillValue": np.int8(-1), "dtype": np.dtype("int8"), "_Unsigned": "true"})
    ds["u"] = ds.u.astype("uint8")
    ds.u.encoding.update({"_FillValue": 300, "dtype": np.dtype("int16")})
    back = round_trip(store, ds)
    assert back.t.encoding["_FillValue"] == -1.5 and back.u.encoding["_FillValue"] == 300


def test_per_variable_chunks_as_in_the_original_docs(store):
    ds = xr.Dataset(
        {"temperature": (("time", "lat", "lon"), np.zeros((4, 18, 36), "float32")), "depth": ("lat", np.arange(18.0))}
    )
    store.add_xr_dataset(ds, "a", chunks={"temperature": [1, 18, 36]})
    ds.atlas.write(store, "b", chunks={"temperature": (2, -1, None), "depth": [9]})
    store.add_xr_dataset(ds, "c", chunks={"lat": 6})
    store.flush()
    assert store.open_dataset("a").array_meta("temperature")["chunk_shape"] == [1, 18, 36]
    assert store.open_dataset("b").array_meta("temperature")["chunk_shape"] == [2, 18, 36]
    assert store.open_dataset("b").array_meta("depth")["chunk_shape"] == [9]
    assert store.open_dataset("c").array_meta("temperature")["chunk_shape"][1] == 6
    assert_exact(ds, store.to_xarray("a"))


@pytest.mark.parametrize(
    ("chunks", "match"),
    [({"temperature": [1, 18, 36], "lat": 6}, "mixes"), ({"nope": [1]}, "variable 'nope'"),
     ({"nope": 3}, "'nope', which is not a dimension"), ({"temperature": [1, 18]}, "one positive int"),
     ({"temperature": [1, 0, 36]}, "one positive int")],
)  # fmt: skip
def test_bad_chunks_name_both_forms(store, chunks, match):
    ds = xr.Dataset({"temperature": (("time", "lat", "lon"), np.zeros((4, 18, 36), "float32"))})
    with pytest.raises(errors.InvalidArgumentError, match=match) as info:
        store.add_xr_dataset(ds, "d", chunks=chunks)
    if match in ("mixes", "variable 'nope'", "'nope', which is not a dimension"):
        assert "{dimension: size}" in str(info.value) and "{variable: [" in str(info.value)
    assert not store.dataset_exists("d")


@pytest.mark.parametrize(
    "code",
    [
        "import atlas, sys; assert 'xarray' not in sys.modules, 'import atlas imported xarray'",
        "import atlas; import xarray as xr; ds = xr.Dataset({'v': ('x', [1, 2])}); "
        "s = atlas.Atlas.create(sys.argv[1]); ds.atlas.write(s, 'd'); s.close(); "
        "assert atlas.Atlas.open(sys.argv[1]).list_datasets() == ['d']",
        "import xarray as xr; import atlas; assert hasattr(xr.Dataset, 'atlas'); "
        "from atlas.xarray import AtlasDatasetAccessor; assert isinstance(xr.Dataset().atlas, AtlasDatasetAccessor)",
        "import atlas; import xarray.core.dataset; import xarray; assert hasattr(xarray.Dataset, 'atlas'); "
        "assert not any(type(f).__module__ == 'atlas.xarray_hook' for f in sys.meta_path)",
    ],
    ids=["atlas-alone", "atlas-then-xarray", "xarray-then-atlas", "hook-removed"],
)
def test_import_atlas_registers_the_accessor_in_either_order(tmp_path, code):
    import os
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code, str(tmp_path / "s.atlas")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_bool_variables_are_bool_arrays(store):
    ds = xr.Dataset({"flag": ("x", np.array([True, False, True]))})
    back = round_trip(store, ds)
    assert store.open_dataset("d").array_meta("flag")["dtype"] == "bool"
    assert_exact(ds, back)


def test_datasets_written_with_the_array_api_read_as_xarray(store):
    view = store.create_dataset("plain")
    view.define_array("time", "timestamp_nanoseconds", ["time"], [3])
    view.write_array("time", [0], np.array(["2020-01-01", "2020-01-02", "2020-01-03"], "M8[ns]"))
    view.define_array("TEMP", "float32", ["time"], [3], fill_value=-1.0)
    view.write_array("TEMP", [0], np.array([1, 2, 3], "float32"))
    view.define_array("TEMP.qc", "int8", ["time"], [3])
    view.set_attribute("TEMP.units", "degC")
    view.set_attribute("TEMP.qc.meaning", "flags")
    view.set_attribute("title", "plain")
    store.flush()
    back = store.to_xarray("plain")
    assert back.attrs == {"title": "plain"}
    assert back.TEMP.attrs == {"units": "degC"}
    assert back["TEMP.qc"].attrs == {"meaning": "flags"}  # the longest array-name prefix wins
    assert back.TEMP.encoding["_FillValue"] == -1.0
    assert "time" in back.indexes


def test_attributes_edited_through_the_store_api_show_up(store):
    ds = xr.Dataset({"T": ("x", np.arange(3.0), {"units": "K"})}, attrs={"title": "t"})
    store.add_xr_dataset(ds, "d")
    view = store.open_dataset("d")
    view.set_attribute("T.units", "degC")  # the plain view is the source of truth
    view.set_attribute("T.comment", "added later")
    view.set_attribute("history", "added later")
    store.flush()
    back = store.to_xarray("d")
    assert back.T.attrs == {"units": "degC", "comment": "added later"}
    assert back.attrs == {"title": "t", "history": "added later"}


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ds", "error", "match"),
    [
        (xr.Dataset({"z": ("x", np.array([1 + 2j]))}), errors.DTypeError, "variable 'z'.*complex"),
        (xr.Dataset({"o": ("x", np.array(["a", 1], dtype=object))}), errors.DTypeError, "variable 'o'.*int, str"),
        (xr.Dataset({"o": ("x", np.array(["a", b"b"], dtype=object))}), errors.DTypeError, "variable 'o'"),
        (xr.Dataset({"o": ("x", np.array([None, "a"], dtype=object))}), errors.DTypeError, "got float, str"),
        (xr.Dataset({"f": ("x", np.zeros(1, "longdouble"))}), errors.DTypeError, "variable 'f'"),
        (xr.Dataset({"v": ("x", [1])}, attrs={"d": {"nested": 1}}), errors.DTypeError, "dataset attribute 'd'"),
        (xr.Dataset({"v": ("x", [1], {"c": np.complex64(1)})}), errors.DTypeError, "variable 'v' attribute 'c'"),
        (xr.Dataset({"v": ("x", [1], {"l": ["a", 1]})}), errors.DTypeError, "variable 'v' attribute 'l'"),
        (xr.Dataset({"v": ("x", [1], {"b": 2**70})}), errors.ValueOverflowError, "attribute 'b'"),
        (
            xr.Dataset({"v": ("x", [1], {"t": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)})}),
            errors.DTypeError,
            "timezone",
        ),
        (xr.Dataset({1: ("x", [1])}), errors.InvalidNameError, "variable 1"),
    ],
)
def test_bad_input_raises_clear_errors_and_writes_nothing(store, ds, error, match):
    with pytest.raises(error, match=match):
        store.add_xr_dataset(ds, "bad")
    assert not store.dataset_exists("bad")
    store.flush()
    assert atlas.Atlas.open(store.location).list_datasets() == []


def test_bad_arguments(store, tmp_path):
    ds = xr.Dataset({"v": ("x", np.arange(4))})
    with pytest.raises(errors.InvalidArgumentError, match="DataArray"):
        store.add_xr_dataset(ds.v, "d")
    with pytest.raises(errors.InvalidArgumentError, match="chunks"):
        store.add_xr_dataset(ds, "d", chunks=0)
    with pytest.raises(errors.InvalidArgumentError, match="'y'"):
        store.add_xr_dataset(ds, "d", chunks={"y": 2})
    with pytest.raises(errors.InvalidNameError):
        store.add_xr_dataset(ds, "_d")
    store.add_xr_dataset(ds, "d")
    with pytest.raises(errors.DatasetExistsError):
        store.add_xr_dataset(ds, "d")
    store.flush()
    with pytest.raises(errors.ReadOnlyError):
        atlas.Atlas.open(store.location, mode="r").add_xr_dataset(ds, "e")
    with pytest.raises(errors.DatasetNotFoundError):
        store.to_xarray("nope")


def test_failing_add_leaves_no_partial_dataset(store):
    store.add_xr_dataset(xr.Dataset({"v": ("x", np.arange(3))}), "keep")

    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:
            raise RuntimeError("source failed")
        return block

    bad = xr.Dataset(
        {
            "ok": ("x", np.arange(8.0)),
            "v": ("x", da.arange(8, chunks=2).map_blocks(explode, dtype="int64")),
        },
        attrs={"title": "half"},
    )
    with pytest.raises(RuntimeError, match="source failed"):
        store.add_xr_dataset(bad, "bad")
    assert store.list_datasets() == ["keep"]
    mixed = xr.Dataset({"o": ("x", da.from_array(np.array(["a", "b", b"c", b"d"], dtype=object), chunks=2))})
    with pytest.raises(errors.DTypeError, match="mixes str and bytes"):
        store.add_xr_dataset(mixed, "mixed")
    store.flush()
    again = atlas.Atlas.open(store.location)
    assert again.list_datasets() == ["keep"]
    assert again.list_arrays() == ["v"]


# -- streaming dask writes -----------------------------------------------------------------------------


@pytest.fixture
def write_log(monkeypatch):
    log = []
    real = DatasetView._write_locked  # every staged write: write_array's and stage_array_writes'

    def spy(self, state, name, start, data):
        log.append((name, tuple(start), data.shape))
        return real(self, state, name, start, data)

    monkeypatch.setattr(DatasetView, "_write_locked", spy)
    return log


def assert_chunk_aligned(log, name, chunk, shape):
    writes = [(s, n) for a, s, n in log if a == name]
    assert writes
    for start, size in writes:
        for b, n, c, full in zip(start, size, chunk, shape):
            assert b % c == 0 and (n % c == 0 or b + n == full), (start, size, chunk)
    return writes


def test_dask_chunking_becomes_the_disk_chunking_and_blocks_stream(store, write_log):
    data = np.arange(60.0).reshape(12, 5)
    ds = xr.Dataset({"v": (("t", "z"), da.from_array(data, chunks=(4, 5)))})
    back = round_trip(store, ds)
    assert store.open_dataset("d").array_meta("v")["chunk_shape"] == [4, 5]
    assert [w[1:] for w in write_log] == [((0, 0), (4, 5)), ((4, 0), (4, 5)), ((8, 0), (4, 5))]
    assert_exact(ds, back)


@pytest.mark.parametrize(
    ("chunks", "expected"), [(3, [3, 3]), ({"t": 6}, [6, 5]), ({"t": -1, "z": 2}, [12, 2]), (None, [5, 5])]
)
def test_irregular_dask_chunks_and_overrides_write_whole_chunks(store, write_log, chunks, expected):
    data = np.arange(60.0).reshape(12, 5)
    ds = xr.Dataset({"v": (("t", "z"), da.from_array(data, chunks=((3, 5, 2, 2), 5)))})
    store.add_xr_dataset(ds, "d", chunks=chunks)
    meta = store.open_dataset("d").array_meta("v")
    assert meta["chunk_shape"] == expected
    assert_chunk_aligned(write_log, "v", expected, (12, 5))
    store.flush()
    assert_exact(ds, store.to_xarray("d"))


def test_numpy_variables_honour_chunks_and_write_aligned_slabs(store, write_log):
    ds = xr.Dataset({"v": (("t", "z"), np.arange(60.0).reshape(12, 5))})
    store.add_xr_dataset(ds, "d", chunks={"t": 5})
    assert store.open_dataset("d").array_meta("v")["chunk_shape"] == [5, 5]
    assert_chunk_aligned(write_log, "v", (5, 5), (12, 5))


def test_streaming_write_of_a_dask_array_larger_than_the_budget_is_memory_bounded(tmp_path, monkeypatch):
    if "max_pending_bytes" not in atlas.Atlas.create.__code__.co_varnames:  # pragma: no cover
        pytest.skip("Atlas.create(max_pending_bytes=...) not available yet")
    budget = 8 << 20
    # The first write of a process loads numba's kernels and blosc2 (tens of MiB of
    # Python objects, once): do it before tracing, so that the peak is staged data.
    with atlas.Atlas.create(tmp_path / "warm-up", codec="lz4") as w:
        w.create_dataset("d").define_array("x", "float64", ["n"], [1 << 18])
        w.open_dataset("d").write_array("x", [0], np.arange(1 << 18, dtype="float64"))
    monkeypatch.setattr(atlas.xarray.write, "BATCH_BYTES", 4 << 20)
    n = 12 << 20  # 96 MiB of float64 in 2 MiB blocks
    ds = xr.Dataset({"v": ("n", da.arange(n, chunks=1 << 18, dtype="float64"))})
    s = atlas.Atlas.create(tmp_path / "big", codec="lz4", max_pending_bytes=budget)
    tracemalloc.start()
    try:
        s.add_xr_dataset(ds, "d")
        s.flush()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"peak {peak / 2**20:.0f} MiB while streaming 96 MiB"
    back = atlas.Atlas.open(tmp_path / "big").to_xarray("d")
    assert back.v.data.chunks[0][0] == 1 << 18
    assert back.v[-3:].values.tolist() == [n - 3, n - 2, n - 1]


# -- lazy reads ----------------------------------------------------------------------------------------


def test_to_xarray_is_lazy_per_chunk_and_eager_for_small_variables(store):
    ds = xr.Dataset(
        {
            "big": (("t", "z"), np.arange(200.0).reshape(20, 10)),
            "small": ("z", np.arange(10)),
            "scalar": ((), 1.5),
        },
        coords={"t": np.arange(20)},
    )
    store.add_xr_dataset(ds, "d", chunks={"t": 6, "z": 5})
    unflushed = store.to_xarray("d")  # pending changes are read eagerly through the handle
    assert isinstance(unflushed.big.data, np.ndarray)
    assert_exact(ds, unflushed)
    store.flush()
    back = store.to_xarray("d")
    big = back.big.data
    assert isinstance(big, da.Array)
    assert big.chunks == ((6, 6, 6, 2), (5, 5))
    assert len(big.__dask_graph__()) == 8  # one task per on-disk chunk
    assert isinstance(back.t.variable._data, object) and "t" in back.indexes  # index: eager
    assert not isinstance(back.scalar.data, da.Array)
    assert_exact(ds, back)
    again = pickle.loads(pickle.dumps(back))  # a recipe, no open handle
    np.testing.assert_array_equal(again.big.values, ds.big.values)
    np.testing.assert_array_equal(back.big[7:13, 3:7].values, ds.big.values[7:13, 3:7])


def test_lazy_arrays_read_their_snapshot_or_fail_clearly(store):
    ds = xr.Dataset({"v": ("t", np.arange(10.0))})
    store.add_xr_dataset(ds, "a", chunks=3)
    store.add_xr_dataset(ds, "b", chunks=3)
    store.flush()
    lazy_a, lazy_b = store.to_xarray("a"), store.to_xarray("b")
    writer = atlas.Atlas.open(store.location)
    writer.delete_dataset("a")
    writer.add_xr_dataset(ds * 2, "a", chunks=3)
    writer.add_xr_dataset(ds, "c")
    writer.flush()
    ax.clear_cache()  # a fresh process sees only the newer generation
    np.testing.assert_array_equal(lazy_b.v.values, ds.v.values)  # b unchanged: still readable
    with pytest.raises(errors.ConflictError, match="changed after generation"):
        _ = lazy_a.v.values
    writer.delete_dataset("b")
    writer.flush()
    ax.clear_cache()
    with pytest.raises(errors.DatasetNotFoundError):
        _ = store.to_xarray("b").v.values


# -- to_xarray_many ----------------------------------------------------------------------------------------


def profile(i, n=6):
    return xr.Dataset(
        {
            "TEMP": (("depth",), np.linspace(0, 1, n, dtype="float32") + i, {"units": "degC"}),
            "QC": (("depth",), np.full(n, i, dtype="int8")),
            "station": ((), f"st{i}"),
        },
        coords={"depth": np.arange(n, dtype="float64"), "lat": ((), 10.0 + i)},
        attrs={"id": i},
    )


def test_to_xarray_many_stacks_along_a_new_dimension(store):
    names = [f"p{i}" for i in range(4)]
    for i, n in enumerate(names):
        store.add_xr_dataset(profile(i), n)
    store.flush()
    many = store.to_xarray_many(names[::-1], concat_dim="profile")
    expected = xr.concat(
        [profile(i) for i in range(3, -1, -1)],
        dim="profile",
        coords="different",
        compat="equals",
        combine_attrs="override",
        data_vars="all",
    )
    expected = expected.assign_coords(profile=np.array(names[::-1], dtype=object))
    assert_exact(expected.transpose("profile", "depth"), many.transpose("profile", "depth"))
    assert many.TEMP.dims == ("profile", "depth") and many.lat.dims == ("profile",)


def test_to_xarray_many_names_the_first_dataset_that_differs(store):
    store.add_xr_dataset(profile(0), "a")
    store.add_xr_dataset(profile(1), "b")
    store.add_xr_dataset(profile(2).drop_vars("QC"), "c")
    store.add_xr_dataset(profile(3, n=7), "d")
    store.add_xr_dataset(profile(4).assign(QC=profile(4).QC.astype("int16")), "e")
    store.add_xr_dataset(profile(5).assign_coords(depth=np.arange(6.0) * 2), "f")
    with pytest.raises(errors.SchemaMismatchError, match="dataset 'c' has no variable 'QC'"):
        store.to_xarray_many(["a", "b", "c", "d"])
    with pytest.raises(errors.SchemaMismatchError, match=r"dataset 'd' variable .* has shape"):
        store.to_xarray_many(["a", "d"])
    with pytest.raises(errors.SchemaMismatchError, match="dataset 'e' variable 'QC' has dtype"):
        store.to_xarray_many(["a", "b", "e"])
    with pytest.raises(errors.SchemaMismatchError, match=r"dataset 'f' .*index coordinate 'depth'"):
        store.to_xarray_many(["a", "f"])
    with pytest.raises(errors.InvalidArgumentError, match="concat_dim"):
        store.to_xarray_many(["a", "b"], concat_dim="depth")
    with pytest.raises(errors.InvalidArgumentError):
        store.to_xarray_many([])


# -- the xarray backend --------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "b.atlas"
    ds = xr.Dataset(
        {
            "v": (("t", "z"), np.arange(120.0).reshape(12, 10), {"units": "m"}),
            "s": ("t", np.array([f"s{i}" for i in range(12)], dtype=object)),
            "k": ((), np.int16(3)),
        },
        coords={"t": np.arange(12), "lat": ("t", np.linspace(0, 1, 12))},
        attrs={"title": "backend"},
    )
    with atlas.Atlas.create(path) as s:
        s.add_xr_dataset(ds, "jan", chunks={"t": 5, "z": 4})
        s.add_xr_dataset(ds.assign(v=ds.v + 1), "feb", chunks={"t": 5, "z": 4})
    return path, ds


def test_open_dataset_engine_atlas(saved):
    path, ds = saved
    with xr.open_dataset(path, engine="atlas", group="jan") as got:
        assert_exact(ds, got)
        assert got.v.encoding["preferred_chunks"] == {"t": 5, "z": 4}
    with xr.open_dataset(str(path), engine=ax.AtlasBackendEntrypoint, group="feb", chunks={}) as got:
        assert got.v.data.chunks == ((5, 5, 2), (4, 4, 2))
        np.testing.assert_array_equal(got.v.values, ds.v.values + 1)
    with xr.open_dataset(path, group="jan", drop_variables=["v"]) as got:  # guessed engine
        assert "v" not in got and "s" in got
    with pytest.raises(errors.InvalidArgumentError, match="2 datasets"):
        xr.open_dataset(path, engine="atlas")
    with pytest.raises(KeyError):
        xr.open_dataset(path, engine="atlas", group="mar")
    assert ax.AtlasBackendEntrypoint().guess_can_open(path)
    assert not ax.AtlasBackendEntrypoint().guess_can_open(DATA)


@pytest.mark.parametrize(
    "key",
    [
        {"t": 3},
        {"t": slice(2, 11, 3), "z": slice(None, None, -2)},
        {"t": [7, 1, 1, 9], "z": 4},
        {"t": slice(3, 3)},
        {"t": -1, "z": [-1, 0]},
        {"t": slice(None, None, -1), "z": [5, 2]},
    ],
)
def test_backend_indexing_matches_numpy(saved, key):
    path, ds = saved
    with xr.open_dataset(path, engine="atlas", group="jan") as got:
        xr.testing.assert_identical(got.isel(key).load(), ds.isel(key))


def test_backend_vectorized_indexing(saved):
    path, ds = saved
    key = {"t": xr.DataArray([1, 5, 9], dims="p"), "z": xr.DataArray([0, 3, 3], dims="p")}
    with xr.open_dataset(path, engine="atlas", group="jan") as got:
        xr.testing.assert_identical(got.v.isel(key), ds.v.isel(key))


def test_open_mfdataset(tmp_path):
    paths = []
    for i in range(2):
        ds = xr.Dataset({"v": ("t", np.arange(4.0) + 4 * i)}, coords={"t": np.arange(4) + 4 * i})
        path = tmp_path / f"m{i}.atlas"
        with atlas.Atlas.create(path) as s:
            s.add_xr_dataset(ds, "day", chunks=2)
        paths.append(path)
    with xr.open_mfdataset(paths, engine="atlas", group="day") as got:
        np.testing.assert_array_equal(got.v.values, np.arange(8.0))
        assert got.t.values.tolist() == list(range(8))


def test_accessor_writes(store):
    ds = xr.Dataset({"v": ("x", np.arange(3))}, attrs={"a": 1})
    view = ds.atlas.write(store, "acc")
    assert view.name == "acc"
    store.flush()
    assert_exact(ds, store.to_xarray("acc"))


# -- property: any dataset the writer accepts round-trips exactly -----------------------------------------

_DTYPES = st.sampled_from(
    [
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "bool",
        "M8[s]",
        "M8[ms]",
        "M8[us]",
        "M8[ns]",
        "m8[s]",
        "m8[ns]",
        "U3",
        "S3",
        "O",
    ]
)


def _array(dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind in "Mm":
        ints = npst.arrays(np.int64, shape, elements=st.integers(-(2**40), 2**40) | st.just(np.iinfo(np.int64).min))
        return ints.map(lambda a: a.view(dtype))
    if dtype.kind == "O":
        return npst.arrays(object, shape, elements=st.text(max_size=4))
    return npst.arrays(dtype, shape)


_SCALARS = (
    st.none()
    | st.booleans()
    | st.text(max_size=6)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.binary(max_size=4)
    | st.lists(st.integers(-100, 100), max_size=3)
    | st.lists(st.text(max_size=3), max_size=3)
    | npst.from_dtype(np.dtype("float32")).map(np.float32)
    | npst.arrays(
        npst.integer_dtypes(endianness="=")
        | npst.floating_dtypes(endianness="=")
        | npst.byte_string_dtypes()
        | npst.unicode_string_dtypes()
        | npst.boolean_dtypes(),
        npst.array_shapes(min_dims=0, max_dims=2, max_side=2, min_side=0),
    )
)
_ATTRS = st.dictionaries(st.text(max_size=4) | st.sampled_from(["a.b", "units", "_FillValue"]), _SCALARS, max_size=3)


@st.composite
def datasets(draw):
    sizes = draw(xrst.dimension_sizes(min_dims=1, max_dims=3, max_side=4))
    dims = list(sizes)
    names = draw(st.lists(xrst.names() | st.sampled_from(["a.b", "a"]), min_size=1, max_size=4, unique=True))
    variables, coords = {}, {}
    for name in names:
        any_dims = st.lists(st.sampled_from(dims), unique=True, max_size=len(dims))
        var_dims = [name] if name in sizes else draw(any_dims)
        shape = tuple(sizes[d] for d in var_dims)
        var = xr.Variable(var_dims, draw(_array(draw(_DTYPES), shape)), attrs=draw(_ATTRS))
        (coords if name in sizes or draw(st.booleans()) else variables)[name] = var
    ds = xr.Dataset(variables, coords=coords, attrs=draw(_ATTRS))
    if draw(st.booleans()):
        ds = ds.chunk({d: draw(st.integers(1, max(1, s))) for d, s in ds.sizes.items()})
    return ds


@pytest.mark.filterwarnings("ignore:`pandas.Index` does not support the `float16` dtype:FutureWarning")
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(ds=datasets())
def test_property_exact_round_trip(tmp_path_factory, ds):
    store = atlas.Atlas.create(tmp_path_factory.mktemp("prop") / "s")
    try:
        store.add_xr_dataset(ds, "d")
    except (errors.DTypeError, errors.ValueOverflowError) as exc:  # documented refusals only
        assert "variable" in str(exc) or "attribute" in str(exc)
        assert not store.dataset_exists("d")
        return
    store.flush()
    assert_exact(ds, store.to_xarray("d"))
    with xr.open_dataset(store.location, engine="atlas", group="d") as opened:
        assert_exact(ds, opened)
    store.close()


def test_cf_packed_variables_are_stored_raw_and_decoded_on_read(store, tmp_path):
    path = tmp_path / "packed.nc"
    src = xr.Dataset({"p": (("t", "x"), np.round(np.linspace(0, 30, 24).reshape(4, 6), 2)), "q": ("t", [1, 2, 3, 4])})
    src.p[0, 0] = np.nan
    src.p.encoding.update({"dtype": "int16", "scale_factor": 0.01, "add_offset": 5.0, "_FillValue": -999})
    src.q.encoding.update({"dtype": "int8", "_FillValue": np.int8(-127)})
    src.to_netcdf(path)
    with xr.open_dataset(path, mask_and_scale=False) as raw, xr.open_dataset(path) as want:
        raw = raw.load()
        for name in ("p", "q"):
            raw[name].encoding[ax.conversions.CF_PACKED] = True
        store.add_xr_dataset(raw, "a")
        store.add_xr_dataset(raw, "b")
        store.add_xr_dataset(want, "plain")
        store.flush()
        assert store["a"].array_meta("p")["dtype"] == "int16" and store["a"].array_meta("q")["dtype"] == "int8"
        assert store["a"].get_attribute(ax.PREFIX) == 2 and store["plain"].get_attribute(ax.PREFIX) == 1
        xr.testing.assert_identical(store.to_xarray("a"), want)
        xr.testing.assert_identical(xr.open_dataset(store.location, engine="atlas", group="a").load(), want)
        assert store.to_xarray("a").p.encoding["scale_factor"] == 0.01
        many = store.to_xarray_many(["a", "b"])
        assert many.p.dtype == want.p.dtype
        np.testing.assert_array_equal(many.p.values[1], want.p.values)
