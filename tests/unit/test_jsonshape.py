"""The contract check of tests/jsonshape.py catches drift both ways, and the typed results
of audit, status and health write what docs/json.md documents."""

import datetime as dt

from redkeep.actions.health import HealthResult
from redkeep.actions.status import (
    CertificateExpiry,
    InfoFailed,
    ScheduleStatus,
    ServiceStatus,
    StatusReport,
)
from redkeep.audit.report import UnreachableReport
from tests.jsonshape import problems, shape


def health_document(**changes) -> dict:
    return {**HealthResult(True, "redis://h:6379", "PONG", 0.4).to_json(), **changes}


def test_the_check_fails_on_an_undocumented_a_missing_and_a_retyped_key():
    documented = shape("health")
    assert problems(health_document(), documented) == []
    assert problems(health_document(extra=1), documented) == ["extra: not documented"]
    missing = health_document()
    del missing["detail"]
    assert problems(missing, documented) == ["detail: documented, missing"]
    retyped = problems(health_document(status=True), documented)
    assert retyped and retyped[0].startswith("status: bool")


def test_every_variant_of_the_status_report_is_documented():
    """Keys the running bundle of the integration test may not show: a stopped helper, an
    INFO that failed, a missing certificate, a schedule that never ran."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    schedule = ScheduleStatus(5, None, None, None, None, None, overdue=True)
    report = StatusReport(
        bundle="/b",
        url="rediss://exporter:****@localhost:6380",
        healthy=False,
        detail="the exporter does not answer",
        local_pid=10,
        run_here=True,
        services={
            "redis": ServiceStatus(True, 10, False, up=True),
            "exporter": ServiceStatus(
                True,
                11,
                False,
                up=False,
                port=9121,
                listening=True,
                answering=False,
                probe="no answer in 3s",
                stopped=True,
            ),  # fmt: skip
            "backup": ServiceStatus(False, None, True, up=False, schedule=schedule),
        },
        certificates={"ca": CertificateExpiry(now.isoformat(), 300), "server": None},
        secrets="/b/.env",
        last_backup="none yet",
        server=InfoFailed("NOPERM"),
        audit_score="not available: NOPERM",
    )
    document = report.to_json()
    assert document["certificates"]["server"] == "missing"
    assert document["services"]["exporter"]["stopped"] is True
    assert problems(document, shape("status")) == []
    unreachable = UnreachableReport("redis://h:1", "cannot connect").to_json()
    assert problems(unreachable, shape("audit: a server that could not be reached")) == []
