"""Stores on object storage through obstore: S3, GCS, Azure, HTTP(S) and memory.

This is the only module that imports :mod:`obstore`.  :class:`ObjectStoreBackend`
implements the verbs of :mod:`atlas.backends.base` over an obstore store handle and
an optional key prefix:

* reads are whole-object ``get``\\ s (the manifest) and ``get_ranges`` calls (segment
  indexes and chunk payloads; :class:`atlas.engine.segment_io.SegmentIO` coalesces them
  and runs them concurrently across segments, at most ``max_concurrency`` at once);
* segments are written with ``put(mode="create")`` (multipart above
  ``multipart_threshold``: segment names carry a random token and are never reused);
* the manifest is committed with a *conditional* put: ``mode="create"`` for a new
  store, otherwise ``mode={"e_tag": ..., "version": ...}`` with the version read at
  open.  When that put fails its precondition, or fails in a way that leaves its
  outcome unknown (a timeout, a dropped connection, a 5xx after an internal retry),
  the manifest is read back and compared with the bytes that were sent: every
  manifest carries a unique ``write_token``, so equal bytes mean *our* write landed
  (its response was lost) and the commit succeeded; anything else is a genuine
  :class:`~atlas.errors.ConflictError` (or a :class:`~atlas.errors.BackendError`
  when the put did not land).  A store without conditional writes is refused with
  an error naming it, never raced silently.

ATLAS never sees credentials: handles carry their own configuration, URLs are
resolved by :func:`obstore.store.from_url` with the keyword options given by the
caller and the environment (``AWS_*``, ``AZURE_*``, ``GOOGLE_*``).

obstore is not fork-safe (its runtime's threads do not survive ``fork``: a request
made in a forked child hangs).  A backend used in a process other than the one that
created it, or any backend used in a forked child of a process that already talked
to a store, raises :class:`~atlas.errors.BackendError` naming the ``spawn`` and
``forkserver`` start methods instead of hanging.

Locations (``Atlas.location``, and the dask recipes of the xarray reader) are URLs.
A URL that this process opened through a handle or with options resolves again to
that same handle, so readers reopening a store by location (the xarray reader's
threads) reach the same endpoint with the same configuration.  In-memory stores live
only in the process that made them: their location (``memory://atlas-<pid>-<n>`` or
the ``memory://<name>`` given) fails with a clear message when reopened in another
process (e.g. by dask's ``processes`` or ``distributed`` schedulers).
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

from atlas.backends.base import MAX_GET_BYTES, Buffer, ObjectInfo, Version
from atlas.backends.options import ATLAS_OPTIONS, first_line, join_path, non_negative_int, positive_int, split_options
from atlas.backends.versions import decode_version, encode_version, meta_version
from atlas.errors import (
    AtlasError,
    BackendError,
    ConflictError,
    CorruptStoreError,
    InvalidArgumentError,
    MissingDependencyError,
    NotAStoreError,
    ReadOnlyError,
)

try:
    import obstore
    import obstore.exceptions as obx
    import obstore.store as obs_store
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError(
        "object-store locations (s3://, gs://, az://, http(s)://, memory://) need obstore: "
        "pip install 'atlas-store[cloud]'"
    ) from exc

__all__ = [
    "DEFAULT_COALESCE_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "ATLAS_OPTIONS",
    "ObjectStoreBackend",
    "backend_for_handle",
    "backend_for_url",
    "is_obstore_handle",
]

#: Segments fetched at once by one bulk read (each fetch may itself run several requests).
DEFAULT_MAX_CONCURRENCY = 16
#: Byte ranges of one segment closer than this are fetched by one request.
DEFAULT_COALESCE_BYTES = 1 << 20
#: Coalescing stops growing a request beyond this size (large reads stay parallel).
DEFAULT_MAX_REQUEST_BYTES = 16 << 20
#: Segments larger than this are uploaded in parts (no single-PUT size limit applies).
DEFAULT_MULTIPART_THRESHOLD = 256 << 20

_HTTP_SCHEMES = ("http", "https")
_SCHEME_ALIASES = {"gcs": "gs"}
# Manifest names probed on HTTP servers that cannot list (plain file servers).
_MANIFEST_NAMES = tuple(f"atlas.{fmt}{suffix}" for fmt in ("json", "msgpack") for suffix in ("", ".zst", ".lz4"))

# -- process bookkeeping ----------------------------------------------------------------------

#: The process that first made a request through obstore (its runtime lives there).
_IO_PID: int | None = None
_registry_lock = threading.Lock()
#: location -> (pid, store): URLs opened through a handle or with options in this process.
_HANDLES: dict[str, tuple[int, Any]] = {}
#: location -> MemoryStore for ``memory://<name>`` URLs (kept alive: they hold the data).
_MEMORY: dict[str, Any] = {}
#: location -> MemoryStore handles given by callers (weak: the caller owns them).
_MEMORY_HANDLES: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_memory_counter = itertools.count(1)


def _fork_error(location: str, origin: int) -> BackendError:
    err = BackendError(
        f"{location}: obstore is not fork-safe and this process ({os.getpid()}) is a fork of process {origin}, "
        "which already used it (requests made here would hang). Start worker processes with the 'spawn' or "
        "'forkserver' start method (multiprocessing.get_context('spawn'), or "
        "concurrent.futures.ProcessPoolExecutor(mp_context=...)) and open the store inside each worker"
    )
    err.errno = errno.ECHILD
    return err


def _check_runtime(location: str) -> None:
    global _IO_PID
    pid = os.getpid()
    if _IO_PID is None:
        _IO_PID = pid
    elif pid != _IO_PID:
        raise _fork_error(location, _IO_PID)


def _translate(exc: BaseException, op: str, where: str) -> AtlasError:
    """An obstore (or client) error as the AtlasError users catch; names op and path."""
    if isinstance(exc, AtlasError):
        return exc
    if isinstance(exc, FileNotFoundError):  # obstore's NotFoundError
        code, what = errno.ENOENT, "not found"
    elif isinstance(exc, (obx.PermissionDeniedError, obx.UnauthenticatedError, PermissionError)):
        code, what = errno.EACCES, first_line(exc)
    elif isinstance(exc, obx.NotSupportedError):
        code, what = errno.ENOTSUP, first_line(exc)
    elif isinstance(exc, obx.UnknownConfigurationKeyError):
        return InvalidArgumentError(f"{where}: {first_line(exc)}")
    elif isinstance(exc, TimeoutError):
        code, what = errno.ETIMEDOUT, first_line(exc)
    else:
        code, what = errno.EIO, first_line(exc)
    err = BackendError(f"{op} {where} failed: {what}")
    err.errno = code
    return err


class ObjectStoreBackend:
    """The backend verbs over an obstore store handle.

    Parameters
    ----------
    store : obstore store
        ``S3Store``, ``GCSStore``, ``AzureStore``, ``HTTPStore`` or ``MemoryStore``.
    location : str
        The URL naming the store in messages (and in pickled xarray recipes).
    read_only : bool
        Refuse every write with :class:`~atlas.errors.ReadOnlyError`.  HTTP stores
        are always read-only.
    prefix : str
        Key prefix inside ``store`` (usually empty: handles carry their own prefix).
    max_concurrency : int
        Segments a bulk read fetches at once (default 16, above the core count:
        requests wait on the network, not the CPU).
    coalesce_bytes : int
        Byte ranges of one segment closer than this are fetched as one request.
    max_request_bytes : int
        Coalescing never grows one request beyond this many bytes.
    multipart_threshold : int
        Segments larger than this are uploaded in parts.
    """

    def __init__(
        self,
        store: Any,
        location: str,
        read_only: bool = False,
        prefix: str = "",
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        coalesce_bytes: int = DEFAULT_COALESCE_BYTES,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    ) -> None:
        self.store = store
        self.location = location
        self.kind = _kind(store)
        self.is_http = self.kind == "HTTP"
        self.read_only = bool(read_only) or self.is_http
        self.prefix = prefix.strip("/")
        self.max_concurrency = positive_int(max_concurrency, "max_concurrency")
        self.coalesce_bytes = non_negative_int(coalesce_bytes, "coalesce_bytes")
        self.max_request_bytes = positive_int(max_request_bytes, "max_request_bytes")
        self.multipart_threshold = positive_int(multipart_threshold, "multipart_threshold")
        self._pid = os.getpid()

    def __repr__(self) -> str:
        ro = ", read-only" if self.read_only else ""
        return f"ObjectStoreBackend({self.location!r}{ro})"

    def __reduce__(self) -> Any:
        raise TypeError(
            f"an open store backend ({self.location}) cannot be pickled: pass the location "
            "(and reopen it in the other process) instead"
        )

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _where(self, path: str) -> str:
        return f"{self.location.rstrip('/')}/{path}" if path else self.location

    def _check(self) -> None:
        if os.getpid() != self._pid:
            raise _fork_error(self.location, self._pid)
        _check_runtime(self.location)

    def _writable(self, op: str, path: str) -> None:
        if self.is_http:
            raise ReadOnlyError(
                f"cannot {op} {self._where(path)}: HTTP(S) stores are read-only (serve a store written "
                "elsewhere; write through s3://, gs://, az:// or a local path)"
            )
        if self.read_only:
            raise ReadOnlyError(f"cannot {op} {self._where(path)}: the store was opened read-only")

    # -- reads -----------------------------------------------------------------------------

    def get(self, path: str) -> bytes:
        self._check()
        try:
            result = obstore.get(self.store, self._key(path))
        except Exception as exc:
            raise _translate(exc, "read", self._where(path)) from None
        return self._bounded_bytes(result, path)

    def _bounded_bytes(self, result: Any, path: str) -> bytes:
        """The body of a GET, refused from its size before it is read when over ``MAX_GET_BYTES``."""
        size = int(result.meta["size"])
        if size > MAX_GET_BYTES:
            raise CorruptStoreError(
                f"{self._where(path)} is {size} bytes, over the {MAX_GET_BYTES}-byte limit of a whole-object read"
            )
        try:
            return bytes(result.bytes())
        except Exception as exc:
            raise _translate(exc, "read", self._where(path)) from None

    def get_versioned(self, path: str) -> tuple[bytes, Version] | None:
        self._check()
        try:
            result = obstore.get(self.store, self._key(path))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise _translate(exc, "read", self._where(path)) from None
        return self._bounded_bytes(result, path), meta_version(result.meta)

    def get_ranges(self, path: str, starts: Sequence[int], lengths: Sequence[int]) -> list[Buffer]:
        """The ranges in order; one call fetches its ranges in parallel (no extra coalescing)."""
        self._check()
        starts = [int(s) for s in starts]
        lengths = [int(n) for n in lengths]
        wanted = [i for i, n in enumerate(lengths) if n > 0]
        out: list[Buffer] = [b""] * len(starts)
        if not wanted:
            return out
        try:
            got = obstore.get_ranges(
                self.store,
                self._key(path),
                starts=[starts[i] for i in wanted],
                lengths=[lengths[i] for i in wanted],
                coalesce=0,  # SegmentIO decides what to merge; one range here is one request
            )
        except Exception as exc:
            raise _translate(exc, "read", self._where(path)) from None
        for i, buf in zip(wanted, got):
            out[i] = buf
        return out

    def size(self, path: str) -> int:
        self._check()
        try:
            return int(obstore.head(self.store, self._key(path))["size"])
        except Exception as exc:
            raise _translate(exc, "stat", self._where(path)) from None

    def exists(self, path: str) -> bool:
        self._check()
        try:
            obstore.head(self.store, self._key(path))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise _translate(exc, "stat", self._where(path)) from None
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check()
        key = self._key(prefix.strip("/")) if prefix else self.prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            batches = list(obstore.list(self.store, key or None))
        except Exception as exc:
            if self.is_http and not prefix:
                # Plain HTTP servers cannot list (no WebDAV): find the manifest by name.
                yield from self._probe_manifests()
                return
            raise _translate(exc, "list", self._where(prefix)) from None
        for batch in batches:
            for meta in batch:
                modified = meta.get("last_modified")
                yield ObjectInfo(
                    meta["path"][strip:], int(meta["size"]), modified.timestamp() if modified is not None else 0.0
                )

    def _probe_manifests(self) -> Iterator[ObjectInfo]:
        for name in _MANIFEST_NAMES:
            try:
                meta = obstore.head(self.store, self._key(name))
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise _translate(exc, "read", self._where(name)) from None
            modified = meta.get("last_modified")
            yield ObjectInfo(name, int(meta["size"]), modified.timestamp() if modified is not None else 0.0)

    # -- writes ----------------------------------------------------------------------------

    def put(self, path: str, parts: Sequence[Buffer]) -> None:
        self._writable("write", path)
        self._check()
        parts = list(parts)
        size = sum(memoryview(p).nbytes for p in parts)
        key = self._key(path)
        try:
            if size > self.multipart_threshold:
                # A multipart upload cannot be conditional; the name is fresh (random token).
                obstore.put(self.store, key, [memoryview(p).cast("B") for p in parts], use_multipart=True)
                return
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            obstore.put(self.store, key, data, mode="create", use_multipart=False)
        except obx.AlreadyExistsError:
            # Our own earlier attempt may have landed (a retry after a lost response).
            if self._holds(path, b"".join(parts)):
                return
            raise BackendError(f"write {self._where(path)} failed: an object of that name already exists") from None
        except Exception as exc:
            raise self._unsupported(exc, "write", path) from None

    def commit(self, path: str, data: bytes, expected: Version | None) -> Version:
        """Conditionally replace the manifest; see the module docstring for the guard."""
        self._writable("commit", path)
        self._check()
        if expected is None:
            mode: Any = "create"
        elif expected.startswith("~"):
            raise BackendError(
                f"commit {self._where(path)} failed: {self.kind} returned no ETag or version for the manifest, "
                "so ATLAS cannot commit conditionally; refusing to overwrite it unconditionally"
            )
        else:
            mode = decode_version(expected)
        try:
            result = obstore.put(self.store, self._key(path), data, mode=mode, use_multipart=False)
        except (obx.AlreadyExistsError, obx.PreconditionError):
            # Either another writer moved the manifest on, or our own put landed and an
            # internal retry (after its response was lost) then failed the precondition.
            got = self._read_back(path, "after a failed precondition")
            if got is not None and got[0] == data:
                return got[1]
            if expected is None:
                raise ConflictError(f"{self._where(path)} already exists") from None
            raise ConflictError(f"{self._where(path)} was changed by another writer") from None
        except Exception as exc:
            err = self._unsupported(exc, "commit", path)
            if getattr(err, "errno", None) == errno.ENOTSUP or isinstance(err, InvalidArgumentError):
                raise err from None
            # The outcome is unknown: the put may have landed and only its response been lost.
            got = self._read_back(path, f"after {err}")
            if got is not None and got[0] == data:
                return got[1]
            if (None if got is None else got[1]) != expected:
                raise ConflictError(f"{self._where(path)} was changed by another writer ({err})") from None
            raise err from None
        tag = encode_version(result.get("e_tag"), result.get("version"))
        if tag is None:  # a store that cannot tell versions apart: read it back
            got = self._read_back(path, "after the commit")
            tag = meta_version({}) if got is None else got[1]
        return tag

    def _read_back(self, path: str, context: str) -> tuple[bytes, Version] | None:
        """The manifest as it is now (each one carries a unique write token)."""
        try:
            return self.get_versioned(path)
        except AtlasError as exc:
            err = BackendError(
                f"commit {self._where(path)}: outcome unknown {context}; reading the manifest back failed: {exc}"
            )
            err.errno = errno.EIO
            raise err from None

    def _holds(self, path: str, data: bytes) -> bool:
        try:
            return self.get(path) == data
        except AtlasError:
            return False

    def _unsupported(self, exc: BaseException, op: str, path: str) -> AtlasError:
        if isinstance(exc, (obx.NotSupportedError, NotImplementedError)) or "not implemented" in str(exc).lower():
            err = BackendError(
                f"{op} {self._where(path)} failed: {self.kind} does not support conditional writes "
                f"({first_line(exc)}); ATLAS refuses to commit without them because concurrent writers would "
                "silently overwrite each other (for S3-compatible servers, enable conditional_put='etag')"
            )
            err.errno = errno.ENOTSUP
            return err
        return _translate(exc, op, self._where(path))

    def delete(self, path: str) -> None:
        self._writable("delete", path)
        self._check()
        try:
            obstore.delete(self.store, self._key(path))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise _translate(exc, "delete", self._where(path)) from None

    def close(self) -> None:
        """Nothing to release: the handle's connection pool is shared and owned by obstore."""


