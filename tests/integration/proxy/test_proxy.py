"""`redkeep proxy` against real redis-server: policy, limits, TLS, restarts, reloads, floods."""

import asyncio
import resource
import socket
import ssl
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings

from tests.conftest import ACL_USERS, REDKEEP
from tests.integration.exporter.test_http_limits import established_from
from tests.integration.proxy.conftest import (
    REFUSED,
    Proxy,
    access_entries,
    closed_without_reply,
    command,
    read_replies,
    start_proxy_process,
)
from tests.servers import RedisServer, free_port, tls_lines
from tests.unit.test_proxy_units import STREAMS


def test_allowed_client_works_and_is_logged(plain_redis, start_proxy):
    proxy = start_proxy(upstream=plain_redis.port)
    client = redis.Redis(port=proxy.port)
    assert client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    client.close()
    proxy.wait_for_metric("redkeep_proxy_commands_total", 2)
    metrics = proxy.metrics()
    assert metrics["redkeep_proxy_connections_accepted_total"] >= 1
    assert metrics["redkeep_proxy_request_scanning"] == 1
    time.sleep(0.2)
    entry = access_entries(proxy.access_log)[-1]
    assert entry["event"] == "connection" and entry["commands"] >= 2 and entry["bytes_in"] > 0


def test_client_outside_the_allowlist_is_refused_before_anything(plain_redis, start_proxy):
    proxy = start_proxy("--allow=127.0.0.1/32", upstream=plain_redis.port)
    outsider = proxy.connect(source="127.0.0.2")
    outsider.sendall(command("PING"))
    assert closed_without_reply(outsider)
    insider = proxy.connect()
    insider.sendall(command("PING"))
    assert read_replies(insider, 1) == [b"+PONG"]
    assert proxy.metrics()['redkeep_proxy_connections_refused_total{reason="not_allowed"}'] == 1


def test_deny_list_wins_and_mapped_addresses_are_normalised(plain_redis, start_proxy):
    proxy = start_proxy("--allow=127.0.0.0/8", "--deny=127.0.0.2/32", upstream=plain_redis.port)
    denied = proxy.connect(source="127.0.0.2")
    assert closed_without_reply(denied)
    assert proxy.metrics()['redkeep_proxy_connections_refused_total{reason="denied"}'] == 1


def test_connection_limit_per_address_holds_and_frees(plain_redis, start_proxy):
    proxy = start_proxy("--max-conns-per-ip=3", "--conn-rate=1000", upstream=plain_redis.port)
    open_ones = [proxy.connect() for _ in range(3)]
    for sock in open_ones:
        sock.sendall(command("PING"))
        assert read_replies(sock, 1) == [b"+PONG"]
    fourth = proxy.connect()
    assert closed_without_reply(fourth)
    other_address = proxy.connect(source="127.0.0.2")  # the limit is per address
    other_address.sendall(command("PING"))
    assert read_replies(other_address, 1) == [b"+PONG"]
    open_ones.pop().close()
    proxy.wait_for_metric("redkeep_proxy_connections_active", 0)  # metrics answer
    deadline = time.monotonic() + 5
    while True:  # the close reaches the proxy asynchronously
        again = proxy.connect()
        again.sendall(command("PING"))
        try:
            assert read_replies(again, 1) == [b"+PONG"]
            break
        except ConnectionError:
            assert time.monotonic() < deadline, "the freed slot was never given back"
            time.sleep(0.05)


def test_new_connection_rate_per_address(plain_redis, start_proxy):
    proxy = start_proxy("--conn-rate=5", upstream=plain_redis.port)
    outcomes = []
    for _ in range(15):
        sock = proxy.connect()
        sock.sendall(command("PING"))
        try:
            outcomes.append(read_replies(sock, 1) == [b"+PONG"])
        except (ConnectionError, OSError):
            outcomes.append(False)
        sock.close()
    assert outcomes[:5] == [True] * 5  # the burst: one second's worth
    assert outcomes.count(False) >= 8
    time.sleep(1.2)  # the bucket refills
    sock = proxy.connect()
    sock.sendall(command("PING"))
    assert read_replies(sock, 1) == [b"+PONG"]
    assert proxy.metrics()['redkeep_proxy_connections_refused_total{reason="conn_rate"}'] >= 8


