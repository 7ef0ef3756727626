"""The bytes the catalogue writer and merges produce are pinned.

Parts written from a fixed set of rows (tombstones, every attribute kind, missing
keys, several key orders, several arrays, ragged shapes, NaN, signed zeros,
unicode) and their merges are hashed; the hashes were recorded from the writer
before its fast paths changed, so a speed-up that alters a single byte fails here.
They were recorded again when catalogue columns went from blosc2 blocks of 16 KiB
to one block per column or record block (``layout.BLOCKSIZE``): with 16 KiB blocks
the writer of then still gave every earlier hash.
"""

from __future__ import annotations

import hashlib

import pytest

from atlas.catalog import build, encoding, merge_parts, merging, write_part
from atlas.catalog.layout import StoredBlock
from atlas.metadata import ArrayMeta, DatasetMeta, Stats

TOKEN = bytes(range(16))


def _attrs(i: int) -> dict:
    """Attributes of row ``i``: uniform for most rows, other orders, kinds and missing keys for some."""
    attrs = {f"f{k}": {"t": "float64", "v": i * 0.25 + k} for k in range(4)}
    attrs.update({f"s{k}": {"t": "string", "v": f"v{(i + k) % 7}"} for k in range(4)})
    if i % 11 == 0:
        attrs["f1"] = {"t": "float64", "v": float("nan")}
        attrs["s2"] = {"t": "string", "v": "ünïcödé ☃ \U0001f600"}
    if i % 13 == 0:
        del attrs["s0"]  # a missing key
    if i % 17 == 0:
        attrs = dict(reversed(list(attrs.items())))  # another key order
    if i % 19 == 0:
        attrs["f2"] = {"t": "int64", "v": -i}  # a key of two kinds: a blob column
        attrs["tags"] = {"t": "string", "v": ["a", "ß"], "k": "list"}
    if i % 23 == 0:
        attrs["flag"] = {"t": "bool", "v": i % 2 == 0}
        attrs["when"] = {"t": "timestamp_nanoseconds", "v": 1_700_000_000_000_000_000 + i}
        attrs["f0"] = {"v": -0.0, "t": "float64"}  # another member order
        attrs["_atlas_xarray/vars"] = {"t": "string", "v": '["temp"]'}
    return attrs


def _arrays(i: int) -> dict:
    temp = ArrayMeta(i, "float32", ("depth",), (24,), (24,), stats=Stats(24, i % 3, -1.5, float(i % 100)))
    arrays = {"temp": temp}
    if i % 5 == 0:
        arrays["psal"] = ArrayMeta(10_000 + i, "float64", ("z",), (i % 9,), (4,), float("nan"))
    if i % 7 == 0:
        arrays["qc"] = ArrayMeta(20_000 + i, "int16", ("t", "z"), (3, i % 4), (2, 2), 7,
                                 {"units": {"t": "string", "v": "°C"}}, Stats(6, 1, -3, 9))  # fmt: skip
    if i % 29 == 0:
        arrays["label"] = ArrayMeta(30_000 + i, "string", (), (), (), "n/a", stats=Stats(1, 0, "é", "ź"))
        arrays["big"] = ArrayMeta(40_000 + i, "uint64", ("x",), (2,), (2,), stats=Stats(2, 0, 2**64 - 1, 2**64 - 1))
    return arrays


def rows(lo: int, hi: int, version: int = 1) -> list:
    out = []
    for i in range(lo, hi):
        meta = None if i % 31 == 0 else DatasetMeta(i, version, _attrs(i), _arrays(i))
        out.append((f"ds_{i:05d}" if i % 37 else f"ds_{i:05d}_π", meta))
    return out[::-1] if lo % 2 else out  # the writer sorts


