"""What the audit knows about a server: read once, with read-only commands, before any check.

Every fact is either its value or an `Unavailable` saying why it could not be read (NOPERM, a
command this version lacks, a managed service blocking CONFIG). `Facts` has one typed field
per fact; checks read them through `need` and the accessors, which raise `Unavailable`, so a
check that lacks a fact reports "could not verify" instead of passing, and a misspelt fact or
CONFIG parameter is an error instead.

Commands sent: INFO, CONFIG GET (one parameter at a time: 6.2 has no multi-parameter form),
ACL USERS/GETUSER/LOG/DRYRUN/WHOAMI, CLIENT LIST, COMMAND INFO, MODULE LIST, and CLUSTER NODES
on a Cluster node. A Sentinel (INFO `redis_mode:sentinel`) has no CONFIG, MODULE or data: it is
asked INFO, CLIENT LIST, the ACL commands and SENTINEL MASTERS / SENTINELS / CONFIG GET / MYID.
Active probes: a connection without credentials that sends PING, TLS handshakes (one offering
only TLS 1.0/1.1), a TLS handshake with a Cluster node's bus port, and
`EVAL "return type(package)" 0` when ACL DRYRUN says the auditing user may run it.

A node audited as part of a deployment also has `node` (its name and role there) and `peers`
(the facts of every node audited with it), which the cross-node checks compare.
"""

import hashlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import hiredis

from redkeep.audit.aclrules import allows
from redkeep.errors import RedkeepError
from redkeep.exporter.info import parse_info
from redkeep.redis.acl import AclUser, parse_getuser
from redkeep.redis.deployment import Node
from redkeep.redis.discover import ClusterNode, parse_cluster_nodes
from redkeep.redis.handshake import handshake
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target
from redkeep.redis.tls import client_context

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

T = TypeVar("T")

CONFIG_PARAMETERS = (
    "bind", "protected-mode", "port", "tls-port", "unixsocket", "unixsocketperm", "timeout",
    "client-output-buffer-limit", "maxmemory", "maxmemory-policy", "maxmemory-clients",
    "requirepass", "aclfile", "acllog-max-len", "acl-pubsub-default", "tls-auth-clients",
    "tls-protocols", "tls-ciphers",
    "tls-ciphersuites", "tls-prefer-server-ciphers", "tls-replication", "tls-cluster",
    "tls-key-file-pass", "tls-client-key-file-pass", "tls-dh-params-file",
    "enable-debug-command", "enable-module-command", "enable-protected-configs",
    "sanitize-dump-payload", "replica-read-only", "dir", "hide-user-data-from-log", "logfile",
    "loglevel", "masteruser", "masterauth", "min-replicas-to-write", "repl-diskless-sync",
    "repl-diskless-sync-delay", "cluster-require-full-coverage",
)  # fmt: skip
# Kept as its SHA-256 (what ACL GETUSER shows of a password), never as the password itself.
HASHED_PARAMETERS = ("masterauth",)
# What ACL DRYRUN tries for every enabled user (nothing is run).
DRYRUN_PROBES = {
    "config set": ("CONFIG", "SET", "dir", "/tmp"),  # noqa: S108 - never run, only dry-run
    "flushall": ("FLUSHALL",),
    "module": ("MODULE", "LIST"),
    "debug": ("DEBUG", "SLEEP", "0"),
    "acl setuser": ("ACL", "SETUSER", "redkeep-audit-probe"),
    "eval": ("EVAL", "return 1", "0"),
    "fcall": ("FCALL", "f", "0"),
    "restore": ("RESTORE", "k", "0", "x"),
}
# What ACL DRYRUN tries on a Sentinel: what reconfigures failover, or the users.
SENTINEL_PROBE_MASTER = "redkeep-audit-probe"
SENTINEL_DRYRUN_PROBES = {
    "sentinel set": ("SENTINEL", "SET", SENTINEL_PROBE_MASTER, "quorum", "1"),
    "sentinel failover": ("SENTINEL", "FAILOVER", SENTINEL_PROBE_MASTER),
    "sentinel remove": ("SENTINEL", "REMOVE", SENTINEL_PROBE_MASTER),
    "sentinel config set": ("SENTINEL", "CONFIG", "SET", "resolve-hostnames", "no"),
    "acl setuser": ("ACL", "SETUSER", "redkeep-audit-probe"),
}
RENAMABLE = ("config", "flushall", "flushdb", "debug", "keys")
LUA_PACKAGE_PROBE = ("EVAL", "return type(package)", "0")


