"""Decoding a small file like the last one of the same make: xarray's decode, once per listing.

A fleet's files list the same variables with the same attributes and encodings;
only their values (and the lengths of their dimensions) differ.  xarray's CF
decoding of such a listing is the same every time: which variables become
coordinates, which attributes move to the encoding, which lazy functions
(masking, scaling, time decoding, joining characters) turn the stored values into
the decoded ones.  Working that out is most of the cost of decoding a small file.

So a reader process decodes a listing once more with xarray's own
``decode_cf_variables`` (:meth:`DecodeTemplate.learn`), over arrays of its own,
the second time it meets that listing (files that each have a listing of their
own, an attribute with a value per file, would pay that decode for nothing), and
for the next file with the same listing (:func:`listing_key`: every variable's
name, dimensions, stored type, attributes and encoding bit for bit, except the
encoding entries that only describe where the values are) it puts that file's
values under the same lazy functions and loads them (:meth:`DecodeTemplate.apply`):
the values come out of the very functions xarray's decode of that file would
apply, and the metadata are the file's own objects wherever the decode moved them
unchanged.

Guards, each falling back to xarray's whole decode for the file at hand:

* the first file a template serves is decoded both ways and compared in full
  (variables, order, types, values bit for bit, attributes, encodings, coordinates,
  the dataset's attributes and encoding); a template that differs is never used
  again in the process, so an xarray that decodes differently costs speed, not
  correctness;
* a warning or an error while loading a file's values, or values of another
  shape or type than the template's, sends that file to xarray's decode (which
  then warns or fails as it does for any file);
* xarray's decode of a time reads values too: it decodes the first and the last
  one, and refuses the file when they do not decode (which the whole array may
  well do: a NaN among the values turns an overflow into NaT).  A template makes
  the same check of each file's times whose least or largest value the whole
  array's own range check takes as NaT (a NaN, int64's least value, which a
  masked integer time becomes, or a float of 2**63 either sign: otherwise that
  check fails whenever the first or the last value's would), and a file that
  fails it, warns or decodes them to another type goes to xarray's decode
  (which refuses it or warns);
* a listing whose attributes or encodings hold values this module cannot compare
  bit for bit (objects, nested containers of them) gets no template.

Templates are kept per thread (a dask worker decodes on several threads), at most
:data:`MAX_TEMPLATES`, and hold no values between files; the listings met once
are remembered apart (at most :data:`MAX_SEEN`), so that files of a listing of
their own never push a template out.

Imports xarray: imported only by the reader code that opens files.
"""

from __future__ import annotations

import copy
import functools
import struct
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from xarray import Coordinates, Dataset, conventions
from xarray.core.indexing import LazilyIndexedArray, NumpyIndexingAdapter
from xarray.core.variable import Variable

try:  # how xarray checks, when it decodes, that a time's first and last values decode
    from xarray.coding.times import _decode_cf_datetime_dtype, decode_cf_datetime
except ImportError:  # pragma: no cover - another xarray: no template decodes times
    _decode_cf_datetime_dtype = decode_cf_datetime = None

__all__ = ["MAX_SEEN", "MAX_TEMPLATES", "DecodeTemplate", "decode_listed", "listing_key", "same_dataset", "templates"]

#: Templates a thread keeps (all are dropped when one more is learnt).
MAX_TEMPLATES = 64
#: Listings met once that a thread remembers (all are forgotten when one more is met).
MAX_SEEN = 256
#: Encoding entries that say where a file's values are, not how they decode: not part of the
#: key, and taken from the file itself (xarray's decode passes them through untouched).
_WHERE = frozenset({"source", "original_shape", "chunksizes", "preferred_chunks"})
#: Types whose values are never changed in place: a template shares them between datasets.
_IMMUTABLE = (str, bytes, int, float, bool, type(None), np.generic, np.dtype, tuple, frozenset)
_INT64 = np.iinfo(np.int64)


class _Unkeyable(Exception):
    """A value this module cannot compare bit for bit."""


