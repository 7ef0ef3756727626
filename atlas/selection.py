"""Checks of the arguments users pass to :class:`~atlas.Atlas` and :class:`~atlas.DatasetView`.

One place for every check of a box (``start``/``shape``), a list of names and a
store option, so both classes refuse bad input with the same clear error (an
:class:`~atlas.errors.AtlasError` subclass that keeps the builtin type users catch)
before anything changes.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from atlas import dtypes
from atlas.chunk_shape import default_chunks
from atlas.errors import InvalidArgumentError, InvalidNameError, SelectionError, ShrinkError
from atlas.metadata import MAX_CHUNK_CELLS
from atlas.names import encode_dir_name, validate_label, validate_name

_INT64_MAX = int(np.iinfo(np.int64).max)

__all__ = [
    "array_names",
    "check_array_name",
    "check_bounds",
    "check_budget",
    "check_grace_period",
    "check_label",
    "check_new_array_name",
    "check_resize",
    "check_schema",
    "check_workers",
    "dataset_names",
    "fast_box",
    "int_tuple",
    "resolve_box",
]


def int_tuple(value: Any, what: str) -> tuple[int, ...]:
    """``value`` (a sequence of integers, numpy ones included) as a tuple of int."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise InvalidArgumentError(f"{what} must be a sequence of integers, got {value!r}")
    try:
        items = list(value)
    except TypeError:  # a 0-d numpy array has __iter__ but cannot be iterated
        raise InvalidArgumentError(f"{what} must be a sequence of integers, got {value!r}") from None
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)):
            raise InvalidArgumentError(f"{what} must hold integers, got {v!r} in {value!r}")
        try:
            out.append(operator.index(v))
        except TypeError:
            raise InvalidArgumentError(f"{what} must hold integers, got {v!r} in {value!r}") from None
    return tuple(out)


def check_bounds(start: tuple[int, ...], shape: tuple[int, ...], bounds: tuple[int, ...], where: str) -> None:
    """Refuse a box that leaves an array of shape ``bounds`` (no silent clamping)."""
    if all(b >= 0 and n >= 0 and b + n <= s for b, n, s in zip(start, shape, bounds)):
        return
    for axis, (b, n, s) in enumerate(zip(start, shape, bounds)):
        if b < 0 or n < 0 or b + n > s:
            raise SelectionError(
                f"{where}: selection start={list(start)} shape={list(shape)} leaves the array "
                f"shape {list(bounds)} on axis {axis}"
            )


