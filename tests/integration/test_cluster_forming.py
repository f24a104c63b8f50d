"""A cluster whose `up` was cut short (SIGKILL) while forming: the next `up` finishes it, and
until then `health` does not call it healthy.

The nodes are started from the bundle's own run/ files, then left where a killed `up` leaves
them: configuration epochs set on some nodes only, or a planned replica that met the others
but replicates nothing. Judged by what the nodes answer.
"""

import subprocess

import redis

from redkeep.bundle import Bundle
from redkeep.config.deployment import BUS_PORT_OFFSET
from redkeep.render import nodes as node_files
from redkeep.stack import nodes, redis_server
from tests.conftest import run_redkeep
from tests.integration.test_cluster import node_client, poll
from tests.servers import free_port_span


def roles(bundle: Bundle, plan) -> dict[str, str]:
    found = {}
    for node in plan:
        client = node_client(bundle, node.port)
        found[node.name] = client.info("replication")["role"]
        client.close()
    return found


def test_up_finishes_a_cluster_an_interrupted_up_left_half_formed(tmp_path, redis_binary):
    base = free_port_span([*range(6), *(BUS_PORT_OFFSET + i for i in range(6))])
    root = tmp_path / "cluster"
    init = run_redkeep("init", root, "--topology", "cluster", "--tls-port", base)
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    plan = [node for node in node_files.planned(bundle.settings) if node.holds_data]
    binary = redis_server.find_redis_server()
    nodes.write_run_confs(
        bundle, {node.name for node in plan}, redis_server.server_version(binary)[:2]
    )
    started: list[subprocess.Popen] = []
    try:
        for node in plan:
            started.append(nodes.start(bundle, binary, nodes.node_service(node.name)))
        for node in plan:
            client = node_client(bundle, node.port)
            poll(lambda client=client: _answers(client), f"{node.name} answers")
            client.close()
        # Killed between SET-CONFIG-EPOCH and ADDSLOTSRANGE: one node has its epoch already.
        first = node_client(bundle, base)
        first.cluster("set-config-epoch", 1)
        first.close()
        up = run_redkeep("up", root, "--detach")
        assert up.returncode == 0, up.stderr
        assert set(roles(bundle, plan).values()) == {"master", "slave"}
        assert list(roles(bundle, plan).values()).count("slave") == 3

        # Killed after CLUSTER MEET, before CLUSTER REPLICATE: redis-3 a primary without slots
        # that every node knows. Every slot is served, cluster_state is ok: still not healthy.
        replica = node_client(bundle, base + 3)
        replica.cluster("reset")  # a replica becomes a primary and forgets the others
        replica.cluster("meet", "127.0.0.1", base, base + BUS_PORT_OFFSET)
        poll(
            lambda: (
                replica.cluster("info")["cluster_known_nodes"] == "6"
                and replica.cluster("info")["cluster_state"] == "ok"
            ),
            "redis-3 to meet the cluster again",
        )
        replica.close()
        health = run_redkeep("health", "--dir", root)
        assert health.returncode == 1
        assert "redis-3 is a primary without slots" in health.stdout + health.stderr
        again = run_redkeep("up", root, "--detach")
        assert again.returncode == 0, again.stderr
        assert roles(bundle, plan)["redis-3"] == "slave"
        assert run_redkeep("health", "--dir", root).returncode == 0
    finally:
        down = run_redkeep("down", root)
        for process in started:
            process.wait(10)
    assert down.returncode == 0, down.stderr


def _answers(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:  # not listening yet
        return False
