"""Commit protocol, snapshots, optimistic concurrency, read-only handles, damage."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest
from v1_stores import to_v1

import atlas
from atlas import errors


def make(path, n=3):
    with atlas.Atlas.create(path) as s:
        for i in range(n):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("x", "float64", ["n"], [20], chunk_shape=[8])
            ds.write_array("x", [0], np.arange(20.0) + i)
    return path


def test_nothing_visible_before_flush(tmp_path):
    path = make(tmp_path / "s")
    writer = atlas.Atlas.open(path)
    writer.open_dataset("d0").write_array("x", [0], np.full(20, -1.0))
    writer.create_dataset("new")
    reader = atlas.Atlas.open(path, mode="r")
    assert reader.list_datasets() == ["d0", "d1", "d2"]
    assert reader.open_dataset("d0").read_array("x")[0] == 0.0
    writer.flush()
    assert reader.open_dataset("d0").read_array("x")[0] == 0.0  # snapshot until refresh
    reader.refresh()
    assert reader.open_dataset("d0").read_array("x")[0] == -1.0
    assert "new" in reader.list_datasets()


def test_with_block_commits_on_success_and_discards_on_exception(tmp_path):
    path = make(tmp_path / "s")
    with pytest.raises(RuntimeError), atlas.Atlas.open(path) as s:
        s.create_dataset("lost")
        s.open_dataset("d1").write_array("x", [0], np.zeros(20))
        raise RuntimeError("boom")
    s = atlas.Atlas.open(path)
    assert "lost" not in s.list_datasets()
    assert s.open_dataset("d1").read_array("x")[0] == 1.0
    with atlas.Atlas.open(path) as s:
        s.create_dataset("kept")
    assert "kept" in atlas.Atlas.open(path).list_datasets()


def test_create_refuses_existing_store_and_non_empty_dir(tmp_path):
    path = make(tmp_path / "s")
    with pytest.raises(FileExistsError) as info:
        atlas.Atlas.create(path)
    assert isinstance(info.value, errors.StoreExistsError)
    assert atlas.Atlas.open(path).list_datasets() == ["d0", "d1", "d2"]  # nothing wiped
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hi")
    with pytest.raises(FileExistsError):
        atlas.Atlas.create(other)


def test_open_not_a_store(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        atlas.Atlas.open(tmp_path / "missing")
    assert isinstance(info.value, errors.NotAStoreError)
    with pytest.raises(errors.NotAStoreError):
        atlas.Atlas.open(tmp_path)
    with pytest.raises(ValueError):
        atlas.Atlas.open(tmp_path, mode="w")


def test_newer_format_version_rejected(tmp_path):
    path = make(tmp_path / "s")
    manifest = json.loads((path / "atlas.json").read_text())
    manifest["format_version"] = 99
    (path / "atlas.json").write_text(json.dumps(manifest))
    with pytest.raises(errors.FormatVersionError, match="99"):
        atlas.Atlas.open(path)


def test_garbled_manifest_is_a_clear_error(tmp_path):
    path = make(tmp_path / "s")
    (path / "atlas.json").write_bytes(b"{not json")
    with pytest.raises(errors.CorruptStoreError, match=r"atlas\.json"):
        atlas.Atlas.open(path)


def test_read_only_handle(tmp_path):
    path = make(tmp_path / "s")
    s = atlas.Atlas.open(path, mode="r")
    assert s.read_only
    ds = s.open_dataset("d0")
    for call in (
        lambda: s.create_dataset("x"),
        lambda: s.delete_dataset("d0"),
        lambda: ds.write_array("x", [0], np.zeros(20)),
        lambda: ds.define_array("y", "int8", ["n"], [1]),
        lambda: ds.set_attribute("a", 1),
        lambda: ds.delete_array("x"),
        s.compact,
    ):
        with pytest.raises(PermissionError) as info:
            call()
        assert isinstance(info.value, errors.ReadOnlyError)
    assert ds.read_array("x")[1] == 1.0
    s.close()


def test_conflicting_commit_keeps_pending_and_refresh_retry_succeeds(tmp_path):
    path = make(tmp_path / "s")
    a = atlas.Atlas.open(path)
    b = atlas.Atlas.open(path)
    a.open_dataset("d0").write_array("x", [0], np.full(20, 100.0))
    new = a.create_dataset("from_a")
    new.define_array("x", "int8", ["n"], [2])
    new.write_array("x", [0], np.array([1, 2], "int8"))
    b.open_dataset("d1").write_array("x", [0], np.full(20, 200.0))
    nb = b.create_dataset("from_b")
    nb.define_array("y", "int8", ["n"], [2])
    nb.write_array("y", [0], np.array([3, 4], "int8"))
    b.flush()
    with pytest.raises(errors.ConflictError):
        a.flush()
    assert a.has_pending_changes
    assert a.open_dataset("d0").read_array("x")[0] == 100.0  # still staged
    a.refresh()
    a.flush()
    final = atlas.Atlas.open(path)
    assert final.list_datasets() == ["d0", "d1", "d2", "from_a", "from_b"]
    assert final.open_dataset("d0").read_array("x")[0] == 100.0
    assert final.open_dataset("d1").read_array("x")[0] == 200.0
    assert final.open_dataset("from_a").read_array("x").tolist() == [1, 2]
    assert final.open_dataset("from_b").read_array("y").tolist() == [3, 4]
    slots = [m.slot for _, ds in final._st.items() for m in ds.arrays.values()]
    assert len(slots) == len(set(slots))  # no slot shared by two arrays after the rebase


def test_refresh_refuses_when_both_changed_the_same_dataset(tmp_path):
    path = make(tmp_path / "s")
    a = atlas.Atlas.open(path)
    b = atlas.Atlas.open(path)
    a.open_dataset("d0").set_attribute("who", "a")
    b.open_dataset("d0").set_attribute("who", "b")
    b.flush()
    with pytest.raises(errors.ConflictError):
        a.flush()
    with pytest.raises(errors.ConflictError, match="d0"):
        a.refresh()
    assert a.open_dataset("d0").get_attribute("who") == "a"  # pending kept
    a.discard()
    a.refresh()
    assert a.open_dataset("d0").get_attribute("who") == "b"


def test_open_takes_no_lock_and_never_blocks(tmp_path):
    import fcntl

    path = make(tmp_path / "s")
    fd = os.open(path / ".atlas.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        s = atlas.Atlas.open(path, mode="r")
        assert s.open_dataset("d2").read_array("x")[0] == 2.0
    finally:
        os.close(fd)


def test_damaged_chunk_raises_checksum_error_naming_file_and_dataset(tmp_path):
    path = make(tmp_path / "s", n=1)
    with atlas.Atlas.open(path) as s:
        ds = s.create_dataset("other")
        ds.define_array("y", "int32", ["n"], [4])
        ds.write_array("y", [0], np.arange(4, dtype="int32"))
    (seg,) = (path / "x").iterdir()
    raw = bytearray(seg.read_bytes())
    raw[80] ^= 0xFF  # inside the first chunk payload
    seg.write_bytes(bytes(raw))
    s = atlas.Atlas.open(path)
    with pytest.raises(errors.ChecksumError) as info:
        s.open_dataset("d0").read_array("x")
    assert seg.name in str(info.value) and "'d0'" in str(info.value)
    assert s.open_dataset("other").read_array("y").tolist() == [0, 1, 2, 3]


def test_damaged_index_is_detected(tmp_path):
    path = make(tmp_path / "s", n=1)
    (seg,) = (path / "x").iterdir()
    raw = bytearray(seg.read_bytes())
    raw[-40] ^= 0x01  # inside the index
    seg.write_bytes(bytes(raw))
    with pytest.raises(errors.CorruptStoreError, match=seg.name):
        atlas.Atlas.open(path).open_dataset("d0").read_array("x")


def test_truncated_or_missing_segment(tmp_path):
    path = make(tmp_path / "s", n=1)
    (seg,) = (path / "x").iterdir()
    seg.write_bytes(seg.read_bytes()[:100])
    with pytest.raises(errors.CorruptStoreError):
        atlas.Atlas.open(path).open_dataset("d0").read_array("x")
    seg.unlink()
    with pytest.raises(errors.CorruptStoreError, match="missing"):
        atlas.Atlas.open(path).open_dataset("d0").read_array("x")


def _segments(path):
    return {p.name for p in (path / "x").iterdir()}


def _manifest(path):
    return json.loads((path / "atlas.json").read_text())


def _retired_segments(path):
    """The commit object's retired segments (retired catalogue parts left out)."""
    return [e for e in _manifest(path).get("retired", []) if e[0] != "_catalog"]


