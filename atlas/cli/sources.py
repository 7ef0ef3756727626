"""Source files of ``create``/``append``: finding them, naming datasets, opening them.

**Which files.** Every regular file whose extension is ``.nc``, ``.nc4``, ``.cdf`` or
``.netcdf`` (any case) under a source directory, recursively by default, sorted by
relative path.  Names starting with ``.`` (hidden files and directories) are skipped
and symlinked directories are not followed.  A file named explicitly (``append``)
is taken whatever its extension.

**Dataset names** (:func:`dataset_name`): the file's path relative to the source
directory, POSIX separators, without its NetCDF extension, percent-encoded so that
the mapping is reversible and every result is a valid dataset name: ``%`` becomes
``%25``, ``/`` becomes ``%2F``, a leading ``_`` becomes ``%5F``, a name ``.``/``..``
starts with ``%2E``, and bytes of a file name that are not UTF-8 (surrogate escapes)
become ``%XX``.  ``urllib.parse.unquote(name, errors="surrogateescape")`` gives the
relative path back (minus the extension).  ``GL_PR_BO_JLKU.nc`` -> ``GL_PR_BO_JLKU``;
``2020/01/a.nc`` -> ``2020%2F01%2Fa``.

**Groups** (:func:`group_dataset_name`): each sub-group of a NetCDF-4 file
(nested ones too) becomes a dataset of its own, named after the file's dataset and
the group path joined with ``:`` (dataset names cannot hold ``/``): group ``/obs/deep`` of
``a.nc`` -> ``a:obs:deep``.  In these names ``:`` inside the file's part or inside
a group name is written ``%3A`` (and ``%`` ``%25``), so every ``:`` is a separator
and the name maps back to the file and the group.  The file's root group keeps the
plain file name.  (A root-group name of a file with ``:`` in its own name, say
``a:obs.nc``, can equal a group's name; such a clash stops the run like any other,
naming the dataset.)

**Opening** (:func:`load_source`, run in the reader processes): the file is opened
lazily with ``xr.open_dataset``.  A file the netCDF4 engine reads is opened once: its
data, its packed variables as stored and its list of groups all come from that one
netCDF4 handle (:class:`atlas.cli.netcdf_open.OnceStore`: xarray's netCDF4 store
without its file cache, its variables listed once), decoded exactly as
``xr.open_dataset(path)`` decodes it but without default (pandas) indexes, which
nothing stored depends on.  A small plain file (numbers and characters, standard
calendars) is listed by ``OnceStore`` itself (the variables and attributes xarray's
listing gives, without its lazy wrapper per variable) and read whole, one netCDF4
read per variable, and decoded from memory; when its listing says for sure which variables are
packed, those are decoded as stored in the same pass instead of a second one.  A file
listed like one decoded before in the process is decoded by the template of that
decode (:mod:`atlas.cli.netcdf_template`: xarray's lazy decoding functions over
its values, checked against xarray's decode on the first file it serves).  A file whose variables total at most
``chunk_size`` bytes is loaded whole into memory right there and sent to the
writer, so reading overlaps with writing; it is stored with ATLAS's default chunk
shapes.  A larger file is reopened by the writer (:func:`open_streamed`) with
``xr.open_dataset(chunks=...)``: dask blocks of at most ``chunk_size`` bytes that are
whole multiples of the on-disk chunks (about 1 MiB, one size per dimension), so it
is streamed block by block and every block is read once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EXTENSIONS",
    "Loaded",
    "Source",
    "dataset_name",
    "discover",
    "find_unsupported",
    "group_dataset_name",
    "group_paths",
    "keep_packed",
    "load_source",
    "open_streamed",
    "packed_variables",
]

EXTENSIONS = (".nc", ".nc4", ".cdf", ".netcdf")


@dataclass
class Source:
    """One file to store: where it is, the dataset it becomes, its size in bytes."""

    path: Path
    name: str
    size: int = 0


@dataclass
class Loaded:
    """An opened source: the dataset, and the on-disk chunks to use for a streamed one."""

    source: Source
    ds: Any
    streamed: bool = False
    blocks: dict[str, int] | None = None
    disk_chunks: dict[str, int] | None = None
    warnings: list[str] = field(default_factory=list)
    #: The NetCDF-4 group this dataset is read from (None: the root group).
    group: str | None = None
    #: The file's sub-groups, each its own dataset (only on the root's ``Loaded``).
    groups: list[Loaded] = field(default_factory=list)
    #: More opened files to close with it (the file opened without mask-and-scale for packed variables).
    others: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The dataset this group (or the whole file) becomes."""
        return self.source.name if self.group is None else group_dataset_name(self.source.name, self.group)

    def close(self) -> None:
        for ds in (self.ds, *self.others):
            if ds is not None:
                with contextlib.suppress(Exception):  # closing a file never matters for the result
                    ds.close()


