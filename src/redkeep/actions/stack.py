"""`redkeep up` and `redkeep down`: run a bundle's Redis on this machine, without Docker.

`up` renders run/redis.conf (the bundle's configuration with local paths), has redis-server
check it, starts it, and waits until it answers PING over TLS as the exporter user.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redkeep.bundle import CONFIG_NAME, Bundle
from redkeep.connect import connect
from redkeep.errors import RedkeepError, UsageError
from redkeep.fsutil import ensure_private_dir
from redkeep.render.redis_conf import local_paths, render_redis_conf
from redkeep.signals import interrupted_by_signals
from redkeep.stack import redis_server

DEFAULT_STACK_DIR = "redkeep-stack"
START_TIMEOUT = 30.0


def stack_dir(directory: Path | None, cwd: Path) -> Path:
    """DIR, else the current directory if it holds a bundle, else ./redkeep-stack."""
    if directory is not None:
        return directory
    if (cwd / CONFIG_NAME).is_file():
        return cwd
    return cwd / DEFAULT_STACK_DIR


@dataclass
class Running:
    pid: int
    process: subprocess.Popen | None
    conf_path: Path
    log_path: Path


def start_redis(bundle: Bundle, detach: bool) -> Running:
    """Start the bundle's redis-server and return once it answers; raise if it cannot."""
    pidfile = bundle.run_dir / "redis.pid"
    running = redis_server.read_pid(pidfile)
    if running is not None:
        raise RedkeepError(
            f"{bundle.root} is already up (redis-server pid {running}); "
            f"stop it with `redkeep down {bundle.root}`"
        )
    binary = redis_server.find_redis_server()
    version = redis_server.server_version(binary)
    ensure_private_dir(bundle.run_dir)
    ensure_private_dir(bundle.data_dir)
    settings = bundle.settings
    conf = render_redis_conf(
        settings, local_paths(bundle.root), version[:2], settings.redis.bind, target="redkeep up"
    )
    conf_path = bundle.run_dir / "redis.conf"
    conf_path.write_text(conf)
    conf_path.chmod(0o600)
    redis_server.check_config(binary, conf_path)
    log_path = bundle.run_dir / "redis.log"
    pidfile.unlink(missing_ok=True)
    process = redis_server.start(binary, conf_path)
    try:
        with interrupted_by_signals():
            wait_until_healthy(bundle, process, log_path)
    except BaseException:  # Ctrl-C or a failed start: leave nothing running behind
        redis_server.stop(process.pid, timeout=10)
        process.wait(timeout=5)
        raise
    return Running(process.pid, None if detach else process, conf_path, log_path)


def wait_until_healthy(
    bundle: Bundle,
    process: subprocess.Popen,
    log_path: Path,
    timeout: float = START_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll PING as the exporter until it answers; raise with the log's reason if Redis exits."""
    target = bundle.target("exporter")
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            reason = redis_server.startup_failure(log_path)
            raise RedkeepError(f"redis-server exited at start: {reason} (see {log_path})")
        try:
            connect(target).close()
            return
        except UsageError:
            raise  # a bad local file: waiting will not fix it
        except RedkeepError as error:
            last_error = error.message
        sleep(0.1)
    raise RedkeepError(
        f"redis-server did not answer within {timeout:g}s: {last_error} (see {log_path})"
    )


def run_foreground(running: Running, on_stop: Callable[[], None]) -> int:
    """Wait for Ctrl-C, SIGTERM or SIGHUP, then stop redis-server cleanly; return 0."""
    process = running.process
    assert process is not None, "foreground runs hold their process"
    try:
        with interrupted_by_signals():
            while process.poll() is None:
                time.sleep(0.2)
        tail = redis_server.log_tail(running.log_path, 1)
        raise RedkeepError(f"redis-server stopped unexpectedly: {tail[-1] if tail else '?'}")
    except KeyboardInterrupt:
        on_stop()
        redis_server.stop(process.pid)
        process.wait(timeout=5)
        return 0


# Helpers `up` runs beside redis-server: name -> the redkeep command line that identifies them.
SERVICES = {"backup": ("backup", "run"), "exporter": ("exporter",), "proxy": ("proxy",)}


def start_service(bundle: Bundle, name: str, *options: str) -> subprocess.Popen:
    """Start `redkeep <service> --dir ROOT OPTIONS` in its own session, output in run/NAME.log.

    Its pid is also written to run/NAME.pid for `down`.
    """
    with (bundle.run_dir / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "redkeep", *SERVICES[name], "--dir", str(bundle.root), *options],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            umask=0o077,
        )
    (bundle.run_dir / f"{name}.pid").write_text(f"{process.pid}\n")
    return process


