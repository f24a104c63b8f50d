"""What the real sentinel and cluster tests ask of `redkeep audit` on our own deployments."""

import json
from pathlib import Path

from tests.conftest import run_redkeep


def serious_findings(root: Path) -> dict[str, list[str]]:
    """{node: [check ids]} of critical and high findings other than VER-* (the installed
    server's release is not ours to choose), after checking every node was audited."""
    result = run_redkeep("audit", "--dir", root, "--format", "json")
    reports = json.loads(result.stdout)
    assert isinstance(reports, list), reports
    assert [report for report in reports if "error" in report] == [], reports
    return {
        report["node"]: [
            item["id"]
            for item in report["findings"]
            if item["severity"] in ("critical", "high") and not item["id"].startswith("VER-")
        ]
        for report in reports
    }
