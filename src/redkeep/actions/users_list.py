"""`redkeep users list` across a deployment: the users of every node and Sentinel, and the ones
that differ between nodes.

ACL users are per node (not replicated). A user that differs is what an operator needs to see:
after a failover the new primary refuses the application, or still takes a password revoked
elsewhere. Data nodes are compared with data nodes and Sentinels with Sentinels (they have
other users by design). Per user, the nodes that agree form a variant; the variant most nodes
have comes first (the first node's on a tie).

Password hashes are compared, never shown: a variant says how many passwords it has and, when
the nodes are the bundle's own and its .env keeps that user's password, whether it is one.
A node that cannot be read (down, refused, skipped by discovery) is named, never guessed at.
"""

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis

from redkeep.actions.locate import load_bundle, target_for
from redkeep.actions.nodes import every_node, is_standalone
from redkeep.actions.users import UserInfo, UsersRequest, get_user, list_users
from redkeep.app import Application
from redkeep.bundle import Bundle
from redkeep.errors import RedkeepError
from redkeep.redis.acl import AclUser, signature
from redkeep.redis.client import explain_failure, session
from redkeep.redis.deployment import Node, Role
from redkeep.redis.discover import Skipped, discover
from redkeep.render.acl import password_hash
from redkeep.render.env import password_roles

READ_THREADS = 8  # nodes read at once; a node that hangs costs its own timeout, not theirs
# ROLE's first element -> the deployment's word.
ROLES = {"master": "primary", "slave": "replica", "sentinel": "sentinel"}
GROUP_TITLES = {"data": "data nodes", "sentinel": "Sentinels"}
# The parts of a user compared between nodes (`signature`), in its order.
PARTS = ("on/off and flags", "passwords", "command rules", "key patterns", "channels")


@dataclass(frozen=True)
class NodeUsers:
    """One node and its users as read now (`users` None: it could not be read, `error` says
    why)."""

    name: str
    role: str  # as the node says (ROLE); the deployment's word when it could not be asked
    address: str
    users: dict[str, AclUser] | None = None
    error: str = ""

    @property
    def group(self) -> str:
        return "sentinel" if self.role == Role.SENTINEL.value else "data"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "address": self.address,
            "read": self.users is not None,
            "error": self.error or None,
            "users": len(self.users) if self.users is not None else None,
        }


@dataclass(frozen=True)
class Variant:
    """What a user is on some nodes: `user` None means those nodes do not have it."""

    nodes: tuple[str, ...]
    user: UserInfo | None
    env_password: bool | None  # holds .env's password for it; None: unknown or no user

    def to_json(self) -> dict[str, Any]:
        user = self.user
        return {
            "nodes": list(self.nodes),
            "present": user is not None,
            "enabled": user.enabled if user else None,
            "password_count": user.password_count if user else None,
            "nopass": user.nopass if user else None,
            "commands": user.commands if user else None,
            "keys": user.keys if user else None,
            "channels": user.channels if user else None,
            "env_password": self.env_password,
        }


@dataclass(frozen=True)
class UserAcrossNodes:
    name: str
    group: str  # "data" or "sentinel"
    variants: tuple[Variant, ...]  # the most nodes' first
    differs_in: tuple[str, ...]  # "presence", or PARTS that differ; () when the same everywhere

    @property
    def same(self) -> bool:
        return len(self.variants) == 1

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "same": self.same,
            "differs_in": list(self.differs_in),
            "variants": [variant.to_json() for variant in self.variants],
        }


@dataclass(frozen=True)
class DeploymentUsers:
    topology: str
    nodes: tuple[NodeUsers, ...]
    users: tuple[UserAcrossNodes, ...]

    @property
    def unread(self) -> list[NodeUsers]:
        return [node for node in self.nodes if node.users is None]

    @property
    def differing(self) -> list[UserAcrossNodes]:
        return [user for user in self.users if not user.same]

    @property
    def consistent(self) -> bool:
        """Every node read, and each user the same on every data node and every Sentinel."""
        return not self.unread and not self.differing

    def group_size(self, group: str) -> int:
        """How many nodes of `group` were read."""
        return sum(1 for node in self.nodes if node.group == group and node.users is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "consistent": self.consistent,
            "nodes": [node.to_json() for node in self.nodes],
            "users": [user.to_json() for user in self.users],
        }


