"""Value-level conversions shared by writing and reading, and the reserved attribute keys.

* the ``_atlas_xarray`` layout constants and key helpers;
* text: surrogate-escaped strings and bytes that may not be UTF-8;
* attribute values: xarray value <-> (typed store value, kind marker), exactly invertible;
* numpy dtypes ATLAS cannot store natively (float16, non-native byte order, datetime64
  of any unit, timedelta64, bytes/unicode/object text) and their restoration on read.

This module is the leaf of the package: it imports nothing from :mod:`atlas.xarray`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from atlas import dtypes
from atlas.errors import DTypeError, ValueOverflowError

#: Version of the reserved attribute layout written by :func:`add_xr_dataset`.
LAYOUT_VERSION = 2
#: Layout 2 adds one marker (``_atlas_xarray/v/{i}/cf``); datasets without it are written as layout 1,
#: so older readers keep reading them and refuse only those they would misread.
LAYOUT_PACKED = 2
#: ``variable.encoding[CF_PACKED] = True`` on a variable holding CF-packed values (the file's integers with
#: ``_FillValue``/``scale_factor``/``add_offset``/``missing_value`` in ``attrs``): it is stored as it is
#: and decoded on read exactly as ``xr.open_dataset`` decodes it (mask and scale).
CF_PACKED = "atlas_cf_packed"
#: Prefix of every reserved attribute key (dataset and array names cannot start with ``_``).
PREFIX = "_atlas_xarray"
K_VARS = f"{PREFIX}/vars"
K_ARRAYS = f"{PREFIX}/arrays"
K_COORDS = f"{PREFIX}/coords"


def vkey(index: int, what: str) -> str:
    return f"{PREFIX}/v/{index}/{what}"


def where_var(name: Any) -> str:
    return f"variable {name!r}"


# ---------------------------------------------------------------------------------------------
# text: bytes and surrogate-escaped strings
# ---------------------------------------------------------------------------------------------


def sanitize_text(text: str) -> str:
    """Return ``text`` as valid unicode.

    Lone surrogates ``U+DC80``..``U+DCFF`` are how Python's ``surrogateescape`` keeps
    bytes it could not decode (netCDF-C hands Python such text for attributes not
    declared UTF-8).  The escaped bytes are decoded as UTF-8 when the whole text then
    is valid UTF-8 (``"\\udcc2\\udcb5mol"`` -> ``"µmol"``), else each becomes the
    Latin-1 character of its byte (``"\\udcb0C"`` -> ``"°C"``); any other lone
    surrogate becomes ``U+FFFD``.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    text = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF and not 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(ord(ch) - 0xDC00) if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in text)


def decode_all(items: Sequence[bytes]) -> tuple[list[str], str]:
    """Decode byte strings as UTF-8 when all are valid UTF-8, else all as Latin-1 (exactly invertible)."""
    try:
        return [b.decode("utf-8") for b in items], "utf-8"
    except UnicodeDecodeError:
        return [b.decode("latin-1") for b in items], "latin-1"


# ---------------------------------------------------------------------------------------------
# attribute values: xarray value <-> (typed store value, kind marker)
# ---------------------------------------------------------------------------------------------

_NATURAL_SCALARS = frozenset(["int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64", "float32"])


def numeric_storage(arr: np.ndarray, where: str) -> np.ndarray:
    """Native-endian numeric/bool data in a dtype ATLAS stores (float16 widened to float32)."""
    dtype = arr.dtype
    kind, size = dtype.kind, dtype.itemsize
    if dtype.isnative and (kind in "iub" or (kind == "f" and size in (4, 8))):
        return arr  # what astype to the native dtype with copy=False returns
    if kind == "f" and size == 2:
        return arr.astype("float32")
    if kind == "c":
        raise DTypeError(f"{where}: complex dtype {arr.dtype} is not supported; store real and imag parts separately")
    if kind in "iub" or (kind == "f" and size in (4, 8)):
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)
    raise DTypeError(f"{where}: dtype {arr.dtype} is not supported")


