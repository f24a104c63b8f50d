"""`redkeep init`, `up`, `down`, `status`: a hardened Redis bundle, rendered and run locally."""

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path

import click

from redkeep.actions.init import InitReport, init_bundle
from redkeep.actions.stack import (
    NOT_RUN,
    Outcome,
    UpReport,
    bring_down,
    bring_up,
    find_stack,
    open_stack,
    run_until_stopped,
)
from redkeep.actions.status import (
    InfoFailed,
    ScheduleStatus,
    ServerSummary,
    StatusReport,
    StatusRequest,
    ago,
    certificate_expiry,
    run_status,
)
from redkeep.app import Application
from redkeep.bundle import CONFIG_NAME, Bundle
from redkeep.cli.options import connection_options, json_option
from redkeep.errors import ExitStatus, UsageError
from redkeep.redis.target import ConnectionOptions
from redkeep.stack.processes import BACKUP, EXPORTER, PROXY, REDIS


def bundle_directory(command: Callable) -> Callable:
    """DIRECTORY as an argument or as --dir (both spellings work, as for the other commands)."""

    @click.argument("directory", required=False, type=click.Path(path_type=Path, file_okay=False))
    @click.option(
        "--dir",
        "dir_option",
        type=click.Path(path_type=Path, file_okay=False),
        help="The bundle directory (same as the DIRECTORY argument).",
    )
    @functools.wraps(command)
    def wrapper(*args, directory: Path | None, dir_option: Path | None, **kwargs):
        if directory and dir_option and directory != dir_option:
            raise UsageError(
                f"two directories given ({directory} and --dir {dir_option}); pass one"
            )
        return command(*args, directory=directory or dir_option, **kwargs)

    return wrapper


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--tls-port", type=click.IntRange(1, 65535), help="TLS port (default 6380).")
@click.option("--force", is_flag=True, help="Re-render an existing bundle; secrets are kept.")
@click.option(
    "--topology",
    type=click.Choice(["standalone", "sentinel", "cluster"]),
    help="One server (default), a primary with replicas and Sentinels, or a Redis Cluster.",
)
@click.option(
    "--replicas",
    type=click.IntRange(0, 10),
    help="sentinel: replicas of the primary (default 2); cluster: per shard (default 1).",
)
@click.option("--sentinels", type=click.IntRange(1, 9), help="sentinel: Sentinels (default 3).")
@click.option("--shards", type=click.IntRange(3, 16), help="cluster: shards (default 3).")
@click.pass_obj
def init(
    app: Application,
    directory: Path,
    tls_port: int | None,
    force: bool,
    **deployment: object,
) -> None:
    """Render a deployment bundle into DIRECTORY.

    Writes redkeep.yaml, .env (generated secrets, mode 0600), .env.example, redis/redis.conf,
    redis/users.acl, tls/ (CA, server and client certificates) and docker-compose.yml. With
    --topology sentinel or cluster: redis/nodes/NAME/ (each node's redis.conf and users.acl,
    each Sentinel's sentinel.conf) and tls/nodes/ (each one's certificate) instead.
    """
    report = init_bundle(directory, force=force, tls_port=tls_port, deployment=deployment)
    show_init(app, report)


def show_init(app: Application, report: InitReport) -> None:
    app.say(f"bundle {report.root}:")
    for line in report.certificates:
        app.say(f"  {line}")
    if report.new_secrets:
        app.say(f"  generated {', '.join(report.new_secrets)} in .env (mode 0600)")
    if report.kept_secrets:
        app.say(f"  kept existing {', '.join(report.kept_secrets)}")
    if report.new_secrets and report.kept_hashes:
        where = "redis/users.acl" if report.topology == "standalone" else "the nodes' files"
        app.say(
            f"  passwords already in {where} stay valid next to the new ones; remove them "
            "with `redkeep users finish-rotation USER` once clients use .env"
        )
    for note in report.notes:
        app.say(f"  {note}")
    app.say(f"  wrote {', '.join(report.written)}")
    if report.checked_with:
        what = "redis.conf" if report.topology == "standalone" else "the node configurations"
        app.say(f"  redis-server {report.checked_with} accepts {what}")