def test_compact_keeps_content_and_retires_dead_files_for_the_grace_period(tmp_path, monkeypatch):
    path = make(tmp_path / "s", n=4)
    s = atlas.Atlas.open(path)
    for i in range(3):
        s.open_dataset("d0").write_array("x", [0], np.full(4, float(i)))
        s.flush()
    s.delete_dataset("d3")
    s.flush()
    before = {n: s.open_dataset(n).read_array("x") for n in s.list_datasets()}
    stats = {n: s.open_dataset(n).array_stats("x") for n in s.list_datasets()}
    old_segments = _segments(path)
    old, young = "000000000099-deadbeefdeadbeef.af", "000000000098-0000000000000000.af"
    (path / "x" / old).write_bytes(b"orphan")
    os.utime(path / "x" / old, (0, 0))
    (path / "x" / young).write_bytes(b"young orphan")
    reader = atlas.Atlas.open(path, mode="r")  # an older generation, nothing mapped yet
    s.compact()
    files = _segments(path)
    assert old not in files and young in files  # only the old orphan is swept
    assert old_segments <= files, "retired segments were deleted before their grace period"
    (compacted,) = files - old_segments - {young}
    retired = _retired_segments(path)
    assert sorted(f for _d, f, _t in retired) == sorted(old_segments)
    parts = _manifest(path)["parts"]
    assert len(parts) == 1, "compaction merges every catalogue part into one"
    retired_parts = [f for d, f, _t in _manifest(path)["retired"] if d == "_catalog"]
    assert retired_parts and all((path / "_catalog" / f).exists() for f in retired_parts)
    assert all(d == "x" and abs(t / 1000 - time.time()) < 60 for d, _f, t in retired)
    for n, arr in before.items():  # the old snapshot still reads every chunk
        np.testing.assert_array_equal(reader.open_dataset(n).read_array("x"), arr)
    s2 = atlas.Atlas.open(path)
    for n, arr in before.items():
        np.testing.assert_array_equal(s2.open_dataset(n).read_array("x"), arr)
        assert s2.open_dataset(n).array_stats("x") == stats[n]
    # A flush keeps the retired segments as they are (it may retire the parts it merges).
    s2.open_dataset("d1").set_attribute("k", 1)
    s2.flush()
    assert _retired_segments(path) == retired
    # Within the grace period a second compaction keeps them; past it, it deletes them.
    s2.compact()
    assert old_segments <= _segments(path) and _retired_segments(path) == retired
    later = time.time() + 3601
    monkeypatch.setattr(time, "time", lambda: later)
    s2.compact()
    assert _segments(path) == {compacted}
    assert "retired" not in _manifest(path)
    assert {p.name for p in (path / "_catalog").iterdir()} == {_manifest(path)["parts"][0][0]}
    for n, arr in before.items():
        np.testing.assert_array_equal(s2.open_dataset(n).read_array("x"), arr)
    assert s2.verify() == []


