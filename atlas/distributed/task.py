"""What a worker runs for ``atlas.ingest``: one batch of sources, or the commit of a batch of fragments.

:func:`run_task`: the worker opens the store itself from its location (a path on
a shared file system or an object-store URL; credentials come from the worker's
environment), stages each source exactly as ``atlas create`` does
(:func:`atlas.cli.ingest.write_file`, so the stored datasets are the same), builds
the segment files and the catalogue part of their records with the commit path's
own :func:`~atlas.txn.commit.build_flush`, writes them under a lease (the part is
a *task part*: no commit object lists it), and returns a
:class:`~atlas.txn.fragments.Fragment` of names and file references.  It never
commits.  The cyclic garbage collector is paused across the files it loads whole
(see :func:`run_task`).

:func:`run_commit_task`: the catalogue part of one commit of fragments, built from
their task parts (:func:`~atlas.txn.fragments.build_commit_part`) and written
under a lease; the client publishes the commit object.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from atlas.errors import AtlasError, BackendError, CorruptStoreError, ReadOnlyError, StoreClosedError
from atlas.metadata import gc_paused
from atlas.txn.fragments import CommitJob, Fragment, StoredSource, build_commit_part, pack_commit_result, pack_fragment

if TYPE_CHECKING:
    from atlas.cli.ingest import HeldPause

__all__ = ["Task", "run_commit_task", "run_task", "source_label"]

logger = logging.getLogger("atlas")

#: Errors of the store, not of a source: they fail the whole task.
_FATAL = (BackendError, CorruptStoreError, StoreClosedError, ReadOnlyError, MemoryError)
#: netCDF-C and HDF5 are not thread-safe: files opened, read and closed by several
#: threads of one process crash it (xarray's own ``open_dataset`` too).  A dask
#: worker runs one task per thread, so a process stages one source file at a time;
#: the rest of a task (its segments, its part, its puts) runs beside.
_FILES = threading.Lock()


@dataclass(frozen=True)
class Task:
    """A batch of sources and the slot range their arrays may use (sent to a worker: keep it small)."""

    index: int
    location: str
    #: Non-secret store options (endpoint, region...); secrets come from the worker's environment.
    storage_options: dict[str, Any] | None
    #: :class:`atlas.cli.sources.Source` objects or callables returning ``(name, xr.Dataset)`` pairs.
    items: tuple[Any, ...]
    slots: tuple[int, int]
    #: The store's chunk codec and the generation the ingest started from (the task
    #: does not read the manifest: at 100 000 datasets it is hundreds of megabytes).
    codec: str
    generation: int
    skip_unsupported: bool
    chunk_size: int
    engine: str | None
    max_pending_bytes: int


def source_label(item: Any) -> str:
    """How reports name a source: a file's path, or a callable's qualified name."""
    path = getattr(item, "path", None)
    if path is not None:
        return str(path)
    func = getattr(item, "func", item)  # functools.partial
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, AtlasError) else f"{type(exc).__name__}: {text}"


def _stage_file(store: Any, item: Any, task: Task, pause: HeldPause) -> list[str]:
    """Stage one file (its name was checked by the client); its dataset names.

    ``pause`` holds a pause of the cyclic garbage collector across the files loaded
    whole (see :func:`run_task`); it is released before a streamed file is staged,
    so that one's memory stays bounded.  One file at a time per process (:data:`_FILES`).
    """
    from atlas.cli.ingest import write_file
    from atlas.cli.progress import source_context
    from atlas.cli.sources import load_source

    with _FILES:
        with gc_paused():
            loaded = load_source(item, task.chunk_size, task.engine)
        try:
            for text in loaded.warnings:
                logger.warning("%s: %s", item.path, text)
            if any(part.streamed for part in [loaded, *loaded.groups]):
                pause.release()
            else:
                pause.hold()
            with source_context(str(item.path)):
                write_file(store, loaded, task.engine, task.skip_unsupported)
            return [part.name for part in [loaded, *loaded.groups]]
        finally:
            for part in [loaded, *loaded.groups]:
                part.close()


def _stage_callable(store: Any, make: Callable[[], Iterable[tuple[str, Any]]]) -> list[str]:
    """Stage every ``(name, dataset)`` a callable yields; all or none of them.

    Names taken in the store are found at commit (the task does not read the manifest).
    """
    names: list[str] = []
    try:
        for name, ds in make():
            store.add_xr_dataset(ds, name)
            names.append(name)
    except _FATAL:
        raise
    except Exception:
        for name in names:
            with contextlib.suppress(Exception):
                store.delete_dataset(name)
        raise
    return names


def run_task(task: Task) -> bytes:
    """Store ``task``'s sources in new segment files; the metadata fragment to commit, packed.

    A source that fails is listed in ``Fragment.failed`` and leaves nothing behind;
    a store error fails the task (no file it wrote is referenced by any manifest).
    """
    from atlas.backends import resolve
    from atlas.metadata import Manifest
    from atlas.store import Atlas
    from atlas.txn.commit import build_flush
    from atlas.txn.leases import Lease
    from atlas.txn.state import WorkingState

    frag = Fragment(task.index, task.slots)
    lo, hi = task.slots
    backend = resolve(task.location, read_only=False, **(task.storage_options or {}))
    # An empty snapshot of the store: the task only adds datasets, and the families
    # of new segments are named from the array names as in any store.
    base = Manifest(codec=task.codec, generation=task.generation, next_slot=lo)
    state = WorkingState(backend, "", "json", "none", base, None)
    state.max_pending_bytes = task.max_pending_bytes
    store = Atlas(state, "r+")
    staged: list[StoredSource] = []
    # Decoding a small file makes thousands of short-lived objects; the collections
    # they set off would traverse everything staged so far, a tenth of the task's
    # time and growing with the batch.  So the collector stays paused across the
    # files loaded whole (they leave a few kilobytes of cyclic garbage each, freed
    # when the pause ends, at the latest every HeldPause.FILES files) and runs while
    # a streamed file or a callable's datasets are staged, whose memory must stay bounded.
    from atlas.cli.ingest import HeldPause

    pause = HeldPause()
    try:
        for index, item in enumerate(task.items):
            label = source_label(item)
            try:
                if callable(item):
                    pause.release()
                    names = _stage_callable(store, item)
                else:
                    names = _stage_file(store, item, task, pause)
            except _FATAL:
                raise
            except Exception as exc:
                pause.release()  # its traceback's frames may hold the source's arrays in a cycle
                frag.failed.append((label, _reason(exc)))
                continue
            if state.next_slot > hi:
                raise AtlasError(
                    f"{label}: the sources of this task define more than {hi - lo} arrays; "
                    "pass a smaller batch or a larger slots_per_source to atlas.ingest"
                )
            staged.append(StoredSource(index, names))
        pause.release()
        # The base is an empty v1 manifest: the catalogue part build_flush lays out
        # holds exactly the staged records (stats folded), with provisional ids.
        new, built = build_flush(state)
        for array_name, family in new.families.items():
            frag.segments += [(array_name, family.dir, ref) for ref in family.segments]
        if staged:
            frag.part = new.parts[0]
        wanted = set(frag.paths())
        files = [(path, parts) for path, parts in built if path in wanted]
        lease = Lease(state.backend)
        lease.hold(wanted)  # before the files exist, so no compaction sweeps them
        for path, parts in files:
            state.backend.put(path, parts)
        for obsolete in state.obsolete:  # spilled data of a source that failed afterwards
            with contextlib.suppress(AtlasError):
                state.backend.delete(obsolete)
        frag.lease = lease.path
        frag.stored_bytes = sum(ref.size for _, _, ref in frag.segments)
        frag.stored = staged
    finally:
        pause.release()
        # Forget the staged state without deleting anything: the files are now the
        # committing process's to reference (or a compaction's to sweep).
        state.adopt(state.base, state.version)
        store.close()
    return pack_fragment(frag)


def run_commit_task(job: CommitJob) -> bytes:
    """Write the catalogue part of ``job``'s commit under a lease; the packed result for the client.

    The client publishes the commit object; until then (or forever, when another
    writer commits first) the part is an unreferenced file the lease protects.
    """
    from atlas.backends import resolve
    from atlas.txn.leases import Lease

    backend = resolve(job.location, read_only=False, **(job.storage_options or {}))
    kept, ref, (path, buffers) = build_commit_part(job, backend)
    lease = Lease(backend)
    lease.hold([path])
    backend.put(path, buffers)
    return pack_commit_result(kept, ref, lease.path)
