"""Shared pieces of the command line: the CLI error, store opening, sizes, locations."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from atlas.store import Atlas

__all__ = [
    "AUTO_JOBS_MIN_FILES",
    "CLIError",
    "default_jobs",
    "FileFailure",
    "human_bytes",
    "local_path",
    "one_line",
    "open_store",
    "parse_size",
    "plural",
    "require_xarray",
    "store_options",
]


#: Below this many source files, ``create``/``append`` read in the writer's thread by default
#: (starting reader processes costs more than it saves).
AUTO_JOBS_MIN_FILES = 32


def default_jobs(n_files: int) -> int:
    """Reader processes when ``-j`` is not given."""
    return min(4, os.cpu_count() or 1) if n_files >= AUTO_JOBS_MIN_FILES else 0


class CLIError(Exception):
    """A failure reported as one ``atlas: error: ...`` line (exit status 1)."""


class FileFailure(Exception):
    """A source file could not be read or stored (aborts ``create``/``append`` unless skipped)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def one_line(exc: BaseException) -> str:
    """``str(exc)`` on one line (whitespace runs collapsed), or the class name when empty."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40,
}  # fmt: skip


#: Sizes are byte counts that fit a signed 64-bit integer.
MAX_SIZE = 2**63


def parse_size(text: str) -> int:
    """``"128MiB"`` -> 134217728.  Decimal (``kB``, ``MB``, ``k``) and binary (``KiB``, ``MiB``) units, like dask.

    Raises ``ValueError`` for anything else (argparse turns it into a usage error).
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 128MiB, 64KiB, 1GB, 1000000)")
    number = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not number < MAX_SIZE:  # also an exponent that overflows to inf
        raise ValueError(f"size must be less than 2**63 bytes, got {text!r}")
    value = int(number)
    if value < 1:
        raise ValueError(f"size must be at least 1 byte, got {text!r}")
    return value


def plural(n: int, word: str) -> str:
    """``plural(1, "file")`` -> ``"1 file"``, ``plural(2, "file")`` -> ``"2 files"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units, like ``--chunk-size``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover - unreachable


#: Object-store flags every command accepts -> the keyword passed to ``Atlas.open``/``create``
#: (obstore's configuration names: ``--anonymous`` is obstore's ``skip_signature``).
STORE_OPTIONS = {"region": "region", "endpoint": "endpoint", "anonymous": "skip_signature"}


def store_options(args: Any) -> dict[str, Any]:
    """The object-store options given on the command line, as keyword arguments."""
    out: dict[str, Any] = {}
    for flag, key in STORE_OPTIONS.items():
        value = getattr(args, flag, None)
        if value:
            out[key] = value
    return out


def open_store(args: Any, mode: str = "r", **kwargs: Any) -> Atlas:
    """``Atlas.open(args.store, mode, ...)`` with the command line's object-store options."""
    # Imported here: `atlas --help` and `--version` need none of the library.
    from atlas.store import Atlas

    return Atlas.open(args.store, mode=mode, storage_options=store_options(args), **kwargs)


def local_path(location: str) -> str | None:
    """The local directory of a store location (a path or ``file://`` URL), None for other URLs."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1 and "://" in location:
        return None
    return os.fspath(location)


def require_xarray() -> Any:
    """Import ``xarray`` and the ATLAS integration, or fail with the install hint."""
    try:
        import xarray as xr

        import atlas.xarray  # noqa: F401  (registers the integration)
    except ImportError as exc:
        raise CLIError(
            f"this command needs xarray and netCDF4: pip install 'atlas-store[xarray]' netCDF4 ({exc})"
        ) from None
    return xr