def _token(value: Any) -> Any:
    """A hashable stand-in for ``value`` equal only for values of the same type and bits."""
    kind = type(value)
    if kind is str or kind is bytes or kind is bool or value is None:
        return (kind, value)
    if kind is int:
        return (int, value)
    if kind is float:
        return (float, struct.pack("<d", value))  # -0.0 and 0.0 differ; NaN equals NaN
    if isinstance(value, np.generic):
        if value.dtype.kind == "O":
            raise _Unkeyable
        return (kind, value.dtype.str, value.tobytes())
    if kind is np.ndarray:
        if value.dtype.kind == "O" or value.dtype.fields is not None:
            raise _Unkeyable
        return (np.ndarray, value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, np.dtype):
        if value.fields is not None or value.metadata:
            raise _Unkeyable
        return (np.dtype, value.str)
    if kind is tuple or kind is list:
        return (kind, tuple(_token(v) for v in value))
    if kind is dict:
        return (dict, tuple((_token(k), _token(v)) for k, v in value.items()))
    raise _Unkeyable


def _items_token(mapping: Any, skip: frozenset[str] = frozenset()) -> tuple[Any, ...]:
    # Text, the most common value, stands for itself (no other token is a str).
    return tuple((k, v if type(v) is str else _token(v)) for k, v in mapping.items() if k not in skip)


def listing_key(entries: dict[str, Any], attributes: Any, values: dict[str, np.ndarray]) -> tuple[Any, ...] | None:
    """What xarray's decode of a listing depends on, as a hashable key; None when it cannot be keyed.

    ``entries``: ``{name: (dims, attrs, encoding)}`` as listed, ``attributes``: the
    file's, ``values``: each variable's stored array.  The key holds, per variable
    in order, its name, dimensions, stored type, the length of the last dimension
    of character arrays (joining characters makes it part of the decoded type),
    every attribute and every encoding entry but those of :data:`_WHERE`, bit for
    bit.  Of the file's attributes the decode reads ``coordinates`` only: a file
    that has one is not keyed (it would change the dataset's attributes too).
    """
    if "coordinates" in attributes:
        return None
    key = []
    try:
        for name, (dims, attrs, encoding) in entries.items():
            dtype = values[name].dtype
            text = values[name].shape[-1] if dtype.kind == "S" and dims else None
            key.append((name, dims, dtype.str, text, _items_token(attrs), _items_token(encoding, _WHERE)))
    except _Unkeyable:
        return None
    return tuple(key)


#: The lazy arrays xarray's decoders wrap stored values in: each computes from the array it wraps
#: (its ``array``) whenever it is read, and keeps nothing of it.
_PURE_WRAPPERS = frozenset({
    "LazilyIndexedArray", "_ElementwiseFunctionArray", "StackedBytesArray", "NativeEndiannessArray", "BoolTypeArray",
})  # fmt: skip


def _reaches(chain: Any, slot: NumpyIndexingAdapter) -> bool:
    """Whether a decoded variable's values are computed from ``slot`` through known lazy wrappers only.

    Anything else (a wrapper that may cache, values computed when decoding) would
    carry the template file's values over to the next file: such a listing gets
    no template.
    """
    for _ in range(16):
        if chain is slot:
            return True
        if type(chain).__name__ not in _PURE_WRAPPERS:
            return False
        chain = getattr(chain, "array", None)
    return False


def _time_decodes(chain: Any) -> list[Any]:
    """The lazy arrays of ``chain`` that decode times (xarray's ``decode_cf_datetime``), outermost first."""
    out = []
    for _ in range(16):  # as deep as _reaches follows a chain
        func = getattr(chain, "func", None)
        if decode_cf_datetime is not None and isinstance(func, functools.partial) and func.func is decode_cf_datetime:
            out.append(chain)
        chain = getattr(chain, "array", None)
    return out


def _range_checked(numbers: np.ndarray) -> bool:
    """Whether decoding ``numbers`` whole checks that its least and largest values decode.

    xarray's ``decode_cf_datetime`` checks those two values before it converts
    any, but checks nothing for one it takes as NaT: a NaN, int64's least value
    (what a masked integer time becomes) or a float that converts to it (2**63,
    either sign).  Least and largest values strictly inside int64's range are
    none of these.
    """
    if numbers.size == 0 or numbers.dtype.kind not in "iuf":
        return False
    # Compared as Python numbers, exactly whatever the array's type (a NaN compares false).
    return _INT64.min < numbers.min().item() and numbers.max().item() < _INT64.max


