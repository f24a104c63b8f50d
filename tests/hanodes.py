"""Small real HA deployments for tests: a 3-primary Cluster and a Sentinel group, TLS only.

Written from config text here (not from `redkeep init`), so the audit's tests do not depend on
the bundle's rendering: every data node has the same ACL users (admin, replication, sentinel,
app; `user default off`), `port 0`, TLS with client certificates on every link
(`tls-replication yes`, `tls-cluster yes`) and the HA safety settings. The certificates name
only `localhost`, never 127.0.0.1, which is what Redis announces: a client that checks a
discovered node's certificate against the announced IP fails, one that uses the seed's name
passes.

`start_cluster` forms the cluster by hand (slots, MEET, REPLICATE) and returns once
`cluster_state:ok` on every node and the replica is in sync; `start_sentinel_group` returns once
every Sentinel knows the others and the replica. Both are torn down with `stop()`.
"""

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from redkeep.pki.files import TLSFiles, init_tls
from redkeep.redis.client import client_for
from redkeep.redis.target import Target
from tests.servers import RedisServer, free_port

PASSWORDS = {
    "admin": "admin-ha-0123456789abcdef",
    "replication": "replication-ha-0123456789abcdef",
    "sentinel": "sentinel-ha-0123456789abcdef",
    "sentinel-peer": "sentinel-peer-ha-0123456789abcdef",
    "app": "app-ha-0123456789abcdef",
}
DATA_USERS = [
    "user default off resetpass ~* &* +@all",
    f"user admin on >{PASSWORDS['admin']} ~* &* +@all",
    f"user replication on >{PASSWORDS['replication']} +psync +replconf +ping",
    f"user sentinel on >{PASSWORDS['sentinel']} &__sentinel__:hello +multi +slaveof +ping +exec "
    "+subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill",
    f"user app on >{PASSWORDS['app']} ~app:* resetchannels +@read +@write +@connection -@dangerous",
]
SENTINEL_USERS = [
    "user default off",
    f"user admin on >{PASSWORDS['admin']} ~* &* +@all",
    # What one Sentinel runs on another: PING, hello messages, the vote.
    f"user sentinel-peer on >{PASSWORDS['sentinel-peer']} &__sentinel__:hello +ping +publish "
    "+client|setname +sentinel|is-master-down-by-addr",
]
MASTER_NAME = "ha"


def make_pki(directory: Path) -> TLSFiles:
    """A CA and certificates naming only `localhost` (see the module docstring)."""
    files = TLSFiles(directory)
    init_tls(files, "ha", ["localhost"], "ecdsa-p256", 365, 365, dt.datetime.now(dt.UTC))
    return files


def tls_config(pki: TLSFiles) -> list[str]:
    return [
        f"tls-cert-file {pki.server_cert}",
        f"tls-key-file {pki.server_key}",
        f"tls-ca-cert-file {pki.ca_cert}",
        "tls-auth-clients yes",
        "tls-replication yes",
    ]


def data_config(pki: TLSFiles) -> list[str]:
    return [
        *DATA_USERS,
        *tls_config(pki),
        "masteruser replication",
        f"masterauth {PASSWORDS['replication']}",
        "min-replicas-to-write 1",
        "min-replicas-max-lag 10",
        "repl-diskless-sync-delay 0",
    ]


@dataclass
class HADeployment:
    """The processes of one deployment, by name (redis-0.., sentinel-0..)."""

    pki: TLSFiles
    nodes: dict[str, RedisServer] = field(default_factory=dict)
    sentinels: dict[str, RedisServer] = field(default_factory=dict)
    bus_ports: dict[str, int] = field(default_factory=dict)  # cluster: each node's bus

    def server(self, name: str) -> RedisServer:
        return {**self.nodes, **self.sentinels}[name]

    def target(self, name: str, user: str = "admin") -> Target:
        return Target(
            "rediss",
            host="localhost",
            port=self.server(name).tls_port,
            username=user,
            password=PASSWORDS[user],
            tls_ca=self.pki.ca_cert,
            tls_cert=self.pki.client_cert(),
            tls_key=self.pki.client_key(),
        )

    def url(self, name: str) -> str:
        """The node's URL as admin, without the password (it comes from REDIS_PASSWORD)."""
        return f"rediss://admin@localhost:{self.server(name).tls_port}"

    def tls_options(self) -> list[str]:
        return [
            "--tls-ca",
            str(self.pki.ca_cert),
            "--tls-cert",
            str(self.pki.client_cert()),
            "--tls-key",
            str(self.pki.client_key()),
        ]

    def client(self, name: str) -> redis.Redis:
        return client_for(self.target(name))

    def stop(self) -> None:
        for server in [*self.sentinels.values(), *self.nodes.values()]:
            server.stop()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll a real condition; fail with `what` if it never holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass  # not up yet
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_settled(deployment: HADeployment) -> None:
    """Wait until the deployment is as it started: every cluster node sees every other at its
    own port, none failing, `cluster_state:ok`; every Sentinel sees the primary up, the
    replica and the other Sentinels. For tests that changed something and put it back."""
    expected = {f"127.0.0.1:{server.tls_port}" for server in deployment.nodes.values()}
    if deployment.bus_ports:
        for name in deployment.nodes:
            client = deployment.client(name)

            def whole(client=client) -> bool:
                nodes = client.execute_command("CLUSTER NODES")
                others = {
                    address for address, node in nodes.items() if "myself" not in node["flags"]
                }
                return (
                    others <= expected
                    and len(others) == len(expected) - 1
                    and not any("fail" in node["flags"] for node in nodes.values())
                    and client.execute_command("CLUSTER INFO")["cluster_state"] == "ok"
                )

            wait_until(whole, f"{name} to see the whole cluster again")
            client.close()
    if deployment.sentinels:
        _wait_for_sentinels(deployment)


