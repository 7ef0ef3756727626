"""The fast paths of small reads and writes give the same answers as the general ones."""

from __future__ import annotations

import numpy as np
import pytest

import atlas
from atlas import errors


def make(path, values):
    with atlas.Atlas.create(path) as s:
        ds = s.create_dataset("d")
        ds.define_array("v", "float32", ["n"], [len(values)])
        ds.write_array("v", [0], np.asarray(values, np.float32))


def test_cached_small_read_follows_commits_of_other_handles(tmp_path):
    make(tmp_path / "s", [1, 2, 3, 4])
    reader = atlas.Atlas.open(tmp_path / "s")
    ds = reader.open_dataset("d")
    assert ds.read_array("v", [1], [2]).tolist() == [2, 3]
    assert ds.read_array("v", [1], [2]).tolist() == [2, 3]  # from the decoded cache
    with atlas.Atlas.open(tmp_path / "s") as writer:
        writer.open_dataset("d").write_array("v", [0], np.array([9, 8, 7, 6], np.float32))
    assert ds.read_array("v").tolist() == [1, 2, 3, 4]  # the reader's snapshot is unchanged
    reader.refresh()
    assert ds.read_array("v").tolist() == [9, 8, 7, 6]


def test_cached_small_read_sees_pending_writes_and_discard(tmp_path):
    make(tmp_path / "s", [1, 2, 3, 4])
    s = atlas.Atlas.open(tmp_path / "s")
    ds = s.open_dataset("d")
    assert ds.read_array("v").tolist() == [1, 2, 3, 4]
    ds.write_array("v", [2], np.array([30], np.float32))  # read-modify-write of the one chunk
    assert ds.read_array("v").tolist() == [1, 2, 30, 4]
    ds.write_array("v", [0], np.array([5, 6, 7, 8], np.float32))  # whole-array write
    assert ds.read_array("v", [3], [1]).tolist() == [8]
    s.discard()
    assert ds.read_array("v").tolist() == [1, 2, 3, 4]
    s.compact(grace_period=0)
    assert ds.read_array("v").tolist() == [1, 2, 3, 4]


