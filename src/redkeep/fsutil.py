"""Writing files so that a crash never leaves a half-written or over-readable file."""

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


def atomic_write(path: Path, data: str | bytes, mode: int = PUBLIC_MODE) -> None:
    """Write `data` to `path` through a temp file in the same directory, then rename.

    The temp file gets `mode` before any byte is written, so a secret is never readable by
    others, not even for a moment; readers see the old file or the new one, never a mix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def open_private_log(path: Path) -> BinaryIO:
    """`path` opened for appending, readable by its owner only (made so if it was not): a
    log may quote what a server said."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, SECRET_MODE)
    os.fchmod(fd, SECRET_MODE)
    return os.fdopen(fd, "ab")


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) as 0700; an existing directory keeps its mode (it may be
    shared, like /tmp or a home directory)."""
    missing = [path, *[parent for parent in path.parents if not parent.exists()]]
    for directory in reversed(missing):
        if not directory.is_dir():
            directory.mkdir(exist_ok=True)
            directory.chmod(PRIVATE_DIR_MODE)


def too_open(path: Path) -> bool:
    """True if group or others may read or write `path`."""
    return path.exists() and bool(mode_of(path) & 0o077)


def mode_of(path: Path) -> int:
    """Return the permission bits of `path`."""
    return path.stat().st_mode & 0o777
