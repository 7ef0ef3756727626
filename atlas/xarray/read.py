"""Reading: :func:`to_xarray`, :func:`to_xarray_many`, lazy recipes and the handle cache.

Multi-chunk variables come back as dask arrays (one task per on-disk chunk) whose
graph names the store by location and snapshot (a :class:`Recipe`), never by an open
handle, so it pickles and computes under the ``processes`` scheduler and
``dask.distributed``.  :func:`read_block` (the task function) and :class:`Recipe` live
here, at a stable import path, because pickled graphs name them.  Each process (and
thread) keeps a small cache of read-only handles per snapshot (:func:`clear_cache`).
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from atlas.errors import ConflictError, DatasetNotFoundError, InvalidArgumentError, SchemaMismatchError
from atlas.xarray.conversions import object_array
from atlas.xarray.layout import VarSpec, build_dataset, make_variable, read_layout, restore_block

if TYPE_CHECKING:
    from atlas.store import Atlas


class Recipe(NamedTuple):
    """What a task needs to read a committed dataset in any process: no open handle."""

    location: str
    generation: int
    dataset: str
    dataset_id: int
    dataset_version: int


HANDLE_CACHE: OrderedDict[tuple[str, int, int], list] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 32


def _dataset_token(store: Atlas, name: str) -> tuple[int, int, bool]:
    """``(id, version, has pending changes)`` of a dataset in a handle's view."""
    state = store.session.state()
    meta = state.dataset(name)
    return meta.id, meta.version, name in state.dirty


def recipe_for(store: Atlas, name: str) -> Recipe | None:
    """The recipe of dataset ``name`` at the handle's snapshot; None when it has unflushed changes."""
    ds_id, version, dirty = _dataset_token(store, name)
    if dirty:
        return None
    return Recipe(store.location, store.generation, name, ds_id, version)


def remember_store(store: Atlas) -> None:
    """Offer a freshly opened read-only handle to this thread's cache."""
    key = (store.location, store.generation, threading.get_ident())
    with _CACHE_LOCK:
        if key not in HANDLE_CACHE:
            HANDLE_CACHE[key] = [store, set()]
            _trim_cache()


def clear_cache() -> None:
    """Drop this process's cached read-only handles (lazy arrays reopen the store on next use)."""
    with _CACHE_LOCK:
        HANDLE_CACHE.clear()


def _trim_cache() -> None:
    while len(HANDLE_CACHE) > _CACHE_SIZE:
        HANDLE_CACHE.popitem(last=False)


def store_for(recipe: Recipe) -> Atlas:
    """A read-only handle (cached per process, thread and snapshot) that serves ``recipe``.

    A handle opened later than the recipe's generation is used only if the dataset
    is unchanged since (same id and version); otherwise ConflictError.
    """
    from atlas.store import Atlas

    key = (recipe.location, recipe.generation, threading.get_ident())
    with _CACHE_LOCK:
        entry = HANDLE_CACHE.get(key)
        if entry is not None:
            HANDLE_CACHE.move_to_end(key)
    if entry is None:
        entry = [Atlas.open(recipe.location, mode="r"), set()]
        with _CACHE_LOCK:
            entry = HANDLE_CACHE.setdefault(key, entry)
            _trim_cache()
    store, checked = entry
    if recipe.dataset not in checked:
        try:
            ds_id, version, _ = _dataset_token(store, recipe.dataset)
        except DatasetNotFoundError:
            raise DatasetNotFoundError(
                f"dataset {recipe.dataset!r} of {recipe.location} was deleted after generation {recipe.generation}, "
                "which this lazy array reads"
            ) from None
        if (ds_id, version) != (recipe.dataset_id, recipe.dataset_version):
            raise ConflictError(
                f"dataset {recipe.dataset!r} of {recipe.location} changed after generation {recipe.generation}, "
                "which this lazy array reads; open it again"
            )
        checked.add(recipe.dataset)
    return store


def read_block(
    recipe: Recipe, array: str, start: tuple[int, ...], shape: tuple[int, ...], restore: tuple[str | None, str | None]
) -> np.ndarray:
    """Read one box of a stored variable (a dask task; runs in any process)."""
    out = store_for(recipe).open_dataset(recipe.dataset).read_array(array, start, shape)
    return restore_block(out, restore)


def _lazy_array(recipe: Recipe, spec: VarSpec) -> Any:
    import dask.array as da
    from dask.base import tokenize

    chunks = tuple(
        tuple(min(c, s - k) for k in range(0, s, c)) if s > 0 else (0,) for c, s in zip(spec.chunk_shape, spec.shape)
    )
    name = "atlas-" + tokenize(recipe, spec.array, spec.restore, spec.chunk_shape)
    dsk = {}
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        start = tuple(k * c for k, c in zip(idx, spec.chunk_shape))
        shape = tuple(chunks[a][k] for a, k in enumerate(idx))
        dsk[(name, *idx)] = (read_block, recipe, spec.array, start, shape, spec.restore)
    meta = np.empty((0,) * len(spec.shape), dtype=spec.dtype)
    return da.Array(dsk, name, chunks, dtype=spec.dtype, meta=meta)

def to_xarray(store: Atlas, name: str) -> Any:
    """Read dataset ``name`` back as an ``xarray.Dataset``.

    Variables stored in one chunk, 0-D variables and index coordinates are read
    eagerly (numpy); the others become dask arrays with one task per on-disk chunk,
    reading the committed snapshot this handle sees (see :class:`Recipe`).  A dataset
    with unflushed changes in this handle, or any dataset when dask is not
    installed, is read eagerly.
    """
    view = store.open_dataset(name)
    gattrs, specs = read_layout(view)
    recipe = recipe_for(store, name)
    if recipe is not None:
        try:
            import dask.array  # noqa: F401
        except ImportError:
            recipe = None
    variables = {}
    for spec in specs:
        if recipe is None or spec.single_chunk or spec.is_index:
            data = restore_block(view.read_array(spec.array), spec.restore)
        else:
            data = _lazy_array(recipe, spec)
        variables[spec.name] = make_variable(spec, data)
    return build_dataset(variables, [s.name for s in specs if s.is_coord], gattrs)


