"""The xarray plan's remembered results equal what the general path computes.

:func:`atlas.xarray.plan.plan_dataset` remembers, across datasets, what it checked
(attribute values, fill values, names, lists of text, whole variables' entries).  Each
test plans datasets with warm caches and compares the plan with one computed with every
cache empty and the per-variable shortcut off: attributes (keys, order, typed values),
arrays, dtypes, chunk shapes and fill values must be the same, and so must any error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import atlas  # noqa: E402
from atlas.xarray import conversions  # noqa: E402
from atlas.xarray import plan as plan_mod  # noqa: E402

_CACHES = ("_TYPED", "_SCALAR_TYPED", "_FILLS", "_ARRAYS", "_LABELS", "_VARIABLES", "_TEXT_LISTS")


def _clear_caches() -> None:
    for name in _CACHES:
        getattr(plan_mod, name).clear()
    conversions._SCALARS.clear()


def _canonical(value):
    """A comparable form of a typed value: exact types, NaN and -0.0 told apart."""
    if isinstance(value, dict):
        return tuple((k, _canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return ("list", tuple(_canonical(v) for v in value))
    if isinstance(value, float):
        return (type(value).__name__, "nan" if math.isnan(value) else value.hex())
    return (type(value).__name__, repr(value))


def _summary(plan):
    attrs = [(key, _canonical(typed)) for key, typed in plan.attributes.items()]
    variables = [
        (vp.name, vp.array, vp.store_dtype, vp.restore_dtype, vp.is_coord, vp.chunk_shape, vp.default_chunks, fill)
        for vp in plan.variables
        for fill in [_canonical(vp.fill)]
    ]
    return attrs, variables


def _outcome(ds, chunks=None):
    try:
        return "ok", _summary(plan_mod.plan_dataset(ds, chunks))
    except Exception as exc:  # the same error must come out both ways
        return "error", type(exc), str(exc)


def _general(ds, monkeypatch, chunks=None):
    """The plan computed from nothing remembered, every variable by the general path."""
    _clear_caches()
    with monkeypatch.context() as m:
        m.setattr(plan_mod, "_variable_signature", lambda vp, packed: None)
        out = _outcome(ds, chunks)
    _clear_caches()
    return out


# -- values ------------------------------------------------------------------------------------

_NUMERIC = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"]

texts = st.one_of(
    st.sampled_from(["", " ", "m", "degree_Celsius", "°C", "µmol", "\udcb0C", "\udcc2\udcb5mol", "a\ud800b"]),
    st.text(max_size=6),
)


@st.composite
def numpy_scalars(draw):
    dtype = np.dtype(draw(st.sampled_from([*_NUMERIC, "bool", ">f4", "<M8[s]", "<M8[ns]", "<m8[ms]", "S3", "U2"])))
    if dtype.kind == "f":
        value = draw(st.sampled_from([0.0, -0.0, 1.5, -2.0, math.nan, math.inf, 9.96921e36, 99999.0]))
        with np.errstate(over="ignore"):
            return dtype.type(value) if dtype.byteorder != ">" else np.array([value], dtype=dtype)[0]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return dtype.type(draw(st.sampled_from([0, 1, -1 if info.min < 0 else 2, int(info.min), int(info.max)])))
    if dtype.kind == "b":
        return np.bool_(draw(st.booleans()))
    if dtype.kind in "Mm":
        return np.array([draw(st.integers(-(2**40), 2**40))], dtype="<i8").view(dtype)[0]
    if dtype.kind == "S":
        return np.bytes_(draw(st.sampled_from([b"", b" ", b"ab", b"\xb0C", b"\xc2\xb5"])))
    return np.str_(draw(st.sampled_from(["", "a", "°"])))


@st.composite
def small_arrays(draw):
    dtype = draw(st.sampled_from(["int8", "float32", "float64", "uint16", "S2", "U1", "<M8[D]"]))
    n = draw(st.integers(0, 4))
    values = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    arr = np.array(values).astype(dtype)
    return arr.reshape(()) if n == 1 and draw(st.booleans()) else arr


attr_values = st.one_of(
    texts,
    numpy_scalars(),
    small_arrays(),
    st.integers(-(2**64), 2**65),
    st.booleans(),
    st.sampled_from([0.0, -0.0, math.nan, 1.25, -math.inf]),
    st.sampled_from([b"K", b"\xff", None, [1, 2], (1.5, "a"), ["x", "y"], [], {"a": 1}]),
)
attr_keys = st.sampled_from(["units", "long_name", "_FillValue", "valid_min", "T.units", "", "_atlas_xarray", "µ"])
attr_dicts = st.dictionaries(attr_keys, attr_values, max_size=5)
encodings = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from([np.dtype("int16"), np.dtype(">f4"), "float32", "nonsense", np.dtype("S1")]),
        "_FillValue": st.one_of(numpy_scalars(), st.sampled_from([-1, 1.5, "x", b" "])),
        "units": texts,
        "calendar": st.sampled_from(["standard", "proleptic_gregorian"]),
        "scale_factor": numpy_scalars(),
        conversions.CF_PACKED: st.booleans(),
    },
)


#: Values equal (or alike) in Python but stored differently: a remembered result must never
#: be handed out for another of them.
CONFUSABLE = [
    0, False, 0.0, -0.0, 1, True, 1.0, np.int8(0), np.uint8(0), np.int64(1), np.bool_(False), np.bool_(True),
    np.float32(0.0), np.float32(-0.0), np.float64(-0.0), np.float16(1), np.float32(1), "0", "1", b"0",
    np.bytes_(b"0"), np.str_("0"), np.datetime64(0, "s"), np.datetime64(0, "ns"), np.timedelta64(0, "ms"),
    np.timedelta64(0, "s"), np.array([0], "int8"), np.array(0, "int8"), np.array([0], ">i2"), np.array([0], "<i2"),
    np.array([0.0], "float32"), np.array([-0.0], "float32"), [0], (0,), [False], None, math.nan, 2**63, -(2**63),
]
#: Data dtypes, some stored alike but restored differently.
DATA_DTYPES = ["int8", "float32", ">f4", "float16", "float64", "<i2", ">i2", "<M8[ns]", "<M8[s]", "S2", "object"]
NAMES = ["T", "TEMP", "TEMP_QC", "%41", "_x", "温度"]


def _data(dtype):
    if dtype.startswith("<m8"):
        return np.arange(4).astype("<i8").view(dtype)
    if dtype == "object":
        return np.array(["a", "bc", "", "d"], dtype=object)
    return np.arange(4).astype(dtype)


@st.composite
def variable_specs(draw):
    return [draw(st.sampled_from(DATA_DTYPES)), draw(attr_dicts), draw(encodings)]


@st.composite
def fleets(draw):
    """A dataset and variants of it that differ in one place (the case the caches serve)."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    specs = {name: draw(variable_specs()) for name in names}
    gattrs = draw(attr_dicts)
    fleet = []
    for _ in range(draw(st.integers(1, 4))):
        fleet.append(({n: [d, dict(a), dict(e)] for n, (d, a, e) in specs.items()}, dict(gattrs)))
        specs = {n: [d, dict(a), dict(e)] for n, (d, a, e) in specs.items()}
        name = draw(st.sampled_from(names))
        change = draw(st.sampled_from(["value", "dtype", "encoding", "gattr", "order"]))
        if change == "value":
            key = draw(st.sampled_from(sorted(specs[name][1]) or ["units"]))
            specs[name][1][key] = draw(st.sampled_from(CONFUSABLE))
        elif change == "dtype":
            specs[name][0] = draw(st.sampled_from(DATA_DTYPES))
        elif change == "encoding":
            specs[name][2] = draw(encodings)
        elif change == "gattr":
            gattrs = dict(gattrs)
            gattrs[draw(st.sampled_from([f"{n}.{k}" for n in names for k in ("units", "long_name", "")]))] = "x"
        else:
            specs = dict(reversed(specs.items()))
    out = []
    for variables, attrs in fleet:
        ds = xr.Dataset(attrs=attrs)
        for name, (dtype, vattrs, encoding) in variables.items():
            var = xr.Variable(("T",), _data(dtype), attrs=vattrs)
            var.encoding = encoding
            ds[name] = var
        out.append(ds)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(fleet=fleets())
