"""`redkeep audit` against real redis-servers with planted misconfigurations, and a bundle."""

import json

import pytest
import redis

from tests.conftest import ACL_USERS, run_redkeep
from tests.integration.conftest import start_bundle, stop_bundle
from tests.servers import RedisServer, free_port, tls_lines


def audit(*args, env=None):
    result = run_redkeep("audit", "--format", "json", *args, env=env)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout), result


def findings(report) -> dict[str, str]:
    return {item["id"]: item["severity"] for item in report["findings"]}


def admin_url(port: int) -> str:
    return f"redis://admin@127.0.0.1:{port}"


ADMIN_ENV = {"REDIS_PASSWORD": "admin-secret"}


def test_no_authentication_at_all(redis_factory):
    server = redis_factory()  # compiled-in default user: on, nopass, +@all
    report, _ = audit("--url", f"redis://127.0.0.1:{server.port}")
    found = findings(report)
    assert found["NET-01"] == "high"  # loopback only: high, not critical
    assert found["AUTH-01"] == "high" and found["AUTH-02"] == "high"
    assert "NET-03" not in found  # protected-mode is still on
    assert found["PERS-01"] == "low"  # the test server's data directory is under /tmp


def test_protected_mode_off_with_a_password_less_default_user(redis_factory):
    server = redis_factory(["protected-mode no"])
    report, _ = audit("--url", f"redis://127.0.0.1:{server.port}")
    assert findings(report)["NET-03"] == "critical"


def test_weak_password_found_offline(redis_factory):
    server = redis_factory([*ACL_USERS, "user cache on >foobared ~cache:* +get +set"])
    report, _ = audit("--url", admin_url(server.port), env=ADMIN_ENV)
    weak = next(item for item in report["findings"] if item["id"] == "AUTH-03")
    assert weak["severity"] == "high" and "cache" in weak["evidence"]
    assert "foobared" not in json.dumps(report)  # the match is named by user, not by password
    assert "admin-secret" not in json.dumps(report)


def test_dangerous_commands_and_an_all_powerful_app_user(redis_factory):
    server = redis_factory(
        [
            *ACL_USERS,
            "user app on >app-secret-0123456789abcdef ~* &* +@all",
            "enable-debug-command yes",
            "enable-module-command local",
            "enable-protected-configs yes",
            "acllog-max-len 0",
        ]
    )
    report, _ = audit("--url", admin_url(server.port), env=ADMIN_ENV)
    found = findings(report)
    assert found["CMD-01"] == "high"
    assert found["CMD-02"] == "medium"
    assert found["CMD-03"] == "high"
    assert found["AUTH-05"] == "high"
    assert "app" in next(i["evidence"] for i in report["findings"] if i["id"] == "AUTH-05")
    assert found["AUTH-10"] == "medium"


def test_tls_with_a_plaintext_port_and_old_protocols(redis_binary, pki, tmp_path):
    server = RedisServer(
        redis_binary,
        tmp_path / "tls",
        [*ACL_USERS, *tls_lines(pki.directory, "optional"), 'tls-protocols "TLSv1.1 TLSv1.2"'],
        port=free_port(),
        tls_port=free_port(),
    ).start()
    try:
        report, _ = audit(
            "--url", f"rediss://admin@localhost:{server.tls_port}", "--tls-ca", pki.ca_cert,
            env=ADMIN_ENV,
        )  # fmt: skip
    finally:
        server.stop()
    found = findings(report)
    assert found["TLS-02"] == "medium"
    assert found["TLS-04"] == "high"
    assert found["TLS-03"] == "low"
    # The test PKI issues 30-day certificates: under a month left is worth a medium finding.
    certificate = next(item for item in report["findings"] if item["id"] == "TLS-07")
    assert certificate["severity"] == "medium" and "expires in 29 days" in certificate["evidence"]


