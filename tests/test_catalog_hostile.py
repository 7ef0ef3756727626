"""Hostile catalogue parts: every damage is a clear CorruptStoreError naming the part.

Bit flips and truncations are made on real part bytes; forged parts (lies with
valid checksums) are re-laid from a real part's decoded columns, so only the lie
differs.
"""

from __future__ import annotations

import secrets
import time

import msgpack
import numpy as np
import pytest

from atlas.catalog import Catalog, PartRef, merge_parts, write_part
from atlas.catalog.encoding import encode_strings
from atlas.catalog.layout import HEADER_SIZE, PartBuilder, decode_column
from atlas.catalog.part import PartReader
from atlas.errors import ChecksumError, CorruptStoreError
from atlas.metadata import ArrayMeta, DatasetMeta, Stats


def _dataset(i: int) -> DatasetMeta:
    temp = ArrayMeta(slot=i, dtype="float32", dims=("z",), shape=(3,), chunk_shape=(3,), stats=Stats(3, 0, 0.5, 2.5))
    attrs = {"platform": {"t": "string", "v": f"p{i % 4}"}, "lat": {"t": "float64", "v": i * 0.25},
             "tags": {"t": "int64", "v": [i, i + 1], "k": "list"}}  # fmt: skip
    return DatasetMeta(id=i, version=1, attributes=attrs, arrays={"temp": temp})


ROWS = [(f"ds{i:04d}", _dataset(i)) for i in range(1, 600)] + [("gone", None)]


class Store:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self.files[path][offset : offset + length]


@pytest.fixture(params=["zstd", "none"])
def part(request) -> tuple[Store, PartRef]:
    store = Store()
    _, buffers, ref = write_part(ROWS, request.param, 1, secrets.token_bytes(16))
    store.files[ref.path] = b"".join(bytes(b) for b in buffers)
    return store, ref


def _use_everything(store: Store, ref: PartRef) -> None:
    cat = Catalog([ref], store.read_range)
    cat.verify()
    for name in cat.names():
        cat.get(name)
    for key in cat.attribute_keys():
        cat.column(key)
    for field in ("slot", "min", "min_exact", "shape", "dtype"):
        cat.stats_column("temp", field)
    cat.array_metas("temp", cat.names())


def test_the_undamaged_part_passes(part):
    _use_everything(*part)


