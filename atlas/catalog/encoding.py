"""Value encodings shared by the part writer and reader.

* string columns: every string's UTF-8 bytes followed by the byte ``0xFF`` (which
  never occurs in UTF-8), so a whole column decodes and splits in two C-level
  passes instead of one Python call per string;
* dataset records: the v1 dataset object (``docs/format.md`` §3.2) in msgpack,
  attribute floats as native msgpack floats, decoded with the v1 checks.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from atlas import dtypes, metadata
from atlas.errors import CorruptStoreError, InvalidArgumentError
from atlas.metadata import ArrayMeta, DatasetMeta

__all__ = [
    "INTERNAL_PREFIX",
    "RecordEncoder",
    "alike_arrays",
    "decode_arrays",
    "decode_record",
    "decode_strings",
    "encode_record",
    "encode_strings",
    "is_internal_key",
]

#: Dataset attribute keys with this prefix belong to the xarray mapping: they are
#: kept in the records but get no search column.
INTERNAL_PREFIX = "_atlas_xarray"
_SEP = "\udcff"  # 0xFF under surrogateescape
#: Bytes a string column is split on after decoding, the first it does not hold.
_SPLITTERS = (b"\x00", b"\x01", b"\x1f", b"\n")


def is_internal_key(key: str) -> bool:
    """True for attribute keys of the xarray mapping (no search column)."""
    return key.startswith(INTERNAL_PREFIX)


def encode_strings(values: list[str]) -> bytes:
    """``utf8(v) + b"\\xff"`` for every value, concatenated."""
    if not values:
        return b""
    try:
        "".join(values).encode("utf-8")  # strict: refuses lone surrogates
    except UnicodeEncodeError:
        raise InvalidArgumentError("a catalogue string is not valid unicode (it holds a lone surrogate)") from None
    blob = (_SEP.join(values) + _SEP).encode("utf-8", "surrogateescape")
    return blob


def decode_strings(raw: np.ndarray | bytes, count: int, where: str) -> list[str]:
    """Inverse of :func:`encode_strings`; checks the count and the UTF-8."""
    blob = raw.tobytes() if isinstance(raw, np.ndarray) else bytes(raw)
    if blob.count(b"\xff") != count or (count and blob[-1:] != b"\xff") or (not count and blob):
        raise CorruptStoreError(f"{where}: string column does not hold {count} values")
    if not count:
        return []
    # The terminator becomes a control byte the column does not hold: a strict
    # decode then checks every string's UTF-8 on its own (an ASCII byte cannot
    # complete a multi-byte sequence) and the text splits into compact strings.
    sep = next((c for c in _SPLITTERS if c not in blob), None)
    try:
        if sep is not None:
            out = blob.replace(b"\xff", sep).decode("utf-8").split(sep.decode())
        else:  # every control byte occurs: split on the escaped terminator instead
            blob.replace(b"\xff", b"\x00").decode("utf-8")
            out = blob.decode("utf-8", "surrogateescape").split(_SEP)
    except UnicodeDecodeError:
        raise CorruptStoreError(f"{where}: string column holds invalid UTF-8") from None
    out.pop()  # the empty tail after the last terminator
    return out


def record_dict(ds: DatasetMeta) -> dict[str, Any]:
    """The v1 dataset object of ``ds`` (msgpack-safe)."""
    return {
        "id": ds.id,
        "version": ds.version,
        # Typed attributes are packed as they are: floats stay MessagePack floats,
        # NaN and infinities included (the v1 string forms are accepted on read).
        "attributes": ds.attributes,
        "arrays": {a: metadata.array_to_dict(am) for a, am in ds.arrays.items()},
    }


def encode_record(ds: DatasetMeta | None) -> bytes:
    """One record: the dataset object in msgpack, ``nil`` for a tombstone."""
    return msgpack.packb(None if ds is None else record_dict(ds), use_bin_type=True)


def _key(name: str) -> bytes:
    return msgpack.packb(name, use_bin_type=True)


_ID, _VERSION, _ATTRIBUTES, _ARRAYS = _key("id"), _key("version"), _key("attributes"), _key("arrays")
_SLOT, _SHAPE, _STATS = _key("slot"), _key("shape"), _key("stats")
_RECORD_HEAD = b"\x84" + _ID
#: The header of each MessagePack map of fewer than 16 members.
_MAP_HEADERS = [bytes((0x80 | n,)) for n in range(16)]
#: Members of an array object packed per row (or in the head of the shared part).
_PER_ROW = frozenset(("slot", "dtype", "dims", "shape", "stats"))


class RecordEncoder:
    """:func:`encode_record` for many rows, the same bytes at a fraction of the cost.

    A MessagePack map is the concatenation of its keys and values, so the members of
    an array object that datasets made alike share (dtype, dims, chunk shape, fill
    value, attributes) are packed once per distinct array schema and joined with the
    members that vary per row (slot, shape, stats); one packer serves every value.
    """

    def __init__(self) -> None:
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._halves: dict[tuple, tuple[bytes, bytes, int, bool]] = {}
        #: ``(dtype, dims, chunk_shape, halves)`` of the last array without fill value or attributes.
        self._last: tuple | None = None
        #: Packed members that rows made alike repeat, one dict each: versions, array
        #: names with their map header, shapes, stats counts (bounded: see :meth:`_remember`).
        self._versions: dict[int, bytes] = {}
        self._names: dict[tuple[str, int], bytes] = {}
        self._shapes: dict[tuple[int, ...], bytes] = {}
        self._counts: dict[tuple[int, int], bytes] = {}

    def _schema(self, am: ArrayMeta) -> tuple[bytes, bytes, int, bool]:
        """``(dtype + dims, chunk_shape + fill_value [+ attributes], members, float dtype)`` of ``am``.

        The first two packed; the last tells whether stats extremes are floats.
        """
        fill = am.fill_value
        # repr tells -0.0 from 0.0 and NaN apart; attributes are rare and packed each time
        if am.attributes:
            key = None
        elif fill is None:  # the usual case, without the cost of repr
            last = self._last  # rows made alike follow each other: compared, not hashed
            if last is not None and am.dtype == last[0] and am.dims == last[1] and am.chunk_shape == last[2]:
                return last[3]
            key = (am.dtype, am.dims, am.chunk_shape)
        else:
            key = (am.dtype, am.dims, am.chunk_shape, type(fill), repr(fill))
        got = self._halves.get(key) if key is not None else None
        if got is None:
            obj = metadata.array_to_dict(am)
            pack = self._pack
            head = pack("dtype") + pack(obj["dtype"]) + pack("dims") + pack(obj["dims"])
            tail = b"".join(pack(k) + pack(v) for k, v in obj.items() if k not in _PER_ROW)
            got = (head, tail, len(obj) - ("stats" in obj), dtypes.is_float(am.dtype))
            if key is not None:
                self._halves[key] = got
        if key is not None and len(key) == 3:
            self._last = (*key, got)
        return got

    def encode(self, ds: DatasetMeta | None, attributes: bytes | None = None) -> bytes:
        """The record of ``ds`` (``nil`` for a tombstone), as :func:`encode_record`.

        ``attributes``, when given, is ``ds.attributes`` already packed.
        """
        if ds is None:
            return b"\xc0"
        pack = self._pack
        arrays = ds.arrays
        version = ds.version
        packed_version = self._versions.get(version) if type(version) is int else None
        if packed_version is None:
            packed_version = _remember(self._versions, version, _VERSION + pack(version) + _ATTRIBUTES)
        if attributes is None:
            attributes = pack(ds.attributes)
        out = [_RECORD_HEAD, pack(ds.id), packed_version, attributes, _ARRAYS,
               _MAP_HEADERS[len(arrays)] if len(arrays) < 16 else _map_header(len(arrays))]  # fmt: skip
        for name, am in arrays.items():
            head, tail, members, floats = self._schema(am)
            stats = am.stats
            members += stats is not None
            named = self._names.get((name, members))
            if named is None:
                named = _remember(self._names, (name, members), pack(name) + _MAP_HEADERS[members] + _SLOT)
            shape = am.shape
            packed_shape = self._shapes.get(shape) if type(shape) is tuple else None
            if packed_shape is None:
                packed_shape = _remember(self._shapes, shape, _SHAPE + pack(shape))
            out += [named, pack(am.slot), head, packed_shape, tail]
            if stats is not None:
                lo, hi = stats.minimum, stats.maximum
                if floats:
                    # dtypes.encode_value of a float: only NaN and the infinities are
                    # not themselves (for them x - x is not 0)
                    if lo is not None:
                        lo = float(lo)
                        if lo - lo != 0.0:
                            lo = dtypes.encode_value(lo, am.dtype)
                    if hi is not None:
                        hi = float(hi)
                        if hi - hi != 0.0:
                            hi = dtypes.encode_value(hi, am.dtype)
                # the stats object of v1 §3.4: row_count, null_count, min, max
                counts = (stats.row_count, stats.null_count)
                packed_counts = self._counts.get(counts) if type(counts[0]) is int and type(counts[1]) is int else None
                if packed_counts is None:
                    packed_counts = _remember(self._counts, counts, _STATS_HEAD + pack(counts[0]) + _NULL_COUNT
                                                   + pack(counts[1]) + _MIN)  # fmt: skip
                out += [packed_counts, pack(lo), _MAX, pack(hi)]
        return b"".join(out)

    def encode_alike(
        self,
        metas: Sequence[DatasetMeta | None],
        attributes: Sequence[bytes] | None = None,
        alike: tuple | None = None,
    ) -> list[bytes]:
        """:meth:`encode` of every row of ``metas``: the same bytes, by C-level passes for rows made alike.

        Rows made alike: one version, one array of one name, dtype, dims, chunk
        shape and shape, no fill value nor array attributes, stats with finite
        float extremes (or any extremes for other dtypes).  Their records differ only
        in the id, the attribute map, the slot and the stats, so each record is
        joined from those and the members packed once.  Other rows are encoded one
        by one.  ``attributes``, when given, are the rows' attribute maps packed;
        ``alike``, when given, is :func:`alike_arrays` of ``metas`` (a caller that
        encodes a part block by block checks its rows once), possibly followed by
        the float stats of the rows (:meth:`~atlas.catalog.build.FloatStats.columns`,
        sliced to ``metas``).
        """
        n = len(metas)
        joined = self._alike(metas, attributes, alike) if n else None
        if joined is not None:
            return joined
        if attributes is None:
            return list(map(self.encode, metas))
        return list(map(self.encode, metas, attributes))

    def _alike(
        self,
        metas: Sequence[DatasetMeta | None],
        attributes: Sequence[bytes] | None,
        alike: tuple | None = None,
    ) -> list[bytes] | None:
        n = len(metas)
        if alike is None:
            alike = alike_arrays(metas)
            if alike is None:
                return None
        version, name, ams = alike[:3]
        first = ams[0]
        fields = list(itertools.chain.from_iterable(map(_ALIKE_FIELDS, ams)))
        # dtype, dims, chunk shape, shape equal in every row, no fill value, no attributes
        for k, value in enumerate((first.dtype, first.dims, first.chunk_shape, first.shape, None)):
            if fields[k::6].count(value) != n:
                return None
        if any(fields[5::6]) or type(first.shape) is not tuple:
            return None
        head, tail, members, floats = self._schema(first)
        pack = self._pack
        given = alike[3] if len(alike) > 3 and floats else None
        if given is not None:  # the rows' float stats, from the commit (see build.FloatStats)
            cells, null_counts, lo_a, hi_a, ext = given
            if not ext.all() or not (np.isfinite(lo_a).all() and np.isfinite(hi_a).all()):
                return None
            counts, nulls, lo, hi = itertools.repeat(pack(cells)), null_counts.tolist(), lo_a.tolist(), hi_a.tolist()
        else:
            stats = list(map(_STATS_OF, ams))
            if any(map(operator.is_, stats, itertools.repeat(None))):
                return None
            got = list(itertools.chain.from_iterable(map(_STATS_FIELDS, stats)))
            counts, nulls, lo, hi = map(pack, got[0::4]), got[1::4], got[2::4], got[3::4]
            if floats:
                if None in lo or None in hi:
                    return None
                lo, hi = list(map(float, lo)), list(map(float, hi))
                if not np.isfinite(np.array(lo + hi, dtype=np.float64)).all():  # NaN, inf: their v1 forms
                    return None
        if attributes is None:
            attributes = list(map(pack, map(_ATTRIBUTES_OF, metas)))
        repeat = itertools.repeat
        columns = (
            repeat(_RECORD_HEAD), map(pack, map(_ID_OF, metas)),
            repeat(_VERSION + pack(version) + _ATTRIBUTES), attributes,
            repeat(_ARRAYS + _MAP_HEADERS[1] + pack(name) + _MAP_HEADERS[members + 1] + _SLOT),
            map(pack, map(_SLOT_OF, ams)),
            repeat(head + _SHAPE + pack(first.shape) + tail + _STATS_HEAD), counts,
            repeat(_NULL_COUNT), map(pack, nulls), repeat(_MIN), map(pack, lo), repeat(_MAX), map(pack, hi),
        )  # fmt: skip
        return list(map(b"".join, zip(*columns)))


_V_OF, _ARRAYS_OF, _ATTRIBUTES_OF = (operator.attrgetter(f) for f in ("version", "arrays", "attributes"))
_ID_OF, _SLOT_OF, _STATS_OF = operator.attrgetter("id"), operator.attrgetter("slot"), operator.attrgetter("stats")
_ALIKE_FIELDS = operator.attrgetter("dtype", "dims", "chunk_shape", "shape", "fill_value", "attributes")
_STATS_FIELDS = operator.attrgetter("row_count", "null_count", "minimum", "maximum")


def alike_arrays(metas: Sequence[DatasetMeta | None]) -> tuple[int, str, list[ArrayMeta]] | None:
    """``(version, array name, arrays in row order)`` of rows made alike, by C-level passes; else None.

    Rows made alike (what a batch of new datasets gives): no tombstone, one integer
    version for all, one array per dataset and one array name for all.  Callers
    check what else their fast path needs of the arrays.
    """
    n = len(metas)
    # (operator.is_, not `None in` or list.count(None): those call the dataclass __eq__ per row)
    if not n or any(map(operator.is_, metas, itertools.repeat(None))):
        return None
    versions = list(map(_V_OF, metas))
    version = versions[0]
    if type(version) is not int or versions.count(version) != n:
        return None
    arrays = list(map(_ARRAYS_OF, metas))
    if list(map(len, arrays)).count(1) != n:
        return None
    names = list(itertools.chain.from_iterable(arrays))
    if names.count(names[0]) != n:
        return None
    return version, names[0], list(itertools.chain.from_iterable(map(dict.values, arrays)))


def _remember(memo: dict[Any, bytes], key: Any, packed: bytes) -> bytes:
    """``packed``, kept in ``memo`` under ``key`` while it is small (values that vary per row stop filling it)."""
    if len(memo) < _MEMO_SIZE:
        memo[key] = packed
    return packed


#: Most packed members an encoder keeps per kind.
_MEMO_SIZE = 4096
_STATS_HEAD = _STATS + b"\x84" + _key("row_count")
_NULL_COUNT, _MIN, _MAX = _key("null_count"), _key("min"), _key("max")


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    return b"\xde" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdf" + n.to_bytes(4, "big")


def decode_arrays(raw: bytes, where: str) -> dict[str, ArrayMeta] | None:
    """The ``arrays`` of a record, its attributes skipped undecoded; None for a tombstone.

    What a bulk read needs of each dataset: skipping the attributes (most of a
    record) at the C level costs a fraction of decoding them.  The arrays get the
    v1 checks; the attributes are checked when the record is decoded whole.
    """
    try:
        if raw[:1] == b"\xc0":  # nil
            return None
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_bin_len=0)
        unpacker.feed(raw)
        arrays = None
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "arrays":
                arrays = unpacker.unpack()
            else:
                unpacker.skip()
        if not isinstance(arrays, dict):
            raise CorruptStoreError("not a dataset object")
        return {str(a): metadata.array_from_dict(am) for a, am in arrays.items()}
    except Exception as exc:  # every decoder or schema failure is damage
        raise CorruptStoreError(f"{where}: dataset record does not follow the format: {exc}") from None


def decode_record(raw: bytes, where: str) -> DatasetMeta | None:
    """Inverse of :func:`encode_record`, with the v1 manifest checks."""
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0)
        if obj is None:
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("arrays"), dict):
            raise CorruptStoreError("not a dataset object")
        return DatasetMeta(
            id=metadata.checked_int(obj["id"], "dataset id"),
            version=metadata.checked_int(obj["version"], "dataset version"),
            attributes=metadata.attributes_from_dict(obj.get("attributes", {})),
            arrays={str(a): metadata.array_from_dict(am) for a, am in obj["arrays"].items()},
        )
    except Exception as exc:  # every decoder or schema failure is damage
        raise CorruptStoreError(f"{where}: dataset record does not follow the format: {exc}") from None