def test_compact_with_zero_grace_deletes_at_once_and_lists_nothing(tmp_path):
    path = make(tmp_path / "s")
    with atlas.Atlas.open(path) as s:
        s.open_dataset("d0").write_array("x", [0], np.zeros(20))
        s.flush()
        s.compact()  # retires two segments for an hour
        s.open_dataset("d0").write_array("x", [0], np.ones(20))
        s.compact(grace_period=0)  # flushes, then deletes its own and the earlier retired segments
        assert len(_segments(path)) == 1
        assert "retired" not in _manifest(path)
        np.testing.assert_array_equal(s.open_dataset("d0").read_array("x"), np.ones(20))


def test_compact_with_infinite_grace_deletes_nothing(tmp_path):
    path = make(tmp_path / "s")
    with atlas.Atlas.open(path) as s:
        s.open_dataset("d0").write_array("x", [0], np.zeros(20))
        s.flush()
        first = _segments(path)
        s.compact(grace_period=math.inf)
        assert first < _segments(path)
        s.compact(grace_period=0)
        assert len(_segments(path)) == 1


@pytest.mark.parametrize("bad", ["soon", None, [1], 1j, -1, -0.5, math.nan, True, np.array([1.0])])
def test_compact_refuses_a_bad_grace_period_before_doing_anything(tmp_path, bad):
    path = make(tmp_path / "s")
    s = atlas.Atlas.open(path)
    s.open_dataset("d0").write_array("x", [0], np.zeros(20))  # pending: must not be flushed
    gen, files = s.generation, _segments(path)
    with pytest.raises(errors.InvalidArgumentError, match="grace_period"):
        s.compact(grace_period=bad)
    assert s.generation == gen and s.has_pending_changes and _segments(path) == files
    assert atlas.Atlas.open(path).generation == gen
    s.discard()


