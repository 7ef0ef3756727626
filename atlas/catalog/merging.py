"""Merging parts column by column, without decoding a single dataset record.

The winning rows of the merged parts (``snapshot.winning_rows``) are placed in
name order with the same position arithmetic a snapshot uses; every fixed-width
column is then gathered with numpy fancy indexing, record bytes are copied from
their (verified) blocks into new blocks, and attribute columns are re-encoded only
where their kinds differ between parts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from atlas.catalog.build import (
    BLOCK_ROWS,
    FLAG_EXACT,
    FLAG_STRINGS,
    add_attribute_column,
    add_string_attribute,
)
from atlas.catalog.encoding import encode_strings
from atlas.catalog.layout import PartBuilder, StoredBlock
from atlas.catalog.part import PartReader
from atlas.catalog.schemas import FLAG_SCHEMAS, SchemaInterner
from atlas.catalog.snapshot import merge_positions, merge_sorted, winning_rows
from atlas.engine.codecs import CODEC_IDS, checksum
from atlas.errors import ChecksumError, CorruptStoreError

__all__ = ["add_search_columns", "merge_columns"]

_NIL = b"\xc0"  # the MessagePack nil of a tombstone record
#: Per part: row numbers, or positions in the merged part.
Rows = list[np.ndarray]


def merge_columns(
    readers: Sequence[PartReader], keep_tombstones: bool, builder: PartBuilder
) -> tuple[int, list[list], list[list]]:
    """Add every column of the merge of ``readers`` (oldest first) to ``builder``.

    Returns ``(rows, attribute entries, array entries)`` for :meth:`PartBuilder.finish`.
    """
    order = _disjoint_order([r.names() for r in readers])
    if order is not None:
        # Parts of disjoint name ranges (a batched build): every row wins, and the
        # merge is their concatenation in name order.
        rows = [np.arange(r.rows) if keep_tombstones else np.flatnonzero(~r.tombstones()) for r in readers]
        kept = [r.names() if w.size == r.rows else [r.names()[i] for i in w.tolist()] for r, w in zip(readers, rows)]
        pos = [np.zeros(0, dtype=np.int64)] * len(readers)
        at = 0
        for p in order:
            pos[p] = np.arange(at, at + rows[p].size, dtype=np.int64)
            at += rows[p].size
        merged = list(itertools.chain.from_iterable(kept[p] for p in order))
    else:
        kept, rows = winning_rows(readers, keep_tombstones)
        pos = merge_positions(kept)
        merged = merge_sorted(kept, pos)
    n = len(merged)
    builder.add("name", encode_strings(merged))
    for name, dtype in (("id", "<u8"), ("version", "<u8"), ("tombstone", "u1")):
        builder.add(name, _gather(readers, rows, pos, n, lambda r, c=name: r.fixed(c), dtype), np.dtype(dtype).itemsize)
    blocks = _record_blocks(readers, rows, pos, n, builder.codec)
    builder.add("record_blocks", builder.add_blocks("records", blocks), 8)
    attributes, arrays = add_search_columns(readers, rows, pos, n, builder)
    return n, attributes, arrays


def add_search_columns(
    readers: Sequence[PartReader], rows: Rows, pos: Rows, n: int, builder: PartBuilder, used_only: bool = False,
    packed: Mapping[tuple[int, str], list[bytes]] | None = None,
) -> tuple[list[list], list[list]]:
    """Add the attribute and stats columns of rows ``rows`` of ``readers`` (ascending
    per part) at positions ``pos`` of a part of ``n`` rows to ``builder``.

    With ``used_only``, attribute keys and arrays that none of those rows has get
    no column (a part of some rows of other parts, as a part written from these
    rows would be); otherwise every key and array of ``readers`` gets one.
    ``packed`` holds, by ``(part number, array)``, the templates of schema tables
    the caller already packed again (:meth:`~atlas.catalog.schemas.SchemaTable.template_bytes`).
    Returns ``(attribute entries, array entries)`` for :meth:`PartBuilder.finish`.
    """
    return (_merge_attributes(readers, rows, pos, n, builder, used_only),
            _merge_stats(readers, rows, pos, n, builder, used_only, packed or {}))  # fmt: skip


def _at(index: np.ndarray) -> np.ndarray | slice:
    """``index`` (ascending, distinct) as a slice when it is a run of consecutive
    numbers: copies through slices cost a fraction of fancy indexing, and the rows
    of a part under disjoint or few newer rows are such runs."""
    if index.size and int(index[-1]) - int(index[0]) == index.size - 1:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _disjoint_order(names: Sequence[Sequence[str]]) -> list[int] | None:
    """The parts in name order when their (sorted) names lie in disjoint ranges, else None."""
    ranged = sorted((n[0], n[-1], p) for p, n in enumerate(names) if len(n))
    if any(a[1] >= b[0] for a, b in itertools.pairwise(ranged)):
        return None
    return [p for *_, p in ranged] + [p for p, n in enumerate(names) if not len(n)]


def _gather(
    readers: Sequence[PartReader], rows: Rows, pos: Rows, n: int,
    column: Callable[[PartReader], np.ndarray | None], dtype: str, fill: float = 0,
) -> np.ndarray:  # fmt: skip
    """One output column: each part's winning rows of ``column(reader)`` at their positions."""
    out = np.full(n, fill, dtype=dtype)
    for reader, r, p in zip(readers, rows, pos):
        values = column(reader)
        if values is not None:
            out[_at(p)] = values[_at(r)]
    return out