def test_warm_plans_equal_the_general_path(fleet, monkeypatch):
    expected = [_general(ds, monkeypatch) for ds in fleet]
    for _ in range(2):  # cold caches, then warm ones (each dataset after itself and the others)
        assert [_outcome(ds) for ds in fleet] == expected
    _clear_caches()
    assert [_outcome(ds) for ds in reversed(fleet)] == expected[::-1]


def _one_variable(name="V", dtype="float32", attrs=None, encoding=None, others=()):
    ds = xr.Dataset()
    for other in others:
        ds[other] = xr.Variable(("n",), np.zeros(2, "int8"), attrs={"units": "1"})
    var = xr.Variable(("n",), _data(dtype)[:2], attrs=attrs or {})
    var.encoding = dict(encoding or {})
    ds[name] = var
    return ds


def _variants():
    """Datasets of one variable that differ in one respect each; several are confusable."""
    out = []
    for value in CONFUSABLE:
        out.append(_one_variable(attrs={"valid_min": value}))
        out.append(_one_variable(encoding={"_FillValue": value}))
    for dtype in DATA_DTYPES:
        out.append(_one_variable(dtype=dtype, attrs={"units": "m"}))
    for name in NAMES:
        out.append(_one_variable(name=name, attrs={"units": "m"}))
    out.append(_one_variable(attrs={"units": "m"}, others=["A"]))  # another index
    out.append(_one_variable(encoding={"units": "m"}))  # an encoding, not an attribute
    out.append(_one_variable(encoding={"calendar": "m"}))  # another encoding of the same value
    out.append(_one_variable(attrs={"long_name": "m"}))  # another attribute of the same value
    out.append(_one_variable(attrs={"units": "m"}, encoding={conversions.CF_PACKED: True}))
    out.append(_one_variable(dtype="int8", attrs={"units": "m"}, encoding={conversions.CF_PACKED: True}))
    out.append(_one_variable(attrs={"units": "m", "valid_min": 0}))
    out.append(_one_variable(attrs={"valid_min": 0, "units": "m"}))  # the same attributes in another order
    for dtype in ("int16", ">f4", "float32", "S1"):
        out.append(_one_variable(encoding={"dtype": np.dtype(dtype)}))
    for dtype in ("<m8[s]", "<m8[ms]", "int64", "float64"):  # one fill, read in the variable's unit
        out.append(_one_variable(dtype=dtype, attrs={"_FillValue": np.timedelta64(3, "s")}))
        out.append(_one_variable(dtype=dtype, encoding={"_FillValue": np.timedelta64(3, "s")}))
    return out


