"""Shared helpers of the reliability tests and their worker processes.

Imported both by the test modules (``tests/test_crash.py``, ``test_concurrency.py``,
``test_hostile.py``; ``pythonpath`` in ``pyproject.toml`` puts this directory on
``sys.path``) and by the worker scripts next to it (run as ``python tests/workers/<name>.py``, so this directory is
``sys.path[0]``).  Nothing here may import pytest.

The central piece is a *canonical dump* of a store as seen through one handle:
every dataset, every attribute, every array's schema, stats and cells, encoded
deterministically so that two handles showing the same logical content produce the
same bytes (and the same hash), whatever happened to the files underneath
(compaction, spilling, a different number of segments).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

#: Cells above which a dump reads a bounded window instead of the whole array.
MAX_DUMP_CELLS = 1 << 20


def _enc(value: Any, out: list[bytes]) -> None:
    """Append a canonical, type-tagged encoding of ``value`` to ``out``."""
    if value is None:
        out.append(b"N;")
    elif isinstance(value, (bool, np.bool_)):
        out.append(b"B1;" if bool(value) else b"B0;")
    elif isinstance(value, np.ndarray):
        out.append(f"A{value.dtype.str}{list(value.shape)};".encode())
        if value.dtype == object:
            for item in value.reshape(-1).tolist():
                _enc(item, out)
        else:
            out.append(np.ascontiguousarray(value).tobytes())
        out.append(b";")
    elif isinstance(value, np.generic):
        out.append(f"S{value.dtype.str}:".encode() + np.asarray(value).tobytes() + b";")
    elif isinstance(value, int):
        out.append(f"I{value};".encode())
    elif isinstance(value, float):
        out.append(b"F" + struct.pack("<d", value) + b";")
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        out.append(f"T{len(raw)}:".encode() + raw + b";")
    elif isinstance(value, bytes):
        out.append(f"Y{len(value)}:".encode() + value + b";")
    elif isinstance(value, (list, tuple)):
        out.append(f"L{len(value)}[".encode())
        for item in value:
            _enc(item, out)
        out.append(b"];")
    elif isinstance(value, dict):
        out.append(f"D{len(value)}{{".encode())
        for key in sorted(value, key=repr):
            _enc(key, out)
            _enc(value[key], out)
        out.append(b"};")
    elif isinstance(value, (_dt.datetime, _dt.date)):
        out.append(f"d{value.isoformat()};".encode())
    else:
        out.append(f"R{type(value).__name__}:{value!r};".encode())


def _window(shape: list[int], max_cells: int) -> list[int] | None:
    """None to read everything, else the box of at most 8 cells per axis at the origin."""
    total = 1
    for s in shape:
        total *= s
    if total <= max_cells:
        return None
    return [min(s, 8) for s in shape]


def dump_dataset(ds: Any, max_cells: int = MAX_DUMP_CELLS) -> bytes:
    """Canonical bytes of one ``DatasetView``: attributes, arrays (schema, stats, cells)."""
    out: list[bytes] = []
    _enc(sorted(ds.attributes().items()), out)
    for name in sorted(ds.list_arrays()):
        meta = ds.array_meta(name)
        _enc(name, out)
        _enc(meta, out)
        _enc(ds.array_stats(name), out)
        window = _window(meta["shape"], max_cells)
        data = ds.read_array(name) if window is None else ds.read_array(name, [0] * len(window), window)
        _enc(data, out)
    return b"".join(out)


def dump_store(store: Any, names: Iterable[str] | None = None, max_cells: int = MAX_DUMP_CELLS) -> bytes:
    """Canonical bytes of the whole store as this handle sees it (pending changes included)."""
    out: list[bytes] = []
    for name in sorted(store.list_datasets() if names is None else names):
        _enc(name, out)
        out.append(dump_dataset(store.open_dataset(name), max_cells))
        out.append(b"|")
    return b"".join(out)


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def store_hash(store: Any, names: Iterable[str] | None = None) -> str:
    """A short hash of :func:`dump_store`."""
    return digest(dump_store(store, names))


def dataset_hash(ds: Any) -> str:
    return digest(dump_dataset(ds))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to ``path`` and fsync it (an oracle log that survives SIGKILL)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def record_figure(test: str, **figures: Any) -> None:
    """Append measured figures to ``$ATLAS_RELIABILITY_FIGURES`` (JSON lines), if set.

    docs/reliability.md is filled from these lines.
    """
    path = os.environ.get("ATLAS_RELIABILITY_FIGURES")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"test": test, **figures}, default=str) + "\n")


def referenced_files(store_dir: str | os.PathLike) -> tuple[set[str], str]:
    """Segment and catalogue part paths the committed manifest references, and its file name.

    Reads the manifest directly (JSON only; the reliability stores are JSON).
    """
    with open(os.path.join(store_dir, "atlas.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    refs = {f"{fam['dir']}/{seg[0]}" for fam in manifest["arrays"].values() for seg in fam["segments"]}
    refs |= {f"_catalog/{part[0]}" for part in manifest.get("parts", [])}
    return refs, "atlas.json"


def store_files(store_dir: str | os.PathLike) -> set[str]:
    """Every file under ``store_dir``, as ``/``-separated relative paths."""
    root = os.fspath(store_dir)
    found = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            found.add(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return found


# -- passing a store location with its storage options to a worker process ---------------------------

#: The worker argument that carries storage options (``--storage-options=<JSON>``).
OPTIONS_FLAG = "--storage-options="


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.timedelta):  # obstore retry settings are timedeltas
        return {"__seconds__": value.total_seconds()}
    raise TypeError(f"storage option value {value!r} cannot be passed to a worker")


def _json_hook(obj: dict) -> Any:
    if set(obj) == {"__seconds__"}:
        return _dt.timedelta(seconds=obj["__seconds__"])
    return obj


def options_arg(options: dict[str, Any] | None) -> list[str]:
    """The worker arguments that pass ``options`` (none for a local store)."""
    if not options:
        return []
    return [OPTIONS_FLAG + json.dumps(options, default=_json_default, sort_keys=True)]


def pop_options(argv: list[str]) -> tuple[list[str], dict[str, Any] | None]:
    """Split a worker's arguments into the positional ones and the storage options (or None)."""
    rest, options = [], None
    for arg in argv:
        if arg.startswith(OPTIONS_FLAG):
            options = json.loads(arg[len(OPTIONS_FLAG) :], object_hook=_json_hook)
        else:
            rest.append(arg)
    return rest, options
