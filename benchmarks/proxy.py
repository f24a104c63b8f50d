"""`redkeep proxy` against nginx `stream` (the rendered config, 1 worker) in front of one Redis.

redis-benchmark SET and GET, 50 clients, unpipelined and `-P 16`, against four endpoints in
one run: Redis directly, nginx, redkeep proxy in pass-through (allowlist and connection limits),
and redkeep proxy with the command rate limit and command policy on. Rounds alternate the
endpoints so drift hits all alike; figures are medians over the rounds. The proxies' CPU time
per request is read from /proc around each run.
"""

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import REDKEEP, Server, free_port, median, need

CLIENTS = 50
ROUNDS = 5
REQUESTS = {1: 100_000, 16: 1_000_000}  # per test (SET, GET) and run
TESTS = ("SET", "GET")
# High enough never to refuse during the run, so what is measured is the bookkeeping.
CMD_RATE = 10_000_000
DENIED = ["FLUSHALL", "FLUSHDB", "CONFIG", "DEBUG", "MODULE", "KEYS", "SHUTDOWN", "SCRIPT KILL"]
NGINX_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists() or not Path(NGINX_MODULE).exists():
        raise SystemExit("benchmark needs nginx and libnginx-mod-stream (make setup installs them)")
    return found


def wait_listening(port: int, process: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port}")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def nginx_workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


class Endpoint:
    def __init__(self, name: str, port: int, process: subprocess.Popen | None = None) -> None:
        self.name = name
        self.port = port
        self.process = process

    def pids(self) -> list[int]:
        if self.process is None:
            return []
        if self.name == "nginx":
            return nginx_workers(self.process.pid)
        return [self.process.pid]

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)


def start_nginx(workdir: Path, upstream: int) -> Endpoint:
    port = free_port()
    conf = workdir / "nginx.conf"
    subprocess.run(
        [
            REDKEEP,
            "render",
            "nginx",
            f"--listen=127.0.0.1:{port}",
            f"--upstream=127.0.0.1:{upstream}",
            "--allow=127.0.0.0/8",
            "--max-conns=10000",
            "--max-conns-per-ip=1000",
            f"--log-dir={workdir}",
            f"--pid-file={workdir / 'nginx.pid'}",
            f"--out={conf}",
        ],  # fmt: skip
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=workdir,
    )
    errors = str(workdir / "nginx-startup.log")
    process = subprocess.Popen(
        [nginx_binary(), "-c", str(conf), "-e", errors, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, process, "nginx")
    return Endpoint("nginx", port, process)


def start_redkeep(workdir: Path, name: str, upstream: int, *flags: str) -> Endpoint:
    port = free_port()
    # A directory of its own: redkeep.yaml turns off the pre-AUTH caps (redis-benchmark
    # sends no AUTH here; with AUTH they cost nothing), the rest comes from the flags.
    directory = workdir / name
    directory.mkdir()
    (directory / "redkeep.yaml").write_text(
        "proxy:\n  tls: false\n  unauthenticated_limits: false\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REDKEEP_")}
    process = subprocess.Popen(
        [
            REDKEEP,
            "proxy",
            f"--dir={directory}",
            f"--listen=127.0.0.1:{port}",
            f"--upstream=127.0.0.1:{upstream}",
            "--allow=127.0.0.0/8",
            "--max-conns=10000",
            "--max-conns-per-ip=1000",
            "--conn-rate=1000",
            "--access-log=off",
            "--metrics-listen=off",
            *flags,
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    wait_listening(port, process, name)
    return Endpoint(name, port, process)


def benchmark(port: int, pipeline: int) -> dict[str, tuple[float, float]]:
    """{test: (requests per second, p99 latency ms)} of one redis-benchmark run."""
    output = subprocess.run(
        [
            need("redis-benchmark"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            str(CLIENTS),
            "-n",
            str(REQUESTS[pipeline]),
            "-P",
            str(pipeline),
            "-t",
            ",".join(TESTS).lower(),
            "--csv",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = list(csv.reader(io.StringIO(output)))
    header, *data = rows
    rps, p99 = header.index("rps"), header.index("p99_latency_ms")
    return {row[0]: (float(row[rps]), float(row[p99])) for row in data}


def run() -> dict:
    server = Server()
    workdir = Path(tempfile.mkdtemp(prefix="redkeep-bench-proxy-"))
    endpoints = [Endpoint("direct", server.port)]
    try:
        endpoints.append(start_nginx(workdir, server.port))
        endpoints.append(start_redkeep(workdir, "pass-through", server.port, "--pass-through"))
        endpoints.append(
            start_redkeep(
                workdir,
                "command features",
                server.port,
                f"--cmd-rate={CMD_RATE}",
                *(f"--deny-command={name}" for name in DENIED),
            )
        )
        results: dict = {}
        for pipeline, requests in REQUESTS.items():
            for _ in range(ROUNDS):
                for endpoint in endpoints:
                    before = cpu_seconds(endpoint.pids())
                    figures = benchmark(endpoint.port, pipeline)
                    used = cpu_seconds(endpoint.pids()) - before
                    total = requests * len(TESTS)
                    for test, (rps, p99) in figures.items():
                        entry = results.setdefault((endpoint.name, pipeline, test), {})
                        entry.setdefault("rps", []).append(rps)
                        entry.setdefault("p99", []).append(p99)
                    cpu = results.setdefault((endpoint.name, pipeline, "cpu"), {"us": []})
                    cpu["us"].append(used / total * 1e6)
        return {
            "results": results,
            "names": [endpoint.name for endpoint in endpoints],
            "nginx_version": subprocess.run(
                [nginx_binary(), "-v"], capture_output=True, text=True, check=False
            ).stderr.strip(),
        }
    finally:
        for endpoint in endpoints:
            endpoint.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def summary(result: dict) -> dict:
    """Medians and the ratios the issue sets targets for."""
    results = result["results"]
    table = {}
    for (name, pipeline, test), entry in results.items():
        if test == "cpu":
            table[(name, pipeline, "cpu")] = median(entry["us"])
        else:
            table[(name, pipeline, test)] = (median(entry["rps"]), median(entry["p99"]))
    ratios = {}
    for pipeline in REQUESTS:
        for test in TESTS:
            nginx_rps, nginx_p99 = table[("nginx", pipeline, test)]
            for name in ("pass-through", "command features"):
                rps, p99 = table[(name, pipeline, test)]
                ratios[(name, pipeline, test)] = (rps / nginx_rps, p99 / nginx_p99)
    return {"table": table, "ratios": ratios}
