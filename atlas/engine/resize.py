"""Changing an array's shape: which chunks move, and restaging them under the new layout.

A chunk is stored flat with its own extent (edge chunks are cut at the array
bounds) and keyed by its linear id in C order over the chunk grid.  Growing an
array along its first axis keeps every id, so only the edge chunks whose extent
changes are read and staged again (:func:`grow_in_place`): the cost of a grow is
that of the touched chunks, not of the array.  Any other change of the chunk grid,
and every shrink, moves the array to a new slot (:func:`relocate`): the stored
records of the old slot would otherwise keep cells beyond the new extent alive in
reads and stats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlas.engine.chunks import fill_for, tracks_written
from atlas.engine.family import FamilyEngine
from atlas.engine.planner import chunk_extent, chunk_grid, plan_selection
from atlas.engine.staged import PendingChunk
from atlas.metadata import ArrayMeta

__all__ = ["grows_in_place", "grow_in_place", "relocate"]


@dataclass
class _Piece:
    """The cells of one old chunk, with its origin in array coordinates."""

    origin: tuple[int, ...]
    values: np.ndarray
    written: np.ndarray | None


def grows_in_place(old: ArrayMeta, shape: tuple[int, ...]) -> bool:
    """True when ``shape`` keeps every stored chunk id of ``old`` (no axis shrinks,
    and the chunk grid changes along the first axis at most)."""
    if any(n < o for n, o in zip(shape, old.shape, strict=False)):
        return False
    if any(o == 0 for o in old.shape) and any(n != o for n, o in zip(shape[1:], old.shape[1:], strict=False)):
        return False  # no chunk exists yet; moving to a new slot costs nothing
    return chunk_grid(old.shape, old.chunk_shape)[1:] == chunk_grid(shape, old.chunk_shape)[1:]


def _take(engine: FamilyEngine, meta: ArrayMeta, chunk_ids: list[int], where: str) -> list[_Piece]:
    """Remove chunks ``chunk_ids`` of ``meta``'s slot from the staged ones (loading stored
    ones), as pieces; never-written chunks give none."""
    staged = engine.pending.get(meta.slot, {})
    stored = engine.has_stored()
    positions = engine.index().find(meta.slot, np.asarray(chunk_ids, np.int64)) if stored and chunk_ids else None
    grid = chunk_grid(meta.shape, meta.chunk_shape)
    pieces = []
    for k, cid in enumerate(chunk_ids):
        extent = chunk_extent(cid, meta.shape, meta.chunk_shape)
        chunk = staged.get(cid)
        if chunk is not None:
            values, written = chunk.values, chunk.written
        elif positions is not None and positions[k] >= 0:
            values, written = engine.stored_chunk(int(positions[k]), meta, int(np.prod(extent)), where)
        else:
            continue
        coords = np.unravel_index(cid, grid)
        origin = tuple(int(c) * s for c, s in zip(coords, meta.chunk_shape, strict=False))
        pieces.append(_Piece(origin, values.reshape(extent), None if written is None else written.reshape(extent)))
    return pieces


def _stage(engine: FamilyEngine, meta: ArrayMeta, piece: _Piece) -> None:
    """Stage the part of ``piece`` inside ``meta.shape`` into fresh chunks of ``meta``."""
    hi = [min(o + e, s) for o, e, s in zip(piece.origin, piece.values.shape, meta.shape, strict=False)]
    box = tuple(h - o for h, o in zip(hi, piece.origin, strict=False))
    if any(b <= 0 for b in box):
        return
    plan = plan_selection(meta.shape, meta.chunk_shape, piece.origin, box)
    staged = engine.pending.setdefault(meta.slot, {})
    track = tracks_written(meta)
    for i in range(len(plan)):
        cid = int(plan.chunk_ids[i])
        shape = tuple(int(n) for n in plan.chunk_shapes[i])
        cells = int(np.prod(shape))
        chunk = staged.get(cid)
        if chunk is None:
            values = np.empty(cells, dtype=piece.values.dtype)
            values[...] = fill_for(meta)
            chunk = PendingChunk(values, np.zeros(cells, np.uint8) if track else None)
            staged[cid] = chunk
            engine.pending_nbytes += values.nbytes + (0 if chunk.written is None else chunk.written.nbytes)
        dst = tuple(slice(int(a), int(a) + int(b)) for a, b in zip(plan.in_chunk[i], plan.boxes[i], strict=False))
        src = tuple(slice(int(a), int(a) + int(b)) for a, b in zip(plan.in_selection[i], plan.boxes[i], strict=False))
        chunk.values.reshape(shape)[dst] = piece.values[src]
        if chunk.written is not None:
            chunk.written.reshape(shape)[dst] = 1 if piece.written is None else piece.written[src]
            if chunk.written.all():
                chunk.written = None
        chunk.stats = None


def grow_in_place(engine: FamilyEngine, old: ArrayMeta, new: ArrayMeta, where: str) -> None:
    """Restage the edge chunks of ``old`` whose extent differs under ``new`` (same slot, same ids)."""
    if any(s == 0 for s in old.shape):
        return
    ids: set[int] = set()
    for axis, (o, n, c) in enumerate(zip(old.shape, new.shape, old.chunk_shape, strict=False)):
        if n == o or o % c == 0:
            continue  # the last chunk along this axis was whole and stays whole
        start = tuple(((o - 1) // c) * c if a == axis else 0 for a in range(len(old.shape)))
        box = tuple(s - b for s, b in zip(old.shape, start, strict=False))
        ids.update(int(i) for i in plan_selection(old.shape, old.chunk_shape, start, box).chunk_ids)
    if not ids:
        return
    pieces = _take(engine, old, sorted(ids), where)
    staged = engine.pending.get(old.slot, {})
    for cid in ids:
        chunk = staged.pop(cid, None)
        if chunk is not None:
            engine.pending_nbytes -= chunk.values.nbytes + (0 if chunk.written is None else chunk.written.nbytes)
    for piece in pieces:
        _stage(engine, new, piece)


def relocate(engine: FamilyEngine, old: ArrayMeta, new: ArrayMeta, where: str) -> None:
    """Copy every written cell of ``old`` that lies inside ``new.shape`` to ``new``'s (fresh) slot,
    then forget ``old``'s staged chunks."""
    ids = set(engine.pending.get(old.slot, {}))
    if engine.has_stored():
        idx = engine.index()
        lo, hi = idx.slot_range(old.slot)
        ids.update(int(c) for c in idx.chunks[lo:hi])
    for piece in _take(engine, old, sorted(ids), where):
        _stage(engine, new, piece)
    engine.discard(old.slot)
