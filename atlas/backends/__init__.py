"""Storage backends and the resolution of a ``source`` argument into one."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlparse

from atlas.backends.base import Backend
from atlas.backends.local import LocalBackend
from atlas.errors import InvalidArgumentError, MissingDependencyError

__all__ = ["Backend", "LocalBackend", "resolve"]

_CLOUD_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "http", "https", "memory")


def resolve(source: Any, read_only: bool) -> Backend:
    """Turn a local path, a ``file://`` URL or another supported location into a backend.

    Raises
    ------
    InvalidArgumentError
        When ``source`` is of no supported kind.
    MissingDependencyError
        When an object-store location is given and the object-store backend is not
        available.
    """
    if isinstance(source, os.PathLike):
        return LocalBackend(os.fspath(source), read_only=read_only)
    if isinstance(source, str):
        if source == "":
            raise InvalidArgumentError("store location must not be empty")
        parsed = urlparse(source)
        if parsed.scheme == "file":
            return LocalBackend(unquote(parsed.path), read_only=read_only)
        if parsed.scheme.lower() in _CLOUD_SCHEMES:
            raise MissingDependencyError(
                f"{source!r} is an object-store location; this build of atlas serves local paths and file:// URLs only"
            )
        return LocalBackend(source, read_only=read_only)
    raise InvalidArgumentError(f"store location must be a path, a URL or a store handle, got {type(source).__name__}")
