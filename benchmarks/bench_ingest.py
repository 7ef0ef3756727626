"""Parallel writers (``atlas.ingest``) vs today's single-writer ``atlas create -j 2``.

Writes N small CF profile files (``benchmarks/corpus.py``), then stores them, each
variant in a fresh interpreter (so each pays its own imports and process starts):

* **create -j 2**: ``python -m atlas create SRC STORE -j 2 -q``: two reader processes
  feed one writer, which encodes and writes every chunk;
* **ingest, pool of 2**: ``atlas.ingest(SRC, STORE, workers=2)``: two worker processes
  each read, encode and write their own segments; the calling process commits;
* **ingest, LocalCluster of 2** (``--cluster``): the same on a dask.distributed
  ``LocalCluster`` of 2 single-threaded worker processes (its start is timed too).

``--base LABEL=PATH`` also times ``atlas create -j 2`` of another checkout (a ``git
worktree`` of an older commit, run with ``PYTHONPATH=PATH``); ``--ingest-base
LABEL=PATH`` the ingest (pool of 2) of another checkout, run the same way.  Variants run
interleaved ``--repeat`` times; printed per variant: median wall time, files/s,
median CPU time (the child and every process it waited for: the machine may be
shared, CPU time is the steadier figure) and the speed-ups over each ``create``;
for the ingest variants, the bytes the calling process received (pickled task
results: fragments and commit-task results) against the bytes stored, and the
commit time (the inputs of the estimate in docs/scale.md).  Every store is checked to hold the same datasets as
the ``create`` store (``to_xarray`` identical, on a sample of ``--check`` datasets).

Run: ``.venv/bin/python benchmarks/bench_ingest.py -n 2000 --cluster --repeat 3
--base f93481a=/tmp/base-f93`` (default N: 400).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _run_one(mode: str, src: str, store: str) -> None:
    """Child: one ingest variant; prints a JSON line."""
    import atlas

    t0 = time.perf_counter()
    atlas.Atlas.create(store).close()
    if mode == "pool":
        report = atlas.ingest([src], store, workers=2)
    else:
        import distributed

        with (
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                     silence_logs=50) as cluster,
            distributed.Client(cluster) as client,
        ):  # fmt: skip
            report = atlas.ingest([src], store, client=client)
    wall = time.perf_counter() - t0
    worker_atlas = None
    if mode == "pool":  # which checkout the workers imported: ask the ingest's fork server for one more
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
            worker_atlas = pool.submit(_atlas_dir).result()
    print(json.dumps({
        "wall": wall, "datasets": report.datasets, "received": report.received_bytes,
        "segments": report.stored_bytes, "commit_s": report.commit_seconds, "commits": report.commits,
        "last_commit_s": getattr(report, "last_commit_seconds", report.commit_seconds),
        "ingest_s": report.seconds, "atlas": _atlas_dir(), "worker_atlas": worker_atlas,
    }))  # fmt: skip


def _atlas_dir() -> str:
    import atlas

    return str(Path(atlas.__file__).resolve().parent.parent)


def _tree_cpu(root: int, seen: dict[tuple[int, str], float]) -> None:
    """Record the CPU seconds so far of ``root`` and its descendants (from /proc) in ``seen``."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parents[pid] = int(fields[1])
        cpu[pid] = ((int(fields[11]) + int(fields[12])) / tick, fields[19])  # utime + stime, start time
    for pid, (seconds, start) in cpu.items():
        p = pid
        while p > 1 and p != root:
            p = parents.get(p, 0)
        if p == root:
            seen[(pid, start)] = max(seen.get((pid, start), 0.0), seconds)


def _child(*args: str, path: Path = ROOT) -> tuple[float, float, str]:
    """Run ``python ARGS`` in ``path`` with ``path`` first on PYTHONPATH: wall seconds, CPU seconds and stdout.

    The child runs *in* the checkout: ``python -m atlas`` puts its working
    directory first on ``sys.path``, and so does the fork server of an ingest's
    worker processes (started with ``python -c``).  Run from another checkout, both
    would import that checkout's ``atlas`` whatever PYTHONPATH says.

    The CPU time is the child's and every descendant's (worker processes, a fork
    server's children), sampled from /proc every 0.1 s: the last tenth of a second
    of each process is missed, a slight underestimate alike for every variant.
    """
    env = dict(os.environ, PYTHONPATH=str(path))
    seen: dict[tuple[int, str], float] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, text=True, env=env, cwd=path)
        while True:
            try:
                proc.wait(0.1)
                break
            except subprocess.TimeoutExpired:
                _tree_cpu(proc.pid, seen)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise SystemExit(f"{args} failed:\n{stderr[-3000:]}")
    return wall, sum(seen.values()), stdout


