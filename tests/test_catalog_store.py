"""The catalogue wired into the store: lazy open, commits that write what changed, requests on S3."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from cloud_servers import RecordingBackend, unique

import atlas
from atlas import errors
from atlas.backends import resolve
from atlas.catalog import CommitObject, decode_metadata, encode_commit, write_part


class SizedBackend(RecordingBackend):
    """A :class:`RecordingBackend` that also counts the bytes each write sends."""

    def __init__(self, inner, latency: float = 0.0) -> None:
        super().__init__(inner, latency)
        self.sent: dict[str, int] = {}

    def put(self, path, parts):
        self.sent[path] = sum(memoryview(p).nbytes for p in parts)
        return super().put(path, parts)

    def commit(self, path, data, expected):
        self.sent[path] = len(data)
        return super().commit(path, data, expected)


def _fill(store: atlas.Atlas, first: int, count: int) -> None:
    for i in range(first, first + count):
        ds = store.create_dataset(f"d{i:06d}")
        ds.define_array("temp", "float32", ["t"], [24])
        ds.write_array("temp", [0], np.full(24, i, dtype="float32"))
        ds.set_attribute("platform", f"P{i % 7}")
        ds.set_attribute("depth", i * 0.5)


def _build(location, n: int, batches: int = 4, **kw) -> None:
    """``n`` datasets in ``batches`` commits (four: the merge policy leaves one part)."""
    with atlas.Atlas.create(location, **kw) as s:
        for b in range(batches):
            _fill(s, b * (n // batches), n // batches)
            s.flush()


def test_open_reads_only_the_commit_object(tmp_path):
    _build(tmp_path / "s", 200)
    rec = RecordingBackend(resolve(tmp_path / "s", read_only=True))
    s = atlas.Atlas.open(rec, mode="r")
    assert {c[0] for c in rec.calls} <= {"list", "get_versioned"} and rec.count() == 2
    assert s.generation == 4 and s.format_version == 2 and len(s.session.state().catalog.parts) == 1
    rec.reset()
    assert s.open_dataset("d000123").get_attribute("depth") == 61.5
    # a small part is read whole by one range request (no listing of the store)
    assert [c[0] for c in rec.calls] == ["get_ranges"] and rec.calls[0][1].startswith("_catalog/")
    rec.reset()
    assert s.open_dataset("d000042").get_attribute("depth") == 21.0 and len(s.list_datasets()) == 200
    assert rec.count() == 0


def test_commit_writes_one_part_with_only_the_changed_rows(tmp_path):
    path = tmp_path / "s"
    _build(path, 200)
    rec = SizedBackend(resolve(path, read_only=False))
    with atlas.Atlas.open(rec) as s:
        s.open_dataset("d000007").set_attribute("depth", -1.0)
        s.delete_dataset("d000008")
        s.flush()
        (big, small) = s.session.state().base.parts
        assert (big.rows, small.rows) == (200, 2)  # one changed row and one tombstone
    written = {p for p in rec.sent}
    assert written == {"atlas.json", small.path}
    with atlas.Atlas.open(path, mode="r") as r:
        assert len(r) == 199 and "d000008" not in r and r.open_dataset("d000007").get_attribute("depth") == -1.0


def test_merges_keep_the_number_of_parts_bounded(tmp_path):
    path = tmp_path / "s"
    _build(path, 100, batches=1)
    with atlas.Atlas.open(path) as s:
        for i in range(40):
            s.open_dataset(f"d{i:06d}").set_attribute("step", i)
            if i % 3 == 0:
                s.delete_dataset(f"d{99 - i:06d}")
            s.flush()
            assert len(s.session.state().base.parts) <= 8
        names = s.list_datasets()
    with atlas.Atlas.open(path) as s:
        assert s.list_datasets() == names and s.verify() == []
        assert s.open_dataset("d000039").get_attribute("step") == 39
        s.compact(grace_period=0)
        assert len(s.session.state().base.parts) == 1 and s.list_datasets() == names
        assert sorted(p.name for p in (path / "_catalog").iterdir()) == [s.session.state().base.parts[0].file]


def test_two_writers_touching_different_datasets_both_commit(tmp_path):
    path = tmp_path / "s"
    _build(path, 20, batches=1)
    a, b = atlas.Atlas.open(path), atlas.Atlas.open(path)
    a.open_dataset("d000001").set_attribute("who", "a")
    a.create_dataset("new_a")
    b.open_dataset("d000002").set_attribute("who", "b")
    b.delete_dataset("d000003")
    a.flush()
    with pytest.raises(errors.ConflictError):
        b.flush()
    b.refresh()
    assert b.open_dataset("d000001").get_attribute("who") == "a" and "new_a" in b
    b.flush()
    with atlas.Atlas.open(path, mode="r") as r:
        assert r.open_dataset("d000001").get_attribute("who") == "a"
        assert r.open_dataset("d000002").get_attribute("who") == "b"
        assert "d000003" not in r and "new_a" in r and len(r) == 20
    # the same dataset changed by both: a conflict, nothing changes
    a.open_dataset("d000002").set_attribute("who", "a again")
    with pytest.raises(errors.ConflictError, match="d000002"):
        a.refresh()
    assert a.open_dataset("d000002").get_attribute("who") == "a again"
    a.discard()
    a.close()
    b.close()


def test_pending_overlay_lists_counts_and_arrays(tmp_path):
    path = tmp_path / "s"
    _build(path, 10, batches=1)
    with atlas.Atlas.open(path) as s:
        s.delete_dataset("d000003")
        s.create_dataset("a_first")
        s.open_dataset("d000004").delete_array("temp")
        assert s.list_datasets()[0] == "a_first" and "d000003" not in s.list_datasets()
        assert len(s) == 10 and s.list_arrays() == ["temp"]
        for i in (0, 1, 2, 5, 6, 7, 8, 9):
            s.open_dataset(f"d{i:06d}").delete_array("temp")
        assert s.list_arrays() == []  # every committed dataset defining it is changed here
        s.discard()
        assert len(s) == 10 and s.list_arrays() == ["temp"]


def test_verify_reports_a_slot_shared_by_two_datasets(tmp_path):
    """A v1 reader refuses a shared slot at open; a v2 one cannot see it lazily: verify does."""
    path = tmp_path / "s"
    _build(path, 2, batches=1)
    with atlas.Atlas.open(path, mode="r") as s:
        state = s.session.state()
        base: CommitObject = copy.deepcopy(state.base)
        one, two = (copy.deepcopy(state.dataset(n)) for n in ("d000000", "d000001"))
    two.arrays["temp"].slot = one.arrays["temp"].slot
    token = bytes(range(16))
    _, buffers, ref = write_part([("d000000", one), ("d000001", two)], base.codec, base.generation + 1, token)
    (path / ref.path).write_bytes(b"".join(memoryview(b).tobytes() for b in buffers))
    base.generation += 1
    base.parts = [ref]
    (path / "atlas.json").write_bytes(encode_commit(base, "json", "none"))
    with atlas.Atlas.open(path, mode="r") as s:
        problems = s.verify()
    assert any("slot" in p and "d000000" in p and "d000001" in p for p in problems), problems


def test_damaged_part_is_reported_by_verify_and_refused_on_read(tmp_path):
    path = tmp_path / "s"
    _build(path, 30, batches=1)
    (part,) = (path / "_catalog").iterdir()
    data = bytearray(part.read_bytes())
    data[60] ^= 0xFF  # inside the first column (the names)
    part.write_bytes(bytes(data))
    with atlas.Atlas.open(path, mode="r") as s:  # opening reads no part
        problems = s.verify()
        assert problems and all(part.name in p for p in problems)
        with pytest.raises(errors.CorruptStoreError, match=part.name):
            s.list_datasets()



@pytest.mark.parametrize("kind", ["local", "memory"])  # memory maps, and range reads of an object store
def test_missing_part_is_damage_named_on_read_and_by_verify(tmp_path, kind):
    if kind == "local":
        location = tmp_path / "s"
    else:
        obstore = pytest.importorskip("obstore.store", reason="obstore (the 'cloud' extra) is not installed")
        location = obstore.MemoryStore()
    _build(location, 30, batches=1)
    backend = resolve(location, read_only=False)
    (part,) = [info.path for info in backend.list("_catalog")]
    backend.delete(part)
    with atlas.Atlas.open(location, mode="r") as s:  # opening reads no part
        problems = s.verify()
        assert problems and all(part in p and "missing" in p for p in problems), problems
        for read in (s.list_datasets, lambda: s.open_dataset("d000003")):
            with pytest.raises(errors.CorruptStoreError, match=f"{part}.*missing.*commit object") as info:
                read()
            assert not isinstance(info.value, errors.BackendError)


@pytest.fixture
def s3(request):
    moto = request.getfixturevalue("moto_s3")
    bucket = request.getfixturevalue("s3_bucket")
    return moto, bucket


def test_s3_open_and_list_cost_requests_independent_of_n(s3):
    """Open + list_datasets is a fixed number of requests; a one-dataset commit sends O(change) bytes."""
    moto, bucket = s3
    opened: dict[int, int] = {}
    sent: dict[int, dict[str, int]] = {}
    for n in (48, 480):
        url = f"s3://{bucket}/{unique('scale')}"
        _build(url, n, storage_options=moto.options())
        rec = RecordingBackend(resolve(url, read_only=True, **moto.options()))
        r = atlas.Atlas.open(rec, mode="r")
        assert len(r.list_datasets()) == n
        opened[n] = rec.count()
        r.close()
        w = SizedBackend(resolve(url, read_only=False, **moto.options()))
        with atlas.Atlas.open(w) as s:
            _fill(s, n, 1)  # one new dataset: a segment, a part and the commit object
            s.flush()
            meta = decode_metadata(w.inner.get(s.session.state().manifest_name), "json", "none", "x")
            assert len(meta.parts) == 2
        sent[n] = dict(w.sent)
    # list, get the commit object, then the part (read whole while small)
    assert opened[48] == opened[480] <= 4, opened
    for n in (48, 480):
        kinds = sorted(p.split("/")[0] for p in sent[n])
        assert kinds == ["_catalog", "atlas.json", "temp"], sent[n]
    total = {n: sum(v.values()) for n, v in sent.items()}
    assert total[480] <= 1.2 * total[48], total  # does not grow with the store
    assert total[480] < 16_000, total


def test_commit_of_a_new_dataset_reads_no_segment(tmp_path):
    """Its stats come from its staged chunks: no segment index is read (it was O(store))."""
    path = tmp_path / "s"
    _build(path, 50)  # four segments of temp
    rec = RecordingBackend(resolve(path, read_only=False))
    with atlas.Atlas.open(rec) as s:
        _fill(s, 50, 1)
        rec.reset()
        s.flush()
        assert not [c for c in rec.calls if c[1].endswith(".af") and c[0] == "get_ranges"], rec.calls
        assert s.open_dataset("d000050").array_stats("temp")["max"] == 50.0


def test_retired_part_entries_stay_bounded_between_compactions(tmp_path, monkeypatch):
    """Merges retire parts at every few commits; old entries leave the list, compact sweeps the files."""
    import json
    import time

    path = tmp_path / "s"
    _build(path, 10, batches=1)

    def retired_parts() -> list:
        return [e for e in json.loads((path / "atlas.json").read_text()).get("retired", []) if e[0] == "_catalog"]

    with atlas.Atlas.open(path) as s:
        for i in range(150):
            s.open_dataset(f"d{i % 10:06d}").set_attribute("i", i)
            s.flush()
        assert len(retired_parts()) > 64
        later = time.time() + 3601
        monkeypatch.setattr(time, "time", lambda: later)
        s.open_dataset("d000000").set_attribute("i", -1)
        s.flush()
        assert len(retired_parts()) <= 64 + 8
        s.compact(grace_period=0)
        listed = {p.file for p in s.session.state().base.parts}
        assert {p.name for p in (path / "_catalog").iterdir()} == listed
        assert s.open_dataset("d000000").get_attribute("i") == -1 and s.verify() == []


def test_a_dataset_of_thousands_of_attributes_merges_and_searches_in_one_pass_over_its_keys(tmp_path, monkeypatch):
    """A part's key list is walked a few times per merge, search or catalogue, not once
    per key (which made a flush merging a part of 200 000 keys take hours)."""
    from atlas.catalog import part

    keys = 2_000
    walked = [0]

    class CountedKeys(list):
        def __iter__(self):
            for entry in super().__iter__():
                walked[0] += 1
                yield entry

    real_parse = part.parse_index

    def counting_parse(*args, **kwargs):
        index = real_parse(*args, **kwargs)
        index.attributes = CountedKeys(index.attributes)
        return index

    path = tmp_path / "s"
    values = {f"k{i}": i for i in range(keys)}
    with atlas.Atlas.create(path) as s:
        s.create_dataset("d").set_attributes(values)
    monkeypatch.setattr(part, "parse_index", counting_parse)
    with atlas.Atlas.open(path, mode="r+") as s:
        s.create_dataset("e").set_attribute("k1", -1)
        s["d"].set_attribute("k5", "five")  # another kind: this key is re-encoded by the merge
        s["d"].set_attribute("new", 1.5)
        s.flush()
        assert len(s.session.state().base.parts) == 1  # the flush merged the two parts
        assert walked[0] <= 4 * (keys + 2), walked
    values.update(k5="five", new=1.5)
    for search in (
        lambda r: r.find("k1999 == 1999") == ["d"] and r.find(k1=-1) == ["e"] and r.find(new=1.5) == ["d"],
        lambda r: r.catalog().loc["d"].to_dict() == values,
    ):
        walked[0] = 0
        with atlas.Atlas.open(path, mode="r") as r:
            assert search(r)
            assert r["d"].attributes() == values and r["e"].attributes() == {"k1": -1}
        assert walked[0] <= 4 * (keys + 2), walked
