"""The exporter's HTTP endpoint: /metrics, /scrape?target=, /health and a status page at /.

One asyncio loop owns every connection and reads request heads; a complete request goes to a
few worker threads, which scrape. A connection that waits costs no thread, so slow or idle
clients cannot pin the exporter: a request head must arrive within a deadline (slowloris), a
kept connection is closed after an idle time, an answer must leave within a deadline (a client
that pipelines requests and never reads), heads and header counts are bounded, and at most
`max_connections` are open, `max_connections_per_address` of them from one address. At a cap a
connection no worker is answering is closed to make room (one that pipelined requests first,
then one stuck writing, waiting for a request, queued for a worker), so neither a flood of idle
sockets nor of non-readers can lock Prometheus out, even from its own address; only when every
connection is being answered does a newcomer get a 503. /health is answered in the loop
itself: it shows the loop is alive.

Binds to localhost unless told otherwise; optional HTTPS (TLS 1.2+, handshake under the same
deadline) and basic auth; every response carries security headers. Prometheus's scrape timeout
header sets each scrape's deadline, so a slow Redis yields a partial answer, not a timed-out
scrape.
"""

import asyncio
import collections
import contextlib
import hmac
import html
import http.client
import io
import logging
import resource
import socket
import ssl
import threading
import time
from base64 import b64decode
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from redkeep import __version__
from redkeep.config import defaults
from redkeep.exporter.exposition import CONTENT_TYPE, counter, gauge, render
from redkeep.exporter.scrape import Scraper
from redkeep.exporter.targets import key_of, lookup
from redkeep.redis.target import Target

LOG = logging.getLogger("redkeep.exporter")
DEFAULT_TIMEOUT = 10.0
MARGIN = 0.25  # answer a little before Prometheus gives up
MAX_HEAD_BYTES = 16 * 1024  # request line and headers; Prometheus sends about 300 bytes
WORKERS = 4  # threads that answer requests; scrapes of one target take turns anyway
SERVER = f"redkeep-exporter/{__version__}"
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Why connections were closed by the exporter (a series each, from the start).
CLOSE_REASONS = (
    "header_timeout",  # a request head did not arrive in time (slowloris)
    "idle_timeout",  # a kept connection sent no new request
    "write_timeout",  # an answer did not leave in time: the client does not read
    "evicted",  # closed to make room at the connection cap
    "over_capacity",  # refused at the cap: every connection was busy
    "bad_request",  # not HTTP we serve: garbage, a body, a TLS handshake that failed
    "too_large",  # request head over MAX_HEAD_BYTES or too many headers
)


_DEFAULTS = defaults.ExporterDefaults()


@dataclass(frozen=True)
class Limits:
    header_timeout: float = _DEFAULTS.http_header_timeout_seconds
    idle_timeout: float = _DEFAULTS.http_idle_timeout_seconds
    write_timeout: float = _DEFAULTS.http_write_timeout_seconds
    max_connections: int = _DEFAULTS.http_max_connections
    max_connections_per_address: int = _DEFAULTS.http_max_connections_per_address


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


