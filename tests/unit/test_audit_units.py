"""Audit units: checks on captured facts (bind, versions, 6.2 and Valkey), CVE data, report."""

import hashlib

from redkeep.audit import aofreplay, cve
from redkeep.audit.aclrules import allows
from redkeep.audit.checks import CHECKS, Finding, Passed, weak_password_hashes
from redkeep.audit.facts import Facts, Unavailable
from redkeep.audit.report import run_checks, sarif
from redkeep.exporter.info import parse_info
from redkeep.redis.acl import AclUser
from redkeep.redis.target import parse_url

BY_ID = {check.id: check for check in CHECKS}


def facts(config=None, info=None, users=None, **values) -> Facts:
    base_info = {"server": {"redis_version": "7.4.11", "config_file": "/etc/redis.conf"}}
    for section, fields in (info or {}).items():
        base_info.setdefault(section, {}).update(fields)
    return Facts(
        parse_url("redis://admin:x@10.0.0.5:6379"),
        **{
            "info": base_info,
            "config": {"bind": "127.0.0.1 -::1", **(config or {})},
            "users": acl_users(users or {}),
            "dryrun": {},
            **values,
        },
    )


def acl_users(users: dict[str, dict]) -> dict[str, AclUser]:
    """Users written as ACL GETUSER fields, as the audit reads them."""
    return {
        name: AclUser(frozenset(user["flags"]), tuple(user["passwords"]), user["commands"],
                      user["keys"], user["channels"])
        for name, user in users.items()
    }  # fmt: skip


def run(check_id: str, fact: Facts):
    try:
        return BY_ID[check_id].run(fact)
    except Unavailable as missing:
        return missing


def test_the_checklist_is_complete_and_unique():
    ids = [check.id for check in CHECKS]
    assert len(ids) == len(set(ids)) == 55
    groups = {"NET", "MEM", "AUTH", "TLS", "CMD", "VER", "PERS", "LOG", "HA"}
    assert {check.group for check in CHECKS} == groups


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
    """Redis 7.2+ INFO, parsed as the audit parses it: repeated bind=, '-' prefixes."""
    loopback = parse_info("# Server\r\nlistener0:name=tcp,bind=127.0.0.1,bind=-::1,port=6379\r\n")
    wildcard = parse_info("# Server\r\nlistener0:name=tcp,bind=*,bind=-::*,port=6379\r\n")
    for parsed, expected in ((loopback, Passed), (wildcard, Finding)):
        fact = facts({"bind": Unavailable("NOPERM")})
        fact.info = {**parsed, "server": {**parsed["server"], "redis_version": "7.2.4"}}
        assert isinstance(run("NET-02", fact), expected)
    assert run("NET-02", facts({"bind": Unavailable("NOPERM")})).reason  # neither: unknown


def test_version_checks_per_branch():
    assert len(cve.unfixed((7, 2, 4))) > 0 and cve.unfixed((7, 4, 11)) == []
    assert cve.minimum_safe((7, 2, 4)) == "7.2.15" and cve.minimum_safe((7, 0, 15)) is None
    assert cve.end_of_life((7, 0, 15)) and cve.end_of_life((6, 0, 9))
    assert not cve.end_of_life((7, 2, 4))
    old = run("VER-01", facts(info={"server": {"redis_version": "7.2.4"}}))
    assert old.severity == "high" and "upgrade to Redis 7.2.15" in old.remediation
    # Lua reachable for a user escalates the Lua CVEs to critical; unknown does not.
    lua = facts(info={"server": {"redis_version": "7.2.4"}}, dryrun={("app", "eval"): True})
    assert run("VER-01", lua).severity == "critical"
    blind = facts(info={"server": {"redis_version": "7.2.4"}}, dryrun=Unavailable("NOPERM"))
    assert run("VER-01", blind).severity == "high" and "unknown" in run("VER-01", blind).evidence
    newer = run("VER-01", facts(info={"server": {"redis_version": "9.0.0"}}))
    assert isinstance(newer, Unavailable) and "not in the CVE data" in newer.reason
    assert isinstance(run("VER-01", facts()), Passed)
    assert run("VER-02", facts(info={"server": {"redis_version": "7.0.15"}})).severity == "high"


