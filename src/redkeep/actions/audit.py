"""`redkeep audit`: gather facts from each server, run the checks, write metrics."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from redkeep.actions.locate import load_bundle, target_for
from redkeep.app import Application
from redkeep.audit.checks import CHECKS, SEVERITIES
from redkeep.audit.facts import gather
from redkeep.audit.report import AuditReport, TargetReport, UnreachableReport, run_checks
from redkeep.bundle import Bundle
from redkeep.errors import ConnectError, RedkeepError, UsageError
from redkeep.exporter.exposition import Family, write_textfile
from redkeep.redis.target import ConnectionOptions, Target

ACCEPT_FILE = "audit-accept.txt"  # a bundle's accepted check ids, if it has any


@dataclass(frozen=True)
class AuditRequest:
    """The flags of `redkeep audit`, as given."""

    urls: tuple[str, ...] = ()
    connection: ConnectionOptions = ConnectionOptions()
    directory: Path | None = None
    accepted: tuple[str, ...] = ()
    accept_file: Path | None = None
    lua_probe: bool = False
    metrics_file: Path | None = None


def run_audit(app: Application, request: AuditRequest) -> list[TargetReport]:
    """Audit the servers asked for (else the bundle's, as its admin); one report each.

    Inside a bundle without URLs its audit-accept.txt is read and the metrics go where its
    exporter finds them.
    """
    connection = request.connection
    if connection.url and request.urls:
        raise UsageError("give the servers as URL arguments or one --url, not both")
    bundle = load_bundle(app, request.directory, required=False)
    own = bundle is not None and not request.urls and not connection.url
    accept_file = request.accept_file
    if own and accept_file is None and (bundle.root / ACCEPT_FILE).exists():
        accept_file = bundle.root / ACCEPT_FILE
    accept = set(request.accepted) | (read_accept_file(accept_file) if accept_file else set())
    unknown = sorted(accept - {check.id for check in CHECKS})
    if unknown:
        raise UsageError(f"--accept {', '.join(unknown)}: no such check (ids: NET-01 ... LOG-02)")
    targets = [
        target_for(dataclasses.replace(connection, url=url), bundle, "admin")
        for url in (request.urls or [connection.url])
    ]
    reports = audit_targets(targets, accept, request.lua_probe)
    metrics_file = request.metrics_file
    if own and metrics_file is None:  # for the bundle's exporter (redkeep_audit_*)
        metrics_file = bundle_audit_metrics(bundle)
    if metrics_file:
        write_metrics(metrics_file, reports)
    return reports


def bundle_audit_metrics(bundle: Bundle) -> Path:
    """Where a bundle's exporter finds the audit's metrics: beside the backups' metrics."""
    return (bundle.root / bundle.settings.backup.metrics_file).parent / "redkeep_audit.prom"


def read_accept_file(path: Path) -> set[str]:
    """Check ids, one per line; '#' starts a comment (say why a finding is accepted)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}


def bundle_audit(bundle: Bundle) -> TargetReport:
    """The audit of a bundle's own Redis as its admin user, with its accepted ids."""
    accept_path = bundle.root / ACCEPT_FILE
    accepted = read_accept_file(accept_path) if accept_path.exists() else set()
    return audit_targets([bundle.target("admin")], accepted)[0]


def audit_targets(
    targets: list[Target], accepted: set[str], lua_probe: bool = False
) -> list[TargetReport]:
    """One report per target; a server that cannot be reached gets an UnreachableReport."""
    reports: list[TargetReport] = []
    for target in targets:
        try:
            facts = gather(target, timeout=target.timeout, lua_probe=lua_probe)
        except ConnectError as error:
            reports.append(UnreachableReport(target.display_url, error.message))
            continue
        except RedkeepError as error:  # e.g. WRONGPASS: the audit could not log in
            reports.append(UnreachableReport(target.display_url, error.message))
            continue
        except (OSError, ValueError, TypeError, KeyError, IndexError) as error:
            # An answer nobody expected: this target's audit failed, the others go on.
            reason = f"the audit failed: {type(error).__name__}: {error}"
            reports.append(UnreachableReport(target.display_url, reason[:200]))
            continue
        reports.append(run_checks(facts, accepted))
    return reports


def write_metrics(path: Path, reports: list[TargetReport]) -> None:
    """Prometheus textfile: findings by severity and the score per target (for the exporter)."""
    findings = Family(
        "redkeep_audit_findings", "gauge", "Audit findings not accepted, by severity."
    )
    scores = Family("redkeep_audit_score", "gauge", "Audit score out of 100.")
    for report in reports:
        if not isinstance(report, AuditReport):
            continue
        target = report.target
        for severity in SEVERITIES:
            findings.add(report.counts[severity], {"target": target, "severity": severity})
        scores.add(report.score, {"target": target})
    write_textfile(path, [findings, scores])
