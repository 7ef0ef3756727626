"""One part from chosen rows of other parts, with new ids and versions, without decoding a record.

An ingest's commit takes the rows its task parts hold (``docs/dask.md``) and gives
them their final ids and the commit's generation as version.  The rows keep
everything else, so the part is built column by column like a merge
(:mod:`atlas.catalog.merging`): fixed-width columns gathered with numpy, attribute
columns re-encoded only where kinds differ, and each record's bytes copied from its
verified block with only its head rewritten.  A record begins with the MessagePack
map header, ``"id"``, the id, ``"version"``, the version (the writer's own order,
``docs/format-v2.md`` §4.2); the rest of its bytes stay as they are.

The rows come from processes that are not trusted to be right: each record's head
must be exactly what the writer writes and carry the key columns' id and version,
its arrays must be the ones the stats and schema columns describe (names, slots,
shapes, templates as a reader decodes them, dtype codes, stats states and counts), the whole
record must decode as a reader decodes it (its attributes and stats extremes are
in no compared column, but a record that does not decode could not be opened once
committed), and every slot must lie in the range the caller gives; anything else raises
:class:`~atlas.errors.CorruptStoreError` naming the part and the row.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import numpy as np

from atlas.catalog.build import BLOCK_ROWS, DTYPE_CODES, EXTREMES, NO_STATS, record_block
from atlas.catalog.commit import PartRef, part_filename
from atlas.catalog.encoding import encode_strings
from atlas.catalog.layout import PartBuilder
from atlas.catalog.merging import add_search_columns
from atlas.catalog.part import PartReader, ReadRange
from atlas.catalog.schemas import SchemaTable, template_bytes
from atlas.dtypes import decode_value
from atlas.errors import CorruptStoreError
from atlas.metadata import array_from_dict, attributes_from_dict, gc_paused

__all__ = ["Selection", "relabel_parts"]

#: The head of every record the writer writes: a map of four members, first ``"id"``.
_HEAD = b"\x84\xa2id"
_VERSION = b"\xa7version"
_ATTRIBUTES = b"\xaaattributes"
#: MessagePack unsigned integer tags and their payload sizes (positive fixints aside).
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_STATS_KEYS = frozenset(("row_count", "null_count", "min", "max"))
#: The stats ``dtype`` column's code of each dtype name.
_DTYPE_CODE = {name: code for code, name in enumerate(DTYPE_CODES)}
_INT64_MAX, _UINT64_MAX = 2**63 - 1, 2**64 - 1
#: Parts up to this size are read whole (a task part of 64 files is a few hundred kB).
_WHOLE_LIMIT = 64 << 20


@dataclass(frozen=True)
class Selection:
    """Rows of one part to keep: their names (each must be in the part), new ids and slot range."""

    part: PartRef
    names: Sequence[str]
    #: The new id of each of ``names``, in that order.
    ids: np.ndarray
    #: Every slot of a kept row's arrays must lie in ``[lo, hi)``.
    slots: tuple[int, int]


def relabel_parts(
    selections: Sequence[Selection], read_range: ReadRange, codec: str, generation: int, token: bytes
) -> tuple[str, list[bytes | np.ndarray], PartRef]:
    """One part holding the selected rows, with their new ids and ``generation`` as version.

    Returns ``(file name, buffers, PartRef)`` as :func:`~atlas.catalog.write_part`
    (the part of the commit of ``generation``).  The answers read from it are those
    of a part written from the rows' datasets with the new ids and version.
    """
    with gc_paused():
        builder = PartBuilder(generation, token, codec)
        n, attributes, arrays = _relabel_columns(selections, read_range, generation, builder)
        buffers, size, index_offset, index_length, digest = builder.finish(n, BLOCK_ROWS, attributes, arrays)
    ref = PartRef(part_filename(generation, token), size, index_offset, index_length, digest, n, generation,
                  generation)  # fmt: skip
    return ref.file, buffers, ref


def _relabel_columns(selections: Sequence[Selection], read_range: ReadRange, generation: int,
                     builder: PartBuilder) -> tuple[int, list, list]:  # fmt: skip
    readers = [PartReader(s.part, _WholeRead(read_range, {s.part.path: s.part.size for s in selections}))
               for s in selections]  # fmt: skip
    rows, ids = [], []
    for sel, reader in zip(selections, readers):
        got = _rows_of(reader, sel)
        order = np.argsort(got, kind="stable")  # rows ascending, as the column gathers want
        rows.append(got[order])
        ids.append(np.asarray(sel.ids, dtype="<u8")[order])
    # Positions in name order (names are distinct across the selections: checked below).
    names = np.empty(sum(r.size for r in rows), dtype=object)
    at = 0
    for reader, r in zip(readers, rows):
        names[at : at + r.size] = reader.names_of(r)
        at += r.size
    order = np.argsort(names, kind="stable")
    ordered = names[order].tolist()
    if any(a == b for a, b in itertools.pairwise(ordered)):
        dup = next(a for a, b in itertools.pairwise(ordered) if a == b)
        raise CorruptStoreError(f"dataset {dup!r} is in two of the parts whose rows are committed together")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    pos, at = [], 0
    for r in rows:
        pos.append(rank[at : at + r.size])
        at += r.size
    n = len(ordered)
    builder.add("name", encode_strings(ordered))
    id_col = np.zeros(n, dtype="<u8")
    for p, i in zip(pos, ids):
        id_col[p] = i
    builder.add("id", id_col, 8)
    builder.add("version", np.full(n, generation, dtype="<u8"), 8)
    builder.add("tombstone", np.zeros(n, dtype="u1"))
    records: list[bytes | None] = [None] * n
    seen = _SeenAttributes()  # attribute values found valid, the last record's items (see _SeenAttributes)
    forms = _Forms()  # array objects decoded so far (see _check_arrays)
    packed: dict[tuple[int, str], list[bytes]] = {}  # the templates the checks packed, for the merge
    for k, (sel, reader, r, p, i) in enumerate(zip(selections, readers, rows, pos, ids)):
        tables = _relabel_records(reader, sel.slots, r, p, i, generation, records, seen, forms)
        packed.update(((k, array), cols.packed) for array, cols in tables.items())
    blocks = (record_block(records[b : b + BLOCK_ROWS]) for b in range(0, n, BLOCK_ROWS))  # type: ignore[arg-type]
    builder.add("record_blocks", builder.add_blocks("records", blocks), 8)
    attributes, arrays = add_search_columns(readers, rows, pos, n, builder, used_only=True, packed=packed)
    return n, attributes, arrays


def _rows_of(reader: PartReader, sel: Selection) -> np.ndarray:
    """The rows of ``sel.names`` in ``reader``'s part (every one present, none a tombstone)."""
    where = {name: row for row, name in enumerate(reader.names())}
    rows = np.fromiter((where.get(name, -1) for name in sel.names), dtype=np.int64, count=len(sel.names))
    if rows.size and int(rows.min()) < 0:
        missing = sel.names[int(np.argmin(rows))]
        raise CorruptStoreError(f"{reader.where} holds no dataset {missing!r}")
    dead = np.flatnonzero(reader.tombstones()[rows])
    if dead.size:
        raise CorruptStoreError(f"{reader.where}: dataset {sel.names[int(dead[0])]!r} is a tombstone (row "
                                f"{int(rows[dead[0]])}), not a dataset to commit")  # fmt: skip
    if np.unique(rows).size != rows.size:
        raise CorruptStoreError(f"{reader.where}: a dataset is named twice among the rows to commit")
    return rows


