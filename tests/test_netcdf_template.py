"""Files of one make decoded by the template of their listing (:mod:`atlas.cli.netcdf_template`).

A reader decodes a listing once with xarray and applies that decode to the values
of the next files listed the same.  Every file here is loaded both ways, through
``load_source`` (templates) and through the general path (``xr.open_dataset`` of
the file), and must come out identical: values, types, attributes, encodings,
coordinates, warnings.  The files vary what a template must not carry over (the
values, the lengths of the dimensions, fill values met or not, times that do not
decode as the template's did) and what must give another template (text lengths).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
netCDF4 = pytest.importorskip("netCDF4")

from test_netcdf_listing import _general  # noqa: E402
from test_sources import assert_same_dataset  # noqa: E402

from atlas.cli import netcdf_template, sources  # noqa: E402
from atlas.cli.netcdf_template import DecodeTemplate, listing_key, same_dataset  # noqa: E402
from atlas.xarray.conversions import CF_PACKED  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_templates(monkeypatch):
    """Each test starts with no template, and counts the files a template served."""
    monkeypatch.setattr(netcdf_template.templates, "by_key", {})
    monkeypatch.setattr(netcdf_template.templates, "seen", set(), raising=False)
    served = []
    apply = DecodeTemplate.apply

    def counted(self, *args):
        ds = apply(self, *args)
        served.append(ds is not None)
        return ds

    monkeypatch.setattr(DecodeTemplate, "apply", counted)
    return served


def _profile(
    path: Path, rng: np.random.Generator, n: int, m: int, strlen: int = 8, days: np.ndarray | None = None
) -> Path:
    """A profile file as a fleet makes them: the same listing for any ``n`` times and ``m`` depths."""
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
        nc.createDimension("TIME", n)
        nc.createDimension("DEPTH", m)
        nc.createDimension(f"STRING{strlen}", strlen)
        nc.title = "profiles"
        nc.history = "made for a test"
        time = nc.createVariable("TIME", "f8", ("TIME",), fill_value=999999.0, zlib=True)
        time.units = "days since 1950-01-01T00:00:00Z"
        time.calendar = "standard"
        time.axis = "T"
        if days is None:
            days = rng.uniform(0, 30000, n)
            days[rng.random(n) < 0.2] = 999999.0
        time[...] = days
        qc = nc.createVariable("TIME_QC", "i1", ("TIME",), fill_value=np.int8(-127))
        qc.flag_values = np.array([0, 1, 4, 9], "i1")
        qc.flag_meanings = "none good bad missing"
        qc[...] = rng.integers(0, 5, n)
        lat = nc.createVariable("LATITUDE", "f4", ("TIME",))
        lat.units = "degree_north"
        lat.valid_range = np.array([-90, 90], "f4")
        lat[...] = rng.uniform(-90, 90, n)
        temp = nc.createVariable("TEMP", "f4", ("TIME", "DEPTH"), fill_value=np.float32(9.96921e36), zlib=True)
        temp.coordinates = "TIME LATITUDE"
        temp.negative_zero = -0.0
        values = rng.normal(10, 5, (n, m)).astype("f4")
        values[rng.random((n, m)) < 0.1] = 9.96921e36
        temp[...] = values
        psal = nc.createVariable("PSAL", "i2", ("TIME", "DEPTH"), fill_value=np.int16(-32767))
        psal.scale_factor = np.float32(0.001)
        psal.add_offset = np.float32(30.0)
        psal.set_auto_maskandscale(False)
        psal[...] = rng.integers(-32767, 32767, (n, m), dtype="i2")
        ref = nc.createVariable("DC_REFERENCE", "S1", ("TIME", f"STRING{strlen}"), fill_value=b" ")
        ref.long_name = "station reference"
        ref[...] = netCDF4.stringtochar(np.array([f"R{i:0{strlen - 1}d}"[:strlen] for i in range(n)], f"S{strlen}"))
    return path


def _assert_as_xarray(path: Path) -> None:
    want = _general(path)
    if isinstance(want, Exception):
        with pytest.raises(type(want)):
            sources.load_source(sources.Source(path, "f"), 1 << 30)
        return
    got = sources.load_source(sources.Source(path, "f"), 1 << 30)
    assert got.warnings == want.warnings, path.name
    assert_same_dataset(want.ds, got.ds, path.name, indexes=False)
    assert same_dataset(got.ds, sources.load_source(sources.Source(path, "f"), 1 << 30).ds)
    for name, var in got.ds.variables.items():
        assert var.encoding.get(CF_PACKED) == want.ds.variables[name].encoding.get(CF_PACKED), name


def test_files_of_one_make_decode_as_xarray_decodes_them(tmp_path, fresh_templates):
    rng = np.random.default_rng(5)
    for i, (n, m) in enumerate([(3, 4), (1, 1), (5, 7), (3, 4), (2, 9), (4, 1)]):
        _assert_as_xarray(_profile(tmp_path / f"p{i}.nc", rng, n, m))
    assert len(netcdf_template.templates.by_key) == 1
    (template,) = netcdf_template.templates.by_key.values()
    assert template is not None and template.verified is True
    assert sum(fresh_templates) >= 5  # every file after the first (and each one's second load)


def test_text_of_another_length_makes_another_template(tmp_path, fresh_templates):
    rng = np.random.default_rng(6)
    for i, strlen in enumerate([8, 4, 8, 4]):
        _assert_as_xarray(_profile(tmp_path / f"s{i}.nc", rng, 3, 2, strlen=strlen))
    assert len(netcdf_template.templates.by_key) == 2


@pytest.mark.parametrize(
    "days",
    [[np.nan, 1.0], [1e9, 2.0], [-1e12, 0.0], [999999.0, 999999.0]],
    ids=["nan", "beyond-nanoseconds", "far-before", "all-fill"],
)
def test_times_unlike_the_templates_are_decoded_as_xarray_decodes_them(tmp_path, days):
    rng = np.random.default_rng(7)
    _assert_as_xarray(_profile(tmp_path / "first.nc", rng, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_as_xarray(_profile(tmp_path / "odd.nc", rng, 2, 3, days=np.array(days)))
    _assert_as_xarray(_profile(tmp_path / "after.nc", rng, 2, 3))


def test_a_template_unlike_xarrays_decode_is_never_used_again(tmp_path, monkeypatch, fresh_templates):
    """The first file a template serves is decoded both ways; a template that gives something
    else (here: an attribute lost) is dropped, and every file is still decoded right."""
    real = netcdf_template._rebuild

    def losing(recipe, attrs, encoding):
        out = real(recipe, attrs, encoding)
        out.pop("long_name", None)
        return out

    monkeypatch.setattr(netcdf_template, "_rebuild", losing)
    rng = np.random.default_rng(8)
    for i in range(4):
        _assert_as_xarray(_profile(tmp_path / f"p{i}.nc", rng, 2, 2))
    (template,) = netcdf_template.templates.by_key.values()
    assert template.verified is False
    assert fresh_templates == [True]  # tried once, on the first reuse, then never again


def test_a_listing_that_warns_gets_no_template(tmp_path):
    def two_fills(path: Path, value: float) -> Path:
        with netCDF4.Dataset(path, "w") as nc:
            nc.createDimension("d", 2)
            var = nc.createVariable("a", "f4", ("d",), fill_value=np.float32(-1))
            var.missing_value = np.float32(-2)
            var[...] = [value, -1]
        return path

    for i in range(3):
        _assert_as_xarray(two_fills(tmp_path / f"w{i}.nc", float(i)))
    assert list(netcdf_template.templates.by_key.values()) == [None]


def test_templates_hold_no_values_between_files(tmp_path):
    rng = np.random.default_rng(9)
    for i in range(2):
        _assert_as_xarray(_profile(tmp_path / f"p{i}.nc", rng, 40, 50))
    (template,) = netcdf_template.templates.by_key.values()
    assert all(slot.array.size == 0 for slot in template._slots.values())


def test_each_thread_has_its_own_templates(tmp_path):
    rng = np.random.default_rng(10)
    path = _profile(tmp_path / "p.nc", rng, 2, 2)
    for _ in range(2):  # learnt the second time
        sources.load_source(sources.Source(path, "f"), 1 << 30)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(len(netcdf_template.templates.by_key)))
    thread.start()
    thread.join()
    assert len(netcdf_template.templates.by_key) == 1 and seen == [0]


def test_the_key_tells_apart_values_of_another_type_or_other_bits():
    values = {"a": np.zeros(2)}

    def key(**attrs):
        return listing_key({"a": (("d",), attrs, {"dtype": np.dtype("f8"), "source": "x"})}, {}, values)

    assert key(v=0.0) != key(v=-0.0)
    assert key(v=1) != key(v=True) != key(v=1.0)
    assert key(v=np.float32(1)) != key(v=np.float64(1))
    assert key(v=np.array([1, 2], "i2")) != key(v=np.array([1, 2], "i4"))
    assert key(v="1") != key(v=np.str_("1")) != key(v=b"1")
    assert key(v=float("nan")) == key(v=float("nan"))
    assert key(v="a", w="b") != key(w="b", v="a")  # attribute order is kept by the decode
    assert key(v=np.array([object()], object)) is None
    where = {"a": (("d",), {}, {"source": "a", "original_shape": (2,)})}
    elsewhere = {"a": (("d",), {}, {"source": "b", "original_shape": (5,)})}
    assert listing_key(where, {}, values) == listing_key(elsewhere, {}, values)  # where the values are: not keyed
    assert listing_key(where, {"coordinates": "a"}, values) is None
    text = {"a": (("d", "s"), {}, {})}
    assert listing_key(text, {}, {"a": np.zeros((2, 3), "S1")}) != listing_key(text, {}, {"a": np.zeros((2, 4), "S1")})
