"""XXH64 of many short rows of equal length at once, in numpy.

A flush of many small datasets checksums thousands of payloads of the same few
dozen bytes.  One C call per row costs more in call overhead than in hashing;
here each step of XXH64 (seed 0, the checksum of ``docs/format.md``) runs on
every row at once, as uint64 array arithmetic (which wraps modulo 2**64 as the
algorithm wants).  The result equals :func:`atlas.engine.codecs.checksum` of each
row; the cost grows with the row length, so it is meant for short rows.
"""

from __future__ import annotations

import numpy as np

from atlas.errors import InvalidArgumentError

__all__ = ["xxh64_rows"]

_MASK = (1 << 64) - 1
_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261
P1, P2, P3, P4, P5 = (np.uint64(p) for p in (_P1, _P2, _P3, _P4, _P5))


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _round(acc: np.ndarray, lane: np.ndarray) -> np.ndarray:
    acc = acc + lane * P2
    return _rotl(acc, 31) * P1


def xxh64_rows(block: np.ndarray, nbytes: int) -> np.ndarray:
    """XXH64 (seed 0) of the first ``nbytes`` of every row of ``block``, as uint64.

    ``block`` is a C-contiguous uint8 matrix whose row length is a multiple of 8
    and at least ``nbytes``.
    """
    n, stride = block.shape
    if stride % 8 or nbytes > stride or not block.flags.c_contiguous:
        raise InvalidArgumentError("rows to hash must be C-contiguous and a whole number of 8-byte words long")
    words = block.view("<u8")
    pos = 0
    if nbytes >= 32:
        v = [np.full(n, (p & _MASK), np.uint64) for p in (_P1 + _P2, _P2, 0, -_P1)]
        while pos + 32 <= nbytes:
            w = pos // 8
            v = [_round(v[k], words[:, w + k]) for k in range(4)]
            pos += 32
        h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
        for k in range(4):
            h = (h ^ _round(np.zeros(n, np.uint64), v[k])) * P1 + P4
    else:
        h = np.full(n, _P5, np.uint64)
    h = h + np.uint64(nbytes)
    while pos + 8 <= nbytes:
        h = _rotl(h ^ _round(np.zeros(n, np.uint64), words[:, pos // 8]), 27) * P1 + P4
        pos += 8
    if pos + 4 <= nbytes:
        lane = block[:, pos : pos + 4].copy().view("<u4").reshape(n).astype(np.uint64)
        h = _rotl(h ^ (lane * P1), 23) * P2 + P3
        pos += 4
    while pos < nbytes:
        h = _rotl(h ^ (block[:, pos].astype(np.uint64) * P5), 11) * P1
        pos += 1
    h = (h ^ (h >> np.uint64(33))) * P2
    h = (h ^ (h >> np.uint64(29))) * P3
    return h ^ (h >> np.uint64(32))