def _relabel_records(reader: PartReader, slots: tuple[int, int], rows: np.ndarray, pos: np.ndarray,
                     ids: np.ndarray, generation: int, out: list[bytes | None],
                     seen: _SeenAttributes, forms: _Forms) -> dict[str, _Columns]:  # fmt: skip
    """Put each row's record, head rewritten, at its position in ``out``; check it against the columns
    (returned, by array).

    ``seen``: what earlier records taught of attributes (see :class:`_SeenAttributes`);
    ``forms``: array objects already decoded (see :func:`_check_arrays`).
    """
    tables, counts = _tables(reader, rows, slots)
    old_ids, old_versions = reader.fixed("id")[rows].tolist(), reader.fixed("version")[rows].tolist()
    version = msgpack.packb(generation)
    per = reader.index.block_rows
    k, block = -1, None
    for row, at, new_id, old_id, old_version in zip(rows.tolist(), pos.tolist(), ids.tolist(), old_ids,
                                                   old_versions):  # fmt: skip
        if row // per != k:  # rows ascending: each block read and verified once
            k = row // per
            block = reader.block(k)
        offsets, data = block  # type: ignore[misc]
        i = row % per
        record = memoryview(data)[offsets[i] : offsets[i + 1]]
        where = f"{reader.where} row {row}"
        rest = _parse_head(record, old_id, old_version, where)
        arrays = _arrays_of(record, rest, where, seen)
        if len(arrays) != counts[row]:
            raise CorruptStoreError(f"{where}: the record holds {len(arrays)} arrays, the stats columns "
                                    f"{counts[row]}")  # fmt: skip
        _check_arrays(arrays, tables, row, where, forms)
        out[at] = b"".join((_HEAD, msgpack.packb(new_id), _VERSION, version, record[rest:]))
    return tables


