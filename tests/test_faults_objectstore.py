"""Fault injection below the object-store backend: every obstore call of create, flush,
compact and spilling writes fails once, on ``MemoryStore`` and on S3 (moto).

The same scenario as :mod:`test_faults` (state A with two generations, dead records,
a deleted dataset and debris; pending changes B), the same checks, but the faults
are injected one level lower: :class:`faults.FaultyObstore` stands in for the
``obstore`` module inside :mod:`atlas.backends.objectstore`, so the backend's own
error translation and its recovery from lost responses are what is tested.  The
failure kinds (:data:`faults.OBJECT_KINDS`):

``error``
    any call fails before reaching the store;
``full``
    a ``put`` is refused for lack of space (HTTP 507; object stores have no
    ``ENOSPC``, so it must surface as a generic I/O error, errno ``EIO``);
``lost``
    a ``put`` or ``delete`` lands and its response is lost.  A lost segment ``put``
    fails the operation like an error (the segment is unreferenced debris); a lost
    manifest ``put`` must *not* fail the commit, and never as a conflict: the backend
    reads the manifest back and finds its own bytes;
``lost-retry``
    a ``put`` lands, its response is lost and the client's retry fails the
    precondition (``AlreadyExistsError``/``PreconditionError``): the backend must
    recognise its own object and succeed.

Every case gets a fresh copy of state A: on memory the objects of A are copied into
a new ``MemoryStore``; on S3 into a fresh key prefix of the emulator's bucket.  On
memory every call and every kind is injected.  On S3 (every request costs
milliseconds) the default run injects ``error`` at every call of create and flush
and at the first read, write or delete of each segment family in each phase of
compact, plus both lost-response kinds at every manifest commit; the exhaustive S3
runs (every call, every kind, spilled variants too) are marked ``slow``.
"""

from __future__ import annotations

import errno
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cloud_servers import moto_s3, s3_bucket  # noqa: F401  (fixtures)
from faults import Call, FaultyObstore, object_kinds_for, record_fault_figures
from test_faults import (
    B_STEPS,
    DEBRIS,
    Checks,
    _apply_b,
    build_a_generations,
    describe_diff,
    disk_state,
    snapshot,
)

import atlas
from atlas import errors
from atlas.leases import is_lease

obstore = pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
objectstore = pytest.importorskip("atlas.backends.objectstore")
from obstore.store import MemoryStore  # noqa: E402

Case = tuple[int, Call, str]

# -- stores ---------------------------------------------------------------------------------------


def _is_manifest(key: str) -> bool:
    return "/" not in key and key.startswith("atlas.") and not key.endswith(".tmp")


def _keys(store: Any) -> list[str]:
    return sorted(meta["path"] for batch in obstore.list(store) for meta in batch)


class Space:
    """Where the copies of state A live: makes fresh store handles."""

    name = ""

    def new(self, label: str) -> Any:
        """An empty store handle."""
        raise NotImplementedError

    def copy_of_a(self, label: str) -> Any:
        """A store handle holding exactly the objects of state A."""
        raise NotImplementedError

    def set_a(self, store: Any) -> None:
        raise NotImplementedError


class MemorySpace(Space):
    name = "memory"

    def __init__(self) -> None:
        self._a: dict[str, bytes] = {}

    def new(self, label: str) -> Any:
        return MemoryStore()

    def set_a(self, store: Any) -> None:
        self._a = {key: bytes(obstore.get(store, key).bytes()) for key in _keys(store)}

    def copy_of_a(self, label: str) -> Any:
        store = MemoryStore()
        for key, data in self._a.items():
            obstore.put(store, key, data)
        return store


