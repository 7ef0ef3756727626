"""A NetCDF file opened once by a reader process and decoded by xarray's own code.

:class:`OnceStore` is xarray's ``NetCDF4DataStore`` on a ``netCDF4.Dataset`` the
reader opened itself, so ``xr.open_dataset(store)`` decodes exactly what
``xr.open_dataset(path)`` decodes (same variables, attributes, encodings, the same
array wrappers), minus costs that only matter for a fleet of small files:

* xarray's file cache (an LRU of handles with reference counts, taken at every
  attribute and every array read) is bypassed: the handle is private to this
  reader and is closed with the store;
* the store's variables and attributes are listed once, so the second decode of
  the same file (the packed variables as stored, see
  :func:`atlas.cli.sources.load_source`) does not query the file again;
* a small plain file can be listed here and read whole
  (:meth:`OnceStore.read_whole`): the variables and attributes xarray's listing
  gives, with fewer netCDF4 calls and no lazy wrapper of the file's variable; one
  netCDF4 read per variable, its values put where xarray's lazy array wrapper
  would be, so decoding, default indexes and loading work on numpy arrays instead
  of going through xarray's indexing adapters to the file once per variable and
  once more per time variable whose decoding is checked.
  The values are the ones the wrapper reads (the same netCDF4 call on the same
  variable, with the same automatic masking and character conversion switched
  off); xarray decodes them exactly as it decodes the wrapper's.

Imports xarray and netCDF4: imported only by the reader code that opens files.
"""

from __future__ import annotations

import math
from typing import Any

import netCDF4
import numpy as np
from xarray.backends.common import NONE_VAR_NAME
from xarray.backends.netCDF4_ import NetCDF4DataStore
from xarray.core.indexing import LazilyIndexedArray, NumpyIndexingAdapter
from xarray.core.utils import FrozenDict
from xarray.core.variable import Variable

__all__ = ["OnceStore", "PLAIN_CALENDARS"]

#: The attributes xarray's mask-and-scale decoding consumes (as ``atlas.cli.sources`` lists them).
_MASK_AND_SCALE = ("_FillValue", "missing_value", "scale_factor", "add_offset")

#: Units xarray decodes integers to timedeltas with (then they are not masked to floats).
_TIME_UNITS = frozenset({"days", "hours", "minutes", "seconds", "milliseconds", "microseconds", "nanoseconds"})

