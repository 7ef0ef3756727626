"""Before/after timing of the bulk, per-dataset and write paths of two checkouts, alternately.

Each round runs one short measurement process per tree (``PYTHONPATH`` pointing at
that tree), in the order A B A B ..., so that load from other processes on a shared
machine hits both trees alike; the report gives per-tree medians and the ratio B/A.
The numba cache of each tree is warmed by an untimed first process.

    .venv/bin/python benchmarks/compare_trees.py BASELINE_TREE CHANGED_TREE [--rounds 5] [--n 1000]

Rows (the ``profile`` workload of :mod:`workloads`: 4 float32 variables of shape
(50, 168), one chunk each):

``write``       create a store of N datasets, one flush (the write path);
``bulk``        ``read_array_across_stacked`` of the workload's box, every variable;
``per-dataset`` ``DatasetView.read_array`` of the same box per dataset and variable;
``open``        ``Atlas.open`` of the store.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, sys, time, tempfile, shutil
from pathlib import Path
sys.path.insert(0, {here!r})
from workloads import WORKLOADS, dataset_name, generate_many
import atlas

n, reps = {n}, {reps}
wl = WORKLOADS["profile"]
data = generate_many(wl, n)
names = [dataset_name(i) for i in range(n)]
tmp = Path(tempfile.mkdtemp(dir={tmp!r}))
out = {{"write": [], "bulk": [], "per-dataset": [], "open": []}}
for r in range(reps):
    path = tmp / f"s{{r}}"
    t0 = time.perf_counter()
    s = atlas.Atlas.create(path)
    for i in range(n):
        ds = s.create_dataset(names[i])
        for v in wl.variables:
            ds.define_array(v.name, v.dtype, list(wl.dims), list(wl.shape), chunk_shape=list(wl.chunks))
            ds.write_array(v.name, [0, 0], data[i][v.name])
    s.flush()
    s.close()
    out["write"].append(time.perf_counter() - t0)
path = tmp / "s0"
for r in range(reps):
    t0 = time.perf_counter()
    s = atlas.Atlas.open(path, mode="r")
    out["open"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for v in wl.var_names:
        s.read_array_across_stacked(v, names, list(wl.start), list(wl.box))
    out["bulk"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for name in names:
        ds = s.open_dataset(name)
        for v in wl.var_names:
            ds.read_array(v, list(wl.start), list(wl.box))
    out["per-dataset"].append(time.perf_counter() - t0)
    s.close()
shutil.rmtree(tmp)
print(json.dumps(out))
"""


def run(tree: str, n: int, reps: int, tmp: str) -> dict[str, list[float]]:
    env = dict(os.environ, PYTHONPATH=tree)
    code = _CHILD.format(here=str(HERE), n=n, reps=reps, tmp=tmp)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="the baseline checkout")
    p.add_argument("b", help="the changed checkout")
    p.add_argument("--rounds", type=int, default=5, help="A/B process pairs (default 5)")
    p.add_argument("--n", type=int, default=1000, help="datasets (default 1000)")
    p.add_argument("--reps", type=int, default=3, help="timed repeats per process (default 3)")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="atlas-compare-")
    for tree in (args.a, args.b):  # warm the numba cache of each tree, untimed
        run(tree, 20, 1, tmp)
    times: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    for r in range(args.rounds):
        for label, tree in (("A", args.a), ("B", args.b)):
            got = run(tree, args.n, args.reps, tmp)
            for row, values in got.items():
                times[label].setdefault(row, []).append(min(values))  # best of the process's repeats
            print(f"round {r + 1} {label}: " + ", ".join(f"{k} {min(v) * 1e3:.1f} ms" for k, v in got.items()),
                  flush=True)  # fmt: skip
    print(f"\nN={args.n}, {args.rounds} rounds, best of {args.reps} per process; median over rounds, ms:")
    print(f"{'row':<12} {'A':>10} {'B':>10} {'B/A':>7}   (A={args.a}, B={args.b})")
    for row in times["A"]:
        a, b = statistics.median(times["A"][row]), statistics.median(times["B"][row])
        print(f"{row:<12} {a * 1e3:>10.1f} {b * 1e3:>10.1f} {b / a:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
