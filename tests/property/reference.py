"""Plain-numpy reference model of an ATLAS array, and comparison helpers.

The model keeps every array in *result* form (what ``read_array`` returns:
``datetime64[ns]`` for timestamps, object arrays of ``str`` for strings) plus a
boolean ``written`` mask, which is all the stats reference needs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NAT_INT = int(np.iinfo(np.int64).min)

_NUMPY = {
    "int8": np.dtype("int8"),
    "int16": np.dtype("int16"),
    "int32": np.dtype("int32"),
    "int64": np.dtype("int64"),
    "uint8": np.dtype("uint8"),
    "uint16": np.dtype("uint16"),
    "uint32": np.dtype("uint32"),
    "uint64": np.dtype("uint64"),
    "float32": np.dtype("float32"),
    "float64": np.dtype("float64"),
    "timestamp_nanoseconds": np.dtype("datetime64[ns]"),
    "string": np.dtype(object),
    "bool": np.dtype(bool),
}


def result_dtype(dtype: str) -> np.dtype:
    """The numpy dtype ``read_array`` returns for an ATLAS dtype name."""
    return _NUMPY[dtype]


def is_float(dtype: str) -> bool:
    """True for float32 and float64."""
    return dtype in ("float32", "float64")


def is_int(dtype: str) -> bool:
    """True for the signed and unsigned integer dtypes."""
    return dtype.startswith(("int", "uint"))


def fill_scalar(dtype: str, fill: Any) -> Any:
    """The result-form value of an unwritten cell (fill value or the default)."""
    if fill is None:
        if is_float(dtype):
            return np.nan
        if dtype == "timestamp_nanoseconds":
            return np.datetime64("NaT", "ns")
        if dtype == "string":
            return ""
        if dtype == "bool":
            return False
        return 0
    return to_result_value(dtype, fill)


def to_result_value(dtype: str, value: Any) -> Any:
    """A fill value as given to ``define_array``, in result form."""
    if dtype == "timestamp_nanoseconds":
        if isinstance(value, np.datetime64):
            return value.astype("datetime64[ns]")
        return np.datetime64(int(value), "ns") if int(value) != NAT_INT else np.datetime64("NaT", "ns")
    if dtype == "float32":
        return np.float32(value)
    return value


def to_result_array(dtype: str, data: np.ndarray) -> np.ndarray:
    """What writing ``data`` (in any accepted input form) stores, in result form."""
    if dtype == "timestamp_nanoseconds":
        return data.view("datetime64[ns]") if data.dtype.kind == "i" else data.astype("datetime64[ns]")
    if dtype == "string":
        out = np.empty(data.shape, dtype=object)
        flat = out.reshape(-1)
        for i, item in enumerate(data.reshape(-1).tolist()):
            flat[i] = item.decode("utf-8") if isinstance(item, bytes) else str(item)
        return out
    return data.copy()


@dataclass(frozen=True)
class ArraySpec:
    """Everything ``define_array`` needs (``chunk_shape`` None means the default)."""

    dtype: str
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...] | None
    fill_value: Any

    def model(self) -> ArrayModel:
        """A fresh model of an array defined with this spec."""
        return ArrayModel(self.dtype, self.shape, self.chunk_shape, self.fill_value)


@dataclass
class ArrayModel:
    """Schema, expected cells and written mask of one array."""

    dtype: str
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...] | None
    fill_value: Any
    dims: tuple[str, ...] = ()
    values: np.ndarray = field(init=False)
    written: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not self.dims:
            self.dims = tuple(f"d{i}" for i in range(len(self.shape)))
        self.values = np.empty(self.shape, dtype=result_dtype(self.dtype))
        self.values[...] = fill_scalar(self.dtype, self.fill_value)
        self.written = np.zeros(self.shape, dtype=bool)

    def write(self, start: tuple[int, ...], data: np.ndarray) -> None:
        """Apply ``write_array(start, data)`` to the model."""
        box = box_slices(start, data.shape)
        self.values[box] = to_result_array(self.dtype, data)
        self.written[box] = True

    def read(self, start: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
        """The expected result of ``read_array(start, shape)``."""
        return self.values[(*box_slices(start, shape), Ellipsis)]  # an array even for 0-D

    def clone(self) -> ArrayModel:
        """A deep copy."""
        return copy.deepcopy(self)


def define(ds: Any, name: str, spec: ArraySpec) -> ArrayModel:
    """Call ``ds.define_array`` for ``spec`` and return the fresh model of the array."""
    model = spec.model()
    ds.define_array(
        name,
        spec.dtype,
        list(model.dims),
        list(spec.shape),
        chunk_shape=None if spec.chunk_shape is None else list(spec.chunk_shape),
        fill_value=spec.fill_value,
    )
    return model


def box_slices(start: tuple[int, ...] | list[int], shape: tuple[int, ...] | list[int]) -> tuple[slice, ...]:
    """Slices selecting the box ``start``/``shape``."""
    return tuple(slice(s, s + n) for s, n in zip(start, shape))


# -- comparisons ---------------------------------------------------------------------------


def assert_cells_equal(got: Any, expected: np.ndarray, dtype: str, where: str = "") -> None:
    """Assert a read result equals the model: same shape, dtype and cells.

    Floats compare NaN-equal and sign-of-zero exact; timestamps compare their int64
    patterns (NaT included); strings compare element-wise as ``str``.
    """
    assert isinstance(got, np.ndarray), f"{where}: expected ndarray, got {type(got).__name__}"
    assert got.shape == expected.shape, f"{where}: shape {got.shape} != {expected.shape}"
    assert got.dtype == result_dtype(dtype), f"{where}: dtype {got.dtype} != {result_dtype(dtype)}"
    if dtype == "timestamp_nanoseconds":
        ok = np.array_equal(got.view("i8"), expected.view("i8"))
    elif is_float(dtype):
        same_nan = np.isnan(got) == np.isnan(expected)
        numbers = ~np.isnan(expected)
        ok = bool(same_nan.all()) and bool(
            np.array_equal(got[numbers], expected[numbers])
            and np.array_equal(np.signbit(got[numbers]), np.signbit(expected[numbers]))
        )
    elif dtype == "string":
        ok = (
            all(type(g) is str for g in got.reshape(-1).tolist())
            and got.reshape(-1).tolist() == expected.reshape(-1).tolist()
        )
    else:
        ok = np.array_equal(got, expected)
    assert ok, f"{where}: cells differ\n got      {got!r}\n expected {expected!r}"


def scalars_equal(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and NaT as equal to NaT."""
    if isinstance(a, np.datetime64) or isinstance(b, np.datetime64):
        return (
            isinstance(a, np.datetime64)
            and isinstance(b, np.datetime64)
            and int(a.astype("datetime64[ns]").view("i8")) == int(b.astype("datetime64[ns]").view("i8"))
        )
    floats = isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating))
    if floats and (math.isnan(a) or math.isnan(b)):
        return math.isnan(a) and math.isnan(b)
    return bool(a == b)


