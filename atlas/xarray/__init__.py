"""xarray and dask integration: write an ``xarray.Dataset`` into a store, read it back.

* :func:`add_xr_dataset` (``Atlas.add_xr_dataset``, ``ds.atlas.write``) stores every
  coordinate and data variable as an array of the dataset, with its dims, and every
  attribute as a typed dataset attribute.  dask-backed variables are streamed block
  by block; nothing is flushed (the write is staged like any other change).
* :func:`to_xarray` (``Atlas.to_xarray``) rebuilds the dataset:
  ``xarray.testing.assert_identical`` holds for every dataset the writer accepts.
  Multi-chunk variables come back as dask arrays (one task per on-disk chunk) whose
  graph names the store by location and snapshot, never by an open handle, so it
  pickles and computes under the ``processes`` scheduler and ``dask.distributed``.
* :func:`to_xarray_many` stacks many datasets along a new dimension in one bulk read.
* :class:`AtlasBackendEntrypoint` is the ``engine="atlas"`` backend of
  ``xarray.open_dataset`` / ``open_mfdataset`` (in :mod:`atlas.xarray.backend`).

Importing this package registers the ``Dataset.atlas`` accessor.  The mapping rules
(the reserved ``_atlas_xarray`` attribute layout) are documented in ``docs/xarray.md``.

Modules (imports run one way: this package -> ``write`` / ``read`` / ``backend`` ->
``plan`` / ``layout`` -> ``conversions``):

* :mod:`atlas.xarray.conversions`: reserved attribute keys, text, attribute-value and dtype
  conversions (both directions);
* :mod:`atlas.xarray.plan`: the xarray -> ATLAS plan (names, dtypes, chunks, fills,
  attribute layout);
* :mod:`atlas.xarray.write`: :func:`add_xr_dataset` and the streaming writes;
* :mod:`atlas.xarray.layout`: the ATLAS -> xarray mapping (:func:`read_layout`);
* :mod:`atlas.xarray.read`: :func:`to_xarray`, :func:`to_xarray_many`, lazy recipes and
  the per-process handle cache;
* :mod:`atlas.xarray.backend`: :class:`AtlasBackendEntrypoint`, :class:`AtlasBackendArray`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atlas.errors import MissingDependencyError

try:
    import xarray as xr
except ImportError as _exc:  # pragma: no cover - exercised only without xarray
    raise MissingDependencyError(
        "the xarray integration needs xarray (and dask for lazy reads): pip install 'atlas-store[xarray]'"
    ) from _exc

# The names marked F401 are not in __all__ but stay importable from here, as before the split
# (the docs name Recipe; the distributed test reads a worker's HANDLE_CACHE).
from atlas.xarray.backend import AtlasBackendArray, AtlasBackendEntrypoint
from atlas.xarray.conversions import (
    LAYOUT_VERSION,
    PREFIX,
    decode_attr_value,  # noqa: F401
    encode_attr_value,  # noqa: F401
    sanitize_text,  # noqa: F401
)
from atlas.xarray.layout import (
    VarSpec,  # noqa: F401
    build_dataset,  # noqa: F401
    read_layout,  # noqa: F401
    restore_block,  # noqa: F401
)
from atlas.xarray.many import from_ragged
from atlas.xarray.plan import ENCODING_KEYS  # noqa: F401
from atlas.xarray.read import (
    HANDLE_CACHE,  # noqa: F401
    Recipe,  # noqa: F401
    clear_cache,
    read_block,  # noqa: F401
    recipe_for,  # noqa: F401
    remember_store,  # noqa: F401
    store_for,  # noqa: F401
    to_xarray,
    to_xarray_many,
)
from atlas.xarray.write import (
    add_xr_dataset,
)

if TYPE_CHECKING:
    from atlas.dataset import DatasetView
    from atlas.store import Atlas

__all__ = [
    "LAYOUT_VERSION",
    "PREFIX",
    "AtlasBackendArray",
    "AtlasBackendEntrypoint",
    "AtlasDataTreeAccessor",
    "AtlasDatasetAccessor",
    "add_xr_dataset",
    "clear_cache",
    "from_ragged",
    "to_xarray",
    "to_xarray_many",
]


class AtlasDatasetAccessor:
    """``ds.atlas``: ``ds.atlas.write(store, name, chunks=None, mode="w-", append_dim=None)`` =
    :func:`add_xr_dataset`."""

    def __init__(self, ds: Any) -> None:
        self._ds = ds

    def write(
        self, store: Atlas, name: str, chunks: Any = None, *, mode: str = "w-", append_dim: str | None = None
    ) -> DatasetView:
        """Write this dataset into ``store`` as dataset ``name`` (staged; see :func:`add_xr_dataset`):
        ``mode="w"`` replaces an existing one, ``append_dim="time"`` appends along ``time``."""
        return add_xr_dataset(store, self._ds, name, chunks, mode=mode, append_dim=append_dim)


class AtlasDataTreeAccessor:
    """``tree.atlas``: ``tree.atlas.write(store, name=None)`` = :meth:`atlas.Atlas.add_datatree`."""

    def __init__(self, tree: Any) -> None:
        self._tree = tree

    def write(self, store: Atlas, name: str | None = None, chunks: Any = None) -> list[str]:
        """Write every node of this tree into ``store`` as a dataset (staged); returns the dataset names."""
        from atlas.xarray.tree import add_datatree

        return add_datatree(store, self._tree, name, chunks)


if not hasattr(xr.Dataset, "atlas"):
    xr.register_dataset_accessor("atlas")(AtlasDatasetAccessor)
if hasattr(xr, "DataTree") and not hasattr(xr.DataTree, "atlas"):
    xr.register_datatree_accessor("atlas")(AtlasDataTreeAccessor)