def datetime_to_ns(arr: np.ndarray, where: str) -> np.ndarray:
    """datetime64 of any unit as datetime64[ns]; ValueOverflowError when a value does not fit exactly."""
    if np.datetime_data(arr.dtype)[0] == "ns":
        return arr.astype("datetime64[ns]", copy=False)
    with np.errstate(all="ignore"):
        ns = arr.astype("datetime64[ns]")
    nat = np.isnat(arr)
    back = ns.astype(arr.dtype)
    if not (np.array_equal(np.isnat(ns), nat) and np.array_equal(back[~nat], arr[~nat])):
        raise ValueOverflowError(
            f"{where}: {arr.dtype} values outside 1678..2262 do not fit timestamp_nanoseconds; "
            "convert them to numbers (e.g. seconds since an epoch) first"
        )
    return ns


def timedelta_to_int(arr: np.ndarray) -> np.ndarray:
    unit = np.datetime_data(arr.dtype)[0]
    return arr.astype(f"<m8[{unit}]", copy=False).view("<i8")


def object_strings(flat: Sequence[Any], where: str) -> tuple[list[str], str | None]:
    """Elements of an object array as text: all str (kind None) or all bytes (kind = encoding)."""
    kinds = {type(x) for x in flat}
    if not kinds or kinds <= {str, np.str_}:
        return [sanitize_text(str(x)) for x in flat], None
    if kinds <= {bytes, np.bytes_}:
        return decode_all([bytes(x) for x in flat])
    names = sorted(k.__name__ for k in kinds)
    raise DTypeError(
        f"{where}: object data must hold only str or only bytes, got {', '.join(names)}; "
        "convert it to one type (missing strings as '' with a _FillValue)"
    )


def encode_attr_value(value: Any, where: str) -> tuple[Any, str | None, str]:
    """``(value for set_attribute, forced dtype or None, kind marker)`` for an xarray attribute.

    The kind marker (``""`` when the value reads back as itself) tells
    :func:`decode_attr_value` how to rebuild the exact Python/numpy type.
    """
    if value is None:
        return "", None, "none"
    if isinstance(value, np.generic):
        if value.nbytes > _MAX_SCALAR_BYTES:
            return _encode_attr_scalar(value, where)
        key = (value.dtype, value.tobytes())
        known = _SCALARS.get(key)
        if known is None:
            known = _encode_attr_scalar(value, where)
            if len(_SCALARS) < _MAX_SCALARS:
                _SCALARS[key] = known
        return known
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            raise ValueOverflowError(f"{where}: integer {value} does not fit int64 or uint64")
        if isinstance(value, int) and value >= 2**63:
            return value, None, "int"  # stored as uint64
        return value, None, ""
    if isinstance(value, str):
        return sanitize_text(value), None, ""
    if isinstance(value, (bytes, bytearray)):
        (text,), enc = decode_all([bytes(value)])
        return text, None, f"bytes;{enc}"
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            raise DTypeError(f"{where}: timezone-aware datetime {value!r}; convert it to naive UTC first")
        return np.datetime64(dtypes.datetime_to_ns(value, f"{where}: datetime"), "ns"), None, "pydatetime"
    if isinstance(value, _dt.date):
        return np.datetime64(dtypes.datetime_to_ns(value, f"{where}: date"), "ns"), None, "pydate"
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            stored, kind = _encode_attr_array(value.reshape(1), where)
            return stored, None, "nd0" + (kind or f"nd;{value.dtype.str};")[2:]
        stored, kind = _encode_attr_array(value, where)
        return stored, None, kind
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, str):
                items.append(sanitize_text(item))
            elif isinstance(item, (bool, int, float, np.bool_, np.integer, np.floating)) and not isinstance(
                item, np.float16
            ):
                items.append(item)
            else:
                raise DTypeError(
                    f"{where}: list element {item!r} ({type(item).__name__}) is not supported; "
                    "lists may hold numbers, bools or str (use a numpy array for other types)"
                )
        return items, None, "tuple" if isinstance(value, tuple) else ""
    raise DTypeError(
        f"{where}: value {value!r} ({type(value).__name__}) is not supported; use a number, bool, str, bytes, "
        "None, numpy scalar/array, datetime, or a list of numbers/str"
    )


#: :func:`encode_attr_value` of the numpy scalars seen so far, by ``(dtype, bytes)``: the
#: files of a fleet repeat a few (fill values, valid ranges, flag values), and encoding
#: one costs twenty lookups.  Entries are immutable (numpy scalars, str); bounded.
_SCALARS: dict[tuple[np.dtype, bytes], tuple[Any, None, str]] = {}
_MAX_SCALARS = 4096
#: ... of at most this many bytes (a long text scalar is encoded each time, not kept).
_MAX_SCALAR_BYTES = 1024


