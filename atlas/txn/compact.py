"""Compaction: rewrite live chunks into one segment per array name, then delete garbage.

The order is the same as a flush: the new segments are written and made durable,
the manifest is committed (conditionally, like any commit), and only then are
files deleted.  A crash at any point leaves a store at the old or the new
generation; files left behind are swept by a later compaction.  A compaction
also merges every catalogue part into one (tombstones dropped), and upgrades a
format v1 store.

Segments a compaction stops referencing are not deleted at once: handles that
opened an older generation may still have to read them.  The new manifest lists
them under ``retired`` with the time they were retired, and a later compaction
deletes those older than its grace period (``grace_period=0`` deletes them right
after the commit, without listing them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from atlas.catalog import CATALOG_DIR
from atlas.engine.codecs import checksum
from atlas.engine.segment import SegmentWriter
from atlas.errors import AtlasError, ChecksumError
from atlas.metadata import ArrayFamily, RetiredSegment
from atlas.txn.commit import publish, write_token
from atlas.txn.leases import leased_files
from atlas.txn.parts import merge_all, next_commit
from atlas.txn.snapshot import Base
from atlas.txn.state import WorkingState

__all__ = ["DEFAULT_GRACE_PERIOD", "CompactReport", "compact_store", "garbage_files"]

logger = logging.getLogger("atlas")

#: Seconds a compaction keeps retired segments and unreferenced files by default.
DEFAULT_GRACE_PERIOD = 3600.0


@dataclass(frozen=True)
class CompactReport:
    """What one :meth:`atlas.Atlas.compact` did (its return value).

    Attributes
    ----------
    committed : bool
        False when there was nothing to rewrite or retire: no new generation was
        committed (``generation`` is unchanged) and no manifest was written.
    generation : int
        The store's generation after the compaction.
    rewritten_arrays : int
        Array families whose live chunks were rewritten into one new segment.
    retired_files, retired_bytes : int
        Segments this compaction stopped referencing.  They stay on disk, listed
        in the manifest, until ``deletable_after``.
    deletable_after : float or None
        POSIX time after which a later compaction deletes what this one retired
        (None when it retired nothing; ``math.inf`` for an infinite grace).
    kept_files, kept_bytes : int
        Every retired segment still on disk within its grace period after this
        compaction (those of earlier compactions included): not free space yet.
    deleted_files, deleted_bytes : int
        Files deleted by this call (retired segments past their grace period and
        unreferenced files older than it): the space actually reclaimed now.
    """

    committed: bool
    generation: int
    rewritten_arrays: int = 0
    retired_files: int = 0
    retired_bytes: int = 0
    deletable_after: float | None = None
    kept_files: int = 0
    kept_bytes: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0


def _referenced(base: Base) -> set[str]:
    """Store paths of every segment and catalogue part ``base`` references."""
    out = {f"{fam.dir}/{ref.file}" for fam in base.families.values() for ref in fam.segments}
    out.update(p.path for p in getattr(base, "parts", ()))
    return out


def _sizes(base: Base) -> dict[str, int]:
    out = {f"{fam.dir}/{ref.file}": ref.size for fam in base.families.values() for ref in fam.segments}
    out.update((p.path, p.size) for p in getattr(base, "parts", ()))
    return out


def compact_store(state: WorkingState, grace_period: float) -> CompactReport:
    """Compact the committed state of ``state`` (which has no pending changes).

    ``grace_period`` (seconds, already validated) applies both to retired segments
    (counted from their retire time) and to unreferenced files (from their mtime).
    A compaction that has nothing to rewrite or retire commits nothing; it still
    deletes expired garbage.
    """
    base = state.base
    token = write_token()
    now = time.time()
    new = next_commit(base, token, next_slot=base.next_slot, next_dataset_id=base.next_dataset_id, families={})
    gen = new.generation
    files = []
    for array_name, family in sorted(base.families.items()):
        if not family.segments:
            continue
        slots = state.snapshot.live_slots(array_name)
        if not slots.size:
            continue
        engine = state.engine(array_name)
        idx = engine.index()
        keep = np.isin(idx.slots, slots)
        positions = np.nonzero(keep)[0]
        if positions.size == 0:
            continue
        if len(family.segments) == 1 and positions.size == idx.table.shape[0]:
            new.families[array_name] = ArrayFamily(family.dir, list(family.segments))
            continue  # already compact: one segment, every record live
        writer = SegmentWriter(gen, token)
        for pos in positions:
            record = idx.table[pos]
            ref = family.segments[int(idx.seg[pos])]
            path = engine.path(ref)
            stored = state.io.read(path, int(record["offset"]), int(record["nbytes"]), ref.size)
            if checksum(stored) != int(record["checksum"]):
                raise ChecksumError(f"{path}: chunk {int(record['chunk'])} of slot {int(record['slot'])} is damaged")
            writer.add(
                int(record["slot"]),
                int(record["chunk"]),
                stored,
                int(record["codec"]),
                int(record["raw_nbytes"]),
                int(record["null_count"]),
                int(record["min"]),
                int(record["max"]),
                int(record["flags"]),
                digest=int(record["checksum"]),
            )
        parts, ref = writer.finish_ref()
        new.families[array_name] = ArrayFamily(family.dir, [ref])
        files.append((f"{family.dir}/{ref.file}", parts))
    part_files = merge_all(state, new, token, int(now * 1000))
    new.retired, expired = _retire(base, new, now, grace_period)
    sizes = _sizes(base)
    before = {r.path for r in base.retired}
    newly = [r.path for r in new.retired if r.path not in before]
    newly += [p for p in expired if p in sizes]  # retired and deleted at once (grace_period 0)
    committed = (
        bool(files) or bool(part_files) or new.families != base.families or new.retired != base.retired
        or bool(expired) or new.format_version != base.format_version
    )  # fmt: skip
    rewritten = len(files)
    files += part_files
    if committed:
        publish(
            state,
            new,
            files,
            f"another writer committed to {state.backend.location} during compaction; call refresh() and retry",
        )
        state.io.forget(_referenced(new))
    # From here on the compaction is committed (or there was nothing to commit):
    # failing to delete garbage only leaves files that the next compaction sweeps,
    # so it is logged, never raised.
    try:
        listing = {info.path: info for info in state.backend.list("")}
        garbage = sorted(set(expired) | set(garbage_files(state, grace_period, now, listing.values())))
    except AtlasError as exc:
        logger.warning("compact: listing %s failed, orphans kept: %s", state.backend.location, exc)
        listing, garbage = {}, sorted(expired)
    deleted_files = deleted_bytes = 0
    for path in garbage:
        try:
            state.backend.delete(path)
        except AtlasError as exc:
            logger.warning("compact: could not delete %s (swept next time): %s", path, exc)
            continue
        deleted_files += 1
        deleted_bytes += listing[path].size if path in listing else sizes.get(path, 0)
    kept = [r.path for r in state.base.retired]
    return CompactReport(
        committed=committed,
        generation=state.base.generation,
        rewritten_arrays=rewritten,
        retired_files=len(newly),
        retired_bytes=sum(sizes.get(p, 0) for p in newly),
        deletable_after=(now + grace_period) if newly else None,
        kept_files=sum(1 for p in kept if p in listing),
        kept_bytes=sum(listing[p].size for p in kept if p in listing),
        deleted_files=deleted_files,
        deleted_bytes=deleted_bytes,
    )


def _retire(base: Base, new: Base, now: float, grace_period: float) -> tuple[list[RetiredSegment], list[str]]:
    """The ``retired`` list of ``new`` and the paths to delete once it is committed.

    Segments and parts ``base`` references and ``new`` does not join those already
    retired; an entry whose grace period is over leaves the list and is deleted.
    """
    now_ms = int(now * 1000)
    referenced = _referenced(new)
    entries = [r for r in new.retired if r.path not in referenced]
    listed = {r.path for r in entries}
    old = [(fam.dir, ref.file) for fam in base.families.values() for ref in fam.segments]
    old += [(CATALOG_DIR, p.file) for p in getattr(base, "parts", ())]
    for directory, file in old:
        path = f"{directory}/{file}"
        if path not in referenced and path not in listed:
            entries.append(RetiredSegment(directory, file, now_ms))
            listed.add(path)
    keep = [r for r in entries if now_ms - r.retired_ms < grace_period * 1000]
    kept = {r.path for r in keep}
    return keep, sorted(listed - kept)


def garbage_files(
    state: WorkingState, orphan_grace: float, now: float | None = None, listing: Iterable[Any] | None = None
) -> list[str]:
    """Files no manifest references that are older than ``orphan_grace`` seconds.

    Younger ones may be segments another writer is about to commit, so they stay.
    Retired segments still listed by the manifest are not garbage yet, however old
    their files are: their grace period runs from the compaction that retired them.
    Unreferenced files named by a fresh lease (:mod:`atlas.txn.leases`) belong to a
    writer that is still writing, so they stay too; stale leases are garbage.
    """
    referenced = _referenced(state.base) | {r.path for r in state.base.retired}
    cutoff = (time.time() if now is None else now) - orphan_grace
    listing = list(state.backend.list("") if listing is None else listing)
    leased, out = leased_files(state.backend, listing, cutoff)
    for info in listing:
        name = info.path.rsplit("/", 1)[-1]
        # Catalogue parts are immutable files written before their commit, like segments.
        is_segment = "/" in info.path and (name.endswith(".af") or name.endswith(".cat"))
        is_temp = name.startswith(".") and name.endswith(".tmp")
        if is_segment and (leased is None or info.path in leased):
            continue  # held by a live writer (or, when a lease is unreadable, perhaps)
        if (is_segment or is_temp) and info.path not in referenced and info.mtime < cutoff:
            out.append(info.path)
    return sorted(out)
