"""The catalogue package on its own: commit objects, parts, snapshots, merges, v1 upgrade.

Property tests of the same package are in ``tests/property/test_catalog_roundtrip.py``.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import secrets
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings, strategies

from atlas import attributes, metadata
from atlas.catalog import (
    MAX_PARTS,
    Catalog,
    CommitObject,
    PartRef,
    catalog_from_manifest,
    choose_merge,
    decode_commit,
    decode_metadata,
    encode_commit,
    merge_parts,
    write_part,
)
from atlas.catalog.merge import FEW_PARTS
from atlas.catalog.part import PartReader
from atlas.catalog.snapshot import merge_positions
from atlas.errors import CorruptStoreError, DatasetNotFoundError, FormatVersionError, InvalidArgumentError
from atlas.metadata import ArrayFamily, ArrayMeta, DatasetMeta, RetiredSegment, SegmentRef, Stats

GOLDEN = Path(__file__).parent / "data" / "golden"
GOLDEN_STORES = ("v1-json-zstd", "v1-msgpack-lz4", "v1-json-none-raw")


class Store:
    """Part files in memory, served through ``read_range``; counts the reads."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.reads: list[tuple[str, int, int]] = []

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        self.reads.append((path, offset, length))
        return self.files[path][offset : offset + length]

    def write(self, rows, generation: int, codec: str = "zstd") -> PartRef:
        _, buffers, ref = write_part(rows, codec, generation, secrets.token_bytes(16))
        self.files[ref.path] = b"".join(bytes(b) for b in buffers)
        return ref


def canonical(ds: DatasetMeta) -> str:
    return json.dumps({
        "id": ds.id, "version": ds.version,
        "attributes": [[k, attributes.encode(v)] for k, v in ds.attributes.items()],
        "arrays": [[a, metadata.array_to_dict(am)] for a, am in ds.arrays.items()],
    })  # fmt: skip


def profile(i: int, version: int = 1) -> DatasetMeta:
    temp = ArrayMeta(slot=i, dtype="float32", dims=("depth",), shape=(24,), chunk_shape=(24,),
                     stats=Stats(24, 1, -1.5, float(i)))  # fmt: skip
    attrs = {
        "lat": {"t": "float64", "v": i / 7},
        "platform": {"t": "string", "v": f"float-{i % 5}"},
        "cycle": {"t": "int64", "v": i},
        "_atlas_xarray/vars": {"t": "string", "v": '["temp"]'},
    }
    if i % 3 == 0:
        attrs["tags"] = {"t": "string", "v": ["a", "b"], "k": "list"}
    return DatasetMeta(id=i, version=version, attributes=attrs, arrays={"temp": temp})


def read_golden_manifest(name: str) -> metadata.Manifest:
    root = GOLDEN / name
    (file,) = [p for p in root.iterdir() if metadata.parse_manifest_filename(p.name)]
    fmt, comp = metadata.parse_manifest_filename(file.name)
    return metadata.decode_manifest(file.read_bytes(), fmt, comp, str(file))


# -- v1 -> v2 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOLDEN_STORES)
def test_golden_v1_store_upgrades_to_a_catalogue_with_every_dataset_equal(name):
    manifest = read_golden_manifest(name)
    assert manifest.datasets, "the golden stores hold datasets"
    store = Store()
    _, buffers, ref = catalog_from_manifest(manifest, manifest.codec, manifest.generation + 1, secrets.token_bytes(16))
    store.files[ref.path] = b"".join(bytes(b) for b in buffers)
    cat = Catalog([ref], store.read_range)
    assert cat.names() == sorted(manifest.datasets)
    for ds_name, ds in manifest.datasets.items():
        assert canonical(cat.get(ds_name)) == canonical(ds)
        assert cat.get_by_id(ds.id)[0] == ds_name
    for array_name in manifest.families:
        slots = sorted(am.slot for d in manifest.datasets.values() for a, am in d.arrays.items() if a == array_name)
        assert cat.live_slots(array_name).tolist() == slots
    cat.verify()


@pytest.mark.parametrize("name", GOLDEN_STORES)
def test_decode_metadata_reads_v1_manifests_and_v2_commit_objects(name):
    root = GOLDEN / name
    (file,) = [p for p in root.iterdir() if metadata.parse_manifest_filename(p.name)]
    fmt, comp = metadata.parse_manifest_filename(file.name)
    v1 = decode_metadata(file.read_bytes(), fmt, comp, str(file))
    assert isinstance(v1, metadata.Manifest) and v1.datasets == read_golden_manifest(name).datasets
    with pytest.raises(CorruptStoreError, match="v1 manifest"):
        decode_commit(file.read_bytes(), fmt, comp, str(file))


# -- commit object ----------------------------------------------------------------------------------


