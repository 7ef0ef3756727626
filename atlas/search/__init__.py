"""Search by metadata: filter datasets on attribute and stats columns.

* :mod:`~atlas.search.table` - the column model and the table of datasets held in
  memory (a v1 manifest's, pending ones), columns built per use;
* :mod:`~atlas.search.catalog_table` - the table of a format v2 catalogue;
* :mod:`~atlas.search.overlay` - pending changes over a committed table, and
  :func:`table_of_state`, the table of a handle;
* :mod:`~atlas.search.parts` - the search of a catalogue of several parts one
  part at a time (what ``Atlas.find`` uses when it gives the same answer);
* :mod:`~atlas.search.predicates` - predicate objects (:func:`col`, tuples) and
  their vectorised evaluation;
* :mod:`~atlas.search.parse` - the safe parser of the string form;
* :mod:`~atlas.search.frame` - the pandas DataFrame of ``Atlas.catalog``.

``Atlas.find`` and ``Atlas.catalog`` are the entry points; ``docs/finding.md``
documents the grammar and the semantics of missing values.
"""

from __future__ import annotations

import numpy as np

from atlas.search.overlay import table_of_state
from atlas.search.parse import parse_where
from atlas.search.parts import search_parts
from atlas.search.predicates import OPERATORS, ColumnRef, Expression, as_expression, col
from atlas.search.table import STATS_SUFFIXES, Table

__all__ = [
    "OPERATORS",
    "STATS_SUFFIXES",
    "ColumnRef",
    "Expression",
    "Table",
    "as_expression",
    "col",
    "find_names",
    "parse_where",
    "select",
    "select_rows",
    "table_of_state",
]


def find_names(table: Table, where: object) -> list[str]:
    """Names of the rows of ``table`` that satisfy ``where`` (None: every row), sorted.

    A catalogue of several parts, or with pending changes, is searched one part
    at a time when that gives the same answer (:mod:`atlas.search.parts`);
    otherwise the merged table is.
    """
    if where is None:
        return list(table.names)
    expr = as_expression(where)
    found = search_parts(table, expr)
    if found is not None:
        return found
    rows = select_rows(table, expr)
    assert rows is not None
    return table.names_at(rows)


def select(table: Table, where: object) -> list[int]:
    """Row numbers of ``table`` that satisfy ``where`` (None: every row).

    A store without datasets answers every query with no rows, even one naming
    columns it does not have (it has none).
    """
    rows = select_rows(table, where)
    return list(range(len(table))) if rows is None else rows.tolist()


def select_rows(table: Table, where: object) -> np.ndarray | None:
    """:func:`select` as an int64 array, or None when ``where`` is None (every row)."""
    if where is None:
        return None
    expr = as_expression(where)
    if not len(table):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(expr.mask(table))
