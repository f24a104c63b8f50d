"""Collectors: each names the commands it needs and turns their replies into metric families.

Every collector has the same shape (the borgmatic hook pattern): `commands(state)` returns the
commands to pipeline, `parse(state, replies)` the families. The scrape sends every collector's
commands in one round trip; a collector whose command is refused (NOPERM) is switched off.
Metric and label names follow redis_exporter, so its dashboards and alert rules work as is.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redkeep.exporter import mapping
from redkeep.exporter.exposition import Family, gauge
from redkeep.exporter.info import number, parse_info

PREFIX = "redis_"
CONFIG_PARAMS = (
    "maxmemory",
    "maxclients",
    "io-threads",
    "databases",
    "repl-backlog-size",
    "protected-mode",
    "client-output-buffer-limit",
    "min-replicas-to-write",
)


@dataclass
class State:
    """What one scrape knows so far (parsed INFO, CONFIG), shared by the collectors."""

    info: dict[str, dict] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # every plain INFO field, any section

    def set_info(self, info: dict[str, dict]) -> None:
        self.info = info
        self.fields = {  # reversed: a name in two sections resolves to the first
            name: value
            for section in reversed(info.values())
            for name, value in section.items()
            if isinstance(value, str)
        }

    def field(self, name: str) -> str | None:
        return self.fields.get(name)

    @property
    def sentinel(self) -> bool:
        """A Sentinel: no CONFIG, SLOWLOG, LATENCY; SENTINEL instead."""
        return self.field("redis_mode") == "sentinel"

    @property
    def version(self) -> tuple[int, ...]:
        """The server's Redis version (Valkey reports a compatible one), () before any INFO."""
        raw = self.field("redis_version") or ""
        return tuple(int(part) for part in raw.split(".")[:2] if part.isdigit())


@dataclass(frozen=True)
class Collector:
    name: str
    commands: Callable[[State], list[tuple[str, ...]]]
    parse: Callable[[State, list[Any]], list[Family]]
    errors_are_data: bool = False  # error replies (not NOPERM) go to parse, not fail it


# --- INFO --------------------------------------------------------------------------------


def info_commands(state: State) -> list[tuple[str, ...]]:
    # Module sections (Redis 8's Query Engine, Valkey's bundle) come only with EVERYTHING
    # (7.0+); asked for once the previous INFO listed a loaded module.
    if state.version >= (7, 0) and "module" in state.info.get("modules", {}):
        return [("INFO", "EVERYTHING")]
    return [("INFO", "ALL")]


# (INFO field, metric name, help, kind, scale), built once: the scrape loop only looks up.
INFO_METRICS = [
    (field_name, PREFIX + metric, f"INFO {field_name}", kind, mapping.SCALE.get(field_name, 1.0))
    for table, kind in (
        (mapping.GAUGES, "gauge"),
        (mapping.EXTRA_GAUGES, "gauge"),
        (mapping.COUNTERS, "counter"),
    )
    for field_name, metric in table.items()
]


def info_parse(state: State, replies: list[Any]) -> list[Family]:
    state.set_info(parse_info(text(replies[0])))
    fields = state.fields
    families = []
    for field_name, metric, help_text, kind, scale in INFO_METRICS:
        raw = fields.get(field_name)
        if raw is None:
            continue
        value = number(raw)
        if value is not None:
            families.append(
                Family(metric, kind, help_text).add(value * scale if scale != 1 else value)
            )
    uptime = _field_number(state, "uptime_in_seconds")
    if uptime is not None:
        families.append(gauge(PREFIX + "start_time_seconds", "Start time", time.time() - uptime))
    families += [_instance_info(state), *_replication(state), *_keyspace(state)]
    good = _field_number(state, "min_slaves_good_slaves")  # only with min-replicas-to-write
    if good is not None:
        families.append(
            gauge("redkeep_replicas_good", "Replicas within min-replicas-max-lag", good)
        )
    families += [*_commandstats(state), *_errorstats(state), *_latencystats(state)]
    return families


def _field_number(state: State, name: str) -> float | None:
    raw = state.field(name)
    if raw is None:
        return None
    value = number(raw)
    if value is None:
        return None
    return value * mapping.SCALE.get(name, 1.0)


