"""Running the checks on gathered facts, and the report in its three forms: table, JSON, SARIF.

The JSON shape is documented in docs/audit.md (schema `redkeep-audit/1`). Accepted findings
stay in `findings` with `"accepted": true`: shown, never hidden, not counted by --fail-on or
the score.
"""

import datetime as dt
from typing import Any

from redkeep import __version__
from redkeep.audit import cve
from redkeep.audit.checks import CHECKS, SEVERITIES, Finding
from redkeep.audit.facts import Facts, Unavailable

SCHEMA = "redkeep-audit/1"
PENALTY = {"critical": 25, "high": 10, "medium": 4, "low": 1, "info": 0}
SARIF_LEVEL = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "info": "note",
}


def run_checks(facts: Facts, accepted: set[str]) -> dict[str, Any]:
    """The report of one target (see docs/audit.md)."""
    findings, passed, unknown = [], [], []
    for check in CHECKS:
        try:
            outcome = check.run(facts)
        except Unavailable as missing:
            unknown.append({"id": check.id, "title": check.title, "reason": missing.reason})
            continue
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
            # An answer the check did not expect: say so, never pass.
            reason = f"unexpected data ({type(error).__name__}: {error})"
            unknown.append({"id": check.id, "title": check.title, "reason": reason[:160]})
            continue
        if isinstance(outcome, Finding):
            findings.append(
                {
                    "id": check.id,
                    "severity": outcome.severity,
                    "title": check.title,
                    "evidence": outcome.evidence,
                    "remediation": outcome.remediation,
                    "accepted": check.id in accepted,
                }
            )
        else:
            passed.append({"id": check.id, "title": check.title, "evidence": outcome.evidence})
    findings.sort(key=lambda item: (SEVERITIES.index(item["severity"]), item["id"]))
    counted = [item for item in findings if not item["accepted"]]
    counts = {severity: 0 for severity in SEVERITIES}
    for item in counted:
        counts[item["severity"]] += 1
    score = max(0, 100 - sum(PENALTY[item["severity"]] for item in counted))
    return {
        "schema": SCHEMA,
        "target": facts.where,
        "server": _server(facts),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cve_data_updated": cve.load()["updated"],
        "score": score,
        # What the score rests on: the checks that could see what they judge.
        "checks": {"total": len(CHECKS), "verified": len(findings) + len(passed)},
        "incomplete": _incomplete(unknown, len(findings) + len(passed), accepted),
        "counts": counts,
        "findings": findings,
        "passed": passed,
        "could_not_verify": unknown,
    }


def _incomplete(unknown: list[dict[str, str]], verified: int, accepted: set[str]) -> str | None:
    """Why this report cannot be trusted as a clean bill of health, or None.

    A refused read (NOPERM) hides what the server does, and a score resting on fewer than half
    of the checks says little. A check accepted by id is left out: the team has judged it.
    """
    denied = [item for item in unknown if "NOPERM" in item["reason"] and item["id"] not in accepted]
    total = len(CHECKS)
    if denied:
        return (
            f"{len(denied)} checks could not be verified because the auditing user may not run "
            f"what they read (NOPERM, e.g. {denied[0]['id']}); audit as an administrator"
        )
    if verified < total / 2:
        return f"only {verified} of {total} checks could be verified (see could_not_verify)"
    return None


def incomplete(report: dict[str, Any]) -> str | None:
    """The reason a server's report is incomplete (see `_incomplete`), or None."""
    return report.get("incomplete")


def _server(facts: Facts) -> dict[str, Any]:
    try:
        info = facts.get("info").get("server", {})
    except Unavailable:
        return {}
    return {
        "name": facts.server_name,
        "version": info.get("valkey_version") or info.get("redis_version"),
        "mode": info.get("redis_mode") or info.get("server_mode"),  # Valkey: server_mode
        "os": info.get("os"),
    }


def unreachable_report(where: str, reason: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "target": where, "error": reason}


def failed(report: dict[str, Any], threshold: str | None) -> bool:
    """Whether an unaccepted finding is at `threshold` severity or worse."""
    if threshold is None or "findings" not in report:
        return False
    limit = SEVERITIES.index(threshold)
    return any(
        not item["accepted"] and SEVERITIES.index(item["severity"]) <= limit
        for item in report["findings"]
    )


def fix_hints(report: dict[str, Any]) -> list[str]:
    """The redis.conf / ACL lines that would fix the unaccepted findings, one per finding."""
    return [
        f"{item['remediation']}    # {item['id']}"
        for item in report.get("findings", [])
        if not item["accepted"]
    ]


def sarif(reports: list[dict[str, Any]]) -> dict[str, Any]:
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
        for item in report.get("findings", []):
            result = {
                "ruleId": item["id"],
                "level": SARIF_LEVEL[item["severity"]],
                "message": {
                    "text": f"{item['title']}: {item['evidence']}. Fix: {item['remediation']}"
                },
                "locations": [
                    {"physicalLocation": {"artifactLocation": {"uri": report["target"]}}}
                ],
                "properties": {"severity": item["severity"]},
            }
            if item["accepted"]:
                result["suppressions"] = [
                    {"kind": "external", "justification": "accepted with --accept"}
                ]
            results.append(result)
    failures = [report for report in reports if "error" in report]
    notes = [
        {"level": "error", "message": {"text": f"{report['target']}: {report['error']}"}}
        for report in failures
    ] + [
        {"level": "warning", "message": {"text": f"{report['target']}: incomplete: {why}"}}
        for report in reports
        if (why := incomplete(report))
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