def bench_rows(n: int) -> list:
    """Rows as the scale benchmark makes them: 15 floats, 15 strings, one ``temp``."""
    out = []
    for i in range(n):
        attrs = {f"f{k}": {"t": "float64", "v": i * 0.25 + k} for k in range(15)}
        attrs.update({f"s{k}": {"t": "string", "v": f"v{(i + k) % 50}"} for k in range(15)})
        temp = ArrayMeta(i + 1, "float32", ("depth",), (24,), (24,), stats=Stats(24, 0, -1.5, float(i % 1000)))
        out.append((f"profile_{i:07d}", DatasetMeta(i + 1, 1, attrs, {"temp": temp})))
    return out


def mixed_rows(n):
    """One array name of several dtypes, stats of every state, array attributes, fill values."""
    out = []
    for i in range(n):
        if i % 41 == 0:
            out.append((f"m{i:04d}", None))
            continue
        k = i % 9
        if k == 0:
            am = ArrayMeta(i + 1, "float32", ("z",), (i % 5,), (4,), stats=Stats(4, 1, float("nan"), 2.5))
        elif k == 1:
            am = ArrayMeta(i + 1, "int32", ("z",), (3,), (3,), -1, stats=Stats(3, 0, -7 - i, 2**31 - 1))
        elif k == 2:
            am = ArrayMeta(i + 1, "string", ("z",), (2,), (2,), stats=Stats(2, 0, "a", "zé"))
        elif k == 3:
            am = ArrayMeta(i + 1, "float64", ("z",), (6,), (6,), stats=Stats(6, 6, None, None))
        elif k == 4:
            am = ArrayMeta(i + 1, "float64", ("z",), (6,), (6,), stats=None)
        elif k == 5:
            am = ArrayMeta(i + 1, "uint64", ("x", "y"), (2, 2), (1, 2), stats=Stats(4, 0, 0, 2**64 - 1))
        elif k == 6:
            am = ArrayMeta(i + 1, "bool", ("z",), (2,), (2,), stats=Stats(2, 0, False, True))
        elif k == 7:
            am = ArrayMeta(i + 1, "timestamp_nanoseconds", ("t",), (1,), (1,), stats=Stats(1, 0, -5, 10**18))
        else:
            am = ArrayMeta(i + 1, "float32", ("z",), (24,), (24,), 0.0 if i % 2 else -0.0,
                           {"units": {"t": "string", "v": "K"}}, Stats(24, 0, -0.0, float("inf")))
        arrays = {"temp": am}
        if i % 4 == 0:
            arrays["other"] = ArrayMeta(50_000 + i, "float32", ("depth",), (24,), (24,), stats=Stats(24, 0, 1.0, 2.0))
        attrs = {f"f{j}": {"t": "float64", "v": i + j / 4} for j in range(3)}
        if i % 3 == 0:
            attrs["f1"] = {"v": float("nan"), "t": "float64"}
        if i % 5 == 0:
            attrs["f2"] = {"t": "float64", "v": [1.0, 2.0], "k": "list"}
        if i % 7 == 0:
            del attrs["f0"]
        out.append((f"m{i:04d}", DatasetMeta(i + 1, 2, attrs, arrays)))
    return out

def uniform_rows(n):
    """bench_rows with one fill value, array attributes or dims differing in some rows."""
    out = bench_rows(n)
    for i, (_, ds) in enumerate(out):
        am = ds.arrays["temp"]
        if i % 97 == 5:
            am.fill_value = float("nan")
        if i % 89 == 7:
            am.attributes = {"units": {"t": "string", "v": "K"}}
        if i % 83 == 3:
            am.dims = ("z",)
    return out


def digest(buffers) -> str:
    return hashlib.sha256(b"".join(bytes(b) for b in buffers)).hexdigest()


