"""Golden stores of format versions 1 and 2: pin the on-disk format and the reader.

The stores under ``tests/data/golden/`` were written once by
``tests/data/golden/make_golden.py`` and are committed.  Every expected value here
is written literally (never recomputed by the generator), so a change to the
writer, the reader or the format shows up as a failure here.  A deliberate format
change bumps ``format_version`` and adds new golden stores; the v1 stores must keep
reading exactly as below for as long as the library claims to read format 1.

Besides the library's own reader, :func:`spec_read` is an independent reader built
from ``docs/format.md`` alone (numpy, json, msgpack, blosc2 and the ``xxhash``
package; nothing from ``atlas``), so the document and the files are checked against
each other too.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import Any

import blosc2
import msgpack
import numpy as np
import pytest
import xxhash

import atlas
from atlas import errors
from atlas.metadata import FORMAT_VERSION

GOLDEN = Path(__file__).parent / "data" / "golden"
STORES = ("v1-json-zstd", "v1-msgpack-lz4", "v1-json-none-raw")
NAN, INF = math.nan, math.inf
U64_MAX = 2**64 - 1


def _strs(*values: str) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _ts(*values: str) -> np.ndarray:
    return np.array(values, dtype="datetime64[ns]")


# -- expected content, literally ----------------------------------------------------------
# Per dataset: attributes as ``get_attribute`` returns them, and per array
# ``(dtype, dims, shape, chunk_shape, fill_value)``, ``(row_count, null_count, min, max)``
# and the full array as ``read_array`` returns it.

_GRID_TEMP = np.array(
    [
        [99.0] * 32 + [2.0, 2.5, 3.0, 0.0, 0.5, 1.0, 1.5] * 2 + [2.0, 2.5, 3.0, 0.0],
        [99.0] * 32 + [2.5, 3.0, 0.0, 0.5, 1.0, 1.5, 2.0] * 2 + [2.5, 3.0, 0.0, 0.5],
        [1.0, 1.5, 2.0, 2.5, 3.0, 0.0, 0.5] * 7 + [1.0],
        [1.5, 2.0, 2.5, 3.0, 0.0, 0.5, 1.0] * 7 + [1.5],
    ]
)

EXPECTED: dict[str, dict[str, Any]] = {
    "v1-json-zstd": {
        "generation": 2,
        "codec": "zstd",
        "manifest": "atlas.json.zst",
        "datasets": {
            "empty": {"attributes": {}, "arrays": {}},
            "station_1": {
                "attributes": {
                    "int": 42,
                    "float": 1.5,
                    "nan": NAN,
                    "inf": INF,
                    "neg_inf": -INF,
                    "text": "Zürich 温度 🌡",
                    "flag": True,
                    "ints": [1, 2, 3],
                    "mixed": [1.0, 2.5, NAN, -INF],
                    "empty": [],
                    "words": ["a", "β", ""],
                    "matrix": np.array([[1, 2, 3], [4, 5, 6]], dtype="int16"),
                    "f32": np.float32(0.1),
                    "small": np.int8(7),
                    "huge": np.uint64(18446744073709551615),
                    "when": np.datetime64("2024-01-02T03:04:05.123456789", "ns"),
                    "day": np.datetime64("2024-01-02T00:00:00", "ns"),
                    "times": _ts("1970-01-01T00:00:00.000000001", "NaT"),
                    "f32s": np.array([1.5, NAN, INF], dtype="float32"),
                    "bools": np.array([True, False]),
                    "strs": _strs("x", "yy"),
                },
                "arrays": {
                    "temp": (
                        ("float32", ["time"], [10], [4], None),
                        (10, 1, np.float32(0.5), np.float32(41.0)),
                        np.array([0.5, 1.5, 2.5, NAN, 40.0, 41.0, 6.5, 7.5, 8.5, 9.5], dtype="float32"),
                    ),
                    "count": (
                        ("int32", ["y", "x"], [5, 3], [2, 2], None),
                        (15, 8, np.int32(1), np.int32(10)),
                        np.array([[1, 2, 0], [3, 4, 0], [5, 6, 0], [10, 0, 0], [0, 0, 0]], dtype="int32"),
                    ),
                    "series": (
                        ("int64", ["t"], [300], [128], None),
                        (300, 0, np.int64(-100), np.int64(797)),
                        np.arange(-100, 800, 3, dtype="int64"),
                    ),
                    "flag": (
                        ("bool", ["t"], [6], [4], None),
                        (6, 0, False, True),
                        np.array([True, False, True, True, False, True]),
                    ),
                    "when": (
                        ("timestamp_nanoseconds", ["t"], [4], [4], None),
                        (
                            4,
                            1,
                            np.datetime64("1969-12-31T23:59:59.999999999", "ns"),
                            np.datetime64("2262-04-11T23:47:16.854775807", "ns"),
                        ),
                        _ts(
                            "2024-01-01T00:00:00",
                            "NaT",
                            "1969-12-31T23:59:59.999999999",
                            "2262-04-11T23:47:16.854775807",
                        ),
                    ),
                    "label": (
                        ("string", ["t"], [5], [2], "n/a"),
                        (5, 2, "", "温度"),
                        _strs("Ω", "", "温度", "n/a", "n/a"),
                    ),
                    "scalar": (
                        ("float64", [], [], [], None),
                        (1, 0, np.float64(3.25), np.float64(3.25)),
                        np.array(3.25),
                    ),
                    "i8": (
                        ("int8", ["t"], [4], [4], np.int8(-1)),
                        (4, 2, np.int8(-128), np.int8(127)),
                        np.array([-128, 127, -1, -1], dtype="int8"),
                    ),
                    "u8": (
                        ("uint8", ["t"], [3], [2], None),
                        (3, 0, np.uint8(0), np.uint8(255)),
                        np.array([0, 255, 7], dtype="uint8"),
                    ),
                    "i16": (
                        ("int16", ["t"], [3], [3], None),
                        (3, 0, np.int16(-32768), np.int16(32767)),
                        np.array([-32768, 0, 32767], dtype="int16"),
                    ),
                    "u16": (
                        ("uint16", ["t"], [2], [2], np.uint16(0)),
                        (2, 1, np.uint16(65535), np.uint16(65535)),
                        np.array([0, 65535], dtype="uint16"),
                    ),
                    "u32": (
                        ("uint32", ["t"], [2], [2], None),
                        (2, 0, np.uint32(1), np.uint32(4294967295)),
                        np.array([4294967295, 1], dtype="uint32"),
                    ),
                    "u64": (
                        ("uint64", ["t"], [3], [3], np.uint64(18446744073709551615)),
                        (3, 1, np.uint64(0), np.uint64(9223372036854775808)),
                        np.array([0, 9223372036854775808, 18446744073709551615], dtype="uint64"),
                    ),
                    "f64": (
                        ("float64", ["y", "x"], [2, 2], [1, 2], np.float64(-INF)),
                        (4, 1, np.float64(-0.0), np.float64(INF)),
                        np.array([[INF, -0.0], [1e300, -INF]]),
                    ),
                    "Air Temp": (
                        ("float64", ["t"], [3], [2], None),
                        (3, 1, np.float64(-1.25), np.float64(2.0)),
                        np.array([NAN, -1.25, 2.0]),
                    ),
                },
            },
            "station_2": {
                "attributes": {"note": "second flush"},
                "arrays": {
                    "temp": (
                        ("float32", ["time"], [6], [4], np.float32(NAN)),
                        (6, 4, np.float32(20.0), np.float32(21.0)),
                        np.array([NAN, NAN, 20.0, 21.0, NAN, NAN], dtype="float32"),
                    ),
                    "count": (
                        ("int32", ["y", "x"], [2, 2], [2, 2], None),
                        (4, 4, None, None),
                        np.zeros((2, 2), dtype="int32"),
                    ),
                },
            },
        },
    },
    "v1-msgpack-lz4": {
        "generation": 2,
        "codec": "lz4",
        "manifest": "atlas.msgpack.lz4",
        "datasets": {
            "grid": {
                "attributes": {"title": "grid ✓", "nan": NAN, "limits": np.array([-INF, 0.0, INF])},
                "arrays": {
                    "temp": (
                        ("float64", ["y", "x"], [4, 50], [2, 32], None),
                        (200, 0, np.float64(0.0), np.float64(99.0)),
                        _GRID_TEMP,
                    ),
                    "name": (
                        ("string", ["i"], [3], [3], None),
                        (3, 2, "x", "x"),
                        _strs("x", "", ""),
                    ),
                    "ok": (
                        ("bool", ["i"], [10], [10], None),
                        (10, 5, False, True),
                        np.array([True, True, False, True, True, False, False, False, False, False]),
                    ),
                },
            },
            "other": {
                "attributes": {"scale": np.float32(0.25)},
                "arrays": {
                    "temp": (
                        ("float64", ["y", "x"], [4, 50], [2, 32], None),
                        (200, 0, np.float64(2.5), np.float64(2.5)),
                        np.full((4, 50), 2.5),
                    ),
                },
            },
        },
    },
    "v1-json-none-raw": {
        "generation": 2,
        "codec": "none",
        "manifest": "atlas.json",
        "datasets": {
            "d": {
                "attributes": {"units": "K", "scale": np.float32(0.5), "nan": NAN},
                "arrays": {
                    "a": (
                        ("int16", ["i"], [5], [2], None),
                        (5, 2, np.int16(7), np.int16(30)),
                        np.array([0, 10, 7, 30, 0], dtype="int16"),
                    ),
                    "s": (
                        ("string", ["i"], [3], [2], "-"),
                        (3, 1, "ab", "ç"),
                        _strs("ab", "ç", "-"),
                    ),
                    "t": (
                        ("timestamp_nanoseconds", ["i"], [2], [2], None),
                        (2, 0, np.datetime64(0, "ns"), np.datetime64(86_400_000_000_000, "ns")),
                        _ts("1970-01-01T00:00:00", "1970-01-02T00:00:00"),
                    ),
                    "b": (
                        ("bool", ["i"], [3], [2], None),
                        (3, 0, False, True),
                        np.array([True, False, True]),
                    ),
                    "z": (
                        ("float32", [], [], [], np.float32(0.0)),
                        (1, 0, np.float32(1.5), np.float32(1.5)),
                        np.array(1.5, dtype="float32"),
                    ),
                    "Air Temp": (
                        ("float64", ["i"], [3], [3], None),
                        (3, 0, np.float64(1.0), np.float64(3.0)),
                        np.array([1.0, 2.0, 3.0]),
                    ),
                },
            },
        },
    },
}

# The complete manifest of the raw store, as decoded JSON.
RAW_MANIFEST = {
    "format": "atlas",
    "format_version": 1,
    "generation": 2,
    "write_token": "c751c7af6f9602482f5c0c23b94ae9b5",
    "codec": "none",
    "next_slot": 7,
    "next_dataset_id": 2,
    "datasets": {
        "d": {
            "id": 1,
            "version": 2,
            "attributes": {
                "units": {"t": "string", "v": "K"},
                "scale": {"t": "float32", "v": 0.5},
                "nan": {"t": "float64", "v": "NaN"},
            },
            "arrays": {
                "a": {
                    "slot": 1,
                    "dtype": "int16",
                    "dims": ["i"],
                    "shape": [5],
                    "chunk_shape": [2],
                    "fill_value": None,
                    "stats": {"row_count": 5, "null_count": 2, "min": 7, "max": 30},
                },
                "s": {
                    "slot": 2,
                    "dtype": "string",
                    "dims": ["i"],
                    "shape": [3],
                    "chunk_shape": [2],
                    "fill_value": "-",
                    "stats": {"row_count": 3, "null_count": 1, "min": "ab", "max": "ç"},
                },
                "t": {
                    "slot": 3,
                    "dtype": "timestamp_nanoseconds",
                    "dims": ["i"],
                    "shape": [2],
                    "chunk_shape": [2],
                    "fill_value": None,
                    "stats": {"row_count": 2, "null_count": 0, "min": 0, "max": 86400000000000},
                },
                "b": {
                    "slot": 4,
                    "dtype": "bool",
                    "dims": ["i"],
                    "shape": [3],
                    "chunk_shape": [2],
                    "fill_value": None,
                    "stats": {"row_count": 3, "null_count": 0, "min": False, "max": True},
                },
                "z": {
                    "slot": 5,
                    "dtype": "float32",
                    "dims": [],
                    "shape": [],
                    "chunk_shape": [],
                    "fill_value": 0.0,
                    "stats": {"row_count": 1, "null_count": 0, "min": 1.5, "max": 1.5},
                },
                "Air Temp": {
                    "slot": 6,
                    "dtype": "float64",
                    "dims": ["i"],
                    "shape": [3],
                    "chunk_shape": [3],
                    "fill_value": None,
                    "stats": {"row_count": 3, "null_count": 0, "min": 1.0, "max": 3.0},
                },
            },
        }
    },
    "arrays": {
        "Air Temp": {
            "dir": "_41ir_20_54emp",
            "segments": [["000000000001-cf6c60325d218bd1.af", 240, 128, 80, 7096345908467882513, 1]],
        },
        "a": {
            "dir": "a",
            "segments": [
                ["000000000001-cf6c60325d218bd1.af", 384, 192, 160, 4462941815808738826, 2],
                ["000000000002-c751c7af6f960248.af", 240, 128, 80, 13155370861315298432, 1],
            ],
        },
        "b": {
            "dir": "b",
            "segments": [["000000000001-cf6c60325d218bd1.af", 384, 192, 160, 12750526448089903203, 2]],
        },
        "s": {
            "dir": "s",
            "segments": [["000000000001-cf6c60325d218bd1.af", 240, 128, 80, 10224195465737584271, 1]],
        },
        "t": {
            "dir": "t",
            "segments": [["000000000001-cf6c60325d218bd1.af", 240, 128, 80, 18235391361772448671, 1]],
        },
        "z": {
            "dir": "z",
            "segments": [["000000000001-cf6c60325d218bd1.af", 240, 128, 80, 13494934983832155069, 1]],
        },
    },
}

# Families of the two compressed stores: array name -> (dir, [(segment file, records)]).
FAMILIES = {
    "v1-json-zstd": {
        "Air Temp": ("_41ir_20_54emp", [("000000000001-93cedee8fa842ff7.af", 2)]),
        "count": (
            "count",
            [("000000000001-93cedee8fa842ff7.af", 2), ("000000000002-3d8cd75778f63991.af", 1)],
        ),
        "f64": ("f64", [("000000000001-93cedee8fa842ff7.af", 2)]),
        "flag": ("flag", [("000000000001-93cedee8fa842ff7.af", 2)]),
        "i16": ("i16", [("000000000001-93cedee8fa842ff7.af", 1)]),
        "i8": ("i8", [("000000000001-93cedee8fa842ff7.af", 1)]),
        "label": (
            "label",
            [("000000000001-93cedee8fa842ff7.af", 2), ("000000000002-3d8cd75778f63991.af", 1)],
        ),
        "scalar": ("scalar", [("000000000001-93cedee8fa842ff7.af", 1)]),
        "series": ("series", [("000000000001-93cedee8fa842ff7.af", 3)]),
        # 5 records in generation 1: station_1 (slot 1) x3, station_2 (slot 16), the deleted "doomed" (slot 18)
        "temp": (
            "temp",
            [("000000000001-93cedee8fa842ff7.af", 5), ("000000000002-3d8cd75778f63991.af", 1)],
        ),
        "u16": ("u16", [("000000000001-93cedee8fa842ff7.af", 1)]),
        "u32": ("u32", [("000000000001-93cedee8fa842ff7.af", 1)]),
        "u64": ("u64", [("000000000001-93cedee8fa842ff7.af", 1)]),
        "u8": ("u8", [("000000000001-93cedee8fa842ff7.af", 2)]),
        "when": ("when", [("000000000001-93cedee8fa842ff7.af", 1)]),
    },
    "v1-msgpack-lz4": {
        "name": ("name", [("000000000001-05d5e8c8f4a82177.af", 1)]),
        "ok": ("ok", [("000000000001-05d5e8c8f4a82177.af", 1)]),
        "temp": (
            "temp",
            [("000000000001-05d5e8c8f4a82177.af", 8), ("000000000002-d1b03fe129b3ab13.af", 1)],
        ),
    },
}


# -- comparison helpers ------------------------------------------------------------------------


# The format 2 golden store (tests/data/golden/make_golden_v2.py): v1-json-zstd upgraded
# (generation 3), then dataset ``late`` created and ``empty`` deleted (generation 4).
EXPECTED["v2-json-zstd"] = {
    **EXPECTED["v1-json-zstd"],
    "generation": 4,
    "datasets": {
        **{k: v for k, v in EXPECTED["v1-json-zstd"]["datasets"].items() if k != "empty"},
        "late": {"attributes": {"k": 7}, "arrays": {}},
    },
}
# The same history written by a writer that interns array schemas (make_golden_v2_schemas.py).
EXPECTED["v2-schemas-json-zstd"] = EXPECTED["v2-json-zstd"]
V2S_LIVE_PART = "000000000004-bcf68efa210e8d80.cat"
V2_LIVE_PART = "000000000004-a05d071e5d5c26bd.cat"
V2_RETIRED_PART = "000000000003-5a491411e60703ac.cat"


def same(actual: Any, expected: Any, where: str = "") -> None:
    """Exact equality including types, dtypes, NaN and the sign of zero."""
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{where}: {actual!r} is not an ndarray"
        assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
        if expected.dtype == object:
            assert all(type(v) is str for v in actual.reshape(-1).tolist()), where
            assert actual.reshape(-1).tolist() == expected.reshape(-1).tolist(), where
        elif expected.dtype.kind == "f":
            assert actual.tobytes() == expected.tobytes() or (
                np.array_equal(actual, expected, equal_nan=True)
                and np.array_equal(np.signbit(actual), np.signbit(expected))
            ), f"{where}: {actual!r} != {expected!r}"
        else:
            assert actual.tobytes() == expected.tobytes(), f"{where}: {actual!r} != {expected!r}"
        return
    if isinstance(expected, list):
        assert type(actual) is list and len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same(a, e, f"{where}[{i}]")
        return
    assert type(actual) is type(expected), f"{where}: {actual!r} ({type(actual)}) != {expected!r} ({type(expected)})"
    if isinstance(expected, (float, np.floating)):
        if math.isnan(expected):
            assert math.isnan(actual), f"{where}: {actual!r} is not NaN"
        else:
            assert actual == expected and math.copysign(1, actual) == math.copysign(1, expected), (
                f"{where}: {actual!r} != {expected!r}"
            )
    elif isinstance(expected, np.datetime64):
        assert actual.dtype == expected.dtype and actual.view("<i8") == expected.view("<i8"), where
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _open(name: str) -> atlas.Atlas:
    return atlas.Atlas.open(GOLDEN / name, mode="r")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# -- the library reads the golden stores exactly ----------------------------------------------


@pytest.mark.parametrize("name", (*STORES, "v2-json-zstd", "v2-schemas-json-zstd"))
def test_golden_store_content(name):
    exp = EXPECTED[name]
    before = _files(GOLDEN / name)
    store = _open(name)
    try:
        assert store.read_only
        assert store.generation == exp["generation"]
        assert store.codec == exp["codec"]
        assert store.list_datasets() == sorted(exp["datasets"])
        assert store.list_arrays() == sorted({a for d in exp["datasets"].values() for a in d["arrays"]})
        for ds_name, ds_exp in exp["datasets"].items():
            ds = store.open_dataset(ds_name)
            attrs = ds.attributes()
            assert list(attrs) == list(ds_exp["attributes"]), f"{ds_name}: attribute names/order"
            for key, value in ds_exp["attributes"].items():
                same(attrs[key], value, f"{name}/{ds_name} attribute {key!r}")
                same(ds.get_attribute(key), value, f"{name}/{ds_name} get_attribute {key!r}")
            assert ds.list_arrays() == sorted(ds_exp["arrays"])
            for arr, (meta, stats, data) in ds_exp["arrays"].items():
                where = f"{name}/{ds_name}/{arr}"
                dtype, dims, shape, chunk_shape, fill = meta
                got = ds.array_meta(arr)
                assert list(got) == ["dtype", "shape", "chunk_shape", "dimension_names", "fill_value"]
                assert (got["dtype"], got["dimension_names"], got["shape"], got["chunk_shape"]) == (
                    dtype,
                    dims,
                    shape,
                    chunk_shape,
                ), where
                if fill is None:
                    assert got["fill_value"] is None, where
                else:
                    same(got["fill_value"], fill, f"{where} fill_value")
                st = ds.array_stats(arr)
                assert (st["row_count"], st["null_count"]) == stats[:2], f"{where} stats {st}"
                for key, value in zip(("min", "max"), stats[2:], strict=True):
                    if value is None:
                        assert st[key] is None, f"{where} stats {key}"
                    else:
                        same(st[key], value, f"{where} stats {key}")
                same(ds.read_array(arr), data, f"{where} data")
    finally:
        store.close()
    assert _files(GOLDEN / name) == before, "a read-only open must not change the golden store"


@pytest.mark.parametrize("name", STORES)
def test_golden_store_has_only_format_files(name):
    root = GOLDEN / name
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert EXPECTED[name]["manifest"] in files
    assert not any(f.startswith(".") or "/." in f for f in files), files  # no .atlas.lock, no temp files
    assert all(f == EXPECTED[name]["manifest"] or f.endswith(".af") for f in files), files


def test_raw_manifest_is_pinned_exactly():
    raw = (GOLDEN / "v1-json-none-raw" / "atlas.json").read_bytes()
    assert raw.startswith(b'{"format":"atlas","format_version":1,')
    assert json.loads(raw.decode("utf-8")) == RAW_MANIFEST
    # byte for byte: compact separators, non-ASCII as UTF-8 (not \u escapes), keys in this order, no newline
    assert raw == json.dumps(RAW_MANIFEST, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    assert b'"max":"\xc3\xa7"' in raw
    assert list(json.loads(raw)) == [
        "format",
        "format_version",
        "generation",
        "write_token",
        "codec",
        "next_slot",
        "next_dataset_id",
        "datasets",
        "arrays",
    ]


@pytest.mark.parametrize("name", ["v1-json-zstd", "v1-msgpack-lz4"])
def test_compressed_manifest_families_and_header(name):
    manifest = _load_manifest(GOLDEN / name)
    assert manifest["format"] == "atlas"
    assert manifest["format_version"] == 1
    assert manifest["generation"] == 2
    expected_families = FAMILIES[name]
    got = {n: (fam["dir"], [(seg[0], seg[5]) for seg in fam["segments"]]) for n, fam in manifest["arrays"].items()}
    assert got == expected_families


def test_typed_attribute_and_value_encoding_is_pinned():
    manifest = _load_manifest(GOLDEN / "v1-json-zstd")
    assert (manifest["generation"], manifest["write_token"], manifest["codec"]) == (
        2,
        "3d8cd75778f6399136882be0ad40e77a",
        "zstd",
    )
    assert (manifest["next_slot"], manifest["next_dataset_id"]) == (19, 5)
    assert {n: (d["id"], d["version"]) for n, d in manifest["datasets"].items()} == {
        "station_1": (1, 2),
        "station_2": (2, 2),
        "empty": (4, 2),
    }
    assert manifest["datasets"]["empty"] == {"id": 4, "version": 2, "attributes": {}, "arrays": {}}
    st1 = manifest["datasets"]["station_1"]
    assert st1["attributes"] == {
        "int": {"t": "int64", "v": 42},
        "float": {"t": "float64", "v": 1.5},
        "nan": {"t": "float64", "v": "NaN"},
        "inf": {"t": "float64", "v": "Infinity"},
        "neg_inf": {"t": "float64", "v": "-Infinity"},
        "text": {"t": "string", "v": "Zürich 温度 🌡"},
        "flag": {"t": "bool", "v": True},
        "ints": {"t": "int64", "v": [1, 2, 3], "k": "list"},
        "mixed": {"t": "float64", "v": [1.0, 2.5, "NaN", "-Infinity"], "k": "list"},
        "empty": {"t": "float64", "v": [], "k": "list"},
        "words": {"t": "string", "v": ["a", "β", ""], "k": "list"},
        "matrix": {"t": "int16", "v": [1, 2, 3, 4, 5, 6], "k": "ndarray", "s": [2, 3]},
        "f32": {"t": "float32", "v": 0.10000000149011612},
        "small": {"t": "int8", "v": 7},
        "huge": {"t": "uint64", "v": 18446744073709551615},
        "when": {"t": "timestamp_nanoseconds", "v": 1704164645123456789},
        "day": {"t": "timestamp_nanoseconds", "v": 1704153600000000000},
        "times": {"t": "timestamp_nanoseconds", "v": [1, -9223372036854775808], "k": "ndarray", "s": [2]},
        "f32s": {"t": "float32", "v": [1.5, "NaN", "Infinity"], "k": "ndarray", "s": [3]},
        "bools": {"t": "bool", "v": [True, False], "k": "ndarray", "s": [2]},
        "strs": {"t": "string", "v": ["x", "yy"], "k": "ndarray", "s": [2]},
    }
    arrays = st1["arrays"]
    assert {a: m["slot"] for a, m in arrays.items()} == {
        "temp": 1,
        "count": 2,
        "series": 3,
        "flag": 4,
        "when": 5,
        "label": 6,
        "scalar": 7,
        "i8": 8,
        "u8": 9,
        "i16": 10,
        "u16": 11,
        "u32": 12,
        "u64": 13,
        "f64": 14,
        "Air Temp": 15,
    }
    assert arrays["f64"]["fill_value"] == "-Infinity"
    assert arrays["f64"]["stats"] == {"row_count": 4, "null_count": 1, "min": -0.0, "max": "Infinity"}
    assert math.copysign(1, arrays["f64"]["stats"]["min"]) == -1
    assert arrays["u64"]["fill_value"] == U64_MAX
    assert arrays["when"]["stats"] == {"row_count": 4, "null_count": 1, "min": -1, "max": 9223372036854775807}
    assert arrays["scalar"] == {
        "slot": 7,
        "dtype": "float64",
        "dims": [],
        "shape": [],
        "chunk_shape": [],
        "fill_value": None,
        "stats": {"row_count": 1, "null_count": 0, "min": 3.25, "max": 3.25},
    }
    st2 = manifest["datasets"]["station_2"]["arrays"]
    assert st2["temp"]["fill_value"] == "NaN"
    assert (st2["temp"]["slot"], st2["count"]["slot"]) == (16, 17)
    assert st2["count"]["stats"] == {"row_count": 4, "null_count": 4, "min": None, "max": None}


def test_msgpack_manifest_encoding():
    raw = blosc2.decompress2((GOLDEN / "v1-msgpack-lz4" / "atlas.msgpack.lz4").read_bytes())
    manifest = msgpack.unpackb(raw, raw=False)
    assert manifest["write_token"] == "d1b03fe129b3ab13850c9ed8d618d18d"
    assert (manifest["next_slot"], manifest["next_dataset_id"]) == (5, 3)
    grid = manifest["datasets"]["grid"]
    assert (grid["id"], grid["version"]) == (1, 2)
    assert manifest["datasets"]["other"]["version"] == 1  # untouched by the second commit
    limits = {"t": "float64", "v": ["-Infinity", 0.0, "Infinity"], "k": "ndarray", "s": [3]}
    assert grid["attributes"]["limits"] == limits
    assert grid["attributes"]["nan"] == {"t": "float64", "v": "NaN"}
    assert manifest["datasets"]["other"]["attributes"] == {"scale": {"t": "float32", "v": 0.25}}


# -- byte level ------------------------------------------------------------------------------------

MAGIC = bytes.fromhex("89 41 54 4c 41 53 0d 0a")
END_MAGIC = b"ATLASEND"
RECORD = np.dtype(
    [
        ("slot", "<u8"),
        ("chunk", "<u8"),
        ("offset", "<u8"),
        ("nbytes", "<u8"),
        ("raw_nbytes", "<u8"),
        ("checksum", "<u8"),
        ("null_count", "<u8"),
        ("min", "<u8"),
        ("max", "<u8"),
        ("codec", "u1"),
        ("flags", "u1"),
        ("reserved", "V6"),
    ]
)


def test_segment_bytes_are_pinned():
    root = GOLDEN / "v1-json-none-raw"
    data = (root / "a" / "000000000001-cf6c60325d218bd1.af").read_bytes()
    assert len(data) == 384
    assert data[:8] == MAGIC
    version, flags, header_size, generation, token = struct.unpack("<HHIQ16s", data[8:40])
    assert (version, flags, header_size, generation) == (1, 0, 40, 1)
    assert token.hex() == "cf6c60325d218bd144340663cd4b8f32"
    assert data[40:64] == bytes(24)
    # footer: index offset, index length, index checksum, end magic
    index_offset, index_length, index_checksum, end = struct.unpack("<QQQ8s", data[-32:])
    assert (index_offset, index_length, index_checksum, end) == (192, 160, 4462941815808738826, END_MAGIC)
    assert index_offset + index_length + 32 == len(data)
    index = data[index_offset : index_offset + index_length]
    assert xxhash.xxh64_intdigest(index, seed=0) == index_checksum
    records = np.frombuffer(index, RECORD)
    assert RECORD.itemsize == 80
    rows = [(*(int(r[f]) for f in RECORD.names[:-1]), bytes(r["reserved"])) for r in records]
    # slot, chunk, offset, nbytes, raw_nbytes, checksum, null_count, min, max, codec, flags, reserved
    assert rows == [
        (1, 0, 64, 5, 5, 1981829700558632057, 1, 10, 10, 0, 1, bytes(6)),
        (1, 1, 128, 4, 4, 8109180813688612927, 0, 2**64 - 20, 30, 0, 0, bytes(6)),
    ]
    # chunk 0 holds cells 0..1 = [unwritten 0, 10] and the written mask 0b10
    assert data[64:69] == bytes.fromhex("0000 0a00 02")
    assert data[69:128] == bytes(59)
    # chunk 1 holds cells 2..3 = [-20, 30] (generation 1; overwritten by generation 2)
    assert data[128:132] == bytes.fromhex("ecff 1e00")
    assert xxhash.xxh64_intdigest(data[64:69]) == 1981829700558632057
    assert xxhash.xxh64_intdigest(data[128:132]) == 8109180813688612927

    newer = (root / "a" / "000000000002-c751c7af6f960248.af").read_bytes()
    assert struct.unpack("<Q", newer[16:24]) == (2,)
    assert newer[64:68] == bytes.fromhex("0700 1e00")  # [7, 30] wins over [-20, 30]

    strings = (root / "s" / "000000000001-cf6c60325d218bd1.af").read_bytes()
    # count 2 | offsets 0, 2, 4 | "ab" "ç"
    assert strings[64:100] == (struct.pack("<QQQQ", 2, 0, 2, 4) + "abç".encode())
    zero_d = (root / "z" / "000000000001-cf6c60325d218bd1.af").read_bytes()
    assert zero_d[64:68] == struct.pack("<f", 1.5)
    ts = (root / "t" / "000000000001-cf6c60325d218bd1.af").read_bytes()
    assert ts[64:80] == struct.pack("<qq", 0, 86_400_000_000_000)
    bools = (root / "b" / "000000000001-cf6c60325d218bd1.af").read_bytes()
    assert bools[64:66] == b"\x01\x00" and bools[128:129] == b"\x01"  # edge chunk of one cell


def test_manifest_json_has_format_version_1():
    raw = json.loads((GOLDEN / "v1-json-none-raw" / "atlas.json").read_text("utf-8"))
    assert raw["format"] == "atlas" and raw["format_version"] == 1
    assert FORMAT_VERSION == 1


@pytest.mark.parametrize("name", ["v2-json-zstd", "v2-schemas-json-zstd"])
def test_golden_v2_bulk_reads_with_and_without_schema_columns(name):
    """``v2-json-zstd``'s part predates interned schemas (``docs/format-v2.md`` §4.4): read through records."""
    store = _open(name)
    try:
        catalog = store.session.state().catalog
        assert catalog is not None
        assert [r.schemas("temp") is None for r in catalog._readers] == [name == "v2-json-zstd"]
        names = store.list_datasets()
        for array in store.list_arrays():
            got = store.read_array_across(array, names)
            for name, value in zip(names, got):
                ds = store.open_dataset(name)
                if not ds.has_array(array):
                    assert value is None, (name, array)
                else:
                    same(np.asarray(value), ds.read_array(array), f"{name}/{array}")  # 0-d: a numpy scalar
    finally:
        store.close()


