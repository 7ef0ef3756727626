"""The dtypes ATLAS stores, their aliases, fill values and typed scalars.

An array or attribute dtype is one of :data:`DTYPE_NAMES`.  Each name maps to the
numpy dtype its cells are stored as (:func:`storage_dtype`) and to the numpy dtype
reads return (:func:`result_dtype`): timestamps are stored as little-endian int64
nanoseconds since the epoch and read back as ``datetime64[ns]``; strings are
variable-length UTF-8 and read back as object arrays of ``str``.

Values that live in the manifest (fill values, stats, attributes) are *typed*: the
dtype travels with the value, so ``float32(1.5)``, ``NaN`` and non-ASCII text
survive JSON and msgpack unchanged (:func:`encode_value` / :func:`decode_value`).
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
    "decode_attribute",
    "decode_value",
    "default_fill",
    "encode_attribute",
    "encode_value",
    "is_float",
    "is_integer",
    "normalize_attribute",
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
    return _from_numpy(npd, what=repr(dtype))


def _from_numpy(npd: np.dtype, what: str) -> str:
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


def _int_in_range(value: int, name: str, what: str) -> int:
    low, high = _INT_RANGE[name]
    if not low <= value <= high:
        raise ValueOverflowError(f"{what} {value} is out of range for {name} [{low}, {high}]")
    return int(value)


def _timestamp_ns(value: Any, what: str) -> int:
    if isinstance(value, (_dt.datetime, _dt.date, str)):
        try:
            value = np.datetime64(value, "ns")
        except ValueError as exc:
            raise FillValueError(f"{what} {value!r} is not a timestamp: {exc}") from None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return NAT
        try:
            as_ns = value.astype("datetime64[ns]")
        except (OverflowError, ValueError):
            raise ValueOverflowError(f"{what} {value!r} does not fit timestamp_nanoseconds") from None
        if np.datetime_data(value.dtype)[0] not in ("ns",) and as_ns.astype("datetime64[us]") != value:
            raise ValueOverflowError(f"{what} {value!r} does not fit timestamp_nanoseconds")
        return int(as_ns.view("<i8"))
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return _int_in_range(int(value), "int64", what)
    raise FillValueError(f"{what} {value!r} ({type(value).__name__}) is not a timestamp")


def coerce_scalar(value: Any, name: str, what: str) -> Any:
    """Check that ``value`` is a valid scalar of dtype ``name`` and normalise it.

    Returns a plain Python value: ``int`` for integers and timestamps (nanoseconds,
    :data:`NAT` for NaT), ``float`` (rounded to float32 for float32), ``bool`` or
    ``str``.  Raises :class:`FillValueError` (a ``TypeError``) for a value of the
    wrong kind and :class:`ValueOverflowError` for an integer out of range.
    """
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
_TYPED_KEYS = frozenset(("t", "v", "k", "s"))
#: The decoded type each dtype takes as it is, when every element of a list has it.
_NO_CONVERSION: dict[type, str] = {float: "float64", bool: "bool", str: "string"}


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
    # Fast paths for the values JSON and msgpack hand back that need no conversion:
    # each makes exactly the checks coerce_scalar would (range, exact type, UTF-8).
    kind = type(raw)
    if kind is str:
        if name == "string":
            # An ASCII-only str cannot hold a lone surrogate (isascii is a flag test).
            return raw if raw.isascii() else _check_utf8(raw, "value")
    elif kind is int:
        bounds = _INT_RANGE.get(name)
        if bounds is not None and bounds[0] <= raw <= bounds[1]:
            return raw
    elif kind is float:
        if name == "float64":
            return raw
        if name == "float32":
            try:  # rounds to float32 as numpy does; overflow is refused by the checked path
                return _F32.unpack(_F32.pack(raw))[0]
            except OverflowError:
                pass
    elif kind is bool and name == "bool":
        return raw
    return _decode_value_checked(raw, name)


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


# -- attributes -------------------------------------------------------------------------


def _infer_scalar_dtype(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, np.generic):
        return _from_numpy(value.dtype, what=repr(value))
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return "int64"
        if 0 <= value < 2**64:
            return "uint64"
        raise ValueOverflowError(f"attribute value {value} does not fit int64 or uint64")
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (_dt.datetime, _dt.date)):
        return "timestamp_nanoseconds"
    raise DTypeError(
        f"attribute value {value!r} ({type(value).__name__}) is not a supported type; "
        "use a number, bool, str, numpy.datetime64, or a list/array of those"
    )


def normalize_attribute(value: Any, dtype: Any = None) -> dict[str, Any]:
    """Check an attribute value and return its typed form.

    The typed form is ``{"t": dtype name, "v": value}`` for a scalar, with
    ``"k": "list"`` for a list or tuple and ``"k": "ndarray", "s": shape`` for a
    numpy array (values flattened in C order).  ``dtype`` forces the stored dtype
    (values are range-checked against it); otherwise it is inferred from the value.
    """
    forced = canonical_dtype(dtype) if dtype is not None else None
    if isinstance(value, np.ndarray):
        name = forced or _from_numpy(value.dtype, what=f"attribute array of dtype {value.dtype}")
        flat = value.ravel(order="C")
        items = [coerce_scalar(v, name, "attribute element") for v in _iter_array(flat, name)]
        return {"t": name, "v": items, "k": "ndarray", "s": list(value.shape)}
    if isinstance(value, (list, tuple)):
        if forced is not None:
            name = forced
        elif not value:
            name = "float64"
        else:
            kinds = {_infer_scalar_dtype(v) for v in value}
            if len(kinds) == 1:
                name = kinds.pop()
            elif kinds <= {"int64", "float64", "uint64"}:
                name = "float64"
            else:
                raise DTypeError(f"attribute list {value!r} mixes element types {sorted(kinds)}")
        return {"t": name, "v": [coerce_scalar(v, name, "attribute element") for v in value], "k": "list"}
    if value is None:
        raise DTypeError("attribute value None is not supported; delete or omit the attribute instead")
    name = forced or _infer_scalar_dtype(value)
    return {"t": name, "v": coerce_scalar(value, name, "attribute value")}


def _iter_array(flat: np.ndarray, name: str) -> list[Any]:
    if name == "timestamp_nanoseconds" and flat.dtype.kind == "M":
        return list(flat.astype("datetime64[ns]"))
    return list(flat.tolist()) if flat.dtype.kind != "O" else list(flat)


def encode_attribute(typed: dict[str, Any]) -> dict[str, Any]:
    """Make a typed attribute manifest-safe (non-finite floats as strings)."""
    name = typed["t"]
    out = dict(typed)
    if "k" in typed:
        out["v"] = [encode_value(v, name) for v in typed["v"]]
    else:
        out["v"] = encode_value(typed["v"], name)
    return out


def decode_attribute(raw: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_attribute`; validates the dtype, kind, shape and values.

    Raises
    ------
    InvalidArgumentError, DTypeError or ValueOverflowError
        When the typed form does not follow the format (the manifest reader turns
        any of them into :class:`~atlas.errors.CorruptStoreError`).
    """
    if type(raw) is dict and len(raw) == 2 and "t" in raw and "v" in raw:
        # A scalar ({"t", "v"} only), most attributes: the checks below, in short.
        name = raw["t"]
        if type(name) is str and name in _DTYPE_SET:
            return {"t": name, "v": decode_value(raw["v"], name)}
    if not isinstance(raw, dict) or not raw.keys() <= _TYPED_KEYS or "t" not in raw or "v" not in raw:
        raise InvalidArgumentError(f"typed attribute {raw!r:.80} does not have the keys t, v[, k, s]")
    name = raw["t"]
    if name not in DTYPE_NAMES:
        raise DTypeError(f"typed attribute has unknown dtype {name!r:.40}")
    out: dict[str, Any] = {"t": name}
    kind = raw.get("k")
    if kind is None:
        if "s" in raw:
            raise InvalidArgumentError("a scalar typed attribute has a shape")
        out["v"] = decode_value(raw["v"], name)
        return out
    if kind not in ("list", "ndarray") or not isinstance(raw["v"], list):
        raise InvalidArgumentError(f"typed attribute of kind {kind!r:.40} with values {raw['v']!r:.40}")
    out["v"] = _decode_values(raw["v"], name)
    out["k"] = kind
    if kind == "ndarray":
        shape = raw.get("s")
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= _INT64_MAX for n in shape
        ):
            raise InvalidArgumentError(f"typed array attribute has a bad shape {shape!r:.80}")
        if math.prod(shape) != len(out["v"]):
            raise InvalidArgumentError(f"typed array attribute of shape {shape} holds {len(out['v'])} values")
        out["s"] = list(shape)
    elif "s" in raw:
        raise InvalidArgumentError("a list typed attribute has a shape")
    return out


