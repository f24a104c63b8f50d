"""Running the checks on gathered facts: the typed report, as JSON and as SARIF.

The JSON shape is documented in docs/json.md (schema `redkeep-audit/1`). Accepted findings
stay in `findings` with `"accepted": true`: shown, never hidden, not counted by --fail-on or
the score. A node of a deployment is named in `node` and `role`; checks that do not apply to it
(a Sentinel's, on a data node) are listed in `not_applicable` and left out of the total.
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from redkeep import __version__
from redkeep.audit import cve
from redkeep.audit.checks import CHECKS, SEVERITIES, Finding
from redkeep.audit.facts import Facts, NotApplicable, Unavailable, need

SCHEMA = "redkeep-audit/1"
PENALTY = {"critical": 25, "high": 10, "medium": 4, "low": 1, "info": 0}
SARIF_LEVEL = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "info": "note",
}


@dataclass(frozen=True)
class FindingEntry:
    """A check that found a problem; `accepted` ones are shown but not counted."""

    id: str
    severity: str
    title: str
    evidence: str
    remediation: str
    accepted: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PassedEntry:
    id: str
    title: str
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnverifiedEntry:
    """A check that could not see what it judges, and why."""

    id: str
    title: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NotApplicableEntry:
    """A check that does not concern this server (a Sentinel's checks on a data node ...)."""

    id: str
    title: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServerIdentity:
    name: str
    version: str | None
    mode: str | None
    os: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditReport:
    """The audit of one server that answered (JSON: docs/json.md, `redkeep audit`)."""

    target: str  # the URL, password masked
    score: int = 100
    counts: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    findings: tuple[FindingEntry, ...] = ()
    passed: tuple[PassedEntry, ...] = ()
    could_not_verify: tuple[UnverifiedEntry, ...] = ()
    checks_total: int = len(CHECKS)
    incomplete: str | None = None  # why this report is no clean bill of health
    server: ServerIdentity | None = None  # None: INFO could not be read
    generated_at: str = ""
    cve_data_updated: str = ""
    node: str | None = None  # its name in the deployment audited; None when audited alone
    role: str | None = None  # primary, replica, standalone or sentinel, as it says itself
    not_applicable: tuple[NotApplicableEntry, ...] = ()

    @property
    def checks_verified(self) -> int:
        """The checks that could see what they judge: what the score rests on."""
        return len(self.findings) + len(self.passed)

    def failed(self, threshold: str | None) -> bool:
        """Whether an unaccepted finding is at `threshold` severity or worse."""
        if threshold is None:
            return False
        limit = SEVERITIES.index(threshold)
        return any(
            not item.accepted and SEVERITIES.index(item.severity) <= limit for item in self.findings
        )

    def fix_hints(self) -> list[str]:
        """The redis.conf / ACL lines that would fix the unaccepted findings, one per finding."""
        return [f"{item.remediation}    # {item.id}" for item in self.findings if not item.accepted]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "target": self.target,
            "node": self.node,
            "role": self.role,
            "server": self.server.to_json() if self.server else {},
            "generated_at": self.generated_at,
            "cve_data_updated": self.cve_data_updated,
            "score": self.score,
            "checks": {"total": self.checks_total, "verified": self.checks_verified},
            "incomplete": self.incomplete,
            "counts": dict(self.counts),
            "findings": [item.to_json() for item in self.findings],
            "passed": [item.to_json() for item in self.passed],
            "could_not_verify": [item.to_json() for item in self.could_not_verify],
            "not_applicable": [item.to_json() for item in self.not_applicable],
        }


@dataclass(frozen=True)
class UnreachableReport:
    """A server the audit could not reach or log in to."""

    target: str
    error: str
    node: str | None = None
    role: str | None = None

    @property
    def incomplete(self) -> None:
        """Nothing was judged, so nothing is half-judged: `error` says what happened."""
        return None

    def failed(self, threshold: str | None) -> bool:
        return False

    def fix_hints(self) -> list[str]:
        return []

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "target": self.target,
            "node": self.node,
            "role": self.role,
            "error": self.error,
        }


TargetReport = AuditReport | UnreachableReport