def _escape_char(ch: str) -> str:
    if ch == "%":
        return "%25"
    if ch == "/":
        return "%2F"
    if "\udc80" <= ch <= "\udcff":  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"%{ord(ch) - 0xDC00:02X}"
    if "\ud800" <= ch <= "\udfff":
        return "%EF%BF%BD"
    return ch


def dataset_name(relative: str) -> str:
    """The dataset name of a file at POSIX path ``relative`` (see the module docstring)."""
    stem = relative
    lower = relative.lower()
    for ext in EXTENSIONS:
        if lower.endswith(ext) and len(relative) > len(ext):
            stem = relative[: -len(ext)]
            break
    name = "".join(_escape_char(ch) for ch in stem)
    if name.startswith("_"):
        name = "%5F" + name[1:]
    if name in (".", ".."):
        name = "%2E" + name[1:]
    return name


def _escape_group_part(text: str) -> str:
    return text.replace("%", "%25").replace(":", "%3A")


def group_dataset_name(file_dataset: str, group: str) -> str:
    """The dataset name of group ``group`` (``/a/b``) of the file whose dataset is ``file_dataset``."""
    parts = [file_dataset.replace(":", "%3A")]  # its ``%`` are escapes already
    parts += [_escape_group_part(p) for p in group.strip("/").split("/")]
    return ":".join(parts)


def group_paths(path: str | os.PathLike, engine: str | None = None) -> list[str]:
    """Paths (``/a``, ``/a/b``, ...) of every sub-group of a NetCDF file, parents first.

    Classic and 64-bit-offset NetCDF files have no groups.  Others are listed with
    netCDF4 (cheap: no variable is decoded), or with ``xr.open_groups`` when netCDF4
    cannot open the file; a file whose groups cannot be listed is refused, since
    its groups would otherwise be dropped without a word.
    """
    with open(path, "rb") as fh:
        if fh.read(3) == b"CDF":
            return []
    try:
        import netCDF4

        with netCDF4.Dataset(path) as nc:
            out: list[str] = []
            todo = list(nc.groups.values())
            while todo:
                group = todo.pop(0)
                out.append(group.path)
                todo[:0] = list(group.groups.values())
            return out
    except (ImportError, OSError):
        pass
    import xarray as xr

    try:
        groups = xr.open_groups(path, engine=engine)
    except Exception as exc:
        raise ValueError(f"cannot list the NetCDF-4 groups of this file: {type(exc).__name__}: {exc}") from None
    for ds in groups.values():
        ds.close()
    return [p for p in groups if p != "/"]


def _is_netcdf(name: str) -> bool:
    lower = name.lower()
    return any(lower.endswith(ext) and len(name) > len(ext) for ext in EXTENSIONS)


def _walk(root: Path, recursive: bool) -> list[Path]:
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [Path(dirpath) / f for f in filenames if not f.startswith(".") and _is_netcdf(f)]
    else:
        found = [p for p in root.iterdir() if not p.name.startswith(".") and _is_netcdf(p.name)]
    return [p for p in found if p.is_file()]


