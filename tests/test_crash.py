"""Crash tests with real processes: SIGKILL a writer at random moments.

A writer process (``tests/workers/crash_writer.py``) loops over deterministic
generations of changes and commits each with ``flush()`` or ``compact()``; before
each commit it logs (fsynced) the hash of the content it is about to commit, after
it ``committed G``.  The test kills it with SIGKILL after a random delay, then checks
that the store

* opens, and ``verify()`` finds every referenced byte intact;
* holds exactly the last committed generation or the one being committed (its
  canonical dump hashes to one of those two oracle entries), never a mix;

then restarts the writer from whatever the store holds.  Re-computing a generation
after a restart must announce the same hash as before (the content is a function of
the generation only), which makes every later check exact.  At the end a
``compact(grace_period=0)`` must leave no file behind that the manifest does not
reference (the debris of killed flushes, spills and compactions is swept).

Default: 20 kills (plus 3 with freshly started interpreters).  ``-m slow``: 1000.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from crash_writer import COMPACT_EVERY
from rel_common import append_line, record_figure, referenced_files, store_files, store_hash

import atlas

WORKERS = Path(__file__).parent / "workers"

_ABOUT = re.compile(r"^about to commit generation (\d+) with content hash ([0-9a-f]{32})$")
_COMMITTED = re.compile(r"^committed (\d+)$")
_START = re.compile(r"^start (\d+) ([0-9a-f]{32})$")


@dataclass
class Oracle:
    """What the writer's log says the store may hold."""

    committed: tuple[int, str]
    pending: tuple[int, str] | None
    #: Every hash ever announced per generation (must be one per generation).
    known: dict[int, str] = field(default_factory=dict)


def read_oracle(path: Path) -> Oracle:
    committed: tuple[int, str] | None = None
    pending: tuple[int, str] | None = None
    known: dict[int, str] = {}

    def learn(g: int, h: str, line: str) -> None:
        assert known.setdefault(g, h) == h, f"generation {g} announced with two hashes ({known[g]}, {h}): {line}"

    for line in path.read_text().splitlines():
        if m := _ABOUT.match(line):
            g, h = int(m[1]), m[2]
            assert committed is not None and g == committed[0] + 1, f"unexpected {line!r} after {committed}"
            learn(g, h, line)
            pending = (g, h)
        elif m := _COMMITTED.match(line):
            g = int(m[1])
            assert pending is not None and pending[0] == g, f"{line!r} without its announcement"
            committed, pending = pending, None
        elif m := _START.match(line):
            g, h = int(m[1]), m[2]
            learn(g, h, line)
            committed, pending = (g, h), None
        elif line.startswith("view changed"):
            pytest.fail(f"the writer's view changed across a commit: {line}")
        # anything else is a line cut by SIGKILL (completed by the next writer)
    assert committed is not None, "the oracle has no start line"
    return Oracle(committed, pending, known)


def check_store(store_path: Path, oracle_path: Path) -> tuple[int, str, int | None]:
    """Assert the store holds the committed or the announced generation.

    Returns ``(G found, "old" | "new" | "committed", generation being committed or None)``.
    """
    oracle = read_oracle(oracle_path)
    with atlas.Atlas.open(store_path, mode="r") as store:
        problems = store.verify()
        assert problems == [], f"verify() after a kill: {problems}"
        h = store_hash(store)
        g = int(store.open_dataset("meta").get_attribute("G", 0)) if "meta" in store else 0
    allowed = {oracle.committed[1]: (oracle.committed[0], "old" if oracle.pending else "committed")}
    if oracle.pending is not None:
        allowed[oracle.pending[1]] = (oracle.pending[0], "new")
    assert h in allowed, (
        f"store content {h} (meta G={g}) is neither the committed generation {oracle.committed} "
        f"nor the one being committed {oracle.pending}"
    )
    expected_g, which = allowed[h]
    assert g == expected_g
    return g, which, None if oracle.pending is None else oracle.pending[0]


