"""Write the golden ATLAS stores of format version 1 next to this script.

Run it from the repository root with the project's interpreter::

    PYTHONPATH=. .venv/bin/python tests/data/golden/make_golden.py

It (re)creates three small stores, each written with two flushes through the public
API, with deterministic data and deterministic write tokens (the random token of a
commit is replaced by a hash of the store name and a counter, so a rerun with an
unchanged writer and blosc2 reproduces the same bytes):

``v1-json-zstd/``
    chunk codec zstd, manifest ``atlas.json.zst``.  Every dtype, a 0-D array, fill
    values including NaN and -inf, a partly written int chunk without a fill value
    (written mask), edge chunks, attributes of every kind, an overwrite in the
    second flush (newest record wins), a deleted dataset and an empty dataset.
``v1-msgpack-lz4/``
    chunk codec lz4, manifest ``atlas.msgpack.lz4``; string and bool chunks with a
    written mask, a 2-D float array with edge chunks and an overwrite.
``v1-json-none-raw/``
    chunk codec none, manifest ``atlas.json``: every payload is stored raw, so the
    byte-level test can check segment bytes literally.

``tests/test_golden.py`` asserts their content with literal values.  Regenerate
only for a deliberate format change, together with ``format_version``, the
expected values in that test and ``docs/format.md``.

The library now writes format 2, so this script writes format 1 stores only when
run from a checkout whose writer is format 1 (before the catalogue was wired into
the store); the format 2 golden store comes from ``make_golden_v2.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import shutil
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

import atlas  # noqa: E402
import atlas.txn.commit  # noqa: E402
from atlas.backends.local import LOCK_NAME  # noqa: E402

NAN = math.nan
INF = math.inf


def _deterministic_tokens(store_name: str) -> None:
    """Make the 16-byte write token of every commit a function of the store and a counter."""
    counter = itertools.count(1)

    def token_bytes(n: int = 32) -> bytes:
        return hashlib.blake2b(f"{store_name}:{next(counter)}".encode(), digest_size=n).digest()

    atlas.txn.commit.secrets = types.SimpleNamespace(token_bytes=token_bytes)  # type: ignore[attr-defined]


def _fresh(name: str) -> Path:
    path = HERE / name
    if path.exists():
        shutil.rmtree(path)
    _deterministic_tokens(name)
    return path


def _finish(path: Path) -> None:
    (path / LOCK_NAME).unlink(missing_ok=True)  # readers never need the commit lock file


def _strings(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def make_json_zstd() -> Path:
    path = _fresh("v1-json-zstd")
    s = atlas.Atlas.create(path, codec="zstd", meta_format="json", meta_compression="zstd")

    # -- flush 1 (generation 1) ------------------------------------------------------------
    st1 = s.create_dataset("station_1")
    st1.define_array("temp", "float32", ["time"], [10], chunk_shape=[4])
    st1.write_array("temp", [0], np.array([0.5, 1.5, 2.5, NAN, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5], dtype="float32"))
    st1.define_array("count", "int32", ["y", "x"], [5, 3], chunk_shape=[2, 2])
    st1.write_array("count", [0, 0], np.array([[1, 2], [3, 4], [5, 6]], dtype="int32"))
    st1.define_array("series", "int64", ["t"], [300], chunk_shape=[128])
    st1.write_array("series", [0], np.arange(300, dtype="int64") * 3 - 100)
    st1.define_array("flag", "bool", ["t"], [6], chunk_shape=[4])
    st1.write_array("flag", [0], np.array([True, False, True, True, False, True]))
    st1.define_array("when", "timestamp_nanoseconds", ["t"], [4], chunk_shape=[4])
    st1.write_array(
        "when",
        [0],
        np.array(
            ["2024-01-01T00:00:00", "NaT", "1969-12-31T23:59:59.999999999", "2262-04-11T23:47:16.854775807"],
            dtype="datetime64[ns]",
        ),
    )
    st1.define_array("label", "string", ["t"], [5], chunk_shape=[2], fill_value="n/a")
    st1.write_array("label", [0], _strings(["alpha", "", "温度", "n/a"]))
    st1.define_array("scalar", "float64", [], [])
    st1.write_array("scalar", [], np.array(3.25))
    st1.define_array("i8", "int8", ["t"], [4], chunk_shape=[4], fill_value=-1)
    st1.write_array("i8", [0], np.array([-128, 127, -1], dtype="int8"))
    st1.define_array("u8", "uint8", ["t"], [3], chunk_shape=[2])
    st1.write_array("u8", [0], np.array([0, 255, 7], dtype="uint8"))
    st1.define_array("i16", "int16", ["t"], [3], chunk_shape=[3])
    st1.write_array("i16", [0], np.array([-32768, 0, 32767], dtype="int16"))
    st1.define_array("u16", "uint16", ["t"], [2], chunk_shape=[2], fill_value=0)
    st1.write_array("u16", [0], np.array([0, 65535], dtype="uint16"))
    st1.define_array("u32", "uint32", ["t"], [2], chunk_shape=[2])
    st1.write_array("u32", [0], np.array([4294967295, 1], dtype="uint32"))
    st1.define_array("u64", "uint64", ["t"], [3], chunk_shape=[3], fill_value=2**64 - 1)
    st1.write_array("u64", [0], np.array([0, 2**63, 2**64 - 1], dtype="uint64"))
    st1.define_array("f64", "float64", ["y", "x"], [2, 2], chunk_shape=[1, 2], fill_value=-INF)
    st1.write_array("f64", [0, 0], np.array([[INF, -0.0], [1e300, -INF]]))
    st1.define_array("Air Temp", "float64", ["t"], [3], chunk_shape=[2])
    st1.write_array("Air Temp", [1], np.array([-1.25, 2.0]))

    st1.set_attribute("int", 42)
    st1.set_attribute("float", 1.5)
    st1.set_attribute("nan", NAN)
    st1.set_attribute("inf", INF)
    st1.set_attribute("neg_inf", -INF)
    st1.set_attribute("text", "Zürich 温度 🌡")
    st1.set_attribute("flag", True)
    st1.set_attribute("ints", [1, 2, 3])
    st1.set_attribute("mixed", [1, 2.5, NAN, -INF])
    st1.set_attribute("empty", [])
    st1.set_attribute("words", ["a", "β", ""])
    st1.set_attribute("matrix", np.array([[1, 2, 3], [4, 5, 6]], dtype="int16"))
    st1.set_attribute("f32", np.float32(0.1))
    st1.set_attribute("small", 7, dtype="int8")
    st1.set_attribute("huge", 2**64 - 1)
    st1.set_attribute("when", np.datetime64("2024-01-02T03:04:05.123456789", "ns"))
    st1.set_attribute("day", dt.date(2024, 1, 2))
    st1.set_attribute("times", np.array(["1970-01-01T00:00:00.000000001", "NaT"], dtype="datetime64[ns]"))
    st1.set_attribute("f32s", np.array([1.5, NAN, INF], dtype="float32"))
    st1.set_attribute("bools", np.array([True, False]))
    st1.set_attribute("strs", np.array(["x", "yy"]))

    st2 = s.create_dataset("station_2")
    st2.define_array("temp", "float32", ["time"], [6], chunk_shape=[4], fill_value=NAN)
    st2.write_array("temp", [2], np.array([20.0, 21.0], dtype="float32"))
    st2.define_array("count", "int32", ["y", "x"], [2, 2], chunk_shape=[2, 2])

    doomed = s.create_dataset("doomed")
    doomed.define_array("temp", "float32", ["time"], [3], chunk_shape=[4])
    doomed.write_array("temp", [0], np.array([1.0, 2.0, 3.0], dtype="float32"))
    doomed.set_attribute("note", "to be deleted")
    s.flush()

    # -- flush 2 (generation 2): overwrites, a delete, a new empty dataset ----------------------
    st1.write_array("temp", [4], np.array([40.0, 41.0], dtype="float32"))
    st1.write_array("label", [0], _strings(["Ω"]))
    st1.write_array("count", [3, 0], np.array([[10]], dtype="int32"))
    st2.set_attribute("note", "second flush")
    s.delete_dataset("doomed")
    s.create_dataset("empty")
    s.flush()
    s.close()
    _finish(path)
    return path


def make_msgpack_lz4() -> Path:
    path = _fresh("v1-msgpack-lz4")
    s = atlas.Atlas.create(path, codec="lz4", meta_format="msgpack", meta_compression="lz4")

    grid = s.create_dataset("grid")
    grid.define_array("temp", "float64", ["y", "x"], [4, 50], chunk_shape=[2, 32])
    grid.write_array("temp", [0, 0], (np.arange(200, dtype="float64").reshape(4, 50) % 7) * 0.5)
    grid.define_array("name", "string", ["i"], [3], chunk_shape=[3])
    grid.write_array("name", [0], _strings(["x"]))
    grid.define_array("ok", "bool", ["i"], [10], chunk_shape=[10])
    grid.write_array("ok", [0], np.array([True, True, False, True, True]))
    grid.set_attribute("title", "grid ✓")
    grid.set_attribute("nan", NAN)

    other = s.create_dataset("other")
    other.define_array("temp", "float64", ["y", "x"], [4, 50], chunk_shape=[2, 32])
    other.write_array("temp", [0, 0], np.full((4, 50), 2.5))
    other.set_attribute("scale", np.float32(0.25))
    s.flush()

    grid.write_array("temp", [0, 0], np.full((2, 32), 99.0))
    grid.set_attribute("limits", np.array([-INF, 0.0, INF]))
    s.flush()
    s.close()
    _finish(path)
    return path


def make_json_none_raw() -> Path:
    path = _fresh("v1-json-none-raw")
    s = atlas.Atlas.create(path, codec="none", meta_format="json", meta_compression="none")

    d = s.create_dataset("d")
    d.define_array("a", "int16", ["i"], [5], chunk_shape=[2])
    d.write_array("a", [1], np.array([10, -20, 30], dtype="int16"))
    d.define_array("s", "string", ["i"], [3], chunk_shape=[2], fill_value="-")
    d.write_array("s", [0], _strings(["ab", "ç"]))
    d.define_array("t", "timestamp_nanoseconds", ["i"], [2], chunk_shape=[2])
    d.write_array("t", [0], np.array([0, 86_400_000_000_000], dtype="int64").view("datetime64[ns]"))
    d.define_array("b", "bool", ["i"], [3], chunk_shape=[2])
    d.write_array("b", [0], np.array([True, False, True]))
    d.define_array("z", "float32", [], [], fill_value=0.0)
    d.write_array("z", [], np.array(1.5, dtype="float32"))
    d.define_array("Air Temp", "float64", ["i"], [3], chunk_shape=[3])
    d.write_array("Air Temp", [0], np.array([1.0, 2.0, 3.0]))
    d.set_attribute("units", "K")
    d.set_attribute("scale", np.float32(0.5))
    d.set_attribute("nan", NAN)
    s.flush()

    d.write_array("a", [2], np.array([7], dtype="int16"))
    s.flush()
    s.close()
    _finish(path)
    return path


def main() -> None:
    for make in (make_json_zstd, make_msgpack_lz4, make_json_none_raw):
        path = make()
        files = sorted(p for p in path.rglob("*") if p.is_file())
        print(f"{path.name}: {len(files)} files, {sum(p.stat().st_size for p in files)} bytes")


if __name__ == "__main__":
    main()