# -- construction ---------------------------------------------------------------------------------


_STORE_KINDS = (
    (obs_store.S3Store, "S3"),
    (obs_store.GCSStore, "GCS"),
    (obs_store.AzureStore, "Azure"),
    (obs_store.HTTPStore, "HTTP"),
    (obs_store.MemoryStore, "memory"),
    (obs_store.LocalStore, "local"),
)


def _kind(store: Any) -> str:
    return next((name for cls, name in _STORE_KINDS if isinstance(store, cls)), type(store).__name__)


def is_obstore_handle(source: Any) -> bool:
    """True for an ``obstore.store.*`` store instance."""
    return isinstance(source, tuple(cls for cls, _ in _STORE_KINDS))


def _handle_location(store: Any) -> str:
    kind = _kind(store)
    if kind == "HTTP":
        return str(store.url).rstrip("/")
    config = store.config
    prefix = store.prefix or ""
    if kind == "S3":
        return "s3://" + join_path(config.get("bucket"), prefix)
    if kind == "GCS":
        return "gs://" + join_path(config.get("bucket"), prefix)
    if kind == "Azure":
        return "az://" + join_path(config.get("container_name"), prefix)
    raise InvalidArgumentError(f"unsupported obstore handle {store!r}")  # pragma: no cover


def _memory_location_for(store: Any) -> str:
    with _registry_lock:
        for location, known in _MEMORY.items():
            if known is store:
                return location
        for location, known in _MEMORY_HANDLES.items():
            if known is store:
                return location
        location = f"memory://atlas-{os.getpid()}-{next(_memory_counter)}"
        _MEMORY_HANDLES[location] = store
        return location


