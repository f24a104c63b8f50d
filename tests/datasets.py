"""One test dataset for backup, restore and proxy tests: every Redis type in every encoding.

    from tests import datasets
    loaded = datasets.load(client)          # or a redis:// URL; asserts the encodings reached
    before = datasets.snapshot(client)      # {(db, key): Entry(type, value, expires, deadline_ms)}
    ...                                     # back up, restore somewhere else
    datasets.assert_same(before, datasets.snapshot(other))   # or compare() for the differences

What it holds (about 1.5 MiB, loads in well under a second):
- db0: strings (int, embstr, raw, a 1 MiB value), lists (small, big), sets (intset, small
  strings, big), 50 small sets of strings (hash-table sets whose DUMP order changes on
  RESTORE), hashes, sorted sets, a stream with two consumer groups, pending and deleted
  entries, HyperLogLogs (sparse and dense), a bitmap, geo sets (small, big); and on servers
  with hash field TTLs (Redis 7.4+, Valkey 9+) hashes with some fields expiring (their own
  RDB types; a snapshot holds each such field's deadline).
- db1: keys and values with binary bytes (NUL, 0xff, CR/LF) and spaces.
- db2: TTLs in seconds and in milliseconds on several types, next to keys without one.
- db15: the highest database of a default server.

Encodings differ by server and `load` says which it expects for the one it fills, known by
INFO's `server_name` and `valkey_version` (Valkey reports `redis_version:7.2.4` whatever its
release) or `redis_version`. The differences, observed on every build of tests/servers.py:
- small hashes and sorted sets (and a small geo set): ziplist on Redis 6.2, listpack from 7.0;
- small lists and small sets of strings: quicklist and hashtable before Redis 7.2, listpack
  from Redis 7.2 and on every Valkey;
- a small hash with a field TTL: listpackex on Redis, hashtable on Valkey 9;
- short strings: Redis up to 7.x keeps a value of up to 44 bytes in one allocation with its
  object (embstr). Redis 8 and Valkey 8.1 put the key, and a TTL, in that allocation too:
  embstr while key + value <= 41 bytes (33 with a TTL). Valkey 9.1 drops the object's pointer
  and allows key + value <= 113 bytes (105 with a TTL). (For keys under 32 bytes, as all of
  the dataset's; a longer key takes a bigger header.) `str:44` sits on that difference on
  purpose (embstr on Redis 6.2/7.0 and Valkey 9.1, raw on Valkey 8.1 and Redis 8.2), and so
  does `db15:key` (40 bytes).
Every other key reaches the same encoding on every build (`list:big` is well over a listpack's
8 KiB, `str:raw` over any embstr limit), so each build sees every encoding it has. A server
configured with other thresholds, or a build that encodes differently, fails `load` loudly
rather than losing coverage silently.
"""

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis

DATABASES = (0, 1, 2, 15)
BIG_VALUE_BYTES = 1 << 20
TTL_SLACK_MS = 60_000  # a DUMP/PTTL/RESTORE copy re-bases a TTL on the target's clock
SMALL_SETS = 50
STR_44 = "v" * 44  # embstr or raw depending on the server (see above)
DB15_VALUE = "in the last database of a default server"  # 40 bytes: the same

Source = redis.Redis | str


class Server(NamedTuple):
    """Which server a dataset lives on: "redis" or "valkey", and its own (major, minor)."""

    flavour: str
    version: tuple[int, int]

    def __str__(self) -> str:
        return f"{self.flavour.title()} {self.version[0]}.{self.version[1]}"


class Entry(NamedTuple):
    """One key as read back: its type, its value in a comparable form, and its TTL."""

    type: str
    value: Any
    expires: bool
    deadline_ms: int | None  # absolute expiry, Unix milliseconds


@dataclass
class Loaded:
    """What `load` wrote: the server, and the encoding each key reached."""

    server: Server
    encodings: dict[tuple[int, bytes], str] = field(default_factory=dict)

    @property
    def version(self) -> tuple[int, int]:
        """The server's own release (Valkey's, not its `redis_version`)."""
        return self.server.version

    @property
    def keys(self) -> int:
        return len(self.encodings)