def _decode_values(values: list[Any], name: str) -> list[Any]:
    """:func:`decode_value` of every element, in bulk when all need no conversion."""
    if values:
        kinds = set(map(type, values))
        if len(kinds) == 1:
            kind = kinds.pop()
            if kind is int:
                bounds = _INT_RANGE.get(name)
                if bounds is not None and bounds[0] <= min(values) and max(values) <= bounds[1]:
                    return list(values)
            elif _NO_CONVERSION.get(kind) == name and (kind is not str or all(map(str.isascii, values))):
                return list(values)
    return [decode_value(v, name) for v in values]


def attribute_to_python(typed: dict[str, Any]) -> Any:
    """The value ``get_attribute`` returns for a typed attribute.

    Scalars of dtype int64, float64, bool and string come back as the Python types
    they were most likely given as; every other dtype as a numpy scalar of that
    dtype, so ``int8``/``float32``/timestamp hints survive the round trip.  Lists
    come back as lists and arrays as numpy arrays of the stored dtype.
    """
    name = typed["t"]
    kind = typed.get("k")
    if kind == "ndarray":
        values = typed["v"]
        if name == "timestamp_nanoseconds":
            arr = np.array(values, dtype="<i8").view("datetime64[ns]")
        elif name == "string":
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
        else:
            arr = np.array(values, dtype=_STORAGE[name])
        return arr.reshape(typed["s"])
    if kind == "list":
        return [_scalar_to_python(v, name) for v in typed["v"]]
    return _scalar_to_python(typed["v"], name)


def _scalar_to_python(value: Any, name: str) -> Any:
    if name in ("int64", "float64", "bool", "string"):
        return {"int64": int, "float64": float, "bool": bool, "string": str}[name](value)
    return to_result_scalar(value, name)


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
