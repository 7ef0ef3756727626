"""Options, paths and error text of the object-store backend (no obstore needed here).

The ATLAS tuning options are split from those passed through to obstore
(:func:`split_options`) and checked; messages from obstore are cut to their first
line with URL query strings removed (they may hold SAS tokens).
"""

from __future__ import annotations

import re
from typing import Any

from atlas.errors import InvalidArgumentError

__all__ = ["ATLAS_OPTIONS", "first_line", "join_path", "non_negative_int", "positive_int", "split_options"]

#: Options that tune ATLAS itself; every other keyword goes to obstore.
ATLAS_OPTIONS = ("max_concurrency", "coalesce_bytes", "max_request_bytes", "multipart_threshold")

_QUERY = re.compile(r"(?<=\S)\?[^\s\"'<>]+")


def first_line(exc: BaseException) -> str:
    """The first line of an obstore message, without URL query strings (they may hold SAS tokens)."""
    text = str(exc).strip()
    return _QUERY.sub("?...", text.splitlines()[0]) if text else type(exc).__name__


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
