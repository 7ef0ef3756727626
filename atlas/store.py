"""``Atlas``: a store of many named datasets."""

from __future__ import annotations

import atexit
import os
import warnings
import weakref
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, Sequence, ValuesView
from typing import Any

import numpy as np

from atlas import batch
from atlas.backends import resolve
from atlas.backends.base import Backend
from atlas.backends.local import LOCK_NAME
from atlas.catalog import CommitObject, decode_metadata, encode_commit
from atlas.dataset import DatasetView
from atlas.engine.codecs import normalize_codec
from atlas.errors import (
    AtlasError,
    ConflictError,
    CorruptStoreError,
    DatasetExistsError,
    InvalidArgumentError,
    NotAStoreError,
    StoreClosedError,
    StoreExistsError,
    UncommittedChangesWarning,
    UnexpectedKeywordError,
)
from atlas.metadata import (
    Manifest,
    manifest_filename,
    normalize_meta_compression,
    normalize_meta_format,
    parse_manifest_filename,
)
from atlas.names import validate_name
from atlas.selection import check_array_name, check_budget, check_grace_period, check_workers
from atlas.txn import commit
from atlas.txn.compact import CompactReport, compact_store
from atlas.txn.session import Session
from atlas.txn.snapshot import Base
from atlas.txn.state import WorkingState
from atlas.txn.verify import verify_store

__all__ = ["Atlas"]

_MODES = ("r", "r+")
#: Default memory budget for unflushed chunks.
DEFAULT_MAX_PENDING = 256 << 20


def _no_stray_keywords(call: str, extra: dict[str, Any]) -> None:
    """Object-store options go in ``storage_options``; say so instead of a bare TypeError."""
    if extra:
        shown = ", ".join(f"{k!r}: ..." for k in extra)
        raise UnexpectedKeywordError(
            f"{call}() got unexpected keyword argument{'s' if len(extra) > 1 else ''} {sorted(extra)}; "
            f"object-store options go in storage_options={{{shown}}}"
        )


def _own_leftover(path: str) -> bool:
    """Files a failed ``create`` may leave behind: the lock and manifest temp files."""
    return path == LOCK_NAME or (path.startswith(".atlas.") and path.endswith(".tmp"))


def _find_manifest(backend: Backend) -> str | None:
    names = [info.path for info in backend.list("") if "/" not in info.path and parse_manifest_filename(info.path)]
    if len(names) > 1:
        raise CorruptStoreError(f"{backend.location} holds several manifests: {sorted(names)}")
    return names[0] if names else None


#: Writable handles, so that those still holding unflushed changes at exit can say so.
_WRITERS: weakref.WeakSet[Atlas] = weakref.WeakSet()


def _warn_uncommitted(store: Atlas, when: str, stacklevel: int = 2) -> None:
    """Warn (once per handle) that ``store`` is dropping unflushed changes."""
    session = store.session
    state = session.working
    if state is None or session.read_only or getattr(store, "_warned", False) or not state.has_changes:
        return
    store._warned = True
    n = len(state.dirty)
    warnings.warn(
        f"store {store._location}: {n} dataset{'s' if n != 1 else ''} with uncommitted changes "
        f"{'was' if n == 1 else 'were'} never flushed and {'is' if n == 1 else 'are'} lost ({when}); "
        "call flush() or close(), or use the store in a `with` block",
        UncommittedChangesWarning,
        stacklevel=stacklevel,
    )


@atexit.register
def _warn_at_exit() -> None:
    for store in list(_WRITERS):
        _warn_uncommitted(store, "the handle was still open at interpreter exit")


