"""Hypothesis strategies for catalogue rows: whole ``DatasetMeta`` objects.

Attributes come from :func:`tests.property.strategies.attribute_cases` (every kind:
NaN, infinities, big uint64, timestamps, lists, ndarrays, non-ASCII text) in their
typed form, plus keys of the xarray mapping; arrays of every dtype with fill values
and stats (or none).  :func:`canonical` gives an exact, NaN-safe comparison form.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from atlas import attributes, dtypes, metadata
from atlas.metadata import ArrayMeta, DatasetMeta, Stats

from .strategies import (
    attribute_cases,
    attribute_keys,
    chunk_shapes,
    dataset_names,
    dtype_names,
    elements,
    fill_values,
    shapes,
    texts,
)

INTERNAL_KEYS = ("_atlas_xarray/vars", "_atlas_xarray/var/temp/units", "_atlas_xarray")


@st.composite
def typed_attributes(draw: st.DrawFn, max_size: int = 5) -> dict[str, dict[str, Any]]:
    """A dataset's typed attributes (insertion order kept), internal keys included."""
    keys = draw(st.lists(st.one_of(attribute_keys(), st.sampled_from(INTERNAL_KEYS), texts(6)), max_size=max_size,
                         unique=True))  # fmt: skip
    out = {}
    for key in keys:
        case = draw(attribute_cases())
        out[key] = attributes.normalize(case.value, case.dtype)
    return out


def _scalar(dtype: str, value: Any) -> Any:
    return dtypes.coerce_scalar(value, dtype, "value")


@st.composite
def array_metas(draw: st.DrawFn, slot: int) -> ArrayMeta:
    """One array of any dtype, shape, fill value and stats (or no stats)."""
    dtype = draw(dtype_names())
    shape = draw(shapes(max_rank=3, max_side=5))
    fill = draw(st.one_of(st.none(), fill_values(dtype)))
    stats = None
    if draw(st.booleans()):
        cells = 1
        for s in shape:
            cells *= s
        if draw(st.booleans()):
            a, b = sorted((draw(elements(dtype)), draw(elements(dtype))), key=lambda v: (isinstance(v, str), v))
            lo, hi = _scalar(dtype, a), _scalar(dtype, b)
        else:
            lo = hi = None
        stats = Stats(cells, draw(st.integers(0, cells)), lo, hi)
    return ArrayMeta(
        slot=slot,
        dtype=dtype,
        dims=tuple(f"d{k}" for k in range(len(shape))),
        shape=shape,
        chunk_shape=draw(chunk_shapes(shape)),
        fill_value=dtypes.check_fill_value(fill, dtype),
        stats=stats,
    )


@st.composite
def dataset_metas(draw: st.DrawFn, dataset_id: int, first_slot: int, version: int = 1) -> DatasetMeta:
    """One dataset: attributes and up to three arrays with slots from ``first_slot``."""
    names = draw(st.lists(st.sampled_from(("temp", "psal", "time", "温度", "flag")), max_size=3, unique=True))
    arrays = {name: draw(array_metas(first_slot + k)) for k, name in enumerate(names)}
    return DatasetMeta(id=dataset_id, version=version, attributes=draw(typed_attributes()), arrays=arrays)


@st.composite
def dataset_sets(draw: st.DrawFn, max_size: int = 8, first_id: int = 1) -> dict[str, DatasetMeta]:
    """Distinct dataset names to datasets with distinct ids and slots (empty sets allowed)."""
    names = draw(st.lists(dataset_names(), max_size=max_size, unique=True))
    return {name: draw(dataset_metas(first_id + i, 10 * (first_id + i))) for i, name in enumerate(names)}


def canonical(ds: DatasetMeta | None) -> str | None:
    """An exact text form of a dataset: NaN equals NaN, ``-0.0`` differs from ``0.0``."""
    if ds is None:
        return None
    obj = {
        "id": ds.id,
        "version": ds.version,
        "attributes": [[k, attributes.encode(v)] for k, v in ds.attributes.items()],
        "arrays": [[a, metadata.array_to_dict(am)] for a, am in ds.arrays.items()],
    }
    return json.dumps(obj, ensure_ascii=False)
