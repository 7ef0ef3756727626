"""The ``engine="atlas"`` backend of ``xarray.open_dataset`` and ``open_mfdataset``.

``xr.open_dataset(store_path, engine="atlas", group="jan_2024")`` opens dataset
``group`` of the store lazily: every variable is an :class:`AtlasBackendArray`, which
reads only the chunks a selection touches (basic and outer indexing with one vector,
through ``xarray.core.indexing.explicit_indexing_adapter``).  The on-disk chunk shape
is given as ``encoding["preferred_chunks"]``, so ``chunks={}`` yields one dask task per
chunk.  Arrays hold a :class:`atlas.xarray.Recipe` (location, snapshot, dataset),
never an open handle, so they pickle to dask workers.

Registered as the ``atlas`` engine through the ``xarray.backends`` entry point;
``engine=AtlasBackendEntrypoint`` works without installation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from atlas.errors import DatasetNotFoundError, InvalidArgumentError
from atlas.metadata import parse_manifest_filename
from atlas.xarray.layout import VarSpec, build_dataset, make_variable, read_layout, restore_block
from atlas.xarray.read import Recipe, recipe_for, remember_store, store_for

__all__ = ["AtlasBackendArray", "AtlasBackendEntrypoint"]


class AtlasBackendArray(BackendArray):
    """A lazily read stored variable (picklable: it carries a recipe, not a handle)."""

    def __init__(self, recipe: Recipe, spec: VarSpec) -> None:
        self.recipe = recipe
        self.array = spec.array
        self.restore = spec.restore
        self.shape = tuple(spec.shape)
        self.dtype = spec.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR, self._raw_indexing_method
        )

    def _raw_indexing_method(self, key: tuple) -> np.ndarray:
        """Read the bounding box of ``key`` and index it in memory.

        ``key`` holds ints, slices and at most one integer vector (OUTER_1VECTOR).
        """
        start, size, picks = [], [], []
        for k, n in zip(key, self.shape):
            if isinstance(k, slice):
                positions = range(*k.indices(n))
                if len(positions) == 0:
                    start.append(0)
                    size.append(0)
                    picks.append(slice(0, 0))
                    continue
                lo, hi = min(positions[0], positions[-1]), max(positions[0], positions[-1]) + 1
                start.append(lo)
                size.append(hi - lo)
                if positions.step > 0:
                    picks.append(slice(positions[0] - lo, positions[-1] - lo + 1, positions.step))
                else:  # descending: the last position is the box's first cell
                    picks.append(slice(positions[0] - lo, None, positions.step))
            elif isinstance(k, (int, np.integer)):
                k = int(k) + (n if k < 0 else 0)
                start.append(k)
                size.append(1)
                picks.append(0)
            else:
                vec = np.asarray(k, dtype=np.int64)
                vec = np.where(vec < 0, vec + n, vec)
                lo = int(vec.min()) if vec.size else 0
                hi = int(vec.max()) + 1 if vec.size else 0
                start.append(lo)
                size.append(hi - lo)
                picks.append(vec - lo)
        if any(s == 0 for s in size):
            box = np.empty(size, dtype=self.dtype)
        else:
            store = store_for(self.recipe)
            raw = store.open_dataset(self.recipe.dataset).read_array(self.array, start, size)
            box = restore_block(raw, self.restore)
        # The vector first (np.take keeps every other axis), then slices, then drop int axes:
        # all plain indexing, so numpy never reorders axes.
        for axis, pick in enumerate(picks):
            if isinstance(pick, np.ndarray):
                box = np.take(box, pick, axis=axis)
        box = box[(*(p if isinstance(p, slice) else slice(None) for p in picks), Ellipsis)]
        return box[(*(0 if isinstance(p, int) else slice(None) for p in picks), Ellipsis)]  # "..." keeps 0-D arrays


def _manifest_in(path: str) -> bool:
    try:
        return any(parse_manifest_filename(n) for n in os.listdir(path))
    except OSError:
        return False


class AtlasBackendEntrypoint(BackendEntrypoint):
    """Open one dataset of an ATLAS store: ``xr.open_dataset(path, engine="atlas", group=name)``."""

    description = "Open a dataset of an ATLAS store (a directory with atlas.json / atlas.msgpack)"
    url = "https://github.com/atlas-store/atlas/blob/main/docs/xarray.md"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "group", "storage_options")
    supports_groups = True

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if isinstance(filename_or_obj, os.PathLike):
            filename_or_obj = os.fspath(filename_or_obj)
        if not isinstance(filename_or_obj, str):
            return False
        path = filename_or_obj[len("file://") :] if filename_or_obj.startswith("file://") else filename_or_obj
        return os.path.isdir(path) and _manifest_in(path)

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Any:
        """The dataset ``group`` of the store at ``filename_or_obj``, lazily.

        ``storage_options`` are the object-store options of
        :meth:`atlas.Atlas.open` (``{"endpoint": ..., "region": ...}``), for
        ``s3://``, ``gs://``, ``az://`` and ``http(s)://`` locations.
        """
        store = _open_store(filename_or_obj, storage_options)
        if group is None:
            names = store.list_datasets()
            if len(names) != 1:
                shown = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
                raise InvalidArgumentError(
                    f"store {store.location} holds {len(names)} datasets ({shown}); pick one with group=<name>"
                )
            group = names[0]
        if not store.dataset_exists(group):
            raise DatasetNotFoundError(f"store {store.location} has no dataset {group!r}")
        remember_store(store)
        return _open_group(store, group, drop_variables)

    def open_groups_as_dict(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        names: Any = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``{node path: lazy Dataset}`` of the store's datasets (``xr.open_groups(path, engine="atlas")``).

        ``group`` names a tree (its root dataset and the datasets ``group:...``),
        ``names`` a sequence of dataset names or a filter callable; see
        ``docs/growing.md`` for the path <-> name mapping.
        """
        from atlas.xarray.tree import node_path, select_names

        store = _open_store(filename_or_obj, storage_options)
        remember_store(store)
        chosen = select_names(store, names, group)
        groups = {node_path(n, group): _open_group(store, n, drop_variables) for n in chosen}
        groups.setdefault("/", build_dataset({}, [], {}))
        return groups

    def open_datatree(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        names: Any = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Any:
        """The store's datasets as one lazy ``DataTree`` (``xr.open_datatree(path, engine="atlas")``)."""
        from atlas.xarray.tree import tree_from_groups

        groups = self.open_groups_as_dict(
            filename_or_obj, drop_variables=drop_variables, group=group, names=names, storage_options=storage_options
        )
        return tree_from_groups(groups)


def _open_store(filename_or_obj: Any, storage_options: Mapping[str, Any] | None) -> Any:
    from atlas.store import Atlas

    if isinstance(filename_or_obj, Atlas):
        location = filename_or_obj.location
    elif isinstance(filename_or_obj, (str, os.PathLike)):
        location = filename_or_obj
    else:
        raise InvalidArgumentError(
            f"engine='atlas' opens a store path or an atlas.Atlas, got {type(filename_or_obj).__name__}"
        )
    return Atlas.open(location, mode="r", storage_options=storage_options)


def _open_group(store: Any, group: str, drop_variables: str | Iterable[str] | None) -> Any:
    """Dataset ``group`` of read-only handle ``store`` with lazily read variables."""
    recipe = recipe_for(store, group)
    assert recipe is not None  # a read-only handle has no pending changes
    gattrs, specs = read_layout(store.open_dataset(group))
    if isinstance(drop_variables, str):
        drop_variables = [drop_variables]
    drop = set(drop_variables or ())
    variables = {}
    for spec in specs:
        if spec.name in drop:
            continue
        data = indexing.LazilyIndexedArray(AtlasBackendArray(recipe, spec))
        var = make_variable(spec, data)
        var.encoding["preferred_chunks"] = dict(zip(spec.dims, spec.chunk_shape))
        variables[spec.name] = var
    ds = build_dataset(variables, [s.name for s in specs if s.is_coord and s.name not in drop], gattrs)
    ds.set_close(_nothing_to_close)  # reads go through the per-process handle cache
    return ds


def _nothing_to_close() -> None:
    return None
