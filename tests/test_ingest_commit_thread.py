"""The commit thread of ``atlas.ingest`` against its main loop: interleavings forced with marker files.

A commit runs in a thread of the client while the tasks go on (``docs/dask.md``);
these tests hold a commit at a chosen point (``Runner.call``, the commit task, is
wrapped) while the main loop meets a failure, and check what the caller is told and
what the store holds.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("xarray")

import atlas
from atlas.distributed.runner import Runner
from atlas.errors import IngestError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "workers"))  # spawned workers inherit sys.path

import ingest_sources  # noqa: E402


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("on", ["pool", "dask"])
def test_a_failure_while_a_commit_runs_reports_that_commit(tmp_path, monkeypatch, on):
    """A task fails while the commit of an earlier fragment runs: that commit lands, and the error must
    say so (not "nothing was committed"): the caller reruns with ``skip_existing`` knowing it."""
    path = tmp_path / "s.atlas"
    atlas.Atlas.create(path).close()
    started, failed = tmp_path / "commit-started", tmp_path / "task-failed"
    original = Runner.call

    def call(self, fn, job):
        started.write_text("")
        _wait_for(failed)
        time.sleep(1.0)  # the failure reaches the main loop, which raises, while this commit runs
        return original(self, fn, job)

    monkeypatch.setattr(Runner, "call", call)
    sources = [functools.partial(ingest_sources.big, "good", 1, 20),
               functools.partial(ingest_sources.fail_once_committing, str(started), str(failed), "bad")]  # fmt: skip
    with contextlib.ExitStack() as stack:
        client = None
        if on == "dask":
            distributed = pytest.importorskip("distributed")
            cluster = stack.enter_context(distributed.LocalCluster(
                processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=50))
            client = stack.enter_context(distributed.Client(cluster))
        with pytest.raises(IngestError) as info:
            atlas.ingest(sources, path, client=client, workers=2, batch=1, commit_interval=0)
    with atlas.Atlas.open(path, "r") as store:
        assert store.list_datasets() == ["good"] and store.verify() == []
    assert "nothing was committed" not in str(info.value)
    assert "the 1 datasets of 1 earlier commits stay" in str(info.value)
    assert [label for label, _ in info.value.failed] == ["ingest_sources.fail_once_committing"]
    assert not list(path.glob("_leases/*.lease"))


def test_a_suspect_that_fails_while_a_commit_waits_for_it_does_not_hang(tmp_path, monkeypatch):
    """Local pool: a task that killed its worker reruns alone and the commit task waits for it; the
    rerun fails: the ingest stops (its error names the task) and the commit ends, nothing waits forever."""
    path = tmp_path / "s.atlas"
    atlas.Atlas.create(path).close()
    marker, rerun = tmp_path / "died", tmp_path / "rerun-started"
    original = Runner.call

    def call(self, fn, job):
        _wait_for(rerun)  # the suspect runs alone now: the commit task waits for it
        return original(self, fn, job)

    monkeypatch.setattr(Runner, "call", call)
    sources = [functools.partial(ingest_sources.big, "good", 1, 20),
               functools.partial(ingest_sources.die_once_then_fail, str(marker), str(rerun), "bad")]  # fmt: skip
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            atlas.ingest(sources, path, workers=2, batch=1, commit_interval=0)
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(90)
    assert not worker.is_alive(), "the ingest hangs: its commit waits for a suspect, which waits for the commit"
    assert isinstance(outcome[0], IngestError) and "fails on its rerun" in str(outcome[0])
    with atlas.Atlas.open(path, "r") as store:
        assert store.verify() == []
        committed = store.list_datasets()
    assert committed in ([], ["good"])
    assert ("nothing was committed" in str(outcome[0])) == (committed == [])


def _quick_sources(n: int) -> list:
    return [functools.partial(ingest_sources.big, f"d{i}", i, 20) for i in range(n)]


def test_a_commit_that_fails_in_its_thread_stops_the_ingest_in_the_caller(tmp_path, monkeypatch):
    """The second commit's task fails while tasks still run: its error is raised by ``ingest``, the
    first commit stays, and a rerun with ``skip_existing`` stores each dataset once."""
    path = tmp_path / "s.atlas"
    atlas.Atlas.create(path).close()
    original, calls = Runner.call, []

    def call(self, fn, job):
        calls.append(job)
        if len(calls) == 2:
            raise RuntimeError("the commit task was lost")
        return original(self, fn, job)

    monkeypatch.setattr(Runner, "call", call)
    with pytest.raises(RuntimeError, match="the commit task was lost"):
        atlas.ingest(_quick_sources(8), path, workers=2, batch=1, commit_interval=0)
    assert len(calls) == 2  # the ingest stopped: no commit after the failed one
    with atlas.Atlas.open(path, "r") as store:
        first = store.list_datasets()
        assert first and store.generation == 1 and store.verify() == []
    # (A task still running when the ingest stopped finishes and leaves its own lease: swept once stale.)
    monkeypatch.setattr(Runner, "call", original)
    report = atlas.ingest(_quick_sources(8), path, workers=2, batch=1, skip_existing=True)
    assert len(report.existing) == len(first) and report.datasets == 8 - len(first)
    with atlas.Atlas.open(path, "r+") as store:
        assert sorted(store.list_datasets()) == sorted(f"d{i}" for i in range(8))
        assert store.verify() == []
        store.compact(grace_period=0)
        assert store.verify() == [] and not list(path.glob("_leases/*.lease"))


def test_an_interrupt_while_a_commit_runs_lets_that_commit_end(tmp_path, monkeypatch):
    """KeyboardInterrupt in the caller's thread while a commit runs: the interrupt is raised once that
    commit ended (its datasets are committed whole), and no lease or pool process is left."""
    path = tmp_path / "s.atlas"
    atlas.Atlas.create(path).close()
    started, interrupted = tmp_path / "commit-started", tmp_path / "interrupted"
    original = Runner.call

    def call(self, fn, job):
        started.write_text("")
        _wait_for(interrupted)  # the interrupt reaches the caller's thread while this commit runs
        time.sleep(0.5)
        return original(self, fn, job)

    def progress(label, note):
        if started.exists():
            interrupted.write_text("")
            raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "call", call)
    sources = [*_quick_sources(1), functools.partial(ingest_sources.wait_until_stored, str(path), "never", "late", 3)]
    with pytest.raises(KeyboardInterrupt):
        atlas.ingest(sources, path, workers=2, batch=1, commit_interval=0, progress=progress)
    with atlas.Atlas.open(path, "r") as store:
        assert store.list_datasets() == ["d0"] and store.verify() == []
    assert not list(path.glob("_leases/*.lease"))
    import multiprocessing

    assert not multiprocessing.active_children()


def test_a_commit_error_no_caller_sees_is_logged(tmp_path, monkeypatch, caplog):
    """The caller stops (an interrupt) while a commit runs, and that commit then fails: the interrupt is
    raised, and the commit's error is logged rather than lost."""
    path = tmp_path / "s.atlas"
    atlas.Atlas.create(path).close()
    started, interrupted = tmp_path / "commit-started", tmp_path / "interrupted"

    def call(self, fn, job):
        started.write_text("")
        _wait_for(interrupted)
        time.sleep(0.5)
        raise RuntimeError("the commit task was lost")

    def progress(label, note):
        if started.exists():
            interrupted.write_text("")
            raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "call", call)
    sources = [*_quick_sources(1), functools.partial(ingest_sources.wait_until_stored, str(path), "never", "late", 3)]
    with caplog.at_level("ERROR", logger="atlas"), pytest.raises(KeyboardInterrupt):
        atlas.ingest(sources, path, workers=2, batch=1, commit_interval=0, progress=progress)
    assert "the commit task was lost" in caplog.text
    with atlas.Atlas.open(path, "r") as store:
        assert store.list_datasets() == [] and store.verify() == []


