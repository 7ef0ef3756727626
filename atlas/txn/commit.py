"""The one commit path: write new segments and parts, then replace the commit object conditionally.

A flush (:func:`flush`) and a compaction (:mod:`atlas.txn.compact`) both end in
:func:`publish`: every new segment and catalogue part file is written and made
durable first, then the commit object (the manifest file) is replaced only if the
store is still at the handle's version (the commit point).  Every commit writes
format v2 metadata: the first one to a v1 store upgrades it.  A crash at any
point leaves the store at the old generation or the new one.  When the backend
cannot tell whether the commit object landed, the attempt is remembered and the
next flush or refresh settles it (:func:`settle_unknown_commit`) before doing
anything else.
"""

from __future__ import annotations

import contextlib
import operator
import secrets
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from atlas.backends.base import Version
from atlas.catalog import CATALOG_DIR, CommitObject, encode_commit
from atlas.catalog.build import FloatStats
from atlas.catalog.encoding import alike_arrays
from atlas.engine.pools import shared_pool
from atlas.engine.staged import StackedChunks, build_segment, set_whole_chunk_stats
from atlas.errors import AtlasError, ConflictError, SegmentMissingError
from atlas.metadata import ArrayFamily, ArrayMeta, DatasetMeta, check_counters, gc_paused
from atlas.txn.parts import NewFile, catalogue_files, next_commit
from atlas.txn.snapshot import Base
from atlas.txn.state import WorkingState
from atlas.txn.verify import StoreSizes

__all__ = [
    "build_flush",
    "check_added_segments",
    "flush",
    "next_commit",
    "publish",
    "settle_unknown_commit",
    "write_token",
]


def write_token() -> bytes:
    """16 random bytes naming one commit (in the manifest and its segment names)."""
    return secrets.token_bytes(16)


def build_flush(state: WorkingState, reused: list[DatasetMeta] | None = None) -> tuple[CommitObject, list[NewFile]]:
    """The next commit object of ``state``'s pending changes and the files it references.

    The files are the new segments and the commit's catalogue part (or the part
    that replaces merged ones, or, on a v1 store, the part of every dataset).

    Every catalogue row is a copy of its pending dataset, unless ``reused`` is a
    list: then the pending datasets created for this very generation whose arrays
    have no stats yet are the rows themselves (no copy), listed in ``reused``; the
    build sets their arrays' stats, which the caller must set back to None should
    the commit fail (see :func:`flush`).
    """
    token = write_token()
    new = next_commit(
        state.base,
        token,
        next_slot=state.next_slot,
        next_dataset_id=state.next_dataset_id,
        families={k: ArrayFamily(f.dir, list(f.segments)) for k, f in state.base.families.items()},
    )  # ``retired`` is kept: entries still within their grace period, compact() decides
    gen = new.generation
    codec = state.base.codec
    rows, live_slots, alike = _committed_rows(state, gen, reused)
    # Many small one-chunk arrays of a name: stats and segment layout in one pass, not one each.
    stacked: dict[str, list[StackedChunks]] = {}
    for array_name, metas in live_slots.items():
        engine = state.engine(array_name)
        groups = stacked[array_name] = engine.stack_staged(metas, codec)
        for g in groups:
            g.set_array_stats(metas)
        if sum(len(g) for g in groups) < len(metas):
            done = set().union(*(g.slots.tolist() for g in groups))
            rest = set_whole_chunk_stats(metas, engine.pending, done)
            if rest:
                owner = {m.arrays[array_name].slot: n for n, m in rows if m is not None and array_name in m.arrays}
                for slot in rest:
                    where = f"dataset {owner[slot]!r} array {array_name!r}"
                    metas[slot].stats = state.array_stats(array_name, metas[slot], where)
    float_stats = None if alike is None else _float_stats(alike[1], stacked.get(alike[0], []))
    files: list[NewFile] = []
    names = set(live_slots) | {n for n, e in state.engines.items() if e.spilled}
    for array_name in sorted(names):
        engine = state.engine(array_name)
        family = new.families.setdefault(array_name, ArrayFamily(engine.family.dir))
        if engine.spilled:
            # Spilled segments hold only chunks of datasets this handle changed, so
            # their live slots are among the committed rows' (no catalogue read).
            live = live_slots.get(array_name, {})
            live_arr = np.fromiter(live, np.uint64, len(live))
            for ref, table in engine.spilled:
                if np.isin(table["slot"], live_arr).any():
                    family.segments.append(ref)
                else:  # holds only data of arrays deleted before they were ever committed
                    state.obsolete.append(engine.path(ref))
        metas = live_slots.get(array_name, {})
        if not any(engine.pending.get(s) for s in metas):
            continue
        writer = build_segment(engine, metas, codec, gen, token, state.max_workers, stacked.get(array_name, []))
        parts, ref = writer.finish_ref()
        family.segments.append(ref)
        files.append((f"{family.dir}/{ref.file}", parts))
    for array_name in names:
        if not new.families[array_name].segments:
            del new.families[array_name]  # nothing stored under this name
    files += catalogue_files(state, new, rows, token, int(time.time() * 1000), float_stats)
    return new, files


