"""`redkeep init`, `up`, `down`, `status`: a hardened Redis bundle, rendered and run locally."""

import datetime as dt
import os
from pathlib import Path

import click

from redkeep.actions.health import bundle_status, certificate_expiry
from redkeep.actions.init import InitReport, init_bundle
from redkeep.actions.stack import run_foreground, stack_dir, start_redis, stop_redis
from redkeep.app import Application
from redkeep.bundle import Bundle, find_bundle
from redkeep.cli.options import json_option
from redkeep.errors import ExitStatus

DirArgument = click.argument(
    "directory", required=False, type=click.Path(path_type=Path, file_okay=False)
)


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--tls-port", type=click.IntRange(1, 65535), help="TLS port (default 6380).")
@click.option("--force", is_flag=True, help="Re-render an existing bundle; secrets are kept.")
@click.pass_obj
def init(app: Application, directory: Path, tls_port: int | None, force: bool) -> None:
    """Render a deployment bundle into DIRECTORY.

    Writes redkeep.yaml, .env (generated secrets, mode 0600), .env.example, redis/redis.conf,
    redis/users.acl, tls/ (CA, server and client certificates) and docker-compose.yml.
    """
    report = init_bundle(directory, force=force, tls_port=tls_port)
    show_init(app, report)


def show_init(app: Application, report: InitReport) -> None:
    app.say(f"bundle {report.root}:")
    for line in report.certificates:
        app.say(f"  {line}")
    if report.new_secrets:
        app.say(f"  generated {', '.join(report.new_secrets)} in .env (mode 0600)")
    if report.kept_secrets:
        app.say(f"  kept existing {', '.join(report.kept_secrets)}")
    app.say(f"  wrote {', '.join(report.written)}")
    if report.checked_with:
        app.say(f"  redis-server {report.checked_with} accepts redis.conf")


@click.command()
@DirArgument
@click.option("--detach", "-d", is_flag=True, help="Return once Redis is healthy.")
@click.pass_obj
def up(app: Application, directory: Path | None, detach: bool) -> int:
    """Run the bundle in DIRECTORY locally (no Docker): TLS-only redis-server with ACL users.

    Without DIRECTORY: the current directory if it holds redkeep.yaml, else ./redkeep-stack.
    Creates the bundle first when there is none. Runs until Ctrl-C unless --detach.
    """
    root = stack_dir(directory, Path(os.getcwd()))
    bundle = Bundle(root)
    if not bundle.exists():
        show_init(app, init_bundle(root))
    running = start_redis(bundle, detach=detach)
    show_running(app, bundle, running.pid)
    if detach:
        app.say(f"running in the background; stop it with `redkeep down {root}`")
        return ExitStatus.OK
    app.say("running; press Ctrl-C to stop")
    status = run_foreground(running, on_stop=lambda: app.say("stopping redis-server ..."))
    app.say("stopped")
    return status


def show_running(app: Application, bundle: Bundle, pid: int) -> None:
    settings = bundle.settings
    host, port = settings.host, settings.redis.tls_port
    expiry = certificate_expiry(bundle, dt.datetime.now(dt.UTC))
    server = expiry.get("server", {})
    rows = [
        ("redis-server", f"pid {pid}, TLS only on {host}:{port} (plaintext port closed)"),
        ("app URL", f"rediss://app:****@{host}:{port}  (REDIS_URL in .env)"),
        ("admin URL", f"rediss://admin:****@{host}:{port}"),
        ("secrets", f"{bundle.env_path} (mode 0600)"),
        ("TLS files", f"{bundle.tls.directory}/ ca.crt client.crt client.key"),
        (
            "certificate",
            f"server expires {server.get('not_after', '?')[:10]} "
            f"({server.get('days_left', '?')} days)",
        ),
        ("log", f"{bundle.run_dir / 'redis.log'}"),
    ]
    app.pairs(rows, title=f"redkeep up: {bundle.root}")


@click.command()
@DirArgument
@click.pass_obj
def down(app: Application, directory: Path | None) -> None:
    """Stop what `redkeep up --detach` started in DIRECTORY."""
    root = stack_dir(directory, Path(os.getcwd()))
    pid = stop_redis(Bundle(root))
    app.say(f"stopped redis-server pid {pid}" if pid else f"nothing running in {root}")


@click.command()
@DirArgument
@json_option
@click.pass_obj
def status(app: Application, directory: Path | None, as_json: bool) -> int:
    """One screen: health, clients, memory, certificate expiry, last backup, audit score."""
    app.json_mode = as_json
    bundle = find_bundle(directory)
    report = bundle_status(bundle, bundle.target("exporter"), dt.datetime.now(dt.UTC))
    if as_json:
        app.emit_json(report)
    else:
        app.pairs(status_rows(report), title=f"redkeep status: {bundle.root}")
    return ExitStatus.OK if report["healthy"] else ExitStatus.FAILURE


def status_rows(report: dict) -> list[tuple[str, str]]:
    rows = [("health", "healthy" if report["healthy"] else f"UNHEALTHY: {report['detail']}")]
    rows.append(("url", report["url"]))
    server = report.get("server", {})
    if server:
        rows += [
            (
                "server",
                f"Redis {server['version']}, {server['role']}, up {server['uptime_seconds']}s",
            ),
            ("clients", str(server["connected_clients"])),
            (
                "memory",
                f"{server['used_memory']} used of {server['maxmemory']} "
                f"({server['maxmemory_policy']})",
            ),
            ("keys", str(server["keys"])),
            (
                "persistence",
                f"last RDB save {server['rdb_last_save']}, "
                f"AOF {'on' if server['aof_enabled'] else 'off'}",
            ),
        ]
    for label, cert in report["certificates"].items():
        text = cert if isinstance(cert, str) else f"{cert['days_left']} days left"
        rows.append((f"{label} certificate", text))
    rows += [
        ("secrets", report["secrets"]),
        ("last backup", report["last_backup"]),
        ("audit score", report["audit_score"]),
    ]
    return rows


COMMANDS = [init, up, down, status]
