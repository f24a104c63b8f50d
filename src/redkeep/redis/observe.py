"""What a running sentinel or cluster deployment says about itself, and what is wrong with it.

Every node is asked (INFO replication; CLUSTER INFO and CLUSTER NODES in a cluster) and so is
every Sentinel (SENTINEL MASTER, CKQUORUM), as the bundle's read-only `exporter` user. The
roles here are the live ones: after a failover the primary is whichever node says it is, not
the one the plan started with. `DeploymentView.problems` is what `health` and `up` judge by:
an empty list means the whole deployment is healthy.

A node that is loading its dataset into memory (after a restart, or a replica at the end of a
full sync) answers INFO but refuses everything else with LOADING: it is said to be loading,
and counts as not reached (nothing else can be asked of it yet).
"""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from redkeep.errors import RedkeepError
from redkeep.redis.client import client_for, explain_failure
from redkeep.redis.deployment import Deployment, Node, Role, Topology
from redkeep.redis.explain import first_line
from redkeep.redis.target import Target

CLUSTER_SLOTS = 16384
LINK_DOWN = {"s_down", "o_down", "disconnected"}  # Sentinel's flags of an instance it lost
ASK_TIMEOUT = 2.0  # seconds per node: a dead one must not hold status up for long


@dataclass(frozen=True)
class NodeView:
    """One data node as it answered (or why it did not)."""

    name: str
    planned_role: str  # the role the plan started it in
    host: str
    port: int
    reached: bool
    error: str = ""  # why it could not be asked
    loading: bool = False  # not reached because it is loading its dataset into memory
    role: str | None = None  # live: "primary" or "replica"
    primary: str | None = None  # a replica: the node it replicates (a name, else host:port)
    link: str | None = None  # a replica: "up" or "down" (master_link_status)
    syncing: bool = False  # a replica: its first (or a full) sync is still running
    offset: int | None = None  # replication offset: the primary's, or what a replica has
    replicas: int | None = None  # a primary: replicas connected
    shard: str = ""
    cluster_state: str | None = None  # cluster: "ok" or "fail", as this node sees it
    slots_ok: int | None = None  # cluster: slots this node sees served
    known_nodes: int | None = None  # cluster: nodes this node knows
    slots: tuple[str, ...] = ()  # cluster: ranges this node serves, "0-5460"
    failing: tuple[str, ...] = ()  # cluster: nodes this node marks fail or pfail (names)


