"""How ``atlas.ingest`` cuts its sources into tasks (no worker runs here)."""

from __future__ import annotations

import itertools

import pytest

from atlas.distributed.schedule import task_batches


@pytest.mark.parametrize(("n", "workers"), [(2000, 2), (40, 2), (10, 2), (1, 4), (300, 2), (100_000, 64)])
def test_default_tasks_shrink_towards_the_end(n, workers):
    items = list(range(n))
    batches = task_batches(items, None, workers)
    assert [i for b in batches for i in b] == items  # every source once, in order
    sizes = [len(b) for b in batches]
    assert all(a >= b for a, b in itertools.pairwise(sizes))  # never larger than the task before
    assert max(sizes) <= 64 and max(sizes) == sizes[0]
    # the last task of each worker is small: the workers finish nearly together
    assert sum(sizes[-workers:]) <= max(workers * 8, sizes[0])


def test_2000_files_on_2_workers_end_with_small_tasks():
    sizes = [len(b) for b in task_batches(list(range(2000)), None, 2)]
    assert sizes[0] == 64 and sizes[-1] <= 8 and sizes.count(64) >= 25


def test_an_explicit_batch_is_kept():
    assert [len(b) for b in task_batches(list(range(10)), 3, 2)] == [3, 3, 3, 1]


def _commit_schedule(n: int, workers: int) -> tuple[list[int], int]:
    """Commits (rows each) of an ingest of ``n`` one-dataset files whose commits end before the next
    task returns (``commit_interval`` never reached), and the rows the catalogue's merge policy rewrites."""
    from atlas.catalog.merge import choose_merge
    from atlas.distributed.schedule import TAIL_SLOTS, size_due

    sizes = [len(b) for b in task_batches(list(range(n)), None, workers)]
    parts: list[int] | None = None
    commits, pending, rewritten, returned = [], [], 0, 0

    def commit() -> None:
        nonlocal parts, rewritten, pending
        rows = sum(pending)
        base = parts or []
        start = choose_merge([*base, rows])
        if start is None:
            parts = [*base, rows]
        else:
            assert start > 0, f"a commit of {rows} rows merges the bulk {base}"
            rewritten += sum(base[start:])
            parts = [*base[:start], sum(base[start:]) + rows]
        commits.append(rows)
        pending = []

    for k, size in enumerate(sizes):
        returned += size
        pending.append(size)
        unfinished = len(sizes) - k - 1
        tail = unfinished <= TAIL_SLOTS * workers and len(pending) > unfinished
        if tail or size_due(sum(pending), pending[-1], returned, n, parts):
            commit()
    if pending:
        commit()
    assert sum(commits) == n
    return commits, rewritten


# (A few dozen files end in tasks so small that the tail rule commits before the bulk is in.)
@pytest.mark.parametrize(("n", "workers"), [(2000, 2), (300, 2), (5000, 4), (100_000, 64)])
def test_commits_take_the_bulk_first_and_never_rewrite_it(n, workers):
    commits, rewritten = _commit_schedule(n, workers)
    assert commits[0] >= 0.85 * n  # the bulk in one commit, once most tasks returned
    assert rewritten <= 0.15 * n  # the merges that follow rewrite small parts only (n on commits of 512)


def test_no_commit_is_due_by_size_before_most_sources_returned():
    from atlas.distributed.schedule import size_due

    assert not size_due(10_000, 64, 1000, 2000, None)
    assert size_due(1, 1, 1700, 2000, None)
    # after the first commit: due once one more fragment would make the policy merge (planned at twice its ratio)
    assert not size_due(128, 64, 1900, 2000, [1728])
    assert size_due(400, 64, 1950, 2000, [1728])  # 464 rows would reach a quarter of 1728 (twice the ratio 2)
    # a commit that merges either way is no cheaper later: not due by size
    assert not size_due(1000, 64, 1950, 2000, [1728])