#: sha256 of the parts, recorded from the writer before its fast paths changed.
WRITTEN = {
    'lz4': {
        'bench': '4b2dff7c9055a3978ffa1379c2504670f62d2214555178434253f01659091ec8',
        'empty': '817ac325f7e2d58326e37dfbb3ded88879b60c2bca286b5a23d7498457cf4d4c',
        'one': '02c11b3f852da0eee7ecf4e7acc7d2457cc083879255e70bfc87a8342accd362',
        'tombstone': '18512956f3d60fcf4858f07597a30923e40afe3caa096cc5b07afbb2278aa7c1',
        'varied': 'e8f2d0fb5c27e309811ba75169348ad199316d8bce6e450c1882ad51360a076e',
    },
    'none': {
        'bench': '798e70778685f0f1f0292a760bed34383bbe343322ebd3dd8e8a6b3a50f40a7e',
        'empty': '817ac325f7e2d58326e37dfbb3ded88879b60c2bca286b5a23d7498457cf4d4c',
        'one': '02c11b3f852da0eee7ecf4e7acc7d2457cc083879255e70bfc87a8342accd362',
        'tombstone': '18512956f3d60fcf4858f07597a30923e40afe3caa096cc5b07afbb2278aa7c1',
        'varied': '41d577beefea574029cc00a4facd97bb85c3fbdcb871cbdcdd235b017578520b',
    },
    'zstd': {
        'bench': '43c44f7d00e61219bbbccf01b6bee16e49f6ab232dceb6f7fdc1e510d7bf38f6',
        'empty': '817ac325f7e2d58326e37dfbb3ded88879b60c2bca286b5a23d7498457cf4d4c',
        'one': '9c58efe7483188ee4ac135ab886af1142adc503b703d8fa60c38dc7f2f343cfb',
        'tombstone': '18512956f3d60fcf4858f07597a30923e40afe3caa096cc5b07afbb2278aa7c1',
        'varied': 'a81a503970e4282b873c5f2ccf084cc5a17e8a8f80580a91fe938d2cccc245dd',
    },
}
MERGED = {
    False: {
        'varied': '711b150bb9a79b518325cd0aebcbfe0f75d3d2b15484872c4701bdfb60250d8c',
        'with_bench': '378eb45d6deb3c2fb3c066a9ef9f345efdec8336ceaaa6b49bc108fee20539bf',
    },
    True: {
        'varied': '6fc9cb5671de6862529949cff67b5e7b25dbc5674655f093ef20ee9de6a5a8fc',
        'with_bench': '47209ba2ebc4eaf95e85f331b15fbba1c54f1bca30e640734bf0f3eb634f4f32',
    },
}


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
@pytest.mark.parametrize(("split", "small"), [(1 << 14, False), (64, False), (64, True)])
def test_written_parts_keep_their_bytes(codec, split, small, monkeypatch):
    monkeypatch.setattr(build, "_SPLIT_ROWS", split)  # chunks of rows mixing orders and kinds too
    if small:  # attribute maps packed per record (not with the columns), memos of packed members full
        monkeypatch.setattr(build, "_PREPACK_ROWS", 10)
        monkeypatch.setattr(encoding, "_MEMO_SIZE", 2)
    got = {
        "varied": digest(write_part(rows(0, 700), codec, 3, TOKEN)[1]),
        "bench": digest(write_part(bench_rows(600), codec, 3, TOKEN)[1]),
        "one": digest(write_part(rows(1, 2), codec, 3, TOKEN)[1]),
        "tombstone": digest(write_part(rows(31, 32), codec, 3, TOKEN)[1]),
        "empty": digest(write_part([], codec, 3, TOKEN)[1]),
    }
    assert got == WRITTEN[codec]


