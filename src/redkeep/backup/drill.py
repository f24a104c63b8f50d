"""Restore drills: load a backup into a throw-away redis-server and look at what is there.

The server listens on a unix socket only (no TCP port), in a temp dir, with persistence off,
and is stopped at the end. It must be a version that can read the backup's RDB version.
"""

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from redkeep.errors import RedkeepError
from redkeep.redis.client import client_for
from redkeep.redis.target import Target
from redkeep.stack import redis_server

LOAD_TIMEOUT = 600.0


class Drill:
    """A running throw-away server: clients per database over its unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def client(self, db: int = 0) -> redis.Redis:
        return _client(self.socket_path, db)


@contextlib.contextmanager
def scratch_server(
    data: Path, aof_dirname: str | None = None, databases: int = 16
) -> Iterator[Drill]:
    """A throw-away redis-server that loads `data/dump.rdb` (or the AOF dir)."""
    binary = redis_server.find_redis_server()
    socket_path = data / "redis.sock"
    settings = {
        "port": "0",  # no TCP listener at all
        "unixsocket": str(socket_path),
        "unixsocketperm": "700",
        "dir": str(data),
        "dbfilename": "dump.rdb",
        "save": "",
        "logfile": str(data / "redis.log"),
        "daemonize": "no",
        # DEBUG DIGEST-VALUE compares values whatever their layout; only over the socket.
        "enable-debug-command": "local",
        "databases": str(databases),
        "appendonly": "yes" if aof_dirname else "no",
    }
    args = [binary, *(part for name, value in settings.items() for part in (f"--{name}", value))]
    if aof_dirname:
        args += ["--appenddirname", aof_dirname, "--auto-aof-rewrite-percentage", "0"]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, umask=0o077
    )
    client = _client(socket_path)
    try:
        _wait_loaded(client, process, data / "redis.log")
        yield Drill(socket_path)
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _client(socket_path: Path, db: int = 0) -> redis.Redis:
    """Raw bytes (DUMP payloads); a reply may take as long as loading does."""
    target = Target("unix", socket_path=str(socket_path), db=db, timeout=LOAD_TIMEOUT)
    return client_for(target, decode_responses=False)


def _wait_loaded(client: redis.Redis, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + LOAD_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RedkeepError(f"the drill server could not load the backup: {_why(log)}")
        try:
            if not client.info("persistence").get("loading"):
                return
        except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
            pass
        time.sleep(0.05)
    raise RedkeepError(f"the drill server took longer than {LOAD_TIMEOUT:g}s to load the backup")


def _why(log: Path) -> str:
    """The load failure in the drill server's log, without its unrelated warnings."""
    lines = [line for line in redis_server.log_tail(log, 12) if "overcommit" not in line]
    failures = [line.split(" # ", 1)[-1] for line in lines if " # " in line or "FATAL" in line]
    text = "; ".join(failures[-2:]) or (lines[-1] if lines else "no log")
    if "Can't handle RDB format version" in text:
        text += " (install a redis-server at least as new as the one that made the backup)"
    return text


def keyspace(client: redis.Redis) -> dict[str, dict[str, int]]:
    """`INFO keyspace` as {db: {keys, expires}}."""
    info = client.info("keyspace")
    return {
        db: {"keys": int(stats["keys"]), "expires": int(stats["expires"])}
        for db, stats in info.items()
        if isinstance(stats, dict)
    }


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="redkeep-drill-"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
