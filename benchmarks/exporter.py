"""`redkeep exporter` against Debian's prometheus-redis-exporter on one redis-server with 1M keys.

Three figures from one run: which redis_exporter metric names ours also serves, the median
`/metrics` latency of each (requests alternated over one keep-alive connection per exporter, as
Prometheus scrapes), and each exporter's resident memory after the run.
"""

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from benchmarks.harness import REDKEEP, Server, free_port, median, need

KEYS = 1_000_000
WARMUP = 20
REQUESTS = 300  # per exporter, per round
ROUNDS = 5
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")


# What Prometheus 2.42 sends with each scrape; an exporter may answer it gzipped.
PROMETHEUS_REQUEST = (
    b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Prometheus/2.42.0\r\n"
    b"Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    b"version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
    b"Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
)
PLAIN_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Exporter:
    """An exporter process on 127.0.0.1 and one keep-alive connection to it.

    The client is a few lines over a raw socket, the same for both exporters, so what is
    timed is the exporter (a Python HTTP client would add more than it measures).
    """

    def __init__(self, name: str, command: list[str], port: int) -> None:
        self.name = name
        # From / with no REDKEEP_* variables: no bundle or settings of the caller leak in.
        environment = {k: v for k, v in os.environ.items() if not k.startswith("REDKEEP_")}
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", env=environment
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if "redis_up 1" in self.get().decode():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{name} did not serve redis_up 1 on port {port}")
            time.sleep(0.2)

    def get(self, request: bytes = PLAIN_REQUEST) -> bytes:
        """One request; the body as sent (gzipped if the exporter chose to)."""
        self.sock.sendall(request)
        data = self._read_until(b"", b"\r\n\r\n")
        head, _, rest = data.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        if " 200 " not in status + " ":
            raise RuntimeError(f"{self.name} answered {status}")
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(rest) < length:
                rest += self._recv()
            return rest[:length]
        return self._dechunk(rest)

    def timed_get(self, request: bytes) -> float:
        started = time.perf_counter()
        self.get(request)
        return time.perf_counter() - started

    def _recv(self) -> bytes:
        data = self.sock.recv(1 << 20)
        if not data:
            raise RuntimeError(f"{self.name} closed the connection")
        return data

    def _read_until(self, data: bytes, marker: bytes) -> bytes:
        while marker not in data:
            data += self._recv()
        return data

    def _dechunk(self, data: bytes) -> bytes:
        body = bytearray()
        while True:
            data = self._read_until(data, b"\r\n")
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(data) < size + 2:
                data += self._recv()
            body += data[:size]
            data = data[size + 2 :]
            if size == 0:
                return bytes(body)

    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory of the process, in MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        return tuple(int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))

    def stop(self) -> None:
        self.sock.close()
        self.process.terminate()
        self.process.wait(timeout=10)


def names(exposition: bytes) -> set[str]:
    lines = exposition.decode().splitlines()
    return {SAMPLE.match(line)[1] for line in lines if SAMPLE.match(line)}


def exercise(server: Server, replica: Server) -> None:
    """Give every family something to report: keys, errors, a slow command, a latency spike, a replica."""
    client = server.client
    client.execute_command("DEBUG", "POPULATE", KEYS, "key", 22)
    client.set("volatile", 1, ex=3600)
    client.config_set("latency-monitor-threshold", 1)
    client.config_set("slowlog-log-slower-than", 1000)
    client.execute_command("DEBUG", "SLEEP", "0.01")
    for command in (("NOSUCHCOMMAND",), ("INCR", "key:1")):
        with contextlib.suppress(redis.ResponseError):  # the point is an error reply
            client.execute_command(*command)
    replica.client.replicaof("127.0.0.1", server.port)
    deadline = time.monotonic() + 60
    while replica.client.info("replication")["master_link_status"] != "up":
        if time.monotonic() > deadline:
            raise RuntimeError("replica did not sync")
        time.sleep(0.1)


def run() -> dict:
    peer_binary = need("prometheus-redis-exporter")
    server = Server("--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0")
    replica = Server()
    exporters: list[Exporter] = []
    try:
        exercise(server, replica)
        ours_port, peer_port = free_port(), free_port()
        ours = Exporter(
            "redkeep exporter",
            [REDKEEP, "exporter", "--url", server.url, "--listen", f"127.0.0.1:{ours_port}"],
            ours_port,
        )
        exporters.append(ours)
        peer = Exporter(
            "redis_exporter",
            [
                peer_binary,
                "-redis.addr",
                server.url,
                "-web.listen-address",
                f"127.0.0.1:{peer_port}",
                "-redis-only-metrics",
            ],
            peer_port,
        )
        exporters.append(peer)
        peer_names = names(peer.get())
        our_names = names(ours.get())
        for exporter in exporters:
            for _ in range(WARMUP):
                exporter.get(PROMETHEUS_REQUEST)
        latency = {}
        resident = {"ours": [], "peer": []}  # after each round: current RSS
        for request_name, request in (("prometheus", PROMETHEUS_REQUEST), ("plain", PLAIN_REQUEST)):
            rounds = {"ours": [], "peer": []}
            for _ in range(ROUNDS):
                samples = {"ours": [], "peer": []}
                for _ in range(REQUESTS):
                    samples["ours"].append(ours.timed_get(request))
                    samples["peer"].append(peer.timed_get(request))
                for name, values in samples.items():
                    rounds[name].append(median(values) * 1000)
                resident["ours"].append(ours.rss_mib()[0])
                resident["peer"].append(peer.rss_mib()[0])
            latency[request_name] = rounds
        sizes = {
            "ours": len(ours.get(PROMETHEUS_REQUEST)),
            "peer": len(peer.get(PROMETHEUS_REQUEST)),
        }
        rss = {"ours": ours.rss_mib(), "peer": peer.rss_mib()}
        rss_median = {name: median(values) for name, values in resident.items()}
        version = subprocess.run(
            [peer_binary, "-version"], capture_output=True, text=True, check=False
        )
    finally:
        for exporter in exporters:
            exporter.stop()
        replica.stop()
        server.stop()
    missing = sorted(peer_names - our_names)
    return {
        "keys": KEYS,
        "peer_version_short": _version(version.stdout + version.stderr),
        "peer_names": len(peer_names),
        "present": len(peer_names & our_names),
        "missing": missing,
        "extra": len(our_names - peer_names),
        "latency": latency,
        "ratio": {
            name: median(rounds["ours"]) / median(rounds["peer"])
            for name, rounds in latency.items()
        },
        "response_bytes": sizes,
        "rss": rss,
        "rss_median": rss_median,
        "interpreter_mib": interpreter_mib(),
    }


def interpreter_mib() -> float:
    """Peak RSS of this Python doing nothing: the floor under any Python exporter."""
    script = "print(open('/proc/self/status').read())"
    status = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024


def _version(output: str) -> str:
    match = re.search(r"Exporter (\S+)", output)
    return f"version {match[1]}" if match else "version unknown"
