"""Every node of a bundle's deployment, each with an admin session: what a change that must
reach all of them (`users rotate`, `certs rotate`) starts from.

A standalone bundle is one node, reached as `target_for` says (`--url` may name another
server). A sentinel or cluster bundle is every node of its plan, data nodes and Sentinels,
reached as the bundle's admin; `--url` is refused there, since one URL names one node.
"""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import redis

from redkeep.actions.locate import target_for
from redkeep.bundle import Bundle
from redkeep.errors import ConnectError, RedkeepError, UsageError
from redkeep.redis.client import connect, explain_failure
from redkeep.redis.deployment import Node, Role, Topology
from redkeep.redis.target import ConnectionOptions, resolve_target


@dataclass(frozen=True)
class NodeSession:
    """A node and a connected client on it, logged in as the bundle's admin."""

    node: Node
    client: redis.Redis

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def is_sentinel(self) -> bool:
        return self.node.role is Role.SENTINEL

    @property
    def label(self) -> str:
        """The node for messages: 'redis-1 (localhost:7001)'."""
        return f"{self.node.name} ({self.node.target.where})"

    def run(self, label: str, *args: str):
        """Send one command; a failure becomes one line naming the node (`label` says what
        was sent, never a secret)."""
        try:
            return self.client.execute_command(*args)
        except (redis.RedisError, OSError) as error:
            raise NodeError(self, explain_failure(error, self.node.target, label)) from None


class NodeError(RedkeepError):
    """A failure on one node: keeps the node and the exit status of the underlying error."""

    def __init__(self, session: NodeSession, error: RedkeepError) -> None:
        super().__init__(f"{session.name}: {error.message}", error.status, error.kind)
        self.session = session
        self.reason = error.message


def is_standalone(bundle: Bundle) -> bool:
    return bundle.settings.deployment.topology == Topology.STANDALONE.value


def every_node(bundle: Bundle, connection: ConnectionOptions, role: str) -> tuple[Node, ...]:
    """Every node of the bundle (data nodes, then Sentinels) reached as `role` with the
    options given (TLS files, timeout, --password-file)."""
    if is_standalone(bundle):
        target = target_for(connection, bundle, role)
        return (replace(bundle.deployment(role, with_password=False).primary(), target=target),)
    if connection.url:
        raise UsageError(
            f"--url names one server, but {bundle.root} is a "
            f"{bundle.settings.deployment.topology} deployment and this command acts on every "
            "node of it; drop --url"
        )
    known = bundle.known_passwords()
    if connection.password_file is None and role not in known:
        bundle.password(role)  # says which .env key is missing
    nodes = []
    for node in bundle.deployment(role, with_password=False).nodes:
        target = resolve_target(
            connection, os.environ, node.target, known_passwords=known, prefer_fallback=True
        )
        nodes.append(replace(node, target=target))
    return tuple(nodes)


@contextlib.contextmanager
def admin_sessions(nodes: tuple[Node, ...]) -> Iterator[list[NodeSession]]:
    """A session on each node, closed afterwards. Raise ConnectError naming every node that
    cannot be reached: a change must not start on some nodes when others are down."""
    sessions, down = [], []
    try:
        for node in nodes:
            try:
                sessions.append(NodeSession(node, connect(node.target)))
            except RedkeepError as error:
                down.append(f"{node.name}: {error.message}")
        if down:
            raise ConnectError(
                f"cannot reach {len(down)} of {len(nodes)} nodes, so nothing was changed "
                f"({'; '.join(down)}); start them and run the command again"
            )
        yield sessions
    finally:
        for session in sessions:
            session.client.close()


def acl_file(bundle: Bundle, session: NodeSession) -> Path:
    """The ACL file a node saves to, as the bundle sees it (each node has its own)."""
    if is_standalone(bundle):
        return bundle.acl_path
    return bundle.node_dir(session.name) / "users.acl"


def config_file(bundle: Bundle, session: NodeSession) -> Path:
    """A node's own config file in the bundle: redis.conf, or a Sentinel's sentinel.conf."""
    if is_standalone(bundle):
        return bundle.redis_dir / "redis.conf"
    name = "sentinel.conf" if session.is_sentinel else "redis.conf"
    return bundle.node_dir(session.name) / name