def test_whole_array_write_copies_the_callers_buffer(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as s:
        ds = s.create_dataset("d")
        ds.define_array("v", "int32", ["n"], [3])
        buf = np.array([1, 2, 3], np.int32)
        ds.write_array("v", [0], buf)
        buf[:] = 0
        out = ds.read_array("v")
        out[:] = -1  # a read returns a new array, never the staged or cached one
        assert ds.read_array("v").tolist() == [1, 2, 3]
    ds = atlas.Atlas.open(tmp_path / "s").open_dataset("d")
    first = ds.read_array("v")
    first[:] = -1
    assert ds.read_array("v").tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("start", "shape", "error"),
    [
        ([4], [1], errors.SelectionError),
        ([-1], [1], errors.SelectionError),
        ([0], [5], errors.SelectionError),
        ([0, 0], [1, 1], errors.SelectionError),
        ([True], [1], errors.InvalidArgumentError),
        ([1.0], [1], errors.InvalidArgumentError),
        ("0", [1], errors.InvalidArgumentError),
    ],
)
def test_bad_boxes_get_the_usual_errors(tmp_path, start, shape, error):
    make(tmp_path / "s", [1, 2, 3, 4])
    ds = atlas.Atlas.open(tmp_path / "s").open_dataset("d")
    with pytest.raises(error, match="dataset 'd' array 'v'"):
        ds.read_array("v", start, shape)
    assert ds.read_array("v", np.array([1]), (np.int64(2),)).tolist() == [2, 3]  # numpy integers still work


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [("float32", None), ("float64", None), ("float32", -999.0), ("float64", 0.0), ("int16", None), ("int32", 7),
     ("uint64", None), ("uint8", 0), ("bool", None), ("bool", False), ("timestamp_nanoseconds", None),
     ("int64", -1), ("float64", "nan")],
)  # fmt: skip
def test_stats_of_many_staged_chunks_equal_the_per_chunk_kernel(dtype, fill):
    from atlas.engine.chunks import chunk_stats, value_bits
    from atlas.engine.family import FamilyEngine
    from atlas.engine.staged import PendingChunk
    from atlas.metadata import ArrayFamily, ArrayMeta, Stats

    rng = np.random.default_rng(0)
    metas_fill = [fill] * 60
    if fill == "nan":  # a distinct NaN object per array: still one group
        metas_fill = [float("nan") for _ in range(60)]
        fill = None
    store_dtype = np.dtype("int64") if dtype == "timestamp_nanoseconds" else np.dtype(dtype)
    cells = 6
    rows = []
    for r in range(60):
        if store_dtype.kind == "f":
            v = rng.choice(np.array([0.0, -0.0, 1.5, -2.25, np.nan, np.inf, -np.inf, -999.0, 3e38]), cells)
        elif store_dtype.kind == "b":
            v = rng.integers(0, 2, cells).astype(bool)
        else:
            info = np.iinfo(store_dtype)
            v = rng.choice(np.array([info.min, info.max, 0, 1, 7, -1 if info.min < 0 else 2], dtype=store_dtype), cells)
        v = v.astype(store_dtype)
        if r % 10 == 0 and fill is not None:
            v[:] = fill  # every cell null
        rows.append(v)
    metas = {slot: ArrayMeta(slot, dtype, ("n",), (cells,), (cells,), metas_fill[slot]) for slot in range(len(rows))}
    engine = FamilyEngine("v", ArrayFamily("v"), None)
    for slot, v in enumerate(rows):
        engine.pending[slot] = {0: PendingChunk(v, None)}
    (group,) = engine.stack_staged(metas, "zstd")
    assert len(group) > len(rows) // 2  # the stacked path ran
    assert group.slots.tolist() == sorted(group.slots.tolist())
    group.set_array_stats(metas)
    for row, slot in enumerate(group.slots.tolist()):
        v = rows[slot]
        want = chunk_stats(v, None, metas[slot])
        got = group.chunk_stats(row)
        assert got == want, (slot, v)
        assert metas[slot].stats == Stats(want.cells, want.null_count, want.minimum, want.maximum)
        assert int(group.min_bits[row]) == value_bits(want.minimum, dtype)
        assert int(group.max_bits[row]) == value_bits(want.maximum, dtype)
        for a, b in ((got.minimum, want.minimum), (got.maximum, want.maximum)):
            assert type(a) is type(b) and (a is None or np.signbit(a) == np.signbit(b))


