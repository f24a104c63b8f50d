"""Stopping on signals: SIGTERM and SIGHUP handled like Ctrl-C, so cleanup code runs."""

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    stopping = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, interrupt) for signum in stopping}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
