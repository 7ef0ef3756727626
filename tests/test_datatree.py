"""``xarray.DataTree`` over a store: add_datatree, to_datatree, open_datatree / open_groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import atlas
from atlas import errors
from atlas.xarray.tree import dataset_name, node_path

ROOT = Path(__file__).resolve().parent.parent
GL = ROOT / "tests" / "data" / "GL_PR_BO_JLKU.nc"


@pytest.fixture(scope="module")
def tree() -> xr.DataTree:
    with xr.open_dataset(GL) as src:
        src = src.load()
    return xr.DataTree.from_dict(
        {
            "/": xr.Dataset(attrs={"title": "cruise"}),
            "/a": src,
            "/a/deep": xr.Dataset({"w": ("DEPTH", np.arange(6.0))}),
            "/b:c": src.isel(TIME=[1, 2]),
            "/_x": xr.Dataset({"v": ("t", np.arange(3))}),
            "/%41": xr.Dataset({"v": ("t", np.arange(2))}),
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> atlas.Atlas:
    with atlas.Atlas.create(tmp_path / "s.atlas") as st:
        yield st


@pytest.mark.parametrize("path", ["/a", "/a/b", "/b:c/d", "/_x", "/%41:%3A/x", "/./y"])
@pytest.mark.parametrize("root", [None, "cruise"])
def test_path_name_mapping_is_reversible(path: str, root: str | None) -> None:
    name = dataset_name(path, root)
    assert "/" not in name and not name.startswith("_")
    assert node_path(name, root) == path


def test_tree_round_trips_through_add_and_to_datatree(store: atlas.Atlas, tree: xr.DataTree) -> None:
    names = store.add_datatree(tree, name="cruise")
    assert sorted(names) == ["cruise", "cruise:%2541", "cruise:_x", "cruise:a", "cruise:a:deep", "cruise:b%3Ac"]
    store.flush()
    xr.testing.assert_identical(store.to_datatree(root="cruise"), tree)
    sub = store.to_datatree(["cruise:a", "cruise:a:deep"], root="cruise")
    assert sorted(node.path for node in sub.subtree) == ["/", "/a", "/a/deep"]
    picked = store.to_datatree(lambda n: n.endswith("deep"))
    assert sorted(node.path for node in picked.subtree) == ["/", "/cruise", "/cruise/a", "/cruise/a/deep"]


def test_open_datatree_and_open_groups_with_engine(store: atlas.Atlas, tree: xr.DataTree, tmp_path: Path) -> None:
    store.add_datatree(tree, name="cruise")
    store.add_datatree(tree["a"])  # stored as datasets a and a:deep
    store.flush()
    path = tmp_path / "s.atlas"
    opened = xr.open_datatree(path, engine="atlas", group="cruise")
    assert not isinstance(opened["a"]["FLU2"].variable._data, np.ndarray)  # lazily indexed until loaded
    xr.testing.assert_identical(opened.load(), tree)
    whole = xr.open_datatree(path, engine="atlas", chunks={})
    assert sorted(c for c in whole.children) == ["a", "cruise"]
    assert whole["cruise/a"]["FLU2"].chunks is not None  # dask-backed when asked for chunks
    groups = xr.open_groups(path, engine="atlas", names=lambda n: not n.startswith("cruise"))
    assert sorted(groups) == ["/", "/a", "/a/deep"]


def test_add_datatree_refuses_clearly_and_writes_nothing(store: atlas.Atlas, tree: xr.DataTree) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="give the tree a name"):
        store.add_datatree(tree)
    with pytest.raises(errors.InvalidNameError, match="':'"):
        store.add_datatree(tree, name="a:b")
    store.create_dataset("cruise:a:deep")
    with pytest.raises(errors.DatasetExistsError, match="node '/a/deep' maps to dataset 'cruise:a:deep'"):
        store.add_datatree(tree, name="cruise")
    assert store.list_datasets() == ["cruise:a:deep"]
    with pytest.raises(errors.InvalidArgumentError, match="DataTree"):
        store.add_datatree(xr.Dataset(), name="x")


def test_tree_accessor_writes_like_add_datatree(store: atlas.Atlas, tree: xr.DataTree) -> None:
    assert sorted(tree.atlas.write(store, "t2")) == store.list_datasets()
    store.flush()
    xr.testing.assert_identical(store.to_datatree(root="t2"), tree)
