"""The whole API on object stores: in memory, S3 (moto) and Azure (Azurite).

Every scenario runs on the object store and on a local reference store and compares
everything readable (``cloud_servers.snapshot``).  Services that cannot be started
skip with their reason.  Also here: conflicts between handles with refresh-and-retry,
the lost-response guard of the conditional manifest put (a fault-injecting wrapper
around obstore), HTTP read-only serving of a store written locally, fork detection,
memory-store locations in other processes, and how locations and options resolve.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cloud_servers import RecordingBackend, populate, snapshot, unique

import atlas
import atlas.backends
from atlas import errors
from atlas.backends import resolve

obstore = pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
objectstore = pytest.importorskip("atlas.backends.objectstore")
obx = pytest.importorskip("obstore.exceptions")

CLOUDS = ["memory", "s3", "azure"]


class Cloud:
    """Makes fresh, empty store handles of one kind."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        if kind == "s3":
            self.server = request.getfixturevalue("moto_s3")
            self.space = request.getfixturevalue("s3_bucket")
        elif kind == "azure":
            self.server = request.getfixturevalue("azurite")
            self.space = request.getfixturevalue("azure_container")
        self._memory: dict[str, Any] = {}

    def handle(self, name: str | None = None) -> Any:
        """A store handle (the same store again for the same ``name``)."""
        name = name or unique("store")
        if self.kind == "memory":
            from obstore.store import MemoryStore

            return self._memory.setdefault(name, MemoryStore())
        return self.server.store(self.space, name)


@pytest.fixture(params=CLOUDS)
def cloud(request) -> Cloud:
    return Cloud(request.param, request)


def _scenario_steps() -> list:
    """Changes applied alike to the cloud store and the local reference."""

    def write_more(s):
        ds = s.open_dataset("d001")
        ds.write_array("grid", [1, 1, 1], np.full((2, 3, 4), 42.0))
        ds.set_attribute("edited", True)
        s.create_dataset("late").define_array("grid", "float64", ["x", "y", "t"], [13, 11, 7], fill_value=0.0)

    def delete_some(s):
        s.delete_dataset("d002")
        s.open_dataset("d004").delete_array("noise")
        s.open_dataset("d005").delete_attribute("scale")

    return [write_more, delete_some]


def test_whole_api_matches_local(cloud, tmp_path):
    handle = cloud.handle()
    ref_path = tmp_path / "ref"
    stores = [atlas.Atlas.create(ref_path), atlas.Atlas.create(handle)]
    for s in stores:
        populate(s, n=9, flushes=3)
    assert stores[1].location.startswith({"memory": "memory://", "s3": "s3://", "azure": "az://"}[cloud.kind])
    for step in _scenario_steps():
        for s in stores:
            step(s)
            assert s.has_pending_changes
            s.flush()
        want = snapshot(atlas.Atlas.open(ref_path, mode="r"))
        reopened = atlas.Atlas.open(handle, mode="r")
        assert reopened.generation == stores[1].generation
        assert snapshot(reopened) == want
    # compact: one segment per array name, the garbage is gone, nothing changed
    backend = stores[1]._st.backend
    before = {i.path for i in backend.list("")}
    for s in stores:
        s.compact(grace_period=0)
    after = {i.path for i in backend.list("")}
    manifest = stores[1]._st.base
    referenced = {f"{f.dir}/{r.file}" for f in manifest.families.values() for r in f.segments}
    referenced |= {p.path for p in manifest.parts}
    assert len(manifest.parts) == 1  # compaction merges the catalogue parts into one
    assert after == referenced | {"atlas.json"}
    assert len(after) < len(before)
    assert all(len(f.segments) == 1 for f in manifest.families.values())
    want = snapshot(atlas.Atlas.open(ref_path, mode="r"))
    assert snapshot(atlas.Atlas.open(handle, mode="r")) == want
    assert atlas.Atlas.open(handle, mode="r").verify() == []
    for s in stores:
        s.close()