def test_each_variant_after_each_other_equals_the_general_path(monkeypatch):
    """Every pair (a, b) of variants: b planned right after a equals b planned from nothing."""
    variants = _variants()
    expected = [_general(ds, monkeypatch) for ds in variants]
    for a in variants:
        _clear_caches()
        _outcome(a)
        for ds, want in zip(variants, expected, strict=True):
            assert _outcome(ds) == want
    _clear_caches()


def test_a_key_taken_by_the_dataset_attributes_is_not_reused_from_a_remembered_variable(monkeypatch):
    """The first dataset's variable ``T`` stores ``units`` under ``T.units``; in the second the
    dataset attribute ``T.units`` holds that key, so ``T``'s ``units`` needs a key of the layout."""
    _clear_caches()
    var = {"T": ("T", np.arange(3.0), {"units": "m", "long_name": "depth"})}
    plain = xr.Dataset(var)
    clashing = xr.Dataset(var, attrs={"T.units": "km"})
    expected = _general(clashing, monkeypatch)
    assert _outcome(plain)[0] == "ok"
    got = _outcome(clashing)
    assert got == expected
    keys = [key for key, _ in got[1][0]]
    assert "T.units" in keys and "_atlas_xarray/v/0/a/0" in keys


def test_remembered_variables_round_trip(tmp_path):
    """Many datasets of one fleet (the same variables, attributes varying a little) read back exactly."""
    _clear_caches()
    written = []
    with atlas.Atlas.create(tmp_path / "s.atlas") as store:
        for k in range(6):
            ds = xr.Dataset(
                {
                    "TEMP": ("T", np.arange(4, dtype="float32") + k, {"units": "degC", "valid_min": np.float32(-2)}),
                    "QC": ("T", np.ones(4, "int8"), {"_FillValue": np.int8(-127), "flags": np.arange(3, dtype="i1")}),
                    "T": ("T", np.arange(4) + 10 * k, {"axis": "T", "note": "even" if k % 2 else -0.0}),
                },
                attrs={"id": f"P{k}", "n": k},
            )
            packing = {"dtype": np.dtype("int16"), "scale_factor": np.float32(0.5), "_FillValue": np.int16(-1)}
            ds["TEMP"].encoding = packing
            store.add_xr_dataset(ds, f"p{k}")
            written.append(ds)
        # The datasets share their remembered typed values: changing one dataset's changes no other's.
        spoilt = store.open_dataset("p0")
        spoilt.set_attribute("QC.flags", [7, 7])
        spoilt.set_attribute("_atlas_xarray/v/0/attrs", ["x"])
        spoilt.delete_attribute("T.axis")
        assert store.open_dataset("p2").get_attribute("QC.flags").tolist() == [0, 1, 2]
        assert store.open_dataset("p2").get_attribute("_atlas_xarray/v/0/attrs") == ["units", "valid_min"]
        assert store.open_dataset("p2").get_attribute("T.axis") == "T"
        store.delete_dataset("p0")
        written[0] = None
    with atlas.Atlas.open(tmp_path / "s.atlas") as store:
        for k, ds in enumerate(written):
            if ds is None:
                continue
            back = store.to_xarray(f"p{k}")
            xr.testing.assert_identical(back, ds)
            for name in ds.variables:
                assert back[name].attrs.keys() == ds[name].attrs.keys()
                for key, value in ds[name].attrs.items():
                    assert type(back[name].attrs[key]) is type(value)
                    got = back[name].attrs[key]
                    if isinstance(value, np.ndarray):
                        assert got.dtype == value.dtype and np.array_equal(got, value)
                    else:
                        assert repr(got) == repr(value)  # -0.0 stays -0.0
                assert back[name].encoding.get("dtype") == ds[name].encoding.get("dtype")


