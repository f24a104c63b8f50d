"""sentinel.conf of each Sentinel, and what the Sentinels learned, kept across re-renders.

Sentinel rewrites its own configuration file as it learns: its id, the other Sentinels (with
their ids), the replicas, the epochs, and after a failover the new primary. A file rendered
again (`init --force` for the bundle's copy, `up` for the one it runs) must not forget that:
a Sentinel that forgets the last failover would watch the old primary again. So the learned
state of every Sentinel is read back first (`read_state`) and rendered into each file,
consistently: the primary of the newest configuration epoch, every other data node as a
known replica, every other Sentinel by the id it has.
"""

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

from redkeep import __version__
from redkeep.config.deployment import PlannedNode
from redkeep.config.schema import Settings
from redkeep.render import templates
from redkeep.render.acl import password_hash
from redkeep.render.redis_conf import ConfPaths

SENTINEL_USERS = ("default", "admin", "exporter", "app", "sentinel")
MYID = re.compile(r"^[0-9a-f]{40}$")

Address = tuple[str, int]


@cache
def sentinel_user_specs() -> dict[str, dict]:
    """The packaged users of a Sentinel (sentinel_roles.yaml): {user: {rules}}."""
    text = resources.files("redkeep.render").joinpath("sentinel_roles.yaml").read_text()
    return yaml.safe_load(text)


def sentinel_rules(user: str) -> list[str]:
    return [str(rule) for rule in sentinel_user_specs()[user]["rules"]]


def render_sentinel_acl(
    passwords: Mapping[str, str], kept: Mapping[str, list[str]] | None = None
) -> str:
    """The users.acl of every Sentinel (the same on each); `kept` are hashes already valid for
    a user (from the existing files): they stay valid, as in a data node's users.acl."""
    lines = []
    for user in SENTINEL_USERS:
        words = ["user", user]
        if user != "default":
            hashes = [password_hash(passwords[user])]
            hashes += [digest for digest in (kept or {}).get(user, []) if digest not in hashes]
            words += [f"#{digest}" for digest in hashes]
        lines.append(" ".join([*words, *sentinel_rules(user)]))
    return "\n".join(lines) + "\n"


@dataclass
class SentinelState:
    """What the Sentinels of one deployment learned, read back from their own files."""

    primary: str | None = None  # the node the newest configuration names primary
    config_epoch: int = 0  # the epoch of that configuration
    current_epoch: dict[str, int] = field(default_factory=dict)  # by Sentinel
    leader_epoch: dict[str, int] = field(default_factory=dict)  # by Sentinel
    ids: dict[str, str] = field(default_factory=dict)  # Sentinel name -> its id (myid)
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    def with_new_ids(self, sentinels: list[str]) -> "SentinelState":
        """Give each Sentinel without an id a new one, so each file can name all the others
        from the start (the Sentinels then reach quorum without waiting to hear each other)."""
        for name in sentinels:
            self.ids.setdefault(name, secrets.token_hex(20))
        return self


def read_state(
    texts: Mapping[str, str], master_name: str, names: Mapping[Address, str]
) -> SentinelState:
    """The learned state in the sentinel.conf `texts` (by Sentinel name).

    `names` maps the addresses in those files (host, port) to node names. State about an
    address that is not there (the ports or names changed since) is left out, with a note.
    """
    state = SentinelState()
    best_epoch = -1
    for sentinel, text in texts.items():
        for words in _sentinel_lines(text):
            kind, args = words[0], words[1:]
            if kind == "myid" and args and MYID.match(args[0]):
                state.ids[sentinel] = args[0]  # its own word wins over what others say of it
            elif kind == "current-epoch" and args:
                state.current_epoch[sentinel] = _number(args[0])
            elif kind == "leader-epoch" and args[:1] == [master_name] and len(args) > 1:
                state.leader_epoch[sentinel] = _number(args[1])
            elif kind == "known-sentinel" and args[:1] == [master_name] and len(args) > 3:
                name = names.get(_address(args[1], args[2]))
                if name is not None and MYID.match(args[3]):
                    state.ids.setdefault(name, args[3])
        monitor, epoch = _monitor(text, master_name)
        if monitor is None:
            continue
        name = names.get(monitor)
        if name is None:
            state.notes.append(
                f"{sentinel} watched {master_name} at {monitor[0]}:{monitor[1]}, which is no "
                "node of this deployment now: it starts from the planned primary"
            )
        elif epoch > best_epoch:
            state.primary, state.config_epoch, best_epoch = name, epoch, epoch
    return state


