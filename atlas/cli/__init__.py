"""The ``atlas`` command line (``atlas ...`` or ``python -m atlas ...``).

Commands: ``create``, ``append``, ``ls``, ``show``, ``info``, ``rm``, ``compact``,
``verify``, ``export`` (see ``docs/cli.md``).  :func:`main` returns the exit status:
0 on success, 1 when the command failed (an :class:`~atlas.errors.AtlasError`, an
``OSError`` or a refused request, reported as one ``atlas: error: ...`` line on
stderr, never a traceback; ``verify`` also returns 1 when it finds damage), 2 for a
usage error, 130 when interrupted.

Modules: :mod:`~atlas.cli.parser` (arguments), :mod:`~atlas.cli.ingest` (``create``,
``append``), :mod:`~atlas.cli.cluster` (the same on a dask cluster),
:mod:`~atlas.cli.sources` (finding, naming and opening source files),
:mod:`~atlas.cli.inspect` (``ls``, ``info``), :mod:`~atlas.cli.show` (``show``),
:mod:`~atlas.cli.maintain` (``rm``, ``compact``, ``verify``, ``export``),
:mod:`~atlas.cli.progress` (progress, logging, warnings), :mod:`~atlas.cli.fmt`
(JSON and CDL formatting), :mod:`~atlas.cli.common` (shared helpers).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence

from atlas.cli.common import CLIError, FileFailure, one_line
from atlas.errors import AtlasError

__all__ = ["main"]

# Library code logs to "atlas"; without a handler it stays silent when imported.
logging.getLogger("atlas").addHandler(logging.NullHandler())


def _error(text: str) -> None:
    sys.stderr.write(f"atlas: error: {text}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``atlas`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    from atlas.cli.parser import build_parser
    from atlas.cli.progress import cli_logging

    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if isinstance(exc.code, (int, type(None))) else 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    module, _, name = args.func.partition(":")
    func = getattr(importlib.import_module(module), name)
    try:
        with cli_logging(args.quiet, args.log_file):
            try:
                return int(func(args) or 0)
            except (CLIError, FileFailure, AtlasError, OSError) as exc:
                if isinstance(exc, BrokenPipeError):
                    raise
                logging.getLogger("atlas.cli").info("%s failed: %s", args.command, one_line(exc))
                _error(one_line(exc))
                return 1
    except CLIError as exc:  # the log file itself could not be opened
        _error(one_line(exc))
        return 1
    except KeyboardInterrupt:
        _error("interrupted (a commit is atomic: the store holds all of it or none of it)")
        return 130
    except BrokenPipeError:  # `atlas ls STORE | head`: the reader left, stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
