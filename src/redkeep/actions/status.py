"""`redkeep status`: one screen on the bundle's Redis (or every node and Sentinel of a
deployment), each service `up` runs, the backup schedule, certificates and the audit score.
Whether Redis answers at all is `actions/health.py`'s judgement, used here too.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from redkeep.actions.health import (
    anchor_node,
    check_health,
    misconf_message,
    proxy_problems,
    save_failure,
)
from redkeep.actions.live import observe_bundle
from redkeep.actions.locate import load_bundle, target_for
from redkeep.actions.node_status import NodeStatus, SentinelStatus, node_statuses, summary
from redkeep.actions.stack import (
    bundle_services,
    deployment_helpers,
    is_deployment,
    listen_port,
    probe_service,
)
from redkeep.app import Application
from redkeep.backup import lastrun
from redkeep.backup.metrics import LastRuns
from redkeep.bundle import Bundle
from redkeep.errors import ExitStatus, RedkeepError
from redkeep.pki.inspect import load_certificate
from redkeep.redis.client import session
from redkeep.redis.target import ConnectionOptions, Target
from redkeep.stack import processes
from redkeep.stack.processes import BACKUP


@dataclass(frozen=True)
class ScheduleStatus:
    """How the bundle's scheduled backups go."""

    interval_minutes: float
    last_result: str | None  # "success", "failure"; None: no run recorded yet
    last_finished: str | None  # ISO 8601, UTC
    last_age_seconds: float | None
    last_error: str | None
    last_dest: str | None
    overdue: bool  # no run finished for two intervals

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServiceStatus:
    """One service `redkeep up` runs, as this machine's processes show it.

    `port`, `listening`, `answering` and `probe` are known for services that serve on a port
    (the exporter, the proxy); `stopped` only for one that listens but does not answer.
    """

    running: bool
    pid: int | None
    stale_pidfile: bool
    up: bool
    port: int | None = None
    listening: bool | None = None
    answering: bool | None = None
    probe: str | None = None  # what the request got, when it was asked
    stopped: bool | None = None  # SIGSTOPped (None: not looked at)
    schedule: ScheduleStatus | None = None  # the backup schedule's runs

    @property
    def serving(self) -> bool:
        """Runs, and listens where it should."""
        return self.listening if self.port is not None else self.running

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "running": self.running,
            "pid": self.pid,
            "stale_pidfile": self.stale_pidfile,
        }
        if self.port is not None:
            data |= {
                "port": self.port,
                "listening": self.listening,
                "answering": self.answering,
                "probe": self.probe,
            }
            if self.stopped is not None:
                data["stopped"] = self.stopped
        data["up"] = self.up
        if self.schedule is not None:
            data |= self.schedule.to_json()
        return data


@dataclass(frozen=True)
class ServerSummary:
    """The INFO fields an operator looks at first."""

    version: str | None
    process_id: int | None
    uptime_seconds: int | None
    role: str | None
    connected_clients: int | None
    used_memory: str | None
    maxmemory: str | None
    maxmemory_policy: str | None
    keys: int
    rdb_last_save_time: int | None
    rdb_last_bgsave_status: str | None
    aof_enabled: bool
    rejected_connections: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InfoFailed:
    """Redis answered PING but not INFO."""

    error: str

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error}


@dataclass(frozen=True)
class CertificateExpiry:
    not_after: str  # ISO 8601
    days_left: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StatusReport:
    """One screen about a bundle (JSON: docs/json.md, `redkeep status`).

    `server` and `audit_score` are there when Redis answered PING, `status` (the exit status
    of the failure) when it did not.
    """

    bundle: str
    url: str
    healthy: bool
    detail: str
    local_pid: int | None  # redis-server's pid on this machine
    run_here: bool  # whether the bundle's processes run (or ran) on this machine
    services: Mapping[str, ServiceStatus]
    certificates: Mapping[str, CertificateExpiry | None]  # None: the file is missing
    secrets: str
    last_backup: str
    server: ServerSummary | InfoFailed | None = None
    audit_score: str | None = None
    status: int | None = None
    topology: str = "standalone"
    nodes: Sequence[NodeStatus] = ()  # every data node (the one server of a standalone)
    sentinels: Sequence[SentinelStatus] = ()
    problems: Sequence[str] = ()  # one line each; empty when healthy

    @property
    def exit_status(self) -> int:
        return ExitStatus.OK if self.healthy else self.status or ExitStatus.FAILURE

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "bundle": self.bundle,
            "url": self.url,
            "healthy": self.healthy,
            "detail": self.detail,
            "local_pid": self.local_pid,
            "run_here": self.run_here,
            "services": {name: item.to_json() for name, item in self.services.items()},
            "certificates": {
                label: expiry.to_json() if expiry else "missing"
                for label, expiry in self.certificates.items()
            },
            "secrets": self.secrets,
            "last_backup": self.last_backup,
        }
        if self.server is not None:
            data |= {"server": self.server.to_json(), "audit_score": self.audit_score}
        if self.status is not None:
            data["status"] = self.status
        data |= {
            "topology": self.topology,
            "nodes": [node.to_json() for node in self.nodes],
            "sentinels": [item.to_json() for item in self.sentinels],
            "problems": list(self.problems),
        }
        return data


