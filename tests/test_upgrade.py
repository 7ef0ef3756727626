"""Format v1 stores under the format v2 library: they read, and their first commit upgrades them.

A v1 store here is either a golden store (written by the format 1 writer) or one
built with the library and then given a v1 manifest holding the same datasets
(:func:`v1_stores.to_v1`): every answer it gives must be the same after the upgrade.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from v1_stores import to_v1

import atlas
from atlas import errors
from atlas.catalog import decode_metadata

GOLDEN = Path(__file__).parent / "data" / "golden"
ROOT = Path(__file__).resolve().parent.parent


def _canon(x: Any) -> Any:
    """Values comparable with ``==`` (NaN equal to NaN, arrays by dtype and content)."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "f":
            return ("nd", str(x.dtype), x.shape, tuple("nan" if v != v else v for v in x.ravel().tolist()))
        return ("nd", str(x.dtype), x.shape, tuple(x.ravel().tolist()))
    if isinstance(x, float) and math.isnan(x):
        return ("nan",)
    if isinstance(x, dict):
        return tuple((k, _canon(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return tuple(_canon(v) for v in x)
    if isinstance(x, np.generic):
        return (type(x).__name__, _canon(x.item()))
    return (type(x).__name__, x)


def snapshot(store: atlas.Atlas) -> dict[str, Any]:
    """Every answer the store gives: names, arrays, attributes, metadata, stats and data."""
    out: dict[str, Any] = {"datasets": store.list_datasets(), "arrays": store.list_arrays(), "len": len(store)}
    for name in store.list_datasets():
        ds = store.open_dataset(name)
        out[name] = _canon(
            {
                "attributes": ds.attributes(),
                "arrays": {
                    a: (ds.array_meta(a), ds.array_stats(a), ds.read_array(a)) for a in ds.list_arrays()
                },
            }
        )
    for array in store.list_arrays():
        names = [n for n in store.list_datasets() if array in store.open_dataset(n).list_arrays()]
        out[f"across {array}"] = _canon(store.read_array_across(array, names))
    return out


def build_v1(path: Path) -> Path:
    """A store with many features, written in three commits, then given a v1 manifest."""
    with atlas.Atlas.create(path) as s:
        for i in range(6):
            ds = s.create_dataset(f"ds_{i}")
            ds.define_array("temp", "float32", ["t"], [10], chunk_shape=[4], fill_value=math.nan)
            ds.write_array("temp", [0], np.arange(10, dtype="float32") * i)
            ds.define_array("label", "string", ["n"], [3])
            ds.write_array("label", [0], np.array(["a", f"b{i}", "ç"], dtype=object))
            ds.set_attribute("platform", f"P{i % 3}")
            ds.set_attribute("depth", float(i) * 1.5)
            ds.set_attribute("count", i)
            ds.set_attribute("flag", i % 2 == 0)
            ds.set_attribute("levels", [1.0, math.nan, float(i)])
            ds.set_attribute("when", np.datetime64("2024-01-01T00:00:00", "ns") + i)
        s.create_dataset("empty")
    with atlas.Atlas.open(path) as s:
        s.open_dataset("ds_1").write_array("temp", [2], np.full(3, -1, dtype="float32"))  # dead records
        s.delete_dataset("ds_4")
        ds = s.open_dataset("ds_2")
        ds.define_array("grid", "int64", ["y", "x"], [3, 4])
        ds.write_array("grid", [0, 0], np.arange(12).reshape(3, 4))
        ds.delete_attribute("count")
        ds.set_attribute("matrix", np.eye(2))
    return to_v1(path)


def _format(path: Path, name: str = "atlas.json") -> int:
    meta = decode_metadata((path / name).read_bytes(), "json", "none", name)
    return meta.format_version


def test_upgrade_keeps_every_answer(tmp_path):
    path = build_v1(tmp_path / "s")
    assert _format(path) == 1 and not (path / "_catalog").exists()
    with atlas.Atlas.open(path, mode="r") as r:
        assert r.format_version == 1 and r.verify() == []
        before = snapshot(r)
        generation = r.generation
    with atlas.Atlas.open(path) as s:
        assert s.upgrade() is True
        assert s.format_version == 2 and s.generation == generation + 1
        assert s.upgrade() is False  # once is enough
        assert snapshot(s) == before
    assert _format(path) == 2 and len(list((path / "_catalog").iterdir())) == 1
    with atlas.Atlas.open(path, mode="r") as r:
        assert snapshot(r) == before and r.verify() == []
    with atlas.Atlas.open(path) as s:  # and it goes on working
        s.compact(grace_period=0)
        assert snapshot(s) == before and s.verify() == []


@pytest.mark.parametrize("name", ["v1-json-zstd", "v1-msgpack-lz4", "v1-json-none-raw"])
def test_golden_v1_store_upgrades_with_identical_answers(tmp_path, name):
    path = tmp_path / name
    shutil.copytree(GOLDEN / name, path)
    with atlas.Atlas.open(path, mode="r") as r:
        before = snapshot(r)
        manifest_files = sorted(p.name for p in path.iterdir() if p.name.startswith("atlas."))
    with atlas.Atlas.open(path) as s:
        assert s.upgrade() is True
    # the commit object replaces the manifest under the same file name
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("atlas.")) == manifest_files
    with atlas.Atlas.open(path, mode="r") as r:
        assert r.format_version == 2 and snapshot(r) == before and r.verify() == []


def test_first_write_to_a_v1_store_upgrades_it_in_the_same_commit(tmp_path):
    path = build_v1(tmp_path / "s")
    old = atlas.Atlas.open(path, mode="r")  # a reader of the v1 generation
    with atlas.Atlas.open(path) as s:
        generation = s.generation
        s.open_dataset("ds_0").set_attribute("count", 100)
    assert _format(path) == 2
    with atlas.Atlas.open(path, mode="r") as r:
        assert r.generation == generation + 1  # one commit: the change and the upgrade
        assert r.open_dataset("ds_0").get_attribute("count") == 100
        assert r.open_dataset("ds_5").get_attribute("count") == 5
        (part,) = r.session.state().base.parts
        assert part.rows == len(r.list_datasets())
    assert old.format_version == 1 and old.open_dataset("ds_0").get_attribute("count") == 0
    old.refresh()
    assert old.format_version == 2 and old.open_dataset("ds_0").get_attribute("count") == 100


def test_a_v1_writer_rebases_over_the_upgrade(tmp_path):
    """Two handles of a v1 store touching different datasets both commit."""
    path = build_v1(tmp_path / "s")
    a, b = atlas.Atlas.open(path), atlas.Atlas.open(path)
    a.open_dataset("ds_0").set_attribute("who", "a")
    b.open_dataset("ds_1").set_attribute("who", "b")
    a.flush()
    with pytest.raises(errors.ConflictError):
        b.flush()
    b.refresh()
    b.flush()
    with atlas.Atlas.open(path, mode="r") as r:
        assert r.open_dataset("ds_0").get_attribute("who") == "a"
        assert r.open_dataset("ds_1").get_attribute("who") == "b"
    a.open_dataset("ds_1").set_attribute("who", "a")  # b changed ds_1 since a's snapshot
    with pytest.raises(errors.ConflictError):
        a.flush()
    with pytest.raises(errors.ConflictError, match="ds_1"):
        a.refresh()
    a.discard()
    b.close()
    a.close()


def test_read_only_handle_never_upgrades(tmp_path):
    path = build_v1(tmp_path / "s")
    with atlas.Atlas.open(path, mode="r") as r, pytest.raises(errors.ReadOnlyError):
        r.upgrade()
    assert _format(path) == 1


def test_cli_upgrade(tmp_path):
    path = build_v1(tmp_path / "s")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "atlas", *args], capture_output=True, text=True, timeout=120,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "upgraded" in cli("upgrade", str(path))
    assert _format(path) == 2
    assert "nothing to do" in cli("upgrade", str(path))
