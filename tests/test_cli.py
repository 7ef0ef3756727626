"""The ``atlas`` command line, driven as a user would: ``python -m atlas ...`` in a subprocess.

Real NetCDF files (a generated corpus of CF profile files plus the real
``GL_PR_BO_JLKU.nc``), real exit codes, real stdout/stderr.  Secondary checks
call :func:`atlas.cli.main` in-process (``cli``) to keep the module fast; pure
helpers (naming, sizes, progress) are checked directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("netCDF4")

import atlas  # noqa: E402
from atlas.cli import main  # noqa: E402
from atlas.cli.common import parse_size  # noqa: E402
from atlas.cli.sources import dataset_name, group_dataset_name  # noqa: E402
from atlas.names import encode_dir_name, validate_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GL = ROOT / "tests" / "data" / "GL_PR_BO_JLKU.nc"
N_FILES = 20


def _corpus_module():
    spec = importlib.util.spec_from_file_location("atlas_bench_corpus", ROOT / "benchmarks" / "corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args, ok=True, cwd=None):
    """``python -m atlas ARGS``; asserts exit 0 when ``ok`` (False: exit 1)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-m", "atlas", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )  # fmt: skip
    expected = 0 if ok is True else (1 if ok is False else ok)
    assert done.returncode == expected, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    if done.returncode == 1 and "error" in done.stderr:
        assert "Traceback" not in done.stderr
    return done