class Unavailable(Exception):
    """A fact the audit could not read, and why."""

    @property
    def reason(self) -> str:
        return str(self)


class NotApplicable(Exception):
    """A check that does not apply to this server (a cross-node check on a lone server)."""

    @property
    def reason(self) -> str:
        return str(self)


def need(value: T | Unavailable) -> T:
    """A fact's value; raise its `Unavailable` when it could not be read."""
    if isinstance(value, Unavailable):
        raise value
    return value


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _reason(error: Exception) -> str:
    message = _text(error).split("\n")[0]
    if message.startswith("NOPERM"):
        return f"NOPERM: the auditing user may not run this ({message[7:80]})"
    return message[:120]


def _not_read(name: str) -> Any:
    return field(default_factory=lambda: Unavailable(f"{name} was not read"))


Sections = dict[str, dict[str, Any]]  # INFO: section -> field -> value
Config = dict[str, "str | None | Unavailable"]  # CONFIG GET: None when the server lacks it


@dataclass(slots=True)
class Facts:
    """What `gather` read from one server; each fact is its value or why it could not be read.

    Checks read a fact with `need(facts.clients)`, a setting with `facts.setting(name)` and an
    INFO field with `facts.info_field(name, section)`.
    """

    target: Target
    info: Sections | Unavailable = _not_read("info")
    config: Config | Unavailable = _not_read("config")
    users: dict[str, AclUser] | Unavailable = _not_read("users")
    dryrun: dict[tuple[str, str], bool] | Unavailable = _not_read("dryrun")  # (user, probe)
    clients: list[dict[str, str]] | Unavailable = _not_read("clients")
    renamed: list[str] | Unavailable = _not_read("renamed")
    modules: list[str] | Unavailable = _not_read("modules")
    acl_log: list[dict[str, Any]] | Unavailable = _not_read("acl_log")
    whoami: str | Unavailable = _not_read("whoami")
    client_id: int | Unavailable = _not_read("client_id")
    unauthenticated: str | Unavailable = _not_read("unauthenticated")  # the reply to PING
    lua_package: str | Unavailable = _not_read("lua_package")
    certificate: "Certificate | Unavailable" = _not_read("certificate")
    old_tls: str | Unavailable = _not_read("old_tls")  # "": a TLS 1.0/1.1 handshake refused
    cluster_nodes: list[ClusterNode] | Unavailable = _not_read("cluster_nodes")
    bus: str | Unavailable = _not_read("bus")  # how the cluster bus port answered (BUS_*)
    sentinel_masters: list[dict[str, str]] | Unavailable = _not_read("sentinel_masters")
    sentinel_peers: dict[str, list[dict[str, str]]] | Unavailable = _not_read("sentinel_peers")
    sentinel_config: dict[str, str] | Unavailable = _not_read("sentinel_config")
    sentinel_myid: str | Unavailable = _not_read("sentinel_myid")
    node: Node | None = None  # its name and role in the deployment audited
    peers: "tuple[Facts, ...] | None" = None  # every node audited with it (itself included)

    @property
    def where(self) -> str:
        """The target, password masked."""
        return self.target.display_url

    @property
    def tls(self) -> bool:
        return self.target.tls

    @property
    def is_sentinel(self) -> bool:
        """Whether the server said it is a Sentinel (False when INFO could not be read)."""
        if isinstance(self.info, Unavailable):
            return False
        server = self.info.get("server", {})
        return (server.get("redis_mode") or server.get("server_mode")) == "sentinel"

    @property
    def name(self) -> str:
        """The node's name in the deployment, else its address."""
        return self.node.name if self.node is not None else self.target.where

    def info_field(self, name: str, section: str | None = None) -> str | None:
        """An INFO field (None when this server does not report it)."""
        info = need(self.info)
        sections = [section] if section else list(info)
        for section_name in sections:
            if name in info.get(section_name, {}):
                return info[section_name][name]
        return None

    def setting(self, name: str) -> str | None:
        """A CONFIG GET value; None when this server does not know the parameter."""
        if name not in CONFIG_PARAMETERS:  # a typo must not pass for "could not verify"
            raise KeyError(f"{name} is not one of the CONFIG parameters the audit reads")
        return need(need(self.config).get(name, Unavailable(f"CONFIG GET {name} was not read")))

    @property
    def version(self) -> tuple[int, ...]:
        text = self.info_field("redis_version", "server") or "0"
        return tuple(int(part) for part in text.split(".") if part.isdigit())

    @property
    def server_name(self) -> str:
        return (self.info_field("server_name", "server") or "redis").lower()

    @property
    def own_version(self) -> tuple[int, ...]:
        """The server's own release: Valkey's from valkey_version (its redis_version is a
        fixed 7.2.4), Redis' from redis_version."""
        text = self.info_field("valkey_version", "server") if self.server_name == "valkey" else None
        text = text or self.info_field("redis_version", "server") or "0"
        return tuple(int(part) for part in text.split(".") if part.isdigit())

    def enabled_users(self) -> dict[str, AclUser]:
        return {name: user for name, user in need(self.users).items() if user.enabled}