def test_tiny_chunks_are_encoded_as_encode_chunk_does():
    from atlas.engine.chunks import encode_chunk
    from atlas.engine.codecs import checksum
    from atlas.engine.family import FamilyEngine
    from atlas.engine.staged import PendingChunk, build_segment
    from atlas.metadata import ArrayFamily, ArrayMeta

    chunks = {
        0: ("float32", np.array([1.5, np.nan, -2.0], np.float32), None),
        1: ("bool", np.array([True, False, True]), None),
        2: ("int64", np.array([-5, 7, 0], np.int64), -5),
        3: ("timestamp_nanoseconds", np.array([-(2**63), 3, 9], np.int64), None),
        4: ("uint8", np.arange(200, dtype=np.uint8), None),  # above the raw-only size: compressed path
        5: ("string", np.array(["a", "bc", ""], dtype=object), None),
    }
    engine = FamilyEngine("v", ArrayFamily("v"), None)
    metas = {}
    for slot, (dtype, values, fill) in chunks.items():
        metas[slot] = ArrayMeta(slot, dtype, ("n",), values.shape, values.shape, fill)
        engine.pending[slot] = {0: PendingChunk(values, None)}
    writer = build_segment(engine, metas, "zstd", 1, b"t" * 16)
    writer.finish()
    for slot, record in enumerate(writer.table.tolist()):
        dtype, values, _ = chunks[slot]
        enc = encode_chunk(values, None, metas[slot], "zstd")
        want = (slot, 0, enc.stored.nbytes, enc.raw_nbytes, checksum(enc.stored), enc.stats.null_count,
                enc.min_bits, enc.max_bits, enc.codec, enc.flags)  # fmt: skip
        got = (record[0], record[1], record[3], record[4], record[5], record[6], record[7], record[8], record[9],
               record[10])  # fmt: skip
        assert got == want, dtype


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_stacked_chunks_lay_out_the_segment_a_chunk_by_chunk_encoding_writes(codec):
    """Blocks of stacked tiny chunks, interleaved with chunks encoded one by one, give the same bytes."""
    from atlas.engine.family import FamilyEngine
    from atlas.engine.staged import PendingChunk, build_segment
    from atlas.metadata import ArrayFamily, ArrayMeta

    rng = np.random.default_rng(1)
    metas, staged = {}, {}
    for slot in range(3, 400):
        kind = slot % 7
        if kind == 0:  # a string array: never stacked
            values = np.array([f"s{slot}", ""], dtype=object)
            metas[slot] = ArrayMeta(slot, "string", ("n",), (2,), (2,), None)
            staged[slot] = {0: PendingChunk(values, None)}
        elif kind == 1:  # two chunks: never stacked
            metas[slot] = ArrayMeta(slot, "int16", ("n",), (8,), (4,), None)
            staged[slot] = {c: PendingChunk(rng.integers(-9, 9, 4).astype(np.int16), None) for c in (0, 1)}
        elif kind == 2:  # above the raw-only size: stacked stats, compressed one by one (zstd)
            metas[slot] = ArrayMeta(slot, "float64", ("n",), (40,), (40,), None)
            staged[slot] = {0: PendingChunk(np.repeat(rng.normal(size=4), 10), None)}
        elif kind == 3:  # a -0.0 next to a 0.0: left to the per-chunk kernel
            metas[slot] = ArrayMeta(slot, "float32", ("t",), (5,), (5,), None)
            staged[slot] = {0: PendingChunk(np.array([0.0, -0.0, 1, 2, np.nan], np.float32), None)}
        elif kind == 4:  # a 0-d bool
            metas[slot] = ArrayMeta(slot, "bool", (), (), (), None)
            staged[slot] = {0: PendingChunk(np.array([slot % 2 == 0]), None)}
        else:  # the common case: small float32 arrays, some every cell null
            metas[slot] = ArrayMeta(slot, "float32", ("t",), (5,), (5,), -999.0)
            values = rng.normal(size=5).astype(np.float32)
            if slot % 5 == 0:
                values[:] = -999.0
            staged[slot] = {0: PendingChunk(values, None)}

    def segment(stack: bool) -> bytes:
        engine = FamilyEngine("v", ArrayFamily("v"), None)
        engine.pending = {s: {c: PendingChunk(p.values, p.written) for c, p in chunks.items()}
                          for s, chunks in staged.items()}  # fmt: skip
        groups = engine.stack_staged(metas, codec) if stack else []
        if stack:
            assert {g.dtype for g in groups} == {"float32", "float64", "bool"}
            assert any(g.raw for g in groups) and (codec == "none" or not all(g.raw for g in groups))
        parts, _ = build_segment(engine, metas, codec, 1, b"t" * 16, 1, groups).finish_ref()
        return b"".join(bytes(memoryview(p)) for p in parts)

    assert segment(True) == segment(False)


