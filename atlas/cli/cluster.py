"""``create``/``append`` with ``--scheduler ADDRESS`` or ``--cluster local:N``.

The files are stored by :func:`atlas.ingest` on a dask.distributed cluster: the
workers open the files and write the segments at the store's location, this
process draws the progress bar, logs skipped and failed files, and commits the
metadata the tasks return.  Unlike the single-writer ingest, the metadata is
committed every ``commit_interval`` (60 s) and at the end, so a long run that
stops keeps what it committed; ``append --skip-existing`` resumes it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from atlas.cli.common import CLIError, FileFailure
from atlas.cli.progress import Reporter, log
from atlas.cli.sources import Source
from atlas.errors import IngestError
from atlas.store import Atlas

__all__ = ["cluster_client", "ingest_on_cluster", "wants_cluster"]


def wants_cluster(args: Any) -> bool:
    """True when the command line asked for a dask.distributed cluster."""
    return bool(getattr(args, "scheduler", None) or getattr(args, "cluster", None))


@contextlib.contextmanager
def cluster_client(args: Any) -> Iterator[Any]:
    """A ``distributed.Client`` to ``--scheduler``, or to a LocalCluster of ``--cluster`` workers."""
    try:
        import distributed
    except ImportError:
        raise CLIError("--scheduler and --cluster need dask.distributed: pip install 'atlas[dask]'") from None
    if args.scheduler:
        try:
            client = distributed.Client(args.scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise CLIError(f"cannot reach the dask scheduler at {args.scheduler}: {exc}") from None
        with client:
            log.info("dask dashboard: %s", client.dashboard_link)
            yield client
        return
    with (
        distributed.LocalCluster(
            n_workers=args.cluster, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        log.info("dask dashboard: %s", client.dashboard_link)
        yield client


def ingest_on_cluster(store: Atlas, sources: list[Source], args: Any, verb: str) -> Any:
    """Store ``sources`` with workers of the cluster; the CLI's ``Outcome`` of it.

    Raises :class:`FileFailure` for a bad file unless ``args.skip_errors``.
    """
    from atlas.cli.ingest import Outcome
    from atlas.distributed import ingest

    by_path = {str(s.path): s for s in sources}
    with Reporter(len(sources), verb, args.quiet) as reporter, cluster_client(args) as client:

        def progress(label: str, note: str) -> None:
            src = by_path.get(label)
            reporter.advance(src.name if src else label, note)

        try:
            report = ingest(
                sources, store, client=client, batch=args.batch, skip_existing=getattr(args, "skip_existing", False),
                skip_errors=args.skip_errors, skip_unsupported=args.skip_unsupported, chunk_size=args.chunk_size,
                engine=args.engine, max_pending_bytes=args.max_pending, progress=progress,
            )  # fmt: skip
        except IngestError as exc:
            label, reason = exc.failed[0] if exc.failed else ("?", str(exc))
            raise FileFailure(label, reason) from exc
    for label, reason in report.failed:
        log.warning("skipped %s: %s", label, reason)
    out = Outcome(stored=[by_path[s] for s in report.stored if s in by_path], datasets=report.datasets)
    out.skipped = [(by_path[lb], why) for lb, why in report.failed if lb in by_path]
    out.seconds = report.seconds
    log.info(
        "%s on a cluster: %d bytes of segments written by the workers, %d bytes of metadata received, %d commits",
        verb, report.stored_bytes, report.received_bytes, report.commits,
    )  # fmt: skip
    return out
