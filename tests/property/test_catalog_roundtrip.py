"""Catalogue parts round-trip any dataset set exactly, across parts and merges.

Every draw writes real part bytes (kept in a dict standing for the store) and reads
them back through the public ``read_range`` interface.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from atlas import attributes, dtypes
from atlas.catalog import Catalog, PartRef, merge_parts, write_part
from atlas.catalog.encoding import is_internal_key
from atlas.metadata import DatasetMeta

from .catalog_strategies import canonical, dataset_metas, dataset_sets


class Store:
    """Part files in memory, served through ``read_range``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self.files[path][offset : offset + length]

    def write(self, rows, generation: int, codec: str = "zstd") -> PartRef:
        file, buffers, ref = write_part(rows, codec, generation, secrets.token_bytes(16))
        self.files[ref.path] = b"".join(bytes(b) for b in buffers)
        assert len(self.files[ref.path]) == ref.size and file == ref.file
        return ref

    def merge(self, refs, generation: int, drop: bool) -> PartRef:
        _, buffers, ref = merge_parts(refs, self.read_range, "lz4", generation, secrets.token_bytes(16), drop)
        self.files[ref.path] = b"".join(bytes(b) for b in buffers)
        return ref


def _norm(x):
    """A comparable form of a column value, whatever the column dtype."""
    if isinstance(x, np.datetime64):
        return ("M", int(x.astype("datetime64[ns]").view("i8")))
    if isinstance(x, np.ndarray):
        return ("A", x.dtype.str, x.shape, x.tobytes() if x.dtype.kind != "O" else repr(x.tolist()))
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, list):
        return [_norm(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    return (type(x).__name__ if isinstance(x, (bool, str)) else "num", x)


def snapshot_of(cat: Catalog) -> dict[str, str | None]:
    return {name: canonical(ds) for name, ds in cat.items()}


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, np.ndarray):
        if not (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape):
            return False
        if a.dtype.kind == "O":
            return all(map(_same_value, a.ravel().tolist(), b.ravel().tolist()))
        return a.tobytes() == b.tobytes()  # bit for bit: NaN and NaT included
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same_value, a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))


@given(dataset_sets(max_size=10), st.sampled_from(("zstd", "lz4", "none")))
def test_write_part_then_get_returns_every_dataset_exactly(datasets, codec):
    store = Store()
    cat = Catalog([store.write(list(datasets.items()), 1, codec)], store.read_range)
    assert cat.names() == sorted(datasets)
    assert len(cat) == len(datasets)
    for name, ds in datasets.items():
        assert name in cat
        assert canonical(cat.get(name)) == canonical(ds)
        assert cat.get_by_id(ds.id)[0] == name
    assert snapshot_of(cat) == {n: canonical(d) for n, d in datasets.items()}
    cat.verify()


@given(dataset_sets(max_size=10))
def test_columns_are_aligned_to_names_and_hide_internal_keys(datasets):
    store = Store()
    cat = Catalog([store.write(list(datasets.items()), 1)], store.read_range)
    names = cat.names()
    user_keys = {k for d in datasets.values() for k in d.attributes if not is_internal_key(k)}
    assert set(cat.attribute_keys()) == user_keys
    for key in user_keys:
        values, present = cat.column(key)
        assert values.shape == present.shape == (len(names),)
        for i, name in enumerate(names):
            typed = datasets[name].attributes.get(key)
            assert present[i] == (typed is not None)
            if typed is None:
                continue
            got = values[i]
            if values.dtype.kind == "O":
                assert _same_value(got, attributes.to_python(typed)), (key, name, got, typed)
            elif typed["t"] == "timestamp_nanoseconds":
                assert int(got.view("i8")) == typed["v"]
            elif typed["t"] == "bool":
                assert bool(got) is typed["v"]
            elif dtypes.is_float(typed["t"]):
                assert _same_value(float(got), float(typed["v"]))
            else:
                assert int(got) == typed["v"]
    for key in {k for d in datasets.values() for k in d.attributes if is_internal_key(k)}:
        try:
            cat.column(key)
        except KeyError:
            pass
        else:
            raise AssertionError(f"internal key {key!r} has a column")


