"""A Redis Cluster from `init --topology cluster` and `up`: formed as planned, TLS on every
link, a killed primary replaced by its replica and brought back by `up` as a replica, stopped
completely by `down`, and back with its data after another `up`.

One test, step by step: the cluster is what one `up` makes, and `down` then `up` again is
part of what is tested. Judged by what the nodes answer to a plain redis-py client, by the
processes and ports the system shows, not by redkeep's own output alone.
"""

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from redkeep.bundle import Bundle
from redkeep.config.deployment import BUS_PORT_OFFSET
from redkeep.pki.inspect import load_certificate
from redkeep.render import nodes as node_files
from redkeep.stack import processes
from redkeep.stack.processes import EXPORTER, node_service
from tests.conftest import run_redkeep
from tests.deployments_audit import serious_findings
from tests.jsonshape import problems, shape
from tests.servers import free_port_span

KEYS = 200
DEADLINE = 60  # seconds a step may take on a loaded machine (a bound, not a measure)


def poll(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE}s: {what}"
        time.sleep(0.2)


def node_client(bundle: Bundle, port: int, user: str = "admin", cert: bool = True) -> redis.Redis:
    tls = bundle.tls
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        username=user,
        password=bundle.password(user),
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.client_cert()) if cert else None,
        ssl_keyfile=str(tls.client_key()) if cert else None,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def cluster_client(bundle: Bundle) -> RedisCluster:
    """How an application reaches the cluster: any node, as the app user, over TLS."""
    tls = bundle.tls
    return RedisCluster(
        host="127.0.0.1",
        port=bundle.settings.redis.tls_port,
        username="app",
        password=bundle.password("app"),
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.client_cert()),
        ssl_keyfile=str(tls.client_key()),
        decode_responses=True,
    )


def acl_state(bundle: Bundle, port: int) -> tuple[str, ...]:
    """The app user as one node holds it (its ACL LIST line: flags, password hashes, rules),
    order-free: Redis 7.0 lists the same rules in a different order on each process."""
    client = node_client(bundle, port)
    try:
        line = next(line for line in client.acl_list() if line.startswith("user app "))
    finally:
        client.close()
    return tuple(sorted(line.split()))


