"""Bulk cross-dataset reads: same answers as per-dataset reads, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import atlas
from atlas import errors
from atlas.engine import decode, native


def build(path, n=40, codec="zstd"):
    with atlas.Atlas.create(path, codec=codec) as s:
        for i in range(n):
            rng = np.random.default_rng(i)
            ds = s.create_dataset(f"d{i:03d}")
            ds.define_array("grid", "float64", ["x", "y", "t"], [13, 11, 7], chunk_shape=[5, 4, 3], fill_value=-1.0)
            if i % 4:  # some datasets leave chunks unwritten
                ds.write_array("grid", [0, 0, 0], rng.standard_normal((13, 11, 7)).cumsum(0))
            else:
                ds.write_array("grid", [5, 4, 0], rng.standard_normal((4, 4, 7)))
            ds.define_array("flag", "bool", ["t"], [7])
            ds.write_array("flag", [0], rng.random(7) > 0.5)
            ds.define_array("when", "timestamp_ns", ["t"], [7])
            ds.write_array("when", [0], np.arange(7).astype("datetime64[ns]") + i)
            ds.define_array("name", "string", ["t"], [3])
            ds.write_array("name", [0], np.array([f"n{i}", "é", ""], dtype=object))
            ds.define_array("count", "uint16", ["t"], [7], fill_value=9)
            if i % 3 == 0:
                ds.define_array("sparse", "int32", ["t"], [7])
                ds.write_array("sparse", [2], np.full(3, i, "int32"))
            # Incompressible data is stored raw and scattered straight from the map.
            ds.define_array("noise", "uint8", ["b"], [4096])
            ds.write_array("noise", [0], rng.integers(0, 256, 4096, dtype="uint8"))
    return atlas.Atlas.open(path, mode="r")


SELECTIONS = [
    (None, None),
    ([0, 0, 0], [1, 1, 1]),
    ([3, 2, 1], [9, 8, 5]),
    ([12, 10, 6], [1, 1, 1]),
    ([4, 0, 0], [0, 3, 3]),
]


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
def test_stacked_equals_per_dataset_reads(tmp_path, codec):
    s = build(tmp_path / "s", codec=codec)
    names = s.list_datasets()
    for start, shape in SELECTIONS:
        got = s.read_array_across_stacked("grid", names, start, shape)
        ref = np.stack([s.open_dataset(n).read_array("grid", start, shape) for n in names])
        np.testing.assert_array_equal(got, ref)
    for array in ("flag", "when", "name", "count", "noise"):
        got = s.read_array_across_stacked(array, names)
        ref = np.stack([s.open_dataset(n).read_array(array) for n in names])
        assert got.dtype == ref.dtype, array
        np.testing.assert_array_equal(got, ref)
    assert s.read_array_across_stacked("when", names).dtype == np.dtype("datetime64[ns]")
    assert (s.read_array_across_stacked("count", names) == 9).all()


def test_read_across_lists_none_for_missing_arrays(tmp_path):
    s = build(tmp_path / "s", n=9)
    names = s.list_datasets()
    got = s.read_array_across("sparse", names, [1], [4])
    for i, arr in enumerate(got):
        if i % 3:
            assert arr is None
        else:
            assert arr.tolist() == [0, i, i, i]
    assert s.read_array_across("nope", names) == [None] * 9
    assert s.read_array_across("grid", []) == []


def test_subset_order_and_duplicates(tmp_path):
    s = build(tmp_path / "s", n=12)
    names = ["d011", "d003", "d003", "d000"]
    got = s.read_array_across_stacked("grid", names, [1, 1, 1], [3, 3, 3])
    ref = np.stack([s.open_dataset(n).read_array("grid", [1, 1, 1], [3, 3, 3]) for n in names])
    np.testing.assert_array_equal(got, ref)


def test_pending_writes_are_seen(tmp_path):
    s = build(tmp_path / "s", n=5)
    s.close()
    w = atlas.Atlas.open(tmp_path / "s")
    w.open_dataset("d002").write_array("grid", [0, 0, 0], np.full((2, 2, 2), 42.0))
    got = w.read_array_across_stacked("grid", w.list_datasets(), [0, 0, 0], [2, 2, 2])
    assert (got[2] == 42).all() and not (got[1] == 42).all()


def test_different_layouts_and_shapes_with_a_common_box(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as s:
        for i, (shape, chunks) in enumerate([([10, 10], [3, 3]), ([12, 9], [12, 9]), ([10, 10], [10, 1])]):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("v", "int64", ["a", "b"], shape, chunk_shape=chunks)
            ds.write_array("v", [0, 0], np.arange(np.prod(shape)).reshape(shape) + 1000 * i)
    s = atlas.Atlas.open(tmp_path / "s")
    got = s.read_array_across_stacked("v", ["d0", "d1", "d2"], [2, 3], [5, 4])
    for i in range(3):
        np.testing.assert_array_equal(got[i], s.open_dataset(f"d{i}").read_array("v", [2, 3], [5, 4]))
    with pytest.raises(errors.SchemaMismatchError, match="'d1'"):
        s.read_array_across_stacked("v", ["d0", "d1"])
    listed = s.read_array_across("v", ["d0", "d1"])
    assert listed[0].shape == (10, 10) and listed[1].shape == (12, 9)


def test_bulk_errors(tmp_path):
    s = build(tmp_path / "s", n=6)
    names = s.list_datasets()
    with pytest.raises(ValueError):
        s.read_array_across_stacked("grid", [])
    with pytest.raises(KeyError, match="'zz'"):
        s.read_array_across_stacked("grid", [*names, "zz"])
    with pytest.raises(KeyError):
        s.read_array_across("grid", ["zz"])
    with pytest.raises(KeyError, match="'d001'"):
        s.read_array_across_stacked("sparse", names)
    with pytest.raises(errors.SelectionError):
        s.read_array_across_stacked("grid", names, [10, 0, 0], [5, 1, 1])
    with pytest.raises(errors.SelectionError):
        s.read_array_across_stacked("grid", names, [0, 0], [1, 1])
    with pytest.raises(errors.InvalidArgumentError):
        s.read_array_across_stacked("grid", "d000")
    with pytest.raises(errors.InvalidArgumentError):
        s.read_array_across("grid", [1, 2])


def test_dtype_mismatch_names_the_dataset(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as s:
        s.create_dataset("a").define_array("v", "int32", ["n"], [3])
        s.create_dataset("b").define_array("v", "int64", ["n"], [3])
    s = atlas.Atlas.open(tmp_path / "s")
    with pytest.raises(errors.SchemaMismatchError, match=r"'b'.*int64"):
        s.read_array_across_stacked("v", ["a", "b"])


def test_damaged_chunk_in_bulk_read_names_the_dataset(tmp_path):
    s = build(tmp_path / "s", n=4)
    s.close()
    (seg,) = (tmp_path / "s" / "grid").iterdir()
    table_ref = atlas.Atlas.open(tmp_path / "s")
    engine = table_ref._st.engine("grid")
    idx = engine.index()
    slot = table_ref._st.datasets["d002"].arrays["grid"].slot
    lo, _ = idx.slot_range(slot)
    offset = int(idx.table[lo]["offset"])
    raw = bytearray(seg.read_bytes())
    raw[offset + 40] ^= 0xFF
    seg.write_bytes(bytes(raw))
    s = atlas.Atlas.open(tmp_path / "s")
    with pytest.raises(errors.ChecksumError, match="'d002'"):
        s.read_array_across_stacked("grid", s.list_datasets())
    np.testing.assert_array_equal(
        s.read_array_across_stacked("grid", ["d000", "d001"]),
        np.stack([s.open_dataset(n).read_array("grid") for n in ("d000", "d001")]),
    )


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_parallel_decode_gives_the_same_answer(tmp_path, monkeypatch, workers):
    s = build(tmp_path / "s", n=20)
    names = s.list_datasets()
    ref = s.read_array_across_stacked("grid", names)
    monkeypatch.setattr(decode, "PARALLEL_MIN_BYTES", 0)
    s.max_workers = workers
    np.testing.assert_array_equal(s.read_array_across_stacked("grid", names), ref)
    with pytest.raises(ValueError):
        s.max_workers = 0
    with pytest.raises(ValueError):
        atlas.Atlas.open(tmp_path / "s", max_workers=-2)


def test_python_decoder_matches_native(tmp_path, monkeypatch):
    s = build(tmp_path / "s", n=10)
    names = s.list_datasets()
    ref = s.read_array_across_stacked("grid", names, [1, 1, 1], [8, 8, 4])
    monkeypatch.setattr(native, "AVAILABLE", False)
    np.testing.assert_array_equal(s.read_array_across_stacked("grid", names, [1, 1, 1], [8, 8, 4]), ref)


@pytest.mark.skipif(not native.AVAILABLE, reason=f"libblosc2 not reachable: {native.UNAVAILABLE_REASON}")
def test_native_kernel_statuses():
    import blosc2

    data = np.arange(1000, dtype="float64")
    packed = np.frombuffer(blosc2.compress2(data, typesize=8), np.uint8)
    src = np.concatenate([packed, packed])
    n = packed.size
    dst = np.zeros(3 * 8000, np.uint8)
    status = np.zeros(3, np.int64)
    offsets = np.array([0, n, n + 10], np.int64)
    native.decode_chunks(
        native.thread_context(),
        src,
        offsets,
        np.array([n, n, n], np.int64),
        dst,
        np.array([0, 8000, 16000], np.int64),
        np.full(3, 8000, np.int64),
        status,
    )
    assert status[0] == status[1] == 8000
    assert status[2] == native.ERR_BOUNDS  # would read past the end: never sent to blosc2
    np.testing.assert_array_equal(dst[:8000].view("float64"), data)
    damaged = src.copy()
    damaged[40:60] = 0xAB
    native.decode_chunks(
        native.thread_context(),
        damaged,
        offsets[:1],
        np.array([n], np.int64),
        dst,
        np.array([0], np.int64),
        np.array([8000], np.int64),
        status[:1],
    )
    assert status[0] != 8000
