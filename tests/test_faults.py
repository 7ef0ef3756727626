"""Fault injection: every backend call of create, flush and compact fails once.

For each operation the call sequence is first recorded un-armed; then, for every
call k of that sequence and every failure kind that fits it (see
:mod:`tests.faults`), a fresh copy of the same store is built, the k-th call is
made to fail, and the test checks (one subtest per case, all problems reported):

* the error is an :class:`~atlas.errors.AtlasError` -- a
  :class:`~atlas.errors.BackendError` carrying the injected errno -- whose message
  names the backend operation and the path;
* a fresh ``Atlas.open`` of the directory sees exactly the old committed state A,
  or exactly the new state B when the fault came after the commit point, and
  every referenced byte verifies and every array reads without checksum errors;
* the failed handle still shows B (no pending change lost), and retrying the
  operation on the *same* handle, disarmed, commits exactly B.

Commit points, from the code: ``flush`` makes only calls up to and including the
manifest ``commit``, so every fault leaves A.  ``compact`` with pending changes
first commits them like a flush (faults up to that commit leave A), then writes and
commits the compacted segments (faults up to that second commit leave B, at the
generation after A), then deletes retired segments and sweeps debris.  A fault in
that last phase hits a compaction that is already committed: the store is B, and,
as ``compact_store`` itself says of the sweep ("a sweep failure never fails a
committed compaction"; leftovers are swept by a later compaction), ``compact()``
must not raise.

Each operation runs on a handle that memory-maps, one that uses range reads (the
wrapper hides ``map``), and one with ``max_pending_bytes=0`` whose pending writes
were all spilled to uncommitted segments before the flush.  A further test fails
every call made by those spilling writes themselves.

State A has two generations (so segments hold dead records), a dataset deleted in
the second one and unreferenced debris (an old orphan segment and a stale temp
file) for compaction's sweep.  The pending changes B overwrite whole and partial
chunks of existing datasets (float, int, string), define, write and delete arrays,
delete a dataset, create one (uint64 near 2**64, string) and change attributes.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults import KINDS, WRITE_VERBS, Call, FaultyBackend, kinds_for, patched_resolve, record_fault_figures

import atlas
import atlas.store
from atlas import errors
from atlas.backends import LocalBackend
from atlas.backends.base import CanMap
from atlas.engine.segment_io import SegmentIO
from atlas.leases import is_lease

_OP_WORD = {
    "get": "read",
    "get_versioned": "read",
    "get_ranges": "read",
    "put": "write",
    "commit": "commit",
    "delete": "delete",
    "list": "list",
    "map": "map",
}

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


def check_error(checks: Checks, exc: BaseException | None, fault: Any, location: str) -> None:
    """The raised error is the injected I/O failure, classified and named properly."""
    if exc is None:
        checks.expect(False, "no error was raised")
        return
    text = f"{type(exc).__name__}: {exc}"
    checks.expect(isinstance(exc, errors.AtlasError), f"not an AtlasError: {text}")
    checks.expect(isinstance(exc, errors.BackendError), f"an I/O failure surfaced as {text}")
    want_errno = errno.ENOSPC if fault.kind == "enospc" else errno.EIO
    checks.expect(getattr(exc, "errno", None) == want_errno, f"errno {getattr(exc, 'errno', None)} != {want_errno}")
    checks.expect(fault.path in str(exc), f"message does not name the path {fault.path!r}: {text}")
    checks.expect(_OP_WORD[fault.verb] in str(exc), f"message does not name the operation: {text}")
    if fault.path == "" and location not in str(exc):  # list("") names the store
        checks.expect(False, f"message does not name the store {location}: {text}")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """State A on disk (copied per case) and the expected states A and B."""
    root = tmp_path_factory.mktemp("faults")
    a_path = root / "a"
    _build_a(a_path)
    want_a = disk_state(a_path)
    b_path = root / "b"
    shutil.copytree(a_path, b_path)
    s = atlas.Atlas.open(b_path)
    _apply_b(s)
    view_b = snapshot(s)
    s.flush()
    s.close()
    want_b = disk_state(b_path)
    assert want_b[1] == view_b, describe_diff(want_b[1], view_b)
    assert want_b[0] == want_a[0] + 1
    assert want_a[1] != want_b[1]
    return {"root": root, "a": a_path, "want_a": want_a, "want_b": want_b}


def _fresh_copy(template: dict[str, Any], name: str) -> Path:
    path = template["root"] / "cases" / name
    shutil.copytree(template["a"], path)
    return path


@dataclass(frozen=True)
class Variant:
    """How the handle under test reads (memory maps or range reads) and spills."""

    expose_map: bool = True
    max_pending_bytes: int | None = None  # None: the default budget (nothing spills here)

    @property
    def id(self) -> str:
        return ("mmap" if self.expose_map else "get_ranges") + ("-spill" if self.max_pending_bytes is not None else "")


VARIANTS = [Variant(True), Variant(False), Variant(True, max_pending_bytes=0)]


def _open_wrapped(monkeypatch: pytest.MonkeyPatch, path: Path, variant: Variant) -> tuple[atlas.Atlas, FaultyBackend]:
    kw = {} if variant.max_pending_bytes is None else {"max_pending_bytes": variant.max_pending_bytes}
    with patched_resolve(monkeypatch, lambda inner: FaultyBackend(inner, expose_map=variant.expose_map)) as made:
        s = atlas.Atlas.open(path, **kw)
    (w,) = made
    assert (w.count("map") == 0) and (isinstance(w, CanMap) == variant.expose_map)
    assert s._st.io.can_map == variant.expose_map  # the engine reads the way the wrapper says
    return s, w


def _record(
    template: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    run: Callable[[atlas.Atlas], None],
    variant: Variant,
) -> list[Call]:
    """The un-armed call sequence of ``run`` on a fresh copy with B pending."""
    path = _fresh_copy(template, name)
    s, w = _open_wrapped(monkeypatch, path, variant)
    _apply_b(s)
    if variant.max_pending_bytes == 0:
        assert w.count("put") > 0, "B should have been spilled"
    w.reset()
    run(s)
    calls = list(w.calls)
    s.close()
    assert disk_state(path)[1] == template["want_b"][1]
    return calls


def _cases(calls: list[Call]) -> list[tuple[int, Call, str]]:
    return [(k, call, kind) for k, call in enumerate(calls, 1) for kind in kinds_for(call.verb)]


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


# -- flush ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
def test_flush_fault_at_every_call(template, monkeypatch, subtests, variant):
    started = time.perf_counter()
    calls = _record(template, monkeypatch, f"flush-record-{variant.id}", lambda s: s.flush(), variant)
    commit_k = max(k for k, c in enumerate(calls, 1) if c.verb == "commit")
    # after the commit only the lease over spilled segments is released
    assert all(c.verb == "delete" and is_lease(c.path) for c in calls[commit_k:]), calls[commit_k:]
    # spilled B: the flush only commits segments written earlier
    assert any(c.verb == "put" for c in calls) == (variant.max_pending_bytes is None)
    read_verb = "map" if variant.expose_map else "get_ranges"
    assert any(c.verb == read_verb for c in calls), "the flush should read a segment index (stats)"
    want_a, want_b = template["want_a"], template["want_b"]
    for k, call, kind in _cases(calls):
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            path = _fresh_copy(template, f"flush-{variant.id}-{k}-{kind}")
            s, w = _open_wrapped(monkeypatch, path, variant)
            _apply_b(s)
            w.reset()
            w.arm(k, kind)
            raised = None
            try:
                s.flush()
            except Exception as exc:
                raised = exc
            w.disarm()
            checks = Checks(f"flush fault at call {k} ({call.verb} {call.path}, {kind})")
            checks.expect(w.fired is not None and w.fired.verb == call.verb, f"fault fired at {w.fired}")
            if k > commit_k:  # releasing the lease once committed: logged, never raised
                checks.expect(raised is None, f"a committed flush raised {type(raised).__name__}: {raised}")
                checks.state(path, (want_a[0] + 1, want_b[1]), "after a fault past the commit")
                checks.expect(not s.has_pending_changes, "pending changes left after the commit")
                s.close()
                checks.done()
                continue
            if w.fired is not None:
                check_error(checks, raised, w.fired, str(path))
            # Every call of a flush happens before (or is) the commit: the store is at A.
            checks.state(path, want_a, "after the failed flush")
            checks.expect(s.has_pending_changes, "the failed handle lost its pending changes")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the failed handle's view is not B: {describe_diff(view, want_b[1])}")
            try:
                s.flush()  # disarmed retry on the same handle
            except Exception as exc:
                checks.expect(False, f"retried flush failed: {type(exc).__name__}: {exc}")
            else:
                checks.expect(not s.has_pending_changes, "pending changes left after the retry")
                checks.state(path, (want_a[0] + 1, want_b[1]), "after the retried flush")
            s.close()
            checks.done()
    record_fault_figures(
        f"test_faults::test_flush_fault_at_every_call[{variant.id}]",
        backend="local",
        operation="flush",
        calls=len(calls),
        cases=_cases(calls),
        started=started,
        variant=variant.id,
    )


# -- compact -------------------------------------------------------------------------------------


def _compact(s: atlas.Atlas) -> None:
    s.compact(grace_period=0)  # the debris of A is old: the sweep has work to do


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
def test_compact_fault_at_every_call(template, monkeypatch, subtests, variant):
    started = time.perf_counter()
    calls = _record(template, monkeypatch, f"compact-record-{variant.id}", _compact, variant)
    commits = [k for k, c in enumerate(calls, 1) if c.verb == "commit"]
    # compact() first flushes B (commit 1), then commits the compacted manifest (commit 2),
    # then deletes retired segments and sweeps the debris.
    assert len(commits) == 2, calls
    flush_commit, compact_commit = commits
    assert {c.verb for c in calls[compact_commit:]} == {"delete", "list"}, calls[compact_commit:]
    swept = {c.path for c in calls[compact_commit:] if c.verb == "delete"}
    assert {"temp/000000000002-00000000deadbeef.af", ".atlas.json.0badf00d.tmp"} <= swept
    want_a, want_b = template["want_a"], template["want_b"]
    for k, call, kind in _cases(calls):
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            path = _fresh_copy(template, f"compact-{variant.id}-{k}-{kind}")
            s, w = _open_wrapped(monkeypatch, path, variant)
            _apply_b(s)
            w.reset()
            w.arm(k, kind)
            raised = None
            try:
                _compact(s)
            except Exception as exc:
                raised = exc
            w.disarm()
            checks = Checks(f"compact fault at call {k} ({call.verb} {call.path}, {kind})")
            checks.expect(w.fired is not None and w.fired.verb == call.verb, f"fault fired at {w.fired}")
            if k <= flush_commit:  # while flushing B: nothing committed, B still pending
                check_error(checks, raised, w.fired, str(path))
                checks.state(path, want_a, "after a compaction failed while flushing")
                checks.expect(s.has_pending_changes, "the failed handle lost its pending changes")
            elif k <= compact_commit and not is_lease(call.path):  # compacting: B committed, compaction not
                check_error(checks, raised, w.fired, str(path))
                checks.state(path, (want_a[0] + 1, want_b[1]), "after a compaction failed before its commit")
            else:  # after a commit point (the flush's lease release, the compaction): must not fail
                checks.expect(
                    raised is None,
                    f"a committed compaction raised {type(raised).__name__}: {raised}",
                )
                checks.state(path, (want_a[0] + 2, want_b[1]), "after a fault past the compaction's commit")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the handle's content is not B: {describe_diff(view, want_b[1])}")
            try:
                _compact(s)  # disarmed retry on the same handle
            except Exception as exc:
                checks.expect(False, f"retried compaction failed: {type(exc).__name__}: {exc}")
            else:
                checks.state(path, (None, want_b[1]), "after the retried compaction")
                families = _families(path)
                checks.expect(
                    all(len(segs) == 1 for segs in families.values()),
                    f"retried compaction left several segments: {families}",
                )
                on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*.af")}
                live = {f"{d}/{f}" for d, segs in families.items() for f in segs}
                checks.expect(on_disk == live, f"dead segment files remain: {sorted(on_disk - live)}")
            s.close()
            checks.done()
    record_fault_figures(
        f"test_faults::test_compact_fault_at_every_call[{variant.id}]",
        backend="local",
        operation="compact",
        calls=len(calls),
        cases=_cases(calls),
        started=started,
        variant=variant.id,
    )


def test_spilling_write_fault_at_every_call(template, monkeypatch, subtests):
    """With no memory budget every write spills B to uncommitted segments at once.

    A failed read of a chunk the write must merge with fails that write call
    (changing nothing); retrying it succeeds.  A failed spill does not fail the
    write, which already succeeded in memory: it is logged and retried later.
    Either way, flushing must give exactly B, and nothing is visible on disk
    before the flush.
    """
    started = time.perf_counter()
    variant = Variant(True, max_pending_bytes=0)
    path = _fresh_copy(template, "spill-write-record")
    s, w = _open_wrapped(monkeypatch, path, variant)
    w.reset()
    _apply_b(s)
    calls = list(w.calls)
    s.close()
    want_a, want_b = template["want_a"], template["want_b"]
    assert disk_state(path) == (want_a[0] + 1, want_b[1])
    assert sum(c.verb == "put" for c in calls) >= 5, calls
    for k, call, kind in _cases(calls):
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            path = _fresh_copy(template, f"spill-write-{k}-{kind}")
            s, w = _open_wrapped(monkeypatch, path, variant)
            w.reset()
            w.arm(k, kind)
            checks = Checks(f"spilling write, fault at call {k} ({call.verb} {call.path}, {kind})")
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
            checks.expect(w.fired is not None and w.fired.verb == call.verb, f"fault fired at {w.fired}")
            # A failed spill or lease write or lease delete is logged, not raised.
            expected_failures = 0 if call.verb == "put" or is_lease(call.path) else 1
            checks.expect(
                len(failed) == expected_failures, f"calls that failed: {[(lbl, str(e)) for lbl, e in failed]}"
            )
            if failed and w.fired is not None:
                check_error(checks, failed[0][1], w.fired, str(path))
            checks.state(path, want_a, "before the flush")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the handle's view is not B: {describe_diff(view, want_b[1])}")
            try:
                s.flush()
            except Exception as exc:
                checks.expect(False, f"flush failed: {type(exc).__name__}: {exc}")
            else:
                checks.state(path, (want_a[0] + 1, want_b[1]), "after the flush")
            s.close()
            checks.done()
    record_fault_figures(
        "test_faults::test_spilling_write_fault_at_every_call",
        backend="local",
        operation="spilling writes",
        calls=len(calls),
        cases=_cases(calls),
        started=started,
        variant="mmap-spill",
    )


def _families(path: Path) -> dict[str, list[str]]:
    s = atlas.Atlas.open(path, mode="r")
    try:
        return {fam.dir: [ref.file for ref in fam.segments] for fam in s._st.base.families.values()}
    finally:
        s.close()


# -- create --------------------------------------------------------------------------------------


def test_create_fault_at_every_call(tmp_path, monkeypatch, subtests):
    started = time.perf_counter()
    with patched_resolve(monkeypatch) as made:
        atlas.Atlas.create(tmp_path / "record").close()
    calls = list(made[0].calls)
    assert calls[-1].verb == "commit", calls
    for k, call, kind in _cases(calls):
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            path = tmp_path / f"create-{k}-{kind}"

            def armed(inner, k=k, kind=kind):
                w = FaultyBackend(inner)
                w.arm(k, kind)
                return w

            raised = None
            with patched_resolve(monkeypatch, armed) as made:
                try:
                    atlas.Atlas.create(path, codec="lz4").close()
                except Exception as exc:
                    raised = exc
            (w,) = made
            checks = Checks(f"create fault at call {k} ({call.verb} {call.path}, {kind})")
            checks.expect(w.fired is not None and w.fired.verb == call.verb, f"fault fired at {w.fired}")
            if w.fired is not None:
                check_error(checks, raised, w.fired, str(path))
            try:
                atlas.Atlas.open(path)
            except errors.NotAStoreError:
                pass
            except Exception as exc:
                checks.expect(False, f"open after a failed create: {type(exc).__name__}: {exc}")
            else:
                checks.expect(False, "a failed create left an openable store")
            try:  # the same call again, without the fault, must now succeed
                atlas.Atlas.create(path, codec="lz4").close()
            except Exception as exc:
                leftovers = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
                checks.expect(False, f"retried create failed: {type(exc).__name__}: {exc} (directory: {leftovers})")
            else:
                s = atlas.Atlas.open(path)
                checks.expect((s.generation, s.list_datasets(), s.codec) == (0, [], "lz4"), repr(s))
                s.close()
            checks.done()
    record_fault_figures(
        "test_faults::test_create_fault_at_every_call",
        backend="local",
        operation="create",
        calls=len(calls),
        cases=_cases(calls),
        started=started,
    )


# -- faults raised by the real LocalBackend (no wrapper) -------------------------------------------


def _failing_fsync(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fsync)


def test_flush_with_a_full_disk_keeps_everything_and_leaves_no_temp_files(template, monkeypatch):
    path = _fresh_copy(template, "real-enospc-flush")
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
    assert disk_state(path) == template["want_a"]
    s.flush()
    assert disk_state(path) == (template["want_a"][0] + 1, template["want_b"][1])
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


def test_verify_works_through_a_backend_with_only_the_protocol_verbs(template, monkeypatch):
    """``Atlas.verify`` must need no more of a backend than the verbs of ``atlas.backends.base``."""
    path = _fresh_copy(template, "verify-protocol-only")
    s, w = _open_wrapped(monkeypatch, path, Variant(expose_map=False))
    assert s.verify() == []
    assert {c.verb for c in w.calls} <= {"get_ranges", "list", "get_versioned"}
    s.close()
