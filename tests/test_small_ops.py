"""The fast paths of small reads and writes give the same answers as the general ones."""

from __future__ import annotations

import numpy as np
import pytest

import atlas
from atlas import errors


def make(path, values):
    with atlas.Atlas.create(path) as s:
        ds = s.create_dataset("d")
        ds.define_array("v", "float32", ["n"], [len(values)])
        ds.write_array("v", [0], np.asarray(values, np.float32))


def test_cached_small_read_follows_commits_of_other_handles(tmp_path):
    make(tmp_path / "s", [1, 2, 3, 4])
    reader = atlas.Atlas.open(tmp_path / "s")
    ds = reader.open_dataset("d")
    assert ds.read_array("v", [1], [2]).tolist() == [2, 3]
    assert ds.read_array("v", [1], [2]).tolist() == [2, 3]  # from the decoded cache
    with atlas.Atlas.open(tmp_path / "s") as writer:
        writer.open_dataset("d").write_array("v", [0], np.array([9, 8, 7, 6], np.float32))
    assert ds.read_array("v").tolist() == [1, 2, 3, 4]  # the reader's snapshot is unchanged
    reader.refresh()
    assert ds.read_array("v").tolist() == [9, 8, 7, 6]


def test_cached_small_read_sees_pending_writes_and_discard(tmp_path):
    make(tmp_path / "s", [1, 2, 3, 4])
    s = atlas.Atlas.open(tmp_path / "s")
    ds = s.open_dataset("d")
    assert ds.read_array("v").tolist() == [1, 2, 3, 4]
    ds.write_array("v", [2], np.array([30], np.float32))  # read-modify-write of the one chunk
    assert ds.read_array("v").tolist() == [1, 2, 30, 4]
    ds.write_array("v", [0], np.array([5, 6, 7, 8], np.float32))  # whole-array write
    assert ds.read_array("v", [3], [1]).tolist() == [8]
    s.discard()
    assert ds.read_array("v").tolist() == [1, 2, 3, 4]
    s.compact(grace_period=0)
    assert ds.read_array("v").tolist() == [1, 2, 3, 4]


def test_whole_array_write_copies_the_callers_buffer(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as s:
        ds = s.create_dataset("d")
        ds.define_array("v", "int32", ["n"], [3])
        buf = np.array([1, 2, 3], np.int32)
        ds.write_array("v", [0], buf)
        buf[:] = 0
        out = ds.read_array("v")
        out[:] = -1  # a read returns a new array, never the staged or cached one
        assert ds.read_array("v").tolist() == [1, 2, 3]
    ds = atlas.Atlas.open(tmp_path / "s").open_dataset("d")
    first = ds.read_array("v")
    first[:] = -1
    assert ds.read_array("v").tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("start", "shape", "error"),
    [
        ([4], [1], errors.SelectionError),
        ([-1], [1], errors.SelectionError),
        ([0], [5], errors.SelectionError),
        ([0, 0], [1, 1], errors.SelectionError),
        ([True], [1], errors.InvalidArgumentError),
        ([1.0], [1], errors.InvalidArgumentError),
        ("0", [1], errors.InvalidArgumentError),
    ],
)
def test_bad_boxes_get_the_usual_errors(tmp_path, start, shape, error):
    make(tmp_path / "s", [1, 2, 3, 4])
    ds = atlas.Atlas.open(tmp_path / "s").open_dataset("d")
    with pytest.raises(error, match="dataset 'd' array 'v'"):
        ds.read_array("v", start, shape)
    assert ds.read_array("v", np.array([1]), (np.int64(2),)).tolist() == [2, 3]  # numpy integers still work