def stop_service(bundle: Bundle, name: str, timeout: float = 60.0) -> int | None:
    """Stop a helper started by `start_service` (SIGTERM, then wait); return its pid."""
    pidfile = bundle.run_dir / f"{name}.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return None
    if not _is_service(pid, name):
        pidfile.unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout  # a backup in progress finishes or aborts cleanly
    while _is_service(pid, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return pid


def _is_service(pid: int, name: str) -> bool:
    """Whether `pid` runs `redkeep <service>` (so a recycled pid is never signalled).

    Only for processes started earlier: right after exec, /proc/PID/cmdline can still be empty.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [word.encode() for word in SERVICES[name]]
    return b"redkeep" in cmdline and all(word in cmdline for word in words)


def start_backup_schedule(bundle: Bundle) -> int | None:
    """`redkeep backup run --every N` beside Redis when backup.interval_minutes is set."""
    minutes = bundle.settings.backup.interval_minutes
    return start_service(bundle, "backup", "--every", str(minutes)).pid if minutes else None


def start_exporter(bundle: Bundle, timeout: float = 15.0) -> int:
    """The exporter on exporter.listen; return its pid once it accepts connections."""
    return start_listening_service(bundle, "exporter", bundle.settings.exporter.listen, timeout)


def start_proxy(bundle: Bundle, timeout: float = 15.0) -> int | None:
    """The proxy on proxy.listen when proxy.enabled; its pid once it accepts connections."""
    if not bundle.settings.proxy.enabled:
        return None
    return start_listening_service(bundle, "proxy", bundle.settings.proxy.listen, timeout)


def start_listening_service(bundle: Bundle, name: str, listen: str, timeout: float) -> int:
    """`redkeep NAME` in the background; its pid once it accepts connections on `listen`.

    Interrupted or failed, it leaves nothing behind.
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    # Else the readiness check below would be answered by whoever holds the port.
    _ensure_free(host, int(port), listen, f"{name}.listen", f"the {name}")
    process = start_service(bundle, name)
    log = bundle.run_dir / f"{name}.log"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:  # our own child: no /proc guesswork needed
                tail = redis_server.log_tail(log, 1)
                raise RedkeepError(
                    f"the {name} stopped at start: {tail[-1] if tail else 'no output'} (see {log})"
                )
            try:
                with socket.create_connection((host, int(port)), timeout=0.5):
                    return process.pid
            except OSError:
                time.sleep(0.1)
        raise RedkeepError(f"the {name} did not listen on {listen} within {timeout:g}s")
    except BaseException:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        (bundle.run_dir / f"{name}.pid").unlink(missing_ok=True)
        raise


def _ensure_free(host: str, port: int, listen: str, setting: str, what: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the service will
        try:
            probe.bind((host, port))
        except OSError as error:
            raise RedkeepError(
                f"{what} cannot listen on {listen}: {error.strerror}; stop what holds "
                f"the port or set {setting} in redkeep.yaml"
            ) from None


def stop_redis(bundle: Bundle) -> int | None:
    """Stop the bundle's redis-server if it runs; return its pid, or None if none was running."""
    pidfile = bundle.run_dir / "redis.pid"
    pid = redis_server.read_pid(pidfile)
    if pid is None:
        return None
    if not redis_server.stop(pid):
        raise RedkeepError(f"redis-server pid {pid} did not stop within 30s; kill it by hand")
    pidfile.unlink(missing_ok=True)
    return pid