def _staged(store, name, writes, bulk):
    from atlas.dataset import stage_array_writes

    view = store.create_dataset(name)
    view.define_array("a", "float32", ["x", "y"], [4, 3])
    view.define_array("s", "string", ["x"], [3], fill_value="")
    view.define_array("z", "int8", [], [])
    if bulk:
        stage_array_writes(view, writes)
    else:
        for array, start, data in writes:
            view.write_array(array, start, data)
    return {array: view.read_array(array) for array in ("a", "s", "z")}


GOOD_WRITES = [
    ("a", None, np.arange(12, dtype="float32").reshape(4, 3)),
    ("s", [1], np.array(["é", "x"], dtype=object)),
    ("z", (), np.array(7, dtype="int8")),
    ("a", (2, 1), np.ones((2, 2), dtype="float32")),  # over part of the first write
]


def test_stage_array_writes_equals_write_array_one_by_one(tmp_path):
    with atlas.Atlas.create(tmp_path / "s.atlas") as store:
        one_by_one = _staged(store, "w", GOOD_WRITES, bulk=False)
        together = _staged(store, "b", GOOD_WRITES, bulk=True)
        for array in one_by_one:
            assert np.array_equal(together[array], one_by_one[array])
            assert together[array].dtype == one_by_one[array].dtype
    with atlas.Atlas.open(tmp_path / "s.atlas") as store:
        for array in one_by_one:
            assert np.array_equal(store.open_dataset("b").read_array(array), one_by_one[array])


@pytest.mark.parametrize(
    "bad",
    [
        ("a", None, np.zeros(12, dtype="float32")),  # rank
        ("a", (3, 0), np.zeros((2, 3), dtype="float32")),  # out of bounds
        ("nope", None, np.zeros(3, dtype="float32")),  # no such array
        ("s", None, np.array([1, 2, 3])),  # not text
        ("a", None, np.zeros((4, 3), dtype="float64")),  # not float32
    ],
)
def test_stage_array_writes_raises_what_write_array_raises(tmp_path, bad):
    writes = [GOOD_WRITES[0], bad]
    with atlas.Atlas.create(tmp_path / "s.atlas") as store:
        with pytest.raises(Exception) as one_by_one:
            _staged(store, "w", writes, bulk=False)
        with pytest.raises(Exception) as together:
            _staged(store, "b", writes, bulk=True)
    assert type(together.value) is type(one_by_one.value)
    assert str(together.value) == str(one_by_one.value).replace("'w'", "'b'")


