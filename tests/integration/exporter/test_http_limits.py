"""`redkeep exporter`'s HTTP server under attack: slow, idle, many, garbage, busy and
non-reading clients.

Each exporter runs from a minimal bundle (only an `exporter:` section) so the HTTP limits are
small: a request head must arrive within 1 s, a kept connection may idle 2 s, at most 20
connections, 16 of them from one address.
"""

import ipaddress
import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.exporter.conftest import FreezableProxy, parse, value

SLOW_REQUEST = b"GET /metrics HTTP/1.1\r\n"  # and then nothing: the headers never end


def limited_exporter(exporter_factory, tmp_path: Path, url: str, **settings):
    bundle = tmp_path / "limits"
    bundle.mkdir(exist_ok=True)
    exporter = {
        "http_header_timeout_seconds": 1,
        "http_idle_timeout_seconds": 2,
        "http_max_connections": 20,
        **settings,
    }
    (bundle / "redkeep.yaml").write_text(yaml.safe_dump({"exporter": exporter}))
    scheme = "https" if "tls_cert_file" in settings else "http"
    return exporter_factory("--dir", bundle, "--url", url, scheme=scheme)


def established_from(pid: int, port: int) -> dict[str, int]:
    """The connections process `pid` itself holds on its `port`, counted by client address
    (from its own file descriptors and the kernel's TCP table, not from the exporter)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except FileNotFoundError:  # closed between the listing and the read
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    counts: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and inode in inodes and int(local.split(":")[1], 16) == port:
            address = str(ipaddress.IPv4Address(bytes.fromhex(remote.split(":")[0])[::-1]))
            counts[address] = counts.get(address, 0) + 1
    return counts


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def scrape_from(exporter, source: str) -> tuple[bytes, str]:
    """GET /metrics from the loopback address `source`: (status line, body)."""
    host, port = exporter.url.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), 15, source_address=(source, 0)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # refused or evicted: the status line says which, if any
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body.decode()


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


def connect(exporter) -> socket.socket:
    host, port = exporter.url.rsplit("//", 1)[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=15)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the exporter has closed this connection (EOF or reset)."""
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    except TimeoutError:
        return False
    return True


def exchange(exporter, request: bytes) -> bytes:
    """Send raw bytes, return everything the exporter answers before it closes."""
    with connect(exporter) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def test_slow_clients_pin_no_threads_and_cannot_lock_out_a_scrape(
    redis_factory, exporter_factory, tmp_path
):
    server = redis_factory()
    exporter = limited_exporter(exporter_factory, tmp_path, f"redis://127.0.0.1:{server.port}")
    slow = []
    for _ in range(100):
        sock = connect(exporter)
        sock.sendall(SLOW_REQUEST)
        slow.append(sock)
    # Over the cap of 20 the longest-waiting idle connections make room; a scrape still answers.
    families = exporter.metrics()
    assert value(families, "redis_up") == 1
    # A thread per connection is what the old server did (102 threads for 100 slow clients).
    assert threads_of(exporter.process.pid) <= 8
    assert all(closed_by_server(sock) for sock in slow)  # evicted, or timed out after 1 s
    for sock in slow:
        sock.close()
    families = exporter.metrics()
    closed = families["redkeep_exporter_http_closed_connections_total"]
    evicted = value(families, "redkeep_exporter_http_closed_connections_total", reason="evicted")
    timed_out = value(
        families, "redkeep_exporter_http_closed_connections_total", reason="header_timeout"
    )
    assert evicted + timed_out >= 100, closed
    assert evicted >= 80  # only 20 fit under the cap at any time


def test_clients_that_pipeline_and_never_read_cannot_lock_out_a_scrape(
    redis_factory, exporter_factory, tmp_path
):
    """100 connections from 127.0.0.1 each send 50 requests at once and never read an answer
    (the exporter used to answer 503 to everyone for 15 to 60 s). Scrapes from another address
    and from that very one get through."""
    server = redis_factory()
    exporter = limited_exporter(exporter_factory, tmp_path, f"redis://127.0.0.1:{server.port}")
    host, port = exporter.url.rsplit("//", 1)[1].rsplit(":", 1)
    flood = []
    try:
        for _ in range(100):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up at once
            sock.connect((host, int(port)))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
            flood.append(sock)
        for source in ("127.0.0.2", "127.0.0.1", "127.0.0.2", "127.0.0.1"):
            status, body = scrape_from(exporter, source)
            assert status == b"HTTP/1.1 200 OK", (source, status, body[:200])
            assert value(parse(body), "redis_up") == 1
            held = established_from(exporter.process.pid, int(port))
            assert held.get("127.0.0.1", 0) <= 16, held  # the per-address cap
    finally:
        for sock in flood:
            sock.close()
    families = exporter.metrics()
    evicted = value(families, "redkeep_exporter_http_closed_connections_total", reason="evicted")
    assert evicted >= 100 - 16  # the flood made room for itself, and for the scrapes


