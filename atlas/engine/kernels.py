"""Numba kernels: pure functions over numpy arrays, no I/O, nothing from ``atlas``.

Every kernel takes flat (1-D, C-ordered) arrays plus shapes, so one compiled
function serves every rank.  Outputs are preallocated by the caller and passed
last.  Each kernel is tested against a numpy reference, jitted and through
``.py_func``.  numba is imported on the first call of a kernel, not with this
module (:mod:`atlas.engine.jit`, the one import from ``atlas``).
"""

from __future__ import annotations

import numpy as np

from atlas.engine.jit import KernelModule

__all__ = [
    "copy_box_at",
    "fill_pieces",
    "scatter_pieces",
    "xxh64_many",
    "stats_float",
    "stats_int",
    "xxh64",
]

# Compiled on first call, all at once, with the flags of atlas.engine.jit.JIT_OPTIONS.
_kernels = KernelModule(globals())


@_kernels.jit
def _box_count(box: np.ndarray) -> int:
    n = 1
    for d in range(box.shape[0]):
        n *= box[d]
    return n


@_kernels.jit
def copy_box_at(
    src: np.ndarray,
    src_base: int,
    src_shape: np.ndarray,
    src_start: np.ndarray,
    box: np.ndarray,
    dst_shape: np.ndarray,
    dst_start: np.ndarray,
    dst: np.ndarray,
    dst_base: int,
) -> None:
    """Copy the box ``src[src_start : src_start + box]`` into ``dst[dst_start : dst_start + box]``.

    ``src`` holds, from element ``src_base`` on, a flat C-ordered array of shape
    ``src_shape``; ``dst`` from element ``dst_base`` on one of shape ``dst_shape``.
    The innermost axis is copied as one contiguous run.
    """
    ndim = box.shape[0]
    if ndim == 0:
        dst[dst_base] = src[src_base]
        return
    if _box_count(box) == 0:
        return
    src_strides = np.empty(ndim, np.int64)
    dst_strides = np.empty(ndim, np.int64)
    s = 1
    t = 1
    for d in range(ndim - 1, -1, -1):
        src_strides[d] = s
        dst_strides[d] = t
        s *= src_shape[d]
        t *= dst_shape[d]
    inner = box[ndim - 1]
    idx = np.zeros(ndim, np.int64)
    while True:
        so = src_base
        do = dst_base
        for d in range(ndim):
            so += (src_start[d] + idx[d]) * src_strides[d]
            do += (dst_start[d] + idx[d]) * dst_strides[d]
        for k in range(inner):
            dst[do + k] = src[so + k]
        # advance the multi-index over every axis but the innermost
        d = ndim - 2
        while d >= 0:
            idx[d] += 1
            if idx[d] < box[d]:
                break
            idx[d] = 0
            d -= 1
        if d < 0:
            return


@_kernels.jit
def scatter_pieces(
    src: np.ndarray,
    src_offsets: np.ndarray,
    chunk_shapes: np.ndarray,
    in_chunk: np.ndarray,
    boxes: np.ndarray,
    sel_shape: np.ndarray,
    in_selection: np.ndarray,
    dst_bases: np.ndarray,
    dst: np.ndarray,
) -> None:
    """Copy many chunk boxes into a stacked output in one call.

    Piece ``p`` reads the chunk of shape ``chunk_shapes[p]`` starting at element
    ``src_offsets[p]`` of ``src`` and copies its box ``boxes[p]`` at ``in_chunk[p]``
    to position ``in_selection[p]`` of the selection (shape ``sel_shape``) that
    starts at element ``dst_bases[p]`` of ``dst``.
    """
    for p in range(src_offsets.shape[0]):
        copy_box_at(
            src, src_offsets[p], chunk_shapes[p], in_chunk[p], boxes[p], sel_shape, in_selection[p], dst, dst_bases[p]
        )


@_kernels.jit
def fill_pieces(
    values: np.ndarray,
    boxes: np.ndarray,
    sel_shape: np.ndarray,
    in_selection: np.ndarray,
    dst_bases: np.ndarray,
    dst: np.ndarray,
) -> None:
    """Set box ``p`` of the selection starting at ``dst_bases[p]`` to ``values[p]``."""
    for p in range(boxes.shape[0]):
        _fill_box_at(values[p], boxes[p], sel_shape, in_selection[p], dst, dst_bases[p])


