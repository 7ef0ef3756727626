"""Decoding many compressed chunks out of one buffer.

With libblosc2 reachable (:mod:`atlas.engine.native`), every chunk of a batch is
decoded by one jitted call per worker thread, the GIL released; otherwise each
chunk goes through ``blosc2.decompress2``.  :func:`read_pieces_many` verifies,
decodes and scatters in the same call, chunk by chunk through a small per-thread
scratch buffer.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from atlas.engine import native
from atlas.engine.codecs import RAW
from atlas.errors import ChecksumError

__all__ = ["decode_many", "read_pieces_many"]

#: Below this many compressed bytes a batch is decoded on the calling thread.
PARALLEL_MIN_BYTES = 1 << 20
#: Batches of fewer pieces are read without numba (:func:`atlas.engine.native.read_pieces_py`)
#: unless the kernel is compiled in this process already: tens of microseconds of Python
#: per piece (about three times the kernel's) cost less, in so small a batch, than
#: importing numba (a third of a second) or compiling the kernel (a second or more on
#: an empty cache).  The C calls release the GIL, so worker threads still decode in parallel.
KERNEL_MIN_PIECES = 256
#: Per-thread scratch buffers up to this size are kept for the next call.
SCRATCH_KEEP_BYTES = 16 << 20

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_local = threading.local()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="atlas-decode")
        return pool


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
    if not native.AVAILABLE:
        import blosc2

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
        native.decode_chunks(native.thread_context(), src, args[0], args[1], dst, args[2], args[3], status)
    else:
        bounds = np.linspace(0, todo.size, workers + 1).astype(np.int64)

        def part(k: int) -> None:
            lo, hi = bounds[k], bounds[k + 1]
            native.decode_chunks(
                native.thread_context(),
                src,
                args[0][lo:hi],
                args[1][lo:hi],
                dst,
                args[2][lo:hi],
                args[3][lo:hi],
                status[lo:hi],
            )

        list(_pool(workers).map(part, range(workers)))
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


def read_pieces_many(
    src: np.ndarray,
    typed_src: np.ndarray,
    offsets: np.ndarray,
    nbytes: np.ndarray,
    checksums: np.ndarray,
    raw: np.ndarray,
    raw_nbytes: np.ndarray,
    first: np.ndarray,
    count: np.ndarray,
    chunk_shapes: np.ndarray,
    in_chunk: np.ndarray,
    boxes: np.ndarray,
    sel_shape: np.ndarray,
    in_selection: np.ndarray,
    dst_bases: np.ndarray,
    dst: np.ndarray,
    max_workers: int = 1,
) -> np.ndarray:
    """Verify, decode and scatter stored chunks (see :func:`atlas.engine.native.read_pieces`).

    The caller has checked every record against the chunk it claims to be (the sizes
    here never come from untrusted fields alone).  Pieces are split over up to
    ``max_workers`` threads, each with its own decompression context and scratch
    buffer; pieces write disjoint parts of ``dst``.  Returns the per-piece status
    (0 = success).

    Parameters
    ----------
    src, typed_src : ndarray
        The payload bytes as uint8; ``typed_src`` (the same memory as the output's
        dtype) gives the item size.
    offsets, nbytes, checksums : ndarray
        Each piece's payload range in ``src`` and its recorded XXH64.
    raw : ndarray of bool
        Pieces stored uncompressed (copied straight from ``typed_src``).
    raw_nbytes, first, count : ndarray of int64
        Decoded size of each chunk; the item range to decode (``count`` 0: whole chunk).
    chunk_shapes, in_chunk, boxes, sel_shape, in_selection, dst_bases, dst : ndarray
        Where each piece's box comes from and goes to, as in
        :func:`atlas.engine.kernels.scatter_pieces`.
    max_workers : int
        Threads to use for batches of at least :data:`PARALLEL_MIN_BYTES`.
    """
    n = offsets.shape[0]
    status = np.zeros(n, np.int64)
    if n == 0:
        return status
    itemsize = typed_src.itemsize
    # The kernel works on bytes (one compile for every dtype): the same boxes over the
    # arrays viewed as bytes.
    chunk_shapes, in_chunk, boxes, sel_shape, in_selection, dst_bases = _byte_geometry(
        itemsize, chunk_shapes, in_chunk, boxes, sel_shape, in_selection, dst_bases
    )
    dst_bytes = dst.view(np.uint8)
    # Read-only views of the inputs: one compiled signature whatever the buffers are.
    src = _read_only(src)
    need = np.where(raw, 0, np.where(count > 0, count * itemsize, raw_nbytes))
    workers = max(1, min(max_workers, n))
    if workers > 1 and int(nbytes.sum()) < PARALLEL_MIN_BYTES:
        workers = 1
    kernel = native.read_pieces
    if n < KERNEL_MIN_PIECES and not native.read_pieces_compiled():
        kernel = native.read_pieces_py

    def part(lo: int, hi: int) -> None:
        size = int(need[lo:hi].max()) if hi > lo else 0
        scratch = _scratch(size)
        kernel(
            native.thread_context(),
            src,
            offsets[lo:hi],
            nbytes[lo:hi],
            checksums[lo:hi],
            raw[lo:hi],
            raw_nbytes[lo:hi],
            itemsize,
            first[lo:hi],
            count[lo:hi],
            _read_only(scratch),  # blosc2 writes it through its address; the copies only read it
            chunk_shapes[lo:hi],
            in_chunk[lo:hi],
            boxes[lo:hi],
            sel_shape,
            in_selection[lo:hi],
            dst_bases[lo:hi],
            dst_bytes,
            status[lo:hi],
        )

    if workers == 1:
        part(0, n)
    else:
        # Split by payload bytes so that each thread gets about the same work.
        ends = np.cumsum(nbytes)
        cuts = np.searchsorted(ends, ends[-1] * np.arange(1, workers) / workers)
        bounds = [0, *sorted({int(c) for c in cuts}), n]
        list(_pool(workers).map(part, bounds[:-1], bounds[1:]))
    return status


def _read_only(arr: np.ndarray) -> np.ndarray:
    if not arr.flags.writeable:
        return arr
    view = arr.view()
    view.flags.writeable = False
    return view


def _byte_geometry(
    itemsize: int,
    chunk_shapes: np.ndarray,
    in_chunk: np.ndarray,
    boxes: np.ndarray,
    sel_shape: np.ndarray,
    in_selection: np.ndarray,
    dst_bases: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """The piece geometry over C-ordered arrays viewed as bytes.

    An array of shape ``(..., n)`` and item size ``k`` is, as bytes, an array of shape
    ``(..., n * k)``: the innermost extent, start and box scale by ``k``, as do the
    element offsets.  A rank-0 selection becomes one axis of ``k`` bytes.
    """
    pieces = chunk_shapes.shape[0]
    if sel_shape.shape[0] == 0:
        whole = np.full((pieces, 1), itemsize, np.int64)
        zero = np.zeros((pieces, 1), np.int64)
        return whole, zero, whole, np.array([itemsize], np.int64), zero, dst_bases * itemsize
    out = []
    for arr in (chunk_shapes, in_chunk, boxes, sel_shape, in_selection):
        arr = np.array(arr, np.int64)  # a copy, C-contiguous
        arr[..., -1] *= itemsize
        out.append(arr)
    return (*out, dst_bases * itemsize)
