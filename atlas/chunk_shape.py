"""The chunk shape an array gets when its definition names none."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

__all__ = ["DEFAULT_CHUNK_BYTES", "default_chunk_shape", "default_chunks"]

#: Target size of a default chunk, in bytes.
DEFAULT_CHUNK_BYTES = 1 << 20


def default_chunk_shape(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    """The chunk shape used when ``define_array`` gets none.

    The whole array is one chunk when it is at most :data:`DEFAULT_CHUNK_BYTES`;
    otherwise the longest axis is halved until a chunk fits that size (the same
    idea as zarr's chunk guess, so whole rows of the last axis stay together
    longest).
    """
    return default_chunks(tuple(int(s) for s in shape), int(itemsize))


@functools.lru_cache(maxsize=1024)  # the shapes of a store's datasets repeat
def default_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """:func:`default_chunk_shape` of a tuple of ``int`` (cached)."""
    chunk = [max(1, s) for s in shape]
    while math.prod(chunk) * itemsize > DEFAULT_CHUNK_BYTES:
        axis = max(range(len(chunk)), key=lambda a: (chunk[a], -a))
        if chunk[axis] == 1:
            break
        chunk[axis] = -(-chunk[axis] // 2)
    return tuple(chunk)
