"""A flush of a batch of new datasets made alike (the fast path of the commit's rows)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from faults import FaultyBackend, patched_resolve

import atlas
from atlas import errors
from atlas.txn import commit


def entry(i: int) -> tuple[str, dict, dict]:
    temp = np.arange(24, dtype=np.float32) + np.float32(i)
    if i % 7 == 0:
        temp[3] = np.nan
    return f"p{i:05d}", {"temp": (["depth"], temp)}, {"lat": i / 4, "platform": f"f{i % 5}"}


def pending(store: atlas.Atlas) -> tuple[dict, dict]:
    """The pending datasets (stats included) and the identity of their objects."""
    st = store._st
    records = {name: copy.deepcopy(ds) for name, ds in st.pending.items()}
    ids = {name: (id(ds), {a: id(m) for a, m in ds.arrays.items()}) for name, ds in st.pending.items()}
    return records, ids


@pytest.mark.parametrize("verb", ["build", "put", "commit"])
def test_a_failed_flush_of_a_batch_made_alike_leaves_it_pending_without_stats(tmp_path, monkeypatch, verb):
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets([entry(0)])
    with patched_resolve(monkeypatch, lambda inner: FaultyBackend(inner, expose_map=False)) as made:
        store = atlas.Atlas.open(tmp_path / "s")
    store.add_datasets([entry(i) for i in range(1, 300)])
    st = store._st
    names = sorted(st.pending)
    # the batch takes the fast path: every row is its pending dataset
    assert commit._created_alike(names, [st.pending[n] for n in names], st.base.generation + 1) is not None
    before = pending(store)

    def fail(*args, **kwargs):
        raise errors.BackendError("injected failure while building the catalogue part")

    with monkeypatch.context() as m:
        if verb == "build":  # the rows' stats are set, then the catalogue part fails
            m.setattr(commit, "catalogue_files", fail)
        else:
            made[-1].arm(1, "error", verb)
        with pytest.raises(errors.BackendError):
            store.flush()
    assert pending(store) == before
    assert all(m.stats is None for ds in st.pending.values() for m in ds.arrays.values())
    made[-1].disarm()
    store.flush()
    store.close()
    with atlas.Atlas.open(tmp_path / "s") as again:
        assert again.list_datasets() == [f"p{i:05d}" for i in range(300)]
        for i in (1, 7, 299):
            name, arrays, attrs = entry(i)
            ds = again.open_dataset(name)
            values = arrays["temp"][1]
            np.testing.assert_array_equal(ds.read_array("temp"), values)
            stats = again._st.snapshot.get(name).arrays["temp"].stats  # as committed
            assert (stats.row_count, stats.null_count) == (24, int(np.isnan(values).sum()))
            assert (stats.minimum, stats.maximum) == (float(np.nanmin(values)), float(np.nanmax(values)))
            assert ds.get_attribute("platform") == attrs["platform"]


def test_batches_not_made_alike_take_the_general_path(tmp_path):
    """Deleted, changed, several arrays or arrays with stats: no fast path, same commit."""
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets([entry(i) for i in range(3)])
        st = store._st
        gen = st.base.generation + 1
        store.add_datasets([entry(i) for i in range(3, 6)])
        names = sorted(st.pending)
        assert commit._created_alike(names, [st.pending[n] for n in names], gen) is not None
        store.delete_dataset("p00001")
        names = sorted(st.pending)
        assert commit._created_alike(names, [st.pending[n] for n in names], gen) is None
        store.flush()
        store.add_datasets([("two", {"temp": (["d"], np.zeros(2, np.float32)), "psal": (["d"], np.ones(2))}, {})])
        store.add_datasets([entry(9)])
        names = sorted(st.pending)
        assert commit._created_alike(names, [st.pending[n] for n in names], st.base.generation + 1) is None
    with atlas.Atlas.open(tmp_path / "s") as again:
        assert again.list_datasets() == ["p00000", "p00002", "p00003", "p00004", "p00005", "p00009", "two"]
        np.testing.assert_array_equal(again.open_dataset("two").read_array("psal"), np.ones(2))


@pytest.mark.parametrize("odd", ["none", "written", "two chunks", "other shape"])
def test_staged_chunks_of_a_batch_made_alike_stack_as_one_by_one(tmp_path, monkeypatch, odd):
    """The one-group path of stack_staged gives the groups of its per-slot loop."""
    from atlas.engine import staged

    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets([entry(i) for i in range(40)])
        if odd == "written":  # a partly written chunk: left to the one-by-one path
            ds = store.create_dataset("q")
            ds.define_array("temp", "float32", ["depth"], [24])
            ds.write_array("temp", [0], np.ones(5, np.float32))
        elif odd == "two chunks":
            ds = store.create_dataset("q")
            ds.define_array("temp", "float32", ["depth"], [24], chunk_shape=[12])
            ds.write_array("temp", [0], np.ones(24, np.float32))
        elif odd == "other shape":
            store.add_datasets([("q", {"temp": (["depth"], np.ones(5, np.float32))}, {})])
        st = store._st
        metas = st.pending_metas()["temp"]
        engine = st.engine("temp")
        assert (staged.staged_alike(metas, engine.pending) is not None) == (odd == "none")
        fast = engine.stack_staged(metas, "zstd")
        monkeypatch.setattr(staged, "staged_alike", lambda *args: None)
        slow = engine.stack_staged(metas, "zstd")
        assert len(fast) == len(slow) >= 1
        for a, b in zip(fast, slow):
            np.testing.assert_array_equal(a.slots, b.slots)
            np.testing.assert_array_equal(a.values, b.values)
            np.testing.assert_array_equal(a.nulls, b.nulls)
            assert (a.minimum, a.maximum, a.raw) == (b.minimum, b.maximum, b.raw)
        store.discard()


def test_rows_made_alike_are_told_by_one_helper_for_the_commit_and_the_part(monkeypatch):
    """``alike_arrays``: no tombstone, one version, one array per dataset, one array name."""
    from atlas.catalog import build, encoding
    from atlas.metadata import ArrayMeta, DatasetMeta

    def ds(version: int = 3, arrays: tuple[str, ...] = ("temp",)) -> DatasetMeta:
        return DatasetMeta(1, version, {}, {a: ArrayMeta(7, "float32", ("d",), (2,), (2,)) for a in arrays})

    alike = [ds(), ds()]
    version, name, metas = encoding.alike_arrays(alike)
    assert (version, name) == (3, "temp") and [id(m) for m in metas] == [id(d.arrays["temp"]) for d in alike]
    for odd in (None, ds(version=4), ds(arrays=("temp", "psal")), ds(arrays=("psal",)), ds(arrays=())):
        assert encoding.alike_arrays([ds(), odd]) is None
    assert encoding.alike_arrays([]) is None
    # the commit's rows and the part's records both ask it (once per part, not per block)
    calls = []
    real = encoding.alike_arrays
    monkeypatch.setattr(commit, "alike_arrays", lambda rows: calls.append("commit") or real(rows))
    monkeypatch.setattr(build, "alike_arrays", lambda rows: calls.append("part") or real(rows))
    assert commit._created_alike(["a", "b"], alike, 3) is not None
    assert commit._created_alike(["a", "b"], alike, 4) is None  # another generation
    rows = [(f"p{i:04d}", DatasetMeta(i, 3, {}, {"temp": ArrayMeta(i, "float32", ("d",), (2,), (2,))}))
            for i in range(3 * build.BLOCK_ROWS)]  # fmt: skip
    build.write_part(rows, "zstd", 3, b"\x01" * 16)
    assert calls == ["commit", "commit", "part"]


def test_a_batch_made_alike_committed_after_a_conflict_has_the_stats_of_its_cells(tmp_path, monkeypatch):
    """The first attempt hands the part writer its rows' float stats (FloatStats), then
    meets another writer's commit; rebased, the rows are copies of an older version:
    the commit that lands stores every row's own stats, all-NaN rows and extremes too."""
    handed = []
    catalogue_files = commit.catalogue_files

    def spy(state, new, rows, token, now_ms, float_stats=None):
        handed.append(float_stats is not None)
        return catalogue_files(state, new, rows, token, now_ms, float_stats)

    monkeypatch.setattr(commit, "catalogue_files", spy)
    path = tmp_path / "s"
    with atlas.Atlas.create(path) as first:
        first.add_datasets([entry(0)])
    store, other = atlas.Atlas.open(path), atlas.Atlas.open(path)
    batch = [entry(i) for i in range(1, 60)]
    batch[4][1]["temp"][1][:] = np.nan  # every cell null: no extremes
    batch[5][1]["temp"][1][2] = -np.inf
    store.add_datasets(batch)
    other.add_datasets([entry(1000)])
    other.flush()
    with pytest.raises(errors.ConflictError):
        store.flush()
    store.refresh()
    store.flush()
    assert handed[-2:] == [True, False]  # the first attempt had them, the rebased one not
    other.close()
    store.close()
    with atlas.Atlas.open(path) as again:
        for name, arrays, _ in batch:
            values = arrays["temp"][1]
            stats = again._st.snapshot.get(name).arrays["temp"].stats
            assert stats.row_count == 24 and stats.null_count == int(np.isnan(values).sum())
            if np.isnan(values).all():
                assert stats.minimum is None and stats.maximum is None
            else:
                assert (stats.minimum, stats.maximum) == (float(np.nanmin(values)), float(np.nanmax(values)))
        assert again.find("temp.min < -1e300") == ["p00006"]


