"""``DatasetView.set_attributes`` (many attributes, all or none) and the attributes
``add_xr_dataset`` stages in one call from its plan, whose values are checked once per
distinct value (:mod:`atlas.xarray.plan`)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

import numpy as np
import pytest

import atlas
from atlas import errors

#: Values of every kind ``set_attribute`` takes, with the forced dtypes of some.
VALUES = {
    "i": 5,
    "big": 2**63 + 1,
    "f": 0.1,
    "nan": float("nan"),
    "s": "text ✓",
    "b": True,
    "i8": np.int8(-3),
    "f32": np.float32(1.5),
    "u64": np.uint64(2**64 - 1),
    "when": np.datetime64("2020-01-02T03:04:05", "s"),
    "pydate": dt.date(2021, 5, 6),
    "list": [1, 2, 3],
    "tuple": ("a", "é"),
    "floats": [1.0, float("inf")],
    "empty": [],
    "grid": np.arange(6, dtype="int16").reshape(2, 3),
    "times": np.array(["2000-01-01", "NaT"], dtype="datetime64[D]"),
    "forced": 7,
    "forced_list": [1, 2],
}
FORCED = {"forced": "int8", "forced_list": "float32"}


def _typed(view: atlas.DatasetView) -> list:
    """The staged typed records, in order (repr: NaN compares equal to itself)."""
    return repr(list(view._ds().attributes.items()))


def test_set_attributes_stores_what_set_attribute_stores(store):
    one, bulk = store.create_dataset("one"), store.create_dataset("bulk")
    for view in (one, bulk):
        view.set_attribute("s", "old")  # overwritten below: keeps its place
        view.set_attribute("kept", 1)
    for key, value in VALUES.items():
        one.set_attribute(key, value, FORCED.get(key))
    bulk.set_attributes(VALUES, dtype=FORCED)
    assert _typed(one) == _typed(bulk)
    assert list(bulk.attributes()) == ["s", "kept", *[k for k in VALUES if k != "s"]]
    store.flush()
    with atlas.Atlas.open(store.location, mode="r") as again:
        assert _typed(again["one"]) == _typed(again["bulk"])
        assert again["bulk"].get_attribute("forced") == np.int8(7)
        assert math.isnan(again["bulk"].get_attribute("nan"))


BAD = [
    ("none", None, None),
    ("overflow", 300, "int8"),
    ("mixed", [1, "a"], None),
    ("surrogate", "bad \udcff", None),
    ("unknown_dtype", 1, "int7"),
    ("object", object(), None),
]


@pytest.mark.parametrize(("key", "value", "dtype"), BAD, ids=[b[0] for b in BAD])
def test_set_attributes_with_one_bad_value_sets_nothing(store, key, value, dtype):
    view = store.create_dataset("d")
    view.set_attribute("a", 1)
    with pytest.raises(errors.AtlasError) as single:
        view.set_attribute(key, value, dtype)
    before = _typed(view)
    values = {"first": 1.0, "a": 2, key: value, "last": "x"}
    with pytest.raises(type(single.value)) as bulk:
        view.set_attributes(values, dtype={key: dtype} if dtype else None)
    assert repr(key) in str(bulk.value)
    assert _typed(view) == before
    store.flush()
    assert store["d"].attributes() == {"a": 1}


@pytest.mark.parametrize("key", ["", 5, None])
def test_set_attributes_with_one_bad_key_sets_nothing(store, key):
    view = store.create_dataset("d")
    with pytest.raises(errors.AtlasError) as single:
        view.set_attribute(key, 1)
    with pytest.raises(type(single.value)):
        view.set_attributes({"ok": 1, key: 2})
    assert view.attributes() == {}


def test_set_attributes_argument_errors(store):
    view = store.create_dataset("d")
    with pytest.raises(errors.InvalidArgumentError, match="mapping"):
        view.set_attributes([("a", 1)])
    with pytest.raises(errors.InvalidArgumentError, match="mapping"):
        view.set_attributes({"a": 1}, dtype="int8")
    with pytest.raises(errors.InvalidArgumentError, match="'b'"):
        view.set_attributes({"a": 1}, dtype={"b": "int8"})
    view.set_attributes({})
    assert view.attributes() == {}
    store.delete_dataset("d")
    with pytest.raises(errors.DatasetNotFoundError):
        view.set_attributes({"a": 1})


def test_set_attributes_on_a_read_only_handle(store):
    store.create_dataset("d").set_attribute("a", 1)
    store.flush()
    with atlas.Atlas.open(store.location, mode="r") as ro:
        with pytest.raises(errors.ReadOnlyError):
            ro["d"].set_attributes({"b": 2})
        assert ro["d"].attributes() == {"a": 1}


# -- add_xr_dataset: the attributes of its plan --------------------------------------------------

xr = pytest.importorskip("xarray")


def _fleet(i: int) -> xr.Dataset:
    """A file of a fleet: the same numpy attribute values and names in every one, a few of its own."""
    t = xr.Variable(("t",), np.arange(4, dtype="float64"), {"units": "days since 1950-01-01", "axis": "T"})
    v = xr.Variable(
        ("t",),
        np.arange(4, dtype="float32") + i,
        {
            "valid_min": np.float32(-2.5),
            "valid_max": np.float32(40),
            "flag_values": np.array([0, 1, 4], dtype="int8"),
            "flag_meanings": "good bad missing",
            "scale": np.float64(i),  # differs per file
            "when": np.datetime64("2001-01-01", "D"),
            "label": "ärger",
            "code": b"\xff",
            "none": None,
        },
    )
    v.encoding.update({"_FillValue": np.float32(-9999.0), "dtype": np.dtype("int16"), "scale_factor": 0.01})
    return xr.Dataset({"TEMP": v}, coords={"TIME": t}, attrs={"platform": f"P{i}", "id": np.int32(6900000 + i)})


def test_repeated_attribute_values_plan_as_when_first_seen():
    """The second plan of a fleet (values from the caches) equals the first (values checked
    anew); a plan's values share nothing with the caches, so changing them changes no later plan."""
    from atlas.xarray import plan as planning

    planning._TYPED.clear()
    planning._TEXT_LISTS.clear()
    first = [repr(planning.plan_dataset(_fleet(i), None).attributes) for i in range(3)]
    again = [planning.plan_dataset(_fleet(i), None).attributes for i in range(3)]
    assert [repr(a) for a in again] == first
    for typed in again[0].values():
        if isinstance(typed["v"], list):
            typed["v"].append("changed")
        if "s" in typed:
            typed["s"].append(99)
    assert [repr(planning.plan_dataset(_fleet(i), None).attributes) for i in range(3)] == first