def test_every_bit_flip_after_the_header_is_detected(part):
    store, ref = part
    good = store.files[ref.path]
    for pos in range(HEADER_SIZE, len(good), max(1, len(good) // 300)):
        damaged = bytearray(good)
        damaged[pos] ^= 0x10
        store.files[ref.path] = bytes(damaged)
        with pytest.raises(CorruptStoreError, match=ref.file):
            _use_everything(store, ref)
    store.files[ref.path] = good


def test_damaged_magic_is_detected(part):
    store, ref = part
    store.files[ref.path] = b"\x00" + store.files[ref.path][1:]
    with pytest.raises(CorruptStoreError, match="bad magic"):
        Catalog([ref], store.read_range).verify()


@pytest.mark.parametrize("keep", [0, 10, HEADER_SIZE, 0.3, 0.9, -33, -1])
def test_truncated_part_is_detected(part, keep):
    store, ref = part
    good = store.files[ref.path]
    n = int(len(good) * keep) if isinstance(keep, float) else (len(good) + keep if keep < 0 else keep)
    store.files[ref.path] = good[:n]
    with pytest.raises(CorruptStoreError, match=ref.file):
        _use_everything(store, ref)


def test_commit_object_that_disagrees_with_the_part_is_detected(part):
    store, ref = part
    for wrong in (
        PartRef(ref.file, ref.size, ref.index_offset, ref.index_length, ref.index_checksum ^ 1, ref.rows, 1, 1),
        PartRef(ref.file, ref.size, ref.index_offset, ref.index_length, ref.index_checksum, ref.rows + 1, 1, 1),
        PartRef(ref.file, ref.size, ref.index_offset - 1, ref.index_length, ref.index_checksum, ref.rows, 1, 1),
        PartRef(ref.file, ref.size + 5, ref.index_offset, ref.index_length, ref.index_checksum, ref.rows, 1, 1),
        PartRef(ref.file, ref.size, ref.index_offset, 1 << 40, ref.index_checksum, ref.rows, 1, 1),
    ):
        with pytest.raises(CorruptStoreError, match=ref.file):
            _use_everything(store, wrong)


# -- forged parts: lies with valid checksums --------------------------------------------------------


def forge(store: Store, ref: PartRef, columns=None, entries=None, rows: int | None = None) -> PartRef:
    """Re-lay ``ref`` (codec none) after ``columns(raw)`` / ``entries(index columns)`` edits."""
    reader = PartReader(ref, store.read_range)
    index = reader.index
    data = store.files[ref.path]
    raw: dict[str, bytes] = {}
    for name, col in index.columns.items():
        stored = data[col.offset : col.offset + col.length]
        raw[name] = stored if name == "records" else decode_column(stored, col, None, "x").tobytes()
    if columns is not None:
        columns(raw)
    builder = PartBuilder(1, bytes(16), "none")
    for name, blob in raw.items():
        builder.add(name, blob)
    if entries is not None:
        entries(builder.columns)
    n = index.rows if rows is None else rows
    attributes = [list(a) for a in index.attributes]
    arrays = [list(a) for a in index.arrays]
    buffers, size, offset, length, digest = builder.finish(n, index.block_rows, attributes, arrays)
    forged = PartRef("000000000001-00000000000000ff.cat", size, offset, length, digest, n, 1, 1)
    store.files[forged.path] = b"".join(bytes(b) for b in buffers)
    return forged


def _column_no(reader: PartReader, key: str) -> int:
    return reader.attribute_kinds()[key][0]


def test_forging_with_nothing_changed_still_reads(part):
    store, ref = part
    _use_everything(store, forge(store, ref))


def _set_u32(raw: dict[str, bytes], name: str, row: int, value: int) -> None:
    arr = np.frombuffer(raw[name], "<u4").copy()
    arr[row] = value
    raw[name] = arr.tobytes()


def test_dictionary_code_out_of_range(part):
    store, ref = part
    i = _column_no(PartReader(ref, store.read_range), "platform")
    forged = forge(store, ref, columns=lambda raw: _set_u32(raw, f"a{i}.codes", 3, 999))
    with pytest.raises(CorruptStoreError, match="dictionary code"):
        Catalog([forged], store.read_range).column("platform")


def test_unsorted_names(part):
    store, ref = part

    def swap(raw):
        names = raw["name"].split(b"\xff")
        names[0], names[1] = names[1], names[0]
        raw["name"] = b"\xff".join(names)

    with pytest.raises(CorruptStoreError, match="not sorted"):
        Catalog([forge(store, ref, columns=swap)], store.read_range).names()


@pytest.mark.parametrize("width", ["one", "mixed"])
def test_unsorted_names_fail_a_batch_existence_check(part, width):
    # A batch named past every row must not trust the first and last names of a
    # part whose names are out of order: the order is checked on the raw column
    # (names of one length) or on the decoded names.
    store, ref = part
    if width == "one":
        _, buffers, ref = write_part(ROWS[:-1], "zstd", 1, bytes(16))  # no "gone": every name of one length
        store.files[ref.path] = b"".join(bytes(b) for b in buffers)

    def swap(raw):
        names = raw["name"].split(b"\xff")
        names[5], names[6] = names[6], names[5]
        raw["name"] = b"\xff".join(names)

    assert Catalog([ref], store.read_range).first_live(["zz"]) is None
    with pytest.raises(CorruptStoreError, match="not sorted"):
        Catalog([forge(store, ref, columns=swap)], store.read_range).first_live(["zz"])


def _forge_names(edit):
    def columns(raw):
        names = raw["name"].split(b"\xff")[:-1]  # the column ends with a terminator
        edit(names)
        raw["name"] = b"".join(x + b"\xff" for x in names)

    return columns


NAME_FORGERIES = {
    "duplicate": lambda names: names.__setitem__(6, names[5]),
    # Still in order as bytes, the terminator byte inside a name: the rows are not
    # where the width places them.
    "terminator inside": lambda names: names.__setitem__(8, names[8][:-1] + b"\xff"),
    "a row short": lambda names: names.pop(3),
    "a row more": lambda names: names.insert(3, names[2] + b"0"),
}


@pytest.mark.parametrize("width", ["one", "mixed"])
@pytest.mark.parametrize("forgery", list(NAME_FORGERIES))
def test_forged_names_fail_a_batch_existence_check_outside_their_range(part, width, forgery):
    store, ref = part
    if width == "one":
        _, buffers, ref = write_part(ROWS[:-1], "zstd", 1, bytes(16))  # no "gone": every name of one length
        store.files[ref.path] = b"".join(bytes(b) for b in buffers)
    forged = forge(store, ref, columns=_forge_names(NAME_FORGERIES[forgery]))
    for batch in (["zz"], ["a"], ["ds0100"]):
        assert Catalog([ref], store.read_range).first_live(batch) == ("ds0100" if batch == ["ds0100"] else None)
        with pytest.raises(CorruptStoreError, match=forged.file):
            Catalog([forged], store.read_range).first_live(batch)


def test_unsorted_names_fail_a_search_that_returns_them(part):
    from atlas.search import select_rows
    from atlas.search.catalog_table import CatalogTable

    store, ref = part

    def swap(raw):
        names = raw["name"].split(b"\xff")
        names[0], names[1] = names[1], names[0]
        raw["name"] = b"\xff".join(names)

    table = CatalogTable(Catalog([forge(store, ref, columns=swap)], store.read_range))
    assert table.names_at(select_rows(table, "lat > 140")) == [f"ds{i:04d}" for i in range(561, 600)]  # not rows 0, 1
    with pytest.raises(CorruptStoreError, match="not sorted"):
        table.names_at(select_rows(table, "lat < 1"))


def test_unsorted_names_of_a_large_part_fail_a_search_over_newer_rows(part):
    from atlas.search import select_rows
    from atlas.search.catalog_table import CatalogTable

    store, ref = part

    def swap(raw):
        names = raw["name"].split(b"\xff")
        names[0], names[1] = names[1], names[0]
        raw["name"] = b"\xff".join(names)

    _, buffers, newer = write_part([("ds0001", _dataset(1)), ("new", _dataset(900))], "zstd", 2, bytes(16))
    store.files[newer.path] = b"".join(bytes(b) for b in buffers)
    table = CatalogTable(Catalog([forge(store, ref, columns=swap), newer], store.read_range))
    with pytest.raises(CorruptStoreError, match="not sorted"):
        table.names_at(select_rows(table, "lat < 1"))


def test_invalid_utf8_across_a_terminator(part):
    store, ref = part

    def split_char(raw):  # "é" split by a terminator must not read as two valid names
        names = raw["name"].split(b"\xff")
        names[0], names[1] = b"a\xc3", b"\xa9b"
        raw["name"] = b"\xff".join(names)

    with pytest.raises(CorruptStoreError, match="UTF-8"):
        Catalog([forge(store, ref, columns=split_char)], store.read_range).names()


def test_names_count_disagrees_with_rows(part):
    store, ref = part
    forged = forge(store, ref, columns=lambda raw: raw.update(name=raw["name"] + b"zz\xff"))
    with pytest.raises(CorruptStoreError, match="does not hold"):
        Catalog([forged], store.read_range).names()


def test_record_that_disagrees_with_the_key_columns(part):
    store, ref = part

    def bump(raw):
        ids = np.frombuffer(raw["id"], "<u8").copy()
        ids[5] += 1
        raw["id"] = ids.tobytes()

    cat = Catalog([forge(store, ref, columns=bump)], store.read_range)
    with pytest.raises(CorruptStoreError, match="disagrees"):
        cat.get(cat.names()[5])


def test_tombstone_flag_out_of_range(part):
    store, ref = part

    def two(raw):
        t = bytearray(raw["tombstone"])
        t[0] = 2
        raw["tombstone"] = bytes(t)

    with pytest.raises(CorruptStoreError, match="tombstone"):
        Catalog([forge(store, ref, columns=two)], store.read_range).names()


def test_fixed_column_of_the_wrong_length(part):
    store, ref = part
    forged = forge(store, ref, columns=lambda raw: raw.update(version=raw["version"][:-8]))
    with pytest.raises(CorruptStoreError, match="expected"):
        Catalog([forged], store.read_range).get("ds0001")


def test_record_blocks_that_do_not_tile_the_records(part):
    store, ref = part

    def shift(raw):
        table = np.frombuffer(raw["record_blocks"], "<u8").copy().reshape(-1, 5)
        table[1, 0] += 1
        raw["record_blocks"] = table.tobytes()

    with pytest.raises(CorruptStoreError, match="tile"):
        Catalog([forge(store, ref, columns=shift)], store.read_range).get("ds0001")


def test_column_range_outside_the_payload_area(part):
    store, ref = part
    forged = forge(store, ref, entries=lambda cols: cols["id"].__setitem__(0, 10**9))
    with pytest.raises(CorruptStoreError, match="range"):
        Catalog([forged], store.read_range).names()


def test_huge_claimed_sizes_are_refused_before_allocating(part):
    store, ref = part
    t0 = time.perf_counter()
    # a row count far beyond what the part's size can hold
    with pytest.raises(CorruptStoreError, match="do not fit"):
        Catalog([forge(store, ref, rows=1 << 39)], store.read_range).names()
    # a variable-length column claiming 2 GiB from a few stored bytes
    forged = forge(store, ref, entries=lambda cols: cols["name"].__setitem__(2, (1 << 31) - 100))
    with pytest.raises(CorruptStoreError, match=forged.file):
        Catalog([forged], store.read_range).names()
    # a record block claiming more than its ratio bound
    def big_block(raw):
        table = np.frombuffer(raw["record_blocks"], "<u8").copy().reshape(-1, 5)
        table[0, 2] = 1 << 40
        raw["record_blocks"] = table.tobytes()

    with pytest.raises(CorruptStoreError, match="claims"):
        Catalog([forge(store, ref, columns=big_block)], store.read_range).get("ds0001")
    assert time.perf_counter() - t0 < 30  # nothing was allocated or decompressed at those sizes


def test_blob_column_with_values_for_absent_rows(part):
    store, ref = part
    import msgpack

    i = _column_no(PartReader(ref, store.read_range), "tags")

    def lie(raw):
        items = msgpack.unpackb(raw[f"a{i}.blob"], raw=False)
        items[-1] = {"t": "int64", "v": [1], "k": "list"}  # the tombstone row has no attributes
        raw[f"a{i}.blob"] = msgpack.packb(items)

    with pytest.raises(CorruptStoreError, match="presence"):
        Catalog([forge(store, ref, columns=lie)], store.read_range).column("tags")


# -- interned array schemas ------------------------------------------------------------------------


def _bulk(store: Store, ref: PartRef) -> None:
    cat = Catalog([ref], store.read_range)
    cat.array_metas("temp", cat.names())


def _schemas(raw: dict[str, bytes], templates) -> None:
    raw["s0.schemas"] = msgpack.packb(templates)


def _template() -> dict:
    return {"dtype": "float32", "dims": ["z"], "chunk_shape": [3], "fill_value": None}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda raw: _set_u32(raw, "s0.schema", 5, 1), "schema code out of range"),
        (lambda raw: _set_u32(raw, "s0.schema", 5, 2**32 - 1), "schema code out of range"),
        (lambda raw: raw.__setitem__("s0.schemas", b"\x91\xc1"), "schema dictionary cannot be decoded"),
        (lambda raw: _schemas(raw, {"dtype": "float32"}), "does not hold templates"),
        (lambda raw: _schemas(raw, [{**_template(), "stats": {"row_count": 1}}]), "does not hold templates"),
        (lambda raw: _schemas(raw, [{**_template(), "chunk_shape": [3, 3]}]), "schema 0 does not follow"),
        (lambda raw: _schemas(raw, [{**_template(), "dtype": "complex"}]), "schema 0 does not follow"),
        (lambda raw: _schemas(raw, [{**_template(), "chunk_shape": [0]}]), "schema 0 does not follow"),
        (lambda raw: raw.__setitem__("s0.slot", np.zeros(600, "<u8").tobytes()), "slot 0"),
        (lambda raw: raw.__setitem__("s0.state", np.full(600, 9, "u1").tobytes()), "state out of range"),
    ],
)
def test_forged_schema_columns_are_refused(part, edit, match):
    store, ref = part
    forged = forge(store, ref, columns=edit)
    with pytest.raises(CorruptStoreError, match=match):
        _bulk(store, forged)
    with pytest.raises(CorruptStoreError):
        Catalog([forged], store.read_range).verify()


