"""Concurrency: many writer processes, readers during commits, threads on one handle.

(a) 4 writer processes commit to one local store at once, each owning its datasets,
    with the documented ``refresh()``-and-retry loop (12 steps each; 400 with
    ``-m slow``).  Every flush lands or raises
    ``ConflictError``; at the end every process's model of its datasets is exactly in
    the store, and the successful commits numbered the generations 1..N without a gap
    or a duplicate (no commit was overwritten by another).  The same against S3 on
    the moto emulator (3 writers x 8 steps; 4 x 60 with ``-m slow``), where commits
    are conditional puts on the manifest's ETag.
(b) reader processes check every snapshot they can get while a writer commits
    80 generations (1000 with ``-m slow``): each is a complete generation.  The same
    on S3 (moto) with 20 generations (200 with ``-m slow``).
(c) many threads reading one ``Atlas`` at once get exactly the reference data.
(d) a thread writing and flushing while other threads read the same ``Atlas`` (and
    another handle refreshes): every read shows one consistent state (100 writes;
    5000 with ``-m slow``).

The default run keeps every scenario, at a size that fits a CI run; ``-m slow``
runs the same scenarios at full size.
"""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cloud_servers import unique
from rel_common import options_arg, record_figure

import atlas
from atlas.metadata import gc_paused

WORKERS = Path(__file__).parent / "workers"


PY = sys.executable


