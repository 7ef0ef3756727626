"""The search table: one row per dataset, one lazily built numpy column per name.

A :class:`Table` has the sorted dataset names and two families of columns:

* **attribute columns**, one per dataset attribute key (internal keys of the
  xarray mapping excluded), typed when every dataset stores the key as one scalar
  dtype (see :class:`Column`);
* **stats columns** ``{array}.min``, ``.max``, ``.count`` (valid cells),
  ``.nulls`` and ``.shape``, from each array's recorded stats.

A column is built the first time a query or ``columns=`` names it, so a filter on
three keys of a store with thirty touches three.  Tables are built from a mapping
name -> :class:`~atlas.metadata.DatasetMeta` (the v1 manifest, or a handle's
pending datasets) or from a format v2 :class:`~atlas.catalog.Catalog` overlaid by
the handle's pending datasets (:func:`table_of_state`).
"""

from __future__ import annotations

import bisect
import difflib
import functools
import itertools
import operator
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from atlas import attributes, dtypes
from atlas.catalog import Catalog, is_internal_key
from atlas.catalog.winners import runs_of
from atlas.errors import CorruptStoreError, UnknownColumnError
from atlas.metadata import ArrayMeta, DatasetMeta, Stats

__all__ = [
    "STATS_SUFFIXES",
    "CatalogTable",
    "Column",
    "DictTable",
    "OverlayTable",
    "Table",
    "catalog_table",
    "table_of_state",
]

#: Stats column suffixes, in the order ``catalog()`` lists them.
STATS_SUFFIXES = ("min", "max", "count", "nulls", "shape")
_T, _V = operator.itemgetter("t"), operator.itemgetter("v")
_NAT = np.iinfo(np.int64).min
_is_not_none = functools.partial(operator.is_not, None)


class Column:
    """One column: ``values`` aligned to the table's names and ``present`` (False = missing).

    ``kind`` is ``int``, ``uint``, ``float``, ``bool`` (numpy arrays of that kind,
    missing rows hold a zero or NaN placeholder), ``timestamp`` (``datetime64[ns]``,
    NaT where missing), ``string`` (object array of ``str``, None where missing),
    ``object`` (lists, arrays, mixed types: object array, None where missing) or
    ``shape`` (tuples).

    A string column read from a catalogue is held dictionary-coded: ``codes``
    index ``categories`` (placeholders where missing) and ``values`` is built
    from them only when asked for; searches compare ``categories`` once instead.
    """

    __slots__ = ("_values", "categories", "codes", "kind", "present")

    def __init__(
        self,
        values: np.ndarray | None,
        present: np.ndarray,
        kind: str,
        codes: np.ndarray | None = None,
        categories: np.ndarray | None = None,
    ) -> None:
        self._values = values
        self.present = present
        self.kind = kind
        self.codes = codes
        self.categories = categories

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            assert self.codes is not None and self.categories is not None
            values = self.categories[self.codes]
            values[~self.present] = None
            self._values = values
        return self._values

    def take(self, idx: np.ndarray) -> Column:
        if self._values is None:
            assert self.codes is not None
            return Column(None, self.present[idx], self.kind, self.codes[idx], self.categories)
        return Column(self.values[idx], self.present[idx], self.kind)


def _kind_of(values: np.ndarray) -> str:
    return {"i": "int", "u": "uint", "f": "float", "b": "bool", "M": "timestamp"}.get(values.dtype.kind, "object")


def missing_column(n: int, kind: str = "object") -> Column:
    """A column of ``n`` missing rows of ``kind``."""
    if kind == "float":
        values = np.full(n, np.nan)
    elif kind == "timestamp":
        values = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    elif kind in ("int", "uint", "bool"):
        values = np.zeros(n, dtype={"int": np.int64, "uint": np.uint64, "bool": bool}[kind])
    else:
        values = np.full(n, None, dtype=object)
    return Column(values, np.zeros(n, dtype=bool), kind)


