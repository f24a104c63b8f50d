"""What Sentinel and the cluster think: redis_exporter's `redis_sentinel_*` families on a Sentinel
target, and on a cluster node its view of every other node.

A Sentinel's master names come from the INFO of round one (`master0:name=...`), so all of its
SENTINEL commands go in one round trip. Names and labels are redis_exporter's (its
exporter/sentinels.go): `master_name`, `master_address`; `master_status` for the status;
`message` (CKQUORUM's answer) for the quorum check.

A cluster node never flags itself failed, so `redis_up` and `redis_cluster_state` of the node
cannot show that the others gave up on it. `redkeep_cluster_node_failed{node}` is what this node
thinks of each node it knows (1 when it holds the FAIL flag, which the majority of primaries
agreed on); `max by (node)` over every scraped node is the cluster's view of that node.
"""

from typing import Any

import hiredis

from redkeep.exporter.collectors import PREFIX, Collector, State, text
from redkeep.exporter.exposition import Family, gauge
from redkeep.exporter.info import number, split_pairs

INFO_GAUGES = (
    "sentinel_masters",
    "sentinel_tilt",
    "sentinel_running_scripts",
    "sentinel_scripts_queue_length",
    "sentinel_simulate_failure_flags",
)
# SENTINEL MASTERS fields -> redis_sentinel_master_* (scaled to the exporter's unit).
MASTER_FIELDS = {
    "quorum": ("setting_ckquorum", 1),
    "failover-timeout": ("setting_failover_timeout", 1),
    "parallel-syncs": ("setting_parallel_syncs", 1),
    "down-after-milliseconds": ("setting_down_after_milliseconds", 1),
    "config-epoch": ("config_epoch", 1),
    "last-ok-ping-reply": ("last_ok_ping_reply_seconds", 1000),
}
DOWN_FLAGS = ("s_down", "o_down")


def _masters(state: State) -> list[dict[str, str]]:
    """The `masterN:` lines of INFO, as dicts (name, status, address, slaves, sentinels)."""
    section = state.info.get("sentinel", {})
    return [
        split_pairs(value)
        for name, value in section.items()
        if name.startswith("master") and name[6:].isdigit() and isinstance(value, str)
    ]


def sentinel_commands(state: State) -> list[tuple[str, ...]]:
    if not state.sentinel:
        return []
    commands: list[tuple[str, ...]] = [("SENTINEL", "MASTERS")]
    for master in _masters(state):
        name = master.get("name", "")
        commands += [
            ("SENTINEL", "CKQUORUM", name),
            ("SENTINEL", "SENTINELS", name),
            ("SENTINEL", "REPLICAS", name),
        ]
    return commands


def _fields(reply: Any) -> dict[str, str]:
    """A flat [key, value, ...] reply (RESP2) as a dict of text."""
    flat = [text(item) for item in reply]
    return dict(zip(flat[::2], flat[1::2], strict=False))


def _ok_count(reply: Any) -> int:
    """Entries of SENTINEL SENTINELS/REPLICAS whose flags say neither s_down nor o_down."""
    if isinstance(reply, hiredis.ReplyError):
        return 0
    entries = [_fields(entry) for entry in reply]
    return sum(1 for entry in entries if not any(f in entry.get("flags", "") for f in DOWN_FLAGS))