def _commit() -> CommitObject:
    seg = SegmentRef("000000000002-0123456789abcdef.af", 400, 200, 160, 2**64 - 1, 2)
    parts = [
        PartRef("000000000001-aaaaaaaaaaaaaaaa.cat", 900, 700, 160, 12345, 10, 1, 1),
        PartRef("000000000003-bbbbbbbbbbbbbbbb.cat", 500, 300, 160, 2**64 - 1, 1, 2, 3),
    ]
    return CommitObject(
        codec="zstd", generation=3, write_token="ab" * 16, next_slot=9, next_dataset_id=12,
        families={"temp": ArrayFamily("temp", [seg]), "Air Temp": ArrayFamily("_41ir_20_54emp", [])},
        retired=[RetiredSegment("temp", "000000000001-0123456789abcdef.af", 1_767_225_600_000),
                 RetiredSegment("_catalog", "000000000002-cccccccccccccccc.cat", 1_767_225_600_001),
                 RetiredSegment("temp", "000000000001-1123456789abcdef.af", 1_767_225_600_002)],
        parts=parts,
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("comp", ["none", "zstd", "lz4"])
def test_commit_object_round_trips_in_every_encoding(fmt, comp):
    c = _commit()
    data = encode_commit(c, fmt, comp)
    assert decode_commit(data, fmt, comp, "x") == c
    assert decode_metadata(data, fmt, comp, "x") == c
    # an older reader refuses it by its version instead of reading a stale manifest
    with pytest.raises(FormatVersionError):
        metadata.decode_manifest(data, fmt, comp, "x")


def test_commit_object_does_not_grow_with_datasets():
    c = _commit()
    assert b"datasets" not in encode_commit(c, "json", "none")


def _json(c: CommitObject) -> dict:
    return json.loads(encode_commit(c, "json", "none"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda o: o.update(format_version=3),
        lambda o: o.update(format="zip"),
        lambda o: o.update(datasets={}),
        lambda o: o.update(parts={}),
        lambda o: o["parts"].append(o["parts"][0]),
        lambda o: o["parts"][0].pop(),
        lambda o: o["parts"][0].__setitem__(0, "../x.cat"),
        lambda o: o["parts"][0].__setitem__(0, "000000000001-aaaaaaaaaaaaaaaa.af"),
        lambda o: o["parts"][0].__setitem__(1, -1),
        lambda o: o["parts"][0].__setitem__(2, 2**70),
        lambda o: o["parts"][0].__setitem__(3, 10**6),  # index beyond the part size
        lambda o: o["parts"][0].__setitem__(5, True),
        lambda o: o["parts"][1].__setitem__(7, 99),  # newer than the commit
        lambda o: o["parts"][1].__setitem__(6, 4),  # min generation above max
        lambda o: o.update(next_slot=0),
        lambda o: o["arrays"]["temp"].update(dir="a/b"),
        lambda o: o.update(codec="brotli"),
        lambda o: o["retired"].append(["_catalog", o["parts"][0][0], 5]),  # a live part retired
        lambda o: o["retired"].append(["_catalog", "x.cat", 5]),
        lambda o: o["retired"].append(["_catalog", "000000000002-cccccccccccccccc.cat", -5]),
    ],
)
def test_damaged_commit_object_is_refused(damage):
    obj = _json(_commit())
    damage(obj)
    data = json.dumps(obj).encode()
    with pytest.raises((CorruptStoreError, FormatVersionError)) as info:
        decode_commit(data, "json", "none", "atlas.json")
    if obj.get("format_version") == 3:
        assert info.type is FormatVersionError
    else:
        assert info.type is CorruptStoreError and "atlas.json" in str(info.value)


def test_undecodable_commit_object_is_corrupt():
    for data, fmt, comp in [(b"{", "json", "none"), (b"\xc1", "msgpack", "none"), (b"x" * 40, "json", "zstd")]:
        with pytest.raises(CorruptStoreError):
            decode_metadata(data, fmt, comp, "atlas.json")


# -- snapshots ----------------------------------------------------------------------------------------


def test_lookups_read_nothing_at_open_and_only_what_they_use():
    store = Store()
    ref = store.write([(f"p{i:05d}", profile(i)) for i in range(1, 3001)], 1)
    cat = Catalog([ref], store.read_range)
    assert store.reads == []  # construction reads nothing
    ds = cat.get("p01234")
    assert canonical(ds) == canonical(profile(1234))
    # index, names, tombstones, id/version, block table, one block: no attribute or stats column
    assert len(store.reads) <= 7, store.reads
    before = len(store.reads)
    cat.get("p01235")  # same block, cached
    assert len(store.reads) == before
    assert "p00000" not in cat and "p03000" in cat and len(cat) == 3000
    # listing a fresh snapshot reads the index, the names and the tombstones: 3 reads per part
    store.reads.clear()
    fresh = Catalog([ref], store.read_range)
    assert len(fresh.names()) == 3000 and len(store.reads) == 3
    with pytest.raises(DatasetNotFoundError):
        cat.get("nope")
    with pytest.raises(KeyError):
        cat.get_by_id(99999)


@pytest.mark.parametrize("width", ["one", "mixed"])
def test_first_live_is_the_first_name_in_the_catalogue(width):
    # Three parts, oldest first: a newer row hides an older one (a tombstone deletes,
    # a new row re-creates); names of one length (the layout of numbered names) or not.
    def name(i: int) -> str:
        return f"p{i:05d}" if width == "one" else f"p{i:0{1 + i % 4}d}"

    store = Store()
    oldest = store.write([(name(i), profile(i)) for i in range(0, 300, 2)], 1)
    middle = store.write(sorted([(name(i), None) for i in (10, 12)] + [(name(i), profile(i)) for i in (301, 303)]), 2)
    newest = store.write(sorted([(name(i), profile(i)) for i in (12, 305)] + [(name(303), None)]), 3)
    cat = Catalog([oldest, middle, newest], store.read_range)

    def expected(names):
        return next((x for x in names if x in cat), None)

    batches = [
        [], ["a", "zz"], [name(10)], [name(12)], [name(303)], [name(301)], ["zz", name(4), name(301)],
        [name(1), name(3), name(10), name(305)], [name(i) for i in range(290, 320)], [name(i) for i in range(3, 40, 2)],
    ]
    for batch in batches:
        assert cat.first_live(batch) == expected(batch), batch
    assert Catalog([], store.read_range).first_live(["x"]) is None
    assert Catalog([store.write([], 4)], store.read_range).first_live(["x"]) is None


def test_first_live_of_names_past_every_part_decodes_no_names():
    store = Store()
    refs = [store.write([(f"p{i:05d}", profile(i)) for i in range(lo, lo + 500)], 1 + lo) for lo in (0, 500)]
    cat = Catalog(refs, store.read_range)
    assert cat.first_live([f"p{i:05d}" for i in range(1000, 1500)]) is None
    assert cat.first_live(["a"]) is None
    assert all("name" not in reader._columns for reader in cat.readers)
    assert cat.first_live(["p00999", "p00001"]) == "p00999"


def test_first_live_reads_no_older_part_once_every_name_is_decided():
    # Names of mixed lengths: an older part's range would decode its every name.
    store = Store()
    older = store.write([(f"p{i}", profile(i)) for i in range(0, 500)], 1)
    newer = store.write([("p1", None), ("p7", profile(7))], 2)
    cat = Catalog([older, newer], store.read_range)
    assert cat.first_live(["p1", "p7"]) == "p7"
    assert cat.readers[0]._index is None  # not even its index read
    assert cat.first_live(["p1", "p8"]) == "p8"


def test_attribute_and_stats_columns_are_typed_and_aligned():
    store = Store()
    rows = [(f"p{i:05d}", profile(i)) for i in range(1, 601)]
    cat = Catalog([store.write(rows[:400], 1), store.write(rows[400:], 2)], store.read_range)
    names = cat.names()
    assert cat.attribute_keys() == ["cycle", "lat", "platform", "tags"]  # the internal key is hidden
    lat, present = cat.column("lat")
    assert lat.dtype == np.float64 and present.all()
    assert np.array_equal(lat, [int(n[1:]) / 7 for n in names])
    platform, _ = cat.column("platform")
    assert platform.dtype == object and platform[0] == "float-1"
    cycle, _ = cat.column("cycle")
    assert cycle.dtype == np.int64 and cycle.tolist() == [int(n[1:]) for n in names]
    tags, has = cat.column("tags")
    assert has.tolist() == [int(n[1:]) % 3 == 0 for n in names]
    assert tags[has].tolist() == [["a", "b"]] * int(has.sum()) and all(t is None for t in tags[~has])
    with pytest.raises(KeyError):
        cat.column("_atlas_xarray/vars")
    values, present = cat.column("never-set")
    assert not present.any() and values.shape == (600,)
    tmax, ok = cat.stats_column("temp", "max")
    assert ok.all() and tmax.tolist() == [float(int(n[1:])) for n in names]
    assert cat.stats_column("temp", "dtype")[0][0] == "float32"
    assert cat.stats_column("temp", "shape")[0][5] == (24,)
    assert cat.stats_column("temp", "null_count")[0].tolist() == [1] * 600
    assert cat.live_slots("temp").tolist() == list(range(1, 601))
    assert cat.array_names() == ["temp"]
    absent, ok = cat.stats_column("psal", "min")
    assert not ok.any() and np.isnan(absent).all()


def test_exact_extremes_of_64_bit_integers_and_timestamps_survive():
    big = ArrayMeta(slot=1, dtype="uint64", dims=("x",), shape=(2,), chunk_shape=(2,),
                    stats=Stats(2, 0, 2**64 - 2, 2**64 - 1))  # fmt: skip
    neg = ArrayMeta(slot=2, dtype="int64", dims=("x",), shape=(2,), chunk_shape=(2,),
                    stats=Stats(2, 0, -(2**63), 2**63 - 1))  # fmt: skip
    ts = ArrayMeta(slot=3, dtype="timestamp_nanoseconds", dims=(), shape=(), chunk_shape=(),
                   stats=Stats(1, 0, 1704164645123456789, 1704164645123456789))  # fmt: skip
    txt = ArrayMeta(slot=4, dtype="string", dims=(), shape=(), chunk_shape=(), stats=Stats(1, 0, "ç", "温度"))
    store = Store()
    rows = [("a", DatasetMeta(1, 1, {}, {"v": big})), ("b", DatasetMeta(2, 1, {}, {"v": neg})),
            ("c", DatasetMeta(3, 1, {}, {"v": ts})), ("d", DatasetMeta(4, 1, {}, {"v": txt}))]  # fmt: skip
    cat = Catalog([store.write(rows, 1)], store.read_range)
    lo, _ = cat.stats_column("v", "min_exact")
    hi, _ = cat.stats_column("v", "max_exact")
    assert lo.tolist() == [2**64 - 2, -(2**63), 1704164645123456789, "ç"]
    assert hi.tolist() == [2**64 - 1, 2**63 - 1, 1704164645123456789, "温度"]
    assert np.isnan(cat.stats_column("v", "min")[0][3])


def test_empty_parts_and_no_parts():
    store = Store()
    assert Catalog([], store.read_range).names() == []
    cat = Catalog([store.write([], 1)], store.read_range)
    assert cat.names() == [] and len(cat) == 0 and cat.attribute_keys() == [] and cat.live_slots("t").size == 0
    cat.verify()


def test_write_part_refuses_two_rows_of_one_name():
    with pytest.raises(InvalidArgumentError):
        write_part([("a", profile(1)), ("a", None)], "zstd", 1, secrets.token_bytes(16))


def test_merge_positions_match_a_sorted_merge():
    rng = random.Random(5)
    pool = sorted({"".join(rng.choice("ab温é\x00z") for _ in range(rng.randint(1, 5))) for _ in range(400)})
    rng.shuffle(pool)
    lists = [sorted(pool[:300]), sorted(pool[300:310]), [], sorted(pool[310:])]
    merged = sorted(pool)
    for names, pos in zip(lists, merge_positions(lists)):
        assert [merged[p] for p in pos.tolist()] == names
        assert all(merged[bisect.bisect_left(merged, n)] == n for n in names)


def test_merge_of_newest_parts_keeps_tombstones_for_older_parts():
    store = Store()
    base = store.write([(f"p{i}", profile(i)) for i in range(1, 50)], 1)
    delete = store.write([("p3", None), ("p4", None)], 2)
    change = store.write([("p5", profile(500, version=3)), ("new", profile(600, version=3))], 3)
    _, buffers, merged = merge_parts([delete, change], store.read_range, "zstd", 4, secrets.token_bytes(16), False)
    store.files[merged.path] = b"".join(bytes(b) for b in buffers)
    assert (merged.rows, merged.min_generation, merged.max_generation) == (4, 2, 4)
    cat = Catalog([base, merged], store.read_range)
    assert "p3" not in cat and "p4" not in cat and cat.get("p5").id == 500 and "new" in cat
    assert cat.key("p5") == (500, 3) and cat.key("p6") == (6, 1) and cat.key("p3") is None
    assert cat.names() == Catalog([base, delete, change], store.read_range).names()


@pytest.mark.parametrize(
    "layout", ["disjoint", "disjoint, newest first in name order", "touching", "overlapping", "one block each"]
)
@pytest.mark.parametrize("drop", [False, True])
def test_a_merge_equals_a_fresh_part_of_its_winners(layout, drop):
    """Merged parts (concatenated when their name ranges are disjoint, located
    name by name when they touch or overlap; record blocks copied as stored where
    a whole block survives) equal a part written afresh from the newest row of
    each name: names, keys, records and every record block's stored bytes."""
    store = Store()
    spans = {
        "disjoint": [(0, 300), (300, 40), (340, 256)],
        "disjoint, newest first in name order": [(600, 257), (300, 5), (0, 256)],
        "touching": [(0, 256), (255, 300), (554, 3)],  # each part's first name is the last of the one before
        "overlapping": [(0, 600), (100, 256), (350, 20)],
        "one block each": [(0, 256), (256, 256)],
    }[layout]
    parts, winners = [], {}
    for g, (start, count) in enumerate(spans, start=1):
        rows = [(f"p{i:05d}", None if i % 11 == 3 else profile(i + 1, version=g)) for i in range(start, start + count)]
        parts.append(store.write(rows, g))
        winners.update(rows)
    expected = sorted((n, m) for n, m in winners.items() if not (drop and m is None))
    token = secrets.token_bytes(16)
    _, buffers, merged = merge_parts(parts, store.read_range, "zstd", 9, token, drop)
    _, fresh_buffers, fresh = write_part(expected, "zstd", 9, token)
    assert merged.path == fresh.path  # one name: the same generation and token
    blob, fresh_blob = (b"".join(bytes(b) for b in bufs) for bufs in (buffers, fresh_buffers))
    store.files[merged.path] = blob
    read = store.read_range
    got = PartReader(merged, read)
    want = PartReader(fresh, lambda _path, offset, length: fresh_blob[offset : offset + length])
    assert got.names() == want.names() == [n for n, _ in expected]
    assert got.tombstones().tolist() == want.tombstones().tolist() == [m is None for _, m in expected]
    assert got.block_table().tolist() == want.block_table().tolist()  # stored bytes, raw lengths, checksums
    for k in range(len(want.block_table())):
        assert got.block(k)[1] == want.block(k)[1]
    cat = Catalog([merged], read)
    for name, meta in expected:
        assert (cat.get(name) if meta is not None else cat.key(name)) == meta
    if not drop:  # the tombstones still hide rows of an older part
        older = store.write([(n, profile(9000)) for n, m in expected if m is None], 0)
        assert all(n not in Catalog([older, merged], store.read_range) for n, m in expected if m is None)


# -- merge policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "commits", "rows"), [(0, 3000, 1), (100_000, 3000, 1), (0, 300, 1000)])
def test_merge_policy_bounds_parts_and_rewrites(base, commits, rows):
    parts = [base] if base else []
    rewritten = 0
    for _ in range(commits):
        parts.append(rows)
        start = choose_merge(parts)
        if start is not None:
            rewritten += sum(parts[start:])
            parts = [*parts[:start], sum(parts[start:])]
        assert len(parts) <= MAX_PARTS
    # amortised rows rewritten per commit: a small multiple of the commit, not of the store
    assert rewritten / commits <= 40 * rows


def _simulate(parts: list[int], commits: int, rows: int, **policy: int) -> tuple[float, int]:
    """Rows written per committed row (the commits' own parts included) and the most parts seen."""
    written, most = 0, len(parts)
    for _ in range(commits):
        parts.append(rows)
        written += rows
        start = choose_merge(parts, **policy)
        if start is not None:
            written += sum(parts[start:])
            parts[start:] = [sum(parts[start:])]
        most = max(most, len(parts))
    return written / (commits * rows), most


def test_merge_policy_figures_of_the_format_page():
    # docs/format-v2.md 6.3: a million rows committed 10 000 at a time are written
    # about 5 times each (7 with ratio 4 alone), with at most 4 parts; one-row
    # commits on a million-row store rewrite about 14 rows each; the part cap holds in both
    parts: list[int] = []
    per_row, most = _simulate(parts, 100, 10_000)
    assert per_row == pytest.approx(5.21, abs=0.01) and most <= FEW_PARTS
    assert parts == [830_000, 150_000, 20_000]  # docs/scale.md: the parts such a build leaves
    assert _simulate([], 100, 10_000, few=1)[0] == pytest.approx(7.03, abs=0.01)  # ratio 4 alone
    per_commit, most = _simulate([1_000_000], 20_000, 1)
    assert per_commit - 1 == pytest.approx(13.56, abs=0.01) and most <= MAX_PARTS


def test_merge_policy_stays_logarithmic_at_the_part_cap():
    # Past about 46 000 one-row commits on a large store the tiers of ratio 4 no
    # longer fit under the cap: merging only the newest parts then let one part take
    # every commit, rewriting it whole each time (14 600 rows per commit at 100 000
    # commits, 107 000 at 300 000).  Coarser tiers keep a commit logarithmic.
    per_commit, most = _simulate([1_000_000], 100_000, 1)
    assert per_commit - 1 == pytest.approx(16.33, abs=0.01) and most <= MAX_PARTS  # the 16 of the format page
    per_commit, most = _simulate([], 300_000, 1)
    assert per_commit - 1 <= 40 and most <= MAX_PARTS
    # a caller's smaller cap, below the few-parts threshold, gets coarser tiers too
    per_commit, most = _simulate([], 20_000, 1, max_parts=3)
    assert per_commit - 1 <= 60 and most <= 3


def test_choose_merge_caps_the_part_count():
    # equal-sized old parts that no ratio walk would merge: the cap still applies
    sizes = [10**k for k in range(12, 0, -1)]
    start = choose_merge(sizes, max_parts=8)
    assert start is not None and len(sizes[:start]) + 1 <= 8
    assert choose_merge([5]) is None and choose_merge([1000, 1]) is None


def test_records_column_is_the_v1_dataset_object():
    store = Store()
    ds = profile(7)
    ds.attributes["nan"] = {"t": "float64", "v": float("nan")}
    ref = store.write([("x", ds)], 1)
    cat = Catalog([ref], store.read_range)
    reader = cat.readers[0]
    offsets, data = reader.block(0)
    obj = msgpack.unpackb(data[offsets[0] : offsets[1]], raw=False)
    assert obj["id"] == 7 and obj["arrays"]["temp"]["slot"] == 7
    assert obj["attributes"]["cycle"] == {"t": "int64", "v": 7}
    got = cat.get("x").attributes["nan"]["v"]
    assert got != got


def test_merge_re_encodes_a_key_whose_kind_differs_between_parts():
    store = Store()

    def ds(i: int, value: dict) -> DatasetMeta:
        when = ArrayMeta(slot=i, dtype="timestamp_nanoseconds", dims=("t", "u"), shape=(2, 3), chunk_shape=(2, 3),
                         stats=Stats(6, 0, -(2**63) + 1, 2**62))  # fmt: skip
        return DatasetMeta(i, 1, {"k": value, "ok": {"t": "bool", "v": i % 2 == 0},
                                  "at": {"t": "timestamp_nanoseconds", "v": 10**18 + i}}, {"when": when})

    refs = [
        store.write([("a", ds(1, {"t": "int64", "v": 5})), ("b", ds(2, {"t": "int64", "v": -7}))], 1),
        store.write([("c", ds(3, {"t": "string", "v": "x"})), ("b", None)], 2),
        store.write([("d", ds(4, {"t": "float32", "v": [1.5], "k": "list"}))], 3),
        store.write([("e", ds(5, {"t": "int64", "v": [1, 2, 3, 4], "k": "ndarray", "s": [2, 2]}))], 4),
    ]
    _, buffers, merged = merge_parts(refs, store.read_range, "none", 5, secrets.token_bytes(16), True)
    store.files[merged.path] = b"".join(bytes(b) for b in buffers)
    before, after = Catalog(refs, store.read_range), Catalog([merged], store.read_range)
    assert after.names() == before.names() == ["a", "c", "d", "e"]
    for name in after.names():
        assert canonical(after.get(name)) == canonical(before.get(name))
    values, present = after.column("k")
    assert present.all() and values[0] == 5 and values[1] == "x" and values[2] == [1.5]
    assert values[3].tolist() == [[1, 2], [3, 4]]
    assert after.column("at")[0].dtype == np.dtype("datetime64[ns]")
    assert after.column("ok")[0].tolist() == [False, False, True, False]
    assert after.stats_column("when", "shape")[0].tolist() == [(2, 3)] * 4
    assert after.stats_column("when", "min_exact")[0].tolist() == [-(2**63) + 1] * 4
    after.verify()


@pytest.mark.parametrize("source", ["local", "memory"])
def test_parts_written_and_read_through_a_real_backend(tmp_path, source):
    from atlas.backends import resolve

    backend = resolve(tmp_path if source == "local" else f"memory://catalog-{secrets.token_hex(4)}", read_only=False)
    token = secrets.token_bytes(16)
    _, buffers, ref = write_part([(f"p{i}", profile(i)) for i in range(1, 1000)], "zstd", 1, token)
    backend.put(ref.path, buffers)
    _, buffers2, ref2 = write_part([("p5", None), ("q", profile(5000, 2))], "zstd", 2, secrets.token_bytes(16))
    backend.put(ref2.path, buffers2)
    if source == "local":
        assert (tmp_path / "_catalog" / ref.file).stat().st_size == ref.size
    commit = CommitObject(codec="zstd", generation=2, write_token=token.hex(), next_slot=6000, next_dataset_id=6000,
                          parts=[ref, ref2])  # fmt: skip
    data = encode_commit(commit, "msgpack", "zstd")
    back = decode_metadata(data, "msgpack", "zstd", "atlas.msgpack.zst")
    cat = Catalog(back.parts, lambda p, o, n: backend.get_ranges(p, [o], [n])[0])
    assert len(cat) == 999 and "p5" not in cat and cat.get("q").id == 5000
    assert canonical(cat.get("p999")) == canonical(profile(999))
    cat.verify()


# -- interned array schemas -------------------------------------------------------------------------


def varied(i: int, version: int = 1) -> DatasetMeta:
    """Datasets whose ``temp`` differs in dtype, rank, extents, fill and attributes (or is absent)."""
    kind = i % 7
    if kind == 0:
        return DatasetMeta(i, version, {"k": {"t": "int64", "v": i}}, {})  # no temp
    if kind == 1:
        temp = ArrayMeta(i, "float32", ("z",), (i % 5 + 1,), (4,), float("nan"), stats=Stats(1, 0, 0.5, 0.5))
    elif kind == 2:
        temp = ArrayMeta(i, "float32", ("z",), (24,), (24,), -0.0, {"units": {"t": "string", "v": "K"}})
    elif kind == 3:
        temp = ArrayMeta(i, "float32", ("z",), (24,), (24,), 0.0)
    elif kind == 4:
        temp = ArrayMeta(i, "int16", ("t", "z"), (3, i % 4), (2, 2), 7, stats=Stats(6, 1, -3, 9))
    elif kind == 5:
        temp = ArrayMeta(i, "string", (), (), (), "n/a")
    else:
        temp = ArrayMeta(i, "timestamp_nanoseconds", ("t",), (0,), (8,))
    return DatasetMeta(i, version, {}, {"temp": temp, "psal": ArrayMeta(10_000 + i, "float64", ("z",), (2,), (2,))})


def packed(am: ArrayMeta | None) -> bytes | None:
    """Everything of an array but its stats, NaN and the sign of zero included."""
    if am is None:
        return None
    obj = metadata.array_to_dict(am)
    obj.pop("stats", None)
    return msgpack.packb(obj)


def strip_schemas(store: Store, ref: PartRef) -> PartRef:
    """``ref`` as written before schema interning: no ``schema``/``schemas`` columns, no flag 4."""
    from atlas.catalog.layout import PartBuilder, decode_column
    from atlas.catalog.part import PartReader

    index = PartReader(ref, store.read_range).index
    data = store.files[ref.path]
    builder = PartBuilder(ref.max_generation, secrets.token_bytes(16), "none")
    for name, col in index.columns.items():
        if name.endswith((".schema", ".schemas")):
            continue
        stored = data[col.offset : col.offset + col.length]
        if name == "records":
            builder.columns[name] = [builder.size, col.length, col.length, 0, 0]
            builder.parts.append(stored)
            builder.size += col.length
        else:
            builder.add(name, decode_column(stored, col, None, "x").tobytes())
    arrays = [[a, flags & ~4] for a, flags in index.arrays]
    buffers, size, offset, length, digest = builder.finish(index.rows, index.block_rows, index.attributes, arrays)
    old = PartRef(ref.file.replace("-", "-0", 1)[:-5] + ".cat", size, offset, length, digest, ref.rows,
                  ref.min_generation, ref.max_generation)  # fmt: skip
    store.files[old.path] = b"".join(bytes(b) for b in buffers)
    return old


def test_array_metas_come_from_the_schema_columns_without_reading_a_record():
    store = Store()
    ref = store.write([(f"v{i:04d}", varied(i)) for i in range(1, 800)] + [("gone", None)], 1)
    cat = Catalog([ref], store.read_range)
    names = [*reversed(cat.names()), "gone", "nope", "v0001"]
    got, missing = cat.array_metas("temp", names)
    assert missing == [len(names) - 3, len(names) - 2]
    records = cat.readers[0].index.columns["records"]
    touched = [(o, n) for _, o, n in store.reads if o < records.offset + records.length and o + n > records.offset]
    assert touched == []  # no record block read
    for name, am in zip(names, got):
        expected = None if name in ("gone", "nope") else cat.arrays(name).get("temp")
        assert packed(am) == packed(expected), name
        assert am is None or am.stats is None
    assert [packed(a) for a in cat.array_metas("psal", names[:50])[0]] == [
        packed(cat.arrays(n).get("psal")) for n in names[:50]
    ]
    assert cat.array_metas("never", names[:5]) == ([None] * 5, [])
    cat.verify()


def test_the_schema_columns_follow_the_format():
    """``s{j}.schema`` is u32 codes into ``s{j}.schemas``, a MessagePack array of templates (§4.4)."""
    store = Store()
    rows = [(f"v{i:04d}", varied(i)) for i in range(1, 30)]
    ref = store.write(rows, 1, codec="none")
    data = store.files[ref.path]
    index = msgpack.unpackb(data[ref.index_offset : ref.index_offset + ref.index_length])
    j, flags = next((j, f) for j, (a, f) in enumerate(index["arrays"]) if a == "temp")
    assert flags & 4

    def column(name: str) -> bytes:
        offset, length, *_ = index["columns"][f"s{j}.{name}"]
        return data[offset : offset + length]

    codes = np.frombuffer(column("schema"), "<u4")
    templates = msgpack.unpackb(column("schemas"))
    state = np.frombuffer(column("state"), "u1")
    for (_, ds), code, st in zip(rows, codes.tolist(), state.tolist()):
        am = ds.arrays.get("temp")
        assert (st > 0) == (am is not None)
        if am is not None:
            obj = metadata.array_to_dict(am)
            assert templates[code] == {k: v for k, v in obj.items() if k not in ("slot", "shape", "stats")}
    # datasets built alike share one template: 6 kinds of temp, -0.0 and 0.0 fills told apart
    assert len(templates) == 6


def test_parts_without_schema_columns_read_through_records_and_merges_rebuild_them():
    store = Store()
    old = strip_schemas(store, store.write([(f"v{i:04d}", varied(i)) for i in range(1, 600)], 1))
    new = store.write([("v0003", varied(3004, 2)), ("v0004", None), ("w", varied(5, 2))], 2)
    cat = Catalog([old, new], store.read_range)
    assert cat.readers[0].schemas("temp") is None and cat.readers[1].schemas("temp") is not None
    names = cat.names()
    got, missing = cat.array_metas("temp", names)
    assert missing == [] and "v0004" not in names
    expected = [cat.arrays(n).get("temp") for n in names]
    assert [packed(a) for a in got] == [packed(a) for a in expected]
    assert packed(got[names.index("v0003")]) == packed(varied(3004).arrays["temp"])
    for drop in (True, False):
        _, buffers, merged = merge_parts([old, new], store.read_range, "zstd", 3, secrets.token_bytes(16), drop)
        store.files[merged.path] = b"".join(bytes(b) for b in buffers)
        after = Catalog([merged], store.read_range)
        assert after.readers[0].schemas("temp") is not None
        assert [packed(a) for a in after.array_metas("temp", names)[0]] == [packed(a) for a in expected]
        after.verify()
        # and merged again with a part that has the columns: codes remapped into one dictionary
        _, buffers, again = merge_parts([merged, new], store.read_range, "none", 4, secrets.token_bytes(16), drop)
        store.files[again.path] = b"".join(bytes(b) for b in buffers)
        final = Catalog([again], store.read_range)
        assert [packed(a) for a in final.array_metas("temp", names)[0]] == [packed(a) for a in expected]
        assert len(final.readers[0].schemas("temp").templates) == 6
        final.verify()


# -- the writer's fast paths give what the plain encoding gives -----------------------------------------


def test_record_encoder_writes_the_bytes_of_the_plain_encoding():
    from atlas.catalog.encoding import RecordEncoder, encode_record

    many = DatasetMeta(9, 2, {}, {f"a{k:02d}": ArrayMeta(k + 1, "uint8", ("x",), (k,), (4,), k) for k in range(20)})
    empty_stats = ArrayMeta(3, "float64", ("x",), (2,), (2,), float("inf"), stats=Stats(2, 2, None, None))
    odd = DatasetMeta(4, 1, {"v": {"v": 1.5, "t": "float64"}}, {"e": empty_stats})
    rows = [*(varied(i) for i in range(40)), *(profile(i) for i in range(1, 20)), many, odd, None]
    encoder = RecordEncoder()
    for ds in rows * 2:  # the second pass goes through the memoised schemas
        assert encoder.encode(ds) == encode_record(ds)


@pytest.mark.parametrize("order", ["sorted", "unsorted", "tuple"])
def test_a_part_refuses_two_rows_of_one_name_in_any_order(order):
    from atlas.catalog import write_part

    rows = [(f"d{i}", profile(i + 1)) for i in range(5)] + [("d2", None)]
    if order == "sorted":
        rows.sort(key=lambda r: r[0])
    elif order == "tuple":
        rows = tuple(reversed(rows))
    with pytest.raises(InvalidArgumentError, match="two rows of one dataset name"):
        write_part(rows, "zstd", 2, bytes(16))
    distinct = tuple(r for r in rows if r[1] is not None)  # any sequence, any order
    _file, _buffers, ref = write_part(distinct, "zstd", 2, bytes(16))
    assert ref.rows == 5


def _alike_block(change: str) -> list:
    """Rows made alike (one ``temp`` each), with one row changed as ``change`` says."""
    rows = [profile(i) for i in range(1, 40)]
    ds = rows[17]
    temp = ds.arrays["temp"]
    if change == "nan":
        temp.stats = Stats(24, 24, float("nan"), float("nan"))
    elif change == "inf":
        temp.stats = Stats(24, 0, -1.5, float("inf"))
    elif change == "none extremes":
        temp.stats = Stats(24, 24, None, None)
    elif change == "no stats":
        temp.stats = None
    elif change == "shape":
        temp.shape = (23,)
    elif change == "dims":
        temp.dims = ("z",)
    elif change == "fill":
        temp.fill_value = -1.0
    elif change == "array attribute":
        temp.attributes = {"units": {"t": "string", "v": "K"}}
    elif change == "version":
        ds.version += 1
    elif change == "two arrays":
        ds.arrays["psal"] = ArrayMeta(999, "float32", ("depth",), (24,), (24,), stats=Stats(24, 0, 1.0, 2.0))
    elif change == "other name":
        ds.arrays = {"psal": temp}
    elif change == "tombstone":
        rows[17] = None
    elif change == "float32 extremes":
        for other in rows:
            st = other.arrays["temp"].stats
            st.minimum, st.maximum = np.float32(st.minimum), np.float32(st.maximum)
    elif change == "int":
        for k, other in enumerate(rows):
            other.arrays["temp"].dtype = "int16"
            other.arrays["temp"].stats = Stats(24, k % 3, -k, 2**15 - 1)
    return rows


ALIKE_CHANGES = ["none", "float32 extremes", "int"]
OTHER_CHANGES = ["nan", "inf", "none extremes", "no stats", "shape", "dims", "fill", "array attribute", "version",
                 "two arrays", "other name", "tombstone"]  # fmt: skip


@pytest.mark.parametrize("change", ALIKE_CHANGES + OTHER_CHANGES)
def test_records_of_rows_made_alike_are_the_bytes_of_the_plain_encoding(change):
    """Rows made alike are joined from columns; any other block falls back to one row at a time."""
    import msgpack

    from atlas.catalog.encoding import RecordEncoder, encode_record

    rows = _alike_block(change)
    want = [encode_record(ds) for ds in rows]
    encoder = RecordEncoder()
    assert (encoder._alike(rows, None) is not None) == (change in ALIKE_CHANGES)
    assert encoder.encode_alike(rows) == want
    packed = [msgpack.packb(ds.attributes, use_bin_type=True) if ds is not None else b"" for ds in rows]
    assert RecordEncoder().encode_alike(rows, packed) == want


def _typed(i: int, k: int) -> dict:
    if k == 0:
        return {"t": "string", "v": f"s{i % 3}"}
    if k == 1:
        return {"v": i * 0.5, "t": "float64"} if i % 5 == 0 else {"t": "float64", "v": i * 0.5}  # other key order
    if k == 2:
        return {"t": "int64", "v": [i, i], "k": "list"} if i % 4 == 0 else {"t": "int64", "v": i}
    return {"t": "bool", "v": i % 2 == 0}


@pytest.mark.parametrize("orders", [0, 1, 3, 40])
def test_attribute_columns_whatever_the_key_orders(orders, monkeypatch):
    """Rows in one key order (0: and no tombstone), a few, or many (the per-key fallback): same columns."""
    from atlas.catalog import build

    monkeypatch.setattr(build, "_SPLIT_ROWS", 7)  # many chunks of rows, some mixing scalars and lists
    store = Store()
    rows = []
    for i in range(1, 400):
        if orders < 2:
            keys = ["k0", "k1", "k2", "k3"]
        elif orders < 40:
            keys = [f"k{(j + i % orders) % 4}" for j in range(4)]
        else:
            keys = [f"k{j}" for j in range(i % 4 + 1)]
        if orders == 40:
            keys += [f"x{i % 37}"]
        attrs = {key: _typed(i, int(key[1:]) if key[0] == "k" else 3) for key in keys}
        rows.append((f"r{i:04d}", DatasetMeta(i, 1, attrs, {}) if i % 50 or orders == 0 else None))
    cat = Catalog([store.write(rows, 1)], store.read_range)
    names = cat.names()
    live = {n: ds for n, ds in rows if ds is not None}
    for key in cat.attribute_keys():
        values, present = cat.column(key)
        for name, value, has in zip(names, values.tolist(), present.tolist()):
            typed = live[name].attributes.get(key)
            assert has == (typed is not None), (key, name)
            if typed is not None:
                assert value == attributes.to_python(attributes.decode(typed)), (key, name)
    assert [canonical(cat.get(n)) for n in names] == [canonical(live[n]) for n in names]


def test_merged_string_dictionaries_hold_the_used_values_sorted():
    store = Store()

    def ds(i: int, label: str) -> DatasetMeta:
        return DatasetMeta(i, 1, {"label": {"t": "string", "v": label}}, {})

    old = store.write([("a", ds(1, "zebra")), ("b", ds(2, "apple")), ("c", ds(3, "mango"))], 1)
    new = store.write([("b", ds(4, "kiwi")), ("d", ds(5, "zebra")), ("c", None)], 2)
    for drop in (True, False):
        _, buffers, merged = merge_parts([old, new], store.read_range, "zstd", 3, secrets.token_bytes(16), drop)
        store.files[merged.path] = b"".join(bytes(b) for b in buffers)
        reader = Catalog([merged], store.read_range).readers[0]
        codes, dictionary, present = reader.string_codes("label")
        assert dictionary.tolist() == ["kiwi", "zebra"]  # "apple" and "mango" were overwritten or deleted
        assert reader.names() == (["a", "b", "d"] if drop else ["a", "b", "c", "d"])
        assert dictionary[codes[present.astype(bool)]].tolist() == ["zebra", "kiwi", "zebra"]


@settings(max_examples=200, deadline=None)
@given(
    strategies.integers(1, 20).flatmap(
        lambda w: strategies.lists(strategies.binary(min_size=w, max_size=w), min_size=2, max_size=12)
    )
)
def test_rows_of_one_width_compare_as_their_bytes(rows):
    """The order check of names of one length compares rows as strings of bytes
    (NUL and high bytes included, widths on and off the 8-byte words)."""
    from atlas.catalog.part_names import _row_words, _words_ascending

    def ascending(rows: list[bytes]) -> bool:
        return _words_ascending(_row_words(np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), -1)))

    assert ascending(rows) == all(a < b for a, b in itertools.pairwise(rows))
    assert ascending(sorted(set(rows)))


