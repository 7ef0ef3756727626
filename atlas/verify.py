"""Checking every byte a store's manifest references."""

from __future__ import annotations

import numpy as np

from atlas.engine.codecs import checksum
from atlas.engine.segment import FOOTER_SIZE, HEADER_SIZE, check_header, parse_index, read_footer
from atlas.errors import AtlasError
from atlas.state import WorkingState

__all__ = ["verify_store"]


def _owners(state: WorkingState, array_name: str) -> dict[int, str]:
    return {
        meta.slot: ds_name
        for ds_name, ds in state.base.datasets.items()
        for name, meta in ds.arrays.items()
        if name == array_name
    }


def verify_store(state: WorkingState) -> list[str]:
    """Check headers, footers, indexes and every chunk checksum of the committed state.

    Returns one message per problem, naming the file and the datasets it damages;
    an empty list means every referenced byte is intact.
    """
    problems: list[str] = []
    for array_name, family in sorted(state.base.families.items()):
        owners = _owners(state, array_name)
        for ref in family.segments:
            path = f"{family.dir}/{ref.file}"
            try:
                head, tail = state.backend.get_ranges(path, [0, ref.size - FOOTER_SIZE], [HEADER_SIZE, FOOTER_SIZE])
                if len(tail) != FOOTER_SIZE:
                    problems.append(f"{path}: shorter than the {ref.size} bytes the manifest records")
                    continue
                check_header(bytes(head), path)
                footer = read_footer(bytes(tail), path)
                if footer != (ref.index_offset, ref.index_length, ref.index_checksum):
                    problems.append(f"{path}: footer does not match the manifest")
                (raw,) = state.backend.get_ranges(path, [ref.index_offset], [ref.index_length])
                table = parse_index(np.frombuffer(raw, np.uint8), ref.index_checksum, ref.index_offset, path)
            except AtlasError as exc:
                hit = sorted(set(owners.values()))
                problems.append(f"{exc} (array {array_name!r}; datasets {hit})")
                continue
            offsets = table["offset"].astype(np.int64)
            nbytes = table["nbytes"].astype(np.int64)
            starts = [int(o) for o in offsets]
            payloads = state.backend.get_ranges(path, starts, [int(n) for n in nbytes]) if starts else []
            for rec, payload in zip(table, payloads):
                digest = checksum(payload)
                if digest != int(rec["checksum"]):
                    owner = owners.get(int(rec["slot"]))
                    who = f"dataset {owner!r}" if owner else "a deleted array (harmless until compacted)"
                    problems.append(
                        f"{path}: chunk {int(rec['chunk'])} of {who} array {array_name!r} fails its checksum"
                    )
    return problems
