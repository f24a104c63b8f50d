"""`redkeep audit` on every server build, for the checks that depend on the version: each is
run on the builds on both sides of its gate. (PERS-02, the AOF replay, has its own test on
every build: test_aof_replay.py.)

- ACL DRYRUN (7.0+) and, on Redis 6.2, the same answers worked out from each user's rules;
- INFO listener lines (Valkey, Redis 7.2+) for NET-02 when CONFIG GET is refused;
- hide-user-data-from-log (Valkey 8+, Redis 7.4+; Redis 8.2 defaults to no);
- maxmemory-clients (7.0+) in NET-08 and MEM-01;
- sanitize-dump-payload, which Valkey 9.1's CONFIG GET does not return (CMD-06);
- VER-01/VER-02: Valkey judged by valkey_version against its own advisories.
"""

import redis

from redkeep.audit import cve
from redkeep.audit.facts import _dryrun_from_rules, gather
from redkeep.redis.target import ConnectionOptions, resolve_target
from tests.integration.audit.test_audit import audit, findings

USERS = [
    "user default off",
    "user admin on >admin-secret ~* &* +@all",
    "user app on >app-secret ~app:* &* +@all -@dangerous",
    "user ops on >ops-secret ~* &* +@all -@dangerous +debug +config|get -flushall",
    "user scripts on >scripts-secret ~* +@read +@scripting -evalsha",
    "user writer on >writer-secret ~* +@write +@connection -@dangerous",
    "user mixed on >mixed-secret ~* +@all -config +config|set -acl +acl|whoami",
    # May do everything but CONFIG: the audit falls back to INFO for what CONFIG would tell.
    "user auditor on >auditor-secret ~* &* +@all -config",
]
LISTENER_LINES = {"valkey-8.1.8", "redis-8.2.3", "valkey-9.1.2"}
# VER-01 on each build: the CVEs still open there, by the server's own release (Valkey 8.1.8
# lacks the fixes of 8.1.9; Valkey 9.1.2 has every fix the data knows).
OPEN_CVES = {
    "redis-6.2.14": ["CVE-2025-49844"],
    "redis-7.0.15": ["CVE-2025-49844"],
    "valkey-8.1.8": ["CVE-2026-56684", "CVE-2026-63639"],
    "redis-8.2.3": ["CVE-2026-23479"],
    "valkey-9.1.2": [],
}


def results(report: dict) -> dict[str, tuple[str, str]]:
    """{check id: (severity, evidence) | ("passed", evidence) | ("unknown", reason)}."""
    found = {item["id"]: (item["severity"], item["evidence"]) for item in report["findings"]}
    found |= {item["id"]: ("passed", item["evidence"]) for item in report["passed"]}
    found |= {item["id"]: ("unknown", item["reason"]) for item in report["could_not_verify"]}
    return found


def run_audit(port: int, user: str) -> dict:
    report, _ = audit(
        "--url", f"redis://{user}@127.0.0.1:{port}", env={"REDIS_PASSWORD": f"{user}-secret"}
    )
    return report


