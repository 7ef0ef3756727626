"""The catalogue side of a commit: the part a commit writes, merges, and the v1 upgrade.

A commit of a format v2 store writes one part with the rows of the datasets it
created, changed or deleted, appends it to the commit object's ``parts`` and,
when the merge policy asks for it, merges the newest parts into one
(``docs/format-v2.md`` §6).  The first commit to a format v1 store writes instead
one part holding every dataset (§7): the store is upgraded by that same atomic
commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from atlas.backends.base import Buffer
from atlas.catalog import CATALOG_DIR, CommitObject, choose_merge, merge_parts, write_part
from atlas.catalog.build import FloatStats
from atlas.catalog.commit import PartRef
from atlas.catalog.merge import rows_with_parts
from atlas.catalog.part import ReadRange
from atlas.metadata import ArrayFamily, DatasetMeta, Manifest, RetiredSegment
from atlas.txn.snapshot import Base, part_reader
from atlas.txn.state import WorkingState

__all__ = [
    "catalogue_files", "merge_all", "merge_new_part", "next_commit", "part_with_merge", "place_part", "prune_retired",
    "retire_parts",
]  # fmt: skip

#: ``(path, buffers)`` of a file a commit writes.
NewFile = tuple[str, Sequence[Buffer]]
#: Retired part entries a commit keeps listing whatever their age; older ones past
#: ``_RETIRED_PART_AGE_S`` leave the list (their files become unreferenced and are
#: swept by ``compact`` like any orphan), so that frequent merges cannot grow the
#: commit object without bound between compactions.
_RETIRED_PARTS_KEPT = 64
_RETIRED_PART_AGE_S = 3600.0
#: The most rows of the newest parts a commit's part takes in by writing their
#: records again with its own rows (see :func:`part_with_merge`); a merge of more
#: copies their columns (:func:`~atlas.catalog.merge.merge_parts`).
SMALL_MERGE_ROWS = 256


def next_commit(base: Base, token: bytes, *, next_slot: int, next_dataset_id: int,
                families: dict[str, ArrayFamily]) -> CommitObject:  # fmt: skip
    """The commit object of the generation after ``base``: same parts and retired list."""
    return CommitObject(
        codec=base.codec,
        generation=base.generation + 1,
        write_token=token.hex(),
        next_slot=next_slot,
        next_dataset_id=next_dataset_id,
        families=families,
        retired=list(base.retired),
        parts=list(base.parts) if isinstance(base, CommitObject) else [],
    )


def catalogue_files(
    state: WorkingState,
    new: CommitObject,
    rows: list[tuple[str, DatasetMeta | None]],
    token: bytes,
    now_ms: int,
    float_stats: FloatStats | None = None,
) -> list[NewFile]:
    """Add the part of ``rows`` to ``new`` (merging as the policy says); the part file to write.

    ``rows`` are the committed datasets the commit changed (None: deleted), and
    ``float_stats`` what the commit knows of their arrays' stats (see
    :func:`~atlas.catalog.build.write_part`).  On a v1 base the part holds every
    dataset of the manifest with ``rows`` applied (the upgrade).  Replaced parts
    join ``new.retired``.
    """
    base, gen = state.base, new.generation
    if isinstance(base, Manifest):
        datasets = dict(base.datasets)
        for name, ds in rows:
            if ds is None:
                datasets.pop(name, None)
            else:
                datasets[name] = ds
        _, buffers, ref = write_part(list(datasets.items()), new.codec, gen, token)
        new.parts = [ref]
        return [(ref.path, buffers)]
    prune_retired(new, now_ms)
    if not rows:
        return []
    read_stored = part_reader(state.backend, state.io, base)
    kept, ref, file = part_with_merge(new.parts, rows, new.codec, gen, token, read_stored, float_stats)
    place_part(new, kept, ref, now_ms)
    return [file]


def part_with_merge(
    parts: Sequence[PartRef],
    rows: list[tuple[str, DatasetMeta | None]],
    codec: str,
    generation: int,
    token: bytes,
    read_stored: ReadRange,
    float_stats: FloatStats | None = None,
) -> tuple[int, PartRef, NewFile]:
    """The part of ``rows`` appended to ``parts``, merged with the newest of them as the policy says.

    ``parts`` are the base commit's parts (oldest first), read through
    ``read_stored`` only when a merge needs them.  ``float_stats`` are passed to
    :func:`~atlas.catalog.build.write_part`.  Returns how many of ``parts``
    stay in front of the new part (the others are replaced by it: see
    :func:`place_part`), the new part's entry and its file.  Any process that can
    read the store can run this: a commit's own, or an ingest's commit task.
    """
    start = choose_merge([*(p.rows for p in parts), len(rows)])
    older = parts[start:] if start is not None else []
    if older and sum(p.rows for p in older) <= SMALL_MERGE_ROWS:
        # The newest parts hold a few rows (one-dataset commits): written again with
        # the commit's rows, in one part, rather than merged column by column, whose
        # cost is mostly per column (a few hundred for 30 attribute keys) however few rows.
        merged = rows_with_parts(older, rows, read_stored, drop_tombstones=start == 0)
        if merged:
            _, buffers, ref = write_part(merged, codec, generation, token, float_stats)
            low = min(p.min_generation for p in older)
            ref = replace(ref, min_generation=low, max_generation=max(generation, *(p.max_generation for p in older)))
            return start, ref, (ref.path, buffers)
    _, buffers, ref = write_part(rows, codec, generation, token, float_stats)
    return merge_new_part(parts, ref, buffers, codec, generation, token, read_stored)


def merge_new_part(
    parts: Sequence[PartRef],
    ref: PartRef,
    buffers: Sequence[Buffer],
    codec: str,
    generation: int,
    token: bytes,
    read_stored: ReadRange,
) -> tuple[int, PartRef, NewFile]:
    """The new part ``ref`` (laid out in ``buffers``, not written yet) appended to
    ``parts``, merged with the newest of them as the policy says: what
    :func:`part_with_merge` returns, for a part laid out by other means."""
    start = choose_merge([p.rows for p in [*parts, ref]])
    if start is None:
        return len(parts), ref, (ref.path, buffers)
    # The new part is merged before it is ever written: serve it from memory.
    fresh = b"".join(bytes(memoryview(b)) for b in buffers)

    def read(path: str, offset: int, length: int) -> bytes:
        return fresh[offset : offset + length] if path == ref.path else read_stored(path, offset, length)

    _, merged_buffers, merged = merge_parts(
        [*parts[start:], ref], read, codec, generation, token, drop_tombstones=start == 0
    )
    return start, merged, (merged.path, merged_buffers)


def place_part(new: CommitObject, kept: int, ref: PartRef, now_ms: int) -> None:
    """Make ``new.parts`` its first ``kept`` parts and then ``ref``; the parts after them are retired."""
    retire_parts(new, new.parts[kept:], now_ms)
    new.parts = [*new.parts[:kept], ref]


def merge_all(state: WorkingState, new: CommitObject, token: bytes, now_ms: int) -> list[NewFile]:
    """Merge every part of ``new`` into one (tombstones dropped); what ``compact`` does.

    Returns no file when there is at most one part: a lone part holds no
    tombstone (a commit writes none for names its base lacks, and a merge down to
    the oldest part drops them).
    """
    base = state.base
    if isinstance(base, Manifest):
        return catalogue_files(state, new, [], token, now_ms)  # compaction upgrades too
    parts = new.parts
    if len(parts) <= 1:
        return []
    read = part_reader(state.backend, state.io, base)
    _, buffers, merged = merge_parts(parts, read, new.codec, new.generation, token, drop_tombstones=True)
    retire_parts(new, parts, now_ms)
    new.parts = [merged] if merged.rows else []
    return [(merged.path, buffers)] if merged.rows else []


def retire_parts(new: CommitObject, parts: Sequence[PartRef], now_ms: int) -> None:
    """List ``parts`` in ``new.retired`` (they stay readable for the grace period)."""
    listed = {r.path for r in new.retired}
    new.retired.extend(RetiredSegment(CATALOG_DIR, p.file, now_ms) for p in parts if p.path not in listed)


def prune_retired(new: CommitObject, now_ms: int) -> None:
    """Drop the oldest retired part entries past the kept number and age (their files become orphans)."""
    entries = [r for r in new.retired if r.dir == CATALOG_DIR]
    if len(entries) <= _RETIRED_PARTS_KEPT:
        return
    old = {r.path for r in entries[:-_RETIRED_PARTS_KEPT] if now_ms - r.retired_ms >= _RETIRED_PART_AGE_S * 1000}
    new.retired = [r for r in new.retired if r.path not in old]
