"""Search predicates: expression objects evaluated as numpy masks over a table's columns.

Build them with :func:`col` (``col("temp.max") > 20``, ``col("platform").isin([...])``,
``col("LATITUDE").overlaps(40, 50)``), combine with ``&``, ``|`` and ``~``, or
give tuples (``("temp.max", ">", 20)``) and strings (:mod:`atlas.search.parse`);
:func:`as_expression` turns any of them into one :class:`Expression`.

A row lacking a column (a dataset without the attribute or array, or without
stats) never satisfies a comparison, ``in``, ``startswith`` or ``overlaps``, and
``!=`` too is False there; ``not`` flips a whole test, so ``not (x == 1)`` keeps
those rows.  NaN compares unequal to everything, as in Python.
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from atlas.errors import QueryError, QueryTypeError
from atlas.search.table import Column, Table

__all__ = [
    "OPERATORS",
    "ColumnRef",
    "Expression",
    "Logic",
    "Not",
    "Predicate",
    "as_expression",
    "col",
]

_COMPARE = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
#: Operators of the tuple form ``(column, op, value)`` (``is null`` forms take no value).
OPERATORS = (*_COMPARE, "between", "in", "not in", "startswith", "overlaps", "is null", "is not null")
_NUMERIC = ("int", "uint", "float")


class Expression:
    """A search predicate; ``&``, ``|`` and ``~`` combine them."""

    def __and__(self, other: Any) -> Expression:
        return Logic("and", [self, as_expression(other)])

    def __or__(self, other: Any) -> Expression:
        return Logic("or", [self, as_expression(other)])

    def __invert__(self) -> Expression:
        return Not(self)

    def mask(self, table: Table) -> np.ndarray:
        """Boolean mask over ``table.names``."""
        raise NotImplementedError


class Logic(Expression):
    """Items joined by ``op`` (``"and"`` or ``"or"``): what ``&`` and ``|`` build."""

    def __init__(self, op: str, items: list[Expression]) -> None:
        self.op = op
        # flattened, so long chains of `and`/`or` evaluate without deep recursion
        self.items = [x for i in items for x in (i.items if isinstance(i, Logic) and i.op == op else [i])]

    def mask(self, table: Table) -> np.ndarray:
        out = self.items[0].mask(table)
        for item in self.items[1:]:
            out = (out & item.mask(table)) if self.op == "and" else (out | item.mask(table))
        return out

    def __repr__(self) -> str:
        return "(" + f" {self.op} ".join(map(repr, self.items)) + ")"


class Not(Expression):
    """The negation of ``inner``: what ``~`` builds."""

    def __init__(self, inner: Expression) -> None:
        self.inner = inner

    def mask(self, table: Table) -> np.ndarray:
        return ~self.inner.mask(table)

    def __repr__(self) -> str:
        return f"not {self.inner!r}"


def _text(value: Any) -> str:
    return repr(value) if not isinstance(value, (list, tuple)) else "[" + ", ".join(map(repr, value)) + "]"


class Predicate(Expression):
    """One test on one column: ``op`` with ``value``."""

    def __init__(self, column: str, op: str, value: Any = None) -> None:
        if not isinstance(column, str):
            raise QueryError(f"a column name must be a str, not {type(column).__name__}")
        self.column, self.op, self.value = column, op, value
        if op in ("between", "overlaps"):
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
                raise QueryError(f"{column} {op}: takes a pair (low, high), got {value!r:.100}")
        elif op in ("in", "not in"):
            if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, set, frozenset, np.ndarray)):
                raise QueryError(f"{column} {op}: takes a list of values, got {value!r:.100}")
            self.value = list(value)
        elif op == "startswith" and not isinstance(value, str):
            raise QueryTypeError(f"{column} startswith: takes a string prefix, got {value!r:.100}")

    def __repr__(self) -> str:
        if self.op in ("is null", "is not null"):
            return f"{self.column} {self.op}"
        if self.op == "between":
            return f"{self.column} between {self.value[0]!r} and {self.value[1]!r}"
        return f"{self.column} {self.op} {_text(self.value)}"

    def mask(self, table: Table) -> np.ndarray:
        op = self.op
        if op == "overlaps":
            if not table.is_array(self.column):
                table.resolve(f"{self.column}.min")  # raises, with close matches
            low, high = table.column(f"{self.column}.min"), table.column(f"{self.column}.max")
            a, b = (self._literal(low, v) for v in self.value)
            return self._compare(high, ">=", a) & self._compare(low, "<=", b)
        column = table.column(self.column)
        if op == "is null":
            return ~column.present
        if op == "is not null":
            return column.present.copy()
        if column.codes is not None and column.categories is not None:
            # A dictionary-coded string column: decided once per distinct string,
            # then gathered by code (missing rows hold placeholder codes).
            strings = Column(column.categories, np.ones(column.categories.size, dtype=bool), column.kind)
            return self._test(strings)[column.codes] & column.present
        return self._test(column)

    def _test(self, column: Column) -> np.ndarray:
        """The mask of every test but ``overlaps`` and the ``is null`` forms."""
        op = self.op
        if op in _COMPARE:
            return self._compare(column, op, self._literal(column, self.value))
        if op == "between":
            a, b = (self._literal(column, v) for v in self.value)
            return self._compare(column, ">=", a) & self._compare(column, "<=", b)
        if op in ("in", "not in"):
            found = self._isin(column, [self._literal(column, v) for v in self.value])
            return found if op == "in" else column.present & ~found
        if op == "startswith":
            if column.kind != "string":
                raise QueryTypeError(f"{self!r}: column {self.column!r} holds {_kinds(column)}, not strings")
            vals = _filled(column)
            return np.fromiter(map(str.startswith, vals, [self.value] * vals.size), bool, vals.size) & column.present
        raise QueryError(f"unknown operator {op!r:.50}; expected one of {', '.join(OPERATORS)}")

    def _literal(self, column: Column, value: Any) -> Any:
        """``value`` as a scalar comparable with ``column``, or a clear error."""
        kind = column.kind
        if kind in _NUMERIC:
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
                return value
        elif kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
        elif kind == "string":
            if isinstance(value, str):
                return value
        elif kind == "timestamp":
            return self._timestamp(value)
        elif self.op in ("==", "!=", "in", "not in"):
            return value  # lists, arrays, mixed values: Python equality
        else:
            raise QueryTypeError(f"{self!r}: column {self.column!r} holds {_kinds(column)}; it has no order")
        raise QueryTypeError(
            f"{self!r}: column {self.column!r} holds {_kinds(column)}; cannot compare it with "
            f"{value!r:.100} ({type(value).__name__})"
        )

    def _timestamp(self, value: Any) -> np.datetime64:
        if isinstance(value, (str, np.datetime64, _dt.date)) and not isinstance(value, bool):
            try:
                out = np.datetime64(value, "ns") if not isinstance(value, np.datetime64) else value.astype("M8[ns]")
            except (ValueError, TypeError, OverflowError):
                out = None
            if out is not None and not np.isnat(out):
                return out
        raise QueryTypeError(
            f"{self!r}: column {self.column!r} holds timestamps; {value!r:.100} is not a timestamp "
            "(use an ISO 8601 string such as '2024-01-31T12:00', a datetime or a numpy.datetime64)"
        )

    @staticmethod
    def _compare(column: Column, op: str, value: Any) -> np.ndarray:
        vals = column.values
        if column.kind in ("int", "uint") and isinstance(value, (int, np.integer)):
            info = np.iinfo(vals.dtype)
            if not info.min <= value <= info.max:  # out of the column's range: decided by the side
                above = value > info.max
                holds = op == "!=" or (op in ("<", "<=") and above) or (op in (">", ">=") and not above)
                return column.present.copy() if holds else np.zeros(vals.size, dtype=bool)
        if column.kind in ("string", "object", "shape"):
            if column.kind == "string":
                vals = _filled(column)
            else:
                eq = np.fromiter((_same(v, value) for v in vals), bool, vals.size)
                return (eq if op == "==" else ~eq) & column.present
        with np.errstate(invalid="ignore"):
            return np.asarray(_COMPARE[op](vals, value), dtype=bool) & column.present

    def _isin(self, column: Column, values: list[Any]) -> np.ndarray:
        if not values:
            return np.zeros(column.values.size, dtype=bool)
        if column.kind in ("object", "shape"):
            out = np.zeros(column.values.size, dtype=bool)
            for v in values:
                out |= self._compare(column, "==", v)
            return out
        if column.kind in ("int", "uint"):
            # only whole numbers within the column's range can match (3.5 must not become 3)
            whole = [int(v) for v in values if isinstance(v, (int, np.integer)) or float(v).is_integer()]
            values = [v for v in whole if _fits(v, column.values.dtype)]
            if not values:
                return np.zeros(column.values.size, dtype=bool)
        vals = _filled(column) if column.kind == "string" else column.values
        return np.isin(vals, np.array(values, dtype=vals.dtype if column.kind != "float" else None)) & column.present


def _fits(value: int, dtype: np.dtype) -> bool:
    info = np.iinfo(dtype)
    return bool(info.min <= value <= info.max)


def _same(a: Any, b: Any) -> bool:
    """Python equality that also compares numpy arrays whole."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _filled(column: Column) -> np.ndarray:
    """A string column with missing rows as ``""``, so that every row compares as a str."""
    if column.present.all():
        return column.values
    vals = column.values.copy()
    vals[~column.present] = ""
    return vals


