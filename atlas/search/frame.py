"""The pandas DataFrame of ``Atlas.catalog`` (pandas is imported only here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from atlas.errors import MissingDependencyError, QueryError
from atlas.search import select_rows
from atlas.search.table import Column, Table

__all__ = ["catalog_frame", "column_names", "plain_values"]


def column_names(table: Table, columns: str | Sequence[str] | None) -> list[str]:
    """The requested columns (every column when None), checked against ``table``."""
    if columns is None:
        return table.column_names()
    if isinstance(columns, str):
        columns = [columns]
    if not isinstance(columns, Sequence) or not all(isinstance(c, str) for c in columns):
        raise QueryError(f"columns must be a list of column names, got {columns!r:.200}")
    out = list(dict.fromkeys(columns))
    if len(table):
        for name in out:
            table.resolve(name)
    return out


def _series_values(pd: Any, col: Column) -> tuple[Any, bool]:
    """The values of a frame column for ``col``, and whether they are a new array
    (else they share memory with ``col``, which the table may keep)."""
    if col.codes is not None and col.categories is not None:  # strings read from a catalogue
        # The distinct strings are checked once, then taken by code (-1: missing).
        codes = np.where(col.present, col.codes.astype(np.intp, copy=False), -1)
        return pd.array(col.categories, dtype=pd.StringDtype()).take(codes, allow_fill=True), True
    kind, values, present = col.kind, col.values, col.present
    if kind in ("int", "uint"):
        dtype = pd.api.types.pandas_dtype(values.dtype.name.capitalize().replace("Uint", "UInt"))
        if present.all():
            return pd.array(values, dtype=dtype), True  # pd.array copies
        return pd.arrays.IntegerArray(values, ~present), False
    if kind == "bool":
        return pd.arrays.BooleanArray(values.astype(bool), ~present), True
    if kind == "string":
        return pd.array(values, dtype=pd.StringDtype()), True
    return values, False  # float (NaN), timestamp (NaT), object/shape (None)


def catalog_frame(table: Table, columns: str | Sequence[str] | None, where: Any) -> Any:
    """``Atlas.catalog``: a DataFrame of ``columns`` for the rows matching ``where``."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingDependencyError(
            "Atlas.catalog needs pandas, which comes with the xarray extra: pip install 'atlas-store[xarray]' "
            "(Atlas.find needs only numpy)"
        ) from exc
    names = column_names(table, columns)
    rows = select_rows(table, where)  # None: every row, so no column is gathered
    if rows is None:
        labels = table.names_array()  # a new array: the index takes it as it is
    else:
        labels = np.empty(rows.size, dtype=object)
        labels[:] = table.names_at(rows)
    index = pd.Index(labels, dtype=object, name="dataset", copy=False)
    data = {}
    for name in names:
        if not len(table):
            data[name] = pd.Series([], dtype=object)
            continue
        col = table.column(name)
        # Values that share memory with the table's kept columns are copied here,
        # once, whatever the pandas version copies by default; the frame then
        # takes the series as they are, one block each, rather than copying them
        # again into blocks of one dtype.
        values, new = _series_values(pd, col if rows is None else col.take(rows))
        data[name] = pd.Series(values, index=index, copy=not new)
    return pd.DataFrame(data, index=index, columns=names, copy=False)


def plain_values(table: Table, name: str, rows: np.ndarray) -> list[Any]:
    """Column ``name`` at ``rows`` as Python values (None where missing), for the CLI."""
    col = table.column(name).take(rows)
    out = col.values.tolist() if col.kind != "timestamp" else list(col.values)
    return [v if ok else None for v, ok in zip(out, col.present.tolist())]
