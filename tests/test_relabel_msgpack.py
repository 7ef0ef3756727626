"""A commit task's checks of a task part answer the same with every msgpack the project accepts.

``pyproject.toml`` accepts ``msgpack>=1.0``.  The C ``Unpacker`` of msgpack 1.0.0 does
not count the bytes ``read_bytes`` hands out in ``tell()`` (fixed in 1.0.1): code that
skips bytes with ``read_bytes`` and then asks ``tell()`` where an object ends gets
offsets short by the bytes skipped.  These tests run the relabel with an ``Unpacker``
that behaves as that one does.
"""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from test_ingest_commit_hostile import ROWS, Store, _set, relabel, task_part

from atlas.catalog.part import PartReader
from atlas.errors import CorruptStoreError


class _Unpacker100:
    """``msgpack.Unpacker`` as msgpack 1.0.0's C extension behaves: ``tell()`` leaves out ``read_bytes``."""

    def __init__(self, *args, **kwargs) -> None:
        self._unpacker = _REAL_UNPACKER(*args, **kwargs)
        self._uncounted = 0

    def read_bytes(self, n: int) -> bytes:
        data = self._unpacker.read_bytes(n)
        self._uncounted += len(data)
        return data

    def tell(self) -> int:
        return self._unpacker.tell() - self._uncounted

    def __getattr__(self, name: str):
        return getattr(self._unpacker, name)


_REAL_UNPACKER = msgpack.Unpacker

#: Attributes every dataset of a collection shares (the usual case: most of a file's
#: global attributes are the collection's).
_SHARED = {"title": {"t": "string", "v": "profiles"}, "institution": {"t": "string", "v": "somewhere"},
           "conventions": {"t": "string", "v": "CF-1.8"}}  # fmt: skip


def _rows():
    return [(name, dataclasses.replace(ds, attributes={**_SHARED, **ds.attributes})) for name, ds in ROWS]


def test_records_sharing_attributes_are_relabelled_with_msgpack_1_0_0(monkeypatch):
    store = Store()
    ref = task_part(store, _rows())
    names = [name for name, _ in ROWS]
    monkeypatch.setattr(msgpack, "Unpacker", _Unpacker100)
    _, buffers, out = relabel(store, ref, names)
    monkeypatch.undo()
    store.put(out, buffers)
    reader = PartReader(out, store.read_range)
    reader.verify()
    assert reader.names() == names


def test_a_bad_attribute_after_shared_ones_is_refused_with_msgpack_1_0_0(monkeypatch):
    """A record whose shared attributes are skipped over still has its own values decoded and refused."""
    store = Store()
    bad = lambda o: o["attributes"].update(cycle={"t": "uint8", "v": -1})  # noqa: E731
    ref = task_part(store, _rows(), lambda row, rec: _set(rec, bad) if row == 2 else rec)
    monkeypatch.setattr(msgpack, "Unpacker", _Unpacker100)
    relabel(store, ref, ["ds0", "ds1"])
    with pytest.raises(CorruptStoreError, match=r"row 2: dataset record does not follow the format"):
        relabel(store, ref, ["ds0", "ds1", "ds2"])
