"""Searching a format v2 catalogue: the same answers as the datasets themselves give.

The catalogue side reads columns as stored (string attributes dictionary-coded,
the columns of a part whose rows all live without a gather, names decoded only
for the rows a search returns); :class:`~atlas.search.table.DictTable` over the
same live datasets is the reference, for one part, one part with tombstones and
several parts where newer rows replace and delete older ones.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from v1_stores import to_v1

import atlas
from atlas import attributes
from atlas.catalog import Catalog, write_part
from atlas.catalog.encoding import decode_strings, encode_strings
from atlas.errors import CorruptStoreError, QueryError, QueryTypeError, UnknownColumnError
from atlas.metadata import ArrayMeta, DatasetMeta, Stats
from atlas.search import as_expression, find_names, select, select_rows
from atlas.search.catalog_table import CatalogTable
from atlas.search.frame import catalog_frame
from atlas.search.overlay import OverlayTable
from atlas.search.parts import search_parts
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
    if layout.startswith("parts of disjoint name ranges"):
        # No name of one part falls in another's range (a build in batches of ascending
        # names); a newer part may hold the lowest names, and tombstones of names no
        # other part has.  Kept sorted, with names of one length or of several.
        width = "" if layout.endswith("one length") else "x" * 3
        ranges = [(f"m{i:03d}", _meta(i, 1)) for i in range(60)]
        lower = [(f"b{i:03d}{width[: i % 4]}", None if i % 6 == 1 else _meta(100 + i, 2)) for i in range(30)]
        upper = [(f"t{i:03d}", None if i % 5 == 0 else _meta(200 + i, 3)) for i in range(40)]
        parts = [ranges, sorted(lower), upper]
        if layout.endswith("under a few changes"):  # rows of the first and last parts replaced or deleted
            parts.append([("m010", None), ("m020", _meta(20, 4)), ("m0205", _meta(300, 4)), ("t003", _meta(3, 4))])
        return parts
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


def catalog_in_memory(parts: list[list[tuple[str, DatasetMeta | None]]]) -> tuple[Catalog, dict[str, DatasetMeta]]:
    """A catalogue of ``parts`` (oldest first) written in memory, and the live datasets they leave."""
    files: dict[str, bytes] = {}
    refs, live = [], {}
    for generation, rows in enumerate(parts, start=1):
        _, buffers, ref = write_part(rows, "zstd", generation, secrets.token_bytes(16))
        files[ref.path] = b"".join(bytes(b) for b in buffers)
        refs.append(ref)
        for name, meta in rows:
            if meta is None:
                live.pop(name, None)
            else:
                live[name] = meta
    return Catalog(refs, lambda path, offset, length: files[path][offset : offset + length]), live


def _tables(layout: str) -> tuple[CatalogTable, DictTable]:
    cat, live = catalog_in_memory(_parts(layout))
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
    "parts of disjoint name ranges, names of one length",
    "parts of disjoint name ranges, names of several lengths",
    "parts of disjoint name ranges under a few changes",
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
    reader = table.catalog.readers[0]
    assert "name" not in reader._columns  # the names column was never decoded whole
    assert table.catalog.names() == reference.names  # listing still decodes (and checks) them all


def test_a_few_new_rows_do_not_decode_the_large_part_names():
    table, reference = _tables("a few rows over a large part")
    rows = select_rows(table, "platform == 'ship' or n > 3990")
    assert rows is not None and 0 < rows.size < len(reference) // 4
    assert table.names_at(rows) == [reference.names[i] for i in rows.tolist()]
    assert "name" not in table.catalog.readers[0]._columns  # searched, never decoded whole
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


def test_a_side_without_the_column_does_not_decide_its_kind():
    """Stats without extremes under a pending change that has no such array: the
    column stays a number column (it was typed as the pending side's missing
    column, of no kind, and refused every order comparison)."""
    temp = ArrayMeta(slot=1, dtype="float32", dims=("z",), shape=(4,), chunk_shape=(4,), stats=None)
    rows = [("a", None), ("b", DatasetMeta(id=2, version=1, attributes={}, arrays={"temp": temp}))]
    _, buffers, ref = write_part(rows, "zstd", 1, secrets.token_bytes(16))
    blob = b"".join(bytes(b) for b in buffers)
    base = CatalogTable(Catalog([ref], lambda path, offset, length: blob[offset : offset + length]))
    reference = DictTable({"b": rows[1][1]})
    for pending in ({"a": None}, {"c": DatasetMeta(id=3, version=1, attributes={}, arrays={})}):
        overlay = OverlayTable(base, pending)
        assert overlay.column("temp.max").kind == "float"
        assert select(overlay, "temp.max between 0 and 3") == [] == select(reference, "temp.max between 0 and 3")
        assert find_names(overlay, "temp.max is null") == [n for n in ("b", "c") if n in overlay.names]


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
    readers = table.catalog.readers
    assert all((r.name_keys() is not None) == keyed for r in readers)
    if keyed:  # the layout and the search decoded no part's whole names column
        assert not any("name" in r._columns for r in readers)


@pytest.mark.parametrize("width", ["one length", "several lengths"])
def test_parts_of_disjoint_name_ranges_are_laid_out_from_their_ranges(width, monkeypatch):
    """No row of one part can hide a row of another: the parts are laid out one
    after the other, without merging their names.  A listing decodes the names
    anyway; a search and a frame take the ranges only of names of one length
    (checked sorted on their bytes): others would be decoded whole for it."""
    from atlas.catalog.part import PartReader

    def refused(*args, **kwargs):
        raise AssertionError("the parts' names were merged")

    for name in ("name_keys", "name_keys_of"):
        monkeypatch.setattr(PartReader, name, refused)
    for name in ("live_rows", "row_positions", "live_rows_by_keys", "row_positions_by_keys"):
        monkeypatch.setattr(f"atlas.catalog.snapshot.{name}", refused)
    layout = f"parts of disjoint name ranges, names of {width}"
    table, reference = _tables(layout)
    assert table.catalog.names() == reference.names  # a listing
    assert list(table.catalog.items()) == list(zip(reference.names, reference._metas))
    if width == "one length":
        table, _ = _tables(layout)
        assert select(table, "lat > 3") == select(reference, "lat > 3")
        assert not any("name" in r._columns for r in table.catalog.readers)  # no names column decoded whole
        table, _ = _tables(layout)
        columns = ["lat", "platform", "temp.max"]
        pd.testing.assert_frame_equal(catalog_frame(table, columns, None), catalog_frame(reference, columns, None))


def test_a_store_built_in_batches_of_ascending_names_frames_every_dataset(tmp_path):
    """Real parts of batches of ascending names (disjoint ranges), then a commit
    deleting an old dataset (its tombstone overlaps the first part): catalog(),
    list_datasets() and find() on fresh handles answer as the datasets do."""
    path = str(tmp_path / "s")
    store = atlas.Atlas.create(path)
    for start, stop in ((0, 160), (160, 200), (200, 210)):  # falling sizes: parts left unmerged
        for i in range(start, stop):
            ds = store.create_dataset(f"p{i:04d}")
            ds.set_attribute("lat", i / 3)
            if i % 4:
                ds.set_attribute("platform", f"b{i % 3}")
        store.flush()
    store.close()
    expected = {f"p{i:04d}": (i / 3, f"b{i % 3}" if i % 4 else None) for i in range(210)}
    for delete in (None, "p0005"):
        with atlas.Atlas.open(path) as store:
            if delete is not None:
                store.delete_dataset(delete)
                store.flush()
                del expected[delete]
        with atlas.Atlas.open(path, "r") as store:
            assert len(store.session.state().catalog.parts) >= 2
            frame = store.catalog(["lat", "platform"])
            assert list(frame.index) == sorted(expected) == store.list_datasets()
            assert frame["lat"].tolist() == [lat for lat, _ in expected.values()]
            assert [None if pd.isna(v) else v for v in frame["platform"]] == [p for _, p in expected.values()]
            assert store.find("lat > 30") == [n for n, (lat, _) in expected.items() if lat > 30]


def test_ranges_spare_the_pairs_of_parts_that_share_no_name(monkeypatch):
    """A listing of parts of disjoint ranges under a newer part overlapping two of
    them: the winners and their positions are the ones of a lookup of every pair,
    and the part that overlaps none has none of its names looked up."""
    from atlas.catalog import winners

    table, reference = _tables("parts of disjoint name ranges under a few changes")
    readers = table.catalog.readers
    names = [r.names() for r in readers]
    bounds = [r.name_range() for r in readers]
    rows = winners.live_rows(readers, False, names)
    assert [r.tolist() for r in winners.live_rows(readers, False, names, bounds)] == [r.tolist() for r in rows]
    expected = winners.row_positions(names, rows)
    looked_up = []
    real = winners._lower_bound
    monkeypatch.setattr(winners, "_lower_bound", lambda part, name: looked_up.append(name) or real(part, name))
    got = winners.row_positions(names, rows, bounds)
    assert [p.tolist() for p in got] == [p.tolist() for p in expected]
    assert looked_up and not set(looked_up) & set(names[1])  # the "b..." part shares no name with the others
    assert table.catalog.names() == reference.names


def test_overlapping_name_ranges_are_merged_as_before():
    """One name of a newer part inside an older part's range is enough to merge."""
    parts = _parts("parts of disjoint name ranges, names of one length")
    parts[2].insert(0, ("m010", None))  # deletes a row of the oldest part
    cat, live = catalog_in_memory(parts)
    reference = DictTable(live)
    assert "m010" not in cat and "m010" not in reference.names
    assert CatalogTable(cat).names_at(select(CatalogTable(cat), "lat > 3")) == [
        reference.names[i] for i in select(reference, "lat > 3")
    ]
    assert cat.names() == reference.names