def _start(binary: str, workdir: Path, config: list[str], **options) -> RedisServer:
    return RedisServer(binary, workdir, config, port=0, tls_port=free_port(), **options).start()


def start_cluster(binary: str, base: Path, pki: TLSFiles, shards: int = 3) -> HADeployment:
    """`shards` primaries (redis-0..) and one replica of redis-0 (redis-<shards>)."""
    deployment = HADeployment(pki)
    try:
        for i in range(shards + 1):
            bus_port = deployment.bus_ports[f"redis-{i}"] = free_port()
            config = [
                *data_config(pki),
                "cluster-enabled yes",
                f"cluster-config-file {base / f'redis-{i}' / 'nodes.conf'}",
                "cluster-node-timeout 2000",
                "cluster-require-full-coverage yes",
                f"cluster-port {bus_port}",
                "tls-cluster yes",
            ]
            deployment.nodes[f"redis-{i}"] = _start(binary, base / f"redis-{i}", config)
        _form_cluster(deployment, shards)
    except BaseException:
        deployment.stop()
        raise
    return deployment


def _form_cluster(deployment: HADeployment, shards: int) -> None:
    names = list(deployment.nodes)
    clients = {name: deployment.client(name) for name in names}
    per_shard = 16384 // shards
    for k in range(shards):
        last = 16383 if k == shards - 1 else (k + 1) * per_shard - 1
        clients[names[k]].execute_command("CLUSTER ADDSLOTSRANGE", k * per_shard, last)
        clients[names[k]].execute_command("CLUSTER SET-CONFIG-EPOCH", k + 1)
    first = clients[names[0]]
    for name in names[1:]:
        server = deployment.nodes[name]
        bus_port = deployment.bus_ports[name]
        first.execute_command("CLUSTER MEET", "127.0.0.1", server.tls_port, bus_port)
    wait_until(
        lambda: all(
            client.execute_command("CLUSTER INFO")["cluster_known_nodes"] == str(len(names))
            for client in clients.values()
        ),
        "every cluster node to know the others",
    )
    primary_id = clients[names[0]].execute_command("CLUSTER MYID")
    replica = clients[names[shards]]
    replica.execute_command("CLUSTER REPLICATE", primary_id)
    wait_until(
        lambda: (
            all(
                client.execute_command("CLUSTER INFO")["cluster_state"] == "ok"
                for client in clients.values()
            )
            and replica.info("replication")["master_link_status"] == "up"
        ),
        "cluster_state:ok on every node and the replica in sync",
    )
    for client in clients.values():
        client.close()


def start_sentinel_group(
    binary: str, base: Path, pki: TLSFiles, sentinels: int = 3
) -> HADeployment:
    """redis-0 (primary), redis-1 (its replica) and `sentinels` Sentinels with quorum 2."""
    deployment = HADeployment(pki)
    try:
        primary = _start(binary, base / "redis-0", data_config(pki))
        deployment.nodes["redis-0"] = primary
        replica_config = [*data_config(pki), f"replicaof 127.0.0.1 {primary.tls_port}"]
        deployment.nodes["redis-1"] = _start(binary, base / "redis-1", replica_config)
        for j in range(sentinels):
            config = [
                *SENTINEL_USERS,
                *tls_config(pki),
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary.tls_port} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                f"sentinel failover-timeout {MASTER_NAME} 10000",
                f"sentinel auth-user {MASTER_NAME} sentinel",
                f"sentinel auth-pass {MASTER_NAME} {PASSWORDS['sentinel']}",
                "sentinel sentinel-user sentinel-peer",
                f"sentinel sentinel-pass {PASSWORDS['sentinel-peer']}",
            ]
            deployment.sentinels[f"sentinel-{j}"] = _start(
                binary, base / f"sentinel-{j}", config, args=("--sentinel",), ready="+monitor"
            )
        _wait_for_sentinels(deployment)
    except BaseException:
        deployment.stop()
        raise
    return deployment


def _wait_for_sentinels(deployment: HADeployment) -> None:
    primary = deployment.client("redis-0")
    wait_until(
        lambda: (
            primary.info("replication")["connected_slaves"] == 1
            and primary.info("replication")["slave0"]["state"] == "online"
        ),
        "the replica to sync",
    )
    others = len(deployment.sentinels) - 1
    for name in deployment.sentinels:
        client = deployment.client(name)

        def settled(client=client) -> bool:
            master = client.execute_command("SENTINEL MASTER", MASTER_NAME)
            return (
                int(master["num-other-sentinels"]) == others
                and int(master["num-slaves"]) == 1
                and master["flags"] == "master"
            )

        wait_until(settled, f"{name} to see the replica and {others} other Sentinels")
        client.close()
    primary.close()
