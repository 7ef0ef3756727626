"""Micro-benchmark of the catalogue (format v2 metadata) on its own.

Each dataset: one float32 ``temp`` (24,) with stats plus 30 attributes (15 float64,
15 short strings), as in ``bench_scale.py``.  For each N: build the rows, write one
part (timed), then, in a fresh process (so RSS is the reader's alone), open a
:class:`atlas.catalog.Catalog` over the file, list the names, get one dataset and
read one float and one string attribute column, printing times and RSS.  Also
times a one-row part (a one-dataset commit's catalogue cost) and the merge of
the N-row part with it (the rare large merge).

Usage: ``python benchmarks/bench_catalog.py [N ...]`` (default 10000 100000).
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atlas.catalog import Catalog, PartRef, merge_parts, write_part  # noqa: E402
from atlas.engine.codecs import checksum  # noqa: E402
from atlas.metadata import ArrayMeta, DatasetMeta, Stats  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


#: Above this many datasets the attribute dicts are shared by groups of datasets
#: (values repeat with period 10 000): a million distinct ones would need ~7 GiB.
SHARE_ABOVE = 200_000


def make_rows(n: int) -> list[tuple[str, DatasetMeta]]:
    rows = []
    pool: dict[int, dict] = {}
    for i in range(n):
        key = i % 10_000 if n > SHARE_ABOVE else i
        attrs = pool.get(key)
        if attrs is None:
            attrs = {f"f{k}": {"t": "float64", "v": key * 0.5 + k} for k in range(15)}
            attrs.update({f"s{k}": {"t": "string", "v": f"plat{(key + k) % 97}"} for k in range(15)})
            if n > SHARE_ABOVE:
                pool[key] = attrs
        temp = ArrayMeta(
            slot=i + 1, dtype="float32", dims=("depth",), shape=(24,), chunk_shape=(24,),
            stats=Stats(24, 0, -1.5, float(i % 1000)),
        )  # fmt: skip
        rows.append((f"profile_{i:07d}", DatasetMeta(id=i + 1, version=1, attributes=attrs, arrays={"temp": temp})))
    return rows


def read_side(path: str, ref_json: str) -> dict[str, float]:
    ref = PartRef(**json.loads(ref_json))
    out: dict[str, float] = {}
    # The XXH64 kernel is loaded once per process (the store loads it for segments
    # anyway); timed apart so that open and list measure the catalogue alone.
    t0 = time.perf_counter()
    checksum(b"warm up")
    out["kernel_load_s"] = time.perf_counter() - t0
    base = rss_mib()
    fh = open(path, "rb")  # noqa: SIM115 - kept open for the mmap's lifetime
    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def read_range(_path: str, offset: int, length: int) -> bytes:
        return mm[offset : offset + length]

    t0 = time.perf_counter()
    cat = Catalog([ref], read_range)
    out["open_s"] = time.perf_counter() - t0
    names = cat.names()
    out["open_names_s"] = time.perf_counter() - t0
    out["rss_open_names_mib"] = rss_mib() - base
    t1 = time.perf_counter()
    cat.get(names[len(names) // 2])
    out["get_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    cat.column("f3")
    out["column_float_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    cat.column("s3")
    out["column_string_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    cat.stats_column("temp", "max")
    out["stats_column_s"] = time.perf_counter() - t1
    out["rss_total_mib"] = rss_mib() - base
    return out


def run(n: int) -> None:
    rows = make_rows(n)
    t0 = time.perf_counter()
    file, parts, ref = write_part(rows, "zstd", 1, os.urandom(16))
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, small_parts, small = write_part(rows[:1], "zstd", 2, os.urandom(16))
    one_s = time.perf_counter() - t0
    files = {ref.path: b"".join(bytes(p) for p in parts), small.path: b"".join(bytes(p) for p in small_parts)}
    t0 = time.perf_counter()
    merge_parts([ref, small], lambda p, o, k, f=files: f[p][o : o + k], "zstd", 3, os.urandom(16), True)
    merge_s = time.perf_counter() - t0
    del rows, files
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file
        with open(path, "wb") as fh:
            for p in parts:
                fh.write(p)
        ref_json = json.dumps(ref.__dict__)
        done = subprocess.run(
            [sys.executable, __file__, "--read", str(path), ref_json],
            capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )  # fmt: skip
        res = json.loads(done.stdout)
    print(
        f"N={n:>9,}  part {ref.size / 2**20:7.1f} MiB  write_part {write_s:6.2f} s  "
        f"one-row part {one_s * 1e3:5.2f} ms  merge N+1 {merge_s:6.2f} s  kernel load {res['kernel_load_s']:5.2f} s  "
        f"open {res['open_s'] * 1e3:6.2f} ms  open+names {res['open_names_s']:6.3f} s  "
        f"RSS open+names {res['rss_open_names_mib']:6.1f} MiB  get {res['get_s'] * 1e3:5.2f} ms  "
        f"column f64 {res['column_float_s'] * 1e3:6.1f} ms  column str {res['column_string_s'] * 1e3:6.1f} ms  "
        f"stats {res['stats_column_s'] * 1e3:6.1f} ms  RSS total {res['rss_total_mib']:6.1f} MiB",
        flush=True,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--read":
        print(json.dumps(read_side(sys.argv[2], sys.argv[3])))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    for n in sizes:
        run(n)


if __name__ == "__main__":
    main()
