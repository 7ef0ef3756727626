"""Interned array schemas of a stats group: each row's array without decoding its record.

A stats group ``s{j}`` whose flags have :data:`FLAG_SCHEMAS` also holds ``schema`` (u32
per row: a code into the dictionary) and ``schemas`` (the dictionary: a MessagePack
array of the distinct *templates*, each a v1 array object minus ``slot``, ``shape``
and ``stats``, which vary per row and have columns of their own).  A bulk read builds
each dataset's :class:`~atlas.metadata.ArrayMeta` from the ``slot``, ``ndim``,
``extents`` and ``schema`` columns and the few templates (each checked once per
distinct shape), instead of decompressing and decoding one record per dataset
(``docs/format-v2.md`` §4.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from atlas import metadata
from atlas.errors import CorruptStoreError
from atlas.metadata import ArrayMeta

if TYPE_CHECKING:
    from atlas.catalog.part import PartReader

__all__ = ["FLAG_SCHEMAS", "SchemaInterner", "SchemaTable", "read_schema_table", "template_bytes"]

#: Stats group flag: the group has the ``schema`` and ``schemas`` columns.
FLAG_SCHEMAS = 4
#: The keys a template may hold (a v1 array object without slot, shape and stats).
TEMPLATE_KEYS = frozenset(("dtype", "dims", "chunk_shape", "fill_value", "attributes"))
_INT64_MAX = 2**63 - 1


def template_bytes(am: ArrayMeta) -> bytes:
    """The packed template of ``am``: its v1 array object without slot, shape and stats."""
    obj = metadata.array_to_dict(am)
    del obj["slot"], obj["shape"]
    obj.pop("stats", None)
    return msgpack.packb(obj, use_bin_type=True)


class SchemaInterner:
    """Gives each distinct template a code, in order of first use."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self._codes: dict[bytes, int] = {}
        self._memo: dict[tuple, int] = {}

    def code_of(self, packed: bytes) -> int:
        """The code of one packed template (a new one is appended)."""
        code = self._codes.get(packed)
        if code is None:
            code = self._codes[packed] = len(self.items)
            self.items.append(packed)
        return code

    def code(self, am: ArrayMeta) -> int:
        """The code of the template of ``am``."""
        if am.attributes:
            return self.code_of(template_bytes(am))
        # Datasets built alike share their template: packing it once per distinct key
        # instead of once per row.  ``repr`` tells -0.0 from 0.0 and NaN from NaN,
        # which equality would merge; the key only memoises, the bytes decide.
        fill = am.fill_value
        key = (am.dtype, am.dims, am.chunk_shape, type(fill), repr(fill))
        code = self._memo.get(key)
        if code is None:
            code = self._memo[key] = self.code_of(template_bytes(am))
        return code

    def column(self) -> bytes:
        """The ``schemas`` column: a MessagePack array of the templates."""
        packer = msgpack.Packer(use_bin_type=True)
        return packer.pack_array_header(len(self.items)) + b"".join(self.items)


