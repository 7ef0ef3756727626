"""``atlas ls`` and ``atlas info``: what a store holds and what it costs on disk.

Byte accounting reads each array family's chunk index (one range read per segment)
through the store's engine:

* a chunk record is **live** when its slot belongs to an array of a dataset in the
  manifest and it is the newest record of its ``(slot, chunk)``;
* **dead bytes** are the payload bytes of every other record of the referenced
  segments (overwritten chunks, deleted datasets and arrays): what ``atlas compact``
  reclaims, besides the **unreferenced files** (segments of interrupted flushes or
  aborted writes, temp files), which ``compact`` deletes once older than its grace
  period;
* **retired** segments (replaced by a compaction, listed in the manifest) are neither:
  they stay until a compaction finds them older than its grace period, so they are
  shown apart and never counted as reclaimable.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlas.catalog import FORMAT_VERSION_V2
from atlas.cli.common import human_bytes, one_line, open_store, plural
from atlas.cli.fmt import dump_json, jsonable, plain_value, table
from atlas.errors import QueryError
from atlas.search import parse_where, select, table_of_state
from atlas.search.frame import column_names, plain_values

__all__ = ["FamilyUsage", "cmd_info", "cmd_ls", "disk_files", "store_usage", "user_attribute_count"]

#: Attribute keys the xarray mapping reserves for itself (``atlas.xarray.PREFIX``).
RESERVED_PREFIX = "_atlas_xarray"


def user_attribute_count(attributes: dict[str, Any]) -> int:
    """Attributes a user set (dataset and ``{array}.{attr}`` keys), without the reserved layout keys."""
    return sum(1 for k in attributes if not k.startswith(RESERVED_PREFIX))


@dataclass
class FamilyUsage:
    """Bytes of one array name's segments."""

    segments: int = 0
    size: int = 0  # bytes of its segment files
    records: int = 0  # chunk records in those files
    live_records: int = 0
    payload: int = 0  # chunk payload bytes of every record
    live: int = 0  # payload bytes of live records
    raw: int = 0  # uncompressed bytes of live records
    per_slot: dict[int, int] = field(default_factory=dict)  # live payload bytes per slot

    @property
    def dead(self) -> int:
        return self.payload - self.live


def store_usage(store: Any) -> dict[str, FamilyUsage]:
    """:class:`FamilyUsage` per array name of the committed state (reads every chunk index)."""
    state = store.session.state()  # the CLI is part of atlas: it reads the engine's indexes directly
    out: dict[str, FamilyUsage] = {}
    for array_name, family in sorted(state.base.families.items()):
        engine = state.engine(array_name)
        tables = engine.committed_tables()  # every record of every segment, superseded ones included
        idx = engine.index()  # the newest record per (slot, chunk)
        slots = state.snapshot.live_slots(array_name)
        mask = np.isin(idx.slots, slots)
        nbytes = idx.table["nbytes"][mask].astype(np.int64)
        u = FamilyUsage(
            segments=len(family.segments),
            size=sum(ref.size for ref in family.segments),
            records=sum(int(t.shape[0]) for t in tables),
            live_records=int(mask.sum()),
            payload=sum(int(t["nbytes"].astype(np.int64).sum()) for t in tables),
            live=int(nbytes.sum()),
            raw=int(idx.table["raw_nbytes"][mask].astype(np.int64).sum()),
        )
        if nbytes.size:
            uniq, inverse = np.unique(idx.slots[mask], return_inverse=True)
            sums = np.bincount(inverse.reshape(-1), weights=nbytes.astype(np.float64))
            u.per_slot = {int(s): int(b) for s, b in zip(uniq, sums)}
        out[array_name] = u
    return out


def disk_files(store: Any) -> dict[str, int]:
    """``{path: size}`` of every file under the store."""
    return {info.path: info.size for info in store.session.state().backend.list("")}


def dataset_bytes(store: Any, usage: dict[str, FamilyUsage]) -> dict[str, int]:
    """Live chunk payload bytes of each dataset."""
    out = {}
    for name, ds in store.session.state().snapshot.items():
        out[name] = sum(usage[a].per_slot.get(m.slot, 0) for a, m in ds.arrays.items() if a in usage)
    return out


def _usage_error(text: str) -> int:
    sys.stderr.write(f"atlas: error: {text}\n")
    return 2


def cmd_ls(args: Any) -> int:
    """``atlas ls STORE [--long] [--where EXPR] [--columns A,B] [--json|--csv]``."""
    where = columns = None
    if args.where is not None:
        try:
            where = parse_where(args.where)
        except QueryError as exc:
            return _usage_error(f"--where: {one_line(exc)}")
    if args.columns is not None:
        columns = [c.strip() for c in args.columns.split(",")]
        if not all(columns):
            return _usage_error(f"--columns: empty column name in {args.columns!r}")
        if args.long:
            return _usage_error("--columns and --long cannot be combined")
    if args.csv and args.long:
        return _usage_error("--csv and --long cannot be combined")
    with open_store(args) as store:
        try:
            names, values = _select(store, where, columns or [])
        except QueryError as exc:
            return _usage_error(one_line(exc))
        if not args.long:
            _print_rows(store.location, names, columns or [], values, args)
            return 0
        per_ds = dataset_bytes(store, store_usage(store))
        rows = []
        for name in names:
            view = store.open_dataset(name)
            rows.append(
                {
                    "name": name,
                    "arrays": len(view.list_arrays()),
                    "attributes": user_attribute_count(view.attributes()),
                    "bytes": per_ds.get(name, 0),
                }
            )
    if args.json:
        dump_json({"store": store.location, "datasets": rows})
        return 0
    if rows:
        lines = table(
            [(r["name"], r["arrays"], r["attributes"], human_bytes(r["bytes"])) for r in rows],
            ["NAME", "ARRAYS", "ATTRS", "STORED"],
            right=(1, 2, 3),
        )
        print("\n".join(lines))
        total = sum(r["bytes"] for r in rows)
        print(f"{plural(len(rows), 'dataset')}, {human_bytes(total)} of chunks")
    return 0


