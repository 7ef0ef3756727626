"""Parallel writers (``atlas.ingest``) vs today's single-writer ``atlas create -j 2``.

Writes N small CF profile files (``benchmarks/corpus.py``), then stores them, each
variant in a fresh interpreter (so each pays its own imports and process starts):

* **create -j 2**: ``python -m atlas create SRC STORE -j 2 -q``: two reader processes
  feed one writer, which encodes and writes every chunk;
* **ingest, pool of 2**: ``atlas.ingest(SRC, STORE, workers=2)``: two worker processes
  each read, encode and write their own segments; the calling process commits;
* **ingest, LocalCluster of 2** (``--cluster``): the same on a dask.distributed
  ``LocalCluster`` of 2 single-threaded worker processes (its start is timed too).

Printed per variant: wall time, files/s, the speed-up over ``create -j 2``, and for
the ingest variants the bytes the calling process received (compressed fragments)
against the bytes stored (segments + manifest), the per-file worker cost and the
commit time (the inputs of the estimate in docs/scale.md).  Every store is checked
to hold the same datasets as the ``create`` store (``to_xarray`` identical, on a
sample of ``--check`` datasets).

Run: ``.venv/bin/python benchmarks/bench_ingest.py -n 2000 --cluster`` (default N: 400).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    print(json.dumps({
        "wall": wall, "datasets": report.datasets, "received": report.received_bytes,
        "segments": report.stored_bytes, "commit_s": report.commit_seconds, "commits": report.commits,
        "ingest_s": report.seconds,
    }))  # fmt: skip


def _child(*args: str) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{args} failed:\n{done.stderr[-3000:]}")
    return wall, done.stdout


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
    p.add_argument("--run-one", nargs=3, metavar=("MODE", "SRC", "STORE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        _run_one(*args.run_one)
        return 0
    sys.path.insert(0, str(HERE))
    import corpus

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        src = work / "src"
        corpus.make_corpus(src, args.n, subdirs=4, jobs=2)
        src_bytes = _tree_bytes(src)
        print(f"{args.n} files, {src_bytes / 1e6:.1f} MB, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        ref = work / "create.atlas"
        base, _ = _child("-m", "atlas", "create", str(src), str(ref), "-j", "2", "-q")
        print(f"{'create -j 2':<24} {base:7.1f} s {args.n / base:7.1f} files/s   1.00x")
        modes = ["pool"] + (["cluster"] if args.cluster else [])
        for mode in modes:
            out = work / f"{mode}.atlas"
            wall, text = _child(str(Path(__file__).resolve()), "--run-one", mode, str(src), str(out))
            r = json.loads(text.strip().splitlines()[-1])
            stored = _tree_bytes(out)
            manifest = sum(f.stat().st_size for f in out.glob("atlas.*"))
            label = "ingest, pool of 2" if mode == "pool" else "ingest, LocalCluster 2"
            print(f"{label:<24} {wall:7.1f} s {args.n / wall:7.1f} files/s {base / wall:6.2f}x   "
                  f"received {r['received'] / 1e3:.0f} kB = {100 * r['received'] / stored:.1f}% of stored "
                  f"{stored / 1e3:.0f} kB (segments {r['segments'] / 1e3:.0f} kB, manifest {manifest / 1e3:.0f} kB); "
                  f"{r['commits']} commits, {r['commit_s']:.2f} s committing; "
                  f"{1e3 * 2 * (r['ingest_s'] - r['commit_s']) / args.n:.1f} ms worker time per file")  # fmt: skip
            _same(ref, out, args.check)
        print("every store holds the same datasets (sample compared with to_xarray)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
