"""Bulk cross-dataset reads: same answers as per-dataset reads, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import atlas
from atlas import errors
from atlas.engine import gather, libblosc2
from atlas.engine.pieces import ItemRanges, Payloads, Pieces


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
    w.discard()


def test_pending_changes_override_the_catalogue_on_a_fresh_handle(tmp_path):
    """The committed arrays come from the catalogue columns; the handle's changes win over them."""
    with atlas.Atlas.create(tmp_path / "s") as s:
        for i in range(600):
            ds = s.create_dataset(f"d{i:03d}")
            dtype = "float32" if i != 500 else "float64"
            ds.define_array("v", dtype, ["n"], [4 + i % 3], fill_value=-1.0)
            ds.write_array("v", [0], np.full(4, i, dtype))
            if i % 2:
                ds.define_array("w", "int8", ["n"], [2])
        s.delete_dataset("d599")
    w = atlas.Atlas.open(tmp_path / "s")
    names = [n for n in w.list_datasets() if n != "d500"]
    base = w.read_array_across_stacked("v", names, pad=True)
    assert base.shape == (598, 6) and base[:, 0].tolist() == [float(n[1:]) for n in names]
    assert base[1].tolist() == [1, 1, 1, 1, -1, -1] and base[0].tolist() == [0, 0, 0, 0, -1, -1]
    w.open_dataset("d001").resize_array("v", [7])
    w.open_dataset("d002").write_array("v", [0], np.full(4, 42, "float32"))
    w.delete_dataset("d003")
    w.create_dataset("d599").define_array("v", "float32", ["n"], [4], fill_value=-2.0)
    got = w.read_array_across_stacked("v", ["d000", "d001", "d002", "d599"], pad=True)
    assert got.tolist() == [[0, 0, 0, 0, -1, -1, -1], [1, 1, 1, 1, -1, -1, -1], [42, 42, 42, 42, -1, -1, -1],
                            [-2, -2, -2, -2, -2, -2, -2]]  # fmt: skip
    with pytest.raises(errors.DatasetNotFoundError, match="'d003'"):
        w.read_array_across_stacked("v", ["d000", "d003", "nope"])
    with pytest.raises(errors.DatasetNotFoundError, match="'nope'"):
        w.read_array_across("v", ["d000", "nope", "d003"])
    with pytest.raises(errors.ArrayNotFoundError, match="'d000'"):
        w.read_array_across_stacked("w", ["d001", "d000"])
    with pytest.raises(errors.SchemaMismatchError, match=r"'d500'.*float64"):
        w.read_array_across_stacked("v", ["d000", "d500"], [0], [4])
    assert [a is None for a in w.read_array_across("w", ["d000", "d001", "d599"])] == [True, False, True]
    w.discard()


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
    for odd in (np.array("d000"), {"d000": 1}, b"d000", 3):
        with pytest.raises(errors.InvalidArgumentError):
            s.read_array_across("grid", odd)


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
    slot = table_ref._st.dataset("d002").arrays["grid"].slot
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
def test_parallel_decode_gives_the_same_answer(tmp_path, monkeypatch, workers, read_path):
    s = build(tmp_path / "s", n=20)
    names = s.list_datasets()
    ref = s.read_array_across_stacked("grid", names)
    monkeypatch.setattr(gather, "PARALLEL_MIN_BYTES", 0)
    s.max_workers = workers
    np.testing.assert_array_equal(s.read_array_across_stacked("grid", names), ref)
    with pytest.raises(ValueError):
        s.max_workers = 0
    with pytest.raises(ValueError):
        atlas.Atlas.open(tmp_path / "s", max_workers=-2)


def test_python_decoder_matches_native(tmp_path, monkeypatch, read_path):
    s = build(tmp_path / "s", n=10)
    names = s.list_datasets()
    ref = s.read_array_across_stacked("grid", names, [1, 1, 1], [8, 8, 4])
    monkeypatch.setattr(libblosc2, "AVAILABLE", False)
    np.testing.assert_array_equal(s.read_array_across_stacked("grid", names, [1, 1, 1], [8, 8, 4]), ref)


