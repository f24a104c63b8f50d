"""Application checks ("app checks"): values the application keeps in Redis, measured off the
scrape path. (The audit's checks are another thing: audit/checks.py.)

Declared in config (`exporter.checks` or `--checks FILE`): key age from a stored timestamp
(market-data freshness), hash counters (cache hits and misses), key counts by pattern (rate-
limiter buckets), TTL, existence, stream and list length, and a read-only Lua script. A
background thread evaluates them on their own connection, each round within a time budget;
a key count SCANs a slice per round and publishes a number only once its pass is complete.
A scrape only reads the last results, so a slow or hung check never delays `/metrics`.

On a cluster node each key goes to its slot's primary (exporter/slots.py) and a key count
scans every primary; a MOVED or ASK reply (a failover, a reshard) re-reads the slot map. In a
Sentinel deployment (`primary_only`) the checks run on the primary the Sentinels name
(exporter/primary.py), and each round first asks that node whether it still is the primary: a
replica answers reads too, with a replica's values.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import hiredis

from redkeep.errors import ErrorKind, RedkeepError
from redkeep.exporter.collectors import text
from redkeep.exporter.exposition import Family
from redkeep.exporter.info import number
from redkeep.exporter.primary import is_primary
from redkeep.exporter.slots import Address, SlotMap
from redkeep.redis.raw import RawConnection

if TYPE_CHECKING:
    from redkeep.config.schema import CheckSettings

LOG = logging.getLogger("redkeep.exporter")
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


@dataclass
class AppCheckResult:
    """The last result of one check."""

    values: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    ok: bool = False
    error: str = ""
    ran_at: float = 0.0
    duration: float = 0.0


@dataclass
class ScanState:
    cursor: str = "0"
    counted: int = 0
    nodes: list[Address | None] = field(default_factory=list)  # a cluster: every primary


class AppCheckRefused(RedkeepError):
    """Redis refused one check's command (NOPERM, WRONGTYPE, a script error): not the connection."""

    kind = ErrorKind.COMMAND


RETRY_REFUSED = 600.0  # seconds before a check refused with NOPERM is tried again
MAX_CONNECT_BACKOFF = 60.0


