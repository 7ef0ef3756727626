"""ATLAS: one store for thousands of named N-dimensional datasets.

Arrays with the same name across datasets share one physical file family, so
adding a dataset is an append and reading the same slice from every dataset is
one call.  Start with :meth:`Atlas.create` or :meth:`Atlas.open`.
"""

from __future__ import annotations

import logging

from atlas import _xarray_hook, errors
from atlas.dataset import DatasetView
from atlas.dtypes import DTYPE_NAMES
from atlas.errors import AtlasError, ConflictError
from atlas.store import Atlas

__all__ = ["DTYPE_NAMES", "Atlas", "AtlasError", "ConflictError", "DatasetView", "__version__", "errors"]

__version__ = "0.1.0"

# A library logs but never prints: applications opt in by configuring "atlas".
logging.getLogger("atlas").addHandler(logging.NullHandler())

# ``ds.atlas`` works after ``import atlas`` in either import order, and a program that
# never imports xarray does not load it.
_xarray_hook.install()
