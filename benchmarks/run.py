"""ATLAS benchmark suite: write, bytes on disk, open and bulk cross-dataset reads.

Rows per workload and dataset count N (all measured in one run on one machine):

(a) this project's bulk path, ``read_array_across_stacked`` per variable;
(b) this project per dataset, one ``dask.delayed(DatasetView.read_arrays)`` per dataset;
(c) N netCDF4 files through ``xr.open_mfdataset(..., combine="nested", concat_dim="dataset")``;
(d) N zarr v3 stores through ``xr.open_mfdataset(engine="zarr")``;
(e) with ``--upstream PYTHON``, the original implementation (atlas-python) in its own interpreter;
(f) the codec floor: ``blosc2.decompress`` of exactly the touched chunks plus a numpy copy.

Then a scaling sweep (100 -> 1000 -> 10000 datasets) of write, ``Atlas.open`` and bulk
read, ours and upstream, and the targets as PASS/MISS.

    .venv/bin/python benchmarks/run.py --quick                     # smoke run, ~2 min
    .venv/bin/python benchmarks/run.py --upstream /tmp/upstream/venv/bin/python --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # run from anywhere: import this checkout's atlas
    sys.path.insert(1, str(REPO))

from atlas_api import bench_store  # noqa: E402
from report import (  # noqa: E402
    ROW_SHORT,
    evaluate_targets,
    fmt_mb,
    fmt_ratio,
    fmt_s,
    machine_info,
    med,
    render_markdown,
    workload_ratios,
    write_charts,
)
from rows import bench_dask, bench_floor, bench_reader, bench_xarray  # noqa: E402
from timing import clock, loadavg, log, rmtree, wait_idle  # noqa: E402
from workloads import SWEEP_SIZES, WORKLOADS, generate_many  # noqa: E402

import atlas  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small dataset counts: a smoke run of every row (~2 min)")
    p.add_argument("--upstream", metavar="PYTHON", help="interpreter with atlas-python installed: adds row (e)")
    p.add_argument("--out", metavar="MD", help="write the markdown report here (charts go to <dir of MD>/img/)")
    p.add_argument("--json", metavar="PATH", help="also dump every raw measurement as JSON")
    p.add_argument("--from-json", metavar="PATH", help="measure nothing: re-render the report of a --json dump")
    p.add_argument("--note", action="append", default=[], help="a remark for the report's machine section (repeatable)")
    p.add_argument(
        "--discussion",
        metavar="MD",
        help="a markdown file printed after the targets table (e.g. why a target is missed); use with --from-json",
    )
    p.add_argument(
        "--workloads",
        default="sensors,profile,gridded",
        help="comma-separated subset of: " + ", ".join(WORKLOADS) + " (default: all)",
    )
    p.add_argument(
        "--rows",
        default="ours,dask,netcdf,zarr,upstream,floor,loop,xrmany",
        help="comma-separated subset of rows: ours, dask, netcdf, zarr, upstream, floor (with the verified floor), "
        "loop, xrmany (default: all)",
    )
    p.add_argument(
        "--read-paths",
        default="profile",
        help="workloads (comma-separated, or 'none') that also time rows (h) and (i): a plain per-dataset "
        "read_array loop and to_xarray_many (default: profile)",
    )
    p.add_argument("--sizes", help="comma-separated dataset counts for every workload (default: per workload)")
    p.add_argument("--sweep-workload", default="sensors", choices=sorted(WORKLOADS), help="workload of the sweep")
    p.add_argument("--sweep-sizes", help="comma-separated dataset counts of the sweep (default 100,1000,10000)")
    p.add_argument("--no-sweep", action="store_true", help="skip the scaling sweep")
    p.add_argument("--read-repeats", type=int, help="timed repeats per read measurement (default 5; --quick: 3)")
    p.add_argument("--write-repeats", type=int, help="timed repeats per write measurement (default 3; --quick: 1)")
    p.add_argument("--tmp", default="/tmp", help="parent of the temporary directory (default /tmp)")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each workload, wait up to SECONDS for the 1-min load average to drop below 0.7 (default 0)",
    )
    args = p.parse_args(argv)
    args.workload_list = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in args.workload_list:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    args.row_list = [r.strip() for r in args.rows.split(",") if r.strip()]
    args.read_path_list = [w.strip() for w in args.read_paths.split(",") if w.strip() not in ("", "none")]
    if args.read_repeats is None:
        args.read_repeats = 3 if args.quick else 5
    if args.write_repeats is None:
        args.write_repeats = 1 if args.quick else 3
    if args.read_repeats < 1 or args.write_repeats < 1:
        p.error("repeats must be >= 1")
    return args


def ints(text: str | None) -> list[int] | None:
    return None if text is None else sorted({int(x) for x in text.split(",") if x.strip()})


# -- upstream -----------------------------------------------------------------------------------


def run_upstream(python: str, tmp: Path, workload: str, sizes: list[int], args: argparse.Namespace) -> dict:
    """Run upstream_runner.py in the upstream's interpreter; returns its JSON."""
    spec = {
        "tmp": str(tmp / "upstream"),
        "workload": workload,
        "sizes": sizes,
        "read_repeats": args.read_repeats,
        "write_repeats": args.write_repeats,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    cwd = tmp / "upstream-cwd"  # not this repository: ``import atlas`` must find the upstream package
    cwd.mkdir(exist_ok=True)
    log(f"[upstream] {workload} {sizes} via {python}")
    proc = subprocess.run(
        [python, str(HERE / "upstream_runner.py"), json.dumps(spec)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=None,  # progress goes straight to our stderr
        text=True,
        check=False,
    )
    rmtree(tmp / "upstream")
    if proc.returncode != 0:
        raise RuntimeError(f"upstream runner failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- one workload ---------------------------------------------------------------------------------


def idle(args: argparse.Namespace, phase: str) -> None:
    if args.wait_idle > 0:
        load = loadavg()
        waited = wait_idle(args.wait_idle)
        log(f"[{phase}] load average {load}; waited {waited:.0f} s for the machine to go idle -> {loadavg()}")


def bench_workload(name: str, sizes: list[int], tmp: Path, args: argparse.Namespace, results: dict) -> dict:
    wl = WORKLOADS[name]
    per_n: dict[str, dict] = {str(n): {} for n in sizes}
    rows = args.row_list
    idle(args, name)
    if args.upstream and "upstream" in rows:
        # First, while this process holds no data (the runner generates its own copy).
        up = run_upstream(args.upstream, tmp, name, sizes, args)
        results["upstream_info"] = {k: v for k, v in up.items() if k != "results"}
        for n, r in up["results"].items():
            per_n[n]["upstream"] = r
    log(f"[{name}] generating {max(sizes)} datasets ({fmt_mb(wl.raw_bytes(max(sizes)))} raw)")
    t0 = clock()
    data = generate_many(wl, max(sizes))
    log(f"[{name}] generated in {clock() - t0:.1f} s")
    for n in sizes:
        rows_n = per_n[str(n)]
        if {"ours", "dask", "loop", "xrmany"} & set(rows):
            ours = bench_store(atlas, wl, data, n, tmp, args.read_repeats, args.write_repeats, True, "ours", keep=True)
            path = ours.pop("path")
            if "ours" in rows:
                rows_n["ours"] = ours
            if "dask" in rows:
                rows_n["dask"] = bench_dask(atlas, path, wl, data, n, args.read_repeats)
            for kind in ("loop", "xrmany"):
                if kind in rows and name in args.read_path_list:
                    rows_n[kind] = bench_reader(kind, atlas, path, wl, data, n, args.read_repeats)
            rmtree(path)
        for fmt in ("netcdf", "zarr"):
            if fmt in rows:
                rows_n[fmt] = bench_xarray(fmt, wl, data, n, tmp, args.read_repeats, args.write_repeats)
        if "floor" in rows:
            rows_n["floor"] = bench_floor(wl, data, n, args.read_repeats)
            rows_n["floorv"] = rows_n["floor"].pop("verified")
        print_workload(name, n, rows_n)
    del data
    gc.collect()
    return per_n


def print_workload(name: str, n: int, rows: dict) -> None:
    cols = ("write", "on disk", "open", "1st read", "warm read", "open+read")
    lines = [f"\n== {name}-{n} ==", f"{'row':14}" + "".join(f" {c:>10}" for c in cols)]
    for key in ("ours", "loop", "xrmany", "dask", "netcdf", "zarr", "upstream", "floor", "floorv"):
        r = rows.get(key)
        if r is None:
            continue
        vals = [fmt_s(med(r, "write")), fmt_mb(r.get("bytes"))]
        vals += [fmt_s(med(r, k)) for k in ("open", "first_read", "read", "open_read")]
        lines.append(f"{ROW_SHORT[key]:14}" + "".join(f" {v:>10}" for v in vals))
    for other, x in workload_ratios(rows).items():
        parts = [("1st read", "first_read"), ("warm read", "read"), ("open+read", "open_read")]
        parts += [("write", "write"), ("bytes", "bytes")]
        lines.append(f"  ours/{ROW_SHORT[other]:12}" + "".join(f"  {lab} {fmt_ratio(x[k]):>8}" for lab, k in parts))
    print("\n".join(lines), flush=True)


# -- sweep ----------------------------------------------------------------------------------------


def bench_sweep(name: str, sizes: list[int], tmp: Path, args: argparse.Namespace, results: dict) -> dict:
    wl = WORKLOADS[name]
    out: dict = {"workload": name, "ours": {}, "upstream": {}}
    idle(args, "sweep")
    if args.upstream and "upstream" in args.row_list:
        up = run_upstream(args.upstream, tmp, name, sizes, args)
        results.setdefault("upstream_info", {k: v for k, v in up.items() if k != "results"})
        out["upstream"] = up["results"]
    log(f"[sweep] generating {max(sizes)} {name} datasets")
    data = generate_many(wl, max(sizes))
    for n in sizes:
        out["ours"][str(n)] = bench_store(
            atlas, wl, data, n, tmp, args.read_repeats, args.write_repeats, close_readers=True, label="sweep"
        )
    del data
    gc.collect()
    print(f"\n== sweep ({name}) ==")
    for impl in ("ours", "upstream"):
        for n in sizes:
            r = out[impl].get(str(n))
            if r:
                print(
                    f"{ROW_SHORT[impl]:10} N={n:<6} write {fmt_s(med(r, 'write')):>9}  open {fmt_s(med(r, 'open')):>9}"
                    f"  read {fmt_s(med(r, 'read')):>9}  bytes {fmt_mb(r['bytes']):>9}"
                )
    return out


# -- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    cli_args = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(cli_args)
    t_start = clock()
    mode = "quick" if args.quick else "full"
    results: dict = {
        "command": " ".join([".venv/bin/python", "benchmarks/run.py", *map(shlex.quote, cli_args)]),
        "config": {
            "quick": args.quick,
            "upstream": args.upstream,
            "read_repeats": args.read_repeats,
            "write_repeats": args.write_repeats,
            "tmp": args.tmp,
            "rows": args.row_list,
            "wait_idle": args.wait_idle,
        },
        "machine": machine_info(REPO),
        "workloads": {},
    }
    if args.from_json:
        # Re-render a previous run (e.g. after changing the report), no measuring.
        results = json.loads(Path(args.from_json).read_text())
    else:
        if args.upstream and not Path(args.upstream).exists():
            raise SystemExit(f"--upstream {args.upstream}: no such interpreter")
        log(f"ATLAS benchmarks ({mode}); machine: {results['machine']['cpu']}, {results['machine']['cores']} cores")
        with tempfile.TemporaryDirectory(prefix="atlas-bench-", dir=args.tmp) as tmp_name:
            tmp = Path(tmp_name)
            for name in args.workload_list:
                wl = WORKLOADS[name]
                sizes = ints(args.sizes) or list(wl.quick_sizes if args.quick else wl.sizes)
                results["workloads"][name] = bench_workload(name, sizes, tmp, args, results)
            if not args.no_sweep:
                sizes = ints(args.sweep_sizes) or list(SWEEP_SIZES[mode])
                results["sweep"] = bench_sweep(args.sweep_workload, sizes, tmp, args, results)
        results["elapsed_s"] = clock() - t_start
        results["finished"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if args.note:
        results["notes"] = [*results.get("notes", []), *args.note]
    targets = evaluate_targets(results)
    results["targets"] = targets

    print("\n== targets ==")
    for t in targets:
        note = f"  ({t['note']})" if t["note"] else ""
        print(f"{t['verdict']:5} {t['target']}: {t['measured']} (target {t['threshold']}){note}")

    if args.out:
        out = Path(args.out)
        if not out.is_absolute():
            out = Path.cwd() / out
        out.parent.mkdir(parents=True, exist_ok=True)
        images = write_charts(results, out.parent / "img", "img/")
        discussion = Path(args.discussion).read_text() if args.discussion else ""
        out.write_text(render_markdown(results, targets, images, discussion))
        log(f"wrote {out}" + (f" and {len(images)} charts in {out.parent / 'img'}" if images else ""))
    if args.json and not args.from_json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    log(f"done in {(clock() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
