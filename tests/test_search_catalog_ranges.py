"""Catalogues of several parts against a plain model of their live datasets.

Random sequences of parts (batches of ascending names, random names, names of one
length and of several, with a NUL byte or non-ASCII, overwrites, tombstones of
names an older part holds, empty parts and parts of tombstones only): every way
of laying the parts out (disjoint name ranges or merged names, by name keys or
decoded names, listing first or search first) gives the listing, the frame, the
search and the lookups the model gives.
"""

from __future__ import annotations

import secrets

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_search_catalog import _meta

from atlas.catalog import Catalog, write_part
from atlas.search import select
from atlas.search.catalog_table import CatalogTable
from atlas.search.frame import catalog_frame
from atlas.search.table import DictTable

# names of one length (numbered, as batches make them) and others around them
_FIXED = [f"{p}{i:03d}" for p in "bmt" for i in range(300)]
_OTHER = ["b", "b00", "b0000", "m005x", "m\x00", "m00\x00", "t01é", "té00", "z", "a"]
_POOL = _FIXED + _OTHER


@st.composite
def _part(draw: st.DrawFn) -> dict[str, bool]:
    """One part's names, each a tombstone (False) or a dataset (True)."""
    kind = draw(st.sampled_from(["batch", "fixed", "any", "empty"]))
    if kind == "empty":
        return {}
    if kind == "batch":  # a run of ascending numbered names of one prefix
        prefix = draw(st.sampled_from("bmt"))
        start = draw(st.integers(0, 299))
        stop = draw(st.integers(start + 1, min(300, start + draw(st.sampled_from([3, 12, 300])))))
        names = [f"{prefix}{i:03d}" for i in range(start, stop)]
    else:
        pool = _FIXED if kind == "fixed" else _POOL
        names = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=10, unique=True))
    tombstones = draw(st.sampled_from([0.0, 0.2, 1.0]))  # none, a few, only tombstones
    return {name: draw(st.floats(0, 1)) >= tombstones for name in names}


def _catalog(parts: list[dict[str, bool]]) -> tuple[Catalog, DictTable, dict]:
    files: dict[str, bytes] = {}
    refs, live = [], {}
    for generation, part in enumerate(parts, start=1):
        rows = [(name, _meta(_POOL.index(name), generation) if alive else None) for name, alive in part.items()]
        _, buffers, ref = write_part(rows, "zstd", generation, secrets.token_bytes(16))
        files[ref.path] = b"".join(bytes(b) for b in buffers)
        refs.append(ref)
        for name, meta in rows:
            if meta is None:
                live.pop(name, None)
            else:
                live[name] = meta
    return Catalog(refs, lambda path, offset, length: files[path][offset : offset + length]), DictTable(live), live


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(_part(), min_size=1, max_size=5), first=st.sampled_from(["list", "find", "frame", "lookup"]))
def test_every_layout_of_parts_answers_as_the_model(parts, first):
    """Whatever a fresh catalogue is asked first (it decides how the parts are
    laid out), every later answer is the model's."""
    cat, reference, live = _catalog(parts)
    expected = sorted(live)

    def listing():
        assert cat.names() == expected
        assert len(cat) == len(expected)

    def finding():
        for where in ("lat > 3", "n < 20", "n >= 0"):
            table = CatalogTable(cat)
            rows = select(table, where)
            assert table.names_at(rows) == [reference.names[i] for i in select(reference, where)], where

    def frame():
        table = CatalogTable(cat)
        got = catalog_frame(table, None, None)
        pd.testing.assert_frame_equal(got, catalog_frame(reference, None, None))

    def lookup():
        for name in _POOL:
            assert (name in cat) == (name in live), name
            if name in live:
                assert cat.get(name).version == live[name].version

    steps = {"list": listing, "find": finding, "frame": frame, "lookup": lookup}
    steps[first]()
    for step in steps.values():
        step()
