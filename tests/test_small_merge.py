"""A commit that takes in a few rows of the newest parts writes their records again.

:func:`atlas.txn.parts.part_with_merge` merges the newest parts column by column
(:func:`atlas.catalog.merge_parts`) unless they hold at most ``SMALL_MERGE_ROWS``
rows; then it decodes their records and writes them with the commit's rows in one
part.  Both ways must leave the same catalogue: random one-dataset commits
(creations, attribute changes, array writes, deletions, re-creations) are applied to
two stores, one with the record path and one with the column path only, and the
stores are compared after every commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atlas
import atlas.txn.parts as parts_module

NAMES = [f"d{i}" for i in range(6)]

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "attr", "write", "delete"]),
        st.sampled_from(NAMES),
        st.integers(-5, 5),
    ),
    min_size=1,
    max_size=30,
)


def _apply(store: atlas.Atlas, op: str, name: str, value: int) -> None:
    exists = name in store.list_datasets()
    if op == "create" and not exists:
        ds = store.create_dataset(name)
        ds.define_array("temp", "float32", ["depth"], [4])
        ds.write_array("temp", [0], np.arange(4, dtype=np.float32) + value)
        ds.set_attribute("platform", f"p{value % 3}")
        ds.set_attribute("depth", float(value))
    elif op == "attr" and exists:
        store.open_dataset(name).set_attribute("depth" if value % 2 else "extra", value)
    elif op == "write" and exists:
        store.open_dataset(name).write_array("temp", [1], np.array([value * 1.5], dtype=np.float32))
    elif op == "delete" and exists:
        store.delete_dataset(name)


def _state(store: atlas.Atlas) -> tuple[list[int], pd.DataFrame, dict[str, object]]:
    names = store.list_datasets()
    records = {
        n: (ds.attributes(), {a: ds.read_array(a).tolist() for a in ds.list_arrays()})
        for n in names
        for ds in [store.open_dataset(n)]
    }
    frame = store.catalog()
    return [p.rows for p in store.session.state().base.parts], frame[sorted(frame.columns)], records


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_small_merges_leave_the_catalogue_a_column_merge_leaves(tmp_path_factory, monkeypatch, ops):
    root = Path(tmp_path_factory.mktemp("small"))
    stores = {}
    for label in ("records", "columns"):
        stores[label] = atlas.Atlas.create(root / label)
    try:
        for op, name, value in ops:
            got = {}
            for label, store in stores.items():
                monkeypatch.setattr(parts_module, "SMALL_MERGE_ROWS", 256 if label == "records" else 0)
                _apply(store, op, name, value)
                store.flush()
                got[label] = _state(store)
            (rows_a, frame_a, records_a), (rows_b, frame_b, records_b) = got["records"], got["columns"]
            assert rows_a == rows_b
            pd.testing.assert_frame_equal(frame_a, frame_b)
            assert records_a == records_b
        for store in stores.values():
            assert store.verify() == []
    finally:
        for store in stores.values():
            store.close()
