"""The JSON access log: one line per connection, one per refused connection or command.

Never a password: the scanner keeps the user name of AUTH/HELLO and nothing else of their
arguments, and a refused command is logged by name only.
"""

import json
import sys
import time
from pathlib import Path
from typing import IO

from redkeep.proxy.config import address_text
from redkeep.proxy.policy import TokenBucket
from redkeep.proxy.records import ConnectionRecord, RefusedCommand

REFUSALS_PER_SECOND = 100.0  # a flood is counted in metrics, not logged line by line


class AccessLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stream: IO[str] | None = None
        self.suppressed = 0
        self.failures = 0  # lines that could not be written (disk full ...): a metric
        self._refusals = TokenBucket(REFUSALS_PER_SECOND, time.monotonic())
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the file, e.g. after log rotation moved it (SIGHUP).

        The new file is opened before the old one is closed: if it cannot be, this raises
        and the old stream stays in use.
        """
        if self.path is None:
            stream = None
        elif str(self.path) == "-":
            stream = sys.stdout
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            stream = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self.path.chmod(0o600)
        old, self.stream = self.stream, stream
        if old is not None and old is not sys.stdout and old is not stream:
            old.close()

    def close(self) -> None:
        if self.stream is not None and self.stream is not sys.stdout:
            self.stream.close()
        self.stream = None

    def _write(self, entry: dict) -> None:
        """Never raises: a log that cannot be written must not break the data path."""
        if self.stream is None:
            return
        try:
            self.stream.write(json.dumps({"ts": _now(), **entry}, separators=(",", ":")) + "\n")
        except (OSError, ValueError):
            self.failures += 1

    def _limited(self, entry: dict) -> None:
        """Refusals are logged at most REFUSALS_PER_SECOND a second; the rest are counted."""
        if self.stream is None:
            return
        if not self._refusals.take(time.monotonic()):
            self.suppressed += 1
            return
        if self.suppressed:
            entry["suppressed_before"] = self.suppressed
            self.suppressed = 0
        self._write(entry)

    def refused(self, peer: tuple, reason: str) -> None:
        self._limited({"event": "refused", "client": peer[0], "port": peer[1], "reason": reason})

    def command_refused(self, refused: RefusedCommand) -> None:
        self._limited(
            {
                "event": "command_refused",
                "client": refused.client,
                "port": refused.port,
                "user": refused.user,
                "command": refused.command,
                "reason": refused.reason,
            }
        )

    def switched(
        self, old: tuple[str, int] | None, new: tuple[str, int], reason: str, closed: int
    ) -> None:
        """The upstream changed (Sentinel named a new primary); `closed` connections to the
        old one were ended."""
        self._write(
            {
                "event": "upstream_switch",
                "from": address_text(old) if old else None,
                "to": address_text(new),
                "reason": reason,
                "closed_connections": closed,
            }
        )

    def closed(self, record: ConnectionRecord) -> None:
        self._write(
            {
                "event": "connection",
                "client": record.client,
                "port": record.port,
                "user": record.user,
                "tls": record.tls,
                "client_cert": record.client_cert,
                "bytes_in": record.bytes_in,
                "bytes_out": record.bytes_out,
                "commands": record.commands,
                "refused": dict(record.refused),
                "duration": record.duration,
                "closed_by": record.closed_by,
                "error": record.error,
            }
        )


def _now() -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        + f".{int(time.time() * 1000) % 1000:03d}Z"
    )