def test_create_refuses_existing_store_and_open_refuses_empty(cloud):
    handle = cloud.handle()
    with pytest.raises(errors.NotAStoreError):
        atlas.Atlas.open(handle)
    atlas.Atlas.create(handle, meta_format="msgpack", meta_compression="zstd").close()
    with pytest.raises(errors.StoreExistsError):
        atlas.Atlas.create(handle)
    s = atlas.Atlas.open(handle)
    assert s._st.manifest_name == "atlas.msgpack.zst"
    s.create_dataset("x").set_attribute("k", "v")
    s.close()
    assert atlas.Atlas.open(handle, mode="r").open_dataset("x").get_attribute("k") == "v"


def test_bulk_read_fetches_exactly_the_touched_chunks(cloud, tmp_path):
    handle = cloud.handle()
    with atlas.Atlas.create(handle) as s:
        populate(s, n=12, flushes=4)
    inner = resolve(handle, read_only=True)
    inner.coalesce_bytes = 0  # so every request is exactly one touched chunk (or adjacent ones)
    rec = RecordingBackend(inner)
    s = atlas.Atlas.open(rec, mode="r")
    names = s.list_datasets()
    engine = s._st.engine("grid")
    rec.reset()
    got = s.read_array_across_stacked("grid", names, [2, 1, 1], [9, 8, 5])
    # 4 index reads (one round, concurrent), then one get_ranges call per segment
    segments = [engine.path(ref) for ref in engine.family.segments]
    assert len(segments) == 4
    calls = [c for c in rec.calls if c[0] == "get_ranges"]
    assert sorted(c[1] for c in calls) == sorted(segments * 2)
    idx = engine.index()
    slots = np.array([s._st.dataset(n).arrays["grid"].slot for n in names], np.uint64)
    from atlas.engine.planner import plan_selection

    plan = plan_selection((13, 11, 7), (5, 4, 3), (2, 1, 1), (9, 8, 5))
    pos = idx.find_many(slots, plan.chunk_ids).reshape(-1)
    pos = pos[pos >= 0]
    touched = {(engine.path(engine.segments()[int(idx.seg[p])]), int(idx.table[p]["offset"])) for p in pos}
    fetched_bytes = sum(n for c in calls[4:] for _, n in c[2])
    assert fetched_bytes == int(idx.table[pos]["nbytes"].sum())  # no byte beyond the touched chunks
    assert len(touched) == len(pos)
    # Compare with a local store holding the same data.
    with atlas.Atlas.create(tmp_path / "ref") as ref:
        populate(ref, n=12, flushes=4)
    want = atlas.Atlas.open(tmp_path / "ref", mode="r").read_array_across_stacked("grid", names, [2, 1, 1], [9, 8, 5])
    np.testing.assert_array_equal(got, want)
    # A second bulk read reuses the index: one call per segment, nothing else.
    rec.reset()
    s.read_array_across("noise", names[::2])
    assert rec.count() == rec.count("get_ranges") == 2 * len(s._st.engine("noise").family.segments)


def test_bulk_reads_of_spilled_and_repeated_datasets(cloud):
    """Spilled (uncommitted) segments and repeated names take the same range path."""
    handle = cloud.handle()
    s = atlas.Atlas.create(handle, max_pending_bytes=0)  # every write spills a segment
    data = {}
    for i in range(6):
        ds = s.create_dataset(f"d{i}")
        ds.define_array("v", "int64", ["i"], [40], chunk_shape=[8], fill_value=-7)
        data[f"d{i}"] = np.arange(40, dtype="int64") * (i + 1)
        ds.write_array("v", [0], data[f"d{i}"])
    engine = s._st.engine("v")
    assert engine.spilled and not engine.pending
    names = ["d3", "d0", "d3", "d5"]
    want = np.stack([data[n][5:30] for n in names])
    np.testing.assert_array_equal(s.read_array_across_stacked("v", names, [5], [25]), want)
    s.flush()
    np.testing.assert_array_equal(s.read_array_across_stacked("v", names, [5], [25]), want)
    reopened = atlas.Atlas.open(handle, mode="r")
    np.testing.assert_array_equal(reopened.read_array_across_stacked("v", names, [5], [25]), want)
    s.close()


