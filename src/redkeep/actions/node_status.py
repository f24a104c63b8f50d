"""The `nodes` and `sentinels` of `redkeep status --json` (docs/json.md): each data node and
Sentinel of a deployment as it answered, with its process on this machine."""

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from redkeep.redis.observe import DeploymentView, NodeView, SentinelView


@dataclass(frozen=True)
class NodeStatus:
    """One data node: its live role and replication, as it answered."""

    name: str
    role: str | None  # live: "primary" or "replica"; None when it did not answer
    planned_role: str  # "standalone", or the role the plan started it in
    host: str
    port: int
    healthy: bool
    detail: str  # "ok", or what is wrong
    pid: int | None  # its process on this machine
    primary: str | None = None  # a replica: the node it replicates
    link: str | None = None  # a replica: "up" or "down"
    offset: int | None = None  # replication offset
    lag_bytes: int | None = None  # a replica: how far behind its primary's offset
    replicas: int | None = None  # a primary: replicas connected
    shard: str | None = None  # cluster: the shard the plan put it in
    slots: tuple[str, ...] = ()  # cluster: slot ranges it serves
    cluster_state: str | None = None  # cluster: "ok" or "fail", as it sees the cluster

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["slots"] = list(self.slots)
        return data


@dataclass(frozen=True)
class SentinelStatus:
    """One Sentinel: which node it names primary, and whether a failover could happen."""

    name: str
    host: str
    port: int
    healthy: bool
    detail: str
    pid: int | None
    primary: str | None = None
    quorum: int | None = None
    quorum_ok: bool | None = None
    other_sentinels: int | None = None
    known_replicas: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def node_statuses(
    view: DeploymentView, pids: Mapping[str, int | None]
) -> tuple[list[NodeStatus], list[SentinelStatus]]:
    """The deployment's nodes and Sentinels as status shows them; `pids` by name."""
    cluster = view.topology == "cluster"
    nodes = [_node(view, node, pids.get(node.name), cluster) for node in view.nodes]
    sentinels = [_sentinel(view, item, pids.get(item.name)) for item in view.sentinels]
    return nodes, sentinels


def _node(view: DeploymentView, node: NodeView, pid: int | None, cluster: bool) -> NodeStatus:
    problems = view.problems_of(node.name)
    return NodeStatus(
        name=node.name,
        role=node.role,
        planned_role=node.planned_role,
        host=node.host,
        port=node.port,
        healthy=not problems,
        detail="; ".join(problems) or "ok",
        pid=pid,
        primary=node.primary,
        link=node.link,
        offset=node.offset,
        lag_bytes=view.lag_bytes.get(node.name),
        replicas=node.replicas,
        shard=node.shard if cluster else None,
        slots=node.slots,
        cluster_state=node.cluster_state,
    )


def _sentinel(view: DeploymentView, item: SentinelView, pid: int | None) -> SentinelStatus:
    problems = view.problems_of(item.name)
    return SentinelStatus(
        name=item.name,
        host=item.host,
        port=item.port,
        healthy=not problems,
        detail="; ".join(problems) or "ok",
        pid=pid,
        primary=item.primary,
        quorum=item.quorum,
        quorum_ok=item.quorum_ok,
        other_sentinels=item.other_sentinels,
        known_replicas=item.known_replicas,
    )


def summary(view: DeploymentView) -> str:
    """What a healthy deployment is, in one line."""
    if view.topology == "cluster":
        primaries = sum(node.role == "primary" for node in view.nodes)
        return (
            f"cluster of {len(view.nodes)} nodes ({primaries} primaries): cluster_state ok, "
            "all 16384 slots served"
        )
    primary = view.live_primary()
    replicas = len(view.nodes) - 1
    quorum = next((item.quorum for item in view.sentinels if item.quorum), None)
    return (
        f"primary {primary.name if primary else '?'} with {replicas} replicas in sync; "
        f"{len(view.sentinels)} Sentinels agree (quorum {quorum})"
    )
