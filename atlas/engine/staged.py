"""Staged chunks: what a handle wrote since its last flush, their stats, and their encoding.

:class:`PendingChunk` is one written chunk.  A flush of many small datasets stages
many one-chunk arrays of one name: those that share dtype, shape and fill value are
stacked (:func:`stack_chunks`) so that their stats come from one numpy pass and,
when they are stored raw, :func:`build_segment` lays their payloads and records
out as one block of the segment instead of one chunk at a time.  Those that cannot
be stacked (shapes differing from dataset to dataset) get their stats by dtype and
fill value (:func:`set_whole_chunk_stats`) and their small raw payloads copied and
checksummed by size (``_copy_raw``).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas import dtypes
from atlas.engine.chunks import ChunkStats, chunk_stats, encode_chunk, many_chunk_stats, value_bits
from atlas.engine.codecs import CODEC_IDS, MIN_COMPRESS, RAW, encode_payload, row_checksums
from atlas.engine.planner import one_chunk
from atlas.engine.pools import shared_pool
from atlas.engine.segment import ALIGN, RECORD_DTYPE, SegmentWriter
from atlas.metadata import ArrayMeta, Stats

if TYPE_CHECKING:
    from atlas.engine.family import FamilyEngine

__all__ = ["PARALLEL_ENCODE_BYTES", "STACK_MAX_CHUNK_BYTES", "VECTOR_STATS_MIN", "PendingChunk", "StackedChunks",
           "build_segment", "set_whole_chunk_stats", "stack_chunks", "stack_staged", "staged_alike",
           "staged_nbytes", "staged_stats"]  # fmt: skip

#: Fewer staged chunks of one kind than this get their stats one kernel call each.
VECTOR_STATS_MIN = 8
#: Larger chunks are not stacked: their per-chunk overhead is small next to their
#: size, and a stack would copy them all at once.
STACK_MAX_CHUNK_BYTES = 1 << 16
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


@dataclass
class StackedChunks:
    """Staged one-chunk arrays of one family sharing dtype, shape and fill value.

    Row ``i`` is the only chunk (id 0) of the array in ``slots[i]``; ``values[i]``
    holds its cells.  ``minimum``/``maximum`` are Python values (None where every
    cell is null), as :func:`~atlas.engine.chunks.chunk_stats` gives them.
    """

    dtype: str
    slots: np.ndarray
    values: np.ndarray
    nulls: np.ndarray
    minimum: list[Any]
    maximum: list[Any]
    min_bits: np.ndarray
    max_bits: np.ndarray
    #: True when every row is stored raw (see :func:`build_segment`).
    raw: bool = False

    def __len__(self) -> int:
        return int(self.slots.shape[0])

    def set_array_stats(self, metas: dict[int, ArrayMeta]) -> None:
        """Set ``metas[slot].stats`` of every row's slot (each array is its one chunk)."""
        cells = int(self.values.shape[1])
        stats = map(Stats, itertools.repeat(cells), self.nulls.tolist(), self.minimum, self.maximum)
        for meta, got in zip(map(metas.__getitem__, self.slots.tolist()), stats):
            meta.stats = got

    def chunk_stats(self, row: int) -> ChunkStats:
        """The stats of row ``row``'s chunk."""
        return ChunkStats(int(self.values.shape[1]), int(self.nulls[row]), self.minimum[row], self.maximum[row])

    def block(self) -> tuple[np.ndarray, int, np.ndarray]:
        """``(payloads, nbytes, records)`` for :meth:`SegmentWriter.add_block`: row ``i``'s
        raw bytes padded to the segment alignment, and its record (checksum included)."""
        n = len(self)
        raw = self.values.view(np.uint8).reshape(n, -1)
        nbytes = raw.shape[1]
        stride = -(-nbytes // ALIGN) * ALIGN
        if stride == nbytes:
            block = np.ascontiguousarray(raw)
        else:
            block = np.zeros((n, stride), np.uint8)
            block[:, :nbytes] = raw
        records = np.zeros(n, RECORD_DTYPE)
        records["slot"] = self.slots
        records["raw_nbytes"] = nbytes
        records["checksum"] = row_checksums(block, nbytes)
        records["null_count"] = self.nulls
        records["min"] = self.min_bits
        records["max"] = self.max_bits
        records["codec"] = RAW
        return block, nbytes, records


def stack_chunks(name: str, fill: Any, slots: list[int], chunks: list[PendingChunk]) -> StackedChunks:
    """Stats of same-sized numeric chunks without written masks, in one pass.

    The results equal :func:`~atlas.engine.chunks.chunk_stats` exactly.  Float rows
    holding both a ``0.0`` and a ``-0.0`` (whose min or max sign depends on the
    order the kernel meets them in) are left out: the caller takes them one by one.
    """
    cells = chunks[0].values.shape[0]
    stack = np.concatenate([c.values for c in chunks]).reshape(len(chunks), cells)
    if dtypes.is_float(name):
        null = np.isnan(stack)
        if fill is not None:
            null |= stack == stack.dtype.type(fill)
        lo = np.where(null, np.inf, stack).min(axis=1)
        hi = np.where(null, -np.inf, stack).max(axis=1)
        nulls = null.sum(axis=1)
        empty = nulls == cells
        keep = empty | ~((stack == 0) & np.signbit(stack)).any(axis=1)
        lo_bits, hi_bits = lo.astype(np.float64).view(np.uint64), hi.astype(np.float64).view(np.uint64)
    else:
        view = stack.view(np.uint8) if stack.dtype == np.bool_ else stack
        null = np.zeros(view.shape, np.bool_)
        if fill is not None:
            null |= view == view.dtype.type(int(fill))
        if name == "timestamp_nanoseconds":
            null |= view == np.iinfo(np.int64).min
        info = np.iinfo(view.dtype)
        lo = np.where(null, info.max, view).min(axis=1)
        hi = np.where(null, info.min, view).max(axis=1)
        nulls = null.sum(axis=1)
        empty = nulls == cells
        keep = None
        # Record bits as value_bits gives them: two's complement of signed values.
        wide = np.int64 if info.min < 0 else np.uint64
        lo_bits, hi_bits = lo.astype(wide).view(np.uint64), hi.astype(wide).view(np.uint64)
        if name == "bool":
            lo, hi = lo.astype(np.bool_), hi.astype(np.bool_)
    slot_arr = np.asarray(slots, dtype=np.uint64)
    if keep is not None and not keep.all():
        stack, nulls, empty, lo, hi = stack[keep], nulls[keep], empty[keep], lo[keep], hi[keep]
        lo_bits, hi_bits, slot_arr = lo_bits[keep], hi_bits[keep], slot_arr[keep]
    lo_list, hi_list = lo.tolist(), hi.tolist()
    if empty.any():
        lo_bits, hi_bits = np.where(empty, 0, lo_bits).astype(np.uint64), np.where(empty, 0, hi_bits).astype(np.uint64)
        for i in np.flatnonzero(empty).tolist():
            lo_list[i] = hi_list[i] = None
    return StackedChunks(name, slot_arr, stack, nulls.astype(np.int64), lo_list, hi_list, lo_bits, hi_bits)


def stack_staged(
    metas: dict[int, ArrayMeta], pending: dict[int, dict[int, PendingChunk]], codec: str
) -> list[StackedChunks]:
    """The staged one-chunk arrays of ``metas``' slots, stacked by dtype, shape and fill value.

    ``pending`` is their family's staged chunks (``FamilyEngine.pending``).  A flush
    of many small datasets needs the stats of every staged chunk and writes each to
    the segment: the chunks of a group get both in one pass
    (:func:`stack_chunks`, :func:`build_segment`) instead of one call each.
    Groups smaller than :data:`VECTOR_STATS_MIN`, chunks larger than
    :data:`STACK_MAX_CHUNK_BYTES`, strings and partly written chunks are left
    to the one-by-one path.  Rows are in slot order.
    """
    groups: dict[tuple[str, tuple, tuple, Any], tuple[list[int], list[PendingChunk]]] = {}
    alike = staged_alike(metas, pending)
    if alike is not None:
        first = next(iter(metas.values()))
        fill = first.fill_value
        groups[(first.dtype, first.shape, first.chunk_shape, _NAN if fill != fill else fill)] = alike
        metas = {}  # nothing left for the loop below
    # The arrays of a batch share their dtype, shape and chunk shape objects: a
    # record whose fields are the very objects of the one before joins its group
    # without building and hashing a key.
    last = (None, None, None, None)
    slots = chunks = None
    for slot, meta in metas.items():
        staged = pending.get(slot)
        if not staged or len(staged) != 1:
            continue
        chunk = staged.get(0)
        if chunk is None or chunk.written is not None:
            continue
        dtype, shape, chunk_shape, fill = meta.dtype, meta.shape, meta.chunk_shape, meta.fill_value
        if dtype is not last[0] or shape is not last[1] or chunk_shape is not last[2] or fill is not last[3]:
            last = (dtype, shape, chunk_shape, fill)
            key = (dtype, shape, chunk_shape, _NAN if fill != fill else fill)  # NaN != NaN
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [])
            slots, chunks = group
        slots.append(slot)
        chunks.append(chunk)
    raw_codec = CODEC_IDS[codec] == RAW
    out = []
    for (name, shape, chunk_shape, fill), (slots, chunks) in groups.items():
        fill = math.nan if fill is _NAN else fill
        if len(chunks) < VECTOR_STATS_MIN or name == "string" or not one_chunk(shape, chunk_shape):
            continue
        if chunks[0].values.nbytes > STACK_MAX_CHUNK_BYTES:
            continue
        if not all(map(operator.lt, slots, itertools.islice(slots, 1, None))):  # distinct slots
            order = sorted(range(len(slots)), key=slots.__getitem__)
            slots, chunks = [slots[i] for i in order], [chunks[i] for i in order]
        stacked = stack_chunks(name, fill, slots, chunks)
        stacked.raw = raw_codec or chunks[0].values.nbytes <= MIN_COMPRESS
        out.append(stacked)
    return out


