"""What a fresh process loads, and the numba cache where the package cannot be written.

Each test runs a new interpreter (``sys.modules`` of the test process says nothing
about a first import).  No test here is timed: ``benchmarks/bench_startup.py``
measures start-up and the first calls.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import atlas

ROOT = Path(atlas.__file__).resolve().parent.parent
HEAVY = ("numba", "llvmlite", "blosc2", "xarray", "rich", "dask")


def run_python(code: str, *args: str, env: dict[str, str] | None = None, **kwargs) -> str:
    base = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    base["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def loaded_after(code: str, *args: str) -> set[str]:
    """The heavy modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint('MODULES', *sorted(m for m in {HEAVY!r} if m in sys.modules))"
    line = [ln for ln in run_python(probe, *args).splitlines() if ln.startswith("MODULES")][-1]
    return set(line.split()[1:])


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "s.atlas"
    with atlas.Atlas.create(path) as store:
        for i in range(4):
            ds = store.create_dataset(f"d{i}")
            ds.define_array("v", "float32", ["x", "y"], [20, 30], chunk_shape=[10, 30])
            ds.write_array("v", [0, 0], np.arange(600, dtype="float32").reshape(20, 30) + i)
            ds.define_array("n", "int16", ["y"], [30])
            ds.write_array("n", [0], np.arange(30, dtype="int16") * (i + 1))
    return path


def test_import_atlas_loads_no_heavy_module():
    assert loaded_after("import atlas") == set()
    # The public names still resolve (on first use).
    assert loaded_after("import atlas\nassert atlas.Atlas.__name__ == 'Atlas'\nassert atlas.DTYPE_NAMES") == set()


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["ls", "--help"]])
def test_atlas_help_and_version_load_no_heavy_module(argv):
    code = f"from atlas.cli import main\nassert main({argv!r}) == 0"
    assert loaded_after(code) == set()
    assert "numpy" not in run_python(f"{code}\nimport sys\nprint(sorted(sys.modules))")


def test_listing_and_small_reads_compile_nothing(small_store):
    """`atlas ls`, `atlas info`, open, a small bulk read and read_array need no numba (nor blosc2)."""
    for command in ("ls", "info"):
        code = f"from atlas.cli import main\nimport sys\nassert main([{command!r}, sys.argv[1]]) == 0"
        assert loaded_after(code, str(small_store)) == set()
    code = """
import sys
import numpy as np
import atlas
s = atlas.Atlas.open(sys.argv[1], mode="r")
names = s.list_datasets()
got = s.read_array_across_stacked("v", names, [5, 3], [10, 20])
want = np.stack([(np.arange(600, dtype="float32").reshape(20, 30) + i)[5:15, 3:23] for i in range(4)])
assert (got == want).all()
assert (s.read_array_across_stacked("n", names, [2], [5])[3] == np.arange(2, 7) * 4).all()
d2 = np.arange(600, dtype="float32").reshape(20, 30) + 2
assert (s.open_dataset("d2").read_array("v", [1, 2], [3, 4]) == d2[1:4, 2:6]).all()
"""
    assert loaded_after(code, str(small_store)) == set()


def test_bulk_read_kernel_compiles_once_for_every_dtype(tmp_path):
    """read_pieces works on bytes and fixed column types: one compiled signature serves
    every dtype, rank, codec and raw chunk (a new dtype never waits for a compile)."""
    code = """
import sys
import numpy as np
import atlas
from atlas.engine import gather, libblosc2
gather.KERNEL_MIN_PIECES = 0
dtypes = ["float32", "int16", "bool", "uint64", "float64", "timestamp_ns"]
def values(i, dt):
    return (np.arange(600).reshape(20, 30) % 7 + i).astype("datetime64[ns]" if dt == "timestamp_ns" else dt)
with atlas.Atlas.create(sys.argv[1]) as s:
    for i in range(3):
        ds = s.create_dataset(f"d{i}")
        for dt in dtypes:
            ds.define_array(dt, dt, ["x", "y"], [20, 30], chunk_shape=[10, 30])
            ds.write_array(dt, [0, 0], values(i, dt))
        ds.define_array("scalar", "int32", [], [])
        ds.write_array("scalar", [], np.array(i, "int32"))
        ds.define_array("noise", "uint8", ["b"], [4096])  # incompressible: stored raw
        ds.write_array("noise", [0], np.random.default_rng(i).integers(0, 256, 4096, dtype="uint8"))
s = atlas.Atlas.open(sys.argv[1], mode="r")
names = s.list_datasets()
for dt in dtypes:
    got = s.read_array_across_stacked(dt, names, [3, 2], [9, 20])
    assert all((got[i] == values(i, dt)[3:12, 2:22]).all() for i in range(3))
assert s.read_array_across_stacked("scalar", names).tolist() == [0, 1, 2]
assert s.read_array_across_stacked("noise", names).shape == (3, 4096)
print("SIGNATURES", len(libblosc2.read_pieces.signatures))
"""
    out = run_python(code, str(tmp_path / "s.atlas"))
    assert "SIGNATURES 1" in out, out


# -- the numba cache when the package directory is read-only ---------------------------------------

