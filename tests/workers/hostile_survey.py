"""Survey every distinct escape of the hostile API property at once.

The property in tests/test_hostile.py stops at the first failing example (and
shrinks it).  While bugs are open, this survey keeps going: it draws many call
sequences from the same strategies, runs each with the same checks, and groups the
failures by exception type and innermost atlas frame, with one example each.  It is a
tool for whoever fixes the bugs, not a test.

Usage: ``PYTHONPATH=.:tests python tests/workers/hostile_survey.py [EXAMPLES] [--hashable-only]``
(``--hashable-only`` leaves out list/dict/set names and non-float grace periods,
whose escapes are the most frequent, so that rarer ones surface).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

import test_hostile as th
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st


def signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "/atlas/" in f.filename]
    where = f"{mine[-1].filename.split('/atlas/')[-1]}:{mine[-1].lineno}" if mine else "?"
    message = re.sub(r"'/[^']*'", "'<path>'", str(exc))
    return f"{type(exc).__name__} at {where}: {message[:70]}"


def main(argv: list[str]) -> int:
    examples = int(argv[0]) if argv and argv[0].isdigit() else 1000
    calls = th.calls
    if "--hashable-only" in argv:
        calls = calls.filter(
            lambda c: (
                all(not isinstance(v, (list, dict, set)) for v in (c[0], *c[2]))
                and not (c[1] == "compact" and not isinstance(c[2][0], (int, float)))
            )
        )
    found: Counter[str] = Counter()
    example_of: dict[str, str] = {}
    stats: Counter[str] = Counter()
    tmp = tempfile.mkdtemp()
    template = Path(tmp) / "template"
    th.build_api_store(template)

    @settings(
        max_examples=examples,
        phases=[Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(calls, min_size=1, max_size=12))
    def run(sequence):
        with tempfile.TemporaryDirectory(dir=tmp) as ex:
            store_path = Path(ex) / "s"
            shutil.copytree(template, store_path)
            scratch = Path(ex) / "scratch"
            scratch.mkdir()
            try:
                th.run_calls(store_path, scratch, sequence, stats)
            except AssertionError as exc:
                sig = signature(exc.__cause__) if exc.__cause__ else f"check failed: {str(exc)[:120]}"
                found[sig] += 1
                example_of.setdefault(sig, str(exc)[:400])

    try:
        with th.address_space_limit(4 << 30):
            run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{examples} sequences, {stats['calls']} calls: {stats['accepted']} accepted, {stats['rejected']} rejected")
    for sig, n in found.most_common():
        print(f"{n:6d}  {sig}\n        e.g. {example_of[sig]}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
