"""``atlas create`` and ``atlas append``: NetCDF files in, one atomic commit out.

Reader processes (``-j``) open and load the next files (see :mod:`atlas.cli.sources`)
while the main thread encodes and stages the current one with
``Atlas.add_xr_dataset``.  Processes, not threads: netCDF-C and HDF5 are not
thread-safe and xarray opens files without its lock, so concurrent opens in threads
crash the interpreter.  At most ``-j`` files wait ahead of the writer, so memory
holds about ``-j`` x ``--chunk-size`` of source data plus the store's spill budget
(``--max-pending``: staged chunks beyond it go to uncommitted segment files).
``-j 0`` reads in the writer's thread.  The
store is flushed once, at the end: either every stored file is committed, or none.

A file that cannot be read or stored aborts the run: the pending changes are
discarded (``append`` leaves the store exactly as it was; ``create`` removes the
store it made) and the exit status is 1.  ``--skip-errors`` logs the file and goes
on; ``--skip-unsupported`` drops only the variables ATLAS cannot store (complex or
compound dtypes, ...) and stores the rest of the file.  Errors of the store itself
(I/O, a full disk, damage) always abort.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import shutil
import signal
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from atlas.cli.cluster import ingest_on_cluster, wants_cluster
from atlas.cli.common import (
    CLIError,
    FileFailure,
    default_jobs,
    human_bytes,
    local_path,
    one_line,
    open_store,
    plural,
    require_xarray,
    store_options,
)
from atlas.cli.progress import Reporter, log, source_context
from atlas.cli.sources import Loaded, Source, discover, find_unsupported, load_source, open_streamed
from atlas.errors import (
    BackendError,
    ConflictError,
    CorruptStoreError,
    DTypeError,
    ReadOnlyError,
    StoreClosedError,
    StoreExistsError,
    ValueOverflowError,
)
from atlas.metadata import gc_paused, gc_paused_elsewhere
from atlas.store import Atlas

__all__ = ["HeldPause", "cmd_append", "cmd_create", "ingest", "write_file"]

#: Errors of the store, not of a source file: they abort even with ``--skip-errors``.
_FATAL = (BackendError, CorruptStoreError, StoreClosedError, ReadOnlyError, ConflictError, MemoryError)


@dataclass
class Outcome:
    """What an ingest did."""

    stored: list[Source] = field(default_factory=list)
    #: Datasets stored: one per file plus one per NetCDF-4 sub-group.
    datasets: int = 0
    skipped: list[tuple[Source, str]] = field(default_factory=list)
    dropped: int = 0
    seconds: float = 0.0


def _reason(exc: BaseException) -> str:
    text = one_line(exc)
    from atlas.errors import AtlasError

    return text if isinstance(exc, AtlasError) else f"{type(exc).__name__}: {text}"


class HeldPause:
    """A pause of the cyclic garbage collector held across the small files one process stages.

    Decoding a small file makes thousands of short-lived objects; every collection
    they set off also traverses everything staged before (for a batch of CF profile
    files, a tenth of the time, growing with the batch).  :meth:`hold` before a file
    loaded whole keeps the collector paused, or pauses it; :meth:`release` before
    anything whose memory must stay bounded (a streamed file, a caller's datasets),
    after a failure (a traceback's frames can hold a file's arrays in a cycle), and
    at the end.  The pause is also released every :attr:`FILES` holds, so the few
    kilobytes of cyclic garbage each file leaves are freed by the next collection.
    Nests with :func:`atlas.metadata.gc_paused` (the commit path's pause).

    Threads share the collector (a dask worker runs one task per thread): while
    another thread's pause keeps it off, a release collects the young generations
    itself (what the first collection after the pause would do), so overlapping
    tasks do not keep every file's cyclic garbage until all of them end.  A
    collector the caller switched off stays off, and is not run.
    """

    #: Files staged under one pause at most.
    FILES = 256

    def __init__(self) -> None:
        self._held: Any = None
        self._files = 0

    def hold(self) -> None:
        """Keep the collector paused for one more file."""
        if self._held is not None and self._files >= self.FILES:
            self.release()
        if self._held is None:
            held = gc_paused()
            held.__enter__()
            self._held, self._files = held, 0
        self._files += 1

    def release(self) -> None:
        """Let the collector run again (unless another pause holds it)."""
        held, self._held = self._held, None
        if held is not None:
            held.__exit__(None, None, None)
            if gc_paused_elsewhere():
                gc.collect(1)


def write_file(store: Atlas, loaded: Loaded, engine: str | None, skip_unsupported: bool) -> tuple[int, int]:
    """Stage one file: its root group, then each sub-group as a dataset of its own.

    Returns ``(datasets, dropped variables)``.  When a group fails, the datasets
    already staged for the file are removed again, so a file is stored whole or not
    at all (also with ``--skip-errors``).
    """
    staged: list[str] = []
    dropped = 0
    try:
        for part in [loaded, *loaded.groups]:
            try:
                dropped += _write(store, open_streamed(part, engine), skip_unsupported)
            finally:
                part.close()
            staged.append(part.name)
    except _FATAL:
        raise
    except Exception:
        for name in staged:
            with contextlib.suppress(Exception):
                store.delete_dataset(name)
        raise
    return len(staged), dropped


def _write(store: Atlas, loaded: Loaded, skip_unsupported: bool) -> int:
    """Stage one opened file or group; returns the number of variables dropped as unsupported."""
    ds, name = loaded.ds, loaded.name
    try:
        store.add_xr_dataset(ds, name, chunks=loaded.disk_chunks)
        return 0
    except (DTypeError, ValueOverflowError):
        if not skip_unsupported:
            raise
        bad = find_unsupported(ds)
        if not bad or len(bad) == len(ds.variables):
            raise
    for var, why in bad.items():
        log.warning("%s: dropped unsupported variable %r: %s", loaded.source.path, var, why)
    kept = ds.drop_vars(list(bad))
    chunks = None
    if loaded.disk_chunks is not None:
        chunks = {d: c for d, c in loaded.disk_chunks.items() if d in kept.dims}
    store.add_xr_dataset(kept, name, chunks=chunks)
    return len(bad)


def _reader_pool(jobs: int) -> Executor:
    """``jobs`` reader processes (forkserver on POSIX: they never inherit the writer's threads)."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # Imported once in the fork server instead of once per reader: what every
        # reader imports on its first file (netCDF4 with the one-open store; dask,
        # which xarray imports to test whether arrays are dask arrays).  A module
        # that is not installed is skipped.
        ctx.set_forkserver_preload(["xarray", "atlas.cli.sources", "atlas.cli.netcdf_open", "dask"])
    return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_reader_init)


def _reader_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the writer's to handle


class _Inline(Executor):
    """``-j 0``: read in the writer's thread, one file at a time."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def ingest(store: Atlas, sources: list[Source], args: Any, verb: str) -> Outcome:
    """Stage every source in ``store`` (no flush).  Raises :class:`FileFailure` on a bad file
    unless ``args.skip_errors``; store errors propagate."""
    out = Outcome()
    t0 = time.perf_counter()
    jobs = default_jobs(len(sources)) if args.jobs is None else args.jobs
    pool = _reader_pool(jobs) if jobs > 0 else _Inline()
    ahead = max(1, jobs)  # files read ahead of the writer (bounds memory)
    with Reporter(len(sources), verb, args.quiet) as reporter:
        queue: deque[tuple[Source, Future]] = deque()
        feed = iter(sources)

        def submit() -> None:
            src = next(feed, None)
            if src is not None:
                queue.append((src, pool.submit(load_source, src, args.chunk_size, args.engine)))

        pause = HeldPause()

        def fail(src: Source, exc: BaseException) -> None:
            pause.release()
            reason = _reason(exc)
            if not args.skip_errors:
                raise FileFailure(str(src.path), reason) from exc
            log.warning("skipped %s: %s", src.path, reason)
            out.skipped.append((src, reason))
            reporter.advance(src.name, "skipped")

        for _ in range(ahead):
            submit()
        try:
            while queue:
                src, fut = queue.popleft()
                try:
                    loaded = fut.result()
                except BrokenProcessPool:
                    raise CLIError(
                        f"a reader process died while reading {src.path} (out of memory, or a crash in the "
                        "NetCDF/HDF5 library); nothing was committed"
                    ) from None
                except Exception as exc:
                    submit()
                    fail(src, exc)
                    continue
                submit()
                for text in loaded.warnings:
                    log.warning("%s: %s", src.path, text)
                if any(part.streamed for part in [loaded, *loaded.groups]):
                    pause.release()
                else:
                    pause.hold()
                try:
                    with source_context(str(src.path)):
                        datasets, dropped = write_file(store, loaded, args.engine, args.skip_unsupported)
                except _FATAL:
                    raise
                except Exception as exc:
                    fail(src, exc)
                    continue
                finally:
                    for part in [loaded, *loaded.groups]:
                        part.close()
                out.stored.append(src)
                out.datasets += datasets
                out.dropped += dropped
                reporter.advance(src.name)
        finally:
            pause.release()
            for _src, fut in queue:  # files not reached because of an abort
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
    out.seconds = time.perf_counter() - t0
    return out


def _commit(store: Atlas, attempts: int = 5) -> None:
    """Flush; when another writer committed meanwhile, move onto its generation and retry."""
    for attempt in range(attempts):
        try:
            store.flush()
            return
        except ConflictError:
            if attempt == attempts - 1:
                raise
            log.info("another writer committed to %s; retrying on top of its generation", store.location)
            store.refresh()


def _check_names(sources: list[Source], existing: set[str], skip_existing: bool, skip_errors: bool) -> list[Source]:
    """Drop (or refuse) files whose dataset name is taken by another file or by the store."""
    seen: dict[str, Source] = {}
    keep = []
    for src in sources:
        if src.name in existing:
            if skip_existing:
                log.info("%s: dataset %r exists, skipped", src.path, src.name)
                continue
            reason = f"dataset {src.name!r} already exists in the store"
        elif src.name in seen:
            reason = f"dataset name {src.name!r} is also the name of {seen[src.name].path}"
        else:
            seen[src.name] = src
            keep.append(src)
            continue
        if not skip_errors:
            raise FileFailure(str(src.path), reason)
        log.warning("skipped %s: %s", src.path, reason)
    return keep


def _summary(args: Any, verb: str, store: Atlas, out: Outcome, n_input: int) -> None:
    log.info(
        "%s %s: %d datasets stored, %d files skipped, generation %d",
        verb, store.location, out.datasets, len(out.skipped), store.generation,
    )  # fmt: skip
    if args.quiet:
        return
    size = human_bytes(sum(s.size for s in out.stored))
    line = (
        f"{verb} {store.location}: {plural(out.datasets, 'dataset')} from {plural(n_input, 'file')} "
        f"({size}) in {out.seconds:.1f} s"
    )
    if out.skipped:
        line += f"; skipped {len(out.skipped)} (see the warnings above)"
    if out.dropped:
        line += f"; dropped {plural(out.dropped, 'unsupported variable')}"
    print(line)


def _discover(paths: list[str], recursive: bool) -> list[Source]:
    sources = discover(paths, recursive)
    if not sources:
        where = ", ".join(paths)
        raise CLIError(f"no NetCDF files (.nc, .nc4, .cdf, .netcdf) in {where}")
    return sources


def cmd_create(args: Any) -> int:
    """``atlas create SRC... STORE``: files, and the files under directories, like ``append``."""
    srcs = list(args.src)
    for src in srcs:
        if not os.path.exists(src):
            raise CLIError(f"{src} does not exist (give NetCDF files or directories that hold them)")
    try:
        sources = _check_names(_discover(srcs, args.recursive), set(), False, args.skip_errors)
    except FileFailure as exc:
        raise CLIError(f"{exc}; nothing was stored (--skip-errors skips such files)") from None
    require_xarray()
    path = local_path(args.store)
    existed = path is not None and os.path.exists(path)
    try:
        store = Atlas.create(
            args.store,
            codec=args.codec,
            meta_format=args.meta_format,
            meta_compression=args.meta_compression,
            max_pending_bytes=args.max_pending,
            storage_options=store_options(args),
        )
    except StoreExistsError as exc:
        if "already holds an ATLAS store" not in str(exc):
            raise
        raise CLIError(
            f"{args.store} already holds an ATLAS store; add files to it with `atlas append SRC... {args.store}`"
        ) from None
    try:
        out = (ingest_on_cluster if wants_cluster(args) else ingest)(store, sources, args, "created")
        _commit(store)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            store.discard()
            store.close()
        _remove_new_store(path, existed)
        if isinstance(exc, FileFailure):
            raise CLIError(
                f"{exc}; nothing was stored and {args.store} was removed (--skip-errors skips bad files)"
            ) from None
        raise
    _summary(args, "created", store, out, len(sources))
    store.close()
    return 0


def _remove_new_store(path: str | None, existed: bool) -> None:
    """Undo ``Atlas.create``: remove the directory it made, or empty the one it was given."""
    if path is None:
        return
    if not existed:
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):  # the directory was empty before create
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


def cmd_append(args: Any) -> int:
    """``atlas append SRC... STORE``."""
    store = open_store(args, "r+", max_pending_bytes=args.max_pending)
    try:
        sources = _discover(args.src, args.recursive)
        try:
            sources = _check_names(sources, set(store.list_datasets()), args.skip_existing, args.skip_errors)
        except FileFailure as exc:
            raise CLIError(
                f"{exc}; nothing was stored (--skip-existing skips files already stored, --skip-errors any bad file)"
            ) from None
        if not sources:
            if not args.quiet:
                print(f"appended {store.location}: nothing to do")
            return 0
        require_xarray()
        generation = store.generation
        try:
            out = (ingest_on_cluster if wants_cluster(args) else ingest)(store, sources, args, "appended")
            _commit(store)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                store.discard()
            if isinstance(exc, FileFailure):
                raise CLIError(
                    f"{exc}; nothing was stored, {args.store} is unchanged at generation {generation} "
                    "(--skip-errors skips bad files)"
                ) from None
            raise
        _summary(args, "appended", store, out, len(sources))
    finally:
        with contextlib.suppress(Exception):
            store.discard()  # nothing pending after a commit; never flush from here
            store.close()
    return 0
