"""Memory benchmark: streaming a large array into a store runs in bounded memory.

For each size (default 4 GiB and 512 MiB) a fresh Python process creates a store
with a stated ``max_pending_bytes`` budget, defines one ``float64`` array of shape
``(rows, 1024)`` with 4 MiB chunks, writes it slab by slab with ``write_array``
(default 64 MiB per slab), flushes, and reports its peak resident set size
(``VmHWM`` from ``/proc/self/status``).  ``ru_maxrss`` is printed too, but on Linux
it survives ``execve``: it also covers the launching process's RSS at the moment it
started the child, so it is only a check when the launcher is small (as here).  A second fresh process
reads the array back slab by slab and compares every cell with the values written.

The claim checked is::

    peak RSS of the writer  <=  baseline + 2 * max_pending_bytes + 4 * slab

``baseline`` is the process's RSS after importing atlas and a warm-up write that
spills (measured in the same process, before the measured write): numba, its
kernels and the encode threads load on a process's first write, once, and are not
staged data.  Why this bound: staged
chunks are spilled to uncommitted segment files as soon as they exceed the budget,
so at most ``max_pending_bytes`` plus the chunks of one slab are staged; a spill
encodes all of them into one segment before writing it, so their encoded copy (as
large with ``codec="none"``, smaller when compressed) exists at the same time; the
caller's slab is alive during the write; one more slab is headroom for allocator
slack and temporaries.
Nothing in it depends on the array size, which is why the 512 MiB run reports
about the same peak as the 4 GiB run.

The reader's ``VmHWM`` also counts the pages of the memory-mapped segment files it
touched (file-backed, reclaimable by the kernel at any time); its anonymous memory
(``RssAnon``, sampled after every slab) is what the program itself holds.

Run from the repository root::

    .venv/bin/python benchmarks/bench_memory.py                    # 4 GiB and 512 MiB
    .venv/bin/python benchmarks/bench_memory.py --sizes 1024 --budget 64

The free space of ``--tmp`` is checked first (the store needs up to the array size
with ``--codec none``); every store is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 1 << 20
#: Columns of the array (8 KiB per float64 row).
COLS = 1024
#: Rows per chunk: 512 x 1024 float64 = 4 MiB.
CHUNK_ROWS = 512
ARRAY = "field"


def proc_status() -> dict[str, int]:
    """``VmRSS``, ``VmHWM``, ``RssAnon`` and ``RssFile`` of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def ceiling(baseline: int, budget: int, slab: int) -> int:
    """The stated bound on the writer's peak RSS (see the module docstring)."""
    return baseline + 2 * budget + 4 * slab


def slab_values(row0: int, rows: int) -> np.ndarray:
    """The cells of rows ``row0 .. row0 + rows``: a hash of their flat index.

    Cheap to regenerate for the check, and about as hard to compress as
    measurements (a plain ramp would shrink to almost nothing).
    """
    idx = np.arange(row0 * COLS, (row0 + rows) * COLS, dtype=np.uint64)
    idx *= np.uint64(0x9E3779B97F4A7C15)
    idx >>= np.uint64(11)  # 53 bits: exact in float64
    return idx.astype(np.float64).reshape(rows, COLS)


def _rows(size_mib: int) -> int:
    rows = size_mib * MIB // (COLS * 8)
    return max(CHUNK_ROWS, rows - rows % CHUNK_ROWS)


def child_write(path: str, size_mib: int, budget: int, slab_mib: int, codec: str) -> dict[str, Any]:
    """Stream the array into a new store at ``path`` and report memory and time."""
    import atlas

    rows = _rows(size_mib)
    slab_rows = max(1, slab_mib * MIB // (COLS * 8))
    # Warm the library up on a throwaway store so that the baseline includes what any
    # first write loads once (numba and its kernels, blosc2, the encode threads): two
    # chunks over a one-chunk budget take the same spill and flush paths as the
    # measured write.
    warm = Path(path).with_name(Path(path).name + "-warm")
    chunk_bytes = CHUNK_ROWS * COLS * 8
    with atlas.Atlas.create(warm, codec=codec, max_pending_bytes=chunk_bytes) as w:
        ds = w.create_dataset("w")
        ds.define_array(ARRAY, "float64", ["row", "col"], [2 * CHUNK_ROWS, COLS], chunk_shape=[CHUNK_ROWS, COLS])
        ds.write_array(ARRAY, [0, 0], slab_values(0, 2 * CHUNK_ROWS))
    shutil.rmtree(warm)
    baseline = proc_status()["VmRSS"]

    t0 = time.perf_counter()
    store = atlas.Atlas.create(path, codec=codec, max_pending_bytes=budget)
    ds = store.create_dataset("big")
    ds.define_array(ARRAY, "float64", ["row", "col"], [rows, COLS], chunk_shape=[CHUNK_ROWS, COLS])
    peak_anon = 0
    for row0 in range(0, rows, slab_rows):
        n = min(slab_rows, rows - row0)
        ds.write_array(ARRAY, [row0, 0], slab_values(row0, n))
        peak_anon = max(peak_anon, proc_status()["RssAnon"])
    t1 = time.perf_counter()
    store.flush()
    store.close()
    t2 = time.perf_counter()
    status = proc_status()
    return {
        "phase": "write",
        "size_bytes": rows * COLS * 8,
        "rows": rows,
        "budget": budget,
        "slab_bytes": slab_rows * COLS * 8,
        "codec": codec,
        "baseline": baseline,
        "vm_hwm": status["VmHWM"],
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_anon_sampled": peak_anon,
        "ceiling": ceiling(baseline, budget, slab_rows * COLS * 8),
        "write_s": t1 - t0,
        "flush_s": t2 - t1,
        "store_bytes": sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()),
    }