def _instance_info(state: State) -> Family:
    labels = {
        label: next((value for name in fields if (value := state.field(name))), "")
        for label, fields in mapping.INSTANCE_INFO_LABELS.items()
    }
    for extra in mapping.INSTANCE_INFO_OPTIONAL:
        if state.field(extra):
            labels[extra] = state.field(extra)
    return gauge(PREFIX + "instance_info", "Information about the Redis instance", 1, **labels)


def _replication(state: State) -> list[Family]:
    replication = state.info.get("replication", {})
    families = []
    if replication.get("role") == "slave":
        where = {
            "master_host": replication.get("master_host", ""),
            "master_port": replication.get("master_port", ""),
        }
        read_only = {"read_only": "1" if state.field("slave_read_only") != "0" else "0"}
        families.append(gauge(PREFIX + "slave_info", "Replica of", 1, **where, **read_only))
        for field_name, metric in (
            ("master_link_status", "master_link_up"),
            ("master_last_io_seconds_ago", "master_last_io_seconds_ago"),
            ("master_sync_in_progress", "master_sync_in_progress"),
            ("slave_repl_offset", "slave_repl_offset"),
        ):
            value = number(replication.get(field_name, ""))
            if value is not None:
                families.append(gauge(PREFIX + metric, field_name, value, **where))
    offsets = Family(PREFIX + "connected_slave_offset_bytes", "gauge", "Replica offset")
    lags = Family(PREFIX + "connected_slave_lag_seconds", "gauge", "Replica lag")
    for name, value in replication.items():
        if name.startswith("slave") and name[5:].isdigit() and isinstance(value, dict):
            labels = {
                "slave_ip": value.get("ip", ""),
                "slave_port": value.get("port", ""),
                "slave_state": value.get("state", ""),
            }
            offsets.add(float(value.get("offset", 0)), labels)
            lags.add(float(value.get("lag", 0)), labels)
    return [*families, offsets, lags]


def _keyspace(state: State) -> list[Family]:
    families: dict[str, Family] = {}
    for metric, help_text, _ in mapping.KEYSPACE.values():
        families.setdefault(metric, Family(PREFIX + metric, "gauge", help_text))
    seen = state.info.get("keyspace", {})
    databases = int(number(state.config.get("databases", "0")) or 0)
    names = set(seen) | {f"db{index}" for index in range(databases)}
    for db in sorted(names, key=lambda name: int(name[2:]) if name[2:].isdigit() else 0):
        stats = seen.get(db, {})
        for name, (metric, _, divisor) in mapping.KEYSPACE.items():
            if name in stats or name in mapping.KEYSPACE_ALWAYS:
                value = float(stats.get(name, 0))
                families[metric].add(value / divisor if divisor != 1 else value, {"db": db})
    return list(families.values())


def _commandstats(state: State) -> list[Family]:
    calls = Family(PREFIX + "commands_total", "counter", "Calls per command")
    duration = Family(PREFIX + "commands_duration_seconds_total", "counter", "Time per command")
    rejected = Family(PREFIX + "commands_rejected_calls_total", "counter", "Rejected calls")
    failed = Family(PREFIX + "commands_failed_calls_total", "counter", "Failed calls")
    for name, stats in state.info.get("commandstats", {}).items():
        label = {"cmd": name.removeprefix("cmdstat_")}
        calls.add(float(stats.get("calls", 0)), label)
        duration.add(float(stats.get("usec", 0)) / 1e6, label)
        if "rejected_calls" in stats:
            rejected.add(float(stats["rejected_calls"]), label)
            failed.add(float(stats.get("failed_calls", 0)), label)
    return [calls, duration, rejected, failed]


def _errorstats(state: State) -> list[Family]:
    errors = Family(PREFIX + "errors_total", "counter", "Error replies by prefix")
    for name, stats in state.info.get("errorstats", {}).items():
        errors.add(float(stats.get("count", 0)), {"err": name.removeprefix("errorstat_")})
    return [errors]


