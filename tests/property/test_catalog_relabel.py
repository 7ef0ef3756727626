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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas import attributes
from atlas.catalog import Catalog, write_part
from atlas.catalog.relabel import Selection, relabel_parts
from atlas.metadata import ArrayMeta, DatasetMeta, Stats

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
    _relabel_and_compare(sets, codec, 7, first_id)


#: Ids and versions in every MessagePack unsigned width (fixint, uint8, 16, 32, 64) up to the format's int64 limit.
_WIDE = st.sampled_from((1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**40 + 3, 2**63 - 1))


def _relabel_and_compare(sets, codec, generation, first_id):
    """Relabel the kept rows of ``sets`` (``(datasets, kept)`` pairs) and compare with ``write_part``."""
    store, selections, rows = Store(), [], []
    next_id = first_id
    for datasets, kept in sets:
        ref = store.write(list(datasets.items()), max(d.version for d in datasets.values()) if datasets else 1, codec)
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


@st.composite
def wide_multi_block_parts(draw):
    """1-3 task parts of hundreds of rows (several 256-row blocks), copies of a few drawn datasets under
    distinct names, ids, versions and slots of every MessagePack width; a scattered subset of each kept."""
    sets = []
    for k in range(draw(st.integers(1, 3))):
        templates = list(draw(dataset_sets(max_size=4, first_id=1)).values())
        templates = templates or [DatasetMeta(id=1, version=1, attributes={}, arrays={})]
        n = draw(st.sampled_from((700, 257, 256, 255, 1, 0)))
        old_id, old_version = draw(_WIDE), draw(_WIDE)
        datasets = {}
        for i in range(n):
            t = templates[i % len(templates)]
            base = (k * 1000 + i + 1) * 8  # slot 0 is no slot
            arrays = {a: dataclasses.replace(m, slot=base + j) for j, (a, m) in enumerate(t.arrays.items())}
            datasets[f"{k}/{i:04d}"] = dataclasses.replace(t, id=min(old_id + i, 2**63 - 1),
                                                           version=old_version, arrays=arrays)  # fmt: skip
        names = sorted(datasets)
        kept = [nm for nm, keep in zip(names, draw(st.lists(st.booleans(), min_size=len(names),
                                                             max_size=len(names)))) if keep]  # fmt: skip
        kept = draw(st.permutations(kept))
        sets.append((datasets, kept))
    return sets


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(wide_multi_block_parts(), st.sampled_from(("zstd", "lz4", "none")), _WIDE, _WIDE)
def test_relabelled_multi_block_parts_with_wide_ids_and_versions(sets, codec, generation, first_id):
    """Rows spread over several blocks, old and new ids/versions of every width (heads of every size)."""
    first_id = min(first_id, 2**63 - 1 - 3000)
    _relabel_and_compare(sets, codec, generation, first_id)


def test_relabelled_part_of_more_than_65536_rows():
    """Row numbers and offsets past 16 bits, NaN stats extremes, two attribute kinds, kept rows in
    every block (a scattered two thirds of them), new ids past 2**32 and a version past 2**16."""
    n = 70_000
    rows = []
    for i in range(n):
        attrs = {"title": attributes.normalize(f"t{i}"), "n": attributes.normalize(i)} if i % 3 else {}
        lo = float(i) if i % 5 else float("nan")
        temp = ArrayMeta(slot=2 * i + 1, dtype="float32", dims=("x",), shape=(4,), chunk_shape=(4,), fill_value=None,
                         stats=Stats(4, i % 4, lo, float(i + 1)))  # fmt: skip
        rows.append((f"f{i:06d}", DatasetMeta(id=i + 1, version=3, attributes=attrs, arrays={"temp": temp})))
    kept = [name for i, (name, _) in enumerate(rows) if i % 3 != 1][::-1]
    datasets = dict(rows)
    _relabel_and_compare([(datasets, kept)], "zstd", 2**16 + 5, 2**33)
