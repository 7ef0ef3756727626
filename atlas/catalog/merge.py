"""Merging catalogue parts, the merge policy, and the v1 -> v2 upgrade.

A commit appends one part; :func:`choose_merge` says when and which newest parts to
merge into one so that the number of parts stays bounded while every row is
rewritten only a logarithmic number of times (``docs/format-v2.md``, "Merge
policy").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from atlas.catalog.build import BLOCK_ROWS, write_part
from atlas.catalog.commit import PartRef, part_filename
from atlas.catalog.layout import PartBuilder
from atlas.catalog.merging import merge_columns
from atlas.catalog.part import PartReader, ReadRange
from atlas.errors import InvalidArgumentError
from atlas.metadata import DatasetMeta, Manifest, gc_paused

__all__ = [
    "FEW_PARTS", "FEW_PARTS_RATIO", "MAX_PARTS", "MERGE_RATIO", "catalog_from_manifest", "choose_merge", "merge_parts",
    "rows_with_parts",
]  # fmt: skip

#: Parts a commit object may list after a commit (the merge policy's hard cap).
MAX_PARTS = 8
#: An older part is merged with the newer ones unless it holds at least this many
#: times their rows, once a commit would otherwise leave more than ``FEW_PARTS``
#: parts.  4 rewrites fewer rows than 8 under any commit size for at most the same
#: part cap; 2 alone rewrites fewer still but keeps more parts for an open to read.
MERGE_RATIO = 4
#: While a commit leaves at most this many parts, the ratio is ``FEW_PARTS_RATIO``:
#: a part is rewritten when the newer ones reach half its rows, not a quarter, so a
#: large store built in big commits rewrites each row fewer times (5.2 against 7.0
#: times for a million rows committed 10 000 at a time) for one or two parts more.
FEW_PARTS = 4
FEW_PARTS_RATIO = 2


def choose_merge(
    rows: Sequence[int],
    max_parts: int = MAX_PARTS,
    ratio: int = MERGE_RATIO,
    few: int = FEW_PARTS,
    few_ratio: int = FEW_PARTS_RATIO,
) -> int | None:
    """Index of the first of the newest parts to merge into one, or None.

    Parameters
    ----------
    rows : sequence of int
        Row counts of the parts, oldest first (the commit's new part last).
    max_parts : int
        The most parts to leave.
    ratio : int
        Size ratio between neighbouring parts below which they are merged, when
        ``few_ratio`` would leave more than ``few`` parts.
    few, few_ratio : int
        Up to ``few`` parts left, neighbouring parts are merged below ratio ``few_ratio``.
        A caller that plans commits with a stricter policy than the commits' own
        (a larger ``ratio``) raises ``few_ratio`` too: otherwise, up to ``few``
        parts, it plans with the very ratio the commits use.

    Notes
    -----
    Leveled tiers: walking from the newest part towards the oldest, a part is
    merged with everything newer than it while it holds fewer than ``few_ratio``
    times their rows; when that leaves more than ``few`` parts, the walk is
    made again with ``ratio`` (which merges at least as far back).  The parts
    beyond the first ``few`` therefore grow by a factor of at least ``ratio`` from
    newest to oldest, so there are at most ``few + log_ratio(N / c)`` of them for
    ``N`` rows written in commits of ``c`` rows (while those fit under
    ``max_parts``), and a row is rewritten each time
    the tier it is in fills up: ``O(ratio * log_ratio(N / c))`` times in all, so a
    commit costs ``O(c * ratio * log_ratio N)`` rows amortised.  When the walk
    still leaves more than ``max_parts`` parts, it is made again with the
    smallest ratio that leaves at most ``max_parts``: coarser tiers that fit under
    the cap, so a commit stays logarithmic however many there are (the newest
    parts merged instead, one part would take every later commit and be
    rewritten whole each time).
    """
    n = len(rows)
    if n < 2:
        return None
    start = _walk(rows, few_ratio)
    if start + 1 > few:
        start = min(start, _walk(rows, ratio))
    if start + 1 > max_parts:
        # Over the cap, the finest tiers that fit under it: merging only the newest parts would
        # let one part take every later commit and be rewritten whole each time.
        start = min(start, _walk(rows, _fitting_ratio(rows, max_parts, ratio)))
    start = min(start, max_parts - 1)
    return start if start < n - 1 else None


def _fitting_ratio(rows: Sequence[int], max_parts: int, ratio: int) -> int:
    """The smallest ratio, at least ``ratio``, whose walk leaves at most ``max_parts`` parts."""
    acc = 0
    for i in range(len(rows) - 1, max(max_parts, 1) - 1, -1):
        acc += rows[i]
        # the walk takes part i - 1 into the run when rows[i - 1] < ratio * max(acc, 1)
        ratio = max(ratio, rows[i - 1] // max(acc, 1) + 1)
    return ratio


def _walk(rows: Sequence[int], ratio: int) -> int:
    """The first of the newest parts each of which holds fewer than ``ratio`` times the rows of those after it."""
    start = len(rows) - 1
    acc = rows[start]
    while start > 0 and rows[start - 1] < ratio * max(acc, 1):
        start -= 1
        acc += rows[start]
    return start


def merge_parts(
    parts: Sequence[PartRef],
    read_range: ReadRange,
    codec: str,
    generation: int,
    token: bytes,
    drop_tombstones: bool,
) -> tuple[str, list[bytes | np.ndarray], PartRef]:
    """One part equivalent to ``parts`` (oldest first): the newest row of each name.

    Parameters
    ----------
    drop_tombstones : bool
        True when ``parts`` start at the oldest part of the commit: a tombstone
        then hides nothing older and is left out.  Otherwise tombstones are kept,
        since they must still hide rows of the older parts.

    Returns
    -------
    (file name, buffers, PartRef)
        As :func:`~atlas.catalog.write_part`; the ref's generation range covers
        every merged part.

    Notes
    -----
    Column by column (:mod:`atlas.catalog.merging`): record bytes are copied from
    their checksum-verified blocks, not decoded, so a merge costs about as much
    as copying the rows.
    """
    if not parts:
        raise InvalidArgumentError("merge_parts needs at least one part")
    readers = [PartReader(ref, _LastRead(read_range)) for ref in parts]
    builder = PartBuilder(generation, token, codec)
    with gc_paused():  # many small objects (names, codes) made and dropped: no collection passes meanwhile
        rows, attributes, arrays = merge_columns(readers, not drop_tombstones, builder)
    buffers, size, index_offset, index_length, digest = builder.finish(rows, BLOCK_ROWS, attributes, arrays)
    low = min(p.min_generation for p in parts)
    high = max(generation, *(p.max_generation for p in parts))
    ref = PartRef(part_filename(generation, token), size, index_offset, index_length, digest, rows, low, high)
    return ref.file, buffers, ref


def rows_with_parts(
    parts: Sequence[PartRef],
    rows: Sequence[tuple[str, DatasetMeta | None]],
    read_range: ReadRange,
    drop_tombstones: bool,
) -> list[tuple[str, DatasetMeta | None]]:
    """``rows`` with the rows of the (older) ``parts`` they do not replace, decoded from their records.

    What :func:`merge_parts` of ``parts`` and a part of ``rows`` holds, as rows
    for :func:`~atlas.catalog.build.write_part`: the newest row of each name,
    tombstones left out when ``drop_tombstones``.  For a few rows only (every
    record is decoded and written again); a merge of parts of any size copies
    their columns instead.  Each record is checked against its part's key
    columns, as a merge checks it.
    """
    out: dict[str, DatasetMeta | None] = {}
    for ref in parts:  # oldest first: a newer row of a name replaces the older one
        reader = PartReader(ref, read_range)
        per, k, block = reader.index.block_rows, -1, None
        for row, name in enumerate(reader.names()):
            if row // per != k:
                k = row // per
                block = reader.block(k)
            out[name] = reader.record(row, block)
    out.update(rows)
    return [(name, ds) for name, ds in out.items() if ds is not None or not drop_tombstones]


class _LastRead:
    """``read_range`` that hands the bytes of its last range back when asked for them again.

    A merge copies a whole record block it has just read and verified as it is
    stored: on an object store that is one range request, not two.
    """

    def __init__(self, read_range: ReadRange) -> None:
        self._read_range = read_range
        self._last: tuple[str, int, int, Any] | None = None

    def __call__(self, path: str, offset: int, length: int) -> Any:
        last = self._last
        if last is not None and last[:3] == (path, offset, length):
            return last[3]
        data = self._read_range(path, offset, length)
        self._last = (path, offset, length, data)
        return data


def catalog_from_manifest(
    manifest: Manifest, codec: str, generation: int, token: bytes
) -> tuple[str, list[bytes | np.ndarray], PartRef]:
    """The single part of a v1 store's datasets (the v1 -> v2 upgrade).

    The part is written for the upgrading commit (``generation``, ``token``);
    dataset ids and versions are kept as they are.
    """
    return write_part(list(manifest.datasets.items()), codec, generation, token)