@pytest.mark.skipif(not libblosc2.AVAILABLE, reason=f"libblosc2 not reachable: {libblosc2.UNAVAILABLE_REASON}")
def test_native_kernel_statuses():
    import blosc2

    data = np.arange(1000, dtype="float64")
    packed = np.frombuffer(blosc2.compress2(data, typesize=8), np.uint8)
    src = np.concatenate([packed, packed])
    n = packed.size
    dst = np.zeros(3 * 8000, np.uint8)
    status = np.zeros(3, np.int64)
    offsets = np.array([0, n, n + 10], np.int64)
    libblosc2.decode_chunks(
        libblosc2.thread_context(),
        src,
        offsets,
        np.array([n, n, n], np.int64),
        dst,
        np.array([0, 8000, 16000], np.int64),
        np.full(3, 8000, np.int64),
        status,
    )
    assert status[0] == status[1] == 8000
    assert status[2] == libblosc2.ERR_BOUNDS  # would read past the end: never sent to blosc2
    np.testing.assert_array_equal(dst[:8000].view("float64"), data)
    damaged = src.copy()
    damaged[40:60] = 0xAB
    libblosc2.decode_chunks(
        libblosc2.thread_context(),
        damaged,
        offsets[:1],
        np.array([n], np.int64),
        dst,
        np.array([0], np.int64),
        np.array([8000], np.int64),
        status[:1],
    )
    assert status[0] != 8000


# -- item-range (partial) chunk decoding ------------------------------------------------------------

PARTIAL_LAYOUTS = [
    # shape, chunk_shape, dtype, selections (start, shape): leading boxes, inner boxes, edge chunks
    ((20000,), (6000,), "float64", [([0], [1500]), ([0], [5000]), ([6100], [10]), ([18000], [2000]), ([5990], [20])]),
    (
        (60, 170),
        (50, 168),
        "float32",
        [([0, 0], [13, 42]), ([3, 5], [4, 100]), ([0, 160], [55, 10]), ([50, 0], [10, 170]), ([0, 0], [60, 170])],
    ),
    (
        (70, 60, 30),
        (50, 50, 24),
        "int32",
        [([0, 0, 0], [25, 25, 12]), ([10, 3, 2], [5, 7, 9]), ([45, 45, 20], [25, 15, 10]), ([50, 50, 24], [20, 10, 6])],
    ),
]


def smooth(rng, shape, dtype):
    """Compressible data (so that chunks are stored compressed, not raw)."""
    base = np.add.outer(np.arange(shape[0]), np.zeros(shape[1:])) if len(shape) > 1 else np.arange(shape[0]) * 1.0
    walk = rng.integers(-2, 3, shape).cumsum(-1)
    return (base * 3 + walk).astype(dtype)


def partial_counts(monkeypatch):
    """Record, per native call (jitted or Python), how many pieces were decoded by item range."""
    seen: list[int] = []
    for name in ("read_pieces", "read_pieces_py"):
        real = getattr(libblosc2, name)

        def spy(*args, real=real):
            payloads = args[2]
            seen.append(int(((payloads.count > 0) & ~payloads.raw).sum()))
            return real(*args)

        monkeypatch.setattr(libblosc2, name, spy)
    return seen


@pytest.fixture(params=["kernel", "python"])
def read_path(request, monkeypatch):
    """Bulk reads through the jitted read_pieces, or through read_pieces_py (small batches)."""
    if request.param == "kernel":
        monkeypatch.setattr(gather, "KERNEL_MIN_PIECES", 0)
    else:
        monkeypatch.setattr(gather, "KERNEL_MIN_PIECES", 1 << 62)
        monkeypatch.setattr(libblosc2, "read_pieces_compiled", lambda: False)
    return request.param


