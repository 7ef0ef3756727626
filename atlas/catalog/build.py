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
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from atlas import dtypes
from atlas.catalog.commit import PartRef, part_filename
from atlas.catalog.encoding import RecordEncoder, alike_arrays, encode_strings, is_internal_key
from atlas.catalog.layout import PartBuilder
from atlas.catalog.schemas import FLAG_SCHEMAS, SchemaInterner
from atlas.errors import InvalidArgumentError
from atlas.metadata import DatasetMeta, gc_paused

__all__ = [
    "BLOCK_ROWS",
    "DTYPE_CODES",
    "FloatStats",
    "KeyValues",
    "add_attribute_column",
    "add_attribute_values",
    "add_string_attribute",
    "record_block",
    "write_part",
]

_T, _V = operator.itemgetter("t"), operator.itemgetter("v")
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
_ARRAYS = operator.attrgetter("arrays")
_ID, _VERSION = operator.attrgetter("id"), operator.attrgetter("version")
_STATS_OF = operator.attrgetter("stats")
_FLOATS = ("float32", "float64")
#: Rows per record block: materialising one dataset decompresses one block.
BLOCK_ROWS = 256
#: Up to this many distinct attribute key orders, rows are transposed per order.
_MAX_ORDERS = 16
#: Rows whose attribute values are flattened and split at once: few enough that their
#: typed values stay in the CPU cache from one pass over them to the next (a part's
#: worth of them do not: 128 rather than 16 384 rows cut the split by about a fifth).
_SPLIT_ROWS = 128
#: Parts of up to this many rows pack every attribute map with the attribute columns.
_PREPACK_ROWS = 1 << 16
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


