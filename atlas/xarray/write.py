"""Writing: :func:`add_xr_dataset` stages an ``xarray.Dataset`` in a store.

The dataset is planned whole first (:mod:`atlas.xarray.plan`), then every variable
is written block by block, aligned to its on-disk chunks: dask-backed variables are
computed a few blocks at a time (:data:`BATCH_BYTES` per batch), lazily loaded ones in
slabs of whole chunk rows, so nothing is materialised whole.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from atlas.dataset import stage_array_writes, stage_typed_attributes
from atlas.errors import DTypeError, InvalidArgumentError, ReadOnlyError, ValueOverflowError
from atlas.names import validate_name
from atlas.xarray.conversions import (
    datetime_to_ns,
    numeric_storage,
    object_array,
    object_strings,
    sanitize_text,
    timedelta_to_int,
    vkey,
    where_var,
)
from atlas.xarray.plan import VarPlan, plan_dataset

if TYPE_CHECKING:
    from atlas.dataset import DatasetView
    from atlas.store import Atlas

#: Bytes of dask blocks computed together (and of numpy slabs written at once).
BATCH_BYTES = 16 << 20
#: Bytes of whole-variable blocks converted before they are staged together (and the
#: spill budget checked): a small dataset's variables all fit in one group.
GROUP_BYTES = 1 << 20


class _NotUtf8(Exception):
    """Raised inside a streamed write when bytes data turns out not to be UTF-8."""


class _OutOfNsRange(Exception):
    """Raised inside a streamed write when datetimes do not fit timestamp_nanoseconds."""


def to_storage(block: np.ndarray, vp: VarPlan, enc: str | None) -> np.ndarray:
    """One block of variable data in the form ``write_array`` takes."""
    where = where_var(vp.name)
    kind = block.dtype.kind
    if kind == "M" and vp.datetime_as_int:
        out = block.astype(f"<M8[{np.datetime_data(block.dtype)[0]}]", copy=False).view("<i8")
    elif kind == "M":
        try:
            out = datetime_to_ns(block, where)
        except ValueOverflowError:
            raise _OutOfNsRange from None
    elif kind == "m":
        out = timedelta_to_int(block)
    elif kind == "U":
        out = object_array([sanitize_text(s) for s in block.reshape(-1).tolist()], block.shape)
    elif kind == "S":
        try:
            out = object_array([b.decode(enc or "utf-8") for b in block.reshape(-1).tolist()], block.shape)
        except UnicodeDecodeError:
            raise _NotUtf8 from None
    elif kind == "O":
        flat = list(block.reshape(-1))
        if not flat:
            return object_array([], block.shape)
        seen = "bytes" if isinstance(flat[0], (bytes, np.bytes_)) else "str"
        if vp.object_kind is not None and seen != vp.object_kind:
            raise DTypeError(f"{where}: object data mixes str and bytes across blocks")
        vp.object_kind = seen
        if seen == "bytes":
            if not all(isinstance(x, (bytes, np.bytes_)) for x in flat):
                object_strings(flat, where)  # raises the mixed-types error
            try:
                out = object_array([bytes(b).decode(enc or "utf-8") for b in flat], block.shape)
            except UnicodeDecodeError:
                raise _NotUtf8 from None
        else:
            out = object_array(object_strings(flat, where)[0], block.shape)
    else:
        out = numeric_storage(block, where)
    return out if out.flags.c_contiguous else out.copy(order="C")  # (ascontiguousarray turns 0-D into 1-D)


def _blocks(vp: VarPlan) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(start, numpy block)`` pieces of a variable, aligned to its on-disk chunks, in bounded memory."""
    var = vp.variable
    if not vp.shape:
        yield (), np.asarray(var.values)
        return
    if any(s == 0 for s in vp.shape):
        return
    data = vp.dask
    if data is not None:
        itemsize = max(var.dtype.itemsize, 8)
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
    rows = _slab_rows(vp)
    dim0 = vp.dims[0]
    for a in range(0, vp.shape[0], rows):
        piece = var if rows >= vp.shape[0] else var.isel({dim0: slice(a, a + rows)})
        yield (a,) + (0,) * (len(vp.shape) - 1), np.asarray(piece.values)


