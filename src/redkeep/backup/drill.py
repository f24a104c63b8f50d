"""Restore drills: load a backup into a throw-away redis-server and look at what is there.

The server listens on a unix socket only (no TCP port), in a private (0700) temp dir, with
persistence off, and is stopped at the end. It must be a version that can read the backup's RDB
version: `--server-binary` (or `backup.server_binary`) names another redis-server or
valkey-server than the one on PATH, and the same binary checks the RDB (it acts as
redis-check-rdb when called by that name).

A drill holds the decrypted data, so it must not outlive its command. On Linux the server gets
SIGKILL when the command dies (PR_SET_PDEATHSIG), even by SIGKILL; each drill dir carries its
owner's pid, and the next drill removes the dirs of owners that are gone. Elsewhere a SIGKILLed
command leaves its drill server running (its pid is in the dir's redis.pid) until killed.
"""

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

from redkeep.backup.rdb import crc64
from redkeep.errors import DamagedBackup, ExitStatus, RedkeepError, UsageError
from redkeep.redis.client import client_for
from redkeep.redis.target import Target
from redkeep.stack import redis_server
from redkeep.stack.children import die_with_parent, end_child

LOAD_TIMEOUT = 600.0
DIR_PREFIX = "redkeep-drill-"
# What a server (or its checker) says about an RDB it cannot read because of its version.
VERSION_REFUSALS = (
    "Can't handle RDB format version",
    "Wrong signature",
    "Foreign RDB version",
    "rdb-version-check relaxed",
)


class CannotCheckHere(RedkeepError):
    """The backup is newer than the local tools can read: no verdict, not damage."""

    status = ExitStatus.CANNOT_CHECK


@dataclass(frozen=True)
class ServerBinary:
    """The redis-server or valkey-server that runs drills and checks RDB files."""

    path: str
    flavour: str  # "redis" or "valkey"
    version: str

    @property
    def name(self) -> str:
        return f"{self.path} ({self.flavour.capitalize()} {self.version})"


def server_binary(path: str | None = None, given_by: str = "--server-binary") -> ServerBinary:
    """The drill server: `path` (named by `given_by`), else redis-server on PATH; raise
    UsageError if it is not one."""
    binary = path or redis_server.find_redis_server()
    if path is not None and not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise UsageError(f"{given_by} {path}: not an executable file")
    try:
        output = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except OSError as error:
        raise UsageError(f"cannot run {binary}: {error.strerror or error}") from None
    match = re.match(r"(Redis|Valkey) server v=(\S+)", output)
    if not match:
        raise UsageError(
            f"{given_by} {binary} is not a redis-server or valkey-server (--version says "
            f"{output.strip()[:60]!r})"
        )
    return ServerBinary(binary, match[1].lower(), match[2])


