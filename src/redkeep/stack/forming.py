"""Form a Redis Cluster from nodes that run: CLUSTER MEET, ADDSLOTSRANGE, REPLICATE.

Done over the nodes' TLS ports as the bundle's admin, rather than with `redis-cli --cluster
create`: that would need the admin password in redis-cli's environment, and it places
replicas by its own rule (spreading them over hosts), whereas the plan names each shard's
primary and replicas, and the roles `status` compares against are the plan's. Every step is
skipped where the cluster already has it, so a cluster that was formed before (its nodes.conf
files) is only waited for, and a node that lost its data joins again in its planned place.

A node that is loading its dataset into memory refuses every CLUSTER command (LOADING) and
may start to at any moment: a replica's full sync ends with a load. Each command waits that
out (`ClusterNode.cluster`), up to the forming timeout.
"""

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from redkeep.config.deployment import PlannedNode
from redkeep.errors import RedkeepError
from redkeep.redis.client import client_for
from redkeep.redis.deployment import Deployment
from redkeep.redis.observe import CLUSTER_SLOTS, loading_progress
from redkeep.stack import redis_server

FORM_TIMEOUT = 30.0  # seconds for every node to learn of every other


def shard_slots(shard: int, shards: int) -> tuple[int, int]:
    """The slot range of shard `shard` of `shards`: an even split of the 16384 slots."""
    return shard * CLUSTER_SLOTS // shards, (shard + 1) * CLUSTER_SLOTS // shards - 1


@dataclass
class ClusterNode:
    planned: PlannedNode
    client: redis.Redis
    node_id: str = ""
    timeout: float = FORM_TIMEOUT  # seconds to wait for it to finish loading, per command
    sleep: Callable[[float], None] = time.sleep
    log: Path | None = None  # its log: says whether it is loading when it does not answer
    loading_timeout: float | None = None  # `timeout` unless given: a big dataset takes long

    def cluster(self, *args: Any) -> Any:
        """CLUSTER ARGS, asked again while the node refuses it because it is loading its
        dataset (Redis refuses before it runs the command, so asking again is safe), or does
        not answer in time while its log says it is loading (it answers only now and then)."""
        deadline = time.monotonic() + (self.loading_timeout or self.timeout)
        while True:
            try:
                return self.client.cluster(*args)
            except redis.BusyLoadingError:
                pass
            except (redis.TimeoutError, redis.ConnectionError):
                if self.log is None or not redis_server.loading_by_log(self.log):
                    raise
            if time.monotonic() >= deadline:
                raise self._still_loading() from None
            self.sleep(0.1)

    def _still_loading(self) -> RedkeepError:
        name = self.planned.name
        try:
            progress = loading_progress(self.client.info("persistence"))
        except (redis.RedisError, OSError):
            progress = ""
        return RedkeepError(
            f"the cluster did not form: {name} is still loading its dataset into memory after "
            f"{self.loading_timeout or self.timeout:g}s{progress}; run up again once it has "
            f"loaded (see run/{name}.log)"
        )


def form_cluster(
    deployment: Deployment,
    planned: tuple[PlannedNode, ...],
    announce: str,
    timeout: float = FORM_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    log_dir: Path | None = None,
    loading_timeout: float | None = None,
) -> list[str]:
    """Join every data node of `deployment` (reached as admin) into one cluster, give each
    shard's planned primary its slots unless some node serves them, and make each node
    without slots a replica of its shard's current primary. Return what was done.

    A new cluster gets its slots and distinct configuration epochs before the nodes meet (as
    `redis-cli --cluster create` does): the first heartbeats then carry them, rather than
    gossip spreading them over seconds.
    """
    targets = {node.name: node.target for node in deployment.every_node()}
    data = [item for item in planned if item.holds_data]
    nodes = [
        ClusterNode(
            item,
            client_for(targets[item.name]),
            timeout=timeout,
            sleep=sleep,
            log=log_dir / f"{item.name}.log" if log_dir else None,
            loading_timeout=loading_timeout,
        )
        for item in data
    ]
    try:
        for node in nodes:
            node.node_id = str(node.cluster("myid"))
        done: list[str] = []
        assigned: dict[int, str] = {}
        new = all(len(_cluster_nodes(node)) == 1 and not _served(node) for node in nodes)
        if new:
            for epoch, node in enumerate(nodes, start=1):
                # Set before by an `up` cut short here: a second SET-CONFIG-EPOCH is refused.
                if int(node.cluster("info").get("cluster_my_epoch", 0)) == 0:
                    node.cluster("set-config-epoch", epoch)
            assigned, done = _assign_slots(nodes, {})
        done = _meet(nodes, announce) + done
        _wait(lambda: _all_know_all(nodes), "every node to know every other", timeout, sleep)
        if not new:  # some node lost its files, or formed only partly: fill in what is missing
            done += _forget_gone(nodes)
            assigned, more = _assign_slots(nodes, _served_anywhere(nodes))
            done += more
        return done + _attach_replicas(nodes, assigned)
    finally:
        for node in nodes:
            node.client.close()


