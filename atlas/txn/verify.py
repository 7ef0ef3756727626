"""Checking every byte a store's commit object references, as strictly as a reader does."""

from __future__ import annotations

import errno

import numpy as np

from atlas.catalog.part import PartReader
from atlas.engine.chunks import decode_chunk
from atlas.engine.codecs import checksum
from atlas.engine.planner import chunk_extent, chunk_grid
from atlas.engine.segment import FOOTER_SIZE, HEADER_SIZE, check_header, parse_index, read_footer
from atlas.errors import AtlasError
from atlas.metadata import ArrayMeta, SegmentRef
from atlas.txn.snapshot import part_reader
from atlas.txn.state import WorkingState

__all__ = ["StoreSizes", "verify_store"]


def _owners(state: WorkingState, problems: list[str]) -> dict[str, dict[int, tuple[str, ArrayMeta]]]:
    """``{array name: {slot: (dataset name, meta)}}`` of every committed array (one pass).

    A slot owned by two datasets is damage a v1 reader refuses at open; a v2
    reader cannot see it without reading every row, so it is reported here.
    """
    out: dict[str, dict[int, tuple[str, ArrayMeta]]] = {}
    for ds_name, ds in state.snapshot.items():
        for name, meta in ds.arrays.items():
            owners = out.setdefault(name, {})
            other = owners.get(meta.slot)
            if other is not None:
                problems.append(
                    f"array {name!r}: slot {meta.slot} belongs to datasets {other[0]!r} and {ds_name!r} "
                    "(the catalogue is damaged: each would read the other's chunks)"
                )
            owners[meta.slot] = (ds_name, meta)
    return out


def _verify_parts(state: WorkingState, sizes: StoreSizes) -> list[str]:
    """Every catalogue part: its size, footer, header, index, columns and records."""
    base = state.base
    parts = getattr(base, "parts", ())
    if not parts:
        return []
    read = part_reader(state.backend, state.io, base)  # type: ignore[arg-type]
    problems = []
    for ref in parts:
        try:
            actual = sizes(ref.path.rsplit("/", 1)[0], ref.path)
            if actual is None:
                problems.append(f"{ref.path}: catalogue part is missing")
            elif actual != ref.size:
                problems.append(f"{ref.path}: catalogue part is {actual} bytes, the commit object says {ref.size}")
            else:
                PartReader(ref, read).verify()
        except AtlasError as exc:
            problems.append(str(exc))
    return problems


class StoreSizes:
    """Actual sizes of a store's files: one ``size`` query per file, or one listing per directory.

    A ``size`` query is a ``stat`` locally and a ``HEAD`` on object stores; a
    backend without the ``size`` verb is listed once per directory asked about.
    """

    def __init__(self, state: WorkingState) -> None:
        self.backend = state.backend
        self.size_of = getattr(state.backend, "size", None)
        self.listed: dict[str, dict[str, int]] = {}

    def __call__(self, directory: str, path: str) -> int | None:
        """The size of ``path``, or None when it does not exist."""
        if self.size_of is None:
            if directory not in self.listed:
                self.listed[directory] = {i.path: i.size for i in self.backend.list(directory)}
            return self.listed[directory].get(path)
        try:
            return int(self.size_of(path))
        except AtlasError as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:
                return None
            raise


def verify_store(state: WorkingState) -> list[str]:
    """Check sizes, headers, footers, indexes and every chunk of the committed state.

    Every check a reader makes is made here, so that an empty result means every
    array of every dataset reads: each segment's actual size against the manifest
    (a memory-mapped reader refuses any other), the header, the footer at the
    file's real end against the manifest's copy, the index checksum and record
    count, and every chunk's checksum; the chunks of live arrays are also decoded.

    Returns one message per problem, naming the file and the datasets it damages;
    an empty list means every referenced byte is intact.
    """
    sizes = StoreSizes(state)
    problems = _verify_parts(state, sizes)
    if problems:
        return problems  # the datasets cannot be read to check the segments against them
    try:
        owners = _owners(state, problems)
    except AtlasError as exc:
        return [str(exc)]
    for array_name, family in sorted(state.base.families.items()):
        array_owners = owners.get(array_name, {})
        # Newest first: a record that a newer segment supersedes is never read (after a
        # resize it may hold an edge chunk of the old extent), so only its checksum counts.
        newer: set[tuple[int, int]] = set()
        found = []
        for ref in reversed(family.segments):
            found.append(_verify_segment(state, sizes, array_name, family.dir, ref, array_owners, newer))
        for messages in reversed(found):
            problems += messages
    return problems


def _verify_segment(
    state: WorkingState,
    sizes: StoreSizes,
    array_name: str,
    directory: str,
    ref: SegmentRef,
    owners: dict[int, tuple[str, ArrayMeta]],
    newer: set[tuple[int, int]],
) -> list[str]:
    """Problems of one segment; adds its ``(slot, chunk)`` keys to ``newer`` (the keys of newer segments)."""
    path = f"{directory}/{ref.file}"
    hit = sorted({ds for ds, _ in owners.values()})
    context = f"(array {array_name!r}; datasets {hit})"
    try:
        actual = sizes(directory, path)
        if actual is None:
            return [f"{path}: segment is missing {context}"]
        if actual != ref.size:
            return [f"{path}: segment is {actual} bytes, the manifest says {ref.size} {context}"]
        head, tail = state.backend.get_ranges(path, [0, ref.size - FOOTER_SIZE], [HEADER_SIZE, FOOTER_SIZE])
        check_header(bytes(head), path)
        footer = read_footer(bytes(tail), path)
        problems = []
        if footer != (ref.index_offset, ref.index_length, ref.index_checksum):
            problems.append(f"{path}: footer does not match the manifest {context}")
        (raw,) = state.backend.get_ranges(path, [ref.index_offset], [ref.index_length])
        table = parse_index(np.frombuffer(raw, np.uint8), ref.index_checksum, ref.index_offset, path)
        if table.shape[0] != ref.records:
            return [*problems, f"{path}: index holds {table.shape[0]} records, expected {ref.records} {context}"]
        offsets = [int(o) for o in table["offset"]]
        payloads = state.backend.get_ranges(path, offsets, [int(n) for n in table["nbytes"]]) if offsets else []
    except AtlasError as exc:
        return [f"{exc} {context}"]
    keys = list(zip(table["slot"].tolist(), table["chunk"].tolist()))
    superseded = [k in newer for k in keys]
    newer.update(keys)
    for rec, payload, old in zip(table, payloads, superseded):
        stored = np.frombuffer(payload, np.uint8)
        owner = owners.get(int(rec["slot"]))
        where = f"{path}: chunk {int(rec['chunk'])} of " + (
            f"dataset {owner[0]!r} array {array_name!r}" if owner else "a deleted array (harmless until compacted)"
        )
        if checksum(stored) != int(rec["checksum"]):
            problems.append(f"{where} fails its checksum")
            continue
        if owner is None or old:
            continue
        meta = owner[1]
        cid = int(rec["chunk"])
        grid = chunk_grid(meta.shape, meta.chunk_shape)
        if cid >= int(np.prod(grid, dtype=np.int64)):
            continue  # outside the array: never read
        cells = int(np.prod(chunk_extent(cid, meta.shape, meta.chunk_shape), dtype=np.int64))
        try:
            decode_chunk(stored, rec, meta, cells, where, verify=False)
        except AtlasError as exc:
            problems.append(f"{exc}")
    return problems
