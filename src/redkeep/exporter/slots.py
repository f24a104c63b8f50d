"""Cluster routing for the app checks: each key goes to the primary that serves its slot.

A cluster node answers a key of another node's slot with MOVED (redis_exporter's users' most
common bug with key checks). The map comes from CLUSTER NODES (the exporter user may run it
in a cluster bundle; CLUSTER SLOTS it may not), primaries only, failed ones left out.
Written here rather than imported: redis-py's `key_slot` would load redis-py into the exporter.
"""

import binascii
from dataclasses import dataclass

SLOTS = 16384
Address = tuple[str, int]


def key_slot(key: str) -> int:
    """The key's hash slot: CRC16 (XMODEM) of the key, or of its non-empty {hash tag}."""
    data = key.encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % SLOTS


def _address(field: str) -> Address | None:
    host, _, port = field.partition("@")[0].partition(",")[0].rpartition(":")
    return (host, int(port)) if host and port.isdigit() and int(port) else None


@dataclass(frozen=True)
class SlotMap:
    ranges: tuple[tuple[int, int, Address], ...]
    myself: Address | None = None  # the node that answered

    @classmethod
    def from_cluster_nodes(cls, reply: str) -> "SlotMap":
        ranges, myself = [], None
        for line in reply.splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            flags = set(parts[2].split(","))
            address = _address(parts[1])
            if "myself" in flags:
                myself = address
            if "master" not in flags or "fail" in flags or address is None:
                continue
            for entry in parts[8:]:
                if entry.startswith("["):  # [slot->-id] / [slot-<-id]: a migration in progress
                    continue
                first, _, last = entry.partition("-")
                ranges.append((int(first), int(last or first), address))
        return cls(tuple(sorted(ranges)), myself)

    def node_of(self, key: str) -> Address | None:
        slot = key_slot(key)
        return next((node for first, last, node in self.ranges if first <= slot <= last), None)

    def primaries(self) -> list[Address]:
        """Each primary once, in slot order: the nodes a key count scans."""
        return list(dict.fromkeys(node for _, _, node in self.ranges))
