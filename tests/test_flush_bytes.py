"""The shortcuts of a flush of many small datasets write the bytes of its general paths.

A worker of ``atlas.ingest`` builds the segments and the catalogue part of a batch
of small files of many shapes (:func:`atlas.txn.commit.build_flush`).  Each shortcut
there (columns compressed once per part, small raw payloads hashed as the rows of
one matrix, record tables built from plain words, the strings of a small chunk laid
out by struct, schema codes asked once per template, typed attribute values split
by slices, whole-chunk stats set without the engine) must give exactly the bytes
the general path gives: these tests build the same flush both ways.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import atlas
from atlas.attributes import normalize
from atlas.catalog import build, layout
from atlas.catalog.schemas import SchemaInterner
from atlas.engine import codecs, segment, staged
from atlas.engine.chunks import encode_chunk
from atlas.engine.segment import RECORD_DTYPE, SegmentWriter
from atlas.txn import commit


def profile(i: int) -> tuple[str, dict, dict]:
    """A small profile whose shapes, like those of a batch of CF files, differ from file to file."""
    n = 3 + i % 11
    rng = np.random.default_rng(i)
    temp = (np.cumsum(rng.normal(size=n * 8)) + 10).astype(np.float32)
    if i % 5 == 0:
        temp[1] = np.nan
    arrays = {
        "temp": (["depth"], temp),  # compressed
        "temp_qc": (["depth"], np.full(n * 8, i % 3, np.int8)),  # raw, of a few sizes
        "time_qc": (["t"], np.array([1, i % 4], np.int8)),  # raw, one size for all
        "ref": (["t"], np.array([f"r{i}", "é"])),  # strings
        "lat": (["t"], np.array([i / 4, -0.0]) if i % 9 else np.zeros(2)),
    }
    attrs = {
        "platform": f"P{i % 4}",
        "lat": i / 4,
        "n": i,
        "flag": bool(i % 2),
        "title": "CF profile",
        # a list in some rows, a float in others: the key is not scalar
        "levels": [1.5, float(i)] if i % 3 else 7.0,
        "shape": np.arange(3) + i,
    }
    if i % 13 == 0:
        attrs["rare"] = "only here"
    return f"p{i:04d}", arrays, attrs


def _general_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every shortcut of the flush to its general path."""

    def schema_codes(interner, ams, fields):
        return np.fromiter(map(interner.code, ams), dtype="<u4", count=len(ams))

    def record_table(records):
        return np.array([(*r, b"") for r in records], dtype=RECORD_DTYPE)

    def no_whole_chunk_stats(metas, pending, done):
        return [slot for slot in metas if slot not in done]

    monkeypatch.setattr(layout, "_MEMO_BYTES", -1)
    monkeypatch.setattr(staged, "_ROWS_MIN", 1 << 62)
    monkeypatch.setattr(codecs, "_STRUCT_STRINGS", -1)
    monkeypatch.setattr(build, "_schema_codes", schema_codes)
    monkeypatch.setattr(build, "_MAX_ORDERS", -1)  # every key split on its own
    monkeypatch.setattr(segment, "_record_table", record_table)
    monkeypatch.setattr(commit, "set_whole_chunk_stats", no_whole_chunk_stats)


def _flush_files(st) -> dict[str, bytes]:
    for engine in st.engines.values():  # the stats of every chunk computed by this very build
        for chunks in engine.pending.values():
            for chunk in chunks.values():
                chunk.stats = None
    _, files = commit.build_flush(st)
    return {path: b"".join(bytes(memoryview(p).cast("B")) for p in parts) for path, parts in files}


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
def test_a_flush_of_small_profiles_writes_the_bytes_of_the_general_paths(tmp_path, monkeypatch, codec):
    monkeypatch.setattr(commit, "write_token", lambda: b"\x07" * 16)
    monkeypatch.setattr(commit.time, "time", lambda: 1_700_000_000.0)
    with atlas.Atlas.create(tmp_path / "s", codec=codec) as store:
        store.add_datasets([profile(i) for i in range(70)])
        st = store._st
        fast = _flush_files(st)
        with monkeypatch.context() as m:
            _general_paths(m)
            slow = _flush_files(st)
        assert sorted(fast) == sorted(slow)
        assert len(fast) == 6  # five segments and the part
        for path in fast:
            assert fast[path] == slow[path], path
        store.flush()
    with atlas.Atlas.open(tmp_path / "s") as again:
        assert again.verify() == []
        for i in (0, 13, 69):
            name, arrays, attrs = profile(i)
            ds = again.open_dataset(name)
            np.testing.assert_array_equal(ds.read_array("temp"), arrays["temp"][1])
            np.testing.assert_array_equal(ds.read_array("ref"), arrays["ref"][1].astype(object))
            assert ds.attributes()["levels"] == attrs["levels"]