def test_readers_are_the_parts_readers_shared_with_the_next_snapshot():
    table, _ = _tables("three parts")
    cat = table.catalog
    assert isinstance(cat.readers, tuple) and [r.ref for r in cat.readers] == cat.parts
    read = cat.readers[0]._read_range
    newer = Catalog(cat.parts[1:], read, previous=cat)
    assert newer.readers == cat.readers[1:]  # the same objects: what they read is not read again


# -- the search one part at a time (atlas.search.parts) --------------------------------------


def _answer(search, table, where):
    """``search(table, where)``, or the type and message of the error it raises."""
    try:
        return search(table, where)
    except (QueryTypeError, UnknownColumnError, QueryError) as exc:
        return (type(exc), str(exc))


def _kind_of_answer(answer):
    """The names, or the type of the error (messages name columns as each table types them)."""
    return answer if isinstance(answer, list) else answer[0]


def _merged(table, where):
    """What a search of the merged table returns (the path before per-part searches)."""
    return table.names_at(select(table, where))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pending", [False, True])
def test_the_search_by_part_returns_what_the_merged_table_does(layout, pending):
    table, reference = _tables(layout)
    if pending:
        live = dict(zip(reference.names, reference._metas))
        changes = {reference.names[0]: _meta(3, 9), reference.names[7]: None, "0-new": _meta(70, 9), "d004": None}
        for name, meta in changes.items():
            live.pop(name, None)
            if meta is not None:
                live[name] = meta
        table, reference = OverlayTable(table, changes), DictTable(live)
    for where in [*WHERE, "kind > 3", "old == 'x'", "platform > 3", "nope == 1"]:
        expected = _answer(lambda t, w: [reference.names[i] for i in select(t, w)], reference, where)
        assert _answer(find_names, table, where) == _answer(_merged, table, where) == expected, where
    by_parts = search_parts(table, as_expression("lat > 3 and platform != 'ship' and temp.max between 0 and 4"))
    keyed = "NUL" not in layout and "long" not in layout
    # one part is searched as stored already; names without keys take the merged table
    assert (by_parts is not None) == (keyed and (pending or layout not in ("one part", "one part with tombstones")))