def tidy(values: np.ndarray, present: np.ndarray) -> Column:
    """Type an object column: all strings -> ``string``, all numbers -> int64/float64."""
    vals = values[present].tolist()
    types = set(map(type, vals))
    if types and types <= {str}:
        return Column(values, present, "string")
    if types and all(issubclass(t, (int, float, np.integer, np.floating)) and not issubclass(t, (bool, np.bool_))
                     for t in types):  # fmt: skip
        if all(issubclass(t, (int, np.integer)) for t in types):
            lo, hi = min(vals), max(vals)
            if lo >= -(2**63) and hi < 2**63:
                out = np.zeros(values.size, dtype=np.int64)
                out[present] = vals
                return Column(out, present, "int")
        out = np.full(values.size, np.nan)
        out[present] = [float(v) for v in vals]
        return Column(out, present, "float")
    values = values.copy()
    values[~present] = None
    return Column(values, present, "object")


def typed_column(typed: list[Any]) -> Column:
    """A column from typed attribute values (``{"t", "v"...}`` dicts, None = absent), one per row."""
    n = len(typed)
    present = np.fromiter(map(_is_not_none, typed), dtype=bool, count=n)
    idx = np.flatnonzero(present)
    vals = typed if idx.size == n else [typed[i] for i in idx.tolist()]
    kinds = set(map(_T, vals))
    if len(kinds) == 1 and set(map(len, vals)) == {2}:  # scalars: {"t", "v"}, no "k"
        t = kinds.pop()
        raw = list(map(_V, vals))
        if t == "string":
            out = np.full(n, None, dtype=object)
            out[idx] = raw
            return Column(out, present, "string")
        if t == "timestamp_nanoseconds":
            ns = np.full(n, _NAT, dtype=np.int64)
            ns[idx] = raw
            return Column(ns.view("datetime64[ns]"), present, "timestamp")
        if t == "bool":
            out = np.zeros(n, dtype=bool)
        elif dtypes.is_float(t):
            out = np.full(n, np.nan, dtype=dtypes.storage_dtype(t))
        else:
            out = np.zeros(n, dtype=dtypes.storage_dtype(t).newbyteorder("="))
        out[idx] = raw
        return Column(out, present, _kind_of(out))
    out = np.full(n, None, dtype=object)
    boxed = np.empty(len(vals), dtype=object)
    boxed[:] = [attributes.to_python(v) for v in vals]
    out[idx] = boxed
    return tidy(out, present)


def _stats_values(values: list[Any], dtype_names: set[str], n: int, idx: np.ndarray) -> Column:
    """A min/max column from normalised stats scalars of rows ``idx``."""
    present = np.zeros(n, dtype=bool)
    present[idx] = True
    if dtype_names == {"timestamp_nanoseconds"}:
        ns = np.full(n, _NAT, dtype=np.int64)
        ns[idx] = values
        return Column(ns.view("datetime64[ns]"), present, "timestamp")
    if not dtype_names & {"string", "timestamp_nanoseconds"}:
        out = np.full(n, np.nan)
        out[idx] = [float(v) for v in values]
        return Column(out, present, "float")
    out = np.full(n, None, dtype=object)
    boxed = np.empty(len(values), dtype=object)
    boxed[:] = values
    out[idx] = boxed
    return tidy(out, present)


