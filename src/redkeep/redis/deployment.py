"""A deployment: the Redis servers that hold one dataset, and which of them a command needs.

A standalone server is a deployment of one node. A replicated one is a primary, its replicas
and the Sentinels that watch them; a Cluster is shards, each a primary with replicas. Commands
pick nodes by purpose rather than by address: an audit or a certificate rotation wants every
node, a backup one node per shard, a user change the current primary. A bundle builds its
deployment from `config/deployment.py`'s plan (`Bundle.deployment`); the roles there are the
initial ones.
"""

from dataclasses import dataclass
from enum import Enum

from redkeep.errors import UsageError
from redkeep.redis.target import Target


class Topology(Enum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"  # a primary and replicas, failover by Sentinel
    CLUSTER = "cluster"  # shards


class Role(Enum):
    STANDALONE = "standalone"
    PRIMARY = "primary"
    REPLICA = "replica"
    SENTINEL = "sentinel"  # watches the others; holds no data


@dataclass(frozen=True)
class Node:
    """One server of a deployment: a name for messages, its role, how to reach it."""

    name: str
    role: Role
    target: Target
    shard: str = ""  # the Cluster shard it belongs to; one unnamed shard outside Cluster

    @property
    def holds_data(self) -> bool:
        return self.role is not Role.SENTINEL


@dataclass(frozen=True)
class Deployment:
    topology: Topology
    nodes: tuple[Node, ...]

    @classmethod
    def standalone(cls, target: Target, name: str = "redis") -> "Deployment":
        return cls(Topology.STANDALONE, (Node(name, Role.STANDALONE, target),))

    @classmethod
    def discover(cls, seed: Target, timeout: float = 30.0) -> "Deployment":
        """The deployment `seed` belongs to, as it is now (after failovers too): every node
        reached as the seed is. `redis.discover.discover` also says which nodes it skipped."""
        from redkeep.redis.discover import discover  # noqa: PLC0415 - it imports this module

        return discover(seed, timeout).deployment

    def every_node(self) -> tuple[Node, ...]:
        """Every server that holds the data (not the Sentinels), primaries first."""
        data = [node for node in self.nodes if node.holds_data]
        return tuple(sorted(data, key=lambda node: node.role is Role.REPLICA))

    def primary(self) -> Node:
        """The node that takes writes; raise UsageError when there is not exactly one.

        As recorded here: after a failover, asking Sentinel is the caller's part (not yet).
        """
        primaries = [node for node in self.nodes if node.role in (Role.PRIMARY, Role.STANDALONE)]
        if len(primaries) != 1:
            names = ", ".join(node.name for node in primaries) or "none"
            raise UsageError(
                f"a {self.topology.value} deployment has {len(primaries)} primaries ({names}); "
                "name the node to talk to"
            )
        return primaries[0]

    def one_per_shard(self) -> tuple[Node, ...]:
        """One node of each shard, its primary where there is one: what a backup reads."""
        chosen: dict[str, Node] = {}
        for node in self.every_node():  # primaries first, so a shard's primary wins
            chosen.setdefault(node.shard, node)
        return tuple(chosen.values())
