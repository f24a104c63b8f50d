"""redis.conf, for the container (docker-compose.yml) or for a local redis-server (`redkeep up`).

One template, two path sets: the bundle's `redis/redis.conf` uses the container's mount
points; `run/redis.conf` is the same configuration with this machine's paths. A node of a
sentinel or cluster deployment gets the same file plus its replication and cluster settings
(`NodeConf`): `redis/nodes/NAME/redis.conf` in the bundle, `run/NAME.conf` for `up`.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from redkeep import __version__
from redkeep.bundle import Bundle
from redkeep.config.schema import Settings
from redkeep.render import templates

CONTAINER_BIND = ["*", "-::*"]  # inside its network namespace; the host side is compose's ports


@dataclass(frozen=True)
class ConfPaths:
    tls: str
    redis: str
    data: str
    log: str = ""
    pidfile: str = ""


CONTAINER_PATHS = ConfPaths(tls="/tls", redis="/usr/local/etc/redis", data="/data")


@dataclass(frozen=True)
class NodeConf:
    """What a node of a sentinel or cluster deployment adds to redis.conf."""

    name: str  # redis-0 ..
    topology: str  # "sentinel" or "cluster"
    port: int  # its TLS port
    announce: str  # the address others reach it at: its name (containers) or 127.0.0.1
    masterauth: str  # the `replication` user's password
    min_replicas: int
    min_replicas_max_lag: int
    replicaof: tuple[str, int] | None = None  # sentinel: the primary it starts replicating
    replicaof_name: str = ""  # that primary's node name, for the comment
    replicaof_why: str = ""  # why that one: the initial layout, or the Sentinels' last word
    bus_port: int = 0  # cluster
    node_timeout: int = 0  # cluster-node-timeout, ms
    announce_hostname: bool = False  # cluster: announce `announce` as a hostname (containers)


def local_paths(root: Path, node: str = "") -> ConfPaths:
    """Paths for a redis-server run by `redkeep up` from the bundle at `root`: the standalone
    server's, or those of the deployment's node `node` (its own directories and run files)."""
    bundle = Bundle(root.resolve())
    run = node or "redis"
    return ConfPaths(
        tls=str(bundle.tls.directory),
        redis=str(bundle.node_dir(node) if node else bundle.redis_dir),
        data=str(bundle.node_data_dir(node) if node else bundle.data_dir),
        log=str(bundle.run_dir / f"{run}.log"),
        pidfile=str(bundle.run_dir / f"{run}.pid"),
    )


def image_version(image: str) -> tuple[int, int]:
    """Best guess of the Redis version in an image tag ('redis:7' is the 7.4 line)."""
    tag = image.rpartition(":")[2] if ":" in image else "latest"
    if tag == "latest":
        return (8, 0)
    numbers = [int(n) for n in re.findall(r"\d+", tag)[:2]]
    if not numbers:
        return (0, 0)
    if len(numbers) == 1:
        return (numbers[0], 4) if numbers[0] == 7 else (numbers[0], 0)
    return (numbers[0], numbers[1])


def render_redis_conf(
    settings: Settings,
    paths: ConfPaths,
    server_version: tuple[int, int],
    bind: list[str],
    target: str,
    node: NodeConf | None = None,
) -> str:
    """Return redis.conf text for `settings` with `paths`, gated on the server's version; for
    `node` of a sentinel or cluster deployment when given."""
    features = {
        "hide_user_data_from_log": server_version >= (7, 4),
        "maxmemory_clients": server_version >= (7, 0),
    }
    return (
        templates()
        .get_template("redis.conf.j2")
        .render(
            name=settings.name,
            version=__version__,
            target=target,
            redis=settings.redis,
            tls_port=node.port if node else settings.redis.tls_port,
            node=node,
            clients_memory=clients_memory(settings),
            tls=settings.tls,
            bind=bind,
            paths=paths,
            features=features,
        )
    )


def clients_memory(settings: Settings) -> str:
    """maxmemory-clients as redis.conf gets it: auto in bytes, anything else as written."""
    redis = settings.redis
    if redis.maxmemory_clients == "auto":
        return str(redis.clients_memory_bytes())
    return redis.maxmemory_clients
