"""The commit task's part is made from task parts written by other processes: damage is refused.

A task part (``docs/dask.md``) is an ordinary catalogue part; these tests write one,
forge it where a worker could (a record's head, a record's arrays, a slot, a missing
or deleted row) and check that relabelling its rows (``atlas.catalog.relabel``, what
the commit task runs) raises ``CorruptStoreError`` naming what is wrong, and that an
ingest whose task part is forged commits nothing.
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

import atlas
from atlas.catalog import PartRef, write_part
from atlas.catalog.build import BLOCK_ROWS, record_block
from atlas.catalog.layout import PartBuilder
from atlas.catalog.part import PartReader
from atlas.catalog.relabel import Selection, relabel_parts
from atlas.errors import CorruptStoreError
from atlas.metadata import ArrayMeta, DatasetMeta, Stats

ROOT = Path(__file__).resolve().parents[1]


class Store:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self.files[path][offset : offset + length]

    def put(self, ref: PartRef, buffers) -> PartRef:
        self.files[ref.path] = b"".join(bytes(b) for b in buffers)
        return ref


def dataset(i: int, slot: int) -> DatasetMeta:
    temp = ArrayMeta(slot=slot, dtype="float32", dims=("depth",), shape=(4,), chunk_shape=(4,),
                     stats=Stats(4, 0, -1.5, float(i)))  # fmt: skip
    attrs = {"platform": {"t": "string", "v": f"p{i}"}, "cycle": {"t": "int64", "v": i}}
    return DatasetMeta(id=i + 1, version=1, attributes=attrs, arrays={"temp": temp})


def task_part(store: Store, rows, edit=None) -> PartRef:
    """A task part of ``rows``; ``edit(row, record bytes) -> bytes`` forges records (keys and columns kept)."""
    _, buffers, ref = write_part(rows, "zstd", 1, secrets.token_bytes(16))
    store.put(ref, buffers)
    return ref if edit is None else task_part_from(store, ref, edit)


def relabel(store: Store, ref: PartRef, names, slots=(100, 200)):
    sel = Selection(ref, names, np.arange(50, 50 + len(names), dtype=np.uint64), slots)
    return relabel_parts([sel], store.read_range, "zstd", 9, secrets.token_bytes(16))


ROWS = [(f"ds{i}", dataset(i, 100 + i)) for i in range(5)]


def test_an_honest_task_part_is_relabelled():
    store = Store()
    ref = task_part(store, ROWS)
    _, buffers, out = relabel(store, ref, ["ds3", "ds1"])
    store.put(out, buffers)
    reader = PartReader(out, store.read_range)
    reader.verify()
    assert reader.names() == ["ds1", "ds3"]
    assert [reader.record(r, reader.block(0)).id for r in range(2)] == [51, 50]
    assert {reader.key(r)[1] for r in range(2)} == {9}


def _set(record: bytes, change) -> bytes:
    obj = msgpack.unpackb(record, raw=False)
    change(obj)
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda row, rec: b"\x85" + rec[1:], "record head is damaged"),
        (lambda row, rec: rec.replace(b"\xa7version", b"\xa7versioX", 1), "record head is damaged"),
        (lambda row, rec: _set(rec, lambda o: o.update(id=77)), "disagrees with the key columns"),
        (lambda row, rec: _set(rec, lambda o: o["arrays"]["temp"].update(slot=150)), "disagrees with the schema"),
        (lambda row, rec: _set(rec, lambda o: o["arrays"]["temp"].update(shape=[5])), "disagrees with the schema"),
        (lambda row, rec: _set(rec, lambda o: o["arrays"]["temp"].update(dtype="float64")), "disagrees with the sch"),
        (lambda row, rec: _set(rec, lambda o: o["arrays"]["temp"]["stats"].update(row_count=3)), "stats columns"),
        (lambda row, rec: _set(rec, lambda o: o["arrays"].update(psal=o["arrays"]["temp"])), "holds 2 arrays"),
        (lambda row, rec: rec + b"\xc0", "bytes after the arrays"),
    ],
    ids=["map-header", "version-key", "id", "slot", "shape", "dtype", "stats", "extra-array", "trailing"],
)
def test_a_forged_record_is_refused(edit, message):
    store = Store()
    ref = task_part(store, ROWS, lambda row, rec: edit(row, rec) if row == 2 else rec)
    relabel(store, ref, ["ds1"])  # the forged row is not committed: nothing to refuse
    with pytest.raises(CorruptStoreError, match=message) as info:
        relabel(store, ref, ["ds1", "ds2"])
    assert ref.file in str(info.value)


def test_a_slot_outside_the_tasks_range_is_refused():
    store = Store()
    ref = task_part(store, [*ROWS, ("far", dataset(9, 250))])
    relabel(store, ref, ["ds0"])
    with pytest.raises(CorruptStoreError, match=r"slot outside the task's range 100\.\.200"):
        relabel(store, ref, ["ds0", "far"])


def test_a_missing_name_is_refused():
    store = Store()
    ref = task_part(store, ROWS)
    with pytest.raises(CorruptStoreError, match="holds no dataset 'nope'"):
        relabel(store, ref, ["ds0", "nope"])


def test_a_tombstone_is_refused():
    store = Store()
    ref = task_part(store, [*ROWS, ("gone", None)])
    with pytest.raises(CorruptStoreError, match="'gone' is a tombstone"):
        relabel(store, ref, ["gone"])


def test_a_name_in_two_task_parts_is_refused():
    store = Store()
    a, b = task_part(store, ROWS[:2]), task_part(store, ROWS[1:3])
    sels = [Selection(a, ["ds1"], np.array([1], dtype=np.uint64), (100, 200)),
            Selection(b, ["ds1"], np.array([2], dtype=np.uint64), (100, 200))]  # fmt: skip
    with pytest.raises(CorruptStoreError, match="'ds1' is in two"):
        relabel_parts(sels, store.read_range, "zstd", 9, secrets.token_bytes(16))


def test_an_ingest_whose_task_part_is_forged_commits_nothing(tmp_path, monkeypatch):
    """The worker's record moves a slot (the columns stay in range): the commit task refuses it."""
    pytest.importorskip("xarray")
    sys.path.insert(0, str(ROOT / "tests" / "workers"))
    import functools

    import ingest_sources

    from atlas.distributed.runner import Runner

    path = tmp_path / "f.atlas"
    atlas.Atlas.create(path).close()
    original = Runner.call

    def call(self, fn, job):
        item = job.inputs[0]
        file = path / item.part.path
        store = Store()
        store.files[item.part.path] = file.read_bytes()
        bump = lambda row, rec: _set(rec, lambda o: [a.update(slot=a["slot"] + 1) for a in o["arrays"].values()])  # noqa: E731
        forged = task_part_from(store, item.part, bump)
        (path / forged.path).write_bytes(store.files[forged.path])
        job = dataclasses.replace(job, inputs=(dataclasses.replace(item, part=forged), *job.inputs[1:]))
        return original(self, fn, job)

    monkeypatch.setattr(Runner, "call", call)
    sources = [functools.partial(ingest_sources.big, f"s{i}", i, 20) for i in range(2)]
    with pytest.raises(CorruptStoreError, match="disagrees with the schema columns"):
        atlas.ingest(sources, path, workers=1, batch=2)
    with atlas.Atlas.open(path, "r") as store:
        assert store.generation == 0 and store.list_datasets() == []