def test_golden_v2_bytes_are_pinned():
    """The v2 golden store read from docs/format-v2.md alone (no atlas code)."""
    root = GOLDEN / "v2-json-zstd"
    commit = json.loads(blosc2.decompress2((root / "atlas.json.zst").read_bytes()))
    assert list(commit) == [
        "format", "format_version", "generation", "write_token", "codec", "next_slot", "next_dataset_id",
        "arrays", "retired", "parts",
    ]  # fmt: skip
    assert (commit["format_version"], commit["generation"], commit["next_dataset_id"]) == (2, 4, 6)
    assert commit["write_token"] == "a05d071e5d5c26bdeeff4ccf7d603be7"
    assert commit["retired"] == [["_catalog", V2_RETIRED_PART, 1800000000000]]
    assert commit["parts"] == [[V2_LIVE_PART, 10345, 4449, 5864, 4052403297320250222, 3, 3, 4]]
    assert sorted(p.name for p in (root / "_catalog").iterdir()) == [V2_RETIRED_PART, V2_LIVE_PART]
    data = (root / "_catalog" / V2_LIVE_PART).read_bytes()
    assert len(data) == 10345 and data[:8] == b"\x89ATLCAT\n"
    version, flags, header, generation, token = struct.unpack("<HHIQ16s", data[8:40])
    assert (version, flags, header, generation, token.hex()) == (1, 0, 40, 4, commit["write_token"])
    assert struct.unpack("<QQQ8s", data[-32:]) == (4449, 5864, 4052403297320250222, b"ATLASCAT")
    raw_index = data[4449 : 4449 + 5864]
    assert xxhash.xxh64_intdigest(raw_index) == 4052403297320250222
    index = msgpack.unpackb(raw_index)
    assert (index["rows"], index["block_rows"]) == (3, 256)
    assert ["k", "int64"] in index["attributes"] and ["text", "string"] in index["attributes"]
    assert [a for a, _ in index["arrays"]][:3] == ["Air Temp", "count", "f64"]

    def column(name: str) -> bytes:
        offset, length, raw_length, digest, codec = index["columns"][name]
        stored = data[offset : offset + length]
        assert xxhash.xxh64_intdigest(stored) == digest, name
        out = stored if codec == 0 else blosc2.decompress2(stored)
        assert len(out) == raw_length, name
        return bytes(out)

    assert column("name") == b"late\xffstation_1\xffstation_2\xff"
    assert np.frombuffer(column("tombstone"), "u1").tolist() == [0, 0, 0]
    assert np.frombuffer(column("version"), "<u8").tolist() == [4, 2, 2]
    ids = np.frombuffer(column("id"), "<u8").tolist()
    k = [a for a, _ in index["attributes"]].index("k")
    assert np.frombuffer(column(f"a{k}.present"), "u1").tolist() == [1, 0, 0]
    assert np.frombuffer(column(f"a{k}.values"), "<i8").tolist() == [7, 0, 0]
    # records: one block; offsets table then one MessagePack v1 dataset object per row
    blocks = np.frombuffer(column("record_blocks"), "<u8").reshape(-1, 5)
    assert blocks.shape == (1, 5)
    off, length, raw_length, digest, codec = (int(v) for v in blocks[0])
    records_at = index["columns"]["records"][0]
    stored = data[records_at + off : records_at + off + length]
    assert xxhash.xxh64_intdigest(stored) == digest
    block = bytes(stored if codec == 0 else blosc2.decompress2(stored))
    assert len(block) == raw_length
    offsets = np.frombuffer(block[:16], "<u4").tolist()
    late = msgpack.unpackb(block[16 + offsets[0] : 16 + offsets[1]])
    assert late == {"id": ids[0], "version": 4, "attributes": {"k": {"t": "int64", "v": 7}}, "arrays": {}}


