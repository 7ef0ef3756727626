"""Typed attributes: a value with its dtype, as the manifest stores it.

A dataset or array attribute is kept in *typed form*: ``{"t": dtype name, "v": value}``
for a scalar, with ``"k": "list"`` for a list and ``"k": "ndarray", "s": shape`` for
a numpy array, so ``int8``, ``float32``, ``NaN``, timestamps and non-ASCII text
survive JSON and msgpack unchanged.  :func:`normalize` checks a user's value,
:func:`encode`/:func:`decode` map the typed form to and from the manifest, and
:func:`to_python` gives back what ``get_attribute`` returns.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np

from atlas.dtypes import (
    DTYPE_NAMES,
    canonical_dtype,
    coerce_scalar,
    decode_value,
    encode_value,
    from_numpy_dtype,
    int_range,
    storage_dtype,
    to_result_scalar,
)
from atlas.errors import DTypeError, InvalidArgumentError, ValueOverflowError

__all__ = ["decode", "encode", "normalize", "to_python"]

_DTYPES = frozenset(DTYPE_NAMES)
_INT64_MIN = int(np.iinfo(np.int64).min)
_INT64_MAX = int(np.iinfo(np.int64).max)
_TYPED_KEYS = frozenset(("t", "v", "k", "s"))
#: The most dimensions an array attribute read from a store may have (numpy's own limit).
_MAX_ATTRIBUTE_DIMS = 64
#: The decoded type each dtype takes as it is, when every element of a list has it.
_NO_CONVERSION: dict[type, str] = {float: "float64", bool: "bool", str: "string"}


def _infer_scalar_dtype(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, np.datetime64):  # any unit: converted exactly, or refused
        return "timestamp_nanoseconds"
    if isinstance(value, np.generic):
        return from_numpy_dtype(value.dtype, what=repr(value))
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


def normalize(value: Any, dtype: Any = None) -> dict[str, Any]:
    """Check an attribute value and return its typed form.

    The typed form is ``{"t": dtype name, "v": value}`` for a scalar, with
    ``"k": "list"`` for a list or tuple and ``"k": "ndarray", "s": shape`` for a
    numpy array (values flattened in C order).  ``dtype`` forces the stored dtype
    (values are range-checked against it); otherwise it is inferred from the value.
    """
    if dtype is None:
        # The commonest values, without the general inference below (same result).
        kind = type(value)
        if kind is float:
            return {"t": "float64", "v": value}
        if kind is str:
            if value.isascii():  # ASCII is always valid UTF-8
                return {"t": "string", "v": value}
            return {"t": "string", "v": coerce_scalar(value, "string", "attribute value")}
        if kind is int and _INT64_MIN <= value <= _INT64_MAX:
            return {"t": "int64", "v": value}
        if kind is bool:
            return {"t": "bool", "v": value}
    forced = canonical_dtype(dtype) if dtype is not None else None
    if isinstance(value, np.ndarray):
        if forced is None and value.dtype.kind == "M":
            name = "timestamp_nanoseconds"  # any unit: converted exactly, or refused
        else:
            name = forced or from_numpy_dtype(value.dtype, what=f"attribute array of dtype {value.dtype}")
        flat = value.ravel(order="C")
        items = [coerce_scalar(v, name, "attribute element") for v in _iter_array(flat, name)]
        return {"t": name, "v": items, "k": "ndarray", "s": list(value.shape)}
    if isinstance(value, (list, tuple)):
        if forced is not None:
            name = forced
        elif not value:
            name = "float64"
        else:
            name = _infer_list_dtype(value)
        return {"t": name, "v": [coerce_scalar(v, name, "attribute element") for v in value], "k": "list"}
    if value is None:
        raise DTypeError("attribute value None is not supported; delete or omit the attribute instead")
    name = forced or _infer_scalar_dtype(value)
    return {"t": name, "v": coerce_scalar(value, name, "attribute value")}


def _infer_list_dtype(value: list[Any] | tuple[Any, ...]) -> str:
    """The dtype of a list attribute: one element type, or one that holds every value exactly."""
    kinds = {_infer_scalar_dtype(v) for v in value}
    if len(kinds) == 1:
        return kinds.pop()
    if kinds == {"int64", "uint64"}:  # ints beyond int64 (or numpy uint64s): uint64 when none is negative
        negative = next((v for v in value if v < 0), None)
        big = next((v for v in value if v > _INT64_MAX), None)
        if big is None:
            return "int64"
        if negative is not None:
            raise ValueOverflowError(
                f"attribute list holds {negative} and {big}: no integer dtype holds both; "
                "store them as strings or split the list"
            )
        return "uint64"
    if kinds <= {"int64", "float64", "uint64"}:
        inexact = next((v for v in value if isinstance(v, int) and int(float(v)) != v), None)
        if inexact is not None:
            raise ValueOverflowError(
                f"attribute list mixes floats with the integer {inexact}, which float64 cannot hold exactly; "
                "store the integers in a list of their own"
            )
        return "float64"
    raise DTypeError(f"attribute list {value!r:.200} mixes element types {sorted(kinds)}")


def _iter_array(flat: np.ndarray, name: str) -> list[Any]:
    if name == "timestamp_nanoseconds" and flat.dtype.kind == "M":
        return list(flat)  # datetime64 scalars of their own unit, converted exactly one by one
    return list(flat.tolist()) if flat.dtype.kind != "O" else list(flat)


def encode(typed: dict[str, Any]) -> dict[str, Any]:
    """Make a typed attribute manifest-safe (non-finite floats as strings)."""
    name = typed["t"]
    out = dict(typed)
    if "k" in typed:
        out["v"] = [encode_value(v, name) for v in typed["v"]]
    else:
        out["v"] = encode_value(typed["v"], name)
    return out


def decode(raw: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode`; validates the dtype, kind, shape and values.

    Raises
    ------
    InvalidArgumentError, DTypeError or ValueOverflowError
        When the typed form does not follow the format (the manifest reader turns
        any of them into :class:`~atlas.errors.CorruptStoreError`).
    """
    if type(raw) is dict and len(raw) == 2 and "t" in raw and "v" in raw:
        # A scalar ({"t", "v"} only), most attributes: the checks below, in short.
        name = raw["t"]
        if type(name) is str and name in _DTYPES:
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
        if len(shape) > _MAX_ATTRIBUTE_DIMS:
            raise InvalidArgumentError(f"typed array attribute has {len(shape)} dimensions, over {_MAX_ATTRIBUTE_DIMS}")
        # numpy refuses (with a bare ValueError) a shape whose non-zero extents times
        # the item size pass int64, even when another extent is 0 and it holds nothing.
        if math.prod(max(n, 1) for n in shape) * 8 > _INT64_MAX:
            raise InvalidArgumentError(f"typed array attribute has a shape {shape!r:.80} too large for any array")
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
                bounds = int_range(name)
                if bounds is not None and bounds[0] <= min(values) and max(values) <= bounds[1]:
                    return list(values)
            elif _NO_CONVERSION.get(kind) == name and (kind is not str or all(map(str.isascii, values))):
                return list(values)
    return [decode_value(v, name) for v in values]


def to_python(typed: dict[str, Any]) -> Any:
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
            arr = np.array(values, dtype=storage_dtype(name))
        return arr.reshape(typed["s"])
    if kind == "list":
        return [_scalar_to_python(v, name) for v in typed["v"]]
    return _scalar_to_python(typed["v"], name)


def _scalar_to_python(value: Any, name: str) -> Any:
    if name in ("int64", "float64", "bool", "string"):
        return {"int64": int, "float64": float, "bool": bool, "string": str}[name](value)
    return to_result_scalar(value, name)
