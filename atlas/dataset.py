"""``DatasetView``: the arrays and attributes of one dataset in a store."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from atlas import attributes, dtypes
from atlas.chunk_shape import DEFAULT_CHUNK_BYTES, default_chunk_shape
from atlas.errors import (
    ArrayExistsError,
    ArrayNotFoundError,
    AtlasError,
    AttributeNotFoundError,
    InvalidArgumentError,
    SelectionError,
)
from atlas.metadata import ArrayMeta, DatasetMeta
from atlas.selection import (
    array_names,
    check_label,
    check_new_array_name,
    check_resize,
    check_schema,
    fast_box,
    resolve_box,
)
from atlas.txn.state import WorkingState

__all__ = ["DEFAULT_CHUNK_BYTES", "DatasetView", "default_chunk_shape"]

#: ``(dtype, dims, shape) -> (dtype name, dims, shape, chunk shape)`` of the
#: ``define_array`` calls without a chunk shape that passed every check: a store's
#: datasets repeat a few schemas, which are then checked once (see :func:`_schema_key`).
_SCHEMAS: dict[tuple[Any, ...], tuple[str, tuple[str, ...], tuple[int, ...], tuple[int, ...]]] = {}
_MAX_SCHEMAS = 1024
_SEQ = (list, tuple)
_STR_ONLY = frozenset((str,))
#: Storage dtype of every dtype whose writes need no conversion when the data has it
#: exactly (strings are checked element by element, so they are not here).
_PLAIN_STORAGE = {name: dtypes.storage_dtype(name) for name in dtypes.DTYPE_NAMES if name != "string"}


def _schema_key(dtype: Any, dims: Any, shape: Any) -> tuple[Any, ...] | None:
    """The :data:`_SCHEMAS` key of a ``define_array`` call, or None when its arguments
    are not all plain (a str dtype, a list or tuple of exact ``str`` dims and of exact
    ``int`` extents): ``24.0`` or ``True`` compare equal to ``24`` or ``1`` but are refused."""
    if type(dtype) is not str or type(dims) not in _SEQ or type(shape) not in _SEQ:
        return None
    for d in dims:
        if type(d) is not str:
            return None
    for n in shape:
        if type(n) is not int:
            return None
    return dtype, tuple(dims), tuple(shape)


class DatasetView:
    """One dataset of a store: define, write and read its arrays and attributes.

    Obtained from :meth:`atlas.Atlas.create_dataset` or
    :meth:`atlas.Atlas.open_dataset`.  A view holds no data of its own; every call
    goes through the store handle, so it sees the handle's pending changes.
    """

    # The store is typed loosely on purpose: this module sits below ``atlas.store``
    # and needs nothing of the handle but its session (lock, working state, mode).
    def __init__(self, store: Any, name: str) -> None:
        self._store = store
        self._session = store.session
        self._lock = self._session.lock
        self._name = name

    @property
    def name(self) -> str:
        """The dataset name."""
        return self._name

    @property
    def store(self) -> Any:
        """The store this dataset lives in (its :class:`atlas.Atlas` handle)."""
        return self._store

    def __repr__(self) -> str:
        try:
            arrays = ", ".join(self.list_arrays())
        except Exception:  # a closed store or a deleted dataset still gets a repr
            return f"<DatasetView {self._name!r}>"
        return f"<DatasetView {self._name!r} arrays=[{arrays}]>"

    # -- helpers -----------------------------------------------------------------------------------

    def _ds(self) -> DatasetMeta:
        return self._session.state().dataset(self._name)

    def _meta(self, array: str) -> ArrayMeta:
        ds = self._ds()
        try:
            return ds.arrays[array]
        except (KeyError, TypeError):
            raise ArrayNotFoundError(f"dataset {self._name!r} has no array {array!r}") from None

    def _where(self, array: str) -> str:
        return f"dataset {self._name!r} array {array!r}"

    def _writable(self, verb: str, target: Any) -> WorkingState:
        """The working state; on a read-only handle ``ReadOnlyError`` naming ``verb target``."""
        session = self._session
        state = session.working
        if state is not None and session.mode != "r":  # the common case, without formatting the message
            return state
        return session.writable(f"{verb} {target!r} in dataset {self._name!r}")

    # -- arrays ------------------------------------------------------------------------------------

    def list_arrays(self) -> list[str]:
        """Names of the arrays defined in this dataset, sorted."""
        with self._lock:
            return sorted(self._ds().arrays)

    def has_array(self, name: str) -> bool:
        """True if the dataset defines array ``name``."""
        with self._lock:
            return isinstance(name, str) and name in self._ds().arrays

    def define_array(
        self,
        name: str,
        dtype: Any,
        dims: Sequence[str],
        shape: Sequence[int],
        chunk_shape: Sequence[int] | None = None,
        fill_value: Any = None,
    ) -> None:
        """Declare a new array; its cells read as the fill value until written.

        Parameters
        ----------
        name : str
            Array name (any non-empty unicode without ``/`` and not starting
            with ``_``).
        dtype : str or numpy.dtype
            One of :data:`atlas.dtypes.DTYPE_NAMES` or an alias; required (``None``
            is refused rather than read as float64, as numpy would).
        dims : sequence of str
            One dimension name per axis.
        shape : sequence of int
            The array shape; ``[]`` for a 0-D array.
        chunk_shape : sequence of int, optional
            Cells per chunk along each axis (default: :func:`default_chunk_shape`).
            An extent may exceed the array's (the chunk is cut at the bounds) but
            not ``2**63 - 1``, and a chunk may hold at most ``2**28`` cells.
        fill_value : scalar, optional
            The value of unwritten cells; checked against ``dtype`` (``TypeError``
            for a value of the wrong kind, ``OverflowError`` out of range).

        Raises
        ------
        ArrayExistsError
            If the dataset already defines ``name`` (a ``FileExistsError``).
        """
        with self._lock:
            session = self._session
            state = session.working
            if state is None or session.mode == "r":
                state = self._writable("define array", name)
            check_new_array_name(name)
            ds = state.dataset(self._name)
            if name in ds.arrays:
                raise ArrayExistsError(f"{self._where(name)} already exists")
            key = _schema_key(dtype, dims, shape) if chunk_shape is None else None
            known = _SCHEMAS.get(key) if key is not None else None
            if known is None:
                dtype_name, dims_t, shape_t, chunks = check_schema(dtype, dims, shape, chunk_shape, self._where(name))
                if key is not None:
                    if len(_SCHEMAS) >= _MAX_SCHEMAS:
                        _SCHEMAS.clear()
                    _SCHEMAS[key] = (dtype_name, dims_t, shape_t, chunks)
            else:
                # The same dtype, dims and shape passed every check before: only the
                # checks that depend on the dataset (above) and the fill value remain.
                dtype_name, dims_t, shape_t, chunks = known
            fill = None if fill_value is None else dtypes.check_fill_value(fill_value, dtype_name)
            slot = state.new_slot()  # first: it refuses a slot past the limit before anything changes
            state.touch(self._name).arrays[name] = ArrayMeta(slot, dtype_name, dims_t, shape_t, chunks, fill, {}, None)

    def delete_array(self, name: str) -> None:
        """Remove an array from this dataset (at the next flush)."""
        with self._lock:
            state = self._writable("delete array", name)
            meta = self._meta(name)
            state.engine(name).discard(meta.slot)
            del state.touch(self._name).arrays[name]

    def write_array(self, name: str, start: Sequence[int] | None, data: np.ndarray) -> None:
        """Write ``data`` into array ``name`` with its first cell at ``start``.

        ``data`` must be a C-contiguous numpy array of the array's dtype (see
        :func:`atlas.dtypes.coerce_write_data`) and of the array's rank, and must
        fit inside the array.  The write is visible to this handle at once and to
        others after :meth:`atlas.Atlas.flush`.
        """
        with self._lock:
            session = self._session
            state = session.working
            if state is None or session.mode == "r":
                state = self._writable("write array", name)
            self._write_locked(state, name, start, data)
            state.maybe_spill()

    def _write_locked(self, state: WorkingState, name: str, start: Any, data: Any) -> None:
        """:meth:`write_array` in ``state`` (the lock held), but for the spill check."""
        arrays = state.dataset(self._name).arrays  # DatasetNotFoundError, a KeyError: not caught below
        try:
            meta = arrays[name]
        except (KeyError, TypeError):
            raise ArrayNotFoundError(f"dataset {self._name!r} has no array {name!r}") from None
        where = self._where(name)
        if type(data) is np.ndarray and data.dtype is _PLAIN_STORAGE.get(meta.dtype) and data.flags.c_contiguous:
            values = data  # already in storage form: what coerce_write_data would return
        else:
            values = dtypes.coerce_write_data(data, meta.dtype, where)
        if values.ndim != len(meta.shape):
            raise SelectionError(f"{where}: data has rank {values.ndim}, the array has rank {len(meta.shape)}")
        box = fast_box(meta.shape, start, values.shape)
        start_t = resolve_box(meta.shape, start, values.shape, where)[0] if box is None else box[0]
        engine = state.engines.get(name)
        (state.engine(name) if engine is None else engine).write(meta, start_t, values, where)
        state.touch(self._name)

    def resize_array(self, name: str, shape: Sequence[int], *, allow_shrink: bool = False) -> None:
        """Change the shape of array ``name``; new cells read as its fill value.

        The chunk shape stays; growing adds chunks.  Growing along the first axis
        (the usual "append along time") reads and stages again only the edge
        chunks whose extent changes, so its cost does not depend on the array's
        size.  Any other change of the chunk grid, and every shrink, copies the
        array's written chunks to a new layout (cost of the array).  Statistics stay
        exact: they are recomputed from the chunks of the new extent.

        Parameters
        ----------
        name : str
            The array.
        shape : sequence of int
            The new shape, of the array's rank.
        allow_shrink : bool
            Shrinking an axis drops the cells beyond the new extent; it is refused
            unless this is True (keyword only).

        Raises
        ------
        ShrinkError
            If an axis shrinks and ``allow_shrink`` is False (a ``ValueError``).
        InvalidArgumentError
            For a shape of another rank, a negative extent, or one that makes a
            chunk exceed the cell limit.
        """
        from atlas.engine import resize  # only resizes need it

        with self._lock:
            state = self._writable("resize array", name)
            old = self._meta(name)
            where = self._where(name)
            shape_t = check_resize(shape, old.shape, old.chunk_shape, old.dims, allow_shrink, where)
            if shape_t == old.shape:
                return
            engine = state.engine(name)
            if resize.grows_in_place(old, shape_t):
                new = dataclasses.replace(old, shape=shape_t, stats=None)
                resize.grow_in_place(engine, old, new, where)
            else:
                slot = state.new_slot()
                new = dataclasses.replace(old, slot=slot, shape=shape_t, stats=None)
                resize.relocate(engine, old, new, where)
            state.touch(self._name).arrays[name] = new
            state.maybe_spill()

    def append_array(self, name: str, data: Any, axis: int = 0) -> tuple[int, ...]:
        """Grow array ``name`` along ``axis`` by ``data`` and write ``data`` there.

        ``data`` must have the array's rank and the array's extent on every other
        axis.  Equivalent to :meth:`resize_array` then :meth:`write_array`, with the
        data checked first, so bad data changes nothing.

        Returns
        -------
        tuple of int
            The start of the appended block.
        """
        with self._lock:
            self._writable("append to array", name)
            meta = self._meta(name)
            where = self._where(name)
            values = dtypes.coerce_write_data(data, meta.dtype, where)
            rank = len(meta.shape)
            if rank == 0:
                raise InvalidArgumentError(f"{where}: a 0-D array cannot grow")
            if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank:
                raise InvalidArgumentError(f"{where}: axis {axis!r} is not an axis of a rank-{rank} array")
            axis = int(axis) % rank
            if values.ndim != rank:
                raise SelectionError(f"{where}: data has rank {values.ndim}, the array has rank {rank}")
            other = [a for a in range(rank) if a != axis and values.shape[a] != meta.shape[a]]
            if other:
                a = other[0]
                raise SelectionError(
                    f"{where}: data has extent {values.shape[a]} along axis {a} ({meta.dims[a]!r}), "
                    f"the array has {meta.shape[a]}"
                )
            start = tuple(meta.shape[axis] if a == axis else 0 for a in range(rank))
            shape = tuple(meta.shape[a] + (values.shape[a] if a == axis else 0) for a in range(rank))
            self.resize_array(name, shape)
            self.write_array(name, start, values)
            return start

    def read_array(
        self, name: str, start: Sequence[int] | None = None, shape: Sequence[int] | None = None
    ) -> np.ndarray | None:
        """Read a box of array ``name``; None when the dataset has no such array.

        Parameters
        ----------
        start : sequence of int, optional
            First cell (default: the origin).
        shape : sequence of int, optional
            Extent of the box (default: up to the end of every axis).

        Returns
        -------
        numpy.ndarray or None
            A new array: numeric dtypes as stored, timestamps as
            ``datetime64[ns]``, strings as an object array of ``str``.

        Raises
        ------
        SelectionError
            If ``start``/``shape`` have the wrong rank or leave the array (no
            silent clamping).
        """
        with self._lock:
            state = self._session.working
            if state is None:
                state = self._session.state()  # StoreClosedError
            meta = state.dataset(self._name).arrays.get(name) if isinstance(name, str) else None
            if meta is None:
                return None
            where = self._where(name)
            box = fast_box(meta.shape, start, shape)
            start_t, shape_t = resolve_box(meta.shape, start, shape, where) if box is None else box
            engine = state.engines.get(name)
            out = (state.engine(name) if engine is None else engine).read(meta, start_t, shape_t, where)
        return out.view("datetime64[ns]") if meta.dtype == "timestamp_nanoseconds" else out

    def read_arrays(
        self, names: Sequence[str], start: Sequence[int] | None = None, shape: Sequence[int] | None = None
    ) -> dict[str, np.ndarray | None]:
        """Read the same box of several arrays: ``{name: array or None}``.

        Raises
        ------
        InvalidArgumentError
            If ``names`` is not a sequence of str (a ``ValueError``).
        """
        names = array_names(names)
        return {n: self.read_array(n, start, shape) for n in names}

    def array_meta(self, name: str) -> dict[str, Any]:
        """The schema of array ``name``.

        Returns
        -------
        dict
            ``dtype`` (canonical name), ``shape``, ``chunk_shape``,
            ``dimension_names`` and ``fill_value`` (None when the array has none).
        """
        with self._lock:
            meta = self._meta(name)
            return {
                "dtype": meta.dtype,
                "shape": list(meta.shape),
                "chunk_shape": list(meta.chunk_shape),
                "dimension_names": list(meta.dims),
                "fill_value": dtypes.to_result_scalar(meta.fill_value, meta.dtype),
            }

    def array_fill_value(self, name: str) -> Any:
        """The fill value of array ``name`` (None when it has none)."""
        with self._lock:
            meta = self._meta(name)
            return dtypes.to_result_scalar(meta.fill_value, meta.dtype)

    def array_stats(self, name: str) -> dict[str, Any]:
        """Statistics of array ``name``, including pending writes.

        Returns
        -------
        dict
            ``row_count`` (cells in the array), ``null_count`` (cells that equal the
            fill value, are NaN/NaT, or were never written) and ``min``/``max``
            over the other cells (None when there is none; ``str`` for strings,
            ``numpy.datetime64`` for timestamps).
        """
        with self._lock:
            meta = self._meta(name)
            stats = self._session.state().array_stats(name, meta, self._where(name))
            return {
                "row_count": stats.row_count,
                "null_count": stats.null_count,
                "min": dtypes.to_result_scalar(stats.minimum, meta.dtype),
                "max": dtypes.to_result_scalar(stats.maximum, meta.dtype),
            }

    # -- attributes --------------------------------------------------------------------------------

    def attributes(self) -> dict[str, Any]:
        """All dataset attributes as ``{key: value}``, in the order they were first set."""
        with self._lock:
            return {k: attributes.to_python(v) for k, v in self._ds().attributes.items()}

    def set_attribute(self, key: str, value: Any, dtype: Any = None) -> None:
        """Set a typed dataset attribute.

        Parameters
        ----------
        key : str
            Attribute name (any non-empty str).
        value : scalar, list or numpy array
            A number, bool, str, ``numpy.datetime64`` or a list/array of those.
        dtype : str, optional
            Store the value as this dtype (``"int8"``, ``"float32"``,
            ``"timestamp_nanoseconds"``, ...); the value is range-checked.
        """
        with self._lock:
            session = self._session
            state = session.working
            if state is None or session.mode == "r":
                state = self._writable("set attribute", key)
            check_label(key, "attribute name")
            name = self._name
            if type(name) is not str or state.pending.get(name) is None:
                state.dataset(name)  # a missing dataset fails before the value is checked
            typed = attributes.normalize(value, dtype)
            state.touch(name).attributes[key] = typed

    def set_attributes(self, values: Mapping[str, Any], dtype: Mapping[str, Any] | None = None) -> None:
        """Set many typed dataset attributes at once: all of them, or none.

        The bulk form of :meth:`set_attribute` (like ``attrs.update`` in h5py or
        zarr): every key and value gets the same checks, and all are checked before
        any is set, so a bad one raises the error ``set_attribute`` would raise
        (its message naming the key) and leaves the dataset's attributes unchanged.
        New keys keep the order of ``values``; a key already set keeps its place
        and takes the new value.

        Parameters
        ----------
        values : mapping of str to value
            ``{key: value}``; values as :meth:`set_attribute` takes them.
        dtype : mapping of str to dtype, optional
            ``{key: dtype}``: the stored dtype of some keys of ``values`` (as the
            ``dtype`` of :meth:`set_attribute`, range-checked); the other values'
            dtypes are inferred.

        Raises
        ------
        InvalidArgumentError
            If ``values`` or ``dtype`` is not a mapping, or ``dtype`` names a key
            that ``values`` does not set (a ``ValueError``).
        """
        if not isinstance(values, Mapping):
            raise InvalidArgumentError(f"set_attributes takes a mapping of key to value, got {type(values).__name__}")
        forced: Mapping[str, Any] = {} if dtype is None else dtype
        if not isinstance(forced, Mapping):
            raise InvalidArgumentError(f"dtype must be a mapping of key to dtype, got {type(forced).__name__}")
        # Read once: a mapping whose iteration and items() disagree cannot stage a key
        # that was not checked.
        items = list(values.items())
        extra = next((k for k in forced if k not in values), None)
        if extra is not None:
            raise InvalidArgumentError(f"dtype names attribute {extra!r}, which values does not set")
        with self._lock:
            state = self._writable("set attributes", [key for key, _ in items[:3]])
            for key, _ in items:
                check_label(key, "attribute name")
            name = self._name
            if type(name) is not str or state.pending.get(name) is None:
                state.dataset(name)  # a missing dataset fails before the values are checked
            typed: dict[str, dict[str, Any]] = {}
            for key, value in items:
                try:
                    typed[key] = attributes.normalize(value, forced.get(key))
                except AtlasError as exc:
                    raise type(exc)(f"attribute {key!r}: {exc}") from None
            if typed:  # an empty update changes nothing, so the dataset is not rewritten
                state.touch(name).attributes.update(typed)

    def get_attribute(self, key: str, default: Any = None) -> Any:
        """The value of attribute ``key``, or ``default`` (None) when it is not set."""
        with self._lock:
            typed = self._ds().attributes.get(key) if isinstance(key, str) else None
            return default if typed is None else attributes.to_python(typed)

    def delete_attribute(self, key: str) -> None:
        """Remove attribute ``key`` (``KeyError`` when it is not set)."""
        with self._lock:
            state = self._writable("delete attribute", key)
            if not isinstance(key, str) or key not in self._ds().attributes:
                raise AttributeNotFoundError(f"dataset {self._name!r} has no attribute {key!r}")
            del state.touch(self._name).attributes[key]


def stage_typed_attributes(view: DatasetView, typed: Mapping[str, dict[str, Any]]) -> None:
    """Stage attributes already in :func:`atlas.attributes.normalize`'s typed form.

    For the package's writers (the xarray plan checks every value before anything
    is staged), not for users: :meth:`DatasetView.set_attributes` checks values.
    The keys are checked here; nothing is staged when one is bad.
    """
    with view._lock:
        keys = list(typed)
        state = view._writable("set attributes", keys[:3])
        # All keys at once (one join and encode: UTF-8 refuses a lone surrogate wherever it
        # is); the first bad one is named by check_label.
        if not (set(map(type, keys)) <= _STR_ONLY and all(keys) and _encodable("".join(keys))):
            for key in keys:
                check_label(key, "attribute name")
        state.touch(view._name).attributes.update(typed)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def stage_array_writes(view: DatasetView, writes: Sequence[tuple[str, Sequence[int] | None, np.ndarray]]) -> None:
    """:meth:`DatasetView.write_array` of each ``(array, start, data)`` in turn, under one lock.

    For the package's writers staging many small arrays at once: every write gets
    ``write_array``'s checks and errors; the staged bytes are checked against the
    spill budget once, after the last write.
    """
    if not writes:
        return
    with view._lock:
        state = view._writable("write array", writes[0][0])
        for name, start, data in writes:
            view._write_locked(state, name, start, data)
        state.maybe_spill()