def test_the_search_by_part_decodes_only_the_names_it_returns():
    table, reference = _tables("a few rows over a large part")
    where = "platform == 'ship' or n > 3990"
    expected = [reference.names[i] for i in select(reference, where)]
    assert search_parts(table, as_expression(where)) == expected
    assert "name" not in table.catalog.readers[0]._columns  # the large part's names not decoded whole
    assert table.catalog._count is None  # nor the winner of every name resolved


def test_a_kind_mixed_across_parts_takes_the_merged_table():
    """``kind`` is a string in the first part and a number in the second: the
    merged column is typed from every row, so no part can be tested alone."""
    table, _ = _tables("three parts")
    assert search_parts(table, as_expression("kind is null")) is None
    assert search_parts(table, as_expression("lat > 0")) is not None
    for where in ("kind is null", "kind is not null and lat < 0", "kind == 'k1'", "kind > 3"):
        assert _answer(find_names, table, where) == _answer(_merged, table, where), where


def test_names_of_one_length_are_read_without_their_ends(tmp_path):
    names = [f"p{i:05d}" for i in range(0, 3000, 3)]
    _, buffers, ref = write_part([(n, _meta(i, 1)) for i, n in enumerate(names)], "zstd", 1, secrets.token_bytes(16))
    blob = b"".join(bytes(b) for b in buffers)
    cat = Catalog([ref], lambda path, offset, length: blob[offset : offset + length])
    reader = cat.readers[0]
    rows = [0, 5, 6, 999]
    assert reader.names_of(rows) == [names[r] for r in rows]
    assert reader.name_keys_of(rows).tolist() == [names[r].encode() for r in rows]
    assert reader._columns["name ends"][1] is None  # the ends were never made
    assert reader.name_keys().tolist() == [n.encode() for n in names]
    with pytest.raises(IndexError):
        reader.names_of([len(names)])
    assert reader.names() == names