@dataclass(frozen=True)
class StatusRequest:
    """The flags of `redkeep status`."""

    directory: Path | None = None
    connection: ConnectionOptions = ConnectionOptions()


def run_status(app: Application, request: StatusRequest) -> StatusReport:
    """The status of the bundle at DIRECTORY (or here), asked as its `exporter` user; of a
    sentinel or cluster bundle's whole deployment unless --url names one server."""
    bundle = load_bundle(app, request.directory)
    now = dt.datetime.now(dt.UTC)
    if is_deployment(bundle) and request.connection.url is None:
        return deployment_status(bundle, now)
    target = target_for(request.connection, bundle, "exporter")
    return bundle_status(bundle, target, now)


def deployment_status(bundle: Bundle, now: dt.datetime) -> StatusReport:
    """One screen about a sentinel or cluster deployment: each node's live role, link,
    offset and lag, slots, each Sentinel's view and quorum; the primary's (or the first
    node's) server summary; certificates, last backup, audit score."""
    services = service_status(bundle, now)
    view = observe_bundle(bundle)
    problems = view.problems()
    helpers = {service.name for service in deployment_helpers(bundle)}
    if any(services[name].running or services[name].stale_pidfile for name in services):
        # The nodes are judged above, by what they answer; the helpers by what they serve.
        problems += service_problems(
            bundle, {name: item for name, item in services.items() if name in helpers}
        )
        if "proxy" in services and services["proxy"].serving:  # else said just above
            problems += proxy_problems(bundle, view)
    pids = {name: item.pid for name, item in services.items()}
    nodes, sentinels = node_statuses(view, pids)
    target, reached = anchor_node(bundle, view)
    anchor = next((node for node in nodes if node.port == target.port), None)
    server = server_summary(target) if reached else None
    any_reached = any(node.reached or node.loading for node in view.nodes)
    return StatusReport(
        bundle=str(bundle.root),
        url=target.display_url,
        healthy=not problems,
        detail="; ".join(problems) or summary(view),
        local_pid=anchor.pid if anchor else None,
        run_here=any(item.running or item.stale_pidfile for item in services.values()),
        services=services,
        certificates=certificate_expiry(bundle, now),
        secrets=str(bundle.env_path),
        last_backup=last_backup(bundle, now),
        server=server,
        audit_score=audit_summary(bundle) if server is not None else None,
        status=None if any_reached else int(ExitStatus.UNREACHABLE),
        topology=view.topology,
        nodes=nodes,
        sentinels=sentinels,
        problems=problems,
    )


