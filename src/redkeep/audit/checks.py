"""The audit's checks: one small function each, registered with its id, title and needs.

A check reads `Facts` and returns `Passed` or `Finding`; a fact it cannot read raises
`Unavailable`, which the runner reports as "could not verify" with the reason. No check sends a
command: everything was read before (see facts.py). Ids and groups follow the checklist in the
project's security research (NET, AUTH, TLS, CMD, VER, PERS, LOG), plus MEM, and HA for
replication, Sentinel and Cluster (hachecks.py, registered at the end of this module).

A check applies to data nodes, to Sentinels or to both (`on`): a Sentinel holds no data and
answers no CONFIG GET, so most checks are "not applicable" there rather than "could not
verify". A check may also raise `NotApplicable` itself (a cross-node check on a lone server).
"""

import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from redkeep.audit import aofreplay, cve
from redkeep.audit.facts import Facts, Unavailable, need
from redkeep.pki.inspect import subject_alt_names
from redkeep.redis.acl import AclUser

SEVERITIES = ("critical", "high", "medium", "low", "info")


@dataclass(frozen=True)
class Passed:
    evidence: str


@dataclass(frozen=True)
class Finding:
    severity: str
    evidence: str
    remediation: str


DATA = frozenset({"data"})  # servers that hold the data: primaries, replicas, standalone
SENTINEL = frozenset({"sentinel"})
ANY = DATA | SENTINEL


def kind(facts: Facts) -> str:
    """ "sentinel" or "data": what the server said it is."""
    return "sentinel" if facts.is_sentinel else "data"


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    needs: str
    run: Callable[[Facts], Passed | Finding]
    on: frozenset[str] = DATA

    @property
    def group(self) -> str:
        return self.id.split("-")[0]

    def applies(self, facts: Facts) -> bool:
        return kind(facts) in self.on


CHECKS: list[Check] = []


def check(check_id: str, title: str, needs: str, on: frozenset[str] = DATA) -> Callable:
    def register(function: Callable[[Facts], Passed | Finding]) -> Callable:
        CHECKS.append(Check(check_id, title, needs, function, on))
        return function

    return register


# --- helpers ---------------------------------------------------------------------------------

LOOPBACK_WORDS = {"localhost"}


def bind_addresses(facts: Facts) -> list[str]:
    """The addresses Redis listens on: CONFIG GET bind, else INFO's listener lines (7.2+)."""
    try:
        value = facts.setting("bind")
        if value is not None:
            return [address.lstrip("-") for address in value.split()] or ["*"]
    except Unavailable:
        pass
    info = need(facts.info).get("server", {})
    listeners = [value for name, value in info.items() if name.startswith("listener")]
    if not listeners and facts.is_sentinel:
        raise Unavailable(
            "a Sentinel answers no CONFIG GET, and lists its listeners in INFO only from Redis "
            "7.2 on: see `bind` in sentinel.conf"
        )
    if not listeners:
        raise Unavailable("neither CONFIG GET bind nor INFO listener lines are available")
    found = []
    for listener in listeners:  # "name=tcp,bind=127.0.0.1,bind=-::1,port=6379"
        text = (
            listener
            if isinstance(listener, str)
            else ",".join(f"{key}={value}" for key, value in listener.items())
        )
        pairs = [item.partition("=") for item in text.split(",")]
        if ("name", "=", "unix") in pairs:
            continue  # a UNIX socket is not a network address
        found += [value.lstrip("-") for key, _, value in pairs if key == "bind" and value]
    return found or ["*"]


def is_loopback(address: str) -> bool:
    if address in LOOPBACK_WORDS:
        return True
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


def exposed(facts: Facts) -> bool:
    """Whether Redis listens beyond loopback (unknown counts as exposed)."""
    try:
        return not all(is_loopback(address) for address in bind_addresses(facts))
    except Unavailable:
        return True


def where(facts: Facts) -> str:
    return "reachable beyond loopback" if exposed(facts) else "listening on loopback only"


def user_allows_all(user: AclUser) -> bool:
    commands = f" {user.commands} "
    return "+@all" in commands and "-@" not in commands or "allcommands" in user.flags


def dryrun_users(facts: Facts, probe: str) -> list[str]:
    """Enabled users ACL DRYRUN lets run `probe`."""
    results = need(facts.dryrun)
    return sorted(user for (user, name), allowed in results.items() if name == probe and allowed)


def admins(facts: Facts) -> list[str]:
    """Users that may change ACLs: administrators by what they can do."""
    return dryrun_users(facts, "acl setuser")


# Names that say "operator": such users are expected to hold every command (AUTH-06 counts
# them); any other user that can is an application user with too much power (AUTH-05).
ADMIN_NAMES = ("admin", "administrator", "root", "operator", "ops", "sre", "redkeep-admin")


def named_admin(user: str) -> bool:
    return user.lower() in ADMIN_NAMES or user.lower().startswith(("admin", "ops-", "sre-"))


@cache
def weak_password_hashes() -> dict[str, str]:
    text = resources.files("redkeep.audit").joinpath("weak-passwords.txt").read_text()
    words = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {hashlib.sha256(word.encode()).hexdigest(): word for word in ["", *words]}


def yes(value: str | None) -> bool:
    return (value or "").lower() in ("yes", "1", "true")


# --- NET -------------------------------------------------------------------------------------


