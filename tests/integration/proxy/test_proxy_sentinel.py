"""The proxy behind Sentinel: it sends clients to the primary the Sentinels name, follows a
failover, and never lets a client write to a demoted primary or to a replica a Sentinel names.

One deployment for the module (three data nodes, three Sentinels with a quorum of two,
down-after 1000 ms), built by hand from a standalone bundle (`sentinel_by_hand.py`). Writes go
through the proxy as `INCRBYFLOAT`: Redis replicates it as a SET, so on any server its
`cmdstat_incrbyfloat` counts only what clients sent there, never what replication applied.
"""

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.integration.proxy.conftest import Proxy, access_entries
from tests.integration.sentinel_by_hand import (
    MASTER_NAME,
    HandMadeDeployment,
    build,
    sentinel_sees_master,
    wait_for,
)
from tests.servers import RedisServer, free_port, require_binary


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, redis_binary) -> Iterator[HandMadeDeployment]:
    built = build(
        tmp_path_factory.mktemp("sentinel") / "stack",
        redis_binary,
        replicas=2,
        sentinels=3,
        down_after_ms=1000,
    )
    yield built
    built.stop()


def bundle_proxy(start_proxy, deployment: HandMadeDeployment, *flags: str) -> Proxy:
    """`redkeep proxy --dir BUNDLE`: the bundle's TLS both ways, its Sentinels by default."""
    return start_proxy("--dir", str(deployment.bundle.root), "--log-level=info", *flags)


def through(proxy: Proxy, deployment: HandMadeDeployment) -> redis.Redis:
    """An application's client of the proxy, as `app`, failing fast (no retries of its own)."""
    tls = deployment.bundle.tls
    return redis.Redis(
        host="127.0.0.1",
        port=proxy.port,
        username="app",
        password=deployment.bundle.password("app"),
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.client_cert()),
        ssl_keyfile=str(tls.client_key()),
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )


def primary_port(deployment: HandMadeDeployment, sentinel: str) -> int:
    with deployment.client(sentinel) as client:
        return int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1])


def node_named(deployment: HandMadeDeployment, port: int) -> str:
    return next(name for name in deployment.data_nodes if deployment.port(name) == port)


def client_writes(deployment: HandMadeDeployment, name: str) -> tuple[int, int]:
    """(calls, rejected calls) of INCRBYFLOAT on a node: what clients sent there."""
    with deployment.client(name) as client:
        stats = client.info("commandstats").get("cmdstat_incrbyfloat", {})
    return stats.get("calls", 0), stats.get("rejected_calls", 0)


@dataclass
class Writer:
    """INCRBYFLOAT canary 1 through the proxy in a loop, reconnecting after any error."""

    client: redis.Redis
    successes: list[tuple[float, float, float]] = field(default_factory=list)  # start, end, value
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                value = float(self.client.incrbyfloat("canary", 1))
            except redis.RedisError:
                self.errors += 1
                time.sleep(0.005)
                continue
            self.successes.append((started, time.monotonic(), value))
            time.sleep(0.002)  # bounded load: Sentinel must not take a busy primary for dead

    def first_success_after(self, moment: float) -> tuple[float, float, float] | None:
        return next((s for s in self.successes if s[0] > moment), None)


@dataclass
class Benchmark:
    """redis-benchmark through the proxy, run after run until stopped (a run ends at the first
    closed connection, so the load starts again right away)."""

    args: list[str]
    runs: list[tuple[float, int]] = field(default_factory=list)  # (started, exit code)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                done = subprocess.run(self.args, capture_output=True, timeout=30, check=False)
                code = done.returncode
            except subprocess.TimeoutExpired:
                code = -1
            self.runs.append((started, code))
            time.sleep(0.2)


def benchmark_args(proxy: Proxy, deployment: HandMadeDeployment) -> list[str]:
    tls = deployment.bundle.tls
    # redis-benchmark takes a password only as -a: this is the throw-away bundle's.
    return [
        require_binary("redis-benchmark"),
        "-h", "127.0.0.1", "-p", str(proxy.port), "--tls", "--sni", "localhost",
        "--cacert", str(tls.ca_cert), "--cert", str(tls.client_cert()),
        "--key", str(tls.client_key()), "--user", "app", "-a", deployment.bundle.password("app"),
        "-c", "2", "-n", "1000", "-q", "INCRBYFLOAT", "bench", "1",
    ]  # fmt: skip