def _times_decode_alike(times: list[Any], always: bool = False) -> bool:
    """Whether xarray's decode-time check of each time (its first and last values) passes and gives the same type.

    Raises as that check raises (the file is then left to xarray's decode, which refuses it).

    The check is made only on times whose whole decode does not check their
    least and largest values (:func:`_range_checked`), unless ``always``: where
    it does, it fails (raises, warns, or decodes to another type, each of which
    sends the file to xarray's decode) whenever the first or the last value
    would; where a value taken as NaT hides the extremes from it, only the check
    of the first and last values refuses an overflow.
    """
    for node in times:
        if not always and _range_checked(node.array.get_duck_array()):
            continue
        if _decode_cf_datetime_dtype(node.array, **node.func.keywords) != node.dtype:
            return False
    return True


def _copy_if_mutable(value: Any) -> Any:
    return value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)


def _recipe(
    decoded: dict[str, Any], raw_attrs: dict[str, Any], raw_encoding: dict[str, Any]
) -> list[tuple[str, str, Any]]:
    """How to rebuild a decoded mapping for another file: ``(key, where, value)`` per entry, in order.

    ``where`` is ``"attrs"`` or ``"encoding"`` when the decode moved the listing's
    own object under the same key (the other file's object is taken), else
    ``"const"`` (the template's value, the same for every file of the listing).
    """
    out = []
    for key, value in decoded.items():
        if key in raw_attrs and raw_attrs[key] is value:
            out.append((key, "attrs", None))
        elif key in raw_encoding and raw_encoding[key] is value:
            out.append((key, "encoding", None))
        else:
            if key in _WHERE:
                raise _Unkeyable  # a "where" entry the decode changed: the key would not cover it
            out.append((key, "const", value))
    return out


