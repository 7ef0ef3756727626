"""Batched ingest: many small datasets staged in one call (:meth:`atlas.Atlas.add_datasets`).

A store of very many small datasets is mostly built by writing each dataset once,
whole.  Doing that through ``create_dataset`` / ``define_array`` / ``write_array`` /
``set_attribute`` checks and stages every piece separately; this module checks the
whole batch first (so bad input changes nothing), then stages it with the least
work per dataset: one record per dataset and per array, one staged chunk per small
array (its data copied once, no read-modify-write, no chunk plan).  The result is
exactly what the per-call path would have staged: the same schemas, chunks, fill
values, attributes and, after ``flush``, the same bytes and stats.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from atlas import attributes, dtypes
from atlas.dataset import default_chunk_shape
from atlas.engine.staged import PendingChunk
from atlas.errors import DatasetExistsError, DTypeError, InvalidArgumentError
from atlas.metadata import ArrayMeta, DatasetMeta, check_counter
from atlas.names import encode_dir_name, validate_label, validate_name
from atlas.txn.state import WorkingState

__all__ = ["add_datasets"]

#: Staged bytes after which a batch lets the handle spill (see ``max_pending_bytes``).
_SPILL_CHECK_BYTES = 16 << 20

#: numpy dtype -> ATLAS dtype name, for the dtypes seen so far (formatting the
#: message argument of ``from_numpy_dtype`` costs more than the lookup itself).
_DTYPE_NAMES: dict[np.dtype, str] = {}

#: ``(name, dtype, dims, shape, chunk_shape, fill, storage-form values)`` of one array.
_Array = tuple[str, str, tuple[str, ...], tuple[int, ...], tuple[int, ...], Any, np.ndarray]


def add_datasets(state: WorkingState, datasets: Iterable[Any]) -> list[str]:
    """Check then stage every dataset of ``datasets`` in ``state``; their names, in order.

    See :meth:`atlas.Atlas.add_datasets` for the accepted forms.  Nothing is staged
    unless every entry is valid.
    """
    # A batch creates many small acyclic objects: the collector's passes over the
    # growing working state would cost more than the ingest itself and free nothing.
    was_on = gc.isenabled()
    gc.disable()
    try:
        return _add(state, datasets)
    finally:
        if was_on:
            gc.enable()


def _add(state: WorkingState, datasets: Iterable[Any]) -> list[str]:
    if isinstance(datasets, (str, bytes, Mapping)) or not hasattr(datasets, "__iter__"):
        raise InvalidArgumentError(
            f"datasets must be an iterable of (name, arrays[, attributes]) tuples, got {type(datasets).__name__}"
        )
    checked_array_names: set[str] = set()
    planned: list[tuple[str, list[_Array], dict[str, dict[str, Any]]]] = []
    names: set[str] = set()
    n_arrays = 0
    for position, entry in enumerate(datasets):
        name, arrays, attrs = _entry(entry, position)
        validate_name(name, "dataset")
        if name in names:
            raise DatasetExistsError(f"dataset {name!r} appears twice in the batch")
        if state.has_dataset(name):
            raise DatasetExistsError(f"dataset {name!r} already exists")
        names.add(name)
        checked = [_array(name, a, spec, checked_array_names) for a, spec in _items(arrays, name, "arrays")]
        typed = {}
        for key, value in _items(attrs, name, "attributes"):
            validate_label(key, "attribute name")
            typed[key] = attributes.normalize(value)
        n_arrays += len(checked)
        planned.append((name, checked, typed))
    where = state.backend.location
    check_counter("next_dataset_id", state.next_dataset_id + len(planned), where)
    check_counter("next_slot", state.next_slot + n_arrays, where)
    _stage(state, planned)
    return [name for name, _, _ in planned]


def _entry(entry: Any, position: int) -> tuple[Any, Any, Any]:
    if isinstance(entry, tuple) and len(entry) in (2, 3):
        return entry if len(entry) == 3 else (entry[0], entry[1], None)
    raise InvalidArgumentError(
        f"datasets[{position}] must be a tuple (name, arrays) or (name, arrays, attributes), got {entry!r:.120}"
    )


def _items(value: Any, name: str, what: str) -> Iterable[tuple[Any, Any]]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"dataset {name!r}: {what} must be a mapping, got {type(value).__name__}")
    return value.items()


def _array(ds_name: str, name: Any, spec: Any, checked: set[str]) -> _Array:
    """Check one array of the batch (the checks of ``define_array`` and ``write_array``)."""
    if name not in checked:
        validate_name(name, "array")
        encode_dir_name(name)
        checked.add(name)
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
        dtype_name = dtypes.from_numpy_dtype(data.dtype, what=f"{data.dtype} of {where}")
        _DTYPE_NAMES[data.dtype] = dtype_name
    if not data.flags.c_contiguous:  # (never a 0-d array: ascontiguousarray would make it 1-d)
        data = np.ascontiguousarray(data)
    values = dtypes.coerce_write_data(data, dtype_name, where)
    itemsize = 8 if dtype_name == "string" else values.dtype.itemsize
    shape = values.shape
    fill = dtypes.check_fill_value(fill_value, dtype_name)
    return name, dtype_name, dims_t, shape, default_chunk_shape(shape, itemsize), fill, values


def _stage(state: WorkingState, planned: list[tuple[str, list[_Array], dict[str, dict[str, Any]]]]) -> None:
    """Stage checked datasets (nothing here can fail on valid input but allocation)."""
    version = state.base.generation + 1
    since_spill_check = 0
    for name, arrays, typed in planned:
        ds = DatasetMeta(id=state.next_dataset_id, version=version, attributes=typed)
        state.next_dataset_id += 1
        state.pending[name] = ds
        for array_name, dtype_name, dims, shape, chunks, fill, values in arrays:
            meta = ArrayMeta(state.next_slot, dtype_name, dims, shape, chunks, fill)
            state.next_slot += 1
            ds.arrays[array_name] = meta
            engine = state.engine(array_name)
            if not shape or (all(shape) and all(c >= n for c, n in zip(chunks, shape))):
                # One chunk holds the whole array: stage a copy of the data as that chunk.
                flat = values.reshape(-1).copy()
                engine.pending[meta.slot] = {0: PendingChunk(flat, None)}
                engine.pending_nbytes += flat.nbytes
                since_spill_check += flat.nbytes
            elif math.prod(shape):
                engine.write(meta, (0,) * len(shape), values, f"dataset {name!r} array {array_name!r}")
                since_spill_check += values.nbytes
        if since_spill_check >= _SPILL_CHECK_BYTES:
            state.maybe_spill()
            since_spill_check = 0
    state.changes += 1
    state.maybe_spill()