@dataclass(frozen=True)
class SentinelView:
    """One Sentinel's view of the primary."""

    name: str
    host: str
    port: int
    reached: bool
    error: str = ""
    primary: str | None = None  # the node it names primary (a name, else host:port)
    flags: str = ""  # of the primary: "master", "master,s_down", ...
    quorum: int | None = None
    quorum_ok: bool | None = None
    quorum_reply: str = ""  # CKQUORUM's answer
    other_sentinels: int | None = None
    known_replicas: int | None = None
    # Peers (Sentinels, replicas) it has no working link to, or marks down; a Sentinel that
    # has not reached its peers yet still passes CKQUORUM (nobody is down until then).
    unreached: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentView:
    topology: str
    nodes: tuple[NodeView, ...]
    sentinels: tuple[SentinelView, ...] = ()
    master_name: str = ""
    lag_bytes: dict[str, int] = field(default_factory=dict)  # replica -> bytes behind

    def node(self, name: str) -> NodeView | None:
        return next((node for node in self.nodes if node.name == name), None)

    def primaries(self) -> list[NodeView]:
        return [node for node in self.nodes if node.reached and node.role == "primary"]

    def live_primary(self) -> NodeView | None:
        """Sentinel: the one primary (the one the Sentinels name when several say they are);
        None when there is none."""
        primaries = self.primaries()
        if len(primaries) == 1:
            return primaries[0]
        named = {view.primary for view in self.sentinels if view.reached and view.primary}
        chosen = [node for node in primaries if node.name in named]
        return chosen[0] if len(chosen) == 1 else None

    def problems(self) -> list[str]:
        """One line per thing that keeps the deployment from being healthy."""
        return [text for _, text in self.findings()]

    def problems_of(self, name: str) -> list[str]:
        """The problems of one node or Sentinel."""
        return [text for subject, text in self.findings() if subject == name]

    def findings(self) -> list[tuple[str, str]]:
        """(the node or Sentinel it is about, "" for the deployment as a whole; the problem)."""
        found = [
            (node.name, f"{node.name} ({node.host}:{node.port}) {_why_unreached(node)}")
            for node in self.nodes
            if not node.reached
        ]
        if self.topology == Topology.CLUSTER.value:
            return found + self._cluster_findings()
        return found + self._sentinel_findings()

    def _sentinel_findings(self) -> list[tuple[str, str]]:
        found = []
        primaries = self.primaries()
        primary = self.live_primary()
        if not primaries:
            found.append(("", "no data node is primary (a failover may be in progress)"))
        elif len(primaries) > 1:
            names = ", ".join(node.name for node in primaries)
            found.append(("", f"{len(primaries)} nodes say they are primary ({names}): writes "
                              "to one the Sentinels do not name will be lost"))  # fmt: skip
        if primary is not None:
            found += self._replica_findings(primary)
        return found + self._sentinel_view_findings(primary)

    def _replica_findings(self, primary: NodeView) -> list[tuple[str, str]]:
        found = []
        for node in self.nodes:
            if not node.reached or node.role != "replica":
                continue
            if node.primary != primary.name:
                text = f"{node.name} replicates {node.primary}, not the primary {primary.name}"
            elif node.link != "up":
                text = f"{node.name}'s replication link to {primary.name} is down"
            elif node.syncing:
                text = f"{node.name} is still syncing from {primary.name}"
            else:
                continue
            found.append((node.name, text))
        return found

    def failover_under_way(self) -> list[str]:
        """The Sentinels that are failing the primary over right now (or agree it is down, so
        one is about to): until they finish, their files still name the old primary."""
        return [
            view.name
            for view in self.sentinels
            if view.reached and {"failover_in_progress", "o_down"} & set(view.flags.split(","))
        ]

    def _sentinel_view_findings(self, primary: NodeView | None) -> list[tuple[str, str]]:
        found = []
        for view in self.sentinels:
            name = view.name
            if not view.reached:
                found.append((name, f"{name} ({view.host}:{view.port}) does not answer: "
                                    f"{view.error}"))  # fmt: skip
                continue
            if primary is not None and view.primary != primary.name:
                found.append((name, f"{name} names {view.primary} primary, not {primary.name}"))
            down = sorted(LINK_DOWN & set(view.flags.split(",")))
            if down:
                found.append((name, f"{name} sees the primary down ({', '.join(down)})"))
            if view.unreached:
                found.append((name, f"{name} has no link to {', '.join(view.unreached)}"))
            if "failover_in_progress" in view.flags:
                found.append((name, f"{name}: a failover is in progress"))
            if not view.quorum_ok:
                found.append((name, f"{name}: no quorum: {view.quorum_reply}"))
        return found

    def _cluster_findings(self) -> list[tuple[str, str]]:
        found = []
        total = len(self.nodes)
        for node in self.nodes:
            if not node.reached:
                continue
            name = node.name
            texts = []
            if node.cluster_state != "ok":
                texts.append(f"{name}: cluster_state is {node.cluster_state}")
            if node.slots_ok is not None and node.slots_ok != CLUSTER_SLOTS:
                texts.append(f"{name}: {node.slots_ok} of {CLUSTER_SLOTS} slots are served")
            if node.known_nodes is not None and node.known_nodes < total:
                texts.append(f"{name} knows {node.known_nodes} of the {total} nodes")
            if node.failing:
                texts.append(f"{name} marks {', '.join(node.failing)} failing")
            if node.role == "primary" and not node.slots:
                # A planned replica left a primary (an `up` cut short while forming): it
                # holds no data and backs up no shard, so its shard has no spare.
                texts.append(f"{name} is a primary without slots: it replicates no shard")
            if node.role == "replica" and node.link != "up":
                texts.append(f"{name}'s replication link to {node.primary} is down")
            elif node.role == "replica" and node.syncing:
                texts.append(f"{name} is still syncing from {node.primary}")
            found += [(name, text) for text in texts]
        return found


def _why_unreached(node: NodeView) -> str:
    return node.error if node.loading else f"does not answer: {node.error}"


def loading_progress(persistence: dict[str, Any]) -> str:
    """How far a node that is loading has got, from its INFO persistence: " (42% loaded)"."""
    done = persistence.get("loading_loaded_perc")
    if not persistence.get("loading") or done is None:
        return ""
    return f" ({float(done):.0f}% loaded)"