def _uint(record: memoryview, at: int, where: str) -> tuple[int, int]:
    """The MessagePack unsigned integer at ``at`` and the offset after it."""
    tag = record[at] if at < len(record) else -1
    if 0 <= tag < 0x80:
        return tag, at + 1
    size = _UINT.get(tag)
    if size is None or at + 1 + size > len(record):
        raise CorruptStoreError(f"{where}: dataset record head is damaged")
    return int.from_bytes(record[at + 1 : at + 1 + size], "big"), at + 1 + size


def _parse_head(record: memoryview, key_id: int, key_version: int, where: str) -> int:
    """Check the head of ``record`` (as the writer writes it, with the key columns' id and
    version); the offset of what follows it."""
    if record[: len(_HEAD)] != _HEAD:
        raise CorruptStoreError(f"{where}: dataset record head is damaged (not the map the writer writes)")
    ident, at = _uint(record, len(_HEAD), where)
    if record[at : at + len(_VERSION)] != _VERSION:
        raise CorruptStoreError(f"{where}: dataset record head is damaged (no version after the id)")
    version, at = _uint(record, at + len(_VERSION), where)
    if record[at : at + len(_ATTRIBUTES)] != _ATTRIBUTES:
        raise CorruptStoreError(f"{where}: dataset record head is damaged (no attributes after the version)")
    if (ident, version) != (key_id, key_version):
        raise CorruptStoreError(f"{where}: record disagrees with the key columns")
    return at


def _arrays_of(record: memoryview, at: int, where: str, seen: _SeenAttributes) -> dict[str, dict]:
    """The ``arrays`` member of ``record`` as plain MessagePack, once its attributes decode as a reader
    decodes them.

    The attributes are in no column the record is compared with, yet a record whose
    attributes do not decode could not be opened once committed (and ``verify``
    would call the store damaged): they are checked as
    :func:`atlas.catalog.encoding.decode_record` decodes them, then dropped.  The
    arrays are checked by :func:`_check_arrays`.
    """
    try:
        body = bytes(record[at:])
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_bin_len=0)
        unpacker.feed(body)
        if unpacker.unpack() != "attributes":
            raise ValueError("no attributes")
        _check_attributes(unpacker, body, seen)
        if unpacker.unpack() != "arrays":
            raise ValueError("no arrays after the attributes")
        arrays = unpacker.unpack()
        if unpacker.tell() != len(body):
            raise ValueError("bytes after the arrays")
        if type(arrays) is not dict or not all(type(a) is dict for a in arrays.values()):
            raise ValueError("arrays are not maps")
    except Exception as exc:  # every decoder or schema failure is damage, as the reader says it
        raise CorruptStoreError(f"{where}: dataset record does not follow the format: {exc}") from None
    return arrays


