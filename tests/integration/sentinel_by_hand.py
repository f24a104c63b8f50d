"""A sentinel deployment built by hand from a standalone bundle, for tests of commands that act
on every node (`users rotate`, `certs rotate`) independently of `init --topology` and `up`.

The layout is the bundle's plan (`config/deployment.py`): redis-0 primary on tls_port, its
replicas on tls_port + i, Sentinel j on tls_port + 100 + j. Each node runs in
`bundle.node_dir(name)` with its own redis.conf (or sentinel.conf), its own users.acl, its own
certificate (tls/nodes/NAME.crt); every link is TLS with client certificates. Data nodes have
the bundle's four users plus `replication` (masteruser/masterauth) and `sentinel`; Sentinels
have admin, app, exporter and `sentinel` (auth-user towards the data nodes, and sentinel-user
between Sentinels).
"""

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from redkeep.bundle import Bundle
from redkeep.config.deployment import SENTINEL_PORT_OFFSET, PlannedNode, plan_nodes
from redkeep.envfile import generate_password, update_env
from redkeep.pki.files import issue_node
from redkeep.render.acl import password_hash
from tests.conftest import run_redkeep
from tests.servers import RedisServer, free_port_block

MASTER_NAME = "redkeep"
REPLICATION_ACL = "resetkeys resetchannels -@all +psync +replconf +ping"
# What Sentinel runs on a data node (the Redis docs' list), and only its hello channel.
SENTINEL_ON_DATA_ACL = (
    "resetkeys resetchannels &__sentinel__:hello -@all +multi +exec +slaveof +ping +subscribe "
    "+publish +info +role +config|rewrite +client|setname +client|kill +script|kill"
)
SENTINEL_ACL = {
    "admin": "~* &* +@all",
    # Where the primary is, and its moves (the proxy follows them).
    "app": "resetchannels &+switch-master -@all +ping +subscribe +sentinel|get-master-addr-by-name",
    "exporter": "resetchannels -@all +ping +info +sentinel|masters +sentinel|replicas",
    "sentinel": "resetchannels &__sentinel__:hello -@all +ping +info +publish +subscribe "
    "+sentinel|is-master-down-by-addr",
}


@dataclass
class HandMadeDeployment:
    bundle: Bundle
    nodes: dict[str, RedisServer]  # by name: redis-0.., sentinel-0..
    plan: tuple[PlannedNode, ...]

    def port(self, name: str) -> int:
        return next(node.port for node in self.plan if node.name == name)

    @property
    def data_nodes(self) -> list[str]:
        return [node.name for node in self.plan if node.holds_data]

    @property
    def sentinels(self) -> list[str]:
        return [node.name for node in self.plan if not node.holds_data]

    def client(self, name: str, user: str = "admin", password: str | None = None, **kwargs):
        """A plain redis-py client on one node (independent of redkeep's connect code)."""
        tls = self.bundle.tls
        return redis.Redis(
            host="127.0.0.1",
            port=self.port(name),
            username=user,
            password=password if password is not None else self.bundle.password(user),
            ssl=True,
            ssl_ca_certs=str(tls.ca_cert),
            ssl_certfile=str(tls.client_cert()),
            ssl_keyfile=str(tls.client_key()),
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            **kwargs,
        )

    def stop(self) -> None:
        for server in self.nodes.values():
            server.stop()


def build(
    root: Path,
    binary: str,
    replicas: int = 2,
    sentinels: int = 1,
    down_after_ms: int = 30000,
) -> HandMadeDeployment:
    """`redkeep init` a standalone bundle at `root`, make it a sentinel bundle, start it.

    The Sentinels' quorum is a majority of them; `down_after_ms` low for tests that fail over.
    """
    offsets = (*range(replicas + 1), *(SENTINEL_PORT_OFFSET + j for j in range(sentinels)))
    init = run_redkeep("init", root, "--tls-port", free_port_block(offsets))
    assert init.returncode == 0, init.stderr
    config = yaml.safe_load((root / "redkeep.yaml").read_text())
    config["deployment"] = {
        "topology": "sentinel",
        "replicas": replicas,
        "sentinels": sentinels,
        "master_name": MASTER_NAME,
        "min_replicas_to_write": 0,
    }
    (root / "redkeep.yaml").write_text(yaml.safe_dump(config))
    bundle = Bundle(root)
    secrets = {
        "REDIS_REPLICATION_PASSWORD": generate_password(),
        "REDIS_SENTINEL_PASSWORD": generate_password(),
    }
    update_env(bundle.env_path, secrets)
    settings = bundle.settings
    plan = plan_nodes(settings.deployment, settings.redis.tls_port)
    now = dt.datetime.now(dt.UTC)
    for node in plan:
        issue_node(bundle.tls, node.name, settings.tls.server_names, settings.tls.key_type, 30, now)
    data_acl = _data_acl(bundle, secrets)
    deployment = HandMadeDeployment(bundle, {}, plan)
    try:
        for node in plan:
            server = _start(bundle, node, binary, plan[0].port, data_acl, secrets, down_after_ms)
            deployment.nodes[node.name] = server
        _wait_until_settled(deployment)
    except BaseException:
        deployment.stop()
        raise
    return deployment