@dataclass(frozen=True)
class FloatStats:
    """The stats of the arrays of rows made alike (a float dtype), as the commit building
    the rows already has them, so that :func:`write_part` does not take them from every
    row again.

    ``arrays`` are the rows' arrays in row order (``alike_arrays(...)[2]`` of the
    rows' datasets) and the columns hold their stats, as their ``Stats`` objects
    say: ``cells`` per array, then per row null counts, minimums, maximums (float64;
    any value where there are none) and whether there are extremes.  The part
    writer uses them only for rows whose alike arrays are these very objects, in
    this order, each still holding the very ``Stats`` object it held when these
    were made (an array is mutable: a row changed in place since, as every change
    of an array's stats replaces its ``Stats`` object, is then written from what it
    holds).  The columns are made read-only.
    """

    arrays: tuple[Any, ...]
    cells: int
    nulls: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    extremes: np.ndarray
    #: the arrays' ``Stats`` objects when these were made (see :meth:`describes`)
    stats: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stats", tuple(map(_STATS_OF, self.arrays)))
        for column in (self.nulls, self.minimum, self.maximum, self.extremes):
            column.flags.writeable = False

    def columns(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(cells, null counts, minimums, maximums, has extremes)``."""
        return self.cells, self.nulls, self.minimum, self.maximum, self.extremes

    def describes(self, arrays: Sequence[Any]) -> bool:
        """Whether these are the stats of ``arrays``: the very objects, in this order,
        each still holding the ``Stats`` object it held when these were made."""
        return (len(arrays) == len(self.arrays) and all(map(operator.is_, arrays, self.arrays))
                and all(map(operator.is_, map(_STATS_OF, arrays), self.stats)))  # fmt: skip


def write_part(
    rows: Sequence[tuple[str, DatasetMeta | None]],
    codec: str,
    generation: int,
    token: bytes,
    float_stats: FloatStats | None = None,
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
    float_stats : FloatStats, optional
        The stats of the rows' arrays when the rows are made alike, as the caller
        has them (ignored unless they describe the rows' arrays).

    Returns
    -------
    (file name, buffers, PartRef)
        The file name inside ``catalog/``, the buffers to write in order (their
        concatenation is the file), and the entry for the commit object.
    """
    with gc_paused():  # millions of small objects alive: no collection passes over them meanwhile
        return _write_part(rows, codec, generation, token, float_stats)


def _write_part(
    rows: Sequence[tuple[str, DatasetMeta | None]],
    codec: str,
    generation: int,
    token: bytes,
    given: FloatStats | None,
) -> tuple[str, list[bytes | np.ndarray], PartRef]:
    rows = rows if isinstance(rows, list) else list(rows)
    names = list(map(_FIRST, rows))
    # A commit's rows come sorted by name: one C-level pass tells sorted and distinct.
    if all(map(operator.lt, names, itertools.islice(names, 1, None))):
        ordered = rows
    else:
        ordered = sorted(rows, key=_FIRST)
        names = list(map(_FIRST, ordered))
        if len(set(names)) != len(names):
            raise InvalidArgumentError("a catalogue part cannot hold two rows of one dataset name")
    builder = PartBuilder(generation, token, codec)
    n = len(ordered)
    metas = list(map(_SECOND, ordered))
    builder.add("name", encode_strings(names))
    tombstone = np.fromiter(map(operator.is_, metas, itertools.repeat(None)), dtype="u1", count=n)
    if tombstone.any():
        ids = np.fromiter((0 if m is None else m.id for m in metas), dtype="<u8", count=n)
        versions = np.fromiter((generation if m is None else m.version for m in metas), dtype="<u8", count=n)
    else:  # no tombstone: one C-level pass per column
        ids = np.fromiter(map(_ID, metas), dtype="<u8", count=n)
        versions = np.fromiter(map(_VERSION, metas), dtype="<u8", count=n)
    builder.add("id", ids, 8)
    builder.add("version", versions, 8)
    builder.add("tombstone", tombstone)
    # The attribute maps of a part of moderate size are packed with the attribute
    # columns (see _attribute_values); a larger one packs them block by block, so
    # as not to hold them all.
    packed: list[bytes] | None = [] if n <= _PREPACK_ROWS else None
    columns = _attribute_values([{} if m is None else m.attributes for m in metas], packed)
    # Rows made alike (a batch of new datasets) are told once for the part, not per block;
    # their float stats may come from the commit that made the rows.
    alike = alike_arrays(metas)
    float_stats = given.columns() if given is not None and alike is not None and given.describes(alike[2]) else None
    encode = RecordEncoder().encode_alike
    if packed is None or len(packed) != n:
        packed = None

    def block(start: int) -> bytes:
        span = slice(start, start + BLOCK_ROWS)
        known = None if alike is None else (alike[0], alike[1], alike[2][span])
        if known is not None and float_stats is not None:
            known += ((float_stats[0], *(column[span] for column in float_stats[1:])),)
        return record_block(encode(metas[span], None if packed is None else packed[span], known))

    builder.add("record_blocks", builder.add_blocks("records", map(block, range(0, n, BLOCK_ROWS))), 8)
    attributes = [[key, add_attribute_values(builder, i, n, columns[key])]
                  for i, key in enumerate(sorted(k for k in columns if not is_internal_key(k)))]  # fmt: skip
    per_array = {alike[1]: (list(range(n)), alike[2])} if alike is not None else _arrays_by_name(metas)
    arrays = [[name, _add_stats_group(builder, f"s{j}.", n, *per_array[name], float_stats)]
              for j, name in enumerate(sorted(per_array))]  # fmt: skip
    parts, size, index_offset, index_length, digest = builder.finish(n, BLOCK_ROWS, attributes, arrays)
    file = part_filename(generation, token)
    ref = PartRef(file, size, index_offset, index_length, digest, n, generation, generation)
    return file, parts, ref


def record_block(records: list[bytes]) -> bytes:
    """One decompressed record block: u32 offsets, then the records."""
    offsets = np.zeros(len(records) + 1, dtype="<u4")
    np.cumsum([len(r) for r in records], out=offsets[1:])
    return offsets.tobytes() + b"".join(records)


@dataclass
class KeyValues:
    """The values of one attribute key: the rows that have it (any order) and their values.

    ``types`` is the set of their dtype names, ``plain`` their values (``v``) per row,
    ``scalar`` False when one is a list or an n-d array; the typed values themselves
    are needed only for a blob column and are taken from ``source`` (each row's
    attribute dict) then.
    """

    key: str
    rows: np.ndarray
    types: set[str]
    plain: list[Any]
    scalar: bool
    source: list[dict[str, Any]]
    given: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, key: str, rows: np.ndarray, typed: list[dict[str, Any]]) -> KeyValues:
        """From the typed values of ``rows``."""
        scalar = set(map(len, typed)) <= {2}
        return cls(key, rows, set(map(_T, typed)), list(map(_V, typed)), scalar, [], typed)

    def typed(self) -> list[dict[str, Any]]:
        """The typed value of each row."""
        return self.given if self.given is not None else list(map(operator.itemgetter(self.key), self.source))