def cli(*args, ok=True):
    """``atlas.cli.main(ARGS)`` in this process (fast: no interpreter start); same checks as :func:`run`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    expected = 0 if ok is True else (1 if ok is False else ok)
    assert code == expected, f"exit {code}\nstdout:\n{out.getvalue()}\nstderr:\n{err.getvalue()}"
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def snapshot(path: Path) -> dict[str, str]:
    """Every file under ``path`` with the hash of its bytes."""
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """20 generated profile files in 2 sub-directories plus the real GL_PR_BO_JLKU.nc at the top."""
    root = tmp_path_factory.mktemp("corpus")
    _corpus_module().make_corpus(root, N_FILES, subdirs=2)
    shutil.copy(GL, root / GL.name)
    return root


@pytest.fixture(scope="module")
def store(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stores") / "profiles.atlas"
    done = run("create", corpus, path, "-j", "2")
    assert f"created {path}: {N_FILES + 1} datasets from {N_FILES + 1} files" in done.stdout
    return path


def expected_names(corpus: Path) -> list[str]:
    files = [p.relative_to(corpus).as_posix() for p in corpus.rglob("*.nc")]
    return sorted(dataset_name(f) for f in files)


# -- create / ls / show / info ---------------------------------------------------------------------------


def test_create_makes_one_dataset_per_file_named_by_relative_path(corpus, store):
    listed = json.loads(run("ls", store, "--json").stdout)
    names = listed["datasets"]
    assert names == expected_names(corpus)
    assert "GL_PR_BO_JLKU" in names and "region_01%2FGL_PR_CT_P00001" in names
    for name in names:  # the mapping is reversible: name -> relative path without extension
        assert (corpus / (unquote(name) + ".nc")).is_file()
    with atlas.Atlas.open(store, mode="r") as st:
        assert st.generation == 1  # one commit for the whole run
    assert cli("ls", store).stdout.split() == names


def test_created_datasets_equal_their_source_files(corpus, store):
    with atlas.Atlas.open(store, mode="r") as st:
        for name in ["GL_PR_BO_JLKU", "region_00%2FGL_PR_CT_P00000", "region_01%2FGL_PR_CT_P00019"]:
            src = xr.open_dataset(corpus / (unquote(name) + ".nc"))
            xr.testing.assert_identical(st.to_xarray(name), src)


def test_ls_long_counts_arrays_attributes_and_bytes(store):
    rows = {r["name"]: r for r in json.loads(cli("ls", store, "--long", "--json").stdout)["datasets"]}
    gl = rows["GL_PR_BO_JLKU"]
    assert gl["arrays"] == 12 and gl["bytes"] > 0
    # The four int8 QC flags are stored as the file holds them, with their _FillValue attribute.
    assert gl["attributes"] == 50 + sum(len(v.attrs) for v in xr.open_dataset(GL).variables.values()) + 4
    text = cli("ls", store, "-l").stdout.splitlines()
    assert text[0].split() == ["NAME", "ARRAYS", "ATTRS", "STORED"]
    assert text[-1].startswith(f"{N_FILES + 1} datasets, ")


def test_show_prints_an_ncdump_style_header_with_stats(store):
    out = run("show", store, "GL_PR_BO_JLKU").stdout
    assert out.startswith("dataset GL_PR_BO_JLKU {\ndimensions:\n\tTIME = 3 ;\n\tDEPTH = 6 ;\nvariables:\n")
    assert "\tfloat32 FLU2(TIME, DEPTH) ;\n\t\t// chunks = 3, 6 ; fill_value = 9.96921e+36\n" in out
    assert "\t\t// stats: count=18 nulls=2 min=0.27 max=0.84\n" in out
    assert '\t\tFLU2:units = "mg m-3" ;' in out
    assert "\t\tTIME_QC:flag_values = 0b, 1b, 2b, 3b, 4b, 5b, 6b, 7b, 8b, 9b ;" in out
    assert '\t\t:platform_code = "JLKU" ;' in out and "\t\t:wmo_instrument_type = 810 ;" in out
    assert "_atlas_xarray" not in out
    assert out.rstrip().endswith("}")


def test_show_json(store):
    d = json.loads(cli("show", store, "GL_PR_BO_JLKU", "--json").stdout)
    assert d["dimensions"] == {"TIME": 3, "DEPTH": 6}
    flu2 = next(v for v in d["variables"] if v["name"] == "FLU2")
    assert flu2["dtype"] == "float32" and flu2["dims"] == ["TIME", "DEPTH"] and flu2["chunk_shape"] == [3, 6]
    assert flu2["stats"]["count"] == 18 and flu2["stats"]["nulls"] == 2
    assert flu2["fill_value"] == pytest.approx(9.96921e36, rel=1e-6)
    time = next(v for v in d["variables"] if v["name"] == "TIME")
    assert time["coordinate"] and time["dtype"] == "timestamp_nanoseconds"
    assert time["stats"]["min"] == "1965-01-13T00:00:00.000000000"
    assert len(d["attributes"]) == 50 and d["attributes"]["platform_name"] == "ECHIZEN"
    assert cli("show", store, "nope", ok=False).stderr == "atlas: error: dataset 'nope' does not exist\n"


def test_info_text_and_json(store):
    d = json.loads(run("info", store, "--json").stdout)
    assert d["format_version"] == 2 and d["generation"] == 1 and d["codec"] == "zstd"
    assert d["datasets"] == N_FILES + 1 and d["dead_chunk_bytes"] == 0 and d["reclaimable_bytes"] == 0
    assert d["array_names"] == 16  # the corpus adds TEMP, PSAL (+QC) to GL's 12 arrays
    assert d["bytes_on_disk"] == sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    assert 0 < d["live_chunk_bytes"] < d["segment_bytes"] < d["bytes_on_disk"]
    text = cli("info", store).stdout
    for key in ("format version:", "generation:", "codec:", "datasets:", "bytes on disk:", "reclaimable:"):
        assert key in text


# -- export ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["GL_PR_BO_JLKU", "region_00%2FGL_PR_CT_P00004"])
def test_export_round_trip(corpus, store, tmp_path, name):
    out = tmp_path / "out.nc"
    done = (run if name == "GL_PR_BO_JLKU" else cli)("export", store, name, out)
    assert done.stdout.startswith(f"exported {name} to {out}")
    src = xr.open_dataset(corpus / (unquote(name) + ".nc"))
    back = xr.open_dataset(out)
    xr.testing.assert_identical(back, src)  # values, dims, dtypes, attributes; encoding may differ
    cli("export", store, name, out, ok=False)  # no silent overwrite
    cli("export", store, name, out, "--force", "-q")


# -- bad files, unsupported variables ----------------------------------------------------------------------


@pytest.fixture()
def mixed_dir(corpus, tmp_path) -> Path:
    """Three good files and a bad one in between."""
    src = tmp_path / "mixed"
    src.mkdir()
    for p in sorted((corpus / "region_00").glob("*.nc"))[:3]:
        shutil.copy(p, src / p.name)
    (src / "GL_PR_CT_P00001b.nc").write_bytes(b"CDF\x01 this is not a netCDF file")
    return src


def test_bad_file_aborts_create_and_leaves_no_store(mixed_dir, tmp_path):
    target = tmp_path / "new.atlas"
    done = run("create", mixed_dir, target, ok=False)
    assert "GL_PR_CT_P00001b.nc" in done.stderr and "nothing was stored" in done.stderr
    assert not target.exists()
    empty = tmp_path / "empty"  # an existing empty directory stays, empty
    empty.mkdir()
    cli("create", mixed_dir, empty, "-q", ok=False)
    assert empty.is_dir() and not any(empty.iterdir())


def test_skip_errors_skips_and_logs_bad_files(mixed_dir, tmp_path):
    target, log = tmp_path / "s.atlas", tmp_path / "run.log"
    done = run("create", mixed_dir, target, "--skip-errors", "--log-file", log)
    assert "skipped 1" in done.stdout
    assert "atlas: warning: skipped" in done.stderr and "GL_PR_CT_P00001b.nc" in done.stderr
    assert json.loads(cli("ls", target, "--json").stdout)["datasets"] == [
        "GL_PR_CT_P00000", "GL_PR_CT_P00002", "GL_PR_CT_P00004"
    ]  # fmt: skip
    text = log.read_text()
    assert "WARNING" in text and "skipped" in text and "GL_PR_CT_P00001b.nc" in text


def test_bad_file_aborts_append_and_leaves_the_store_unchanged(store, mixed_dir, tmp_path):
    copy = tmp_path / "copy.atlas"
    shutil.copytree(store, copy)
    before = snapshot(copy)
    done = run("append", mixed_dir, copy, "--max-pending", "1KiB", ok=False)  # tiny budget: spills happen
    assert "unchanged at generation 1" in done.stderr
    assert snapshot(copy) == before
    cli("append", mixed_dir, copy, "--skip-errors", "-q")
    names = json.loads(cli("ls", copy, "--json").stdout)["datasets"]
    assert len(names) == N_FILES + 1 + 3
    cli("append", mixed_dir, copy, ok=False)  # the names exist now
    done = cli("append", mixed_dir, copy, "--skip-existing", "--skip-errors")
    assert ": 0 datasets from 1 file " in done.stdout and "skipped 1" in done.stdout  # only the bad one is left


def test_skip_unsupported_drops_only_the_bad_variables(corpus, tmp_path):
    src = tmp_path / "cplx"
    src.mkdir()
    ds = xr.Dataset({"z": ("x", np.arange(3) + 1j), "y": ("x", np.arange(3.0))}, attrs={"title": "complex"})
    ds.to_netcdf(src / "c.nc", engine="netcdf4", auto_complex=True)  # a compound type for plain readers
    done = cli("create", src, tmp_path / "a.atlas", ok=False)
    assert "variable 'z'" in done.stderr
    done = run("create", src, tmp_path / "b.atlas", "--skip-unsupported")
    assert "dropped unsupported variable 'z'" in done.stderr and "dropped 1 unsupported variable" in done.stdout
    d = json.loads(cli("show", tmp_path / "b.atlas", "c", "--json").stdout)
    assert [v["name"] for v in d["variables"]] == ["y"] and d["attributes"] == {"title": "complex"}


def test_large_file_is_streamed_in_blocks(tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    n = 100_000
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {"T": (("time", "z"), rng.random((n, 8)).astype("f4"), {"units": "K"}), "q": ("time", np.arange(n) % 7)},
        coords={"time": np.arange(n, dtype="f8")},
    )
    ds.to_netcdf(src / "big.nc", encoding={"T": {"zlib": True, "chunksizes": (10_000, 8)}})
    target = tmp_path / "big.atlas"
    cli("create", src, target, "--chunk-size", "1MiB", "-q")  # the file (4.8 MB) exceeds the read block
    d = json.loads(cli("show", target, "big", "--json").stdout)
    chunks = {v["name"]: v["chunk_shape"] for v in d["variables"]}
    assert chunks["T"][0] < n and chunks["T"][1] == 8
    with atlas.Atlas.open(target, mode="r") as st:
        xr.testing.assert_identical(st.to_xarray("big").load(), xr.open_dataset(src / "big.nc").load())


def _grouped_file(path: Path, n: int = 200) -> dict[str, xr.Dataset]:
    """A NetCDF-4 file with nested groups (made with netCDF4); ``{group path: expected content}``."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as nc:
        nc.title = "root"
        nc.createDimension("t", n)
        nc.createVariable("time", "f8", ("t",))[:] = np.arange(n)
        obs = nc.createGroup("obs")
        obs.source = "buoy"
        obs.createDimension("z", 4)
        v = obs.createVariable("temp", "f4", ("t", "z"), chunksizes=(10, 4), zlib=True)
        v.units = "K"
        v[:] = np.arange(n * 4, dtype="f4").reshape(n, 4)
        deep = obs.createGroup("deep 100%")
        deep.createVariable("flag", "i2", ("z",))[:] = [1, 2, 3, 4]
        nc.createGroup("empty")
    return {g: xr.open_dataset(path, group=g).load() for g in ("/", "/obs", "/obs/deep 100%", "/empty")}


