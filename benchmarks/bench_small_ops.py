"""Small operations side by side: this package against the original ``atlas-python`` 0.9.1.

Every row is a micro-workload of many tiny calls on small datasets (one ``float32``
array ``temp`` of shape ``(24,)`` and two attributes each), the kind of store the
package is built for.  The same function (:func:`run_workloads`) times both
implementations: this package in the current interpreter, the original in a
subprocess of its own interpreter (started with a temporary working directory so
that ``import atlas`` finds the other package).  Each row reports the median of
``--repeats`` runs, in microseconds per call or per dataset, and the ratio
``this package / original`` (1.0 is as fast; the target is <= 2 for per-call rows
and <= 1 for the batched row).  Two tables are printed: wall time, and the CPU time
of the timing process (``time.process_time``, every thread), which a machine shared
with other work disturbs much less.

Rows:

* ``read_array small slice``: ``ds.read_array("temp", [2], [8])`` on a committed
  dataset of a reopened store, per call;
* ``create+define+write+2 attrs``: ``create_dataset`` + ``define_array`` +
  ``write_array`` + two ``set_attribute`` (a float and a short string), per dataset;
* ``flush of N new datasets``: the one ``flush`` after the row above, per dataset;
* ``ingest per dataset (ops + flush)``: the two rows above together;
* ``flush of 1 changed attribute``: one ``set_attribute`` + ``flush`` on the store of
  N datasets (the part of a commit that depends on the store, not the change);
* ``add_datasets batch, staging only`` and ``add_datasets batch + flush``: this
  package's batched path (:meth:`atlas.Atlas.add_datasets`) for the same N datasets,
  per dataset, without and with the flush; the original has no such call, so its
  column repeats its per-call rows (``create+...`` and ``ingest``).

Install the original once, in its own virtual environment (it is not a dependency
of this project)::

    python3 -m venv /tmp/orig-venv && /tmp/orig-venv/bin/pip install atlas-python==0.9.1 numpy

then, from the repository root::

    .venv/bin/python benchmarks/bench_small_ops.py --original /tmp/orig-venv/bin/python
    .venv/bin/python benchmarks/bench_small_ops.py --datasets 2000 --repeats 5 --json out.json

Without ``--original`` (or when that interpreter cannot import ``atlas``) the
original's rows are skipped with a message.  Stores live in temporary directories
under ``--tmp`` that are deleted at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np


class _Clock:
    """Wall and CPU seconds together: on a shared machine the CPU time of the timing
    process (all its threads) says more about the cost of a call than the wall time."""

    __slots__ = ("cpu", "wall")

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def __sub__(self, other: _Clock) -> tuple[float, float]:
        return self.wall - other.wall, self.cpu - other.cpu


def _per(span: tuple[float, float], n: int) -> tuple[float, float]:
    return span[0] / n, span[1] / n


clock = _Clock

#: Cells of the one array of every dataset.
CELLS = 24
#: Calls per timed read repeat.
READ_CALLS = 2000

ROWS = [
    ("read", "read_array small slice", "us/call"),
    ("create", "create+define+write+2 attrs", "us/dataset"),
    ("flush", "flush of N new datasets", "us/dataset"),
    ("ingest", "ingest per dataset (ops + flush)", "us/dataset"),
    ("commit1", "flush of 1 changed attribute", "ms/commit"),
    ("stage", "add_datasets batch, staging only", "us/dataset"),
    ("batch", "add_datasets batch + flush", "us/dataset"),
]


def _timed(fn, repeats: int) -> list[float]:
    """``fn()`` ``repeats`` times after one warm-up; each returns its own dict of seconds."""
    fn()
    out = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            out.append(fn())
        finally:
            gc.enable()
    return out


def run_workloads(atlas: ModuleType, tmp: Path, n: int, repeats: int) -> dict[str, list[float]]:
    """Time every row with ``atlas`` (either implementation).

    Returns ``{row: [wall seconds per unit, ...], row + ".cpu": [CPU seconds per unit, ...]}``.
    """
    values = np.arange(CELLS, dtype=np.float32) * np.float32(0.5)
    counter = [0]

    def fresh() -> Path:
        counter[0] += 1
        path = tmp / f"s{counter[0]}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def per_call() -> dict[str, float]:
        path = fresh()
        store = atlas.Atlas.create(str(path))
        t0 = clock()
        for i in range(n):
            ds = store.create_dataset(f"st{i:07d}")
            ds.define_array("temp", "float32", ["time"], [CELLS])
            ds.write_array("temp", [0], values)
            ds.set_attribute("lat", 12.5 + i)
            ds.set_attribute("platform", "buoy")
        t1 = clock()
        store.flush()
        t2 = clock()
        ds = store.open_dataset(f"st{n // 2:07d}")
        t3 = clock()
        ds.set_attribute("lat", -1.0)
        store.flush()
        t4 = clock()
        store.close()
        shutil.rmtree(path, ignore_errors=True)
        return {"create": _per(t1 - t0, n), "flush": _per(t2 - t1, n), "ingest": _per(t2 - t0, n), "commit1": t4 - t3}

    def read() -> dict[str, float]:
        path = fresh()
        store = atlas.Atlas.create(str(path))
        ds = store.create_dataset("one")
        ds.define_array("temp", "float32", ["time"], [CELLS])
        ds.write_array("temp", [0], values)
        store.flush()
        store.close()
        store = atlas.Atlas.open(str(path))
        ds = store.open_dataset("one")
        got = ds.read_array("temp", [2], [8])
        if not np.array_equal(got, values[2:10]):
            raise AssertionError("read_array returned other values than written")
        t0 = clock()
        for _ in range(READ_CALLS):
            ds.read_array("temp", [2], [8])
        dt = _per(clock() - t0, READ_CALLS)
        del ds, store  # the original's close() would flush; this handle is read-only in spirit
        shutil.rmtree(path, ignore_errors=True)
        return {"read": dt}

    def batch() -> dict[str, float]:
        path = fresh()
        store = atlas.Atlas.create(str(path))
        t0 = clock()
        store.add_datasets(
            (f"st{i:07d}", {"temp": (["time"], values)}, {"lat": 12.5 + i, "platform": "buoy"}) for i in range(n)
        )
        t1 = clock()
        store.flush()
        t2 = clock()
        store.close()
        shutil.rmtree(path, ignore_errors=True)
        return {"stage": _per(t1 - t0, n), "batch": _per(t2 - t0, n)}

    runs: list[dict[str, tuple[float, float]]] = []
    tmp.mkdir(parents=True, exist_ok=True)
    for r in zip(_timed(per_call, repeats), _timed(read, repeats)):
        runs.append({**r[0], **r[1]})
    if hasattr(atlas.Atlas, "add_datasets"):
        for run, b in zip(runs, _timed(batch, repeats)):
            run.update(b)
    else:
        for run in runs:
            run["stage"], run["batch"] = run["create"], run["ingest"]
    results: dict[str, list[float]] = {}
    for key in runs[0]:
        results[key] = [run[key][0] for run in runs]
        results[key + ".cpu"] = [run[key][1] for run in runs]
    return results


def _worker(spec: dict[str, Any]) -> int:
    """Subprocess entry: time the ``atlas`` this interpreter imports and print JSON."""
    import atlas

    tmp = Path(spec["tmp"])
    tmp.mkdir(parents=True, exist_ok=True)
    res = run_workloads(atlas, tmp, int(spec["n"]), int(spec["repeats"]))
    sys.stdout.write(json.dumps({"version": getattr(atlas, "__version__", "?"), "results": res}) + "\n")
    return 0


def _run_original(python: str, tmp: Path, n: int, repeats: int) -> dict[str, Any] | None:
    spec = json.dumps({"tmp": str(tmp / "orig"), "n": n, "repeats": repeats})
    script = str(Path(__file__).resolve())
    workdir = tmp / "orig-cwd"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # ``python script`` puts the script's directory (benchmarks/) first on sys.path, not
    # the repository root, so ``import atlas`` finds the original's package.
    try:
        proc = subprocess.run([python, script, "--worker", spec], cwd=workdir, env=env, capture_output=True,
                              text=True, check=False)  # fmt: skip
    except OSError as exc:
        print(f"original skipped: cannot start {python}: {exc}", file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f"original skipped: {python} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not str(out.get("version", "")).startswith("0.9"):
        print(f"note: the original interpreter imported atlas {out.get('version')}", file=sys.stderr)
    return out


def _scale(key: str, seconds: float) -> float:
    return seconds * (1e3 if key.startswith("commit1") else 1e6)


def table(ours: dict[str, list[float]], orig: dict[str, list[float]] | None, before: dict | None,
          suffix: str = "") -> str:  # fmt: skip
    """A markdown table of medians (and ratios to the original); ``suffix`` ".cpu" for CPU times."""
    head = ["operation", "unit"]
    if before is not None:
        head.append("before")
    head.append("this package")
    if orig is not None:
        head += ["original 0.9.1", "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row_key, label, unit in ROWS:
        key = row_key + suffix
        if key not in ours:
            continue
        row = [label, unit]
        if before is not None:
            b = before.get(key)
            row.append(f"{_scale(key, statistics.median(b)):.1f}" if b else "n/a")
        med = _scale(key, statistics.median(ours[key]))
        row.append(f"{med:.1f}")
        if orig is not None:
            o = _scale(key, statistics.median(orig[key]))
            label_o = f"{o:.1f}" + (" (per-call path)" if row_key in ("stage", "batch") else "")
            row += [label_o, f"{med / o:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return _worker(json.loads(argv[1]))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--original", help="python of a venv with atlas-python 0.9.1 installed")
    p.add_argument("--datasets", type=int, default=2000, help="N datasets of the ingest rows (default 2000)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per row (median reported)")
    p.add_argument("--tmp", default=None, help="parent of the temporary stores")
    p.add_argument("--json", help="write raw seconds of every repeat here")
    p.add_argument("--before", help="a --json file of an earlier run, shown as a 'before' column")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import atlas

    tmp = Path(tempfile.mkdtemp(prefix="atlas-smallops-", dir=args.tmp))
    try:
        orig = None
        if args.original:
            print(f"timing the original with {args.original} ...", file=sys.stderr)
            orig = _run_original(args.original, tmp, args.datasets, args.repeats)
        else:
            print("original skipped: pass --original PYTHON (a venv with atlas-python==0.9.1)", file=sys.stderr)
        print("timing this package ...", file=sys.stderr)
        ours = run_workloads(atlas, tmp / "ours", args.datasets, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    before = json.loads(Path(args.before).read_text())["ours"] if args.before else None
    print(f"N = {args.datasets} datasets, median of {args.repeats} repeats, load {os.getloadavg()[0]:.1f}")
    print("\nwall time\n")
    print(table(ours, orig["results"] if orig else None, before))
    print("\nCPU time of the timing process\n")
    print(table(ours, orig["results"] if orig else None, before, ".cpu"))
    if args.json:
        Path(args.json).write_text(json.dumps({"ours": ours, "original": orig}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
