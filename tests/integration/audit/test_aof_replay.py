"""The AOF replay of MULTI/EXEC blocks under the default user's rules, on every server build:
what PERS-02 and its release data (audit/aofreplay.py) say against what the server does, and
the bundle's default user line, which loses nothing anywhere."""

import redis

from redkeep.audit import aofreplay
from redkeep.render.acl import role_rules
from tests.integration.audit.test_audit import audit, findings

RESTRICTED_DEFAULT = "user default off resetpass resetkeys resetchannels -@all"
BUNDLE_DEFAULT = "user default " + " ".join(role_rules()["default"])
APP = "user app on >app-secret ~* &* +@all"
WRITTEN = ("plain", "tx:a", "tx:b", "lua:d", "lua:e")


def write_blocks(client: redis.Redis) -> None:
    """A plain write, and what the AOF records as MULTI/EXEC blocks."""
    client.set("plain", "1")
    client.pipeline(transaction=True).set("tx:a", "1").set("tx:b", "2").execute()
    client.eval("redis.call('SET', 'lua:d', '4'); redis.call('SET', 'lua:e', '5')", 0)
    client.xadd("jobs", {"n": 1})
    client.xadd("jobs", {"n": 2})
    client.xgroup_create("jobs", "workers", id="0")
    assert len(client.xreadgroup("workers", "w1", {"jobs": ">"})[0][1]) == 2


def after_restart(server) -> tuple[dict[str, int], int]:
    """Restart the server from its AOF; what it holds then: keys, and the group's pending."""
    server.stop()  # SIGTERM: Redis flushes and fsyncs the AOF
    server.start()
    client = redis.Redis(port=server.port, username="app", password="app-secret")
    held = {key: client.exists(key) for key in WRITTEN}
    pending = client.xpending("jobs", "workers")["pending"] if client.exists("jobs") else 0
    return held, pending


def test_the_audit_knows_which_builds_drop_the_aof_transactions(server_build, server_factory):
    verdict = aofreplay.status(server_build.flavour, server_build.version)
    assert verdict != "unknown", f"{server_build.name} is not in audit/aofreplay.py"
    server = server_factory(server_build, [RESTRICTED_DEFAULT, APP, "appendonly yes"])
    write_blocks(redis.Redis(port=server.port, username="app", password="app-secret"))
    report, _ = audit(
        "--url", f"redis://app@127.0.0.1:{server.port}", env={"REDIS_PASSWORD": "app-secret"}
    )
    held, pending = after_restart(server)
    lost = held != dict.fromkeys(WRITTEN, 1) or pending != 2
    assert lost == (verdict == "affected"), (verdict, held, pending)
    assert ("AOF-loading-client" in server.log_text()) == lost
    # PERS-02 is the finding exactly where the data is lost.
    assert (findings(report).get("PERS-02") == "critical") == lost, report["findings"]


def test_the_bundle_default_user_line_loses_nothing(server_build, server_factory):
    server = server_factory(server_build, [BUNDLE_DEFAULT, APP, "appendonly yes"])
    write_blocks(redis.Redis(port=server.port, username="app", password="app-secret"))
    report, _ = audit(
        "--url", f"redis://app@127.0.0.1:{server.port}", env={"REDIS_PASSWORD": "app-secret"}
    )
    assert "PERS-02" in {item["id"] for item in report["passed"]}
    assert after_restart(server) == (dict.fromkeys(WRITTEN, 1), 2)
    assert "AOF-loading-client" not in server.log_text()
