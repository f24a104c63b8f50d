"""The proxy's own warnings, at most one a second per kind: a flood is summed, not written out.

A client storm while Redis is down, or accept() failing for want of file descriptors, would
otherwise write a line per event (445,149 lines in 5 s were measured) and fill the disk.
"""

import logging
import time

from redkeep.proxy.policy import TokenBucket

log = logging.getLogger("redkeep.proxy")


class LimitedLog:
    def __init__(self, per_second: float = 1.0) -> None:
        self.per_second = per_second
        self.buckets: dict[str, TokenBucket] = {}
        self.left_out: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        bucket = self.buckets.get(kind)
        if bucket is None:
            bucket = self.buckets[kind] = TokenBucket(self.per_second, now)
        if not bucket.take(now):
            self.left_out[kind] = self.left_out.get(kind, 0) + 1
            return
        left_out = self.left_out.pop(kind, 0)
        if left_out:
            message += f" ({left_out} more like it left out)"
        log.warning("%s", message)