def _committed_rows(
    state: WorkingState, gen: int, reused: list[DatasetMeta] | None
) -> tuple[list[tuple[str, DatasetMeta | None]], dict[str, dict[int, ArrayMeta]], tuple[str, list[ArrayMeta]] | None]:
    """The catalogue rows of the pending changes (None: deleted), ``{array: {slot: meta}}``
    of their arrays and, for rows made alike, ``(array name, their arrays in row order)``.

    The rows are copies (the pending ones stay as they are should the commit
    fail), but for the datasets listed in ``reused`` (see :func:`build_flush`);
    their arrays' ``stats`` are still the pending ones, for the caller to set.
    """
    rows: list[tuple[str, DatasetMeta | None]] = []
    live_slots: dict[str, dict[int, ArrayMeta]] = {}
    pending, snapshot = state.pending, state.snapshot
    names = sorted(pending)
    if reused is not None:
        fast = _created_alike(names, list(map(pending.__getitem__, names)), gen)
        if fast is not None:
            rows, array_name, metas = fast
            reused += [ds for _, ds in rows]
            live_slots[array_name] = dict(zip(map(_SLOT, metas), metas))
            return rows, live_slots, (array_name, metas)
    new = object.__new__
    reuse = reused is not None
    for name in names:
        ds = pending[name]
        if ds is None:
            if name in snapshot:  # a dataset created and deleted here leaves no row
                rows.append((name, None))
            continue
        if reuse and ds.version == gen:
            # Created for this generation (a rebase leaves an older version) and
            # without stats: the commit changes nothing of it but the stats, which
            # the caller resets on failure.  A copy per dataset and per array would
            # be most of the cost of a row.
            for meta in ds.arrays.values():
                if meta.stats is not None:
                    break
            else:
                reused.append(ds)
                for array_name, meta in ds.arrays.items():
                    by_slot = live_slots.get(array_name)
                    if by_slot is None:
                        by_slot = live_slots[array_name] = {}
                    by_slot[meta.slot] = meta
                rows.append((name, ds))
                continue
        # shallow_copy, inlined: a dict copy per object is most of the cost of a row.
        committed = new(type(ds))
        fields = ds.__dict__.copy()
        fields["version"] = gen
        fields["arrays"] = arrays = {}
        committed.__dict__ = fields
        for array_name, meta in ds.arrays.items():
            arrays[array_name] = copied = new(type(meta))
            copied.__dict__ = meta.__dict__.copy()
            meta = copied
            by_slot = live_slots.get(array_name)
            if by_slot is None:
                by_slot = live_slots[array_name] = {}
            by_slot[meta.slot] = meta
        rows.append((name, committed))
    return rows, live_slots, None


_SLOT, _STATS = operator.attrgetter("slot"), operator.attrgetter("stats")


