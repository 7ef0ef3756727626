"""Cold start and start-up: the first calls of a fresh process, and the ``atlas`` command.

Everything runs in fresh interpreters (``sys.executable``), like a user at a shell or a
new dask worker:

* **first calls**: ``import atlas`` (and numpy, which a program reading arrays
  imports anyway and atlas may load later), ``Atlas.open``, the first bulk read
  (``read_array_across_stacked`` of a float32 and an int16 array), the first
  ``read_array``, the first ``write_array`` + ``flush`` (float32 and int32), each
  timed on its own inside the child; then, outside their sum, one more bulk read
  forced through the jitted kernel (what batches of 256 pieces or more take).
  **cold** points ``NUMBA_CACHE_DIR`` at a new empty folder for every run (a new
  machine, a container, CI); **warm** at a folder populated beforehand.  The page
  cache is warm in both (the store was just written).
* **what compiles**: one extra cold run records numba's ``numba:compile`` events per
  phase (top-level compiles only; a kernel compiling its callees counts once).
* **import time**: the top contributors of ``python -X importtime -c "import atlas"``
  and which heavy modules (numba, blosc2, xarray, rich) ``import atlas`` loads.
* **command line**: ``atlas --help``, ``atlas --version``, ``atlas ls`` and
  ``atlas info`` on a store of ``--datasets`` (default 1000) small datasets built here.

Figures are medians of ``--repeats`` runs (default 5).  Run::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--datasets 1000]

The store and caches live in a temporary directory that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("import", "open", "first bulk read", "first read_array", "first write_array+flush")
#: Timed after the phases, not in their sum: the first bulk read through the jitted kernel.
EXTRA = "then a jitted bulk read"
HEAVY = ("numba", "blosc2", "llvmlite", "xarray", "rich", "msgpack")

# The child process: times each phase of a first contact with a store.
CHILD = rf"""
EXTRA = {EXTRA!r}
import json, sys, time
t0 = time.perf_counter()
trace = sys.argv[2] == "trace"
import atlas
import numpy as np  # in the import phase: atlas may load it later than `import atlas`
times = {{"import": time.perf_counter() - t0}}
compiles = {{}}
phase = ["import"]
if trace:
    import numba.core.event as ev

    class _Rec(ev.Listener):
        depth = 0
        def on_start(self, event):
            self.depth += 1
            if self.depth == 1:
                self.t = time.perf_counter()
        def on_end(self, event):
            self.depth -= 1
            if self.depth == 0:
                d = event.data["dispatcher"]
                sig = event.data["args"]
                compiles.setdefault(phase[0], []).append(
                    [d.py_func.__name__, str(sig), time.perf_counter() - self.t]
                )
    ev.register("numba:compile", _Rec())

def timed(name, fn):
    phase[0] = name
    t = time.perf_counter()
    out = fn()
    times[name] = time.perf_counter() - t
    return out

store = timed("open", lambda: atlas.Atlas.open(sys.argv[1], mode="r+"))
names = store.list_datasets()

def bulk():
    a = store.read_array_across_stacked("TEMP", names, start=[0, 0], shape=[10, 24])
    b = store.read_array_across_stacked("FLAG", names, start=[0], shape=[8])
    return a, b

timed("first bulk read", bulk)
timed("first read_array", lambda: store.open_dataset(names[1]).read_array("TEMP", [5, 3], [4, 20]))

def write():
    ds = store.create_dataset("fresh")
    ds.define_array("TEMP", "float32", ["DEPTH", "TIME"], [50, 168], fill_value=float("nan"))
    ds.write_array("TEMP", [0, 0], np.ones((50, 168), "float32"))
    ds.define_array("COUNT", "int32", ["TIME"], [168])
    ds.write_array("COUNT", [0], np.arange(168, dtype="int32"))
    store.flush()

timed("first write_array+flush", write)

def forced():
    # A bulk read as large batches make it: through the jitted kernel (imports numba,
    # then compiles it or loads it from the cache).
    from atlas.engine import gather
    gather.KERNEL_MIN_PIECES = 0
    return store.read_array_across_stacked("TEMP", names, start=[2, 5], shape=[6, 30])

timed(EXTRA, forced)
store.close()
print(json.dumps({{"times": times, "compiles": compiles}}))
"""

# Builds the store the child reads (in its own process, with its own numba cache).
BUILD = r"""
import sys
import numpy as np
import atlas
path, n = sys.argv[1], int(sys.argv[2])
with atlas.Atlas.create(path) as store:
    for i in range(n):
        rng = np.random.default_rng(i)
        ds = store.create_dataset(f"profile_{i:05d}")
        ds.set_attribute("platform", f"buoy-{i % 37}")
        ds.define_array("TEMP", "float32", ["DEPTH", "TIME"], [50, 168], fill_value=float("nan"))
        ds.write_array("TEMP", [0, 0], rng.standard_normal((50, 168)).astype("float32"))
        ds.define_array("FLAG", "int16", ["TIME"], [168], fill_value=-1)
        ds.write_array("FLAG", [0], rng.integers(0, 5, 168).astype("int16"))
