"""Fault injection: every backend call of create, flush, compact and spilling writes fails once.

One suite, parametrised over backends (:data:`TARGETS`): local disk, where a
wrapper around :class:`~atlas.backends.LocalBackend` fails a verb
(:class:`faults.FaultyBackend`; kinds: I/O error, ENOSPC, short write), and object
stores (``MemoryStore`` and S3 on moto), where :class:`faults.FaultyObstore` stands
in for the ``obstore`` module inside :mod:`atlas.backends.objectstore`, so the
backend's own error translation and its recovery from lost responses are tested
too (kinds: error, ``full`` = HTTP 507, ``lost`` = the request lands and its
response is lost, ``lost-retry`` = the client's retry then fails the precondition).

For each operation the call sequence is first recorded un-armed; then, for every
call k of that sequence and every failure kind that fits it, a fresh copy of the
same store is built, the k-th call is made to fail, and the test checks (one
subtest per case, all problems reported):

* when the fault must fail the operation, the error is an
  :class:`~atlas.errors.AtlasError` -- a :class:`~atlas.errors.BackendError`
  carrying the injected errno (``EIO`` on object stores, which have no
  ``ENOSPC``), never a conflict -- whose message names the backend operation and
  the object; a lost manifest ``put`` (or a lost-retry) must *not* fail the commit:
  the backend reads the manifest back and finds its own bytes;
* a fresh ``Atlas.open`` sees exactly the old committed state A, or exactly the new
  state B when the fault came after the commit point (or was recognised), and every
  referenced byte verifies and every array reads without checksum errors;
* the failed handle still shows B (no pending change lost), and retrying the
  operation on the *same* handle, disarmed, commits exactly B.

Commit points, from the code: ``flush`` makes only calls up to and including the
manifest commit, so every fault leaves A.  ``compact`` with pending changes first
commits them like a flush (faults up to that commit leave A), then writes and
commits the compacted segments (faults up to that second commit leave B, at the
generation after A), then deletes retired segments and sweeps debris.  A fault in
that last phase hits a compaction that is already committed: the store is B and
``compact()`` must not raise (leftovers are swept by a later compaction).

Each operation runs on a handle that reads by memory maps (local only), one that
uses range reads, and one with ``max_pending_bytes=0`` whose pending writes were all
spilled to uncommitted segments before the flush.  A further test fails every call
made by those spilling writes themselves.  On S3 (every request costs milliseconds)
the default run injects ``error`` at every call of create and flush and at the first
read, write or delete of each segment family in each phase of compact, plus both
lost-response kinds at every manifest commit; the exhaustive S3 runs are ``slow``.

State A has two generations (so segments hold dead records), a dataset deleted in
the second one and unreferenced debris (an old orphan segment and a stale temp
file) for compaction's sweep.  The pending changes B overwrite whole and partial
chunks of existing datasets (float, int, string), define, write and delete arrays,
delete a dataset, create one (uint64 near 2**64, string) and change attributes.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults import (
    KINDS,
    OP_WORDS,
    WRITE_VERBS,
    Call,
    FaultyBackend,
    FaultyObstore,
    kinds_for,
    object_kinds_for,
    patched_resolve,
    record_fault_figures,
)

import atlas
import atlas.store
from atlas import errors
from atlas.backends import LocalBackend
from atlas.backends.base import VERBS, CanMap
from atlas.engine.segment_io import SegmentIO
from atlas.txn.leases import is_lease

Case = tuple[int, Call, str]

# -- the scenario ----------------------------------------------------------------------------


def build_a_generations(source: Any) -> None:
    """The two committed generations of state A (no debris), on any store location."""
    with atlas.Atlas.create(source) as s:
        for i, name in enumerate(["alpha", "beta", "gamma", "old"]):
            ds = s.create_dataset(name)
            ds.define_array("temp", "float32", ["t", "x"], [40, 6], chunk_shape=[16, 4])
            temp = np.arange(240, dtype="float32").reshape(40, 6) + i
            temp[5, 1] = np.nan
            ds.write_array("temp", [0, 0], temp)
            ds.define_array("count", "int64", ["n"], [50], chunk_shape=[16], fill_value=-1 if i % 2 else None)
            ds.write_array("count", [3], np.arange(30, dtype="int64") * (i + 1) - 7)
            ds.define_array("label", "string", ["n"], [12], chunk_shape=[5])
            ds.write_array("label", [0], np.array([f"{name}-{j}-é" for j in range(9)], dtype=object))
            ds.set_attribute("index", i)
            ds.set_attribute("title", f"dataset {name}")
        s.open_dataset("gamma").define_array("scalar", "float64", [], [], fill_value=0.5)
    with atlas.Atlas.open(source) as s:
        s.open_dataset("alpha").write_array("temp", [16, 0], np.full((16, 6), 7.5, "float32"))
        s.open_dataset("beta").write_array("count", [0], np.array([5, 6], "int64"))
        s.open_dataset("gamma").write_array("scalar", [], np.array(2.25))
        s.open_dataset("gamma").set_attribute("revised", True)
        s.delete_dataset("old")


#: Unreferenced objects a crashed writer could leave (an orphan segment, a torn temp file).
DEBRIS = {
    "temp/000000000002-00000000deadbeef.af": b"\x89ATLAS\r\n orphan",
    ".atlas.json.0badf00d.tmp": b'{"torn',
}


def _build_a(path: Path) -> None:
    """Committed state A: generation 2, with dead records, a deleted dataset, debris."""
    build_a_generations(path)
    # Debris a crashed writer could leave: an unreferenced segment and a temp file.
    debris = LocalBackend(path)
    old = 1_000_000_000  # 2001: far older than any grace period
    for name, data in DEBRIS.items():
        debris.put(name, [data])
        os.utime(path / name, (old, old))


def _b_steps() -> list[tuple[str, Callable[[atlas.Atlas], None]]]:
    """Pending changes B on top of A, one API call per step (each can be retried)."""

    def ds(name: str) -> Callable[[atlas.Atlas], Any]:
        return lambda s: s.open_dataset(name)

    alpha, beta, eps = ds("alpha"), ds("beta"), ds("epsilon")
    return [
        (
            "alpha.temp: a whole chunk",
            lambda s: alpha(s).write_array("temp", [0, 0], np.full((16, 4), -2.0, "float32")),
        ),
        (
            "alpha.label: part of a string chunk",
            lambda s: alpha(s).write_array("label", [3], np.array(["x", "yy"], object)),
        ),
        ("alpha: set title", lambda s: alpha(s).set_attribute("title", "alpha v2")),
        ("alpha: delete index", lambda s: alpha(s).delete_attribute("index")),
        # a whole chunk of an array whose index this handle has not loaded yet
        (
            "beta.count: a whole chunk",
            lambda s: beta(s).write_array("count", [16], np.arange(16, dtype="int64") + 1000),
        ),
        ("beta: define flag", lambda s: beta(s).define_array("flag", "bool", ["n"], [10], chunk_shape=[4])),
        ("beta.flag: write", lambda s: beta(s).write_array("flag", [2], np.array([True, False, True]))),
        ("beta: delete label", lambda s: beta(s).delete_array("label")),
        ("beta: set levels", lambda s: beta(s).set_attribute("levels", [1.5, 2.5, float("nan")])),
        ("delete gamma", lambda s: s.delete_dataset("gamma")),
        ("create epsilon", lambda s: s.create_dataset("epsilon")),
        ("epsilon: define count", lambda s: eps(s).define_array("count", "uint64", ["n"], [20], chunk_shape=[8])),
        (
            "epsilon.count: write",
            lambda s: eps(s).write_array("count", [0], np.array([2**64 - 1, 0, 2**63], dtype="uint64")),
        ),
        ("epsilon: define label", lambda s: eps(s).define_array("label", "string", ["n"], [4])),
        ("epsilon.label: write", lambda s: eps(s).write_array("label", [1], np.array(["new ✓"], dtype=object))),
        ("epsilon: set when", lambda s: eps(s).set_attribute("when", np.datetime64("2024-01-02T03:04:05", "ns"))),
    ]


B_STEPS = _b_steps()


def _apply_b(s: atlas.Atlas) -> None:
    for _, step in B_STEPS:
        step(s)


# -- comparing stores --------------------------------------------------------------------------


def _canon(x: Any) -> Any:
    """A structure that compares equal exactly when the values are identical (NaN == NaN)."""
    if isinstance(x, dict):
        return tuple((k, _canon(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return tuple(_canon(v) for v in x)
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return ("objects", x.shape, tuple(_canon(v) for v in x.reshape(-1).tolist()))
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, np.generic):
        return ("np", x.dtype.str, x.tobytes())
    if isinstance(x, float):
        return ("float", "nan" if math.isnan(x) else x.hex())
    return (type(x).__name__, x)


def snapshot(s: atlas.Atlas) -> dict[str, Any]:
    """Everything a user can see: datasets, attributes, array schemas, data, stats."""
    out = {}
    for name in s.list_datasets():
        ds = s.open_dataset(name)
        arrays = {}
        for a in ds.list_arrays():
            arrays[a] = (
                _canon(ds.array_meta(a)),
                _canon(ds.read_array(a)),
                _canon(ds.array_stats(a)),
            )
        out[name] = (_canon(ds.attributes()), arrays)
    return out


def disk_state(path: Path) -> tuple[int, dict[str, Any]]:
    """Generation and content of a fresh handle on ``path`` (reads every chunk)."""
    s = atlas.Atlas.open(path, mode="r")
    try:
        if hasattr(s, "verify"):  # every byte the manifest references is intact
            problems = s.verify()
            assert problems == [], problems
        return s.generation, snapshot(s)
    finally:
        s.close()


def describe_diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    if set(got) != set(want):
        return f"datasets {sorted(got)} != {sorted(want)}"
    bad = []
    for name in sorted(want):
        g_attrs, g_arrays = got[name]
        w_attrs, w_arrays = want[name]
        if g_attrs != w_attrs:
            bad.append(f"{name}: attributes differ")
        if set(g_arrays) != set(w_arrays):
            bad.append(f"{name}: arrays {sorted(g_arrays)} != {sorted(w_arrays)}")
            continue
        for a in sorted(w_arrays):
            for what, g, w in zip(("meta", "data", "stats"), g_arrays[a], w_arrays[a], strict=True):
                if g != w:
                    bad.append(f"{name}/{a}: {what} differ")
    return "; ".join(bad) or "equal"


class Checks:
    """Soft assertions: one subtest reports every violated expectation at once."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.problems: list[str] = []

    def expect(self, cond: bool, msg: str) -> None:
        if not cond:
            self.problems.append(msg)

    def state(self, path: Path, want: tuple[int | None, dict[str, Any]], what: str) -> None:
        try:
            gen, content = disk_state(path)
        except Exception as exc:  # a half-written store must never be referenced
            self.problems.append(f"{what}: fresh Atlas.open/read failed: {type(exc).__name__}: {exc}")
            return
        want_gen, want_content = want
        if want_gen is not None:
            self.expect(gen == want_gen, f"{what}: generation {gen}, expected {want_gen}")
        self.expect(content == want_content, f"{what}: content differs: {describe_diff(content, want_content)}")

    def done(self) -> None:
        assert not self.problems, f"{self.label}:\n  " + "\n  ".join(self.problems)