def discover(sources: Iterable[str | os.PathLike], recursive: bool) -> list[Source]:
    """The files named by ``sources`` (directories are searched), in order, with their dataset names.

    Raises ``FileNotFoundError`` for a source that does not exist.
    """
    out: list[Source] = []
    for src in sources:
        root = Path(src)
        if root.is_dir():
            files = _walk(root, recursive)
            rel = {p: p.relative_to(root).as_posix() for p in files}
            for p in sorted(files, key=lambda p: rel[p]):
                out.append(Source(p, dataset_name(rel[p]), p.stat().st_size))
        elif root.is_file():
            out.append(Source(root, dataset_name(root.name), root.stat().st_size))
        else:
            raise FileNotFoundError(2, "no such file or directory", os.fspath(root))
    return out


# -- opening ------------------------------------------------------------------------------------------


def _itemsize(var: Any) -> int:
    kind = var.dtype.kind
    return 8 if kind in "OSUMm" else max(1, var.dtype.itemsize)


def stream_chunks(ds: Any, chunk_size: int) -> tuple[dict[str, int], dict[str, int]]:
    """``(dask_blocks, disk_chunks)`` per dimension for streaming a large dataset.

    The on-disk chunk of a dimension is the smallest default ATLAS chunk (at most
    1 MiB per chunk) of any variable along it; the dask block is a whole multiple of
    it, grown along the largest variable's leading dimensions up to ``chunk_size``.
    """
    from atlas.dataset import default_chunk_shape

    sizes = {str(d): int(n) for d, n in ds.sizes.items()}
    disk: dict[str, int] = {}
    for var in ds.variables.values():
        if not var.dims:
            continue
        default = default_chunk_shape([int(s) for s in var.shape], _itemsize(var))
        for dim, c in zip(var.dims, default):
            disk[str(dim)] = min(disk.get(str(dim), c), max(1, c))
    block = dict(disk)
    big = max((v for v in ds.variables.values() if v.dims), key=lambda v: v.size * _itemsize(v), default=None)
    if big is not None:
        dims = [str(d) for d in big.dims]
        item = _itemsize(big)
        for dim in dims:
            others = math.prod(block[d] for d in dims if d != dim)
            fit = max(1, chunk_size // max(1, others * item * disk[dim]))
            block[dim] = min(sizes[dim], disk[dim] * fit)
            if block[dim] < sizes[dim]:
                break
    # Where it costs nothing, make blocks whole multiples of the file's own (HDF5) chunks too.
    for dim, pref in _preferred(ds).items():
        if dim in block and block[dim] < sizes[dim]:
            step = math.lcm(disk[dim], pref)
            if step <= block[dim]:
                block[dim] = block[dim] // step * step
    return block, disk


def _preferred(ds: Any) -> dict[str, int]:
    """The largest source chunk size per dimension (``encoding["preferred_chunks"]``)."""
    out: dict[str, int] = {}
    for var in ds.variables.values():
        for dim, size in (var.encoding.get("preferred_chunks") or {}).items():
            if isinstance(size, int) and size > 0:
                out[str(dim)] = max(out.get(str(dim), 0), size)
    return out


#: The attributes xarray's mask-and-scale decoding consumes.
_PACKING = ("_FillValue", "missing_value", "scale_factor", "add_offset")


def packed_variables(ds: Any) -> list[str]:
    """Variables that xarray decoded from integers to floats (masked or scaled: QC flags, packed data).

    Index coordinates are left decoded (they become pandas indexes).
    """
    import numpy as np

    out = []
    for name, var in ds.variables.items():
        try:
            raw = np.dtype(var.encoding.get("dtype"))
        except TypeError:
            continue
        if var.encoding.get("dtype") is None or raw.kind not in "iu" or var.dtype.kind != "f":
            continue
        if any(k in var.encoding for k in _PACKING) and var.dims != (name,):
            out.append(str(name))
    return out


def _with_packed(ds: Any, raw: Any, names: list[str]) -> Any:
    """``ds`` (just opened, owned by the caller) with its variables ``names`` swapped for ``raw[name]``, CF-packed.

    ``raw`` maps names to the variables decoded without mask-and-scale (a raw
    dataset's ``variables``).

    The swap is in place: each variable keeps its dims, shape, position and
    coordinate status and takes ``raw``'s data, attributes and encoding, which is
    what ``ds.assign`` gives (packed variables are never indexes) without merging
    the whole dataset again: a tenth of the time of loading a small file with a
    few QC flags.
    """
    from atlas.xarray.conversions import CF_PACKED

    for name in names:
        var, packed = ds.variables[name], raw[name]
        # Given the Variable itself, the setter takes its array as it is (lazy, or
        # dask): ``packed.data`` would read a lazy one now, and the setter's general
        # path imports dask.array to test for masked dask arrays (a quarter second).
        var.data = packed
        var.attrs = packed.attrs
        var.encoding = {**packed.encoding, CF_PACKED: True}
    return ds


def keep_packed(
    ds: Any, path: Any, engine: str | None, chunks: Any = None, group: str | None = None
) -> tuple[Any, Any]:
    """``ds`` with its packed variables as the file holds them, plus the raw dataset to close.

    The variables :func:`packed_variables` names are taken from the file opened with
    ``mask_and_scale=False``: the file's integers with ``_FillValue``, ``scale_factor``,
    ``add_offset`` and ``missing_value`` as attributes, marked so that reading them back
    (``to_xarray``, ``engine="atlas"``, ``atlas export``) decodes them exactly as
    ``xr.open_dataset`` decodes the file.  Storing them so keeps QC flags in one byte
    instead of four and packed data packed.
    """
    import xarray as xr

    names = packed_variables(ds)
    if not names:
        return ds, None
    raw = xr.open_dataset(
        path, engine=engine, chunks=chunks, mask_and_scale=False, decode_times=False, decode_timedelta=False,
        drop_variables=[str(n) for n in ds.variables if str(n) not in names],
        **({} if group is None else {"group": group}),
    )  # fmt: skip
    return _with_packed(ds, raw.variables, names), raw


def _packed_from(ds: Any, store: Any) -> tuple[Any, Any]:
    """:func:`keep_packed` decoding the already open ``store``'s listing instead of opening the file again.

    The packed variables are decoded by xarray's own ``decode_cf_variables``, with the
    arguments and the variables to drop that :func:`keep_packed` gives
    ``xr.open_dataset``: the variables it returns, without building a second
    ``Dataset`` around them (``ds`` closes the store).
    """
    from xarray import conventions

    names = packed_variables(ds)
    if not names:
        return ds, None
    variables, attributes = store.load()
    raw, _, _ = conventions.decode_cf_variables(
        variables, attributes, mask_and_scale=False, decode_times=False, decode_timedelta=False,
        drop_variables=[str(n) for n in ds.variables if str(n) not in names],
    )  # fmt: skip
    return _with_packed(ds, raw, names), None


def load_source(source: Source, chunk_size: int, engine: str | None = None) -> Loaded:
    """Open ``source`` in a reader process: loaded whole when small, else planned for streaming.

    Runs in a worker process (netCDF-C and HDF5 are not thread-safe, and xarray does
    not lock while it opens a file, so reader *threads* crash); the result is pickled
    back.  Python warnings are returned in ``Loaded.warnings`` for the parent to log.

    A file the netCDF4 engine reads is opened once (:func:`_open_once`): the decoded
    dataset, the packed variables as stored and the list of groups all come from that
    one open.  Other files (another engine, nothing netCDF4 opens) take the general
    path, which opens the file again for packed variables and for groups.
    """
    import warnings

    import xarray as xr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UserWarning)  # what the parent reports too (see atlas.cli.progress)
        warnings.simplefilter("always", RuntimeWarning)
        opened = _open_once(source.path, engine, chunk_size)
        if opened is not None:
            ds, store, groups, packed = opened
            loaded = _load_or_plan(source, ds, chunk_size, None, engine, store, packed)
        else:
            try:
                ds = xr.open_dataset(source.path, engine=engine)
            except ValueError as exc:
                if "did not find a match" in str(exc):  # xarray's words for "no engine reads this"
                    raise ValueError("not a file any installed xarray engine can read (not NetCDF?)") from None
                raise
            loaded = _load_or_plan(source, ds, chunk_size, None, engine)
            groups = group_paths(source.path, engine)
        for group in groups:
            loaded.groups.append(_load_or_plan(source, xr.open_dataset(source.path, engine=engine, group=group),
                                               chunk_size, group, engine))  # fmt: skip
    loaded.warnings = [f"{w.category.__name__}: {' '.join(str(w.message).split())}" for w in caught]
    return loaded


