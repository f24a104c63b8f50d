"""`redkeep health` and `redkeep status`: is Redis answering, and how is it doing."""

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import redis

from redkeep.actions.stack import bundle_services, listen_port, probe_service
from redkeep.backup import lastrun
from redkeep.backup.metrics import LastRuns
from redkeep.bundle import Bundle
from redkeep.errors import ExitStatus, RedkeepError
from redkeep.pki.inspect import load_certificate
from redkeep.redis.client import client_for, explain_failure, session
from redkeep.redis.explain import first_line
from redkeep.redis.target import Target
from redkeep.stack import processes, redis_server
from redkeep.stack.processes import BACKUP


@dataclass(frozen=True)
class Health:
    healthy: bool
    url: str
    detail: str
    latency_ms: float | None = None
    status: int = 0  # the exit status of the failure (3: cannot connect)
    cannot_persist: str = ""  # Redis' MISCONF reply: a failed save or AOF write stops writes


def check_health(target: Target) -> Health:
    """PING over the target's TLS and ACL settings; never raises for an unhealthy server.

    A server that cannot persist (MISCONF, a full disk) answers PING with an error: it is
    reached, so that is exit status 1 with what to do, not "cannot connect" (3).
    """
    started = time.perf_counter()
    try:
        client = client_for(target)
    except RedkeepError as error:
        return Health(False, target.display_url, error.message, status=int(error.status))
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        if str(error).startswith("MISCONF"):
            reply = first_line(str(error))
            message = misconf_message(target, reply)
            status = int(ExitStatus.FAILURE)  # reached and logged in: not "cannot connect"
            return Health(False, target.display_url, message, status=status, cannot_persist=reply)
        failure = explain_failure(error, target)
        return Health(False, target.display_url, failure.message, status=int(failure.status))
    finally:
        client.close()
    latency = (time.perf_counter() - started) * 1000
    return Health(True, target.display_url, "PONG", round(latency, 1))


def misconf_message(
    target: Target, reply: str, data_dir: str = "its data directory", why: str = ""
) -> str:
    """What a MISCONF `reply` means and what to do; `why` the cause, if known."""
    if "AOF" in reply:  # "MISCONF Errors writing to the AOF file: No space left on device"
        what, why = "writing its AOF failed", reply.split(":", 1)[-1].strip()
    else:
        what = "its last RDB save failed"
    return (
        f"MISCONF: {target.where} cannot persist to disk ({what}{': ' + why if why else ''}), "
        f"so it refuses writes and even PING; free disk space in {data_dir}"
    )


def save_failure(bundle: Bundle) -> str:
    """Why the bundle's redis-server could not save, from the end of its log."""
    log = bundle.run_dir / "redis.log"
    warnings = [
        line.split(" # ", 1)[1]
        for line in redis_server.log_tail(log, 30)
        if " # " in line and "Background saving error" not in line
    ]
    return f"{warnings[-1]}, see {log}" if warnings else f"see {log}"


def bundle_status(bundle: Bundle, target: Target, now: dt.datetime) -> dict[str, Any]:
    """One screen about a bundle: health of Redis and of every service `redkeep up` runs,
    server, clients, memory, persistence, certificates, last backup, audit score.

    Healthy means Redis answers and, when the bundle runs on this machine, each of its
    services runs and answers (the exporter and the proxy a request, within a few seconds),
    and the backup schedule's last run succeeded no longer than two intervals ago.
    """
    services = service_status(bundle, now)
    run_here = any(item["running"] or item["stale_pidfile"] for item in services.values())
    health = check_health(target)
    problems = service_problems(bundle, services) if run_here else []
    detail = health.detail
    if health.cannot_persist:
        why = save_failure(bundle)
        detail = misconf_message(target, health.cannot_persist, str(bundle.data_dir), why)
    if health.healthy and problems:
        detail = "; ".join(problems)
    report: dict[str, Any] = {
        "bundle": str(bundle.root),
        "url": health.url,
        "healthy": health.healthy and not problems,
        "detail": detail,
        "local_pid": services["redis"]["pid"],
        "run_here": run_here,
        "services": services,
        "certificates": certificate_expiry(bundle, now),
        "secrets": str(bundle.env_path),
        "last_backup": last_backup(bundle, now),
    }
    if health.healthy:
        report["server"] = server_summary(target)
        report["audit_score"] = audit_summary(bundle)
        answering, local = report["server"].get("process_id"), services["redis"]["pid"]
        own_port = target.port == bundle.settings.redis.tls_port  # not some other --url
        if own_port and answering and local and int(answering) != local:
            report["healthy"] = False
            report["detail"] = (
                f"{target.where} is answered by redis-server pid {answering}, not by this "
                f"bundle's (pid {local})"
            )
    else:
        report["status"] = health.status
    return report


