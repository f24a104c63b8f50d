"""`redkeep audit URL...`: a read-only security audit of live Redis servers."""

import json
from pathlib import Path

import click

from redkeep.actions.audit import AuditRequest, run_audit
from redkeep.app import Application
from redkeep.audit.checks import SEVERITIES
from redkeep.audit.report import AuditReport, TargetReport, UnreachableReport, sarif
from redkeep.cli.options import connection_options, dir_option
from redkeep.errors import ExitStatus
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
    "--all-nodes",
    is_flag=True,
    help="Audit the whole deployment of the URL: every node (CLUSTER NODES, Sentinel, INFO "
    "replication) and each Sentinel.",
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
    all_nodes: bool,
) -> int:
    """Audit the security of one or more live Redis servers (read-only).

    Without URL: the bundle's Redis as its admin user (REDIS_URL only without a bundle);
    every node and Sentinel of a sentinel or cluster bundle;
    with --all-nodes, every node of the URL's deployment, each report naming its node.
    Findings have a severity
    (critical, high, medium, low, info) and the exact redis.conf or ACL line that fixes them;
    what the audit could not see is listed as "could not verify", never as passed. Exit 3 when
    a server cannot be reached, 1 with --fail-on when a finding is that severe, and 1 when the
    audit is incomplete: a read was refused (NOPERM) or under half of the checks could see.
    """
    request = AuditRequest(
        urls=urls,
        connection=connection,
        directory=directory,
        accepted=accepted,
        accept_file=accept_file,
        lua_probe=lua_probe,
        metrics_file=metrics_file,
        all_nodes=all_nodes,
    )
    reports = run_audit(app, request)
    if output == "json":
        documents = [report.to_json() for report in reports]
        several = len(documents) > 1 or all_nodes or reports[0].node is not None
        app.emit_json(documents if several else documents[0])
    elif output == "sarif":
        app.write(json.dumps(sarif(reports), indent=2) + "\n")
    else:
        for report in reports:
            show(app, report, fix_hints)
        if len(reports) > 1:
            summarize(app, reports)
    if any(isinstance(report, UnreachableReport) for report in reports):
        return ExitStatus.UNREACHABLE
    # An audit that could not see is not a pass, whatever its score.
    blind = [report for report in reports if report.incomplete]
    for report in blind:
        app.error(f"redkeep audit: {report.target}: incomplete: {report.incomplete}")
    if blind or any(report.failed(fail_on) for report in reports):
        return ExitStatus.FAILURE
    return ExitStatus.OK


def _named(report: TargetReport) -> str:
    """`redis-1 (replica) rediss://...` for a node of a deployment, else the URL."""
    if report.node is None:
        return report.target
    role = f" ({report.role})" if report.role else ""
    shown = "" if report.node == report.target else f" {report.target}"
    return f"{report.node}{role}{shown}"


def show(app: Application, report: TargetReport, with_hints: bool) -> None:
    if isinstance(report, UnreachableReport):
        app.say(f"redkeep audit: {_named(report)}: cannot connect: {report.error}")
        return
    server = report.server
    counts = report.counts
    summary = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s]) or "no findings"
    app.say(
        f"redkeep audit: {_named(report)} ({server.name if server else 'redis'} "
        f"{server.version if server else '?'}): score {report.score}/100 from "
        f"{report.checks_verified} of {report.checks_total} checks, {summary}"
    )
    rows = [
        (
            item.severity + (" (accepted)" if item.accepted else ""),
            item.id,
            item.title,
            item.evidence,
            item.remediation,
        )
        for item in report.findings
    ]
    if rows:
        app.table(["severity", "id", "finding", "evidence", "fix"], rows)
    if report.could_not_verify:
        app.table(
            ["id", "could not verify", "why"],
            [(item.id, item.title, item.reason) for item in report.could_not_verify],
        )
    app.say(
        f"{len(report.passed)} checks passed, {len(report.findings)} findings, "
        f"{len(report.could_not_verify)} could not be verified"
        + (f", {len(report.not_applicable)} not applicable" if report.not_applicable else "")
        + f"; CVE data of {report.cve_data_updated}"
    )
    if with_hints:
        hints = report.fix_hints()
        app.say("fix hints:" if hints else "fix hints: nothing to fix")
        for line in hints:
            app.say(f"  {line}")


def summarize(app: Application, reports: list[TargetReport]) -> None:
    """One line over every node: how many were audited and the findings together."""
    audited = [report for report in reports if isinstance(report, AuditReport)]
    counts = {s: sum(report.counts[s] for report in audited) for s in SEVERITIES}
    found = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s]) or "no findings"
    missed = len(reports) - len(audited)
    app.say(
        f"redkeep audit: {len(audited)} of {len(reports)} servers audited"
        + (f" ({missed} not reached)" if missed else "")
        + f": {found}"
    )
