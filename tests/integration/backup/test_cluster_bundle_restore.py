"""`backup restore --to-url` in a cluster bundle (`init --topology cluster`, `up`): the URL may
name any node of the bundle, and the bundle's CA and client certificate apply to it without
--tls-ca (an attack review found only the first node worked without it)."""

import json

from redis.cluster import RedisCluster

from redkeep.bundle import Bundle
from redkeep.config.deployment import BUS_PORT_OFFSET
from tests.conftest import run_redkeep
from tests.servers import free_port_span

SHARDS = 3
KEYS = 60


def test_restore_to_any_node_of_a_cluster_bundle_uses_its_tls(tmp_path, redis_binary):
    base = free_port_span([*range(SHARDS), *(BUS_PORT_OFFSET + i for i in range(SHARDS))])
    root = tmp_path / "cluster"
    init = run_redkeep(
        "init", root, "--topology", "cluster", "--shards", SHARDS, "--replicas", 0,
        "--tls-port", base,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    up = run_redkeep("up", root, "--detach")
    try:
        assert up.returncode == 0, up.stderr
        tls = bundle.tls
        client = RedisCluster(
            host="127.0.0.1", port=base, username="admin", password=bundle.password("admin"),
            ssl=True, ssl_ca_certs=str(tls.ca_cert), ssl_certfile=str(tls.client_cert()),
            ssl_keyfile=str(tls.client_key()),
        )  # fmt: skip
        for i in range(KEYS):
            client.set(f"key:{i}", i)
        backup = run_redkeep("backup", "run", "--dir", root, "--json")
        assert backup.returncode == 0, backup.stderr
        backup_id = json.loads(backup.stdout)["id"]
        for i in range(KEYS):
            client.set(f"key:{i}", "changed")

        last = base + SHARDS - 1  # not the bundle's first node
        restored = run_redkeep(
            "backup", "restore", backup_id, "--dir", root, "--replace", "--json",
            "--to-url", f"rediss://admin@localhost:{last}",
        )  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout)["to"].endswith(f":{last}")
        assert [client.get(f"key:{i}") for i in range(KEYS)] == [b"%d" % i for i in range(KEYS)]
        client.close()
    finally:
        run_redkeep("down", root)