def test_command_rate_limit_answers_an_error_and_recovers(plain_redis, start_proxy):
    proxy = start_proxy("--cmd-rate=10", upstream=plain_redis.port)
    sock = proxy.connect()
    sock.sendall(b"".join(command("INCR", "counter") for _ in range(30)))
    replies = read_replies(sock, 30)
    passed = [reply for reply in replies if reply.startswith(b":")]
    limited = [reply for reply in replies if REFUSED.match(reply)]
    assert len(passed) == 10 and len(limited) == 20, replies
    assert b"rate limit" in limited[0]
    assert redis.Redis(port=plain_redis.port).get("counter") == b"10"  # refused ones never ran
    time.sleep(1.1)
    sock.sendall(command("PING"))
    assert read_replies(sock, 1) == [b"+PONG"]  # the same connection, usable again
    metrics = proxy.metrics()
    assert metrics['redkeep_proxy_commands_refused_total{reason="rate"}'] == 20


def test_denied_commands_in_every_spelling(plain_redis, start_proxy):
    proxy = start_proxy(upstream=plain_redis.port)  # the default deny list
    direct = redis.Redis(port=plain_redis.port)
    direct.set("canary", "alive")
    sock = proxy.connect()
    sock.sendall(command("FLUSHALL"))
    assert REFUSED.match(read_replies(sock, 1)[0])
    sock.sendall(b'flushall\r\nFlUsHdB ASYNC\r\n"flush"all\r\n')  # inline; quotes unbalanced
    *refusals, protocol_error = read_replies(sock, 3)
    assert all(REFUSED.match(reply) for reply in refusals), refusals
    assert protocol_error.startswith(b"-ERR Protocol error")  # and closed, as Redis does
    assert closed_without_reply(sock)
    sock = proxy.connect()
    sock.sendall(
        command("MULTI")
        + command("SET", "canary", "changed")
        + command("flushall")
        + command("EXEC")
        + command("SCRIPT", "kill")
        + command("script", "LOAD", "return 1")
    )
    multi, queued, refused, exec_reply, script_kill, script_load = read_replies(sock, 6)
    assert (multi, queued) == (b"+OK", b"+QUEUED")
    assert REFUSED.match(refused) and b"FLUSHALL" in refused
    assert exec_reply.startswith(b"-EXECABORT")  # the transaction did not run half
    assert REFUSED.match(script_kill) and b"SCRIPT KILL" in script_kill
    assert len(script_load) == 40  # another SCRIPT subcommand passes
    assert direct.get("canary") == b"alive"
    time.sleep(0.2)
    logged = [e for e in access_entries(proxy.access_log) if e["event"] == "command_refused"]
    assert {e["command"] for e in logged} >= {"FLUSHALL", "FLUSHDB", "SCRIPT KILL"}


def test_auth_is_logged_by_user_and_never_by_password(acl_redis, start_proxy):
    proxy = start_proxy(upstream=acl_redis.port)
    client = redis.Redis(port=proxy.port, username="reader", password="reader-secret")
    assert client.ping()
    client.close()
    sock = proxy.connect()  # before AUTH, Redis' limits: at most 10 arguments
    sock.sendall(command(*["x"] * 11))
    # The proxy stops the frame (Redis answers the proxy's end marker) and logs why.
    assert sock.recv(1024).startswith(b"-ERR Protocol error")
    assert closed_without_reply(sock)
    time.sleep(0.3)
    entries = access_entries(proxy.access_log)
    assert "unauthenticated multibulk length" in entries[-1]["error"]
    log_text = proxy.access_log.read_text()
    assert '"user":"reader"' in log_text
    assert "reader-secret" not in log_text and "reader-secret" not in proxy.log.read_text()


