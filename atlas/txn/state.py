"""The working state of a store handle: a committed snapshot plus pending changes.

``Atlas`` delegates bookkeeping here so that its own module stays about the public
API.  The committed datasets are read lazily through the snapshot
(:mod:`atlas.txn.snapshot`); the handle keeps only an overlay of the datasets it
changed (``pending``), each copied on first write, so opening a store or
committing to it creates no Python object per dataset.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
from collections.abc import Iterator, KeysView, Sequence
from dataclasses import dataclass, field

from atlas.backends.base import Backend, Version
from atlas.catalog import Catalog
from atlas.engine.family import FamilyEngine
from atlas.engine.segment_io import SegmentIO
from atlas.errors import AtlasError, ConflictError, DatasetNotFoundError
from atlas.metadata import COUNTER_LIMITS, ArrayFamily, ArrayMeta, DatasetMeta, Manifest, Stats, check_counter
from atlas.names import encode_dir_name
from atlas.txn.leases import Lease
from atlas.txn.snapshot import Base, Snapshot, open_snapshot

__all__ = ["WorkingState", "shallow_copy"]

logger = logging.getLogger("atlas")

# The counter limits, read once: every new dataset and array compares against them.
_ID_LIMIT = COUNTER_LIMITS["next_dataset_id"]
_SLOT_LIMIT = COUNTER_LIMITS["next_slot"]


@dataclass
class WorkingState:
    """Snapshot ``base`` (at ``version``) with the handle's uncommitted changes."""

    backend: Backend
    manifest_name: str
    meta_format: str
    meta_compression: str
    base: Base
    version: Version
    #: The committed datasets of ``base`` (read lazily).
    snapshot: Snapshot = field(init=False)
    #: Datasets this handle created, changed (its working copies) or deleted (None).
    pending: dict[str, DatasetMeta | None] = field(default_factory=dict)
    next_slot: int = field(init=False)
    next_dataset_id: int = field(init=False)
    engines: dict[str, FamilyEngine] = field(default_factory=dict)
    #: Staged chunk bytes above which they are spilled to uncommitted segments.
    max_pending_bytes: int = 256 << 20
    #: Threads that decode chunks of one bulk read in parallel.
    max_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: Spilled files the commit being built leaves out (deleted once it lands).
    obsolete: list[str] = field(default_factory=list)
    #: Bumped by every change, so that a later call can tell whether the handle
    #: changed since a commit attempt.
    changes: int = 0
    #: ``(manifest, bytes, changes)`` of a commit whose manifest write may have
    #: landed although it raised (see :func:`atlas.txn.commit.settle_unknown_commit`).
    unsure: tuple[Base, bytes, int] | None = None

    def __post_init__(self) -> None:
        self.io = SegmentIO(self.backend)
        #: Names this handle's spilled files so that a compaction keeps them.
        self.lease = Lease(self.backend)
        #: Committed datasets materialised from the snapshot (read-only objects).
        self._seen: dict[str, DatasetMeta] = {}
        self._seen_arrays: dict[str, dict[str, ArrayMeta]] = {}
        self.snapshot = open_snapshot(self.backend, self.io, self.base)
        self._adopt(self.base, self.version, self.snapshot)

    def _adopt(self, base: Base, version: Version, snapshot: Snapshot | None = None) -> None:
        self.base = base
        self.version = version
        # ``is None``, not truth: the truth of a catalogue is its length, which lists every name.
        self.snapshot = open_snapshot(self.backend, self.io, base, self.snapshot) if snapshot is None else snapshot
        self._seen = {}
        self._seen_arrays = {}
        self.next_slot = base.next_slot
        self.next_dataset_id = base.next_dataset_id
        for name, engine in self.engines.items():
            engine.set_family(base.families.get(name, ArrayFamily(engine.family.dir)))

    # -- lookups ---------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog | None:
        """The committed snapshot's catalogue, or None while the store is format v1."""
        return self.snapshot if isinstance(self.snapshot, Catalog) else None

    @property
    def dirty(self) -> KeysView[str]:
        """Names of the datasets this handle created, changed or deleted."""
        return self.pending.keys()

    def dataset(self, name: str) -> DatasetMeta:
        if not isinstance(name, str):  # a list or dict is unhashable
            raise DatasetNotFoundError(f"dataset {name!r:.200} does not exist")
        if name in self.pending:
            ds = self.pending[name]
            if ds is None:
                raise DatasetNotFoundError(f"dataset {name!r:.200} does not exist")
            return ds
        ds = self._seen.get(name)
        if ds is None:
            ds = self.snapshot.get(name)
            if len(self._seen) >= 65536:  # a bound on what a long scan keeps
                self._seen.clear()
            self._seen[name] = ds
        return ds

    def arrays(self, name: str) -> dict[str, ArrayMeta]:
        """The arrays of dataset ``name`` (a committed one's read without its attributes).

        Raises
        ------
        DatasetNotFoundError
            When there is no such dataset.
        """
        if not isinstance(name, str) or name in self.pending:
            return self.dataset(name).arrays
        ds = self._seen.get(name)
        if ds is not None:
            return ds.arrays
        arrays = self._seen_arrays.get(name)
        if arrays is None:
            arrays = self.snapshot.arrays(name)
            if len(self._seen_arrays) >= 1 << 20:  # a bound on what repeated bulk reads keep
                self._seen_arrays.clear()
            self._seen_arrays[name] = arrays
        return arrays

    def has_dataset(self, name: object) -> bool:
        """True when ``name`` is a dataset of this handle (pending changes included)."""
        if not isinstance(name, str):
            return False
        if name in self.pending:
            return self.pending[name] is not None
        return name in self._seen or name in self.snapshot

    def first_existing(self, names: Sequence[str]) -> str | None:
        """The first of ``names`` (each a str) that is a dataset of this handle, or None.

        :meth:`has_dataset` for many names at once: a pending change decides for its
        name (a deletion frees it), the snapshot for the others; a catalogue looks
        them up part by part (:meth:`Catalog.first_live`), and a format 1 snapshot
        that holds no dataset is not searched at all.
        """
        pending = self.pending
        catalog = self.catalog
        if catalog is not None:
            if not pending:
                return catalog.first_live(names)
            taken = {x for x in names if pending.get(x) is not None}
            live = catalog.first_live([x for x in names if x not in pending])
            if live is not None:  # the first committed one: no later one can come first
                taken.add(live)
            return next((x for x in names if x in taken), None)
        base = self.base  # a format 1 manifest: a commit object has a catalogue
        if isinstance(base, Manifest) and not base.datasets:
            for name in names:
                if pending.get(name) is not None:
                    return name
            return None
        seen, snapshot = self._seen, self.snapshot
        for name in names:
            if name in pending:
                if pending[name] is not None:
                    return name
            elif name in seen or name in snapshot:
                return name
        return None

    def names(self) -> list[str]:
        """Every dataset name, sorted (pending changes included)."""
        names = self.snapshot.names()
        if not self.pending:
            return names
        if len(self.pending) > 64:
            live = set(names)
            for name, ds in self.pending.items():
                if ds is None:
                    live.discard(name)
                else:
                    live.add(name)
            return sorted(live)
        for name, ds in self.pending.items():  # a few changes: edit the sorted list in place
            i = bisect.bisect_left(names, name)
            there = i < len(names) and names[i] == name
            if ds is None and there:
                del names[i]
            elif ds is not None and not there:
                names.insert(i, name)
        return names

    def count(self) -> int:
        """The number of datasets (pending changes included)."""
        n = len(self.snapshot)
        for name, ds in self.pending.items():
            n += (ds is not None) - (name in self.snapshot)
        return n

    def array_names(self) -> list[str]:
        """Sorted array names defined by at least one dataset (pending changes included)."""
        out = {a for ds in self.pending.values() if ds is not None for a in ds.arrays}
        overridden: dict[str, int] = {}
        for name in self.pending:
            if name in self.snapshot:
                for a in self.snapshot.get(name).arrays:
                    overridden[a] = overridden.get(a, 0) + 1
        for a in self.snapshot.array_names():
            # Kept unless every committed dataset defining it is changed or deleted here.
            if a not in out and (a not in overridden or self.snapshot.live_slots(a).size > overridden[a]):
                out.add(a)
        return sorted(out)

    def items(self) -> Iterator[tuple[str, DatasetMeta]]:
        """``(name, dataset)`` of every dataset in name order (materialises each)."""
        for name in self.names():
            yield name, self.dataset(name)

    def engine(self, array_name: str) -> FamilyEngine:
        engine = self.engines.get(array_name)
        if engine is None:
            family = self.base.families.get(array_name) or ArrayFamily(encode_dir_name(array_name))
            engine = self.engines[array_name] = FamilyEngine(array_name, family, self.io)
        return engine

    @property
    def has_changes(self) -> bool:
        return bool(self.pending)

    # -- mutations ---------------------------------------------------------------------------

    def touch(self, name: str) -> DatasetMeta:
        """The dataset's working copy, copied from the snapshot on first change.

        Copy-on-write once per dataset per transaction: later changes to the same
        dataset find its working copy in ``pending`` and copy nothing.

        Raises
        ------
        DatasetNotFoundError
            When there is no such dataset (or this handle deleted it).
        """
        ds = self.pending.get(name) if type(name) is str else None
        if ds is None:
            ds = self.dataset(name)  # raises for a missing or deleted dataset
            if name not in self.pending:
                ds = self.pending[name] = _copy_dataset(ds)
        self.changes += 1
        return ds

    def add_dataset(self, name: str) -> DatasetMeta:
        """Stage a new, empty dataset ``name`` (the caller checked that it is free)."""
        next_id = self.next_dataset_id
        if next_id + 1 > _ID_LIMIT:
            check_counter("next_dataset_id", next_id + 1, self.backend.location)
        ds = DatasetMeta(next_id, self.base.generation + 1, {}, {})
        self.changes += 1
        self.next_dataset_id = next_id + 1
        self.pending[name] = ds
        return ds

    def remove_dataset(self, name: str) -> None:
        ds = self.dataset(name)
        self.changes += 1
        for array_name, meta in ds.arrays.items():
            self.engine(array_name).discard(meta.slot)
        self.pending[name] = None

    def new_slot(self) -> int:
        """Take the next array slot (``CorruptStoreError`` past the counter's limit)."""
        slot = self.next_slot
        if slot + 1 > _SLOT_LIMIT:
            check_counter("next_slot", slot + 1, self.backend.location)
        self.next_slot = slot + 1
        return slot

    def discard(self) -> None:
        """Drop every pending change (and spilled segment); back to the snapshot."""
        if not self.backend.read_only:
            for engine in self.engines.values():
                for ref, _ in engine.spilled:
                    with contextlib.suppress(AtlasError):  # an orphan left here is swept by compact()
                        self.backend.delete(engine.path(ref))
        self.adopt(self.base, self.version)

    def adopt(self, base: Base, version: Version) -> None:
        """Forget every pending change and move to snapshot ``base``."""
        for engine in self.engines.values():
            engine.reset()
        self.pending.clear()
        self.changes += 1
        self.unsure = None
        self._adopt(base, version)
        self.lease.release()  # no spilled file is pending any more

    def pending_metas(self) -> dict[str, dict[int, ArrayMeta]]:
        """``{array name: {slot: meta}}`` of every array in a changed dataset."""
        out: dict[str, dict[int, ArrayMeta]] = {}
        for ds in self.pending.values():
            if ds is not None:
                for array_name, meta in ds.arrays.items():
                    out.setdefault(array_name, {})[meta.slot] = meta
        return out

    def spilled_paths(self) -> list[str]:
        """Store paths of every spilled (written, not yet committed) segment."""
        return [engine.path(ref) for engine in self.engines.values() for ref, _ in engine.spilled]

    def maybe_spill(self) -> None:
        """Spill staged chunks to uncommitted segments when they exceed the budget.

        Called after every write, it also keeps the lease over earlier spilled
        files fresh (see :mod:`atlas.txn.leases`).
        """
        staged = 0
        for engine in self.engines.values():  # a loop: cheaper than sum() over a generator
            staged += engine.pending_nbytes
        if staged <= self.max_pending_bytes:
            self.lease.renew()
            return
        metas = self.pending_metas()
        for array_name, engine in sorted(self.engines.items(), key=lambda kv: -kv[1].pending_nbytes):
            if engine.pending:
                try:
                    engine.spill(
                        metas.get(array_name, {}), self.base.codec, self.base.generation + 1, self.backend.put,
                        self.max_workers,
                    )  # fmt: skip
                except AtlasError as exc:
                    # The write itself succeeded in memory; spilling is retried at the
                    # next write and a persistent failure surfaces at flush().
                    logger.warning("could not spill staged chunks of %r: %s", array_name, exc)
                    break
        self.lease.hold(self.spilled_paths())

    # -- stats and rebase ----------------------------------------------------------------------

    def array_stats(self, array_name: str, meta: ArrayMeta, where: str) -> Stats:
        """Stats including pending writes (equal to what a flush would store)."""
        engine = self.engine(array_name)
        spilled = meta.slot in engine.spilled_slots
        if meta.slot in engine.pending or spilled or meta.stats is None:
            # Slots from next_slot on were taken since the snapshot: no segment holds them
            # unless this handle spilled them, so a commit of new datasets reads no index.
            return engine.stats(meta, where, stored=spilled or meta.slot < self.base.next_slot)
        return meta.stats

    def rebase(self, newer: Base, version: Version) -> None:
        """Adopt a newer snapshot and re-apply pending changes on top of it.

        Raises :class:`ConflictError` (changing nothing) when another writer changed
        a dataset this handle also changed.
        """
        snapshot = open_snapshot(self.backend, self.io, newer, self.snapshot)
        for name in sorted(self.pending):
            if self.snapshot.key(name) != snapshot.key(name):
                raise ConflictError(
                    f"dataset {name!r} was changed by another writer and by this handle; "
                    "discard this handle's changes (reopen) or re-apply them to a fresh handle"
                )
        slot_shift = newer.next_slot - self.base.next_slot
        id_shift = newer.next_dataset_id - self.base.next_dataset_id
        if slot_shift:
            # Spilled records carry the old slot numbers: bring them back into memory
            # so they are re-keyed with the rest and rewritten by the next flush.
            metas = self.pending_metas()
            for array_name, engine in self.engines.items():
                for path in engine.unspill(metas.get(array_name, {})):
                    with contextlib.suppress(AtlasError):
                        self.backend.delete(path)
            self.lease.hold(self.spilled_paths())
        moved: list[tuple[FamilyEngine, ArrayMeta, object]] = []
        for ds in self.pending.values():
            if ds is None:
                continue
            if ds.id >= self.base.next_dataset_id:
                ds.id += id_shift
            for array_name, meta in ds.arrays.items():
                if meta.slot >= self.base.next_slot and slot_shift:
                    engine = self.engine(array_name)
                    moved.append((engine, meta, engine.pending.pop(meta.slot, None)))
        # Re-key staged chunks only after every old key is out, so no two swap.
        for engine, meta, staged in moved:
            meta.slot += slot_shift
            if staged is not None:
                engine.pending[meta.slot] = staged
        next_slot, next_id = self.next_slot + slot_shift, self.next_dataset_id + id_shift
        self._adopt(newer, version, snapshot)
        self.next_slot, self.next_dataset_id = next_slot, next_id


def shallow_copy(obj: object) -> object:
    """A new instance of ``obj``'s class holding the same field values (``copy.copy``
    of a dataclass, without its generic protocol: a few times faster)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def _copy_dataset(ds: DatasetMeta) -> DatasetMeta:
    """A working copy of ``ds`` that shares nothing mutable with it.

    Its dicts and the array records in them are copied; what they hold (tuples,
    typed attribute values, stats) is replaced, never changed in place, so it is
    shared.  Much cheaper than ``copy.deepcopy`` and just as safe.
    """
    new = shallow_copy(ds)
    new.attributes = dict(ds.attributes)
    arrays = {}
    for key, meta in ds.arrays.items():
        arrays[key] = copied = shallow_copy(meta)
        copied.attributes = dict(meta.attributes)
    new.arrays = arrays
    return new
