"""Hypothesis-made files of one make, decoded by the template of their listing and by xarray.

Each example is one recipe (format, dimensions, variables with varied attributes,
as ``tests/test_netcdf_listing.py`` makes them) written four times with other
values and other dimension lengths: the same listing, which the second file makes
a template of, checked against xarray's decode on the third and decoding the
fourth.  Every file must load as the general path (``xr.open_dataset`` of the
file) loads it.
"""

from __future__ import annotations

import pytest

xr = pytest.importorskip("xarray")
netCDF4 = pytest.importorskip("netCDF4")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_netcdf_listing import _write, netcdf_files  # noqa: E402
from test_netcdf_template import _assert_as_xarray  # noqa: E402

from atlas.cli import netcdf_template  # noqa: E402
from atlas.cli.netcdf_template import DecodeTemplate  # noqa: E402


@pytest.mark.filterwarnings("ignore:variable '.*' has multiple fill values")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=netcdf_files(), data=st.data())
def test_made_files_of_one_make_load_as_xarray_loads_them(tmp_path_factory, monkeypatch, recipe, data):
    monkeypatch.setattr(netcdf_template.templates, "by_key", {})
    served = []
    apply = DecodeTemplate.apply
    monkeypatch.setattr(DecodeTemplate, "apply", lambda self, *a: served.append(apply(self, *a)) or served[-1])
    folder = tmp_path_factory.mktemp("make")
    for i in range(4):
        sizes = {"d0": data.draw(st.integers(1, 4)), "d1": recipe[1]["d1"]}  # d1 may be a text length
        path = folder / f"f{i}.nc"
        _write(path, recipe, i, sizes, data.draw(st.integers(1, 4)))
        _assert_as_xarray(path)
    event(f"served by a template: {sum(ds is not None for ds in served)}")
