"""Chunk codecs, the string chunk encoding and checksums.

A chunk payload is the chunk's cells in storage form (little-endian, C order), for
strings the encoding of :func:`encode_strings`, optionally followed by a packed
"written" mask (see ``docs/format.md``), then compressed on its own.  Each stored
chunk names its codec, so a chunk that does not shrink is stored raw and can be
read straight from the memory map.
"""

from __future__ import annotations

import functools
import itertools
import struct
from typing import Any

import numpy as np

from atlas.engine import libblosc2
from atlas.engine.rowhash import xxh64_rows
from atlas.errors import ChecksumError, CorruptStoreError, InvalidArgumentError

__all__ = [
    "CODEC_IDS",
    "RAW",
    "checksum",
    "row_checksums",
    "decode_payload",
    "decode_strings",
    "encode_payload",
    "encode_strings",
    "normalize_codec",
]

#: Codec ids as stored in chunk records.
RAW, ZSTD, LZ4 = 0, 1, 2
CODEC_IDS = {"none": RAW, "zstd": ZSTD, "lz4": LZ4}
_BLOSC_IDS = (ZSTD, LZ4)
_ALIASES = {"none": "none", "uncompressed": "none", "raw": "none", "zstd": "zstd", "lz4": "lz4"}
#: blosc2 compression level of every chunk.  With 16 KiB blocks, zstd level 3
#: compresses the benchmark chunks 1.5-3x faster than level 5 for output within
#: 0.5% of its size (zstd re-initialises its tables per block, and those are
#: larger at higher levels); see docs/benchmarks.md.
CLEVEL = 3
#: Chunks of at most this many bytes are stored raw: blosc2's 32-byte header alone
#: would eat any saving, and a raw chunk is read straight from the memory map.
MIN_COMPRESS = 128
#: blosc2 block size of chunks larger than it (see :func:`encode_payload`).
BLOCKSIZE = 16384
_BLOSC_OVERHEAD = 32
#: :func:`row_checksums` hashes rows in numpy up to this length and from this many rows on.
_ROWHASH_MAX_BYTES = 256
_ROWHASH_MIN_ROWS = 16
_BLOSC_MAX = 2**31 - 64
#: :func:`encode_strings` lays out up to this many strings with :mod:`struct`, more with numpy.
_STRUCT_STRINGS = 256


@functools.cache
def blosc2() -> Any:
    """The ``blosc2`` module, imported on first use (a third of a second)."""
    import blosc2

    # Flushes compress chunks on several threads (see ``build_segment``); blosc2 holds
    # the GIL while it compresses unless told otherwise.  The flag is process-wide and
    # costs a few microseconds per call, which chunks of 128+ bytes do not notice.
    blosc2.set_releasegil(True)
    return blosc2


def normalize_codec(codec: str) -> str:
    """``zstd``, ``lz4`` or ``none`` (alias ``uncompressed``), case-insensitive."""
    key = codec.strip().lower() if isinstance(codec, str) else None
    if key not in _ALIASES:
        raise InvalidArgumentError(f"unknown codec {codec!r}; expected 'zstd', 'lz4' or 'none'")
    return _ALIASES[key]


def checksum(data: np.ndarray | bytes | memoryview) -> int:
    """XXH64 (seed 0) of a byte buffer, as a Python int."""
    if not isinstance(data, np.ndarray):
        data = np.frombuffer(data, dtype=np.uint8)
    elif data.dtype != np.uint8 or not data.flags.c_contiguous or data.ndim != 1:
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return libblosc2.payload_xxh64(data)


def row_checksums(block: np.ndarray, nbytes: int) -> np.ndarray | list[int]:
    """:func:`checksum` of the first ``nbytes`` of every row of a C-contiguous uint8 matrix.

    Many short rows are hashed all at once in numpy (:mod:`atlas.engine.rowhash`),
    longer or few rows one C call each.
    """
    if nbytes <= _ROWHASH_MAX_BYTES and block.shape[0] >= _ROWHASH_MIN_ROWS and block.shape[1] % 8 == 0:
        return xxh64_rows(block, nbytes)
    return libblosc2.rows_xxh64(block, nbytes)