def gather(target: Target, timeout: float = 10.0, lua_probe: bool = False) -> Facts:
    """Read everything the checks need. Raises RedkeepError when the server cannot be reached.

    `lua_probe`: also run CVE-2022-0543's harmless EVAL (it lands in the script cache and the
    command statistics, so it is asked for, not default).
    """
    facts = Facts(target)
    connection = RawConnection(target, timeout)
    try:
        connection.login()
        deadline = time.monotonic() + 4 * timeout
        (info,) = connection.pipeline([("INFO", "ALL")], deadline)
        facts.info = _parsed("info", info, lambda reply: parse_info(_text(reply)))
        if facts.is_sentinel:
            _read_sentinel(connection, facts, deadline)
            _read_acl(connection, facts, deadline, SENTINEL_DRYRUN_PROBES)
            facts.lua_package = Unavailable("a Sentinel runs no scripts")
        else:
            _read_server(connection, facts, deadline)
            _read_acl(connection, facts, deadline, DRYRUN_PROBES)
            not_sentinel = Unavailable("not a Sentinel")
            facts.sentinel_masters = facts.sentinel_peers = not_sentinel
            facts.sentinel_config = facts.sentinel_myid = not_sentinel
            if lua_probe:
                _probe_lua(connection, facts, deadline)
            else:
                facts.lua_package = Unavailable("the Lua probe was not asked for (--lua-probe)")
    finally:
        connection.close()
    facts.unauthenticated = _unauthenticated_reply(target, timeout)
    if target.tls:
        _probe_tls(target, facts, timeout)
    if isinstance(facts.cluster_nodes, Unavailable):
        facts.bus = Unavailable("not a Cluster node")
    else:
        facts.bus = _probe_bus(target, facts.cluster_nodes, timeout)
    return facts


def _parsed(name: str, reply: Any, parse: Callable[[Any], Any] = lambda value: value) -> Any:
    """A reply as its fact: parsed, or Unavailable for an error reply or an unexpected shape."""
    if isinstance(reply, hiredis.ReplyError):
        return Unavailable(_reason(reply))
    try:
        return parse(reply)
    except (ValueError, TypeError, IndexError) as error:
        return Unavailable(f"unexpected reply to {name}: {error}")


