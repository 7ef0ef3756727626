"""What a store handle shares with its dataset views and tools: lock, working state, mode."""

from __future__ import annotations

import threading

from atlas.errors import ReadOnlyError, StoreClosedError
from atlas.txn.state import WorkingState

__all__ = ["Session"]


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
