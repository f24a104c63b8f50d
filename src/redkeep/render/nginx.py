"""`redkeep render nginx`: the proxy configuration as an nginx `stream` config (pure text)."""

import ipaddress
from pathlib import Path

from redkeep import __version__
from redkeep.errors import UsageError
from redkeep.proxy.config import ProxyConfig
from redkeep.render import templates

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
# Without a CA of its own, Redis' certificate is checked against the system's, as the proxy does.
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"
ONE_DAY = "1d"  # nginx has no "never" for proxy_timeout


def cannot_enforce(config: ProxyConfig) -> list[str]:
    """What the proxy configuration asks for that nginx stream cannot do."""
    policy = config.policy
    lines = []
    if policy.cmd_rate:
        lines.append(
            f"the command rate limit ({policy.cmd_rate:g} commands/s per client): "
            "limit_req exists only for http"
        )
    if policy.conn_rate:
        lines.append(
            f"the new-connection rate ({policy.conn_rate:g}/s per address): limit_conn only "
            "caps open connections (use nftables `limit rate` if you need it)"
        )
    denied = sorted(name.decode().upper() for name in policy.denied_commands)
    denied += sorted(
        f"{name.decode().upper()} {sub.decode().upper()}"
        for name, subs in policy.denied_subcommands.items()
        for sub in subs
    )
    if denied:
        lines.append(f"the command policy (refusing {', '.join(denied)}): ACL must do it alone")
    if policy.unauthenticated_limits:
        lines.append("request size caps before AUTH (Redis still applies its own)")
    if policy.client_idle_timeout != policy.upstream_idle_timeout:
        lines.append("separate idle timeouts for the client and the Redis side")
    lines.append("the access log's user and command counts, per-command log lines")
    lines.append("Prometheus metrics (nginx open source has none for stream)")
    return lines


def render_nginx(
    config: ProxyConfig,
    self_path: str = "redis-stream.conf",
    log_dir: Path = Path("/var/log/nginx"),
    pid_file: Path = Path("/run/nginx-redkeep.pid"),
    stream_module: str | None = STREAM_MODULE,
) -> str:
    """The config text; `stream_module` None when nginx has the stream module built in."""
    if config.upstream_tls and is_address(config.upstream_tls.server_name):
        raise UsageError(
            f"nginx checks Redis' certificate by DNS name only, not by address "
            f"({config.upstream_tls.server_name}): pass --upstream-tls-name with a name in "
            "that certificate (e.g. localhost)"
        )
    # Block tags on lines of their own leave no blank lines behind.
    environment = templates().overlay(trim_blocks=True, lstrip_blocks=True)
    policy = config.policy
    timeouts = [t for t in (policy.client_idle_timeout, policy.upstream_idle_timeout) if t]
    return environment.get_template("nginx-stream.conf.j2").render(
        version=__version__,
        self_path=self_path,
        cannot=cannot_enforce(config),
        stream_module=stream_module,
        system_cas=SYSTEM_CAS,
        # The proxy accepts IPv4 too on a wildcard IPv6 address; nginx needs telling.
        dual_stack=config.listen[0] == "::",
        worker_connections=max(1024, 2 * policy.max_conns + 16),
        pid_file=str(pid_file),
        log_dir=str(log_dir),
        listen=_address(*config.listen),
        tls=config.client_tls,
        handshake_timeout=_duration(config.handshake_timeout),
        deny=[str(network) for network in policy.deny],
        allow=[str(network) for network in policy.allow],
        max_conns=policy.max_conns,
        max_conns_per_ip=policy.max_conns_per_ip,
        connect_timeout=_duration(config.connect_timeout),
        proxy_timeout=_duration(max(timeouts)) if timeouts else ONE_DAY,
        upstream_tls=config.upstream_tls,
        upstream=_address(*config.upstream),
    )


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _duration(seconds: float) -> str:
    """nginx time: whole seconds as '3s', fractions as milliseconds."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"
