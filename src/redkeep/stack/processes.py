"""Which running processes are a bundle's own, decided by /proc and never by a pid file alone.

A pid file only says where to look first. Before any signal the process itself must show it
belongs to the bundle: redis-server by its working directory (`dir` puts it in the bundle's
data/, a node or Sentinel of a sentinel or cluster deployment in data/NAME/; it rewrites its
own command line, so the config path is not there), a helper by its
command line (`redkeep NAME ... --dir ROOT`). Anything else at that pid (a recycled pid, an
unrelated redis-server) is never signalled, and its pid file is stale. Signals go through a
pidfd, so a process that exits between the check and the signal cannot be replaced by another.
"""

import contextlib
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from redkeep.bundle import Bundle
from redkeep.errors import RedkeepError
from redkeep.redis.target import parse_host_port

LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Service:
    """A process `redkeep up` runs: its pid file and log are run/NAME.pid and run/NAME.log."""

    name: str
    label: str  # for messages: "the exporter"
    command: tuple[str, ...] = ()  # `redkeep COMMAND ...` for helpers; empty for redis-server
    marks: tuple[str, ...] = ()  # options that tell this helper from a one-off command
    node: str = ""  # a node or Sentinel of a deployment: its name (data/NAME is its directory)


REDIS = Service("redis", "redis-server")
EXPORTER = Service("exporter", "the exporter", ("exporter",))
PROXY = Service("proxy", "the proxy", ("proxy",))
BACKUP = Service("backup", "the backup schedule", ("backup", "run"), ("--every",))


def node_service(name: str) -> Service:
    """A redis-server of a sentinel or cluster deployment (a data node or a Sentinel)."""
    return Service(name, name, node=name)


def is_ours(pid: int, service: Service, root: Path) -> bool:
    """Whether process `pid` is `service` of the bundle at `root` (False if it has exited)."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = [
            word.decode(errors="replace") for word in (proc / "cmdline").read_bytes().split(b"\0")
        ]
        if not argv[0]:
            return False  # a zombie: it has exited
        if not service.command:  # redis-server: the standalone server, a node, a Sentinel
            program = os.path.basename(argv[0].split(" ", 1)[0])
            home = Bundle(root).data_dir / service.node if service.node else Bundle(root).data_dir
            return program == "redis-server" and _cwd(proc) == home.resolve()
        if _subcommand(argv, len(service.command)) != service.command:
            return False
        if not all(mark in argv for mark in service.marks):
            return False
        directory = _dir_argument(argv)
        return directory is not None and (_cwd(proc) / directory).resolve() == root.resolve()
    except OSError:
        return False


def parent_command(pid: int) -> tuple[str, ...] | None:
    """The redkeep subcommand (`("up",)`) of process `pid`'s parent, or None when the parent
    is not redkeep (a detached node's parent is init or a subreaper) or `pid` has exited."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        argv = Path(f"/proc/{ppid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, IndexError, ValueError):
        return None
    return _subcommand(argv, 1)


def _cwd(proc: Path) -> Path:
    return Path(os.readlink(proc / "cwd"))


def _subcommand(argv: list[str], length: int) -> tuple[str, ...] | None:
    """The words after `redkeep` and its global options (`--debug`), or None if not redkeep."""
    for index, word in enumerate(argv):
        if os.path.basename(word) == "redkeep":
            rest = list(argv[index + 1 :])
            while rest and rest[0].startswith("-"):
                rest.pop(0)
            return tuple(rest[:length])
    return None


def _dir_argument(argv: list[str]) -> str | None:
    return _option(argv, "--dir")


def _option(argv: list[str], option: str) -> str | None:
    """The value of `option` (`--dir X` or `--dir=X`) in `argv`, or None."""
    for index, word in enumerate(argv):
        if word == option and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(f"{option}="):
            return word.removeprefix(f"{option}=")
    return None


@dataclass(frozen=True)
class Located:
    """Where a bundle's service runs, and what its pid file said."""

    service: Service
    pid: int | None  # the bundle's process, if one runs
    pidfile: Path
    stale: str | None = None  # the pid file names something else: what, for a note

    @property
    def running(self) -> bool:
        return self.pid is not None


def locate(service: Service, root: Path, run_dir: Path) -> Located:
    """The running process of `service`: the one in its pid file if that is ours, else any
    process of the bundle found in /proc (a lost or overwritten pid file hides nothing)."""
    pidfile = run_dir / f"{service.name}.pid"
    stale = None
    if pidfile.exists():
        recorded = read_pidfile(pidfile)
        if recorded is not None and is_ours(recorded, service, root):
            return Located(service, recorded, pidfile)
        if recorded is None:
            stale = "holds no pid"
        elif not _alive(recorded):
            stale = f"names pid {recorded}, which has exited"
        else:
            stale = (
                f"names pid {recorded}, which is not this bundle's "
                f"{service.label.removeprefix('the ')} (that process was left alone)"
            )
    found = next(find_processes(service, root), None)
    return Located(service, found, pidfile, stale)


def _alive(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())  # empty for a zombie
    except OSError:
        return False


def read_pidfile(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def find_processes(service: Service, root: Path) -> Iterator[int]:
    """Every running process of `service` for the bundle at `root`."""
    own = os.getpid()
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) != own
            and is_ours(int(entry.name), service, root)
        ):
            yield int(entry.name)


