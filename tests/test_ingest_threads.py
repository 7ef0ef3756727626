"""``atlas.ingest`` on dask workers that run several tasks at once, one per thread.

netCDF-C and HDF5 are not thread-safe: a process whose threads open, read and
close NetCDF files at the same time crashes (a segmentation fault or a bus error,
with xarray's own ``open_dataset`` too).  A dask worker runs one task per thread,
so each worker process stages one source file at a time
(``atlas.distributed.task._FILES``); the store must come out as a single-process
``atlas create`` makes it, with no task retried.
"""

from __future__ import annotations

from pathlib import Path

import pytest

xr = pytest.importorskip("xarray")
distributed = pytest.importorskip("distributed")

from test_ingest_distributed import _make, _new_store, assert_same_store  # noqa: E402

import atlas  # noqa: E402
from atlas.cli import main  # noqa: E402


def test_a_worker_of_several_threads_stores_every_file(tmp_path):
    corpus = _make(tmp_path / "src", 96)
    reference = tmp_path / "ref.atlas"
    assert main(["create", str(corpus), str(reference), "-j", "0", "-q"]) == 0
    path = _new_store(tmp_path / "threads.atlas")
    with (
        distributed.LocalCluster(
            processes=True, n_workers=1, threads_per_worker=4, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        worker = next(iter(client.scheduler_info()["workers"].values()))
        report = atlas.ingest([corpus], path, client=client, batch=4)
        # the worker that ran them is the one started: none died and was replaced
        assert [w["id"] for w in client.scheduler_info()["workers"].values()] == [worker["id"]]
    assert report.datasets == 96 and not report.failed
    with atlas.Atlas.open(path, "r") as got:
        assert got.verify() == []
        assert_same_store(got, Path(reference))
