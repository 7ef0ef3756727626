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


#: First byte of a packed fragment: how the msgpack body is stored.
_RAW, _ZSTD = b"r", b"z"
#: zstd level of a packed fragment: over one block, level 5 makes fragments of
#: profile files within 8% of level 9's size at a thirtieth of its time.
_CLEVEL = 5
#: Bodies larger than this are sent raw (one blosc2 block holds at most this much).
_MAX_BLOCK = 1 << 28


def pack_fragment(frag: Fragment) -> bytes:
    """``frag`` as compressed bytes: what travels from a worker to the committing process.

    The body is MessagePack (dataset records in their catalogue encoding, see
    :func:`atlas.catalog.encoding.encode_record`) compressed with zstd as *one*
    block: the records of one batch repeat the same keys and most values, so the
    whole batch compresses about 45 times (profile files: ~17 kB of records per
    file become ~350 bytes in a batch of 64), where a block per record would not.
    """
    import msgpack

    from atlas.catalog.encoding import encode_record
    from atlas.engine.codecs import blosc2

    stored = [[s.label, [[n, encode_record(ds)] for n, ds in s.datasets]] for s in frag.stored]
    segments = [[a, d, [r.file, r.size, r.index_offset, r.index_length, r.index_checksum, r.records]]
                for a, d, r in frag.segments]  # fmt: skip
    body = msgpack.packb(
        [frag.task, list(frag.slots), stored, segments, [list(f) for f in frag.failed], frag.lease, frag.stored_bytes],
        use_bin_type=True,
    )
    if not body or len(body) > _MAX_BLOCK:
        return _RAW + body
    b2 = blosc2()
    packed = b2.compress2(
        body, codec=b2.Codec.ZSTD, clevel=_CLEVEL, typesize=1, blocksize=len(body),
        splitmode=b2.SplitMode.NEVER_SPLIT, filters=[b2.Filter.NOFILTER], nthreads=1,
    )  # fmt: skip
    return _ZSTD + packed


def unpack_fragment(data: bytes) -> Fragment:
    """The fragment :func:`pack_fragment` made, with the catalogue's checks on every record."""
    import msgpack

    from atlas.catalog.encoding import decode_record
    from atlas.engine.codecs import blosc2

    where = "an ingest task's fragment"
    try:
        kind, body = data[:1], data[1:]
        if kind == _ZSTD:
            body = blosc2().decompress2(body, nthreads=1)
        elif kind != _RAW:
            raise ValueError(f"unknown encoding {kind!r}")
        task, slots, stored, segments, failed, lease, stored_bytes = msgpack.unpackb(
            body, raw=False, strict_map_key=True
        )
        lo, hi = slots
        _expect(int, task, lo, hi, stored_bytes)
        _expect(str, lease)
        frag = Fragment(task, (lo, hi), lease=lease, stored_bytes=stored_bytes)
        frag.failed = [(label, reason) for label, reason in failed]
        _expect(str, *(x for pair in frag.failed for x in pair))
        frag.segments = [(a, d, SegmentRef(*ref)) for a, d, ref in segments]
        for a, d, ref in frag.segments:
            _expect(str, a, d, ref.file)
            _expect(int, ref.size, ref.index_offset, ref.index_length, ref.index_checksum, ref.records)
        for label, datasets in stored:
            _expect(str, label)
            records = []
            for name, raw in datasets:
                _expect(str, name)
                ds = decode_record(raw, f"{where}, dataset {name!r}")
                if ds is None:
                    raise ValueError(f"dataset {name!r} has no record")
                records.append((name, ds))
            frag.stored.append(StoredSource(label, records))
    except AtlasError:
        raise
    except Exception as exc:  # a task of another version of atlas, or damage in transit
        raise AtlasError(f"{where} cannot be decoded: {type(exc).__name__}: {exc}") from None
    return frag


def _expect(kind: type, *values: object) -> None:
    """Refuse a decoded field of the wrong type (a damaged body can still be valid MessagePack)."""
    for v in values:
        if type(v) is not kind:
            raise TypeError(f"a field holds {type(v).__name__} {v!r}, not {kind.__name__}")


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
