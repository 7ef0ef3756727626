"""The ``.af`` segment file: ``magic | header | chunk payloads | chunk index | footer``.

A segment is written once and never changed.  Each flush writes one segment per
touched array name holding every chunk that flush wrote for any dataset.  The
manifest records where each segment's index is, so opening an array costs one
range read per segment; the footer repeats that location so a segment can also be
checked on its own (:meth:`atlas.Atlas.verify`).  ``docs/format.md`` is the normative layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from atlas.engine.codecs import checksum
from atlas.errors import ChecksumError, CorruptStoreError, DTypeError, InvalidArgumentError, ValueOverflowError
from atlas.metadata import SegmentRef

__all__ = [
    "FOOTER_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "RECORD_DTYPE",
    "SegmentWriter",
    "parse_index",
    "read_footer",
    "segment_name",
]

MAGIC = b"\x89ATLAS\r\n"
#: ``<HHIQ16s``: format version, flags, header size, generation, writer token.
_HEADER = struct.Struct("<HHIQ16s")
HEADER_SIZE = len(MAGIC) + _HEADER.size  # 40
#: Payloads start at this offset and each is aligned to it (typed views need it).
ALIGN = 64
#: ``<QQQ8s``: index offset, index length, index checksum, end magic.
_FOOTER = struct.Struct("<QQQ8s")
FOOTER_SIZE = _FOOTER.size  # 32
END_MAGIC = b"ATLASEND"
SEGMENT_VERSION = 1

#: Flag bit of a chunk record: the payload ends with a packed "written" mask.
FLAG_WRITTEN_MASK = 1

#: One record per stored chunk (80 bytes, little-endian).
RECORD_DTYPE = np.dtype(
    [
        ("slot", "<u8"),
        ("chunk", "<u8"),
        ("offset", "<u8"),
        ("nbytes", "<u8"),
        ("raw_nbytes", "<u8"),
        ("checksum", "<u8"),
        ("null_count", "<u8"),
        ("min", "<u8"),
        ("max", "<u8"),
        ("codec", "u1"),
        ("flags", "u1"),
        ("reserved", "V6"),
    ]
)


#: A record as ten little-endian 64-bit words (``codec``, ``flags`` and the reserved bytes are the last).
_WORDS = np.dtype(("<u8", 10))
assert _WORDS.itemsize == RECORD_DTYPE.itemsize


def _record_table(records: list[tuple]) -> np.ndarray:
    """The :data:`RECORD_DTYPE` table of records given as tuples of :meth:`SegmentWriter.add`'s fields.

    Built as plain integers (a structured array built from tuples costs several
    times more): nine words, then ``codec`` and ``flags``, joined into the last word
    once they are known to fit their byte each (as the structured array refused
    them otherwise, rather than let one spill into the next field).
    """
    fields = np.array(records, dtype="<u8").reshape(-1, 11)
    if (fields[:, 9:] > 0xFF).any():
        raise ValueOverflowError("a chunk record's codec and flags must each fit in one byte")
    words = np.empty((fields.shape[0], 10), dtype="<u8")
    words[:, :9] = fields[:, :9]
    np.bitwise_or(fields[:, 9], fields[:, 10] << np.uint64(8), out=words[:, 9])
    return words.reshape(-1).view(RECORD_DTYPE)


def segment_name(generation: int, token: bytes) -> str:
    """The file name of a segment written for ``generation`` by the writer ``token``."""
    return f"{generation:012d}-{token.hex()[:16]}.af"


#: The padding after a payload, by its length.
_ZEROS = tuple(b"\0" * n for n in range(ALIGN))


def _pad(n: int) -> int:
    return (-n) % ALIGN


@dataclass
class SegmentWriter:
    """Accumulates chunk payloads and records, then lays out one segment.

    Records are kept in the order their payloads were added (the layout of
    ``docs/format.md`` §7 has payloads in record order).

    Parameters
    ----------
    generation : int
        The manifest generation this segment is written for.
    token : bytes
        16 random bytes identifying the writer (also in the file name).
    """

    generation: int
    token: bytes
    parts: list[bytes | np.ndarray] = field(default_factory=list)
    #: Records added one by one since the last block (see :meth:`add_block`).
    records: list[tuple] = field(default_factory=list)
    size: int = 0
    #: The record table, set by :meth:`finish`.
    table: np.ndarray | None = None
    #: Record tables of earlier records, in payload order.
    _tables: list[np.ndarray] = field(default_factory=list)
    _count: int = 0

    def __post_init__(self) -> None:
        head = MAGIC + _HEADER.pack(SEGMENT_VERSION, 0, HEADER_SIZE, self.generation, self.token)
        self.parts.append(head + b"\0" * _pad(len(head)))
        self.size = len(self.parts[0])

    def add(
        self,
        slot: int,
        chunk: int,
        stored: np.ndarray,
        codec: int,
        raw_nbytes: int,
        null_count: int,
        min_bits: int,
        max_bits: int,
        flags: int,
        digest: int | None = None,
    ) -> None:
        """Append one chunk payload (``stored``, a flat uint8 array) and its record."""
        offset = self.size
        self.parts.append(stored)
        pad = _pad(stored.nbytes)
        if pad:
            self.parts.append(_ZEROS[pad])
        self.size += stored.nbytes + pad
        if digest is None:
            digest = checksum(stored)
        self.records.append(
            (slot, chunk, offset, stored.nbytes, raw_nbytes, digest, null_count, min_bits, max_bits, codec, flags)
        )
        self._count += 1

    def add_block(self, block: np.ndarray, nbytes: int, records: np.ndarray) -> None:
        """Append many equal-sized payloads at once: row ``i`` of ``block`` holds the ``i``-th.

        ``block`` is a C-contiguous uint8 matrix whose rows are ``nbytes`` of payload
        followed by zero bytes up to a multiple of :data:`ALIGN`; ``records`` (a
        :data:`RECORD_DTYPE` table, one row per payload) gets its ``offset`` and
        ``nbytes`` set here.
        """
        if records.dtype != RECORD_DTYPE:
            # The tables are joined as words (see finish): another layout would be misread.
            raise DTypeError(f"a block's records must be a table of the record dtype, not {records.dtype}")
        n, stride = block.shape
        if stride % ALIGN or n != records.shape[0] or nbytes > stride:
            raise InvalidArgumentError("a block of payloads must have one aligned row per record")
        if self.records:
            self._tables.append(_record_table(self.records))
            self.records = []
        records["offset"] = self.size + np.arange(n, dtype=np.uint64) * np.uint64(stride)
        records["nbytes"] = nbytes
        self._tables.append(records)
        self.parts.append(block.reshape(-1))
        self.size += n * stride
        self._count += n

    def __len__(self) -> int:
        return self._count

    def finish(self) -> tuple[list[bytes | np.ndarray], int, int, int, int]:
        """Append index and footer; return ``(parts, size, index_offset, index_length, index_checksum)``."""
        tables = [*self._tables, _record_table(self.records)] if self.records else self._tables
        if not tables:
            tables = [np.zeros(0, RECORD_DTYPE)]
        # Joined as plain words: concatenating structured arrays promotes their fields, table by table.
        table = tables[0]
        if len(tables) > 1:
            words = [np.ascontiguousarray(t).view(_WORDS) for t in tables]
            table = np.concatenate(words).reshape(-1).view(RECORD_DTYPE)
        self.table = table
        index = table.view(np.uint8).reshape(-1)
        index_offset = self.size
        digest = checksum(index)
        self.parts.append(index)
        footer = _FOOTER.pack(index_offset, index.nbytes, digest, END_MAGIC)
        self.parts.append(footer)
        self.size += index.nbytes + len(footer)
        return self.parts, self.size, index_offset, index.nbytes, digest

    def finish_ref(self) -> tuple[list[bytes | np.ndarray], SegmentRef]:
        """:meth:`finish`, as the file's parts and the manifest's reference to it."""
        parts, size, index_offset, index_length, digest = self.finish()
        name = segment_name(self.generation, self.token)
        return parts, SegmentRef(name, size, index_offset, index_length, digest, len(self))


def parse_index(raw: bytes | np.ndarray, expected_checksum: int, index_offset: int, where: str) -> np.ndarray:
    """Check a segment index read from ``where`` and return its record table.

    Every record's payload range is checked to lie before the index, so a forged
    index cannot point reads outside the file.
    """
    buf = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw
    if buf.nbytes % RECORD_DTYPE.itemsize:
        raise CorruptStoreError(f"{where}: index length {buf.nbytes} is not a whole number of records")
    if checksum(buf) != expected_checksum:
        raise ChecksumError(f"{where}: segment index checksum mismatch")
    table = buf.view(RECORD_DTYPE)
    ends = table["offset"].astype(np.uint64) + table["nbytes"].astype(np.uint64)
    if table.size and (np.any(table["offset"] < ALIGN) or np.any(ends > np.uint64(index_offset))):
        raise CorruptStoreError(f"{where}: segment index points outside the payload area")
    return table


def read_footer(tail: bytes, where: str) -> tuple[int, int, int]:
    """Parse the 32-byte footer: ``(index_offset, index_length, index_checksum)``."""
    if len(tail) != FOOTER_SIZE:
        raise CorruptStoreError(f"{where}: segment is truncated (no footer)")
    index_offset, index_length, digest, end = _FOOTER.unpack(tail)
    if end != END_MAGIC:
        raise CorruptStoreError(f"{where}: segment footer magic is damaged")
    return index_offset, index_length, digest


def check_header(head: bytes, where: str) -> int:
    """Check magic and version of a segment header; return its generation."""
    if len(head) < HEADER_SIZE or head[: len(MAGIC)] != MAGIC:
        raise CorruptStoreError(f"{where}: not an ATLAS segment (bad magic)")
    version, _flags, size, generation, _token = _HEADER.unpack(head[len(MAGIC) : HEADER_SIZE])
    if version != SEGMENT_VERSION or size != HEADER_SIZE:
        raise CorruptStoreError(f"{where}: unsupported segment version {version}")
    return generation