def info_data(store: Any) -> dict[str, Any]:
    """Everything ``atlas info`` prints, as plain data."""
    state = store.session.state()
    base = state.base
    usage = store_usage(store)
    files = disk_files(store)
    referenced = {f"{fam.dir}/{ref.file}" for fam in base.families.values() for ref in fam.segments}
    referenced.update(p.path for p in getattr(base, "parts", ()))
    # Retired segments are not free space: readers of older generations may still read
    # them until a compaction finds them older than its grace period.
    retired = {r.path: files[r.path] for r in base.retired if r.path in files}
    unreferenced = {
        p: s
        for p, s in files.items()
        if p not in referenced and p not in retired and p != state.manifest_name and not p.endswith(".lock")
    }
    snapshot = state.snapshot
    array_names = snapshot.array_names()
    arrays = sum(int(snapshot.live_slots(a).size) for a in array_names)
    dead = sum(u.dead for u in usage.values())
    return {
        "store": store.location,
        "format_version": base.format_version,
        "library_format_version": FORMAT_VERSION_V2,
        "generation": base.generation,
        "codec": base.codec,
        "manifest": {"name": state.manifest_name, "bytes": files.get(state.manifest_name, 0)},
        "datasets": len(snapshot),
        "catalogue_parts": len(getattr(base, "parts", ())),
        "arrays": arrays,
        "array_names": len(array_names),
        "segments": sum(u.segments for u in usage.values()),
        "chunks": sum(u.live_records for u in usage.values()),
        "bytes_on_disk": sum(files.values()),
        "segment_bytes": sum(u.size for u in usage.values()),
        "live_chunk_bytes": sum(u.live for u in usage.values()),
        "live_raw_bytes": sum(u.raw for u in usage.values()),
        "dead_chunk_bytes": dead,
        "dead_chunks": sum(u.records - u.live_records for u in usage.values()),
        "unreferenced_files": len(unreferenced),
        "unreferenced_bytes": sum(unreferenced.values()),
        "retired_files": len(retired),
        "retired_bytes": sum(retired.values()),
        "newest_retired": max((r.retired_ms for r in base.retired), default=None),
        "reclaimable_bytes": dead + sum(unreferenced.values()),
    }


def cmd_info(args: Any) -> int:
    """``atlas info STORE [--json]``."""
    with open_store(args) as store:
        d = info_data(store)
    if args.json:
        dump_json(d)
        return 0
    ratio = d["live_raw_bytes"] / d["live_chunk_bytes"] if d["live_chunk_bytes"] else 0.0

    def b(n: int) -> str:
        return f"{human_bytes(n)} ({n} B)" if n >= 1024 else f"{n} B"

    rows = [
        ("store", d["store"]),
        ("format version", str(d["format_version"])),
        ("generation", str(d["generation"])),
        ("codec", d["codec"]),
        ("manifest", f"{d['manifest']['name']} ({human_bytes(d['manifest']['bytes'])})"),
        ("datasets", str(d["datasets"])),
        ("arrays", f"{d['arrays']} in {d['array_names']} families"),
        ("segments", f"{d['segments']} files, {d['chunks']} live chunks"),
        ("bytes on disk", b(d["bytes_on_disk"])),
        ("live chunks", f"{b(d['live_chunk_bytes'])}, {human_bytes(d['live_raw_bytes'])} raw ({ratio:.1f}x)"),
        ("dead chunks", f"{b(d['dead_chunk_bytes'])} in {d['dead_chunks']} chunks"),
        ("unreferenced", f"{b(d['unreferenced_bytes'])} in {d['unreferenced_files']} files"),
        ("reclaimable", f"{b(d['reclaimable_bytes'])} by `atlas compact`"),
    ]
    if d["retired_files"]:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(d["newest_retired"] / 1000))
        rows.append(
            (
                "retired",
                f"{b(d['retired_bytes'])} in {d['retired_files']} files, not free yet: kept for readers of older "
                f"generations until a compaction finds them older than its grace period (retired up to {since})",
            )
        )
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    return 0


def _select(store: Any, where: Any, columns: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """Names matching ``where`` and the values of ``columns`` for them (no pandas)."""
    table = table_of_state(store.session.state())  # the CLI is part of atlas: it uses the search table
    columns = column_names(table, columns)
    rows = np.asarray(select(table, where), dtype=np.int64)
    names = [table.names[i] for i in rows.tolist()]
    if not names:  # an empty store has no columns to read
        return names, {c: [] for c in columns}
    return names, {c: plain_values(table, c, rows) for c in columns}


def _cell(value: Any, missing: str) -> str:
    if value is None:
        return missing
    return value if isinstance(value, str) else plain_value(value)


def _print_rows(location: str, names: list[str], columns: list[str], values: dict[str, list[Any]], args: Any) -> None:
    if args.json:
        if not columns:
            dump_json({"store": location, "datasets": names})
            return
        rows = [{"name": n, **{c: jsonable(values[c][i]) for c in columns}} for i, n in enumerate(names)]
        dump_json({"store": location, "columns": columns, "datasets": rows})
    elif args.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["name", *columns])
        for i, n in enumerate(names):
            out.writerow([n, *(_cell(values[c][i], "") for c in columns)])
    elif columns:
        if names:
            cells = [(n, *(_cell(values[c][i], "-") for c in columns)) for i, n in enumerate(names)]
            print("\n".join(table(cells, ["NAME", *columns])))
    else:
        for name in names:
            print(name)
