"""`redkeep certs`: init, issue, show, verify, rotate."""

from pathlib import Path

import click

from redkeep.actions import certs as actions
from redkeep.app import Application
from redkeep.cli.options import connection_options, dir_option, json_option
from redkeep.errors import ExitStatus, RedkeepError
from redkeep.redis.target import ConnectionOptions

PathArg = click.Path(path_type=Path)


@click.group(name="certs")
def certs_group() -> None:
    """The TLS PKI: a CA, server and client certificates, live rotation."""


@certs_group.command(name="init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--force", is_flag=True, help="Replace an existing CA (invalidates its certificates)."
)
@click.pass_obj
def init_command(app: Application, directory: Path, force: bool) -> None:
    """Create a CA, a server and a client certificate in DIRECTORY/tls/ (keys 0600).

    Server names, key type and lifetimes come from DIRECTORY/redkeep.yaml when present.
    """
    created = actions.run_init(directory, force)
    app.say(
        f"created {created.directory}/: ca.crt ca.key server.crt server.key client.crt client.key"
    )
    app.say(f"server names: {', '.join(created.server_names)}; key: {created.key_type}")


@certs_group.command()
@click.argument("name")
@dir_option
@click.option("--days", type=click.IntRange(1, 3650), help="Lifetime (default: tls.cert_days).")
@click.pass_obj
def issue(app: Application, name: str, directory: Path | None, days: int | None) -> None:
    """Issue another client certificate NAME.crt / NAME.key from the bundle's CA."""
    cert, key = actions.run_issue(app, name, directory, days)
    app.say(f"issued {cert} and {key} (mode 0600)")


@certs_group.command()
@click.argument("files", nargs=-1, type=PathArg)
@dir_option
@json_option
@click.pass_obj
def show(app: Application, files: tuple[Path, ...], directory: Path | None, as_json: bool) -> None:
    """Subject, names, issuer, expiry and days left of FILES (default: the bundle's)."""
    app.json_mode = as_json
    infos = actions.run_show(app, actions.CertsRequest(files=files, directory=directory))
    if as_json:
        app.emit_json([info.as_dict() for info in infos])
        return
    rows = [
        (
            Path(info.path).name,
            info.subject,
            ", ".join(info.names) or "-",
            info.issuer,
            info.not_after.strftime("%Y-%m-%d"),
            info.days_left,
            info.key,
        )
        for info in infos
    ]
    app.table(("file", "subject", "names", "issuer", "expires", "days left", "key"), rows)


@certs_group.command()
@click.argument("files", nargs=-1, type=PathArg)
@click.option(
    "--ca", "ca_path", type=PathArg, help="CA certificate (default: the bundle's ca.crt)."
)
@dir_option
@json_option
@click.pass_obj
def verify(
    app: Application,
    files: tuple[Path, ...],
    ca_path: Path | None,
    directory: Path | None,
    as_json: bool,
) -> int:
    """Check chain, validity dates and key match; same verdicts as `openssl verify`.

    Exit 1 if any certificate fails.
    """
    app.json_mode = as_json
    request = actions.CertsRequest(files=files, ca_path=ca_path, directory=directory)
    verdicts = actions.run_verify(app, request)
    if as_json:
        app.emit_json([verdict.to_json() for verdict in verdicts])
    for verdict in verdicts:
        app.say(
            f"{verdict.path}: " + ("OK" if verdict.ok else "FAILED: " + "; ".join(verdict.problems))
        )
    return ExitStatus.OK if all(verdict.ok for verdict in verdicts) else ExitStatus.FAILURE


