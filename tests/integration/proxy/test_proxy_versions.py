"""`redkeep proxy` in front of every server build, judged on the server itself:

- transparency: the command families of test_transparency.py, RESP3 after HELLO 3 included,
  get byte-identical replies through the proxy and directly;
- the policy goes by name: every command the build lists in COMMAND that the default policy
  does not deny reaches the server (Valkey's COMMANDLOG, DELIFEQ ..., Redis 8's vector sets),
  and each denied one is refused on every build;
- no spelling with a NUL byte of a denied name runs on the server (INFO commandstats), on
  every build; sent directly, such frames do run FLUSHALL on each Redis build (most of them
  on Redis 8.2, docs/versions.md).
"""

import socket

import hiredis
import redis

from redkeep.config.schema import DEFAULT_DENIED_COMMANDS
from tests.integration.proxy.conftest import command, read_replies
from tests.integration.proxy.test_transparency import (
    ATTEMPTS,
    END,
    exchange,
    families,
    fresh,
    ran,
)

DENIED = {entry.lower() for entry in DEFAULT_DENIED_COMMANDS if " " not in entry}
# Left out of the by-name sweep: they change what the rest of the connection means.
SESSION = {"multi", "quit", "hello", "reset", "subscribe", "psubscribe", "ssubscribe"}
# Redis 6.2's guard against HTTP requests: it closes the connection.
CLOSES = {"post", "host:"}
REFUSED = b"is denied by the redkeep proxy"


def replies(sock: socket.socket, count: int) -> list:
    """`count` replies of any shape, parsed (an error reply is a hiredis.ReplyError)."""
    reader, found = hiredis.Reader(), []
    while len(found) < count:
        reply = reader.gets()
        if reply is False:
            chunk = sock.recv(1 << 20)
            assert chunk, f"the connection closed after {len(found)} replies"
            reader.feed(chunk)
        else:
            found.append(reply)
    return found


def refused_by_proxy(reply) -> bool:
    return isinstance(reply, hiredis.ReplyError) and REFUSED.decode() in str(reply)


def until_end(sock: socket.socket) -> bytes:
    received = b""
    while not received.endswith(b"transparency-end\r\n"):
        chunk = sock.recv(1 << 20)
        assert chunk, "the connection closed"
        received += chunk
    return received


def test_replies_are_byte_identical_through_the_proxy(server_build, server_factory, start_proxy):
    server = server_factory(server_build)
    stream = families()
    fresh(server.port)
    direct = exchange(server.port, stream)
    assert b"transparency-end" in direct and b"%" in direct  # RESP3 maps after HELLO 3
    proxy = start_proxy(upstream=server.port)
    fresh(server.port)
    assert exchange(proxy.port, stream) == direct


def test_the_policy_goes_by_name_on_each_build(server_build, server_factory, start_proxy):
    server = server_factory(server_build)
    direct = redis.Redis(port=server.port, decode_responses=True)
    names = sorted({name.lower() for name in direct.command()})  # {name: details}
    assert "get" in names and len(names) > 200
    proxy = start_proxy(upstream=server.port)

    # Each name alone (mostly an arity error from the server), through the proxy.
    swept = [name for name in names if name not in SESSION | CLOSES]
    sock = proxy.connect(timeout=30)
    sock.sendall(b"".join(command(name) for name in swept))
    through = dict(zip(swept, replies(sock, len(swept)), strict=True))
    refused = sorted(name for name, reply in through.items() if refused_by_proxy(reply))
    assert refused == sorted(DENIED & set(swept))
    # What the server answered through the proxy is what it answers directly (errors only:
    # they do not depend on time or data).
    plain = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    checked = [name for name in swept if name not in DENIED]
    plain.sendall(b"".join(command(name) for name in checked))
    for name, reply in zip(checked, replies(plain, len(checked)), strict=True):
        if isinstance(reply, hiredis.ReplyError):
            assert str(through[name]) == str(reply), name
    own = {"valkey": {"commandlog"}, "redis": set()}[server_build.flavour]
    if server_build.name == "valkey-9.1.2":
        own |= {"delifeq", "clusterscan"}
    if server_build.name == "redis-8.2.3":
        own |= {"vadd", "vsim", "hgetex"}
    assert own <= set(checked) and not any(refused_by_proxy(through[name]) for name in own)

    # Each default deny entry, as an attacker would send it: refused, and nothing of it ran.
    direct.set("canary", "alive")
    direct.config_resetstat()
    sock = proxy.connect()
    sock.sendall(b"".join(command(*args) for args in ATTEMPTS.values()) + END)
    attempts = read_replies(sock, len(ATTEMPTS) + 1)
    assert all(REFUSED in reply for reply in attempts[:-1]), attempts
    # (Redis 6.2 counts CONFIG RESETSTAT as cmdstat_config: maxmemory tells CONFIG SET apart.)
    resetstat = (
        "cmdstat_config|resetstat" if server_build.version >= (7, 0, 0) else "cmdstat_config"
    )
    assert set(ran(direct)) <= {resetstat, "cmdstat_ping", "cmdstat_info"}
    assert direct.get("canary") == "alive" and direct.info("replication")["role"] == "master"
    assert direct.config_get("maxmemory")["maxmemory"] == "0"


def test_no_spelling_with_a_nul_byte_runs_a_denied_command(
    server_build, server_factory, start_proxy
):
    server = server_factory(server_build)
    direct = redis.Redis(port=server.port)
    proxy = start_proxy(upstream=server.port)
    attack = b"".join(
        command(b"FLUSHALL\0%d" % i)
        + command(b"KEYS\0%d" % i, b"*")
        + command(b"CONFIG", b"SET\0%d" % i, b"maxmemory", b"1")
        + b'"FLUSHALL\\x00%d"\r\n' % i
        for i in range(3000)
    )
    direct.set("canary", "alive")
    direct.config_resetstat()
    sock = proxy.connect(timeout=60)
    sock.sendall(attack + END)
    assert until_end(sock).count(REFUSED) == 4 * 3000
    calls = ran(direct)
    for name in ("cmdstat_flushall", "cmdstat_keys", "cmdstat_config|set"):
        assert name not in calls, (name, calls)
    assert direct.get("canary") == b"alive"

    # Control: the same names sent straight to the server. On Redis some run FLUSHALL (on 8.2
    # most of them); on Valkey few or none (0-2 of 3000, docs/versions.md).
    plain = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    plain.sendall(b"".join(command(b"FLUSHALL\0%d" % i) for i in range(3000)) + END)
    until_end(plain)
    flushed = ran(direct).get("cmdstat_flushall", 0)
    if server_build.flavour == "redis":
        assert flushed > (1000 if server_build.version >= (8, 0, 0) else 0)
    else:
        assert flushed <= 10