def _created_alike(
    names: list[str], datasets: list[DatasetMeta | None], gen: int
) -> tuple[list[tuple[str, DatasetMeta]], str, list[ArrayMeta]] | None:
    """The rows of a batch of datasets made alike, by C-level passes; None when it is not one.

    Such a batch: every pending dataset was created for generation ``gen``, holds
    one array of one name for all (:func:`~atlas.catalog.encoding.alike_arrays`),
    and no stats yet; then every row is its pending dataset (see
    :func:`build_flush`).  Returns ``(rows, array name, arrays in row order)``.
    """
    alike = alike_arrays(datasets)
    if alike is None or alike[0] != gen:
        return None
    _, array_name, metas = alike
    if list(map(_STATS, metas)).count(None) != len(metas):
        return None
    return list(zip(names, datasets)), array_name, metas


def _float_stats(metas: list[ArrayMeta], groups: list[StackedChunks]) -> FloatStats | None:
    """The stats of ``metas`` (in their order) when one stacked group of a float dtype
    holds every one of them; else None."""
    if len(groups) != 1 or groups[0].dtype not in ("float32", "float64") or len(groups[0]) != len(metas):
        return None
    g = groups[0]
    slots = np.fromiter(map(_SLOT, metas), dtype=np.uint64, count=len(metas))
    at = np.searchsorted(g.slots, slots)  # the group's rows are in slot order
    if not np.array_equal(g.slots[np.minimum(at, len(g) - 1)], slots):
        return None
    cells = int(g.values.shape[1])
    nulls = g.nulls[at]
    # the float64 bits of each row's extremes (zero where every cell is null: no extremes)
    return FloatStats(tuple(metas), cells, nulls, g.min_bits.view(np.float64)[at], g.max_bits.view(np.float64)[at],
                      nulls != cells)  # fmt: skip


def flush(state: WorkingState) -> Base:
    """Commit ``state``'s pending changes (one new generation); the manifest committed.

    On any failure, including :class:`ConflictError`, the pending changes stay as
    they were, so the same handle can retry.
    """
    landed = settle_unknown_commit(state)
    if landed is not None:
        return landed
    state.obsolete = []
    # A commit allocates a few objects per dataset while every staged dataset is
    # alive: the collections they would trigger traverse all of those (about 15 us
    # per dataset at 10 000 datasets of 30 attributes) and free nothing, since a
    # commit makes no reference cycle and its objects die with the staged ones.
    reused: list[DatasetMeta] = []
    with gc_paused():
        try:
            new, files = build_flush(state, reused)
            state.lease.renew()
            publish(
                state,
                new,
                files,
                f"another writer committed to {state.backend.location} since this handle read generation "
                f"{state.base.generation}; pending changes are kept: call refresh() and flush() again",
            )
        except BaseException:
            # The pending datasets the commit used as its rows get back the stats they had (none).
            for ds in reused:
                for meta in ds.arrays.values():
                    meta.stats = None
            raise
    return new


def publish(state: WorkingState, new: CommitObject, files: list[NewFile], conflict: str) -> Version:
    """Write ``files``, then replace the commit object by ``new`` if the store is still at ``state.version``.

    On success ``state`` moves to ``new`` and the files in ``state.obsolete`` are
    deleted.  Raises :class:`ConflictError` with the message ``conflict`` when
    another writer committed first; when the outcome is unknown (a lost response
    whose read-back failed too) the attempt is remembered for
    :func:`settle_unknown_commit` and the error is raised.
    """
    # A forged manifest near a counter's limit must not lead to a commit the reader refuses.
    check_counters(new, state.backend.location)
    for path, parts in files:
        state.backend.put(path, parts)
    check_added_segments(state, new)
    data = encode_commit(new, state.meta_format, state.meta_compression)
    try:
        version = state.backend.commit(state.manifest_name, data, state.version)
    except ConflictError:
        raise ConflictError(conflict) from None
    except AtlasError:
        state.unsure = (new, data, state.changes)
        raise
    _landed(state, new, version)
    return version


