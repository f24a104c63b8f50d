"""The floor of a capture in Python: read the RDB streams of the given servers at once, through
redkeep's own replication client, and discard them (no check, hash, compression, encryption or
store). `python -m benchmarks.capture_floor URL...`; what it costs over the three `redis-cli
--rdb` at once is starting Python, loading redkeep and receiving in Python."""

import concurrent.futures
import sys

from redkeep.backup.replication import capture_rdb
from redkeep.redis.target import parse_url


def discard(chunk: bytes) -> None:
    pass


def main(urls: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(urls)) as pool:
        captures = [pool.submit(capture_rdb, parse_url(url), discard) for url in urls]
        for capture in captures:
            capture.result()


if __name__ == "__main__":
    main(sys.argv[1:])
