"""`redkeep up` and `redkeep down`: run a bundle on this machine, without Docker.

`up` runs redis-server (run/redis.conf: the bundle's configuration with local paths), the
exporter, the proxy and the backup schedule. It starts what is missing and keeps what runs,
so it also brings a partly dead stack back; a helper that runs but does not answer is
restarted, and one redkeep.yaml no longer asks for is stopped. `down` stops every process of
the bundle. Both hold the bundle's lock (run/stack.lock), and both know the bundle's processes
by what they are (`stack/processes.py`), never by a pid file alone.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from redkeep.actions.locate import load_bundle
from redkeep.app import Application
from redkeep.bundle import CONFIG_NAME, Bundle
from redkeep.config.deployment import plan_nodes
from redkeep.config.schema import Settings
from redkeep.errors import RedkeepError, UsageError
from redkeep.fsutil import SECRET_MODE, atomic_write, ensure_private_dir, open_private_log
from redkeep.redis.client import client_for, connect
from redkeep.redis.target import Target, parse_host_port
from redkeep.render.redis_conf import local_paths, render_redis_conf
from redkeep.signals import interrupted_by_signals
from redkeep.stack import probe, processes, redis_server
from redkeep.stack.children import end_child
from redkeep.stack.lock import stack_lock
from redkeep.stack.processes import BACKUP, EXPORTER, PROXY, REDIS, Located, Service

if TYPE_CHECKING:
    from redkeep.actions.init import InitReport
    from redkeep.redis.observe import DeploymentView

DEFAULT_STACK_DIR = "redkeep-stack"
START_TIMEOUT = 30.0
HELPER_TIMEOUT = 15.0
STOP_TIMEOUT = {REDIS: 30.0, BACKUP: 60.0}  # a backup in progress finishes or aborts cleanly
HELPER_STOP_TIMEOUT = 10.0
# What redis-server logs when it will not exit because its final save failed (6.x to 8.x).
SHUTDOWN_REFUSED = ("can't exit", "Errors trying to shut down")
SAVE_WORDS = ("save", "saving", "rdb", "disk", "no space", "fsync")  # a refusal about saving
# Warnings that say nothing about a shutdown (a client's TLS handshake failing, the request).
LOG_NOISE = ("accepting a client connection", "User requested shutdown")


def stack_dir(directory: Path | None, cwd: Path) -> Path:
    """DIR, else the current directory if it holds a bundle, else ./redkeep-stack."""
    if directory is not None:
        return directory
    if (cwd / CONFIG_NAME).is_file():
        return cwd
    return cwd / DEFAULT_STACK_DIR


# Start order: redis-server first, what depends on it after. Stopping goes the other way.
SERVICES = (REDIS, EXPORTER, PROXY, BACKUP)
STOP_ORDER = SERVICES[::-1]


def open_stack(app: Application, directory: Path | None) -> "tuple[Bundle, InitReport | None]":
    """The bundle `up` runs (see `stack_dir`), created first when there is none; the report of
    that creation, if any."""
    from redkeep.actions.init import init_bundle  # noqa: PLC0415 - status and health need not

    root = stack_dir(directory, Path(os.getcwd()))
    created = None if (root / CONFIG_NAME).is_file() else init_bundle(root)
    return load_bundle(app, root), created


def find_stack(app: Application, directory: Path | None) -> Bundle:
    """The bundle `down` stops (see `stack_dir`)."""
    return load_bundle(app, stack_dir(directory, Path(os.getcwd())))


def is_deployment(bundle: Bundle) -> bool:
    """Whether the bundle is a sentinel or cluster deployment (many nodes), not one server."""
    return bundle.settings.deployment.topology != "standalone"


def bundle_services(bundle: Bundle) -> list[Service]:
    """What `up` runs for this bundle, in start order: for a sentinel or cluster deployment,
    its nodes and Sentinels, then the helpers it runs across them (`deployment_helpers`)."""
    if is_deployment(bundle):
        from redkeep.stack import nodes  # noqa: PLC0415 - rendering loads Jinja

        return nodes.services(bundle) + deployment_helpers(bundle)
    unwanted = unwanted_services(bundle)
    return [service for service in SERVICES if service not in unwanted]


def deployment_helpers(bundle: Bundle) -> list[Service]:
    """The helpers `up` runs for a sentinel or cluster deployment, in start order: one
    exporter for every node and Sentinel (Prometheus finds them through its
    /discover-cluster-nodes), the proxy of a sentinel deployment when enabled (it follows the
    primary the Sentinels name; not a cluster's: the proxy is no cluster router), and the
    backup schedule when backup.interval_minutes is set (a cluster's shards or the Sentinel
    deployment's primary, as `backup run --dir` takes them)."""
    settings = bundle.settings
    helpers = [EXPORTER]
    if settings.deployment.topology == "sentinel" and settings.proxy.enabled:
        helpers.append(PROXY)
    if settings.backup.interval_minutes:
        helpers.append(BACKUP)
    return helpers


def proxy_clash(settings: Settings) -> str | None:
    """The deployment node whose local port proxy.listen would take, or None: `redkeep init`
    moves the proxy off it, `up` refuses to start over it."""
    if settings.deployment.topology == "standalone":
        return None
    port = parse_host_port(settings.proxy.listen, "proxy.listen")[1]
    planned = plan_nodes(settings.deployment, settings.redis.tls_port)
    return next((node.name for node in planned if port in (node.port, node.bus_port)), None)


def unwanted_services(bundle: Bundle) -> dict[Service, str]:
    """Helpers redkeep.yaml no longer asks for, and the setting that says so."""
    settings = bundle.settings
    unwanted = {}
    if not settings.proxy.enabled:
        unwanted[PROXY] = "proxy.enabled is false"
    if not settings.backup.interval_minutes:
        unwanted[BACKUP] = "backup.interval_minutes is 0"
    return unwanted


def probe_service(
    bundle: Bundle, service: Service, timeout: float = probe.PROBE_TIMEOUT
) -> probe.Answer | None:
    """Ask a helper what its users ask: the exporter for /health, the proxy for its /metrics
    (served by the loop that carries the data) or, without that endpoint, for a PING through
    it. None for a service that serves nothing (the backup schedule, redis-server)."""
    settings = bundle.settings
    if service is EXPORTER:
        host, port = probe.connect_host(settings.exporter.listen)
        tls = bool(settings.exporter.tls_cert_file)
        return probe.http_get(host, port, "/health", tls, timeout)
    if service is PROXY:
        proxy = settings.proxy
        if proxy.metrics_listen:
            host, port = probe.connect_host(proxy.metrics_listen)
            return probe.http_get(host, port, "/metrics", False, timeout)
        host, port = probe.connect_host(proxy.listen)
        pair = (bundle.tls.client_cert(), bundle.tls.client_key()) if proxy.tls else None
        return probe.redis_ping(host, port, pair, timeout)
    return None


def survey(bundle: Bundle, services: list[Service]) -> dict[Service, Located]:
    """Where each service runs now (read-only)."""
    return {service: processes.locate(service, bundle.root, bundle.run_dir) for service in services}


@dataclass
class Outcome:
    """What `up` did about one service."""

    service: Service
    pid: int
    action: str  # "started", "kept" or "restarted"
    why: str = ""  # why a running one was restarted


@dataclass
class UpReport:
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # stale pid files removed
    stopped: list[Outcome] = field(default_factory=list)  # helpers no longer configured
    redis_process: subprocess.Popen | None = None  # set when this `up` started redis-server
    # A sentinel or cluster deployment: the nodes and Sentinels this `up` started, by name.
    node_processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    topology: str = "standalone"
    live: "DeploymentView | None" = None  # the deployment as it answered once healthy

    def outcome(self, service: Service) -> Outcome | None:
        return next((item for item in self.outcomes if item.service is service), None)


def bring_up(
    bundle: Bundle, detach: bool, on_wait: Callable[[str], None] = lambda holder: None
) -> UpReport:
    """Start what is missing of the bundle's stack and keep what runs; under the lock.

    Interrupted or failed, it stops what it started and leaves what it found running. A helper
    redkeep.yaml no longer asks for is stopped (`report.stopped`). In the foreground (not
    `detach`), nothing may be running yet: Ctrl-C will stop it all.
    """
    if is_deployment(bundle):
        from redkeep.actions.stack_nodes import bring_up_nodes  # noqa: PLC0415

        return bring_up_nodes(bundle, detach, on_wait)
    with stack_lock(bundle.run_dir, "up", on_wait):
        services = bundle_services(bundle)
        found = survey(bundle, services)
        report = UpReport(notes=remove_stale_pidfiles(found.values()))
        refuse_foreground(bundle, found.values(), detach)
        for service, why in unwanted_services(bundle).items():
            for pid in running_pids(bundle, service):
                stop_or_raise(bundle, service, pid)
                report.stopped.append(Outcome(service, pid, "stopped", why))
        try:
            for service in services:
                report.outcomes.append(bring_up_one(bundle, found[service], report))
        except BaseException:  # interrupted or failed: stop what this `up` started
            for outcome in reversed(report.outcomes):  # started in SERVICES order: STOP_ORDER
                if outcome.action != "kept":
                    stop_or_raise(bundle, outcome.service, outcome.pid)
            if report.redis_process is not None:
                report.redis_process.wait(timeout=5)
            raise
        return report


def refuse_foreground(bundle: Bundle, found: Iterable[Located], detach: bool) -> None:
    """A foreground `up` must start everything itself (Ctrl-C stops what it started)."""
    running = [located for located in found if located.running]
    if running and not detach:
        listing = ", ".join(f"{item.service.label} pid {item.pid}" for item in running)
        raise RedkeepError(
            f"{bundle.root} already runs in the background ({listing}); `redkeep up --detach "
            f"{bundle.root}` starts what is missing, `redkeep down {bundle.root}` stops it"
        )


def bring_up_one(bundle: Bundle, located: Located, report: UpReport) -> Outcome:
    """Start, keep or restart one service (redis-server, or a helper) as found."""
    service = located.service
    if service is REDIS:
        if located.pid is not None:
            wait_until_healthy(bundle, located.pid, None, bundle.run_dir / "redis.log")
            atomic_write(located.pidfile, f"{located.pid}\n", SECRET_MODE)  # it may have been lost
            return Outcome(REDIS, located.pid, "kept")
        process = start_redis(bundle)
        report.redis_process = process
        return Outcome(REDIS, process.pid, "started")
    if located.pid is None:
        return Outcome(service, start_helper(bundle, service), "started")
    why = _why_not_serving(bundle, service, located.pid)
    if why is None:
        atomic_write(located.pidfile, f"{located.pid}\n", SECRET_MODE)
        return Outcome(service, located.pid, "kept")
    # Running but not serving as configured now: a new one serves the bundle.
    stop_or_raise(bundle, service, located.pid)
    return Outcome(service, start_helper(bundle, service), "restarted", why)


def _why_not_serving(bundle: Bundle, service: Service, pid: int) -> str | None:
    """Why a running helper must be replaced (stuck, or redkeep.yaml changed), or None."""
    if service is BACKUP:
        every = processes.option_value(pid, "--every")
        wanted = bundle.settings.backup.interval_minutes
        if every is None or float(every) != wanted:
            return f"pid {pid} ran every {every} min, backup.interval_minutes is {wanted}"
        return None
    port = listen_port(bundle, service)
    if port is not None and port not in processes.listening_ports(pid):
        return f"pid {pid} did not listen on port {port}"
    answer = probe_service(bundle, service)
    if answer is not None and not answer.answering:
        return f"pid {pid} did not answer: {answer.detail}"
    return None


def running_pids(bundle: Bundle, service: Service) -> list[int]:
    """Every process of `service` for the bundle: the one its pid file names, and any other."""
    located = processes.locate(service, bundle.root, bundle.run_dir)
    pids = [located.pid] if located.pid else []
    return pids + [pid for pid in processes.find_processes(service, bundle.root) if pid not in pids]


def remove_stale_pidfiles(found: Iterable[Located]) -> list[str]:
    """Remove pid files that name no process of the bundle; one note per file removed."""
    notes = []
    for located in found:
        if located.stale:
            located.pidfile.unlink(missing_ok=True)
            notes.append(f"removed stale {located.pidfile}: it {located.stale}")
    return notes


def start_redis(bundle: Bundle) -> subprocess.Popen:
    """Start the bundle's redis-server; return once that very process answers."""
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
    (bundle.run_dir / "redis.pid").unlink(missing_ok=True)  # redis-server writes its own
    process = redis_server.start(binary, conf_path)
    try:
        with interrupted_by_signals():
            wait_until_healthy(bundle, process.pid, process, log_path)
    except BaseException:  # Ctrl-C or a failed start: leave nothing running behind
        end_child(process, timeout=30)
        raise
    return process


LOADING_TIMEOUT = 3600.0  # seconds a server loading its dataset is waited for, at most


def wait_until_healthy(
    bundle: Bundle,
    pid: int,
    process: subprocess.Popen | None,
    log_path: Path,
    timeout: float = START_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    target: Target | None = None,
    service: Service = REDIS,
) -> None:
    """Poll PING as the exporter until redis-server `pid` itself answers (the bundle's
    server, or `service` at `target`: a node or Sentinel of a deployment).

    INFO's process_id must be `pid`: a server that someone else runs on the port does not
    count. Raise with the log's reason if the process exits.
    """
    target = target or bundle.target("exporter")
    started = time.monotonic()
    deadline = started + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            reason = redis_server.startup_failure(log_path)
            raise RedkeepError(f"redis-server exited at start: {reason} (see {log_path})")
        if process is None and not processes.is_ours(pid, service, bundle.root):
            raise RedkeepError(f"redis-server pid {pid} exited (see {log_path})")
        try:
            client = connect(target)
            try:
                answering = int(client.info("server")["process_id"])
            finally:
                client.close()
        except UsageError:
            raise  # a bad local file: waiting will not fix it
        except RedkeepError as error:
            last_error = error.message
        except Exception as error:  # noqa: BLE001 - INFO refused or odd: keep waiting
            last_error = str(error).splitlines()[0]
        else:
            if answering == pid:
                return
            last_error = (
                f"port {target.port} is answered by another redis-server (pid {answering}), "
                f"not pid {pid}"
            )
        # Loading a big dataset takes minutes, answering LOADING or nothing meanwhile.
        if "loading the dataset" in last_error or redis_server.loading_by_log(log_path):
            deadline = max(deadline, min(started + LOADING_TIMEOUT, time.monotonic() + timeout))
        sleep(0.1)
    raise RedkeepError(
        f"redis-server pid {pid} did not answer within {timeout:g}s: {last_error} (see {log_path})"
    )


def start_helper(bundle: Bundle, service: Service, timeout: float = HELPER_TIMEOUT) -> int:
    """Start `redkeep <service> --dir ROOT` in its own session; its pid once it serves.

    A listening helper is ready when its own process listens on its port (not merely when
    something answers there). Interrupted or failed, it leaves nothing behind.
    """
    port = listen_port(bundle, service)
    if port is not None:
        listen = _listen_setting(bundle, service)
        # Else the helper would fail to bind; say who is in the way and what to change.
        processes.ensure_free(listen, f"{service.name}.listen", service.label)
    options = (str(bundle.settings.backup.interval_minutes),) if service is BACKUP else ()
    log = bundle.run_dir / f"{service.name}.log"
    with open_private_log(log) as output:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "redkeep", *service.command),
                *("--dir", str(bundle.root.resolve()), *service.marks, *options),
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            umask=0o077,
        )
    pidfile = bundle.run_dir / f"{service.name}.pid"
    atomic_write(pidfile, f"{process.pid}\n", SECRET_MODE)
    try:
        deadline = time.monotonic() + timeout
        while port is not None and port not in processes.listening_ports(process.pid):
            if process.poll() is not None:
                tail = redis_server.log_tail(log, 1)
                raise RedkeepError(
                    f"{service.label} stopped at start: {tail[-1] if tail else 'no output'} "
                    f"(see {log})"
                )
            if time.monotonic() >= deadline:
                raise RedkeepError(
                    f"{service.label} did not listen on port {port} within {timeout:g}s (see {log})"
                )
            time.sleep(0.05)
    except BaseException:
        end_child(process, timeout=HELPER_STOP_TIMEOUT)
        pidfile.unlink(missing_ok=True)
        raise
    return process.pid