"""


def _env(cache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    return env


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode:
        raise SystemExit(f"{args[1][:40]!r} failed with status {out.returncode}:\n{out.stderr}")
    return wall, out.stdout


def _first_calls(store: Path, cache: Path, trace: bool, work: Path) -> dict:
    # Each run writes a dataset: work on a copy so that every run starts from the same store.
    copy = work / "copy.atlas"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    wall, out = _run([sys.executable, "-c", CHILD, str(copy), "trace" if trace else "time"], _env(cache))
    result = json.loads(out)
    result["process"] = wall
    return result


def _importtime(env: dict[str, str], top: int) -> tuple[list[tuple[float, str]], list[str]]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import atlas, sys; print(sorted(sys.modules))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cum_us, name = line[len("import time:") :].split("|", 2)
        rows.append((int(cum_us) / 1e6, name[1:].rstrip()))  # nested imports keep their indent
    # Top-level packages only (the cumulative time of a nested module is inside its parent's).
    tops = sorted(((t, n) for t, n in rows if not n.startswith(" ")), reverse=True)[:top]
    loaded = ast.literal_eval(out.stdout.strip())  # the printed list of module names
    heavy = [h for h in HEAVY if h in loaded]
    return tops, heavy


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--datasets", type=int, default=1000, help="datasets of the store `atlas ls/info` read")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory(prefix="atlas-startup-") as tmp:
        work = Path(tmp)
        warm_cache = work / "numba-warm"
        store = work / "small.atlas"
        big = work / "big.atlas"
        _run([sys.executable, "-c", BUILD, str(store), "20"], _env(work / "numba-build"))
        _run([sys.executable, "-c", BUILD, str(big), str(args.datasets)], _env(work / "numba-build"))

        # Populate the warm cache with the very calls the runs make.
        _first_calls(store, warm_cache, False, work)
        cold, warm = [], []
        for i in range(args.repeats):
            cold.append(_first_calls(store, work / f"numba-cold-{i}", False, work))
            warm.append(_first_calls(store, warm_cache, False, work))
        traced = _first_calls(store, work / "numba-trace", True, work)

        results: dict = {"phases": {}, "compiles": traced["compiles"]}
        print(f"first calls, fresh processes, median of {args.repeats} (seconds)")
        print(f"{'phase':28s} {'cold cache':>11s} {'warm cache':>11s} {'cold - warm':>12s}")
        for p in (*PHASES, "sum of phases", EXTRA, "whole process"):
            if p == "sum of phases":
                c = _median([sum(r["times"][q] for q in PHASES) for r in cold])
                w = _median([sum(r["times"][q] for q in PHASES) for r in warm])
            elif p == "whole process":
                c = _median([r["process"] for r in cold])
                w = _median([r["process"] for r in warm])
            else:
                c = _median([r["times"][p] for r in cold])
                w = _median([r["times"][p] for r in warm])
            results["phases"][p] = {"cold": c, "warm": w}
            print(f"{p:28s} {c:11.3f} {w:11.3f} {c - w:12.3f}")

        print("\ncompiles on an empty cache (one traced run; top-level compiles, seconds)")
        for p in (*PHASES, EXTRA):
            for name, sig, secs in traced["compiles"].get(p, []):
                print(f"  {p:26s} {secs:7.3f}  {name}{sig if len(sig) < 90 else sig[:87] + '...'}")

        env = _env(warm_cache)
        tops, heavy = _importtime(env, 8)
        print("\n`python -X importtime -c 'import atlas'`: top-level imports by cumulative time")
        for secs, name in tops:
            print(f"  {secs:7.3f}  {name}")
        print(f"  heavy modules loaded by `import atlas`: {', '.join(heavy) or 'none'}")
        results["importtime"] = tops
        results["heavy"] = heavy

        commands = {
            "python -c 'import atlas'": [sys.executable, "-c", "import atlas"],
            "atlas --help": [sys.executable, "-m", "atlas", "--help"],
            "atlas --version": [sys.executable, "-m", "atlas", "--version"],
            f"atlas ls ({args.datasets} datasets)": [sys.executable, "-m", "atlas", "ls", str(big)],
            f"atlas info ({args.datasets} datasets)": [sys.executable, "-m", "atlas", "info", str(big)],
            "python -c 'pass' (interpreter alone)": [sys.executable, "-c", "pass"],
        }
        print(f"\ncommands, fresh processes, warm caches, median of {args.repeats} (seconds)")
        results["commands"] = {}
        for label, cmd in commands.items():
            _run(cmd, env)  # warm-up (page cache, .pyc)
            t = _median([_run(cmd, env)[0] for _ in range(args.repeats)])
            results["commands"][label] = t
            print(f"  {label:42s} {t:7.3f}")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"1-min load average {load_start:.2f} at the start, {load:.2f} at the end"
    )
    results["load"] = [load_start, load]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
