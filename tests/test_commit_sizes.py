"""A commit checks the size of every file it adds, concurrently on object stores, in order."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from cloud_servers import moto_s3, s3_bucket, unique  # noqa: F401  (fixtures)

import atlas
from atlas import errors

pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")

ARRAYS = 24


def _stage_many_segments(handle):
    """A writer with one new dataset of ``ARRAYS`` arrays (one segment each when flushed)."""
    atlas.Atlas.create(handle).close()
    w = atlas.Atlas.open(handle)
    ds = w.create_dataset("d")
    for i in range(ARRAYS):
        ds.define_array(f"a{i:02d}", "int32", ["n"], [10])
        ds.write_array(f"a{i:02d}", [0], np.arange(10, dtype="int32") + i)
    return w


class _SlowSizes:
    """The backend's ``size`` with a delay, counting the queries in flight (latency, injected)."""

    def __init__(self, backend, missing=(), failing=()):
        self.real = backend.size
        self.missing, self.failing = set(missing), set(failing)
        self.in_flight = self.most = 0
        self.asked = []
        self.lock = threading.Lock()

    def __call__(self, path):
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.asked.append(path)
        try:
            time.sleep(0.02)
            if any(path.startswith(m) for m in self.failing):
                raise errors.BackendError(f"stat {path}: injected failure")
            if any(path.startswith(m) for m in self.missing):
                return self.real(path + ".gone")  # a real query for an object that is not there
            return self.real(path)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture(params=["memory", "s3"])
def object_store(request):
    if request.param == "memory":
        from obstore.store import MemoryStore

        return MemoryStore()
    return request.getfixturevalue("moto_s3").store(request.getfixturevalue("s3_bucket"), unique("sizes"))


def test_the_added_files_are_checked_concurrently_and_committed(object_store, monkeypatch):
    w = _stage_many_segments(object_store)
    sizes = _SlowSizes(w._st.backend)
    monkeypatch.setattr(w._st.backend, "size", sizes)
    w.flush()
    assert len(sizes.asked) >= ARRAYS, "every added segment and part is checked"
    assert 1 < sizes.most <= w._st.backend.max_concurrency
    fresh = atlas.Atlas.open(object_store, mode="r")
    for i in range(ARRAYS):
        np.testing.assert_array_equal(fresh.open_dataset("d").read_array(f"a{i:02d}"), np.arange(10) + i)
    assert fresh.verify() == []


def test_the_first_missing_file_in_order_is_reported_and_nothing_is_committed(object_store, monkeypatch):
    w = _stage_many_segments(object_store)
    # Two arrays' segments are gone; the one named first in the commit is reported.
    sizes = _SlowSizes(w._st.backend, missing=("a05/", "a17/"))
    monkeypatch.setattr(w._st.backend, "size", sizes)
    with pytest.raises(errors.SegmentMissingError, match=r"of array 'a05' .*is missing"):
        w.flush()
    assert atlas.Atlas.open(object_store, mode="r").list_datasets() == []
    w.discard()


def test_a_failed_query_fails_the_commit_and_commits_nothing(object_store, monkeypatch):
    w = _stage_many_segments(object_store)
    sizes = _SlowSizes(w._st.backend, failing=("a11/",))
    monkeypatch.setattr(w._st.backend, "size", sizes)
    with pytest.raises(errors.BackendError, match="injected failure"):
        w.flush()
    assert atlas.Atlas.open(object_store, mode="r").list_datasets() == []
    monkeypatch.setattr(w._st.backend, "size", sizes.real)
    w.flush()  # the flush can be retried as it is
    assert atlas.Atlas.open(object_store, mode="r").open_dataset("d").read_array("a11").tolist() == list(range(11, 21))


def test_a_local_store_asks_one_file_at_a_time(tmp_path, monkeypatch):
    """A ``stat`` costs microseconds: no threads for it."""
    w = _stage_many_segments(tmp_path / "s")
    sizes = _SlowSizes(w._st.backend)
    monkeypatch.setattr(w._st.backend, "size", sizes)
    w.flush()
    assert len(sizes.asked) >= ARRAYS and sizes.most == 1
