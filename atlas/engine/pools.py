"""Thread pools shared by every store handle of the process, one per purpose and size.

Decoding a bulk read, compressing a flush and fetching object-store ranges each
run on a pool of their own (so a fetch never waits behind a decode it feeds).
Pools are created on first use and live as long as the process; their threads
are named ``atlas-<purpose>``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["shared_pool"]

_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_lock = threading.Lock()


def shared_pool(purpose: str, workers: int) -> ThreadPoolExecutor:
    """The process-wide pool of ``workers`` threads for ``purpose`` (``"decode"``, ...)."""
    key = (purpose, max(1, workers))
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(key[1], thread_name_prefix=f"atlas-{purpose}")
        return pool