@pytest.mark.parametrize("chunk_size", ["128MiB", "1KiB"])  # loaded whole; streamed in blocks
def test_netcdf4_groups_become_datasets_of_their_own(tmp_path, chunk_size):
    src = tmp_path / "src"
    src.mkdir()
    want = _grouped_file(src / "g.nc")
    target = tmp_path / "g.atlas"
    done = run("create", src, target, "--chunk-size", chunk_size)
    assert "4 datasets from 1 file" in done.stdout
    names = {"/": "g", "/obs": "g:obs", "/obs/deep 100%": "g:obs:deep 100%25", "/empty": "g:empty"}
    assert json.loads(run("ls", target, "--json").stdout)["datasets"] == sorted(names.values())
    with atlas.Atlas.open(target, mode="r") as st:
        for group, name in names.items():
            xr.testing.assert_identical(st.to_xarray(name).load(), want[group])
    # append: the same naming; a name taken by another file's group stops the run, naming it
    other = tmp_path / "other"
    other.mkdir()
    _grouped_file(other / "h.nc")
    run("append", other / "h.nc", target, "-q")
    assert "h:obs:deep 100%25" in json.loads(run("ls", target, "--json").stdout)["datasets"]
    clash = tmp_path / "clash"
    clash.mkdir()
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(clash / "k:obs.nc")
    _grouped_file(clash / "k.nc")
    before = snapshot(target)
    done = run("append", clash, target, ok=False)
    assert "k:obs" in done.stderr and "unchanged" in done.stderr
    assert snapshot(target) == before


