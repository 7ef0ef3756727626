"""Which rows of a catalogue's parts are live, and where each goes in name order.

A newer part's row hides every older row of the same name (a tombstone hides it
and is not live itself).  These functions find the winning rows of each part and
their positions in the sorted listing with binary searches of the shorter side of
each pair of parts and vectorised shifts for the longer side, so a large part
costs no Python step per row.  :class:`RowNames` lets those searches run over a
large part whose names are not decoded (a catalogue with a few recent rows on top
of a large merged part).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from atlas.catalog.part import PartReader
from atlas.errors import CorruptStoreError

__all__ = [
    "RowNames",
    "live_rows",
    "live_rows_by_keys",
    "merge_positions",
    "merge_sorted",
    "row_positions",
    "row_positions_by_keys",
    "runs_of",
    "winning_rows",
]


class RowNames(Sequence):
    """The sorted names of a part, each decoded when first read (for binary searches).

    :meth:`lower_bound` first searches a sample of every :data:`SAMPLE`-th name
    (decoded up front), then the rows between two samples.  The part's names are
    not checked to be sorted as a whole: what is looked up here is checked where
    it is used (see ``Catalog.names_at``).
    """

    #: One name in this many is decoded up front.
    SAMPLE = 128

    def __init__(self, reader: PartReader) -> None:
        raw, ends = reader.name_ends()
        self._raw, self._ends = memoryview(raw), memoryview(ends)
        self._where = reader.where
        self._seen: dict[int, str] = {}
        self._bounds: dict[str, int] = {}
        self._sample = reader.names_of(np.arange(0, len(ends), self.SAMPLE))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, row: int) -> str:  # type: ignore[override]  # one row, as bisect reads it
        name = self._seen.get(row)
        if name is None:
            start = self._ends[row - 1] + 1 if row else 0
            try:
                name = self._seen[row] = str(self._raw[start : self._ends[row]], "utf-8")
            except UnicodeDecodeError:
                raise CorruptStoreError(f"{self._where} column 'name': string column holds invalid UTF-8") from None
        return name

    def lower_bound(self, name: str) -> int:
        """``bisect_left(self, name)``: the first row whose name is not less than ``name``."""
        found = self._bounds.get(name)
        if found is None:
            k = bisect.bisect_left(self._sample, name)  # sample k - 1 < name <= sample k
            lo, hi = max(k - 1, 0) * self.SAMPLE, min(k * self.SAMPLE, len(self))
            found = self._bounds[name] = bisect.bisect_left(self, name, lo, hi) if k else 0
        return found


def _lower_bound(names: Sequence[str], name: str) -> int:
    return names.lower_bound(name) if isinstance(names, RowNames) else bisect.bisect_left(names, name)


#: Each part's first and last names (None for a part without rows), checked: the
#: order of every part's names was checked when they were read.
Bounds = Sequence[tuple[str, str] | None]


def _overlap(bounds: Bounds | None, a: int, b: int) -> bool:
    """Whether parts ``a`` and ``b`` may share a name (always, without ``bounds``)."""
    if bounds is None:
        return True
    x, y = bounds[a], bounds[b]
    return x is not None and y is not None and x[0] <= y[1] and y[0] <= x[1]


def live_rows(
    readers: Sequence[PartReader],
    keep_tombstones: bool,
    names: Sequence[Sequence[str]] | None = None,
    bounds: Bounds | None = None,
) -> list[np.ndarray]:
    """Per part (oldest first): the rows that win (no newer part has the name).

    Tombstone rows are left out unless ``keep_tombstones``.  ``names`` are the
    parts' sorted names (default: each part's decoded and checked names); the
    oldest may be a :class:`RowNames`, it is only searched.  With ``bounds``, a
    part's rows are looked up only among the names of the newer parts whose range
    overlaps its own.
    """
    names = [r.names() for r in readers] if names is None else names
    rows: list[np.ndarray] = []
    for p in range(len(readers) - 1, -1, -1):
        reader, mine = readers[p], names[p]
        live = np.ones(len(mine), dtype=bool) if keep_tombstones else ~reader.tombstones()
        # names of newer parts: they hide older rows
        newer = [names[q] for q in range(p + 1, len(readers)) if _overlap(bounds, p, q)]
        if newer:
            shadow = newer[0] if len(newer) == 1 else list(itertools.chain.from_iterable(newer))
            live[_rows_named(mine, shadow)] = False
        rows.append(np.flatnonzero(live))
    rows.reverse()
    return rows


def _rows_named(names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """The rows of the sorted ``names`` whose name is in ``wanted``."""
    n = len(names)
    if isinstance(names, RowNames) or len(wanted) * max(1, n).bit_length() <= n:  # a few: binary searches
        found = (_lower_bound(names, name) for name in wanted)
        return np.fromiter((i for i, name in zip(found, wanted) if i < n and names[i] == name), np.int64)
    hidden = set(wanted)  # many: one pass over the part
    return np.flatnonzero(np.fromiter(map(hidden.__contains__, names), bool, n))


def winning_rows(readers: Sequence[PartReader], keep_tombstones: bool) -> tuple[list[list[str]], list[np.ndarray]]:
    """Per part (oldest first): the names and rows that win (no newer part has the name).

    Tombstone rows are left out unless ``keep_tombstones``.
    """
    rows = live_rows(readers, keep_tombstones)
    kept = []
    for reader, idx in zip(readers, rows):
        names = reader.names()
        kept.append(names if idx.size == len(names) else [names[i] for i in idx.tolist()])
    return kept, rows


def row_positions(
    names: Sequence[Sequence[str]], rows: Sequence[np.ndarray], bounds: Bounds | None = None
) -> list[np.ndarray]:
    """Position in name order of each part's winning rows (:func:`live_rows`).

    :func:`merge_positions` without listing the winners: only the names of the
    shorter side of each pair are listed and located (by binary search over the
    longer side's sorted names, every row of it); the longer side's shifts follow
    with vectorised ``searchsorted`` calls, so no Python step is spent per row of
    a large part.  With ``bounds``, a pair of parts whose ranges do not overlap
    locates no name: one part's rows all go before the other's.
    """

    def locate(small: int, big: int) -> np.ndarray:
        target, mine = names[big], names[small]
        located = (_lower_bound(target, mine[i]) for i in rows[small].tolist())
        return np.fromiter(located, np.int64, rows[small].size)

    return _place_pairs(rows, locate, check=True, bounds=bounds)


def _place_pairs(
    rows: Sequence[np.ndarray],
    locate: Callable[[int, int], np.ndarray],
    check: bool,
    bounds: Bounds | None = None,
) -> list[np.ndarray]:
    """Positions in name order of every part's winning ``rows``, given
    ``locate(small, big)``: where each winning name of part ``small`` goes among
    every row of part ``big`` (lower bounds), for each pair of parts whose
    ``bounds`` overlap (see :func:`row_positions`)."""
    pos = [np.arange(r.size, dtype=np.int64) for r in rows]
    for a in range(len(rows)):
        for b in range(a + 1, len(rows)):
            small, big = (a, b) if rows[a].size <= rows[b].size else (b, a)
            if not rows[small].size or not rows[big].size:
                continue
            if not _overlap(bounds, a, b):
                first, second = (a, b) if bounds[a][0] < bounds[b][0] else (b, a)  # type: ignore[index]
                pos[second] += rows[first].size
                continue
            # rows of the longer side before each name, then the winners among them
            ranks = np.searchsorted(rows[big], locate(small, big))
            if check and ranks.size > 1 and np.any(ranks[1:] < ranks[:-1]):  # only names not checked whole
                raise CorruptStoreError("catalogue part names are not sorted and distinct")
            pos[small] += ranks
            # how many of the shorter side go before each row of the longer one
            pos[big] += np.cumsum(np.bincount(ranks, minlength=rows[big].size + 1))[: rows[big].size]
    return pos


def live_rows_by_keys(readers: Sequence[PartReader], keys: Sequence[np.ndarray]) -> list[np.ndarray]:
    """:func:`live_rows` (tombstones left out) from the parts' name keys
    (:meth:`~atlas.catalog.part.PartReader.name_keys`): vectorised, no name decoded."""
    rows: list[np.ndarray] = []
    shadow = np.zeros(0, dtype="S1")  # names of newer parts, sorted: they hide older rows
    for p in range(len(readers) - 1, -1, -1):
        mine = keys[p]
        live = ~readers[p].tombstones()
        if shadow.size and mine.size:
            if shadow.size <= mine.size:  # search the shorter side in the longer one
                at = np.minimum(np.searchsorted(mine, shadow), mine.size - 1)
                live[at[mine[at] == shadow]] = False
            else:
                at = np.minimum(np.searchsorted(shadow, mine), shadow.size - 1)
                live &= shadow[at] != mine
        rows.append(np.flatnonzero(live))
        if p:  # the oldest part hides nothing; one part's keys are sorted already
            shadow = np.sort(np.concatenate([shadow, mine])) if shadow.size else mine
    rows.reverse()
    return rows


def row_positions_by_keys(keys: Sequence[np.ndarray], rows: Sequence[np.ndarray]) -> list[np.ndarray]:
    """:func:`row_positions` from the parts' name keys: each shorter side located in
    the longer one with one ``searchsorted`` (keys are checked sorted when made)."""
    return _place_pairs(rows, lambda small, big: np.searchsorted(keys[big], keys[small][rows[small]]), check=False)


def merge_sorted(kept: list[list[str]], positions: list[np.ndarray]) -> list[str]:
    """The merge of sorted disjoint lists, given each element's position in it."""
    if len(kept) == 1:
        return list(kept[0])
    out = np.empty(sum(len(k) for k in kept), dtype=object)
    for names, pos in zip(kept, positions):
        arr = np.empty(len(names), dtype=object)
        arr[:] = names
        out[pos] = arr
    return out.tolist()


def merge_positions(kept: list[list[str]]) -> list[np.ndarray]:
    """Position of every element of each sorted, mutually disjoint list in their merge.

    For each pair, the shorter list is located in the longer by binary search
    (``len(short) * log(len(long))`` comparisons); the longer one's shifts follow
    from those ranks with one vectorised ``searchsorted``.
    """
    pos = [np.arange(len(k), dtype=np.int64) for k in kept]
    for a in range(len(kept)):
        for b in range(a + 1, len(kept)):
            small, big = (a, b) if len(kept[a]) <= len(kept[b]) else (b, a)
            if not kept[small] or not kept[big]:
                continue
            target = kept[big]
            ranks = np.fromiter((bisect.bisect_left(target, x) for x in kept[small]), np.int64, len(kept[small]))
            if ranks.size > 1 and np.any(ranks[1:] < ranks[:-1]):  # only names not checked whole
                raise CorruptStoreError("catalogue part names are not sorted and distinct")
            pos[small] += ranks
            pos[big] += np.searchsorted(ranks, np.arange(len(target)), side="right")
    return pos


def runs_of(rows: np.ndarray, positions: np.ndarray) -> list[tuple[int, int, int]]:
    """``(position, row, length)`` of the runs where consecutive live rows keep
    consecutive positions, when a large part has few of them (else empty).

    A large old part under a few newer rows moves in long runs: copying them as
    slices costs less than gathering and scattering every row.
    """
    if rows.size < 4096:
        return []
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(positions) != 1)) + 1
    if breaks.size > rows.size // 256:
        return []
    starts = np.concatenate(([0], breaks))
    lengths = np.diff(np.concatenate((starts, [rows.size])))
    return list(zip(positions[starts].tolist(), rows[starts].tolist(), lengths.tolist()))