# -- backends under test -------------------------------------------------------------------------

_OBJECT_OP_WORD = {"get": "read", "get_ranges": "read", "head": "stat", "list": "list", "delete": "delete"}


def _obstore() -> Any:
    return pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")


def _keys(obstore: Any, store: Any) -> list[str]:
    return sorted(meta["path"] for batch in obstore.list(store) for meta in batch)


def _is_manifest(key: str) -> bool:
    return "/" not in key and key.startswith("atlas.") and not key.endswith(".tmp")


@dataclass(frozen=True)
class Variant:
    """How the handle under test reads (memory maps or range reads) and spills."""

    expose_map: bool = True
    max_pending_bytes: int | None = None  # None: the default budget (nothing spills here)

    @property
    def id(self) -> str:
        return ("mmap" if self.expose_map else "get_ranges") + ("-spill" if self.max_pending_bytes is not None else "")

    def options(self) -> dict[str, Any]:
        return {} if self.max_pending_bytes is None else {"max_pending_bytes": self.max_pending_bytes}


@dataclass
class Template:
    """State A (copied per case) and the states A and B seen by a fresh handle."""

    fresh: Callable[[str], Any]
    new: Callable[[str], Any]
    want_a: tuple[int, dict[str, Any]]
    want_b: tuple[int, dict[str, Any]]