#: Stands for a NaN fill value in a dict key (NaN is not equal to itself).
_NAN = object()


def staged_stats(chunk: PendingChunk, meta: ArrayMeta) -> ChunkStats:
    """The stats of a staged chunk, computed once and kept until a write changes the chunk."""
    stats = chunk.stats
    if stats is None:
        stats = chunk.stats = chunk_stats(chunk.values, chunk.written, meta)
    return stats


def set_whole_chunk_stats(
    metas: dict[int, ArrayMeta], pending: dict[int, dict[int, PendingChunk]], done: set[int]
) -> list[int]:
    """Set the stats of the arrays of ``metas`` (slots not in ``done``) whose one staged
    chunk holds the whole array; returns the other slots, in ``metas`` order.

    ``pending`` is their family's staged chunks.  Such an array's stats are its
    chunk's, whatever was stored before (as ``FamilyEngine.stats`` folds them): a
    flush of many small datasets of different shapes, which :func:`stack_staged`
    cannot group, sets them here without a call per array through the engine.
    """
    rest, whole = [], []
    for slot, meta in metas.items():
        if slot in done:
            continue
        staged = pending.get(slot)
        chunk = staged.get(0) if staged is not None and len(staged) == 1 else None
        if chunk is None or not one_chunk(meta.shape, meta.chunk_shape):
            rest.append(slot)
            continue
        whole.append((meta, chunk))
    _fill_stats([(meta, chunk) for meta, chunk in whole if chunk.stats is None and chunk.written is None])
    for meta, chunk in whole:
        own = chunk.stats
        if own is None:
            own = chunk.stats = chunk_stats(chunk.values, chunk.written, meta)
        meta.stats = Stats(own.cells, own.null_count, own.minimum, own.maximum)
    return rest


