"""A rule-based state machine: random sequences of store operations against a dict model.

The model is ``{dataset: DatasetModel}`` for the handle's working view plus a copy
of the last committed state, which ``discard`` reverts to.  Datasets and arrays
are drawn from small name pools so that names recur: arrays of the same name in
different datasets share one file family, and deleted names get re-created.
"""

from __future__ import annotations

import copy
import inspect
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import atlas
from atlas import errors

from . import strategies as S
from .reference import ArrayModel, ArraySpec, assert_cells_equal, assert_stats_match, define, fill_scalar, scalars_equal

DATASET_POOL = ("d0", "温度", "a b", "x%2F", "é", "e\u0301")
ARRAY_POOL = ("x", "温度", "a#b", "Temp", "temp", "x%2F")


class _Boom(Exception):
    """Raised inside a ``with store:`` block to make it discard."""


@dataclass
class DatasetModel:
    """Expected arrays and attributes (attribute values as ``get_attribute`` returns them)."""

    arrays: dict[str, ArrayModel] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


def attribute_equal(got: Any, expected: Any) -> bool:
    """Type- and value-exact attribute equality (NaN equals NaN)."""
    if isinstance(expected, np.ndarray):
        if not (isinstance(got, np.ndarray) and got.dtype == expected.dtype and got.shape == expected.shape):
            return False
        if expected.dtype.kind == "M":  # NaT != NaT: compare the int64 patterns
            return bool(np.array_equal(got.view("i8"), expected.view("i8")))
        return bool(np.array_equal(got, expected, equal_nan=expected.dtype.kind == "f"))
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(attribute_equal, got, expected))
    return type(got) is type(expected) and scalars_equal(got, expected)


def check_store(store: atlas.Atlas, model: dict[str, DatasetModel], when: str) -> None:
    """Assert that ``store`` shows exactly ``model``: names, schemas, cells, stats, attributes."""
    assert store.list_datasets() == sorted(model), f"{when}: datasets {store.list_datasets()} != {sorted(model)}"
    expected_arrays = sorted({a for ds in model.values() for a in ds.arrays})
    assert store.list_arrays() == expected_arrays, f"{when}: arrays {store.list_arrays()} != {expected_arrays}"
    for name in DATASET_POOL:
        assert store.dataset_exists(name) == (name in model), f"{when}: dataset_exists({name!r})"
    for name, ds_model in model.items():
        ds = store.open_dataset(name)
        assert ds.list_arrays() == sorted(ds_model.arrays), f"{when}: arrays of {name!r}"
        for array, arr in ds_model.arrays.items():
            where = f"{when}: {name!r}/{array!r}"
            meta = ds.array_meta(array)
            assert meta["dtype"] == arr.dtype and meta["shape"] == list(arr.shape), f"{where}: meta {meta}"
            assert meta["dimension_names"] == list(arr.dims), f"{where}: meta {meta}"
            if arr.chunk_shape is not None:
                assert meta["chunk_shape"] == list(arr.chunk_shape), f"{where}: meta {meta}"
            if arr.fill_value is None:
                assert meta["fill_value"] is None, f"{where}: meta {meta}"
            else:
                assert scalars_equal(meta["fill_value"], fill_scalar(arr.dtype, arr.fill_value)), f"{where}: {meta}"
            assert_cells_equal(ds.read_array(array), arr.values, arr.dtype, where)
            assert_stats_match(ds.array_stats(array), arr, where)
        for missing in ARRAY_POOL:
            if missing not in ds_model.arrays:
                assert ds.read_array(missing) is None, f"{when}: {name!r}/{missing!r} should not exist"
        attrs = ds.attributes()
        assert list(attrs) == list(ds_model.attributes), f"{when}: attribute keys of {name!r}: {list(attrs)}"
        for key, expected in ds_model.attributes.items():
            assert attribute_equal(attrs[key], expected), f"{when}: {name!r} attribute {key!r}: {attrs[key]!r}"
            assert attribute_equal(ds.get_attribute(key), expected), f"{when}: get_attribute({key!r})"


