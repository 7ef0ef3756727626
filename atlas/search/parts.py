"""A search of a catalogue of several parts, one part at a time.

A search of the merged table (:class:`~atlas.search.catalog_table.CatalogTable`)
first resolves, for every name of every part, which part's row wins, then
gathers each column it tests into name order.  Most rows fail most searches, so
:func:`search_parts` instead tests each part's rows on that part's own columns,
as stored, and resolves winners for the rows that match only: a matching row of
a part is kept when no newer part (nor a pending change of the handle) holds its
name, a membership test of the matched names' keys in the newer names' sorted
keys (:meth:`~atlas.catalog.part.PartReader.name_keys_of`).

The answer is the merged table's, row for row: the search runs this way only
when it cannot differ, that is when each column it tests has one kind in every
part and pending row that holds it (one dtype for numbers; strings; no stats
extremes of strings or timestamps), so that a row's test never depends on the
other rows.  Otherwise, and when names have no compact keys, it returns None
and the caller searches the merged table (which also gives the errors of
unknown columns).
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import numpy as np

from atlas.catalog import is_internal_key
from atlas.catalog.build import DTYPE_CODES, FLAG_EXACT, FLAG_STRINGS
from atlas.catalog.part import PartReader
from atlas.errors import CorruptStoreError
from atlas.search.catalog_table import CatalogTable
from atlas.search.overlay import OverlayTable
from atlas.search.predicates import Expression, Logic, Not, Predicate
from atlas.search.table import STATS_SUFFIXES, Column, DictTable, Table, kind_of, missing_column

__all__ = ["search_parts"]

#: Stats extremes of these dtypes are typed from all the rows together (not per part).
_MIXED_CODES = [DTYPE_CODES.index(d) for d in ("string", "timestamp_nanoseconds")]
_NAME_BYTES = 256  # longest pending name (UTF-8 bytes) held as a key, as parts' keys


class _Fallback(Exception):
    """The search must run over the merged table."""


def search_parts(table: Table, expr: Expression) -> list[str] | None:
    """The names of the datasets of ``table`` matching ``expr``, sorted, or None.

    None when ``table`` is not a catalogue (with or without pending changes) of
    several parts or with pending changes, or when the per-part search could
    differ from the merged one (see the module docstring): search the merged
    table then.
    """
    if isinstance(table, CatalogTable):
        base, top, changed = table, None, []
        if len(base.catalog.readers) < 2:  # one part is searched as stored already
            return None
    elif isinstance(table, OverlayTable) and isinstance(table.base, CatalogTable):
        base, top, changed = table.base, table.top, table.changed
    else:
        return None
    try:
        return _PartSearch(base, top, changed).run(expr)
    except _Fallback:
        return None


def _columns_of(expr: Expression) -> tuple[list[str], list[str]]:
    """The column names ``expr`` tests, and the array names it tests ``overlaps`` on."""
    columns: list[str] = []
    arrays: list[str] = []
    todo = [expr]
    while todo:
        item = todo.pop()
        if isinstance(item, Logic):
            todo.extend(item.items)
        elif isinstance(item, Not):
            todo.append(item.inner)
        elif isinstance(item, Predicate):
            if item.op == "overlaps":
                arrays.append(item.column)
                columns += [f"{item.column}.min", f"{item.column}.max"]
            else:
                columns.append(item.column)
        else:  # an expression type this search does not know
            raise _Fallback
    return columns, arrays


class _Segment(Table):
    """The rows of one part (or the pending rows) with the columns a search tests."""

    def __init__(self, size: int, columns: dict[str, Column], arrays: set[str]) -> None:
        super().__init__()
        self.size = size
        self._given = columns
        self._arrays = arrays

    def __len__(self) -> int:
        return self.size

    def column(self, name: str) -> Column:
        return self._given[name]

    def is_array(self, name: Any) -> bool:
        return name in self._arrays


class _PartSearch:
    """One search over ``readers`` (oldest first) and the pending rows ``top``."""

    def __init__(self, base: CatalogTable, top: DictTable | None, changed: list[str]) -> None:
        self.base = base
        self.readers = readers = base.catalog.readers
        self.top = top
        self.changed = changed
        self.tombs = [r.tombstones() for r in readers]
        self._shadows_of: dict[int, list[np.ndarray]] = {}
        # per column name: one column per part (None: the part lacks it) and the pending rows' column
        self._parts: dict[str, list[Column | None]] = {}
        self._tops: dict[str, Column | None] = {}
        self._kinds: dict[str, str] = {}

    # -- which names of newer parts hide a part's rows ----------------------------------------

    def _pending_keys(self) -> np.ndarray:
        encoded = []
        for name in self.changed:
            raw = name.encode("utf-8", "surrogatepass")
            if not raw or b"\0" in raw or len(raw) > _NAME_BYTES:
                raise _Fallback  # no key for it (as parts' names without keys)
            encoded.append(raw)
        return np.sort(np.array(encoded, dtype=bytes)) if encoded else np.zeros(0, dtype="S1")

    def _shadows(self, p: int) -> list[np.ndarray]:
        """Sorted keys of the names of each part newer than ``p`` and of the pending changes
        (tombstones included: they hide too); each array is searched on its own, not merged."""
        got = self._shadows_of.get(p)
        if got is None:
            if p == len(self.readers) - 1:
                got = [self._pending_keys()]
            else:
                keys = self.base.part_name_keys(p + 1)
                if keys is None:
                    raise _Fallback
                got = [*self._shadows(p + 1), keys]
            self._shadows_of[p] = got = [k for k in got if k.size]
        return got

    def _unhidden(self, p: int, rows: np.ndarray) -> np.ndarray:
        """The ``rows`` (ascending) of part ``p`` whose names no newer part or pending change has."""
        shadows = self._shadows(p)
        if not shadows or not rows.size:
            return rows
        keys = self.readers[p].name_keys_of(rows)  # checked ascending: the names too
        if keys is None:
            raise _Fallback
        keep = np.ones(rows.size, dtype=bool)
        for shadow in shadows:  # the shorter side binary-searched in the longer one
            if shadow.size < keys.size:
                at = np.minimum(np.searchsorted(keys, shadow), keys.size - 1)
                keep[at[keys[at] == shadow]] = False
            else:
                at = np.minimum(np.searchsorted(shadow, keys), shadow.size - 1)
                keep &= shadow[at] != keys
        return rows[keep]

    def _any_live(self, p: int, flags: np.ndarray) -> bool:
        """Whether a live row of part ``p`` (not a tombstone, not hidden) has ``flags`` set."""
        rows = np.flatnonzero(flags.view(bool) & ~self.tombs[p])
        if not rows.size:
            return False
        sample = rows[:: max(1, rows.size // 64)]  # most rows are live: a few decide it
        return bool(self._unhidden(p, sample).size or self._unhidden(p, rows).size)

    # -- the columns, one kind for all parts ----------------------------------------------------

    def _resolve(self, name: str) -> None:
        """Read ``name``'s column of every part (or refuse), as the merged table resolves it."""
        if name in self._kinds:
            return
        if not isinstance(name, str) or is_internal_key(name):
            raise _Fallback
        if not self._attribute(name):  # an attribute key shadows a stats column
            array, dot, field = name.rpartition(".")
            if not dot or field not in STATS_SUFFIXES or not self._has_array(array):
                raise _Fallback  # unknown: the merged table says so
            self._stats(name, array, field)

    def _attribute(self, key: str) -> bool:
        """Whether a live dataset has attribute ``key``; if so, its columns are recorded
        when every part and pending row holding a value holds one kind (one dtype)."""
        top = self.top.column(key) if self.top is not None and self.top.has_attribute(key) else None
        parts = self.base.part_columns("attribute", key, self._read_attribute)
        held = [c for c in [*parts, top] if c is not None and c.present.any()]
        live = top is not None or any(
            col is not None and self._any_live(p, col.present) for p, col in reversed(list(enumerate(parts)))
        )  # newest first: the newest part's rows are live unless a pending change hides them
        if not live:
            return False
        kinds = {(c.kind, None if c.kind == "string" else c.values.dtype) for c in held}
        if len(kinds) != 1 or held[0].kind == "object":
            raise _Fallback
        self._parts[key], self._tops[key], self._kinds[key] = parts, top, held[0].kind
        return True

    def _has_array(self, array: str) -> bool:
        if self.top is not None and self.top.has_array(array):
            return True
        for p in range(len(self.readers) - 1, -1, -1):
            got = self.readers[p].stats(array, "has")
            if got is not None and self._any_live(p, got[0]):
                return True
        return False

    @staticmethod
    def _read_attribute(reader: PartReader, key: str) -> Column | None:
        found = reader.attribute_kinds().get(key)
        if found is not None and found[1] == "blob":
            raise _Fallback  # lists, mixed values: typed from all the rows together
        return None if found is None else _part_attribute(reader, key)

    @staticmethod
    def _read_stats(reader: PartReader, name: str) -> Column | None:
        array, _, field = name.rpartition(".")
        group = reader.stats_groups().get(array)
        if group is None:
            return None
        if field in ("min", "max"):
            # Only integer, timestamp and string extremes set these flags (format v2
            # §4.4): without them the part has no string or timestamp extremes.
            if group[1] & (FLAG_EXACT | FLAG_STRINGS):
                codes = reader.extreme_dtypes(array)
                if codes is not None and np.isin(codes, _MIXED_CODES).any():
                    raise _Fallback
            low, ok = reader.stats(array, field)  # type: ignore[misc]
            return Column(low, ok, "float")
        if field == "shape":
            shapes, has = reader.stats(array, "shape")  # type: ignore[misc]
            return Column(shapes, has, "shape")
        rows, ok = reader.stats(array, "row_count")  # type: ignore[misc]
        nulls, _ = reader.stats(array, "null_count")  # type: ignore[misc]
        return Column(((rows - nulls) if field == "count" else nulls).astype(np.int64), ok, "int")

    def _stats(self, name: str, array: str, field: str) -> None:
        parts = self.base.part_columns("stats", name, self._read_stats)
        top = self.top.stats(array, field) if self.top is not None and self.top.has_array(array) else None
        kind = {"min": "float", "max": "float", "shape": "shape"}.get(field, "int")
        if top is not None and top.present.any() and top.kind != kind:
            raise _Fallback
        self._parts[name], self._tops[name], self._kinds[name] = parts, top, kind

    def _segment(self, size: int, cols: dict[str, Column | None], arrays: set[str]) -> _Segment:
        given = {}
        for name, col in cols.items():
            kind = self._kinds[name]
            given[name] = col if col is not None and col.present.any() else missing_column(size, kind)
        return _Segment(size, given, arrays)

    # -- the search ---------------------------------------------------------------------------

    def run(self, expr: Expression) -> list[str]:
        columns, arrays = _columns_of(expr)
        for array in arrays:
            if not self._has_array(array):
                raise _Fallback  # the merged table names the error
        for name in columns:
            self._resolve(name)
        arrays_set = set(arrays)
        found: list[list[str]] = []
        if self.top is not None and len(self.top):
            seg = self._segment(len(self.top), {n: self._tops[n] for n in columns}, arrays_set)
            top_names = self.top.names
            found.append([top_names[i] for i in np.flatnonzero(expr.mask(seg)).tolist()])
        for p in range(len(self.readers) - 1, -1, -1):
            reader = self.readers[p]
            seg = self._segment(reader.rows, {n: self._parts[n][p] for n in columns}, arrays_set)
            rows = self._unhidden(p, np.flatnonzero(expr.mask(seg) & ~self.tombs[p]))
            names = reader.names_of(rows)
            keyed = bool(self._shadows(p))  # _unhidden checked the keys of these rows (and more) ascending
            if not keyed and not all(map(operator.lt, names, itertools.islice(names, 1, None))):
                raise CorruptStoreError(f"{reader.where}: names are not sorted and distinct")
            found.append(names)
        found = [f for f in found if f]
        return found[0] if len(found) == 1 else sorted(itertools.chain.from_iterable(found))


def _part_attribute(reader: PartReader, key: str) -> Column:
    """Attribute ``key`` of every row of one part, as the merged table types it."""
    coded = reader.string_codes(key)
    if coded is not None:
        codes, dictionary, present = coded
        categories = dictionary if len(dictionary) else np.array([""], dtype=object)
        return Column(None, present.view(bool), "string", codes, categories)
    got = reader.attribute(key)
    assert got is not None  # the part lists the key
    _kind, values, present = got
    present = present.view(bool)
    kind = kind_of(values)
    if present.all() or kind not in ("float", "timestamp"):
        return Column(values, present, kind)
    values = values.astype("datetime64[ns]" if kind == "timestamp" else values.dtype, copy=True)
    values[~present] = np.datetime64("NaT") if kind == "timestamp" else np.nan
    return Column(values, present, kind)
