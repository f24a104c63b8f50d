"""The script that forms a cluster deployment (k8s-cluster-create.sh.j2), for the Kubernetes
Job and for docker-compose's one-shot `cluster-create` service alike: only the addresses of
the nodes (a pod's DNS name and the shared port, or a compose service and its own port) and
the directory of the TLS files differ."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redkeep import __version__
from redkeep.config.deployment import PlannedNode
from redkeep.render import templates

CLUSTER_SLOTS = 16384
SCRIPT_NAME = "cluster-create.sh"
FORMED_WAIT_SECONDS = 300  # for every node to say ok and know all others; then the run fails


@dataclass(frozen=True)
class Endpoint:
    """How the script reaches one node: host (name or address), TLS port, cluster bus port."""

    host: str
    port: int
    bus_port: int


def slot_ranges(shards: int) -> list[tuple[int, int]]:
    """The hash slots of each shard: contiguous, as even as integer division makes them."""
    bounds = [k * CLUSTER_SLOTS // shards for k in range(shards + 1)]
    return [(bounds[k], bounds[k + 1] - 1) for k in range(shards)]


def render_cluster_create(
    name: str,
    planned: Sequence[PlannedNode],
    endpoint: Callable[[PlannedNode], Endpoint],
    tls_dir: str,
    where: str,
) -> str:
    """Meet every node, give each planned primary its slots, attach the replicas as
    plan_nodes lays them out, wait until every node knows all
    the others and says cluster_state:ok (bounded). `where` says in the
    script's header which world it is for."""
    data = [node for node in planned if node.holds_data]
    by_name = {node.name: endpoint(node) for node in data}
    primaries = [node for node in data if node.role == "primary"]
    ranges = slot_ranges(len(primaries))
    return (
        templates()
        .get_template("k8s-cluster-create.sh.j2")
        .render(
            name=name,
            version=__version__,
            where=where,
            tls_dir=tls_dir,
            wait_seconds=FORMED_WAIT_SECONDS,
            nodes=list(by_name.values()),
            first=by_name[data[0].name],
            primaries=[(by_name[node.name], *ranges[i]) for i, node in enumerate(primaries)],
            replicas=[
                (by_name[node.name], by_name[node.replica_of])
                for node in data
                if node.role == "replica"
            ],
        )
    )
