"""One live node -> the whole deployment it belongs to, as a `Deployment`.

What the seed is decides where the others are listed:

- a Cluster node (INFO `cluster_enabled:1`): CLUSTER NODES lists every node, its role and its
  shard (a replica's shard is its primary's node id);
- a Sentinel (INFO `redis_mode:sentinel`): SENTINEL MASTERS, then SENTINEL REPLICAS and
  SENTINEL SENTINELS of each primary it watches (the shard is the primary's Sentinel name);
- any other server: INFO replication, from the primary (a replica's `master_host`) down to its
  replicas. When Sentinel clients (`sentinel-<id>-cmd` in CLIENT LIST) are connected to the
  primary, one of them is found from its `__sentinel__:hello` message (published every 2 s)
  and asked for the others.

Nodes the seed lists but that cannot serve are skipped and reported, never reached: a Cluster
node flagged `fail`, `handshake` or `noaddr`, and a replica or Sentinel that the Sentinel calls
down (Sentinel never forgets a replica; its old address may be someone else's now).

Every node is reached like the seed: same user and password, same CA and client certificate,
TLS when the seed is TLS. Redis announces IP addresses, and certificates usually name hosts, not
the IPs of pods or machines that change; a redkeep bundle gives every node's certificate the
deployment's shared server names. So a node announced by IP is checked against the seed's host
name (`Target.tls_name`): the name the user already trusted, which the deployment's CA signed
for every node. A node announced by a host name (cluster-announce-hostname, Sentinel's
resolve-hostnames) is checked against that name.

Without TLS, the seed's password goes only to the seed's own host (the addresses its name
resolves to; loopback for a unix socket seed). A node announces whatever address it likes
(replica-announce-ip, a forged `__sentinel__:hello`), and a plaintext login there would hand
the password to whoever listens; over TLS the node must prove a certificate of the CA for the
trusted name first. A node elsewhere is skipped and reported: audit it by its own URL.

Bounded: one deadline for the whole discovery, and at most `max_nodes` nodes (the rest are
skipped and reported). Only read-only commands are sent.
"""

import ipaddress
import socket
import time
from dataclasses import dataclass, replace
from typing import Any

import hiredis

from redkeep.errors import RedkeepError, StreamError
from redkeep.exporter.info import parse_info
from redkeep.redis.deployment import Deployment, Node, Role, Topology
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target

DEFAULT_TIMEOUT = 30.0  # seconds for the whole discovery
DEFAULT_MAX_NODES = 100
HELLO_CHANNEL = "__sentinel__:hello"
HELLO_WAIT = 2.5  # Sentinels publish a hello every 2 s
# A Cluster node in one of these states is not asked anything.
UNUSABLE_FLAGS = {"fail": "the cluster marks it failed", "handshake": "still in handshake",
                  "noaddr": "the cluster knows no address for it"}  # fmt: skip
# A replica or Sentinel that its Sentinel sees in one of these states. ("disconnected" is not
# one: a Sentinel's link to a peer it just learned of is that until its next timer tick.)
SENTINEL_DOWN_FLAGS = ("s_down", "o_down")