def test_stale_writer_after_an_expired_grace_is_refused_not_damaged(tmp_path):
    """A handle whose snapshot predates a grace_period=0 compaction reads deleted files:
    it gets an AtlasError, never wrong data, and refresh() brings it back."""
    path = make(tmp_path / "s")
    with atlas.Atlas.open(path) as s:
        s.open_dataset("d0").write_array("x", [0], np.zeros(4))
    stale = atlas.Atlas.open(path)
    with atlas.Atlas.open(path) as s:
        s.compact(grace_period=0)
    with pytest.raises((errors.CorruptStoreError, errors.ConflictError)):
        stale.open_dataset("d1").read_array("x")
    stale.refresh()
    np.testing.assert_array_equal(stale.open_dataset("d1").read_array("x"), np.arange(20.0) + 1)


def test_a_commit_reads_only_the_index_of_new_segments(tmp_path, monkeypatch):
    """Without compaction a family grows by one segment per commit; each commit must
    parse only the indexes it has not parsed yet, not the family's whole history."""
    from atlas.engine import family as arrays

    parsed = []
    real = arrays.parse_index
    monkeypatch.setattr(
        arrays,
        "parse_index",
        lambda raw, digest, offset, where: parsed.append(where) or real(raw, digest, offset, where),
    )
    path = make(tmp_path / "s")
    with atlas.Atlas.open(path) as s:
        ds = s.open_dataset("d0")
        for k in range(30):
            ds.write_array("x", [k % 20], np.array([float(k)]))  # partial: reads the stored chunk
            s.flush()
        assert ds.read_array("x")[9] == 29.0
        assert len(s._st.base.families["x"].segments) == 31
        assert len(parsed) == len(set(parsed)) == 31, "an index was parsed twice"


def test_flush_without_changes_is_a_no_op(tmp_path):
    path = make(tmp_path / "s")
    s = atlas.Atlas.open(path)
    gen = s.generation
    s.flush()
    assert s.generation == gen
    s.open_dataset("d0").set_attribute("k", 1)
    s.flush()
    assert s.generation == gen + 1