def _same(a: Path, b: Path, sample: int) -> None:
    import xarray as xr

    import atlas

    x, y = atlas.Atlas.open(a, "r"), atlas.Atlas.open(b, "r")
    names = sorted(x.list_datasets())
    assert names == sorted(y.list_datasets()), "the stores hold different datasets"
    step = max(1, len(names) // max(1, sample))
    for name in names[::step]:
        xr.testing.assert_identical(x.to_xarray(name), y.to_xarray(name))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=400, help="source files (default 400)")
    p.add_argument("--cluster", action="store_true", help="also time a dask.distributed LocalCluster of 2")
    p.add_argument("--check", type=int, default=50, help="datasets compared per store (default 50)")
    p.add_argument("--repeat", type=int, default=1, help="runs of every variant, interleaved (medians printed)")
    p.add_argument("--base", action="append", default=[], metavar="LABEL=PATH",
                   help="also time `atlas create -j 2` of the checkout at PATH (e.g. a `git worktree` of an "
                        "older commit); repeatable")  # fmt: skip
    p.add_argument("--ingest-base", action="append", default=[], metavar="LABEL=PATH",
                   help="also time the ingest (pool of 2) of the checkout at PATH; repeatable")
    p.add_argument("--run-one", nargs=3, metavar=("MODE", "SRC", "STORE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        _run_one(*args.run_one)
        return 0
    sys.path.insert(0, str(HERE))
    import corpus

    # the reference store is the first base's; without --base, this checkout's own create
    bases = [(b.split("=", 1)[0], Path(b.split("=", 1)[1])) for b in args.base] or [("this", ROOT)]
    modes = [("pool", "ingest, pool of 2", ROOT)]
    modes += [("cluster", "ingest, LocalCluster 2", ROOT)] if args.cluster else []
    modes += [("pool", f"ingest, pool of 2 @{b.split('=', 1)[0]}", Path(b.split("=", 1)[1])) for b in args.ingest_base]
    for _, path in [*bases, *((None, p) for _, _, p in modes)]:
        _, _, seen = _child("-c", "import atlas, os; print(os.path.realpath(atlas.__file__))", path=path)
        if Path(seen.strip()).parent.parent != path.resolve():  # python -m atlas imports the same
            raise SystemExit(f"python -m atlas in {path} imports {seen.strip()}")
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    runs: dict[str, list[tuple[float, float]]] = {}
    extra: dict[str, list[dict]] = {}
    loads = []
    try:
        src = work / "src"
        corpus.make_corpus(src, args.n, subdirs=4, jobs=2)
        src_bytes = _tree_bytes(src)
        print(f"{args.n} files, {src_bytes / 1e6:.1f} MB, {os.cpu_count()} cores, {args.repeat} runs per variant")
        for rep in range(args.repeat):
            for i, (name, path) in enumerate(bases):
                label = f"create -j 2 @{name}"
                out = work / f"create-{i}.atlas"
                shutil.rmtree(out, ignore_errors=True)
                loads.append(os.getloadavg()[0])
                wall, cpu, _ = _child("-m", "atlas", "create", str(src), str(out), "-j", "2", "-q", path=path)
                runs.setdefault(label, []).append((wall, cpu))
                if rep == 0 and i:
                    _same(work / "create-0.atlas", out, args.check)
            for k, (mode, label, path) in enumerate(modes):
                out = work / f"{mode}-{k}.atlas"
                shutil.rmtree(out, ignore_errors=True)
                loads.append(os.getloadavg()[0])
                wall, cpu, text = _child(str(Path(__file__).resolve()), "--run-one", mode, str(src), str(out),
                                         path=path)  # fmt: skip
                r = json.loads(text.strip().splitlines()[-1])
                if r["atlas"] != str(path.resolve()) or r["worker_atlas"] not in (None, r["atlas"]):
                    raise SystemExit(f"{label} ran {r.get('atlas')} (workers: {r.get('worker_atlas')}), not {path}")
                r["stored"] = _tree_bytes(out)
                runs.setdefault(label, []).append((wall, cpu))
                extra.setdefault(label, []).append(r)
                if rep == 0:
                    _same(work / "create-0.atlas", out, args.check)
            print(f"run {rep + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f} s" for k, v in runs.items()), flush=True)
        print(f"1-minute load average at the starts: median {statistics.median(loads):.1f}, "
              f"range {min(loads):.1f} to {max(loads):.1f}")  # fmt: skip
        print(f"{'variant':<26} {'wall (median)':>14} {'files/s':>8} {'CPU (median)':>13} {'CPU ms/file':>12}"
              + "".join(f" {'vs @' + name:>14}" for name, _ in bases))
        for label, vals in runs.items():
            wall = statistics.median(v[0] for v in vals)
            cpu = statistics.median(v[1] for v in vals)
            ratios = "".join(f" {statistics.median(v[0] for v in runs[f'create -j 2 @{name}']) / wall:13.2f}x"
                             for name, _ in bases)  # fmt: skip
            print(f"{label:<26} {wall:12.1f} s {args.n / wall:8.1f} {cpu:11.1f} s {1e3 * cpu / args.n:12.1f}{ratios}")
        for label, rs in extra.items():
            r = rs[-1]
            print(f"{label}: received {r['received'] / 1e3:.0f} kB = {100 * r['received'] / r['stored']:.2f}% of the "
                  f"{r['stored'] / 1e3:.0f} kB stored (segments {r['segments'] / 1e3:.0f} kB); {r['commits']} "
                  f"commits, {statistics.median(x['commit_s'] for x in rs):.2f} s committing, the last commit "
                  f"{statistics.median(x['last_commit_s'] for x in rs):.2f} s (medians)")  # fmt: skip
        print("every store holds the same datasets (sample compared with to_xarray)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