def run_checks(facts: Facts, accepted: set[str]) -> AuditReport:
    """The report of one target (see docs/json.md)."""
    findings, passed, unknown, inapplicable = [], [], [], []
    for check in CHECKS:
        if not check.applies(facts):
            why = (
                "a Sentinel holds no data and answers no CONFIG GET"
                if facts.is_sentinel
                else "it concerns Sentinels only"
            )
            inapplicable.append(NotApplicableEntry(check.id, check.title, why))
            continue
        try:
            outcome = check.run(facts)
        except NotApplicable as why:
            inapplicable.append(NotApplicableEntry(check.id, check.title, why.reason))
            continue
        except Unavailable as missing:
            unknown.append(UnverifiedEntry(check.id, check.title, missing.reason))
            continue
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
            # An answer the check did not expect: say so, never pass.
            reason = f"unexpected data ({type(error).__name__}: {error})"
            unknown.append(UnverifiedEntry(check.id, check.title, reason[:160]))
            continue
        if isinstance(outcome, Finding):
            findings.append(
                FindingEntry(
                    check.id,
                    outcome.severity,
                    check.title,
                    outcome.evidence,
                    outcome.remediation,
                    accepted=check.id in accepted,
                )
            )
        else:
            passed.append(PassedEntry(check.id, check.title, outcome.evidence))
    findings.sort(key=lambda item: (SEVERITIES.index(item.severity), item.id))
    counted = [item for item in findings if not item.accepted]
    counts = dict.fromkeys(SEVERITIES, 0)
    for item in counted:
        counts[item.severity] += 1
    total = len(CHECKS) - len(inapplicable)
    return AuditReport(
        target=facts.where,
        node=facts.node.name if facts.node is not None else None,
        role=_role(facts),
        server=_server(facts),
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        cve_data_updated=cve.load()["updated"],
        score=max(0, 100 - sum(PENALTY[item.severity] for item in counted)),
        incomplete=_incomplete(unknown, len(findings) + len(passed), accepted, total),
        counts=counts,
        findings=tuple(findings),
        passed=tuple(passed),
        could_not_verify=tuple(unknown),
        checks_total=total,
        not_applicable=tuple(inapplicable),
    )


def _role(facts: Facts) -> str | None:
    """What the server says it is; the deployment's word for it when INFO could not be read."""
    if facts.is_sentinel:
        return "sentinel"
    try:
        role = facts.info_field("role", "replication")
        replicas = int(facts.info_field("connected_slaves", "replication") or 0)
        clustered = facts.info_field("cluster_enabled", "cluster") == "1"
    except Unavailable:
        return facts.node.role.value if facts.node is not None else None
    if role == "slave":
        return "replica"
    if replicas or clustered or (facts.node is not None and facts.node.role.value == "primary"):
        return "primary"
    return "standalone"


def _incomplete(
    unknown: list[UnverifiedEntry], verified: int, accepted: set[str], total: int
) -> str | None:
    """Why this report cannot be trusted as a clean bill of health, or None.

    A refused read (NOPERM) hides what the server does, and a score resting on fewer than half
    of the checks says little. A check accepted by id is left out: the team has judged it.
    """
    unauthenticated = [item for item in unknown if item.reason.startswith("NOAUTH")]
    if unauthenticated:
        return (
            f"{len(unauthenticated)} checks could not be verified because the server requires a "
            "login and none was accepted (NOAUTH); audit as an administrator (--url "
            "redis://USER@HOST:PORT with --password-file or REDIS_PASSWORD)"
        )
    denied = [item for item in unknown if "NOPERM" in item.reason and item.id not in accepted]
    if denied:
        return (
            f"{len(denied)} checks could not be verified because the auditing user may not run "
            f"what they read (NOPERM, e.g. {denied[0].id}); audit as an administrator"
        )
    if verified < total / 2:
        return f"only {verified} of {total} checks could be verified (see could_not_verify)"
    return None


def _server(facts: Facts) -> ServerIdentity | None:
    try:
        info = need(facts.info).get("server", {})
    except Unavailable:
        return None
    return ServerIdentity(
        name=facts.server_name,
        version=info.get("valkey_version") or info.get("redis_version"),
        mode=info.get("redis_mode") or info.get("server_mode"),  # Valkey: server_mode
        os=info.get("os"),
    )


def sarif(reports: list[TargetReport]) -> dict[str, Any]:
    """SARIF 2.1.0 for code scanning UIs: one rule per check, one result per finding."""
    rules = [
        {
            "id": check.id,
            "name": check.title.title().replace(" ", ""),
            "shortDescription": {"text": check.title},
            "help": {"text": f"Reads: {check.needs}. See docs/audit.md."},
        }
        for check in CHECKS
    ]
    results = []
    for report in reports:
        on = f"[{report.node}] " if report.node else ""
        for item in report.findings if isinstance(report, AuditReport) else ():
            result = {
                "ruleId": item.id,
                "level": SARIF_LEVEL[item.severity],
                "message": {"text": f"{on}{item.title}: {item.evidence}. Fix: {item.remediation}"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": report.target}}}],
                "properties": {"severity": item.severity},
            }
            if item.accepted:
                result["suppressions"] = [
                    {"kind": "external", "justification": "accepted with --accept"}
                ]
            results.append(result)
    failures = [report for report in reports if isinstance(report, UnreachableReport)]
    notes = [
        {"level": "error", "message": {"text": f"{report.target}: {report.error}"}}
        for report in failures
    ] + [
        {
            "level": "warning",
            "message": {"text": f"{report.target}: incomplete: {report.incomplete}"},
        }
        for report in reports
        if report.incomplete
    ]
    invocation = {"executionSuccessful": not failures, "toolExecutionNotifications": notes}
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "redkeep audit",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "invocations": [invocation],
                "results": results,
            }
        ],
    }