class StoreMachine(RuleBasedStateMachine):
    """Drives one writable handle through creates, deletes, writes, flushes, reopens and discards."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.path = Path(self._tmp.name) / "store.atlas"
        self.store: atlas.Atlas | None = None
        self.working: dict[str, DatasetModel] = {}
        self.committed: dict[str, DatasetModel] = {}

    # -- helpers -----------------------------------------------------------------------------

    @property
    def handle(self) -> atlas.Atlas:
        assert self.store is not None
        return self.store

    def _commit_model(self) -> None:
        self.committed = copy.deepcopy(self.working)

    def _array_pairs(self) -> list[tuple[str, str]]:
        return [(d, a) for d in sorted(self.working) for a in sorted(self.working[d].arrays)]

    # -- rules -------------------------------------------------------------------------------

    @initialize(
        opts=S.store_options(),
        names=st.lists(st.sampled_from(DATASET_POOL), min_size=1, max_size=2, unique=True),
        arrays=st.lists(st.tuples(st.sampled_from(ARRAY_POOL), S.array_specs(max_side=4)), max_size=3),
    )
    def create_store(self, opts: S.StoreOptions, names: list[str], arrays: list[tuple[str, ArraySpec]]) -> None:
        """A new store with a dataset or two; arrays go to the first dataset, or to the second
        when the first already has that name (same name in two datasets: a shared family)."""
        self.store = atlas.Atlas.create(self.path, **opts.kwargs())
        for name in names:
            self.handle.create_dataset(name)
            self.working[name] = DatasetModel()
        for array, spec in arrays:
            for name in names:
                if array not in self.working[name].arrays:
                    self._define(name, array, spec)
                    break

    def _define(self, name: str, array: str, spec: ArraySpec) -> None:
        ds = self.handle.open_dataset(name)
        if array in self.working[name].arrays:
            with pytest.raises(errors.ArrayExistsError):
                define(ds, array, spec)
            return
        self.working[name].arrays[array] = define(ds, array, spec)

    @precondition(lambda self: len(self.working) < len(DATASET_POOL))
    @rule(data=st.data())
    def create_dataset(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from([n for n in DATASET_POOL if n not in self.working]), label="dataset")
        view = self.handle.create_dataset(name)
        assert view.name == name
        self.working[name] = DatasetModel()
        with pytest.raises(errors.DatasetExistsError):
            self.handle.create_dataset(name)

    @precondition(lambda self: bool(self.working))
    @rule(data=st.data())
    def delete_dataset(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.working)), label="dataset")
        self.handle.delete_dataset(name)
        del self.working[name]
        for missing in (n for n in DATASET_POOL if n not in self.working):
            with pytest.raises(KeyError):
                self.handle.delete_dataset(missing)
            with pytest.raises(KeyError):
                self.handle.open_dataset(missing)
            break

    @precondition(lambda self: bool(self.working))
    @rule(data=st.data(), array=st.sampled_from(ARRAY_POOL), spec=S.array_specs(max_side=4))
    def define_array(self, data: st.DataObject, array: str, spec: ArraySpec) -> None:
        self._define(data.draw(st.sampled_from(sorted(self.working)), label="dataset"), array, spec)

    @precondition(lambda self: bool(self._array_pairs()))
    @rule(data=st.data())
    def delete_array(self, data: st.DataObject) -> None:
        name, array = data.draw(st.sampled_from(self._array_pairs()), label="array")
        ds = self.handle.open_dataset(name)
        ds.delete_array(array)
        del self.working[name].arrays[array]
        with pytest.raises(KeyError):
            ds.delete_array(array)

    def _write(self, data: st.DataObject, name: str, array: str, whole: bool) -> None:
        model = self.working[name].arrays[array]
        spec = ArraySpec(model.dtype, model.shape, model.chunk_shape, model.fill_value)
        if whole:
            start = (0,) * len(model.shape)
            values = data.draw(S.data_arrays(model.dtype, model.shape, model.fill_value), label="whole write")
        else:
            start, values = data.draw(S.writes(spec), label="write")
        self.handle.open_dataset(name).write_array(array, list(start), values)
        model.write(start, values)

    @precondition(lambda self: bool(self._array_pairs()))
    @rule(data=st.data(), count=st.integers(1, 3))
    def write_array(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            name, array = data.draw(st.sampled_from(self._array_pairs()), label="array")
            self._write(data, name, array, whole=False)

    @precondition(lambda self: bool(self._array_pairs()))
    @rule(data=st.data())
    def write_whole_array(self, data: st.DataObject) -> None:
        name, array = data.draw(st.sampled_from(self._array_pairs()), label="array")
        self._write(data, name, array, whole=True)

    def _ranked_pairs(self) -> list[tuple[str, str]]:
        return [(d, a) for d, a in self._array_pairs() if self.working[d].arrays[a].shape]

    @precondition(lambda self: bool(self._ranked_pairs()))
    @rule(data=st.data())
    def write_out_of_bounds(self, data: st.DataObject) -> None:
        """A write that leaves the array fails with SelectionError and changes nothing."""
        name, array = data.draw(st.sampled_from(self._ranked_pairs()), label="array")
        model = self.working[name].arrays[array]
        values = np.empty(tuple(s + 1 for s in model.shape), dtype=model.values.dtype)
        values[...] = fill_scalar(model.dtype, None)
        with pytest.raises(errors.SelectionError):
            self.handle.open_dataset(name).write_array(array, [0] * len(model.shape), values)

    @precondition(lambda self: bool(self.working))
    @rule(data=st.data(), key=S.attribute_keys(), case=S.attribute_cases(), delete=st.booleans())
    def set_or_delete_attribute(self, data: st.DataObject, key: str, case: S.AttributeCase, delete: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.working)), label="dataset")
        ds = self.handle.open_dataset(name)
        attributes = self.working[name].attributes
        if delete and key in attributes:
            ds.delete_attribute(key)
            del attributes[key]
            with pytest.raises(KeyError):
                ds.delete_attribute(key)
            return
        ds.set_attribute(key, case.value, dtype=case.dtype)
        attributes[key] = copy.deepcopy(case.expected)

    @rule(
        op=st.sampled_from(
            ("flush", "flush", "reopen", "discard", "compact", "check_reader", "refresh", "with_ok", "with_error")
        ),
        sweep=st.booleans(),
    )
    def lifecycle(self, op: str, sweep: bool) -> None:
        """Flush, close and reopen, discard, compact, refresh, leave a ``with`` block
        (normally or by an exception), or check a fresh read-only handle."""
        if op == "compact":
            self._compact(sweep)
        else:
            getattr(self, f"_{op}")()

    def _flush(self) -> None:
        self.handle.flush()
        assert not self.handle.has_pending_changes
        self._commit_model()

    def _reopen(self) -> None:
        self.handle.close()
        self._commit_model()
        self.store = atlas.Atlas.open(self.path, mode="r+")

    def _refresh(self) -> None:
        # Nobody else writes: refreshing keeps the snapshot and every pending change.
        self.handle.refresh()

    def _with_ok(self) -> None:
        with self.handle as same:
            assert same is self.handle
        self._commit_model()
        self.store = atlas.Atlas.open(self.path, mode="r+")

    def _with_error(self) -> None:
        with pytest.raises(_Boom), self.handle:
            raise _Boom
        with pytest.raises(errors.StoreClosedError):
            self.handle.list_datasets()
        self.working = copy.deepcopy(self.committed)
        self.store = atlas.Atlas.open(self.path, mode="r+")

    def _discard(self) -> None:
        self.handle.discard()
        assert not self.handle.has_pending_changes
        self.working = copy.deepcopy(self.committed)

    def _compact(self, sweep: bool) -> None:
        compact = getattr(self.handle, "compact", None)
        if compact is None:
            return
        if sweep and "grace_period" in inspect.signature(compact).parameters:
            compact(grace_period=0.0)
        else:
            compact()
        assert not self.handle.has_pending_changes
        self._commit_model()

    def _check_reader(self) -> None:
        """A fresh read-only handle sees exactly the last committed state."""
        reader = atlas.Atlas.open(self.path, mode="r")
        try:
            check_store(reader, self.committed, "read-only handle")
            assert reader.read_only
            with pytest.raises(errors.ReadOnlyError):
                reader.create_dataset("new")
            for name in self.committed:
                with pytest.raises(errors.ReadOnlyError):
                    reader.open_dataset(name).set_attribute("k", 1)
                break
        finally:
            reader.close()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        if self.store is not None:
            check_store(self.store, self.working, "working view")

    def teardown(self) -> None:
        try:
            if self.store is not None:
                self.store.close()
                self._commit_model()
                reopened = atlas.Atlas.open(self.path, mode="r")
                try:
                    check_store(reopened, self.committed, "after final close")
                finally:
                    reopened.close()
        finally:
            self._tmp.cleanup()


TestStoreMachine = StoreMachine.TestCase
# Steps are cheap and random programs need volume: run more examples than the profile's
# default (ci: 3 x 40), scaling with whichever profile is loaded.
TestStoreMachine.settings = settings(max_examples=3 * settings.default.max_examples)