def _values_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fcmM":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def to_xarray_many(
    store: Atlas,
    names: Sequence[str],
    concat_dim: str = "dataset",
    *,
    join: str = "exact",
    layout: str = "stacked",
    sample_dim: str | None = None,
) -> Any:
    """Read many datasets of one schema as one ``xarray.Dataset``.

    With the default ``layout="stacked"`` every variable gains the leading
    dimension ``concat_dim``, whose coordinate holds the dataset names; the
    datasets' variables must agree in names, dims, dtypes and coordinate status.
    Attributes and encodings are those of the first dataset.

    * ``join="exact"`` (default): index coordinates (1-D coordinates named like
      their dimension) must be equal in every dataset and are kept once; every
      variable is read for all datasets at once through
      :meth:`atlas.Atlas.read_array_across_stacked`, lazily where it is.
    * ``join="outer"``: datasets of different lengths are padded to the union of
      their index coordinates with the missing value xarray uses (NaN, NaT; integer
      and bool variables that need padding become float64), as
      ``xr.concat(datasets, concat_dim, join="outer", coords="all")`` of the
      per-dataset :meth:`~atlas.Atlas.to_xarray` gives.  Lazy: one dask task (one
      bulk read) per :data:`atlas.xarray.many.BLOCK_DATASETS` datasets.

    ``layout="ragged"`` returns the CF contiguous ragged array representation
    instead: the datasets' ragged dimension (``sample_dim``, default the one
    dimension whose size differs) becomes the sample dimension ``obs``, variables
    on it are concatenated along it, the others are stacked along ``concat_dim``,
    and ``row_size(concat_dim)`` counts each dataset's observations (attribute
    ``sample_dimension="obs"``).  :func:`atlas.xarray.from_ragged` is the inverse.
    Lazy like ``join="outer"``.

    Raises
    ------
    SchemaMismatchError
        If a dataset's variables differ from the first one's (names, dims, shape,
        dtype, coordinate status) or, with ``join="exact"``, an index coordinate
        differs; the message names the first dataset that differs.
    """
    from atlas.xarray import many

    names = many.check_names(names)
    if not isinstance(concat_dim, str) or not concat_dim:
        raise InvalidArgumentError(f"concat_dim must be a non-empty str, got {concat_dim!r}")
    if layout not in ("stacked", "ragged"):
        raise InvalidArgumentError(f"layout must be 'stacked' or 'ragged', got {layout!r}")
    if join not in ("exact", "outer"):
        raise InvalidArgumentError(f"join must be 'exact' or 'outer', got {join!r}")
    if layout == "ragged":
        return many.read_ragged(store, names, concat_dim, sample_dim)
    if sample_dim is not None:
        raise InvalidArgumentError("sample_dim applies to layout='ragged' only")
    if join == "outer":
        for n in names[:1]:
            for spec in read_layout(store.open_dataset(n))[1]:
                if concat_dim == spec.name or concat_dim in spec.dims:
                    raise InvalidArgumentError(
                        f"concat_dim {concat_dim!r} is already a variable or dimension of the datasets"
                    )
        return many.read_outer(store, names, concat_dim)
    layouts = [read_layout(store.open_dataset(n)) for n in names]
    gattrs, first = layouts[0]
    expected = {s.name: s.signature() for s in first}
    for n, (_, specs) in zip(names[1:], layouts[1:]):
        got = {s.name: s.signature() for s in specs}
        if got != expected:
            raise SchemaMismatchError(_schema_difference(n, names[0], got, expected))
    for spec in first:
        if concat_dim == spec.name or concat_dim in spec.dims:
            raise InvalidArgumentError(f"concat_dim {concat_dim!r} is already a variable or dimension of the datasets")
    variables = {}
    for spec in first:
        if spec.is_index:
            values = store.read_array_across(spec.array, names)
            for n, v in zip(names[1:], values[1:]):
                if not _values_equal(v, values[0]):
                    raise SchemaMismatchError(
                        f"dataset {n!r} has other values of index coordinate {spec.name!r} than dataset "
                        f"{names[0]!r}; read the datasets one by one and combine them with xr.concat(join='outer')"
                    )
            variables[spec.name] = make_variable(spec, restore_block(values[0], spec.restore))
        else:
            data = restore_block(store.read_array_across_stacked(spec.array, names), spec.restore)
            variables[spec.name] = make_variable(spec, data, (concat_dim, *spec.dims))
    ds = build_dataset(variables, [s.name for s in first if s.is_coord], gattrs)
    return ds.assign_coords({concat_dim: (concat_dim, object_array(names, (len(names),)))})


def _schema_difference(name: str, first: str, have: dict[str, tuple], exp: dict[str, tuple]) -> str:
    for var in exp:
        if var not in have:
            return f"dataset {name!r} has no variable {var!r}, which dataset {first!r} has"
    for var in have:
        if var not in exp:
            return f"dataset {name!r} has variable {var!r}, which dataset {first!r} has not"
    fields = ("name", "array", "dims", "shape", "dtype", "coordinate", "original dtype")
    for var, sig in have.items():
        for label, a, b in zip(fields, sig, exp[var]):
            if a != b:
                return f"dataset {name!r} variable {var!r} has {label} {a!r}, dataset {first!r} has {b!r}"
    return f"dataset {name!r} differs from dataset {first!r}"  # pragma: no cover - unreachable