@dataclass(frozen=True)
class ClusterNode:
    """One line of CLUSTER NODES."""

    id: str
    host: str  # the announced IP ("" when a node does not know it yet)
    port: int  # the client port it announces (the TLS port with tls-cluster yes)
    bus_port: int
    hostname: str  # cluster-announce-hostname (7.0+), else ""
    flags: frozenset[str]
    primary_id: str  # a replica's primary, "" for a primary
    link: str  # connected or disconnected
    slots: tuple[str, ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def myself(self) -> bool:
        return "myself" in self.flags

    def unusable(self) -> str:
        """Why this node is not to be reached, or ""."""
        for flag, reason in UNUSABLE_FLAGS.items():
            if flag in self.flags:
                return reason
        return ""


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """CLUSTER NODES' text -> its nodes. `ip:port@cport[,hostname]`, flags, primary id, ping
    sent, pong received, config epoch, link state, slots."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address, _, hostname = fields[1].partition(",")
        client, _, bus = address.partition("@")
        host, _, port = client.rpartition(":")
        nodes.append(
            ClusterNode(
                id=fields[0],
                host=host.strip("[]"),
                port=int(port or 0),
                bus_port=int(bus or 0),
                hostname=hostname,
                flags=frozenset(fields[2].split(",")),
                primary_id="" if fields[3] == "-" else fields[3],
                link=fields[7],
                slots=tuple(fields[8:]),
            )
        )
    return nodes


@dataclass(frozen=True)
class Skipped:
    """A node the seed lists that discovery left alone, and why."""

    address: str
    role: Role
    reason: str


@dataclass(frozen=True)
class Discovery:
    deployment: Deployment
    skipped: tuple[Skipped, ...] = ()


def discover(
    seed: Target, timeout: float = DEFAULT_TIMEOUT, max_nodes: int = DEFAULT_MAX_NODES
) -> Discovery:
    """The deployment `seed` belongs to, every node reached as the seed is.

    Raise RedkeepError (ConnectError, WRONGPASS, NOPERM ...) when the seed cannot be asked;
    a node further on that cannot be asked is left to the caller (it is in the deployment).
    """
    finder = _Finder(seed, time.monotonic() + timeout, max_nodes)
    info = finder.info(seed)
    server = info.get("server", {})
    if (server.get("redis_mode") or server.get("server_mode")) == "sentinel":
        finder.from_sentinel(seed)
    elif info.get("cluster", {}).get("cluster_enabled") == "1":
        finder.from_cluster(seed)
    else:
        finder.from_replication(seed, info.get("replication", {}))
    return finder.result()


def peer(seed: Target, host: str, port: int) -> Target:
    """How to reach a node the seed announced at host:port: the seed's credentials and TLS
    files; a node announced by IP is checked against the seed's host name (module docstring)."""
    scheme = "redis" if seed.scheme == "unix" else seed.scheme
    tls_name = (
        seed.server_name if seed.tls and _is_ip(host) and not _is_ip(seed.server_name) else ""
    )
    return replace(
        seed, scheme=scheme, host=host, port=port, socket_path="", tls_name=tls_name, url_source=""
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Finder:
    """Collects nodes and skipped nodes under one deadline and one cap."""

    def __init__(self, seed: Target, deadline: float, max_nodes: int) -> None:
        self.seed = seed
        self.deadline = deadline
        self.max_nodes = max_nodes
        self.topology = Topology.STANDALONE
        self.nodes: dict[tuple[str, int], Node] = {}
        self.skipped: list[Skipped] = []
        self._seed_addresses: set[str] | None = None  # what the seed's host name resolves to

    # --- asking ------------------------------------------------------------------------------

    def ask(self, target: Target, commands: list[tuple[str, ...]]) -> list:
        """Replies to `commands` (error replies as hiredis.ReplyError), within the deadline."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise StreamError(f"discovery ran out of time before asking {target.where}")
        connection = RawConnection(
            target, remaining, connect_timeout=min(remaining, target.timeout)
        )
        try:
            connection.login()
            return connection.pipeline(commands, self.deadline)
        finally:
            connection.close()

    def info(self, target: Target) -> dict[str, dict[str, Any]]:
        (reply,) = self.ask(target, [("INFO", "ALL")])
        return parse_info(_text(_ok(reply, "INFO")))

    # --- collecting --------------------------------------------------------------------------

    def add(self, name_host: str, port: int, role: Role, shard: str = "") -> None:
        host = name_host or self.seed.host
        key = (host, port)
        if key in self.nodes:
            return
        if len(self.nodes) >= self.max_nodes:
            self.skip(f"{_where(host, port)}", role, f"more than {self.max_nodes} nodes")
            return
        if not self.may_log_in(host, port, role):
            return
        target = peer(self.seed, host, port)
        self.nodes[key] = Node(target.where, role, target, shard=shard)

    def may_log_in(self, host: str, port: int, role: Role) -> bool:
        """May the seed's password be sent to `host`? (module docstring) Else skip it, said."""
        if self.seed.tls or not self.seed.password or self._on_seed_host(host):
            return True
        self.skip(
            _where(host, port),
            role,
            "announced on another host and the seed is not TLS: the password is not sent "
            "there in plaintext (audit it by its own URL)",
        )
        return False

    def _on_seed_host(self, host: str) -> bool:
        if self._seed_addresses is None:
            if self.seed.scheme == "unix":
                self._seed_addresses = {"localhost", "127.0.0.1", "::1"}
            else:
                try:
                    found = socket.getaddrinfo(self.seed.host, None, type=socket.SOCK_STREAM)
                    self._seed_addresses = {str(entry[4][0]) for entry in found}
                except OSError:
                    self._seed_addresses = set()
                self._seed_addresses.add(self.seed.host)
        return host in self._seed_addresses

    def skip(self, address: str, role: Role, reason: str) -> None:
        self.skipped.append(Skipped(address, role, reason))

    def result(self) -> Discovery:
        return Discovery(Deployment(self.topology, tuple(self.nodes.values())), tuple(self.skipped))

    # --- the three kinds of seed -------------------------------------------------------------

    def from_cluster(self, seed: Target) -> None:
        self.topology = Topology.CLUSTER
        (reply,) = self.ask(seed, [("CLUSTER", "NODES")])
        for node in parse_cluster_nodes(_text(_ok(reply, "CLUSTER NODES"))):
            host = node.hostname or node.host or (seed.host if node.myself else "")
            role = Role.PRIMARY if node.is_primary else Role.REPLICA
            reason = node.unusable() or ("" if host else "no address announced")
            if not node.port and not node.myself:
                # With `port 0`, a node without tls-cluster announces its plaintext port: 0.
                reason = reason or "it announces client port 0 (port 0 and tls-cluster no?)"
            if reason:
                self.skip(_where(host or "?", node.port), role, f"{reason} (node {node.id[:8]})")
                continue
            if node.myself:
                host, port = seed.host, seed.port  # as the user reached it
            else:
                port = node.port
            self.add(host, port, role, shard=node.id if node.is_primary else node.primary_id)

    def from_sentinel(self, seed: Target) -> None:
        self.topology = Topology.SENTINEL
        (reply,) = self.ask(seed, [("SENTINEL", "MASTERS")])
        masters = [_pairs(entry) for entry in _ok(reply, "SENTINEL MASTERS")]
        commands = []
        for master in masters:
            commands += [("SENTINEL", "REPLICAS", master["name"]),
                         ("SENTINEL", "SENTINELS", master["name"])]  # fmt: skip
        replies = self.ask(seed, commands) if commands else []
        self.add(seed.host, seed.port, Role.SENTINEL)
        for index, master in enumerate(masters):
            name = master["name"]
            self.add(master["ip"], int(master["port"]), Role.PRIMARY, shard=name)
            replicas = _ok(replies[2 * index], "SENTINEL REPLICAS")
            sentinels = _ok(replies[2 * index + 1], "SENTINEL SENTINELS")
            for entry in map(_pairs, replicas):
                self._add_watched(entry, Role.REPLICA, name)
            for entry in map(_pairs, sentinels):
                self._add_watched(entry, Role.SENTINEL, "")

    def _add_watched(self, entry: dict[str, str], role: Role, shard: str) -> None:
        flags = entry.get("flags", "").split(",")
        down = [flag for flag in SENTINEL_DOWN_FLAGS if flag in flags]
        if down:
            where = _where(entry["ip"], int(entry["port"]))
            self.skip(where, role, f"the Sentinel sees it {'/'.join(down)}")
            return
        self.add(entry["ip"], int(entry["port"]), role, shard=shard)

    def from_replication(self, seed: Target, replication: dict[str, Any]) -> None:
        primary, primary_info = seed, replication
        if replication.get("role") == "slave":
            primary = peer(seed, replication["master_host"], int(replication["master_port"]))
            if not self.may_log_in(primary.host, primary.port, Role.PRIMARY):
                self.add(seed.host, seed.port, Role.REPLICA)
                return
            try:
                primary_info = self.info(primary).get("replication", {})
            except RedkeepError:  # its own audit says why; its other replicas stay unknown
                self.add(primary.host, primary.port, Role.PRIMARY)
                self.add(seed.host, seed.port, Role.REPLICA)
                return
        replicas = [
            value
            for key, value in primary_info.items()
            if key.startswith("slave") and key[5:].isdigit() and isinstance(value, dict)
        ]
        if not replicas and primary is seed:
            self.add(seed.host, seed.port, Role.STANDALONE)
            return
        self.add(primary.host, primary.port, Role.PRIMARY)
        if primary is not seed:  # as the user reached it
            self.add(seed.host, seed.port, Role.REPLICA)
        for replica in replicas:
            host, port = replica.get("ip", ""), int(replica.get("port") or 0)
            if host and port and not self._is_seed(host, port):
                self.add(host, port, Role.REPLICA)
        self._sentinels_of(primary)

    def _is_seed(self, host: str, port: int) -> bool:
        """Is the announced host:port the seed (already in, under the name the user gave)?"""
        return port == self.seed.port and self.seed.scheme != "unix" and self._on_seed_host(host)

    def _sentinels_of(self, primary: Target) -> None:
        """The Sentinels watching `primary`, if its clients include any (module docstring)."""
        try:
            (clients,) = self.ask(primary, [("CLIENT", "LIST")])
        except RedkeepError:
            return
        if isinstance(clients, hiredis.ReplyError) or "name=sentinel-" not in _text(clients):
            return
        self.topology = Topology.SENTINEL
        hello = self._hello(primary)
        if hello is None:
            self.skip(primary.where, Role.SENTINEL, "Sentinels are connected but sent no hello")
            return
        for key, node in self.nodes.items():  # the group's name, as a Sentinel seed gives it
            self.nodes[key] = replace(node, shard=hello["master"])
        sentinel = peer(self.seed, hello["ip"], hello["port"])
        if not self.may_log_in(sentinel.host, sentinel.port, Role.SENTINEL):
            return
        try:
            (reply,) = self.ask(sentinel, [("SENTINEL", "SENTINELS", hello["master"])])
            others = _ok(reply, "SENTINEL SENTINELS")
        except RedkeepError as error:
            self.skip(sentinel.where, Role.SENTINEL, error.message)
            return
        self.add(sentinel.host, sentinel.port, Role.SENTINEL)
        for entry in map(_pairs, others):
            self._add_watched(entry, Role.SENTINEL, "")

    def _hello(self, primary: Target) -> dict[str, Any] | None:
        """The first `__sentinel__:hello` message published on `primary` within HELLO_WAIT."""
        until = min(self.deadline, time.monotonic() + HELLO_WAIT)
        reader = hiredis.Reader()
        try:
            connection = RawConnection(primary, HELLO_WAIT, connect_timeout=primary.timeout)
        except RedkeepError:
            return None
        try:
            connection.login()
            connection.send("SUBSCRIBE", HELLO_CHANNEL)
            while (remaining := until - time.monotonic()) > 0:
                message = reader.gets()
                if message is False:
                    connection.sock.settimeout(remaining)
                    reader.feed(connection.take())
                elif isinstance(message, list) and _text(message[0]) == "message":
                    return _parse_hello(_text(message[2]))
        except (RedkeepError, OSError, IndexError, ValueError):
            return None
        finally:
            connection.close()
        return None


def _parse_hello(text: str) -> dict[str, Any]:
    """`ip,port,runid,epoch,master_name,master_ip,master_port,master_epoch`."""
    ip, port, _runid, _epoch, master = text.split(",")[:5]
    return {"ip": ip, "port": int(port), "master": master}


def _ok(reply: Any, what: str) -> Any:
    """A reply, or the error reply raised as a RedkeepError naming the command."""
    if isinstance(reply, hiredis.ReplyError):
        raise RedkeepError(f"{what} failed: {_text(reply)[:120]}")
    return reply


def _pairs(reply: list) -> dict[str, str]:
    """A flat [key, value, ...] reply (SENTINEL MASTERS' entries) as a dict of text."""
    return {_text(key): _text(value) for key, value in zip(reply[::2], reply[1::2], strict=False)}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