class S3Space(Space):
    name = "s3"

    def __init__(self, server: Any, bucket: str) -> None:
        self.server = server
        self.bucket = bucket
        self.root = server.store(bucket)
        self.base = f"faults-{uuid.uuid4().hex[:10]}"
        self._a_prefix = ""
        self._a_keys: list[str] = []

    def new(self, label: str) -> Any:
        return self.server.store(self.bucket, prefix=f"{self.base}/{label}")

    def set_a(self, store: Any) -> None:
        self._a_prefix = store.prefix.strip("/")
        self._a_keys = _keys(store)

    def copy_of_a(self, label: str) -> Any:
        for key in self._a_keys:
            obstore.copy(self.root, f"{self._a_prefix}/{key}", f"{self.base}/{label}/{key}")
        return self.new(label)


@dataclass
class Template:
    """State A in a space, and the states A and B seen by a fresh handle."""

    space: Space
    want_a: tuple[int, dict[str, Any]]
    want_b: tuple[int, dict[str, Any]]
    counter: Iterator[int] = field(default_factory=lambda: iter(range(1, 1 << 30)))

    def fresh(self, what: str) -> Any:
        return self.space.copy_of_a(f"{what}-{next(self.counter)}")


def _make_template(space: Space) -> Template:
    a = space.new("a")
    build_a_generations(a)
    for key, data in DEBRIS.items():
        obstore.put(a, key, data)
    want_a = disk_state(a)
    space.set_a(a)
    b = space.copy_of_a("b")
    s = atlas.Atlas.open(b)
    _apply_b(s)
    view_b = snapshot(s)
    s.flush()
    s.close()
    want_b = disk_state(b)
    assert want_b[1] == view_b, describe_diff(want_b[1], view_b)
    assert want_b[0] == want_a[0] + 1 and want_a[1] != want_b[1]
    return Template(space, want_a, want_b)


@pytest.fixture(scope="module")
def memory_template() -> Template:
    return _make_template(MemorySpace())


@pytest.fixture(scope="module")
def s3_template(moto_s3, s3_bucket) -> Template:  # noqa: F811
    return _make_template(S3Space(moto_s3, s3_bucket))


def _template(request: pytest.FixtureRequest, space: str) -> Template:
    t = request.getfixturevalue(f"{space}_template")
    if space != "memory":  # the same scenario must give the same states everywhere
        ref = request.getfixturevalue("memory_template")
        assert t.want_a == ref.want_a and t.want_b == ref.want_b
    return t


# -- injection ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """How the handle under test spills (object stores read by ranges only)."""

    max_pending_bytes: int | None = None

    @property
    def id(self) -> str:
        return "get_ranges" if self.max_pending_bytes is None else "get_ranges-spill"


VARIANTS = [Variant(), Variant(max_pending_bytes=0)]


def _open(monkeypatch: pytest.MonkeyPatch, store: Any, variant: Variant) -> tuple[atlas.Atlas, FaultyObstore]:
    """A handle on ``store`` whose backend talks to obstore through a fault injector."""
    faulty = FaultyObstore(obstore, store)
    monkeypatch.setattr(objectstore, "obstore", faulty)
    kw = {} if variant.max_pending_bytes is None else {"max_pending_bytes": variant.max_pending_bytes}
    s = atlas.Atlas.open(store, **kw)
    assert not s._st.io.can_map
    return s, faulty


def _all_cases(calls: list[Call]) -> list[Case]:
    return [(k, call, kind) for k, call in enumerate(calls, 1) for kind in object_kinds_for(call.verb)]


def _quick_cases(calls: list[Call], distinct: bool = False) -> list[Case]:
    """Every call with ``error``, and the lost-response kinds on manifest commits.

    With ``distinct``, ``error`` hits only the first read or write of each segment
    family, and the first segment delete, between two commits: the calls it skips
    differ only in which segment they touch.
    """
    out, seen, phase = [], set(), 0
    for k, call, kind in _all_cases(calls):
        commit = call.verb == "put" and _is_manifest(call.path)
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


