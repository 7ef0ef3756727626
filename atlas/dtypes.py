"""The dtypes ATLAS stores, their aliases, fill values and typed scalars.

An array or attribute dtype is one of :data:`DTYPE_NAMES`.  Each name maps to the
numpy dtype its cells are stored as (:func:`storage_dtype`) and to the numpy dtype
reads return (:func:`result_dtype`): timestamps are stored as little-endian int64
nanoseconds since the epoch and read back as ``datetime64[ns]``; strings are
variable-length UTF-8 and read back as object arrays of ``str``.

Values that live in the manifest (fill values, stats, attributes) are *typed*: the
dtype travels with the value, so ``float32(1.5)``, ``NaN`` and non-ASCII text
survive JSON and msgpack unchanged (:func:`encode_value` / :func:`decode_value`).
Typed attributes (scalars, lists and arrays) are in :mod:`atlas.attributes`.
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
from typing import Any

import numpy as np

from atlas.errors import DTypeError, FillValueError, InvalidArgumentError, ValueOverflowError

__all__ = [
    "DTYPE_NAMES",
    "NAT",
    "canonical_dtype",
    "check_fill_value",
    "coerce_write_data",
    "datetime_to_ns",
    "decode_value",
    "default_fill",
    "encode_value",
    "from_numpy_dtype",
    "int_range",
    "is_float",
    "is_integer",
    "result_dtype",
    "storage_dtype",
    "to_result_scalar",
]

#: The int64 bit pattern numpy uses for ``NaT``.
NAT = int(np.iinfo(np.int64).min)
_INT64_MAX = int(np.iinfo(np.int64).max)

_NUMERIC = {
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "<u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
}

#: Every dtype name an array or attribute can have.
DTYPE_NAMES: tuple[str, ...] = (*_NUMERIC, "timestamp_nanoseconds", "string", "bool")

_ALIASES = {
    "timestamp_ns": "timestamp_nanoseconds",
    "timestamp": "timestamp_nanoseconds",
    "datetime64[ns]": "timestamp_nanoseconds",
    "str": "string",
    "utf8": "string",
    "bool_": "bool",
    "boolean": "bool",
    "float": "float64",
    "double": "float64",
    "int": "int64",
}

#: numpy type codes, matched case-sensitively: lowercase ``m8`` is a timedelta,
#: which is not a timestamp.
_NUMPY_CODES = {"M8[ns]": "timestamp_nanoseconds", "<M8[ns]": "timestamp_nanoseconds"}

_STORAGE = {
    **{k: np.dtype(v) for k, v in _NUMERIC.items()},
    "timestamp_nanoseconds": np.dtype("<i8"),
    "string": np.dtype(object),
    "bool": np.dtype(bool),
}


def canonical_dtype(dtype: Any) -> str:
    """Return the canonical ATLAS dtype name for ``dtype``.

    Parameters
    ----------
    dtype : str, numpy.dtype or type
        A name from :data:`DTYPE_NAMES`, an alias (``"timestamp_ns"``,
        ``"datetime64[ns]"``, ``"str"``), a numpy dtype or a Python/numpy type.
        Strings are matched case-insensitively.

    Raises
    ------
    DTypeError
        When ``dtype`` names no supported dtype.
    """
    if isinstance(dtype, str):
        key = dtype.strip().lower()
        if key in _STORAGE:
            return key
        if key in _ALIASES:
            return _ALIASES[key]
        if dtype.strip() in _NUMPY_CODES:
            return _NUMPY_CODES[dtype.strip()]
        raise DTypeError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_NAMES)}")
    if dtype is None:  # numpy reads None as float64; a missing dtype is an error here
        raise DTypeError(f"dtype must be given; expected one of {', '.join(DTYPE_NAMES)}")
    if dtype is str:
        return "string"
    if dtype is bool:
        return "bool"
    if dtype is int:
        return "int64"
    if dtype is float:
        return "float64"
    try:
        npd = np.dtype(dtype)
    except (TypeError, ValueError):
        raise DTypeError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_NAMES)}") from None
    return from_numpy_dtype(npd, what=repr(dtype))


def from_numpy_dtype(npd: np.dtype, what: str) -> str:
    prefix = {"i": "int", "u": "uint", "f": "float"}.get(npd.kind)
    if prefix is not None and f"{prefix}{npd.itemsize * 8}" in _NUMERIC:
        return f"{prefix}{npd.itemsize * 8}"
    if npd.kind == "b":
        return "bool"
    if npd.kind == "M" and np.datetime_data(npd)[0] == "ns":
        return "timestamp_nanoseconds"
    if npd.kind in "OUS":
        return "string"
    raise DTypeError(f"unsupported dtype {what}; expected one of {', '.join(DTYPE_NAMES)}")


def storage_dtype(name: str) -> np.dtype:
    """The numpy dtype cells of dtype ``name`` are stored as (object for strings)."""
    return _STORAGE[name]


def result_dtype(name: str) -> np.dtype:
    """The numpy dtype reads of dtype ``name`` return."""
    if name == "timestamp_nanoseconds":
        return np.dtype("datetime64[ns]")
    return _STORAGE[name]


def is_integer(name: str) -> bool:
    """True for the signed and unsigned integer dtypes."""
    return name[0] in "iu" and name != "string"


def is_float(name: str) -> bool:
    """True for float32 and float64."""
    return name.startswith("float")


def default_fill(name: str) -> Any:
    """The value unwritten cells read as when an array has no fill value.

    NaN for floats, NaT for timestamps, 0 for integers, False for bool and the
    empty string for strings.
    """
    if is_float(name):
        return math.nan
    if name == "timestamp_nanoseconds":
        return NAT
    if name == "bool":
        return False
    if name == "string":
        return ""
    return 0


# -- scalars -----------------------------------------------------------------------


#: ``(min, max)`` of every dtype stored as integers (timestamps as int64 nanoseconds),
#: computed once: ``numpy.iinfo`` per value was most of the cost of decoding a manifest.
_INT_RANGE: dict[str, tuple[int, int]] = {
    **{k: (int(np.iinfo(v).min), int(np.iinfo(v).max)) for k, v in _NUMERIC.items() if k[0] in "iu"},
    "timestamp_nanoseconds": (NAT, _INT64_MAX),
}
_DTYPE_SET = frozenset(DTYPE_NAMES)


def int_range(name: str) -> tuple[int, int] | None:
    """``(lowest, highest)`` value of integer dtype ``name``; None for other dtypes."""
    return _INT_RANGE.get(name)


def _int_in_range(value: int, name: str, what: str) -> int:
    low, high = _INT_RANGE[name]
    if not low <= value <= high:
        raise ValueOverflowError(f"{what} {value} is out of range for {name} [{low}, {high}]")
    return int(value)


#: The int64 minimum is NaT, so the earliest timestamp is one nanosecond later.
_NS_LOW = NAT + 1
_EPOCH = _dt.datetime(1970, 1, 1)
_NS_PER_DAY = 86_400 * 10**9
#: Nanoseconds per unit for the datetime64 units of fixed length.
_NS_PER_UNIT = {"W": 7 * _NS_PER_DAY, "D": _NS_PER_DAY, "h": 3_600 * 10**9, "m": 60 * 10**9, "s": 10**9,
                "ms": 10**6, "us": 10**3, "ns": 1}  # fmt: skip
#: Units finer than a nanosecond: how many of them make one nanosecond.
_PER_NS = {"ps": 10**3, "fs": 10**6, "as": 10**9}
_NS_RANGE_TEXT = "1677-09-21T00:12:43.145224193 .. 2262-04-11T23:47:16.854775807"


def _ns_in_range(ns: int, value: Any, what: str) -> int:
    # Range-checked on exact Python integers: numpy's own conversion to datetime64[ns]
    # wraps around without an error (year 3000 becomes 1830).
    if not _NS_LOW <= ns <= _INT64_MAX:
        raise ValueOverflowError(
            f"{what} {value!r} is outside the timestamp_nanoseconds range ({_NS_RANGE_TEXT}); "
            "store it as a string or as a number of a coarser unit"
        )
    return ns


def _datetime64_ns(value: np.datetime64, what: str) -> int:
    """Nanoseconds since the epoch of a datetime64 of any unit, computed exactly."""
    if np.isnat(value):
        return NAT
    unit, step = np.datetime_data(value.dtype)
    count = int(value.astype("<i8")) * step
    if unit in _NS_PER_UNIT:
        return _ns_in_range(count * _NS_PER_UNIT[unit], value, what)
    if unit in _PER_NS:
        ns, rest = divmod(count, _PER_NS[unit])
        if rest:
            raise ValueOverflowError(f"{what} {value!r} is finer than a nanosecond, which timestamp_nanoseconds holds")
        return _ns_in_range(ns, value, what)
    if unit in ("Y", "M"):  # calendar units: a year or month has no fixed length
        year, month = (1970 + count, 1) if unit == "Y" else (1970 + count // 12, count % 12 + 1)
        if not 1 <= year <= 9999:
            raise ValueOverflowError(f"{what} {value!r} is outside the timestamp_nanoseconds range ({_NS_RANGE_TEXT})")
        return _ns_in_range((_dt.date(year, month, 1) - _EPOCH.date()).days * _NS_PER_DAY, value, what)
    raise FillValueError(f"{what} {value!r} has no time unit; it is not a timestamp")


def _pydatetime_ns(value: _dt.date, what: str) -> int:
    """Nanoseconds since the epoch of a ``datetime`` (aware ones as UTC) or ``date``, exactly."""
    if isinstance(value, _dt.datetime):
        delta = value.replace(tzinfo=None) - _EPOCH
        offset = value.utcoffset()
        if offset is not None:
            delta -= offset
        ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
    else:
        ns = (value - _EPOCH.date()).days * _NS_PER_DAY
    return _ns_in_range(ns, value, what)


def datetime_to_ns(value: Any, what: str) -> int:
    """Nanoseconds since the epoch of a ``datetime``, ``date``, ``numpy.datetime64`` (any
    unit) or ISO 8601 string, exactly; :data:`NAT` for NaT.

    Raises
    ------
    ValueOverflowError
        When the value lies outside the range of ``timestamp_nanoseconds`` (about
        1678..2262) or is finer than a nanosecond: it is never stored as another date.
    FillValueError
        When the value is not a timestamp.
    """
    if isinstance(value, _dt.date):
        return _pydatetime_ns(value, what)
    if isinstance(value, str):
        try:
            value = np.datetime64(value)  # its own unit: no conversion, hence no wrap-around
        except ValueError as exc:
            raise FillValueError(f"{what} {value!r} is not a timestamp: {exc}") from None
    if isinstance(value, np.datetime64):
        return _datetime64_ns(value, what)
    raise FillValueError(f"{what} {value!r} ({type(value).__name__}) is not a timestamp")


def _timestamp_ns(value: Any, what: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return _int_in_range(int(value), "int64", what)
    return datetime_to_ns(value, what)


def coerce_scalar(value: Any, name: str, what: str) -> Any:
    """Check that ``value`` is a valid scalar of dtype ``name`` and normalise it.

    Returns a plain Python value: ``int`` for integers and timestamps (nanoseconds,
    :data:`NAT` for NaT), ``float`` (rounded to float32 for float32), ``bool`` or
    ``str``.  Raises :class:`FillValueError` (a ``TypeError``) for a value of the
    wrong kind and :class:`ValueOverflowError` for an integer out of range.
    """
    plain = _plain_scalar(value, name)
    if plain is not _CHECK:
        return plain
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if name == "string":
        if isinstance(value, (str, np.str_)):
            return _check_utf8(str(value), what)
        raise FillValueError(f"{what} {value!r} ({type(value).__name__}) is not a str, as dtype string needs")
    if name == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise FillValueError(f"{what} {value!r} ({type(value).__name__}) is not a bool, as dtype bool needs")
    if name == "timestamp_nanoseconds":
        return _timestamp_ns(value, what)
    if isinstance(value, (bool, np.bool_)):
        raise FillValueError(f"{what} {value!r} is a bool, not a number of dtype {name}")
    if is_float(name):
        if isinstance(value, (int, float, np.integer, np.floating)):
            as_float = float(value)
            with np.errstate(over="ignore"):
                too_big = name == "float32" and math.isfinite(as_float) and not math.isfinite(np.float32(as_float))
            if too_big:
                raise ValueOverflowError(f"{what} {value!r} is out of range for float32")
            return float(np.float32(as_float)) if name == "float32" else as_float
        raise FillValueError(f"{what} {value!r} ({type(value).__name__}) is not a number, as dtype {name} needs")
    if isinstance(value, (int, np.integer)):
        return _int_in_range(int(value), name, what)
    if isinstance(value, (float, np.floating)):
        raise FillValueError(f"{what} {value!r} is a float; dtype {name} needs an integer")
    raise FillValueError(f"{what} {value!r} ({type(value).__name__}) is not an integer, as dtype {name} needs")


def _check_utf8(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{what} {text!r} is not valid unicode (it holds a lone surrogate)") from None
    return text


def check_fill_value(value: Any, name: str) -> Any:
    """Validate a fill value for dtype ``name``; ``None`` means "no fill value"."""
    if value is None:
        return None
    return coerce_scalar(value, name, "fill value")


def to_result_scalar(value: Any, name: str) -> Any:
    """Turn a normalised scalar into what the API returns for dtype ``name``.

    Integers and floats come back as numpy scalars of the array dtype, timestamps
    as ``numpy.datetime64[ns]``, strings as ``str`` and bools as ``bool``.
    """
    if value is None:
        return None
    if name == "timestamp_nanoseconds":
        return np.datetime64(int(value), "ns") if value != NAT else np.datetime64("NaT", "ns")
    if name in ("string", "bool"):
        return value
    return _STORAGE[name].type(value)


# -- manifest encoding of scalars ------------------------------------------------------

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: Packing to a C float rounds a double to float32 exactly like ``numpy.float32``.
_F32 = struct.Struct("<f")


def encode_value(value: Any, name: str) -> Any:
    """Encode a normalised scalar for the manifest (JSON- and msgpack-safe).

    Non-finite floats become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
    """
    if is_float(name):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_value(raw: Any, name: str) -> Any:
    """Inverse of :func:`encode_value`; checks the value against dtype ``name``.

    A manifest comes from outside, so a value of the wrong kind or out of the
    dtype's range raises (:class:`FillValueError`, :class:`ValueOverflowError` or
    :class:`InvalidArgumentError`) instead of surfacing later as a numpy error.
    """
    plain = _plain_scalar(raw, name)
    return plain if plain is not _CHECK else _decode_value_checked(raw, name)


#: What :func:`_plain_scalar` returns for a value the full checks must see.
_CHECK = object()


def _plain_scalar(value: Any, name: str) -> Any:
    """``value`` as dtype ``name`` holds it when its exact Python type needs no conversion; else :data:`_CHECK`.

    The commonest values (what the package's writers pass, what JSON and msgpack
    hand back) skip the checks of :func:`coerce_scalar` and :func:`decode_value`,
    which would return them unchanged: an int in range, a float (rounded to
    float32 as numpy rounds it; one that overflows is left to the checks), an
    ASCII str (an ASCII-only str cannot hold a lone surrogate), a bool.
    """
    kind = type(value)
    if kind is int:
        bounds = _INT_RANGE.get(name)
        if bounds is not None and bounds[0] <= value <= bounds[1]:
            return value
    elif kind is float:
        if name == "float64":
            return value
        if name == "float32":
            try:
                return _F32.unpack(_F32.pack(value))[0]
            except OverflowError:
                pass
    elif kind is str:
        if name == "string" and value.isascii():
            return value
    elif kind is bool and name == "bool":
        return value
    return _CHECK


def _decode_value_checked(raw: Any, name: str) -> Any:
    if is_float(name):
        if isinstance(raw, str):
            if raw not in _NONFINITE:
                raise FillValueError(f"value {raw!r} is not a number of dtype {name}")
            return _NONFINITE[raw]
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = float(raw)  # OverflowError beyond float64 is refused by the caller
    elif name == "timestamp_nanoseconds" and not isinstance(raw, int):
        raise FillValueError(f"value {raw!r} is not a timestamp in nanoseconds")
    return coerce_scalar(raw, name, "value")


# -- write data ------------------------------------------------------------------------


def coerce_write_data(data: Any, name: str, what: str) -> np.ndarray:
    """Check data given to ``write_array`` and return it in storage form.

    ``data`` must be a C-contiguous numpy array whose dtype matches the array dtype
    exactly (timestamps: ``datetime64[ns]`` or its int64 view; strings: object
    arrays of ``str``, or ``|S``/``|U`` arrays; bools: numpy bool).  No silent
    casts are made: a float64 array is not written into a float32 array.
    """
    if not isinstance(data, np.ndarray):
        if isinstance(data, np.generic):
            data = np.asarray(data)
        else:
            raise DTypeError(f"{what}: data must be a numpy array, got {type(data).__name__}")
    if not data.flags.c_contiguous:
        raise DTypeError(f"{what}: data must be C-contiguous; pass numpy.ascontiguousarray(data)")
    if name == "string":
        return _coerce_strings(data, what)
    if name == "timestamp_nanoseconds":
        if data.dtype.kind == "M":
            if np.datetime_data(data.dtype)[0] != "ns":
                _refuse_beyond_ns(data, what)
                raise DTypeError(
                    f"{what}: timestamps must be datetime64[ns], got {data.dtype}; use data.astype('datetime64[ns]')"
                )
            return data.view("<i8")
        if data.dtype == np.dtype("<i8") or data.dtype == np.dtype(">i8"):
            return data.astype("<i8", copy=False)
        raise DTypeError(f"{what}: expected datetime64[ns] or int64 data for a timestamp array, got {data.dtype}")
    expected = _STORAGE[name]
    if data.dtype.kind != expected.kind or data.dtype.itemsize != expected.itemsize:
        raise DTypeError(f"{what}: expected {name} data, got {data.dtype}; convert with data.astype({name!r})")
    return data.astype(expected, copy=False)


def _refuse_beyond_ns(data: np.ndarray, what: str) -> None:
    """ValueOverflowError naming the first value of ``data`` (datetime64 of a unit other
    than ns) that datetime64[ns] cannot hold, where ``astype`` would wrap it around silently."""
    with np.errstate(all="ignore"):
        ns = data.astype("datetime64[ns]")
        bad = ~np.isnat(data) & (np.isnat(ns) | (ns.astype(data.dtype) != data))
    if bad.any():
        first = data.reshape(-1)[int(np.argmax(bad.reshape(-1)))]
        datetime_to_ns(first, f"{what}: value")  # raises, naming the value
        raise ValueOverflowError(f"{what}: value {first!r} does not fit timestamp_nanoseconds")


def _coerce_strings(data: np.ndarray, what: str) -> np.ndarray:
    kind = data.dtype.kind
    if kind == "U":
        out = data.astype(object)
    elif kind == "S":
        out = np.empty(data.shape, dtype=object)
        flat = out.reshape(-1)
        for i, raw in enumerate(data.reshape(-1).tolist()):
            flat[i] = _decode_bytes(raw, what)
    elif kind == "O":
        out = data.copy()
        flat = out.reshape(-1)
        for i, item in enumerate(flat):
            if isinstance(item, str):
                continue
            if isinstance(item, bytes):
                flat[i] = _decode_bytes(item, what)
            elif item is None:
                raise DTypeError(f"{what}: string arrays cannot hold None (element {i}); use a fill value instead")
            else:
                raise DTypeError(f"{what}: element {i} is {type(item).__name__}, not str")
    else:
        raise DTypeError(f"{what}: expected str data (object, |U or |S) for a string array, got {data.dtype}")
    for i, item in enumerate(out.reshape(-1)):
        if not isinstance(item, str):
            out.reshape(-1)[i] = str(item)
        _check_utf8(out.reshape(-1)[i], f"{what}: element {i}")
    return out


def _decode_bytes(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DTypeError(f"{what}: bytes {raw[:40]!r} are not valid UTF-8") from None
