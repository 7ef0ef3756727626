"""``atlas create`` on N profile files vs xarray -> zarr and ``xr.open_mfdataset``; then a read.

Writes N CF profile files (``benchmarks/corpus.py``; 1 to 4 profiles of 10 to 120
levels each), then times, each in a fresh interpreter (so every row pays its own
imports, like a user at a shell):

* **atlas create**: ``python -m atlas create SRC STORE -q`` (default ``-j``), with
  ``-j 0`` (the writer reads the files itself) and with ``--meta-compression zstd``;
* **xarray -> zarr**: ``xr.open_dataset(f).to_zarr(store, group=name)`` for every file,
  one zarr store with one group per file (the closest zarr layout to an ATLAS store;
  format 2, because xarray cannot read these files back from zarr format 3);
* **xr.open_mfdataset**: opening the N files as one dataset (``combine="nested"`` along
  ``TIME``, keeping ``TEMP[:, :10]`` in ``preprocess`` because ``DEPTH`` differs per file).

and then, in this process after the imports (best of ``--repeats``), the time to read
``TEMP`` for the first 10 levels of every profile of every file:

* **atlas**: ``Atlas.open`` + ``read_array_across("TEMP", names, [0, 0], [n, 10])``, one call
  per distinct profile count ``n`` (the box must fit every array of a call);
* **zarr**: ``zarr.open_group`` + ``group[name]["TEMP"][:, :10]`` per file (and through
  ``xr.open_zarr`` per group);
* **netCDF**: ``xr.open_dataset(f)["TEMP"][:, :10]`` per file, and the ``open_mfdataset``
  above ``.values``.

Every read returns the same numbers (checked).  The table is printed and written into
the "Benchmark" section of ``docs/cli.md`` (``--no-docs`` to skip), one table per N: a
run replaces the table of its own N and keeps the others.  ``--skip zarr`` leaves out
the xarray -> zarr conversion and the zarr reads, ``--skip variants`` the ``-j 0`` and
``--meta-compression zstd`` creates (the table says which rows were not run).

Run: ``.venv/bin/python benchmarks/bench_cli.py -n 1000`` and
``.venv/bin/python benchmarks/bench_cli.py -n 10000 --skip zarr --skip variants``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "cli.md"
START, END = "<!-- bench_cli:start -->", "<!-- bench_cli:end -->"
#: Opens the table of one N inside the section.
BLOCK = re.compile(r"<!-- bench_cli:n=(\d+) -->\n")
SKIPPABLE = ("zarr", "variants")


# -- conversions, each run in a fresh interpreter -------------------------------------------------------


def _files(src: str) -> list[Path]:
    return sorted(Path(src).rglob("*.nc"))


def _to_zarr(src: str, out: str) -> None:
    import warnings

    import xarray as xr

    warnings.simplefilter("ignore")
    for f in _files(src):
        with xr.open_dataset(f) as ds:
            # zarr v2: with v3, xr.open_zarr cannot read these files back ("Failed to decode
            # fill_value. Unsupported dtype |S1", xarray 2026.9 / zarr 3.1).
            ds.to_zarr(out, group=f.stem, mode="w", consolidated=False, zarr_format=2)


def _mfdataset(src: str) -> None:
    import xarray as xr

    t0 = time.perf_counter()
    ds = _open_mf(xr, _files(src))
    t1 = time.perf_counter()
    values = ds["TEMP"].values
    t2 = time.perf_counter()
    print(f"open={t1 - t0:.6f} read={t2 - t1:.6f} cells={values.size}")


def _open_mf(xr, files):
    return xr.open_mfdataset(
        files, combine="nested", concat_dim="TIME", data_vars="minimal", coords="minimal", compat="override",
        preprocess=lambda d: d[["TEMP"]].isel(DEPTH=slice(0, 10)),
    )  # fmt: skip


def _timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


# -- reads, in this process -----------------------------------------------------------------------------------


#: Seconds of the last ``read_atlas`` spent in ``Atlas.open`` (the manifest decode).
LAST_OPEN = [0.0]


def read_atlas(store_path: Path) -> np.ndarray:
    import atlas

    t0 = time.perf_counter()
    with atlas.Atlas.open(store_path, mode="r") as store:
        LAST_OPEN[0] = time.perf_counter() - t0
        names = store.list_datasets()
        groups: dict[int, list[str]] = {}
        for name in names:
            groups.setdefault(store.open_dataset(name).array_meta("TEMP")["shape"][0], []).append(name)
        out: dict[str, np.ndarray] = {}
        for n, members in groups.items():
            for name, block in zip(members, store.read_array_across("TEMP", members, [0, 0], [n, 10])):
                out[name] = block
        return np.concatenate([out[name] for name in names])


def read_zarr(zarr_path: Path, names: list[str]) -> np.ndarray:
    import zarr

    root = zarr.open_group(zarr_path, mode="r")
    return np.concatenate([_masked(root[n]["TEMP"][:, :10], root[n]["TEMP"].fill_value) for n in names])


def _masked(raw: np.ndarray, fill) -> np.ndarray:
    return np.where(raw == fill, np.nan, raw) if fill is not None else raw


def read_xr_zarr(zarr_path: Path, names: list[str]) -> np.ndarray:
    import xarray as xr

    return np.concatenate([xr.open_zarr(zarr_path, group=n, consolidated=False)["TEMP"][:, :10].values for n in names])


def read_netcdf(files: list[Path]) -> np.ndarray:
    import xarray as xr

    parts = []
    for f in files:
        with xr.open_dataset(f) as ds:
            parts.append(ds["TEMP"][:, :10].values)
    return np.concatenate(parts)


def read_mf(files: list[Path]) -> np.ndarray:
    import xarray as xr

    with _open_mf(xr, files) as ds:
        return ds["TEMP"].values


def best(fn, repeats: int, warmup=None, also=None):
    """Best time of ``repeats`` calls (after a warm-up), the result, and ``also()`` read after the best call."""
    (warmup or fn)()  # first calls pay one-time costs (imports, numba's kernel cache, ...)
    times, result, extra = [], None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        extra.append(also() if also else None)
    i = int(np.argmin(times))
    return (times[i], result, extra[i]) if also else (times[i], result)


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    import xarray as xr
    import zarr

    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; Linux {platform.release()}; Python {platform.python_version()}, "
        f"xarray {xr.__version__}, zarr {zarr.__version__}; 1-min load average before the run "
        f"{os.getloadavg()[0]:.1f}"
    )


def wait_idle(limit: float) -> None:
    """Wait (up to ``limit`` s) for the 1-min load average to drop below half the cores."""
    deadline = time.time() + limit
    while time.time() < deadline and os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        time.sleep(5)


def write_docs(n: int, block: str) -> None:
    """Put the table of ``n`` files between the markers of ``docs/cli.md``, keeping other N's tables."""
    text = DOCS.read_text(encoding="utf-8")
    blocks: dict[int, str] = {}
    if START in text and END in text:
        inside = text[text.index(START) + len(START) : text.index(END)]
        parts = BLOCK.split(inside)  # [before, n1, body1, n2, body2, ...]
        for k in range(1, len(parts) - 1, 2):
            blocks[int(parts[k])] = f"<!-- bench_cli:n={parts[k]} -->\n" + parts[k + 1].strip("\n")
    blocks[n] = block
    section = "\n\n".join([START, *(blocks[k] for k in sorted(blocks))]) + "\n" + END
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("_zarr", "_mf"):
        if sys.argv[1] == "_zarr":
            _to_zarr(sys.argv[2], sys.argv[3])
        else:
            _mfdataset(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="number of files (default 1000)")
    parser.add_argument("--corpus", type=Path, help="reuse (or create) the files in this directory")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()), help="where stores are written")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each read (best is kept)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="S", help="wait up to S s for an idle machine")
    parser.add_argument("--no-docs", action="store_true", help="do not write the table into docs/cli.md")
    parser.add_argument(
        "--skip", action="append", default=[], choices=SKIPPABLE,
        help="leave out the xarray -> zarr rows (zarr) or the -j 0 and zstd creates (variants); repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from corpus import make_corpus

    work = Path(tempfile.mkdtemp(prefix="bench_cli_", dir=args.tmp))
    try:
        src = args.corpus or work / "files"
        if len(_files(str(src))) != args.n:
            t0 = time.perf_counter()
            make_corpus(src, args.n, jobs=os.cpu_count() or 1)
            print(f"corpus: {args.n} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        files = _files(str(src))
        names = [f.stem for f in files]
        wait_idle(args.wait_idle)
        env_machine = machine()
        py = sys.executable
        rows = []

        store = work / "profiles.atlas"
        t_create, _ = _timed([py, "-m", "atlas", "create", str(src), str(store), "-q"])
        skip = set(args.skip)
        store0 = work / "profiles-j0.atlas"
        storez = work / "profiles-zstd.atlas"
        if "variants" not in skip:
            t_create0, _ = _timed([py, "-m", "atlas", "create", str(src), str(store0), "-q", "-j", "0"])
            cmd = [py, "-m", "atlas", "create", str(src), str(storez), "-q", "--meta-compression", "zstd"]
            t_createz, _ = _timed(cmd)
        zstore = work / "profiles.zarr"
        if "zarr" not in skip:
            t_zarr, _ = _timed([py, str(Path(__file__).resolve()), "_zarr", str(src), str(zstore)])
            print(f"zarr conversion: {t_zarr:.1f} s", file=sys.stderr)
        t_mf, out = _timed([py, str(Path(__file__).resolve()), "_mf", str(src)])
        mf = dict(kv.split("=") for kv in out.split())
        print(f"conversions done: atlas {t_create:.1f} s, mf {t_mf:.1f} s", file=sys.stderr)

        r_atlas, v_atlas, r_open = best(lambda: read_atlas(store), args.repeats, also=lambda: LAST_OPEN[0])
        others = []
        if "zarr" not in skip:
            r_zarr, v_zarr = best(lambda: read_zarr(zstore, names), args.repeats, lambda: read_zarr(zstore, names[:5]))
            r_xzarr, v_xzarr = best(lambda: read_xr_zarr(zstore, names), 1, lambda: read_xr_zarr(zstore, names[:5]))
            others += [v_zarr, v_xzarr]
        r_nc, v_nc = best(lambda: read_netcdf(files), 1, lambda: read_netcdf(files[:5]))
        r_mf, v_mf = best(lambda: read_mf(files), 1, lambda: read_mf(files[:5]))
        for other in (*others, v_nc, v_mf):
            np.testing.assert_array_equal(v_atlas, other)
        cells = v_atlas.size
        src_bytes = du(src)

        def ratio(x: float) -> str:
            return f"{x / r_atlas:.0f}x" if x / r_atlas >= 10 else f"{x / r_atlas:.1f}x"

        rows = [
            ("`atlas create` (default `-j`)", f"{t_create:.1f} s", f"{du(store) / 2**20:.1f} MiB",
             f"`Atlas.open` ({r_open * 1e3:.0f} ms) + `read_array_across` ({(r_atlas - r_open) * 1e3:.0f} ms)",
             f"{r_atlas * 1e3:.0f} ms", "1x"),
        ]  # fmt: skip
        if "variants" in skip:
            rows += [("`atlas create -j 0`, `--meta-compression zstd`", "not run (`--skip variants`)", "", "", "", "")]
        else:
            rows += [
                ("`atlas create -j 0`", f"{t_create0:.1f} s", f"{du(store0) / 2**20:.1f} MiB", "", "", ""),
                ("`atlas create --meta-compression zstd`", f"{t_createz:.1f} s", f"{du(storez) / 2**20:.1f} MiB",
                 "", "", ""),
            ]  # fmt: skip
        if "zarr" in skip:
            rows += [("xarray `to_zarr`, one group per file", "not run (`--skip zarr`)", "",
                      "`zarr` / `xr.open_zarr` per group", "not run", "")]  # fmt: skip
        else:
            rows += [
                ("xarray `to_zarr`, one group per file", f"{t_zarr:.1f} s", f"{du(zstore) / 2**20:.1f} MiB",
                 "`zarr` per group", f"{r_zarr * 1e3:.0f} ms", ratio(r_zarr)),
                ("", "", "", "`xr.open_zarr` per group", f"{r_xzarr * 1e3:.0f} ms", ratio(r_xzarr)),
            ]  # fmt: skip
        rows += [
            ("netCDF files as they are", "0 s", f"{src_bytes / 2**20:.1f} MiB",
             "`xr.open_dataset` per file", f"{r_nc * 1e3:.0f} ms", ratio(r_nc)),
            ("`xr.open_mfdataset` (open only)", f"{float(mf['open']):.1f} s", "(the netCDF files)",
             "`open_mfdataset(...)` + `.values`", f"{r_mf * 1e3:.0f} ms", ratio(r_mf)),
        ]  # fmt: skip
        header = ["convert / open", "time", "on disk", "read TEMP[:, :10] of every profile", "time", "vs atlas"]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
        command = " ".join(["-n", str(args.n), *(f"--skip {k}" for k in sorted(skip))])
        block = "\n".join(
            [
                f"<!-- bench_cli:n={args.n} -->",
                f"**{args.n} files** ({src_bytes / 2**20:.1f} MiB of NetCDF-4, {cells} values read: "
                f"{cells // 10} profiles x 10 levels). Conversions run in a fresh interpreter each "
                "(imports included); reads are timed in one process after a warm-up read, best of "
                f"{args.repeats} for atlas and zarr, one run for the others. "
                f"`open_mfdataset` reads in {float(mf['read']):.2f} s in its own interpreter.",
                "",
                *lines,
                "",
                f"Machine: {env_machine}. Command: `.venv/bin/python benchmarks/bench_cli.py {command}`.",
            ]
        )
        print("\n".join(lines))
        if not args.no_docs and DOCS.exists():
            write_docs(args.n, block)
            print(f"wrote the table into {DOCS}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