class AppCheckRunner:
    """Evaluates checks over one connection; `round()` runs what is due, within a budget.

    A failing check is retried at its own interval, never in a tight loop; a check refused
    with NOPERM is switched off (and asked again ten minutes later); when the connection
    fails, reconnecting backs off up to a minute. Each problem is logged when it starts.
    """

    def __init__(
        self,
        checks: list[CheckSettings],
        connect,
        budget: float,
        scan_count: int,
        max_commands: int = 200,
        primary_only: bool = False,
    ) -> None:
        # Cheap checks first, key counts last: a long SCAN pass cannot starve the others.
        self.checks = sorted(checks, key=lambda check: check.type == "key_count")
        # (address) -> logged-in RawConnection; None: the configured node (or any that answers)
        self.connect = connect
        self.budget = budget
        self.scan_count = scan_count
        self.max_commands = max_commands
        # A Sentinel deployment: `connect(None)` is the primary the Sentinels name, and a node
        # that no longer says it is the primary is left (a failover) before a check runs on it.
        self.primary_only = primary_only
        self.results: dict[str, AppCheckResult] = {}
        self.refused: dict[str, float] = {}  # check -> when NOPERM switched it off
        self._due: dict[str, float] = {}
        self._scans: dict[str, ScanState] = {}
        self._connection: RawConnection | None = None  # the configured node
        self._slots: SlotMap | None = None  # None: not a cluster
        self._nodes: dict[Address, RawConnection] = {}  # a cluster: one per primary
        self._known: list[Address] = []  # the last map's primaries: seeds if ours is down
        self._commands_left = 0
        self._connect_after = 0.0
        self._connect_backoff = 0.0
        self._logged: dict[str, str] = {}

    def round(self) -> None:
        """Run every check that is due, until the time or ops budget is spent."""
        now = time.monotonic()
        if now < self._connect_after:
            return
        deadline = now + self.budget
        self._commands_left = self.max_commands
        role_checked = not self.primary_only
        for check in self.checks:
            now = time.monotonic()
            if now >= deadline or self._commands_left <= 0:
                return
            refused_at = self.refused.get(check.name)
            if refused_at is not None and now - refused_at < RETRY_REFUSED:
                continue
            if self._due.get(check.name, 0) > now:
                continue
            try:
                if not role_checked:
                    self._still_primary(deadline)
                    role_checked = True
                values = self._run(check, deadline)
            except AppCheckRefused as error:
                self._failed(check, now, error.message, error.kind is ErrorKind.PERMISSION)
                continue
            except RedkeepError as error:  # the connection: every other check would fail too
                self._drop_connection()
                self._failed(check, now, error.message)
                self._connect_backoff = min(MAX_CONNECT_BACKOFF, self._connect_backoff * 2 or 1)
                self._connect_after = time.monotonic() + self._connect_backoff
                return
            self._connect_backoff = 0.0
            if values is None:  # a key count still scanning: keep the previous value
                continue
            self._record(check, now, values=values)
            self._due[check.name] = now + check.interval_seconds
            if self._logged.pop(check.name, None):
                LOG.info("check %s works again", check.name)

    def close(self) -> None:
        self._drop_connection()

    def _failed(self, check: CheckSettings, started: float, message: str, noperm=False) -> None:
        self._record(check, started, error=message)
        self._due[check.name] = started + check.interval_seconds
        if noperm:
            self.refused[check.name] = started
            LOG.warning(
                "check %s switched off: %s. Checks given with --checks are not in the bundle's "
                "ACL: list them under exporter.checks in redkeep.yaml and run `redkeep init "
                "--force`, so the exporter user may read their keys",
                check.name,
                message,
            )
        elif self._logged.get(check.name) != message:
            LOG.warning("check %s failed: %s", check.name, message)
        self._logged[check.name] = message

    def _record(self, check, started, values=None, error="") -> None:
        previous = self.results.get(check.name, AppCheckResult())
        self.results[check.name] = AppCheckResult(
            values=values if values is not None else previous.values,
            ok=not error,
            error=error,
            ran_at=time.time(),
            duration=time.monotonic() - started,
        )

    def _drop_connection(self) -> None:
        connections = [self._connection, *self._nodes.values()]
        for connection in {id(c): c for c in connections if c is not None}.values():
            connection.close()
        self._connection, self._nodes, self._slots = None, {}, None

    def _seed(self, deadline: float) -> RawConnection:
        if self._connection is None:
            self._connection = self._connect_any()
            self._slots = self._read_slots(deadline)
        return self._connection

    def _still_primary(self, deadline: float) -> None:
        """Raise (as a connection failure: the next connect asks the Sentinels again) when the
        node the checks run on is no longer the primary."""
        connection = self._seed(deadline)
        self._commands_left -= 1
        if not is_primary(connection, deadline):
            raise RedkeepError(
                f"{connection.target.where} is no longer the primary (a failover); asking the "
                "Sentinels again"
            )

    def _connect_any(self) -> RawConnection:
        """The configured node, else a primary of the last slot map (it may be the dead one)."""
        try:
            return self.connect(None)
        except RedkeepError as first:
            for address in self._known:
                try:
                    return self.connect(address)
                except RedkeepError:
                    continue
            raise first from None

    def _read_slots(self, deadline: float) -> SlotMap | None:
        """The slot map when the seed is a cluster node, else None."""
        assert self._connection is not None
        (info,) = self._connection.pipeline([("INFO", "cluster")], deadline)
        if "cluster_enabled:1" not in text(info):
            return None
        (reply,) = self._connection.pipeline([("CLUSTER", "NODES")], deadline)
        if isinstance(reply, hiredis.ReplyError):
            raise RedkeepError(f"cannot route the checks by slot: CLUSTER NODES: {reply}")
        slots = SlotMap.from_cluster_nodes(text(reply))
        if slots.primaries() != (self._slots.primaries() if self._slots else None):
            self._scans.clear()  # a pass over the old primaries would count wrong
        if slots.myself is not None:
            self._nodes[slots.myself] = self._connection
        self._known = slots.primaries() or self._known
        return slots

    def _node(self, address: Address) -> RawConnection:
        if address not in self._nodes:
            self._nodes[address] = self.connect(address)
        return self._nodes[address]

    def _connection_for(self, key: str | None, node: Address | None, deadline: float):
        seed = self._seed(deadline)
        if node is not None:
            return self._node(node)
        if self._slots is None or key is None:
            return seed
        address = self._slots.node_of(key)
        if address is None:  # its primary failed: a replica may have taken over since
            self._slots = self._read_slots(deadline)
            address = self._slots.node_of(key) if self._slots is not None else None
        if address is None:
            raise AppCheckRefused(f"no primary serves the slot of {key} (cluster not ok)")
        return self._node(address)

    def _call(
        self,
        check: CheckSettings,
        deadline: float,
        *commands: tuple,
        key: str | None = None,
        node: Address | None = None,
    ) -> list[Any]:
        """Run `commands` where `key` lives (a cluster) or on `node`; one more try after a
        MOVED (the slot map is read again) or an ASK (ASKING on the node it names)."""
        asking: list[tuple[str, ...]] = []
        connection = self._connection_for(key, node, deadline)
        for attempt in range(2):
            self._commands_left -= len(commands) + 1
            # ASKING holds for the one command after it: right before the check's own.
            batch = [("SELECT", str(check.db)), *asking, *commands]
            replies = connection.pipeline(batch, deadline)
            del replies[1 : 1 + len(asking)]
            redirect = next(
                (
                    str(r).split()
                    for r in replies
                    if isinstance(r, hiredis.ReplyError) and str(r).startswith(("MOVED ", "ASK "))
                ),
                None,
            )
            if redirect and attempt == 0 and self._slots is not None:
                if redirect[0] == "ASK":  # the slot is migrating: only this key moved
                    host, _, port = redirect[2].rpartition(":")
                    connection, asking = self._node((host, int(port))), [("ASKING",)]
                else:
                    self._slots = self._read_slots(deadline)
                    connection = self._connection_for(key, node, deadline)
                continue
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    message = str(reply)
                    noperm = message.startswith("NOPERM")  # the reply's code
                    raise AppCheckRefused(message, kind=ErrorKind.PERMISSION if noperm else None)
            return replies[1:]
        raise AssertionError("unreachable")

    def _run(self, check: CheckSettings, deadline: float):
        if check.type == "key_count":
            return self._key_count(check, deadline)
        return MEASURES[check.type](self, check, deadline)

    def _key_count(self, check: CheckSettings, deadline: float):
        """SCAN a slice per round; a cluster's count is every primary's, scanned in turn."""
        state = self._scans.get(check.name)
        if state is None:
            self._seed(deadline)
            primaries = self._slots.primaries() if self._slots is not None else []
            state = self._scans[check.name] = ScanState(nodes=[*primaries] or [None])
        while time.monotonic() < deadline and self._commands_left > 0:
            (reply,) = self._call(
                check,
                deadline,
                ("SCAN", state.cursor, "MATCH", check.pattern, "COUNT", str(self.scan_count)),
                node=state.nodes[0],
            )
            state.cursor, keys = text(reply[0]), reply[1]
            state.counted += len(keys)
            if state.cursor == "0":
                state.nodes.pop(0)
                if not state.nodes:
                    del self._scans[check.name]
                    return [("redkeep_check_keys", {}, float(state.counted))]
        return None


