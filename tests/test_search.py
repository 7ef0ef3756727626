"""Search by metadata: ``Atlas.find``, ``Atlas.catalog``, the where parser and ``atlas ls --where``."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atlas
from atlas.catalog import Catalog, write_part
from atlas.errors import QueryError, QuerySyntaxError, QueryTypeError, UnknownColumnError
from atlas.search import as_expression, col, parse_where, table_of_state
from atlas.search.catalog_table import CatalogTable
from atlas.search.overlay import OverlayTable
from atlas.search.parse import MAX_DEPTH, MAX_LENGTH
from atlas.search.parts import search_parts
from atlas.search.table import DictTable

ROOT = Path(__file__).resolve().parents[1]


def _add(store, name, temp=None, time=None, **attrs):
    ds = store.create_dataset(name)
    if temp is not None:
        temp = np.asarray(temp, dtype="float32")
        ds.define_array("temp", "float32", ("depth",), temp.shape)
        ds.write_array("temp", None, temp)
    if time is not None:
        time = np.asarray(time, dtype="datetime64[ns]")
        ds.define_array("TIME", "timestamp_ns", ("t",), time.shape)
        ds.write_array("TIME", None, time)
    for key, value in attrs.items():
        ds.set_attribute(key, value)
    return ds


@pytest.fixture
def buoys(tmp_path):
    """Five committed datasets of mixed attributes and arrays, plus one pending."""
    s = atlas.Atlas.create(str(tmp_path / "s"))
    _add(s, "a", temp=[1, 2, 3], time=["2024-01-01", "2024-01-05"], platform="buoy-1", depth=10.0, n=1,
         ok=True, lat=41.0, tags=["x", "y"])  # fmt: skip
    _add(s, "b", temp=[15, np.nan, 25], time=["2024-02-01", "2024-02-03"], platform="buoy-2", depth=float("nan"),
         n=2, ok=False, lat=55.0)  # fmt: skip
    _add(s, "c", temp=[-5, 0], platform="glider 'é' \"q\"", depth=30.0, ok=True, lat=-10.0)
    _add(s, "d", platform="ship", n=2**40, **{"_atlas_xarray/layout": "secret"})
    _add(s, "e", temp=[np.nan, np.nan], platform="buoy-10", lat=45.0)
    s.flush()
    _add(s, "p", temp=[100], platform="buoy-1", n=7)  # pending: never flushed
    yield s
    s.discard()
    s.close()


# -- operators and types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, expected",
    [
        ("platform == 'buoy-1'", ["a", "p"]),
        ("platform = 'buoy-1'", ["a", "p"]),
        ("platform != 'buoy-1'", ["b", "c", "d", "e"]),
        ("n > 1", ["b", "d", "p"]),
        ("n >= 2", ["b", "d", "p"]),
        ("n < 2", ["a"]),
        ("n <= 7", ["a", "b", "p"]),
        ("n == 1099511627776", ["d"]),
        ("n > 99999999999999999999999", []),
        ("n < 99999999999999999999999", ["a", "b", "d", "p"]),
        ("n != -99999999999999999999999", ["a", "b", "d", "p"]),
        ("depth > 5", ["a", "c"]),
        ("depth between 10 and 30", ["a", "c"]),
        ("depth between 30 and 10", []),
        ("ok == true", ["a", "c"]),
        ("ok == false", ["b"]),
        ("platform in ['ship', 'buoy-2', 'none']", ["b", "d"]),
        ("platform not in ['ship', 'buoy-2']", ["a", "c", "e", "p"]),
        ("n in [1, 7, 3.0]", ["a", "p"]),
        ("n in [1.5, 2.5, 7.0000001]", []),  # not truncated to 1, 2, 7
        ("n in []", []),
        ("platform startswith 'buoy-1'", ["a", "e", "p"]),
        ("platform startswith ''", ["a", "b", "c", "d", "e", "p"]),
        ("n is null", ["c", "e"]),
        ("n is not null", ["a", "b", "d", "p"]),
        ("temp.max > 20", ["b", "p"]),
        ("temp.min < 0", ["c"]),
        ("temp.count == 2", ["b", "c"]),
        ("temp.nulls >= 1", ["b", "e"]),
        ("temp.max is null", ["d", "e"]),
        ("temp.count is null", ["d"]),
        ("temp overlaps [2, 16]", ["a", "b"]),
        ("temp overlaps [26, 99]", []),
        ("temp overlaps [26, 100]", ["p"]),
        ("temp overlaps [3, 1]", ["a"]),  # max >= 3 and min <= 1: the formula, also for a reversed pair
        ("TIME overlaps ['2024-01-04', '2024-01-20']", ["a"]),
        ("TIME.min >= '2024-01-15'", ["b"]),
        ("tags == ['x', 'y']", ["a"]),
        ("tags is not null", ["a"]),
        ("not (platform == 'buoy-1')", ["b", "c", "d", "e"]),
        ("NOT n > 1 AND platform startswith 'buoy'", ["a", "e"]),
        ("platform == 'ship' or temp.max > 20 and n == 7", ["d", "p"]),
        ("(platform == 'ship' or temp.max > 20) and n == 7", ["p"]),
        ("platform == 'glider \\'é\\' \"q\"'", ["c"]),
        ("platform == \"glider 'é' \\\"q\\\"\"", ["c"]),
        ("platform == 'glider \\u0027\\u00e9\\u0027 \"q\"'", ["c"]),
        ("`platform` == 'ship'", ["d"]),
        ("lat overlaps [0, 1]", None),  # lat is an attribute, not an array: error
    ],
)
def test_every_operator_and_type(buoys, where, expected):
    if expected is None:
        with pytest.raises(UnknownColumnError):
            buoys.find(where)
        return
    assert buoys.find(where) == expected


def test_nan_matches_no_comparison_but_is_present(buoys):
    assert "b" not in buoys.find("depth > -1e300")
    assert "b" not in buoys.find("depth <= 1e300")
    assert "b" in buoys.find("depth != 10")
    assert "b" in buoys.find("depth is not null")  # NaN is a value; null means the key is absent


def test_the_three_forms_agree(buoys):
    text = "platform startswith 'buoy' and temp.max > 2 and lat overlaps [0, 1]".replace(
        " and lat overlaps [0, 1]", " and TIME overlaps ['2024-01-02', '2024-03-01']"
    )
    tuples = [("platform", "startswith", "buoy"), ("temp.max", ">", 2),
              ("TIME", "overlaps", (np.datetime64("2024-01-02"), "2024-03-01"))]  # fmt: skip
    expr = col("platform").startswith("buoy") & (col("temp.max") > 2) & col("TIME").overlaps("2024-01-02", "2024-03-01")
    assert buoys.find(text) == buoys.find(tuples) == buoys.find(expr) == ["a", "b"]
    assert buoys.find(~expr | (col("n") == 2)) == ["b", "c", "d", "e", "p"]
    assert buoys.find(col("n").isnull() | col("ok").notnull()) == ["a", "b", "c", "e"]
    assert buoys.find(col("depth").between(5, 15)) == ["a"]
    assert buoys.find(col("platform").isin({"ship"})) == ["d"]
    assert buoys.find(("n", "is null")) == ["c", "e"]
    assert buoys.find(platform="buoy-1", n=7) == ["p"]
    assert buoys.find("temp.max > 2", platform="buoy-2") == ["b"]


def test_pending_changes_are_included(buoys):
    assert "p" in buoys.find("platform == 'buoy-1'")
    buoys.delete_dataset("a")
    buoys.open_dataset("b").set_attribute("platform", "buoy-1")
    assert buoys.find("platform == 'buoy-1'") == ["b", "p"]
    assert buoys.list_datasets() == ["b", "c", "d", "e", "p"]


def test_internal_keys_are_never_columns(buoys):
    frame = buoys.catalog()
    assert not [c for c in frame.columns if c.startswith("_atlas_xarray")]
    with pytest.raises(UnknownColumnError):
        buoys.find("`_atlas_xarray/layout` == 'secret'")
    with pytest.raises(UnknownColumnError):
        buoys.catalog(columns=["_atlas_xarray/layout"])


def test_catalog_frame_is_typed_and_indexed_by_name(buoys):
    frame = buoys.catalog()
    assert list(frame.index) == ["a", "b", "c", "d", "e", "p"]
    assert frame.index.name == "dataset"
    assert list(frame.columns) == ["depth", "lat", "n", "ok", "platform", "tags"] + [
        f"{a}.{s}" for a in ("TIME", "temp") for s in ("min", "max", "count", "nulls", "shape")
    ]
    assert frame["n"].dtype == "Int64" and frame["n"].isna().tolist() == [False, False, True, False, True, False]
    assert frame["n"]["d"] == 2**40
    assert frame["ok"].dtype == "boolean" and frame["ok"].isna()["d"]
    assert isinstance(frame["platform"].dtype, pd.StringDtype) and frame["platform"].isna().sum() == 0
    assert frame["platform"]["c"] == "glider 'é' \"q\""
    assert frame["depth"].dtype == np.float64 and math.isnan(frame["depth"]["b"])
    assert frame["tags"].dtype == object and frame["tags"]["a"] == ["x", "y"] and frame["tags"]["b"] is None
    assert frame["TIME.min"].dtype == "datetime64[ns]"
    assert frame["TIME.max"]["b"] == pd.Timestamp("2024-02-03") and pd.isna(frame["TIME.max"]["c"])
    assert frame["temp.max"]["b"] == 25.0 and math.isnan(frame["temp.max"]["e"])
    assert frame["temp.count"].tolist()[:3] == [3, 2, 2] and frame["temp.nulls"]["e"] == 2
    assert frame["temp.shape"]["a"] == (3,) and frame["temp.shape"]["d"] is None


def test_writing_into_a_frame_changes_no_later_frame(buoys):
    """The table keeps the columns of the last queries (8) for the next ones: a
    frame must not share them, whatever pandas copies by default."""
    buoys.flush()  # a committed catalogue: its columns are the ones kept
    new = {"depth": -1.0, "n": 5, "ok": False, "platform": "x", "tags": ["z"],
           "TIME.min": pd.Timestamp("2000-01-01"), "temp.max": -1.0, "temp.count": 9}  # fmt: skip
    columns = list(new)
    expected = buoys.catalog(columns).copy(deep=True)
    frame = buoys.catalog(columns)
    for name, value in new.items():
        for row in ("a", "d"):  # a present value, a missing one
            frame.at[row, name] = value
    assert frame.at["d", "n"] == 5 and frame.at["a", "temp.count"] == 9  # written into the frame itself
    pd.testing.assert_frame_equal(buoys.catalog(columns), expected)
    pd.testing.assert_frame_equal(buoys.catalog(columns, where="n is not null"), expected[expected["n"].notna()])


def test_catalog_selects_columns_and_rows(buoys):
    frame = buoys.catalog(columns=["temp.max", "platform"], where="temp.max > 20")
    assert list(frame.columns) == ["temp.max", "platform"]
    assert list(frame.index) == ["b", "p"]
    assert buoys.catalog(columns="platform").shape == (6, 1)
    assert buoys.catalog(where="platform == 'nobody'").shape == (0, 16)


def test_unknown_columns_list_close_matches(buoys):
    with pytest.raises(UnknownColumnError, match="platform") as err:
        buoys.find("platfrom == 'x'")
    assert isinstance(err.value, KeyError) and isinstance(err.value, atlas.AtlasError)
    with pytest.raises(UnknownColumnError, match=r"temp\.max"):
        buoys.catalog(columns=["temp.maxx"])
    with pytest.raises(UnknownColumnError, match=r"temp\.min"):
        buoys.find("temp == 3")  # an array is not a column: its stats are
    with pytest.raises(UnknownColumnError, match="temperature"):
        buoys.find(("temperature", "overlaps", (1, 2)))


@pytest.mark.parametrize(
    "where, fragment",
    [
        ("platform == 3", "holds strings"),
        ("n == 'x'", "holds integers"),
        ("temp.max > 'warm'", "holds numbers"),
        ("ok == 1", "holds booleans"),
        ("depth startswith 'a'", "not strings"),
        ("TIME overlaps ['yesterday', '2024-01-01']", "not a timestamp"),
        ("TIME.min > 3", "not a timestamp"),
        ("tags > 1", "no order"),
        ("temp.shape > 1", "no order"),
    ],
)
def test_type_errors_name_the_predicate(buoys, where, fragment):
    with pytest.raises(QueryTypeError, match=fragment) as err:
        buoys.find(where)
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
    assert where.split()[0] in str(err.value)


@pytest.mark.parametrize(
    "where",
    [("n", "~=", 1), ("n", "between", 1), ("n", "in", "abc"), ("n",), 42, [], ("n", "startswith", 1),
     ("n", "overlaps", (1, 2, 3))],
)  # fmt: skip
def test_malformed_structured_predicates_are_refused(buoys, where):
    with pytest.raises(QueryError):
        buoys.find(where)


def test_empty_store_answers_nothing(tmp_path):
    with atlas.Atlas.create(str(tmp_path / "e")) as s:
        assert s.find() == [] and s.find("anything == 1") == []
        assert s.catalog().shape == (0, 0)
        with pytest.raises(QuerySyntaxError):
            s.find("anything ==")


def test_find_needs_no_pandas(tmp_path):
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import atlas, numpy as np\n"
        f"s = atlas.Atlas.create({str(tmp_path / 'np')!r})\n"
        "s.create_dataset('x').set_attribute('k', 1)\n"
        "assert s.find('k == 1') == ['x']\n"
        "try:\n    s.catalog()\nexcept atlas.errors.MissingDependencyError as e:\n    print(e)\n"
        "s.discard()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "xarray" in done.stdout and "pip install" in done.stdout


# -- the parser -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, position",
    [
        ("platform ==", 11),
        ("platform == 'x", 12),
        ("== 1", 0),
        ("a == 1 b == 2", 7),
        ("a == 1 and", 10),
        ("(a == 1", 7),
        ("a == 1)", 6),
        ("a ~ 1", 2),
        ("a between 1 or 2", 12),
        ("a in 1", 5),
        ("a in [1, 2", 10),
        ("a in [1 2]", 8),
        ("a startswith 1", 13),
        ("a is 3", 5),
        ("a overlaps [1]", 11),
        ("a == 'x\\q'", 7),
        ("a == 12abc", 7),
        ("and == 1", 0),
        ("``", 0),
        ("   ", 0),
        ("a == __import__('os')", 5),
    ],
)
def test_syntax_errors_give_the_position(text, position):
    with pytest.raises(QuerySyntaxError) as err:
        parse_where(text)
    assert err.value.position == position
    assert f"at position {position}" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_hostile_expressions_are_bounded():
    deep = "(" * (MAX_DEPTH + 1) + "a == 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(QuerySyntaxError, match="nested deeper"):
        parse_where(deep)
    with pytest.raises(QuerySyntaxError, match="nested deeper"):
        parse_where("not " * 10_000 + "a == 1")
    parse_where("(" * MAX_DEPTH + "a == 1" + ")" * MAX_DEPTH)
    with pytest.raises(QuerySyntaxError, match="longer than"):
        parse_where("a == 1 or " * 20_000 + "a == 1")
    with pytest.raises(QuerySyntaxError, match="too long"):
        parse_where("a == " + "9" * 5000)
    with pytest.raises(QuerySyntaxError):
        parse_where("a == '" + "x" * (MAX_LENGTH - 10))


def test_long_flat_chains_evaluate_without_recursion(buoys):
    text = " or ".join(f"n == {i}" for i in range(3000))
    assert buoys.find(text) == ["a", "b", "p"]
    expr = col("n") == 0
    for i in range(1, 3000):
        expr = expr | (col("n") == i)
    assert buoys.find(expr) == ["a", "b", "p"]


# -- the format v2 catalogue as the source ---------------------------------------------------------


def _catalog_of(datasets, split):
    files = {}

    def write(rows, generation):
        _, buffers, ref = write_part(rows, "zstd", generation, secrets.token_bytes(16))
        files[ref.path] = b"".join(bytes(b) for b in buffers)
        return ref

    items = sorted(datasets.items())
    refs = [write(items[:split], 1), write(items[split:], 2)]
    return Catalog(refs, lambda path, offset, length: files[path][offset : offset + length])


def _frames_equal(a, b):
    assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns)
    for c in a.columns:
        assert str(a[c].dtype) == str(b[c].dtype), c
        for x, y in zip(a[c].tolist(), b[c].tolist()):
            assert (x is y) or (pd.isna(x) is True and pd.isna(y) is True) or x == y, (c, x, y)


def test_catalog_backed_table_matches_the_dict_table(buoys):
    committed = dict(buoys.session.state().snapshot.items())
    cat = _catalog_of(committed, split=2)
    pending = dict(buoys.session.state().pending)
    assert list(pending) == ["p"]
    live = buoys.session.state()
    state = SimpleNamespace(catalog=cat, pending=live.pending, dirty={"p"}, array_stats=live.array_stats)
    table = table_of_state(state)
    assert isinstance(table, OverlayTable) and isinstance(table.base, CatalogTable)
    # the v1 path (no catalogue): every row from the handle's datasets
    v1_state = SimpleNamespace(catalog=None, items=live.items, dirty={"p"}, array_stats=live.array_stats)
    reference = table_of_state(v1_state)
    assert isinstance(reference, DictTable)
    assert table.names == reference.names
    assert table.column_names() == reference.column_names()
    from atlas.search.frame import catalog_frame

    _frames_equal(catalog_frame(table, None, None), catalog_frame(reference, None, None))
    for where in ("platform startswith 'buoy' and temp.max > 2", "TIME overlaps ['2024-01-04', '2024-03-01']",
                  "n > 1 or tags is not null", "n > 99999999999999999999999"):  # fmt: skip
        rows_a = np.flatnonzero(parse_where(where).mask(table)).tolist()
        rows_b = np.flatnonzero(parse_where(where).mask(reference)).tolist()
        assert rows_a == rows_b, where


def test_catalog_overlay_replaces_and_removes_rows(buoys):
    state = buoys.session.state()
    cat = _catalog_of(dict(state.snapshot.items()), split=3)
    buoys.delete_dataset("d")  # the only one with a 2**40 n
    buoys.open_dataset("a").set_attribute("platform", "changed")
    buoys.open_dataset("c").set_attribute("n", 0.5)  # an int column meets a float
    table = table_of_state(
        SimpleNamespace(catalog=cat, pending=dict(state.pending), dirty=set(state.dirty), array_stats=state.array_stats)
    )
    assert table.names == ["a", "b", "c", "e", "p"]
    assert np.flatnonzero(parse_where("platform == 'changed'").mask(table)).tolist() == [0]
    n = table.column("n")
    assert n.kind == "float" and n.values[2] == 0.5 and n.present.tolist() == [True, True, True, False, True]
    assert "_atlas_xarray/layout" not in table.column_names()
    # with no pending change the catalogue is used as it is
    assert isinstance(table_of_state(SimpleNamespace(catalog=cat, pending={}, dirty=set())), CatalogTable)


def test_catalog_columns_load_lazily(buoys):
    cat = _catalog_of(dict(buoys.session.state().snapshot.items()), split=2)
    table = CatalogTable(cat)
    parse_where("platform == 'ship'").mask(table)
    assert set(table._columns) == {"platform"}


# -- the command line -------------------------------------------------------------------------------


def _atlas(*args):
    return subprocess.run([sys.executable, "-m", "atlas", *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)  # fmt: skip


@pytest.fixture
def cli_store(tmp_path):
    path = str(tmp_path / "c")
    with atlas.Atlas.create(path) as s:
        _add(s, "a", temp=[1, 2], platform="buoy, \"1\" é", when=np.datetime64("2024-01-02", "ns"))
        _add(s, "b", temp=[30, 40], platform="ship")
        _add(s, "c", platform="buoy-2")
    return path


def test_cli_ls_where_and_columns(cli_store):
    done = _atlas("ls", cli_store, "--where", "temp.max > 10 or platform startswith 'buoy'")
    assert done.returncode == 0 and done.stdout.split() == ["a", "b", "c"]
    done = _atlas("ls", cli_store, "--where", "temp overlaps [0, 5]", "--columns", "platform,temp.max,when")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "platform", "temp.max", "when"] and len(lines) == 2
    assert "2024-01-02T00:00:00" in lines[1] and 'buoy, "1" é' in lines[1]
    assert _atlas("ls", cli_store).stdout.split() == ["a", "b", "c"]  # as before


def test_cli_ls_on_an_empty_store(tmp_path):
    path = str(tmp_path / "empty")
    atlas.Atlas.create(path).close()
    done = _atlas("ls", path, "--where", "x == 1", "--columns", "x,y", "--csv")
    assert done.returncode == 0 and done.stdout == "name,x,y\n", done.stderr


def test_cli_ls_json_and_csv(cli_store):
    done = _atlas("ls", cli_store, "--columns", "platform,temp.max,temp.shape", "--json")
    out = json.loads(done.stdout)
    assert out["columns"] == ["platform", "temp.max", "temp.shape"]
    assert out["datasets"][0] == {"name": "a", "platform": 'buoy, "1" é', "temp.max": 2.0, "temp.shape": [2]}
    assert out["datasets"][2]["temp.max"] is None
    assert json.loads(_atlas("ls", cli_store, "--where", "platform == 'ship'", "--json").stdout)["datasets"] == ["b"]
    done = _atlas("ls", cli_store, "--columns", "platform,temp.max", "--csv")
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows == [["name", "platform", "temp.max"], ["a", 'buoy, "1" é', "2.0"], ["b", "ship", "40.0"],
                    ["c", "buoy-2", ""]]  # fmt: skip
    assert _atlas("ls", cli_store, "--json", "--csv").returncode == 2


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--where", "temp.max >"], "position 10"),
        (["--where", "platform == 1"], "holds strings"),
        (["--where", "platfrom == 'x'"], "did you mean 'platform'"),
        (["--columns", "platform,nope"], "no column 'nope'"),
        (["--columns", "a,,b"], "empty column name"),
    ],
)
def test_cli_ls_usage_errors(cli_store, args, fragment):
    done = _atlas("ls", cli_store, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("atlas: error: ") and fragment in lines[0]


# -- against a plain-Python reference ------------------------------------------------------------------

_KEYS = {"i": st.integers(-5, 5), "f": st.sampled_from([-1.5, 0.0, 2.5, float("nan"), 1e300]),
         "s": st.sampled_from(["", "a", "ab", "b", "é", "a'\"", "日本"]), "b": st.booleans()}  # fmt: skip
_OPS = ["==", "!=", "<", "<=", ">", ">="]


def _dataset():
    attrs = st.fixed_dictionaries({}, optional=_KEYS)
    temp = st.one_of(st.none(), st.lists(st.sampled_from([-3.0, 0.0, 1.0, 4.5, float("nan")]), min_size=1, max_size=3))
    return st.tuples(attrs, temp)


def _predicate():
    def cmp(key):
        return st.tuples(st.just(key), st.sampled_from([*_OPS, "in", "not in", "is null", "is not null", "between"]),
                         _KEYS[key])  # fmt: skip

    values = st.sampled_from([-3, 0, 1.0, 4])
    stats = st.tuples(st.sampled_from(["temp.min", "temp.max"]), st.sampled_from(_OPS), values)
    overlap = st.tuples(st.just("temp"), st.just("overlaps"), st.sampled_from([(-5, -1), (0, 1), (2, 9), (5, 4)]))
    leaf = st.one_of(*(cmp(k) for k in ("i", "f", "s")), stats, overlap,
                     st.tuples(st.just("b"), st.sampled_from(["==", "!="]), st.booleans()))  # fmt: skip
    logic = st.sampled_from(["and", "or", "not"])
    return st.recursive(leaf, lambda inner: st.tuples(logic, inner, inner), max_leaves=5)


def _expr(p):
    if p[0] in ("and", "or", "not"):
        a, b = _expr(p[1]), _expr(p[2])
        return a & b if p[0] == "and" else a | b if p[0] == "or" else ~a
    key, op, value = p
    if op in ("is null", "is not null"):
        return atlas.search.as_expression((key, op))
    if op in ("in", "not in"):
        value = [value]
    elif op == "between":
        value = (value, value)
    return atlas.search.as_expression((key, op, value))


def _reference(p, attrs, stats):
    """``p`` evaluated on one dataset in plain Python."""
    if p[0] in ("and", "or", "not"):
        a = _reference(p[1], attrs, stats)
        if p[0] == "not":
            return not a
        b = _reference(p[2], attrs, stats)
        return (a and b) if p[0] == "and" else (a or b)
    key, op, value = p
    if op == "overlaps":
        if stats is None:
            return False
        return stats["max"] >= value[0] and stats["min"] <= value[1]
    got = (None if stats is None else stats[key[5:]]) if key.startswith("temp.") else attrs.get(key)
    if op == "is null":
        return got is None
    if op == "is not null":
        return got is not None
    if got is None:
        return False
    if op == "in":
        return got == value
    if op == "not in":
        return not got == value  # noqa: SIM201 (NaN: `not in [nan]` holds)
    if op == "between":
        return value <= got <= value
    return {"==": got == value, "!=": got != value, "<": got < value, "<=": got <= value, ">": got > value,
            ">=": got >= value}[op]  # fmt: skip


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(_dataset(), max_size=6), st.lists(_predicate(), min_size=1, max_size=4))
def test_find_agrees_with_a_plain_python_reference(datasets, predicates):
    with tempfile.TemporaryDirectory() as root:
        s = atlas.Atlas.create(os.path.join(root, "s"))
        truth = {}
        for i, (attrs, temp) in enumerate(datasets):
            name = f"d{i}"
            _add(s, name, temp=temp, **attrs)
            stats = None
            if temp is not None:
                valid = [t for t in temp if not math.isnan(t)]
                stats = {"min": min(valid), "max": max(valid)} if valid else None
            truth[name] = (attrs, stats, temp is not None)
        if len(datasets) > 2:
            s.flush()  # the first rows committed, a later one pending
            _add(s, "z", temp=[2.0], i=0, s="a")
            truth["z"] = ({"i": 0, "s": "a"}, {"min": 2.0, "max": 2.0}, True)
        for p in predicates:
            expected = sorted(n for n, (attrs, stats, _) in truth.items() if _reference(p, attrs, stats))
            try:
                got = s.find(_expr(p))
            except UnknownColumnError:
                # only when no dataset has a column the predicate names
                assert any(not any(_has(k, a, t) for a, _, t in truth.values()) for k in _leaves(p))
                continue
            assert got == expected, p
        s.discard()
        s.close()


def _has(key, attrs, has_temp):
    return has_temp if key.split(".")[0] == "temp" else key in attrs


def _leaves(p):
    if p[0] in ("and", "or", "not"):
        return _leaves(p[1]) | _leaves(p[2])
    return {p[0]}


def test_one_table_per_catalogue_keeps_a_bounded_number_of_columns(buoys):
    from atlas.search.catalog_table import catalog_table

    cat = _catalog_of(dict(buoys.session.state().snapshot.items()), split=2)
    table = catalog_table(cat)
    assert catalog_table(cat) is table
    assert table_of_state(SimpleNamespace(catalog=cat, pending={}, dirty=set())) is table
    for name in table.column_names():
        table.column(name)
    assert len(table._columns) == table.cached_columns < len(table.column_names())
    assert catalog_table(_catalog_of(dict(buoys.session.state().snapshot.items()), split=1)) is not table


def test_datasets_added_through_xarray_expose_no_internal_keys(tmp_path):
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset(
        {"TEMP": (("depth",), np.array([3.0, 4.0, 5.0]), {"units": "degC"})},
        coords={"depth": [0.0, 10.0, 20.0]},
        attrs={"platform_code": "6900123", "project": "argo"},
    )
    with atlas.Atlas.create(str(tmp_path / "x")) as s:
        s.add_xr_dataset(ds, "p1")
        frame = s.catalog()
        assert not [c for c in frame.columns if "_atlas_xarray" in c]
        assert s.find("platform_code == '6900123' and TEMP.max >= 5") == ["p1"]
        assert s.find("depth overlaps [15, 30]") == ["p1"]
        s.discard()


def test_datasets_staged_in_one_batch_are_found_before_the_flush(tmp_path):
    with atlas.Atlas.create(str(tmp_path / "b")) as s:
        s.add_datasets(
            (f"b{i}", {"temp": (("depth",), np.array([i, i + 1.0], dtype="float32"))}, {"platform": f"p{i % 2}"})
            for i in range(6)
        )
        assert s.find("platform == 'p1' and temp.max > 3") == ["b3", "b5"]
        assert s.catalog(columns=["temp.count"])["temp.count"].tolist() == [2] * 6
        s.flush()
        assert s.find("platform == 'p1' and temp.max > 3") == ["b3", "b5"]


def _commits(s):
    """Three commits: a base, then overwrites, deletes, a re-creation and a kind change."""
    for i in range(40):
        temp = [i % 7, i % 5] if i % 3 else None
        _add(s, f"p{i:02d}", temp=temp, platform=["buoy-1", "buoy-2", "ship"][i % 3], lat=i * 1.5 - 20, n=i)
    s.flush()
    for i in range(0, 40, 6):
        s.open_dataset(f"p{i:02d}").set_attribute("platform", "moved")
    s.delete_dataset("p01")
    s.delete_dataset("p07")
    _add(s, "q-new", temp=[9, 9], platform="buoy-1", lat=3.0, n=1)
    s.flush()
    _add(s, "p01", temp=[2, 3], platform="ship", lat=0.5, n=99)  # re-created
    s.delete_dataset("p12")
    s.flush()


def test_find_over_several_parts_and_pending_changes_answers_as_a_v1_store(tmp_path):
    """The search by part on a real store (several commits, then uncommitted changes)
    against the same history in a format 1 store, which holds every dataset in memory."""
    from v1_stores import to_v1

    v2 = tmp_path / "v2"
    with atlas.Atlas.create(v2) as s:
        _commits(s)
    v1 = to_v1(Path(shutil.copytree(v2, tmp_path / "v1")))
    stores = [atlas.Atlas.open(v2, mode="r+"), atlas.Atlas.open(v1, mode="r+")]
    where = ["platform == 'ship'", "platform != 'moved' and lat > 0", "temp.max between 2 and 4",
             "temp overlaps [8, 10] or n > 90", "not (platform startswith 'buoy')", "temp.count is null",
             "n in [1, 2, 99]"]  # fmt: skip
    try:
        assert len(stores[0].session.state().catalog.parts) >= 2
        for w in where:
            assert stores[0].find(w) == stores[1].find(w), w
        assert search_parts(table_of_state(stores[0].session.state()), as_expression(where[1])) is not None
        for s in stores:  # uncommitted changes on top
            s.open_dataset("p03").set_attribute("platform", "ship")
            s.delete_dataset("p04")
            s.delete_dataset("p01")
            _add(s, "p01", temp=[1, 100], platform="buoy-2", lat=-1.0, n=2)
            _add(s, "a-first", platform="ship", lat=9.0)
        for w in where:
            assert stores[0].find(w) == stores[1].find(w), w
        assert "p01" in stores[0].find("temp.max == 100") and "p03" in stores[0].find("platform == 'ship'")
        by_part = search_parts(table_of_state(stores[0].session.state()), as_expression(where[1]))
        assert by_part == stores[1].find(where[1])  # the path taken, not the merged table's
    finally:
        for s in stores:
            s.discard()
            s.close()