class Table:
    """Dataset names plus columns built on first use (see the module docstring)."""

    names: list[str]

    def __init__(self) -> None:
        self._columns: dict[str, Column] = {}

    # Sources implement these four.
    def attribute_keys(self) -> list[str]:
        raise NotImplementedError

    def array_names(self) -> list[str]:
        raise NotImplementedError

    def attribute(self, key: str) -> Column:
        raise NotImplementedError

    def stats(self, array: str, field: str) -> Column:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names)

    def names_at(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The names of ``rows`` (as :func:`~atlas.search.select` returns them)."""
        names = self.names
        return [names[i] for i in np.asarray(rows, dtype=np.int64).tolist()]

    def names_array(self) -> np.ndarray:
        """``names`` as a new object array (the caller owns it)."""
        out = np.empty(len(self.names), dtype=object)
        out[:] = self.names
        return out

    def column_names(self) -> list[str]:
        """Every column: attribute keys, then each array's stats columns."""
        out = list(self.attribute_keys())
        for array in self.array_names():
            out.extend(f"{array}.{s}" for s in STATS_SUFFIXES)
        return out

    def resolve(self, name: Any) -> tuple[str, str] | tuple[str, str, str]:
        """``("attribute", key)`` or ``("stats", array, field)`` for a column name.

        An attribute key shadows a stats column of the same name.

        Raises
        ------
        UnknownColumnError
            For a name that is neither, listing close matches.
        """
        if isinstance(name, str) and not is_internal_key(name):
            if self.has_attribute(name):
                return ("attribute", name)
            array, dot, field = name.rpartition(".")
            if dot and field in STATS_SUFFIXES and self.has_array(array):
                return ("stats", array, field)
        raise UnknownColumnError(self._unknown(name))

    def _unknown(self, name: Any) -> str:
        if not isinstance(name, str):
            return f"a column name must be a str, not {type(name).__name__}"
        choices = self.column_names()
        close = difflib.get_close_matches(name, choices, n=5, cutoff=0.6)
        if not close and "." not in name and self.has_array(name):
            close = [f"{name}.{s}" for s in STATS_SUFFIXES]
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        return f"no column {name!r:.200} in this store{hint}"

    def has_attribute(self, key: str) -> bool:
        """Whether some dataset has attribute ``key`` (internal keys excluded)."""
        return key in self._attribute_set()

    def has_array(self, name: str) -> bool:
        """Whether some dataset has array ``name``."""
        return name in self._array_set()

    def _attribute_set(self) -> set[str]:
        if not hasattr(self, "_attr_set"):
            self._attr_set = set(self.attribute_keys())
        return self._attr_set

    def _array_set(self) -> set[str]:
        if not hasattr(self, "_arr_set"):
            self._arr_set = set(self.array_names())
        return self._arr_set

    #: Most columns kept built (None: all); a table cached across queries bounds its memory.
    cached_columns: int | None = None

    def column(self, name: str) -> Column:
        """The column ``name`` (built once, then cached)."""
        col = self._columns.pop(name, None)
        if col is None:
            where = self.resolve(name)
            col = self.attribute(where[1]) if where[0] == "attribute" else self.stats(where[1], where[2])
        self._columns[name] = col  # most recently used last
        if self.cached_columns is not None:
            while len(self._columns) > self.cached_columns:
                del self._columns[next(iter(self._columns))]
        return col

    def is_array(self, name: Any) -> bool:
        return isinstance(name, str) and self.has_array(name)


class DictTable(Table):
    """A table over a mapping name -> :class:`~atlas.metadata.DatasetMeta`."""

    def __init__(
        self,
        datasets: Mapping[str, DatasetMeta],
        fresh_stats: Callable[[str, ArrayMeta, str], Stats | None] | None = None,
        dirty: Collection[str] = (),
    ) -> None:
        super().__init__()
        self.names = sorted(datasets)
        self._metas = [datasets[n] for n in self.names]
        self._attrs = [m.attributes for m in self._metas]
        self._stats: dict[str, dict[str, Column]] = {}
        # Stats of arrays with uncommitted writes are computed by the handle
        # (``WorkingState.array_stats``): the records hold the committed ones.
        self._fresh = fresh_stats
        self._dirty = frozenset(dirty) if fresh_stats is not None else frozenset()

    def attribute_keys(self) -> list[str]:
        keys = set().union(*(m.attributes for m in self._metas)) if self._metas else set()
        return sorted(k for k in keys if not is_internal_key(k))

    def array_names(self) -> list[str]:
        return sorted(set().union(*(m.arrays for m in self._metas))) if self._metas else []

    def has_attribute(self, key: str) -> bool:
        return any(key in a for a in self._attrs) and not is_internal_key(key)

    def has_array(self, name: str) -> bool:
        return any(name in m.arrays for m in self._metas)

    def attribute(self, key: str) -> Column:
        return typed_column(list(map(dict.get, self._attrs, itertools.repeat(key))))

    def stats(self, array: str, field: str) -> Column:
        cols = self._stats.get(array)
        if cols is None:
            cols = self._stats[array] = self._array_stats(array)
        return cols[field]

    def _array_stats(self, array: str) -> dict[str, Column]:
        n = len(self._metas)
        per_row = [m.arrays.get(array) for m in self._metas]
        found = [(r, am) for r, am in enumerate(per_row) if am is not None]
        has = np.zeros(n, dtype=bool)
        shapes = np.full(n, None, dtype=object)
        counted = np.zeros(n, dtype=bool)
        count, nulls = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        ext_rows, lows, highs, names = [], [], [], set()
        for r, am in found:
            has[r] = True
            shapes[r] = tuple(am.shape)
            name = self.names[r]
            st = self._fresh(array, am, name) if name in self._dirty else am.stats  # type: ignore[misc]
            if st is None:
                continue
            counted[r] = True
            count[r], nulls[r] = st.row_count - st.null_count, st.null_count
            if st.minimum is not None and st.maximum is not None:
                ext_rows.append(r)
                lows.append(st.minimum)
                highs.append(st.maximum)
                names.add(am.dtype)
        idx = np.asarray(ext_rows, dtype=np.int64)
        return {
            "min": _stats_values(lows, names, n, idx),
            "max": _stats_values(highs, names, n, idx),
            "count": Column(count, counted, "int"),
            "nulls": Column(nulls, counted, "int"),
            "shape": Column(shapes, has, "shape"),
        }


class CatalogTable(Table):
    """A table over a format v2 :class:`~atlas.catalog.Catalog` (columns read per use).

    A catalogue is one immutable commit, so :func:`catalog_table` keeps one table
    per catalogue and its most recently used columns for the next query.  The
    names are decoded only when a caller needs all of them (:attr:`names`); a
    search asks for those of its result rows (:meth:`names_at`).
    """

    cached_columns = 8

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog
        self._names: list[str] | None = None
        self._checked: dict[str, Column] = {}

    @property  # type: ignore[override]
    def names(self) -> list[str]:
        if self._names is None:
            self._names = self.catalog.names()
        return self._names

    def __len__(self) -> int:
        return len(self.catalog)

    def names_at(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        return self.catalog.names_at(rows)

    def names_array(self) -> np.ndarray:
        return self.catalog.names_array()  # without copying the names list first

    def attribute_keys(self) -> list[str]:
        return self.catalog.attribute_keys()

    def array_names(self) -> list[str]:
        return self.catalog.array_names()

    # Resolving a name checks only that name's column (which the query then uses),
    # not the presence column of every key of every part.
    def has_attribute(self, key: str) -> bool:
        if is_internal_key(key) or not self.catalog.lists_attribute(key):
            return False
        col = self._checked.get(key)
        if col is None:
            if len(self._checked) >= self.cached_columns:  # checked but never used (a failed query)
                self._checked.clear()
            col = self._checked[key] = self._read_attribute(key)
        return bool(col.present.any())

    def has_array(self, name: str) -> bool:
        return self.catalog.has_array(name)

    def attribute(self, key: str) -> Column:
        col = self._checked.pop(key, None)
        return col if col is not None else self._read_attribute(key)

    def _read_attribute(self, key: str) -> Column:
        coded = self.catalog.string_column(key)
        if coded is not None:
            codes, categories, present = coded
            return Column(None, present, "string", codes, categories)
        values, present = self.catalog.column(key)
        present = np.asarray(present, dtype=bool)
        kind = _kind_of(values)
        if kind == "object":
            return tidy(values, present)
        if present.all():
            return Column(values, present, kind)
        if kind == "timestamp":
            values = values.astype("datetime64[ns]", copy=True)
            values[~present] = np.datetime64("NaT")
        elif kind == "float":
            values = values.copy()
            values[~present] = np.nan
        return Column(values, present, kind)

    def stats(self, array: str, field: str) -> Column:
        cat = self.catalog
        if field in ("count", "nulls"):
            rows, ok = cat.stats_column(array, "row_count")
            nulls, _ = cat.stats_column(array, "null_count")
            values = (rows - nulls) if field == "count" else nulls
            return Column(values.astype(np.int64), ok, "int")
        if field == "shape":
            values, ok = cat.stats_column(array, "shape")
            return Column(values, ok, "shape")
        kinds = cat.stats_dtypes(array)
        if kinds & {"string", "timestamp_nanoseconds"}:
            exact, ok = cat.stats_column(array, f"{field}_exact")
            idx = np.flatnonzero(ok)
            return _stats_values(exact[idx].tolist(), kinds, len(self), idx)
        low, ok = cat.stats_column(array, field)
        return Column(low, ok, "float")


def _concat(a: Column, b: Column) -> Column:
    """Rows of ``a`` then rows of ``b``, in one kind (numbers as int64 if they fit, else float64; else objects)."""
    if a.kind != b.kind:
        if not a.present.any():
            a = missing_column(a.present.size, b.kind)
        elif not b.present.any():
            b = missing_column(b.present.size, a.kind)
    present = np.concatenate([a.present, b.present])
    if a.kind == b.kind == "string" and (a.codes is not None or b.codes is not None):
        a, b = _coded(a), _coded(b)  # a catalogue's strings stay coded under pending rows
        codes = np.concatenate([a.codes.astype(np.int64), b.codes.astype(np.int64) + a.categories.size])  # type: ignore[union-attr]
        return Column(None, present, "string", codes, np.concatenate([a.categories, b.categories]))  # type: ignore[list-item]
    if a.kind == b.kind:
        return Column(np.concatenate([a.values, b.values]), present, a.kind)
    if {a.kind, b.kind} == {"int", "uint"} and all(_fits_int64(c) for c in (a, b)):
        # as tidy() types a mix of signed and unsigned integers: exact int64 when they fit
        return Column(np.concatenate([a.values.astype(np.int64), b.values.astype(np.int64)]), present, "int")
    if {a.kind, b.kind} <= {"int", "uint", "float"}:
        values = np.concatenate([a.values.astype(np.float64), b.values.astype(np.float64)])
        values[~present] = np.nan  # a float column's missing rows hold NaN (an integer side's hold 0)
        return Column(values, present, "float")
    values = np.empty(present.size, dtype=object)
    values[: a.values.size] = list(a.values)
    values[a.values.size :] = list(b.values)
    return tidy(values, present)


def _fits_int64(col: Column) -> bool:
    """True when the present values of an integer column are all below 2**63."""
    return col.kind == "int" or not col.present.any() or int(col.values[col.present].max()) < 2**63


def _coded(col: Column) -> Column:
    """A string column in the coded form (each row its own category when it was not)."""
    if col.codes is not None:
        return col
    categories = col.values.copy()
    categories[~col.present] = ""
    return Column(None, col.present, "string", np.arange(categories.size), categories)


class OverlayTable(Table):
    """``base`` with the rows of ``pending`` (name -> dataset, or None when deleted) replacing its own.

    The changed names are located in the base by binary search (a catalogue's
    names are not decoded for it), so the merged order costs a few vectorised
    passes instead of sorting every name.
    """

    def __init__(self, base: Table, pending: Mapping[str, DatasetMeta | None], top: DictTable | None = None) -> None:
        super().__init__()
        self.base = base
        self.top = top if top is not None else DictTable({k: v for k, v in pending.items() if v is not None})
        changed = sorted(set(pending) | set(self.top.names))
        if isinstance(base, CatalogTable):
            at, there = base.catalog.locate_names(changed)
        else:
            listing = base.names
            at = np.fromiter((bisect.bisect_left(listing, x) for x in changed), np.int64, len(changed))
            hits = (i < len(listing) and listing[i] == x for i, x in zip(at.tolist(), changed))
            there = np.fromiter(hits, bool, len(changed))
        size = len(base)
        gone = at[there]  # ascending: the base rows the pending ones replace or delete
        self._keep: np.ndarray | None = np.delete(np.arange(size), gone) if gone.size else None
        kept = size - gone.size
        where = dict(zip(changed, at.tolist()))
        top_at = np.array([where[x] for x in self.top.names], dtype=np.int64)
        ranks = top_at - np.searchsorted(gone, top_at)  # kept base rows before each pending one
        self._top_at = np.arange(ranks.size) + ranks
        self._base_at = np.arange(kept) + np.cumsum(np.bincount(ranks, minlength=kept + 1))[:kept]
        self._size = kept + ranks.size
        self._merged: list[str] | None = None
        self._order: np.ndarray | None = None
        self._runs: list[tuple[int, int, int]] | None = None  # see runs_of

    @property  # type: ignore[override]
    def names(self) -> list[str]:
        if self._merged is None:
            self._merged = self.names_array().tolist()
        return self._merged

    def names_array(self) -> np.ndarray:
        out = np.empty(self._size, dtype=object)
        base = self.base.names_array()
        out[self._base_at] = base if self._keep is None else base[self._keep]
        out[self._top_at] = self.top.names
        return out

    def __len__(self) -> int:
        return self._size

    def names_at(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        if self._merged is not None:
            return super().names_at(rows)
        pos = np.asarray(rows, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < -self._size or pos.max() >= self._size):
            raise IndexError(f"row out of range for {self._size} datasets")
        pos = pos % max(self._size, 1)
        before = np.searchsorted(self._top_at, pos)  # pending rows before each position
        on_top = np.zeros(pos.size, dtype=bool)
        if self._top_at.size:
            on_top = self._top_at[np.minimum(before, self._top_at.size - 1)] == pos
        kept = pos[~on_top] - before[~on_top]
        out = np.empty(pos.size, dtype=object)
        out[~on_top] = self.base.names_at(kept if self._keep is None else self._keep[kept])
        top = self.top.names
        out[on_top] = [top[i] for i in before[on_top].tolist()]
        names = out.tolist()
        if np.all(pos[1:] > pos[:-1]) and not all(map(operator.lt, names, itertools.islice(names, 1, None))):
            raise CorruptStoreError("catalogue names are not sorted and distinct")
        return names

    def attribute_keys(self) -> list[str]:
        base = self._live_keys(self.base.attribute_keys(), self.base.attribute)
        return sorted(base | set(self.top.attribute_keys()))

    def array_names(self) -> list[str]:
        base = self._live_keys(self.base.array_names(), lambda a: self.base.stats(a, "shape"))
        return sorted(base | set(self.top.array_names()))

    # Resolving one name looks at that name only (not at every key and array).
    def has_attribute(self, key: str) -> bool:
        if self.top.has_attribute(key):
            return True
        if not self.base.has_attribute(key):
            return False
        return self._keep is None or bool(self.base.column(key).present[self._keep].any())

    def has_array(self, name: str) -> bool:
        if self.top.has_array(name):
            return True
        if not self.base.has_array(name):
            return False
        if self._keep is None:
            return True
        if isinstance(self.base, CatalogTable):
            defined = self.base.catalog.stats_column(name, "slot")[1]
        else:
            defined = self.base.stats(name, "shape").present
        return bool(defined[self._keep].any())

    def _live_keys(self, keys: list[str], column: Any) -> set[str]:
        if self._keep is None:
            return set(keys)
        # A key only the replaced rows had is gone (its column would be all missing).
        return {k for k in keys if column(k).present[self._keep].any()}

    def _side(self, table: Table, name: str, rows: np.ndarray | None) -> Column:
        try:
            col = table.column(name)
        except UnknownColumnError:
            return missing_column(len(table) if rows is None else rows.size)
        return col if rows is None else col.take(rows)

    def attribute(self, key: str) -> Column:
        return self._merge(key)

    def stats(self, array: str, field: str) -> Column:
        return self._merge(f"{array}.{field}")

    def _merge(self, name: str) -> Column:
        low = self._side(self.base, name, None)
        high = self._side(self.top, name, None)
        kept = low.present if self._keep is None else low.present[self._keep]
        # as _concat decides: a side without values takes the other's kind
        kind = low.kind if low.kind == high.kind else high.kind if not kept.any() else None
        if kind is None and not high.present.any():
            kind = low.kind
        if kind is not None:
            # One kind: the kept base rows are copied in place (long runs between
            # the pending rows) and the pending rows set after them.
            low = low if low.kind == kind else missing_column(low.present.size, kind)
            high = high if high.kind == kind else missing_column(high.present.size, kind)
            present = self._assemble(low.present, high.present)
            if kind == "string" and (low.codes is not None or high.codes is not None):
                low, high = _coded(low), _coded(high)
                offset = low.categories.size  # type: ignore[union-attr]
                codes = self._assemble(low.codes.astype(np.int64), high.codes.astype(np.int64) + offset)  # type: ignore[union-attr]
                return Column(None, present, kind, codes, np.concatenate([low.categories, high.categories]))  # type: ignore[list-item]
            return Column(self._assemble(low.values, high.values), present, kind)
        if self._order is None:  # merged row -> row of (kept base rows, then pending rows)
            order = np.empty(self._size, dtype=np.int64)
            order[self._base_at] = np.arange(self._base_at.size)
            order[self._top_at] = self._base_at.size + np.arange(self._top_at.size)
            self._order = order
        return _concat(low if self._keep is None else low.take(self._keep), high).take(self._order)

    def _assemble(self, base: np.ndarray, top: np.ndarray) -> np.ndarray:
        """The merged column: ``base`` (every base row) at the kept rows' places, ``top`` at the pending ones'."""
        out = np.empty(self._size, dtype=np.result_type(base, top))
        if self._runs is None:
            rows = np.arange(base.size) if self._keep is None else self._keep
            self._runs = runs_of(rows, self._base_at)
        if self._runs:
            for at, row, length in self._runs:
                out[at : at + length] = base[row : row + length]
        else:
            out[self._base_at] = base if self._keep is None else base[self._keep]
        out[self._top_at] = top
        return out


_TABLES: weakref.WeakKeyDictionary[Catalog, CatalogTable] = weakref.WeakKeyDictionary()


def catalog_table(catalog: Catalog) -> CatalogTable:
    """The table of ``catalog``, shared by every query while the catalogue lives."""
    table = _TABLES.get(catalog)
    if table is None:
        table = _TABLES[catalog] = CatalogTable(catalog)
    return table


def table_of_state(state: Any) -> Table:
    """The search table of a handle's working state, pending changes included.

    With a format v2 catalogue (``state.catalog``), the committed rows come from
    its columns and the datasets the handle changed (``state.dirty``) replace
    theirs; otherwise (a v1 manifest) every dataset comes from ``state.items()``.  Stats of
    arrays with uncommitted writes are what a flush would record.
    """
    dirty = set(state.dirty)

    def fresh(array: str, meta: ArrayMeta, name: str) -> Stats | None:
        return state.array_stats(array, meta, f"dataset {name!r} array {array!r}")

    catalog = getattr(state, "catalog", None)
    if isinstance(catalog, Catalog):
        if not dirty:
            return catalog_table(catalog)
        pending = dict(state.pending)
        live = {k: v for k, v in pending.items() if v is not None}
        return OverlayTable(catalog_table(catalog), pending, DictTable(live, fresh, dirty))
    return DictTable(dict(state.items()), fresh, dirty)  # a v1 manifest: its datasets are in memory
