"""The working state of a store handle: a committed snapshot plus pending changes.

``Atlas`` delegates bookkeeping here so that its own module stays about the public
API.  Datasets are copied on first write (copy-on-write), so a handle with no
pending changes shares every object with its snapshot.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import logging
import os
import secrets
from dataclasses import dataclass, field

import numpy as np

from atlas.backends.base import Backend, Version
from atlas.engine.arrays import FamilyEngine, build_segment
from atlas.engine.segment_io import SegmentIO
from atlas.errors import AtlasError, ConflictError, DatasetNotFoundError, SegmentMissingError
from atlas.leases import Lease
from atlas.metadata import ArrayFamily, ArrayMeta, DatasetMeta, Manifest, SegmentRef, Stats, encode_manifest
from atlas.names import encode_dir_name

__all__ = ["WorkingState"]

logger = logging.getLogger("atlas")


@dataclass
class WorkingState:
    """Snapshot ``base`` (at ``version``) with the handle's uncommitted changes."""

    backend: Backend
    manifest_name: str
    meta_format: str
    meta_compression: str
    base: Manifest
    version: Version
    datasets: dict[str, DatasetMeta] = field(init=False)
    dirty: set[str] = field(default_factory=set)
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
    #: landed although it raised (see :meth:`settle_unknown_commit`).
    unsure: tuple[Manifest, bytes, int] | None = None

    def __post_init__(self) -> None:
        self.io = SegmentIO(self.backend)
        #: Names this handle's spilled files so that a compaction keeps them.
        self.lease = Lease(self.backend)
        self._adopt(self.base, self.version)

    def _adopt(self, base: Manifest, version: Version) -> None:
        self.base = base
        self.version = version
        self.datasets = dict(base.datasets)
        self.next_slot = base.next_slot
        self.next_dataset_id = base.next_dataset_id
        for name, engine in self.engines.items():
            engine.set_family(base.families.get(name, ArrayFamily(engine.family.dir)))

    # -- lookups ---------------------------------------------------------------------------

    def dataset(self, name: str) -> DatasetMeta:
        ds = self.datasets.get(name) if isinstance(name, str) else None  # a list or dict is unhashable
        if ds is None:
            raise DatasetNotFoundError(f"dataset {name!r:.200} does not exist")
        return ds

    def engine(self, array_name: str) -> FamilyEngine:
        engine = self.engines.get(array_name)
        if engine is None:
            family = self.base.families.get(array_name) or ArrayFamily(encode_dir_name(array_name))
            engine = self.engines[array_name] = FamilyEngine(array_name, family, self.io)
        return engine

    @property
    def has_changes(self) -> bool:
        return bool(self.dirty)

    # -- mutations ---------------------------------------------------------------------------

    def touch(self, name: str) -> DatasetMeta:
        """The dataset's working copy, copied from the snapshot on first change."""
        ds = self.dataset(name)
        self.changes += 1
        if name not in self.dirty:
            ds = copy.deepcopy(ds)
            self.datasets[name] = ds
            self.dirty.add(name)
        return ds

    def add_dataset(self, name: str) -> DatasetMeta:
        ds = DatasetMeta(id=self.next_dataset_id, version=self.base.generation + 1)
        self.changes += 1
        self.next_dataset_id += 1
        self.datasets[name] = ds
        self.dirty.add(name)
        return ds

    def remove_dataset(self, name: str) -> None:
        ds = self.dataset(name)
        self.changes += 1
        for array_name, meta in ds.arrays.items():
            self.engine(array_name).discard(meta.slot)
        del self.datasets[name]
        self.dirty.add(name)

    def new_slot(self) -> int:
        slot = self.next_slot
        self.next_slot += 1
        return slot

    def discard(self) -> None:
        """Drop every pending change (and spilled segment); back to the snapshot."""
        if not self.backend.read_only:
            for engine in self.engines.values():
                for ref, _ in engine.spilled:
                    with contextlib.suppress(AtlasError):  # an orphan left here is swept by compact()
                        self.backend.delete(engine.path(ref))
        self.adopt(self.base, self.version)

    def adopt(self, base: Manifest, version: Version) -> None:
        """Forget every pending change and move to snapshot ``base``."""
        for engine in self.engines.values():
            engine.reset()
        self.dirty.clear()
        self.changes += 1
        self.unsure = None
        self._adopt(base, version)
        self.lease.release()  # no spilled file is pending any more

    def _pending_metas(self) -> dict[str, dict[int, ArrayMeta]]:
        """``{array name: {slot: meta}}`` of every array in a changed dataset."""
        out: dict[str, dict[int, ArrayMeta]] = {}
        for name in self.dirty:
            ds = self.datasets.get(name)
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
        files fresh (see :mod:`atlas.leases`).
        """
        if sum(e.pending_nbytes for e in self.engines.values()) <= self.max_pending_bytes:
            self.lease.renew()
            return
        metas = self._pending_metas()
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

    # -- commit ------------------------------------------------------------------------------

    def array_stats(self, array_name: str, meta: ArrayMeta, where: str) -> Stats:
        """Stats including pending writes (equal to what a flush would store)."""
        engine = self.engine(array_name)
        if meta.slot in engine.pending or meta.slot in engine.spilled_slots or meta.stats is None:
            return engine.stats(meta, where)
        return meta.stats

    def build_commit(self) -> tuple[Manifest, list[tuple[str, list, SegmentRef]]]:
        """The next manifest and the segment files it references (not yet written)."""
        gen = self.base.generation + 1
        token = secrets.token_bytes(16)
        new = Manifest(
            codec=self.base.codec,
            generation=gen,
            write_token=token.hex(),
            next_slot=self.next_slot,
            next_dataset_id=self.next_dataset_id,
            datasets=dict(self.base.datasets),
            families={k: ArrayFamily(f.dir, list(f.segments)) for k, f in self.base.families.items()},
            retired=list(self.base.retired),  # still within their grace period: compact() decides
        )
        live_slots: dict[str, dict[int, ArrayMeta]] = {}
        for name in sorted(self.dirty):
            ds = self.datasets.get(name)
            if ds is None:
                new.datasets.pop(name, None)
                continue
            committed = copy.copy(ds)
            committed.version = gen
            committed.arrays = {}
            for array_name, meta in ds.arrays.items():
                meta = copy.copy(meta)
                meta.stats = self.array_stats(array_name, meta, f"dataset {name!r} array {array_name!r}")
                committed.arrays[array_name] = meta
                live_slots.setdefault(array_name, {})[meta.slot] = meta
            new.datasets[name] = committed
        files = []
        names = set(live_slots) | {n for n, e in self.engines.items() if e.spilled}
        for array_name in sorted(names):
            engine = self.engine(array_name)
            family = new.families.setdefault(array_name, ArrayFamily(engine.family.dir))
            if engine.spilled:
                live = {m.slot for d in new.datasets.values() for a, m in d.arrays.items() if a == array_name}
                live_arr = np.fromiter(live, np.uint64, len(live))
                for ref, table in engine.spilled:
                    if np.isin(table["slot"], live_arr).any():
                        family.segments.append(ref)
                    else:  # holds only data of arrays deleted before they were ever committed
                        self.obsolete.append(engine.path(ref))
            metas = {s: m for s, m in live_slots.get(array_name, {}).items() if engine.pending.get(s)}
            if not metas:
                continue
            writer = build_segment(engine, metas, self.base.codec, gen, token, self.max_workers)
            parts, size, index_offset, index_length, digest = writer.finish()
            ref = SegmentRef(f"{gen:012d}-{token.hex()[:16]}.af", size, index_offset, index_length, digest, len(writer))
            family.segments.append(ref)
            files.append((f"{family.dir}/{ref.file}", parts, ref))
        for array_name in names:
            if not new.families[array_name].segments:
                del new.families[array_name]  # nothing stored under this name
        return new, files

    def commit(self) -> Manifest:
        """Write segments, then atomically replace the manifest (the commit point).

        On any failure, including :class:`ConflictError`, the pending changes stay
        as they were, so the same handle can retry.
        """
        landed = self.settle_unknown_commit()
        if landed is not None:
            return landed
        self.obsolete = []
        new, files = self.build_commit()
        self.lease.renew()
        for path, parts, _ref in files:
            self.backend.put(path, parts)
        self.check_added_segments(new)
        data = encode_manifest(new, self.meta_format, self.meta_compression)
        try:
            version = self.backend.commit(self.manifest_name, data, self.version)
        except ConflictError:
            raise ConflictError(
                f"another writer committed to {self.backend.location} since this handle read generation "
                f"{self.base.generation}; pending changes are kept: call refresh() and flush() again"
            ) from None
        except AtlasError:
            # The backend could not tell whether the manifest landed (a lost
            # response whose read-back failed too): the next flush or refresh
            # looks again before doing anything else.
            self.unsure = (new, data, self.changes)
            raise
        self._finish(new, version)
        return new

    def check_added_segments(self, new: Manifest) -> None:
        """Raise :class:`SegmentMissingError` unless every segment ``new`` adds is stored whole.

        Spilled segments were written by earlier calls, possibly long ago: a
        compaction may have swept them (an expired lease, a compactor that
        predates leases, ``grace_period=0``).  Committing a manifest that points
        at a missing file would lose the data silently, so the commit stops here,
        before the manifest is written.  One size query per added segment (a
        ``stat`` locally, a ``HEAD`` on object stores; a listing of the array
        directory on a backend without a ``size`` verb).
        """
        old = {(fam.dir, ref.file) for fam in self.base.families.values() for ref in fam.segments}
        size_of = getattr(self.backend, "size", None)
        listed: dict[str, dict[str, int]] = {}
        for array_name, fam in new.families.items():
            for ref in fam.segments:
                if (fam.dir, ref.file) in old:
                    continue
                path = f"{fam.dir}/{ref.file}"
                if size_of is not None:
                    try:
                        actual: int | None = int(size_of(path))
                    except AtlasError as exc:
                        if getattr(exc, "errno", None) != errno.ENOENT:
                            raise  # an I/O failure: the flush can be retried as it is
                        actual = None
                else:
                    if fam.dir not in listed:
                        listed[fam.dir] = {i.path: i.size for i in self.backend.list(fam.dir)}
                    actual = listed[fam.dir].get(path)
                if actual != ref.size:
                    found = "is missing" if actual is None else f"is {actual} bytes, {ref.size} were written"
                    raise SegmentMissingError(
                        f"cannot commit: segment {path} of array {array_name!r} written by this handle {found} "
                        "(a compaction swept it after the handle's lease over it expired, or another process "
                        "changed it); nothing was committed: call discard() and write the data again"
                    )

    def settle_unknown_commit(self) -> Manifest | None:
        """Resolve a commit whose outcome was unknown; the manifest it committed, if it landed.

        When the store's manifest is byte for byte the one that attempt sent (every
        manifest carries a unique write token) and the handle has not changed
        since, the attempt did commit: the handle moves to it and nothing is
        written again.  Otherwise the attempt is forgotten and the caller goes on
        as usual (a retried flush commits, or meets a ``ConflictError``).
        """
        if self.unsure is None:
            return None
        new, data, changes = self.unsure
        current = self.backend.get_versioned(self.manifest_name)  # an error here keeps it unsure
        self.unsure = None
        if current is None or current[0] != data or changes != self.changes:
            return None
        self._finish(new, current[1])
        return new

    def _finish(self, new: Manifest, version: Version) -> None:
        self.adopt(new, version)
        for path in self.obsolete:
            with contextlib.suppress(AtlasError):  # an orphan left here is swept by compact()
                self.backend.delete(path)

    def rebase(self, newer: Manifest, version: Version) -> None:
        """Adopt a newer snapshot and re-apply pending changes on top of it.

        Raises :class:`ConflictError` (changing nothing) when another writer changed
        a dataset this handle also changed.
        """
        for name in sorted(self.dirty):
            ours, theirs = self.base.datasets.get(name), newer.datasets.get(name)
            same = (ours is None and theirs is None) or (
                ours is not None and theirs is not None and (ours.id, ours.version) == (theirs.id, theirs.version)
            )
            if not same:
                raise ConflictError(
                    f"dataset {name!r} was changed by another writer and by this handle; "
                    "discard this handle's changes (reopen) or re-apply them to a fresh handle"
                )
        slot_shift = newer.next_slot - self.base.next_slot
        id_shift = newer.next_dataset_id - self.base.next_dataset_id
        if slot_shift:
            # Spilled records carry the old slot numbers: bring them back into memory
            # so they are re-keyed with the rest and rewritten by the next flush.
            metas = self._pending_metas()
            for array_name, engine in self.engines.items():
                for path in engine.unspill(metas.get(array_name, {})):
                    with contextlib.suppress(AtlasError):
                        self.backend.delete(path)
            self.lease.hold(self.spilled_paths())
        working = {n: self.datasets.get(n) for n in self.dirty}
        moved: list[tuple[FamilyEngine, ArrayMeta, object]] = []
        for ds in working.values():
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
        self._adopt(newer, version)
        self.next_slot, self.next_dataset_id = next_slot, next_id
        for name, ds in working.items():
            if ds is None:
                self.datasets.pop(name, None)
            else:
                self.datasets[name] = ds
