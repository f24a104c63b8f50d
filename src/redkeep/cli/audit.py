"""`redkeep audit URL...`: a read-only security audit of live Redis servers."""

import dataclasses
import json
from pathlib import Path

import click

from redkeep.actions.audit import (
    ACCEPT_FILE,
    audit_targets,
    bundle_audit_metrics,
    read_accept_file,
    write_metrics,
)
from redkeep.app import Application
from redkeep.audit.checks import CHECKS, SEVERITIES
from redkeep.audit.report import failed, fix_hints, incomplete, sarif
from redkeep.cli.options import connection_options, dir_option, load_bundle, target_for
from redkeep.errors import ExitStatus, UsageError
from redkeep.redis.target import ConnectionOptions


@click.command()
@click.argument("urls", nargs=-1, metavar="[URL]...")
@connection_options
@dir_option
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "sarif"]),
    default="table",
    show_default=True,
)
@click.option(
    "--fail-on",
    type=click.Choice(["critical", "high", "medium", "low"]),
    help="Exit 1 when a finding (not accepted) is this severe or worse.",
)
@click.option("--fix-hints", is_flag=True, help="Print the lines that would fix the findings.")
@click.option(
    "--accept", "accepted", multiple=True, metavar="ID", help="Accept a finding (repeat)."
)
@click.option(
    "--accept-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File of accepted check ids, one per line ('#' starts a comment: say why).",
)
@click.option(
    "--lua-probe",
    is_flag=True,
    help='Also run EVAL "return type(package)" 0 (CVE-2022-0543); it lands in the script cache.',
)
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write Prometheus textfile metrics (findings by severity, score) here.",
)
@click.pass_obj
def audit(
    app: Application,
    urls: tuple[str, ...],
    connection: ConnectionOptions,
    directory: Path | None,
    output: str,
    fail_on: str | None,
    fix_hints: bool,
    accepted: tuple[str, ...],
    accept_file: Path | None,
    metrics_file: Path | None,
    lua_probe: bool,
) -> int:
    """Audit the security of one or more live Redis servers (read-only).

    Without URL: the bundle's Redis as its admin user (or REDIS_URL). Findings have a severity
    (critical, high, medium, low, info) and the exact redis.conf or ACL line that fixes them;
    what the audit could not see is listed as "could not verify", never as passed. Exit 3 when
    a server cannot be reached, 1 with --fail-on when a finding is that severe, and 1 when the
    audit is incomplete: a read was refused (NOPERM) or under half of the checks could see.
    """
    if connection.url and urls:
        raise UsageError("give the servers as URL arguments or one --url, not both")
    bundle = load_bundle(app, directory, required=False)
    own = bundle is not None and not urls and not connection.url
    if own and accept_file is None and (bundle.root / ACCEPT_FILE).exists():
        accept_file = bundle.root / ACCEPT_FILE
    accept = set(accepted) | (read_accept_file(accept_file) if accept_file else set())
    known = {check.id for check in CHECKS}
    unknown = sorted(accept - known)
    if unknown:
        raise UsageError(f"--accept {', '.join(unknown)}: no such check (ids: NET-01 ... LOG-02)")
    targets = [
        target_for(dataclasses.replace(connection, url=url), bundle, "admin")
        for url in (urls or [connection.url])
    ]
    reports = audit_targets(targets, accept, lua_probe)
    if own and metrics_file is None:  # for the bundle's exporter (redkeep_audit_*)
        metrics_file = bundle_audit_metrics(bundle)
    if metrics_file:
        write_metrics(metrics_file, reports)
    if output == "json":
        app.emit_json(reports[0] if len(reports) == 1 else reports)
    elif output == "sarif":
        app.write(json.dumps(sarif(reports), indent=2) + "\n")
    else:
        for report in reports:
            show(app, report, fix_hints)
    if any("error" in report for report in reports):
        return ExitStatus.UNREACHABLE
    # An audit that could not see is not a pass, whatever its score.
    blind = [report for report in reports if incomplete(report)]
    for report in blind:
        app.error(f"redkeep audit: {report['target']}: incomplete: {incomplete(report)}")
    if blind or any(failed(report, fail_on) for report in reports):
        return ExitStatus.FAILURE
    return ExitStatus.OK


def show(app: Application, report: dict, with_hints: bool) -> None:
    if "error" in report:
        app.say(f"redkeep audit: {report['target']}: cannot connect: {report['error']}")
        return
    server = report["server"]
    counts = report["counts"]
    summary = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s]) or "no findings"
    checks = report["checks"]
    app.say(
        f"redkeep audit: {report['target']} ({server.get('name', 'redis')} "
        f"{server.get('version', '?')}): score {report['score']}/100 from {checks['verified']} "
        f"of {checks['total']} checks, {summary}"
    )
    rows = [
        (
            item["severity"] + (" (accepted)" if item["accepted"] else ""),
            item["id"],
            item["title"],
            item["evidence"],
            item["remediation"],
        )
        for item in report["findings"]
    ]
    if rows:
        app.table(["severity", "id", "finding", "evidence", "fix"], rows)
    if report["could_not_verify"]:
        app.table(
            ["id", "could not verify", "why"],
            [(item["id"], item["title"], item["reason"]) for item in report["could_not_verify"]],
        )
    app.say(
        f"{len(report['passed'])} checks passed, {len(report['findings'])} findings, "
        f"{len(report['could_not_verify'])} could not be verified; CVE data of "
        f"{report['cve_data_updated']}"
    )
    if with_hints:
        hints = fix_hints(report)
        app.say("fix hints:" if hints else "fix hints: nothing to fix")
        for line in hints:
            app.say(f"  {line}")