def test_golden_v2_schema_columns_are_pinned():
    """The interned schemas of the second v2 golden read from docs/format-v2.md §4.4 alone."""
    root = GOLDEN / "v2-schemas-json-zstd"
    commit = json.loads(blosc2.decompress2((root / "atlas.json.zst").read_bytes()))
    assert [p[0] for p in commit["parts"]] == [V2S_LIVE_PART]
    data = (root / "_catalog" / V2S_LIVE_PART).read_bytes()
    index_offset, index_length, digest, end = struct.unpack("<QQQ8s", data[-32:])
    raw_index = data[index_offset : index_offset + index_length]
    assert xxhash.xxh64_intdigest(raw_index) == digest and end == b"ATLASCAT"
    index = msgpack.unpackb(raw_index)

    def column(name: str) -> bytes:
        offset, length, raw_length, checksum, codec = index["columns"][name]
        stored = data[offset : offset + length]
        assert xxhash.xxh64_intdigest(stored) == checksum, name
        out = bytes(stored if codec == 0 else blosc2.decompress2(stored))
        assert len(out) == raw_length, name
        return out

    names = column("name").split(b"\xff")[:-1]
    assert names == [b"late", b"station_1", b"station_2"]
    datasets = EXPECTED["v2-schemas-json-zstd"]["datasets"]
    for j, (array, flags) in enumerate(index["arrays"]):
        assert flags & 4, array
        state = np.frombuffer(column(f"s{j}.state"), "u1")
        ndim = np.frombuffer(column(f"s{j}.ndim"), "u1")
        extents = np.frombuffer(column(f"s{j}.extents"), "<u8").tolist()
        codes = np.frombuffer(column(f"s{j}.schema"), "<u4")
        templates = msgpack.unpackb(column(f"s{j}.schemas"))
        starts = [0, *np.cumsum(ndim, dtype=np.int64).tolist()]
        for row, name in enumerate(n.decode() for n in names):
            expected = datasets[name]["arrays"].get(array)
            assert (state[row] > 0) == (expected is not None), (name, array)
            if expected is None:
                continue
            dtype, dims, shape, chunk_shape, fill = expected[0]
            template = templates[codes[row]]
            assert set(template) <= {"dtype", "dims", "chunk_shape", "fill_value", "attributes"}
            assert (template["dtype"], template["dims"], template["chunk_shape"]) == (dtype, dims, chunk_shape)
            assert extents[starts[row] : starts[row + 1]] == shape, (name, array)
            if fill is None:
                assert template["fill_value"] is None
            else:
                want = np.asarray(fill)
                got = np.asarray(atlas.dtypes.decode_value(template["fill_value"], dtype)).astype(want.dtype)
                same(got, want, f"{name}/{array} fill")


