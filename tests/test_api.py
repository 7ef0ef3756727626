"""Every public method of Atlas and DatasetView on a local store."""

from __future__ import annotations

import math

import numpy as np
import pytest

import atlas
from atlas import errors

DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]


def reopen(s: atlas.Atlas, **kw) -> atlas.Atlas:
    s.flush()
    return atlas.Atlas.open(s.location, **kw)


@pytest.mark.parametrize("codec", ["zstd", "LZ4", "none", "uncompressed"])
@pytest.mark.parametrize("meta_format", ["json", "msgpack", "mp"])
@pytest.mark.parametrize("meta_compression", ["none", "zstd", "lz4"])
def test_codecs_and_manifest_formats_round_trip(tmp_path, codec, meta_format, meta_compression):
    path = tmp_path / "s"
    with atlas.Atlas.create(path, codec=codec, meta_format=meta_format, meta_compression=meta_compression) as s:
        ds = s.create_dataset("d")
        ds.define_array("x", "float64", ["t"], [1000], chunk_shape=[300])
        ds.write_array("x", [0], np.linspace(0, 1, 1000))
        ds.set_attribute("title", "héllo wörld")
        ds.set_attribute("nan", float("nan"))
    fmt = {"mp": "msgpack"}.get(meta_format, meta_format)
    suffix = {"none": "", "zstd": ".zst", "lz4": ".lz4"}[meta_compression]
    assert (path / f"atlas.{fmt}{suffix}").is_file()
    s = atlas.Atlas.open(path)
    ds = s.open_dataset("d")
    np.testing.assert_array_equal(ds.read_array("x"), np.linspace(0, 1, 1000))
    assert ds.get_attribute("title") == "héllo wörld"
    assert math.isnan(ds.get_attribute("nan"))
    assert s.codec == codec.lower().replace("uncompressed", "none")


def test_dataset_lifecycle(store):
    assert store.list_datasets() == []
    a = store.create_dataset("b")
    store.create_dataset("a")
    assert store.list_datasets() == ["a", "b"]
    assert store.dataset_exists("a") and not store.dataset_exists("zz")
    assert "a" in store and len(store) == 2
    assert store.open_dataset("b").name == "b" == a.name
    with pytest.raises(FileExistsError):
        store.create_dataset("a")
    with pytest.raises(KeyError):
        store.open_dataset("nope")
    with pytest.raises(KeyError):
        store.delete_dataset("nope")
    store.delete_dataset("a")
    assert store.list_datasets() == ["b"]
    s2 = reopen(store)
    assert s2.list_datasets() == ["b"]


@pytest.mark.parametrize("name", ["a#b", "x%2F", "温度", "with space", "Temp", "temp", "a.b", "-", "ÄÖ", "😀"])
def test_unicode_names_round_trip(store, name):
    ds = store.create_dataset(name)
    ds.define_array(name, "int32", ["n"], [3])
    ds.write_array(name, [0], np.array([1, 2, 3], dtype="int32"))
    s2 = reopen(store)
    assert s2.list_datasets() == [name]
    assert s2.list_arrays() == [name]
    np.testing.assert_array_equal(s2.open_dataset(name).read_array(name), [1, 2, 3])


def test_case_only_different_array_names_do_not_collide(store):
    ds = store.create_dataset("d")
    ds.define_array("Temp", "int8", ["n"], [2])
    ds.define_array("temp", "int8", ["n"], [2])
    ds.write_array("Temp", [0], np.array([1, 1], "int8"))
    ds.write_array("temp", [0], np.array([2, 2], "int8"))
    s2 = reopen(store)
    d2 = s2.open_dataset("d")
    assert d2.read_array("Temp").tolist() == [1, 1] and d2.read_array("temp").tolist() == [2, 2]


