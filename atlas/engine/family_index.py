"""The merged chunk index of one array family: for each ``(slot, chunk)``, the newest record.

The records of all live segments of a family are merged into sorted columns, so a
lookup is a binary search; a commit that adds segments merges only their records
into the index it already has.
"""

from __future__ import annotations

import numpy as np

from atlas.engine.segment import RECORD_DTYPE

__all__ = ["FamilyIndex"]


class FamilyIndex:
    """The merged, deduplicated chunk records of a family's live segments.

    Columns are sorted by ``(slot, chunk)``; ``seg`` says which segment (position in
    the family's segment list) holds each winning record.
    """

    def __init__(self, tables: list[np.ndarray], base: FamilyIndex | None = None, first_seg: int = 0) -> None:
        """Merge ``tables`` (segments ``first_seg``, ``first_seg + 1``, ...) over ``base``, the
        index of the segments before them (their records lose to the new ones)."""
        if tables and all(t.dtype == RECORD_DTYPE for t in tables):
            # As bytes: concatenating structured arrays promotes their fields once per
            # table, which made a family of many small segments slow to index.
            raw = np.concatenate([np.ascontiguousarray(t).view(np.uint8).reshape(-1) for t in tables])
            table = raw.view(RECORD_DTYPE)
        elif tables:
            table = np.concatenate(tables)
        else:
            table = np.zeros(0, RECORD_DTYPE)
        lengths = np.fromiter((t.shape[0] for t in tables), np.int64, len(tables))
        seg = np.repeat(np.arange(first_seg, first_seg + len(tables), dtype=np.int32), lengths)
        if base is not None:
            table = np.concatenate([base.table, table])
            seg = np.concatenate([base.seg, seg])
        order = np.lexsort((seg, table["chunk"], table["slot"]))
        table, seg = table[order], seg[order]
        if table.shape[0] > 1:
            same_next = (table["slot"][:-1] == table["slot"][1:]) & (table["chunk"][:-1] == table["chunk"][1:])
            keep = np.append(~same_next, True)  # the last of each group is the newest
            table, seg = table[keep], seg[keep]
        self.table = table
        self.seg = seg
        self.slots = np.ascontiguousarray(table["slot"])
        self.chunks = np.ascontiguousarray(table["chunk"])
        #: Decoded small chunks read through :meth:`FamilyEngine.read`, by ``(slot, chunk)``.
        #: The index is replaced whenever the family's segments change, so the cache
        #: never outlives the records it was decoded from.
        self.decoded: dict[tuple[int, int], np.ndarray] = {}
        self.decoded_nbytes = 0

    def slot_range(self, slot: int) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the records of ``slot``."""
        s = np.uint64(slot)
        return int(np.searchsorted(self.slots, s, "left")), int(np.searchsorted(self.slots, s, "right"))

    def find(self, slot: int, chunk_ids: np.ndarray) -> np.ndarray:
        """Record positions of ``chunk_ids`` of ``slot`` (-1 where none is stored)."""
        lo, hi = self.slot_range(slot)
        chunks = self.chunks[lo:hi]
        ids = chunk_ids.astype(np.uint64)
        pos = np.searchsorted(chunks, ids)
        found = pos < chunks.shape[0]
        found[found] = chunks[pos[found]] == ids[found]
        return np.where(found, pos + lo, -1)

    def find_many(self, slots: np.ndarray, chunk_ids: np.ndarray) -> np.ndarray:
        """Record positions for every ``(slot, chunk)`` pair: shape ``(len(slots), len(chunk_ids))``."""
        out = np.full((slots.shape[0], chunk_ids.shape[0]), -1, np.int64)
        if self.slots.shape[0] == 0 or chunk_ids.shape[0] == 0:
            return out
        keys = self._keys()
        if keys is None:
            for i, slot in enumerate(slots):
                out[i] = self.find(int(slot), chunk_ids)
            return out
        wanted = (slots.astype(np.uint64)[:, None] << np.uint64(32)) | chunk_ids.astype(np.uint64)[None, :]
        flat = wanted.reshape(-1)
        pos = np.searchsorted(keys, flat)
        ok = pos < keys.shape[0]
        ok[ok] = keys[pos[ok]] == flat[ok]
        return np.where(ok, pos, -1).reshape(out.shape)

    def _keys(self) -> np.ndarray | None:
        """``slot << 32 | chunk`` per record (same order as the table), when both fit."""
        keys = getattr(self, "_packed", None)
        if keys is None:
            if self.slots.max() >= 1 << 31 or self.chunks.max() >= 1 << 32:
                return None
            keys = (self.slots << np.uint64(32)) | self.chunks
            self._packed = keys
        return keys