def test_row_checksums_equal_the_checksum_of_each_row():
    """The numpy XXH64 of many short rows (and the C path of long ones) is the payload checksum."""
    from atlas.engine.codecs import checksum, row_checksums
    from atlas.engine.rowhash import xxh64_rows

    rng = np.random.default_rng(2)
    for nbytes in [*range(0, 130), 255, 256, 257, 1000]:
        stride = max(64, -(-nbytes // 64) * 64)
        block = rng.integers(0, 256, (20, stride), dtype=np.uint8)
        want = [checksum(block[i, :nbytes].copy()) for i in range(20)]
        assert xxh64_rows(block, nbytes).tolist() == want, nbytes
        assert [int(x) for x in row_checksums(block, nbytes)] == want, nbytes
        assert [int(x) for x in row_checksums(block[:3], nbytes)] == want[:3], nbytes  # few rows: one call each


@pytest.mark.parametrize("enabled", [True, False])
def test_flush_pauses_the_cycle_collector_and_restores_it(tmp_path, enabled):
    """No automatic collection traverses the staged datasets during a commit; the collector's state is kept."""
    import gc

    values = np.arange(24, dtype=np.float32)
    store = atlas.Atlas.create(tmp_path / "s")
    store.add_datasets((f"d{i:04d}", {"temp": (["time"], values)}, {"lat": float(i)}) for i in range(300))
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    threshold = gc.get_threshold()
    was = gc.isenabled()
    gc.callbacks.append(count)
    try:
        (gc.enable if enabled else gc.disable)()
        gc.set_threshold(1, 1, 1)  # a collection at nearly every allocation, unless paused
        store.flush()
        assert gc.isenabled() is enabled
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(count)
        (gc.enable if was else gc.disable)()
    assert len(collections) < 20, len(collections)  # the few before and after the paused commit
    with atlas.Atlas.open(tmp_path / "s") as s:
        assert s.open_dataset("d0299").read_array("temp").tolist() == values.tolist()


# -- the per-call and batched staging paths remember what passed their checks ---------------------------


def test_a_remembered_schema_still_refuses_lookalike_arguments(tmp_path):
    s = atlas.Atlas.create(tmp_path / "s")
    s.create_dataset("a").define_array("temp", "float32", ["time"], [24])  # checked in full, remembered
    ds = s.create_dataset("b")
    # Equal as dict keys to the remembered (dtype, dims, shape), yet refused as before.
    with pytest.raises(errors.InvalidArgumentError, match="dataset 'b' array 'temp': shape must hold integers"):
        ds.define_array("temp", "float32", ["time"], [24.0])
    with pytest.raises(errors.InvalidArgumentError, match="shape must hold integers, got True"):
        s.create_dataset("c").define_array("one", "float32", ["time"], [True])
    s.create_dataset("c1").define_array("one", "float32", ["time"], [1])
    with pytest.raises(errors.InvalidArgumentError, match="shape must hold integers, got True"):
        s.create_dataset("c2").define_array("one", "float32", ["time"], [True])
    with pytest.raises(errors.InvalidArgumentError, match="dims must be a sequence of str"):
        ds.define_array("temp", "float32", "time", [24])
    with pytest.raises(errors.InvalidNameError, match="dimension name must be a non-empty str"):
        ds.define_array("temp", "float32", [b"time"], [24])
    with pytest.raises(errors.FillValueError):
        ds.define_array("temp", "float32", ["time"], [24], fill_value="x")  # the fill value is checked every time
    assert not ds.has_array("temp")
    ds.define_array("temp", "float32", ("time",), (np.int64(24),), fill_value=-1.0)  # numpy ints still work
    assert ds.array_meta("temp") == {"dtype": "float32", "shape": [24], "chunk_shape": [24],
                                     "dimension_names": ["time"], "fill_value": np.float32(-1.0)}  # fmt: skip
    assert type(s.session.state().dataset("b").arrays["temp"].shape[0]) is int
    with pytest.raises(errors.ArrayExistsError, match="dataset 'b' array 'temp' already exists"):
        ds.define_array("temp", "float32", ["time"], [24])
    s.discard()


def test_remembered_names_and_labels_still_refuse_bad_ones(tmp_path):
    s = atlas.Atlas.create(tmp_path / "s")
    ds = s.create_dataset("a")
    ds.set_attribute("lat", 1.5)
    ds.define_array("temp", "float32", ["time"], [2])
    for _ in range(2):  # an invalid name is never remembered
        with pytest.raises(errors.InvalidNameError, match="attribute name must be a non-empty str"):
            ds.set_attribute("", 1.0)
        with pytest.raises(errors.InvalidNameError, match="not valid unicode"):
            ds.set_attribute("lat\ud800", 1.0)
        with pytest.raises(errors.InvalidNameError, match="must not start with '_'"):
            ds.define_array("_temp", "float32", ["time"], [2])
        with pytest.raises(errors.InvalidNameError, match="is too long"):
            ds.define_array("t" * 300, "float32", ["time"], [2])
        with pytest.raises(errors.InvalidNameError, match="array name must be a str"):
            ds.define_array(["temp"], "float32", ["time"], [2])
    assert ds.attributes() == {"lat": 1.5}
    assert ds.list_arrays() == ["temp"]
    s.discard()


def test_fast_paths_fail_as_before_on_deleted_datasets_and_closed_or_read_only_handles(tmp_path):
    s = atlas.Atlas.create(tmp_path / "s")
    ds = s.create_dataset("d")
    ds.define_array("v", "float32", ["n"], [2])
    ds.set_attribute("k", "x")
    s.flush()
    s.delete_dataset("d")  # pending as deleted
    # The missing dataset is named before the value is looked at.
    with pytest.raises(errors.DatasetNotFoundError, match="dataset 'd' does not exist"):
        ds.set_attribute("k", None)
    with pytest.raises(errors.DatasetNotFoundError, match="dataset 'd' does not exist"):
        ds.write_array("v", [0], "not an array")
    with pytest.raises(errors.DatasetNotFoundError, match="dataset 'd' does not exist"):
        ds.define_array("w", "nonsense", ["n"], [2])
    s.discard()
    odd = atlas.DatasetView(s, ["d"])  # a view of an unhashable name finds no dataset
    with pytest.raises(errors.DatasetNotFoundError):
        odd.set_attribute("k", 1.0)
    with pytest.raises(errors.DatasetNotFoundError):
        odd.write_array("v", [0], np.zeros(2, np.float32))
    ds.set_attribute("k", "y")  # the committed dataset: copied on this first change
    ds.set_attribute("k2", 2.5)
    assert ds.attributes() == {"k": "y", "k2": 2.5}
    s.close()
    r = atlas.Atlas.open(tmp_path / "s", mode="r")
    rds = r.open_dataset("d")
    with pytest.raises(errors.ReadOnlyError, match=r"cannot create dataset 'e': store .* was opened read-only"):
        r.create_dataset("e")
    with pytest.raises(errors.ReadOnlyError, match="cannot set attribute 'k' in dataset 'd'"):
        rds.set_attribute("k", "z")
    with pytest.raises(errors.ReadOnlyError, match="cannot write array 'v' in dataset 'd'"):
        rds.write_array("v", [0], np.zeros(2, np.float32))
    with pytest.raises(errors.ReadOnlyError, match="cannot define array 'w' in dataset 'd'"):
        rds.define_array("w", "float32", ["n"], [2])
    r.close()
    for handle, view in ((s, ds), (r, rds)):
        with pytest.raises(errors.StoreClosedError):
            handle.create_dataset("e")
        with pytest.raises(errors.StoreClosedError):
            view.set_attribute("k", 1.0)
        with pytest.raises(errors.StoreClosedError):
            view.write_array("v", [0], np.zeros(2, np.float32))
        with pytest.raises(errors.StoreClosedError):
            view.define_array("w", "float32", ["n"], [2])


def test_write_array_converts_or_refuses_data_not_in_storage_form(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as s:
        ds = s.create_dataset("d")
        ds.define_array("v", "float32", ["n"], [3])
        ds.define_array("t", "timestamp_nanoseconds", ["n"], [2])
        ds.write_array("v", [0], np.array([1, 2, 3], np.float32))  # the storage form: staged as it is
        ds.write_array("v", [0], np.array([4, 5, 6], ">f4"))  # another byte order: converted
        assert ds.read_array("v").tolist() == [4, 5, 6]
        with pytest.raises(errors.DTypeError, match="expected float32 data, got float64"):
            ds.write_array("v", [0], np.zeros(3))
        with pytest.raises(errors.DTypeError, match="must be C-contiguous"):
            ds.write_array("v", [0], np.zeros(6, np.float32)[::2])
        ds.write_array("t", [0], np.array([5, 6], np.int64))  # int64 cells of a timestamp array
        assert ds.read_array("t").tolist() == [5, 6]
        assert ds.read_array("v").tolist() == [4, 5, 6]


def test_a_remembered_batch_schema_stages_lookalike_data_as_the_full_checks_do(tmp_path):
    def first(values):
        return ("a", {"v": (["n"], values)}, {"k": 1.0})

    with atlas.Atlas.create(tmp_path / "s") as s:
        s.add_datasets([first(np.arange(4, dtype=np.float32))])  # checked in full, remembered
        s.add_datasets([
            ("b", {"v": (["n"], np.arange(8, dtype=np.float32)[::2])}),  # not contiguous: copied
            ("c", {"v": (["n"], np.arange(4, dtype=">f4"))}),  # another byte order: converted
            ("d", {"v": (["n"], np.arange(4, dtype=np.float32), np.float32(-1))}),  # a fill value
            ("e", {"v": ([np.str_("n")], np.arange(4, dtype=np.float32))}),  # a str subclass as dimension
        ])  # fmt: skip
        with pytest.raises(errors.InvalidNameError, match="dimension name must be a non-empty str"):
            s.add_datasets([("f", {"v": ([b"n"], np.arange(4, dtype=np.float32))})])
        with pytest.raises(errors.InvalidArgumentError, match="1 dims"):
            s.add_datasets([("f", {"v": (["n"], np.zeros((2, 2), np.float32))})])
        with pytest.raises(errors.InvalidNameError, match="must not contain '/'"):
            s.add_datasets([("f", {"v/w": (["n"], np.arange(4, dtype=np.float32))})])
        assert "f" not in s
        for name, want in (("b", [0, 2, 4, 6]), ("c", [0, 1, 2, 3]), ("d", [0, 1, 2, 3]), ("e", [0, 1, 2, 3])):
            assert s[name].read_array("v").tolist() == want
            assert s[name].read_array("v").dtype == np.float32
        assert s["d"].array_fill_value("v") == -1
        assert s["a"].array_meta("v") == s["e"].array_meta("v")
    s = atlas.Atlas.open(tmp_path / "s")
    assert s["c"].read_array("v").tolist() == [0, 1, 2, 3]
    assert s.verify() == []


def test_grouping_of_staged_chunks_does_not_depend_on_shared_field_objects():
    # A batch's records share their dtype, shape and chunk shape objects and are
    # grouped by identity; records with equal fields in other objects (the per-call
    # path), interleaved with other dtypes, shapes and fill values (NaN, -0.0 and 0.0
    # among them), must land in the same groups, rows in slot order.
    from atlas.engine.family import FamilyEngine
    from atlas.engine.staged import PendingChunk
    from atlas.metadata import ArrayFamily, ArrayMeta

    kinds = [("float32", (6,), None), ("float32", (6,), float("nan")), ("float32", (6,), -0.0),
             ("float32", (6,), 0.0), ("int16", (6,), None), ("float32", (4,), None), ("int16", (6,), 3)]  # fmt: skip
    def build(shared: bool) -> list:
        rng = np.random.default_rng(1)  # the same cells both times
        engine = FamilyEngine("v", ArrayFamily("v"), None)
        metas = {}
        # Slots staged out of order in places (as a rebase or a mix of paths leaves
        # them): each group's rows still come out in slot order.
        for slot in [*range(100), *range(199, 99, -1)]:
            dtype, shape, fill = kinds[(slot // 3) % len(kinds)]
            if not shared:  # equal fields, fresh objects (a NaN fill is another NaN object)
                dtype, shape = "".join(dtype), tuple(list(shape))
                fill = None if fill is None else float(str(fill))
            metas[slot] = ArrayMeta(slot, dtype, ("n",), shape, shape if shared else tuple(list(shape)), fill)
            values = (rng.integers(-3, 4, shape[0]) * 1.5).astype(dtype)
            engine.pending[slot] = {0: PendingChunk(values, None)}
        groups = engine.stack_staged(metas, "zstd")
        return [(g.dtype, g.slots.tolist(), g.values.tobytes(), g.nulls.tolist(), g.min_bits.tolist(),
                 g.max_bits.tolist()) for g in groups]  # fmt: skip

    got, want = build(True), build(False)
    assert got == want
    assert len(got) == len(kinds) - 1  # fill values -0.0 and 0.0 are equal: one group
    for _, slots, *_ in got:
        assert slots == sorted(slots)
