"""The names of one catalogue part: decoded, checked, searched and keyed.

A part's ``name`` column holds its rows' dataset names, sorted and distinct, each
ended by the byte 0xFF (never UTF-8).  :class:`PartNames` is the part of
:class:`~atlas.catalog.part.PartReader` that reads that column: the whole list
(:meth:`~PartNames.names`), the names of a few rows (:meth:`~PartNames.names_of`),
fixed-width byte keys that numpy can merge and search (:meth:`~PartNames.name_keys`),
and the part's first and last names (:meth:`~PartNames.name_range`).  When every
name has one length (numbered names, the common case) the column is a grid of
rows and most of this is arithmetic on its bytes.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from atlas.catalog.encoding import decode_strings
from atlas.errors import CorruptStoreError

__all__ = ["PartNames"]

#: Names keys (:meth:`PartNames.name_keys`) are made for names of at most this many
#: UTF-8 bytes, and at most this many bytes of keys per part.
_MAX_KEY_WIDTH = 256
_MAX_KEY_BYTES = 256 << 20


class PartNames:
    """The name column of a catalogue part (a mixin of :class:`~atlas.catalog.part.PartReader`).

    The reader provides its row count, its name for messages, its column cache
    and :meth:`column_bytes`.
    """

    where: str
    _columns: dict[str, Any]
    _names_ordered: bool

    @property
    def rows(self) -> int:
        """The part's row count (the reader's)."""
        raise NotImplementedError

    def column_bytes(self, name: str, raw_length: int | None) -> np.ndarray:
        """The verified, decompressed bytes of one column (the reader's)."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """Every row's dataset name, sorted (checked)."""
        if "name" not in self._columns:
            held = self._columns.pop("name ends", None)  # the bytes a search already read
            raw = self.column_bytes("name", None) if held is None else held[0]
            step = self._fixed_step(raw) if held is None else held[2]
            checked = self._names_ordered or self._columns.get("name keys") is not None  # keys checked in order
            if not checked and step:  # rows of one width: their order checked on the bytes
                self._check_grid_order(raw, step)
                checked = True
            names = self._decode_grid(raw, step) if step else None
            if names is None:
                names = decode_strings(raw, self.rows, f"{self.where} column 'name'")
            if not checked and not all(map(operator.lt, names, itertools.islice(names, 1, None))):
                raise CorruptStoreError(f"{self.where}: names are not sorted and distinct")
            self._columns["name"] = names
        return self._columns["name"]

    def _fixed_step(self, raw: np.ndarray) -> int:
        """The bytes per row when every name of the column ``raw`` has one length
        (each row's terminator where that puts it), else 0."""
        n = self.rows
        step = raw.size // n if n and raw.size % n == 0 else 0
        return step if step > 1 and bool(np.all(raw[step - 1 :: step] == 0xFF)) else 0

    def _decode_grid(self, raw: np.ndarray, step: int) -> list[str] | None:
        """The names of rows of ``step`` bytes, or None when one holds a NUL byte.

        The terminators become NUL in a copy of the bytes, decoded in one strict
        pass (an ASCII byte cannot complete a multi-byte sequence, so each name's
        UTF-8 is checked on its own) and split: no other copy of the column is
        made, which keeps the peak memory of a large part's listing down.
        """
        if not raw.size or int(raw.min()) == 0:
            return None
        copied = raw.copy()
        copied[step - 1 :: step] = 0
        try:
            text = str(copied, "utf-8")
        except UnicodeDecodeError:
            raise CorruptStoreError(f"{self.where} column 'name': string column holds invalid UTF-8") from None
        del copied  # before the split makes the names
        names = text.split("\0")
        names.pop()  # the empty tail after the last terminator
        return names

    def _check_grid_order(self, raw: np.ndarray, step: int) -> None:
        """Check rows of ``step`` bytes (each a name and its terminator) sorted and
        distinct, each compared as one fixed-width string (UTF-8 bytes compare in
        code point order), and that no name holds the terminator byte: the rows
        were placed by arithmetic, so one more 0xFF inside a name (never UTF-8)
        would make rows of what are not the part's names."""
        n = self.rows
        words = _row_words(raw.reshape(n, step)[:, : step - 1])
        if int(words.view(np.uint8).max(initial=0)) == 0xFF:  # the bytes of the names (and zero padding)
            raise self._terminator_inside()
        if not _words_ascending(words):
            raise CorruptStoreError(f"{self.where}: names are not sorted and distinct")
        self._names_ordered = True

    def _name_layout(self) -> tuple[np.ndarray, np.ndarray | None, int]:
        """The names column's bytes (uint8), each row's terminator offset and the
        bytes per row (kept): when every name has one length (numbered names), the
        offsets are not made (None) and the bytes per row tell where each row is."""
        out = self._columns.get("name ends")
        if out is None:
            raw = self.column_bytes("name", None)
            n = self.rows
            step = self._fixed_step(raw)
            if step:
                # Every terminator where it must be; a 0xFF byte inside a name is
                # not UTF-8, so decoding that name refuses it.
                out = (raw, None, step)
            else:
                ends = np.flatnonzero(raw == 0xFF)
                if ends.size != n or (ends.size and ends[-1] != raw.size - 1) or (not ends.size and raw.size):
                    raise CorruptStoreError(f"{self.where} column 'name': string column does not hold {n} values")
                out = (raw, ends, 0)
            self._columns["name ends"] = out
        return out

    def name_ends(self) -> tuple[np.ndarray, np.ndarray]:
        """The names column's bytes (uint8) and the offset of each row's terminator (kept).

        What a search needs to decode the names of its result rows only.
        """
        raw, ends, step = self._name_layout()
        if ends is None:
            ends = np.arange(step - 1, raw.size, step, dtype=np.int64)
            self._columns["name ends"] = (raw, ends, step)
        return raw, ends

    def _name_bounds(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The names column's bytes, and where the names of rows ``idx`` start and end."""
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.rows):
            raise IndexError(f"row out of range for {self.where} of {self.rows} rows")
        raw, ends, step = self._name_layout()
        if ends is None:
            first = idx * step
            return raw, first, first + (step - 1)
        return raw, np.where(idx > 0, ends[idx - 1] + 1, 0), ends[idx]

    def name_keys(self) -> np.ndarray | None:
        """Every row's name as a fixed-width ``bytes`` numpy array (checked sorted and
        distinct, kept), or None when the names do not fit that form.

        UTF-8 bytes compare in code point order, so these keys sort as the names do
        and numpy can merge and search them without a Python step per row.  Names
        holding a NUL byte (the padding of the fixed width) or too long for a
        compact array have no keys: callers use :meth:`names` then.  A 0xFF byte
        inside a name (the terminator; never UTF-8) raises ``CorruptStoreError``.
        """
        if "name keys" in self._columns:
            return self._columns["name keys"]
        raw, ends, step = self._name_layout()
        n = self.rows
        keys = None
        if ends is None:  # names of one length (numbered names): a reshape
            width = step - 1
            if width <= _MAX_KEY_WIDTH and n * width <= _MAX_KEY_BYTES and int(raw.min()) != 0:
                grid = np.ascontiguousarray(raw.reshape(n, step)[:, :width])
                # The layout placed the terminators by arithmetic: a 0xFF byte left is
                # inside a name (not UTF-8), whose key would match no name it stands for.
                if grid.size and int(grid.max()) == 0xFF:
                    raise self._terminator_inside()
                keys = grid.view(f"S{width}").ravel()
        elif n:
            starts = np.empty(n, dtype=np.int64)
            starts[:1] = 0
            starts[1:] = ends[:-1] + 1
            lengths = ends - starts
            width = int(lengths.max())
            if 0 < width <= _MAX_KEY_WIDTH and n * width <= _MAX_KEY_BYTES and int(raw.min()) != 0:
                inside = np.flatnonzero(raw != 0xFF)
                grid = np.zeros((n, width), dtype=np.uint8)
                grid.reshape(-1)[inside + np.repeat(np.arange(n) * width - starts, lengths)] = raw[inside]
                keys = grid.view(f"S{width}").ravel()
        if keys is not None and n > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise CorruptStoreError(f"{self.where}: names are not sorted and distinct")
        self._columns["name keys"] = keys
        return keys

    def name_keys_of(self, rows: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """The name keys (as :meth:`name_keys` makes them) of ascending ``rows`` only,
        checked ascending; None when one of those names holds a NUL byte or is too long
        (``CorruptStoreError`` for a 0xFF byte, as :meth:`name_keys`).

        What a search needs to test its result rows against newer parts' names
        without making the keys of every row of a large part.
        """
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if not idx.size:
            return np.zeros(0, dtype="S1")
        raw, first, last = self._name_bounds(idx)
        lengths = last - first
        width = max(int(lengths.max()), 1)
        if width > _MAX_KEY_WIDTH or idx.size * width > _MAX_KEY_BYTES:
            return None
        step = self._name_layout()[2]
        if step:  # names of one length: whole rows gathered from the column's row-per-name view
            # whole rows taken, then cut: a take from the cut (strided) view copies all of it first
            grid = np.take(raw.reshape(-1, step), idx, axis=0)[:, :width]
            if not grid.all():  # a NUL byte (the padding) in a name
                return None
            if bool((grid == 0xFF).any()):  # the rows were located by arithmetic (see name_keys)
                raise self._terminator_inside()
        else:
            before = np.cumsum(lengths) - lengths  # key bytes of the rows before each row
            step = np.arange(int(lengths.sum()))
            grid = np.zeros((idx.size, width), dtype=np.uint8)
            grid.reshape(-1)[np.repeat(np.arange(idx.size) * width - before, lengths) + step] = raw[
                np.repeat(first - before, lengths) + step
            ]
            if int(np.count_nonzero(grid)) != int(lengths.sum()):  # a NUL byte (the padding) in a name
                return None
        keys = np.ascontiguousarray(grid).view(f"S{width}").ravel()
        if keys.size > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise CorruptStoreError(f"{self.where}: names are not sorted and distinct")
        return keys

    def _terminator_inside(self) -> CorruptStoreError:
        return CorruptStoreError(f"{self.where} column 'name': a name holds the terminator byte 0xFF")

    def release_name_keys(self) -> None:
        """Drop the name keys (a catalogue keeps what it computed from them); the
        order they proved is remembered, so :meth:`names` does not check it again."""
        keys = self._columns.pop("name keys", None)
        self._names_ordered = self._names_ordered or keys is not None

    def names_of(self, rows: Sequence[int]) -> list[str]:
        """The names of ``rows``, in that order: only those are decoded, unless more
        than a quarter of the part is asked for (then the whole column, checked)."""
        idx = np.asarray(rows, dtype=np.int64)
        if "name" in self._columns or 4 * idx.size > self.rows:
            names = self.names()
            if idx.size == len(names) and (not idx.size or (idx[0] == 0 and bool(np.all(np.diff(idx) == 1)))):
                return list(names)  # every row (a search that keeps them all)
            return [names[r] for r in idx.tolist()]
        if not idx.size:
            return []
        raw, first, last = self._name_bounds(idx)
        spans = last - first + 1  # each name and its terminator
        stop = np.cumsum(spans)
        buf = raw[np.repeat(first - (stop - spans), spans) + np.arange(int(stop[-1]))]
        try:
            if not bool(np.any(buf == 0)):  # one decode, split at the terminators (made NUL)
                buf[stop - 1] = 0
                return buf[:-1].tobytes().decode("utf-8").split("\0")
            blob = memoryview(raw)  # names holding a NUL byte: one by one
            return [str(blob[a:b], "utf-8") for a, b in zip(first.tolist(), last.tolist())]
        except UnicodeDecodeError:
            raise CorruptStoreError(f"{self.where} column 'name': string column holds invalid UTF-8") from None

    def name_range(self) -> tuple[str, str] | None:
        """The part's first and last names (checked sorted and distinct), or None
        when it has no rows.

        What rules a part out of a lookup of names outside its range.  When every
        name has one length (numbered names), the order is checked on the column's
        bytes (:meth:`_check_grid_order`) and only the two names are decoded;
        otherwise :meth:`names` decodes and checks them all.
        """
        out = self._columns.get("name range")
        if out is None and self.rows:
            n = self.rows
            if "name" not in self._columns and not self._names_ordered:
                raw, _, step = self._name_layout()
                if step:
                    self._check_grid_order(raw, step)
                else:
                    self.names()
            first, last = self.names_of([0, n - 1])
            out = self._columns["name range"] = (first, last)
        return out

    def name_range_is_cheap(self) -> bool:
        """Whether :meth:`name_range` decodes two names at most (it decodes them all
        when they have several lengths and are neither decoded nor checked yet);
        reads the names column's bytes."""
        if not self.rows or "name range" in self._columns or "name" in self._columns or self._names_ordered:
            return True
        return self._name_layout()[2] > 0

    def find(self, name: str) -> int:
        """Row of ``name`` in this part, or -1."""
        names = self.names()
        i = bisect.bisect_left(names, name)
        return i if i < len(names) and names[i] == name else -1


def _row_words(grid: np.ndarray) -> np.ndarray:
    """The rows of the ``(n, width)`` uint8 ``grid`` as ``(n, words)`` unsigned
    integers in native order that compare as the rows' bytes do: each row
    zero-padded to whole 8-byte words, each word read big-endian."""
    n, width = grid.shape
    words = -(-width // 8)
    padded = np.zeros((n, 8 * words), dtype=np.uint8)
    padded[:, :width] = grid
    keys = padded.view(">u8")
    if keys.dtype != keys.dtype.newbyteorder("="):  # native order (in place): numpy compares it as it is
        keys = keys.byteswap(inplace=True).view(keys.dtype.newbyteorder("="))
    return keys


def _words_ascending(keys: np.ndarray) -> bool:
    """Whether the rows of :func:`_row_words` are strictly ascending.

    Comparing two rows is comparing their word tuples: a few vectorised passes
    over the words, about half the cost of comparing fixed-width strings.
    """
    if keys.shape[0] < 2:
        return True
    words = keys.shape[1]
    later, earlier = keys[1:], keys[:-1]
    ascending = later[:, words - 1] > earlier[:, words - 1]
    for k in range(words - 2, -1, -1):  # a word decides unless it is equal, then the words after it
        a, b = later[:, k], earlier[:, k]
        ascending = (a > b) | ((a == b) & ascending)
    return bool(ascending.all())