def client_for(source: Source, db: int) -> redis.Redis:
    """A client on database `db` of the server `source` names (a client or a URL); bytes out."""
    if isinstance(source, str):
        return redis.Redis.from_url(source, db=db, decode_responses=False)
    pool = source.connection_pool
    kwargs = {**pool.connection_kwargs, "db": db, "decode_responses": False}
    return redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


def server_of(client: redis.Redis) -> Server:
    """The server's flavour and own release, from INFO server."""
    info = client.info("server")
    flavour = str(info.get("server_name", "redis")).lower()
    text = info.get("valkey_version") if flavour == "valkey" else info["redis_version"]
    major, minor = str(text).split(".")[:2]
    return Server(flavour, (int(major), int(minor)))


# --- loading -----------------------------------------------------------------------------


def load(source: Source, seed: int = 7) -> Loaded:
    """Empty databases 0, 1, 2 and 15 (FLUSHDB), fill them with the dataset, and check that
    every key reached the encoding this server version should give it."""
    first = client_for(source, 0)
    loaded = Loaded(server_of(first))
    expected: dict[tuple[int, bytes], str] = {}
    rng = random.Random(seed)
    for db, fill in ((0, _types), (1, _binary), (2, _ttls), (15, _highest_db)):
        client = client_for(source, db)
        pipe = client.pipeline(transaction=False)
        pipe.flushdb()
        for key, encoding in fill(pipe, rng, loaded.server).items():
            expected[(db, key)] = encoding
        pipe.execute()
        if db == 0:
            _stream_groups(client)
        for key in [key for (where, key) in expected if where == db]:
            loaded.encodings[(db, key)] = client.object("encoding", key).decode()
        client.close()
    first.close()
    wrong = {
        f"db{db} {key!r}: {found}, expected {expected[(db, key)]}"
        for (db, key), found in loaded.encodings.items()
        if found != expected[(db, key)]
    }
    assert not wrong, f"dataset lost coverage on {loaded.server}: {sorted(wrong)}"
    return loaded


def _redis_7_2_or_valkey(server: Server) -> bool:
    return server.flavour == "valkey" or server.version >= (7, 2)


def _listpack_lists(server: Server) -> str:
    """Small lists: listpack from Redis 7.2 (and on every Valkey), quicklist before."""
    return "listpack" if _redis_7_2_or_valkey(server) else "quicklist"


def _listpack_sets(server: Server) -> str:
    """Small sets of strings: listpack from Redis 7.2 (and on every Valkey), hashtable before."""
    return "listpack" if _redis_7_2_or_valkey(server) else "hashtable"


def _listpack(server: Server) -> str:
    """Small hashes and sorted sets: listpack since Redis 7.0, ziplist before."""
    return "listpack" if server.flavour == "valkey" or server.version >= (7, 0) else "ziplist"


def field_ttls(server: Server) -> bool:
    """Whether the server has hash field TTLs (HEXPIRE, HPEXPIRETIME)."""
    return server.version >= ((7, 4) if server.flavour == "redis" else (9, 0))


def _string(server: Server, key: bytes | str, value: bytes | str, ttl: bool = False) -> str:
    """embstr or raw for a string value that is not an integer (see the module docstring)."""
    size = len(value)
    # Valkey 7.2 is Redis 7.2.4; 8.0 was not measured and is taken to be the same.
    if server.version < ((8, 0) if server.flavour == "redis" else (8, 1)):
        return "embstr" if size <= 44 else "raw"
    # Redis 8 and Valkey 8.1+ embed the key (and a TTL) with the value; Valkey 9.1 has room.
    room = 113 if server.flavour == "valkey" and server.version >= (9, 1) else 41
    return "embstr" if len(key) + size <= room - (8 if ttl else 0) else "raw"