def test_newer_format_version_is_rejected(tmp_path):
    path = tmp_path / "store"
    shutil.copytree(GOLDEN / "v1-json-none-raw", path)
    manifest = json.loads((path / "atlas.json").read_text("utf-8"))
    manifest["format_version"] = 3
    (path / "atlas.json").write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(errors.FormatVersionError):
        atlas.Atlas.open(path, mode="r")


def test_v1_manifest_claiming_format_2_is_refused(tmp_path):
    """A v1 manifest relabelled 2 keeps its datasets: a v2 reader refuses it as damage."""
    path = tmp_path / "store"
    shutil.copytree(GOLDEN / "v1-json-none-raw", path)
    manifest = json.loads((path / "atlas.json").read_text("utf-8"))
    manifest["format_version"] = 2
    (path / "atlas.json").write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(errors.CorruptStoreError, match="datasets"):
        atlas.Atlas.open(path, mode="r")


def test_golden_store_opens_writable_from_a_copy(tmp_path):
    """A copy opens read-write (the lock file is created on demand) and reads the same."""
    path = tmp_path / "store"
    shutil.copytree(GOLDEN / "v1-json-zstd", path)
    with atlas.Atlas.open(path) as store:
        expected = EXPECTED["v1-json-zstd"]["datasets"]["station_1"]["arrays"]["temp"][2]
        same(store.open_dataset("station_1").read_array("temp"), expected)