def _read_server(connection: RawConnection, facts: Facts, deadline: float) -> None:
    commands = [
        ("CLIENT", "LIST"),
        ("COMMAND", "INFO", *RENAMABLE),
        ("MODULE", "LIST"),
        *[("CONFIG", "GET", name) for name in CONFIG_PARAMETERS],
    ]
    clustered = (
        facts.info_field("cluster_enabled", "cluster") == "1" if _known(facts.info) else False
    )
    if clustered:
        commands.append(("CLUSTER", "NODES"))
    replies = connection.pipeline(commands, deadline)
    if clustered:
        facts.cluster_nodes = _parsed(
            "cluster_nodes", replies.pop(), lambda reply: parse_cluster_nodes(_text(reply))
        )
    else:
        facts.cluster_nodes = Unavailable("not a Cluster node")
    clients, command_info, modules, *config = replies
    facts.clients = _parsed("clients", clients, _parse_clients)
    facts.renamed = _parsed(
        "renamed",
        command_info,
        lambda reply: [name for name, entry in zip(RENAMABLE, reply, strict=True) if not entry],
    )
    facts.modules = _parsed(
        "modules", modules, lambda reply: [_module_name(entry) for entry in reply]
    )
    values: Config = {}
    for name, reply in zip(CONFIG_PARAMETERS, config, strict=True):
        if isinstance(reply, hiredis.ReplyError):
            values[name] = Unavailable(_reason(reply))
        elif not reply:
            values[name] = None  # this server does not know the parameter
        elif name in HASHED_PARAMETERS:
            value = _text(reply[1])
            values[name] = hashlib.sha256(value.encode()).hexdigest() if value else ""
        else:
            values[name] = _text(reply[1])
    facts.config = values


def _known(value: Any) -> bool:
    return not isinstance(value, Unavailable)


def _read_sentinel(connection: RawConnection, facts: Facts, deadline: float) -> None:
    """A Sentinel's own view: its primaries, their Sentinels, its settings, its id."""
    clients, masters, config, myid = connection.pipeline(
        [("CLIENT", "LIST"), ("SENTINEL", "MASTERS"), ("SENTINEL", "CONFIG", "GET", "*"),
         ("SENTINEL", "MYID")],
        deadline,
    )  # fmt: skip
    facts.clients = _parsed("clients", clients, _parse_clients)
    facts.sentinel_masters = _parsed(
        "sentinel_masters", masters, lambda reply: [_text_pairs(entry) for entry in reply]
    )
    facts.sentinel_config = _parsed("sentinel_config", config, _sentinel_settings)
    facts.sentinel_myid = _parsed("sentinel_myid", myid, _text)
    unread = Unavailable("a Sentinel holds no data and has no CONFIG, MODULE or scripts")
    facts.config = facts.renamed = facts.modules = facts.cluster_nodes = unread
    if isinstance(facts.sentinel_masters, Unavailable):
        facts.sentinel_peers = facts.sentinel_masters
        return
    names = [master["name"] for master in facts.sentinel_masters]
    replies = connection.pipeline([("SENTINEL", "SENTINELS", name) for name in names], deadline)
    peers: dict[str, list[dict[str, str]]] = {}
    for name, reply in zip(names, replies, strict=True):
        if isinstance(reply, hiredis.ReplyError):
            facts.sentinel_peers = Unavailable(_reason(reply))
            return
        peers[name] = [_text_pairs(entry) for entry in reply]
    facts.sentinel_peers = peers


def _sentinel_settings(reply: Any) -> dict[str, str]:
    """SENTINEL CONFIG GET *; sentinel-pass comes back in clear and is kept only as set or not."""
    settings = _text_pairs(reply) if isinstance(reply, list) else {}
    if "sentinel-pass" in settings:
        settings["sentinel-pass"] = "(set)" if settings["sentinel-pass"] else ""
    return settings


def _text_pairs(reply: list) -> dict[str, str]:
    return {_text(key): _text(value) for key, value in zip(reply[::2], reply[1::2], strict=False)}