def bundle_status(bundle: Bundle, target: Target, now: dt.datetime) -> StatusReport:
    """One screen about a bundle: health of Redis and of every service `redkeep up` runs,
    server, clients, memory, persistence, certificates, last backup, audit score.

    Healthy means Redis answers and, when the bundle runs on this machine, each of its
    services runs and answers (the exporter and the proxy a request, within a few seconds),
    and the backup schedule's last run succeeded no longer than two intervals ago.
    """
    services = service_status(bundle, now)
    run_here = any(item.running or item.stale_pidfile for item in services.values())
    health = check_health(target)
    problems = service_problems(bundle, services) if run_here else []
    detail = health.detail
    if health.cannot_persist:
        why = save_failure(bundle)
        detail = misconf_message(target, health.cannot_persist, str(bundle.data_dir), why)
    if health.healthy and problems:
        detail = "; ".join(problems)
    healthy = health.healthy and not problems
    server, audit_score, status = None, None, None
    local = services["redis"].pid
    if health.healthy:
        server = server_summary(target)
        audit_score = audit_summary(bundle)
        answering = server.process_id if isinstance(server, ServerSummary) else None
        own_port = target.port == bundle.settings.redis.tls_port  # not some other --url
        if own_port and answering and local and int(answering) != local:
            healthy = False
            detail = (
                f"{target.where} is answered by redis-server pid {answering}, not by this "
                f"bundle's (pid {local})"
            )
    else:
        status = health.status
    role = server.role if isinstance(server, ServerSummary) else None
    node = NodeStatus(
        name="redis",
        role={"master": "primary", "slave": "replica"}.get(role or "", role),
        planned_role="standalone",
        host=target.host or target.socket_path,
        port=target.port,
        healthy=healthy,
        detail="ok" if healthy else detail,
        pid=local,
    )
    return StatusReport(
        bundle=str(bundle.root),
        url=health.url,
        healthy=healthy,
        detail=detail,
        local_pid=local,
        run_here=run_here,
        services=services,
        certificates=certificate_expiry(bundle, now),
        secrets=str(bundle.env_path),
        last_backup=last_backup(bundle, now),
        server=server,
        audit_score=audit_score,
        status=status,
        nodes=(node,),
        problems=() if healthy else (problems or [detail]),
    )


def service_status(bundle: Bundle, now: dt.datetime) -> dict[str, ServiceStatus]:
    """Each service the bundle runs: its pid on this machine, and whether it serves.

    A helper serves when its own process listens on its port and answers a request there
    (a TCP connect alone would succeed for a stopped process); redis-server's answer is
    judged by PING (`check_health`), not here. The backup schedule's item says how its last
    run went.
    """
    result = {}
    for service in bundle_services(bundle):
        located = processes.locate(service, bundle.root, bundle.run_dir)
        port = listen_port(bundle, service)
        listening = answering = probe = stopped = None
        if port is not None:
            listening = located.running and port in processes.listening_ports(located.pid)
            answer = probe_service(bundle, service) if listening else None
            answering = answer is not None and answer.answering
            probe = answer.detail if answer else None
            if answer is not None and not answer.answering:
                stopped = processes.is_stopped(located.pid)
        result[service.name] = ServiceStatus(
            running=located.running,
            pid=located.pid,
            stale_pidfile=located.stale is not None,
            up=answering if port is not None else located.running,
            port=port,
            listening=listening,
            answering=answering,
            probe=probe,
            stopped=stopped,
            schedule=schedule_status(bundle, located.pid, now) if service is BACKUP else None,
        )
    return result


def schedule_status(bundle: Bundle, pid: int | None, now: dt.datetime) -> ScheduleStatus:
    """How the bundle's scheduled backups go: the last run's result and age, and whether the
    schedule is overdue (no run finished for two intervals, counted from the last run or from
    when the schedule started, whichever is later)."""
    interval = bundle.settings.backup.interval_minutes
    record = lastrun.read_last_run(bundle.run_dir / lastrun.NAME)
    finished = record.finished if record else None
    started = processes.started_at(pid) if pid else None
    since = max((moment for moment in (finished, started) if moment is not None), default=None)
    return ScheduleStatus(
        interval_minutes=interval,
        last_result=record.result if record else None,
        last_finished=dt.datetime.fromtimestamp(finished, dt.UTC).isoformat() if finished else None,
        last_age_seconds=round(now.timestamp() - finished, 1) if finished else None,
        last_error=record.error if record else None,
        last_dest=record.dest if record else None,
        overdue=since is not None and now.timestamp() - since > 2 * interval * 60,
    )


