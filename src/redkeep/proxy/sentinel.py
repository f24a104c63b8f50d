"""Following the primary through Sentinel: ask the Sentinels, check the answer, listen for moves.

Nothing here runs on the data path. The proxy keeps one current upstream; this module changes
it. The Sentinels are asked together (SENTINEL GET-MASTER-ADDR-BY-NAME, over the proxy's
upstream TLS, as `sentinel_user`); an address is taken only when more than half of the
CONFIGURED Sentinels name it (not of those that answered: one reachable Sentinel out of three,
stale beside a partitioned old primary or hostile, must not decide alone) and the server there
says it is a primary (HELLO's `role`): a Sentinel may be behind, or point at a node that was
demoted. Until then the proxy keeps the primary it has. The proxy re-asks on every `+switch-master`
(subscribed on each Sentinel), on a refused or closed upstream connection, and every few
seconds; while the answer cannot be trusted it asks again twice a second.
"""

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import hiredis

from redkeep.proxy.config import SentinelConfig

log = logging.getLogger("redkeep.proxy")

POLL_INTERVAL = 5.0  # seconds between checks while the primary is known and answers as one
RETRY_INTERVAL = 0.5  # ... while it is not
RESUBSCRIBE_INTERVAL = 1.0  # after a subscription to a Sentinel was lost
REFUSED_INTERVAL = 30.0  # ... or refused (no right to subscribe, wrong password): polls cover
SWITCH_CHANNEL = b"+switch-master"

Address = tuple[str, int]


class ReplyError(Exception):
    """An error reply (-ERR, -NOPERM, -WRONGPASS ...)."""


def is_majority(count: int, configured: int) -> bool:
    """More than half of the configured Sentinels, answering or not."""
    return count * 2 > configured


@dataclass(frozen=True)
class Resolution:
    """One round of asking: the primary to use (None: none trusted yet) and what was seen."""

    primary: Address | None
    reached: int  # Sentinels that answered
    detail: str  # why no primary, for the log


