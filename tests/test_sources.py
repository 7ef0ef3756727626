"""Opening source files for ``create``/``append`` and ``atlas.ingest`` (:mod:`atlas.cli.sources`).

A file the netCDF4 engine reads is opened once (``_open_once``); every other file, and
every file when ``_open_once`` is switched off, takes the general path that opens the
file again for its packed variables and its groups.  Both must store exactly the same
thing: the tests run both on real files (tests/data, the derived CMEMS profile corpus)
and on files made to hit each decoding rule (packing, QC flags, times, timedeltas,
character arrays, NetCDF-3, groups) and compare what is loaded and what is stored.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
netCDF4 = pytest.importorskip("netCDF4")

import atlas  # noqa: E402
from atlas.cli import main, sources  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = sorted((ROOT / "tests" / "data").glob("*.nc"))
N_CORPUS = 12


def _corpus_module():
    spec = importlib.util.spec_from_file_location("atlas_bench_corpus", ROOT / "benchmarks" / "corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _packed(path: Path) -> None:
    rng = np.random.default_rng(0)
    values = np.round(rng.uniform(0, 30, (40, 50)), 2)
    values[3, :7] = np.nan
    ds = xr.Dataset(
        {
            "TEMP": (("TIME", "DEPTH"), values, {"units": "degree_Celsius"}),
            "TEMP_QC": ("TIME", rng.integers(0, 9, 40).astype("int8"), {"flag_values": np.arange(9, dtype="i1")}),
            "PSAL": ("TIME", rng.uniform(30, 40, 40).astype("float32")),
            "COUNT": ("TIME", rng.integers(0, 100, 40).astype("uint16")),
        },
        coords={"TIME": np.arange(40.0), "DEPTH": ("DEPTH", np.arange(50, dtype="int16"), {"_FillValue": -1})},
    )
    ds.TEMP.encoding.update({"dtype": "int16", "scale_factor": 0.01, "add_offset": 10.0, "_FillValue": -32768})
    ds.TEMP_QC.encoding.update({"dtype": "int8", "_FillValue": np.int8(-127)})
    ds.PSAL.encoding.update({"_FillValue": np.float32(99999.0), "zlib": True, "chunksizes": (8,)})
    ds.COUNT.encoding.update({"missing_value": np.uint16(65535)})
    ds.to_netcdf(path)


def _times_and_text(path: Path, fmt: str = "NETCDF4") -> None:
    times = np.array(["2020-01-01T00:00", "NaT", "2020-03-01T12:30"], dtype="datetime64[ns]")
    ds = xr.Dataset(
        {
            "T": ("obs", times),
            "DT": ("obs", np.array([1, 2, 3], dtype="timedelta64[s]").astype("timedelta64[ns]"), {"long_name": "lag"}),
            "NAME": ("obs", np.array([b"ab", b"cde", b""])),
            "PLATFORM": ((), "buoy-7", {"comment": "scalar string"}),
            "V": ("obs", [1.5, np.nan, 3.0], {"coordinates": "LAT"}),
            "LAT": ("obs", [1.0, 2.0, 3.0]),
        },
        attrs={"title": "times and text", "history": "made for a test"},
    )
    ds.T.encoding.update({"units": "days since 1950-01-01", "calendar": "standard", "dtype": "float64"})
    ds.DT.encoding.update({"units": "seconds", "dtype": "int32", "_FillValue": np.int32(-1)})
    ds.to_netcdf(path, format=fmt, **({"unlimited_dims": ["obs"]} if fmt == "NETCDF4" else {}))


def _grouped(path: Path) -> None:
    xr.Dataset({"top": ("x", np.arange(3.0))}).to_netcdf(path)
    obs = xr.Dataset({"q": ("n", np.array([1, 2, -1], dtype="i1"))})
    obs.q.encoding.update({"_FillValue": np.int8(-1)})
    obs.to_netcdf(path, group="obs", mode="a")
    xr.Dataset({"deep": ("m", np.arange(4, dtype="i4"))}).to_netcdf(path, group="obs/deep", mode="a")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """tests/data's NetCDF files, derived CMEMS profile files and one file per decoding rule."""
    root = tmp_path_factory.mktemp("sources")
    _corpus_module().make_corpus(root / "cmems", N_CORPUS, subdirs=2)
    for f in DATA_FILES:
        shutil.copy(f, root / f.name)
    _packed(root / "packed.nc")
    _times_and_text(root / "times.nc")
    _times_and_text(root / "classic.nc", "NETCDF3_64BIT")
    _grouped(root / "grouped.nc")
    return root


