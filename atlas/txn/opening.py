"""Finding, creating and opening a store: a ``source`` to a working state at its commit point.

:class:`~atlas.Atlas` keeps the public signatures and their documentation; the
steps live here, below the API: resolve the backend, find the one manifest name
(the commit point), read and decode the committed metadata (a v2 commit object
or a v1 manifest), and build the :class:`~atlas.txn.state.WorkingState`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atlas.backends import resolve
from atlas.backends.base import Backend
from atlas.backends.local import LOCK_NAME
from atlas.catalog import CommitObject, decode_metadata, encode_commit
from atlas.engine.codecs import normalize_codec
from atlas.errors import (
    ConflictError,
    CorruptStoreError,
    InvalidArgumentError,
    NotAStoreError,
    StoreExistsError,
    UnexpectedKeywordError,
)
from atlas.metadata import (
    manifest_filename,
    normalize_meta_compression,
    normalize_meta_format,
    parse_manifest_filename,
)
from atlas.selection import check_budget, check_workers
from atlas.txn.snapshot import Base
from atlas.txn.state import WorkingState

__all__ = ["MODES", "create_state", "find_manifest", "no_stray_keywords", "open_state", "read_metadata"]

#: The modes :meth:`atlas.Atlas.open` takes.
MODES = ("r", "r+")


def no_stray_keywords(call: str, extra: dict[str, Any]) -> None:
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


def find_manifest(backend: Backend) -> str | None:
    """The file name of the store's manifest (commit point), or None when there is none."""
    names = [info.path for info in backend.list("") if "/" not in info.path and parse_manifest_filename(info.path)]
    if len(names) > 1:
        raise CorruptStoreError(f"{backend.location} holds several manifests: {sorted(names)}")
    return names[0] if names else None


def read_metadata(backend: Backend, name: str) -> tuple[Base, str]:
    """The store's committed metadata (a v2 commit object, or a v1 manifest) and its version."""
    got = backend.get_versioned(name)
    if got is None:
        raise NotAStoreError(f"{backend.location}: manifest {name} disappeared")
    data, version = got
    fmt, comp = parse_manifest_filename(name)  # type: ignore[misc]
    return decode_metadata(data, fmt, comp, f"{backend.location}/{name}"), version


def _tuned(state: WorkingState, max_pending_bytes: Any, max_workers: Any) -> WorkingState:
    state.max_pending_bytes = check_budget(max_pending_bytes)
    state.max_workers = check_workers(max_workers)
    return state


def create_state(
    source: Any,
    codec: str,
    meta_format: str,
    meta_compression: str,
    max_pending_bytes: Any,
    max_workers: Any,
    storage_options: Mapping[str, Any] | None,
) -> WorkingState:
    """Commit an empty v2 store at ``source`` and return its working state (see :meth:`atlas.Atlas.create`)."""
    codec = normalize_codec(codec)
    meta_format = normalize_meta_format(meta_format)
    meta_compression = normalize_meta_compression(meta_compression)
    backend = resolve(source, read_only=False, **dict(storage_options or {}))
    if find_manifest(backend) is not None:
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
    return _tuned(state, max_pending_bytes, max_workers)


def open_state(
    source: Any, mode: Any, max_pending_bytes: Any, max_workers: Any, storage_options: Mapping[str, Any] | None
) -> WorkingState:
    """The working state of the store at ``source`` (see :meth:`atlas.Atlas.open`)."""
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidArgumentError(f"mode must be 'r' or 'r+', got {mode!r}")
    backend = resolve(source, read_only=mode == "r", **dict(storage_options or {}))
    name = find_manifest(backend)
    if name is None:
        raise NotAStoreError(f"{backend.location} holds no ATLAS store (no atlas.json or atlas.msgpack)")
    manifest, version = read_metadata(backend, name)
    fmt, comp = parse_manifest_filename(name)  # type: ignore[misc]
    state = WorkingState(backend, name, fmt, comp, manifest, version)
    return _tuned(state, max_pending_bytes, max_workers)