class _SeenAttributes:
    """What one relabel learnt of attributes: values found valid, and how the last record's attributes were laid out.

    ``valid`` holds the encoded values of attributes found valid so far: files of one
    collection repeat most of their attributes, and an attribute's value decodes or
    not whatever its key (:func:`atlas.metadata.attributes_from_dict` checks each on
    its own), so a value whose bytes were decoded once is only skipped over.

    ``runs`` holds the encoded items (key and value) of the last record's attributes,
    in order, as ``(bytes, each item's length)``: items that were also the record's before
    it form one run, any other item a run of its own.  The records of one collection
    hold their keys in the same order and most of their values alike, so a record's
    items are first looked for, run by run and byte for byte, where the last record
    had them.  MessagePack objects delimit themselves: bytes that begin with whole
    items hold those items, the keys and values a reader decodes there.
    """

    def __init__(self) -> None:
        self.valid: set[bytes] = set()
        self.runs: list[tuple[bytes, tuple[int, ...]]] = []


def _check_attributes(unpacker: msgpack.Unpacker, body: bytes, seen: _SeenAttributes) -> None:
    """Check the attribute map ``unpacker`` is at (in ``body``, fed whole) as the reader decodes it.

    Items that are the last record's at the same place (see :class:`_SeenAttributes`)
    were checked with it; any other has its key checked (text, as the reader requires)
    and its value, unless in ``seen.valid``, decoded on its own with the reader's
    options and checked as the reader checks it.  Leaves ``unpacker`` after the map.
    (A key written twice has both its values checked, where a reader keeps the last
    one: the writer writes each key once.)

    The unpacker passes items found alike with ``skip`` (a key and a value each), not
    ``read_bytes``: the C unpacker of msgpack 1.0.0 (``pyproject.toml`` accepts it)
    leaves ``read_bytes`` out of ``tell()``, the offsets the checks slice ``body`` at.
    """
    count = unpacker.read_map_header()  # ValueError when the attributes are not a map
    pos = unpacker.tell()  # the next item
    behind = 0  # items found alike that the unpacker has not passed yet
    valid, view, runs = seen.valid, memoryview(body), []
    alike: list[bytes] = []  # the run being made of items found alike, and their lengths
    alike_lengths: list[int] = []
    done = 0  # items checked

    def catch_up() -> None:
        nonlocal behind
        for _ in range(behind):
            unpacker.skip()
            unpacker.skip()
        behind = 0

    def check_one() -> None:  # the item at ``pos``, on its own: a run of its own
        nonlocal pos
        catch_up()
        end = _check_attribute(unpacker, body, valid)
        if alike:
            runs.append((b"".join(alike), tuple(alike_lengths)))
            alike.clear()
            alike_lengths.clear()
        runs.append((body[pos:end], (end - pos,)))
        pos = end

    for run, lengths in seen.runs:
        if done + len(lengths) > count:
            break
        done += len(lengths)
        if body.startswith(run, pos):
            alike.append(run)
            alike_lengths += lengths
            pos += len(run)
            behind += len(lengths)
            continue
        old = memoryview(run)
        for length in lengths:  # item by item: each alike, or checked on its own
            if view[pos : pos + length] == old[:length]:
                alike.append(bytes(old[:length]))
                alike_lengths.append(length)
                pos += length
                behind += 1
            else:
                check_one()
            old = old[length:]
    for _ in range(count - done):
        check_one()
    if alike:
        runs.append((b"".join(alike), tuple(alike_lengths)))
    catch_up()
    seen.runs = runs


