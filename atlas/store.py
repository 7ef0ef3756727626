"""``Atlas``: a store of many named datasets."""

from __future__ import annotations

import os
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from atlas import batch
from atlas.across import AcrossDatasets
from atlas.dataset import DatasetView
from atlas.errors import AtlasError, DatasetExistsError, StoreClosedError
from atlas.metadata import Manifest
from atlas.names import validate_name
from atlas.selection import check_grace_period, check_workers
from atlas.store_xarray import XarrayMethods
from atlas.txn import commit
from atlas.txn.compact import CompactReport, compact_store
from atlas.txn.opening import create_state, find_manifest, no_stray_keywords, open_state, read_metadata
from atlas.txn.session import Session
from atlas.txn.state import WorkingState
from atlas.txn.verify import verify_store

__all__ = ["Atlas"]

#: Default memory budget for unflushed chunks.
DEFAULT_MAX_PENDING = 256 << 20


class Atlas(AcrossDatasets, XarrayMethods):
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
        no_stray_keywords("Atlas.create", unexpected)
        state = create_state(
            source, codec, meta_format, meta_compression, max_pending_bytes, max_workers, storage_options
        )
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
        no_stray_keywords("Atlas.open", unexpected)
        state = open_state(source, mode, max_pending_bytes, max_workers, storage_options)
        return cls(state, mode)

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
            session = self._session
            state = session.working
            if state is None or session.mode == "r":  # the message is formatted only when it is needed
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
            manifest, version = read_metadata(state.backend, state.manifest_name)
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
                name = find_manifest(state.backend)
                if name is None:
                    problems.append(f"{state.backend.location}: the manifest is missing")
                else:
                    read_metadata(state.backend, name)
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
            if session is not None:
                session.warn_uncommitted("the handle was garbage-collected")
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