def test_a_batch_made_alike_written_again_with_the_few_rows_it_replaces_has_the_stats_of_its_cells(
    tmp_path, monkeypatch
):
    """A commit whose part takes in the few rows of the newest parts writes them again
    with its own rows; when its rows replace every one of them, the part's rows are the
    commit's very rows and the float stats it hands over are theirs: used, and right."""
    from atlas.catalog import build

    used = []
    describes = build.FloatStats.describes

    def spy(self, arrays):
        used.append(describes(self, arrays))
        return used[-1]

    monkeypatch.setattr(build.FloatStats, "describes", spy)
    path = tmp_path / "s"
    old = [entry(i) for i in range(1, 9)]
    with atlas.Atlas.create(path) as store:
        store.add_datasets(old)
    with atlas.Atlas.open(path, mode="r+") as store:
        for name, _, _ in old:
            store.delete_dataset(name)
        store.flush()
    batch = [(name, {"temp": (["depth"], -3 * arrays["temp"][1])}, attrs) for name, arrays, attrs in old]
    batch[2][1]["temp"][1][:] = np.nan  # every cell null: no extremes
    used.clear()
    with atlas.Atlas.open(path, mode="r+") as store:
        store.add_datasets(batch)
        store.flush()
        assert len(store._st.base.parts) == 1  # the three parts written again as one
    assert used == [True]
    with atlas.Atlas.open(path) as again:
        assert again.verify() == []
        for name, arrays, _ in batch:
            values = arrays["temp"][1]
            stats = again._st.snapshot.get(name).arrays["temp"].stats
            assert stats.null_count == int(np.isnan(values).sum())
            if np.isnan(values).all():
                assert stats.minimum is None and stats.maximum is None
            else:
                assert (stats.minimum, stats.maximum) == (float(np.nanmin(values)), float(np.nanmax(values)))
        assert again.find("temp.max > -4") == ["p00001"] and again.find("temp.max < -20") == ["p00007", "p00008"]
