"""Defects found by reviewing the staging fast paths and the interned catalogue schemas.

Each test shows one defect on real parts or a real store; the fix sits next to the
code it concerns.
"""

from __future__ import annotations

import gc
import secrets
import sys
import threading

import numpy as np
import pytest
from test_catalog_hostile import ROWS, Store, _column_no, forge

from atlas.catalog import Catalog, merge_parts, write_part
from atlas.catalog.encoding import encode_strings
from atlas.catalog.part import PartReader
from atlas.errors import CorruptStoreError
from atlas.metadata import gc_paused


@pytest.fixture
def part() -> tuple[Store, object]:
    store = Store()
    _, buffers, ref = write_part(ROWS, "zstd", 1, secrets.token_bytes(16))
    store.files[ref.path] = b"".join(bytes(b) for b in buffers)
    return store, ref


def test_merge_refuses_present_string_rows_with_an_empty_dictionary(part):
    """A forged string column whose rows are present but whose dictionary is empty:
    code 0 passes the ``max(len(dictionary), 1)`` bound, and the merge's remapping
    indexed the empty dictionary (an IndexError, not an AtlasError)."""
    store, ref = part
    i = _column_no(PartReader(ref, store.read_range), "platform")

    def empty_dictionary(raw):
        raw[f"a{i}.codes"] = np.zeros(len(ROWS), "<u4").tobytes()
        raw[f"a{i}.dict"] = encode_strings([])

    forged = forge(store, ref, columns=empty_dictionary)
    with pytest.raises(CorruptStoreError, match="out of range"):  # read as "" for every row before
        Catalog([forged], store.read_range).column("platform")
    for drop in (False, True):
        with pytest.raises(CorruptStoreError, match="out of range"):
            merge_parts([forged], store.read_range, "zstd", 2, bytes(16), drop)


def test_gc_paused_from_several_threads_leaves_the_collector_on():
    """Overlapping ``gc_paused`` blocks in two threads (two handles committing, or
    bulk-reading, at once): a thread that saw the collector already paused by the
    other must not leave it off for the rest of the process."""
    interval = sys.getswitchinterval()
    was_on = gc.isenabled()
    gc.enable()
    sys.setswitchinterval(1e-6)  # thread switches between any two bytecodes

    def work():
        for _ in range(5000):
            with gc_paused():
                pass

    try:
        for _ in range(10):
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert gc.isenabled(), "the cyclic garbage collector was left disabled"
    finally:
        sys.setswitchinterval(interval)
        if was_on:
            gc.enable()


def _without_schema_columns(raw: dict[str, bytes]) -> None:
    """What a merge by the writer before interned schemas makes of a part that has
    them: it ORs the groups' flags (flag 4 included) but writes neither column."""
    del raw["s0.schema"], raw["s0.schemas"]


def test_flag_4_without_the_schema_columns_reads_through_the_records(part):
    """Mixed versions on one store: a commit by the previous writer merges a part
    with interned schemas into one that keeps flag 4 and lacks the columns.  Bulk
    reads, verify and the next merge by this writer then failed with "column
    's0.schema' is missing"; the records hold everything, so they are read instead."""
    store, ref = part
    forged = forge(store, ref, columns=_without_schema_columns)
    flags = dict(PartReader(forged, store.read_range).stats_groups())["temp"][1]
    assert flags & 4  # the flag the old merge carried over
    cat = Catalog([forged], store.read_range)
    names = cat.names()
    metas, missing = cat.array_metas("temp", names)
    assert missing == []
    for name, meta in zip(names, metas):
        want = cat.get(name).arrays["temp"]
        assert (meta.slot, meta.dtype, meta.dims, meta.shape, meta.chunk_shape, meta.fill_value) == (
            want.slot, want.dtype, want.dims, want.shape, want.chunk_shape, want.fill_value)  # fmt: skip
    cat.verify()
    _, buffers, merged = merge_parts([forged], store.read_range, "zstd", 2, secrets.token_bytes(16), True)
    store.files[merged.path] = b"".join(bytes(b) for b in buffers)
    again = Catalog([merged], store.read_range)
    again.verify()
    assert [m.slot for m in again.array_metas("temp", names)[0]] == [m.slot for m in metas]


def test_one_schema_column_without_the_other_is_refused(part):
    store, ref = part
    forged = forge(store, ref, columns=lambda raw: raw.pop("s0.schemas"))
    with pytest.raises(CorruptStoreError, match="missing"):
        cat = Catalog([forged], store.read_range)
        cat.array_metas("temp", cat.names())