def task_part_from(store: Store, ref: PartRef, edit=None, column: str | None = None, change=None) -> PartRef:
    """``ref`` (in ``store``) forged: each record by ``edit(row, record bytes)``, and/or its
    fixed-width column ``column`` by ``change(values)`` in place."""
    reader = PartReader(ref, store.read_range)
    index = reader.index
    builder = PartBuilder(1, secrets.token_bytes(16), "zstd")
    for name in index.columns:
        if name == column:
            values = reader.fixed(name).copy()
            change(values)
            builder.add(name, values, values.dtype.itemsize)
        elif name not in ("records", "record_blocks"):
            builder.add(name, reader.column_bytes(name, None))
    records = []
    for k in range(reader.block_table().shape[0]):
        offsets, data = reader.block(k)
        records += [bytes(data[offsets[i] : offsets[i + 1]]) for i in range(len(offsets) - 1)]
    if edit is not None:
        records = [edit(row, record) for row, record in enumerate(records)]
    blocks = [record_block(records[b : b + BLOCK_ROWS]) for b in range(0, len(records), BLOCK_ROWS)]
    builder.add("record_blocks", builder.add_blocks("records", blocks), 8)
    parts, size, offset, length, digest = builder.finish(index.rows, BLOCK_ROWS, index.attributes, index.arrays)
    forged = PartRef("000000000001-" + secrets.token_hex(8) + ".cat", size, offset, length, digest, ref.rows, 1, 1)
    return store.put(forged, parts)


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o.update(attributes={"platform": {"t": "no-such-type", "v": 1}}),
        lambda o: o.update(attributes={"platform": 5}),
        lambda o: o.update(attributes=[1, 2]),
        lambda o: o["arrays"]["temp"]["stats"].update(min="not a float"),
        lambda o: o["arrays"]["temp"]["stats"].update(max=[1.0]),
    ],
    ids=["attribute-type", "attribute-form", "attributes-not-a-map", "stats-min", "stats-max"],
)
def test_a_record_the_reader_cannot_decode_is_refused(change):
    """Parts of a record the columns do not hold (its attributes, its stats extremes) must still decode:
    committed, the dataset could not be opened and ``Atlas.verify`` would report the store damaged."""
    store = Store()
    ref = task_part(store, ROWS, lambda row, rec: _set(rec, change) if row == 2 else rec)
    relabel(store, ref, ["ds1"])
    with pytest.raises(CorruptStoreError, match=r"row 2: dataset record does not follow the format"):
        relabel(store, ref, ["ds1", "ds2"])