def service_status(bundle: Bundle, now: dt.datetime) -> dict[str, dict[str, Any]]:
    """Each service the bundle runs: its pid on this machine, and whether it serves.

    A helper serves when its own process listens on its port and answers a request there
    (a TCP connect alone would succeed for a stopped process); redis-server's answer is
    judged by PING (`check_health`), not here. The backup schedule's item says how its last
    run went.
    """
    result = {}
    for service in bundle_services(bundle):
        located = processes.locate(service, bundle.root, bundle.run_dir)
        item: dict[str, Any] = {
            "running": located.running,
            "pid": located.pid,
            "stale_pidfile": located.stale is not None,
        }
        port = listen_port(bundle, service)
        if port is not None:
            item["port"] = port
            item["listening"] = located.running and port in processes.listening_ports(located.pid)
            answer = probe_service(bundle, service) if item["listening"] else None
            item["answering"] = answer is not None and answer.answering
            item["probe"] = answer.detail if answer else None
            if answer is not None and not answer.answering:
                item["stopped"] = processes.is_stopped(located.pid)
        item["up"] = item.get("answering", located.running)
        if service is BACKUP:
            item |= schedule_status(bundle, located.pid, now)
        result[service.name] = item
    return result


def schedule_status(bundle: Bundle, pid: int | None, now: dt.datetime) -> dict[str, Any]:
    """How the bundle's scheduled backups go: the last run's result and age, and whether the
    schedule is overdue (no run finished for two intervals, counted from the last run or from
    when the schedule started, whichever is later)."""
    interval = bundle.settings.backup.interval_minutes
    record = lastrun.read_last_run(bundle.run_dir / lastrun.NAME)
    finished = record.finished if record else None
    started = processes.started_at(pid) if pid else None
    since = max((moment for moment in (finished, started) if moment is not None), default=None)
    return {
        "interval_minutes": interval,
        "last_result": record.result if record else None,
        "last_finished": dt.datetime.fromtimestamp(finished, dt.UTC).isoformat()
        if finished
        else None,
        "last_age_seconds": round(now.timestamp() - finished, 1) if finished else None,
        "last_error": record.error if record else None,
        "last_dest": record.dest if record else None,
        "overdue": since is not None and now.timestamp() - since > 2 * interval * 60,
    }


def service_problems(bundle: Bundle, services: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong with the services of a bundle run here, one clause each."""
    labels = {service.name: service.label for service in bundle_services(bundle)}
    root = bundle.root
    problems = []
    down = [name for name, item in services.items() if not item.get("listening", item["running"])]
    if down:
        problems.append(
            f"{', '.join(labels[name] for name in down)} {'is' if len(down) == 1 else 'are'} "
            f"down; `redkeep up --detach {root}` starts what is missing"
        )
    for name, item in services.items():
        if name in down or item.get("answering", True):
            continue
        pid = item["pid"]
        if item.get("stopped"):
            fix = f"pid {pid} is stopped: `kill -CONT {pid}` resumes it"
        else:
            fix = f"`redkeep up --detach {root}` restarts it"
        problems.append(f"{labels[name]} does not answer ({item['probe']}); {fix}")
    schedule = services.get("backup")
    if schedule and schedule["running"]:
        log = bundle.run_dir / "backup.log"
        every = f"every {schedule['interval_minutes']} min"
        if schedule["last_result"] == "failure":
            problems.append(
                f"the last scheduled backup failed {ago(schedule['last_age_seconds'])}: "
                f"{schedule['last_error']} (see {log})"
            )
        elif schedule["overdue"]:
            last = schedule["last_age_seconds"]
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
    from redkeep.actions.audit import bundle_audit  # noqa: PLC0415 - only status needs it

    try:
        report = bundle_audit(bundle)
    except RedkeepError as error:  # e.g. an unreadable audit-accept.txt
        return f"not available: {error.message}"
    if "error" in report:
        return f"not available: {report['error']}"
    counts = ", ".join(f"{n} {severity}" for severity, n in report["counts"].items() if n)
    return f"{report['score']}/100 ({counts or 'no findings'}; `redkeep audit` for details)"


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


def server_summary(target: Target) -> dict[str, Any]:
    """The INFO fields an operator looks at first."""
    with session(target) as client:
        try:
            info = client.info("all")
        except redis.RedisError as error:
            return {"error": str(error).splitlines()[0]}
    return {
        "version": info.get("valkey_version") or info.get("redis_version"),  # Valkey: 7.2.4
        "process_id": info.get("process_id"),
        "uptime_seconds": info.get("uptime_in_seconds"),
        "role": info.get("role"),
        "connected_clients": info.get("connected_clients"),
        "used_memory": info.get("used_memory_human"),
        "maxmemory": info.get("maxmemory_human"),
        "maxmemory_policy": info.get("maxmemory_policy"),
        "keys": sum(
            db.get("keys", 0)
            for name, db in info.items()
            if name.startswith("db") and isinstance(db, dict)
        ),
        "rdb_last_save_time": info.get("rdb_last_save_time"),
        "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
        "aof_enabled": bool(info.get("aof_enabled")),
        "rejected_connections": info.get("rejected_connections"),
    }


def certificate_expiry(bundle: Bundle, now: dt.datetime) -> dict[str, Any]:
    """Days left on the CA, server and client certificates of the bundle."""
    result = {}
    files = bundle.tls
    for label, path in (
        ("ca", files.ca_cert),
        ("server", files.server_cert),
        ("client", files.client_cert()),
    ):
        if not path.exists():
            result[label] = "missing"
            continue
        not_after = load_certificate(path).not_valid_after_utc
        result[label] = {"not_after": not_after.isoformat(), "days_left": (not_after - now).days}
    return result
