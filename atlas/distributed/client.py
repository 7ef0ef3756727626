"""``atlas.ingest``: many source files in, written by workers, committed by this process.

The calling process (the *client*) discovers the sources, names their datasets as
``atlas create`` does, hands out batches with disjoint slot ranges
(:mod:`atlas.txn.fragments`), and commits the fragments the tasks return.  Array
bytes and dataset records go from the workers straight to the store (segments and
task parts); the client receives dataset names and file references only.  A
commit runs one more task on a worker, which turns the task parts of a batch into
the commit's catalogue part; the client then publishes the commit object.  Tasks
run on a ``dask.distributed`` client when one is given, else on a local process
pool (:mod:`atlas.distributed.runner`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any, NoReturn

from atlas.distributed.runner import POOL_RETRIES, Runner, start_pool_early
from atlas.distributed.schedule import TAIL_SLOTS, size_due, task_batches
from atlas.distributed.task import Task, run_commit_task, source_label
from atlas.errors import AtlasError, ConflictError, IngestError, InvalidArgumentError
from atlas.metadata import Manifest
from atlas.txn.fragments import (
    Fragment,
    SlotReservation,
    delete_quietly,
    plan_commit,
    publish_fragments,
    unpack_commit_result,
    unpack_fragment,
)
from atlas.txn.leases import RENEW_SECONDS, LeaseGroups

__all__ = ["POOL_RETRIES", "IngestReport", "ingest"]

logger = logging.getLogger("atlas")

#: Attempts of one commit when other writers commit meanwhile.
_COMMIT_ATTEMPTS = 5


@dataclass
class IngestReport:
    """What :func:`ingest` did."""

    #: Datasets committed (one per file, plus one per NetCDF-4 sub-group).
    datasets: int = 0
    #: Sources (files or callables) whose datasets were committed.
    stored: list[str] = field(default_factory=list)
    #: Sources skipped because their dataset already existed (``skip_existing``).
    existing: list[str] = field(default_factory=list)
    #: ``(source, reason)`` of sources that failed and were skipped (``skip_errors``).
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: Bytes the workers wrote into segment files that were committed.
    stored_bytes: int = 0
    #: Size of the source files committed.
    source_bytes: int = 0
    #: Bytes of the task results the client received (batch and commit tasks),
    #: counted pickled as they cross the wire: names and file references only.
    received_bytes: int = 0
    commits: int = 0
    #: Seconds spent committing (the commit tasks and writing the commit objects).
    commit_seconds: float = 0.0
    #: Seconds of the last commit (the one left after the last task returned, if any).
    last_commit_seconds: float = 0.0
    generation: int = 0
    seconds: float = 0.0


def _expand(sources: Iterable[Any], recursive: bool) -> list[Any]:
    """Files (as :class:`~atlas.cli.sources.Source`, named like the CLI names them) and callables."""
    from atlas.cli.sources import Source, discover

    if isinstance(sources, (str, os.PathLike)) or callable(sources):
        sources = [sources]
    out: list[Any] = []
    paths: list[Any] = []
    for item in sources:
        if isinstance(item, Source) or callable(item):  # a Source: discovered and named by the CLI
            out.extend(discover(paths, recursive) if paths else [])
            paths = []
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            if not os.path.exists(item):
                raise InvalidArgumentError(f"source {os.fspath(item)!r} does not exist")
            paths.append(item)
        else:
            raise InvalidArgumentError(
                f"a source must be a path or a callable returning (name, xr.Dataset) pairs, not {type(item).__name__}"
            )
    out.extend(discover(paths, recursive) if paths else [])
    return out


def _check_names(items: list[Any], existing: set[str], skip_existing: bool, skip_errors: bool,
                 report: IngestReport) -> list[Any]:  # fmt: skip
    """Drop (or refuse) files whose dataset name is taken by another file or by the store."""
    seen: dict[str, Any] = {}
    keep = []
    for item in items:
        name = getattr(item, "name", None)
        if name is None:  # a callable: its names are checked on the worker and at commit
            keep.append(item)
            continue
        if name in existing:
            if skip_existing:
                report.existing.append(str(item.path))
                continue
            reason = f"dataset {name!r} already exists in the store"
        elif name in seen:
            reason = f"dataset name {name!r} is also the name of {seen[name].path}"
        else:
            seen[name] = item
            keep.append(item)
            continue
        if not skip_errors:
            raise IngestError(f"{item.path}: {reason}; nothing was stored", [(str(item.path), reason)])
        report.failed.append((str(item.path), reason))
    return keep


def ingest(
    sources: Any,
    store: Any,
    *,
    client: Any = None,
    batch: int | None = None,
    workers: int | None = None,
    skip_existing: bool = False,
    skip_errors: bool = False,
    skip_unsupported: bool = False,
    recursive: bool = True,
    chunk_size: int = 128 << 20,
    engine: str | None = None,
    storage_options: dict[str, Any] | None = None,
    max_pending_bytes: int = 256 << 20,
    commit_interval: float = 60.0,
    slots_per_source: int = 1024,
    progress: Callable[[str, str], None] | None = None,
) -> IngestReport:
    """Store many NetCDF files (or datasets made by callables) with parallel writers.

    Each task opens a batch of sources on a worker, writes their chunks into new
    segment files at the store's location and their records into a catalogue
    part no commit lists yet (a *task part*), and returns only their names and
    file references.  Every ``commit_interval`` seconds and at the end, one more
    task turns the task parts received so far into the commit's catalogue part,
    and this process commits (the task parts are then deleted).  The datasets are
    the ones ``atlas create`` stores from the same files (same names, same
    layout); a format 1 store is first upgraded to format 2 by one commit (as
    ``atlas upgrade`` does).

    Parameters
    ----------
    sources : path, callable or iterable of them
        NetCDF files, directories (searched like ``atlas create`` does), and
        callables returning an iterable of ``(name, xr.Dataset)`` pairs (each
        callable is one source; it must be picklable and runs on a worker).
    store : Atlas or str or os.PathLike
        An existing store (writable handle, path or URL).  The workers open the
        same location themselves: a local path must be on a file system every
        worker sees; object-store credentials are read from each worker's
        environment (``storage_options`` travel with the tasks, so keep secrets
        out of them).
    client : distributed.Client, optional
        Run the tasks on this dask cluster (dask retries a task whose worker
        died).  Without it, a local pool of ``workers`` processes runs them, and
        runs a task again when a worker process dies while it runs (at most
        :data:`POOL_RETRIES` times; then the task's sources fail as below).
    batch : int, optional
        Sources per task (default: about four tasks per worker, at most 64, and
        the last tasks smaller so that the workers finish together).
    skip_existing : bool
        Skip sources whose dataset is already in the store (resumes an ingest).
    skip_errors : bool
        Report a source that fails in ``IngestReport.failed`` and go on; by
        default the first failure stops the ingest (see Raises).
    skip_unsupported, chunk_size, engine, max_pending_bytes
        As the ``atlas create`` options of the same names, per worker.
    commit_interval : float
        The fragments received so far are committed once this many seconds
        passed since the previous commit, or once the tasks of 85% of the
        sources returned (then in commits small enough that none merges
        the catalogue part of the one before), whichever comes first; while
        the last tasks run, as they arrive; and all at the end.  One commit
        runs at a time, beside the tasks.
    slots_per_source : int
        Arrays a source may define (its task's slot range is this times its
        sources; unused slots cost nothing).
    progress : callable, optional
        Called as ``progress(source, note)`` once per source as its task returns
        (``note`` is ``""``, ``"skipped"`` or ``"failed"``).

    Returns
    -------
    IngestReport

    Raises
    ------
    IngestError
        A source failed (without ``skip_errors``), or a task failed after dask's
        retries.  Fragments not yet committed are dropped (their files are
        swept by ``compact``); commits made before stay.
    ConflictError
        Other writers committed so much meanwhile that the ingest's slot ranges
        are taken (nothing of the ingest was committed), or committed first at
        every one of several attempts of a commit.
    CorruptStoreError
        A task part read by a commit task is damaged: that commit is not made
        (commits made before stay).
    """
    from atlas.store import Atlas

    t0 = time.perf_counter()
    report = IngestReport()
    for name, value in (("batch", batch), ("workers", workers), ("slots_per_source", slots_per_source)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
    if client is None:
        start_pool_early()  # its imports overlap the discovery of the sources
    own = not isinstance(store, Atlas)
    handle = Atlas.open(store, "r+", storage_options=storage_options) if own else store
    try:
        state = handle.session.writable("ingest")
        if state.has_changes:
            raise InvalidArgumentError("atlas.ingest needs a store handle without pending changes (flush first)")
        if handle.location.startswith("memory://"):
            raise InvalidArgumentError(
                f"atlas.ingest cannot write to {handle.location}: worker processes cannot reach this process's "
                "memory; use a path every worker sees or an object-store URL"
            )
        items = _check_names(_expand(sources, recursive), set(state.names()), skip_existing, skip_errors, report)
        if not items:
            report.generation = handle.generation
            return report
        if isinstance(state.base, Manifest):  # a commit task writes format 2 parts only
            logger.info("upgrading %s to format 2 before the ingest", handle.location)
            handle.upgrade()
            state = handle.session.state()
        nworkers = workers or (len(client.scheduler_info()["workers"]) if client is not None else os.cpu_count() or 1)
        batches = task_batches(items, batch, nworkers)
        reservation, ranges = SlotReservation.plan(state.base.next_slot, [len(b) * slots_per_source for b in batches])
        tasks = [
            Task(i, handle.location, dict(storage_options) if storage_options else None, tuple(b), ranges[i],
                 state.base.codec, state.base.generation, skip_unsupported, chunk_size, engine, max_pending_bytes)
            for i, b in enumerate(batches)
        ]  # fmt: skip
        runner = Runner(client, nworkers)
        try:
            _drive(handle, tasks, runner, reservation, storage_options, skip_errors, skip_existing, commit_interval,
                   progress, report)  # fmt: skip
        finally:
            runner.close()
        report.generation = handle.generation
    finally:
        if own:
            handle.close()
    report.seconds = time.perf_counter() - t0
    return report


def _drive(handle: Any, tasks: list[Task], runner: Runner, reservation: SlotReservation,
           storage_options: dict[str, Any] | None, skip_errors: bool, skip_existing: bool, commit_interval: float,
           progress: Callable[[str, str], None] | None, report: IngestReport) -> None:  # fmt: skip
    """Collect fragments as tasks finish and commit them as they come, one commit at a time.

    A commit runs in a thread of this process (its commit task on a worker) while
    the tasks go on: fragments are committed once ``commit_interval`` seconds
    passed since the last commit, once their size is due (:func:`size_due`: a
    few large commits, shrinking towards the end so that none makes the
    catalogue merge the ingest's earlier commits again), and once at most
    ``TAIL_SLOTS`` times the slots of tasks are left (the last, smaller tasks)
    whenever more fragments wait than tasks are left (the commit then takes more
    off the end than it leaves there); so the commit left once the last task
    returned holds the fragments of the last tasks only.  The leases over the
    files of waiting and committing fragments (a few fragments per lease object,
    so that an arrival rewrites one small lease) are renewed even when no task
    finishes for a long time (a concurrent ``compact`` keeps them).
    """
    state = handle.session.state()
    # Takes over the workers' leases until their files are committed; in groups, so that
    # an arrival rewrites one small lease however many fragments wait.
    leases = LeaseGroups(state.backend)
    pending: list[Fragment] = []
    # Rows of the pending fragments and of the last of them, counted as they arrive: summed
    # at every step, a long wait before the first commit would cost quadratic time.
    waiting = latest = 0
    by_index = {t.index: t for t in tasks}
    unfinished = len(tasks)
    total = left = sum(len(t.items) for t in tasks)  # sources, and those of the tasks still running
    batch = _Batch(handle, runner, reservation, storage_options, by_index, report, skip_errors, skip_existing)
    committer = _Committer(batch)

    def hold() -> None:
        leases.keep(f.task for f in [*committer.fragments, *pending])

    def step(finished: bool) -> None:
        """Collect a finished commit; start the next one when it is due."""
        nonlocal pending, waiting
        if committer.collect():
            hold()  # the committed files are referenced now: the lease keeps the others only
        if committer.busy() or not pending:
            return
        slots = runner.slots()
        # Near the end, a commit is worth it when it takes more off the end than it leaves there.
        tail = unfinished <= TAIL_SLOTS * slots and len(pending) > unfinished
        due = (finished or tail or time.monotonic() - committer.last >= commit_interval
               or size_due(waiting, latest, total - left, total, batch.parts))
        if due:
            committer.start(pending)
            pending, waiting = [], 0

    def fail(message: str, failed: list[tuple[str, str]]) -> NoReturn:
        """Stop with ``IngestError`` once the commit running has ended: the message says what was committed."""
        # No more tasks first: a commit task may be waiting for a task the pool runs alone,
        # whose solitude ends only with the loop.  Then the commit's outcome, for the message.
        results.close()
        error = committer.settle()
        raise IngestError(f"{message}; {_done(report)}", failed) from error

    def stops(packed: Any) -> bool:
        """The ingest stops on this fragment: a source failed (without ``skip_errors``), or it is refused."""
        try:
            failed = unpack_fragment(packed).failed
        except AtlasError:  # refused below, whatever skip_errors says
            return True
        return bool(failed) and not skip_errors

    results = runner.results(tasks, max(1.0, min(RENEW_SECONDS, commit_interval)), stops)
    try:
        for task, packed, error in results:
            if task is None:  # no task finished for a while: keep the leases fresh, commit what waits
                leases.renew()
                step(False)
                continue
            unfinished -= 1
            left -= len(task.items)
            if error is not None:
                reason = f"task failed: {type(error).__name__}: {' '.join(str(error).split())}"
                labels = [source_label(i) for i in task.items]
                if not skip_errors:
                    fail(f"{labels[0]} (and the {len(labels) - 1} other sources of its task): {reason}",
                         [(lb, reason) for lb in labels])  # fmt: skip
                with batch.lock:
                    report.failed += [(lb, reason) for lb in labels]
                for lb in labels:
                    _tick(progress, lb, "failed")
                step(False)
                continue
            # Counted as the pool or dask ships the result (pickled), whatever its type.
            with batch.lock:
                report.received_bytes += len(pickle.dumps(packed, pickle.HIGHEST_PROTOCOL))
            frag = unpack_fragment(packed)
            if frag.task != task.index or frag.slots != task.slots:
                raise AtlasError(f"the fragment of task {task.index} claims task {frag.task}, slots {frag.slots}")
            for src in frag.stored:
                if not 0 <= src.index < len(task.items):
                    raise AtlasError(f"the fragment of task {task.index} names source {src.index} of {len(task.items)}")
                src.label = source_label(task.items[src.index])
            pending.append(frag)
            latest = _rows(frag)
            waiting += latest
            leases.add(frag.task, frag.paths())
            leases.renew()
            if frag.lease:
                with contextlib.suppress(AtlasError):
                    state.backend.delete(frag.lease)
            if frag.failed:
                if not skip_errors:
                    label, reason = frag.failed[0]
                    fail(f"{label}: {reason}", frag.failed)
                with batch.lock:
                    report.failed += frag.failed
                for lb, _ in frag.failed:
                    _tick(progress, lb, "failed")
            for src in frag.stored:
                _tick(progress, src.label, "")
            step(False)
        committer.wait()
        step(True)
        committer.wait()
    finally:
        results.close()  # no more tasks (a commit waiting for a task running alone may go on)
        committer.close()  # a commit running is waited for (its outcome is the store's)
        leases.release()  # uncommitted files lose their protection: a compaction sweeps them


def _rows(frag: Fragment) -> int:
    """Datasets a fragment stores."""
    return sum(len(src.names) for src in frag.stored)


class _Committer:
    """At most one commit at a time, run by a thread of this process while the tasks go on."""

    def __init__(self, batch: _Batch) -> None:
        self.batch = batch
        #: The fragments of the commit running (their files stay leased until it is collected).
        self.fragments: list[Fragment] = []
        #: When the last commit started (``time.monotonic``).
        self.last = time.monotonic()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="atlas-ingest-commit")
        self._future: Future[None] | None = None

    def busy(self) -> bool:
        return self._future is not None and not self._future.done()

    def start(self, fragments: list[Fragment]) -> None:
        self.fragments, self.last = fragments, time.monotonic()
        self._future = self._thread.submit(self.batch.commit, fragments)

    def collect(self) -> bool:
        """True when a commit finished since the last call (its error is raised here)."""
        future = self._future
        if future is None or not future.done():
            return False
        self._future, self.fragments = None, []
        future.result()
        return True

    def settle(self) -> BaseException | None:
        """Wait for the commit running, if any; its error is returned (and logged), not raised.

        For a caller that stops the ingest for another reason: the commit's outcome
        is the store's, and what it committed belongs in the caller's message.
        """
        try:
            self.wait()
        except Exception as exc:
            logger.error("the commit running when the ingest stopped failed: %s: %s", type(exc).__name__, exc)
            return exc
        return None

    def wait(self) -> None:
        """Wait for the commit running, if any, and collect it."""
        if self._future is not None:
            wait_futures([self._future])
            self.collect()

    def close(self) -> None:
        """Wait for the commit running, if any (its outcome is the store's).

        When the ingest stops for another reason (an interrupt, a forged fragment),
        an error of that commit reaches no caller: it is logged.
        """
        self._thread.shutdown(wait=True)
        self.settle()


def _tick(progress: Callable[[str, str], None] | None, label: str, note: str) -> None:
    if progress is not None:
        progress(label, note)


def _done(report: IngestReport) -> str:
    if not report.commits:
        return "nothing was committed"
    return f"the {report.datasets} datasets of {report.commits} earlier commits stay"


@dataclass
class _Batch:
    """Commits batches of fragments: a commit task on a worker, then the commit object from here."""

    handle: Any
    runner: Runner
    reservation: SlotReservation
    storage_options: dict[str, Any] | None
    tasks: dict[int, Task]
    report: IngestReport
    skip_errors: bool
    skip_existing: bool
    #: Dataset names committed by this ingest (a later source of one of them is a duplicate).
    committed: set[str] = field(default_factory=set)
    #: Rows of the catalogue's parts after this ingest's last commit (None before its first commit).
    parts: list[int] | None = None
    #: Held while the report is changed (commits run in a thread of their own).
    lock: threading.Lock = field(default_factory=threading.Lock)

    def commit(self, fragments: list[Fragment]) -> None:
        """Commit ``fragments``, moving onto other writers' generations as needed.

        Each attempt plans on the current snapshot (refusing sources whose names
        are taken there) and runs its own commit task; the part an attempt that
        lost to another writer wrote is deleted here (or swept by ``compact``).
        Once committed, the task parts are deleted.
        """
        handle, report, reservation = self.handle, self.report, self.reservation
        state = handle.session.state()
        t0 = time.perf_counter()
        job = None
        for attempt in range(_COMMIT_ATTEMPTS):
            job, refused = plan_commit(state, fragments, reservation, self.storage_options)
            if job is None:
                break
            packed = self.runner.call(run_commit_task, job)
            with self.lock:
                report.received_bytes += len(pickle.dumps(packed, pickle.HIGHEST_PROTOCOL))
            kept, ref, lease = unpack_commit_result(packed, job)
            try:
                publish_fragments(state, fragments, reservation, job, kept, ref)
            except ConflictError:
                delete_quietly(state.backend, [ref.path, lease])
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise  # (slot ranges taken meanwhile are found by the next plan_commit)
                logger.info("another writer committed to %s; committing on top of its generation", handle.location)
                handle.refresh()
                state = handle.session.state()
                continue
            except BaseException:
                delete_quietly(state.backend, [lease])  # the part is left for compact: it may have been committed
                raise
            delete_quietly(state.backend, [lease])
            self.parts = [p.rows for p in state.base.parts]  # the state moved to the new commit
            break
        # The task parts were read into the commit's part (or every row was refused).
        delete_quietly(state.backend, [f.part.path for f in fragments if f.part is not None])
        if job is None:  # nothing to commit: the batch's segments hold no committed data
            delete_quietly(state.backend, [p for f in fragments for p in f.paths()])
        with self.lock:  # the ingest's thread changes the report too
            report.commits += 0 if job is None else 1
            report.last_commit_seconds = time.perf_counter() - t0
            report.commit_seconds += report.last_commit_seconds
            bad = {id(src) for src, _, _ in refused}
            for frag in fragments:
                if job is not None:
                    report.stored_bytes += frag.stored_bytes
                sizes = self.tasks[frag.task].items
                for src in frag.stored:
                    if id(src) in bad:
                        continue
                    report.stored.append(src.label)
                    self.committed.update(src.names)
                    report.datasets += len(src.names)
                    report.source_bytes += getattr(sizes[src.index], "size", 0)
            failed = []
            for src, reason, in_store in refused:
                ours = next((n for n in src.names if n in self.committed), None) if in_store else None
                if ours is not None:  # committed by an earlier commit of this ingest: a duplicate, not a resume
                    failed.append((src.label, f"dataset {ours!r} is also stored by an earlier source of this ingest"))
                elif in_store and self.skip_existing:  # a name a callable made that the store already holds
                    report.existing.append(src.label)
                else:
                    failed.append((src.label, reason))
            if failed and self.skip_errors:
                report.failed += failed
        if failed and not self.skip_errors:
            label, reason = failed[0]
            raise IngestError(f"{label}: {reason}; {_done(report)}", failed)
