"""Audit units: checks on captured facts (bind, versions, 6.2 and Valkey), CVE data, report."""

import hashlib

from redkeep.audit import cve
from redkeep.audit.checks import CHECKS, Finding, Passed, weak_password_hashes
from redkeep.audit.facts import Facts, Unavailable
from redkeep.audit.report import failed, fix_hints, run_checks, sarif

BY_ID = {check.id: check for check in CHECKS}


def facts(config=None, info=None, users=None, **values) -> Facts:
    base_info = {"server": {"redis_version": "7.4.11", "config_file": "/etc/redis.conf"}}
    for section, fields in (info or {}).items():
        base_info.setdefault(section, {}).update(fields)
    return Facts(
        where="redis://admin:****@10.0.0.5:6379",
        tls=False,
        values={
            "info": base_info,
            "config": {"bind": "127.0.0.1 -::1", **(config or {})},
            "users": users or {},
            "dryrun": {},
            **values,
        },
    )


def run(check_id: str, fact: Facts):
    try:
        return BY_ID[check_id].run(fact)
    except Unavailable as missing:
        return missing


def test_the_checklist_is_complete_and_unique():
    ids = [check.id for check in CHECKS]
    assert len(ids) == len(set(ids)) == 41
    assert {check.group for check in CHECKS} == {"NET", "AUTH", "TLS", "CMD", "VER", "PERS", "LOG"}


def test_bind_on_captured_config_output():
    for value in ("* -::*", "0.0.0.0", ":: 127.0.0.1"):
        result = run("NET-02", facts({"bind": value}))
        assert isinstance(result, Finding) and result.severity == "high", value
    assert isinstance(run("NET-02", facts({"bind": "127.0.0.1 -::1"})), Passed)
    assert isinstance(run("NET-02", facts({"bind": "10.0.0.5 127.0.0.1"})), Passed)
    # Exposure decides NET-01's severity.
    open_door = {"unauthenticated": "PONG"}
    assert run("NET-01", facts({"bind": "10.0.0.5"}, **open_door)).severity == "critical"
    assert run("NET-01", facts({"bind": "127.0.0.1"}, **open_door)).severity == "high"
    closed = run("NET-01", facts(unauthenticated="NOAUTH Authentication required."))
    assert isinstance(closed, Passed)


def test_bind_from_info_listeners_when_config_is_refused():
    fact = facts(
        {"bind": Unavailable("NOPERM")},
        {"server": {"listener0": {"name": "tcp", "bind": "*", "port": "6379"}}},
    )
    assert run("NET-02", fact).severity == "high"


def test_version_checks_per_branch():
    assert len(cve.unfixed((7, 2, 4))) > 0 and cve.unfixed((7, 4, 11)) == []
    assert cve.minimum_safe((7, 2, 4)) == "7.2.11" and cve.minimum_safe((7, 0, 15)) is None
    assert cve.end_of_life((7, 0, 15)) and cve.end_of_life((6, 0, 9))
    assert not cve.end_of_life((7, 2, 4))
    old = run("VER-01", facts(info={"server": {"redis_version": "7.2.4"}}))
    assert old.severity == "high" and "upgrade to Redis 7.2.11" in old.remediation
    # Lua reachable for a user escalates the Lua CVEs to critical.
    lua = facts(info={"server": {"redis_version": "7.2.4"}}, dryrun={("app", "eval"): True})
    assert run("VER-01", lua).severity == "critical"
    assert isinstance(run("VER-01", facts()), Passed)
    assert run("VER-02", facts(info={"server": {"redis_version": "7.0.15"}})).severity == "high"


def test_valkey_is_recognised_and_not_judged_by_redis_versions():
    valkey = facts(info={"server": {"redis_version": "7.2.4", "server_name": "valkey",
                                    "valkey_version": "8.0.1"}})  # fmt: skip
    for check_id in ("VER-01", "VER-02"):
        result = run(check_id, valkey)
        assert isinstance(result, Unavailable) and "valkey" in result.reason


def test_redis_62_fallbacks_say_what_they_could_not_see():
    old = facts(
        {"enable-debug-command": None, "hide-user-data-from-log": None},
        dryrun=Unavailable("ACL DRYRUN needs Redis 7.0 or newer"),
    )
    assert "before Redis 7.0" in run("CMD-01", old).reason
    assert "7.0" in run("AUTH-05", old).reason
    assert "before Redis 7.4" in run("LOG-01", old).reason


def test_weak_passwords_and_half_rotations_from_hashes():
    digest = hashlib.sha256(b"foobared").hexdigest()
    assert digest in weak_password_hashes()
    users = {
        "cache": {"flags": {"on"}, "passwords": [digest], "commands": "+get",
                  "keys": "", "channels": ""},
        "app": {"flags": {"on"}, "passwords": ["a" * 64, "b" * 64], "commands": "+@read",
                "keys": "", "channels": ""},
    }  # fmt: skip
    weak = run("AUTH-03", facts(users=users))
    assert weak.severity == "high" and "cache" in weak.evidence and "foobared" not in weak.evidence
    assert run("AUTH-08", facts(users=users)).severity == "info"


def test_logs_and_data_directory():
    assert run("LOG-02", facts({"logfile": "", "loglevel": "notice"})).severity == "info"
    assert run("PERS-01", facts({"dir": "./"})).severity == "low"
    assert isinstance(run("PERS-01", facts({"dir": "/var/lib/redis"})), Passed)


def test_report_score_accept_fail_on_and_sarif():
    fact = facts({"bind": "*", "timeout": "0"}, unauthenticated="PONG")
    report = run_checks(fact, accepted={"NET-01"})
    ids = {item["id"]: item for item in report["findings"]}
    assert ids["NET-01"]["accepted"] and ids["NET-01"]["severity"] == "critical"
    assert report["counts"]["critical"] == 0  # accepted: shown, not counted
    assert report["score"] == 100 - 10 - 1  # NET-02 high, NET-07 low
    assert failed(report, "high") and not failed(report, "critical")
    assert all("# NET-01" not in line for line in fix_hints(report))
    document = sarif([report])
    result = next(r for r in document["runs"][0]["results"] if r["ruleId"] == "NET-01")
    assert result["suppressions"]
    # Everything it could not read is listed with a reason; nothing unseen passes.
    unseen = {item["id"] for item in report["could_not_verify"]}
    assert unseen.isdisjoint(item["id"] for item in report["passed"])
    assert "AUTH-09" in unseen  # no ACL LOG fact