class Atlas:
    """A store of many named datasets whose same-named arrays share file families.

    Create one with :meth:`Atlas.create` or open one with :meth:`Atlas.open`; do
    not call the constructor directly.  Changes are buffered in memory and become
    visible (to other handles, and on disk) only at :meth:`flush`, which commits
    them atomically.  Used as a context manager, the store is flushed and closed on
    normal exit and its pending changes are discarded when the block raises.

    Examples
    --------
    >>> import numpy as np, atlas
    >>> with atlas.Atlas.create(tmp_path / "demo.atlas") as store:  # doctest: +SKIP
    ...     ds = store.create_dataset("station_1")
    ...     ds.define_array("temp", "float32", ["time"], [24])
    ...     ds.write_array("temp", [0], np.arange(24, dtype="float32"))
    """

    def __init__(self, state: WorkingState, mode: str) -> None:
        self._session = Session(state, mode)
        self._lock = self._session.lock
        self._location = state.backend.location
        self._warned = False
        if mode != "r":
            _WRITERS.add(self)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        source: str | os.PathLike | Any,
        codec: str = "zstd",
        meta_format: str = "json",
        meta_compression: str = "none",
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING,
        max_workers: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
        **unexpected: Any,
    ) -> Atlas:
        """Create a new, empty store and return a writable handle to it.

        Parameters
        ----------
        source : str, os.PathLike, URL or obstore store handle
            Where the store lives: a local directory (created if missing; it must
            not hold a store already), a ``file://`` URL, an object-store URL
            (``s3://bucket/prefix``, ``gs://``, ``az://``, ``memory://``) or an
            ``obstore.store`` handle (see :doc:`cloud-storage`).
        codec : {"zstd", "lz4", "none"}
            Compression of every chunk (case-insensitive; ``"uncompressed"`` is an
            alias of ``"none"``).
        meta_format : {"json", "msgpack", "mp"}
            Encoding of the manifest.
        meta_compression : {"none", "zstd", "lz4"}
            Compression of the manifest.
        max_pending_bytes : int
            Memory budget for written-but-unflushed chunks.  Above it, staged
            chunks are spilled to new segment files that no manifest references
            yet (invisible to others, crash-safe), so streaming writes of any size
            run in bounded memory.  Default 256 MiB.
        max_workers : int, optional
            Threads that decode the chunks of one bulk read, and compress the
            chunks of one flush or spill, in parallel (default:
            the number of cores).
        storage_options : mapping, optional
            Options for an object-store location, passed through to obstore
            (``region``, ``endpoint``, ``skip_signature``, ``client_options``,
            ``retry_config``, ...) plus the ATLAS tuning options
            ``max_concurrency``, ``coalesce_bytes``, ``max_request_bytes`` and
            ``multipart_threshold``, e.g. ``storage_options={"endpoint":
            "https://storage.example.org", "region": "auto"}``.  They are not
            accepted as plain keywords (:class:`~atlas.errors.UnexpectedKeywordError`,
            a ``TypeError``, says so), so they never collide with this method's
            own arguments.  Local paths take none.

        Raises
        ------
        StoreExistsError
            If ``source`` already holds a store (a ``FileExistsError``) or is a
            non-empty directory.
        InvalidArgumentError
            For an unknown codec, format or compression (a ``ValueError``).
        """
        _no_stray_keywords("Atlas.create", unexpected)
        codec = normalize_codec(codec)
        meta_format = normalize_meta_format(meta_format)
        meta_compression = normalize_meta_compression(meta_compression)
        backend = resolve(source, read_only=False, **dict(storage_options or {}))
        if _find_manifest(backend) is not None:
            raise StoreExistsError(f"{backend.location} already holds an ATLAS store; use Atlas.open")
        if any(not _own_leftover(info.path) for info in backend.list("")):
            raise StoreExistsError(f"{backend.location} is not empty and holds no ATLAS store")
        name = manifest_filename(meta_format, meta_compression)
        manifest = CommitObject(codec=codec)
        data = encode_commit(manifest, meta_format, meta_compression)
        try:
            version = backend.commit(name, data, None)
        except ConflictError:
            raise StoreExistsError(f"{backend.location} already holds an ATLAS store; use Atlas.open") from None
        state = WorkingState(backend, name, meta_format, meta_compression, manifest, version)
        state.max_pending_bytes = check_budget(max_pending_bytes)
        state.max_workers = check_workers(max_workers)
        return cls(state, "r+")

    @classmethod
    def open(
        cls,
        source: str | os.PathLike | Any,
        mode: str = "r+",
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING,
        max_workers: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
        **unexpected: Any,
    ) -> Atlas:
        """Open an existing store.

        Opening never blocks and takes no lock; the handle reads one committed
        generation (a snapshot) until :meth:`refresh`.

        Parameters
        ----------
        source : str, os.PathLike or URL
            The store location (see :meth:`create`).
        mode : {"r+", "r"}
            ``"r"`` opens read-only: every change raises
            :class:`~atlas.errors.ReadOnlyError`.
        max_pending_bytes : int
            Memory budget for unflushed chunks (see :meth:`create`).
        max_workers : int, optional
            Decoding and compression threads (see :meth:`create`).
        storage_options : mapping, optional
            Object-store options, e.g. ``{"endpoint": ..., "region": ...}`` (see
            :meth:`create`; not accepted as plain keywords).

        Raises
        ------
        NotAStoreError
            If there is no store at ``source`` (a ``FileNotFoundError``).
        FormatVersionError
            If the store was written by a newer format version.
        CorruptStoreError
            If the manifest cannot be decoded.
        """
        _no_stray_keywords("Atlas.open", unexpected)
        if not isinstance(mode, str) or mode not in _MODES:
            raise InvalidArgumentError(f"mode must be 'r' or 'r+', got {mode!r}")
        backend = resolve(source, read_only=mode == "r", **dict(storage_options or {}))
        name = _find_manifest(backend)
        if name is None:
            raise NotAStoreError(f"{backend.location} holds no ATLAS store (no atlas.json or atlas.msgpack)")
        manifest, version = cls._read_manifest(backend, name)
        fmt, comp = parse_manifest_filename(name)  # type: ignore[misc]
        state = WorkingState(backend, name, fmt, comp, manifest, version)
        state.max_pending_bytes = check_budget(max_pending_bytes)
        state.max_workers = check_workers(max_workers)
        return cls(state, mode)

    @staticmethod
    def _read_manifest(backend: Backend, name: str) -> tuple[Base, str]:
        """The store's committed metadata: a v2 commit object, or the manifest of a v1 store."""
        got = backend.get_versioned(name)
        if got is None:
            raise NotAStoreError(f"{backend.location}: manifest {name} disappeared")
        data, version = got
        fmt, comp = parse_manifest_filename(name)  # type: ignore[misc]
        return decode_metadata(data, fmt, comp, f"{backend.location}/{name}"), version

    # -- helpers -------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The lock and working state this handle shares with its dataset views (internal).

        For the package's own layers (dataset views, the xarray integration, the
        command line); not a stable API.
        """
        return self._session

    @property
    def _st(self) -> WorkingState:
        return self._session.state()

    def _writable(self, what: str) -> WorkingState:
        return self._session.writable(what)

    @property
    def location(self) -> str:
        """Where the store lives (a path or URL)."""
        return self._location

    @property
    def read_only(self) -> bool:
        """True for handles opened with ``mode="r"``."""
        return self._session.read_only

    @property
    def generation(self) -> int:
        """The committed generation this handle reads."""
        return self._st.base.generation

    @property
    def max_workers(self) -> int:
        """Threads that decode a bulk read's chunks and compress a flush's chunks (settable)."""
        return self._st.max_workers

    @max_workers.setter
    def max_workers(self, value: int | None) -> None:
        self._st.max_workers = check_workers(value)

    @property
    def codec(self) -> str:
        """The chunk codec of the store."""
        return self._st.base.codec

    @property
    def format_version(self) -> int:
        """The format version of the committed metadata this handle reads (1 or 2).

        Stores created by this version are format 2; a format 1 store becomes
        format 2 at its first commit (or :meth:`upgrade`).
        """
        return self._st.base.format_version

    def upgrade(self) -> bool:
        """Rewrite a format v1 store's metadata as format v2 in one atomic commit.

        Datasets, ids, versions, attributes, arrays and statistics are kept as they
        are; pending changes of this handle are committed with it.  Any commit to a
        v1 store does the same; this method commits even when nothing is pending.

        Returns
        -------
        bool
            True when this call upgraded the store, False when it was format v2
            already (pending changes are then left pending).

        Raises
        ------
        ConflictError
            If another writer committed since this handle's snapshot.
        """
        with self._lock:
            state = self._writable("upgrade")
            if not isinstance(state.base, Manifest):
                return False
            commit.flush(state)
            return True

    # -- datasets --------------------------------------------------------------------------------

    def create_dataset(self, name: str) -> DatasetView:
        """Create an empty dataset and return a view of it.

        Raises
        ------
        InvalidNameError
            For an empty name, a name with ``/``, a leading ``_``, ``.`` or ``..``.
        DatasetExistsError
            If the dataset exists (a ``FileExistsError``).
        """
        with self._lock:
            state = self._writable(f"create dataset {name!r}")
            validate_name(name, "dataset")
            if state.has_dataset(name):
                raise DatasetExistsError(f"dataset {name!r} already exists")
            state.add_dataset(name)
            return DatasetView(self, name)

    def add_datasets(self, datasets: Iterable[tuple[Any, ...]]) -> list[str]:
        """Stage many new datasets in one call (the fast path for building a store).

        Equivalent to ``create_dataset`` + ``define_array`` + ``write_array`` of every
        array whole + ``set_attribute`` of every attribute, for each dataset, with
        default chunk shapes, but checked as one batch and staged with far less
        work per dataset.  Nothing is committed: call :meth:`flush` (once per batch,
        or less often) as after the per-call path.

        Parameters
        ----------
        datasets : iterable of tuple
            ``(name, arrays)`` or ``(name, arrays, attributes)`` per dataset, where
            ``arrays`` maps array names to ``(dims, data)`` or
            ``(dims, data, fill_value)``: ``dims`` a sequence of dimension names,
            ``data`` a numpy array whose dtype gives the array's dtype (numbers,
            bool, ``datetime64[ns]``, str/object arrays of str) and whose shape is
            the array's shape; ``attributes`` maps keys to values as
            :meth:`DatasetView.set_attribute` takes them (dtype inferred).  A
            generator is fine: it is consumed once.

        Returns
        -------
        list of str
            The names of the staged datasets, in order.

        Raises
        ------
        InvalidNameError, DatasetExistsError, InvalidArgumentError, DTypeError, ValueOverflowError
            The same errors the per-call path raises for the same input, plus
            ``DatasetExistsError`` for a name given twice in the batch.  Every
            entry is checked before anything is staged: on error nothing changes.

        Examples
        --------
        >>> store.add_datasets(
        ...     (f"buoy_{i}", {"temp": (["time"], temps[i])}, {"lat": lats[i], "platform": "buoy"})
        ...     for i in range(len(temps))
        ... )  # doctest: +SKIP
        >>> store.flush()  # doctest: +SKIP
        """
        with self._lock:
            return batch.add_datasets(self._writable("add datasets"), datasets)

    def open_dataset(self, name: str) -> DatasetView:
        """A view of an existing dataset (``KeyError`` if there is none)."""
        with self._lock:
            self._st.dataset(name)
            return DatasetView(self, name)

    def delete_dataset(self, name: str) -> None:
        """Delete a dataset and all its arrays (at the next flush)."""
        with self._lock:
            self._writable(f"delete dataset {name!r}").remove_dataset(name)

    def dataset_exists(self, name: str) -> bool:
        """True if the dataset exists in this handle's view (pending changes included)."""
        with self._lock:
            return self._st.has_dataset(name)

    def list_datasets(self) -> list[str]:
        """Names of all datasets, sorted."""
        with self._lock:
            return self._st.names()

    def list_arrays(self) -> list[str]:
        """Names of all arrays defined in at least one dataset, sorted."""
        with self._lock:
            return self._st.array_names()

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
        from atlas.search import as_expression, select, table_of_state

        expr = None if where is None else as_expression(where)
        for key, value in equals.items():
            term = as_expression((key, "==", value))
            expr = term if expr is None else expr & term
        with self._lock:
            table = table_of_state(self._st)
            return [table.names[i] for i in select(table, expr)]

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
            are never columns.  Uncommitted changes are included.

        Raises
        ------
        MissingDependencyError
            Without pandas (it comes with the ``xarray`` extra).
        UnknownColumnError, QuerySyntaxError, QueryTypeError
            As for :meth:`find`.
        """
        from atlas.search import table_of_state
        from atlas.search.frame import catalog_frame

        with self._lock:
            return catalog_frame(table_of_state(self._st), columns, where)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.dataset_exists(name)

    def __getitem__(self, name: str) -> DatasetView:
        """``store[name]``: :meth:`open_dataset` (:class:`~atlas.errors.DatasetNotFoundError`, a
        ``KeyError``, when there is no such dataset)."""
        return self.open_dataset(name)

    def get(self, name: str, default: Any = None) -> DatasetView | Any:
        """The view of dataset ``name``, or ``default`` when the store has no such dataset."""
        with self._lock:
            return self.open_dataset(name) if name in self else default

    def keys(self) -> KeysView[str]:
        """Dataset names (a live view: pending changes included, iterated sorted)."""
        return KeysView(self)

    def items(self) -> ItemsView[str, DatasetView]:
        """``(name, DatasetView)`` pairs, sorted by name."""
        return ItemsView(self)

    def values(self) -> ValuesView[DatasetView]:
        """A :class:`DatasetView` of every dataset, sorted by name."""
        return ValuesView(self)

    def __iter__(self) -> Iterator[str]:
        return iter(self.list_datasets())

    def __len__(self) -> int:
        with self._lock:
            return self._st.count()

    # -- bulk reads ----------------------------------------------------------------------------------

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
        with self._lock:
            return bulk.read_across(self._st, array, dataset_names, start, shape)

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
        with self._lock:
            if pad is not True and pad is not False:
                raise InvalidArgumentError(f"pad must be a bool, got {pad!r}")
            return bulk.read_across_stacked(self._st, array, dataset_names, start, shape, pad)

    # -- xarray ----------------------------------------------------------------------------------

    def add_xr_dataset(
        self, ds: Any, name: str, chunks: Any = None, *, mode: str = "w-", append_dim: str | None = None
    ) -> DatasetView:
        """Write an ``xarray.Dataset`` as dataset ``name``, staged until :meth:`flush`.

        Dask-backed variables are written block by block.  A failing add leaves no
        partial dataset behind.  ``mode="w"`` replaces an existing dataset (one
        commit); ``append_dim="time"`` appends ``ds`` to the existing dataset along
        ``time``.  See :func:`atlas.xarray.add_xr_dataset` and ``docs/xarray.md``.
        """
        from atlas.xarray import add_xr_dataset

        return add_xr_dataset(self, ds, name, chunks, mode=mode, append_dim=append_dim)

    def to_xarray(self, name: str) -> Any:
        """Dataset ``name`` as an ``xarray.Dataset``.

        Multi-chunk variables come back as dask arrays with one task per on-disk
        chunk; the graph pickles.  See :func:`atlas.xarray.to_xarray`.
        """
        from atlas.xarray import to_xarray

        return to_xarray(self, name)

    def to_xarray_many(
        self,
        names: Sequence[str],
        concat_dim: str = "dataset",
        *,
        join: str = "exact",
        layout: str = "stacked",
        sample_dim: str | None = None,
    ) -> Any:
        """Many datasets of one schema in one ``xarray.Dataset``.

        Stacked along a new dimension ``concat_dim`` (``join="outer"`` pads
        datasets of different lengths to the union of their index coordinates), or
        as a CF contiguous ragged array (``layout="ragged"``).  See
        :func:`atlas.xarray.to_xarray_many` and ``docs/growing.md``.
        """
        from atlas.xarray import to_xarray_many

        return to_xarray_many(self, names, concat_dim, join=join, layout=layout, sample_dim=sample_dim)

    def to_datatree(
        self, names: Sequence[str] | Callable[[str], bool] | None = None, *, root: str | None = None
    ) -> Any:
        """Datasets as one ``xarray.DataTree``: one node per dataset, read like :meth:`to_xarray`.

        Parameters
        ----------
        names : sequence of str or callable, optional
            The datasets (default: all, or all of ``root``'s tree), or a filter
            ``f(name) -> bool``.  Each dataset's layout is read here, so name the
            datasets you need in a store of millions.
        root : str, optional
            A tree stored by ``add_datatree(tree, name=root)``: dataset ``root`` is
            the root node and dataset ``root:a:b`` node ``/a/b``.  Without it,
            dataset ``a:b`` is node ``/a/b``.  See ``docs/growing.md``.
        """
        from atlas.xarray.tree import to_datatree

        return to_datatree(self, names, root)

    def add_datatree(self, tree: Any, name: str | None = None, chunks: Any = None) -> list[str]:
        """Write every node of an ``xarray.DataTree`` as a dataset (staged); returns the dataset names.

        Node ``/a/b`` becomes dataset ``a:b`` (``name:a:b`` under a tree ``name``,
        whose root node becomes dataset ``name``); nodes that only group others
        are not stored.  A node whose dataset exists already stops the call before
        anything is written (``DatasetExistsError``); a failing node removes the
        datasets this call added.
        """
        from atlas.xarray.tree import add_datatree

        return add_datatree(self, tree, name, chunks)

    # -- commit ------------------------------------------------------------------------------------

    @property
    def has_pending_changes(self) -> bool:
        """True when changes wait for :meth:`flush`."""
        with self._lock:
            return self._st.has_changes

    def flush(self) -> None:
        """Commit every pending change atomically (one new generation).

        New segment files are written and made durable first; the manifest is then
        replaced in one atomic step.  A crash at any point leaves the store at the
        old generation or the new one.  Does nothing when nothing is pending.

        Raises
        ------
        ConflictError
            If another writer committed since this handle's snapshot.  The pending
            changes are kept: call :meth:`refresh`, then :meth:`flush` again.
        BackendError
            If an I/O operation failed; the pending changes are kept and the flush
            can be retried.
        """
        with self._lock:
            state = self._st
            if not state.has_changes:
                return
            self._writable("flush")
            commit.flush(state)

    def refresh(self) -> None:
        """Move this handle to the newest committed generation.

        Pending changes are re-applied on top of it when they touch datasets the
        other writer did not touch; otherwise :class:`ConflictError` is raised and
        nothing changes.
        """
        with self._lock:
            state = self._st
            if commit.settle_unknown_commit(state) is not None:
                return  # the flush that raised had committed after all
            manifest, version = self._read_manifest(state.backend, state.manifest_name)
            if version == state.version:
                return
            state.rebase(manifest, version)

    def discard(self) -> None:
        """Drop every pending change; the handle returns to its committed snapshot."""
        with self._lock:
            self._st.discard()

    def compact(self, grace_period: float = 3600.0) -> CompactReport:
        """Rewrite live chunks into one segment per array name and delete dead files.

        Pending changes are flushed first.  The rewritten segments are committed
        like a flush.  The segments the new manifest no longer references are
        *retired*, not deleted: the manifest lists them with the time of this
        compaction, so handles that still read an older generation (in any
        process) keep reading them, and a writer on such a snapshot gets a
        :class:`ConflictError` from :meth:`flush`, never damage.  A later
        compaction deletes the retired segments whose grace period is over; this
        reclaims the space of overwritten chunks and deleted datasets and arrays.

        Parameters
        ----------
        grace_period : float
            Seconds (default 3600) that a retired segment is kept after the
            compaction that retired it, and that a file no manifest references
            (left by a crash, or written right now by another writer that has not
            committed yet) is kept after its last modification.  ``0`` deletes
            the segments this compaction retires right after its commit, together
            with every earlier retired segment and every unreferenced file: use
            it only when no other handle is open on the store.  ``math.inf``
            deletes nothing.

        Returns
        -------
        atlas.txn.compact.CompactReport
            What was rewritten, retired (kept on disk until ``deletable_after``)
            and deleted now, and whether a generation was committed: a store with
            nothing to rewrite or retire gets no new generation.

        Raises
        ------
        InvalidArgumentError
            If ``grace_period`` is not a number, is negative or NaN (checked
            before anything is flushed or written).
        ConflictError
            If another writer committed since this handle's snapshot: call
            :meth:`refresh` and compact again.
        """
        grace_period = check_grace_period(grace_period)
        with self._lock:
            state = self._writable("compact")
            if state.has_changes:
                commit.flush(state)
            return compact_store(state, grace_period)

    def verify(self) -> list[str]:
        """Check every byte the committed manifest references.

        Makes every check a reader makes: the store's manifest file is read and
        decoded again; each segment's actual size is compared with the manifest,
        its header, footer (at the file's real end), index checksum and record
        count are checked, and every chunk payload is checked against its
        checksum (and, for live arrays, decoded).  An empty result means that
        every array of the handle's snapshot reads.

        Returns
        -------
        list of str
            One message per problem, naming the file, the array and the datasets
            it damages.  Empty when the store is intact.
        """
        with self._lock:
            state = self._st
            problems = []
            try:
                name = _find_manifest(state.backend)
                if name is None:
                    problems.append(f"{state.backend.location}: the manifest is missing")
                else:
                    self._read_manifest(state.backend, name)
            except AtlasError as exc:
                problems.append(str(exc))
            return problems + verify_store(state)

    def close(self) -> None:
        """Flush pending changes (writable handles) and release the store.

        Closing twice is harmless; any other use after closing raises
        :class:`~atlas.errors.StoreClosedError`.
        """
        with self._lock:
            state = self._session.working
            if state is None:
                return
            if not self._session.read_only and state.has_changes:
                commit.flush(state)
            self._release()

    def _release(self) -> None:
        state = self._session.working
        self._session.working = None
        if state is not None:
            state.io.close()
            state.backend.close()

    def __enter__(self) -> Atlas:
        if self._session.working is None:
            raise StoreClosedError(f"store {self._location} is closed")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        with self._lock:
            state = self._session.working
            if state is None:
                return
            if exc_type is not None:
                state.discard()
                self._release()
                return
            self.close()

    def __del__(self) -> None:
        # Never commit from a finaliser: an unreferenced handle just drops its maps,
        # and says so loudly when that loses unflushed changes.
        session = getattr(self, "_session", None)
        try:
            if session is not None and session.working is not None:
                _warn_uncommitted(self, "the handle was garbage-collected", stacklevel=2)
        except Exception:  # warnings turned into errors, or a half torn-down interpreter
            pass
        try:
            if session is not None and session.working is not None:
                session.working.io.close()
        except AtlasError:
            pass

    def __repr__(self) -> str:
        state = self._session.working
        if state is None:
            return f"<Atlas {self._location!r} (closed)>"
        pending = ", pending changes" if state.has_changes else ""
        ro = ", read-only" if self._session.read_only else ""
        return (
            f"<Atlas {self._location!r} generation={state.base.generation} datasets={state.count()} "
            f"codec={state.base.codec}{ro}{pending}>"
        )


# A read-only mapping of names to views (``store[name]``, ``keys()``, ``items()``,
# ``get()``), registered rather than inherited: ``Mapping`` would bring content
# equality, and with it unhashable handles, which callers keep in sets and dicts.
Mapping.register(Atlas)
