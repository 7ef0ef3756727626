"""Staged chunks beyond the memory budget spill to uncommitted segments."""

from __future__ import annotations

import json
import os
import time
import tracemalloc

import numpy as np
import pytest
from cloud_servers import moto_s3, s3_bucket, unique  # noqa: F401  (fixtures)

import atlas
from atlas import errors
from atlas.txn import leases
from atlas.txn.compact import DEFAULT_GRACE_PERIOD


def segment_files(path):
    return sorted(p.name for p in path.rglob("*.af"))


def test_spill_is_invisible_until_flush_and_reads_back(tmp_path):
    path = tmp_path / "s"
    atlas.Atlas.create(path).close()
    s = atlas.Atlas.open(path, max_pending_bytes=64 << 10)
    ds = s.create_dataset("d")
    ds.define_array("x", "float64", ["n"], [100_000], chunk_shape=[4096])
    ds.define_array("k", "int32", ["n"], [50_000], chunk_shape=[1000])
    data = np.random.default_rng(0).standard_normal(100_000)
    for start in range(0, 100_000, 10_000):
        ds.write_array("x", [start], data[start : start + 10_000])
    ds.write_array("k", [5], np.arange(20_000, dtype="int32"))
    assert segment_files(path), "chunks beyond the budget are spilled"
    other = atlas.Atlas.open(path, mode="r")
    assert other.list_datasets() == []  # nothing committed yet
    np.testing.assert_array_equal(ds.read_array("x"), data)
    stats = ds.array_stats("k")
    assert stats["null_count"] == 30_000 and stats["min"] == 0 and stats["max"] == 19_999
    ds.write_array("x", [3], np.full(2, 7.0))  # read-modify-write of a spilled chunk
    s.flush()
    fresh = atlas.Atlas.open(path)
    expect = data.copy()
    expect[3:5] = 7.0
    np.testing.assert_array_equal(fresh.open_dataset("d").read_array("x"), expect)
    assert fresh.open_dataset("d").array_stats("k") == stats


def test_discard_removes_spilled_files(tmp_path):
    path = tmp_path / "s"
    atlas.Atlas.create(path).close()
    with pytest.raises(RuntimeError), atlas.Atlas.open(path, max_pending_bytes=0) as s:
        ds = s.create_dataset("d")
        ds.define_array("x", "int64", ["n"], [10_000], chunk_shape=[1000])
        ds.write_array("x", [0], np.arange(10_000))
        assert segment_files(path)
        raise RuntimeError("abort")
    assert segment_files(path) == []
    assert atlas.Atlas.open(path).list_datasets() == []


def test_spilled_new_arrays_survive_conflict_and_rebase(tmp_path):
    path = tmp_path / "s"
    atlas.Atlas.create(path).close()
    a = atlas.Atlas.open(path, max_pending_bytes=0)
    b = atlas.Atlas.open(path)
    da = a.create_dataset("from_a")
    da.define_array("x", "int64", ["n"], [5000], chunk_shape=[500])
    da.write_array("x", [0], np.arange(5000))
    db = b.create_dataset("from_b")
    db.define_array("x", "int64", ["n"], [5000], chunk_shape=[500])
    db.write_array("x", [0], -np.arange(5000))
    b.flush()
    with pytest.raises(errors.ConflictError):
        a.flush()
    a.refresh()  # renumbers a's slot, which was spilled under the old number
    a.flush()
    final = atlas.Atlas.open(path)
    np.testing.assert_array_equal(final.open_dataset("from_a").read_array("x"), np.arange(5000))
    np.testing.assert_array_equal(final.open_dataset("from_b").read_array("x"), -np.arange(5000))
    final.compact()
    np.testing.assert_array_equal(atlas.Atlas.open(path).open_dataset("from_a").read_array("x"), np.arange(5000))


def test_streaming_write_memory_is_bounded(tmp_path):
    budget = 8 << 20
    # The first write of a process loads numba's kernels and blosc2 (tens of MiB of
    # Python objects, once): do it before tracing, so that the peak is staged data.
    with atlas.Atlas.create(tmp_path / "warm-up") as w:
        w.create_dataset("d").define_array("x", "float64", ["n"], [1 << 18])
        w.open_dataset("d").write_array("x", [0], np.ones(1 << 18))
    s = atlas.Atlas.create(tmp_path / "s", max_pending_bytes=budget)
    ds = s.create_dataset("d")
    n = 16 << 20  # 128 MiB of float64, written in 4 MiB blocks
    ds.define_array("x", "float64", ["n"], [n], chunk_shape=[1 << 18])
    block = 1 << 19
    tracemalloc.start()
    for start in range(0, n, block):
        ds.write_array("x", [start], np.full(block, start, dtype="float64"))
    s.flush()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * budget, f"peak {peak / 2**20:.1f} MiB for a {budget / 2**20:.0f} MiB budget"
    got = atlas.Atlas.open(tmp_path / "s").open_dataset("d").read_array("x", [n - 3], [3])
    assert got.tolist() == [n - block] * 3