def _key(o, key):
    o["attributes"][key] = o["attributes"].pop("platform")


#: Changes of a record's attributes after a record whose attribute values are valid: the
#: cheaper check (each value's bytes decoded once per relabel) must answer as the reader.
_AFTER_A_VALID_RECORD = {
    "same-values": lambda o: None,
    "valid-value-under-an-int-key": lambda o: _key(o, 7),
    "valid-value-under-a-bytes-key": lambda o: _key(o, b"platform"),
    "valid-value-under-a-nil-key": lambda o: _key(o, None),
    "bad-type-under-a-known-key": lambda o: o["attributes"].update(cycle={"t": "no-such-type", "v": 1}),
    "int-in-a-string-attribute": lambda o: o["attributes"].update(platform={"t": "string", "v": 5}),
    "valid-value-of-another-key": lambda o: o["attributes"].update(other=o["attributes"]["platform"]),
    "empty-attributes": lambda o: o.update(attributes={}),
    "attributes-a-list": lambda o: o.update(attributes=[o["attributes"]["platform"]]),
    "attributes-nil": lambda o: o.update(attributes=None),
    "a-value-nil": lambda o: o["attributes"].update(platform=None),
    "a-list-value": lambda o: o["attributes"].update(platform={"t": "int64", "v": [1, 2], "k": "list"}),
    "a-bad-list-value": lambda o: o["attributes"].update(platform={"t": "int64", "v": [1, "x"], "k": "list"}),
    # values that decode as MessagePack into a type or range the attribute's dtype forbids
    "uint8-negative": lambda o: o["attributes"].update(cycle={"t": "uint8", "v": -1}),
    "float32-overflow": lambda o: o["attributes"].update(cycle={"t": "float32", "v": 1e300}),
    "bool-as-int": lambda o: o["attributes"].update(cycle={"t": "bool", "v": 1}),
    "timestamp-as-float": lambda o: o["attributes"].update(cycle={"t": "timestamp_nanoseconds", "v": 1.5}),
    "ext-type-value": lambda o: o["attributes"].update(cycle={"t": "int64", "v": msgpack.ExtType(5, b"x")}),
    "value-a-map-of-a-valid-value": lambda o: o["attributes"].update(cycle={"t": "int64", "v": {"t": "int64"}}),
}


