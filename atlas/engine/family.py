"""One array name's family: merged chunk index, reads, pending writes, stats.

Every dataset that defines an array of a given name stores its chunks in the
segments of that name's family, tagged with the array's *slot*.  The family index
merges the records of all live segments so that, for each ``(slot, chunk)``, the
newest record wins; lookups are binary searches over sorted columns.
"""

from __future__ import annotations

import errno
import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from atlas import dtypes
from atlas.engine.chunks import (
    ChunkStats,
    bits_value,
    chunk_stats,
    decode_chunk,
    fill_for,
    tracks_written,
)
from atlas.engine.family_index import FamilyIndex
from atlas.engine.planner import ChunkPlan, chunk_extent, chunk_grid, one_chunk, plan_selection
from atlas.engine.segment import parse_index
from atlas.engine.segment_io import SegmentIO
from atlas.engine.staged import PendingChunk, StackedChunks, build_segment, stack_staged, staged_nbytes, staged_stats
from atlas.errors import AllocationError, BackendError, CorruptStoreError
from atlas.metadata import ArrayFamily, ArrayMeta, SegmentRef, Stats

__all__ = ["FamilyEngine", "allocate"]


@dataclass
class FamilyEngine:
    """Reads and pending writes of one array name.

    Parameters
    ----------
    name : str
        The array name.
    family : ArrayFamily
        Its directory and live segments (as of the handle's snapshot).
    io : SegmentIO
        Shared byte reader.
    """

    name: str
    family: ArrayFamily
    io: SegmentIO
    pending: dict[int, dict[int, PendingChunk]] = field(default_factory=dict)
    #: Segments written early to bound memory, not yet referenced by any manifest.
    spilled: list[tuple[SegmentRef, np.ndarray]] = field(default_factory=list)
    #: Bytes held by ``pending`` (kept up to date by writes, spills and discards).
    pending_nbytes: int = 0
    #: Slots with records in ``spilled``.
    spilled_slots: set[int] = field(default_factory=set)
    _tables: list[np.ndarray] | None = None
    _index: FamilyIndex | None = None
    #: The index of the first ``n`` committed segments, no spilled one: ``(index, n)``.
    _committed: tuple[FamilyIndex, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Parsed index of every committed segment read so far (segments are immutable).
    _parsed: dict[SegmentRef, np.ndarray] = field(default_factory=dict)

    # -- committed state ------------------------------------------------------------------

    def set_family(self, family: ArrayFamily) -> None:
        """Adopt a newer snapshot of the family.

        The merged index is kept when the segment list is unchanged; otherwise it
        is rebuilt on next use, reading only the indexes of segments not parsed
        yet, so a commit costs one index read per new segment however long the
        family's history.
        """
        with self._lock:
            old = self.family.segments
            if family.segments != old:
                self._tables = None
                self._index = None
                base = self._committed
                if base is not None and family.segments[: base[1]] != old[: base[1]]:
                    self._committed = None  # a compaction rewrote the list: rebuild whole
            grown = family.segments[: len(old)] == old  # (identical refs compare by identity first)
            self.family = family
            if not grown:
                listed = set(family.segments)
                for ref in [r for r in self._parsed if r not in listed]:
                    del self._parsed[ref]

    def path(self, ref: SegmentRef) -> str:
        return f"{self.family.dir}/{ref.file}"

    def segments(self) -> list[SegmentRef]:
        """Committed segments, then spilled ones (newest last)."""
        return self.family.segments + [ref for ref, _ in self.spilled]

    def committed_tables(self) -> list[np.ndarray]:
        """The record tables of the committed segments, in order (superseded records included)."""
        tables = self._tables
        if tables is None:
            tables = [self._table(ref) for ref in self.family.segments]
            self._tables = tables
        return tables

    def _table(self, ref: SegmentRef) -> np.ndarray:
        """The parsed index of committed segment ``ref`` (read once)."""
        table = self._parsed.get(ref)
        if table is not None:
            return table
        path = self.path(ref)
        try:
            raw = self.io.read(path, ref.index_offset, ref.index_length, ref.size)
        except BackendError as exc:
            if getattr(exc, "errno", None) != errno.ENOENT:
                raise  # a transient I/O failure is not damage: keep its errno
            raise CorruptStoreError(
                f"segment {path} of array {self.name!r} is missing: {exc} (if another handle compacted "
                "the store longer than its grace period ago, refresh() this handle)"
            ) from None
        table = parse_index(raw, ref.index_checksum, ref.index_offset, path)
        if table.shape[0] != ref.records:
            raise CorruptStoreError(f"{path}: index holds {table.shape[0]} records, expected {ref.records}")
        self._parsed[ref] = table
        return table

    def index(self) -> FamilyIndex:
        """The merged index, built on first use (one range read per segment)."""
        idx = self._index
        if idx is None:
            with self._lock:
                if self._index is None:
                    spilled = [table for _, table in self.spilled]
                    base = self._committed
                    if base is not None and base[1] <= len(self.family.segments):
                        # Commits append segments: merge only the new ones into the index
                        # of the earlier ones, so a commit costs its own records.
                        tables = [self._table(ref) for ref in self.family.segments[base[1] :]]
                        new = tables + spilled
                        self._index = FamilyIndex(new, base[0], base[1]) if new else base[0]
                    else:
                        self._index = FamilyIndex(self.committed_tables() + spilled)
                    if not spilled:
                        self._committed = (self._index, len(self.family.segments))
                idx = self._index
        return idx

    def has_stored(self) -> bool:
        """True when any segment (committed or spilled) exists for this name."""
        return bool(self.family.segments or self.spilled)

    def prefetch_index(self) -> None:
        """On object stores, fetch the index of every unread segment at once (one round).

        Does nothing on local disk, once the merged index exists, or when at most one
        segment index is still unread (:meth:`index` reads it anyway).
        """
        if self.io.can_map or self._tables is not None or self._index is not None:
            return
        refs = [ref for ref in self.family.segments if ref not in self._parsed]  # parsed ones are kept
        if len(refs) > 1:
            try:
                self.io.prefetch([(self.path(ref), ref.index_offset, ref.index_length) for ref in refs])
            except BackendError as exc:
                if getattr(exc, "errno", None) != errno.ENOENT:
                    raise
                # A missing segment is damage: index() reports it as such.

    def stored_chunk(self, pos: int, meta: ArrayMeta, cells: int, where: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Decode the stored chunk at index position ``pos``."""
        idx = self.index()
        record = idx.table[pos]
        ref = self.segments()[int(idx.seg[pos])]
        path = self.path(ref)
        stored = self.io.read(path, int(record["offset"]), int(record["nbytes"]), ref.size)
        return decode_chunk(stored, record, meta, cells, f"{path} ({where})")

    # -- spilling ---------------------------------------------------------------------------

    def spill(
        self, metas: dict[int, ArrayMeta], codec: str, generation: int, put: Callable, workers: int = 1
    ) -> None:
        """Write the staged chunks of ``metas``' slots to a new, uncommitted segment.

        The segment is invisible to every other handle until a commit references
        it; this handle reads it like a committed one (newest wins).
        """
        metas = {s: m for s, m in metas.items() if self.pending.get(s)}
        if not metas:
            return
        token = secrets.token_bytes(16)
        writer = build_segment(self, metas, codec, generation, token, workers, self.stack_staged(metas, codec))
        parts, ref = writer.finish_ref()
        put(f"{self.family.dir}/{ref.file}", parts)
        self.spilled.append((ref, writer.table))
        self.spilled_slots.update(metas)
        for slot in metas:
            self.pending.pop(slot, None)
        self.pending_nbytes = staged_nbytes(self.pending)
        self._index = None

    def restore_pending(self, slot: int, staged: dict[int, PendingChunk] | None) -> None:
        """Put back ``slot``'s staged chunks as a caller saved them (None: nothing staged), e.g. to undo a call."""
        if staged is None:
            self.pending.pop(slot, None)
        else:
            self.pending[slot] = staged
        self.pending_nbytes = staged_nbytes(self.pending)

    def unspill(self, metas: dict[int, ArrayMeta]) -> list[str]:
        """Load every spilled chunk of ``metas``' slots back into ``pending``.

        Used when a rebase renumbers slots (the spilled records carry the old
        numbers).  Returns the paths of the dropped spilled segments.
        """
        if not self.spilled:
            return []
        idx = self.index()
        first_spilled = len(self.family.segments)
        for slot, meta in metas.items():
            lo, hi = idx.slot_range(slot)
            staged = self.pending.setdefault(slot, {})
            for pos in range(lo, hi):
                cid = int(idx.chunks[pos])
                if idx.seg[pos] < first_spilled or cid in staged:
                    continue
                cells = int(np.prod(chunk_extent(cid, meta.shape, meta.chunk_shape), dtype=np.int64))
                values, written = self.stored_chunk(pos, meta, cells, f"array {self.name!r}")
                staged[cid] = PendingChunk(values.copy(), None if written is None else written.copy())
        dropped = [self.path(ref) for ref, _ in self.spilled]
        self.spilled = []
        self.spilled_slots = set()
        self._index = None
        self.pending_nbytes = staged_nbytes(self.pending)
        return dropped

    # -- reads ------------------------------------------------------------------------------

    def read(self, meta: ArrayMeta, start: tuple[int, ...], shape: tuple[int, ...], where: str) -> np.ndarray:
        """Read a selection in storage form (timestamps as int64)."""
        if meta.shape and all(shape) and one_chunk(meta.shape, meta.chunk_shape):
            return self._read_single_chunk(meta, start, shape, where)
        out = allocate(shape, dtypes.storage_dtype(meta.dtype), f"the read of {where}")
        plan = plan_selection(meta.shape, meta.chunk_shape, start, shape)
        if len(plan) == 0:
            return out
        pending = self.pending.get(meta.slot, {})
        positions = self.index().find(meta.slot, plan.chunk_ids) if self.has_stored() else np.full(len(plan), -1)
        fill = fill_for(meta)
        for i in range(len(plan)):
            cid = int(plan.chunk_ids[i])
            cells = int(np.prod(plan.chunk_shapes[i]))
            chunk = pending.get(cid)
            if chunk is not None:
                values = chunk.values
            elif positions[i] >= 0:
                values, _ = self.stored_chunk(int(positions[i]), meta, cells, where)
            else:
                _fill_into(out, plan, i, fill)
                continue
            _copy_into(out, values, plan, i)
        return out

    def _read_single_chunk(
        self, meta: ArrayMeta, start: tuple[int, ...], shape: tuple[int, ...], where: str
    ) -> np.ndarray:
        """:meth:`read` of a non-empty box of an array held by one chunk (id 0).

        Small arrays are the common case and a read of them is a few microseconds
        of work: no chunk plan, no kernel call, and the decoded chunk is kept (up to
        :data:`_DECODED_CACHE_BYTES` per family), so repeated reads skip the decode.
        """
        array_shape = meta.shape
        staged = self.pending.get(meta.slot)
        chunk = staged.get(0) if staged else None
        if chunk is not None:
            values = chunk.values
        elif self.has_stored():
            idx = self.index()
            key = (meta.slot, 0)
            values = idx.decoded.get(key)
            if values is None:
                pos = int(idx.find(meta.slot, _CHUNK_ZERO)[0])
                if pos < 0:
                    return self._filled(meta, shape, where)
                cells = math.prod(array_shape)
                values, _ = self.stored_chunk(pos, meta, cells, where)
                if values.nbytes <= _DECODED_MAX_CHUNK:
                    values = values.copy()  # never keep a view into a mapped file
                    if idx.decoded_nbytes + values.nbytes > _DECODED_CACHE_BYTES:
                        idx.decoded.clear()
                        idx.decoded_nbytes = 0
                    idx.decoded[key] = values
                    idx.decoded_nbytes += values.nbytes
        else:
            return self._filled(meta, shape, where)
        box = values.reshape(array_shape)[tuple(slice(b, b + n) for b, n in zip(start, shape))]
        return box.copy()

    def _filled(self, meta: ArrayMeta, shape: tuple[int, ...], where: str) -> np.ndarray:
        out = allocate(shape, dtypes.storage_dtype(meta.dtype), f"the read of {where}")
        out[...] = fill_for(meta)
        return out

    # -- writes -----------------------------------------------------------------------------

    def write(self, meta: ArrayMeta, start: tuple[int, ...], data: np.ndarray, where: str) -> None:
        """Stage ``data`` (storage form, already checked) at ``start``.

        A chunk partly covered by the write is loaded once (read-modify-write per
        chunk, not per call); later writes to it update the staged copy.
        """
        array_shape = meta.shape
        if array_shape and data.shape == array_shape and all(array_shape) and one_chunk(array_shape, meta.chunk_shape):
            self._write_whole(meta, data)
            return
        plan = plan_selection(meta.shape, meta.chunk_shape, start, data.shape)
        if len(plan) == 0:
            return
        staged = self.pending.setdefault(meta.slot, {})
        track = tracks_written(meta)
        missing = [i for i in range(len(plan)) if int(plan.chunk_ids[i]) not in staged and not plan.full(i)]
        positions = {}
        if missing and self.has_stored():
            found = self.index().find(meta.slot, plan.chunk_ids[missing])
            positions = {m: int(p) for m, p in zip(missing, found, strict=False)}
        # Load every chunk first: a damaged stored chunk must fail the call before
        # any staged chunk has changed.
        chunks: list[PendingChunk] = []
        for i in range(len(plan)):
            chunk = staged.get(int(plan.chunk_ids[i]))
            if chunk is None:
                cells = int(np.prod(plan.chunk_shapes[i]))
                chunk = self._new_chunk(meta, plan, i, cells, positions.get(i, -1), track, where)
                self.pending_nbytes += chunk.values.nbytes + (0 if chunk.written is None else chunk.written.nbytes)
            chunks.append(chunk)
        for i, chunk in enumerate(chunks):
            chunk.stats = None
            _copy_from(chunk.values, data, plan, i)
            if chunk.written is not None:
                written = chunk.written.reshape(tuple(plan.chunk_shapes[i]))
                written[_slices(plan.in_chunk[i], plan.boxes[i])] = 1
                if chunk.written.all():
                    chunk.written = None
            staged[int(plan.chunk_ids[i])] = chunk

    def _write_whole(self, meta: ArrayMeta, data: np.ndarray) -> None:
        """Stage ``data`` as the one chunk of an array it covers whole (no read-modify-write)."""
        staged = self.pending.setdefault(meta.slot, {})
        old = staged.get(0)
        if old is not None:
            self.pending_nbytes -= old.values.nbytes + (0 if old.written is None else old.written.nbytes)
        values = data.reshape(-1).copy()  # the caller may reuse its buffer
        staged[0] = PendingChunk(values, None)
        self.pending_nbytes += values.nbytes

    def _new_chunk(
        self, meta: ArrayMeta, plan: ChunkPlan, i: int, cells: int, pos: int, track: bool, where: str
    ) -> PendingChunk:
        dt = dtypes.storage_dtype(meta.dtype)
        if plan.full(i):
            return PendingChunk(np.empty(cells, dtype=dt), None)
        if pos >= 0:
            values, written = self.stored_chunk(pos, meta, cells, where)
            return PendingChunk(values.copy(), None if written is None else written.copy())
        values = np.empty(cells, dtype=dt)
        values[...] = fill_for(meta)
        return PendingChunk(values, np.zeros(cells, np.uint8) if track else None)

    def discard(self, slot: int) -> None:
        """Forget staged chunks of ``slot`` (array deleted or changes discarded)."""
        if self.pending.pop(slot, None) is not None:
            self.pending_nbytes = staged_nbytes(self.pending)

    def reset(self) -> None:
        """Forget every staged chunk and spilled segment (after a commit or a discard)."""
        self.pending.clear()
        self.pending_nbytes = 0
        if self.spilled:
            # A commit that references a spilled segment need not read its index
            # back; set_family drops the tables of segments the new snapshot lacks.
            for ref, table in self.spilled:
                self._parsed[ref] = table
            self.spilled = []
            self.spilled_slots = set()
            self._index = None

    # -- stats --------------------------------------------------------------------------------

    def stack_staged(self, metas: dict[int, ArrayMeta], codec: str) -> list[StackedChunks]:
        """:func:`~atlas.engine.staged.stack_staged` of this family's staged chunks."""
        return stack_staged(metas, self.pending, codec)

    def stats(self, meta: ArrayMeta, where: str, stored: bool = True) -> Stats:
        """Fold chunk stats of ``meta``'s slot: committed records overlaid by staged chunks.

        ``stored=False`` says the slot has no record in any segment (a slot taken
        since the snapshot, nothing spilled): the family's index, whose first build
        reads every segment's index, is then not needed.
        """
        pending = self.pending.get(meta.slot, {})
        if len(pending) == 1 and 0 in pending and one_chunk(meta.shape, meta.chunk_shape):
            # One staged chunk is the whole array: nothing stored can show through.
            own = staged_stats(pending[0], meta)
            return Stats(own.cells, own.null_count, own.minimum, own.maximum)
        grid = chunk_grid(meta.shape, meta.chunk_shape)
        total = int(np.prod(meta.shape, dtype=np.int64)) if meta.shape else 1
        parts: list[ChunkStats] = [staged_stats(c, meta) for c in pending.values()]
        covered = sum(p.cells for p in parts)
        if stored and self.has_stored():
            idx = self.index()
            lo, hi = idx.slot_range(meta.slot)
            table = idx.table[lo:hi]
            if pending:
                keep = ~np.isin(table["chunk"], np.fromiter(pending, np.uint64, len(pending)))
                positions = np.arange(lo, hi)[keep]
                table = table[keep]
            else:
                positions = np.arange(lo, hi)
            cells = _chunk_cells(table["chunk"], meta.shape, meta.chunk_shape, grid)
            covered += int(cells.sum())
            if meta.dtype == "string":
                for pos, n in zip(positions, cells, strict=False):
                    values, written = self.stored_chunk(int(pos), meta, int(n), where)
                    parts.append(chunk_stats(values, written, meta))
            else:
                parts.append(_fold_records(table, cells, meta.dtype))
        return _combine(parts, total, total - covered)


def allocate(shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    """``np.empty(shape, dtype)``, or :class:`AllocationError` naming ``what`` and the size."""
    try:
        return np.empty(shape, dtype=dtype)
    except (MemoryError, ValueError):
        cells = 1
        for n in shape:
            cells *= int(n)
        nbytes = cells * np.dtype(dtype).itemsize
        raise AllocationError(
            f"{what}: {cells} cells of shape {tuple(int(n) for n in shape)} ({nbytes} bytes) cannot be allocated; "
            "read a smaller selection"
        ) from None


def _chunk_cells(
    chunk_ids: np.ndarray, shape: tuple[int, ...], chunk_shape: tuple[int, ...], grid: tuple[int, ...]
) -> np.ndarray:
    if not shape:
        return np.ones(chunk_ids.shape[0], np.int64)
    coords = np.unravel_index(chunk_ids.astype(np.int64), grid)
    cells = np.ones(chunk_ids.shape[0], np.int64)
    for axis, c in enumerate(coords):
        cells *= np.minimum(chunk_shape[axis], shape[axis] - c * chunk_shape[axis])
    return cells


def _fold_records(table: np.ndarray, cells: np.ndarray, name: str) -> ChunkStats:
    nulls = table["null_count"].astype(np.int64)
    valid = cells - nulls > 0
    if not valid.any():
        return ChunkStats(int(cells.sum()), int(nulls.sum()))
    mins = bits_value(table["min"][valid], name)
    maxs = bits_value(table["max"][valid], name)
    lo, hi = mins.min(), maxs.max()
    if name == "bool":
        lo, hi = bool(lo), bool(hi)
    elif dtypes.is_float(name):
        lo, hi = float(lo), float(hi)
    else:
        lo, hi = int(lo), int(hi)
    return ChunkStats(int(cells.sum()), int(nulls.sum()), lo, hi)


def _combine(parts: list[ChunkStats], total: int, unwritten: int) -> Stats:
    nulls = unwritten + sum(p.null_count for p in parts)
    mins = [p.minimum for p in parts if p.minimum is not None]
    maxs = [p.maximum for p in parts if p.maximum is not None]
    return Stats(total, nulls, min(mins) if mins else None, max(maxs) if maxs else None)


# -- copies between chunks and selections ----------------------------------------------------


def _copy_into(out: np.ndarray, values: np.ndarray, plan: ChunkPlan, i: int) -> None:
    """Copy plan row ``i`` from a flat chunk into the selection ``out``."""
    # numpy slicing, not a kernel: as fast for one box, and nothing to compile per dtype.
    chunk = values.reshape(tuple(plan.chunk_shapes[i]))
    out[_slices(plan.in_selection[i], plan.boxes[i])] = chunk[_slices(plan.in_chunk[i], plan.boxes[i])]


def _copy_from(chunk_values: np.ndarray, data: np.ndarray, plan: ChunkPlan, i: int) -> None:
    """Copy plan row ``i`` from the written ``data`` into a flat chunk."""
    chunk = chunk_values.reshape(tuple(plan.chunk_shapes[i]))
    chunk[_slices(plan.in_chunk[i], plan.boxes[i])] = data[_slices(plan.in_selection[i], plan.boxes[i])]


def _fill_into(out: np.ndarray, plan: ChunkPlan, i: int, fill: object) -> None:
    out[_slices(plan.in_selection[i], plan.boxes[i])] = fill


def _slices(start: np.ndarray, box: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(int(s), int(s) + int(b)) for s, b in zip(start, box, strict=False))


#: The chunk id of an array held by one chunk, as :meth:`FamilyIndex.find` takes it.
_CHUNK_ZERO = np.zeros(1, np.int64)
#: Decoded chunks up to this size are kept for repeated small reads ...
_DECODED_MAX_CHUNK = 256 << 10
#: ... up to this many bytes per family (the cache is dropped whole when full).
_DECODED_CACHE_BYTES = 2 << 20