def encode_payload(
    raw: np.ndarray, typesize: int, codec: str, clevel: int = CLEVEL, blocksize: int | None = None
) -> tuple[np.ndarray, int]:
    """Compress the flat uint8 ``raw`` with the store ``codec`` (at ``clevel``).

    ``blocksize`` is the blosc2 block size (blosc2 caps it at the payload's size);
    by default, :data:`BLOCKSIZE` for payloads larger than it, else blosc2's choice.
    Returns ``(stored bytes as uint8 array, codec id)``.  The chunk is stored raw
    when compression would not make it smaller.
    """
    cid = CODEC_IDS[codec]
    if cid == RAW or raw.nbytes <= MIN_COMPRESS or raw.nbytes > _BLOSC_MAX:
        return raw, RAW
    blosc = blosc2()
    packed = blosc.compress2(
        raw,
        codec=blosc.Codec.ZSTD if cid == ZSTD else blosc.Codec.LZ4,
        clevel=clevel,
        filter=blosc.Filter.SHUFFLE if typesize > 1 else blosc.Filter.NOFILTER,
        typesize=max(1, min(typesize, 255)),
        nthreads=1,
        # Blocks of 16 KiB (instead of one block per chunk) let a read decode only
        # the blocks its box touches, for about 1% of compression ratio.
        blocksize=blocksize if blocksize is not None else BLOCKSIZE if raw.nbytes > BLOCKSIZE else 0,
    )
    if len(packed) >= raw.nbytes:
        return raw, RAW
    return np.frombuffer(packed, dtype=np.uint8), cid


def decode_payload(
    stored: np.ndarray, codec_id: int, raw_nbytes: int, where: str, max_nbytes: int | None = None
) -> np.ndarray:
    """Decompress one stored chunk into a new flat uint8 array of ``raw_nbytes``.

    Parameters
    ----------
    max_nbytes : int, optional
        The most bytes the chunk can decode to (its cells and written-mask; None
        for strings, whose encoding has no fixed size).  The record's
        ``raw_nbytes`` and the blosc header are checked against it, and against
        the codec limit, before anything is allocated, so a forged length is
        refused instead of allocated.

    Raises
    ------
    CorruptStoreError
        When the record, header or payload do not agree (message names ``where``).
    """
    if raw_nbytes < 0 or (max_nbytes is not None and raw_nbytes > max_nbytes):
        raise CorruptStoreError(
            f"{where}: chunk record claims {raw_nbytes} bytes, the chunk holds at most {max_nbytes}"
        )
    if codec_id == RAW:
        if stored.nbytes != raw_nbytes:
            raise CorruptStoreError(f"{where}: raw chunk has {stored.nbytes} bytes, expected {raw_nbytes}")
        return stored
    if codec_id not in _BLOSC_IDS:
        raise CorruptStoreError(f"{where}: unknown chunk codec id {codec_id}")
    if stored.nbytes < _BLOSC_OVERHEAD:
        raise CorruptStoreError(f"{where}: compressed chunk is truncated")
    if raw_nbytes > _BLOSC_MAX:  # such chunks are always stored raw (see encode_payload)
        raise CorruptStoreError(f"{where}: compressed chunk claims {raw_nbytes} bytes, over the codec limit")
    if libblosc2.AVAILABLE:  # libblosc2 through ctypes: no `import blosc2` to read a chunk
        stored = np.ascontiguousarray(stored)
        sizes = libblosc2.cbuffer_sizes(stored[:_BLOSC_OVERHEAD])
        if sizes is None:
            raise CorruptStoreError(f"{where}: compressed chunk header is damaged")
        if sizes != (raw_nbytes, stored.nbytes):
            raise CorruptStoreError(f"{where}: compressed chunk header does not match its record")
        out = np.empty(raw_nbytes, dtype=np.uint8)
        got = libblosc2.decompress(stored, out)
        if got != raw_nbytes:
            raise ChecksumError(f"{where}: chunk cannot be decompressed (blosc2 status {got})")
        return out
    try:
        nbytes, cbytes, _ = blosc2().get_cbuffer_sizes(stored[:_BLOSC_OVERHEAD].tobytes())
    except Exception as exc:  # blosc2 raises several types for a damaged header
        raise CorruptStoreError(f"{where}: compressed chunk header is damaged: {exc}") from None
    if nbytes != raw_nbytes or cbytes != stored.nbytes:
        raise CorruptStoreError(f"{where}: compressed chunk header does not match its record")
    out = np.empty(raw_nbytes, dtype=np.uint8)
    try:
        blosc2().decompress2(stored, dst=out, nthreads=1)
    except Exception as exc:  # blosc2 raises several types for damaged input
        raise ChecksumError(f"{where}: chunk cannot be decompressed: {exc}") from None
    return out