def _record_blocks(
    readers: Sequence[PartReader], rows: Rows, pos: Rows, n: int, codec: str
) -> Iterator[bytes | StoredBlock]:
    """The merged record blocks, copied from the (verified) source blocks without decoding a record.

    Each merged row points at its record's bytes in a decompressed source block;
    the rows whose records follow each other in one source block form runs, and each
    merged block is its offsets table plus a join of slices of a few runs.  A merged
    block that is exactly one whole source block (rows of a part that land in the
    merge on a block boundary, the usual case for the oldest part of a merge) is
    that block's stored bytes: the same bytes compressing it again would give.
    """
    pool_of = np.zeros(n, dtype=np.int64)
    start = np.zeros(n, dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    pools: list[bytes] = []
    #: Per pool: the source block as stored and its row count, when every one of its rows is kept.
    whole: list[tuple[StoredBlock, int] | None] = []
    codec_id = CODEC_IDS[codec]
    for reader, r, p in zip(readers, rows, pos):
        if not r.size:
            continue
        block_rows = reader.index.block_rows
        which = r // block_rows
        cuts = np.flatnonzero(which[1:] != which[:-1]) + 1  # rows ascending: one slice per block
        tomb = reader.tombstones()
        table = reader.block_table() if block_rows == BLOCK_ROWS else None
        for sel in np.split(np.arange(r.size), cuts):
            k = int(which[sel[0]])
            offsets, data = reader.block(k)
            local = r[sel] - k * block_rows
            lo, hi = offsets[local], offsets[local + 1]
            nil = hi - lo == 1
            if nil.any():  # offsets are checked to lie within the block
                nil[nil] = np.frombuffer(data, dtype=np.uint8)[lo[nil]] == _NIL[0]
            bad = np.flatnonzero(nil != tomb[r[sel]])
            if bad.size:  # a record must agree with its tombstone flag: the precise error
                reader.record(int(r[sel[bad[0]]]), (offsets, data))
            pool_of[p[sel]], start[p[sel]], length[p[sel]] = len(pools), lo, hi - lo
            pools.append(data)
            whole.append(_stored_block(reader, table, k, sel.size, codec_id))
    if not n:
        return
    end = start + length
    joined = np.ones(n, dtype=bool)  # row i continues the run of row i - 1
    joined[1:] = (pool_of[1:] == pool_of[:-1]) & (start[1:] == end[:-1])
    joined[::BLOCK_ROWS] = False
    heads = np.flatnonzero(~joined)
    tails = np.append(heads[1:], n)
    pieces = [memoryview(pools[q])[a:b] for q, a, b in zip(pool_of[heads].tolist(), start[heads].tolist(),
                                                           end[tails - 1].tolist())]  # fmt: skip
    block_of = (heads // BLOCK_ROWS).tolist()
    head_pool = pool_of[heads].tolist()
    first = 0
    for b in range(0, n, BLOCK_ROWS):
        count = min(BLOCK_ROWS, n - b)
        last = first
        while last < len(block_of) and block_of[last] == b // BLOCK_ROWS:
            last += 1
        # One run, of a pool whose rows all survive, holding as many rows as the pool:
        # the merged block is that source block, byte for byte.
        stored = whole[head_pool[first]] if last == first + 1 else None
        if stored is not None and stored[1] == count:
            yield stored[0]
        else:
            offsets = np.zeros(count + 1, dtype="<u4")
            np.cumsum(length[b : b + count], out=offsets[1:])
            yield offsets.tobytes() + b"".join(pieces[first:last])
        first = last


def _stored_block(
    reader: PartReader, table: np.ndarray | None, k: int, kept: int, codec_id: int
) -> tuple[StoredBlock, int] | None:
    """Block ``k`` of ``reader`` as stored and its row count, when all its rows are
    kept and it was compressed with the merge's codec (None otherwise).

    The block was just read and verified by :meth:`PartReader.block`; the merge's
    reader function hands the same bytes back without reading them again.
    """
    if table is None or kept != min(BLOCK_ROWS, reader.rows - k * BLOCK_ROWS):
        return None
    offset, size, raw_length, digest, cid = (int(v) for v in table[k])
    if cid != codec_id:
        return None
    stored = reader.read(reader.index.columns["records"].offset + offset, size)
    if checksum(stored) != digest:  # read again by a reader function that does not hand it back
        raise ChecksumError(f"{reader.where} record block {k}: checksum mismatch")
    return StoredBlock(stored, raw_length, digest, cid), kept


def _as_objects(items: list[Any]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _merge_attributes(
    readers: Sequence[PartReader], rows: Rows, pos: Rows, n: int, builder: PartBuilder, used_only: bool = False
) -> list[list[str]]:
    part_kinds = [r.attribute_kinds() for r in readers]
    keys = sorted({k for kinds in part_kinds for k in kinds})
    if used_only:
        keys = [k for k in keys if any(_has_any(r, rw, f"a{kinds[k][0]}.present")
                                       for r, rw, kinds in zip(readers, rows, part_kinds) if k in kinds)]  # fmt: skip
    # every key gathers the same rows to the same positions
    spans = [(_at(rw), _at(p)) for rw, p in zip(rows, pos)]
    out = []
    for i, key in enumerate(keys):
        kinds_ = {kinds[key][1] for kinds in part_kinds if key in kinds}
        if kinds_ == {"string"}:
            _merge_strings(readers, rows, pos, spans, n, builder, i, key)
            out.append([key, "string"])
            continue
        found = [(rw, p, span, r.attribute(key, typed=True)) for r, rw, p, span in zip(readers, rows, pos, spans)]
        found = [(rw, p, span, f) for rw, p, span, f in found if f is not None]
        kinds = {f[0] for *_, f in found}
        present = np.zeros(n, dtype=bool)
        for _, _, (ra, pa), f in found:
            present[pa] = f[2][ra]
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is not None and kind != "blob":
            builder.add(f"a{i}.present", present.astype("u1"))
            if kind == "string":
                values = np.full(n, None, dtype=object)
                for _, _, (ra, pa), f in found:
                    values[pa] = f[1][ra]
                idx = np.flatnonzero(present)
                add_string_attribute(builder, i, n, idx, values[idx].tolist())
            else:
                dtype = found[0][3][1].dtype
                values = np.zeros(n, dtype=dtype)
                for _, _, (ra, pa), f in found:
                    values[pa] = f[1][ra]
                raw = values.view("<i8") if kind == "timestamp_nanoseconds" else values
                raw = raw.view("u1") if kind == "bool" else raw
                builder.add(f"a{i}.values", raw, raw.itemsize)
        else:
            # kinds differ between parts (or blobs): back to typed values, then encode afresh
            typed = np.full(n, None, dtype=object)
            for rw, p, _, f in found:
                typed[p] = _typed_values(f[0], f[1][rw], f[2][rw])
            kind = add_attribute_column(builder, i, typed)
        out.append([key, kind])
    return out


def _merge_strings(
    readers: Sequence[PartReader], rows: Rows, pos: Rows, spans: list[tuple[Any, Any]], n: int,
    builder: PartBuilder, i: int, key: str,
) -> None:  # fmt: skip
    """A string key of every part: codes remapped into the sorted union of the used values.

    ``spans`` holds :func:`_at` of each part's rows and positions.
    """
    present = np.zeros(n, dtype="u1")
    found = []
    for reader, rw, p, (ra, pa) in zip(readers, rows, pos, spans):
        got = reader.string_codes(key)
        if got is None:
            continue
        codes, dictionary, has = got
        live = has[ra].astype(bool)
        every = bool(live.all())  # usually: no mask to apply
        at, mine = (pa, codes[ra]) if every else (_at(p[live]), codes[_at(rw[live])])
        present[at] = 1
        # the codes in use, ascending: a count per dictionary entry (codes are checked
        # to index the dictionary) costs less than sorting the codes
        used = np.flatnonzero(np.bincount(mine, minlength=len(dictionary))) if mine.size else mine
        found.append((at, mine, used, dictionary[used].tolist()))
    merged = sorted(set().union(*(values for *_, values in found)))
    code = {v: k for k, v in enumerate(merged)}
    out = np.zeros(n, dtype="<u4")
    for at, codes, used, values in found:
        if used.size:
            remap = np.zeros(int(used[-1]) + 1, dtype="<u4")
            remap[used] = [code[v] for v in values]
            out[at] = remap[codes]
    builder.add(f"a{i}.present", present)
    builder.add(f"a{i}.codes", out, 4)
    builder.add(f"a{i}.dict", encode_strings(merged))


def _typed_values(kind: str, values: np.ndarray, present: np.ndarray) -> np.ndarray:
    out = np.full(values.size, None, dtype=object)
    if kind == "blob":
        out[:] = values
    else:
        plain = values.view("<i8") if kind == "timestamp_nanoseconds" else values
        out[:] = [{"t": kind, "v": v} for v in plain.tolist()]
    out[~present.astype(bool)] = None
    return out


def _has_any(reader: PartReader, rows: np.ndarray, column: str) -> bool:
    """Whether the u8 column ``column`` is non-zero in some row of ``rows``."""
    return bool(rows.size) and bool(reader.fixed(column)[_at(rows)].any())


def _merge_stats(
    readers: Sequence[PartReader], rows: Rows, pos: Rows, n: int, builder: PartBuilder, used_only: bool,
    packed: Mapping[tuple[int, str], list[bytes]],
) -> list[list]:
    names = sorted({a for r in readers for a in r.stats_groups()})
    if used_only:
        names = [a for a in names if any(_has_any(r, rw, f"s{r.stats_groups()[a][0]}.state")
                                         for r, rw in zip(readers, rows) if a in r.stats_groups())]  # fmt: skip
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
        codes, interner = _merge_schemas(readers, array, groups, rows, pos, n, packed)
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
                            col[_at(p)] = reader.fixed(f"s{g[0]}.{name}")[_at(r)]
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
    readers: Sequence[PartReader], array: str, groups: list[tuple[int, int] | None], rows: Rows, pos: Rows, n: int,
    packed: Mapping[tuple[int, str], list[bytes]],
) -> tuple[np.ndarray, SchemaInterner]:
    """The ``schema`` codes in merged row order and their dictionary.

    Codes of parts with interned schemas are remapped into the merged dictionary;
    parts written before schema interning get theirs from their records.
    ``packed``: see :func:`add_search_columns`.
    """
    codes = np.zeros(n, dtype="<u4")
    interner = SchemaInterner()
    for k, (reader, g, r, p) in enumerate(zip(readers, groups, rows, pos)):
        if g is None or not r.size:
            continue
        table = reader.schemas(array)
        if table is not None:
            has = table.has[r]
            templates = packed.get((k, array))
            templates = table.template_bytes() if templates is None else templates
            remap = np.array([interner.code_of(t) for t in templates], dtype="<u4")
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
