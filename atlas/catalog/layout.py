"""The ``.cat`` part file: ``magic | header | column blobs | index | footer``.

Every column is one blob, compressed on its own with the store codec and
checksummed on its own (XXH64 in the index), so a reader range-reads and verifies
only the columns it uses.  The index is a msgpack map naming every column; the
footer repeats where the index is.  ``docs/format-v2.md`` is the normative layout.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from atlas.engine.codecs import RAW, checksum, decode_payload, encode_payload
from atlas.errors import ChecksumError, CorruptStoreError

__all__ = [
    "FOOTER_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "Column",
    "PartBuilder",
    "PartIndex",
    "StoredBlock",
    "parse_index",
    "read_footer",
]

MAGIC = b"\x89ATLCAT\n"
#: ``<HHIQ16s``: part version, flags, header size, generation, writer token (as in segments).
_HEADER = struct.Struct("<HHIQ16s")
HEADER_SIZE = len(MAGIC) + _HEADER.size  # 40
#: ``<QQQ8s``: index offset, index length, index checksum, end magic.
_FOOTER = struct.Struct("<QQQ8s")
FOOTER_SIZE = _FOOTER.size  # 32
END_MAGIC = b"ATLASCAT"
PART_VERSION = 1
#: Largest index accepted (it names columns, not rows, so it stays small).
MAX_INDEX_BYTES = 1 << 26
#: Largest decompressed column (one blosc2 buffer).
MAX_COLUMN_BYTES = (1 << 31) - 64
#: A variable-length column may decompress to at most this many times its stored
#: size (or 16 MiB, whichever is larger): bounds what a forged length can allocate.
MAX_RATIO = 4096
_RATIO_FLOOR = 16 << 20
#: blosc2 level of catalogue columns: zstd level 1 compresses the record blocks (most
#: of a part) 2.4 times faster than level 3 for output about 2% larger, and every
#: row is rewritten by several merges.
CLEVEL = 1
#: blosc2 block size of catalogue columns and record blocks.  A reader decodes a
#: column or record block whole, so the small blocks that let a read of a chunk
#: decode only what it touches buy nothing here: one block per record block (about
#: 250 KiB) compresses it about 40% faster and a third smaller than 16 KiB blocks.
BLOCKSIZE = 1 << 20
#: Columns of up to this many raw bytes are compressed once per part for equal bytes
#: (see ``PartBuilder._seen``); larger ones rarely repeat.
_MEMO_BYTES = 1 << 16
#: The raw bytes ``PartBuilder._seen`` keeps as keys, at most, per part: a part of
#: thousands of rows and many distinct columns would otherwise hold a copy of each
#: until it is laid out (a flush of small datasets needs far less).
_MEMO_BUDGET = 4 << 20


@dataclass(frozen=True)
class Column:
    """One column blob: ``[offset, stored length, raw length, XXH64 of stored bytes, codec id]``."""

    offset: int
    length: int
    raw_length: int
    checksum: int
    codec: int


@dataclass
class PartIndex:
    """The parsed index of a part."""

    rows: int
    block_rows: int
    columns: dict[str, Column]
    #: ``[key, kind]`` per attribute search column (``a{i}.*`` columns).
    attributes: list[tuple[str, str]]
    #: ``[array name, flags]`` per stats column group (``s{j}.*`` columns).
    arrays: list[tuple[str, int]]


@dataclass(frozen=True)
class StoredBlock:
    """A block already compressed by this writer (a merge copies it from a verified part).

    Compression is deterministic: the stored bytes are those compressing the raw
    block again with the same codec, level and block size would give, at no cost
    (a block of a part written with other settings is copied as it was stored,
    which any reader decodes alike).
    """

    stored: bytes | np.ndarray
    raw_length: int
    checksum: int
    codec: int


@dataclass
class PartBuilder:
    """Lays out one part: add columns, then :meth:`finish`."""

    generation: int
    token: bytes
    codec: str
    parts: list[bytes | np.ndarray] = field(default_factory=list)
    columns: dict[str, list[int]] = field(default_factory=dict)
    size: int = 0
    #: ``(stored, codec id, checksum)`` of the small columns added so far, by their raw
    #: bytes and item size: a part's attribute and stats columns repeat each other
    #: (every row has the key, one value for all), and compression is deterministic.
    _seen: dict[tuple[int, bytes], tuple[np.ndarray, int, int]] = field(default_factory=dict, repr=False)
    #: Raw bytes ``_seen`` may still take as keys (:data:`_MEMO_BUDGET` at first).
    _memo_left: int = field(default=_MEMO_BUDGET, repr=False)

    def __post_init__(self) -> None:
        head = MAGIC + _HEADER.pack(PART_VERSION, 0, HEADER_SIZE, self.generation, self.token)
        self.parts.append(head)
        self.size = len(head)

    def _compress(self, raw: np.ndarray | bytes, typesize: int) -> tuple[np.ndarray, int]:
        flat = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray)) else raw.view(np.uint8)
        flat = flat.reshape(-1)
        stored, cid = encode_payload(flat, typesize, self.codec, CLEVEL, BLOCKSIZE)
        if cid != RAW and flat.nbytes > max(_RATIO_FLOOR, MAX_RATIO * stored.nbytes):
            # So compressible (large blocks of one repeated value) that a reader would
            # take its size for a forged one (decode_column): blocks of 16 KiB bound
            # the ratio, as for chunks; stored raw should even they not.
            stored, cid = encode_payload(flat, typesize, self.codec, CLEVEL)
            if flat.nbytes > max(_RATIO_FLOOR, MAX_RATIO * stored.nbytes):
                stored, cid = flat, RAW
        return stored, cid

    def add(self, name: str, raw: np.ndarray | bytes, typesize: int = 1) -> None:
        """Append one column from its raw bytes (a numpy array is taken as its bytes)."""
        raw_len = raw.nbytes if isinstance(raw, np.ndarray) else len(raw)
        key = None
        if raw_len <= _MEMO_BYTES:
            key = (typesize, raw.tobytes() if isinstance(raw, np.ndarray) else bytes(raw))
        done = self._seen.get(key) if key is not None else None
        if done is None:
            stored, cid = self._compress(raw, typesize)
            done = (stored, cid, checksum(stored))
            if key is not None and raw_len <= self._memo_left:
                self._seen[key] = done
                self._memo_left -= raw_len
        stored, cid, digest = done
        self.columns[name] = [self.size, stored.nbytes, raw_len, digest, cid]
        self.parts.append(stored)
        self.size += stored.nbytes

    def add_blocks(self, name: str, blocks: Iterable[bytes | StoredBlock]) -> np.ndarray:
        """Append one column made of independently compressed blocks (raw, or already compressed).

        Returns the block table, ``(n, 5)`` uint64: offset in the column, stored
        length, raw length, XXH64 of the stored block, codec id.  The caller stores
        it as a column of its own; the blocks are verified through it, so the
        column's own entry carries checksum 0 and codec 0.
        """
        start, rows = self.size, []
        for block in blocks:  # consumed one at a time: only compressed blocks are kept
            if isinstance(block, StoredBlock):
                stored, raw_length, digest, cid = block.stored, block.raw_length, block.checksum, block.codec
            else:
                (stored, cid), raw_length = self._compress(block, 1), len(block)
                digest = checksum(stored)
            size = len(stored) if not isinstance(stored, np.ndarray) else stored.nbytes
            rows.append((self.size - start, size, raw_length, digest, cid))
            self.parts.append(stored)
            self.size += size
        self.columns[name] = [start, self.size - start, self.size - start, 0, 0]
        return np.array(rows, dtype="<u8").reshape(-1, 5)

    def finish(self, rows: int, block_rows: int, attributes: list, arrays: list) -> tuple[list, int, int, int, int]:
        """Append index and footer; return ``(parts, size, index_offset, index_length, index_checksum)``."""
        index = msgpack.packb(
            {"rows": rows, "block_rows": block_rows, "columns": self.columns,
             "attributes": attributes, "arrays": arrays},
            use_bin_type=True,
        )  # fmt: skip
        index_offset, digest = self.size, checksum(index)
        footer = _FOOTER.pack(index_offset, len(index), digest, END_MAGIC)
        self.parts += [index, footer]
        self.size += len(index) + len(footer)
        return self.parts, self.size, index_offset, len(index), digest


def read_footer(tail: bytes, where: str) -> tuple[int, int, int]:
    """Parse the 32-byte footer: ``(index_offset, index_length, index_checksum)``."""
    if len(tail) != FOOTER_SIZE:
        raise CorruptStoreError(f"{where}: catalogue part is truncated (no footer)")
    index_offset, index_length, digest, end = _FOOTER.unpack(tail)
    if end != END_MAGIC:
        raise CorruptStoreError(f"{where}: catalogue part footer magic is damaged")
    return index_offset, index_length, digest


def check_header(head: bytes, where: str) -> int:
    """Check magic, version and header size; return the part's generation."""
    if len(head) < HEADER_SIZE or head[: len(MAGIC)] != MAGIC:
        raise CorruptStoreError(f"{where}: not an ATLAS catalogue part (bad magic)")
    version, _flags, size, generation, _token = _HEADER.unpack(head[len(MAGIC) : HEADER_SIZE])
    if version != PART_VERSION or size != HEADER_SIZE:
        raise CorruptStoreError(f"{where}: unsupported catalogue part version {version}")
    return generation


