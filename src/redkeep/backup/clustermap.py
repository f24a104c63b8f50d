"""A Redis Cluster's slot map, as a cluster backup reads it before and after its captures.

From CLUSTER NODES (one node's view): each shard is a primary, its config epoch, the slot
ranges it serves and its replicas. Two readings are compared by `signature`: a failover (a new
primary, a bumped epoch) or a slot migration between them changes it, and the captures taken in
between may not fit together. A map is `settled` when every slot is served once by a primary
no node calls failing and no slot is being migrated: only then is a capture started.
"""

import time
from dataclasses import dataclass

import hiredis

from redkeep.errors import RedkeepError
from redkeep.exporter.info import parse_info
from redkeep.redis.discover import ClusterNode, parse_cluster_nodes, peer
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target

SLOTS = 16384
ASK_TIMEOUT = 5.0  # seconds per node asked
Range = tuple[int, int]  # first and last slot, inclusive


@dataclass(frozen=True)
class Shard:
    primary: ClusterNode
    epoch: int  # the primary's config epoch
    ranges: tuple[Range, ...]
    replicas: tuple[ClusterNode, ...]
    migrating: bool = False  # a slot of it is being imported or migrated

    @property
    def slots(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)


@dataclass(frozen=True)
class SlotMap:
    shards: tuple[Shard, ...]  # ordered by their first slot
    failing: tuple[str, ...] = ()  # node ids flagged fail or pfail

    def signature(self) -> tuple:
        """What must not change while a backup runs: who serves which slots, at which epoch."""
        return tuple((shard.primary.id, shard.epoch, shard.ranges) for shard in self.shards)

    def unsettled(self) -> str:
        """Why captures must not start on this map now, or ""."""
        problem = coverage_problem([shard.ranges for shard in self.shards])
        if problem:
            return problem
        for shard in self.shards:
            if shard.primary.id in self.failing:
                where = address(shard.primary)
                return f"the primary {where} of slots {_ranges_text(shard)} is failing"
            if shard.migrating:
                return f"slots of {address(shard.primary)} are being migrated"
        return ""

    def describe_change(self, later: "SlotMap") -> str:
        """What changed from this map to `later`, in words (for the failure or retry)."""
        before = {shard.ranges: shard for shard in self.shards}
        for shard in later.shards:
            old = before.get(shard.ranges)
            if old is None:
                return f"slots {_ranges_text(shard)} moved (now on {address(shard.primary)})"
            if old.primary.id != shard.primary.id:
                return (
                    f"slots {_ranges_text(shard)} failed over from {address(old.primary)} to "
                    f"{address(shard.primary)}"
                )
            if old.epoch != shard.epoch:
                return (
                    f"the config epoch of {address(shard.primary)} went from {old.epoch} to "
                    f"{shard.epoch}"
                )
        return "the slot map changed"


def address(node: ClusterNode) -> str:
    host = node.hostname or node.host
    return f"[{host}]:{node.port}" if ":" in host else f"{host}:{node.port}"


def _ranges_text(shard: Shard) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in shard.ranges)


def parse_slot_map(text: str) -> SlotMap:
    """CLUSTER NODES' text -> the slot map (epochs are its seventh field)."""
    epochs = {
        fields[0]: int(fields[6])
        for fields in map(str.split, text.splitlines())
        if len(fields) >= 8
    }
    nodes = parse_cluster_nodes(text)
    failing = tuple(node.id for node in nodes if {"fail", "fail?"} & node.flags)
    shards = []
    for node in nodes:
        if not node.is_primary:
            continue
        ranges, migrating = parse_slots(node.slots)
        if not ranges:
            continue  # a primary without slots (an empty new node, or one that failed over)
        replicas = tuple(
            other for other in nodes if other.primary_id == node.id and not other.is_primary
        )
        shards.append(Shard(node, epochs.get(node.id, 0), ranges, replicas, migrating))
    shards.sort(key=lambda shard: shard.ranges[0])
    return SlotMap(tuple(shards), failing)


