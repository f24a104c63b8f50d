"""Count the keys and expires of each database in an RDB, by walking its records.

`verify` needs to know what the snapshot holds. The server's INFO read before and after the
capture cannot say it under writes: a key that exists only while the fork happens (a job in a
queue) is in the snapshot and in neither reading. The RDB itself can: after each SELECTDB opcode
a RESIZEDB opcode gives the database's sizes at fork time, and the records that follow are its
keys. To reach the next database every record must be stepped over, so the walk counts the
records (a key, with an EXPIRETIME opcode before it when it has a TTL) and keeps RESIZEDB's
figures beside the counts.

The walk runs where the RDB is already a file: `verify` and `restore` walk the object they
downloaded, whose bytes the manifest's SHA-256 proves are the captured ones, so the counts mean
what they would have meant during the capture, and the capture does not pay for them (in pure
Python the walk costs about 0.7 s of CPU per million keys, more than all the other per-byte
work of a capture together). It reads lengths and skips payloads through a buffer. A type it
does not know (a newer format, a pre-release module format) or a file that does not end where
the format says ends the walk without counts, and `verify` falls back to the INFO readings.
"""

import io
from pathlib import Path

CHUNK = 1 << 20
CHECKSUM_LENGTH = 8

# Opcodes (rdb.h of Redis and Valkey).
SLOT_INFO, FUNCTION2, MODULE_AUX, IDLE, FREQ, AUX = 244, 245, 247, 248, 249, 250
RESIZEDB, EXPIRETIME_MS, EXPIRETIME, SELECTDB, EOF = 251, 252, 253, 254, 255

# Value types whose payload is one string: an encoded ziplist, listpack, intset or zipmap.
ONE_STRING = {0, 9, 10, 11, 12, 13, 16, 17, 20}
STREAMS = {15, 19, 21}


class Unknown(Exception):
    """Something the walk cannot step over: it stops without counts."""


def walk(stream: io.BufferedReader) -> dict[str, dict[str, int]]:
    """{"dbN": {"keys", "expires", "resizedb_keys", "resizedb_expires"}} of an RDB stream;
    raise Unknown when it cannot be walked to its end."""
    try:
        return _walk(stream.read)
    except IndexError:  # read(1) gave nothing: the stream ended inside a record
        raise Unknown("the RDB ends before its EOF opcode") from None