def test_bad_budget_rejected(tmp_path):
    with pytest.raises(ValueError):
        atlas.Atlas.create(tmp_path / "s", max_pending_bytes=-1)


def test_spilled_data_of_an_uncommitted_deleted_dataset_is_not_committed(tmp_path):
    path = tmp_path / "s"
    s = atlas.Atlas.create(path, max_pending_bytes=0)
    d = s.create_dataset("x")
    d.define_array("v", "float64", ["n"], [4000], chunk_shape=[1000])
    for k in range(3):
        d.write_array("v", [k * 1000], np.zeros(1000))
    assert segment_files(path)
    s.delete_dataset("x")
    s.create_dataset("y")
    s.flush()
    assert segment_files(path) == []
    assert s._st.base.families == {}
    assert atlas.Atlas.open(path).verify() == []


@pytest.mark.parametrize("budget", [None, 256 << 10])
def test_threaded_encoding_writes_the_same_chunks(tmp_path, budget):
    """Flushes and spills compress on ``max_workers`` threads; the chunks stored do not change."""
    rng = np.random.default_rng(7)
    data = {
        "f8": rng.standard_normal((256, 600)).cumsum(axis=1),  # 1.2 MB: above the threaded-encoding threshold
        "s": np.array([f"v{i}" * (i % 5) for i in range(3000)], dtype=object),
        "i2": rng.integers(-500, 500, (64, 300)).astype("int16"),
    }
    tables = []
    for workers in (1, 2):
        path = tmp_path / f"w{workers}"
        kwargs = {} if budget is None else {"max_pending_bytes": budget}
        with atlas.Atlas.create(path, max_workers=workers, **kwargs) as s:
            for d in range(3):
                ds = s.create_dataset(f"d{d}")
                ds.define_array("f8", "float64", ["y", "x"], [256, 600], chunk_shape=[64, 100])
                ds.define_array("i2", "int16", ["y", "x"], [64, 300], chunk_shape=[8, 300])
                ds.define_array("s", "string", ["n"], [3000], chunk_shape=[250])
                for name, values in data.items():
                    ds.write_array(name, None, values)
        store = atlas.Atlas.open(path, mode="r")
        assert store.verify() == []
        for d in range(3):
            for name, values in data.items():
                np.testing.assert_array_equal(store.open_dataset(f"d{d}").read_array(name), values)
        records = {}
        for f in path.rglob("*.af"):
            blob = f.read_bytes()
            records[f.parent.name] = records.get(f.parent.name, 0) + len(blob)
        tables.append(records)
    assert tables[0] == tables[1]  # the same encoded bytes per family, whatever the thread count


# -- spilled segments and concurrent compaction ----------------------------------------------------


def _spilling_writer(source):
    """A handle holding an uncommitted dataset whose chunks are all spilled."""
    w = atlas.Atlas.open(source, max_pending_bytes=0)
    ds = w.create_dataset("d")
    ds.define_array("x", "int64", ["n"], [10_000], chunk_shape=[1000])
    ds.write_array("x", [0], np.arange(10_000))
    assert w._st.spilled_paths(), "the test needs spilled segments"
    return w


def _age(paths, seconds):
    then = time.time() - seconds
    for p in paths:
        os.utime(p, (then, then))


def test_compaction_keeps_a_live_writers_old_spilled_segments(tmp_path):
    """The scenario of a long append racing a scheduled compaction (issue 18, item 3)."""
    path = tmp_path / "s"
    atlas.Atlas.create(path).close()
    w = _spilling_writer(path)
    spilled = [path / p for p in w._st.spilled_paths()]
    _age(spilled, 2 * DEFAULT_GRACE_PERIOD)  # written long before the compaction
    other = atlas.Atlas.open(path)
    other.create_dataset("e")
    other.flush()
    other.compact()  # the default grace period
    assert all(f.exists() for f in spilled), "a compaction removed a live writer's spilled segment"
    w.refresh()
    w.flush()
    fresh = atlas.Atlas.open(path, mode="r")
    np.testing.assert_array_equal(fresh.open_dataset("d").read_array("x"), np.arange(10_000))
    assert fresh.verify() == []
    assert list((path / leases.LEASE_DIR).glob("*")) == [], "the lease is released once the files are committed"


