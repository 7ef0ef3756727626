"""``Atlas.add_datasets``: the batched ingest path stages exactly what the per-call path does."""

from __future__ import annotations

import copy
import datetime
from types import MappingProxyType

import numpy as np
import pytest
from faults import FaultyBackend, patched_resolve
from v1_stores import to_v1

import atlas
from atlas import batch as batch_module
from atlas import errors
from atlas.engine import staged

BIG = 300_000  # float64 cells: more than one default chunk (1 MiB)


def sample(i: int) -> tuple[str, dict, dict]:
    """Dataset ``i`` of a varied batch: every dtype family, 0-d, empty, multi-chunk, fill values."""
    arrays = {
        "temp": (["time"], (np.arange(24, dtype=np.float32) + i) * np.float32(0.5)),
        "count": (["time"], np.arange(24, dtype=np.int16) - i, np.int16(-1)),
        "ok": (["time"], np.arange(24) % (i + 2) == 0),
        "label": (["station"], np.array([f"s{i}", "", "naïve"], dtype=object)),
        "when": (["time"], np.arange(24, dtype=np.int64).astype("datetime64[ns]") + np.timedelta64(i, "s")),
        "scalar": ((), np.float64(i) * 1.5),
        "empty": (["n"], np.zeros(0, np.int32)),
        "grid": (["y", "x"], np.arange(12, dtype=np.uint8).reshape(3, 4) + i),
        "nan": (["time"], np.where(np.arange(24) % 3 == 0, np.nan, np.arange(24.0)), 0.0),
    }
    if i == 1:
        arrays["big"] = (["n"], np.linspace(0, 1, BIG))
    attrs = {"lat": 12.5 + i, "platform": "buoy", "n": i, "flags": [1, 2, 3], "ok": True}
    return f"ds{i:03d}", arrays, attrs


def per_call(store: atlas.Atlas, name: str, arrays: dict, attrs: dict) -> None:
    ds = store.create_dataset(name)
    for array, spec in arrays.items():
        dims, data = spec[0], np.asarray(spec[1])
        fill = spec[2] if len(spec) == 3 else None
        dtype = {"M": "timestamp_nanoseconds", "O": "string"}.get(data.dtype.kind, data.dtype)
        ds.define_array(array, dtype, dims, data.shape, fill_value=fill)
        ds.write_array(array, [0] * data.ndim, data)
    for key, value in attrs.items():
        ds.set_attribute(key, value)


def snapshot(store: atlas.Atlas) -> dict:
    """Everything a reader can see of a store, plus its dataset records (ids, slots, stats)."""
    out = {}
    for name in store.list_datasets():
        ds = store.open_dataset(name)
        arrays = {}
        for a in ds.list_arrays():
            data = ds.read_array(a)
            cells = data.tolist() if data.dtype == object else data.tobytes()  # bytes: NaN equals NaN
            arrays[a] = (ds.array_meta(a), ds.array_stats(a), data.dtype, data.shape, cells)
        out[name] = (ds.attributes(), arrays, store._st.dataset(name))
    return out


def test_round_trip_equals_the_per_call_path(tmp_path):
    batch = [sample(i) for i in range(4)]
    with atlas.Atlas.create(tmp_path / "a") as a:
        for entry in batch:
            per_call(a, *entry)
    with atlas.Atlas.create(tmp_path / "b") as b:
        assert b.add_datasets(iter(batch)) == [name for name, _, _ in batch]
    a, b = atlas.Atlas.open(tmp_path / "a"), atlas.Atlas.open(tmp_path / "b")
    want, got = snapshot(a), snapshot(b)
    assert list(got) == list(want)
    for name in want:
        assert got[name] == want[name], name
    assert b.verify() == []
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(p.name for p in (tmp_path / "a").iterdir())