@pytest.mark.parametrize("bad", ["", "a/b", "_x", ".", "..", "\ud800"])
def test_bad_names_rejected_and_change_nothing(store, bad):
    with pytest.raises(ValueError) as info:
        store.create_dataset(bad)
    assert isinstance(info.value, errors.InvalidNameError)
    ds = store.create_dataset("ok")
    with pytest.raises(errors.InvalidNameError):
        ds.define_array(bad, "int8", ["n"], [1])
    assert store.list_datasets() == ["ok"] and ds.list_arrays() == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_numeric_dtypes_round_trip_with_edges(store, dtype):
    info = np.iinfo(dtype) if dtype[0] in "iu" else np.finfo(dtype)
    data = np.array([info.min, 0, 1, info.max], dtype=dtype)
    ds = store.create_dataset("d")
    ds.define_array("x", dtype, ["n"], [6], chunk_shape=[4])
    ds.write_array("x", [1], data)
    s2 = reopen(store)
    got = s2.open_dataset("d").read_array("x")
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got[1:5], data)
    stats = s2.open_dataset("d").array_stats("x")
    assert stats["min"] == info.min and stats["max"] == info.max
    assert stats["row_count"] == 6 and stats["null_count"] == 2
    assert isinstance(stats["min"], np.generic) and stats["min"].dtype == np.dtype(dtype)


def test_timestamps(store):
    ds = store.create_dataset("d")
    ds.define_array("t", "timestamp_ns", ["n"], [4])
    ds.define_array("u", "datetime64[ns]", ["n"], [2])
    values = np.array(["2020-01-01", "NaT", "1969-12-31T23:59:59.999999999"], dtype="datetime64[ns]")
    ds.write_array("t", [0], values)
    ds.write_array("u", [0], np.array([1, 2], dtype="int64"))  # the int64 view is accepted too
    with pytest.raises(TypeError):
        ds.write_array("t", [0], values.astype("datetime64[s]"))
    s2 = reopen(store)
    d2 = s2.open_dataset("d")
    got = d2.read_array("t")
    assert got.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(got[:3], values)
    assert np.isnat(got[3])
    assert d2.read_array("u").tolist() == [1, 2]
    stats = d2.array_stats("t")
    assert stats["null_count"] == 2
    assert stats["min"] == np.datetime64("1969-12-31T23:59:59.999999999", "ns")
    assert stats["max"] == np.datetime64("2020-01-01", "ns")
    assert d2.array_meta("t")["dtype"] == "timestamp_nanoseconds"


def test_strings(store):
    ds = store.create_dataset("d")
    ds.define_array("s", "string", ["n"], [5], chunk_shape=[2])
    ds.write_array("s", [0], np.array(["a", "", "温度"], dtype=object))
    ds.write_array("s", [3], np.array([b"by", b"tes"], dtype="S3"))
    with pytest.raises(TypeError):
        ds.write_array("s", [0], np.array(["a", None], dtype=object))
    ds.write_array("s", [3], np.array(["uni"], dtype="U3"))
    s2 = reopen(store)
    got = s2.open_dataset("d").read_array("s")
    assert got.dtype == object and got.tolist() == ["a", "", "温度", "uni", "tes"]
    assert all(type(v) is str for v in got)
    stats = s2.open_dataset("d").array_stats("s")
    assert stats == {"row_count": 5, "null_count": 0, "min": "", "max": "温度"}


def test_string_fill_value_and_unwritten(store):
    ds = store.create_dataset("d")
    ds.define_array("s", "string", ["n"], [4], chunk_shape=[2], fill_value="?")
    ds.write_array("s", [1], np.array(["x"], dtype=object))
    assert ds.read_array("s").tolist() == ["?", "x", "?", "?"]
    assert ds.array_fill_value("s") == "?"
    assert ds.array_stats("s") == {"row_count": 4, "null_count": 3, "min": "x", "max": "x"}


def test_bool_arrays(store):
    ds = store.create_dataset("d")
    ds.define_array("b", "bool", ["n"], [4])
    ds.write_array("b", [0], np.array([True, False], dtype=bool))
    with pytest.raises(TypeError):
        ds.write_array("b", [0], np.array([1, 0], dtype="uint8"))
    s2 = reopen(store)
    d2 = s2.open_dataset("d")
    assert d2.read_array("b").tolist() == [True, False, False, False]
    assert d2.array_stats("b") == {"row_count": 4, "null_count": 2, "min": False, "max": True}


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("int32", np.array(7, "int32")),
        ("float64", np.array(2.5)),
        ("string", np.array("zero-d", dtype=object)),
        ("bool", np.array(True)),
        ("timestamp_nanoseconds", np.array(np.datetime64("2024-05-01", "ns"))),
    ],
)
def test_zero_d_arrays(store, dtype, value):
    ds = store.create_dataset("d")
    ds.define_array("z", dtype, [], [])
    assert ds.array_stats("z")["null_count"] == 1
    ds.write_array("z", [], value)
    s2 = reopen(store)
    got = s2.open_dataset("d").read_array("z")
    assert got.shape == () and got[()] == value[()]
    assert s2.open_dataset("d").array_stats("z")["row_count"] == 1
    assert s2.open_dataset("d").array_stats("z")["null_count"] == 0


