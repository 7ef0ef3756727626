"""Bulk cross-dataset reads: which datasets are read together, and the checks of a bulk read.

Datasets whose arrays share a dtype are read together by one
:func:`atlas.engine.gather.gather` (plan, fetch, decode and scatter in one pass).
This module takes the handle's :class:`~atlas.txn.state.WorkingState`, like
:mod:`atlas.txn.compact` and :mod:`atlas.txn.verify`; the caller holds the handle's
lock.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from atlas import dtypes
from atlas.engine.chunks import fill_for
from atlas.engine.gather import gather
from atlas.errors import ArrayNotFoundError, InvalidArgumentError, SchemaMismatchError
from atlas.metadata import ArrayMeta, gc_paused
from atlas.selection import dataset_names, resolve_box
from atlas.txn.state import WorkingState

__all__ = ["array_metas", "read_across", "read_across_stacked"]


def _box(meta: ArrayMeta, array: str, dataset: str, start: Any, shape: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return resolve_box(meta.shape, start, shape, f"dataset {dataset!r} array {array!r}")


def array_metas(state: WorkingState, array: str, names: list[str]) -> list[ArrayMeta | None]:
    """Array ``array`` of every dataset of ``names`` (None where it has none).

    The handle's pending changes win; the committed datasets of a v2 catalogue are
    looked up all at once (:meth:`atlas.catalog.Catalog.array_metas`: from the
    interned schema columns, no record decoded).

    Raises
    ------
    DatasetNotFoundError
        For the first name without a dataset, as ``state.arrays`` does.
    """
    catalog = state.catalog
    if catalog is None:  # format v1: every dataset was decoded at open
        return [state.arrays(n).get(array) for n in names]
    metas, missing = catalog.array_metas(array, names)
    pending = state.pending
    redo = set(missing)
    if pending:
        redo.update(i for i, n in enumerate(names) if n in pending)
    for i in sorted(redo):  # in order: the first name without a dataset raises
        metas[i] = state.arrays(names[i]).get(array)
    return metas


def read_across(
    state: WorkingState, array: str, names: Sequence[str], start: Sequence[int] | None, shape: Sequence[int] | None
) -> list[np.ndarray | None]:
    """One result per dataset name: the box of ``array``, or None where the dataset
    does not define it.  Datasets whose arrays share a schema are read together."""
    names = dataset_names(names)
    with gc_paused():  # thousands of small objects: no collection passes over the heap meanwhile
        metas = array_metas(state, array, names)
    out: list[np.ndarray | None] = [None] * len(names)
    groups: dict[tuple, list[int]] = {}
    for i, meta in enumerate(metas):
        if meta is not None:
            groups.setdefault((meta.dtype, meta.shape, meta.chunk_shape), []).append(i)
    if not groups:
        return out
    engine = state.engine(array)
    for members in groups.values():
        first = metas[members[0]]
        sel_start, box = _box(first, array, names[members[0]], start, shape)
        labels = [names[i] for i in members]
        block = gather(engine, labels, [metas[i] for i in members], sel_start, box, state.max_workers)
        for k, i in enumerate(members):
            out[i] = block[k]
    return out


def read_across_stacked(
    state: WorkingState,
    array: str,
    names: Sequence[str],
    start: Sequence[int] | None,
    shape: Sequence[int] | None,
    pad: bool = False,
) -> np.ndarray:
    """The box of ``array`` from every dataset stacked into one ``(N, *box)`` array.

    Every dataset must define the array with the same dtype and a shape that holds
    the box; the error names the first dataset that does not.  With ``pad`` and
    shapes that differ, the box is taken against the largest extent of every axis
    and each dataset's cells beyond its own shape read as its fill value.
    """
    names = dataset_names(names)
    if not names:
        raise InvalidArgumentError("read_array_across_stacked needs at least one dataset name")
    try:
        with gc_paused():  # thousands of small objects: no collection passes over the heap meanwhile
            metas = array_metas(state, array, names)
        if any(map(operator.is_, metas, itertools.repeat(None))):
            raise KeyError(array)
    except KeyError:  # DatasetNotFoundError included
        metas = []
        for n in names:  # the slow way, for the error naming the first culprit
            meta = state.dataset(n).arrays.get(array)
            if meta is None:
                raise ArrayNotFoundError(f"dataset {n!r} has no array {array!r}") from None
            metas.append(meta)
    first = metas[0]
    # Sets first: thousands of datasets usually share one dtype and one shape.
    if len({m.dtype for m in metas}) > 1:
        for n, meta in zip(names, metas):
            if meta.dtype != first.dtype:
                raise SchemaMismatchError(
                    f"dataset {n!r} array {array!r} has dtype {meta.dtype}, dataset {names[0]!r} has {first.dtype}"
                )
    shapes = {m.shape for m in metas}
    if pad and len(shapes) > 1:
        return _padded(state, array, names, metas, start, shape)
    if (start is None or shape is None) and len(shapes) > 1:
        for n, meta in zip(names, metas):
            if meta.shape != first.shape:
                raise SchemaMismatchError(
                    f"dataset {n!r} array {array!r} has shape {list(meta.shape)}, "
                    f"dataset {names[0]!r} has {list(first.shape)}; "
                    "give start and shape to read a common box, or pad=True"
                )
    sel_start, box = _box(first, array, names[0], start, shape)
    if len(shapes) > 1:
        checked = {first.shape}
        for n, meta in zip(names, metas):
            if meta.shape not in checked:  # the check depends on the shape alone
                _box(meta, array, n, sel_start, box)
                checked.add(meta.shape)
    return gather(state.engine(array), names, metas, sel_start, box, state.max_workers)


def _padded(
    state: WorkingState,
    array: str,
    names: list[str],
    metas: list[ArrayMeta],
    start: Sequence[int] | None,
    shape: Sequence[int] | None,
) -> np.ndarray:
    """``read_across_stacked`` over the union of the shapes, each dataset padded with its fill."""
    ranks = {len(m.shape) for m in metas}
    if len(ranks) > 1:
        for n, meta in zip(names, metas):
            if len(meta.shape) != len(metas[0].shape):
                raise SchemaMismatchError(
                    f"dataset {n!r} array {array!r} has rank {len(meta.shape)}, "
                    f"dataset {names[0]!r} has {len(metas[0].shape)}; only extents can differ when padding"
                )
    union = tuple(max(sizes) for sizes in zip(*(m.shape for m in metas)))
    sel_start, box = resolve_box(union, start, shape, f"array {array!r} (padded to shape {list(union)})")
    engine = state.engine(array)
    first = metas[0]
    out = np.empty((len(names), *box), dtype=_result_dtype(first))
    groups: dict[tuple, list[int]] = {}
    for i, meta in enumerate(metas):
        groups.setdefault((meta.shape, meta.chunk_shape, meta.fill_value), []).append(i)
    for members in groups.values():
        meta = metas[members[0]]
        # The part of the box inside this group's own shape; the rest is fill.
        lo = [max(0, min(a, s)) for a, s in zip(sel_start, meta.shape)]
        hi = [max(0, min(a + b, s)) for a, b, s in zip(sel_start, box, meta.shape)]
        inner = tuple(h - low for h, low in zip(hi, lo))
        fill = fill_for(meta)
        rows = out[members]
        (rows.view("int64") if rows.dtype.kind == "M" else rows).fill(fill)
        if all(n > 0 for n in inner):
            block = gather(engine, [names[i] for i in members], [metas[i] for i in members], tuple(lo), inner,
                           state.max_workers)  # fmt: skip
            dst = tuple(slice(low - a, h - a) for low, h, a in zip(lo, hi, sel_start))
            rows[(slice(None), *dst)] = block
        out[members] = rows
    return out


def _result_dtype(meta: ArrayMeta) -> np.dtype:
    return dtypes.result_dtype(meta.dtype)
