"""One `up` or `down` at a time per bundle: an flock on run/stack.lock.

The kernel drops the lock when its holder exits, however it exits, so a crash never leaves
the bundle locked. The holder writes who it is into the file for the one that waits.
"""

import contextlib
import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from redkeep.errors import RedkeepError
from redkeep.fsutil import ensure_private_dir

LOCK_NAME = "stack.lock"
LOCK_WAIT = 60.0  # long enough for another `up` to finish starting


@contextlib.contextmanager
def stack_lock(
    run_dir: Path,
    command: str,
    on_wait: Callable[[str], None] = lambda holder: None,
    wait: float = LOCK_WAIT,
) -> Iterator[None]:
    """Hold the bundle's lock for the block; wait up to `wait` seconds for another holder.

    `on_wait` is told once who holds it. Raise RedkeepError naming the holder on timeout.
    """
    ensure_private_dir(run_dir)
    path = run_dir / LOCK_NAME
    handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        told = False
        while not _try_lock(handle):
            holder = os.pread(handle, 300, 0).decode(errors="replace").strip()
            holder = holder or "another redkeep command"
            if time.monotonic() >= deadline:
                raise RedkeepError(
                    f"{path.parent.parent} is busy: {holder} holds {path}; let it finish "
                    "and run this again (or stop it with SIGTERM: it undoes what it started)"
                )
            if not told:
                on_wait(holder)
                told = True
            time.sleep(0.1)
        since = dt.datetime.now().astimezone().strftime("%H:%M:%S")
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"`redkeep {command}` (pid {os.getpid()}, since {since})\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(handle, 0)
    finally:
        os.close(handle)  # releases the lock


def _try_lock(handle: int) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