def valkey(version: str) -> Facts:
    return facts(info={"server": {"redis_version": "7.2.4", "server_name": "valkey",
                                  "valkey_version": version}})  # fmt: skip


def test_valkey_is_judged_by_its_own_releases_not_by_its_redis_version():
    # Valkey's redis_version is always 7.2.4: judged by it, every Valkey would look like Redis
    # 7.2.4. Its own advisories decide: 8.1.8 lacks the July 2026 fixes of 8.1.9.
    old = run("VER-01", valkey("8.1.8"))
    assert isinstance(old, Finding) and old.evidence.startswith("Valkey 8.1.8 has 2 known CVEs")
    assert "CVE-2026-63639" in old.evidence and "CVE-2022" not in old.evidence
    assert old.remediation == "upgrade to Valkey 8.1.9"
    assert isinstance(run("VER-01", valkey("8.1.9")), Passed)
    assert isinstance(run("VER-01", valkey("9.1.2")), Passed)
    assert "CVE-2026-27623" in run("VER-01", valkey("9.0.2")).evidence  # a 9.0-only CVE
    assert "CVE-2026-27623" not in run("VER-01", valkey("8.1.5")).evidence
    assert run("VER-01", valkey("8.0.1")).remediation == "upgrade to Valkey 8.0.10"
    for version in ("7.2.4", "8.1.8", "9.1.2"):
        assert run("VER-02", valkey(version)).evidence == f"Valkey {version[:3]} is supported"
    # A branch the data does not know is never a pass, for either check.
    for check_id in ("VER-01", "VER-02"):
        unknown = run(check_id, valkey("9.2.0"))
        assert isinstance(unknown, Unavailable) and "Valkey 9.2" in unknown.reason, check_id
    # Valkey without valkey_version, and servers without a section, cannot be judged.
    nameless = facts(info={"server": {"redis_version": "7.2.4", "server_name": "valkey"}})
    assert "valkey_version" in run("VER-01", nameless).reason
    other = facts(info={"server": {"redis_version": "7.2.4", "server_name": "keydb"}})
    assert "keydb" in run("VER-01", other).reason


def test_every_cve_entry_names_releases_of_its_own_branch():
    data = cve.load()
    for flavour in cve.flavours():
        for item in data[flavour]["cves"]:
            for branch, fixed in item["fixed"].items():
                assert fixed in ("EOL", "?") or cve.branch(cve.parse(fixed)) == branch, item["id"]


def test_rules_stand_in_for_acl_dryrun_on_redis_62():
    assert allows("+@all -@dangerous", set(), "eval")
    assert not allows("+@all -@dangerous", set(), "flushall")
    assert allows("-@all +config|set", set(), "config set")
    assert not allows("+@all -config", set(), "config set")
    assert allows("", {"allcommands"}, "debug")
    assert not allows("+@read +@write -@scripting", set(), "eval")


def test_tls_protocols_and_ciphers_are_read_as_openssl_reads_them():
    tls = {"tls-port": "6380", "tls-prefer-server-ciphers": "yes"}
    lower = facts({**tls, "tls-protocols": "tlsv1.1 tlsv1.2"})
    assert run("TLS-04", lower).severity == "high"
    assert isinstance(run("TLS-05", facts({**tls, "tls-ciphers": "HIGH:!aNULL:!MD5"})), Passed)
    weak = run("TLS-05", facts({**tls, "tls-ciphers": "ECDHE-RSA-AES128-GCM-SHA256:DES-CBC3-SHA"}))
    assert weak.severity == "medium" and "DES" in weak.evidence


def test_default_user_powers_seen_by_dryrun_even_with_a_minus_rule():
    users = {"default": {"flags": {"on"}, "passwords": ["a" * 64], "commands": "+@all -@pubsub",
                         "keys": "~*", "channels": ""}}  # fmt: skip
    fact = facts(users=users, dryrun={("default", "config set"): True})
    assert run("AUTH-01", fact).severity == "high"