def _parse_clients(reply: Any) -> list[dict[str, str]]:
    clients = []
    for line in _text(reply).splitlines():
        fields = dict(item.partition("=")[::2] for item in line.split(" ") if "=" in item)
        clients.append(fields)
    return clients


def _module_name(entry: list) -> str:
    fields = dict(zip((_text(key) for key in entry[::2]), entry[1::2], strict=False))
    return _text(fields.get("name", "?"))


def _read_acl(
    connection: RawConnection,
    facts: Facts,
    deadline: float,
    probes: dict[str, tuple[str, ...]],
) -> None:
    users_reply, log_reply, whoami, client_id = connection.pipeline(
        [("ACL", "USERS"), ("ACL", "LOG", "128"), ("ACL", "WHOAMI"), ("CLIENT", "ID")], deadline
    )
    facts.client_id = _parsed("client_id", client_id)
    facts.acl_log = _parsed("acl_log", log_reply, lambda reply: [_pairs(entry) for entry in reply])
    facts.whoami = _parsed("whoami", whoami, _text)
    if isinstance(users_reply, hiredis.ReplyError):
        facts.users = facts.dryrun = Unavailable(_reason(users_reply))
        return
    names = [_text(name) for name in users_reply]
    replies = connection.pipeline([("ACL", "GETUSER", name) for name in names], deadline)
    users: dict[str, AclUser] = {}
    for name, reply in zip(names, replies, strict=True):
        if isinstance(reply, hiredis.ReplyError):
            facts.users = facts.dryrun = Unavailable(_reason(reply))
            return
        user = parse_getuser(reply)
        if user is not None:  # None: the user was deleted in between
            users[name] = user
    facts.users = users
    facts.dryrun = _dryrun(connection, users, deadline, probes)


def _dryrun(
    connection: RawConnection,
    users: dict[str, AclUser],
    deadline: float,
    commands: dict[str, tuple[str, ...]],
) -> dict[tuple[str, str], bool] | Unavailable:
    """What ACL DRYRUN says each enabled user may run of `commands` (nothing is run)."""
    enabled = [name for name, user in users.items() if user.enabled]
    probes = [(user, probe) for user in enabled for probe in commands]
    replies = connection.pipeline(
        [("ACL", "DRYRUN", user, *commands[probe]) for user, probe in probes], deadline
    )
    dryrun: dict[tuple[str, str], bool] = {}
    for key, reply in zip(probes, replies, strict=True):
        if isinstance(reply, hiredis.ReplyError):
            message = _text(reply)
            if "unknown subcommand" in message.lower() or "unknown command" in message.lower():
                return _dryrun_from_rules(users, commands)  # Redis 6.2
            if message.startswith("NOPERM") and "dryrun" in message.lower():
                return Unavailable(_reason(reply))
            dryrun[key] = False  # the user may not run it (or the arguments are wrong)
        else:
            dryrun[key] = _text(reply) == "OK"
    return dryrun


def _dryrun_from_rules(
    users: dict[str, AclUser], commands: dict[str, tuple[str, ...]] = DRYRUN_PROBES
) -> dict[tuple[str, str], bool]:
    """What ACL DRYRUN would say of `commands`, worked out from each user's command rules."""
    return {
        (name, probe): allows(user.commands, set(user.flags), probe)
        for name, user in users.items()
        if user.enabled
        for probe in commands
    }


def _pairs(reply: list) -> dict[str, Any]:
    return dict(zip((_text(key) for key in reply[::2]), reply[1::2], strict=False))


def _probe_lua(connection: RawConnection, facts: Facts, deadline: float) -> None:
    """CVE-2022-0543's harmless probe: is Lua's `package` reachable (Debian builds)?"""
    try:
        allowed = need(facts.dryrun).get((need(facts.whoami), "eval"))
    except Unavailable:
        allowed = True  # cannot tell: try (a refusal is an ACL LOG entry, nothing more)
    if not allowed:
        facts.lua_package = Unavailable("the auditing user may not run EVAL")
        return
    (reply,) = connection.pipeline([LUA_PACKAGE_PROBE], deadline)
    if isinstance(reply, hiredis.ReplyError) and "nonexistent global variable 'package'" in str(
        reply
    ):
        facts.lua_package = "nil"  # Redis 7's sandbox refuses unknown globals
        return
    facts.lua_package = _parsed(
        "lua_package", reply, lambda value: _text(value) if value is not None else "nil"
    )