@pytest.mark.parametrize("names", [["a", "bb", "ccc\x00d"], ["\x00", "x"], ["z", "é", "日本"]])
def test_name_keys_of_rows_refuse_names_with_a_nul_byte(names):
    _, buffers, ref = write_part([(n, _meta(i, 1)) for i, n in enumerate(names)], "zstd", 1, secrets.token_bytes(16))
    blob = b"".join(bytes(b) for b in buffers)
    reader = Catalog([ref], lambda path, offset, length: blob[offset : offset + length]).readers[0]
    every = list(range(len(names)))
    assert reader.names_of(every) == names
    keyed = not any("\x00" in n for n in names)
    got = reader.name_keys_of(every)
    assert (got.tolist() == [n.encode() for n in names]) if keyed else got is None


_MIXED_NAMES = ["a", "b", "c0", "c1", "c12", "d", "ee", "z9", "é", "日本"]
_EQUAL_NAMES = [f"n{i:02d}" for i in range(10)]
#: Attribute values per column kind: a store draws one kind per key, sometimes a mix.
_VALUES = {
    "float64": [-1.0, 0.0, 1.0, 2.5, float("nan")], "int64": [-1, 0, 2, 3, 2**53 + 1],
    "uint64": [0, 2, 2**63 + 5], "float32": [0.1, 2.5], "bool": [True, False],
    "string": ["", "p", "q", "é"], "timestamp_nanoseconds": [0, 10**18],
}  # fmt: skip
_PROPERTY_WHERE = [
    "x > 1", "x == 2", "x != 2", "not (x < 0.5)", "x is null", "x in [0, 2, 2.5]", "x between 0 and 3",
    "s == 'p'", "s != 'p'", "s startswith 'é'", "s in ['p', 'q']", "s is not null and x < 3", "s > 'a'",
    "temp.max between 0 and 3", "temp.count > 1", "temp.nulls == 0", "temp overlaps [1, 2]", "temp.min is null",
    "temp.shape is not null", "x > 1 or temp.min < 0", "not (s == 'q' and temp.max > 1)", "b == true",
    "nope == 1", "s > 1", "x startswith 'a'", "temp.max > '2020-01-01'", "x > '1990-01-01'",
]  # fmt: skip


@st.composite
def _attribute(draw, kind):
    if kind == "mixed":
        kind = draw(st.sampled_from(["float64", "int64", "string"]))
    if kind == "list":
        return attributes.normalize(draw(st.lists(st.integers(0, 3), max_size=2)))
    return attributes.normalize(draw(st.sampled_from(_VALUES[kind])), kind)


