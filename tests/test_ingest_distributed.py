"""``atlas.ingest``: workers write segments, this process commits metadata only.

Real NetCDF files (the generated CF profile corpus of benchmarks/corpus.py), a real
local process pool, a real ``distributed.LocalCluster`` with process workers, and
S3 on the moto emulator.  Every stored dataset is compared with a single-process
``atlas create`` of the same files.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pickle
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
distributed = pytest.importorskip("distributed")

import atlas  # noqa: E402
from atlas.cli import main  # noqa: E402
from atlas.errors import IngestError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "workers"))  # spawned workers inherit sys.path

import ingest_sources  # noqa: E402

N_FILES = 40


def _corpus_module():
    spec = importlib.util.spec_from_file_location("atlas_bench_corpus", ROOT / "benchmarks" / "corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make(root: Path, n: int) -> Path:
    _corpus_module().make_corpus(root, n, subdirs=2)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("corpus"), N_FILES)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """The same files stored by today's single-process ``atlas create -j 0``."""
    path = tmp_path_factory.mktemp("ref") / "ref.atlas"
    assert main(["create", str(corpus), str(path), "-j", "0", "-q"]) == 0
    return path


@pytest.fixture(scope="module")
def cluster_client():
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def assert_same_store(got: atlas.Atlas, ref_path: Path) -> None:
    ref = atlas.Atlas.open(ref_path, "r")
    assert sorted(got.list_datasets()) == sorted(ref.list_datasets())
    for name in ref.list_datasets():
        xr.testing.assert_identical(ref.to_xarray(name), got.to_xarray(name))
    ref.close()