def _rebuild(recipe: list[tuple[str, str, Any]], attrs: dict[str, Any], encoding: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, where, value in recipe:
        if where == "attrs":
            out[key] = attrs[key]
        elif where == "encoding":
            out[key] = encoding[key]
        else:
            out[key] = _copy_if_mutable(value)
    return out


class _Decoded:
    """One decoded variable of a template: its lazy chain over the template's own stored arrays."""

    __slots__ = ("attrs", "chain", "coord", "dims", "dtype", "encoding", "name", "ndim", "times")

    def __init__(self, name: str, var: Any, coord: bool, raw: tuple[dict[str, Any], dict[str, Any]],
                 dtype: np.dtype) -> None:  # fmt: skip
        self.name, self.dims, self.chain, self.coord, self.dtype = name, var.dims, var._data, coord, dtype
        self.ndim = len(var.dims)
        self.attrs = _recipe(var.attrs, *raw)
        self.encoding = _recipe(var.encoding, *raw)
        self.times = _time_decodes(var._data)
        if dtype.kind == "M" and not self.times:
            raise _Unkeyable  # times decoded by a function this module cannot check as xarray does


class DecodeTemplate:
    """xarray's decode of one listing, to apply to the values of other files of the same listing.

    Build with :meth:`learn`; :attr:`packed` names the variables decoded as stored.
    """

    def __init__(self, decoded: list[_Decoded], slots: dict[str, NumpyIndexingAdapter], packed: list[str]) -> None:
        self._decoded = decoded
        self._slots = slots
        self.packed = packed
        #: None until the first file it serves was compared with xarray's decode; then whether they agreed.
        self.verified: bool | None = None

    @classmethod
    def learn(
        cls, entries: dict[str, Any], attributes: Any, values: dict[str, np.ndarray], packed: list[str]
    ) -> DecodeTemplate | None:
        """xarray's decode of a listing (as :func:`listing_key` takes it); None when unusable.

        The decode is the one :func:`atlas.cli.sources._open_once` asks of
        ``xr.open_dataset``: the ``packed`` variables without mask-and-scale and
        time decoding.  A decode that warns or fails, or metadata that cannot be
        rebuilt for another file, make no template.
        """
        slots = {name: NumpyIndexingAdapter(values[name]) for name in entries}
        raw = {
            name: Variable(dims, LazilyIndexedArray(slots[name]), dict(attrs), dict(encoding), fastpath=True)
            for name, (dims, attrs, encoding) in entries.items()
        }
        originals = {name: (dict(attrs), dict(encoding)) for name, (_, attrs, encoding) in entries.items()}
        # As _open_once asks it: the mappings only when a variable is packed, since an empty
        # one is false where decode_cf_variables asks decode_times as a whole (whether a time's
        # units and calendar are copied to its bounds).
        off = dict.fromkeys(packed, False)
        options = {"mask_and_scale": off, "decode_times": off, "decode_timedelta": off} if packed else {}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                decoded, _, coord_names = conventions.decode_cf_variables(raw, attributes, **options)
                loaded = {name: var._data.get_duck_array() for name, var in decoded.items()}
            if caught or not all(_reaches(var._data, slots[name]) for name, var in decoded.items()):
                return None
            out = [
                _Decoded(name, var, name in coord_names or var.dims == (name,), originals[name], loaded[name].dtype)
                for name, var in decoded.items()
            ]
            # The check each file's times get (see apply) passes on this file as xarray's did.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                alike = all(_times_decode_alike(d.times, always=True) for d in out)
            if caught or not alike:
                return None
            # The order and the coordinates of the dataset xarray's backend builds around them.
            data_vars = {d.name: decoded[d.name] for d in out if not d.coord}
            coords = Coordinates({d.name: decoded[d.name] for d in out if d.coord}, indexes={})
            built = Dataset(data_vars, coords=coords, attrs=dict(attributes))
            by_name = {d.name: d for d in out}
            out = [by_name[name] for name in built.variables]
        except Exception:
            return None
        template = cls(out, slots, list(packed))
        template._release()
        return template

    def apply(self, store: Any, entries: dict[str, Any], attributes: Any, values: dict[str, np.ndarray]) -> Any:
        """The loaded dataset xarray's decode would give for this listing's ``values``; None to decode it there.

        ``entries``/``attributes``: the file's listing (its key must equal the
        template's); ``store``: its open store, which the dataset closes.
        """
        try:
            for name, slot in self._slots.items():
                slot.array = values[name]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if not all(_times_decode_alike(d.times) for d in self._decoded):
                    return None
                loaded = [(d, d.chain.get_duck_array()) for d in self._decoded]
            if caught:
                return None
            variables, sizes, coord_names = {}, {}, set()
            for d, data in loaded:
                shape = values[d.name].shape[: d.ndim]
                if type(data) is not np.ndarray or data.dtype != d.dtype or data.shape != shape:
                    return None
                _, attrs, encoding = entries[d.name]
                variables[d.name] = Variable(
                    d.dims, data, _rebuild(d.attrs, attrs, encoding), _rebuild(d.encoding, attrs, encoding),
                    fastpath=True,
                )  # fmt: skip
                for dim, size in zip(d.dims, shape, strict=True):
                    sizes.setdefault(dim, size)
                if d.coord:
                    coord_names.add(d.name)
        except Exception:
            return None
        finally:
            self._release()
        # What Dataset(data_vars, coords=Coordinates(coord_vars, indexes={}), attrs=...) builds, as
        # xarray's backend does, without merging variables that come from one file and were
        # checked when the template was made (the first file it serves is compared in full).
        try:
            return Dataset._construct_direct(
                variables, coord_names, sizes, dict(attributes), {}, store.get_encoding(), store.close
            )
        except Exception:  # another xarray: its decode, as for any file the template cannot serve
            return None

    def _release(self) -> None:
        # Hold no file's values between two files (a small file is up to the read-whole limit).
        for slot in self._slots.values():
            slot.array = np.empty((0,) * slot.array.ndim, slot.array.dtype)


class _Templates(threading.local):
    def __init__(self) -> None:
        self.by_key: dict[tuple[Any, ...], DecodeTemplate | None] = {}
        #: Hashes of the keys met once: a collision only learns a listing early, and a key may be
        #: as large as the attributes it stands for.
        self.seen: set[int] = set()

    def get(self, key: tuple[Any, ...]) -> DecodeTemplate | None:
        """The template of ``key``; None when there is none or it was found unlike xarray's decode."""
        template = self.by_key.get(key)
        return template if template is not None and template.verified is not False else None

    def known(self, key: tuple[Any, ...]) -> bool:
        """Whether ``key`` was seen (learnt, or found unusable: it is not tried again)."""
        return key in self.by_key

    def met_before(self, key: tuple[Any, ...]) -> bool:
        """Whether a listing not :meth:`known` was met before in this thread; it is remembered as met."""
        digest = hash(key)
        if digest in self.seen:
            self.seen.discard(digest)
            return True
        if len(self.seen) >= MAX_SEEN:
            self.seen.clear()
        self.seen.add(digest)
        return False

    def put(self, key: tuple[Any, ...], template: DecodeTemplate | None) -> None:
        if len(self.by_key) >= MAX_TEMPLATES:
            self.by_key.clear()
        self.by_key[key] = template


#: This thread's templates.
templates = _Templates()


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    if type(a) is not type(b) or a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "O":
        return a.tobytes() == b.tobytes()
    return all(_same_object(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))


def _same_object(a: Any, b: Any) -> bool:
    # Never raises: the dataset's attributes are not keyed and may hold anything netCDF4
    # gives (a compound attribute is a structured array, whose ``==`` has no truth value).
    if type(a) is not type(b):
        return False
    try:
        return _token(a) == _token(b)
    except _Unkeyable:
        pass
    if isinstance(a, np.ndarray):
        return _same_values(a, b)
    try:
        return bool(a == b)
    except Exception:
        return False


def _same_mapping(a: Any, b: Any) -> bool:
    if list(a) != list(b):
        return False
    try:
        return _items_token(a) == _items_token(b)
    except _Unkeyable:
        return all(_same_object(a[k], b[k]) for k in a)


def same_dataset(a: Any, b: Any) -> bool:
    """Whether two loaded datasets are the same to the bit: what a template must give."""
    if list(a.variables) != list(b.variables) or list(a.coords) != list(b.coords) or dict(a.sizes) != dict(b.sizes):
        return False
    if list(a.xindexes) != list(b.xindexes) or not _same_mapping(a.attrs, b.attrs):
        return False
    if list(a.encoding) != list(b.encoding) or any(a.encoding[k] != b.encoding[k] for k in a.encoding):
        return False
    for name, va in a.variables.items():
        vb = b.variables[name]
        if type(va) is not type(vb) or va.dims != vb.dims or not _same_values(va.data, vb.data):
            return False
        if not _same_mapping(va.attrs, vb.attrs) or not _same_mapping(va.encoding, vb.encoding):
            return False
    return True


def decode_listed(
    store: Any, decode: Callable[[list[str] | None], Any], templated: bool = True
) -> tuple[Any, list[str] | None]:
    """``(dataset, packed)`` of a file read whole: by its listing's template when there is one, else by ``decode``.

    ``store``: an :class:`~atlas.cli.netcdf_open.OnceStore` that read its file
    whole; ``decode(packed)``: xarray's decode of it (``xr.open_dataset`` with the
    ``packed`` variables, :meth:`~atlas.cli.netcdf_open.OnceStore.surely_packed`'s
    answer, decoded as stored).  ``packed`` is that answer; the dataset is loaded
    when it comes from a template.  A listing met for the second time is learnt
    before ``decode`` decodes it; the first file a template serves is decoded both
    ways, and ``decode``'s dataset is the one returned (see the module's guards).
    ``templated=False`` (an xarray that builds default indexes in any case): ``decode`` only.
    """
    listing = store.read_listing() if templated else None
    key = listing_key(*listing) if listing is not None else None
    template = templates.get(key) if key is not None else None
    if template is not None:
        ds = template.apply(store, *listing)
        if ds is not None:
            if template.verified is None:
                full = decode(template.packed)
                full.load()
                template.verified = same_dataset(ds, full)
                return full, template.packed
            store.forget_listing()  # as a decode of the store would: the file is not decoded again
            return ds, template.packed
    packed = store.surely_packed()
    if key is not None and packed is not None and not templates.known(key) and templates.met_before(key):
        templates.put(key, DecodeTemplate.learn(*listing, packed))
    return decode(packed), packed