def _all(root: Path) -> list[Path]:
    return sorted(root.rglob("*.nc"))


@pytest.fixture
def general_path(monkeypatch):
    """Switch the one-open path off: what every file took before it existed."""

    def use_general() -> None:
        monkeypatch.setattr(sources, "_open_once", lambda *args: None)

    return use_general


def _same(a, b) -> bool:
    """Equal values of the same types (arrays: same dtype, NaN where NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray | np.generic):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


def _default_indexes(ds):
    """``ds`` with the default indexes ``xr.open_dataset`` creates (a file read whole has none:
    the stored dataset does not depend on them, and ``to_xarray`` creates them)."""
    missing = {k: ds.variables[k] for k in ds.coords if ds.variables[k].dims == (k,) and k not in ds.xindexes}
    return ds.assign_coords(xr.Coordinates(missing)) if missing else ds


def assert_same_dataset(want, got, where: str, indexes: bool = True) -> None:
    """Identical datasets, including variable order, dtypes, attrs and every encoding entry.

    ``indexes=False``: ``got`` may lack default indexes ``want`` has.
    """
    if not indexes:
        assert set(got.xindexes) <= set(want.xindexes), where
        got = _default_indexes(got)
    xr.testing.assert_identical(want, got)
    assert list(want.variables) == list(got.variables), where
    assert _same(dict(want.encoding), dict(got.encoding)), (where, want.encoding, got.encoding)
    for name in want.variables:
        a, b = want.variables[name], got.variables[name]
        assert a.dtype == b.dtype, (where, name)
        assert _same(dict(a.attrs), dict(b.attrs)), (where, name, a.attrs, b.attrs)
        assert _same(dict(a.encoding), dict(b.encoding)), (where, name, a.encoding, b.encoding)


def _load_both(path: Path, chunk_size: int, monkeypatch, engine: str | None = None):
    src = sources.Source(path, "f")
    new = sources.load_source(src, chunk_size, engine)
    with monkeypatch.context() as m:
        m.setattr(sources, "_open_once", lambda *args: None)
        old = sources.load_source(src, chunk_size, engine)
    return old, new


@pytest.mark.parametrize("chunk_size", [1 << 30, 64], ids=["loaded", "streamed"])
def test_one_open_loads_what_the_general_path_loads(files, monkeypatch, chunk_size):
    paths = _all(files)
    assert len(paths) == N_CORPUS + len(DATA_FILES) + 4
    for path in paths:
        old, new = _load_both(path, chunk_size, monkeypatch)
        where = str(path)
        assert old.warnings == new.warnings, where
        assert [g.group for g in old.groups] == [g.group for g in new.groups], where
        for a, b in zip([old, *old.groups], [new, *new.groups]):
            assert (a.streamed, a.blocks, a.disk_chunks) == (b.streamed, b.blocks, b.disk_chunks), where
            if a.ds is None:
                assert b.ds is None, where
            else:
                assert_same_dataset(a.ds, b.ds, f"{where} {a.group}", indexes=False)
    grouped = sources.load_source(sources.Source(files / "grouped.nc", "g"), 1 << 30)
    assert [g.group for g in grouped.groups] == ["/obs", "/obs/deep"]


def _packed_coordinate(path: Path) -> None:
    ds = xr.Dataset(
        {"v": ("t", [1.0, 2.0, 3.0], {"units": "m"})},
        coords={
            "t": [0, 1, 2],
            "v_qc": ("t", np.array([1, -1, 2], dtype="i1"), {"flag_values": np.arange(3, dtype="i1")}),
        },
    )
    ds.v_qc.encoding.update({"_FillValue": np.int8(-1)})
    ds.to_netcdf(path)


@pytest.mark.parametrize("chunks", [None, {}], ids=["loaded", "dask"])
def test_packed_variables_are_swapped_in_as_assign_put_them(files, tmp_path, chunks):
    """``_with_packed`` swaps variables in place; the result is what ``Dataset.assign`` gave
    (dims, order, coordinate status, data, attributes, encodings), packed coordinates too."""
    from atlas.xarray.conversions import CF_PACKED

    _packed_coordinate(tmp_path / "coord.nc")
    raw_args = {"chunks": chunks, "mask_and_scale": False, "decode_times": False, "decode_timedelta": False}
    checked = 0
    for path in [*_all(files), tmp_path / "coord.nc"]:
        with xr.open_dataset(path, chunks=chunks) as ds, xr.open_dataset(path, **raw_args) as raw:
            names = sources.packed_variables(ds)
            if not names:
                continue
            want = ds.assign({n: raw.variables[n].copy(deep=False) for n in names})
            for n in names:
                want.variables[n].encoding[CF_PACKED] = True
            with xr.open_dataset(path, chunks=chunks) as fresh:
                got = sources._with_packed(fresh, raw.variables, names)
                assert_same_dataset(want.load(), got.load(), str(path))
            checked += 1
    assert checked >= N_CORPUS + 3  # the profiles, GL_PR_BO_JLKU, packed.nc, coord.nc


def test_netcdf4_files_are_opened_once(files, monkeypatch):
    from xarray.backends.netCDF4_ import NetCDF4DataStore

    from atlas.cli.netcdf_open import OnceStore

    opened: list[str] = []
    real_open, real_groups = NetCDF4DataStore.open.__func__, sources.group_paths
    real_once = OnceStore.__init__

    def counting_open(cls, filename, *args, **kwargs):
        opened.append(str(filename))
        return real_open(cls, filename, *args, **kwargs)

    def counting_once(self, filename):  # the one-open path opens its netCDF4 handle itself
        opened.append(str(filename))
        real_once(self, filename)

    def counting_groups(path, *args, **kwargs):
        opened.append(str(path))  # group_paths opens the file with netCDF4 (not a classic file)
        return real_groups(path, *args, **kwargs)

    monkeypatch.setattr(NetCDF4DataStore, "open", classmethod(counting_open))
    monkeypatch.setattr(OnceStore, "__init__", counting_once)
    monkeypatch.setattr(sources, "group_paths", counting_groups)
    gl = files / "GL_PR_BO_JLKU.nc"  # has packed QC flags: the general path opens it three times
    loaded = sources.load_source(sources.Source(gl, "gl"), 1 << 30)
    assert loaded.ds["TIME_QC"].dtype == np.int8
    assert opened == [str(gl)]
    opened.clear()
    with monkeypatch.context() as m:
        m.setattr(sources, "_open_once", lambda *args: None)
        sources.load_source(sources.Source(gl, "gl"), 1 << 30)
    assert opened == [str(gl)] * 3
    # another engine named explicitly: the general path, as xr.open_dataset(engine=...) reads it
    assert sources._open_once(gl, "h5netcdf") is None
    assert sources._open_once(files / "packed.nc", "scipy") is None


def test_a_file_netcdf4_cannot_open_keeps_the_general_path_error(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file at all")
    assert sources._open_once(bad, None) is None
    with pytest.raises(ValueError):
        sources.load_source(sources.Source(bad, "bad"), 1 << 30)


def _create(src: Path, target: Path, *extra: str) -> None:
    assert main(["create", str(src), str(target), "-j", "0", "-q", *extra]) == 0


def _listing(target: Path) -> tuple:
    import contextlib
    import io

    outs = []
    for args in (["--long", "--json"], ["-l"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["ls", str(target), *args]) == 0
        outs.append(out.getvalue().replace(str(target), "STORE"))
    return json.loads(outs[0]), outs[1]


def stored_both_ways(src, tmp_path, monkeypatch, *args):
    """``(general, one_open)``: stores of ``atlas create src ARGS`` by the general path and by
    the one-open path, whose files list the same (same names, same sizes)."""
    new, old = tmp_path / "new.atlas", tmp_path / "old.atlas"
    _create(src, new, *args)
    with monkeypatch.context() as m:
        m.setattr(sources, "_open_once", lambda *args: None)
        _create(src, old, *args)
    assert _listing(new) == _listing(old)
    return old, new


def assert_stored_alike(a, b, name):
    """Dataset ``name`` has the same attributes and array metadata in handles ``a`` and ``b``."""
    assert _same(a[name].attributes(), b[name].attributes()), name
    for var in a[name].list_arrays():
        assert _same(a[name].array_meta(var), b[name].array_meta(var)), (name, var)


@pytest.mark.parametrize("chunk_size", ["128MiB", "4KiB"], ids=["loaded", "streamed"])
def test_stores_written_by_both_paths_are_the_same(files, tmp_path, monkeypatch, chunk_size):
    old, new = stored_both_ways(files, tmp_path, monkeypatch, "--chunk-size", chunk_size)
    with atlas.Atlas.open(old, mode="r") as a, atlas.Atlas.open(new, mode="r") as b:
        names = a.list_datasets()
        assert names == b.list_datasets() and len(names) == N_CORPUS + len(DATA_FILES) + 6  # 2 sub-groups
        for name in names:
            assert_stored_alike(a, b, name)
            assert_same_dataset(a.to_xarray(name).load(), b.to_xarray(name).load(), name)


def test_loading_a_file_imports_no_dask_array(files):
    """A reader process loads small files without importing dask.array (a quarter second per
    process: swapping packed variables in must not go through xarray's general data setter)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from atlas.cli import sources\n"
        f"loaded = sources.load_source(sources.Source(Path({str(files / 'GL_PR_BO_JLKU.nc')!r}), 'gl'), 1 << 30)\n"
        "assert loaded.ds['TIME_QC'].dtype == 'int8', loaded.ds['TIME_QC'].dtype\n"
        "print(sorted(m for m in sys.modules if m.startswith('dask.array')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# -- small plain files read whole (OnceStore.read_whole) ------------------------------------------------


def _plain_but_varied(path: Path) -> None:
    """Read whole: big-endian, _Unsigned bytes, a scalar, packed data, a bounded time, chars."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("t", 3)
        nc.createDimension("s", 4)
        nc.title = "plain but varied"
        t = nc.createVariable("t", "f8", ("t",))
        t.units, t.calendar, t.bounds = "hours since 2000-01-01", "proleptic_gregorian", "t_bnds"
        t[:] = [0.0, 1.5, 3.0]
        nc.createDimension("nv", 2)
        nc.createVariable("t_bnds", "f8", ("t", "nv"))[:] = [[0, 1], [1, 2], [2, 3]]
        big = nc.createVariable("big", ">f4", ("t",), endian="big")
        big[:] = [1.0, -1.0, 2.5]
        u = nc.createVariable("u", "i1", ("t",))
        u._Unsigned = "true"
        u[:] = np.array([-1, 0, 5], dtype="i1")
        p = nc.createVariable("p", "i2", ("t",), fill_value=np.int16(-32768))
        p.scale_factor, p.add_offset, p.coordinates = 0.01, 5.0, "t"
        p.set_auto_maskandscale(False)
        p[:] = np.array([100, -32768, 300], dtype="i2")
        nc.createVariable("scalar", "i4", ())[...] = 7
        c = nc.createVariable("name", "S1", ("t", "s"))
        c.set_auto_chartostring(False)
        c[:] = np.array([list(b"ab  "), list(b"cdef"), list(b"    ")], dtype="S1")
        nc.createVariable("dt", "i4", ("t",)).units = "seconds"
        nc["dt"][:] = [1, 2, 3]


def _vlen_strings(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("n", 2)
        v = nc.createVariable("label", str, ("n",))
        v[0], v[1] = "alpha", "béta"
        nc.createVariable("x", "f4", ("n",))[:] = [1, 2]


def _odd_calendar(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 2)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2000-01-01", "noleap"
        t[:] = [0, 365]


def _enum(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("n", 3)
        kind = nc.createEnumType(np.uint8, "cloud_t", {"clear": 0, "cloudy": 1})
        nc.createVariable("cloud", kind, ("n",))[:] = np.array([0, 1, 1], dtype="u1")


def _empty(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("obs", None)
        nc.createVariable("v", "f4", ("obs",))


UNUSUAL = {"vlen.nc": _vlen_strings, "noleap.nc": _odd_calendar, "enum.nc": _enum, "empty.nc": _empty}


def _unsure(kind: str):
    """A file read whole whose packed variables are not known from its listing alone."""

    def make(path: Path) -> None:
        with netCDF4.Dataset(path, "w") as nc:
            nc.createDimension("t", 3)
            nc.createVariable("plain_qc", "i1", ("t",), fill_value=np.int8(-127))[:] = [1, -127, 2]
            v = nc.createVariable("v", "i2", ("t",), fill_value=np.int16(-1))
            v.set_auto_maskandscale(False)
            v[:] = np.array([3, -1, 5], dtype="i2")
            if kind == "unsigned":
                v._Unsigned = "true"
            elif kind == "since":
                v.units = "days since 2000-01-01"
            elif kind == "timedelta":
                v.units = "seconds"
            elif kind == "two_fills":
                v.missing_value = np.int16(-2)
            elif kind == "bounds":
                t = nc.createVariable("time", "f8", ("t",))
                t.units, t.bounds = "days since 2000-01-01", "v"
                t[:] = [0, 1, 2]
            elif kind == "fill_list":
                v.missing_value = np.array([-1, -2], dtype="i2")
            elif kind == "odd_attrs":  # attributes of unusual types where names are expected
                nc.createVariable("w", "f4", ("t",)).bounds = np.array([1, 2], dtype="i4")
                v.units = np.array([3.0])

    return make


UNSURE = {f"unsure_{k}.nc": _unsure(k) for k in ("unsigned", "since", "timedelta", "two_fills", "bounds", "fill_list")}
SURE = {"odd_attrs.nc": _unsure("odd_attrs"), "plain_qc.nc": _unsure("plain")}


@pytest.fixture(scope="module")
def varied(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("varied")
    _plain_but_varied(root / "plain.nc")
    for name, make in {**UNUSUAL, **UNSURE, **SURE}.items():
        make(root / name)
    return root


def _reads_whole(path: Path, limit: int = 1 << 30) -> bool:
    from atlas.cli.netcdf_open import OnceStore

    store = OnceStore(str(path))
    try:
        return store.read_whole(limit)
    finally:
        store.close()


def test_small_plain_files_are_read_whole(files, varied):
    """The fast path covers the real files (else the comparisons above would not test it)."""
    # times.nc holds a string (a variable-length type), classic.nc is not netCDF4's to open
    plain = [p for p in _all(files) if p.name not in ("classic.nc", "times.nc")]
    assert all(_reads_whole(p) for p in plain), [p for p in plain if not _reads_whole(p)]
    assert _reads_whole(varied / "plain.nc")
    gl = files / "GL_PR_BO_JLKU.nc"
    assert not _reads_whole(gl, 64)  # more than the limit: left lazy
    assert not _reads_whole(files / "times.nc")
    for name in UNUSUAL:  # a string, an odd calendar, an enum, an empty array: left lazy
        assert not _reads_whole(varied / name), name


def _listing_packed(path: Path) -> list[str] | None:
    from atlas.cli.netcdf_open import OnceStore

    store = OnceStore(str(path))
    try:
        assert store.read_whole(1 << 30)
        return store.surely_packed()
    finally:
        store.close()


def test_packed_variables_are_known_from_the_listing_or_left_to_the_swap(files, varied):
    """Where the listing says which variables are packed, they are decoded once, as stored;
    where it cannot say for sure, the general swap (``_packed_from``) does it."""
    gl = files / "GL_PR_BO_JLKU.nc"
    with xr.open_dataset(gl) as ds:
        assert _listing_packed(gl) == sources.packed_variables(ds)
    for path in sorted((files / "cmems").rglob("*.nc")):
        with xr.open_dataset(path) as ds:
            assert _listing_packed(path) == sources.packed_variables(ds) != [], path
    assert _listing_packed(varied / "plain.nc") == ["p"]
    assert _listing_packed(varied / "plain_qc.nc") == ["plain_qc", "v"]
    assert _listing_packed(varied / "odd_attrs.nc") is None  # units that are not text: unsure
    for name in UNSURE:
        assert _listing_packed(varied / name) is None, name


@pytest.mark.parametrize("name", ["plain.nc", *UNUSUAL, *UNSURE, *SURE])
def test_read_whole_or_not_loads_what_xr_open_dataset_loads(varied, monkeypatch, name):
    """A file read whole (or left lazy) loads what the general path, ``xr.open_dataset``
    plus the packed variables of ``xr.open_dataset(mask_and_scale=False)``, loads."""
    old, new = _load_both(varied / name, 1 << 30, monkeypatch)
    assert old.warnings == new.warnings
    assert_same_dataset(old.ds, new.ds, name, indexes=False)


def test_a_file_read_whole_is_stored_as_the_general_path_stores_it(varied, tmp_path, monkeypatch):
    new, old = tmp_path / "new.atlas", tmp_path / "old.atlas"
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(varied / "plain.nc", src / "plain.nc")
    _create(src, new)
    with monkeypatch.context() as m:
        m.setattr(sources, "_open_once", lambda *args: None)
        _create(src, old)
    assert _listing(new) == _listing(old)
    with atlas.Atlas.open(old, mode="r") as a, atlas.Atlas.open(new, mode="r") as b:
        assert _same(a["plain"].attributes(), b["plain"].attributes())
        assert_same_dataset(a.to_xarray("plain").load(), b.to_xarray("plain").load(), "plain")


def test_reading_a_variable_whole_gives_what_indexing_it_gives(files, varied):
    """``_read_all`` asks netCDF4 for the whole variable without parsing a key: the same
    array as ``ncvar[...]`` (dtype, shape, values) for every variable read whole, and
    ``ncvar[...]`` itself where that call is missing."""
    from atlas.cli.netcdf_open import OnceStore, _read_all

    class OnlyIndexing:  # a netCDF4 variable without the direct read (another netCDF4 version)
        def __init__(self, ncvar):
            self.ncvar = ncvar

        def __getitem__(self, key):
            return self.ncvar[key]

    checked = 0
    for path in [*_all(files), varied / "plain.nc"]:
        if path.name == "classic.nc":
            continue
        store = OnceStore(str(path))
        try:
            for name, var in store.load()[0].items():
                if var.size == 0 or var.dtype.kind not in "biufS":
                    continue
                ncvar = store.ds.variables[name]
                want = ncvar[...]
                for got in (_read_all(ncvar, var.shape), _read_all(OnlyIndexing(ncvar), var.shape)):
                    assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
                    assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f"), (path, name)
                checked += 1
        finally:
            store.close()
    assert checked > 100