def _key_age(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    """The stored timestamp; the age is derived at scrape time, so it grows even if the
    checks stall (and the stale-data alert still fires)."""
    command = ("HGET", check.key, check.field) if check.field else ("GET", check.key)
    (reply,) = runner._call(check, deadline, command, key=check.key)
    if reply is None:
        return [("redkeep_check_key_exists", {}, 0)]
    stamp = number(text(reply))
    if stamp is None:
        raise AppCheckRefused(f"{check.key} does not hold a timestamp")
    return [
        ("redkeep_check_key_exists", {}, 1),
        ("redkeep_check_key_timestamp_seconds", {}, stamp * UNITS[check.unit]),
    ]


def _hash_counters(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    (reply,) = runner._call(check, deadline, ("HMGET", check.key, *check.fields), key=check.key)
    values = []
    for name, value in zip(check.fields, reply, strict=True):
        parsed = number(text(value)) if value is not None else 0.0
        values.append(("redkeep_check_hash_counter_total", {"field": name}, parsed or 0.0))
    return values


def _ttl(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    (reply,) = runner._call(check, deadline, ("PTTL", check.key), key=check.key)
    exists = 0.0 if reply == -2 else 1.0
    values = [("redkeep_check_key_exists", {}, exists)]
    if reply >= 0:
        values.append(("redkeep_check_ttl_seconds", {}, reply / 1000))
    elif reply == -1:
        values.append(("redkeep_check_ttl_seconds", {}, -1.0))
    return values


def _exists(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    (reply,) = runner._call(check, deadline, ("EXISTS", check.key), key=check.key)
    return [("redkeep_check_key_exists", {}, float(reply))]


def _length(command: str, metric: str):
    def measure(runner: AppCheckRunner, check: CheckSettings, deadline: float):
        (reply,) = runner._call(check, deadline, (command, check.key), key=check.key)
        return [(metric, {}, float(reply))]

    return measure


def _lua(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    # EVAL_RO: Redis itself refuses a script that writes.
    command = ("EVAL_RO", check.script, str(len(check.keys)), *check.keys)
    # A cluster runs a script where its keys live (Redis wants them in one slot).
    (reply,) = runner._call(check, deadline, command, key=next(iter(check.keys), None))
    value = number(text(reply)) if reply is not None else None
    if value is None:
        raise AppCheckRefused("the script did not return a number")
    return [("redkeep_check_lua_value", {}, value)]


MEASURES = {
    "key_age": _key_age,
    "hash_counters": _hash_counters,
    "ttl": _ttl,
    "exists": _exists,
    "stream_length": _length("XLEN", "redkeep_check_stream_length"),
    "list_length": _length("LLEN", "redkeep_check_list_length"),
    "lua": _lua,
}

HELP = {
    "redkeep_check_keys": ("gauge", "Keys matching the check's pattern (last complete SCAN)"),
    "redkeep_check_key_exists": ("gauge", "1 when the check's key exists"),
    "redkeep_check_key_timestamp_seconds": ("gauge", "The Unix time stored in the key"),
    "redkeep_check_key_age_seconds": ("gauge", "Now minus the timestamp stored in the key"),
    "redkeep_check_hash_counter_total": ("counter", "A counter kept in a hash field"),
    "redkeep_check_ttl_seconds": ("gauge", "TTL of the key (-1: no expiry)"),
    "redkeep_check_stream_length": ("gauge", "Entries in the stream"),
    "redkeep_check_list_length": ("gauge", "Elements in the list"),
    "redkeep_check_lua_value": ("gauge", "What the read-only script returned"),
}


def families(results: dict[str, AppCheckResult], now: float | None = None) -> list[Family]:
    """The checks' last results as metric families, plus success and freshness per check."""
    now = time.time() if now is None else now
    by_name: dict[str, Family] = {
        name: Family(name, kind, text_) for name, (kind, text_) in HELP.items()
    }
    success = Family("redkeep_check_success", "gauge", "1 when the check's last run worked")
    last_run = Family("redkeep_check_last_run_timestamp_seconds", "gauge", "Last run of the check")
    duration = Family("redkeep_check_duration_seconds", "gauge", "How long the last run took")
    for check, outcome in results.items():
        label = {"check": check}
        for name, labels, value in outcome.values:
            by_name[name].add(value, label | labels)
            if name == "redkeep_check_key_timestamp_seconds":
                by_name["redkeep_check_key_age_seconds"].add(now - value, label | labels)
        success.add(1 if outcome.ok else 0, label)
        last_run.add(outcome.ran_at, label)
        duration.add(round(outcome.duration, 6), label)
    return [*by_name.values(), success, last_run, duration]
