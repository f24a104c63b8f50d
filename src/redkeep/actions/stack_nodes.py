"""`redkeep up` and `down` for a sentinel or cluster deployment: every data node and Sentinel
on this machine, on loopback ports from redis.tls_port upward.

`up` starts what is missing (each node once its own process answers), forms the cluster, and
returns only when the whole deployment is healthy by the same judgement as `redkeep health`
(`redis/observe.py`): a primary with its replicas in sync and Sentinels with a quorum, or
cluster_state ok with every slot served. Then, for a sentinel deployment, the proxy: it follows
the primary the Sentinels name (`redkeep proxy --dir`), started, kept or restarted as for one
server (`actions/stack.py`). For both, one exporter for every node and Sentinel (it asks the
deployment for its nodes, so it follows failovers) and, when backup.interval_minutes is set,
the backup schedule (`backup run --dir`: a cluster's shards, a Sentinel deployment's primary
through a replica in sync). No proxy for a cluster (it is no router).
"""

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from redkeep.actions.live import observe_bundle
from redkeep.actions.stack import (
    LOADING_TIMEOUT,
    STOP_TIMEOUT,
    DownReport,
    Outcome,
    UpReport,
    bring_up_one,
    deployment_helpers,
    proxy_clash,
    refuse_foreground,
    remove_stale_pidfiles,
    running_pids,
    stop_or_raise,
    stop_redis_server,
    survey,
    unwanted_services,
    wait_until_healthy,
)
from redkeep.bundle import Bundle
from redkeep.errors import RedkeepError, UsageError
from redkeep.fsutil import SECRET_MODE, atomic_write
from redkeep.redis.deployment import Node
from redkeep.redis.observe import DeploymentView
from redkeep.render.nodes import LOOPBACK, planned
from redkeep.signals import interrupted_by_signals
from redkeep.stack import forming, nodes, processes, redis_server
from redkeep.stack.children import end_child
from redkeep.stack.lock import stack_lock
from redkeep.stack.processes import BACKUP, EXPORTER, PROXY, REDIS, Service

HELPERS = (EXPORTER, PROXY, BACKUP)  # what `up` may run beside the nodes, in start order

HEALTHY_TIMEOUT = 60.0  # seconds for replicas to sync and the Sentinels to agree, after start
FAILOVER_WAIT_MAX = 60.0  # seconds `down` waits for a Sentinel failover to finish, at most


