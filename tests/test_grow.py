"""Growing arrays and datasets: resize_array, append_array, append_dim, mode="w", padded bulk reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import atlas
from atlas import errors

ROOT = Path(__file__).resolve().parent.parent
GL = ROOT / "tests" / "data" / "GL_PR_BO_JLKU.nc"


@pytest.fixture
def store(tmp_path: Path) -> atlas.Atlas:
    with atlas.Atlas.create(tmp_path / "s.atlas") as st:
        yield st


@pytest.fixture(scope="module")
def profile() -> xr.Dataset:
    with xr.open_dataset(GL) as ds:
        return ds.load()


def _segments_written(store: atlas.Atlas) -> int:
    return sum(len(f.segments) for f in store.session.state().base.families.values())


def test_append_grows_and_keeps_old_cells(store: atlas.Atlas) -> None:
    ds = store.create_dataset("a")
    ds.define_array("x", "float32", ["t", "z"], [5, 3], chunk_shape=[2, 2])
    ds.write_array("x", [0, 0], np.arange(15, dtype="float32").reshape(5, 3))
    store.flush()
    assert ds.append_array("x", np.full((2, 3), 100, "float32")) == (5, 0)
    store.flush()
    want = np.vstack([np.arange(15, dtype="float32").reshape(5, 3), np.full((2, 3), 100, "float32")])
    np.testing.assert_array_equal(ds.read_array("x"), want)
    assert ds.array_meta("x")["shape"] == [7, 3]
    assert ds.array_stats("x") == {"row_count": 21, "null_count": 0, "min": 0.0, "max": 100.0}


def test_grow_reads_fill_and_counts_nulls(store: atlas.Atlas) -> None:
    ds = store.create_dataset("a")
    ds.define_array("k", "int32", ["t"], [3], chunk_shape=[2], fill_value=-1)
    ds.define_array("i", "int16", ["t"], [3], chunk_shape=[2])  # no fill: unwritten cells are tracked
    ds.write_array("k", [0], np.array([5, 6, 7], "int32"))
    ds.write_array("i", [0], np.array([5, 6, 7], "int16"))
    store.flush()
    ds.resize_array("k", [6])
    ds.resize_array("i", [6])
    np.testing.assert_array_equal(ds.read_array("k"), [5, 6, 7, -1, -1, -1])
    np.testing.assert_array_equal(ds.read_array("i"), [5, 6, 7, 0, 0, 0])
    for name in ("k", "i"):
        assert ds.array_stats(name) == {"row_count": 6, "null_count": 3, "min": 5, "max": 7}
    store.flush()
    assert ds.array_stats("i")["null_count"] == 3


def test_shrink_needs_allow_shrink_and_forgets_removed_cells(store: atlas.Atlas) -> None:
    ds = store.create_dataset("a")
    ds.define_array("x", "float64", ["t"], [6], chunk_shape=[4])
    ds.write_array("x", [0], np.array([1, 2, 3, 4, 500, -500], "float64"))
    store.flush()
    with pytest.raises(errors.ShrinkError, match="allow_shrink=True") as info:
        ds.resize_array("x", [3])
    assert isinstance(info.value, ValueError)
    assert ds.array_meta("x")["shape"] == [6]
    ds.resize_array("x", [3], allow_shrink=True)
    assert ds.array_stats("x") == {"row_count": 3, "null_count": 0, "min": 1.0, "max": 3.0}
    store.flush()
    ds.resize_array("x", [6])  # the dropped cells must not come back
    np.testing.assert_array_equal(ds.read_array("x"), [1, 2, 3, np.nan, np.nan, np.nan])
    store.flush()
    assert ds.array_stats("x") == {"row_count": 6, "null_count": 3, "min": 1.0, "max": 3.0}


def test_resize_and_append_refuse_bad_input_and_change_nothing(store: atlas.Atlas) -> None:
    ds = store.create_dataset("a")
    ds.define_array("x", "int32", ["t", "z"], [2, 3])
    for bad in ([2], [2, -1], [2, 3, 4]):
        with pytest.raises(errors.InvalidArgumentError):
            ds.resize_array("x", bad)
    with pytest.raises(errors.SelectionError, match="along axis 1"):
        ds.append_array("x", np.zeros((1, 4), "int32"))
    with pytest.raises(errors.InvalidArgumentError, match="axis 2"):
        ds.append_array("x", np.zeros((1, 3), "int32"), axis=2)
    with pytest.raises(errors.DTypeError):
        ds.append_array("x", np.zeros((1, 3), "float64") + 0.5)
    assert ds.array_meta("x")["shape"] == [2, 3]
    ds.define_array("s", "int8", [], [])
    with pytest.raises(errors.InvalidArgumentError, match="0-D"):
        ds.append_array("s", np.zeros((), "int8"))


def test_growth_on_inner_axis_and_strings(store: atlas.Atlas) -> None:
    ds = store.create_dataset("a")
    ds.define_array("s", "string", ["t", "z"], [2, 2], chunk_shape=[1, 3])
    ds.write_array("s", [0, 0], np.array([["a", "b"], ["c", "d"]], object))
    store.flush()
    ds.append_array("s", np.array([["e"], ["f"]], object), axis=1)
    ds.append_array("s", np.array([["g", "h", "i"]], object), axis=0)
    store.flush()
    assert ds.read_array("s").tolist() == [["a", "b", "e"], ["c", "d", "f"], ["g", "h", "i"]]
    assert ds.array_stats("s") == {"row_count": 9, "null_count": 0, "min": "a", "max": "i"}


def test_append_costs_the_touched_chunks_only(store: atlas.Atlas) -> None:
    ds = store.create_dataset("a")
    ds.define_array("x", "float32", ["t", "z"], [1000, 24], chunk_shape=[100, 24])
    ds.write_array("x", [0, 0], np.ones((1000, 24), "float32"))
    store.flush()
    engine = store.session.state().engine("x")
    ds.append_array("x", np.zeros((1, 24), "float32"))
    assert sorted(engine.pending[store.session.state().dataset("a").arrays["x"].slot]) == [10]


def test_read_across_gives_each_shape_and_stacked_pads(store: atlas.Atlas) -> None:
    for i, n in enumerate([3, 5, 2]):
        ds = store.create_dataset(f"p{i}")
        ds.define_array("x", "float32", ["t"], [0], chunk_shape=[2])
        ds.append_array("x", np.arange(n, dtype="float32") + 10 * i)
        ds.define_array("k", "int32", ["t"], [n], fill_value=-9)
        ds.write_array("k", [0], np.arange(n, dtype="int32"))
    store.flush()
    names = ["p0", "p1", "p2"]
    assert [a.shape for a in store.read_array_across("x", names)] == [(3,), (5,), (2,)]
    with pytest.raises(errors.SchemaMismatchError, match=r"dataset 'p1'.*pad=True"):
        store.read_array_across_stacked("x", names)
    nan = np.nan
    np.testing.assert_array_equal(
        store.read_array_across_stacked("x", names, pad=True),
        [[0, 1, 2, nan, nan], [10, 11, 12, 13, 14], [20, 21, nan, nan, nan]],
    )
    np.testing.assert_array_equal(
        store.read_array_across_stacked("k", names, [1], [3], pad=True), [[1, 2, -9], [1, 2, 3], [1, -9, -9]]
    )
    with pytest.raises(errors.InvalidArgumentError, match="pad must be a bool"):
        store.read_array_across_stacked("k", names, pad="yes")


# -- xarray --------------------------------------------------------------------------------------


def test_append_dim_rebuilds_the_file(store: atlas.Atlas, profile: xr.Dataset) -> None:
    store.add_xr_dataset(profile.isel(TIME=[0]), "gl")
    store.flush()
    profile.isel(TIME=[1]).atlas.write(store, "gl", append_dim="TIME")
    store.flush()
    store.add_xr_dataset(profile.isel(TIME=[2]), "gl", append_dim="TIME")
    store.flush()
    xr.testing.assert_identical(store.to_xarray("gl").load(), profile)


def test_append_dim_refuses_differences_and_changes_nothing(store: atlas.Atlas, profile: xr.Dataset) -> None:
    store.add_xr_dataset(profile.isel(TIME=[0]), "gl")
    store.flush()
    other = profile.isel(TIME=[1]).assign(TRAJECTORY=profile.TRAJECTORY.copy(data=np.array(b"XXXX")))
    with pytest.raises(errors.SchemaMismatchError, match="'TRAJECTORY' has no dimension 'TIME'"):
        store.add_xr_dataset(other, "gl", append_dim="TIME")
    with pytest.raises(errors.SchemaMismatchError, match="along 'DEPTH'"):
        store.add_xr_dataset(profile.isel(TIME=[1], DEPTH=[0]), "gl", append_dim="TIME")
    with pytest.raises(errors.SchemaMismatchError, match="lacks"):
        store.add_xr_dataset(profile.isel(TIME=[1]).drop_vars("FLU2"), "gl", append_dim="TIME")
    with pytest.raises(errors.InvalidArgumentError, match="not a dimension"):
        store.add_xr_dataset(profile.isel(TIME=[1]), "gl", append_dim="depth")
    with pytest.raises(errors.DatasetNotFoundError, match="write it first"):
        store.add_xr_dataset(profile, "nope", append_dim="TIME")
    assert not store.has_pending_changes
    xr.testing.assert_identical(store.to_xarray("gl").load(), profile.isel(TIME=[0]))


def test_failing_append_rolls_back(store: atlas.Atlas, profile: xr.Dataset) -> None:
    store.add_xr_dataset(profile.isel(TIME=[0]), "gl")
    store.flush()
    bad = profile.isel(TIME=[1]).copy()
    bad["DC_REFERENCE"] = bad["DC_REFERENCE"].copy(data=np.array(["str, not bytes"], object))
    with pytest.raises(errors.SchemaMismatchError, match="appended str objects, stored bytes"):
        store.add_xr_dataset(bad, "gl", append_dim="TIME")
    assert not store.has_pending_changes
    xr.testing.assert_identical(store.to_xarray("gl").load(), profile.isel(TIME=[0]))
    store.add_xr_dataset(profile.isel(TIME=[1, 2]), "gl", append_dim="TIME")
    xr.testing.assert_identical(store.to_xarray("gl").load(), profile)


def test_mode_w_replaces_in_one_commit(store: atlas.Atlas, profile: xr.Dataset) -> None:
    store.add_xr_dataset(profile, "gl")
    store.flush()
    generation = store.generation
    with pytest.raises(errors.DatasetExistsError):
        store.add_xr_dataset(profile, "gl")
    with pytest.raises(errors.InvalidArgumentError, match="mode"):
        store.add_xr_dataset(profile, "gl", mode="a")
    store.add_xr_dataset(profile.isel(TIME=[2]), "gl", mode="w")
    store.flush()
    assert store.generation == generation + 1
    xr.testing.assert_identical(store.to_xarray("gl").load(), profile.isel(TIME=[2]))
    profile.atlas.write(store, "gl", mode="w")
    xr.testing.assert_identical(store.to_xarray("gl").load(), profile)


def test_verify_is_clean_after_growing_a_stored_edge_chunk(store: atlas.Atlas) -> None:
    """The old edge chunk stays in its segment, superseded: verify must not decode it at the new extent."""
    ds = store.create_dataset("a")
    ds.define_array("x", "float64", ["t", "z"], [3, 4], chunk_shape=[8, 4])
    ds.write_array("x", [0, 0], np.ones((3, 4)))
    store.flush()
    ds.append_array("x", np.zeros((2, 4)))
    store.flush()
    assert store.verify() == []
    store.compact(grace_period=0)
    assert store.verify() == []
    np.testing.assert_array_equal(ds.read_array("x"), np.vstack([np.ones((3, 4)), np.zeros((2, 4))]))


def test_incremental_family_index_equals_a_full_rebuild(store: atlas.Atlas) -> None:
    """After commits that append segments the index is merged, not rebuilt: it must hold the same records."""
    from atlas.engine.family_index import FamilyIndex

    ds = store.create_dataset("a")
    ds.define_array("x", "int32", ["t"], [0], chunk_shape=[3])
    state = store.session.state()
    for step in range(12):
        ds.append_array("x", np.arange(2, dtype="int32") + step)
        if step == 6:
            store.compact(grace_period=0)  # rewrites the segment list: the next index is built whole
        store.flush()
        engine = state.engine("x")
        got = engine.index()
        want = FamilyIndex(engine.committed_tables())
        assert np.array_equal(got.table, want.table) and np.array_equal(got.seg, want.seg)
    assert engine._committed is not None and engine._committed[1] == len(engine.family.segments)
    np.testing.assert_array_equal(ds.read_array("x"), np.concatenate([np.arange(2) + s for s in range(12)]))