def _sentinel_lines(text: str) -> list[list[str]]:
    lines = []
    for line in text.splitlines():
        words = [word.strip('"') for word in line.split()]
        if len(words) >= 2 and words[0] == "sentinel":
            lines.append(words[1:])
    return lines


def _monitor(text: str, master_name: str) -> tuple[Address | None, int]:
    """The primary a sentinel.conf watches and the configuration epoch it is known by."""
    address, epoch = None, 0
    for words in _sentinel_lines(text):
        if words[0] == "monitor" and len(words) >= 4 and words[1] == master_name:
            address = _address(words[2], words[3])
        elif words[0] == "config-epoch" and words[1:2] == [master_name] and len(words) > 2:
            epoch = _number(words[2])
    return address, epoch


def _address(host: str, port: str) -> Address:
    return (host, _number(port))


def _number(text: str) -> int:
    return int(text) if text.isdigit() else 0


@dataclass(frozen=True)
class SentinelLayout:
    """Where the deployment's processes are, as the Sentinels reach them (one world:
    containers by name, or this machine's loopback)."""

    addresses: dict[str, Address]  # every node and Sentinel by name
    container: bool

    def names(self) -> dict[Address, str]:
        return {address: name for name, address in self.addresses.items()}


def render_sentinel_conf(
    settings: Settings,
    sentinel: PlannedNode,
    nodes: tuple[PlannedNode, ...],
    layout: SentinelLayout,
    state: SentinelState,
    paths: ConfPaths,
    bind: list[str],
    passwords: Mapping[str, str],
    target: str,
) -> str:
    """sentinel.conf for `sentinel`: the settings, then what the Sentinels learned (`state`)."""
    deployment = settings.deployment
    data_nodes = [node for node in nodes if node.holds_data]
    planned_primary = next(node.name for node in data_nodes if node.role == "primary")
    primary = state.primary or planned_primary
    why = (
        f" (the primary since configuration epoch {state.config_epoch})"
        if state.primary and state.primary != planned_primary
        else ""
    )
    text = (
        templates()
        .get_template("sentinel.conf.j2")
        .render(
            name=settings.name,
            version=__version__,
            target=target,
            sentinel=sentinel,
            bind=bind,
            paths=paths,
            tls=settings.tls,
            container=layout.container,
            announce=layout.addresses[sentinel.name][0],
            deployment=deployment,
            monitor=layout.addresses[primary],
            monitor_why=why,
            quorum=deployment.sentinel_quorum(),
            sentinel_password=passwords["sentinel"],
        )
    )
    return text + _learned_block(sentinel, primary, data_nodes, nodes, layout, state, deployment)


def _learned_block(sentinel, primary, data_nodes, nodes, layout, state, deployment) -> str:
    master = deployment.master_name
    lines = ["", "# --- What the Sentinels learned (kept when this file is rendered again) ---"]
    own_id = state.ids.get(sentinel.name)
    if own_id:
        lines += ["# This Sentinel's id, by which the others know it.", f"sentinel myid {own_id}"]
    current = max(state.current_epoch.get(sentinel.name, 0), state.config_epoch)
    lines += [
        "# The newest failover epoch this Sentinel has seen.",
        f"sentinel current-epoch {current}",
        "# The epoch of the failover that made the watched node primary (0: none yet).",
        f"sentinel config-epoch {master} {state.config_epoch}",
        "# The last epoch in which this Sentinel voted for a failover leader.",
        f"sentinel leader-epoch {master} {state.leader_epoch.get(sentinel.name, 0)}",
    ]
    for node in data_nodes:
        if node.name != primary:
            host, port = layout.addresses[node.name]
            lines += [
                f"# {node.name} replicates the primary.",
                f"sentinel known-replica {master} {host} {port}",
            ]
    for peer in nodes:
        if peer.role == "sentinel" and peer.name != sentinel.name and peer.name in state.ids:
            host, port = layout.addresses[peer.name]
            lines += [
                f"# {peer.name} watches the primary too.",
                f"sentinel known-sentinel {master} {host} {port} {state.ids[peer.name]}",
            ]
    return "\n".join(lines) + "\n"
