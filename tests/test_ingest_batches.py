"""How ``atlas.ingest`` cuts its sources into tasks (no worker runs here)."""

from __future__ import annotations

import itertools

import pytest

from atlas.distributed.client import _batches


@pytest.mark.parametrize(("n", "workers"), [(2000, 2), (40, 2), (10, 2), (1, 4), (300, 2), (100_000, 64)])
def test_default_tasks_shrink_towards_the_end(n, workers):
    items = list(range(n))
    batches = _batches(items, None, workers)
    assert [i for b in batches for i in b] == items  # every source once, in order
    sizes = [len(b) for b in batches]
    assert all(a >= b for a, b in itertools.pairwise(sizes))  # never larger than the task before
    assert max(sizes) <= 64 and max(sizes) == sizes[0]
    # the last task of each worker is small: the workers finish nearly together
    assert sum(sizes[-workers:]) <= max(workers * 8, sizes[0])


def test_2000_files_on_2_workers_end_with_small_tasks():
    sizes = [len(b) for b in _batches(list(range(2000)), None, 2)]
    assert sizes[0] == 64 and sizes[-1] <= 8 and sizes.count(64) >= 25


def test_an_explicit_batch_is_kept():
    assert [len(b) for b in _batches(list(range(10)), 3, 2)] == [3, 3, 3, 1]