@click.command()
@bundle_directory
@click.option("--detach", "-d", is_flag=True, help="Return once everything serves.")
@click.pass_obj
def up(app: Application, directory: Path | None, detach: bool) -> int:
    """Run the bundle in DIRECTORY locally (no Docker): TLS-only redis-server with ACL users,
    the exporter, the proxy and the backup schedule.

    Without DIRECTORY: the current directory if it holds redkeep.yaml, else ./redkeep-stack.
    Creates the bundle first when there is none. Runs until Ctrl-C unless --detach. With
    --detach it also brings a partly stopped stack back: it starts what is missing, keeps what
    runs (and restarts a helper that runs but does not serve), and says which.
    """
    bundle, created = open_stack(app, directory)
    if created is not None:
        show_init(app, created)
    report = bring_up(bundle, detach=detach, on_wait=_waiting(app))
    for note in report.notes:
        app.say(note)
    for outcome in report.stopped:
        app.say(
            f"stopped {outcome.service.label} pid {outcome.pid}: {outcome.why} in {CONFIG_NAME}"
        )
    show_up(app, bundle, report)
    if detach:
        app.say(f"running in the background; stop it with `redkeep down {bundle.root}`")
        return ExitStatus.OK
    app.say("running; press Ctrl-C to stop")
    run_until_stopped(
        bundle, report, on_stopping=lambda: app.say("stopping ..."), on_note=app.error
    )
    app.say("stopped")
    return ExitStatus.OK


def _waiting(app: Application) -> Callable[[str], None]:
    return lambda holder: app.say(f"waiting for {holder} to finish ...")


ACTIONS = {"started": "started", "kept": "already running, kept", "restarted": "restarted"}


def show_up(app: Application, bundle: Bundle, report: UpReport) -> None:
    if report.live is not None:
        show_deployment_up(app, bundle, report)
        return
    redis = report.outcome(REDIS)
    show_running(app, bundle, redis.pid, ACTIONS[redis.action])
    show_helpers(app, bundle, report.outcomes[1:])
    by_action: dict[str, list[str]] = {}
    for outcome in report.outcomes + report.stopped:
        by_action.setdefault(outcome.action, []).append(outcome.service.label)
    app.say("; ".join(f"{action}: {', '.join(names)}" for action, names in by_action.items()))


def show_helpers(app: Application, bundle: Bundle, outcomes: list[Outcome]) -> None:
    """One line per helper `up` runs: where it serves, its pid, what `up` did, its log."""
    settings = bundle.settings
    for outcome in outcomes:
        state = f"pid {outcome.pid}, {ACTIONS[outcome.action]}"
        if outcome.why:
            state += f" ({outcome.why})"
        log = bundle.run_dir / f"{outcome.service.name}.log"
        if outcome.service is EXPORTER:
            scheme = "https" if settings.exporter.tls_cert_file else "http"
            where = f"{scheme}://{settings.exporter.listen}/metrics"
            app.say(f"exporter on {where} ({state}; log {log})")
        elif outcome.service is PROXY:
            proxy = settings.proxy
            tls = "TLS" if proxy.tls else "plain TCP"
            metrics = f"http://{proxy.metrics_listen}/metrics" if proxy.metrics_listen else "off"
            app.say(
                f"proxy on {proxy.listen} ({tls}; {state}; access log {proxy.access_log}, "
                f"metrics {metrics})"
            )
        elif outcome.service is BACKUP:
            every = settings.backup.interval_minutes
            app.say(f"backups every {every} min ({state}; log {log})")


def show_deployment_up(app: Application, bundle: Bundle, report: UpReport) -> None:
    """One row per node and Sentinel (its live role, address, pid, log), then how to reach it."""
    live = report.live
    assert live is not None
    roles = {node.name: node.role for node in live.nodes}
    rows = []
    nodes = [outcome for outcome in report.outcomes if outcome.service.node]
    for outcome in nodes:
        name = outcome.service.name
        role = roles.get(name, "sentinel")
        planned = next((node for node in node_plan(bundle) if node.name == name), None)
        address = f"127.0.0.1:{planned.port}" if planned else "?"
        if planned and planned.bus_port:
            address += f" (bus {planned.bus_port})"
        rows.append((name, role, address, outcome.pid, ACTIONS[outcome.action],
                     str(bundle.run_dir / f"{name}.log")))  # fmt: skip
    settings = bundle.settings
    app.table(
        ["node", "role", "TLS address", "pid", "state", "log"],
        rows,
        title=f"redkeep up: {bundle.root} ({live.topology}, TLS only, no plaintext port)",
    )
    if live.topology == "sentinel":
        primary = live.live_primary()
        app.say(
            f"primary {primary.name if primary else '?'}; clients ask the Sentinels for "
            f'"{settings.deployment.master_name}" as the app user (see docs/sentinel.md)'
        )
    else:
        app.say("cluster_state ok, all 16384 slots served; any node redirects clients")
    show_helpers(app, bundle, [item for item in report.outcomes if not item.service.node])
    if report.outcome(PROXY) is not None:
        app.say(
            "the proxy follows the primary the Sentinels name: applications connect to it as "
            "to one server, and land on the new primary after a failover"
        )
    app.say(f"secrets {bundle.env_path} (mode 0600); TLS files {bundle.tls.directory}/")
    app.say(NOT_RUN[live.topology])


