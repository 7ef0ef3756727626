"""Bulk cross-dataset reads: the same box of one array from many datasets.

Every dataset's array of a given name lives in the same segment family, so a bulk
read plans the touched ``(dataset, chunk)`` pieces of all datasets at once with
numpy, verifies their checksums in one jitted pass per segment, decodes the
compressed ones into one scratch buffer and scatters every piece into one
preallocated ``(N, *box)`` output with one jitted call.

Local segments are memory-mapped and read in place.  On object stores the same plan
fetches exactly the touched chunk payloads of each segment with one coalesced
``get_ranges`` call (:meth:`atlas.engine.arrays.SegmentIO.gather_many`), many
segments at once, into one aligned buffer per segment; each segment is checked,
decoded and scattered by the same code as soon as its bytes land.  The segment
indexes an array needs are fetched together beforehand (one round of requests).
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas import dtypes
from atlas.engine import kernels
from atlas.engine.arrays import FamilyEngine
from atlas.engine.chunks import fill_for
from atlas.engine.codecs import RAW
from atlas.engine.decode import decode_many
from atlas.engine.planner import plan_selection
from atlas.errors import (
    ArrayNotFoundError,
    BackendError,
    ChecksumError,
    InvalidArgumentError,
    SchemaMismatchError,
    SelectionError,
)

if TYPE_CHECKING:
    from atlas.metadata import ArrayMeta
    from atlas.store import Atlas

__all__ = ["read_across", "read_across_stacked"]


def _names(names: Any) -> list[str]:
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise InvalidArgumentError(f"dataset names must be a sequence of str, got {names!r}")
    out = list(names)
    for n in out:
        if not isinstance(n, str):
            raise InvalidArgumentError(f"dataset names must be str, got {n!r}")
    return out


def _box(meta: ArrayMeta, array: str, dataset: str, start: Any, shape: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    from atlas.dataset import _check_bounds, _int_tuple

    ndim = len(meta.shape)
    where = f"dataset {dataset!r} array {array!r}"
    start_t = (0,) * ndim if start is None else _int_tuple(start, f"{where}: start")
    if len(start_t) != ndim:
        raise SelectionError(f"{where}: start {list(start_t)} has rank {len(start_t)}, the array has rank {ndim}")
    if shape is None:
        shape_t = tuple(max(0, s - b) for s, b in zip(meta.shape, start_t))
    else:
        shape_t = _int_tuple(shape, f"{where}: shape")
        if len(shape_t) != ndim:
            raise SelectionError(f"{where}: shape {list(shape_t)} has rank {len(shape_t)}, the array has rank {ndim}")
    _check_bounds(start_t, shape_t, meta.shape, where)
    return start_t, shape_t


def read_across(
    store: Atlas, array: str, names: Sequence[str], start: Sequence[int] | None, shape: Sequence[int] | None
) -> list[np.ndarray | None]:
    """One result per dataset name: the box of ``array``, or None where the dataset
    does not define it.  Datasets whose arrays share a schema are read together."""
    names = _names(names)
    with store._lock:
        state = store._st
        metas = [state.dataset(n).arrays.get(array) for n in names]
        out: list[np.ndarray | None] = [None] * len(names)
        groups: dict[tuple, list[int]] = {}
        for i, meta in enumerate(metas):
            if meta is not None:
                groups.setdefault((meta.dtype, meta.shape, meta.chunk_shape), []).append(i)
        engine = state.engine(array) if groups else None
        for members in groups.values():
            first = metas[members[0]]
            sel_start, box = _box(first, array, names[members[0]], start, shape)
            block = _read_group(
                state.max_workers,
                engine,
                array,
                [names[i] for i in members],
                [metas[i] for i in members],
                sel_start,
                box,
            )
            for k, i in enumerate(members):
                out[i] = block[k]
        return out


def read_across_stacked(
    store: Atlas, array: str, names: Sequence[str], start: Sequence[int] | None, shape: Sequence[int] | None
) -> np.ndarray:
    """The box of ``array`` from every dataset stacked into one ``(N, *box)`` array.

    Every dataset must define the array with the same dtype and a shape that holds
    the box; the error names the first dataset that does not.
    """
    names = _names(names)
    if not names:
        raise InvalidArgumentError("read_array_across_stacked needs at least one dataset name")
    with store._lock:
        state = store._st
        metas: list[ArrayMeta] = []
        for n in names:
            meta = state.dataset(n).arrays.get(array)
            if meta is None:
                raise ArrayNotFoundError(f"dataset {n!r} has no array {array!r}")
            metas.append(meta)
        first = metas[0]
        for n, meta in zip(names, metas):
            if meta.dtype != first.dtype:
                raise SchemaMismatchError(
                    f"dataset {n!r} array {array!r} has dtype {meta.dtype}, dataset {names[0]!r} has {first.dtype}"
                )
            if (start is None or shape is None) and meta.shape != first.shape:
                raise SchemaMismatchError(
                    f"dataset {n!r} array {array!r} has shape {list(meta.shape)}, "
                    f"dataset {names[0]!r} has {list(first.shape)}; give start and shape to read a common box"
                )
        sel_start, box = _box(first, array, names[0], start, shape)
        checked = {first.shape}
        for n, meta in zip(names, metas):
            if meta.shape not in checked:  # the check depends on the shape alone
                _box(meta, array, n, sel_start, box)
                checked.add(meta.shape)
        return _read_group(state.max_workers, state.engine(array), array, names, metas, sel_start, box)


def _read_group(
    workers: int,
    engine: FamilyEngine,
    array: str,
    names: list[str],
    metas: list[ArrayMeta],
    start: tuple[int, ...],
    box: tuple[int, ...],
) -> np.ndarray:
    """Read the same box from datasets whose arrays share dtype (checked by callers)."""
    name = metas[0].dtype
    out = np.empty((len(names), *box), dtype=dtypes.storage_dtype(name))
    slow = [i for i, m in enumerate(metas) if name == "string" or m.slot in engine.pending]
    for i in slow:
        out[i] = engine.read(metas[i], start, box, f"dataset {names[i]!r} array {array!r}")
    fast = sorted(set(range(len(names))) - set(slow))
    if fast and out.size:
        by_layout: dict[tuple, list[int]] = {}
        for i in fast:
            by_layout.setdefault((metas[i].shape, metas[i].chunk_shape), []).append(i)
        for (shape, chunk_shape), members in by_layout.items():
            _fast_group(workers, engine, array, names, metas, members, shape, chunk_shape, start, box, out)
    return out.view("datetime64[ns]") if name == "timestamp_nanoseconds" else out


def _flat(arr: np.ndarray) -> np.ndarray:
    flat = arr.reshape(-1)
    return flat.view(np.uint8) if flat.dtype == np.bool_ else flat


def _fast_group(
    workers: int,
    engine: FamilyEngine,
    array: str,
    names: list[str],
    metas: list[ArrayMeta],
    members: list[int],
    shape: tuple[int, ...],
    chunk_shape: tuple[int, ...],
    start: tuple[int, ...],
    box: tuple[int, ...],
    out: np.ndarray,
) -> None:
    plan = plan_selection(shape, chunk_shape, start, box)
    rows = len(plan)
    members_arr = np.asarray(members, np.int64)
    slots = np.array([metas[i].slot for i in members], np.uint64)
    if engine.has_stored():
        _prefetch_index(engine)
    positions = engine.index().find_many(slots, plan.chunk_ids) if engine.has_stored() else None
    if positions is None:
        positions = np.full((len(members), rows), -1, np.int64)
    flat_pos = positions.reshape(-1)
    piece_member = np.repeat(members_arr, rows)
    piece_row = np.tile(np.arange(rows), len(members))
    cells = int(np.prod(box, dtype=np.int64))
    dst = _flat(out)
    sel_shape = np.asarray(box, np.int64)
    dst_bases = piece_member * cells

    missing = flat_pos < 0
    if missing.any():
        fill_values = np.array([fill_for(metas[int(m)]) for m in piece_member[missing]], dtype=out.dtype)
        kernels.fill_pieces(
            _flat(fill_values),
            plan.boxes[piece_row[missing]],
            sel_shape,
            plan.in_selection[piece_row[missing]],
            dst_bases[missing],
            dst,
        )
    present = ~missing
    if not present.any():
        return
    idx = engine.index()
    pos = flat_pos[present]
    rows_p = piece_row[present]
    members_p = piece_member[present]
    bases_p = dst_bases[present]
    segs = idx.seg[pos]
    segments = engine.segments()
    jobs = []
    for seg in np.unique(segs):
        sel = segs == seg
        ref = segments[int(seg)]
        jobs.append((sel, ref, engine.path(ref), idx.table[pos[sel]]))
    for sel, _ref, path, records, src, offsets in _sources(engine, jobs):
        pieces = (members_p[sel], rows_p[sel], bases_p[sel])
        _decode_segment(workers, array, names, plan, out, dst, sel_shape, path, records, src, offsets, *pieces)


def _prefetch_index(engine: FamilyEngine) -> None:
    """On object stores, fetch the index of every segment at once before it is built."""
    # FamilyEngine caches its tables; only a family whose index was never read needs this.
    if engine.io.can_map or engine._tables is not None or engine._index is not None:
        return
    refs = engine.family.segments
    if len(refs) > 1:
        try:
            engine.io.prefetch([(engine.path(ref), ref.index_offset, ref.index_length) for ref in refs])
        except BackendError as exc:
            if getattr(exc, "errno", None) != errno.ENOENT:
                raise
            # A missing segment is damage: engine.index() reports it as such.


def _sources(engine: FamilyEngine, jobs: list) -> Any:
    """Per segment job: ``(*job, bytes, offsets of each record's payload in those bytes)``.

    Memory-mapped segments are used in place.  Otherwise exactly the touched payloads
    are fetched, one coalesced ``get_ranges`` call per segment and many segments at
    once; each segment is decoded as soon as its bytes land.
    """
    if engine.io.can_map:
        for sel, ref, path, records in jobs:
            mm = engine.io.read(path, 0, ref.size, ref.size)
            yield sel, ref, path, records, mm, records["offset"].astype(np.int64)
        return
    requests = [
        (path, records["offset"].astype(np.int64), records["nbytes"].astype(np.int64)) for _, _, path, records in jobs
    ]
    for k, buf, starts in engine.io.gather_many(requests):
        yield (*jobs[k], buf, starts)


def _decode_segment(
    workers: int,
    array: str,
    names: list[str],
    plan: Any,
    out: np.ndarray,
    dst: np.ndarray,
    sel_shape: np.ndarray,
    path: str,
    records: np.ndarray,
    src: np.ndarray,
    offsets: np.ndarray,
    members: np.ndarray,
    rows: np.ndarray,
    bases: np.ndarray,
) -> None:
    """Verify, decode and scatter the records of one segment whose payloads are in ``src``."""
    itemsize = out.dtype.itemsize
    nbytes = records["nbytes"].astype(np.int64)
    digests = np.empty(offsets.shape[0], np.uint64)
    kernels.xxh64_many(src, offsets, nbytes, digests)
    bad = np.nonzero(digests != records["checksum"])[0]
    if bad.size:
        culprit = names[int(members[bad[0]])]
        raise ChecksumError(f"{path} (dataset {culprit!r} array {array!r}): chunk checksum mismatch")
    raw = records["codec"] == RAW
    src_offsets = np.empty(offsets.shape[0], np.int64)
    # Raw chunks are scattered straight from the map (or the fetched buffer).
    src_offsets[raw] = offsets[raw] // itemsize
    comp = np.nonzero(~raw)[0]
    scratch = np.empty(0, out.dtype)
    if comp.size:
        raw_nbytes = records["raw_nbytes"][comp].astype(np.int64)
        # Each decoded chunk starts at a multiple of the item size in the scratch.
        padded = -(-raw_nbytes // itemsize) * itemsize
        starts = np.zeros(comp.size, np.int64)
        starts[1:] = np.cumsum(padded[:-1])
        scratch_u8 = np.empty(int(starts[-1] + padded[-1]), np.uint8)
        decode_many(
            src, offsets[comp], nbytes[comp], records["codec"][comp], scratch_u8, starts, raw_nbytes, path, workers
        )
        scratch = scratch_u8[: scratch_u8.nbytes - scratch_u8.nbytes % itemsize].view(out.dtype)
        src_offsets[comp] = starts // itemsize
    if raw.any():
        typed_src = src[: src.nbytes - src.nbytes % itemsize].view(out.dtype)
        _scatter(typed_src, src_offsets[raw], plan, rows[raw], sel_shape, bases[raw], dst)
    if comp.size:
        _scatter(scratch, src_offsets[comp], plan, rows[comp], sel_shape, bases[comp], dst)


def _scatter(src, src_offsets, plan, rows, sel_shape, bases, dst) -> None:
    flat_src = src.view(np.uint8) if src.dtype == np.bool_ else src
    kernels.scatter_pieces(
        flat_src,
        src_offsets,
        plan.chunk_shapes[rows],
        plan.in_chunk[rows],
        plan.boxes[rows],
        sel_shape,
        plan.in_selection[rows],
        bases,
        dst,
    )
