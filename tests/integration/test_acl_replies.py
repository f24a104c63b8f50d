"""ACL GETUSER read every way redkeep reads it (hiredis over RESP2 and RESP3, redis-py over
RESP2 and RESP3), on every server build, parses to one and the same user."""

import hashlib
import time

import redis

from redkeep.redis.acl import AclUser, parse_getuser
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target

USERS = [
    "user default off",
    "user admin on >admin-secret ~* &* +@all",
    "user cache on >cache-one >cache-two ~cache:* resetchannels &news +get +set",
    "user open on nopass ~* &* +@all",
]


def raw_replies(port: int, names: list[str], resp3: bool) -> list:
    """ACL GETUSER over a raw connection (as the audit and the exporter read it)."""
    target = Target("redis", "127.0.0.1", port, username="admin", password="admin-secret")
    connection = RawConnection(target, 5.0)
    try:
        connection.login()
        deadline = time.monotonic() + 5
        if resp3:
            (hello,) = connection.pipeline([("HELLO", "3")], deadline)
            assert isinstance(hello, dict)  # the server now answers in RESP3
        return connection.pipeline([("ACL", "GETUSER", name) for name in names], deadline)
    finally:
        connection.close()


def client_replies(port: int, names: list[str], protocol: int) -> list:
    """ACL GETUSER through redis-py (as `redkeep users` reads it)."""
    client = redis.Redis(
        port=port,
        username="admin",
        password="admin-secret",
        protocol=protocol,
        decode_responses=True,
    )
    try:
        return [client.execute_command("ACL", "GETUSER", name) for name in names]
    finally:
        client.close()


def test_every_reply_shape_parses_to_the_same_user(server_build, server_factory):
    server = server_factory(server_build, USERS)
    names = ["default", "admin", "cache", "open", "nobody"]
    shapes = {
        "hiredis RESP2": raw_replies(server.port, names, resp3=False),
        "hiredis RESP3": raw_replies(server.port, names, resp3=True),
        "redis-py RESP2": client_replies(server.port, names, protocol=2),
        "redis-py RESP3": client_replies(server.port, names, protocol=3),
    }
    assert isinstance(shapes["hiredis RESP2"][1], list)  # really two wire shapes
    assert isinstance(shapes["hiredis RESP3"][1], dict)
    parsed = {how: [parse_getuser(reply) for reply in replies] for how, replies in shapes.items()}
    first = parsed["hiredis RESP2"]
    for how, users in parsed.items():
        assert users == first, how
    default, admin, cache, open_user, nobody = first
    assert nobody is None
    assert not default.enabled and default.passwords == ()
    assert admin.enabled and not admin.nopass and "+@all" in admin.commands
    assert open_user.enabled and open_user.nopass
    digests = {hashlib.sha256(word).hexdigest() for word in (b"cache-one", b"cache-two")}
    assert isinstance(cache, AclUser) and set(cache.passwords) == digests
    assert set(cache.commands.split()) == {"-@all", "+get", "+set"}
    # 6.2 lists bare patterns, 7.0+ writes rules; either way one string.
    assert cache.keys in ("~cache:*", "cache:*")
    assert cache.channels in ("&news", "news")