def parse_slots(fields: tuple[str, ...]) -> tuple[tuple[Range, ...], bool]:
    """`0-5460 5462 [5461->-id]` -> ((0, 5460), (5462, 5462)) and whether a slot migrates."""
    ranges: list[Range] = []
    migrating = False
    for field in fields:
        if field.startswith("["):
            migrating = True
            continue
        first, _, last = field.partition("-")
        ranges.append((int(first), int(last or first)))
    return tuple(sorted(ranges)), migrating


def coverage_problem(shard_ranges: list[tuple[Range, ...]]) -> str:
    """Why these ranges do not cover slots 0..16383 exactly once, or ""."""
    flat = sorted(item for ranges in shard_ranges for item in ranges)
    expected = 0
    for first, last in flat:
        if not (0 <= first <= last < SLOTS):
            return f"slot range {first}-{last} is not within 0-{SLOTS - 1}"
        if first < expected:
            return f"slot {first} is served twice"
        if first > expected:
            return f"slots {expected}-{first - 1} are served by no shard"
        expected = last + 1
    if expected != SLOTS:
        return f"slots {expected}-{SLOTS - 1} are served by no shard"
    return ""


def ask(target: Target, *commands: tuple[str, ...], timeout: float = ASK_TIMEOUT) -> list:
    """Replies to `commands` on one node, as text (error replies raise RedkeepError)."""
    connection = RawConnection(target, timeout, connect_timeout=min(timeout, target.timeout))
    try:
        connection.login()
        replies = connection.pipeline(list(commands), time.monotonic() + timeout)
    finally:
        connection.close()
    texts = []
    for command, reply in zip(commands, replies, strict=True):
        if isinstance(reply, hiredis.ReplyError):
            raise RedkeepError(f"{' '.join(command)} on {target.where} failed: {reply}")
        texts.append(reply.decode(errors="replace") if isinstance(reply, bytes) else reply)
    return texts


def is_cluster(target: Target) -> bool:
    (info,) = ask(target, ("INFO", "cluster"))
    return parse_info(info).get("cluster", {}).get("cluster_enabled") == "1"


def read_slot_map(seeds: list[Target]) -> tuple[SlotMap, Target]:
    """The slot map as the first seed that answers sees it, and that seed."""
    errors = []
    for seed in seeds:
        try:
            (text,) = ask(seed, ("CLUSTER", "NODES"))
            return parse_slot_map(text), seed
        except RedkeepError as error:
            errors.append(error.message)
    raise RedkeepError("no cluster node answered CLUSTER NODES: " + "; ".join(errors))


def node_target(seed: Target, node: ClusterNode) -> Target:
    """How to reach a node the seed announced (its credentials and TLS, discover.peer); the
    seed itself as it was reached (a node may not know its own address yet)."""
    if node.myself:
        return seed
    return peer(seed, node.hostname or node.host, node.port)


def wait_settled(seeds: list[Target], timeout: float) -> tuple[SlotMap, Target]:
    """A settled slot map (every primary answering), polled until `timeout`; else raise with
    why it is not."""
    deadline = time.monotonic() + timeout
    while True:
        why = ""
        try:
            slot_map, seed = read_slot_map(seeds)
            why = slot_map.unsettled() or _unreachable(seed, slot_map)
            if not why:
                return slot_map, seed
        except RedkeepError as error:
            why = error.message
        if time.monotonic() >= deadline:
            raise RedkeepError(f"the cluster did not settle within {timeout:g} s: {why}")
        time.sleep(0.2)


def _unreachable(seed: Target, slot_map: SlotMap) -> str:
    return migrating_anywhere(seed, slot_map)


def migrating_anywhere(seed: Target, slot_map: SlotMap) -> str:
    """Why a capture must not start or be kept: a primary that does not answer, or one that is
    migrating or importing a slot. Each primary is asked itself: a node shows its own
    `[slot->-id]` only on its own CLUSTER NODES line, so the seed cannot see another shard's
    migration (an attack review stored such a backup as complete)."""
    for shard in slot_map.shards:
        try:
            (text,) = ask(node_target(seed, shard.primary), ("CLUSTER", "NODES"), timeout=2.0)
        except RedkeepError as error:
            return f"the primary {address(shard.primary)} does not answer ({error.message})"
        own = [line for line in text.splitlines() if "myself" in "".join(line.split()[2:3])]
        if own and "[" in own[0]:
            return f"slots of {address(shard.primary)} are being migrated"
    return ""
