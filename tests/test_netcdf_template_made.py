"""Hypothesis-made files of one make, decoded by the template of their listing and by xarray.

Each example is one recipe (format, dimensions, variables with varied attributes,
as ``tests/test_netcdf_listing.py`` makes them) written four times with other
values and other dimension lengths: the same listing, which the second file makes
a template of, checked against xarray's decode on the third and decoding the
fourth.  Every file must load as the general path (``xr.open_dataset`` of the
file) loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
netCDF4 = pytest.importorskip("netCDF4")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_netcdf_listing import _ATTR_NAMES, _attr_value, _general, netcdf_files  # noqa: E402
from test_sources import assert_same_dataset  # noqa: E402

from atlas.cli import netcdf_template, sources  # noqa: E402
from atlas.cli.netcdf_template import DecodeTemplate  # noqa: E402


def _write_like(path: Path, recipe, values_seed: int, sizes: dict[str, int], records: int) -> None:
    """``recipe``'s file with its attributes as the recipe draws them and values from ``values_seed``."""
    fmt, _, unlimited, variables, globals_ = recipe
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        for name, size in sizes.items():
            nc.createDimension(name, size)
        if unlimited:
            nc.createDimension("rec", None)
        for spec in variables:
            attr_rng = np.random.default_rng(spec["seed"])
            values_rng = np.random.default_rng([spec["seed"], values_seed])
            dtype = np.dtype(spec["dtype"])
            attrs = {_ATTR_NAMES.get(k, k): _attr_value(k, dtype, attr_rng) for k in spec["attrs"]}
            if fmt.startswith("NETCDF3") and attrs.get("_FillValue") is not None and dtype.kind == "S":
                attrs.pop("_FillValue")
            fill = attrs.pop("_FillValue", None)
            kwargs = {"zlib": True} if spec["zlib"] else {}
            if spec["big"]:
                kwargs["endian"] = "big"
            stored = dtype.newbyteorder(">") if spec["big"] else dtype
            var = nc.createVariable(spec["name"], stored, spec["dims"], fill_value=fill, **kwargs)
            var.set_auto_maskandscale(False)
            var.set_auto_chartostring(False)
            shape = tuple(records if d == "rec" else sizes[d] for d in spec["dims"])
            if dtype.kind == "S":
                values = values_rng.choice(np.array(list(b"ab "), dtype="S1"), size=shape)
            elif dtype.kind in "iu":
                values = values_rng.integers(-6, 100, size=shape).astype(dtype)
            else:
                values = values_rng.normal(size=shape).astype(dtype)
                values[values_rng.random(shape) < 0.2] = -9.5  # a fill value some recipes use
            var[...] = values
            for key, value in attrs.items():  # after the values: netCDF4 would apply them while writing
                var.setncattr(key, value)
        for kind in globals_:
            value = {"title": "made", "int": np.int16(4), "floats": np.array([1.0, 2.0], "f4"), "text_fill": " "}
            nc.setncattr(kind, value[kind])


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
        _write_like(path, recipe, i, sizes, data.draw(st.integers(1, 4)))
        want = _general(path)
        if isinstance(want, Exception):
            with pytest.raises(type(want)):
                sources.load_source(sources.Source(path, "f"), 1 << 30)
            continue
        got = sources.load_source(sources.Source(path, "f"), 1 << 30)
        assert set(got.warnings) == set(want.warnings)
        assert_same_dataset(want.ds, got.ds, f"{recipe} file {i}", indexes=False)
    event(f"served by a template: {sum(ds is not None for ds in served)}")
