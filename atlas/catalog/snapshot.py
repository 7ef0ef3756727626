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

from atlas.catalog.columns import SearchColumns
from atlas.catalog.commit import PartRef
from atlas.catalog.part import PartReader, ReadRange, RecordBlock
from atlas.catalog.winners import (  # noqa: F401 - merge_positions, merge_sorted, winning_rows: merging's
    RowNames,
    live_rows,
    live_rows_by_keys,
    merge_positions,
    merge_sorted,
    row_positions,
    row_positions_by_keys,
    runs_of,
    winning_rows,
)
from atlas.errors import CorruptStoreError, DatasetNotFoundError
from atlas.metadata import ArrayMeta, DatasetMeta

__all__ = ["Catalog"]

#: Binary-searching a large oldest part for a name of a newer part costs about as
#: much as decoding this many of its names; below that many newer rows per oldest
#: row, a search does not decode the oldest part's names.
_LOOKUPS_PER_ROW = 100


class Catalog(SearchColumns):
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
        known = {r.ref: r for r in previous.readers} if previous is not None else {}
        self._readers = [known.get(ref) or PartReader(ref, read_range) for ref in self.parts]
        self._blocks: OrderedDict[tuple[int, int], RecordBlock] = OrderedDict()
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

    @property
    def readers(self) -> tuple[PartReader, ...]:
        """The reader of each part, oldest first (one per entry of :attr:`parts`).

        What a search by part (:mod:`atlas.search.parts`) reads columns and names
        from.  The readers keep what they read, so whoever reads through them
        shares it with this catalogue (and with the next snapshot of the store,
        see ``previous``).
        """
        return tuple(self._readers)

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

    def first_live(self, names: Sequence[str]) -> str | None:
        """The first of ``names`` (each a str) that has a live dataset, or None.

        ``in`` for many names at once (what a batch of new datasets checks).  A part
        whose name range (:meth:`PartReader.name_range`) holds none of the names is
        ruled out without decoding its names column, so names past every existing
        one (a store built in batches of numbered names) decode no part's names.
        """
        if not names or not self._readers:
            return None
        low, high = min(names), max(names)
        todo: list[str] | None = None  # names no newer part has a row of
        live: set[str] = set()
        for p in range(len(self._readers) - 1, -1, -1):
            if todo is not None and not todo:  # every name decided by a newer part
                break
            reader = self._readers[p]
            bounds = reader.name_range()
            if bounds is None or high < bounds[0] or low > bounds[1]:
                continue
            first, last = bounds
            todo = list(names) if todo is None else todo
            inside = [x for x in todo if first <= x <= last]
            if not inside:
                continue
            pnames = reader.names()
            at = list(map(functools.partial(bisect.bisect_left, pnames), inside))
            rows = {x: r for x, r in zip(inside, at) if r < len(pnames) and pnames[r] == x}
            if rows:
                tombstones = reader.tombstones()
                live.update(x for x, r in rows.items() if not tombstones[r])
                todo = [x for x in todo if x not in rows]  # the newest row of a name decides
        if not live:
            return None
        return next(x for x in names if x in live)

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

    def _block(self, p: int, row: int) -> RecordBlock:
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

    def _layout(self, listing: bool = False) -> int:
        """Live rows and their positions per part; returns the number of live datasets.

        ``listing``: the caller decodes every name next (:meth:`names`), so several
        parts are merged on their decoded names rather than on numpy name keys
        (which a search uses so as to decode none): making both would hold twice
        the memory for the list.

        One part needs no names for that (its rows are sorted and a tombstone
        hides only its own row), so a search of a one-part catalogue decodes only
        the names of the rows it returns (:meth:`names_at`).  Several parts need
        the newer parts' names (newer rows hide older ones); the oldest part's are
        decoded too unless it is much larger (then it is binary-searched for the
        newer names, see :class:`~atlas.catalog.winners.RowNames`).  Parts whose
        name ranges do not overlap (a store built in batches of ascending names)
        need none of that (:meth:`_layout_disjoint`).  The merged list is built
        only when asked for.
        """
        if self._count is None:
            readers = self._readers
            if len(readers) == 1:
                reader = readers[0]
                tombs = reader.tombstones()
                self._whole = not tombs.any()
                rows = np.arange(reader.rows) if self._whole else np.flatnonzero(~tombs)
                self._live_rows, self._positions = [rows], [rows if self._whole else np.arange(rows.size)]
            elif readers and not self._layout_disjoint(listing):
                oldest = readers[0]
                keys = None
                if sum(r.rows for r in readers[1:]) * _LOOKUPS_PER_ROW > oldest.rows:
                    keys = [None] if listing else [r.name_keys() for r in readers]
                if keys is not None and all(k is not None for k in keys):
                    # names merged as numpy keys: no name decoded
                    self._live_rows = live_rows_by_keys(readers, keys)  # type: ignore[arg-type]
                    self._positions = row_positions_by_keys(keys, self._live_rows)  # type: ignore[arg-type]
                    for reader in readers:  # what they give is kept: the keys are not
                        reader.release_name_keys()
                else:
                    names: list[Sequence[str]] = [r.names() for r in readers[1:]]
                    if keys is None and not listing:
                        # A few recent rows over a large merged part: that part's names
                        # are binary-searched for the newer ones instead of decoded.
                        self._newer = set().union(*names)
                        names.insert(0, RowNames(oldest))
                    else:  # a listing (every name decoded), or names without compact keys
                        names.insert(0, oldest.names())
                    # A listing decoded and checked every part's names: their ranges
                    # tell which parts may share names (a few changed rows over parts
                    # of disjoint ranges share them with one part only).
                    bounds = [r.name_range() for r in readers] if listing else None
                    self._live_rows = live_rows(readers, False, names, bounds)
                    self._positions = row_positions(names, self._live_rows, bounds)
            self._count = sum(int(r.size) for r in self._live_rows)
        return self._count

    def _layout_disjoint(self, listing: bool) -> bool:
        """Lay out parts whose name ranges do not overlap, if they do not.

        No row then hides a row of another part, so each part's live rows are its
        rows that are not tombstones, and they come in name order one part after
        the other, ordered by their first names.  The ranges are read when that
        costs no decode of every name (names of one length, checked on their
        bytes), or when ``listing`` decodes them anyway; returns False (nothing
        set) otherwise and when two ranges overlap.
        """
        readers = self._readers
        if listing:
            for reader in readers:  # decoded first, one part at a time: less held at once
                reader.names()
        elif not all(r.name_range_is_cheap() for r in readers):
            return False
        # The first and last rows' names first: parts whose ranges overlap (a few
        # changed rows over a merged part) are told apart without checking the
        # order of every row, which name_range() then does for disjoint ones.
        ends = sorted((tuple(r.names_of([0, r.rows - 1])), p) for p, r in enumerate(readers) if r.rows)
        if any(a[0][1] >= b[0][0] for a, b in itertools.pairwise(ends)):
            return False
        for reader in readers:
            reader.name_range()  # each part's rows checked sorted and distinct (else CorruptStoreError)
        tombs = [r.tombstones() for r in readers]
        live = [np.flatnonzero(~t) if t.any() else np.arange(t.size) for t in tombs]
        positions = [np.zeros(0, dtype=np.int64) for _ in readers]
        at = 0
        for _bounds, p in ends:
            positions[p] = np.arange(at, at + live[p].size, dtype=np.int64)
            at += live[p].size
        self._live_rows, self._positions = live, positions
        return True

    def _resolve(self) -> list[str]:
        """Every live name, sorted (built once)."""
        if self._names is not None:
            return self._names
        self._layout(listing=True)
        if len(self._readers) == 1:
            names = self._readers[0].names()
            self._names = names if self._whole else [names[i] for i in self._live_rows[0].tolist()]
            return self._names
        self._names = self._merged_names().tolist()
        return self._names

    def _merged_names(self) -> np.ndarray:
        """Every live name, sorted, as a new object array, from the parts' decoded names."""
        out = np.empty(self._layout(listing=True), dtype=object)
        for p, reader in enumerate(self._readers):
            rows, pos = self._live_rows[p], self._positions[p]
            if not rows.size:
                continue
            names = reader.names()
            if rows.size == len(names) and int(pos[-1] - pos[0]) == rows.size - 1:
                out[pos[0] : pos[-1] + 1] = names  # the whole part in one run (disjoint ranges)
                continue
            runs = self._runs.get(p)
            if runs is None:
                runs = self._runs[p] = runs_of(rows, pos)
            if runs:  # a large part under a few newer rows: copied in slices
                for at, row, length in runs:
                    out[at : at + length] = names[row : row + length]
            else:
                held = np.empty(len(names), dtype=object)
                held[:] = names
                out[pos] = held[rows]
        return out

    def names(self) -> list[str]:
        """Every live dataset name, sorted by code point (a new list each call)."""
        return list(self._resolve())

    def names_array(self) -> np.ndarray:
        """:meth:`names` as a new object array (what a DataFrame index is made of).

        Built from the parts' names without the merged list when that is not made
        yet (it is not kept: a listing makes it).
        """
        if self._names is None and len(self._readers) > 1:
            return self._merged_names()
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

    def verify(self) -> None:
        """Read and check every byte of every part (footer, header, columns, records).

        Raises
        ------
        CorruptStoreError
            On the first damage found, naming the part file.
        """
        for reader in self._readers:
            reader.verify()
