"""Lazy ATLAS graphs computed in other processes: dask's processes scheduler and a local cluster."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import atlas  # noqa: E402
import atlas.xarray as ax  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "s.atlas"
    ds = xr.Dataset(
        {
            "temp": (
                ("time", "depth"),
                np.random.default_rng(0).standard_normal((40, 12)).astype("float32"),
                {"units": "degC"},
            ),
            "label": ("time", np.array([f"obs{i}" for i in range(40)], dtype=object)),
            "when": ("time", np.arange(40).astype("M8[s]")),
        },
        coords={"time": np.arange(40), "depth": np.arange(12.0)},
        attrs={"title": "distributed"},
    )
    store = atlas.Atlas.create(path)
    ax.add_xr_dataset(store, ds, "d", chunks={"time": 10, "depth": 6})
    store.close()
    return path, ds


def test_processes_scheduler_computes_the_lazy_graph(saved):
    path, ds = saved
    lazy = ax.to_xarray(atlas.Atlas.open(path, mode="r"), "d")
    assert lazy.temp.data.npartitions == 8 and lazy.label.data.npartitions == 4
    opened = xr.open_dataset(path, engine="atlas", group="d", chunks={})
    with dask.config.set(scheduler="processes", num_workers=2):
        got, opened = dask.compute(lazy, opened)  # one process pool for both
    xr.testing.assert_identical(ds, got)
    xr.testing.assert_identical(ds, opened)


def test_local_process_cluster_reads_and_writes(saved, tmp_path):
    path, ds = saved
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        lazy = ax.to_xarray(atlas.Atlas.open(path, mode="r"), "d")
        xr.testing.assert_identical(ds, lazy.compute())
        opened = xr.open_dataset(path, engine="atlas", group="d", chunks={})
        xr.testing.assert_identical(ds, opened.compute())
        # the chunks were read in the worker processes, through their own handle caches
        cached = client.run(lambda: len(__import__("atlas.xarray").xarray.HANDLE_CACHE))
        assert len(cached) == 2 and sum(cached.values()) >= 1
        # streaming a cluster-backed dask dataset into a store: blocks computed by the workers
        out = atlas.Atlas.create(tmp_path / "out.atlas")
        ax.add_xr_dataset(out, opened.chunk({"time": 10}), "copy")
        out.flush()
        xr.testing.assert_identical(ds, ax.to_xarray(out, "copy").compute())