def test_unwritten_cells_read_fill_or_default(store):
    ds = store.create_dataset("d")
    ds.define_array("f", "float32", ["n"], [3])
    ds.define_array("i", "int16", ["n"], [3])
    ds.define_array("g", "int16", ["n"], [3], fill_value=-99)
    ds.define_array("n", "float64", ["n"], [3], fill_value=float("nan"))
    ds.define_array("t", "timestamp_ns", ["n"], [2])
    assert np.isnan(ds.read_array("f")).all()
    assert ds.read_array("i").tolist() == [0, 0, 0]
    assert ds.read_array("g").tolist() == [-99, -99, -99]
    assert np.isnan(ds.read_array("n")).all() and math.isnan(ds.array_fill_value("n"))
    assert np.isnat(ds.read_array("t")).all()
    assert ds.array_fill_value("i") is None and ds.array_fill_value("g") == -99


def test_null_count_tracks_never_written_int_cells(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "int32", ["n"], [6], chunk_shape=[3])
    ds.write_array("x", [0], np.array([5, -2], "int32"))
    assert ds.array_stats("x") == {"row_count": 6, "null_count": 4, "min": -2, "max": 5}
    s2 = reopen(store)
    d2 = s2.open_dataset("d")
    assert d2.array_stats("x") == {"row_count": 6, "null_count": 4, "min": -2, "max": 5}
    d2.write_array("x", [2], np.array([0], "int32"))  # a real zero now: valid, not null
    assert d2.array_stats("x") == {"row_count": 6, "null_count": 3, "min": -2, "max": 5}
    s3 = reopen(s2)
    assert s3.open_dataset("d").array_stats("x") == {"row_count": 6, "null_count": 3, "min": -2, "max": 5}


def test_stats_ignore_nan_and_fill(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "float64", ["n"], [5], fill_value=-9.0)
    ds.write_array("x", [0], np.array([1.5, np.nan, -3.0, -9.0, np.inf]))
    assert ds.array_stats("x") == {"row_count": 5, "null_count": 2, "min": -3.0, "max": np.inf}
    ds.define_array("y", "int32", ["n"], [3], fill_value=7)
    ds.write_array("y", [0], np.array([7, 7, 7], "int32"))
    assert ds.array_stats("y") == {"row_count": 3, "null_count": 3, "min": None, "max": None}


def test_stats_after_overwrite_recomputed(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "float32", ["n"], [8], chunk_shape=[4])
    ds.write_array("x", [0], np.arange(8, dtype="float32"))
    store.flush()
    ds.write_array("x", [4], np.full(4, 100, "float32"))
    store.flush()
    assert ds.array_stats("x") == {"row_count": 8, "null_count": 0, "min": 0.0, "max": 100.0}
    ds.write_array("x", [0], np.full(4, 50, "float32"))
    store.flush()
    assert ds.array_stats("x")["min"] == 50.0


def test_fill_value_checks(store):
    ds = store.create_dataset("d")
    with pytest.raises(TypeError):
        ds.define_array("a", "int8", ["n"], [1], fill_value=1.5)
    with pytest.raises(OverflowError):
        ds.define_array("a", "int8", ["n"], [1], fill_value=128)
    with pytest.raises(OverflowError):
        ds.define_array("a", "uint8", ["n"], [1], fill_value=-1)
    with pytest.raises(TypeError):
        ds.define_array("a", "string", ["n"], [1], fill_value=3)
    with pytest.raises(TypeError):
        ds.define_array("a", "float32", ["n"], [1], fill_value="x")
    with pytest.raises(TypeError):
        ds.define_array("a", "int32", ["n"], [1], fill_value=True)
    assert ds.list_arrays() == []
    ds.define_array("u", "uint64", ["n"], [2], fill_value=2**64 - 1)
    ds.write_array("u", [0], np.array([2**64 - 1], "uint64"))
    assert ds.array_stats("u") == {"row_count": 2, "null_count": 2, "min": None, "max": None}