def default_user(flags=("off",), commands="+@all", keys="~*", passwords=()) -> dict:
    return {"default": {"flags": set(flags), "passwords": list(passwords),
                        "commands": commands, "keys": keys, "channels": "&*"}}  # fmt: skip


def test_a_disabled_default_user_without_password_is_harmless_whatever_its_rules():
    # The bundle's line: off, resetpass, every command (so the AOF loader may replay).
    bundle = facts(users=default_user(), dryrun={})
    result = run("AUTH-01", bundle)
    assert isinstance(result, Passed) and "nobody can log in" in result.evidence
    for check_id in ("AUTH-02", "AUTH-03", "AUTH-05", "AUTH-06", "AUTH-08", "NET-03"):
        assert isinstance(run(check_id, facts({"protected-mode": "yes"}, users=default_user())),
                          Passed), check_id  # fmt: skip
    # Enabled with every command it is still AUTH-01's finding, and the fix keeps the rules.
    enabled = run("AUTH-01", facts(users=default_user(flags=("on",), passwords=["a" * 64])))
    assert enabled.severity == "high"
    assert enabled.remediation.startswith("user default off resetpass ~* &* +@all")


def aof(version="7.0.15", server_name="redis", aof_enabled="1", **user) -> Facts:
    info = {"server": {"redis_version": version, "server_name": server_name},
            "persistence": {"aof_enabled": aof_enabled}}  # fmt: skip
    if server_name == "valkey":
        info["server"] |= {"redis_version": "7.2.4", "valkey_version": version}
    return facts(info=info, users=default_user(**user))


def test_aof_replay_with_a_restricted_default_user():
    restricted = {"commands": "-@all", "keys": ""}
    # Observed on the test matrix: these drop the AOF's MULTI/EXEC blocks.
    for version, name in (("7.0.15", "redis"), ("8.2.3", "redis"), ("8.1.8", "valkey")):
        result = run("PERS-02", aof(version, name, **restricted))
        assert isinstance(result, Finding) and result.severity == "critical", version
        assert "dropped at every restart" in result.evidence
        assert result.remediation.startswith("user default off resetpass ~* &* +@all")
    # ... and these keep them: no EXEC re-check (6.2) or the fix (8.6, Valkey 8.1.10, 9.1.2).
    for version, name in (("6.2.14", "redis"), ("8.6.0", "redis"), ("8.1.10", "valkey"),
                          ("9.1.2", "valkey")):  # fmt: skip
        assert isinstance(run("PERS-02", aof(version, name, **restricted)), Passed), version
    # A release nobody has looked at: could not verify, with the safe line in the reason.
    for version, name in (("7.4.6", "redis"), ("8.2.9", "redis"), ("9.0.3", "valkey")):
        unknown = run("PERS-02", aof(version, name, **restricted))
        assert isinstance(unknown, Unavailable) and "user default off resetpass" in unknown.reason
    # An open default user, or no AOF: nothing is dropped whatever the version.
    assert isinstance(run("PERS-02", aof()), Passed)
    assert isinstance(run("PERS-02", aof(aof_enabled="0", **restricted)), Passed)
    # Every command but a few: only blocks with those commands are dropped.
    assert run("PERS-02", aof(commands="+@all -debug")).severity == "medium"
    # Redis 6.2 lists key patterns bare and says allkeys in the flags.
    assert isinstance(run("PERS-02", aof(flags=("off", "allkeys"), keys="*")), Passed)
    assert aofreplay.status("redis", (7, 2, 5)) == "affected"
    assert aofreplay.status("redis", (7, 2, 6)) == "unknown"


def test_acl_log_off_is_not_a_clean_log():
    fact = facts({"acllog-max-len": "0"}, acl_log=[])
    assert "switched off" in run("AUTH-09", fact).reason


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


REDIS_7_BUFFERS = "normal {} 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"


def memory(maxmemory="268435456", policy="allkeys-lru", clients="0", normal="0"):
    """CONFIG GET values as Redis 7.0 answers them (bytes; maxmemory-clients may be N%)."""
    return facts(
        {
            "maxmemory": maxmemory,
            "maxmemory-policy": policy,
            "maxmemory-clients": clients,
            "client-output-buffer-limit": REDIS_7_BUFFERS.format(normal),
        }
    )