def bring_up_nodes(
    bundle: Bundle,
    detach: bool,
    on_wait: Callable[[str], None] = lambda holder: None,
    healthy_timeout: float = HEALTHY_TIMEOUT,
) -> UpReport:
    """Start what is missing of the deployment, keep what runs, form it, wait until healthy;
    under the bundle's lock. Interrupted or failed, it stops what it started."""
    topology = bundle.settings.deployment.topology
    with stack_lock(bundle.run_dir, "up", on_wait):
        services = nodes.services(bundle)
        helpers = deployment_helpers(bundle)
        clash = proxy_clash(bundle.settings) if PROXY in helpers else None
        if clash:
            raise UsageError(
                f"proxy.listen {bundle.settings.proxy.listen} is {clash}'s port in this "
                f"deployment; set proxy.listen in {bundle.config_path} to a free port (a new "
                f"bundle puts it on redis.tls_port - 1) and run up again"
            )
        found = survey(bundle, services + helpers)
        report = UpReport(notes=remove_stale_pidfiles(found.values()), topology=topology)
        refuse_foreground(bundle, found.values(), detach)
        for service, why in unwanted(bundle).items():  # asked for no more: stop it
            for pid in running_pids(bundle, service):
                stop_or_raise(bundle, service, pid)
                report.stopped.append(Outcome(service, pid, "stopped", why))
        binary = redis_server.find_redis_server()
        version = redis_server.server_version(binary)[:2]
        missing = {service.node for service, located in found.items() if not located.running}
        report.notes += nodes.write_run_confs(bundle, missing, version)
        targets = {node.name: node.target for node in bundle.deployment("exporter").nodes}
        try:
            for service in services:
                located = found[service]
                log = nodes.log_path(bundle, service.name)
                if located.pid is not None:
                    wait_until_healthy(
                        bundle, located.pid, None, log, target=targets[service.name],
                        service=service,
                    )  # fmt: skip
                    # It may have been lost.
                    atomic_write(located.pidfile, f"{located.pid}\n", SECRET_MODE)
                    report.outcomes.append(Outcome(service, located.pid, "kept"))
                    continue
                process = nodes.start(bundle, binary, service)
                report.node_processes[service.name] = process
                report.outcomes.append(Outcome(service, process.pid, "started"))
                with interrupted_by_signals():
                    wait_until_healthy(
                        bundle, process.pid, process, log, target=targets[service.name],
                        service=service,
                    )  # fmt: skip
            with interrupted_by_signals():
                if topology == "cluster":
                    report.notes += forming.form_cluster(
                        bundle.deployment("admin"),
                        planned(bundle.settings),
                        LOOPBACK,
                        log_dir=bundle.run_dir,
                        loading_timeout=LOADING_TIMEOUT,
                    )
                report.live = wait_until_whole(bundle, healthy_timeout)
            for service in helpers:  # once there is a primary to follow
                report.outcomes.append(bring_up_one(bundle, found[service], report))
        except BaseException:  # interrupted or failed: stop what this `up` started
            for outcome in reversed(report.outcomes):
                if outcome.action == "started":
                    _stop_quietly(bundle, outcome.service, outcome.pid)
            raise
        return report


def unwanted(bundle: Bundle) -> dict[Service, str]:
    """Helpers this deployment does not run now, and why (`unwanted_services`, and a
    cluster's proxy: it is no router)."""
    found = unwanted_services(bundle)
    if bundle.settings.deployment.topology == "cluster":
        found.setdefault(PROXY, "a cluster runs no proxy")
    return found


def view(bundle: Bundle) -> DeploymentView:
    """What the bundle's running deployment says about itself."""
    return observe_bundle(bundle)


def wait_until_whole(
    bundle: Bundle, timeout: float, sleep: Callable[[float], None] = time.sleep
) -> DeploymentView:
    """Poll until the deployment has no problem (`DeploymentView.problems`); raise naming
    what is still wrong after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        current = view(bundle)
        problems = current.problems()
        if not problems:
            return current
        if time.monotonic() >= deadline:
            hints = [
                f"{name}'s log says: {hint}"
                for name in dict.fromkeys(name for name, _ in current.findings() if name)
                if (hint := last_complaint(bundle.run_dir / f"{name}.log"))
            ]
            raise RedkeepError(
                f"the {current.topology} deployment is not healthy {timeout:g}s after start: "
                f"{'; '.join(problems + hints)} (logs in {bundle.run_dir})"
            )
        sleep(0.2)


# Redis marks warnings with '#' after the timestamp; these words flag the usual causes.
COMPLAINT = re.compile(r" # |error|failed|denied|not permitted|can't|cannot", re.IGNORECASE)


def last_complaint(log: Path) -> str:
    """The last warning or error a node logged (why it does not answer: a data dir it cannot
    write, a bad certificate, ...), or "" when there is none."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-200:]
    except OSError:
        return ""
    found = [line for line in lines if COMPLAINT.search(line)]
    return found[-1].split(" # ", 1)[-1].strip()[:300] if found else ""


def _stop_quietly(bundle: Bundle, service: Service, pid: int) -> None:
    """Stop a node this `up` started (it holds no data worth a failed stop's error)."""
    if not processes.stop(pid, service, bundle.root, STOP_TIMEOUT[REDIS]):
        processes.send_signal(pid, service, bundle.root, signal.SIGKILL)
    (bundle.run_dir / f"{service.name}.pid").unlink(missing_ok=True)