def _fill_stats(staged: list[tuple[ArrayMeta, PendingChunk]]) -> None:
    """Set ``chunk.stats`` of staged chunks without written masks, by dtype and fill value
    in a few numpy passes each (:func:`~atlas.engine.chunks.many_chunk_stats`); chunks
    it cannot tell, or alone of their kind, are left for :func:`chunk_stats`."""
    groups: dict[tuple, list[tuple[ArrayMeta, PendingChunk]]] = {}
    for meta, chunk in staged:
        fill = meta.fill_value
        # repr tells NaN and -0.0 apart; the storage dtype joins the chunks' cells
        key = (meta.dtype, chunk.values.dtype, type(fill), repr(fill))
        got = groups.get(key)
        if got is None:
            got = groups[key] = []
        got.append((meta, chunk))
    for group in groups.values():
        if len(group) < 2:
            continue
        meta = group[0][0]
        found = many_chunk_stats([chunk.values for _, chunk in group], meta.dtype, meta.fill_value)
        for (_, chunk), stats in zip(group, found):
            if stats is not None:
                chunk.stats = stats


def staged_nbytes(pending: dict[int, dict[int, PendingChunk]]) -> int:
    """Bytes held by staged chunks (values and written masks)."""
    return sum(
        c.values.nbytes + (0 if c.written is None else c.written.nbytes)
        for chunks in pending.values()
        for c in chunks.values()
    )


