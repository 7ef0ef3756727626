"""Ingest with parallel writers: tasks write segments, one process commits metadata.

* :mod:`~atlas.distributed.client`: :func:`ingest` (the client side: sources,
  batches, slot ranges, commits) and :class:`IngestReport`.
* :mod:`~atlas.distributed.task`: what a worker runs: one batch of sources, or
  the commit task that builds a commit's catalogue part from the batches' task parts.
* :mod:`~atlas.distributed.runner`: where tasks run (dask, or a local process pool).

Fragments, task parts and the commit of a batch of fragments are
:mod:`atlas.txn.fragments`.
"""

from __future__ import annotations

from atlas.distributed.client import IngestReport, ingest

__all__ = ["IngestReport", "ingest"]