def test_define_array_errors_change_nothing(store):
    ds = store.create_dataset("d")
    cases = [
        ({"dtype": "complex64"}, TypeError),
        ({"dtype": "nope"}, TypeError),
        ({"dims": ["a", "b"]}, ValueError),
        ({"chunk_shape": [0]}, ValueError),
        ({"chunk_shape": [-1]}, ValueError),
        ({"chunk_shape": [1, 1]}, ValueError),
        ({"shape": [-3]}, ValueError),
        ({"shape": [2**40, 2**40]}, ValueError),
        ({"dims": "n"}, ValueError),
    ]
    for override, exc in cases:
        kw = {"name": "x", "dtype": "int8", "dims": ["n"], "shape": [4]}
        kw.update(override)
        if "shape" in override and len(override["shape"]) == 2:
            kw["dims"] = ["a", "b"]
        with pytest.raises(exc) as info:
            ds.define_array(**kw)
        assert isinstance(info.value, errors.AtlasError), override
        assert "'x'" in str(info.value) or "dtype" in str(info.value)
    assert ds.list_arrays() == []
    ds.define_array("x", "int8", ["n"], [4])
    with pytest.raises(FileExistsError):
        ds.define_array("x", "int8", ["n"], [4])


def test_write_errors_change_nothing(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "float32", ["a", "b"], [4, 4], chunk_shape=[2, 2])
    ds.write_array("x", [0, 0], np.ones((4, 4), "float32"))
    store.flush()
    before = ds.read_array("x").copy()
    bad = [
        ([0, 0], np.ones((4, 4), "float64"), TypeError),
        ([0, 0], np.ones((4, 4), "float32")[:, ::2], TypeError),
        ([0], np.ones((4, 4), "float32"), ValueError),
        ([0, 0], np.ones(4, "float32"), ValueError),
        ([3, 3], np.ones((2, 2), "float32"), ValueError),
        ([-1, 0], np.ones((2, 2), "float32"), ValueError),
        ([0, 0], [[1.0]], TypeError),
        (["a", 0], np.ones((1, 1), "float32"), ValueError),
    ]
    for start, data, exc in bad:
        with pytest.raises(exc) as info:
            ds.write_array("x", start, data)
        assert isinstance(info.value, errors.AtlasError)
        assert "'x'" in str(info.value)
    with pytest.raises(KeyError):
        ds.write_array("nope", [0], np.ones(1, "float32"))
    np.testing.assert_array_equal(ds.read_array("x"), before)
    assert not store.has_pending_changes


def test_read_selection_errors_no_clamping(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "int32", ["a", "b"], [4, 5])
    for start, shape in [([3, 4], [2, 2]), ([10, 10], [1, 1]), ([0], [2, 2]), ([0, 0], [2]), ([-1, 0], [1, 1])]:
        with pytest.raises(errors.SelectionError) as info:
            ds.read_array("x", start, shape)
        assert isinstance(info.value, ValueError) and "'x'" in str(info.value)
    assert ds.read_array("x", [4, 5], [0, 0]).shape == (0, 0)
    assert ds.read_array("x", [1, 1]).shape == (3, 4)
    assert ds.read_array("missing") is None


def test_read_and_partial_writes_across_chunks(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "int64", ["a", "b", "c"], [7, 6, 5], chunk_shape=[3, 4, 2], fill_value=-1)
    model = np.full((7, 6, 5), -1, "int64")
    rng = np.random.default_rng(0)
    for _ in range(20):
        start = [int(rng.integers(0, s)) for s in model.shape]
        shape = [int(rng.integers(1, s - b + 1)) for s, b in zip(model.shape, start, strict=False)]
        data = rng.integers(-1000, 1000, shape).astype("int64")
        ds.write_array("x", start, data)
        model[tuple(slice(b, b + n) for b, n in zip(start, shape, strict=False))] = data
    np.testing.assert_array_equal(ds.read_array("x"), model)
    np.testing.assert_array_equal(ds.read_array("x", [2, 1, 1], [4, 4, 3]), model[2:6, 1:5, 1:4])
    s2 = reopen(store)
    np.testing.assert_array_equal(s2.open_dataset("d").read_array("x"), model)
    valid = model[model != -1]
    stats = s2.open_dataset("d").array_stats("x")
    assert stats["null_count"] == int((model == -1).sum())
    assert stats["min"] == valid.min() and stats["max"] == valid.max()


