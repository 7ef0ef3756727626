"""The argument parser of the ``atlas`` command."""

from __future__ import annotations

import argparse

from atlas.cli.common import AUTO_JOBS_MIN_FILES, parse_size

__all__ = ["build_parser"]

DESCRIPTION = """\
ATLAS: one store for thousands of named N-dimensional datasets.

A STORE is a local directory, a file:// URL or an object-store URL: s3://bucket/prefix
(also s3a://), gs://bucket/prefix, az://container/prefix (also azure://, abfs[s]://),
or http(s)://host/path (read-only).  Object stores need obstore (pip install
'atlas-store[cloud]'); credentials come from the environment (AWS_*, GOOGLE_*, AZURE_*),
the endpoint and region from --endpoint/--region or the environment.  Every command
exits with status 0 on success and 1 on failure (one `atlas: error: ...` line on
stderr); usage errors (unknown options, invalid option values such as a
negative or NaN number) exit 2.
`atlas COMMAND --help` documents each command; docs/cli.md has examples."""


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: Most reader processes ``-j`` accepts (each holds a source file in memory).
MAX_JOBS = 1024


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    if value > MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_JOBS}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also NaN: every invalid number is the same usage error
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0 (inf: keep everything), got {text!r}")
    return value


def _local_cluster(text: str) -> int:
    kind, _, n = text.partition(":")
    if kind != "local" or not n.isdigit() or int(n) < 1:
        raise argparse.ArgumentTypeError(f"expected local:N with N >= 1 worker processes, got {text!r}")
    return int(n)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("object-store options (for s3://, gs://, az://, http(s):// stores)")
    group.add_argument("--region", metavar="REGION", help="object-store region")
    group.add_argument("--endpoint", metavar="URL", help="object-store endpoint URL")
    group.add_argument("--anonymous", action="store_true", help="object store: unsigned requests")
    out = common.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress, summary or warnings on stderr")
    out.add_argument("--log-file", metavar="PATH", help="append warnings, skipped files and a summary to PATH")
    return common


