"""Many datasets of different lengths in one view: outer join and the CF contiguous ragged layout.

:func:`read_outer` pads every dataset to the union of the index coordinates, as
``xr.concat(..., join="outer")`` does, and :func:`read_ragged` concatenates the
datasets along their one ragged dimension into the contiguous ragged array
representation of the CF conventions (appendix H, discrete sampling geometries):
a sample dimension ``obs`` plus a count variable ``row_size`` whose
``sample_dimension`` attribute names it.  :func:`from_ragged` is the inverse.

Both read each variable of a group of up to :data:`BLOCK_DATASETS` datasets with
one bulk read (:meth:`atlas.Atlas.read_array_across`, grouped by shape).  The
result is lazy: every variable is a dask array with one task per group of
datasets, whose graph names the store by location and snapshot (like
:func:`atlas.xarray.to_xarray`); index coordinates, and the row counts, are read
at once.  Datasets with unflushed changes in the handle, or a missing dask, make
the read eager.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from atlas.errors import InvalidArgumentError, SchemaMismatchError
from atlas.xarray.conversions import object_array
from atlas.xarray.layout import VarSpec, build_dataset, make_variable, read_layout, restore_block
from atlas.xarray.read import Recipe, recipe_for, store_for

if TYPE_CHECKING:
    from atlas.store import Atlas

__all__ = ["ROW_SIZE", "SAMPLE_DIM", "from_ragged", "read_outer", "read_ragged"]

#: The count variable and the sample dimension of the ragged layout.
ROW_SIZE = "row_size"
SAMPLE_DIM = "obs"
#: Attribute of ``row_size`` naming the datasets' own dimension that ``obs`` replaces.
DIM_ATTR = "atlas_dimension"


def _layouts(store: Atlas, names: list[str]) -> tuple[dict[str, Any], list[list[VarSpec]]]:
    """Global attrs of the first dataset and every dataset's specs, checked to agree but for shapes."""
    layouts = [read_layout(store.open_dataset(n)) for n in names]
    gattrs, first = layouts[0]

    def sig(spec: VarSpec) -> tuple:
        return (spec.name, spec.array, spec.dims, spec.store_dtype, spec.is_coord, spec.restore, spec.packed)

    expected = {s.name: sig(s) for s in first}
    for n, (_, specs) in zip(names[1:], layouts[1:]):
        got = {s.name: sig(s) for s in specs}
        if got != expected:
            missing = sorted(set(expected) ^ set(got))
            what = f"variable {missing[0]!r}" if missing else next(
                f"variable {v!r}" for v in expected if got[v] != expected[v]
            )  # fmt: skip
            raise SchemaMismatchError(f"dataset {n!r} differs from dataset {names[0]!r} in {what} (beyond its shape)")
    return gattrs, [specs for _, specs in layouts]


def _decoded(store: Atlas, names: list[str], specs: list[VarSpec]) -> list[xr.Variable]:
    """Variable ``specs[i]`` of every dataset ``names[i]`` in memory, decoded as ``to_xarray`` gives it."""
    arrays = store.read_array_across(specs[0].array, names)
    return [make_variable(s, restore_block(a, s.restore)) for s, a in zip(specs, arrays)]


def _template(spec: VarSpec) -> xr.Variable:
    """An empty variable decoded like ``spec``'s: its dtype, attrs and encoding, read from nothing."""
    return make_variable(spec, np.zeros((0,) * len(spec.dims), spec.dtype))


def _recipes(store: Atlas, names: list[str]) -> list[Recipe] | None:
    """Recipes of every dataset for lazy blocks; None (read eagerly) when one has unflushed changes
    in this handle or dask is not installed."""
    try:
        import dask.array  # noqa: F401
    except ImportError:
        return None
    recipes = [recipe_for(store, n) for n in names]
    return None if any(r is None for r in recipes) else recipes  # type: ignore[return-value]


def _source(source: Any) -> Atlas:
    """The handle a block reads from: ``source`` itself, or the cached read-only handle of its recipes."""
    if not isinstance(source, list):
        return source
    store = None
    for recipe in source:  # one cached handle per snapshot; each dataset is checked unchanged
        store = store_for(recipe)
    return store  # type: ignore[return-value]