def test_read_arrays(store):
    ds = store.create_dataset("d")
    ds.define_array("a", "int8", ["n"], [4])
    ds.define_array("b", "float32", ["n"], [4])
    ds.write_array("a", [0], np.arange(4, dtype="int8"))
    got = ds.read_arrays(["a", "b", "c"], [1], [2])
    assert got["a"].tolist() == [1, 2] and np.isnan(got["b"]).all() and got["c"] is None
    assert ds.read_arrays([]) == {}


def test_delete_array_and_recreate_gets_fresh_slot(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "int32", ["n"], [3])
    ds.write_array("x", [0], np.array([1, 2, 3], "int32"))
    store.flush()
    ds.delete_array("x")
    with pytest.raises(KeyError):
        ds.delete_array("x")
    assert ds.read_array("x") is None
    ds.define_array("x", "float64", ["n"], [3])
    assert np.isnan(ds.read_array("x")).all()  # the old bytes never come back
    s2 = reopen(store)
    assert np.isnan(s2.open_dataset("d").read_array("x")).all()


def test_delete_and_recreate_dataset_does_not_resurrect_data(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "int32", ["n"], [3], fill_value=0)
    ds.write_array("x", [0], np.array([1, 2, 3], "int32"))
    store.flush()
    store.delete_dataset("d")
    ds = store.create_dataset("d")
    ds.define_array("x", "int32", ["n"], [3], fill_value=0)
    store.flush()
    assert ds.read_array("x").tolist() == [0, 0, 0]
    with pytest.raises(KeyError):
        store.delete_dataset("gone")


def test_stale_view_of_deleted_dataset_raises(store):
    ds = store.create_dataset("d")
    store.delete_dataset("d")
    with pytest.raises(KeyError):
        ds.define_array("x", "int8", ["n"], [1])
    with pytest.raises(KeyError):
        ds.set_attribute("a", 1)
    assert store.list_datasets() == []


def test_array_meta(store):
    ds = store.create_dataset("d")
    ds.define_array("x", "Float32", ["a", "b"], [10, 20], chunk_shape=[5, 5], fill_value=1.5)
    assert ds.array_meta("x") == {
        "dtype": "float32",
        "shape": [10, 20],
        "chunk_shape": [5, 5],
        "dimension_names": ["a", "b"],
        "fill_value": np.float32(1.5),
    }
    with pytest.raises(KeyError):
        ds.array_meta("nope")
    with pytest.raises(KeyError):
        ds.array_stats("nope")


def test_default_chunk_shape_whole_small_arrays_split_large(store):
    ds = store.create_dataset("d")
    ds.define_array("small", "float32", ["a", "b"], [50, 168])
    ds.define_array("big", "float64", ["a", "b"], [4000, 3000])
    assert ds.array_meta("small")["chunk_shape"] == [50, 168]
    big = ds.array_meta("big")["chunk_shape"]
    assert np.prod(big) * 8 <= 1 << 20 and big[1] >= big[0] // 2