def child_read(path: str, slab_mib: int) -> dict[str, Any]:
    """Read the array back slab by slab, compare every cell, report memory and time."""
    import atlas

    t0 = time.perf_counter()
    peak_anon = 0
    with atlas.Atlas.open(path, "r") as store:
        ds = store.open_dataset("big")
        rows = ds.array_meta(ARRAY)["shape"][0]
        slab_rows = max(1, slab_mib * MIB // (COLS * 8))
        for row0 in range(0, rows, slab_rows):
            n = min(slab_rows, rows - row0)
            got = ds.read_array(ARRAY, [row0, 0], [n, COLS])
            if not np.array_equal(got, slab_values(row0, n)):
                raise SystemExit(f"rows {row0}..{row0 + n} read back wrong")
            del got
            peak_anon = max(peak_anon, proc_status()["RssAnon"])
    status = proc_status()
    return {
        "phase": "read",
        "vm_hwm": status["VmHWM"],
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_anon_sampled": peak_anon,
        "read_s": time.perf_counter() - t0,
        "verified": True,
    }


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this script in a fresh interpreter with ``args`` and parse its JSON line."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(tmp: Path, size_mib: int, budget_mib: int, slab_mib: int, codec: str, read: bool = True) -> dict:
    """Write (and read back) one array of ``size_mib`` under ``tmp``; both phases' figures."""
    path = tmp / f"store-{size_mib}"
    try:
        out = run_child(
            ["--child", "write", str(path), str(size_mib), str(budget_mib * MIB), str(slab_mib), "--codec", codec]
        )
        if read:
            out["read"] = run_child(["--child", "read", str(path), str(slab_mib), "0", "0"])
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return out


def _mib(n: float) -> str:
    return f"{n / MIB:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4096,512", help="array sizes in MiB, comma-separated")
    parser.add_argument("--budget", type=int, default=256, help="max_pending_bytes, in MiB")
    parser.add_argument("--slab", type=int, default=64, help="MiB per write_array call")
    parser.add_argument("--codec", default="zstd", help="store codec (zstd, lz4, none)")
    parser.add_argument("--no-read", action="store_true", help="skip the read-back check")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="parent of the temporary directory")
    parser.add_argument("--child", nargs=5, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        phase, path, size, budget, slab = args.child
        if phase == "write":
            result = child_write(path, int(size), int(budget), int(slab), args.codec)
        else:
            result = child_read(path, int(size))
        print(json.dumps(result))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    free = shutil.disk_usage(args.tmp).free
    need = max(sizes) * MIB * 1.2 + 512 * MIB
    print(f"free space in {args.tmp}: {free / 2**30:.1f} GiB (need up to {need / 2**30:.1f} GiB)")
    if free < need:
        print("not enough free disk space; choose smaller --sizes or another --tmp")
        return 2
    print(f"budget (max_pending_bytes) {args.budget} MiB, slab {args.slab} MiB, codec {args.codec}, ", end="")
    print(f"{os.cpu_count()} cpus")
    tmp = Path(tempfile.mkdtemp(prefix="atlas-memory-", dir=args.tmp))
    results = []
    try:
        for size in sizes:
            print(f"  writing {size} MiB ...", file=sys.stderr, flush=True)
            results.append(measure(tmp, size, args.budget, args.slab, args.codec, read=not args.no_read))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(
        "| array MiB | write s | flush s | store MiB | baseline MiB | writer peak RSS MiB (VmHWM) "
        "| ru_maxrss MiB | ceiling MiB | within | read s | reader VmHWM MiB | reader peak anon MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|")
    ok = True
    for r in results:
        within = r["vm_hwm"] <= r["ceiling"]
        ok &= within
        rd = r.get("read", {})
        print(
            f"| {_mib(r['size_bytes'])} | {r['write_s']:.1f} | {r['flush_s']:.1f} | {_mib(r['store_bytes'])} "
            f"| {_mib(r['baseline'])} | {_mib(r['vm_hwm'])} | {_mib(r['ru_maxrss'])} | {_mib(r['ceiling'])} "
            f"| {'yes' if within else 'NO'} | {rd.get('read_s', float('nan')):.1f} "
            f"| {_mib(rd.get('vm_hwm', 0))} | {_mib(rd.get('peak_anon_sampled', 0))} |"
        )
    print()
    print("ceiling = baseline + 2 * max_pending_bytes + 4 * slab")
    print("every writer stayed under the ceiling" if ok else "CEILING EXCEEDED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
