"""The proxy's data path: accept, admit, TLS, connect to Redis, forward both ways.

Accepting by hand (not `create_server`) lets the policy look at the peer address before any
TLS work: a refused client costs one accept() and one close(). Admitted sockets are handed to
`connect_accepted_socket`, which does the TLS handshake with a deadline. Each connection is a
`Session` (`proxy/session.py`); counters are plain ints, summed at scrape time.
"""

import asyncio
import logging
import socket
import ssl
import time

from redkeep.proxy.accesslog import AccessLog
from redkeep.proxy.config import ProxyConfig, address_text
from redkeep.proxy.limitedlog import LimitedLog
from redkeep.proxy.metrics import Counters
from redkeep.proxy.policy import Admission, Policy
from redkeep.proxy.probe import PROBE_INTERVAL, RETRY_INTERVAL, describe, requires_auth
from redkeep.proxy.records import LiveTotals
from redkeep.proxy.sentinel import SentinelFollower
from redkeep.proxy.session import OUT_OF_DESCRIPTORS, ClientSide, Session
from redkeep.proxy.tlsconf import client_side_context, upstream_context

log = logging.getLogger("redkeep.proxy")

ACCEPT_BATCH = 64  # connections accepted per wake-up, so a flood cannot starve the loop
# Out of file descriptors, accept() fails at once while clients wait in the backlog: stop
# accepting for a moment instead of spinning, as asyncio's own server does.
ACCEPT_PAUSE = 1.0


