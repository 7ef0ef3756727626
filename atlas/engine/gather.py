"""The bulk gather: the same box of one array from many datasets, in one downward pass.

Every dataset's array of a given name lives in the same segment family, so a bulk
read plans the touched ``(dataset, chunk)`` pieces of all datasets at once with
numpy, fills the pieces no segment stores, then per segment verifies, decodes and
scatters its pieces (one :class:`~atlas.engine.pieces.Pieces` table and one
:class:`~atlas.engine.pieces.Payloads` table) into one preallocated ``(N, *box)``
output.  With libblosc2 reachable
(:mod:`atlas.engine.libblosc2`) that is one call per worker thread, chunk by chunk
through a small per-thread scratch buffer: the jitted kernel, or for batches under
:data:`KERNEL_MIN_PIECES` (until the kernel is compiled) its ctypes twin, which needs
no numba; otherwise the checksums are
verified in one jitted pass, the compressed chunks decoded by
``blosc2.decompress2`` into one scratch buffer and scattered with one jitted call.

Local segments are memory-mapped and read in place.  On object stores the same plan
fetches exactly the touched chunk payloads of each segment with one coalesced
``get_ranges`` call (:meth:`atlas.engine.segment_io.SegmentIO.gather_many`), many
segments at once, into one aligned buffer per segment; each segment is checked,
decoded and scattered as soon as its bytes land.  The segment indexes an array
needs are fetched together beforehand (one round of requests).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from atlas import dtypes
from atlas.engine import kernels, libblosc2
from atlas.engine.chunks import fill_for
from atlas.engine.codecs import LZ4, RAW, ZSTD
from atlas.engine.family import FamilyEngine
from atlas.engine.pieces import ItemRanges, Payloads, Pieces
from atlas.engine.planner import plan_selection
from atlas.engine.pools import shared_pool
from atlas.engine.segment import FLAG_WRITTEN_MASK
from atlas.errors import ChecksumError, CorruptStoreError
from atlas.metadata import ArrayMeta, SegmentRef

__all__ = ["decode_many", "gather", "read_pieces_many"]

#: Below this many compressed bytes a batch is decoded on the calling thread.
PARALLEL_MIN_BYTES = 1 << 20
#: Batches of fewer pieces are read without numba (:func:`atlas.engine.libblosc2.read_pieces_py`,
#: and missing chunks filled through numpy views) unless the kernel is compiled in this
#: process already: tens of microseconds of Python per piece (about three times the
#: kernel's) cost less, in so small a batch, than importing numba (a third of a second)
#: or compiling the kernel (a second or more on an empty cache).  The C calls release
#: the GIL, so worker threads still decode in parallel.
KERNEL_MIN_PIECES = 256
#: Per-thread scratch buffers up to this size are kept for the next call.
SCRATCH_KEEP_BYTES = 16 << 20

_local = threading.local()


def gather(
    engine: FamilyEngine,
    labels: list[str],
    metas: list[ArrayMeta],
    start: tuple[int, ...],
    box: tuple[int, ...],
    workers: int,
) -> np.ndarray:
    """The box ``start``/``box`` of every array in ``metas``, stacked: shape ``(N, *box)``.

    ``metas`` are arrays of ``engine``'s name sharing one dtype, each holding the box
    (checked by the caller); ``labels`` name their datasets in error messages.
    Timestamps come back as ``datetime64[ns]``.
    """
    name = metas[0].dtype
    out = np.empty((len(labels), *box), dtype=dtypes.storage_dtype(name))
    pending = engine.pending
    if name == "string":
        slow = list(range(len(metas)))
    elif pending:
        slow = [i for i, m in enumerate(metas) if m.slot in pending]
    else:
        slow = []
    for i in slow:
        out[i] = engine.read(metas[i], start, box, f"dataset {labels[i]!r} array {engine.name!r}")
    if len(slow) < len(labels) and out.size:
        layouts = {(m.shape, m.chunk_shape) for m in metas}
        if len(layouts) == 1 and not slow:
            ((shape, chunk_shape),) = layouts
            _gather_layout(workers, engine, labels, metas, None, shape, chunk_shape, start, box, out)
        else:
            skip = set(slow)
            by_layout: dict[tuple, list[int]] = {}
            for i, m in enumerate(metas):
                if i not in skip:
                    by_layout.setdefault((m.shape, m.chunk_shape), []).append(i)
            for (shape, chunk_shape), members in by_layout.items():
                _gather_layout(workers, engine, labels, metas, members, shape, chunk_shape, start, box, out)
    return out.view("datetime64[ns]") if name == "timestamp_nanoseconds" else out


def _flat(arr: np.ndarray) -> np.ndarray:
    flat = arr.reshape(-1)
    return flat.view(np.uint8) if flat.dtype == np.bool_ else flat


class _Job:
    """The pieces of one segment, in the order of their payloads in the file."""

    __slots__ = ("dst_bases", "members", "path", "records", "ref", "rows")

    def __init__(self, ref: SegmentRef, path: str, records: np.ndarray, members: np.ndarray, rows: np.ndarray,
                 dst_bases: np.ndarray) -> None:  # fmt: skip
        self.ref, self.path, self.records = ref, path, records
        self.members, self.rows, self.dst_bases = members, rows, dst_bases


def _gather_layout(
    workers: int,
    engine: FamilyEngine,
    labels: list[str],
    metas: list[ArrayMeta],
    members: list[int] | None,
    shape: tuple[int, ...],
    chunk_shape: tuple[int, ...],
    start: tuple[int, ...],
    box: tuple[int, ...],
    out: np.ndarray,
) -> None:
    """Gather the arrays ``members`` (None: all of them) that share one chunk layout."""
    plan = plan_selection(shape, chunk_shape, start, box)
    rows = len(plan)
    if members is None:
        count = len(metas)
        members_arr = np.arange(count, dtype=np.int64)
        slots = np.fromiter((m.slot for m in metas), np.uint64, count)
    else:
        count = len(members)
        members_arr = np.asarray(members, np.int64)
        slots = np.fromiter((metas[i].slot for i in members), np.uint64, count)
    if engine.has_stored():
        engine.prefetch_index()
        positions = engine.index().find_many(slots, plan.chunk_ids)
    else:
        positions = np.full((count, rows), -1, np.int64)
    flat_pos = positions.reshape(-1)
    piece_member = np.repeat(members_arr, rows) if rows > 1 else members_arr
    piece_row = np.tile(np.arange(rows), count) if rows > 1 else np.zeros(count, np.int64)
    cells = int(np.prod(box, dtype=np.int64))
    dst = _flat(out)
    sel_shape = np.asarray(box, np.int64)
    dst_bases = piece_member * cells

    missing = flat_pos < 0
    if missing.any():
        fill_values = np.array([fill_for(metas[int(m)]) for m in piece_member[missing]], dtype=out.dtype)
        rows_m = piece_row[missing]
        _fill_pieces(_flat(fill_values), plan.boxes[rows_m], sel_shape, plan.in_selection[rows_m],
                     dst_bases[missing], dst)  # fmt: skip
        present = ~missing
        if not present.any():
            return
        pos, piece_row, piece_member, dst_bases = (
            flat_pos[present], piece_row[present], piece_member[present], dst_bases[present]
        )
    else:
        pos = flat_pos
    idx = engine.index()
    segs = idx.seg[pos]
    segments = engine.segments()
    # One job per segment, its pieces in the order of their payloads in the file.
    order = np.lexsort((idx.table["offset"][pos], segs))
    segs_sorted = segs[order]
    cuts = np.flatnonzero(segs_sorted[1:] != segs_sorted[:-1]) + 1
    jobs = []
    for sel in np.split(order, cuts):
        ref = segments[int(segs[sel[0]])]
        jobs.append(_Job(ref, engine.path(ref), idx.table[pos[sel]], piece_member[sel], piece_row[sel], dst_bases[sel]))
    ranges = ItemRanges(plan)
    for job, src, offsets in _sources(engine, jobs):
        pieces = Pieces.of_plan(plan, job.rows, job.dst_bases, sel_shape, dst)
        _decode_segment(workers, engine.name, labels, ranges, job, src, offsets, pieces)


def _sources(engine: FamilyEngine, jobs: list[_Job]) -> Iterator[tuple[_Job, np.ndarray, np.ndarray]]:
    """Per segment job: ``(job, bytes, offsets of each record's payload in those bytes)``.

    Memory-mapped segments are used in place.  Otherwise exactly the touched payloads
    are fetched, one coalesced ``get_ranges`` call per segment and many segments at
    once; each segment is decoded as soon as its bytes land.
    """
    if engine.io.can_map:
        for job in jobs:
            mm = engine.io.read(job.path, 0, job.ref.size, job.ref.size)
            yield job, mm, job.records["offset"].astype(np.int64)
        return
    requests = [(job.path, job.records["offset"].astype(np.int64), job.records["nbytes"].astype(np.int64))
                for job in jobs]  # fmt: skip
    for k, buf, starts in engine.io.gather_many(requests):
        yield jobs[k], buf, starts


def _decode_segment(
    workers: int,
    array: str,
    labels: list[str],
    ranges: ItemRanges,
    job: _Job,
    src: np.ndarray,
    offsets: np.ndarray,
    pieces: Pieces,
) -> None:
    """Verify, decode and scatter the records of one segment whose payloads are in ``src``."""
    records, rows, members, path = job.records, job.rows, job.members, job.path
    dst = pieces.dst
    itemsize = dst.dtype.itemsize
    nbytes = records["nbytes"].astype(np.int64)
    codec = records["codec"]
    raw = codec == RAW
    # Every size comes from the plan; a record that disagrees is refused before
    # anything is allocated from it.
    cells = ranges.cells[rows]
    expected = cells * itemsize + np.where(records["flags"] & FLAG_WRITTEN_MASK, (cells + 7) // 8, 0)
    claimed = records["raw_nbytes"]
    bad = claimed != expected.astype(np.uint64)
    bad |= raw & ((nbytes != expected) | (offsets % itemsize != 0))
    bad |= ~raw & (codec != ZSTD) & (codec != LZ4)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        where = f"{path} (dataset {labels[int(members[k])]!r} array {array!r})"
        if codec[k] not in (RAW, ZSTD, LZ4):
            raise CorruptStoreError(f"{where}: unknown chunk codec id {int(codec[k])}")
        raise CorruptStoreError(
            f"{where}: chunk record claims {int(claimed[k])} decoded bytes ({int(nbytes[k])} stored), "
            f"a chunk of {int(cells[k])} {dst.dtype} cells holds {int(expected[k])}"
        )
    if libblosc2.AVAILABLE:
        payloads = Payloads(offsets, nbytes, records["checksum"], raw, expected, ranges.first[rows], ranges.count[rows])
        status = read_pieces_many(src, payloads, pieces, workers)
        failed = np.flatnonzero(status)
        if failed.size:
            k = int(failed[0])
            where = f"{path} (dataset {labels[int(members[k])]!r} array {array!r})"
            if status[k] == libblosc2.ERR_CHECKSUM:
                raise ChecksumError(f"{where}: chunk checksum mismatch")
            raise ChecksumError(
                f"{where}: chunk at offset {int(records['offset'][k])} cannot be decoded (status {int(status[k])})"
            )
        return
    where = f"{path} (array {array!r})"
    digests = np.empty(offsets.shape[0], np.uint64)
    kernels.xxh64_many(src, offsets, nbytes, digests)
    bad = np.nonzero(digests != records["checksum"])[0]
    if bad.size:
        culprit = labels[int(members[bad[0]])]
        raise ChecksumError(f"{path} (dataset {culprit!r} array {array!r}): chunk checksum mismatch")
    # Raw chunks are scattered straight from the map (or the fetched buffer).
    typed_src = src[: src.nbytes - src.nbytes % itemsize].view(dst.dtype)
    if raw.any():
        _scatter(typed_src, offsets[raw] // itemsize, pieces.take(raw))
    comp = np.flatnonzero(~raw)
    if comp.size:
        sizes = expected[comp]
        # Each decoded chunk starts at a multiple of the item size in the scratch.
        padded = -(-sizes // itemsize) * itemsize
        starts = np.zeros(comp.size, np.int64)
        starts[1:] = np.cumsum(padded[:-1])
        scratch_u8 = np.empty(int(starts[-1] + padded[-1]), np.uint8)
        decode_many(src, offsets[comp], nbytes[comp], codec[comp], scratch_u8, starts, sizes, where, workers)
        scratch = scratch_u8[: scratch_u8.nbytes - scratch_u8.nbytes % itemsize].view(dst.dtype)
        _scatter(scratch, starts // itemsize, pieces.take(comp))


def _fill_pieces(values: np.ndarray, boxes: np.ndarray, sel_shape: np.ndarray, in_selection: np.ndarray,
                 bases: np.ndarray, dst: np.ndarray) -> None:  # fmt: skip
    """:func:`atlas.engine.kernels.fill_pieces`, through numpy views for small batches
    (as :func:`read_pieces_many` reads them without numba): no compile per dtype."""
    if values.shape[0] >= KERNEL_MIN_PIECES:
        kernels.fill_pieces(values, boxes, sel_shape, in_selection, bases, dst)
        return
    itemsize = dst.itemsize
    sel = sel_shape.tolist()
    strides = [itemsize] * len(sel)
    for d in range(len(sel) - 2, -1, -1):
        strides[d] = strides[d + 1] * sel[d + 1]
    for p in range(values.shape[0]):
        box = boxes[p].tolist()
        if 0 in box:
            continue
        offset = int(bases[p]) * itemsize + sum(s * t for s, t in zip(in_selection[p].tolist(), strides))
        view = np.ndarray(tuple(box), dst.dtype, buffer=dst, offset=offset, strides=tuple(strides))
        view[...] = values[p]


def _scatter(src: np.ndarray, src_offsets: np.ndarray, pieces: Pieces) -> None:
    kernels.scatter_pieces(src, src_offsets, pieces.chunk_shapes, pieces.in_chunk, pieces.boxes, pieces.sel_shape,
                           pieces.in_selection, pieces.dst_bases, pieces.dst)  # fmt: skip


# -- decoding many chunks of one buffer ------------------------------------------------------------


def decode_many(
    src: np.ndarray,
    offsets: np.ndarray,
    nbytes: np.ndarray,
    codecs: np.ndarray,
    dst: np.ndarray,
    dst_starts: np.ndarray,
    raw_nbytes: np.ndarray,
    where: str,
    max_workers: int = 1,
) -> None:
    """Decompress chunk ``i`` (``src[offsets[i]:][:nbytes[i]]``) into ``dst[dst_starts[i]:][:raw_nbytes[i]]``.

    Payload checksums must have been verified by the caller; a chunk that still
    fails to decode, or decodes to the wrong size, raises :class:`ChecksumError`.
    """
    raw = codecs == RAW
    for i in np.nonzero(raw)[0]:
        o, n, d = int(offsets[i]), int(nbytes[i]), int(dst_starts[i])
        dst[d : d + n] = src[o : o + n]
    todo = np.nonzero(~raw)[0]
    if todo.size == 0:
        return
    if not libblosc2.AVAILABLE:
        import blosc2  # only without libblosc2 (it takes a third of a second)

        for i in todo:
            o, n, d, r = int(offsets[i]), int(nbytes[i]), int(dst_starts[i]), int(raw_nbytes[i])
            try:
                blosc2.decompress2(src[o : o + n], dst=dst[d : d + r], nthreads=1)
            except Exception as exc:  # blosc2 raises several types for damaged input
                raise ChecksumError(f"{where}: chunk at offset {o} cannot be decompressed: {exc}") from None
        return
    status = np.empty(todo.size, np.int64)
    args = (offsets[todo], nbytes[todo], dst_starts[todo], raw_nbytes[todo])
    workers = max(1, min(max_workers, todo.size))
    if workers == 1 or int(args[1].sum()) < PARALLEL_MIN_BYTES:
        libblosc2.decode_chunks(libblosc2.thread_context(), src, args[0], args[1], dst, args[2], args[3], status)
    else:
        bounds = np.linspace(0, todo.size, workers + 1).astype(np.int64)

        def part(k: int) -> None:
            lo, hi = bounds[k], bounds[k + 1]
            libblosc2.decode_chunks(libblosc2.thread_context(), src, args[0][lo:hi], args[1][lo:hi], dst,
                                    args[2][lo:hi], args[3][lo:hi], status[lo:hi])  # fmt: skip

        list(shared_pool("decode", workers).map(part, range(workers)))
    bad = np.nonzero(status != args[3])[0]
    if bad.size:
        i = int(bad[0])
        raise ChecksumError(
            f"{where}: chunk at offset {int(args[0][i])} cannot be decompressed (blosc2 status {int(status[i])})"
        )


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's scratch buffer of at least ``nbytes`` (reused while small)."""
    buf = getattr(_local, "scratch", None)
    if buf is not None and buf.nbytes >= nbytes:
        return buf
    # Round up so that a run of slightly growing chunks does not reallocate each time.
    buf = np.empty(max(nbytes, 1 << 16) * 5 // 4, np.uint8)
    if buf.nbytes <= SCRATCH_KEEP_BYTES:
        _local.scratch = buf
    return buf


def read_pieces_many(src: np.ndarray, payloads: Payloads, pieces: Pieces, max_workers: int = 1) -> np.ndarray:
    """Verify, decode and scatter stored chunks (see :func:`atlas.engine.libblosc2.read_pieces`).

    The caller has checked every record against the chunk it claims to be (the sizes
    here never come from untrusted fields alone).  Pieces are split over up to
    ``max_workers`` threads, each with its own decompression context and scratch
    buffer; pieces write disjoint parts of the output.  Batches of fewer than
    :data:`KERNEL_MIN_PIECES` pieces take :func:`~atlas.engine.libblosc2.read_pieces_py`
    (no numba) unless the kernel is compiled already.  Returns the per-piece status
    (0 = success).

    Parameters
    ----------
    src : ndarray
        The payload bytes (uint8).
    payloads : Payloads
        Each piece's payload in ``src``, its checksum, codec and the items to decode.
    pieces : Pieces
        Where each piece's box comes from and goes to, in items of ``pieces.dst``.
    max_workers : int
        Threads to use for batches of at least :data:`PARALLEL_MIN_BYTES`.
    """
    n = payloads.offsets.shape[0]
    status = np.zeros(n, np.int64)
    if n == 0:
        return status
    itemsize = pieces.dst.itemsize
    # The kernel works on bytes (one compile for every dtype) and on read-only views of
    # its inputs and fixed column types (one compiled signature whatever the buffers are).
    pieces = pieces.as_bytes()
    payloads = payloads.normalized()
    src = _read_only(src)
    need = np.where(payloads.raw, 0, np.where(payloads.count > 0, payloads.count * itemsize, payloads.raw_nbytes))
    workers = max(1, min(max_workers, n))
    if workers > 1 and int(payloads.nbytes.sum()) < PARALLEL_MIN_BYTES:
        workers = 1
    kernel = libblosc2.read_pieces
    if n < KERNEL_MIN_PIECES and not libblosc2.read_pieces_compiled():
        kernel = libblosc2.read_pieces_py

    def part(lo: int, hi: int) -> None:
        size = int(need[lo:hi].max()) if hi > lo else 0
        # blosc2 writes the scratch through its address; the copies only read it.
        scratch = _read_only(_scratch(size))
        rows = slice(lo, hi)
        kernel(libblosc2.thread_context(), src, payloads.take(rows), itemsize, scratch, pieces.take(rows),
               status[lo:hi])  # fmt: skip

    if workers == 1:
        part(0, n)
    else:
        # Split by payload bytes so that each thread gets about the same work.
        ends = np.cumsum(payloads.nbytes)
        cuts = np.searchsorted(ends, ends[-1] * np.arange(1, workers) / workers)
        bounds = [0, *sorted({int(c) for c in cuts}), n]
        list(shared_pool("decode", workers).map(part, bounds[:-1], bounds[1:]))
    return status


def _read_only(arr: np.ndarray) -> np.ndarray:
    if not arr.flags.writeable:
        return arr
    view = arr.view()
    view.flags.writeable = False
    return view
