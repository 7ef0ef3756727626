"""Committing segments and records written elsewhere: fragments of a distributed ingest.

A worker of :func:`atlas.ingest` writes the chunks of its source files into new
segment files, and the dataset records of those sources into a *task part*: an
ordinary catalogue part file (``docs/format-v2.md``) under ``_catalog/``, with
provisional ids and versions, that no commit object ever lists (it is a transport
file, held by the task's lease like its segments and deleted once committed).  The
task returns a :class:`Fragment`: per source its dataset names, the references of
the segments, the task part's entry, never records nor array bytes.

A commit of a batch of fragments runs in two steps.  The committing process (the
*client*) decides which sources are refused (a name the store already holds, or
one an earlier source of the batch stores) and plans a :class:`CommitJob`: the new
generation and write token, the base commit's parts, the first dataset id, and per
task part the names to commit in id order.  A worker runs the job
(:func:`build_commit_part`): it reads the task parts, gives the rows their final
ids (consecutive from the store's ``next_dataset_id``, in the order of the
fragments in the batch, each source's datasets in the order its task stored them)
and the new generation as version, and writes the commit's catalogue part, merged
with the newest base parts as the merge policy says (the same
:func:`atlas.txn.parts.part_with_merge` a local commit uses).  The client then
builds the commit object (segments added to their families, counters advanced,
replaced parts retired) and publishes it with :func:`atlas.txn.commit.publish`
like any flush: every added file is checked to be whole before the commit object
is written, and a conflict with another writer changes nothing (the client plans
again on the new generation; the part of the lost attempt is an orphan).

**Slots.**  A segment's chunk index records the slot of every chunk, and segments
are immutable, so a worker must know the final slots before it writes.  The
committing process hands out disjoint *slot ranges* before any task runs: the
ranges start ``SLOT_HEADROOM`` above the store's ``next_slot`` as read when the
ingest began, so writers that commit meanwhile (allocating slots from the counter)
do not reach them.  The first commit of the ingest moves ``next_slot`` past every
range at once, which reserves them for good; from then on the counter protects
them like any allocated slot.  A range a failed task used is never referenced, and
its files are swept by ``compact`` like any orphan.  Nothing on disk changes: the
commit object holds ordinary slots, the segments ordinary records and the
catalogue ordinary parts.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

from atlas.backends.base import Backend
from atlas.catalog import CATALOG_DIR, CommitObject, PartRef, part_filename
from atlas.errors import AtlasError, ConflictError
from atlas.metadata import ArrayFamily, SegmentRef, check_counter
from atlas.names import encode_dir_name
from atlas.txn.commit import publish, write_token
from atlas.txn.leases import LEASE_DIR, is_lease
from atlas.txn.parts import NewFile, merge_new_part, next_commit, place_part, prune_retired
from atlas.txn.state import WorkingState

__all__ = [
    "SLOT_HEADROOM", "CommitInput", "CommitJob", "Fragment", "SlotReservation", "StoredSource", "build_commit_part",
    "delete_quietly",    "pack_commit_result", "pack_fragment", "plan_commit", "publish_fragments",
    "unpack_commit_result", "unpack_fragment",
]  # fmt: skip

#: Slots left free between the store's counter and the first reserved range, for
#: writers that commit while an ingest runs (each new array of theirs takes one).
SLOT_HEADROOM = 1 << 20


@dataclass
class StoredSource:
    """One source (file or callable) a task stored: its datasets, committed together."""

    #: Position of the source in its task's ``items`` (the client knows the rest of it).
    index: int
    #: Its dataset names, in the order the task stored them.
    names: list[str]
    #: How reports name the source (set by the client from ``index``; not sent).
    label: str = ""


@dataclass
class Fragment:
    """What a task returns: names and file references only (no records, no array bytes)."""

    task: int
    slots: tuple[int, int]
    stored: list[StoredSource] = field(default_factory=list)
    #: ``(array name, family directory, reference)`` of every segment the task wrote.
    segments: list[tuple[str, str, SegmentRef]] = field(default_factory=list)
    #: ``(label, reason)`` of sources that failed (the task went on: skip_errors).
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: The lease object naming the task's files until they are committed.
    lease: str = ""
    #: Bytes the task wrote into segment files.
    stored_bytes: int = 0
    #: The task part: the records of every stored source (None when none was stored).
    part: PartRef | None = None

    def paths(self) -> list[str]:
        """Store paths of the task's files: its segments and its task part."""
        out = [f"{d}/{ref.file}" for _, d, ref in self.segments]
        return out + ([self.part.path] if self.part is not None else [])