@given(dataset_sets(max_size=8))
def test_stats_columns_and_live_slots_match_the_records(datasets):
    store = Store()
    cat = Catalog([store.write(list(datasets.items()), 1)], store.read_range)
    names = cat.names()
    arrays = {a for d in datasets.values() for a in d.arrays}
    assert cat.array_names() == sorted(arrays)
    for array in arrays:
        expected_slots = sorted(d.arrays[array].slot for d in datasets.values() if array in d.arrays)
        assert cat.live_slots(array).tolist() == expected_slots
        cols = {f: cat.stats_column(array, f) for f in ("slot", "dtype", "row_count", "null_count", "min", "max",
                                                       "min_exact", "max_exact", "shape")}  # fmt: skip
        for i, name in enumerate(names):
            am = datasets[name].arrays.get(array)
            assert cols["slot"][1][i] == (am is not None)
            if am is None:
                continue
            assert cols["slot"][0][i] == am.slot and cols["dtype"][0][i] == am.dtype
            assert cols["shape"][0][i] == am.shape
            st_ = am.stats
            assert cols["row_count"][1][i] == (st_ is not None)
            if st_ is None:
                continue
            assert (cols["row_count"][0][i], cols["null_count"][0][i]) == (st_.row_count, st_.null_count)
            has = st_.minimum is not None
            assert cols["min_exact"][1][i] == has
            if has:
                assert _same_value(cols["min_exact"][0][i], st_.minimum)
                assert _same_value(cols["max_exact"][0][i], st_.maximum)
                if am.dtype != "string":
                    assert _same_value(float(cols["min"][0][i]), float(st_.minimum))


@st.composite
def commit_histories(draw):
    """Up to five commits, each creating, changing or deleting datasets of a small pool."""
    pool = ["a", "b", "温度", "é", "a\x00b", "z", "mm"]
    next_id = 1
    commits = []
    for generation in range(1, draw(st.integers(1, 5)) + 1):
        rows = []
        for name in draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True)):
            if draw(st.integers(0, 3)) == 0:
                rows.append((name, None))
            else:
                rows.append((name, draw(dataset_metas(next_id, 10 * next_id, version=generation))))
                next_id += 1
        commits.append(rows)
    return commits


def _model(commits) -> dict[str, DatasetMeta]:
    state: dict[str, DatasetMeta] = {}
    for rows in commits:
        for name, ds in rows:
            if ds is None:
                state.pop(name, None)
            else:
                state[name] = ds
    return state


@given(commit_histories(), st.data())
def test_newest_row_wins_tombstones_hide_and_merges_change_nothing(commits, data):
    store = Store()
    refs = [store.write(rows, g + 1) for g, rows in enumerate(commits)]
    expected = {n: canonical(d) for n, d in _model(commits).items()}
    cat = Catalog(refs, store.read_range)
    assert cat.names() == sorted(expected)
    assert snapshot_of(cat) == expected
    for name in ["a", "b", "温度", "é", "a\x00b", "z", "mm"]:
        assert (name in cat) == (name in expected)
    for ds in _model(commits).values():
        assert canonical(cat.get_by_id(ds.id)[1]) == canonical(ds)
    # merging any run of newest parts (tombstones kept) or all parts (tombstones dropped)
    start = data.draw(st.integers(0, len(refs) - 1))
    merged = store.merge(refs[start:], len(refs) + 1, drop=start == 0)
    assert merged.min_generation == refs[start].min_generation
    after = Catalog([*refs[:start], merged], store.read_range)
    assert snapshot_of(after) == expected
    assert after.names() == cat.names()
    if start == 0:
        assert merged.rows == len(expected)  # tombstones dropped at the bottom
    for key in cat.attribute_keys():
        v1, p1 = cat.column(key)
        v2, p2 = after.column(key)
        assert np.array_equal(p1, p2)
        # a key stored as a blob before the merge may be one typed column after it
        assert [_norm(v) for v in v1[p1]] == [_norm(v) for v in v2[p2]], key
