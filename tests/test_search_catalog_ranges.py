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
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_search_catalog import _meta, catalog_in_memory
from v1_stores import to_v1

from atlas.catalog import Catalog, write_part
from atlas.errors import CorruptStoreError
from atlas.search import find_names, select
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
    rows = [[(name, _meta(_POOL.index(name), generation) if alive else None) for name, alive in part.items()]
            for generation, part in enumerate(parts, start=1)]  # fmt: skip
    cat, live = catalog_in_memory(rows)
    return cat, DictTable(live), live


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
            wanted = [reference.names[i] for i in select(reference, where)]
            assert table.names_at(rows) == wanted, where
            assert find_names(CatalogTable(cat), where) == wanted, where  # the search one part at a time

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


_STORE_NAMES = [f"p{i:04d}" for i in range(40)] + ["p", "p00", "p0010x", "pé", "q", "a"]


@st.composite
def _commit(draw: st.DrawFn) -> list[tuple[str, str, float]]:
    """One commit's changes: ("put", name, lat) creates or overwrites, ("del", name, 0) deletes."""
    if draw(st.booleans()):  # a batch of ascending numbered names
        start = draw(st.integers(0, 39))
        names = _STORE_NAMES[start : start + draw(st.integers(1, 12))]
    else:
        names = draw(st.lists(st.sampled_from(_STORE_NAMES), min_size=1, max_size=6, unique=True))
    return [(draw(st.sampled_from(["put", "put", "del"])), name, draw(st.integers(0, 9)) / 2) for name in names]


def _apply(store, model: dict[str, float], changes) -> None:
    for op, name, lat in changes:
        if op == "del":
            if name in model:
                store.delete_dataset(name)
                del model[name]
        else:
            ds = store.open_dataset(name) if name in model else store.create_dataset(name)
            ds.set_attribute("lat", lat)
            model[name] = lat


def _check(store, model: dict[str, float]) -> None:
    expected = sorted(model)
    assert store.list_datasets() == expected
    if expected:
        frame = store.catalog(["lat"])
        assert list(frame.index) == expected
        assert frame["lat"].tolist() == [model[n] for n in expected]
        assert store.find("lat > 2") == [n for n in expected if model[n] > 2]
    for name in _STORE_NAMES:
        assert store.dataset_exists(name) == (name in model), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    commits=st.lists(_commit(), min_size=1, max_size=6),
    pending=_commit(),
    first=st.sampled_from(["find", "list"]),
    v1=st.booleans(),
)
def test_a_store_of_random_commits_answers_as_the_model(commits, pending, first, v1):
    """Commits of batches and random names, overwrites and deletes (after the first,
    the store may be a format 1 store the next commit upgrades), then changes left
    pending over them: a writable handle (pending overlay) and a read-only one
    (committed only) answer as the model, whichever query comes first."""
    import tempfile

    import atlas

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/s"
        model: dict[str, float] = {}
        with atlas.Atlas.create(path) as store:
            _apply(store, model, commits[0])
            store.flush()
        if v1:
            to_v1(Path(path))
        with atlas.Atlas.open(path) as store:
            for changes in commits[1:]:
                _apply(store, model, changes)
                store.flush()
                if first == "find":  # the next snapshot reuses the parts read for this one
                    _check(store, model)
        committed = dict(model)
        with atlas.Atlas.open(path) as store:
            if first == "find":
                store.find("lat > 2")
            _apply(store, model, pending)
            _check(store, model)
            with atlas.Atlas.open(path, "r") as reader:
                if first == "find":
                    reader.find("lat > 2")
                _check(reader, committed)


@pytest.mark.parametrize(
    "damage", ["a row named as in the older part", "a row repeated", "invalid UTF-8 inside", "a NUL byte, unsorted"]
)
def test_a_forged_row_inside_a_part_of_a_disjoint_range_is_refused(damage):
    """The first and last names of the newer part leave its range disjoint from the
    older part's, but a row between them is not what that range says: every answer
    built from that part's names refuses it rather than answering from the range."""
    from test_catalog_hostile import Store, forge

    store = Store()
    refs = []
    for generation, prefix, count in ((1, "n", 50), (2, "t", 20)):
        rows = [(f"{prefix}{i:03d}", _meta(i, generation)) for i in range(count)]
        _, buffers, ref = write_part(rows, "zstd", generation, secrets.token_bytes(16))
        store.files[ref.path] = b"".join(bytes(b) for b in buffers)
        refs.append(ref)

    def edit(raw):
        blob = bytearray(raw["name"])
        row = {
            "a row named as in the older part": b"n010",
            "a row repeated": b"t004",
            "invalid UTF-8 inside": b"t0\xc3\x35",  # still sorted as bytes
            "a NUL byte, unsorted": b"t\x0099",
        }[damage]
        blob[5 * 5 : 5 * 5 + 4] = row  # row t005
        raw["name"] = bytes(blob)

    damaged = forge(store, refs[1], columns=edit)
    runs = [
        lambda cat: cat.names(),
        lambda cat: catalog_frame(CatalogTable(cat), ["lat"], None),
        lambda cat: CatalogTable(cat).names_at(select(CatalogTable(cat), "n >= 0")),
        lambda cat: find_names(CatalogTable(cat), "n >= 0"),
    ]
    if damage != "invalid UTF-8 inside":  # sorted bytes: counted as a part's rows are without decoding them
        runs.append(lambda cat: len(cat))
    for run in runs:
        with pytest.raises(CorruptStoreError):
            run(Catalog([refs[0], damaged], store.read_range))
