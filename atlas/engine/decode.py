"""Decoding many compressed chunks out of one buffer into one scratch buffer."""

from __future__ import annotations

import blosc2
import numpy as np

from atlas.engine.codecs import RAW
from atlas.errors import ChecksumError, CorruptStoreError

__all__ = ["decode_many"]


def decode_many(
    src: np.ndarray,
    offsets: np.ndarray,
    nbytes: np.ndarray,
    codecs: np.ndarray,
    dst: np.ndarray,
    dst_starts: np.ndarray,
    raw_nbytes: np.ndarray,
    where: str,
) -> None:
    """Decompress chunk ``i`` (``src[offsets[i]:][:nbytes[i]]``) into ``dst[dst_starts[i]:][:raw_nbytes[i]]``.

    Payload checksums must have been verified by the caller; a chunk that still
    fails to decode, or decodes to the wrong size, raises a clear error.
    """
    for i in range(offsets.shape[0]):
        o, n, d, r = int(offsets[i]), int(nbytes[i]), int(dst_starts[i]), int(raw_nbytes[i])
        if codecs[i] == RAW:
            dst[d : d + r] = src[o : o + n]
            continue
        try:
            got = blosc2.decompress2(src[o : o + n], dst=dst[d : d + r], nthreads=1)
        except Exception as exc:  # blosc2 raises several types for damaged input
            raise ChecksumError(f"{where}: chunk at offset {o} cannot be decompressed: {exc}") from None
        if got is not None and not isinstance(got, (np.ndarray, memoryview, bytes)) and got != r:
            raise CorruptStoreError(f"{where}: chunk at offset {o} decoded to {got} bytes, expected {r}")
