"""``xarray.DataTree`` over a store: one node per dataset.

Dataset names cannot hold ``/``, so a node path maps to a dataset name as NetCDF
groups do in ``atlas ingest``: the path's parts joined with ``:``, each part
escaped so that every ``:`` is a separator (``%`` is written ``%25`` and ``:``
``%3A``; a leading ``_`` of the first part ``%5F`` and a first part ``.``/``..``
``%2E``/``%2E.``).  Under a tree name ``root`` (``add_datatree(tree, name="cruise")``,
``to_datatree(root="cruise")``) the root node is dataset ``root`` and node ``/a/b``
is ``root:a:b``; without one, node ``/a/b`` is dataset ``a:b`` and the root node
must be empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

from atlas.errors import DatasetExistsError, InvalidArgumentError, InvalidNameError
from atlas.names import validate_name

if TYPE_CHECKING:
    from atlas.store import Atlas

__all__ = ["add_datatree", "dataset_name", "node_path", "select_names", "to_datatree"]

_UNESCAPE = re.compile("%25|%3A")


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def _unescape(part: str) -> str:
    return _UNESCAPE.sub(lambda m: "%" if m.group() == "%25" else ":", part)


def dataset_name(path: str, root: str | None = None) -> str:
    """The dataset name of node ``path`` (``/a/b``) of a tree stored under ``root`` (see the module)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if root is not None:
        if not parts:
            return root
        return ":".join([root, *(_escape(p) for p in parts)])
    if not parts:
        raise InvalidArgumentError("the root node of a tree stored without a name has no dataset name")
    name = ":".join(_escape(p) for p in parts)
    if name.startswith("_"):
        name = "%5F" + name[1:]
    if parts[0] in (".", ".."):
        name = "%2E" + name[1:]
    return name


def node_path(name: str, root: str | None = None) -> str:
    """The node path of dataset ``name`` in the tree of ``root`` (the inverse of :func:`dataset_name`)."""
    if root is not None:
        if name == root:
            return "/"
        name = name[len(root) + 1 :]
    elif name.startswith("%5F"):
        name = "_" + name[3:]
    elif name.startswith("%2E"):
        name = "." + name[3:]
    return "/" + "/".join(_unescape(p) for p in name.split(":"))


def check_root(root: str) -> None:
    """A tree name is a dataset name without ``:`` (the separator of its nodes' names)."""
    validate_name(root, "tree")
    if ":" in root:
        raise InvalidNameError(f"tree name {root!r} must not contain ':', which separates its nodes' names")


def select_names(store: Atlas, names: Sequence[str] | Callable[[str], bool] | None, root: str | None) -> list[str]:
    """The datasets of a tree: those of ``root`` (when given), filtered by ``names``."""
    if root is not None:
        check_root(root)
        prefix = root + ":"
        candidates = [n for n in store.list_datasets() if n == root or n.startswith(prefix)]
    else:
        candidates = None
    if names is None:
        return candidates if candidates is not None else store.list_datasets()
    if callable(names):
        pool = candidates if candidates is not None else store.list_datasets()
        return [n for n in pool if names(n)]
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise InvalidArgumentError(f"names must be a sequence of dataset names or a callable, got {names!r}")
    chosen = list(names)
    for n in chosen:
        if not store.dataset_exists(n):
            from atlas.errors import DatasetNotFoundError

            raise DatasetNotFoundError(f"dataset {n!r} does not exist")
        if candidates is not None and n not in candidates:
            raise InvalidArgumentError(f"dataset {n!r} is not in the tree of {root!r}")
    return chosen


def tree_from_groups(groups: dict[str, Any]) -> Any:
    """A DataTree from ``{path: Dataset}`` (the root an empty dataset when no dataset maps to it)."""
    groups = dict(groups)
    groups.setdefault("/", xr.Dataset())
    return xr.DataTree.from_dict(groups)


def to_datatree(
    store: Atlas, names: Sequence[str] | Callable[[str], bool] | None = None, root: str | None = None
) -> Any:
    """The store's datasets as one ``xarray.DataTree`` (see :meth:`atlas.Atlas.to_datatree`)."""
    chosen = select_names(store, names, root)
    return tree_from_groups({node_path(n, root): store.to_xarray(n) for n in chosen})


def add_datatree(store: Atlas, tree: Any, name: str | None = None, chunks: Any = None) -> list[str]:
    """Write every node of ``tree`` as a dataset (see :meth:`atlas.Atlas.add_datatree`)."""
    if not isinstance(tree, xr.DataTree):
        raise InvalidArgumentError(f"add_datatree takes an xarray.DataTree, got {type(tree).__name__}")
    if name is not None:
        check_root(name)
    plan: list[tuple[str, Any]] = []
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        if node.is_root and name is None:
            if ds.variables or ds.attrs:
                raise InvalidArgumentError(
                    "the root node of the tree holds variables or attributes; give the tree a name "
                    "(add_datatree(tree, name=...)) to store it as that dataset"
                )
            continue
        if not node.is_root and not ds.variables and not ds.attrs and node.children:
            continue  # a node that only groups others needs no dataset
        target = dataset_name(node.path, name)
        try:
            validate_name(target, "dataset")
        except InvalidNameError as exc:
            raise InvalidNameError(f"node {node.path!r}: {exc}") from None
        if target in store:
            raise DatasetExistsError(f"node {node.path!r} maps to dataset {target!r}, which already exists")
        plan.append((target, ds))
    done: list[str] = []
    try:
        for target, ds in plan:
            store.add_xr_dataset(ds, target, chunks)
            done.append(target)
    except BaseException:
        for target in done:
            store.delete_dataset(target)
        raise
    return done