@check("NET-01", "Clients without credentials get in", "a connection without credentials")
def unauthenticated_access(facts: Facts) -> Passed | Finding:
    reply = need(facts.unauthenticated)
    if reply == "PONG":
        try:  # protected mode answers remote clients DENIED while the default user is nopass
            shielded = facts.setting("protected-mode") == "yes" and facts.version >= (7, 0)
        except Unavailable:
            shielded = False
        return Finding(
            "critical" if exposed(facts) and not shielded else "high",
            f"PING without AUTH answered PONG ({where(facts)})",
            "user default off  (in the ACL file; give every client its own ACL user)",
        )
    return Passed(f"PING without AUTH answered: {reply[:60]}")


@check("NET-02", "Listens on every interface", "CONFIG GET bind or INFO listeners (7.2+)", on=ANY)
def all_interfaces(facts: Facts) -> Passed | Finding:
    addresses = bind_addresses(facts)
    wildcard = {"*", "0.0.0.0", "::", "::*"}  # noqa: S104 - what the check looks for
    if wildcard & set(addresses):
        return Finding(
            "high",
            f"bind {' '.join(addresses)}",
            "bind 127.0.0.1 -::1  (add the private address clients use; put a proxy in front)",
        )
    return Passed(f"bind {' '.join(addresses)}")


@check("NET-03", "Protected mode off with a password-less default user", "CONFIG GET, ACL GETUSER")
def protected_mode(facts: Facts) -> Passed | Finding:
    mode = facts.setting("protected-mode")
    default = need(facts.users).get("default")
    open_default = default is not None and {"on", "nopass"} <= default.flags
    if mode == "no" and open_default:
        return Finding(
            "critical",
            "protected-mode no and the default user is on with nopass",
            "protected-mode yes  (and: user default off)",
        )
    return Passed(f"protected-mode {mode}; default user {'open' if open_default else 'closed'}")


@check("NET-04", "Started without a configuration file", "INFO server")
def no_config_file(facts: Facts) -> Passed | Finding:
    config_file = facts.info_field("config_file", "server")
    if config_file is None:
        raise Unavailable("INFO does not report config_file")
    if not config_file:
        return Finding(
            "medium",
            "config_file is empty: compiled-in defaults (the Docker image turns protected "
            "mode off)",
            "start redis-server with a hardened redis.conf (`redkeep init` writes one)",
        )
    return Passed(f"config_file {config_file}")


@check("NET-05", "UNIX socket open to others", "CONFIG GET unixsocket unixsocketperm")
def unix_socket(facts: Facts) -> Passed | Finding:
    path = facts.setting("unixsocket")
    if not path:
        return Passed("no UNIX socket")
    perm = facts.setting("unixsocketperm") or "0"  # octal, as in redis.conf
    mode = int(perm, 8) if perm.isdigit() else 0
    if mode & 0o007 or mode == 0:
        return Finding(
            "medium",
            f"unixsocket {path}, unixsocketperm {oct(mode)[2:] if mode else 'unset'}",
            "unixsocketperm 700  (770 for a group of clients; socket in a directory only Redis "
            "owns)",
        )
    return Passed(f"unixsocket {path}, unixsocketperm {oct(mode)[2:]}")


@check("NET-06", "Clients from unexpected places", "CLIENT LIST", on=ANY)
def client_sources(facts: Facts) -> Passed | Finding:
    clients = need(facts.clients)
    # UNIX socket clients (addr=/path:0) are local by definition.
    network = [client for client in clients if not client.get("addr", "/").startswith("/")]
    hosts = {client["addr"]: client["addr"].rsplit(":", 1)[0].strip("[]") for client in network}
    remote_default = [
        client["addr"]
        for client in network
        if client.get("user") == "default" and not is_loopback(hosts[client["addr"]])
    ]
    outside = sorted({host for host in hosts.values() if not _private(host)})
    if remote_default or outside:
        return Finding(
            "medium",
            f"public addresses {', '.join(outside) or '-'}; remote clients as default: "
            f"{', '.join(remote_default) or '-'}",
            "allow only the application network (firewall, or `redkeep proxy --allow CIDR`)",
        )
    return Passed(f"{len(clients)} clients, all from private or loopback addresses")