def test_a_part_readers_key_and_array_maps_cannot_be_changed_by_a_caller():
    # The reader keeps one map of each and hands it to every caller: a caller writing
    # to it would change what every later lookup, merge or search of the part finds.
    store = Store()
    reader = PartReader(store.write([(f"p{i}", profile(i)) for i in range(1, 10)], 1), store.read_range)
    kinds, groups = reader.attribute_kinds(), reader.stats_groups()
    changes = (lambda: kinds.pop("lat"), lambda: kinds.__setitem__("lat", (9, "string")), lambda: kinds.clear(),
               lambda: groups.pop("temp"), lambda: groups.__setitem__("psal", (0, 0)), lambda: groups.clear())
    for change in changes:
        with pytest.raises((TypeError, AttributeError)):
            change()
    assert reader.attribute_kinds() is kinds and reader.stats_groups() is groups  # still made once
    assert sorted(kinds) == ["cycle", "lat", "platform", "tags"] and list(groups) == ["temp"]
    assert reader.attribute("lat", typed=True)[1].tolist() == [i / 7 for i in range(1, 10)]
    assert reader.stats("temp", "max")[0].tolist() == [float(i) for i in range(1, 10)]


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_a_record_block_outlives_the_buffer_it_was_read_from_and_cannot_be_written(codec):
    # A block stored raw is copied out of the bytes read (a reader may hand out a view
    # of a buffer it reuses, or of a mapped file); a decompressed one is a read-only view.
    store = Store()
    rows = [(f"p{i:03d}", profile(i)) for i in range(1, 300)]
    ref = store.write(rows, 1, codec)
    buffer = bytearray(store.files[ref.path])

    def read_range(_path: str, offset: int, length: int) -> memoryview:
        return memoryview(buffer)[offset : offset + length]

    reader = PartReader(ref, read_range)
    blocks = [reader.block(k) for k in range(reader.block_table().shape[0])]
    col = reader.index.columns["records"]
    buffer[col.offset : col.offset + col.length] = bytes(col.length)  # the buffer reused for something else
    for row, (name, ds) in enumerate(rows):
        block = blocks[row // reader.index.block_rows]
        assert canonical(reader.record(row, block)) == canonical(ds), name
        with pytest.raises(TypeError):
            block[1][0:1] = b"x"
