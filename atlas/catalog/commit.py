"""The commit object of format v2: the one mutable file, small whatever the store size.

It keeps the v1 manifest's file names (``atlas.json``, ``atlas.msgpack.zst``, ...)
and every v1 top-level field except ``datasets``, which moves to immutable
catalogue parts listed in ``parts`` (oldest first).  A v1 reader meets
``format_version: 2`` and refuses the store instead of reading a stale manifest.
``docs/format-v2.md`` is the normative description.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import msgpack

from atlas import metadata
from atlas.errors import CorruptStoreError, FormatVersionError
from atlas.metadata import ArrayFamily, Manifest, RetiredSegment

__all__ = [
    "CATALOG_DIR",
    "FORMAT_VERSION_V2",
    "CommitObject",
    "PartRef",
    "decode_commit",
    "decode_metadata",
    "encode_commit",
    "part_filename",
]

#: The format version of a store whose datasets live in catalogue parts.
FORMAT_VERSION_V2 = 2
#: Directory (at the store root) of the catalogue part files.  No array name
#: encodes to it (docs/format.md §5 writes ``_`` only before two hex digits, and
#: ``_ca`` followed by a plain letter would be invalid UTF-8), so it cannot clash
#: with an array family.
CATALOG_DIR = "_catalog"
_PART_NAME = re.compile(r"^[0-9]{12}-[0-9a-f]{16}\.cat$")
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def part_filename(generation: int, token: bytes | str) -> str:
    """``{generation:012d}-{first 16 hex digits of token}.cat``."""
    hex_token = token.hex() if isinstance(token, bytes) else token
    return f"{generation:012d}-{hex_token[:16]}.cat"


@dataclass(frozen=True)
class PartRef:
    """Where a catalogue part is, how to find its index, and what it covers.

    ``index_offset``, ``index_length`` and ``index_checksum`` repeat the part's
    footer, so opening a part costs one range read.  ``min_generation`` and
    ``max_generation`` bound the generations of the commits whose rows it holds
    (a merged part covers several).
    """

    file: str
    size: int
    index_offset: int
    index_length: int
    index_checksum: int
    rows: int
    min_generation: int
    max_generation: int

    @property
    def path(self) -> str:
        """The part's path relative to the store root."""
        return f"{CATALOG_DIR}/{self.file}"


@dataclass
class CommitObject:
    """The committed state of a v2 store at one generation (datasets excluded)."""

    codec: str
    generation: int = 0
    write_token: str = ""
    next_slot: int = 1
    next_dataset_id: int = 1
    families: dict[str, ArrayFamily] = field(default_factory=dict)
    #: Segments retired by compactions and parts retired by merges (``dir`` ``catalog``),
    #: kept for the grace period, as in v1.
    retired: list[RetiredSegment] = field(default_factory=list)
    #: Catalogue parts, oldest first: for a dataset name the newest row wins.
    parts: list[PartRef] = field(default_factory=list)
    format_version: int = FORMAT_VERSION_V2


def _to_dict(c: CommitObject) -> dict[str, Any]:
    shell = Manifest(
        codec=c.codec, generation=c.generation, write_token=c.write_token, next_slot=c.next_slot,
        next_dataset_id=c.next_dataset_id, families=c.families, retired=c.retired,
    )  # fmt: skip
    base = metadata.manifest_to_dict(shell)
    out: dict[str, Any] = {"format": "atlas", "format_version": FORMAT_VERSION_V2}
    for key in ("generation", "write_token", "codec", "next_slot", "next_dataset_id", "arrays"):
        out[key] = base[key]
    if "retired" in base:
        out["retired"] = base["retired"]
    out["parts"] = [
        [p.file, p.size, p.index_offset, p.index_length, p.index_checksum, p.rows, p.min_generation, p.max_generation]
        for p in c.parts
    ]
    return out


def encode_commit(c: CommitObject, meta_format: str, compression: str) -> bytes:
    """Serialise a commit object (same formats and compressions as a v1 manifest)."""
    obj = _to_dict(c)
    if meta_format == "json":
        raw = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    else:
        raw = msgpack.packb(obj, use_bin_type=True)
    if compression == "none":
        return raw
    import blosc2

    codec = blosc2.Codec.ZSTD if compression == "zstd" else blosc2.Codec.LZ4
    return bytes(blosc2.compress2(raw, codec=codec, clevel=5, filter=blosc2.Filter.NOFILTER, typesize=1))


def decode_metadata(data: bytes, meta_format: str, compression: str, where: str) -> Manifest | CommitObject:
    """Decode the root metadata file of either format version.

    Returns a :class:`~atlas.metadata.Manifest` for a v1 store and a
    :class:`CommitObject` for a v2 store.

    Raises
    ------
    CorruptStoreError
        When the bytes do not decode or do not follow the format.
    FormatVersionError
        When the file was written by a format version newer than 2.
    """
    obj = _parse(data, meta_format, compression, where)
    version = obj.get("format_version") if isinstance(obj, dict) else None
    if version == 1:
        try:
            return metadata.manifest_from_dict(obj)
        except (FormatVersionError, CorruptStoreError):
            raise
        except Exception as exc:
            raise CorruptStoreError(f"manifest {where} does not follow the format: {exc!r}") from None
    return _from_obj(obj, where)


