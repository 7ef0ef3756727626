"""A store in a local directory: memory maps, fsync + rename, an advisory commit lock.

New objects are written to a temporary file in the same directory, fsynced,
renamed into place and the directory fsynced, so a crash never exposes a partial
file under a final name.  The manifest is replaced the same way while holding an
exclusive ``flock`` on ``.atlas.lock``; the lock is held only around
check-then-rename, never while opening or reading.  The version tag of a local
object is a BLAKE2b digest of its content (every manifest carries a unique write token, so
two commits never share a tag).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from atlas.backends.base import Buffer, ObjectInfo, Version
from atlas.backends.versions import content_version
from atlas.errors import BackendError, ConflictError, InvalidArgumentError, ReadOnlyError

try:  # advisory locks are POSIX; elsewhere commits rely on the version check alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "LocalBackend"]

LOCK_NAME = ".atlas.lock"
_TMP_SUFFIX = ".tmp"


def _fail(op: str, path: str | os.PathLike, exc: OSError) -> BackendError:
    err = BackendError(f"{op} {os.fspath(path)} failed: {exc.strerror or exc}")
    err.errno = exc.errno
    return err


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; nothing to sync then
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class LocalBackend:
    """Store objects as files under ``root``.

    Parameters
    ----------
    root : str or os.PathLike
        The store directory.
    read_only : bool
        Refuse every write with :class:`~atlas.errors.ReadOnlyError`.
    """

    def __init__(self, root: str | os.PathLike, read_only: bool = False) -> None:
        if "\x00" in os.fspath(root):  # the OS would refuse it with a ValueError on first use
            raise InvalidArgumentError(f"store path {os.fspath(root)!r:.200} contains a NUL byte")
        self.root = Path(root).absolute()
        self.read_only = read_only
        self.location = str(self.root)

    def __repr__(self) -> str:
        return f"LocalBackend({self.location!r})"

    def _path(self, path: str) -> Path:
        return self.root.joinpath(*path.split("/"))

    def _writable(self, op: str, path: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"cannot {op} {path}: the store was opened read-only")

    # -- reads ----------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        try:
            return self._path(path).is_file()
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise _fail("stat", self._path(path), exc) from None

    def get(self, path: str) -> bytes:
        try:
            return self._path(path).read_bytes()
        except OSError as exc:
            raise _fail("read", self._path(path), exc) from None

    def get_versioned(self, path: str) -> tuple[bytes, Version] | None:
        try:
            data = self._path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _fail("read", self._path(path), exc) from None
        return data, content_version(data)

    def get_ranges(self, path: str, starts: Sequence[int], lengths: Sequence[int]) -> list[Buffer]:
        full = self._path(path)
        try:
            with open(full, "rb") as fh:
                return [os.pread(fh.fileno(), n, s) for s, n in zip(starts, lengths, strict=False)]
        except OSError as exc:
            raise _fail("read", full, exc) from None
        except (OverflowError, ValueError) as exc:  # a range beyond what the OS can address
            raise BackendError(f"read {full} failed: bad range ({exc})") from None

    def size(self, path: str) -> int:
        try:
            return self._path(path).stat().st_size
        except OSError as exc:
            raise _fail("stat", self._path(path), exc) from None

    def map(self, path: str) -> np.ndarray:
        """A read-only uint8 view of a memory map of the whole file."""
        full = self._path(path)
        try:
            with open(full, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError):
                raise _fail("map", full, exc) from None
            raise BackendError(f"map {full} failed: {exc}") from None
        return np.frombuffer(mm, dtype=np.uint8)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self._path(prefix) if prefix else self.root
        try:
            if not base.is_dir():
                return
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise _fail("list", base, exc) from None
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = Path(dirpath, name)
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue
                yield ObjectInfo(full.relative_to(self.root).as_posix(), st.st_size, st.st_mtime)

    # -- writes ---------------------------------------------------------------------------

    def _write_temp(self, target: Path, parts: Sequence[Buffer]) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
        try:
            with open(tmp, "xb") as fh:
                for part in parts:
                    fh.write(part)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return tmp

    def put(self, path: str, parts: Sequence[Buffer]) -> None:
        self._writable("write", path)
        target = self._path(path)
        try:
            tmp = self._write_temp(target, parts)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise _fail("write", target, exc) from None

    def commit(self, path: str, data: bytes, expected: Version | None) -> Version:
        self._writable("commit", path)
        target = self._path(path)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with self._locked():
                current = self.get_versioned(path)
                if expected is None and current is not None:
                    raise ConflictError(f"{target} already exists")
                if expected is not None and (current is None or current[1] != expected):
                    raise ConflictError(f"{target} was changed by another writer")
                tmp = self._write_temp(target, [data])
                os.replace(tmp, target)
                _fsync_dir(target.parent)
        except OSError as exc:
            if isinstance(exc, BackendError):
                raise
            raise _fail("commit", target, exc) from None
        return content_version(data)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def delete(self, path: str) -> None:
        self._writable("delete", path)
        target = self._path(path)
        try:
            target.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fail("delete", target, exc) from None
        parent = target.parent
        if parent != self.root:
            with contextlib.suppress(OSError):
                parent.rmdir()  # only succeeds once the array directory is empty

    def close(self) -> None:
        """Nothing to release: maps are owned (and dropped) by their users."""