#: First byte of a packed fragment: how the msgpack body is stored.
_RAW, _ZSTD = b"r", b"z"
#: zstd level of a packed fragment (one block): level 5 is within a few percent of
#: level 9's size at a small fraction of its time.
_CLEVEL = 5
#: Bodies larger than this are sent raw (one blosc2 block holds at most this much).
_MAX_BLOCK = 1 << 28


def _part_fields(ref: PartRef) -> list[Any]:
    return [ref.file, ref.size, ref.index_offset, ref.index_length, ref.index_checksum, ref.rows,
            ref.min_generation, ref.max_generation]  # fmt: skip


#: A catalogue part's file name, as the commit object decoder accepts it.
_PART_NAME = re.compile(r"[0-9]{12}-[0-9a-f]{16}\.cat")


def _part_from(fields: Any) -> PartRef:
    ref = PartRef(*fields)
    _expect(str, ref.file)
    _expect(int, ref.size, ref.index_offset, ref.index_length, ref.index_checksum, ref.rows, ref.min_generation,
            ref.max_generation)  # fmt: skip
    # The client deletes the files a worker names: a name must not reach outside the catalogue directory.
    if _PART_NAME.fullmatch(ref.file) is None:
        raise ValueError(f"{ref.file!r} is not the file name of a catalogue part")
    # What the commit object's decoder refuses must not be committed: the store would not open.
    _check_numbers(ref.size, ref.index_offset, ref.index_length, ref.index_checksum, ref.rows, ref.min_generation,
                   ref.max_generation)  # fmt: skip
    if ref.min_generation > ref.max_generation:
        raise ValueError(f"part {ref.file} covers generations {ref.min_generation}..{ref.max_generation}")
    return ref


_INT64_MAX, _UINT64_MAX = 2**63 - 1, 2**64 - 1


def _check_numbers(size: int, index_offset: int, index_length: int, checksum: int, *counts: int) -> None:
    """Refuse the numbers of a file reference that the commit object's decoder would refuse."""
    if not all(0 <= v <= _INT64_MAX for v in (size, index_offset, index_length, *counts)):
        raise ValueError("a file reference holds a number out of range")
    if not 0 <= checksum <= _UINT64_MAX or index_offset + index_length > size:
        raise ValueError("a file reference's index lies outside its file")


def _check_lease(path: str) -> None:
    """Refuse a lease path that is not a lease object (the client deletes it)."""
    if path and not is_lease(path):
        raise ValueError(f"{path!r} is not a lease object under {LEASE_DIR}/")


def _check_segment(directory: str, file: str) -> None:
    """Refuse a segment path the store's own decoder would refuse (the client may delete it)."""
    if "/" in file or not file.endswith(".af") or file.startswith("."):
        raise ValueError(f"{file!r} is not the file name of a segment")
    if "/" in directory or directory in (".", "..", CATALOG_DIR, LEASE_DIR):
        raise ValueError(f"{directory!r} is not the directory of an array family")


def _pack(body: list[Any]) -> bytes:
    """``body`` as MessagePack, compressed with zstd as one block (the names of a batch share most bytes)."""
    import msgpack

    from atlas.engine.codecs import blosc2

    raw = msgpack.packb(body, use_bin_type=True)
    if not raw or len(raw) > _MAX_BLOCK:
        return _RAW + raw
    b2 = blosc2()
    packed = b2.compress2(
        raw, codec=b2.Codec.ZSTD, clevel=_CLEVEL, typesize=1, blocksize=len(raw),
        splitmode=b2.SplitMode.NEVER_SPLIT, filters=[b2.Filter.NOFILTER], nthreads=1,
    )  # fmt: skip
    return _ZSTD + packed