def restart(server: RedisServer) -> None:
    """Start it again on its config as it is now, once it serves (a new log to tell when)."""
    server.log.unlink()
    server.start(keep_config=True)


def started(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_follows_a_failover_and_never_writes_to_the_old_primary(
    deployment: HandMadeDeployment, start_proxy
):
    old = current_primary(deployment)
    # The proxy starts while a Sentinel is down: it follows the other two, and subscribes to
    # the third once it is back.
    down = deployment.nodes["sentinel-2"]
    down.stop()
    proxy = bundle_proxy(start_proxy, deployment)
    assert f"127.0.0.1:{deployment.port(old)}" in proxy.log.read_text()
    app = through(proxy, deployment)
    assert app.incrbyfloat("canary", 1) == 1
    assert client_writes(deployment, old) == (1, 0)
    restart(down)
    with deployment.client("sentinel-2") as client:
        wait_for(lambda: sentinel_sees_master(client), "sentinel-2")
    proxy.wait_for_metric("redkeep_proxy_sentinels_subscribed", 3)

    writer = Writer(app)
    bench = Benchmark(benchmark_args(proxy, deployment))
    threads = [started(writer.run), started(bench.run)]
    try:
        wait_for(lambda: len(writer.successes) > 20 and bench.runs, "load through the proxy")
        killed_at = time.monotonic()
        os.kill(deployment.nodes[old].pid, signal.SIGKILL)
        wait_for(lambda: writer.first_success_after(killed_at), "a write after the kill", 30)
        first = writer.first_success_after(killed_at)
        print(f"\nproxy failover window: {first[1] - killed_at:.2f} s from SIGKILL of the primary")
        print(f"to the first successful write through it ({writer.errors} failed attempts)")

        # The proxy names the primary the Sentinels name, and says it moved from the old one.
        wait_for(lambda: follows(proxy, deployment), "the proxy on the Sentinels' primary")
        assert proxy.metrics()["redkeep_proxy_upstream_switches_total"] >= 1
        log = access_entries(proxy.access_log)
        switches = [entry for entry in log if entry["event"] == "upstream_switch"]
        assert switches[1]["from"] == f"127.0.0.1:{deployment.port(old)}"

        # The old primary comes back (a primary with its old data until Sentinel demotes it)
        # and rejoins as a replica; the load goes on meanwhile.
        restart(deployment.nodes[old])
        wait_for(lambda: replicating(deployment, old), f"{old} rejoining as a replica", 30)
        rejoined = len(writer.successes)
        wait_for(lambda: len(writer.successes) > rejoined + 50, "writes after the rejoin")
    finally:
        writer.stop.set()
        bench.stop.set()
        for thread in threads:
            thread.join(40)
    app.close()

    # Judged on Redis: since its restart the old primary received no client write at all (not
    # even one refused as READONLY); the primary holds the last acknowledged value (every write
    # since the last switch landed there), and redis-benchmark ran to the end through the proxy.
    assert client_writes(deployment, old) == (0, 0)
    new = current_primary(deployment)
    with deployment.client(new) as client:
        assert float(client.get("canary")) == writer.successes[-1][2]
        assert client.info("errorstats").get("errorstat_READONLY") is None
    assert client_writes(deployment, new)[0] > 0
    assert any(code == 0 for begun, code in bench.runs if begun > first[1])


def current_primary(deployment: HandMadeDeployment) -> str:
    """The data node the Sentinels agree is the primary (asked until two of three agree)."""
    named: list[int] = []

    def agreed() -> bool:
        named[:] = [primary_port(deployment, name) for name in deployment.sentinels]
        return max(named.count(port) for port in named) >= 2

    wait_for(agreed, "Sentinels agreeing on the primary")
    return node_named(deployment, max(set(named), key=named.count))


def follows(proxy: Proxy, deployment: HandMadeDeployment) -> bool:
    address = f"127.0.0.1:{deployment.port(current_primary(deployment))}"
    return proxy.metrics().get(f'redkeep_proxy_upstream_info{{address="{address}"}}') == 1


def replicating(deployment: HandMadeDeployment, name: str) -> bool:
    """A replica with its link up (Sentinel closes clients when it demotes a node: reconnect)."""
    try:
        with deployment.client(name) as client:
            return client.info("replication").get("master_link_status") == "up"
    except redis.ConnectionError:
        return False


def test_a_sentinel_that_names_a_replica_is_not_followed(
    deployment: HandMadeDeployment, start_proxy, redis_binary, tmp_path
):
    """A Sentinel monitoring a server that is a replica (a Sentinel behind the failover): the
    proxy checks the role and sends no client there; with two good Sentinels it follows them."""
    stale = stale_pair(deployment, redis_binary, tmp_path)
    try:
        alone = bundle_proxy(start_proxy, deployment, f"--sentinel=127.0.0.1:{stale[1].tls_port}")
        with pytest.raises(redis.RedisError, match="unavailable"):
            through(alone, deployment).incrbyfloat("canary", 1)
        assert alone.metrics()["redkeep_proxy_primary_known"] == 0
        assert alone.metrics()['redkeep_proxy_upstream_errors_total{kind="no_primary"}'] >= 1
        assert "answers as replica" in alone.log.read_text()

        sentinels = [f"--sentinel=127.0.0.1:{stale[1].tls_port}"] + [
            f"--sentinel=127.0.0.1:{deployment.port(name)}" for name in ("sentinel-0", "sentinel-1")
        ]
        majority = bundle_proxy(start_proxy, deployment, *sentinels)
        primary = current_primary(deployment)
        before = client_writes(deployment, primary)[0]
        app = through(majority, deployment)
        for _ in range(5):
            app.incrbyfloat("canary", 1)
        app.close()
        assert client_writes(deployment, primary)[0] == before + 5
        with redis_client(deployment, stale[0].tls_port) as replica:
            stats = replica.info("commandstats")
            assert "cmdstat_incrbyfloat" not in stats
            assert replica.role()[0] == "slave"
    finally:
        for server in stale:
            server.stop()


def stale_pair(
    deployment: HandMadeDeployment, binary: str, workdir
) -> tuple[RedisServer, RedisServer]:
    """A replica (of a server that does not exist) with the deployment's users and TLS, and a
    Sentinel that monitors it under the deployment's master name: it names a replica."""
    bundle = deployment.bundle
    tls = bundle.tls

    def tls_lines(node: str, acl_from: str) -> list[str]:
        return [
            f"tls-cert-file {tls.node_cert(node)}",
            f"tls-key-file {tls.node_key(node)}",
            f"tls-ca-cert-file {tls.ca_cert}",
            "tls-auth-clients yes",
            "tls-replication yes",
            f"aclfile {bundle.node_dir(acl_from) / 'users.acl'}",
        ]

    replica = RedisServer(
        binary,
        workdir / "stale-replica",
        [*tls_lines("redis-1", "redis-1"), f"replicaof 127.0.0.1 {free_port()}"],
        tls_port=free_port(),
    ).start()
    sentinel = RedisServer(
        binary,
        workdir / "stale-sentinel",
        [
            *tls_lines("sentinel-0", "sentinel-0"),
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {replica.tls_port} 1",
        ],
        tls_port=free_port(),
        args=("--sentinel",),
        conf_name="sentinel.conf",
        ready="+monitor master",
    )
    try:
        sentinel.start()
    except BaseException:
        replica.stop()
        raise
    return replica, sentinel


def redis_client(deployment: HandMadeDeployment, port: int) -> redis.Redis:
    tls = deployment.bundle.tls
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        username="admin",
        password=deployment.bundle.password("admin"),
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.client_cert()),
        ssl_keyfile=str(tls.client_key()),
        socket_timeout=5,
        decode_responses=True,
    )