def test_attributes(store):
    ds = store.create_dataset("d")
    ds.set_attribute("s", "text ✓")
    ds.set_attribute("i", 5)
    ds.set_attribute("f", 0.1)
    ds.set_attribute("b", True)
    ds.set_attribute("i8", -3, dtype="int8")
    ds.set_attribute("f32", 0.1, dtype="float32")
    ds.set_attribute("ts", np.datetime64("2024-01-02T03:04:05", "ns"))
    ds.set_attribute("ts_hint", 10**18, dtype="timestamp_nanoseconds")
    ds.set_attribute("lst", [1, 2, 3])
    ds.set_attribute("arr", np.array([[1.5, 2.5]], dtype="float32"))
    ds.set_attribute("inf", float("-inf"))
    ds.set_attribute("big", 2**64 - 1)
    with pytest.raises(OverflowError):
        ds.set_attribute("x", 300, dtype="int8")
    with pytest.raises(TypeError):
        ds.set_attribute("x", None)
    with pytest.raises(TypeError):
        ds.set_attribute("x", {"a": 1})
    with pytest.raises(TypeError):
        ds.set_attribute("x", "text", dtype="int32")
    s2 = reopen(store)
    d2 = s2.open_dataset("d")
    attrs = d2.attributes()
    assert list(attrs) == ["s", "i", "f", "b", "i8", "f32", "ts", "ts_hint", "lst", "arr", "inf", "big"]
    assert attrs["s"] == "text ✓" and attrs["i"] == 5 and type(attrs["i"]) is int
    assert attrs["f"] == 0.1 and attrs["b"] is True
    assert attrs["i8"] == -3 and attrs["i8"].dtype == np.int8
    assert attrs["f32"] == np.float32(0.1) and attrs["f32"].dtype == np.float32
    assert attrs["ts"] == np.datetime64("2024-01-02T03:04:05", "ns")
    assert attrs["ts_hint"] == np.datetime64(10**18, "ns")
    assert attrs["lst"] == [1, 2, 3]
    assert attrs["arr"].dtype == np.float32 and attrs["arr"].tolist() == [[1.5, 2.5]]
    assert attrs["inf"] == float("-inf") and attrs["big"] == 2**64 - 1
    assert d2.get_attribute("missing") is None
    d2.delete_attribute("s")
    with pytest.raises(KeyError):
        d2.delete_attribute("s")
    assert "s" not in d2.attributes()
    s2.close()
    assert "s" not in atlas.Atlas.open(store.location, mode="r").open_dataset("d").attributes()


def test_repr(store):
    assert "datasets=0" in repr(store)
    ds = store.create_dataset("d")
    ds.define_array("x", "int8", ["n"], [1])
    assert "pending" in repr(store)
    assert repr(ds) == "<DatasetView 'd' arrays=[x]>"
    store.close()
    assert "closed" in repr(store)


def test_closed_store_raises(store):
    store.close()
    store.close()
    with pytest.raises(errors.StoreClosedError):
        store.list_datasets()


def test_writes_only_partly_covering_a_chunk_read_it_once(store, monkeypatch):
    ds = store.create_dataset("d")
    ds.define_array("x", "float64", ["n"], [100], chunk_shape=[100])
    ds.write_array("x", [0], np.arange(100.0))
    store.flush()
    from atlas.engine import family as arrays

    calls = []
    original = arrays.FamilyEngine.stored_chunk

    def counting(self, *a, **kw):
        calls.append(a[0])
        return original(self, *a, **kw)

    monkeypatch.setattr(arrays.FamilyEngine, "stored_chunk", counting)
    for i in range(10):
        ds.write_array("x", [i * 10], np.full(5, -1.0))
    assert len(calls) == 1
    assert ds.read_array("x")[:12].tolist() == [-1.0] * 5 + [5.0, 6, 7, 8, 9] + [-1.0, -1.0]


def test_many_datasets_share_one_file_per_flush(tmp_path):
    path = tmp_path / "s"
    with atlas.Atlas.create(path) as s:
        for i in range(50):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("x", "int16", ["n"], [10])
            ds.write_array("x", [0], np.full(10, i, "int16"))
    assert len(list((path / "x").iterdir())) == 1
    s = atlas.Atlas.open(path)
    assert [int(s.open_dataset(f"d{i}").read_array("x")[0]) for i in range(50)] == list(range(50))


