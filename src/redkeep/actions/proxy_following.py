"""Whether a sentinel bundle's proxy, running on this machine, follows the primary.

Judged by the proxy's own /metrics (whom it sends new clients to, how many Sentinels answered
it), never assumed from its configuration: a proxy that can no longer log in to the Sentinels
keeps its last primary and looks fine until the next failover. `health` and `status` compare
its view with the live primary; `users rotate` and `finish-rotation` of the proxy's Sentinel
user make it ask again at once (SIGHUP) and roll back a password it cannot use.
"""

import re
import signal
import time
from dataclasses import dataclass, replace

import redis

from redkeep.bundle import Bundle
from redkeep.redis.client import client_for
from redkeep.redis.explain import first_line
from redkeep.stack import probe, processes
from redkeep.stack.processes import PROXY

CONFIRM_TIMEOUT = 10.0  # for a reloaded proxy to finish a round of asking the Sentinels
POLL = 0.1
_LINE = re.compile(r"^(redkeep_proxy_[a-z_]+)(\{[^}]*\})? (\S+)$")
_ADDRESS = re.compile(r'address="([^"]*)"')


@dataclass(frozen=True)
class ProxyView:
    """What the proxy's /metrics say about following the Sentinels."""

    upstream: str | None  # HOST:PORT new clients go to
    primary_known: bool
    answering: int  # Sentinels that answered its last round
    rounds_since_reload: int  # rounds of asking begun after its last reload (SIGHUP), ended
    reloads: int


def follows_sentinels(bundle: Bundle) -> bool:
    """A sentinel bundle whose proxy follows the Sentinels."""
    settings = bundle.settings
    proxy = settings.proxy
    return settings.deployment.topology == "sentinel" and proxy.enabled and not proxy.upstream


def local_proxy_pid(bundle: Bundle) -> int | None:
    """The pid of this bundle's proxy on this machine, None when it does not run here."""
    located = processes.locate(PROXY, bundle.root, bundle.run_dir)
    return located.pid if located.running else None


def has_metrics(bundle: Bundle) -> bool:
    return bool(bundle.settings.proxy.metrics_listen)