def node_plan(bundle: Bundle) -> tuple:
    from redkeep.render.nodes import planned  # noqa: PLC0415 - only deployments need it

    return planned(bundle.settings)


def show_running(app: Application, bundle: Bundle, pid: int, action: str) -> None:
    settings = bundle.settings
    server = certificate_expiry(bundle, dt.datetime.now(dt.UTC))["server"]
    rows = [
        (
            "redis-server",
            f"pid {pid} ({action}), TLS only on port {settings.redis.tls_port} (no plaintext port)",
        ),
        ("app URL", f"{bundle.target('app').display_url}  (REDIS_URL in .env)"),
        ("admin URL", bundle.target("admin").display_url),
        ("secrets", f"{bundle.env_path} (mode 0600)"),
        ("TLS files", f"{bundle.tls.directory}/ ca.crt client.crt client.key"),
        ("certificate", f"server expires {server.not_after[:10] if server else '?'}"),
        ("log", f"{bundle.run_dir / 'redis.log'}"),
    ]
    app.pairs(rows, title=f"redkeep up: {bundle.root}")


@click.command()
@bundle_directory
@click.option(
    "--force",
    is_flag=True,
    help="If redis-server cannot save on the way down (a full disk), stop it without saving.",
)
@click.pass_obj
def down(app: Application, directory: Path | None, force: bool) -> None:
    """Stop every process the bundle in DIRECTORY runs (what `redkeep up` started).

    redis-server saves its data as it stops, and refuses to stop when that save fails (a full
    disk): `down` then says so. Free disk space and run it again, or pass --force to stop it
    without saving (SHUTDOWN NOSAVE): writes since its last successful save are lost unless
    the AOF holds them.
    """
    bundle = find_stack(app, directory)
    report = bring_down(bundle, on_wait=_waiting(app), force=force)
    for note in report.notes:
        app.say(note)
    for service, pid in report.stopped:
        app.say(f"stopped {service.label} pid {pid}")
    if not report.stopped:
        app.say(f"nothing running in {bundle.root}")
    elif REDIS not in {service for service, _ in report.stopped} and not report.nodes:
        app.say("redis-server was not running")


@click.command()
@bundle_directory
@connection_options
@json_option
@click.pass_obj
def status(
    app: Application, directory: Path | None, connection: ConnectionOptions, as_json: bool
) -> int:
    """One screen: health of Redis and of each service `up` runs (exporter, proxy, backup
    schedule), clients, memory, certificate expiry, last backup, audit score.

    Exit 0 when healthy; 3 when Redis cannot be reached or refuses the login; 1 when it
    answers but something is wrong (a service of the bundle is down, for one).
    """
    app.json_mode = as_json
    report = run_status(app, StatusRequest(directory=directory, connection=connection))
    if as_json:
        app.emit_json(report.to_json())
    elif report.topology != "standalone":
        show_deployment_status(app, report)
    else:
        app.pairs(status_rows(report), title=f"redkeep status: {report.bundle}")
    return report.exit_status