class Proxy:
    """The listener(s), the current policy and everything the sessions share."""

    def __init__(self, config: ProxyConfig, access_log: AccessLog) -> None:
        self.config = config
        self.policy: Policy = config.policy
        self.admission = Admission()
        self.counters = Counters()
        self.access_log = access_log
        self.sessions: set[Session] = set()
        self.client_ssl = client_side_context(config.client_tls) if config.client_tls else None
        self.upstream_ssl = upstream_context(config.upstream_tls) if config.upstream_tls else None
        self.listeners: list[socket.socket] = []
        self.warnings = LimitedLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task | None = None
        self._prober: asyncio.Task | None = None
        # Whether Redis makes new connections log in (None: not known yet); see probe.py.
        self.upstream_auth: bool | None = None
        # Where new connections go: the fixed upstream, or the primary Sentinel names (None
        # until one is trusted). Sessions read it when they connect, nothing else.
        self.upstream: tuple[str, int] | None = None if config.sentinel else config.upstream
        self.upstream_name = config.upstream_tls.server_name if config.upstream_tls else None
        self.follower: SentinelFollower | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        host, port = self.config.listen
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            listener = socket.socket(family, kind, proto)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                listener.bind(address)
            except OSError as error:
                listener.close()
                self.close_listeners()
                message = f"cannot listen on {host}:{port}: {error.strerror}"
                raise OSError(error.errno, message) from None
            listener.listen(1024)
            listener.setblocking(False)
            self._loop.add_reader(listener.fileno(), self._accept, listener)
            self.listeners.append(listener)
        self._sweeper = self._loop.create_task(self._sweep())
        if self.config.sentinel is not None:
            self._follow_sentinel(self.config)
            await self.follower.first()  # before the first client: it goes to the primary
            self.follower.start()
        if self.policy.unauthenticated_limits:
            await self.probe_upstream()  # before the first client: the caps are right at once
        self._prober = self._loop.create_task(self._probe_periodically())

    def close_listeners(self) -> None:
        for listener in self.listeners:
            if self._loop is not None:
                self._loop.remove_reader(listener.fileno())
            listener.close()
        self.listeners = []

    async def stop(self) -> None:
        """Stop accepting, close every connection, write their log lines."""
        self.close_listeners()
        for task in (self._sweeper, self._prober):
            if task is not None:
                task.cancel()
        if self.follower is not None:
            self.follower.stop()
        for session in list(self.sessions):
            session.close("proxy")
        await asyncio.sleep(0)

    def reload(self, config: ProxyConfig) -> None:
        """A new policy and certificates for new connections; open connections keep going
        (their command limits follow the new policy)."""
        client_ssl = client_side_context(config.client_tls) if config.client_tls else None
        upstream_ssl = upstream_context(config.upstream_tls) if config.upstream_tls else None
        self.config = config
        self.policy = config.policy
        self.client_ssl = client_ssl
        self.upstream_ssl = upstream_ssl
        for session in self.sessions:
            if session.scanner is not None:
                session.scanner.set_policy(config.policy)
        self.upstream_name = config.upstream_tls.server_name if config.upstream_tls else None
        if config.sentinel is not None:
            if self.follower is None:
                self._follow_sentinel(config)
                self.follower.start()
                self.follower.wake("reload")
            else:
                self.follower.update(config.sentinel, upstream_ssl, self.upstream_name)
        else:
            if self.follower is not None:
                self.follower.stop()
                self.follower = None
            self.switch_upstream(config.upstream, "reload")
        self.counters.reloads += 1
        if config.policy.unauthenticated_limits and self._loop is not None:
            self._loop.create_task(self.probe_upstream())  # Redis may have changed too

    def _follow_sentinel(self, config: ProxyConfig) -> None:
        self.follower = SentinelFollower(
            config.sentinel,
            self.upstream_ssl,
            self.upstream_name,
            config.connect_timeout,
            self.switch_upstream,
        )

    def switch_upstream(self, address: tuple[str, int], reason: str) -> None:
        """Send new connections to `address`; close those attached to another server, so
        their clients reconnect to this one (none keeps writing to a demoted primary)."""
        old = self.upstream
        if address == old:
            return
        self.upstream = address
        stale = [s for s in self.sessions if s.upstream is not None and s.upstream != address]
        for session in stale:
            session.error = f"the primary moved to {address_text(address)}"
            session.close("proxy")
        where = address_text(address)
        if old is None:
            log.info("primary: %s (%s)", where, reason)
        else:
            self.counters.upstream_switches += 1
            log.warning(
                "primary moved from %s to %s (%s); closed %d connections to the old one",
                address_text(old),
                where,
                reason,
                len(stale),
            )
        self.access_log.switched(old, address, reason, len(stale))
        if self.policy.unauthenticated_limits and self._loop is not None:
            self._loop.create_task(self.probe_upstream())

    def upstream_trouble(self, reason: str) -> None:
        """A connection to Redis was refused or closed: with Sentinel, ask where it is now."""
        if self.follower is not None:
            self.follower.wake(reason)

    async def probe_upstream(self) -> None:
        """Ask Redis whether it makes clients log in; new connections follow the answer."""
        upstream = self.upstream
        if upstream is None:
            return
        answer = await requires_auth(
            upstream, self.upstream_name, self.config.connect_timeout, self.upstream_ssl
        )
        first = not self.counters.probes
        self.counters.probes += 1
        if answer is None and self.upstream_auth is not None:
            return  # keep what Redis said last
        if first or answer != self.upstream_auth:
            log.info("%s", describe(answer, upstream))
        if answer is not None and answer != self.upstream_auth:
            for session in self.sessions:  # Redis applies the change to open connections too
                if session.scanner is not None:
                    session.scanner.upstream_changed(answer)
        self.upstream_auth = answer

    async def _probe_periodically(self) -> None:
        while True:
            await asyncio.sleep(RETRY_INTERVAL if self.upstream_auth is None else PROBE_INTERVAL)
            if self.policy.unauthenticated_limits:
                await self.probe_upstream()

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in OUT_OF_DESCRIPTORS:
                    self.counters.count_refused("no_descriptors")
                    self._pause_accepting(listener)
                    detail = f"{error.strerror}; not accepting for {ACCEPT_PAUSE:g} s"
                else:
                    self.counters.count_refused("accept_error")
                    detail = error.strerror or str(error)
                self.warnings.warning("accept", f"accept failed: {detail}")
                return
            address, reason = self.admission.check(self.policy, peer[0], time.monotonic())
            if reason is not None:
                sock.close()  # before any TLS: a refused client costs nothing more
                self.counters.count_refused(reason)
                self.access_log.refused(peer, reason)
                continue
            self.admission.opened(address)
            self.counters.accepted += 1
            session = Session(self, address, peer, self.client_ssl is not None)
            self.sessions.add(session)
            self._loop.create_task(self._handshake(session, sock))

    def _pause_accepting(self, listener: socket.socket) -> None:
        self._loop.remove_reader(listener.fileno())
        self._loop.call_later(ACCEPT_PAUSE, self._resume_accepting, listener)

    def _resume_accepting(self, listener: socket.socket) -> None:
        if listener in self.listeners:  # not closed meanwhile
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    async def _handshake(self, session: Session, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._loop.connect_accepted_socket(
                lambda: ClientSide(session),
                sock,
                ssl=self.client_ssl,
                ssl_handshake_timeout=self.config.handshake_timeout if self.client_ssl else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
            sock.close()
            if self.client_ssl is not None:
                self.counters.count_refused("tls")
                reason = getattr(error, "reason", None) or str(error) or "the client went away"
                session.error = f"TLS handshake: {reason}"
            else:
                session.error = f"accept: {error}"
            session.close("client")

    def session_ended(self, session: Session) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self.admission.closed(session.address)
        record = session.record()
        self.counters.connection_ended(record)
        self.access_log.closed(record)

    def live_totals(self) -> LiveTotals:
        """Sums over the open connections, for /metrics."""
        sessions = list(self.sessions)
        return LiveTotals(
            connections=len(sessions),
            commands=sum(s.scanner.commands for s in sessions if s.scanner is not None),
            bytes_in=sum(s.bytes_in for s in sessions),
            bytes_out=sum(s.bytes_out for s in sessions),
        )

    async def _sweep(self) -> None:
        """Idle timeouts, checked once a second rather than with a timer per read."""
        while True:
            await asyncio.sleep(1.0)
            policy = self.policy
            if not (policy.client_idle_timeout or policy.upstream_idle_timeout):
                continue
            now = time.monotonic()
            for session in list(self.sessions):
                scanner = session.scanner
                if scanner is None or scanner.waiting:
                    continue
                if (
                    policy.client_idle_timeout
                    and not session.awaiting
                    and now - session.last_client > policy.client_idle_timeout
                ):
                    self.counters.idle_closed += 1
                    session.fail("-ERR idle timeout (redkeep proxy)", "proxy", "client idle")
                elif (
                    policy.upstream_idle_timeout
                    and session.awaiting
                    and now - max(session.last_upstream, session.last_client)
                    > policy.upstream_idle_timeout
                ):
                    self.counters.idle_closed += 1
                    session.fail(
                        "-ERR Redis did not answer in time (redkeep proxy)",
                        "proxy",
                        "upstream idle",
                    )
