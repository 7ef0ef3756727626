"""A part made by relabelling rows of other parts answers as the part written from those rows.

What an ingest's commit task does (``atlas.catalog.relabel``): chosen rows of its task
parts, new ids and the commit's generation as version, built column by column with
each record's head rewritten.  The reference is the part ``write_part`` lays out
from the same datasets with the same ids and version (what the commit task wrote
before, decoding every record).
"""

from __future__ import annotations

import dataclasses
import secrets

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from atlas.catalog import Catalog, write_part
from atlas.catalog.relabel import Selection, relabel_parts

from .catalog_strategies import canonical, dataset_sets
from .test_catalog_roundtrip import Store, _same_value

_FIELDS = ("slot", "dtype", "row_count", "null_count", "min", "max", "min_exact", "max_exact", "shape")


def assert_same_answers(got: Catalog, want: Catalog) -> None:
    """Names, records, attribute and stats columns, live slots: identical."""
    assert got.names() == want.names()
    assert {n: canonical(d) for n, d in got.items()} == {n: canonical(d) for n, d in want.items()}
    assert got.attribute_keys() == want.attribute_keys()
    for key in want.attribute_keys():
        (a, pa), (b, pb) = got.column(key), want.column(key)
        assert pa.tolist() == pb.tolist(), key
        assert _same_value(np.asarray(a)[pa.astype(bool)], np.asarray(b)[pb.astype(bool)]), key
    assert got.array_names() == want.array_names()
    for array in want.array_names():
        assert got.live_slots(array).tolist() == want.live_slots(array).tolist()
        for field in _FIELDS:
            (a, va), (b, vb) = got.stats_column(array, field), want.stats_column(array, field)
            assert va.tolist() == vb.tolist(), (array, field)
            assert _same_value(np.asarray(a)[va], np.asarray(b)[vb]), (array, field)


@st.composite
def task_parts(draw):
    """1-3 sets of datasets with names distinct across sets, and a subset of each set in some order."""
    sets = []
    for k in range(draw(st.integers(1, 3))):
        datasets = draw(dataset_sets(max_size=6, first_id=1 + 10 * k))
        kept = draw(st.permutations(sorted(datasets)))
        kept = kept[: draw(st.integers(0, len(kept)))]
        sets.append(({f"{k}/{n}": d for n, d in datasets.items()}, [f"{k}/{n}" for n in kept]))
    return sets


@given(task_parts(), st.sampled_from(("zstd", "lz4", "none")), st.integers(1, 2**40))
def test_relabelled_rows_answer_as_the_part_written_from_them(sets, codec, first_id):
    store, selections, rows = Store(), [], []
    generation, next_id = 7, first_id
    for datasets, kept in sets:
        ref = store.write(list(datasets.items()), 1, codec)
        ids = np.arange(next_id, next_id + len(kept), dtype=np.uint64)
        selections.append(Selection(ref, kept, ids, (0, 2**62)))
        rows += [(n, dataclasses.replace(datasets[n], id=int(i), version=generation)) for n, i in zip(kept, ids)]
        next_id += len(kept)
    token = secrets.token_bytes(16)
    _, buffers, ref = relabel_parts(selections, store.read_range, codec, generation, token)
    store.files[ref.path] = b"".join(bytes(b) for b in buffers)
    assert ref.size == len(store.files[ref.path]) and ref.rows == len(rows)
    got = Catalog([ref], store.read_range)
    got.verify()
    _, want_buffers, want_ref = write_part(rows, codec, generation, token)
    store.files[want_ref.path + ".want"] = b"".join(bytes(b) for b in want_buffers)
    want = Catalog([dataclasses.replace(want_ref, file=want_ref.file + ".want")], store.read_range)
    assert_same_answers(got, want)
