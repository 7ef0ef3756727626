"""A batch's names are refused exactly for the datasets that exist.

``Catalog.first_live`` (and ``Atlas.add_datasets``, which adds pending changes and
format 1 stores to it) is checked against a brute-force answer: the live names
of a model of the parts (the newest row of a name wins, a tombstone hides it), or
the names ``list_datasets`` returns.  Names are drawn so that parts hold names of
one byte length (the layout whose order is checked on the raw column), of mixed
lengths, non-ASCII and NUL-holding names, and names sorting between parts.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from v1_stores import to_v1

import atlas
from atlas import errors
from atlas.catalog import Catalog, write_part
from atlas.metadata import DatasetMeta

from .strategies import SPECIAL_NAMES, dataset_names

#: Names of one length (numbered names, the common layout) next to which the special
#: and random names sort before, between and after.
NUMBERED = tuple(f"d{i:02d}" for i in range(0, 40, 3))
#: Names of one UTF-8 length (four bytes) holding NUL bytes and non-ASCII characters.
FOUR_BYTES = ("\x00abc", "a\x00bc", "ab\x00d", "abcd", "abce", "é12", "é13", "温a", "温b", "😀", "😁")


def name_pools() -> st.SearchStrategy[list[str]]:
    """The few names one example draws from: numbered ones only, or others of one
    byte length (every part of one name length), or numbered, special and random
    ones mixed."""
    mixed = st.lists(st.one_of(st.sampled_from(SPECIAL_NAMES), dataset_names()), min_size=1, max_size=6)
    return st.one_of(
        st.just(list(NUMBERED)), st.just(list(FOUR_BYTES)), mixed.map(lambda extra: sorted({*NUMBERED[::2], *extra}))
    )


@st.composite
def catalogues(draw: st.DrawFn) -> tuple[list[str], list[dict[str, bool]]]:
    """A name pool and parts, oldest first: per part, its names to live (True) or tombstone."""
    pool = draw(name_pools())
    rows = st.dictionaries(st.sampled_from(pool), st.booleans(), max_size=len(pool))
    return pool, draw(st.lists(rows, max_size=5))


def brute_first(batch: list[str], live: set[str]) -> str | None:
    return next((x for x in batch if x in live), None)


class _Parts:
    """Part files in memory, served through ``read_range``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self.files[path][offset : offset + length]

    def write(self, rows: dict[str, bool], generation: int):
        table = [(name, DatasetMeta(id=i + 1, version=generation) if alive else None)
                 for i, (name, alive) in enumerate(rows.items())]  # fmt: skip
        _, buffers, ref = write_part(table, "zstd", generation, secrets.token_bytes(16))
        self.files[ref.path] = b"".join(bytes(b) for b in buffers)
        return ref


@given(catalogues(), st.data())
def test_first_live_is_the_first_name_with_a_live_newest_row(catalogue, data):
    pool, parts = catalogue
    store = _Parts()
    refs = [store.write(rows, generation) for generation, rows in enumerate(parts, 1)]
    newest: dict[str, bool] = {}
    for rows in parts:
        newest.update(rows)
    live = {name for name, alive in newest.items() if alive}
    cat = Catalog(refs, store.read_range)
    for name in pool:  # each alone: a part's first and last names are bounds of its range
        assert cat.first_live([name]) == brute_first([name], live), name
    names = st.one_of(st.sampled_from(pool), dataset_names())
    for _ in range(3):
        batch = data.draw(st.lists(names, max_size=8, unique=True), label="batch")
        assert cat.first_live(batch) == brute_first(batch, live)
        assert cat.first_live(batch) == next((x for x in batch if x in cat), None)
    assert sorted(cat.names()) == sorted(live)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[str], list[tuple[list[str], list[str]]], tuple[list[str], list[str]]]:
    """A name pool, commits (names created, then names deleted among those that exist
    by then, so re-creations and deletions of older parts' names are common) and the
    pending changes of the handle at the end."""
    pool = draw(name_pools())
    exists: set[str] = set()
    steps = []
    for _ in range(draw(st.integers(0, 4)) + 1):
        free = [x for x in pool if x not in exists]
        created = draw(st.lists(st.sampled_from(free), unique=True, max_size=5)) if free else []
        taken = sorted(exists | set(created))  # a name created by the same commit too
        deleted = draw(st.lists(st.sampled_from(taken), unique=True, max_size=3)) if taken else []
        exists = (exists | set(created)) - set(deleted)
        steps.append((created, deleted))
    return pool, steps[:-1], steps[-1]


def _apply(store: atlas.Atlas, created: list[str], deleted: list[str]) -> None:
    if created:
        store.add_datasets((name, {"v": (["n"], np.arange(2.0))}) for name in created)
    for name in deleted:
        store.delete_dataset(name)


@pytest.mark.parametrize("fmt", ["v2", "v1"])
@given(histories(), st.data())
def test_a_batch_is_refused_for_its_first_existing_name_and_stages_nothing(fmt, history, data):
    pool, commits, (created, deleted) = history
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s"
        with atlas.Atlas.create(path) as store:
            for step in commits:  # one catalogue part per commit
                _apply(store, *step)
                store.flush()
        if fmt == "v1":
            to_v1(path)
        with atlas.Atlas.open(path, mode="r+") as store:
            _apply(store, created, deleted)  # pending: a creation takes a name, a deletion frees one
            names = st.one_of(st.sampled_from(pool), st.sampled_from(pool), dataset_names())
            for _ in range(4):
                before = store.list_datasets()
                batch = data.draw(st.lists(names, min_size=1, max_size=6, unique=True), label="batch")
                if brute_first(batch, set(before)) is not None:
                    for order in (batch, batch[::-1]):  # the first taken name in either order
                        with pytest.raises(errors.DatasetExistsError) as caught:
                            store.add_datasets((name, {}) for name in order)
                        assert str(caught.value) == f"dataset {brute_first(order, set(before))!r} already exists"
                        assert store.list_datasets() == before
                else:
                    assert store.add_datasets((name, {}) for name in batch) == batch
                    assert store.list_datasets() == sorted({*before, *batch})
