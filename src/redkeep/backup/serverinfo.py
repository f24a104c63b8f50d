"""INFO over a raw connection, parsed: what a backup records about the server."""

from typing import Any

from redkeep.backup.replication import BACKUP_HINTS
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target


def read_info(target: Target, timeout: float = 30.0) -> dict[str, Any]:
    """`INFO all` of `target` as a dict (numbers as numbers; dbN as {keys, expires, ...})."""
    connection = RawConnection(target, timeout, hints=BACKUP_HINTS)
    try:
        connection.login()
        return parse_info(connection.bulk("INFO", "all"))
    finally:
        connection.close()


def parse_info(text: str) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        if key.startswith("db") and key[2:].isdigit():
            info[key] = {
                name: _number(number)
                for name, _, number in (item.partition("=") for item in value.split(","))
            }
        else:
            info[key] = _number(value)
    return info


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
