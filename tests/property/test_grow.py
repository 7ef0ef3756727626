"""Random define / append / resize / write / flush / reopen / discard / compact sequences against a numpy model.

Half the runs spill staged chunks to uncommitted segments after almost every write.
Each model array keeps its expected cells and a ``written`` mask: a never-written
cell of an integer array without a fill value reads as 0 but counts as null, so
the stats invariants (row count, null count, min and max of the valid cells) are
checked exactly after every step, shrinks included.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import atlas

#: name -> (dtype, fill value, numpy dtype)
KINDS = {
    "f": ("float32", None, np.float32),
    "i": ("int16", None, np.int16),  # never-written cells are tracked by a mask
    "k": ("int32", -1, np.int32),
}


@dataclass
class Model:
    values: np.ndarray
    written: np.ndarray
    fill: object

    def stats(self) -> tuple[int, int, object, object]:
        valid = self.written.copy()
        if self.values.dtype.kind == "f":
            valid &= ~np.isnan(self.values)
        if self.fill is not None:
            valid &= self.values != self.fill
        vals = self.values[valid]
        lo = vals.min().item() if vals.size else None
        hi = vals.max().item() if vals.size else None
        return self.values.size, int(self.values.size - valid.sum()), lo, hi


def _grown(model: Model, shape: tuple[int, ...]) -> Model:
    fill = model.fill if model.fill is not None else (np.nan if model.values.dtype.kind == "f" else 0)
    values = np.full(shape, fill, model.values.dtype)
    written = np.zeros(shape, bool)
    box = tuple(slice(0, min(a, b)) for a, b in zip(shape, model.values.shape))
    values[box] = model.values[box]
    written[box] = model.written[box]
    return Model(values, written, model.fill)


sizes = st.integers(0, 7)


class GrowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "s.atlas"
        self.models: dict[str, Model] = {}
        self.committed: dict[str, Model] = {}
        self.budget = 0

    @initialize(
        chunks=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=3, max_size=3),
        shapes=st.lists(st.tuples(sizes, sizes), min_size=3, max_size=3),
        spill=st.booleans(),
    )
    def define(self, chunks: list[tuple[int, int]], shapes: list[tuple[int, int]], spill: bool) -> None:
        # A tiny budget spills staged chunks to uncommitted segments after almost every write.
        self.budget = 64 if spill else 256 << 20
        self.store = atlas.Atlas.create(self.path, max_pending_bytes=self.budget)
        ds = self.store.create_dataset("d")
        for (name, (dtype, fill, np_dtype)), chunk, shape in zip(KINDS.items(), chunks, shapes):
            ds.define_array(name, dtype, ["t", "z"], shape, chunk_shape=chunk, fill_value=fill)
            base = fill if fill is not None else (np.nan if np_dtype is np.float32 else 0)
            self.models[name] = Model(np.full(shape, base, np_dtype), np.zeros(shape, bool), fill)
        self.store.flush()
        self.committed = copy.deepcopy(self.models)

    def _data(self, data: st.DataObject, name: str, shape: tuple[int, ...]) -> np.ndarray:
        dt = self.models[name].values.dtype
        cells = data.draw(st.lists(st.integers(-50, 50), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        out = np.array(cells, dt).reshape(shape)
        if dt.kind == "f" and out.size:
            out.reshape(-1)[0] = np.nan if data.draw(st.booleans()) else out.reshape(-1)[0]
        return out

    @rule(data=st.data(), name=st.sampled_from(sorted(KINDS)), axis=st.integers(0, 1), n=st.integers(1, 5))
    def append(self, data: st.DataObject, name: str, axis: int, n: int) -> None:
        m = self.models[name]
        shape = list(m.values.shape)
        shape[axis] = n
        block = self._data(data, name, tuple(shape))
        start = self.store["d"].append_array(name, block, axis=axis)
        assert start[axis] == m.values.shape[axis]
        grown = list(m.values.shape)
        grown[axis] += n
        new = _grown(m, tuple(grown))
        box = tuple(slice(s, s + b) for s, b in zip(start, block.shape))
        new.values[box] = block
        new.written[box] = True
        self.models[name] = new

    @rule(name=st.sampled_from(sorted(KINDS)), shape=st.tuples(sizes, sizes))
    def resize(self, name: str, shape: tuple[int, int]) -> None:
        m = self.models[name]
        shrinks = any(a < b for a, b in zip(shape, m.values.shape))
        if shrinks:
            try:
                self.store["d"].resize_array(name, shape)
            except atlas.errors.ShrinkError:
                pass
            else:
                raise AssertionError("a shrink was accepted without allow_shrink")
        self.store["d"].resize_array(name, shape, allow_shrink=True)
        self.models[name] = _grown(m, shape)

    @rule(data=st.data(), name=st.sampled_from(sorted(KINDS)))
    def write(self, data: st.DataObject, name: str) -> None:
        m = self.models[name]
        if 0 in m.values.shape:
            return
        start = tuple(data.draw(st.integers(0, s - 1)) for s in m.values.shape)
        box = tuple(data.draw(st.integers(1, s - a)) for a, s in zip(start, m.values.shape))
        block = self._data(data, name, box)
        self.store["d"].write_array(name, start, block)
        sel = tuple(slice(a, a + b) for a, b in zip(start, box))
        m.values[sel] = block
        m.written[sel] = True

    @rule()
    def flush(self) -> None:
        self.store.flush()
        self.committed = copy.deepcopy(self.models)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.committed = copy.deepcopy(self.models)
        self.store = atlas.Atlas.open(self.path, max_pending_bytes=self.budget)

    @rule()
    def discard(self) -> None:
        self.store.discard()
        self.models = copy.deepcopy(self.committed)

    @precondition(lambda self: hasattr(self, "store"))
    @rule()
    def compact(self) -> None:
        self.store.compact(grace_period=0)
        self.committed = copy.deepcopy(self.models)

    @invariant()
    def matches(self) -> None:
        if not hasattr(self, "store"):
            return
        ds = self.store["d"]
        for name, m in self.models.items():
            got = ds.read_array(name)
            assert got.shape == m.values.shape
            np.testing.assert_array_equal(got, m.values)
            stats = ds.array_stats(name)
            rows, nulls, lo, hi = m.stats()
            assert (stats["row_count"], stats["null_count"]) == (rows, nulls), (name, stats, m.stats())
            assert (None if stats["min"] is None else stats["min"].item()) == lo
            assert (None if stats["max"] is None else stats["max"].item()) == hi
            assert ds.array_meta(name)["shape"] == list(m.values.shape)

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
        self.tmp.cleanup()


TestGrowMachine = GrowMachine.TestCase