def _fails(call: Call, kind: str) -> bool:
    """Whether the operation must fail with this fault (else it must succeed)."""
    if is_lease(call.path):  # a failed lease write or release is logged, never raised
        return False
    if kind in ("error", "full"):
        return True
    if kind == "lost":  # a lost manifest put is recognised by reading the manifest back
        return not (call.verb == "put" and _is_manifest(call.path))
    return False  # lost-retry: the backend recognises its own object


_OP_WORD = {"get": "read", "get_ranges": "read", "head": "stat", "list": "list", "delete": "delete"}


def _op_word(call: Call) -> str:
    """The operation the backend's message must name for a failure of ``call``."""
    if call.verb == "put":
        return "commit" if _is_manifest(call.path) else "write"
    return _OP_WORD[call.verb]


def check_error(checks: Checks, exc: BaseException | None, call: Call, location: str) -> None:
    """The raised error is the injected failure as a BackendError naming operation and object."""
    if exc is None:
        checks.expect(False, "no error was raised")
        return
    text = f"{type(exc).__name__}: {exc}"
    checks.expect(isinstance(exc, errors.AtlasError), f"not an AtlasError: {text}")
    checks.expect(not isinstance(exc, errors.ConflictError), f"an I/O failure reported as a conflict: {text}")
    checks.expect(isinstance(exc, errors.BackendError), f"an I/O failure surfaced as {text}")
    checks.expect(getattr(exc, "errno", None) == errno.EIO, f"errno {getattr(exc, 'errno', None)} != EIO: {text}")
    word = _op_word(call)
    checks.expect(word in str(exc), f"message does not name the operation {word!r}: {text}")
    checks.expect(call.path in str(exc), f"message does not name the object {call.path!r}: {text}")
    checks.expect(location.rstrip("/") in str(exc), f"message does not name the store {location}: {text}")


def _run(s: atlas.Atlas, faulty: FaultyObstore, k: int, kind: str, op: Callable[[atlas.Atlas], None]) -> Any:
    faulty.arm(k, kind)
    try:
        op(s)
    except Exception as exc:
        return exc
    finally:
        faulty.stop()
    return None


def _figures(
    test: str, space: str, operation: str, calls: list[Call], cases: list[Case], started: float, variant: str = ""
) -> None:
    record_fault_figures(
        f"test_faults_objectstore::{test}",
        backend=space,
        operation=operation,
        calls=len(calls),
        cases=cases,
        started=started,
        variant=variant,
    )


# Spaces and how much of the case matrix each runs by default.
SPACES = [
    pytest.param("memory", False, id="memory"),
    pytest.param("s3", True, id="s3"),
    pytest.param("s3", False, id="s3-exhaustive", marks=pytest.mark.slow),
]


def _record(
    monkeypatch: pytest.MonkeyPatch, t: Template, op: Callable[[atlas.Atlas], None], variant: Variant
) -> list[Call]:
    """The un-armed obstore call sequence of ``op`` on a fresh copy with B pending."""
    store = t.fresh("record")
    s, faulty = _open(monkeypatch, store, variant)
    _apply_b(s)
    faulty.record()
    op(s)
    faulty.stop()
    calls = list(faulty.calls)
    s.close()
    assert disk_state(store)[1] == t.want_b[1]
    return calls


def _location(store: Any) -> str:
    return objectstore.backend_for_handle(store, True).location


# -- the injector itself -----------------------------------------------------------------------------