def test_fetches_run_concurrently_up_to_the_cap():
    from obstore.store import MemoryStore

    handle = MemoryStore()
    with atlas.Atlas.create(handle) as s:
        populate(s, n=8, flushes=8)
    for cap, expect in ((16, lambda m: m > 1), (1, lambda m: m == 1)):
        rec = RecordingBackend(resolve(handle, read_only=True, max_concurrency=cap), latency=0.02)
        assert rec.max_concurrency == cap
        s = atlas.Atlas.open(rec, mode="r")
        rec.reset()
        s.read_array_across_stacked("grid", s.list_datasets())
        assert expect(rec.max_inflight), (cap, rec.max_inflight)


def test_conflicts_refresh_and_retry(cloud):
    name = unique("conflict")
    handle = cloud.handle(name)
    with atlas.Atlas.create(handle) as s:
        s.create_dataset("base").set_attribute("v", 0)
    a = atlas.Atlas.open(handle)
    b = atlas.Atlas.open(cloud.handle(name))  # another client of the same store
    a.create_dataset("from_a").set_attribute("who", "a")
    b.create_dataset("from_b").set_attribute("who", "b")
    a.flush()
    with pytest.raises(errors.ConflictError):
        b.flush()
    assert b.has_pending_changes
    for _ in range(3):  # the documented loop (bounded)
        try:
            b.flush()
            break
        except errors.ConflictError:
            b.refresh()
    assert not b.has_pending_changes
    final = atlas.Atlas.open(handle, mode="r")
    assert final.list_datasets() == ["base", "from_a", "from_b"]
    assert final.generation == 3
    # Both change the same dataset: refresh refuses and changes nothing.
    a.refresh()
    a.open_dataset("base").set_attribute("v", 1)
    b.open_dataset("base").set_attribute("v", 2)
    a.flush()
    with pytest.raises(errors.ConflictError):
        b.flush()
    with pytest.raises(errors.ConflictError, match="base"):
        b.refresh()
    b.discard()
    assert atlas.Atlas.open(handle, mode="r").open_dataset("base").get_attribute("v") == 1


# -- the lost-response guard --------------------------------------------------------------------------


class LossyObstore:
    """Wrap the ``obstore`` module the backend calls; fail the next manifest put one way.

    ``lost``         the put lands, then a connection error is raised (response lost);
    ``retried-412``  the put lands, then the precondition fails (an internal retry);
    ``failed``       a connection error, the put did not land;
    ``unsupported``  the store has no conditional put.
    """

    def __init__(self, real: Any, how: str) -> None:
        self.real = real
        self.how = how
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put(self, store: Any, path: str, data: Any, **kw: Any) -> Any:
        if self.fired or not path.endswith("atlas.json") or kw.get("mode") in (None, "overwrite"):
            return self.real.put(store, path, data, **kw)
        self.fired = True
        if self.how in ("lost", "retried-412"):
            self.real.put(store, path, data, **kw)
            if self.how == "lost":
                raise obx.GenericError("error sending request: connection reset by peer")
            raise obx.PreconditionError("Request precondition failure: the ETag does not match")
        if self.how == "failed":
            raise obx.GenericError("error sending request: connection reset by peer")
        raise obx.NotSupportedError("Operation not supported: conditional put")


@pytest.mark.parametrize("how", ["lost", "retried-412"])
def test_lost_response_is_not_a_conflict(cloud, monkeypatch, how):
    handle = cloud.handle()
    atlas.Atlas.create(handle).close()
    s = atlas.Atlas.open(handle)
    s.create_dataset("x").set_attribute("k", 1)
    lossy = LossyObstore(objectstore.obstore, how)
    monkeypatch.setattr(objectstore, "obstore", lossy)
    s.flush()  # the put landed: success, not ConflictError
    assert lossy.fired and not s.has_pending_changes and s.generation == 1
    monkeypatch.undo()
    s.open_dataset("x").set_attribute("k", 2)
    s.flush()  # the handle holds the right version: the next commit works
    assert atlas.Atlas.open(handle, mode="r").open_dataset("x").get_attribute("k") == 2


