"""Selections to chunk plans (pure numpy, no I/O).

A selection ``start``/``shape`` over an array of ``array_shape`` chunked by
``chunk_shape`` touches a box of chunks.  The plan lists, per touched chunk, its
linear id (C order over the chunk grid), its own extent (edge chunks are cut at the
array bounds and stored that way), and the box to copy between the chunk and the
selection.  Reads and writes use the same plan with source and destination swapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ChunkPlan", "chunk_extent", "chunk_grid", "one_chunk", "plan_selection"]


@dataclass(frozen=True)
class ChunkPlan:
    """Columnar plan of a selection: one row per touched chunk.

    Attributes
    ----------
    chunk_ids : ndarray of int64, shape (n,)
        Linear chunk ids in C order over the chunk grid.
    chunk_shapes : ndarray of int64, shape (n, ndim)
        Extent of each chunk (edge chunks are smaller).
    in_chunk : ndarray of int64, shape (n, ndim)
        Start of the copied box inside the chunk.
    in_selection : ndarray of int64, shape (n, ndim)
        Start of the copied box inside the selection.
    boxes : ndarray of int64, shape (n, ndim)
        Shape of the copied box.
    """

    chunk_ids: np.ndarray
    chunk_shapes: np.ndarray
    in_chunk: np.ndarray
    in_selection: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.chunk_ids.shape[0])

    def full(self, i: int) -> bool:
        """True when row ``i`` covers its whole chunk."""
        return bool(np.array_equal(self.boxes[i], self.chunk_shapes[i]))


def chunk_grid(shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Number of chunks along each axis."""
    return tuple(-(-s // c) if s else 0 for s, c in zip(shape, chunk_shape, strict=False))


def chunk_extent(chunk_id: int, shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Extent of chunk ``chunk_id`` (cut at the array bounds)."""
    grid = chunk_grid(shape, chunk_shape)
    coords = np.unravel_index(chunk_id, grid) if grid else ()
    return tuple(min(c, s - i * c) for i, c, s in zip(coords, chunk_shape, shape, strict=False))


def plan_selection(
    shape: tuple[int, ...], chunk_shape: tuple[int, ...], start: tuple[int, ...], sel_shape: tuple[int, ...]
) -> ChunkPlan:
    """Plan the chunks touched by ``start``/``sel_shape`` (already bounds-checked)."""
    ndim = len(shape)
    if ndim == 0:
        one = np.zeros((1, 0), np.int64)
        return ChunkPlan(np.zeros(1, np.int64), one, one, one, one)
    if any(s == 0 for s in sel_shape):
        empty = np.zeros((0, ndim), np.int64)
        return ChunkPlan(np.zeros(0, np.int64), empty, empty, empty, empty)
    if all(c >= n for c, n in zip(chunk_shape, shape)):
        # One chunk holds the whole array (the common case for small datasets).
        one = np.array([shape], np.int64)
        return ChunkPlan(
            chunk_ids=np.zeros(1, np.int64),
            chunk_shapes=one,
            in_chunk=np.array([start], np.int64),
            in_selection=np.zeros((1, ndim), np.int64),
            boxes=np.array([sel_shape], np.int64),
        )
    grid = np.array(chunk_grid(shape, chunk_shape), np.int64)
    cs = np.array(chunk_shape, np.int64)
    shp = np.array(shape, np.int64)
    lo = np.array(start, np.int64)
    hi = lo + np.array(sel_shape, np.int64)
    first = lo // cs
    last = (hi - 1) // cs
    axes = [np.arange(f, e + 1, dtype=np.int64) for f, e in zip(first, last, strict=False)]
    mesh = np.meshgrid(*axes, indexing="ij")
    coords = np.stack([m.reshape(-1) for m in mesh], axis=1)  # (n, ndim)
    chunk_lo = coords * cs
    chunk_shapes = np.minimum(cs, shp - chunk_lo)
    box_lo = np.maximum(chunk_lo, lo)
    box_hi = np.minimum(chunk_lo + chunk_shapes, hi)
    ids = np.ravel_multi_index(tuple(coords.T), tuple(grid)).astype(np.int64)
    return ChunkPlan(
        chunk_ids=ids,
        chunk_shapes=chunk_shapes,
        in_chunk=box_lo - chunk_lo,
        in_selection=box_lo - lo,
        boxes=box_hi - box_lo,
    )


def one_chunk(shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> bool:
    """True when one chunk (id 0) holds the whole array (also for a 0-D array)."""
    key = (shape, chunk_shape)
    one = _ONE_CHUNK.get(key)
    if one is None:
        one = all(c >= n for c, n in zip(chunk_shape, shape))
        if len(_ONE_CHUNK) > 4096:  # the shapes of a store repeat; keep the memo small
            _ONE_CHUNK.clear()
        _ONE_CHUNK[key] = one
    return one


_ONE_CHUNK: dict[tuple[tuple[int, ...], tuple[int, ...]], bool] = {}