def _ingest_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recursive", action=argparse.BooleanOptionalAction, default=True,
        help="search source directories recursively (default: yes)",
    )  # fmt: skip
    p.add_argument(
        "--chunk-size", type=_size, default=parse_size("128MiB"), metavar="SIZE",
        help="read block of source files (default 128MiB): smaller files are loaded whole by a reader "
        "thread, larger ones are streamed in dask blocks of at most SIZE",
    )  # fmt: skip
    p.add_argument(
        "-j", "--jobs", type=_count, default=None, metavar="N",
        help="reader processes that open and load the next files while one is written (0: the writer reads; "
        f"default: min(4, cores) for {AUTO_JOBS_MIN_FILES} files or more, else 0)",
    )  # fmt: skip
    p.add_argument(
        "--max-pending", type=_size, default=parse_size("256MiB"), metavar="SIZE",
        help="memory for staged chunks before they spill to uncommitted segment files (default 256MiB)",
    )  # fmt: skip
    p.add_argument("--skip-errors", action="store_true", help="skip files that cannot be read or stored, and go on")
    p.add_argument(
        "--skip-unsupported", action="store_true",
        help="drop only the variables ATLAS cannot store (complex, compound, ...) and store the rest of the file",
    )  # fmt: skip
    p.add_argument("--engine", metavar="NAME", help="xarray engine to read sources with (default: xarray's guess)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="write on the dask.distributed cluster of this scheduler: workers write the segments, this process "
        "commits metadata only (the store must be at a location every worker reaches)",
    )  # fmt: skip
    where.add_argument(
        "--cluster", metavar="local:N", type=_local_cluster,
        help="the same on a dask.distributed LocalCluster of N worker processes started for the command",
    )  # fmt: skip
    p.add_argument(
        "--batch", type=_count, default=None, metavar="N",
        help="with --scheduler/--cluster: files per task (default: about four tasks per worker, at most 64)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from atlas import __version__

    parser = argparse.ArgumentParser(
        prog="atlas", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"atlas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common()

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    p = command("create", "create a store from NetCDF files, or every one under directories (one atomic commit)")
    p.add_argument("src", metavar="SRC", nargs="+", help="files, or directories of .nc, .nc4, .cdf, .netcdf files")
    p.add_argument(
        "store", metavar="STORE",
        help="the new store: a directory that does not exist or is empty, or an empty object-store prefix "
        "(to add files to an existing store, use `atlas append`)",
    )  # fmt: skip
    p.add_argument("--codec", choices=("zstd", "lz4", "none"), default="zstd", help="chunk codec (default zstd)")
    p.add_argument(
        "--meta-format", choices=("json", "msgpack"), default="json", help="manifest encoding (default json)"
    )
    p.add_argument(
        "--meta-compression", choices=("none", "zstd", "lz4"), default="none",
        help="manifest compression (default none; zstd makes the manifest of NetCDF-derived stores ~15x smaller)",
    )  # fmt: skip
    _ingest_options(p)
    p.set_defaults(func="atlas.cli.ingest:cmd_create")

    p = command("append", "add NetCDF files (or the files under directories) to an existing store")
    p.add_argument("src", metavar="SRC", nargs="+", help="files or directories")
    p.add_argument("store", metavar="STORE", help="an existing store")
    p.add_argument("--skip-existing", action="store_true", help="skip files whose dataset is already in the store")
    _ingest_options(p)
    p.set_defaults(func="atlas.cli.ingest:cmd_append")

    p = command("ls", "list the datasets of a store, or those matching a metadata filter")
    p.add_argument("store", metavar="STORE")
    p.add_argument("-l", "--long", action="store_true", help="arrays, attributes and stored bytes per dataset")
    p.add_argument(
        "--where", metavar="EXPR",
        help="only datasets matching EXPR, e.g. \"platform == 'buoy-1' and temp.max > 20 and LAT overlaps [40, 50]\" "
        "(grammar: docs/finding.md)",
    )  # fmt: skip
    p.add_argument(
        "--columns", metavar="A,B,...",
        help="print these attribute or stats columns (temp.min, temp.max, temp.count, temp.nulls, temp.shape) "
        "after each name",
    )  # fmt: skip
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV (a header row, then one row per dataset)")
    p.set_defaults(func="atlas.cli.inspect:cmd_ls")

    p = command("show", "print one dataset's header (ncdump -h style, with chunks and stats)")
    p.add_argument("store", metavar="STORE")
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument("--raw", action="store_true", help="the plain ATLAS view: arrays and stored attribute keys")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func="atlas.cli.show:cmd_show")

    p = command("info", "print store facts: format, generation, codec, counts, bytes on disk, dead bytes")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func="atlas.cli.inspect:cmd_info")

    p = command("rm", "delete datasets (one atomic commit; `atlas compact` reclaims the bytes)")
    p.add_argument("store", metavar="STORE")
    p.add_argument("names", metavar="NAME", nargs="+", help="dataset names")
    p.add_argument("-f", "--force", action="store_true", help="ignore names that are not in the store")
    p.set_defaults(func="atlas.cli.maintain:cmd_rm")

    p = command("compact", "rewrite live chunks, delete dead and unreferenced files")
    p.add_argument("store", metavar="STORE")
    p.add_argument(
        "--grace-period", type=_seconds, default=3600.0, metavar="SECONDS",
        help="delete retired segments and unreferenced files only when older than this (default 3600: "
        "readers of older generations may still read them, another writer may be about to commit them)",
    )  # fmt: skip
    p.set_defaults(func="atlas.cli.maintain:cmd_compact")

    p = command("upgrade", "rewrite a format 1 store's metadata as format 2 (one atomic commit)")
    p.add_argument("store", metavar="STORE")
    p.set_defaults(func="atlas.cli.maintain:cmd_upgrade")

    p = command("verify", "check every checksum; exit status 1 and one line per problem on damage")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func="atlas.cli.maintain:cmd_verify")

    p = command("export", "write one dataset to a NetCDF file (via xarray)")
    p.add_argument("store", metavar="STORE")
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument("out", metavar="OUT.nc", help="the NetCDF file to write")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUT.nc if it exists")
    p.add_argument(
        "--format", choices=("NETCDF4", "NETCDF4_CLASSIC", "NETCDF3_64BIT", "NETCDF3_CLASSIC"), default=None,
        help="NetCDF format (default: xarray's, NETCDF4)",
    )  # fmt: skip
    p.add_argument("--engine", metavar="NAME", help="xarray engine to write with (default: xarray's choice)")
    p.set_defaults(func="atlas.cli.maintain:cmd_export")
    return parser