def test_a_segment_of_small_chunks_is_the_one_a_chunk_by_chunk_encoding_writes(tmp_path):
    """``build_segment`` (stacked groups, small raw payloads hashed together, compressed
    chunks encoded inline) against ``encode_chunk`` and ``SegmentWriter.add`` per chunk."""
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets([profile(i) for i in range(50)])
        ds = store.create_dataset("partly")  # a written mask: encode_chunk's own path
        ds.define_array("temp_qc", "int8", ["depth"], [300])
        ds.write_array("temp_qc", [0], np.ones(100, np.int8))
        st = store._st
        metas_of = st.pending_metas()
        for name in ("temp", "temp_qc", "time_qc", "ref", "lat"):
            engine, metas = st.engine(name), metas_of[name]
            stacked = engine.stack_staged(metas, "zstd")
            writer = staged.build_segment(engine, metas, "zstd", 5, b"\x01" * 16, 1, stacked)
            reference = SegmentWriter(5, b"\x01" * 16)
            for slot in sorted(metas):
                for cid in sorted(engine.pending[slot]):
                    chunk = engine.pending[slot][cid]
                    enc = encode_chunk(chunk.values, chunk.written, metas[slot], "zstd")
                    reference.add(slot, cid, enc.stored, enc.codec, enc.raw_nbytes, enc.stats.null_count,
                                  enc.min_bits, enc.max_bits, enc.flags)  # fmt: skip
            got, want = writer.finish(), reference.finish()
            assert got[1:] == want[1:], name
            assert b"".join(map(bytes, got[0])) == b"".join(map(bytes, want[0])), name
            assert writer.table.tobytes() == reference.table.tobytes()
        store.discard()


def test_segment_records_from_words_and_blocks_are_the_record_table():
    writer = SegmentWriter(3, b"\x02" * 16)
    payloads = [np.frombuffer(bytes([k]) * (10 + k), np.uint8) for k in range(5)]
    for k, p in enumerate(payloads[:3]):
        writer.add(k, 0, p, k % 3, p.nbytes, k, 2**64 - 1 - k, 2**63 + k, k % 2)
    records = np.zeros(4, RECORD_DTYPE)[::2]  # a strided table is taken as well
    records["slot"] = [3, 4]
    records["codec"], records["flags"], records["max"] = 2, 1, 2**64 - 1
    writer.add_block(np.zeros((2, 64), np.uint8), 20, records)
    writer.add(5, 1, payloads[3], 1, 99, 0, 0, 0, 0, digest=12345)
    writer.finish()
    table = writer.table
    assert table.dtype == RECORD_DTYPE
    assert table["slot"].tolist() == [0, 1, 2, 3, 4, 5]
    assert table["codec"].tolist() == [0, 1, 2, 2, 2, 1]
    assert table["flags"].tolist() == [0, 1, 0, 1, 1, 0]
    assert table["min"][:3].tolist() == [2**64 - 1, 2**64 - 2, 2**64 - 3]
    assert table["max"][:3].tolist() == [2**63, 2**63 + 1, 2**63 + 2]
    assert table["checksum"][:3].tolist() == [codecs.checksum(p) for p in payloads[:3]]
    assert table["checksum"][5] == 12345 and table["raw_nbytes"][5] == 99
    assert table["offset"].tolist() == [64, 128, 192, 256, 320, 384]
    assert not table["reserved"].tobytes().strip(b"\0")


@pytest.mark.parametrize("count", [0, 1, 2, 255, 256, 257, 1000])
def test_the_strings_of_a_chunk_have_one_layout_for_any_count(monkeypatch, count):
    values = np.array([f"v{k}é" * (k % 4) for k in range(count)], dtype=object)
    fast = codecs.encode_strings(values)
    monkeypatch.setattr(codecs, "_STRUCT_STRINGS", -1)
    slow = codecs.encode_strings(values)
    assert fast.dtype == slow.dtype == np.uint8
    assert fast.tobytes() == slow.tobytes()
    assert codecs.decode_strings(fast, count, "chunk").tolist() == values.tolist()