def test_tls_termination_and_mutual_tls_both_ways(mtls_redis, pki, start_proxy):
    tls = pki
    proxy = start_proxy(
        f"--tls-cert={tls.server_cert}",
        f"--tls-key={tls.server_key}",
        f"--tls-client-ca={tls.ca_cert}",
        f"--upstream-tls-ca={tls.ca_cert}",
        f"--upstream-tls-cert={tls.client_cert()}",
        f"--upstream-tls-key={tls.client_key()}",
        upstream=mtls_redis.tls_port,
    )
    good = redis.Redis(
        host="localhost",
        port=proxy.port,
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.client_cert()),
        ssl_keyfile=str(tls.client_key()),
        username="admin",
        password="admin-secret",
    )
    assert good.ping()
    good.close()
    no_cert = redis.Redis(
        host="localhost", port=proxy.port, ssl=True, ssl_ca_certs=str(tls.ca_cert),
        username="admin", password="admin-secret", socket_timeout=2,
    )  # fmt: skip
    refused_tls = 'redkeep_proxy_connections_refused_total{reason="tls"}'
    plaintext = redis.Redis(port=proxy.port, socket_timeout=2)
    for client in (no_cert, plaintext):  # each is turned away by the proxy's TLS
        before = proxy.metrics()[refused_tls]
        with pytest.raises(redis.ConnectionError):
            client.ping()
        proxy.wait_for_metric(refused_tls, before + 1)  # redis-py retries: at least one
    assert proxy.metrics()["redkeep_proxy_connections_accepted_total"] >= 3
    time.sleep(0.2)
    served = [e for e in access_entries(proxy.access_log) if e.get("tls")]
    assert served and served[0]["tls"] in ("TLSv1.2", "TLSv1.3")
    assert served[0]["client_cert"]