# -- an independent reader written from docs/format.md ---------------------------------------------

_MANIFEST_NAMES = {
    f"atlas.{fmt}{suffix}": (fmt, comp)
    for fmt in ("json", "msgpack")
    for comp, suffix in (("none", ""), ("zstd", ".zst"), ("lz4", ".lz4"))
}
_STORAGE = {
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "<u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
    "timestamp_nanoseconds": "<i8",
    "bool": "u1",
}
_NONFINITE = {"NaN": NAN, "Infinity": INF, "-Infinity": -INF}


def _load_manifest(root: Path) -> dict[str, Any]:
    names = [p.name for p in root.iterdir() if p.is_file() and p.name in _MANIFEST_NAMES]
    assert len(names) == 1, names
    fmt, comp = _MANIFEST_NAMES[names[0]]
    raw = (root / names[0]).read_bytes()
    if comp != "none":
        # a Blosc2 chunk, not a bare zstd/lz4 frame
        assert raw[0] in (2, 3, 4, 5), raw[:4]
        raw = blosc2.decompress2(raw)
    return json.loads(raw.decode("utf-8")) if fmt == "json" else msgpack.unpackb(raw, raw=False)


def _scalar(raw: Any, dtype: str) -> Any:
    if dtype.startswith("float"):
        return _NONFINITE[raw] if isinstance(raw, str) else float(raw)
    return raw


