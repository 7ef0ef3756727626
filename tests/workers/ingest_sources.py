"""Picklable sources for ``atlas.ingest`` tests (test_ingest_distributed.py): run on workers."""

from __future__ import annotations

import os
import signal

import numpy as np


def big(name: str, seed: int, n: int = 500_000):
    """One dataset of ``n`` random float64 values (incompressible: stored bytes ~ 8 n)."""
    import xarray as xr

    values = np.random.default_rng(seed).standard_normal(n)
    return [(name, xr.Dataset({"v": ("x", values)}, attrs={"seed": seed}))]


def die_once(marker: str, name: str, how: str = "exit"):
    """Kill the worker process the first time (when ``marker`` does not exist yet), then yield a dataset.

    ``how``: ``"exit"`` (``os._exit``) or ``"kill"`` (SIGKILL, as the OOM killer does).
    """
    import xarray as xr

    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(1)
    return [(name, xr.Dataset({"v": ("x", np.arange(10.0))}))]


def die_always(counter: str, name: str):
    """Count the attempt in ``counter`` (one line each), then kill the worker process."""
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\n")
    os._exit(1)


def with_concurrent_commit(store: str, other: str, name: str):
    """Commit dataset ``other`` (two arrays) to ``store`` from another handle, then yield dataset ``name``."""
    import xarray as xr

    import atlas

    with atlas.Atlas.open(store) as handle:
        handle.add_xr_dataset(xr.Dataset({"a": ("x", np.arange(3)), "b": ("x", np.ones(3))}), other)
    return [(name, xr.Dataset({"v": ("x", np.arange(5.0))}))]


def wait_until_stored(store: str, other: str, name: str, timeout: float = 60.0):
    """Wait until dataset ``other`` is committed to ``store`` (at most ``timeout`` s), then yield ``name``.

    The dataset's attribute ``saw`` tells whether ``other`` was committed before the timeout.
    """
    import time

    import xarray as xr

    import atlas

    end = time.monotonic() + timeout
    saw = False
    while not saw and time.monotonic() < end:
        with atlas.Atlas.open(store, "r") as handle:
            saw = other in handle.list_datasets()
        time.sleep(0.2)
    return [(name, xr.Dataset({"v": ("x", np.arange(4.0))}, attrs={"saw": int(saw)}))]


def fail_once_committing(started: str, failed: str, name: str, timeout: float = 60.0):
    """Wait until the file ``started`` exists (a commit began), write ``failed``, then raise."""
    import time

    end = time.monotonic() + timeout
    while not os.path.exists(started) and time.monotonic() < end:
        time.sleep(0.02)
    with open(failed, "w") as f:
        f.write(name)
    raise RuntimeError(f"{name} fails while a commit runs")


def die_once_then_fail(marker: str, rerun: str, name: str):
    """Kill the worker process the first time; run again (alone, as a suspect), write ``rerun``,
    give a commit waiting for this task a second to queue behind it, then raise."""
    import time

    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    with open(rerun, "w") as f:
        f.write(name)
    time.sleep(1.0)
    raise RuntimeError(f"{name} fails on its rerun")
