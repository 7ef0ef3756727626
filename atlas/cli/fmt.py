"""Turning store values into JSON and into CDL-like (``ncdump``) text."""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["cdl_value", "dump_json", "jsonable", "plain_value", "table"]

#: ncdump's type suffixes for numeric attribute values.
_SUFFIX = {
    np.dtype("int8"): "b", np.dtype("uint8"): "ub", np.dtype("int16"): "s", np.dtype("uint16"): "us",
    np.dtype("int32"): "", np.dtype("uint32"): "u", np.dtype("int64"): "LL", np.dtype("uint64"): "ULL",
    np.dtype("float32"): "f", np.dtype("float64"): "",
}  # fmt: skip


def _float_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data.

    numpy scalars become Python numbers, arrays lists, timestamps ISO 8601 strings,
    bytes text (UTF-8, invalid bytes replaced), and non-finite floats the strings
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no literal for them).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return x if math.isfinite(x) else _float_text(x)
    if isinstance(value, np.datetime64):
        return "NaT" if np.isnat(value) else str(np.datetime_as_string(value))
    if isinstance(value, np.timedelta64):
        return "NaT" if np.isnat(value) else str(value)
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return jsonable(value[()])
        return [jsonable(x) for x in value]
    if isinstance(value, (list, tuple)):
        return [jsonable(x) for x in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.dtype):
        return value.str
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return str(value)


def dump_json(data: Any) -> None:
    """Print ``data`` as indented, strictly valid JSON on stdout."""
    sys.stdout.write(json.dumps(jsonable(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def _quote(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def plain_value(value: Any) -> str:
    """A scalar for ``// stats`` lines: numbers as numpy prints them, text quoted."""
    if value is None:
        return "-"
    if isinstance(value, (str, np.str_)):
        return _quote(str(value))
    if isinstance(value, (bytes, np.bytes_)):
        return _quote(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, np.datetime64):
        return "NaT" if np.isnat(value) else str(np.datetime_as_string(value))
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return _float_text(float(value))
    return str(value)


def cdl_value(value: Any) -> str:
    """An attribute value the way ``ncdump`` prints it: ``"text"``, ``-127b``, ``9.96921e+36f``, ``1, 2, 3``."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return cdl_value(value[()])
        if value.dtype.kind in "SU" or value.dtype == object:
            return ", ".join(cdl_value(x) for x in value.reshape(-1).tolist())
        return ", ".join(cdl_value(x) for x in value.reshape(-1))
    if isinstance(value, (list, tuple)):
        return ", ".join(cdl_value(x) for x in value) if value else '""'
    if isinstance(value, (str, np.str_, bytes, np.bytes_, np.datetime64, bool, np.bool_)) or value is None:
        return plain_value(value) if value is not None else '""'
    if isinstance(value, np.generic) and value.dtype in _SUFFIX:
        if value.dtype.kind == "f":
            x = float(value)
            text = _float_text(x) if not math.isfinite(x) else (str(value) if value.dtype.itemsize == 4 else repr(x))
        else:
            text = str(int(value))
        return text + _SUFFIX[value.dtype]
    if isinstance(value, float):
        return _float_text(value)
    return str(value)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str], right: Sequence[int] = ()) -> list[str]:
    """Rows as aligned text columns (columns whose index is in ``right`` are right-aligned)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return lines