@st.composite
def _dataset(draw, kinds, counter):
    attrs = {key: draw(_attribute(kind)) for key, kind in kinds.items() if draw(st.integers(0, 3))}
    arrays = {}
    dtype = draw(st.sampled_from([None, "float32", "float32", "int16", kinds["temp"]]))
    if dtype is not None:
        stats = None
        if draw(st.integers(0, 3)):
            if dtype == "string":
                low, high = sorted(draw(st.lists(st.sampled_from(["a", "b", "é"]), min_size=2, max_size=2)))
            else:
                low = draw(st.integers(-2, 3))
                high = low + draw(st.integers(0, 2))
            nulls = draw(st.integers(0, 4))
            stats = Stats(4, nulls, low, high) if nulls < 4 else Stats(4, 4, None, None)
        arrays["temp"] = ArrayMeta(slot=next(counter), dtype=dtype, dims=("z",), shape=(4,), chunk_shape=(4,),
                                   stats=stats)  # fmt: skip
    return DatasetMeta(id=next(counter), version=1, attributes=attrs, arrays=arrays)


@st.composite
def _stores(draw):
    """Parts (oldest first) of rows ``(name, meta or None)`` and pending changes over them."""
    counter = itertools.count(1)
    names = draw(st.sampled_from([_MIXED_NAMES, _EQUAL_NAMES]))
    kinds = {
        "x": draw(st.sampled_from(["float64", "float64", "int64", "uint64", "float32", "timestamp_nanoseconds",
                                   "mixed", "list"])),
        "s": draw(st.sampled_from(["string", "string", "string", "mixed"])),
        "b": "bool",
        "temp": draw(st.sampled_from(["float32", "string", "timestamp_nanoseconds"])),  # a rare array dtype
    }
    datasets = st.one_of(st.none(), _dataset(kinds, counter), _dataset(kinds, counter))
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
        parts.append([(name, draw(datasets)) for name in sorted(chosen)])
    pending = {}
    if draw(st.booleans()):
        for name in draw(st.lists(st.sampled_from([*names, "new", "n99"]), max_size=4, unique=True)):
            pending[name] = draw(datasets)
    return parts, pending


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_stores())
def test_the_search_by_part_matches_a_brute_force_search(store):
    """Random catalogues (overwrites, deletes, re-creations, kinds mixed across parts,
    pending changes): the search by part answers as the merged table, errors
    included, and where it does search by part, as a search of the live datasets
    themselves (where a kind mix sends it to the merged table, that table's
    typing of the mix decides, as before)."""
    parts, pending = store
    files, refs, live = {}, [], {}
    for generation, rows in enumerate(parts, start=1):
        _, buffers, ref = write_part(rows, "zstd", generation, secrets.token_bytes(16))
        files[ref.path] = b"".join(bytes(b) for b in buffers)
        refs.append(ref)
    for name, meta in itertools.chain(*parts, pending.items()):
        live.pop(name, None)
        if meta is not None:
            live[name] = meta
    table = CatalogTable(Catalog(refs, lambda path, offset, length: files[path][offset : offset + length]))
    if pending:
        table = OverlayTable(table, pending)
    reference = DictTable(live)
    for where in _PROPERTY_WHERE:
        got = _answer(find_names, table, where)
        assert got == _answer(_merged, table, where), where
        by_part = _answer(lambda t, w: search_parts(t, as_expression(w)), table, where)
        if by_part is not None:  # searched by part (else by the merged table)
            expected = _answer(lambda t, w: [reference.names[i] for i in select(t, w)], reference, where)
            assert got == by_part, where
            assert _kind_of_answer(got) == _kind_of_answer(expected), where


def _swap_first_names(raw):
    names = raw["name"].split(b"\xff")
    names[0], names[1] = names[1], names[0]
    raw["name"] = b"\xff".join(names)


def test_unsorted_names_fail_a_search_by_part_that_returns_them():
    from test_catalog_hostile import ROWS, Store, _dataset, forge

    store = Store()
    _, buffers, ref = write_part(ROWS, "zstd", 1, secrets.token_bytes(16))
    store.files[ref.path] = b"".join(bytes(b) for b in buffers)
    _, buffers, newer = write_part([("ds0001", _dataset(1)), ("new", _dataset(900))], "zstd", 2, bytes(16))
    store.files[newer.path] = b"".join(bytes(b) for b in buffers)
    table = CatalogTable(Catalog([forge(store, ref, columns=_swap_first_names), newer], store.read_range))
    assert search_parts(table, as_expression("lat > 140")) is not None  # the rows swapped are not returned
    with pytest.raises(CorruptStoreError, match="not sorted"):
        find_names(table, "lat < 1")