def _latencystats(state: State) -> list[Family]:
    summary = Family(PREFIX + "latency_percentiles_usec", "summary", "Latency percentiles")
    commandstats = state.info.get("commandstats", {})
    for name, stats in state.info.get("latencystats", {}).items():
        command = name.removeprefix("latency_percentiles_usec_")
        label = {"cmd": command}
        for percentile, value in stats.items():
            summary.add(float(value), label | {"quantile": percentile.removeprefix("p")})
        cmdstat = commandstats.get(f"cmdstat_{command}", {})
        summary.add(float(cmdstat.get("usec", 0)), label, "_sum")
        summary.add(float(cmdstat.get("calls", 0)), label, "_count")
    return [summary]


def text(reply: Any) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


INFO = Collector("info", info_commands, info_parse)


# --- CONFIG --------------------------------------------------------------------------------


def config_commands(state: State) -> list[tuple[str, ...]]:
    if state.sentinel:
        return []
    # The version is the previous scrape's: before the first INFO it is unknown, and one
    # pattern per call is what every version answers (Redis 6.2 refuses several at once).
    if not state.version or state.version < (7, 0):
        return [("CONFIG", "GET", param) for param in CONFIG_PARAMS]
    return [("CONFIG", "GET", *CONFIG_PARAMS)]


def config_parse(state: State, replies: list[Any]) -> list[Family]:
    values: dict[str, str] = {}
    for reply in replies:
        flat = [text(item) for item in reply]
        values.update(zip(flat[::2], flat[1::2], strict=False))
    state.config = values
    families = []
    for param, metric in (
        ("maxclients", "config_maxclients"),
        ("maxmemory", "config_maxmemory"),
        ("io-threads", "config_io_threads"),
        ("repl-backlog-size", "config_repl_backlog_size"),
    ):
        if param in values:
            families.append(gauge(PREFIX + metric, f"CONFIG {param}", float(values[param])))
    families.append(_output_buffer_limits(values.get("client-output-buffer-limit", "")))
    if "min-replicas-to-write" in values:
        families.append(
            gauge(
                "redkeep_config_min_replicas_to_write",
                "CONFIG min-replicas-to-write: below this many good replicas, writes are refused",
                float(values["min-replicas-to-write"]),
            )
        )
    return families


def _output_buffer_limits(raw: str) -> Family:
    """`normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60`."""
    limits = Family(PREFIX + "config_client_output_buffer_limit_bytes", "gauge", "Buffer limits")
    parts = raw.split()
    for start in range(0, len(parts) - 3, 4):
        klass, hard, soft = parts[start], parts[start + 1], parts[start + 2]
        limits.add(float(hard), {"class": klass, "limit": "hard"})
        limits.add(float(soft), {"class": klass, "limit": "soft"})
    return limits


CONFIG = Collector("config", config_commands, config_parse)


# --- SLOWLOG, LATENCY ---------------------------------------------------------------------


def slowlog_commands(state: State) -> list[tuple[str, ...]]:
    if state.sentinel:
        return []
    return [("SLOWLOG", "LEN"), ("SLOWLOG", "GET", "1")]


def slowlog_parse(state: State, replies: list[Any]) -> list[Family]:
    length, last = replies
    families = [gauge(PREFIX + "slowlog_length", "Slow log length", float(length))]
    last_id, last_duration = 0.0, 0.0
    if last:
        last_id, last_duration = float(last[0][0]), float(last[0][2]) / 1e6
    families.append(gauge(PREFIX + "slowlog_last_id", "Last slow log id", last_id))
    families.append(
        gauge(PREFIX + "last_slow_execution_duration_seconds", "Last slow command", last_duration)
    )
    return families


SLOWLOG = Collector("slowlog", slowlog_commands, slowlog_parse)


def latency_commands(state: State) -> list[tuple[str, ...]]:
    if state.sentinel:
        return []
    commands = [("LATENCY", "LATEST")]
    if state.version >= (7, 0):
        commands.append(("LATENCY", "HISTOGRAM"))
    return commands