def test_injector_kinds_do_what_they_say():
    store, other = MemoryStore(), MemoryStore()
    faulty = FaultyObstore(obstore, store)
    obx = obstore.exceptions
    faulty.arm(2, "error")
    faulty.put(store, "a", b"1")
    faulty.put(other, "x", b"not counted")
    with pytest.raises(obx.GenericError, match="injected"):
        faulty.put(store, "b", b"2")
    assert _keys(store) == ["a"] and faulty.fired is not None and faulty.fired.verb == "put"
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
    assert _keys(store) == ["b", "c"]
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
    store = MemoryStore()
    faulty = FaultyObstore(obstore, store)
    monkeypatch.setattr(objectstore, "obstore", faulty)
    atlas.Atlas.create(store).close()
    s = atlas.Atlas.open(store)
    s.create_dataset("d")
    for value, kind in enumerate(("lost", "lost-retry")):
        s.open_dataset("d").set_attribute("x", value)
        faulty.arm(1, kind)  # an attribute change writes no segment: call 1 is the commit
        s.flush()
        faulty.stop()
        assert faulty.fired is not None and (faulty.fired.verb, faulty.fired.path) == ("put", "atlas.json")
        assert not s.has_pending_changes
    fresh = atlas.Atlas.open(store, mode="r")
    assert fresh.generation == 2 and fresh.open_dataset("d").attributes() == {"x": 1}
    s.close()


# -- flush ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
@pytest.mark.parametrize(("space", "quick"), SPACES)
def test_flush_fault_at_every_call(request, monkeypatch, subtests, space, quick, variant):
    if quick and variant.max_pending_bytes is not None:
        pytest.skip("the spilled flush runs on S3 only in the exhaustive variant")
    started = time.perf_counter()
    t = _template(request, space)
    calls = _record(monkeypatch, t, lambda s: s.flush(), variant)
    commit_k = max(k for k, c in enumerate(calls, 1) if c.verb == "put" and _is_manifest(c.path))
    # after the commit only the lease over spilled segments is released
    assert all(c.verb == "delete" and is_lease(c.path) for c in calls[commit_k:]), calls
    want_a, want_b = t.want_a, t.want_b
    cases = _quick_cases(calls) if quick else _all_cases(calls)
    for k, call, kind in cases:
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            store = t.fresh(f"flush-{variant.id}-{k}-{kind}")
            s, faulty = _open(monkeypatch, store, variant)
            _apply_b(s)
            raised = _run(s, faulty, k, kind, lambda s: s.flush())
            checks = Checks(f"{space}: flush fault at call {k} ({call.verb} {call.path}, {kind})")
            fired = faulty.fired
            checks.expect(fired is not None and fired.verb == call.verb, f"fault fired at {fired}")
            if _fails(call, kind):
                check_error(checks, raised, call if fired is None else Call(fired.verb, fired.path), _location(store))
                checks.state(store, want_a, "after the failed flush")
                checks.expect(s.has_pending_changes, "the failed handle lost its pending changes")
            else:
                checks.expect(raised is None, f"the flush raised {type(raised).__name__}: {raised}")
                checks.state(store, (want_a[0] + 1, want_b[1]), "after a flush whose response was lost")
                checks.expect(not s.has_pending_changes, "pending changes left after a successful flush")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the handle's view is not B: {describe_diff(view, want_b[1])}")
            try:
                s.flush()  # disarmed retry on the same handle (nothing to do after a success)
            except Exception as exc:
                checks.expect(False, f"retried flush failed: {type(exc).__name__}: {exc}")
            else:
                checks.expect(not s.has_pending_changes, "pending changes left after the retry")
                checks.state(store, (want_a[0] + 1, want_b[1]), "after the retried flush")
            s.close()
            checks.done()
    _figures(request.node.name, space, "flush", calls, cases, started, variant.id)


# -- compact ----------------------------------------------------------------------------------------


def _compact(s: atlas.Atlas) -> None:
    s.compact(grace_period=0)


def _segment_keys(store: Any) -> set[str]:
    return {k for k in _keys(store) if k.endswith(".af")}