def _attribute_values(attrs: list[dict[str, Any]], packed: list[bytes] | None = None) -> dict[str, KeyValues]:
    """The :class:`KeyValues` of every attribute key of ``attrs`` (one dict per row).

    When ``packed`` is a list and every row holds its keys in one order, each row's
    attribute map is packed into it too (the record's ``attributes`` member), while
    the chunk of rows it belongs to is in the cache: packing the maps on their own
    fetches every typed value from memory a second time.

    Datasets made alike hold their keys in one order.  The typed values of the rows
    of one order are flattened row by row, in the order they were made, and split
    into types and values by C-level passes over that one list (in small chunks of
    rows, so the values stay in the cache between passes); each key is then a
    strided slice.  Passes per key over
    values scattered in memory (one per key and per field) cost several times more.
    Rows in many orders fall back to them.
    """
    n = len(attrs)
    # One key order for every row (the usual case) is checked chunk by chunk, so no
    # tuple per row is kept; comparing tuples is cheaper than hashing them.
    first = tuple(attrs[0]) if n else ()
    uniform = bool(n) and all(
        list(map(tuple, attrs[lo : lo + _SPLIT_ROWS])).count(first) == len(attrs[lo : lo + _SPLIT_ROWS])
        for lo in range(0, n, _SPLIT_ROWS)
    )
    orders = [] if uniform else list(map(tuple, attrs))
    distinct = ([first] if first else []) if uniform else [o for o in dict.fromkeys(orders) if o]
    if len(distinct) > _MAX_ORDERS:
        out = {}
        for key in set().union(*attrs):
            values = list(map(dict.get, attrs, itertools.repeat(key)))
            rows = np.flatnonzero(np.fromiter(map(operator.is_not, values, itertools.repeat(None)), bool, n))
            out[key] = KeyValues.of(key, rows, [values[r] for r in rows.tolist()])
        return out
    parts: dict[str, list[KeyValues]] = {}
    for order in distinct:
        if uniform:
            rows, group = np.arange(n), attrs
        else:
            rows = np.flatnonzero(np.fromiter(map(order.__eq__, orders), bool, n))
            group = [attrs[r] for r in rows.tolist()]
        step = len(order)
        found = [KeyValues(key, rows, set(), [], True, group) for key in order]
        pack = msgpack.Packer(use_bin_type=True).pack if uniform and packed is not None else None
        for lo in range(0, len(group), _SPLIT_ROWS):
            if pack is not None:
                packed += map(pack, group[lo : lo + _SPLIT_ROWS])
            flat = list(itertools.chain.from_iterable(map(dict.values, group[lo : lo + _SPLIT_ROWS])))
            # Three passes over the typed values (their sizes, types and values): each
            # key's types and values are strided slices, and it holds scalars only when
            # every one of its values has two members ("t" and "v"; lists and arrays
            # have more).  Should one lack either, each key is split on its own.
            sizes = list(map(len, flat))
            mixed = sizes.count(2) != len(sizes)
            try:
                types, values = list(map(_T, flat)), list(map(_V, flat))
            except KeyError:
                types = values = None
            for k, kv in enumerate(found):
                if types is not None:
                    kv.types.update(types[k::step])
                    kv.plain += values[k::step]
                    if mixed and kv.scalar:
                        kv.scalar = sizes[k::step].count(2) == len(sizes[k::step])
                else:
                    typed = flat[k::step]
                    kv.types.update(map(_T, typed))
                    kv.plain += map(_V, typed)
                    kv.scalar = kv.scalar and set(map(len, typed)) <= {2}
        for kv in found:
            parts.setdefault(kv.key, []).append(kv)
    return {key: kv[0] if len(kv) == 1 else _concat(kv) for key, kv in parts.items()}