def send_signal(pid: int, service: Service, root: Path, signum: int) -> bool:
    """Send `signum` to `pid` only if it is the bundle's `service`; return whether it was sent."""
    with _pidfd(pid) as handle:
        # The pidfd names this very process: if it exits after the check, the signal fails
        # rather than reach a process that got the pid since.
        if handle is None or not is_ours(pid, service, root):
            return False
        try:
            signal.pidfd_send_signal(handle, signum)
        except ProcessLookupError:
            return False
        return True


def stop(
    pid: int,
    service: Service,
    root: Path,
    timeout: float,
    give_up: Callable[[], bool] = lambda: False,
) -> bool:
    """SIGTERM the bundle's `service` at `pid` and wait for it to exit.

    Return True once it has exited (or was not ours to stop), False if it is still running
    after `timeout` seconds, or as soon as `give_up()` says it will not exit.
    """
    with _pidfd(pid) as handle:
        if handle is None or not is_ours(pid, service, root):
            return True
        try:
            signal.pidfd_send_signal(handle, signal.SIGTERM)
            # A stopped process (SIGSTOP, Ctrl-Z) only acts on SIGTERM once it runs again.
            signal.pidfd_send_signal(handle, signal.SIGCONT)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while True:
            wait = max(0.0, min(0.2, deadline - time.monotonic()))
            readable, _, _ = select.select([handle], [], [], wait)  # readable once it exited
            if readable:
                return True
            if time.monotonic() >= deadline or give_up():
                return False


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for process `pid` to exit; whether it has."""
    with _pidfd(pid) as handle:
        if handle is None:
            return True
        readable, _, _ = select.select([handle], [], [], timeout)
        return bool(readable)


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    """A pidfd for process `pid` (None if it has exited), closed afterwards."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        yield None
        return
    try:
        yield handle
    finally:
        os.close(handle)


def is_stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP, Ctrl-Z) or held by a debugger."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def started_at(pid: int) -> float | None:
    """When process `pid` started (Unix time), or None if it has exited."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def option_value(pid: int, option: str) -> str | None:
    """The value given to `option` (`--every 5` or `--every=5`) on process `pid`'s command
    line, or None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    return _option(argv, option)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` itself listens on (its own sockets, not whoever holds the
    port), from its file descriptors and its network namespace's socket tables."""
    proc = Path(f"/proc/{pid}")
    inodes = set()
    try:
        for fd in (proc / "fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN_STATE and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def ensure_free(listen: str, setting: str, what: str) -> None:
    """Raise RedkeepError if HOST:PORT `listen` cannot be bound (someone else holds it)."""
    host, port = parse_host_port(listen, setting)
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
