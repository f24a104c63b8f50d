"""`redkeep audit`: gather facts from each server, run the checks, write metrics."""

from pathlib import Path
from typing import Any

from redkeep.audit.checks import SEVERITIES
from redkeep.audit.facts import gather
from redkeep.audit.report import run_checks, unreachable_report
from redkeep.bundle import Bundle
from redkeep.errors import ConnectError, RedkeepError, UsageError
from redkeep.exporter.exposition import Family, write_textfile
from redkeep.redis.target import Target

ACCEPT_FILE = "audit-accept.txt"  # a bundle's accepted check ids, if it has any


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


def bundle_audit(bundle: Bundle) -> dict[str, Any]:
    """The audit of a bundle's own Redis as its admin user, with its accepted ids."""
    accept_path = bundle.root / ACCEPT_FILE
    accepted = read_accept_file(accept_path) if accept_path.exists() else set()
    return audit_targets([bundle.target("admin")], accepted)[0]


def audit_targets(
    targets: list[Target], accepted: set[str], lua_probe: bool = False
) -> list[dict[str, Any]]:
    """One report per target; a server that cannot be reached gets a report with `error`."""
    reports = []
    for target in targets:
        try:
            facts = gather(target, timeout=target.timeout, lua_probe=lua_probe)
        except ConnectError as error:
            reports.append(unreachable_report(target.display_url, error.message))
            continue
        except RedkeepError as error:  # e.g. WRONGPASS: the audit could not log in
            reports.append(unreachable_report(target.display_url, error.message))
            continue
        except (OSError, ValueError, TypeError, KeyError, IndexError) as error:
            # An answer nobody expected: this target's audit failed, the others go on.
            reason = f"the audit failed: {type(error).__name__}: {error}"
            reports.append(unreachable_report(target.display_url, reason[:200]))
            continue
        reports.append(run_checks(facts, accepted))
    return reports


def write_metrics(path: Path, reports: list[dict[str, Any]]) -> None:
    """Prometheus textfile: findings by severity and the score per target (for the exporter)."""
    findings = Family(
        "redkeep_audit_findings", "gauge", "Audit findings not accepted, by severity."
    )
    scores = Family("redkeep_audit_score", "gauge", "Audit score out of 100.")
    for report in reports:
        if "counts" not in report:
            continue
        target = report["target"]
        for severity in SEVERITIES:
            findings.add(report["counts"][severity], {"target": target, "severity": severity})
        scores.add(report["score"], {"target": target})
    write_textfile(path, [findings, scores])
