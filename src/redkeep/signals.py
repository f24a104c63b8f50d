"""Stopping on signals, so cleanup code runs and a requested stop is a clean exit.

Synchronous code (`interrupted_by_signals`): SIGTERM and SIGHUP raise KeyboardInterrupt as
Ctrl-C does. Code in an asyncio loop (`stop_on_signals`): SIGTERM, SIGINT and SIGHUP call a
stop function from the loop instead. An exception raised wherever the loop happens to be (a
callback, the selector, a thread start) cancels every task mid-flight, and asyncio prints
their tracebacks; a stop from the loop lets the server close what it opened and return.
"""

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # every command stops on signals; only the servers load asyncio
    import asyncio

STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def interrupted_by_signals(sigint: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does. With
    `sigint` (a foreground `up` waiting to be stopped) so does SIGINT, even when inherited
    ignored: a process started in the background by a non-interactive shell keeps SIGINT
    ignored, and a `kill -INT` meant to stop it was lost."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    stopping = STOPPING if sigint else (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, interrupt) for signum in stopping}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def stop_on_signals(
    loop: "asyncio.AbstractEventLoop",
    handler: Callable[[], None],
    signums: tuple[signal.Signals, ...] = STOPPING,
) -> Iterator[None]:
    """Within the block, `signums` call `handler` (a stop, or the proxy's reload) from the
    running `loop`; nothing is raised.

    Afterwards the handlers from before are back: asyncio would leave the default ones, and
    a SIGTERM during cleanup would then kill the process without its cleanup."""
    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum, before in previous.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, before)