class Drill:
    """A running throw-away server: clients per database over its unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def client(self, db: int = 0) -> redis.Redis:
        return _client(self.socket_path, db)


@contextlib.contextmanager
def scratch_server(
    data: Path,
    aof_dirname: str | None = None,
    databases: int = 16,
    server: ServerBinary | None = None,
) -> Iterator[Drill]:
    """A throw-away server that loads `data/dump.rdb` (or the AOF dir)."""
    server = server or server_binary()
    binary = server.path
    socket_dir = _socket_dir(data)
    socket_path = socket_dir / "sock"
    settings = {
        "port": "0",  # no TCP listener at all
        "unixsocket": str(socket_path),
        "unixsocketperm": "700",
        "dir": str(data),
        "dbfilename": "dump.rdb",
        "save": "",
        "logfile": str(data / "redis.log"),
        "pidfile": str(data / "redis.pid"),
        "daemonize": "no",
        "databases": str(databases),
        "appendonly": "yes" if aof_dirname else "no",
    }
    if int(server.version.split(".")[0]) >= 7:
        # DEBUG DIGEST-VALUE compares values whatever their layout; only over the socket.
        # (Redis before 7.0 has no such setting: DEBUG is always there.)
        settings["enable-debug-command"] = "local"
    args = [binary, *(part for name, value in settings.items() for part in (f"--{name}", value))]
    if aof_dirname:
        args += ["--appenddirname", aof_dirname, "--auto-aof-rewrite-percentage", "0"]
    process = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        umask=0o077,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 - no threads run while a drill starts
    )
    client = _client(socket_path)
    try:
        _wait_loaded(client, process, data / "redis.log")
        yield Drill(socket_path)
    finally:
        client.close()
        end_child(process, timeout=30)
        if socket_dir != data:
            shutil.rmtree(socket_dir, ignore_errors=True)


SOCKET_PATH_MAX = 100  # a UNIX socket path must stay under 108 bytes (sun_path)
# A short base for sockets when TMPDIR is deep; mkdtemp makes the directory private (0700) and
# reaping checks its owner, so a shared /tmp is safe here.
SHORT_TMP = Path("/tmp")  # noqa: S108


def _socket_dir(data: Path) -> Path:
    """Where the drill's socket goes: beside its data, or, when TMPDIR is too deep for a
    socket path, a private directory in /tmp (reaped like the drill's own)."""
    if len(os.fsencode(data / "sock")) < SOCKET_PATH_MAX:
        return data
    return Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-sock-", dir=SHORT_TMP))


def _client(socket_path: Path, db: int = 0) -> redis.Redis:
    """Raw bytes (DUMP payloads), no retries; a reply may take as long as loading does."""
    target = Target("unix", socket_path=str(socket_path), db=db, timeout=LOAD_TIMEOUT)
    return client_for(target, decode_responses=False)


def _wait_loaded(client: redis.Redis, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + LOAD_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            why = _why(log)
            if any(refusal in why for refusal in VERSION_REFUSALS):
                raise CannotCheckHere(
                    f"the drill server cannot read this backup's format: {why}; verify it "
                    "with --server-binary pointing at a redis-server or valkey-server at "
                    "least as new as the one that made it"
                )
            raise RedkeepError(f"the drill server could not load the backup: {why}")
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
    return "; ".join(failures[-2:]) or (lines[-1] if lines else "no log")


def keyspace(client: redis.Redis) -> dict[str, dict[str, int]]:
    """`INFO keyspace` as {db: {keys, expires}}."""
    info = client.info("keyspace")
    return {
        db: {"keys": int(stats["keys"]), "expires": int(stats["expires"])}
        for db, stats in info.items()
        if isinstance(stats, dict)
    }


def require_keys_in_slots(
    server: Drill, ranges: list[tuple[int, int]], what: str, databases: list[int]
) -> None:
    """Raise DamagedBackup unless every key loaded in `server` hashes into `ranges` (a cluster
    shard's slots, first and last inclusive): a shard's RDB swapped with another shard's, or a
    slot map edited, restores keys a cluster would answer MOVED for.

    Each key's slot is computed here (CRC16, as redis-py routes keys) over a SCAN: about 0.9 s
    per million keys. A drill started with cluster-enabled would report the slots it claims
    without that walk, but its cluster bus listens on TCP (0.0.0.0:port+10000 unless moved,
    and Redis 6.2 cannot move it) and it allows no SELECT, which the verify drill uses.
    """
    allowed = bytearray(16384)
    for first, last in ranges:
        allowed[first : last + 1] = b"\x01" * (last - first + 1)
    outside, example = 0, None
    for db in databases:
        client = server.client(db)
        try:
            cursor = 0
            while True:
                cursor, keys = client.scan(cursor=cursor, count=5000)
                for key in keys:
                    slot = key_slot(key)
                    if not allowed[slot]:
                        outside += 1
                        example = example or (key, slot, db)
                if cursor == 0:
                    break
        finally:
            client.close()
    if example is not None:
        key, slot, db = example
        where = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)
        raise DamagedBackup(
            f"{what} holds {outside} keys outside its slots {where} (key {key!r} of db{db} is "
            f"in slot {slot}): its RDB is another shard's, or the slot map was edited; a "
            "restore would be refused with MOVED"
        )


# --- what the local server can read -------------------------------------------------------


def empty_rdb(engine: str, version: int) -> bytes:
    """An RDB with no data in the given format: magic, EOF opcode, CRC64."""
    magic = f"VALKEY{version:03d}" if engine == "valkey" else f"REDIS{version:04d}"
    body = magic.encode() + b"\xff"
    return body + crc64(body).to_bytes(8, "little")


def require_readable(
    server: ServerBinary, engine: str, version: int, backup: str, doing: str = "verify"
) -> None:
    """Raise CannotCheckHere unless `server` loads RDB files of this engine and version: an
    empty one in that format is loaded before anything is downloaded. `backup` describes the
    backup for the message, `doing` is what cannot be done here."""
    probe = scratch_dir()
    try:
        (probe / "dump.rdb").write_bytes(empty_rdb(engine, version))
        with scratch_server(probe, server=server):
            return
    except CannotCheckHere:
        own = written_version(server)
        writes = f", which writes RDB version {own}," if own else ""
        raise CannotCheckHere(
            f"cannot {doing} here: {backup} is RDB version {version}, and the drill server "
            f"{server.name}{writes} cannot read it. Run this where a server at least as new "
            "as the one that made the backup is installed, or pass --server-binary PATH (or "
            "set backup.server_binary) to such a redis-server or valkey-server"
        ) from None
    except OSError as error:
        raise RedkeepError(f"cannot prepare a drill in {probe}: {error.strerror}") from None
    finally:
        remove(probe)


def written_version(server: ServerBinary) -> int | None:
    """The RDB version `server` writes (the footer of a DUMP), or None if it cannot tell."""
    probe = scratch_dir()
    try:
        with scratch_server(probe, server=server) as drill:
            client = drill.client()
            client.set("probe", "x")
            payload = client.dump("probe")
            client.close()
        return int.from_bytes(payload[-10:-8], "little") if payload else None
    except (RedkeepError, redis.RedisError, OSError):
        return None
    finally:
        remove(probe)


def check_rdb(server: ServerBinary, path: Path) -> tuple[bool, str]:
    """Run the server binary as its RDB checker on `path`: (readable, reason).

    The reason is the checker's own error (the lines after `--- RDB ERROR DETECTED ---`), not
    its last line, which is a summary such as `[info] 0 already expired`.
    """
    result = subprocess.run(
        [f"{server.flavour}-check-rdb", str(path)],
        executable=server.path,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode == 0 and any("RDB looks OK" in line for line in lines):
        if any("rdb-version-check relaxed" in line for line in lines):
            return False, "; ".join(line for line in lines if "relaxed" in line)
        return True, "ok"
    return False, _checker_reason(lines) or f"exit status {result.returncode}"


def _checker_reason(lines: list[str]) -> str:
    if "--- RDB ERROR DETECTED ---" in lines:
        after = lines[lines.index("--- RDB ERROR DETECTED ---") + 1 :]
        reason = [line for line in after if not line.startswith("[info]")][:3]
        return "; ".join(reason)
    return lines[-1] if lines else ""


# --- drill directories --------------------------------------------------------------------


def scratch_dir() -> Path:
    """A new private (0700) temp dir named after this process, after reaping the dirs of
    drills whose command died without cleaning up."""
    reap_stale()
    return Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"))


def reap_stale() -> None:
    """Remove drill dirs (ours, by owner) whose process is gone, and any server still in one."""
    bases = {Path(tempfile.gettempdir()), SHORT_TMP}
    for path in (path for base in bases for path in base.glob(f"{DIR_PREFIX}*-*")):
        owner = path.name.removeprefix(DIR_PREFIX).split("-", 1)[0]
        with contextlib.suppress(OSError):
            info = path.lstat()  # never follow a link someone else put there
            ours = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            if ours and owner.isdigit() and not _alive(int(owner)):
                _stop_server_in(path)
                shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_server_in(path: Path) -> None:
    """A drill server left in `path` (where PR_SET_PDEATHSIG does not exist): stop it, if its
    command line names this dir (Linux /proc; elsewhere it is left to the operator)."""
    for pid_file in path.rglob("redis.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(path).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
