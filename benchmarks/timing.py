"""Timing protocol shared by every row (stdlib only; the upstream runner imports it too).

A measurement runs ``warmup`` untimed calls, then ``repeats`` timed ones, and
reports the median.  The callable returns the seconds it measured itself, so
per-repeat setup (fresh directories, dropping handles) stays out of the timing.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["clock", "dir_bytes", "loadavg", "log", "measure", "rmtree", "summarize", "wait_idle"]

clock = time.perf_counter
_T0 = clock()


def measure(fn: Callable[[int], float], repeats: int, warmup: int = 1) -> dict:
    """Median of ``repeats`` calls of ``fn(repeat_index)``, each returning its own seconds.

    Warm-up calls get negative indices.  The garbage collector is run before
    and disabled during each call so one row does not pay for another's garbage.
    """
    for w in range(warmup):
        _call(fn, -1 - w)
    load0 = loadavg()
    out = summarize([_call(fn, r) for r in range(repeats)])
    out["load"] = [load0, loadavg()]
    return out


def summarize(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "times": list(times)}


def loadavg() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def wait_idle(max_wait: float, threshold: float = 0.7, poll: float = 5.0) -> float:
    """Sleep until the 1-minute load average drops below ``threshold`` or ``max_wait``
    seconds pass; returns the seconds waited.  On a shared machine this keeps other
    people's jobs out of the timings where it can."""
    t0 = clock()
    while max_wait > 0 and (clock() - t0) < max_wait:
        load = loadavg()
        if load is None or load < threshold:
            break
        time.sleep(poll)
    return clock() - t0


def _call(fn: Callable[[int], float], r: int) -> float:
    gc.collect()
    gc.disable()
    try:
        return float(fn(r))
    finally:
        gc.enable()


def dir_bytes(path: str | os.PathLike) -> int:
    """Bytes of every regular file below ``path`` (apparent size)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def rmtree(path: str | os.PathLike) -> None:
    shutil.rmtree(path, ignore_errors=True)


def log(msg: str) -> None:
    """Progress to stderr (stdout of the upstream runner carries its JSON result)."""
    print(f"[{clock() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)
