"""A NetCDF file opened once by a reader process and decoded by xarray's own code.

:class:`OnceStore` is xarray's ``NetCDF4DataStore`` on a ``netCDF4.Dataset`` the
reader opened itself, so ``xr.open_dataset(store)`` decodes exactly what
``xr.open_dataset(path)`` decodes (same variables, attributes, encodings, the same
array wrappers), minus two costs that only matter for a fleet of small files:

* xarray's file cache (an LRU of handles with reference counts, taken at every
  attribute and every array read) is bypassed: the handle is private to this
  reader and is closed with the store;
* the store's variables and attributes are listed once, so the second decode of
  the same file (the packed variables as stored, see
  :func:`atlas.cli.sources.load_source`) does not query the file again.

Imports xarray and netCDF4: imported only by the reader code that opens files.
"""

from __future__ import annotations

from typing import Any

import netCDF4
from xarray.backends.netCDF4_ import NetCDF4DataStore
from xarray.core.utils import FrozenDict
from xarray.core.variable import Variable

__all__ = ["OnceStore"]


class OnceStore(NetCDF4DataStore):
    """xarray's netCDF4 store on the root group of a file opened here (read-only, one reader).

    Parameters
    ----------
    filename : str
        The absolute path, as ``xr.open_dataset`` normalises it (it becomes the
        variables' ``encoding["source"]``).
    """

    def __init__(self, filename: str) -> None:
        self._nc = netCDF4.Dataset(filename, mode="r")
        self._listed: tuple[Any, Any] | None = None
        try:
            super().__init__(self._nc)  # wraps the handle in xarray's DummyFileManager (closed with the store)
        except BaseException:
            self._nc.close()
            raise

    def close(self, **kwargs: Any) -> None:
        """Close the file (again: nothing; the decoded and the packed datasets both close it)."""
        if self._nc.isopen():
            super().close(**kwargs)

    def _acquire(self, needs_lock: bool = True) -> Any:
        # The root group of a handle nobody else holds: what the base class returns
        # after a trip through its file manager.
        return self._nc

    def load(self) -> tuple[Any, Any]:
        """The store's variables and attributes, listed from the file once.

        Each call returns new ``Variable`` objects (fresh ``attrs`` and ``encoding``
        dicts over the same lazy arrays), since decoding may edit them.
        """
        if self._listed is None:
            self._listed = super().load()
        variables, attributes = self._listed
        fresh = {k: Variable(v.dims, v._data, v.attrs, v.encoding, fastpath=True) for k, v in variables.items()}
        return FrozenDict(fresh), FrozenDict(attributes)