# Forces the jitted paths (the sizes that choose them are small here), writes and reads
# back, then reports where numba cached read_pieces and whether it was a cache hit.
CACHE_CHILD = r"""
import json, logging, os, sys
import numpy as np
logging.basicConfig(level=logging.WARNING)
import atlas
from atlas.engine import chunks, gather, libblosc2
gather.KERNEL_MIN_PIECES = 0
chunks.NUMPY_STATS_MAX_CELLS = 0
path = os.path.join(sys.argv[1], "s.atlas")
data = [np.arange(600, dtype="float32").reshape(20, 30) * (i + 1) for i in range(3)]
if not os.path.exists(path):
    with atlas.Atlas.create(path) as s:
        for i, arr in enumerate(data):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("v", "float32", ["x", "y"], [20, 30], chunk_shape=[10, 30])
            ds.write_array("v", [0, 0], arr)
s = atlas.Atlas.open(path, mode="r")
got = s.read_array_across_stacked("v", s.list_datasets(), [5, 3], [10, 20])
kernel = libblosc2.read_pieces  # the dispatcher, once bound
stats = s.open_dataset("d1").array_stats("v")
print(json.dumps({
    "atlas": atlas.__file__,
    "equal": bool((got == np.stack([a[5:15, 3:23] for a in data])).all()),
    "stats": [float(stats["min"]), float(stats["max"])],
    "hits": sum(kernel.stats.cache_hits.values()),
    "misses": sum(kernel.stats.cache_misses.values()),
    "cache_path": getattr(kernel._cache, "cache_path", None),
}))
"""


def _as_user(writable: list[Path]) -> list[str]:
    """A command prefix that runs the child as an unprivileged user owning ``writable``
    (root writes anywhere, so read-only directories would prove nothing as root)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot test a read-only package directory")
    uid = 65534  # nobody
    for p in writable:
        os.chown(p, uid, uid)
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def _run_child(tmp: Path, pkg: Path, home: Path, prefix: list[str]) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(PYTHONPATH=str(pkg), HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run(
        [*prefix, sys.executable, "-c", CACHE_CHILD, str(tmp / "work")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.fixture
def read_only_install():
    """A copy of the package in a read-only directory, a writable home and work directory."""
    tmp = Path(tempfile.mkdtemp(prefix="atlas-ro-"))
    try:
        pkg = tmp / "site"
        shutil.copytree(ROOT / "atlas", pkg / "atlas", ignore=shutil.ignore_patterns("__pycache__"))
        (tmp / "home").mkdir()
        (tmp / "work").mkdir()
        prefix = _as_user([tmp / "home", tmp / "work"])
        for p in [pkg, *pkg.rglob("*")]:
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) | stat.S_IROTH | stat.S_IXOTH)
        tmp.chmod(0o755)
        yield tmp, pkg, prefix
    finally:
        for p in [tmp, *tmp.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(tmp, ignore_errors=True)


def test_read_only_package_caches_in_the_user_cache(read_only_install):
    tmp, pkg, prefix = read_only_install
    home = tmp / "home"
    first, _ = _run_child(tmp, pkg, home, prefix)
    assert first["atlas"].startswith(str(pkg))  # the read-only copy was imported
    assert first["equal"] and first["stats"] == [0.0, 1198.0]
    # numba could not write next to the source, so it used the per-user cache.
    assert first["cache_path"] and Path(first["cache_path"]).is_relative_to(home / ".cache" / "numba")
    assert any(Path(first["cache_path"]).glob("libblosc2.read_pieces-*.nbi"))
    assert not list(pkg.rglob("*.nbi"))
    assert first["misses"] == 1 and first["hits"] == 0
    # A new process loads the kernel from that cache instead of compiling it.
    second, _ = _run_child(tmp, pkg, home, prefix)
    assert second["equal"] and second["hits"] == 1 and second["misses"] == 0


def test_no_writable_cache_compiles_in_memory(read_only_install):
    tmp, pkg, prefix = read_only_install
    home = tmp / "home"
    home.chmod(0o555)  # ~/.cache cannot be created either
    result, stderr = _run_child(tmp, pkg, home, prefix)
    assert result["equal"] and result["stats"] == [0.0, 1198.0]
    assert result["cache_path"] is None
    assert "RuntimeWarning" in stderr and "NUMBA_CACHE_DIR" in stderr  # says how to keep compiled code


def test_without_libblosc2_everything_still_reads_and_writes(tmp_path):
    """ATLAS_NO_NATIVE: checksums by the jitted XXH64, chunks decoded by the blosc2 module."""
    code = """
import sys
import numpy as np
import atlas
from atlas.engine import libblosc2
assert not libblosc2.AVAILABLE and libblosc2.UNAVAILABLE_REASON == "disabled by ATLAS_NO_NATIVE"
data = [np.arange(600, dtype="float32").reshape(20, 30) * (i + 1) for i in range(3)]
with atlas.Atlas.create(sys.argv[1]) as s:
    for i, arr in enumerate(data):
        ds = s.create_dataset(f"d{i}")
        ds.define_array("v", "float32", ["x", "y"], [20, 30], chunk_shape=[10, 30])
        ds.write_array("v", [0, 0], arr)
s = atlas.Atlas.open(sys.argv[1], mode="r")
got = s.read_array_across_stacked("v", s.list_datasets(), [5, 3], [10, 20])
assert (got == np.stack([a[5:15, 3:23] for a in data])).all()
assert (s.open_dataset("d2").read_array("v") == data[2]).all()
"""
    run_python(code, str(tmp_path / "s.atlas"), env={"ATLAS_NO_NATIVE": "1", "NUMBA_CACHE_DIR": str(tmp_path / "nb")})