def test_a_client_that_does_not_read_its_answers_is_closed(
    redis_factory, exporter_factory, tmp_path
):
    server = redis_factory()
    exporter = limited_exporter(
        exporter_factory,
        tmp_path,
        f"redis://127.0.0.1:{server.port}",
        http_write_timeout_seconds=1,
    )
    host, port = exporter.url.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        # Far more answers than the kernel's buffers hold (each is about 30 KB).
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 500)
        # Held by the exporter (it answers for a second or more, then waits 1 s), then let go.
        pid = exporter.process.pid
        wait_until(lambda: established_from(pid, int(port)), "never accepted")
        wait_until(lambda: not established_from(pid, int(port)), "still held")
    families = exporter.metrics()
    closed = "redkeep_exporter_http_closed_connections_total"
    assert value(families, closed, reason="write_timeout") == 1


def test_a_kept_connection_is_closed_when_idle(redis_factory, exporter_factory, tmp_path):
    server = redis_factory()
    exporter = limited_exporter(exporter_factory, tmp_path, f"redis://127.0.0.1:{server.port}")
    with connect(exporter) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        assert closed_by_server(sock)  # after 2 s without a next request
    families = exporter.metrics()
    assert (
        value(families, "redkeep_exporter_http_closed_connections_total", reason="idle_timeout")
        == 1
    )


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"*1\r\n$4\r\nPING\r\n", b"400"),  # a Redis client at the wrong port
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40), b"400"),  # TLS hello
        (b"GET http://169.254.169.254/ HTTP/1.1\r\n\r\n", b"400"),  # proxy-style target
        (b"GET /metrics HTTP/2.0\r\n\r\n", b"400"),
        (b"GET /metrics\r\n\r\n", b"400"),  # HTTP/0.9
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", b"400"),
        (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"431"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 2_100 + b"\r\n", b"431"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", b"431"),
        (b"DELETE /metrics HTTP/1.1\r\n\r\n", b"405"),
    ],
)
def test_garbage_gets_an_answer_at_once_not_a_hang(
    redis_factory, exporter_factory, tmp_path, request_bytes, status
):
    server = redis_factory()
    exporter = limited_exporter(exporter_factory, tmp_path, f"redis://127.0.0.1:{server.port}")
    answer = exchange(exporter, request_bytes)
    # An answer, not a timed-out connection (which would close with nothing said).
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert b"redis_up" not in answer
    assert value(exporter.metrics(), "redis_up") == 1  # and the exporter carries on


def test_when_every_connection_is_busy_a_newcomer_gets_503(
    redis_factory, exporter_factory, tmp_path
):
    server = redis_factory()
    stalled = FreezableProxy(server.port)
    exporter = limited_exporter(
        exporter_factory, tmp_path, f"redis://127.0.0.1:{stalled.port}", http_max_connections=3
    )
    assert value(exporter.metrics(), "redis_up") == 1
    stalled.frozen.set()  # Redis stops answering: each scrape runs to its 8 s deadline
    busy = []
    try:
        for _ in range(3):
            sock = connect(exporter)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Prometheus-Scrape-Timeout-Seconds: 8\r\n\r\n")
            busy.append(sock)
        time.sleep(0.5)  # let the exporter read the three requests (their scrapes last 8 s)
        answer = exchange(exporter, b"GET /health HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    finally:
        stalled.frozen.clear()
        for sock in busy:
            sock.close()
    # The three stay busy until their scrapes end (a closed client does not stop a scrape).
    deadline = time.monotonic() + 30
    while (answer := exporter.get())[0] == 503:
        assert time.monotonic() < deadline, "the busy connections never finished"
        time.sleep(0.2)
    families = parse(answer[1])
    closed = "redkeep_exporter_http_closed_connections_total"
    assert value(families, closed, reason="over_capacity") >= 1


def test_a_stalled_tls_handshake_is_closed_and_https_still_answers(
    redis_factory, exporter_factory, tmp_path, pki
):
    server = redis_factory()
    exporter = limited_exporter(
        exporter_factory,
        tmp_path,
        f"redis://127.0.0.1:{server.port}",
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
    )
    stalled = [connect(exporter) for _ in range(30)]  # TCP only: no ClientHello
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with connect(exporter) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    body = answer.partition(b"\r\n\r\n")[2].decode()
    assert value(parse(body), "redis_up") == 1
    assert threads_of(exporter.process.pid) <= 8
    assert all(closed_by_server(sock) for sock in stalled)
    for sock in stalled:
        sock.close()
