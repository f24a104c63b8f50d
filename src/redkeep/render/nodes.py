"""The per-node files of a sentinel or cluster deployment: each data node's redis.conf and
users.acl, each Sentinel's sentinel.conf. For the containers of docker-compose.yml (the
bundle's `redis/nodes/NAME/`) and for this machine (`redkeep up`'s `run/NAME.conf`) alike:
only the addresses and paths differ.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from redkeep.config.deployment import PlannedNode, plan_nodes
from redkeep.config.schema import Settings
from redkeep.render.redis_conf import ConfPaths, NodeConf, render_redis_conf
from redkeep.render.sentinel_conf import (
    Address,
    SentinelLayout,
    SentinelState,
    read_state,
    render_sentinel_conf,
)

LOOPBACK = "127.0.0.1"  # where `redkeep up` runs every node, and how they reach each other


def planned(settings: Settings) -> tuple[PlannedNode, ...]:
    return plan_nodes(settings.deployment, settings.redis.tls_port)


def layout(settings: Settings, container: bool) -> SentinelLayout:
    """Every process' address: its name in containers (compose service, certificate name),
    loopback on this machine; always its planned port."""
    return SentinelLayout(
        {
            node.name: (node.name if container else LOOPBACK, node.port)
            for node in planned(settings)
        },
        container,
    )


def sentinel_state(
    settings: Settings, texts: Mapping[str, str], where: SentinelLayout
) -> SentinelState:
    """What the Sentinels learned, from their files `texts` (by name); every Sentinel without
    an id gets a new one."""
    names: Mapping[Address, str] = where.names()
    if where.container:
        names = NamesByHost(frozenset(where.addresses))
    state = read_state(texts, settings.deployment.master_name, names)
    sentinels = [node.name for node in planned(settings) if node.role == "sentinel"]
    return state.with_new_ids(sentinels)


class NamesByHost(Mapping[Address, str]):
    """The node at an address in the containers' world, where a node is its compose service
    name whatever its port: the files the Sentinels rewrote still name the primary and their
    peers at the old ports after `init --force --tls-port`, and that state must survive."""

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names

    def __getitem__(self, address: Address) -> str:
        if address[0] in self._names:
            return address[0]
        raise KeyError(address)

    def __iter__(self):
        return iter(())  # looked up only, never listed

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True)
class NodeFile:
    node: str
    kind: str  # "redis.conf" or "sentinel.conf"
    text: str


def node_confs(
    settings: Settings,
    passwords: Mapping[str, str],
    where: SentinelLayout,
    state: SentinelState,
    paths_for,
    version: tuple[int, int],
    bind: list[str],
    target: str,
) -> list[NodeFile]:
    """The configuration of every process of the deployment; `paths_for(name)` gives a
    node's ConfPaths. In a sentinel deployment the replicas replicate the primary the
    Sentinels last named (`state`), else the planned one."""
    nodes = planned(settings)
    files = []
    for node in nodes:
        paths: ConfPaths = paths_for(node.name)
        if node.role == "sentinel":
            text = render_sentinel_conf(
                settings, node, nodes, where, state, paths, bind, passwords, target
            )
            files.append(NodeFile(node.name, "sentinel.conf", text))
            continue
        conf = node_conf(settings, node, nodes, passwords, where, state)
        text = render_redis_conf(settings, paths, version, bind, target=target, node=conf)
        files.append(NodeFile(node.name, "redis.conf", text))
    return files


def node_conf(
    settings: Settings,
    node: PlannedNode,
    nodes: tuple[PlannedNode, ...],
    passwords: Mapping[str, str],
    where: SentinelLayout,
    state: SentinelState,
) -> NodeConf:
    deployment = settings.deployment
    replicaof = None
    replicaof_name = why = ""
    if deployment.topology == "sentinel":
        planned_primary = next(item.name for item in nodes if item.role == "primary")
        primary = state.primary or planned_primary
        if node.name != primary:
            replicaof, replicaof_name = where.addresses[primary], primary
            why = (
                "the initial layout"
                if primary == planned_primary
                else "the primary the Sentinels named last; they move it at a failover"
            )
    return NodeConf(
        name=node.name,
        topology=deployment.topology,
        port=node.port,
        announce=where.addresses[node.name][0],
        masterauth=passwords["replication"],
        min_replicas=deployment.writes_need_replicas(),
        min_replicas_max_lag=deployment.min_replicas_max_lag,
        replicaof=replicaof,
        replicaof_name=replicaof_name,
        replicaof_why=why,
        bus_port=node.bus_port,
        node_timeout=deployment.cluster_node_timeout_milliseconds,
        announce_hostname=where.container,
    )
