"""The manifest: the one mutable object of a store and its commit point.

The manifest holds everything but the array cells: the format version, the commit
``generation`` and ``write_token``, the store codec, every dataset with its arrays,
typed attributes and per-array stats, and, per array name, the ordered list of live
segment files.  ``docs/format.md`` is its normative description.

It is stored as ``atlas.json`` or ``atlas.msgpack``, optionally compressed
(``atlas.json.zst``, ``atlas.msgpack.lz4``, ...).  Format and compression are read
back from the file name.
"""

from __future__ import annotations

import gc
import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack

from atlas import attributes, dtypes
from atlas.backends.base import MAX_GET_BYTES
from atlas.errors import CorruptStoreError, FormatVersionError, InvalidArgumentError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_BASENAME",
    "ArrayFamily",
    "ArrayMeta",
    "DatasetMeta",
    "Manifest",
    "RetiredSegment",
    "SegmentRef",
    "Stats",
    "array_from_dict",
    "array_to_dict",
    "attributes_from_dict",
    "gc_paused",
    "gc_paused_elsewhere",
    "check_blosc_sizes",
    "checked_int",
    "manifest_from_dict",
    "decode_manifest",
    "encode_manifest",
    "manifest_filename",
    "normalize_meta_compression",
    "normalize_meta_format",
    "check_counter",
    "check_counters",
    "parse_manifest_filename",
]

#: The format version this library writes and the newest it reads.
FORMAT_VERSION = 1
MANIFEST_BASENAME = "atlas"
#: Largest manifest accepted from a store, compressed or not (guards forged sizes);
#: backends refuse a larger one from its size, before reading it.
MAX_MANIFEST_BYTES = MAX_GET_BYTES
#: Largest chunk an array may have, in cells (keeps every chunk within one codec call).
MAX_CHUNK_CELLS = 1 << 28
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
#: The largest value the reader accepts for each manifest counter; a commit that
#: would pass one is refused with the reader's error (:func:`check_counter`).
COUNTER_LIMITS = {"generation": _INT64_MAX, "next_dataset_id": _INT64_MAX, "next_slot": _UINT64_MAX}

_FORMATS = {"json": "json", "msgpack": "msgpack", "mp": "msgpack"}
_COMPRESSIONS = {"none": "none", "zstd": "zstd", "lz4": "lz4", "zst": "zstd", "uncompressed": "none"}
_SUFFIX = {"none": "", "zstd": ".zst", "lz4": ".lz4"}
_DTYPES = frozenset(dtypes.DTYPE_NAMES)


def normalize_meta_format(value: str) -> str:
    """``json``, ``msgpack`` (alias ``mp``), case-insensitive."""
    key = str(value).strip().lower() if isinstance(value, str) else None
    if key not in _FORMATS:
        raise InvalidArgumentError(f"unknown meta_format {value!r}; expected 'json', 'msgpack' or 'mp'")
    return _FORMATS[key]


def normalize_meta_compression(value: str | None) -> str:
    """``none``, ``zstd`` or ``lz4``, case-insensitive (``None`` means ``none``)."""
    key = "none" if value is None else (value.strip().lower() if isinstance(value, str) else None)
    if key not in _COMPRESSIONS:
        raise InvalidArgumentError(f"unknown meta_compression {value!r}; expected 'none', 'zstd' or 'lz4'")
    return _COMPRESSIONS[key]


def manifest_filename(meta_format: str, compression: str) -> str:
    """``atlas.json``, ``atlas.msgpack.zst``, ..."""
    return f"{MANIFEST_BASENAME}.{meta_format}{_SUFFIX[compression]}"


def parse_manifest_filename(name: str) -> tuple[str, str] | None:
    """Return ``(meta_format, compression)`` for a manifest file name, else None."""
    for fmt in ("json", "msgpack"):
        for comp, suffix in _SUFFIX.items():
            if name == f"{MANIFEST_BASENAME}.{fmt}{suffix}":
                return fmt, comp
    return None


# -- model --------------------------------------------------------------------------------


@dataclass
class Stats:
    """Per-array statistics: cells, null cells, and min/max over the valid cells.

    ``minimum``/``maximum`` are normalised scalars (see :mod:`atlas.dtypes`) or None
    when no cell is valid.
    """

    row_count: int
    null_count: int
    minimum: Any = None
    maximum: Any = None