def test_the_rows_waiting_are_counted_once_per_fragment(tmp_path, monkeypatch):
    """No commit is due by size before most sources returned, so many fragments may wait: the
    main loop counts each fragment's rows once (summing them all at every step was quadratic)."""
    from atlas.distributed import client

    path = tmp_path / "s.atlas"
    atlas.Atlas.create(path).close()
    counted = []
    original = client._rows
    monkeypatch.setattr(client, "_rows", lambda frag: counted.append(frag) or original(frag))
    report = atlas.ingest(_quick_sources(24), path, workers=2, batch=1, commit_interval=3600)
    assert report.datasets == 24
    assert len(counted) <= 24  # one count per fragment (summing them at every step counted 209)
    with atlas.Atlas.open(path, "r") as store:
        assert sorted(store.list_datasets()) == sorted(f"d{i}" for i in range(24)) and store.verify() == []


def test_the_client_leases_fragments_in_small_groups(tmp_path, monkeypatch):
    """Each lease the client writes names the files of a bounded number of fragments: one lease
    over every waiting file, rewritten at each arrival, wrote bytes quadratic in the fragments."""
    from atlas.distributed import client
    from atlas.txn import leases

    monkeypatch.setattr(client, "LeaseGroups", functools.partial(leases.LeaseGroups, per_lease=4))
    written = []
    original = leases.encode_lease
    monkeypatch.setattr(leases, "encode_lease", lambda fs, now: written.append(sorted(fs)) or original(fs, now))
    path = tmp_path / "s.atlas"
    atlas.Atlas.create(path).close()
    report = atlas.ingest(_quick_sources(24), path, workers=2, batch=1, commit_interval=3600)
    assert report.datasets == 24 and written
    # A fragment of one file has its segment and its task part: four fragments name at most 8 files.
    assert max(len(files) for files in written) <= 4 * 2, written
    assert sum(len(files) for files in written) <= 24 * 2 * 4  # each file rewritten a bounded number of times
    with atlas.Atlas.open(path, "r") as store:
        assert store.verify() == [] and len(store.list_datasets()) == 24
    assert not list(path.glob("_leases/*.lease"))