def backend_for_handle(store: Any, read_only: bool, **options: Any) -> Any:
    """A backend serving an obstore handle; ``LocalStore`` goes to the native local backend."""
    ours, theirs = split_options(options)
    if theirs:
        raise InvalidArgumentError(
            f"options {sorted(theirs)} configure obstore and cannot be applied to an existing store handle; "
            "configure the handle itself (only ATLAS options are accepted here: " + ", ".join(ATLAS_OPTIONS) + ")"
        )
    kind = _kind(store)
    if kind == "local":
        from atlas.backends.local import LocalBackend

        return LocalBackend(os.fspath(store.prefix) if store.prefix is not None else "/", read_only=read_only)
    if kind == "memory":
        return ObjectStoreBackend(store, _memory_location_for(store), read_only, **ours)
    location = _handle_location(store)
    with _registry_lock:
        _HANDLES[location] = (os.getpid(), store)
    return ObjectStoreBackend(store, location, read_only, **ours)


def _memory_backend(url: str, read_only: bool, ours: dict[str, Any], theirs: dict[str, Any]) -> ObjectStoreBackend:
    if theirs:
        raise InvalidArgumentError(f"memory:// stores take no obstore options, got {sorted(theirs)}")
    parsed = urlparse(url)
    name = join_path(parsed.netloc, parsed.path)
    if not name:  # memory:// alone: a fresh anonymous store
        store = obs_store.MemoryStore()
        location = f"memory://atlas-{os.getpid()}-{next(_memory_counter)}"
        with _registry_lock:
            _MEMORY[location] = store
        return ObjectStoreBackend(store, location, read_only, **ours)
    location = f"memory://{name}"
    with _registry_lock:
        store = _MEMORY.get(location) or _MEMORY_HANDLES.get(location)
        generated = name.startswith("atlas-") and name.count("-") >= 2
        if store is None:
            owner = name.split("-")[1] if generated else None
            if generated or read_only:
                where = (
                    f"was created by process {owner}"
                    if owner is not None and owner != str(os.getpid())
                    else "does not exist (anymore)"
                )
                raise NotAStoreError(
                    f"{location} is an in-memory store that {where}; in-memory stores live only in the "
                    "process that made them and cannot be reopened in another one (e.g. by dask's processes or "
                    "distributed schedulers): use the threaded scheduler, or a local path or object store"
                )
            store = _MEMORY[location] = obs_store.MemoryStore()
    return ObjectStoreBackend(store, location, read_only, **ours)