def _unpack(data: bytes) -> Any:
    import msgpack

    from atlas.engine.codecs import blosc2

    kind, body = data[:1], data[1:]
    if kind == _ZSTD:
        body = blosc2().decompress2(body, nthreads=1)
    elif kind != _RAW:
        raise ValueError(f"unknown encoding {kind!r}")
    return msgpack.unpackb(body, raw=False, strict_map_key=True)


def pack_fragment(frag: Fragment) -> bytes:
    """``frag`` as compressed bytes: what travels from a worker to the committing process.

    MessagePack compressed with zstd as *one* block: a batch's names and segment
    references repeat most of their bytes (paths, array names, the write token).
    """
    stored = [[s.index, s.names] for s in frag.stored]
    # A family directory is the array name's encoding (sent as ""), unless the store
    # holds the family under another one: a quarter of a fragment's bytes otherwise.
    segments = [[a, "" if d == encode_dir_name(a) else d,
                 [r.file, r.size, r.index_offset, r.index_length, r.index_checksum, r.records]]
                for a, d, r in frag.segments]  # fmt: skip
    part = None if frag.part is None else _part_fields(frag.part)
    return _pack([frag.task, list(frag.slots), stored, segments, [list(f) for f in frag.failed], frag.lease,
                  frag.stored_bytes, part])  # fmt: skip


def unpack_fragment(data: bytes) -> Fragment:
    """The fragment :func:`pack_fragment` made, every field type-checked."""
    where = "an ingest task's fragment"
    try:
        task, slots, stored, segments, failed, lease, stored_bytes, part = _unpack(data)
        lo, hi = slots
        _expect(int, task, lo, hi, stored_bytes)
        _expect(str, lease)
        _check_lease(lease)
        frag = Fragment(task, (lo, hi), lease=lease, stored_bytes=stored_bytes)
        frag.failed = [(label, reason) for label, reason in failed]
        _expect(str, *(x for pair in frag.failed for x in pair))
        frag.segments = [(a, d, SegmentRef(*ref)) for a, d, ref in segments]
        for a, d, ref in frag.segments:
            _expect(str, a, d, ref.file)
        frag.segments = [(a, d or encode_dir_name(a), ref) for a, d, ref in frag.segments]
        for _, d, ref in frag.segments:
            _check_segment(d, ref.file)
        for _, _, ref in frag.segments:
            _expect(int, ref.size, ref.index_offset, ref.index_length, ref.index_checksum, ref.records)
            _check_numbers(ref.size, ref.index_offset, ref.index_length, ref.index_checksum, ref.records)
        for index, names in stored:
            _expect(int, index)
            _expect(list, names)
            _expect(str, *names)
            frag.stored.append(StoredSource(index, names))
        frag.part = None if part is None else _part_from(part)
        names = [n for s in frag.stored for n in s.names]
        if len(set(names)) != len(names):
            raise ValueError("it names one dataset twice")
        count = len(names)
        if (frag.part is None) != (count == 0) or (frag.part is not None and frag.part.rows != count):
            raise ValueError(f"its task part does not hold the {count} datasets it names")
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


@dataclass(frozen=True)
class CommitInput:
    """One task part of a commit: the rows to commit, in id order, and the task's slot range."""

    part: PartRef
    slots: tuple[int, int]
    names: tuple[str, ...]


@dataclass(frozen=True)
class CommitJob:
    """What the commit task of a batch of fragments needs (sent to a worker: small)."""

    location: str
    #: Non-secret store options, as for the ingest tasks.
    storage_options: dict[str, Any] | None
    codec: str
    #: The generation and write token of the commit this job prepares.
    generation: int
    token: bytes
    #: The parts of the base commit (the generation before), oldest first.
    base_parts: tuple[PartRef, ...]
    #: The id of the first row committed (the base commit's ``next_dataset_id``).
    first_id: int
    inputs: tuple[CommitInput, ...]

    @property
    def rows(self) -> int:
        """Datasets the commit adds."""
        return sum(len(i.names) for i in self.inputs)