def test_failed_put_is_an_error_not_a_conflict_and_can_be_retried(cloud, monkeypatch):
    handle = cloud.handle()
    atlas.Atlas.create(handle).close()
    s = atlas.Atlas.open(handle)
    s.create_dataset("x")
    lossy = LossyObstore(objectstore.obstore, "failed")
    monkeypatch.setattr(objectstore, "obstore", lossy)
    with pytest.raises(errors.BackendError, match="connection reset") as info:
        s.flush()
    assert not isinstance(info.value, errors.ConflictError)
    assert s.has_pending_changes and lossy.fired
    s.flush()
    assert atlas.Atlas.open(handle, mode="r").list_datasets() == ["x"]


def test_ambiguous_failure_after_another_commit_is_a_conflict(monkeypatch):
    from obstore.store import MemoryStore

    handle = MemoryStore()
    atlas.Atlas.create(handle).close()
    a, b = atlas.Atlas.open(handle), atlas.Atlas.open(handle)
    a.create_dataset("a")
    a.flush()
    b.create_dataset("b")
    monkeypatch.setattr(objectstore, "obstore", LossyObstore(objectstore.obstore, "failed"))
    with pytest.raises(errors.ConflictError):
        b.flush()
    b.refresh()
    b.flush()
    assert atlas.Atlas.open(handle, mode="r").list_datasets() == ["a", "b"]


def test_store_without_conditional_put_is_refused(monkeypatch):
    from obstore.store import MemoryStore

    handle = MemoryStore()
    atlas.Atlas.create(handle).close()
    s = atlas.Atlas.open(handle)
    s.create_dataset("x")
    monkeypatch.setattr(objectstore, "obstore", LossyObstore(objectstore.obstore, "unsupported"))
    with pytest.raises(errors.BackendError, match="does not support conditional writes"):
        s.flush()
    assert s.has_pending_changes
    s.discard()


# -- HTTP -------------------------------------------------------------------------------------------


def test_http_serves_a_store_written_locally(request, tmp_path):
    server = request.getfixturevalue("http_server")
    sub = unique("served")
    with atlas.Atlas.create(server.root / sub, codec="lz4") as s:
        populate(s, n=6)
    want = snapshot(atlas.Atlas.open(server.root / sub, mode="r"))
    url = f"{server.url}/{sub}"
    store = atlas.Atlas.open(server.store(sub), mode="r")
    assert store.location == url
    assert snapshot(store) == want
    assert store.verify() == []
    # A URL of this process resolves to the configured handle again.
    assert snapshot(atlas.Atlas.open(url, mode="r")) == want
    writable = atlas.Atlas.open(url)
    writable.create_dataset("nope")
    with pytest.raises(errors.ReadOnlyError, match="HTTP") as info:
        writable.flush()
    assert isinstance(info.value, PermissionError) and writable.has_pending_changes
    writable.discard()
    with pytest.raises(errors.ReadOnlyError, match="HTTP"):
        atlas.Atlas.create(f"{server.url}/{unique('new')}")
    with pytest.raises(errors.NotAStoreError):
        atlas.Atlas.open(f"{server.url}/{unique('missing')}", mode="r")


# -- processes ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_use_in_a_forked_child_fails_clearly(kind, request):
    cloud = Cloud(kind, request)
    handle = cloud.handle()
    with atlas.Atlas.create(handle) as s:
        s.create_dataset("x")
    store = atlas.Atlas.open(handle, mode="r")
    store.open_dataset("x")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            signal.alarm(20)  # never hang the test run
            os.close(r)
            try:
                atlas.Atlas.open(handle, mode="r")
                msg = "no error"
            except errors.BackendError as exc:
                msg = str(exc)
                code = 0
            os.write(w, msg.encode()[:4000])
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        msg = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, msg)
    assert "fork" in msg and "spawn" in msg and "forkserver" in msg
    assert store.list_datasets() == ["x"]  # the parent is unaffected


