"""A catalogue snapshot: the datasets of one commit, read lazily from its parts.

Making a :class:`Catalog` reads nothing.  Point lookups (``get``, ``in``) read the
names column of the parts, newest first, and decode one record block.  Listing
(``names``) resolves every part once: for each name the row of the newest part
wins and a tombstone hides the name.  The result is a sorted list of names plus,
per part, the rows that are live and their positions in that list, so search
columns come out aligned to ``names()`` with numpy fancy indexing and no Python
object per dataset.
"""

from __future__ import annotations

import bisect
import functools
import operator
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np

from atlas.catalog.build import DTYPE_CODES
from atlas.catalog.commit import PartRef
from atlas.catalog.encoding import is_internal_key
from atlas.catalog.part import PartReader, ReadRange
from atlas.errors import DatasetNotFoundError
from atlas.metadata import ArrayMeta, DatasetMeta

__all__ = ["STATS_FIELDS", "Catalog", "merge_positions", "merge_sorted", "winning_rows"]

#: The fields :meth:`Catalog.stats_column` knows.
STATS_FIELDS = ("slot", "dtype", "row_count", "null_count", "min", "max", "min_exact", "max_exact", "shape")
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
        self._live_rows: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
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

    def _resolve(self) -> list[str]:
        if self._names is not None:
            return self._names
        kept, rows = winning_rows(self._readers, keep_tombstones=False)
        self._positions = merge_positions(kept)
        self._live_rows = rows
        self._names = merge_sorted(kept, self._positions)
        return self._names

    def names(self) -> list[str]:
        """Every live dataset name, sorted by code point (a new list each call)."""
        return list(self._resolve())

    def __len__(self) -> int:
        return len(self._resolve())

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

    def attribute_keys(self) -> list[str]:
        """Sorted attribute keys of the live datasets (internal keys excluded).

        Reads the presence column of every key of every part.
        """
        self._resolve()
        out: set[str] = set()
        for reader, rows in zip(self._readers, self._live_rows):
            for key, (i, _kind) in reader.attribute_kinds().items():
                if key not in out and not is_internal_key(key) and reader.fixed(f"a{i}.present")[rows].any():
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
        if not isinstance(key, str) or is_internal_key(key):
            raise KeyError(f"no attribute column {key!r:.200}")
        names = self._resolve()
        found = [(p, r.attribute(key)) for p, r in enumerate(self._readers)]
        found = [(p, f) for p, f in found if f is not None and f[2][self._live_rows[p]].any()]
        kinds = {f[0] for _, f in found}
        dtype = found[0][1][1].dtype if len(kinds) == 1 else np.dtype(object)
        values = np.full(len(names), np.nan) if dtype.kind == "f" else np.zeros(len(names), dtype=dtype)
        if dtype.kind == "f":
            values = values.astype(dtype)
        present = np.zeros(len(names), dtype=bool)
        for p, (_kind, vals, pres) in found:
            rows, pos = self._live_rows[p], self._positions[p]
            if dtype.kind == "O" and vals.dtype.kind != "O":
                # boxed as get_attribute returns them (see attributes.to_python)
                boxed = np.empty(vals.size, dtype=object)
                boxed[:] = vals.tolist() if _kind in _PLAIN else list(vals)
                vals = boxed
            values[pos] = vals[rows]
            present[pos] = pres[rows].astype(bool)
        if dtype.kind == "O":
            values[~present] = None
        return values, present

    def array_names(self) -> list[str]:
        """Sorted array names defined by at least one live dataset."""
        self._resolve()
        out = set()
        for reader, rows in zip(self._readers, self._live_rows):
            for name in reader.stats_groups():
                if name not in out:
                    _, has = reader.stats(name, "slot")
                    if has[rows].any():
                        out.add(name)
        return sorted(out)

    def stats_column(self, array: str, field: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values, valid)`` of one per-array stats field, aligned to :meth:`names`.

        Fields: ``slot``, ``dtype`` (names), ``row_count``, ``null_count`` (valid
        where stats are recorded), ``min``, ``max`` (float64; valid where the array
        has a valid cell; NaN for strings), ``min_exact``, ``max_exact`` (the exact
        typed values, object array), ``shape`` (tuples).  ``valid`` is False where a
        dataset does not have the array or the field is unknown for it.
        """
        if field not in STATS_FIELDS:
            raise KeyError(f"unknown stats field {field!r:.80}; expected one of {', '.join(STATS_FIELDS)}")
        names = self._resolve()
        part_field = "dtype_code" if field == "dtype" else field
        if field in _OBJECT_FIELDS:
            values = np.full(len(names), None, dtype=object)
        elif field in ("min", "max"):
            values = np.full(len(names), np.nan)
        else:
            values = np.zeros(len(names), dtype=np.uint64)
        valid = np.zeros(len(names), dtype=bool)
        for reader, rows, pos in zip(self._readers, self._live_rows, self._positions):
            got = reader.stats(array, part_field)
            if got is None:
                continue
            vals, ok = got
            if field == "dtype":
                vals = np.array(DTYPE_CODES, dtype=object)[vals]
            values[pos] = vals[rows]
            valid[pos] = ok[rows]
        if field in _OBJECT_FIELDS:
            values[~valid] = None
        return values, valid

    def live_slots(self, array: str) -> np.ndarray:
        """Sorted uint64 slots of ``array`` in every live dataset (no record decoded)."""
        self._resolve()
        out = []
        for reader, rows in zip(self._readers, self._live_rows):
            got = reader.stats(array, "slot")
            if got is not None:
                slots, has = got
                out.append(slots[rows][has[rows]])
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


def winning_rows(readers: Sequence[PartReader], keep_tombstones: bool) -> tuple[list[list[str]], list[np.ndarray]]:
    """Per part (oldest first): the names and rows that win (no newer part has the name).

    Tombstone rows are left out unless ``keep_tombstones``.
    """
    kept: list[list[str]] = []
    rows: list[np.ndarray] = []
    shadow: list[str] = []  # names of newer parts: they hide older rows
    for reader in reversed(readers):
        names = reader.names()
        live = np.ones(len(names), dtype=bool) if keep_tombstones else ~reader.tombstones()
        if shadow:
            live = live.copy()
            for name in shadow:
                row = reader.find(name)
                if row >= 0:
                    live[row] = False
        idx = np.flatnonzero(live)
        kept.append(names if idx.size == len(names) else [names[i] for i in idx.tolist()])
        rows.append(idx)
        shadow.extend(names)
    kept.reverse()
    rows.reverse()
    return kept, rows


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
            pos[small] += ranks
            pos[big] += np.searchsorted(ranks, np.arange(len(target)), side="right")
    return pos