def _check_attribute(unpacker: msgpack.Unpacker, body: bytes, valid: set[bytes]) -> int:
    """Check the attribute ``unpacker`` is at (see :func:`_check_attributes`); the offset after it."""
    key = unpacker.unpack()
    if type(key) is not str:
        raise ValueError(f"attribute key {key!r} is not text")
    start = unpacker.tell()
    unpacker.skip()
    end = unpacker.tell()
    value = body[start:end]
    if value not in valid:
        attributes_from_dict({key: msgpack.unpackb(value, raw=False, strict_map_key=True, max_bin_len=0)})
        valid.add(value)
    return end


class _WholeRead:
    """``read_range`` that reads a small part whole at its first use and serves its ranges from memory.

    A relabel reads nearly every column of its parts: one read instead of hundreds.
    """

    def __init__(self, read_range: ReadRange, sizes: dict[str, int]) -> None:
        self._read_range = read_range
        self._sizes = sizes
        self._held: dict[str, memoryview] = {}

    def __call__(self, path: str, offset: int, length: int) -> bytes | memoryview:
        data = self._held.get(path)
        if data is None:
            size = self._sizes.get(path, _WHOLE_LIMIT + 1)
            if size > _WHOLE_LIMIT:
                return self._read_range(path, offset, length)
            data = self._held[path] = memoryview(bytes(self._read_range(path, 0, size)))
        return data[offset : offset + length]


@dataclass
class _Columns:
    """The columns of one array's stats group that a record is checked against."""

    table: SchemaTable
    #: Each template packed again, as ``verify`` compares them (:meth:`SchemaTable.template_bytes`).
    packed: list[bytes]
    # The part's columns as lists (each row's checks read a few values of every array:
    # Python ints, not numpy scalars).
    has: list[bool]
    slot: list[int]
    #: The shape of each row, as the list a record holds.
    shape: list[list[int]]
    code: list[int]
    state: list[int]
    #: The dtype codes searches by dtype answer from (:data:`~atlas.catalog.build.DTYPE_CODES`).
    dtype: list[int]
    row_count: list[int]
    null_count: list[int]


def _tables(reader: PartReader, rows: np.ndarray, slots: tuple[int, int]) -> tuple[dict[str, _Columns], list[int]]:
    """The checked columns of every array of ``reader`` (every slot of ``rows`` in ``slots``), and how many
    arrays each row has."""
    lo, hi = slots
    out = {}
    counts = np.zeros(reader.rows, dtype=np.int64)
    for array, (j, _flags) in reader.stats_groups().items():
        # The reader keeps the table: the search columns' merge reads the same one.
        table = reader.schemas(array)
        if table is None:
            raise CorruptStoreError(f"{reader.where}: array {array!r} has no schema columns")
        used = table.slot[rows][table.has[rows]]
        if used.size and (int(used.min()) < lo or int(used.max()) >= hi):
            raise CorruptStoreError(f"{reader.where}: array {array!r} of a dataset uses a slot outside the "
                                    f"task's range {lo}..{hi}")  # fmt: skip
        dtype = reader.fixed(f"s{j}.dtype")
        # also in the rows without the array: verify checks every row
        if rows.size and int(dtype[rows].max()) >= len(DTYPE_CODES):
            raise CorruptStoreError(f"{reader.where}: dtype code of array {array!r} is out of range")
        state, row_count, null_count = (reader.fixed(f"s{j}.{c}").tolist()
                                         for c in ("state", "row_count", "null_count"))
        extents, starts = table.extents.tolist(), table.starts.tolist()
        shape = [extents[a:b] for a, b in itertools.pairwise(starts)]
        counts += table.has
        out[array] = _Columns(table, table.template_bytes(), table.has.tolist(), table.slot.tolist(), shape,
                              table.codes.tolist(), state, dtype.tolist(), row_count, null_count)  # fmt: skip
    return out, counts.tolist()


class _Forms:
    """Array objects decoded so far by one relabel: what each template with a shape decodes to.

    Maps the array object without its slot and stats, packed again (exact: types,
    key order and float bits, so ``4``, ``4.0`` and ``True`` are three keys), to its
    dtype and the template a reader rebuilds from it
    (:func:`~atlas.catalog.schemas.template_bytes`, as ``verify`` compares them).
    """

    def __init__(self) -> None:
        self.known: dict[bytes, tuple[str, bytes]] = {}
        self.pack = msgpack.Packer(use_bin_type=True).pack