def _encode_attr_scalar(value: np.generic, where: str) -> tuple[Any, None, str]:
    arr = np.asarray(value).reshape(1)
    stored, kind = _encode_attr_array(arr, where)
    item = stored[0]
    name = None if stored.dtype == object else dtypes.canonical_dtype(stored.dtype)
    if not kind and (name in _NATURAL_SCALARS or name == "timestamp_nanoseconds"):
        return item, None, ""  # reads back as a numpy scalar of this very dtype
    enc = kind.split(";")[2] if kind else ""
    return item, None, f"np;{arr.dtype.str};{enc}"


def _encode_attr_array(arr: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """An ndarray attribute in a typed-storable form and its kind marker ("" when exact)."""
    kind = arr.dtype.kind
    flat = arr.reshape(-1)
    if kind == "S":
        text, enc = decode_all(flat.tolist())
        return object_array(text, arr.shape), f"nd;{arr.dtype.str};{enc}"
    if kind == "U":
        return object_array([sanitize_text(s) for s in flat.tolist()], arr.shape), f"nd;{arr.dtype.str};"
    if kind == "O":
        text, enc = object_strings(list(flat), where)
        return object_array(text, arr.shape), (f"nd;|O;{enc}" if enc else "")
    if kind == "M":
        unit = np.datetime_data(arr.dtype)[0]
        if unit == "ns":
            return arr.astype("<M8[ns]", copy=False), "" if arr.dtype.isnative else f"nd;{arr.dtype.str};"
        return arr.astype(f"<M8[{unit}]", copy=False).view("<i8"), f"nd;{arr.dtype.str};"  # counts of its unit
    if kind == "m":
        return timedelta_to_int(arr), f"nd;{arr.dtype.str};"
    stored = numeric_storage(arr, where)
    return stored, "" if stored.dtype == arr.dtype else f"nd;{arr.dtype.str};"


def object_array(items: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out.reshape(shape)


def decode_attr_value(value: Any, kind: str) -> Any:
    """Inverse of :func:`encode_attr_value`: the stored value (as ``get_attribute`` returns it) back
    to the original type."""
    if not kind:
        return value
    if kind == "none":
        return None
    if kind == "tuple":
        return tuple(value)
    if kind == "int":
        return int(value)
    if kind == "pydatetime":
        return np.datetime64(value, "ns").astype("datetime64[us]").item()
    if kind == "pydate":
        return np.datetime64(value, "ns").astype("datetime64[D]").item()
    head, *rest = kind.split(";")
    if head == "bytes":
        return str(value).encode(rest[0])
    dtype_str, enc = rest[0], rest[1] if len(rest) > 1 else ""
    if head == "np":
        return restore_array(np.asarray([value], dtype=_stored_dtype_for(dtype_str)), dtype_str, enc)[0]
    arr = restore_array(np.asarray(value), dtype_str, enc)
    return arr.reshape(()) if head == "nd0" else arr


def _stored_dtype_for(dtype_str: str) -> Any:
    dt = np.dtype(dtype_str)
    if dt.kind in "SUO":
        return object
    if dt.kind == "M" and np.datetime_data(dt)[0] == "ns":
        return "datetime64[ns]"
    if dt.kind in "mM":
        return "<i8"
    return None


def restore_array(data: np.ndarray, dtype_str: str | None, enc: str | None) -> np.ndarray:
    """Stored data (as read) back to the original numpy dtype."""
    if not dtype_str and not enc:
        return data
    target = np.dtype(dtype_str) if dtype_str else np.dtype(object)
    if enc:  # text that was bytes
        encoded = [str(s).encode(enc) for s in data.reshape(-1)]
        if target.kind == "S":
            return np.array(encoded, dtype=target).reshape(data.shape)
        return object_array(encoded, data.shape)
    if target.kind == "m":
        unit = np.datetime_data(target)[0]
        return np.asarray(data, dtype="<i8").view(f"<m8[{unit}]").astype(target, copy=False)
    if target.kind == "U":
        return np.asarray(data).astype(target) if data.size else np.empty(data.shape, dtype=target)
    return np.asarray(data).astype(target)
