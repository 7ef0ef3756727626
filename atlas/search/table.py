"""The search table: one row per dataset, one lazily built numpy column per name.

A :class:`Table` has the sorted dataset names and two families of columns:

* **attribute columns**, one per dataset attribute key (internal keys of the
  xarray mapping excluded), typed when every dataset stores the key as one scalar
  dtype (see :class:`Column`);
* **stats columns** ``{array}.min``, ``.max``, ``.count`` (valid cells),
  ``.nulls`` and ``.shape``, from each array's recorded stats.

A column is built the first time a query or ``columns=`` names it, so a filter on
three keys of a store with thirty touches three.  This module holds the column
model and :class:`DictTable`, a table over datasets held in memory (a v1
manifest's, or a handle's pending ones); a format v2 catalogue's table is in
:mod:`atlas.search.catalog_table`, and a handle's pending changes over it in
:mod:`atlas.search.overlay` (:func:`~atlas.search.overlay.table_of_state`).
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from atlas import attributes, dtypes
from atlas.catalog import is_internal_key
from atlas.errors import UnknownColumnError
from atlas.metadata import ArrayMeta, DatasetMeta, Stats

__all__ = [
    "STATS_SUFFIXES",
    "Column",
    "DictTable",
    "Table",
    "kind_of",
    "missing_column",
    "stats_values",
    "tidy",
    "typed_column",
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
    A number column typed from mixed Python numbers keeps them in ``objects``, so
    that a subset of its rows can be typed again on their own (:func:`tidy`).
    """

    __slots__ = ("_values", "categories", "codes", "kind", "objects", "present")

    def __init__(
        self,
        values: np.ndarray | None,
        present: np.ndarray,
        kind: str,
        codes: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        objects: np.ndarray | None = None,
    ) -> None:
        self._values = values
        self.present = present
        self.kind = kind
        self.codes = codes
        self.categories = categories
        self.objects = objects

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


def kind_of(values: np.ndarray) -> str:
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
                return Column(out, present, "int", objects=values)
        out = np.full(values.size, np.nan)
        out[present] = [float(v) for v in vals]
        return Column(out, present, "float", objects=values)
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
        return Column(out, present, kind_of(out))
    out = np.full(n, None, dtype=object)
    boxed = np.empty(len(vals), dtype=object)
    boxed[:] = [attributes.to_python(v) for v in vals]
    out[idx] = boxed
    return tidy(out, present)


def stats_values(values: list[Any], dtype_names: set[str], n: int, idx: np.ndarray) -> Column:
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
        import difflib  # only for this message: not imported by every search

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
            "min": stats_values(lows, names, n, idx),
            "max": stats_values(highs, names, n, idx),
            "count": Column(count, counted, "int"),
            "nulls": Column(nulls, counted, "int"),
            "shape": Column(shapes, has, "shape"),
        }
