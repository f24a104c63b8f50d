"""Exporter fixtures: `redkeep exporter` processes on free loopback ports, stopped at teardown."""

import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REDKEEP
from tests.servers import free_port, stop_process


@dataclass
class Exporter:
    url: str
    process: subprocess.Popen
    log: Path

    def get(
        self, path: str = "/metrics", headers: dict | None = None, timeout: float = 30
    ) -> tuple[int, str, dict]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), dict(error.headers)

    def metrics(self) -> dict[str, list[tuple[str, float]]]:
        """{family name: [(label text, value)]} of one /metrics."""
        status, body, _ = self.get()
        assert status == 200, body
        return parse(body)


class FreezableProxy:
    """A TCP forwarder to Redis that can stop forwarding: a connection that hangs."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.frozen = threading.Event()
        self.freeze_on: bytes | None = None  # freeze when a request holds these bytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.upstream))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source, sink) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.freeze_on and self.freeze_on in data:
                self.frozen.set()
            while self.frozen.is_set():
                time.sleep(0.05)
            try:
                sink.sendall(data)
            except OSError:
                return


def parse(body: str) -> dict[str, list[tuple[str, float]]]:
    families: dict[str, list[tuple[str, float]]] = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        families.setdefault(name, []).append((labels.rstrip("}"), float(value)))
    return families


def value(families, family: str, **labels: str) -> float:
    """The value of the one series of `family` whose labels include `labels`."""
    wanted = [f'{key}="{val}"' for key, val in labels.items()]
    found = [v for text, v in families.get(family, []) if all(w in text for w in wanted)]
    assert len(found) == 1, (family, labels, families.get(family))
    return found[0]


def wait_for_port(host: str, port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"exporter did not listen: {log.read_text()}")


@pytest.fixture
def exporter_factory(tmp_path) -> Iterator:
    started: list[Exporter] = []

    def start(*args: str, env: dict | None = None, scheme: str = "http") -> Exporter:
        port = free_port()
        log = tmp_path / f"exporter{len(started)}.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                [REDKEEP, "exporter", "--listen", f"127.0.0.1:{port}", *map(str, args)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        exporter = Exporter(f"{scheme}://127.0.0.1:{port}", process, log)
        started.append(exporter)
        wait_for_port("127.0.0.1", port, process, log)
        return exporter

    yield start
    for exporter in started:
        stop_process(exporter.process)