def test_a_terminator_byte_inside_a_newer_part_s_names_is_refused_by_its_name_keys():
    """Names of one length located by arithmetic: a 0xFF byte inside one of them
    (not UTF-8, so no name) must not give a key, which would hide no older row.
    Here it damages the tombstone of ``n005``: a search by part that takes that
    key answered with ``n005`` resurrected, where every other path refuses the part."""
    from test_catalog_hostile import Store, forge

    store = Store()
    _, buffers, old = write_part([(f"n{i:03d}", _meta(i, 1)) for i in range(50)], "zstd", 1, secrets.token_bytes(16))
    store.files[old.path] = b"".join(bytes(b) for b in buffers)
    rows = [("n005", None)] + [(f"n{i}", _meta(i, 2)) for i in range(100, 120)]  # n of these: 200 and more
    _, buffers, newer = write_part(rows, "zstd", 2, secrets.token_bytes(16))
    store.files[newer.path] = b"".join(bytes(b) for b in buffers)

    def inner_ff(raw):
        assert raw["name"].startswith(b"n005\xffn100\xff")
        raw["name"] = b"n00\xff" + raw["name"][4:]  # still sorted, one length, terminators in place

    damaged = forge(store, newer, columns=inner_ff)
    cat = Catalog([old, damaged], store.read_range)
    with pytest.raises(CorruptStoreError):
        cat.names()
    with pytest.raises(CorruptStoreError):
        find_names(CatalogTable(Catalog([old, damaged], store.read_range)), "n < 50")  # no newer row matches
    reader = Catalog([old, damaged], store.read_range).readers[1]
    with pytest.raises(CorruptStoreError):
        reader.name_keys_of([0, 1])
    with pytest.raises(CorruptStoreError):
        reader.name_keys()


def test_a_terminator_byte_inside_names_of_one_length_is_refused():
    """Names of one length are located by arithmetic, not by their terminators: a
    0xFF byte inside a name is not UTF-8, so decoding it refuses the part."""
    from test_catalog_hostile import Store, forge

    store = Store()
    rows = [(f"n{i:03d}", _meta(i, 1)) for i in range(50)]
    _, buffers, ref = write_part(rows, "zstd", 1, secrets.token_bytes(16))
    store.files[ref.path] = b"".join(bytes(b) for b in buffers)

    def inner_ff(raw):
        blob = bytearray(raw["name"])
        blob[5 * 5 + 2] = 0xFF  # inside the sixth name, the layout kept
        raw["name"] = bytes(blob)

    reader = Catalog([forge(store, ref, columns=inner_ff)], store.read_range).readers[0]
    assert reader.names_of([0, 4]) == ["n000", "n004"]
    with pytest.raises(CorruptStoreError, match="UTF-8"):
        reader.names_of([5])
    with pytest.raises(CorruptStoreError):
        reader.names()


@pytest.mark.parametrize("damage", ["unsorted", "terminator inside a name", "invalid UTF-8"])
def test_damaged_names_of_one_length_are_refused_by_a_layout_from_ranges(damage):
    """Parts whose ranges do not overlap are laid out from their first and last
    names: that is sound only if each part's names are sorted and are the rows the
    arithmetic of one length makes, so a search, a frame and a listing refuse a
    part where they are not (the swapped rows are not the ones the search returns)."""
    from test_catalog_hostile import Store, forge

    store = Store()
    _, buffers, old = write_part([(f"n{i:03d}", _meta(i, 1)) for i in range(50)], "zstd", 1, secrets.token_bytes(16))
    store.files[old.path] = b"".join(bytes(b) for b in buffers)
    _, buffers, newer = write_part([(f"t{i:03d}", _meta(i, 2)) for i in range(20)], "zstd", 2, secrets.token_bytes(16))
    store.files[newer.path] = b"".join(bytes(b) for b in buffers)

    def edit(raw):
        blob = bytearray(raw["name"])
        if damage == "unsorted":
            blob[20:25], blob[25:30] = blob[25:30], blob[20:25]  # rows n004 and n005
        elif damage == "invalid UTF-8":
            blob[-2] = 0xC3  # n049 -> n04 and a lead byte the terminator cuts: still sorted
        else:
            blob[5 * 5 + 2] = 0xFF  # inside n005, the terminators where the arithmetic puts them
        raw["name"] = bytes(blob)

    damaged = forge(store, old, columns=edit)
    for run in (
        lambda cat: select(CatalogTable(cat), "n > 40"),
        lambda cat: catalog_frame(CatalogTable(cat), ["lat"], None),
        lambda cat: cat.names(),
        lambda cat: len(cat),
    ):
        with pytest.raises(CorruptStoreError):
            run(Catalog([damaged, newer], store.read_range))


