"""Who may connect and what they may send: networks, connection limits, rates, commands.

A `Policy` is immutable and built from the proxy settings; SIGHUP builds a new one and swaps
it in. `Admission` holds the per-address state (open connections, new-connection buckets) and
outlives reloads, so a reload neither forgets nor resets who is connected.
"""

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(host: str) -> Address:
    """The address a peer connected from; an IPv4-mapped IPv6 address becomes IPv4.

    `ip_address('::ffff:10.0.0.1') in ip_network('10.0.0.0/8')` is False, so a dual-stack
    listener would otherwise slip past an IPv4 allowlist (or deny list).
    """
    address = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings as networks; a mapped IPv6 network is matched as its IPv4 part."""
    result = []
    for value in values:
        network = ipaddress.ip_network(value, strict=False)
        if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
            prefix = max(network.prefixlen - 96, 0)
            network = ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{prefix}")
        result.append(network)
    return tuple(result)


class TokenBucket:
    """`rate` tokens per second, at most `rate` (one second's worth) saved up."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.stamp = now

    def take(self, now: float, count: int = 1) -> bool:
        """Take `count` tokens if there are that many; take nothing otherwise."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.stamp = now
        tokens = min(tokens, self.capacity)
        if tokens >= count:
            self.tokens = tokens - count
            return True
        self.tokens = tokens
        return False


def parse_commands(names: Iterable[str]) -> tuple[frozenset[bytes], dict[bytes, frozenset[bytes]]]:
    """'FLUSHALL' and 'SCRIPT KILL' as ({b'flushall'}, {b'script': {b'kill'}}), lower case.

    'CONFIG|SET' (how ACL rules and COMMAND INFO spell a subcommand) means 'CONFIG SET': Redis
    never runs a command named 'config|set', so a deny entry spelt that way must not be inert.
    """
    whole: set[bytes] = set()
    subcommands: dict[bytes, set[bytes]] = {}
    for entry in names:
        command, _, sub = entry.strip().lower().replace("|", " ").partition(" ")
        if sub:
            subcommands.setdefault(command.encode(), set()).add(sub.strip().encode())
        else:
            whole.add(command.encode())
    return frozenset(whole), {name: frozenset(subs) for name, subs in subcommands.items()}


@dataclass(frozen=True)
class Policy:
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    max_conns: int = 10000
    max_conns_per_ip: int = 1000
    conn_rate: float | None = None
    cmd_rate: float | None = None
    denied_commands: frozenset[bytes] = frozenset()
    denied_subcommands: dict[bytes, frozenset[bytes]] = field(default_factory=dict)
    unauthenticated_limits: bool = True
    client_idle_timeout: float = 0.0
    upstream_idle_timeout: float = 0.0
    log_denied_commands: bool = True

    @property
    def scans_requests(self) -> bool:
        """Whether any request-level feature is on; if not, bytes pass through unparsed."""
        return bool(
            self.cmd_rate
            or self.denied_commands
            or self.denied_subcommands
            or self.unauthenticated_limits
            or self.client_idle_timeout
            or self.upstream_idle_timeout
        )

    def refusal(self, address: Address) -> str | None:
        """Why `address` may not connect ('denied', 'not_allowed'), or None."""
        if any(address in network for network in self.deny):
            return "denied"
        if self.allow and not any(address in network for network in self.allow):
            return "not_allowed"
        return None


class Admission:
    """Open connections and new-connection rates per address, across policy reloads."""

    PRUNE_AT = 10_000  # idle buckets are dropped past this many addresses

    def __init__(self) -> None:
        self.active = 0
        self.per_address: dict[Address, int] = {}
        self.buckets: dict[Address, TokenBucket] = {}
        self._verdicts: dict[str, tuple[Address, str | None]] = {}
        self._verdicts_policy: Policy | None = None

    def check(self, policy: Policy, host: str, now: float) -> tuple[Address | None, str | None]:
        """(address, None) if a connection from `host` may open now, else (address, reason).

        Reasons: denied, not_allowed, max_conns, max_conns_per_ip, conn_rate, bad_address.
        Network verdicts are cached per peer string (parsing and matching cost microseconds).
        """
        if self._verdicts_policy is not policy or len(self._verdicts) > self.PRUNE_AT:
            self._verdicts = {}
            self._verdicts_policy = policy
        cached = self._verdicts.get(host)
        if cached is None:
            try:
                address = client_address(host)
            except ValueError:
                return None, "bad_address"
            cached = self._verdicts[host] = (address, policy.refusal(address))
        address, reason = cached
        if reason:
            return address, reason
        if self.active >= policy.max_conns:
            return address, "max_conns"
        if self.per_address.get(address, 0) >= policy.max_conns_per_ip:
            return address, "max_conns_per_ip"
        if policy.conn_rate:
            bucket = self.buckets.get(address)
            if bucket is None or bucket.rate != policy.conn_rate:
                if len(self.buckets) > self.PRUNE_AT:
                    self._prune(now)
                bucket = self.buckets[address] = TokenBucket(policy.conn_rate, now)
            if not bucket.take(now):
                return address, "conn_rate"
        return address, None

    def opened(self, address: Address) -> None:
        self.active += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1

    def closed(self, address: Address) -> None:
        self.active -= 1
        left = self.per_address.get(address, 1) - 1
        if left:
            self.per_address[address] = left
        else:
            self.per_address.pop(address, None)

    def _prune(self, now: float) -> None:
        # A bucket that has refilled completely holds no information: drop it.
        self.buckets = {
            address: bucket
            for address, bucket in self.buckets.items()
            if bucket.tokens + (now - bucket.stamp) * bucket.rate < bucket.capacity
        }