@dataclass
class ArrayMeta:
    """The schema of one array in one dataset."""

    slot: int
    dtype: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    fill_value: Any = None
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: Stats | None = None


@dataclass
class DatasetMeta:
    """One dataset: a stable id, the generation it last changed at, attributes, arrays."""

    id: int
    version: int
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrays: dict[str, ArrayMeta] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentRef:
    """Where a live segment file is and how to find its chunk index."""

    file: str
    size: int
    index_offset: int
    index_length: int
    index_checksum: int
    records: int


@dataclass
class ArrayFamily:
    """All segments of one array name (shared by every dataset that has the array)."""

    dir: str
    segments: list[SegmentRef] = field(default_factory=list)


@dataclass(frozen=True)
class RetiredSegment:
    """A segment file a compaction stopped referencing, kept for a grace period.

    ``retired_ms`` is when the compaction that retired it was built, in
    milliseconds since the Unix epoch.
    """

    dir: str
    file: str
    retired_ms: int

    @property
    def path(self) -> str:
        return f"{self.dir}/{self.file}"


@dataclass
class Manifest:
    """The whole committed state of a store at one generation."""

    codec: str
    generation: int = 0
    write_token: str = ""
    next_slot: int = 1
    next_dataset_id: int = 1
    datasets: dict[str, DatasetMeta] = field(default_factory=dict)
    families: dict[str, ArrayFamily] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    #: Segments retired by compactions and not deleted yet (oldest first).
    retired: list[RetiredSegment] = field(default_factory=list)


# -- encoding -------------------------------------------------------------------------------


def _stats_to_dict(stats: Stats, dtype: str) -> dict[str, Any]:
    out: dict[str, Any] = {"row_count": stats.row_count, "null_count": stats.null_count}
    out["min"] = None if stats.minimum is None else dtypes.encode_value(stats.minimum, dtype)
    out["max"] = None if stats.maximum is None else dtypes.encode_value(stats.maximum, dtype)
    return out


def array_to_dict(meta: ArrayMeta) -> dict[str, Any]:
    """The format v1 array object (§3.3) of ``meta``."""
    out: dict[str, Any] = {
        "slot": meta.slot,
        "dtype": meta.dtype,
        "dims": list(meta.dims),
        "shape": list(meta.shape),
        "chunk_shape": list(meta.chunk_shape),
        "fill_value": None if meta.fill_value is None else dtypes.encode_value(meta.fill_value, meta.dtype),
    }
    if meta.attributes:
        out["attributes"] = {k: attributes.encode(v) for k, v in meta.attributes.items()}
    if meta.stats is not None:
        out["stats"] = _stats_to_dict(meta.stats, meta.dtype)
    return out


def manifest_to_dict(m: Manifest) -> dict[str, Any]:
    """The manifest as plain JSON/msgpack-safe Python objects."""
    out = {
        "format": "atlas",
        "format_version": m.format_version,
        "generation": m.generation,
        "write_token": m.write_token,
        "codec": m.codec,
        "next_slot": m.next_slot,
        "next_dataset_id": m.next_dataset_id,
        "datasets": {
            name: {
                "id": ds.id,
                "version": ds.version,
                "attributes": {k: attributes.encode(v) for k, v in ds.attributes.items()},
                "arrays": {a: array_to_dict(am) for a, am in ds.arrays.items()},
            }
            for name, ds in m.datasets.items()
        },
        "arrays": {
            name: {
                "dir": fam.dir,
                "segments": [
                    [s.file, s.size, s.index_offset, s.index_length, s.index_checksum, s.records] for s in fam.segments
                ],
            }
            for name, fam in m.families.items()
        },
    }
    if m.retired:  # omitted when empty, so stores without retired segments keep their exact bytes
        out["retired"] = [[r.dir, r.file, r.retired_ms] for r in m.retired]
    return out