# -- strings --------------------------------------------------------------------------------


def encode_strings(values: np.ndarray) -> np.ndarray:
    """Encode a flat object array of ``str`` as ``count | offsets[count + 1] | utf-8``.

    ``count`` and the offsets are little-endian uint64; offsets are relative to the
    start of the UTF-8 blob.
    """
    encoded = [v.encode("utf-8") for v in values.tolist()]
    n = len(encoded)
    if n <= _STRUCT_STRINGS:
        # The chunks of a flush of small datasets hold a few strings each: packed by
        # struct and joined once, as numpy steps would cost more than the strings.
        head = struct.pack(f"<{n + 2}Q", n, *itertools.accumulate(map(len, encoded), initial=0))
        return np.frombuffer(head + b"".join(encoded), np.uint8)
    offsets = np.zeros(n + 1, dtype="<u8")
    np.cumsum(np.fromiter(map(len, encoded), dtype="<u8", count=n), out=offsets[1:])
    blob = b"".join(encoded)
    out = np.empty(8 + offsets.nbytes + len(blob), dtype=np.uint8)
    out[:8] = np.frombuffer(np.uint64(n).astype("<u8").tobytes(), np.uint8)
    out[8 : 8 + offsets.nbytes] = offsets.view(np.uint8)
    out[8 + offsets.nbytes :] = np.frombuffer(blob, np.uint8)
    return out


def strings_nbytes(raw: np.ndarray, where: str) -> int:
    """Length of the string encoding at the start of ``raw`` (checks its header)."""
    if raw.nbytes < 8:
        raise CorruptStoreError(f"{where}: string chunk is truncated")
    n = int(raw[:8].view("<u8")[0])
    if 8 + 8 * (n + 1) > raw.nbytes:
        raise CorruptStoreError(f"{where}: string chunk count {n} exceeds its size")
    end = int(raw[8 + 8 * n : 16 + 8 * n].view("<u8")[0])
    return 16 + 8 * n + end


def decode_strings(raw: np.ndarray, count: int, where: str) -> np.ndarray:
    """Inverse of :func:`encode_strings`; checks every length against the buffer."""
    if raw.nbytes < 8 or int(raw[:8].view("<u8")[0]) != count:
        raise CorruptStoreError(f"{where}: string chunk does not hold {count} values")
    head = 8 + 8 * (count + 1)
    if head > raw.nbytes:
        raise CorruptStoreError(f"{where}: string chunk is truncated")
    offsets = raw[8:head].view("<u8").astype(np.int64)
    blob_len = raw.nbytes - head
    if offsets[0] != 0 or (count and (np.any(np.diff(offsets) < 0) or offsets[-1] > blob_len)):
        raise CorruptStoreError(f"{where}: string chunk offsets are damaged")
    blob = raw[head:].tobytes()
    out = np.empty(count, dtype=object)
    try:
        for i in range(count):
            out[i] = blob[offsets[i] : offsets[i + 1]].decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptStoreError(f"{where}: string chunk holds invalid UTF-8") from None
    return out