def plan_commit(
    state: WorkingState,
    fragments: list[Fragment],
    reservation: SlotReservation,
    storage_options: dict[str, Any] | None,
) -> tuple[CommitJob | None, list[tuple[StoredSource, str, bool]]]:
    """The commit job of ``fragments`` on ``state``'s snapshot, and the sources refused.

    A source is refused whole when one of its names is in the store or stored by
    an earlier source of the batch; a refusal is ``(source, reason, in_store)``,
    ``in_store`` telling the first case from the second.  The job is None when nothing is left to
    commit.  Raises :class:`ConflictError` when other writers took the slot ranges.
    """
    base = state.base
    if not isinstance(base, CommitObject):
        raise AtlasError(f"{state.backend.location} is a format 1 store: upgrade it before an ingest commits to it")
    if not reservation.claimed and base.next_slot > reservation.start:
        raise ConflictError(
            f"other writers allocated {base.next_slot - reservation.start + SLOT_HEADROOM} slots of "
            f"{state.backend.location} while this ingest ran, more than the {SLOT_HEADROOM} it left free: "
            "its slot ranges are taken; nothing of it was committed, run it again"
        )
    _check_new_files(base, fragments)
    refused: list[tuple[StoredSource, str, bool]] = []
    taken: dict[str, str] = {}  # name -> label of the source of the batch that stores it
    inputs = []
    for frag in fragments:
        lo, hi = frag.slots
        if not (reservation.start <= lo <= hi <= reservation.end):
            raise AtlasError(f"fragment of task {frag.task} holds slots {lo}..{hi} outside the reservation")
        keep: list[str] = []
        for src in frag.stored:
            clash = next((n for n in src.names if n in taken or state.has_dataset(n)), None)
            if clash is not None:
                in_store = clash not in taken
                where = "already exists in the store" if in_store else f"is also stored by {taken[clash]}"
                refused.append((src, f"dataset {clash!r} {where}", in_store))
                continue
            taken.update(dict.fromkeys(src.names, src.label))
            keep += src.names
        if keep and frag.part is not None:
            inputs.append(CommitInput(frag.part, frag.slots, tuple(keep)))
    if not inputs:
        return None, refused
    job = CommitJob(state.backend.location, storage_options, base.codec, base.generation + 1, write_token(),
                    tuple(base.parts), base.next_dataset_id, tuple(inputs))  # fmt: skip
    check_counter("next_dataset_id", job.first_id + job.rows, state.backend.location)
    return job, refused


def _check_new_files(base: CommitObject, fragments: list[Fragment]) -> None:
    """Refuse fragments naming a file the store lists, or a file twice.

    The files of a fragment are new: once committed (or refused) the task parts,
    and with a refused batch the segments too, are deleted.  A fragment naming a
    live part or segment would have that file deleted, and the store with it.
    """
    listed = {p.path for p in base.parts} | {r.path for r in base.retired}
    listed.update(f"{fam.dir}/{ref.file}" for fam in base.families.values() for ref in fam.segments)
    seen: set[str] = set()
    for frag in fragments:
        for path in frag.paths():
            if path in listed or path in seen:
                where = "a file of the store" if path in listed else "a file of another fragment"
                raise AtlasError(f"the fragment of task {frag.task} names {path}, {where}, as a file it wrote")
            seen.add(path)