class Injector:
    """The fault injector of one handle, the same for every backend."""

    def __init__(self, inner: Any, local: bool) -> None:
        self.inner = inner
        self.local = local

    def record(self) -> None:
        if self.local:
            self.inner.reset()
        else:
            self.inner.record()

    def arm(self, k: int, kind: str) -> None:
        if self.local:
            self.inner.reset()
        self.inner.arm(k, kind)

    def stop(self) -> None:
        if self.local:
            self.inner.disarm()
        else:
            self.inner.stop()

    @property
    def calls(self) -> list[Call]:
        return list(self.inner.calls)

    @property
    def fired(self) -> Any:
        return self.inner.fired


class Target:
    """A backend under fault injection: where copies of state A live, how faults are made."""

    #: ``backend`` of the figures; local targets name the wrapper's verbs, object ones obstore's.
    backend = ""
    local = True
    #: Inject only a representative subset of the cases (see the module docstring).
    quick = False

    def __init__(self, variant: Variant) -> None:
        self.variant = variant

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.variant.id}"

    def template(self, request: pytest.FixtureRequest) -> Template:
        raise NotImplementedError

    def open(
        self, monkeypatch: pytest.MonkeyPatch, location: Any, variant: Variant | None = None
    ) -> tuple[atlas.Atlas, Injector]:
        """A handle on ``location`` whose backend calls go through a fault injector."""
        raise NotImplementedError

    def create(
        self, monkeypatch: pytest.MonkeyPatch, location: Any, arm: tuple[int, str] | None
    ) -> tuple[Any, Injector]:
        """``Atlas.create(location, codec="lz4")`` with fault ``arm`` (None: recording).

        Returns the error it raised (None) and the injector.
        """
        raise NotImplementedError

    def kinds(self, verb: str) -> tuple[str, ...]:
        raise NotImplementedError

    def cases(self, calls: list[Call], distinct: bool = False) -> list[Case]:
        return [(k, call, kind) for k, call in enumerate(calls, 1) for kind in self.kinds(call.verb)]

    def is_commit(self, call: Call) -> bool:
        raise NotImplementedError

    def is_segment_write(self, call: Call) -> bool:
        # a flush also puts its catalogue part (``_catalog/*.cat``), spilled or not
        return call.verb == "put" and call.path.endswith(".af")

    def fails(self, call: Call, kind: str) -> bool:
        """Whether the operation must fail with this fault (else it must succeed)."""
        return not is_lease(call.path)  # a failed lease write or release is logged, never raised

    def check_error(self, checks: Checks, exc: BaseException | None, fired: Any, location: Any) -> None:
        raise NotImplementedError

    def segments(self, location: Any) -> set[str]:
        """The segment objects stored at ``location``."""
        raise NotImplementedError

    def listing(self, location: Any) -> list[str]:
        raise NotImplementedError


class LocalTarget(Target):
    backend = "local"

    @property
    def read_verb(self) -> str:
        return "map" if self.variant.expose_map else "get_ranges"

    def template(self, request: pytest.FixtureRequest) -> Template:
        return request.getfixturevalue("local_template")

    def open(self, monkeypatch, location, variant=None):
        variant = variant or self.variant
        with patched_resolve(monkeypatch, lambda inner: FaultyBackend(inner, expose_map=variant.expose_map)) as made:
            s = atlas.Atlas.open(location, **variant.options())
        (w,) = made
        assert (w.count("map") == 0) and (isinstance(w, CanMap) == variant.expose_map)
        assert s._st.io.can_map == variant.expose_map  # the engine reads the way the wrapper says
        return s, Injector(w, local=True)

    def create(self, monkeypatch, location, arm):
        def wrap(inner: Any) -> FaultyBackend:
            w = FaultyBackend(inner)
            if arm is not None:
                w.arm(*arm)
            return w

        raised = None
        with patched_resolve(monkeypatch, wrap) as made:
            try:
                atlas.Atlas.create(location, codec="lz4").close()
            except Exception as exc:
                raised = exc
        return raised, Injector(made[0], local=True)

    def kinds(self, verb):
        return kinds_for(verb)

    def is_commit(self, call):
        return call.verb == "commit"

    def check_error(self, checks, exc, fired, location):
        if exc is None:
            checks.expect(False, "no error was raised")
            return
        text = f"{type(exc).__name__}: {exc}"
        checks.expect(isinstance(exc, errors.AtlasError), f"not an AtlasError: {text}")
        checks.expect(isinstance(exc, errors.BackendError), f"an I/O failure surfaced as {text}")
        want_errno = errno.ENOSPC if fired.kind == "enospc" else errno.EIO
        checks.expect(getattr(exc, "errno", None) == want_errno, f"errno {getattr(exc, 'errno', None)} != {want_errno}")
        checks.expect(fired.path in str(exc), f"message does not name the path {fired.path!r}: {text}")
        checks.expect(OP_WORDS[fired.verb] in str(exc), f"message does not name the operation: {text}")
        if fired.path == "" and str(location) not in str(exc):  # list("") names the store
            checks.expect(False, f"message does not name the store {location}: {text}")

    def segments(self, location):
        return {p.relative_to(location).as_posix() for p in Path(location).rglob("*.af")}

    def listing(self, location):
        return sorted(p.name for p in Path(location).iterdir()) if Path(location).is_dir() else []


