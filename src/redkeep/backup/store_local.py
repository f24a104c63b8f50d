"""A local directory of backups. Files and directories are private to the owner (0600/0700).

A failed write leaves nothing behind: no temp file, and no directory it had to create.
"""

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from redkeep.errors import StoreError, UsageError
from redkeep.fsutil import SECRET_MODE, atomic_write, ensure_private_dir

MIB = 1 << 20


def missing_parents(path: Path) -> list[Path]:
    """The directories above `path` that do not exist yet, deepest first."""
    return [parent for parent in path.parents if not parent.exists()]


def remove_if_empty(directories: list[Path]) -> None:
    """Remove each directory (deepest first) that is empty; leave the others alone."""
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


def write_failure(error: OSError, path: Path, written: int) -> StoreError:
    """One line: what failed, where, what to do (a full disk says so with its directory)."""
    done = f" after {written / MIB:.1f} MiB" if written else ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"no space left in {path.parent} while writing {path.name}{done}: free space "
            "there or choose another --dest"
        )
    return StoreError(f"cannot write {path}{done}: {error.strerror or error}; check --dest")


def _temp_file_beside(path: Path) -> tuple[int, str]:
    """A new hidden temp file in `path`'s directory, made (0700) if needed."""
    try:
        ensure_private_dir(path.parent)
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except FileNotFoundError:  # a concurrent failed run removed the empty directory just now
        ensure_private_dir(path.parent)
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)


class LocalWriter:
    """Writes to a hidden temp file beside the target; `close` renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._created = missing_parents(path)
        try:
            fd, name = _temp_file_beside(path)
        except OSError as error:
            remove_if_empty(self._created)
            raise write_failure(error, path, 0) from None
        self._temp = Path(name)
        self._file = os.fdopen(fd, "wb")
        os.fchmod(fd, SECRET_MODE)

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as error:
            raise write_failure(error, self.path, self.written) from None
        self.written += len(data)

    def close(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self.path)
        except OSError as error:
            self.abort()
            raise write_failure(error, self.path, self.written) from None

    def abort(self) -> None:
        """Remove the temp file first: closing flushes the buffer, which fails again on a
        full disk. Then the directories this writer made, if nothing else is in them."""
        self._temp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._file.close()
        remove_if_empty(self._created)


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    @classmethod
    def at(cls, path: str) -> "LocalStore":
        root = Path(path).expanduser()
        if root.exists() and not root.is_dir():
            raise UsageError(f"backup destination {root} is a file, not a directory")
        return cls(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise UsageError(f"backup object name {key!r} leaves {self.root}")
        return path

    def writer(self, key: str, size_hint: int = 0) -> LocalWriter:
        return LocalWriter(self._path(key))

    def reader(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise StoreError(f"{self.root}: backup object {key} is missing") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        created = missing_parents(path)
        try:
            ensure_private_dir(path.parent)
            atomic_write(path, data, SECRET_MODE)
        except OSError as error:
            remove_if_empty(created)
            raise write_failure(error, path, 0) from None

    def get_bytes(self, key: str) -> bytes:
        with self.reader(key) as handle:
            return handle.read()

    def head(self, key: str, length: int) -> bytes:
        with self.reader(key) as handle:
            return handle.read(length)

    def list_objects(self, prefix: str = "") -> dict[str, int]:
        """Every object under `prefix` with its size, and the hidden temp files of runs that
        were killed (or are running): so `list` shows such a run as incomplete, and `prune`
        removes it once it is old, as S3 lifecycle rules do for unfinished uploads."""
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return {}
        found = {}
        for path in base.rglob("*"):
            with contextlib.suppress(FileNotFoundError):  # a run renamed or removed it
                if path.is_file():
                    found[path.relative_to(self.root).as_posix()] = path.stat().st_size
        return found

    def discard(self, prefix: str) -> None:
        """Remove everything under `prefix` (a failed run's directory), temp files included."""
        if not prefix.strip("/"):
            raise UsageError("refusing to discard the whole backup store")
        base = self._path(prefix)
        if base.is_dir():
            shutil.rmtree(base)

    def delete(self, keys: list[str]) -> None:
        parents = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty
