"""The few verbs the engine needs from a storage backend.

Each verb is a tiny protocol of its own (in the spirit of obspec), so a backend is
anything that implements them and a test wrapper can intercept any single one.
Paths are ``/``-separated and relative to the store root.  Every failure surfaces
as an :class:`atlas.errors.AtlasError` (usually :class:`~atlas.errors.BackendError`
naming the operation and the path).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Backend",
    "CALLED_VERBS",
    "Buffer",
    "CanCommit",
    "CanDelete",
    "CanGet",
    "CanGetRanges",
    "CanList",
    "CanMap",
    "CanPut",
    "CanStat",
    "MAX_GET_BYTES",
    "ObjectInfo",
    "VERBS",
    "Version",
]

#: Anything with the buffer protocol: bytes, memoryview, numpy arrays.
Buffer = bytes | bytearray | memoryview | np.ndarray

#: An opaque version tag of an object (an ETag, or a local file identity).
Version = str

#: The largest object ``get``/``get_versioned`` read whole (those reads are for the
#: manifest): a larger one is refused from its size, before any byte is read.
MAX_GET_BYTES = 1 << 31


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    path: str
    size: int
    mtime: float


class CanGet(Protocol):
    def get(self, path: str) -> bytes:
        """The whole object (raises :class:`~atlas.errors.BackendError` when absent)."""
        ...

    def get_versioned(self, path: str) -> tuple[bytes, Version] | None:
        """The whole object and its version tag, or None when it does not exist."""
        ...


class CanGetRanges(Protocol):
    def get_ranges(self, path: str, starts: Sequence[int], lengths: Sequence[int]) -> list[Buffer]:
        """Byte ranges of one object, in the order asked."""
        ...


class CanStat(Protocol):
    def size(self, path: str) -> int:
        """The object's size in bytes (raises :class:`~atlas.errors.BackendError` when absent)."""
        ...

    def exists(self, path: str) -> bool:
        """True when the object exists."""
        ...


class CanPut(Protocol):
    def put(self, path: str, parts: Sequence[Buffer]) -> None:
        """Write a new immutable object durably (its name is never reused)."""
        ...


class CanCommit(Protocol):
    def commit(self, path: str, data: bytes, expected: Version | None) -> Version:
        """Replace ``path`` atomically if its version is still ``expected``.

        ``expected=None`` means the object must not exist yet.  Raises
        :class:`~atlas.errors.ConflictError` when the version moved on.
        """
        ...


class CanDelete(Protocol):
    def delete(self, path: str) -> None:
        """Remove an object; a missing object is not an error."""
        ...


class CanList(Protocol):
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``."""
        ...


@runtime_checkable
class CanMap(Protocol):
    def map(self, path: str) -> np.ndarray:
        """A read-only uint8 memory map of the whole object."""
        ...


class Backend(CanGet, CanGetRanges, CanStat, CanPut, CanCommit, CanDelete, CanList, Protocol):
    """Everything a writable store needs; ``location`` names it in messages.

    A read-only backend implements every verb too: its writes raise
    :class:`~atlas.errors.ReadOnlyError`.  :class:`CanMap` is optional (local disk).
    """

    location: str
    read_only: bool

    def close(self) -> None:
        """Release handles and maps."""
        ...


#: Every verb of :class:`Backend` (``map`` is optional); the conformance tests check each backend.
VERBS = ("get", "get_versioned", "get_ranges", "size", "exists", "put", "commit", "delete", "list", "close")
#: The verbs the engine and the transaction layer call: an object with these (and a
#: ``location``) is taken as a backend as it is (test and instrumentation wrappers).
CALLED_VERBS = ("get", "get_versioned", "get_ranges", "put", "commit", "delete", "list", "close")