def test_memory_store_location_fails_clearly_in_another_process():
    from obstore.store import MemoryStore

    handle = MemoryStore()
    with atlas.Atlas.create(handle) as s:
        s.create_dataset("x")
    location = s.location
    assert location.startswith("memory://atlas-")
    # In this process the location reaches the same store (the xarray reader's threads).
    assert atlas.Atlas.open(location, mode="r").list_datasets() == ["x"]
    code = textwrap.dedent(
        f"""
        import atlas
        try:
            atlas.Atlas.open({location!r}, mode="r")
        except atlas.errors.NotAStoreError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "in-memory store" in out.stdout and "process" in out.stdout, out.stdout
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(resolve(handle, True))


def test_xarray_reads_lazily_from_a_memory_store():
    xr = pytest.importorskip("xarray")
    pytest.importorskip("dask")
    from obstore.store import MemoryStore

    handle = MemoryStore()
    ds = xr.Dataset(
        {"t": (("time", "x"), np.arange(60.0).reshape(6, 10))},
        coords={"time": np.arange(6), "x": np.arange(10)},
    )
    with atlas.Atlas.create(handle) as s:
        s.add_xr_dataset(ds, "obs", chunks={"time": 2, "x": 5})
    store = atlas.Atlas.open(handle, mode="r")
    back = store.to_xarray("obs")
    np.testing.assert_array_equal(back["t"].compute(scheduler="threads").values, ds["t"].values)


# -- resolving locations and options ------------------------------------------------------------------


def test_urls_and_options(request):
    moto = request.getfixturevalue("moto_s3")
    bucket = request.getfixturevalue("s3_bucket")
    prefix = unique("url")
    url = f"s3://{bucket}/{prefix}"
    backend = resolve(url, read_only=False, max_concurrency=4, **moto.options())
    assert backend.location == url and backend.max_concurrency == 4
    with atlas.Atlas.create(backend) as s:
        s.create_dataset("x").set_attribute("a", 1)
    # Without options the URL resolves to the handle configured above (same process).
    again = atlas.Atlas.open(url, mode="r")
    assert again.location == url and again.list_datasets() == ["x"]
    assert atlas.Atlas.open(moto.store(bucket, prefix), mode="r").location == url
    # The same options through the public API.
    other = f"s3://{bucket}/{unique('opts')}"
    with atlas.Atlas.create(other, storage_options={**moto.options(), "max_concurrency": 2}) as s:
        y = s.create_dataset("y")
        y.define_array("v", "int16", ["n"], [3])
        y.write_array("v", None, np.arange(3, dtype="int16"))
    reopened = atlas.Atlas.open(other, mode="r", storage_options=moto.options())
    assert reopened.open_dataset("y").read_array("v").tolist() == [0, 1, 2]
    with pytest.raises(errors.InvalidArgumentError):
        atlas.Atlas.open(str(request.getfixturevalue("tmp_path")), storage_options={"region": "x"})
    with pytest.raises(errors.InvalidArgumentError):
        resolve(f"s3://{bucket}/other", read_only=True, no_such_option=1)
    with pytest.raises(errors.InvalidArgumentError, match="existing store handle"):
        resolve(moto.store(bucket, prefix), read_only=True, region="eu-west-1")
    with pytest.raises(errors.InvalidArgumentError):
        resolve(moto.store(bucket, prefix), read_only=True, max_concurrency=0)


def test_storage_options_not_plain_keywords_and_in_the_xarray_backend(request, tmp_path):
    xr = pytest.importorskip("xarray")
    moto = request.getfixturevalue("moto_s3")
    bucket = request.getfixturevalue("s3_bucket")
    url = f"s3://{bucket}/{unique('xr-opts')}"
    for call in (atlas.Atlas.create, atlas.Atlas.open):
        with pytest.raises(errors.UnexpectedKeywordError, match=r"storage_options=\{'endpoint': \.\.\.") as info:
            call(url, endpoint=moto.endpoint)
        assert isinstance(info.value, TypeError) and call.__name__ in str(info.value)
    ds = xr.Dataset({"t": ("x", np.arange(5.0))})
    with atlas.Atlas.create(url, storage_options=moto.options()) as s:
        s.add_xr_dataset(ds, "obs")
    # A fresh process has no handle registered for the URL: clear this one's and open with options only.
    from atlas.backends import objectstore

    with objectstore._registry_lock:
        objectstore._HANDLES.pop(url, None)
    back = xr.open_dataset(url, engine="atlas", group="obs", storage_options=moto.options())
    xr.testing.assert_identical(back.load(), ds)
    with pytest.raises(errors.InvalidArgumentError, match="local stores take no storage options"):
        xr.open_dataset(tmp_path, engine="atlas", storage_options={"region": "x"})


def test_local_store_handle_failures_are_one_line_backend_errors(tmp_path):
    from obstore.store import LocalStore

    root = tmp_path / "gone"
    root.mkdir()
    handle = LocalStore(root)
    root.rmdir()
    root.write_text("now a file")
    with pytest.raises(errors.AtlasError) as info:
        atlas.Atlas.create(handle)
    assert isinstance(info.value, OSError) and "\n" not in str(info.value) and "Debug" not in str(info.value)


def test_memory_urls_and_local_handles(tmp_path):
    from obstore.store import LocalStore

    name = f"memory://{unique('named')}"
    with atlas.Atlas.create(name) as s:
        s.create_dataset("x")
    assert atlas.Atlas.open(name, mode="r").list_datasets() == ["x"]
    objectstore.forget_memory(name)
    with pytest.raises(errors.NotAStoreError):
        atlas.Atlas.open(name, mode="r")
    anon = atlas.Atlas.create("memory://")
    assert anon.location.startswith("memory://atlas-")
    anon.close()
    # LocalStore handles are served by the memory-mapped local backend.
    root = tmp_path / "local"
    root.mkdir()
    backend = resolve(LocalStore(root), read_only=False)
    assert type(backend).__name__ == "LocalBackend" and Path(backend.location) == root
    with atlas.Atlas.create(LocalStore(root)) as s:
        s.create_dataset("x")
    assert atlas.Atlas.open(root, mode="r").list_datasets() == ["x"]
    assert atlas.Atlas.open(f"file://{root}", mode="r").list_datasets() == ["x"]


# -- docs/cloud-storage.md ------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "cloud-storage.md"


def _doc_blocks() -> dict[str, str]:
    import re

    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    kinds = {
        "S3Store": "s3",
        "AzureStore": "azure",
        "GCSStore": "gcs",
        "LocalStore": "localstore",
        "data.example.org": "http",
        "refresh()": "conflicts",
        "MemoryStore": "memory",
    }
    out: dict[str, str] = {}
    for block in blocks:
        kind = next(k for marker, k in kinds.items() if marker in block)
        assert kind not in out, f"two {kind} examples in {DOC.name}"
        out[kind] = block
    return out


def test_docs_have_an_example_per_backend():
    assert set(_doc_blocks()) == {"memory", "localstore", "s3", "azure", "gcs", "http", "conflicts"}


@pytest.mark.parametrize("kind", ["memory", "localstore", "conflicts", "s3", "azure", "http"])
def test_docs_examples_run(kind, request, monkeypatch, tmp_path, capsys):
    """Each example runs as written; only names and endpoints are pointed at the emulators."""
    code = _doc_blocks()[kind]
    if kind == "s3":
        server = request.getfixturevalue("moto_s3")
        for key, value in {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }.items():
            monkeypatch.setenv(key, value)
        code = code.replace("my-bucket", request.getfixturevalue("s3_bucket"))
    elif kind == "azure":
        from cloud_servers import AZURITE_ACCOUNT, AZURITE_KEY

        server = request.getfixturevalue("azurite")
        for key, value in {
            "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
            "AZURE_STORAGE_ENDPOINT": server.endpoint,
            "AZURE_ALLOW_HTTP": "true",
        }.items():
            monkeypatch.setenv(key, value)
        code = code.replace("my-container", request.getfixturevalue("azure_container"))
    elif kind == "http":
        server = request.getfixturevalue("http_server")
        sub = unique("docs")
        with atlas.Atlas.create(server.root / sub / "obs.atlas") as s:
            for i in range(3):
                ds = s.create_dataset(f"station_{i}")
                ds.define_array("temp", "float32", ["time"], [4])
                ds.write_array("temp", [0], np.arange(4, dtype="float32") + i)
        code = code.replace("https://data.example.org", f"{server.url}/{sub}")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{DOC.name}:{kind}", "exec"), {})
    printed = capsys.readouterr().out
    if kind == "http":
        assert "read-only" in printed and "station_2" in printed
    if kind == "s3":
        assert "s3://" in printed
