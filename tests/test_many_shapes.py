"""Many datasets of different lengths in one view, on the real CMEMS profile file.

Twenty variants of ``GL_PR_BO_JLKU.nc`` cut differently along ``TIME`` (and shifted
by whole days, so their times overlap only in part) are stored as twenty datasets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import atlas
from atlas import errors
from atlas.xarray import from_ragged

ROOT = Path(__file__).resolve().parent.parent
GL = ROOT / "tests" / "data" / "GL_PR_BO_JLKU.nc"
CUTS = ([0], [1], [2], [0, 1], [1, 2], [0, 1, 2], [0, 2])


@pytest.fixture(scope="module")
def variants() -> dict[str, xr.Dataset]:
    with xr.open_dataset(GL) as src:
        src = src.load()
    out = {}
    for i in range(20):
        part = src.isel(TIME=list(CUTS[i % len(CUTS)]))
        out[f"p{i:02d}"] = part.assign_coords(TIME=part.TIME + np.timedelta64(i // len(CUTS), "D"))
    return out


@pytest.fixture
def store(tmp_path: Path, variants: dict[str, xr.Dataset]) -> atlas.Atlas:
    with atlas.Atlas.create(tmp_path / "gl.atlas") as st:
        for name, ds in variants.items():
            st.add_xr_dataset(ds, name)
        st.flush()
        yield st


def test_variants_really_differ(variants: dict[str, xr.Dataset]) -> None:
    assert {ds.sizes["TIME"] for ds in variants.values()} == {1, 2, 3}
    assert len({tuple(ds.TIME.values.tolist()) for ds in variants.values()}) == 20


def test_outer_join_equals_xr_concat(store: atlas.Atlas, variants: dict[str, xr.Dataset]) -> None:
    names = list(variants)
    got = store.to_xarray_many(names, join="outer")
    index = pd.Index(np.array(names, object), name="dataset")
    want = xr.concat(
        [store.to_xarray(n) for n in names], dim=index, join="outer", coords="all", data_vars="all", compat="equals"
    )
    xr.testing.assert_identical(got, want)
    assert got.sizes["TIME"] == len(set().union(*(ds.TIME.values.tolist() for ds in variants.values())))


def test_exact_join_still_names_the_difference(store: atlas.Atlas) -> None:
    with pytest.raises(errors.SchemaMismatchError, match="join='outer'"):
        store.to_xarray_many(["p00", "p01"])
    with pytest.raises(errors.InvalidArgumentError, match="join"):
        store.to_xarray_many(["p00"], join="inner")


def test_ragged_layout_round_trips(store: atlas.Atlas, variants: dict[str, xr.Dataset], tmp_path: Path) -> None:
    names = list(variants)
    ragged = store.to_xarray_many(names, layout="ragged")
    assert ragged["row_size"].attrs["sample_dimension"] == "obs"
    assert ragged["row_size"].values.tolist() == [variants[n].sizes["TIME"] for n in names]
    assert ragged.sizes["obs"] == sum(ds.sizes["TIME"] for ds in variants.values())
    assert ragged["FLU2"].dims == ("obs", "DEPTH")
    assert ragged["TRAJECTORY"].dims == ("dataset",)
    back = from_ragged(ragged)
    assert list(back) == names
    for n in names:
        xr.testing.assert_identical(back[n], store.to_xarray(n).load())
    with atlas.Atlas.create(tmp_path / "again.atlas") as again:
        for n, ds in back.items():
            again.add_xr_dataset(ds, n)
        again.flush()
        for n in names:
            xr.testing.assert_identical(again.to_xarray(n).load(), store.to_xarray(n).load())


def test_ragged_refuses_ambiguous_or_bad_input(store: atlas.Atlas, variants: dict[str, xr.Dataset]) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="sample_dim 'nope'"):
        store.to_xarray_many(["p00", "p03"], layout="ragged", sample_dim="nope")
    with pytest.raises(errors.InvalidArgumentError, match="exactly one count variable"):
        from_ragged(variants["p00"])


def test_grown_datasets_read_in_one_view(store: atlas.Atlas, variants: dict[str, xr.Dataset]) -> None:
    """Datasets grown by append_dim to different lengths: outer join and ragged see the new lengths."""
    store.add_xr_dataset(variants["p07"], "p00", append_dim="TIME")  # the same profile a week later
    store.flush()
    assert store.to_xarray("p00").sizes["TIME"] == 2
    got = store.to_xarray_many(["p00", "p01"], join="outer")
    assert got.sizes["TIME"] == 3
    assert store.to_xarray_many(["p00", "p01"], layout="ragged")["row_size"].values.tolist() == [2, 1]


def test_outer_and_ragged_are_lazy_in_blocks_of_datasets(
    store: atlas.Atlas, variants: dict[str, xr.Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    import dask

    from atlas.xarray import many

    monkeypatch.setattr(many, "BLOCK_DATASETS", 7)
    names = list(variants)
    outer = store.to_xarray_many(names, join="outer")
    assert outer["FLU2"].chunks[0] == (7, 7, 6)  # one task per 7 datasets
    ragged = store.to_xarray_many(names, layout="ragged")
    counts = [variants[n].sizes["TIME"] for n in names]
    assert ragged["FLU2"].chunks[0] == (sum(counts[:7]), sum(counts[7:14]), sum(counts[14:]))
    graph = pickle.loads(pickle.dumps(ragged["FLU2"].data))  # names the store by location, not a handle
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(graph.compute(), np.concatenate([variants[n].FLU2.values for n in names]))
    store.add_xr_dataset(variants["p00"], "p00", mode="w")  # unflushed: read eagerly from this handle
    assert isinstance(store.to_xarray_many(names, join="outer")["FLU2"].data, np.ndarray)