def backend_for_url(url: str, read_only: bool, **options: Any) -> ObjectStoreBackend:
    """A backend for an object-store URL; keyword options other than ATLAS's go to obstore."""
    ours, theirs = split_options(options)
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "memory":
        return _memory_backend(url, read_only, ours, theirs)
    scheme = _SCHEME_ALIASES.get(scheme, scheme)
    canonical = f"{scheme}://{url.split('://', 1)[1]}".rstrip("/")
    if scheme == "http":
        # Asking for http:// is the consent to plain HTTP that obstore wants spelled out.
        theirs["client_options"] = {"allow_http": True, **(theirs.get("client_options") or {})}
        explicit = set(options) - set(ATLAS_OPTIONS)
    else:
        explicit = set(theirs)
    with _registry_lock:
        known = _HANDLES.get(canonical)
    if known is not None and not explicit:
        pid, store = known
        if pid == os.getpid():
            return ObjectStoreBackend(store, canonical, read_only, **ours)
    if _IO_PID is not None and os.getpid() != _IO_PID:
        raise _fork_error(canonical, _IO_PID)
    try:
        store = obs_store.from_url(canonical, **theirs)
    except Exception as exc:
        if isinstance(exc, (obx.UnknownConfigurationKeyError, TypeError, ValueError)):
            raise InvalidArgumentError(f"cannot open {canonical}: {first_line(exc)}") from None
        raise _translate(exc, "open", canonical) from None
    if _kind(store) == "local":  # pragma: no cover - file:// is routed to LocalBackend before this
        return backend_for_handle(store, read_only, **ours)
    if explicit:
        with _registry_lock:
            _HANDLES[canonical] = (os.getpid(), store)
    return ObjectStoreBackend(store, canonical, read_only, **ours)


def forget_memory(location: str) -> None:
    """Drop a ``memory://<name>`` store of this process (its data is released)."""
    with _registry_lock:
        _MEMORY.pop(location.rstrip("/"), None)
        _MEMORY_HANDLES.pop(location.rstrip("/"), None)
