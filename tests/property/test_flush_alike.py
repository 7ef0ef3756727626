"""The fast paths of a flush of datasets made alike write what the general paths write.

Batches are drawn near "made alike" (one array of one name and schema, one
version, one attribute key order) with one or more rows made to differ in one
way, so that every condition of the fast paths is exercised on both sides of it.
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import atlas
from atlas import attributes
from atlas.catalog import build, write_part
from atlas.catalog.encoding import RecordEncoder, alike_arrays
from atlas.engine import staged
from atlas.metadata import ArrayMeta, DatasetMeta, Stats
from atlas.txn import commit

from .catalog_strategies import canonical, typed_attributes
from .strategies import attribute_cases, dataset_names

_TWEAKS = ("none", "version", "second array", "other name", "dtype", "shape", "chunk", "fill", "array attrs",
           "no stats", "nan", "inf", "none stats", "tombstone", "key order", "empty attrs", "no array")  # fmt: skip


def _array(slot: int, dtype: str, n: int, lo: float | None, hi: float | None) -> ArrayMeta:
    return ArrayMeta(slot=slot, dtype=dtype, dims=("depth",), shape=(n,), chunk_shape=(n,), fill_value=None,
                     stats=Stats(n, 0, lo, hi))  # fmt: skip


def _tweak(ds: DatasetMeta, how: str, draw: st.DrawFn) -> DatasetMeta | None:
    if not ds.arrays:  # an earlier "no array" tweak left nothing to change
        return ds
    am = next(iter(ds.arrays.values()))
    if how == "version":
        ds.version += 1
    elif how == "second array":
        # extremes of the array's own kind (float extremes of an integer array are no valid row)
        lo, hi = (am.stats.minimum, am.stats.maximum) if am.stats is not None else (None, None)
        ds.arrays["psal"] = _array(am.slot + 100_000, am.dtype, am.shape[0], lo, hi)
    elif how == "other name":
        ds.arrays = {"psal": am}
    elif how == "dtype":
        am.dtype = "int32" if am.dtype != "int32" else "float64"
        am.stats = Stats(am.stats.row_count, 0, 1, 2) if am.stats is not None else None
    elif how == "shape":
        am.shape = am.chunk_shape = (am.shape[0] + 1,)
    elif how == "chunk":
        am.chunk_shape = (1,)
    elif how == "fill":
        am.fill_value = draw(st.sampled_from([0.0, -0.0, math.nan]))
    elif how == "array attrs":
        am.attributes = {"units": attributes.normalize("m", None)}
    elif how == "no stats":
        am.stats = None
    elif how in ("nan", "inf") and not am.dtype.startswith("float"):
        pass  # integer stats are never NaN nor infinite
    elif how in ("nan", "inf", "none stats"):
        value = {"nan": math.nan, "inf": draw(st.sampled_from([math.inf, -math.inf])), "none stats": None}[how]
        count = am.stats.row_count if am.stats is not None else am.shape[0]
        am.stats = Stats(count, count, value, value)
    elif how == "tombstone":
        return None
    elif how == "key order":
        ds.attributes = dict(reversed(list(ds.attributes.items())))
    elif how == "empty attrs":
        ds.attributes = {}
    elif how == "no array":
        ds.arrays = {}
    return ds


@st.composite
def near_alike_rows(draw: st.DrawFn) -> list[tuple[str, DatasetMeta | None]]:
    """Sorted, distinct rows made alike but for the rows some tweaks change."""
    names = sorted(draw(st.lists(dataset_names(), min_size=1, max_size=40, unique=True)))
    dtype = draw(st.sampled_from(("float32", "float64", "int16", "uint64", "bool", "timestamp_nanoseconds")))
    n = draw(st.integers(1, 30))
    keys = draw(typed_attributes(max_size=6))
    version = draw(st.integers(1, 2**40))
    rows = []
    for i, name in enumerate(names):
        if dtype.startswith("float"):
            lo = draw(st.floats(allow_nan=False, allow_infinity=False, width=32 if dtype == "float32" else 64))
            lo, hi = lo, lo
        elif dtype == "bool":
            lo, hi = False, True
        else:
            lo = draw(st.integers(0, 1000))
            lo, hi = lo, lo + 7
        attrs = {k: attributes.normalize(draw(attribute_cases()).value, None) if draw(st.booleans()) else v
                 for k, v in keys.items()}  # fmt: skip
        ds = DatasetMeta(id=i + 1, version=version, attributes=attrs,
                         arrays={"temp": _array(10 * i, dtype, n, lo, hi)})  # fmt: skip
        rows.append([name, ds])
    for how in draw(st.lists(st.sampled_from(_TWEAKS), max_size=2)):
        k = draw(st.integers(0, len(rows) - 1))
        if rows[k][1] is not None:
            rows[k][1] = _tweak(rows[k][1], how, draw)
    return [(name, ds) for name, ds in rows]


def _written(rows, codec: str, float_stats: build.FloatStats | None = None) -> bytes:
    _, buffers, _ = write_part(rows, codec, 7, b"\x01" * 16, float_stats)
    return b"".join(bytes(b) for b in buffers)


@given(near_alike_rows(), st.sampled_from(("zstd", "lz4", "none")))
def test_part_of_rows_made_alike_has_the_bytes_of_the_general_path(rows, codec):
    fast = _written(copy.deepcopy(rows), codec)
    with mock.patch.object(RecordEncoder, "_alike", lambda *args: None), mock.patch.object(build, "_PREPACK_ROWS", -1):
        slow = _written(copy.deepcopy(rows), codec)
    assert fast == slow
    # and the records are those of encode, one by one
    metas = [ds for _, ds in rows]
    assert RecordEncoder().encode_alike(metas) == list(map(RecordEncoder().encode, metas))


@given(near_alike_rows(), st.integers(1, 9))
def test_part_of_many_blocks_has_the_bytes_of_the_general_path(rows, block_rows):
    # The part writer tells rows made alike once for the whole part and hands each
    # block its slice of that answer: blocks after the first, and blocks holding
    # the row that differs, must still be encoded as the general path does.
    with mock.patch.object(build, "BLOCK_ROWS", block_rows):
        fast = _written(copy.deepcopy(rows), "none")
        with mock.patch.object(RecordEncoder, "_alike", lambda *args: None), \
                mock.patch.object(build, "_PREPACK_ROWS", -1):  # fmt: skip
            slow = _written(copy.deepcopy(rows), "none")
    assert fast == slow


def _entries(draw: st.DrawFn) -> list[tuple[str, dict, dict]]:
    names = draw(st.lists(dataset_names(), min_size=1, max_size=12, unique=True))
    dtype = draw(st.sampled_from((np.float32, np.float64, np.int32)))
    size = draw(st.integers(1, 6))
    keys = draw(st.lists(st.sampled_from(("units", "温度", "a#b", "lat", "x/y")), max_size=3, unique=True))
    special = [math.nan, math.inf, -math.inf, -0.0] if dtype is not np.int32 else [0]
    out = []
    for name in names:
        values = np.array(draw(st.lists(st.sampled_from([*special, 1.5, -2.0, 3]), min_size=size, max_size=size)))
        attrs = {k: draw(attribute_cases()).value for k in keys}
        out.append((name, {"temp": (["depth"], values.astype(dtype))}, attrs))
    return out


@st.composite
def flush_plans(draw: st.DrawFn) -> tuple[list, list, list[str], list, bool]:
    """(datasets committed first, batch added next, names deleted before the batch,
    datasets of the batch deleted and added again, a second array)."""
    first = _entries(draw)
    batch = _entries(draw)
    deleted = draw(st.lists(st.sampled_from([n for n, _, _ in first]), unique=True))
    # a batch name is new or re-created after its delete in this session
    taken = {n for n, _, _ in first} - set(deleted)
    batch = [(n if n not in taken else n + "-new", *rest) for n, *rest in batch]
    redo = draw(st.lists(st.sampled_from(batch), unique_by=lambda e: e[0]))
    return first, batch, deleted, redo, draw(st.booleans())


def _store_answers(plan, fast: bool) -> dict:
    first, batch, deleted, redo, second = plan
    patches = [] if fast else [
        mock.patch.object(commit, "_created_alike", lambda *args: None),
        mock.patch.object(staged, "staged_alike", lambda *args: None),
        mock.patch.object(RecordEncoder, "_alike", lambda *args: None),
        mock.patch.object(build, "_PREPACK_ROWS", -1),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, contextlib_all(patches):
        path = Path(tmp) / "s"
        with atlas.Atlas.create(path) as store:
            store.add_datasets(first)
            store.flush()
            for name in deleted:
                store.delete_dataset(name)
            store.add_datasets(batch)
            for name, *_ in redo:
                store.delete_dataset(name)
            if redo:  # created, deleted and created again in one session
                store.add_datasets(redo)
            if second:
                ds = store.open_dataset(batch[0][0])
                ds.define_array("psal", "float64", ["n"], [2])
                ds.write_array("psal", [0], np.array([1.0, math.nan]))
        with atlas.Atlas.open(path) as again:
            names = again.list_datasets()
            snapshot = again._st.snapshot
            return {
                "names": names,
                "rows": {n: canonical(snapshot.get(n)) for n in names},
                "arrays": {n: again.open_dataset(n).read_array("temp").tobytes() for n in names},
            }


class contextlib_all:
    """Enter every context manager of a list (exited in reverse order)."""

    def __init__(self, managers: list) -> None:
        self.managers = managers

    def __enter__(self) -> None:
        for m in self.managers:
            m.__enter__()

    def __exit__(self, *exc) -> None:
        for m in reversed(self.managers):
            m.__exit__(*exc)


@given(flush_plans())
def test_flush_of_a_batch_made_alike_commits_what_the_general_path_does(plan):
    fast = _store_answers(plan, True)
    slow = _store_answers(plan, False)
    # ids and slots are given in one order on both sides; the versions too
    assert fast == slow


_FINITE = [0.0, 1.5, -2.25, 3e38, 7.0]
_SPECIAL = [-0.0, math.inf, -math.inf, math.nan]


@st.composite
def float_batches(draw: st.DrawFn) -> list[tuple[str, dict, dict]]:
    """A batch of one float array per dataset, inserted in any name order: rows made
    alike, a few of them with special cells (all NaN, infinite, ±0 mixed) or of
    another dtype or shape among them."""
    names = draw(st.lists(dataset_names(), min_size=1, max_size=40, unique=True))
    dtype = draw(st.sampled_from((np.float32, np.float64)))
    size = draw(st.integers(1, 5))
    special = set(draw(st.lists(st.integers(0, len(names) - 1), max_size=2)))
    odd = set(draw(st.lists(st.integers(0, len(names) - 1), max_size=2)))
    out = []
    for i, name in enumerate(names):
        cells = _FINITE + _SPECIAL if i in special else _FINITE
        values = np.array(draw(st.lists(st.sampled_from(cells), min_size=size, max_size=size)), dtype=dtype)
        if i in odd:
            values = draw(st.sampled_from([np.arange(size, dtype=np.int32), values[:-1], np.append(values, 1.0)]))
        out.append((name, {"temp": (["depth"], values)}, {"i": i}))
    return out


def _part_and_segment_bytes(entries: list, hint: bool) -> list[bytes]:
    patches = [mock.patch.object(commit, "write_token", lambda: b"\x02" * 16)]
    if not hint:  # the general path: rows copied one by one, every column taken from them
        patches.append(mock.patch.object(commit, "_created_alike", lambda *args: None))
    with tempfile.TemporaryDirectory() as tmp, contextlib_all(patches):
        path = Path(tmp) / "s"
        with atlas.Atlas.create(path) as store:
            store.add_datasets(entries)
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".cat", ".af"))
        return [(f.relative_to(path).as_posix(), f.read_bytes()) for f in files]


@given(float_batches())
def test_part_written_with_the_stats_a_commit_hands_over_has_the_bytes_of_the_general_path(entries):
    # What a commit of a batch made alike hands to write_part with its rows (FloatStats:
    # the stats of the rows' arrays, not taken from every row again).
    assert _part_and_segment_bytes(entries, True) == _part_and_segment_bytes(entries, False)


def _handed_over(rows: list) -> build.FloatStats | None:
    """What the commit hands over with ``rows`` made alike of a float dtype: the stats of
    their arrays as columns (what :func:`commit._float_stats` takes from the stacked chunks)."""
    alike = alike_arrays([ds for _, ds in rows])
    if alike is None or not alike[2][0].dtype.startswith("float"):
        return None
    stats = [am.stats for am in alike[2]]
    if any(s is None for s in stats) or len({s.row_count for s in stats}) != 1:
        return None
    ext = np.array([s.minimum is not None and s.maximum is not None for s in stats])
    return build.FloatStats(tuple(alike[2]), stats[0].row_count, np.array([s.null_count for s in stats], np.int64),
                            np.array([s.minimum if e else 0.0 for s, e in zip(stats, ext)], dtype=np.float64),
                            np.array([s.maximum if e else 0.0 for s, e in zip(stats, ext)], dtype=np.float64),
                            ext)  # fmt: skip


_CHANGES = ("replace", "append", "insert", "delete", "pop", "reverse", "sort", "extend", "slice assign", "copy",
            "restat", "retype")  # fmt: skip


@given(near_alike_rows(), near_alike_rows(), st.lists(st.sampled_from(_CHANGES), min_size=1, max_size=3), st.data())
def test_rows_handed_over_then_changed_in_place_write_the_part_of_their_rows(rows, others, changes, data):
    # What the commit knows of its rows (FloatStats) must not outlive a change of them:
    # a changed list, written with the stats handed over with it before the change,
    # writes the part of the rows it holds.
    rows = copy.deepcopy(rows)
    handed = _handed_over(rows)
    other = [(name + "~", ds) for name, ds in copy.deepcopy(others)]  # names after those of rows
    for how in changes:
        k = data.draw(st.integers(0, max(len(rows) - 1, 0)))
        if how == "replace" and rows:
            rows[k] = (rows[k][0], other[0][1])
        elif how == "append":
            rows.append(other[0])
        elif how == "insert":
            rows.insert(k, other[0])
        elif how == "delete" and rows:
            del rows[k]
        elif how == "pop" and rows:
            rows.pop(k)
        elif how == "reverse":
            rows.reverse()
        elif how == "sort":
            rows.sort(key=lambda row: row[0], reverse=True)
        elif how == "extend":
            rows += other[1:]
        elif how == "slice assign":
            rows[k:] = other[:1]
        elif how == "copy":
            rows = copy.copy(rows)
        elif how in ("restat", "retype") and rows and rows[k][1] is not None and rows[k][1].arrays:
            # the row's own array object changed in place: new stats, perhaps a new dtype
            am = next(iter(rows[k][1].arrays.values()))
            if how == "retype":
                am.dtype = "int32" if am.dtype != "int32" else "float64"
            count, old = (am.stats.row_count if am.stats is not None else am.shape[0]), am.stats
            if how == "retype":
                am.stats = Stats(count, 0, -3, 11)
            elif am.dtype.startswith("float"):
                am.stats = Stats(count, 1, -7.5, 9.25)
            else:  # extremes of the array's own kind
                lo, hi = (old.minimum, old.maximum) if old is not None else (None, None)
                am.stats = Stats(count, 1 if lo is not None else count, lo, hi)
        other = other[1:] or other
    plain = list(rows)
    names = [name for name, _ in plain]
    if not plain or len(set(names)) != len(names):
        return  # no part: a part holds at least one row, each name once
    assert _written(rows, "none", handed) == _written(copy.deepcopy(plain), "none")


def test_stats_handed_over_then_replaced_on_the_very_arrays_are_not_written():
    # The rows' arrays are the objects the stats were taken of, but one of them got
    # other stats since (and another one another dtype): the part holds what the rows hold.
    rows = [(f"d{i}", DatasetMeta(id=i + 1, version=3, attributes={}, arrays={"a": _array(i, "float64", 4, 0.0, 1.0)}))
            for i in range(5)]  # fmt: skip
    handed = _handed_over(rows)
    assert handed is not None and _written(rows, "none", handed) == _written(copy.deepcopy(rows), "none")
    rows[2][1].arrays["a"].stats = Stats(4, 1, -7.5, 9.25)
    assert _written(rows, "none", handed) == _written(copy.deepcopy(rows), "none")
    retyped = rows[4][1].arrays["a"]
    retyped.dtype, retyped.stats = "int32", Stats(4, 0, -3, 11)
    assert _written(rows, "none", handed) == _written(copy.deepcopy(rows), "none")


def test_stats_handed_over_of_arrays_whose_dtype_changed_since_are_not_written():
    # The very arrays, holding the very Stats objects, but of an integer dtype now: their
    # stats are written as integer stats (exact extremes), as the rows hold them.
    rows = [(f"d{i}", DatasetMeta(id=i + 1, version=3, attributes={}, arrays={"a": _array(i, "float64", 4, 0, i)}))
            for i in range(5)]  # fmt: skip
    handed = _handed_over(rows)
    for _, ds in rows:
        ds.arrays["a"].dtype = "int32"
    assert _written(rows, "none", handed) == _written(copy.deepcopy(rows), "none")


def test_rows_handed_over_without_their_alike_arrays_take_no_float_stats():
    # Rows of two float arrays each: no rows made alike, so stats handed over for
    # one array name cannot be the stats of either; the rows' own stats are written.
    def ds(i: int) -> DatasetMeta:
        arrays = {name: _array(10 * i + j, "float64", 4, float(i), i + 1.0) for j, name in enumerate(("a", "b"))}
        return DatasetMeta(id=i + 1, version=3, attributes={}, arrays=arrays)

    rows = [(f"d{i}", ds(i)) for i in range(5)]
    n = len(rows)
    handed = build.FloatStats(tuple(d.arrays["a"] for _, d in rows), 4, np.zeros(n, np.int64), np.full(n, -5.0),
                              np.full(n, 5.0), np.ones(n, dtype=bool))  # fmt: skip
    assert _written(rows, "none", handed) == _written(rows, "none")


_KINDS = {
    np.float32: [0.0, 1.5, -2.25, 3e38, math.nan, math.inf],
    np.float64: [0.0, 1.5, -2.25, 1e300, math.nan, -math.inf],
    np.int16: [0, 1, -7, 32767, -32768],
    np.uint8: [0, 1, 255],
    np.bool_: [False, True],
    np.dtype("datetime64[ns]"): [0, 1, -(2**63), 2**62],
}


@st.composite
def batches_with_fill_values(draw: st.DrawFn) -> list[tuple[str, dict, dict]]:
    """A batch made alike of any dtype, every array with one fill value (some cells
    equal to it) or none, of cells, no cell (empty) or rank 0; maybe a few rows
    without the fill value, maybe float cells of -0.0."""
    # at least VECTOR_STATS_MIN rows, so that the chunks are stacked; floats most often
    names = draw(st.lists(dataset_names(), min_size=staged.VECTOR_STATS_MIN, max_size=30, unique=True))
    kind = draw(st.sampled_from([np.float32, np.float64, *_KINDS]))
    floats = kind in (np.float32, np.float64)
    cells = _KINDS[kind] + ([-0.0] if floats and draw(st.booleans()) else [])
    shape = draw(st.sampled_from([(), (0,), (1,), (3,), (2, 2)]))
    fill = draw(st.sampled_from([None, *cells[:3], *([math.nan, -0.0] if floats else [])]))
    odd = set(draw(st.lists(st.integers(0, len(names) - 1), max_size=2))) if draw(st.booleans()) else set()
    out = []
    for i, name in enumerate(names):
        size = math.prod(shape)
        values = np.array(draw(st.lists(st.sampled_from(cells), min_size=size, max_size=size)))
        values = values.astype(np.int64).view(kind) if kind == np.dtype("datetime64[ns]") else values.astype(kind)
        values = values.reshape(shape)
        dims = ["x", "y"][: len(shape)]
        spec = (dims, values) if fill is None or i in odd else (dims, values, fill)
        out.append((name, {"temp": spec}, {}))
    return out


@given(batches_with_fill_values())
def test_batch_with_fill_values_empty_or_scalar_arrays_has_the_bytes_of_the_general_path(entries):
    assert _part_and_segment_bytes(entries, True) == _part_and_segment_bytes(entries, False)