def stop_order(bundle: Bundle) -> list[Service]:
    """The nodes in the order `down` stops them (after the helpers): the Sentinels first (so
    none starts a failover while the nodes stop), then the nodes that replicate now, then the
    primaries (which then have no replica to wait for)."""
    services = nodes.services(bundle)
    sentinels = [service for service in services if nodes.is_sentinel(service)]
    try:
        replicas = {node.name for node in view(bundle).nodes if node.role == "replica"}
    except RedkeepError:  # no exporter password in .env: stopping needs none, go by the plan
        replicas = {node.name for node in planned(bundle.settings) if node.role == "replica"}
    data = [service for service in services if not nodes.is_sentinel(service)]
    data.sort(key=lambda service: service.name not in replicas)
    return sentinels + data


def bring_down_nodes(
    bundle: Bundle, on_wait: Callable[[str], None] = lambda holder: None, force: bool = False
) -> DownReport:
    """Stop every node and Sentinel of the deployment; under the bundle's lock."""
    admins = {node.name: node.target for node in _admin_nodes(bundle)}
    with stack_lock(bundle.run_dir, "down", on_wait):
        report = DownReport(nodes=True)
        if not force and bundle.settings.deployment.topology == "sentinel":
            report.notes += wait_out_failover(bundle)
        for service in reversed(HELPERS):  # whatever redkeep.yaml says now (it may have changed)
            report.notes += remove_stale_pidfiles(
                [processes.locate(service, bundle.root, bundle.run_dir)]
            )
            for pid in running_pids(bundle, service):
                stop_or_raise(bundle, service, pid)
                report.stopped.append((service, pid))
        for service in stop_order(bundle):
            located = processes.locate(service, bundle.root, bundle.run_dir)
            report.notes += remove_stale_pidfiles([located])
            for pid in _pids(bundle, service, located):
                report.notes += stop_redis_server(bundle, pid, force, service, admins[service.name])
                report.stopped.append((service, pid))
            located.pidfile.unlink(missing_ok=True)
        return report


def wait_out_failover(bundle: Bundle, poll: float = 0.5) -> list[str]:
    """Wait while the Sentinels fail the primary over. Stopped half-way, their files still
    name the old primary and the next `up` would make it primary again: the promoted node
    would then resync from it and lose every write it acknowledged (seen in an attack
    review). Raise, rather than stop, if it does not end in time; `down --force` stops anyway."""
    limit = min(bundle.settings.deployment.failover_timeout_milliseconds / 1000, FAILOVER_WAIT_MAX)
    deadline = time.monotonic() + limit
    waited = False
    while True:
        try:
            busy = view(bundle).failover_under_way()
        except RedkeepError:  # cannot ask (no exporter password): go by the files as they are
            return []
        if not busy:
            return ["waited for the Sentinels to finish a failover"] if waited else []
        if time.monotonic() > deadline:
            raise RedkeepError(
                f"{', '.join(busy)}: a failover of the primary is still in progress after "
                f"{limit:.0f}s; stopping now would let the next `up` start from the old primary "
                f"and lose writes. Check `redkeep health {bundle.root}` and run down again, or "
                "`redkeep down --force` to stop anyway"
            )
        waited = True
        time.sleep(poll)


def _admin_nodes(bundle: Bundle) -> tuple[Node, ...]:
    try:
        return bundle.deployment("admin").nodes
    except RedkeepError:  # no admin password: stopping works without one
        return bundle.deployment("admin", with_password=False).nodes


def _pids(bundle: Bundle, service: Service, located: processes.Located) -> list[int]:
    pids = [located.pid] if located.pid else []
    return pids + [pid for pid in processes.find_processes(service, bundle.root) if pid not in pids]


