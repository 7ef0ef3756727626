"""Batched ingest: many small datasets staged in one call (:meth:`atlas.Atlas.add_datasets`).

A store of very many small datasets is mostly built by writing each dataset once,
whole.  Doing that through ``create_dataset`` / ``define_array`` / ``write_array`` /
``set_attribute`` checks and stages every piece separately; this module checks the
whole batch first (so bad input changes nothing), then stages it with the least
work per dataset: one record per dataset and per array, one staged chunk per small
array (its data copied once, no read-modify-write, no chunk plan).  The arrays of a
batch repeat a few schemas: an array whose name, dims, dtype and shape passed every
check before, with data already in storage form, is not checked again (see
:data:`_KNOWN`).  The result is
exactly what the per-call path would have staged: the same schemas, chunks, fill
values, attributes and, after ``flush``, the same bytes and stats.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from atlas import attributes, dtypes
from atlas.dataset import default_chunk_shape
from atlas.engine.staged import PendingChunk
from atlas.errors import DatasetExistsError, DTypeError, InvalidArgumentError
from atlas.metadata import ArrayMeta, DatasetMeta, check_counter, gc_paused
from atlas.names import validate_label, validate_name
from atlas.selection import check_label, check_new_array_name
from atlas.txn.state import WorkingState

__all__ = ["add_datasets"]

#: Staged bytes after which a batch lets the handle spill (see ``max_pending_bytes``).
_SPILL_CHECK_BYTES = 16 << 20

#: numpy dtype -> ATLAS dtype name, for the dtypes seen so far (formatting the
#: message argument of ``from_numpy_dtype`` costs more than the lookup itself).
_DTYPE_NAMES: dict[np.dtype, str] = {}

#: How an array is staged: as its one chunk, through the engine's chunked write, or
#: not at all (no cells).
_WHOLE, _CHUNKED, _EMPTY = 0, 1, 2

#: ``(name, dtype, dims, shape, chunk_shape, fill, storage-form values, how)`` of one array.
_Array = tuple[str, str, tuple[str, ...], tuple[int, ...], tuple[int, ...], Any, np.ndarray, int]

_SEQ = (list, tuple)
_NDARRAY = np.ndarray  # one global lookup in the per-array fast path, not a global and an attribute
#: Numeric and bool dtypes whose data is staged as it is (their storage dtype).
_PLAIN_DTYPES = {
    name: dtypes.storage_dtype(name) for name in dtypes.DTYPE_NAMES if name not in ("string", "timestamp_nanoseconds")
}
#: The same by ``id``: cheaper than hashing a dtype, and exact (``_PLAIN_DTYPES``
#: keeps these dtype objects alive, so no other object has their ids).
_PLAIN_BY_ID = {id(dt): name for name, dt in _PLAIN_DTYPES.items()}
#: ``(array name, dims, dtype name, shape) -> (dims, chunk shape, how, shape)`` of arrays
#: given as ``(dims, data)`` with plain data that passed every check: a batch repeats
#: a few array schemas, checked in full once.
_KNOWN: dict[tuple[str, tuple[str, ...], str, tuple[int, ...]],
             tuple[tuple[str, ...], tuple[int, ...], int, tuple[int, ...]]] = {}  # fmt: skip
_MAX_KNOWN = 1024
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: First characters (``name[:1]``) and whole names no dataset name may have.
_BAD_FIRST, _DOTS = ("", "_"), (".", "..")
#: The most string values whose typed form a batch shares between its datasets: the
#: values that repeat (platform, units, flags) are few; unique ones would only grow it.
_MAX_SHARED_STRINGS = 1 << 10


def add_datasets(state: WorkingState, datasets: Iterable[Any]) -> list[str]:
    """Check then stage every dataset of ``datasets`` in ``state``; their names, in order.

    See :meth:`atlas.Atlas.add_datasets` for the accepted forms.  Nothing is staged
    unless every entry is valid.
    """
    # A batch creates many small acyclic objects: the collector's passes over the
    # growing working state would cost more than the ingest itself and free nothing.
    with gc_paused():
        return _add(state, datasets)


def _add(state: WorkingState, datasets: Iterable[Any]) -> list[str]:
    if isinstance(datasets, (str, bytes, Mapping)) or not hasattr(datasets, "__iter__"):
        raise InvalidArgumentError(
            f"datasets must be an iterable of (name, arrays[, attributes]) tuples, got {type(datasets).__name__}"
        )
    planned: list[tuple[str, list[_Array], dict[str, dict[str, Any]]]] = []
    names: set[str] = set()
    n_arrays = 0
    normalize = attributes.normalize
    keys: set[str] = set()  # attribute keys checked in this batch
    strings: dict[str, dict[str, Any]] = {}  # typed form of the string values seen in this batch
    for position, entry in enumerate(datasets):
        if type(entry) is tuple and len(entry) == 3:
            name, arrays, attrs = entry
        else:
            name, arrays, attrs = _entry(entry, position)
        # validate_name's checks, inlined for the common name (ASCII is valid UTF-8);
        # any other name takes them all.
        if type(name) is not str or not name.isascii() or "/" in name or name[:1] in _BAD_FIRST or name in _DOTS:
            validate_name(name, "dataset")
        if name in names:
            raise DatasetExistsError(f"dataset {name!r} appears twice in the batch")
        names.add(name)
        checked = []  # loops, not comprehensions: no function frame of their own per dataset
        for a, spec in arrays.items() if type(arrays) is dict else _items(arrays, name, "arrays"):
            checked.append(_array(name, a, spec))
        typed = {}
        # Datasets of a batch mostly repeat the keys of those before: one C-level subset
        # test spares a lookup per key.  It matches by equality, and an object equal to
        # a checked key is not one, so a key that is not an exact str is checked anyway.
        # Each key is checked before its value is typed, as one dataset at a time does.
        known = type(attrs) is dict and attrs.keys() <= keys
        for key, value in attrs.items() if type(attrs) is dict else _items(attrs, name, "attributes"):
            if type(key) is not str or not (known or key in keys):
                check_label(key, "attribute name")
                if type(key) is str:  # a subclass may compare equal to keys it is not
                    keys.add(key)
            # The commonest values typed here, exactly as ``normalize`` types them: the
            # call would cost more than the typing (a batch has many attributes per dataset).
            kind = type(value)
            if kind is float:
                typed[key] = {"t": "float64", "v": value}
            elif kind is str:
                # Typed values are replaced, never changed in place (see
                # ``txn.state._copy_dataset``), so the datasets of a batch share one
                # typed form per string value: short strings repeat across datasets.
                shared = strings.get(value)
                if shared is None:
                    # ASCII is always valid UTF-8; any other text takes every check.
                    shared = {"t": "string", "v": value} if value.isascii() else normalize(value)
                    if len(strings) < _MAX_SHARED_STRINGS:
                        strings[value] = shared
                typed[key] = shared
            elif kind is int and _INT64_MIN <= value <= _INT64_MAX:
                typed[key] = {"t": "int64", "v": value}
            else:
                typed[key] = normalize(value)
        n_arrays += len(checked)
        planned.append((name, checked, typed))
    taken = state.first_existing(_names_of(planned))
    if taken is not None:
        raise DatasetExistsError(f"dataset {taken!r} already exists")
    where = state.backend.location
    check_counter("next_dataset_id", state.next_dataset_id + len(planned), where)
    check_counter("next_slot", state.next_slot + n_arrays, where)
    _stage(state, planned)
    return _names_of(planned)


def _names_of(planned: list[tuple[str, Any, Any]]) -> list[str]:
    """The names of ``planned`` datasets, in order."""
    return [entry[0] for entry in planned]


def _entry(entry: Any, position: int) -> tuple[Any, Any, Any]:
    if isinstance(entry, tuple) and len(entry) in (2, 3):
        return entry if len(entry) == 3 else (entry[0], entry[1], None)
    raise InvalidArgumentError(
        f"datasets[{position}] must be a tuple (name, arrays) or (name, arrays, attributes), got {entry!r:.120}"
    )


def _items(value: Any, name: str, what: str) -> Iterable[tuple[Any, Any]]:
    if type(value) is dict:  # the common case, before the slower ABC check
        return value.items()
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"dataset {name!r}: {what} must be a mapping, got {type(value).__name__}")
    return value.items()


def _array(ds_name: str, name: Any, spec: Any) -> _Array:
    """Check one array of the batch (the checks of ``define_array`` and ``write_array``)."""
    if type(spec) is tuple and len(spec) == 2:
        # The common case: the same array name, dims, dtype and shape in every dataset,
        # checked in full once (see _KNOWN).
        dims, data = spec
        if type(data) is _NDARRAY and type(name) is str and type(dims) in _SEQ:
            # By identity: a dtype equal to a storage dtype but not it (another byte order
            # compares unequal anyway; metadata does not) takes the full checks.
            dtype_name = _PLAIN_BY_ID.get(id(data.dtype))
            if dtype_name is not None and data.flags.c_contiguous:
                dims_t = tuple(dims)
                for d in dims_t:  # exact str only: an object equal to a checked dim is not one
                    if type(d) is not str:
                        break
                else:
                    known = _KNOWN.get((name, dims_t, dtype_name, data.shape))
                    if known is not None:
                        # The remembered tuples: objects shared by the batch's records.
                        return name, dtype_name, known[0], known[3], known[1], None, data, known[2]
    checked = _check_array(ds_name, name, spec)
    if len(spec) == 2 and checked[5] is None and checked[6] is spec[1] and type(name) is str:
        # ``values is data``: no conversion was needed, so the same key can skip the checks.
        key = (name, checked[2], checked[1], checked[3])
        if all(type(d) is str for d in key[1]) and checked[1] in _PLAIN_DTYPES:
            if len(_KNOWN) >= _MAX_KNOWN:
                _KNOWN.clear()
            _KNOWN[key] = (checked[2], checked[4], checked[7], checked[3])
    return checked


def _check_array(ds_name: str, name: Any, spec: Any) -> _Array:
    """Every check of ``define_array`` and ``write_array`` for one array of the batch."""
    check_new_array_name(name)
    where = f"dataset {ds_name!r} array {name!r}"
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise InvalidArgumentError(f"{where}: expected a tuple (dims, data) or (dims, data, fill_value), got "
                                   f"{type(spec).__name__}")  # fmt: skip
    dims, data = spec[0], spec[1]
    fill_value = spec[2] if len(spec) == 3 else None
    if isinstance(dims, str) or not hasattr(dims, "__iter__"):
        raise InvalidArgumentError(f"{where}: dims must be a sequence of str, got {dims!r}")
    dims_t = tuple(dims)
    for d in dims_t:
        validate_label(d, f"{where}: dimension name")
    if isinstance(data, np.generic):
        data = np.asarray(data)
    if not isinstance(data, np.ndarray):
        raise DTypeError(f"{where}: data must be a numpy array, got {type(data).__name__}")
    if len(dims_t) != data.ndim:
        raise InvalidArgumentError(f"{where}: {len(dims_t)} dims {list(dims_t)} for data of rank {data.ndim}")
    dtype_name = _DTYPE_NAMES.get(data.dtype)
    if dtype_name is None:
        # Interned: the very object the fast path of _array gives (the name in
        # dtypes.DTYPE_NAMES), so the first array of a process and the later ones
        # share it and a flush tells the batch alike by identity (staged_alike).
        dtype_name = sys.intern(dtypes.from_numpy_dtype(data.dtype, what=f"{data.dtype} of {where}"))
        _DTYPE_NAMES[data.dtype] = dtype_name
    if not data.flags.c_contiguous:  # (never a 0-d array: ascontiguousarray would make it 1-d)
        data = np.ascontiguousarray(data)
    values = dtypes.coerce_write_data(data, dtype_name, where)
    itemsize = 8 if dtype_name == "string" else values.dtype.itemsize
    shape = values.shape
    fill = dtypes.check_fill_value(fill_value, dtype_name)
    chunks = default_chunk_shape(shape, itemsize)
    if not shape or (all(shape) and all(c >= n for c, n in zip(chunks, shape, strict=False))):
        how = _WHOLE
    elif math.prod(shape):
        how = _CHUNKED
    else:
        how = _EMPTY
    return name, dtype_name, dims_t, shape, chunks, fill, values, how


def _stage(state: WorkingState, planned: list[tuple[str, list[_Array], dict[str, dict[str, Any]]]]) -> None:
    """Stage checked datasets (nothing here can fail on valid input but allocation)."""
    version = state.base.generation + 1
    since_spill_check = 0
    pending = state.pending
    engines = state.engines
    # The counters and each engine's staged bytes are kept in locals and stored back
    # before anything else (a spill) reads them: an attribute update per array costs.
    next_id, slot = state.next_dataset_id, state.next_slot
    staged: dict[str, list] = {}  # array name -> [engine, its pending dict, bytes added]
    for name, arrays, typed in planned:
        ds_arrays = {}
        pending[name] = DatasetMeta(next_id, version, typed, ds_arrays)
        next_id += 1
        for array_name, dtype_name, dims, shape, chunks, fill, values, how in arrays:
            ds_arrays[array_name] = meta = ArrayMeta(slot, dtype_name, dims, shape, chunks, fill, {}, None)
            if how == _WHOLE:
                # One chunk holds the whole array: stage a copy of the data as that chunk.
                target = staged.get(array_name)
                if target is None:
                    engine = engines.get(array_name) or state.engine(array_name)
                    target = staged[array_name] = [engine, engine.pending, 0]
                flat = values.copy() if values.ndim == 1 else values.reshape(-1).copy()
                target[1][slot] = {0: PendingChunk(flat, None)}
                nbytes = flat.nbytes
                target[2] += nbytes
                since_spill_check += nbytes
            elif how == _CHUNKED:
                engine = engines.get(array_name) or state.engine(array_name)
                engine.write(meta, (0,) * len(shape), values, f"dataset {name!r} array {array_name!r}")
                since_spill_check += values.nbytes
            slot += 1
        if since_spill_check >= _SPILL_CHECK_BYTES:
            state.next_dataset_id, state.next_slot = next_id, slot
            _add_staged_bytes(staged)
            state.maybe_spill()
            since_spill_check = 0
    state.next_dataset_id, state.next_slot = next_id, slot
    _add_staged_bytes(staged)
    state.changes += 1
    state.maybe_spill()


def _add_staged_bytes(staged: dict[str, list]) -> None:
    """Add the bytes counted in ``staged`` to their engines' ``pending_nbytes`` (and reset the counts)."""
    for target in staged.values():
        target[0].pending_nbytes += target[2]
        target[2] = 0
