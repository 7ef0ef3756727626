"""Hostile input: arbitrary arguments to the public API, damaged and forged stores.

1. Hypothesis drives sequences of public calls with arbitrary arguments (names of
   any type, random dtypes, shapes with negative/huge/float entries, selections of
   the wrong rank, data of the wrong type/dtype/layout, NaN/inf fills, huge ints,
   attribute values such as dicts, sets, None, nested lists, bytes, complex).  Every
   call must return or raise an ``atlas.errors.AtlasError``; a call that raises must
   leave the handle exactly as it was (canonical dump of its view and
   ``has_pending_changes``).  At the end the accepted changes must flush, reopen,
   ``verify()`` clean and read back exactly as the handle showed them.
2. Stores from untrusted sources: copies of real stores get their manifest or a
   segment damaged or forged (see ``tests/workers/corrupt_reader.py``), then are
   opened and read in a subprocess under an address-space limit.  Every call must
   return or raise an ``AtlasError`` (no other exception, no crash, no allocation
   sized by a forged field), and accidental damage must never come back as data.

``-m slow`` runs many more examples and trials.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import fractions
import json
import math
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rel_common import dump_store, record_figure, store_hash
from v1_stores import to_v1

import atlas
from atlas import errors
from atlas.errors import AtlasError

WORKERS = Path(__file__).parent / "workers"

# -- the store the hostile calls run against ---------------------------------------------------------

POOL_DS = ["alpha", "beta", "gamma", "温度", "a b"]
POOL_ARR = ["f", "i", "s", "b", "t", "z", "u", "new", "ñ"]


def build_api_store(path: Path) -> None:
    with atlas.Atlas.create(path) as store:
        a = store.create_dataset("alpha")
        a.define_array("f", "float64", ["y", "x"], [6, 5], chunk_shape=[4, 3], fill_value=math.nan)
        a.define_array("i", "int32", ["n"], [10], chunk_shape=[4])
        a.define_array("s", "string", ["n"], [5], chunk_shape=[2])
        a.define_array("b", "bool", ["n"], [3])
        a.define_array("t", "timestamp_nanoseconds", ["n"], [4], chunk_shape=[3])
        a.define_array("z", "float32", [], [])
        a.define_array("u", "uint64", ["n"], [4], fill_value=2**64 - 1)
        a.write_array("f", [1, 1], np.arange(12.0).reshape(3, 4))
        a.write_array("i", [2], np.array([5, -7, 9], dtype="int32"))
        a.write_array("s", [0], np.array(["x", "", "温度"], dtype=object))
        a.write_array("t", [1], np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]"))
        a.set_attribute("title", "alpha ✓")
        a.set_attribute("nan", math.nan)
        a.set_attribute("vec", np.arange(6, dtype="int16").reshape(2, 3))
        b = store.create_dataset("beta")
        b.define_array("f", "float64", ["y", "x"], [6, 5], chunk_shape=[6, 5])
        b.define_array("i", "int16", ["n"], [10])
        b.write_array("f", [0, 0], np.ones((6, 5)))
    with atlas.Atlas.open(path) as store:  # a second generation: two segments per family
        store.open_dataset("alpha").write_array("i", [0], np.array([1, 2], dtype="int32"))


# -- strategies -------------------------------------------------------------------------------------

SPECIAL_NAMES = ["", "/", "a/b", "_x", ".", "..", "\x00", "a\ud800", "x" * 300, " ", "\n", "NaN", "atlas.json"]
HUGE = [2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63), -(2**70)]

names = st.one_of(
    st.sampled_from(POOL_DS + POOL_ARR),
    st.sampled_from(SPECIAL_NAMES),
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.binary(max_size=4),
    st.floats(),
    st.just(("f",)),
    st.just(["alpha"]),
    st.just({"f": 1}),
)
ds_targets = st.one_of(st.sampled_from(POOL_DS), names)
arr_names = st.one_of(st.sampled_from(POOL_ARR), names)

ints = st.one_of(st.integers(-3, 12), st.sampled_from(HUGE), st.integers())
int_like = st.one_of(
    ints,
    st.floats(),
    st.sampled_from(
        [np.int64(3), np.uint64(2**64 - 1), np.int8(-1), np.float64(2.0), True, False, "3", None, b"1", 1 + 0j]
    ),
    st.just(np.array(2)),
    st.just(np.array([1, 2])),
)


def sequences(elem: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.lists(elem, max_size=4),
        st.lists(elem, max_size=4).map(tuple),
        st.lists(st.integers(0, 6), max_size=3).map(lambda v: np.array(v, dtype="int64")),
        st.none(),
        elem,
        st.text(max_size=3),
        st.just({}),
        st.just({0: 1}),
        st.just(iter([1, 2])),
    )


selections = st.one_of(st.lists(st.integers(0, 6), max_size=3), sequences(int_like))
shapes = st.one_of(st.lists(st.integers(0, 12), max_size=3), st.lists(ints, max_size=4), sequences(int_like))
chunk_entries = st.sampled_from([-1, 0, 1, 2, 3, 7, 2**63, 10**30, 1.5, "2", None, True, np.int64(4)])
chunk_shapes = st.one_of(st.none(), st.lists(st.integers(1, 7), max_size=3), st.lists(chunk_entries, max_size=4))

NUMPY_DTYPES = [
    "float64", "float32", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "bool", "complex64", "complex128", "datetime64[ns]", "datetime64[s]", "timedelta64[ns]", "U3", "S3",
    ">f8", ">i4", ">i8",
]  # fmt: skip
VALID_DTYPES = [*atlas.DTYPE_NAMES, "FLOAT32", " int8 ", "timestamp_ns", "timestamp", "str", "utf8", "double"]
dtypes_ = st.one_of(
    st.sampled_from(VALID_DTYPES),
    st.text(max_size=8),
    st.sampled_from(NUMPY_DTYPES).map(np.dtype),
    st.sampled_from(
        [np.float16, np.complex64, "complex128", "m8[ns]", "M8[ns]", "<M8[ns]", np.dtype([("a", "<i4")]),
         np.dtype(("f8", (2,))), None, 3, [], {}, int, float, bool, str, bytes, complex, object, "O", "V8"]
    ),
)  # fmt: skip


@st.composite
def numpy_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(NUMPY_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    arr = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["c", "c", "strided", "fortran", "transposed", "readonly"]))
    if layout == "strided" and arr.ndim:
        arr = arr[::2]
    elif layout == "fortran":
        arr = np.asfortranarray(arr)
    elif layout == "transposed":
        arr = arr.T
    elif layout == "readonly":
        arr.flags.writeable = False
    return arr


@st.composite
def object_arrays(draw: st.DrawFn) -> np.ndarray:
    items = draw(
        st.lists(
            st.one_of(st.text(max_size=4), st.binary(max_size=4), st.none(), st.integers(), st.just(b"\xff\xfe")),
            max_size=6,
        )
    )
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE),
    st.floats(),
    st.complex_numbers(),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.sampled_from(
        [
            np.int8(-128), np.uint64(2**64 - 1), np.float32("nan"), np.float32("inf"), np.float16(1),
            np.complex64(1j), np.datetime64("2020-01-01"), np.datetime64("NaT"), np.datetime64(10**18, "s"),
            np.datetime64("2020-01-01T00:00:00.000000001"), np.timedelta64(5, "ns"), np.str_("x"),
            np.bytes_(b"x"), np.bool_(True), np.int64(-(2**63)), np.longdouble(1.5), np.float64(-0.0),
            dt.datetime(2020, 1, 1), dt.date(1, 1, 1), dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc),
            decimal.Decimal("1.5"), fractions.Fraction(1, 3), object(), Ellipsis, "2020-01-01", "\ud800",
        ]
    ),
)  # fmt: skip
values = st.recursive(
    st.one_of(scalars, numpy_arrays(), object_arrays()),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=3), children, max_size=2),
        st.frozensets(st.integers(), max_size=3),
        st.sets(st.integers(), max_size=3),
    ),
    max_leaves=6,
)
write_data = st.one_of(numpy_arrays(), object_arrays(), values)


def call(target: st.SearchStrategy, method: str, *args: st.SearchStrategy, **kwargs: st.SearchStrategy):
    return st.tuples(target, st.just(method), st.tuples(*args), st.fixed_dictionaries(kwargs))


@st.composite
def define_calls(draw: st.DrawFn):
    shape = draw(shapes)
    if isinstance(shape, list) and draw(st.booleans()):
        dims = [f"d{i}" for i in range(len(shape))]  # mostly consistent, so that many defines succeed
    else:
        dims = draw(sequences(names))
    return (
        draw(ds_targets),
        "define_array",
        (draw(arr_names), draw(dtypes_), dims, shape),
        {"chunk_shape": draw(chunk_shapes), "fill_value": draw(st.one_of(st.none(), values))},
    )


store_t = st.just("<store>")
module_t = st.just("<module>")
sources = st.one_of(
    st.sampled_from(["<store-path>", "<fresh>", "", "\x00", "a\x00b", "x" * 300, "s3://bucket/x", "memory:///x",
                     "file://<fresh>", "http://localhost:1/x", "..", "."]),
    st.text(max_size=10),
    st.integers(),
    st.none(),
    st.binary(max_size=3),
)  # fmt: skip

calls = st.one_of(
    define_calls(),
    call(ds_targets, "write_array", arr_names, selections, write_data),
    call(ds_targets, "read_array", arr_names, st.one_of(st.none(), selections), st.one_of(st.none(), selections)),
    call(ds_targets, "read_arrays", sequences(arr_names), st.one_of(st.none(), selections), st.none()),
    call(ds_targets, "set_attribute", names, values, dtype=st.one_of(st.none(), dtypes_)),
    call(ds_targets, "get_attribute", names),
    call(ds_targets, "delete_attribute", names),
    call(ds_targets, "delete_array", arr_names),
    call(ds_targets, "array_meta", arr_names),
    call(ds_targets, "array_stats", arr_names),
    call(ds_targets, "array_fill_value", arr_names),
    call(ds_targets, "has_array", arr_names),
    call(ds_targets, "attributes"),
    call(ds_targets, "list_arrays"),
    call(store_t, "create_dataset", ds_targets),
    call(store_t, "open_dataset", ds_targets),
    call(store_t, "delete_dataset", ds_targets),
    call(store_t, "dataset_exists", ds_targets),
    call(store_t, "__contains__", ds_targets),
    call(store_t, "read_array_across", arr_names, sequences(ds_targets), selections, selections),
    call(store_t, "read_array_across_stacked", arr_names, sequences(ds_targets), selections, selections),
    call(store_t, "list_arrays"),
    call(store_t, "flush"),
    call(store_t, "refresh"),
    call(store_t, "discard"),
    call(store_t, "compact", st.one_of(st.sampled_from([3600.0, 0, -1.0, math.nan, math.inf]), values)),
    call(
        module_t,
        "create",
        sources,
        codec=st.one_of(st.sampled_from(["zstd", "LZ4", "none", "raw"]), values),
        meta_format=st.one_of(st.sampled_from(["json", "msgpack", "MP"]), values),
        meta_compression=st.one_of(st.sampled_from(["none", "zstd", "lz4", None]), values),
        max_pending_bytes=st.one_of(st.sampled_from([0, 1, 1 << 20]), ints, values),
    ),
    call(
        module_t,
        "open",
        sources,
        mode=st.one_of(st.sampled_from(["r", "r+"]), values),
        max_pending_bytes=st.one_of(st.sampled_from([0, 1, 1 << 20]), ints, values),
    ),
)

# -- running hostile calls -----------------------------------------------------------------------------

#: A read that would return more cells than this is not attempted (see _too_big).
MAX_READ_CELLS = 1 << 22


def _cells(shape: Any) -> int | None:
    try:
        dims = [int(v) for v in shape]
    except Exception:  # not a shape the call would accept anyway
        return None
    n = 1
    for d in dims:
        n *= abs(d)
    return n


def _too_big(store: atlas.Atlas, target: Any, method: str, args: tuple) -> bool:
    """True for a read whose output could exceed MAX_READ_CELLS.

    Such a read is a legitimate request for a lot of memory, not hostile input; the
    deterministic tests below cover what happens when it cannot be allocated.  Only
    lists, tuples and arrays are inspected (an iterator argument must reach the call
    unconsumed).
    """
    if method not in ("read_array", "read_arrays", "read_array_across", "read_array_across_stacked"):
        return False
    plain = (list, tuple, np.ndarray)
    if method.startswith("read_array_across"):
        array, dsnames, _start, shape = args
        if not isinstance(dsnames, plain):
            return False
        dsnames = list(dsnames)
    else:
        array, _start, shape = args
        dsnames = [target]
    if method == "read_arrays":
        if not isinstance(array, plain):
            return False
        arrays = list(array)
    else:
        arrays = [array]
    box = _cells(shape) if isinstance(shape, plain) else None
    total = 0
    for ds in dsnames:
        for a in arrays:
            try:
                meta = atlas.DatasetView(store, ds).array_meta(a)
            except Exception:
                continue
            total += box if box is not None else (_cells(meta["shape"]) or 0)
    return total > MAX_READ_CELLS


def snapshot(store: atlas.Atlas) -> tuple:
    """Everything a rejected call must leave unchanged."""
    return (store.has_pending_changes, store.generation, dump_store(store, max_cells=1 << 12))


def _resolve_source(source: Any, store_path: Path, scratch: Path) -> Any:
    if isinstance(source, str):
        if source == "<store-path>":
            return str(store_path)
        if "<fresh>" in source:
            fresh = tempfile.mkdtemp(dir=scratch)
            return source.replace("<fresh>", fresh + "/new")
        if "/" in source or source in (".", ".."):
            return source if "://" in source else str(scratch / "refused")  # never escape the sandbox
        return str(scratch / source)
    return source


def run_calls(store_path: Path, scratch: Path, sequence: list, stats: Counter) -> None:
    store = atlas.Atlas.open(store_path)
    before = snapshot(store)
    for target, method, args, kwargs in sequence:
        label = f"{method}{args!r:.300} {kwargs!r:.200} on {target!r:.40}"
        if target == "<module>":
            obj = atlas.Atlas
            args = (_resolve_source(args[0], store_path, scratch), *args[1:])
        elif target == "<store>":
            obj = store
        else:
            obj = atlas.DatasetView(store, target)
        if _too_big(store, target, method, args):
            stats["skipped_huge_reads"] += 1
            continue
        stats["calls"] += 1
        try:
            result = getattr(obj, method)(*args, **kwargs)
        except AtlasError:
            stats["rejected"] += 1
            after = snapshot(store)
            assert after == before, f"rejected call changed the handle: {label}"
            continue
        except BaseException as exc:
            raise AssertionError(f"{type(exc).__name__} ({exc}) escaped from {label}") from exc
        stats["accepted"] += 1
        if target == "<module>" and isinstance(result, atlas.Atlas):
            result.close()
        try:
            before = snapshot(store)
        except BaseException as exc:
            raise AssertionError(f"after the accepted call {label}, the handle cannot be dumped: {exc!r}") from exc
    # What was accepted must commit, reopen and read back exactly as the handle showed it.
    try:
        store.flush()
        view = dump_store(store, max_cells=1 << 12)
        store.close()
    except BaseException as exc:
        raise AssertionError(f"flush/close after accepted calls {sequence!r:.2000} failed: {exc!r}") from exc
    with atlas.Atlas.open(store_path, mode="r") as again:
        assert again.verify() == []
        assert dump_store(again, max_cells=1 << 12) == view, f"reopened store differs after {sequence!r:.2000}"


@contextlib.contextmanager
def address_space_limit(extra_bytes: int):
    """Cap this process's address space at its current size + ``extra_bytes`` (soft limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as fh:
        vm = int(fh.read().split("VmSize:")[1].split()[0]) * 1024
    new = vm + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, vm + extra_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (new, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


HOSTILE_SETTINGS = {
    "deadline": None,
    "report_multiple_bugs": False,  # shrink one failure, not all of them (keeps a failing run short)
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}


def _hostile_api(max_examples: int, figure: str) -> None:
    stats: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        build_api_store(template)

        @settings(max_examples=max_examples, **HOSTILE_SETTINGS)
        @given(st.lists(calls, min_size=1, max_size=12))
        def run(sequence):
            with tempfile.TemporaryDirectory(dir=tmp) as ex:
                store_path = Path(ex) / "s"
                shutil.copytree(template, store_path)
                scratch = Path(ex) / "scratch"
                scratch.mkdir()
                run_calls(store_path, scratch, sequence, stats)

        try:
            with address_space_limit(4 << 30):
                run()
        except BaseException as exc:
            stats["failed_with"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            raise
        finally:
            stats["max_examples"] = max_examples
            record_figure(figure, **stats)


def test_hostile_api_calls():
    _hostile_api(250, "test_hostile::test_hostile_api_calls")


@pytest.mark.slow
def test_hostile_api_calls_soak():
    _hostile_api(4000, "test_hostile::test_hostile_api_calls_soak")


# -- deterministic hostile cases (found by the property above; kept as plain repros) -------------------


def _escaped(exc: BaseException) -> str:
    """``Type: message`` of an exception that escaped, with the innermost atlas frame."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/atlas/" in f.filename]
    where = f" at {frames[-1].filename.split('/atlas/')[-1]}:{frames[-1].lineno} ({frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {str(exc)[:160]}{where}"


def _expect_atlas_error_or_success(store: atlas.Atlas | None, fn) -> None:
    before = None if store is None else snapshot(store)
    try:
        fn()
    except AtlasError:
        if store is not None:
            assert snapshot(store) == before, "a rejected call changed the handle"
    except Exception as exc:
        pytest.fail(f"not an AtlasError: {_escaped(exc)}")
    if store is not None:
        try:
            snapshot(store)
        except Exception as exc:
            pytest.fail(f"the call was accepted, then the store cannot be read: {_escaped(exc)}")


def test_chunk_extent_beyond_int64_is_rejected_or_usable(tmp_path):
    """define_array accepts chunk_shape=[2**63] on a 17-cell array; every later use of
    the array must still raise only AtlasErrors (or work)."""
    store = atlas.Atlas.create(tmp_path / "s")
    ds = store.create_dataset("d")
    _expect_atlas_error_or_success(store, lambda: ds.define_array("c", "float64", ["n"], [17], chunk_shape=[2**63]))
    if ds.has_array("c"):
        _expect_atlas_error_or_success(store, lambda: ds.write_array("c", [0], np.zeros(3)))
        _expect_atlas_error_or_success(store, lambda: ds.read_array("c"))
    store.discard()


@pytest.mark.parametrize("cells", [2**62, 2**40], ids=["beyond-address-space", "beyond-memory"])
def test_read_of_an_unallocatable_selection_raises_an_atlas_error(tmp_path, cells):
    """A valid selection whose output cannot be allocated fails with an AllocationError
    (a MemoryError naming the array), and the handle is unchanged."""
    store = atlas.Atlas.create(tmp_path / "s")
    ds = store.create_dataset("d")
    ds.define_array("big", "float64", ["n"], [cells], chunk_shape=[1024])
    before = snapshot(store)
    with address_space_limit(2 << 30), pytest.raises(errors.AllocationError, match="big") as info:
        ds.read_array("big")
    assert isinstance(info.value, MemoryError)
    assert snapshot(store) == before
    store.discard()


def test_compact_with_a_bad_grace_period_changes_nothing(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    ds = store.create_dataset("d")
    ds.define_array("x", "float64", ["n"], [4])
    ds.write_array("x", [0], np.zeros(4))
    before, generation = snapshot(store), store.generation
    for bad in ("soon", None, [1], 1j):
        with pytest.raises(errors.InvalidArgumentError, match="grace_period"):
            store.compact(grace_period=bad)
        assert snapshot(store) == before and store.generation == generation and store.has_pending_changes
    assert atlas.Atlas.open(tmp_path / "s", mode="r").list_datasets() == []  # nothing was flushed
    store.discard()


@pytest.mark.parametrize("name", ["a\x00b", "x" * 5000], ids=["nul-byte", "name-too-long"])
def test_unusable_store_paths_raise_atlas_errors(tmp_path, name):
    with pytest.raises(errors.AtlasError) as made:
        atlas.Atlas.create(str(tmp_path / name))
    assert isinstance(made.value, (ValueError, OSError)) and "\n" not in str(made.value)
    with pytest.raises(errors.AtlasError) as opened:
        atlas.Atlas.open(str(tmp_path / name))
    assert isinstance(opened.value, (ValueError, OSError))
    assert list(tmp_path.iterdir()) == []  # nothing was made


def test_dtype_rules_found_by_the_property(tmp_path):
    """A timedelta is not a timestamp, a missing dtype is not float64, and a 0-d numpy
    array is an attribute value like any other array (it round-trips as 0-d)."""
    from atlas.dtypes import canonical_dtype
    from atlas.errors import DTypeError

    for bad in ("m8[ns]", "<m8[ns]", np.dtype("m8[ns]"), None):
        with pytest.raises(DTypeError):
            canonical_dtype(bad)
    assert {canonical_dtype(d) for d in ("M8[ns]", "<M8[ns]", "datetime64[NS]")} == {"timestamp_nanoseconds"}
    with atlas.Atlas.create(tmp_path / "s") as store:
        ds = store.create_dataset("d")
        with pytest.raises(DTypeError):
            ds.define_array("x", None, ["n"], [3])
        assert not ds.has_array("x")
        ds.set_attribute("zero_d", np.array(2.5, dtype="float32"))
    with atlas.Atlas.open(tmp_path / "s", mode="r") as store:
        got = store.open_dataset("d").get_attribute("zero_d")
        assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == np.float32 and got == 2.5


API_CASES = {
    "open_dataset-list-name": lambda s: s.open_dataset(["alpha"]),
    "dataset_exists-dict-name": lambda s: s.dataset_exists({"a": 1}),
    "delete_dataset-set-name": lambda s: s.delete_dataset({1, 2}),
    "create_dataset-list-name": lambda s: s.create_dataset(["x"]),
    "view-of-list-name": lambda s: atlas.DatasetView(s, ["alpha"]).list_arrays(),
    "delete_attribute-list-key": lambda s: s.open_dataset("alpha").delete_attribute(["title"]),
    "read_array-0d-array-start": lambda s: s.open_dataset("alpha").read_array("f", np.array(2)),
    "read_arrays-None": lambda s: s.open_dataset("alpha").read_arrays(None),
    "read_arrays-int": lambda s: s.open_dataset("alpha").read_arrays(3),
    "open-mode-ndarray": lambda s: atlas.Atlas.open(s.location, mode=np.array(["r", "r+"])),
    "read_arrays-list-name": lambda s: s.open_dataset("alpha").read_arrays([["f"]]),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_hostile_call_raises_an_atlas_error(tmp_path, case):
    build_api_store(tmp_path / "s")
    store = atlas.Atlas.open(tmp_path / "s")
    _expect_atlas_error_or_success(store, lambda: API_CASES[case](store))


# -- damaged and forged stores ---------------------------------------------------------------------------

TEMPLATES = {
    "json-zstd": {"meta_format": "json", "meta_compression": "none", "codec": "zstd"},
    "msgpack.zst-raw": {"meta_format": "msgpack", "meta_compression": "zstd", "codec": "none"},
    "json.lz4-lz4": {"meta_format": "json", "meta_compression": "lz4", "codec": "lz4"},
}


def build_corrupt_template(path: Path, meta_format: str, meta_compression: str, codec: str) -> None:
    rng = np.random.default_rng(3)
    with atlas.Atlas.create(path, codec=codec, meta_format=meta_format, meta_compression=meta_compression) as s:
        for k in range(3):
            ds = s.create_dataset(f"ds{k}")
            ds.define_array("f", "float64", ["y", "x"], [12, 10], chunk_shape=[5, 4])
            ds.define_array("i", "int32", ["n"], [30], chunk_shape=[8])  # partly written: a written-mask
            ds.define_array("s", "string", ["n"], [7], chunk_shape=[3])
            ds.define_array("b", "bool", ["n"], [9], chunk_shape=[4])
            ds.define_array("t", "timestamp_nanoseconds", ["n"], [5])
            ds.define_array("z", "uint8", [], [], fill_value=3)
            ds.write_array("f", [0, 0], np.round(rng.normal(size=(12, 10)), 1))
            ds.write_array("i", [3], np.arange(20, dtype="int32"))
            ds.write_array("s", [0], np.array(["alpha", "", "温度", "x" * 30, "y", "z", "w"], dtype=object))
            ds.write_array("b", [0], rng.random(9) < 0.5)
            ds.write_array("t", [0], np.arange(5).astype("datetime64[ns]"))
            ds.set_attribute("title", f"dataset {k} ✓")
            ds.set_attribute("grid", np.arange(6, dtype="float32").reshape(2, 3))
            ds.set_attribute("when", np.datetime64("2024-01-01T00:00:00", "ns"))
    with atlas.Atlas.open(path) as s:  # second generation: overwritten chunks and a deleted dataset
        s.open_dataset("ds0").write_array("f", [2, 2], np.zeros((4, 4)))
        s.delete_dataset("ds2")
        s.open_dataset("ds1").write_array("s", [5], np.array(["new", "ñ"], dtype=object))


def run_corruption(tmp_path: Path, trials_per_template: int, seed: int, figure: str) -> None:
    figures: Counter = Counter()
    failures: list[tuple[str, str]] = []
    for k, (label, options) in enumerate(TEMPLATES.items()):
        template = tmp_path / f"template-{label}"
        build_corrupt_template(template, **options)
        out, work, err = tmp_path / f"{label}.jsonl", tmp_path / f"work-{label}", tmp_path / f"{label}.err"
        work.mkdir()
        first = 0
        lines: list[dict] = []
        while first < trials_per_template:  # after a crash, go on with the next trial
            count = trials_per_template - first
            err_before = err.stat().st_size if err.exists() else 0
            with open(err, "ab") as fh:
                proc = subprocess.run(
                    [sys.executable, str(WORKERS / "corrupt_reader.py"), str(template), str(work),
                     str(seed + k), str(first), str(count), "1024", str(out)],
                    stderr=fh, stdout=fh, timeout=3000, check=False,
                )  # fmt: skip
            lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
            if proc.returncode == 0:
                break
            done = {r["trial"] for r in lines if "trial" in r}
            started = [r for r in lines if "started" in r]
            stderr = err.read_bytes()[err_before:].decode(errors="replace")[-3000:]
            if not started or started[-1]["started"] in done:
                failures.append(
                    ("reader process crashed outside a trial", f"[{label}] rc {proc.returncode}:\n{stderr}")
                )
                break
            crashed = started[-1]
            text = f"[{label}] trial {crashed['started']} killed the reader ({proc.returncode}): {crashed}\n{stderr}"
            failures.append((f"reader process killed (signal {-proc.returncode})", text))
            figures["trials"] += 1
            first = crashed["started"] + 1
        for r in (r for r in lines if "trial" in r):
            figures["trials"] += 1
            figures[f"target_{r['target']}"] += 1
            if not r["opened"]:
                figures["refused_at_open"] += 1
            elif r["refused"]:
                figures["opened_then_some_calls_refused"] += 1
            if r["verify_problems"]:
                figures["verify_reported_damage"] += 1
            if r["opened"] and not r["refused"] and not r["verify_problems"] and not r["bad"]:
                figures["harmless_or_undetected"] += 1
            for b in r["bad"]:
                text = f"[{label}] trial {r['trial']} {r['mutation']}: {b['call']}: {b['text']}"
                failures.append((b["sig"], text))
            for w in r["wrong"]:
                failures.append(
                    ("wrong data", f"[{label}] trial {r['trial']} {r['mutation']}: {w} returned wrong data")
                )
    kinds = Counter(sig for sig, _ in failures)
    figures["violations"] = len(failures)
    record_figure(figure, **figures, violation_kinds=dict(kinds))
    if failures:
        summary = "\n".join(f"{n} x {k}" for k, n in kinds.most_common(30))
        firsts = "\n\n".join(next(text for s, text in failures if s == k) for k in kinds)
        pytest.fail(f"{len(failures)} violations in {figures['trials']} trials:\n{summary}\n\nfirst of each:\n{firsts}")


def test_damaged_and_forged_stores_are_refused_safely(tmp_path):
    run_corruption(tmp_path, 150, seed=1000, figure="test_hostile::test_damaged_and_forged_stores_are_refused_safely")


@pytest.mark.slow
def test_damaged_and_forged_stores_soak(tmp_path):
    run_corruption(tmp_path, 4000, seed=5000, figure="test_hostile::test_damaged_and_forged_stores_soak")


@pytest.mark.parametrize("reader", ["read_array", "read_array_across"])
def test_forged_chunk_length_is_not_allocated(tmp_path, reader):
    """Minimal repro: a compressed chunk whose record and blosc header both claim ~2 GiB
    (checksums recomputed) must be refused before anything that size is allocated."""
    import struct

    from atlas.engine.codecs import checksum
    from atlas.engine.segment import RECORD_DTYPE

    path = tmp_path / "s"
    with atlas.Atlas.create(path) as s:
        ds = s.create_dataset("a")
        ds.define_array("x", "float64", ["n"], [100], chunk_shape=[100])
        ds.write_array("x", [0], np.zeros(100))
    manifest = json.loads((path / "atlas.json").read_text())
    entry = manifest["arrays"]["x"]["segments"][0]
    seg = path / "x" / entry[0]
    data = bytearray(seg.read_bytes())
    io_, il = entry[2], entry[3]
    table = np.frombuffer(bytes(data[io_ : io_ + il]), RECORD_DTYPE).copy()
    off, nb = int(table["offset"][0]), int(table["nbytes"][0])
    assert table["codec"][0] != 0, "zeros must compress"
    struct.pack_into("<I", data, off + 4, 2**31 - 1000)  # blosc header: uncompressed size
    table["raw_nbytes"][0] = 2**31 - 1000
    table["checksum"][0] = checksum(bytes(data[off : off + nb]))
    data[io_ : io_ + il] = table.tobytes()
    entry[4] = checksum(table.tobytes())
    data[-32:] = struct.pack("<QQQ8s", io_, il, entry[4], b"ATLASEND")
    seg.write_bytes(data)
    (path / "atlas.json").write_text(json.dumps(manifest))
    store = atlas.Atlas.open(path, mode="r")
    read = {
        "read_array": lambda: store.open_dataset("a").read_array("x", [0], [3]),
        "read_array_across": lambda: store.read_array_across("x", ["a"], [0], [3]),
    }[reader]
    with address_space_limit(1 << 30):
        _expect_atlas_error_or_success(None, read)


MANIFEST_FORGERIES = {
    # (path in the manifest, forged value)
    "attribute-shape-too-big": (("datasets", "ds0", "attributes", "grid", "s"), [2**40, 2**40]),
    "attribute-shape-not-ints": (("datasets", "ds0", "attributes", "grid", "s"), "a/b"),
    "attribute-values-missing": (("datasets", "ds0", "attributes", "grid", "v"), []),
    "fill-value-beyond-dtype": (("datasets", "ds1", "arrays", "i", "fill_value"), 2**64),
    "stats-max-beyond-dtype": (("datasets", "ds0", "arrays", "z", "stats", "max"), 2**63),
    "slot-beyond-uint64": (("datasets", "ds1", "arrays", "i", "slot"), 10**30),
    "shape-beyond-int64": (("datasets", "ds1", "arrays", "s", "shape", 0), 2**63),
    "shape-cells-beyond-int64": (("datasets", "ds1", "arrays", "f", "shape"), [2**40, 2**40]),
    "chunk-shape-beyond-int64": (("datasets", "ds1", "arrays", "f", "chunk_shape", 0), 10**23),
    "stats-min-beyond-timestamp": (("datasets", "ds1", "arrays", "t", "stats", "min"), 2**64),
    "segment-size-beyond-int64": (("arrays", "t", "segments", 0, 1), 2**64),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_FORGERIES))
def test_forged_manifest_field_is_refused(tmp_path, case):
    """Minimal repros of what the corruption trials found: one forged manifest field;
    opening and reading everything (and verify) must raise only AtlasErrors."""
    import corrupt_reader

    path = tmp_path / "s"
    build_corrupt_template(path, "json", "none", "zstd")
    to_v1(path)  # dataset fields live in a v1 manifest (parts: tests/test_catalog_hostile.py)
    manifest = json.loads((path / "atlas.json").read_text())
    where, value = MANIFEST_FORGERIES[case]
    corrupt_reader.set_path(manifest, where, value)
    (path / "atlas.json").write_text(json.dumps(manifest))
    _results, _refused, bad, _problems = corrupt_reader.read_everything(str(path))
    assert not bad, "\n".join(f"{b['call']}: {b['sig']}: {b['text'].splitlines()[0]}" for b in bad)


def test_api_store_dump_is_stable(tmp_path):
    """Sanity check of the harness: the canonical dump does not depend on the handle."""
    build_api_store(tmp_path / "s")
    with atlas.Atlas.open(tmp_path / "s", mode="r") as a, atlas.Atlas.open(tmp_path / "s") as b:
        assert store_hash(a) == store_hash(b)
        b.compact()
        assert store_hash(a) == store_hash(b)


# -- second round: values stored as other values, forged counters, hostile files, links --------------


def _small_store(path: Path, **kw: Any) -> None:
    with atlas.Atlas.create(path, **kw) as store:
        ds = store.create_dataset("d")
        ds.define_array("a", "int64", ["n"], [4], chunk_shape=[4])
        ds.write_array("a", [0], np.arange(4))


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (not following links) with its bytes."""
    out = {}
    for item in sorted(path.rglob("*")):
        if item.is_file() and not item.is_symlink():
            out[item.relative_to(path).as_posix()] = item.read_bytes()
    return out


def _finishes_within(seconds: float, fn) -> BaseException | None:
    """Run ``fn`` in a daemon thread; fail the test if it is still running after ``seconds``.

    Returns the exception ``fn`` raised (None when it returned), so a hang is a failure
    rather than a test run that never ends.
    """
    import threading

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"the call was still running after {seconds} s (it hangs)")
    return outcome[0]


def _unblock_fifo(fifo: Path) -> None:
    """Open and close the writing end, releasing a reader blocked in open(2) (a regression)."""
    import os

    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


OUT_OF_RANGE_DATES = {
    "datetime-3000": dt.datetime(3000, 1, 1),
    "date-year-1": dt.date(1, 1, 1),
    "datetime64-day-3000": np.datetime64("3000-01-01"),
    "datetime64-s-1500": np.datetime64("1500-06-01T00:00:00", "s"),
    "datetime64-year-2263": np.datetime64("2263", "Y"),
    "datetime64-ps-subnanosecond": np.datetime64(1, "ps"),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE_DATES))
