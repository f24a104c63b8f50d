"""Which releases drop the AOF's MULTI/EXEC blocks when the default user's rules refuse them.

Redis 7.0 made EXEC check each queued command against the ACL again. The AOF loader replays
as the default user, so on restart every MULTI/EXEC block in the AOF (transactions, and what
Redis logs as one: a Lua script or function with several writes, XREADGROUP) that the default
user's rules refuse is dropped, with a "NOPERM ... AOF-loading-client" line in the log per
block. Plain commands replay fine. Reported as redis/redis#14541 (on 7.2.5) and fixed by #14545
(first in 8.6); for Valkey valkey-io/valkey#3983, fixed by #3984 (8.1.10's release notes).
Observed on the test matrix (tests/integration/test_aof_replay.py): Redis 6.2.14 keeps the
blocks (no re-check), 7.0.15 and 8.2.3 and Valkey 8.1.8 drop them, Valkey 9.1.2 keeps them.
Any other release is "unknown": the audit says it could not verify rather than guess.
"""

from typing import Literal

Version = tuple[int, ...]
Status = Literal["unaffected", "affected", "fixed", "unknown"]

RELEASES: dict[str, dict] = {
    "redis": {
        "introduced": (7, 0, 0),
        "fixed_from": (8, 6, 0),  # #14545 is on every branch from 8.6 on (the 8.6.1 tag has it)
        "fixed": {},  # no backport to an older branch is known
        # The newest release of each branch known to drop the blocks.
        "affected_through": {
            (7, 0): (7, 0, 15),  # the branch's last release, observed
            (7, 2): (7, 2, 5),  # the report of #14541
            (8, 2): (8, 2, 3),  # observed
            (8, 4): (8, 4, 2),  # its tag does not have #14545
        },
    },
    "valkey": {
        "introduced": (7, 2, 0),  # Valkey began as Redis 7.2.4
        "fixed_from": (9, 2, 0),  # #3984 is on the unstable branch
        "fixed": {(8, 1): (8, 1, 10), (9, 1): (9, 1, 2)},
        "affected_through": {(7, 2): (7, 2, 4), (8, 1): (8, 1, 8)},
    },
}


def status(flavour: str, version: Version) -> Status:
    """Whether this release drops the AOF's refused MULTI/EXEC blocks."""
    data = RELEASES.get(flavour)
    if data is None or len(version) < 3:
        return "unknown"
    if version < data["introduced"]:
        return "unaffected"
    line = version[:2]
    if version >= data["fixed_from"] or version >= data["fixed"].get(line, data["fixed_from"]):
        return "fixed"
    if version <= data["affected_through"].get(line, ()):
        return "affected"
    return "unknown"


def fixed_releases() -> str:
    """The fixed releases, for messages: 'Redis 8.6, Valkey 8.1.10, 9.1.2'."""
    redis, valkey = RELEASES["redis"], RELEASES["valkey"]
    shown = [".".join(map(str, version)) for version in valkey["fixed"].values()]
    return f"Redis {'.'.join(map(str, redis['fixed_from'][:2]))}, Valkey {', '.join(shown)}"