def test_verify_reports_exactly_what_is_damaged(tmp_path):
    path = make(tmp_path / "s", n=2)
    with atlas.Atlas.open(path) as s:
        ds = s.create_dataset("other")
        ds.define_array("y", "int32", ["n"], [4])
        ds.write_array("y", [0], np.arange(4, dtype="int32"))
    assert atlas.Atlas.open(path, mode="r").verify() == []
    (seg,) = (path / "x").iterdir()
    raw = bytearray(seg.read_bytes())
    raw[70] ^= 0x10  # first chunk payload of d0
    seg.write_bytes(bytes(raw))
    problems = atlas.Atlas.open(path, mode="r").verify()
    assert len(problems) == 1 and seg.name in problems[0] and "'d0'" in problems[0]
    raw[:4] = b"XXXX"  # the header magic too
    seg.write_bytes(bytes(raw))
    problems = atlas.Atlas.open(path, mode="r").verify()
    assert any("magic" in p for p in problems)
    (seg_y,) = (path / "y").iterdir()
    seg_y.unlink()
    problems = atlas.Atlas.open(path, mode="r").verify()
    assert any(seg_y.name in p and "'other'" in p for p in problems)


def test_manifest_with_shared_slot_is_rejected(tmp_path):
    path = to_v1(make(tmp_path / "s", n=2))
    manifest = json.loads((path / "atlas.json").read_text())
    manifest["datasets"]["d1"]["arrays"]["x"]["slot"] = manifest["datasets"]["d0"]["arrays"]["x"]["slot"]
    (path / "atlas.json").write_text(json.dumps(manifest))
    with pytest.raises(errors.CorruptStoreError, match="slot"):
        atlas.Atlas.open(path)


@pytest.mark.parametrize(
    "retired",
    [
        "x",
        [["x", "000000000001-0000000000000000.af"]],
        [["x/y", "000000000001-0000000000000000.af", 0]],
        [["x", "notasegment", 0]],
        [["x", "000000000001-0000000000000000.af", -1]],
        [["x", "000000000001-0000000000000000.af", 1.5]],
        "live",
    ],
)
def test_malformed_retired_list_is_corrupt(tmp_path, retired):
    path = make(tmp_path / "s")
    manifest = _manifest(path)
    if retired == "live":  # a live segment listed as retired would be deleted by a compaction
        fam = manifest["arrays"]["x"]
        retired = [[fam["dir"], fam["segments"][0][0], 0]]
    manifest["retired"] = retired
    (path / "atlas.json").write_text(json.dumps(manifest))
    with pytest.raises(errors.CorruptStoreError, match="retired"):
        atlas.Atlas.open(path)


def test_manifest_without_retired_key_has_none(tmp_path):
    path = make(tmp_path / "s")
    assert "retired" not in _manifest(path)
    with atlas.Atlas.open(path) as s:
        assert s._st.base.retired == []
        s.open_dataset("d0").write_array("x", [0], np.zeros(2))
        s.compact(grace_period=math.inf)
    manifest = _manifest(path)
    (live,) = manifest["arrays"]["x"]["segments"]
    assert sorted(f for _d, f, _t in _retired_segments(path)) == sorted(_segments(path) - {live[0]})
    (part,) = manifest["parts"]
    assert {f for d, f, _t in manifest["retired"] if d == "_catalog"} == {
        p.name for p in (path / "_catalog").iterdir()
    } - {part[0]}


class _LandsThenFails:
    """A local backend whose next manifest commit lands, then reports an I/O error.

    What a client sees when a commit's response is lost and reading the manifest
    back fails too: the outcome is unknown to the backend.
    """

    def __init__(self, path):
        from atlas.backends import LocalBackend

        self.inner = LocalBackend(str(path), read_only=False)
        self.location = self.inner.location
        self.read_only = False
        self.armed = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get(self, *a):
        return self.inner.get(*a)

    def get_versioned(self, *a):
        return self.inner.get_versioned(*a)

    def get_ranges(self, *a):
        return self.inner.get_ranges(*a)

    def put(self, *a):
        return self.inner.put(*a)

    def delete(self, *a):
        return self.inner.delete(*a)

    def list(self, *a):
        return self.inner.list(*a)

    def close(self):
        return self.inner.close()

    def commit(self, *a):
        version = self.inner.commit(*a)
        if self.armed:
            self.armed = False
            err = errors.BackendError("commit atlas.json: outcome unknown (injected)")
            raise err
        return version