def _live_segments(store: Any) -> dict[str, list[str]]:
    s = atlas.Atlas.open(store, mode="r")
    try:
        return {fam.dir: [ref.file for ref in fam.segments] for fam in s._st.base.families.values()}
    finally:
        s.close()


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
@pytest.mark.parametrize(("space", "quick"), SPACES)
def test_compact_fault_at_every_call(request, monkeypatch, subtests, space, quick, variant):
    if quick and variant.max_pending_bytes is not None:
        pytest.skip("the spilled compaction runs on S3 only in the exhaustive variant")
    started = time.perf_counter()
    t = _template(request, space)
    calls = _record(monkeypatch, t, _compact, variant)
    commits = [k for k, c in enumerate(calls, 1) if c.verb == "put" and _is_manifest(c.path)]
    # compact() first flushes B (commit 1), then commits the compacted manifest (commit 2),
    # then lists and deletes retired segments and the debris.
    assert len(commits) == 2, calls
    flush_commit, compact_commit = commits
    assert {c.verb for c in calls[compact_commit:]} == {"delete", "list"}, calls[compact_commit:]
    assert set(DEBRIS) <= {c.path for c in calls[compact_commit:] if c.verb == "delete"}
    want_a, want_b = t.want_a, t.want_b
    cases = _quick_cases(calls, distinct=True) if quick else _all_cases(calls)
    for k, call, kind in cases:
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            store = t.fresh(f"compact-{variant.id}-{k}-{kind}")
            s, faulty = _open(monkeypatch, store, variant)
            _apply_b(s)
            raised = _run(s, faulty, k, kind, _compact)
            checks = Checks(f"{space}: compact fault at call {k} ({call.verb} {call.path}, {kind})")
            fired = faulty.fired
            checks.expect(fired is not None and fired.verb == call.verb, f"fault fired at {fired}")
            where = call if fired is None else Call(fired.verb, fired.path)
            if not _fails(call, kind) or k > compact_commit:
                # a lost response recognised, or a fault past the compaction's commit point
                checks.expect(raised is None, f"the compaction raised {type(raised).__name__}: {raised}")
                checks.state(store, (want_a[0] + 2, want_b[1]), "after the compaction")
            elif k <= flush_commit:  # while flushing B: nothing committed, B still pending
                check_error(checks, raised, where, _location(store))
                checks.state(store, want_a, "after a compaction failed while flushing")
                checks.expect(s.has_pending_changes, "the failed handle lost its pending changes")
            else:  # while compacting: B committed, the compaction not
                check_error(checks, raised, where, _location(store))
                checks.state(store, (want_a[0] + 1, want_b[1]), "after a compaction failed before its commit")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the handle's content is not B: {describe_diff(view, want_b[1])}")
            try:
                _compact(s)  # disarmed retry on the same handle
            except Exception as exc:
                checks.expect(False, f"retried compaction failed: {type(exc).__name__}: {exc}")
            else:
                checks.state(store, (None, want_b[1]), "after the retried compaction")
                families = _live_segments(store)
                checks.expect(
                    all(len(segs) == 1 for segs in families.values()),
                    f"retried compaction left several segments: {families}",
                )
                live = {f"{d}/{f}" for d, segs in families.items() for f in segs}
                stored = _segment_keys(store)
                checks.expect(stored == live, f"dead segment objects remain: {sorted(stored - live)}")
            s.close()
            checks.done()
    _figures(request.node.name, space, "compact", calls, cases, started, variant.id)