def _decode_chunk(payload: bytes, rec: np.void, dtype: str, cells: int) -> np.ndarray:
    codec, flags = int(rec["codec"]), int(rec["flags"])
    assert flags in (0, 1)
    if codec == 0:
        raw = payload
    else:
        assert codec in (1, 2)
        raw = blosc2.decompress2(payload)
    assert len(raw) == int(rec["raw_nbytes"])
    if dtype == "string":
        (count,) = struct.unpack_from("<Q", raw, 0)
        assert count == cells
        offsets = struct.unpack_from(f"<{count + 1}Q", raw, 8)
        blob = 8 + 8 * (count + 1)
        values = _strs(*(raw[blob + offsets[i] : blob + offsets[i + 1]].decode("utf-8") for i in range(count)))
        used = blob + offsets[-1]
    else:
        dt = np.dtype(_STORAGE[dtype])
        used = cells * dt.itemsize
        values = np.frombuffer(raw[:used], dt)
        if dtype == "bool":
            assert set(values.tolist()) <= {0, 1}
            values = values.astype(bool)
    tail = raw[used:]
    if flags & 1:
        assert len(tail) == (cells + 7) // 8  # packed written mask, bit i of byte i // 8 = cell i
        mask = np.unpackbits(np.frombuffer(tail, np.uint8), count=cells, bitorder="little")
        if dtype == "string":
            assert all(v == "" for v, m in zip(values.tolist(), mask, strict=True) if not m)
        else:
            assert not values[mask == 0].astype(bool).any()  # unwritten cells hold the default fill
    else:
        assert tail == b""
    return values