def _open_once(path: Any, engine: str | None, limit: int | None = None) -> tuple[Any, Any, list[str], bool] | None:
    """``(dataset, store, group_paths, packed)`` from one netCDF4 open of ``path``, or None.

    ``packed``: the packed variables are already as stored in ``dataset`` (a file
    read whole whose packed variables are known from its listing, see
    :meth:`~atlas.cli.netcdf_open.OnceStore.surely_packed`); otherwise :func:`_packed_from` swaps them in.

    ``limit``: a file whose root group is plain and whose variables take at most
    this many bytes decoded is read whole before it is decoded
    (:meth:`atlas.cli.netcdf_open.OnceStore.read_whole`).

    ``dataset`` is ``xr.open_dataset`` of the open netCDF4 ``store``: the very decoding
    ``xr.open_dataset(path)`` does (its netCDF4 engine opens such a store and decodes
    it the same way), without opening the file again for the packed variables
    (:func:`_packed_from`) or for the groups, and without default indexes (where
    xarray can skip them): the stored dataset does not depend on them (``to_xarray`` creates its own), and
    building one reads and sorts the coordinate again.  None when the netCDF4 engine is not the
    one ``xr.open_dataset(path, engine=engine)`` would use or cannot open the file:
    the caller then takes the general path.
    """
    import xarray as xr

    if engine not in (None, "netcdf4"):
        return None
    filename = os.path.abspath(os.path.expanduser(os.fspath(path)))  # what xr.open_dataset records as "source"
    try:
        from xarray.backends.netCDF4_ import NetCDF4BackendEntrypoint

        if engine is None and not NetCDF4BackendEntrypoint().guess_can_open(filename):
            return None
        from atlas.cli.netcdf_open import OnceStore

        store = OnceStore(filename)
    except Exception:  # netCDF4 missing or refusing the file: the general path says why
        return None
    try:
        groups: list[str] = []
        todo = list(store.ds.groups.values())
        while todo:
            group = todo.pop(0)
            groups.append(group.path)
            todo[:0] = list(group.groups.values())

        def decode(packed: list[str] | None) -> Any:
            raw: dict[str, Any] = {}
            if packed is not None:  # decoded once: no second decode needs the listing as it was
                store.hand_over()
            if packed:
                off = dict.fromkeys(packed, False)
                raw = {"mask_and_scale": off, "decode_times": off, "decode_timedelta": off}
            return xr.open_dataset(store, **raw, **_without_indexes(xr.open_dataset))

        packed = None
        if limit is not None and store.read_whole(limit) and _per_variable_decoding(xr.__version__):
            from atlas.cli.netcdf_template import decode_listed

            ds, packed = decode_listed(store, decode, templated=bool(_without_indexes(xr.open_dataset)))
        else:
            ds = decode(None)
    except Exception:
        store.close()
        raise
    ds.encoding.setdefault("source", filename)
    if packed is not None:
        from atlas.xarray.conversions import CF_PACKED

        for name in packed:
            ds.variables[name].encoding[CF_PACKED] = True
    return ds, store, groups, packed is not None


