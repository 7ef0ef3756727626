"""Merging parts column by column, without decoding a single dataset record.

The winning rows of the merged parts (``snapshot.winning_rows``) are placed in
name order with the same position arithmetic a snapshot uses; every fixed-width
column is then gathered with numpy fancy indexing, record bytes are copied from
their (verified) blocks into new blocks, and attribute columns are re-encoded only
where their kinds differ between parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from atlas.catalog.build import (
    BLOCK_ROWS,
    FLAG_EXACT,
    FLAG_STRINGS,
    add_attribute_column,
    add_string_attribute,
    record_block,
)
from atlas.catalog.encoding import encode_strings
from atlas.catalog.layout import PartBuilder
from atlas.catalog.part import PartReader
from atlas.catalog.schemas import FLAG_SCHEMAS, SchemaInterner
from atlas.catalog.snapshot import merge_positions, merge_sorted, winning_rows
from atlas.errors import CorruptStoreError

__all__ = ["merge_columns"]

_NIL = b"\xc0"  # the MessagePack nil of a tombstone record
#: Per part: row numbers, or positions in the merged part.
Rows = list[np.ndarray]


def merge_columns(
    readers: Sequence[PartReader], keep_tombstones: bool, builder: PartBuilder
) -> tuple[int, list[list], list[list]]:
    """Add every column of the merge of ``readers`` (oldest first) to ``builder``.

    Returns ``(rows, attribute entries, array entries)`` for :meth:`PartBuilder.finish`.
    """
    kept, rows = winning_rows(readers, keep_tombstones)
    pos = merge_positions(kept)
    n = sum(len(k) for k in kept)
    builder.add("name", encode_strings(merge_sorted(kept, pos)))
    for name, dtype in (("id", "<u8"), ("version", "<u8"), ("tombstone", "u1")):
        builder.add(name, _gather(readers, rows, pos, n, lambda r, c=name: r.fixed(c), dtype), np.dtype(dtype).itemsize)
    records = np.empty(n, dtype=object)
    for reader, r, p in zip(readers, rows, pos):
        _copy_records(reader, r, p, records)
    blocks = (record_block(records[i : i + BLOCK_ROWS].tolist()) for i in range(0, n, BLOCK_ROWS))
    builder.add("record_blocks", builder.add_blocks("records", blocks), 8)
    attributes = _merge_attributes(readers, rows, pos, n, builder)
    arrays = _merge_stats(readers, rows, pos, n, builder)
    return n, attributes, arrays


def _gather(
    readers: Sequence[PartReader], rows: Rows, pos: Rows, n: int,
    column: Callable[[PartReader], np.ndarray | None], dtype: str, fill: float = 0,
) -> np.ndarray:  # fmt: skip
    """One output column: each part's winning rows of ``column(reader)`` at their positions."""
    out = np.full(n, fill, dtype=dtype)
    for reader, r, p in zip(readers, rows, pos):
        values = column(reader)
        if values is not None:
            out[p] = values[r]
    return out


def _copy_records(reader: PartReader, rows: np.ndarray, pos: np.ndarray, out: np.ndarray) -> None:
    if not rows.size:
        return
    block_rows = reader.index.block_rows
    which = rows // block_rows
    tomb = reader.tombstones()
    for k in np.unique(which).tolist():
        sel = np.flatnonzero(which == k)
        offsets, data = reader.block(k)
        local = (rows[sel] - k * block_rows).tolist()
        starts, ends = offsets[local].tolist(), offsets[np.asarray(local) + 1].tolist()
        chunk = [data[a:b] for a, b in zip(starts, ends)]
        for j, row in enumerate(rows[sel].tolist()):
            # a record must agree with its tombstone flag; anything else is checked on read
            if tomb[row] != (chunk[j] == _NIL):
                reader.record(row, (offsets, data))  # raises the precise error
        out[pos[sel]] = _as_objects(chunk)