def build_segment(
    engine: FamilyEngine,
    metas: dict[int, ArrayMeta],
    codec: str,
    generation: int,
    token: bytes,
    workers: int = 1,
    stacked: Sequence[StackedChunks] = (),
) -> SegmentWriter:
    """Encode every staged chunk of the slots in ``metas`` into one segment.

    ``stacked`` are groups of these slots' one-chunk arrays (from
    :func:`stack_staged`): their stats are taken from the group, and
    the rows of a group stored raw are laid out as one block (the file is byte for
    byte the one a chunk-by-chunk encoding writes).  Other chunks are compressed on
    up to ``workers`` threads (blosc2 releases the GIL while it compresses, see
    :mod:`atlas.engine.codecs`).  Records are in (slot, chunk) order whatever the
    thread count.
    """
    blocks = [g for g in stacked if g.raw and len(g)]
    in_block: set[int] = set()
    for g in blocks:
        in_block.update(g.slots.tolist())
    for g in stacked:
        if not g.raw:  # compressed one by one below, with the group's stats
            for row, slot in enumerate(g.slots.tolist()):
                engine.pending[slot][0].stats = g.chunk_stats(row)
    pending = engine.pending
    jobs = [(slot, cid) for slot in sorted(metas) if slot not in in_block for cid in sorted(pending.get(slot, {}))]

    def encode(job: tuple[int, int]) -> tuple:
        """The fields :meth:`SegmentWriter.add` takes after ``slot, chunk``."""
        slot, cid = job
        chunk = engine.pending[slot][cid]
        meta = metas[slot]
        stats = staged_stats(chunk, meta)
        values = chunk.values
        if chunk.written is None and meta.dtype != "string":
            # The fields of encode_chunk without building its record.
            raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
            lo, hi = value_bits(stats.minimum, meta.dtype), value_bits(stats.maximum, meta.dtype)
            if raw.nbytes <= MIN_COMPRESS:
                # Stored raw whatever the codec (see encode_payload), still a view of
                # the staged cells: _copy_raw copies it and gives its checksum.
                return raw, RAW, raw.nbytes, stats.null_count, lo, hi, 0, None
            stored, codec_id = encode_payload(raw, values.dtype.itemsize, codec)
            if stored is raw:
                stored = raw.copy()  # never keep a view of the staged cells
            return stored, codec_id, raw.nbytes, stats.null_count, lo, hi, 0, None
        enc = encode_chunk(values, chunk.written, meta, codec, stats)
        return enc.stored, enc.codec, enc.raw_nbytes, stats.null_count, enc.min_bits, enc.max_bits, enc.flags, None

    staged = sum(engine.pending[slot][cid].values.nbytes for slot, cid in jobs)
    if workers > 1 and len(jobs) > 1 and staged >= PARALLEL_ENCODE_BYTES:
        encoded = list(shared_pool("encode", workers).map(encode, jobs))
    else:
        encoded = [encode(job) for job in jobs]
    _copy_raw(encoded)
    writer = SegmentWriter(generation, token)
    if not blocks:
        for (slot, cid), fields in zip(jobs, encoded):
            writer.add(slot, cid, *fields)
        return writer
    # Merge blocks and single chunks in slot order (a blocked slot has one chunk, a
    # single chunk's slot is in no block): runs of one source become one call each.
    source = np.concatenate([np.full(len(g), i, np.int64) for i, g in enumerate(blocks)] + [np.full(len(jobs), -1)])
    row = np.concatenate([np.arange(len(g)) for g in blocks] + [np.arange(len(jobs))])
    keys = np.concatenate([g.slots for g in blocks] + [np.fromiter((s for s, _ in jobs), np.uint64, len(jobs))])
    order = np.argsort(keys, kind="stable")
    source, row = source[order], row[order]
    cuts = [0, *(np.flatnonzero(source[1:] != source[:-1]) + 1).tolist(), len(order)]
    laid_out = [g.block() for g in blocks]
    for a, b in itertools.pairwise(cuts):
        src, first = int(source[a]), int(row[a])
        if src < 0:
            for i in range(first, first + b - a):
                writer.add(*jobs[i], *encoded[i])
        else:
            block, nbytes, records = laid_out[src]
            last = first + b - a
            writer.add_block(block[first:last], nbytes, records[first:last].copy())
    return writer


