"""The garbage collector while files are staged: one ingest task in this process
(:func:`atlas.distributed.task.run_task`) and ``atlas create``.

The collector is paused across the files loaded whole (:class:`atlas.cli.ingest.HeldPause`)
and runs while a streamed file or a callable's datasets are staged; it is on again
at the end, whether the sources succeed or fail.  Real files (the CF profile corpus
of benchmarks/corpus.py), a real store.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
from pathlib import Path

import pytest

xr = pytest.importorskip("xarray")

import atlas  # noqa: E402
from atlas.cli import ingest as cli_ingest  # noqa: E402
from atlas.cli.sources import discover  # noqa: E402
from atlas.distributed.task import Task, run_task  # noqa: E402
from atlas.txn.fragments import unpack_fragment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("atlas_bench_corpus", ROOT / "benchmarks" / "corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("corpus")
    module.make_corpus(root, 4)
    return root


def _task(store_path: Path, items: list, chunk_size: int) -> Task:
    with atlas.Atlas.create(store_path) as store:
        location = store.location
    return Task(0, location, None, tuple(items), (0, 100_000), "zstd", 1, False, chunk_size, None, 64 << 20)


def _datasets(ds_name: str) -> list:
    return [(ds_name, xr.Dataset({"v": ("x", [1.0, 2.0])}))]


def _recording(seen: list, make):
    """A callable source that records whether the collector runs while it is staged."""
    seen.append(("callable", gc.isenabled()))
    return make()


@pytest.mark.parametrize("chunk_size", [1 << 20, 1024], ids=["loaded", "streamed"])
def test_collector_paused_across_loaded_files_and_on_for_streamed_ones(corpus, tmp_path, monkeypatch, chunk_size):
    assert gc.isenabled()
    seen: list = []
    real_write = cli_ingest.write_file

    def observed_write(store, loaded, *args):
        seen.append((loaded.name, gc.isenabled()))
        return real_write(store, loaded, *args)

    monkeypatch.setattr(cli_ingest, "write_file", observed_write)
    files = discover([corpus], True)
    callable_source = functools.partial(_recording, seen, functools.partial(_datasets, "made"))
    task = _task(tmp_path / "s.atlas", [*files[:2], callable_source, *files[2:]], chunk_size)
    frag = unpack_fragment(run_task(task))
    assert not frag.failed and len(frag.stored) == len(files) + 1
    streamed = chunk_size == 1024
    assert seen == [
        (files[0].name, streamed),  # streamed: the collector runs (bounded memory)
        (files[1].name, streamed),
        ("callable", True),  # a callable's datasets may be anything: the collector runs
        *[(f.name, streamed) for f in files[2:]],
    ]
    assert gc.isenabled()


def test_collector_is_on_after_a_task_whose_sources_fail(corpus, tmp_path):
    files = discover([corpus], True)
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file")
    broken = discover([bad], True)
    frag = unpack_fragment(run_task(_task(tmp_path / "s.atlas", [files[0], *broken, files[1]], 1 << 20)))
    assert [label for label, _ in frag.failed] == [str(bad)]
    assert len(frag.stored) == 2
    assert gc.isenabled()


def test_held_pause_is_released_every_so_many_files(monkeypatch):
    import contextlib

    from atlas.cli.ingest import HeldPause
    from atlas.metadata import gc_paused

    pauses: list[str] = []

    @contextlib.contextmanager
    def counted():
        pauses.append("pause")
        with gc_paused():
            yield
        pauses.append("resume")

    monkeypatch.setattr(cli_ingest, "gc_paused", counted)
    monkeypatch.setattr(HeldPause, "FILES", 3)
    pause = HeldPause()
    seen = []
    for _ in range(7):
        pause.hold()
        seen.append(gc.isenabled())
    assert seen == [False] * 7
    # files 1-3 under one pause, 4-6 under the next, 7 under a third
    assert pauses == ["pause", "resume", "pause", "resume", "pause"]
    pause.release()
    pause.release()  # a second release does nothing
    assert pauses[-1] == "resume" and len(pauses) == 6
    assert gc.isenabled()


def test_atlas_create_pauses_the_collector_across_loaded_files(corpus, tmp_path, monkeypatch):
    from atlas.cli import main

    seen: list = []
    real_write = cli_ingest.write_file

    def observed_write(store, loaded, *args):
        seen.append(gc.isenabled())
        return real_write(store, loaded, *args)

    monkeypatch.setattr(cli_ingest, "write_file", observed_write)
    src = tmp_path / "src"
    src.mkdir()
    for f in sorted(corpus.rglob("*.nc")):
        (src / f.name).write_bytes(f.read_bytes())
    (src / "zz_bad.nc").write_bytes(b"not a netcdf file")
    assert main(["create", str(src), str(tmp_path / "a.atlas"), "-j", "0", "-q", "--skip-errors"]) == 0
    assert seen == [False] * 4
    assert gc.isenabled()
    seen.clear()
    assert main(["create", str(src), str(tmp_path / "b.atlas"), "-j", "0", "-q", "--skip-errors",
                 "--chunk-size", "1KiB"]) == 0  # fmt: skip
    assert seen == [True] * 4  # streamed: the collector runs
    assert gc.isenabled()


class _Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_a_pause_released_while_another_thread_holds_one_still_frees_its_cycles():
    """A dask worker's threads run tasks at once: each task's pause overlaps the others',
    so the collector may not come back on for the whole ingest.  A task ending (or a
    streamed file) must still free the cyclic garbage its files left."""
    import threading
    import weakref

    from atlas.cli.ingest import HeldPause

    gc.collect()
    holding, done = threading.Event(), threading.Event()

    def other_task() -> None:  # another worker thread, in the middle of its own task
        pause = HeldPause()
        pause.hold()
        holding.set()
        done.wait(30)
        pause.release()

    thread = threading.Thread(target=other_task)
    thread.start()
    try:
        assert holding.wait(30)
        pause = HeldPause()
        pause.hold()
        garbage = _Cycle()
        ref = weakref.ref(garbage)
        del garbage
        pause.release()  # this task ends; the other one still holds its pause
        assert not gc.isenabled()
        assert ref() is None, "the cycle left by this task's files was not collected"
    finally:
        done.set()
        thread.join(30)
    assert gc.isenabled()


def test_a_pause_released_leaves_a_disabled_collector_alone(monkeypatch):
    """A caller that switched the collector off keeps it off, and gets no collection from us."""
    from atlas.cli.ingest import HeldPause

    collections: list = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    gc.disable()
    try:
        outer = HeldPause()
        outer.hold()
        inner = HeldPause()
        inner.hold()
        inner.release()
        outer.release()
        assert not gc.isenabled() and collections == []
    finally:
        gc.enable()


@pytest.mark.parametrize("error", [KeyboardInterrupt, MemoryError], ids=["interrupt", "fatal"])
def test_collector_is_on_after_a_task_interrupted_mid_file(corpus, tmp_path, monkeypatch, error):
    """An interrupt (or a store error, which aborts the task) while a file is staged under the pause."""
    from atlas.metadata import gc_paused

    real_write = cli_ingest.write_file
    calls: list = []

    def failing_write(store, loaded, *args):
        calls.append(gc.isenabled())
        if len(calls) == 2:
            raise error()
        return real_write(store, loaded, *args)

    monkeypatch.setattr(cli_ingest, "write_file", failing_write)
    files = discover([corpus], True)
    with pytest.raises(error):
        run_task(_task(tmp_path / "a.atlas", files, 1 << 20))
    assert calls == [False, False] and gc.isenabled()
    calls.clear()
    with gc_paused():  # a caller's own pause (the commit path's) outlives the task's
        with pytest.raises(error):
            run_task(_task(tmp_path / "b.atlas", files, 1 << 20))
        assert not gc.isenabled()
    assert gc.isenabled()


def test_atlas_create_interrupted_mid_file_turns_the_collector_back_on(corpus, tmp_path, monkeypatch):
    from atlas.cli.parser import build_parser
    from atlas.cli.sources import discover as find

    real_write = cli_ingest.write_file
    calls: list = []

    def interrupted_write(store, loaded, *args):
        calls.append(gc.isenabled())
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(store, loaded, *args)

    monkeypatch.setattr(cli_ingest, "write_file", interrupted_write)
    args = build_parser().parse_args(["create", str(corpus), str(tmp_path / "c.atlas"), "-j", "0", "-q"])
    with atlas.Atlas.create(tmp_path / "c.atlas") as store, pytest.raises(KeyboardInterrupt):
        cli_ingest.ingest(store, find([corpus], True), args, "create")
    assert calls == [False, False] and gc.isenabled()


def test_a_user_disabled_collector_stays_off_through_a_task(corpus, tmp_path):
    files = discover([corpus], True)
    gc.disable()
    try:
        frag = unpack_fragment(run_task(_task(tmp_path / "s.atlas", files, 1 << 20)))
        assert len(frag.stored) == len(files) and not gc.isenabled()
    finally:
        gc.enable()
