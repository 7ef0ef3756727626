"""The search table of a format v2 catalogue: columns read from its parts on first use."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from atlas.catalog import Catalog, is_internal_key
from atlas.catalog.part import PartReader
from atlas.search.table import Column, Table, kind_of, stats_values, tidy

__all__ = ["CatalogTable", "catalog_table"]

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
        # What searches by part (atlas.search.parts) keep for the next query: each
        # column's per-part columns, and the newer parts' name keys.
        self._part_columns: OrderedDict[tuple[str, str], list[Column | None]] = OrderedDict()
        self._part_keys: dict[int, np.ndarray | None] = {}

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
        kind = kind_of(values)
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

    def part_columns(
        self, what: str, name: str, read: Callable[[PartReader, str], Column | None]
    ) -> list[Column | None]:
        """Column ``name`` of each part on its own rows (None where a part lacks it), as
        ``read(reader, name)`` gives it: kept for the next queries (the
        :attr:`cached_columns` most recently used), under ``(what, name)``
        (``what`` tells an attribute from a stats column of the same name)."""
        got = self._part_columns.pop((what, name), None)
        if got is None:
            got = [read(reader, name) for reader in self.catalog.readers]
        self._part_columns[(what, name)] = got  # most recently used last
        while len(self._part_columns) > self.cached_columns:
            self._part_columns.popitem(last=False)
        return got

    def part_name_keys(self, p: int) -> np.ndarray | None:
        """Part ``p``'s name keys (:meth:`~atlas.catalog.part.PartReader.name_keys`),
        kept here for the next searches rather than by the part reader."""
        if p not in self._part_keys:
            reader = self.catalog.readers[p]
            self._part_keys[p] = reader.name_keys()
            reader.release_name_keys()
        return self._part_keys[p]

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
            return stats_values(exact[idx].tolist(), kinds, len(self), idx)
        low, ok = cat.stats_column(array, field)
        return Column(low, ok, "float")


_TABLES: weakref.WeakKeyDictionary[Catalog, CatalogTable] = weakref.WeakKeyDictionary()


def catalog_table(catalog: Catalog) -> CatalogTable:
    """The table of ``catalog``, shared by every query while the catalogue lives."""
    table = _TABLES.get(catalog)
    if table is None:
        table = _TABLES[catalog] = CatalogTable(catalog)
    return table
