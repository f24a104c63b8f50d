"""The links between a deployment's nodes that log in with a stored password.

Replicas log in to their primary as the `replication` user with `masterauth` (every data node
has it: any of them may become a replica). Sentinels log in to the data nodes as the `sentinel`
user with `sentinel auth-pass <master>`, and to each other with `sentinel sentinel-pass`.
Rotating one of these users' passwords means changing the stored password too, between the
moment every node accepts the new password and the moment the old one is removed: then no
link ever holds a password some node refuses.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redkeep.actions.nodes import NodeSession
from redkeep.bundle import Bundle
from redkeep.fsutil import SECRET_MODE, atomic_write
from redkeep.render import conf_quote

REPLICATION_USER = "replication"
SENTINEL_USER = "sentinel"


@dataclass(frozen=True)
class Link:
    """One setting of one node that holds a password the node logs in to others with."""

    session: NodeSession
    setting: str  # "masterauth", "auth-pass", "sentinel-pass"
    master_name: str = ""  # auth-pass: the monitored master it is for
    current: str | None = None  # its value now; None where the server does not show it

    @property
    def label(self) -> str:
        return f"{self.setting} on {self.session.name}"

    def set_command(self, password: str) -> tuple[str, tuple[str, ...]]:
        """(label, command) that stores `password`. A Sentinel writes its config file
        itself on SENTINEL SET and SENTINEL CONFIG SET, and reconnects with the new one."""
        if self.setting == "masterauth":
            return "CONFIG SET masterauth", ("CONFIG", "SET", "masterauth", password)
        if self.setting == "auth-pass":
            args = ("SENTINEL", "SET", self.master_name, "auth-pass", password)
            return "SENTINEL SET auth-pass", args
        return "SENTINEL CONFIG SET sentinel-pass", (
            "SENTINEL",
            "CONFIG",
            "SET",
            self.setting,
            password,
        )

    @property
    def needs_rewrite(self) -> bool:
        """CONFIG SET changes only the running server: CONFIG REWRITE keeps it at restart."""
        return self.setting == "masterauth"


def links_for(sessions: list[NodeSession], user: str, master_name: str) -> list[Link]:
    """The stored passwords of `user` on these nodes (none for users no link logs in as)."""
    links = []
    for session in sessions:
        if user == REPLICATION_USER and not session.is_sentinel:
            config = config_pairs(session.run("CONFIG GET", "CONFIG", "GET", "master*"))
            if config.get("masteruser") == user:
                links.append(Link(session, "masterauth", current=config.get("masterauth", "")))
        if user == SENTINEL_USER and session.is_sentinel:
            # auth-user is not shown by any command; the bundle's Sentinels use this user.
            links.append(Link(session, "auth-pass", master_name=master_name))
            config = config_pairs(
                session.run("SENTINEL CONFIG GET", "SENTINEL", "CONFIG", "GET", "*")
            )
            if config.get("sentinel-user") == user:
                links.append(Link(session, "sentinel-pass", current=config.get("sentinel-pass")))
    return links


def config_pairs(reply: Any) -> dict[str, str]:
    """A CONFIG GET reply, a map (RESP3, redis-py's callback) or a flat list of pairs."""
    if isinstance(reply, Mapping):
        return {str(key): str(value) for key, value in reply.items()}
    return {str(key): str(value) for key, value in zip(reply[::2], reply[1::2], strict=True)}


def refresh_rendered(bundle: Bundle, links: list[Link], password: str) -> None:
    """Write `password` into the bundle's own copy of each link's config file (the one
    docker-compose mounts) where it still names another: a node run by `up` rewrites its run
    copy (CONFIG REWRITE, SENTINEL SET), so this one would start a container with a revoked
    password. Atomic, 0600; a missing file is left alone."""
    for path in {_rendered_file(bundle, link) for link in links}:
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        changed = [_with_password(line, password) for line in lines]
        if changed != lines:
            atomic_write(path, "\n".join(changed) + "\n", SECRET_MODE)


def _rendered_file(bundle: Bundle, link: Link) -> Path:
    name = "sentinel.conf" if link.session.is_sentinel else "redis.conf"
    return bundle.node_dir(link.session.name) / name


def _with_password(line: str, password: str) -> str:
    words = line.split()
    if words and words[-1].strip('"') == password:  # already (a node rewrote its own file)
        return line
    if words[:1] == ["masterauth"]:
        return f"masterauth {conf_quote(password)}"
    if words[:2] == ["sentinel", "auth-pass"] and len(words) >= 4:
        return f"sentinel auth-pass {words[2]} {conf_quote(password)}"
    if words[:2] == ["sentinel", "sentinel-pass"]:
        return f"sentinel sentinel-pass {conf_quote(password)}"
    return line