def test_client_buffers_that_can_evict_the_data():
    # Redis' defaults with a maxmemory and an evicting policy: one slow reader empties it.
    unbounded = run("MEM-01", memory())
    assert unbounded.severity == "high" and "allkeys-lru evicts keys" in unbounded.evidence
    assert unbounded.remediation.startswith("maxmemory-clients 25%")
    # A per-client limit alone: a few slow readers together still fill maxmemory.
    per_client = run("MEM-01", memory(normal="67108864"))
    assert per_client.severity == "medium" and "4 slow readers" in per_client.evidence
    # A bound on all clients together, as a percentage or a size below maxmemory, passes.
    assert "25.6 MiB" in run("MEM-01", memory(clients="10%")).evidence
    assert isinstance(run("MEM-01", memory(clients="33554432")), Passed)
    # Data beyond maxmemory minus the clients' share: a slow reader makes Redis evict keys.
    full = memory(clients="67108864")
    full.info["memory"] = {"used_memory": str(200 * 2**20), "mem_clients_normal": "0"}
    over = run("MEM-01", full)
    assert over.severity == "medium" and "leaves data 192 MiB" in over.evidence
    assert over.remediation.startswith("maxmemory 314mb")  # 200 * 1.25 + 64
    full.info["memory"]["used_memory"] = str(150 * 2**20)
    assert "(uses 150.0 MiB)" in run("MEM-01", full).evidence
    # ... but not one as large as maxmemory itself.
    assert run("MEM-01", memory(clients="100%")).severity == "high"
    # Nothing is evicted without maxmemory or with noeviction.
    assert isinstance(run("MEM-01", memory(maxmemory="0")), Passed)
    assert isinstance(run("MEM-01", memory(policy="noeviction")), Passed)
    # Redis 6.2 has no maxmemory-clients: the remedy is the per-client limit, and an upgrade.
    old = run("MEM-01", memory(clients=None))
    assert old.severity == "high" and old.remediation.startswith("client-output-buffer-limit")
    assert isinstance(run("MEM-01", facts({"maxmemory": Unavailable("NOPERM")})), Unavailable)


def test_report_score_accept_fail_on_and_sarif():
    fact = facts({"bind": "*", "timeout": "0"}, unauthenticated="PONG")
    audit = run_checks(fact, accepted={"NET-01"})
    report = audit.to_json()
    ids = {item["id"]: item for item in report["findings"]}
    assert ids["NET-01"]["accepted"] and ids["NET-01"]["severity"] == "critical"
    assert report["counts"]["critical"] == 0  # accepted: shown, not counted
    assert report["score"] == 100 - 10 - 1  # NET-02 high, NET-07 low
    assert audit.failed("high") and not audit.failed("critical")
    assert all("# NET-01" not in line for line in audit.fix_hints())
    document = sarif([audit])
    result = next(r for r in document["runs"][0]["results"] if r["ruleId"] == "NET-01")
    assert result["suppressions"]
    # Checks whose facts are missing are listed with a reason, not passed.
    unseen = {item["id"]: item["reason"] for item in report["could_not_verify"]}
    assert "AUTH-09" in unseen and "acl_log was not read" in unseen["AUTH-09"]
    assert "TLS-07" in unseen and "NET-06" in unseen