@pytest.mark.skipif(not libblosc2.AVAILABLE, reason=f"libblosc2 not reachable: {libblosc2.UNAVAILABLE_REASON}")
@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
@pytest.mark.parametrize("layout", range(len(PARTIAL_LAYOUTS)), ids=["1d", "2d", "3d"])
def test_partial_chunk_decoding_matches_numpy(tmp_path, monkeypatch, codec, layout, read_path):
    shape, chunks, dtype, selections = PARTIAL_LAYOUTS[layout]
    data = [smooth(np.random.default_rng(i), shape, dtype) for i in range(5)]
    with atlas.Atlas.create(tmp_path / "s", codec=codec) as s:
        for i, arr in enumerate(data):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("v", dtype, [f"a{k}" for k in range(len(shape))], list(shape), chunk_shape=list(chunks))
            ds.write_array("v", [0] * len(shape), arr)
    s = atlas.Atlas.open(tmp_path / "s", mode="r")
    names = s.list_datasets()
    seen = partial_counts(monkeypatch)
    for start, box in selections:
        got = s.read_array_across_stacked("v", names, start, box)
        sl = tuple(slice(a, a + b) for a, b in zip(start, box))
        np.testing.assert_array_equal(got, np.stack([arr[sl] for arr in data]), err_msg=f"{start} {box}")
    if codec == "none":
        assert sum(seen) == 0  # uncompressed chunks are sliced in place
    else:
        assert sum(seen) > 0, "no chunk was decoded by item range"
    monkeypatch.setattr(libblosc2, "AVAILABLE", False)
    for start, box in selections:
        sl = tuple(slice(a, a + b) for a, b in zip(start, box))
        want = np.stack([arr[sl] for arr in data])
        np.testing.assert_array_equal(s.read_array_across_stacked("v", names, start, box), want)


def test_partial_item_range_per_plan_row():
    from atlas.engine.pieces import PARTIAL_MAX_FRACTION
    from atlas.engine.planner import plan_selection

    plan = plan_selection((50, 168), (50, 168), (0, 0), (13, 42))
    rows = ItemRanges(plan)
    assert rows.cells.tolist() == [8400]
    assert rows.first.tolist() == [0]
    assert rows.count.tolist() == [12 * 168 + 41 + 1]
    # Inner box of an edge chunk (cut at the array bounds): strides follow the cut shape.
    plan = plan_selection((70, 60, 30), (50, 50, 24), (51, 52, 25), (3, 4, 2))
    rows = ItemRanges(plan)
    assert plan.chunk_shapes.tolist() == [[20, 10, 6]]
    assert rows.first.tolist() == [1 * 60 + 2 * 6 + 1]
    assert rows.count.tolist() == [(3 * 60 + 5 * 6 + 2) - (1 * 60 + 2 * 6 + 1) + 1]
    # A box spanning most of the chunk is decoded whole.
    plan = plan_selection((100,), (100,), (0,), (int(100 * PARTIAL_MAX_FRACTION) + 1,))
    assert ItemRanges(plan).count.tolist() == [0]


ALL_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_partial_decoding_every_dtype(tmp_path, codec):
    rng = np.random.default_rng(7)
    shape, chunks = (40, 300), (40, 300)
    values = {}
    with atlas.Atlas.create(tmp_path / "s", codec=codec) as s:
        for i in range(4):
            ds = s.create_dataset(f"d{i}")
            for dt in ALL_DTYPES:
                arr = (rng.integers(0, 4, shape).cumsum(-1) % 100).astype(dt)
                values[dt, i] = arr
                ds.define_array(dt, dt, ["y", "x"], list(shape), chunk_shape=list(chunks))
                ds.write_array(dt, [0, 0], arr)
            flags = rng.random(shape) < 0.1
            values["bool", i] = flags
            ds.define_array("bool", "bool", ["y", "x"], list(shape), chunk_shape=list(chunks))
            ds.write_array("bool", [0, 0], flags)
            when = (np.arange(np.prod(shape)).reshape(shape) * 1000 + i).astype("datetime64[ns]")
            values["when", i] = when
            ds.define_array("when", "timestamp_ns", ["y", "x"], list(shape), chunk_shape=list(chunks))
            ds.write_array("when", [0, 0], when)
            text = np.array([f"s{i}-{k}" for k in range(300)], dtype=object)
            values["text", i] = text
            ds.define_array("text", "string", ["x"], [300], chunk_shape=[300])
            ds.write_array("text", [0], text)
            # Partly written integers carry a written-mask after the cells.
            ds.define_array("masked", "int16", ["y", "x"], list(shape), chunk_shape=list(chunks))
            part = np.arange(300, dtype="int16").reshape(10, 30) + i
            ds.write_array("masked", [5, 7], part)
            full = np.zeros(shape, "int16")
            full[5:15, 7:37] = part
            values["masked", i] = full
    s = atlas.Atlas.open(tmp_path / "s", mode="r")
    names = s.list_datasets()
    for array in [*ALL_DTYPES, "bool", "when", "masked"]:
        for start, box in [([0, 0], [10, 75]), ([6, 8], [3, 20]), ([0, 0], [40, 300])]:
            got = s.read_array_across_stacked(array, names, start, box)
            want = np.stack(
                [values[array, i][start[0] : start[0] + box[0], start[1] : start[1] + box[1]] for i in range(4)]
            )
            assert got.dtype == want.dtype, array
            np.testing.assert_array_equal(got, want, err_msg=array)
    got = s.read_array_across_stacked("text", names, [0], [30])
    np.testing.assert_array_equal(got, np.stack([values["text", i][:30] for i in range(4)]))


