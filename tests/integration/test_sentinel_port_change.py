"""`init --force --tls-port` after a failover: `up` still starts the node the Sentinels
promoted as the primary. Read from the old ports, their files name it at an address that is
no node now; starting from the plan instead made the stale old primary primary again, and the
promoted one resynced from it, losing every write it took after the failover (seen by the
attack review). No server runs: the files are what `up` renders from."""

import re

from redkeep.bundle import Bundle
from redkeep.render import nodes as node_files
from redkeep.stack import nodes, redis_server
from tests.conftest import run_redkeep

OLD, NEW = 30000, 30400  # nothing listens: no process is started


def test_a_port_change_after_a_failover_keeps_the_promoted_primary(tmp_path, redis_binary):
    root = tmp_path / "ha"
    args = ("--topology", "sentinel", "--replicas", "1", "--sentinels", "3")
    assert run_redkeep("init", root, *args, "--tls-port", OLD).returncode == 0
    bundle = Bundle(root)
    names = {node.name for node in node_files.planned(bundle.settings)}
    version = redis_server.server_version(redis_server.find_redis_server())[:2]
    nodes.write_run_confs(bundle, names, version)
    for j in range(3):  # what each Sentinel rewrote after promoting redis-1 (epoch 1)
        path = nodes.conf_path(bundle, f"sentinel-{j}")
        text = path.read_text().replace(
            f"sentinel monitor redkeep 127.0.0.1 {OLD} ",
            f"sentinel monitor redkeep 127.0.0.1 {OLD + 1} ",
        )
        text = re.sub(r"(?m)^sentinel config-epoch redkeep \d+$", "", text)
        path.write_text(text + "sentinel config-epoch redkeep 1\n")

    init = run_redkeep("init", root, "--force", *args, "--tls-port", NEW)
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    assert nodes.local_state(bundle).primary == "redis-1"
    nodes.write_run_confs(bundle, names, version)
    assert f"replicaof 127.0.0.1 {NEW + 1}" in nodes.conf_path(bundle, "redis-0").read_text()
    assert "replicaof" not in nodes.conf_path(bundle, "redis-1").read_text()
    sentinel = nodes.conf_path(bundle, "sentinel-0").read_text()
    assert f"sentinel monitor redkeep 127.0.0.1 {NEW + 1} " in sentinel