# -- stats reference ---------------------------------------------------------------------------


def _elementwise(values: np.ndarray, predicate: Callable[[Any], bool]) -> np.ndarray:
    """``predicate`` applied to every cell as a Python object (exact ints, any rank)."""
    flat = values.reshape(-1).tolist()
    return np.fromiter((predicate(v) for v in flat), dtype=bool, count=len(flat)).reshape(values.shape)


def null_mask(model: ArrayModel) -> np.ndarray:
    """Cells ``array_stats`` must count as null: unwritten, NaN/NaT or equal to the fill."""
    values = model.values
    null = ~model.written
    if is_float(model.dtype):
        null = null | np.isnan(values)
    elif model.dtype == "timestamp_nanoseconds":
        null = null | np.isnat(values)
    fill = model.fill_value
    if fill is not None:
        expected_fill = to_result_value(model.dtype, fill)
        if model.dtype == "string":
            eq = _elementwise(values, lambda v: v == expected_fill)
        elif model.dtype == "timestamp_nanoseconds":
            eq = values.view("i8") == int(expected_fill.view("i8"))
        elif is_int(model.dtype):
            # compare exactly as Python ints (never through float64)
            eq = _elementwise(values, lambda v: v == int(fill))
        else:
            eq = values == expected_fill
        null = null | eq
    return np.asarray(null, dtype=bool)


def reference_stats(model: ArrayModel) -> dict[str, Any]:
    """The stats ``array_stats`` must return for ``model``."""
    null = null_mask(model)
    valid = model.values[~null]
    out: dict[str, Any] = {"row_count": int(model.values.size), "null_count": int(null.sum())}
    if valid.size == 0:
        out["min"] = out["max"] = None
    elif model.dtype == "string":
        items = valid.tolist()
        out["min"], out["max"] = min(items), max(items)
    elif model.dtype == "bool":
        out["min"], out["max"] = bool(valid.min()), bool(valid.max())
    else:
        out["min"], out["max"] = valid.min(), valid.max()
    return out


def assert_stats_match(got: dict[str, Any], model: ArrayModel, where: str = "") -> None:
    """Assert ``array_stats`` output agrees with the reference and the invariants."""
    ref = reference_stats(model)
    assert set(got) >= {"row_count", "null_count", "min", "max"}, f"{where}: keys {sorted(got)}"
    assert got["row_count"] == ref["row_count"], f"{where}: row_count {got['row_count']} != {ref['row_count']}"
    assert got["null_count"] == ref["null_count"], f"{where}: null_count {got['null_count']} != {ref['null_count']}"
    for key in ("min", "max"):
        value = got[key]
        if ref[key] is None:
            assert value is None, f"{where}: {key} {value!r}, expected None (no valid cell)"
            continue
        assert value is not None, f"{where}: {key} is None, expected {ref[key]!r}"
        _check_stat_type(value, model.dtype, f"{where}: {key}")
        assert scalars_equal(value, ref[key]), f"{where}: {key} {value!r} != {ref[key]!r}"
        if is_float(model.dtype):
            assert not math.isnan(value), f"{where}: {key} is NaN"


def _check_stat_type(value: Any, dtype: str, where: str) -> None:
    if dtype == "string":
        assert type(value) is str, f"{where}: {type(value).__name__} is not str"
    elif dtype == "bool":
        assert type(value) is bool, f"{where}: {type(value).__name__} is not bool"
    elif dtype == "timestamp_nanoseconds":
        assert isinstance(value, np.datetime64), f"{where}: {type(value).__name__} is not numpy.datetime64"
    else:
        assert isinstance(value, np.generic) and value.dtype == result_dtype(dtype), (
            f"{where}: {value!r} ({type(value).__name__}) is not a numpy {dtype} scalar"
        )