def _concat(parts: list[KeyValues]) -> KeyValues:
    """One key's values over several key orders (made by the split, so from ``source``)."""
    def chain(field: str) -> list[Any]:
        return list(itertools.chain.from_iterable(getattr(p, field) for p in parts))

    rows = np.concatenate([p.rows for p in parts])
    types = set().union(*(p.types for p in parts))
    return KeyValues(parts[0].key, rows, types, chain("plain"), all(p.scalar for p in parts), chain("source"))


def add_attribute_column(builder: PartBuilder, i: int, column: np.ndarray) -> str:
    """Add the ``a{i}.*`` columns of one key from its typed values (object array, None = absent).

    Returns the column kind.
    """
    rows = np.flatnonzero(np.fromiter(map(operator.is_not, column, itertools.repeat(None)), bool, column.size))
    return add_attribute_values(builder, i, column.size, KeyValues.of("", rows, column[rows].tolist()))


def add_attribute_values(builder: PartBuilder, i: int, n: int, values: KeyValues) -> str:
    """Add the ``a{i}.*`` columns of one key in a part of ``n`` rows; returns the column kind."""
    rows = values.rows
    present = np.zeros(n, dtype="u1")
    present[rows] = 1
    builder.add(f"a{i}.present", present)
    types = values.types
    t = next(iter(types)) if len(types) == 1 and values.scalar else None
    if t == "string":
        add_string_attribute(builder, i, n, rows, values.plain)
        return "string"
    if t is not None:
        col = np.zeros(n, dtype=_COLUMN_DTYPE[t])
        col[rows] = values.plain
        builder.add(f"a{i}.values", col, col.itemsize)
        return t
    column = np.full(n, None, dtype=object)
    typed = values.typed()
    boxed = np.empty(len(typed), dtype=object)
    boxed[:] = typed
    column[rows] = boxed
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
    # One pass over the values (scattered in memory, so each visit costs): each gets
    # the position of its first occurrence, renumbered in sorted order afterwards.
    first: dict[str, int] = {}
    provisional = np.fromiter(map(first.setdefault, values, itertools.count()), dtype=np.int64, count=len(values))
    order = sorted(first)
    rank = np.zeros(len(values), dtype=np.int64)
    rank[np.fromiter(map(first.__getitem__, order), dtype=np.int64, count=len(order))] = np.arange(len(order))
    return order, rank[provisional]


#: The fields of an array, and of its stats, that the stats columns hold: taken from
#: every row in one pass (scattered objects are fetched from memory once, not once
#: per field).
_FIELDS = operator.attrgetter("slot", "dtype", "shape", "stats", "dims", "chunk_shape", "fill_value", "attributes")
_NF = 8
_STATS_FIELDS = operator.attrgetter("row_count", "null_count", "minimum", "maximum")
_U64 = 0xFFFFFFFFFFFFFFFF