def _kinds(column: Column) -> str:
    return {
        "int": "integers", "uint": "unsigned integers", "float": "numbers", "bool": "booleans",
        "string": "strings", "timestamp": "timestamps", "object": "lists, arrays or mixed values",
        "shape": "shapes (tuples)",
    }[column.kind]  # fmt: skip


class ColumnRef:
    """A column by name, for building predicates: ``col("temp.max") > 20``.

    Comparison operators (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) and the
    methods below return an :class:`Expression`.
    """

    __hash__ = None  # type: ignore[assignment]  # == builds a predicate

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, value: Any) -> Expression:  # type: ignore[override]
        return Predicate(self.name, "==", value)

    def __ne__(self, value: Any) -> Expression:  # type: ignore[override]
        return Predicate(self.name, "!=", value)

    def __lt__(self, value: Any) -> Expression:
        return Predicate(self.name, "<", value)

    def __le__(self, value: Any) -> Expression:
        return Predicate(self.name, "<=", value)

    def __gt__(self, value: Any) -> Expression:
        return Predicate(self.name, ">", value)

    def __ge__(self, value: Any) -> Expression:
        return Predicate(self.name, ">=", value)

    def between(self, low: Any, high: Any) -> Expression:
        """``low <= column <= high``."""
        return Predicate(self.name, "between", (low, high))

    def isin(self, values: Sequence[Any]) -> Expression:
        """The column equals one of ``values``."""
        return Predicate(self.name, "in", values)

    def startswith(self, prefix: str) -> Expression:
        """A string column starts with ``prefix``."""
        return Predicate(self.name, "startswith", prefix)

    def isnull(self) -> Expression:
        """The dataset lacks the attribute (or the array, or its stats)."""
        return Predicate(self.name, "is null")

    def notnull(self) -> Expression:
        """The dataset has the attribute (or the array's stats)."""
        return Predicate(self.name, "is not null")

    def overlaps(self, low: Any, high: Any) -> Expression:
        """Array ``name``'s value range ``[name.min, name.max]`` overlaps ``[low, high]``."""
        return Predicate(self.name, "overlaps", (low, high))