def run_redkeep_background(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "redkeep", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
        return response.read().decode()


def node_serial(bundle: Bundle, name: str) -> int:
    return load_certificate(bundle.tls.node_cert(name)).serial_number


def plaintext_reply(port: int) -> bytes:
    """What a port answers to a plaintext PING (a TLS listener answers no RESP)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        try:
            return raw.recv(64)
        except (ConnectionResetError, TimeoutError):
            return b""


def test_cluster_forms_as_planned_is_tls_only_and_comes_back_with_its_data(tmp_path, redis_binary):
    # 3 shards of a primary and a replica: nodes at base + 0..5, bus ports at + 10000.
    offsets = [*range(6), *(BUS_PORT_OFFSET + i for i in range(6))]
    base = free_port_span(offsets)
    root = tmp_path / "cluster"
    env = {
        "REDKEEP_DEPLOYMENT__CLUSTER_NODE_TIMEOUT_MILLISECONDS": "2000",
        "REDKEEP_EXPORTER__CHECKS": json.dumps(
            [
                {
                    "name": "sessions",
                    "type": "key_count",
                    "pattern": "session:*",
                    "interval_seconds": 0.5,
                }
            ]
        ),  # fmt: skip
    }
    init = run_redkeep("init", root, "--topology", "cluster", "--tls-port", base, env=env)
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    plan = [node for node in node_files.planned(bundle.settings) if node.holds_data]
    up = run_redkeep("up", root, "--detach")
    try:
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{base} (bus {base + BUS_PORT_OFFSET})" in up.stdout

        # cluster_state ok and every slot served, as each node itself says.
        ids = {}
        for node in plan:
            admin = node_client(bundle, node.port)
            info = admin.cluster("info")
            assert (info["cluster_state"], info["cluster_slots_ok"]) == ("ok", "16384")
            ids[node.name] = admin.cluster("myid")
            admin.close()
        # Every node in its planned role: shard k's primary serves its slots, its replica
        # replicates it.
        admin = node_client(bundle, base)
        table = {item["node_id"]: item for item in admin.cluster("nodes").values()}
        admin.close()
        for node in plan:
            entry = table[ids[node.name]]
            if node.role == "primary":
                assert "master" in entry["flags"] and entry["slots"], node.name
            else:
                assert "slave" in entry["flags"], node.name
                assert entry["master_id"] == ids[node.replica_of], node.name

        code = run_redkeep("health", "--dir", root)
        assert code.returncode == 0, code.stderr
        result = run_redkeep("status", root, "--json")
        document = json.loads(result.stdout)
        assert result.returncode == 0 and problems(document, shape("status")) == []
        assert sum(len(node["slots"]) for node in document["nodes"]) == 3
        assert document["services"]["exporter"]["up"]

        # One exporter for the cluster: /discover-cluster-nodes lists every node, each answers.
        exporter = f"http://{bundle.settings.exporter.listen}"
        (group,) = json.loads(http_get(f"{exporter}/discover-cluster-nodes"))
        assert sorted(group["targets"]) == sorted(
            f"rediss://localhost:{node.port}" for node in plan
        )
        for target in group["targets"]:
            scrape = http_get(f"{exporter}/scrape?target={target}").splitlines()
            assert "redis_up 1" in scrape and "redis_cluster_state 1" in scrape, target
        exporter_pid = processes.locate(EXPORTER, root, bundle.run_dir).pid

        # `certs rotate` renews every node's certificate and, a cluster having no proxy,
        # reports none and leaves the proxy's (tls/server.crt) as it was.
        proxy_pair = [bundle.tls.server_cert.read_bytes(), bundle.tls.server_key.read_bytes()]
        serials = {node.name: node_serial(bundle, node.name) for node in plan}
        rotated = run_redkeep("certs", "rotate", "--dir", root)
        assert rotated.returncode == 0, rotated.stderr
        assert "proxy" not in rotated.stdout + rotated.stderr, rotated.stdout + rotated.stderr
        assert [bundle.tls.server_cert.read_bytes(), bundle.tls.server_key.read_bytes()] == (
            proxy_pair
        )
        assert all(node_serial(bundle, node.name) != serials[node.name] for node in plan)

        # Our own cluster audits clean on every node, but for the server's own release.
        serious = serious_findings(root)
        assert sorted(serious) == sorted(node.name for node in plan)
        assert serious == {node.name: [] for node in plan}

        # Every port, client and bus, speaks TLS only; without a client certificate, no entry.
        for node in plan:
            for port in (node.port, node.bus_port):
                reply = plaintext_reply(port)
                assert not reply.startswith((b"+", b"-", b"$", b"*", b":")), (port, reply)
        no_cert = node_client(bundle, base, "app", cert=False)
        with pytest.raises((redis.ConnectionError, ssl.SSLError)):
            no_cert.ping()
        no_cert.close()

        app = cluster_client(bundle)
        for index in range(KEYS):
            app.set(f"session:{index}", index)
        app.close()
        # The app check counts the keys of every shard (SCAN on each primary), once, at the
        # exporter's /metrics: the deployment's own, beside the nodes' /scrape.
        poll(
            lambda: (
                f'redkeep_check_keys{{check="sessions"}} {KEYS}'
                in http_get(f"{exporter}/metrics").splitlines()
            ),
            f"the exporter to count {KEYS} session keys across the shards",
        )

        # A primary dies: its replica takes the shard; `up` brings the node back as a replica.
        os.kill(int((bundle.run_dir / "redis-1.pid").read_text()), signal.SIGKILL)
        replica = node_client(bundle, base + 4)  # redis-4 replicates redis-1
        poll(lambda: replica.info("replication")["role"] == "master", "redis-4 promoted")
        replica.close()
        back = run_redkeep("up", root, "--detach")
        assert back.returncode == 0, back.stderr
        returned = node_client(bundle, base + 1)
        assert returned.info("replication")["master_port"] == base + 4
        returned.close()

        # Rotation on every node, and a primary killed while the old password is removed:
        # every surviving node ends with the same ACL state (and the killed one, restarted from
        # its own ACL file by `up`, too).
        assert run_redkeep("users", "rotate", "app", "--dir", root).returncode == 0
        # redis-4 (shard 1's primary since the failover above) dies once redis-0 has lost the
        # old password: the others are then being proven with fresh logins, redis-4 among the
        # last, so the kill lands part-way (and the run rolls back), or after the run.
        victim = int((bundle.run_dir / "redis-4.pid").read_text())
        finish = run_redkeep_background("users", "finish-rotation", "app", "--dir", root)
        first = node_client(bundle, base)
        deadline = time.monotonic() + DEADLINE
        while finish.poll() is None and len(first.acl_getuser("app")["passwords"]) != 1:
            assert time.monotonic() < deadline, "finish-rotation never started on redis-0"
        first.close()
        os.kill(victim, signal.SIGKILL)
        finish.wait(60)
        said = finish.stderr.read()
        if finish.returncode != 0:  # the kill landed part-way: it says what it rolled back
            assert "redis-4" in said and "rolled back redis-0" in said, said
        survivors = [node for node in plan if node.name != "redis-4"]
        states = {node.name: acl_state(bundle, node.port) for node in survivors}
        assert len(set(states.values())) == 1, states
        restarted = run_redkeep("up", root, "--detach")
        assert restarted.returncode == 0, restarted.stderr
        if finish.returncode != 0:  # finish again now that redis-4 is back
            done = run_redkeep("users", "finish-rotation", "app", "--dir", root)
            assert done.returncode == 0, done.stderr
        final = {node.name: acl_state(bundle, node.port) for node in plan}
        assert len(set(final.values())) == 1, final
        app = cluster_client(bundle)  # the password .env holds works through the cluster
        assert app.get("session:7") == "7"
        app.close()
    finally:
        down = run_redkeep("down", root)
    assert down.returncode == 0, down.stderr
    assert list(processes.find_processes(EXPORTER, root)) == []
    assert exporter_pid is not None and not processes.is_ours(exporter_pid, EXPORTER, root)
    for node in plan:  # nothing runs, and nothing listens on its ports
        assert list(processes.find_processes(node_service(node.name), root)) == []
        for port in (node.port, node.bus_port):
            with socket.socket() as probe:
                # As a server binds: closed connections may linger in TIME_WAIT, no listener.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", port))

    again = run_redkeep("up", root, "--detach")
    try:
        assert again.returncode == 0, again.stderr
        app = cluster_client(bundle)
        assert [app.get(f"session:{index}") for index in range(KEYS)] == [
            str(index) for index in range(KEYS)
        ]
        app.close()
    finally:
        assert run_redkeep("down", root).returncode == 0
