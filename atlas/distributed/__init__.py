"""Ingest with parallel writers: tasks write segments, one process commits metadata.

* :mod:`~atlas.distributed.client`: :func:`ingest` (the client side: sources,
  batches, slot ranges, commits) and :class:`IngestReport`.
* :mod:`~atlas.distributed.task`: what a worker runs for one batch.

The commit of fragments is :mod:`atlas.txn.fragments`.
"""

from __future__ import annotations

from atlas.distributed.client import IngestReport, ingest

__all__ = ["IngestReport", "ingest"]
