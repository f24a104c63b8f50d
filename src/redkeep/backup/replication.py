"""Fetch an RDB snapshot over the replication protocol, as `redis-cli --rdb` does.

The client poses as a replica that wants only the snapshot: `REPLCONF capa eof`,
`REPLCONF version 255.255.255`, `REPLCONF rdb-only 1`, then `PSYNC ? -1`. The server answers
`+FULLRESYNC <replid> <offset>`, sends a newline every second while it prepares the snapshot,
then either `$<length>` and the file (disk-based) or `$EOF:<40 random bytes>`, the file, and
the same 40 bytes (diskless). The end mark can straddle reads; the payload is passed on in
chunks, never held whole. The chunks are read into one reused buffer and passed on as views of
it: no copy of the payload is made on the way in. Needs only the ACL rights of the bundle's
`backup` user (+replconf +psync).

The version: Valkey 9+ writes the snapshot in the RDB version its replica announces, RDB 11
when none is, and then fails the sync if the data needs more (a hash with field TTLs: "Can't
store key ... in RDB version 11"). A backup keeps the server's own format, so it announces the
newest version there can be. Redis and Valkey 7.2 refuse that REPLCONF option: ignored.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from redkeep.backup.rdb import RdbError
from redkeep.errors import ErrorKind, RedisCommandError
from redkeep.redis.explain import Hints
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target

EOF_MARK_LENGTH = 40
READ_BUFFER = 1 << 20  # what one read may bring
# Reads are gathered into chunks of at least this much before they are passed on: the server
# sends ~16-64 KiB at a time, and each chunk costs a pass through every stage in Python.
PASS_ON = 1 << 18
# Announced as the replica's version: Valkey then writes its own RDB format, not an older one.
NEWEST_VERSION = "255.255.255"
# What a backup adds to a failure of its connection: the rights a backup needs...
BACKUP_HINTS: Hints = {
    ErrorKind.PERMISSION: "; a backup needs +info +replconf +psync (the bundle's backup user "
    "has them)",
    ErrorKind.UNKNOWN_COMMAND: "; replication capture is not possible there",
    ErrorKind.CLOSED: ", before the snapshot was complete",
}
# ...and, while the server prepares the snapshot, what to do when it is slow to start sending.
CAPTURE_HINTS: Hints = {
    **BACKUP_HINTS,
    ErrorKind.TIMEOUT: "; raise --idle-timeout if the server is slow to fork",
}


@dataclass(frozen=True)
class Capture:
    replid: str
    offset: int
    size: int
    transfer: str  # "diskless" or "disk"
    rdb_only: bool


def capture_rdb(
    target: Target, write: Callable[[memoryview], None], idle_timeout: float = 60.0
) -> Capture:
    """Stream a fresh RDB snapshot of `target` into `write`, chunk by chunk.

    Each chunk is a memoryview of a buffer that the next read reuses: `write` must be done
    with it when it returns (copy what it keeps).
    """
    stream = RawConnection(target, idle_timeout, hints=CAPTURE_HINTS)
    try:
        stream.login()
        stream.command("REPLCONF", "capa", "eof")
        with contextlib.suppress(RedisCommandError):  # Redis has no such option
            stream.command("REPLCONF", "version", NEWEST_VERSION)
        try:
            stream.command("REPLCONF", "rdb-only", "1")
            rdb_only = True
        except RedisCommandError:
            rdb_only = False  # Redis 6.0: it would go on streaming writes; we stop at the end
        stream.send("PSYNC", "?", "-1")
        replid, offset = _fullresync(stream, stream.read_line())
        header = stream.read_line()
        if header.startswith("$EOF:"):
            size = _read_until_mark(stream, header[5:].encode(), write)
            transfer = "diskless"
        elif header.startswith("$") and header[1:].isdigit():
            size = _read_length(stream, int(header[1:]), write)
            transfer = "disk"
        else:
            raise RdbError(f"{target.where} sent {header[:60]!r} instead of an RDB payload")
        return Capture(replid, offset, size, transfer, rdb_only)
    finally:
        stream.close()


def _fullresync(stream: RawConnection, line: str) -> tuple[str, int]:
    if line.startswith("-"):
        raise stream.reply_error(line[1:], ("PSYNC",))
    parts = line.split()
    if len(parts) == 3 and parts[0] == "+FULLRESYNC" and parts[2].isdigit():
        return parts[1], int(parts[2])
    raise RdbError(f"{stream.target.where} answered PSYNC with {line[:60]!r}")


def _read_length(stream: RawConnection, length: int, write: Callable[[memoryview], None]) -> int:
    view = memoryview(bytearray(min(length, READ_BUFFER)))
    remaining = length
    while remaining:
        end = 0
        goal = min(remaining, PASS_ON)
        while end < goal:  # never past the file: nothing should follow it
            end += stream.read_into(view[end:remaining])
        write(view[:end])
        remaining -= end
    return length


def _read_until_mark(
    stream: RawConnection, mark: bytes, write: Callable[[memoryview], None]
) -> int:
    if len(mark) != EOF_MARK_LENGTH:
        raise RdbError(f"{stream.target.where} sent an end mark of {len(mark)} bytes, not 40")
    buffer = bytearray(READ_BUFFER + PASS_ON)
    view = memoryview(buffer)
    end = 0  # bytes in the buffer, not yet passed on
    size = 0
    while True:
        start = max(0, end - (EOF_MARK_LENGTH - 1))  # the mark may straddle two reads
        end += stream.read_into(view[end : end + READ_BUFFER])
        found = buffer.find(mark, start, end)
        if found >= 0:
            write(view[:found])
            return size + found
        cut = end - (EOF_MARK_LENGTH - 1)  # all but what could be the start of the mark
        if end >= PASS_ON and cut > 0:
            write(view[:cut])
            size += cut
            end -= cut
            buffer[:end] = buffer[cut : cut + end]
