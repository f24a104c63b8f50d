"""The exporter's HTTP endpoint: /metrics, /scrape?target=, /discover-cluster-nodes, /health
and a status page at /.

The server is `httpserver.py` (one asyncio loop owns every connection; timeouts, connection
caps, eviction); a complete request goes to a few worker threads, which scrape, so a connection
that waits costs no thread. /health is answered in the loop itself: it shows the loop is alive.

Binds to localhost unless told otherwise; optional HTTPS (TLS 1.2+, handshake under the header
deadline) and basic auth. Prometheus's scrape timeout header sets each scrape's deadline, so a
slow Redis yields a partial answer, not a timed-out scrape.
"""

import asyncio
import hmac
import http.client
import logging
import socket
import ssl
import threading
from base64 import b64decode
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from redkeep import __version__
from redkeep.errors import RedkeepError
from redkeep.exporter.deployment_metrics import DeploymentMetrics
from redkeep.exporter.discovery import NodeDiscovery
from redkeep.exporter.exposition import CONTENT_TYPE, counter, gauge, render
from redkeep.exporter.scrape import Scraper
from redkeep.exporter.targets import key_of, lookup
from redkeep.httpserver import (
    QUEUED,
    WORKING,
    Connection,
    ConnectionStats,
    HTTPServer,
    Limits,
    Request,
    Response,
    raise_open_files_limit,
)
from redkeep.redis.target import Target
from redkeep.signals import stop_on_signals

__all__ = ["Endpoint", "ExporterServer", "Limits", "make_server"]

LOG = logging.getLogger("redkeep.exporter")
DEFAULT_TIMEOUT = 10.0
MARGIN = 0.25  # answer a little before Prometheus gives up
WORKERS = 4  # threads that answer requests; scrapes of one target take turns anyway
SERVER = f"redkeep-exporter/{__version__}"
DEFAULT_LIMITS = Limits()


@dataclass
class Endpoint:
    main: Scraper | None
    allowed: Mapping[str, Target]
    make_scraper: Callable[[Target], Scraper]
    basic_auth: tuple[str, str] | None = None
    tls: bool = False
    discovery: NodeDiscovery | None = None  # a deployment's nodes, for Prometheus http_sd
    deployment: DeploymentMetrics | None = None  # /metrics without a main node
    bad_requests: int = 0
    connections: ConnectionStats = field(default_factory=ConnectionStats)  # the server counts
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
        routes = {
            "/metrics": self._metrics,
            "/scrape": self._scrape,
            "/discover-cluster-nodes": self._discover,
            "/health": self._health,
        }
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
        if self.main is None and self.deployment is not None:  # a Sentinel or cluster bundle
            body = self.deployment.scrape(_timeout(request.headers))
            return Response(200, body + self._http_metrics(), CONTENT_TYPE)
        if self.main is None:
            return Response(404, "no main target: use /scrape?target=\n")
        body = self.main.scrape(_timeout(request.headers))
        return Response(200, body + self._http_metrics(), CONTENT_TYPE)

    def _http_metrics(self) -> str:
        closed = counter(
            "redkeep_exporter_http_closed_connections_total",
            "Connections the exporter closed, by reason",
        )
        for reason, count in self.connections.closed.items():
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
                    self.connections.open,
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

    def _discover(self, request: Request) -> Response:
        if self.discovery is None:
            return Response(404, "no deployment to discover: run in a bundle or give --url\n")
        try:
            return Response(200, self.discovery.http_sd(), "application/json")
        except RedkeepError as error:
            LOG.warning("discovery failed: %s", error)
            return Response(503, "discovery failed: no node of the deployment answered\n")

    def _health(self, request: Request) -> Response:
        return Response(200, "ok\n")

    def _index(self, request: Request) -> Response:
        import html  # noqa: PLC0415 - only this page needs it (and its table of entities)

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


class ExporterServer:
    """The HTTP(S) server on a bound socket: `serve_forever()`, then `server_close()`."""

    def __init__(
        self,
        endpoint: Endpoint,
        sock: socket.socket,
        tls: ssl.SSLContext | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.endpoint = endpoint
        self.socket = sock
        self.http = HTTPServer(self._handle, SERVER, limits, tls, endpoint.connections, LOG)
        self._workers: ThreadPoolExecutor | None = None

    def serve_forever(self) -> None:
        raise_open_files_limit()
        asyncio.run(self._serve())

    def server_close(self) -> None:
        self.socket.close()

    async def _serve(self) -> None:
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="redkeep-http")
        server = await self.http.start(sock=self.socket)
        stop = asyncio.Event()
        try:
            async with server:  # SIGTERM/SIGINT/SIGHUP: stop listening, return, exit 0
                with stop_on_signals(asyncio.get_running_loop(), stop.set):
                    await stop.wait()
        finally:
            self._workers.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, request: Request, connection: Connection) -> Response | None:
        if request.path == "/health":  # no scrape: answered here, without a worker
            return self.endpoint.respond(request)
        connection.enter(QUEUED)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers, self._work, request, connection)

    def _work(self, request: Request, connection: Connection) -> Response | None:
        """Answer in a worker thread; None if the connection was evicted while queued."""
        if connection.evicted:
            return None
        connection.enter(WORKING)  # plain attribute stores: the loop only reads them
        return self.endpoint.respond(request)


def make_server(
    endpoint: Endpoint,
    host: str,
    port: int,
    tls_files: tuple[Path, Path] | None = None,
    limits: Limits = DEFAULT_LIMITS,
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
