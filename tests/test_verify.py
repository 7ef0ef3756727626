"""``verify()`` checks what readers check: an empty verdict iff every array reads.

Each damage kind is applied to a fresh copy of a small store; the verdict of
``verify()`` (from a handle opened before the damage, which has read nothing yet)
is compared with whether a fresh handle can read every array of every dataset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import atlas
from atlas import errors

ROOT = Path(__file__).resolve().parents[1]


def _segments(path: Path) -> list[Path]:
    s = atlas.Atlas.open(path, mode="r")
    try:
        return [path / fam.dir / ref.file for fam in s._st.base.families.values() for ref in fam.segments]
    finally:
        s.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Two flushes of identical data (two same-sized segments of ``x``), plus strings."""
    path = tmp_path_factory.mktemp("verify") / "s"
    with atlas.Atlas.create(path) as s:
        for name in ("d1", "d2"):
            ds = s.create_dataset(name)
            ds.define_array("x", "float64", ["n"], [4000], chunk_shape=[1000])
            ds.write_array("x", [0], np.zeros(4000))
            ds.define_array("s", "string", ["n"], [30], chunk_shape=[10])
            ds.write_array("s", [0], np.array([f"v{i}" for i in range(30)], dtype=object))
            s.flush()
    x = [p for p in _segments(path) if p.parent.name == "x"]
    assert len(x) == 2 and x[0].stat().st_size == x[1].stat().st_size
    return path


def _reads_ok(path: Path) -> bool:
    try:
        with atlas.Atlas.open(path, mode="r") as s:
            for name in s.list_datasets():
                ds = s.open_dataset(name)
                for array in ds.list_arrays():
                    ds.read_array(array)
    except errors.AtlasError:
        return False
    return True


def _append(path: Path) -> None:
    with open(_segments(path)[0], "ab") as fh:
        fh.write(b"\0" * 100)


def _truncate(path: Path) -> None:
    seg = _segments(path)[0]
    os.truncate(seg, seg.stat().st_size - 1)


def _truncate_half(path: Path) -> None:
    seg = _segments(path)[0]
    os.truncate(seg, seg.stat().st_size // 2)


def _swap(path: Path) -> None:
    a, b = [p for p in _segments(path) if p.parent.name == "x"]
    tmp = a.with_suffix(".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


def _delete(path: Path) -> None:
    _segments(path)[-1].unlink()


def _flip(seg: Path, offset: int) -> None:
    data = bytearray(seg.read_bytes())
    data[offset] ^= 0xFF
    seg.write_bytes(bytes(data))


def _flip_payload(path: Path) -> None:
    _flip(_segments(path)[0], 64)  # the first payload starts at 64


def _flip_index(path: Path) -> None:
    s = atlas.Atlas.open(path, mode="r")
    fam = next(iter(s._st.base.families.values()))
    ref = fam.segments[0]
    s.close()
    _flip(path / fam.dir / ref.file, ref.index_offset + 3)


def _damage_manifest(path: Path) -> None:
    (manifest,) = [p for p in path.iterdir() if p.name.startswith("atlas.")]
    manifest.write_bytes(manifest.read_bytes()[: manifest.stat().st_size // 2])


def _none(path: Path) -> None:
    pass


DAMAGE = {
    "none": _none,
    "append": _append,
    "truncate-1": _truncate,
    "truncate-half": _truncate_half,
    "swap-same-size": _swap,
    "delete": _delete,
    "flip-payload": _flip_payload,
    "flip-index": _flip_index,
    "truncate-manifest": _damage_manifest,
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_verify_is_empty_iff_every_read_succeeds(template, tmp_path, kind):
    path = tmp_path / "s"
    shutil.copytree(template, path)
    handle = atlas.Atlas.open(path, mode="r")
    DAMAGE[kind](path)
    problems = handle.verify()
    handle.close()
    readable = _reads_ok(path)
    assert (problems == []) == readable, f"{kind}: verify says {problems}, every read succeeds: {readable}"
    assert readable is (kind == "none")


def test_verify_names_the_segment_with_appended_bytes(template, tmp_path):
    """The case of issue 18: reads fail on the size, verify used to say ok."""
    path = tmp_path / "s"
    shutil.copytree(template, path)
    _append(path)
    seg = _segments(path)[0]
    rel = seg.relative_to(path).as_posix()
    (problem,) = atlas.Atlas.open(path, mode="r").verify()
    assert rel in problem and "bytes, the manifest says" in problem
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "atlas", "verify", str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1, done
    assert rel in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_verify_is_stricter_than_reads_on_header_and_footer(template, tmp_path):
    """Readers trust the manifest's copy of the index location; verify checks the file's own."""
    for offset, what in ((0, "bad magic"), (-1, "footer magic")):
        path = tmp_path / f"s{offset}"
        shutil.copytree(template, path)
        seg = _segments(path)[0]
        _flip(seg, seg.stat().st_size + offset if offset < 0 else offset)
        problems = atlas.Atlas.open(path, mode="r").verify()
        assert len(problems) == 1 and what in problems[0], problems
        assert _reads_ok(path)


def test_verify_checks_object_sizes_on_object_stores(template):
    """On an object store a read of a longer object may succeed, but the store is damaged."""
    obstore = pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
    from obstore.store import MemoryStore

    mem = MemoryStore()
    for f in template.rglob("*"):
        if f.is_file() and not f.name.startswith("."):
            obstore.put(mem, f.relative_to(template).as_posix(), f.read_bytes())
    assert atlas.Atlas.open(mem, mode="r").verify() == []
    seg = _segments(template)[0]
    rel = seg.relative_to(template).as_posix()
    obstore.put(mem, rel, seg.read_bytes() + b"\0" * 100)  # a plain put overwrites
    (problem,) = atlas.Atlas.open(mem, mode="r").verify()
    assert rel in problem and "bytes, the manifest says" in problem
    obstore.put(mem, rel, seg.read_bytes()[:-1])
    (problem,) = atlas.Atlas.open(mem, mode="r").verify()
    assert rel in problem
    obstore.delete(mem, rel)
    (problem,) = atlas.Atlas.open(mem, mode="r").verify()
    assert rel in problem and "missing" in problem