def _arrays_by_name(metas: list[DatasetMeta | None]) -> dict[str, tuple[list[int], list[Any]]]:
    """``{array name: (rows, arrays)}`` of ``metas`` (rows ascending)."""
    live = metas if not any(map(operator.is_, metas, itertools.repeat(None))) else \
        [m for m in metas if m is not None]  # fmt: skip
    arrays = list(map(_ARRAYS, live))
    if arrays and list(map(len, arrays)).count(1) == len(arrays):
        # One array per dataset (datasets made alike): one name for all of them?
        names = list(itertools.chain.from_iterable(arrays))
        if names.count(names[0]) == len(names):
            rows = list(range(len(metas))) if len(live) == len(metas) else \
                [r for r, m in enumerate(metas) if m is not None]  # fmt: skip
            return {names[0]: (rows, list(itertools.chain.from_iterable(map(dict.values, arrays))))}
    out: dict[str, tuple[list[int], list[Any]]] = {}
    for row, m in enumerate(metas):
        if m is not None:
            for name, am in m.arrays.items():
                got = out.get(name)
                if got is None:
                    got = out[name] = ([], [])
                got[0].append(row)
                got[1].append(am)
    return out


def _add_stats_group(
    builder: PartBuilder, p: str, n: int, rows_of: list[int], ams: list[Any], float_stats: tuple | None = None
) -> int:
    """Add the ``s{j}.*`` columns of one array name from its rows and arrays; returns the flags.

    The fields are taken from every array by C-level passes and scattered with
    numpy: no Python step per row.  ``float_stats`` (:meth:`FloatStats.columns`), when
    given, are the stats of every row (of a float dtype), taken as they are.
    """
    m = len(ams)
    rows = np.asarray(rows_of, dtype=np.int64)
    fields = list(itertools.chain.from_iterable(map(_FIELDS, ams)))
    names, shapes, stats = fields[1::_NF], fields[2::_NF], fields[3::_NF]
    state = np.zeros(n, dtype="u1")
    slot, count, nulls = (np.zeros(n, dtype="<u8") for _ in range(3))
    code, ndim = np.zeros(n, dtype="u1"), np.zeros(n, dtype="u1")
    fmin, fmax = np.full(n, math.nan), np.full(n, math.nan)
    imin, imax = np.zeros(n, dtype="<u8"), np.zeros(n, dtype="<u8")
    schema, interner = np.zeros(n, dtype="<u4"), SchemaInterner()
    flags = FLAG_SCHEMAS
    slot[rows] = np.fromiter(fields[0::_NF], dtype="<u8", count=m)
    code[rows] = np.fromiter(map(_CODE.__getitem__, names), dtype="u1", count=m)
    ndim[rows] = np.fromiter(map(len, shapes), dtype="u1", count=m)
    extents = np.fromiter(itertools.chain.from_iterable(shapes), dtype="<u8")
    schema[rows] = _schema_codes(interner, ams, fields)
    state[rows] = NO_STATS
    smin: list[str] | None = None
    if float_stats is not None and m == n and names.count(names[0]) == m and names[0] in _FLOATS:
        # What the branch below gives for float stats of every row, without visiting them
        # (the arrays' dtype checked here too: an array object is mutable).
        cells, null_counts, lo, hi, ext = float_stats
        count[:] = cells
        nulls[:] = null_counts
        state[:] = np.where(ext, EXTREMES, NO_EXTREMES)
        fmin[ext], fmax[ext] = lo[ext], hi[ext]
        has = np.zeros(0, dtype=bool)
    else:
        has = np.fromiter(map(operator.is_not, stats, itertools.repeat(None)), dtype=bool, count=m)
    if has.any():
        at = np.flatnonzero(has)
        r = rows[at]
        got = list(itertools.chain.from_iterable(map(_STATS_FIELDS, itertools.compress(stats, has.tolist()))))
        count[r] = np.fromiter(got[0::4], dtype="<u8", count=at.size)
        nulls[r] = np.fromiter(got[1::4], dtype="<u8", count=at.size)
        lo, hi = got[2::4], got[3::4]
        ext = np.fromiter(map(operator.is_not, lo, itertools.repeat(None)), dtype=bool, count=at.size)
        ext &= np.fromiter(map(operator.is_not, hi, itertools.repeat(None)), dtype=bool, count=at.size)
        state[r] = np.where(ext, EXTREMES, NO_EXTREMES)
        if ext.any():
            if not ext.all():
                kept = ext.tolist()
                lo, hi, r = list(itertools.compress(lo, kept)), list(itertools.compress(hi, kept)), r[ext]
                at = at[ext]
            one = names[0] if names.count(names[0]) == m else None  # one dtype (datasets made alike)
            kinds = [one] * at.size if one is not None else [names[i] for i in at.tolist()]
            text = [one == "string"] * at.size if one is not None else list(map("string".__eq__, kinds))
            if any(text):
                flags |= FLAG_STRINGS
                smin, smax = [""] * n, [""] * n
                for row, a, b in zip(itertools.compress(r.tolist(), text), itertools.compress(lo, text),
                                     itertools.compress(hi, text)):  # fmt: skip
                    smin[row], smax[row] = a, b
            if not all(text):
                if any(text):
                    num = [not t for t in text]
                    lo, hi, kinds, r = (list(itertools.compress(x, num)) for x in (lo, hi, kinds, r.tolist()))
                fmin[r] = np.fromiter(map(float, lo), dtype=np.float64, count=len(r))
                fmax[r] = np.fromiter(map(float, hi), dtype=np.float64, count=len(r))
                exact = [one in _EXACT] * len(r) if one is not None else list(map(_EXACT.__contains__, kinds))
                if any(exact):
                    flags |= FLAG_EXACT
                    e = list(itertools.compress(r, exact)) if not all(exact) else r
                    imin[e] = np.fromiter(map(_U64.__and__, itertools.compress(lo, exact)), dtype="<u8", count=len(e))
                    imax[e] = np.fromiter(map(_U64.__and__, itertools.compress(hi, exact)), dtype="<u8", count=len(e))
    builder.add(p + "state", state)
    builder.add(p + "slot", slot, 8)
    builder.add(p + "dtype", code)
    builder.add(p + "row_count", count, 8)
    builder.add(p + "null_count", nulls, 8)
    builder.add(p + "min", fmin, 8)
    builder.add(p + "max", fmax, 8)
    builder.add(p + "ndim", ndim)
    builder.add(p + "extents", extents, 8)
    builder.add(p + "schema", schema, 4)
    builder.add(p + "schemas", interner.column())
    if flags & FLAG_EXACT:
        builder.add(p + "imin", imin, 8)
        builder.add(p + "imax", imax, 8)
    if smin is not None:
        builder.add(p + "smin", encode_strings(smin))
        builder.add(p + "smax", encode_strings(smax))
    return flags


