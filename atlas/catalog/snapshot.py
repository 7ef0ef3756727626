"""A catalogue snapshot: the datasets of one commit, read lazily from its parts.

Making a :class:`Catalog` reads nothing.  Point lookups (``get``, ``in``) read the
names column of the parts, newest first, and decode one record block.  A search
needs, per part, the rows that are live (for each name the row of the newest
part wins and a tombstone hides the name) and their positions in name order
(:mod:`atlas.catalog.winners`): search columns then come out aligned to
``names()`` without a Python object per dataset, used as stored when one part
has every row live, and only the names a search returns are decoded
(:meth:`Catalog.names_at`).  Listing (``names``) decodes and checks them all.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np

from atlas.catalog.build import DTYPE_CODES
from atlas.catalog.commit import PartRef
from atlas.catalog.encoding import is_internal_key
from atlas.catalog.part import PartReader, ReadRange
from atlas.catalog.winners import (  # noqa: F401 - merge_positions, merge_sorted, winning_rows: merging's
    RowNames,
    live_rows,
    merge_positions,
    merge_sorted,
    row_positions,
    runs_of,
    winning_rows,
)
from atlas.errors import CorruptStoreError, DatasetNotFoundError
from atlas.metadata import ArrayMeta, DatasetMeta

__all__ = ["STATS_FIELDS", "Catalog"]

#: The fields :meth:`Catalog.stats_column` knows.
STATS_FIELDS = ("slot", "dtype", "row_count", "null_count", "min", "max", "min_exact", "max_exact", "shape")
#: Binary-searching a large oldest part for a name of a newer part costs about as
#: much as decoding this many of its names; below that many newer rows per oldest
#: row, a search does not decode the oldest part's names.
_LOOKUPS_PER_ROW = 100
_OBJECT_FIELDS = frozenset(("dtype", "min_exact", "max_exact", "shape"))
#: Attribute dtypes ``get_attribute`` returns as plain Python values.
_PLAIN = frozenset(("int64", "float64", "bool", "string"))


class Catalog:
    """The live datasets of one commit, over its ordered catalogue parts.

    Parameters
    ----------
    parts : sequence of PartRef
        The commit object's ``parts``, oldest first.
    read_range : callable
        ``read_range(path, offset, length) -> bytes`` for store-relative paths;
        e.g. ``lambda p, o, n: backend.get_ranges(p, [o], [n])[0]``.
    cached_blocks : int
        How many decoded record blocks to keep (each holds up to 256 records).
    previous : Catalog, optional
        An earlier snapshot of the same store whose part readers (and what they
        have read) are shared for the parts both list.

    Notes
    -----
    Attribute keys of the xarray mapping (``_atlas_xarray...``) are kept in the
    records, so :meth:`get` returns them, but they have no search column:
    :meth:`attribute_keys` does not list them and :meth:`column` refuses them.
    """

    def __init__(
        self, parts: Sequence[PartRef], read_range: ReadRange, cached_blocks: int = 8, previous: Catalog | None = None
    ) -> None:
        self.parts = list(parts)
        # Parts are immutable: a part the previous snapshot already read (its index,
        # its decoded names) is not read again, so a commit's next snapshot costs
        # only the parts it added.
        known = {r.ref: r for r in previous._readers} if previous is not None else {}
        self._readers = [known.get(ref) or PartReader(ref, read_range) for ref in self.parts]
        self._blocks: OrderedDict[tuple[int, int], tuple[np.ndarray, bytes]] = OrderedDict()
        self._cached_blocks = max(1, cached_blocks)
        self._names: list[str] | None = None
        # Per part, oldest first: the rows that are live and their positions in
        # name order; set by _layout (with _count, the number of live datasets).
        self._live_rows: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        self._count: int | None = None
        # One part whose every row is live: rows and positions are the identity,
        # so its columns are used as they are, without a gather.
        self._whole = False
        self._dead: dict[int, np.ndarray] = {}  # rows of a part that are not live, where asked for
        self._runs: dict[int, list[tuple[int, int, int]]] = {}  # see runs_of
        # The names of the newer parts when the oldest part's names are only searched
        # (:class:`RowNames`): a live row of the oldest part never has one of them.
        self._newer: set[str] | None = None
        self._row_names: RowNames | None = None  # the one part's names, searched undecoded
        self._id_order: dict[int, np.ndarray] = {}

    # -- point lookups ----------------------------------------------------------------------

    def _locate(self, name: str) -> tuple[int, int] | None:
        """``(part, row)`` of the newest live row of ``name``, or None."""
        if not isinstance(name, str):
            return None
        for p in range(len(self._readers) - 1, -1, -1):
            reader = self._readers[p]
            row = reader.find(name)
            if row >= 0:
                return None if reader.tombstones()[row] else (p, row)
        return None

    def _locate_live(self, name: str) -> tuple[int, int]:
        """:meth:`_locate`, raising DatasetNotFoundError when ``name`` has no live dataset."""
        found = self._locate(name)
        if found is None:
            raise DatasetNotFoundError(f"dataset {name!r:.200} does not exist")
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._locate(name) is not None

    def get(self, name: str) -> DatasetMeta:
        """The dataset ``name``, materialised from its record block.

        Raises
        ------
        DatasetNotFoundError
            When no live dataset has that name.
        """
        return self._record(*self._locate_live(name))

    def key(self, name: str) -> tuple[int, int] | None:
        """``(id, version)`` of the live dataset ``name``, or None; decodes no record.

        What a rebase compares for each dataset a writer touched (format v1 §12).
        """
        found = self._locate(name)
        return None if found is None else self._readers[found[0]].key(found[1])

    def arrays(self, name: str) -> dict[str, ArrayMeta]:
        """The arrays of dataset ``name``, without decoding its attributes (what bulk reads use).

        Raises
        ------
        DatasetNotFoundError
            When no live dataset has that name.
        """
        p, row = self._locate_live(name)
        arrays = self._readers[p].arrays(row, self._block(p, row))
        assert arrays is not None  # live rows are not tombstones
        return arrays

    def array_metas(self, array: str, names: Sequence[str]) -> tuple[list[ArrayMeta | None], list[int]]:
        """Array ``array`` of many datasets at once (what bulk reads use).

        Returns
        -------
        (arrays, missing)
            Per name, its array (None where the dataset has no such array, or where
            no live dataset has that name), and the positions in ``names`` of the
            names without a live dataset.

        Notes
        -----
        Parts with interned schemas (``docs/format-v2.md`` §4.4) give the arrays from
        their columns, decoding no record; the arrays then carry no ``stats`` and
        share their tuples and attribute dicts (read-only).  Older parts go through
        the records, as :meth:`arrays`.
        """
        part_of, row_of = self._locate_many(names)
        out = np.full(len(names), None, dtype=object)
        for p, reader in enumerate(self._readers):
            sel = np.flatnonzero(part_of == p)
            if not sel.size:
                continue
            rows = row_of[sel]
            table = reader.schemas(array)
            if table is not None:
                out[sel] = table.metas(rows)
            elif array in reader.stats_groups():  # a part written before schema interning
                got = np.empty(sel.size, dtype=object)
                got[:] = [self._readers[p].arrays(r, self._block(p, r)).get(array) for r in rows.tolist()]
                out[sel] = got
            # else: no row of the part has the array (every array of a row has a stats group)
        return out.tolist(), np.flatnonzero(part_of < 0).tolist()

    def _locate_many(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_locate` of every name: ``(part, row)`` arrays, part -1 where no live dataset."""
        n = len(names)
        part_of, row_of = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
        todo, todo_names = np.arange(n), list(names)
        for p in range(len(self._readers) - 1, -1, -1):
            if not todo.size:
                break
            reader = self._readers[p]
            pnames = reader.names()
            if not pnames:
                continue
            # C-level passes: a binary search per name, then the names found compared.
            at = np.fromiter(map(functools.partial(bisect.bisect_left, pnames), todo_names), np.int64, todo.size)
            np.minimum(at, len(pnames) - 1, out=at)
            hit = np.fromiter(map(operator.eq, map(pnames.__getitem__, at.tolist()), todo_names), bool, todo.size)
            rows = at[hit]
            live = ~reader.tombstones()[rows]
            found = todo[hit]
            part_of[found[live]], row_of[found[live]] = p, rows[live]
            todo = todo[~hit]
            todo_names = [names[i] for i in todo.tolist()]
        return part_of, row_of

    def _block(self, p: int, row: int) -> tuple[np.ndarray, bytes]:
        reader = self._readers[p]
        k = row // reader.index.block_rows
        block = self._blocks.get((p, k))
        if block is None:
            block = self._blocks[(p, k)] = reader.block(k)
            while len(self._blocks) > self._cached_blocks:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end((p, k))
        return block

    def _record(self, p: int, row: int) -> DatasetMeta:
        ds = self._readers[p].record(row, self._block(p, row))
        assert ds is not None  # live rows are not tombstones (checked by record())
        return ds

    def get_by_id(self, dataset_id: int) -> tuple[str, DatasetMeta]:
        """``(name, dataset)`` of the live dataset with id ``dataset_id``.

        Raises
        ------
        DatasetNotFoundError
            When no live dataset has that id.
        """
        for p in range(len(self._readers) - 1, -1, -1):
            reader = self._readers[p]
            ids = reader.fixed("id")
            order = self._id_order.get(p)
            if order is None:
                order = self._id_order[p] = np.argsort(ids, kind="stable")
            i = int(np.searchsorted(ids, dataset_id, sorter=order))
            if i < ids.size and int(ids[order[i]]) == dataset_id:
                row = int(order[i])
                if reader.tombstones()[row]:
                    break
                name = reader.names()[row]
                if self._locate(name) != (p, row):
                    break  # the name now belongs to a newer dataset
                return name, self._record(p, row)
        raise DatasetNotFoundError(f"no dataset has id {dataset_id}")

    # -- listing -------------------------------------------------------------------------------

    def _layout(self) -> int:
        """Live rows and their positions per part; returns the number of live datasets.

        One part needs no names for that (its rows are sorted and a tombstone
        hides only its own row), so a search of a one-part catalogue decodes only
        the names of the rows it returns (:meth:`names_at`).  Several parts need
        the newer parts' names (newer rows hide older ones); the oldest part's are
        decoded too unless it is much larger (then it is binary-searched for the
        newer names, see :class:`~atlas.catalog.winners.RowNames`).  The merged
        list is built only when asked for.
        """
        if self._count is None:
            readers = self._readers
            if len(readers) == 1:
                reader = readers[0]
                tombs = reader.tombstones()
                self._whole = not tombs.any()
                rows = np.arange(reader.rows) if self._whole else np.flatnonzero(~tombs)
                self._live_rows, self._positions = [rows], [rows if self._whole else np.arange(rows.size)]
            elif readers:
                names: list[Sequence[str]] = [r.names() for r in readers[1:]]
                oldest = readers[0]
                if sum(len(x) for x in names) * _LOOKUPS_PER_ROW <= oldest.rows:
                    # A few recent rows over a large merged part: that part's names are
                    # binary-searched for the newer ones instead of decoded.
                    self._newer = set().union(*names)
                    names.insert(0, RowNames(oldest))
                else:
                    names.insert(0, oldest.names())
                self._live_rows = live_rows(readers, False, names)
                self._positions = row_positions(names, self._live_rows)
            self._count = sum(int(r.size) for r in self._live_rows)
        return self._count

    def _resolve(self) -> list[str]:
        """Every live name, sorted (built once)."""
        if self._names is not None:
            return self._names
        n = self._layout()
        if len(self._readers) == 1:
            names = self._readers[0].names()
            self._names = names if self._whole else [names[i] for i in self._live_rows[0].tolist()]
            return self._names
        out = np.empty(n, dtype=object)
        for reader, rows, pos in zip(self._readers, self._live_rows, self._positions):
            names = np.empty(reader.rows, dtype=object)
            names[:] = reader.names()
            out[pos] = names[rows]
        self._names = out.tolist()
        return self._names

    def names(self) -> list[str]:
        """Every live dataset name, sorted by code point (a new list each call)."""
        return list(self._resolve())

    def names_array(self) -> np.ndarray:
        """:meth:`names` as a new object array (what a DataFrame index is made of)."""
        names = self._resolve()
        out = np.empty(len(names), dtype=object)
        out[:] = names
        return out

    def __len__(self) -> int:
        return self._layout()

    def names_at(self, positions: Sequence[int] | np.ndarray) -> list[str]:
        """The names at ``positions`` of :meth:`names` (a search's result rows).

        Decodes only those names when the catalogue has one part and its names
        are not decoded yet; ascending positions are then checked to give
        ascending names, so a damaged names column cannot return unsorted results.

        Raises
        ------
        CorruptStoreError
            When the names read are not sorted and distinct.
        IndexError
            For a position outside ``-len(self) .. len(self) - 1``.
        """
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = self._layout()
        if pos.size and (pos.min() < -n or pos.max() >= n):
            raise IndexError(f"position out of range for {n} datasets")
        pos = pos % max(n, 1)  # negative positions count from the end, as in a list
        if self._names is not None:
            return [self._names[i] for i in pos.tolist()]
        if len(self._readers) == 1:
            out = self._readers[0].names_of(pos if self._whole else self._live_rows[0][pos])
        else:
            out = [None] * pos.size  # type: ignore[list-item]  # every position belongs to one part
            for p, (reader, rows, at) in enumerate(zip(self._readers, self._live_rows, self._positions)):
                # a part's positions ascend with its rows: each is found by binary search
                i = np.minimum(np.searchsorted(at, pos), max(at.size - 1, 0))
                mine = np.flatnonzero(at[i] == pos) if at.size else np.zeros(0, dtype=np.int64)
                got = reader.names_of(rows[i[mine]])
                if p == 0 and self._newer is not None and not self._newer.isdisjoint(got):
                    raise CorruptStoreError(f"{reader.where}: names are not sorted and distinct")
                for k, name in zip(mine.tolist(), got):
                    out[k] = name
        # Names not decoded and checked whole: what is returned must still be sorted.
        if np.all(pos[1:] > pos[:-1]) and not all(map(operator.lt, out, itertools.islice(out, 1, None))):
            raise CorruptStoreError(f"{self._readers[0].where}: names are not sorted and distinct")
        return out

    def locate_names(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, found)``: where each of ``names`` goes in :meth:`names`
        (``bisect_left``) and whether a live dataset has it.

        A one-part catalogue whose names are not decoded is binary-searched
        without decoding them (what a handle with a few pending changes needs);
        :meth:`names_at` checks the order of what a search then returns.
        """
        n = self._layout()
        count = len(names)
        if self._names is None and len(self._readers) == 1:
            if self._row_names is None:
                self._row_names = RowNames(self._readers[0])
            part = self._row_names
            rows = np.fromiter((part.lower_bound(x) for x in names), np.int64, count)
            hits = (r < len(part) and part[r] == x for r, x in zip(rows.tolist(), names))
            found = np.fromiter(hits, bool, count)
            if self._whole:
                return rows, found
            live = self._live_rows[0]
            pos = np.searchsorted(live, rows)  # live rows before each
            if live.size:
                found &= live[np.minimum(pos, live.size - 1)] == rows  # not a tombstone
            return pos, found & (pos < live.size)
        listing = self._resolve()
        pos = np.fromiter((bisect.bisect_left(listing, x) for x in names), np.int64, count)
        found = np.fromiter((p < n and listing[p] == x for p, x in zip(pos.tolist(), names)), bool, count)
        return pos, found

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolve())

    def items(self) -> Iterator[tuple[str, DatasetMeta]]:
        """``(name, dataset)`` of every live dataset, in name order (decodes every record)."""
        names = self._resolve()
        part_of = np.zeros(len(names), dtype=np.int32)
        row_of = np.zeros(len(names), dtype=np.int64)
        for p, (rows, pos) in enumerate(zip(self._live_rows, self._positions)):
            part_of[pos], row_of[pos] = p, rows
        for name, p, row in zip(names, part_of.tolist(), row_of.tolist()):
            yield name, self._record(p, row)

    # -- search columns ------------------------------------------------------------------------

    def _live(self, p: int, values: np.ndarray) -> np.ndarray:
        """The live rows of part ``p``'s column ``values`` (the column itself when all are)."""
        return values if self._whole else values[self._live_rows[p]]

    def _any_live(self, p: int, flags: np.ndarray) -> bool:
        """Whether ``flags`` (0/1 per row of part ``p``) is set for one of its live rows."""
        if self._whole:
            return bool(flags.any())
        rows = self._live_rows[p]
        if 2 * rows.size < flags.size:
            return bool(flags[rows].any())
        # mostly live (a large old part): count the few dead rows instead of gathering
        dead = self._dead.get(p)
        if dead is None:
            keep = np.zeros(flags.size, dtype=bool)
            keep[rows] = True
            dead = self._dead[p] = np.flatnonzero(~keep)
        return int(np.count_nonzero(flags)) > int(np.count_nonzero(flags[dead]))

    def _scatter(self, p: int, out: np.ndarray, values: np.ndarray) -> None:
        """Place part ``p``'s live rows of ``values`` at their positions in ``out``."""
        if self._whole:
            out[:] = values
            return
        runs = self._runs.get(p)
        if runs is None:
            runs = self._runs[p] = runs_of(self._live_rows[p], self._positions[p])
        if runs:
            for at, row, length in runs:
                out[at : at + length] = values[row : row + length]
        else:
            out[self._positions[p]] = values[self._live_rows[p]]

    def attribute_keys(self) -> list[str]:
        """Sorted attribute keys of the live datasets (internal keys excluded).

        Reads the presence column of every key of every part.
        """
        self._layout()
        out: set[str] = set()
        for p, reader in enumerate(self._readers):
            for key, (i, _kind) in reader.attribute_kinds().items():
                if key not in out and not is_internal_key(key) and self._any_live(p, reader.fixed(f"a{i}.present")):
                    out.add(key)
        return sorted(out)

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values, present)`` of attribute ``key``, aligned to :meth:`names`.

        ``values`` has the attribute's dtype when every part stores it as one
        scalar dtype (timestamps as ``datetime64[ns]``, strings as an object array
        of ``str``), otherwise it is an object array of the values
        ``get_attribute`` would return.  ``present`` is False where a dataset
        lacks the key (its value is then a zero, NaN or None placeholder).

        A key no live dataset has gives an object array of None, all absent.

        Raises
        ------
        KeyError
            For an internal key (``_atlas_xarray...``).
        """
        self._check_key(key)
        n = self._layout()
        found = [(p, r.attribute(key)) for p, r in enumerate(self._readers)]
        found = [(p, f) for p, f in found if f is not None and self._any_live(p, f[2])]
        kinds = {f[0] for _, f in found}
        dtype = found[0][1][1].dtype if len(kinds) == 1 else np.dtype(object)
        if self._whole and found and found[0][1][1].dtype == dtype:
            # One part, every row live: its column is the answer (no gather, no copy).
            _kind, values, pres = found[0][1]
            present = pres.astype(bool)
            if dtype.kind == "O":
                values[~present] = None  # a new array (decoded for this call)
            return values, present
        values = np.full(n, np.nan) if dtype.kind == "f" else np.zeros(n, dtype=dtype)
        if dtype.kind == "f":
            values = values.astype(dtype)
        present = np.zeros(n, dtype=bool)
        for p, (_kind, vals, pres) in found:
            if dtype.kind == "O" and vals.dtype.kind != "O":
                # boxed as get_attribute returns them (see attributes.to_python)
                boxed = np.empty(vals.size, dtype=object)
                boxed[:] = vals.tolist() if _kind in _PLAIN else list(vals)
                vals = boxed
            self._scatter(p, values, vals)
            self._scatter(p, present, pres.view(bool))
        if dtype.kind == "O":
            values[~present] = None
        return values, present

    def string_column(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(codes, categories, present)`` of a string attribute, aligned to :meth:`names`.

        The dictionary-coded form of :meth:`column` for a key that every part
        storing it (for a live dataset) stores as strings: the value of dataset
        ``i`` is ``categories[codes[i]]`` where ``present[i]``.  ``categories`` is
        an object array of ``str`` (the parts' dictionaries one after the other,
        so a string may appear more than once); ``codes`` always index it.  A
        search compares the categories once and gathers the answers by code.

        Returns None when some part stores the key as another kind, or no live
        dataset has it (:meth:`column` then gives the values).  The arrays may be
        the catalogue's own: not to be written to.

        Raises
        ------
        KeyError
            For an internal key (``_atlas_xarray...``).
        """
        self._check_key(key)
        n = self._layout()
        found = []
        for p, reader in enumerate(self._readers):
            kind = reader.attribute_kinds().get(key)
            if kind is None:
                continue
            got = reader.string_codes(key)
            if got is None:
                if self._any_live(p, reader.fixed(f"a{kind[0]}.present")):
                    return None  # another kind for some live dataset
                continue
            if self._any_live(p, got[2]):
                found.append((p, got))
        if not found:
            return None
        if self._whole:
            codes, dictionary, pres = found[0][1]
            categories = dictionary if len(dictionary) else np.array([""], dtype=object)
            return codes, categories, pres.view(bool)
        codes_out = np.zeros(n, dtype=np.int64)
        present = np.zeros(n, dtype=bool)
        categories_parts = []
        offset = 0
        for p, (codes, dictionary, pres) in found:
            self._scatter(p, codes_out, codes.astype(np.int64) + offset)
            self._scatter(p, present, pres.view(bool))
            dictionary = dictionary if len(dictionary) else np.array([""], dtype=object)
            categories_parts.append(dictionary)
            offset += len(dictionary)
        return codes_out, np.concatenate(categories_parts), present

    @staticmethod
    def _check_key(key: object) -> None:
        if not isinstance(key, str) or is_internal_key(key):
            raise KeyError(f"no attribute column {key!r:.200}")

    def array_names(self) -> list[str]:
        """Sorted array names defined by at least one live dataset."""
        self._layout()
        out = set()
        for p, reader in enumerate(self._readers):
            for name in reader.stats_groups():
                if name not in out:
                    _, has = reader.stats(name, "has")
                    if self._any_live(p, has):
                        out.add(name)
        return sorted(out)

    def has_array(self, array: str) -> bool:
        """Whether some live dataset defines ``array`` (reads its stats state columns)."""
        self._layout()
        for p, reader in enumerate(self._readers):
            got = reader.stats(array, "has")
            if got is not None and self._any_live(p, got[1]):
                return True
        return False

    def stats_column(self, array: str, field: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values, valid)`` of one per-array stats field, aligned to :meth:`names`.

        Fields: ``slot``, ``dtype`` (names), ``row_count``, ``null_count`` (valid
        where stats are recorded), ``min``, ``max`` (float64; valid where the array
        has a valid cell; NaN for strings), ``min_exact``, ``max_exact`` (the exact
        typed values, object array), ``shape`` (tuples).  ``valid`` is False where a
        dataset does not have the array or the field is unknown for it.  The
        values may be a read-only view of the catalogue's own column.
        """
        if field not in STATS_FIELDS:
            raise KeyError(f"unknown stats field {field!r:.80}; expected one of {', '.join(STATS_FIELDS)}")
        n = self._layout()
        part_field = "dtype_code" if field == "dtype" else field
        if self._whole and field not in _OBJECT_FIELDS:
            got = self._readers[0].stats(array, part_field)
            if got is not None:
                values = got[0].view()
                values.flags.writeable = False  # the reader keeps the column for later calls
                return values, got[1]
        if field in _OBJECT_FIELDS:
            values = np.full(n, None, dtype=object)
        elif field in ("min", "max"):
            values = np.full(n, np.nan)
        else:
            values = np.zeros(n, dtype=np.uint64)
        valid = np.zeros(n, dtype=bool)
        for p, reader in enumerate(self._readers):
            got = reader.stats(array, part_field)
            if got is None:
                continue
            vals, ok = got
            if field == "dtype":
                vals = np.array(DTYPE_CODES, dtype=object)[vals]
            self._scatter(p, values, vals)
            self._scatter(p, valid, ok)
        if field in _OBJECT_FIELDS:
            values[~valid] = None
        return values, valid

    def stats_dtypes(self, array: str) -> set[str]:
        """The dtypes of ``array`` in the live datasets whose stats hold its extremes."""
        self._layout()
        out: set[str] = set()
        for p, reader in enumerate(self._readers):
            codes = reader.extreme_dtypes(array)
            if codes is None:
                continue
            codes = self._live(p, codes)
            top = int(codes.max()) if codes.size else -1
            if top >= 0 and int(np.where(codes < 0, top, codes).min()) == top:  # one dtype (the usual case)
                out.add(DTYPE_CODES[top])
            elif top >= 0:
                counts = np.bincount(codes + 1)[1:]
                out.update(DTYPE_CODES[c] for c in np.flatnonzero(counts).tolist())
        return out

    def lists_attribute(self, key: str) -> bool:
        """Whether some part has a search column for ``key`` (reads no column)."""
        return any(key in reader.attribute_kinds() for reader in self._readers)

    def live_slots(self, array: str) -> np.ndarray:
        """Sorted uint64 slots of ``array`` in every live dataset (no record decoded)."""
        self._layout()
        out = []
        for p, reader in enumerate(self._readers):
            got = reader.stats(array, "slot")
            if got is not None:
                slots, has = got
                out.append(self._live(p, slots)[self._live(p, has)])
        return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.uint64)

    def verify(self) -> None:
        """Read and check every byte of every part (footer, header, columns, records).

        Raises
        ------
        CorruptStoreError
            On the first damage found, naming the part file.
        """
        for reader in self._readers:
            reader.verify()
