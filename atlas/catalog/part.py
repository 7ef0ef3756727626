"""Reading one catalogue part: lazily, one column (or one record block) at a time.

Nothing is read when a :class:`PartReader` is made.  The index is read (one range
read, checked against the commit object's checksum) on first use; each column is
read, verified and decoded on first use and kept; record blocks are decoded one at
a time and kept in a small cache owned by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import msgpack
import numpy as np

from atlas import attributes, dtypes
from atlas.catalog.build import DTYPE_CODES, EXTREMES, FLAG_EXACT, FLAG_STRINGS, NO_EXTREMES
from atlas.catalog.commit import PartRef
from atlas.catalog.encoding import decode_arrays, decode_record, decode_strings
from atlas.catalog.layout import (
    FOOTER_SIZE,
    HEADER_SIZE,
    MAX_INDEX_BYTES,
    PartIndex,
    check_header,
    decode_column,
    parse_index,
    read_footer,
)
from atlas.catalog.part_names import PartNames
from atlas.catalog.schemas import SchemaTable, read_schema_table
from atlas.engine.codecs import checksum, decode_payload
from atlas.errors import ChecksumError, CorruptStoreError
from atlas.metadata import ArrayMeta, DatasetMeta

__all__ = ["PartReader", "ReadRange", "RecordBlock"]

#: ``read_range(path, offset, length) -> bytes``: the only way a reader gets bytes.
ReadRange = Callable[[str, int, int], Any]
#: A record block as :meth:`PartReader.block` returns it: the record offsets, and the
#: records' bytes (a read-only view of the decompressed block, or bytes).
RecordBlock = tuple[np.ndarray, "bytes | memoryview"]
_FIXED = {
    "id": "<u8", "version": "<u8", "tombstone": "u1", "state": "u1", "slot": "<u8", "dtype": "u1",
    "row_count": "<u8", "null_count": "<u8", "min": "<f8", "max": "<f8", "ndim": "u1", "imin": "<u8",
    "imax": "<u8", "present": "u1", "codes": "<u4", "extents": "<u8", "schema": "<u4",
}  # fmt: skip
_TYPED_COLUMN = {name: np.dtype("u1") if name == "bool" else dtypes.storage_dtype(name) for name in DTYPE_CODES}


class PartReader(PartNames):
    """One part of a catalogue snapshot.

    Parameters
    ----------
    ref : PartRef
        The part's entry in the commit object.
    read_range : ReadRange
        Reads ``length`` bytes at ``offset`` of a store path.
    """

    def __init__(self, ref: PartRef, read_range: ReadRange) -> None:
        self.ref = ref
        self.where = f"catalogue part {ref.path}"
        self._read_range = read_range
        self._index: PartIndex | None = None
        self._columns: dict[str, Any] = {}
        # the index's key and array lists as maps, made once (callers ask once per key)
        # and handed out read-only: every caller of the reader shares them
        self._kinds: Mapping[str, tuple[int, str]] | None = None
        self._groups: Mapping[str, tuple[int, int]] | None = None
        self._names_ordered = False  # name keys were made (and checked sorted), then released

    # -- raw access -------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset`` of the part (short reads are damage)."""
        data = self._read_range(self.ref.path, offset, length)
        if len(data) != length:
            raise CorruptStoreError(f"{self.where} is truncated: read {len(data)} of {length} bytes at {offset}")
        return data

    @property
    def index(self) -> PartIndex:
        """The part's index (read and checked on first use)."""
        if self._index is None:
            ref = self.ref
            if ref.index_length > MAX_INDEX_BYTES:  # checked before anything is read
                raise CorruptStoreError(f"{self.where}: index of {ref.index_length} bytes is over the limit")
            raw = bytes(self.read(ref.index_offset, ref.index_length))
            index = parse_index(raw, ref.index_checksum, ref.index_offset, self.where)
            if index.rows != ref.rows:
                raise CorruptStoreError(f"{self.where}: index holds {index.rows} rows, the commit object {ref.rows}")
            blocks = -(-index.rows // index.block_rows)
            # Every block holds at least its offsets table: a forged row count
            # cannot claim more rows than the part's size can hold.
            if blocks * 8 > ref.index_offset:
                raise CorruptStoreError(f"{self.where}: {index.rows} rows do not fit a part of {ref.size} bytes")
            self._index = index
        return self._index

    @property
    def rows(self) -> int:
        return self.ref.rows

    def column_bytes(self, name: str, raw_length: int | None) -> np.ndarray:
        """The verified, decompressed bytes of one column."""
        col = self.index.columns.get(name)
        if col is None:
            raise CorruptStoreError(f"{self.where}: column {name!r} is missing")
        stored = self.read(col.offset, col.length)
        return decode_column(stored, col, raw_length, f"{self.where} column {name!r}")

    def fixed(self, name: str, count: int | None = None) -> np.ndarray:
        """A fixed-width column (kept after the first read)."""
        out = self._columns.get(name)
        if out is None:
            dtype = np.dtype(_FIXED[name.rsplit(".", 1)[-1]])
            n = self.rows if count is None else count
            out = self.column_bytes(name, n * dtype.itemsize).view(dtype)
            self._columns[name] = out
        return out

    def strings(self, name: str, count: int | None = None) -> list[str]:
        """A string column (kept after the first read)."""
        out = self._columns.get(name)
        if out is None:
            n = self.rows if count is None else count
            out = decode_strings(self.column_bytes(name, None), n, f"{self.where} column {name!r}")
            self._columns[name] = out
        return out

    def tombstones(self) -> np.ndarray:
        """Bool per row: the row deletes its dataset."""
        checked = self._columns.get("tombstone?")
        if checked is None:  # checked once: lookups call this for every dataset
            t = self.fixed("tombstone")
            if t.size and t.max() > 1:
                raise CorruptStoreError(f"{self.where}: tombstone column holds values other than 0/1")
            checked = self._columns["tombstone?"] = t.view(bool)
        return checked

    # -- records ------------------------------------------------------------------------------

    def block_table(self) -> np.ndarray:
        """``(blocks, 5)`` uint64: offset, stored length, raw length, checksum, codec of each block."""
        out = self._columns.get("record_blocks")
        if out is None:
            index = self.index
            blocks = -(-index.rows // index.block_rows)
            out = self.column_bytes("record_blocks", blocks * 40).view("<u8").reshape(blocks, 5)
            col = index.columns.get("records")
            if col is None:
                raise CorruptStoreError(f"{self.where}: column 'records' is missing")
            starts, lengths = out[:, 0], out[:, 1]
            expected = np.concatenate(([0], np.cumsum(lengths)[:-1])) if blocks else starts
            if blocks and (np.any(starts != expected) or int(starts[-1] + lengths[-1]) != col.length):
                raise CorruptStoreError(f"{self.where}: record blocks do not tile the records column")
            self._columns["record_blocks"] = out
        return out

    def block(self, k: int) -> RecordBlock:
        """Record block ``k``: ``(record offsets, records bytes)``, verified."""
        index = self.index
        table = self.block_table()
        offset, length, raw_length, digest, codec = (int(v) for v in table[k])
        stored = np.frombuffer(self.read(index.columns["records"].offset + offset, length), np.uint8)
        where = f"{self.where} record block {k}"
        if checksum(stored) != digest:
            raise ChecksumError(f"{where}: checksum mismatch")
        count = min(index.block_rows, index.rows - k * index.block_rows)
        head = 4 * (count + 1)
        if raw_length < head or raw_length > max(16 << 20, 4096 * length):
            raise CorruptStoreError(f"{where}: block claims {raw_length} bytes")
        raw = decode_payload(stored, codec, raw_length, where)
        offsets = raw[:head].view("<u4").astype(np.int64)
        if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != raw_length - head:
            raise CorruptStoreError(f"{where}: record offsets are damaged")
        # A decompressed block is a new array of its own: a view of it spares a copy of
        # every record.  A block stored raw is a view of the bytes read (perhaps of a
        # mapped file): copied, so that no view of the file outlives the read.
        return offsets, memoryview(raw).toreadonly()[head:] if raw is not stored else raw[head:].tobytes()

    def record(self, row: int, block: RecordBlock) -> DatasetMeta | None:
        """Decode row ``row`` from its block (as returned by :meth:`block`), checking its keys."""
        offsets, data = block
        i = row % self.index.block_rows
        ds = decode_record(data[offsets[i] : offsets[i + 1]], f"{self.where} row {row}")
        tomb = bool(self.tombstones()[row])
        if (ds is None) != tomb or (ds is not None and (ds.id, ds.version) != self.key(row)):
            raise CorruptStoreError(f"{self.where} row {row}: record disagrees with the key columns")
        return ds

    def arrays(self, row: int, block: RecordBlock) -> dict[str, ArrayMeta] | None:
        """The arrays of row ``row`` (None for a tombstone), its attributes left undecoded."""
        offsets, data = block
        i = row % self.index.block_rows
        return decode_arrays(data[offsets[i] : offsets[i + 1]], f"{self.where} row {row}")

    def schemas(self, array: str) -> SchemaTable | None:
        """The interned schemas of ``array`` (kept), or None when the part has none for it.

        Parts written before schema interning have none: their arrays are read
        through the records.
        """
        key = "schemas:" + array
        if key not in self._columns:
            self._columns[key] = read_schema_table(self, array)
        return self._columns[key]

    def key(self, row: int) -> tuple[int, int]:
        """``(id, version)`` of a row from the key columns."""
        return int(self.fixed("id")[row]), int(self.fixed("version")[row])

    # -- search columns -----------------------------------------------------------------------

    def attribute_kinds(self) -> Mapping[str, tuple[int, str]]:
        """``{key: (column number, kind)}`` of the part's attribute search columns.

        Made on first use and kept, so that asking once per key costs no more than
        one pass over the keys; read-only, since every caller of the reader shares it.
        """
        if self._kinds is None:
            self._kinds = MappingProxyType({key: (i, kind) for i, (key, kind) in enumerate(self.index.attributes)})
        return self._kinds

    def attribute(self, key: str, typed: bool = False) -> tuple[str, np.ndarray, np.ndarray] | None:
        """``(kind, values per row, present per row)`` of one attribute, or None.

        Blob values are what ``get_attribute`` returns, or with ``typed`` their
        typed form (``{"t", "v"[, "k", "s"]}``).
        """
        found = self.attribute_kinds().get(key)
        if found is None:
            return None
        i, kind = found
        if kind == "string":
            codes, dictionary, present = self._coded(i, key)
            return kind, (dictionary[codes] if len(dictionary) else np.full(codes.size, "", object)), present
        present = self._present(i, key)
        where = f"{self.where} attribute {key!r}"
        if kind == "blob":
            return kind, self._blob(f"a{i}.blob", present, where, typed), present
        if kind not in _TYPED_COLUMN:
            raise CorruptStoreError(f"{where}: unknown column kind {kind!r}")
        dtype = _TYPED_COLUMN[kind]
        values = self.column_bytes(f"a{i}.values", self.rows * dtype.itemsize).view(dtype)
        if kind == "bool":
            if values.size and values.max() > 1:
                raise CorruptStoreError(f"{where}: bool column holds values other than 0/1")
            values = values.view(bool)
        elif kind == "timestamp_nanoseconds":
            values = values.view("datetime64[ns]")
        return kind, values, present

    def string_codes(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(codes, dictionary, present)`` of a string attribute column, or None
        (what searches compare and merges remap).

        None when the part has no column ``key`` or stores it as another kind.
        ``dictionary`` is an object array of ``str`` and every code indexes it
        (checked); the codes of rows without the key are placeholders.  The codes
        and presence arrays are the reader's own: not to be written to.
        """
        found = self.attribute_kinds().get(key)
        if found is None or found[1] != "string":
            return None
        return self._coded(found[0], key)

    def _coded(self, i: int, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        present = self._present(i, key)
        codes = self.fixed(f"a{i}.codes")
        dictionary = self._dictionary(f"a{i}.dict")
        if codes.size and int(codes.max()) >= max(len(dictionary), 1):
            raise CorruptStoreError(f"{self.where} attribute {key!r}: dictionary code out of range")
        if not len(dictionary) and present.any():  # code 0 passes the bound above, and names no value
            raise CorruptStoreError(f"{self.where} attribute {key!r}: dictionary code out of range (empty dictionary)")
        return codes, dictionary, present

    def _present(self, i: int, key: str) -> np.ndarray:
        present = self.fixed(f"a{i}.present")
        if present.size and present.max() > 1:
            raise CorruptStoreError(f"{self.where}: attribute {key!r} presence is not 0/1")
        return present

    def _dictionary(self, name: str) -> np.ndarray:
        col = self.index.columns.get(name)
        if col is None:
            raise CorruptStoreError(f"{self.where}: column {name!r} is missing")
        raw = self.column_bytes(name, None)
        items = decode_strings(raw, int(np.count_nonzero(raw == 0xFF)), f"{self.where} column {name!r}")
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out

    def _blob(self, name: str, present: np.ndarray, where: str, typed: bool) -> np.ndarray:
        raw = self.column_bytes(name, None)
        try:
            items = msgpack.unpackb(raw.tobytes(), raw=False, strict_map_key=True, max_bin_len=0)
            if not isinstance(items, list) or len(items) != self.rows:
                raise CorruptStoreError("not one value per row")
            out = np.empty(self.rows, dtype=object)
            for r, item in enumerate(items):
                if (item is None) == bool(present[r]):
                    raise CorruptStoreError("presence disagrees with the values")
                if item is not None:
                    value = attributes.decode(item)
                    out[r] = value if typed else attributes.to_python(value)
        except Exception as exc:
            raise CorruptStoreError(f"{where}: blob column does not follow the format: {exc}") from None
        return out

    def extreme_dtypes(self, array: str) -> np.ndarray | None:
        """Dtype codes of the rows whose stats of ``array`` hold extremes (-1 for the others), or None."""
        got = self.stats(array, "dtype_code")
        if got is None:
            return None
        state = self.fixed(f"s{self.stats_groups()[array][0]}.state")  # checked by stats()
        return np.where(state == EXTREMES, got[0].astype(np.int16), np.int16(-1))

    def stats_groups(self) -> Mapping[str, tuple[int, int]]:
        """``{array name: (group number, flags)}`` of the part's stats columns (kept and
        read-only, as :meth:`attribute_kinds` is)."""
        if self._groups is None:
            self._groups = MappingProxyType({name: (j, flags) for j, (name, flags) in enumerate(self.index.arrays)})
        return self._groups

    def stats(self, array: str, field: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(values per row, valid per row)`` of one stats field of ``array``, or None."""
        found = self.stats_groups().get(array)
        if found is None:
            return None
        j, flags = found
        p = f"s{j}."
        state = self._checked(p + "state", EXTREMES, f"stats state of array {array!r}")
        if field in ("has", "slot", "dtype_code", "shape"):
            has = state > 0
            if field == "has":  # whether each row defines the array (no other column read)
                return has, has
            if field == "shape":
                return self._shapes(p, has), has
            if field == "slot":
                return self.fixed(p + "slot"), has
            return self._checked(p + "dtype", len(DTYPE_CODES) - 1, f"dtype code of array {array!r}"), has
        if field in ("row_count", "null_count"):
            return self.fixed(p + field), state >= NO_EXTREMES
        if field in ("min", "max"):
            return self.fixed(p + field), state == EXTREMES
        if field in ("min_exact", "max_exact"):
            return self._exact(p, field[:3], flags, state, array), state == EXTREMES
        raise KeyError(field)

    def _checked(self, name: str, top: int, what: str) -> np.ndarray:
        """The fixed-width column ``name``, checked once to hold no value above ``top``."""
        values = self.fixed(name)
        if f"{name}?" not in self._columns:
            if values.size and values.max() > top:
                raise CorruptStoreError(f"{self.where}: {what} is out of range")
            self._columns[f"{name}?"] = True
        return values

    def _exact(self, p: str, which: str, flags: int, state: np.ndarray, array: str) -> np.ndarray:
        codes, _ = self.stats(array, "dtype_code")
        out = self.fixed(p + which).astype(object)  # float64 values, exact for floats and bools
        ints = self.fixed(p + "i" + which) if flags & FLAG_EXACT else None
        strs = self.strings(p + "s" + which) if flags & FLAG_STRINGS else None
        for r in np.flatnonzero(state == EXTREMES).tolist():
            name = DTYPE_CODES[codes[r]]
            if name == "string":
                out[r] = strs[r] if strs is not None else None
            elif ints is not None and (dtypes.is_integer(name) or name == "timestamp_nanoseconds"):
                bits = int(ints[r])
                value = bits - (1 << 64) if name[0] != "u" and bits >= 1 << 63 else bits
                out[r] = dtypes.decode_value(value, name)
            elif name == "bool":
                out[r] = bool(out[r])
        return out

    def _shapes(self, p: str, has: np.ndarray) -> np.ndarray:
        ndim = self.fixed(p + "ndim")
        total = int(ndim.sum(dtype=np.int64))
        extents = self.fixed(p + "extents", total)
        starts = np.concatenate(([0], np.cumsum(ndim, dtype=np.int64)))
        out = np.empty(self.rows, dtype=object)
        flat = extents.tolist()
        for r in np.flatnonzero(has).tolist():
            out[r] = tuple(flat[starts[r] : starts[r + 1]])
        return out

    # -- full check ------------------------------------------------------------------------------

    def verify(self) -> None:
        """Check header, footer, every column and every record of the part."""
        ref = self.ref
        if ref.size < HEADER_SIZE + FOOTER_SIZE or ref.index_offset + ref.index_length + FOOTER_SIZE != ref.size:
            raise CorruptStoreError(f"{self.where}: index range does not end at the footer")
        footer = read_footer(bytes(self.read(ref.size - FOOTER_SIZE, FOOTER_SIZE)), self.where)
        if footer != (ref.index_offset, ref.index_length, ref.index_checksum):
            raise CorruptStoreError(f"{self.where}: footer disagrees with the commit object")
        if check_header(bytes(self.read(0, HEADER_SIZE)), self.where) > ref.max_generation:
            raise CorruptStoreError(f"{self.where}: header generation is newer than the commit object says")
        names, tomb = self.names(), self.tombstones()
        for name, col in self.index.columns.items():
            if name != "records":
                stored = self.read(col.offset, col.length)
                decode_column(stored, col, None, f"{self.where} column {name!r}")
        tables = {a: t for a in self.stats_groups() if (t := self.schemas(a)) is not None}
        for k in range(self.block_table().shape[0]):
            block = self.block(k)
            start = k * self.index.block_rows
            for row in range(start, min(start + self.index.block_rows, self.rows)):
                ds = self.record(row, block)
                for array, table in tables.items():
                    table.check_row(row, None if ds is None else ds.arrays.get(array))
        for table in tables.values():
            table.check()  # every template checked with the shapes it is used with
        for key in self.attribute_kinds():
            self.attribute(key)
        for array in self.stats_groups():
            for field in ("slot", "dtype_code", "row_count", "min", "min_exact", "max_exact", "shape"):
                self.stats(array, field)
        del names, tomb
