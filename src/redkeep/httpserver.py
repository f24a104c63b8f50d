"""The one HTTP/1.1 server of redkeep: the exporter's endpoint and the proxy's /metrics.

It runs on the caller's asyncio loop and hands each complete request to the caller's handler
(the exporter's passes scrapes to worker threads; the proxy answers in the loop). A connection
that waits costs no thread, so slow or idle clients cannot pin a server: a request head must
arrive within a deadline (slowloris), a kept connection is closed after an idle time, an answer
must leave within a deadline (a client that pipelines requests and never reads), heads and
header counts are bounded, and at most `max_connections` are open, `max_connections_per_address`
of them from one address. At a cap a connection no handler is answering is closed to make room
(one that pipelined requests first, then one stuck writing, waiting for a request, queued for a
worker), so neither a flood of idle sockets nor of non-readers can lock Prometheus out, even
from its own address; only when every connection is being answered does a newcomer get a 503.
Optional HTTPS (the handshake under the same deadline); every response carries security headers.
"""

import asyncio
import collections
import contextlib
import http.client
import io
import logging
import resource
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from redkeep.config.defaults import ExporterDefaults

MAX_HEAD_BYTES = 16 * 1024  # request line and headers; Prometheus sends about 300 bytes
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Why connections were closed by the server (a series each, from the start).
CLOSE_REASONS = (
    "header_timeout",  # a request head did not arrive in time (slowloris)
    "idle_timeout",  # a kept connection sent no new request
    "write_timeout",  # an answer did not leave in time: the client does not read
    "evicted",  # closed to make room at the connection cap
    "over_capacity",  # refused at the cap: every connection was busy
    "bad_request",  # not HTTP we serve: garbage, a body, a TLS handshake that failed
    "too_large",  # request head over MAX_HEAD_BYTES or too many headers
)
_DEFAULTS = ExporterDefaults()  # the exporter's settings; the proxy's /metrics has the same


@dataclass(frozen=True)
class Limits:
    header_timeout: float = _DEFAULTS.http_header_timeout_seconds
    idle_timeout: float = _DEFAULTS.http_idle_timeout_seconds
    write_timeout: float = _DEFAULTS.http_write_timeout_seconds
    max_connections: int = _DEFAULTS.http_max_connections
    max_connections_per_address: int = _DEFAULTS.http_max_connections_per_address


@dataclass
class ConnectionStats:
    """What a server's self-metrics say about its connections."""

    open: int = 0
    closed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLOSE_REASONS, 0))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: http.client.HTTPMessage
    keep_alive: bool
    peer: str = ""


@dataclass
class Response:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    extra: dict[str, str] = field(default_factory=dict)


class BadRequest(Exception):
    """A request head we will not serve; `status` is the answer, then the connection closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    """`GET /path?query HTTP/1.1` -> its three parts; BadRequest for anything else."""
    try:
        method, target, version = line.decode("ascii").rstrip("\r\n").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "bad_request") from None
    if version not in ("HTTP/1.0", "HTTP/1.1") or not target.startswith("/") or not method:
        raise BadRequest(400, "bad_request")
    return method, target, version


def parse_head(head: bytes, peer: str = "") -> Request:
    """A request line and its headers (up to the blank line) -> Request, or BadRequest."""
    line, _, rest = head.partition(b"\r\n")
    method, target, version = parse_request_line(line)
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException:  # more than 100 headers, or a line over 64 KiB
        raise BadRequest(431, "too_large") from None
    if headers.defects:
        raise BadRequest(400, "bad_request")
    if headers.get("Content-Length", "0").strip() != "0" or "Transfer-Encoding" in headers:
        raise BadRequest(400, "bad_request")  # no route takes a body: refuse to guess its end
    connection = headers.get("Connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    url = urlsplit(target)
    return Request(method, url.path, parse_qs(url.query), headers, keep_alive, peer)


def render_response(
    response: Response, keep_alive: bool, tls: bool, server: str, head: bool = False
) -> bytes:
    """The answer's bytes; the answer to a HEAD request has its headers only."""
    data = response.body.encode()
    status = HTTPStatus(response.status)
    headers = {
        "Server": server,
        "Date": formatdate(usegmt=True),
        "Content-Type": response.content_type,
        "Content-Length": str(len(data)),
        **HEADERS,
        **({"Strict-Transport-Security": "max-age=31536000"} if tls else {}),
        **response.extra,
    }
    if not keep_alive:
        headers["Connection"] = "close"
    text = f"HTTP/1.1 {status.value} {status.phrase}\r\n"
    text += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (text + "\r\n").encode("latin-1") + (b"" if head else data)