def latency_parse(state: State, replies: list[Any]) -> list[Family]:
    last = Family(PREFIX + "latency_spike_last", "gauge", "When the last spike happened")
    duration = Family(PREFIX + "latency_spike_duration_seconds", "gauge", "Last spike length")
    for event in replies[0] or []:
        label = {"event_name": text(event[0])}
        last.add(float(event[1]), label)
        duration.add(float(event[2]) / 1000, label)
    families = [last, duration]
    if len(replies) > 1:
        families.append(_histogram(state, replies[1]))
    return families


def _histogram(state: State, reply: list[Any]) -> Family:
    histogram = Family(PREFIX + "commands_latencies_usec", "histogram", "Latency histogram")
    add = histogram.samples.append  # a few hundred samples: the hot loop of the scrape
    commandstats = state.info.get("commandstats", {})
    for name, details in zip(reply[::2], reply[1::2], strict=False):
        command = text(name)
        fields = dict(zip(details[::2], details[1::2], strict=False))
        for bound, cumulative in pairs(fields.get(b"histogram_usec", [])):
            add(("_bucket", {"cmd": command, "le": str(bound)}, cumulative))
        calls = fields.get(b"calls", 0)
        add(("_bucket", {"cmd": command, "le": "+Inf"}, calls))
        usec = number(commandstats.get(f"cmdstat_{command}", {}).get("usec", "0")) or 0
        add(("_sum", {"cmd": command}, usec))
        add(("_count", {"cmd": command}, calls))
    return histogram


def pairs(flat: list[Any]) -> Any:
    return zip(flat[::2], flat[1::2], strict=False)


LATENCY = Collector("latency", latency_commands, latency_parse)


# --- CLIENT LIST (aggregated) -------------------------------------------------------------

CLIENT_GROUPS_CAP = 100


def clients_commands(state: State) -> list[tuple[str, ...]]:
    if state.sentinel:  # a Sentinel's exporter user may not list clients
        return []
    return [("CLIENT", "LIST")]


def clients_parse(state: State, replies: list[Any]) -> list[Family]:
    """Connections grouped by ACL user and client name: never one series per connection."""
    groups: dict[tuple[str, str], list[float]] = {}
    for line in text(replies[0]).splitlines():
        fields = dict(item.partition("=")[::2] for item in line.split())
        key = (fields.get("user", ""), fields.get("name", ""))
        if key not in groups and len(groups) >= CLIENT_GROUPS_CAP:
            key = ("overflow", "overflow")
        count, output, query, idle = groups.setdefault(key, [0, 0, 0, 0])
        groups[key] = [
            count + 1,
            output + float(fields.get("omem", 0)),
            query + float(fields.get("qbuf", 0)),
            max(idle, float(fields.get("idle", 0))),
        ]
    names = (
        ("redkeep_client_connections", "Connections by ACL user and client name"),
        ("redkeep_client_output_buffer_bytes", "Output buffer memory by user and name"),
        ("redkeep_client_query_buffer_bytes", "Query buffer bytes by user and name"),
        ("redkeep_client_max_idle_seconds", "Longest idle connection by user and name"),
    )
    families = [Family(name, "gauge", text) for name, text in names]
    for (user, name), values in groups.items():
        for family, value in zip(families, values, strict=True):
            family.add(value, {"user": user, "name": name})
    return families


CLIENTS = Collector("clients", clients_commands, clients_parse)


def cluster_commands(state: State) -> list[tuple[str, ...]]:
    return [("CLUSTER", "INFO")] if state.field("cluster_enabled") == "1" else []


def cluster_parse(state: State, replies: list[Any]) -> list[Family]:
    families = []
    for line in text(replies[0]).splitlines():
        name, _, raw = line.partition(":")
        value = number(raw)
        if value is not None and name.startswith("cluster_"):
            # `cluster_stats_messages_auth-ack_sent` (after a failover): '-' is no metric name
            # character, and one bad name makes Prometheus refuse the whole page.
            metric = mapping.CLUSTER_INFO.get(name, name).replace("-", "_")
            families.append(gauge(PREFIX + metric, f"CLUSTER INFO {name}", value))
    return families


CLUSTER = Collector("cluster", cluster_commands, cluster_parse)