def test_a_fleet_reads_back_identical(store):
    from atlas.xarray import plan as planning

    planning._TYPED.clear()
    planning._TEXT_LISTS.clear()
    for i in range(3):
        store.add_xr_dataset(_fleet(i), f"f{i}")
    store.flush()
    with atlas.Atlas.open(store.location, mode="r") as again:
        for i in range(3):
            want, got = _fleet(i), again.to_xarray(f"f{i}")
            xr.testing.assert_identical(got, want)
            for name in want.variables:
                assert repr(got[name].attrs) == repr(want[name].attrs), name
                assert type(got[name].attrs.get("flag_values")) is type(want[name].attrs.get("flag_values"))


def test_a_bad_attribute_value_of_a_dataset_stages_nothing(store):
    ds = _fleet(0)
    ds.TEMP.attrs["bad"] = [1, "a"]
    with pytest.raises(errors.DTypeError, match="'bad'"):
        store.add_xr_dataset(ds, "d")
    assert "d" not in store


def test_values_with_the_same_bytes_keep_their_own_types(store):
    """The plan's cache tells apart values whose bytes are equal (scalar or 0-D or 1-D array,
    signed or unsigned, datetime units)."""
    attrs = {
        "scalar": np.float32(1),
        "zero_d": np.array(1, dtype="float32"),
        "one_d": np.array([1], dtype="float32"),
        "int": np.int32(1065353216),  # the bytes of float32 1.0
        "signed": np.int8(-1),
        "unsigned": np.uint8(255),
        "days": np.datetime64(1, "D"),
        "seconds": np.datetime64(1, "s"),
    }
    ds = xr.Dataset({"v": ("t", np.zeros(2), attrs)}, attrs=attrs)
    for name in ("a", "b"):  # the second from the cache
        store.add_xr_dataset(ds, name)
    store.flush()
    for name in ("a", "b"):
        got = store.to_xarray(name)
        for where in (got.attrs, got.v.attrs):
            for key, value in attrs.items():
                assert type(where[key]) is type(value), key
                assert where[key].dtype == value.dtype and np.shape(where[key]) == np.shape(value), key
                assert where[key] == value, key


