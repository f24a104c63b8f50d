"""Real redis-server processes for tests: free loopback ports, temp dirs, always torn down."""

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL_HINT = "install it with `make setup` (apt-get install redis-server redis-tools)"


def require_binary(name: str) -> str:
    """The path of `name`, or fail the test run with an install hint (never skip)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH; {INSTALL_HINT}", pytrace=False)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """One redis-server with a config of our choosing, in `workdir`."""

    binary: str
    workdir: Path
    config: list[str]
    port: int = 0
    tls_port: int = 0
    process: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "redis.log"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "redis.conf"
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
        self.process = subprocess.Popen(
            [self.binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                pytest.fail(f"redis-server exited: {error}{self.log_text()}", pytrace=False)
            if "Ready to accept connections" in self.log_text():
                return self
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"redis-server not ready in {timeout}s: {self.log_text()}", pytrace=False)

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
    """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