def run_nodes_until_stopped(
    bundle: Bundle, report: UpReport, on_stopping: Callable[[], None] = lambda: None,
    on_exit: Callable[[str], None] = lambda line: None,
) -> None:  # fmt: skip
    """A foreground `up`: serve until Ctrl-C, SIGTERM or SIGHUP, then stop the deployment.

    A node that stops by itself is what failover is for: it is said (`on_exit`), not fatal.
    Only when every data node has stopped does `up` stop, with an error.
    """
    started = dict(report.node_processes)
    try:
        _watch(bundle, started, on_exit)
    finally:
        on_stopping()
        bring_down_nodes(bundle)
        for process in started.values():
            end_child(process, timeout=5)


def _watch(
    bundle: Bundle, started: dict[str, subprocess.Popen], on_exit: Callable[[str], None]
) -> None:
    told: set[str] = set()
    data = {name for name in started if not name.startswith("sentinel-")}
    with interrupted_by_signals(sigint=True):
        try:
            while True:
                for name, process in started.items():
                    if name not in told and process.poll() is not None:
                        told.add(name)
                        tail = redis_server.log_tail(nodes.log_path(bundle, name), 1)
                        on_exit(
                            f"{name} pid {process.pid} stopped: {tail[-1] if tail else '?'}; "
                            f"`redkeep up --detach {bundle.root}` starts it again"
                        )
                if data and data <= told:
                    raise RedkeepError("every data node has stopped; stopping the Sentinels")
                time.sleep(0.2)
        except KeyboardInterrupt:
            return


SENTINEL_RESTART_TIMEOUT = 30.0  # seconds for a restarted Sentinel to link to its peers again


def local_sentinel(bundle: Bundle, name: str) -> int | None:
    """The pid of Sentinel `name` when this machine's `redkeep up --detach` runs it (a
    compose or Kubernetes one, or one a foreground `up` watches, is not ours to restart)."""
    service = processes.node_service(name)
    located = processes.locate(service, bundle.root, bundle.run_dir)
    if located.pid is None or processes.parent_command(located.pid) == ("up",):
        return None
    return located.pid


def restart_sentinel(
    bundle: Bundle, name: str, pid: int, timeout: float = SENTINEL_RESTART_TIMEOUT
) -> int:
    """Stop Sentinel `name` (pid `pid`), start it again on its run/NAME.conf (what it learned
    stays), and wait until it answers and every Sentinel is linked to its peers again; its
    new pid. The caller holds the bundle's lock and restarts one Sentinel at a time, so the
    others keep the quorum; no data node is touched, so no failover starts."""
    service = processes.node_service(name)
    target = next(node.target for node in bundle.deployment("exporter").nodes if node.name == name)
    stop_redis_server(bundle, pid, False, service)
    binary = redis_server.find_redis_server()
    process = nodes.start(bundle, binary, service)
    log = nodes.log_path(bundle, name)
    with interrupted_by_signals():
        wait_until_healthy(bundle, process.pid, process, log, target=target, service=service)
        wait_until_sentinels_linked(bundle, timeout)
    return process.pid


def sentinels_unlinked(current: DeploymentView, sentinels: int) -> list[str]:
    """Why the Sentinels are not all linked to each other and agreeing (their problems, or a
    peer count short of the plan's); [] when they are."""
    found = [text for view in current.sentinels for text in current.problems_of(view.name)]
    for view in current.sentinels:
        if view.reached and view.other_sentinels != sentinels - 1:
            found.append(f"{view.name} knows {view.other_sentinels} of {sentinels - 1} peers")
    return found


def wait_until_sentinels_linked(
    bundle: Bundle, timeout: float, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Poll `up`'s health judgement until every Sentinel answers, agrees on the primary, has
    a quorum and a link to each peer; raise naming what is still wrong after `timeout`."""
    count = bundle.settings.deployment.sentinels
    deadline = time.monotonic() + timeout
    while True:
        problems = sentinels_unlinked(view(bundle), count)
        if not problems:
            return
        if time.monotonic() >= deadline:
            raise RedkeepError(
                f"not linked again {timeout:g}s after restart: {'; '.join(problems)}"
            )
        sleep(0.2)