def _spawn(args: list[object], log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen([PY, *map(str, args)], stdout=fh, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{proc.args} timed out:\n{log.read_text(errors='replace')[-3000:]}")
    assert proc.returncode == 0, f"{proc.args} failed:\n{log.read_text(errors='replace')[-5000:]}"


# -- (a) several writer processes ---------------------------------------------------------------


def run_writers(
    tmp_path: Path,
    n_writers: int,
    steps: int,
    compact_every: int,
    location: str | None = None,
    options: dict | None = None,
) -> dict:
    """Run the writers on ``location`` (default: a local directory) and check the store."""
    location = location or str(tmp_path / "store")
    atlas.Atlas.create(location, storage_options=options).close()
    go = tmp_path / "store.go"
    started = time.monotonic()
    procs = []
    for wid in range(n_writers):
        out, log = tmp_path / f"w{wid}.json", tmp_path / f"w{wid}.log"
        budget = 1024 if wid == 1 else 0  # writer 1 spills, so refresh() must re-key spilled chunks
        every = compact_every if wid == 0 else 0
        args = [WORKERS / "conc_writer.py", location, out, wid, steps, 1234, budget, every, go, *options_arg(options)]
        procs.append((_spawn(args, log), log, out))
    deadline = time.monotonic() + 120
    while not all(Path(str(out) + ".ready").exists() for _proc, _log, out in procs):
        if time.monotonic() > deadline or any(proc.poll() is not None for proc, _log, _out in procs):
            break  # _wait below reports the writer that failed to start
        time.sleep(0.05)
    go.touch()
    for proc, log, _ in procs:
        _wait(proc, log, timeout=600)
    seconds = time.monotonic() - started
    results = [json.loads(out.read_text()) for _, _, out in procs]

    with atlas.Atlas.open(location, mode="r", storage_options=options) as store:
        assert store.verify() == []
        # Every successful commit produced its own generation: 1..N, no gap, no duplicate.
        gens = sorted(g for r in results for g in r["generations"] + r["compactions"])
        assert gens == list(range(1, len(gens) + 1)), "two commits claimed one generation, or one went missing"
        assert store.generation == len(gens)
        expected_names = sorted(name for r in results for name in r["model"])
        assert store.list_datasets() == expected_names
        writes = 0
        for r in results:
            for name, m in r["model"].items():
                ds = store.open_dataset(name)
                assert ds.read_array("v").tolist() == m["v"], f"{name}: lost or foreign write in v"
                log = ds.read_array("log")
                assert log.tolist() == m["log"], f"{name}: lost step in log"
                assert ds.read_array("s").tolist() == m["s"], f"{name}: lost string write"
                assert ds.attributes() == m["attrs"], f"{name}: lost attribute"
                writes += int((log >= 0).sum())
    conflicts = sum(r["conflicts"] for r in results)
    assert conflicts > 0, "the writers never collided: the test did not exercise the retry path"
    return {
        "writers": n_writers,
        "commits": len(gens),
        "compactions": sum(len(r["compactions"]) for r in results),
        "conflicts_retried": conflicts,
        "logged_steps_verified": writes,
        "seconds": round(seconds, 1),
    }


def test_writer_processes_commit_concurrently_and_lose_nothing(tmp_path):
    figures = run_writers(tmp_path, n_writers=4, steps=12, compact_every=0)
    record_figure("test_concurrency::test_writer_processes_commit_concurrently_and_lose_nothing", **figures)


def test_writer_processes_with_a_concurrent_compactor(tmp_path):
    """Writer 0 also compacts every 3 steps while the others write and commit."""
    figures = run_writers(tmp_path, n_writers=4, steps=12, compact_every=3)
    record_figure("test_concurrency::test_writer_processes_with_a_concurrent_compactor", **figures)


@pytest.mark.slow
def test_writer_processes_soak(tmp_path):
    figures = run_writers(tmp_path, n_writers=4, steps=400, compact_every=0)
    record_figure("test_concurrency::test_writer_processes_soak", **figures)


@pytest.mark.slow
def test_writer_processes_with_a_concurrent_compactor_soak(tmp_path):
    figures = run_writers(tmp_path, n_writers=4, steps=400, compact_every=10)
    record_figure("test_concurrency::test_writer_processes_with_a_concurrent_compactor_soak", **figures)


@pytest.fixture
def s3_store(request, atomic_moto_puts) -> dict:
    """``location`` and ``options`` of a fresh store on the moto S3 server (a new prefix)."""
    server = request.getfixturevalue("moto_s3")
    bucket = request.getfixturevalue("s3_bucket")
    return {"location": f"s3://{bucket}/{unique('conc')}", "options": server.options()}


@pytest.fixture
def atomic_moto_puts(monkeypatch):
    """Make moto's conditional PUT check-and-write atomic, as S3's is.

    moto (5.x) checks ``If-Match``/``If-None-Match`` and then stores the object in two
    steps of a threaded server, so two conditional puts of the same key can both pass
    the check: a race of the emulator that real S3 does not have.  Serialising its PUT
    handler (the server runs in a thread of this process) removes it, so a lost
    commit here is ATLAS's fault.
    """
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    original = S3Response.put_object

    def put_object(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(S3Response, "put_object", put_object)


def test_writer_processes_commit_concurrently_to_s3(tmp_path, s3_store):
    figures = run_writers(tmp_path, n_writers=3, steps=8, compact_every=0, **s3_store)
    record_figure("test_concurrency::test_writer_processes_commit_concurrently_to_s3", store="s3 (moto)", **figures)


@pytest.mark.slow
def test_writer_processes_soak_on_s3(tmp_path, s3_store):
    """Writer 0 also compacts every 10 steps."""
    figures = run_writers(tmp_path, n_writers=4, steps=60, compact_every=10, **s3_store)
    record_figure("test_concurrency::test_writer_processes_soak_on_s3", store="s3 (moto)", **figures)


# -- (b) readers during many commits ---------------------------------------------------------------


def run_readers(
    tmp_path: Path,
    generations: int,
    compact_every: int,
    location: str | None = None,
    options: dict | None = None,
) -> dict:
    """Run the readers and the writer on ``location`` (default: a local directory)."""
    location, done = location or str(tmp_path / "store"), tmp_path / "done"
    atlas.Atlas.create(location, storage_options=options).close()
    extra = options_arg(options)
    readers = []
    for i, mode in enumerate(["open", "refresh"]):
        out, log = tmp_path / f"r{i}.json", tmp_path / f"r{i}.log"
        readers.append((_spawn([WORKERS / "snapshot_reader.py", location, mode, done, out, *extra], log), log, out))
    # Readers are up before the first commit, so even a short run is watched from the start.
    deadline = time.monotonic() + 120
    while not all(Path(str(out) + ".ready").exists() for _proc, _log, out in readers):
        if time.monotonic() > deadline or any(proc.poll() is not None for proc, _log, _out in readers):
            done.touch(exist_ok=True)
            break  # the checks below report the reader that failed to start
        time.sleep(0.05)
    wlog = tmp_path / "writer.log"
    writer = _spawn([WORKERS / "gen_writer.py", location, generations, 42, compact_every, done, *extra], wlog)
    try:
        _wait(writer, wlog, timeout=1200)
    finally:
        done.touch(exist_ok=True)  # readers stop after one last snapshot, whatever happened
        for proc, _log, _out in readers:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    reports = []
    for _proc, log, out in readers:
        assert out.exists(), f"reader died without a report:\n{log.read_text(errors='replace')[-3000:]}"
        reports.append(json.loads(out.read_text()))
    for r in reports:
        assert r["error"] is None, f"reader ({r['mode']}) after {r['snapshots']} good snapshots:\n{r['error']}"
    for r in reports:
        assert r["generations"][-1] == generations, "a reader never saw the last generation"
        assert len(r["generations"]) >= 5, f"a reader saw too few generations: {r['generations']}"
    with atlas.Atlas.open(location, mode="r", storage_options=options) as store:
        assert store.verify() == []
    _, compactions, seconds = (tmp_path / "done").read_text().split()
    return {
        "generations_committed": generations,
        "compactions": int(compactions),
        "writer_seconds": float(seconds),
        "snapshots_checked": sum(r["snapshots"] for r in reports),
        "distinct_generations_seen": len({g for r in reports for g in r["generations"]}),
    }


def test_readers_always_see_a_complete_generation(tmp_path):
    figures = run_readers(tmp_path, generations=80, compact_every=0)
    record_figure("test_concurrency::test_readers_always_see_a_complete_generation", **figures)


def test_readers_always_see_a_complete_generation_during_compactions(tmp_path):
    """The same while the writer compacts every 10 generations (DESIGN §3: a reader that
    still holds an older generation keeps working)."""
    figures = run_readers(tmp_path, generations=80, compact_every=10)
    record_figure("test_concurrency::test_readers_always_see_a_complete_generation_during_compactions", **figures)


@pytest.mark.slow
def test_readers_soak(tmp_path):
    figures = run_readers(tmp_path, generations=1000, compact_every=0)
    record_figure("test_concurrency::test_readers_soak", **figures)


@pytest.mark.slow
def test_readers_soak_during_compactions(tmp_path):
    figures = run_readers(tmp_path, generations=1000, compact_every=10)
    record_figure("test_concurrency::test_readers_soak_during_compactions", **figures)


def test_readers_see_complete_generations_on_s3(tmp_path, s3_store):
    figures = run_readers(tmp_path, generations=20, compact_every=5, **s3_store)
    record_figure("test_concurrency::test_readers_see_complete_generations_on_s3", store="s3 (moto)", **figures)


@pytest.mark.slow
def test_readers_soak_on_s3(tmp_path, s3_store):
    figures = run_readers(tmp_path, generations=200, compact_every=10, **s3_store)
    record_figure("test_concurrency::test_readers_soak_on_s3", store="s3 (moto)", **figures)


def test_snapshot_opened_before_a_compaction_stays_readable(tmp_path):
    """Minimal, deterministic form of the race above.

    DESIGN §3: "Segments that a commit makes unreachable are deleted only by
    compact(), after a grace period, so a reader still holding an older generation
    keeps working."  A reader that opened generation N before another handle
    compacted must still read generation N.
    """
    path = tmp_path / "s"
    with atlas.Atlas.create(path) as store:
        ds = store.create_dataset("d")
        ds.define_array("x", "float64", ["n"], [8], chunk_shape=[4])
        ds.write_array("x", [0], np.arange(8.0))
    with atlas.Atlas.open(path) as store:  # a second segment, so compaction rewrites the family
        store.open_dataset("d").write_array("x", [0], np.full(4, -1.0))
    reader = atlas.Atlas.open(path, mode="r")  # snapshot taken, nothing read yet
    with atlas.Atlas.open(path) as compactor:
        compactor.compact()
    expected = np.array([-1.0] * 4 + [4.0, 5.0, 6.0, 7.0])
    np.testing.assert_array_equal(reader.open_dataset("d").read_array("x"), expected)


def test_writer_snapshot_taken_before_a_compaction_gets_a_conflict_not_damage(tmp_path):
    """Minimal form of the writer-side race: a writer whose snapshot predates another
    handle's compaction must be able to stage a partial write and get a ConflictError
    from flush (then refresh and commit), never a CorruptStoreError."""
    path = tmp_path / "s"
    with atlas.Atlas.create(path) as store:
        for name in ("mine", "theirs"):
            ds = store.create_dataset(name)
            ds.define_array("x", "float64", ["n"], [8], chunk_shape=[4])
            ds.write_array("x", [0], np.arange(8.0))
    with atlas.Atlas.open(path) as store:
        store.open_dataset("theirs").write_array("x", [0], np.full(8, -1.0))
    writer = atlas.Atlas.open(path)  # snapshot taken, nothing read yet
    with atlas.Atlas.open(path) as compactor:
        compactor.compact()
    writer.open_dataset("mine").write_array("x", [2], np.array([20.0]))  # partial: reads the stored chunk
    with pytest.raises(atlas.ConflictError):
        writer.flush()
    writer.refresh()
    writer.flush()
    with atlas.Atlas.open(path, mode="r") as store:
        np.testing.assert_array_equal(store.open_dataset("mine").read_array("x"), [0, 1, 20, 3, 4, 5, 6, 7])
        np.testing.assert_array_equal(store.open_dataset("theirs").read_array("x"), np.full(8, -1.0))


# -- (c) many threads reading one Atlas ---------------------------------------------------------------


def build_read_store(path: Path, n: int = 12) -> dict:
    rng = np.random.default_rng(5)
    ref: dict = {}
    with atlas.Atlas.create(path, codec="zstd") as store:
        for i in range(n):
            name = f"d{i:02d}"
            ds = store.create_dataset(name)
            f = rng.normal(size=(30, 20))
            q = rng.integers(0, 10**6, size=(50,), dtype="int32")
            s = np.array([f"{name}-{j}-✓" for j in range(9)], dtype=object)
            ds.define_array("f", "float64", ["y", "x"], [30, 20], chunk_shape=[7, 6])
            ds.define_array("q", "int32", ["n"], [50], chunk_shape=[8])  # int32 noise: stored raw or zstd
            ds.define_array("s", "string", ["n"], [9], chunk_shape=[4])
            ds.write_array("f", [0, 0], f)
            ds.write_array("q", [0], q)
            ds.write_array("s", [0], s)
            ds.set_attribute("i", i)
            ref[name] = {"f": f, "q": q, "s": s}
    with atlas.Atlas.open(path) as store:  # a second generation overwriting parts: several segments
        for i in range(0, n, 2):
            name = f"d{i:02d}"
            patch = rng.normal(size=(10, 10))
            store.open_dataset(name).write_array("f", [5, 5], patch)
            ref[name]["f"][5:15, 5:15] = patch
    return ref


def random_read(store: atlas.Atlas, ref: dict, rng: random.Random) -> None:
    names = sorted(ref)
    kind = rng.randrange(5)
    if kind == 0:
        name = rng.choice(names)
        y0, x0 = rng.randrange(30), rng.randrange(20)
        h, w = rng.randrange(0, 30 - y0 + 1), rng.randrange(0, 20 - x0 + 1)
        got = store.open_dataset(name).read_array("f", [y0, x0], [h, w])
        np.testing.assert_array_equal(got, ref[name]["f"][y0 : y0 + h, x0 : x0 + w])
    elif kind == 1:
        name = rng.choice(names)
        a = rng.randrange(50)
        got = store.open_dataset(name).read_arrays(["q", "missing"], [a], [50 - a])
        np.testing.assert_array_equal(got["q"], ref[name]["q"][a:])
        assert got["missing"] is None
    elif kind == 2:
        picked = rng.sample(names, rng.randrange(1, len(names)))
        got = store.read_array_across_stacked("f", picked, [2, 3], [20, 10])
        np.testing.assert_array_equal(got, np.stack([ref[n]["f"][2:22, 3:13] for n in picked]))
    elif kind == 3:
        name = rng.choice(names)
        ds = store.open_dataset(name)
        assert ds.read_array("s").tolist() == ref[name]["s"].tolist()
        st = ds.array_stats("q")
        assert (st["min"], st["max"], st["null_count"]) == (ref[name]["q"].min(), ref[name]["q"].max(), 0)
    else:
        picked = rng.sample(names, 3)
        for name, got in zip(picked, store.read_array_across("q", picked, [10], [30])):
            np.testing.assert_array_equal(got, ref[name]["q"][10:40])
        assert store.open_dataset(picked[0]).get_attribute("i") == int(picked[0][1:])


def run_threads(n_threads: int, body) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def target(k: int) -> None:
        try:
            barrier.wait()
            body(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


@pytest.mark.parametrize("shared", [True, False], ids=["one-handle", "handle-per-thread"])
def test_many_threads_read_one_store(tmp_path, shared):
    ref = build_read_store(tmp_path / "s")
    reads = 400
    one = atlas.Atlas.open(tmp_path / "s", mode="r")  # fresh: indexes and maps are built under contention

    def body(k: int) -> None:
        store = one if shared else atlas.Atlas.open(tmp_path / "s", mode="r")
        rng = random.Random(k)
        for _ in range(reads):
            random_read(store, ref, rng)

    errors = run_threads(8, body)
    assert not errors, errors[0]
    record_figure(f"test_concurrency::test_many_threads_read_one_store[{shared}]", threads=8, reads=8 * reads)


# -- (d) one thread writes and flushes while others read -----------------------------------------------


def _single_valued(arr: np.ndarray, what: str) -> float:
    values = np.unique(arr)
    assert values.size == 1, f"{what}: a read mixes the values of several writes: {values[:5]}"
    return float(values[0])


def run_writer_and_readers(tmp_path: Path, writes: int, compact: bool) -> dict:
    path = tmp_path / "s"
    names = [f"d{i}" for i in range(4)]
    with atlas.Atlas.create(path) as store:
        for name in names:
            ds = store.create_dataset(name)
            ds.define_array("x", "float64", ["y", "x"], [40, 30], chunk_shape=[9, 8])
            ds.write_array("x", [0, 0], np.zeros((40, 30)))
            ds.set_attribute("v", 0.0)
    shared = atlas.Atlas.open(path)
    stop = threading.Event()
    counts = {"shared_reads": 0, "refresh_reads": 0, "flushes": 0, "compactions": 0}
    lock = threading.Lock()

    def writer() -> None:
        rng = random.Random(1)
        try:
            for k in range(1, writes + 1):
                name = names[k % len(names)]
                ds = shared.open_dataset(name)
                # one call writes one value into every cell: a read sees all of it or none
                ds.write_array("x", [0, 0], np.full((40, 30), float(k)))
                ds.set_attribute("v", float(k))
                if rng.random() < 0.3:
                    shared.flush()
                    counts["flushes"] += 1
                if compact and rng.random() < 0.05:
                    shared.compact()
                    counts["compactions"] += 1
            shared.flush()
        finally:
            stop.set()

    def shared_reader(k: int) -> None:
        rng = random.Random(100 + k)
        last = dict.fromkeys(names, 0.0)
        while not stop.is_set():
            name = rng.choice(names)
            ds = shared.open_dataset(name)
            if rng.random() < 0.5:
                y, x = rng.randrange(40), rng.randrange(30)
                got = ds.read_array("x", [y, x], [rng.randrange(1, 41 - y), rng.randrange(1, 31 - x)])
            else:
                got = shared.read_array_across_stacked("x", [name])[0]
            v = _single_valued(got, name)
            assert v >= last[name], f"{name} went back from {last[name]} to {v}"
            last[name] = v
            st = ds.array_stats("x")
            assert st["min"] == st["max"] >= v, f"{name}: stats {st} after reading {v}"
            with lock:
                counts["shared_reads"] += 1

    def refreshing_reader() -> None:
        other = atlas.Atlas.open(path, mode="r")
        last = 0
        while True:
            finished = stop.is_set()
            other.refresh()
            gen = other.generation
            assert gen >= last
            last = gen
            for name in names:
                ds = other.open_dataset(name)
                v = _single_valued(ds.read_array("x"), f"{name} (other handle)")
                assert ds.get_attribute("v") == v, f"{name}: committed attribute and cells disagree"
            with lock:
                counts["refresh_reads"] += 1
            if finished:
                break

    threads = [lambda k: writer()] + [shared_reader] * 3
    if not compact:  # another handle's snapshot vs compaction is covered by the tests of (b)
        threads.append(lambda k: refreshing_reader())
    errors = run_threads(len(threads), lambda k: threads[k](k))
    assert not errors, errors[0]
    with atlas.Atlas.open(path, mode="r") as store:
        assert store.verify() == []
        for i, name in enumerate(names):
            last_k = max(k for k in range(1, writes + 1) if k % len(names) == i)
            assert _single_valued(store.open_dataset(name).read_array("x"), name) == last_k
    return {"writes": writes, **counts}


def test_writer_thread_and_reader_threads_share_a_handle(tmp_path):
    figures = run_writer_and_readers(tmp_path, writes=100, compact=False)
    assert figures["shared_reads"] > 0 and figures["refresh_reads"] > 0
    record_figure("test_concurrency::test_writer_thread_and_reader_threads_share_a_handle", **figures)


def test_writer_thread_compacts_while_reader_threads_share_the_handle(tmp_path):
    figures = run_writer_and_readers(tmp_path, writes=100, compact=True)
    assert figures["shared_reads"] > 0
    record_figure("test_concurrency::test_writer_thread_compacts_while_reader_threads_share_the_handle", **figures)


@pytest.mark.slow
def test_writer_thread_and_reader_threads_soak(tmp_path):
    figures = run_writer_and_readers(tmp_path, writes=5000, compact=True)
    record_figure("test_concurrency::test_writer_thread_and_reader_threads_soak", **figures)


def test_gc_paused_from_several_threads_leaves_the_collector_on():
    """Overlapping ``gc_paused`` blocks in two threads (two handles committing, or
    bulk-reading, at once): a thread that saw the collector already paused by the
    other must not leave it off for the rest of the process."""
    interval = sys.getswitchinterval()
    was_on = gc.isenabled()
    gc.enable()
    sys.setswitchinterval(1e-6)  # thread switches between any two bytecodes

    def work():
        for _ in range(5000):
            with gc_paused():
                pass

    try:
        for _ in range(10):
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert gc.isenabled(), "the cyclic garbage collector was left disabled"
    finally:
        sys.setswitchinterval(interval)
        if was_on:
            gc.enable()