def resolve_box(
    array_shape: tuple[int, ...], start: Any, shape: Any, where: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The box ``(start, shape)`` a read or write names, checked against ``array_shape``.

    ``start`` None is the origin; ``shape`` None reaches the end of every axis.
    """
    ndim = len(array_shape)
    start_t = (0,) * ndim if start is None else int_tuple(start, f"{where}: start")
    if len(start_t) != ndim:
        raise SelectionError(f"{where}: start {list(start_t)} has rank {len(start_t)}, the array has rank {ndim}")
    if shape is None:
        shape_t = tuple(max(0, s - b) for s, b in zip(array_shape, start_t))
    else:
        shape_t = int_tuple(shape, f"{where}: shape")
        if len(shape_t) != ndim:
            raise SelectionError(f"{where}: shape {list(shape_t)} has rank {len(shape_t)}, the array has rank {ndim}")
    check_bounds(start_t, shape_t, array_shape, where)
    return start_t, shape_t


def fast_box(
    array_shape: tuple[int, ...], start: Any, shape: Any
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """:func:`resolve_box` for the common, valid case; None for anything else.

    Lists or tuples of plain ``int`` (or None) that fit the array are taken as they
    are, without building the error messages :func:`resolve_box` prepares.  Every
    other argument, valid or not, returns None, and the caller goes through
    :func:`resolve_box`, which gives the usual answer or error.
    """
    # Plain loops and type identity tests: this runs on every small read and write,
    # where generator expressions, zip or ``in`` a tuple of types would cost more
    # than the checks themselves.
    ndim = len(array_shape)
    if start is None:
        start_t: tuple[int, ...] = (0,) * ndim
    else:
        if (type(start) is not list and type(start) is not tuple) or len(start) != ndim:
            return None
        for v in start:
            if type(v) is not int:
                return None
        start_t = tuple(start)
    if shape is None:
        shape_t = tuple(max(0, s - b) for s, b in zip(array_shape, start_t))
    else:
        if (type(shape) is not list and type(shape) is not tuple) or len(shape) != ndim:
            return None
        for v in shape:
            if type(v) is not int:
                return None
        shape_t = tuple(shape)
    for axis in range(ndim):
        b = start_t[axis]
        n = shape_t[axis]
        if b < 0 or n < 0 or b + n > array_shape[axis]:
            return None
    return start_t, shape_t


def _str_list(value: Any, refused: str, element: str) -> list[str]:
    """``value`` as a list of str; ``refused`` is the message for a non-sequence,
    ``element`` (formatted with ``type`` and ``item``) for an element that is not a str."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise InvalidArgumentError(refused)
    try:
        out = list(value)
    except TypeError:  # a 0-d numpy array has __iter__ but cannot be iterated
        raise InvalidArgumentError(refused) from None
    for item in out:
        if not isinstance(item, str):
            raise InvalidArgumentError(element.format(type=type(item).__name__, item=item))
    return out


def dataset_names(names: Any) -> list[str]:
    """The dataset names of a bulk read, as a list of str."""
    return _str_list(names, f"dataset names must be a sequence of str, got {names!r:.200}",
                     "dataset names must be str, got {item!r}")  # fmt: skip


def array_names(names: Any) -> list[str]:
    """The array names of :meth:`~atlas.DatasetView.read_arrays`, as a list of str."""
    return _str_list(names, f"names must be a sequence of array names, got {names!r:.80}",
                     "array names must be str, got {type} {item!r:.80}")  # fmt: skip


def check_array_name(array: Any) -> None:
    """Refuse an array name that is not a str (a list or dict would fail as an unhashable key)."""
    if not isinstance(array, str):
        raise InvalidNameError(f"array name must be a str, got {type(array).__name__} {array!r:.80}")


#: Labels (attribute keys, dimension names) and array names known to be valid: the
#: same few repeat across every dataset of a store, so each is checked once.  Only
#: exact ``str`` objects are remembered (a subclass may compare equal to a valid
#: name without being one); both sets are bounded.
_LABELS_CHECKED: set[str] = set()
_ARRAY_NAMES_CHECKED: set[str] = set()
_MAX_REMEMBERED = 4096


def check_label(label: Any, what: str) -> None:
    """:func:`atlas.names.validate_label` (``what`` names the label in the error),
    remembering the labels that passed."""
    if type(label) is str and label in _LABELS_CHECKED:
        return
    validate_label(label, what)
    if type(label) is str:
        if len(_LABELS_CHECKED) >= _MAX_REMEMBERED:
            _LABELS_CHECKED.clear()
        _LABELS_CHECKED.add(label)


def check_new_array_name(name: Any) -> None:
    """The checks of a new array's name: :func:`atlas.names.validate_name` and a
    directory name short enough (:func:`atlas.names.encode_dir_name`), remembering
    the names that passed."""
    if type(name) is str and name in _ARRAY_NAMES_CHECKED:
        return
    validate_name(name, "array")
    encode_dir_name(name)  # refuses a name too long for a directory
    if type(name) is str:
        if len(_ARRAY_NAMES_CHECKED) >= _MAX_REMEMBERED:
            _ARRAY_NAMES_CHECKED.clear()
        _ARRAY_NAMES_CHECKED.add(name)


def check_budget(value: Any) -> int:
    """``max_pending_bytes``: a non-negative int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"max_pending_bytes must be a non-negative int, got {value!r}")
    return value


def check_workers(value: Any) -> int:
    """``max_workers``: a positive int, or None for the number of cores."""
    if value is None:
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"max_workers must be a positive int or None, got {value!r}")
    return value


def check_grace_period(value: object) -> float:
    """``value`` as seconds, or :class:`InvalidArgumentError` unless a number ≥ 0."""
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond float range: longer than any real grace
            seconds = math.inf if value > 0 else -math.inf
        if seconds >= 0:  # also refuses NaN
            return seconds
    raise InvalidArgumentError(f"grace_period must be a non-negative number of seconds, got {value!r}")


def check_resize(
    shape: Any, old_shape: tuple[int, ...], chunk_shape: tuple[int, ...], dims: tuple[str, ...], allow_shrink: Any,
    where: str,
) -> tuple[int, ...]:
    """The new ``shape`` of a ``resize_array`` call, checked against the array's; a tuple of int.

    Refused: another rank, a negative extent, more cells than int64 counts, chunks
    beyond :data:`~atlas.metadata.MAX_CHUNK_CELLS` cells (the chunk shape stays,
    clipped to the new extents), an ``allow_shrink`` that is not a bool, and a
    shrink without ``allow_shrink`` (:class:`~atlas.errors.ShrinkError`).
    """
    shape_t = int_tuple(shape, f"{where}: shape")
    if len(shape_t) != len(old_shape):
        raise InvalidArgumentError(
            f"{where}: new shape {list(shape_t)} has rank {len(shape_t)}, the array has rank {len(old_shape)}"
        )
    if any(s < 0 for s in shape_t):
        raise InvalidArgumentError(f"{where}: shape {list(shape_t)} has a negative extent")
    if math.prod(shape_t) > _INT64_MAX or any(s > _INT64_MAX for s in shape_t):
        raise InvalidArgumentError(f"{where}: shape {list(shape_t)} has more cells than int64 can count")
    cells = math.prod(min(c, max(s, 1)) for c, s in zip(chunk_shape, shape_t, strict=False))
    if cells > MAX_CHUNK_CELLS:
        raise InvalidArgumentError(
            f"{where}: shape {list(shape_t)} makes chunks of {cells} cells (chunk_shape "
            f"{list(chunk_shape)}); at most {MAX_CHUNK_CELLS} per chunk"
        )
    if allow_shrink is not True and allow_shrink is not False:
        raise InvalidArgumentError(f"{where}: allow_shrink must be a bool, got {allow_shrink!r}")
    shrunk = [a for a, (n, o) in enumerate(zip(shape_t, old_shape, strict=False)) if n < o]
    if shrunk and not allow_shrink:
        axis = shrunk[0]
        raise ShrinkError(
            f"{where}: resizing {list(old_shape)} to {list(shape_t)} drops cells along axis {axis} "
            f"({dims[axis]!r}); pass allow_shrink=True to drop them"
        )
    return shape_t


def _plain_ints(value: Any) -> tuple[int, ...] | None:
    """``value`` as a tuple when it is a list or tuple of plain ``int``; None otherwise
    (the caller then checks it with :func:`atlas.selection.int_tuple`)."""
    if type(value) in (list, tuple) and all(type(v) is int for v in value):
        return tuple(value)
    return None


def check_schema(
    dtype: Any, dims: Any, shape: Any, chunk_shape: Any, where: str
) -> tuple[str, tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """``define_array``'s checks of the dtype, shape, dims and chunk shape, in that order.

    Returns ``(dtype name, dims, shape, chunk shape)``; the chunk shape defaults to
    :func:`atlas.chunk_shape.default_chunks` of the shape.
    """
    dtype_name = dtypes.canonical_dtype(dtype)
    shape_t = _plain_ints(shape)
    if shape_t is None:
        shape_t = int_tuple(shape, f"{where}: shape")
    if min(shape_t, default=0) < 0:
        raise InvalidArgumentError(f"{where}: shape {list(shape_t)} has a negative extent")
    if math.prod(shape_t) > _INT64_MAX or max(shape_t, default=0) > _INT64_MAX:
        raise InvalidArgumentError(f"{where}: shape {list(shape_t)} has more cells than int64 can count")
    if isinstance(dims, str) or not hasattr(dims, "__iter__"):
        raise InvalidArgumentError(f"{where}: dims must be a sequence of str, got {dims!r}")
    dims_t = tuple(dims)
    for d in dims_t:
        validate_label(d, f"{where}: dimension name")
    if len(dims_t) != len(shape_t):
        raise InvalidArgumentError(f"{where}: {len(dims_t)} dims {list(dims_t)} for a shape of rank {len(shape_t)}")
    itemsize = 8 if dtype_name == "string" else dtypes.storage_dtype(dtype_name).itemsize
    if chunk_shape is None:
        # At most DEFAULT_CHUNK_BYTES, so far below MAX_CHUNK_CELLS: no check needed.
        return dtype_name, dims_t, shape_t, default_chunks(shape_t, itemsize)
    chunks = int_tuple(chunk_shape, f"{where}: chunk_shape")
    if len(chunks) != len(shape_t):
        raise InvalidArgumentError(
            f"{where}: chunk_shape {list(chunks)} has rank {len(chunks)}, shape has rank {len(shape_t)}"
        )
    if any(c <= 0 for c in chunks):
        raise InvalidArgumentError(f"{where}: chunk_shape {list(chunks)} must be positive")
    if any(c > _INT64_MAX for c in chunks):
        # Reads and writes compute chunk bounds in int64.
        raise InvalidArgumentError(f"{where}: chunk_shape {list(chunks)} has an extent beyond int64")
    cells = math.prod(min(c, max(s, 1)) for c, s in zip(chunks, shape_t, strict=False))
    if cells > MAX_CHUNK_CELLS:
        raise InvalidArgumentError(
            f"{where}: chunk_shape {list(chunks)} has {cells} cells; at most {MAX_CHUNK_CELLS} per chunk"
        )
    return dtype_name, dims_t, shape_t, chunks
