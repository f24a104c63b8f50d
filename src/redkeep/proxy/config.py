"""One proxy configuration from redkeep.yaml's proxy section and the command-line flags.

`redkeep proxy` runs it and `redkeep render nginx` renders it, so both always agree. Paths in
redkeep.yaml are relative to the bundle; a bundle fills in its own certificates and Redis.
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redkeep.bundle import Bundle, resolve_path
from redkeep.config.deployment import plan_nodes
from redkeep.config.schema import ProxySettings, Settings, TLSSettings
from redkeep.envfile import read_env
from redkeep.errors import RedkeepError, UsageError
from redkeep.proxy.policy import Policy, networks, parse_commands
from redkeep.redis.target import parse_host_port
from redkeep.render.env import ALL_PASSWORD_KEYS

EXAMPLE = "127.0.0.1:6381"  # for a HOST:PORT error
log = logging.getLogger("redkeep.proxy")
SENTINEL_PASSWORD_ENV = "REDKEEP_SENTINEL_PASSWORD"  # noqa: S105 - a variable's name


def address_text(address: tuple[str, int]) -> str:
    """HOST:PORT for logs and metrics ([v6]:PORT for an IPv6 address)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
    server_name: str | None  # None: the host connected to (a primary named by Sentinel)


@dataclass(frozen=True)
class SentinelConfig:
    """Where to ask for the primary: the Sentinels, the name they know it by, and the user
    that asks them (and checks the answer on the primary itself)."""

    addresses: tuple[tuple[str, int], ...]
    master_name: str
    user: str
    password: str | None = field(default=None, repr=False)
    # The bundle's .env, read again at every login: `users rotate` writes the new password
    # there and `finish-rotation` removes the old one, while this proxy keeps running.
    env_file: Path | None = None
    # The last password read from env_file: while the file cannot be read (being replaced,
    # broken), that one is used, not the one from start, which a rotation may have revoked.
    last_read: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def current_password(self) -> str | None:
        """The password to log in with now: the .env's when the proxy reads one (the last
        one read while the file cannot be), else the fixed one."""
        if self.env_file is None:
            return self.password
        try:
            found = read_env(self.env_file).get(ALL_PASSWORD_KEYS.get(self.user, ""))
        except (OSError, RedkeepError) as error:
            if self.last_read.get("error") != str(error):  # once per kind of failure
                log.warning(
                    "cannot read %s (%s): using the last password read", self.env_file, error
                )
                self.last_read["error"] = str(error)
            return self.last_read.get("password", self.password)
        self.last_read.pop("error", None)
        if found:
            self.last_read["password"] = found
        return found or self.last_read.get("password", self.password)


@dataclass(frozen=True)
class ProxyConfig:
    listen: tuple[str, int]
    # The fixed upstream. With `sentinel` the proxy follows the primary the Sentinels name and
    # this is only the planned one (a bundle's redis-0, for an nginx config) or None.
    upstream: tuple[str, int] | None
    policy: Policy
    client_tls: ClientTLS | None
    upstream_tls: UpstreamTLS | None
    connect_timeout: float
    handshake_timeout: float
    access_log: Path | None  # None: off; Path('-'): standard output
    metrics_listen: tuple[str, int] | None
    sentinel: SentinelConfig | None = None


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


def build_config(
    proxy: ProxySettings,
    settings: Settings | None,
    root: Path | None,
    follow_sentinel: bool = False,
) -> ProxyConfig:
    """The runnable configuration; `settings`/`root` are the bundle's, when there is one.

    `follow_sentinel`: resolve the primary through Sentinel when configured (`redkeep proxy`);
    without it the configuration is the planned primary's (what an nginx config can hold).
    """

    def path(value: str | None, default: Path | None) -> Path | None:
        return default if value is None else resolve_path(value, root)

    # The bundle's own certificates, where a setting names none.
    files = Bundle(root).tls if settings is not None and root is not None else None
    sentinel = sentinel_config(proxy, settings, root) if follow_sentinel else None
    if proxy.upstream:
        upstream = parse_host_port(proxy.upstream, "--upstream", EXAMPLE)
    elif settings is not None:
        upstream = ("127.0.0.1", settings.redis.tls_port)
    elif sentinel is not None:
        upstream = None
    else:
        raise UsageError(
            "no upstream: pass --upstream HOST:PORT or --sentinel HOST:PORT --master-name NAME "
            "(or run inside a bundle)"
        )

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
            settings.host if own and settings is not None else upstream and upstream[0]
        )
        if sentinel is not None and not (proxy.upstream_tls_name or own):
            name = None  # each primary by its own address
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
        sentinel=sentinel,
    )


def sentinel_config(
    proxy: ProxySettings, settings: Settings | None, root: Path | None
) -> SentinelConfig | None:
    """The Sentinels to follow: the flags or proxy section, else a sentinel bundle's own
    (unless a fixed upstream is given). None: a fixed upstream."""
    deployment = settings.deployment if settings is not None else None
    in_sentinel_bundle = deployment is not None and deployment.topology == "sentinel"
    if proxy.sentinels:
        if proxy.upstream:
            raise UsageError(
                "--upstream and --sentinel exclude each other: the proxy follows either one "
                "server or the primary the Sentinels name"
            )
        addresses = tuple(
            parse_host_port(a, "--sentinel", "127.0.0.1:26379") for a in proxy.sentinels
        )
    elif in_sentinel_bundle and not proxy.upstream:
        planned = plan_nodes(deployment, settings.redis.tls_port)
        addresses = tuple(("127.0.0.1", node.port) for node in planned if node.role == "sentinel")
    elif proxy.master_name:
        raise UsageError("--master-name needs --sentinel HOST:PORT (the Sentinels to ask)")
    else:
        return None
    name = proxy.master_name or (deployment.master_name if in_sentinel_bundle else None)
    if not name:
        raise UsageError("--sentinel needs --master-name NAME (the name the Sentinels know)")
    password = os.environ.get(SENTINEL_PASSWORD_ENV) or None
    env_file = None
    if password is None and settings is not None and root is not None:
        bundle = Bundle(root)
        password = bundle.known_passwords().get(proxy.sentinel_user)
        env_file = bundle.env_path if password is not None else None
    return SentinelConfig(addresses, name, proxy.sentinel_user, password, env_file)
