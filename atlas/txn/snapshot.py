"""The committed datasets of a snapshot, whatever the format version of its metadata.

A format v2 snapshot is a :class:`~atlas.catalog.Catalog` over the commit object's
parts, read lazily.  A format v1 snapshot (a store not upgraded yet) keeps its
datasets in the decoded manifest; :class:`ManifestCatalog` gives them the same
interface, so the working state has one code path for both.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import numpy as np

from atlas.backends.base import Backend
from atlas.catalog import Catalog, CommitObject, ReadRange
from atlas.engine.segment_io import SegmentIO
from atlas.errors import BackendError, CorruptStoreError, DatasetNotFoundError
from atlas.metadata import ArrayMeta, DatasetMeta, Manifest

__all__ = ["Base", "ManifestCatalog", "Snapshot", "open_snapshot", "part_reader"]

#: The committed metadata a handle reads: a v1 manifest or a v2 commit object.
Base = Manifest | CommitObject


class ManifestCatalog:
    """The :class:`~atlas.catalog.Catalog` interface over a v1 manifest's datasets."""

    def __init__(self, manifest: Manifest) -> None:
        self._datasets = manifest.datasets
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        """Every dataset name, sorted (a new list each call)."""
        if self._names is None:
            self._names = sorted(self._datasets)
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._datasets

    def __len__(self) -> int:
        return len(self._datasets)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> DatasetMeta:
        """The dataset ``name`` (:class:`DatasetNotFoundError` when there is none)."""
        ds = self._datasets.get(name) if isinstance(name, str) else None
        if ds is None:
            raise DatasetNotFoundError(f"dataset {name!r:.200} does not exist")
        return ds

    def arrays(self, name: str) -> dict[str, ArrayMeta]:
        """The arrays of dataset ``name`` (:class:`DatasetNotFoundError` when there is none)."""
        return self.get(name).arrays

    def key(self, name: str) -> tuple[int, int] | None:
        """``(id, version)`` of dataset ``name``, or None."""
        ds = self._datasets.get(name)
        return None if ds is None else (ds.id, ds.version)

    def items(self) -> Iterator[tuple[str, DatasetMeta]]:
        """``(name, dataset)`` pairs in name order."""
        for name in self.names():
            yield name, self._datasets[name]

    def array_names(self) -> list[str]:
        """Sorted array names defined by at least one dataset."""
        return sorted({a for ds in self._datasets.values() for a in ds.arrays})

    def live_slots(self, array: str) -> np.ndarray:
        """Sorted uint64 slots of ``array`` in every dataset."""
        slots = [ds.arrays[array].slot for ds in self._datasets.values() if array in ds.arrays]
        return np.sort(np.array(slots, dtype=np.uint64))

    def verify(self) -> None:
        """Nothing to check beyond the manifest itself (decoded when opened)."""


#: Parts up to this size are read whole by the first range read on an object store.
WHOLE_PART_BYTES = 4 << 20

#: What a working state reads its committed datasets through.
Snapshot = Catalog | ManifestCatalog


def part_reader(backend: Backend, io: SegmentIO, base: CommitObject) -> ReadRange:
    """Byte ranges of ``base``'s parts: through memory maps on local disk, range reads elsewhere.

    A part's size is the commit object's, so a memory map of any other size is
    refused as damage (as for segments).  Elsewhere a part of at most
    :data:`WHOLE_PART_BYTES` is fetched whole once; larger ones column by column.
    A committed part that is not there is damage (:class:`~atlas.errors.CorruptStoreError`);
    any other I/O failure stays a :class:`~atlas.errors.BackendError`.
    """
    sizes = {ref.path: ref.size for ref in base.parts}
    read = _raw_part_reader(backend, io, sizes)

    def read_committed(path: str, offset: int, length: int) -> bytes:
        try:
            return read(path, offset, length)
        except BackendError as exc:
            if path not in sizes or getattr(exc, "errno", None) != errno.ENOENT:
                raise  # a transient failure is not damage; an uncommitted part is not named yet
            raise CorruptStoreError(
                f"catalogue part {path} is missing (the commit object names it): {exc}"
            ) from None

    return read_committed


def _raw_part_reader(backend: Backend, io: SegmentIO, sizes: dict[str, int]) -> ReadRange:
    """:func:`part_reader` without the translation of a missing part."""
    if io.can_map:

        def read(path: str, offset: int, length: int) -> bytes:
            size = sizes.get(path)
            if size is None:  # a part being merged before it is committed
                return backend.get_ranges(path, [offset], [length])[0]  # type: ignore[return-value]
            return io.mapped(path, size)[offset : offset + length]  # type: ignore[return-value]

        return read
    # Range reads are requests: a small part is fetched whole on first use, so that
    # a lookup costs one request instead of one per column (index, names, ...).
    whole: dict[str, bytes] = {}

    def read_ranges(path: str, offset: int, length: int) -> bytes:
        size = sizes.get(path)
        if size is None or size > WHOLE_PART_BYTES:
            return backend.get_ranges(path, [offset], [length])[0]  # type: ignore[return-value]
        data = whole.get(path)
        if data is None:
            data = whole[path] = bytes(backend.get_ranges(path, [0], [size])[0])
        return data[offset : offset + length]  # a short file gives a short read: damage

    return read_ranges


def open_snapshot(backend: Backend, io: SegmentIO, base: Base, previous: Snapshot | None = None) -> Snapshot:
    """The datasets of ``base``; reads nothing yet for a v2 commit object.

    ``previous`` (the snapshot the handle read before) shares what it already
    read of the parts both snapshots list.
    """
    if isinstance(base, Manifest):
        return ManifestCatalog(base)
    shared = previous if isinstance(previous, Catalog) else None
    return Catalog(base.parts, part_reader(backend, io, base), previous=shared)
