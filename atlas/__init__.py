"""ATLAS: one store for thousands of named N-dimensional datasets.

Arrays with the same name across datasets share one physical file family, so
adding a dataset is an append and reading the same slice from every dataset is
one call.  Start with :meth:`Atlas.create` or :meth:`Atlas.open`.

Layout (imports point down this list; each package's ``__init__`` maps its modules):

* API: :mod:`~atlas.store` (:class:`Atlas`), :mod:`~atlas.dataset` (:class:`DatasetView`),
  :mod:`~atlas.selection` (every argument check), :mod:`~atlas.bulk` (cross-dataset reads),
  :mod:`~atlas.batch` (many small datasets staged in one call).
* :mod:`atlas.search`: search by metadata (``Atlas.find``/``Atlas.catalog``): the column
  table, predicates, the ``where`` parser.
* :mod:`atlas.txn`: snapshot and pending changes, the one commit path, compaction, verify.
* :mod:`atlas.engine`: chunks, codecs, segment files, families, the bulk gather, kernels.
* :mod:`atlas.backends`: the storage verbs (local disk, object stores).
* Leaves: :mod:`~atlas.errors`, :mod:`~atlas.names`, :mod:`~atlas.dtypes`,
  :mod:`~atlas.attributes` (typed attributes), :mod:`~atlas.metadata` (the manifest).
* On top: :mod:`atlas.xarray` (xarray and dask), :mod:`atlas.cli` (the ``atlas`` command),
  :mod:`atlas.distributed` (:func:`ingest` with parallel writers).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from atlas import errors, xarray_hook
from atlas.errors import AtlasError, ConflictError

if TYPE_CHECKING:
    from atlas.dataset import DatasetView
    from atlas.distributed import IngestReport, ingest
    from atlas.dtypes import DTYPE_NAMES
    from atlas.store import Atlas

__all__ = [
    "DTYPE_NAMES", "Atlas", "AtlasError", "ConflictError", "DatasetView", "IngestReport", "__version__", "errors",
    "ingest",
]  # fmt: skip

__version__ = "0.1.0"

# A library logs but never prints: applications opt in by configuring "atlas".
logging.getLogger("atlas").addHandler(logging.NullHandler())

# ``ds.atlas`` works after ``import atlas`` in either import order, and a program that
# never imports xarray does not load it.
xarray_hook.install()

# The store machinery (numpy and the engine) loads on first use of these names, so
# that `import atlas` and the `atlas` command start fast; numba and blosc2 load later
# still, on first data access.
_LAZY = {
    "Atlas": "atlas.store", "DatasetView": "atlas.dataset", "DTYPE_NAMES": "atlas.dtypes",
    "IngestReport": "atlas.distributed", "ingest": "atlas.distributed",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atlas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