def run_list(app: Application, request: UsersRequest) -> list[UserInfo] | DeploymentUsers:
    """One server's users (a standalone bundle's, or --url's), or every node's: a sentinel or
    cluster bundle's own nodes, or with --all-nodes the deployment found from one node."""
    bundle = load_bundle(app, request.directory, required=False)
    connection = request.connection
    # A sentinel or cluster bundle without --url is its whole deployment, as for status and
    # health: a sourced .env's REDIS_URL names the app's endpoint (the proxy), not the nodes.
    deployment = bundle is not None and not connection.url and not is_standalone(bundle)
    if deployment and not request.all_nodes:
        nodes = every_node(bundle, connection, "admin")
        return list_across(bundle.settings.deployment.topology, nodes, _env_passwords(bundle))
    if deployment:
        seed = every_node(bundle, connection, "admin")[0].target
    else:
        seed = target_for(connection, bundle, "admin")
    if request.all_nodes:
        found = discover(seed)
        topology = found.deployment.topology.value
        return list_across(topology, found.deployment.nodes, skipped=found.skipped)
    with session(seed) as client:
        return list_users(client, seed)


def _env_passwords(bundle: Bundle) -> dict[str, str]:
    """{user: its password in .env} for the users the bundle keeps one of."""
    known = bundle.known_passwords()
    roles = password_roles(bundle.settings.deployment.topology)
    return {user: password for user, password in known.items() if user in roles}


def list_across(
    topology: str,
    nodes: Iterable[Node],
    passwords: dict[str, str] | None = None,
    skipped: Iterable[Skipped] = (),
) -> DeploymentUsers:
    """Read the users of every node at once and compare them. `passwords`: {user: the
    password .env holds} when the nodes are the bundle's own (never shown; checked by hash)."""
    nodes = list(nodes)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        read = list(pool.map(read_node, nodes))
    read.sort(key=lambda node: (node.group == "sentinel", node.role != "primary"))  # stable
    read += [
        NodeUsers(item.address, item.role.value, item.address, error=f"skipped: {item.reason}")
        for item in skipped
    ]
    digests = {user: password_hash(password) for user, password in (passwords or {}).items()}
    users = [
        user
        for group in GROUP_TITLES
        for user in compare([node for node in read if node.group == group], group, digests)
    ]
    return DeploymentUsers(topology, tuple(read), tuple(users))


def read_node(node: Node) -> NodeUsers:
    """The node's role (ROLE) and every user (ACL USERS, ACL GETUSER each), as its admin."""
    target = node.target
    try:
        with session(target) as client:
            try:
                role = client.execute_command("ROLE")[0]
                names = sorted(client.execute_command("ACL", "USERS"))
            except (redis.RedisError, OSError) as error:
                raise explain_failure(error, target, "ACL USERS") from None
            users = {name: user for name in names if (user := get_user(client, target, name))}
    except RedkeepError as error:
        return NodeUsers(node.name, node.role.value, target.where, error=error.message)
    return NodeUsers(node.name, ROLES.get(role, role), target.where, users)


def compare(nodes: list[NodeUsers], group: str, digests: dict[str, str]) -> list[UserAcrossNodes]:
    """Each user of the nodes read, with its variants across them."""
    readable = [node for node in nodes if node.users is not None]
    names = sorted({name for node in readable for name in node.users})
    found = []
    for name in names:
        by_signature: dict[tuple | None, list[NodeUsers]] = {}
        for node in readable:
            by_signature.setdefault(signature(node.users.get(name)), []).append(node)
        ordered = sorted(by_signature.items(), key=lambda item: -len(item[1]))  # stable on ties
        reference = ordered[0][0]
        differs: list[str] = []
        for other, _ in ordered[1:]:
            differs += [part for part in difference(reference, other) if part not in differs]
        variants = tuple(_variant(name, holders, digests.get(name)) for _, holders in ordered)
        found.append(UserAcrossNodes(name, group, variants, tuple(differs)))
    return found


def _variant(name: str, holders: list[NodeUsers], digest: str | None) -> Variant:
    user = holders[0].users.get(name)
    if user is None:
        return Variant(tuple(node.name for node in holders), None, None)
    info = UserInfo(
        name=name,
        enabled=user.enabled,
        password_count=len(user.passwords),
        nopass=user.nopass,
        commands=user.commands,
        keys=user.keys,
        channels=user.channels,
    )
    env_password = None if digest is None else digest in user.passwords
    return Variant(tuple(node.name for node in holders), info, env_password)


def difference(mine: tuple | None, theirs: tuple | None) -> list[str]:
    """The PARTS in which two signatures differ; ["presence"] when one has no user."""
    if mine is None or theirs is None:
        return ["presence"]
    return [part for part, a, b in zip(PARTS, mine, theirs, strict=True) if a != b]
