"""The `deployment:` section of redkeep.yaml: how many servers hold the data and how they fail over.

standalone is one server (the default; a bundle without this section is standalone). sentinel is
a primary, its replicas and the Sentinels that promote a replica when the primary dies. cluster
is shards, each a primary with replicas. `plan_nodes` turns the section into named nodes with
their local ports, the one layout that init, up, status, the audit and the k8s manifests share.
"""

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from redkeep.config.section import HostPort, Section

SENTINEL_PORT_OFFSET = 100  # Sentinel j listens on tls_port + 100 + j
BUS_PORT_OFFSET = 10000  # the cluster bus of node i: tls_port + 10000 + i (Redis' own convention)


class DeploymentSettings(Section):
    topology: Literal["standalone", "sentinel", "cluster"] = Field(
        "standalone",
        description="standalone: one server; sentinel: a primary, replicas and Sentinels for "
        "failover; cluster: shards, each a primary with replicas.",
    )
    replicas: int | None = Field(
        None,
        ge=0,
        le=10,
        description="sentinel: replicas of the primary (default 2); cluster: replicas per shard "
        "(default 1).",
    )
    sentinels: int = Field(
        3, ge=1, le=9, description="sentinel: how many Sentinels watch the primary (odd)."
    )
    shards: int = Field(3, ge=3, le=16, description="cluster: how many shards (primaries).")
    master_name: str = Field(
        "redkeep",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="sentinel: the name the Sentinels know the primary by (clients ask for it).",
    )
    quorum: int | None = Field(
        None,
        ge=1,
        description="sentinel: Sentinels that must agree the primary is down (default: a "
        "majority).",
    )
    down_after_milliseconds: int = Field(
        5000,
        ge=100,
        description="sentinel: how long the primary may not answer before it is called down.",
    )
    failover_timeout_milliseconds: int = Field(
        60000, ge=1000, description="sentinel: how long a failover may take before it is retried."
    )
    cluster_node_timeout_milliseconds: int = Field(
        5000, ge=100, description="cluster: how long a node may not answer before it fails over."
    )
    min_replicas_to_write: int | None = Field(
        None,
        ge=0,
        description="A primary refuses writes unless this many replicas are connected and "
        "recent (bounds what a failover can lose); default 1 when there are replicas.",
    )
    min_replicas_max_lag: int = Field(
        10, ge=1, description="Seconds a replica may lag and still count for min_replicas_to_write."
    )
    nodes_by_name: bool = Field(
        False,
        description="Reach each node at its own name (its docker-compose service name, which "
        "its certificate holds) instead of `host`: what redkeep's containers do (the compose "
        "view of this file sets it); off where `redkeep up` runs the nodes.",
    )
    node_addresses: dict[str, HostPort] = Field(
        default_factory=dict,
        description="HOST:PORT of each node by its name (redis-0.., sentinel-0..) where it is "
        "neither at `host` nor at its planned port: the Kubernetes view of this file sets it "
        "(each pod's DNS name).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "DeploymentSettings":
        if self.topology == "sentinel":
            if self.sentinels % 2 == 0:
                raise ValueError(
                    f"sentinels is {self.sentinels}: use an odd number, so a majority exists"
                )
            if self.replica_count() < 1:
                raise ValueError("a sentinel deployment needs at least one replica to fail over to")
            if self.quorum is not None and self.quorum > self.sentinels:
                raise ValueError(
                    f"quorum {self.quorum} is more than the {self.sentinels} Sentinels"
                )
        if (
            self.min_replicas_to_write is not None
            and self.min_replicas_to_write > self.replica_count()
        ):
            raise ValueError(
                f"min_replicas_to_write {self.min_replicas_to_write} is more than the "
                f"{self.replica_count()} replicas: the primary would refuse every write"
            )
        return self

    def replica_count(self) -> int:
        """Replicas of each primary."""
        if self.topology == "standalone":
            return 0
        if self.replicas is not None:
            return self.replicas
        return 2 if self.topology == "sentinel" else 1

    def sentinel_quorum(self) -> int:
        return self.quorum or self.sentinels // 2 + 1

    def writes_need_replicas(self) -> int:
        """min-replicas-to-write for every primary."""
        if self.min_replicas_to_write is not None:
            return self.min_replicas_to_write
        return 1 if self.replica_count() else 0


@dataclass(frozen=True)
class PlannedNode:
    """One process of the deployment as init lays it out. Names never change; roles do at
    failover (`role` is the initial one)."""

    name: str  # redis-0.., sentinel-0..: the compose service, the k8s pod, file names
    role: Literal["standalone", "primary", "replica", "sentinel"]
    port: int  # its TLS port when run locally by `redkeep up`
    shard: int = 0  # cluster: the shard it starts in
    replica_of: str = ""  # a replica: the node it starts replicating
    bus_port: int = 0  # cluster: the cluster bus port (TLS)

    @property
    def holds_data(self) -> bool:
        return self.role != "sentinel"


def plan_nodes(deployment: DeploymentSettings, tls_port: int) -> tuple[PlannedNode, ...]:
    """Every process of the deployment, data nodes first (redis-0 is the first primary).

    standalone: the one server keeps the name `redis` and `tls_port`. sentinel: redis-0 is the
    primary, redis-1.. replicate it, sentinel-j listens on tls_port + 100 + j. cluster: redis-k
    (k < shards) is shard k's primary, its replicas are redis-(shards + k*replicas + j); node i
    listens on tls_port + i and its bus on tls_port + 10000 + i.
    """
    if deployment.topology == "standalone":
        return (PlannedNode("redis", "standalone", tls_port),)
    replicas = deployment.replica_count()
    if deployment.topology == "sentinel":
        nodes = [PlannedNode("redis-0", "primary", tls_port)]
        nodes += [
            PlannedNode(f"redis-{i}", "replica", tls_port + i, replica_of="redis-0")
            for i in range(1, replicas + 1)
        ]
        nodes += [
            PlannedNode(f"sentinel-{j}", "sentinel", tls_port + SENTINEL_PORT_OFFSET + j)
            for j in range(deployment.sentinels)
        ]
        return tuple(nodes)
    shards = deployment.shards
    nodes = []
    for k in range(shards):
        nodes.append(
            PlannedNode(
                f"redis-{k}",
                "primary",
                tls_port + k,
                shard=k,
                bus_port=tls_port + BUS_PORT_OFFSET + k,
            )
        )
    for k in range(shards):
        for j in range(replicas):
            i = shards + k * replicas + j
            nodes.append(
                PlannedNode(
                    f"redis-{i}",
                    "replica",
                    tls_port + i,
                    shard=k,
                    replica_of=f"redis-{k}",
                    bus_port=tls_port + BUS_PORT_OFFSET + i,
                )
            )
    return tuple(nodes)