# -- records that do not match the chunk they claim to be -------------------------------------------


def forge_record(path, array, field, value):
    """Rewrite one field of the first chunk record of ``array`` (index checksum recomputed)."""
    import json
    import struct

    from atlas.engine.codecs import checksum
    from atlas.engine.segment import RECORD_DTYPE

    manifest = json.loads((path / "atlas.json").read_text())
    entry = manifest["arrays"][array]["segments"][0]
    seg = path / array / entry[0]
    data = bytearray(seg.read_bytes())
    io_, il = entry[2], entry[3]
    table = np.frombuffer(bytes(data[io_ : io_ + il]), RECORD_DTYPE).copy()
    table[field][0] = value
    data[io_ : io_ + il] = table.tobytes()
    entry[4] = checksum(table.tobytes())
    data[-32:] = struct.pack("<QQQ8s", io_, il, entry[4], b"ATLASEND")
    seg.write_bytes(data)
    (path / "atlas.json").write_text(json.dumps(manifest))
    return seg


@pytest.mark.parametrize(
    ("codec", "field", "value"),
    [
        ("zstd", "raw_nbytes", 2**31 - 1000),  # would size a 2 GiB buffer
        ("zstd", "raw_nbytes", 2**64 - 1),
        ("zstd", "raw_nbytes", 8),  # shorter than the chunk
        ("none", "raw_nbytes", 2**40),
        ("zstd", "codec", 9),
    ],
)
def test_forged_record_sizes_are_refused(tmp_path, codec, field, value):
    with atlas.Atlas.create(tmp_path / "s", codec=codec) as s:
        for i in range(3):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("x", "float64", ["n"], [1000], chunk_shape=[1000])
            ds.write_array("x", [0], np.zeros(1000))
    seg = forge_record(tmp_path / "s", "x", field, value)
    s = atlas.Atlas.open(tmp_path / "s", mode="r")
    for workers in (1, 2):
        s.max_workers = workers
        with pytest.raises(errors.CorruptStoreError, match=seg.name):
            s.read_array_across_stacked("x", s.list_datasets(), [0], [3])


def test_forged_raw_chunk_shorter_than_its_cells(tmp_path):
    with atlas.Atlas.create(tmp_path / "s", codec="none") as s:
        for i in range(2):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("x", "float64", ["n"], [100])
            ds.write_array("x", [0], np.arange(100.0))
    # Record and payload both shrink consistently: the checksum matches a prefix.
    from atlas.engine.codecs import checksum

    s = atlas.Atlas.open(tmp_path / "s", mode="r")
    table = s._st.engine("x").index().table
    off = int(table["offset"][0])
    seg_path = next((tmp_path / "s" / "x").iterdir())
    digest = checksum(seg_path.read_bytes()[off : off + 80])
    s.close()
    forge_record(tmp_path / "s", "x", "nbytes", 80)
    forge_record(tmp_path / "s", "x", "checksum", digest)
    s = atlas.Atlas.open(tmp_path / "s", mode="r")
    with pytest.raises(errors.CorruptStoreError, match="claims"):
        s.read_array_across_stacked("x", s.list_datasets())