def encode_manifest(m: Manifest, meta_format: str, compression: str) -> bytes:
    """Serialise a manifest in the given format and compression."""
    try:
        # Like decoding, encoding builds a large acyclic tree: the collector's
        # passes over it cost about half the time of a commit to a 100 000-dataset
        # store and free nothing.
        with gc_paused():
            obj = manifest_to_dict(m)
            if meta_format == "json":
                raw = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
            else:
                raw = msgpack.packb(obj, use_bin_type=True)
            # Freed while the collector is still paused: otherwise its first pass
            # after the pause walks the whole temporary tree once more.
            del obj
    except (UnicodeEncodeError, ValueError, TypeError) as exc:  # every input is validated; this is a guard
        raise InvalidArgumentError(f"the manifest cannot be encoded as {meta_format}: {exc}") from None
    if compression == "none":
        return raw
    if len(raw) >= MAX_MANIFEST_BYTES:
        raise InvalidArgumentError(f"manifest of {len(raw)} bytes is too large to compress")
    import blosc2  # here, not at import: most programs never compress a manifest

    codec = blosc2.Codec.ZSTD if compression == "zstd" else blosc2.Codec.LZ4
    return bytes(blosc2.compress2(raw, codec=codec, clevel=5, filter=blosc2.Filter.NOFILTER, typesize=1))


