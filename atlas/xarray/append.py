"""Growing and replacing stored xarray datasets: ``append_dim=`` and ``mode="w"``.

Appending along a dimension grows every variable on that dimension together
(coordinates included) with :meth:`atlas.DatasetView.resize_array` and writes the
new block after the old cells; variables without the dimension must equal the
stored ones exactly.  The stored dataset's attributes (global and per variable)
and encodings are kept; those of the appended dataset are not compared.

Both operations are staged like any other change (one commit at the next flush),
and a failing one restores the handle's view of the dataset as it was before the
call.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.errors import DatasetNotFoundError, InvalidArgumentError, SchemaMismatchError
from atlas.xarray.conversions import K_VARS, vkey
from atlas.xarray.layout import VarSpec, read_layout
from atlas.xarray.plan import VarPlan, plan_dataset

if TYPE_CHECKING:
    from atlas.dataset import DatasetView
    from atlas.store import Atlas

__all__ = ["append_xr_dataset", "replace_xr_dataset", "staged_atomically"]


def staged_atomically(store: Atlas, name: str, arrays: list[str], action: Callable[[], Any]) -> Any:
    """Run ``action``; if it raises, put dataset ``name`` and the staged chunks of its
    ``arrays`` back as they were.

    Spilling is held off while ``action`` runs, so that every chunk it stages stays
    in memory where it can be rolled back.
    """
    state = store.session.state()
    existed = state.has_dataset(name)
    was_dirty = name in state.pending
    saved = copy.deepcopy(state.pending[name]) if was_dirty else None  # None: deleted by this handle
    base = state.dataset(name) if existed else None
    slots = {a: m.slot for a, m in base.arrays.items() if a in arrays} if base is not None else {}
    pending = {a: copy.deepcopy(state.engine(a).pending.get(s)) for a, s in slots.items()}
    budget = state.max_pending_bytes
    state.max_pending_bytes = math.inf  # type: ignore[assignment]
    try:
        return action()
    except BaseException:
        if was_dirty:
            state.pending[name] = saved
        else:  # back to the committed dataset (or to none)
            state.pending.pop(name, None)
        for array, slot in slots.items():
            state.engine(array).restore_pending(slot, pending[array])
        state.changes += 1
        raise
    finally:
        state.max_pending_bytes = budget
        state.maybe_spill()


def _stored_values(view: DatasetView, spec: VarSpec) -> np.ndarray:
    out = view.read_array(spec.array)
    return out.view("int64") if out.dtype.kind == "M" else out


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype == object or b.dtype == object:
        return a.tolist() == b.tolist()
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def _check(vp: VarPlan, spec: VarSpec, dim: str, name: str) -> int | None:
    """The axis of ``dim`` in the variable (None without it); SchemaMismatchError when it cannot append."""
    where = f"dataset {name!r} variable {vp.name!r}"
    if vp.dims != spec.dims:
        raise SchemaMismatchError(f"{where}: appended dims {list(vp.dims)}, stored dims {list(spec.dims)}")
    if vp.store_dtype != spec.store_dtype:
        raise SchemaMismatchError(f"{where}: appended dtype {vp.store_dtype}, stored dtype {spec.store_dtype}")
    objects = vp.variable.dtype.kind == "O" and (spec.restore[0] or "|O") == "|O"
    if (vp.restore_dtype or None) != (spec.restore[0] or None) and not _same_text(vp, spec) and not objects:
        raise SchemaMismatchError(
            f"{where}: appended numpy dtype {vp.restore_dtype or vp.variable.dtype}, stored {spec.restore[0]}"
        )
    if dim not in vp.dims:
        return None
    axis = vp.dims.index(dim)
    for a, (n, s) in enumerate(zip(vp.shape, spec.shape)):
        if a != axis and n != s:
            raise SchemaMismatchError(
                f"{where}: appended extent {n} along {vp.dims[a]!r}, stored extent {s}; only {dim!r} can grow"
            )
    return axis


def _same_text(vp: VarPlan, spec: VarSpec) -> bool:
    """Fixed-width text of another width (``<U3`` then ``<U5``): stored as strings, widened on read."""
    a, b = vp.restore_dtype, spec.restore[0]
    return bool(a and b and a[1:2] == b[1:2] and a[1:2] in "US")


def append_xr_dataset(store: Atlas, ds: Any, name: str, append_dim: str, chunks: Any = None) -> DatasetView:
    """Append ``ds`` to stored dataset ``name`` along dimension ``append_dim`` (staged)."""
    from atlas.xarray.write import write_blocks

    if not isinstance(append_dim, str) or not append_dim:
        raise InvalidArgumentError(f"append_dim must be a non-empty str, got {append_dim!r}")
    if append_dim not in ds.dims:
        raise InvalidArgumentError(f"append_dim {append_dim!r} is not a dimension of the appended dataset")
    try:
        view = store.open_dataset(name)
    except DatasetNotFoundError:
        raise DatasetNotFoundError(
            f"dataset {name!r} does not exist; write it first (without append_dim) to append to it"
        ) from None
    _, specs = read_layout(view)
    by_name = {s.name: s for s in specs}
    plan = plan_dataset(ds, chunks)
    have = {vp.name for vp in plan.variables}
    for s in specs:
        if s.name not in have:
            raise SchemaMismatchError(f"dataset {name!r} has variable {s.name!r}, which the appended dataset lacks")
    if not any(append_dim in s.dims for s in specs):
        raise SchemaMismatchError(f"dataset {name!r} has no variable on dimension {append_dim!r}")
    growing: list[tuple[VarPlan, VarSpec, int]] = []
    for vp in plan.variables:
        spec = by_name.get(vp.name)
        if spec is None:
            raise SchemaMismatchError(f"the appended dataset has variable {vp.name!r}, which dataset {name!r} lacks")
        axis = _check(vp, spec, append_dim, name)
        if axis is None:
            from atlas.xarray.write import to_storage

            new = to_storage(np.asarray(vp.variable.values), vp, spec.restore[1])
            if not _equal(new.view("int64") if new.dtype.kind == "M" else new, _stored_values(view, spec)):
                raise SchemaMismatchError(
                    f"variable {vp.name!r} has no dimension {append_dim!r} and its values differ from those "
                    f"stored in dataset {name!r}"
                )
            continue
        vp.chunk_shape = spec.chunk_shape
        growing.append((vp, spec, axis))
    names = list(view.get_attribute(K_VARS, []))

    def run() -> None:
        for vp, spec, axis in growing:
            offset = spec.shape[axis]
            shape = tuple(s + (vp.shape[a] if a == axis else 0) for a, s in enumerate(spec.shape))
            view.resize_array(spec.array, shape)
            enc = spec.restore[1]
            write_blocks(view, vp, enc, axis, offset)
            if vp.object_kind is not None and (vp.object_kind == "bytes") != (enc is not None):
                stored = "bytes" if enc is not None else "str"
                raise SchemaMismatchError(
                    f"dataset {name!r} variable {vp.name!r}: appended {vp.object_kind} objects, stored {stored}"
                )
            if _same_text(vp, spec) and vp.name in names:
                wider = max(vp.restore_dtype, spec.restore[0], key=lambda d: np.dtype(d).itemsize)
                view.set_attribute(vkey(names.index(vp.name), "dtype"), wider, "string")

    staged_atomically(store, name, [s.array for _, s, _ in growing], run)
    return view


def replace_xr_dataset(store: Atlas, name: str, add: Callable[[], DatasetView]) -> DatasetView:
    """Delete dataset ``name`` and run ``add`` (which writes it again), as one staged change."""
    state = store.session.state()
    arrays = list(state.dataset(name).arrays)
    return staged_atomically(store, name, arrays, lambda: (store.delete_dataset(name), add())[1])