def test_flush_refuses_spilled_segments_that_a_compaction_removed(tmp_path):
    """An expired lease costs a clear error at flush, never a manifest naming a deleted file."""
    path = tmp_path / "s"
    atlas.Atlas.create(path).close()
    w = _spilling_writer(path)
    spilled = w._st.spilled_paths()
    lease_files = list((path / leases.LEASE_DIR).glob("*.lease"))
    assert len(lease_files) == 1
    assert sorted(json.loads(lease_files[0].read_bytes())["files"]) == sorted(spilled)
    _age([path / p for p in spilled] + lease_files, 2 * DEFAULT_GRACE_PERIOD)  # the writer went idle
    other = atlas.Atlas.open(path)
    other.compact()
    assert not any((path / p).exists() for p in spilled) and not lease_files[0].exists()
    manifest = sorted(path.glob("atlas.*"))
    before = [(m.name, m.read_bytes()) for m in manifest]
    w.refresh()
    with pytest.raises(errors.SegmentMissingError) as caught:
        w.flush()
    assert isinstance(caught.value, OSError) and isinstance(caught.value, errors.CorruptStoreError)
    assert any(p in str(caught.value) for p in spilled), caught.value
    assert [(m.name, m.read_bytes()) for m in sorted(path.glob("atlas.*"))] == before, "nothing is committed"
    assert atlas.Atlas.open(path, mode="r").list_datasets() == []
    w.discard()  # the handle stays usable: write again and flush
    ds = w.create_dataset("d")
    ds.define_array("x", "int64", ["n"], [10_000], chunk_shape=[1000])
    ds.write_array("x", [0], np.arange(10_000))
    w.flush()
    fresh = atlas.Atlas.open(path, mode="r")
    np.testing.assert_array_equal(fresh.open_dataset("d").read_array("x"), np.arange(10_000))
    assert fresh.verify() == []


def test_a_writer_that_keeps_writing_keeps_its_lease_fresh(tmp_path, monkeypatch):
    """Writes that do not spill renew the lease (here at once instead of every minute)."""
    monkeypatch.setattr(leases, "RENEW_SECONDS", 0.0)
    path = tmp_path / "s"
    atlas.Atlas.create(path).close()
    w = atlas.Atlas.open(path, max_pending_bytes=64 << 10)
    ds = w.create_dataset("d")
    ds.define_array("x", "int64", ["n"], [20_000], chunk_shape=[1000])
    ds.write_array("x", [0], np.arange(20_000))  # 160 kB: spilled
    spilled = w._st.spilled_paths()
    assert spilled
    (first,) = (path / leases.LEASE_DIR).glob("*.lease")
    _age([path / p for p in spilled] + [first], 2 * DEFAULT_GRACE_PERIOD)  # a long computation
    ds.write_array("x", [5], np.array([-5]))  # 8 kB staged, under the budget: no spill, a renewal
    assert w._st.spilled_paths() == spilled
    (second,) = (path / leases.LEASE_DIR).glob("*.lease")
    assert second != first and sorted(json.loads(second.read_bytes())["files"]) == sorted(spilled)
    atlas.Atlas.open(path).compact()
    assert all((path / p).exists() for p in spilled)
    w.refresh()
    w.flush()
    want = np.arange(20_000)
    want[5] = -5
    np.testing.assert_array_equal(atlas.Atlas.open(path, mode="r").open_dataset("d").read_array("x"), want)


def test_flush_refuses_a_spilled_segment_of_the_wrong_size(tmp_path):
    path = tmp_path / "s"
    atlas.Atlas.create(path).close()
    w = _spilling_writer(path)
    victim = w._st.spilled_paths()[0]
    with open(path / victim, "ab") as fh:
        fh.write(b"junk")
    with pytest.raises(errors.SegmentMissingError, match=f"{victim}.* is .* bytes"):
        w.flush()
    assert atlas.Atlas.open(path, mode="r").list_datasets() == []
    w.discard()


@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_leases_keep_spilled_objects_on_object_stores(kind, request):
    """Objects cannot be touched: the lease object is what a compaction respects."""
    pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
    if kind == "memory":
        from obstore.store import MemoryStore

        handle = MemoryStore()
    else:
        handle = request.getfixturevalue("moto_s3").store(request.getfixturevalue("s3_bucket"), unique("lease"))
    grace = 2.0  # S3 modification times have a resolution of one second
    atlas.Atlas.create(handle).close()
    w = _spilling_writer(handle)
    first = w._st.spilled_paths()
    time.sleep(grace + 1)  # the spilled objects are now older than the grace period
    w.open_dataset("d").write_array("x", [0], np.array([-1]))  # spills again: the lease is rewritten
    other = atlas.Atlas.open(handle)
    other.compact(grace_period=grace)
    listed = {info.path for info in other._st.backend.list("")}
    assert set(first) <= listed, "a compaction removed objects a fresh lease names"
    w.refresh()
    w.flush()
    want = np.arange(10_000)
    want[0] = -1
    np.testing.assert_array_equal(atlas.Atlas.open(handle).open_dataset("d").read_array("x"), want)
    # An idle writer's lease expires: its flush then fails clearly and commits nothing.
    w.open_dataset("d").write_array("x", [0], np.array([-2]))
    second = w._st.spilled_paths()
    time.sleep(grace + 1)
    other.refresh()
    other.compact(grace_period=grace)
    listed = {info.path for info in other._st.backend.list("")}
    assert not set(second) & listed and not any(leases.is_lease(p) for p in listed)
    w.refresh()
    with pytest.raises(errors.SegmentMissingError, match=second[0]):
        w.flush()
    np.testing.assert_array_equal(atlas.Atlas.open(handle).open_dataset("d").read_array("x"), want)
    w.discard()
