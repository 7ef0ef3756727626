"""Fault injection for the storage backend: count every verb call, fail the k-th one.

:class:`FaultyBackend` wraps a real backend (a :class:`~atlas.backends.LocalBackend`
in the tests) and forwards every verb of :mod:`atlas.backends.base` to it while
logging ``(verb, path)``.  Armed with ``(k, kind)`` it fails the k-th call made after
arming with one of :data:`KINDS`:

``"error"``
    an I/O failure (:class:`atlas.errors.BackendError`, errno ``EIO``) raised before
    the wrapped backend is touched;
``"enospc"``
    the same with errno ``ENOSPC`` ("No space left on device");
``"short"``
    (``put`` and ``commit`` only) a torn write: a truncated prefix of the data is
    left behind, then ``BackendError`` (errno ``EIO``) is raised.  For ``put`` the
    prefix lands under the *final* object name (the worst a non-atomic backend could
    do: the engine must never reference an object whose ``put`` failed); for
    ``commit``, which the backend contract makes atomic, it lands in a temporary
    file next to the manifest (``.<name>.<hex>.tmp``, like a crash in the middle
    of :meth:`LocalBackend.commit`), and the manifest itself is untouched.

``map`` is exposed only when the wrapped backend has it (the engine decides to
memory-map with ``isinstance(backend, CanMap)``); pass ``expose_map=False`` to force
the ``get_ranges`` read path.  Inject a wrapper into a store by monkeypatching
``atlas.txn.opening.resolve`` (see :func:`patched_resolve`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rel_common import record_figure

from atlas.backends.base import CanMap
from atlas.errors import BackendError
from atlas.txn import opening

__all__ = [
    "KINDS",
    "OBJECT_KINDS",
    "OBSTORE_VERBS",
    "OP_WORDS",
    "VERBS",
    "WRITE_VERBS",
    "Call",
    "FaultyBackend",
    "FaultyObstore",
    "InjectedFault",
    "kinds_for",
    "object_kinds_for",
    "patched_resolve",
    "record_fault_figures",
]

#: Every verb of the backend protocols (``close`` is forwarded but never counted).
VERBS = ("get", "get_versioned", "get_ranges", "put", "commit", "delete", "list", "map")
#: Verbs that write data, the only ones a ``"short"`` fault applies to.
WRITE_VERBS = ("put", "commit")
#: The failure kinds.
KINDS = ("error", "short", "enospc")

#: The operation word LocalBackend uses in its messages for each verb.
OP_WORDS = {
    "get": "read",
    "get_versioned": "read",
    "get_ranges": "read",
    "put": "write",
    "commit": "commit",
    "delete": "delete",
    "list": "list",
    "map": "map",
    "size": "stat",
    "exists": "stat",
}


def kinds_for(verb: str) -> tuple[str, ...]:
    """The failure kinds that make sense for a call of ``verb``."""
    return KINDS if verb in WRITE_VERBS else tuple(k for k in KINDS if k != "short")


@dataclass(frozen=True)
class Call:
    """One logged verb call."""

    verb: str
    path: str


@dataclass(frozen=True)
class InjectedFault:
    """What an armed wrapper did when it fired."""

    k: int
    verb: str
    path: str
    kind: str
    error: BackendError


class FaultyBackend:
    """Forward the backend verbs to ``inner``, count them, fail the armed call.

    ``FaultyBackend(inner)`` returns an instance with a ``map`` method exactly when
    ``inner`` has one (and ``expose_map`` is true), so ``isinstance(w, CanMap)``
    mirrors the wrapped backend.
    """

    def __new__(cls, inner: Any, expose_map: bool = True) -> FaultyBackend:
        if cls is FaultyBackend and expose_map and isinstance(inner, CanMap):
            cls = _FaultyMappingBackend
        return super().__new__(cls)

    def __init__(self, inner: Any, expose_map: bool = True) -> None:
        self.inner = inner
        self.calls: list[Call] = []
        self.fired: InjectedFault | None = None
        self._armed: tuple[int, str, str | None] | None = None  # (absolute call index, kind, verb)
        self._verb_seen = 0

    # -- identity -------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def read_only(self) -> bool:
        return self.inner.read_only

    def __repr__(self) -> str:
        return f"FaultyBackend({self.inner!r}, calls={len(self.calls)}, armed={self._armed})"

    # -- control --------------------------------------------------------------------------

    def arm(self, k: int, kind: str, verb: str | None = None) -> None:
        """Fail the ``k``-th call (1-based) from now on, or the k-th call of ``verb``."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if k < 1:
            raise ValueError("k is 1-based")
        self._armed = (k, kind, verb)
        self._verb_seen = 0
        self.fired = None

    def disarm(self) -> None:
        self._armed = None

    def reset(self) -> None:
        """Forget the call log (the fault stays armed or disarmed as it was)."""
        self.calls.clear()

    @property
    def armed(self) -> bool:
        return self._armed is not None

    def count(self, verb: str | None = None) -> int:
        return len(self.calls) if verb is None else sum(1 for c in self.calls if c.verb == verb)

    # -- the hook -------------------------------------------------------------------------

    def _error(self, verb: str, path: str, code: int, note: str) -> BackendError:
        full = f"{self.location}/{path}" if path else self.location
        err = BackendError(f"{OP_WORDS[verb]} {full} failed: {os.strerror(code)} ({note})")
        err.errno = code
        return err

    def _before(self, verb: str, path: str, data: Sequence[Any] | None = None) -> None:
        """Log a call; raise the injected failure when this is the armed one."""
        self.calls.append(Call(verb, path))
        if self._armed is None:
            return
        k, kind, only = self._armed
        if only is not None and verb != only:
            return
        self._verb_seen += 1
        if self._verb_seen != k:
            return
        self._armed = None  # one-shot
        if kind == "short" and verb not in WRITE_VERBS:
            raise AssertionError(f"a 'short' fault cannot hit a {verb} call ({path})")
        note = f"injected {kind} fault at call {k}" + (f" of {only}" if only else "")
        if kind == "enospc":
            err = self._error(verb, path, errno.ENOSPC, note)
        else:
            err = self._error(verb, path, errno.EIO, note)
            if kind == "short":
                self._torn_write(verb, path, data or [])
        self.fired = InjectedFault(k, verb, path, kind, err)
        raise err

    def _torn_write(self, verb: str, path: str, parts: Sequence[Any]) -> None:
        blob = b"".join(bytes(memoryview(p).cast("B")) for p in parts)
        prefix = blob[: max(0, len(blob) // 2)] if len(blob) > 1 else b""
        if verb == "put":
            target = path
        else:  # commit is atomic by contract: the torn bytes stay in a temp file
            head, _, name = path.rpartition("/")
            target = f"{head + '/' if head else ''}.{name}.{secrets.token_hex(4)}.tmp"
        self.inner.put(target, [prefix])

    # -- verbs ----------------------------------------------------------------------------

    def get(self, path: str) -> bytes:
        self._before("get", path)
        return self.inner.get(path)

    def get_versioned(self, path: str):
        self._before("get_versioned", path)
        return self.inner.get_versioned(path)

    def get_ranges(self, path: str, starts: Sequence[int], lengths: Sequence[int]):
        self._before("get_ranges", path)
        return self.inner.get_ranges(path, starts, lengths)

    def size(self, path: str) -> int:
        self._before("size", path)
        return self.inner.size(path)

    def exists(self, path: str) -> bool:
        self._before("exists", path)
        return self.inner.exists(path)

    def put(self, path: str, parts: Sequence[Any]) -> None:
        parts = list(parts)
        self._before("put", path, parts)
        self.inner.put(path, parts)

    def commit(self, path: str, data: bytes, expected: str | None) -> str:
        self._before("commit", path, [data])
        return self.inner.commit(path, data, expected)

    def delete(self, path: str) -> None:
        self._before("delete", path)
        self.inner.delete(path)

    def list(self, prefix: str = "") -> Iterator[Any]:
        self._before("list", prefix)
        return self.inner.list(prefix)

    def close(self) -> None:
        self.inner.close()


class _FaultyMappingBackend(FaultyBackend):
    """A :class:`FaultyBackend` around a backend that can memory-map."""

    def map(self, path: str) -> np.ndarray:
        self._before("map", path)
        return self.inner.map(path)


@contextlib.contextmanager
def patched_resolve(
    monkeypatch: Any, wrap: Callable[[Any], FaultyBackend] = FaultyBackend
) -> Iterator[list[FaultyBackend]]:
    """Within the block, ``Atlas.create``/``Atlas.open`` get wrapped backends.

    Yields the list of wrappers made so far (newest last).  Handles opened after
    the block use the real backend again.
    """
    real = opening.resolve
    made: list[FaultyBackend] = []

    def resolve(source: Any, read_only: bool) -> FaultyBackend:
        wrapper = wrap(real(source, read_only))
        made.append(wrapper)
        return wrapper

    with monkeypatch.context() as m:
        m.setattr(opening, "resolve", resolve)
        yield made


# -- figures ------------------------------------------------------------------------------------


def record_fault_figures(
    test: str,
    *,
    backend: str,
    operation: str,
    calls: int,
    cases: Sequence[tuple[int, Call, str]],
    started: float,
    variant: str = "",
) -> None:
    """Append one line of figures for a fault-injection test to ``$ATLAS_RELIABILITY_FIGURES``.

    ``cases`` are the ``(k, call, kind)`` triples that were injected; the line counts
    them per failure kind and per verb, with the recorded call count and wall time.
    """
    by_kind: dict[str, int] = {}
    by_verb: dict[str, int] = {}
    for _, call, kind in cases:
        by_kind[kind] = by_kind.get(kind, 0) + 1
        by_verb[call.verb] = by_verb.get(call.verb, 0) + 1
    record_figure(
        test,
        backend=backend,
        operation=operation,
        variant=variant,
        calls=calls,
        faults=len(cases),
        by_kind=by_kind,
        by_verb=by_verb,
        seconds=round(time.perf_counter() - started, 2),
    )


# -- faults below the object-store backend ----------------------------------------------------------

#: The obstore functions :mod:`atlas.backends.objectstore` calls, logged as verbs.
OBSTORE_VERBS = ("get", "get_ranges", "head", "list", "put", "delete")
#: The failure kinds of :class:`FaultyObstore`.
OBJECT_KINDS = ("error", "full", "lost", "lost-retry")


def object_kinds_for(verb: str) -> tuple[str, ...]:
    """The :data:`OBJECT_KINDS` that make sense for an obstore call of ``verb``."""
    if verb == "put":
        return OBJECT_KINDS
    if verb == "delete":
        return ("error", "lost")
    return ("error",)


class FaultyObstore:
    """A stand-in for the ``obstore`` module as :mod:`atlas.backends.objectstore` sees it.

    Install it with ``monkeypatch.setattr(atlas.backends.objectstore, "obstore",
    FaultyObstore(obstore, store))``.  Calls on ``store`` (the handle under test)
    are logged as ``(verb, key)`` while :attr:`recording` is true; calls on other
    handles, and calls made while not recording, go straight through.  Armed with
    ``(k, kind)`` it fails the k-th logged call with one of :data:`OBJECT_KINDS`:

    ``"error"``
        the request fails before reaching the store (an ``obstore`` ``GenericError``
        such as a refused connection): nothing changed;
    ``"full"``
        (``put``) the store refuses the upload for lack of space (``GenericError``
        carrying HTTP 507): object stores have no ``ENOSPC``, so this surfaces as a
        generic I/O error;
    ``"lost"``
        (``put``, ``delete``) the request lands, then its response is lost (a
        timeout): the caller sees an error although the store changed;
    ``"lost-retry"``
        (``put``) the request lands, its response is lost and the client's internal
        retry fails the precondition of the conditional put (``AlreadyExistsError``
        for ``mode="create"``, ``PreconditionError`` for an ETag/version match), as
        a real S3 client would report it.
    """

    def __init__(self, real: Any, store: Any) -> None:
        self.real = real
        self.store = store
        self.calls: list[Call] = []
        self.fired: InjectedFault | None = None
        self.recording = False
        self._armed: tuple[int, str, str | None] | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __repr__(self) -> str:
        return f"FaultyObstore(calls={len(self.calls)}, armed={self._armed})"

    def arm(self, k: int, kind: str, path: str | None = None) -> None:
        """Fail the ``k``-th (1-based) logged call from now on (of key ``path`` if given); start recording."""
        if kind not in OBJECT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if k < 1:
            raise ValueError("k is 1-based")
        with self._lock:
            self.calls.clear()
            self._armed = (k, kind, path)
            self.fired = None
            self.recording = True

    def record(self) -> None:
        """Start logging calls (un-armed), forgetting earlier ones."""
        with self._lock:
            self.calls.clear()
            self._armed = None
            self.recording = True

    def stop(self) -> None:
        """Stop logging and disarm."""
        with self._lock:
            self._armed = None
            self.recording = False

    @property
    def armed(self) -> bool:
        return self._armed is not None

    def _fault(self, store: Any, verb: str, key: str) -> str | None:
        """Log the call; the fault kind to inject when this is the armed call."""
        if store is not self.store:
            return None
        with self._lock:
            if not self.recording:
                return None
            self.calls.append(Call(verb, key))
            if self._armed is None:
                return None
            k, kind, path = self._armed
            if sum(1 for c in self.calls if path is None or c.path == path) != k or (path and key != path):
                return None
            self._armed = None  # one-shot
        if kind not in object_kinds_for(verb):
            raise AssertionError(f"a {kind!r} fault cannot hit a {verb} call ({key})")
        self.fired = InjectedFault(k, verb, key, kind, BackendError(f"injected {kind} fault at call {k}"))
        return kind

    def _refuse(self, kind: str, verb: str, key: str) -> BaseException:
        obx = self.real.exceptions
        if kind == "full":
            return obx.GenericError(
                f"Generic S3 error: Error performing {verb} {key}: Server returned non-2xx status code: "
                "507 Insufficient Storage (injected)"
            )
        return obx.GenericError(f"Generic error: Error performing {verb} {key}: connection refused (injected)")

    def _lost(self, verb: str, key: str) -> BaseException:
        return self.real.exceptions.GenericError(
            f"Generic error: Error performing {verb} {key}: operation timed out after the request was sent (injected)"
        )

    def _simple(self, verb: str, store: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        kind = self._fault(store, verb, key)
        if kind is None:
            return getattr(self.real, verb)(store, key, *args, **kwargs)
        if kind == "lost":
            getattr(self.real, verb)(store, key, *args, **kwargs)
            raise self._lost(verb, key)
        raise self._refuse(kind, verb, key)

    def get(self, store: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._simple("get", store, path, *args, **kwargs)

    def get_ranges(self, store: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._simple("get_ranges", store, path, *args, **kwargs)

    def head(self, store: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._simple("head", store, path, *args, **kwargs)

    def delete(self, store: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._simple("delete", store, path, *args, **kwargs)

    def list(self, store: Any, prefix: str | None = None, *args: Any, **kwargs: Any) -> Any:
        kind = self._fault(store, "list", prefix or "")
        if kind is None:
            return self.real.list(store, prefix, *args, **kwargs)
        raise self._refuse(kind, "list", prefix or "")

    def put(self, store: Any, path: str, file: Any, *args: Any, **kwargs: Any) -> Any:
        kind = self._fault(store, "put", path)
        if kind is None:
            return self.real.put(store, path, file, *args, **kwargs)
        if kind in ("error", "full"):
            raise self._refuse(kind, "put", path)
        result = self.real.put(store, path, file, *args, **kwargs)
        if kind == "lost":
            raise self._lost("put", path)
        mode = kwargs.get("mode")
        obx = self.real.exceptions
        if mode == "create":
            raise obx.AlreadyExistsError(f"Object at location {path} already exists (injected retry)")
        if isinstance(mode, dict):
            raise obx.PreconditionError(f"Request precondition failure for path {path} (injected retry)")
        return result  # an unconditional put retried just succeeds again
