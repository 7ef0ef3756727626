"""Committing segments written elsewhere: fragments of a distributed ingest.

A worker of :func:`atlas.ingest` writes the chunks of its source files into new
segment files itself and returns a :class:`Fragment`: the dataset records it
built and the references of the segments it wrote, never array bytes.  The one
committing process adopts fragments into its working state and commits them
through :func:`atlas.txn.commit.publish` like any flush, so the commit rules are
the same: the segments are checked to be whole before the manifest is written,
and a conflict with another writer changes nothing.

**Slots.**  A segment's chunk index records the slot of every chunk, and segments
are immutable, so a worker must know the final slots before it writes.  The
committing process hands out disjoint *slot ranges* before any task runs: the
ranges start ``SLOT_HEADROOM`` above the store's ``next_slot`` as read when the
ingest began, so writers that commit meanwhile (allocating slots from the counter)
do not reach them.  The first commit of the ingest moves ``next_slot`` past every
range at once, which reserves them for good; from then on the counter protects
them like any allocated slot.  A range a failed task used is never referenced, and
its files are swept by ``compact`` like any orphan.  Nothing on disk changes: the
manifest holds ordinary slots and the segments ordinary records.
"""

from __future__ import annotations

import contextlib
import pickle
import zlib
from dataclasses import dataclass, field

from atlas.errors import AtlasError, ConflictError
from atlas.metadata import ArrayFamily, DatasetMeta, SegmentRef, check_counter
from atlas.txn.commit import build_flush, publish
from atlas.txn.state import WorkingState

__all__ = [
    "SLOT_HEADROOM", "Fragment", "SlotReservation", "StoredSource", "commit_fragments", "pack_fragment",
    "unpack_fragment",
]  # fmt: skip

#: Slots left free between the store's counter and the first reserved range, for
#: writers that commit while an ingest runs (each new array of theirs takes one).
SLOT_HEADROOM = 1 << 20


@dataclass
class StoredSource:
    """One source (file or callable) a task stored: its datasets, committed together."""

    label: str
    datasets: list[tuple[str, DatasetMeta]]
    nbytes: int = 0


@dataclass
class Fragment:
    """What a task returns: metadata only (dataset records and segment references)."""

    task: int
    slots: tuple[int, int]
    stored: list[StoredSource] = field(default_factory=list)
    #: ``(array name, family directory, reference)`` of every segment the task wrote.
    segments: list[tuple[str, str, SegmentRef]] = field(default_factory=list)
    #: ``(label, reason)`` of sources that failed (the task went on: skip_errors).
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: The lease object naming the task's segments until they are committed.
    lease: str = ""
    #: Bytes the task wrote into segment files.
    stored_bytes: int = 0

    def paths(self) -> list[str]:
        """Store paths of the task's segment files."""
        return [f"{d}/{ref.file}" for _, d, ref in self.segments]


def pack_fragment(frag: Fragment) -> bytes:
    """``frag`` as compressed bytes: what travels from a worker to the committing process.

    Dataset records of files from one source repeat the same attribute names and
    values, so they compress about tenfold.
    """
    return zlib.compress(pickle.dumps(frag, pickle.HIGHEST_PROTOCOL), 6)


def unpack_fragment(data: bytes) -> Fragment:
    """The fragment :func:`pack_fragment` made (the bytes come from this ingest's own tasks)."""
    frag = pickle.loads(zlib.decompress(data))
    if not isinstance(frag, Fragment):
        raise AtlasError(f"an ingest task returned {type(frag).__name__}, not a fragment")
    return frag


@dataclass
class SlotReservation:
    """The slot ranges of one ingest; ``claimed`` once a commit moved the counter past them."""

    start: int
    end: int
    claimed: bool = False

    @classmethod
    def plan(cls, next_slot: int, sizes: list[int]) -> tuple[SlotReservation, list[tuple[int, int]]]:
        """Disjoint ranges of ``sizes`` slots each, above ``next_slot`` + headroom."""
        start = next_slot + SLOT_HEADROOM
        ranges, lo = [], start
        for n in sizes:
            ranges.append((lo, lo + n))
            lo += n
        check_counter("next_slot", lo, "ingest slot reservation")
        return cls(start, lo), ranges


def _adopt(state: WorkingState, fragments: list[Fragment], reservation: SlotReservation) -> list[tuple[str, str]]:
    """Stage ``fragments``' datasets in ``state``; the ``(label, reason)`` of sources refused."""
    if not reservation.claimed and state.base.next_slot > reservation.start:
        raise ConflictError(
            f"other writers allocated {state.base.next_slot - reservation.start + SLOT_HEADROOM} slots of "
            f"{state.backend.location} while this ingest ran, more than the {SLOT_HEADROOM} it left free: "
            "its slot ranges are taken; nothing of it was committed, run it again"
        )
    refused: list[tuple[str, str]] = []
    for frag in fragments:
        lo, hi = frag.slots
        if not (reservation.start <= lo <= hi <= reservation.end):
            raise AtlasError(f"fragment of task {frag.task} holds slots {lo}..{hi} outside the reservation")
        for src in frag.stored:
            taken = [n for n, _ in src.datasets if state.has_dataset(n)]
            if taken:
                refused.append((src.label, f"dataset {taken[0]!r} already exists in the store"))
                continue
            for name, meta in src.datasets:
                if any(not lo <= m.slot < hi for m in meta.arrays.values()):
                    raise AtlasError(f"dataset {name!r} of task {frag.task} uses a slot outside its range")
                ds = state.add_dataset(name)
                ds.arrays = dict(meta.arrays)
                ds.attributes = meta.attributes
    state.next_slot = max(state.next_slot, reservation.end)
    return refused


def commit_fragments(
    state: WorkingState, fragments: list[Fragment], reservation: SlotReservation
) -> list[tuple[str, str]]:
    """Commit ``fragments`` as one new generation; the sources refused (name taken).

    ``state`` must have no pending changes.  On :class:`ConflictError` (another
    writer committed first) nothing is committed and ``state`` is back at its
    snapshot: refresh it and call again.  Any other failure also leaves ``state``
    at its snapshot.
    """
    if state.has_changes:
        raise AtlasError("commit_fragments needs a handle without pending changes")
    try:
        refused = _adopt(state, fragments, reservation)
        new, files = build_flush(state)  # no chunks are staged: the files are catalogue parts
        for array_name, directory, ref in (s for f in fragments for s in f.segments):
            family = new.families.setdefault(array_name, ArrayFamily(directory))
            if family.dir != directory:
                raise AtlasError(f"segment of array {array_name!r} written under {directory!r}, not {family.dir!r}")
            family.segments.append(ref)
        state.lease.renew()
        publish(
            state,
            new,
            files,
            f"another writer committed to {state.backend.location} since generation {state.base.generation}",
        )
    except BaseException:
        with contextlib.suppress(Exception):
            state.adopt(state.base, state.version)
        raise
    reservation.claimed = True
    return refused
