"""How an ingest cuts its sources into tasks and when it commits what returned.

Pure functions of counts, so that the schedule can be tested (and simulated for
large ingests) without running one; :func:`atlas.distributed.client.ingest` drives
them.
"""

from __future__ import annotations

import math
from typing import Any

from atlas.catalog.merge import FEW_PARTS_RATIO, MERGE_RATIO, choose_merge

__all__ = ["FIRST_SHARE", "MAX_BATCH", "MIN_BATCH", "TAIL_SLOTS", "size_due", "task_batches"]

#: Fragments are committed as they come once at most this many times the slots of
#: tasks are left and more fragments wait than tasks are left (see ``client._drive``).
TAIL_SLOTS = 2
#: Share of the sources whose tasks returned before a commit is due by size (see
#: ``size_due``): the rest, committed after, stays under a ``MERGE_RATIO``-th of it
#: (the merge policy's strictest ratio).
FIRST_SHARE = 0.85

#: Most sources in a task of the default batching, and fewest in its smaller last tasks.
MAX_BATCH, MIN_BATCH = 64, 8


def task_batches(items: list[Any], batch: int | None, workers: int) -> list[list[Any]]:
    """``items`` cut into tasks: of ``batch`` sources each when given, else of decreasing sizes.

    By default a task holds about a quarter of a worker's share of the sources, at
    most :data:`MAX_BATCH`, and the last tasks shrink (each about an eighth of a
    worker's share of the sources left, down to :data:`MIN_BATCH`), so that the
    workers finish nearly together: a last task as large as the others would leave
    the other workers idle while it runs.
    """
    if batch is not None:
        return [items[i : i + batch] for i in range(0, len(items), batch)]
    workers = max(1, workers)
    size = max(1, min(MAX_BATCH, math.ceil(len(items) / (4 * workers))))
    out, at = [], 0
    while at < len(items):
        left = len(items) - at
        step = min(size, max(MIN_BATCH, math.ceil(left / (2 * workers))))
        out.append(items[at : at + step])
        at += step
    return out


def size_due(waiting: int, latest: int, returned: int, total: int, parts: list[int] | None) -> bool:
    """Whether ``waiting`` rows (the last fragment's ``latest`` of them) are due for a commit by size.

    Not before the tasks of :data:`FIRST_SHARE` of the ``total`` sources
    returned (``returned``): the first commit then takes the bulk of the ingest.
    Each later one (``parts``: the rows of the catalogue's parts after the
    ingest's last commit, oldest first) starts when one more fragment as large as
    the last would make the merge policy (:func:`~atlas.catalog.merge.choose_merge`),
    planned with twice its ratios, merge parts the commit of the rows waiting
    leaves alone (a commit that merges is no cheaper later).  So the commits
    shrink towards the end faster than the policy merges, and neither the bulk
    nor the later parts are rewritten, even when the last tasks add a little
    more (on commits of 512 rows each, a 2 000-file ingest rewrote 2 000 rows in
    merges; none so).
    """
    if returned < FIRST_SHARE * total:
        return False
    if parts is None:
        return True
    planned = {"ratio": 2 * MERGE_RATIO, "few_ratio": 2 * FEW_PARTS_RATIO}
    return (choose_merge([*parts, waiting], **planned) is None
            and choose_merge([*parts, waiting + latest], **planned) is not None)  # fmt: skip