def outer_block(
    names: list[str],
    specs: list[VarSpec],
    positions: list[list[np.ndarray | None]],
    shape: tuple[int, ...],
    dtype: np.dtype,
    fill: Any,
    source: Any,
    part: slice,
) -> np.ndarray:
    """Datasets ``part`` of one variable padded to the union shape (a dask task; runs in any process)."""
    names, specs, positions = names[part], specs[part], positions[part]
    decoded = _decoded(_source(source), names, specs)
    out = np.empty((len(names), *shape), dtype=dtype) if fill is None else np.full((len(names), *shape), fill, dtype)
    for i, (var, per_dim) in enumerate(zip(decoded, positions)):
        if all(p is None for p in per_dim):
            out[i] = var.values
        else:
            where = tuple(np.arange(n) if p is None else p for p, n in zip(per_dim, var.shape))
            out[i][np.ix_(*where)] = var.values
    return out


def ragged_block(
    names: list[str], specs: list[VarSpec], along: bool, axis: int, source: Any, part: slice
) -> np.ndarray:
    """Datasets ``part`` of one variable concatenated along ``axis`` (``along``) or stacked (a dask task)."""
    decoded = _decoded(_source(source), names[part], specs[part])
    values = [v.values for v in decoded]
    return np.concatenate(values, axis=axis) if along else np.stack(values)


#: Datasets per block of a lazy many-dataset variable.
BLOCK_DATASETS = 256


def _assemble(
    store: Atlas,
    recipes: list[Recipe] | None,
    block: Callable[[Any, slice], np.ndarray],
    axis: int,
    sizes: list[int],
    shape: tuple[int, ...],
    dtype: np.dtype,
) -> Any:
    """The whole variable: ``block(store, all)`` eagerly, or a dask array of one task per
    :data:`BLOCK_DATASETS` datasets (along ``axis``, where dataset ``i`` has ``sizes[i]`` cells)."""
    n = len(sizes)
    if recipes is None:
        return block(store, slice(0, n))
    import dask.array as da
    from dask.base import tokenize

    parts = [slice(a, min(a + BLOCK_DATASETS, n)) for a in range(0, n, BLOCK_DATASETS)]
    along = tuple(sum(sizes[p]) for p in parts)
    chunks = tuple(along if a == axis else (k,) for a, k in enumerate(shape))
    name = "atlas-many-" + tokenize(recipes, block.func.__name__, block.args[1:])  # type: ignore[attr-defined]
    dsk = {}
    for k, p in enumerate(parts):
        key = tuple(k if a == axis else 0 for a in range(len(shape)))
        dsk[(name, *key)] = (block, recipes[p], p)
    meta = np.empty((0,) * len(shape), dtype=dtype)
    return da.Array(dsk, name, chunks, dtype=dtype, meta=meta)


def _by_name(layouts: list[list[VarSpec]]) -> dict[str, list[VarSpec]]:
    out: dict[str, list[VarSpec]] = {}
    for specs in layouts:
        for s in specs:
            out.setdefault(s.name, []).append(s)
    return out


def _sizes(names: list[str], layouts: list[list[VarSpec]]) -> list[dict[str, int]]:
    out = []
    for n, specs in zip(names, layouts):
        sizes: dict[str, int] = {}
        for s in specs:
            for d, k in zip(s.dims, s.shape):
                if sizes.setdefault(d, k) != k:  # pragma: no cover - a stored dataset is consistent
                    raise SchemaMismatchError(f"dataset {n!r} has two sizes of dimension {d!r}")
        out.append(sizes)
    return out


