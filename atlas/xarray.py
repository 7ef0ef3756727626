"""xarray and dask integration: write an ``xarray.Dataset`` into a store, read it back.

* :func:`add_xr_dataset` (``Atlas.add_xr_dataset``, ``ds.atlas.write``) stores every
  coordinate and data variable as an array of the dataset, with its dims, and every
  attribute as a typed dataset attribute.  dask-backed variables are streamed block
  by block; nothing is flushed (the write is staged like any other change).
* :func:`to_xarray` (``Atlas.to_xarray``) rebuilds the dataset:
  ``xarray.testing.assert_identical`` holds for every dataset the writer accepts.
  Multi-chunk variables come back as dask arrays (one task per on-disk chunk) whose
  graph names the store by location and snapshot, never by an open handle, so it
  pickles and computes under the ``processes`` scheduler and ``dask.distributed``.
* :func:`to_xarray_many` stacks many datasets along a new dimension in one bulk read.
* :class:`AtlasBackendEntrypoint` is the ``engine="atlas"`` backend of
  ``xarray.open_dataset`` / ``open_mfdataset`` (in :mod:`atlas.xarray_backend`).

Importing this module registers the ``Dataset.atlas`` accessor.  The mapping rules
(the reserved ``_atlas_xarray`` attribute layout) are documented in ``docs/xarray.md``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from atlas import dtypes
from atlas.dataset import default_chunk_shape
from atlas.errors import (
    AtlasError,
    ConflictError,
    DatasetNotFoundError,
    DTypeError,
    FormatVersionError,
    InvalidArgumentError,
    InvalidNameError,
    MissingDependencyError,
    ReadOnlyError,
    SchemaMismatchError,
    ValueOverflowError,
)
from atlas.names import validate_name

try:
    import xarray as xr
except ImportError as _exc:  # pragma: no cover - exercised only without xarray
    raise MissingDependencyError(
        "the xarray integration needs xarray (and dask for lazy reads): pip install 'atlas-store[xarray]'"
    ) from _exc

if TYPE_CHECKING:
    from atlas.dataset import DatasetView
    from atlas.store import Atlas

__all__ = [  # noqa: F822 - the backend classes resolve through __getattr__
    "LAYOUT_VERSION",
    "PREFIX",
    "AtlasBackendArray",
    "AtlasBackendEntrypoint",
    "AtlasDatasetAccessor",
    "add_xr_dataset",
    "clear_cache",
    "to_xarray",
    "to_xarray_many",
]

#: Version of the reserved attribute layout written by :func:`add_xr_dataset`.
LAYOUT_VERSION = 1
#: Prefix of every reserved attribute key (dataset and array names cannot start with ``_``).
PREFIX = "_atlas_xarray"
_K_VARS = f"{PREFIX}/vars"
_K_ARRAYS = f"{PREFIX}/arrays"
_K_COORDS = f"{PREFIX}/coords"
#: Encoding keys kept with a variable (what a CF writer needs to re-encode it).
ENCODING_KEYS = (
    "_FillValue",
    "missing_value",
    "scale_factor",
    "add_offset",
    "units",
    "calendar",
    "dtype",
    "_Unsigned",
    "char_dim_name",
)
#: Bytes of dask blocks computed together (and of numpy slabs written at once).
BATCH_BYTES = 16 << 20


def _vkey(index: int, what: str) -> str:
    return f"{PREFIX}/v/{index}/{what}"


def _where_var(name: Any) -> str:
    return f"variable {name!r}"


# ---------------------------------------------------------------------------------------------
# text: bytes and surrogate-escaped strings
# ---------------------------------------------------------------------------------------------


class _NotUtf8(Exception):
    """Raised inside a streamed write when bytes data turns out not to be UTF-8."""


class _OutOfNsRange(Exception):
    """Raised inside a streamed write when datetimes do not fit timestamp_nanoseconds."""


def sanitize_text(text: str) -> str:
    """Return ``text`` as valid unicode.

    Lone surrogates ``U+DC80``..``U+DCFF`` (how Python's ``surrogateescape`` keeps the
    undecodable bytes of old NetCDF files) become the Latin-1 character of that byte
    (``"\\udcb0"`` -> ``"°"``); any other lone surrogate becomes ``U+FFFD``.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(chr(code - 0xDC00))
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def _decode_all(items: Sequence[bytes]) -> tuple[list[str], str]:
    """Decode byte strings as UTF-8 when all are valid UTF-8, else all as Latin-1 (exactly invertible)."""
    try:
        return [b.decode("utf-8") for b in items], "utf-8"
    except UnicodeDecodeError:
        return [b.decode("latin-1") for b in items], "latin-1"


# ---------------------------------------------------------------------------------------------
# attribute values: xarray value <-> (typed store value, kind marker)
# ---------------------------------------------------------------------------------------------

_NATURAL_SCALARS = frozenset(["int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64", "float32"])


def _numeric_storage(arr: np.ndarray, where: str) -> np.ndarray:
    """Native-endian numeric/bool data in a dtype ATLAS stores (float16 widened to float32)."""
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "f" and size == 2:
        return arr.astype("float32")
    if kind == "c":
        raise DTypeError(f"{where}: complex dtype {arr.dtype} is not supported; store real and imag parts separately")
    if kind in "iub" or (kind == "f" and size in (4, 8)):
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)
    raise DTypeError(f"{where}: dtype {arr.dtype} is not supported")


def _datetime_to_ns(arr: np.ndarray, where: str) -> np.ndarray:
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


