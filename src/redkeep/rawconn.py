"""A raw connection to Redis: AUTH, pipelined commands, and the replication byte stream.

Backups and the exporter speak to Redis without redis-py: the replication stream is raw bytes
anyway, and the exporter sends a scrape's commands in one round trip and reads the replies
with hiredis under a deadline. `redkeep backup run` also starts faster without redis-py.
"""

import functools
import socket
import time

import hiredis

from redkeep.endpoint import Target, explain_os_error, first_line
from redkeep.errors import ConnectError, RedisCommandError, StreamError
from redkeep.tls import client_context

CHUNK = 1 << 20


class RawConnection:
    """A connection to Redis speaking just enough RESP for AUTH, INFO and replication."""

    # Said when the server goes quiet; the backup sets a hint about its --idle-timeout.
    idle_hint = ""

    def __init__(
        self, target: Target, idle_timeout: float, connect_timeout: float | None = None
    ) -> None:
        self.target = target
        self.idle_timeout = idle_timeout
        self._buffer = bytearray()
        self._received = 0
        self.sock = self._open(connect_timeout or target.timeout)

    def _open(self, timeout: float) -> socket.socket:
        """Connect and, for rediss://, handshake: both within `timeout`."""
        target = self.target
        try:
            if target.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(target.socket_path)
            else:
                sock = socket.create_connection((target.host, target.port), timeout=timeout)
            if target.tls:
                context = client_context(target.tls_ca, target.tls_cert, target.tls_key)
                sock = context.wrap_socket(sock, server_hostname=target.host)
        except OSError as error:
            raise explain_os_error(error, target) from None
        sock.settimeout(self.idle_timeout)
        return sock

    def close(self) -> None:
        self.sock.close()

    def pipeline(self, commands: list[tuple[str, ...]], deadline: float) -> list:
        """Send `commands` at once and return their replies in order, by `deadline`.

        Error replies come back as `hiredis.ReplyError` objects, not exceptions. Raise
        StreamError when the deadline passes or the connection fails; the connection is then
        unusable (a reply may be half read) and must be closed.
        """
        reader = hiredis.Reader()
        if self._buffer:  # anything read past the last line-based reply
            reader.feed(bytes(self._buffer))
            self._buffer.clear()
        try:
            self.sock.sendall(b"".join([_encode_cached(command) for command in commands]))
        except OSError as error:
            raise StreamError(f"connection to {self.target.where} failed: {error}") from None
        replies: list = []
        while len(replies) < len(commands):
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:
                raise StreamError(
                    f"{self.target.where} does not speak the Redis protocol"
                ) from None
            if reply is not False:
                replies.append(reply)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StreamError(f"{self.target.where} did not answer in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(CHUNK)
            except TimeoutError:
                raise StreamError(f"{self.target.where} did not answer in time") from None
            except OSError as error:
                raise StreamError(f"connection to {self.target.where} failed: {error}") from None
            if not data:
                raise StreamError(f"{self.target.where} closed the connection")
            reader.feed(data)
        return replies

    def login(self, timeout: float | None = None) -> None:
        """AUTH with the target's user and password, if it has a password (within `timeout`)."""
        target = self.target
        if target.password is not None:
            auth = (target.username, target.password) if target.username else (target.password,)
            self.sock.settimeout(timeout or self.idle_timeout)
            try:
                self.command("AUTH", *auth)
            finally:
                self.sock.settimeout(self.idle_timeout)

    def bulk(self, *args: str) -> str:
        """Send a command whose reply is a bulk string (INFO) and return it."""
        self.send(*args)
        line = self.read_line()
        if line.startswith("-"):
            raise self._error(line[1:], args)
        if not line.startswith("$") or not line[1:].lstrip("-").isdigit():
            raise RedisCommandError(f"{self.target.where} answered {args[0]} with {line[:40]!r}")
        length = int(line[1:])
        while len(self._buffer) < length + 2:
            self._fill()
        data = bytes(self._buffer[:length])
        del self._buffer[: length + 2]
        return data.decode(errors="replace")

    def send(self, *args: str) -> None:
        self.sock.sendall(_encode(args))

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
                f"user '{user}' may not run {name} on {self.target.where} (NOPERM); a backup "
                "needs +info +replconf +psync (the bundle's backup user has them)"
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
            waited = self.sock.gettimeout() or self.idle_timeout
            raise StreamError(
                f"{self.target.where} sent nothing for {waited:g}s (after {self._received} "
                f"bytes){self.idle_hint}"
            ) from None
        except OSError as error:
            raise StreamError(
                f"connection to {self.target.where} failed after {self._received} bytes: "
                f"{error.strerror or error}"
            ) from None
        if not data:
            raise StreamError(
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


def _encode(args: tuple[str, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


# The exporter pipelines the same commands every scrape. (AUTH goes through `send`, uncached:
# no password stays in a cache.)
_encode_cached = functools.lru_cache(maxsize=256)(_encode)
