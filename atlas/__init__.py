"""ATLAS: one store for thousands of named N-dimensional datasets.

Arrays with the same name across datasets share one physical file family, so
adding a dataset is an append and reading the same slice from every dataset is
one call.  Start with :meth:`Atlas.create` or :meth:`Atlas.open`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from atlas import errors
from atlas.errors import AtlasError, ConflictError

if TYPE_CHECKING:
    from atlas.dataset import DatasetView
    from atlas.dtypes import DTYPE_NAMES
    from atlas.store import Atlas

__all__ = ["DTYPE_NAMES", "Atlas", "AtlasError", "ConflictError", "DatasetView", "__version__", "errors"]

__version__ = "0.1.0"

# A library logs but never prints: applications opt in by configuring "atlas".
logging.getLogger("atlas").addHandler(logging.NullHandler())

# The store machinery (numpy and the engine) loads on first use of these names, so
# that `import atlas` and the `atlas` command start fast; numba and blosc2 load later
# still, on first data access.
_LAZY = {"Atlas": "atlas.store", "DatasetView": "atlas.dataset", "DTYPE_NAMES": "atlas.dtypes"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atlas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