def read_outer(store: Atlas, names: list[str], concat_dim: str) -> Any:
    """Datasets padded to the union of their index coordinates, stacked along ``concat_dim``."""
    gattrs, layouts = _layouts(store, names)
    by_name = _by_name(layouts)
    first = layouts[0]
    sizes = _sizes(names, layouts)
    indexes: dict[str, list[pd.Index]] = {}
    union: dict[str, pd.Index] = {}
    variables: dict[str, Any] = {}
    for spec in first:
        if spec.is_index:
            decoded = _decoded(store, names, by_name[spec.name])
            indexes[spec.name] = [pd.Index(v.values) for v in decoded]
            joined = indexes[spec.name][0]
            for other in indexes[spec.name][1:]:
                if not joined.equals(other):
                    joined = joined.union(other)
            union[spec.name] = joined
            variables[spec.name] = xr.Variable(
                spec.dims, joined.values.astype(decoded[0].dtype), decoded[0].attrs, decoded[0].encoding
            )
    for d in {d for s in first for d in s.dims if d not in union}:
        got = {sz.get(d) for sz in sizes}
        if len(got) > 1:
            raise SchemaMismatchError(
                f"dimension {d!r} has no index coordinate and different sizes {sorted(got)} across the datasets; "
                "an outer join needs an index coordinate to align it"
            )
    recipes = _recipes(store, names)
    for spec in first:
        if spec.is_index:
            continue
        specs = by_name[spec.name]
        template = _template(spec)
        shape = tuple(len(union[d]) if d in union else spec.shape[a] for a, d in enumerate(spec.dims))
        positions = []
        for i in range(len(names)):
            per_dim = []
            for d in spec.dims:
                if d in union and not indexes[d][i].equals(union[d]):
                    per_dim.append(union[d].get_indexer(indexes[d][i]))
                else:
                    per_dim.append(None)
            positions.append(per_dim)
        padded = any(p is not None for per_dim in positions for p in per_dim)
        dtype, fill = xr.core.dtypes.maybe_promote(template.dtype) if padded else (template.dtype, None)
        block = functools.partial(outer_block, names, specs, positions, shape, dtype, fill)
        out = _assemble(store, recipes, block, 0, [1] * len(names), (len(names), *shape), dtype)
        variables[spec.name] = xr.Variable((concat_dim, *spec.dims), out, template.attrs, template.encoding)
    ds = build_dataset(variables, [s.name for s in first if s.is_coord], gattrs)
    return ds.assign_coords({concat_dim: (concat_dim, object_array(names, (len(names),)))})


def _sample_dim(names: list[str], layouts: list[list[VarSpec]], sample_dim: str | None) -> str:
    sizes = _sizes(names, layouts)
    dims = list(dict.fromkeys(d for s in layouts[0] for d in s.dims))
    if sample_dim is not None:
        if sample_dim not in dims:
            raise InvalidArgumentError(f"sample_dim {sample_dim!r} is not a dimension of the datasets")
        return sample_dim
    ragged = [d for d in dims if len({sz.get(d) for sz in sizes}) > 1]
    if len(ragged) > 1:
        raise SchemaMismatchError(
            f"dimensions {ragged} all differ in size across the datasets; name the ragged one with sample_dim="
        )
    if ragged:
        return ragged[0]
    index_dims = [s.name for s in layouts[0] if s.is_index]
    if not index_dims:
        raise InvalidArgumentError("the datasets have no index coordinate; name the ragged dimension with sample_dim=")
    return index_dims[0]


def read_ragged(store: Atlas, names: list[str], concat_dim: str, sample_dim: str | None = None) -> Any:
    """The CF contiguous ragged array representation of the datasets (see the module docstring)."""
    gattrs, layouts = _layouts(store, names)
    by_name = _by_name(layouts)
    first = layouts[0]
    dim = _sample_dim(names, layouts, sample_dim)
    for taken in (ROW_SIZE, SAMPLE_DIM, concat_dim):
        if any(taken == s.name or taken in s.dims for s in first):
            raise InvalidArgumentError(f"{taken!r} is already a variable or dimension of the datasets")
    sizes = _sizes(names, layouts)
    for d in {d for s in first for d in s.dims if d != dim}:
        got = {sz.get(d) for sz in sizes}
        if len(got) > 1:
            raise SchemaMismatchError(
                f"dimension {d!r} has sizes {sorted(got)} across the datasets; only {dim!r} can be ragged"
            )
    counts = np.array([sz.get(dim, 0) for sz in sizes], np.int64)
    variables: dict[str, Any] = {}
    recipes = _recipes(store, names)
    for spec in first:
        specs = by_name[spec.name]
        template = _template(spec)
        if dim in spec.dims:
            axis = spec.dims.index(dim)
            sizes_along = counts.tolist()
            shape = tuple(int(counts.sum()) if a == axis else n for a, n in enumerate(spec.shape))
            dims = tuple(SAMPLE_DIM if d == dim else d for d in spec.dims)
        else:
            axis = 0
            sizes_along = [1] * len(names)
            shape = (len(names), *spec.shape)
            dims = (concat_dim, *spec.dims)
        block = functools.partial(ragged_block, names, specs, dim in spec.dims, axis)
        data = _assemble(store, recipes, block, axis, sizes_along, shape, template.dtype)
        variables[spec.name] = xr.Variable(dims, data, template.attrs, template.encoding)
    variables[ROW_SIZE] = xr.Variable(
        (concat_dim,),
        counts,
        {"long_name": f"number of observations for each {concat_dim}", "sample_dimension": SAMPLE_DIM, DIM_ATTR: dim},
    )
    ds = build_dataset(variables, [s.name for s in first if s.is_coord], gattrs)
    return ds.assign_coords({concat_dim: (concat_dim, object_array(names, (len(names),)))})


