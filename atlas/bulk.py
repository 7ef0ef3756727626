"""Bulk cross-dataset reads: the same box of one array from many datasets.

Every dataset's array of a given name lives in the same segment family, so a bulk
read plans the touched ``(dataset, chunk)`` pieces of all datasets at once with
numpy, verifies their checksums in one jitted pass per segment, decodes the
compressed ones into one scratch buffer and scatters every piece into one
preallocated ``(N, *box)`` output with one jitted call.

Local segments are memory-mapped and read in place.  On object stores the same plan
fetches exactly the touched chunk payloads of each segment with one coalesced
``get_ranges`` call (:meth:`atlas.engine.segment_io.SegmentIO.gather_many`), many
segments at once, into one aligned buffer per segment; each segment is checked,
decoded and scattered by the same code as soon as its bytes land.  The segment
indexes an array needs are fetched together beforehand (one round of requests).
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas import dtypes
from atlas.engine import decode, kernels, native
from atlas.engine.arrays import FamilyEngine
from atlas.engine.chunks import fill_for
from atlas.engine.codecs import LZ4, RAW, ZSTD
from atlas.engine.decode import decode_many, read_pieces_many
from atlas.engine.planner import plan_selection
from atlas.engine.segment import FLAG_WRITTEN_MASK
from atlas.errors import (
    ArrayNotFoundError,
    BackendError,
    ChecksumError,
    CorruptStoreError,
    InvalidArgumentError,
    SchemaMismatchError,
    SelectionError,
)

if TYPE_CHECKING:
    from atlas.metadata import ArrayMeta
    from atlas.store import Atlas

__all__ = ["read_across", "read_across_stacked"]


def _names(names: Any) -> list[str]:
    if isinstance(names, (str, bytes, Mapping)) or not hasattr(names, "__iter__"):
        raise InvalidArgumentError(f"dataset names must be a sequence of str, got {names!r:.200}")
    try:
        out = list(names)
    except TypeError:  # a 0-d numpy array has __iter__ but cannot be iterated
        raise InvalidArgumentError(f"dataset names must be a sequence of str, got {names!r:.200}") from None
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
        datasets = state.datasets
        try:
            metas: list[ArrayMeta] = [datasets[n].arrays[array] for n in names]
        except KeyError:
            metas = []
            for n in names:  # the slow way, for the error naming the first culprit
                meta = state.dataset(n).arrays.get(array)
                if meta is None:
                    raise ArrayNotFoundError(f"dataset {n!r} has no array {array!r}") from None
                metas.append(meta)
        first = metas[0]
        # Sets first: thousands of datasets usually share one dtype and one shape.
        if len({m.dtype for m in metas}) > 1:
            for n, meta in zip(names, metas):
                if meta.dtype != first.dtype:
                    raise SchemaMismatchError(
                        f"dataset {n!r} array {array!r} has dtype {meta.dtype}, dataset {names[0]!r} has {first.dtype}"
                    )
        shapes = {m.shape for m in metas}
        if (start is None or shape is None) and len(shapes) > 1:
            for n, meta in zip(names, metas):
                if meta.shape != first.shape:
                    raise SchemaMismatchError(
                        f"dataset {n!r} array {array!r} has shape {list(meta.shape)}, "
                        f"dataset {names[0]!r} has {list(first.shape)}; give start and shape to read a common box"
                    )
        sel_start, box = _box(first, array, names[0], start, shape)
        if len(shapes) > 1:
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
    pending = engine.pending
    if name == "string":
        slow = list(range(len(metas)))
    elif pending:
        slow = [i for i, m in enumerate(metas) if m.slot in pending]
    else:
        slow = []
    for i in slow:
        out[i] = engine.read(metas[i], start, box, f"dataset {names[i]!r} array {array!r}")
    if len(slow) < len(names) and out.size:
        layouts = {(m.shape, m.chunk_shape) for m in metas}
        if len(layouts) == 1 and not slow:
            ((shape, chunk_shape),) = layouts
            _fast_group(workers, engine, array, names, metas, None, shape, chunk_shape, start, box, out)
        else:
            skip = set(slow)
            by_layout: dict[tuple, list[int]] = {}
            for i, m in enumerate(metas):
                if i not in skip:
                    by_layout.setdefault((m.shape, m.chunk_shape), []).append(i)
            for (shape, chunk_shape), members in by_layout.items():
                _fast_group(workers, engine, array, names, metas, members, shape, chunk_shape, start, box, out)
    return out.view("datetime64[ns]") if name == "timestamp_nanoseconds" else out


def _flat(arr: np.ndarray) -> np.ndarray:
    flat = arr.reshape(-1)
    return flat.view(np.uint8) if flat.dtype == np.bool_ else flat


#: A chunk is decoded in part (only the blosc2 blocks holding its touched item range)
#: when that range is less than this fraction of the chunk.  Measured with 16 KiB
#: blocks: an item range costs about its share of the blocks, so anything that skips
#: a block pays; near the whole chunk, the whole-chunk decode is slightly faster.
PARTIAL_MAX_FRACTION = 0.75


class _Rows:
    """Per plan row: cells of the chunk and the item range its box spans (C order)."""

    __slots__ = ("cells", "count", "first")

    def __init__(self, plan: Any) -> None:
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


def _fast_group(
    workers: int,
    engine: FamilyEngine,
    array: str,
    names: list[str],
    metas: list[ArrayMeta],
    members: list[int] | None,
    shape: tuple[int, ...],
    chunk_shape: tuple[int, ...],
    start: tuple[int, ...],
    box: tuple[int, ...],
    out: np.ndarray,
) -> None:
    """Read the datasets ``members`` (None: all of them) that share one chunk layout."""
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
        _prefetch_index(engine)
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
        _fill_pieces(
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
        pos = flat_pos[present]
        rows_p = piece_row[present]
        members_p = piece_member[present]
        bases_p = dst_bases[present]
    else:
        pos, rows_p, members_p, bases_p = flat_pos, piece_row, piece_member, dst_bases
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
        jobs.append((sel, ref, engine.path(ref), idx.table[pos[sel]]))
    info = _Rows(plan)
    for sel, _ref, path, records, src, offsets in _sources(engine, jobs):
        pieces = (members_p[sel], rows_p[sel], bases_p[sel])
        _decode_segment(workers, array, names, plan, info, out, dst, sel_shape, path, records, src, offsets, *pieces)


def _prefetch_index(engine: FamilyEngine) -> None:
    """On object stores, fetch the index of every segment at once before it is built."""
    # FamilyEngine caches its tables; only a family whose index was never read needs this.
    if engine.io.can_map or engine._tables is not None or engine._index is not None:
        return
    refs = [ref for ref in engine.family.segments if ref not in engine._parsed]  # parsed ones are kept
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
    info: _Rows,
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
    codec = records["codec"]
    raw = codec == RAW
    # Every size comes from the plan; a record that disagrees is refused before
    # anything is allocated from it.
    cells = info.cells[rows]
    expected = cells * itemsize + np.where(records["flags"] & FLAG_WRITTEN_MASK, (cells + 7) // 8, 0)
    claimed = records["raw_nbytes"]
    bad = claimed != expected.astype(np.uint64)
    bad |= raw & ((nbytes != expected) | (offsets % itemsize != 0))
    bad |= ~raw & (codec != ZSTD) & (codec != LZ4)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        where = f"{path} (dataset {names[int(members[k])]!r} array {array!r})"
        if codec[k] not in (RAW, ZSTD, LZ4):
            raise CorruptStoreError(f"{where}: unknown chunk codec id {int(codec[k])}")
        raise CorruptStoreError(
            f"{where}: chunk record claims {int(claimed[k])} decoded bytes ({int(nbytes[k])} stored), "
            f"a chunk of {int(cells[k])} {out.dtype} cells holds {int(expected[k])}"
        )
    raw_nbytes = expected
    typed_src = src[: src.nbytes - src.nbytes % itemsize].view(dst.dtype)
    if native.AVAILABLE:
        status = read_pieces_many(
            src,
            typed_src,
            offsets,
            nbytes,
            records["checksum"],
            raw,
            raw_nbytes,
            info.first[rows],
            info.count[rows],
            plan.chunk_shapes[rows],
            plan.in_chunk[rows],
            plan.boxes[rows],
            sel_shape,
            plan.in_selection[rows],
            bases,
            dst,
            workers,
        )
        failed = np.flatnonzero(status)
        if failed.size:
            k = int(failed[0])
            where = f"{path} (dataset {names[int(members[k])]!r} array {array!r})"
            if status[k] == native.ERR_CHECKSUM:
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
        culprit = names[int(members[bad[0]])]
        raise ChecksumError(f"{path} (dataset {culprit!r} array {array!r}): chunk checksum mismatch")
    # Raw chunks are scattered straight from the map (or the fetched buffer).
    if raw.any():
        _scatter(typed_src, offsets[raw] // itemsize, plan, rows[raw], sel_shape, bases[raw], dst)
    comp = np.flatnonzero(~raw)
    if comp.size:
        sizes = raw_nbytes[comp]
        # Each decoded chunk starts at a multiple of the item size in the scratch.
        padded = -(-sizes // itemsize) * itemsize
        starts = np.zeros(comp.size, np.int64)
        starts[1:] = np.cumsum(padded[:-1])
        scratch_u8 = np.empty(int(starts[-1] + padded[-1]), np.uint8)
        decode_many(src, offsets[comp], nbytes[comp], codec[comp], scratch_u8, starts, sizes, where, workers)
        scratch = scratch_u8[: scratch_u8.nbytes - scratch_u8.nbytes % itemsize].view(dst.dtype)
        _scatter(scratch, starts // itemsize, plan, rows[comp], sel_shape, bases[comp], dst)


def _fill_pieces(values, boxes, sel_shape, in_selection, bases, dst) -> None:
    """:func:`atlas.engine.kernels.fill_pieces`, through numpy views for small batches
    (as :func:`atlas.engine.decode.read_pieces_many` does): no compile per dtype."""
    if values.shape[0] >= decode.KERNEL_MIN_PIECES:
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


def _scatter(src, src_offsets, plan, rows, sel_shape, bases, dst) -> None:
    kernels.scatter_pieces(
        src,
        src_offsets,
        plan.chunk_shapes[rows],
        plan.in_chunk[rows],
        plan.boxes[rows],
        sel_shape,
        plan.in_selection[rows],
        bases,
        dst,
    )