def _walk(read) -> dict[str, dict[str, int]]:  # noqa: PLR0912, PLR0915 - see below
    # Plain functions over `read`, not methods: this runs once per key of the dataset, and
    # attribute look-ups made it five times slower (3 s instead of 0.5 s for a million keys).
    def length(first: int) -> int:
        if first < 0x40:
            return first
        if first < 0x80:
            return ((first & 0x3F) << 8) | read(1)[0]
        if first == 0x80:
            return int.from_bytes(read(4), "big")
        if first == 0x81:
            return int.from_bytes(read(8), "big")
        raise Unknown(f"length encoding {first:#x}")

    def number() -> int:
        return length(read(1)[0])

    def skip(size: int) -> None:
        while size > CHUNK:  # never a whole big value in memory
            if not read(CHUNK):
                raise IndexError
            size -= CHUNK
        if len(read(size)) != size:
            raise IndexError

    def string() -> None:
        first = read(1)[0]
        if first < 0xC0:
            skip(length(first))
        elif first < 0xC3:  # an integer of 1, 2 or 4 bytes
            skip(1 << (first & 0x3F))
        elif first == 0xC3:  # LZF: compressed length, original length, compressed bytes
            compressed = number()
            number()
            skip(compressed)
        else:
            raise Unknown(f"string encoding {first:#x}")

    def strings(count: int) -> None:
        for _ in range(count):
            string()

    def module_value() -> None:
        """Typed items (rdbLoadCheckModuleValue) up to the module EOF mark."""
        while opcode := number():
            if opcode in (1, 2):  # signed, unsigned integer
                number()
            elif opcode in (3, 4):  # float, double
                skip(4 if opcode == 3 else 8)
            elif opcode == 5:
                string()
            else:
                raise Unknown(f"module opcode {opcode}")

    def stream(kind: int) -> None:
        for _ in range(number()):  # listpacks: master id, listpack
            strings(2)
        for _ in range(3 + (5 if kind >= 19 else 0)):  # length, last id (first, deleted, added)
            number()
        for _ in range(number()):  # consumer groups: name, last id (entries read)
            string()
            for _ in range(2 + (kind >= 19)):
                number()
            for _ in range(number()):  # pending entries: id, delivery time, count
                skip(16 + 8)
                number()
            for _ in range(number()):  # consumers: name, seen (and active) time, pending ids
                string()
                skip(8 if kind < 21 else 16)
                skip(16 * number())

    def value(kind: int) -> None:  # noqa: PLR0912 - one branch per RDB type
        """Step over one value of RDB type `kind` (rdbLoadObject)."""
        if kind in ONE_STRING:
            string()
        elif kind in (1, 2, 14):  # list, set: strings; quicklist: ziplists
            strings(number())
        elif kind == 4:  # hash: fields and values
            strings(2 * number())
        elif kind == 3:  # sorted set: member, score as a string (253-255: NaN, +inf, -inf)
            for _ in range(number()):
                string()
                size = read(1)[0]
                skip(size if size < 253 else 0)
        elif kind == 5:  # sorted set 2: member, binary double
            for _ in range(number()):
                string()
                skip(8)
        elif kind == 18:  # quicklist 2: container kind, listpack or plain element
            for _ in range(number()):
                number()
                string()
        elif kind in STREAMS:
            stream(kind)
        elif kind == 7:  # module value with annotations: module id, typed items
            number()
            module_value()
        elif newer_types == "redis" and kind in (22, 24):  # hash with field TTLs (24: minExpire)
            skip(8 if kind == 24 else 0)
            for _ in range(number()):
                number()  # the field's TTL
                strings(2)
        elif newer_types == "redis" and kind in (23, 25):  # listpack hash with field TTLs
            skip(8 if kind == 25 else 0)
            string()
        elif newer_types == "valkey" and kind == 22:  # Valkey hash 2: field, value, expiry
            for _ in range(number()):
                strings(2)
                skip(8)
        else:
            raise Unknown(f"value type {kind}")

    magic = read(9)
    # Types from 22 on mean one thing in Redis 7.4+ (RDB 12+), another in Valkey 9 (VALKEY080+).
    engine = "valkey" if magic.startswith(b"VALKEY") else "redis"
    digits = magic[len(engine) :]
    newer_types = engine if digits.isdigit() and int(digits) >= 12 else ""
    counts: dict[str, dict[str, int]] = {}
    db = counts.setdefault("db0", _empty())
    expires = False
    while True:
        opcode = read(1)[0]
        if opcode == EOF:
            break
        if opcode == SELECTDB:
            db = counts.setdefault(f"db{number()}", _empty())
        elif opcode == RESIZEDB:
            db["resizedb_keys"], db["resizedb_expires"] = number(), number()
        elif opcode in (EXPIRETIME_MS, EXPIRETIME):
            skip(8 if opcode == EXPIRETIME_MS else 4)
            expires = True
        elif opcode == IDLE:
            number()
        elif opcode == FREQ:
            skip(1)
        elif opcode == AUX:
            strings(2)
        elif opcode == FUNCTION2:
            string()
        elif opcode == SLOT_INFO:
            number(), number(), number()
        elif opcode == MODULE_AUX:
            number(), number(), number()  # module id, when opcode, when
            module_value()
        else:
            string()  # the key
            value(opcode)
            db["keys"] += 1
            db["expires"] += expires
            expires = False
    if len(read(CHECKSUM_LENGTH + 1)) not in (0, CHECKSUM_LENGTH):
        raise Unknown("bytes follow the EOF opcode and the checksum")
    return {name: found for name, found in counts.items() if name != "db0" or any(found.values())}


def _empty() -> dict[str, int]:
    return {"keys": 0, "expires": 0}


def file_keyspace(path: Path) -> dict[str, dict[str, int]]:
    """{"dbN": {"keys", "expires"}} of the RDB file at `path`; raise Unknown when it cannot be
    walked to its end (OSError when it cannot be read)."""
    with path.open("rb", buffering=CHUNK) as stream:
        found = walk(stream)
    return {db: {"keys": sizes["keys"], "expires": sizes["expires"]} for db, sizes in found.items()}
