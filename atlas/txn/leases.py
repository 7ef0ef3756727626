"""Leases: how a writer keeps its spilled, not yet committed segments from being swept.

A handle that spilled staged chunks (see :meth:`atlas.txn.state.WorkingState.maybe_spill`)
holds segment files no manifest references.  A compaction sweeps such files once
their modification time is older than its grace period, which a long write can
exceed.  So the handle also writes a small *lease* object, ``_leases/<token>.lease``,
naming its spilled files; it renews the lease whenever the set of files changes
and at least every :data:`RENEW_SECONDS` while it keeps writing, and deletes it
once the files are committed or discarded.  Objects are never overwritten (object
stores write new names only if absent), so a renewal writes a lease under a new
random name and then deletes the previous one: a live writer always has a lease.  A compaction keeps every unreferenced
file that a *fresh* lease names (one whose own modification time is within the
grace period, the same clock the orphan rule uses) and deletes stale leases like
any other garbage.  Objects cannot be touched on object stores, hence a separate
lease object rather than refreshed file times; it works the same on local disk.

The lease is an optimisation of the sweep, not what keeps data safe: a commit
also checks that every segment it adds is still there (see
:func:`atlas.txn.commit.check_added_segments`), so an expired lease costs a clear error,
never a manifest that points at a deleted file.
"""

from __future__ import annotations

import errno
import json
import logging
import secrets
import time
from collections.abc import Iterable

from atlas.backends.base import Backend, ObjectInfo
from atlas.errors import AtlasError

__all__ = ["LEASE_DIR", "MAX_LEASE_BYTES", "RENEW_SECONDS", "Lease", "LeaseGroups", "is_lease", "leased_files"]

logger = logging.getLogger("atlas")

#: Directory of lease objects; ``_l`` can never start an encoded array directory name.
LEASE_DIR = "_leases"
#: A writer that keeps writing rewrites its lease at least this often (seconds).
RENEW_SECONDS = 60.0
#: A lease larger than this is not read (it is treated as unreadable).
MAX_LEASE_BYTES = 16 << 20


def is_lease(path: str) -> bool:
    """True when ``path`` names a lease object."""
    head, _, name = path.partition("/")
    return head == LEASE_DIR and "/" not in name and name.endswith(".lease") and not name.startswith(".")


def encode_lease(files: Iterable[str], now: float) -> bytes:
    """The JSON body of a lease naming ``files`` (store-relative paths)."""
    return json.dumps({"files": sorted(files), "written_ms": int(now * 1000)}).encode()


def decode_lease(data: bytes) -> list[str]:
    """The files a lease names; ValueError when it is not a lease body."""
    body = json.loads(data)
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ValueError("not a lease: no list of file names under 'files'")
    return files


def leased_files(backend: Backend, listing: Iterable[ObjectInfo], cutoff: float) -> tuple[set[str] | None, list[str]]:
    """Files named by fresh leases, and the paths of stale leases.

    A lease is fresh when its modification time is at or after ``cutoff``.  The
    first value is None when a fresh lease cannot be read: the caller must then
    keep every unreferenced segment, since it cannot tell which ones a live
    writer holds.
    """
    protected: set[str] | None = set()
    stale = []
    for info in listing:
        if not is_lease(info.path):
            continue
        if info.mtime < cutoff:
            stale.append(info.path)
            continue
        if protected is None:
            continue
        try:
            if info.size > MAX_LEASE_BYTES:
                raise ValueError(f"{info.size} bytes, more than {MAX_LEASE_BYTES}")
            protected.update(decode_lease(backend.get(info.path)))
        except (AtlasError, ValueError) as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:  # released between the listing and the read
                continue
            logger.warning("compact: cannot read lease %s, keeping every unreferenced segment: %s", info.path, exc)
            protected = None
    return protected, stale


class Lease:
    """The lease of one store handle over its spilled segment files."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        #: The written lease object (meaningful while ``files`` is not empty).
        self.path = ""
        #: The files the written lease names (empty: no lease object exists).
        self.files: frozenset[str] = frozenset()
        self._written = 0.0  # time.monotonic() of the last write

    def hold(self, files: Iterable[str]) -> None:
        """Make the lease name exactly ``files`` (deleting it when there are none).

        A failure is logged, not raised: the commit-time check still refuses to
        commit a segment that a compaction removed.
        """
        files = frozenset(files)
        if not files:
            self.release()
            return
        if files == self.files and time.monotonic() - self._written < RENEW_SECONDS:
            return
        path = f"{LEASE_DIR}/{secrets.token_hex(16)}.lease"
        try:
            self.backend.put(path, [encode_lease(files, time.time())])
        except AtlasError as exc:
            logger.warning("could not write lease %s over spilled segments: %s", path, exc)
            return
        self.release()  # the new lease is in place: the old one goes
        self.path, self.files = path, files
        self._written = time.monotonic()

    def renew(self) -> None:
        """Rewrite the lease when it is due (cheap to call on every write)."""
        if self.files:
            self.hold(self.files)

    def release(self) -> None:
        """Delete the lease object, if one was written."""
        if not self.files:
            return
        try:
            self.backend.delete(self.path)
        except AtlasError as exc:  # a stale lease is swept by compact()
            logger.warning("could not delete lease %s: %s", self.path, exc)
            return
        self.files = frozenset()


class LeaseGroups:
    """Leases over many sets of files, at most ``per_lease`` sets per lease object.

    A client that takes over the files of task results one result at a time, with
    one lease naming all of them, would rewrite every name it holds at each arrival:
    bytes quadratic in the results waiting, and past :data:`MAX_LEASE_BYTES` a lease
    that ``compact`` cannot read.  Here a new set rewrites the newest lease only;
    an older lease is rewritten when sets leave it or when it is due for renewal.

    Parameters
    ----------
    backend : Backend
        Where the lease objects are written.
    per_lease : int
        The most sets one lease object names.
    """

    def __init__(self, backend: Backend, per_lease: int = 32) -> None:
        self.backend = backend
        self.per_lease = per_lease
        #: ``[(sets, lease)]``, oldest first; ``sets`` maps a key to its files.
        self._groups: list[tuple[dict[int, list[str]], Lease]] = []

    def add(self, key: int, files: Iterable[str]) -> None:
        """Hold ``files`` under ``key`` (a key already held is not added again)."""
        if any(key in sets for sets, _ in self._groups):
            return
        if not self._groups or len(self._groups[-1][0]) >= self.per_lease:
            self._groups.append(({}, Lease(self.backend)))
        sets, lease = self._groups[-1]
        sets[key] = list(files)
        lease.hold(f for fs in sets.values() for f in fs)

    def keep(self, keys: Iterable[int]) -> None:
        """Hold the sets of ``keys`` only: the leases of the others are rewritten or deleted."""
        keys = set(keys)
        groups = []
        for sets, lease in self._groups:
            kept = {k: fs for k, fs in sets.items() if k in keys}
            if len(kept) != len(sets):
                lease.hold(f for fs in kept.values() for f in fs)  # deletes the lease when none is left
            if kept:
                groups.append((kept, lease))
        self._groups = groups

    def renew(self) -> None:
        """Rewrite the leases that are due (cheap to call often)."""
        for _, lease in self._groups:
            lease.renew()

    def release(self) -> None:
        """Delete every lease object written."""
        for _, lease in self._groups:
            lease.release()
        self._groups = []
