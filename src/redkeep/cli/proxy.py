"""`redkeep proxy`: the network security proxy in front of Redis.

The flags and redkeep.yaml's proxy section make one configuration; `redkeep render nginx`
takes the same flags (see `proxy_options`).
"""

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import click

from redkeep.app import Application
from redkeep.cli.options import dir_option, load_bundle
from redkeep.config.schema import ProxySettings
from redkeep.errors import UsageError
from redkeep.proxy.config import ProxyConfig, build_config, effective_settings


def proxy_options(command: Callable) -> Callable:
    """The flags of the proxy section (each overrides redkeep.yaml), as `overrides`."""
    options = [
        click.option("--listen", metavar="HOST:PORT", help="Where clients connect."),
        click.option("--upstream", metavar="HOST:PORT", help="Redis (default: the bundle's)."),
        click.option(
            "--sentinel",
            metavar="HOST:PORT",
            multiple=True,
            help="Follow the primary these Sentinels name (repeat; default in a sentinel "
            "bundle: its own).",
        ),
        click.option("--master-name", help="The name the Sentinels know the primary by."),
        click.option(
            "--sentinel-user",
            help="ACL user asking the Sentinels (default app; password from the bundle or "
            "REDKEEP_SENTINEL_PASSWORD).",
        ),
        click.option("--allow", metavar="CIDR", multiple=True, help="Allowed network (repeat)."),
        click.option("--deny", metavar="CIDR", multiple=True, help="Refused network (repeat)."),
        click.option(
            "--deny-command",
            metavar="NAME",
            multiple=True,
            help="Refused command or 'COMMAND SUB' (repeat; replaces the configured list).",
        ),
        click.option(
            "--cmd-rate",
            type=click.FloatRange(min=0, min_open=True),
            help="Commands per second per client.",
        ),
        click.option("--max-conns", type=click.IntRange(min=1), help="Most connections at once."),
        click.option("--max-conns-per-ip", type=click.IntRange(min=1), help="Most per address."),
        click.option(
            "--conn-rate",
            type=click.FloatRange(min=0, min_open=True),
            help="New connections per second per address.",
        ),
        click.option("--tls-cert", type=click.Path(path_type=Path), help="Client-side TLS cert."),
        click.option("--tls-key", type=click.Path(path_type=Path), help="Its key."),
        click.option(
            "--tls-client-ca",
            type=click.Path(path_type=Path),
            help="Require client certs by this CA.",
        ),
        click.option("--upstream-tls-ca", type=click.Path(path_type=Path), help="CA of Redis."),
        click.option(
            "--upstream-tls-cert",
            type=click.Path(path_type=Path),
            help="Cert for mutual TLS to Redis.",
        ),
        click.option("--upstream-tls-key", type=click.Path(path_type=Path), help="Its key."),
        click.option("--upstream-tls-name", help="Name to verify in Redis' certificate."),
        click.option(
            "--pass-through",
            is_flag=True,
            help="Parse no requests: no command policy, rate limit or pre-AUTH caps.",
        ),
        click.option("--access-log", metavar="FILE", help="JSON access log ('-': stdout; 'off')."),
        click.option("--metrics-listen", metavar="HOST:PORT", help="/metrics address ('off')."),
    ]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        names = [
            "listen", "upstream", "sentinel", "master_name", "sentinel_user", "allow", "deny",
            "deny_command", "cmd_rate", "max_conns",
            "max_conns_per_ip", "conn_rate", "tls_cert", "tls_key", "tls_client_ca",
            "upstream_tls_ca", "upstream_tls_cert", "upstream_tls_key", "upstream_tls_name",
            "pass_through",
            "access_log", "metrics_listen",
        ]  # fmt: skip
        given = {name: kwargs.pop(name) for name in names}
        kwargs["overrides"] = given
        return command(*args, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def proxy_loader(
    app: Application, directory: Path | None, flags: dict, follow_sentinel: bool = True
) -> Callable[[], ProxyConfig]:
    """A function that reads redkeep.yaml and the flags into a configuration (again on SIGHUP).

    `follow_sentinel`: the proxy follows the Sentinels' primary when configured; an nginx
    config cannot (see `redkeep render nginx`).
    """

    def load() -> ProxyConfig:
        bundle = load_bundle(app, directory, required=False)
        base = bundle.settings.proxy if bundle else ProxySettings(access_log="-")
        overrides = {
            "listen": flags["listen"],
            "upstream": flags["upstream"],
            "sentinels": list(flags["sentinel"]),
            "master_name": flags["master_name"],
            "sentinel_user": flags["sentinel_user"],
            "allow": list(flags["allow"]),
            "deny": list(flags["deny"]),
            "deny_commands": list(flags["deny_command"]),
            "cmd_rate": flags["cmd_rate"],
            "max_conns": flags["max_conns"],
            "max_conns_per_ip": flags["max_conns_per_ip"],
            "conn_rate": flags["conn_rate"],
            "tls_cert": _text(flags["tls_cert"]),
            "tls_key": _text(flags["tls_key"]),
            "tls_client_ca": _text(flags["tls_client_ca"]),
            "upstream_tls_ca": _text(flags["upstream_tls_ca"]),
            "upstream_tls_cert": _text(flags["upstream_tls_cert"]),
            "upstream_tls_key": _text(flags["upstream_tls_key"]),
            "upstream_tls_name": flags["upstream_tls_name"],
            "access_log": _unless_off(flags["access_log"]),
            "metrics_listen": _unless_off(flags["metrics_listen"]),
        }
        proxy = effective_settings(base, overrides)
        changes: dict = {}
        if flags["pass_through"]:
            if flags["cmd_rate"] or flags["deny_command"]:
                raise UsageError(
                    "--pass-through parses no requests: drop --cmd-rate/--deny-command"
                )
            changes |= {
                "deny_commands": [],
                "cmd_rate": None,
                "unauthenticated_limits": False,
                "client_idle_timeout": 0,
                "upstream_idle_timeout": 0,
            }
        for name in ("access_log", "metrics_listen"):
            if flags[name] == "off":
                changes[name] = None
        if flags["tls_client_ca"]:
            changes["auth_clients"] = "yes"
        if changes:
            proxy = proxy.model_copy(update=changes)
        return build_config(
            proxy,
            bundle.settings if bundle else None,
            bundle.root if bundle else None,
            follow_sentinel=follow_sentinel,
        )

    return load


def _unless_off(value: str | None) -> str | None:
    return None if value == "off" else value


def _text(value: Path | None) -> str | None:
    return str(value) if value is not None else None


@click.command()
@dir_option
@proxy_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info")
@click.pass_obj
def proxy(app: Application, directory: Path | None, overrides: dict, log_level: str) -> None:
    """Run the network security proxy: TLS, allowlist, limits, command policy, access log.

    Inside a bundle it reads the proxy section of redkeep.yaml and terminates TLS with the
    bundle's certificate; flags override the file. SIGHUP reloads the policy and certificates
    without dropping connections and reopens the access log.
    """
    from redkeep.proxy.runner import run  # noqa: PLC0415 - asyncio only when the proxy runs

    logging.basicConfig(level=log_level.upper(), format="redkeep proxy: %(message)s")
    run(proxy_loader(app, directory, overrides), app.say)