@dataclass
class Endpoint:
    main: Scraper | None
    allowed: Mapping[str, Target]
    make_scraper: Callable[[Target], Scraper]
    basic_auth: tuple[str, str] | None = None
    tls: bool = False
    bad_requests: int = 0
    closed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLOSE_REASONS, 0))
    open_connections: int = 0
    _scrapers: dict[str, Scraper] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def scraper_for(self, target: Target) -> Scraper:
        with self._lock:
            key = key_of(target)
            if key not in self._scrapers:
                self._scrapers[key] = self.make_scraper(target)
            return self._scrapers[key]

    def respond(self, request: Request) -> Response:
        """The answer to one request (runs in a worker thread: a scrape blocks)."""
        if not self._authorized(request.headers):
            return Response(
                401, "unauthorized\n", extra={"WWW-Authenticate": 'Basic realm="redkeep"'}
            )
        if request.method != "GET":
            return Response(405, "only GET\n", extra={"Allow": "GET"})
        routes = {"/metrics": self._metrics, "/scrape": self._scrape, "/health": self._health}
        route = routes.get(request.path, self._index if request.path == "/" else None)
        if route is None:
            return Response(404, "not found\n")
        return route(request)

    def _authorized(self, headers: http.client.HTTPMessage) -> bool:
        expected = self.basic_auth
        if expected is None:
            return True
        header = headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        same_user = hmac.compare_digest(user.encode(), expected[0].encode())
        same_password = hmac.compare_digest(password.encode(), expected[1].encode())
        return same_user and same_password

    def _metrics(self, request: Request) -> Response:
        if self.main is None:
            return Response(404, "no main target: use /scrape?target=\n")
        body = self.main.scrape(_timeout(request.headers))
        return Response(200, body + self._http_metrics(), CONTENT_TYPE)

    def _http_metrics(self) -> str:
        closed = counter(
            "redkeep_exporter_http_closed_connections_total",
            "Connections the exporter closed, by reason",
        )
        for reason, count in self.closed.items():
            closed.add(count, {"reason": reason})
        return render(
            [
                counter(
                    "redis_target_scrape_request_errors_total",
                    "Refused /scrape requests",
                    self.bad_requests,
                ),
                gauge(
                    "redkeep_exporter_http_connections",
                    "Open HTTP connections",
                    self.open_connections,
                ),
                closed,
            ]
        )

    def _scrape(self, request: Request) -> Response:
        requested = (request.query.get("target") or [""])[0]
        target = lookup(self.allowed, requested) if requested else None
        if target is None:
            self.bad_requests += 1
            reason = "no target=" if not requested else "target is not in exporter.targets"
            return Response(403 if requested else 400, f"{reason}\n")
        body = self.scraper_for(target).scrape(_timeout(request.headers))
        return Response(200, body, CONTENT_TYPE)

    def _health(self, request: Request) -> Response:
        return Response(200, "ok\n")

    def _index(self, request: Request) -> Response:
        main = self.main
        rows = ""
        if main is not None:
            stats = main.stats
            rows += f"<tr><td>target</td><td>{html.escape(main.target.display_url)}</td></tr>"
            rows += f"<tr><td>scrapes</td><td>{stats.scrapes}</td></tr>"
            rows += (
                f"<tr><td>last error</td><td>{html.escape(stats.last_error or 'none')}</td></tr>"
            )
            for name, ok in sorted(stats.collector_ok.items()):
                state = "off (NOPERM)" if name in main.disabled else ("ok" if ok else "failed")
                rows += f"<tr><td>collector {html.escape(name)}</td><td>{state}</td></tr>"
        rows += f"<tr><td>/scrape targets</td><td>{len(self.allowed)}</td></tr>"
        page = (
            "<!doctype html><html><head><title>redkeep exporter</title></head><body>"
            f"<h1>redkeep exporter {__version__}</h1><table>{rows}</table>"
            '<p><a href="/metrics">/metrics</a></p></body></html>'
        )
        return Response(200, page, "text/html; charset=utf-8")


def _timeout(headers: http.client.HTTPMessage) -> float:
    raw = headers.get("X-Prometheus-Scrape-Timeout-Seconds")
    try:
        return max(0.2, float(raw) - MARGIN) if raw else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT


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


def render_response(response: Response, keep_alive: bool, tls: bool) -> bytes:
    data = response.body.encode()
    status = HTTPStatus(response.status)
    headers = {
        "Server": SERVER,
        "Date": formatdate(usegmt=True),
        "Content-Type": response.content_type,
        "Content-Length": str(len(data)),
        **HEADERS,
        **({"Strict-Transport-Security": "max-age=31536000"} if tls else {}),
        **response.extra,
    }
    if not keep_alive:
        headers["Connection"] = "close"
    head = f"HTTP/1.1 {status.value} {status.phrase}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode("latin-1") + data


# What a connection is doing. At a cap one makes room in this order (longest in its state
# first), after any that has sent requests ahead (pipelined: Prometheus never does, a flood of
# non-readers does); one a worker is answering (WORKING) is never closed.
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
class _Connection:
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


