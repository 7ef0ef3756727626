"""A handle's uncommitted changes over a committed table, and the table of a working state."""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from atlas.catalog import Catalog
from atlas.catalog.winners import runs_of
from atlas.errors import CorruptStoreError, UnknownColumnError
from atlas.metadata import ArrayMeta, DatasetMeta, Stats
from atlas.search.catalog_table import CatalogTable, catalog_table
from atlas.search.table import Column, DictTable, Table, missing_column, tidy

__all__ = ["OverlayTable", "table_of_state"]

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
        #: Every name whose base row a pending change replaces or deletes, sorted.
        self.changed = sorted(set(pending) | set(self.top.names))
        self._merged: list[str] | None = None
        self._order: np.ndarray | None = None
        self._runs: list[tuple[int, int, int]] | None = None  # see runs_of

    @functools.cached_property
    def _placement(self) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, int]:
        """``(keep, top_at, base_at, size)``: the base rows kept (None: all), where the
        pending and the kept rows go in name order, and the number of rows.

        Made on first use: a search by part (:mod:`atlas.search.parts`) needs
        only :attr:`top` and :attr:`changed`, not where every row goes.
        """
        base, changed = self.base, self.changed
        if isinstance(base, CatalogTable):
            at, there = base.catalog.locate_names(changed)
        else:
            listing = base.names
            at = np.fromiter((bisect.bisect_left(listing, x) for x in changed), np.int64, len(changed))
            hits = (i < len(listing) and listing[i] == x for i, x in zip(at.tolist(), changed))
            there = np.fromiter(hits, bool, len(changed))
        size = len(base)
        gone = at[there]  # ascending: the base rows the pending ones replace or delete
        keep = np.delete(np.arange(size), gone) if gone.size else None
        kept = size - gone.size
        where = dict(zip(changed, at.tolist()))
        top_at = np.array([where[x] for x in self.top.names], dtype=np.int64)
        ranks = top_at - np.searchsorted(gone, top_at)  # kept base rows before each pending one
        base_at = np.arange(kept) + np.cumsum(np.bincount(ranks, minlength=kept + 1))[:kept]
        return keep, np.arange(ranks.size) + ranks, base_at, kept + ranks.size

    @property
    def _keep(self) -> np.ndarray | None:
        return self._placement[0]

    @property
    def _top_at(self) -> np.ndarray:
        return self._placement[1]

    @property
    def _base_at(self) -> np.ndarray:
        return self._placement[2]

    @property
    def _size(self) -> int:
        return self._placement[3]

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

    @staticmethod
    def _side(table: Table, name: str) -> Column | None:
        """``table``'s column ``name``, or None when it has no such column."""
        try:
            return table.column(name)
        except UnknownColumnError:
            return None

    def attribute(self, key: str) -> Column:
        return self._merge(key)

    def stats(self, array: str, field: str) -> Column:
        return self._merge(f"{array}.{field}")

    def _merge(self, name: str) -> Column:
        low, high = self._side(self.base, name), self._side(self.top, name)
        # A side without the column (no pending dataset has the array, say) is all
        # missing in the other side's kind: it must not decide the kind.
        if low is None:
            low = missing_column(len(self.base), high.kind if high is not None else "object")
        if high is None:
            high = missing_column(len(self.top), low.kind)
        if self._keep is not None and low.objects is not None:
            # typed from mixed numbers over every base row: the rows pending changes
            # replace or delete must not decide the kind of the rows kept
            present = np.zeros_like(low.present)
            present[self._keep] = low.present[self._keep]
            low = tidy(low.objects, present)
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