def col(name: str) -> ColumnRef:
    """A column (attribute key, stats column such as ``temp.max``, or array name for
    ``overlaps``) to build a predicate from: ``col("platform") == "buoy-1"``."""
    return ColumnRef(name)


def as_expression(where: Any) -> Expression:
    """One :class:`Expression` from an expression, a string, a tuple or a list of them (all must hold).

    Tuples are ``(column, op, value)`` with ``op`` one of :data:`OPERATORS`, or
    ``(column, "is null")`` / ``(column, "is not null")``.

    Raises
    ------
    QueryError
        For anything else, an unknown operator or a malformed tuple.
    """
    if isinstance(where, Expression):
        return where
    if isinstance(where, str):
        from atlas.search.parse import parse_where

        return parse_where(where)
    if isinstance(where, tuple):
        if len(where) == 2 and where[1] in ("is null", "is not null"):
            return Predicate(where[0], where[1])
        if len(where) != 3:
            raise QueryError(f"a predicate tuple is (column, op, value), got {where!r:.200}")
        column, op, value = where
        if op not in OPERATORS or op in ("is null", "is not null"):
            raise QueryError(f"unknown operator {op!r:.50} in {where!r:.200}; expected one of {', '.join(OPERATORS)}")
        return Predicate(column, op, value)
    if isinstance(where, list):
        if not where:
            raise QueryError("an empty list of predicates: pass None to select everything")
        return Logic("and", [as_expression(w) for w in where])
    raise QueryError(
        f"where must be an expression, a string, a (column, op, value) tuple or a list of them, "
        f"not {type(where).__name__}"
    )