# -- spilling writes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("space", "quick"), SPACES)
def test_spilling_write_fault_at_every_call(request, monkeypatch, subtests, space, quick):
    """With no memory budget every write spills B to uncommitted segments at once.

    A failed read fails that write call (changing nothing) and retrying it succeeds;
    a failed spill does not fail the write (it is retried later).  Flushing must then
    give exactly B, and nothing is visible before the flush.
    """
    if quick:
        pytest.skip("spilling writes run on S3 only in the exhaustive variant")
    started = time.perf_counter()
    t = _template(request, space)
    variant = Variant(max_pending_bytes=0)
    store = t.fresh("spill-record")
    s, faulty = _open(monkeypatch, store, variant)
    faulty.record()
    _apply_b(s)
    faulty.stop()
    calls = list(faulty.calls)
    s.close()
    assert sum(c.verb == "put" for c in calls) >= 5, calls
    want_a, want_b = t.want_a, t.want_b
    cases = _all_cases(calls)
    for k, call, kind in cases:
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            store = t.fresh(f"spill-write-{k}-{kind}")
            s, faulty = _open(monkeypatch, store, variant)
            faulty.arm(k, kind)
            checks = Checks(f"{space}: spilling write, fault at call {k} ({call.verb} {call.path}, {kind})")
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
            faulty.stop()
            fired = faulty.fired
            checks.expect(fired is not None and fired.verb == call.verb, f"fault fired at {fired}")
            expected_failures = 0 if call.verb == "put" or not _fails(call, kind) else 1
            checks.expect(
                len(failed) == expected_failures, f"calls that failed: {[(lbl, str(e)) for lbl, e in failed]}"
            )
            if failed and fired is not None:
                check_error(checks, failed[0][1], Call(fired.verb, fired.path), _location(store))
            checks.state(store, want_a, "before the flush")
            view = snapshot(s)
            checks.expect(view == want_b[1], f"the handle's view is not B: {describe_diff(view, want_b[1])}")
            try:
                s.flush()
            except Exception as exc:
                checks.expect(False, f"flush failed: {type(exc).__name__}: {exc}")
            else:
                checks.state(store, (want_a[0] + 1, want_b[1]), "after the flush")
            s.close()
            checks.done()
    _figures(request.node.name, space, "spilling writes", calls, cases, started, "get_ranges-spill")


# -- create -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("space", "quick"), SPACES)
def test_create_fault_at_every_call(request, monkeypatch, subtests, space, quick):
    started = time.perf_counter()
    t = _template(request, space)
    store = t.space.new(f"create-record-{uuid.uuid4().hex[:8]}")
    faulty = FaultyObstore(obstore, store)
    monkeypatch.setattr(objectstore, "obstore", faulty)
    faulty.record()
    atlas.Atlas.create(store).close()
    faulty.stop()
    calls = list(faulty.calls)
    assert calls[-1].verb == "put" and _is_manifest(calls[-1].path), calls
    cases = _quick_cases(calls) if quick else _all_cases(calls)
    for k, call, kind in cases:
        with subtests.test(msg=f"{call.verb} {call.path}", k=k, kind=kind):
            store = t.space.new(f"create-{k}-{kind}-{uuid.uuid4().hex[:8]}")
            faulty = FaultyObstore(obstore, store)
            monkeypatch.setattr(objectstore, "obstore", faulty)
            faulty.arm(k, kind)
            raised = None
            try:
                atlas.Atlas.create(store, codec="lz4").close()
            except Exception as exc:
                raised = exc
            faulty.stop()
            checks = Checks(f"{space}: create fault at call {k} ({call.verb} {call.path}, {kind})")
            fired = faulty.fired
            checks.expect(fired is not None and fired.verb == call.verb, f"fault fired at {fired}")
            if _fails(call, kind):
                check_error(checks, raised, call if fired is None else Call(fired.verb, fired.path), _location(store))
                try:
                    atlas.Atlas.open(store)
                except errors.NotAStoreError:
                    pass
                except Exception as exc:
                    checks.expect(False, f"open after a failed create: {type(exc).__name__}: {exc}")
                else:
                    checks.expect(False, "a failed create left an openable store")
                try:  # the same call again, without the fault, must now succeed
                    atlas.Atlas.create(store, codec="lz4").close()
                except Exception as exc:
                    checks.expect(False, f"retried create failed: {type(exc).__name__}: {exc} ({_keys(store)})")
            else:
                checks.expect(raised is None, f"create raised {type(raised).__name__}: {raised}")
            try:
                s = atlas.Atlas.open(store)
            except Exception as exc:
                checks.expect(False, f"open after the create: {type(exc).__name__}: {exc}")
            else:
                checks.expect((s.generation, s.list_datasets(), s.codec) == (0, [], "lz4"), repr(s))
                s.close()
            checks.done()
    _figures(request.node.name, space, "create", calls, cases, started)
