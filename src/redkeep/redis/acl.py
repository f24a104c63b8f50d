"""ACL GETUSER's reply as one typed value, whoever read it and however it came.

The audit and the exporter read replies with hiredis (bytes), `redkeep users` through redis-py
(text); a RESP2 reply is a flat list of field, value, field, value, a RESP3 reply (and what
redis-py makes of either) a map. Redis 6.2 lists key and channel patterns, 7.x gives each as
one string of rules. Standard library only: the exporter imports this.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AclUser:
    """One ACL user: its flags, SHA-256 password hashes and its rules as Redis writes them.

    `commands`, `keys` and `channels` are rule strings ("+@all -debug", "~cache:*", "&*"); 6.2's
    pattern lists are joined with spaces. Selectors (7.0+) are not kept: nothing reads them yet.
    """

    flags: frozenset[str]
    passwords: tuple[str, ...]
    commands: str = ""
    keys: str = ""
    channels: str = ""

    @property
    def enabled(self) -> bool:
        return "on" in self.flags

    @property
    def nopass(self) -> bool:
        return "nopass" in self.flags


def parse_getuser(reply: Any) -> AclUser | None:
    """ACL GETUSER's reply as an AclUser; None when there is no such user.

    Raise ValueError for a reply of another shape (not a map nor a flat list of pairs).
    """
    if reply is None:
        return None
    if isinstance(reply, Mapping):
        fields = {_text(key): value for key, value in reply.items()}
    elif isinstance(reply, list | tuple) and len(reply) % 2 == 0:
        fields = {_text(key): value for key, value in zip(reply[::2], reply[1::2], strict=True)}
    else:
        raise ValueError(f"ACL GETUSER answered {type(reply).__name__}, not a map of fields")
    return AclUser(
        flags=frozenset(_text(flag) for flag in _items(fields.get("flags"))),
        passwords=tuple(_text(digest) for digest in _items(fields.get("passwords"))),
        commands=_rules(fields.get("commands")),
        keys=_rules(fields.get("keys")),
        channels=_rules(fields.get("channels")),
    )


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _items(value: Any) -> Iterable[Any]:
    """A RESP array or set (flags are a set in RESP3); nothing for a missing field."""
    return () if value is None else value


def _rules(value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):  # 6.2 lists key and channel patterns
        return " ".join(_text(item) for item in value)
    return "" if value is None else _text(value)


def signature(user: AclUser | None) -> tuple | None:
    """What a user is, comparable between servers. Redis 7.0 describes command rules from a
    hash table, so the same rules come back in another order on another process: the first
    rule (the base, +@all or -@all) stays first, the others are compared as a set."""
    if user is None:
        return None
    first, *rest = user.commands.split() or [""]
    return (
        frozenset(user.flags),
        frozenset(user.passwords),
        (first, frozenset(rest)),
        frozenset(user.keys.split()),
        frozenset(user.channels.split()),
    )
