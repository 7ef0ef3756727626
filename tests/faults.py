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
``atlas.store.resolve`` (see :func:`patched_resolve`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import atlas.store
from atlas.backends.base import CanMap
from atlas.errors import BackendError

__all__ = ["KINDS", "VERBS", "WRITE_VERBS", "Call", "FaultyBackend", "InjectedFault", "kinds_for", "patched_resolve"]

#: Every verb of the backend protocols (``close`` is forwarded but never counted).
VERBS = ("get", "get_versioned", "get_ranges", "put", "commit", "delete", "list", "map")
#: Verbs that write data, the only ones a ``"short"`` fault applies to.
WRITE_VERBS = ("put", "commit")
#: The failure kinds.
KINDS = ("error", "short", "enospc")

# The operation word LocalBackend uses in its messages for each verb.
_OP = {
    "get": "read",
    "get_versioned": "read",
    "get_ranges": "read",
    "put": "write",
    "commit": "commit",
    "delete": "delete",
    "list": "list",
    "map": "map",
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
        err = BackendError(f"{_OP[verb]} {full} failed: {os.strerror(code)} ({note})")
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
    real = atlas.store.resolve
    made: list[FaultyBackend] = []

    def resolve(source: Any, read_only: bool) -> FaultyBackend:
        wrapper = wrap(real(source, read_only))
        made.append(wrapper)
        return wrapper

    with monkeypatch.context() as m:
        m.setattr(atlas.store, "resolve", resolve)
        yield made
