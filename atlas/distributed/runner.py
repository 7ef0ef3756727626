"""Where the tasks of ``atlas.ingest`` run: a ``dask.distributed`` client or a local process pool.

:class:`Runner` runs the batch tasks as they come (:meth:`Runner.results`) and,
between two of their results (or heartbeats), one task at once ahead of the queued ones
(:meth:`Runner.call`: the commit task of a batch of fragments).  On dask, retries
are dask's; on the local pool, a task that was running when a worker process died
runs again (see :meth:`Runner._pool_results`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from atlas.distributed.task import Task, run_task

__all__ = ["POOL_RETRIES", "Runner", "start_pool_early"]

logger = logging.getLogger("atlas")

#: Times a task of the local pool runs again after a worker process died while it
#: ran (dask's default ``distributed.scheduler.allowed-failures``).
POOL_RETRIES = 3
#: What :meth:`Runner.results` yields: a finished task, or ``(None, None, None)`` (a heartbeat).
_Result = tuple[Task | None, Any, BaseException | None]
#: Tasks the local pool holds queued beyond one running per process: a process that
#: finishes one takes the next at once (see :meth:`Runner._pool_results`).
_QUEUED_AHEAD = 1
#: dask priority of a commit task: it runs before the batch tasks still queued.
_COMMIT_PRIORITY = 100


def _context() -> Any:
    """The start method of the worker processes: one that never inherits this process's threads.

    The fork server when there is one, else spawn.
    """
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # Imported once in the fork server instead of once per worker process (about
        # 0.9 s of CPU each, a pool is made again after a worker died): what every
        # task imports on its first source (dask too: xarray's time decoding imports
        # it to test for dask arrays).  A module that is not installed is skipped.
        preload = ["atlas.distributed.task", "atlas.store", "atlas.cli.ingest", "atlas.cli.netcdf_open",
                   "atlas.cli.netcdf_template"]
        ctx.set_forkserver_preload([*preload, "xarray", "dask", "blosc2"])
    return ctx


def start_pool_early() -> None:
    """Start the fork server of the local pool now, if it is not running yet.

    It then imports its preloads (most of a second) while the caller opens the
    store and discovers the sources, instead of after, when the first task is
    submitted.  The fork server is this process's (any later pool forks from it);
    starting it for an ingest that turns out to have nothing to do costs nothing
    but the process.
    """
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` worker processes (see :func:`_context`)."""
    return ProcessPoolExecutor(workers, mp_context=_context())


def _drain(ready: list[_Result]) -> Iterator[_Result]:
    """Yield and forget the results in ``ready``."""
    while ready:
        yield ready.pop(0)


