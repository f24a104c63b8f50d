"""`redkeep proxy` against nginx `stream` (rendered from the same configuration, 1 worker).

Three comparisons, each against nginx in front of the same Redis in the same run:

(a) bundle: the proxy exactly as `redkeep up` starts it (TLS with client certificates to
    clients, mutual TLS to Redis, default command policy, pre-AUTH caps, access log and metrics
    on), and nginx rendered from the bundle (`redkeep render nginx`: the same TLS both ways);
    clients log in as the bundle's `app` user over TLS.
(b) plain TCP, the proxy's defaults (command policy, pre-AUTH caps, access log): clients of a
    Redis without passwords (they never AUTH), and clients of a Redis with a password (AUTH).
(c) plain TCP, `--pass-through`, clients of a Redis without passwords.

redis-benchmark SET and GET, 50 clients, unpipelined and `-P 16`. Rounds alternate every
endpoint so drift hits all alike; figures are medians over the rounds. The proxies' CPU time
per request is read from /proc around each run. redis-benchmark only takes a password as `-a`:
the passwords here are throw-away ones of a temporary Redis and bundle.
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
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import REDKEEP, Server, free_port, median, need

CLIENTS = 50
ROUNDS = 5
REQUESTS = {1: 100_000, 16: 1_000_000}  # per test (SET, GET) and run
TESTS = ("SET", "GET")
NGINX_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
BENCH_PASSWORD = "bench-throwaway-password"  # noqa: S105 - a temporary loopback Redis
# (comparison, our endpoint, nginx's endpoint)
COMPARISONS = (
    ("(a) bundle: TLS both ways, default policy, caps, access log; clients AUTH",
     "bundle proxy", "bundle nginx"),
    ("(b) plain TCP, default policy; clients of a Redis without passwords",
     "default, no AUTH", "nginx"),
    ("(b) plain TCP, default policy; clients AUTH", "default, AUTH", "nginx, AUTH"),
    ("(c) plain TCP, --pass-through", "pass-through", "nginx"),
)  # fmt: skip
TARGETS = {"bundle proxy": 0.8, "default, no AUTH": 0.8, "default, AUTH": 0.8, "pass-through": 1.0}


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists() or not Path(NGINX_MODULE).exists():
        raise SystemExit("benchmark needs nginx and libnginx-mod-stream (make setup installs them)")
    return found


def wait_listening(port: int, process: subprocess.Popen | None, name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
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


@dataclass
class Endpoint:
    name: str
    port: int
    client_flags: list[str] = field(default_factory=list)  # TLS and AUTH for redis-benchmark
    process: subprocess.Popen | None = None
    pid: int | None = None  # a process we did not start ourselves (the bundle's proxy)
    nginx: bool = False

    def pids(self) -> list[int]:
        if self.nginx and self.process is not None:
            return nginx_workers(self.process.pid)
        if self.process is not None:
            return [self.process.pid]
        return [self.pid] if self.pid else []

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)


def start_nginx(workdir: Path, name: str, flags: list[str], client_flags: list[str]) -> Endpoint:
    port = free_port()
    directory = workdir / name.replace(" ", "-").replace(",", "")
    directory.mkdir()
    conf = directory / "nginx.conf"
    subprocess.run(
        [
            REDKEEP,
            "render",
            "nginx",
            f"--listen=127.0.0.1:{port}",
            f"--log-dir={directory}",
            f"--pid-file={directory / 'nginx.pid'}",
            f"--out={conf}",
            *flags,
        ],  # fmt: skip
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=directory,
    )
    process = subprocess.Popen(
        [nginx_binary(), "-c", str(conf), "-e", str(directory / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, process, name)
    return Endpoint(name, port, client_flags, process=process, nginx=True)


def start_redkeep(
    workdir: Path, name: str, upstream: int, flags: list[str], client_flags
) -> Endpoint:
    """`redkeep proxy` with its defaults outside a bundle (plain TCP to clients)."""
    port = free_port()
    directory = workdir / name.replace(" ", "-").replace(",", "")
    directory.mkdir()
    (directory / "redkeep.yaml").write_text("proxy:\n  tls: false\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REDKEEP_")}
    process = subprocess.Popen(
        [
            REDKEEP,
            "proxy",
            f"--dir={directory}",
            f"--listen=127.0.0.1:{port}",
            f"--upstream=127.0.0.1:{upstream}",
            "--allow=127.0.0.0/8",
            f"--access-log={directory / 'access.log'}",
            f"--metrics-listen=127.0.0.1:{free_port()}",
            *flags,
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    wait_listening(port, process, name)
    return Endpoint(name, port, client_flags, process=process)


class Bundle:
    """`redkeep init` + `redkeep up --detach` in a temp dir: Redis, exporter and proxy."""

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "bundle"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REDKEEP_")}
        self.proxy_port = free_port()
        self.env |= {
            "REDKEEP_PROXY__LISTEN": f"127.0.0.1:{self.proxy_port}",
            "REDKEEP_PROXY__METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "REDKEEP_EXPORTER__LISTEN": f"127.0.0.1:{free_port()}",
        }
        self.tls_port = free_port()
        self._redkeep("init", str(self.root), f"--tls-port={self.tls_port}")
        self._redkeep("up", str(self.root), "--detach")
        tls = self.root / "tls"
        secrets = dict(
            line.split("=", 1)
            for line in (self.root / ".env").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        self.client_flags = [
            "--tls", "--cacert", str(tls / "ca.crt"), "--cert", str(tls / "client.crt"),
            "--key", str(tls / "client.key"), "--sni", "localhost",
            "--user", "app", "-a", secrets["REDIS_APP_PASSWORD"].strip().strip('"'),
        ]  # fmt: skip

    def _redkeep(self, *args: str) -> None:
        subprocess.run(
            [REDKEEP, *args], check=True, env=self.env, stdout=subprocess.DEVNULL, timeout=120
        )

    def proxy(self) -> Endpoint:
        pid = int((self.root / "run" / "proxy.pid").read_text().split()[0])
        wait_listening(self.proxy_port, None, "bundle proxy")
        return Endpoint("bundle proxy", self.proxy_port, self.client_flags, pid=pid)

    def nginx(self, workdir: Path) -> Endpoint:
        return start_nginx(workdir, "bundle nginx", [f"--dir={self.root}"], self.client_flags)

    def stop(self) -> None:
        subprocess.run([REDKEEP, "down", str(self.root)], env=self.env, check=False, timeout=60)


def benchmark(endpoint: Endpoint, pipeline: int) -> dict[str, tuple[float, float]]:
    """{test: (requests per second, p99 latency ms)} of one redis-benchmark run per test.

    One test at a time, a second apart: each opens CLIENTS new connections, and the default
    policy admits 100 new connections per second per address.
    """
    figures = {}
    for test in TESTS:
        time.sleep(1.1)
        output = subprocess.run(
            [
                need("redis-benchmark"),
                "-h",
                "127.0.0.1",
                "-p",
                str(endpoint.port),
                "-c",
                str(CLIENTS),
                "-n",
                str(REQUESTS[pipeline]),
                "-P",
                str(pipeline),
                "-t",
                test.lower(),
                "--csv",
                *endpoint.client_flags,
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=False,
        )
        if output.returncode != 0:
            problem = (output.stderr + output.stdout)[-500:]
            raise RuntimeError(f"redis-benchmark against {endpoint.name}: {problem}")
        header, *data = list(csv.reader(io.StringIO(output.stdout)))
        rps, p99 = header.index("rps"), header.index("p99_latency_ms")
        figures |= {row[0]: (float(row[rps]), float(row[p99])) for row in data}
    return figures


def start_endpoints(
    workdir: Path, bundle: Bundle, open_redis: Server, auth_redis: Server
) -> list[Endpoint]:
    auth = ["--user", "bench", "-a", BENCH_PASSWORD]
    plain = ["--allow=127.0.0.0/8"]
    to_open = [f"--upstream=127.0.0.1:{open_redis.port}", *plain]
    to_auth = [f"--upstream=127.0.0.1:{auth_redis.port}", *plain]
    endpoints = [Endpoint("direct", open_redis.port), bundle.proxy()]
    endpoints.append(bundle.nginx(workdir))
    endpoints.append(start_nginx(workdir, "nginx", to_open, []))
    endpoints.append(start_redkeep(workdir, "default, no AUTH", open_redis.port, [], []))
    endpoints.append(
        start_redkeep(workdir, "pass-through", open_redis.port, ["--pass-through"], [])
    )
    endpoints.append(start_nginx(workdir, "nginx, AUTH", to_auth, auth))
    endpoints.append(start_redkeep(workdir, "default, AUTH", auth_redis.port, [], auth))
    return endpoints


def run() -> dict:
    open_redis = Server()
    auth_redis = Server(
        "--user", "default", "off", "--user", "bench", "on", f">{BENCH_PASSWORD}", "~*", "+@all",
        username="bench", password=BENCH_PASSWORD,
    )  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="redkeep-bench-proxy-"))
    endpoints: list[Endpoint] = []
    bundle = None
    try:
        bundle = Bundle(workdir)
        endpoints = start_endpoints(workdir, bundle, open_redis, auth_redis)
        results: dict = {}
        for pipeline, requests in REQUESTS.items():
            for _ in range(ROUNDS):
                for endpoint in endpoints:
                    before = cpu_seconds(endpoint.pids())
                    figures = benchmark(endpoint, pipeline)
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
        if bundle is not None:
            bundle.stop()
        open_redis.stop()
        auth_redis.stop()
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
    for _, ours, peer in COMPARISONS:
        for pipeline in REQUESTS:
            for test in TESTS:
                rps, p99 = table[(ours, pipeline, test)]
                peer_rps, peer_p99 = table[(peer, pipeline, test)]
                ratios[(ours, pipeline, test)] = (rps / peer_rps, p99 / peer_p99)
            cpu, peer_cpu = table[(ours, pipeline, "cpu")], table[(peer, pipeline, "cpu")]
            ratios[(ours, pipeline, "cpu")] = (cpu / peer_cpu if peer_cpu else 0.0, 0.0)
    return {"table": table, "ratios": ratios}
