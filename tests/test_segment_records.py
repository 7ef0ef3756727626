"""Record tables of a segment refuse what the record layout cannot hold, as before they were built from words."""

from __future__ import annotations

import numpy as np
import pytest

from atlas.engine.segment import RECORD_DTYPE, SegmentWriter
from atlas.errors import AtlasError

_PAYLOAD = np.arange(16, dtype=np.uint8)


@pytest.mark.parametrize(("codec", "flags"), [(256, 0), (1, 256), (300, 1)])
def test_a_codec_or_flags_beyond_one_byte_is_refused_not_spilled_into_the_next_field(codec, flags):
    writer = SegmentWriter(1, b"\x01" * 16)
    writer.add(0, 0, _PAYLOAD, codec, 16, 0, 0, 0, flags)
    with pytest.raises(OverflowError) as caught:
        writer.finish()
    assert isinstance(caught.value, AtlasError)


def test_a_codec_and_flags_given_as_numpy_integers_make_the_record():
    writer = SegmentWriter(1, b"\x01" * 16)
    writer.add(0, 0, _PAYLOAD, np.uint8(2), 16, np.uint64(3), 0, 0, np.uint8(1))
    writer.finish()
    record = writer.table[0]
    assert (int(record["codec"]), int(record["flags"]), int(record["null_count"])) == (2, 1, 3)
    assert not record["reserved"].tobytes().strip(b"\0")


def test_a_block_whose_records_have_another_layout_is_refused():
    other = np.dtype([(name, RECORD_DTYPE.fields[name][0]) for name in reversed(RECORD_DTYPE.names)])
    assert other.itemsize == RECORD_DTYPE.itemsize
    writer = SegmentWriter(1, b"\x01" * 16)
    writer.add(0, 0, _PAYLOAD, 1, 16, 0, 0, 0, 0)
    records = np.zeros(2, other)
    records["slot"] = [1, 2]
    with pytest.raises(TypeError) as caught:  # as numpy refused to join such tables before
        writer.add_block(np.zeros((2, 64), np.uint8), 20, records)
    assert isinstance(caught.value, AtlasError)
    assert records["offset"].tolist() == [0, 0]  # the caller's table is left as it was
    writer.finish()
    assert writer.table["slot"].tolist() == [0]


def test_a_part_of_many_distinct_columns_keeps_a_bounded_copy_of_their_bytes():
    from atlas.catalog import layout

    builder = layout.PartBuilder(1, b"\x01" * 16, "zstd")
    rng = np.random.default_rng(0)
    columns = [rng.integers(0, 1 << 40, 8000).astype("<u8") for _ in range(120)]  # 64 000 bytes each
    for k, column in enumerate(columns):
        builder.add(f"c{k}", column, 8)
    assert sum(len(raw) for _, raw in builder._seen) <= layout._MEMO_BUDGET
    builder.add("again", columns[0].copy(), 8)  # the first columns are still compressed once
    assert builder.parts[-1] is builder.parts[1]
    assert builder.columns["again"][1:] == builder.columns["c0"][1:]
