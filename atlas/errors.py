"""Every exception ATLAS raises on purpose.

Each class derives from :class:`AtlasError` *and* from the builtin exception users
already catch (``KeyError`` for a missing dataset, ``ValueError`` for a bad
argument, ...), so ``except KeyError`` and ``except atlas.errors.AtlasError`` both
work.  Errors from numba, blosc2, msgpack or obstore are translated into these
classes where they are raised; none of their tracebacks reaches a user.
"""

from __future__ import annotations

__all__ = [
    "AtlasError",
    "ArrayExistsError",
    "ArrayNotFoundError",
    "AttributeNotFoundError",
    "BackendError",
    "ChecksumError",
    "ConflictError",
    "CorruptStoreError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "DTypeError",
    "FillValueError",
    "FormatVersionError",
    "InvalidArgumentError",
    "InvalidNameError",
    "MissingDependencyError",
    "NotAStoreError",
    "QueryError",
    "QuerySyntaxError",
    "QueryTypeError",
    "ReadOnlyError",
    "SchemaMismatchError",
    "ShrinkError",
    "SegmentMissingError",
    "SelectionError",
    "StoreClosedError",
    "StoreExistsError",
    "UnknownColumnError",
    "ValueOverflowError",
]


class AtlasError(Exception):
    """Base class of every error ATLAS raises on purpose."""

    def __str__(self) -> str:
        # KeyError quotes its argument (``KeyError('x')`` prints ``'x'``); our
        # messages are sentences, so print them as they are.
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(AtlasError, ValueError):
    """An argument has the right type but a value ATLAS cannot accept."""


class InvalidNameError(InvalidArgumentError):
    """A dataset, array or attribute name is empty, contains ``/``, starts with ``_``
    or is otherwise unusable."""


class SelectionError(InvalidArgumentError):
    """A ``start``/``shape`` selection has the wrong rank or leaves the array bounds."""


class QueryError(InvalidArgumentError):
    """A search (``Atlas.find``, ``Atlas.catalog``, ``atlas ls --where``) is invalid:
    an unknown column or operator, or a value of the wrong type for its column; the
    message names the predicate."""


class QuerySyntaxError(QueryError):
    """A ``where`` expression string does not parse; ``position`` is the 0-based
    offset of the offending character and the message repeats it."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class UnknownColumnError(QueryError, KeyError):
    """A search names a column the store does not have; the message lists close
    matches."""


class QueryTypeError(QueryError, TypeError):
    """A search compares a column with a value of another type (a string column
    with a number, a range test on lists)."""


class SchemaMismatchError(InvalidArgumentError):
    """Arrays that must agree (in shape, dtype or dims) for a stacked read do not."""


class ShrinkError(InvalidArgumentError):
    """A resize would drop stored cells and ``allow_shrink=True`` was not given."""


class UnexpectedKeywordError(AtlasError, TypeError):
    """A call got a keyword argument it does not take (the message says where it belongs)."""


class DTypeError(AtlasError, TypeError):
    """A dtype is unknown, or data of the wrong dtype was given."""


class FillValueError(DTypeError):
    """A fill value does not match the array's dtype."""


class ValueOverflowError(AtlasError, OverflowError):
    """An integer value does not fit the target dtype."""


class DatasetNotFoundError(AtlasError, KeyError):
    """The named dataset is not in the store."""


class ArrayNotFoundError(AtlasError, KeyError):
    """The named array is not defined in the dataset."""


class AttributeNotFoundError(AtlasError, KeyError):
    """The named attribute is not set."""


class DatasetExistsError(AtlasError, FileExistsError):
    """A dataset of that name already exists."""


class ArrayExistsError(AtlasError, FileExistsError):
    """An array of that name is already defined in the dataset."""


class StoreExistsError(AtlasError, FileExistsError):
    """``Atlas.create`` was pointed at a location that already holds a store."""


class NotAStoreError(AtlasError, FileNotFoundError):
    """``Atlas.open`` was pointed at a location that holds no store."""


class ConflictError(AtlasError):
    """Another writer committed to the store since this handle read it.

    The pending changes of this handle are kept; call :meth:`atlas.Atlas.refresh`
    and :meth:`atlas.Atlas.flush` again.
    """


class ReadOnlyError(AtlasError, PermissionError):
    """A write was attempted through a read-only handle or backend."""


class StoreClosedError(AtlasError, ValueError):
    """The store handle has been closed."""


class FormatVersionError(AtlasError, ValueError):
    """The store was written by a newer format version than this library reads."""


class CorruptStoreError(AtlasError, OSError):
    """Bytes in the store do not match what the format allows (bad magic, bad length,
    undecodable manifest, missing file)."""


class ChecksumError(CorruptStoreError):
    """A chunk payload or a segment index does not match its recorded checksum."""


class SegmentMissingError(CorruptStoreError):
    """A segment a commit was about to reference is missing or has the wrong size.

    Raised by a flush before the manifest is written, so the store is unchanged;
    the message names the file.  Typically the handle's spilled segments were
    swept by a compaction while it was writing: discard and write the data again.
    """


class BackendError(AtlasError, OSError):
    """An I/O operation of the storage backend failed; the message names the
    operation and the path."""


class MissingDependencyError(AtlasError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra
    to install."""


class AllocationError(AtlasError, MemoryError):
    """A read's output (or another buffer a call needs) is too large to allocate;
    the message names the array and the requested size."""


__all__ += ["AllocationError"]


class AtlasWarning(UserWarning):
    """Base class of the warnings ATLAS issues.

    A ``UserWarning``, so Python shows it by default (unlike ``ResourceWarning``);
    silence it with ``warnings.filterwarnings("ignore", category=AtlasWarning)``.
    """


class UncommittedChangesWarning(AtlasWarning):
    """A writable handle with unflushed changes was garbage-collected or still open at
    interpreter exit: its changes are lost.  ATLAS never commits from a finaliser;
    call ``flush()`` or ``close()``, or use the store in a ``with`` block."""


__all__ += ["AtlasWarning", "UncommittedChangesWarning", "UnexpectedKeywordError"]
