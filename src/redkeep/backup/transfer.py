"""Copy every key, with its TTL, from one server to another: DUMP + PTTL, then RESTORE.

Pipelined in batches per database. Keys that expire while being copied are skipped.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import redis

BATCH = 500


@dataclass
class TransferCount:
    keys: dict[str, int] = field(default_factory=dict)
    skipped_expired: int = 0


def copy_keys(
    source_for_db: Callable[[int], redis.Redis],
    target_for_db: Callable[[int], redis.Redis],
    databases: list[int],
    replace: bool,
) -> TransferCount:
    """Copy all keys of `databases`; RESTORE ... REPLACE when `replace`."""
    count = TransferCount()
    for db in databases:
        source, target = source_for_db(db), target_for_db(db)
        copied = 0
        try:
            for keys in _batches(source):
                dumps = _dump(source, keys)
                pipe = target.pipeline(transaction=False)
                for key, (payload, pttl) in zip(keys, dumps, strict=True):
                    if payload is None or pttl == -2:
                        count.skipped_expired += 1
                        continue
                    args = ["RESTORE", key, max(pttl, 0), payload]
                    if replace:
                        args.append("REPLACE")
                    pipe.execute_command(*args)
                    copied += 1
                pipe.execute()
        finally:
            source.close()
            target.close()
        count.keys[f"db{db}"] = copied
    return count


def _batches(client: redis.Redis):
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=BATCH)
        if keys:
            yield keys
        if cursor == 0:
            return


def _dump(client: redis.Redis, keys: list[bytes]) -> list[tuple[bytes | None, int]]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
    replies = pipe.execute()
    return list(zip(replies[::2], replies[1::2], strict=True))
