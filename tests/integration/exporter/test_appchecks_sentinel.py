"""App checks of a Sentinel bundle (`init --topology sentinel`, `up --detach`) run on the primary
the Sentinels name, also after a SIGKILL of the primary, never on a replica.

The Sentinels are made to promote redis-2 (redis-1 gets replica-priority 0), so redis-1, the
first data node that answers once redis-0 is dead, stays a replica. redis-1 is then made
writable and given its own value of the checked key: a check that reads it reports that value
instead of the primary's. Judged by what the exporter reports against what each node holds,
polled with no timing threshold.
"""

import os
import signal

import redis
import yaml
from pydantic import TypeAdapter

from redkeep.bundle import Bundle
from redkeep.config.deployment import SENTINEL_PORT_OFFSET
from redkeep.config.schema import CheckSettings
from redkeep.exporter.appchecks import AppCheckRunner
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target
from redkeep.render import nodes as node_files
from tests.conftest import run_redkeep
from tests.hanodes import wait_until
from tests.integration.exporter.conftest import value
from tests.integration.test_sentinel import FAST, client
from tests.servers import free_port_span, wait_for_exit

KEY = "app:stamp"
CHECK = {"name": "stamp", "type": "key_age", "key": KEY, "interval_seconds": 0.2}


def test_checks_follow_the_primary_the_sentinels_name_after_a_sigkill(
    tmp_path, redis_binary, exporter_factory
):
    base = free_port_span([0, 1, 2, SENTINEL_PORT_OFFSET, SENTINEL_PORT_OFFSET + 2])
    root = tmp_path / "ha"
    flags = ("--topology", "sentinel", "--replicas", "2", "--sentinels", "3")
    init = run_redkeep("init", root, *flags, "--tls-port", base, env=FAST)
    assert init.returncode == 0, init.stderr
    config = yaml.safe_load((root / "redkeep.yaml").read_text())
    config["exporter"]["checks"] = [CHECK]
    (root / "redkeep.yaml").write_text(yaml.safe_dump(config))
    again = run_redkeep("init", root, "--force", env=FAST)  # the exporter user may read KEY
    assert again.returncode == 0, again.stderr
    bundle = Bundle(root)
    ports = {node.name: node.port for node in node_files.planned(bundle.settings)}
    up = run_redkeep("up", root, "--detach")
    admins = {name: client(bundle, ports[name], "admin") for name in ("redis-1", "redis-2")}
    try:
        assert up.returncode == 0, up.stderr
        admins["redis-1"].config_set("replica-priority", 0)  # never promoted
        primary = client(bundle, ports["redis-0"], "admin")
        primary.set(KEY, 1000)
        assert primary.execute_command("WAIT", 2, 5000) == 2
        primary.close()
        exporter = exporter_factory("--dir", root)

        def stamp() -> float | None:
            families = exporter.metrics()
            if not families.get("redkeep_check_key_timestamp_seconds"):
                return None  # not run yet
            return value(families, "redkeep_check_key_timestamp_seconds", check="stamp")

        wait_until(lambda: stamp() == 1000, "the check to read the primary's value", 60)

        pid = int((bundle.run_dir / "redis-0.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        assert wait_for_exit(pid)
        sentinel = client(bundle, ports["sentinel-0"], "admin")
        wait_until(
            lambda: (
                admins["redis-2"].info("replication")["role"] == "master"
                and sentinel.sentinel_get_master_addr_by_name("redkeep")[1] == ports["redis-2"]
                and admins["redis-1"].info("replication").get("master_port") == ports["redis-2"]
                and admins["redis-1"].info("replication").get("master_link_status") == "up"
            ),
            "the Sentinels to promote redis-2 and redis-1 to follow it",
            60,
        )
        sentinel.close()
        admins["redis-2"].set(KEY, 2000)
        assert admins["redis-2"].execute_command("WAIT", 1, 5000) == 1
        # The replica gets a value of its own: what a check run there would report.
        admins["redis-1"].config_set("replica-read-only", "no")
        admins["redis-1"].set(KEY, 3000)
        assert admins["redis-1"].info("replication")["role"] == "slave"

        wait_until(lambda: stamp() == 2000, "the check to read the new primary's value", 60)
        assert admins["redis-1"].get(KEY) == "3000"  # the replica still holds its own
        assert admins["redis-1"].info("replication")["role"] == "slave"
    finally:
        for admin in admins.values():
            admin.close()
        run_redkeep("down", root)


def test_a_primary_demoted_under_a_live_connection_is_left_before_the_next_check(redis_factory):
    """A failover that leaves the old primary running (by hand, a partition) and no Sentinel
    closing its clients: the runner asks the node's role each round and reconnects."""
    old, new, elsewhere = (redis_factory(["repl-diskless-sync-delay 0"]) for _ in range(3))
    for server, stamp in ((old, 1000), (new, 2000), (elsewhere, 3000)):
        redis.Redis(port=server.port).set(KEY, stamp)
    named = {"primary": old}  # what the Sentinels would name

    def connect(address):
        assert address is None  # not a cluster
        server = named["primary"]
        connection = RawConnection(Target("redis", host="127.0.0.1", port=server.port), 5.0)
        connection.login()
        return connection

    check = TypeAdapter(CheckSettings).validate_python({**CHECK, "interval_seconds": 0.01})
    runner = AppCheckRunner([check], connect, budget=5.0, scan_count=100, primary_only=True)

    def reported() -> float:
        runner.round()
        result = runner.results["stamp"]
        return dict((name, v) for name, _, v in result.values).get(
            "redkeep_check_key_timestamp_seconds", 0.0
        ) if result.ok else 0.0  # fmt: skip

    try:
        assert reported() == 1000
        # The old primary now replicates another server (it holds that one's data, as a
        # demoted primary holds the new primary's), and the Sentinels name `new`.
        named["primary"] = new
        redis.Redis(port=old.port).replicaof("127.0.0.1", elsewhere.port)
        wait_until(
            lambda: redis.Redis(port=old.port, decode_responses=True).get(KEY) == "3000",
            "the demoted node to sync",
        )
        wait_until(lambda: reported() == 2000, "the checks to leave the demoted node")
    finally:
        runner.close()