def test_pending_changes_are_visible_to_the_handle_only(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    store.add_datasets([("one", {"v": (["n"], np.arange(5.0))}, {"k": "x"}), ("two", {})])
    assert store.has_pending_changes
    assert store.list_datasets() == ["one", "two"]
    assert store.open_dataset("one").read_array("v", [1], [3]).tolist() == [1.0, 2.0, 3.0]
    assert store.open_dataset("one").get_attribute("k") == "x"
    assert store.open_dataset("two").list_arrays() == []
    other = atlas.Atlas.open(tmp_path / "s", mode="r")
    assert other.list_datasets() == []
    store.discard()
    assert store.list_datasets() == [] and not store.has_pending_changes
    store.close()


def test_later_calls_see_and_change_batched_data(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets([("d", {"v": (["n"], np.arange(4, dtype=np.int64))})])
        ds = store.open_dataset("d")
        ds.write_array("v", [2], np.array([20], np.int64))
        ds.set_attribute("after", 1)
    ds = atlas.Atlas.open(tmp_path / "s").open_dataset("d")
    assert ds.read_array("v").tolist() == [0, 1, 20, 3]
    assert ds.attributes() == {"after": 1}


class _EqualToA:
    """Not a str, but equal to the attribute key ``"a"`` (and hashed as it)."""

    def __eq__(self, other: object) -> bool:
        return other == "a"

    def __hash__(self) -> int:
        return hash("a")


class _StrEqualToA(str):
    """A str of any text, equal to ``"a"`` (and hashed as it)."""

    def __eq__(self, other: object) -> bool:
        return other == "a"

    def __hash__(self) -> int:
        return hash("a")


class _StrEqualToAny(str):
    """A valid str key equal to every object but ``""`` (hashed as a lone surrogate)."""

    def __eq__(self, other: object) -> bool:
        return other != ""

    def __hash__(self) -> int:
        return hash("\ud800")


BAD = [
    ("bad dataset name", ("a/b", {}), errors.InvalidNameError),
    ("name twice", ("d000", {}), errors.DatasetExistsError),
    ("existing name", ("old", {}), errors.DatasetExistsError),
    ("not a tuple", ["x", {}], errors.InvalidArgumentError),
    ("arrays not a mapping", ("x", [1, 2]), errors.InvalidArgumentError),
    ("bad array name", ("x", {"_v": (["n"], np.zeros(2))}), errors.InvalidNameError),
    ("spec not a tuple", ("x", {"v": np.zeros(2)}), errors.InvalidArgumentError),
    ("data not an array", ("x", {"v": (["n"], [1.0, 2.0])}), errors.DTypeError),
    ("rank mismatch", ("x", {"v": (["n", "m"], np.zeros(2))}), errors.InvalidArgumentError),
    ("dims a str", ("x", {"v": ("n", np.zeros(2))}), errors.InvalidArgumentError),
    ("dim not hashable", ("x", {"v": ([["n"]], np.arange(3.0))}), errors.InvalidNameError),
    ("dim not a str", ("x", {"v": ([b"n"], np.arange(3.0))}), errors.InvalidNameError),
    ("unsupported dtype", ("x", {"v": (["n"], np.zeros(2, np.float16))}), errors.DTypeError),
    ("fill of wrong kind", ("x", {"v": (["n"], np.zeros(2, np.int8), 0.5)}), TypeError),
    ("fill out of range", ("x", {"v": (["n"], np.zeros(2, np.int8), 300)}), OverflowError),
    ("attribute None", ("x", {}, {"k": None}), errors.DTypeError),
    ("attribute key empty", ("x", {}, {"": 1}), errors.InvalidNameError),
    # Keys equal to a key checked earlier in the batch ("a", in every good entry) but
    # not that str: each is checked itself.
    ("attribute key equal to a checked one", ("x", {}, {_EqualToA(): 1}), errors.InvalidNameError),
    ("attribute key a str equal to a checked one", ("x", {}, {_StrEqualToA("\ud800"): 1}), errors.InvalidNameError),
    # A dataset's attributes are checked in order, each key then its value.
    ("attribute value before a bad key", ("x", {}, {"k": None, "": 1}), errors.DTypeError),
    ("attribute value before a bad key (mapping)", ("x", {}, MappingProxyType({"k": None, "": 1})), errors.DTypeError),
    ("attributes not a mapping", ("x", {}, [("k", 1)]), errors.InvalidArgumentError),
]


@pytest.mark.parametrize(("what", "entry", "error"), BAD, ids=[b[0] for b in BAD])
def test_bad_entry_is_refused_and_nothing_is_staged(tmp_path, what, entry, error):
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.create_dataset("old")
    store = atlas.Atlas.open(tmp_path / "s")
    state = store._st
    before = (state.next_slot, state.next_dataset_id, dict(state.pending), state.changes)
    good = [(f"d{i:03d}", {"v": (["n"], np.arange(3.0))}, {"a": i}) for i in range(2)]
    with pytest.raises(error):
        store.add_datasets([*good, entry])
    assert not store.has_pending_changes
    assert (state.next_slot, state.next_dataset_id, dict(state.pending), state.changes) == before
    assert all(not e.pending for e in state.engines.values())
    store.flush()
    assert atlas.Atlas.open(tmp_path / "s").list_datasets() == ["old"]


def test_a_key_equal_to_others_does_not_stand_for_them(tmp_path):
    # A valid key of a str subclass equal to other keys, then a key it equals but
    # that is not valid: the second is checked itself.
    with atlas.Atlas.create(tmp_path / "s") as store:
        with pytest.raises(errors.InvalidNameError, match="lone surrogate"):
            store.add_datasets([("x", {}, {_StrEqualToAny("k"): 1}), ("y", {}, {"\ud800": 2})])
        assert not store.has_pending_changes


@pytest.mark.parametrize("store_kind", ["empty", "v2", "v1"])
def test_a_name_is_taken_by_a_pending_or_committed_dataset_only(tmp_path, store_kind):
    # The batch checks its names at once (an empty snapshot is not searched): a
    # dataset created or kept by the handle takes its name, a deleted one frees it.
    path = tmp_path / "s"
    with atlas.Atlas.create(path) as store:
        if store_kind != "empty":
            store.add_datasets([("kept", {}), ("deleted", {"v": (["n"], np.arange(2.0))})])
    if store_kind == "v1":
        to_v1(path)
    store = atlas.Atlas.open(path)
    store.create_dataset("pending")
    store.create_dataset("undone")
    store.delete_dataset("undone")
    taken = ["pending"] + (["kept", "deleted"] if store_kind != "empty" else [])
    for name in taken:
        with pytest.raises(errors.DatasetExistsError, match=f"dataset '{name}' already exists"):
            store.add_datasets([("fresh", {}), (name, {})])
        assert store.list_datasets() == sorted({"pending", *taken})
    if store_kind != "empty":
        store.delete_dataset("deleted")
    free = ["undone", "fresh"] + (["deleted"] if store_kind != "empty" else [])
    assert store.add_datasets([(name, {"v": (["n"], np.arange(3.0))}) for name in free]) == free
    store.close()
    reopened = atlas.Atlas.open(path)
    assert reopened.list_datasets() == sorted({*taken, *free})
    assert reopened.open_dataset("deleted" if store_kind != "empty" else "undone").read_array("v").tolist() == [0, 1, 2]


def test_names_are_checked_against_every_part_of_the_catalogue(tmp_path):
    # Batches committed one part each, with deletions and re-creations in later parts:
    # a batch is refused for the first of its names (in its order) that has a
    # dataset, committed or pending, whichever part holds it, and nothing is staged.
    path = tmp_path / "s"
    store = atlas.Atlas.create(path)
    for lo in range(0, 40, 10):
        store.add_datasets((f"d{i:03d}", {"v": (["n"], np.arange(2.0) + i)}) for i in range(lo, lo + 10))
        store.flush()
    for name in ("d003", "d015", "d031"):
        store.delete_dataset(name)
    store.flush()
    store.add_datasets([("d015", {}), ("a", {})])  # re-created in the newest part
    store.flush()
    store.delete_dataset("d021")  # pending
    assert len(store._st.catalog.parts) > 1
    taken = {"d015": ["x", "d003", "d015", "d021", "d022"], "d022": ["d003", "d021", "d022", "d031", "d000"],
             "d039": ["zz", "d031", "d039"], "a": ["a0", "d003", "a"], "d000": ["d000", "b"]}  # fmt: skip
    for first, batch in taken.items():
        before = store.list_datasets()
        with pytest.raises(errors.DatasetExistsError, match=f"dataset '{first}' already exists"):
            store.add_datasets((name, {}) for name in batch)
        assert store.list_datasets() == before
    free = ["d003", "d021", "d031", "d040", "b", "0"]
    assert store.add_datasets((name, {"v": (["n"], np.arange(3.0))}) for name in free) == free
    store.close()
    with atlas.Atlas.open(path, mode="r") as reopened:
        assert reopened.list_datasets() == sorted({"a", *free} | {f"d{i:03d}" for i in range(40)})
        assert reopened.open_dataset("d021").read_array("v").tolist() == [0, 1, 2]


def test_bad_arguments_and_read_only(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as store:
        for bad in ("name", {"a": 1}, 5, None):
            with pytest.raises(errors.InvalidArgumentError, match="iterable"):
                store.add_datasets(bad)
    ro = atlas.Atlas.open(tmp_path / "s", mode="r")
    with pytest.raises(errors.ReadOnlyError):
        ro.add_datasets([("x", {})])
    ro.close()
    with pytest.raises(errors.StoreClosedError):
        ro.add_datasets([("x", {})])


def test_flush_of_a_batch_is_atomic(tmp_path, monkeypatch):
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets([("first", {"v": (["n"], np.arange(3.0))})])
    with patched_resolve(monkeypatch, lambda inner: FaultyBackend(inner, expose_map=False)) as made:
        store = atlas.Atlas.open(tmp_path / "s")
    batch = [(f"b{i:04d}", {"v": (["n"], np.full(3, float(i)))}, {"i": i}) for i in range(500)]
    store.add_datasets(batch)
    made[-1].arm(1, "error", "commit")
    with pytest.raises(errors.BackendError):
        store.flush()
    assert atlas.Atlas.open(tmp_path / "s").list_datasets() == ["first"]
    made[-1].disarm()
    store.flush()  # the changes were kept: the retry commits all of them at once
    reopened = atlas.Atlas.open(tmp_path / "s")
    assert len(reopened.list_datasets()) == 501
    assert reopened.open_dataset("b0499").read_array("v").tolist() == [499.0] * 3
    assert reopened.open_dataset("b0499").get_attribute("i") == 499


class _Text(str):
    """A str subclass: typed through the general path, never shared."""


#: One attribute value of every kind ``set_attribute`` takes (dtype inferred).
ATTRIBUTE_VALUES = {
    "float": 12.5,
    "float_neg_zero": -0.0,
    "float_nan": float("nan"),
    "float_inf": float("-inf"),
    "str": "buoy",
    "str_empty": "",
    "str_non_ascii": "naïve ✓",
    "str_subclass": _Text("buoy"),
    "int": 7,
    "int_min": -(2**63),
    "int_max": 2**63 - 1,
    "int_uint64": 2**63,
    "bool": True,
    "bool_false": False,
    "np_float32": np.float32(0.1),
    "np_float64": np.float64(2.5),
    "np_int8": np.int8(-3),
    "np_uint64": np.uint64(2**64 - 1),
    "np_bool": np.bool_(True),
    "np_str": np.str_("txt"),
    "np_datetime_s": np.datetime64("2024-01-02T03:04:05", "s"),
    "np_datetime_nat": np.datetime64("NaT", "ns"),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    "date": datetime.date(2024, 1, 2),
    "list_int": [1, 2, 3],
    "list_mixed_numbers": [1, 2.5],
    "list_big_ints": [1, 2**63],
    "list_str": ["a", "é"],
    "list_empty": [],
    "tuple": (True, False),
    "array_2d": np.arange(6, dtype=np.int16).reshape(2, 3),
    "array_str": np.array(["x", "yz"], dtype=object),
    "array_datetime": np.array(["2024-01-01", "NaT"], dtype="datetime64[D]"),
    "array_0d": np.array(1.5),
}


#: The dtype each of ``ATTRIBUTE_VALUES`` is stored as (both paths).
INFERRED = {
    **dict.fromkeys(["float", "float_neg_zero", "float_nan", "float_inf", "np_float64"], "float64"),
    **dict.fromkeys(["str", "str_empty", "str_non_ascii", "str_subclass", "np_str", "list_str", "array_str"], "string"),
    **dict.fromkeys(["int", "int_min", "int_max", "list_int"], "int64"),
    **dict.fromkeys(["int_uint64", "np_uint64", "list_big_ints"], "uint64"),
    **dict.fromkeys(["bool", "bool_false", "np_bool", "tuple"], "bool"),
    **dict.fromkeys(["np_datetime_s", "np_datetime_nat", "datetime", "date"], "timestamp_nanoseconds"),
    "array_datetime": "timestamp_nanoseconds",
    "np_float32": "float32",
    "np_int8": "int8",
    "list_empty": "float64",
    "list_mixed_numbers": "float64",
    "array_2d": "int16",
    "array_0d": "float64",
}


def typed_repr(typed: dict) -> str:
    """``repr`` of staged typed attributes: tells 1, 1.0 and True apart, and -0.0 from 0.0."""
    return repr({key: sorted(value.items()) for key, value in typed.items()})


def test_staged_attributes_equal_the_per_call_path_for_every_value_kind(tmp_path):
    # Several datasets repeat the same values (the batch shares typed string forms).
    names = [f"d{i}" for i in range(3)]
    per = atlas.Atlas.create(tmp_path / "a")
    for name in names:
        ds = per.create_dataset(name)
        for key, value in ATTRIBUTE_VALUES.items():
            ds.set_attribute(key, value)
    bat = atlas.Atlas.create(tmp_path / "b")
    bat.add_datasets((name, {}, dict(ATTRIBUTE_VALUES)) for name in names)
    for name in names:
        want, got = per._st.pending[name].attributes, bat._st.pending[name].attributes
        assert list(got) == list(ATTRIBUTE_VALUES)
        assert typed_repr(got) == typed_repr(want), name
        assert {key: typed["t"] for key, typed in want.items()} == INFERRED
        for key in got:
            assert [type(v) for v in got[key].values()] == [type(v) for v in want[key].values()], key
    per.flush()
    bat.flush()
    for name in names:
        assert repr(bat.open_dataset(name).attributes()) == repr(per.open_dataset(name).attributes())
    per.close()
    bat.close()


def test_a_shared_string_value_changes_in_one_dataset_only(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets((f"d{i}", {}, {"platform": "buoy", "note": "naïve"}) for i in range(3))
        store.open_dataset("d1").set_attribute("platform", "ship")
        store.open_dataset("d2").delete_attribute("note")
    store = atlas.Atlas.open(tmp_path / "s", mode="r")
    assert [store.open_dataset(f"d{i}").attributes() for i in range(3)] == [
        {"platform": "buoy", "note": "naïve"},
        {"platform": "ship", "note": "naïve"},
        {"platform": "buoy"},
    ]


#: Bad attribute keys and values: each refused by ``add_datasets`` as ``set_attribute`` refuses it.
BAD_ATTRIBUTES = [
    ("value None", "k", None),
    ("int over uint64", "k", 2**64),
    ("int under int64", "k", -(2**63) - 1),
    ("lone surrogate value", "k", "a\udc80"),
    ("lone surrogate in a str subclass", "k", _Text("\ud800")),
    ("object value", "k", object()),
    ("float16 scalar", "k", np.float16(1)),
    ("list of mixed kinds", "k", [1, "a"]),
    ("list of ints of both signs beyond int64", "k", [-1, 2**63]),
    ("empty key", "", 1.0),
    ("int key", 3, "x"),
    ("lone surrogate key", "\udc80", "x"),
]


@pytest.mark.parametrize(("what", "key", "value"), BAD_ATTRIBUTES, ids=[b[0] for b in BAD_ATTRIBUTES])
def test_bad_attribute_gets_the_per_call_error_and_nothing_is_staged(tmp_path, what, key, value):
    store = atlas.Atlas.create(tmp_path / "s")
    ds = store.create_dataset("probe")
    with pytest.raises(errors.AtlasError) as per_call_error:
        ds.set_attribute(key, value)
    store.discard()
    # Good datasets with the same key and string values first: the bad entry comes
    # after keys and typed strings the batch already remembers.
    good = [(f"d{i}", {}, {"k": "x", "kk": 1.5, "kkk": 2}) for i in range(3)]
    with pytest.raises(type(per_call_error.value)) as batch_error:
        store.add_datasets([*good, ("bad", {}, {"k": "x", key: value})])
    assert str(batch_error.value) == str(per_call_error.value)
    assert not store.has_pending_changes and store.list_datasets() == []
    store.close()


def pending_state(store: atlas.Atlas) -> tuple:
    """A deep picture of a handle's pending changes: records (stats included), the
    objects themselves, staged chunks, counters."""
    st = store._st
    records = {name: copy.deepcopy(ds) for name, ds in st.pending.items()}
    ids = {name: (id(ds), None if ds is None else {a: id(m) for a, m in ds.arrays.items()})
           for name, ds in st.pending.items()}  # fmt: skip
    staged = {a: {slot: {c: (chunk.values.tobytes(), None if chunk.written is None else chunk.written.tobytes())
                         for c, chunk in chunks.items()} for slot, chunks in e.pending.items()}
              for a, e in st.engines.items()}  # fmt: skip
    return records, ids, staged, st.next_slot, st.next_dataset_id, st.base.generation


@pytest.mark.parametrize("verb", ["build", "put", "commit"])
def test_a_failed_flush_leaves_the_pending_state_exactly_as_it_was(tmp_path, monkeypatch, verb):
    # New datasets of this generation are the commit's rows themselves (not copies):
    # the stats the commit sets on them must be gone after it fails.  Mixed shapes,
    # dtypes and attributes, next to a changed, a deleted and a per-call dataset.
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets([sample(0), ("gone", {"v": (["n"], np.arange(3.0))})])
    with patched_resolve(monkeypatch, lambda inner: FaultyBackend(inner, expose_map=False)) as made:
        store = atlas.Atlas.open(tmp_path / "s")
    batch = [sample(i) for i in range(1, 12)]
    batch[3] = (batch[3][0], batch[3][1], {})  # no attributes
    store.add_datasets(batch)
    per_call(store, "percall", *sample(20)[1:])
    store.open_dataset("ds000").set_attribute("lat", -1.0)
    store.open_dataset("ds000").write_array("temp", [0], np.zeros(24, np.float32))
    store.delete_dataset("gone")
    before = pending_state(store)
    assert all(m.stats is None for a in ("ds001", "percall") for m in store._st.pending[a].arrays.values())

    def fail(*args, **kwargs):
        raise errors.BackendError("injected failure while building the catalogue part")

    with monkeypatch.context() as m:
        if verb == "build":  # the rows' stats are set, then the catalogue part fails
            m.setattr(atlas.txn.commit, "catalogue_files", fail)
        else:
            made[-1].arm(1, "error", verb)
        with pytest.raises(errors.BackendError):
            store.flush()
    assert pending_state(store) == before
    made[-1].disarm()
    store.close()  # the retry commits every change at once
    with atlas.Atlas.create(tmp_path / "w") as want:
        want.add_datasets([sample(0)])
        for name, arrays, attrs in batch:
            per_call(want, name, arrays, attrs)
        per_call(want, "percall", *sample(20)[1:])
        want.open_dataset("ds000").set_attribute("lat", -1.0)
        want.open_dataset("ds000").write_array("temp", [0], np.zeros(24, np.float32))
    got, expected = snapshot(atlas.Atlas.open(tmp_path / "s")), snapshot(atlas.Atlas.open(tmp_path / "w"))
    assert list(got) == list(expected)
    for name in expected:
        g, w = got[name], expected[name]
        assert g[:2] == w[:2], name
        # ids, slots and versions differ (other histories); the stats and schemas do not
        assert {a: (m.stats, m.dtype, m.shape) for a, m in g[2].arrays.items()} == \
            {a: (m.stats, m.dtype, m.shape) for a, m in w[2].arrays.items()}, name


def test_attributes_of_a_large_batch_equal_the_per_call_path(tmp_path):
    # Keys of one kind of value (float, str, int) or of mixed kinds, out-of-range
    # ints, more distinct strings than the batch shares, keys that are equal but
    # other objects, one key order or two: typed exactly as the per-call path types
    # them (types, values, key order, -0.0, NaN).
    mixed = [1.5, 7, True, "x", _Text("t"), [1, 2], np.float32(0.25), -0.0, float("nan"), 2**63, "naïve"]

    def attrs(i: int, reorder: bool) -> dict:
        out = {"f": i * 0.5, "s": ["buoy", "ship", "naïve ✓"][i % 3], "i": i - 3 if i != 5 else 2**63,
               "m": mixed[i % len(mixed)], "u": f"id-{i}", "".join(["k", "2"]): i}  # fmt: skip
        return dict(reversed(out.items())) if reorder else out

    for reorder in (False, True):
        names = [f"d{i:04d}" for i in range(1100)]  # more distinct "u" strings than are shared
        given = [attrs(i, reorder and i % 2) for i in range(len(names))]
        per = atlas.Atlas.create(tmp_path / f"a{reorder}")
        for name, a in zip(names, given):
            ds = per.create_dataset(name)
            for key, value in a.items():
                ds.set_attribute(key, value)
        bat = atlas.Atlas.create(tmp_path / f"b{reorder}")
        bat.add_datasets((name, {}, a) for name, a in zip(names, given))
        for name, a in zip(names, given):
            want, got = per._st.pending[name].attributes, bat._st.pending[name].attributes
            assert list(got) == list(a)
            assert typed_repr(got) == typed_repr(want), name
            for key in got:
                assert type(key) is str
                assert [type(v) for v in got[key].values()] == [type(v) for v in want[key].values()], key
        per.discard()
        bat.discard()


@pytest.mark.parametrize(("what", "value"), [("None", None), ("int over uint64", 2**64), ("surrogate", "a\udc80")])
def test_a_bad_value_among_many_datasets_gets_the_per_call_error_and_nothing_is_staged(tmp_path, what, value):
    store = atlas.Atlas.create(tmp_path / "s")
    with pytest.raises(errors.AtlasError) as per_call_error:
        store.create_dataset("probe").set_attribute("k", value)
    store.discard()
    batch = [(f"d{i:03d}", {}, {"k": "x" if i % 2 else 1.5, "n": i}) for i in range(40)]
    batch[17] = ("d017", {}, {"k": value, "n": 17})
    with pytest.raises(type(per_call_error.value)) as batch_error:
        store.add_datasets(batch)
    assert str(batch_error.value) == str(per_call_error.value)
    assert not store.has_pending_changes
    store.close()


def _committed(path, name):
    """Dataset ``name`` as a fresh read-only handle reads it from the store."""
    with atlas.Atlas.open(path, mode="r") as fresh:
        return fresh._st.dataset(name)


def test_a_batch_committed_after_a_conflict_and_a_rebase_has_its_stats_and_versions(tmp_path):
    """The new datasets are the rows of the failed commit and then, rebased onto the
    other writer's commit, of the next one (a copy then, of an older version): the
    stored stats and versions are those of the commit that landed."""
    path = tmp_path / "s"
    with atlas.Atlas.create(path) as first:
        first.add_datasets([sample(0)])
    store, other = atlas.Atlas.open(path), atlas.Atlas.open(path)
    store.add_datasets([(f"x{i}", {"temp": (["z"], np.array([i, -i, 7], np.int64))}, {"k": i}) for i in range(4)])
    held = store.open_dataset("x3")  # a view kept across the commits
    other.add_datasets([("w", {"temp": (["z"], np.array([100], np.int64))}, {})])
    other.flush()
    with pytest.raises(errors.ConflictError):
        store.flush()
    assert all(m.stats is None for m in store._st.pending["x3"].arrays.values())
    store.refresh()
    store.flush()
    assert store.generation == 3
    for i in range(4):
        ds = _committed(path, f"x{i}")
        assert ds.version == 3 and (ds.arrays["temp"].stats.minimum, ds.arrays["temp"].stats.maximum) == (-i, 7)
    assert _committed(path, "w").version == 2
    assert held.array_stats("temp")["min"] == -3 and held.get_attribute("k") == 3
    assert store.find("temp.min < -2") == ["x3"]
    other.close()
    store.close()


def test_changes_after_a_commit_do_not_reach_the_committed_rows(tmp_path):
    """The new datasets a commit used as its rows are not changed by later calls:
    the handle changes a copy, and its discard() finds the committed values."""
    path = tmp_path / "s"
    store = atlas.Atlas.create(path)
    store.add_datasets([("p", {"temp": (["z"], np.array([1, 2], np.int64))}, {"k": 1})])
    view = store.open_dataset("p")
    store.flush()
    committed = store._st.dataset("p")
    view.set_attribute("k", 2)
    view.write_array("temp", [0], np.array([5, 6], np.int64))
    assert committed.attributes["k"]["v"] == 1 and committed.arrays["temp"].stats.maximum == 2
    assert store.find("k == 1") == [] and store.find("temp.max == 6") == ["p"]
    store.discard()
    assert view.get_attribute("k") == 1 and view.array_stats("temp")["max"] == 2 and store.find("k == 1") == ["p"]
    store.close()
    ds = _committed(path, "p")
    assert ds.attributes["k"]["v"] == 1 and ds.arrays["temp"].stats.maximum == 2


@pytest.mark.parametrize("landed", [True, False])
def test_a_batch_retried_after_a_commit_of_unknown_outcome(tmp_path, monkeypatch, landed):
    """The commit object is written (or not) and its response lost: the stats the
    failed attempt set are reset, and the retry settles or commits the batch."""
    with patched_resolve(monkeypatch, lambda inner: FaultyBackend(inner, expose_map=False)) as made:
        store = atlas.Atlas.create(tmp_path / "s")
    backend = made[-1]
    store.add_datasets([("q", {"temp": (["z"], np.array([4, 9], np.int64))}, {"k": 1})])
    real = backend.commit

    def lost(*args, **kwargs):
        if landed:
            real(*args, **kwargs)
        raise errors.BackendError("commit atlas.json: response lost (injected)")

    with monkeypatch.context() as m:
        m.setattr(backend, "commit", lost)
        m.setattr(backend, "get_versioned", lambda *a: (_ for _ in ()).throw(errors.BackendError("read lost")))
        with pytest.raises(errors.BackendError):
            store.flush()
    assert store.has_pending_changes and store._st.pending["q"].arrays["temp"].stats is None
    assert store.open_dataset("q").array_stats("temp")["max"] == 9
    store.flush()
    assert store.generation == 1 and not store.has_pending_changes
    ds = _committed(tmp_path / "s", "q")
    assert ds.version == 1 and (ds.arrays["temp"].stats.minimum, ds.arrays["temp"].stats.maximum) == (4, 9)
    store.close()


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8, np.float64])
def test_the_first_batch_of_a_process_is_staged_alike(tmp_path, monkeypatch, dtype):
    # A process that has staged nothing yet: no dtype name nor array schema remembered.
    monkeypatch.setattr(batch_module, "_DTYPE_NAMES", {})
    monkeypatch.setattr(batch_module, "_KNOWN", {})
    values = np.arange(24).astype(dtype)
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.add_datasets((f"d{i:03d}", {"temp": (["time"], values + i)}) for i in range(50))
        state = store._st
        metas = {m.arrays["temp"].slot: m.arrays["temp"] for m in state.pending.values()}
        # the first array (checked in full) and the later ones (remembered) share their dtype name object
        assert staged.staged_alike(metas, state.engine("temp").pending) is not None
    with atlas.Atlas.open(tmp_path / "s") as store:
        assert np.array_equal(store.open_dataset("d007").read_array("temp"), values + 7)
        assert store.open_dataset("d049").array_stats("temp")["max"] == (values + 49).max()