def from_ragged(ds: Any) -> dict[str, Any]:
    """The datasets of a contiguous ragged array dataset, ``{name: xarray.Dataset}``.

    The inverse of ``Atlas.to_xarray_many(names, layout="ragged")``: the count
    variable is the one with a ``sample_dimension`` attribute (CF appendix H); its
    dimension is the instance dimension, whose coordinate (when there is one) gives
    the names (else ``"0"``, ``"1"``, ...).  Variables on the sample dimension are
    cut into rows and get back the dimension named by the ``atlas_dimension``
    attribute of the count variable (the sample dimension's own name without it);
    variables on the instance dimension give each dataset its element; the others
    are copied to every dataset.  Each result can be written back with
    :meth:`atlas.Atlas.add_xr_dataset`.
    """
    if not isinstance(ds, xr.Dataset):
        raise InvalidArgumentError(f"from_ragged takes an xarray.Dataset, got {type(ds).__name__}")
    counters = [k for k, v in ds.variables.items() if "sample_dimension" in v.attrs and v.ndim == 1]
    if len(counters) != 1:
        raise InvalidArgumentError(
            f"a contiguous ragged dataset has exactly one count variable with a sample_dimension attribute, "
            f"found {len(counters)}: {counters}"
        )
    count = ds.variables[counters[0]]
    obs = count.attrs["sample_dimension"]
    instance = count.dims[0]
    dim = count.attrs.get(DIM_ATTR, obs)
    counts = np.asarray(count.values, np.int64)
    if (counts < 0).any() or (obs in ds.sizes and counts.sum() != ds.sizes[obs]):
        raise InvalidArgumentError(f"{counters[0]!r} does not add up to the size of dimension {obs!r}")
    labels = ds.variables[instance].values.tolist() if instance in ds.variables else list(range(len(counts)))
    ends = np.cumsum(counts)
    coord_names = set(ds.coords) - {instance}
    out: dict[str, Any] = {}
    for i, label in enumerate(labels):
        lo, hi = int(ends[i] - counts[i]), int(ends[i])
        variables = {}
        for key, var in ds.variables.items():
            if key in (counters[0], instance):
                continue
            if obs in var.dims:
                part = var.isel({obs: slice(lo, hi)})
                dims = tuple(dim if d == obs else d for d in part.dims)
                part = xr.Variable(dims, part.values, var.attrs, var.encoding)
            elif instance in var.dims:
                part = var.isel({instance: i})
                part = xr.Variable(part.dims, part.values, var.attrs, var.encoding)
            else:
                part = var.copy()
            variables[key] = part
        out[str(label)] = build_dataset(variables, [k for k in variables if k in coord_names], dict(ds.attrs))
    return out


def check_names(names: Sequence[str]) -> list[str]:
    """The dataset names of a many-dataset read, as a non-empty list."""
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise InvalidArgumentError(f"names must be a sequence of dataset names, got {names!r}")
    names = list(names)
    if not names:
        raise InvalidArgumentError("to_xarray_many needs at least one dataset name")
    return names
