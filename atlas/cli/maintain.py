"""``atlas rm``, ``atlas compact``, ``atlas upgrade``, ``atlas verify`` and ``atlas export``."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from typing import Any

from atlas.cli.common import CLIError, human_bytes, one_line, open_store, plural, require_xarray
from atlas.cli.fmt import dump_json
from atlas.cli.progress import log, source_context
from atlas.errors import ConflictError, DatasetNotFoundError

__all__ = ["cmd_compact", "cmd_export", "cmd_rm", "cmd_upgrade", "cmd_verify", "compact_summary"]


def cmd_rm(args: Any) -> int:
    """``atlas rm STORE NAME... [--force]``: delete datasets in one commit."""
    with open_store(args, "r+") as store:
        try:
            removed = []
            for name in dict.fromkeys(args.names):
                try:
                    store.delete_dataset(name)
                    removed.append(name)
                except DatasetNotFoundError:
                    if not args.force:
                        raise
            for attempt in range(5):
                try:
                    store.flush()
                    break
                except ConflictError:
                    if attempt == 4:
                        raise
                    store.refresh()
        except BaseException:
            store.discard()  # nothing is deleted unless everything is
            raise
        for name in removed:
            log.info("removed dataset %r from %s", name, store.location)
        if not args.quiet:
            print(
                f"removed {plural(len(removed), 'dataset')} from {store.location} "
                f"(generation {store.generation}); `atlas compact` reclaims their bytes"
            )
    return 0


def cmd_upgrade(args: Any) -> int:
    """``atlas upgrade STORE``: format 1 metadata to format 2, in one commit."""
    with open_store(args, "r+") as store:
        upgraded = store.upgrade()
        log.info("upgrade %s: %s", store.location, "upgraded" if upgraded else "already format 2")
        if not args.quiet:
            if upgraded:
                print(f"upgraded {store.location} to format 2 (generation {store.generation})")
            else:
                print(f"{store.location} is format 2 already; nothing to do")
    return 0


def cmd_compact(args: Any) -> int:
    """``atlas compact STORE [--grace-period SECONDS]``."""
    with open_store(args, "r+") as store:
        report = store.compact(grace_period=args.grace_period)
        log.info("compact %s: %s", store.location, report)
        if not args.quiet:
            print(compact_summary(store.location, report))
    return 0


def compact_summary(location: str, report: Any) -> str:
    """One honest line: what was rewritten, retired (still on disk) and deleted now."""
    if report.committed:
        head = (
            f"compacted {location}: generation {report.generation}, "
            f"{report.rewritten_arrays} array {'family' if report.rewritten_arrays == 1 else 'families'} rewritten"
        )
    else:
        head = f"compact {location}: nothing to rewrite or retire, generation {report.generation} unchanged"
    parts = [head]
    if report.retired_files:
        when = (
            "kept for good (infinite grace period)"
            if report.deletable_after is None or report.deletable_after == float("inf")
            else "deletable by a compaction after "
            + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.deletable_after))
        )
        parts.append(
            f"retired {plural(report.retired_files, 'file')} ({human_bytes(report.retired_bytes)}), {when}"
        )
    parts.append(f"deleted now {plural(report.deleted_files, 'file')} ({human_bytes(report.deleted_bytes)})")
    if report.kept_files > report.retired_files:  # older compactions' segments wait too
        parts.append(
            f"{human_bytes(report.kept_bytes)} in {plural(report.kept_files, 'retired file')} in all still on "
            "disk for readers of older generations"
        )
    return "; ".join(parts)


def cmd_verify(args: Any) -> int:
    """``atlas verify STORE [--json]``: exit status 1 when any referenced byte is damaged."""
    with open_store(args) as store:
        problems = store.verify()
        families = store.session.state().base.families.values()
        segments = sum(len(f.segments) for f in families)
        chunks = sum(ref.records for f in families for ref in f.segments)
        location = store.location
    for problem in problems:
        log.info("verify %s: %s", location, problem)
    if args.json:
        dump_json({"store": location, "ok": not problems, "segments": segments, "chunks": chunks,
                   "problems": problems})  # fmt: skip
    else:
        for problem in problems:
            print(problem)
        if not problems:
            print(f"ok: {segments} segments, {chunks} chunks verified in {location}")
        else:
            print(f"DAMAGED: {plural(len(problems), 'problem')} in {location}")
    return 1 if problems else 0


def cmd_export(args: Any) -> int:
    """``atlas export STORE NAME OUT.nc``: the dataset back as a NetCDF file (via xarray)."""
    require_xarray()
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not args.force:
        raise CLIError(f"{args.out} exists (use --force to overwrite it)")
    directory = os.path.dirname(out)
    if not os.path.isdir(directory):
        raise CLIError(f"cannot write {args.out}: directory {directory} does not exist")
    tmp = os.path.join(directory, f".{os.path.basename(out)}.{secrets.token_hex(4)}.tmp")
    with open_store(args) as store:
        ds = store.to_xarray(args.name)
        try:
            with source_context(args.out):
                ds.to_netcdf(tmp, format=args.format, engine=args.engine)
            os.replace(tmp, out)  # never a half-written OUT
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, (ValueError, TypeError, RuntimeError)):
                raise CLIError(f"cannot write {args.out}: {type(exc).__name__}: {one_line(exc)}") from None
            raise
    if not args.quiet:
        print(f"exported {args.name} to {args.out} ({human_bytes(os.path.getsize(out))})")
    return 0