def _tree_bytes(path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def assert_same_records(got: atlas.Atlas, ref_path: Path) -> None:
    """Attributes, array schemas and stats as a single-process ingest stores them; ids 1..n."""
    with atlas.Atlas.open(ref_path, "r") as ref:
        want, have = ref.session.state().snapshot, got.session.state().snapshot
        assert sorted(have.names()) == sorted(want.names())
        ids = []
        for name in want.names():
            a, b = want.get(name), have.get(name)
            ids.append(b.id)
            assert b.attributes == a.attributes
            assert {k: {**vars(m), "slot": 0} for k, m in b.arrays.items()} == {
                k: {**vars(m), "slot": 0} for k, m in a.arrays.items()
            }
        assert sorted(ids) == list(range(1, len(ids) + 1))


def assert_no_transport_files(store: atlas.Atlas) -> None:
    """Every catalogue file is a part the commit object lists (or retires); no lease is left."""
    base = store.session.state().base
    listed = {p.path for p in base.parts} | {r.path for r in base.retired if r.dir == "_catalog"}
    root = Path(store.location)
    assert {f"_catalog/{p.name}" for p in (root / "_catalog").iterdir()} == listed
    assert not list(root.rglob("*.lease"))


def _new_store(path) -> str:
    atlas.Atlas.create(path).close()
    return str(path)


def test_process_pool_ingest_equals_single_process(corpus, reference, tmp_path):
    path = _new_store(tmp_path / "pool.atlas")
    seen = []
    report = atlas.ingest([corpus], path, workers=2, batch=7, progress=lambda label, note: seen.append(note))
    assert report.datasets == N_FILES and len(report.stored) == N_FILES and not report.failed
    # commits as the fragments arrive (one at a time, beside the tasks), the last one at the end
    assert seen == [""] * N_FILES and report.commits >= 2
    got = atlas.Atlas.open(path, "r")
    assert got.verify() == [] and got.generation == report.commits
    snapshot = got.session.state().snapshot
    last = [n for n in snapshot.names() if snapshot.get(n).version == report.commits]
    assert 0 < len(last) <= 2 * 7  # the commit left for the end holds the last tasks' files only
    assert_same_store(got, reference)
    # the client received names and file references only: each task costs one segment
    # reference per array name (17 here), so small batches cost a larger share (1.3% in
    # batches of 7, 0.5% in batches of 20: see the test below)
    assert 0 < report.received_bytes <= 0.02 * _tree_bytes(path)


def test_local_cluster_ingest_equals_single_process(corpus, reference, tmp_path, cluster_client):
    path = _new_store(tmp_path / "cluster.atlas")
    report = atlas.ingest([corpus], path, client=cluster_client, batch=5)
    assert report.datasets == N_FILES and report.commits >= 2
    got = atlas.Atlas.open(path, "r")
    assert got.verify() == [] and got.generation == report.commits
    snapshot = got.session.state().snapshot
    last = [n for n in snapshot.names() if snapshot.get(n).version == report.commits]
    # the commit left for the end: the files that arrived while the commit before it ran
    assert 0 < len(last) < N_FILES
    assert_same_store(got, reference)


def test_array_bytes_never_reach_the_client(tmp_path, cluster_client):
    path = _new_store(tmp_path / "big.atlas")
    sources = [functools.partial(ingest_sources.big, f"b{i}", i) for i in range(4)]
    report = atlas.ingest(sources, path, client=cluster_client, batch=1)
    assert report.datasets == 4 and report.stored_bytes > 4 * 8 * 500_000 * 0.8
    assert report.received_bytes <= 0.01 * report.stored_bytes
    got = atlas.Atlas.open(path, "r")
    for i in range(4):
        want = ingest_sources.big(f"b{i}", i)[0][1]
        xr.testing.assert_identical(want, got.to_xarray(f"b{i}"))


def test_killed_worker_is_retried_and_leaves_no_trace(tmp_path, cluster_client, corpus):
    path = _new_store(tmp_path / "killed.atlas")
    marker = tmp_path / "died"
    sources = [functools.partial(ingest_sources.die_once, str(marker), "survivor"), *sorted(corpus.rglob("*.nc"))[:4]]
    report = atlas.ingest(sources, path, client=cluster_client, batch=1)
    assert marker.exists()  # a worker process did die in the middle of the ingest
    assert report.datasets == 5 and not report.failed
    got = atlas.Atlas.open(path, "r")
    assert got.verify() == []
    assert len(got.list_datasets()) == 5 and "survivor" in got.list_datasets()
    xr.testing.assert_identical(got.to_xarray("survivor"), ingest_sources.die_once(str(marker), "survivor")[0][1])


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_process_pool_retries_a_worker_that_died(tmp_path, corpus, reference, how):
    path = _new_store(tmp_path / "died.atlas")
    marker = tmp_path / "died"
    files = sorted(corpus.rglob("*.nc"))[:5]
    die = functools.partial(ingest_sources.die_once, str(marker), "survivor", how)
    # the dying source in the middle: a task before it and one beside it are in flight
    report = atlas.ingest([files[0], files[1], die, *files[2:]], path, workers=2, batch=1)
    assert marker.exists()  # a worker process did die in the middle of the ingest
    assert report.datasets == 6 and len(report.stored) == 6 and not report.failed and report.commits >= 1
    got = atlas.Atlas.open(path, "r+")
    assert got.verify() == [] and got.generation == report.commits
    # identical to a single-process ingest of the same sources
    single = atlas.Atlas.create(tmp_path / "single.atlas")
    single.add_xr_dataset(die()[0][1], "survivor")
    single.flush()
    ref = atlas.Atlas.open(reference, "r")
    # a file named alone is named by its stem; in the reference, by its path below the corpus
    want = {f.stem: ref.to_xarray(f"{f.parent.name}%2F{f.stem}") for f in files}
    want["survivor"] = single.to_xarray("survivor")
    assert len(want) == 6 and sorted(got.list_datasets()) == sorted(want)
    for name, ds in want.items():
        xr.testing.assert_identical(ds, got.to_xarray(name))
    got.compact(grace_period=0)  # sweeps whatever the dead process had written
    assert got.verify() == [] and not list(Path(path).rglob("*.lease"))
    for name, ds in want.items():
        xr.testing.assert_identical(ds, got.to_xarray(name))


def test_a_queued_task_gets_no_strike_when_the_running_one_kills_its_worker(tmp_path, caplog):
    """One process: the task after the running one waits in the pool's queue; when the running one
    kills the process, only it counts as having run (it alone reruns alone), the queued one runs again as usual."""
    path = _new_store(tmp_path / "queued.atlas")
    marker = tmp_path / "died"
    sources = [functools.partial(ingest_sources.die_once, str(marker), "survivor"),
               functools.partial(ingest_sources.big, "a", 1, 20), functools.partial(ingest_sources.big, "b", 2, 20)]
    with caplog.at_level("WARNING", logger="atlas"):
        report = atlas.ingest(sources, path, workers=1, batch=1)
    assert marker.exists() and report.datasets == 3 and not report.failed
    died = [r.getMessage() for r in caplog.records if "worker process died while tasks" in r.getMessage()]
    assert len(died) == 1 and "while tasks 0 ran" in died[0]
    with atlas.Atlas.open(path, "r") as got:
        assert sorted(got.list_datasets()) == ["a", "b", "survivor"] and got.verify() == []


def test_process_pool_gives_up_on_a_task_that_always_kills_its_worker(tmp_path, corpus):
    from atlas.distributed.client import POOL_RETRIES

    path = _new_store(tmp_path / "doomed.atlas")
    counter = tmp_path / "attempts"
    files = sorted(corpus.rglob("*.nc"))[:3]
    doomed = functools.partial(ingest_sources.die_always, str(counter), "doomed")
    with pytest.raises(IngestError, match="worker process died each of the 4 times"):
        atlas.ingest([doomed, *files], path, workers=2, batch=1)
    assert len(counter.read_text().split()) == POOL_RETRIES + 1 == 4
    with atlas.Atlas.open(path, "r") as got:  # the files committed beside it stay, the doomed source is nowhere
        assert got.verify() == [] and "doomed" not in got.list_datasets() and len(got.list_datasets()) <= 3
    counter.unlink()
    path = _new_store(tmp_path / "doomed2.atlas")
    report = atlas.ingest([doomed, *files], path, workers=2, batch=1, skip_errors=True)
    assert len(counter.read_text().split()) == 4
    assert report.datasets == 3 and len(report.failed) == 1 and "died each of the 4 times" in report.failed[0][1]
    got = atlas.Atlas.open(path, "r")
    assert len(got.list_datasets()) == 3 and got.verify() == []


def test_worker_killed_mid_ingest(corpus, reference, tmp_path, cluster_client):
    path = _new_store(tmp_path / "kill.atlas")
    victim = sorted(cluster_client.run(os.getpid).values())[0]
    killed = []

    def kill_once(label, note):
        if not killed:  # while the other tasks run, take one worker process down hard
            killed.append(label)
            os.kill(victim, signal.SIGKILL)

    report = atlas.ingest([corpus], path, client=cluster_client, batch=2, progress=kill_once)
    assert killed and report.datasets == N_FILES and not report.failed
    store = atlas.Atlas.open(path, "r+")
    assert store.verify() == []
    assert_same_store(store, reference)
    store.compact(grace_period=0)  # sweeps whatever the dead worker had written
    assert store.verify() == [] and not list(Path(path).rglob("*.lease"))
    assert_same_store(store, reference)
    cluster_client.wait_for_workers(2, timeout=60)


def test_failed_files_skip_errors_client_death_and_resume(corpus, reference, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(corpus, src)
    (src / "broken.nc").write_bytes(b"not a netcdf file at all")
    path = _new_store(tmp_path / "s.atlas")
    # without skip_errors the bad file stops the ingest and nothing is committed
    with pytest.raises(IngestError, match=r"broken\.nc"):
        atlas.ingest([src], path, workers=2, batch=10)
    store = atlas.Atlas.open(path, "r")
    assert store.generation == 0 and store.list_datasets() == []

    # a client that dies before its commit leaves the store at its generation
    def die(label, note, seen=[]):  # noqa: B006 - a counter
        seen.append(label)
        if len(seen) == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atlas.ingest([src], path, workers=2, batch=4, skip_errors=True, progress=die)
    store = atlas.Atlas.open(path, "r+")
    assert store.generation == 0 and store.list_datasets() == []
    orphans = [p for p in Path(path).rglob("*.af")]
    assert orphans  # the workers did write segments, which no manifest references
    assert list(Path(path).rglob("*.cat"))  # and task parts, which no commit object lists
    store.compact(grace_period=0)
    assert not list(Path(path).rglob("*.af")) and not list(Path(path).rglob("*.lease"))
    assert not list(Path(path).rglob("*.cat"))
    store.close()

    # commits every fragment (commit_interval=0), then the client dies part way
    def die_late(label, note, seen=[]):  # noqa: B006 - a counter
        seen.append(label)
        if len(seen) == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atlas.ingest([src], path, workers=2, batch=4, skip_errors=True, commit_interval=0, progress=die_late)
    store = atlas.Atlas.open(path, "r")
    committed = len(store.list_datasets())
    assert store.generation >= 1 and 0 < committed < N_FILES and store.verify() == []
    # resume: the rest, skipping what exists; skip_errors reports the bad file
    report = atlas.ingest([src], path, workers=2, skip_existing=True, skip_errors=True)
    assert report.datasets == N_FILES - committed and len(report.existing) == committed
    assert [Path(f).name for f, _ in report.failed] == ["broken.nc"]
    got = atlas.Atlas.open(path, "r")
    assert got.verify() == []
    assert_same_store(got, reference)


def test_s3_local_cluster(corpus, reference, moto_s3, s3_bucket, cluster_client):
    url = f"s3://{s3_bucket}/ingest-{id(corpus)}"
    opts = moto_s3.options()
    atlas.Atlas.create(url, storage_options=opts).close()
    report = atlas.ingest([corpus], url, client=cluster_client, batch=8, storage_options=opts)
    assert report.datasets == N_FILES
    got = atlas.Atlas.open(url, "r", storage_options=opts)
    assert got.verify() == []
    assert_same_store(got, reference)


def test_another_writer_commits_meanwhile(tmp_path, monkeypatch):
    path = _new_store(tmp_path / "c.atlas")
    make = functools.partial(ingest_sources.with_concurrent_commit, path)
    report = atlas.ingest([functools.partial(make, "other", "mine")], path, workers=1)
    assert report.datasets == 1 and report.commits == 1
    got = atlas.Atlas.open(path, "r")
    assert sorted(got.list_datasets()) == ["mine", "other"] and got.verify() == []
    xr.testing.assert_identical(got.to_xarray("mine"), xr.Dataset({"v": ("x", np.arange(5.0))}))
    assert list(got.to_xarray("other").b.values) == [1.0, 1.0, 1.0]
    got.close()
    # a writer that takes more slots than the headroom left: refused, nothing of the ingest committed
    import atlas.txn.fragments as fragments

    monkeypatch.setattr(fragments, "SLOT_HEADROOM", 1)
    with pytest.raises(atlas.ConflictError, match="slot ranges are taken"):
        atlas.ingest([functools.partial(make, "other2", "mine2")], path, workers=1)
    got = atlas.Atlas.open(path, "r")
    assert sorted(got.list_datasets()) == ["mine", "other", "other2"] and got.verify() == []


def test_bad_arguments_change_nothing(tmp_path):
    path = _new_store(tmp_path / "a.atlas")
    with pytest.raises(ValueError, match="batch"):
        atlas.ingest([tmp_path], path, batch=0)
    with pytest.raises(ValueError, match="does not exist"):
        atlas.ingest([tmp_path / "nope.nc"], path)
    with pytest.raises(ValueError, match="source must be"):
        atlas.ingest([3], path)
    memory = atlas.Atlas.create("memory://ingest-test")
    with pytest.raises(ValueError, match="cannot reach this process's memory"):
        atlas.ingest([tmp_path], memory)
    memory.close()
    assert atlas.Atlas.open(path, "r").generation == 0
    assert pickle.loads(pickle.dumps(atlas.IngestReport())) == atlas.IngestReport()


def test_client_receives_at_most_one_percent_of_the_stored_bytes(corpus, reference, tmp_path, monkeypatch):
    """Records go through task parts on the store: the client gets names and file references."""
    from atlas.distributed.runner import Runner

    crossed = []  # every task result the client receives, as the pool pickles it
    results, call = Runner.results, Runner.call

    def counted_results(self, tasks, heartbeat, stops=None):
        for task, result, error in results(self, tasks, heartbeat, stops):
            if task is not None:
                crossed.append(len(pickle.dumps(result, pickle.HIGHEST_PROTOCOL)))
            yield task, result, error

    def counted_call(self, fn, arg):
        out = call(self, fn, arg)
        crossed.append(len(pickle.dumps(out, pickle.HIGHEST_PROTOCOL)))
        return out

    monkeypatch.setattr(Runner, "results", counted_results)
    monkeypatch.setattr(Runner, "call", counted_call)
    path = _new_store(tmp_path / "r.atlas")
    report = atlas.ingest([corpus], path, workers=2, batch=20)
    assert report.datasets == N_FILES and report.commits in (1, 2)
    # two fragments and one commit task's result per commit: all of them counted
    assert len(crossed) == 2 + report.commits and report.received_bytes == sum(crossed)
    assert 0 < report.received_bytes <= 0.01 * _tree_bytes(path)
    got = atlas.Atlas.open(path, "r")
    assert got.verify() == []
    assert_no_transport_files(got)  # the task parts were deleted once committed
    assert_same_records(got, reference)
    assert_same_store(got, reference)


def test_many_commits_merge_parts_on_workers_and_delete_task_parts(corpus, reference, tmp_path):
    path = _new_store(tmp_path / "m.atlas")
    report = atlas.ingest([corpus], path, workers=2, batch=3, commit_interval=0)
    # one commit at a time, each of the fragments that arrived while the one before ran
    assert report.datasets == N_FILES and report.commits > 1
    got = atlas.Atlas.open(path, "r")
    base = got.session.state().base
    assert base.next_dataset_id == N_FILES + 1 and got.generation == report.commits
    if report.commits >= 3:
        # the commit tasks merged parts as a local commit would: fewer parts than commits, some retired
        assert len(base.parts) < report.commits and any(r.dir == "_catalog" for r in base.retired)
    assert got.verify() == []
    assert_no_transport_files(got)
    assert_same_records(got, reference)
    assert_same_store(got, reference)


def test_conflict_during_the_commit_task_plans_again(tmp_path, monkeypatch):
    """Another writer commits while the commit task runs: the client refuses what it took, retries."""
    from atlas.distributed.runner import Runner

    path = _new_store(tmp_path / "c.atlas")
    with atlas.Atlas.open(path) as s:  # parts for the commit task to merge with
        for i in range(3):
            s.add_xr_dataset(xr.Dataset({"v": ("x", np.arange(3.0) + i)}), f"old{i}")
            s.flush()
    calls = []
    original = Runner.call

    def call(self, fn, job):
        result = original(self, fn, job)
        calls.append(job)
        if len(calls) == 1:  # the commit task's part is written: now another writer commits first
            with atlas.Atlas.open(path) as other:
                other.add_xr_dataset(xr.Dataset({"w": ("y", np.arange(4))}), "mine")
        return result

    monkeypatch.setattr(Runner, "call", call)
    sources = [functools.partial(ingest_sources.big, name, i, 50) for i, name in enumerate(["a", "mine", "b"])]
    report = atlas.ingest(sources, path, workers=1, batch=3, skip_errors=True)
    assert len(calls) == 2 and calls[1].generation == calls[0].generation + 1
    assert [n for i in calls[0].inputs for n in i.names] == ["a", "mine", "b"]
    assert [n for i in calls[1].inputs for n in i.names] == ["a", "b"]  # planned again on the new snapshot
    assert report.datasets == 2 and report.commits == 1
    assert [(label.rsplit(".", 1)[-1], reason) for label, reason in report.failed] == [
        ("big", "dataset 'mine' already exists in the store")
    ]
    got = atlas.Atlas.open(path, "r")
    assert got.generation == 5 and got.verify() == []
    assert sorted(got.list_datasets()) == ["a", "b", "mine", "old0", "old1", "old2"]
    # the other writer's "mine" is the one stored; the refused row is nowhere
    xr.testing.assert_identical(got.to_xarray("mine"), xr.Dataset({"w": ("y", np.arange(4))}))
    assert sum(p.rows for p in got.session.state().base.parts) == 6
    assert got.session.state().base.next_dataset_id == 7
    for name in ["a", "b"]:
        xr.testing.assert_identical(got.to_xarray(name), ingest_sources.big(name, "ab".index(name) * 2, 50)[0][1])
    assert_no_transport_files(got)  # the lost attempt's part was deleted too


def test_sources_refused_in_a_batch_leave_no_row(tmp_path):
    """Two sources of one name: the first in the batch is committed, the other refused whole."""
    path = _new_store(tmp_path / "d.atlas")
    sources = [functools.partial(ingest_sources.big, "dup", 1, 20), functools.partial(ingest_sources.big, "dup", 2, 20),
               functools.partial(ingest_sources.big, "solo", 3, 20)]  # fmt: skip
    report = atlas.ingest(sources, path, workers=1, batch=1, skip_errors=True)
    assert report.datasets == 2 and len(report.failed) == 1
    assert report.failed[0][1].startswith("dataset 'dup' is also stored by ")
    got = atlas.Atlas.open(path, "r")
    base = got.session.state().base
    assert sorted(got.list_datasets()) == ["dup", "solo"] and [p.rows for p in base.parts] == [2]
    assert base.next_dataset_id == 3 and got.verify() == []
    xr.testing.assert_identical(got.to_xarray("dup"), ingest_sources.big("dup", 1, 20)[0][1])
    assert_no_transport_files(got)
    got.close()
    with pytest.raises(IngestError, match="'dup2' is also stored by"):
        atlas.ingest([functools.partial(ingest_sources.big, "dup2", i, 20) for i in range(2)], path, workers=1, batch=1)


def test_a_garbled_task_part_is_refused_and_nothing_is_committed(corpus, tmp_path, monkeypatch):
    from atlas.distributed.runner import Runner
    from atlas.errors import AtlasError, CorruptStoreError

    path = _new_store(tmp_path / "g.atlas")
    original = Runner.call
    garbled = []

    def call(self, fn, job):
        for item in job.inputs[:1]:  # damage one task part before the commit task reads it
            file = Path(path) / item.part.path
            data = bytearray(file.read_bytes())
            data[len(data) // 3] ^= 0xFF
            file.write_bytes(bytes(data))
            garbled.append(file)
        return original(self, fn, job)

    monkeypatch.setattr(Runner, "call", call)
    with pytest.raises(AtlasError) as info:
        atlas.ingest([corpus], path, workers=2, batch=10)
    assert isinstance(info.value, CorruptStoreError) and garbled[0].name in str(info.value)
    store = atlas.Atlas.open(path, "r+")
    assert store.generation == 0 and store.list_datasets() == []
    store.compact(grace_period=0)  # the ingest's files are all orphans
    assert not list(Path(path).rglob("*.af")) and not list(Path(path).rglob("*.cat"))


def test_a_commit_task_whose_worker_dies_runs_again(corpus, reference, tmp_path, monkeypatch):
    """The first commit task kills its pool process while batch tasks still run: all of them run again."""
    import ingest_commit_faults

    from atlas.distributed.runner import Runner

    path = _new_store(tmp_path / "k.atlas")
    marker = tmp_path / "died"
    original = Runner.call

    def call(self, fn, job):
        return original(self, functools.partial(ingest_commit_faults.die_once_then, str(marker), fn), job)

    monkeypatch.setattr(Runner, "call", call)
    report = atlas.ingest([corpus], path, workers=2, batch=4, commit_interval=0)
    assert marker.exists() and report.datasets == N_FILES and not report.failed
    got = atlas.Atlas.open(path, "r+")
    assert got.verify() == [] and got.generation == report.commits
    assert_same_records(got, reference)
    assert_same_store(got, reference)
    got.compact(grace_period=0)  # sweeps the part the dead attempt may have written
    assert got.verify() == []
    assert_no_transport_files(got)


def test_ingest_into_a_format_1_store_upgrades_it_first(corpus, reference, tmp_path):
    from v1_stores import to_v1

    path = tmp_path / "v1.atlas"
    with atlas.Atlas.create(path) as s:
        s.add_xr_dataset(xr.Dataset({"v": ("x", np.arange(3.0))}), "before")
    to_v1(path)
    assert atlas.Atlas.open(path, "r").format_version == 1
    report = atlas.ingest([corpus], str(path), workers=2, batch=20)
    assert report.datasets == N_FILES and report.commits in (1, 2)
    got = atlas.Atlas.open(path, "r")
    # the upgrade, then the ingest's commits
    assert got.format_version == 2 and got.generation == 2 + report.commits
    assert got.verify() == [] and len(got.list_datasets()) == N_FILES + 1
    xr.testing.assert_identical(got.to_xarray("before"), xr.Dataset({"v": ("x", np.arange(3.0))}))
    for name in atlas.Atlas.open(reference, "r").list_datasets()[:5]:
        xr.testing.assert_identical(got.to_xarray(name), atlas.Atlas.open(reference, "r").to_xarray(name))


_PART = ["000000000001-0123456789abcdef.cat", 100, 60, 30, 7, 1, 1, 1]


@pytest.mark.parametrize(
    "body",
    [[0, ["a", "b"], [], [], [], "", 0, None],  # slots that are not numbers
     [0, [0, 5, 9], [], [], [], "", 0, None],  # three slot bounds
     [0, [0, 5], [["0", ["x"]]], [], [], "", 0, _PART],  # a source index that is not a number
     [0, [0, 5], [[0, "x"]], [], [], "", 0, _PART],  # dataset names that are not a list
     [0, [0, 5], [[0, [7]]], [], [], "", 0, _PART],  # a dataset name that is not a string
     [0, [0, 5], [], [], [[1, 2]], "", 0, None],  # a failure record of numbers
     [0, [0, 5], [], [], [], 5, 0, None],  # a lease that is not a path
     [0, [0, 5], [], [], [], "", "z", None],  # a byte count that is not one
     [0, [0, 5], [], [["v", "v", [1, "x", 2, 3, 4, 5]]], [], "", 0, None],  # a segment reference of the wrong types
     [0, [0, 5], [[0, ["x"]]], [], [], "", 0, [*_PART[:5], "1", 1, 1]],  # a part entry of the wrong types
     [0, [0, 5], [[0, ["x", "y"]]], [], [], "", 0, _PART],  # a task part of 1 row for 2 datasets
     [0, [0, 5], [[0, ["x"]]], [], [], "", 0, None],  # datasets without a task part
     [0, [0, 5], [], [], [], "", 0, _PART],  # a task part without datasets
     [0, [0, 5], [], [], [], "", 0],  # a field missing
     [True, [0, 5], [], [], [], "", 0, None],
     # paths the client would delete: outside the catalogue, a live file, not a lease
     [0, [0, 5], [[0, ["x"]]], [], [], "", 0, ["../../victim.cat", *_PART[1:]]],
     [0, [0, 5], [[0, ["x"]]], [], [], "", 0, ["x/000000000001-0123456789abcdef.cat", *_PART[1:]]],
     [0, [0, 5], [], [], [], "_catalog/000000000001-0123456789abcdef.cat", 0, None],
     [0, [0, 5], [], [], [], "../_leases/a.lease", 0, None],
     [0, [0, 5], [], [["v", "..", ["x.af", 9, 1, 1, 1, 1]]], [], "", 0, None],
     [0, [0, 5], [], [["v", "v", ["../w/x.af", 9, 1, 1, 1, 1]]], [], "", 0, None],
     [0, [0, 5], [], [["v", "_catalog", ["000000000001-0123456789abcdef.cat", 9, 1, 1, 1, 1]]], [], "", 0, None],
     [0, [0, 5], [[0, ["x"]], [1, ["x"]]], [], [], "", 0, [*_PART[:5], 2, 1, 1]],  # one name twice
     # numbers the commit object's decoder refuses (the store would not open once they are committed)
     [0, [0, 5], [], [["v", "v", ["x.af", 9, 5, 5, 1, 1]]], [], "", 0, None],  # an index past the file's end
     [0, [0, 5], [], [["v", "v", ["x.af", -9, 1, 1, 1, 1]]], [], "", 0, None],
     [0, [0, 5], [[0, ["x"]]], [], [], "", 0, [*_PART[:6], 2, 1]],  # generations 2..1
     [0, [0, 5], [[0, ["x"]]], [], [], "", 0, [_PART[0], 100, 90, 30, *_PART[4:]]]],
)  # fmt: skip
def test_a_fragment_with_fields_of_the_wrong_type_is_refused(body):
    """Valid MessagePack of the wrong shape is refused when decoded, not by a TypeError of the commit."""
    import msgpack

    from atlas.errors import AtlasError
    from atlas.txn.fragments import unpack_fragment

    assert unpack_fragment(b"r" + msgpack.packb([0, [0, 5], [[0, ["x"]]], [], [], "", 0, _PART])).part.rows == 1
    with pytest.raises(AtlasError, match="cannot be decoded"):
        unpack_fragment(b"r" + msgpack.packb(body))


@pytest.fixture(scope="module")
def corpus200(tmp_path_factory) -> tuple[Path, Path]:
    """200 derived CMEMS-like files and their single-process ``atlas create`` store."""
    root = tmp_path_factory.mktemp("c200")
    src = _make(root / "src", 200)
    ref = root / "ref.atlas"
    assert main(["create", str(src), str(ref), "-j", "0", "-q"]) == 0
    return src, ref


@pytest.mark.slow
def test_200_files_on_a_local_cluster(tmp_path, cluster_client, corpus200):
    src, ref = corpus200
    path = _new_store(tmp_path / "c.atlas")
    report = atlas.ingest([src], path, client=cluster_client)
    assert report.datasets == 200
    got = atlas.Atlas.open(path, "r")
    assert got.verify() == []
    assert_same_store(got, ref)


@pytest.mark.slow
def test_200_files_on_a_local_cluster_to_s3(cluster_client, corpus200, moto_s3, s3_bucket):
    src, ref = corpus200
    url = f"s3://{s3_bucket}/ingest200-{id(src)}"
    opts = moto_s3.options()
    atlas.Atlas.create(url, storage_options=opts).close()
    report = atlas.ingest([src], url, client=cluster_client, storage_options=opts)
    assert report.datasets == 200
    got = atlas.Atlas.open(url, "r", storage_options=opts)
    assert got.verify() == []
    assert_same_store(got, ref)


def test_cli_create_and_append_on_a_cluster(corpus, reference, tmp_path, cluster_client):
    path = tmp_path / "cli.atlas"
    log = tmp_path / "ingest.log"
    scheduler = cluster_client.scheduler.address
    files = sorted(corpus.rglob("*.nc"))
    first = tmp_path / "first"
    for f in files[:6]:  # the same relative paths, so the same dataset names
        (first / f.relative_to(corpus)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, first / f.relative_to(corpus))
    assert main(["create", str(first), str(path), "--scheduler", scheduler, "--batch", "2", "-q",
                 "--log-file", str(log)]) == 0  # fmt: skip
    assert len(atlas.Atlas.open(path, "r").list_datasets()) == 6
    assert "on a cluster" in log.read_text()
    assert main(["append", str(corpus), str(path), "--cluster", "local:2", "--skip-existing", "-q"]) == 0
    got = atlas.Atlas.open(path, "r")
    assert got.verify() == []
    assert_same_store(got, reference)
    assert main(["append", str(corpus), str(path), "--cluster", "local:0"]) == 2  # a usage error


def test_a_commit_result_naming_a_file_that_is_no_lease_is_refused():
    """The client deletes the lease a commit task names: a live part must not pass for one."""
    from atlas.catalog import PartRef
    from atlas.errors import AtlasError
    from atlas.txn.fragments import CommitJob, pack_commit_result, unpack_commit_result

    job = CommitJob("/x", None, "zstd", 1, bytes(16), (), 1, ())
    ref = PartRef("000000000001-0000000000000000.cat", 100, 60, 30, 7, 0, 1, 1)
    assert unpack_commit_result(pack_commit_result(0, ref, "_leases/ab.lease"), job)[2] == "_leases/ab.lease"
    for lease in ["_catalog/000000000000-0123456789abcdef.cat", "v/x.af", "../x.lease"]:
        with pytest.raises(AtlasError, match="cannot be decoded"):
            unpack_commit_result(pack_commit_result(0, ref, lease), job)
    # a part entry the commit object's decoder would refuse: the store would not open once committed
    for bad in [PartRef(ref.file, 100, 90, 30, 7, 0, 1, 1), PartRef(ref.file, 100, 60, 30, 7, 0, 2, 1)]:
        with pytest.raises(AtlasError, match="cannot be decoded"):
            unpack_commit_result(pack_commit_result(0, bad, "_leases/ab.lease"), job)


def test_a_fragment_naming_a_live_part_is_refused_and_the_part_kept(tmp_path, monkeypatch):
    """A fragment whose task part is a part the store lists (and whose names the store holds, so every row is
    refused) must not have the client delete that part: the store's catalogue would be gone."""
    import atlas.distributed.client as client_mod
    from atlas.errors import AtlasError

    path = _new_store(tmp_path / "l.atlas")
    with atlas.Atlas.open(path) as s:
        s.add_xr_dataset(xr.Dataset({"v": ("x", np.arange(3.0))}), "kept")
    live = atlas.Atlas.open(path, "r").session.state().base.parts[0]
    original = client_mod.unpack_fragment

    def forged(packed):
        frag = original(packed)
        frag.part = live
        for src in frag.stored:
            src.names = ["kept"]
        return frag

    monkeypatch.setattr(client_mod, "unpack_fragment", forged)
    with pytest.raises(AtlasError, match="a file of the store"):
        atlas.ingest([functools.partial(ingest_sources.big, "kept", 1, 20)], path, workers=1, skip_errors=True)
    got = atlas.Atlas.open(path, "r")
    assert (Path(path) / live.path).exists() and got.list_datasets() == ["kept"] and got.verify() == []


def test_a_fragment_claiming_another_tasks_slots_is_refused(tmp_path, monkeypatch):
    import atlas.distributed.client as client_mod
    from atlas.errors import AtlasError

    path = _new_store(tmp_path / "s.atlas")
    original = client_mod.unpack_fragment

    def forged(packed):
        frag = original(packed)
        frag.slots = (frag.slots[0] + 1, frag.slots[1] + 1)
        return frag

    monkeypatch.setattr(client_mod, "unpack_fragment", forged)
    with pytest.raises(AtlasError, match="claims task"):
        atlas.ingest([functools.partial(ingest_sources.big, f"n{i}", i, 20) for i in range(2)], path, workers=1,
                     batch=1)  # fmt: skip
    assert atlas.Atlas.open(path, "r").generation == 0


def test_a_duplicate_across_commits_is_no_existing_dataset(tmp_path):
    """With skip_existing, a name an earlier commit of the same ingest stored is a duplicate, not a resume."""
    path = _new_store(tmp_path / "e.atlas")
    sources = [functools.partial(ingest_sources.big, "dup", i, 20) for i in range(2)]
    report = atlas.ingest(sources, path, workers=1, batch=1, commit_interval=0, skip_existing=True,
                          skip_errors=True)  # fmt: skip
    assert report.datasets == 1 and report.existing == []
    assert len(report.failed) == 1 and "also stored by an earlier source of this ingest" in report.failed[0][1]
    with pytest.raises(IngestError, match="also stored by"):
        atlas.ingest([functools.partial(ingest_sources.big, "dup2", i, 20) for i in range(2)], path, workers=1,
                     batch=1, commit_interval=0, skip_existing=True)  # fmt: skip
    # a name stored before the ingest is still skipped as existing
    report = atlas.ingest([functools.partial(ingest_sources.big, "dup", 5, 20)], path, workers=1, skip_existing=True)
    assert report.datasets == 0 and len(report.existing) == 1 and not report.failed


def test_a_commit_task_that_runs_twice_writes_the_same_part_on_s3(corpus, reference, moto_s3, s3_bucket,
                                                                  monkeypatch):  # fmt: skip
    """A rerun commit task (its worker died after writing) writes the same name: S3 accepts only the same bytes."""
    import ingest_commit_faults

    from atlas.distributed.runner import Runner

    url = f"s3://{s3_bucket}/twice-{id(corpus)}"
    opts = moto_s3.options()
    atlas.Atlas.create(url, storage_options=opts).close()
    original = Runner.call

    def call(self, fn, job):
        return original(self, functools.partial(ingest_commit_faults.run_twice, fn), job)

    monkeypatch.setattr(Runner, "call", call)
    report = atlas.ingest([corpus], url, workers=2, batch=8, commit_interval=0, storage_options=opts)
    assert report.datasets == N_FILES and report.commits > 1
    got = atlas.Atlas.open(url, "r", storage_options=opts)
    assert got.verify() == []
    assert_same_store(got, reference)


def test_fragments_are_committed_while_a_long_task_runs(tmp_path):
    """A fragment waits commit_interval, not until the next task finishes (its lease is renewed meanwhile)."""
    path = _new_store(tmp_path / "w.atlas")
    sources = [functools.partial(ingest_sources.big, "quick", 1, 20),
               functools.partial(ingest_sources.wait_until_stored, path, "quick", "slow")]  # fmt: skip
    report = atlas.ingest(sources, path, workers=2, batch=1, commit_interval=10)
    assert report.datasets == 2 and report.commits == 2
    got = atlas.Atlas.open(path, "r")
    assert got.to_xarray("slow").attrs["saw"] == 1  # "quick" was committed while "slow" ran
    assert got.verify() == []
    assert_no_transport_files(got)


def test_a_failed_source_starts_no_task_beyond_the_one_queued(tmp_path):
    """One process, one task queued behind the running one: when the running task returns a failed
    source (the ingest stops, no ``skip_errors``), the queued task has started in the freed process, but
    no further task may be submitted before the ingest learns of the failure (it would run for nothing)."""
    path = _new_store(tmp_path / "stop.atlas")
    ran = _new_store(tmp_path / "ran.atlas")  # each task after the failed one commits its name here as it runs
    failing = functools.partial(ingest_sources.big, "bad", 1, -1)  # negative size: the source raises
    after = [functools.partial(ingest_sources.with_concurrent_commit, ran, f"ran{i}", f"d{i}") for i in range(3)]
    with pytest.raises(IngestError, match="negative dimensions"):
        atlas.ingest([failing, *after], path, workers=1, batch=1)
    with atlas.Atlas.open(ran, "r") as got:
        assert got.list_datasets() == ["ran0"]
    with atlas.Atlas.open(path, "r") as got:
        assert got.list_datasets() == [] and got.verify() == []


def test_a_task_that_started_from_the_queue_and_kills_its_worker_takes_the_strikes(tmp_path):
    """Two processes: the doomed task waits in the pool's queue until a quick task frees a process, then
    kills it.  It counts as running (it is among the first two in flight), so it collects its strikes and
    fails after POOL_RETRIES + 1 attempts; the tasks beside it are stored."""
    from atlas.distributed.client import POOL_RETRIES

    path = _new_store(tmp_path / "queued-doomed.atlas")
    counter = tmp_path / "attempts"
    sources = [functools.partial(ingest_sources.big, "quick", 1, 10),
               functools.partial(ingest_sources.big, "slow", 2, 2_000_000),
               functools.partial(ingest_sources.die_always, str(counter), "doomed"),
               *(functools.partial(ingest_sources.big, f"after{i}", 3 + i, 10) for i in range(3))]  # fmt: skip
    report = atlas.ingest(sources, path, workers=2, batch=1, skip_errors=True)
    assert len(counter.read_text().split()) == POOL_RETRIES + 1
    assert [reason for _, reason in report.failed] == [
        f"task failed: BrokenProcessPool: a worker process died each of the {POOL_RETRIES + 1} times this task ran"]
    assert report.datasets == 5
    with atlas.Atlas.open(path, "r") as got:
        assert sorted(got.list_datasets()) == ["after0", "after1", "after2", "quick", "slow"] and got.verify() == []


def test_a_pool_renewed_by_a_commit_task_does_not_stall_the_heartbeats(tmp_path, monkeypatch):
    """A commit task finds the pool broken and renews it while the caller handles a failed task; the
    batch tasks then submit one task into the new pool before they see the break.  Handling the break
    must wait for the broken pool's tasks only, not for that task too: the heartbeats (lease renewals,
    due commits) go on while it runs."""
    import operator
    import threading
    import time
    import types

    from atlas.distributed import runner as runner_mod

    monkeypatch.setattr(runner_mod, "run_task", operator.methodcaller("run"))  # each task runs its own callable
    store = _new_store(tmp_path / "go.atlas")
    tasks = [types.SimpleNamespace(index=0, run=functools.partial(int, "not a number")),  # fails at once
             types.SimpleNamespace(index=1, run=functools.partial(ingest_sources.wait_until_stored, store, "go",
                                                                  "t1", 60.0)),  # killed while it waits
             types.SimpleNamespace(index=2, run=functools.partial(time.sleep, 6.0))]  # fmt: skip
    runner = runner_mod.Runner(None, 1)
    try:
        results = runner.results(tasks, 0.3)
        first = next(t for t in results if t[0] is not None)
        assert first[0].index == 0 and isinstance(first[2], ValueError)
        old = runner.pool
        victim = next(iter(old._processes))  # the one process: it runs task 1 now
        quick = types.SimpleNamespace(run=functools.partial(time.sleep, 0.1))
        commit = threading.Thread(target=runner.call, args=(operator.methodcaller("run"), quick))
        commit.start()  # queued behind task 1 in the pool, fails with it, renews the pool, runs again
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        commit.join(30)
        assert not commit.is_alive() and runner.pool is not old
        with atlas.Atlas.open(store) as handle:  # task 1 runs again at once
            handle.add_xr_dataset(xr.Dataset({"v": ("x", np.arange(2.0))}), "go")
        t0 = time.monotonic()
        nxt = next(results)  # task 2 starts in the new pool; then task 1's strike is seen
        waited = time.monotonic() - t0
        rest = [t for t in results if t[0] is not None]
    finally:
        runner.close()
    assert waited < 3.0, f"nothing was yielded for {waited:.1f} s while task 2 ran"
    assert nxt == (None, None, None)
    assert sorted((t.index, e is None) for t, _, e in rest) == [(1, True), (2, True)]
