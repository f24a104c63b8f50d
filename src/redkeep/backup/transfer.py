"""Copy every key, with its TTL, from one server to another: DUMP + PTTL, then RESTORE.

Pipelined in batches per database, cut so that a batch holds about BATCH_BYTES of values
(a larger key goes alone): memory stays bounded whatever the keys' sizes. Keys that expire
while being copied are skipped.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from redkeep.errors import RedkeepError

BATCH = 500
BATCH_BYTES = 32 << 20


class ConnectionLost(RedkeepError):
    """The target's connection broke in the middle of a batch (evicted, closed, stalled)."""

    def __init__(self, db: int, written: int, cause: Exception, during: str = "") -> None:
        self.cause = cause
        self.during = during or f"during RESTORE into db{db}"
        if during:  # before the copy began
            self.partial = "nothing was written (fix the cause, then restore again)"
        else:
            self.partial = (
                f"{written} keys were written before, and perhaps part of the last batch: the "
                "target may hold part of the backup (fix the cause, then restore again with "
                "--replace)"
            )
        super().__init__(f"the connection broke {self.during}; {self.partial}")


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
    """Copy all keys of `databases`; RESTORE ... REPLACE when `replace`.

    Raise RedkeepError naming the key (never its value) if the target refuses one, and say
    how much was written before: a live target cannot be rolled back.
    """
    count = TransferCount()
    for db in databases:
        source, target = source_for_db(db), target_for_db(db)
        copied = 0
        try:
            for keys in _sized(source, _batches(source)):
                pipe = target.pipeline(transaction=False)
                sent = []
                for key, (payload, pttl) in zip(keys, _dump(source, keys), strict=True):
                    if payload is None or pttl == -2:
                        count.skipped_expired += 1
                        continue
                    pipe.restore(key, max(pttl, 0), payload, replace=replace)
                    sent.append(key)
                try:
                    replies = pipe.execute(raise_on_error=False)
                except (redis.ConnectionError, redis.TimeoutError) as error:
                    # How much of the batch arrived is unknown.
                    written = sum(count.keys.values()) + copied
                    raise ConnectionLost(db, written, error) from None
                failed = [
                    (key, reply)
                    for key, reply in zip(sent, replies, strict=True)
                    if isinstance(reply, Exception)
                ]
                copied += len(sent) - len(failed)
                if failed:
                    key, reply = failed[0]
                    raise RedkeepError(
                        f"RESTORE of key {key!r} into db{db} failed: {_reason(reply)}; "
                        + _partial(sum(count.keys.values()) + copied)
                    )
        finally:
            source.close()
            target.close()
        count.keys[f"db{db}"] = copied
    return count


def _partial(written: int) -> str:
    if not written:
        return "nothing was written (fix the cause, then restore again)"
    return (
        f"{written} keys were written, so the target now holds part of the backup "
        "(fix the cause, then restore again with --replace)"
    )


def _reason(error: Exception) -> str:
    """Redis's own message with its error code, without the command (whose arguments hold
    the value): "NOPERM this user has no permissions ...", "OOM command not allowed ..."."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = text.split(" caused error: ", 1)[-1]
    code = _error_code(error)
    if code and not text.startswith(f"{code} "):
        text = f"{code} {text}"
    return text[:200]


def _error_code(error: Exception) -> str:
    """The reply's code that redis-py moved out of the message (into `status_code`, and the
    exception's class: NoPermissionError for NOPERM, OutOfMemoryError for OOM ...)."""
    code = getattr(error, "status_code", None)  # a recent redis-py
    if code:
        return code
    from redis._parsers.base import BaseParser  # noqa: PLC0415 - an older redis-py only

    codes = [name for name, kind in BaseParser.EXCEPTION_CLASSES.items() if kind is type(error)]
    return codes[0] if len(codes) == 1 else ""


def _batches(client: redis.Redis):
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=BATCH)
        if keys:
            yield keys
        if cursor == 0:
            return


def _sized(client: redis.Redis, batches):
    """Split each batch of keys so that one holds about BATCH_BYTES (MEMORY USAGE, sampled)."""
    for keys in batches:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key)
        group: list[bytes] = []
        total = 0
        for key, size in zip(keys, pipe.execute(), strict=True):
            if group and total + (size or 0) > BATCH_BYTES:
                yield group
                group, total = [], 0
            group.append(key)
            total += size or 0
        if group:
            yield group


def _dump(client: redis.Redis, keys: list[bytes]) -> list[tuple[bytes | None, int]]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
    replies = pipe.execute()
    return list(zip(replies[::2], replies[1::2], strict=True))
