"""The one commit path: write new segments, then replace the manifest conditionally.

A flush (:func:`flush`) and a compaction (:mod:`atlas.txn.compact`) both end in
:func:`publish`: every new segment file is written and made durable first, then
the manifest is replaced only if the store is still at the handle's version (the
commit point).  A crash at any point leaves the store at the old generation or the
new one.  When the backend cannot tell whether the manifest landed, the attempt is
remembered and the next flush or refresh settles it
(:func:`settle_unknown_commit`) before doing anything else.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
from collections.abc import Sequence

import numpy as np

from atlas.backends.base import Buffer, Version
from atlas.engine.family import build_segment
from atlas.errors import AtlasError, ConflictError, SegmentMissingError
from atlas.metadata import ArrayFamily, ArrayMeta, Manifest, check_counters, encode_manifest
from atlas.txn.state import WorkingState, shallow_copy

__all__ = [
    "build_flush",
    "check_added_segments",
    "flush",
    "next_manifest",
    "publish",
    "settle_unknown_commit",
    "write_token",
]

#: ``(path, parts)`` of a segment file a commit writes.
NewFile = tuple[str, Sequence[Buffer]]


def write_token() -> bytes:
    """16 random bytes naming one commit (in the manifest and its segment names)."""
    return secrets.token_bytes(16)


def next_manifest(base: Manifest, token: bytes, *, next_slot: int, next_dataset_id: int,
                  families: dict[str, ArrayFamily]) -> Manifest:  # fmt: skip
    """The manifest of the generation after ``base``: same datasets, the given families."""
    return Manifest(
        codec=base.codec,
        generation=base.generation + 1,
        write_token=token.hex(),
        next_slot=next_slot,
        next_dataset_id=next_dataset_id,
        datasets=dict(base.datasets),
        families=families,
    )


def build_flush(state: WorkingState) -> tuple[Manifest, list[NewFile]]:
    """The next manifest of ``state``'s pending changes and the segment files it references."""
    token = write_token()
    new = next_manifest(
        state.base,
        token,
        next_slot=state.next_slot,
        next_dataset_id=state.next_dataset_id,
        families={k: ArrayFamily(f.dir, list(f.segments)) for k, f in state.base.families.items()},
    )
    new.retired = list(state.base.retired)  # still within their grace period: compact() decides
    gen = new.generation
    for array_name, metas in state.pending_metas().items():
        state.engine(array_name).precompute_stats(metas)  # many small chunks: one pass, not one each
    live_slots: dict[str, dict[int, ArrayMeta]] = {}
    for name in sorted(state.dirty):
        ds = state.datasets.get(name)
        if ds is None:
            new.datasets.pop(name, None)
            continue
        committed = shallow_copy(ds)
        committed.version = gen
        committed.arrays = {}
        for array_name, meta in ds.arrays.items():
            meta = shallow_copy(meta)
            meta.stats = state.array_stats(array_name, meta, f"dataset {name!r} array {array_name!r}")
            committed.arrays[array_name] = meta
            live_slots.setdefault(array_name, {})[meta.slot] = meta
        new.datasets[name] = committed
    files: list[NewFile] = []
    names = set(live_slots) | {n for n, e in state.engines.items() if e.spilled}
    for array_name in sorted(names):
        engine = state.engine(array_name)
        family = new.families.setdefault(array_name, ArrayFamily(engine.family.dir))
        if engine.spilled:
            live = {m.slot for d in new.datasets.values() for a, m in d.arrays.items() if a == array_name}
            live_arr = np.fromiter(live, np.uint64, len(live))
            for ref, table in engine.spilled:
                if np.isin(table["slot"], live_arr).any():
                    family.segments.append(ref)
                else:  # holds only data of arrays deleted before they were ever committed
                    state.obsolete.append(engine.path(ref))
        metas = {s: m for s, m in live_slots.get(array_name, {}).items() if engine.pending.get(s)}
        if not metas:
            continue
        writer = build_segment(engine, metas, state.base.codec, gen, token, state.max_workers)
        parts, ref = writer.finish_ref()
        family.segments.append(ref)
        files.append((f"{family.dir}/{ref.file}", parts))
    for array_name in names:
        if not new.families[array_name].segments:
            del new.families[array_name]  # nothing stored under this name
    return new, files


def flush(state: WorkingState) -> Manifest:
    """Commit ``state``'s pending changes (one new generation); the manifest committed.

    On any failure, including :class:`ConflictError`, the pending changes stay as
    they were, so the same handle can retry.
    """
    landed = settle_unknown_commit(state)
    if landed is not None:
        return landed
    state.obsolete = []
    new, files = build_flush(state)
    state.lease.renew()
    publish(
        state,
        new,
        files,
        f"another writer committed to {state.backend.location} since this handle read generation "
        f"{state.base.generation}; pending changes are kept: call refresh() and flush() again",
    )
    return new


def publish(state: WorkingState, new: Manifest, files: list[NewFile], conflict: str) -> Version:
    """Write ``files``, then replace the manifest by ``new`` if the store is still at ``state.version``.

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
    data = encode_manifest(new, state.meta_format, state.meta_compression)
    try:
        version = state.backend.commit(state.manifest_name, data, state.version)
    except ConflictError:
        raise ConflictError(conflict) from None
    except AtlasError:
        state.unsure = (new, data, state.changes)
        raise
    _landed(state, new, version)
    return version


def check_added_segments(state: WorkingState, new: Manifest) -> None:
    """Raise :class:`SegmentMissingError` unless every segment ``new`` adds is stored whole.

    Spilled segments were written by earlier calls, possibly long ago: a
    compaction may have swept them (an expired lease, a compactor that predates
    leases, ``grace_period=0``).  Committing a manifest that points at a missing
    file would lose the data silently, so the commit stops here, before the
    manifest is written.  One size query per added segment (a ``stat`` locally, a
    ``HEAD`` on object stores; a listing of the array directory on a backend
    without a ``size`` verb).
    """
    old = {(fam.dir, ref.file) for fam in state.base.families.values() for ref in fam.segments}
    size_of = getattr(state.backend, "size", None)
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
                    listed[fam.dir] = {i.path: i.size for i in state.backend.list(fam.dir)}
                actual = listed[fam.dir].get(path)
            if actual != ref.size:
                found = "is missing" if actual is None else f"is {actual} bytes, {ref.size} were written"
                raise SegmentMissingError(
                    f"cannot commit: segment {path} of array {array_name!r} written by this handle {found} "
                    "(a compaction swept it after the handle's lease over it expired, or another process "
                    "changed it); nothing was committed: call discard() and write the data again"
                )


def settle_unknown_commit(state: WorkingState) -> Manifest | None:
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


def _landed(state: WorkingState, new: Manifest, version: Version) -> None:
    state.adopt(new, version)
    for path in state.obsolete:
        with contextlib.suppress(AtlasError):  # an orphan left here is swept by compact()
            state.backend.delete(path)
    state.obsolete = []