@pytest.mark.parametrize("settle_with", ["flush", "refresh"])
def test_commit_with_unknown_outcome_is_settled_by_the_next_call(tmp_path, settle_with):
    backend = _LandsThenFails(tmp_path / "s")
    s = atlas.Atlas.create(backend)
    ds = s.create_dataset("a")
    ds.define_array("v", "int32", ["n"], [4])
    ds.write_array("v", None, np.arange(4, dtype="int32"))
    backend.armed = True
    with pytest.raises(errors.BackendError, match="outcome unknown"):
        s.flush()
    assert s.has_pending_changes  # the handle cannot know yet
    getattr(s, settle_with)()  # finds its own manifest in the store: the commit landed
    assert not s.has_pending_changes and s.generation == 1
    s.flush()  # nothing more to commit
    fresh = atlas.Atlas.open(tmp_path / "s", mode="r")
    assert fresh.generation == 1 and fresh.open_dataset("a").read_array("v").tolist() == [0, 1, 2, 3]


def test_commit_with_unknown_outcome_and_later_changes_is_not_retried_blindly(tmp_path):
    backend = _LandsThenFails(tmp_path / "s")
    s = atlas.Atlas.create(backend)
    s.create_dataset("a").set_attribute("k", 1)
    backend.armed = True
    with pytest.raises(errors.BackendError):
        s.flush()
    s.open_dataset("a").set_attribute("k", 2)  # changed since: the landed manifest is not all of it
    with pytest.raises(errors.ConflictError):
        s.flush()
    assert s.has_pending_changes
    assert atlas.Atlas.open(tmp_path / "s", mode="r").open_dataset("a").get_attribute("k") == 1
    s.discard()


def test_compact_reports_retired_and_deleted_honestly_and_a_noop_commits_nothing(tmp_path, monkeypatch):
    from atlas.txn.compact import CompactReport

    path = make(tmp_path / "s", n=1)
    s = atlas.Atlas.open(path)
    s.open_dataset("d0").write_array("x", [0], np.ones(20))
    s.flush()
    old = {f"x/{n}": (path / "x" / n).stat().st_size for n in _segments(path)}
    # the flush merged its catalogue part with the older one of as many rows, which it retired
    parts = {f"_catalog/{f}": (path / "_catalog" / f).stat().st_size for d, f, _ in _manifest(path)["retired"]}
    before = time.time()
    report = s.compact()
    assert isinstance(report, CompactReport) and report.committed and report.rewritten_arrays == 1
    assert report.retired_files == len(old) and report.retired_bytes == sum(old.values())
    assert before + 3600 <= report.deletable_after <= time.time() + 3600
    old.update(parts)
    assert (report.kept_files, report.kept_bytes) == (len(old), sum(old.values()))
    assert (report.deleted_files, report.deleted_bytes) == (0, 0)  # nothing is free yet
    assert report.generation == s.generation
    # Nothing left to do: no new generation, no manifest write.
    gen, manifest = s.generation, (path / "atlas.json").stat()
    idle = s.compact()
    assert not idle.committed and idle.generation == gen == s.generation
    assert (idle.retired_files, idle.deleted_files) == (0, 0) and idle.kept_files == len(old)
    after = (path / "atlas.json").stat()
    assert (after.st_mtime_ns, after.st_ino) == (manifest.st_mtime_ns, manifest.st_ino)
    assert atlas.Atlas.open(path, mode="r").generation == gen
    # Past the grace period the retired segments go, and the report says how much.
    later = time.time() + 3601
    monkeypatch.setattr(time, "time", lambda: later)
    done = s.compact()
    assert done.committed and done.generation == gen + 1  # the retired list shrank
    assert (done.deleted_files, done.deleted_bytes) == (len(old), sum(old.values()))
    assert (done.kept_files, done.retired_files) == (0, 0)
    assert not s.compact().committed
    s.close()