class ObjectTarget(Target):
    local = False

    def __init__(self, space: str, variant: Variant, quick: bool = False) -> None:
        super().__init__(variant)
        self.backend = space
        self.quick = quick

    @property
    def id(self) -> str:
        return f"{self.backend}{'' if self.quick or self.backend == 'memory' else '-exhaustive'}-{self.variant.id}"

    read_verb = "get_ranges"

    def template(self, request):
        t = request.getfixturevalue(f"{self.backend}_template")
        if self.backend != "memory":  # the same scenario must give the same states everywhere
            ref = request.getfixturevalue("memory_template")
            assert t.want_a == ref.want_a and t.want_b == ref.want_b
        return t

    def _install(self, monkeypatch: pytest.MonkeyPatch, store: Any) -> FaultyObstore:
        from atlas.backends import objectstore

        faulty = FaultyObstore(_obstore(), store)
        monkeypatch.setattr(objectstore, "obstore", faulty)
        return faulty

    def open(self, monkeypatch, location, variant=None):
        variant = variant or self.variant
        faulty = self._install(monkeypatch, location)
        s = atlas.Atlas.open(location, **variant.options())
        assert not s._st.io.can_map
        return s, Injector(faulty, local=False)

    def create(self, monkeypatch, location, arm):
        faulty = self._install(monkeypatch, location)
        if arm is None:
            faulty.record()
        else:
            faulty.arm(*arm)
        raised = None
        try:
            atlas.Atlas.create(location, codec="lz4").close()
        except Exception as exc:
            raised = exc
        faulty.stop()
        return raised, Injector(faulty, local=False)

    def kinds(self, verb):
        return object_kinds_for(verb)

    def cases(self, calls, distinct=False):
        every = super().cases(calls)
        if not self.quick:
            return every
        # Every call with ``error``, and the lost-response kinds on manifest commits.  With
        # ``distinct``, ``error`` hits only the first read or write of each segment family,
        # and the first segment delete, between two commits: the calls it skips differ only
        # in which segment they touch.
        out, seen, phase = [], set(), 0
        for k, call, kind in every:
            commit = self.is_commit(call)
            if kind == "error":
                family = call.path.partition("/")[0] if "/" in call.path and call.verb != "delete" else ""
                key = (phase, call.verb, family if "/" in call.path else call.path)
                if not distinct or key not in seen:
                    out.append((k, call, kind))
                seen.add(key)
            elif commit and kind.startswith("lost"):
                out.append((k, call, kind))
            if commit and kind == object_kinds_for("put")[-1]:
                phase += 1
        return out

    def is_commit(self, call):
        return call.verb == "put" and _is_manifest(call.path)

    def fails(self, call, kind):
        if is_lease(call.path):  # a failed lease write or release is logged, never raised
            return False
        if kind in ("error", "full"):
            return True
        if kind == "lost":  # a lost manifest put is recognised by reading the manifest back
            return not self.is_commit(call)
        return False  # lost-retry: the backend recognises its own object

    def check_error(self, checks, exc, fired, location):
        if exc is None:
            checks.expect(False, "no error was raised")
            return
        from atlas.backends import objectstore

        call = Call(fired.verb, fired.path)
        where = objectstore.backend_for_handle(location, True).location
        text = f"{type(exc).__name__}: {exc}"
        checks.expect(isinstance(exc, errors.AtlasError), f"not an AtlasError: {text}")
        checks.expect(not isinstance(exc, errors.ConflictError), f"an I/O failure reported as a conflict: {text}")
        checks.expect(isinstance(exc, errors.BackendError), f"an I/O failure surfaced as {text}")
        checks.expect(getattr(exc, "errno", None) == errno.EIO, f"errno {getattr(exc, 'errno', None)} != EIO: {text}")
        word = ("commit" if self.is_commit(call) else "write") if call.verb == "put" else _OBJECT_OP_WORD[call.verb]
        checks.expect(word in str(exc), f"message does not name the operation {word!r}: {text}")
        checks.expect(call.path in str(exc), f"message does not name the object {call.path!r}: {text}")
        checks.expect(where.rstrip("/") in str(exc), f"message does not name the store {where}: {text}")

    def segments(self, location):
        return {k for k in _keys(_obstore(), location) if k.endswith(".af")}

    def listing(self, location):
        return _keys(_obstore(), location)


LOCAL = LocalTarget(Variant())
MMAP, RANGES, SPILLED = Variant(True), Variant(False), Variant(True, max_pending_bytes=0)
OBJECT_RANGES, OBJECT_SPILLED = Variant(False), Variant(False, max_pending_bytes=0)


def _targets(variants: list[tuple[Variant, Variant]]) -> list[Any]:
    """``pytest.param`` per backend for the given ``(local variant, object variant)`` pairs."""
    out = []
    for local, remote in variants:
        for target in (LocalTarget(local), ObjectTarget("memory", remote), ObjectTarget("s3", remote, quick=True),
                       ObjectTarget("s3", remote)):  # fmt: skip
            slow = target.backend == "s3" and not target.quick
            if target.quick and remote.max_pending_bytes is not None:
                continue  # spilled handles run on S3 only in the exhaustive variant
            if not target.local and local is RANGES:
                continue  # object stores always read by ranges: their range variant is listed once
            out.append(pytest.param(target, id=target.id, marks=[pytest.mark.slow] if slow else []))
    return out


