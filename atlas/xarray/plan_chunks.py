"""The on-disk chunk shape of each variable :func:`atlas.xarray.plan.plan_dataset` plans:
``add_xr_dataset``'s ``chunks`` argument checked, then applied per variable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas import dtypes
from atlas.chunk_shape import default_chunks
from atlas.errors import InvalidArgumentError

if TYPE_CHECKING:
    from atlas.xarray.plan import VarPlan

__all__ = ["check_chunks_arg", "disk_chunks"]


class _PerVariable(dict):
    """``chunks={variable: chunk shape}``: a full on-disk chunk shape per named variable."""


_CHUNKS_FORMS = (
    "chunks takes an int, {dimension: size} (size a positive int, -1 or None) or "
    "{variable: [one size per dimension]}, not a mix of the two dict forms"
)


def _chunk_size(value: Any) -> int | bool | None:
    """A positive int, None for "whole dimension" (``-1``/None), or False when not a size."""
    if value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == -1):
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1:
        return int(value)
    return False


def check_chunks_arg(chunks: Any, all_dims: set[str], var_dims: Mapping[Any, tuple[Any, ...]] | None = None) -> Any:
    """``add_xr_dataset``'s ``chunks`` checked against the dataset's dimensions ``all_dims``
    and variables' dims ``var_dims``: None, an int, ``{dim: size or None}`` or a
    ``_PerVariable``; InvalidArgumentError naming what is wrong otherwise."""
    if chunks is None:
        return None
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, (bool, np.bool_)):
        if chunks < 1:
            raise InvalidArgumentError(f"chunks must be a positive int, got {chunks!r}")
        return int(chunks)
    if isinstance(chunks, Mapping):
        var_dims = var_dims or {}
        per_var = {k for k, v in chunks.items() if isinstance(v, (list, tuple))}
        if per_var and len(per_var) != len(chunks):
            raise InvalidArgumentError(f"chunks mixes per-variable lists and per-dimension sizes; {_CHUNKS_FORMS}")
        if per_var:
            shapes: _PerVariable = _PerVariable()
            for name, shape in chunks.items():
                if name not in var_dims:
                    raise InvalidArgumentError(
                        f"chunks names variable {name!r}, which the dataset does not have; {_CHUNKS_FORMS}"
                    )
                dims = var_dims[name]
                sizes = [_chunk_size(c) for c in shape]
                if len(shape) != len(dims) or any(c is False for c in sizes):
                    raise InvalidArgumentError(
                        f"chunks[{name!r}] must hold one positive int (or -1/None) per dimension {tuple(dims)}, "
                        f"got {shape!r}"
                    )
                shapes[name] = sizes
            return shapes
        out: dict[str, int | None] = {}
        for dim, size in chunks.items():
            if dim not in all_dims:
                raise InvalidArgumentError(
                    f"chunks names {dim!r}, which is not a dimension of the dataset; {_CHUNKS_FORMS}"
                )
            c = _chunk_size(size)
            if c is False:
                raise InvalidArgumentError(f"chunks[{dim!r}] must be a positive int, -1 or None, got {size!r}")
            out[dim] = c  # type: ignore[assignment]
        return out
    raise InvalidArgumentError(f"chunks must be None, a positive int or a dict, got {chunks!r}; {_CHUNKS_FORMS}")


def disk_chunks(plan: VarPlan, chunks: Any) -> tuple[int, ...]:
    """The on-disk chunk shape of planned variable ``plan`` for ``chunks`` (checked by
    :func:`check_chunks_arg`); sets ``plan.default_chunks``."""
    shape = plan.shape
    if not shape:
        plan.default_chunks = True
        return ()
    itemsize = 8 if plan.store_dtype == "string" else dtypes.storage_dtype(plan.store_dtype).itemsize
    default = default_chunks(shape, itemsize)  # default_chunk_shape of a tuple of int (VarPlan.shape)
    if chunks is None and plan.dask is None:
        # Every extent of the default lies in 1..max(1, size): the loop below would return it.
        plan.default_chunks = True
        return default
    dask_chunks = plan.dask.chunks if plan.dask is not None else None
    out = []
    per_var = chunks.get(plan.name) if isinstance(chunks, _PerVariable) else None
    for axis, (dim, size) in enumerate(zip(plan.dims, shape)):
        if per_var is not None:
            c = per_var[axis] if per_var[axis] is not None else size
        elif isinstance(chunks, int):
            c: int | None = chunks
        elif isinstance(chunks, dict) and not isinstance(chunks, _PerVariable) and dim in chunks:
            c = chunks[dim] if chunks[dim] is not None else size
        elif dask_chunks is not None:
            c = max((b for b in dask_chunks[axis]), default=1)
        else:
            c = default[axis]
        out.append(max(1, min(int(c or 1), size)) if size > 0 else 1)
    plan.default_chunks = tuple(out) == default
    return tuple(out)