@_kernels.jit
def xxh64_many(src: np.ndarray, offsets: np.ndarray, nbytes: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = xxh64(src[offsets[i] : offsets[i] + nbytes[i]])``."""
    for i in range(offsets.shape[0]):
        out[i] = xxh64(src[offsets[i] : offsets[i] + nbytes[i]])


@_kernels.jit
def _fill_box_at(
    value, box: np.ndarray, dst_shape: np.ndarray, dst_start: np.ndarray, dst: np.ndarray, base: int
) -> None:
    ndim = box.shape[0]
    if ndim == 0:
        dst[base] = value
        return
    if _box_count(box) == 0:
        return
    strides = np.empty(ndim, np.int64)
    t = 1
    for d in range(ndim - 1, -1, -1):
        strides[d] = t
        t *= dst_shape[d]
    inner = box[ndim - 1]
    idx = np.zeros(ndim, np.int64)
    while True:
        do = base
        for d in range(ndim):
            do += (dst_start[d] + idx[d]) * strides[d]
        for k in range(inner):
            dst[do + k] = value
        d = ndim - 2
        while d >= 0:
            idx[d] += 1
            if idx[d] < box[d]:
                break
            idx[d] = 0
            d -= 1
        if d < 0:
            return


@_kernels.jit
def stats_float(values: np.ndarray, fill: float, use_fill: bool, written: np.ndarray) -> tuple[int, float, float]:
    """Null count and min/max of the valid cells of a float chunk.

    A cell is null when it is NaN, equals ``fill`` (if ``use_fill``), or its
    ``written`` flag is 0 (when ``written`` is not empty).  Returns
    ``(null_count, min, max)``; min/max are NaN when no cell is valid.
    """
    nulls = 0
    lo = np.inf
    hi = -np.inf
    any_valid = False
    use_mask = written.shape[0] > 0
    for i in range(values.shape[0]):
        v = values[i]
        if v != v or (use_fill and v == fill) or (use_mask and written[i] == 0):
            nulls += 1
            continue
        any_valid = True
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    if not any_valid:
        return nulls, np.nan, np.nan
    return nulls, float(lo), float(hi)


@_kernels.jit
def stats_int(values: np.ndarray, fill, use_fill: bool, nat: bool, written: np.ndarray):
    """Null count and min/max of the valid cells of an integer (or timestamp, or
    bool viewed as uint8) chunk.

    ``fill`` has the dtype of ``values``.  A cell is null when it equals ``fill``
    (if ``use_fill``), is the NaT pattern
    (if ``nat``), or its ``written`` flag is 0 (when ``written`` is not empty).
    Returns ``(null_count, n_valid, min, max)`` in the dtype of ``values``.
    """
    nulls = 0
    valid = 0
    lo = values[0] if values.shape[0] > 0 else values.dtype.type(0)
    hi = lo
    nat_value = np.iinfo(np.int64).min
    use_mask = written.shape[0] > 0
    for i in range(values.shape[0]):
        v = values[i]
        if (use_fill and v == fill) or (nat and v == nat_value) or (use_mask and written[i] == 0):
            nulls += 1
            continue
        if valid == 0 or v < lo:
            lo = v
        if valid == 0 or v > hi:
            hi = v
        valid += 1
    return nulls, valid, lo, hi


# -- XXH64 (seed 0): the checksum of every chunk payload and segment index -----------

_P1 = np.uint64(11400714785074694791)
_P2 = np.uint64(14029467366897019727)
_P3 = np.uint64(1609587929392839161)
_P4 = np.uint64(9650029242287828579)
_P5 = np.uint64(2870177450012600261)


@_kernels.jit
def _rotl(x: np.uint64, r: int) -> np.uint64:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@_kernels.jit
def _round(acc: np.uint64, lane: np.uint64) -> np.uint64:
    acc = acc + lane * _P2
    acc = _rotl(acc, 31)
    return acc * _P1


@_kernels.jit
def _merge(acc: np.uint64, val: np.uint64) -> np.uint64:
    acc = acc ^ _round(np.uint64(0), val)
    return acc * _P1 + _P4


@_kernels.jit
def _read64(b: np.ndarray, i: int) -> np.uint64:
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(b[i + k]) << np.uint64(8 * k)
    return v


@_kernels.jit
def _read32(b: np.ndarray, i: int) -> np.uint64:
    v = np.uint64(0)
    for k in range(4):
        v |= np.uint64(b[i + k]) << np.uint64(8 * k)
    return v


@_kernels.jit
def xxh64(data: np.ndarray) -> np.uint64:
    """XXH64 with seed 0 of a flat uint8 array (the published algorithm, bit-exact)."""
    n = data.shape[0]
    i = 0
    if n >= 32:
        v1 = _P1 + _P2
        v2 = _P2
        v3 = np.uint64(0)
        v4 = np.uint64(0) - _P1
        limit = n - 32
        while i <= limit:
            v1 = _round(v1, _read64(data, i))
            v2 = _round(v2, _read64(data, i + 8))
            v3 = _round(v3, _read64(data, i + 16))
            v4 = _round(v4, _read64(data, i + 24))
            i += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = _P5
    h = h + np.uint64(n)
    while i + 8 <= n:
        h = h ^ _round(np.uint64(0), _read64(data, i))
        h = _rotl(h, 27) * _P1 + _P4
        i += 8
    if i + 4 <= n:
        h = h ^ (_read32(data, i) * _P1)
        h = _rotl(h, 23) * _P2 + _P3
        i += 4
    while i < n:
        h = h ^ (np.uint64(data[i]) * _P5)
        h = _rotl(h, 11) * _P1
        i += 1
    h = h ^ (h >> np.uint64(33))
    h = h * _P2
    h = h ^ (h >> np.uint64(29))
    h = h * _P3
    h = h ^ (h >> np.uint64(32))
    return h