def show_deployment_status(app: Application, report: StatusReport) -> None:
    """A table of the nodes, one of the Sentinels, then the bundle's other facts."""
    rows = []
    for node in report.nodes:
        if node.slots:
            what = f"slots {' '.join(node.slots)}"
        elif node.role == "replica":
            what = f"of {node.primary}, link {node.link}, {node.lag_bytes or 0} bytes behind"
        elif node.role == "primary":
            what = f"{node.replicas} replicas connected"
        else:
            what = ""
        role = node.role or "DOWN"
        if node.role and node.role != node.planned_role:
            role += f" (planned {node.planned_role})"
        rows.append((node.name, role, f"{node.host}:{node.port}", node.pid or "",
                     node.offset, what, "ok" if node.healthy else node.detail))  # fmt: skip
    title = f"redkeep status: {report.bundle} ({report.topology})"
    app.table(["node", "role", "address", "pid", "offset", "replication", "health"], rows, title)
    if report.sentinels:
        app.table(
            ["sentinel", "address", "pid", "primary", "quorum", "health"],
            [
                (
                    item.name,
                    f"{item.host}:{item.port}",
                    item.pid or "",
                    item.primary,
                    f"{item.quorum} ({'ok' if item.quorum_ok else 'NOT reached'})",
                    "ok" if item.healthy else item.detail,
                )  # fmt: skip
                for item in report.sentinels
            ],
        )
    health = "healthy: " + report.detail if report.healthy else "UNHEALTHY"
    rows = [("health", health)] + [("problem", line) for line in report.problems]
    helpers = {name: item for name, item in report.services.items() if name in SERVICE_NAMES}
    rows += service_rows(dataclasses.replace(report, services=helpers))  # the nodes are above
    server = report.server
    if isinstance(server, ServerSummary):
        rows.append(("server", f"Redis {server.version} at {report.url}"))
    for label, cert in report.certificates.items():
        rows.append((f"{label} certificate", f"{cert.days_left} days left" if cert else "missing"))
    rows += [
        ("secrets", report.secrets),
        ("last backup", report.last_backup),
        ("audit score", report.audit_score or "not available (no node answers)"),
    ]
    app.pairs(rows)


def status_rows(report: StatusReport) -> list[tuple[str, str]]:
    rows = [("health", "healthy" if report.healthy else f"UNHEALTHY: {report.detail}")]
    rows.append(("url", report.url))
    rows += service_rows(report)
    server = report.server
    if isinstance(server, InfoFailed):
        rows.append(("server", f"INFO failed: {server.error}"))
    elif server is not None:
        rows += [
            ("server", f"Redis {server.version}, {server.role}, up {server.uptime_seconds}s"),
            ("clients", str(server.connected_clients)),
            ("memory", f"{server.used_memory} used of {server.maxmemory}"),
            ("eviction", server.maxmemory_policy),
            ("keys", str(server.keys)),
            ("persistence", _persistence(server)),
        ]
    for label, cert in report.certificates.items():
        text = f"{cert.days_left} days left" if cert else "missing"
        rows.append((f"{label} certificate", text))
    rows += [
        ("secrets", report.secrets),
        ("last backup", report.last_backup),
        ("audit score", report.audit_score or "not available (Redis does not answer)"),
    ]
    return rows


SERVICE_NAMES = {"redis": "redis-server", "exporter": "exporter", "proxy": "proxy"}
SERVICE_NAMES["backup"] = "backup schedule"


def service_rows(report: StatusReport) -> list[tuple[str, str]]:
    """One row per service `redkeep up` runs, as this machine's processes show them."""
    if not report.run_here:
        return [("services", f"not run on this machine (`redkeep up {report.bundle}`)")]
    rows = []
    for name, item in report.services.items():
        if not item.running:
            text = "DOWN: not running"
        elif item.listening is False:
            text = f"DOWN: pid {item.pid} does not listen on port {item.port}"
        elif item.answering is False:
            stopped = " (stopped: `kill -CONT` resumes it)" if item.stopped else ""
            text = f"NOT ANSWERING: pid {item.pid}, port {item.port}: {item.probe}"
            text += stopped
        else:
            text = f"pid {item.pid}" + (f", port {item.port}" if item.port is not None else "")
        if item.schedule is not None:
            text += f"; {schedule_text(item.schedule)}"
        rows.append((SERVICE_NAMES[name], text))
    return rows


def schedule_text(schedule: ScheduleStatus) -> str:
    """'every 5 min, last run ok 3 min ago (to DEST)' or what went wrong."""
    text = f"every {schedule.interval_minutes} min"
    if schedule.last_result is None:
        text += ", no run recorded yet"
    elif schedule.last_result == "success":
        text += f", last run ok {ago(schedule.last_age_seconds)} (to {schedule.last_dest})"
    else:
        text += f", last run FAILED {ago(schedule.last_age_seconds)}: {schedule.last_error}"
    if schedule.overdue:
        text += "; OVERDUE"
    return text


def _persistence(server: ServerSummary) -> str:
    saved = server.rdb_last_save_time
    when = (
        dt.datetime.fromtimestamp(int(saved), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if saved
        else "never"
    )
    aof = "on" if server.aof_enabled else "off"
    return f"last RDB save {when} ({server.rdb_last_bgsave_status}), AOF {aof}"
