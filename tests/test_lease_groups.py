"""``LeaseGroups``: leases over many sets of files, a bounded number of sets per lease object."""

from __future__ import annotations

import time

from atlas.backends.local import LocalBackend
from atlas.txn import leases
from atlas.txn.leases import LEASE_DIR, LeaseGroups, decode_lease


def _leased(root) -> list[list[str]]:
    return sorted(decode_lease(p.read_bytes()) for p in (root / LEASE_DIR).glob("*.lease"))


def test_sets_are_leased_a_few_per_object_and_leave_as_they_are_kept_no_more(tmp_path):
    backend = LocalBackend(tmp_path)
    groups = LeaseGroups(backend, per_lease=3)
    for k in range(7):
        groups.add(k, [f"a/{k}.af", f"_catalog/{k}.cat"])
    held = _leased(tmp_path)
    assert len(held) == 3 and sorted(len(files) for files in held) == [2, 6, 6]
    every = [f for k in range(7) for f in [f"a/{k}.af", f"_catalog/{k}.cat"]]
    assert sorted(f for files in held for f in files) == sorted(every)
    groups.add(3, ["other"])  # a key held already is not added again
    assert _leased(tmp_path) == held
    groups.keep([1, 2, 6])  # the first group shrinks, the second goes, the third is as it was
    assert _leased(tmp_path) == sorted([sorted(["a/1.af", "_catalog/1.cat", "a/2.af", "_catalog/2.cat"]),
                                        sorted(["a/6.af", "_catalog/6.cat"])])  # fmt: skip
    groups.release()
    assert _leased(tmp_path) == []


def test_an_arrival_rewrites_the_newest_lease_only_and_renewal_rewrites_the_due_ones(tmp_path, monkeypatch):
    backend = LocalBackend(tmp_path)
    groups = LeaseGroups(backend, per_lease=2)
    writes = []
    original = leases.encode_lease
    monkeypatch.setattr(leases, "encode_lease", lambda files, now: writes.append(sorted(files)) or original(files, now))
    for k in range(6):
        groups.add(k, [f"f{k}"])
    assert writes == [["f0"], ["f0", "f1"], ["f2"], ["f2", "f3"], ["f4"], ["f4", "f5"]]
    writes.clear()
    groups.renew()
    assert writes == []  # none is due yet
    clock = time.monotonic() + leases.RENEW_SECONDS + 1
    monkeypatch.setattr(leases.time, "monotonic", lambda: clock)
    groups.renew()
    assert sorted(writes) == [["f0", "f1"], ["f2", "f3"], ["f4", "f5"]] and len(_leased(tmp_path)) == 3
    groups.release()
