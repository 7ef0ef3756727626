"""What a store handle shares with its dataset views and tools: lock, working state, mode."""

from __future__ import annotations

import atexit
import threading
import warnings
import weakref

from atlas.errors import ReadOnlyError, StoreClosedError, UncommittedChangesWarning
from atlas.txn.state import WorkingState

__all__ = ["Session"]

#: Sessions of writable handles, so that those still holding unflushed changes at exit can say so.
_WRITERS: weakref.WeakSet[Session] = weakref.WeakSet()


class Session:
    """One open store handle: its lock, its working state (None once closed) and its mode.

    :class:`~atlas.Atlas` and every :class:`~atlas.DatasetView` of it hold the same
    session, so a view sees the handle's pending changes and a closed handle closes
    its views.  Callers take :attr:`lock` around every use of the state.
    """

    def __init__(self, state: WorkingState, mode: str) -> None:
        self.working: WorkingState | None = state
        self.mode = mode
        self.location = state.backend.location
        self.lock = threading.RLock()
        self.warned = False
        if mode != "r":
            _WRITERS.add(self)

    @property
    def read_only(self) -> bool:
        """True for sessions opened with ``mode="r"``."""
        return self.mode == "r"

    def state(self) -> WorkingState:
        """The working state, or :class:`StoreClosedError` once the handle is closed."""
        state = self.working
        if state is None:
            raise StoreClosedError(f"store {self.location} is closed")
        return state

    def writable(self, what: str) -> WorkingState:
        """The working state, or :class:`ReadOnlyError` naming ``what`` on a read-only handle."""
        state = self.state()
        if self.mode == "r":
            raise ReadOnlyError(f"cannot {what}: store {self.location} was opened read-only")
        return state

    def warn_uncommitted(self, when: str, stacklevel: int = 2) -> None:
        """Warn (once per session) that its unflushed changes are being dropped (``when`` says why)."""
        state = self.working
        if state is None or self.read_only or self.warned or not state.has_changes:
            return
        self.warned = True
        n = len(state.dirty)
        warnings.warn(
            f"store {self.location}: {n} dataset{'s' if n != 1 else ''} with uncommitted changes "
            f"{'was' if n == 1 else 'were'} never flushed and {'is' if n == 1 else 'are'} lost ({when}); "
            "call flush() or close(), or use the store in a `with` block",
            UncommittedChangesWarning,
            stacklevel=stacklevel + 1,
        )


@atexit.register
def _warn_at_exit() -> None:
    for session in list(_WRITERS):
        session.warn_uncommitted("the handle was still open at interpreter exit")