def test_old_tls_versions_are_refused(tls_redis, pki, start_proxy, redis_factory):
    """A client offering only TLS 1.0/1.1 (at OpenSSL security level 0, or OpenSSL 3 would
    not even send its hello) is refused by the proxy: the alert comes from the server side."""
    proxy = start_proxy(
        f"--tls-cert={pki.server_cert}", f"--tls-key={pki.server_key}",
        f"--upstream-tls-ca={pki.ca_cert}", upstream=tls_redis.tls_port,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # offering TLS 1.0/1.1 is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    before = proxy.metrics()['redkeep_proxy_connections_refused_total{reason="tls"}']
    with pytest.raises(ssl.SSLError) as refused:
        context.wrap_socket(proxy.connect(), server_hostname="localhost").close()
    # Sent its hello and was turned away (an alert, or the proxy hanging up on it); a client
    # that refused itself would say NO_PROTOCOLS_AVAILABLE or NO_CIPHERS_AVAILABLE.
    assert refused.value.reason in (
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNEXPECTED_EOF_WHILE_READING",
    ), refused.value
    after = proxy.metrics()['redkeep_proxy_connections_refused_total{reason="tls"}']
    assert after == before + 1
    # Control: the same client completes a TLS 1.1 handshake with a server that allows it, so
    # the refusal above is the proxy's choice and not this client's inability.
    legacy = redis_factory(
        [*tls_lines(pki.directory, "no"), 'tls-protocols "TLSv1.1 TLSv1.2"',
         "tls-ciphers DEFAULT:@SECLEVEL=0"],
        tls=True,
    )  # fmt: skip
    raw = socket.create_connection(("127.0.0.1", legacy.tls_port), timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as accepted:
        assert accepted.version() == "TLSv1.1"


def test_a_tls_client_that_closes_its_side_leaves_no_warning(tls_redis, pki, start_proxy):
    """A TLS client sends a request, then close_notify: the proxy closes the session quietly
    (asyncio warns when eof_received() asks to keep a TLS transport open)."""
    proxy = start_proxy(
        f"--tls-cert={pki.server_cert}", f"--tls-key={pki.server_key}",
        f"--upstream-tls-ca={pki.ca_cert}", upstream=tls_redis.tls_port,
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    for _ in range(3):
        tls = context.wrap_socket(proxy.connect(), server_hostname="localhost")
        tls.sendall(command("PING"))
        assert len(read_replies(tls, 1)) == 1  # (NOAUTH: the point is the close)
        tls.unwrap().close()  # close_notify, then the TCP close
    deadline = time.monotonic() + 10
    while len(access_entries(proxy.access_log)) < 3:  # one line per session, when it ends
        assert time.monotonic() < deadline, access_entries(proxy.access_log)
        time.sleep(0.05)
    assert "no effect" not in proxy.log.read_text()


def test_upstream_restart(redis_factory, start_proxy):
    server = redis_factory()
    proxy = start_proxy(upstream=server.port)
    assert redis.Redis(port=proxy.port).ping()
    server.stop()
    sock = proxy.connect()
    sock.sendall(command("PING"))
    reply = sock.recv(1024)
    assert reply.startswith(b"-ERR Redis is unavailable"), reply
    server.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            assert redis.Redis(port=proxy.port, socket_timeout=2).ping()
            break
        except redis.RedisError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert proxy.metrics()['redkeep_proxy_upstream_errors_total{kind="connect"}'] >= 1


def test_sighup_reload_changes_the_allowlist_without_dropping_connections(
    plain_redis, start_proxy, tmp_path
):
    config = tmp_path / "redkeep.yaml"
    section = "proxy:\n  tls: false\n  upstream: 127.0.0.1:{port}\n  allow: [{allow}]\n"
    config.write_text(section.format(port=plain_redis.port, allow="127.0.0.1/32, 127.0.0.2/32"))
    proxy = start_proxy(f"--dir={tmp_path}")
    kept = proxy.connect(source="127.0.0.2")
    kept.sendall(command("PING"))
    assert read_replies(kept, 1) == [b"+PONG"]
    config.write_text(section.format(port=plain_redis.port, allow="127.0.0.1/32"))
    proxy.reload()
    proxy.wait_for_metric("redkeep_proxy_reloads_total", 1)
    assert closed_without_reply(proxy.connect(source="127.0.0.2"))
    kept.sendall(command("PING"))
    assert read_replies(kept, 1) == [b"+PONG"]  # opened before the reload: keeps working
    config.write_text("proxy:\n  allow: [not-a-network]\n")
    proxy.reload()
    proxy.wait_for_metric("redkeep_proxy_reload_failures_total", 1)
    assert redis.Redis(port=proxy.port).ping()  # a bad file leaves the last good policy


def test_a_flood_from_a_denied_address_does_not_stop_allowed_clients(plain_redis, start_proxy):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    proxy = start_proxy("--deny=127.0.0.3/32", upstream=plain_redis.port)
    client = redis.Redis(port=proxy.port, socket_timeout=5)
    answered = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            answered.append(client.ping())

    worker = threading.Thread(target=keep_asking)
    worker.start()

    async def flood() -> list[bool]:
        async def one() -> bool:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", proxy.port, local_addr=("127.0.0.3", 0)
                )
            except OSError:
                return False  # the backlog was full: refused by the kernel, also fine
            writer.write(command("PING"))
            data = await asyncio.wait_for(reader.read(100), timeout=30)
            writer.close()
            return data == b""

        return await asyncio.gather(*(one() for _ in range(2000)))

    try:
        closed = asyncio.run(flood())
    finally:
        stop.set()
        worker.join()
    assert closed.count(True) >= 1900, closed.count(True)
    assert answered and all(answered)
    refused = proxy.metrics()['redkeep_proxy_connections_refused_total{reason="denied"}']
    assert refused >= 1900


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(stream=STREAMS)
def test_generated_streams_never_crash_the_live_proxy(live_fuzz_target, stream):
    """2,000 generated streams (malformed, oversized, refused commands, RESP3 types) through a
    running proxy to a real Redis as a user ACL lets flush: each connection ends, the proxy
    lives, and the canary key shows no FLUSHALL or FLUSHDB got through.
    The scanner itself gets 10,000 more, split at random, in tests/unit/test_proxy_units.py."""
    proxy, _ = live_fuzz_target
    sock = proxy.connect()
    try:
        # As admin: Redis' ACL would allow FLUSHALL, so only the proxy stands in the way.
        sock.sendall(command("AUTH", "admin", "admin-secret") + stream)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        while sock.recv(65536):
            pass
    except OSError:  # the proxy (or Redis) closed first: that is an answer too
        pass
    finally:
        sock.close()
    assert proxy.process.poll() is None


@pytest.fixture(scope="module")
def live_fuzz_target(tmp_path_factory, redis_binary):
    workdir = tmp_path_factory.mktemp("fuzz")
    server = RedisServer(redis_binary, workdir / "redis", ACL_USERS, port=free_port()).start()
    proxy = start_proxy_process(workdir, server.port)
    admin = redis.Redis(port=server.port, username="admin", password="admin-secret")
    admin.set("canary", "alive")
    yield proxy, server
    try:
        assert admin.get("canary") == b"alive"  # no FLUSHALL got through
        # ... nor any other denied command, by whatever name Redis resolved it to.
        ran = set(admin.info("commandstats"))
        denied = {"flushall", "flushdb", "keys", "debug", "shutdown", "script|kill"}
        assert not {f"cmdstat_{name}" for name in denied} & ran, ran
        assert not [name for name in ran if name.startswith(("cmdstat_config", "cmdstat_module"))]
        assert proxy.metrics()["redkeep_proxy_protocol_errors_total"] > 0
    finally:
        proxy.stop()
        server.stop()


def test_pass_through_forwards_untouched(plain_redis, start_proxy):
    proxy = start_proxy("--pass-through", upstream=plain_redis.port)
    sock = proxy.connect()
    sock.sendall(command("SET", "k", "v") + command("FLUSHALL") + command("DBSIZE"))
    assert read_replies(sock, 3) == [b"+OK", b"+OK", b":0"]  # no policy: nothing parsed
    assert proxy.metrics()["redkeep_proxy_request_scanning"] == 0


def test_a_client_that_does_not_read_does_not_grow_the_proxy(plain_redis, start_proxy):
    """Backpressure: 400 MB of replies owed to a client that reads nothing; the proxy stops
    reading from Redis instead of buffering them."""
    proxy = start_proxy(upstream=plain_redis.port)
    value = b"x" * (20 * 1024 * 1024)
    redis.Redis(port=plain_redis.port).set("big", value)
    sock = proxy.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(command("GET", "big") * 20)
    time.sleep(1.5)
    status = Path(f"/proc/{proxy.process.pid}/status").read_text()
    rss_mib = int(status.split("VmRSS:")[1].split()[0]) / 1024
    assert rss_mib < 150, f"the proxy holds {rss_mib:.0f} MiB for a client that does not read"
    received = 0
    sock.settimeout(30)
    expected = 20 * (len(value) + len(b"$%d\r\n\r\n" % len(value)))
    while received < expected:
        chunk = sock.recv(1 << 20)
        assert chunk, "closed early"
        received += len(chunk)
    assert received == expected


def test_idle_timeouts_spare_subscribers_and_blocked_clients(plain_redis, start_proxy, tmp_path):
    (tmp_path / "redkeep.yaml").write_text(
        f"proxy:\n  tls: false\n  upstream: 127.0.0.1:{plain_redis.port}\n"
        "  client_idle_timeout: 1\n"
    )
    proxy = start_proxy(f"--dir={tmp_path}")
    idle = proxy.connect()
    idle.sendall(command("PING"))
    assert read_replies(idle, 1) == [b"+PONG"]
    subscriber = proxy.connect()
    subscriber.sendall(command("SUBSCRIBE", "news"))
    assert read_replies(subscriber, 1)[0].startswith(b"[subscribe")
    blocked = proxy.connect()
    blocked.sendall(command("BLPOP", "queue", "0"))
    time.sleep(3)
    assert idle.recv(1024).startswith(b"-ERR idle timeout")
    assert closed_without_reply(idle)
    redis.Redis(port=plain_redis.port).publish("news", "hello")
    assert read_replies(subscriber, 1)[0] == b"[message,news,hello]"
    redis.Redis(port=plain_redis.port).rpush("queue", "job")
    assert read_replies(blocked, 1) == [b"[queue,job]"]
    assert proxy.metrics()["redkeep_proxy_idle_closed_total"] == 1


def test_upstream_idle_timeout_closes_a_silent_redis(start_proxy, tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    (tmp_path / "redkeep.yaml").write_text(
        f"proxy:\n  tls: false\n  upstream: 127.0.0.1:{silent.getsockname()[1]}\n"
        "  upstream_idle_timeout: 1\n"
    )
    proxy = start_proxy(f"--dir={tmp_path}")
    sock = proxy.connect()
    sock.sendall(command("GET", "k"))
    sock.settimeout(10)
    assert sock.recv(1024).startswith(b"-ERR Redis did not answer in time")
    silent.close()


def test_a_client_that_half_closes_still_gets_its_replies(
    plain_redis, mtls_redis, pki, start_proxy
):
    plain = start_proxy(upstream=plain_redis.port)
    tls = start_proxy(
        f"--upstream-tls-ca={pki.ca_cert}",
        f"--upstream-tls-cert={pki.client_cert()}",
        f"--upstream-tls-key={pki.client_key()}",
        upstream=mtls_redis.tls_port,
    )
    for proxy, login in ((plain, []), (tls, [command("AUTH", "admin", "admin-secret")])):
        sock = proxy.connect()
        sock.sendall(b"".join(login) + command("PING") + command("ECHO", "last words"))
        sock.shutdown(socket.SHUT_WR)
        replies = read_replies(sock, len(login) + 2)
        assert replies[-2:] == [b"+PONG", b"last words"], replies
        assert closed_without_reply(sock)


def test_an_access_log_that_cannot_be_written_changes_nothing(plain_redis, start_proxy):
    proxy = start_proxy("--access-log=/dev/full", upstream=plain_redis.port)  # ENOSPC
    sock = proxy.connect()
    value = b"v" * 100
    frame = command("SET", "k", value)
    # Refusals (which log) and a value split across reads: the stream must stay in step.
    sock.sendall(command("FLUSHALL") * 3 + frame[:40])
    time.sleep(0.2)
    sock.sendall(frame[40:] + command("GET", "k"))
    replies = read_replies(sock, 5)
    assert all(REFUSED.match(reply) for reply in replies[:3]), replies
    assert replies[3:] == [b"+OK", value]
    assert proxy.metrics()["redkeep_proxy_log_write_failures_total"] >= 3


def test_a_log_that_cannot_be_reopened_does_not_hold_back_a_reload(
    plain_redis, start_proxy, tmp_path
):
    """logrotate moved the log and a directory took its name: the reload still applies the new
    policy (and certificates), keeps writing the old file, and says so."""
    config = tmp_path / "redkeep.yaml"
    section = "proxy:\n  tls: false\n  upstream: 127.0.0.1:{port}\n  allow: [{allow}]\n"
    config.write_text(section.format(port=plain_redis.port, allow="127.0.0.1/32, 127.0.0.2/32"))
    proxy = start_proxy(f"--dir={tmp_path}")
    proxy.access_log.rename(tmp_path / "rotated.log")
    proxy.access_log.mkdir()
    config.write_text(section.format(port=plain_redis.port, allow="127.0.0.1/32"))
    proxy.reload()
    proxy.wait_for_metric("redkeep_proxy_log_reopen_failures_total", 1)
    assert proxy.metrics()["redkeep_proxy_reloads_total"] == 1
    assert closed_without_reply(proxy.connect(source="127.0.0.2"))  # the new allowlist holds
    assert "cannot reopen the access log" in proxy.log.read_text()


def test_caps_follow_a_change_of_redis_password_on_open_connections(acl_redis, start_proxy):
    """Redis applies a change of the default user to connections already open: so does the
    proxy once it has asked again (on reload here, else within 15 s)."""
    proxy = start_proxy(upstream=acl_redis.port)
    admin = redis.Redis(port=acl_redis.port, username="admin", password="admin-secret")
    anonymous = proxy.connect()
    anonymous.sendall(command("PING"))
    assert read_replies(anonymous, 1)[0].startswith(b"-NOAUTH")
    admin.acl_setuser("default", enabled=True, nopass=True, commands=["+@all"], keys=["*"])
    proxy.reload()
    deadline = time.monotonic() + 10
    while proxy.metrics().get("redkeep_proxy_upstream_requires_auth") != 0:
        assert time.monotonic() < deadline, "the proxy did not learn that Redis changed"
        time.sleep(0.05)
    anonymous.sendall(command("MSET", *[f"k{i}" for i in range(12)]))  # 13 arguments
    assert read_replies(anonymous, 1) == [b"+OK"]


def test_out_of_file_descriptors_the_proxy_pauses_and_recovers(plain_redis, tmp_path):
    """A proxy held to 40 open files: clients beyond it wait or are refused, the proxy neither
    spins nor floods its log, counts why, and serves again once they leave."""

    def tight_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    port, metrics_port = free_port(), free_port()
    log = tmp_path / "proxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [REDKEEP, "proxy", f"--listen=127.0.0.1:{port}",
             f"--upstream=127.0.0.1:{plain_redis.port}",
             f"--metrics-listen=127.0.0.1:{metrics_port}", "--access-log=off", "--max-conns=1000"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=tight_limit,
        )  # fmt: skip
    proxy = Proxy(port, metrics_port, process, log, tmp_path / "none")
    try:
        deadline = time.monotonic() + 15
        while "redkeep proxy on" not in log.read_text():
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()
            time.sleep(0.05)
        assert "open-files limit (40) is below what max_conns 1000 needs" in log.read_text()
        clients = []
        for _ in range(60):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(command("PING"))
            clients.append(sock)
        time.sleep(3)
        for sock in clients:
            sock.close()
        refused = 'redkeep_proxy_connections_refused_total{reason="no_descriptors"}'
        proxy.wait_for_metric(refused, 1)
        deadline = time.monotonic() + 10
        while True:  # the backlog drains and new clients are served again
            try:
                assert redis.Redis(port=port, socket_timeout=2).ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        lines = log.read_text().splitlines()
        assert 1 <= sum("accept failed" in line for line in lines) <= 10, lines[-5:]
        assert process.poll() is None
    finally:
        proxy.stop()


def test_the_metrics_endpoint_has_the_exporters_http_protections(plain_redis, start_proxy):
    """/metrics is served by the exporter's HTTP server: garbage is answered at once, not left
    to hang; idle connections beyond the per-address cap (16) make room; HEAD gets no body."""
    proxy = start_proxy(upstream=plain_redis.port)
    address = ("127.0.0.1", proxy.metrics_port)

    def exchange(request: bytes) -> bytes:
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer

    assert exchange(b"*1\r\n$4\r\nPING\r\n").startswith(b"HTTP/1.1 400 ")
    many_headers = b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n"
    assert exchange(many_headers).startswith(b"HTTP/1.1 431 ")
    head = exchange(b"HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"redkeep_proxy_up" not in head
    idle = [socket.create_connection(address, timeout=15) for _ in range(30)]
    try:
        assert proxy.metrics()["redkeep_proxy_up"] == 1  # the idle ones made room
        deadline = time.monotonic() + 10
        while established_from(proxy.process.pid, proxy.metrics_port).get("127.0.0.1", 0) > 16:
            assert time.monotonic() < deadline, "more idle connections held than the cap"
            time.sleep(0.05)
    finally:
        for sock in idle:
            sock.close()