# What a connection is doing. At a cap one makes room in this order (longest in its state
# first), after any that has sent requests ahead (pipelined: Prometheus never does, a flood of
# non-readers does); one a handler is answering (WORKING) is never closed.
WRITING = "writing"  # its answer waits for the client to read
READING = "reading"  # waits for a request: idle, or its head is arriving
QUEUED = "queued"  # its request waits for a worker: nothing spent on it yet
WORKING = "working"
EVICTION_ORDER = (WRITING, READING, QUEUED)


class _Reader(asyncio.StreamReader):
    """A StreamReader that counts what it was given: bytes beyond the requests read so far
    are requests the client sent ahead."""

    received = 0

    def feed_data(self, data: bytes) -> None:
        self.received += len(data)
        super().feed_data(data)


@dataclass(eq=False)
class Connection:
    """One client connection, as the eviction order sees it. A handler that hands its request
    to another thread marks it QUEUED, then WORKING when that thread starts on it."""

    writer: asyncio.StreamWriter
    reader: _Reader
    address: str  # the client's IP address, for the per-address cap
    state: str = READING
    since: float = field(default_factory=time.monotonic)  # when it entered `state`
    consumed: int = 0  # bytes of the requests read so far
    evicted: bool = False

    def enter(self, state: str) -> None:
        self.state, self.since = state, time.monotonic()

    @property
    def sent_ahead(self) -> bool:
        """Whether more requests wait behind the one being answered."""
        return self.state != READING and self.reader.received > self.consumed


# Answers one request; None when there is nothing to send (the connection was evicted).
Handler = Callable[[Request, Connection], Awaitable[Response | None]]


