"""One conformance suite for every storage backend.

The same class runs against:

``local``       :class:`atlas.backends.LocalBackend` on a temporary directory;
``localstore``  an ``obstore.store.LocalStore`` handle (served by the native local backend);
``memory``      an ``obstore.store.MemoryStore`` handle;
``s3``          S3 on moto's server (``tests/cloud_servers.py``);
``azure``       Azure Blob on Azurite;
``http``        a plain HTTP range server, read-only: objects are seeded through the
                local directory it serves, every write verb must raise ReadOnlyError.

A service that cannot be installed or started skips its tests with the reason
(shown by ``-ra``), never passes them silently.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cloud_servers import RecordingBackend, populate, snapshot, unique

import atlas
from atlas import errors
from atlas.backends import LocalBackend, resolve
from atlas.backends.base import CALLED_VERBS, VERBS, Backend, CanMap
from atlas.engine.segment_io import SegmentIO

BACKENDS = ["local", "localstore", "memory", "s3", "azure", "http"]


@dataclass
class Subject:
    """A backend under test plus what a test needs to seed and reopen it."""

    kind: str
    backend: Any
    #: Writes setup objects (the backend itself, or the directory an HTTP server serves).
    seed: Any
    #: A new backend on the same location: ``reopen(read_only)``.
    reopen: Callable[[bool], Any]
    #: The local directory holding the objects, when there is one.
    root: Path | None = None

    @property
    def writable(self) -> bool:
        return self.kind != "http"


@pytest.fixture(params=BACKENDS)
def subject(request, tmp_path) -> Subject:
    kind = request.param
    if kind in ("memory", "s3", "azure", "http", "localstore"):
        pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
    if kind == "local":
        root = tmp_path / "store"
        return Subject(kind, LocalBackend(root), None, lambda ro: LocalBackend(root, read_only=ro), root)
    if kind == "localstore":
        from obstore.store import LocalStore

        root = tmp_path / "store"
        root.mkdir()
        return Subject(
            kind, resolve(LocalStore(root), read_only=False), None, lambda ro: resolve(LocalStore(root), ro), root
        )
    if kind == "memory":
        from obstore.store import MemoryStore

        store = MemoryStore()
        return Subject(kind, resolve(store, read_only=False), None, lambda ro: resolve(store, ro))
    if kind == "s3":
        server = request.getfixturevalue("moto_s3")
        bucket = request.getfixturevalue("s3_bucket")
        prefix = unique("conf")
        return Subject(
            kind,
            resolve(server.store(bucket, prefix), read_only=False),
            None,
            lambda ro: resolve(server.store(bucket, prefix), ro),
        )
    if kind == "azure":
        server = request.getfixturevalue("azurite")
        container = request.getfixturevalue("azure_container")
        prefix = unique("conf")
        return Subject(
            kind,
            resolve(server.store(container, prefix), read_only=False),
            None,
            lambda ro: resolve(server.store(container, prefix), ro),
        )
    server = request.getfixturevalue("http_server")
    sub = unique("conf")
    root = server.root / sub
    root.mkdir()
    return Subject(
        kind,
        resolve(server.store(sub), read_only=True),
        LocalBackend(root),
        lambda ro: resolve(server.store(sub), ro),
        root,
    )


def seed(subject: Subject) -> Any:
    return subject.seed if subject.seed is not None else subject.backend


class TestBackendConformance:
    # -- identity -----------------------------------------------------------------------------

    def test_identity(self, subject):
        b = subject.backend
        assert isinstance(b.location, str) and b.location
        assert b.read_only is (subject.kind == "http")
        assert isinstance(b, CanMap) is (subject.kind in ("local", "localstore"))
        assert b.location in repr(b)
        b.close()

    def test_implements_every_verb_of_the_protocol(self, subject):
        b = subject.backend
        declared = {
            name for cls in Backend.__mro__ if cls.__module__ == "atlas.backends.base" for name in vars(cls)
            if not name.startswith("_")
        }  # fmt: skip
        assert declared == set(VERBS)  # VERBS lists the protocol's methods, no more, no less
        assert {"location", "read_only"} <= set(Backend.__annotations__)
        assert set(CALLED_VERBS) <= set(VERBS)
        missing = [verb for verb in VERBS if not callable(getattr(b, verb, None))]
        assert missing == []

    def test_size_and_exists(self, subject):
        seed(subject).put("s/five.af", [b"12345"])
        b = subject.backend
        assert b.exists("s/five.af") is True
        assert b.exists("s/none.af") is False
        assert b.size("s/five.af") == 5
        with pytest.raises(errors.BackendError) as info:
            b.size("s/none.af")
        assert info.value.errno == errno.ENOENT

    # -- whole-object reads --------------------------------------------------------------------

    def test_put_then_get(self, subject):
        seed(subject).put("a/one.af", [b"abc", bytearray(b"de"), memoryview(b"f"), np.frombuffer(b"gh", np.uint8)])
        assert subject.backend.get("a/one.af") == b"abcdefgh"
        data, version = subject.backend.get_versioned("a/one.af")
        assert data == b"abcdefgh" and isinstance(version, str) and version

    def test_missing_object(self, subject):
        b = subject.backend
        assert b.get_versioned("nope.json") is None
        with pytest.raises(errors.BackendError) as info:
            b.get("nope/x.af")
        assert info.value.errno == errno.ENOENT and "nope/x.af" in str(info.value)
        assert isinstance(info.value, OSError)
        with pytest.raises(errors.BackendError) as info:
            b.get_ranges("nope/x.af", [0], [4])
        assert info.value.errno == errno.ENOENT

    # -- ranges --------------------------------------------------------------------------------

    def test_get_ranges(self, subject):
        blob = bytes(range(256)) * 40
        seed(subject).put("r/blob.af", [blob])
        starts = [100, 0, 5000, 100, 10239, 7]
        lengths = [50, 10, 3000, 60, 1, 0]
        got = subject.backend.get_ranges("r/blob.af", starts, lengths)
        assert [bytes(g) for g in got] == [blob[s : s + n] for s, n in zip(starts, lengths)]
        assert subject.backend.get_ranges("r/blob.af", [], []) == []

    def test_segment_io_coalesces_exactly(self, subject):
        blob = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
        seed(subject).put("r/seg.af", [blob])
        rec = RecordingBackend(subject.backend)
        rec.coalesce_bytes = 0
        io = SegmentIO(rec)
        io.can_map = False  # the range path, also for the local backends
        offsets = np.array([128, 64, 1024, 1024, 150_000, 192], np.int64)
        lengths = np.array([64, 64, 100, 100, 30_000, 10], np.int64)
        buf, starts = io.gather("r/seg.af", offsets, lengths)
        for o, n, s in zip(offsets, lengths, starts):
            assert bytes(buf[s : s + n]) == blob[o : o + n]
            assert s % 64 == o % 64  # aligned ranges stay aligned
        # Adjacent ranges merge, duplicates are fetched once, gaps are not read.
        assert rec.calls == [("get_ranges", "r/seg.af", [(64, 138), (1024, 100), (150_000, 30_000)])]
        rec.reset()
        io.coalesce_bytes = 1 << 20
        io.gather("r/seg.af", offsets, lengths)
        assert rec.calls == [("get_ranges", "r/seg.af", [(64, 180_000 - 64)])]

    def test_short_range_is_detected(self, subject):
        seed(subject).put("r/short.af", [b"0123456789"])
        io = SegmentIO(subject.backend)
        io.can_map = False
        with pytest.raises(errors.AtlasError):
            io.read("r/short.af", 8, 5, 10)

    # -- writes --------------------------------------------------------------------------------

    def test_put_is_refused_or_durable(self, subject):
        b = subject.backend
        if not subject.writable:
            with pytest.raises(errors.ReadOnlyError, match="HTTP"):
                b.put("a/x.af", [b"1"])
            return
        b.put("deep/er/x.af", [b"1" * 1000])
        assert subject.reopen(False).get("deep/er/x.af") == b"1" * 1000

    def test_commit_protocol(self, subject):
        b = subject.backend
        if not subject.writable:
            for call in (
                lambda: b.commit("atlas.json", b"{}", None),
                lambda: b.delete("atlas.json"),
            ):
                with pytest.raises(errors.ReadOnlyError, match="HTTP") as info:
                    call()
                assert isinstance(info.value, PermissionError)
            return
        v1 = b.commit("atlas.json", b"generation-1", None)
        assert b.get_versioned("atlas.json") == (b"generation-1", v1)
        with pytest.raises(errors.ConflictError):
            b.commit("atlas.json", b"other", None)  # must not exist
        v2 = b.commit("atlas.json", b"generation-2", v1)
        assert v2 != v1
        other = subject.reopen(False)
        assert other.get_versioned("atlas.json") == (b"generation-2", v2)
        with pytest.raises(errors.ConflictError):
            other.commit("atlas.json", b"stale", v1)  # the version moved on
        assert b.get("atlas.json") == b"generation-2"
        v3 = other.commit("atlas.json", b"generation-3", v2)
        with pytest.raises(errors.ConflictError):
            b.commit("atlas.json", b"late", v2)
        assert b.get_versioned("atlas.json") == (b"generation-3", v3)

    def test_delete(self, subject):
        b = subject.backend
        seed(subject).put("d/x.af", [b"x"])
        if not subject.writable:
            with pytest.raises(errors.ReadOnlyError):
                b.delete("d/x.af")
            return
        b.delete("d/x.af")
        assert b.get_versioned("d/x.af") is None
        b.delete("d/x.af")  # a missing object is not an error
        b.delete("never/was.af")

    def test_read_only_handle_refuses_writes(self, subject):
        seed(subject).put("ro/x.af", [b"x"])
        ro = subject.reopen(True)
        assert ro.read_only
        assert ro.get("ro/x.af") == b"x"
        for call in (
            lambda: ro.put("ro/y.af", [b"y"]),
            lambda: ro.commit("atlas.json", b"{}", None),
            lambda: ro.delete("ro/x.af"),
        ):
            with pytest.raises(errors.ReadOnlyError):
                call()
        assert ro.get("ro/x.af") == b"x"

    # -- listing -------------------------------------------------------------------------------

    def test_list(self, subject):
        s = seed(subject)
        before = time.time() - 120
        s.put("a/1.af", [b"1"])
        s.put("a/2.af", [b"22"])
        s.put("b/3.af", [b"333"])
        if subject.writable:
            subject.backend.commit("atlas.json", b"{}", None)
        else:
            s.commit("atlas.json", b"{}", None)
        b = subject.backend
        # Local stores also hold their commit lock file (.atlas.lock); it is not an object.
        listed = {i.path: i for i in b.list("") if not i.path.startswith(".")}
        if subject.kind == "http":
            # Plain HTTP servers cannot list: the root manifest is found by name.
            assert set(listed) == {"atlas.json"}
        else:
            assert set(listed) == {"a/1.af", "a/2.af", "b/3.af", "atlas.json"}
            assert [listed[p].size for p in ("a/1.af", "a/2.af", "b/3.af")] == [1, 2, 3]
            assert sorted(i.path for i in b.list("a")) == ["a/1.af", "a/2.af"]
            assert list(b.list("zzz")) == []
        for info in listed.values():
            assert before <= info.mtime <= time.time() + 120

    # -- the whole engine through the backend ------------------------------------------------------

    @pytest.mark.parametrize("codec", ["zstd", "none"])
    def test_store_parity(self, subject, tmp_path, codec):
        """Every read, bulk read and stats call answers as on a local store."""
        ref_path = tmp_path / f"reference-{codec}"
        with atlas.Atlas.create(ref_path, codec=codec) as ref:
            populate(ref, n=8)
        want = snapshot(atlas.Atlas.open(ref_path, mode="r"))
        if subject.writable:
            with atlas.Atlas.create(subject.backend, codec=codec) as s:
                populate(s, n=8)
        else:
            with atlas.Atlas.create(subject.root, codec=codec) as s:
                populate(s, n=8)
        opened = atlas.Atlas.open(subject.reopen(True), mode="r")
        assert opened.generation == 3
        assert snapshot(opened) == want
        assert opened.verify() == []
        opened.close()


def test_object_store_locations_without_obstore_name_the_extra(monkeypatch):
    """Runs with or without obstore installed: hide it, then ask for object stores."""
    import sys

    import atlas.backends

    monkeypatch.setitem(sys.modules, "obstore", None)
    monkeypatch.delitem(sys.modules, "atlas.backends.objectstore", raising=False)
    monkeypatch.delattr(atlas.backends, "objectstore", raising=False)
    for url in ("s3://bucket/x", "memory://", "az://c/x", "gs://b/x", "https://example.invalid/x"):
        with pytest.raises(errors.MissingDependencyError, match=r"atlas-store\[cloud\]") as info:
            resolve(url, read_only=True)
        assert isinstance(info.value, ImportError)
    assert isinstance(resolve("file:///tmp/x", read_only=True), LocalBackend)  # local paths never need it
