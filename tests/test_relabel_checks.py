"""A commit task checks each record of a task part once per relabel, learning from the records before it.

``atlas.catalog.relabel`` skips over what earlier records of the same relabel showed
valid: attribute items found where the last record had them, array templates (with
a shape) decoded before.  These tests forge records after valid ones, in the places
those shortcuts look, and check that the relabel refuses a record exactly when the
reader (``decode_record``) cannot decode it.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ingest_commit_hostile import ROWS, Store, _set, relabel, task_part

from atlas.catalog.encoding import decode_record
from atlas.catalog.part import PartReader
from atlas.errors import CorruptStoreError


def _records(ref, store: Store) -> list[bytes]:
    reader = PartReader(ref, store.read_range)
    offsets, data = reader.block(0)
    return [bytes(data[offsets[i] : offsets[i + 1]]) for i in range(len(offsets) - 1)]


def _answers_as_the_reader(store: Store, ref, names: list[str]) -> None:
    """The relabel of ``names`` refuses the first record the reader cannot decode, else succeeds."""
    bad = None
    for row, record in enumerate(_records(ref, store)):
        try:
            decode_record(record, f"row {row}")
        except CorruptStoreError:
            bad = row
            break
    if bad is None:
        _, buffers, out = relabel(store, ref, names)
        store.put(out, buffers)
        PartReader(out, store.read_range).verify()
    else:
        with pytest.raises(CorruptStoreError, match=rf"row {bad}: dataset record does not follow the format"):
            relabel(store, ref, names)


#: Attribute items of the forged records: valid ones (most shared by several records,
#: so that runs of items form), and ones the reader refuses.
_VALID = [("platform", {"t": "string", "v": "p"}), ("cycle", {"t": "int64", "v": 1}),
          ("title", {"t": "string", "v": "a profile"}), ("depth", {"t": "float32", "v": 1.5}),
          ("flags", {"t": "int8", "v": [0, 1, 2], "k": "list"}), ("cycle", {"t": "int64", "v": 2}),
          ("platform", {"t": "string", "v": "q"}), ("empty", {"t": "string", "v": ""})]  # fmt: skip
_INVALID = [("cycle", {"t": "uint8", "v": -1}), ("platform", {"t": "no-such-type", "v": 1}),
            ("depth", {"t": "float32", "v": 1e300}), ("flags", {"t": "int8", "v": [0, "x"], "k": "list"}),
            (7, {"t": "string", "v": "p"}), ("title", None), ("cycle", {"t": "bool", "v": 1})]  # fmt: skip

_item = st.one_of(st.sampled_from(_VALID), st.sampled_from(_VALID), st.sampled_from(_VALID), st.sampled_from(_INVALID))
_attributes = st.lists(_item, max_size=7)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=_attributes, changes=st.lists(st.tuples(st.integers(0, 8), _item | st.none()), max_size=4, min_size=0),
       rows=st.integers(2, 5))  # fmt: skip
def test_the_attribute_check_answers_as_the_reader_after_any_records(base, changes, rows):
    """Records repeating most of the items of the one before (the runs the check looks for first),
    with items replaced, removed or added anywhere, valid or not: refused exactly as the reader refuses."""
    layouts, items = [], list(base)
    for _ in range(rows):
        layouts.append(list(items))
        for at, new in changes:  # the next record: the same items, a few changed
            at = min(at, len(items))
            if new is None:
                del items[at : at + 1]
            else:
                items[at:at] = [new]

    def edit(row, record):
        # one value per key (the reader keeps a repeated key's last value, the check checks every one)
        return _with_attributes(record, list(dict(layouts[row]).items()))

    store = Store()
    ref = task_part(store, ROWS[:rows], edit)
    _answers_as_the_reader(store, ref, [name for name, _ in ROWS[:rows]])


def _with_attributes(record: bytes, pairs: list) -> bytes:
    """``record`` with its attribute map replaced by ``pairs``, packed as given (keys may be other than text)."""
    obj = msgpack.unpackb(record, raw=False)
    packer = msgpack.Packer(use_bin_type=True)
    head = packer.pack_map_header(4) + packer.pack("id") + packer.pack(obj["id"]) + packer.pack("version")
    head += packer.pack(obj["version"]) + packer.pack("attributes")
    attrs = packer.pack_map_header(len(pairs)) + b"".join(packer.pack(k) + packer.pack(v) for k, v in pairs)
    return head + attrs + packer.pack("arrays") + packer.pack(obj["arrays"])


def _temp(change):
    return lambda o: change(o["arrays"]["temp"])


#: Changes of record 1's array after record 0 whose array has the same template and shape
#: (decoded once, then only the slot and stats of later records are checked): values equal
#: to the columns' (``4 == 4.0``, ``0 == False``) but of a type the reader refuses, or
#: extremes its dtype refuses.
_AFTER_THE_SAME_TEMPLATE = {
    "slot-a-float": _temp(lambda a: a.update(slot=float(a["slot"]))),
    "shape-a-float": _temp(lambda a: a.update(shape=[4.0])),
    "chunk-extent-a-float": _temp(lambda a: a.update(chunk_shape=[4.0])),
    "row-count-a-float": _temp(lambda a: a["stats"].update(row_count=4.0)),
    "null-count-a-bool": _temp(lambda a: a["stats"].update(null_count=False)),
    "min-a-bool": _temp(lambda a: a["stats"].update(min=True)),
    "max-a-string": _temp(lambda a: a["stats"].update(max="1")),
    "max-overflows-float32": _temp(lambda a: a["stats"].update(max=1e300)),
    "min-an-int": _temp(lambda a: a["stats"].update(min=-1)),
    "same-array": _temp(lambda a: None),
}


@pytest.mark.parametrize("change", list(_AFTER_THE_SAME_TEMPLATE.values()), ids=list(_AFTER_THE_SAME_TEMPLATE))
def test_the_array_check_answers_as_the_reader_after_the_same_template(change):
    store = Store()
    ref = task_part(store, ROWS[:2], lambda row, rec: _set(rec, change) if row == 1 else rec)
    _answers_as_the_reader(store, ref, ["ds0", "ds1"])