#: Flush and compaction: every backend, every way a handle reads and spills.
TARGETS = _targets([(MMAP, OBJECT_RANGES), (RANGES, OBJECT_RANGES), (SPILLED, OBJECT_SPILLED)])
#: Spilling writes and create (one handle kind per backend).
SPILL_TARGETS = [p for p in _targets([(SPILLED, OBJECT_SPILLED)]) if not p.values[0].quick]
CREATE_TARGETS = _targets([(MMAP, OBJECT_RANGES)])


# -- templates ------------------------------------------------------------------------------------


def _check_template(a: Any, b: Any) -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
    """The states of A at ``a``, and of B after applying and flushing it at ``b`` (a copy of A)."""
    want_a = disk_state(a)
    s = atlas.Atlas.open(b)
    _apply_b(s)
    view_b = snapshot(s)
    s.flush()
    s.close()
    want_b = disk_state(b)
    assert want_b[1] == view_b, describe_diff(want_b[1], view_b)
    assert want_b[0] == want_a[0] + 1 and want_a[1] != want_b[1]
    return want_a, want_b


@pytest.fixture(scope="module")
def local_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("faults")
    a_path = root / "a"
    _build_a(a_path)
    b_path = root / "b"
    shutil.copytree(a_path, b_path)
    want_a, want_b = _check_template(a_path, b_path)
    counter = itertools.count(1)

    def fresh(label: str) -> Path:
        path = root / "cases" / f"{label}-{next(counter)}"
        shutil.copytree(a_path, path)
        return path

    return Template(fresh, lambda label: root / "new" / f"{label}-{next(counter)}", want_a, want_b)


def _object_template(new: Callable[[str], Any], copy: Callable[[Any, str], Any]) -> Template:
    obstore = _obstore()
    a = new("a")
    build_a_generations(a)
    for key, data in DEBRIS.items():
        obstore.put(a, key, data)
    want_a, want_b = _check_template(a, copy(a, "b"))
    counter = itertools.count(1)
    return Template(lambda label: copy(a, f"{label}-{next(counter)}"), lambda label: new(f"{label}-{next(counter)}"),
                    want_a, want_b)  # fmt: skip


@pytest.fixture(scope="module")
def memory_template() -> Template:
    obstore = _obstore()
    from obstore.store import MemoryStore

    def copy(a: Any, label: str) -> Any:
        store = MemoryStore()
        for key in _keys(obstore, a):
            obstore.put(store, key, bytes(obstore.get(a, key).bytes()))
        return store

    return _object_template(lambda label: MemoryStore(), copy)


@pytest.fixture(scope="module")
def s3_template(moto_s3, s3_bucket) -> Template:
    obstore = _obstore()
    root = moto_s3.store(s3_bucket)
    base = f"faults-{uuid.uuid4().hex[:10]}"

    def new(label: str) -> Any:
        return moto_s3.store(s3_bucket, prefix=f"{base}/{label}")

    def copy(a: Any, label: str) -> Any:
        prefix = a.prefix.strip("/")
        for key in _keys(obstore, a):
            obstore.copy(root, f"{prefix}/{key}", f"{base}/{label}/{key}")
        return new(label)

    return _object_template(new, copy)


def _record(
    monkeypatch: pytest.MonkeyPatch, target: Target, t: Template, op: Callable[[atlas.Atlas], None]
) -> list[Call]:
    """The un-armed call sequence of ``op`` on a fresh copy with B pending."""
    location = t.fresh("record")
    s, injector = target.open(monkeypatch, location)
    _apply_b(s)
    injector.record()
    op(s)
    injector.stop()
    calls = injector.calls
    s.close()
    assert disk_state(location)[1] == t.want_b[1]
    return calls


def _run(s: atlas.Atlas, injector: Injector, k: int, kind: str, op: Callable[[atlas.Atlas], None]) -> Any:
    injector.arm(k, kind)
    try:
        op(s)
    except Exception as exc:
        return exc
    finally:
        injector.stop()
    return None


def _figures(request: pytest.FixtureRequest, target: Target, operation: str, calls: list[Call], cases: list[Case],
             started: float, variant: str | None = None) -> None:  # fmt: skip
    record_fault_figures(
        f"test_faults::{request.node.name}",
        backend=target.backend,
        operation=operation,
        calls=len(calls),
        cases=cases,
        started=started,
        variant=target.variant.id if variant is None else variant,
    )


# -- the wrapper itself ---------------------------------------------------------------------------


def test_wrapper_counts_forwards_and_mirrors_map(tmp_path):
    inner = LocalBackend(tmp_path / "s")
    w = FaultyBackend(inner)
    assert isinstance(w, CanMap) and isinstance(SegmentIO(w).can_map, bool) and SegmentIO(w).can_map
    plain = FaultyBackend(inner, expose_map=False)
    assert not isinstance(plain, CanMap) and not hasattr(plain, "map") and not SegmentIO(plain).can_map
    w.put("a/x.af", [b"abc", np.frombuffer(b"def", np.uint8)])
    assert w.get("a/x.af") == b"abcdef"
    assert bytes(w.get_ranges("a/x.af", [1], [3])[0]) == b"bcd"
    assert bytes(w.map("a/x.af")) == b"abcdef"
    assert [i.path for i in w.list("")] == ["a/x.af"]
    v = w.commit("atlas.json", b"{}", None)
    assert w.get_versioned("atlas.json") == (b"{}", v)
    w.delete("a/x.af")
    assert [c.verb for c in w.calls] == ["put", "get", "get_ranges", "map", "list", "commit", "get_versioned", "delete"]
    assert w.count("put") == 1 and w.location == inner.location and w.read_only is False


