"""Storage backends and the resolution of a ``source`` argument into one.

* :mod:`~atlas.backends.base`: the verbs a backend implements (:class:`Backend`); a new backend
  implements them in a module of its own.
* :mod:`~atlas.backends.local`: a local directory (memory maps, fsync + rename, commit lock).
* :mod:`~atlas.backends.objectstore`: S3, GCS, Azure, HTTP and memory stores through obstore.
* :mod:`~atlas.backends.options`: object-store options, paths and safe error text (no obstore).
* :mod:`~atlas.backends.versions`: version tags for conditional commits.
* :func:`resolve` (here): a ``source`` argument to a backend; a new URL scheme is routed here.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlparse

from atlas.backends.base import CALLED_VERBS, Backend
from atlas.backends.local import LocalBackend
from atlas.errors import InvalidArgumentError, MissingDependencyError

__all__ = ["Backend", "LocalBackend", "resolve"]

_CLOUD_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "adl", "http", "https", "memory")


def _objectstore() -> Any:
    """The object-store backend module (needs the optional ``obstore`` dependency)."""
    try:
        from atlas.backends import objectstore
    except MissingDependencyError:
        raise
    except ImportError as exc:  # pragma: no cover - a broken obstore install
        raise MissingDependencyError(
            f"object-store locations need obstore ({exc}): pip install 'atlas-store[cloud]'"
        ) from None
    return objectstore


def _is_backend(source: Any) -> bool:
    return all(callable(getattr(source, verb, None)) for verb in CALLED_VERBS) and isinstance(
        getattr(source, "location", None), str
    )


def _is_obstore_handle(source: Any) -> bool:
    module = type(source).__module__ or ""
    return module == "obstore" or module.startswith(("obstore.", "obstore_"))


def resolve(source: Any, read_only: bool, **options: Any) -> Backend:
    """Turn a store location into a backend.

    Parameters
    ----------
    source : str, os.PathLike, obstore store handle or backend
        A local path or ``file://`` URL (served by :class:`LocalBackend`: memory
        maps, fsync + rename); an object-store URL (``s3://bucket/prefix``,
        ``gs://``, ``az://container/prefix``, ``http(s)://``, ``memory://name``); an
        ``obstore.store.*`` handle (a ``LocalStore`` handle is served by
        :class:`LocalBackend`); or an object that already implements the backend
        verbs (returned as it is: test and instrumentation wrappers).
    read_only : bool
        Refuse every write.
    **options
        For URLs: obstore configuration passed through to
        :func:`obstore.store.from_url` (``region=``, ``endpoint=``,
        ``client_options=``, ``retry_config=``, ``credential_provider=``, ...), plus
        the ATLAS tuning options ``max_concurrency``, ``coalesce_bytes``,
        ``max_request_bytes`` and ``multipart_threshold`` (the only options a
        store handle accepts).  Local paths take none.

    Raises
    ------
    InvalidArgumentError
        When ``source`` is of no supported kind, or options do not apply to it.
    MissingDependencyError
        When an object-store location is given and obstore is not installed (the
        message names the ``cloud`` extra).
    """
    if isinstance(source, os.PathLike):
        return _local(os.fspath(source), read_only, options)
    if isinstance(source, str):
        if source == "":
            raise InvalidArgumentError("store location must not be empty")
        parsed = urlparse(source)
        scheme = parsed.scheme.lower()
        if scheme == "file":
            return _local(unquote(parsed.path), read_only, options)
        if scheme in _CLOUD_SCHEMES:
            return _objectstore().backend_for_url(source, read_only, **options)
        return _local(source, read_only, options)
    if _is_obstore_handle(source):
        return _objectstore().backend_for_handle(source, read_only, **options)
    if _is_backend(source):
        if options:
            raise InvalidArgumentError(f"options {sorted(options)} cannot be applied to an existing backend {source!r}")
        return source
    raise InvalidArgumentError(f"store location must be a path, a URL or a store handle, got {type(source).__name__}")


def _local(path: str, read_only: bool, options: dict[str, Any]) -> LocalBackend:
    if options:
        raise InvalidArgumentError(f"local stores take no storage options, got {sorted(options)}")
    return LocalBackend(path, read_only=read_only)