def read_view(bundle: Bundle, timeout: float = probe.PROBE_TIMEOUT) -> ProxyView | str:
    """The proxy's view, or why it could not be read."""
    host, port = probe.connect_host(bundle.settings.proxy.metrics_listen)
    answer = probe.http_get(host, port, "/metrics", False, timeout)
    if answer.status != 200:
        return f"its metrics at {host}:{port} do not answer as expected ({answer.detail})"
    values: dict[str, float] = {}
    upstream = None
    for line in answer.body.decode("utf-8", "replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        values[name] = float(value)
        if name == "redkeep_proxy_upstream_info" and labels:
            found = _ADDRESS.search(labels)
            upstream = found.group(1) if found else None
    if "redkeep_proxy_sentinel_rounds_total" not in values:
        return f"its metrics at {host}:{port} say it does not follow the Sentinels"
    return ProxyView(
        upstream=upstream,
        primary_known=values.get("redkeep_proxy_primary_known") == 1,
        answering=int(values.get("redkeep_proxy_sentinels_answering", 0)),
        rounds_since_reload=int(values.get("redkeep_proxy_sentinel_rounds_since_reload", 0)),
        reloads=int(values.get("redkeep_proxy_reloads_total", 0)),
    )


def following_problem(bundle: Bundle, primary: tuple[str, int] | None) -> str | None:
    """What keeps the bundle's proxy here from sending clients to `primary` (the live
    primary's host and port); None when it does, or when no proxy of the bundle runs here."""
    if not follows_sentinels(bundle):
        return None
    located = processes.locate(PROXY, bundle.root, bundle.run_dir)
    if not located.running:
        if located.stale is None:  # never started here (or stopped by `down`)
            return None
        return (
            f"the proxy is not running (its pid file {located.stale}): clients of "
            f"REDIS_URL are refused; `redkeep up --detach {bundle.root}` starts it"
        )
    if not has_metrics(bundle):  # no view to ask for: what a new client lands on, at least
        role = role_through_proxy(bundle)
        if role != "master":
            return f"a new client of the proxy lands on a server that says it is {role}"
        return None
    view = read_view(bundle)
    if isinstance(view, str):
        return f"the proxy cannot be asked whom it follows: {view}"
    return _judge(view, bundle.settings.deployment.sentinels, primary)


def _judge(view: ProxyView, sentinels: int, primary: tuple[str, int] | None) -> str | None:
    if view.answering * 2 <= sentinels:
        return (
            f"only {view.answering} of the {sentinels} Sentinels answer the proxy: it will not "
            "follow the next failover (see its log: a password they refuse? a proxy started "
            "with REDKEEP_SENTINEL_PASSWORD keeps that one)"
        )
    if not view.primary_known:
        return "the proxy knows no primary to send clients to"
    if primary is not None and not _same_address(view.upstream, *primary):
        host, port = primary
        return f"the proxy sends clients to {view.upstream}, not to the primary {host}:{port}"
    return None


def _same_address(upstream: str | None, host: str, port: int) -> bool:
    """HOST:PORT as the proxy's metrics write it (from Sentinel's answer: an IP address) is
    the node at `host` (from the plan: `localhost` for this machine) and `port`."""
    if upstream is None:
        return False
    shown_host, _, shown_port = upstream.rpartition(":")
    loopback = {"localhost", "127.0.0.1", "[::1]", "::1"}
    same_host = shown_host == host or (shown_host in loopback and host in loopback)
    return same_host and shown_port == str(port)


def role_through_proxy(bundle: Bundle) -> str:
    """What a new client of the proxy lands on says it is (HELLO's role, as `exporter`), or
    why it could not be asked."""
    host, port = probe.connect_host(bundle.settings.proxy.listen)
    target = replace(bundle.target("exporter"), host=host, port=port, tls_name=bundle.settings.host)
    client = client_for(target)
    try:
        reply = client.execute_command("HELLO", "2")
    except (redis.RedisError, OSError) as error:
        return f"unreachable through it ({first_line(str(error))})"
    finally:
        client.close()
    fields = dict(zip(reply[::2], reply[1::2], strict=False))
    return str(fields.get("role", "unknown"))


def reload_proxy(bundle: Bundle, pid: int) -> bool:
    """SIGHUP: it reads redkeep.yaml, .env and its certificates again and asks the Sentinels."""
    return processes.send_signal(pid, PROXY, bundle.root, signal.SIGHUP)


def reload_and_confirm(bundle: Bundle, timeout: float = CONFIRM_TIMEOUT) -> str | None:
    """Make the bundle's proxy here read .env again and ask the Sentinels now (SIGHUP); wait
    for a round that started after the signal. A problem, or None when a majority of the
    Sentinels answered it (or no proxy of the bundle follows Sentinels here)."""
    if not follows_sentinels(bundle):
        return None
    pid = local_proxy_pid(bundle)
    if pid is None or not has_metrics(bundle):
        return None
    before = read_view(bundle)
    if isinstance(before, str):
        return f"the proxy (pid {pid}) cannot be asked: {before}"
    if not reload_proxy(bundle, pid):
        return f"the proxy (pid {pid}) could not be signalled"
    deadline = time.monotonic() + timeout
    view: ProxyView | str = before
    # Judged on a round begun after the reload (one under way at the signal is cancelled).
    while time.monotonic() < deadline:
        view = read_view(bundle)
        reloaded = isinstance(view, ProxyView) and view.reloads > before.reloads
        if reloaded and view.rounds_since_reload >= 1:
            break
        time.sleep(POLL)
    if isinstance(view, str):
        return f"the proxy (pid {pid}) cannot be asked: {view}"
    if view.reloads <= before.reloads:
        return f"the proxy (pid {pid}) did not reload within {timeout:g}s (see its log)"
    if view.rounds_since_reload < 1:
        return f"the proxy (pid {pid}) did not finish asking the Sentinels within {timeout:g}s"
    return _judge(view, bundle.settings.deployment.sentinels, None)
