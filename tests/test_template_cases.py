"""Files that a listing's template (:mod:`atlas.cli.netcdf_template`) once decoded unlike xarray.

Each file is loaded by ``load_source`` (a template once the listing was seen) and
by the general path (``xr.open_dataset`` of the file), and must come out the same:
values, types, attributes, encodings, warnings, errors.  The first file of a
listing teaches the template, the second is decoded both ways to check it, the
next ones are the template's alone.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
netCDF4 = pytest.importorskip("netCDF4")

from test_netcdf_listing import _general  # noqa: E402
from test_netcdf_template import _assert_as_xarray, _profile, fresh_templates  # noqa: E402
from test_sources import assert_same_dataset  # noqa: E402

from atlas.cli import netcdf_template, sources  # noqa: E402
from atlas.cli.netcdf_template import DecodeTemplate  # noqa: E402

#: Autouse: each test starts with no template; the list says, per file tried, whether a template gave it.
served = fresh_templates


def _compound_title(path: Path, value: float) -> Path:
    """A plain file whose dataset has an attribute of a compound type (netCDF4 gives a structured array)."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("d", 2)
        nc.createVariable("a", "f4", ("d",))[...] = [value, 2]
        pair = np.dtype([("x", "i4"), ("y", "f8")])
        nc.createCompoundType(pair, "pair")
        nc.setncattr("pairs", np.array([(1, 2.0), (3, value)], pair))
    return path


def test_a_dataset_attribute_of_a_compound_type_is_loaded_as_xarray_loads_it(tmp_path, served):
    """The dataset's attributes are not part of the key: the check of a template's first file
    compares them whatever they hold (here ``==`` gives an array), never failing the file."""
    for i in range(4):
        _assert_as_xarray(_compound_title(tmp_path / f"c{i}.nc", float(i)))
    (template,) = netcdf_template.templates.by_key.values()
    assert template is not None and template.verified is True
    assert served and all(served)


def _time_with_bounds(path: Path, start: float, n: int) -> Path:
    """A time whose bounds have no units of their own: the decode gives them the time's."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", n)
        nc.createDimension("nv", 2)
        time = nc.createVariable("time", "f8", ("time",))
        time.units = "days since 2000-01-01"
        time.calendar = "standard"
        time.bounds = "time_bnds"
        time[...] = start + np.arange(n)
        nc.createVariable("time_bnds", "f8", ("time", "nv"))[...] = start + np.arange(n)[:, None] + [-0.5, 0.5]
        nc.createVariable("temp", "f4", ("time",))[...] = np.arange(n)
    return path


def test_a_time_with_bounds_and_no_packed_variable_gets_a_template_as_xarray_decodes(tmp_path, served):
    """The template's decode is the one ``_open_once`` asks: with no packed variable, xarray's
    defaults, which copy the time's units to its bounds (an empty mapping of options did not)."""
    for i, n in enumerate([3, 2, 5, 1]):
        _assert_as_xarray(_time_with_bounds(tmp_path / f"t{i}.nc", 10.0 * i, n))
    (template,) = netcdf_template.templates.by_key.values()
    assert template is not None and template.verified is True
    assert served and all(served)


