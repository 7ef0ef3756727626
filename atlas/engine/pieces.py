"""The piece table of a bulk read: what each piece is, where it comes from and goes to.

A *piece* is one box of one stored chunk of one dataset.  A bulk read plans every
piece of every dataset at once (:mod:`atlas.engine.gather`) and hands the jitted
kernels two columnar tables instead of a dozen loose arrays: :class:`Pieces` (the
geometry: chunk box -> output) and :class:`Payloads` (the stored bytes of each
piece's chunk).  Both are plain named tuples of numpy arrays, which numba takes
as one argument.  Pure numpy: no I/O, no numba.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from atlas.engine.planner import ChunkPlan

__all__ = ["PARTIAL_MAX_FRACTION", "ItemRanges", "Payloads", "Pieces"]

#: A chunk is decoded in part (only the blosc2 blocks holding its touched item range)
#: when that range is less than this fraction of the chunk.  Measured with 16 KiB
#: blocks: an item range costs about its share of the blocks, so anything that skips
#: a block pays; near the whole chunk, the whole-chunk decode is slightly faster.
PARTIAL_MAX_FRACTION = 0.75


class Pieces(NamedTuple):
    """Where each piece's box comes from (its chunk) and goes to (the stacked output).

    Piece ``p`` copies the box ``boxes[p]`` at ``in_chunk[p]`` of its chunk (shape
    ``chunk_shapes[p]``, C order) to ``in_selection[p]`` of the selection (shape
    ``sel_shape``) whose first element is ``dst[dst_bases[p]]``.  The per-piece
    columns have one row per piece; ``sel_shape`` and ``dst`` are shared.
    """

    chunk_shapes: np.ndarray
    in_chunk: np.ndarray
    boxes: np.ndarray
    in_selection: np.ndarray
    dst_bases: np.ndarray
    sel_shape: np.ndarray
    dst: np.ndarray

    @classmethod
    def of_plan(cls, plan: ChunkPlan, rows: np.ndarray, dst_bases: np.ndarray, sel_shape: np.ndarray,
                dst: np.ndarray) -> Pieces:  # fmt: skip
        """The pieces of plan rows ``rows`` (one per piece) landing at ``dst_bases``."""
        return cls(plan.chunk_shapes[rows], plan.in_chunk[rows], plan.boxes[rows], plan.in_selection[rows],
                   dst_bases, sel_shape, dst)  # fmt: skip

    def take(self, which: np.ndarray | slice) -> Pieces:
        """The pieces ``which`` (an index array, a mask or a slice)."""
        return Pieces(self.chunk_shapes[which], self.in_chunk[which], self.boxes[which], self.in_selection[which],
                      self.dst_bases[which], self.sel_shape, self.dst)  # fmt: skip

    def as_bytes(self) -> Pieces:
        """The same pieces over the chunks and the output viewed as flat bytes.

        A C-ordered array of shape ``(..., n)`` and item size ``k`` is, as bytes, one of
        shape ``(..., n * k)``: the innermost extent, start and box scale by ``k``, as do
        the output bases, and ``dst`` becomes its uint8 view.  A rank-0 selection
        becomes one axis of ``k`` bytes.  Every column is a new C-contiguous int64
        array, so a kernel taking byte geometry compiles once for every dtype.
        """
        itemsize = self.dst.itemsize
        dst = self.dst.view(np.uint8)
        bases = np.asarray(self.dst_bases, np.int64) * itemsize
        if self.sel_shape.shape[0] == 0:
            pieces = self.chunk_shapes.shape[0]
            whole = np.full((pieces, 1), itemsize, np.int64)
            zero = np.zeros((pieces, 1), np.int64)
            return Pieces(whole, zero, whole, zero, bases, np.array([itemsize], np.int64), dst)
        scaled = []
        for column in (self.chunk_shapes, self.in_chunk, self.boxes, self.in_selection, self.sel_shape):
            column = np.array(column, np.int64)  # a copy, C-contiguous
            column[..., -1] *= itemsize
            scaled.append(column)
        chunk_shapes, in_chunk, boxes, in_selection, sel_shape = scaled
        return Pieces(chunk_shapes, in_chunk, boxes, in_selection, bases, sel_shape, dst)


class Payloads(NamedTuple):
    """The stored bytes of each piece's chunk, in one source buffer ``src``.

    Piece ``p`` is the payload ``src[offsets[p]:][:nbytes[p]]`` whose XXH64 must be
    ``checksums[p]``.  A ``raw[p]`` payload holds the cells as they are; otherwise it
    decodes to ``raw_nbytes[p]`` bytes, or, when ``count[p] > 0``, only items
    ``[first[p], first[p] + count[p])`` are decoded.
    """

    offsets: np.ndarray
    nbytes: np.ndarray
    checksums: np.ndarray
    raw: np.ndarray
    raw_nbytes: np.ndarray
    first: np.ndarray
    count: np.ndarray

    def take(self, which: np.ndarray | slice) -> Payloads:
        """The payloads ``which`` (an index array, a mask or a slice)."""
        return Payloads(*(column[which] for column in self))

    def normalized(self) -> Payloads:
        """The columns as C-contiguous arrays of fixed dtypes (int64 sizes and offsets,
        uint64 checksums, bool ``raw``), so that a kernel taking them compiles once
        whatever buffers they came from (a record field is a strided view)."""
        return Payloads(*(np.ascontiguousarray(column, dtype) for column, dtype in zip(self, _PAYLOAD_DTYPES)))


_PAYLOAD_DTYPES = (np.int64, np.int64, np.uint64, np.bool_, np.int64, np.int64, np.int64)


class ItemRanges:
    """Per plan row: cells of the chunk and the item range its box spans (C order)."""

    __slots__ = ("cells", "count", "first")

    def __init__(self, plan: ChunkPlan) -> None:
        shapes = plan.chunk_shapes
        ndim = shapes.shape[1]
        strides = np.ones_like(shapes)
        if ndim > 1:
            strides[:, :-1] = np.cumprod(shapes[:, :0:-1], axis=1)[:, ::-1]
        self.cells = np.prod(shapes, axis=1)
        self.first = (plan.in_chunk * strides).sum(axis=1)
        last = ((plan.in_chunk + plan.boxes - 1) * strides).sum(axis=1)
        span = last - self.first + 1
        # count 0 means "decode the whole chunk".
        self.count = np.where(span < self.cells * PARTIAL_MAX_FRACTION, span, 0)