#: Blocks inside :func:`gc_paused` in every thread, and whether the collector was on
#: when the first of them began: the collector is a process-wide switch, so threads
#: pausing it at once must agree on who turns it back on (the last one out).
_gc_pause = {"depth": 0, "was_on": False}
_gc_pause_lock = threading.Lock()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (when it is on) for the block.

    Safe from several threads at once: the collector is turned back on when the
    last overlapping block ends, and only if it was on when the first began.
    """
    with _gc_pause_lock:
        if _gc_pause["depth"] == 0:
            _gc_pause["was_on"] = gc.isenabled()
            gc.disable()
        _gc_pause["depth"] += 1
    try:
        yield
    finally:
        with _gc_pause_lock:
            _gc_pause["depth"] -= 1
            if _gc_pause["depth"] == 0 and _gc_pause["was_on"]:
                gc.enable()


def gc_paused_elsewhere() -> bool:
    """Whether :func:`gc_paused` blocks (in any thread) keep paused a collector that was on before them."""
    with _gc_pause_lock:
        return _gc_pause["depth"] > 0 and _gc_pause["was_on"]


def decode_manifest(data: bytes, meta_format: str, compression: str, where: str) -> Manifest:
    """Parse and validate manifest bytes read from ``where``.

    Raises
    ------
    CorruptStoreError
        When the bytes do not decode or do not follow the schema.
    FormatVersionError
        When the manifest was written by a newer format version.
    """
    # Decoding allocates several objects per dataset and creates no reference
    # cycles, so the cyclic collector can free nothing here; left on, its repeated
    # passes over the growing tree made opening a store of 100 000 datasets about
    # three times slower (docs/scale.md).
    with gc_paused():
        return _decode_manifest(data, meta_format, compression, where)


def _decode_manifest(data: bytes, meta_format: str, compression: str, where: str) -> Manifest:
    if len(data) > MAX_MANIFEST_BYTES:
        raise CorruptStoreError(f"manifest {where} is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} limit")
    try:
        if compression != "none":
            import blosc2

            check_blosc_sizes(data, where)
            data = blosc2.decompress2(data)
        if meta_format == "json":
            obj = json.loads(bytes(data).decode("utf-8"))
        else:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=0)
    except CorruptStoreError:
        raise
    except Exception as exc:  # every decoder failure is damage, whatever its type
        raise CorruptStoreError(f"manifest {where} cannot be decoded: {exc}") from None
    try:
        return manifest_from_dict(obj)
    except (FormatVersionError, CorruptStoreError):
        raise
    except Exception as exc:
        raise CorruptStoreError(f"manifest {where} does not follow the format: {exc!r}") from None


def check_blosc_sizes(data: bytes, where: str) -> None:
    """Refuse a Blosc2 frame whose header claims sizes beyond the metadata limit."""
    if len(data) < 32:
        raise CorruptStoreError(f"manifest {where} is truncated ({len(data)} bytes)")
    import blosc2

    nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(data[:32])
    if cbytes != len(data) or nbytes > MAX_MANIFEST_BYTES:
        raise CorruptStoreError(f"manifest {where} has a damaged compression header")


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise CorruptStoreError(f"manifest field {what} is invalid")


def checked_int(value: Any, what: str, minimum: int = 0, maximum: int = _INT64_MAX) -> int:
    """``value`` as an int within ``[minimum, maximum]`` (bools refused), else damage naming ``what``."""
    _need(isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum, what)
    return int(value)


def _ints(values: list[Any], what: str, minimum: int) -> tuple[int, ...]:
    """``checked_int`` of every element of a list, checked in bulk."""
    out = tuple(values)
    for v in out:  # a plain loop: a generator costs more than the check on these short lists
        if type(v) is not int or not minimum <= v <= _INT64_MAX:
            _need(False, what)
    return out


def attributes_from_dict(raw: Any) -> dict[str, dict[str, Any]]:
    """Typed attributes decoded and checked from their format v1 form (§4.4)."""
    _need(isinstance(raw, dict), "attributes")
    decode, decode_value = attributes.decode, dtypes.decode_value
    out = {}
    for k, typed in raw.items():
        if not isinstance(k, str):
            _need(False, "attributes")
        if type(typed) is dict and len(typed) == 2 and "v" in typed:
            # A scalar {"t", "v"}, most attributes, checked as attributes.decode does.
            # The parsed tree is private to this decode, so when the value needs no
            # conversion the parsed dict itself is kept rather than a copy.
            name = typed.get("t")
            if type(name) is str and name in _DTYPES:
                value = typed["v"]
                decoded = decode_value(value, name)
                out[k] = typed if decoded is value else {"t": name, "v": decoded}
                continue
        out[k] = decode(typed)
    return out


def _stats_from_dict(raw: dict[str, Any], dtype: str) -> Stats:
    _need(isinstance(raw, dict), "stats")
    mn, mx = raw.get("min"), raw.get("max")
    return Stats(
        row_count=checked_int(raw["row_count"], "stats.row_count"),
        null_count=checked_int(raw["null_count"], "stats.null_count"),
        minimum=None if mn is None else dtypes.decode_value(mn, dtype),
        maximum=None if mx is None else dtypes.decode_value(mx, dtype),
    )


def array_from_dict(raw: dict[str, Any]) -> ArrayMeta:
    """An :class:`ArrayMeta` decoded and checked from its format v1 object (§3.3)."""
    _need(isinstance(raw, dict), "dtype")
    dtype = raw.get("dtype")
    _need(type(dtype) is str and dtype in _DTYPES, "dtype")
    get = raw.get
    raw_shape, raw_chunks, raw_dims = get("shape"), get("chunk_shape"), get("dims")
    _need(type(raw_shape) is list and type(raw_chunks) is list and type(raw_dims) is list, "shape/chunk_shape/dims")
    shape = _ints(raw_shape, "shape", 0)
    chunk_shape = _ints(raw_chunks, "chunk_shape", 1)
    dims = tuple(raw_dims)
    _need(len(shape) == len(chunk_shape) == len(dims), "rank of shape/chunk_shape/dims")
    for d in dims:
        if type(d) is not str:
            _need(False, "dims")
    # Counted in Python ints: a forged shape must not overflow what reads compute.
    _need(math.prod(shape) <= _INT64_MAX, "shape (more cells than int64 can count)")
    cells = 1
    for c, s in zip(chunk_shape, shape):  # equal lengths, checked above
        cells *= min(c, s) if s > 1 else 1  # min(c, max(s, 1)) with c >= 1
    _need(cells <= MAX_CHUNK_CELLS, "chunk_shape (too many cells per chunk)")
    fill = raw.get("fill_value")
    stats = raw.get("stats")
    return ArrayMeta(
        slot=checked_int(raw["slot"], "slot", 1, _UINT64_MAX),
        dtype=dtype,
        dims=dims,
        shape=shape,
        chunk_shape=chunk_shape,
        fill_value=None if fill is None else dtypes.decode_value(fill, dtype),
        attributes=attributes_from_dict(raw.get("attributes", {})),
        stats=None if stats is None else _stats_from_dict(stats, dtype),
    )


def manifest_from_dict(obj: Any) -> Manifest:
    """A :class:`Manifest` decoded and checked from the parsed v1 manifest object."""
    _need(isinstance(obj, dict) and obj.get("format") == "atlas", "format")
    version = obj.get("format_version")
    _need(isinstance(version, int) and not isinstance(version, bool) and version >= 1, "format_version")
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"store has format_version {version}; this ATLAS reads up to {FORMAT_VERSION}: upgrade atlas"
        )
    datasets = {}
    for name, raw in obj["datasets"].items():
        datasets[str(name)] = DatasetMeta(
            id=checked_int(raw["id"], "dataset id"),
            version=checked_int(raw["version"], "dataset version"),
            attributes=attributes_from_dict(raw.get("attributes", {})),
            arrays={str(a): array_from_dict(am) for a, am in raw["arrays"].items()},
        )
    slots = [am.slot for ds in datasets.values() for am in ds.arrays.values()]
    _need(len(slots) == len(set(slots)), "slot (two arrays share one)")
    families = {}
    for name, raw in obj["arrays"].items():
        segments = []
        for entry in raw["segments"]:
            _need(isinstance(entry, list) and len(entry) == 6, "segment entry")
            file = entry[0]
            _need(isinstance(file, str) and "/" not in file and file.endswith(".af"), "segment file name")
            # size, index offset, index length, index checksum (an XXH64), records
            nums = [
                checked_int(v, "segment entry", 0, _UINT64_MAX if k == 3 else _INT64_MAX)
                for k, v in enumerate(entry[1:])
            ]
            _need(nums[1] + nums[2] <= nums[0], "segment index range")
            segments.append(SegmentRef(file, *nums))
        dir_name = raw["dir"]
        _need(isinstance(dir_name, str) and "/" not in dir_name and dir_name not in ("", ".", ".."), "array dir")
        families[str(name)] = ArrayFamily(dir=dir_name, segments=segments)
    retired = []
    raw_retired = obj.get("retired", [])
    _need(isinstance(raw_retired, list), "retired")
    for entry in raw_retired:
        _need(isinstance(entry, list) and len(entry) == 3, "retired entry")
        r_dir, r_file = entry[0], entry[1]
        _need(isinstance(r_dir, str) and "/" not in r_dir and r_dir not in ("", ".", ".."), "retired dir")
        _need(isinstance(r_file, str) and "/" not in r_file and r_file.endswith(".af"), "retired file name")
        retired.append(RetiredSegment(r_dir, r_file, checked_int(entry[2], "retired time")))
    live = {f"{fam.dir}/{ref.file}" for fam in families.values() for ref in fam.segments}
    # A live segment listed as retired would be deleted by a later compaction.
    _need(not any(r.path in live for r in retired), "retired (lists a live segment)")
    codec = obj["codec"]
    _need(codec in ("zstd", "lz4", "none"), "codec")
    token = obj.get("write_token", "")
    _need(isinstance(token, str), "write_token")
    return Manifest(
        codec=codec,
        generation=checked_int(obj["generation"], "generation", 0, COUNTER_LIMITS["generation"]),
        write_token=token,
        next_slot=checked_int(obj["next_slot"], "next_slot", max(slots, default=0) + 1, COUNTER_LIMITS["next_slot"]),
        next_dataset_id=checked_int(obj["next_dataset_id"], "next_dataset_id", 1, COUNTER_LIMITS["next_dataset_id"]),
        datasets=datasets,
        families=families,
        format_version=version,
        retired=retired,
    )


def check_counter(name: str, value: int, where: str) -> None:
    """Refuse to take manifest counter ``name`` to ``value`` past what the reader accepts.

    Only a forged or damaged manifest starts close enough to a limit for this to
    happen; without the check the commit would succeed and every later open would
    refuse the manifest it wrote.

    Raises
    ------
    CorruptStoreError
        Naming the counter, its value and its limit.
    """
    limit = COUNTER_LIMITS[name]
    if value > limit:
        raise CorruptStoreError(
            f"{where}: manifest field {name} would be {value}, past its limit {limit}; nothing was written "
            "(a store whose counters are this close to their limits has a forged or damaged manifest)"
        )


def check_counters(m: Manifest, where: str) -> None:
    """:func:`check_counter` of every counter of a manifest about to be committed."""
    for name in COUNTER_LIMITS:
        check_counter(name, getattr(m, name), where)


def stats_is_finite(value: Any) -> bool:
    """True unless ``value`` is a float NaN (used to keep NaN out of min/max)."""
    return not (isinstance(value, float) and math.isnan(value))
