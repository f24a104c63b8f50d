"""A raw connection to Redis: AUTH, pipelined commands, and the replication byte stream.

Backups, the audit and the exporter speak to Redis without redis-py: the replication stream is
raw bytes anyway, and the exporter sends a scrape's commands in one round trip and reads the
replies with hiredis under a deadline. `redkeep backup run` also starts faster without redis-py.
Failures are explained by `explain.py`, with the caller's `hints` for what its commands need.
"""

import functools
import socket
import ssl
import time

import hiredis

from redkeep.errors import ErrorKind, RedisCommandError, RedkeepError, StreamError
from redkeep.redis.explain import NO_HINTS, ErrorReply, Hints, explain
from redkeep.redis.target import Target
from redkeep.redis.tls import context_for

# Replies are read through one reused buffer of this size per connection: a fresh 1 MiB bytes
# per recv() costs page faults on every read (most of a capture's receiving CPU), and a scrape
# allocated 1 MiB per read for replies of a few KiB (a TLS read brings at most 16 KiB anyway).
READ_CHUNK = 1 << 16


class RawConnection:
    """A connection to Redis speaking just enough RESP for AUTH, INFO and replication.

    `hints` are appended to failures met once connected (error replies, a server gone quiet
    or closed midway), by kind: the caller knows what its commands need.
    """

    def __init__(
        self,
        target: Target,
        idle_timeout: float,
        connect_timeout: float | None = None,
        hints: Hints = NO_HINTS,
    ) -> None:
        self.target = target
        self.idle_timeout = idle_timeout
        self.hints = hints
        self._buffer = bytearray()
        self._scratch: memoryview | None = None
        self._received = 0
        self.sock = self._open(connect_timeout or target.timeout)

    def _open(self, timeout: float) -> socket.socket:
        """Connect and, for rediss://, handshake: both within `timeout`."""
        target = self.target
        context = context_for(target) if target.tls else None  # a bad file: before connecting
        try:
            if target.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(target.socket_path)
            else:
                sock = socket.create_connection((target.host, target.port), timeout=timeout)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=target.server_name)
        except OSError as error:
            raise explain(error, target) from None
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
        where = self.target.where
        try:
            self.sock.sendall(b"".join([_encode_cached(command) for command in commands]))
        except OSError as error:
            raise self._broken(f"connection to {where} failed: {error}", error) from None
        replies: list = []
        while len(replies) < len(commands):
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:
                raise StreamError(
                    f"{where} does not speak the Redis protocol", kind=ErrorKind.PROTOCOL
                ) from None
            if reply is not False:
                replies.append(reply)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StreamError(f"{where} did not answer in time", kind=ErrorKind.TIMEOUT)
            self.sock.settimeout(remaining)
            view = self._scratch_view()
            try:
                count = self.sock.recv_into(view)
            except TimeoutError:
                raise StreamError(
                    f"{where} did not answer in time", kind=ErrorKind.TIMEOUT
                ) from None
            except OSError as error:
                raise self._broken(f"connection to {where} failed: {error}", error) from None
            if not count:
                raise StreamError(f"{where} closed the connection", kind=ErrorKind.CLOSED)
            self._received += count
            reader.feed(view, 0, count)  # hiredis copies what it is fed
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
            raise self.reply_error(line[1:], args)
        if not line.startswith("$") or not line[1:].lstrip("-").isdigit():
            raise RedisCommandError(
                f"{self.target.where} answered {args[0]} with {line[:40]!r}",
                kind=ErrorKind.PROTOCOL,
            )
        length = int(line[1:])
        while len(self._buffer) < length + 2:
            self._fill()
        data = bytes(self._buffer[:length])
        del self._buffer[: length + 2]
        return data.decode(errors="replace")

    def send(self, *args: str) -> None:
        try:
            self.sock.sendall(_encode(args))
        except OSError as error:
            where = self.target.where
            raise self._broken(f"connection to {where} failed: {error}", error) from None

    def command(self, *args: str) -> str:
        """Send a command and return its status reply; raise on an error reply."""
        self.send(*args)
        line = self.read_line()
        if line.startswith("-"):
            raise self.reply_error(line[1:], args)
        return line[1:]

    def reply_error(self, line: str, args: tuple[str, ...]) -> RedkeepError:
        """The error for an error reply `line` (without its '-') to the command `args`."""
        name = " ".join(args[:2]) if args[0] in ("REPLCONF", "CONFIG") else args[0]
        return explain(ErrorReply.parse(line), self.target, name, self.hints)

    def _broken(self, message: str, error: OSError) -> RedkeepError:
        """A connection that failed midway; a TLS alert before the first byte is the server
        refusing the handshake (TLS 1.3 refuses a client certificate only after it)."""
        if isinstance(error, ssl.SSLError) and not self._received:
            return explain(error, self.target)
        kind = ErrorKind.TIMEOUT if isinstance(error, TimeoutError) else ErrorKind.BROKEN
        return StreamError(message, kind=kind)

    def _recv_into(self, view: memoryview) -> int:
        """One read from the socket into `view`; raise StreamError on silence, a failure or
        the server closing (never returns 0)."""
        where = self.target.where
        try:
            count = self.sock.recv_into(view)
        except TimeoutError:
            waited = self.sock.gettimeout() or self.idle_timeout
            hint = self.hints.get(ErrorKind.TIMEOUT, "")
            raise StreamError(
                f"{where} sent nothing for {waited:g}s (after {self._received} bytes){hint}",
                kind=ErrorKind.TIMEOUT,
            ) from None
        except OSError as error:
            message = f"connection to {where} failed after {self._received} bytes"
            raise self._broken(f"{message}: {error.strerror or error}", error) from None
        if not count:
            hint = self.hints.get(ErrorKind.CLOSED, "")
            raise StreamError(
                f"{where} closed the connection after {self._received} bytes{hint}",
                kind=ErrorKind.CLOSED,
            )
        self._received += count
        return count

    def _scratch_view(self) -> memoryview:
        """The connection's read buffer, made on first use."""
        if self._scratch is None:
            self._scratch = memoryview(bytearray(READ_CHUNK))
        return self._scratch

    def _fill(self) -> None:
        view = self._scratch_view()
        count = self._recv_into(view)
        self._buffer += view[:count]

    def read_into(self, view: memoryview) -> int:
        """Fill the start of `view` with what is buffered or else with one read from the
        socket, and return how many bytes: the replication payload is read straight into the
        caller's buffer, without a copy per chunk. Raise as `_fill` does; never returns 0."""
        if self._buffer:
            count = min(len(self._buffer), len(view))
            view[:count] = self._buffer[:count]
            del self._buffer[:count]
            return count
        return self._recv_into(view)

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
