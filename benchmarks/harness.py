"""Timing and process helpers shared by the benchmarks: loopback servers, medians, RSS."""

import compileall
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

REDKEEP = str(Path(sys.executable).with_name("redkeep"))


def compile_redkeep() -> None:
    """Compile redkeep's bytecode once, as pip does when it installs a package: with
    PYTHONDONTWRITEBYTECODE set (as on this machine), every timed run would otherwise compile
    redkeep's sources again (about 40 ms of CPU before the first useful step)."""
    import redkeep  # noqa: PLC0415

    if not compileall.compile_dir(Path(redkeep.__file__).parent, quiet=1):
        sys.exit("benchmark could not compile redkeep's bytecode")


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        sys.exit(f"benchmark needs {binary}: install it (make setup installs the system packages)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A throw-away redis-server on 127.0.0.1 for benchmarking."""

    def __init__(self, *config: str, username: str | None = None, password: str | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="redkeep-bench-"))
        self.port = free_port()
        args = [
            need("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            *config,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        self.client = redis.Redis(
            port=self.port, socket_timeout=600, username=username, password=password
        )
        for _ in range(200):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start: {(self.dir / 'redis.log').read_text()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(command: list[str] | str, **kwargs) -> float:
    """Wall time of one command (a list, or a shell pipeline as a string); fails loudly."""
    started = time.perf_counter()
    subprocess.run(command, shell=isinstance(command, str), check=True, **kwargs)
    return time.perf_counter() - started


def alternate(runs: int, **contenders: Callable[[], float]) -> dict[str, list[float]]:
    """Run the contenders in turn, `runs` times each, so drift hits both alike."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, run in contenders.items():
            results[name].append(run())
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mib(command: list[str]) -> float:
    """Peak resident memory of `command` (its own process), in MiB."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True
    ).stdout
    return int(output.strip().splitlines()[-1]) / 1024


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    redis_version = subprocess.run(
        [need("redis-server"), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, Redis {redis_version}"
    )


__all__ = ["resource"]
