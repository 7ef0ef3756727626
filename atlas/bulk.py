"""Bulk cross-dataset reads: the same box of one array from many datasets.

Every dataset's array of a given name lives in the same segment family, so a bulk
read plans the touched ``(dataset, chunk)`` pieces of all datasets at once and
fills one preallocated output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas import dtypes
from atlas.errors import InvalidArgumentError, SchemaMismatchError

if TYPE_CHECKING:
    from atlas.metadata import ArrayMeta
    from atlas.store import Atlas

__all__ = ["read_across", "read_across_stacked"]


def _names(names: Any) -> list[str]:
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise InvalidArgumentError(f"dataset names must be a sequence of str, got {names!r}")
    out = list(names)
    for n in out:
        if not isinstance(n, str):
            raise InvalidArgumentError(f"dataset names must be str, got {n!r}")
    return out


def read_across(
    store: Atlas, array: str, names: Sequence[str], start: Sequence[int] | None, shape: Sequence[int] | None
) -> list[np.ndarray | None]:
    """One result per dataset name: the box of ``array``, or None where the dataset
    does not define it."""
    names = _names(names)
    with store._lock:
        state = store._st
        for n in names:
            state.dataset(n)
        return [store.open_dataset(n).read_array(array, start, shape) for n in names]


def read_across_stacked(
    store: Atlas, array: str, names: Sequence[str], start: Sequence[int] | None, shape: Sequence[int] | None
) -> np.ndarray:
    """The box of ``array`` from every dataset stacked into one ``(N, *box)`` array.

    Every dataset must define the array with the same dtype and a shape that holds
    the box; the error names the first dataset that does not.
    """
    names = _names(names)
    if not names:
        raise InvalidArgumentError("read_array_across_stacked needs at least one dataset name")
    with store._lock:
        state = store._st
        metas: list[ArrayMeta] = []
        for n in names:
            meta = state.dataset(n).arrays.get(array)
            if meta is None:
                from atlas.errors import ArrayNotFoundError

                raise ArrayNotFoundError(f"dataset {n!r} has no array {array!r}")
            metas.append(meta)
        first = metas[0]
        for n, meta in zip(names, metas, strict=False):
            if meta.dtype != first.dtype:
                raise SchemaMismatchError(
                    f"dataset {n!r} array {array!r} has dtype {meta.dtype}, dataset {names[0]!r} has {first.dtype}"
                )
            if start is None and shape is None and meta.shape != first.shape:
                raise SchemaMismatchError(
                    f"dataset {n!r} array {array!r} has shape {list(meta.shape)}, "
                    f"dataset {names[0]!r} has {list(first.shape)}"
                )
        views = [store.open_dataset(n) for n in names]
        box = views[0]._selection(first, array, start, shape)[1]
        out = np.empty((len(names), *box), dtype=dtypes.result_dtype(first.dtype))
        for i, view in enumerate(views):
            out[i] = view.read_array(array, start, box)
        return out