def test_client_buffers_that_can_evict_the_data(redis_factory):
    evicting = [*ACL_USERS, "maxmemory 64mb", "maxmemory-policy allkeys-lru"]
    unbounded = redis_factory(evicting)  # Redis' own defaults for client buffers
    report, _ = audit("--url", admin_url(unbounded.port), env=ADMIN_ENV)
    assert findings(report)["MEM-01"] == "high"
    bounded = redis_factory([*evicting, "maxmemory-clients 10%"])
    report, _ = audit("--url", admin_url(bounded.port), env=ADMIN_ENV)
    (passed,) = [item["evidence"] for item in report["passed"] if item["id"] == "MEM-01"]
    assert passed.startswith(
        "maxmemory-clients 10%: all clients together get at most 6.4 MiB of maxmemory 64 MiB, "
        "which leaves data 57.6 MiB (uses "
    )
    # Data past that budget: slow readers would evict keys.
    admin = redis.Redis(port=bounded.port, username="admin", password="admin-secret")
    for index in range(60):
        admin.set(f"data:{index}", b"x" * 2**20)
    report, _ = audit("--url", admin_url(bounded.port), env=ADMIN_ENV)
    assert findings(report)["MEM-01"] == "medium"


def test_no_tls(redis_factory):
    server = redis_factory(ACL_USERS)
    report, _ = audit("--url", admin_url(server.port), env=ADMIN_ENV)
    assert findings(report)["TLS-01"] == "medium"  # loopback only
    unknown = {item["id"]: item["reason"] for item in report["could_not_verify"]}
    assert "TLS-03" in unknown and "not enabled" in unknown["TLS-03"]


def test_the_lua_probe_runs_only_when_asked(redis_factory):
    server = redis_factory(ACL_USERS)
    report, _ = audit("--url", admin_url(server.port), env=ADMIN_ENV)
    unknown = {item["id"]: item["reason"] for item in report["could_not_verify"]}
    assert "--lua-probe" in unknown["CMD-08"]
    report, _ = audit("--url", admin_url(server.port), "--lua-probe", env=ADMIN_ENV)
    assert "CMD-08" in {item["id"] for item in report["passed"]}  # upstream Redis: no package


def test_a_user_that_may_not_look_gets_could_not_verify_never_pass(redis_factory):
    server = redis_factory(ACL_USERS)
    report, _ = audit(
        "--url", f"redis://reader@127.0.0.1:{server.port}", env={"REDIS_PASSWORD": "reader-secret"}
    )
    unknown = {item["id"]: item["reason"] for item in report["could_not_verify"]}
    for check_id in ("NET-02", "AUTH-01", "AUTH-03", "CMD-01", "TLS-01", "PERS-01"):
        assert check_id in unknown, check_id
    assert "NOPERM" in unknown["AUTH-03"]
    assert not {item["id"] for item in report["passed"]} & set(unknown)
    # No finding it could see, yet no pass: exit 1, one line why, a score that says its basis.
    assert report["checks"]["verified"] < 5 and "NOPERM" in report["incomplete"]
    url = f"redis://reader@127.0.0.1:{server.port}"
    for extra in ((), ("--fail-on", "low")):
        table = run_redkeep("audit", url, *extra, env={"REDIS_PASSWORD": "reader-secret"})
        assert table.returncode == 1, table.stdout
        (line,) = table.stderr.strip().splitlines()
        assert "incomplete" in line and "audit as an administrator" in line
        assert f"from {report['checks']['verified']} of {report['checks']['total']} checks" in (
            table.stdout
        )


def test_the_audit_changes_nothing(redis_factory):
    server = redis_factory([*ACL_USERS, "enable-debug-command yes"])
    admin = redis.Redis(port=server.port, username="admin", password="admin-secret")

    def state():
        info = admin.info()
        return (
            admin.config_get("*"),
            admin.acl_list(),
            admin.dbsize(),
            len(admin.acl_log()),
            info["number_of_cached_scripts"],
        )

    before = state()
    audit("--url", admin_url(server.port), env=ADMIN_ENV)
    assert state() == before  # as admin: not even an ACL LOG entry or a cached script


