"""One proxied connection: the client side, the Redis side, and what passes between them.

Each connection is a pair of asyncio Protocols. Flow control runs both ways: when one side's
write buffer fills, the other side stops reading. Client bytes that arrive while Redis is
still being connected are kept in a bounded buffer (uvloop does not honour pause_reading()
inside connection_made()). A session ends with an immutable record for the log and counters.
"""

import asyncio
import errno
import logging
import ssl
import time
from typing import TYPE_CHECKING

from redkeep.proxy.config import address_text
from redkeep.proxy.policy import Address
from redkeep.proxy.records import ConnectionRecord, RefusedCommand
from redkeep.proxy.resp import POISON, ProtocolViolation, RequestScanner

if TYPE_CHECKING:
    from redkeep.proxy.server import Proxy

log = logging.getLogger("redkeep.proxy")

PRECONNECT_LIMIT = 1024 * 1024  # client bytes kept while Redis is being connected
# Out of file descriptors (or kernel memory): accept() and connect() fail at once.
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Session:
    """One client connection and its connection to Redis."""

    def __init__(self, proxy: "Proxy", address: Address, peer: tuple, tls: bool) -> None:
        self.proxy = proxy
        self.address = address
        self.peer = peer
        self.started = time.time()
        self.early: list[bytes] = []
        self.early_bytes = 0
        self.bytes_in = 0  # from the client
        self.bytes_out = 0  # to the client
        self.closed_by = ""
        self.error = ""
        self.tls_version = ""
        self.client_cert = ""
        self.scanner: RequestScanner | None = None
        policy = proxy.policy
        if policy.scans_requests:
            self.scanner = RequestScanner(
                policy,
                time.monotonic,
                self.refused_command,
                auth_required=proxy.upstream_auth is True,
            )
        now = time.monotonic()
        self.last_client = now
        self.last_upstream = now
        self.awaiting = False  # a request went to Redis and nothing came back yet
        self.finished = False
        self.broken = False
        self.client_eof = False
        # Both transports once connected, and whether client bytes go to Redis untouched
        # (pass-through, nothing broken).
        self.to_client: asyncio.Transport | None = None
        self.to_upstream: asyncio.Transport | None = None
        self.plain = self.scanner is None
        self.upstream: tuple[str, int] | None = None  # the server this connection went to

    # client -> Redis
    def from_client(self, data: bytes) -> None:
        """Client bytes, when they need more than a write (see ClientSide.data_received)."""
        if self.broken:  # after a protocol violation nothing more goes to Redis
            return
        scanner = self.scanner
        if scanner is not None:
            self.last_client = time.monotonic()
            try:
                data = scanner.feed(data)
            except ProtocolViolation as violation:
                self.broke_protocol(violation)
                return
            except Exception:  # a scanner bug: its state no longer matches Redis', fail closed
                log.exception("request scanner failed; closing the connection")
                self.fail("-ERR internal error (redkeep proxy)", "proxy", "scanner error")
                return
            if not data:
                return
            self.awaiting = True
        self.send_upstream(data)

    def broke_protocol(self, violation: ProtocolViolation) -> None:
        """Let Redis answer what came before, then refuse the rest and close, as Redis would.

        The client reads no more; Redis replies to the earlier requests, answers POISON with
        a protocol error and closes the connection, which closes the client's.
        """
        self.proxy.counters.protocol_errors += 1
        self.error = str(violation)
        self.broken = True
        self.plain = False
        if self.to_client is not None:
            self.to_client.pause_reading()
        self.send_upstream(violation.forward + POISON)
        asyncio.get_running_loop().call_later(5.0, self.close, "proxy")

    def send_upstream(self, data: bytes) -> None:
        if self.to_upstream is not None:
            self.to_upstream.write(data)
            return
        self.early.append(data)
        self.early_bytes += len(data)
        if self.early_bytes > PRECONNECT_LIMIT and self.to_client is not None:
            self.to_client.pause_reading()  # resumed once Redis is connected

    def client_finished(self) -> None:
        """The client sent EOF: pass it on, so Redis still answers what was sent before.

        A TLS connection to Redis cannot half-close; it is closed once Redis has been quiet
        for a moment (or has closed itself).
        """
        self.client_eof = True
        upstream = self.to_upstream
        if upstream is None:
            return  # upstream_ready() finishes the job
        if upstream.can_write_eof():
            upstream.write_eof()
        else:
            self._close_when_quiet(self.bytes_out)

    def _close_when_quiet(self, seen: int) -> None:
        asyncio.get_running_loop().call_later(0.5, self._quiet_check, seen)

    def _quiet_check(self, seen: int) -> None:
        if self.bytes_out == seen:
            self.close("client")
        else:
            self._close_when_quiet(self.bytes_out)

    def refused_command(self, command: bytes, reason: str) -> None:
        self.proxy.counters.count_refused_command(reason)
        if self.proxy.policy.log_denied_commands:
            user = self.scanner.user if self.scanner else None
            text = command.decode("ascii", "replace")
            self.proxy.access_log.command_refused(
                RefusedCommand(self.peer[0], self.peer[1], user, text, reason)
            )

    def record(self) -> ConnectionRecord:
        """What this connection was, for the access log and the metrics (once it has ended)."""
        scanner = self.scanner
        return ConnectionRecord(
            client=self.peer[0],
            port=self.peer[1],
            user=scanner.user if scanner else None,
            tls=self.tls_version or None,
            client_cert=self.client_cert or None,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            commands=scanner.commands if scanner else None,
            refused=dict(scanner.refused) if scanner else {},
            duration=round(time.time() - self.started, 3),
            closed_by=self.closed_by,
            error=self.error or None,
        )

    async def connect_upstream(self) -> None:
        proxy = self.proxy
        if proxy.upstream is None:
            self.upstream_failed("no_primary", "the Sentinels name no primary that answers as one")
            return
        self.upstream = host, port = proxy.upstream
        tls = proxy.upstream_ssl
        name = (proxy.upstream_name or host) if tls else None
        try:
            async with asyncio.timeout(proxy.config.connect_timeout):
                await asyncio.get_running_loop().create_connection(
                    lambda: UpstreamSide(self), host, port, ssl=tls, server_hostname=name
                )
        except TimeoutError:
            self.upstream_failed(
                "connect_timeout", f"no connection within {proxy.config.connect_timeout:g}s"
            )
        except ssl.SSLError as error:
            self.upstream_failed("tls", error.reason or str(error))
        except OSError as error:
            if error.errno in OUT_OF_DESCRIPTORS:  # the proxy's own limit, not Redis' fault
                proxy.counters.count_refused("no_descriptors")
                proxy.warnings.warning(
                    "descriptors",
                    f"cannot connect to Redis: {error.strerror} (the proxy's own "
                    "open-files limit; raise it or lower max_conns)",
                )
                self.fail("-ERR the proxy is out of file descriptors", "proxy", "no_descriptors")
                return
            self.upstream_failed("connect", error.strerror or str(error))

    def upstream_failed(self, kind: str, detail: str) -> None:
        proxy = self.proxy
        proxy.counters.count_upstream_error(kind)
        if not self.finished:
            where = (
                "upstream" if self.upstream is None else f"upstream {address_text(self.upstream)}"
            )
            proxy.warnings.warning(kind, f"{where}: {detail}")
        if kind != "tls":  # the primary may have moved: ask the Sentinels (if any) again
            proxy.upstream_trouble(f"{kind} error towards Redis")
        self.fail("-ERR Redis is unavailable (redkeep proxy)", "upstream", f"{kind}: {detail}")

    def upstream_closed(self) -> None:
        """Redis ended the connection: the client's ends too. Redis may be gone (killed,
        demoted): with Sentinel, the proxy asks where the primary is now."""
        if not self.finished:
            self.proxy.upstream_trouble("Redis closed a connection")
        self.close("upstream")

    def upstream_ready(self, upstream: asyncio.Transport) -> None:
        if self.finished:
            upstream.close()
            return
        self.to_upstream = upstream
        if self.early:
            upstream.write(b"".join(self.early))
            self.early = []
            self.early_bytes = 0
            if self.to_client is not None:
                self.to_client.resume_reading()
        if self.client_eof:
            self.client_finished()

    def fail(self, reply: str, by: str, error: str) -> None:
        """Tell the client why (one error line), then close both sides."""
        if self.finished:
            return
        self.error = error
        client = self.to_client
        if client is not None and not client.is_closing():
            client.write(reply.encode() + b"\r\n")
        self.close(by)

    def close(self, by: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.closed_by = by
        for transport in (self.to_client, self.to_upstream):
            if transport is not None:
                transport.close()
        self.proxy.session_ended(self)


class Side(asyncio.Protocol):
    """One end of a session. When its write buffer fills, the other end stops reading."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def other(self) -> asyncio.Transport | None:
        raise NotImplementedError

    def pause_writing(self) -> None:
        other = self.other()
        if other is not None:
            other.pause_reading()

    def resume_writing(self) -> None:
        other = self.other()
        if other is not None:
            other.resume_reading()


class ClientSide(Side):
    def other(self) -> asyncio.Transport | None:  # the client reads slower than Redis sends
        return self.session.to_upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        session = self.session
        session.to_client = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            session.tls_version = ssl_object.version() or ""
            cert = ssl_object.getpeercert() or {}
            for field in cert.get("subject", ()):
                for key, value in field:
                    if key == "commonName":
                        session.client_cert = value
        asyncio.get_running_loop().create_task(session.connect_upstream())

    def data_received(self, data: bytes) -> None:
        # The hot path: in pass-through, one write and a counter.
        session = self.session
        session.bytes_in += len(data)
        upstream = session.to_upstream
        if session.plain and upstream is not None:
            upstream.write(data)
        else:
            session.from_client(data)

    def eof_received(self) -> bool | None:
        self.session.client_finished()
        # Keep a TCP transport open: replies may still be on their way. A TLS transport closes
        # after the peer's close_notify whatever we return (asyncio warns about True there).
        return None if self.session.tls_version else True

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.close("client")


class UpstreamSide(Side):
    def other(self) -> asyncio.Transport | None:  # Redis takes requests slower than sent
        return self.session.to_client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session.upstream_ready(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        # Replies are forwarded as bytes, never parsed.
        session = self.session
        session.bytes_out += len(data)
        if session.scanner is not None:
            session.last_upstream = time.monotonic()
            session.awaiting = False
        client = session.to_client
        if client is not None:
            client.write(data)

    def eof_received(self) -> bool | None:
        self.session.upstream_closed()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.session.finished:
            self.session.proxy.counters.count_upstream_error("reset")
        self.session.upstream_closed()
