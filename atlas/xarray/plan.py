"""The xarray -> ATLAS mapping of :func:`atlas.xarray.add_xr_dataset`, decided before anything is staged.

:func:`plan_dataset` checks a whole ``xarray.Dataset`` and turns it into a :class:`DatasetPlan`: for
every variable its array name, ATLAS dtype and restore marker, on-disk chunk shape and
typed fill value; and every attribute entry of the ``_atlas_xarray`` layout (global and
variable attributes, kind markers, coordinates, kept encodings).  A bad dataset raises
here, so nothing is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlas import attributes, dtypes
from atlas.errors import AtlasError, DTypeError, FillValueError, InvalidNameError
from atlas.names import validate_label, validate_name
from atlas.xarray.conversions import (
    CF_PACKED,
    K_ARRAYS,
    K_COORDS,
    K_VARS,
    LAYOUT_PACKED,
    PREFIX,
    datetime_to_ns,
    decode_all,
    encode_attr_value,
    object_strings,
    sanitize_text,
    vkey,
    where_var,
)
from atlas.xarray.plan_chunks import check_chunks_arg, disk_chunks

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


@dataclass
class VarPlan:
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
    #: chunk_shape is what ``define_array`` picks without one (it then checks the schema once per store).
    default_chunks: bool = False
    #: The dask array behind the variable (:func:`dask_data`), or None.
    dask: Any = None


@dataclass
class DatasetPlan:
    #: ``{store key: typed value}`` (:func:`atlas.attributes.normalize`'s form), in staging order.
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: list[VarPlan] = field(default_factory=list)

    def put(self, key: str, value: Any, dtype: Any) -> None:
        """Add the store attribute ``key`` (checked now: a bad value fails before anything is staged)."""
        if dtype == "string" and type(value) is str and value.isascii():
            # What normalize returns for ASCII text (valid UTF-8), without its dtype lookups.
            self.attributes[key] = {"t": "string", "v": value}
        else:
            self.attributes[key] = attributes.normalize(value, dtype)

    def put_texts(self, key: str, texts: list[str]) -> None:
        """:meth:`put` of a list of ``str`` as dtype string."""
        # The layout's lists of names repeat from file to file: each list is checked once.
        # Only lists of exact ``str`` are remembered (a str subclass may compare equal to
        # another name), and only short ones (a rare long list is not worth the memory).
        whole = tuple(texts)
        known = _TEXT_LISTS.get(whole)
        if known is not None and set(map(type, whole)) <= _STR_ONLY:
            self.attributes[key] = _fresh(known)
            return
        if (
            len(texts) > _MAX_TEXT_LIST
            or sum(map(len, texts)) > _MAX_TEXT_CHARS
            or not set(map(type, whole)) <= _STR_ONLY
        ):
            self.attributes[key] = attributes.normalize(texts, "string")
            return
        if known is None:
            known = attributes.normalize(texts, "string")
            if len(_TEXT_LISTS) >= _MAX_TYPED:
                _TEXT_LISTS.clear()
            _TEXT_LISTS[whole] = _fresh(known)
        self.attributes[key] = _fresh(known)


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


def dask_data(var: Any) -> Any:
    """The dask array behind a variable, or None (never loads a lazily indexed backend array)."""
    if type(getattr(var, "_data", None)) is np.ndarray:
        return None  # a loaded variable (most of them): no dask array to look for
    # ``Variable.__dask_graph__`` (None unless the data is a dask array) first: ``var.chunks``
    # is a typing-protocol check that costs a tenth of staging a small dataset.
    graph = getattr(var, "__dask_graph__", None)
    if graph is not None and graph() is None:
        return None
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


def _fill_for(plan: VarPlan) -> Any:
    """The typed fill value of a variable: ``_FillValue`` from attrs, else from encoding (None if unusable)."""
    var = plan.variable
    raw = var.attrs.get("_FillValue", var.encoding.get("_FillValue"))
    if raw is None:
        return None
    cache_key = None
    if isinstance(raw, np.generic) and raw.dtype.kind in _BYTES_KINDS and raw.nbytes <= _MAX_TYPED_BYTES:
        # The fill values of a fleet's files repeat: each (fill, variable dtype) is checked once
        # (a long text fill is not remembered: the cache's memory stays bounded).
        cache_key = (plan.store_dtype, var.dtype, raw.dtype, raw.tobytes())
        if cache_key in _FILLS:
            return _FILLS[cache_key]
    try:
        value = raw.reshape(-1)[0] if isinstance(raw, np.ndarray) and raw.size == 1 else raw
        if isinstance(value, (bytes, np.bytes_)):
            value = decode_all([bytes(value)])[0][0]
        elif isinstance(value, str):
            value = sanitize_text(value)
        elif isinstance(value, np.timedelta64):
            unit = np.datetime_data(plan.variable.dtype)[0]
            value = int(np.asarray(value).astype(f"<m8[{unit}]").view("<i8"))
        elif isinstance(value, np.datetime64):
            value = datetime_to_ns(np.asarray(value).reshape(1), "fill")[0]
        fill = dtypes.check_fill_value(value, plan.store_dtype)
    except (AtlasError, ValueError, TypeError, OverflowError) as exc:
        if _fill_must_fit(plan, "_FillValue" in var.attrs):
            raise FillValueError(
                f"{where_var(plan.name)}: _FillValue {raw!r} does not fit its dtype {var.dtype} ({exc}); "
                "give a fill value of the variable's dtype"
            ) from None
        return None  # a fill of the encoded (on-disk) dtype or of a time/text variable: kept as it is
    if cache_key is not None:
        if len(_FILLS) >= _MAX_TYPED:
            _FILLS.clear()
        _FILLS[cache_key] = fill
    return fill


def _fill_must_fit(plan: VarPlan, in_attrs: bool) -> bool:
    """True when a ``_FillValue`` that does not fit the variable's dtype is a mistake.

    That is a numeric variable whose fill is given in ``attrs``, or in ``encoding``
    for the variable's own dtype.  An ``encoding`` fill of another on-disk dtype
    (what ``xr.open_dataset`` keeps for packed or masked data, and for times) is
    CF's business and stays as it is.
    """
    if plan.variable.dtype.kind not in "iuf":
        return False
    if in_attrs:
        return True
    target = plan.variable.encoding.get("dtype")
    try:
        return target is None or np.dtype(target) == plan.variable.dtype
    except TypeError:
        return False


def _is_packed(vp: VarPlan) -> bool:
    """A variable of CF-packed integers, to be decoded on read (see :data:`CF_PACKED`)."""
    return bool(vp.variable.encoding.get(CF_PACKED)) and vp.variable.dtype.kind in "iu"


#: ``(is an array, dtype, shape, bytes) -> (typed value, kind marker)`` of the numpy attribute
#: values seen so far: the files of a fleet repeat a few (fill values, valid ranges, flag
#: values), and checking one costs more than a dict lookup.  Bounded; handed out as copies.
_TYPED: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}
_MAX_TYPED = 4096
#: ``(numeric scalar type, bytes) -> (typed value, kind marker)``: :data:`_TYPED` for the
#: numpy scalars whose type alone gives their dtype (the commonest non-text attributes).
_SCALAR_TYPED: dict[tuple[type, bytes], tuple[dict[str, Any], str]] = {}
_NUMERIC_SCALARS = frozenset(
    [
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    ]
)
#: ``(store dtype, variable dtype, fill dtype, fill bytes) -> typed fill`` of the numpy
#: ``_FillValue`` scalars that fit (see :func:`_fill_for`).
_FILLS: dict[tuple[Any, ...], Any] = {}
#: Variable names that passed every check -> their array name (see :func:`plan_dataset`).
_ARRAYS: dict[str, str] = {}
#: Dimension names that passed :func:`atlas.names.validate_label`.
_LABELS: set[str] = set()
#: :func:`_variable_signature` -> (the keys and typed values of the variable's entries, the
#: keys of those holding lists, the attribute keys they take).
_VARIABLES: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[dict[str, Any], ...], tuple[str, ...], frozenset[str]]]
_VARIABLES = {}
_MAX_VARIABLES = 1024
#: ``tuple of str -> typed value`` of the lists of text :meth:`DatasetPlan.put` stored so far.
_TEXT_LISTS: dict[tuple[str, ...], dict[str, Any]] = {}
#: The element types of a list of text :data:`_TEXT_LISTS` may remember.
_STR_ONLY = frozenset((str,))
#: Lists of text of at most this many names are remembered in :data:`_TEXT_LISTS`.
_MAX_TEXT_LIST = 256
#: ... and of at most this many characters in all.
_MAX_TEXT_CHARS = 4096
#: Array attributes of at most this many elements are remembered in :data:`_TYPED`.
_MAX_TYPED_ARRAY = 64
#: Numpy attribute values of at most this many bytes are remembered in :data:`_TYPED`
#: (one text element may be long: the element count alone bounds no memory).
_MAX_TYPED_BYTES = 1024
#: dtype kinds whose values are their bytes (no object pointers, no structured records).
_BYTES_KINDS = frozenset("biufmMSU")


def _fresh(typed: dict[str, Any]) -> dict[str, Any]:
    """A copy of a remembered typed value that shares no list with it (the values ``v``
    of a list or array and the shape ``s`` of an array are its only lists)."""
    out = typed.copy()
    if type(out["v"]) is list:
        out["v"] = list(out["v"])
    if "s" in out:
        out["s"] = list(out["s"])
    return out


def _typed_attr(value: Any, where: str, key: str, role: str = "attribute") -> tuple[dict[str, Any], str]:
    """``(typed value, kind marker)`` of attribute (or encoding, ``role``) ``key``'s value;
    ``where`` names its owner in errors."""
    if type(value) is str and value.isascii():  # ASCII text is valid unicode: nothing to sanitise
        return {"t": "string", "v": value}, ""
    if type(value) in _NUMERIC_SCALARS:
        scalar_key = (type(value), value.tobytes())
        known = _SCALAR_TYPED.get(scalar_key)
        if known is None:
            known = _typed_value(value, where, key, role, None)
            if len(_SCALAR_TYPED) >= _MAX_TYPED:
                _SCALAR_TYPED.clear()
            _SCALAR_TYPED[scalar_key] = known
        return known[0].copy(), known[1]  # a scalar's typed value holds no list
    cache_key = None
    is_array = type(value) is np.ndarray
    if (
        ((is_array and value.size <= _MAX_TYPED_ARRAY) or isinstance(value, np.generic))
        and value.dtype.kind in _BYTES_KINDS
        and value.nbytes <= _MAX_TYPED_BYTES
    ):
        cache_key = (is_array, value.dtype, value.shape, value.tobytes())
        known = _TYPED.get(cache_key)
        if known is not None:
            return _fresh(known[0]), known[1]
    typed, kind = _typed_value(value, where, key, role, cache_key)
    return _fresh(typed) if cache_key is not None else typed, kind


def _typed_value(value: Any, where: str, key: str, role: str, cache_key: Any) -> tuple[dict[str, Any], str]:
    """:func:`_typed_attr` of a value not remembered yet (remembered under ``cache_key`` unless None)."""
    what = f"{where} {role} {key!r}"
    stored, dtype, kind = encode_attr_value(value, what)
    try:
        typed = attributes.normalize(stored, dtype)
    except AtlasError as exc:
        raise type(exc)(f"{what}: {exc}") from None
    if cache_key is not None:
        if len(_TYPED) >= _MAX_TYPED:
            _TYPED.clear()
        _TYPED[cache_key] = (typed, kind)
    return typed, kind


def _attr_entries(
    plan: DatasetPlan, attrs: Mapping[Any, Any], prefix: str, taken: set[str], fallback: Any, where: str
) -> tuple[list[str], list[str], list[str]]:
    """Add the store entries of one attrs dict to ``plan``; the layout lists (names, keys, kinds).

    An attribute is stored under ``prefix + name`` unless that key is empty, taken or
    in the layout's namespace; then under ``fallback(position)``, listed in the keys.
    """
    names: list[str] = []
    keys: list[str] = []
    kinds: list[str] = []
    entries = plan.attributes
    for j, (raw_key, value) in enumerate(attrs.items()):
        if not isinstance(raw_key, str):
            raise InvalidNameError(f"{where}: attribute name {raw_key!r} is not a str")
        key = raw_key if raw_key.isascii() else sanitize_text(raw_key)
        if type(value) is str and value.isascii():
            # Most attributes: ASCII text is stored as it is (_typed_attr's first case, inlined).
            typed, kind = {"t": "string", "v": value}, ""
        else:
            typed, kind = _typed_attr(value, where, key)
        legacy = prefix + key
        if legacy and not legacy.startswith(PREFIX) and legacy not in taken:
            store_key, listed = legacy, ""
        else:
            store_key = listed = fallback(j)
        taken.add(store_key)
        entries[store_key] = typed
        names.append(key)
        keys.append(listed)
        kinds.append(kind)
    return names, keys, kinds


def _layout_lists(plan: DatasetPlan, prefix_key: Any, names: list[str], keys: list[str], kinds: list[str]) -> None:
    if names:
        plan.put_texts(prefix_key("attrs"), names)
        if any(keys):
            plan.put_texts(prefix_key("attr_keys"), keys)
        if any(kinds):
            plan.put_texts(prefix_key("attr_kinds"), kinds)


def _variable_entries(plan: DatasetPlan, vp: VarPlan, packed: bool, taken: set[str]) -> None:
    """Add the store entries of variable ``vp`` to ``plan``: its attributes, layout lists and
    kept encodings (``packed``: CF-packed, see :func:`_is_packed`); ``taken`` as in :func:`_attr_entries`.

    The entries of a variable repeat from file to file: when the variable's index, array,
    attributes and encodings are those of a variable planned before (:func:`_variable_signature`),
    copies of its entries from then are taken instead of computing them again.
    """
    signature = _variable_signature(vp, packed)
    if signature is None:
        _compute_variable_entries(plan, vp, packed, taken)
        return
    known = _VARIABLES.get(signature)
    if known is None:
        # Computed apart, with the keys this variable alone takes, so that they can be remembered.
        own = DatasetPlan()
        own_taken: set[str] = set()
        _compute_variable_entries(own, vp, packed, own_taken)
        entries = own.attributes
        # The entries whose copies need lists of their own (see _fresh).
        with_lists = tuple(key for key, typed in entries.items() if type(typed["v"]) is list)
        known = (tuple(entries), tuple(entries.values()), with_lists, frozenset(own_taken))
        if len(_VARIABLES) >= _MAX_VARIABLES:
            _VARIABLES.clear()
        _VARIABLES[signature] = known
    keys, values, with_lists, own_keys = known
    if not taken.isdisjoint(own_keys):
        # An attribute key the dataset's attributes (or another variable) took already:
        # this variable's entries differ from the ones computed alone (rare).
        _compute_variable_entries(plan, vp, packed, taken)
        return
    taken |= own_keys
    # Copies that share nothing with the remembered entries: the dicts copied in one pass,
    # then the lists of the few that hold some (in place: the keys keep their order).
    out = plan.attributes
    out.update(zip(keys, map(dict.copy, values)))
    for key in with_lists:
        copy = out[key]
        copy["v"] = list(copy["v"])
        if "s" in copy:
            copy["s"] = list(copy["s"])


def _variable_signature(vp: VarPlan, packed: bool) -> tuple[Any, ...] | None:
    """What a variable's entries (:func:`_compute_variable_entries`) depend on, as a key of
    :data:`_VARIABLES`; None when a key or value has no :func:`_value_signature`."""
    attrs = vp.variable.attrs
    if not set(map(type, attrs)) <= _STR_ONLY:
        return None
    # _value_signature, its two commonest cases inlined.
    values = [
        value
        if type(value) is str
        else (type(value), value.tobytes())
        if type(value) in _NUMERIC_SCALARS
        else _value_signature(value)
        for value in attrs.values()
    ]
    encoding = vp.variable.encoding
    kept = [key for key in ENCODING_KEYS if key in encoding]
    for key in kept:
        value = encoding[key]
        # The dtype entry is the dtype's ``str``; equal dtypes (the key of a dict) have equal ones.
        dtype = key == "dtype" and isinstance(value, np.dtype)
        values.append(("dtype", value.str) if dtype else _value_signature(value))
    if None in values:
        return None
    # A signature keeps its variable's text alive (and _VARIABLES its entries) until the
    # cache is cleared: only variables of little text are remembered, bounding that memory.
    if len(values) > _MAX_TEXT_LIST or sum(map(len, attrs)) + sum(len(v) for v in values if type(v) is str) > (
        _MAX_TEXT_CHARS
    ):
        return None
    return vp.index, vp.array, vp.restore_dtype, packed, tuple(attrs), tuple(kept), tuple(values)


def _value_signature(value: Any) -> Any:
    """A hashable key equal only for attribute values stored alike, or None (not remembered).

    The value's exact type is part of it (``1``, ``True``, ``1.0`` and ``np.int8(1)`` are
    equal in Python), and numbers are keyed by their bytes (``-0.0 == 0.0``).
    """
    kind = type(value)
    if kind is str:
        return value
    if kind in _NUMERIC_SCALARS:
        return kind, value.tobytes()
    if kind is int or kind is bool:
        return kind, value
    if kind is bytes:
        return (kind, value) if len(value) <= _MAX_TYPED_BYTES else None
    if kind is float:
        return (kind, value.hex()) if value == value else None  # NaNs may differ in their payload
    if value is None:
        return (None,)
    if kind is np.ndarray:
        if value.size <= _MAX_TYPED_ARRAY and value.dtype.kind in _BYTES_KINDS and value.nbytes <= _MAX_TYPED_BYTES:
            return kind, value.dtype, value.shape, value.tobytes()
        return None
    if isinstance(value, np.generic) and value.dtype.kind in _BYTES_KINDS and value.nbytes <= _MAX_TYPED_BYTES:
        return kind, value.dtype, value.tobytes()
    return None


def _compute_variable_entries(plan: DatasetPlan, vp: VarPlan, packed: bool, taken: set[str]) -> None:
    """:func:`_variable_entries` computed from the variable."""
    i = vp.index
    where = where_var(vp.name)
    names, keys, kinds = _attr_entries(
        plan, vp.variable.attrs, f"{vp.array}.", taken, lambda j, i=i: vkey(i, f"a/{j}"), where
    )
    _layout_lists(plan, lambda w, i=i: vkey(i, w), names, keys, kinds)
    if vp.restore_dtype:
        plan.put(vkey(i, "dtype"), vp.restore_dtype, "string")
    if packed:
        plan.put(vkey(i, "cf"), "mask_and_scale", "string")
    enc_names, enc_kinds = [], []
    encoding = vp.variable.encoding
    for key in ENCODING_KEYS:
        if key not in encoding:
            continue
        value = encoding[key]
        if key == "dtype":
            with contextlib.suppress(TypeError):
                value, kind = np.dtype(value).str, "npdtype"
                plan.put(vkey(i, f"e/{len(enc_names)}"), value, "string")
                enc_names.append(key)
                enc_kinds.append(kind)
            continue
        if type(value) is str and value.isascii():
            typed, kind = {"t": "string", "v": value}, ""
        else:
            try:
                typed, kind = _typed_attr(value, where, key, "encoding")
            except AtlasError:
                continue  # encoding is advisory: an unstorable entry is dropped
        plan.attributes[vkey(i, f"e/{len(enc_names)}")] = typed
        enc_names.append(key)
        enc_kinds.append(kind)
    if enc_names:
        plan.put_texts(vkey(i, "encoding"), enc_names)
        if any(enc_kinds):
            plan.put_texts(vkey(i, "encoding_kinds"), enc_kinds)


def plan_dataset(ds: Any, chunks: Any) -> DatasetPlan:
    import pandas as pd

    plan = DatasetPlan()
    if chunks is not None:
        all_dims = {d for d in ds.dims}
        chunks = check_chunks_arg(chunks, all_dims, {k: tuple(v.dims) for k, v in ds.variables.items()})
    arrays_seen: dict[str, str] = {}
    coord_names = set(ds.coords)
    indexes = ds.indexes  # built on each access: once, not once per variable
    for i, (name, var) in enumerate(ds.variables.items()):
        where = where_var(name)
        array = _ARRAYS.get(name) if type(name) is str else None
        if array is None:
            validate_label(name, f"{where}: variable name")
            array = _array_name(name)
            if type(name) is str:
                if len(_ARRAYS) >= _MAX_TYPED:
                    _ARRAYS.clear()
                _ARRAYS[name] = array
        if array in arrays_seen:
            raise InvalidNameError(f"{where} and variable {arrays_seen[array]!r} would share array {array!r}")
        arrays_seen[array] = name
        for d in var.dims:
            if type(d) is not str or d not in _LABELS:
                validate_label(d, f"{where}: dimension name")
                if type(d) is str:
                    if len(_LABELS) >= _MAX_TYPED:
                        _LABELS.clear()
                    _LABELS.add(d)
        if isinstance(indexes.get(name), pd.MultiIndex):
            raise DTypeError(f"{where} is a pandas MultiIndex, which is not supported; call ds.reset_index() first")
        store_dtype, restore = _storage_kind(var, where)
        vp = VarPlan(
            i,
            name,
            array,
            var,
            tuple(var.dims),
            tuple(map(int, var.shape)),
            store_dtype,
            restore,
            name in coord_names,
        )
        vp.dask = dask_data(var)
        if var.dtype.kind == "O" and vp.dask is None and 0 < var.size <= 4096:
            object_strings(list(np.asarray(var.values).reshape(-1)), where)  # fail early on small ones
        vp.chunk_shape = disk_chunks(vp, chunks)
        vp.fill = _fill_for(vp)
        plan.variables.append(vp)
    taken: set[str] = set()
    names, keys, kinds = _attr_entries(plan, ds.attrs, "", taken, lambda j: f"{PREFIX}/a/{j}", "dataset")
    packed = {vp.index for vp in plan.variables if _is_packed(vp)}
    plan.put(PREFIX, LAYOUT_PACKED if packed else 1, "int64")
    _layout_lists(plan, lambda w: f"{PREFIX}/{w}", names, keys, kinds)
    plan.put_texts(K_VARS, [v.name for v in plan.variables])
    if any(v.array != v.name for v in plan.variables):
        plan.put_texts(K_ARRAYS, [v.array for v in plan.variables])
    plan.put(K_COORDS, [v.is_coord for v in plan.variables], "bool")
    for vp in plan.variables:
        _variable_entries(plan, vp, vp.index in packed, taken)
    return plan