def _slab_rows(vp: VarPlan) -> int:
    """Rows (along the first axis) of the numpy slabs a variable is written in: whole chunk
    rows, about :data:`BATCH_BYTES` together."""
    c0 = vp.chunk_shape[0]
    row_bytes = max(1, math.prod(vp.shape[1:]) * max(vp.variable.dtype.itemsize, 8))
    return max(c0, (BATCH_BYTES // row_bytes) // c0 * c0)


def _whole_block(vp: VarPlan) -> tuple[tuple[int, ...], np.ndarray] | None:
    """``(start, data)`` of a variable :func:`_blocks` yields as one block; None for a dask
    variable, an empty one or one written in several slabs."""
    if vp.dask is not None:
        return None
    if not vp.shape:
        return (), np.asarray(vp.variable.values)
    if 0 in vp.shape or _slab_rows(vp) < vp.shape[0]:
        return None
    return (0,) * len(vp.shape), np.asarray(vp.variable.values)


def _compute_batch(data: Any, batch: list[tuple[int, ...]], offsets: list[list[int]]) -> Iterator:
    import dask

    results = dask.compute(*(data.blocks[idx] for idx in batch))
    for idx, block in zip(batch, results):
        yield tuple(offsets[a][k] for a, k in enumerate(idx)), np.asarray(block)


def _write_variable(view: DatasetView, vp: VarPlan) -> None:
    encodings: tuple[str | None, ...] = ("utf-8", "latin-1") if vp.variable.dtype.kind in "SO" else (None,)
    for enc in encodings:
        try:
            for start, block in _blocks(vp):
                view.write_array(vp.array, start, to_storage(block, vp, enc))
        except _NotUtf8:
            continue  # rare: bytes that are not UTF-8; rewrite every block as Latin-1 (exactly invertible)
        except _OutOfNsRange:
            # Datetimes beyond 1678..2262: store int64 counts of the variable's own unit instead.
            view.delete_array(vp.array)
            vp.store_dtype, vp.datetime_as_int, vp.fill = "int64", True, None
            view.define_array(vp.array, "int64", vp.dims, vp.shape, vp.chunk_shape)
            for start, block in _blocks(vp):
                view.write_array(vp.array, start, to_storage(block, vp, enc))
        if vp.variable.dtype.kind == "S" or vp.object_kind == "bytes":
            vp.text_kind = enc
        return


def write_blocks(view: DatasetView, vp: VarPlan, enc: str | None, axis: int = 0, offset: int = 0) -> None:
    """Write every block of ``vp`` with the text encoding ``enc``, shifted by ``offset`` along ``axis``
    (an append after the stored cells)."""
    try:
        for start, block in _blocks(vp):
            at = tuple(s + offset if a == axis else s for a, s in enumerate(start))
            view.write_array(vp.array, at, to_storage(block, vp, enc))
    except _NotUtf8:
        raise DTypeError(
            f"{where_var(vp.name)}: appended bytes are not valid {enc or 'utf-8'}, the stored text encoding"
        ) from None
    except _OutOfNsRange:
        raise ValueOverflowError(
            f"{where_var(vp.name)}: appended datetimes do not fit timestamp_nanoseconds, the stored dtype"
        ) from None


MODES = ("w-", "w")


def add_xr_dataset(
    store: Atlas, ds: Any, name: str, chunks: Any = None, *, mode: str = "w-", append_dim: str | None = None
) -> DatasetView:
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
    mode : {"w-", "w"}
        ``"w-"`` (default) refuses an existing dataset ``name``; ``"w"`` replaces
        it: the old dataset is deleted and the new one written in the same staged
        change, so the next flush commits the replacement in one generation.
    append_dim : str, optional
        Append ``ds`` to the existing dataset ``name`` along this dimension
        instead: every stored variable on the dimension (coordinates included)
        grows by ``ds``'s extent and gets ``ds``'s values after its own.  Every
        variable must exist on both sides with the same dims and dtype and equal
        extents on the other dimensions; variables without ``append_dim`` must be
        equal to the stored ones.  The stored attributes and encodings are kept
        (``ds``'s are ignored).  ``chunks`` does not apply: appended cells use the
        stored chunk shape.  ``mode`` is ignored.

    Returns
    -------
    atlas.DatasetView
        The new dataset.  Nothing is committed until ``store.flush()`` (or the end
        of a ``with`` block).

    Raises
    ------
    DatasetExistsError
        If the store already has a dataset ``name`` and ``mode`` is ``"w-"``.
    SchemaMismatchError
        For an append whose variables differ from the stored ones (a
        ``ValueError`` naming the first variable that differs); nothing changes.
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
    if append_dim is not None:
        from atlas.xarray.append import append_xr_dataset

        return append_xr_dataset(store, ds, name, append_dim, chunks)
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidArgumentError(f"mode must be 'w-' or 'w', got {mode!r}")
    plan = plan_dataset(ds, chunks)
    if mode == "w" and name in store:
        from atlas.xarray.append import replace_xr_dataset

        return replace_xr_dataset(store, name, lambda: _write_new(store, plan, name))
    return _write_new(store, plan, name)


def _write_new(store: Atlas, plan: Any, name: str) -> DatasetView:
    view = store.create_dataset(name)
    try:
        stage_typed_attributes(view, plan.attributes)  # checked by plan_dataset
        for vp in plan.variables:
            chunk_shape = None if vp.default_chunks else vp.chunk_shape  # None: the same shape, checked once
            view.define_array(vp.array, vp.store_dtype, vp.dims, vp.shape, chunk_shape, vp.fill)
        found: dict[str, dict[str, str]] = {}  # what writing found out: the text encoding of bytes data
        # The variables written in one block (most of a small dataset's) are staged together,
        # in groups of about GROUP_BYTES: the spill budget is checked after each group, so
        # a dataset of many large variables never holds more than one group unstaged.
        writes: list[tuple[str, tuple[int, ...], np.ndarray]] = []
        held = 0
        for vp in plan.variables:
            whole = _whole_block(vp)
            if whole is not None:
                enc = "utf-8" if vp.variable.dtype.kind in "SO" else None  # _write_variable's first try
                try:
                    values = to_storage(whole[1], vp, enc)
                except (_NotUtf8, _OutOfNsRange):
                    whole = None  # written (and retried) by _write_variable below
                else:
                    writes.append((vp.array, whole[0], values))
                    held += values.nbytes
                    if vp.variable.dtype.kind == "S" or vp.object_kind == "bytes":
                        vp.text_kind = enc
            if whole is None or held >= GROUP_BYTES:
                # Also before a variable written on its own (in slabs, or retried): every array
                # is staged in variable order, as writing one by one staged them.
                stage_array_writes(view, writes)
                writes, held = [], 0
            if whole is None:
                _write_variable(view, vp)
            if vp.text_kind:
                found[vkey(vp.index, "text")] = {"t": "string", "v": vp.text_kind}
                if vp.restore_dtype is None:
                    found[vkey(vp.index, "dtype")] = {"t": "string", "v": "|O"}
        stage_array_writes(view, writes)
        if found:
            stage_typed_attributes(view, found)  # values of set_attributes' typed form
    except BaseException:
        with contextlib.suppress(Exception):
            store.delete_dataset(name)
        raise
    return view