class Link:
    """A connection speaking just enough RESP for a few commands and pub/sub messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader(replyError=ReplyError)

    @classmethod
    async def open(
        cls,
        address: Address,
        context: ssl.SSLContext | None,
        server_name: str | None,
        config: SentinelConfig,
    ) -> "Link":
        host, port = address
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=(server_name or host) if context else None
        )
        link = cls(reader, writer)
        try:
            password = config.current_password()
            if password is not None:
                await link.call(b"AUTH", config.user.encode(), password.encode())
        except BaseException:
            link.close()
            raise
        return link

    def send(self, *args: bytes) -> None:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        self.writer.write(b"".join(out))

    async def reply(self):
        while True:
            reply = self.parser.gets()
            if reply is not False:
                if isinstance(reply, ReplyError):
                    raise reply
                return reply
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.parser.feed(data)

    async def call(self, *args: bytes):
        self.send(*args)
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


FAILURES = (OSError, ssl.SSLError, TimeoutError, ConnectionError, ReplyError, ValueError)


class SentinelFollower:
    """Keeps `on_primary` told of the primary the Sentinels agree on and that says it is one."""

    def __init__(
        self,
        config: SentinelConfig,
        context: ssl.SSLContext | None,
        server_name: str | None,
        timeout: float,
        on_primary: Callable[[Address, str], None],
    ) -> None:
        self.config = config
        self.context = context
        self.server_name = server_name
        self.timeout = timeout
        self.on_primary = on_primary
        self.current: Address | None = None
        self.reached = 0  # Sentinels that answered the last round
        self.rounds = 0  # rounds of asking finished
        self.rounds_since_update = 0  # ... begun after the last reload: a check waits for one
        self.subscribed: set[Address] = set()
        self._wake = asyncio.Event()
        self._reason = ""
        self._tasks: list[asyncio.Task] = []
        self._last_detail = ""

    def update(self, config: SentinelConfig, context: ssl.SSLContext | None, name: str | None):
        """New settings (SIGHUP): asked and subscribed anew. A round under way is cancelled
        (never counted): the next one to end began with the new settings."""
        self.config, self.context, self.server_name = config, context, name
        self.rounds_since_update = 0
        self.stop()
        self.start()
        self.wake("reload")

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow())]
        self._tasks += [loop.create_task(self._watch(a)) for a in self.config.addresses]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.subscribed.clear()

    def wake(self, reason: str) -> None:
        """Ask again now (an upstream refused or closed a connection, a switch was announced)."""
        if not self._wake.is_set():
            self._reason = reason
            self._wake.set()

    async def first(self) -> None:
        """One round before the proxy serves, so its first clients go to the primary."""
        await self._round("start")

    async def _follow(self) -> None:
        while True:
            interval = POLL_INTERVAL if self.current is not None else RETRY_INTERVAL
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            reason = self._reason if self._wake.is_set() else "periodic check"
            self._wake.clear()
            await self._round(reason)

    async def _round(self, reason: str) -> None:
        try:
            result = await self.resolve()
        except Exception:  # a bug here must not stop following: log it, ask again later
            log.exception("asking the Sentinels failed")
            self.current = None
            self.reached = 0
            self._count_round()
            return
        self._count_round()
        self.reached = result.reached
        if result.primary is None:
            self.current = None
            if result.detail != self._last_detail:
                log.warning("no primary to send clients to yet: %s", result.detail)
            self._last_detail = result.detail
            return
        self._last_detail = ""
        self.current = result.primary
        self.on_primary(result.primary, reason)

    def _count_round(self) -> None:
        self.rounds += 1
        self.rounds_since_update += 1

    async def resolve(self) -> Resolution:
        """Ask every Sentinel at once; take the address more than half of the configured
        Sentinels name, if the server there answers as a primary."""
        answers = await asyncio.gather(*(self._ask(a) for a in self.config.addresses))
        named = [answer for answer in answers if isinstance(answer, tuple)]
        reached = sum(1 for answer in answers if not isinstance(answer, str))
        if not reached:
            return Resolution(None, 0, "no Sentinel answered: " + "; ".join(answers))
        if not named:
            return Resolution(
                None, reached, f"the Sentinels do not know a master named {self.config.master_name}"
            )
        address, count = Counter(named).most_common(1)[0]
        where = f"{address[0]}:{address[1]}"
        if not is_majority(count, len(self.config.addresses)):
            return Resolution(
                None,
                reached,
                f"{count} of the {len(self.config.addresses)} Sentinels name {where} "
                f"({reached} answered): not a majority; keeping the current primary",
            )
        role = await self._role(address)
        if role != "master":
            return Resolution(
                None,
                reached,
                f"{count} of {reached} Sentinels name {where}, which answers as {role} "
                "(a Sentinel behind, or a failover under way)",
            )
        return Resolution(address, reached, "")

    async def _ask(self, sentinel: Address) -> Address | None | str:
        """The address this Sentinel names, None when it knows no such master, or a string
        saying why it could not be asked."""
        link = None
        try:
            async with asyncio.timeout(self.timeout):
                link = await Link.open(sentinel, self.context, self.server_name, self.config)
                reply = await link.call(
                    b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", self.config.master_name.encode()
                )
        except FAILURES as error:
            return f"{sentinel[0]}:{sentinel[1]}: {describe(error)}"
        finally:
            if link is not None:
                link.close()
        if not reply:
            return None
        return reply[0].decode(), int(reply[1])

    async def _role(self, address: Address) -> str:
        """What the server at `address` says it is (HELLO's role), or why it could not say."""
        link = None
        try:
            async with asyncio.timeout(self.timeout):
                link = await Link.open(address, self.context, self.server_name, self.config)
                reply = await link.call(b"HELLO", b"2")
        except FAILURES as error:
            return f"unreachable ({describe(error)})"
        finally:
            if link is not None:
                link.close()
        fields = dict(zip(reply[::2], reply[1::2], strict=False))
        return fields.get(b"role", b"unknown").decode()

    async def _watch(self, sentinel: Address) -> None:
        """Stay subscribed to `+switch-master` on one Sentinel; ask again on every message and
        after every (re)subscription (a switch may have been missed meanwhile)."""
        where = f"{sentinel[0]}:{sentinel[1]}"
        complained = ""
        while True:
            link = None
            pause = RESUBSCRIBE_INTERVAL
            try:
                async with asyncio.timeout(self.timeout):
                    link = await Link.open(sentinel, self.context, self.server_name, self.config)
                    await link.call(b"SUBSCRIBE", SWITCH_CHANNEL)
                self.subscribed.add(sentinel)
                complained = ""
                self.wake(f"subscribed to {where}")
                while True:
                    message = await link.reply()
                    if message[0] == b"message" and message[1] == SWITCH_CHANNEL:
                        text = message[2].decode(errors="replace")
                        if text.split(" ", 1)[0] == self.config.master_name:
                            self.wake(f"+switch-master from {where}: {text}")
            except FAILURES as error:
                detail = describe(error)
                if isinstance(error, ReplyError):
                    pause = REFUSED_INTERVAL
                if detail != complained:  # once per kind of failure, not once a second
                    log.warning("not following +switch-master on %s: %s", where, detail)
                    complained = detail
            finally:
                self.subscribed.discard(sentinel)
                if link is not None:
                    link.close()
            await asyncio.sleep(pause)


def describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
