"""The search columns of a catalogue snapshot, aligned to its sorted names.

:class:`SearchColumns` is the part of :class:`~atlas.catalog.Catalog` that reads
attribute and stats columns: each part's column is read once, its live rows
(the winning rows of :mod:`atlas.catalog.winners`) placed at their positions in
name order, and a part whose rows are all live is used as stored.
"""

from __future__ import annotations

import numpy as np

from atlas.catalog.build import DTYPE_CODES
from atlas.catalog.encoding import is_internal_key
from atlas.catalog.part import PartReader
from atlas.catalog.winners import runs_of

__all__ = ["STATS_FIELDS", "SearchColumns"]

#: The fields :meth:`Catalog.stats_column` knows.
STATS_FIELDS = ("slot", "dtype", "row_count", "null_count", "min", "max", "min_exact", "max_exact", "shape")
_OBJECT_FIELDS = frozenset(("dtype", "min_exact", "max_exact", "shape"))
#: Attribute dtypes ``get_attribute`` returns as plain Python values.
_PLAIN = frozenset(("int64", "float64", "bool", "string"))


class SearchColumns:
    """Attribute and stats columns of a :class:`~atlas.catalog.Catalog` (a mixin).

    The catalogue provides its part readers, the live rows and positions of each
    part (after ``_layout()``), and the per-part caches used here.
    """

    _readers: list[PartReader]
    _live_rows: list[np.ndarray]
    _positions: list[np.ndarray]
    _whole: bool
    _dead: dict[int, np.ndarray]
    _runs: dict[int, list[tuple[int, int, int]]]

    def _layout(self) -> int:
        raise NotImplementedError

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
        values = np.full(n, np.nan, dtype=dtype) if dtype.kind == "f" else np.zeros(n, dtype=dtype)
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