def test_out_of_range_date_attribute_is_refused(tmp_path, case):
    """numpy wraps datetime(3000, 1, 1) to 1830 in datetime64[ns] without an error: a
    date that timestamp_nanoseconds cannot hold exactly is refused, never stored."""
    from atlas.errors import ValueOverflowError

    value = OUT_OF_RANGE_DATES[case]
    with atlas.Atlas.create(tmp_path / "s") as store:
        ds = store.create_dataset("d")
        store.flush()
        with pytest.raises(ValueOverflowError, match=re.escape(repr(value))) as err:
            ds.set_attribute("when", value)
        assert isinstance(err.value, OverflowError)
        with pytest.raises(ValueOverflowError):
            ds.set_attribute("when", value, dtype="timestamp_nanoseconds")
        assert "when" not in ds.attributes() and not store.has_pending_changes


def test_dates_at_the_edges_of_the_range_round_trip_exactly(tmp_path):
    """What fits is converted exactly, from any unit (calendar units included)."""
    values = {
        "last-day": dt.date(2262, 4, 11),
        "micro": dt.datetime(1677, 9, 22, 0, 0, 0, 1),
        "aware": dt.datetime(2000, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "year": np.datetime64("2262", "Y"),
        "month": np.datetime64("1678-01", "M"),
        "tens-of-s": np.datetime64(3, "10s"),
        "ps": np.datetime64(5000, "ps"),
        "last-ns": np.datetime64(2**63 - 1, "ns"),
        "first-ns": np.datetime64(-(2**63) + 1, "ns"),
    }
    expected = {
        "last-day": np.datetime64("2262-04-11", "ns"),
        "micro": np.datetime64("1677-09-22T00:00:00.000001", "ns"),
        "aware": np.datetime64("2000-01-01T00:00", "ns"),
        "year": np.datetime64("2262-01-01", "ns"),
        "month": np.datetime64("1678-01-01", "ns"),
        "tens-of-s": np.datetime64(30, "s").astype("M8[ns]"),
        "ps": np.datetime64(5, "ns"),
        "last-ns": np.datetime64(2**63 - 1, "ns"),
        "first-ns": np.datetime64(-(2**63) + 1, "ns"),
    }
    with atlas.Atlas.create(tmp_path / "s") as store:
        ds = store.create_dataset("d")
        for key, value in values.items():
            ds.set_attribute(key, value)
        ds.set_attribute("days", np.array(["2262-04-11", "NaT"], "M8[D]"))
    with atlas.Atlas.open(tmp_path / "s", mode="r") as store:
        ds = store.open_dataset("d")
        for key, want in expected.items():
            got = ds.get_attribute(key)
            assert np.datetime64(got, "ns") == want, key
        days = ds.get_attribute("days")
        assert days.dtype == np.dtype("M8[ns]") and days[0] == np.datetime64("2262-04-11", "ns") and np.isnat(days[1])


def test_out_of_range_date_in_attribute_list_or_array_is_refused(tmp_path):
    from atlas.errors import ValueOverflowError

    with atlas.Atlas.create(tmp_path / "s") as store:
        ds = store.create_dataset("d")
        store.flush()
        bad = [
            [dt.datetime(2000, 1, 1), dt.datetime(3000, 1, 1)],
            (dt.date(2000, 1, 1), dt.date(1, 1, 1)),
            [np.datetime64("2000-01-01"), np.datetime64("3000-01-01")],
            np.array(["2000-01-01", "3000-01-01"], "M8[D]"),
            np.array(["1000-01-01T00:00:00"], "M8[s]").reshape(1, 1),
        ]
        for value in bad:
            with pytest.raises(ValueOverflowError, match="outside the timestamp_nanoseconds range"):
                ds.set_attribute("when", value)
            with pytest.raises(ValueOverflowError):
                ds.set_attribute("when", value, dtype="timestamp_ns")
        assert "when" not in ds.attributes() and not store.has_pending_changes


@pytest.mark.parametrize("fill", [np.datetime64("2999-12-31"), dt.datetime(2999, 12, 31), "2999-12-31"])
def test_out_of_range_timestamp_fill_value_is_refused(tmp_path, fill):
    """A timestamp_nanoseconds fill value of 2999-12-31 came back as 1830."""
    from atlas.errors import ValueOverflowError

    with atlas.Atlas.create(tmp_path / "s") as store:
        ds = store.create_dataset("d")
        store.flush()
        with pytest.raises(ValueOverflowError, match="2999"):
            ds.define_array("t", "timestamp_nanoseconds", ["n"], [3], fill_value=fill)
        assert not ds.has_array("t") and not store.has_pending_changes


def test_out_of_range_date_xarray_attr_is_refused(tmp_path):
    xr = pytest.importorskip("xarray")
    from atlas.errors import ValueOverflowError

    with atlas.Atlas.create(tmp_path / "s") as store:
        for when in (dt.datetime(3000, 1, 1), dt.date(1, 1, 1)):
            ds = xr.Dataset({"v": ("x", np.arange(2.0), {"when": when})}, attrs={"created": when})
            with pytest.raises(ValueOverflowError, match=re.escape(repr(when))):
                store.add_xr_dataset(ds, "d")
            assert not store.dataset_exists("d")
        ok = xr.Dataset({"v": ("x", np.arange(2.0))}, attrs={"created": dt.datetime(2262, 4, 11, 23, 47, 16, 854775)})
        store.add_xr_dataset(ok, "d")
        store.flush()
        assert store.to_xarray("d").attrs["created"] == dt.datetime(2262, 4, 11, 23, 47, 16, 854775)


def test_out_of_range_datetime64_write_data_is_refused(tmp_path):
    """Data of a coarser unit is refused (no silent cast); a value numpy's astype would
    wrap is named in an OverflowError rather than a hint to convert it."""
    from atlas.errors import DTypeError, ValueOverflowError

    with atlas.Atlas.create(tmp_path / "s") as store:
        ds = store.create_dataset("d")
        ds.define_array("t", "timestamp_nanoseconds", ["n"], [3])
        store.flush()
        with pytest.raises(ValueOverflowError, match=re.escape(repr(np.datetime64("3000-01-01")))):
            ds.write_array("t", [0], np.array(["2000-01-01", "3000-01-01", "NaT"], "M8[D]"))
        with pytest.raises(DTypeError):
            ds.write_array("t", [0], np.array(["2000-01-01", "NaT"], "M8[D]"))
        assert not store.has_pending_changes
        assert np.isnat(ds.read_array("t")).all()


INT_LISTS = {
    "above-int64": [2**63 + 1, 1],
    "uint64-max": [2**64 - 1, 0],
    "tuple": (2**64 - 1, 2**63),
}


@pytest.mark.parametrize("case", sorted(INT_LISTS))
def test_integer_list_beyond_int64_is_stored_as_uint64(tmp_path, case):
    """[2**63 + 1, 1] read back as [9.223372036854776e+18, 1.0]."""
    value = INT_LISTS[case]
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.create_dataset("d").set_attribute("x", value)
    with atlas.Atlas.open(tmp_path / "s", mode="r") as store:
        got = store.open_dataset("d").get_attribute("x")
    assert [int(v) for v in got] == list(value)
    assert all(isinstance(v, np.uint64) for v in got)


@pytest.mark.parametrize(
    "value",
    [[2**63, -1], [-(2**63), 2**64 - 1], [1.5, 2**63 + 1], [0.5, 2**53 + 1], np.array([2**63 + 1, -1], dtype=object)],
    ids=["negative-and-above-int64", "int64-min-and-uint64-max", "float-and-above-int64", "float-and-inexact",
         "object-array"],
)  # fmt: skip
def test_integer_list_fitting_no_dtype_is_refused(tmp_path, value):
    """A list no single dtype holds exactly is refused, never rounded to float64."""
    from atlas.errors import ValueOverflowError

    with atlas.Atlas.create(tmp_path / "s") as store:
        ds = store.create_dataset("d")
        store.flush()
        expected = AtlasError if isinstance(value, np.ndarray) else ValueOverflowError
        with pytest.raises(expected):
            ds.set_attribute("x", value)
        assert "x" not in ds.attributes() and not store.has_pending_changes


COUNTER_FORGERIES = {"generation": 2**63 - 1, "next_dataset_id": 2**63 - 1, "next_slot": 2**64 - 1}


def _forge_counter(path: Path, field: str) -> None:
    _small_store(path, meta_format="json")
    manifest = json.loads((path / "atlas.json").read_text())
    manifest[field] = COUNTER_FORGERIES[field]
    (path / "atlas.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("field", sorted(COUNTER_FORGERIES))
def test_counter_at_its_limit_refuses_the_change_and_keeps_the_store_readable(tmp_path, field):
    """A forged counter at the reader's limit opened fine, and the next flush wrote a
    manifest the reader refused: the writer now refuses with the reader's error."""
    from atlas.errors import CorruptStoreError

    path = tmp_path / "s"
    _forge_counter(path, field)
    before = _tree(path)
    store = atlas.Atlas.open(path)  # the reader's rule accepts the counter itself

    def change() -> None:
        ds = store.create_dataset("e")
        ds.define_array("b", "int64", ["n"], [2])
        ds.write_array("b", [0], np.arange(2))
        store.flush()

    with pytest.raises(CorruptStoreError, match=field):
        change()
    store.discard()
    store.close()
    assert _tree(path) == before
    with atlas.Atlas.open(path, mode="r") as again:
        assert again.open_dataset("d").read_array("a").tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("action", ["flush", "compact"])
def test_generation_at_its_limit_refuses_flush_and_compact(tmp_path, action):
    from atlas.errors import CorruptStoreError

    path = tmp_path / "s"
    _forge_counter(path, "generation")
    before = _tree(path)
    with atlas.Atlas.open(path) as store:
        store.open_dataset("d").write_array("a", [0], np.array([7]))
        with pytest.raises(CorruptStoreError, match="generation"):
            store.flush() if action == "flush" else store.compact(grace_period=0)
        store.discard()
    assert _tree(path) == before
    with atlas.Atlas.open(path, mode="r") as again:
        assert again.generation == 2**63 - 1


def test_manifest_symlink_to_dev_zero_is_refused(tmp_path):
    """It ended in MemoryError after reading 5.5 GB of zeros."""
    from atlas.errors import CorruptStoreError

    path = tmp_path / "s"
    _small_store(path)
    (path / "atlas.json").unlink()
    (path / "atlas.json").symlink_to("/dev/zero")
    with address_space_limit(1 << 30):
        exc = _finishes_within(30, lambda: atlas.Atlas.open(path))
    assert isinstance(exc, CorruptStoreError), exc
    assert str(path / "atlas.json") in str(exc) and "link" in str(exc)


def test_manifest_fifo_is_refused_without_blocking(tmp_path):
    import os

    from atlas.errors import CorruptStoreError

    path = tmp_path / "s"
    _small_store(path)
    (path / "atlas.json").unlink()
    os.mkfifo(path / "atlas.json")
    try:
        exc = _finishes_within(10, lambda: atlas.Atlas.open(path))
    finally:
        _unblock_fifo(path / "atlas.json")
    assert isinstance(exc, CorruptStoreError), exc
    assert str(path / "atlas.json") in str(exc) and "FIFO" in str(exc)


def test_sparse_huge_manifest_is_refused_from_its_size(tmp_path):
    """A sparse 3 GiB manifest was read whole (3.3 GB) before the size check: under a
    1 GiB address-space limit, reading it fails with a MemoryError instead."""
    import os

    from atlas.errors import CorruptStoreError

    path = tmp_path / "s"
    _small_store(path)
    os.truncate(path / "atlas.json", 3 << 30)
    with address_space_limit(1 << 30):
        exc = _finishes_within(30, lambda: atlas.Atlas.open(path))
    assert isinstance(exc, CorruptStoreError), exc
    assert f"is {3 << 30} bytes, over the" in str(exc)


def test_fifo_segment_fails_read_array_quickly(tmp_path):
    """A segment replaced by a FIFO made read_array wait forever in open(2)."""
    import os

    from atlas.errors import CorruptStoreError

    path = tmp_path / "s"
    _small_store(path)
    (segment,) = (path / "a").iterdir()
    segment.unlink()
    os.mkfifo(segment)
    store = atlas.Atlas.open(path, mode="r")
    try:
        exc = _finishes_within(10, lambda: store.open_dataset("d").read_array("a"))
    finally:
        _unblock_fifo(segment)
    assert isinstance(exc, CorruptStoreError), exc
    assert str(segment) in str(exc) and "FIFO" in str(exc)


def test_forged_attribute_shape_with_a_zero_extent_is_refused_at_open(tmp_path):
    """Shape [2**40, 0, 2**40] matches its empty value list, then attributes() raised a
    bare ValueError ("array is too big") from numpy."""
    from atlas.errors import CorruptStoreError

    path = tmp_path / "s"
    with atlas.Atlas.create(path, meta_format="json") as store:
        store.create_dataset("d").set_attribute("m", np.zeros((2, 0, 3)))
    to_v1(path)  # a format 2 store checks the record when it is read (tests/test_catalog_hostile.py)
    manifest = json.loads((path / "atlas.json").read_text())
    for shape in ([2**40, 0, 2**40], [2**60, 0], [0] * 65):
        manifest["datasets"]["d"]["attributes"]["m"]["s"] = shape
        (path / "atlas.json").write_text(json.dumps(manifest))
        with pytest.raises(CorruptStoreError, match="typed array attribute"):
            atlas.Atlas.open(path)
    manifest["datasets"]["d"]["attributes"]["m"]["s"] = [2**40, 0, 2**19]  # numpy can hold this one
    (path / "atlas.json").write_text(json.dumps(manifest))
    with atlas.Atlas.open(path, mode="r") as store:
        assert store.open_dataset("d").attributes()["m"].shape == (2**40, 0, 2**19)


def _linked_array_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A store whose array directory ``a`` (two segments) is a link to a directory outside it."""
    path, outside = tmp_path / "s", tmp_path / "outside"
    _small_store(path)
    with atlas.Atlas.open(path) as store:
        store.open_dataset("d").write_array("a", [0], np.array([9]))
    shutil.move(path / "a", outside)
    (path / "a").symlink_to(outside, target_is_directory=True)
    return path, outside


def test_symlinked_array_directory_is_never_written_through(tmp_path):
    from atlas.errors import CorruptStoreError

    path, outside = _linked_array_dir(tmp_path)
    before, manifest = _tree(outside), (path / "atlas.json").read_bytes()
    store = atlas.Atlas.open(path)
    with pytest.raises(CorruptStoreError, match=re.escape(f"{path / 'a'} is a symbolic link")):
        ds = store.create_dataset("e")  # an array new to this dataset: nothing to read first
        ds.define_array("a", "int64", ["n"], [2])
        ds.write_array("a", [0], np.array([5, 6]))
        store.flush()
    store.discard()
    store.close()
    assert _tree(outside) == before and (path / "atlas.json").read_bytes() == manifest


def test_symlinked_array_directory_is_never_deleted_from(tmp_path):
    from atlas.errors import CorruptStoreError

    path, outside = _linked_array_dir(tmp_path)
    before = _tree(outside)
    assert len(before) == 2
    with atlas.Atlas.open(path) as store, pytest.raises(CorruptStoreError, match="symbolic link"):
        store.compact(grace_period=0)
    assert _tree(outside) == before
    with pytest.raises(CorruptStoreError, match="symbolic link"):  # reads are refused too
        atlas.Atlas.open(path, mode="r").open_dataset("d").read_array("a")


def test_store_root_may_be_a_symlink(tmp_path):
    """A link to the store directory itself (a scratch directory, say) is followed."""
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    _small_store(link)
    with atlas.Atlas.open(link) as store:
        store.open_dataset("d").write_array("a", [0], np.array([8]))
        store.flush()
        store.compact(grace_period=0)
        assert store.open_dataset("d").read_array("a").tolist() == [8, 1, 2, 3]
    assert (real / "atlas.json").is_file() and link.is_symlink()


def test_object_store_manifest_over_the_limit_is_refused_from_its_size(monkeypatch):
    """Object stores give the size with the response: a manifest over the limit is refused
    before its body is read (the limit is lowered here so the test stores a small one)."""
    pytest.importorskip("obstore")
    import atlas.backends.objectstore as objectstore
    from atlas.errors import CorruptStoreError

    store = atlas.Atlas.create("memory://")
    store.create_dataset("d").set_attribute("pad", "x" * 500)
    store.flush()
    monkeypatch.setattr(objectstore, "MAX_GET_BYTES", 200)
    with pytest.raises(CorruptStoreError, match="over the 200-byte limit"):
        atlas.Atlas.open(store.location)
    monkeypatch.undo()
    assert atlas.Atlas.open(store.location).open_dataset("d").get_attribute("pad") == "x" * 500


def test_integer_list_mixing_numpy_uint64_and_negative_ints_stays_integer(tmp_path):
    """A numpy uint64 next to a negative int: int64 when every value fits it."""
    from atlas.errors import ValueOverflowError

    with atlas.Atlas.create(tmp_path / "s") as store:
        ds = store.create_dataset("d")
        ds.set_attribute("x", [np.uint64(5), -1])
        with pytest.raises(ValueOverflowError):
            ds.set_attribute("y", [np.uint64(2**64 - 1), -1])
    with atlas.Atlas.open(tmp_path / "s", mode="r") as store:
        got = store.open_dataset("d").get_attribute("x")
        assert got == [5, -1] and all(type(v) is int for v in got)
        assert "y" not in store.open_dataset("d").attributes()