@pytest.mark.parametrize("kind", KINDS)
def test_wrapper_faults(tmp_path, kind):
    inner = LocalBackend(tmp_path / "s")
    w = FaultyBackend(inner)
    w.put("a/one.af", [b"1" * 10])
    w.arm(2, kind)
    w.put("a/two.af", [b"2" * 10])  # call 1 after arming
    with pytest.raises(errors.BackendError) as info:
        w.put("a/three.af", [b"3" * 10])  # call 2
    assert info.value.errno == (errno.ENOSPC if kind == "enospc" else errno.EIO)
    assert "write" in str(info.value) and "a/three.af" in str(info.value)
    assert w.fired is not None and (w.fired.k, w.fired.verb, w.fired.kind) == (2, "put", kind)
    assert not w.armed
    if kind == "short":
        assert inner.get("a/three.af") == b"3" * 5  # torn prefix under the final name
    else:
        assert not inner.exists("a/three.af")
    w.put("a/four.af", [b"4"])  # one-shot: disarmed after firing
    # commit: the manifest is never torn; the prefix lands in a temp file
    w.commit("atlas.json", b"version-1", None)
    w.arm(1, kind, verb="commit")
    w.get("atlas.json")  # other verbs do not count towards a verb-specific fault
    with pytest.raises(errors.BackendError, match=r"commit .*atlas\.json"):
        w.commit("atlas.json", b"version-2-long", inner.get_versioned("atlas.json")[1])
    assert inner.get("atlas.json") == b"version-1"
    temps = sorted(p.name for p in (tmp_path / "s").glob(".atlas.json.*.tmp"))
    assert len(temps) == (1 if kind == "short" else 0)
    if kind != "short":
        w.arm(1, kind)
        with pytest.raises(errors.BackendError, match=r"map .*a/one\.af"):
            w.map("a/one.af")
    else:
        with pytest.raises(ValueError):
            w.arm(1, "bogus")


# -- the injector itself -----------------------------------------------------------------------------


def test_obstore_injector_kinds_do_what_they_say():
    obstore = pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
    from obstore.store import MemoryStore

    store, other = MemoryStore(), MemoryStore()
    faulty = FaultyObstore(obstore, store)
    obx = obstore.exceptions
    faulty.arm(2, "error")
    faulty.put(store, "a", b"1")
    faulty.put(other, "x", b"not counted")
    with pytest.raises(obx.GenericError, match="injected"):
        faulty.put(store, "b", b"2")
    assert _keys(obstore, store) == ["a"] and faulty.fired is not None and faulty.fired.verb == "put"
    faulty.arm(1, "full")
    with pytest.raises(obx.GenericError, match="507"):
        faulty.put(store, "b", b"2")
    faulty.arm(1, "lost")
    with pytest.raises(obx.GenericError, match="timed out"):
        faulty.put(store, "b", b"2", mode="create")
    assert bytes(obstore.get(store, "b").bytes()) == b"2"  # it landed
    faulty.arm(1, "lost-retry")
    with pytest.raises(obx.AlreadyExistsError):
        faulty.put(store, "c", b"3", mode="create")
    tag = obstore.head(store, "c")["e_tag"]
    faulty.arm(1, "lost-retry")
    with pytest.raises(obx.PreconditionError):
        faulty.put(store, "c", b"4", mode={"e_tag": tag})
    assert bytes(obstore.get(store, "c").bytes()) == b"4"
    faulty.arm(1, "lost")
    with pytest.raises(obx.GenericError):
        faulty.delete(store, "a")
    assert _keys(obstore, store) == ["b", "c"]
    faulty.arm(1, "lost")
    with pytest.raises(AssertionError, match="cannot hit a get"):
        faulty.get(store, "b")
    faulty.stop()
    faulty.get(store, "b")
    assert [(c.verb, c.path) for c in faulty.calls] == [("get", "b")] and not faulty.armed
    with pytest.raises(ValueError):
        faulty.arm(1, "short")


def test_a_lost_commit_response_is_not_a_conflict(monkeypatch):
    """The manifest put lands but its response is lost: the commit succeeds, once."""
    obstore = pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
    from obstore.store import MemoryStore

    from atlas.backends import objectstore

    store = MemoryStore()
    faulty = FaultyObstore(obstore, store)
    monkeypatch.setattr(objectstore, "obstore", faulty)
    atlas.Atlas.create(store).close()
    s = atlas.Atlas.open(store)
    s.create_dataset("d")
    for value, kind in enumerate(("lost", "lost-retry")):
        s.open_dataset("d").set_attribute("x", value)
        # An attribute change writes no segment but a catalogue part (merged or not):
        # the commit is the first call on the commit object.
        faulty.arm(1, kind, "atlas.json")
        s.flush()
        faulty.stop()
        assert faulty.fired is not None and (faulty.fired.verb, faulty.fired.path) == ("put", "atlas.json")
        assert not s.has_pending_changes
    fresh = atlas.Atlas.open(store, mode="r")
    assert fresh.generation == 2 and fresh.open_dataset("d").attributes() == {"x": 1}
    s.close()