def _shut(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down, waiting for its processes, none of which may outlive it.

    A pool breaks when one of its processes dies; it then terminates the others and
    joins them.  A process it started for a submission that raced with the break is
    not always among those it terminates (CPython 3.11), yet it is joined: it waits
    for work forever and so would ``shutdown``.  So every process of a broken pool
    is terminated first (a pool that is not broken shuts down as usual: its
    processes exit once the work queued is done or cancelled).
    """
    if getattr(pool, "_broken", False):
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


class Runner:
    """The tasks of one ingest, on ``client`` (dask) or on a pool of ``workers`` local processes."""

    def __init__(self, client: Any, workers: int) -> None:
        self.client = client
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None if client is not None else _pool(workers)
        self._calls = 0
        self._lock = threading.RLock()
        #: Signals changes of ``_alone`` (a suspect task runs alone) and ``_calling`` (a call runs).
        self._cond = threading.Condition(self._lock)
        self._alone = False
        self._calling = 0

    def slots(self) -> int:
        """Tasks that can run at once: the dask workers' threads, or the pool's processes."""
        if self.client is None:
            return self.workers
        info = self.client.scheduler_info()["workers"].values()
        return max(1, sum(int(w.get("nthreads", 1)) for w in info))

    def close(self) -> None:
        if self.pool is not None:
            _shut(self.pool)
            self.pool = None

    def _submit(self, pool: ProcessPoolExecutor, fn: Callable[[Any], Any], arg: Any) -> Future[Any]:
        """``pool.submit(fn, arg)``, never while another thread shuts a broken pool down.

        A process a submission starts while a broken pool is shut down is not among
        the processes it terminates, and the shutdown would wait for it forever.
        """
        with self._lock:
            return pool.submit(fn, arg)

    def _renew(self, broken: ProcessPoolExecutor) -> None:
        """Replace the pool when ``broken`` is still the current one (a dead process breaks a whole pool).

        The batch tasks and a commit task (run by another thread) may both find it broken.
        """
        with self._lock:
            if broken is self.pool:
                _shut(broken)
                self.pool = _pool(self.workers)

    def call(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        """``fn(arg)`` on a worker, now; its result (its exception is raised here).

        May be called by another thread while :meth:`results` runs (one call at a
        time): on the local pool it runs in the next process that is free, beside
        the batch tasks.

        On the local pool, a worker process that dies while it runs costs a
        retry, at most :data:`POOL_RETRIES` of them, as for any task.
        """
        self._calls += 1
        if self.client is not None:
            key = f"atlas-ingest-commit-{os.getpid()}-{id(self)}-{self._calls}"
            fut = self.client.submit(fn, arg, pure=False, key=key, priority=_COMMIT_PRIORITY)
            try:
                return fut.result()
            finally:
                fut.release()
        with self._cond:  # a suspect task runs alone: a call waits for it
            self._cond.wait_for(lambda: not self._alone)
            self._calling += 1
        try:
            for _ in range(POOL_RETRIES + 1):
                pool = self.pool
                assert pool is not None
                try:
                    return self._submit(pool, fn, arg).result()
                except (BrokenProcessPool, CancelledError):  # cancelled: the pool broke and was replaced meanwhile
                    logger.warning("a worker process died while the commit task ran; running it again")
                    self._renew(pool)
            raise BrokenProcessPool(f"a worker process died each of the {POOL_RETRIES + 1} times the commit task ran")
        finally:
            with self._cond:
                self._calling -= 1
                self._cond.notify_all()

    def results(self, tasks: list[Task], heartbeat: float,
                stops: Callable[[Any], bool] | None = None) -> Iterator[_Result]:  # fmt: skip
        """``(task, result, None)`` or ``(task, None, error)`` as ``tasks`` finish.

        ``(None, None, None)`` when no task finished for ``heartbeat`` seconds: the
        caller's chance to renew its lease and commit what waits.  ``stops(result)``
        is true for a result the caller stops on (a source that failed): the local
        pool yields it before it starts another task, as it does an error.
        """
        if self.client is None:
            yield from self._pool_results(tasks, heartbeat, stops)
            return
        from distributed import wait as dask_wait

        client = self.client
        futures = {client.submit(run_task, t, pure=False, key=f"atlas-ingest-{os.getpid()}-{id(tasks)}-{t.index}"): t
                   for t in tasks}  # fmt: skip
        left = set(futures)
        try:
            while left:
                try:
                    done = dask_wait(list(left), timeout=heartbeat, return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    yield None, None, None
                    continue
                for fut in done:
                    left.discard(fut)
                    task = futures[fut]
                    try:
                        yield task, fut.result(), None
                    except Exception as exc:  # the task failed for good (dask's retries are spent)
                        yield task, None, exc
                    fut.release()
        finally:
            client.cancel(list(futures))

    def _pool_results(self, tasks: list[Task], heartbeat: float,
                      stops: Callable[[Any], bool] | None) -> Iterator[_Result]:  # fmt: skip
        """:meth:`results` on the local pool, retrying the tasks of a worker process that died.

        At most ``workers`` tasks run at once, and :data:`_QUEUED_AHEAD` more wait in
        the pool's queue, so that a process that finishes a task starts the next one
        at once instead of waiting for this process to submit it.  The pool hands
        tasks out in the order they were submitted, so when a process dies the tasks
        in flight that were running are among the first ``workers`` of them (in that
        order); the others never started and are simply submitted again.  Which one
        the dead process ran is unknown (a dead process breaks the whole pool), so, as
        dask counts a task that was running on a worker that died, each task that may
        have been running gets a strike and runs again on a new pool.
        Unlike dask, a task with a strike then runs alone, so a task that kills its
        process does not take the strikes of the tasks beside it: only the culprit
        collects more than :data:`POOL_RETRIES` strikes, and then fails like a task
        that raised.

        The results of the tasks that finished are yielded after the next tasks are
        submitted (the invariant above holds): the caller handles a fragment (unpacks
        it, writes a lease, maybe starts a commit) while the freed process already
        runs its next task instead of waiting for it.  A task that failed, or whose
        result ``stops`` the caller, is yielded first (the caller stops on it: no
        task is started for nothing).
        """
        todo = deque(tasks)
        suspects: deque[Task] = deque()  # tasks that were running when a process died: each runs alone
        strikes = dict.fromkeys((t.index for t in tasks), 0)
        running: dict[Future[Any], Task] = {}
        owner: dict[Future[Any], ProcessPoolExecutor] = {}  # a commit task may have renewed the pool meanwhile

        def submit(task: Task) -> None:
            pool = self.pool
            assert pool is not None
            try:
                fut = self._submit(pool, run_task, task)
            except BrokenProcessPool:  # a process died since the last wait
                self._renew(pool)
                raise
            running[fut], owner[fut] = task, pool

        alone: set[int] = set()  # the suspect running, alone: nothing else is submitted beside it

        def set_alone(on: bool) -> None:
            with self._cond:
                self._alone = on
                self._cond.notify_all()

        ready: list[_Result] = []  # finished, yielded once the freed processes have their next tasks
        try:  # a suspect's solitude ends with the loop, however it ends
            while todo or suspects or running or ready:
                broken = False
                try:
                    if suspects and not running:
                        with self._cond:  # not beside a call: a suspect runs alone
                            if not self._calling:
                                submit(suspects[0])
                                alone.add(suspects.popleft().index)
                                self._alone = True
                        if not running:  # a call runs: wait for it
                            yield from _drain(ready)
                            with self._cond:
                                self._cond.wait_for(lambda: not self._calling, timeout=heartbeat)
                            yield None, None, None
                            continue
                    while not suspects and not alone and todo and len(running) < self.workers + _QUEUED_AHEAD:
                        submit(todo[0])
                        todo.popleft()
                except BrokenProcessPool:
                    broken = True
                yield from _drain(ready)
                done = wait(running, timeout=heartbeat, return_when=FIRST_COMPLETED)[0] if running else set()
                if running and not done and not broken:
                    yield None, None, None
                    continue
                if broken or any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    for fut in done:
                        if isinstance(fut.exception(), BrokenProcessPool):
                            self._renew(owner[fut])
                    # A pool is replaced only once broken, and a broken pool fails every future it
                    # still holds at once.  A task already in the new pool (a commit task renewed it
                    # before this loop saw the break) goes on: waiting for it would stall the heartbeats.
                    done |= wait([f for f in running if owner[f] is not self.pool])[0]
                # Per pool, in submission order (``running`` keeps it): the tasks after the
                # first ``workers`` of them were still queued, none of them ran.
                lost: dict[ProcessPoolExecutor, list[Future[Any]]] = {}
                for fut in running:
                    if fut in done and isinstance(fut.exception(), BrokenProcessPool):
                        lost.setdefault(owner[fut], []).append(fut)
                queued = {fut for futs in lost.values() for fut in futs[self.workers :]}
                died, again = [], []
                for fut in done:
                    task = running.pop(fut)
                    del owner[fut]
                    alone.discard(task.index)
                    error = fut.exception()
                    if fut in queued:
                        again.append(task)
                    elif isinstance(error, BrokenProcessPool):
                        died.append(task)
                        strikes[task.index] += 1
                        if strikes[task.index] > POOL_RETRIES:
                            yield task, None, BrokenProcessPool(
                                f"a worker process died each of the {POOL_RETRIES + 1} times this task ran"
                            )
                        else:
                            suspects.append(task)
                    elif error is not None:  # now: the caller may stop the ingest on it
                        yield task, None, error
                    elif stops is not None and stops(fut.result()):
                        yield task, fut.result(), None
                    else:
                        ready.append((task, fut.result(), None))
                todo.extendleft(sorted(again, key=lambda t: t.index, reverse=True))  # first again, in order
                if died:
                    logger.warning(
                        "a worker process died while tasks %s ran (their files are left unreferenced); "
                        "running them again",
                        ", ".join(str(t.index) for t in died),
                    )
                if not alone and self._alone:
                    set_alone(False)
        finally:
            set_alone(False)
