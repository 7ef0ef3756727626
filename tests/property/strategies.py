"""Every Hypothesis strategy the ATLAS property tests draw from.

Strategies build *inputs* (dtype names, shapes, chunkings, fill values, data in
each accepted input form, selections, names, attribute values, store options);
:mod:`tests.property.reference` holds the numpy model they are checked against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .reference import NAT_INT, ArraySpec, is_float, is_int

DTYPE_NAMES: tuple[str, ...] = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "timestamp_nanoseconds",
    "string",
    "bool",
)

CODECS = ("zstd", "lz4", "none")
META_FORMATS = ("json", "msgpack")
META_COMPRESSIONS = ("none", "zstd", "lz4")

#: Names that are valid but easy to get wrong (escaping, case, normalisation, dots).
SPECIAL_NAMES: tuple[str, ...] = (
    "a#b",
    "x%2F",
    "温度",
    "with space",
    " lead",
    "trail ",
    "Temp",
    "temp",
    "TEMP",
    "a.b",
    "...",
    ".hidden",
    "-",
    "é",
    "e\u0301",
    "😀",
    "a\\b",
    "x:y",
    "CON",
    "%",
    "a\x00b",
    "\u200b",
)

# -- dtypes and scalars ---------------------------------------------------------------------


def dtype_names() -> st.SearchStrategy[str]:
    """Any ATLAS dtype name."""
    return st.sampled_from(DTYPE_NAMES)


def _int_bounds(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def texts(max_size: int = 8) -> st.SearchStrategy[str]:
    """Unicode text (NUL, non-ASCII and astral characters included, no lone surrogates)."""
    return st.text(st.characters(codec="utf-8"), max_size=max_size)


def any_texts(min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[str]:
    """Any ``str`` at all: lone surrogates, ``/``, ``_``-led, empty (for must-accept-or-reject tests)."""
    return st.one_of(
        st.sampled_from(("\ud800", "a\udc80b", "/", "_x", ".", "..", "", "ok", "温度")),
        st.text(st.characters(), min_size=min_size, max_size=max_size),
    )


def encodable(text: str) -> bool:
    """True when ``text`` is valid unicode (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_valid_name(name: str) -> bool:
    """The documented rule for dataset names (array names also need :func:`fits_dir_name`)."""
    return encodable(name) and _valid_name(name)


def fits_dir_name(name: str) -> bool:
    """True when the directory encoding of array ``name`` fits the 240-character limit."""
    return _dir_name_length(name) <= 240


def timestamp_ints() -> st.SearchStrategy[int]:
    """int64 nanoseconds: NaT, the full int64 range and a realistic modern range."""
    return st.one_of(
        st.just(NAT_INT),
        st.integers(NAT_INT + 1, 2**63 - 1),
        st.integers(1_500_000_000 * 10**9, 1_800_000_000 * 10**9),
    )


def elements(dtype: str) -> st.SearchStrategy[Any]:
    """Cell values of ``dtype`` in the form the model stores them (ints for timestamps)."""
    if is_int(dtype):
        lo, hi = _int_bounds(dtype)
        return st.integers(lo, hi)
    if dtype == "float32":
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if dtype == "float64":
        return st.floats(allow_nan=True, allow_infinity=True)
    if dtype == "bool":
        return st.booleans()
    if dtype == "timestamp_nanoseconds":
        return timestamp_ints()
    return texts()


def fill_values(dtype: str) -> st.SearchStrategy[Any]:
    """A fill value ``define_array`` accepts for ``dtype`` (NaN, inf, -0.0 and NaT included)."""
    if dtype == "timestamp_nanoseconds":
        return st.one_of(
            timestamp_ints(),
            timestamp_ints().map(lambda v: np.datetime64(v, "ns")),
            st.just(np.datetime64("NaT", "ns")),
        )
    return elements(dtype)


def optional_fill_values(dtype: str) -> st.SearchStrategy[Any]:
    """``None`` (no fill value) or a fill value of ``dtype``."""
    return st.one_of(st.none(), fill_values(dtype))


def _near(dtype: str, fill: Any) -> list[Any]:
    """Values equal or adjacent to ``fill`` (exercise exact null counting)."""
    if fill is None:
        return []
    if dtype == "timestamp_nanoseconds":
        value = (
            NAT_INT
            if isinstance(fill, np.datetime64) and np.isnat(fill)
            else int(fill.astype("datetime64[ns]").view("i8") if isinstance(fill, np.datetime64) else fill)
        )
        return [v for v in (value, value - 1, value + 1) if NAT_INT <= v < 2**63]
    if is_int(dtype):
        lo, hi = _int_bounds(dtype)
        return [v for v in (fill, fill - 1, fill + 1) if lo <= v <= hi]
    if is_float(dtype):
        ftype = np.float32 if dtype == "float32" else np.float64
        value = ftype(fill)
        if np.isnan(value):
            return [float(value)]
        near = [float(value), float(-value)]
        if np.isfinite(value):
            with np.errstate(over="ignore"):  # the neighbour of the largest float is inf
                near += [float(np.nextafter(value, ftype(np.inf))), float(np.nextafter(value, ftype(-np.inf)))]
        return near
    return [fill]


def cell_values(dtype: str, fill: Any = None) -> st.SearchStrategy[Any]:
    """Cell values, biased towards the fill value and its neighbours when there is one."""
    base = elements(dtype)
    near = _near(dtype, fill)
    return st.one_of(st.sampled_from(near), base) if near else base


# -- shapes, chunkings, selections --------------------------------------------------------


def shapes(min_rank: int = 0, max_rank: int = 3, max_side: int = 6) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes of rank ``min_rank..max_rank`` with extents ``0..max_side``."""
    return st.lists(st.integers(0, max_side), min_size=min_rank, max_size=max_rank).map(tuple)


def chunk_shapes(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    """Chunk shapes for ``shape``: every axis ``1..extent + 1`` (larger than the array allowed)."""
    return st.tuples(*(st.integers(1, max(s, 1) + 1) for s in shape))


def optional_chunk_shapes(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...] | None]:
    """``None`` (the default chunking) or an explicit chunk shape."""
    return st.one_of(st.none(), chunk_shapes(shape), chunk_shapes(shape))


@st.composite
def array_specs(draw: st.DrawFn, dtypes: st.SearchStrategy[str] | None = None, max_side: int = 6) -> ArraySpec:
    """A full ``define_array`` spec: dtype, shape, chunk shape and fill value."""
    dtype = draw(dtypes if dtypes is not None else dtype_names())
    shape = draw(shapes(max_side=max_side))
    return ArraySpec(dtype, shape, draw(optional_chunk_shapes(shape)), draw(optional_fill_values(dtype)))


@st.composite
def selections(draw: st.DrawFn, shape: tuple[int, ...], min_side: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A ``(start, shape)`` box inside ``shape`` (empty boxes allowed unless ``min_side``)."""
    start: list[int] = []
    extent: list[int] = []
    for side in shape:
        lo = draw(st.integers(0, max(side - min_side, 0)))
        start.append(lo)
        extent.append(draw(st.integers(min(min_side, side - lo), side - lo)))
    return tuple(start), tuple(extent)


# -- data in every accepted input form ------------------------------------------------------


def _string_array(items: list[str], shape: tuple[int, ...], form: str) -> np.ndarray:
    if form == "unicode":
        arr = np.array(items, dtype=str) if items else np.zeros(0, dtype="U1")
        return arr.reshape(shape)
    if form == "bytes":
        encoded = [s.encode("utf-8") for s in items]
        arr = np.array(encoded, dtype="S") if encoded else np.zeros(0, dtype="S1")
        return arr.reshape(shape)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


@st.composite
def data_arrays(draw: st.DrawFn, dtype: str, shape: tuple[int, ...], fill: Any = None) -> np.ndarray:
    """A C-contiguous array ``write_array`` accepts for ``dtype``, in a random input form.

    Timestamps come as ``datetime64[ns]`` or int64; strings as object, ``|U`` or
    ``|S`` (UTF-8) arrays.  numpy drops trailing NULs of ``|U``/``|S`` items, so the
    model must take the values from the returned array, not from the drawn items.
    """
    values = cell_values(dtype, fill)
    if dtype == "string":
        n = math.prod(shape)
        items = draw(st.lists(values, min_size=n, max_size=n))
        form = draw(st.sampled_from(("object", "object", "unicode", "bytes")))
        return _string_array(items, shape, form)
    if dtype == "timestamp_nanoseconds":
        raw = draw(hnp.arrays(np.int64, shape, elements=values))
        return raw if draw(st.booleans()) else raw.view("datetime64[ns]")
    arr = draw(hnp.arrays(np.dtype(dtype), shape, elements=values))
    assert arr.flags.c_contiguous and arr.shape == shape
    return arr


@st.composite
def writes(draw: st.DrawFn, spec: ArraySpec, min_side: int = 0) -> tuple[tuple[int, ...], np.ndarray]:
    """One ``write_array`` call for an array of ``spec``: ``(start, data)``."""
    start, extent = draw(selections(spec.shape, min_side=min_side))
    return start, draw(data_arrays(spec.dtype, extent, spec.fill_value))


# -- names ------------------------------------------------------------------------------------


def _valid_name(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith("_") and name not in (".", "..")


def _dir_name_length(name: str) -> int:
    plain = b"abcdefghijklmnopqrstuvwxyz0123456789-"
    return sum(1 if b in plain else 3 for b in name.encode("utf-8"))


def names(max_size: int = 10) -> st.SearchStrategy[str]:
    """Valid dataset names: any unicode without ``/``, not ``_``-led, not ``.``/``..``."""
    free = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=max_size)
    return st.one_of(st.sampled_from(SPECIAL_NAMES), free.filter(_valid_name))


def dataset_names() -> st.SearchStrategy[str]:
    """Valid dataset names."""
    return names()


def array_names() -> st.SearchStrategy[str]:
    """Valid array names (their directory encoding fits the 240-character limit)."""
    return names().filter(fits_dir_name)


# -- stores -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreOptions:
    """Keyword arguments of ``Atlas.create``."""

    codec: str
    meta_format: str
    meta_compression: str

    def kwargs(self) -> dict[str, str]:
        """As keyword arguments."""
        return {"codec": self.codec, "meta_format": self.meta_format, "meta_compression": self.meta_compression}


def store_options() -> st.SearchStrategy[StoreOptions]:
    """Any combination of chunk codec, manifest format and manifest compression."""
    return st.builds(
        StoreOptions,
        st.sampled_from(CODECS),
        st.sampled_from(META_FORMATS),
        st.sampled_from(META_COMPRESSIONS),
    )


# -- attributes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeCase:
    """A ``set_attribute`` call and what ``get_attribute`` must then return."""

    value: Any
    dtype: str | None
    expected: Any


def _case(value: Any, expected: Any, dtype: str | None = None) -> AttributeCase:
    return AttributeCase(value, dtype, expected)


def attribute_cases() -> st.SearchStrategy[AttributeCase]:
    """Attribute values of every supported kind, with their expected round trip."""
    i64 = st.integers(-(2**63), 2**63 - 1)
    floats = st.floats(allow_nan=True, allow_infinity=True)
    return st.one_of(
        i64.map(lambda v: _case(v, v)),
        st.integers(2**63, 2**64 - 1).map(lambda v: _case(v, np.uint64(v))),
        floats.map(lambda v: _case(v, v)),
        texts(12).map(lambda v: _case(v, v)),
        st.booleans().map(lambda v: _case(v, v)),
        st.lists(i64, min_size=1, max_size=4).map(lambda v: _case(v, list(v))),
        st.lists(floats, max_size=4).map(lambda v: _case(v, list(v))),
        st.lists(texts(4), min_size=1, max_size=3).map(lambda v: _case(v, list(v))),
        st.integers(-128, 127).map(lambda v: _case(v, np.int8(v), "int8")),
        st.floats(width=32).map(lambda v: _case(v, np.float32(v), "float32")),
        timestamp_ints().map(lambda v: _case(np.datetime64(v, "ns"), np.datetime64(v, "ns"))),
        hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=3)).map(lambda a: _case(a, a.copy())),
        hnp.arrays(np.uint16, st.integers(1, 4)).map(lambda a: _case(a, a.copy())),
        hnp.arrays(np.bool_, st.integers(1, 4)).map(lambda a: _case(a, a.copy())),
        hnp.arrays(np.int64, st.integers(1, 3), elements=timestamp_ints()).map(
            lambda a: _case(a.view("datetime64[ns]"), a.view("datetime64[ns]").copy())
        ),
        st.lists(st.booleans(), min_size=1, max_size=3).map(lambda v: _case(v, list(v))),
        st.integers(-(2**15), 2**15 - 1).map(lambda v: _case(np.int16(v), np.int16(v))),
        st.floats(width=32).map(lambda v: _case(np.float32(v), np.float32(v))),
        st.integers(0, 2**64 - 1).map(lambda v: _case(v, np.uint64(v), "uint64")),
        st.lists(st.integers(0, 255), min_size=1, max_size=3).map(
            lambda v: _case(v, [np.uint8(x) for x in v], "uint8")
        ),
    )


def attribute_keys() -> st.SearchStrategy[str]:
    """Attribute keys (any non-empty str), drawn from a small pool so that keys get overwritten."""
    return st.sampled_from(("units", "温度", "a#b", "_private", "x/y", " ", "long_name", "😀"))