def _schema_codes(interner: SchemaInterner, ams: list[Any], fields: list[Any]) -> np.ndarray:
    """The schema code of every array of ``ams``, as :meth:`SchemaInterner.code` in row order.

    ``fields`` are the arrays' :data:`_FIELDS`.  When they all have one dtype, dims
    and chunk shape, no fill value and no attributes, the interner is asked once.
    """
    m = len(ams)
    fills, dims, chunks = fields[6::_NF], fields[4::_NF], fields[5::_NF]
    names = fields[1::_NF]
    if (not any(fields[7::_NF]) and fills.count(None) == m and names.count(names[0]) == m
            and dims.count(dims[0]) == m and chunks.count(chunks[0]) == m):  # fmt: skip
        # One template for every row (datasets made alike): code 0.
        interner.code(ams[0])
        return np.zeros(m, dtype="<u4")
    if not any(fields[7::_NF]) and fills.count(None) == m:
        # No fill value nor attributes (datasets of one kind, their shapes differing):
        # dtype, dims and chunk shape make the template, as for the interner's memo.
        # The interner is asked once per distinct key, in order of first use (as
        # asking it row by row would), and each row looks its key up.
        keys = list(zip(names, dims, chunks))
        first = dict(zip(reversed(keys), range(m - 1, -1, -1)))  # the first row of each key
        codes = {key: interner.code(ams[first[key]]) for key in dict.fromkeys(keys)}
        return np.fromiter(map(codes.__getitem__, keys), dtype="<u4", count=m)
    return np.fromiter(map(interner.code, ams), dtype="<u4", count=m)
