"""A requested stop of a long-running command is a clean exit: SIGTERM, SIGINT (and SIGHUP for
the exporter) end the real process with status 0, no traceback on its output, and its
listening sockets gone. Connections are left open at the signal (an HTTP request half sent, a
Redis client idle on the proxy): their tasks are what a stop used to leave asyncio printing.
"""

import os
import signal
import socket
import subprocess
import urllib.request

import pytest

from tests.conftest import REDKEEP
from tests.integration.exporter.conftest import wait_for_port
from tests.integration.proxy.conftest import start_proxy_process
from tests.servers import free_port, stop_process

HALF_A_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"  # the blank line never comes


def scrape(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:  # noqa: S310
        response.read()
        return response.status


def half_open(port: int, count: int = 3) -> list[socket.socket]:
    """Connections that sent part of a request and wait: the server holds a task for each."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(HALF_A_REQUEST)
        sockets.append(sock)
    return sockets


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def stopped(process: subprocess.Popen, signum: int) -> int:
    process.send_signal(signum)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stop_process(process)
        pytest.fail(f"still running 30s after {signal.Signals(signum).name}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_the_exporter_exits_cleanly_on_a_stop_signal(plain_redis, tmp_path, signum):
    port = free_port()
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [REDKEEP, "exporter", "--url", f"redis://127.0.0.1:{plain_redis.port}",
             "--listen", f"127.0.0.1:{port}"],
            stdout=stdout, stderr=stderr, env=os.environ,
        )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, process, err)
        assert scrape(port) == 200
        waiting = half_open(port)
        status = stopped(process, signum)
    finally:
        stop_process(process)
    assert status == 0, err.read_text()
    assert "Traceback" not in err.read_text() + out.read_text()
    assert refuses(port)
    for sock in waiting:  # the server closed them
        assert sock.recv(1024) == b""
        sock.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_proxy_exits_cleanly_on_a_stop_signal(plain_redis, tmp_path, signum):
    proxy = start_proxy_process(tmp_path, plain_redis.port)
    try:
        client = proxy.connect()
        client.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert client.recv(64) == b"+PONG\r\n"
        assert scrape(proxy.metrics_port) == 200
        waiting = half_open(proxy.metrics_port)
        status = stopped(proxy.process, signum)
    finally:
        proxy.stop()
    log = proxy.log.read_text()
    assert status == 0, log
    assert "Traceback" not in log
    assert refuses(proxy.port) and refuses(proxy.metrics_port)
    assert client.recv(64) == b""  # the client's connection was closed, not left hanging
    for sock in [client, *waiting]:
        sock.close()
