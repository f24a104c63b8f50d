"""The JSON of `audit`, `status` and `health` has exactly the shape docs/json.md documents.

The shapes are read from the page itself (tests/jsonshape.py): a key added, renamed or
retyped in the code without the page, or the other way round, fails here.
"""

import json

import pytest

from tests.conftest import ACL_USERS, run_redkeep
from tests.integration.conftest import start_bundle, stop_bundle
from tests.jsonshape import problems, shape
from tests.servers import RedisServer, free_port


def output(*args, env=None) -> tuple[int, object]:
    result = run_redkeep(*args, env=env)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_audit_json_has_the_documented_shape(redis_factory):
    server = redis_factory(ACL_USERS)
    answered = f"redis://admin@127.0.0.1:{server.port}"
    closed = f"redis://127.0.0.1:{free_port()}"
    env = {"REDIS_PASSWORD": "admin-secret"}
    code, report = output("audit", "--format", "json", answered, env=env)
    assert code in (0, 1)
    assert report["findings"] and report["passed"]  # every list has items to check
    assert problems(report, shape("audit: a server that answered")) == []
    code, report = output("audit", "--format", "json", closed)
    assert code == 3
    assert problems(report, shape("audit: a server that could not be reached")) == []
    # A reader may not look: could_not_verify has items, and server is {} (INFO refused).
    restricted = f"redis://reader@127.0.0.1:{server.port}"
    code, reports = output(
        "audit", "--format", "json", restricted, closed, env={"REDIS_PASSWORD": "reader-secret"}
    )
    assert code == 3 and isinstance(reports, list) and len(reports) == 2
    assert reports[0]["could_not_verify"] and reports[0]["server"] == {}
    assert problems(reports[0], shape("audit: a server that answered")) == []
    assert problems(reports[1], shape("audit: a server that could not be reached")) == []


def test_audit_json_of_a_deployment_has_the_documented_shape(redis_binary, tmp_path):
    """--all-nodes from a lone Sentinel watching a primary nobody runs: a Sentinel's report
    (node, role, not_applicable) and an unreachable primary's (node, role, error)."""
    sentinel = RedisServer(
        redis_binary,
        tmp_path / "sentinel",
        [
            "user default off",
            "user admin on >admin-secret ~* &* +@all",
            f"sentinel monitor gone 127.0.0.1 {free_port()} 1",
        ],
        port=free_port(),
        args=("--sentinel",),
        ready="+monitor",
    ).start()
    try:
        code, reports = output(
            "audit", "--all-nodes", "--format", "json", f"redis://admin@127.0.0.1:{sentinel.port}",
            env={"REDIS_PASSWORD": "admin-secret"},
        )  # fmt: skip
    finally:
        sentinel.stop()
    assert code == 3 and [report["role"] for report in reports] == ["primary", "sentinel"]
    unreachable, answered = reports
    assert answered["node"] and answered["not_applicable"] and answered["findings"]
    assert problems(answered, shape("audit: a server that answered")) == []
    assert unreachable["node"] and unreachable["error"]
    assert problems(unreachable, shape("audit: a server that could not be reached")) == []


def test_health_json_has_the_documented_shape(plain_redis):
    code, healthy = output("health", "--json", "--url", f"redis://127.0.0.1:{plain_redis.port}")
    assert code == 0 and healthy["healthy"] is True
    assert problems(healthy, shape("health")) == []
    code, unhealthy = output("health", "--json", "--url", f"redis://127.0.0.1:{free_port()}")
    assert code == 1 and unhealthy["status"] == 3 and unhealthy["latency_ms"] is None
    assert problems(unhealthy, shape("health")) == []


@pytest.fixture
def scheduled_bundle(tmp_path, redis_binary):
    """A bundle with a backup schedule, initialised but not started."""
    root = tmp_path / "stack"
    env = {"REDKEEP_BACKUP__INTERVAL_MINUTES": "60"}
    init = run_redkeep("init", root, "--tls-port", free_port(), env=env)
    assert init.returncode == 0, init.stderr
    return root


def test_status_json_has_the_documented_shape(scheduled_bundle):
    # Not running: Redis does not answer, so `status` instead of `server`.
    code, down = output("status", scheduled_bundle, "--json")
    assert code == 3 and down["status"] == 3 and "server" not in down
    assert problems(down, shape("status")) == []
    bundle = start_bundle(scheduled_bundle)
    try:
        code, up = output("status", scheduled_bundle, "--json")
        assert up["services"]["backup"]["interval_minutes"] == 60  # the schedule's keys too
        assert "server" in up and "status" not in up
        assert problems(up, shape("status")) == []
        code, healthy = output("health", "--dir", scheduled_bundle, "--json")
        assert problems(healthy, shape("health")) == []
    finally:
        stop_bundle(bundle)