class Zygote:
    """Client of tests/workers/crash_zygote.py (a warmed-up fork server)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.err = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKERS / "crash_zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
        )
        assert self._read() == "ready", self.stderr()

    def _read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"crash zygote died: {self.stderr()}")
        return line.strip()

    def _send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def spawn(self, *args: object) -> int:
        self._send("spawn " + " ".join(str(a) for a in args))
        kind, pid = self._read().split()
        assert kind == "pid"
        return int(pid)

    def wait(self, pid: int) -> int:
        self._send(f"wait {pid}")
        kind, got, status = self._read().split()
        assert kind == "status" and int(got) == pid
        return int(status)

    def close(self) -> None:
        if self.proc.poll() is None:
            self._send("quit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.err.close()


def new_store(tmp_path: Path) -> tuple[Path, Path]:
    store_path, oracle = tmp_path / "store", tmp_path / "oracle.log"
    with atlas.Atlas.create(store_path) as store:
        h0 = store_hash(store)
    append_line(oracle, f"start 0 {h0}")
    return store_path, oracle


def assert_killed(status: int, who: str, errors: str) -> None:
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else f"signal {os.WTERMSIG(status)}"
    pytest.fail(f"{who} ended on its own ({code}) before it was killed:\n{errors}")


def assert_swept(store_path: Path) -> int:
    """``compact(grace_period=0)`` leaves only referenced segments; returns files swept."""
    before = store_files(store_path)
    with atlas.Atlas.open(store_path) as store:
        h = store_hash(store)
        store.compact(grace_period=0.0)
        assert store.verify() == []
        assert store_hash(store) == h
    after = store_files(store_path)
    refs, manifest = referenced_files(store_path)
    assert after - {manifest, ".atlas.lock"} == refs, f"unreferenced files survive compaction: {sorted(after - refs)}"
    return len(before - after)


def run_kills(tmp_path: Path, kills: int, seed: int, max_delay: float) -> dict[str, object]:
    store_path, oracle = new_store(tmp_path)
    rng = random.Random(seed)
    zygote = Zygote(tmp_path / "zygote.err")
    outcomes: Counter[str] = Counter()
    generations = []
    try:
        for k in range(kills):
            budget = 2048 if k % 2 else 0  # every other writer spills staged chunks early
            pid = zygote.spawn(store_path, oracle, seed, budget)
            time.sleep(rng.uniform(0.0, max_delay))
            os.kill(pid, signal.SIGKILL)
            assert_killed(zygote.wait(pid), f"writer {k} (pid {pid})", zygote.stderr())
            g, which, pending = check_store(store_path, oracle)
            outcomes[which] += 1
            if pending is not None and pending % COMPACT_EVERY == 0:
                outcomes["inside_compaction"] += 1
            generations.append(g)
    finally:
        zygote.close()
    swept = assert_swept(store_path)
    assert generations[-1] >= kills, f"the writer made too little progress: {generations}"
    return {
        "kills": kills,
        "final_generation": generations[-1],
        "killed_inside_commit_window": outcomes["old"] + outcomes["new"],
        "store_at_old_generation": outcomes["old"],
        "store_at_new_generation": outcomes["new"],
        "killed_inside_compact_call": outcomes["inside_compaction"],
        "killed_outside_commit": outcomes["committed"],
        "compactions_committed": generations[-1] // COMPACT_EVERY,
        "debris_files_swept_at_end": swept,
    }


def test_sigkill_writer_fork_server(tmp_path):
    figures = run_kills(tmp_path, kills=20, seed=20240601, max_delay=0.6)
    record_figure("test_crash::test_sigkill_writer_fork_server", **figures)


@pytest.mark.slow
def test_sigkill_writer_fork_server_soak(tmp_path):
    figures = run_kills(tmp_path, kills=1000, seed=7, max_delay=0.5)
    record_figure("test_crash::test_sigkill_writer_fork_server_soak", **figures)


def test_sigkill_freshly_started_writer(tmp_path):
    """The same with real ``python crash_writer.py`` processes (no fork server)."""
    store_path, oracle = new_store(tmp_path)
    rng = random.Random(99)
    err = tmp_path / "writer.err"
    for _ in range(3):
        lines_before = oracle.read_text().count("\n")
        with open(err, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, str(WORKERS / "crash_writer.py"), str(store_path), str(oracle), "99", "0"], stderr=fh
            )
        deadline = time.monotonic() + 60
        while oracle.read_text().count("\n") == lines_before:  # wait for its start line
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, err.read_text()
        check_store(store_path, oracle)
    assert_swept(store_path)