def build_commit_part(job: CommitJob, backend: Backend) -> tuple[int, PartRef, NewFile]:
    """Run on a worker: the catalogue part of ``job``'s commit (not written yet).

    The part is made column by column from the task parts
    (:func:`atlas.catalog.relabel.relabel_parts`: no record is decoded, each
    record's head gets the final id and version), then merged with the newest
    base parts as a local commit's would be.  Returns how many base parts stay in
    front of it, its entry and its file (see
    :func:`atlas.txn.parts.part_with_merge`).  A task part that is damaged, lacks
    a row the job names, holds a tombstone, a record that disagrees with its
    columns or a slot outside its task's range raises :class:`CorruptStoreError`.
    """
    import numpy as np

    from atlas.catalog.relabel import Selection, relabel_parts
    from atlas.engine.segment_io import SegmentIO
    from atlas.txn.snapshot import part_reader

    base = CommitObject(codec=job.codec, generation=job.generation - 1, parts=list(job.base_parts))
    read = part_reader(backend, SegmentIO(backend), base)
    selections, next_id = [], job.first_id
    for item in job.inputs:
        ids = np.arange(next_id, next_id + len(item.names), dtype=np.uint64)
        selections.append(Selection(item.part, item.names, ids, item.slots))
        next_id += len(item.names)
    _, buffers, ref = relabel_parts(selections, read, job.codec, job.generation, job.token)
    return merge_new_part(job.base_parts, ref, buffers, job.codec, job.generation, job.token, read)


def pack_commit_result(kept: int, ref: PartRef, lease: str) -> bytes:
    """What a commit task returns: base parts kept, the new part's entry, the lease over it."""
    return _pack([kept, _part_fields(ref), lease])


def unpack_commit_result(data: bytes, job: CommitJob) -> tuple[int, PartRef, str]:
    """The result :func:`pack_commit_result` made, checked against ``job``."""
    try:
        kept, ref, lease = _unpack(data)
        _expect(int, kept)
        _expect(str, lease)
        _check_lease(lease)
        ref = _part_from(ref)
        if not 0 <= kept <= len(job.base_parts):
            raise ValueError(f"it keeps {kept} of {len(job.base_parts)} parts")
        if ref.file != part_filename(job.generation, job.token) or ref.max_generation != job.generation:
            raise ValueError(f"its part {ref.file} is not the one of generation {job.generation}")
        if ref.rows < job.rows:
            raise ValueError(f"its part holds {ref.rows} rows, fewer than the {job.rows} committed")
    except Exception as exc:
        raise AtlasError(f"an ingest commit task's result cannot be decoded: {type(exc).__name__}: {exc}") from None
    return kept, ref, lease


def publish_fragments(state: WorkingState, fragments: list[Fragment], reservation: SlotReservation, job: CommitJob,
                      kept: int, ref: PartRef) -> None:  # fmt: skip
    """Commit ``fragments`` as generation ``job.generation``, with the part the commit task wrote.

    On :class:`ConflictError` (another writer committed first) nothing is
    committed and ``state`` is unchanged: refresh it and plan again.
    """
    base = state.base
    if not isinstance(base, CommitObject) or base.generation + 1 != job.generation or state.has_changes:
        raise AtlasError("publish_fragments needs the unchanged snapshot the commit job was planned on")
    families = {k: ArrayFamily(f.dir, list(f.segments)) for k, f in base.families.items()}
    for array_name, directory, seg in (s for f in fragments for s in f.segments):
        family = families.setdefault(array_name, ArrayFamily(directory))
        if family.dir != directory:
            raise AtlasError(f"segment of array {array_name!r} written under {directory!r}, not {family.dir!r}")
        family.segments.append(seg)
    new = next_commit(base, job.token, next_slot=max(base.next_slot, reservation.end),
                      next_dataset_id=job.first_id + job.rows, families=families)  # fmt: skip
    now_ms = int(time.time() * 1000)
    prune_retired(new, now_ms)
    place_part(new, kept, ref, now_ms)
    state.lease.renew()
    publish(state, new, [], f"another writer committed to {state.backend.location} since generation {base.generation}")
    reservation.claimed = True


def delete_quietly(backend: Backend, paths: list[str]) -> None:
    """Delete ``paths`` as far as possible (what is left is swept by ``compact``)."""
    for path in paths:
        with contextlib.suppress(AtlasError):
            backend.delete(path)