def test_a_long_list_of_names_is_planned_like_a_short_one():
    """Over 256 variables the list of names is checked anew each time, not remembered."""
    from atlas.xarray import plan as planning

    ds = xr.Dataset({f"v{i}": ("t", np.zeros(1)) for i in range(300)})
    first = planning.plan_dataset(ds, None).attributes
    assert first[planning.K_VARS] == {"t": "string", "v": [f"v{i}" for i in range(300)], "k": "list"}
    assert repr(planning.plan_dataset(ds, None).attributes) == repr(first)
    assert tuple(f"v{i}" for i in range(300)) not in planning._TEXT_LISTS


class _Caseless(str):
    """A str that equals (and hashes as) any str of the same letters in another case."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.lower())


def test_names_that_compare_equal_to_other_names_poison_no_later_plan(store):
    """A str subclass name equal to another name is not what the plan's caches remember:
    a later dataset stores its own names."""
    from atlas.xarray import plan as planning

    planning._TEXT_LISTS.clear()
    odd = xr.Dataset({"x": ("t", np.arange(3))}, attrs={_Caseless("Units"): 1, "title": 2})
    plain = xr.Dataset({"x": ("t", np.arange(3))}, attrs={"units": b"\xff", "title": "t"})
    planning.plan_dataset(odd, None)
    store.add_xr_dataset(plain, "plain")
    assert store["plain"].get_attribute(f"{planning.PREFIX}/attrs") == ["units", "title"]
    store.flush()
    got = store.to_xarray("plain").attrs
    assert list(got) == ["units", "title"] and got["units"] == b"\xff"


class _TwoFaced(Mapping):
    """A mapping whose keys and items disagree: items() holds a key iteration never shows."""

    def __getitem__(self, key):
        return 1

    def __len__(self):
        return 1

    def __iter__(self):
        return iter(["fine"])

    def items(self):
        return [("", 1)]


def test_set_attributes_checks_the_keys_it_stages(store):
    view = store.create_dataset("d")
    with pytest.raises(errors.InvalidNameError):
        view.set_attributes(_TwoFaced())
    assert view.attributes() == {}


def test_the_plan_caches_keep_no_large_value(store):
    """The caches bound the bytes they keep, not only their number of entries: a long text
    value or a list of long names is checked each time, not remembered."""
    from atlas.xarray import plan as planning

    planning._TYPED.clear()
    planning._TEXT_LISTS.clear()
    long = "x" * 100_000
    ds = xr.Dataset(
        {"v": ("t", np.zeros(2))},
        attrs={"text": np.str_(long), "texts": np.array([long] * 4), long: 1},
    )
    store.add_xr_dataset(ds, "d")
    kept = sum(len(key[3]) for key in planning._TYPED) + sum(
        len(name) for names in planning._TEXT_LISTS for name in names
    )
    assert kept < 100_000
    store.flush()
    got = store.to_xarray("d")
    assert got.attrs["text"] == long and list(got.attrs["texts"]) == [long] * 4 and got.attrs[long] == 1