def check_added_segments(state: WorkingState, new: CommitObject) -> None:
    """Raise :class:`SegmentMissingError` unless every segment and part ``new`` adds is stored whole.

    Spilled segments were written by earlier calls, possibly long ago: a
    compaction may have swept them (an expired lease, a compactor that predates
    leases, ``grace_period=0``).  Committing a manifest that points at a missing
    file would lose the data silently, so the commit stops here, before the
    manifest is written.  One size query per added segment (a ``stat`` locally, a
    ``HEAD`` on object stores; a listing of the array directory on a backend
    without a ``size`` verb).  On a backend that fetches concurrently (its
    ``max_concurrency``, an object store's), the queries go out that many at once:
    an ingest commit adds thousands of segments, and one round trip after another
    would be its longest step.  The answers are checked in order either way, so
    the first bad file (or failed query) in that order is the one reported.
    """
    old = {(fam.dir, ref.file) for fam in state.base.families.values() for ref in fam.segments}
    old.update((CATALOG_DIR, p.file) for p in getattr(state.base, "parts", ()))
    sizes = StoreSizes(state)
    added = [(a, fam.dir, ref.file, ref.size) for a, fam in new.families.items() for ref in fam.segments]
    added += [(None, CATALOG_DIR, p.file, p.size) for p in new.parts]
    added = [item for item in added if (item[1], item[2]) not in old]
    answers = _sizes_of(state, sizes, added)
    with contextlib.closing(answers):  # a refusal drops the queries not yet sent
        for (array_name, directory, file, size), actual in zip(added, answers):
            _check_size(array_name, f"{directory}/{file}", size, actual)


def _check_size(array_name: str | None, path: str, size: int, actual: int | None) -> None:
    """Raise :class:`SegmentMissingError` unless the file at ``path`` is ``size`` bytes."""
    if actual != size:
        found = "is missing" if actual is None else f"is {actual} bytes, {size} were written"
        what = f"catalogue part {path}" if array_name is None else f"segment {path} of array {array_name!r}"
        raise SegmentMissingError(
            f"cannot commit: {what} written by this handle {found} "
            "(a compaction swept it after the handle's lease over it expired, or another process "
            "changed it); nothing was committed: call discard() and write the data again"
        )


def _sizes_of(state: WorkingState, sizes: StoreSizes, added: list[tuple[Any, str, str, int]]) -> Iterator[int | None]:
    """The actual size of each added file, in order (an I/O failure raises at its file).

    Queried concurrently on a backend with a ``max_concurrency`` above one and a
    ``size`` verb; the queries still running when one fails finish unread (they
    only read).
    """
    concurrency = int(getattr(state.backend, "max_concurrency", 1))
    if concurrency <= 1 or sizes.size_of is None or len(added) <= 1:
        return (sizes(directory, f"{directory}/{file}") for _, directory, file, _ in added)
    pool = shared_pool("stat", concurrency)
    return pool.map(lambda item: sizes(item[1], f"{item[1]}/{item[2]}"), added)


def settle_unknown_commit(state: WorkingState) -> Base | None:
    """Resolve a commit whose outcome was unknown; the manifest it committed, if it landed.

    When the store's manifest is byte for byte the one that attempt sent (every
    manifest carries a unique write token) and the handle has not changed since,
    the attempt did commit: the handle moves to it and nothing is written again.
    Otherwise the attempt is forgotten and the caller goes on as usual (a retried
    flush commits, or meets a ``ConflictError``).
    """
    if state.unsure is None:
        return None
    new, data, changes = state.unsure
    current = state.backend.get_versioned(state.manifest_name)  # an error here keeps it unsure
    state.unsure = None
    if current is None or current[0] != data or changes != state.changes:
        return None
    _landed(state, new, current[1])
    return new


def _landed(state: WorkingState, new: Base, version: Version) -> None:
    state.adopt(new, version)
    for path in state.obsolete:
        with contextlib.suppress(AtlasError):  # an orphan left here is swept by compact()
            state.backend.delete(path)
    state.obsolete = []