def merged_digests(drop: bool) -> dict[str, str]:
    """Hashes of merges of three ``rows`` parts, and of them with a ``bench_rows`` part."""
    files: dict[str, bytes] = {}

    def read_range(path: str, offset: int, length: int) -> bytes:
        return files[path][offset : offset + length]

    refs = []
    for g, (lo, hi) in enumerate([(0, 500), (300, 650), (640, 700)], start=1):
        _name, buffers, ref = write_part(rows(lo, hi, g), "zstd", g, bytes([g]) * 16)
        files[ref.path] = b"".join(bytes(b) for b in buffers)
        refs.append(ref)
    bench = write_part(bench_rows(300), "lz4", 4, bytes([4]) * 16)
    files[bench[2].path] = b"".join(bytes(b) for b in bench[1])
    return {
        "varied": digest(merge_parts(refs, read_range, "zstd", 5, TOKEN, drop)[1]),
        "with_bench": digest(merge_parts([*refs, bench[2]], read_range, "zstd", 5, TOKEN, drop)[1]),
    }


@pytest.mark.parametrize("drop", [False, True])
def test_merged_parts_keep_their_bytes(drop):
    assert merged_digests(drop) == MERGED[drop]


#: sha256 of parts of :func:`mixed_rows` and :func:`uniform_rows` (600 rows each, codec
#: zstd and none), recorded from the writer before its stats columns were gathered
#: field by field: every stats state, dtype mix and schema variation keeps its bytes.
WRITTEN_STATS = {
    "zstd": ("013f2e0d44935e4125cff14de4edef62636e73529affc230cf8fa45805548061",
             "2de6cd95e51e545e8e34164cc8b086f1dfd5a91c52cdaa0e73c673605bb5f2a3"),
    "none": ("d2729e087bade4c5308ad7332682f0e4692ce4ff31bf21e467cbcc948ed192f3",
             "0ca9ae75a15323847a2ad2fd32b489146a24a921f73666b07876bca3d87e8bfd"),
}  # fmt: skip


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_stats_columns_of_mixed_arrays_keep_their_bytes(codec):
    got = (digest(write_part(mixed_rows(600), codec, 3, TOKEN)[1]),
           digest(write_part(uniform_rows(600), codec, 3, TOKEN)[1]))  # fmt: skip
    assert got == WRITTEN_STATS[codec]


def test_parts_of_one_array_with_tombstones_keep_their_bytes():
    """Datasets made alike (one array each) among tombstones: recorded from the writer
    before it gathered the arrays of such parts in one pass."""
    rows_ = [(name, None if i % 7 == 3 else ds) for i, (name, ds) in enumerate(bench_rows(600))]
    got = digest(write_part(rows_, "zstd", 3, TOKEN)[1])
    assert got == "b046988b2d92193b432369ea16853f6636b13ccd6ca59c5dfdab099b1c1b08f5"


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
def test_merges_reusing_stored_record_blocks_keep_their_bytes(codec, monkeypatch):
    """A merged block that is a whole source block is copied as stored: the same
    bytes as compressing it again, and its range is read once.  Parts of disjoint
    name ranges are concatenated: the same bytes as locating every winner."""
    files: dict[str, bytes] = {}
    reads: list[tuple[str, int, int]] = []

    def read_range(path: str, offset: int, length: int) -> bytes:
        reads.append((path, offset, length))
        return files[path][offset : offset + length]

    def part(rows_, g: int, part_codec: str = codec):
        _name, buffers, ref = write_part(rows_, part_codec, g, bytes([g]) * 16)
        files[ref.path] = b"".join(bytes(b) for b in buffers)
        return ref

    old = part(bench_rows(1300), 1)  # five whole blocks and a partial one
    tombstones = [(f"profile_{i:07d}", None) for i in range(600, 610)]
    newer = part(tombstones + [("q" + name, meta) for name, meta in rows(0, 300, 2)], 2)  # sorts after `old`
    first = part(rows(0, 40, 3), 3)  # sorts before `old`: shifts it off the block boundaries
    other = part(bench_rows(256), 4, "lz4" if codec == "zstd" else "zstd")  # another codec: compressed again
    small = part(bench_rows(256), 5)  # one whole block
    front = part([("a" + name, meta) for name, meta in rows(0, 100, 6)], 6)  # moves its rows across two blocks
    tail = part([(f"profile_{i:07d}", None) for i in range(250, 256)], 7)  # drops its last rows
    cases = [[old, newer], [old, newer, other], [newer, old], [old, first], [old], [other], [small, front],
             [small, tail]]  # fmt: skip
    copied = []
    real = merging._record_blocks

    def spy(*args):
        for block in real(*args):
            copied.append(isinstance(block, StoredBlock))
            yield block

    disjoint = []
    order = merging._disjoint_order

    def spy_order(names):
        got = order(names)
        disjoint.append(got is not None)
        return got

    monkeypatch.setattr(merging, "_record_blocks", spy)
    monkeypatch.setattr(merging, "_disjoint_order", spy_order)
    fast = []
    for refs in cases:
        for drop in (False, True):
            reads.clear()
            fast.append(digest(merge_parts(refs, read_range, codec, 9, TOKEN, drop)[1]))
            assert len(reads) == len(set(reads))  # no range read twice
    assert sum(copied) >= 10 and not all(copied)
    assert any(disjoint) and not all(disjoint)
    monkeypatch.setattr(merging, "_stored_block", lambda *args: None)
    monkeypatch.setattr(merging, "_disjoint_order", lambda names: None)  # winners located name by name
    slow = [digest(merge_parts(refs, read_range, codec, 9, TOKEN, drop)[1]) for refs in cases for drop in (False, True)]
    assert fast == slow