def service_problems(bundle: Bundle, services: Mapping[str, ServiceStatus]) -> list[str]:
    """What is wrong with the services of a bundle run here, one clause each."""
    labels = {service.name: service.label for service in bundle_services(bundle)}
    root = bundle.root
    problems = []
    down = [name for name, item in services.items() if not item.serving]
    if down:
        problems.append(
            f"{', '.join(labels[name] for name in down)} {'is' if len(down) == 1 else 'are'} "
            f"down; `redkeep up --detach {root}` starts what is missing"
        )
    for name, item in services.items():
        if name in down or item.answering is not False:
            continue
        pid = item.pid
        if item.stopped:
            fix = f"pid {pid} is stopped: `kill -CONT {pid}` resumes it"
        else:
            fix = f"`redkeep up --detach {root}` restarts it"
        problems.append(f"{labels[name]} does not answer ({item.probe}); {fix}")
    backup = services.get("backup")
    schedule = backup.schedule if backup else None
    if backup and backup.running and schedule:
        log = bundle.run_dir / "backup.log"
        every = f"every {schedule.interval_minutes} min"
        if schedule.last_result == "failure":
            problems.append(
                f"the last scheduled backup failed {ago(schedule.last_age_seconds)}: "
                f"{schedule.last_error} (see {log})"
            )
        elif schedule.overdue:
            last = schedule.last_age_seconds
            when = f"the last one {ago(last)}" if last is not None else "none yet"
            problems.append(f"scheduled backups are overdue ({every}, {when}); see {log}")
    return problems


def ago(seconds: float) -> str:
    """'45 s ago', '12 min ago', '3.5 h ago'."""
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def audit_summary(bundle: Bundle) -> str:
    """'85/100 (1 high, 2 low)', from a fresh audit as the bundle's admin user."""
    # Only status needs the audit (and the cryptography it loads).
    from redkeep.actions.audit import bundle_audit  # noqa: PLC0415
    from redkeep.audit.report import UnreachableReport  # noqa: PLC0415

    try:
        report = bundle_audit(bundle)
    except RedkeepError as error:  # e.g. an unreadable audit-accept.txt
        return f"not available: {error.message}"
    if isinstance(report, UnreachableReport):
        return f"not available: {report.error}"
    counts = ", ".join(f"{n} {severity}" for severity, n in report.counts.items() if n)
    return f"{report.score}/100 ({counts or 'no findings'}; `redkeep audit` for details)"


def last_backup(bundle: Bundle, now: dt.datetime) -> str:
    """When the bundle's last backup succeeded, from the textfile metrics of its runs."""
    runs = LastRuns.read(bundle.root / bundle.settings.backup.metrics_file, bundle.settings.name)
    if runs.last_success is None:
        return "none yet (`redkeep backup run`)"
    when = dt.datetime.fromtimestamp(runs.last_success, dt.UTC)
    hours = (now - when).total_seconds() / 3600
    text = f"{when:%Y-%m-%d %H:%M} UTC ({hours:.1f} h ago)"
    if runs.last_ok is False:
        text += "; the latest run FAILED"
    return text


def server_summary(target: Target) -> ServerSummary | InfoFailed:
    """The INFO fields an operator looks at first."""
    with session(target) as client:
        try:
            info = client.info("all")
        except redis.RedisError as error:
            return InfoFailed(str(error).splitlines()[0])
    return ServerSummary(
        version=info.get("valkey_version") or info.get("redis_version"),  # Valkey: 7.2.4
        process_id=info.get("process_id"),
        uptime_seconds=info.get("uptime_in_seconds"),
        role=info.get("role"),
        connected_clients=info.get("connected_clients"),
        used_memory=info.get("used_memory_human"),
        maxmemory=info.get("maxmemory_human"),
        maxmemory_policy=info.get("maxmemory_policy"),
        keys=sum(
            db.get("keys", 0)
            for name, db in info.items()
            if name.startswith("db") and isinstance(db, dict)
        ),
        rdb_last_save_time=info.get("rdb_last_save_time"),
        rdb_last_bgsave_status=info.get("rdb_last_bgsave_status"),
        aof_enabled=bool(info.get("aof_enabled")),
        rejected_connections=info.get("rejected_connections"),
    )


def certificate_expiry(bundle: Bundle, now: dt.datetime) -> dict[str, CertificateExpiry | None]:
    """Days left on the CA, server and client certificates of the bundle (None: missing),
    and on each node's and Sentinel's own of a sentinel or cluster deployment (by name)."""
    result: dict[str, CertificateExpiry | None] = {}
    files = bundle.tls
    labelled = [
        ("ca", files.ca_cert),
        ("server", files.server_cert),
        ("client", files.client_cert()),
    ]
    if is_deployment(bundle):
        labelled += [(node.name, files.node_cert(node.name)) for node in bundle.deployment(
            "exporter", with_password=False).nodes]  # fmt: skip
    for label, path in labelled:
        if not path.exists():
            result[label] = None
            continue
        not_after = load_certificate(path).not_valid_after_utc
        result[label] = CertificateExpiry(not_after.isoformat(), (not_after - now).days)
    return result