# -- flush ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_flush_fault_at_every_call(request, monkeypatch, subtests, target):
    started = time.perf_counter()
    t = target.template(request)
    calls = _record(monkeypatch, target, t, lambda s: s.flush())
    commit_k = max(k for k, c in enumerate(calls, 1) if target.is_commit(c))
    # after the commit only the lease over spilled segments is released
    assert all(c.verb == "delete" and is_lease(c.path) for c in calls[commit_k:]), calls[commit_k:]
    # spilled B: the flush only commits segments written earlier
    assert any(target.is_segment_write(c) for c in calls) == (target.variant.max_pending_bytes is None)
    assert any(c.verb == target.read_verb for c in calls), "the flush should read a segment index (stats)"
    want_a, want_b = t.want_a, t.want_b
    cases = target.cases(calls)
    for k, call, kind in cases:
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            location = t.fresh(f"flush-{target.id}-{k}-{kind}")
            s, injector = target.open(monkeypatch, location)
            _apply_b(s)
            raised = _run(s, injector, k, kind, lambda s: s.flush())
            checks = Checks(f"{target.id}: flush fault at call {k} ({call.verb} {call.path}, {kind})")
            fired = injector.fired
            checks.expect(fired is not None and fired.verb == call.verb, f"fault fired at {fired}")
            if target.fails(call, kind):
                if fired is not None:
                    target.check_error(checks, raised, fired, location)
                # Every call of a flush happens before (or is) the commit: the store is at A.
                checks.state(location, want_a, "after the failed flush")
                checks.expect(s.has_pending_changes, "the failed handle lost its pending changes")
            else:
                checks.expect(raised is None, f"the flush raised {type(raised).__name__}: {raised}")
                checks.state(location, (want_a[0] + 1, want_b[1]), "after a flush whose response was lost")
                checks.expect(not s.has_pending_changes, "pending changes left after a successful flush")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the handle's view is not B: {describe_diff(view, want_b[1])}")
            try:
                s.flush()  # disarmed retry on the same handle (nothing to do after a success)
            except Exception as exc:
                checks.expect(False, f"retried flush failed: {type(exc).__name__}: {exc}")
            else:
                checks.expect(not s.has_pending_changes, "pending changes left after the retry")
                checks.state(location, (want_a[0] + 1, want_b[1]), "after the retried flush")
            s.close()
            checks.done()
    _figures(request, target, "flush", calls, cases, started)


# -- compact -------------------------------------------------------------------------------------


def _compact(s: atlas.Atlas) -> None:
    s.compact(grace_period=0)  # the debris of A is old: the sweep has work to do


def _families(location: Any) -> dict[str, list[str]]:
    s = atlas.Atlas.open(location, mode="r")
    try:
        return {fam.dir: [ref.file for ref in fam.segments] for fam in s._st.base.families.values()}
    finally:
        s.close()


@pytest.mark.parametrize("target", TARGETS)
def test_compact_fault_at_every_call(request, monkeypatch, subtests, target):
    started = time.perf_counter()
    t = target.template(request)
    calls = _record(monkeypatch, target, t, _compact)
    commits = [k for k, c in enumerate(calls, 1) if target.is_commit(c)]
    # compact() first flushes B (commit 1), then commits the compacted manifest (commit 2),
    # then deletes retired segments and sweeps the debris.
    assert len(commits) == 2, calls
    flush_commit, compact_commit = commits
    assert {c.verb for c in calls[compact_commit:]} == {"delete", "list"}, calls[compact_commit:]
    assert set(DEBRIS) <= {c.path for c in calls[compact_commit:] if c.verb == "delete"}
    want_a, want_b = t.want_a, t.want_b
    cases = target.cases(calls, distinct=True)
    for k, call, kind in cases:
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            location = t.fresh(f"compact-{target.id}-{k}-{kind}")
            s, injector = target.open(monkeypatch, location)
            _apply_b(s)
            raised = _run(s, injector, k, kind, _compact)
            checks = Checks(f"{target.id}: compact fault at call {k} ({call.verb} {call.path}, {kind})")
            fired = injector.fired
            checks.expect(fired is not None and fired.verb == call.verb, f"fault fired at {fired}")
            if not target.fails(call, kind) or k > compact_commit:
                # a lost response recognised, or a fault past the compaction's commit point
                checks.expect(raised is None, f"the compaction raised {type(raised).__name__}: {raised}")
                checks.state(location, (want_a[0] + 2, want_b[1]), "after the compaction")
            elif k <= flush_commit:  # while flushing B: nothing committed, B still pending
                if fired is not None:
                    target.check_error(checks, raised, fired, location)
                checks.state(location, want_a, "after a compaction failed while flushing")
                checks.expect(s.has_pending_changes, "the failed handle lost its pending changes")
            else:  # while compacting: B committed, the compaction not
                if fired is not None:
                    target.check_error(checks, raised, fired, location)
                checks.state(location, (want_a[0] + 1, want_b[1]), "after a compaction failed before its commit")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the handle's content is not B: {describe_diff(view, want_b[1])}")
            try:
                _compact(s)  # disarmed retry on the same handle
            except Exception as exc:
                checks.expect(False, f"retried compaction failed: {type(exc).__name__}: {exc}")
            else:
                checks.state(location, (None, want_b[1]), "after the retried compaction")
                families = _families(location)
                checks.expect(
                    all(len(segs) == 1 for segs in families.values()),
                    f"retried compaction left several segments: {families}",
                )
                live = {f"{d}/{f}" for d, segs in families.items() for f in segs}
                stored = target.segments(location)
                checks.expect(stored == live, f"dead segment files remain: {sorted(stored - live)}")
            s.close()
            checks.done()
    _figures(request, target, "compact", calls, cases, started)