#: The hashes of WRITTEN and MERGED that changed with the block size, as recorded
#: with blosc2 blocks of 16 KiB (``layout.BLOCKSIZE = None``: the chunk default).
WRITTEN_16_KIB = {
    "lz4": {"bench": "736528047c8352baea5f46528e5cfe907bb4c565c092c4e9de1680ba05fee371",
            "varied": "2354347fbfed97acb8b84593832608579b2fe2feabe21823cc9e4354a36fe348"},
    "zstd": {"bench": "dd9133dda8a645333913a031df608770782aad9160189b3db42b89922c429655",
             "varied": "16d79d4963007f0e8d5d32ccf69c6ca17ef3c761ff6a081e1d35e0fd52445bd3"},
}  # fmt: skip
MERGED_16_KIB = {
    False: {"varied": "3ccd949f83895e40885e27a444ca051192a5a70f6f1db63d7638dd871f873525",
            "with_bench": "cb44303962fc964532266141ecb1d3d8f437d7f8a6f2d58f8f21010393f40789"},
    True: {"varied": "baf319f239596a19e90d3ff67c6cd020925a031a3659b17c95728fda342cf7de",
           "with_bench": "1d4e1441d54ffd6f072708b201135d3a5e7bb1f3b318abe006efd35d12d2dd85"},
}  # fmt: skip


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_with_16_kib_blocks_parts_keep_the_bytes_of_before(codec, monkeypatch):
    """Only the block size changed the parts' bytes: with the blocks of before, every
    fast path of the writer and of merges still gives the hashes recorded then."""
    from atlas.catalog import layout

    monkeypatch.setattr(layout, "BLOCKSIZE", None)
    for split, small in [(1 << 14, False), (64, True)]:
        monkeypatch.setattr(build, "_SPLIT_ROWS", split)
        monkeypatch.setattr(build, "_PREPACK_ROWS", 10 if small else 1 << 16)
        monkeypatch.setattr(encoding, "_MEMO_SIZE", 2 if small else 4096)
        got = {"varied": digest(write_part(rows(0, 700), codec, 3, TOKEN)[1]),
               "bench": digest(write_part(bench_rows(600), codec, 3, TOKEN)[1])}  # fmt: skip
        assert got == WRITTEN_16_KIB[codec]
    if codec == "zstd":
        assert {drop: merged_digests(drop) for drop in (False, True)} == MERGED_16_KIB
