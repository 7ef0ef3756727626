"""Helpers of the object-store backend that need no obstore: version tokens, option
checks and error text safe to show.

A ``Version`` packs an object's ETag and (where the store has one) its version id
into one string, so the backend verbs can hand it back for a conditional put.
"""

from __future__ import annotations

import re
from typing import Any

from atlas.backends.base import Version
from atlas.errors import InvalidArgumentError

__all__ = [
    "ATLAS_OPTIONS",
    "decode_version",
    "encode_version",
    "first_line",
    "join_path",
    "meta_version",
    "non_negative_int",
    "positive_int",
    "split_options",
]

#: Options that tune ATLAS itself; every other keyword goes to obstore.
ATLAS_OPTIONS = ("max_concurrency", "coalesce_bytes", "max_request_bytes", "multipart_threshold")

_QUERY = re.compile(r"(?<=\S)\?[^\s\"'<>]+")


def first_line(exc: BaseException) -> str:
    """The first line of an obstore message, without URL query strings (they may hold SAS tokens)."""
    text = str(exc).strip()
    return _QUERY.sub("?...", text.splitlines()[0]) if text else type(exc).__name__


def encode_version(e_tag: str | None, version: str | None) -> Version | None:
    """One token for an ETag and a version id; None when the store gave neither."""
    if e_tag is None and version is None:
        return None
    return (e_tag or "") if version is None else f"{e_tag or ''}\n{version}"


def decode_version(value: Version) -> dict[str, str]:
    """The ``mode`` of a conditional put that expects the object at ``value``."""
    e_tag, _, version = value.partition("\n")
    mode: dict[str, str] = {}
    if e_tag:
        mode["e_tag"] = e_tag
    if version:
        mode["version"] = version
    return mode


def meta_version(meta: dict) -> Version:
    """The version tag of a listed/read object; stores without ETags get a weak tag."""
    tag = encode_version(meta.get("e_tag"), meta.get("version"))
    if tag is not None:
        return tag
    modified = meta.get("last_modified")
    stamp = modified.timestamp() if modified is not None else 0.0
    return f"~size={meta.get('size')};mtime={stamp}"  # "~": cannot drive a conditional put


def positive_int(value: Any, name: str) -> int:
    """``value`` when it is an int >= 1, else :class:`InvalidArgumentError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}")
    return value


def non_negative_int(value: Any, name: str) -> int:
    """``value`` when it is an int >= 0, else :class:`InvalidArgumentError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative int, got {value!r}")
    return value


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(ATLAS options, obstore options)`` of a keyword mapping."""
    ours = {k: options[k] for k in ATLAS_OPTIONS if k in options}
    theirs = {k: v for k, v in options.items() if k not in ATLAS_OPTIONS}
    return ours, theirs


def join_path(*parts: str | None) -> str:
    """The non-empty parts joined by single slashes (``bucket/prefix``)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
