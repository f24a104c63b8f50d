"""`redkeep health` and `redkeep status`: is Redis answering, and how is it doing."""

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import redis

from redkeep.actions.stack import bundle_services, listen_port
from redkeep.backup.metrics import read_metrics
from redkeep.bundle import Bundle
from redkeep.errors import RedkeepError
from redkeep.pki.inspect import load_certificate
from redkeep.redis.client import connect, session
from redkeep.redis.target import Target
from redkeep.stack import processes


@dataclass(frozen=True)
class Health:
    healthy: bool
    url: str
    detail: str
    latency_ms: float | None = None
    status: int = 0  # the exit status of the failure (3: cannot connect)


def check_health(target: Target) -> Health:
    """PING over the target's TLS and ACL settings; never raises for an unhealthy server."""
    started = time.perf_counter()
    try:
        client = connect(target)
    except RedkeepError as error:
        return Health(False, target.display_url, error.message, status=int(error.status))
    latency = (time.perf_counter() - started) * 1000
    client.close()
    return Health(True, target.display_url, "PONG", round(latency, 1))


def bundle_status(bundle: Bundle, target: Target, now: dt.datetime) -> dict[str, Any]:
    """One screen about a bundle: health of Redis and of every service `redkeep up` runs,
    server, clients, memory, persistence, certificates, last backup, audit score.

    Healthy means Redis answers and, when the bundle runs on this machine, each of its
    services runs (and the exporter and the proxy listen on their ports).
    """
    labels = {service.name: service.label for service in bundle_services(bundle)}
    services = service_status(bundle)
    run_here = any(item["running"] or item["stale_pidfile"] for item in services.values())
    health = check_health(target)
    down = [name for name, item in services.items() if not item["up"]] if run_here else []
    detail = health.detail
    if health.healthy and down:
        detail = (
            f"{', '.join(labels[name] for name in down)} {'is' if len(down) == 1 else 'are'} "
            f"down; `redkeep up --detach {bundle.root}` starts what is missing"
        )
    report: dict[str, Any] = {
        "bundle": str(bundle.root),
        "url": health.url,
        "healthy": health.healthy and not down,
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


def service_status(bundle: Bundle) -> dict[str, dict[str, Any]]:
    """Each service the bundle runs: its pid on this machine, and whether it serves.

    A helper serves when its own process listens on its port; redis-server's answer is
    judged by PING (`check_health`), not here.
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
        item["up"] = item.get("listening", located.running)
        result[service.name] = item
    return result


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
    metrics = read_metrics(bundle.root / bundle.settings.backup.metrics_file, bundle.settings.name)
    success = metrics.get("last_success_timestamp_seconds")
    if success is None:
        return "none yet (`redkeep backup run`)"
    when = dt.datetime.fromtimestamp(success, dt.UTC)
    hours = (now - when).total_seconds() / 3600
    text = f"{when:%Y-%m-%d %H:%M} UTC ({hours:.1f} h ago)"
    if metrics.get("last_result") == 0:
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