def _check_arrays(arrays: dict[str, dict], tables: dict[str, _Columns], row: int, where: str,
                  forms: _Forms) -> None:  # fmt: skip
    """The record's arrays decode as a reader decodes them, and are those the columns describe: names, slots,
    shapes, templates, dtype codes, stats counts.

    An array object decodes (:func:`atlas.metadata.array_from_dict`) exactly when its
    template with its shape does, its slot is an integer of the slot range and its
    stats (if any) hold counts and extremes its dtype decodes.  Datasets of one
    collection share their templates and most shapes, so each distinct template with
    a shape is decoded once (``forms``); the slot and stats of every object are
    checked as the reader checks them, and an object they fail is decoded whole, for
    the reader's own refusal.

    A template must equal the record's array object as a reader decodes both, not
    only as plain values (``4 == 4.0 == True``): the template a reader rebuilds from
    the record's decoded array must be the template's bytes, or a bulk read, which
    decodes the template and not the record, could fail or answer otherwise.
    """
    known, pack = forms.known, forms.pack
    for name, am in arrays.items():
        slot, stats = am.pop("slot", None), am.pop("stats", None)
        try:
            key = pack(am)
            shape = am.pop("shape", None)
            form = known.get(key)
            if form is None:
                meta = array_from_dict({**am, "slot": 1, "shape": shape})  # the slot is checked below
                form = known[key] = (meta.dtype, template_bytes(meta))
            dtype, rebuilt = form
            if not (type(slot) is int and 0 < slot <= _UINT64_MAX and (stats is None or _stats_decode(stats, dtype))):
                array_from_dict({**am, "slot": slot, "shape": shape, "stats": stats})  # the reader's refusal
        except Exception as exc:  # every decoder or schema failure is damage, as the reader says it
            raise CorruptStoreError(f"{where}: dataset record does not follow the format: {exc}") from None
        cols = tables.get(name)
        if cols is None or not cols.has[row]:
            raise CorruptStoreError(f"{where}: array {name!r} of the record is not in the stats columns")
        code = cols.code[row]
        if slot != cols.slot[row] or shape != cols.shape[row] or am != cols.table.templates[code]:
            raise CorruptStoreError(f"{where}: array {name!r} disagrees with the schema columns")
        if rebuilt != cols.packed[code]:
            raise CorruptStoreError(f"{where}: array {name!r} disagrees with the schema columns (as a reader "
                                    "decodes them)")  # fmt: skip
        if cols.dtype[row] != _DTYPE_CODE[dtype]:
            raise CorruptStoreError(f"{where}: array {name!r} disagrees with the stats columns (dtype)")
        state = cols.state[row]
        if stats is None:
            ok = state == NO_STATS
        else:
            ok = (stats.keys() == _STATS_KEYS
                  and state == (EXTREMES if stats["min"] is not None and stats["max"] is not None else EXTREMES - 1)
                  and stats["row_count"] == cols.row_count[row]
                  and stats["null_count"] == cols.null_count[row])  # fmt: skip
        if not ok:
            raise CorruptStoreError(f"{where}: array {name!r} disagrees with the stats columns")


def _stats_decode(stats: object, dtype: str) -> bool:
    """Whether ``stats`` hold counts a reader decodes (as :func:`~atlas.metadata.array_from_dict`); raises as
    the reader does when an extreme does not decode as ``dtype``."""
    if type(stats) is not dict:
        return False
    count, nulls = stats.get("row_count"), stats.get("null_count")
    if type(count) is not int or type(nulls) is not int or not (0 <= count <= _INT64_MAX and 0 <= nulls <= _INT64_MAX):
        return False
    low, high = stats.get("min"), stats.get("max")
    if low is not None:
        decode_value(low, dtype)
    if high is not None:
        decode_value(high, dtype)
    return True