# -- the shortcuts of coerce_scalar, numeric_storage and stage_typed_attributes ---------------------


class _Int(int):
    pass


class _Float(float):
    pass


class _Str(str):
    pass


def _general_form(value):
    """The same value of a type coerce_scalar's shortcut leaves to the general checks."""
    kind = type(value)
    if kind is bool:
        return np.bool_(value)
    return {int: _Int, float: _Float, str: _Str}[kind](value)


def _coerced(value, name):
    from atlas import dtypes

    try:
        out = dtypes.coerce_scalar(value, name, "fill value")
    except Exception as exc:
        return "error", type(exc)
    return "ok", type(out), _canonical(out)


_F32_MAX = float(np.finfo(np.float32).max)
scalar_inputs = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**7, -(2**7) - 1, 2**8, 2**15, 2**31, -(2**31) - 1, 2**32, 2**63, -(2**63), -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([_F32_MAX, -_F32_MAX, float(np.nextafter(_F32_MAX, math.inf)), 3.4028235677973366e38, -0.0, 1e-46]),
    st.booleans(),
    texts,
)


@settings(max_examples=300, deadline=None)
@given(value=scalar_inputs)
def test_coerce_scalar_shortcuts_equal_the_general_checks(value):
    from atlas import dtypes

    for name in dtypes.DTYPE_NAMES:
        assert _coerced(value, name) == _coerced(_general_form(value), name), name


@pytest.mark.parametrize("dtype", ["int8", "<u2", "<i4", "<i8", "<u8", "bool", "<f4", "<f8", ">f4", ">i2", "<f2"])
def test_numeric_storage_returns_what_astype_returns(dtype):
    arr = np.arange(6).astype(dtype).reshape(2, 3)[:, ::2]  # not contiguous either
    got = conversions.numeric_storage(arr, "v")
    want = arr.astype("float32") if dtype == "<f2" else arr.astype(arr.dtype.newbyteorder("="), copy=False)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert (got is arr) == (want is arr)


@pytest.mark.parametrize("bad", ["", "a\ud800", 7, "\udcff"])
def test_stage_typed_attributes_names_the_first_bad_key_and_stages_nothing(tmp_path, bad):
    from atlas.dataset import stage_typed_attributes

    with atlas.Atlas.create(tmp_path / "s.atlas") as store:
        view = store.create_dataset("d")
        typed = {"fine": {"t": "string", "v": "x"}, bad: {"t": "int64", "v": 1}, "later": {"t": "string", "v": "y"}}
        with pytest.raises(atlas.errors.InvalidNameError) as caught:
            stage_typed_attributes(view, typed)
        assert repr(bad) in str(caught.value)
        assert view.attributes() == {}
        stage_typed_attributes(view, {"fine": {"t": "string", "v": "x"}, "µ": {"t": "int64", "v": 1}})
        assert view.attributes() == {"fine": "x", "µ": 1}


def test_a_plan_shares_nothing_with_what_is_remembered():
    """Changing every typed value of a plan (its dicts and their lists) changes no later plan."""
    _clear_caches()
    ds = _one_variable(attrs={"units": "m", "flags": np.arange(3, dtype="int8"), "f": np.float32(1)})
    ds["V"].encoding = {"dtype": np.dtype("int16"), "_FillValue": np.int16(-1)}
    first = _outcome(ds)
    for _ in range(2):  # the second plan takes the remembered variable
        plan = plan_mod.plan_dataset(ds, None)
        for typed in plan.attributes.values():
            if isinstance(typed["v"], list):
                typed["v"].append("changed")
            if "s" in typed:
                typed["s"].append(99)
            typed["v"] = "changed"
            typed["t"] = "changed"
    assert _outcome(ds) == first