def test_a_file_whose_group_cannot_be_stored_is_stored_not_at_all(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    xr.Dataset({"ok": ("x", np.arange(3.0))}).to_netcdf(src / "bad.nc", engine="netcdf4")
    xr.Dataset({"good": ("x", np.arange(3.0))}).to_netcdf(src / "bad.nc", group="g1", mode="a", engine="netcdf4")
    xr.Dataset({"z": ("x", np.arange(3) + 1j)}).to_netcdf(
        src / "bad.nc", group="g2", mode="a", engine="netcdf4", auto_complex=True
    )
    _grouped_file(src / "fine.nc")
    done = run("create", src, tmp_path / "s.atlas", "--skip-errors")
    assert "skipped" in done.stderr and "bad.nc" in done.stderr
    names = json.loads(run("ls", tmp_path / "s.atlas", "--json").stdout)["datasets"]
    assert names == ["fine", "fine:empty", "fine:obs", "fine:obs:deep 100%25"]


def test_group_dataset_names_are_valid_and_reversible():
    cases = {("a%2Fb", "/x"): "a%2Fb:x", ("f:1", "/a:b/c%d"): "f%3A1:a%3Ab:c%25d", ("g", "/é/ü"): "g:é:ü"}
    for (file_name, group), name in cases.items():
        assert group_dataset_name(file_name, group) == name
        validate_name(name, "dataset")
        head, *parts = name.split(":")
        assert unquote(head) == unquote(file_name) and "/" + "/".join(unquote(p) for p in parts) == group


# -- rm, compact, verify -------------------------------------------------------------------------------------


def test_rm_then_compact_reclaims_the_dead_bytes(store, tmp_path):
    copy = tmp_path / "copy.atlas"
    shutil.copytree(store, copy)
    victims = ["region_00%2FGL_PR_CT_P00000", "region_00%2FGL_PR_CT_P00002"]
    done = run("rm", copy, *victims)
    assert done.stdout.startswith("removed 2 datasets")
    info = json.loads(cli("info", copy, "--json").stdout)
    assert info["datasets"] == N_FILES - 1 and info["generation"] == 2
    assert info["dead_chunk_bytes"] > 0 and info["reclaimable_bytes"] == info["dead_chunk_bytes"]
    before = info["bytes_on_disk"]
    assert "compacted" in cli("compact", copy, "--grace-period", "0").stdout
    after = json.loads(cli("info", copy, "--json").stdout)
    assert after["dead_chunk_bytes"] == 0 and after["live_chunk_bytes"] == info["live_chunk_bytes"]
    assert before - after["bytes_on_disk"] >= info["dead_chunk_bytes"]
    cli("rm", copy, victims[0], ok=False)  # gone
    cli("rm", copy, victims[0], "--force", "-q")


def test_compact_reports_retired_apart_from_deleted_and_an_idle_compact_commits_nothing(store, tmp_path):
    copy = tmp_path / "copy.atlas"
    shutil.copytree(store, copy)
    cli("rm", copy, "region_00%2FGL_PR_CT_P00000")
    out = cli("compact", copy).stdout
    assert "reclaimed" not in out
    assert re.search(r"retired \d+ files \([0-9.]+ \w*B\), deletable by a compaction after \d{4}-", out), out
    assert "deleted now 0 files (0 B)" in out
    info = json.loads(cli("info", copy, "--json").stdout)
    gen = info["generation"]
    assert info["retired_files"] > 0 and info["retired_bytes"] > 0
    assert info["reclaimable_bytes"] == 0 and info["unreferenced_bytes"] == 0  # retired bytes are not free
    text = cli("info", copy).stdout
    assert re.search(r"retired: .* not free yet", text) and re.search(r"reclaimable:\s+0 B", text)
    again = cli("compact", copy).stdout
    assert f"nothing to rewrite or retire, generation {gen} unchanged" in again
    assert json.loads(cli("info", copy, "--json").stdout)["generation"] == gen
    final = cli("compact", copy, "--grace-period", "0").stdout
    assert f"deleted now {info['retired_files']} files" in final
    assert json.loads(cli("info", copy, "--json").stdout)["retired_files"] == 0


def test_verify_reports_damage_with_exit_status_1(store, tmp_path):
    assert cli("verify", store).stdout.startswith("ok: ")
    assert json.loads(cli("verify", store, "--json").stdout)["ok"] is True
    copy = tmp_path / "damaged.atlas"
    shutil.copytree(store, copy)
    segment = next(p for p in sorted(copy.rglob("*.af")) if p.parent.name == encode_dir_name("TEMP"))
    data = bytearray(segment.read_bytes())
    for offset in (64, 65, 66):  # the first chunk payload starts at byte 64
        data[offset] ^= 0xFF
    segment.write_bytes(bytes(data))
    done = run("verify", copy, ok=False)
    assert "fails its checksum" in done.stdout and "TEMP" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("DAMAGED: 1 problem")
    report = json.loads(cli("verify", copy, "--json", ok=False).stdout)
    assert report["ok"] is False and len(report["problems"]) == 1


# -- errors and options ------------------------------------------------------------------------------------


#: Invalid values of every option that takes a number: each is a usage error (exit status 2).
BAD_NUMBERS = [
    ("compact", "--grace-period", "nan"),
    ("compact", "--grace-period", "NaN"),
    ("compact", "--grace-period", "-5"),
    ("compact", "--grace-period", "-0.5"),
    ("compact", "--grace-period", "ten"),
    ("create", "--chunk-size", "1e999"),
    ("create", "--chunk-size", "9999999TiB"),
    ("create", "--chunk-size", "0"),
    ("create", "--chunk-size", "-1"),
    ("create", "--chunk-size", "nan"),
    ("append", "--max-pending", "1e999"),
    ("append", "--max-pending", "0.1"),
    ("append", "-j", "-1"),
    ("create", "-j", "1.5"),
    ("create", "--jobs", "nan"),
    ("create", "--jobs", "5000"),
]


@pytest.mark.parametrize(("command", "option", "value"), BAD_NUMBERS)
def test_invalid_numeric_options_are_usage_errors(tmp_path, command, option, value):
    store = tmp_path / "s.atlas"
    atlas.Atlas.create(store).close()
    before = snapshot(store)
    args = {"compact": [store], "create": [tmp_path, tmp_path / "new.atlas"], "append": [tmp_path, store]}[command]
    done = run(command, *args, f"{option}={value}", ok=2)
    assert done.stderr.startswith("usage: atlas ") and "error: argument " in done.stderr and option in done.stderr
    assert "Traceback" not in done.stderr and value in done.stderr
    assert snapshot(store) == before and not (tmp_path / "new.atlas").exists()


def test_valid_edge_values_of_numeric_options(store, tmp_path):
    copy = tmp_path / "copy.atlas"
    shutil.copytree(store, copy)
    for value in ("inf", "1e999", "0", "-0"):
        cli("compact", copy, f"--grace-period={value}")


def test_errors_are_one_line_with_exit_status_1(tmp_path):
    done = run("ls", tmp_path / "nowhere", ok=False)
    assert done.stderr.startswith("atlas: error: ") and done.stderr.count("\n") == 1
    done = cli("info", tmp_path, "--region", "eu-west-1", ok=False)
    assert "region" in done.stderr and "local stores take no storage options" in done.stderr
    assert cli("create", tmp_path / "nodir", tmp_path / "x", ok=False).stderr.startswith("atlas: error: ")
    assert cli("ls", ok=2).stderr.startswith("usage: atlas ls")  # usage error
    assert cli("--version").stdout == f"atlas {atlas.__version__}\n"


def test_create_takes_files_like_append_and_points_existing_stores_to_append(tmp_path):
    target = tmp_path / "one.atlas"
    done = cli("create", GL, target)
    assert f"created {target}: 1 dataset from 1 file" in done.stdout
    assert atlas.Atlas.open(target, mode="r").list_datasets() == [GL.stem]
    again = cli("create", GL, target, ok=False)
    assert "`atlas append SRC... " in again.stderr and "Atlas.open" not in again.stderr
    assert again.stderr.count("\n") == 1
    assert atlas.Atlas.open(target, mode="r").generation == 1  # untouched


def _packed_file(path):
    import xarray as xr

    rng = np.random.default_rng(0)
    values = np.round(rng.uniform(0, 30, (40, 50)), 2)
    values[3, :7] = np.nan
    qc = rng.integers(0, 9, 40).astype("int8")
    ds = xr.Dataset(
        {"TEMP": (("TIME", "DEPTH"), values, {"units": "degree_Celsius"}), "TEMP_QC": ("TIME", qc)},
        coords={"TIME": np.arange(40.0)},
    )
    ds.TEMP.encoding.update({"dtype": "int16", "scale_factor": 0.01, "add_offset": 10.0, "_FillValue": -32768})
    ds.TEMP_QC.encoding.update({"dtype": "int8", "_FillValue": np.int8(-127)})
    ds.to_netcdf(path)
    return path


@pytest.mark.parametrize("chunk_size", ["128MiB", "4KiB"], ids=["loaded", "streamed"])
def test_create_stores_packed_and_qc_variables_as_the_file_holds_them(tmp_path, chunk_size):
    import xarray as xr

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(GL, src / GL.name)
    _packed_file(src / "packed.nc")
    target = tmp_path / "p.atlas"
    cli("create", src, target, "--chunk-size", chunk_size, "-q")
    store = atlas.Atlas.open(target, mode="r")
    stored = {n: store[n] for n in ("GL_PR_BO_JLKU", "packed")}
    for qc in ("TIME_QC", "POSITION_QC", "DEPH_QC", "FLU2_QC"):
        assert stored["GL_PR_BO_JLKU"].array_meta(qc)["dtype"] == "int8"  # not float32: 4x the bytes
    assert stored["packed"].array_meta("TEMP")["dtype"] == "int16"
    assert stored["packed"].array_meta("TEMP_QC")["dtype"] == "int8"
    for name, path in (("GL_PR_BO_JLKU", GL), ("packed", src / "packed.nc")):
        with xr.open_dataset(path) as want:
            for got in (
                store.to_xarray(name),
                xr.open_dataset(target, engine="atlas", group=name),
                xr.open_dataset(target, engine="atlas", group=name, chunks={}),
            ):
                for var in want.variables:
                    a, b = want[var], got[var]
                    assert a.dtype == b.dtype, (name, var, a.dtype, b.dtype)
                    np.testing.assert_array_equal(a.values, b.values, err_msg=f"{name}/{var}")
                    assert list(a.attrs) == list(b.attrs), (name, var)
    out = tmp_path / "back.nc"
    cli("export", target, "packed", out, "-q")
    original = src / "packed.nc"
    with xr.open_dataset(out, mask_and_scale=False) as raw, xr.open_dataset(original, mask_and_scale=False) as o:
        assert raw.TEMP.dtype == np.int16 and raw.TEMP_QC.dtype == np.int8
        np.testing.assert_array_equal(raw.TEMP.values, o.TEMP.values)
        assert raw.TEMP.attrs["scale_factor"] == 0.01 and raw.TEMP.attrs["_FillValue"] == -32768
    with xr.open_dataset(out) as back, xr.open_dataset(src / "packed.nc") as want:
        xr.testing.assert_identical(back, want)


def test_help_and_docs_name_the_store_url_forms():
    text = cli("--help").stdout
    for form in ("file://", "s3://bucket/prefix", "gs://", "az://", "http(s)://", "--endpoint"):
        assert form in text, form
    assert "local directory or a file:// URL." not in text
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "s3://bucket/prefix" in doc and "--endpoint" in doc


def test_python_logging_is_silent_by_default(tmp_path):
    code = "import logging, atlas.cli; logging.getLogger('atlas').warning('should not print')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""


# -- pure helpers ------------------------------------------------------------------------------------------


def test_dataset_names_are_valid_and_reversible():
    cases = {
        "GL_PR_BO_JLKU.nc": "GL_PR_BO_JLKU",
        "a/b/c.NC4": "a%2Fb%2Fc",
        "_x.cdf": "%5Fx",
        "50%.netcdf": "50%25",
        "a%2Fb.nc": "a%252Fb",
        "..nc": "%2E",
        "x.nc.gz": "x.nc.gz",
        "caf\udce9.nc": "caf%E9",
    }
    for rel, name in cases.items():
        assert dataset_name(rel) == name
        validate_name(name, "dataset")
        stem = unquote(name, errors="surrogateescape")
        assert rel.startswith(stem)


def test_parse_size():
    assert parse_size("128MiB") == 128 << 20
    assert parse_size("64k") == 64_000 and parse_size("1.5GiB") == 3 << 29 and parse_size("1000") == 1000
    for bad in ("", "12 parsecs", "-1", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_progress_bar_on_a_terminal_and_lines_otherwise():
    from atlas.cli.progress import Reporter

    class Tty(io.StringIO):
        def isatty(self):
            return True

    plain = io.StringIO()
    with Reporter(2, "created", quiet=False, stream=plain) as r:
        r.advance("a")
        r.advance("b", "skipped")
    assert plain.getvalue() == "[1/2] a\n[2/2] b (skipped)\n"
    pytest.importorskip("rich")
    tty = Tty()
    with Reporter(2, "created", quiet=False, stream=tty) as r:
        r.advance("a")
        r.print("atlas: warning: x")
        r.advance("b")
    assert "created" in tty.getvalue() and "2/2" in tty.getvalue() and "atlas: warning: x" in tty.getvalue()
    quiet = io.StringIO()
    with Reporter(1, "created", quiet=True, stream=quiet) as r:
        r.advance("a")
    assert quiet.getvalue() == ""