def test_an_audit_that_could_not_see_says_so():
    # A user refused everything but PING: the score rests on almost nothing, and says so.
    refused = Unavailable("NOPERM: the auditing user may not run this (CONFIG)")
    blind = Facts(parse_url("redis://reader:x@h:6379"), info=refused, config=refused,
                  users=refused, dryrun=refused, unauthenticated="NOAUTH")  # fmt: skip
    audit = run_checks(blind, accepted=set())
    report = audit.to_json()
    data_checks = [check for check in CHECKS if "data" in check.on]  # INFO refused: not a Sentinel
    assert report["checks"] == {"total": len(data_checks), "verified": 1}
    assert report["score"] == 100 and "NOPERM" in report["incomplete"]
    notes = sarif([audit])["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert notes[0]["level"] == "warning" and "incomplete" in notes[0]["message"]["text"]
    # Nothing refused, but under half of the checks could see: incomplete too.
    sparse = facts(unauthenticated="NOAUTH")
    sparse.config = {"bind": "127.0.0.1"}
    report = run_checks(sparse, accepted=set()).to_json()
    assert report["checks"]["verified"] < len(CHECKS) / 2
    assert report["incomplete"].startswith(f"only {report['checks']['verified']} of")
    # An administrator's view of a whole server is complete.
    admin_view = facts(REDIS_62_LIKE_CONFIG, acl_log=[], clients=[], renamed=[], modules=[],
                       unauthenticated="NOAUTH")  # fmt: skip
    full = run_checks(admin_view, accepted=set()).to_json()
    assert full["incomplete"] is None, full["could_not_verify"]
    # A refusal the team accepted (--accept ID) does not make the audit incomplete.
    one = facts(REDIS_62_LIKE_CONFIG, acl_log=refused, clients=[], renamed=[], modules=[],
                unauthenticated="NOAUTH")  # fmt: skip
    assert "NOPERM" in run_checks(one, accepted=set()).incomplete
    assert run_checks(one, accepted={"AUTH-09"}).incomplete is None


# CONFIG GET answers of a complete server (a value for every parameter the checks read).
REDIS_62_LIKE_CONFIG = {
    "bind": "127.0.0.1", "protected-mode": "yes", "port": "6379", "tls-port": "0",
    "unixsocket": "", "timeout": "300", "client-output-buffer-limit": REDIS_7_BUFFERS.format(0),
    "maxmemory": "0", "maxmemory-policy": "noeviction", "maxmemory-clients": "0",
    "requirepass": "", "aclfile": "/etc/users.acl", "acllog-max-len": "128",
    "acl-pubsub-default": "resetchannels", "enable-debug-command": "no",
    "enable-module-command": "no", "enable-protected-configs": "no",
    "sanitize-dump-payload": "yes", "replica-read-only": "yes", "dir": "/var/lib/redis",
    "hide-user-data-from-log": "yes", "logfile": "/var/log/redis.log", "loglevel": "notice",
    "tls-key-file-pass": "", "tls-client-key-file-pass": "",
}  # fmt: skip


def test_second_review_cases():
    # A UNIX socket listener is not an address.
    info = parse_info(
        "# Server\r\nlistener0:name=tcp,bind=127.0.0.1,port=6379\r\n"
        "listener1:name=unix,bind=/run/redis.sock\r\n"
    )
    fact = facts({"bind": Unavailable("NOPERM")})
    fact.info = {**info, "server": {**info["server"], "redis_version": "7.4.11"}}
    assert isinstance(run("NET-02", fact), Passed)
    # AUTH-09 leaves out the audit's own connection only.
    log = [
        {"reason": "command", "username": "default", "count": 1, "client-info": "id=7 addr=x"},
        {"reason": "command", "username": "default", "count": 2, "client-info": "id=9 addr=y"},
    ]
    result = run("AUTH-09", facts({"acllog-max-len": "128"}, acl_log=log, client_id=7))
    assert result.severity == "info" and result.evidence.startswith("2 denied")
    # Anonymous access puts every open CVE in reach.
    anonymous = facts(info={"server": {"redis_version": "8.2.5"}}, unauthenticated="PONG")
    assert run("VER-01", anonymous).severity == "critical"
    # Branches the data does not cover are not judged.
    for version in ("6.0.20", "7.6.0"):
        assert isinstance(
            run("VER-01", facts(info={"server": {"redis_version": version}})), Unavailable
        )
    # Cipher strings with '+', security level 0 and anonymous suites.
    tls = {"tls-port": "6380", "tls-prefer-server-ciphers": "yes"}
    for ciphers in ("RC4+RSA", "DEFAULT:@SECLEVEL=0", "ADH-AES256-SHA"):
        assert run("TLS-05", facts({**tls, "tls-ciphers": ciphers})).severity == "medium", ciphers