# -- spilling writes -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", SPILL_TARGETS)
def test_spilling_write_fault_at_every_call(request, monkeypatch, subtests, target):
    """With no memory budget every write spills B to uncommitted segments at once.

    A failed read of a chunk the write must merge with fails that write call
    (changing nothing); retrying it succeeds.  A failed spill does not fail the
    write, which already succeeded in memory: it is logged and retried later.
    Either way, flushing must give exactly B, and nothing is visible before the
    flush.
    """
    started = time.perf_counter()
    t = target.template(request)
    location = t.fresh("spill-write-record")
    s, injector = target.open(monkeypatch, location)
    injector.record()
    _apply_b(s)
    injector.stop()
    calls = injector.calls
    s.close()
    want_a, want_b = t.want_a, t.want_b
    assert disk_state(location) == (want_a[0] + 1, want_b[1])
    assert sum(c.verb == "put" for c in calls) >= 5, calls
    cases = target.cases(calls)
    for k, call, kind in cases:
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            location = t.fresh(f"spill-write-{target.id}-{k}-{kind}")
            s, injector = target.open(monkeypatch, location)
            injector.arm(k, kind)
            checks = Checks(f"{target.id}: spilling write, fault at call {k} ({call.verb} {call.path}, {kind})")
            failed = []
            for label, step in B_STEPS:
                try:
                    step(s)
                except Exception as exc:
                    failed.append((label, exc))
                    try:
                        step(s)  # the same call again: the fault was one-shot
                    except Exception as again:
                        checks.expect(False, f"retrying {label!r} failed: {type(again).__name__}: {again}")
            injector.stop()
            fired = injector.fired
            checks.expect(fired is not None and fired.verb == call.verb, f"fault fired at {fired}")
            expected_failures = 0 if call.verb == "put" or not target.fails(call, kind) else 1
            checks.expect(
                len(failed) == expected_failures, f"calls that failed: {[(lbl, str(e)) for lbl, e in failed]}"
            )
            if failed and fired is not None:
                target.check_error(checks, failed[0][1], fired, location)
            checks.state(location, want_a, "before the flush")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the handle's view is not B: {describe_diff(view, want_b[1])}")
            try:
                s.flush()
            except Exception as exc:
                checks.expect(False, f"flush failed: {type(exc).__name__}: {exc}")
            else:
                checks.state(location, (want_a[0] + 1, want_b[1]), "after the flush")
            s.close()
            checks.done()
    _figures(request, target, "spilling writes", calls, cases, started)


# -- create --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", CREATE_TARGETS)
def test_create_fault_at_every_call(request, monkeypatch, subtests, target):
    started = time.perf_counter()
    t = target.template(request)
    _, recorder = target.create(monkeypatch, t.new("create-record"), None)
    calls = recorder.calls
    assert target.is_commit(calls[-1]), calls
    cases = target.cases(calls)
    for k, call, kind in cases:
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            location = t.new(f"create-{k}-{kind}")
            raised, injector = target.create(monkeypatch, location, (k, kind))
            checks = Checks(f"{target.id}: create fault at call {k} ({call.verb} {call.path}, {kind})")
            fired = injector.fired
            checks.expect(fired is not None and fired.verb == call.verb, f"fault fired at {fired}")
            if target.fails(call, kind):
                if fired is not None:
                    target.check_error(checks, raised, fired, location)
                try:
                    atlas.Atlas.open(location)
                except errors.NotAStoreError:
                    pass
                except Exception as exc:
                    checks.expect(False, f"open after a failed create: {type(exc).__name__}: {exc}")
                else:
                    checks.expect(False, "a failed create left an openable store")
                try:  # the same call again, without the fault, must now succeed
                    atlas.Atlas.create(location, codec="lz4").close()
                except Exception as exc:
                    leftovers = target.listing(location)
                    checks.expect(False, f"retried create failed: {type(exc).__name__}: {exc} (left: {leftovers})")
            else:
                checks.expect(raised is None, f"create raised {type(raised).__name__}: {raised}")
            try:
                s = atlas.Atlas.open(location)
            except Exception as exc:
                checks.expect(False, f"open after the create: {type(exc).__name__}: {exc}")
            else:
                checks.expect((s.generation, s.list_datasets(), s.codec) == (0, [], "lz4"), repr(s))
                s.close()
            checks.done()
    _figures(request, target, "create", calls, cases, started, variant="")


# -- faults raised by the real LocalBackend (no wrapper) -------------------------------------------


def _failing_fsync(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fsync)


def test_flush_with_a_full_disk_keeps_everything_and_leaves_no_temp_files(local_template, monkeypatch):
    template = local_template
    path = template.fresh("real-enospc-flush")
    debris_before = {p.relative_to(path).as_posix() for p in path.rglob(".*.tmp")}
    s = atlas.Atlas.open(path)
    _apply_b(s)
    with monkeypatch.context() as m:
        _failing_fsync(m, errno.ENOSPC)
        with pytest.raises(errors.BackendError) as info:
            s.flush()
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and "write" in str(info.value)
    assert {p.relative_to(path).as_posix() for p in path.rglob(".*.tmp")} == debris_before
    assert disk_state(path) == template.want_a
    s.flush()
    assert disk_state(path) == (template.want_a[0] + 1, template.want_b[1])
    s.close()


def test_create_can_be_retried_after_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "s"
    with monkeypatch.context() as m:
        _failing_fsync(m, errno.ENOSPC)
        with pytest.raises(errors.BackendError) as info:
            atlas.Atlas.create(path)
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    with pytest.raises(errors.NotAStoreError):
        atlas.Atlas.open(path)
    # Space was freed: creating the store again must work.
    atlas.Atlas.create(path).close()
    assert atlas.Atlas.open(path).list_datasets() == []


def test_short_write_verbs_are_the_write_verbs():
    assert set(WRITE_VERBS) == {"put", "commit"}
    assert kinds_for("map") == ("error", "enospc") and kinds_for("put") == KINDS


def test_verify_works_through_a_backend_with_only_the_protocol_verbs(local_template, monkeypatch):
    """``Atlas.verify`` must need no more of a backend than the verbs of ``atlas.backends.base``."""
    path = local_template.fresh("verify-protocol-only")
    s, w = LOCAL.open(monkeypatch, path, Variant(expose_map=False))
    assert s.verify() == []
    assert {c.verb for c in w.calls} <= set(VERBS) - {"map"}
    s.close()
