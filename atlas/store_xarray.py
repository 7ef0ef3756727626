"""The xarray methods of :class:`~atlas.Atlas` (the original API puts them on the store).

A mixin of :class:`~atlas.Atlas`: each method imports :mod:`atlas.xarray` when
called, so a program that never uses xarray never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atlas.dataset import DatasetView

__all__ = ["XarrayMethods"]


class XarrayMethods:
    """``add_xr_dataset``, ``to_xarray``, ``to_xarray_many``, ``to_datatree``, ``add_datatree``."""

    def add_xr_dataset(
        self, ds: Any, name: str, chunks: Any = None, *, mode: str = "w-", append_dim: str | None = None
    ) -> DatasetView:
        """Write an ``xarray.Dataset`` as dataset ``name``, staged until :meth:`flush`.

        Dask-backed variables are written block by block.  A failing add leaves no
        partial dataset behind.  ``mode="w"`` replaces an existing dataset (one
        commit); ``append_dim="time"`` appends ``ds`` to the existing dataset along
        ``time``.  See :func:`atlas.xarray.add_xr_dataset` and ``docs/xarray.md``.
        """
        from atlas.xarray import add_xr_dataset

        return add_xr_dataset(self, ds, name, chunks, mode=mode, append_dim=append_dim)

    def to_xarray(self, name: str) -> Any:
        """Dataset ``name`` as an ``xarray.Dataset``.

        Multi-chunk variables come back as dask arrays with one task per on-disk
        chunk; the graph pickles.  See :func:`atlas.xarray.to_xarray`.
        """
        from atlas.xarray import to_xarray

        return to_xarray(self, name)

    def to_xarray_many(
        self,
        names: Sequence[str],
        concat_dim: str = "dataset",
        *,
        join: str = "exact",
        layout: str = "stacked",
        sample_dim: str | None = None,
    ) -> Any:
        """Many datasets of one schema in one ``xarray.Dataset``.

        Stacked along a new dimension ``concat_dim`` (``join="outer"`` pads
        datasets of different lengths to the union of their index coordinates), or
        as a CF contiguous ragged array (``layout="ragged"``).  See
        :func:`atlas.xarray.to_xarray_many` and ``docs/growing.md``.
        """
        from atlas.xarray import to_xarray_many

        return to_xarray_many(self, names, concat_dim, join=join, layout=layout, sample_dim=sample_dim)

    def to_datatree(
        self, names: Sequence[str] | Callable[[str], bool] | None = None, *, root: str | None = None
    ) -> Any:
        """Datasets as one ``xarray.DataTree``: one node per dataset, read like :meth:`to_xarray`.

        Parameters
        ----------
        names : sequence of str or callable, optional
            The datasets (default: all, or all of ``root``'s tree), or a filter
            ``f(name) -> bool``.  Each dataset's layout is read here, so name the
            datasets you need in a store of millions.
        root : str, optional
            A tree stored by ``add_datatree(tree, name=root)``: dataset ``root`` is
            the root node and dataset ``root:a:b`` node ``/a/b``.  Without it,
            dataset ``a:b`` is node ``/a/b``.  See ``docs/growing.md``.
        """
        from atlas.xarray.tree import to_datatree

        return to_datatree(self, names, root)

    def add_datatree(self, tree: Any, name: str | None = None, chunks: Any = None) -> list[str]:
        """Write every node of an ``xarray.DataTree`` as a dataset (staged); returns the dataset names.

        Node ``/a/b`` becomes dataset ``a:b`` (``name:a:b`` under a tree ``name``,
        whose root node becomes dataset ``name``); nodes that only group others
        are not stored.  A node whose dataset exists already stops the call before
        anything is written (``DatasetExistsError``); a failing node removes the
        datasets this call added.
        """
        from atlas.xarray.tree import add_datatree

        return add_datatree(self, tree, name, chunks)
