"""Value encodings shared by the part writer and reader.

* string columns: every string's UTF-8 bytes followed by the byte ``0xFF`` (which
  never occurs in UTF-8), so a whole column decodes and splits in two C-level
  passes instead of one Python call per string;
* dataset records: the v1 dataset object (``docs/format.md`` §3.2) in msgpack,
  attribute floats as native msgpack floats, decoded with the v1 checks.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from atlas import metadata
from atlas.errors import CorruptStoreError, InvalidArgumentError
from atlas.metadata import ArrayMeta, DatasetMeta

__all__ = [
    "INTERNAL_PREFIX",
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
