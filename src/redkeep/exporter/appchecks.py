"""Application checks ("app checks"): values the application keeps in Redis, measured off the
scrape path. (The audit's checks are another thing: audit/checks.py.)

Declared in config (`exporter.checks` or `--checks FILE`): key age from a stored timestamp
(market-data freshness), hash counters (cache hits and misses), key counts by pattern (rate-
limiter buckets), TTL, existence, stream and list length, and a read-only Lua script. A
background thread evaluates them on their own connection, each round within a time budget;
a key count SCANs a slice per round and publishes a number only once its pass is complete.
A scrape only reads the last results, so a slow or hung check never delays `/metrics`.
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
    ) -> None:
        # Cheap checks first, key counts last: a long SCAN pass cannot starve the others.
        self.checks = sorted(checks, key=lambda check: check.type == "key_count")
        self.connect = connect  # () -> logged-in RawConnection
        self.budget = budget
        self.scan_count = scan_count
        self.max_commands = max_commands
        self.results: dict[str, AppCheckResult] = {}
        self.refused: dict[str, float] = {}  # check -> when NOPERM switched it off
        self._due: dict[str, float] = {}
        self._scans: dict[str, ScanState] = {}
        self._connection: RawConnection | None = None
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
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _call(self, check: CheckSettings, deadline: float, *commands: tuple) -> list[Any]:
        if self._connection is None:
            self._connection = self.connect()
        self._commands_left -= len(commands) + 1
        replies = self._connection.pipeline([("SELECT", str(check.db)), *commands], deadline)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                noperm = message.startswith("NOPERM")  # the reply's code
                raise AppCheckRefused(message, kind=ErrorKind.PERMISSION if noperm else None)
        return replies[1:]

    def _run(self, check: CheckSettings, deadline: float):
        if check.type == "key_count":
            return self._key_count(check, deadline)
        return MEASURES[check.type](self, check, deadline)

    def _key_count(self, check: CheckSettings, deadline: float):
        state = self._scans.setdefault(check.name, ScanState())
        while time.monotonic() < deadline and self._commands_left > 0:
            (reply,) = self._call(
                check,
                deadline,
                ("SCAN", state.cursor, "MATCH", check.pattern, "COUNT", str(self.scan_count)),
            )
            state.cursor, keys = text(reply[0]), reply[1]
            state.counted += len(keys)
            if state.cursor == "0":
                total, self._scans[check.name] = state.counted, ScanState()
                return [("redkeep_check_keys", {}, float(total))]
        return None


def _key_age(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    """The stored timestamp; the age is derived at scrape time, so it grows even if the
    checks stall (and the stale-data alert still fires)."""
    command = ("HGET", check.key, check.field) if check.field else ("GET", check.key)
    (reply,) = runner._call(check, deadline, command)
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
    (reply,) = runner._call(check, deadline, ("HMGET", check.key, *check.fields))
    values = []
    for name, value in zip(check.fields, reply, strict=True):
        parsed = number(text(value)) if value is not None else 0.0
        values.append(("redkeep_check_hash_counter_total", {"field": name}, parsed or 0.0))
    return values


def _ttl(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    (reply,) = runner._call(check, deadline, ("PTTL", check.key))
    exists = 0.0 if reply == -2 else 1.0
    values = [("redkeep_check_key_exists", {}, exists)]
    if reply >= 0:
        values.append(("redkeep_check_ttl_seconds", {}, reply / 1000))
    elif reply == -1:
        values.append(("redkeep_check_ttl_seconds", {}, -1.0))
    return values


def _exists(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    (reply,) = runner._call(check, deadline, ("EXISTS", check.key))
    return [("redkeep_check_key_exists", {}, float(reply))]


def _length(command: str, metric: str):
    def measure(runner: AppCheckRunner, check: CheckSettings, deadline: float):
        (reply,) = runner._call(check, deadline, (command, check.key))
        return [(metric, {}, float(reply))]

    return measure


def _lua(runner: AppCheckRunner, check: CheckSettings, deadline: float):
    # EVAL_RO: Redis itself refuses a script that writes.
    command = ("EVAL_RO", check.script, str(len(check.keys)), *check.keys)
    (reply,) = runner._call(check, deadline, command)
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
