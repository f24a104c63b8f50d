"""Check an RDB file while it streams past: header, known version, EOF opcode, CRC64 trailer.

The RDB format: a 9-byte magic (`REDIS0010`, or `VALKEY080` on Valkey 9), records, the EOF
opcode 0xFF, then the CRC64 of every byte before the trailer, 8 bytes little-endian (Jones
polynomial, reflected, init 0). A zero trailer means the file was written with
`rdbchecksum no`: it is reported "unverifiable", never "ok".
"""

from dataclasses import dataclass

import anycrc

from redkeep.errors import RedkeepError

MAGIC_LENGTH = 9
TRAILER_LENGTH = 8
EOF_OPCODE = 0xFF
# RDB versions this release knows: Redis 2.x to 8.6 (13), Valkey 9.0 and 9.2 (80, 81).
KNOWN_REDIS_VERSIONS = range(1, 14)
KNOWN_VALKEY_VERSIONS = (80, 81)

_CRC64 = anycrc.Model("CRC64-REDIS")


def crc64(data: bytes, crc: int = 0) -> int:
    """Redis's CRC64 of `data`, continuing from `crc` (so it can be computed chunk by chunk)."""
    return _CRC64.calc(data, crc)


class RdbError(RedkeepError):
    """The bytes are not a complete, intact RDB file."""


@dataclass(frozen=True)
class RdbCheck:
    engine: str  # "redis" or "valkey"
    version: int
    size: int
    crc64: str  # the trailer, hex
    checksum: str  # "ok" or "unverifiable"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def parse_magic(header: bytes) -> tuple[str, int]:
    """Return (engine, RDB version) of a 9-byte header; raise RdbError if it is not an RDB."""
    if header[:5] == b"REDIS" and header[5:9].isdigit():
        engine, version = "redis", int(header[5:9])
        known = version in KNOWN_REDIS_VERSIONS
    elif header[:6] == b"VALKEY" and header[6:9].isdigit():
        engine, version = "valkey", int(header[6:9])
        known = version in KNOWN_VALKEY_VERSIONS
    else:
        raise RdbError(f"not an RDB file: it starts with {header[:9]!r}, not REDIS00NN")
    if not known:
        raise RdbError(
            f"unknown RDB version {version} ({engine}); this redkeep knows "
            f"{KNOWN_REDIS_VERSIONS.start}-{KNOWN_REDIS_VERSIONS.stop - 1} and Valkey 80-81: "
            "upgrade redkeep"
        )
    return engine, version


class RdbValidator:
    """Feed an RDB in chunks; `finish()` checks the end and returns what was found.

    Holds back the last 8 bytes (the candidate trailer) so the CRC covers exactly the bytes
    before it, without ever keeping more than a few bytes of the file.
    """

    def __init__(self) -> None:
        self._header = b""
        self._engine = ""
        self._version = 0
        self._tail = b""
        self._crc = 0
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if len(self._header) < MAGIC_LENGTH:
            self._header += chunk[: MAGIC_LENGTH - len(self._header)]
            if len(self._header) == MAGIC_LENGTH:
                self._engine, self._version = parse_magic(self._header)
        # Keep the trailer candidate and the byte before it (the EOF opcode) for finish().
        # The chunk is read in place (a memoryview): no copy of the bytes passing through.
        held = TRAILER_LENGTH + 1
        if len(chunk) < held:
            data = self._tail + chunk
            self._crc = crc64(data[:-held], self._crc) if len(data) > held else self._crc
            self._tail = data[-held:]
            return
        self._crc = crc64(memoryview(chunk)[:-held], crc64(self._tail, self._crc))
        self._tail = bytes(chunk[-held:])

    def finish(self) -> RdbCheck:
        """Check the EOF opcode and the CRC64; raise RdbError for a truncated or damaged file."""
        if self._size < MAGIC_LENGTH + 1 + TRAILER_LENGTH:
            raise RdbError(f"truncated RDB: only {self._size} bytes")
        if len(self._header) == MAGIC_LENGTH and not self._engine:
            parse_magic(self._header)
        opcode, trailer = self._tail[0], self._tail[1:]
        if opcode != EOF_OPCODE:
            raise RdbError("truncated RDB: it does not end with the EOF opcode and a checksum")
        computed = crc64(bytes([opcode]), self._crc)
        stored = int.from_bytes(trailer, "little")
        if stored == 0:
            status = "unverifiable"
        elif stored == computed:
            status = "ok"
        else:
            raise RdbError(
                f"RDB checksum mismatch: trailer {stored:016x}, computed {computed:016x} "
                "(the file is damaged)"
            )
        return RdbCheck(self._engine, self._version, self._size, f"{stored:016x}", status)


def check_rdb_bytes(data: bytes) -> RdbCheck:
    """Check a whole RDB held in memory (small files and tests)."""
    validator = RdbValidator()
    validator.feed(data)
    return validator.finish()