def _is_uint(v: Any, top: int = 2**63 - 1) -> bool:
    return type(v) is int and 0 <= v <= top


def parse_index(raw: bytes, expected_checksum: int, index_offset: int, where: str) -> PartIndex:
    """Check an index read from ``where`` and return it.

    Every column range is checked to lie between the header and the index, so a
    forged index cannot point reads outside the part.
    """
    if len(raw) > MAX_INDEX_BYTES:
        raise CorruptStoreError(f"{where}: catalogue index of {len(raw)} bytes is over the limit")
    if checksum(raw) != expected_checksum:
        raise ChecksumError(f"{where}: catalogue index checksum mismatch")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0)
    except Exception as exc:
        raise CorruptStoreError(f"{where}: catalogue index cannot be decoded: {exc}") from None

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise CorruptStoreError(f"{where}: catalogue index field {what} is invalid")

    need(isinstance(obj, dict), "index")
    rows, block_rows = obj.get("rows"), obj.get("block_rows")
    need(_is_uint(rows, 2**40) and _is_uint(block_rows, 1 << 20) and block_rows >= 1, "rows/block_rows")
    raw_columns = obj.get("columns")
    need(isinstance(raw_columns, dict), "columns")
    columns = {}
    for name, entry in raw_columns.items():
        need(isinstance(name, str) and isinstance(entry, list) and len(entry) == 5, "column entry")
        need(all(_is_uint(v, 2**64 - 1) for v in entry), "column entry numbers")
        col = Column(*entry)
        need(col.offset >= HEADER_SIZE and col.offset + col.length <= index_offset, f"{name} (range)")
        need(col.codec in (0, 1, 2) and col.raw_length <= MAX_COLUMN_BYTES, f"{name} (codec/raw length)")
        columns[name] = col
    attributes, arrays = obj.get("attributes"), obj.get("arrays")
    need(isinstance(attributes, list) and isinstance(arrays, list), "attributes/arrays")
    for entry in attributes:
        need(isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry), "attributes")
    for entry in arrays:
        need(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str), "arrays")
        need(_is_uint(entry[1], 255), "arrays (flags)")
    return PartIndex(
        rows=rows,
        block_rows=block_rows,
        columns=columns,
        attributes=[(k, kind) for k, kind in attributes],
        arrays=[(a, flags) for a, flags in arrays],
    )


def decode_column(stored: bytes | np.ndarray, col: Column, raw_length: int | None, where: str) -> np.ndarray:
    """Verify and decompress one column blob into a flat uint8 array.

    ``raw_length`` is the exact decompressed size the reader expects (fixed-width
    columns), or None for variable-length columns, which are bounded by
    :data:`MAX_RATIO` instead.  Both are checked before anything is allocated.
    """
    buf = np.frombuffer(stored, dtype=np.uint8) if not isinstance(stored, np.ndarray) else stored
    if buf.nbytes != col.length:
        raise CorruptStoreError(f"{where}: column holds {buf.nbytes} bytes, the index says {col.length}")
    if checksum(buf) != col.checksum:
        raise ChecksumError(f"{where}: column checksum mismatch")
    if raw_length is not None and col.raw_length != raw_length:
        raise CorruptStoreError(f"{where}: column claims {col.raw_length} bytes, expected {raw_length}")
    if raw_length is None and col.raw_length > max(_RATIO_FLOOR, MAX_RATIO * col.length):
        raise CorruptStoreError(f"{where}: column claims {col.raw_length} bytes from {col.length} stored")
    return decode_payload(buf, col.codec, col.raw_length, where)
