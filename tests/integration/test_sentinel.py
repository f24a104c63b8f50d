"""A sentinel deployment from `init --topology sentinel` and `up --detach`, failed over for real.

One test, step by step (each step needs the one before): an acknowledged write, a SIGKILLed
primary, a Sentinel promotion seen by `status --json` and by Redis itself, the app's password
on the new primary, `health` 1 while a node is lost and 0 once `up` has brought it back as a
replica of the new primary; the Sentinels' own rewrites of their files read back. Timeouts are
the deployment's (down-after 1000 ms), and every wait polls a real condition.
"""

import json
import os
import signal
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redkeep.actions.live import live_deployment
from redkeep.bundle import Bundle
from redkeep.config.deployment import SENTINEL_PORT_OFFSET
from redkeep.render import nodes as node_files
from redkeep.stack import processes
from redkeep.stack.processes import node_service
from tests.conftest import run_redkeep
from tests.deployments_audit import serious_findings
from tests.jsonshape import problems, shape
from tests.servers import free_port_span, wait_for_exit

FAST = {
    "REDKEEP_DEPLOYMENT__DOWN_AFTER_MILLISECONDS": "1000",
    "REDKEEP_DEPLOYMENT__FAILOVER_TIMEOUT_MILLISECONDS": "5000",
}
DEADLINE = 60  # seconds any one step may take on a loaded machine (a bound, not a measure)


def client(bundle: Bundle, port: int, user: str, **kwargs) -> redis.Redis:
    """A plain redis-py client (not redkeep's) for one node or Sentinel, with the bundle's
    CA and client certificate."""
    tls = bundle.tls
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        username=user,
        password=bundle.password(user),
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.client_cert()),
        ssl_keyfile=str(tls.client_key()),
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **kwargs,
    )


def status(root: Path) -> tuple[int, dict]:
    result = run_redkeep("status", root, "--json")
    return result.returncode, json.loads(result.stdout)


def poll(condition, what: str):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {DEADLINE}s: {what}")


def test_sentinel_fails_over_keeps_an_acknowledged_write_and_heals(tmp_path, redis_binary):
    base = free_port_span([0, 1, 2, SENTINEL_PORT_OFFSET, SENTINEL_PORT_OFFSET + 2])
    root = tmp_path / "ha"
    init = run_redkeep(
        "init", root, "--topology", "sentinel", "--replicas", "2", "--sentinels", "3",
        "--tls-port", base, env=FAST,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    ports = {node.name: node.port for node in node_files.planned(bundle.settings)}
    up = run_redkeep("up", root, "--detach")
    try:
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{base + 1}" in up.stdout  # the ports are said
        assert "/discover-cluster-nodes" in up.stdout  # and where the exporter lists them

        # Healthy as planned; the JSON has the documented shape.
        code, before = status(root)
        assert code == 0, before["problems"]
        assert problems(before, shape("status")) == []
        roles = {node["name"]: node["role"] for node in before["nodes"]}
        assert roles == {"redis-0": "primary", "redis-1": "replica", "redis-2": "replica"}
        assert [item["primary"] for item in before["sentinels"]] == ["redis-0"] * 3

        # An acknowledged write: a replica has it before the primary dies.
        primary = client(bundle, ports["redis-0"], "app")
        assert primary.set("order:1", "paid")
        assert primary.execute_command("WAIT", 1, 5000) >= 1
        primary.close()

        pid = int((bundle.run_dir / "redis-0.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        assert wait_for_exit(pid)
        lost = run_redkeep("health", "--dir", root)
        assert lost.returncode == 1
        assert "redis-0" in lost.stderr

        # A Sentinel promotes a replica: status says so, and so do Redis and the Sentinels.
        def promoted() -> dict | None:
            _, document = status(root)
            live = [node["name"] for node in document["nodes"] if node["role"] == "primary"]
            named = {item["primary"] for item in document["sentinels"]}
            return document if live and live != ["redis-0"] and named == set(live) else None

        after = poll(promoted, "a replica promoted and named by every Sentinel")
        assert problems(after, shape("status")) == []
        (new,) = [node["name"] for node in after["nodes"] if node["role"] == "primary"]
        assert new in ("redis-1", "redis-2")
        assert live_deployment(bundle, "app").primary().name == new  # what other commands use
        sentinel = client(bundle, ports["sentinel-1"], "app")  # the app user asks a Sentinel
        assert sentinel.sentinel_get_master_addr_by_name("redkeep") == ("127.0.0.1", ports[new])
        sentinel.close()
        promoted_node = client(bundle, ports[new], "app")
        assert promoted_node.get("order:1") == "paid"  # the acknowledged write survived
        admin = client(bundle, ports[new], "admin")
        assert admin.info("replication")["role"] == "master"
        admin.close()
        assert run_redkeep("health", "--dir", root).returncode == 1  # redis-0 is still lost

        # `up` brings redis-0 back as a replica of the new primary; then all is healthy.
        again = run_redkeep("up", root, "--detach")
        assert again.returncode == 0, again.stderr
        healed = run_redkeep("health", "--dir", root)
        assert healed.returncode == 0, healed.stderr
        # Our own deployment, after a failover, audits clean on every node and Sentinel but
        # for the server's own release.
        assert serious_findings(root) == dict.fromkeys(ports, [])
        code, final = status(root)
        assert code == 0
        old = next(node for node in final["nodes"] if node["name"] == "redis-0")
        assert (old["role"], old["primary"], old["link"]) == ("replica", new, "up")
        returned = client(bundle, ports["redis-0"], "admin")
        assert returned.info("replication")["master_port"] == ports[new]
        poll(lambda: returned.get("order:1") == "paid", "redis-0 synced from the new primary")
        returned.close()
        assert promoted_node.set("order:2", "shipped")  # a write on the new primary
        promoted_node.close()

        # What the Sentinels wrote into their own files names the new primary and their ids.
        texts = {
            name: (bundle.run_dir / f"{name}.conf").read_text()
            for name in ("sentinel-0", "sentinel-1", "sentinel-2")
        }
        state = node_files.sentinel_state(
            bundle.settings, texts, node_files.layout(bundle.settings, False)
        )
        assert state.primary == new and state.config_epoch >= 1
        for name in texts:
            ask = client(bundle, ports[name], "admin")
            assert state.ids[name] == ask.execute_command("SENTINEL", "MYID")
            ask.close()

        # Least privilege held: Sentinel and the replicas were never refused a command.
        for name, port in ports.items():
            admin = client(bundle, port, "admin")
            refused = [entry for entry in admin.acl_log() if entry["username"] != "default"]
            admin.close()
            assert refused == [], (name, refused)
    finally:
        down = run_redkeep("down", root)
    assert down.returncode == 0, down.stderr
    for name in ports:
        assert list(processes.find_processes(node_service(name), root)) == []
