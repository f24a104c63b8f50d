"""Whatever Redis accepts from a client, the proxy passes unchanged unless its policy refuses
it by name; and no spelling of a denied name reaches Redis. Judged on Redis itself: replies
compared byte for byte with direct access, and INFO commandstats for what actually ran."""

import re
import socket
import threading

import redis

from tests.conftest import ACL_USERS
from tests.integration.proxy.conftest import command, read_replies

END = command("PING", "transparency-end")
BIG = b"v" * 400_000  # well over the 16 KiB a client that has not logged in may send


def families() -> bytes:
    """Requests from every command family, as a client library would send them."""
    lists = [str(i) for i in range(12)]
    return b"".join(
        [
            command("SET", "s", "v"),
            command("GET", "s"),
            command("APPEND", "s", "more"),
            command("INCR", "n"),
            command("INCRBYFLOAT", "f", "1.5"),
            command("MSET", *[f"m{i}" for i in range(12)]),  # 13 arguments
            command("MGET", "m0", "m2", "m4", "nope"),
            command("SET", "big", BIG),
            command("STRLEN", "big"),
            command("GET", "big"),
            command("GETRANGE", "big", "0", "9"),
            command("HSET", "h", *[f"f{i // 2}" if i % 2 == 0 else "x" for i in range(16)]),
            command("HMSET", "h2", *[f"f{i}" for i in range(20)]),
            command("HGETALL", "h"),
            command("HINCRBY", "h", "c", "3"),
            command("RPUSH", "l", *lists),
            command("LRANGE", "l", "0", "-1"),
            command("LPOP", "l", "2"),
            command("LMOVE", "l", "l2", "LEFT", "RIGHT"),
            command("BLPOP", "l", "0.05"),
            command("BLPOP", "empty", "0.05"),
            command("SADD", "set", *[str(i) for i in range(10)]),  # 12 arguments, an intset
            command("SMISMEMBER", "set", "1", "11"),
            command("SORT", "set"),
            command("ZADD", "z", "1", "a", "2.5", "b", "-inf", "c"),
            command("ZRANGE", "z", "0", "-1", "WITHSCORES"),
            command("ZINCRBY", "z", "1", "a"),
            command("XADD", "st", "1-1", "k", "v"),
            command("XADD", "st", "1-2", "k", "w"),
            command("XGROUP", "CREATE", "st", "g", "0"),
            command("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "st", ">"),
            command("XPENDING", "st", "g"),
            command("XRANGE", "st", "-", "+"),
            command("PFADD", "hll", "a", "b", "c"),
            command("PFCOUNT", "hll"),
            command("SETBIT", "bits", "100", "1"),
            command("BITCOUNT", "bits"),
            command("GEOADD", "geo", "13.36", "38.11", "palermo", "15.08", "37.50", "catania"),
            command("GEODIST", "geo", "palermo", "catania", "km"),
            command("MULTI"),
            command("INCR", "n"),
            command("LPUSH", "s", "x"),  # WRONGTYPE inside EXEC
            command("EXEC"),
            command("WATCH", "n"),
            command("UNWATCH"),
            command("EVAL", "return {1, 'two', {3}}", "0"),
            command("EVALSHA", "0" * 40, "0"),
            command("NOSUCHCOMMAND", "x"),
            command("GET"),
            command("CLIENT", "SETNAME", "transparent"),
            command("CLIENT", "GETNAME"),
            command("SELECT", "1"),
            command("SET", "\x00bin\r\nkey", "\xff"),
            command("DBSIZE"),
            command("SELECT", "0"),
            command("OBJECT", "ENCODING", "h"),
            b"PING\r\n",
            b"SET inline 'a b' \"c\\x41\"\r\n",
            b"GET inline\r\n",
            *(command("INCR", "pipelined") for _ in range(200)),
            command("SUBSCRIBE", "ch1", "ch2"),
            command("PING"),
            command("UNSUBSCRIBE"),
            command("HELLO", "3"),
            command("HGETALL", "h"),
            command("ZRANGE", "z", "0", "-1", "WITHSCORES"),
            command("SUBSCRIBE", "ch3"),
            command("PUBLISH", "ch3", "pushed"),
            command("UNSUBSCRIBE", "ch3"),
            command("HELLO", "2"),
        ]
    )


CLIENT_ID = re.compile(rb"\$2\r\nid\r\n:\d+\r\n")  # in HELLO's reply: differs per connection


def exchange(port: int, stream: bytes) -> bytes:
    """Every byte Redis (or the proxy) answers to `stream`, up to the end marker's reply
    (HELLO's connection id masked)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sender = threading.Thread(target=sock.sendall, args=(stream + END,))
    sender.start()
    received = b""
    try:
        while not received.endswith(b"transparency-end\r\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += chunk
    finally:
        sender.join()
        sock.close()
    return CLIENT_ID.sub(b"$2\r\nid\r\n:ID\r\n", received)


def fresh(port: int, **auth) -> None:
    client = redis.Redis(port=port, **auth)
    client.flushall()
    client.script_flush()
    client.close()


def test_replies_are_byte_identical_through_every_proxy_configuration(plain_redis, start_proxy):
    """A Redis without passwords: its clients never AUTH, and get exactly what they get
    directly: big values, many arguments, MULTI, pub/sub, blocking commands, RESP3."""
    stream = families()
    fresh(plain_redis.port)
    direct = exchange(plain_redis.port, stream)
    assert direct.count(b"-ERR") >= 2 and b"transparency-end" in direct  # the stream ran whole
    assert BIG in direct and b"pushed" in direct
    for flags in (("--pass-through",), (), ("--cmd-rate=1000000",)):
        proxy = start_proxy(*flags, upstream=plain_redis.port)
        fresh(plain_redis.port)
        through = exchange(proxy.port, stream)
        assert through == direct, f"replies differ through the proxy with {flags or 'defaults'}"
        proxy.stop()


def test_clients_that_log_in_get_the_same_replies(acl_redis, start_proxy):
    stream = command("AUTH", "admin", "admin-secret") + families()
    auth = {"username": "admin", "password": "admin-secret"}
    fresh(acl_redis.port, **auth)
    direct = exchange(acl_redis.port, stream)
    proxy = start_proxy(upstream=acl_redis.port)
    fresh(acl_redis.port, **auth)
    assert exchange(proxy.port, stream) == direct


def test_pre_auth_caps_follow_what_redis_asks(plain_redis, acl_redis, start_proxy):
    many = command("MSET", *[f"k{i}" for i in range(12)])
    big = command("SET", "big", BIG)
    # A Redis without passwords: no caps, as Redis applies none.
    open_proxy = start_proxy(upstream=plain_redis.port)
    assert open_proxy.metrics()["redkeep_proxy_upstream_requires_auth"] == 0
    sock = open_proxy.connect()
    sock.sendall(many + big + command("STRLEN", "big"))
    assert read_replies(sock, 3) == [b"+OK", b"+OK", b":%d" % len(BIG)]
    # A Redis that asks for a password: an anonymous client meets the caps (the proxy refuses
    # the frame, Redis never sees it), and a client that logged in does not.
    guarded = start_proxy(upstream=acl_redis.port)
    assert guarded.metrics()["redkeep_proxy_upstream_requires_auth"] == 1
    admin = redis.Redis(port=acl_redis.port, username="admin", password="admin-secret")
    for frame, reason in ((many, b"multibulk"), (big, b"bulk")):
        before = admin.info("stats")["total_net_input_bytes"]
        sock = guarded.connect()
        sock.sendall(frame)
        assert read_replies(sock, 1)[0].startswith(b"-ERR Protocol error")
        assert admin.info("stats")["total_net_input_bytes"] - before < 1000, reason
        assert admin.exists("k0", "big") == 0
    sock = guarded.connect()
    sock.sendall(command("AUTH", "admin", "admin-secret") + many + big)
    assert read_replies(sock, 3) == [b"+OK", b"+OK", b"+OK"]


def ran(client: redis.Redis) -> dict[str, int]:
    """Calls per command as Redis counts them (what really ran, whatever it was called)."""
    return {name: stats["calls"] for name, stats in client.info("commandstats").items()}


def test_no_spelling_of_a_denied_name_runs_on_redis(redis_factory, start_proxy):
    """Redis 7.0 may run `FLUSHALL\\0<suffix>` as FLUSHALL (the lookup hashes the whole name
    but compares up to the NUL). Through the default policy, thousands of such frames, in
    names and subcommands, multibulk and inline, run nothing denied on Redis."""
    server = redis_factory()
    direct = redis.Redis(port=server.port)
    proxy = start_proxy(upstream=server.port)
    attack = b"".join(
        command(b"FLUSHALL\0%d" % i)
        + command(b"CONFIG\0%d" % i, b"SET", b"maxmemory", b"1")
        + command(b"KEYS\0%d" % i, b"*")
        + command(b"SCRIPT", b"KILL\0%d" % i)
        + command(b"CONFIG", b"SET\0%d" % i, b"maxmemory", b"1")
        + b'"FLUSHALL\\x00%d"\r\n' % i
        for i in range(3000)
    )
    direct.set("canary", "alive")
    direct.config_resetstat()
    maxmemory = direct.config_get("maxmemory")
    sock = proxy.connect(timeout=60)
    sock.sendall(attack + END)
    received = b""
    while not received.endswith(b"transparency-end\r\n"):
        chunk = sock.recv(1 << 20)
        assert chunk, "the proxy closed the connection"
        received += chunk
    assert received.count(b"is denied by the redkeep proxy") == 6 * 3000
    calls = ran(direct)
    assert direct.get("canary") == b"alive"
    assert direct.config_get("maxmemory") == maxmemory
    for name in ("cmdstat_flushall", "cmdstat_keys", "cmdstat_config|set", "cmdstat_script|kill"):
        assert name not in calls, (name, calls)
    # Control: sent straight to Redis, the same frames do run FLUSHALL (on 7.0, where the
    # lookup has this flaw), so the assertions above can fail.
    if direct.info("server")["redis_version"].startswith("7.0."):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        sock.sendall(b"".join(command(b"FLUSHALL\0%d" % i) for i in range(3000)) + END)
        received = b""
        while not received.endswith(b"transparency-end\r\n"):
            received += sock.recv(1 << 20)
        assert ran(direct).get("cmdstat_flushall", 0) > 0


def test_a_password_protected_redis_behind_the_bundle_policy(redis_factory, start_proxy):
    """The same attack as a user whose ACL allows FLUSHALL: only the proxy stands between."""
    server = redis_factory(ACL_USERS)
    admin = redis.Redis(port=server.port, username="admin", password="admin-secret")
    admin.set("canary", "alive")
    admin.config_resetstat()
    proxy = start_proxy(upstream=server.port)
    sock = proxy.connect(timeout=60)
    frames = b"".join(command(b"FLUSHALL\0%d" % i) for i in range(3000))
    sock.sendall(command("AUTH", "admin", "admin-secret") + frames + END)
    received = b""
    while not received.endswith(b"transparency-end\r\n"):
        chunk = sock.recv(1 << 20)
        assert chunk, "the proxy closed the connection"
        received += chunk
    assert admin.get("canary") == b"alive"
    assert "cmdstat_flushall" not in ran(admin)


# A plausible request for each default deny entry (what an attacker would send).
ATTEMPTS = {
    "FLUSHALL": ["FLUSHALL"],
    "FLUSHDB": ["FLUSHDB"],
    "SWAPDB": ["SWAPDB", "0", "1"],
    "KEYS": ["KEYS", "*"],
    "CONFIG": ["CONFIG", "SET", "maxmemory", "12345"],
    "DEBUG": ["DEBUG", "SLEEP", "0"],
    "MODULE": ["MODULE", "LIST"],
    "SHUTDOWN": ["SHUTDOWN", "NOSAVE"],
    "REPLICAOF": ["REPLICAOF", "127.0.0.1", "9"],
    "SLAVEOF": ["SLAVEOF", "127.0.0.1", "9"],
    "SYNC": ["SYNC"],
    "PSYNC": ["PSYNC", "?", "-1"],
    "FAILOVER": ["FAILOVER"],
    "MIGRATE": ["MIGRATE", "127.0.0.1", "9", "canary", "0", "100"],
    "SAVE": ["SAVE"],
    "BGSAVE": ["BGSAVE"],
    "BGREWRITEAOF": ["BGREWRITEAOF"],
    "MONITOR": ["MONITOR"],
    "SCRIPT KILL": ["SCRIPT", "KILL"],
    "ACL SETUSER": ["ACL", "SETUSER", "intruder", "on", ">pw", "+@all", "~*"],
    "ACL DELUSER": ["ACL", "DELUSER", "nobody"],
    "ACL LOAD": ["ACL", "LOAD"],
    "ACL SAVE": ["ACL", "SAVE"],
    "CLIENT KILL": ["CLIENT", "KILL", "TYPE", "normal"],
    "CLIENT PAUSE": ["CLIENT", "PAUSE", "100000"],
}


def test_every_default_deny_entry_is_refused_on_redis(redis_factory, start_proxy):
    """Each entry of the default list, sent as an attacker would: Redis runs none of them (it
    stays a primary, keeps its data and settings, and counts no such command)."""
    from redkeep.config.schema import DEFAULT_DENIED_COMMANDS  # noqa: PLC0415

    assert set(ATTEMPTS) == set(DEFAULT_DENIED_COMMANDS)
    server = redis_factory()
    direct = redis.Redis(port=server.port)
    direct.set("canary", "alive")
    direct.config_resetstat()
    proxy = start_proxy(upstream=server.port)
    sock = proxy.connect()
    sock.sendall(b"".join(command(*args) for args in ATTEMPTS.values()) + END)
    replies = read_replies(sock, len(ATTEMPTS) + 1)
    assert all(b"is denied by the redkeep proxy" in reply for reply in replies[:-1]), replies
    calls = set(ran(direct))
    assert calls <= {"cmdstat_config|resetstat", "cmdstat_ping", "cmdstat_info"}, calls
    assert direct.info("replication")["role"] == "master"
    assert direct.get("canary") == b"alive" and direct.config_get("maxmemory")["maxmemory"] == "0"