@certs_group.command()
@connection_options
@dir_option
@json_option
@click.pass_obj
def rotate(
    app: Application, connection: ConnectionOptions, directory: Path | None, as_json: bool
) -> int:
    """Issue a new server certificate and make every TLS endpoint of the bundle serve it.

    Redis re-reads it on CONFIG SET tls-cert-file/tls-key-file (as the bundle's admin), the
    proxy on SIGHUP; connected clients stay. Each endpoint is then checked with a TLS
    handshake. A sentinel or cluster bundle: each node's own certificate (tls/nodes/), each
    data node switched with CONFIG SET; a Sentinel cannot re-read one, so its file is renewed
    and it serves it once restarted: the ones this machine's `redkeep up` runs are restarted
    here, one at a time; the proxy's (tls/server.crt) is renewed and reloaded on SIGHUP. Exit 1
    if one still serves another certificate.
    """
    app.json_mode = as_json
    report = actions.run_rotate(app, connection, directory)
    if as_json:
        app.emit_json(report.to_json())
    if isinstance(report, actions.NodesRotationReport):
        return _nodes_rotated(app, report)
    app.say(f"new server certificate serial {report.new_serial}, valid until {report.not_after}")
    for result in report.endpoints:
        if result.current:
            app.say(f"{result.name} {result.address}: serves it ({result.applied}; no restart)")
        elif not result.problem:
            app.say(f"{result.name} {result.address}: {result.applied}")
        else:
            app.error(f"{result.name} {result.address}: {result.problem} ({result.applied})")
    if report.complete:
        return ExitStatus.OK
    failed = [result for result in report.endpoints if result.problem]
    hint = "check its log"
    if any(result.name == "proxy" for result in failed):
        hint += (
            "; the proxy reloads on SIGHUP (`kill -HUP PID`, `docker compose kill -s HUP proxy`)"
        )
    names = ", ".join(f"{result.name} {result.address}" for result in failed)
    raise RedkeepError(
        f"rotation incomplete: {names} does not serve serial {report.new_serial}; {hint}"
    )


def _nodes_rotated(app: Application, report: actions.NodesRotationReport) -> int:
    """One line per node: what it serves now; exit 1 if a data node does not serve its new one."""
    for node in report.nodes:
        where = f"{node.name} {node.address}"
        if node.current:
            how = "CONFIG SET; no restart" if node.applied == actions.CONFIG_SET else node.applied
            app.say(f"{where}: serves serial {node.new_serial} ({how})")
        elif node.problem:
            app.error(f"{where}: {node.problem}")
        else:
            app.say(f"{where}: serial {node.new_serial} {node.applied}")
    proxy = report.proxy.endpoint if report.proxy is not None else None
    if proxy is not None:
        where = f"proxy {proxy.address}"
        if proxy.current:
            app.say(f"{where}: serves serial {report.proxy.new_serial} ({proxy.applied})")
        elif proxy.problem:
            app.error(f"{where}: {proxy.problem} ({proxy.applied})")
        else:
            app.say(f"{where}: serial {report.proxy.new_serial} {proxy.applied}")
    if report.restart_needed:
        app.warn(
            f"restart {', '.join(report.restart_needed)} (one at a time) to serve the renewed "
            "certificate; the one it serves now stays valid until it expires"
        )
    if report.complete:
        return ExitStatus.OK
    unrestarted = [node.name for node in report.nodes if node.problem.startswith("restart failed")]
    if unrestarted:
        raise RedkeepError(
            f"rotation incomplete: {', '.join(unrestarted)} did not come back after its restart "
            f"(see its log in run/); the other Sentinels keep the quorum. Start it with "
            "`redkeep up --detach`, then restart any listed above"
        )
    failed = ", ".join(node.name for node in report.nodes if node.problem)
    if not failed:  # only the proxy
        raise RedkeepError(
            f"rotation incomplete: the proxy on {proxy.address} does not serve serial "
            f"{report.proxy.new_serial}; check its log (it reloads on SIGHUP: `kill -HUP PID`)"
        )
    raise RedkeepError(
        f"rotation incomplete: {failed} kept the certificate it had (still valid: the CA is "
        "the same, so every link works); the other nodes serve their new one. Fix the cause "
        "above and run `redkeep certs rotate` again"
    )