#: Calendars of times read whole (others, decoded to ``cftime`` objects, stay lazy).
PLAIN_CALENDARS = frozenset({"standard", "gregorian", "proleptic_gregorian"})


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
        self._read: tuple[dict[str, Any], Any, dict[str, np.ndarray]] | None = None
        self._last_decode = False
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

    def read_whole(self, limit: int) -> bool:
        """List and read every variable of a small plain file now; False (nothing listed) for any other file.

        A file qualifies when its variables, decoded, cannot exceed ``limit`` bytes
        (counted at eight bytes per value at least: the most a decoded value takes
        but for text, which never grows) and every variable is a non-empty array of
        numbers, booleans or characters (not a string, enum, compound or
        variable-length type) whose ``calendar``, if any, is a standard one.
        Anything else is left to xarray's listing and lazy wrapper, read when the
        dataset loads.

        A qualifying file is listed here rather than by xarray: the same
        ``Variable`` objects (dimensions, attributes in the file's order with the
        values netCDF4 gives, every encoding entry xarray's listing makes) around
        the values instead of a lazy wrapper of the file's variable, which xarray
        builds with about ten more netCDF4 calls and Python objects per variable
        that reading the file whole never uses.
        """
        listed = self._plain_listing(limit)
        if listed is None:
            return False
        variables, attributes = listed
        ncvars = self._nc.variables
        stored = {}
        # With masking, scaling and character conversion off, as xarray's wrapper
        # switches them off before it reads; and under the lock its reads take:
        # netCDF-C and HDF5 are not thread-safe (a dask worker runs one task per thread).
        with self.lock:
            for name, (_, _, encoding) in variables.items():
                ncvar = ncvars[name]
                ncvar.set_auto_maskandscale(False)
                ncvar.set_auto_chartostring(False)
                values = _read_all(ncvar, encoding["original_shape"])
                # Values unlike those the listing describes would be decoded unlike the
                # wrapper's: such a file is left to xarray's listing and lazy wrapper.
                if type(values) is not np.ndarray or values.shape != encoding["original_shape"]:
                    return False
                if values.dtype != encoding["dtype"]:
                    return False
                stored[name] = values
        # The Variables are made when a decode by xarray asks for them (_list): a file
        # decoded by a template (atlas.cli.netcdf_template) needs only these.
        self._read = (variables, attributes, stored)
        return True

    def read_listing(self) -> tuple[dict[str, Any], Any, dict[str, np.ndarray]] | None:
        """``(entries, attributes, values)`` of a file :meth:`read_whole` read, before any decode; else None.

        ``entries``: ``{name: (dims, attrs, encoding)}`` as listed, ``values``: the
        stored arrays.  Shared: read them, never change them.
        """
        return self._read

    def _plain_listing(self, limit: int) -> tuple[dict[str, Any], Any] | None:
        """``({name: (dims, attrs, encoding)}, attributes)`` of a file :meth:`read_whole` reads; None for another.

        The entries are those of xarray's ``NetCDF4DataStore.open_store_variable``
        and ``get_attrs``: the attributes as ``getncattr`` gives them (a character
        variable's ``_FillValue`` as ``np.bytes_``, ``least_significant_digit``
        moved to the encoding), the encoding ``dtype``, storage filters, chunking,
        ``source`` and ``original_shape``.  Shapes come from the root group's
        dimension lengths, which is what a netCDF4 variable's ``shape`` asks for
        one dimension at a time.
        """
        nc = self._nc
        lengths = {name: len(dim) for name, dim in nc.dimensions.items()}
        ncvars = nc.variables
        shapes: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {}
        total = 0
        for name, ncvar in ncvars.items():
            # An enum, compound or variable-length type (strings too) has a netCDF4
            # type object for a datatype; a plain one has its numpy dtype.
            dtype = ncvar.datatype
            if not isinstance(dtype, np.dtype) or dtype.kind not in "biufS" or dtype.metadata:
                return None
            if not isinstance(name, str) or name == NONE_VAR_NAME:  # xarray renames that one to None
                return None
            dims = ncvar.dimensions
            if not all(d in lengths for d in dims):
                return None
            shape = tuple(lengths[d] for d in dims)
            size = math.prod(shape)
            if size == 0:
                return None
            total += size * max(8, dtype.itemsize)
            shapes[name] = (dims, shape)
        if total > limit:
            return None
        variables = {}
        for name, (dims, shape) in shapes.items():
            ncvar = ncvars[name]
            attrs = {k: ncvar.getncattr(k) for k in ncvar.ncattrs()}
            calendar = attrs.get("calendar")
            if calendar is not None and (not isinstance(calendar, str) or calendar.lower() not in PLAIN_CALENDARS):
                return None
            dtype = ncvar.dtype
            if dtype.kind == "S" and "_FillValue" in attrs:
                # xarray's fix for a character fill value netCDF4 gives as text
                attrs["_FillValue"] = np.bytes_(attrs["_FillValue"])
            encoding = {"dtype": dtype, **_storage(ncvar, dims)}
            digits = attrs.pop("least_significant_digit", None)
            if digits is not None:
                encoding["least_significant_digit"] = digits
            encoding["source"] = self._filename
            encoding["original_shape"] = shape
            variables[name] = (dims, attrs, encoding)
        attributes = FrozenDict((k, nc.getncattr(k)) for k in nc.ncattrs())
        return variables, attributes

    def surely_packed(self) -> list[str] | None:
        """The variables :func:`atlas.cli.sources.packed_variables` would name, from the listing; None when unsure.

        A variable of integers with a ``_FillValue``, ``missing_value``, ``scale_factor``
        or ``add_offset`` that is not an index coordinate may be one.  It surely is (xarray
        masks or scales it to floats) when it has no ``_Unsigned``, ``dtype`` or
        ``calendar`` attribute, no time units, is no other variable's ``bounds``, its
        fill values are one plain number (several would make xarray warn), its
        ``scale_factor`` and ``add_offset`` are plain numbers, and a ``scale_factor``
        without an ``add_offset`` is a float (xarray decodes to the scale factor's
        type: an integer one keeps integers).  When every candidate surely is, they
        can be decoded in the one ``open_dataset`` without mask-and-scale and times,
        as :func:`atlas.cli.sources.keep_packed` decodes them; otherwise they are
        found in the decoded dataset (:func:`atlas.cli.sources.packed_variables`).
        """
        variables = self._list()[0]
        bounds = {v.attrs["bounds"] for v in variables.values() if isinstance(v.attrs.get("bounds"), str)}
        out = []
        for name, var in variables.items():
            attrs = var.attrs
            if var.dtype.kind not in "iu" or var.dims == (name,) or not any(k in attrs for k in _MASK_AND_SCALE):
                continue
            if "_Unsigned" in attrs or "dtype" in attrs or "calendar" in attrs or name in bounds:
                return None
            units = attrs.get("units")
            if units is not None and (not isinstance(units, str) or "since" in units or units.strip() in _TIME_UNITS):
                return None
            fills = [_plain_number(attrs[k]) for k in ("_FillValue", "missing_value") if k in attrs]
            if any(f is None for f in fills) or len(set(fills)) > 1:
                return None
            scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
            if any(x is not None and _plain_number(x) is None for x in (scale, offset)):
                return None
            if scale is not None and offset is None and not isinstance(scale, (float, np.floating)):
                return None
            out.append(str(name))
        return out

    def _list(self) -> tuple[Any, Any]:
        """The variables and attributes as listed once (shared: read them, never change them)."""
        if self._listed is None:
            self._listed = super().load() if self._read is None else _variables(*self._read)
        return self._listed

    def hand_over(self) -> None:
        """Let the next :meth:`load` give the listing itself: the file's last decode.

        That decode may edit the ``Variable`` objects it is given, so the store
        forgets them; a later listing (none is expected) asks the file again.
        """
        self._last_decode = True

    def forget_listing(self) -> None:
        """Forget the listing and the values read whole: the file was decoded without a decode of the store.

        What the last decode does after :meth:`hand_over` (a template of the listing,
        :mod:`atlas.cli.netcdf_template`, decoded the file instead); a later listing
        asks the file again.
        """
        self._last_decode, self._listed, self._read = False, None, None

    def load(self) -> tuple[Any, Any]:
        """The store's variables and attributes, listed from the file once.

        Each call returns new ``Variable`` objects (fresh ``attrs`` and ``encoding``
        dicts over the same lazy arrays), since decoding may edit them; but for the
        call after :meth:`hand_over`, which gives the listing's own.
        """
        variables, attributes = self._list()
        if self._last_decode:
            self._last_decode, self._listed, self._read = False, None, None
            return variables, FrozenDict(attributes)
        fresh = {k: Variable(v.dims, v._data, v.attrs, v.encoding, fastpath=True) for k, v in variables.items()}
        return FrozenDict(fresh), FrozenDict(attributes)


