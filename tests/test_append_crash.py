"""SIGKILL a writer while it appends and commits: the store holds the old length or the new one.

The writer (``tests/workers/append_writer.py``) grows one array by a few rows per
commit; row ``i`` holds ``i``.  After each kill the store must open, verify clean,
have a length the log allows (the last committed one or the one being committed),
hold exactly rows ``0..n-1`` and carry exact stats for that length.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import atlas

WORKERS = Path(__file__).parent / "workers"
KILLS = 5


def _allowed(log: Path) -> set[int]:
    committed, pending = None, None
    for line in log.read_text().splitlines():
        if m := re.match(r"^(start|committed) (\d+)$", line):
            committed, pending = int(m[2]), None
        elif m := re.match(r"^about to commit (\d+)$", line):
            pending = int(m[1])
    assert committed is not None
    return {committed} | ({pending} if pending is not None else set())


def test_killed_append_leaves_old_or_new_length(tmp_path: Path) -> None:
    path = tmp_path / "s.atlas"
    with atlas.Atlas.create(path) as store:
        store.create_dataset("d").define_array("x", "float64", ["t", "z"], [0, 24], chunk_shape=[16, 24])
    log = tmp_path / "log.txt"
    rng = random.Random(16)
    lengths = []
    for _ in range(KILLS):
        before = log.read_text().count("about to commit") if log.exists() else 0
        with open(tmp_path / "stderr.txt", "ab") as err:
            cmd = [sys.executable, str(WORKERS / "append_writer.py"), str(path), str(log)]
            proc = subprocess.Popen(cmd, stderr=err)
        deadline = time.monotonic() + 60
        while (log.read_text().count("about to commit") if log.exists() else 0) == before:
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "the writer did not start appending"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
        allowed = _allowed(log)
        with atlas.Atlas.open(path, mode="r") as store:
            assert store.verify() == []
            ds = store["d"]
            n = ds.array_meta("x")["shape"][0]
            assert n in allowed, (n, allowed)
            got = ds.read_array("x")
            np.testing.assert_array_equal(got, np.repeat(np.arange(n, dtype="float64")[:, None], 24, axis=1))
            stats = ds.array_stats("x")
            lo, hi = (0.0, float(n - 1)) if n else (None, None)  # killed before the first commit landed
            assert stats == {"row_count": n * 24, "null_count": 0, "min": lo, "max": hi}
        lengths.append(n)
    assert lengths == sorted(lengths)