def test_schema_columns_that_disagree_with_the_records_fail_verify(part):
    store, ref = part

    def other_slot(raw):
        slots = np.frombuffer(raw["s0.slot"], "<u8").copy()
        slots[7] += 1000
        raw["s0.slot"] = slots.tobytes()

    def other_fill(raw):
        raw["s0.schemas"] = msgpack.packb([{**_template(), "fill_value": 1.5}])

    def other_state(raw):
        state = np.frombuffer(raw["s0.state"], "u1").copy()
        state[7] = 0
        raw["s0.state"] = state.tobytes()

    for edit in (other_slot, other_fill, other_state):
        forged = forge(store, ref, columns=edit)
        _bulk(store, forged)  # consistent on its own: only the records tell
        with pytest.raises(CorruptStoreError, match="disagree"):
            Catalog([forged], store.read_range).verify()


def test_damaged_schema_dictionary_fails_its_checksum(part):
    store, ref = part
    col = PartReader(ref, store.read_range).index.columns["s0.schemas"]
    data = bytearray(store.files[ref.path])
    data[col.offset + col.length // 2] ^= 0x01
    store.files[ref.path] = bytes(data)
    with pytest.raises(ChecksumError, match=ref.file):
        _bulk(store, ref)


def test_huge_claimed_schema_dictionary_is_refused_before_allocating(part):
    store, ref = part

    def claim(columns):
        columns["s0.schemas"][2] = (1 << 31) - 65

    with pytest.raises(CorruptStoreError, match="claims"):
        _bulk(store, forge(store, ref, entries=claim))


@pytest.mark.parametrize("row", [5, 599])
def test_merge_refuses_a_record_that_disagrees_with_its_tombstone_flag(part, row):
    from atlas.catalog import merge_parts

    store, ref = part

    def flip(raw):
        t = bytearray(raw["tombstone"])
        t[row] ^= 1
        raw["tombstone"] = bytes(t)

    forged = forge(store, ref, columns=flip)
    with pytest.raises(CorruptStoreError, match="disagrees"):
        merge_parts([forged], store.read_range, "zstd", 2, bytes(16), False)


def test_merge_refuses_string_codes_out_of_range(part):
    from atlas.catalog import merge_parts

    store, ref = part
    i = _column_no(PartReader(ref, store.read_range), "platform")
    forged = forge(store, ref, columns=lambda raw: _set_u32(raw, f"a{i}.codes", 3, 999))
    with pytest.raises(CorruptStoreError, match="out of range"):
        merge_parts([forged], store.read_range, "zstd", 2, bytes(16), True)


# -- parts written by other versions, forged string dictionaries --------------------------


@pytest.fixture
def one_part() -> tuple[Store, object]:
    store = Store()
    _, buffers, ref = write_part(ROWS, "zstd", 1, secrets.token_bytes(16))
    store.files[ref.path] = b"".join(bytes(b) for b in buffers)
    return store, ref


def test_merge_refuses_present_string_rows_with_an_empty_dictionary(one_part):
    """A forged string column whose rows are present but whose dictionary is empty:
    code 0 passes the ``max(len(dictionary), 1)`` bound, and the merge's remapping
    indexed the empty dictionary (an IndexError, not an AtlasError)."""
    store, ref = one_part
    i = _column_no(PartReader(ref, store.read_range), "platform")

    def empty_dictionary(raw):
        raw[f"a{i}.codes"] = np.zeros(len(ROWS), "<u4").tobytes()
        raw[f"a{i}.dict"] = encode_strings([])

    forged = forge(store, ref, columns=empty_dictionary)
    with pytest.raises(CorruptStoreError, match="out of range"):  # read as "" for every row before
        Catalog([forged], store.read_range).column("platform")
    for drop in (False, True):
        with pytest.raises(CorruptStoreError, match="out of range"):
            merge_parts([forged], store.read_range, "zstd", 2, bytes(16), drop)


def _without_schema_columns(raw: dict[str, bytes]) -> None:
    """What a merge by the writer before interned schemas makes of a part that has
    them: it ORs the groups' flags (flag 4 included) but writes neither column."""
    del raw["s0.schema"], raw["s0.schemas"]


def test_flag_4_without_the_schema_columns_reads_through_the_records(one_part):
    """Mixed versions on one store: a commit by the previous writer merges a part
    with interned schemas into one that keeps flag 4 and lacks the columns.  Bulk
    reads, verify and the next merge by this writer then failed with "column
    's0.schema' is missing"; the records hold everything, so they are read instead."""
    store, ref = one_part
    forged = forge(store, ref, columns=_without_schema_columns)
    flags = dict(PartReader(forged, store.read_range).stats_groups())["temp"][1]
    assert flags & 4  # the flag the old merge carried over
    cat = Catalog([forged], store.read_range)
    names = cat.names()
    metas, missing = cat.array_metas("temp", names)
    assert missing == []
    for name, meta in zip(names, metas):
        want = cat.get(name).arrays["temp"]
        assert (meta.slot, meta.dtype, meta.dims, meta.shape, meta.chunk_shape, meta.fill_value) == (
            want.slot, want.dtype, want.dims, want.shape, want.chunk_shape, want.fill_value)  # fmt: skip
    cat.verify()
    _, buffers, merged = merge_parts([forged], store.read_range, "zstd", 2, secrets.token_bytes(16), True)
    store.files[merged.path] = b"".join(bytes(b) for b in buffers)
    again = Catalog([merged], store.read_range)
    again.verify()
    assert [m.slot for m in again.array_metas("temp", names)[0]] == [m.slot for m in metas]


def test_one_schema_column_without_the_other_is_refused(one_part):
    store, ref = one_part
    forged = forge(store, ref, columns=lambda raw: raw.pop("s0.schemas"))
    with pytest.raises(CorruptStoreError, match="missing"):
        cat = Catalog([forged], store.read_range)
        cat.array_metas("temp", cat.names())


@pytest.mark.parametrize("content", ["one byte", "zeros", "one short list"])
def test_a_column_compressing_past_the_ratio_bound_is_written_so_that_it_reads(content):
    """Large blosc2 blocks of one repeated value compress past the bound a reader puts
    on variable-length columns (a forged size): the writer keeps under it."""
    from atlas.catalog.layout import MAX_RATIO, Column, PartBuilder, decode_column

    n = (17 << 20) + 3
    if content == "one byte":
        raw = b"\xc0" * n  # a blob column of nils
    elif content == "zeros":
        raw = bytes(n)
    else:
        raw = ((b"\x92\xcb" + bytes(range(8)) + b"\xcb" + bytes(range(9))) * (n // 20 + 1))[:n]
    builder = PartBuilder(1, bytes(16), "zstd")
    builder.add("x", raw)
    parts, *_ = builder.finish(1, 256, [], [])
    data = b"".join(bytes(p) for p in parts)
    col = Column(*builder.columns["x"])
    assert col.raw_length <= max(16 << 20, MAX_RATIO * col.length)
    assert decode_column(data[col.offset : col.offset + col.length], col, None, "part").tobytes() == raw