class ExporterServer:
    """The HTTP(S) server on a bound socket: `serve_forever()`, then `server_close()`."""

    def __init__(
        self,
        endpoint: Endpoint,
        sock: socket.socket,
        tls: ssl.SSLContext | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self.endpoint = endpoint
        self.socket = sock
        self.tls = tls
        self.limits = limits
        self._connections: dict[asyncio.StreamWriter, _Connection] = {}
        self._workers: ThreadPoolExecutor | None = None

    def serve_forever(self) -> None:
        _raise_open_files_limit()
        asyncio.run(self._serve())

    def server_close(self) -> None:
        self.socket.close()

    async def _serve(self) -> None:
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="redkeep-http")
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:  # as asyncio.start_server makes it
            return asyncio.StreamReaderProtocol(_Reader(MAX_HEAD_BYTES), self._connected)

        server = await loop.create_server(protocol, sock=self.socket)
        try:
            async with server:
                await server.serve_forever()
        finally:
            self._workers.shutdown(wait=False, cancel_futures=True)

    async def _connected(self, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer, reader, _address(writer))
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
        finally:
            self._connections.pop(writer, None)
            self.endpoint.open_connections = len(self._connections)
            await self._close(writer)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Send what is still buffered (a last answer), then close; abort a stuck reader."""
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.limits.write_timeout)
        except (OSError, TimeoutError):
            writer.transport.abort()

    async def _handshake(self, writer: asyncio.StreamWriter, connection: _Connection) -> bool:
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

    def _admit(self, connection: _Connection) -> bool:
        """Room for one more connection: at a cap close one no worker is answering, or refuse.

        At the per-address cap the room comes from the newcomer's own address; at the overall
        cap from the address that holds the most.
        """
        connections = list(self._connections.values())
        same = [c for c in connections if c.address == connection.address]
        pool: list[_Connection] | None = None
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
                    connection.writer.write(render_response(refusal, False, False))
                connection.writer.close()
                return False
            victim.evicted = True
            self._count("evicted")
            # Out of the count now, not when its task next runs: a flood of connects is accepted
            # in batches, and the same one must not be "evicted" again to admit each of them.
            del self._connections[victim.writer]
            victim.writer.transport.abort()
        self._connections[connection.writer] = connection
        self.endpoint.open_connections = len(self._connections)
        return True

    async def _requests(
        self, reader: _Reader, writer: asyncio.StreamWriter, connection: _Connection
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
            if request.path == "/health":  # no scrape: answered here, without a worker
                response = self._respond(request, connection)
            else:
                connection.enter(QUEUED)
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(
                    self._workers, self._respond, request, connection
                )
            if response is None or connection.evicted:
                return
            connection.enter(WRITING)
            writer.write(render_response(response, request.keep_alive, self.tls is not None))
            if not await self._drain(writer):
                return
            if not request.keep_alive:
                return

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

    def _respond(self, request: Request, connection: _Connection) -> Response | None:
        """Answer in a worker thread; None if the connection was evicted while queued."""
        if connection.evicted:
            return None
        connection.enter(WORKING)  # plain attribute stores: the loop only reads them
        try:
            response = self.endpoint.respond(request)
        except Exception as error:  # noqa: BLE001 - one broken request, not a dead exporter
            LOG.warning("request %s failed: %r", request.path, error)
            response = Response(500, "internal error\n")
        LOG.debug('%s "%s %s" %d', request.peer, request.method, request.path, response.status)
        return response

    async def _refuse(self, writer: asyncio.StreamWriter, refusal: BadRequest) -> None:
        self._count(refusal.reason)
        response = Response(refusal.status, f"{HTTPStatus(refusal.status).phrase}\n")
        writer.write(render_response(response, False, self.tls is not None))
        await self._drain(writer)

    def _count(self, reason: str) -> None:
        self.endpoint.closed[reason] += 1


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


def _raise_open_files_limit() -> None:
    """Soft open-files limit up to the hard one (as Go raises it for redis_exporter): a flood
    of connects is accepted in batches before the cap closes them, and at a soft limit of 1024
    the listener would stop accepting for a second at a time."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _victim(
    connections: list[_Connection], held: Mapping[str, int] | None = None
) -> _Connection | None:
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


def make_server(
    endpoint: Endpoint,
    host: str,
    port: int,
    tls_files: tuple[Path, Path] | None = None,
    limits: Limits = Limits(),
) -> ExporterServer:
    """The HTTP(S) server, bound (so a taken port fails here) and ready for `serve_forever()`."""
    tls = None
    if tls_files is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
    sock = socket.create_server((host, port), family=_family(host), backlog=128)
    return ExporterServer(endpoint, sock, tls, limits)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
