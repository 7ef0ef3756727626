"""Staged chunks: what a handle wrote since its last flush, their stats, and their encoding.

:class:`PendingChunk` is one written chunk; its stats are computed once (many small
chunks in one numpy pass, :func:`stack_stats`) and serve both the commit's array
stats and the segment records that :func:`build_segment` encodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas import dtypes
from atlas.engine.chunks import ChunkStats, chunk_stats, encode_chunk, value_bits
from atlas.engine.codecs import MIN_COMPRESS, RAW
from atlas.engine.pools import shared_pool
from atlas.engine.segment import SegmentWriter
from atlas.metadata import ArrayMeta

if TYPE_CHECKING:
    from atlas.engine.family import FamilyEngine

__all__ = ["PARALLEL_ENCODE_BYTES", "VECTOR_STATS_MIN", "PendingChunk", "build_segment", "stack_stats",
           "staged_nbytes", "staged_stats"]  # fmt: skip

#: Fewer staged chunks of one kind than this get their stats one kernel call each.
VECTOR_STATS_MIN = 8
#: Below this many staged bytes a flush encodes on the calling thread: handing
#: chunks to a pool costs more than it saves.
PARALLEL_ENCODE_BYTES = 1 << 20


@dataclass
class PendingChunk:
    """A chunk written since the last flush (flat cells + optional written mask).

    ``stats`` caches the chunk's stats between writes, so a flush computes them
    once for both the manifest and the segment record.
    """

    values: np.ndarray
    written: np.ndarray | None
    stats: ChunkStats | None = None


def stack_stats(name: str, cells: int, fill: Any, chunks: list[PendingChunk]) -> None:
    """Set ``stats`` of same-shaped numeric chunks without written masks (see ``precompute_stats``)."""
    stack = np.stack([c.values for c in chunks])
    if dtypes.is_float(name):
        null = np.isnan(stack)
        if fill is not None:
            null |= stack == stack.dtype.type(fill)
        lo = np.where(null, np.inf, stack).min(axis=1).tolist()
        hi = np.where(null, -np.inf, stack).max(axis=1).tolist()
        nulls = null.sum(axis=1).tolist()
        # With both 0.0 and -0.0 in a chunk, which one is its min or max depends on
        # the order the kernel meets them in: such (rare) chunks are left to it.
        signed_zero = ((stack == 0) & np.signbit(stack)).any(axis=1).tolist()
        for chunk, n, a, b, neg in zip(chunks, nulls, lo, hi, signed_zero, strict=True):
            if n == cells:
                chunk.stats = ChunkStats(cells, n)
            elif not neg:
                chunk.stats = ChunkStats(cells, n, a, b)
        return
    view = stack.view(np.uint8) if stack.dtype == np.bool_ else stack
    null = np.zeros(view.shape, np.bool_)
    if fill is not None:
        null |= view == view.dtype.type(int(fill))
    if name == "timestamp_nanoseconds":
        null |= view == np.iinfo(np.int64).min
    info = np.iinfo(view.dtype)
    lo = np.where(null, info.max, view).min(axis=1).tolist()
    hi = np.where(null, info.min, view).max(axis=1).tolist()
    nulls = null.sum(axis=1).tolist()
    as_value = bool if name == "bool" else int
    for chunk, n, a, b in zip(chunks, nulls, lo, hi, strict=True):
        chunk.stats = ChunkStats(cells, n) if n == cells else ChunkStats(cells, n, as_value(a), as_value(b))


def staged_stats(chunk: PendingChunk, meta: ArrayMeta) -> ChunkStats:
    """The stats of a staged chunk, computed once and kept until a write changes the chunk."""
    stats = chunk.stats
    if stats is None:
        stats = chunk.stats = chunk_stats(chunk.values, chunk.written, meta)
    return stats


def staged_nbytes(pending: dict[int, dict[int, PendingChunk]]) -> int:
    """Bytes held by staged chunks (values and written masks)."""
    return sum(
        c.values.nbytes + (0 if c.written is None else c.written.nbytes)
        for chunks in pending.values()
        for c in chunks.values()
    )


def build_segment(
    engine: FamilyEngine, metas: dict[int, ArrayMeta], codec: str, generation: int, token: bytes, workers: int = 1
) -> SegmentWriter:
    """Encode every staged chunk of the slots in ``metas`` into one segment.

    Chunks are compressed on up to ``workers`` threads (blosc2 releases the GIL
    while it compresses, see :mod:`atlas.engine.codecs`) and added to the segment
    in (slot, chunk) order, so the file does not depend on the thread count.
    """
    jobs = [(slot, cid) for slot in sorted(metas) for cid in sorted(engine.pending.get(slot, {}))]

    def encode(job: tuple[int, int]) -> tuple:
        """The fields :meth:`SegmentWriter.add` takes after ``slot, chunk``."""
        slot, cid = job
        chunk = engine.pending[slot][cid]
        meta = metas[slot]
        stats = staged_stats(chunk, meta)
        values = chunk.values
        if chunk.written is None and values.nbytes <= MIN_COMPRESS and meta.dtype != "string":
            # Stored raw whatever the codec (see encode_payload): the fields of
            # encode_chunk without building its record, for the many tiny chunks
            # of a store of small datasets.
            raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
            return (raw.copy(), RAW, raw.nbytes, stats.null_count, value_bits(stats.minimum, meta.dtype),
                    value_bits(stats.maximum, meta.dtype), 0)  # fmt: skip
        enc = encode_chunk(values, chunk.written, meta, codec, stats)
        return enc.stored, enc.codec, enc.raw_nbytes, stats.null_count, enc.min_bits, enc.max_bits, enc.flags

    staged = sum(engine.pending[slot][cid].values.nbytes for slot, cid in jobs)
    if workers > 1 and len(jobs) > 1 and staged >= PARALLEL_ENCODE_BYTES:
        encoded = list(shared_pool("encode", workers).map(encode, jobs))
    else:
        encoded = [encode(job) for job in jobs]
    writer = SegmentWriter(generation, token)
    for (slot, cid), fields in zip(jobs, encoded):
        writer.add(slot, cid, *fields)
    return writer