@pytest.mark.parametrize("change", list(_AFTER_A_VALID_RECORD.values()), ids=list(_AFTER_A_VALID_RECORD))
def test_the_attribute_check_answers_as_the_reader(change):
    """The relabel refuses a record exactly when the reader's ``decode_record`` does, also
    after another record with the same attribute values (skipped over once found valid)."""
    from atlas.catalog.encoding import decode_record

    same = {"platform": {"t": "string", "v": "p"}, "cycle": {"t": "int64", "v": 1}}

    def edit(row, rec):
        def make(o):
            o["attributes"] = dict(same)
            if row == 1:
                change(o)

        return _set(rec, make)

    store = Store()
    ref = task_part(store, ROWS[:2], edit)
    reader = PartReader(ref, store.read_range)
    offsets, data = reader.block(0)
    try:
        decode_record(bytes(data[offsets[1] : offsets[2]]), "row 1")
    except CorruptStoreError:
        with pytest.raises(CorruptStoreError, match=r"row 1: dataset record does not follow the format"):
            relabel(store, ref, ["ds0", "ds1"])
    else:
        relabel(store, ref, ["ds0", "ds1"])


def test_a_text_value_with_bytes_that_are_not_utf8_is_refused_after_a_valid_one():
    """The bytes skipped over are only those decoded once: text that is not UTF-8 is decoded and refused."""
    store = Store()

    def edit(row, rec):
        rec = _set(rec, lambda o: o.update(attributes={"platform": {"t": "string", "v": "pZZ"}}))
        return rec.replace(b"pZZ", b"p\xff\xfe") if row == 1 else rec

    ref = task_part(store, ROWS[:2], edit)
    relabel(store, ref, ["ds0"])
    with pytest.raises(CorruptStoreError, match=r"row 1: dataset record does not follow the format"):
        relabel(store, ref, ["ds0", "ds1"])


def _float_chunks(o):
    o["chunk_shape"] = [float(c) for c in o["chunk_shape"]]


def _int_fill(o):
    o["fill_value"] = int(o["fill_value"])


def _bool_chunks(o):
    o["chunk_shape"] = [c == 1 for c in o["chunk_shape"]]


#: A template (the ``schemas`` column) equal to the records' array objects as Python values
#: (``4 == 4.0 == True``) but not as the reader decodes it: a float chunk extent fails the
#: array checks (no bulk read could decode it), an int fill value of a float array decodes
#: but is not the template the record's array gives (``verify`` calls the part damaged).
_FORGED_TEMPLATES = {"chunk-extent-a-float": (_float_chunks, 4), "fill-value-an-int": (_int_fill, 4),
                     "chunk-extent-a-bool": (_bool_chunks, 1)}  # fmt: skip


@pytest.mark.parametrize(("forge", "chunk"), list(_FORGED_TEMPLATES.values()), ids=list(_FORGED_TEMPLATES))
def test_a_template_the_reader_decodes_otherwise_than_the_record_is_refused(monkeypatch, forge, chunk):
    from atlas.catalog import schemas

    honest = schemas.template_bytes

    def forged(am):
        obj = msgpack.unpackb(honest(am), raw=False)
        forge(obj)
        return msgpack.packb(obj, use_bin_type=True)

    rows = [(name, dataclasses.replace(ds, arrays={"temp": dataclasses.replace(ds.arrays["temp"], fill_value=2.0,
                                                                                chunk_shape=(chunk,))}))
            for name, ds in ROWS]  # fmt: skip
    store = Store()
    with monkeypatch.context() as m:
        m.setattr(schemas, "template_bytes", forged)
        ref = task_part(store, rows)
    with pytest.raises(CorruptStoreError, match=r"row 0: array 'temp' disagrees with the schema columns"):
        relabel(store, ref, ["ds0"])


@pytest.mark.parametrize(
    ("code", "message"),
    [(200, r"dtype code of array 'temp' is out of range"),
     ("another", r"row 1: array 'temp' disagrees with the stats columns \(dtype\)")],
    ids=["out-of-range", "another-dtype"],
)  # fmt: skip
def test_a_dtype_code_other_than_the_records_is_refused(code, message):
    """The stats ``dtype`` column answers searches by dtype: a code out of range would make the
    committed part fail ``verify`` and every such search, another dtype's would answer them wrongly."""
    from atlas.catalog.build import DTYPE_CODES

    def change(values):
        values[1] = DTYPE_CODES.index("int16") if code == "another" else code

    store = Store()
    ref = task_part_from(store, task_part(store, ROWS), column="s0.dtype", change=change)
    relabel(store, ref, ["ds0", "ds2"])  # the forged row is not committed: nothing to refuse
    with pytest.raises(CorruptStoreError, match=message):
        relabel(store, ref, ["ds0", "ds1"])