#: Predicates and what they mean for one dataset's attributes and ``temp`` stats (None: no such array).
_STORE_WHERE = {
    "x > 1": lambda a, s: a.get("x") is not None and a["x"] > 1,
    "x is null": lambda a, s: "x" not in a,
    "not (x == 2)": lambda a, s: a.get("x") != 2,
    "s == 'p'": lambda a, s: a.get("s") == "p",
    "s is null or x == 0": lambda a, s: "s" not in a or a.get("x") == 0,
    "temp.max > 1": lambda a, s: s is not None and s["max"] is not None and s["max"] > 1,
    "temp.min < 0 and s != 'q'": lambda a, s: s is not None and s["min"] is not None and s["min"] < 0
    and "s" in a and a["s"] != "q",
    "temp.min is null": lambda a, s: s is None or s["min"] is None,
    "temp.count == 2": lambda a, s: s is not None and s["row_count"] - s["null_count"] == 2,
}


def _brute_force(store):
    """``{where: names}`` from every live dataset, read through its view."""
    live = []
    for name in store.list_datasets():
        view = store.open_dataset(name)
        stats = view.array_stats("temp") if "temp" in view.list_arrays() else None
        live.append((name, view.attributes(), stats))
    return {where: [n for n, a, s in live if test(a, s)] for where, test in _STORE_WHERE.items()}


def _finds(store):
    out = {}
    for where in _STORE_WHERE:
        try:
            out[where] = store.find(where)
        except UnknownColumnError:  # no live dataset has the column: then none matches
            out[where] = []
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_find_over_a_store_of_several_parts_matches_the_datasets_themselves(tmp_path, seed):
    """A store built by commits of falling size (several parts: deletes, re-creations,
    attributes dropped in newer rows, names that are prefixes of each other, of one
    length or not ASCII, int64 extremes in stats), with and without pending changes
    and through a second handle that refreshes: find() answers as the datasets do."""
    import random

    from atlas.search import table_of_state

    rng = random.Random(seed)
    path = tmp_path / "s"
    store = atlas.Atlas.create(path)
    pool = [f"p{i:04d}" for i in range(400)] + ["a", "c", "c1", "c12", "é", "日本", "zz"]
    extremes = [0, 3, -(2**63), 2**63 - 1]

    def temp(values):
        return {"temp": (["z"], np.array(values, dtype=np.int64))}

    store.add_datasets([(n, temp([rng.choice(extremes), 1]), {"x": rng.choice([0, 2, 5]), "s": rng.choice("pq")})
                        for n in pool if rng.random() < 0.9])  # fmt: skip
    store.flush()
    other = atlas.Atlas.open(path)
    searched_by_part = 0
    for size in [60, 12, 4, 3, 2, 2, 1]:
        for _ in range(size):
            name = rng.choice(pool)
            if name not in store:
                ds = store.create_dataset(name)
                if rng.random() < 0.5:
                    ds.set_attribute("x", 7)
                if rng.random() < 0.5:
                    ds.define_array("temp", "int64", ["z"], [2])  # never written: no extremes
            elif rng.random() < 0.3:
                store.delete_dataset(name)
            elif rng.random() < 0.5:
                view = store.open_dataset(name)
                view.delete_attribute("x") if "x" in view.attributes() else view.set_attribute("x", 3)
            else:
                store.open_dataset(name).set_attribute("s", rng.choice("pqr"))
        assert _finds(store) == _brute_force(store)  # pending changes over the parts
        table = table_of_state(store._st)
        searched_by_part += sum(search_parts(table, as_expression(w)) is not None for w in _STORE_WHERE)
        store.flush()
        other.refresh()
        assert _finds(other) == _finds(store) == _brute_force(store)
    assert len(store._st.catalog.readers) >= 3
    assert searched_by_part > 0
    other.close()
    store.close()