def _data_acl(bundle: Bundle, secrets: dict[str, str]) -> str:
    """The bundle's users.acl plus the replication and sentinel users."""
    replication = password_hash(secrets["REDIS_REPLICATION_PASSWORD"])
    sentinel = password_hash(secrets["REDIS_SENTINEL_PASSWORD"])
    return (
        bundle.acl_path.read_text()
        + f"user replication on #{replication} {REPLICATION_ACL}\n"
        + f"user sentinel on #{sentinel} {SENTINEL_ON_DATA_ACL}\n"
    )


def _sentinel_acl(bundle: Bundle, secrets: dict[str, str]) -> str:
    passwords = bundle.known_passwords() | {"sentinel": secrets["REDIS_SENTINEL_PASSWORD"]}
    lines = ["user default off resetpass ~* &* +@all"]
    lines += [
        f"user {user} on #{password_hash(passwords[user])} {rules}"
        for user, rules in SENTINEL_ACL.items()
    ]
    return "\n".join(lines) + "\n"


def _start(
    bundle: Bundle,
    node: PlannedNode,
    binary: str,
    primary_port: int,
    data_acl: str,
    secrets: dict[str, str],
    down_after_ms: int,
) -> RedisServer:
    workdir = bundle.node_dir(node.name)
    workdir.mkdir(parents=True, exist_ok=True)
    acl = workdir / "users.acl"
    acl.write_text(data_acl if node.holds_data else _sentinel_acl(bundle, secrets))
    acl.chmod(0o600)
    tls = bundle.tls
    lines = [
        f"tls-cert-file {tls.node_cert(node.name)}",
        f"tls-key-file {tls.node_key(node.name)}",
        f"tls-ca-cert-file {tls.ca_cert}",
        "tls-auth-clients yes",
        "tls-replication yes",
        f"aclfile {acl}",
    ]
    if node.holds_data:
        lines += [
            "masteruser replication",
            f"masterauth {secrets['REDIS_REPLICATION_PASSWORD']}",
            "repl-diskless-sync-delay 0",
        ]
        if node.role == "replica":
            lines.append(f"replicaof 127.0.0.1 {primary_port}")
        server = RedisServer(binary, workdir, lines, port=0, tls_port=node.port)
    else:
        password = secrets["REDIS_SENTINEL_PASSWORD"]
        quorum = bundle.settings.deployment.sentinels // 2 + 1
        lines += [
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {max(10 * down_after_ms, 10000)}",
            f"sentinel auth-user {MASTER_NAME} sentinel",
            f"sentinel auth-pass {MASTER_NAME} {password}",
            "sentinel sentinel-user sentinel",
            f"sentinel sentinel-pass {password}",
        ]
        server = RedisServer(
            binary,
            workdir,
            lines,
            port=0,
            tls_port=node.port,
            args=("--sentinel",),
            conf_name="sentinel.conf",
            ready="+monitor master",
        )
    return server.start()


def _wait_until_settled(deployment: HandMadeDeployment, timeout: float = 20.0) -> None:
    """Until every replica is in sync and every Sentinel sees the primary and its replicas."""
    for name in deployment.data_nodes[1:]:
        with deployment.client(name) as client:
            wait_for(lambda c=client: c.info("replication")["master_link_status"] == "up", name)
    for name in deployment.sentinels:
        with deployment.client(name) as client:
            wait_for(lambda c=client: sentinel_sees_master(c), name, timeout)


def sentinel_sees_master(client: redis.Redis) -> bool:
    """The Sentinel has a working link to the primary (logged in: it would be 'disconnected'
    otherwise) and knows every replica."""
    fields = client.sentinel_master(MASTER_NAME)
    return fields["flags"] == "master" and fields["num-slaves"] >= 1


def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not so after {timeout}s"
        time.sleep(0.05)
