"""Searching a format v2 catalogue: the same answers as the datasets themselves give.

The catalogue side reads columns as stored (string attributes dictionary-coded,
the columns of a part whose rows all live without a gather, names decoded only
for the rows a search returns); :class:`~atlas.search.table.DictTable` over the
same live datasets is the reference, for one part, one part with tombstones and
several parts where newer rows replace and delete older ones.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from v1_stores import to_v1

import atlas
from atlas.catalog import Catalog, write_part
from atlas.catalog.encoding import decode_strings, encode_strings
from atlas.errors import CorruptStoreError, QueryTypeError, UnknownColumnError
from atlas.metadata import ArrayMeta, DatasetMeta, Stats
from atlas.search import select, select_rows
from atlas.search.catalog_table import CatalogTable
from atlas.search.frame import catalog_frame
from atlas.search.overlay import OverlayTable
from atlas.search.table import DictTable


def _meta(i: int, generation: int) -> DatasetMeta:
    attrs: dict = {"lat": {"t": "float64", "v": (i * 7 % 23) - 5.5}, "n": {"t": "int64", "v": i * generation}}
    if i % 5:
        platforms = ["buoy-1", "buoy-2", "glider é", "", "ship"]
        attrs["platform"] = {"t": "string", "v": platforms[i % 5 - 1 + generation % 2]}
    if i % 3 == 0:
        attrs["kind"] = {"t": "string", "v": f"k{i % 4}"} if generation == 1 else {"t": "float64", "v": i / 2}
    if generation == 1 and i % 7 == 0:
        attrs["old"] = {"t": "string", "v": "only in rows a newer part replaces"}
    arrays = {}
    if i % 4:
        low = float(i % 11) - 3.0
        stats = Stats(4, 1, low, low + i % 5) if i % 6 else Stats(4, 4, None, None)
        arrays["temp"] = ArrayMeta(slot=i + 1, dtype="float32", dims=("z",), shape=(4,), chunk_shape=(4,), stats=stats)
    return DatasetMeta(id=i + 1, version=generation, attributes=attrs, arrays=arrays)


def _parts(layout: str) -> list[list[tuple[str, DatasetMeta | None]]]:
    first = [(f"d{i:03d}", _meta(i, 1)) for i in range(60)]
    if layout == "one part":
        return [first]
    if layout == "a few rows over a large part":  # the large part's names are only searched
        large = [(f"d{i:04d}", _meta(i, 1)) for i in range(2000)]
        newer = [("d0003", _meta(3, 2)), ("d0010", None), ("d1999", None), ("d0500", _meta(500, 2))]
        return [large, [*newer, ("c", _meta(2001, 2)), ("d0500x", _meta(2002, 2)), ("z", _meta(2003, 2))]]
    if layout == "one part with tombstones":
        return [[(name, None if i % 9 == 4 else meta) for i, (name, meta) in enumerate(first)]]
    # replaced rows (with "old" gone and "kind" now a float), deleted rows, new rows,
    # then a third part deleting one more and bringing a deleted name back
    second = [(f"d{i:03d}", _meta(i, 2)) for i in range(0, 60, 7)] + [(f"d{i:03d}", None) for i in (1, 2, 5)]
    second += [(f"e{i:03d}", _meta(i, 2)) for i in range(8)]
    third = [("d003", None), ("d005", _meta(5, 3)), ("a", _meta(61, 3))]
    parts = [first, second, third]
    # Names numpy cannot hold as fixed-width keys (a NUL byte pads them; very long
    # ones would make the keys too large) take the path through decoded names.
    rename = {
        "three parts": lambda name: name,
        "three parts, names with a NUL byte": lambda name: f"{name}\x00{name[-1]}",
        "three parts, long names": lambda name: "é" * 200 + name,
    }[layout]
    return [[(rename(name), meta) for name, meta in part] for part in parts]


def _tables(layout: str) -> tuple[CatalogTable, DictTable]:
    files: dict[str, bytes] = {}
    refs, live = [], {}
    for generation, rows in enumerate(_parts(layout), start=1):
        _, buffers, ref = write_part(rows, "zstd", generation, secrets.token_bytes(16))
        files[ref.path] = b"".join(bytes(b) for b in buffers)
        refs.append(ref)
        for name, meta in rows:
            if meta is None:
                live.pop(name, None)
            else:
                live[name] = meta
    cat = Catalog(refs, lambda path, offset, length: files[path][offset : offset + length])
    return CatalogTable(cat), DictTable(live)


WHERE = [
    "platform == 'buoy-2'", "platform != 'buoy-2'", "platform < 'c'", "platform >= ''", "platform between 'b' and 'h'",
    "platform in ['ship', 'glider é', 'nope']", "platform not in ['ship']", "platform startswith 'bu'",
    "platform is null", "not (platform == 'ship')", "platform == 'absent everywhere'",
    "lat > 3 and n < 50", "temp.max between 0 and 4", "temp.count > 2 or temp.nulls == 4", "temp overlaps [1, 2]",
    "kind is null", "kind is not null and lat < 0",
]  # fmt: skip
LAYOUTS = [
    "one part",
    "one part with tombstones",
    "three parts",
    "three parts, names with a NUL byte",
    "three parts, long names",
    "a few rows over a large part",
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_catalogue_search_matches_the_datasets(layout):
    table, reference = _tables(layout)
    assert len(table) == len(reference)
    assert table.column_names() == reference.column_names()
    for where in WHERE:
        rows = select(table, where)
        assert rows == select(reference, where), where
        assert table.names_at(rows) == [reference.names[i] for i in rows], where
    assert table.names == reference.names


@pytest.mark.parametrize("layout", LAYOUTS)
def test_catalogue_frame_matches_the_datasets(layout):
    table, reference = _tables(layout)
    for columns, where in ((None, None), (["platform", "lat", "kind", "temp.max"], "platform != 'ship'")):
        got, expected = catalog_frame(table, columns, where), catalog_frame(reference, columns, where)
        pd.testing.assert_frame_equal(got, expected)
        assert str(got["platform"].dtype) == "string"


def test_string_predicates_keep_their_type_errors():
    table, _ = _tables("one part")
    assert table.column("platform").codes is not None  # the coded path is the one tested
    with pytest.raises(QueryTypeError, match="holds strings"):
        select(table, "platform > 3")
    with pytest.raises(UnknownColumnError):  # only rows a newer part replaced had it
        select(_tables("three parts")[0], "old == 'x'")


def test_a_one_part_search_decodes_only_the_names_it_returns():
    table, reference = _tables("one part")
    rows = select_rows(table, "platform == 'ship'")
    assert rows is not None and 0 < rows.size < len(reference)
    assert table.names_at(rows) == [reference.names[i] for i in rows.tolist()]
    reader = table.catalog._readers[0]
    assert "name" not in reader._columns  # the names column was never decoded whole
    assert table.catalog.names() == reference.names  # listing still decodes (and checks) them all


def test_a_few_new_rows_do_not_decode_the_large_part_names():
    table, reference = _tables("a few rows over a large part")
    rows = select_rows(table, "platform == 'ship' or n > 3990")
    assert rows is not None and 0 < rows.size < len(reference) // 4
    assert table.names_at(rows) == [reference.names[i] for i in rows.tolist()]
    assert "name" not in table.catalog._readers[0]._columns  # searched, never decoded whole
    assert table.catalog.names() == reference.names


def test_coded_and_plain_string_columns_agree():
    table, _ = _tables("three parts")
    cat = table.catalog
    codes, categories, present = cat.string_column("platform")
    values, present_plain = cat.column("platform")
    assert present.tolist() == present_plain.tolist()
    assert [categories[c] if ok else None for c, ok in zip(codes.tolist(), present.tolist())] == values.tolist()
    assert cat.string_column("kind") is None  # strings in one part, floats in another
    assert cat.string_column("old") is None  # only rows newer parts replaced had it
    with pytest.raises(KeyError):
        cat.string_column("_atlas_xarray/layout")


@pytest.mark.parametrize(
    "values",
    [[], ["a"], ["a\x00b", "c"], ["\x00", "\x01", "\x1f", "\n", "é", "日本", ""], ["x\n", "\x00\x01\x1f"]],
)
def test_string_columns_decode_whatever_control_characters_they_hold(values):
    assert decode_strings(encode_strings(values), len(values), "x") == values


@pytest.mark.parametrize("extra", [b"", b"\x00\x01\x1f\n"])
def test_invalid_utf8_is_refused_on_either_decoding_path(extra):
    blob = extra + b"\xff" + b"a\xc3\xff\xa9b\xff"  # "é" split by a terminator
    with pytest.raises(CorruptStoreError, match="UTF-8"):
        decode_strings(np.frombuffer(blob, np.uint8), 3, "x")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_names_at_takes_positions_like_a_list(layout):
    table, reference = _tables(layout)
    for positions in ([0, 5, -1], [-len(reference)], [3, 1]):
        assert table.catalog.names_at(positions) == [reference.names[i] for i in positions]
    with pytest.raises(IndexError):
        table.catalog.names_at([len(reference)])


def _store_with_pending(path):
    s = atlas.Atlas.open(path, mode="r+")
    s.open_dataset("b03").set_attribute("platform", "changed")  # replaced
    s.delete_dataset("b05")  # deleted
    ds = s.create_dataset("a-new")  # added
    ds.set_attribute("platform", "ship")
    ds.set_attribute("lat", 2.5)
    return s


def test_a_store_answers_alike_in_format_1_and_2_with_pending_changes(tmp_path):
    v2 = tmp_path / "v2"
    with atlas.Atlas.create(v2) as s:
        for i in range(12):
            ds = s.create_dataset(f"b{i:02d}")
            if i % 4:
                ds.set_attribute("platform", ["buoy-1", "buoy-2", "ship"][i % 3])
            ds.set_attribute("lat", i * 1.5 - 4)
            if i % 3:
                ds.define_array("temp", "float32", ("z",), (3,))
                ds.write_array("temp", None, np.array([i, i + 1, np.nan], dtype="float32"))
        s.flush()
    v1 = to_v1(Path(shutil.copytree(v2, tmp_path / "v1")))
    stores = [_store_with_pending(v2), _store_with_pending(v1)]
    try:
        for where in ("platform == 'ship'", "platform != 'ship' and lat > 0", "platform startswith 'b'",
                      "platform is null or temp.max > 9", "temp overlaps [3, 5]"):  # fmt: skip
            assert stores[0].find(where) == stores[1].find(where), where
        pd.testing.assert_frame_equal(stores[0].catalog(), stores[1].catalog())
        pd.testing.assert_frame_equal(stores[0].catalog(["platform", "temp.max"], "lat < 3"),
                                      stores[1].catalog(["platform", "temp.max"], "lat < 3"))  # fmt: skip
        for s in stores:
            s.flush()
        assert stores[0].find("platform == 'ship'") == stores[1].find("platform == 'ship'")
    finally:
        for s in stores:
            s.close()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pending_changes_over_a_catalogue_match_the_datasets(layout):
    table, reference = _tables(layout)
    live = dict(zip(reference.names, reference._metas))
    first, last = reference.names[0], reference.names[-1]
    pending = {first: _meta(3, 9), reference.names[7]: None, last: None, "0-new": _meta(70, 9), "zz": _meta(71, 9),
               "d0025x": _meta(72, 9), "d004": None}  # fmt: skip
    for name, meta in pending.items():
        if meta is None:
            live.pop(name, None)
        else:
            live[name] = meta
    overlay = OverlayTable(table, pending)
    expected = DictTable(live)
    assert len(overlay) == len(expected)
    for where in WHERE:
        rows = select(overlay, where)
        assert rows == select(expected, where), where
        assert overlay.names_at(rows) == [expected.names[i] for i in rows], where
    pd.testing.assert_frame_equal(catalog_frame(overlay, None, None), catalog_frame(expected, None, None))
    assert overlay.names == expected.names


def _overlay_of(parts, pending):
    """An OverlayTable of ``pending`` over parts of ``(name, {key: typed value})`` rows, and its reference."""
    files, refs, live = {}, [], {}
    for generation, rows in enumerate(parts, start=1):
        metas = [(name, DatasetMeta(id=i + 1, version=generation, attributes=attrs, arrays={}))
                 for i, (name, attrs) in enumerate(rows)]  # fmt: skip
        _, buffers, ref = write_part(metas, "zstd", generation, secrets.token_bytes(16))
        files[ref.path] = b"".join(bytes(b) for b in buffers)
        refs.append(ref)
        live.update(metas)
    top = {name: DatasetMeta(id=100 + i, version=9, attributes=attrs, arrays={})
           for i, (name, attrs) in enumerate(pending)}  # fmt: skip
    live.update(top)
    cat = Catalog(refs, lambda path, offset, length: files[path][offset : offset + length])
    return OverlayTable(CatalogTable(cat), top), DictTable(live)


def _u64(v):
    return {"u": {"t": "uint64", "v": v}}


def _i64(v):
    return {"u": {"t": "int64", "v": v}}


@pytest.mark.parametrize(
    ("parts", "pending"),
    [([[("a", _i64(2**53 + 1)), ("b", _i64(-1))]], [("c", _u64(3))]),  # int64 in the catalogue, uint64 pending
     ([[("a", _u64(2**53 + 1))]], [("b", _i64(-1))]),  # and the other way round
     ([[("a", _u64(2**53 + 1)), ("b", {})]], [("c", _i64(-1)), ("d", {})])],  # with rows missing the key
)  # fmt: skip
def test_signed_and_unsigned_integers_under_pending_changes_stay_exact(parts, pending):
    """As the datasets themselves type them: int64 when every value fits, not float64 (2**53 + 1 is lost)."""
    overlay, reference = _overlay_of(parts, pending)
    assert overlay.column("u").kind == reference.column("u").kind == "int"
    for where in (f"u > {2**53}", f"u == {2**53 + 1}", f"u == {2**53}", "u < 0", "u is null"):
        assert select(overlay, where) == select(reference, where), where
    pd.testing.assert_frame_equal(catalog_frame(overlay, None, None), catalog_frame(reference, None, None))


def test_numbers_of_mixed_kinds_under_pending_changes_leave_missing_rows_missing():
    """An integer side's missing rows hold 0: merged into a float column they must become NaN, not 0.0."""
    parts = [[("a", {"u": {"t": "int64", "v": 5}}), ("b", {"v": {"t": "string", "v": "x"}})]]
    overlay, reference = _overlay_of(parts, [("c", {"u": {"t": "float64", "v": 2.5}}), ("d", {})])
    frame = catalog_frame(overlay, ["u"], None)
    assert frame["u"].tolist()[0] == 5.0 and np.isnan(frame["u"].tolist()[1])  # was 0.0
    pd.testing.assert_frame_equal(frame, catalog_frame(reference, ["u"], None))
    assert select(overlay, "u is null") == select(reference, "u is null") == [1, 3]


def test_a_deleted_row_does_not_decide_the_kind_of_the_kept_rows():
    parts = [[("a", _u64(2**64 - 1)), ("b", _i64(2**53 + 1))]]
    overlay, reference = _overlay_of(parts, [])
    overlay = OverlayTable(overlay.base, {"a": None})
    reference = DictTable({"b": reference._metas[1]})
    for where in (f"u == {2**53}", f"u > {2**53}"):
        assert select(overlay, where) == select(reference, where), where


@pytest.mark.parametrize(
    ("layout", "keyed"),
    [("three parts", True), ("three parts, names with a NUL byte", False), ("three parts, long names", False)],
)
def test_several_parts_are_merged_on_name_keys_when_names_allow(layout, keyed):
    table, reference = _tables(layout)
    assert select(table, "lat > 3") == select(reference, "lat > 3")
    readers = table.catalog._readers
    assert all((r.name_keys() is not None) == keyed for r in readers)
    if keyed:  # the layout and the search decoded no part's whole names column
        assert not any("name" in r._columns for r in readers)
