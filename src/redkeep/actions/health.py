"""`redkeep health`: is Redis answering (0/1, fit for probes); `actions/status.py` builds on it.

For a sentinel or cluster bundle it looks at the whole deployment (`redis/observe.py`):
every node's live role and replication, every Sentinel's view, the cluster's slots.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from redkeep.actions.live import observe_bundle
from redkeep.actions.locate import load_bundle, target_for
from redkeep.actions.node_status import summary
from redkeep.actions.proxy_following import following_problem
from redkeep.actions.stack import is_deployment
from redkeep.app import Application
from redkeep.bundle import Bundle
from redkeep.errors import ExitStatus, RedkeepError
from redkeep.redis.client import client_for, explain_failure
from redkeep.redis.explain import first_line
from redkeep.redis.observe import DeploymentView
from redkeep.redis.target import ConnectionOptions, Target
from redkeep.stack import redis_server


@dataclass(frozen=True)
class HealthResult:
    """Whether Redis answered PING (JSON: docs/json.md, `redkeep health`)."""

    healthy: bool
    url: str
    detail: str
    latency_ms: float | None = None
    status: int = 0  # the exit status of the failure (3: cannot connect)
    cannot_persist: str = ""  # Redis' MISCONF reply: a failed save or AOF write stops writes
    topology: str = "standalone"
    problems: tuple[str, ...] | None = None  # one line each; None: the detail when unhealthy

    def problem_lines(self) -> list[str]:
        if self.problems is not None:
            return list(self.problems)
        return [] if self.healthy else [self.detail]

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"problems": self.problem_lines()}


@dataclass(frozen=True)
class HealthRequest:
    """The flags of `redkeep health`."""

    connection: ConnectionOptions = ConnectionOptions()
    directory: Path | None = None


def run_health(app: Application, request: HealthRequest) -> HealthResult:
    """PING as the bundle's least-privileged `exporter` user (or as the options say); a
    sentinel or cluster bundle's whole deployment unless --url names one server."""
    bundle = load_bundle(app, request.directory, required=False)
    if bundle is not None and is_deployment(bundle) and request.connection.url is None:
        return deployment_health(bundle)
    return check_health(target_for(request.connection, bundle, "exporter"))


def anchor_node(bundle: Bundle, view: DeploymentView) -> tuple[Target, bool]:
    """The node status and health name first (the live primary of a sentinel deployment, the
    first node that answered of a cluster) and whether it answered."""
    targets = {node.name: node.target for node in bundle.deployment("exporter").nodes}
    if view.topology == "sentinel":
        chosen = view.live_primary()
    else:
        chosen = next((node for node in view.nodes if node.reached), None)
    if chosen is None:
        return targets[view.nodes[0].name], False
    return targets[chosen.name], True


def deployment_health(bundle: Bundle) -> HealthResult:
    """Healthy when the whole deployment is: a primary with its replicas in sync and Sentinels
    with a quorum that name it, or cluster_state ok with all 16384 slots served everywhere."""
    started = time.perf_counter()
    view = observe_bundle(bundle)
    problems = view.problems() + proxy_problems(bundle, view)
    target, _ = anchor_node(bundle, view)
    reached = any(node.reached or node.loading for node in view.nodes)  # loading: it answers
    latency = round((time.perf_counter() - started) * 1000, 1)
    if not problems:
        return HealthResult(
            True, target.display_url, summary(view), latency, topology=view.topology, problems=()
        )
    return HealthResult(
        False,
        target.display_url,
        "; ".join(problems),
        status=int(ExitStatus.FAILURE if reached else ExitStatus.UNREACHABLE),
        topology=view.topology,
        problems=tuple(problems),
    )


def proxy_problems(bundle: Bundle, view: DeploymentView) -> list[str]:
    """A sentinel bundle's proxy running here must send clients to the live primary and be
    answered by a majority of the Sentinels (else it misses the next failover)."""
    if view.topology != "sentinel":
        return []
    primary = view.live_primary()
    where = (primary.host, primary.port) if primary is not None else None
    problem = following_problem(bundle, where)
    return [problem] if problem else []


def check_health(target: Target) -> HealthResult:
    """PING over the target's TLS and ACL settings; never raises for an unhealthy server.

    A server that cannot persist (MISCONF, a full disk) answers PING with an error: it is
    reached, so that is exit status 1 with what to do, not "cannot connect" (3).
    """
    started = time.perf_counter()
    try:
        client = client_for(target)
    except RedkeepError as error:
        return HealthResult(False, target.display_url, error.message, status=int(error.status))
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        if str(error).startswith("MISCONF"):
            reply = first_line(str(error))
            message = misconf_message(target, reply)
            status = int(ExitStatus.FAILURE)  # reached and logged in: not "cannot connect"
            return HealthResult(
                False, target.display_url, message, status=status, cannot_persist=reply
            )
        failure = explain_failure(error, target)
        return HealthResult(False, target.display_url, failure.message, status=int(failure.status))
    finally:
        client.close()
    latency = (time.perf_counter() - started) * 1000
    return HealthResult(True, target.display_url, "PONG", round(latency, 1))


def misconf_message(
    target: Target, reply: str, data_dir: str = "its data directory", why: str = ""
) -> str:
    """What a MISCONF `reply` means and what to do; `why` the cause, if known."""
    if "AOF" in reply:  # "MISCONF Errors writing to the AOF file: No space left on device"
        what, why = "writing its AOF failed", reply.split(":", 1)[-1].strip()
    else:
        what = "its last RDB save failed"
    return (
        f"MISCONF: {target.where} cannot persist to disk ({what}{': ' + why if why else ''}), "
        f"so it refuses writes and even PING; free disk space in {data_dir}"
    )


def save_failure(bundle: Bundle) -> str:
    """Why the bundle's redis-server could not save, from the end of its log."""
    log = bundle.run_dir / "redis.log"
    warnings = [
        line.split(" # ", 1)[1]
        for line in redis_server.log_tail(log, 30)
        if " # " in line and "Background saving error" not in line
    ]
    return f"{warnings[-1]}, see {log}" if warnings else f"see {log}"
