"""The AOF backup's lock and the record of the paused rewrite setting, in a private place.

While an AOF backup runs, automatic rewrites are paused (`auto-aof-rewrite-percentage 0`) and
the user's value is kept here, so that a run killed with SIGKILL is repaired by the next one.
The place must not be the temp dir (a later run may have another TMPDIR, and any local user can
plant a file there): it is the bundle's run/backup, else a per-user state dir, 0700.
"""

import fcntl
import os
import re
import stat
from pathlib import Path

from redkeep.errors import RedkeepError
from redkeep.fsutil import ensure_private_dir

REWRITE_SETTING = "auto-aof-rewrite-percentage"


def state_dir(bundle_root: Path | None) -> Path:
    """Where AOF backups keep their lock and the paused setting: the bundle's run/backup,
    else a per-user state dir ($XDG_STATE_HOME/redkeep or ~/.local/state/redkeep). Never the
    temp dir: a later run with another TMPDIR (cron, systemd's PrivateTmp, a reboot) must find
    what a killed run left, and no other user may plant a file there."""
    if bundle_root is not None:
        return bundle_root / "run" / "backup"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "redkeep"


class AofLock:
    """One AOF backup of a server at a time (two would save each other's paused setting), and
    the record of the setting while it is paused. A file `aof-<run_id>.lock` in a private (0700)
    dir, opened without following links, ours and 0600, or refused; it holds an integer or
    nothing. The lock is held until `close`."""

    def __init__(self, directory: Path, run_id: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{40}", run_id):
            raise RedkeepError(f"the server reports run_id {run_id[:50]!r}: not a run id")
        self.path = _private_dir(directory) / f"aof-{run_id}.lock"
        self.fd = _open_private(self.path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise RedkeepError(
                "another AOF backup of this server is running (it holds "
                f"{self.path}); try again later"
            ) from None

    def saved(self) -> str:
        """The setting a killed run left paused ("" when none); only an integer is accepted."""
        text = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
        if text and not text.isdigit():
            raise RedkeepError(
                f"{self.path} does not hold a saved {REWRITE_SETTING} (an integer); check "
                f"the server's {REWRITE_SETTING} by hand, then remove that file"
            )
        return text

    def save(self, value: str) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, value.encode(), 0)
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def paused_by_a_killed_run(directory: Path, run_id: str) -> str | None:
    """The setting a killed AOF backup of this server left paused, if one did (a warning for
    runs that cannot put it back themselves)."""
    path = directory / f"aof-{run_id}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # held: a run is pausing right now
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        return text if text.isdigit() else None
    except BlockingIOError:
        return None
    finally:
        os.close(fd)


def _private_dir(directory: Path) -> Path:
    """`directory`, made 0700 if missing; refused unless it is ours and closed to others."""
    try:
        ensure_private_dir(directory)
        info = directory.lstat()
    except OSError as error:
        raise RedkeepError(f"cannot use {directory} for the AOF lock: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RedkeepError(
            f"{directory} must be a directory of this user that others cannot open (0700) "
            "to hold the AOF lock; fix its owner and mode"
        )
    return directory


def _open_private(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as error:
        raise RedkeepError(f"cannot open the AOF lock {path}: {error.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        os.close(fd)
        raise RedkeepError(
            f"{path} must be a file of this user that others cannot read (0600); remove it"
        )
    return fd