def sentinel_parse(state: State, replies: list[Any]) -> list[Family]:
    families = []
    for name in INFO_GAUGES:
        value = number(state.field(name) or "")
        if value is not None:
            families.append(gauge(PREFIX + name, f"INFO {name}", value))
    status = Family(PREFIX + "sentinel_master_status", "gauge", "1 when the master is ok")
    slaves = Family(PREFIX + "sentinel_master_slaves", "gauge", "Replicas of the master")
    sentinels = Family(PREFIX + "sentinel_master_sentinels", "gauge", "Sentinels of the master")
    for master in _masters(state):
        labels = {
            "master_name": master.get("name", ""),
            "master_address": master.get("address", ""),
        }
        state_text = master.get("status", "")
        status.add(1 if state_text == "ok" else 0, labels | {"master_status": state_text})
        slaves.add(number(master.get("slaves", "")) or 0, labels)
        sentinels.add(number(master.get("sentinels", "")) or 0, labels)
    families += [status, slaves, sentinels]

    details = {} if isinstance(replies[0], hiredis.ReplyError) else {
        (fields := _fields(entry)).get("name", ""): fields for entry in replies[0]
    }  # fmt: skip
    ckquorum = Family(
        PREFIX + "sentinel_master_ckquorum_status", "gauge", "1 when SENTINEL CKQUORUM is OK"
    )
    ok_sentinels = Family(
        PREFIX + "sentinel_master_ok_sentinels", "gauge", "Sentinels not down (this one counted)"
    )
    ok_slaves = Family(PREFIX + "sentinel_master_ok_slaves", "gauge", "Replicas not down")
    settings: dict[str, Family] = {
        metric: Family(PREFIX + "sentinel_master_" + metric, "gauge", f"SENTINEL MASTERS {key}")
        for key, (metric, _) in MASTER_FIELDS.items()
    }
    position = 1
    for master in _masters(state):
        name = master.get("name", "")
        quorum, peers, replicas = replies[position : position + 3]
        position += 3
        fields = details.get(name)
        if fields is None:
            continue  # removed since INFO: nothing to say about it
        labels = {"master_name": name, "master_address": f"{fields['ip']}:{fields['port']}"}
        refused = isinstance(quorum, hiredis.ReplyError)
        ckquorum.add(0 if refused else 1, {"master_name": name, "message": text(quorum)})
        ok_sentinels.add(1 + _ok_count(peers), labels)  # this Sentinel answered: it is up
        ok_slaves.add(_ok_count(replicas), labels)
        for key, (metric, divisor) in MASTER_FIELDS.items():
            value = number(fields.get(key, ""))
            if value is not None:
                settings[metric].add(value / divisor if divisor != 1 else value, labels)
    return [*families, ckquorum, ok_sentinels, ok_slaves, *settings.values()]


# Errors are data here: CKQUORUM answers an error when the quorum cannot be reached.
SENTINEL = Collector("sentinel", sentinel_commands, sentinel_parse, errors_are_data=True)


def cluster_nodes_commands(state: State) -> list[tuple[str, ...]]:
    return [("CLUSTER", "NODES")] if state.field("cluster_enabled") == "1" else []


def parse_nodes_line(line: str) -> tuple[str, str, set[str]] | None:
    """(id, ip:port, flags) of a CLUSTER NODES line; None for a node without an address."""
    parts = line.split()
    if len(parts) < 8:
        return None
    address = parts[1].split("@")[0].split(",")[0]
    flags = set(parts[2].split(","))
    if "noaddr" in flags or address.startswith(":"):
        return None
    return parts[0], address, flags


def cluster_nodes_parse(state: State, replies: list[Any]) -> list[Family]:
    failed = Family(
        "redkeep_cluster_node_failed",
        "gauge",
        "This node's view of each node: 1 FAIL (the primaries agreed), 0 otherwise; "
        "max by (node) is the cluster's view",
    )
    suspected = Family(
        "redkeep_cluster_node_suspected",
        "gauge",
        "1 when this node cannot reach that node (PFAIL), before the cluster agrees",
    )
    role = Family(
        "redkeep_cluster_node_primary", "gauge", "1 when this node lists that node as a primary"
    )
    for line in text(replies[0]).splitlines():
        parsed = parse_nodes_line(line)
        if parsed is None:
            continue
        _, address, flags = parsed
        labels = {"node": address, "myself": "1" if "myself" in flags else "0"}
        failed.add(1 if "fail" in flags else 0, labels)
        suspected.add(1 if "fail?" in flags else 0, labels)
        role.add(1 if "master" in flags else 0, labels)
    return [failed, suspected, role]


CLUSTER_NODES = Collector("cluster_nodes", cluster_nodes_commands, cluster_nodes_parse)
