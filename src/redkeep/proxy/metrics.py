"""The proxy's Prometheus metrics: plain counters, turned into families at scrape time.

The data path only does `+= 1` on ints (a labelled prometheus_client counter would cost more
than the request it counts); connections still open are summed in when /metrics is read.
"""

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from redkeep import __version__
from redkeep.exporter.exposition import CONTENT_TYPE, Family, counter, gauge, render
from redkeep.httpserver import Connection, HTTPServer, Request, Response
from redkeep.proxy.config import address_text
from redkeep.proxy.records import ConnectionRecord

if TYPE_CHECKING:
    from redkeep.proxy.server import Proxy

SERVER = f"redkeep-proxy/{__version__}"
STATUS_PAGE = '<html><body><h1>redkeep proxy</h1><a href="/metrics">metrics</a></body></html>\n'


# Labels that exist from the start (at 0), so rates and alerts have a series before the first
# refusal or error.
REFUSAL_REASONS = (
    "denied",
    "not_allowed",
    "max_conns",
    "max_conns_per_ip",
    "conn_rate",
    "tls",
    "no_descriptors",
)
COMMAND_REFUSALS = ("command", "rate")
UPSTREAM_ERRORS = ("connect", "connect_timeout", "tls", "reset", "no_primary")


class Counters:
    def __init__(self) -> None:
        self.started = time.time()
        self.accepted = 0
        self.refused: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        self.commands_refused: dict[str, int] = dict.fromkeys(COMMAND_REFUSALS, 0)
        self.upstream_errors: dict[str, int] = dict.fromkeys(UPSTREAM_ERRORS, 0)
        self.protocol_errors = 0
        self.idle_closed = 0
        self.reloads = 0
        self.reload_failures = 0
        self.probes = 0  # times Redis was asked whether it needs AUTH
        self.log_reopen_failures = 0
        self.upstream_switches = 0  # the primary moved (Sentinel)
        # Of connections that have ended; open ones are added at scrape time.
        self.commands = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def count_refused(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def count_refused_command(self, reason: str) -> None:
        self.commands_refused[reason] = self.commands_refused.get(reason, 0) + 1

    def count_upstream_error(self, kind: str) -> None:
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1

    def connection_ended(self, record: ConnectionRecord) -> None:
        self.bytes_in += record.bytes_in
        self.bytes_out += record.bytes_out
        self.commands += record.commands or 0


def families(proxy: "Proxy") -> list[Family]:
    counters = proxy.counters
    live = proxy.live_totals()
    commands = counters.commands + live.commands
    bytes_in = counters.bytes_in + live.bytes_in
    bytes_out = counters.bytes_out + live.bytes_out

    def labelled(name: str, help_text: str, label: str, values: dict[str, int]) -> Family:
        family = counter(name, help_text)
        for key, value in sorted(values.items()):
            family.add(value, {label: key})
        return family

    scanning = proxy.policy.scans_requests
    result = [
        gauge("redkeep_proxy_up", "1 while the proxy runs.", 1),
        gauge("redkeep_proxy_start_time_seconds", "When the proxy started.", counters.started),
        counter(
            "redkeep_proxy_connections_accepted_total",
            "Client connections admitted by the policy.",
            counters.accepted,
        ),
        labelled(
            "redkeep_proxy_connections_refused_total",
            "Client connections refused, by reason (denied, not_allowed, max_conns, "
            "max_conns_per_ip, conn_rate, tls, no_descriptors: the proxy ran out of files).",
            "reason",
            counters.refused,
        ),
        gauge("redkeep_proxy_connections_active", "Client connections open now.", live.connections),
        gauge(
            "redkeep_proxy_request_scanning",
            "1 when requests are parsed (command policy, rate limit), 0 in pass-through.",
            int(scanning),
        ),
        labelled(
            "redkeep_proxy_commands_refused_total",
            "Commands answered with an error instead of being run, by reason (command, rate).",
            "reason",
            counters.commands_refused,
        ),
        counter("redkeep_proxy_received_bytes_total", "Bytes received from clients.", bytes_in),
        counter("redkeep_proxy_sent_bytes_total", "Bytes sent to clients.", bytes_out),
        labelled(
            "redkeep_proxy_upstream_errors_total",
            "Failures towards Redis, by kind (connect, connect_timeout, tls, reset, "
            "no_primary: the Sentinels named no primary that answers as one).",
            "kind",
            counters.upstream_errors,
        ),
        counter(
            "redkeep_proxy_protocol_errors_total",
            "Connections closed for a request Redis would refuse (malformed or oversized).",
            counters.protocol_errors,
        ),
        counter(
            "redkeep_proxy_idle_closed_total",
            "Connections closed by an idle timeout.",
            counters.idle_closed,
        ),
        counter("redkeep_proxy_reloads_total", "Policy reloads (SIGHUP).", counters.reloads),
        counter(
            "redkeep_proxy_log_write_failures_total",
            "Access log lines that could not be written (disk full, file gone).",
            proxy.access_log.failures,
        ),
        counter(
            "redkeep_proxy_reload_failures_total",
            "Reloads refused because the new configuration was invalid.",
            counters.reload_failures,
        ),
        counter(
            "redkeep_proxy_log_reopen_failures_total",
            "Reloads that could not reopen the access log (the old file is still written).",
            counters.log_reopen_failures,
        ),
    ]
    if scanning:
        result.append(
            counter("redkeep_proxy_commands_total", "Commands received from clients.", commands)
        )
    if proxy.upstream is not None:
        info = gauge("redkeep_proxy_upstream_info", "The server new connections go to.", None)
        info.add(1, {"address": address_text(proxy.upstream)})
        result.append(info)
    if proxy.follower is not None:
        follower = proxy.follower
        result += [
            counter(
                "redkeep_proxy_upstream_switches_total",
                "Times the primary moved (Sentinel) and the proxy followed.",
                counters.upstream_switches,
            ),
            counter(
                "redkeep_proxy_sentinel_rounds_total",
                "Rounds of asking the Sentinels for the primary (start, reload, switch, poll).",
                follower.rounds,
            ),
            gauge(
                "redkeep_proxy_sentinel_rounds_since_reload",
                "Rounds of asking the Sentinels begun since the last reload (SIGHUP) and ended.",
                follower.rounds_since_update,
            ),
            gauge(
                "redkeep_proxy_sentinels_answering",
                "Sentinels that answered the last time they were asked.",
                follower.reached,
            ),
            gauge(
                "redkeep_proxy_sentinels_subscribed",
                "Sentinels the proxy hears +switch-master from.",
                len(follower.subscribed),
            ),
            gauge(
                "redkeep_proxy_primary_known",
                "1 when the Sentinels' majority names a server that answers as a primary.",
                int(follower.current is not None),
            ),
        ]
    if proxy.upstream_auth is not None:
        result.append(
            gauge(
                "redkeep_proxy_upstream_requires_auth",
                "1 when Redis makes new connections log in (the pre-AUTH caps apply), else 0.",
                int(proxy.upstream_auth),
            )
        )
    return result


def respond(proxy: "Proxy", request: Request) -> Response:
    """GET (or HEAD) /metrics, and / pointing at it."""
    if request.method not in ("GET", "HEAD"):
        return Response(405, "GET only\n", extra={"Allow": "GET, HEAD"})
    if request.path == "/metrics":
        return Response(200, render(families(proxy)), CONTENT_TYPE)
    if request.path == "/":
        return Response(200, STATUS_PAGE, "text/html; charset=utf-8")
    return Response(404, "not found\n")


async def serve_metrics(proxy: "Proxy", host: str, port: int) -> asyncio.Server:
    """The metrics endpoint on the proxy's loop, answered there (rendering is quick), with the
    exporter's HTTP limits: header, idle and write timeouts, connection caps."""

    async def handle(request: Request, connection: Connection) -> Response:
        return respond(proxy, request)

    server = HTTPServer(handle, SERVER, log=logging.getLogger("redkeep.proxy"))
    return await server.start(host, port)
