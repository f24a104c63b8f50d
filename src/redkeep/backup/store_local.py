"""A local directory of backups. Files and directories are private to the owner (0600/0700)."""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from redkeep.errors import StoreError, UsageError
from redkeep.fsutil import SECRET_MODE, atomic_write, ensure_private_dir


class LocalWriter:
    """Writes to a hidden temp file beside the target; `close` renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        ensure_private_dir(path.parent)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.fchmod(fd, SECRET_MODE)
        self._temp = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._temp.unlink(missing_ok=True)


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
        ensure_private_dir(path.parent)
        atomic_write(path, data, SECRET_MODE)

    def get_bytes(self, key: str) -> bytes:
        with self.reader(key) as handle:
            return handle.read()

    def head(self, key: str, length: int) -> bytes:
        with self.reader(key) as handle:
            return handle.read(length)

    def list_objects(self, prefix: str = "") -> dict[str, int]:
        """Every committed object under `prefix` with its size (temp files are not listed)."""
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return {}
        found = {}
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                found[path.relative_to(self.root).as_posix()] = path.stat().st_size
        return found

    def delete(self, keys: list[str]) -> None:
        parents = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty
