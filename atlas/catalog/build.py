"""Writing one catalogue part from dataset rows.

A part holds one row per dataset name, sorted by name (code-point order, which is
also UTF-8 byte order): key columns, the record blocks, attribute search columns
and per-array stats columns (``docs/format-v2.md``).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from atlas import dtypes
from atlas.catalog.commit import PartRef, part_filename
from atlas.catalog.encoding import encode_record, encode_strings, is_internal_key
from atlas.catalog.layout import PartBuilder
from atlas.catalog.schemas import FLAG_SCHEMAS, SchemaInterner
from atlas.errors import InvalidArgumentError
from atlas.metadata import DatasetMeta

__all__ = ["BLOCK_ROWS", "DTYPE_CODES", "add_attribute_column", "add_string_attribute", "record_block", "write_part"]

_T, _V = operator.itemgetter("t"), operator.itemgetter("v")
#: Rows per record block: materialising one dataset decompresses one block.
BLOCK_ROWS = 256
#: Stats column ``dtype`` code of each dtype name (its position in this tuple).
DTYPE_CODES: tuple[str, ...] = dtypes.DTYPE_NAMES
_CODE = {name: i for i, name in enumerate(DTYPE_CODES)}
#: Storage of a typed attribute search column, per dtype (bools as one byte).
_COLUMN_DTYPE = {name: dtypes.storage_dtype(name) for name in DTYPE_CODES if name != "string"}
_COLUMN_DTYPE["bool"] = np.dtype("u1")
_EXACT = frozenset(n for n in DTYPE_CODES if dtypes.is_integer(n)) | {"timestamp_nanoseconds"}
#: Stats state codes: array absent, present without stats, stats without extremes, stats with extremes.
ABSENT, NO_STATS, NO_EXTREMES, EXTREMES = 0, 1, 2, 3
#: Stats group flags: exact integer extremes present / string extremes present.
FLAG_EXACT, FLAG_STRINGS = 1, 2


def write_part(
    rows: Sequence[tuple[str, DatasetMeta | None]], codec: str, generation: int, token: bytes
) -> tuple[str, list[bytes | np.ndarray], PartRef]:
    """Lay out one catalogue part.

    Parameters
    ----------
    rows : sequence of (name, DatasetMeta or None)
        One entry per dataset the part records; ``None`` is a tombstone (the
        dataset was deleted).  Names must be distinct; any order.
    codec : str
        The store codec (``zstd``, ``lz4`` or ``none``) for every column.
    generation : int
        The generation of the commit writing the part (in its header and name).
    token : bytes
        The 16-byte write token of that commit.

    Returns
    -------
    (file name, buffers, PartRef)
        The file name inside ``catalog/``, the buffers to write in order (their
        concatenation is the file), and the entry for the commit object.
    """
    ordered = sorted(rows, key=lambda r: r[0])
    names = [name for name, _ in ordered]
    if len(set(names)) != len(names):
        raise InvalidArgumentError("a catalogue part cannot hold two rows of one dataset name")
    builder = PartBuilder(generation, token, codec)
    n = len(ordered)
    metas = [m for _, m in ordered]
    builder.add("name", encode_strings(names))
    ids = np.fromiter((0 if m is None else m.id for m in metas), dtype="<u8", count=n)
    versions = np.fromiter((generation if m is None else m.version for m in metas), dtype="<u8", count=n)
    builder.add("id", ids, 8)
    builder.add("version", versions, 8)
    builder.add("tombstone", np.fromiter((m is None for m in metas), dtype="u1", count=n))
    blocks = (_record_block(metas[i : i + BLOCK_ROWS]) for i in range(0, n, BLOCK_ROWS))
    builder.add("record_blocks", builder.add_blocks("records", blocks), 8)
    attributes = _add_attribute_columns(builder, metas)
    arrays = _add_stats_columns(builder, metas)
    parts, size, index_offset, index_length, digest = builder.finish(n, BLOCK_ROWS, attributes, arrays)
    file = part_filename(generation, token)
    ref = PartRef(file, size, index_offset, index_length, digest, n, generation, generation)
    return file, parts, ref


def _record_block(metas: list[DatasetMeta | None]) -> bytes:
    return record_block([encode_record(m) for m in metas])


def record_block(records: list[bytes]) -> bytes:
    """One decompressed record block: u32 offsets, then the records."""
    offsets = np.zeros(len(records) + 1, dtype="<u4")
    np.cumsum([len(r) for r in records], out=offsets[1:])
    return offsets.tobytes() + b"".join(records)


def _add_attribute_columns(builder: PartBuilder, metas: list[DatasetMeta | None]) -> list[list[str]]:
    # Column by column with C-level map() calls: a Python loop per (row, key)
    # cost most of the time of writing a large part.
    attrs = [{} if m is None else m.attributes for m in metas]
    n = len(metas)
    out = []
    keys = sorted(k for k in set().union(*attrs) if not is_internal_key(k)) if attrs else []
    for i, key in enumerate(keys):
        column = np.empty(n, dtype=object)
        column[:] = list(map(dict.get, attrs, itertools.repeat(key)))
        out.append([key, add_attribute_column(builder, i, column)])
    return out


def add_attribute_column(builder: PartBuilder, i: int, column: np.ndarray) -> str:
    """Add the ``a{i}.*`` columns of one key from its typed values (object array, None = absent).

    Returns the column kind.
    """
    n = column.size
    present = np.not_equal(column, None)
    idx = np.flatnonzero(present)
    values = column[idx].tolist()
    builder.add(f"a{i}.present", present.astype("u1"))
    types = set(map(_T, values))
    scalar = set(map(len, values)) == {2}  # {"t", "v"}: no "k" (list/ndarray)
    t = next(iter(types)) if len(types) == 1 and scalar else None
    if t == "string":
        add_string_attribute(builder, i, n, idx, list(map(_V, values)))
        return "string"
    if t is not None:
        col = np.zeros(n, dtype=_COLUMN_DTYPE[t])
        col[idx] = list(map(_V, values))
        builder.add(f"a{i}.values", col, col.itemsize)
        return t
    column = column.copy()
    column[~present] = None
    builder.add(f"a{i}.blob", msgpack.packb(column.tolist(), use_bin_type=True))
    return "blob"


def add_string_attribute(builder: PartBuilder, i: int, n: int, idx: np.ndarray, values: list[str]) -> None:
    """Add ``a{i}.codes`` and ``a{i}.dict`` for string ``values`` of rows ``idx``."""
    dictionary, codes = _dictionary_encode(values)
    col = np.zeros(n, dtype="<u4")
    col[idx] = codes
    builder.add(f"a{i}.codes", col, 4)
    builder.add(f"a{i}.dict", encode_strings(dictionary))


def _dictionary_encode(values: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted distinct values and the code of each value (sorting only the distinct ones)."""
    distinct = sorted(dict.fromkeys(values))
    code = {v: k for k, v in enumerate(distinct)}
    return distinct, np.fromiter(map(code.__getitem__, values), dtype=np.int64, count=len(values))


def _add_stats_columns(builder: PartBuilder, metas: list[DatasetMeta | None]) -> list[list[Any]]:
    per_array: dict[str, list[tuple[int, Any]]] = {}
    for row, m in enumerate(metas):
        if m is not None:
            for name, am in m.arrays.items():
                per_array.setdefault(name, []).append((row, am))
    n = len(metas)
    out = []
    for j, name in enumerate(sorted(per_array)):
        entries = per_array[name]
        state = np.zeros(n, dtype="u1")
        slot, rows_, nulls = (np.zeros(n, dtype="<u8") for _ in range(3))
        code, ndim = np.zeros(n, dtype="u1"), np.zeros(n, dtype="u1")
        fmin, fmax = np.full(n, math.nan), np.full(n, math.nan)
        imin, imax = np.zeros(n, dtype="<u8"), np.zeros(n, dtype="<u8")
        smin, smax = [""] * n, [""] * n
        extents: list[int] = []
        schema, interner = np.zeros(n, dtype="<u4"), SchemaInterner()
        flags = FLAG_SCHEMAS
        for r, am in entries:
            slot[r], code[r], ndim[r] = am.slot, _CODE[am.dtype], len(am.shape)
            schema[r] = interner.code(am)
            extents.extend(am.shape)
            st = am.stats
            if st is None:
                state[r] = NO_STATS
                continue
            rows_[r], nulls[r] = st.row_count, st.null_count
            if st.minimum is None or st.maximum is None:
                state[r] = NO_EXTREMES
                continue
            state[r] = EXTREMES
            if am.dtype == "string":
                smin[r], smax[r] = st.minimum, st.maximum
                flags |= FLAG_STRINGS
                continue
            fmin[r], fmax[r] = float(st.minimum), float(st.maximum)
            if am.dtype in _EXACT:
                imin[r], imax[r] = st.minimum & 0xFFFFFFFFFFFFFFFF, st.maximum & 0xFFFFFFFFFFFFFFFF
                flags |= FLAG_EXACT
        p = f"s{j}."
        builder.add(p + "state", state)
        builder.add(p + "slot", slot, 8)
        builder.add(p + "dtype", code)
        builder.add(p + "row_count", rows_, 8)
        builder.add(p + "null_count", nulls, 8)
        builder.add(p + "min", fmin, 8)
        builder.add(p + "max", fmax, 8)
        builder.add(p + "ndim", ndim)
        builder.add(p + "extents", np.asarray(extents, dtype="<u8"), 8)
        builder.add(p + "schema", schema, 4)
        builder.add(p + "schemas", interner.column())
        if flags & FLAG_EXACT:
            builder.add(p + "imin", imin, 8)
            builder.add(p + "imax", imax, 8)
        if flags & FLAG_STRINGS:
            builder.add(p + "smin", encode_strings(smin))
            builder.add(p + "smax", encode_strings(smax))
        out.append([name, flags])
    return out