def observe(deployment: Deployment, master_name: str = "") -> DeploymentView:
    """Ask every node and Sentinel of `deployment` (reached as its targets say) what it is."""
    names = _names(deployment.nodes)
    data = [node for node in deployment.nodes if node.holds_data]
    cluster = deployment.topology is Topology.CLUSTER
    ids: dict[str, str] = {}
    views = []
    raw: dict[str, dict[str, Any]] = {}
    for node in data:
        view, facts = _ask_node(node, names, cluster)
        views.append(view)
        raw[node.name] = facts
        if facts.get("id"):
            ids[facts["id"]] = node.name
    if cluster:
        views = [_with_cluster_names(view, raw[view.name], ids, names) for view in views]
    sentinels = tuple(
        _ask_sentinel(node, names, master_name)
        for node in deployment.nodes
        if node.role is Role.SENTINEL
    )
    by_name = {view.name: view for view in views}
    lag = {}
    for view in views:
        primary = by_name.get(view.primary or "")
        if view.role == "replica" and primary and primary.offset is not None and view.offset:
            lag[view.name] = max(primary.offset - view.offset, 0)
    return DeploymentView(
        deployment.topology.value, tuple(views), sentinels, master_name, lag_bytes=lag
    )


def _names(nodes: Iterable[Node]) -> dict[tuple[str, int], str]:
    """(host, port) -> node name, with loopback spelt every way a node may report it."""
    names = {}
    for node in nodes:
        target = node.target
        for host in {target.host, "127.0.0.1", "localhost", "::1"}:
            names[(host, target.port)] = node.name
    return names


def _name_of(names: dict[tuple[str, int], str], host: str, port: Any) -> str:
    try:
        number = int(port)
    except (TypeError, ValueError):
        return f"{host}:{port}"
    return names.get((host, number), f"{host}:{number}")


def _quick_target(node: Node) -> Target:
    return dataclasses.replace(node.target, timeout=ASK_TIMEOUT)


def _quick(node: Node) -> redis.Redis:
    return client_for(_quick_target(node))


def _failure(error: BaseException, node: Node) -> str:
    if isinstance(error, RedkeepError):
        return error.message
    return explain_failure(error, _quick_target(node)).message  # the timeout it had


def _ask_node(
    node: Node, names: dict[tuple[str, int], str], cluster: bool
) -> tuple[NodeView, dict[str, Any]]:
    target = node.target
    base = {
        "name": node.name,
        "planned_role": node.role.value,
        "host": target.host,
        "port": target.port,
        "shard": node.shard,
    }
    facts: dict[str, Any] = {}
    try:
        client = _quick(node)
        try:
            persistence = client.info("persistence")
            if persistence.get("loading"):
                return _loading(base, loading_progress(persistence)), {}
            info = client.info("replication")
            if cluster:
                facts = client.cluster("info") | {"nodes": client.cluster("nodes")}
        finally:
            client.close()
    except redis.BusyLoadingError:  # it began loading after INFO persistence said it did not
        return _loading(base, ""), {}
    except (redis.RedisError, OSError, RedkeepError) as error:
        return NodeView(reached=False, error=_failure(error, node), **base), {}
    replica = info.get("role") == "slave"
    view = NodeView(
        reached=True,
        role="replica" if replica else "primary",
        primary=_name_of(names, info.get("master_host", ""), info.get("master_port"))
        if replica
        else None,
        link=info.get("master_link_status") if replica else None,
        syncing=bool(info.get("master_sync_in_progress")) if replica else False,
        offset=info.get("slave_repl_offset" if replica else "master_repl_offset"),
        replicas=None if replica else info.get("connected_slaves"),
        **base,
    )
    if cluster:
        myself = _myself(facts.get("nodes", {}))
        facts["id"] = myself.get("node_id", "")
        view = dataclasses.replace(
            view,
            cluster_state=str(facts.get("cluster_state")),
            slots_ok=_int(facts.get("cluster_slots_ok")),
            known_nodes=_int(facts.get("cluster_known_nodes")),
            slots=tuple(_ranges(myself.get("slots", []))),
        )
    return view, facts


def _loading(base: dict[str, Any], progress: str) -> NodeView:
    text = f"is loading its dataset into memory{progress}: it serves no commands until then"
    return NodeView(reached=False, loading=True, error=text, **base)


