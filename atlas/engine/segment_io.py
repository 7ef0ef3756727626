"""Byte access to segment files: memory maps on local disk, coalesced range reads elsewhere.

:class:`SegmentIO` is the one place that turns (segment, offset, length) requests
into bytes, so the engine above it never cares whether a backend can map files.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

from atlas.backends.base import Backend, CanMap
from atlas.engine.pools import shared_pool
from atlas.errors import CorruptStoreError

__all__ = ["SegmentIO"]


class SegmentIO:
    """Reads segment bytes through a backend, memory-mapping files when it can.

    Maps are opened once per segment file and kept for the life of the store
    handle; segment files are immutable, so a map never goes stale.

    Backends that cannot map (object stores) are read with byte-range requests:
    :meth:`gather` fetches many ranges of one file with one ``get_ranges`` call,
    merging ranges closer than ``coalesce_bytes`` (never growing a request past
    ``max_request_bytes``), and lands them in one aligned buffer; :meth:`gather_many`
    does that for many files at once, at most ``max_concurrency`` files in flight.
    The three limits are read from the backend (attributes of the same names) and
    default to 16 files, 1 MiB and 16 MiB.
    """

    #: Defaults when the backend does not say (see the class docstring).
    DEFAULT_MAX_CONCURRENCY = 16
    DEFAULT_COALESCE_BYTES = 1 << 20
    DEFAULT_MAX_REQUEST_BYTES = 16 << 20
    #: Alignment of every range landed by :meth:`gather` (that of segment payloads).
    ALIGN = 64

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._maps: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.can_map = isinstance(backend, CanMap)
        self.max_concurrency = int(getattr(backend, "max_concurrency", self.DEFAULT_MAX_CONCURRENCY))
        self.coalesce_bytes = int(getattr(backend, "coalesce_bytes", self.DEFAULT_COALESCE_BYTES))
        self.max_request_bytes = int(getattr(backend, "max_request_bytes", self.DEFAULT_MAX_REQUEST_BYTES))
        #: Ranges fetched ahead by :meth:`prefetch`, served once by :meth:`read`.
        self._prefetched: dict[tuple[str, int, int], np.ndarray] = {}

    def _map(self, path: str) -> np.ndarray:
        mm = self._maps.get(path)
        if mm is None:
            with self._lock:
                mm = self._maps.get(path)
                if mm is None:
                    mm = self.backend.map(path)  # type: ignore[attr-defined]
                    self._maps[path] = mm
        return mm

    def mapped(self, path: str, file_size: int) -> np.ndarray:
        """The whole memory map of ``path`` (a backend that can map), checked to be ``file_size`` bytes."""
        mm = self._map(path)
        if mm.nbytes != file_size:
            raise CorruptStoreError(f"{path}: file is {mm.nbytes} bytes, the manifest says {file_size}")
        return mm

    def read(self, path: str, offset: int, length: int, file_size: int) -> np.ndarray:
        """``length`` bytes at ``offset`` of ``path`` as a uint8 array."""
        if self.can_map:
            mm = self._map(path)
            if mm.nbytes != file_size:
                raise CorruptStoreError(f"{path}: segment is {mm.nbytes} bytes, the manifest says {file_size}")
            return mm[offset : offset + length]
        if self._prefetched:
            with self._lock:
                ahead = self._prefetched.pop((path, offset, length), None)
            if ahead is not None:
                return ahead
        (buf,) = self.backend.get_ranges(path, [offset], [length])
        arr = np.frombuffer(buf, dtype=np.uint8)
        if arr.nbytes != length:
            raise CorruptStoreError(f"{path}: short read at {offset} ({arr.nbytes} of {length} bytes)")
        return arr

    def read_many(self, path: str, offsets: np.ndarray, lengths: np.ndarray, file_size: int) -> list[np.ndarray]:
        """Several ranges of one file (one coalesced request batch on object stores)."""
        if self.can_map:
            return [self.read(path, int(o), int(n), file_size) for o, n in zip(offsets, lengths, strict=False)]
        buf, starts = self.gather(path, offsets, lengths)
        return [buf[int(s) : int(s) + int(n)] for s, n in zip(starts, lengths, strict=False)]

    # -- range requests (backends that cannot map) -------------------------------------------

    @staticmethod
    def coalesce(
        offsets: np.ndarray, lengths: np.ndarray, gap: int, max_request: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Merge byte ranges into requests.

        Ranges (in any order, overlapping or repeated) are merged when the next one
        starts at most ``gap`` bytes after the current request ends and the merged
        request stays within ``max_request`` bytes (a single larger range is one
        request of its own).

        Returns
        -------
        starts, lengths : numpy.ndarray
            The requests, sorted by offset.
        which : numpy.ndarray
            For every input range, the index of the request that holds it.
        """
        offsets = np.asarray(offsets, np.int64).reshape(-1)
        lengths = np.asarray(lengths, np.int64).reshape(-1)
        which = np.zeros(offsets.shape[0], np.int64)
        if offsets.shape[0] == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), which
        order = np.argsort(offsets, kind="stable")
        starts: list[int] = []
        ends: list[int] = []
        cur_start = cur_end = -1
        for i in order.tolist():
            o = int(offsets[i])
            e = o + int(lengths[i])
            if starts and o <= cur_end + gap and max(cur_end, e) - cur_start <= max_request:
                cur_end = max(cur_end, e)
                ends[-1] = cur_end
            elif starts and e <= cur_end:  # inside the current request already
                pass
            else:
                cur_start, cur_end = o, e
                starts.append(o)
                ends.append(e)
            which[i] = len(starts) - 1
        s = np.asarray(starts, np.int64)
        return s, np.asarray(ends, np.int64) - s, which

    def gather(self, path: str, offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fetch ranges of one file into one new buffer with one ``get_ranges`` call.

        Returns ``(buffer, starts)``: range ``i`` is ``buffer[starts[i]:][:lengths[i]]``;
        every start is a multiple of :attr:`ALIGN` plus the range's own offset modulo
        :attr:`ALIGN`, so ranges aligned in the file stay aligned in the buffer.
        """
        offsets = np.asarray(offsets, np.int64).reshape(-1)
        lengths = np.asarray(lengths, np.int64).reshape(-1)
        req_starts, req_lengths, which = self.coalesce(offsets, lengths, self.coalesce_bytes, self.max_request_bytes)
        if req_starts.shape[0] == 0:
            return np.zeros(0, np.uint8), np.zeros(0, np.int64)
        got = self.backend.get_ranges(path, req_starts.tolist(), req_lengths.tolist())
        # Each request lands at a position congruent to its file offset modulo ALIGN.
        align = self.ALIGN
        skew = req_starts % align
        padded = -(-(req_lengths + skew) // align) * align
        places = np.zeros(req_starts.shape[0], np.int64)
        places[1:] = np.cumsum(padded[:-1])
        buf = np.empty(int(places[-1] + padded[-1]), np.uint8)
        for k, part in enumerate(got):
            arr = np.frombuffer(part, dtype=np.uint8)
            n = int(req_lengths[k])
            if arr.nbytes != n:
                raise CorruptStoreError(f"{path}: short read at {int(req_starts[k])} ({arr.nbytes} of {n} bytes)")
            at = int(places[k] + skew[k])
            buf[at : at + n] = arr
        starts = places[which] + skew[which] + (offsets - req_starts[which])
        return buf, starts

    def gather_many(
        self, requests: list[tuple[str, np.ndarray, np.ndarray]]
    ) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
        """:meth:`gather` for many files, concurrently; yields ``(i, buffer, starts)`` as each lands.

        At most ``max_concurrency`` files are in flight.  The first failure is raised
        (the fetches still in flight finish in the background and are dropped).
        """
        if len(requests) <= 1 or self.max_concurrency <= 1:
            for i, (path, offsets, lengths) in enumerate(requests):
                buf, starts = self.gather(path, offsets, lengths)
                yield i, buf, starts
            return
        from concurrent.futures import FIRST_COMPLETED, wait

        pool = shared_pool("fetch", self.max_concurrency)
        todo = list(enumerate(requests))[::-1]
        running: dict = {}
        try:
            while todo or running:
                while todo and len(running) < self.max_concurrency:
                    i, (path, offsets, lengths) = todo.pop()
                    running[pool.submit(self.gather, path, offsets, lengths)] = i
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=running.__getitem__):
                    i = running.pop(fut)
                    buf, starts = fut.result()
                    yield i, buf, starts
        finally:
            for fut in running:
                fut.cancel()

    def prefetch(self, ranges: list[tuple[str, int, int]]) -> None:
        """Fetch ``(path, offset, length)`` ranges ahead; :meth:`read` serves each once.

        The ranges of one file go out as one coalesced ``get_ranges`` call, many files
        at once, so a caller that knows which ranges it will :meth:`read` next (every
        segment index of an array, every chunk of a selection) pays one round of
        concurrent requests instead of one request after another.  Ranges still
        waiting from an earlier prefetch are kept (not fetched again) when asked for
        again; the rest of what it left unread is dropped.  Errors are raised as
        :meth:`read` would raise them.  Does nothing for memory-mapped backends.
        """
        if self.can_map:
            return
        wanted = {(str(p), int(o), int(n)) for p, o, n in ranges}
        with self._lock:
            self._prefetched = {k: v for k, v in self._prefetched.items() if k in wanted}
            ranges = sorted(k for k in wanted if k not in self._prefetched)
        if not ranges:
            return
        by_path: dict[str, list[tuple[int, int]]] = {}
        for path, offset, length in ranges:
            by_path.setdefault(path, []).append((int(offset), int(length)))
        paths = list(by_path)
        reqs = [
            (p, np.array([o for o, _ in by_path[p]], np.int64), np.array([n for _, n in by_path[p]], np.int64))
            for p in paths
        ]
        fetched: dict[tuple[str, int, int], np.ndarray] = {}
        for i, buf, starts in self.gather_many(reqs):
            for (offset, length), at in zip(by_path[paths[i]], starts.tolist(), strict=False):
                fetched[(paths[i], offset, length)] = buf[at : at + length]
        with self._lock:
            self._prefetched.update(fetched)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop maps of files not in ``keep`` (after a compaction)."""
        keep = set(keep)
        with self._lock:
            for path in [p for p in self._maps if p not in keep]:
                del self._maps[path]
            self._prefetched.clear()

    def close(self) -> None:
        with self._lock:
            self._maps.clear()
            self._prefetched.clear()