def _listen_setting(bundle: Bundle, service: Service) -> str:
    return {EXPORTER: bundle.settings.exporter.listen, PROXY: bundle.settings.proxy.listen}[service]


def listen_port(bundle: Bundle, service: Service) -> int | None:
    """The port a helper serves on (None for the backup schedule)."""
    if service not in (EXPORTER, PROXY):
        return None
    return parse_host_port(_listen_setting(bundle, service))[1]


@dataclass
class DownReport:
    stopped: list[tuple[Service, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nodes: bool = False  # a sentinel or cluster deployment's nodes, not one redis-server


# What `up` says last of a sentinel or cluster deployment's helpers (the CLI prints it).
_EXPORTER_NOTE = (
    "the exporter serves every node and Sentinel at /scrape?target=, listed by "
    "/discover-cluster-nodes (prometheus/prometheus.yml uses both); its /metrics holds only "
    "the deployment's own (app checks, backups)"
)
NOT_RUN = {
    "sentinel": _EXPORTER_NOTE,
    "cluster": (
        f"{_EXPORTER_NOTE}; no proxy for a cluster: it is no cluster router (clients that "
        "speak cluster follow MOVED themselves)"
    ),
}


def bring_down(
    bundle: Bundle, on_wait: Callable[[str], None] = lambda holder: None, force: bool = False
) -> DownReport:
    """Stop every process of the bundle (helpers first, redis-server last); under the lock.

    Every service is looked for, whatever redkeep.yaml says now: it may have changed since `up`.
    redis-server saves on the way out and refuses to exit when that save fails (a full disk):
    with `force` it is then stopped without saving (SHUTDOWN NOSAVE), else that is an error.
    """
    if is_deployment(bundle):
        from redkeep.actions.stack_nodes import bring_down_nodes  # noqa: PLC0415

        return bring_down_nodes(bundle, on_wait, force)
    with stack_lock(bundle.run_dir, "down", on_wait):
        report = DownReport()
        for service in STOP_ORDER:
            located = processes.locate(service, bundle.root, bundle.run_dir)
            report.notes += remove_stale_pidfiles([located])
            for pid in running_pids(bundle, service):
                if service is REDIS:
                    report.notes += stop_redis_server(bundle, pid, force)
                else:
                    stop_or_raise(bundle, service, pid)
                report.stopped.append((service, pid))
            located.pidfile.unlink(missing_ok=True)
        return report


def stop_or_raise(bundle: Bundle, service: Service, pid: int) -> None:
    timeout = STOP_TIMEOUT.get(service, HELPER_STOP_TIMEOUT)
    if not processes.stop(pid, service, bundle.root, timeout):
        raise RedkeepError(
            f"{service.label} pid {pid} did not stop within {timeout:g}s; see "
            f"{bundle.run_dir / service.name}.log, then `kill -9 {pid}` if it hangs"
        )
    (bundle.run_dir / f"{service.name}.pid").unlink(missing_ok=True)


def stop_redis_server(
    bundle: Bundle, pid: int, force: bool, service: Service = REDIS, admin: Target | None = None
) -> list[str]:
    """SIGTERM redis-server (it saves, then exits); notes on what else it took. The bundle's
    server, or `service` (a node or Sentinel of a deployment, reached as `admin`)."""
    log = bundle.run_dir / f"{service.name}.log"
    pidfile = bundle.run_dir / f"{service.name}.pid"
    start = log.stat().st_size if log.exists() else 0
    timeout = STOP_TIMEOUT[REDIS]
    if processes.stop(pid, service, bundle.root, timeout, lambda: bool(_refusal(log, start))):
        pidfile.unlink(missing_ok=True)
        return []
    refusal = _refusal(log, start)
    saving = refusal is not None and any(word in refusal.lower() for word in SAVE_WORDS)
    if refusal is None:
        why = f"it did not exit within {timeout:g}s"
    else:
        why = f"its final save failed: {refusal}" if saving else f"it refused: {refusal}"
    if not force:
        fix = (
            f"free disk space in {bundle.data_dir} (see {log}) and"
            if saving
            else (f"let it finish what it is doing (see {log}), then")
        )
        advice = (
            f"{fix} run `redkeep down {bundle.root}` again, or `redkeep down --force "
            f"{bundle.root}` to stop it without saving (writes since its last successful save "
            "are lost unless the AOF has them)"
        )
        raise RedkeepError(f"{service.label} pid {pid} refuses to stop: {why}; {advice}")
    _shutdown_nosave(bundle, pid, admin)
    pidfile.unlink(missing_ok=True)
    return [f"{service.label} pid {pid} stopped without saving (--force): {why}"]


def _refusal(log: Path, start: int) -> str | None:
    """Why redis-server refused to exit, from what its log gained since offset `start`."""
    try:
        with log.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    if not any(mark in text for mark in SHUTDOWN_REFUSED):
        return None
    warnings = [line.split(" # ", 1)[1] for line in text.splitlines() if " # " in line]
    before: list[str] = []  # the warnings before the refusal, the last one its reason
    for line in warnings:
        if "can't exit" in line:  # the warning before it says why, else this line does
            return before[-1] if before else line
        if any(mark in line for mark in SHUTDOWN_REFUSED):
            break
        if not any(noise in line for noise in LOG_NOISE):
            before.append(line)
    return before[-1] if before else "see the log"


def _shutdown_nosave(bundle: Bundle, pid: int, admin: Target | None = None) -> None:
    """SHUTDOWN NOSAVE as the bundle's admin, then wait for `pid` to exit."""
    client = client_for(admin or bundle.target("admin"))
    try:
        client.shutdown(nosave=True)
    except Exception as error:  # noqa: BLE001 - any failure gets the same advice
        raise RedkeepError(
            f"redis-server pid {pid} refused SHUTDOWN NOSAVE: {str(error).splitlines()[0]}; "
            f"`kill -9 {pid}` stops it (writes since its last save are lost)"
        ) from None
    finally:
        client.close()
    if not processes.wait_for_exit(pid, STOP_TIMEOUT[REDIS]):
        raise RedkeepError(
            f"redis-server pid {pid} did not exit after SHUTDOWN NOSAVE; `kill -9 {pid}` stops it"
        )


def run_until_stopped(
    bundle: Bundle,
    report: UpReport,
    on_stopping: Callable[[], None] = lambda: None,
    on_note: Callable[[str], None] = lambda line: None,
) -> None:
    """A foreground `up`: serve until Ctrl-C, SIGTERM or SIGHUP, then stop the whole stack.

    If redis-server stops by itself, the rest is stopped too and that is an error.
    """
    if report.topology != "standalone":
        from redkeep.actions.stack_nodes import run_nodes_until_stopped  # noqa: PLC0415

        run_nodes_until_stopped(bundle, report, on_stopping, on_note)
        return
    process = report.redis_process
    assert process is not None, "a foreground up starts redis-server itself"
    try:
        run_foreground(process, bundle.run_dir / "redis.log")
    finally:
        on_stopping()
        bring_down(bundle)
        process.wait(timeout=5)


def run_foreground(process: subprocess.Popen, log_path: Path) -> None:
    """Wait for Ctrl-C, SIGTERM or SIGHUP (then return); raise if redis-server stops by itself."""
    with interrupted_by_signals(sigint=True):
        try:
            while process.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            return
    tail = redis_server.log_tail(log_path, 1)
    raise RedkeepError(f"redis-server stopped unexpectedly: {tail[-1] if tail else '?'}")