def test_a_flush_computes_each_chunks_stats_once(store, monkeypatch):
    """The manifest's array stats and the segment records share one pass per chunk."""
    from atlas.engine import chunks, family, staged

    calls = []
    real = chunks.chunk_stats

    def counting(values, written, meta):
        calls.append(values.shape[0])
        return real(values, written, meta)

    monkeypatch.setattr(chunks, "chunk_stats", counting)
    monkeypatch.setattr(family, "chunk_stats", counting)
    monkeypatch.setattr(staged, "chunk_stats", counting)
    ds = store.create_dataset("d")
    ds.define_array("x", "float64", ["n"], [30], chunk_shape=[10])
    ds.write_array("x", [0], np.arange(30.0))
    store.flush()
    assert len(calls) == 3  # three chunks
    assert ds.array_stats("x") == {"row_count": 30, "null_count": 0, "min": 0.0, "max": 29.0}
    calls.clear()
    ds.write_array("x", [5], np.array([-1.0]))  # a write invalidates that chunk's stats only
    assert ds.array_stats("x")["min"] == -1.0
    store.flush()
    assert len(calls) == 1


def test_store_is_a_read_only_mapping_of_names_to_views(tmp_path):
    from collections.abc import Mapping

    store = atlas.Atlas.create(tmp_path / "m.atlas")
    for name in ("b", "a"):
        store.create_dataset(name).define_array("v", "int32", ["x"], [2])
    assert isinstance(store, Mapping)
    assert store["a"].name == "a" and isinstance(store["a"], atlas.DatasetView)
    assert list(store.keys()) == ["a", "b"] and "a" in store.keys()  # noqa: SIM118
    assert [(k, v.name) for k, v in store.items()] == [("a", "a"), ("b", "b")]
    assert [v.name for v in store.values()] == ["a", "b"]
    assert store.get("a").name == "a" and store.get("zz") is None and store.get("zz", 0) == 0
    assert dict(store).keys() == {"a", "b"} and len(store) == 2
    for missing in ("zz", 3, ["a"]):
        with pytest.raises(errors.DatasetNotFoundError) as info:
            store[missing]
        assert isinstance(info.value, KeyError)
    with pytest.raises(TypeError):
        store["c"] = store["a"]  # read-only: datasets are made with create_dataset
    assert {store: 1}[store] == 1  # handles stay hashable (identity), unlike a Mapping subclass
    store.close()


# -- unflushed changes are never lost silently ----------------------------------------------------------


def _run_script(code, *args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


_WRITE_AND_EXIT = """
import sys, numpy as np, atlas
store = atlas.Atlas.create(sys.argv[1])
for name in ("a", "b"):
    store.create_dataset(name).define_array("v", "int32", ["x"], [3])
store.open_dataset("a").write_array("v", [0], np.arange(3, dtype="int32"))
"""


def test_script_that_exits_without_flush_warns_on_stderr(tmp_path):
    path = tmp_path / "s.atlas"
    done = _run_script(_WRITE_AND_EXIT, path)
    assert done.returncode == 0, done.stderr
    assert "UncommittedChangesWarning" in done.stderr, done.stderr
    assert str(path) in done.stderr and "2 datasets with uncommitted changes" in done.stderr
    assert done.stderr.count("UncommittedChangesWarning") == 1  # once, not again from __del__
    assert atlas.Atlas.open(path).list_datasets() == []  # never committed from a finaliser


def test_collected_handle_with_pending_changes_warns(tmp_path):
    import gc

    def write_and_drop():
        store = atlas.Atlas.create(tmp_path / "s.atlas")
        store.create_dataset("a")

    with pytest.warns(errors.UncommittedChangesWarning, match=r"s\.atlas: 1 dataset with uncommitted changes"):
        write_and_drop()
        gc.collect()
    assert issubclass(errors.UncommittedChangesWarning, UserWarning)  # shown by default
    assert atlas.Atlas.open(tmp_path / "s.atlas").list_datasets() == []


def test_no_warning_after_close_discard_with_or_read_only(tmp_path, recwarn):
    import gc

    path = tmp_path / "s.atlas"
    store = atlas.Atlas.create(path)
    store.create_dataset("a")
    store.close()  # close flushes
    store = atlas.Atlas.open(path)
    store.create_dataset("b")
    store.discard()
    del store
    with pytest.raises(RuntimeError), atlas.Atlas.open(path) as store:
        store.create_dataset("c")
        raise RuntimeError("the block failed: its changes are discarded on purpose")
    reader = atlas.Atlas.open(path, mode="r")
    del reader, store
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, errors.AtlasWarning)]
    assert atlas.Atlas.open(path).list_datasets() == ["a"]