def test_version_gated_checks(server_build, server_factory):
    since_7_0 = server_build.version >= (7, 0, 0)
    clients = ["maxmemory-clients 25%"] if since_7_0 else []
    server = server_factory(
        server_build, [*USERS, "maxmemory 100mb", "maxmemory-policy allkeys-lru", *clients]
    )
    report = run_audit(server.port, "admin")
    found = results(report)
    version = ".".join(map(str, server_build.version))
    assert report["server"]["name"] == server_build.flavour
    assert (report["server"]["version"], report["server"]["mode"]) == (version, "standalone")

    # Who may do what: ACL DRYRUN, or on 6.2 the users' rules; the same verdicts everywhere.
    assert found["AUTH-05"] == (
        "high",
        "auditor: FLUSHALL, MODULE, DEBUG, ACL SETUSER; mixed: CONFIG SET, FLUSHALL, MODULE, DEBUG",
    )
    assert found["CMD-05"] == (
        "info",
        "users that may run Lua: admin, app, auditor, mixed, ops, scripts (Lua CVEs apply to "
        "them; see VER-01)",
    )

    # maxmemory-clients: bounds the clients together on 7.0+; before, nothing does.
    if since_7_0:
        assert found["MEM-01"][0] == "passed" and "maxmemory-clients 25%" in found["MEM-01"][1]
        assert found["NET-08"][0] == "passed"
    else:
        assert found["MEM-01"][0] == "high" and "no maxmemory-clients" in found["MEM-01"][1]
        assert found["NET-08"][0] == "low"

    # hide-user-data-from-log: Valkey says yes, Redis 8.2 no, older Redis has none.
    log = found["LOG-01"]
    if server_build.flavour == "valkey":
        assert log == ("passed", "hide-user-data-from-log yes")
    elif server_build.version >= (7, 4, 0):
        assert log == ("low", "hide-user-data-from-log no")
    else:
        assert log[0] == "unknown" and "does not exist before Redis 7.4" in log[1]

    # sanitize-dump-payload: Valkey 9.1's CONFIG GET has no value for it: not a pass.
    if server_build.name == "valkey-9.1.2":
        assert found["CMD-06"][0] == "unknown" and "returns nothing" in found["CMD-06"][1]
    else:
        assert found["CMD-06"] == (
            "medium",
            "sanitize-dump-payload no and auditor, mixed may RESTORE",
        )

    # The CVE data, by the server's own release.
    shown = f"{server_build.flavour.title()} {version}"
    if OPEN_CVES[server_build.name]:
        severity, evidence = found["VER-01"]
        assert severity in ("high", "critical") and evidence.startswith(f"{shown} has ")
        assert all(f"{cve_id}," in evidence or f"{cve_id} " in evidence
                   for cve_id in OPEN_CVES[server_build.name])  # fmt: skip
    else:
        updated = cve.load()["updated"]
        assert found["VER-01"] == ("passed", f"{shown}: no known CVE open (CVE data of {updated})")
    branch = f"{server_build.flavour.title()} {version[:3]}"
    if server_build.version[:2] == (7, 0):
        assert found["VER-02"] == ("high", f"{branch} gets no more security fixes")
    else:
        assert found["VER-02"] == ("passed", f"{branch} is supported")


def test_bind_from_info_listener_lines_when_config_is_refused(server_build, server_factory):
    server = server_factory(server_build, USERS)
    found = results(run_audit(server.port, "auditor"))
    assert found["NET-08"][0] == "unknown" and "NOPERM" in found["NET-08"][1]  # no CONFIG
    if server_build.name in LISTENER_LINES:
        assert found["NET-02"] == ("passed", "bind 127.0.0.1")
    else:
        assert found["NET-02"] == (
            "unknown",
            "neither CONFIG GET bind nor INFO listener lines are available",
        )


def test_dryrun_and_the_rules_fallback_agree(server_build, server_factory):
    """On 7.0+ the audit asks ACL DRYRUN; Redis 6.2 has no DRYRUN and the audit works the
    answers out from the rules instead. Here both are compared on every build that has it."""
    server = server_factory(server_build, USERS)
    url = f"redis://admin:admin-secret@127.0.0.1:{server.port}"
    facts = gather(resolve_target(ConnectionOptions(url=url), {}))
    dryrun = facts.dryrun
    assert dryrun == _dryrun_from_rules(facts.users)
    assert dryrun[("ops", "debug")] and not dryrun[("ops", "flushall")]
    assert dryrun[("scripts", "eval")] and not dryrun[("writer", "eval")]
    has_dryrun = True
    try:
        redis.Redis.from_url(url).execute_command("ACL", "DRYRUN", "app", "PING")
    except redis.ResponseError:
        has_dryrun = False
    assert has_dryrun == (server_build.version >= (7, 0, 0))
    assert findings(run_audit(server.port, "admin"))["AUTH-05"] == "high"
