"""The raw connection's pipelined reads: a scrape's replies of a few KiB allocate about what
arrives, not 1 MiB per read, and a reply larger than one read still arrives whole.

Measured with tracemalloc (allocations, not time) on a real TLS redis-server.
"""

import time
import tracemalloc

from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target

KIB = 1024
COMMANDS = [("PING",), ("INFO", "all"), ("DBSIZE",)] * 3  # replies: ~15 KiB in all


def connect(server, pki) -> RawConnection:
    where = Target(
        "rediss", host="localhost", port=server.tls_port, username="admin",
        password="admin-secret", tls_ca=pki.ca_cert, timeout=5,
    )  # fmt: skip
    connection = RawConnection(where, 5)
    connection.login()
    return connection


def peak_allocation(connection: RawConnection, commands: list) -> tuple[list, int]:
    """The replies to `commands` and the most Python memory allocated while reading them."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        replies = connection.pipeline(commands, time.monotonic() + 10)
        return replies, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_pipelined_reads_allocate_about_what_arrives(tls_redis, pki):
    connection = connect(tls_redis, pki)
    try:
        connection.pipeline(COMMANDS, time.monotonic() + 10)  # its read buffer, made once
        replies, peak = peak_allocation(connection, COMMANDS)
        assert replies[0] == b"PONG" and b"redis_version:" in replies[1]
        arrived = sum(len(reply) for reply in replies if isinstance(reply, bytes))
        # A fresh 1 MiB buffer per read made this at least 1024 KiB.
        assert peak < arrived + 128 * KIB, (peak, arrived)

        value = bytes(range(256)) * (1200 * KIB // 256)  # many reads' worth
        connection.pipeline([("SET", "big", value)], time.monotonic() + 10)
        replies = connection.pipeline([("GET", "big"), ("PING",)], time.monotonic() + 10)
        assert replies == [value, b"PONG"]
    finally:
        connection.close()