class HTTPServer:
    """HTTP(S) on the running loop: `await start(...)` returns the listening asyncio.Server."""

    def __init__(
        self,
        handler: Handler,
        server: str,
        limits: Limits = Limits(),
        tls: ssl.SSLContext | None = None,
        stats: ConnectionStats | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.handler = handler
        self.server = server  # the Server header
        self.limits = limits
        self.tls = tls
        self.stats = stats if stats is not None else ConnectionStats()
        self.log = log or logging.getLogger("redkeep.http")
        self._connections: dict[asyncio.StreamWriter, Connection] = {}

    async def start(
        self, host: str | None = None, port: int | None = None, sock=None
    ) -> asyncio.Server:
        """Listen on `host`:`port` (every address the name has), or on a bound `sock`."""

        def protocol() -> asyncio.StreamReaderProtocol:  # as asyncio.start_server makes it
            return asyncio.StreamReaderProtocol(_Reader(MAX_HEAD_BYTES), self._connected)

        loop = asyncio.get_running_loop()
        return await loop.create_server(protocol, host, port, sock=sock, backlog=128)

    async def _connected(self, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(writer, reader, _address(writer))
        if not self._admit(connection):
            return
        try:
            if self.tls is not None and not await self._handshake(writer, connection):
                return
            # drain() then waits until the kernel holds the whole answer: the write timeout
            # counts from the moment the client stops reading, not from when our buffer fills.
            writer.transport.set_write_buffer_limits(high=0)
            await self._requests(reader, writer, connection)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, TimeoutError):
            pass  # the client went away or was evicted
        except asyncio.CancelledError:
            # The server stops (SIGTERM) with this connection open: drop it and end quietly.
            # Raised on, Python 3.11's streams print it as a traceback (3.12 does not).
            writer.transport.abort()
        finally:
            self._connections.pop(writer, None)
            self.stats.open = len(self._connections)
            await self._close(writer)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Send what is still buffered (a last answer), then close; abort a stuck reader."""
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.limits.write_timeout)
        except (OSError, TimeoutError):
            writer.transport.abort()

    async def _handshake(self, writer: asyncio.StreamWriter, connection: Connection) -> bool:
        """TLS under the header deadline, in the loop: a stalled handshake pins no thread."""
        try:
            await writer.start_tls(self.tls, ssl_handshake_timeout=self.limits.header_timeout)
        except ssl.SSLError:
            self._count("bad_request")
            return False
        except (ConnectionAbortedError, TimeoutError):  # asyncio's handshake timeout
            if not connection.evicted:
                self._count("header_timeout")
            return False
        return True

    def _admit(self, connection: Connection) -> bool:
        """Room for one more connection: at a cap close one no handler is answering, or refuse.

        At the per-address cap the room comes from the newcomer's own address; at the overall
        cap from the address that holds the most.
        """
        connections = list(self._connections.values())
        same = [c for c in connections if c.address == connection.address]
        pool: list[Connection] | None = None
        held = None
        if len(same) >= self.limits.max_connections_per_address:
            pool = same
        elif len(connections) >= self.limits.max_connections:
            pool, held = connections, collections.Counter(c.address for c in connections)
        if pool is not None:
            victim = _victim(pool, held)
            if victim is None:
                self._count("over_capacity")
                if self.tls is None:
                    refusal = Response(503, "too many connections\n", extra={"Retry-After": "1"})
                    connection.writer.write(render_response(refusal, False, False, self.server))
                connection.writer.close()
                return False
            victim.evicted = True
            self._count("evicted")
            # Out of the count now, not when its task next runs: a flood of connects is accepted
            # in batches, and the same one must not be "evicted" again to admit each of them.
            del self._connections[victim.writer]
            victim.writer.transport.abort()
        self._connections[connection.writer] = connection
        self.stats.open = len(self._connections)
        return True

    async def _requests(
        self, reader: _Reader, writer: asyncio.StreamWriter, connection: Connection
    ) -> None:
        limits = self.limits
        peer = _peer(writer)
        first = True
        while True:
            connection.enter(READING)
            # The first byte may take the idle time on a kept connection; once a request has
            # begun, its whole head must arrive within the header deadline.
            try:
                async with asyncio.timeout(limits.header_timeout if first else limits.idle_timeout):
                    start = await reader.readexactly(1)
            except TimeoutError:
                self._count("header_timeout" if first else "idle_timeout")
                return
            first = False
            try:
                async with asyncio.timeout(limits.header_timeout):
                    head = await _read_head(reader, start)
                    connection.consumed += len(head)
                    request = parse_head(head, peer)
            except TimeoutError:
                self._count("header_timeout")
                return
            except asyncio.LimitOverrunError:
                await self._refuse(writer, BadRequest(431, "too_large"))
                return
            except BadRequest as refusal:
                await self._refuse(writer, refusal)
                return
            response = await self._answer(request, connection)
            if response is None or connection.evicted:
                return
            connection.enter(WRITING)
            head_only = request.method == "HEAD"
            tls = self.tls is not None
            writer.write(render_response(response, request.keep_alive, tls, self.server, head_only))
            if not await self._drain(writer):
                return
            if not request.keep_alive:
                return

    async def _answer(self, request: Request, connection: Connection) -> Response | None:
        try:
            response = await self.handler(request, connection)
        except Exception as error:  # noqa: BLE001 - one broken request, not a dead server
            self.log.warning("request %s failed: %r", request.path, error)
            response = Response(500, "internal error\n")
        if response is not None:
            status = response.status
            self.log.debug('%s "%s %s" %d', request.peer, request.method, request.path, status)
        return response

    async def _drain(self, writer: asyncio.StreamWriter) -> bool:
        """Wait until the kernel holds everything written; False (and the connection aborted)
        if the client has not read enough for that within the write timeout."""
        try:
            async with asyncio.timeout(self.limits.write_timeout):
                await writer.drain()
        except TimeoutError:
            self._count("write_timeout")
            writer.transport.abort()  # what is still buffered will never be read
            return False
        return True

    async def _refuse(self, writer: asyncio.StreamWriter, refusal: BadRequest) -> None:
        self._count(refusal.reason)
        response = Response(refusal.status, f"{HTTPStatus(refusal.status).phrase}\n")
        writer.write(render_response(response, False, self.tls is not None, self.server))
        await self._drain(writer)

    def _count(self, reason: str) -> None:
        self.stats.closed[reason] += 1


async def _read_head(reader: asyncio.StreamReader, start: bytes) -> bytes:
    """The request line, checked as soon as it is in (a first byte that cannot start a method,
    such as RESP or a TLS handshake, at once), then the headers up to the blank line."""
    if not (start.isalpha() and start.isupper()):
        raise BadRequest(400, "bad_request")
    line = start + await reader.readuntil(b"\r\n")
    parse_request_line(line)
    after = await reader.readexactly(2)
    if after == b"\r\n":
        return line + after  # no headers
    head = line + after + await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise BadRequest(431, "too_large")
    return head


def raise_open_files_limit() -> int:
    """Soft open-files limit up to the hard one (as Go programs do); the soft limit now.

    A flood of connects is accepted in batches before a cap closes them, and at a soft limit of
    1024 a listener would stop accepting for a second at a time.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _victim(
    connections: list[Connection], held: Mapping[str, int] | None = None
) -> Connection | None:
    """The connection to close to make room (None: every one is being answered).

    With `held` (connections per address), the busiest address gives first.
    """
    candidates = [c for c in connections if c.state != WORKING]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda c: (
            -(held[c.address] if held else 0),
            not c.sent_ahead,
            EVICTION_ORDER.index(c.state),
            c.since,
        ),
    )


def _address(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "")


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