def test_unreachable_exit_3_and_several_targets(redis_factory):
    server = redis_factory()
    dead = free_port()
    result = run_redkeep(
        "audit", "--format", "json", f"redis://127.0.0.1:{server.port}", f"redis://127.0.0.1:{dead}"
    )
    assert result.returncode == 3
    reports = json.loads(result.stdout)
    assert len(reports) == 2 and "findings" in reports[0]
    assert "error" in reports[1] and "refused" in reports[1]["error"].lower()
    sarif = json.loads(
        run_redkeep("audit", "--format", "sarif", f"redis://127.0.0.1:{dead}").stdout
    )
    invocation = sarif["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert "refused" in invocation["toolExecutionNotifications"][0]["message"]["text"].lower()


def test_fail_on_accept_fix_hints_and_sarif(redis_factory, tmp_path):
    server = redis_factory()
    url = f"redis://127.0.0.1:{server.port}"
    assert run_redkeep("audit", url, "--fail-on", "high").returncode == 1
    accept = tmp_path / "accepted.txt"
    ids = ["NET-01", "AUTH-01", "AUTH-02", "VER-01", "VER-02"]
    accept.write_text("".join(f"{i}  # judged by the team\n" for i in ids))
    result = run_redkeep("audit", url, "--fail-on", "high", "--accept-file", accept, "--fix-hints")
    assert result.returncode == 0, result.stdout
    assert "(accepted)" in result.stdout  # shown, not hidden
    assert "fix hints:" in result.stdout
    sarif = json.loads(run_redkeep("audit", url, "--format", "sarif", "--accept", "NET-01").stdout)
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    net = next(item for item in results if item["ruleId"] == "NET-01")
    assert net["level"] == "error" and net["suppressions"][0]["kind"] == "external"
    rules = {rule["id"] for rule in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert {item["ruleId"] for item in results} <= rules
    unknown = run_redkeep("audit", url, "--accept", "NOPE-9")
    assert unknown.returncode == 2 and "no such check" in unknown.stderr


def test_secrets_never_appear(redis_factory):
    server = redis_factory(["requirepass a-legacy-secret-0123456789", "tls-key-file-pass kp-99"])
    result = run_redkeep(
        "audit", "--format", "json", "--url", f"redis://127.0.0.1:{server.port}",
        env={"REDIS_PASSWORD": "a-legacy-secret-0123456789"},
    )  # fmt: skip
    assert "a-legacy-secret" not in result.stdout + result.stderr
    assert "kp-99" not in result.stdout
    assert "TLS-08" in findings(json.loads(result.stdout))


@pytest.fixture(scope="module")
def audited_bundle(tmp_path_factory, redis_binary):
    bundle = start_bundle(tmp_path_factory.mktemp("audit") / "stack")
    yield bundle
    stop_bundle(bundle)


def test_the_bundle_has_no_critical_or_high_finding_but_its_redis_version(audited_bundle):
    result = run_redkeep("audit", "--dir", audited_bundle.root, "--format", "json")
    report = json.loads(result.stdout)
    serious = [
        item["id"]
        for item in report["findings"]
        if item["severity"] in ("critical", "high") and not item["id"].startswith("VER-")
    ]
    assert serious == [], report["findings"]
    assert report["target"].startswith("rediss://admin:****@")
    metrics = (audited_bundle.root / "run" / "metrics" / "redkeep_audit.prom").read_text()
    for severity, count in report["counts"].items():
        assert f'severity="{severity}"}} {count}\n' in metrics
    assert f'redkeep_audit_score{{target="{report["target"]}"}} {report["score"]}' in metrics
    status = run_redkeep("status", audited_bundle.root)
    assert "audit score" in status.stdout and "/100" in status.stdout