def _types(pipe, rng: random.Random, server: Server) -> dict[bytes, str]:
    """Every type in every encoding, in db0."""
    pipe.set("str:int", 12345)
    pipe.set("str:embstr", "short value")
    pipe.set("str:44", STR_44)
    pipe.set("str:raw", "r" * 200)
    pipe.set("str:1mib", rng.randbytes(BIG_VALUE_BYTES))
    pipe.rpush("list:small", "a", "b", "c", "d", "e")
    pipe.rpush("list:big", *(f"item-{i:04d}-{'x' * 12}" for i in range(1000)))  # 21 KB
    pipe.sadd("set:intset", *range(100))
    pipe.sadd("set:small", *(f"m{i}" for i in range(1, 10)))
    pipe.sadd("set:big", *(f"member-{i}" for i in range(600)))
    for i in range(1, SMALL_SETS + 1):  # the sets whose DUMP payload a RESTORE reorders
        pipe.sadd(f"set:many:{i}", *(f"m{n}" for n in range(1, 10)))
    pipe.hset("hash:small", mapping={f"f{i}": f"v{i}" for i in range(10)})
    pipe.hset("hash:big", mapping={f"field-{i}": i for i in range(600)})
    pipe.zadd("zset:small", {f"z{i}": i * 1.5 for i in range(10)})
    pipe.zadd("zset:big", {f"member-{i}": rng.random() for i in range(300)})
    for i in range(100):
        pipe.xadd("stream", {"n": i, "payload": "x" * 20}, id=f"{1_700_000_000_000 + i}-0")
    pipe.xdel("stream", f"{1_700_000_000_000 + 50}-0")
    pipe.pfadd("hll:sparse", *(f"user-{i}" for i in range(100)))
    for start in range(0, 5000, 1000):
        pipe.pfadd("hll:dense", *(f"user-{i}" for i in range(start, start + 1000)))
    pipe.setbit("bitmap", 100_000, 1)
    pipe.setbit("bitmap", 7, 1)
    pipe.geoadd("geo:small", (13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"))
    places = []
    for i in range(200):
        places += [rng.uniform(-170, 170), rng.uniform(-80, 80), f"place-{i}"]
    pipe.geoadd("geo:big", places)
    small_sets = {
        f"set:many:{i}".encode(): _listpack_sets(server) for i in range(1, SMALL_SETS + 1)
    }
    expiring_fields = {}
    if field_ttls(server):
        pipe.hset("hash:field-ttl", mapping={"a": "1", "b": "2", "c": "3"})
        pipe.execute_command("HPEXPIRE", "hash:field-ttl", 3_600_123, "FIELDS", 1, "a")
        pipe.hset("hash:field-ttl:big", mapping={f"field-{i}": i for i in range(600)})
        pipe.execute_command(
            "HEXPIRE", "hash:field-ttl:big", 7200, "FIELDS", 2, "field-1", "field-7"
        )
        small = "listpackex" if server.flavour == "redis" else "hashtable"
        expiring_fields = {b"hash:field-ttl": small, b"hash:field-ttl:big": "hashtable"}
    return {
        **expiring_fields,
        b"str:int": "int",
        b"str:embstr": "embstr",
        b"str:44": _string(server, "str:44", STR_44),
        b"str:raw": "raw",
        b"str:1mib": "raw",
        b"list:small": _listpack_lists(server),
        b"list:big": "quicklist",
        b"set:intset": "intset",
        b"set:small": _listpack_sets(server),
        b"set:big": "hashtable",
        **small_sets,
        b"hash:small": _listpack(server),
        b"hash:big": "hashtable",
        b"zset:small": _listpack(server),
        b"zset:big": "skiplist",
        b"stream": "stream",
        b"hll:sparse": "raw",
        b"hll:dense": "raw",
        b"bitmap": "raw",
        b"geo:small": _listpack(server),
        b"geo:big": "skiplist",
    }


def _stream_groups(client: redis.Redis) -> None:
    """Two groups: one with pending (some acknowledged) entries, one with an idle consumer."""
    client.xgroup_create("stream", "workers", id="0")
    client.xreadgroup("workers", "w1", {"stream": ">"}, count=10)
    client.xreadgroup("workers", "w2", {"stream": ">"}, count=5)
    client.xack("stream", "workers", f"{1_700_000_000_000}-0", f"{1_700_000_000_000 + 1}-0")
    client.xgroup_create("stream", "audit", id="$")
    client.xgroup_createconsumer("stream", "audit", "idle-reader")


BINARY_KEYS = {
    b"bin:\x00nul\x00": b"value with \x00 inside",
    b"bin:\xff\xfe\x80": bytes(range(256)),
    b"bin:cr\r\nlf\n": b"line one\r\nline two\n",
    b"key with spaces": b"value with spaces",
    b"\x00": b"\xff",
    b" ": b"",
}


def _binary(pipe, rng: random.Random, server: Server) -> dict[bytes, str]:
    """Binary-safe names and values, in db1: in keys, members, fields and stream entries."""
    for key, value in BINARY_KEYS.items():
        pipe.set(key, value)
    pipe.hset(b"hash:\x00bin", mapping={b"f\x00\xff": b"\r\n", b"field two": b"\x00"})
    pipe.sadd(b"set:\r\nbin", b"\x00", b"\xff", b"a b", b"\r\n")
    pipe.zadd(b"zset:\xffbin", {b"\x00m": 1.0, b"m\xff": -2.5, b"with space": 0})
    pipe.rpush(b"list:\x00bin", b"\x00", b"\xff\xfe", b"\r\n")
    pipe.xadd(b"stream:\x00bin", {b"f\x00": b"\xff"}, id="1-1")
    return {
        **{key: _string(server, key, value) for key, value in BINARY_KEYS.items()},
        b"hash:\x00bin": _listpack(server),
        b"set:\r\nbin": _listpack_sets(server),
        b"zset:\xffbin": _listpack(server),
        b"list:\x00bin": _listpack_lists(server),
        b"stream:\x00bin": "stream",
    }


def _ttls(pipe, rng: random.Random, server: Server) -> dict[bytes, str]:
    """TTLs in seconds and in milliseconds (an odd millisecond count), beside keys without."""
    pipe.set("ttl:seconds", "an hour", ex=3600)
    pipe.set("ttl:milliseconds", "an hour and a bit", px=3_600_123)
    pipe.set("ttl:none", "forever")
    pipe.hset("ttl:hash", mapping={"a": 1, "b": 2})
    pipe.expire("ttl:hash", 7200)
    pipe.sadd("ttl:set", *(f"m{i}" for i in range(200)))
    pipe.pexpire("ttl:set", 5_400_321)
    pipe.rpush("ttl:list", "x", "y")
    pipe.expireat("ttl:list", int(time.time()) + 86_400)
    return {
        b"ttl:seconds": _string(server, "ttl:seconds", "an hour", ttl=True),
        b"ttl:milliseconds": _string(server, "ttl:milliseconds", "an hour and a bit", ttl=True),
        b"ttl:none": "embstr",
        b"ttl:hash": _listpack(server),
        b"ttl:set": "hashtable",
        b"ttl:list": _listpack_lists(server),
    }


def _highest_db(pipe, rng: random.Random, server: Server) -> dict[bytes, str]:
    pipe.set("db15:key", DB15_VALUE)
    pipe.zadd("db15:zset", {"only": 1})
    return {b"db15:key": _string(server, "db15:key", DB15_VALUE), b"db15:zset": _listpack(server)}


# --- reading back ------------------------------------------------------------------------


def snapshot(
    source: Source, databases: Iterable[int] | None = None
) -> dict[tuple[int, bytes], Entry]:
    """Every key of every database (or of `databases`): type, value, TTL."""
    first = client_for(source, 0)
    if databases is None:
        keyspace = first.info("keyspace")
        databases = [int(name[2:]) for name in keyspace if name.startswith("db")]
    server = server_of(first)
    exact_deadlines = server.flavour == "valkey" or server.version >= (7, 0)
    fields = field_ttls(server)
    first.close()
    found = {}
    for db in databases:
        client = client_for(source, db)
        for key in client.scan_iter(count=1000):
            entry = read_entry(client, key, exact_deadlines, fields)
            if entry is not None:
                found[(db, key)] = entry
        client.close()
    return found


def read_entry(
    client: redis.Redis, key: bytes, exact_deadlines: bool = True, field_ttls: bool = False
) -> Entry | None:
    """One key as an Entry; None if it is gone (expired while we looked).

    The deadline is PEXPIRETIME (Redis 7.0+, exact), or this clock plus PTTL before 7.0. With
    `field_ttls`, a hash whose fields expire also holds each such field's deadline.
    """
    kind = client.type(key).decode()
    if kind == "none":
        return None
    value = READERS[kind](client, key)
    if kind == "hash" and field_ttls:
        value = _with_field_deadlines(client, key, value)
    pttl = client.pttl(key)
    if pttl == -2:
        return None
    deadline = None
    if pttl >= 0:
        deadline = (
            client.execute_command("PEXPIRETIME", key)
            if exact_deadlines
            else int(time.time() * 1000) + pttl
        )
    return Entry(kind, value, pttl >= 0, deadline)


def _with_field_deadlines(client: redis.Redis, key: bytes, items: tuple) -> tuple:
    """A hash's items, and (field, deadline in Unix ms) for its fields that expire; the
    items alone when none does, so that it compares equal to a server without field TTLs."""
    names = [name for name, _ in items]
    deadlines = client.execute_command("HPEXPIRETIME", key, "FIELDS", len(names), *names)
    expiring = tuple((name, at) for name, at in zip(names, deadlines, strict=True) if at >= 0)
    return (items, expiring) if expiring else items


def _stream(client: redis.Redis, key: bytes) -> tuple:
    """Entries, stream counters, groups with their consumers and pending entries.

    Times (a consumer's seen-time, a pending entry's idle time) are left out: an AOF does
    not record them, and a copy is taken later than its source by definition.
    """
    info = _text_keys(client.xinfo_stream(key))
    counters = tuple(
        (name, info.get(name))
        for name in ("length", "last-generated-id", "max-deleted-entry-id", "entries-added")
    )
    groups = []
    for group in map(_text_keys, client.xinfo_groups(key)):
        name = group["name"]
        consumers = sorted(
            (consumer["name"], consumer["pending"])
            for consumer in map(_text_keys, client.xinfo_consumers(key, name))
        )
        pending = [
            (entry["message_id"], entry["consumer"], entry["times_delivered"])
            for entry in client.xpending_range(key, name, "-", "+", 100_000)
        ]
        fields = ("last-delivered-id", "pending", "entries-read")
        groups.append((name, [(f, group.get(f)) for f in fields], consumers, pending))
    return tuple(client.xrange(key)), counters, sorted(groups)


def _text_keys(reply: dict) -> dict:
    """redis-py's XINFO replies have str or bytes keys depending on its version."""
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in reply.items()}


READERS = {
    "string": lambda client, key: client.get(key),
    "list": lambda client, key: tuple(client.lrange(key, 0, -1)),
    "set": lambda client, key: frozenset(client.smembers(key)),
    "hash": lambda client, key: tuple(sorted(client.hgetall(key).items())),
    "zset": lambda client, key: tuple(client.zrange(key, 0, -1, withscores=True)),
    "stream": _stream,
}


# --- comparing ---------------------------------------------------------------------------


def compare(
    expected: dict[tuple[int, bytes], Entry],
    actual: dict[tuple[int, bytes], Entry],
    ttl_slack_ms: int = TTL_SLACK_MS,
) -> list[str]:
    """Every difference between two snapshots, one line each (empty when they are the same)."""
    problems = [f"db{db} {key!r}: missing" for (db, key) in expected.keys() - actual.keys()]
    problems += [f"db{db} {key!r}: not expected" for (db, key) in actual.keys() - expected.keys()]
    for where in sorted(expected.keys() & actual.keys()):
        want, got = expected[where], actual[where]
        name = f"db{where[0]} {where[1]!r}"
        if got.type != want.type:
            problems.append(f"{name}: type {got.type}, expected {want.type}")
        elif got.value != want.value:
            problems.append(f"{name}: the {want.type} value differs")
        if got.expires != want.expires:
            problems.append(f"{name}: TTL {'set' if got.expires else 'missing'}")
        elif want.expires and abs(got.deadline_ms - want.deadline_ms) > ttl_slack_ms:
            problems.append(f"{name}: expires {got.deadline_ms - want.deadline_ms} ms off")
    return sorted(problems)


def assert_same(
    expected: dict[tuple[int, bytes], Entry],
    actual: dict[tuple[int, bytes], Entry],
    ttl_slack_ms: int = TTL_SLACK_MS,
) -> None:
    problems = compare(expected, actual, ttl_slack_ms)
    assert not problems, f"{len(problems)} difference(s): " + "; ".join(problems[:10])