#: Fewer raw payloads of one size than this are copied and checksummed one by one.
_ROWS_MIN = 4


def _copy_raw(encoded: list[tuple]) -> None:
    """Copy the small raw payloads of ``encoded`` (still views of staged cells) and checksum them.

    ``encoded`` holds the fields of :meth:`SegmentWriter.add` after ``slot, chunk``;
    raw payloads of at most :data:`~atlas.engine.codecs.MIN_COMPRESS` bytes are views
    with digest None.  Those of one size are copied into the rows of one matrix and
    hashed by one call (:func:`~atlas.engine.codecs.row_checksums`): a flush of many
    small datasets stores hundreds of them, and a call per payload costs more than
    its hashing.  Each row keeps the exact payload bytes, so the file is unchanged.
    """
    by_size: dict[int, list[int]] = {}
    for i, fields in enumerate(encoded):
        if fields[7] is None and fields[1] == RAW and 0 < fields[0].nbytes <= MIN_COMPRESS:
            got = by_size.get(fields[0].nbytes)
            if got is None:
                got = by_size[fields[0].nbytes] = []
            got.append(i)
    for nbytes, rows in by_size.items():
        if len(rows) < _ROWS_MIN:
            for i in rows:
                encoded[i] = (encoded[i][0].copy(), *encoded[i][1:])
            continue
        stride = -(-nbytes // 8) * 8
        block = np.zeros((len(rows), stride), np.uint8)
        block[:, :nbytes] = np.concatenate([encoded[i][0] for i in rows]).reshape(len(rows), nbytes)
        digests = row_checksums(block, nbytes)
        digests = digests.tolist() if isinstance(digests, np.ndarray) else digests
        for i, payload, digest in zip(rows, block[:, :nbytes], digests):
            encoded[i] = (payload, *encoded[i][1:7], digest)


_SCHEMA_OF = operator.attrgetter("dtype", "shape", "chunk_shape", "fill_value")
_WRITTEN_OF = operator.attrgetter("written")


def staged_alike(
    metas: dict[int, ArrayMeta], pending: dict[int, dict[int, PendingChunk]]
) -> tuple[list[int], list[PendingChunk]] | None:
    """``(slots, chunks)`` of a batch of staged arrays made alike, by C-level passes; else None.

    Made alike: every slot of ``metas`` has one staged chunk, chunk 0 without a
    written mask, and every array the very dtype, shape, chunk shape and fill value
    objects of the first (what a batch of new datasets stages).  They are then the
    one group of :func:`stack_staged`, in the order of ``metas``.
    """
    n = len(metas)
    if not n:
        return None
    slots = list(metas)
    staged = list(map(pending.get, slots))
    if any(map(operator.is_, staged, itertools.repeat(None))) or list(map(len, staged)).count(1) != n:
        return None
    chunks = list(map(dict.get, staged, itertools.repeat(0)))
    if any(map(operator.is_, chunks, itertools.repeat(None))):
        return None
    if any(map(operator.is_not, map(_WRITTEN_OF, chunks), itertools.repeat(None))):
        return None
    fields = list(itertools.chain.from_iterable(map(_SCHEMA_OF, metas.values())))
    first = fields[:4]
    for k in range(4):  # the same objects: identity, as the loop of stack_staged compares them
        if list(map(operator.is_, fields[k::4], itertools.repeat(first[k]))).count(True) != n:
            return None
    return slots, chunks
