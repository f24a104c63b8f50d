"""Fetch an RDB snapshot over the replication protocol, as `redis-cli --rdb` does.

The client poses as a replica that wants only the snapshot: `REPLCONF capa eof`,
`REPLCONF rdb-only 1`, then `PSYNC ? -1`. The server answers `+FULLRESYNC <replid> <offset>`,
sends a newline every second while it prepares the snapshot, then either `$<length>` and the
file (disk-based) or `$EOF:<40 random bytes>`, the file, and the same 40 bytes (diskless).
The end mark can straddle reads; the payload is passed on in chunks, never held whole.
Needs only the ACL rights of the bundle's `backup` user (+replconf +psync).
"""

import socket
from collections.abc import Callable
from dataclasses import dataclass

from redkeep.backup.rdb import RdbError
from redkeep.connect import Target, explain_failure, first_line
from redkeep.errors import ConnectError, RedisCommandError
from redkeep.tls import client_context

CHUNK = 1 << 20
EOF_MARK_LENGTH = 40


@dataclass(frozen=True)
class Capture:
    replid: str
    offset: int
    size: int
    transfer: str  # "diskless" or "disk"
    rdb_only: bool


class ReplicaStream:
    """A raw connection to Redis speaking just enough RESP for the replication handshake."""

    def __init__(self, target: Target, idle_timeout: float) -> None:
        self.target = target
        self.idle_timeout = idle_timeout
        self._buffer = bytearray()
        self._received = 0
        self.sock = self._open()

    def _open(self) -> socket.socket:
        target = self.target
        try:
            if target.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(target.timeout)
                sock.connect(target.socket_path)
            else:
                sock = socket.create_connection((target.host, target.port), timeout=target.timeout)
            if target.tls:
                context = client_context(target.tls_ca, target.tls_cert, target.tls_key)
                sock = context.wrap_socket(sock, server_hostname=target.host)
        except OSError as error:
            raise explain_failure(error, target) from None
        sock.settimeout(self.idle_timeout)
        return sock

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: str) -> None:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))

    def command(self, *args: str) -> str:
        """Send a command and return its status reply; raise on an error reply."""
        self.send(*args)
        line = self.read_line()
        if line.startswith("-"):
            raise self._error(line[1:], args)
        return line[1:]

    def _error(self, message: str, args: tuple[str, ...]) -> Exception:
        name = " ".join(args[:2]) if args[0] in ("REPLCONF", "CONFIG") else args[0]
        user = self.target.username or "default"
        if message.startswith(("WRONGPASS", "NOAUTH")):
            code = message.split(maxsplit=1)[0]
            return ConnectError(
                f"{self.target.where} refused user '{user}' ({code}): wrong password or the "
                "user is disabled"
            )
        if message.startswith("NOPERM"):
            return RedisCommandError(
                f"user '{user}' may not run {name} on {self.target.where} (NOPERM); an RDB "
                "capture needs +replconf +psync (the bundle's backup user has them)"
            )
        if "unknown command" in message:
            return RedisCommandError(
                f"{self.target.where} does not offer {name} (a managed service?); "
                "replication capture is not possible there"
            )
        return RedisCommandError(f"{name} failed on {self.target.where}: {first_line(message)}")

    def _fill(self) -> None:
        try:
            data = self.sock.recv(CHUNK)
        except TimeoutError:
            raise RdbError(
                f"{self.target.where} sent nothing for {self.idle_timeout:g}s during the "
                f"transfer (after {self._received} bytes); raise --idle-timeout if the server "
                "is slow to fork"
            ) from None
        except OSError as error:
            raise RdbError(
                f"connection to {self.target.where} failed after {self._received} bytes: "
                f"{error.strerror or error}"
            ) from None
        if not data:
            raise RdbError(
                f"{self.target.where} closed the connection after {self._received} bytes, "
                "before the snapshot was complete"
            )
        self._received += len(data)
        self._buffer += data

    def read_line(self) -> str:
        """Read one CRLF-terminated line, skipping the keep-alive newlines before it."""
        while True:
            while self._buffer[:1] == b"\n":
                del self._buffer[0]
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end]).decode(errors="replace")
                del self._buffer[: end + 2]
                return line
            self._fill()

    def take(self) -> bytes:
        """Whatever is buffered, or the next chunk from the socket."""
        if not self._buffer:
            self._fill()
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def capture_rdb(
    target: Target, write: Callable[[bytes], None], idle_timeout: float = 60.0
) -> Capture:
    """Stream a fresh RDB snapshot of `target` into `write`, chunk by chunk."""
    stream = ReplicaStream(target, idle_timeout)
    try:
        if target.password is not None:
            auth = (target.username, target.password) if target.username else (target.password,)
            stream.command("AUTH", *auth)
        stream.command("REPLCONF", "capa", "eof")
        try:
            stream.command("REPLCONF", "rdb-only", "1")
            rdb_only = True
        except RedisCommandError:
            rdb_only = False  # Redis 6.0: it would go on streaming writes; we stop at the end
        stream.send("PSYNC", "?", "-1")
        replid, offset = _fullresync(stream, stream.read_line())
        header = stream.read_line()
        if header.startswith("$EOF:"):
            size = _read_until_mark(stream, header[5:].encode(), write)
            transfer = "diskless"
        elif header.startswith("$") and header[1:].isdigit():
            size = _read_length(stream, int(header[1:]), write)
            transfer = "disk"
        else:
            raise RdbError(f"{target.where} sent {header[:60]!r} instead of an RDB payload")
        return Capture(replid, offset, size, transfer, rdb_only)
    finally:
        stream.close()


def _fullresync(stream: ReplicaStream, line: str) -> tuple[str, int]:
    if line.startswith("-"):
        raise stream._error(line[1:], ("PSYNC",))
    parts = line.split()
    if len(parts) == 3 and parts[0] == "+FULLRESYNC" and parts[2].isdigit():
        return parts[1], int(parts[2])
    raise RdbError(f"{stream.target.where} answered PSYNC with {line[:60]!r}")


def _read_length(stream: ReplicaStream, length: int, write: Callable[[bytes], None]) -> int:
    remaining = length
    while remaining:
        data = stream.take()
        if len(data) > remaining:  # nothing should follow the file; ignore it if it does
            data = data[:remaining]
        write(data)
        remaining -= len(data)
    return length


def _read_until_mark(stream: ReplicaStream, mark: bytes, write: Callable[[bytes], None]) -> int:
    if len(mark) != EOF_MARK_LENGTH:
        raise RdbError(f"{stream.target.where} sent an end mark of {len(mark)} bytes, not 40")
    held = b""
    size = 0
    while True:
        data = held + stream.take()
        found = data.find(mark)
        if found >= 0:
            write(data[:found])
            return size + found
        # The mark may straddle this read and the next: keep its length back.
        cut = max(0, len(data) - EOF_MARK_LENGTH)
        if cut:
            write(data[:cut])
            size += cut
        held = data[cut:]