def _variables(entries: dict[str, Any], attributes: Any, values: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """The listing of a file read whole, as xarray's listing gives it: ``Variable`` objects around the values."""
    # Wrapped as xarray's listing wraps the file's variable: its decoders build
    # Variables around it without the checks of a bare array (which import dask.array).
    read = {
        name: Variable(dims, LazilyIndexedArray(NumpyIndexingAdapter(values[name])), attrs, encoding, fastpath=True)
        for name, (dims, attrs, encoding) in entries.items()
    }
    return FrozenDict(read), attributes


def _storage(ncvar: Any, dims: tuple[str, ...]) -> dict[str, Any]:
    """The storage entries of xarray's encoding of a netCDF4 variable: filters, then chunking."""
    out = dict(ncvar.filters() or {})
    chunking = ncvar.chunking()
    if chunking == "contiguous":
        out.update(contiguous=True, chunksizes=None)
    elif chunking is not None:
        preferred = dict(zip(dims, chunking, strict=True))
        out.update(contiguous=False, chunksizes=tuple(chunking), preferred_chunks=preferred)
    return out


def _plain_number(value: Any) -> Any:
    """``value`` as one plain number, or None when it is anything else (text, NaN, several values)."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return None if value != value else value


def _read_all(ncvar: Any, shape: tuple[int, ...]) -> Any:
    """Every value of a netCDF4 variable (masking, scaling and text conversion off), as ``ncvar[...]``.

    ``ncvar[...]`` turns its key into start/count/stride arrays in Python before
    the one netCDF-C read (three quarters of its time for a small variable); the
    arrays for the whole variable are known, so the read is asked for directly
    with them.  A 0-D variable, or one that call does not give as an array of the
    variable's shape (it is netCDF4's own, unlisted), is read by ``ncvar[...]``.
    """
    n = len(shape)
    try:
        values = ncvar._get(np.zeros(n, np.intp), np.array(shape, np.intp), np.ones(n, np.intp)) if n else None
    except Exception:
        values = None
    if type(values) is not np.ndarray or values.shape != shape:
        values = ncvar[...]
    return values