def _check_segment(data: bytes, ref: list, generation_hint: int) -> np.ndarray:
    file, size, index_offset, index_length, index_checksum, records = ref
    assert len(data) == size
    assert data[:8] == MAGIC
    version, flags, header_size, generation, token = struct.unpack("<HHIQ16s", data[8:40])
    assert (version, flags, header_size) == (1, 0, 40)
    assert file == f"{generation:012d}-{token.hex()[:16]}.af"
    assert generation <= generation_hint
    assert data[40:64] == bytes(24)
    assert struct.unpack("<QQQ8s", data[-32:]) == (index_offset, index_length, index_checksum, END_MAGIC)
    assert index_offset % 64 == 0 and index_offset + index_length + 32 == size
    index = data[index_offset : index_offset + index_length]
    assert xxhash.xxh64_intdigest(index, seed=0) == index_checksum
    table = np.frombuffer(index, RECORD)
    assert table.shape[0] == records
    keys = list(zip(table["slot"].tolist(), table["chunk"].tolist(), strict=True))
    assert keys == sorted(set(keys)), "records are unique and sorted by (slot, chunk)"
    end = 64
    for rec in table:
        offset, nbytes = int(rec["offset"]), int(rec["nbytes"])
        assert offset == end and offset % 64 == 0, "payloads are packed in record order, 64-aligned"
        assert xxhash.xxh64_intdigest(data[offset : offset + nbytes]) == int(rec["checksum"])
        end = offset + nbytes + (-nbytes) % 64
        assert data[offset + nbytes : end] == bytes(end - offset - nbytes)
        assert bytes(rec["reserved"]) == bytes(6)
    assert end == index_offset
    return table


