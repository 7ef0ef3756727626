"""Progress, logging and warnings of the command line.

Everything the CLI reports besides its results goes through the ``logging`` module
under the ``"atlas"`` logger (this package logs to ``"atlas.cli"``): while a command
runs, a stderr handler prints ``atlas: warning: ...`` lines (not with ``-q``) and
``--log-file`` appends timestamped records.  Python warnings raised while a source
file is read or written (xarray's ``SerializationWarning``, ...) are routed to the
same logger, prefixed with the file they concern.  The handlers are removed when the
command ends, so :func:`atlas.cli.main` leaves no trace in a host process.

The progress of ``create``/``append`` is a ``rich`` progress bar when stderr is a
terminal and ``rich`` is importable, and one plain line per file otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["Reporter", "cli_logging", "log", "source_context"]

log = logging.getLogger("atlas.cli")
_context = threading.local()
_active: list[Reporter] = []


@contextlib.contextmanager
def source_context(path: str) -> Iterator[None]:
    """Attribute warnings raised in this thread to source file ``path``."""
    previous = getattr(_context, "path", None)
    _context.path = path
    try:
        yield
    finally:
        _context.path = previous


def _write_stderr(text: str) -> None:
    if _active:
        _active[-1].print(text)
    else:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


class _StderrHandler(logging.Handler):
    """``atlas: warning: ...`` lines on stderr, printed above a running progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_stderr(f"atlas: {record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    where = getattr(_context, "path", None)
    text = " ".join(str(message).split())
    log.warning("%s%s: %s", f"{where}: " if where else "", category.__name__, text)


@contextlib.contextmanager
def cli_logging(quiet: bool, log_file: str | None) -> Iterator[None]:
    """Route the ``atlas`` logger and Python warnings to stderr / ``log_file`` for one command."""
    logger = logging.getLogger("atlas")
    handlers: list[logging.Handler] = []
    if not quiet:
        handler = _StderrHandler(logging.WARNING)
        handlers.append(handler)
    if log_file:
        try:
            fh = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            from atlas.cli.common import CLIError

            raise CLIError(f"cannot open log file {log_file}: {exc.strerror or exc}") from None
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(fh)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    for h in handlers:
        logger.addHandler(h)
    try:
        with warnings.catch_warnings():
            # Every occurrence, not once per code location: a log names each file it concerns.
            warnings.simplefilter("always", UserWarning)
            warnings.simplefilter("always", RuntimeWarning)
            warnings.showwarning = _show_warning
            yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)


class Reporter:
    """Per-file progress of ``create``/``append``.

    A ``rich`` bar on a terminal, ``[ i/n] name`` lines on stderr otherwise, nothing
    with ``quiet``.  Use as a context manager; log records are printed above the bar.
    """

    def __init__(self, total: int, verb: str, quiet: bool, stream: TextIO | None = None) -> None:
        self.total = total
        self.verb = verb
        self.quiet = quiet
        self.done = 0
        self._stream = stream or sys.stderr
        self._progress: Any = None
        self._task: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Reporter:
        if not self.quiet and _isatty(self._stream):
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
            except ImportError:  # plain lines without rich
                pass
            else:
                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[current]}", style="dim"),
                    console=Console(file=self._stream),
                    transient=False,
                )
                self._progress.start()
                self._task = self._progress.add_task(self.verb, total=self.total, current="")
        _active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _active.remove(self)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def advance(self, label: str, note: str = "") -> None:
        """One more file is done (``note``: e.g. ``"skipped"``)."""
        with self._lock:
            self.done += 1
            if self.quiet:
                return
            if self._progress is not None:
                self._progress.update(self._task, advance=1, current=label[-40:])
                return
            width = len(str(self.total))
            suffix = f" ({note})" if note else ""
            self._stream.write(f"[{self.done:>{width}}/{self.total}] {label}{suffix}\n")
            self._stream.flush()

    def print(self, text: str) -> None:
        """A line on the progress stream that does not break the bar."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self._stream.write(text + "\n")
            self._stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
