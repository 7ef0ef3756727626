"""Calls of :class:`~atlas.Atlas` that span many datasets: metadata search and bulk reads.

A mixin of :class:`~atlas.Atlas` (its methods are documented there); it works
through the handle's :attr:`~atlas.Atlas.session`, so the search columns and the
bulk gather load only when first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from atlas.errors import InvalidArgumentError
from atlas.selection import check_array_name

if TYPE_CHECKING:
    import numpy as np

    from atlas.txn.session import Session

__all__ = ["AcrossDatasets"]


class AcrossDatasets:
    """Metadata search (:meth:`find`, :meth:`catalog`) and cross-dataset bulk reads."""

    session: Session

    def find(self, where: Any = None, **equals: Any) -> list[str]:
        """Names of the datasets matching a metadata filter, sorted (needs only numpy).

        Parameters
        ----------
        where : str, expression, tuple or list, optional
            A predicate on attribute columns (``platform``) and per-array stats
            columns (``temp.min``, ``temp.max``, ``temp.count``, ``temp.nulls``):
            a string such as ``"platform == 'buoy-1' and temp.max > 20 and
            LATITUDE overlaps [40, 50]"``, an expression built with
            :func:`atlas.search.col` (``col("temp.max") > 20``, combined with
            ``&``, ``|``, ``~``), a tuple ``(column, op, value)``, or a list of
            those that must all hold.  None selects every dataset.
        **equals
            ``key=value``: attribute ``key`` equals ``value`` (ANDed with ``where``).

        Returns
        -------
        list of str
            Ready for :meth:`read_array_across_stacked` or ``to_xarray_many``.
            Uncommitted changes of this handle are included.

        Raises
        ------
        QuerySyntaxError
            When a ``where`` string does not parse (the message gives the position).
        UnknownColumnError
            For a column the store does not have (close matches are listed).
        QueryTypeError
            When a value's type does not fit its column (a number for a string column).

        Notes
        -----
        docs/finding.md has the grammar and how missing values and NaN behave.
        """
        from atlas.search import as_expression, find_names, table_of_state

        expr = None if where is None else as_expression(where)
        for key, value in equals.items():
            term = as_expression((key, "==", value))
            expr = term if expr is None else expr & term
        with self.session.lock:
            return find_names(table_of_state(self.session.state()), expr)

    def catalog(self, columns: str | Sequence[str] | None = None, where: Any = None) -> Any:
        """A pandas DataFrame of dataset metadata, indexed by dataset name (sorted).

        Parameters
        ----------
        columns : list of str, optional
            Attribute keys and stats columns (``temp.min``, ``temp.max``,
            ``temp.count`` = valid cells, ``temp.nulls``, ``temp.shape``) to
            include; default every attribute key, then the five stats columns
            of every array.
        where : optional
            A filter as for :meth:`find`.

        Returns
        -------
        pandas.DataFrame
            Typed columns: nullable integers (``Int64``...), ``boolean``,
            ``string``, ``float64`` (NaN where missing), ``datetime64[ns]``
            (NaT where missing); lists, arrays, mixed values and shapes as
            objects (None where missing).  Internal keys of the xarray mapping
            are never columns.  Uncommitted changes are included.  The frame
            shares no memory with the columns the handle keeps for its next
            queries: writing into it changes no later answer.

        Raises
        ------
        MissingDependencyError
            Without pandas (it comes with the ``xarray`` extra).
        UnknownColumnError, QuerySyntaxError, QueryTypeError
            As for :meth:`find`.
        """
        from atlas.search import table_of_state
        from atlas.search.frame import catalog_frame

        with self.session.lock:
            return catalog_frame(table_of_state(self.session.state()), columns, where)

    def read_array_across(
        self,
        array: str,
        dataset_names: Sequence[str],
        start: Sequence[int] | None = None,
        shape: Sequence[int] | None = None,
    ) -> list[np.ndarray | None]:
        """Read the same box of ``array`` from many datasets.

        Returns
        -------
        list
            One array per dataset name, in order; None where the dataset does not
            define ``array``.

        Raises
        ------
        DatasetNotFoundError
            If a name is not a dataset (a ``KeyError``).
        SelectionError
            If the box does not fit one of the arrays.
        InvalidNameError
            If ``array`` is not a str (a ``ValueError``).
        """
        from atlas import bulk  # the gather and the libblosc2 bridge load on first use

        check_array_name(array)
        with self.session.lock:
            return bulk.read_across(self.session.state(), array, dataset_names, start, shape)

    def read_array_across_stacked(
        self,
        array: str,
        dataset_names: Sequence[str],
        start: Sequence[int] | None = None,
        shape: Sequence[int] | None = None,
        *,
        pad: bool = False,
    ) -> np.ndarray:
        """Read the same box of ``array`` from many datasets into one ``(N, *box)`` array.

        Parameters
        ----------
        pad : bool
            When the datasets' shapes differ (arrays grown to different lengths),
            read the box against the largest extent of every axis and fill each
            dataset's cells beyond its own shape with its fill value (NaN, NaT, 0,
            False or "" when the array has none).  Keyword only; without it
            differing shapes need an explicit box.

        Raises
        ------
        ArrayNotFoundError
            If a dataset does not define ``array`` (a ``KeyError`` naming it).
        SchemaMismatchError
            If dtypes differ, or shapes differ when no box is given (a
            ``ValueError`` naming the first dataset that differs).
        InvalidNameError
            If ``array`` is not a str (a ``ValueError``).
        """
        from atlas import bulk  # the gather and the libblosc2 bridge load on first use

        check_array_name(array)
        with self.session.lock:
            if pad is not True and pad is not False:
                raise InvalidArgumentError(f"pad must be a bool, got {pad!r}")
            return bulk.read_across_stacked(self.session.state(), array, dataset_names, start, shape, pad)