class SchemaTable:
    """The schema columns of one stats group of one part, checked.

    ``has`` is True for the rows that have the array (``state > 0``).
    """

    def __init__(self, reader: PartReader, j: int, array: str) -> None:
        p = f"s{j}."
        self.where = f"{reader.where} array {array!r}"
        state = reader.fixed(p + "state")
        if state.size and state.max() > 3:
            raise CorruptStoreError(f"{self.where}: stats state out of range")
        self.has = state > 0
        self.slot = reader.fixed(p + "slot")
        self.ndim = reader.fixed(p + "ndim")
        self.starts = np.concatenate(([0], np.cumsum(self.ndim, dtype=np.int64)))
        self.extents = reader.fixed(p + "extents", int(self.starts[-1]))
        self.codes = reader.fixed(p + "schema")
        raw = reader.column_bytes(p + "schemas", None)
        try:
            items = msgpack.unpackb(raw.tobytes(), raw=False, strict_map_key=True, max_bin_len=0)
        except Exception as exc:
            raise CorruptStoreError(f"{self.where}: schema dictionary cannot be decoded: {exc}") from None
        if not isinstance(items, list) or not all(isinstance(t, dict) and t.keys() <= TEMPLATE_KEYS for t in items):
            raise CorruptStoreError(f"{self.where}: schema dictionary does not hold templates")
        self.templates: list[dict[str, Any]] = items
        live = self.codes[self.has]
        if live.size and int(live.max()) >= len(items):
            raise CorruptStoreError(f"{self.where}: schema code out of range")
        if np.any(self.slot[self.has] == 0):
            raise CorruptStoreError(f"{self.where}: slot 0 in a row that has the array")
        self._protos: dict[tuple[int, tuple[int, ...]], ArrayMeta] = {}
        self._packed: list[bytes] | None = None
        self._kept: np.ndarray | None = None
        self._built: np.ndarray | None = None

    def template_bytes(self) -> list[bytes]:
        """Each template packed again (what :class:`SchemaInterner` keys them by)."""
        return [msgpack.packb(t, use_bin_type=True) for t in self.templates]

    def shape(self, row: int) -> tuple[int, ...]:
        """The shape of ``row`` from ``extents``."""
        return tuple(self.extents[self.starts[row] : self.starts[row + 1]].tolist())

    def _proto(self, code: int, shape: tuple[int, ...]) -> ArrayMeta:
        """The checked array of template ``code`` with ``shape`` (slot 1)."""
        key = (code, shape)
        proto = self._protos.get(key)
        if proto is None:
            try:
                proto = metadata.array_from_dict({**self.templates[code], "slot": 1, "shape": list(shape)})
            except Exception as exc:  # the v1 array checks, on a template and a row's shape
                raise CorruptStoreError(f"{self.where}: schema {code} does not follow the format: {exc}") from None
            self._protos[key] = proto
        return proto

    def metas(self, rows: np.ndarray) -> np.ndarray:
        """Object array: the :class:`ArrayMeta` of each row of ``rows`` (None where absent).

        The arrays carry no ``stats`` (a bulk read needs none) and share their
        ``dims``, ``shape`` and ``attributes`` objects: read-only.  They are kept, so a
        repeated bulk read builds none (as a handle kept the arrays it decoded).
        """
        if self._kept is None:
            self._kept = np.full(self.has.size, None, dtype=object)
            self._built = np.zeros(self.has.size, dtype=bool)
        need = rows[~self._built[rows]]
        if need.size:
            need = np.unique(need)
            self._kept[need] = self._build(need)
            self._built[need] = True
        return self._kept[rows]

    def check(self) -> None:
        """Check every row's template with its shape (``verify``; nothing kept)."""
        self._build(np.arange(self.has.size))

    def _build(self, rows: np.ndarray) -> np.ndarray:
        out = np.full(rows.size, None, dtype=object)
        sel = np.flatnonzero(self.has[rows])
        if not sel.size:
            return out
        r = rows[sel]
        codes = self.codes[r].astype(np.uint64)
        ndim = self.ndim[r]
        d = int(ndim[0])
        if np.all(ndim == d):
            # One rank (the usual case): the distinct (code, shape) pairs, numbered by
            # combining per-column ranks (integer uniques; rows of a 2-d array sort slowly).
            starts = self.starts[r]
            key = np.zeros(r.size, np.int64)
            for col in (codes, *(self.extents[starts + k] for k in range(d))):
                values, ranks = np.unique(col, return_inverse=True)
                key = np.unique(key * values.size + ranks.reshape(-1), return_inverse=True)[1].reshape(-1)
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            protos = [self._proto(int(codes[i]), self.shape(int(r[i]))) for i in first.tolist()]
            which = map(protos.__getitem__, inverse.reshape(-1).tolist())
        else:
            which = (self._proto(int(c), self.shape(int(row))) for c, row in zip(codes.tolist(), r.tolist()))
        out[sel] = [
            ArrayMeta(s, p.dtype, p.dims, p.shape, p.chunk_shape, p.fill_value, p.attributes)
            for s, p in zip(self.slot[r].tolist(), which)
        ]
        return out

    def check_row(self, row: int, am: ArrayMeta | None) -> None:
        """Check that the columns of ``row`` agree with its record's array ``am`` (``verify``)."""
        if bool(self.has[row]) != (am is not None):
            raise CorruptStoreError(f"{self.where} row {row}: stats state disagrees with the record")
        if am is None:
            return
        if self._packed is None:
            self._packed = self.template_bytes()
        packed = self._packed[int(self.codes[row])]
        if int(self.slot[row]) != am.slot or self.shape(row) != am.shape or packed != template_bytes(am):
            raise CorruptStoreError(f"{self.where} row {row}: schema columns disagree with the record")


def read_schema_table(reader: PartReader, array: str) -> SchemaTable | None:
    """The schema table of ``array`` in ``reader``'s part, or None for a group without one."""
    found = reader.stats_groups().get(array)
    if found is None or not found[1] & FLAG_SCHEMAS:
        return None
    columns = reader.index.columns
    if f"s{found[0]}.schema" not in columns and f"s{found[0]}.schemas" not in columns:
        # Merges by writers that predate flag 4 OR the groups' flags and write neither
        # column (docs/format-v2.md §4.4): the records hold the arrays.  One column
        # without the other is damage, refused by SchemaTable.
        return None
    return SchemaTable(reader, found[0], array)
