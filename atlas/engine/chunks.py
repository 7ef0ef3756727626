"""One chunk in memory: decoding a stored payload, encoding it back, its stats.

A chunk in memory is a flat array of its cells in storage form (see
:func:`atlas.dtypes.storage_dtype`) plus, for integer, bool and string arrays
without a fill value, an optional ``written`` mask (uint8, 1 = written) that keeps
``null_count`` exact for cells that were never written.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from atlas import dtypes
from atlas.engine import codecs, kernels
from atlas.engine.segment import FLAG_WRITTEN_MASK
from atlas.errors import ChecksumError, CorruptStoreError
from atlas.metadata import ArrayMeta

__all__ = [
    "ChunkStats",
    "EncodedChunk",
    "chunk_stats",
    "decode_chunk",
    "encode_chunk",
    "fill_for",
    "many_chunk_stats",
    "tracks_written",
]


@dataclass(frozen=True)
class ChunkStats:
    """Stats of one chunk: cells, null cells, and min/max of the valid cells."""

    cells: int
    null_count: int
    minimum: Any = None
    maximum: Any = None


@dataclass(frozen=True)
class EncodedChunk:
    """A chunk ready for a segment: stored bytes and the fields of its record."""

    stored: np.ndarray
    codec: int
    raw_nbytes: int
    flags: int
    stats: ChunkStats
    min_bits: int
    max_bits: int


#: Chunks of fewer cells get their stats from numpy rather than a numba kernel.
NUMPY_STATS_MAX_CELLS = 1 << 15


def fill_for(meta: ArrayMeta) -> Any:
    """The storage-form value of unwritten cells."""
    value = meta.fill_value if meta.fill_value is not None else dtypes.default_fill(meta.dtype)
    return value


def tracks_written(meta: ArrayMeta) -> bool:
    """True when never-written cells are indistinguishable from written ones.

    That is the case for integer, bool and string arrays without a fill value
    (their default fill 0/False/"" is also a valid value), so partly written chunks
    of such arrays carry a ``written`` mask.
    """
    return meta.fill_value is None and not (dtypes.is_float(meta.dtype) or meta.dtype == "timestamp_nanoseconds")


def _numeric_view(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint8) if values.dtype == np.bool_ else values


def chunk_stats(values: np.ndarray, written: np.ndarray | None, meta: ArrayMeta) -> ChunkStats:
    """Null count and min/max over the valid cells of one chunk (one pass)."""
    cells = values.shape[0]
    mask = written if written is not None else np.zeros(0, np.uint8)
    name = meta.dtype
    fill = meta.fill_value
    if name == "string":
        valid = [
            v for i, v in enumerate(values.tolist()) if (fill is None or v != fill) and (written is None or written[i])
        ]
        if not valid:
            return ChunkStats(cells, cells)
        return ChunkStats(cells, cells - len(valid), min(valid), max(valid))
    # Small chunks take the numpy path: the kernels pay for their compile (once per
    # dtype on a machine whose numba cache is empty) only on chunks large enough to
    # gain from one pass instead of several.
    small = cells < NUMPY_STATS_MAX_CELLS
    if dtypes.is_float(name):
        stats = _stats_float_numpy if small else kernels.stats_float
        nulls, lo, hi = stats(values, float(fill) if fill is not None else 0.0, fill is not None, mask)
        if math.isnan(lo):
            return ChunkStats(cells, int(nulls))
        return ChunkStats(cells, int(nulls), _as_dtype(lo, name), _as_dtype(hi, name))
    view = _numeric_view(values)
    # The fill is passed in the chunk's own dtype so the kernel compares like with like.
    fill_typed = view.dtype.type(int(fill) if fill is not None else 0)
    stats = _stats_int_numpy if small else kernels.stats_int
    nulls, valid, lo, hi = stats(view, fill_typed, fill is not None, name == "timestamp_nanoseconds", mask)
    if valid == 0:
        return ChunkStats(cells, int(nulls))
    if name == "bool":
        return ChunkStats(cells, int(nulls), bool(lo), bool(hi))
    return ChunkStats(cells, int(nulls), int(lo), int(hi))


def many_chunk_stats(values: list[np.ndarray], name: str, fill: Any) -> list[ChunkStats | None]:
    """:func:`chunk_stats` of many flat chunks of dtype ``name`` and fill value ``fill``
    without written masks, in a few numpy passes over all their cells at once.

    The chunks may differ in length (a batch of small files of different shapes).
    Each result equals :func:`chunk_stats`; it is None for a chunk the passes cannot
    tell exactly, for the caller to take one by one: an empty chunk, one of
    :data:`NUMPY_STATS_MAX_CELLS` cells or more (those take a kernel), a string
    chunk, or a float chunk holding both ``0.0`` and ``-0.0`` among its valid cells
    (which of them is its minimum depends on the order a reduction meets them in).
    """
    out: list[ChunkStats | None] = [None] * len(values)
    take = [i for i, v in enumerate(values) if 0 < v.shape[0] < NUMPY_STATS_MAX_CELLS]
    if name == "string" or not take:
        return out
    counts = np.fromiter((values[i].shape[0] for i in take), np.int64, len(take))
    starts = np.zeros(len(take), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    cells = np.concatenate([values[i] for i in take])
    if dtypes.is_float(name):
        null = np.isnan(cells)
        if fill is not None:
            null |= cells == np.float64(float(fill))  # compared in float64, as chunk_stats does
        lo = np.minimum.reduceat(np.where(null, np.inf, cells), starts)
        hi = np.maximum.reduceat(np.where(null, -np.inf, cells), starts)
        zero = (cells == 0) & ~null
        negative = np.signbit(cells)
        exact = ~(np.logical_or.reduceat(zero & negative, starts) & np.logical_or.reduceat(zero & ~negative, starts))
    else:
        view = _numeric_view(cells)
        null = np.zeros(view.shape[0], np.bool_)
        if fill is not None:
            null |= view == view.dtype.type(int(fill))
        if name == "timestamp_nanoseconds":
            null |= view == np.iinfo(np.int64).min
        info = np.iinfo(view.dtype)
        lo = np.minimum.reduceat(np.where(null, info.max, view), starts)
        hi = np.maximum.reduceat(np.where(null, info.min, view), starts)
        exact = np.ones(len(take), np.bool_)
        if name == "bool":
            lo, hi = lo.astype(np.bool_), hi.astype(np.bool_)
    nulls = np.add.reduceat(null.view(np.uint8), starts, dtype=np.int64)
    # The extremes are cells of the chunks' own dtype: as Python floats, ints or bools
    # they are what chunk_stats gives (a float32 one is what it rounds to).
    lo_list, hi_list = lo.tolist(), hi.tolist()
    for j in np.flatnonzero(nulls == counts).tolist():  # every cell null: no extremes
        lo_list[j] = hi_list[j] = None
    made = map(ChunkStats, counts.tolist(), nulls.tolist(), lo_list, hi_list)
    for i, stats, ok in zip(take, made, exact.tolist()):
        if ok:
            out[i] = stats
    return out


def _stats_float_numpy(
    values: np.ndarray, fill: float, use_fill: bool, written: np.ndarray
) -> tuple[int, float, float]:
    """:func:`atlas.engine.kernels.stats_float` in numpy (same arguments and result)."""
    null = np.isnan(values)
    if use_fill:
        null |= values == np.float64(fill)  # compared in float64, as the kernel does
    if written.shape[0] > 0:
        null |= written == 0
    nulls = int(np.count_nonzero(null))
    if nulls == values.shape[0]:
        return nulls, math.nan, math.nan
    valid = values[~null] if nulls else values
    return nulls, float(valid.min()), float(valid.max())


def _stats_int_numpy(
    values: np.ndarray, fill: Any, use_fill: bool, nat: bool, written: np.ndarray
) -> tuple[int, int, Any, Any]:
    """:func:`atlas.engine.kernels.stats_int` in numpy (same arguments and result)."""
    null = np.zeros(values.shape[0], np.bool_)
    if use_fill:
        null |= values == fill
    if nat:
        null |= values == np.iinfo(np.int64).min
    if written.shape[0] > 0:
        null |= written == 0
    nulls = int(np.count_nonzero(null))
    valid = values[~null] if nulls else values
    if valid.shape[0] == 0:
        zero = values.dtype.type(0)
        return nulls, 0, zero, zero
    return nulls, int(valid.shape[0]), valid.min(), valid.max()


def _as_dtype(value: float, name: str) -> float:
    return float(np.float32(value)) if name == "float32" else float(value)


_F64 = struct.Struct("<d")
_U64 = struct.Struct("<Q")
_U64_MASK = (1 << 64) - 1


def value_bits(value: Any, name: str) -> int:
    """The 8-byte record encoding of a numeric min/max (0 for strings or None)."""
    if value is None or name == "string":
        return 0
    if dtypes.is_float(name):
        return _U64.unpack(_F64.pack(value))[0]
    if name.startswith("uint") or name == "bool":
        return int(value)
    return int(value) & _U64_MASK  # two's complement, as int64 viewed as uint64


def bits_value(bits: np.ndarray, name: str) -> np.ndarray:
    """Decode a column of record min/max bits into values of dtype ``name``."""
    bits = bits.astype(np.uint64, copy=False)
    if dtypes.is_float(name):
        return bits.view(np.float64)
    if name.startswith("uint") or name == "bool":
        return bits
    return bits.view(np.int64)


def encode_chunk(
    values: np.ndarray, written: np.ndarray | None, meta: ArrayMeta, codec: str, stats: ChunkStats | None = None
) -> EncodedChunk:
    """Compress a chunk for a segment, as one step of ``flush``.

    ``stats`` are the chunk's stats when the caller has them (computed here otherwise).
    """
    if stats is None:
        stats = chunk_stats(values, written, meta)
    if meta.dtype == "string":
        raw = codecs.encode_strings(values)
        typesize = 1
    else:
        raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
        typesize = values.dtype.itemsize
    flags = 0
    if written is not None and not written.all():
        raw = np.concatenate([raw, np.packbits(written.astype(bool), bitorder="little")])
        flags |= FLAG_WRITTEN_MASK
    stored, cid = codecs.encode_payload(raw, typesize, codec)
    if stored is raw and raw.base is not None:
        stored = raw.copy()  # never keep a view into a buffer the caller may reuse
    return EncodedChunk(
        stored=stored,
        codec=cid,
        raw_nbytes=raw.nbytes,
        flags=flags,
        stats=stats,
        min_bits=value_bits(stats.minimum, meta.dtype),
        max_bits=value_bits(stats.maximum, meta.dtype),
    )


def decode_chunk(
    stored: np.ndarray, record: np.void, meta: ArrayMeta, cells: int, where: str, verify: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check and decode one stored chunk into ``(values, written mask or None)``."""
    if verify and codecs.checksum(stored) != int(record["checksum"]):
        raise ChecksumError(f"{where}: chunk checksum mismatch")
    limit = None
    if meta.dtype != "string":  # a forged length must not be allocated
        limit = cells * dtypes.storage_dtype(meta.dtype).itemsize + (cells + 7) // 8
    raw = codecs.decode_payload(stored, int(record["codec"]), int(record["raw_nbytes"]), where, limit)
    if meta.dtype == "string":
        used = codecs.strings_nbytes(raw, where)
        values = codecs.decode_strings(raw[:used], cells, where)
    else:
        dt = dtypes.storage_dtype(meta.dtype)
        used = cells * dt.itemsize
        if raw.nbytes < used:
            raise CorruptStoreError(f"{where}: chunk holds {raw.nbytes} bytes, expected at least {used}")
        values = raw[:used].view(dt)
    written = None
    if int(record["flags"]) & FLAG_WRITTEN_MASK:
        packed = raw[used:]
        if packed.nbytes != (cells + 7) // 8:
            raise CorruptStoreError(f"{where}: chunk written-mask has the wrong length")
        written = np.unpackbits(packed, count=cells, bitorder="little")
    elif raw.nbytes != used:
        raise CorruptStoreError(f"{where}: chunk has {raw.nbytes - used} unexpected trailing bytes")
    return values, written