def _per_variable_decoding(version: str) -> bool:
    """Whether xarray ``version`` takes ``mask_and_scale`` and ``decode_times`` per variable (2024.07 on).

    An older one takes a mapping as simply true: it would decode the packed
    variables that :func:`_open_once` asks it to leave as stored.
    """
    try:
        return tuple(int(part) for part in version.split(".")[:2]) >= (2024, 7)
    except ValueError:  # not a release number: the swap, right for any version
        return False


@functools.lru_cache(maxsize=2)
def _without_indexes(open_dataset: Any) -> dict[str, Any]:
    """``create_default_indexes=False`` when ``open_dataset`` takes it, else nothing.

    xarray has it since 2025; an older one always builds the default indexes, as
    the general path does.  Cached: reading a signature costs as much as a small read.
    """
    import inspect

    takes = "create_default_indexes" in inspect.signature(open_dataset).parameters
    return {"create_default_indexes": False} if takes else {}


def _load_or_plan(
    source: Source, ds: Any, chunk_size: int, group: str | None, engine: str | None, store: Any = None,
    packed: bool = False,
) -> Loaded:
    """``ds`` loaded whole when small, else the plan to stream it; ``ds`` is closed.

    ``store``: the file's open netCDF4 store ``ds`` was decoded from (see
    :func:`_open_once`), where packed variables are read instead of opening the file
    again; ``packed``: ``ds`` holds them as stored already, which only a file read
    whole with ``chunk_size`` for a limit does (it fits: its size is not summed again).
    """
    raw = None
    try:
        if packed or ds.nbytes <= chunk_size:  # metadata only: nothing is read yet
            if store is None:
                ds, raw = keep_packed(ds, source.path, engine, None, group)
            elif not packed:
                ds, raw = _packed_from(ds, store)
            ds.load()
            return Loaded(source, ds, group=group)
        blocks, disk = stream_chunks(ds, chunk_size)
        return Loaded(source, None, streamed=True, blocks=blocks, disk_chunks=disk, group=group)
    finally:
        ds.close()
        if raw is not None:
            raw.close()