def _own_listing(path: Path, i: int) -> Path:
    """A file whose listing is its own: an attribute with a value per file (a range, a date made)."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("d", 3)
        var = nc.createVariable("a", "f4", ("d",), fill_value=np.float32(-1))
        var.actual_max = np.float32(i)
        var[...] = [0, -1, i]
    return path


def _load_once_as_xarray(path: Path) -> None:
    want = _general(path)
    got = sources.load_source(sources.Source(path, "f"), 1 << 30)
    assert got.warnings == want.warnings, path.name
    assert_same_dataset(want.ds, got.ds, path.name, indexes=False)


def test_a_listing_met_once_is_not_learnt(tmp_path, monkeypatch):
    """Learning is one more decode of the file: only a listing met again pays it."""
    learnt = []
    learn = DecodeTemplate.learn.__func__

    def counted(cls, *args):
        learnt.append(args[0].keys())
        return learn(cls, *args)

    monkeypatch.setattr(DecodeTemplate, "learn", classmethod(counted))
    for i in range(5):
        _load_once_as_xarray(_own_listing(tmp_path / f"o{i}.nc", i))
    assert learnt == []
    assert netcdf_template.templates.by_key == {}


def test_files_of_a_listing_of_their_own_keep_the_templates(tmp_path, served):
    """More files with a listing of their own than a thread keeps templates: the template
    of the make they come between still serves the next file of that make."""
    rng = np.random.default_rng(11)
    for i in range(3):  # met, learnt, checked
        _load_once_as_xarray(_profile(tmp_path / f"p{i}.nc", rng, 3, 2))
    for i in range(netcdf_template.MAX_TEMPLATES + 6):
        _load_once_as_xarray(_own_listing(tmp_path / f"o{i}.nc", i))
    before = len(served)
    _load_once_as_xarray(_profile(tmp_path / "p3.nc", rng, 4, 2))
    assert served[before:] == [True]


def test_a_file_a_template_decoded_keeps_no_listing(tmp_path, served):
    """As a file decoded once hands its listing over, a file decoded by a template lets its
    store forget the listing and the values read whole (the dataset has what it needs)."""
    rng = np.random.default_rng(12)
    for i in range(3):  # met, learnt, checked
        _load_once_as_xarray(_profile(tmp_path / f"p{i}.nc", rng, 3, 2))
    ds, store, _, packed = sources._open_once(_profile(tmp_path / "p3.nc", rng, 3, 2), None, 1 << 30)
    try:
        assert served[-1] is True and packed
        assert store._listed is None and store.read_listing() is None
        assert ds["TEMP"].values.shape == (3, 2)
    finally:
        ds.close()


@pytest.mark.parametrize(
    "days",
    [
        [13131.0, np.nan, 21651.0, -1e12], [-1e12, np.nan, 5.0], [1e12, np.nan, 3.0, -1e12],
        [13131.0, 21651.0, -1e12], [-1e12, 5.0, 7.0], [1e12, -1e12],
    ],
    ids=["last-overflows", "first-overflows", "both-overflow", "last-no-nan", "first-no-nan", "both-no-nan"],
)  # fmt: skip
def test_a_time_xarray_refuses_by_its_first_and_last_values_is_refused(tmp_path, served, days):
    """xarray decodes a time's first and last values when it decodes the file, and refuses the
    file when they do not decode; the whole array may decode (a NaN among the values turns the
    overflow into NaT): the file is refused, not stored with NaT."""
    rng = np.random.default_rng(13)
    for i in range(3):  # met, learnt, checked
        _load_once_as_xarray(_profile(tmp_path / f"p{i}.nc", rng, len(days), 2))
    odd = _profile(tmp_path / "odd.nc", rng, len(days), 2, days=np.array(days))
    want = _general(odd)
    assert isinstance(want, ValueError) and "unable to decode time units" in str(want)
    with pytest.raises(ValueError, match="unable to decode time units"):
        sources.load_source(sources.Source(odd, "f"), 1 << 30)
    _load_once_as_xarray(_profile(tmp_path / "after.nc", rng, 3, 2))
    assert served[-1] is True  # the template still serves the files it decodes as xarray does


_NAT = np.iinfo(np.int64).min


def _stored_time(path: Path, values: list[float], dtype: str, fill: int | None) -> Path:
    """A time stored as ``dtype`` (``fill``: its ``_FillValue``, the masked values of ``values``)."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", len(values))
        time = nc.createVariable("time", dtype, ("time",), fill_value=fill)
        time.units = "days since 1970-01-01"
        time.calendar = "standard"
        stored = np.array(values, dtype)
        time[...] = stored if fill is None else np.ma.masked_equal(stored, fill)
        nc.createVariable("temp", "f4", ("time",))[...] = np.arange(len(values))
    return path


@pytest.mark.parametrize(
    ("dtype", "fill", "values"),
    [
        ("i8", -999, [-10**12, -999, 5]), ("i8", -999, [5, -999, -10**12]), ("i8", -999, [-200000, -999, 5]),
        ("i4", -999, [-2 * 10**9, -999, 5]), ("i8", None, [-10**12, _NAT, 5]),
        ("f8", None, [-1e12, -2.0**63, 5.0]), ("f8", None, [5.0, 2.0**63, 1e12]), ("f8", None, [-2e5, -2.0**63, 5.0]),
    ],
    ids=[
        "masked-first-far-before", "masked-last-far-before", "masked-first-before-reform", "masked-int32",
        "int64-least", "float-minus-2-63", "float-2-63", "float-2-63-before-reform",
    ],
)  # fmt: skip
def test_a_time_whose_range_check_skips_a_value_as_nat_gets_the_first_and_last_check(
    tmp_path, served, dtype, fill, values
):
    """Decoding a whole time checks only its least and largest values, and checks nothing for one
    it takes as NaT: NaN, int64's least value (what a masked integer time decodes to) or a float
    that converts to it (2**63 either sign).  A first or last value beyond the nanosecond range
    then decodes wrong without a warning, where xarray's check of the first and last values
    refuses the file or warns; the file must be refused or warn as xarray's decode does."""
    regular = [1.0, 2.0, 3.0] if dtype == "f8" else [1, 2, 3]
    for i in range(3):  # met, learnt, checked
        _load_once_as_xarray(_stored_time(tmp_path / f"p{i}.nc", regular, dtype, fill))
    assert served == [True]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the general path's own warnings are compared, not shown
        _assert_as_xarray(_stored_time(tmp_path / "odd.nc", values, dtype, fill))
    _load_once_as_xarray(_stored_time(tmp_path / "after.nc", regular, dtype, fill))
    assert served[-1] is True  # the template still serves the files it decodes as xarray does
