"""Child processes a command starts and must not leave behind.

`end_child` stops one: SIGTERM, a wait, then SIGKILL. `die_with_parent` asks Linux to SIGKILL a
child when the command that started it dies, even by SIGKILL (PR_SET_PDEATHSIG): a throw-away
redis-server (init's configuration check, a restore drill) must not outlive its command, and
one whose temp dir is gone ignores SIGTERM, because its final save fails.

The bundle's own long-running processes are not children in this sense: `up` starts them to
outlive it, and `stack/processes.py` finds and signals them.
"""

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def end_child(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM a child this command started, wait up to `timeout` seconds for it to exit,
    then SIGKILL it (its Popen is proof enough of what it is)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when this process dies (None elsewhere).

    Linux sends it when the thread that started the child ends: start children from the
    thread that lives as long as they should (no threads run while ours start).
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
    sigkill = int(signal.SIGKILL)

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, sigkill)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arm