def spec_read(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Read every array of the store following docs/format.md only."""
    manifest = _load_manifest(root)
    assert manifest["format"] == "atlas" and manifest["format_version"] == 1
    merged: dict[str, dict[tuple[int, int], tuple[bytes, np.void]]] = {}
    for name, fam in manifest["arrays"].items():
        newest: dict[tuple[int, int], tuple[bytes, np.void]] = {}
        for ref in fam["segments"]:  # oldest first: a later segment's record wins
            data = (root / fam["dir"] / ref[0]).read_bytes()
            for rec in _check_segment(data, ref, manifest["generation"]):
                payload = data[int(rec["offset"]) : int(rec["offset"]) + int(rec["nbytes"])]
                newest[(int(rec["slot"]), int(rec["chunk"]))] = (payload, rec)
        merged[name] = newest
    out: dict[str, dict[str, np.ndarray]] = {}
    for ds_name, ds in manifest["datasets"].items():
        out[ds_name] = {}
        for arr, meta in ds["arrays"].items():
            dtype, shape, chunks = meta["dtype"], meta["shape"], meta["chunk_shape"]
            fill = meta["fill_value"]
            if fill is None:
                fill = {"string": "", "bool": False, "timestamp_nanoseconds": -(2**63)}.get(
                    dtype, NAN if dtype.startswith("float") else 0
                )
            fill = _scalar(fill, dtype)
            if dtype == "string":
                result = np.empty(shape, dtype=object)
            else:
                result = np.empty(shape, dtype=_STORAGE[dtype] if dtype != "bool" else bool)
            result[...] = fill
            grid = [-(-s // c) for s, c in zip(shape, chunks, strict=True)]
            records = merged.get(arr, {})
            for coords in np.ndindex(*grid):
                chunk_id = int(np.ravel_multi_index(coords, grid)) if grid else 0
                lo = [c * k for c, k in zip(coords, chunks, strict=True)]
                extent = [min(k, s - low) for k, s, low in zip(chunks, shape, lo, strict=True)]
                found = records.get((meta["slot"], chunk_id))
                if found is None:
                    continue
                cells = math.prod(extent)
                values = _decode_chunk(found[0], found[1], dtype, cells)
                result[tuple(slice(low, low + e) for low, e in zip(lo, extent, strict=True))] = values.reshape(extent)
            if dtype == "timestamp_nanoseconds":
                result = result.view("datetime64[ns]")
            out[ds_name][arr] = result
    return out


@pytest.mark.parametrize("name", STORES)
def test_spec_reader_agrees(name):
    got = spec_read(GOLDEN / name)
    exp = EXPECTED[name]["datasets"]
    assert sorted(got) == sorted(exp)
    for ds_name, ds_exp in exp.items():
        assert sorted(got[ds_name]) == sorted(ds_exp["arrays"])
        for arr, (_meta, _stats, data) in ds_exp["arrays"].items():
            same(got[ds_name][arr], data, f"spec reader {name}/{ds_name}/{arr}")


def test_spec_reader_sees_dead_records():
    """The deleted dataset's chunks and the overwritten chunk stay in segments until compaction."""
    root = GOLDEN / "v1-json-zstd"
    manifest = _load_manifest(root)
    fam = manifest["arrays"]["temp"]
    tables = [_check_segment((root / fam["dir"] / ref[0]).read_bytes(), ref, 2) for ref in fam["segments"]]
    assert [list(zip(t["slot"].tolist(), t["chunk"].tolist(), strict=True)) for t in tables] == [
        [(1, 0), (1, 1), (1, 2), (16, 0), (18, 0)],
        [(1, 1)],
    ]
    live = {m["slot"] for d in manifest["datasets"].values() for a, m in d["arrays"].items() if a == "temp"}
    assert live == {1, 16}  # slot 18 belonged to the deleted dataset "doomed"
    codecs = {
        name: sorted(
            {
                int(c)
                for ref in f["segments"]
                for c in _check_segment((root / f["dir"] / ref[0]).read_bytes(), ref, 2)["codec"]
            }
        )
        for name, f in manifest["arrays"].items()
    }
    assert codecs["series"] == [1]  # compressed with zstd
    assert codecs["temp"] == [0]  # too small to shrink: stored raw