def test_schema_codes_asked_once_per_template_are_those_asked_row_by_row():
    from atlas.metadata import ArrayMeta

    def am(dtype, shape, dims=("d",), fill=None):
        return ArrayMeta(slot=len(shape), dtype=dtype, shape=shape, dims=dims, chunk_shape=shape, fill_value=fill)

    ams = [am("float32", (4,)), am("int8", (4,)), am("float32", (5,)), am("float32", (4,)),
           am("float32", (4,), ("e",)), am("int8", (4,)), am("float32", (5,))]  # fmt: skip
    fields = list(itertools.chain.from_iterable(map(build._FIELDS, ams)))
    fast, slow = SchemaInterner(), SchemaInterner()
    codes = build._schema_codes(fast, ams, fields)
    assert codes.tolist() == [slow.code(a) for a in ams] == [0, 1, 2, 0, 3, 1, 2]
    assert fast.column() == slow.column()


def test_typed_values_of_lists_and_scalars_split_by_key_as_one_by_one(monkeypatch):
    rows = [dict(profile(i)[2]) for i in range(40)]
    for attrs in rows:
        attrs.pop("rare", None)  # one key order for every row
    typed = [{k: normalize(v) for k, v in attrs.items()} for attrs in rows]
    fast = build._attribute_values(typed)
    monkeypatch.setattr(build, "_MAX_ORDERS", -1)
    slow = build._attribute_values(typed)
    assert sorted(fast) == sorted(slow)
    for key in fast:
        a, b = fast[key], slow[key]
        assert (a.types, a.plain, a.scalar, a.typed()) == (b.types, b.plain, b.scalar, b.typed()), key
        np.testing.assert_array_equal(a.rows, b.rows)
    assert not fast["levels"].scalar and not fast["shape"].scalar and fast["lat"].scalar


@pytest.mark.parametrize(
    ("name", "fills"),
    [
        ("float32", [None, 0.0, -0.0, float("nan"), 1.5, -9999.0]),
        ("float64", [None, 0.0, float("nan"), 2.0]),
        ("int8", [None, 0, -128, 3]),
        ("uint8", [None, 255, 0]),
        ("int64", [None, 0, -(2**63), 2**63 - 1]),
        ("uint64", [None, 2**64 - 1]),
        ("bool", [None, False, True]),
        ("timestamp_nanoseconds", [None, 0]),
    ],
)
def test_the_stats_of_many_chunks_at_once_are_those_of_each_chunk(name, fills):
    from atlas import dtypes
    from atlas.engine.chunks import NUMPY_STATS_MAX_CELLS, chunk_stats, many_chunk_stats
    from atlas.metadata import ArrayMeta

    rng = np.random.default_rng(len(name))
    storage = dtypes.storage_dtype(name)
    for fill in fills:
        values = []
        for k in range(60):
            n = [0, 1, 2, 7, 33][k % 5]
            if dtypes.is_float(name):
                v = rng.choice(np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1.5, -2.25, -9999.0, 3.0]), n)
            elif name == "bool":
                v = rng.integers(0, 2, n)
            else:
                info = np.iinfo(storage)
                v = rng.choice(np.array([info.min, info.max, 0, 1, 3, min(255, info.max)], dtype=storage), n)
            values.append(np.asarray(v).astype(storage))
        values.append(np.zeros(NUMPY_STATS_MAX_CELLS, storage))  # large: left to the kernel
        values.append(np.array([0.0, -0.0], storage) if dtypes.is_float(name) else np.zeros(2, storage))
        meta = ArrayMeta(slot=0, dtype=name, shape=(1,), dims=("d",), chunk_shape=(1,), fill_value=fill)
        got = many_chunk_stats(values, name, fill)
        assert got[0] is None and got[-2] is None  # empty, large
        if dtypes.is_float(name):
            assert got[-1] is None or fill in (0.0,)  # both zeros: one by one, unless they are the fill
        told = 0
        for v, stats in zip(values, got):
            if stats is not None:
                told += 1
                want = chunk_stats(v, None, meta)
                assert stats == want and [type(x) for x in (stats.minimum, stats.maximum)] == \
                    [type(x) for x in (want.minimum, want.maximum)], (v, fill)  # fmt: skip
        assert told >= 20