def _myself(nodes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return next((item for item in nodes.values() if "myself" in item.get("flags", "")), {})


def _ranges(slots: list) -> list[str]:
    """redis-py's [[start, end], ...] (strings) as "start-end" (a single slot as "n")."""
    ranges = []
    for item in slots:
        start, end = (item[0], item[-1]) if isinstance(item, list | tuple) else (item, item)
        ranges.append(str(start) if str(start) == str(end) else f"{start}-{end}")
    return ranges


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _with_cluster_names(
    view: NodeView,
    facts: dict[str, Any],
    ids: dict[str, str],
    names: dict[tuple[str, int], str],
) -> NodeView:
    """Name a cluster replica's primary, and the nodes this one marks failing, by node name
    (by id, else by address; a node known by neither by its address and id)."""
    nodes = facts.get("nodes", {})
    myself = _myself(nodes)
    primary = view.primary
    if view.role == "replica":
        master_id = myself.get("master_id", "")
        primary = ids.get(master_id, primary)
    failing = tuple(
        sorted(
            ids.get(item.get("node_id", "")) or _cluster_name(names, address, item)
            for address, item in nodes.items()
            if {"fail", "fail?"} & set(item.get("flags", "").split(","))
        )
    )
    return dataclasses.replace(view, primary=primary, failing=failing)


def _cluster_name(names: dict[tuple[str, int], str], address: str, item: dict[str, Any]) -> str:
    """A CLUSTER NODES entry ("127.0.0.1:6381@16381") by node name, else address and id."""
    host, _, port = address.split("@", maxsplit=1)[0].rpartition(":")
    name = names.get((host, _int(port) or 0))
    return name or f"{address.split('@', maxsplit=1)[0]} (id {item.get('node_id', '?')[:8]})"


def _ask_sentinel(node: Node, names: dict[tuple[str, int], str], master_name: str) -> SentinelView:
    target = node.target
    base = {"name": node.name, "host": target.host, "port": target.port}
    try:
        client = _quick(node)
        try:
            master = client.sentinel_master(master_name)
            peers = [
                *client.execute_command("SENTINEL SENTINELS", master_name),
                *client.execute_command("SENTINEL SLAVES", master_name),
            ]
            try:
                reply = str(client.execute_command("SENTINEL", "CKQUORUM", master_name))
                quorum_ok = reply.startswith("OK")
            except redis.ResponseError as error:
                reply, quorum_ok = first_line(str(error)), False
        finally:
            client.close()
    except (redis.RedisError, OSError, RedkeepError) as error:
        return SentinelView(reached=False, error=_failure(error, node), **base)
    return SentinelView(
        reached=True,
        primary=_name_of(names, master.get("ip", ""), master.get("port")),
        flags=str(master.get("flags", "")),
        quorum=_int(master.get("quorum")),
        quorum_ok=quorum_ok,
        quorum_reply=reply,
        other_sentinels=_int(master.get("num-other-sentinels")),
        known_replicas=_int(master.get("num-slaves")),
        unreached=tuple(
            sorted(
                _name_of(names, peer.get("ip", ""), peer.get("port"))
                for peer in peers
                if LINK_DOWN & set(str(peer.get("flags", "")).split(","))
            )
        ),
        **base,
    )


def with_live_roles(deployment: Deployment, view: DeploymentView) -> Deployment:
    """`deployment` (any user's targets) with each data node's role as `view` found it: after
    a failover `primary()` is the promoted node and `one_per_shard()` picks it. Sentinel: the
    live primary (the one the Sentinels name when two say they are) and replicas, the lost
    ones too; with no live primary, the plan's roles. Cluster: a node that did not answer
    keeps its planned role."""
    primary = view.live_primary()
    roles = {}
    if view.topology == Topology.SENTINEL.value:
        if primary is None:
            return deployment
        roles = {node.name: Role.REPLICA for node in view.nodes} | {primary.name: Role.PRIMARY}
    else:
        for node in view.nodes:
            if node.reached and node.role:
                roles[node.name] = Role.PRIMARY if node.role == "primary" else Role.REPLICA
    nodes = tuple(
        dataclasses.replace(node, role=roles.get(node.name, node.role)) if node.holds_data else node
        for node in deployment.nodes
    )
    return Deployment(deployment.topology, nodes)
