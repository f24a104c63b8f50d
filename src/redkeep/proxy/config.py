"""One proxy configuration from redkeep.yaml's proxy section and the command-line flags.

`redkeep proxy` runs it and `redkeep render nginx` renders it, so both always agree. Paths in
redkeep.yaml are relative to the bundle; a bundle fills in its own certificates and Redis.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redkeep.bundle import Bundle, resolve_path
from redkeep.config.schema import ProxySettings, Settings, TLSSettings
from redkeep.errors import UsageError
from redkeep.proxy.policy import Policy, networks, parse_commands
from redkeep.redis.target import parse_host_port

EXAMPLE = "127.0.0.1:6381"  # for a HOST:PORT error


@dataclass(frozen=True)
class ClientTLS:
    cert: Path
    key: Path
    client_ca: Path | None
    auth_clients: str  # yes, optional, no
    protocols: tuple[str, ...]
    ciphers: str
    ciphersuites: str


@dataclass(frozen=True)
class UpstreamTLS:
    ca: Path | None
    cert: Path | None
    key: Path | None
    server_name: str


@dataclass(frozen=True)
class ProxyConfig:
    listen: tuple[str, int]
    upstream: tuple[str, int]
    policy: Policy
    client_tls: ClientTLS | None
    upstream_tls: UpstreamTLS | None
    connect_timeout: float
    handshake_timeout: float
    access_log: Path | None  # None: off; Path('-'): standard output
    metrics_listen: tuple[str, int] | None


def effective_settings(base: ProxySettings, overrides: dict[str, Any]) -> ProxySettings:
    """The proxy section with the flags that were given applied (validated like the file)."""
    given = {key: value for key, value in overrides.items() if value not in (None, (), [])}
    data = base.model_dump() | given
    try:
        return ProxySettings.model_validate(data)
    except ValueError as error:
        first = error.errors()[0] if hasattr(error, "errors") else {"msg": str(error), "loc": ()}
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(f"proxy setting {where}: {first['msg']}") from None


def build_config(proxy: ProxySettings, settings: Settings | None, root: Path | None) -> ProxyConfig:
    """The runnable configuration; `settings`/`root` are the bundle's, when there is one."""

    def path(value: str | None, default: Path | None) -> Path | None:
        return default if value is None else resolve_path(value, root)

    # The bundle's own certificates, where a setting names none.
    files = Bundle(root).tls if settings is not None and root is not None else None
    if proxy.upstream:
        upstream = parse_host_port(proxy.upstream, "--upstream", EXAMPLE)
    elif settings is not None:
        upstream = ("127.0.0.1", settings.redis.tls_port)
    else:
        raise UsageError("no upstream: pass --upstream HOST:PORT (or run inside a bundle)")

    client_tls = None
    cert = path(proxy.tls_cert, files.server_cert if files and proxy.tls else None)
    key = path(proxy.tls_key, files.server_key if files and proxy.tls else None)
    if proxy.tls and (cert or key):
        if not (cert and key):
            raise UsageError("client TLS needs both --tls-cert and --tls-key")
        client_ca = path(proxy.tls_client_ca, files.ca_cert if files else None)
        auth = proxy.auth_clients if client_ca else "no"
        # The same protocols and ciphers as Redis itself (the defaults outside a bundle).
        tls_settings = settings.tls if settings is not None else TLSSettings()
        client_tls = ClientTLS(
            cert=cert,
            key=key,
            client_ca=client_ca,
            auth_clients=auth,
            protocols=tuple(tls_settings.protocols),
            ciphers=tls_settings.ciphers,
            ciphersuites=tls_settings.ciphersuites,
        )

    upstream_tls = None
    # Towards the bundle's own Redis: its CA and client certificate.
    own = files if files and not proxy.upstream else None
    ca = path(proxy.upstream_tls_ca, own.ca_cert if own else None)
    ucert = path(proxy.upstream_tls_cert, own.client_cert() if own else None)
    ukey = path(proxy.upstream_tls_key, own.client_key() if own else None)
    if ca or ucert or ukey:
        if bool(ucert) != bool(ukey):
            raise UsageError("mutual TLS to Redis needs both --upstream-tls-cert and -key")
        name = proxy.upstream_tls_name or (
            settings.host if own and settings is not None else upstream[0]
        )
        upstream_tls = UpstreamTLS(ca=ca, cert=ucert, key=ukey, server_name=name)

    denied, denied_sub = parse_commands(proxy.deny_commands)
    policy = Policy(
        allow=networks(proxy.allow),
        deny=networks(proxy.deny),
        max_conns=proxy.max_conns,
        max_conns_per_ip=proxy.max_conns_per_ip,
        conn_rate=proxy.conn_rate,
        cmd_rate=proxy.cmd_rate,
        denied_commands=denied,
        denied_subcommands=denied_sub,
        unauthenticated_limits=proxy.unauthenticated_limits,
        client_idle_timeout=proxy.client_idle_timeout,
        upstream_idle_timeout=proxy.upstream_idle_timeout,
        log_denied_commands=proxy.log_denied_commands,
    )
    access_log = None
    if proxy.access_log == "-":
        access_log = Path("-")
    elif proxy.access_log:
        access_log = path(proxy.access_log, None)
    return ProxyConfig(
        listen=parse_host_port(proxy.listen, "--listen", EXAMPLE),
        upstream=upstream,
        policy=policy,
        client_tls=client_tls,
        upstream_tls=upstream_tls,
        connect_timeout=proxy.connect_timeout,
        handshake_timeout=proxy.handshake_timeout,
        access_log=access_log,
        metrics_listen=parse_host_port(proxy.metrics_listen, "--metrics-listen", EXAMPLE)
        if proxy.metrics_listen
        else None,
    )