def _unauthenticated_reply(target: Target, timeout: float) -> Any:
    """The first line a connection without credentials gets back for PING."""
    anonymous = target.without_credentials(timeout)
    try:
        connection = RawConnection(anonymous, timeout)
    except RedkeepError as error:
        return Unavailable(f"a connection without credentials failed: {error.message}")
    try:
        (reply,) = connection.pipeline([("PING",)], time.monotonic() + timeout)
    except RedkeepError as error:
        return Unavailable(f"a connection without credentials failed: {error.message}")
    finally:
        connection.close()
    return _text(reply)


def _probe_tls(target: Target, facts: Facts, timeout: float) -> None:
    common = {
        "ca": target.tls_ca,
        "cert": target.tls_cert,
        "key": target.tls_key,
        "server_name": target.server_name,
        "timeout": timeout,
    }
    served = handshake(target.host, target.port, verify=False, **common)
    if served.ok and served.certificate is not None:
        facts.certificate = served.certificate
    else:
        facts.certificate = Unavailable(f"TLS handshake failed: {served.error}")
    old = handshake(
        target.host,
        target.port,
        verify=False,
        min_version=ssl.TLSVersion.TLSv1,
        max_version=ssl.TLSVersion.TLSv1_1,
        ciphers="DEFAULT:@SECLEVEL=0",
        **common,
    )
    if old.ok:
        facts.old_tls = old.version
    elif old.refused:
        facts.old_tls = ""  # the server ended the handshake: refused
    else:  # e.g. this machine's OpenSSL cannot offer TLS 1.0/1.1 (NO_PROTOCOLS_AVAILABLE)
        facts.old_tls = Unavailable(f"the TLS 1.0/1.1 probe did not complete: {old.error}")


BUS_TLS = "tls"  # the bus port completed a TLS handshake, or refused one with a TLS alert
BUS_PLAINTEXT = "plaintext"  # it took the connection and dropped it at the TLS hello
BUS_UNREACHABLE = "unreachable"  # nothing answered on the bus port from here


def _probe_bus(target: Target, nodes: list[ClusterNode], timeout: float) -> str | Unavailable:
    """How this node's cluster bus port answers a TLS handshake from here.

    A TLS bus completes it (or ends it with an alert: no client certificate); a plaintext bus
    reads the hello as a bad message header and closes the connection without a TLS byte.
    The node logs that one bad message ("Bad message length or signature received").
    """
    myself = next((node for node in nodes if node.myself), None)
    if target.scheme == "unix" or myself is None or not myself.bus_port:
        return Unavailable("CLUSTER NODES names no bus port for this node")
    context = client_context(target.tls_ca, target.tls_cert, target.tls_key, verify=False)
    try:
        raw = socket.create_connection((target.host, myself.bus_port), timeout=timeout)
    except OSError as error:
        return f"{BUS_UNREACHABLE}: port {myself.bus_port}: {error.strerror or error}"
    try:
        with context.wrap_socket(raw, server_hostname=target.server_name):
            return f"{BUS_TLS}: port {myself.bus_port}"
    except ssl.SSLError as error:
        if "alert" in str(error.reason or "").lower():
            return f"{BUS_TLS}: port {myself.bus_port} (TLS alert: {error.reason})"
        return f"{BUS_PLAINTEXT}: port {myself.bus_port} ({error.reason or error})"
    except (ConnectionResetError, BrokenPipeError) as error:
        return f"{BUS_PLAINTEXT}: port {myself.bus_port} ({error.strerror or error})"
    except OSError as error:  # e.g. a timeout: no verdict
        return Unavailable(f"the bus port {myself.bus_port} probe did not complete: {error}")
    finally:
        raw.close()
