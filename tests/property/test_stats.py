"""``array_stats`` against a numpy reference built from the model and its written mask.

``row_count`` is the number of cells; ``null_count`` counts cells that are NaN/NaT,
equal the fill value or were never written (exactly, per cell); ``min``/``max``
range over the other cells, are attained, and are None when there is none.  Stats
include pending writes and do not change across flush and reopen.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import atlas

from . import strategies as S
from .reference import ArrayModel, ArraySpec, assert_stats_match, define, is_float, null_mask, scalars_equal


def _as_comparable(value: Any, dtype: str) -> Any:
    if dtype == "timestamp_nanoseconds":
        return int(np.datetime64(value, "ns").view("i8"))
    if dtype in ("string", "bool"):
        return value
    if is_float(dtype):
        return float(value)
    return int(value)


def _check_invariants(stats: dict[str, Any], model: ArrayModel, when: str) -> None:
    """The reference comparison, plus the bounds invariants stated directly."""
    assert_stats_match(stats, model, when)
    valid = model.values[~null_mask(model)].reshape(-1).tolist()
    assert 0 <= stats["null_count"] <= stats["row_count"]
    if stats["null_count"] == stats["row_count"]:
        assert stats["min"] is None and stats["max"] is None, f"{when}: no valid cell, got {stats}"
        return
    lo, hi = _as_comparable(stats["min"], model.dtype), _as_comparable(stats["max"], model.dtype)
    values = [_as_comparable(v, model.dtype) for v in valid]
    assert lo <= hi, f"{when}: min {lo!r} > max {hi!r}"
    assert all(lo <= v <= hi for v in values), f"{when}: a valid cell lies outside [{lo!r}, {hi!r}]"
    assert any(v == lo for v in values) and any(v == hi for v in values), f"{when}: min/max not attained"


def _same_stats(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(scalars_equal(a[k], b[k]) if a[k] is not None else b[k] is None for k in a)


@given(
    spec=S.array_specs(),
    opts=S.store_options(),
    array=S.array_names(),
    data=st.data(),
)
def test_stats_match_reference(spec: ArraySpec, opts: S.StoreOptions, array: str, data: st.DataObject) -> None:
    """Stats of pending, flushed, partly re-written and reopened arrays match the reference."""
    first = data.draw(st.lists(S.writes(spec), max_size=3), label="writes before flush")
    second = data.draw(st.lists(S.writes(spec), max_size=2), label="writes after flush")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.atlas"
        store = atlas.Atlas.create(path, **opts.kwargs())
        ds = store.create_dataset("ds")
        model = define(ds, array, spec)
        _check_invariants(ds.array_stats(array), model, "unwritten")
        for start, values in first:
            ds.write_array(array, list(start), values)
            model.write(start, values)
        pending = ds.array_stats(array)
        _check_invariants(pending, model, "pending")
        store.flush()
        flushed = ds.array_stats(array)
        _check_invariants(flushed, model, "flushed")
        assert _same_stats(pending, flushed), f"stats changed at flush: {pending} -> {flushed}"
        for start, values in second:
            ds.write_array(array, list(start), values)
            model.write(start, values)
        pending = ds.array_stats(array)
        _check_invariants(pending, model, "pending over flushed")
        store.close()

        reopened = atlas.Atlas.open(path, mode="r")
        try:
            stored = reopened.open_dataset("ds").array_stats(array)
            _check_invariants(stored, model, "reopened")
            assert _same_stats(pending, stored), f"stats changed at close/reopen: {pending} -> {stored}"
        finally:
            reopened.close()


@given(
    spec=S.array_specs(max_side=5),
    opts=S.store_options(),
    data=st.data(),
)
def test_stats_after_full_overwrite(spec: ArraySpec, opts: S.StoreOptions, data: st.DataObject) -> None:
    """Writing every cell leaves only NaN/NaT/fill-equal cells null, and reads agree with stats."""
    full = data.draw(S.data_arrays(spec.dtype, spec.shape, spec.fill_value), label="full write")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.atlas"
        with atlas.Atlas.create(path, **opts.kwargs()) as store:
            ds = store.create_dataset("ds")
            model = define(ds, "x", spec)
            ds.write_array("x", [0] * len(spec.shape), full)
            model.write((0,) * len(spec.shape), full)
            assert model.written.all()
            _check_invariants(ds.array_stats("x"), model, "pending full write")
        reopened = atlas.Atlas.open(path, mode="r")
        try:
            _check_invariants(reopened.open_dataset("ds").array_stats("x"), model, "reopened")
        finally:
            reopened.close()