def decode_commit(data: bytes, meta_format: str, compression: str, where: str) -> CommitObject:
    """Decode a v2 commit object read from ``where`` (see :func:`decode_metadata`).

    Raises
    ------
    CorruptStoreError
        When the bytes do not decode, do not follow the format, or hold a v1 manifest.
    FormatVersionError
        When the file was written by a format version newer than 2.
    """
    return _from_obj(_parse(data, meta_format, compression, where), where)


def _parse(data: bytes, meta_format: str, compression: str, where: str) -> Any:
    if len(data) > metadata.MAX_MANIFEST_BYTES:
        raise CorruptStoreError(f"commit object {where} is {len(data)} bytes, over the limit")
    try:
        if compression != "none":
            metadata.check_blosc_sizes(data, where)
            import blosc2

            data = blosc2.decompress2(data)
        if meta_format == "json":
            return json.loads(bytes(data).decode("utf-8"))
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=0)
    except CorruptStoreError:
        raise
    except Exception as exc:  # every decoder failure is damage, whatever its type
        raise CorruptStoreError(f"commit object {where} cannot be decoded: {exc}") from None


def _need(cond: bool, what: str, where: str) -> None:
    if not cond:
        raise CorruptStoreError(f"commit object {where}: field {what} is invalid")


def _from_obj(obj: Any, where: str) -> CommitObject:
    _need(isinstance(obj, dict) and obj.get("format") == "atlas", "format", where)
    version = obj.get("format_version")
    _need(type(version) is int and version >= 1, "format_version", where)
    if version > FORMAT_VERSION_V2:
        raise FormatVersionError(
            f"store has format_version {version}; this ATLAS reads up to {FORMAT_VERSION_V2}: upgrade atlas"
        )
    _need(version == FORMAT_VERSION_V2, "format_version (a v1 manifest, not a commit object)", where)
    _need("datasets" not in obj, "datasets (a v2 commit object holds no datasets)", where)
    # The fields shared with v1 are checked by the v1 decoder, on a shell without datasets.
    shell = {k: obj.get(k) for k in ("generation", "write_token", "codec", "next_slot", "next_dataset_id")}
    shell.update(format="atlas", format_version=1, datasets={}, arrays=obj.get("arrays"))
    retired_parts: list[RetiredSegment] = []
    raw_retired: list[Any] = []
    if "retired" in obj:
        raw_retired = obj["retired"]
        _need(isinstance(raw_retired, list), "retired", where)
        # Parts retired by a merge sit in the catalogue directory; segments are checked as in v1.
        shell["retired"] = [e for e in raw_retired if not (isinstance(e, list) and e[:1] == [CATALOG_DIR])]
        for entry in raw_retired:
            if isinstance(entry, list) and entry[:1] == [CATALOG_DIR]:
                _need(len(entry) == 3 and isinstance(entry[1], str) and _PART_NAME.match(entry[1]) is not None,
                      "retired part entry", where)  # fmt: skip
                _need(type(entry[2]) is int and 0 <= entry[2] <= _INT64_MAX, "retired time", where)
                retired_parts.append(RetiredSegment(CATALOG_DIR, entry[1], entry[2]))
    try:
        _need(isinstance(obj.get("arrays"), dict), "arrays", where)
        m = metadata.manifest_from_dict(shell)
    except CorruptStoreError as exc:
        raise CorruptStoreError(f"commit object {where}: {exc}") from None
    except Exception as exc:
        raise CorruptStoreError(f"commit object {where} does not follow the format: {exc!r}") from None
    raw_parts = obj.get("parts")
    _need(isinstance(raw_parts, list), "parts", where)
    parts: list[PartRef] = []
    seen: set[str] = set()
    for entry in raw_parts:
        _need(isinstance(entry, list) and len(entry) == 8, "part entry", where)
        file = entry[0]
        _need(isinstance(file, str) and _PART_NAME.match(file) is not None, "part file name", where)
        _need(file not in seen, "parts (a file listed twice)", where)
        seen.add(file)
        nums = entry[1:]
        for k, v in enumerate(nums):
            top = _UINT64_MAX if k == 3 else _INT64_MAX
            _need(type(v) is int and 0 <= v <= top, "part entry numbers", where)
        size, index_offset, index_length, _digest, _rows, gmin, gmax = nums
        _need(index_offset + index_length <= size, "part index range", where)
        _need(gmin <= gmax <= m.generation, "part generations", where)
        parts.append(PartRef(file, *nums))
    # A live part listed as retired would be deleted by a later compaction.
    _need(not any(r.file in seen for r in retired_parts), "retired (lists a live part)", where)
    return CommitObject(
        codec=m.codec,
        generation=m.generation,
        write_token=m.write_token,
        next_slot=m.next_slot,
        next_dataset_id=m.next_dataset_id,
        families=m.families,
        retired=_in_order(raw_retired, m.retired, retired_parts),
        parts=parts,
    )


def _in_order(raw: list[Any], segments: list[RetiredSegment], parts: list[RetiredSegment]) -> list[RetiredSegment]:
    """Retired segments and parts merged back into the order of the file."""
    seg, part = iter(segments), iter(parts)
    return [next(part) if isinstance(e, list) and e[:1] == [CATALOG_DIR] else next(seg) for e in raw]