def _timedelta_to_int(arr: np.ndarray) -> np.ndarray:
    unit = np.datetime_data(arr.dtype)[0]
    return arr.astype(f"<m8[{unit}]", copy=False).view("<i8")


def _object_strings(flat: Sequence[Any], where: str) -> tuple[list[str], str | None]:
    """Elements of an object array as text: all str (kind None) or all bytes (kind = encoding)."""
    kinds = {type(x) for x in flat}
    if not kinds or kinds <= {str, np.str_}:
        return [sanitize_text(str(x)) for x in flat], None
    if kinds <= {bytes, np.bytes_}:
        return _decode_all([bytes(x) for x in flat])
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
        arr = np.asarray(value).reshape(1)
        stored, kind = _encode_attr_array(arr, where)
        item = stored[0]
        name = None if stored.dtype == object else dtypes.canonical_dtype(stored.dtype)
        if not kind and (name in _NATURAL_SCALARS or name == "timestamp_nanoseconds"):
            return item, None, ""  # reads back as a numpy scalar of this very dtype
        enc = kind.split(";")[2] if kind else ""
        return item, None, f"np;{arr.dtype.str};{enc}"
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            raise ValueOverflowError(f"{where}: integer {value} does not fit int64 or uint64")
        if isinstance(value, int) and value >= 2**63:
            return value, None, "int"  # stored as uint64
        return value, None, ""
    if isinstance(value, str):
        return sanitize_text(value), None, ""
    if isinstance(value, (bytes, bytearray)):
        (text,), enc = _decode_all([bytes(value)])
        return text, None, f"bytes;{enc}"
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            raise DTypeError(f"{where}: timezone-aware datetime {value!r}; convert it to naive UTC first")
        return np.datetime64(value, "ns"), None, "pydatetime"
    if isinstance(value, _dt.date):
        return np.datetime64(value, "ns"), None, "pydate"
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


