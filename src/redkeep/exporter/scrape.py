"""One scrape: a persistent connection, two pipelined round trips, a deadline, self-metrics.

Round 1 is CONFIG GET and INFO ALL (everything redis_exporter derives from INFO); round 2 the
other collectors, whose commands depend on what INFO said (version, cluster mode). The
deadline (the Prometheus scrape timeout) bounds everything, connecting and AUTH included: if it
passes in round 2, the scrape returns what round 1 gave instead of hanging. A kept connection
that died quietly is replaced once within the same scrape. A collector refused with NOPERM is
switched off after telling once, and asked again ten minutes later.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hiredis

from redkeep import __version__
from redkeep.errors import ConnectError, ErrorKind, RedkeepError, StreamError
from redkeep.exporter import collectors, hastate, posture
from redkeep.exporter.collectors import Collector, State
from redkeep.exporter.exposition import Family, counter, gauge, render
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target

AUDIT_METRICS = "redkeep_audit.prom"
LOG = logging.getLogger("redkeep.exporter")
RETRY_DISABLED = 600.0  # seconds before a collector refused with NOPERM is tried again
# CONFIG is parsed before INFO (empty databases come from `databases`); the command lists of
# round two read the version and fields of the INFO before them.
ROUND_ONE = (collectors.CONFIG, collectors.INFO)
ROUND_TWO = (
    collectors.SLOWLOG,
    collectors.LATENCY,
    collectors.CLIENTS,
    collectors.CLUSTER,
    hastate.CLUSTER_NODES,
    hastate.SENTINEL,
    posture.ACL_LOG,
)


@dataclass
class Stats:
    scrapes: int = 0
    duration_sum: float = 0.0
    last_duration: float = 0.0
    connect_time: float = 0.0
    last_error: str = ""
    collector_ok: dict[str, bool] = field(default_factory=dict)
    collector_time: dict[str, float] = field(default_factory=dict)


class Scraper:
    """Scrapes one Redis; safe to call from several HTTP threads (scrapes take turns)."""

    def __init__(
        self,
        target: Target,
        extra: Callable[[], list[Family]] = list,
        backup_metrics: Path | None = None,
        refresh: Callable[[], Target] | None = None,
    ) -> None:
        self.target = target
        self.extra = extra  # background results (checks, posture)
        self.backup_metrics = backup_metrics
        # `redkeep audit` writes its metrics next to the backups' (run/metrics/).
        self.audit_metrics = backup_metrics.parent / AUDIT_METRICS if backup_metrics else None
        self.refresh = refresh  # re-reads the password (rotated in .env) after a refused login
        self.state = State()
        self.stats = Stats()
        self.disabled: dict[str, float] = {}  # collector -> when NOPERM switched it off
        self._connection: RawConnection | None = None
        self._lock = threading.Lock()

    def scrape(self, timeout: float) -> str:
        started = time.monotonic()
        deadline = started + timeout
        # Scrapes of one target take turns, but none waits past its own deadline.
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            return render([gauge("redis_up", "1 when Redis answered INFO", 0)])
        try:
            families = self._collect(deadline)
            duration = time.monotonic() - started
            self.stats.scrapes += 1
            self.stats.duration_sum += duration
            self.stats.last_duration = duration
            return render(families + self._self_metrics())
        finally:
            self._lock.release()

    def close(self) -> None:
        self._drop()

    def _collect(self, deadline: float) -> list[Family]:
        families: list[Family] = []
        error = ""
        for attempt in (1, 2):
            reused = self._connection is not None
            try:
                families, error = self._scrape_rounds(deadline)
                break
            except Exception as failure:  # noqa: BLE001 - any failure: the connection is suspect
                self._drop()
                error = _category(failure)
                if not isinstance(failure, RedkeepError):
                    LOG.warning("scrape failed unexpectedly: %r", failure)
                # A kept connection may have died quietly (server restart, CLIENT KILL, idle
                # timeout): try once more on a fresh one before reporting Redis down.
                if not (attempt == 1 and reused and time.monotonic() < deadline):
                    break
        self._report(error)
        up = 1 if self.stats.collector_ok.get("info") and families else 0
        if not up:
            self.state.config = {}  # no stale protected-mode while Redis cannot be asked
        families.append(gauge("redis_up", "1 when Redis answered INFO", up))
        for name, part in self._extra_parts():
            try:  # a broken part costs its own metrics, never the scrape
                families += part()
                self.stats.collector_ok[name] = True
            except Exception as failure:  # noqa: BLE001
                self.stats.collector_ok[name] = False
                LOG.warning("%s metrics failed: %r", name, failure)
        return families

    def _extra_parts(self) -> tuple[tuple[str, Callable[[], list[Family]]], ...]:
        """Families from outside Redis, each with the collector name its self-metrics carry."""
        return (
            ("posture", lambda: posture.config_posture(self.state)),
            ("background", self.extra),
            ("backup", lambda: posture.backup_families(self.backup_metrics)),
            ("audit", lambda: posture.audit_families(self.audit_metrics)),
        )

    def _scrape_rounds(self, deadline: float) -> tuple[list[Family], str]:
        """(families, error) of both rounds: a failure in the second keeps the first's."""
        self.stats.collector_ok.pop("info", None)
        connection = self._connect(deadline)
        families = self._round(connection, ROUND_ONE, deadline)
        if not self.stats.collector_ok.get("info"):
            return [], "info failed"
        for collector in ROUND_ONE:  # asked before INFO said what the server is (a Sentinel)
            if not collector.commands(self.state):
                self.stats.collector_ok.pop(collector.name, None)
        try:
            families += self._round(connection, ROUND_TWO, deadline)
        except RedkeepError as error:  # a partial answer: Redis is up, but slow
            self._drop()
            return families, _category(error)
        return families, ""

    def _report(self, error: str) -> None:
        """Log when scraping starts or stops failing (not on every scrape)."""
        if error != self.stats.last_error:
            if error:
                LOG.warning("scraping %s fails: %s", self.target.where, error)
            elif self.stats.last_error:
                LOG.info("scraping %s works again", self.target.where)
        self.stats.last_error = error

    def _connect(self, deadline: float) -> RawConnection:
        if self._connection is None:
            started = time.monotonic()
            try:
                connection = self._open(deadline)
            except ConnectError as error:
                if error.kind is not ErrorKind.AUTH or self.refresh is None:
                    raise
                fresh = self.refresh()
                if fresh.password == self.target.password:
                    raise
                LOG.info("password of %s changed; logging in with the new one", self.target.where)
                self.target = fresh
                connection = self._open(deadline)
            self.stats.connect_time = time.monotonic() - started
            self._connection = connection
        return self._connection

    def _open(self, deadline: float) -> RawConnection:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StreamError(f"{self.target.where} did not answer in time", kind=ErrorKind.TIMEOUT)
        connection = RawConnection(self.target, self.target.timeout, min(remaining, 30.0))
        try:
            connection.login(max(0.05, deadline - time.monotonic()))
        except BaseException:
            connection.close()
            raise
        return connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _round(
        self, connection: RawConnection, round_: tuple[Collector, ...], deadline: float
    ) -> list[Family]:
        now = time.monotonic()
        for name, since in list(self.disabled.items()):
            if now - since > RETRY_DISABLED:
                del self.disabled[name]  # perhaps the ACL was fixed: ask again
        plan = [
            (collector, collector.commands(self.state))
            for collector in round_
            if collector.name not in self.disabled
        ]
        for collector, command_list in plan:
            if not command_list:  # nothing to ask this server (a Sentinel has no CONFIG)
                self.stats.collector_ok.pop(collector.name, None)
        plan = [(collector, commands) for collector, commands in plan if commands]
        commands = [command for _, command_list in plan for command in command_list]
        if not commands:
            return []
        try:
            replies = connection.pipeline(commands, deadline)
        except RedkeepError:
            for collector, _ in plan:
                self.stats.collector_ok[collector.name] = False
            raise
        families: list[Family] = []
        position = 0
        for collector, command_list in plan:
            own = replies[position : position + len(command_list)]
            position += len(command_list)
            families += self._parse(collector, own)
        return families

    def _parse(self, collector: Collector, replies: list) -> list[Family]:
        started = time.monotonic()
        errors = [str(reply) for reply in replies if isinstance(reply, hiredis.ReplyError)]
        ok = not errors
        families: list[Family] = []
        if errors and errors[0].startswith("NOPERM"):
            self.disabled[collector.name] = time.monotonic()
            LOG.warning(
                "collector %s switched off: user '%s' may not run its commands (%s)",
                collector.name,
                self.target.username or "default",
                errors[0],
            )
        elif ok or collector.errors_are_data:
            ok = True
            try:
                families = collector.parse(self.state, replies)
            except (ValueError, TypeError, IndexError, KeyError) as error:
                ok = False
                LOG.warning("collector %s failed: %r", collector.name, error)
        self.stats.collector_ok[collector.name] = ok
        self.stats.collector_time[collector.name] = time.monotonic() - started
        return families

    def _self_metrics(self) -> list[Family]:
        stats = self.stats
        summary = Family("redis_exporter_scrape_duration_seconds", "summary", "Scrape duration")
        summary.add(stats.duration_sum, suffix="_sum").add(stats.scrapes, suffix="_count")
        success = Family("redkeep_exporter_collector_success", "gauge", "Last run of a collector")
        duration = Family(
            "redkeep_exporter_collector_duration_seconds", "gauge", "Parse time per collector"
        )
        enabled = Family(
            "redkeep_exporter_collector_enabled", "gauge", "0 when NOPERM switched it off"
        )
        parts = [name for name, _ in self._extra_parts()]
        for name in [c.name for c in (*ROUND_ONE, *ROUND_TWO)] + parts:
            label = {"collector": name}
            enabled.add(0 if name in self.disabled else 1, label)
            if name in stats.collector_ok:
                success.add(1 if stats.collector_ok[name] else 0, label)
                duration.add(round(stats.collector_time.get(name, 0.0), 6), label)
        return [
            counter("redis_exporter_scrapes_total", "Scrapes", stats.scrapes),
            summary,
            gauge(
                "redis_exporter_last_scrape_duration_seconds", "Last scrape", stats.last_duration
            ),
            gauge(
                "redis_exporter_last_scrape_connect_time_seconds",
                "Time the last (re)connect took",
                stats.connect_time,
            ),
            gauge(
                "redis_exporter_last_scrape_error",
                "1 when the last scrape failed; err is a category, never the raw message",
                1 if stats.last_error else 0,
                err=stats.last_error,
            ),
            gauge(
                "redis_exporter_build_info",
                "redkeep exporter",
                1,
                version=__version__,
                commit_sha="",
                build_date="",
                golang_version="",
            ),
            success,
            duration,
            enabled,
        ]


# The values of redis_exporter_last_scrape_error's `err` label: a few, never a raw message.
ERROR_LABELS = {
    ErrorKind.AUTH: "auth",
    ErrorKind.TIMEOUT: "timeout",
    ErrorKind.PROTOCOL: "protocol",
    ErrorKind.REFUSED: "connection refused",
    ErrorKind.TLS: "tls",
    ErrorKind.CLOSED: "connection closed",
}


def _category(failure: BaseException) -> str:
    """A short, bounded description of a failure, fit for a label value."""
    kind = failure.kind if isinstance(failure, RedkeepError) else ErrorKind.OTHER
    return ERROR_LABELS.get(kind, "error")