def _meet(nodes: list[ClusterNode], announce: str) -> list[str]:
    """Every node meets every node it does not know yet (directly: quicker than gossip)."""
    joined = []
    for index, node in enumerate(nodes):
        known = {item["node_id"] for item in _cluster_nodes(node).values()}
        for other in nodes[index + 1 :]:
            if other.node_id in known:
                continue
            planned = other.planned
            # An error: a handshake with it is under way already (gossip); waited for below.
            with contextlib.suppress(redis.ResponseError):
                node.cluster("meet", announce, planned.port, planned.bus_port)
            if planned.name not in joined:
                joined.append(planned.name)
    return [f"{name} joined the cluster" for name in joined]


def _forget_gone(nodes: list[ClusterNode]) -> list[str]:
    """Make every node forget failed node ids that no node of the deployment has any more (a
    node that lost its nodes.conf came back under a new id): the old one would stay `fail`."""
    current = {node.node_id for node in nodes}
    gone = {
        item["node_id"]
        for node in nodes
        for item in _cluster_nodes(node).values()
        if item["node_id"] not in current and {"fail", "noaddr"} & set(item["flags"].split(","))
    }
    for node_id in gone:
        for node in nodes:
            # An error: this node did not know it (the gossip carried it elsewhere only).
            with contextlib.suppress(redis.ResponseError):
                node.cluster("forget", node_id)
    return [f"the cluster forgot node {node_id[:8]}: no node has that id now" for node_id in gone]


def _assign_slots(
    nodes: list[ClusterNode], served: dict[int, str]
) -> tuple[dict[int, str], list[str]]:
    """Give each shard none of whose slots are `served` to its planned primary; ({first slot:
    that primary's id} for the shards assigned now, what was done)."""
    shards = len({node.planned.shard for node in nodes})
    assigned, done = {}, []
    for node in nodes:
        if node.planned.role != "primary":
            continue
        start, end = shard_slots(node.planned.shard, shards)
        if any(slot in served for slot in range(start, end + 1)):
            continue  # assigned before (perhaps to a replica that took over): leave it
        node.cluster("addslotsrange", start, end)
        assigned[start] = node.node_id
        done.append(f"{node.planned.name} serves slots {start}-{end}")
    return assigned, done


def _attach_replicas(nodes: list[ClusterNode], assigned: dict[int, str]) -> list[str]:
    """Each node that serves no slot and replicates nothing replicates its shard's primary:
    the one just given the slots, else the one the cluster says serves them now."""
    shards = len({node.planned.shard for node in nodes})
    served = _served_anywhere(nodes) | assigned
    done = []
    for node in nodes:
        mine = next(item for item in _cluster_nodes(node).values() if "myself" in item["flags"])
        if "master" not in mine["flags"] or mine.get("slots"):
            continue  # a replica already, or a primary that serves slots
        start, _ = shard_slots(node.planned.shard, shards)
        primary = served.get(start)
        if primary is None or primary == node.node_id:
            continue
        node.cluster("replicate", primary)
        name = next(item.planned.name for item in nodes if item.node_id == primary)
        done.append(f"{node.planned.name} replicates {name}")
    return done


def _cluster_nodes(node: ClusterNode) -> dict:
    return node.cluster("nodes")


def _served(node: ClusterNode) -> dict[int, str]:
    """slot -> the id of the node that serves it, as `node` sees it."""
    served = {}
    for item in _cluster_nodes(node).values():
        for pair in item.get("slots", []):
            start, end = int(pair[0]), int(pair[-1])
            for slot in range(start, end + 1):
                served[slot] = item["node_id"]
    return served


def _served_anywhere(nodes: list[ClusterNode]) -> dict[int, str]:
    """slot -> the node serving it, merged from every node's view: right after a cut-short
    `up`, gossip may not have spread each node's slots, and one node's view would then offer
    slots another already holds. A node's word on its own slots wins."""
    served: dict[int, str] = {}
    for node in nodes:
        served |= _served(node)
    for node in nodes:
        served |= {slot: owner for slot, owner in _served(node).items() if owner == node.node_id}
    return served


def _all_know_all(nodes: list[ClusterNode]) -> bool:
    ids = {node.node_id for node in nodes}
    return all(ids <= {item["node_id"] for item in _cluster_nodes(node).values()} for node in nodes)


def _wait(
    condition: Callable[[], bool],
    what: str,
    timeout: float,
    sleep: Callable[[float], None],
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise RedkeepError(
                f"the cluster did not form within {timeout:g}s: waited for {what}; see the "
                "nodes' logs in run/"
            )
        sleep(0.1)