def _encode_attr_array(arr: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """An ndarray attribute in a typed-storable form and its kind marker ("" when exact)."""
    kind = arr.dtype.kind
    flat = arr.reshape(-1)
    if kind == "S":
        text, enc = _decode_all(flat.tolist())
        return _object_array(text, arr.shape), f"nd;{arr.dtype.str};{enc}"
    if kind == "U":
        return _object_array([sanitize_text(s) for s in flat.tolist()], arr.shape), f"nd;{arr.dtype.str};"
    if kind == "O":
        text, enc = _object_strings(list(flat), where)
        return _object_array(text, arr.shape), (f"nd;|O;{enc}" if enc else "")
    if kind == "M":
        unit = np.datetime_data(arr.dtype)[0]
        if unit == "ns":
            return arr.astype("<M8[ns]", copy=False), "" if arr.dtype.isnative else f"nd;{arr.dtype.str};"
        return arr.astype(f"<M8[{unit}]", copy=False).view("<i8"), f"nd;{arr.dtype.str};"  # counts of its unit
    if kind == "m":
        return _timedelta_to_int(arr), f"nd;{arr.dtype.str};"
    stored = _numeric_storage(arr, where)
    return stored, "" if stored.dtype == arr.dtype else f"nd;{arr.dtype.str};"


def _object_array(items: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
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
        return _restore_array(np.asarray([value], dtype=_stored_dtype_for(dtype_str)), dtype_str, enc)[0]
    arr = _restore_array(np.asarray(value), dtype_str, enc)
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


def _restore_array(data: np.ndarray, dtype_str: str | None, enc: str | None) -> np.ndarray:
    """Stored data (as read) back to the original numpy dtype."""
    if not dtype_str and not enc:
        return data
    target = np.dtype(dtype_str) if dtype_str else np.dtype(object)
    if enc:  # text that was bytes
        encoded = [str(s).encode(enc) for s in data.reshape(-1)]
        if target.kind == "S":
            return np.array(encoded, dtype=target).reshape(data.shape)
        return _object_array(encoded, data.shape)
    if target.kind == "m":
        unit = np.datetime_data(target)[0]
        return np.asarray(data, dtype="<i8").view(f"<m8[{unit}]").astype(target, copy=False)
    if target.kind == "U":
        return np.asarray(data).astype(target) if data.size else np.empty(data.shape, dtype=target)
    return np.asarray(data).astype(target)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


@dataclass
class _VarPlan:
    index: int
    name: str
    array: str
    variable: Any  # xr.Variable
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    store_dtype: str
    restore_dtype: str | None
    is_coord: bool
    chunk_shape: tuple[int, ...] = ()
    fill: Any = None
    text_kind: str | None = None  # set while writing: the encoding of bytes data
    object_kind: str | None = None  # "str" or "bytes" for object data, once seen
    datetime_as_int: bool = False  # datetimes beyond the ns range: int64 counts of their own unit


@dataclass
class _Plan:
    attributes: list[tuple[str, Any, Any]] = field(default_factory=list)
    variables: list[_VarPlan] = field(default_factory=list)


def _array_name(name: str) -> str:
    """The array that holds variable ``name`` (the name itself when it is a valid array name)."""
    try:
        validate_name(name, "array")
        return name
    except InvalidNameError:
        from urllib.parse import quote

        return "%" + quote(name, safe="")


def _is_dask(data: Any) -> bool:
    return hasattr(data, "__dask_graph__") and hasattr(data, "chunks") and data.__dask_graph__() is not None


def _dask_data(var: Any) -> Any:
    """The dask array behind a variable, or None (never loads a lazily indexed backend array)."""
    if var.chunks is None:
        return None
    data = var.data
    return data if _is_dask(data) else None


def _storage_kind(var: Any, where: str) -> tuple[str, str | None]:
    """The ATLAS dtype of variable ``var`` and the numpy dtype to restore on read (None: natural)."""
    dt = var.dtype
    if not isinstance(dt, np.dtype):
        raise DTypeError(f"{where}: dtype {dt} is not a numpy dtype and is not supported")
    kind = dt.kind
    if kind == "b":
        return "bool", None
    if kind in "iu":
        name = f"{'int' if kind == 'i' else 'uint'}{dt.itemsize * 8}"
        return name, None if dt.isnative else dt.str
    if kind == "f":
        if dt.itemsize == 2:
            return "float32", dt.str
        if dt.itemsize in (4, 8):
            return f"float{dt.itemsize * 8}", None if dt.isnative else dt.str
        raise DTypeError(f"{where}: dtype {dt} (extended precision) is not supported; use float64")
    if kind == "M":
        return "timestamp_nanoseconds", None if np.datetime_data(dt)[0] == "ns" and dt.isnative else dt.str
    if kind == "m":
        return "int64", dt.str
    if kind == "S":
        return "string", dt.str
    if kind == "U":
        return "string", dt.str
    if kind == "O":
        return "string", None
    if kind == "c":
        raise DTypeError(f"{where}: complex dtype {dt} is not supported; store real and imaginary parts separately")
    raise DTypeError(f"{where}: dtype {dt} is not supported")


def _check_chunks_arg(chunks: Any, all_dims: set[str]) -> Any:
    if chunks is None:
        return None
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, (bool, np.bool_)):
        if chunks < 1:
            raise InvalidArgumentError(f"chunks must be a positive int, got {chunks!r}")
        return int(chunks)
    if isinstance(chunks, Mapping):
        out: dict[str, int | None] = {}
        for dim, size in chunks.items():
            if dim not in all_dims:
                raise InvalidArgumentError(f"chunks names dimension {dim!r}, which the dataset does not have")
            if size is None or (isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size == -1):
                out[dim] = None
            elif isinstance(size, (int, np.integer)) and not isinstance(size, (bool, np.bool_)) and size >= 1:
                out[dim] = int(size)
            else:
                raise InvalidArgumentError(f"chunks[{dim!r}] must be a positive int, -1 or None, got {size!r}")
        return out
    raise InvalidArgumentError(f"chunks must be None, a positive int or a dict dim -> size, got {chunks!r}")


def _disk_chunks(plan: _VarPlan, chunks: Any) -> tuple[int, ...]:
    shape = plan.shape
    if not shape:
        return ()
    itemsize = 8 if plan.store_dtype == "string" else dtypes.storage_dtype(plan.store_dtype).itemsize
    default = default_chunk_shape(shape, itemsize)
    data = _dask_data(plan.variable)
    dask_chunks = data.chunks if data is not None else None
    out = []
    for axis, (dim, size) in enumerate(zip(plan.dims, shape)):
        if isinstance(chunks, int):
            c: int | None = chunks
        elif isinstance(chunks, dict) and dim in chunks:
            c = chunks[dim] if chunks[dim] is not None else size
        elif dask_chunks is not None:
            c = max((b for b in dask_chunks[axis]), default=1)
        else:
            c = default[axis]
        out.append(max(1, min(int(c or 1), size)) if size > 0 else 1)
    return tuple(out)


def _fill_for(plan: _VarPlan) -> Any:
    """The typed fill value of a variable: ``_FillValue`` from attrs, else from encoding (None if unusable)."""
    var = plan.variable
    raw = var.attrs.get("_FillValue", var.encoding.get("_FillValue"))
    if raw is None:
        return None
    try:
        value = raw.reshape(-1)[0] if isinstance(raw, np.ndarray) and raw.size == 1 else raw
        if isinstance(value, (bytes, np.bytes_)):
            value = _decode_all([bytes(value)])[0][0]
        elif isinstance(value, str):
            value = sanitize_text(value)
        elif isinstance(value, np.timedelta64):
            unit = np.datetime_data(plan.variable.dtype)[0]
            value = int(np.asarray(value).astype(f"<m8[{unit}]").view("<i8"))
        elif isinstance(value, np.datetime64):
            value = _datetime_to_ns(np.asarray(value).reshape(1), "fill")[0]
        return dtypes.check_fill_value(value, plan.store_dtype)
    except (AtlasError, ValueError, TypeError, OverflowError):
        return None  # kept exactly in attrs/encoding; the array simply has no typed fill


def _attr_entries(
    attrs: Mapping[Any, Any], default_key: Any, taken: set[str], fallback: Any, where: str
) -> tuple[list[tuple[str, Any, Any]], list[str], list[str], list[str]]:
    """Store entries for one attrs dict plus the layout lists (names, keys, kinds)."""
    entries, names, keys, kinds = [], [], [], []
    for j, (raw_key, value) in enumerate(attrs.items()):
        if not isinstance(raw_key, str):
            raise InvalidNameError(f"{where}: attribute name {raw_key!r} is not a str")
        key = sanitize_text(raw_key)
        what = f"{where} attribute {key!r}"
        stored, dtype, kind = encode_attr_value(value, what)
        try:
            dtypes.normalize_attribute(stored, dtype)
        except AtlasError as exc:
            raise type(exc)(f"{what}: {exc}") from None
        legacy = default_key(key)
        if legacy and not legacy.startswith(PREFIX) and legacy not in taken:
            store_key, listed = legacy, ""
        else:
            store_key = listed = fallback(j)
        taken.add(store_key)
        entries.append((store_key, stored, dtype))
        names.append(key)
        keys.append(listed)
        kinds.append(kind)
    return entries, names, keys, kinds


def _layout_lists(prefix_key: Any, names: list[str], keys: list[str], kinds: list[str]) -> list[tuple[str, Any, Any]]:
    out: list[tuple[str, Any, Any]] = []
    if names:
        out.append((prefix_key("attrs"), names, "string"))
        if any(keys):
            out.append((prefix_key("attr_keys"), keys, "string"))
        if any(kinds):
            out.append((prefix_key("attr_kinds"), kinds, "string"))
    return out


def _plan(ds: Any, chunks: Any) -> _Plan:
    import pandas as pd

    plan = _Plan()
    all_dims = {d for d in ds.dims}
    chunks = _check_chunks_arg(chunks, all_dims)
    arrays_seen: dict[str, str] = {}
    coord_names = set(ds.coords)
    for i, (name, var) in enumerate(ds.variables.items()):
        where = _where_var(name)
        if not isinstance(name, str) or name == "":
            raise InvalidNameError(f"{where}: variable names must be non-empty str")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidNameError(f"{where}: the name is not valid unicode") from None
        array = _array_name(name)
        if array in arrays_seen:
            raise InvalidNameError(f"{where} and variable {arrays_seen[array]!r} would share array {array!r}")
        arrays_seen[array] = name
        for d in var.dims:
            if not isinstance(d, str) or d == "":
                raise InvalidNameError(f"{where}: dimension names must be non-empty str, got {d!r}")
            try:
                d.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidNameError(f"{where}: dimension name {d!r} is not valid unicode") from None
        if isinstance(ds.indexes.get(name), pd.MultiIndex):
            raise DTypeError(f"{where} is a pandas MultiIndex, which is not supported; call ds.reset_index() first")
        store_dtype, restore = _storage_kind(var, where)
        vp = _VarPlan(
            i,
            name,
            array,
            var,
            tuple(var.dims),
            tuple(int(s) for s in var.shape),
            store_dtype,
            restore,
            name in coord_names,
        )
        if var.dtype.kind == "O" and _dask_data(var) is None and 0 < var.size <= 4096:
            _object_strings(list(np.asarray(var.values).reshape(-1)), where)  # fail early on small ones
        vp.chunk_shape = _disk_chunks(vp, chunks)
        vp.fill = _fill_for(vp)
        plan.variables.append(vp)
    taken: set[str] = set()
    entries, names, keys, kinds = _attr_entries(ds.attrs, lambda k: k, taken, lambda j: f"{PREFIX}/a/{j}", "dataset")
    plan.attributes += entries
    plan.attributes.append((PREFIX, LAYOUT_VERSION, "int64"))
    plan.attributes += _layout_lists(lambda w: f"{PREFIX}/{w}", names, keys, kinds)
    plan.attributes.append((_K_VARS, [v.name for v in plan.variables], "string"))
    if any(v.array != v.name for v in plan.variables):
        plan.attributes.append((_K_ARRAYS, [v.array for v in plan.variables], "string"))
    plan.attributes.append((_K_COORDS, [v.is_coord for v in plan.variables], "bool"))
    for vp in plan.variables:
        i = vp.index
        where = _where_var(vp.name)
        entries, names, keys, kinds = _attr_entries(
            vp.variable.attrs, lambda k, a=vp.array: f"{a}.{k}", taken, lambda j, i=i: _vkey(i, f"a/{j}"), where
        )
        plan.attributes += entries
        plan.attributes += _layout_lists(lambda w, i=i: _vkey(i, w), names, keys, kinds)
        if vp.restore_dtype:
            plan.attributes.append((_vkey(i, "dtype"), vp.restore_dtype, "string"))
        enc_names, enc_kinds = [], []
        for key in ENCODING_KEYS:
            if key not in vp.variable.encoding:
                continue
            value = vp.variable.encoding[key]
            if key == "dtype":
                with contextlib.suppress(TypeError):
                    value, kind = np.dtype(value).str, "npdtype"
                    plan.attributes.append((_vkey(i, f"e/{len(enc_names)}"), value, "string"))
                    enc_names.append(key)
                    enc_kinds.append(kind)
                continue
            try:
                stored, dtype, kind = encode_attr_value(value, f"{where} encoding {key!r}")
                dtypes.normalize_attribute(stored, dtype)
            except AtlasError:
                continue  # encoding is advisory: an unstorable entry is dropped
            plan.attributes.append((_vkey(i, f"e/{len(enc_names)}"), stored, dtype))
            enc_names.append(key)
            enc_kinds.append(kind)
        if enc_names:
            plan.attributes.append((_vkey(i, "encoding"), enc_names, "string"))
            if any(enc_kinds):
                plan.attributes.append((_vkey(i, "encoding_kinds"), enc_kinds, "string"))
    return plan


def _to_storage(block: np.ndarray, vp: _VarPlan, enc: str | None) -> np.ndarray:
    """One block of variable data in the form ``write_array`` takes."""
    where = _where_var(vp.name)
    kind = block.dtype.kind
    if kind == "M" and vp.datetime_as_int:
        out = block.astype(f"<M8[{np.datetime_data(block.dtype)[0]}]", copy=False).view("<i8")
    elif kind == "M":
        try:
            out = _datetime_to_ns(block, where)
        except ValueOverflowError:
            raise _OutOfNsRange from None
    elif kind == "m":
        out = _timedelta_to_int(block)
    elif kind == "U":
        out = _object_array([sanitize_text(s) for s in block.reshape(-1).tolist()], block.shape)
    elif kind == "S":
        try:
            out = _object_array([b.decode(enc or "utf-8") for b in block.reshape(-1).tolist()], block.shape)
        except UnicodeDecodeError:
            raise _NotUtf8 from None
    elif kind == "O":
        flat = list(block.reshape(-1))
        if not flat:
            return _object_array([], block.shape)
        seen = "bytes" if isinstance(flat[0], (bytes, np.bytes_)) else "str"
        if vp.object_kind is not None and seen != vp.object_kind:
            raise DTypeError(f"{where}: object data mixes str and bytes across blocks")
        vp.object_kind = seen
        if seen == "bytes":
            if not all(isinstance(x, (bytes, np.bytes_)) for x in flat):
                _object_strings(flat, where)  # raises the mixed-types error
            try:
                out = _object_array([bytes(b).decode(enc or "utf-8") for b in flat], block.shape)
            except UnicodeDecodeError:
                raise _NotUtf8 from None
        else:
            out = _object_array(_object_strings(flat, where)[0], block.shape)
    else:
        out = _numeric_storage(block, where)
    return out if out.flags.c_contiguous else out.copy(order="C")  # (ascontiguousarray turns 0-D into 1-D)


def _blocks(vp: _VarPlan) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(start, numpy block)`` pieces of a variable, aligned to its on-disk chunks, in bounded memory."""
    var = vp.variable
    if not vp.shape:
        yield (), np.asarray(var.values)
        return
    if any(s == 0 for s in vp.shape):
        return
    data = _dask_data(var)
    itemsize = max(var.dtype.itemsize, 8)
    if data is not None:
        new_chunks = []
        for blocks, c in zip(data.chunks, vp.chunk_shape):
            edges = np.cumsum(blocks)[:-1]
            new_chunks.append(blocks if bool(np.all(edges % c == 0)) else c)
        if any(not isinstance(c, tuple) for c in new_chunks):
            data = data.rechunk(tuple(new_chunks))
        offsets = [np.concatenate([[0], np.cumsum(b)[:-1]]).astype(int).tolist() for b in data.chunks]
        batch: list[tuple[int, ...]] = []
        nbytes = 0
        for idx in itertools.product(*(range(len(b)) for b in data.chunks)):
            size = math.prod(data.chunks[a][k] for a, k in enumerate(idx)) * itemsize
            if batch and nbytes + size > BATCH_BYTES:
                yield from _compute_batch(data, batch, offsets)
                batch, nbytes = [], 0
            batch.append(idx)
            nbytes += size
        if batch:
            yield from _compute_batch(data, batch, offsets)
        return
    c0 = vp.chunk_shape[0]
    row_bytes = max(1, math.prod(vp.shape[1:]) * itemsize)
    rows = max(c0, (BATCH_BYTES // row_bytes) // c0 * c0)
    dim0 = vp.dims[0]
    for a in range(0, vp.shape[0], rows):
        piece = var if rows >= vp.shape[0] else var.isel({dim0: slice(a, a + rows)})
        yield (a,) + (0,) * (len(vp.shape) - 1), np.asarray(piece.values)


def _compute_batch(data: Any, batch: list[tuple[int, ...]], offsets: list[list[int]]) -> Iterator:
    import dask

    results = dask.compute(*(data.blocks[idx] for idx in batch))
    for idx, block in zip(batch, results):
        yield tuple(offsets[a][k] for a, k in enumerate(idx)), np.asarray(block)


def _write_variable(view: DatasetView, vp: _VarPlan) -> None:
    encodings: tuple[str | None, ...] = ("utf-8", "latin-1") if vp.variable.dtype.kind in "SO" else (None,)
    for enc in encodings:
        try:
            for start, block in _blocks(vp):
                view.write_array(vp.array, start, _to_storage(block, vp, enc))
        except _NotUtf8:
            continue  # rare: bytes that are not UTF-8; rewrite every block as Latin-1 (exactly invertible)
        except _OutOfNsRange:
            # Datetimes beyond 1678..2262: store int64 counts of the variable's own unit instead.
            view.delete_array(vp.array)
            vp.store_dtype, vp.datetime_as_int, vp.fill = "int64", True, None
            view.define_array(vp.array, "int64", vp.dims, vp.shape, vp.chunk_shape)
            for start, block in _blocks(vp):
                view.write_array(vp.array, start, _to_storage(block, vp, enc))
        if vp.variable.dtype.kind == "S" or vp.object_kind == "bytes":
            vp.text_kind = enc
        return


def add_xr_dataset(store: Atlas, ds: Any, name: str, chunks: Any = None) -> DatasetView:
    """Write an ``xarray.Dataset`` as dataset ``name`` of ``store`` (staged; call ``flush``).

    Every coordinate and data variable becomes an array with its dims; dataset and
    variable attributes, ``_FillValue`` (from attrs or encoding), coordinates vs data
    variables and the exact numpy dtypes are kept, so :func:`to_xarray` returns an
    identical dataset.  dask-backed variables are computed and written block by
    block, never whole.

    Parameters
    ----------
    store : atlas.Atlas
        A writable store handle.
    ds : xarray.Dataset
        The dataset to write.
    name : str
        The new dataset's name.
    chunks : int or dict, optional
        On-disk chunk size: one int for every dimension, or ``{dim: size}`` (``-1``
        or None for the whole dimension).  Default: a dask variable's chunking
        (irregular dask chunks are regularised to their largest block), otherwise
        ATLAS's default chunk shape.

    Returns
    -------
    atlas.DatasetView
        The new dataset.  Nothing is committed until ``store.flush()`` (or the end
        of a ``with`` block).

    Raises
    ------
    DatasetExistsError
        If the store already has a dataset ``name``.
    DTypeError
        For a variable of an unsupported dtype (complex, mixed object data, ...),
        naming the variable; nothing is written.
    """
    if isinstance(ds, xr.DataArray):
        raise InvalidArgumentError("add_xr_dataset takes an xarray.Dataset; use da.to_dataset() for a DataArray")
    if not isinstance(ds, xr.Dataset):
        raise InvalidArgumentError(f"add_xr_dataset takes an xarray.Dataset, got {type(ds).__name__}")
    validate_name(name, "dataset")
    if store.read_only:
        raise ReadOnlyError(f"cannot add dataset {name!r}: store {store.location} was opened read-only")
    plan = _plan(ds, chunks)
    view = store.create_dataset(name)
    try:
        for key, value, dtype in plan.attributes:
            view.set_attribute(key, value, dtype)
        for vp in plan.variables:
            view.define_array(vp.array, vp.store_dtype, vp.dims, vp.shape, vp.chunk_shape, vp.fill)
        for vp in plan.variables:
            _write_variable(view, vp)
            if vp.text_kind:
                view.set_attribute(_vkey(vp.index, "text"), vp.text_kind, "string")
                if vp.restore_dtype is None:
                    view.set_attribute(_vkey(vp.index, "dtype"), "|O", "string")
    except BaseException:
        with contextlib.suppress(Exception):
            store.delete_dataset(name)
        raise
    return view


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


@dataclass
class VarSpec:
    """How one stored array becomes an xarray variable."""

    name: str
    array: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    store_dtype: str
    is_coord: bool
    attrs: dict[str, Any] = field(default_factory=dict)
    encoding: dict[str, Any] = field(default_factory=dict)
    restore: tuple[str | None, str | None] = (None, None)

    @property
    def dtype(self) -> np.dtype:
        if self.restore[0]:
            return np.dtype(self.restore[0])
        return dtypes.result_dtype(self.store_dtype)

    @property
    def single_chunk(self) -> bool:
        return all(c >= s for c, s in zip(self.chunk_shape, self.shape))

    @property
    def is_index(self) -> bool:
        return self.is_coord and len(self.dims) == 1 and self.dims[0] == self.name

    def signature(self) -> tuple:
        return (self.name, self.array, self.dims, self.shape, self.store_dtype, self.is_coord, self.restore)


def _legacy_owner(key: str, arrays: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(array, attr)`` for a legacy ``{array}.{attr}`` key (longest array-name prefix), else None."""
    best = None
    pos = key.find(".")
    while pos > 0:
        if key[:pos] in arrays:
            best = (key[:pos], key[pos + 1 :])
        pos = key.find(".", pos + 1)
    return best


def _decode_attrs(
    attrs: Mapping[str, Any], names: list, keys: list, kinds: list, default_key: Any, used: set[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for j, attr in enumerate(names):
        key = (keys[j] if j < len(keys) else "") or default_key(attr)
        if key not in attrs:
            continue  # deleted through the store API since
        used.add(key)
        out[attr] = decode_attr_value(attrs[key], kinds[j] if j < len(kinds) else "")
    return out


def read_layout(view: DatasetView) -> tuple[dict[str, Any], list[VarSpec]]:
    """The global attrs and variable specs of a stored dataset.

    Datasets written by :func:`add_xr_dataset` are read through their
    ``_atlas_xarray`` layout; any other dataset (written with the array API or by the
    original ATLAS) maps every array to a variable and ``{array}.{attr}`` keys to
    variable attributes.
    """
    attrs = view.attributes()
    metas = {a: view.array_meta(a) for a in view.list_arrays()}
    used: set[str] = set()
    specs: list[VarSpec] = []
    gattrs: dict[str, Any] = {}
    version = attrs.get(PREFIX)
    if version is not None:
        if not isinstance(version, int) or version > LAYOUT_VERSION:
            raise FormatVersionError(
                f"dataset {view.name!r} uses xarray layout {version!r}; this atlas reads up to {LAYOUT_VERSION}"
            )
        used.add(PREFIX)
        names = list(attrs.get(_K_VARS, []))
        arrays = list(attrs.get(_K_ARRAYS, names))
        coords = list(attrs.get(_K_COORDS, [False] * len(names)))
        gattrs = _decode_attrs(
            attrs,
            list(attrs.get(f"{PREFIX}/attrs", [])),
            list(attrs.get(f"{PREFIX}/attr_keys", [])),
            list(attrs.get(f"{PREFIX}/attr_kinds", [])),
            lambda k: k,
            used,
        )
        for i, (name, array) in enumerate(zip(names, arrays)):
            meta = metas.get(array)
            if meta is None:
                continue  # deleted through the array API since
            spec = _spec(name, array, meta, bool(coords[i]) if i < len(coords) else False)
            spec.attrs = _decode_attrs(
                attrs,
                list(attrs.get(_vkey(i, "attrs"), [])),
                list(attrs.get(_vkey(i, "attr_keys"), [])),
                list(attrs.get(_vkey(i, "attr_kinds"), [])),
                lambda k, a=array: f"{a}.{k}",
                used,
            )
            enc_names = list(attrs.get(_vkey(i, "encoding"), []))
            enc_kinds = list(attrs.get(_vkey(i, "encoding_kinds"), []))
            for j, key in enumerate(enc_names):
                raw = attrs.get(_vkey(i, f"e/{j}"))
                kind = enc_kinds[j] if j < len(enc_kinds) else ""
                spec.encoding[key] = np.dtype(raw) if kind == "npdtype" else decode_attr_value(raw, kind)
            spec.restore = (attrs.get(_vkey(i, "dtype")) or None, attrs.get(_vkey(i, "text")) or None)
            specs.append(spec)
    listed = {s.array for s in specs}
    by_array = {s.array: s for s in specs}
    for array, meta in metas.items():
        if array not in listed:
            spec = _spec(array, array, meta, False)
            if meta["fill_value"] is not None:
                spec.encoding["_FillValue"] = meta["fill_value"]
            specs.append(spec)
            by_array[array] = spec
    for key, value in attrs.items():
        if key in used or key.startswith(PREFIX):
            continue
        owner = _legacy_owner(key, by_array)
        if owner is None:
            gattrs[key] = value
        else:
            by_array[owner[0]].attrs[owner[1]] = value
    return gattrs, specs


def _spec(name: str, array: str, meta: Mapping[str, Any], is_coord: bool) -> VarSpec:
    dims = tuple(meta["dimension_names"])
    if not is_coord and len(dims) == 1 and dims[0] == name:
        is_coord = True
    return VarSpec(name, array, dims, tuple(meta["shape"]), tuple(meta["chunk_shape"]), meta["dtype"], is_coord)


def restore_block(data: np.ndarray, restore: tuple[str | None, str | None]) -> np.ndarray:
    """Read data of one variable back to its original numpy dtype."""
    return _restore_array(data, restore[0] if restore[0] != "|O" else None, restore[1])


def build_dataset(variables: dict[str, Any], coord_names: Sequence[str], attrs: dict[str, Any]) -> Any:
    ds = xr.Dataset(variables, attrs=attrs)
    coords = [c for c in coord_names if c not in ds.coords]
    return ds.set_coords(coords) if coords else ds


# -- snapshot recipes and the per-process handle cache -----------------------------------------


class Recipe(NamedTuple):
    """What a task needs to read a committed dataset in any process: no open handle."""

    location: str
    generation: int
    dataset: str
    dataset_id: int
    dataset_version: int


_CACHE: OrderedDict[tuple[str, int, int], list] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 32


def _dataset_token(store: Atlas, name: str) -> tuple[int, int, bool]:
    """``(id, version, has pending changes)`` of a dataset in a handle's view."""
    state = store._st
    meta = state.dataset(name)
    return meta.id, meta.version, name in state.dirty


def recipe_for(store: Atlas, name: str) -> Recipe | None:
    """The recipe of dataset ``name`` at the handle's snapshot; None when it has unflushed changes."""
    ds_id, version, dirty = _dataset_token(store, name)
    if dirty:
        return None
    return Recipe(store.location, store.generation, name, ds_id, version)


def remember_store(store: Atlas) -> None:
    """Offer a freshly opened read-only handle to this thread's cache."""
    key = (store.location, store.generation, threading.get_ident())
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = [store, set()]
            _trim_cache()


def clear_cache() -> None:
    """Drop this process's cached read-only handles (lazy arrays reopen the store on next use)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _trim_cache() -> None:
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def store_for(recipe: Recipe) -> Atlas:
    """A read-only handle (cached per process, thread and snapshot) that serves ``recipe``.

    A handle opened later than the recipe's generation is used only if the dataset
    is unchanged since (same id and version); otherwise ConflictError.
    """
    from atlas.store import Atlas

    key = (recipe.location, recipe.generation, threading.get_ident())
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
    if entry is None:
        entry = [Atlas.open(recipe.location, mode="r"), set()]
        with _CACHE_LOCK:
            entry = _CACHE.setdefault(key, entry)
            _trim_cache()
    store, checked = entry
    if recipe.dataset not in checked:
        try:
            ds_id, version, _ = _dataset_token(store, recipe.dataset)
        except DatasetNotFoundError:
            raise DatasetNotFoundError(
                f"dataset {recipe.dataset!r} of {recipe.location} was deleted after generation {recipe.generation}, "
                "which this lazy array reads"
            ) from None
        if (ds_id, version) != (recipe.dataset_id, recipe.dataset_version):
            raise ConflictError(
                f"dataset {recipe.dataset!r} of {recipe.location} changed after generation {recipe.generation}, "
                "which this lazy array reads; open it again"
            )
        checked.add(recipe.dataset)
    return store


def read_block(
    recipe: Recipe, array: str, start: tuple[int, ...], shape: tuple[int, ...], restore: tuple[str | None, str | None]
) -> np.ndarray:
    """Read one box of a stored variable (a dask task; runs in any process)."""
    out = store_for(recipe).open_dataset(recipe.dataset).read_array(array, start, shape)
    return restore_block(out, restore)


def _lazy_array(recipe: Recipe, spec: VarSpec) -> Any:
    import dask.array as da
    from dask.base import tokenize

    chunks = tuple(
        tuple(min(c, s - k) for k in range(0, s, c)) if s > 0 else (0,) for c, s in zip(spec.chunk_shape, spec.shape)
    )
    name = "atlas-" + tokenize(recipe, spec.array, spec.restore, spec.chunk_shape)
    dsk = {}
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        start = tuple(k * c for k, c in zip(idx, spec.chunk_shape))
        shape = tuple(chunks[a][k] for a, k in enumerate(idx))
        dsk[(name, *idx)] = (read_block, recipe, spec.array, start, shape, spec.restore)
    meta = np.empty((0,) * len(spec.shape), dtype=spec.dtype)
    return da.Array(dsk, name, chunks, dtype=spec.dtype, meta=meta)


def _variable(spec: VarSpec, data: Any) -> Any:
    return xr.Variable(spec.dims, data, attrs=spec.attrs, encoding=dict(spec.encoding))


def to_xarray(store: Atlas, name: str) -> Any:
    """Read dataset ``name`` back as an ``xarray.Dataset``.

    Variables stored in one chunk, 0-D variables and index coordinates are read
    eagerly (numpy); the others become dask arrays with one task per on-disk chunk,
    reading the committed snapshot this handle sees (see :class:`Recipe`).  A dataset
    with unflushed changes in this handle, or any dataset when dask is not
    installed, is read eagerly.
    """
    view = store.open_dataset(name)
    gattrs, specs = read_layout(view)
    recipe = recipe_for(store, name)
    if recipe is not None:
        try:
            import dask.array  # noqa: F401
        except ImportError:
            recipe = None
    variables = {}
    for spec in specs:
        if recipe is None or spec.single_chunk or spec.is_index:
            data = restore_block(view.read_array(spec.array), spec.restore)
        else:
            data = _lazy_array(recipe, spec)
        variables[spec.name] = _variable(spec, data)
    return build_dataset(variables, [s.name for s in specs if s.is_coord], gattrs)


def _values_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fcmM":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def to_xarray_many(store: Atlas, names: Sequence[str], concat_dim: str = "dataset") -> Any:
    """Read many datasets of one schema as one ``xarray.Dataset`` stacked along ``concat_dim``.

    Every variable is read for all datasets at once through
    :meth:`atlas.Atlas.read_array_across_stacked` and gains the leading dimension
    ``concat_dim``, whose coordinate holds the dataset names.  Index coordinates
    (1-D coordinates named like their dimension) must be equal in every dataset and
    are kept once.  Attributes and encodings are those of the first dataset.

    Raises
    ------
    SchemaMismatchError
        If a dataset's variables differ from the first one's (names, dims, shape,
        dtype, coordinate status) or an index coordinate differs; the message names
        the first dataset that differs.
    """
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise InvalidArgumentError(f"names must be a sequence of dataset names, got {names!r}")
    names = list(names)
    if not names:
        raise InvalidArgumentError("to_xarray_many needs at least one dataset name")
    if not isinstance(concat_dim, str) or not concat_dim:
        raise InvalidArgumentError(f"concat_dim must be a non-empty str, got {concat_dim!r}")
    layouts = [read_layout(store.open_dataset(n)) for n in names]
    gattrs, first = layouts[0]
    expected = {s.name: s.signature() for s in first}
    for n, (_, specs) in zip(names[1:], layouts[1:]):
        got = {s.name: s.signature() for s in specs}
        if got != expected:
            raise SchemaMismatchError(_schema_difference(n, names[0], got, expected))
    for spec in first:
        if concat_dim == spec.name or concat_dim in spec.dims:
            raise InvalidArgumentError(f"concat_dim {concat_dim!r} is already a variable or dimension of the datasets")
    variables = {}
    for spec in first:
        if spec.is_index:
            values = store.read_array_across(spec.array, names)
            for n, v in zip(names[1:], values[1:]):
                if not _values_equal(v, values[0]):
                    raise SchemaMismatchError(
                        f"dataset {n!r} has other values of index coordinate {spec.name!r} than dataset "
                        f"{names[0]!r}; read the datasets one by one and combine them with xr.concat(join='outer')"
                    )
            variables[spec.name] = _variable(spec, restore_block(values[0], spec.restore))
        else:
            data = restore_block(store.read_array_across_stacked(spec.array, names), spec.restore)
            variables[spec.name] = xr.Variable(
                (concat_dim, *spec.dims), data, attrs=spec.attrs, encoding=dict(spec.encoding)
            )
    ds = build_dataset(variables, [s.name for s in first if s.is_coord], gattrs)
    return ds.assign_coords({concat_dim: (concat_dim, _object_array(names, (len(names),)))})


def _schema_difference(name: str, first: str, have: dict[str, tuple], exp: dict[str, tuple]) -> str:
    for var in exp:
        if var not in have:
            return f"dataset {name!r} has no variable {var!r}, which dataset {first!r} has"
    for var in have:
        if var not in exp:
            return f"dataset {name!r} has variable {var!r}, which dataset {first!r} has not"
    fields = ("name", "array", "dims", "shape", "dtype", "coordinate", "original dtype")
    for var, sig in have.items():
        for label, a, b in zip(fields, sig, exp[var]):
            if a != b:
                return f"dataset {name!r} variable {var!r} has {label} {a!r}, dataset {first!r} has {b!r}"
    return f"dataset {name!r} differs from dataset {first!r}"  # pragma: no cover - unreachable


# ---------------------------------------------------------------------------------------------
# accessor and backend
# ---------------------------------------------------------------------------------------------


class AtlasDatasetAccessor:
    """``ds.atlas``: ``ds.atlas.write(store, name, chunks=None)`` = :func:`add_xr_dataset`."""

    def __init__(self, ds: Any) -> None:
        self._ds = ds

    def write(self, store: Atlas, name: str, chunks: Any = None) -> DatasetView:
        """Write this dataset into ``store`` as dataset ``name`` (staged; see :func:`add_xr_dataset`)."""
        return add_xr_dataset(store, self._ds, name, chunks)


if not hasattr(xr.Dataset, "atlas"):
    xr.register_dataset_accessor("atlas")(AtlasDatasetAccessor)


def __getattr__(name: str) -> Any:
    # The backend classes live in atlas.xarray_backend, which imports this module: resolve
    # them on first use so either module can be imported first (dask workers unpickle both).
    if name in ("AtlasBackendArray", "AtlasBackendEntrypoint"):
        from atlas import xarray_backend

        return getattr(xarray_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