def _as_objects(items: list[Any]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _merge_attributes(
    readers: Sequence[PartReader], rows: Rows, pos: Rows, n: int, builder: PartBuilder
) -> list[list[str]]:
    keys = sorted({k for r in readers for k in r.attribute_kinds()})
    out = []
    for i, key in enumerate(keys):
        found = [(r, rw, p, r.attribute(key, typed=True)) for r, rw, p in zip(readers, rows, pos)]
        found = [(rw, p, f) for _, rw, p, f in found if f is not None]
        kinds = {f[0] for _, _, f in found}
        present = np.zeros(n, dtype=bool)
        for rw, p, f in found:
            present[p] = f[2][rw].astype(bool)
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is not None and kind != "blob":
            builder.add(f"a{i}.present", present.astype("u1"))
            if kind == "string":
                values = np.full(n, None, dtype=object)
                for rw, p, f in found:
                    values[p] = f[1][rw]
                idx = np.flatnonzero(present)
                add_string_attribute(builder, i, n, idx, values[idx].tolist())
            else:
                dtype = found[0][2][1].dtype
                values = np.zeros(n, dtype=dtype)
                for rw, p, f in found:
                    values[p] = f[1][rw]
                raw = values.view("<i8") if kind == "timestamp_nanoseconds" else values
                raw = raw.view("u1") if kind == "bool" else raw
                builder.add(f"a{i}.values", raw, raw.itemsize)
        else:
            # kinds differ between parts (or blobs): back to typed values, then encode afresh
            typed = np.full(n, None, dtype=object)
            for rw, p, f in found:
                typed[p] = _typed_values(f[0], f[1][rw], f[2][rw])
            kind = add_attribute_column(builder, i, typed)
        out.append([key, kind])
    return out


def _typed_values(kind: str, values: np.ndarray, present: np.ndarray) -> np.ndarray:
    out = np.full(values.size, None, dtype=object)
    if kind == "blob":
        out[:] = values
    else:
        plain = values.view("<i8") if kind == "timestamp_nanoseconds" else values
        out[:] = [{"t": kind, "v": v} for v in plain.tolist()]
    out[~present.astype(bool)] = None
    return out


def _merge_stats(readers: Sequence[PartReader], rows: Rows, pos: Rows, n: int, builder: PartBuilder) -> list[list]:
    names = sorted({a for r in readers for a in r.stats_groups()})
    out = []
    for j, array in enumerate(names):
        groups = [r.stats_groups().get(array) for r in readers]
        flags = 0
        for g in groups:
            flags |= g[1] if g is not None else 0
        p_ = f"s{j}."

        def field(name: str, dtype: str, fill: float = 0, groups: list = groups) -> np.ndarray:
            def column(part: PartReader) -> np.ndarray | None:
                g = groups[readers.index(part)]
                return None if g is None else part.fixed(f"s{g[0]}.{name}")

            return _gather(readers, rows, pos, n, column, dtype, fill)

        for name, dtype, fill in (("state", "u1", 0), ("slot", "<u8", 0), ("dtype", "u1", 0),
                                  ("row_count", "<u8", 0), ("null_count", "<u8", 0), ("min", "<f8", np.nan),
                                  ("max", "<f8", np.nan)):  # fmt: skip
            col = field(name, dtype, fill)
            builder.add(p_ + name, col, col.itemsize)
        ndim = field("ndim", "u1")
        builder.add(p_ + "ndim", ndim)
        builder.add(p_ + "extents", _merge_extents(readers, groups, rows, pos, ndim), 8)
        codes, interner = _merge_schemas(readers, array, groups, rows, pos, n)
        builder.add(p_ + "schema", codes, 4)
        builder.add(p_ + "schemas", interner.column())
        flags |= FLAG_SCHEMAS
        for bit, names_ in ((FLAG_EXACT, ("imin", "imax")), (FLAG_STRINGS, ("smin", "smax"))):
            if not flags & bit:
                continue
            for name in names_:
                if bit == FLAG_EXACT:
                    col = np.zeros(n, dtype="<u8")
                    for reader, g, r, p in zip(readers, groups, rows, pos):
                        if g is not None and g[1] & bit:
                            col[p] = reader.fixed(f"s{g[0]}.{name}")[r]
                    builder.add(p_ + name, col, 8)
                else:
                    strs = np.full(n, "", dtype=object)
                    for reader, g, r, p in zip(readers, groups, rows, pos):
                        if g is not None and g[1] & bit:
                            strs[p] = _as_objects(reader.strings(f"s{g[0]}.{name}"))[r]
                    builder.add(p_ + name, encode_strings(strs.tolist()))
        out.append([array, flags])
    return out


def _merge_schemas(
    readers: Sequence[PartReader], array: str, groups: list[tuple[int, int] | None], rows: Rows, pos: Rows, n: int
) -> tuple[np.ndarray, SchemaInterner]:
    """The ``schema`` codes in merged row order and their dictionary.

    Codes of parts with interned schemas are remapped into the merged dictionary;
    parts written before schema interning get theirs from their records.
    """
    codes = np.zeros(n, dtype="<u4")
    interner = SchemaInterner()
    for reader, g, r, p in zip(readers, groups, rows, pos):
        if g is None or not r.size:
            continue
        table = reader.schemas(array)
        if table is not None:
            has = table.has[r]
            remap = np.array([interner.code_of(t) for t in table.template_bytes()], dtype="<u4")
            codes[p[has]] = remap[table.codes[r[has]]] if remap.size else 0
            continue
        has = reader.fixed(f"s{g[0]}.state")[r] > 0
        block_rows, k, block = reader.index.block_rows, -1, None
        for row, at in zip(r[has].tolist(), p[has].tolist()):  # rows ascending: each block decoded once
            if row // block_rows != k:
                k = row // block_rows
                block = reader.block(k)
            arrays = reader.arrays(row, block)
            am = None if arrays is None else arrays.get(array)
            if am is None:
                raise CorruptStoreError(f"{reader.where} row {row}: stats state disagrees with the record")
            codes[at] = interner.code(am)
    return codes, interner


def _merge_extents(
    readers: Sequence[PartReader], groups: list[tuple[int, int] | None], rows: Rows, pos: Rows, ndim_out: np.ndarray
) -> np.ndarray:
    """The ragged ``extents`` column in merged row order."""
    starts_out = np.concatenate(([0], np.cumsum(ndim_out, dtype=np.int64)))
    out = np.zeros(int(starts_out[-1]), dtype="<u8")
    for reader, g, r, p in zip(readers, groups, rows, pos):
        if g is None or not r.size:
            continue
        ndim = reader.fixed(f"s{g[0]}.ndim")
        starts = np.concatenate(([0], np.cumsum(ndim, dtype=np.int64)))
        extents = reader.fixed(f"s{g[0]}.extents", int(starts[-1]))
        lengths = ndim[r].astype(np.int64)
        total = int(lengths.sum())
        if not total:
            continue
        step = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[np.repeat(starts_out[p], lengths) + step] = extents[np.repeat(starts[r], lengths) + step]
    return out