def open_streamed(loaded: Loaded, engine: str | None = None) -> Loaded:
    """Open a large source lazily with dask blocks (``xr.open_dataset(chunks=...)``), in the writer."""
    import xarray as xr

    if loaded.ds is None:
        group = {} if loaded.group is None else {"group": loaded.group}
        ds = xr.open_dataset(loaded.source.path, engine=engine, chunks=loaded.blocks, **group)
        loaded.others.append(ds)  # open until every block is written, like the raw file
        loaded.ds, raw = keep_packed(ds, loaded.source.path, engine, loaded.blocks, loaded.group)
        loaded.others.append(raw)
    return loaded


def find_unsupported(ds: Any) -> dict[str, str]:
    """``{variable: reason}`` for the variables ATLAS refuses to store (complex, compound, ...)."""
    import xarray as xr

    from atlas.errors import DTypeError, ValueOverflowError

    try:
        from atlas.xarray.plan import plan_dataset
    except ImportError:  # pragma: no cover - the layout module moved: fall back to dtype kinds
        plan_dataset = None
    bad: dict[str, str] = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "cV" or (var.dtype.kind == "f" and var.dtype.itemsize > 8):
            bad[str(name)] = f"dtype {var.dtype} is not supported"
            continue
        if plan_dataset is None:
            continue
        try:
            plan_dataset(xr.Dataset({name: var}), None)
        except (DTypeError, ValueOverflowError) as exc:
            bad[str(name)] = " ".join(str(exc).split())
    return bad
