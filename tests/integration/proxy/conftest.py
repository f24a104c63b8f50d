"""Proxy fixtures: `redkeep proxy` processes on free loopback ports, and raw RESP clients."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REDKEEP
from tests.servers import free_port, stop_process


@dataclass
class Proxy:
    port: int
    metrics_port: int
    process: subprocess.Popen
    log: Path
    access_log: Path

    def connect(self, source: str = "127.0.0.1", timeout: float = 5) -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout=timeout, source_address=(source, 0)
        )
        return sock

    def metrics(self) -> dict[str, float]:
        """{'name{labels}': value} of /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def wait_for_metric(self, name: str, at_least: float, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            value = self.metrics().get(name, 0.0)
            if value >= at_least:
                return value
            time.sleep(0.05)
        raise AssertionError(f"{name} stayed at {value}, expected >= {at_least}")

    def reload(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        stop_process(self.process)


def start_proxy_process(
    workdir: Path, upstream: int | None, *flags: str, cwd: Path | None = None, name: str = "proxy"
) -> Proxy:
    """`redkeep proxy --upstream 127.0.0.1:PORT FLAGS...`, once it listens."""
    port, metrics_port = free_port(), free_port()
    log = workdir / f"{name}.log"
    access_log = workdir / f"{name}-access.log"
    args = [
        REDKEEP,
        "proxy",
        f"--listen=127.0.0.1:{port}",
        f"--metrics-listen=127.0.0.1:{metrics_port}",
        f"--access-log={access_log}",
        *([f"--upstream=127.0.0.1:{upstream}"] if upstream else []),
        *flags,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or workdir, env=os.environ
        )
    proxy = Proxy(port, metrics_port, process, log, access_log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"redkeep proxy exited: {log.read_text()}", pytrace=False)
        if "redkeep proxy on" in log.read_text():
            return proxy
        time.sleep(0.05)
    proxy.stop()
    pytest.fail(f"redkeep proxy did not start: {log.read_text()}", pytrace=False)


@pytest.fixture
def start_proxy(tmp_path) -> Iterator["callable"]:
    """Start proxies (see start_proxy_process); all stopped at teardown."""
    proxies: list[Proxy] = []

    def start(*flags: str, upstream: int | None = None, cwd: Path | None = None) -> Proxy:
        proxy = start_proxy_process(
            tmp_path, upstream, *flags, cwd=cwd, name=f"proxy{len(proxies)}"
        )
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


def command(*args: str | bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def read_replies(sock: socket.socket, count: int, timeout: float = 5) -> list[bytes]:
    """`count` RESP2 replies (simple, error, integer, bulk, flat arrays) as raw lines/values."""
    sock.settimeout(timeout)
    buffer = b""
    replies: list[bytes] = []

    def more() -> None:
        nonlocal buffer
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(replies)} replies: {buffer!r}")
        buffer += chunk

    def line() -> bytes:
        nonlocal buffer
        while b"\r\n" not in buffer:
            more()
        head, _, buffer = buffer.partition(b"\r\n")
        return head

    def value() -> bytes:
        nonlocal buffer
        head = line()
        if head[:1] == b"$" and int(head[1:]) >= 0:
            size = int(head[1:])
            while len(buffer) < size + 2:
                more()
            data, buffer = buffer[:size], buffer[size + 2 :]
            return data
        if head[:1] == b"*" and int(head[1:]) > 0:
            return b"[" + b",".join(value() for _ in range(int(head[1:]))) + b"]"
        return head

    while len(replies) < count:
        replies.append(value())
    return replies


def closed_without_reply(sock: socket.socket, timeout: float = 5) -> bool:
    """True when the peer closes (or resets) the connection without sending anything."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def access_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


REFUSED = re.compile(rb"^-ERR .*(denied by the redkeep proxy|rate limit)")
