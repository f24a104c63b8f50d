"""The exporter's HTTP endpoint: /metrics, /scrape?target=, /health and a status page at /.

Binds to localhost unless told otherwise; optional HTTPS (TLS 1.2+) and basic auth; every
response carries security headers. Prometheus's scrape timeout header sets each scrape's
deadline, so a slow Redis yields a partial answer, not a timed-out scrape.
"""

import hmac
import html
import logging
import socket
import ssl
import threading
from base64 import b64decode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from redkeep import __version__
from redkeep.endpoint import Target
from redkeep.exporter.exposition import CONTENT_TYPE
from redkeep.exporter.scrape import Scraper
from redkeep.exporter.targets import key_of, lookup

LOG = logging.getLogger("redkeep.exporter")
DEFAULT_TIMEOUT = 10.0
MARGIN = 0.25  # answer a little before Prometheus gives up
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Endpoint:
    main: Scraper | None
    allowed: Mapping[str, Target]
    make_scraper: Callable[[Target], Scraper]
    basic_auth: tuple[str, str] | None = None
    tls: bool = False
    bad_requests: int = 0
    _scrapers: dict[str, Scraper] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def scraper_for(self, target: Target) -> Scraper:
        with self._lock:
            key = key_of(target)
            if key not in self._scrapers:
                self._scrapers[key] = self.make_scraper(target)
            return self._scrapers[key]


class Handler(BaseHTTPRequestHandler):
    server_version = f"redkeep-exporter/{__version__}"
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection
    disable_nagle_algorithm = True  # no 40 ms wait for an ACK between writes
    wbufsize = 1 << 18  # headers and body leave in one write (flushed after each request)
    endpoint: Endpoint  # set on the subclass made by `serve`

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if not self._authorized():
            self._send(401, "unauthorized\n", extra={"WWW-Authenticate": 'Basic realm="redkeep"'})
            return
        url = urlsplit(self.path)
        routes = {"/metrics": self._metrics, "/scrape": self._scrape, "/health": self._health}
        route = routes.get(url.path, self._index if url.path == "/" else None)
        if route is None:
            self._send(404, "not found\n")
            return
        route(parse_qs(url.query))

    def _authorized(self) -> bool:
        expected = self.endpoint.basic_auth
        if expected is None:
            return True
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        same_user = hmac.compare_digest(user.encode(), expected[0].encode())
        same_password = hmac.compare_digest(password.encode(), expected[1].encode())
        return same_user and same_password

    def _timeout(self) -> float:
        raw = self.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
        try:
            return max(0.2, float(raw) - MARGIN) if raw else DEFAULT_TIMEOUT
        except ValueError:
            return DEFAULT_TIMEOUT

    def _metrics(self, query: dict) -> None:
        if self.endpoint.main is None:
            self._send(404, "no main target: use /scrape?target=\n")
            return
        body = self.endpoint.main.scrape(self._timeout())
        body += (
            "# HELP redis_target_scrape_request_errors_total Refused /scrape requests\n"
            "# TYPE redis_target_scrape_request_errors_total counter\n"
            f"redis_target_scrape_request_errors_total {self.endpoint.bad_requests}\n"
        )
        self._send(200, body, CONTENT_TYPE)

    def _scrape(self, query: dict) -> None:
        requested = (query.get("target") or [""])[0]
        target = lookup(self.endpoint.allowed, requested) if requested else None
        if target is None:
            self.endpoint.bad_requests += 1
            reason = "no target=" if not requested else "target is not in exporter.targets"
            self._send(403 if requested else 400, f"{reason}\n")
            return
        body = self.endpoint.scraper_for(target).scrape(self._timeout())
        self._send(200, body, CONTENT_TYPE)

    def _health(self, query: dict) -> None:
        self._send(200, "ok\n")

    def _index(self, query: dict) -> None:
        main = self.endpoint.main
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
        rows += f"<tr><td>/scrape targets</td><td>{len(self.endpoint.allowed)}</td></tr>"
        page = (
            "<!doctype html><html><head><title>redkeep exporter</title></head><body>"
            f"<h1>redkeep exporter {__version__}</h1><table>{rows}</table>"
            '<p><a href="/metrics">/metrics</a></p></body></html>'
        )
        self._send(200, page, "text/html; charset=utf-8")

    def _send(
        self,
        status: int,
        body: str,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        headers = dict(HEADERS)
        if self.endpoint.tls:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        for name, value in {**headers, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the http.server API
        LOG.debug("%s " + format, self.address_string(), *args)


def make_server(
    endpoint: Endpoint, host: str, port: int, tls_files: tuple[Path, Path] | None = None
) -> ThreadingHTTPServer:
    """The HTTP(S) server, bound and ready for `serve_forever()`."""
    handler = type("BoundHandler", (Handler,), {"endpoint": endpoint})
    family_host = host.strip("[]")
    server_class = type(
        "ExporterServer",
        (ThreadingHTTPServer,),
        {"address_family": _family(family_host), "daemon_threads": True},
    )
    server = server_class((family_host, port), handler)
    if tls_files is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
        # The handshake happens in the request's own thread, so a slow client cannot stall
        # the accept loop.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    return server


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