@pytest.mark.skipif(not libblosc2.AVAILABLE, reason=f"libblosc2 not reachable: {libblosc2.UNAVAILABLE_REASON}")
@pytest.mark.parametrize("fn", ["read_pieces", "read_pieces_py"])
def test_read_pieces_statuses(fn):
    import blosc2

    from atlas.engine.codecs import checksum

    data = np.arange(6000, dtype="float64").reshape(60, 100)
    packed = np.frombuffer(blosc2.compress2(data, typesize=8, blocksize=16384), np.uint8)
    raw_bytes = data.reshape(-1).view(np.uint8)
    src = np.concatenate([packed, np.zeros((-packed.size) % 64, np.uint8), raw_bytes])
    raw_at = src.size - raw_bytes.size
    n = 6
    offsets = np.array([0, 0, raw_at, raw_at + 4, 0, src.size - 8], np.int64)
    nbytes = np.array([packed.size] * 2 + [raw_bytes.size] * 2 + [packed.size, 16], np.int64)
    sums = np.array([checksum(src[o : o + k]) if o + k <= src.size else 0 for o, k in zip(offsets, nbytes)], np.uint64)
    sums[4] ^= np.uint64(1)  # checksum mismatch
    raw = np.array([False, False, True, True, False, False])
    # Piece 0 decodes only items 203 (row 2, column 3) to 709 (row 7, column 9).
    first = np.array([203, 0, 0, 0, 0, 0], np.int64)
    count = np.array([709 - 203 + 1, 0, 0, 0, 0, 0], np.int64)
    # The kernel works on bytes: the innermost extents, starts and bases are in bytes (x 8).
    chunk_shapes = np.tile(np.array([60, 800], np.int64), (n, 1))
    in_chunk = np.tile(np.array([2, 24], np.int64), (n, 1))
    boxes = np.tile(np.array([6, 56], np.int64), (n, 1))
    sel = np.array([6, 56], np.int64)
    in_sel = np.zeros((n, 2), np.int64)
    bases = np.arange(n, dtype=np.int64) * 42 * 8
    dst = np.full(n * 42, -1.0)
    status = np.full(n, 99, np.int64)
    scratch = np.empty(48000, np.uint8)
    getattr(libblosc2, fn)(
        libblosc2.thread_context(),
        src,
        Payloads(offsets, nbytes, sums, raw, np.full(n, 48000, np.int64), first, count),
        8,
        scratch,
        Pieces(chunk_shapes, in_chunk, boxes, in_sel, bases, sel, dst.view(np.uint8)),
        status,
    )
    want = data[2:8, 3:10].reshape(-1)
    assert status.tolist() == [0, 0, 0, libblosc2.ERR_BOUNDS, libblosc2.ERR_CHECKSUM, libblosc2.ERR_BOUNDS]
    for p in range(3):  # item range, whole chunk, raw
        np.testing.assert_array_equal(dst[p * 42 : (p + 1) * 42], want)


@pytest.mark.parametrize("dtype", ["float32", "int16", "bool", "uint64"])
def test_missing_chunks_read_as_fill_on_both_paths(tmp_path, monkeypatch, dtype, read_path):
    """Unwritten chunks come back as each dataset's fill value, whether the fill goes
    through the fill_pieces kernel or through numpy views (small batches)."""
    fills = {"float32": [-1.5, 7.0], "int16": [-3, 12], "bool": [True, False], "uint64": [2**64 - 1, 5]}[dtype]
    with atlas.Atlas.create(tmp_path / "s") as s:
        for i, fill in enumerate(fills):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("v", dtype, ["x", "y"], [6, 9], chunk_shape=[2, 4], fill_value=fill)
            ds.write_array("v", [0, 0], np.ones((2, 4), dtype))  # one chunk of six written
        ds = s.create_dataset("scalar")
        ds.define_array("v", dtype, [], [], fill_value=fills[0])
    s = atlas.Atlas.open(tmp_path / "s", mode="r")
    got = s.read_array_across_stacked("v", ["d0", "d1"], [1, 2], [5, 7])
    for i, fill in enumerate(fills):
        want = np.full((6, 9), fill, dtype)
        want[:2, :4] = 1
        np.testing.assert_array_equal(got[i], want[1:6, 2:9])
    assert s.read_array_across_stacked("v", ["scalar"]).tolist() == [fills[0]]
