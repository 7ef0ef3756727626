"""Decoding many compressed chunks out of one buffer into one scratch buffer.

With libblosc2 reachable (:mod:`atlas.engine.native`), every chunk of a batch is
decoded by one jitted call per worker thread, the GIL released; otherwise each
chunk goes through ``blosc2.decompress2``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import blosc2
import numpy as np

from atlas.engine import native
from atlas.engine.codecs import RAW
from atlas.errors import ChecksumError

__all__ = ["decode_items_many", "decode_many"]

#: Below this many compressed bytes a batch is decoded on the calling thread.
PARALLEL_MIN_BYTES = 1 << 20

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


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


def decode_items_many(
    src: np.ndarray,
    offsets: np.ndarray,
    nbytes: np.ndarray,
    item_start: np.ndarray,
    item_count: np.ndarray,
    itemsize: int,
    dst: np.ndarray,
    dst_starts: np.ndarray,
    where: str,
    max_workers: int = 1,
) -> None:
    """Decode only items ``[item_start[i], item_start[i] + item_count[i])`` of each
    compressed chunk (needs :data:`atlas.engine.native.AVAILABLE`)."""
    status = np.empty(offsets.size, np.int64)
    workers = max(1, min(max_workers, offsets.size))
    if workers == 1 or int(nbytes.sum()) < PARALLEL_MIN_BYTES:
        native.decode_items(
            native.thread_context(), src, offsets, nbytes, item_start, item_count, itemsize, dst, dst_starts, status
        )
    else:
        bounds = np.linspace(0, offsets.size, workers + 1).astype(np.int64)

        def part(k: int) -> None:
            lo, hi = bounds[k], bounds[k + 1]
            native.decode_items(
                native.thread_context(),
                src,
                offsets[lo:hi],
                nbytes[lo:hi],
                item_start[lo:hi],
                item_count[lo:hi],
                itemsize,
                dst,
                dst_starts[lo:hi],
                status[lo:hi],
            )

        list(_pool(workers).map(part, range(workers)))
    bad = np.nonzero(status != item_count * itemsize)[0]
    if bad.size:
        i = int(bad[0])
        raise ChecksumError(
            f"{where}: chunk at offset {int(offsets[i])} cannot be decompressed (blosc2 status {int(status[i])})"
        )