def _private(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return True  # a UNIX socket client
    return parsed.is_private or parsed.is_loopback


@check("NET-07", "Idle connections are never closed", "CONFIG GET timeout")
def idle_timeout(facts: Facts) -> Passed | Finding:
    value = facts.setting("timeout")
    if value in ("0", None):
        return Finding("low", "timeout 0", "timeout 300  (clients reconnect; pub/sub is spared)")
    return Passed(f"timeout {value}")


@check("NET-08", "Client buffers are unbounded", "CONFIG GET client-output-buffer-limit")
def client_buffers(facts: Facts) -> Passed | Finding:
    limits = facts.setting("client-output-buffer-limit") or ""
    normal = limits.split("normal ")[1].split()[:3] if "normal " in limits else []
    clients_memory = facts.setting("maxmemory-clients")
    if normal == ["0", "0", "0"] and clients_memory in ("0", None):
        return Finding(
            "low",
            "normal clients have no output buffer limit and maxmemory-clients is 0",
            "maxmemory-clients 5%  (Redis 7.0+; and patch CVE-2025-21605)",
        )
    return Passed(f"client-output-buffer-limit {limits}; maxmemory-clients {clients_memory}")


# --- MEM -------------------------------------------------------------------------------------


@check(
    "MEM-01",
    "One client can make Redis evict the data",
    "CONFIG GET maxmemory maxmemory-policy maxmemory-clients client-output-buffer-limit",
)
def clients_evict_data(facts: Facts) -> Passed | Finding:
    """Client buffers count against maxmemory: without a bound on them, a client that never
    reads its replies makes an evicting policy throw away everyone's keys."""
    maxmemory = int(facts.setting("maxmemory") or 0)
    policy = facts.setting("maxmemory-policy") or "noeviction"
    if not maxmemory or policy == "noeviction":
        return Passed(f"maxmemory {_mib(maxmemory)}, maxmemory-policy {policy}: nothing is evicted")
    setting = facts.setting("maxmemory-clients")  # None before Redis 7.0
    together = _clients_limit(setting or "0", maxmemory)
    if 0 < together < maxmemory:
        budget = maxmemory - together
        bounded = (
            f"maxmemory-clients {setting}: all clients together get at most {_mib(together)} "
            f"of maxmemory {_mib(maxmemory)}, which leaves data {_mib(budget)}"
        )
        data = _data_memory(facts)
        if data is not None and data > budget:
            return Finding(
                "medium",
                f"{bounded}, and data already uses {data / 2**20:.1f} MiB: clients that read "
                f"slowly make {policy} evict keys before they are disconnected",
                f"maxmemory {-(-(data * 5 // 4 + together) // 2**20)}mb  (data plus a quarter, "
                "plus the clients' share; or less data: the RedisDataNearBudget alert warns first)",
            )
        return Passed(bounded + (f" (uses {data / 2**20:.1f} MiB)" if data is not None else ""))
    limits = (facts.setting("client-output-buffer-limit") or "").split()
    hard = int(limits[limits.index("normal") + 1]) if "normal" in limits else 0
    bound = f"maxmemory-clients {setting}" if setting is not None else "no maxmemory-clients"
    remediation = (
        "maxmemory-clients 25%  (disconnects the biggest client instead; at least twice the "
        "largest value)"
        if setting is not None
        else "client-output-buffer-limit normal 32mb 0 0  (and Redis 7.0+ for maxmemory-clients)"
    )
    if 0 < hard < maxmemory:
        return Finding(
            "medium",
            f"one client's unread replies stop at {_mib(hard)}, but {bound} bounds all clients "
            f"together: {-(-maxmemory // hard)} slow readers fill maxmemory {_mib(maxmemory)} and "
            f"{policy} evicts keys",
            remediation,
        )
    return Finding(
        "high",
        f"a client that never reads its replies grows without bound ({bound}, "
        f"client-output-buffer-limit normal {_mib(hard) if hard else 0}); its buffers count "
        f"against maxmemory {_mib(maxmemory)} and {policy} evicts keys to make room",
        remediation,
    )


def _data_memory(facts: Facts) -> int | None:
    """What data uses: used_memory without the normal clients' buffers (None: unknown)."""
    try:
        used = facts.info_field("used_memory", "memory")
        clients = facts.info_field("mem_clients_normal", "memory") or "0"
    except Unavailable:
        return None
    return int(used) - int(clients) if used is not None else None


def _clients_limit(setting: str, maxmemory: int) -> int:
    """maxmemory-clients in bytes (CONFIG GET gives bytes, or N% of maxmemory); 0: none."""
    if setting.endswith("%"):
        return maxmemory * int(setting[:-1]) // 100
    return int(setting)


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB" if size else "0"


# --- AUTH ------------------------------------------------------------------------------------


POWERS = ("config set", "flushall", "module", "debug", "acl setuser")
# Closed to logins (off, no password, no nopass), open to the AOF loader (see PERS-02).
SAFE_DEFAULT_USER = "user default off resetpass ~* &* +@all"


@check("AUTH-01", "Default user enabled with every command", "ACL GETUSER default")
def default_user(facts: Facts) -> Passed | Finding:
    default = need(facts.users).get("default")
    if default is None:
        return Passed("no default user")
    try:
        dryrun = need(facts.dryrun)
        powers = [probe for probe in POWERS if dryrun.get(("default", probe))]
    except Unavailable:
        powers = []
    if "on" in default.flags and (user_allows_all(default) or powers):
        return Finding(
            "high",
            f"user default {' '.join(sorted(default.flags))} {default.commands}"
            + (f" (may {', '.join(p.upper() for p in powers)})" if powers else ""),
            SAFE_DEFAULT_USER + "  (keep its command rules: see PERS-02)",
        )
    if "on" in default.flags:
        return Passed(f"user default on {default.commands}")
    if not default.passwords and "nopass" not in default.flags:
        # Its command rules do not matter: nobody can log in as it, even once switched on.
        return Passed("user default off, without a password: nobody can log in as it")
    return Passed("user default off")


@check("AUTH-02", "Users without a password", "ACL GETUSER for every user", on=ANY)
def nopass_users(facts: Facts) -> Passed | Finding:
    names = sorted(n for n, u in facts.enabled_users().items() if "nopass" in u.flags)
    if names:
        return Finding(
            "high",
            f"enabled users with nopass: {', '.join(names)}",
            f"ACL SETUSER {names[0]} resetpass >$(redkeep-generated secret)  (or `off`)",
        )
    return Passed("every enabled user has a password")


@check("AUTH-03", "Weak or well-known passwords", "ACL GETUSER (password hashes)", on=ANY)
def weak_passwords(facts: Facts) -> Passed | Finding:
    known = weak_password_hashes()
    weak = sorted(
        name
        for name, user in need(facts.users).items()
        if any(digest in known for digest in user.passwords)
    )
    checked = (
        f"each user's SHA-256 password hashes against {len(known)} common and default "
        "passwords (offline, no login attempt; a password's length cannot be seen)"
    )
    if weak:
        return Finding(
            "high",
            f"users with a common or default password: {', '.join(weak)}; checked {checked}",
            f"ACL SETUSER {weak[0]} resetpass >$(openssl rand -hex 32)  (`redkeep users rotate`)",
        )
    return Passed(f"no match; checked {checked}")


@check("AUTH-04", "requirepass next to an ACL file, or stale", "CONFIG GET aclfile requirepass")
def stale_requirepass(facts: Facts) -> Passed | Finding:
    requirepass = facts.setting("requirepass") or ""
    aclfile = facts.setting("aclfile") or ""
    if not requirepass:
        return Passed("requirepass is not set")
    digest = hashlib.sha256(requirepass.encode()).hexdigest()
    default = need(facts.users).get("default") or {"passwords": []}
    if aclfile or digest not in default.passwords:
        return Finding(
            "medium",
            "requirepass is set but "
            + (
                "an ACL file is in use (Redis ignores it)"
                if aclfile
                else "no longer matches the default user"
            ),
            "remove requirepass; manage the default user in the ACL file",
        )
    return Passed("requirepass matches the default user's password")


@check("AUTH-05", "Application users can run dangerous commands", "ACL DRYRUN (7.0+) or rules")
def over_privileged(facts: Facts) -> Passed | Finding:
    """Users not named as operators (admin*, root, ops ...) that may CONFIG SET, FLUSHALL,
    MODULE, DEBUG or ACL SETUSER."""
    risky: dict[str, list[str]] = {}
    for probe in POWERS:
        for user in dryrun_users(facts, probe):
            if not named_admin(user) and user != "default":  # default: AUTH-01's finding
                risky.setdefault(user, []).append(probe.upper())
    if risky:
        listed = "; ".join(f"{user}: {', '.join(probes)}" for user, probes in sorted(risky.items()))
        user = sorted(risky)[0]
        return Finding("high", listed, f"ACL SETUSER {user} -@dangerous -@admin")
    return Passed(
        "no user but the administrators may CONFIG SET, FLUSHALL, MODULE, DEBUG or ACL SETUSER"
    )


@check("AUTH-06", "Too many administrators", "ACL DRYRUN (7.0+) or rules", on=ANY)
def too_many_admins(facts: Facts) -> Passed | Finding:
    names = admins(facts)
    if len(names) > 2:
        return Finding(
            "medium",
            f"{len(names)} users may change ACLs: {', '.join(names)}",
            "keep one administrator and a break-glass user; ACL SETUSER <user> -@admin",
        )
    return Passed(f"administrators: {', '.join(names) or 'none enabled'}")


@check("AUTH-07", "Pub/sub open to every channel by default", "CONFIG GET acl-pubsub-default")
def pubsub_default(facts: Facts) -> Passed | Finding:
    value = facts.setting("acl-pubsub-default")
    if value is None:
        raise Unavailable("acl-pubsub-default does not exist before Redis 6.2")
    if value == "allchannels":
        return Finding("low", "acl-pubsub-default allchannels", "acl-pubsub-default resetchannels")
    return Passed(f"acl-pubsub-default {value}")


@check("AUTH-08", "A password rotation left half-done", "ACL GETUSER for every user", on=ANY)
def half_rotated(facts: Facts) -> Passed | Finding:
    names = sorted(n for n, u in facts.enabled_users().items() if len(u.passwords) > 1)
    if names:
        return Finding(
            "info",
            f"users with more than one password: {', '.join(names)}",
            f"redkeep users finish-rotation {names[0]}  (or ACL SETUSER {names[0]} <old-password)",
        )
    return Passed("every user has at most one password")


@check("AUTH-09", "Failed logins and denied commands", "ACL LOG", on=ANY)
def denied_activity(facts: Facts) -> Passed | Finding:
    try:
        switched_off = facts.setting("acllog-max-len") == "0"
    except Unavailable:
        switched_off = False  # the log itself may still be readable
    if switched_off:
        raise Unavailable("ACL LOG is switched off (see AUTH-10)")
    own = None if isinstance(facts.client_id, Unavailable) else f"id={facts.client_id} "
    # The audit's own refused commands (a user that may not look) are not the server's news.
    entries = [
        entry
        for entry in need(facts.acl_log)
        if own is None or not _t(entry.get("client-info", "")).startswith(own)
    ]
    auth = sum(
        int(_n(entry.get("count", 1))) for entry in entries if _t(entry.get("reason")) == "auth"
    )
    denied = sum(
        int(_n(entry.get("count", 1))) for entry in entries if _t(entry.get("reason")) != "auth"
    )
    if auth:
        sources = sorted(
            {_client_addr(entry) for entry in entries if _t(entry.get("reason")) == "auth"}
        )
        return Finding(
            "medium",
            f"{auth} failed logins in ACL LOG (from {', '.join(sources)}); "
            f"{denied} denied commands",
            "find the client (ACL LOG's client-info); rate-limit logins (`redkeep proxy`)",
        )
    if denied:
        return Finding(
            "info",
            f"{denied} denied commands or keys in ACL LOG, no failed logins",
            "ACL LOG shows which user and command: fix the client or its ACL rules",
        )
    return Passed("ACL LOG is empty")


def _t(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _n(value) -> int:
    try:
        return int(_t(value))
    except ValueError:
        return 1


def _client_addr(entry: dict) -> str:
    info = _t(entry.get("client-info", ""))
    for item in info.split():
        if item.startswith("addr="):
            return item[5:].rsplit(":", 1)[0]
    return "?"


@check("AUTH-10", "ACL LOG switched off", "CONFIG GET acllog-max-len")
def acl_log_off(facts: Facts) -> Passed | Finding:
    value = facts.setting("acllog-max-len")
    if value == "0":
        return Finding("medium", "acllog-max-len 0", "acllog-max-len 256")
    return Passed(f"acllog-max-len {value}")


@check("AUTH-11", "ACL users not kept in a file", "CONFIG GET aclfile")
def no_aclfile(facts: Facts) -> Passed | Finding:
    value = facts.setting("aclfile")
    if not value:
        return Finding(
            "low",
            "aclfile is not set: users live in redis.conf or only in memory",
            "aclfile /etc/redis/users.acl  (then ACL SAVE)",
        )
    return Passed(f"aclfile {value}")


# --- TLS -------------------------------------------------------------------------------------


def _tls_port(facts: Facts) -> str:
    value = facts.setting("tls-port")
    return value or "0"


@check("TLS-01", "No TLS", "CONFIG GET tls-port", on=ANY)
def no_tls(facts: Facts) -> Passed | Finding:
    if facts.is_sentinel:  # no CONFIG GET: what the audit's own connection was is the answer
        if facts.tls:
            return Passed(f"the Sentinel answered over TLS on port {facts.target.port}")
        return Finding(
            "high",
            f"the Sentinel answered without TLS on port {facts.target.port}: passwords and the "
            "primary's address cross the network in clear",
            "port 0, tls-port 26379, tls-replication yes (and the tls-*-file lines) in "
            "sentinel.conf",
        )
    if _tls_port(facts) == "0" and not facts.tls:
        return Finding(
            "high" if exposed(facts) else "medium",
            f"tls-port 0: passwords and data cross the network in clear ({where(facts)})",
            "tls-port 6380 with tls-cert-file, tls-key-file, tls-ca-cert-file "
            "(`redkeep certs init`)",
        )
    return Passed(f"tls-port {_tls_port(facts)}")


@check("TLS-02", "Plaintext port open next to TLS", "CONFIG GET port tls-port")
def plaintext_next_to_tls(facts: Facts) -> Passed | Finding:
    port, tls_port = facts.setting("port"), _tls_port(facts)
    if tls_port != "0" and port not in ("0", None):
        return Finding(
            "medium",
            f"port {port} and tls-port {tls_port}: clients can skip TLS",
            "port 0",
        )
    return Passed(f"port {port}, tls-port {tls_port}")


def _needs_tls(facts: Facts) -> None:
    if facts.is_sentinel and not facts.tls:
        raise Unavailable("the audit reached this Sentinel without TLS (see TLS-01)")
    if not facts.tls and _tls_port(facts) == "0":
        raise Unavailable("TLS is not enabled (see TLS-01)")


@check("TLS-03", "Client certificates not required", "CONFIG GET tls-auth-clients")
def client_certificates(facts: Facts) -> Passed | Finding:
    _needs_tls(facts)
    value = facts.setting("tls-auth-clients")
    if value in ("no", "optional"):
        return Finding(
            "low",
            f"tls-auth-clients {value}",
            "tls-auth-clients yes  (where clients can hold certificates)",
        )
    return Passed(f"tls-auth-clients {value}")


@check("TLS-04", "TLS 1.0 or 1.1 accepted", "CONFIG GET tls-protocols; a TLS 1.1 handshake", on=ANY)
def old_tls(facts: Facts) -> Passed | Finding:
    _needs_tls(facts)
    if facts.is_sentinel:  # no CONFIG GET: only the live answer
        need(facts.old_tls)
        configured = ""
    else:
        configured = facts.setting("tls-protocols") or ""
    legacy = [name for name in configured.split() if name.lower() in ("tlsv1", "tlsv1.1")]
    accepted, probe = "", ""
    if facts.tls:  # the live answer, next to the setting
        try:
            accepted = need(facts.old_tls)
            probe = "; a TLS 1.0/1.1 handshake was refused"
        except Unavailable as missing:
            probe = f"; {missing.reason}"
    if legacy or accepted:
        shown = f"tls-protocols {configured!r}" if legacy else ""
        if accepted:
            shown += f"{'; ' if shown else ''}a {accepted} handshake succeeded"
        return Finding("high", shown, 'tls-protocols "TLSv1.2 TLSv1.3"')
    return Passed(f"tls-protocols {configured or '(default: TLSv1.2 TLSv1.3)'}{probe}")


WEAK_CIPHERS = ("RC4", "3DES", "DES", "NULL", "eNULL", "aNULL", "EXPORT", "MEDIUM", "LOW", "MD5")


@check("TLS-05", "Weak ciphers or the client's cipher order", "CONFIG GET tls-ciphers ...")
def weak_ciphers(facts: Facts) -> Passed | Finding:
    _needs_tls(facts)
    ciphers = facts.setting("tls-ciphers") or ""
    prefer = facts.setting("tls-prefer-server-ciphers")
    tokens = [t for t in re.split(r"[:, ]", ciphers) if t and t[0] not in "!-"]
    parts = {part for token in tokens for part in re.split(r"[-+]", token.lstrip("+")) if part}
    weak = sorted(word for word in WEAK_CIPHERS if word in parts)
    weak += [t for t in tokens if t.upper() in ("@SECLEVEL=0", "@SECLEVEL=1")]
    weak += sorted({t for t in tokens if t.upper().startswith(("ADH", "AECDH"))})
    if weak:
        return Finding(
            "medium",
            f"tls-ciphers allows {', '.join(weak)}",
            "tls-ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:...",
        )
    if prefer == "no":
        return Finding("low", "tls-prefer-server-ciphers no", "tls-prefer-server-ciphers yes")
    return Passed(f"tls-ciphers {ciphers or '(OpenSSL default)'}; prefer server ciphers {prefer}")


@check("TLS-06", "Replication or cluster bus in clear", "CONFIG GET tls-replication; INFO")
def replication_in_clear(facts: Facts) -> Passed | Finding:
    role = facts.info_field("role", "replication")
    replicas = int(facts.info_field("connected_slaves", "replication") or 0)
    cluster = facts.info_field("cluster_enabled", "cluster") == "1"
    problems = []
    if (role == "slave" or replicas) and facts.setting("tls-replication") != "yes":
        problems.append("replication links without TLS (tls-replication no)")
    if cluster and facts.setting("tls-cluster") != "yes":
        problems.append("cluster bus without TLS (tls-cluster no)")
    if problems:
        return Finding("high", "; ".join(problems), "tls-replication yes  (and tls-cluster yes)")
    return Passed(f"role {role}, {replicas} replicas, cluster {'on' if cluster else 'off'}")


@check("TLS-07", "Certificate hygiene", "a TLS handshake (the served certificate)", on=ANY)
def certificate(facts: Facts) -> Passed | Finding:
    if not facts.tls:
        raise Unavailable("the audit connected without TLS, so it saw no certificate")
    cert = need(facts.certificate)
    now = dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    key = cert.public_key()
    problems: list[tuple[str, str]] = []
    if left.total_seconds() < 0:
        problems.append(("high", f"expired on {cert.not_valid_after_utc:%Y-%m-%d}"))
    elif left.days < 30:
        problems.append(("medium", f"expires in {left.days} days"))
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        problems.append(("medium", f"RSA key of {key.key_size} bits"))
    if isinstance(cert.signature_hash_algorithm, hashes.SHA1):
        problems.append(("medium", "signed with SHA-1"))
    if cert.issuer == cert.subject:
        problems.append(("low", "self-signed leaf certificate"))
    names = subject_alt_names(cert)
    host = facts.target.server_name  # the name the handshake asked for
    if host not in names and not any(n.startswith("*.") and host.endswith(n[1:]) for n in names):
        problems.append(("low", f"no subjectAltName for {host} (has {', '.join(names) or 'none'})"))
    if problems:
        worst = min(problems, key=lambda item: SEVERITIES.index(item[0]))[0]
        return Finding(
            worst,
            "; ".join(text for _, text in problems),
            "redkeep certs rotate  (CONFIG SET tls-cert-file F tls-key-file K re-reads the files)",
        )
    return Passed(f"valid for {left.days} more days, names {', '.join(names)}")


@check("TLS-08", "Key passphrase stored in the configuration", "CONFIG GET tls-key-file-pass")
def key_passphrase(facts: Facts) -> Passed | Finding:
    stored = [
        name
        for name in ("tls-key-file-pass", "tls-client-key-file-pass")
        if facts.setting(name)  # the value itself is never shown
    ]
    if stored:
        return Finding(
            "info",
            f"{', '.join(stored)} set (readable with CONFIG GET)",
            "keep redis.conf mode 0640 and CONFIG away from clients (-@admin)",
        )
    return Passed("no key passphrase in the configuration")


@check("TLS-09", "Obsolete DH parameters", "CONFIG GET tls-dh-params-file")
def dh_params(facts: Facts) -> Passed | Finding:
    _needs_tls(facts)
    value = facts.setting("tls-dh-params-file")
    if value:
        return Finding(
            "info",
            f"tls-dh-params-file {value} (OpenSSL 3 recommends against it)",
            "remove tls-dh-params-file",
        )
    return Passed("no DH parameters file")


# --- CMD -------------------------------------------------------------------------------------


def _enabled_setting(facts: Facts, name: str, what: str) -> Passed | Finding:
    value = facts.setting(name)
    if value is None:
        raise Unavailable(f"{name} does not exist before Redis 7.0")
    if value in ("yes", "local"):
        return Finding(
            "high" if value == "yes" else "medium",
            f"{name} {value}: {what}",
            f"{name} no",
        )
    return Passed(f"{name} {value}")


@check("CMD-01", "DEBUG enabled", "CONFIG GET enable-debug-command (7.0+)")
def debug_enabled(facts: Facts) -> Passed | Finding:
    return _enabled_setting(facts, "enable-debug-command", "DEBUG can crash or stall Redis")


@check("CMD-02", "MODULE LOAD enabled", "CONFIG GET enable-module-command (7.0+); MODULE LIST")
def module_enabled(facts: Facts) -> Passed | Finding:
    result = _enabled_setting(facts, "enable-module-command", "a client can load a shared library")
    try:
        modules = need(facts.modules)
    except Unavailable:
        modules = []
    if isinstance(result, Passed) and modules:
        return Passed(f"{result.evidence}; modules loaded at start: {', '.join(modules)}")
    return result


@check("CMD-03", "Protected configs writable", "CONFIG GET enable-protected-configs (7.0+)")
def protected_configs(facts: Facts) -> Passed | Finding:
    value = facts.setting("enable-protected-configs")
    if value is None:
        raise Unavailable("enable-protected-configs does not exist before Redis 7.0")
    if value in ("yes", "local"):
        return Finding(
            "high",
            f"enable-protected-configs {value}: CONFIG SET dir/dbfilename can write files",
            "enable-protected-configs no",
        )
    return Passed(f"enable-protected-configs {value}")


@check("CMD-04", "rename-command in use", "COMMAND INFO")
def renamed_commands(facts: Facts) -> Passed | Finding:
    renamed = need(facts.renamed)
    if renamed:
        return Finding(
            "info",
            f"renamed or removed: {', '.join(name.upper() for name in renamed)} (deprecated)",
            "remove rename-command; deny with ACL instead: ACL SETUSER <user> -@dangerous",
        )
    return Passed("CONFIG, FLUSHALL, FLUSHDB, DEBUG and KEYS have their names")


@check("CMD-05", "Lua reachable", "ACL DRYRUN EVAL/FCALL for every user (7.0+)")
def lua_reachable(facts: Facts) -> Passed | Finding:
    users = sorted(set(dryrun_users(facts, "eval")) | set(dryrun_users(facts, "fcall")))
    non_admin = [user for user in users if not named_admin(user)]
    if non_admin:
        return Finding(
            "info",
            f"users that may run Lua: {', '.join(users)} (Lua CVEs apply to them; see VER-01)",
            f"ACL SETUSER {non_admin[0]} -@scripting  (unless the application needs scripts)",
        )
    return Passed(f"only administrators may run Lua ({', '.join(users) or 'nobody'})")


@check("CMD-06", "RESTORE without payload checks", "CONFIG GET sanitize-dump-payload; DRYRUN")
def restore_unsanitized(facts: Facts) -> Passed | Finding:
    value = facts.setting("sanitize-dump-payload")
    users = [user for user in dryrun_users(facts, "restore") if not named_admin(user)]
    if value is None and users:  # Valkey 9.1 takes it in redis.conf but CONFIG GET hides it
        raise Unavailable(
            f"CONFIG GET sanitize-dump-payload returns nothing here, and {', '.join(users)} "
            "may RESTORE: set sanitize-dump-payload yes in the config file, or deny RESTORE"
        )
    if value == "no" and users:
        return Finding(
            "medium",
            f"sanitize-dump-payload no and {', '.join(users)} may RESTORE",
            "sanitize-dump-payload yes  (and ACL SETUSER <user> -@dangerous)",
        )
    return Passed(
        f"sanitize-dump-payload {value}; non-admins with RESTORE: {', '.join(users) or 'none'}"
    )


@check("CMD-07", "Writable replica", "INFO replication; CONFIG GET replica-read-only")
def writable_replica(facts: Facts) -> Passed | Finding:
    role = facts.info_field("role", "replication")
    if role == "slave" and facts.setting("replica-read-only") == "no":
        return Finding(
            "medium",
            "a replica that accepts writes (CVE-2026-23631 needs exactly that)",
            "replica-read-only yes",
        )
    return Passed(f"role {role}")


@check("CMD-08", "Lua sandbox escape (CVE-2022-0543)", 'EVAL "return type(package)" 0')
def lua_package(facts: Facts) -> Passed | Finding:
    value = need(facts.lua_package)
    if value == "table":
        return Finding(
            "critical",
            "Lua's package library is reachable: Debian/Ubuntu's CVE-2022-0543 (remote code "
            "execution)",
            "upgrade the distribution's redis-server package (DSA-5081 / USN-5316)",
        )
    return Passed(f'EVAL "return type(package)" returned {value}')


# --- VER -------------------------------------------------------------------------------------


def _release(facts: Facts) -> tuple[str, tuple[int, ...], str]:
    """The server's flavour, its own release and how to name it ("Valkey 8.1.8"): Valkey by
    valkey_version, never by the fixed redis_version:7.2.4 it also reports."""
    name = facts.server_name
    if name not in cve.flavours():
        raise Unavailable(f"{name}: its releases are not in the CVE data (Redis' and Valkey's are)")
    field_name = "valkey_version" if name == "valkey" else "redis_version"
    text = facts.info_field(field_name, "server") or ""
    version = tuple(int(part) for part in text.split(".") if part.isdigit())
    if len(version) < 3:
        raise Unavailable(f"INFO does not report {field_name}")
    return name, version, f"{name.title()} {'.'.join(map(str, version))}"


def _lua_users(facts: Facts) -> list[str] | None:
    """Users that may run Lua; None when the audit could not tell."""
    try:
        return sorted(set(dryrun_users(facts, "eval")) | set(dryrun_users(facts, "fcall")))
    except Unavailable:
        return None


@check(
    "VER-01",
    "Known vulnerabilities",
    "INFO server (redis_version, or valkey_version); the CVE data file",
    on=ANY,
)
def known_cves(facts: Facts) -> Passed | Finding:
    flavour, version, shown = _release(facts)
    data = cve.load()
    if not cve.known_branch(version, flavour):
        raise Unavailable(
            f"{shown}: its branch is not in the CVE data ({data['updated']}), which knows "
            f"{flavour.title()} {', '.join(cve.branches(flavour))}"
        )
    open_cves = cve.unfixed(version, flavour)
    if not open_cves:
        return Passed(f"{shown}: no known CVE open (CVE data of {data['updated']})")
    lua_users = _lua_users(facts)
    anonymous = facts.unauthenticated == "PONG"
    # Anonymous clients get in: every open CVE is within anyone's reach.
    reachable = [item for item in open_cves if anonymous or (item.get("lua") and lua_users)]
    # Critical: a remote code execution someone here can reach (Lua for a user, or no login).
    rce = [item for item in reachable if "remote code execution" in item["impact"]]
    severity = "critical" if rce else "high"
    unknown = " (who may run Lua is unknown: no ACL DRYRUN or rules)" if lua_users is None else ""
    ids = ", ".join(item["id"] for item in open_cves)
    target = cve.minimum_safe(version, flavour)
    return Finding(
        severity,
        f"{shown} has {len(open_cves)} known CVEs open: {ids}"
        + (f"; reachable here: {', '.join(item['id'] for item in reachable)}" if reachable else "")
        + unknown
        + f" (CVE data of {data['updated']}; a distribution may backport fixes: --accept VER-01)",
        f"upgrade to {flavour.title()} {target}"
        if target and version < cve.parse(target)
        else "no fixed release of this branch is known for these: move to a newer branch, or "
        "accept with a reason once your distribution has fixed them",
    )


@check("VER-02", "End-of-life branch", "INFO server (redis_version, or valkey_version)", on=ANY)
def end_of_life(facts: Facts) -> Passed | Finding:
    flavour, version, _ = _release(facts)
    branch = f"{flavour.title()} {version[0]}.{version[1]}"
    if cve.end_of_life(version, flavour):
        supported = ", ".join(
            b for b in cve.branches(flavour) if not cve.end_of_life(cve.parse(b), flavour)
        )
        return Finding(
            "high",
            f"{branch} gets no more security fixes",
            f"move to a supported branch ({supported} or newer)",
        )
    if not cve.known_branch(version, flavour):
        raise Unavailable(f"{branch} is not in the CVE data ({cve.load()['updated']})")
    return Passed(f"{branch} is supported")


# --- PERS, LOG -------------------------------------------------------------------------------


@check("PERS-01", "Data directory in a risky place", "CONFIG GET dir")
def data_dir(facts: Facts) -> Passed | Finding:
    value = facts.setting("dir") or ""
    risky = value in ("", ".", "./") or value.startswith(
        ("/tmp", "/var/tmp", "/var/www", "/dev/shm")  # noqa: S108 - places the check flags
    )
    if risky:
        return Finding(
            "low",
            f"dir {value or '(empty)'}",
            "dir /var/lib/redis  (owned by the redis user, 0700)",
        )
    return Passed(f"dir {value}")


@check(
    "PERS-02",
    "AOF replay drops transactions",
    "INFO server and persistence; ACL GETUSER default",
)
def aof_replay_drops_transactions(facts: Facts) -> Passed | Finding:
    """Redis 7.0-8.4 (and Valkey before 8.1.10) replay the AOF's MULTI/EXEC blocks under the
    default user's rules: a restricted default user loses them at every restart."""
    if facts.info_field("aof_enabled", "persistence") != "1":
        return Passed("appendonly no: nothing is replayed from an AOF")
    default = need(facts.users).get("default")
    if default is None:
        raise Unavailable("ACL GETUSER default returned nothing")
    rules = " ".join(part for part in (default.commands, default.keys) if part)
    refused = _default_refusals(default)
    if not refused:
        return Passed(f"appendonly yes; the default user's rules ({rules}) refuse no write")
    name, version = facts.server_name, facts.own_version
    shown = f"{name.title()} {'.'.join(map(str, version))}"
    verdict = aofreplay.status(name, version)
    if verdict in ("unaffected", "fixed"):
        return Passed(f"appendonly yes; {shown} replays the AOF without the default user's rules")
    if verdict == "unknown":
        raise Unavailable(
            f"{shown}: not known whether it replays the AOF's transactions under the default "
            f"user's rules ({rules}), which refuse {refused} (fixed in "
            f"{aofreplay.fixed_releases()}); safe either way: {SAFE_DEFAULT_USER}"
        )
    return Finding(
        "critical" if refused == "writes" else "medium",
        f"appendonly yes and {shown} replays the AOF's MULTI/EXEC blocks (transactions, Lua "
        f"scripts, XREADGROUP) under the default user's rules ({rules}), which refuse {refused}: "
        "those blocks are dropped at every restart (redis/redis#14541)",
        f"{SAFE_DEFAULT_USER}  (off and without a password nobody can log in as it; or upgrade "
        f"to {aofreplay.fixed_releases()})",
    )


def _default_refusals(user: AclUser) -> str:
    """What the default user's rules refuse of an AOF's writes: "writes" (commands or keys
    closed), "some commands" (+@all minus some), or "" (nothing)."""
    commands, keys = user.commands.split(), user.keys.split()
    all_keys = "allkeys" in user.flags or "~*" in keys or "*" in keys  # 6.2 lists bare "*"
    all_commands = "allcommands" in user.flags or commands[:1] == ["+@all"]
    if not (all_keys and all_commands):
        return "writes"
    return "" if "allcommands" in user.flags or commands == ["+@all"] else "some commands"


@check("LOG-01", "User data in crash logs", "CONFIG GET hide-user-data-from-log (7.4+)")
def user_data_in_logs(facts: Facts) -> Passed | Finding:
    value = facts.setting("hide-user-data-from-log")
    if value is None:
        raise Unavailable("hide-user-data-from-log does not exist before Redis 7.4")
    if value == "no":
        return Finding("low", "hide-user-data-from-log no", "hide-user-data-from-log yes")
    return Passed(f"hide-user-data-from-log {value}")


@check("LOG-02", "Logs go to standard output", "CONFIG GET logfile loglevel")
def log_destination(facts: Facts) -> Passed | Finding:
    value = facts.setting("logfile")
    level = facts.setting("loglevel")
    if not value:
        return Finding(
            "info",
            f"logfile is empty: logs go to stdout (loglevel {level})",
            "logfile /var/log/redis/redis-server.log  (or ship stdout to your log system)",
        )
    return Passed(f"logfile {value}, loglevel {level}")


# The HA checks register after these (same list, same shape).
from redkeep.audit import hachecks  # noqa: E402, F401 - registers HA-01 ...
